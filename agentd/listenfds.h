/*
 * listenfds: sockets handed over by the service manager (socket activation,
 * sd_listen_fds(3)), so that systemd, not agentd, holds the ingest socket and
 * datagrams sent while agentd restarts wait in the kernel.
 *
 * Owns: the process-wide table of passed fds (3 .. 3+LISTEN_FDS-1), with the
 * name each got from FileDescriptorName= (LISTEN_FDNAMES, colon-separated;
 * "unknown" when unset, as systemd says) and whether it was taken. The first
 * call parses $LISTEN_PID, $LISTEN_FDS and $LISTEN_FDNAMES once, sets
 * FD_CLOEXEC on every passed fd and unsets the three variables, like
 * sd_listen_fds(1), so no child inherits them.
 *
 * Limits: at most LISTENFDS_MAX fds, names up to 255 bytes. Not thread-safe:
 * call from the loop thread at start-up.
 *
 * Failure: a $LISTEN_PID that is not ours means no fds (not an error). A
 * malformed variable, a name count that differs from LISTEN_FDS, or more
 * than LISTENFDS_MAX fds is an error that every later call returns, and no
 * fd is used; the caller creates its own sockets.
 */
#ifndef AGENTD_LISTENFDS_H
#define AGENTD_LISTENFDS_H

#define LISTENFDS_START 3
#define LISTENFDS_MAX 64
#define LISTENFDS_NAME_MAX 255

/* Names agentd's socket units give (systemd/agentd*.socket). */
#define LISTENFDS_INGEST "ingest" /* SOCK_DGRAM */
#define LISTENFDS_STREAM "stream" /* SOCK_STREAM */

/*
 * Parse the environment (once; later calls return the first result).
 * Returns the number of passed fds (0 when none or not for us), or -EINVAL
 * (malformed variable or name count), -E2BIG (more than LISTENFDS_MAX).
 */
int listenfds_parse(void);

/*
 * Take the first untaken passed fd named name whose SO_TYPE is expected_type
 * (SOCK_DGRAM, SOCK_STREAM; a SOCK_STREAM one must be listening). It is
 * marked taken and has FD_CLOEXEC; the caller owns it from now on. Returns
 * the fd, -ENOENT when no untaken fd has that name, -EPROTOTYPE when one
 * does but is not a socket of that type, -EINVAL for bad arguments, or the
 * parse error.
 */
int listenfds_take(const char *name, int expected_type);

/* Close every passed fd not taken (once agentd has what it needs). */
void listenfds_close_untaken(void);

/* Forget the table without closing anything, so the next call parses the
 * environment again (tests). */
void listenfds_reset(void);

#endif
