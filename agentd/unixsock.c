/*
 * unixsock: see unixsock.h. Owns nothing; a failure leaves no file behind
 * (the temporary name is unlinked) and the path as it was.
 */
#include "unixsock.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Is something listening at path? A non-blocking probe never waits: a stream
   socket with a full backlog answers EAGAIN, which means alive too. */
static int probe_live(int type, const struct sockaddr_un *sa)
{
	int probe = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (probe < 0)
		return -errno;
	int live =
		connect(probe, (const struct sockaddr *)sa, sizeof *sa) == 0 || errno == EAGAIN || errno == EINPROGRESS;
	close(probe);
	return live;
}

int unixsock_bind(int type, const char *path, unsigned mode, int backlog)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char tmp[sizeof sa.sun_path];
	size_t plen = path ? strlen(path) : 0;
	if (!plen)
		return -EINVAL;
	if (plen >= sizeof sa.sun_path - 16)
		return -ENAMETOOLONG;
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return -EEXIST;
		memcpy(sa.sun_path, path, plen + 1);
		if (probe_live(type, &sa) > 0)
			return -EADDRINUSE;
	}
	int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	snprintf(tmp, sizeof tmp, "%s.%d", path, (int)getpid());
	unlink(tmp);
	memcpy(sa.sun_path, tmp, strlen(tmp) + 1);
	int rc = 0;
	/* a stream socket listens before its name appears: whoever sees the
	   file can connect (the caller's uv_listen only sets the callback) */
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || chmod(tmp, mode) < 0 ||
	    (type == SOCK_STREAM && listen(fd, backlog) < 0) || rename(tmp, path) < 0)
		rc = -errno;
	if (rc) {
		unlink(tmp);
		close(fd);
		return rc;
	}
	return fd;
}
