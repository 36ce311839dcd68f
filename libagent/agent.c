/*
 * agent: the libagent handle, the log path and the socket.
 *
 * Owns: one connected SOCK_DGRAM|SOCK_CLOEXEC socket per handle (created at
 * open, reconnected in place with connect(), closed only by agent_close, so
 * a concurrent sender never sees its fd number reused), the environment
 * defaults encoded once at open, and a per-handle AP_MAX_FRAME buffer for
 * records that do not fit the caller's stack buffer.
 *
 * Log path: the record is encoded into a AGENT_STACK_FRAME stack buffer (no
 * lock, no allocation); a larger one is encoded into the handle's big buffer
 * under big_lock. Fields go in this order, and a key appears once: the
 * call's fields, the caller's file_path/function_name/line, the thread's
 * context, the environment defaults; an earlier key hides a later one.
 * Frames above AP_MAX_FRAME are cut by the codec with AP_F_TRUNCATED.
 *
 * Limits and failure: send() uses MSG_DONTWAIT|MSG_NOSIGNAL and never waits
 * (unless the handle is AGENT_BLOCKING). A full socket (EAGAIN) or a missing
 * daemon drops the record and counts it: `dropped` (since open) and
 * `pending` (since the last successful send). The next datagram that gets
 * through carries pending in its header (taken with an atomic exchange,
 * added back when that send fails too; saturates at 2^32-1, the rest waits
 * for the next one). A missing or restarted daemon (ENOENT, ECONNREFUSED,
 * ENOTCONN, ...) is reconnected lazily, at most every 100 ms
 * (CLOCK_MONOTONIC_COARSE). The library never prints and keeps errno.
 *
 * Threads: counters and the connection state are atomics; the fast path
 * takes no lock. Fork: a pthread_atfork child handler re-initialises every
 * handle's big_lock (a thread that held it does not exist in the child);
 * the child keeps using the inherited socket, and agentd sees its own pid
 * with every datagram.
 */
#include "agent_int.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/agentd/agentd.sock"
#define SNDBUF_BYTES (4 * 1024 * 1024)

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct agent *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_prepare(void)
{
	pthread_mutex_lock(&registry_lock);
}

static void atfork_parent(void)
{
	pthread_mutex_unlock(&registry_lock);
}

static void atfork_child(void)
{
	for (struct agent *a = registry; a; a = a->next)
		pthread_mutex_init(&a->big_lock, NULL);
	agent__crash_atfork_child();
	pthread_mutex_init(&registry_lock, NULL);
}

static void atfork_register(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}

static long long coarse_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

size_t agent__hex(char *out, uint64_t v)
{
	static const char digits[] = "0123456789abcdef";
	char tmp[16];
	size_t n = 0;
	do {
		tmp[n++] = digits[v & 0xf];
		v >>= 4;
	} while (v);
	out[0] = '0';
	out[1] = 'x';
	for (size_t i = 0; i < n; i++)
		out[2 + i] = tmp[n - 1 - i];
	return 2 + n;
}

/* ---- socket ------------------------------------------------------------ */

static int set_path(agent_t *a, const char *path)
{
	size_t len = strlen(path);
	memset(&a->addr, 0, sizeof a->addr);
	a->addr.sun_family = AF_UNIX;
	if (len == 0 || len >= sizeof a->addr.sun_path)
		return -EINVAL;
	memcpy(a->addr.sun_path, path, len);
	if (path[0] == '@') /* abstract namespace */
		a->addr.sun_path[0] = '\0';
	a->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '@' ? 0 : 1));
	return 0;
}

static int make_socket(void)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int sz = SNDBUF_BYTES;
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0)
		(void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	return fd;
}

/* The handle's socket, created on first need if open could not. Never
 * replaced once set, so no sender ever uses a closed fd number. */
static int get_fd(agent_t *a)
{
	int fd = atomic_load_explicit(&a->fd, memory_order_acquire);
	if (fd >= 0)
		return fd;
	int nfd = make_socket();
	if (nfd < 0)
		return nfd;
	int expect = -1;
	if (atomic_compare_exchange_strong(&a->fd, &expect, nfd))
		return nfd;
	close(nfd);
	return expect;
}

