/*
 * sink: the benchmark's HTTP endpoint. Accepts `POST /logs` with a
 * `{"logs":[...]}` body (plain or `Content-Encoding: gzip`, Content-Length or
 * chunked, HTTP/1.1 keep-alive, `Expect: 100-continue`), counts the records,
 * takes each record's `created_at` (Unix seconds, a number or a quoted
 * number) to measure latency to its arrival here, discards the body and
 * answers `200 {"status":"ok","count":N}` as the log server does, so that an
 * agent sees its batch confirmed.
 *
 *   sink [-p PORT]          listens on 127.0.0.1 (PORT 0: any free port)
 *
 * Prints "sink listening on PORT" once ready. Control, on the same port:
 *   GET /stats   counters since the last reset, as one JSON object
 *   POST /reset  zeroes the counters
 * A body that is not gzip when it says so, or not the expected JSON, is
 * answered 400 and counted. Single-threaded (epoll); exits on SIGTERM/SIGINT.
 */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define BODY_MAX (256u << 20)
#define HEAD_MAX (64u << 10)
#define BUCKET_US 100
#define NBUCKETS (120u * 1000000u / BUCKET_US) /* 120 s */

struct conn {
	int fd;
	char *buf;
	size_t len, cap;
	int continued; /* 100 Continue already sent for the request in buf */
};

static struct {
	uint64_t requests, records, bad, gzip_requests;
	uint64_t wire_bytes, body_bytes, json_bytes, with_ts;
	double first, last, lat_max;
	uint32_t *hist;
} st;

