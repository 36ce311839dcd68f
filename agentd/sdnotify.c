#include "sdnotify.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A decimal without sign, spaces or trailing junk, that fits in 64 bits. */
static int parse_u64(const char *s, uint64_t *out)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	char *end = NULL;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

/* Fill addr from "/path" or "@abstract". */
static int notify_addr(const char *e, struct sockaddr_un *addr, socklen_t *len)
{
	size_t l = strlen(e);
	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	if (e[0] == '/') {
		if (l >= sizeof(addr->sun_path))
			return -EINVAL;
		memcpy(addr->sun_path, e, l);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l + 1);
		return 0;
	}
	if (e[0] == '@' && l > 1) {
		if (l > sizeof(addr->sun_path))
			return -EINVAL;
		/* sun_path[0] stays NUL; the name is not NUL-terminated. */
		memcpy(addr->sun_path + 1, e + 1, l - 1);
		*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + l);
		return 0;
	}
	return -EINVAL;
}

/* WATCHDOG_USEC applies only when WATCHDOG_PID is unset or names us. */
static int watchdog_from_env(uint64_t *usec)
{
	*usec = 0;
	const char *u = getenv("WATCHDOG_USEC");
	if (!u)
		return 0;
	uint64_t v;
	if (parse_u64(u, &v) || v == 0 || v == UINT64_MAX)
		return -EINVAL;
	const char *p = getenv("WATCHDOG_PID");
	if (p) {
		uint64_t pid;
		if (parse_u64(p, &pid) || pid == 0 || pid > INT32_MAX)
			return -EINVAL;
		if ((pid_t)pid != getpid())
			return 0;
	}
	*usec = v;
	return 0;
}

int sdnotify_open(struct sdnotify *n)
{
	if (!n)
		return -EINVAL;
	memset(n, 0, sizeof(*n));
	n->fd = -1;

	int ret = watchdog_from_env(&n->watchdog_usec);

	const char *e = getenv("NOTIFY_SOCKET");
	if (!e)
		return ret;
	struct sockaddr_un addr;
	socklen_t len;
	if (notify_addr(e, &addr, &len))
		return -EINVAL;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	n->fd = fd;
	n->addr = addr;
	n->addrlen = len;
	return ret;
}

void sdnotify_close(struct sdnotify *n)
{
	if (!n)
		return;
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
	n->addrlen = 0;
}

bool sdnotify_enabled(const struct sdnotify *n)
{
	return n && n->fd >= 0;
}

uint64_t sdnotify_watchdog_usec(const struct sdnotify *n)
{
	return n ? n->watchdog_usec : 0;
}

static int send_buf(struct sdnotify *n, const char *text, size_t len)
{
	if (n->fd < 0)
		return 0;
	ssize_t r =
		sendto(n->fd, text, len, MSG_DONTWAIT | MSG_NOSIGNAL, (const struct sockaddr *)&n->addr, n->addrlen);
	if (r < 0)
		return -errno;
	return (size_t)r == len ? 0 : -EMSGSIZE;
}

int sdnotify_send(struct sdnotify *n, const char *text)
{
	if (!n || !text || !*text)
		return -EINVAL;
	size_t len = strlen(text);
	if (len > SDNOTIFY_MAX)
		return -EMSGSIZE;
	return send_buf(n, text, len);
}

/* Format into buf (SDNOTIFY_MAX + 1 bytes); length or -EMSGSIZE/-EINVAL. */
__attribute__((format(printf, 2, 0))) static int vformat(char *buf, const char *fmt, va_list ap)
{
	int l = vsnprintf(buf, SDNOTIFY_MAX + 1, fmt, ap);
	if (l < 0)
		return -EINVAL;
	if (l > SDNOTIFY_MAX)
		return -EMSGSIZE;
	return l;
}

int sdnotify_sendf(struct sdnotify *n, const char *fmt, ...)
{
	if (!n || !fmt)
		return -EINVAL;
	if (n->fd < 0)
		return 0;
	char buf[SDNOTIFY_MAX + 1];
	va_list ap;
	va_start(ap, fmt);
	int l = vformat(buf, fmt, ap);
	va_end(ap);
	if (l <= 0)
		return l < 0 ? l : -EINVAL;
	return send_buf(n, buf, (size_t)l);
}

int sdnotify_status(struct sdnotify *n, const char *fmt, ...)
{
	static const char key[] = "STATUS=";
	if (!n || !fmt)
		return -EINVAL;
	if (n->fd < 0)
		return 0;
	char buf[SDNOTIFY_MAX + 1];
	memcpy(buf, key, sizeof(key) - 1);
	va_list ap;
	va_start(ap, fmt);
	int l = vsnprintf(buf + sizeof(key) - 1, sizeof(buf) - (sizeof(key) - 1), fmt, ap);
	va_end(ap);
	if (l < 0)
		return -EINVAL;
	size_t total = sizeof(key) - 1 + (size_t)l;
	if (total > SDNOTIFY_MAX)
		return -EMSGSIZE;
	for (size_t i = sizeof(key) - 1; i < total; i++)
		if (buf[i] == '\n')
			buf[i] = ' ';
	return send_buf(n, buf, total);
}

int sdnotify_ready(struct sdnotify *n)
{
	return sdnotify_send(n, "READY=1");
}

int sdnotify_watchdog(struct sdnotify *n)
{
	return sdnotify_send(n, "WATCHDOG=1");
}

int sdnotify_stopping(struct sdnotify *n)
{
	return sdnotify_send(n, "STOPPING=1");
}

int sdnotify_reloading(struct sdnotify *n)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts))
		return -errno;
	uint64_t usec = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	return sdnotify_sendf(n, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)usec);
}

int sdnotify_extend_timeout(struct sdnotify *n, uint64_t usec)
{
	return sdnotify_sendf(n, "EXTEND_TIMEOUT_USEC=%llu", (unsigned long long)usec);
}
