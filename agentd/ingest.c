/*
 * ingest: the datagram socket and the stream socket, read on the loop.
 *
 * Owns: both listening sockets (its own, or the ones systemd passed), the
 * stream connections, the recvmmsg buffers and the pid -> process name cache.
 * Limits: RECV_BATCH datagrams per recvmmsg call and RECV_ROUNDS calls per
 * wakeup, so other events get their turn; datagrams and frames up to
 * [ingest] max_record_bytes; [ingest] max_stream_clients connections.
 * Failure: a datagram or frame that does not decode is counted by reason and
 * skipped; a stream connection whose length prefix is bad is counted and
 * closed (it cannot resynchronise); file descriptors sent to us are closed.
 * Nothing a sender does stalls the other senders.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agentd.h"
#include "frames.h"
#include "listenfds.h"
#include "log.h"
#include "unixsock.h"

#define RECV_BATCH 64
#define RECV_ROUNDS 16
#define CTRL_SIZE (CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 16))
#define COMM_SLOTS 256
#define COMM_TTL_MS 5000
#define STREAM_BACKLOG 128 /* stream senders waiting to be accepted */

struct comm_slot {
	int32_t pid;
	uint64_t at_ms;
	char comm[16];
};

struct sclient {
	uv_pipe_t h;
	struct ingest *in;
	struct sclient *next, *prev;
	struct origin o;
	uint8_t *buf;
	size_t len, cap;
};

struct ingest {
	struct agentd *d;
	int dfd;
	uv_poll_t dpoll;
	bool dpoll_active;
	uv_pipe_t server;
	bool have_stream;
	unsigned nclients;
	struct sclient *clients;
	size_t bufsize;
	uint8_t *bufs; /* RECV_BATCH buffers of bufsize bytes */
	struct mmsghdr msgs[RECV_BATCH];
	int used; /* headers the last recvmmsg filled */
	uv_timer_t tick; /* reads in ticks under a light load */
	bool ticks; /* the kernel queue is deep enough for them */
	struct iovec iov[RECV_BATCH];
	union {
		char buf[CTRL_SIZE];
		struct cmsghdr align;
	} ctrl[RECV_BATCH];
	struct comm_slot comm[COMM_SLOTS];
	bool stopped;
	unsigned handles; /* handles embedded here that are open: freed when the last one is closed */
};

/* ---- process names ------------------------------------------------------ */

static void comm_lookup(struct ingest *in, struct origin *o)
{
	uint64_t now = now_ms(in->d);
	struct comm_slot *s = &in->comm[(uint32_t)o->pid % COMM_SLOTS];
	if (s->pid == o->pid && s->at_ms && now - s->at_ms < COMM_TTL_MS) {
		memcpy(o->comm, s->comm, sizeof o->comm);
		return;
	}
	char path[48];
	snprintf(path, sizeof path, "/proc/%d/comm", (int)o->pid);
	memset(o->comm, 0, sizeof o->comm);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		ssize_t n = read(fd, o->comm, sizeof o->comm - 1);
		close(fd);
		if (n > 0 && o->comm[n - 1] == '\n')
			n--;
		o->comm[n > 0 ? n : 0] = 0;
	}
	s->pid = o->pid;
	s->at_ms = now;
	memcpy(s->comm, o->comm, sizeof s->comm);
}

/* ---- one record --------------------------------------------------------- */

static void take(struct ingest *in, struct origin *o, const uint8_t *frame, size_t len)
{
	struct agentd *d = in->d;
	ap_record_t r;
	int rc = ap_decode(frame, len, d->cfg.ingest.max_record_bytes, &r);
	if (rc != AP_OK) {
		d->st.malformed[-rc]++;
		if (d->st.malformed[-rc] == 1)
			log_warn("malformed record from pid %d (%s): skipped; further ones are only counted",
				 (int)o->pid, ap_strerror(rc));
		return;
	}
	if (!o->comm[0])
		comm_lookup(in, o);
	d->st.received++;
	d->st.shim_dropped += r.dropped;
	stats_sender_seen(&d->st, o, r.dropped, now_ms(d));
	if (d->on_record)
		d->on_record(d, o, &r);
	queue_push(d, o, frame, (uint32_t)len);
}