int agent__connect_now(agent_t *a)
{
	int fd = get_fd(a);
	if (fd < 0)
		return fd;
	if (connect(fd, (const struct sockaddr *)&a->addr, a->addrlen) < 0)
		return -errno;
	atomic_store_explicit(&a->connected, 1, memory_order_release);
	return 0;
}

/* Reconnect, at most once per AGENT_RECONNECT_NS unless the handle blocks.
 * 0 when connected, else a negative errno. */
static int reconnect(agent_t *a)
{
	if (!(a->flags & AGENT_BLOCKING)) {
		long long now = coarse_ns();
		long long next = atomic_load_explicit(&a->next_try_ns, memory_order_relaxed);
		if (now < next)
			return -ENOTCONN;
		if (!atomic_compare_exchange_strong(&a->next_try_ns, &next, now + AGENT_RECONNECT_NS))
			return -ENOTCONN;
	}
	return agent__connect_now(a);
}

static int is_disconnect(int e)
{
	switch (e) {
	case ECONNREFUSED:
	case ENOTCONN:
	case ENOENT:
	case EDESTADDRREQ:
	case ECONNRESET:
	case EPIPE:
	case ENOTSOCK:
	case EBADF:
		return 1;
	default:
		return 0;
	}
}

static int drop(agent_t *a, uint64_t carried, int err)
{
	atomic_fetch_add_explicit(&a->pending, carried + 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&a->dropped, 1, memory_order_relaxed);
	return err;
}

int agent__send(agent_t *a, uint8_t *frame, size_t len)
{
	int blocking = (a->flags & AGENT_BLOCKING) != 0;
	int r;
	if (!atomic_load_explicit(&a->connected, memory_order_acquire) && (r = reconnect(a)) < 0)
		return drop(a, 0, blocking ? r : -ENOTCONN);

	uint64_t carried = 0;
	if (atomic_load_explicit(&a->pending, memory_order_relaxed))
		carried = atomic_exchange_explicit(&a->pending, 0, memory_order_relaxed);
	uint32_t hdr = carried > UINT32_MAX ? UINT32_MAX : (uint32_t)carried;
	ap_frame_set_dropped(frame, hdr);

	int fd = atomic_load_explicit(&a->fd, memory_order_acquire);
	int flags = MSG_NOSIGNAL | (blocking ? 0 : MSG_DONTWAIT);
	int retried = 0;
	for (;;) {
		if (send(fd, frame, len, flags) >= 0) {
			if (carried > hdr)
				atomic_fetch_add_explicit(&a->pending, carried - hdr, memory_order_relaxed);
			return 0;
		}
		int e = errno;
		if (e == EINTR)
			continue;
		if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == ENOMEM)
			return drop(a, carried, -EAGAIN);
		if (!is_disconnect(e))
			return drop(a, carried, -e);
		atomic_store_explicit(&a->connected, 0, memory_order_release);
		if (!retried && (r = reconnect(a)) == 0) {
			retried = 1;
			continue;
		}
		return drop(a, carried, blocking ? (retried ? -e : r) : -ENOTCONN);
	}
}

/* ---- encoding ---------------------------------------------------------- */

/* The call's fields: an array, or a va_list of agent_field_t ending with
 * AGENT_END. */
struct fsrc {
	const agent_field_t *arr;
	size_t n;
	va_list *ap;
};

struct fit {
	const struct fsrc *s;
	size_t i;
	va_list ap;
};

static void fit_start(struct fit *it, const struct fsrc *s)
{
	it->s = s;
	it->i = 0;
	if (s->ap)
		va_copy(it->ap, *s->ap);
}

static void fit_end(struct fit *it)
{
	if (it->s->ap)
		va_end(it->ap);
}

static const agent_field_t *fit_next(struct fit *it, agent_field_t *tmp)
{
	if (it->s->ap) {
		*tmp = va_arg(it->ap, agent_field_t);
		return tmp->type == AGENT_T_END ? NULL : tmp;
	}
	if (it->i >= it->s->n || it->s->arr[it->i].type == AGENT_T_END)
		return NULL;
	return &it->s->arr[it->i++];
}

static int key_eq(const char *k, const char *key, size_t klen)
{
	return k[0] == key[0] && strncmp(k, key, klen) == 0 && k[klen] == '\0';
}

