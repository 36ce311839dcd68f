#include "listenfds.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct passed_fd {
	char name[LISTENFDS_NAME_MAX + 1];
	bool taken;
};

static struct {
	bool parsed;
	int result; /* count or -errno */
	int n;
	struct passed_fd fds[LISTENFDS_MAX];
} lf;

/* A decimal without sign, spaces or trailing junk, at most max. */
static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	char *end = NULL;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end != '\0' || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Split "a:b:c" into exactly n names, each 1..255 printable bytes. */
static int parse_names(const char *s, int n)
{
	int i = 0;
	const char *p = s;
	for (;;) {
		const char *c = strchr(p, ':');
		size_t l = c ? (size_t)(c - p) : strlen(p);
		if (i >= n || l == 0 || l > LISTENFDS_NAME_MAX)
			return -EINVAL;
		for (size_t k = 0; k < l; k++)
			if ((unsigned char)p[k] < 0x20 || (unsigned char)p[k] > 0x7e)
				return -EINVAL;
		memcpy(lf.fds[i].name, p, l);
		lf.fds[i].name[l] = '\0';
		i++;
		if (!c)
			break;
		p = c + 1;
	}
	return i == n ? 0 : -EINVAL;
}

static int parse_env(void)
{
	const char *pid_s = getenv("LISTEN_PID");
	const char *n_s = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	unsigned long pid, n;

	if (!pid_s || !n_s)
		return 0;
	if (parse_uint(pid_s, INT32_MAX, &pid) || pid == 0)
		return -EINVAL;
	if ((pid_t)pid != getpid())
		return 0;
	if (parse_uint(n_s, INT32_MAX - LISTENFDS_START, &n))
		return -EINVAL;
	if (n > LISTENFDS_MAX)
		return -E2BIG;
	if (n == 0)
		return 0;

	for (unsigned long i = 0; i < n; i++) {
		int fd = LISTENFDS_START + (int)i;
		int flags = fcntl(fd, F_GETFD);
		if (flags < 0)
			return -errno; /* -EBADF: the fd is not there */
		if (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
			return -errno;
	}
	if (names) {
		int r = parse_names(names, (int)n);
		if (r)
			return r;
	} else {
		for (unsigned long i = 0; i < n; i++)
			memcpy(lf.fds[i].name, "unknown", sizeof("unknown"));
	}
	lf.n = (int)n;
	return (int)n;
}

int listenfds_parse(void)
{
	if (lf.parsed)
		return lf.result;
	memset(&lf, 0, sizeof(lf));
	lf.result = parse_env();
	if (lf.result < 0)
		lf.n = 0;
	lf.parsed = true;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return lf.result;
}

static bool has_type(int fd, int type)
{
	int v = 0;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) < 0 || v != type)
		return false;
	if (type != SOCK_STREAM)
		return true;
	v = 0;
	l = sizeof(v);
	return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1;
}

int listenfds_take(const char *name, int expected_type)
{
	if (!name || !*name || expected_type <= 0)
		return -EINVAL;
	int r = listenfds_parse();
	if (r < 0)
		return r;
	bool named = false;
	for (int i = 0; i < lf.n; i++) {
		if (lf.fds[i].taken || strcmp(lf.fds[i].name, name) != 0)
			continue;
		named = true;
		int fd = LISTENFDS_START + i;
		if (!has_type(fd, expected_type))
			continue;
		int flags = fcntl(fd, F_GETFD);
		if (flags < 0)
			return -errno;
		if (!(flags & FD_CLOEXEC) && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
			return -errno;
		lf.fds[i].taken = true;
		return fd;
	}
	return named ? -EPROTOTYPE : -ENOENT;
}

void listenfds_close_untaken(void)
{
	if (!lf.parsed)
		return;
	for (int i = 0; i < lf.n; i++) {
		if (!lf.fds[i].taken) {
			close(LISTENFDS_START + i);
			lf.fds[i].taken = true;
		}
	}
}

void listenfds_reset(void)
{
	memset(&lf, 0, sizeof(lf));
}
