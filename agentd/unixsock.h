/*
 * unixsock: bind a Unix socket at a path safely, for the ingest and control
 * sockets.
 *
 * A live socket at the path (one that accepts a connection or a datagram
 * probe) is left alone: -EADDRINUSE. A stale socket file is replaced; any
 * other kind of file is left alone: -EEXIST. The socket is bound to a
 * temporary name beside the path, given its mode, then renamed over the path,
 * so that no client ever sees it with the wrong permissions.
 */
#ifndef AGENTD_UNIXSOCK_H
#define AGENTD_UNIXSOCK_H

/* Bind a non-blocking, close-on-exec socket of type (SOCK_DGRAM or
   SOCK_STREAM) at path with the permissions mode; a stream socket is
   listening (backlog) before the path appears. Returns the fd, or
   -ENAMETOOLONG, -EADDRINUSE, -EEXIST or another -errno. */
int unixsock_bind(int type, const char *path, unsigned mode, int backlog);

#endif