static int src_has(const struct fsrc *s, const char *key, size_t klen)
{
	struct fit it;
	agent_field_t tmp;
	const agent_field_t *f;
	int found = 0;
	fit_start(&it, s);
	while ((f = fit_next(&it, &tmp)) != NULL)
		if (f->key && key_eq(f->key, key, klen)) {
			found = 1;
			break;
		}
	fit_end(&it);
	return found;
}

static int ctx_has(const struct agent_ctx *c, const char *key, size_t klen)
{
	for (unsigned i = 0; c && i < c->n; i++)
		if (c->e[i].klen == klen && memcmp(c->bytes + c->e[i].off, key, klen) == 0)
			return 1;
	return 0;
}

void agent__put_default(const agent_t *a, ap_writer_t *w, unsigned i)
{
	const struct agent_default *d = &a->def[i];
	if (w->cap - w->len < d->len || w->nfields >= AP_MAX_FIELDS) {
		w->flags |= AP_F_TRUNCATED;
		return;
	}
	memcpy(w->buf + w->len, a->defs + d->off, d->len);
	w->len += d->len;
	w->nfields++;
}

enum { CALLER_FILE = 1, CALLER_FUNC = 2, CALLER_LINE = 4 };

static const struct {
	const char *key;
	uint8_t klen;
	unsigned bit;
} caller_keys[] = {
	{"file_path", 9, CALLER_FILE},
	{"function_name", 13, CALLER_FUNC},
	{"line", 4, CALLER_LINE},
};

static int caller_has(unsigned mask, const char *key, size_t klen)
{
	for (size_t i = 0; i < sizeof caller_keys / sizeof caller_keys[0]; i++)
		if ((mask & caller_keys[i].bit) && caller_keys[i].klen == klen &&
		    memcmp(caller_keys[i].key, key, klen) == 0)
			return 1;
	return 0;
}

struct call {
	int level;
	uint64_t time_ns;
	const char *file;
	int line;
	const char *func;
	const char *msg;
	size_t msg_len;
	const struct fsrc *src;
};

/* Bits of the caller keys (CALLER_*) and of the defaults (8 << i) that the
 * key k hides. */
static unsigned hidden_by(const agent_t *a, const char *k, size_t kl)
{
	unsigned bits = 0;
	for (size_t i = 0; i < sizeof caller_keys / sizeof caller_keys[0]; i++)
		if (caller_keys[i].klen == kl && memcmp(caller_keys[i].key, k, kl) == 0)
			bits |= caller_keys[i].bit;
	for (unsigned i = 0; i < a->ndefs; i++)
		if (a->def[i].klen == kl && memcmp(a->def[i].key, k, kl) == 0)
			bits |= 8u << i;
	return bits;
}

static int encode(const agent_t *a, ap_writer_t *w, uint8_t *buf, size_t cap, const struct call *c)
{
	int r = ap_writer_init(w, buf, cap, c->level, c->time_ns, 0, c->msg, c->msg_len);
	if (r < 0)
		return r;

	/* the call's fields, noting which later keys they hide */
	unsigned hidden = 0;
	struct fit it;
	agent_field_t tmp;
	const agent_field_t *f;
	fit_start(&it, c->src);
	while ((f = fit_next(&it, &tmp)) != NULL) {
		if (!f->key) {
			r = -EINVAL;
			break;
		}
		size_t kl = strlen(f->key);
		hidden |= hidden_by(a, f->key, kl);
		switch (f->type) {
		case AGENT_T_STR:
			ap_put_string(w, f->key, kl, f->v.s, f->v.s ? strlen(f->v.s) : 0);
			break;
		case AGENT_T_INT:
			ap_put_int64(w, f->key, kl, f->v.i);
			break;
		case AGENT_T_DBL:
			ap_put_double(w, f->key, kl, f->v.d);
			break;
		case AGENT_T_BOOL:
			ap_put_bool(w, f->key, kl, f->v.b);
			break;
		default:
			r = -EINVAL;
			break;
		}
		if (r < 0)
			break;
	}
	fit_end(&it);
	if (r < 0)
		return r;

	/* the caller's place in the source */
	unsigned caller = 0;
	if (c->file && !(hidden & CALLER_FILE)) {
		ap_put_string(w, "file_path", 9, c->file, strlen(c->file));
		caller |= CALLER_FILE;
	}
	if (c->func && !(hidden & CALLER_FUNC)) {
		ap_put_string(w, "function_name", 13, c->func, strlen(c->func));
		caller |= CALLER_FUNC;
	}
	if (c->line > 0 && !(hidden & CALLER_LINE)) {
		ap_put_int64(w, "line", 4, c->line);
		caller |= CALLER_LINE;
	}

	/* the thread's context */
	const struct agent_ctx *ctx = agent__context();
	for (unsigned i = 0; ctx && i < ctx->n; i++) {
		const char *k = ctx->bytes + ctx->e[i].off;
		size_t kl = ctx->e[i].klen;
		if (caller_has(caller, k, kl) || src_has(c->src, k, kl))
			continue;
		agent__context_put(w, ctx, i);
	}

	/* the environment defaults */
	for (unsigned i = 0; i < a->ndefs; i++) {
		if ((hidden & (8u << i)) || ctx_has(ctx, a->def[i].key, a->def[i].klen))
			continue;
		agent__put_default(a, w, i);
	}
	return 0;
}