/* ---- the datagram socket ------------------------------------------------ */

static void close_passed_fds(struct cmsghdr *c)
{
	int *fds = (int *)CMSG_DATA(c);
	size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

/* The message headers point at fixed buffers: set them up once. After a
 * call, only the control lengths the kernel changed need resetting. */
static void setup_msgs(struct ingest *in)
{
	for (int i = 0; i < RECV_BATCH; i++) {
		struct msghdr *m = &in->msgs[i].msg_hdr;
		in->iov[i].iov_base = in->bufs + (size_t)i * in->bufsize;
		in->iov[i].iov_len = in->bufsize;
		memset(m, 0, sizeof *m);
		m->msg_iov = &in->iov[i];
		m->msg_iovlen = 1;
		m->msg_control = in->ctrl[i].buf;
		m->msg_controllen = CTRL_SIZE;
	}
}

/* Read up to rounds * RECV_BATCH datagrams, adding how many to *count.
 * Returns 1 when the socket may hold more, 0 when it is empty. */
static int read_dgrams(struct ingest *in, int rounds, unsigned *count)
{
	struct agentd *d = in->d;
	for (int round = 0; round < rounds; round++) {
		for (int i = 0; i < in->used; i++)
			in->msgs[i].msg_hdr.msg_controllen = CTRL_SIZE;
		in->used = 0;
		int n = recvmmsg(in->dfd, in->msgs, RECV_BATCH, MSG_DONTWAIT | MSG_CMSG_CLOEXEC, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_error("recvmmsg on the ingest socket: %s", strerror(errno));
			return 0;
		}
		in->used = n;
		*count += (unsigned)n;
		for (int i = 0; i < n; i++) {
			struct msghdr *m = &in->msgs[i].msg_hdr;
			struct origin o = {.pid = 0, .uid = (uint32_t)-1, .gid = (uint32_t)-1};
			bool creds = false, fds = false;
			for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
				if (c->cmsg_level != SOL_SOCKET)
					continue;
				if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
					struct ucred uc;
					memcpy(&uc, CMSG_DATA(c), sizeof uc);
					o.pid = uc.pid;
					o.uid = uc.uid;
					o.gid = uc.gid;
					creds = true;
				} else if (c->cmsg_type == SCM_RIGHTS) {
					close_passed_fds(c);
					fds = true;
				}
			}
			if (fds || (m->msg_flags & MSG_CTRUNC))
				d->st.malformed[MAL_FDS_PASSED]++;
			if (m->msg_flags & MSG_TRUNC || in->msgs[i].msg_len > d->cfg.ingest.max_record_bytes) {
				d->st.malformed[MAL_OVERSIZED_DGRAM]++;
				if (d->st.malformed[MAL_OVERSIZED_DGRAM] == 1)
					log_warn("datagram from pid %d above max_record_bytes (%zu): skipped; further "
						 "ones are only counted",
						 (int)o.pid, d->cfg.ingest.max_record_bytes);
				continue;
			}
			if (!creds)
				d->st.malformed[MAL_NO_CREDENTIALS]++; /* counted, record still taken */
			take(in, &o, in->iov[i].iov_base, in->msgs[i].msg_len);
		}
		/* mode = always: on disk before the next datagram leaves the
		   kernel, so a crash loses at most one recvmmsg's worth */
		queue_ingest_done(d);
		if (n < RECV_BATCH)
			return 0;
	}
	return 1;
}

/*
 * Reading in ticks. Waking the loop for every datagram costs more than
 * receiving it. Under a light or moderate load, once a wakeup finds only a
 * few datagrams, agentd stops watching the socket and reads it every
 * COALESCE_MS instead, taking what arrived meanwhile in a few recvmmsg calls;
 * it watches the socket again when a tick finds it empty (idle) or full
 * (heavy load). Only with a kernel queue that holds a tick's worth of
 * datagrams (net.unix.max_dgram_qlen >= 256): records wait at most a
 * millisecond longer, and none is refused for it.
 */
