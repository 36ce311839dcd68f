/*
 * sdnotify: tell the service manager how agentd is doing (sd_notify(3)).
 *
 * Written to the documented wire format instead of linking libsystemd: the
 * protocol is one datagram of "KEY=VALUE\n" lines sent to the AF_UNIX socket
 * named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace), so
 * a few dozen lines cover it; it keeps agentd free of a runtime dependency
 * that non-systemd hosts and containers would otherwise need; and it lets us
 * send with MSG_DONTWAIT, so a busy service manager can never block the libuv
 * loop (sd_notify() sends blocking).
 *
 * Owns: one SOCK_DGRAM|SOCK_CLOEXEC fd, opened by sdnotify_open() when
 * $NOTIFY_SOCKET is set, and the watchdog interval from $WATCHDOG_USEC
 * (honoured only when $WATCHDOG_PID is unset or equals getpid()). The
 * environment is read, never changed.
 *
 * Limits: one message is at most SDNOTIFY_MAX bytes; STATUS text has its
 * newlines turned into spaces so it stays one assignment.
 *
 * Failure: sends return -errno and change nothing (-EAGAIN when the manager's
 * queue is full: drop it, the next tick sends again). Without $NOTIFY_SOCKET
 * every send is a no-op returning 0, so agentd runs the same outside systemd.
 */
#ifndef AGENTD_SDNOTIFY_H
#define AGENTD_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#define SDNOTIFY_MAX 4096

struct sdnotify {
	int fd; /* -1: no notify socket, sends are no-ops */
	socklen_t addrlen; /* of addr, 0 when off */
	struct sockaddr_un addr;
	uint64_t watchdog_usec; /* 0: no watchdog for this process */
};

/*
 * Read $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID, and open the socket.
 * *n is always initialised and safe to use and close afterwards. Returns 0;
 * -EINVAL when a variable is malformed (NOTIFY_SOCKET neither "/path" nor
 * "@name" or too long: notify off; WATCHDOG_USEC not a positive decimal or
 * WATCHDOG_PID not a pid: watchdog off; the rest still works, so the caller
 * can log and go on); or -errno from socket().
 */
int sdnotify_open(struct sdnotify *n);

/* Close the socket; *n becomes a no-op. Accepts NULL. */
void sdnotify_close(struct sdnotify *n);

/* True when $NOTIFY_SOCKET was set and usable. */
bool sdnotify_enabled(const struct sdnotify *n);

/* The watchdog interval in microseconds, 0 when there is no watchdog. Send
 * WATCHDOG=1 at about half of it. */
uint64_t sdnotify_watchdog_usec(const struct sdnotify *n);

/* Send text as one datagram, as it is ("READY=1\nSTATUS=up"). 0, a no-op 0
 * when off, -EINVAL for NULL/empty text or n, -EMSGSIZE over SDNOTIFY_MAX, or
 * -errno from sendto(). */
int sdnotify_send(struct sdnotify *n, const char *text);

/* printf-style sdnotify_send(); -EMSGSIZE when the result would not fit. */
int sdnotify_sendf(struct sdnotify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Thin wrappers. */
int sdnotify_ready(struct sdnotify *n); /* READY=1 */
int sdnotify_watchdog(struct sdnotify *n); /* WATCHDOG=1 */
int sdnotify_stopping(struct sdnotify *n); /* STOPPING=1 */
int sdnotify_reloading(struct sdnotify *n); /* RELOADING=1 + MONOTONIC_USEC; send READY=1 when done */
int sdnotify_extend_timeout(struct sdnotify *n, uint64_t usec); /* EXTEND_TIMEOUT_USEC=usec */
/* STATUS=<formatted text>, newlines replaced by spaces. */
int sdnotify_status(struct sdnotify *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