static int log_call(agent_t *a, struct call *c, uint16_t extra_flags)
{
	if (!a || c->level < AGENT_TRACE || c->level > AGENT_FATAL || !c->msg)
		return -EINVAL;
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	c->time_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;

	uint8_t stack[AGENT_STACK_FRAME];
	ap_writer_t w;
	int r;
	if (AP_HDR_SIZE + c->msg_len <= sizeof stack) {
		r = encode(a, &w, stack, sizeof stack, c);
		if (r < 0)
			return r;
		if (!(w.flags & AP_F_TRUNCATED)) {
			w.flags |= extra_flags;
			size_t len = ap_writer_finish(&w);
			return agent__send(a, stack, len);
		}
	}
	pthread_mutex_lock(&a->big_lock);
	r = encode(a, &w, a->big, AP_MAX_FRAME, c);
	if (r == 0) {
		w.flags |= extra_flags;
		size_t len = ap_writer_finish(&w);
		r = agent__send(a, a->big, len);
	}
	pthread_mutex_unlock(&a->big_lock);
	return r;
}

int agent_logv(agent_t *a, int level, const char *file, int line, const char *func, const char *msg,
	       const agent_field_t *fields, size_t n)
{
	int saved = errno;
	if (n && !fields) {
		errno = saved;
		return -EINVAL;
	}
	struct fsrc src = {fields, n, NULL};
	struct call c = {level, 0, file, line, func, msg, msg ? strlen(msg) : 0, &src};
	int r = log_call(a, &c, 0);
	errno = saved;
	return r;
}

int agent_log_(agent_t *a, int level, const char *file, int line, const char *func, const char *msg, ...)
{
	int saved = errno;
	va_list ap;
	va_start(ap, msg);
	struct fsrc src = {NULL, 0, &ap};
	struct call c = {level, 0, file, line, func, msg, msg ? strlen(msg) : 0, &src};
	int r = log_call(a, &c, 0);
	va_end(ap);
	errno = saved;
	return r;
}

int agent_printf_(agent_t *a, int level, const char *file, int line, const char *func, const char *fmt, ...)
{
	int saved = errno;
	if (!fmt) {
		errno = saved;
		return -EINVAL;
	}
	char msg[AGENT_PRINTF_MAX];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	uint16_t extra = 0;
	size_t len;
	if (n < 0) {
		len = 0;
		extra = AP_F_TRUNCATED;
	} else if ((size_t)n >= sizeof msg) {
		/* cut at a UTF-8 boundary: back off over continuation bytes */
		len = sizeof msg - 1;
		size_t i = len;
		while (i > 0 && len - i < 4 && ((unsigned char)msg[i] & 0xC0) == 0x80)
			i--;
		if (((unsigned char)msg[i] & 0xC0) != 0x80)
			len = i;
		extra = AP_F_TRUNCATED;
	} else {
		len = (size_t)n;
	}
	struct fsrc src = {NULL, 0, NULL};
	struct call c = {level, 0, file, line, func, msg, len, &src};
	int r = log_call(a, &c, extra);
	errno = saved;
	return r;
}

/* ---- open / close ------------------------------------------------------ */

static const struct {
	const char *env;
	const char *key;
} default_env[AGENT_NDEFAULTS] = {
	{"SERVICE_NAME", "service"},
	{"ENVIRONMENT", "environment"},
	{"SERVICE_VERSION", "service_version"},
	{"LOG_TYPE", "log_type"},
};