#define COALESCE_MS 1
/* about 128,000 records/s: past it, reading on readiness keeps the queue shortest */
#define TICK_BUSY (RECV_BATCH * 2)

static void on_dgram(uv_poll_t *h, int status, int events);

static void watch(struct ingest *in)
{
	if (!in->dpoll_active && !in->stopped) {
		uv_poll_start(&in->dpoll, UV_READABLE, on_dgram);
		in->dpoll_active = true;
	}
}

static void on_tick(uv_timer_t *t)
{
	struct ingest *in = t->data;
	unsigned n = 0;
	int more = read_dgrams(in, RECV_ROUNDS, &n);
	if (n == 0 || more || n >= TICK_BUSY)
		watch(in); /* idle again, or too busy for ticks */
	else
		uv_timer_start(&in->tick, on_tick, COALESCE_MS, 0);
}

static void on_dgram(uv_poll_t *h, int status, int events)
{
	struct ingest *in = h->data;
	if (status < 0) {
		log_error("ingest socket: %s", uv_strerror(status));
		return;
	}
	if (!(events & UV_READABLE))
		return;
	unsigned n = 0;
	int more = read_dgrams(in, RECV_ROUNDS, &n);
	if (in->ticks && !more && n < RECV_BATCH / 4) {
		uv_poll_stop(&in->dpoll);
		in->dpoll_active = false;
		uv_timer_start(&in->tick, on_tick, COALESCE_MS, 0);
	}
}

/* ---- the stream socket -------------------------------------------------- */

static void sclient_closed(uv_handle_t *h)
{
	struct sclient *c = h->data;
	free(c->buf);
	free(c);
}

static void sclient_close(struct sclient *c)
{
	struct ingest *in = c->in;
	if (c->prev)
		c->prev->next = c->next;
	else
		in->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	in->nclients--;
	uv_close((uv_handle_t *)&c->h, sclient_closed);
}

static void sclient_frame(void *ctx, const uint8_t *frame, size_t len)
{
	struct sclient *c = ctx;
	take(c->in, &c->o, frame, len);
}

/* Take every whole frame in c->buf. Returns -1 on a framing error. */
static int sclient_parse(struct sclient *c)
{
	struct ingest *in = c->in;
	size_t off = 0;
	if (frames_parse(c->buf, c->len, in->d->cfg.ingest.max_record_bytes, sclient_frame, c, &off)) {
		in->d->st.malformed[MAL_STREAM_FRAMING]++;
		log_warn("stream client pid %d sent a bad length prefix (%u): connection closed", (int)c->o.pid,
			 ap_rd32(c->buf + off));
		return -1;
	}
	if (off) {
		memmove(c->buf, c->buf + off, c->len - off);
		c->len -= off;
	}
	return 0;
}

static void sclient_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct sclient *c = h->data;
	(void)suggested;
	b->base = (char *)c->buf + c->len;
	b->len = c->cap - c->len;
}

static void sclient_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct sclient *c = s->data;
	struct agentd *d = c->in->d;
	(void)b;
	if (nread < 0) {
		if (c->len)
			c->in->d->st.malformed[-AP_EMSG]++; /* a frame cut by the disconnect */
		sclient_close(c);
		return;
	}
	c->len += (size_t)nread;
	if (sclient_parse(c))
		sclient_close(c);
	queue_ingest_done(d);
}