static volatile sig_atomic_t stopping;
static char *scratch; /* decoded / inflated bodies */
static size_t scratch_cap;
static char *chunkbuf;
static size_t chunk_cap;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static double now_real(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int reserve(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	if (need > BODY_MAX + 1)
		return -1;
	size_t n = *cap ? *cap : 65536;
	while (n < need)
		n *= 2;
	char *q = realloc(*p, n);
	if (!q)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

/* ---- JSON: just enough to walk {"logs":[{...},...]} --------------------- */

static const char *ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

/* p at '"'; returns the position after the closing quote, or NULL. */
static const char *skip_string(const char *p, const char *e)
{
	for (p++; p < e; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *skip_value(const char *p, const char *e)
{
	int depth = 0;
	p = ws(p, e);
	if (p >= e)
		return NULL;
	if (*p == '"')
		return skip_string(p, e);
	if (*p != '{' && *p != '[') {
		while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n')
			p++;
		return p;
	}
	for (; p < e; p++) {
		if (*p == '"') {
			p = skip_string(p, e);
			if (!p)
				return NULL;
			p--;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (--depth == 0)
				return p + 1;
		}
	}
	return NULL;
}

static void record_latency(double created, double now)
{
	double lat = now - created;
	if (lat > st.lat_max)
		st.lat_max = lat;
	double b = lat * 1e6 / BUCKET_US;
	size_t i = b <= 0 ? 0 : b >= NBUCKETS ? NBUCKETS - 1 : (size_t)b;
	st.hist[i]++;
	st.with_ts++;
}

/* One record object at p; returns the position after it, or NULL. */
static const char *walk_record(const char *p, const char *e, double now)
{
	if (p >= e || *p != '{')
		return skip_value(p, e);
	p = ws(p + 1, e);
	if (p < e && *p == '}')
		return p + 1;
	while (p < e) {
		if (*p != '"')
			return NULL;
		const char *k = p + 1, *ke = skip_string(p, e);
		if (!ke)
			return NULL;
		p = ws(ke, e);
		if (p >= e || *p != ':')
			return NULL;
		p = ws(p + 1, e);
		if (ke - 1 - k == 10 && memcmp(k, "created_at", 10) == 0) {
			const char *v = p < e && *p == '"' ? p + 1 : p;
			char *end;
			double t = strtod(v, &end);
			if (end != v && isfinite(t))
				record_latency(t, now);
		}
		p = skip_value(p, e);
		if (!p)
			return NULL;
		p = ws(p, e);
		if (p < e && *p == ',') {
			p = ws(p + 1, e);
			continue;
		}
		if (p < e && *p == '}')
			return p + 1;
		return NULL;
	}
	return NULL;
}

/* Counts the records of a {"logs":[...]} body (NUL-terminated); -1: bad. */
static long count_records(const char *p, size_t n, double now)
{
	const char *e = p + n;
	long count = -1;
	p = ws(p, e);
	if (p >= e || *p != '{')
		return -1;
	p = ws(p + 1, e);
	while (p < e && *p == '"') {
		const char *k = p + 1, *ke = skip_string(p, e);
		if (!ke)
			return -1;
		p = ws(ke, e);
		if (p >= e || *p != ':')
			return -1;
		p = ws(p + 1, e);
		if (ke - 1 - k == 4 && memcmp(k, "logs", 4) == 0) {
			if (p >= e || *p != '[')
				return -1;
			count = 0;
			p = ws(p + 1, e);
			if (p < e && *p == ']') {
				p++;
			} else {
				for (;;) {
					p = walk_record(p, e, now);
					if (!p)
						return -1;
					count++;
					p = ws(p, e);
					if (p < e && *p == ',') {
						p = ws(p + 1, e);
						continue;
					}
					if (p < e && *p == ']') {
						p++;
						break;
					}
					return -1;
				}
			}
		} else {
			p = skip_value(p, e);
			if (!p)
				return -1;
		}
		p = ws(p, e);
		if (p < e && *p == ',')
			p = ws(p + 1, e);
	}
	return count;
}

static long gunzip(const char *in, size_t n, size_t *outlen)
{
	z_stream z;
	memset(&z, 0, sizeof z);
	if (inflateInit2(&z, 15 + 16) != Z_OK)
		return -1;
	if (reserve(&scratch, &scratch_cap, n * 4 + 1) < 0) {
		inflateEnd(&z);
		return -1;
	}
	z.next_in = (Bytef *)(uintptr_t)in;
	z.avail_in = (uInt)n;
	size_t done = 0;
	int r;
	do {
		if (scratch_cap - done < 65536 && reserve(&scratch, &scratch_cap, scratch_cap * 2) < 0)
			break;
		z.next_out = (Bytef *)scratch + done;
		z.avail_out = (uInt)(scratch_cap - done - 1);
		r = inflate(&z, Z_NO_FLUSH);
		done = scratch_cap - 1 - z.avail_out;
	} while (r == Z_OK);
	inflateEnd(&z);
	if (r != Z_STREAM_END)
		return -1;
	scratch[done] = '\0';
	*outlen = done;
	return 0;
}

/* ---- HTTP ------------------------------------------------------------------ */

static void reply(struct conn *c, int code, const char *body)
{
	char head[256];
	const char *reason = code == 200 ? "OK" : code == 400 ? "Bad Request" : code == 404 ? "Not Found" : "Error";
	size_t bl = strlen(body);
	int hl = snprintf(head, sizeof head,
			  "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", code,
			  reason, bl);
	struct iovec iov[2] = {{head, (size_t)hl}, {(void *)(uintptr_t)body, bl}};
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
	if (sendmsg(c->fd, &m, MSG_NOSIGNAL) != (ssize_t)((size_t)hl + bl))
		shutdown(c->fd, SHUT_RDWR);
}

static size_t pct(double q)
{
	uint64_t target = (uint64_t)ceil(q * (double)st.with_ts), acc = 0;
	for (size_t i = 0; i < NBUCKETS; i++) {
		acc += st.hist[i];
		if (acc >= target && target > 0)
			return i;
	}
	return 0;
}

static void stats_reply(struct conn *c)
{
	char body[1024];
	double p50 = st.with_ts ? ((double)pct(0.50) + 0.5) * BUCKET_US / 1000.0 : 0;
	double p99 = st.with_ts ? ((double)pct(0.99) + 0.5) * BUCKET_US / 1000.0 : 0;
	snprintf(body, sizeof body,
		 "{\"requests\":%llu,\"records\":%llu,\"bad\":%llu,\"gzip_requests\":%llu,\"wire_bytes\":%llu,"
		 "\"body_bytes\":%llu,\"json_bytes\":%llu,\"with_ts\":%llu,\"first\":%.6f,\"last\":%.6f,"
		 "\"p50_ms\":%.2f,\"p99_ms\":%.2f,\"max_ms\":%.2f}",
		 (unsigned long long)st.requests, (unsigned long long)st.records, (unsigned long long)st.bad,
		 (unsigned long long)st.gzip_requests, (unsigned long long)st.wire_bytes,
		 (unsigned long long)st.body_bytes, (unsigned long long)st.json_bytes, (unsigned long long)st.with_ts,
		 st.first, st.last, p50, p99, st.lat_max * 1000.0);
	reply(c, 200, body);
}

static void reset_stats(void)
{
	uint32_t *h = st.hist;
	memset(&st, 0, sizeof st);
	memset(h, 0, NBUCKETS * sizeof *h);
	st.hist = h;
}

static const char *header(const char *head, size_t hlen, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *p = memchr(head, '\n', hlen), *e = head + hlen;
	while (p && p + 1 < e) {
		p++;
		const char *eol = memchr(p, '\n', (size_t)(e - p));
		if (!eol)
			break;
		if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
			const char *v = p + nl + 1;
			while (v < eol && (*v == ' ' || *v == '\t'))
				v++;
			const char *ve = eol;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		p = eol;
	}
	return NULL;
}

static int has_value(const char *head, size_t hlen, const char *name, const char *want)
{
	size_t vl;
	const char *v = header(head, hlen, name, &vl);
	size_t wl = strlen(want);
	if (!v)
		return 0;
	for (size_t i = 0; i + wl <= vl; i++)
		if (strncasecmp(v + i, want, wl) == 0)
			return 1;
	return 0;
}

/* Decodes a chunked body at p (n bytes available). Returns the bytes it
 * spans (body in chunkbuf, *blen), 0 when incomplete, -1 when bad. */
static long dechunk(const char *p, size_t n, size_t *blen)
{
	size_t off = 0, out = 0;
	for (;;) {
		const char *eol = memchr(p + off, '\n', n - off);
		if (!eol)
			return 0;
		char *end;
		unsigned long sz = strtoul(p + off, &end, 16);
		if (end == p + off || sz > BODY_MAX)
			return -1;
		off = (size_t)(eol - p) + 1;
		if (sz == 0) {
			/* trailers, then an empty line */
			for (;;) {
				const char *l = memchr(p + off, '\n', n - off);
				if (!l)
					return 0;
				size_t ll = (size_t)(l - (p + off));
				off += ll + 1;
				if (ll == 0 || (ll == 1 && p[off - 2] == '\r')) {
					*blen = out;
					return (long)off;
				}
			}
		}
		if (n - off < sz + 2)
			return 0;
		if (reserve(&chunkbuf, &chunk_cap, out + sz + 1) < 0)
			return -1;
		memcpy(chunkbuf + out, p + off, sz);
		out += sz;
		off += sz;
		if (p[off] == '\r')
			off++;
		if (p[off] != '\n')
			return -1;
		off++;
	}
}

/* Handles one complete request at the start of c->buf. Returns the bytes it
 * used, 0 when more are needed, -1 to close. */
static long handle(struct conn *c)
{
	char *hend = memmem(c->buf, c->len, "\r\n\r\n", 4);
	if (!hend)
		return c->len > HEAD_MAX ? -1 : 0;
	size_t hlen = (size_t)(hend - c->buf) + 4;
	const char *head = c->buf;
	size_t vl, blen = 0;
	const char *body;
	long used;
	int chunked = has_value(head, hlen, "Transfer-Encoding", "chunked");

	if (!c->continued && has_value(head, hlen, "Expect", "100-continue")) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
		if (send(c->fd, cont, sizeof cont - 1, MSG_NOSIGNAL) < 0)
			return -1;
		c->continued = 1;
	}
	if (chunked) {
		long r = dechunk(c->buf + hlen, c->len - hlen, &blen);
		if (r <= 0)
			return r;
		body = chunkbuf;
		used = (long)hlen + r;
	} else {
		const char *v = header(head, hlen, "Content-Length", &vl);
		unsigned long cl = v ? strtoul(v, NULL, 10) : 0;
		if (cl > BODY_MAX)
			return -1;
		if (c->len - hlen < cl)
			return 0;
		body = c->buf + hlen;
		blen = cl;
		used = (long)(hlen + cl);
	}
	c->continued = 0;

	if (strncmp(head, "GET /stats ", 11) == 0) {
		stats_reply(c);
		return used;
	}
	if (strncmp(head, "POST /reset ", 12) == 0) {
		reset_stats();
		reply(c, 200, "{\"status\":\"ok\"}");
		return used;
	}
	if (strncmp(head, "GET / ", 6) == 0) {
		reply(c, 200, "{\"status\":\"ok\"}");
		return used;
	}
	if (strncmp(head, "POST /logs", 10) != 0) {
		reply(c, 404, "{\"detail\":\"Not Found\"}");
		return used;
	}

	double now = now_real();
	const char *json = body;
	size_t jlen = blen;
	int gz = has_value(head, hlen, "Content-Encoding", "gzip");
	long count;
	if (gz) {
		count = gunzip(body, blen, &jlen) < 0 ? -1 : 0;
		json = scratch;
	} else {
		count = 0;
	}
	if (count == 0) {
		/* the byte after the body is ours (a spare byte in every buffer) */
		char *after = (char *)(uintptr_t)json + jlen, saved = *after;
		*after = '\0';
		count = count_records(json, jlen, now);
		*after = saved;
	}
	if (count < 0) {
		st.bad++;
		reply(c, 400, "{\"detail\":\"bad body\"}");
		return used;
	}
	st.requests++;
	st.gzip_requests += gz != 0;
	st.records += (uint64_t)count;
	st.wire_bytes += (uint64_t)used;
	st.body_bytes += blen;
	st.json_bytes += jlen;
	if (st.first == 0)
		st.first = now;
	st.last = now;
	char ans[64];
	snprintf(ans, sizeof ans, "{\"status\":\"ok\",\"count\":%ld}", count);
	reply(c, 200, ans);
	return used;
}

static void close_conn(int ep, struct conn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c->buf);
	free(c);
}

static int on_readable(struct conn *c)
{
	for (;;) {
		if (reserve(&c->buf, &c->cap, c->len + 65536) < 0)
			return -1;
		ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
		if (r == 0)
			return -1;
		if (r < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			return -1;
		}
		c->len += (size_t)r;
	}
	for (;;) {
		long used = handle(c);
		if (used < 0)
			return -1;
		if (used == 0)
			return 0;
		memmove(c->buf, c->buf + used, c->len - (size_t)used);
		c->len -= (size_t)used;
	}
}

static int parse_port(const char *s)
{
	char *end;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || v < 0 || v > 65535) {
		fprintf(stderr, "sink: bad port \"%s\" (expected 0..65535)\n", s);
		exit(2);
	}
	return (int)v;
}

int main(int argc, char **argv)
{
	int port = 0, opt;
	while ((opt = getopt(argc, argv, "p:")) != -1) {
		if (opt == 'p') {
			port = parse_port(optarg);
		} else {
			fprintf(stderr, "usage: sink [-p PORT]\n");
			return 2;
		}
	}
	st.hist = calloc(NBUCKETS, sizeof *st.hist);
	if (!st.hist)
		return 1;
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t al = sizeof a;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 64) < 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &al) < 0) {
		perror("sink: listen");
		return 1;
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
	printf("sink listening on %u\n", ntohs(a.sin_port));
	fflush(stdout);

	while (!stopping) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, 500);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (!c) {
				int fd;
				while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
					struct conn *nc = calloc(1, sizeof *nc);
					if (!nc) {
						close(fd);
						continue;
					}
					nc->fd = fd;
					setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
					struct epoll_event cev = {.events = EPOLLIN, .data.ptr = nc};
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev);
				}
				continue;
			}
			if (on_readable(c) < 0)
				close_conn(ep, c);
		}
	}
	close(ls);
	close(ep);
	free(st.hist);
	free(scratch);
	free(chunkbuf);
	return 0;
}