static int load_defaults(agent_t *a)
{
	const char *val[AGENT_NDEFAULTS];
	size_t need = AP_HDR_SIZE;
	for (unsigned i = 0; i < AGENT_NDEFAULTS; i++) {
		val[i] = getenv(default_env[i].env);
		if (val[i])
			need += ap_field_size(AP_T_STRING, strlen(default_env[i].key), strlen(val[i]));
	}
	if (need == AP_HDR_SIZE)
		return 0;
	if (need > AP_MAX_FRAME)
		need = AP_MAX_FRAME;
	a->defs = malloc(need);
	if (!a->defs)
		return -ENOMEM;
	ap_writer_t w;
	ap_writer_init(&w, a->defs, need, AP_INFO, 0, 0, NULL, 0);
	for (unsigned i = 0; i < AGENT_NDEFAULTS; i++) {
		if (!val[i])
			continue;
		size_t off = w.len;
		size_t kl = strlen(default_env[i].key);
		if (ap_put_string(&w, default_env[i].key, kl, val[i], strlen(val[i])) < 0)
			continue;
		struct agent_default *d = &a->def[a->ndefs++];
		d->key = default_env[i].key;
		d->klen = (uint8_t)kl;
		d->off = (uint32_t)off;
		d->len = (uint32_t)(w.len - off);
	}
	return 0;
}

static int env_true(const char *v)
{
	return v && (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcasecmp(v, "yes") == 0);
}

agent_t *agent_open_flags(const char *socket_path, unsigned flags)
{
	int saved = errno;
	if (flags & ~AGENT_BLOCKING) {
		errno = EINVAL;
		return NULL;
	}
	if (!socket_path) {
		socket_path = secure_getenv("AGENT_SOCKET");
		if (!socket_path || !*socket_path)
			socket_path = DEFAULT_SOCKET;
	}
	agent_t *a = calloc(1, sizeof *a);
	if (!a) {
		errno = ENOMEM;
		return NULL;
	}
	a->flags = flags;
	atomic_init(&a->fd, -1);
	if (set_path(a, socket_path) < 0) {
		free(a);
		errno = EINVAL;
		return NULL;
	}
	a->big = malloc(AP_MAX_FRAME);
	if (!a->big || load_defaults(a) < 0) {
		free(a->big);
		free(a->defs);
		free(a);
		errno = ENOMEM;
		return NULL;
	}
	pthread_mutex_init(&a->big_lock, NULL);
	int fd = make_socket();
	if (fd >= 0)
		atomic_store(&a->fd, fd);
	/* a daemon that is not there yet is not an error: retry lazily */
	if (agent__connect_now(a) < 0)
		atomic_store(&a->next_try_ns, coarse_ns() + AGENT_RECONNECT_NS);

	pthread_once(&atfork_once, atfork_register);
	pthread_mutex_lock(&registry_lock);
	a->next = registry;
	if (registry)
		registry->prev = a;
	registry = a;
	pthread_mutex_unlock(&registry_lock);

	if (env_true(secure_getenv("ENABLE_GLOBAL_ERROR_HANDLER")))
		(void)agent_crash_handler_enable(a);
	errno = saved;
	return a;
}

agent_t *agent_open(const char *socket_path)
{
	return agent_open_flags(socket_path, 0);
}

void agent_close(agent_t *a)
{
	if (!a)
		return;
	int saved = errno;
	agent_crash_handler_disable(a);
	pthread_mutex_lock(&registry_lock);
	if (a->prev)
		a->prev->next = a->next;
	else
		registry = a->next;
	if (a->next)
		a->next->prev = a->prev;
	pthread_mutex_unlock(&registry_lock);
	int fd = atomic_load(&a->fd);
	if (fd >= 0)
		close(fd);
	pthread_mutex_destroy(&a->big_lock);
	free(a->big);
	free(a->defs);
	free(a);
	errno = saved;
}

uint64_t agent_dropped(const agent_t *a)
{
	if (!a)
		return 0;
	return atomic_load_explicit(&((agent_t *)a)->dropped, memory_order_relaxed);
}

int agent_connect(agent_t *a)
{
	if (!a)
		return -EINVAL;
	int saved = errno;
	int r = agent__connect_now(a);
	errno = saved;
	return r;
}

int agent_level_parse(const char *s)
{
	return s ? ap_level_parse(s, strlen(s)) : -1;
}