static void on_stream_conn(uv_stream_t *server, int status)
{
	struct ingest *in = server->data;
	if (status < 0)
		return;
	struct sclient *c = calloc(1, sizeof *c);
	if (!c)
		return;
	c->in = in;
	c->cap = 4 + in->d->cfg.ingest.max_record_bytes;
	c->buf = malloc(c->cap);
	if (!c->buf || uv_pipe_init(in->d->loop, &c->h, 0)) {
		free(c->buf);
		free(c);
		return;
	}
	c->h.data = c;
	c->next = in->clients;
	if (in->clients)
		in->clients->prev = c;
	in->clients = c;
	in->nclients++;
	if (uv_accept(server, (uv_stream_t *)&c->h)) {
		sclient_close(c);
		return;
	}
	if (in->nclients > in->d->cfg.ingest.max_stream_clients) {
		log_warn("stream connection refused: %u clients already", in->nclients - 1);
		sclient_close(c);
		return;
	}
	uv_os_fd_t fd;
	struct ucred uc;
	socklen_t ul = sizeof uc;
	if (uv_fileno((uv_handle_t *)&c->h, &fd) == 0 && getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) == 0) {
		c->o.pid = uc.pid;
		c->o.uid = uc.uid;
		c->o.gid = uc.gid;
		comm_lookup(in, &c->o);
	} else {
		c->o.uid = c->o.gid = (uint32_t)-1;
	}
	uv_read_start((uv_stream_t *)&c->h, sclient_alloc, sclient_read);
}

/* ---- socket setup ------------------------------------------------------- */

/* Raise the receive buffer to bytes; never shrink it (systemd may have set
 * a larger one than an unprivileged agentd could). */
static void set_rcvbuf(int fd, size_t bytes)
{
	int v = bytes > (size_t)INT32_MAX / 2 ? INT32_MAX / 2 : (int)bytes, cur = 0;
	socklen_t len = sizeof cur;
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cur, &len) == 0 && cur / 2 >= v)
		return; /* the kernel reports twice what was asked */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) < 0)
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v);
	cur = 0;
	len = sizeof cur;
	if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &cur, &len) == 0 && cur / 2 < v)
		log_warn("ingest receive buffer is %d bytes, not the %d asked for (net.core.rmem_max caps it without "
			 "CAP_NET_ADMIN)",
			 cur / 2, v);
}

/* Returns net.unix.max_dgram_qlen (0 when unknown) and warns when it is low. */
static long check_qlen(void)
{
	FILE *f = fopen("/proc/sys/net/unix/max_dgram_qlen", "re");
	long q = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%ld", &q) != 1)
		q = 0;
	fclose(f);
	if (q > 0 && q < 128)
		log_warn("net.unix.max_dgram_qlen is %ld: senders are refused once %ld datagrams wait; install the "
			 "shipped sysctl.d file (60-agentd.conf) or run: sysctl -w net.unix.max_dgram_qlen=4096",
			 q, q);
	return q;
}

/* tick, dpoll and server live inside struct ingest: free it once all are closed */
static void ingest_handle_closed(uv_handle_t *h)
{
	struct ingest *in = h->data;
	if (--in->handles == 0) {
		free(in->bufs);
		free(in);
	}
}

int ingest_init(struct agentd *d)
{
	const struct config *c = &d->cfg;
	struct ingest *in = calloc(1, sizeof *in);
	if (!in)
		return -ENOMEM;
	in->d = d;
	in->dfd = -1;
	in->bufsize = c->ingest.max_record_bytes + 1; /* one more byte: detects oversize */
	in->bufs = malloc(in->bufsize * RECV_BATCH);
	if (!in->bufs) {
		free(in);
		return -ENOMEM;
	}
	d->in = in;

	int fd = listenfds_take(LISTENFDS_INGEST, SOCK_DGRAM);
	if (fd < 0 && fd != -ENOENT) {
		log_error("the socket passed as \"ingest\" is unusable (%s): check agentd.socket", strerror(-fd));
		return fd;
	}
	bool passed = fd >= 0;
	if (!passed) {
		fd = unixsock_bind(SOCK_DGRAM, c->ingest.socket, c->ingest.socket_mode, 0);
		if (fd < 0) {
			log_error("cannot create the ingest socket %s: %s", c->ingest.socket,
				  fd == -EADDRINUSE ? "another agentd is listening there" : strerror(-fd));
			return fd;
		}
	} else {
		int fl = fcntl(fd, F_GETFL);
		fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	}
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one);
	set_rcvbuf(fd, c->ingest.receive_buffer_bytes);
	in->dfd = fd;
	setup_msgs(in);
	uv_timer_init(d->loop, &in->tick);
	in->tick.data = in;
	in->handles++;
	uv_poll_init(d->loop, &in->dpoll, fd);
	in->handles++;
	in->dpoll.data = in;
	uv_poll_start(&in->dpoll, UV_READABLE, on_dgram);
	in->dpoll_active = true;
	log_info("ingest: datagrams on %s", passed ? "the socket systemd passed" : c->ingest.socket);

	int sfd = listenfds_take(LISTENFDS_STREAM, SOCK_STREAM);
	if (sfd < 0 && sfd != -ENOENT) {
		log_error("the socket passed as \"stream\" is unusable (%s): check agentd-stream.socket",
			  strerror(-sfd));
		return sfd;
	}
	bool spassed = sfd >= 0;
	if (!spassed && c->ingest.stream_socket && c->ingest.stream_socket[0]) {
		sfd = unixsock_bind(SOCK_STREAM, c->ingest.stream_socket, c->ingest.stream_socket_mode, STREAM_BACKLOG);
		if (sfd < 0) {
			log_error("cannot create the stream socket %s: %s", c->ingest.stream_socket,
				  sfd == -EADDRINUSE ? "another agentd is listening there" : strerror(-sfd));
			return sfd;
		}
	}
	if (sfd >= 0) {
		uv_pipe_init(d->loop, &in->server, 0);
		in->handles++;
		in->server.data = in;
		int rc = uv_pipe_open(&in->server, sfd);
		if (!rc)
			rc = uv_listen((uv_stream_t *)&in->server, STREAM_BACKLOG, on_stream_conn);
		if (rc) {
			log_error("cannot listen on the stream socket: %s", uv_strerror(rc));
			uv_close((uv_handle_t *)&in->server, ingest_handle_closed);
			return rc;
		}
		in->have_stream = true;
		log_info("ingest: stream frames on %s",
			 spassed ? "the socket systemd passed" : c->ingest.stream_socket);
	}
	in->ticks = check_qlen() >= 256;
	return 0;
}

void ingest_drain_and_stop(struct agentd *d)
{
	struct ingest *in = d->in;
	if (!in || in->stopped)
		return;
	in->stopped = true;
	if (in->dfd < 0)
		return;
	/* what the kernel already holds is ours to deliver */
	unsigned got = 0;
	while (read_dgrams(in, RECV_ROUNDS, &got))
		;
	uv_timer_stop(&in->tick);
	if (in->dpoll_active) {
		uv_poll_stop(&in->dpoll);
		in->dpoll_active = false;
	}
	for (struct sclient *c = in->clients, *next; c; c = next) {
		next = c->next;
		uv_read_stop((uv_stream_t *)&c->h);
		uv_os_fd_t fd;
		if (uv_fileno((uv_handle_t *)&c->h, &fd) == 0) {
			ssize_t n;
			while (c->cap > c->len && (n = recv(fd, c->buf + c->len, c->cap - c->len, MSG_DONTWAIT)) > 0) {
				c->len += (size_t)n;
				if (sclient_parse(c))
					break;
			}
		}
		sclient_close(c);
	}
	if (in->have_stream) {
		uv_close((uv_handle_t *)&in->server, ingest_handle_closed);
		in->have_stream = false;
	}
	queue_ingest_done(d);
}

void ingest_close(struct agentd *d)
{
	struct ingest *in = d->in;
	if (!in)
		return;
	ingest_drain_and_stop(d);
	d->in = NULL;
	if (in->dfd < 0) { /* start-up failed before the socket was there */
		free(in->bufs);
		free(in);
		return;
	}
	/* the socket file stays: systemd may own it, and a stale one is replaced at start */
	uv_close((uv_handle_t *)&in->tick, ingest_handle_closed);
	uv_close((uv_handle_t *)&in->dpoll, ingest_handle_closed);
	close(in->dfd);
}
