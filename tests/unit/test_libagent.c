/*
 * libagent: what the shim sends decodes to exactly what was logged; limits,
 * defaults, context, drops, reconnect, fork, threads, errno, crash handler.
 * Every case receives on a SOCK_DGRAM socket bound in a fresh temp dir.
 */
#include "agent.h"
#include "agent_proto.h"

#include <check.h>
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RXBUF (AP_MAX_FRAME + 1)

struct rx {
	char dir[64];
	char path[128];
	int fd;
};

static void rx_bind(struct rx *r)
{
	r->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(r->fd, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, r->path, strlen(r->path) + 1);
	ck_assert_int_eq(bind(r->fd, (struct sockaddr *)&sa, sizeof sa), 0);
	int one = 1;
	ck_assert_int_eq(setsockopt(r->fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one), 0);
}

static void rx_open(struct rx *r)
{
	snprintf(r->dir, sizeof r->dir, "/tmp/libagent-test.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(r->dir));
	snprintf(r->path, sizeof r->path, "%s/agentd.sock", r->dir);
	rx_bind(r);
}

static void rx_unbind(struct rx *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	unlink(r->path);
}

static void rx_close(struct rx *r)
{
	rx_unbind(r);
	rmdir(r->dir);
}

/* One datagram within timeout_ms, else -1. pid gets the sender's pid. */
static ssize_t rx_recv(struct rx *r, uint8_t *buf, int timeout_ms, pid_t *pid)
{
	struct pollfd p = {.fd = r->fd, .events = POLLIN};
	if (poll(&p, 1, timeout_ms) <= 0)
		return -1;
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred))];
	} cm;
	struct iovec iov = {.iov_base = buf, .iov_len = RXBUF};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = &cm, .msg_controllen = sizeof cm};
	ssize_t n = recvmsg(r->fd, &mh, MSG_DONTWAIT);
	if (n >= 0 && pid) {
		*pid = 0;
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
				struct ucred uc;
				memcpy(&uc, CMSG_DATA(c), sizeof uc);
				*pid = uc.pid;
			}
	}
	return n;
}

static int rx_drain(struct rx *r, uint8_t *buf)
{
	int n = 0;
	while (recv(r->fd, buf, RXBUF, MSG_DONTWAIT) >= 0)
		n++;
	return n;
}

static void decode(const uint8_t *buf, ssize_t n, ap_record_t *rec)
{
	ck_assert_int_gt(n, 0);
	int r = ap_decode(buf, (size_t)n, 0, rec);
	ck_assert_msg(r == AP_OK, "decode: %s", ap_strerror(r));
}

/* Field i of rec (0-based), or fail. */
static ap_field_t field_at(const ap_record_t *rec, unsigned idx)
{
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, rec);
	for (unsigned i = 0; ap_iter_next(&it, &f); i++)
		if (i == idx)
			return f;
	ck_abort_msg("no field %u", idx);
	return f;
}

/* Number of fields named key; *out gets the last. */
static int find(const ap_record_t *rec, const char *key, ap_field_t *out)
{
	ap_iter_t it;
	ap_field_t f;
	int n = 0;
	ap_iter_init(&it, rec);
	while (ap_iter_next(&it, &f))
		if (f.klen == strlen(key) && memcmp(f.key, key, f.klen) == 0) {
			if (out)
				*out = f;
			n++;
		}
	return n;
}

static void assert_str(const ap_record_t *rec, const char *key, const char *want)
{
	ap_field_t f;
	ck_assert_msg(find(rec, key, &f) == 1, "field %s present once", key);
	ck_assert_int_eq(f.type, AP_T_STRING);
	ck_assert_uint_eq(f.v.s.len, strlen(want));
	ck_assert_msg(memcmp(f.v.s.ptr, want, f.v.s.len) == 0, "field %s = %.*s, want %s", key, (int)f.v.s.len,
		      f.v.s.ptr, want);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static uint8_t *rxbuf;
static struct rx rx;

static void setup(void)
{
	unsetenv("SERVICE_NAME");
	unsetenv("ENVIRONMENT");
	unsetenv("SERVICE_VERSION");
	unsetenv("LOG_TYPE");
	unsetenv("ENABLE_GLOBAL_ERROR_HANDLER");
	unsetenv("AGENT_SOCKET");
	agent_context_clear();
	rxbuf = malloc(RXBUF);
	ck_assert_ptr_nonnull(rxbuf);
	rx_open(&rx);
}

static void teardown(void)
{
	rx_close(&rx);
	free(rxbuf);
	rxbuf = NULL;
}

/* ---- round trip -------------------------------------------------------- */

START_TEST(log_every_field_type_decodes_to_what_was_logged)
{
	agent_t *a = agent_open(rx.path);
	ck_assert_ptr_nonnull(a);
	uint64_t before = now_ns();
	int line = __LINE__ + 1;
	int r = agent_warn(a, "paid \xc3\xa9", AGENT_STR("user_id", "u-42"), AGENT_STR("empty", ""),
			   AGENT_STR("nul", NULL), AGENT_INT("min", INT64_MIN), AGENT_INT("max", INT64_MAX),
			   AGENT_DBL("ratio", 0.25), AGENT_DBL("nan", NAN), AGENT_DBL("ninf", -INFINITY),
			   AGENT_BOOL("yes", 7), AGENT_BOOL("no", 0));
	uint64_t after = now_ns();
	ck_assert_int_eq(r, 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.level, AP_WARN);
	ck_assert_int_eq(rec.flags, 0);
	ck_assert_int_eq(rec.dropped, 0);
	ck_assert(rec.time_ns >= before && rec.time_ns <= after);
	ck_assert_uint_eq(rec.msg_len, 7);
	ck_assert(memcmp(rec.msg, "paid \xc3\xa9", 7) == 0);
	ck_assert_int_eq(rec.nfields, 13);

	ap_field_t f = field_at(&rec, 0);
	ck_assert_int_eq(f.type, AP_T_STRING);
	assert_str(&rec, "user_id", "u-42");
	assert_str(&rec, "empty", "");
	assert_str(&rec, "nul", "");
	ck_assert_int_eq(find(&rec, "min", &f), 1);
	ck_assert_int_eq(f.type, AP_T_INT64);
	ck_assert(f.v.i == INT64_MIN);
	ck_assert_int_eq(find(&rec, "max", &f), 1);
	ck_assert(f.v.i == INT64_MAX);
	ck_assert_int_eq(find(&rec, "ratio", &f), 1);
	ck_assert_int_eq(f.type, AP_T_DOUBLE);
	ck_assert(f.v.d == 0.25);
	ck_assert_int_eq(find(&rec, "nan", &f), 1);
	ck_assert(isnan(f.v.d));
	ck_assert_int_eq(find(&rec, "ninf", &f), 1);
	ck_assert(isinf(f.v.d) && f.v.d < 0);
	ck_assert_int_eq(find(&rec, "yes", &f), 1);
	ck_assert_int_eq(f.type, AP_T_BOOL);
	ck_assert_int_eq(f.v.b, 1);
	ck_assert_int_eq(find(&rec, "no", &f), 1);
	ck_assert_int_eq(f.v.b, 0);
	/* caller info after the call's fields */
	assert_str(&rec, "file_path", __FILE__);
	assert_str(&rec, "function_name", __func__);
	ck_assert_int_eq(find(&rec, "line", &f), 1);
	ck_assert_int_eq(f.type, AP_T_INT64);
	ck_assert_int_eq(f.v.i, line);
	f = field_at(&rec, 10);
	ck_assert(f.klen == 9 && memcmp(f.key, "file_path", 9) == 0);
	agent_close(a);
}
END_TEST

START_TEST(logv_without_caller_info_sends_only_the_fields)
{
	agent_t *a = agent_open(rx.path);
	agent_field_t fs[] = {AGENT_INT("n", 1), AGENT_END, AGENT_INT("after_end", 2)};
	ck_assert_int_eq(agent_logv(a, AGENT_DEBUG, NULL, 0, NULL, "m", fs, 3), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.level, AP_DEBUG);
	ck_assert_int_eq(rec.nfields, 1);
	ck_assert_int_eq(agent_logv(a, AGENT_TRACE, NULL, 0, NULL, "", NULL, 0), 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.nfields, 0);
	ck_assert_int_eq(rec.msg_len, 0);
	agent_close(a);
}
END_TEST

/* Frames of AP_MAX_FRAME-1, AP_MAX_FRAME, AP_MAX_FRAME+1 bytes. */
START_TEST(message_around_frame_limit_is_truncated_only_above_it)
{
	size_t frame = AP_MAX_FRAME - 1 + (size_t)_i;
	size_t mlen = frame - AP_HDR_SIZE;
	char *msg = malloc(mlen + 1);
	memset(msg, 'm', mlen);
	msg[mlen] = '\0';
	agent_t *a = agent_open(rx.path);
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, msg, NULL, 0), 0);
	ap_record_t rec;
	ssize_t n = rx_recv(&rx, rxbuf, 2000, NULL);
	decode(rxbuf, n, &rec);
	if (frame <= AP_MAX_FRAME) {
		ck_assert_int_eq(rec.flags, 0);
		ck_assert_int_eq(n, (ssize_t)frame);
		ck_assert_uint_eq(rec.msg_len, mlen);
	} else {
		ck_assert_int_eq(rec.flags, AP_F_TRUNCATED);
		ck_assert_int_eq(n, AP_MAX_FRAME);
		ck_assert_uint_eq(rec.msg_len, AP_MAX_FRAME - AP_HDR_SIZE);
	}
	ck_assert(memcmp(rec.msg, msg, rec.msg_len) == 0);
	agent_close(a);
	free(msg);
}
END_TEST

START_TEST(field_around_frame_limit_is_skipped_only_above_it)
{
	size_t frame = AP_MAX_FRAME - 1 + (size_t)_i;
	size_t vlen = frame - AP_HDR_SIZE - ap_field_size(AP_T_STRING, 1, 0);
	char *val = malloc(vlen + 1);
	memset(val, 'v', vlen);
	val[vlen] = '\0';
	agent_t *a = agent_open(rx.path);
	agent_field_t f = AGENT_STR("k", val);
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "", &f, 1), 0);
	ap_record_t rec;
	ssize_t n = rx_recv(&rx, rxbuf, 2000, NULL);
	decode(rxbuf, n, &rec);
	if (frame <= AP_MAX_FRAME) {
		ck_assert_int_eq(rec.flags, 0);
		ck_assert_int_eq(n, (ssize_t)frame);
		ck_assert_int_eq(rec.nfields, 1);
		ap_field_t g = field_at(&rec, 0);
		ck_assert_uint_eq(g.v.s.len, vlen);
	} else {
		ck_assert_int_eq(rec.flags, AP_F_TRUNCATED);
		ck_assert_int_eq(rec.nfields, 0);
	}
	agent_close(a);
	free(val);
}
END_TEST

START_TEST(records_between_stack_buffer_and_limit_travel_whole)
{
	/* many fields, none large: more than the stack buffer, less than the
	 * frame limit */
	agent_t *a = agent_open(rx.path);
	agent_field_t fs[600];
	char keys[600][16];
	for (int i = 0; i < 600; i++) {
		snprintf(keys[i], sizeof keys[i], "k%d", i);
		fs[i] = AGENT_INT(keys[i], i);
	}
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, "f.c", 3, "fn", "many", fs, 600), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.flags, 0);
	ck_assert_int_eq(rec.nfields, 603);
	ap_field_t f;
	ck_assert_int_eq(find(&rec, "k599", &f), 1);
	ck_assert_int_eq(f.v.i, 599);
	agent_close(a);
}
END_TEST

START_TEST(printf_formats_and_flags_a_cut_message)
{
	agent_t *a = agent_open(rx.path);
	ck_assert_int_eq(agent_printf(a, AGENT_ERROR, "disk %d%% full on %s", 91, "/var"), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.level, AP_ERROR);
	ck_assert_int_eq(rec.flags, 0);
	ck_assert_uint_eq(rec.msg_len, strlen("disk 91% full on /var"));
	ck_assert(memcmp(rec.msg, "disk 91% full on /var", rec.msg_len) == 0);
	assert_str(&rec, "function_name", __func__);

	size_t big = 10000;
	char *s = malloc(big + 1);
	memset(s, 'x', big);
	s[big] = '\0';
	ck_assert_int_eq(agent_printf(a, AGENT_INFO, "%s", s), 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.flags, AP_F_TRUNCATED);
	ck_assert_uint_gt(rec.msg_len, 1000);
	ck_assert_uint_lt(rec.msg_len, big);
	free(s);
	agent_close(a);
}
END_TEST

/* ---- defaults and context --------------------------------------------- */

START_TEST(defaults_come_from_the_environment_at_open)
{
	setenv("SERVICE_NAME", "billing", 1);
	setenv("ENVIRONMENT", "staging", 1);
	setenv("SERVICE_VERSION", "1.2.3", 1);
	setenv("LOG_TYPE", "WORKER", 1);
	agent_t *a = agent_open(rx.path);
	setenv("SERVICE_NAME", "changed-after-open", 1);
	ck_assert_int_eq(agent_info(a, "hi"), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	assert_str(&rec, "service", "billing");
	assert_str(&rec, "environment", "staging");
	assert_str(&rec, "service_version", "1.2.3");
	assert_str(&rec, "log_type", "WORKER");

	/* the call wins over a default, the context too */
	agent_context_set("environment", "test");
	ck_assert_int_eq(agent_info(a, "hi", AGENT_STR("service", "mine")), 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	assert_str(&rec, "service", "mine");
	assert_str(&rec, "environment", "test");
	assert_str(&rec, "log_type", "WORKER");
	agent_context_clear();
	agent_close(a);
}
END_TEST

START_TEST(context_fields_ride_along_and_the_call_wins)
{
	agent_t *a = agent_open(rx.path);
	ck_assert_int_eq(agent_context_set("trace_id", "t-1"), 0);
	ck_assert_int_eq(agent_context_set("user_id", "ctx-user"), 0);
	ck_assert_int_eq(agent_context_set_field(AGENT_INT("tenant", 7)), 0);
	ck_assert_int_eq(agent_context_set_field(AGENT_DBL("w", 1.5)), 0);
	ck_assert_int_eq(agent_context_set_field(AGENT_BOOL("beta", 1)), 0);
	ck_assert_int_eq(agent_context_set("trace_id", "t-2"), 0); /* replace */
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "m", (agent_field_t[]){AGENT_STR("user_id", "u")}, 1),
			 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.nfields, 5);
	assert_str(&rec, "user_id", "u");
	assert_str(&rec, "trace_id", "t-2");
	ap_field_t f;
	ck_assert_int_eq(find(&rec, "tenant", &f), 1);
	ck_assert_int_eq(f.v.i, 7);
	ck_assert_int_eq(find(&rec, "w", &f), 1);
	ck_assert(f.v.d == 1.5);
	ck_assert_int_eq(find(&rec, "beta", &f), 1);
	ck_assert_int_eq(f.v.b, 1);

	ck_assert_int_eq(agent_context_set("tenant", NULL), 0); /* remove */
	ck_assert_int_eq(agent_context_set("absent", NULL), 0);
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "m", NULL, 0), 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.nfields, 4);
	ck_assert_int_eq(find(&rec, "tenant", NULL), 0);
	assert_str(&rec, "trace_id", "t-2");

	agent_context_clear();
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "m", NULL, 0), 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.nfields, 0);
	agent_close(a);
}
END_TEST

START_TEST(context_limits_are_enforced_and_keep_the_old_state)
{
	char key[16];
	for (int i = 0; i < AGENT_CONTEXT_MAX; i++) {
		snprintf(key, sizeof key, "k%d", i);
		ck_assert_int_eq(agent_context_set(key, "v"), 0);
	}
	ck_assert_int_eq(agent_context_set("one_more", "v"), -ENOSPC);
	ck_assert_int_eq(agent_context_set("k3", "replaced"), 0); /* replace at the max */
	agent_context_clear();

	/* bytes: key + value; limit-1, limit, limit+1 */
	char *v = malloc(AGENT_CONTEXT_BYTES + 2);
	memset(v, 'x', AGENT_CONTEXT_BYTES + 1);
	v[AGENT_CONTEXT_BYTES - 1 - 1] = '\0'; /* "k" + 1022 = 1023 */
	ck_assert_int_eq(agent_context_set("k", v), 0);
	v[AGENT_CONTEXT_BYTES - 1 - 1] = 'x';
	v[AGENT_CONTEXT_BYTES - 1] = '\0'; /* 1024 */
	ck_assert_int_eq(agent_context_set("k", v), 0);
	v[AGENT_CONTEXT_BYTES - 1] = 'x';
	v[AGENT_CONTEXT_BYTES] = '\0'; /* 1025 */
	ck_assert_int_eq(agent_context_set("k", v), -ENOSPC);
	v[AGENT_CONTEXT_BYTES - 1] = '\0';

	agent_t *a = agent_open(rx.path);
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "m", NULL, 0), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ap_field_t f;
	ck_assert_int_eq(find(&rec, "k", &f), 1);
	ck_assert_uint_eq(f.v.s.len, AGENT_CONTEXT_BYTES - 1); /* the old value stayed */

	ck_assert_int_eq(agent_context_set(NULL, "v"), -EINVAL);
	ck_assert_int_eq(agent_context_set("", "v"), -EINVAL);
	ck_assert_int_eq(agent_context_set_field((agent_field_t){.key = "t", .type = 99}), -EINVAL);
	agent_context_clear();
	free(v);
	agent_close(a);
}
END_TEST

static void *ctx_thread(void *arg)
{
	agent_t *a = arg;
	agent_context_set("thread", "other");
	intptr_t r = agent_logv(a, AGENT_INFO, NULL, 0, NULL, "other", NULL, 0);
	return (void *)r;
}

START_TEST(context_belongs_to_the_thread)
{
	agent_t *a = agent_open(rx.path);
	agent_context_set("thread", "main");
	pthread_t t;
	void *ret;
	pthread_create(&t, NULL, ctx_thread, a);
	pthread_join(t, &ret);
	ck_assert_int_eq((intptr_t)ret, 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	assert_str(&rec, "thread", "other");
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "main", NULL, 0), 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	assert_str(&rec, "thread", "main");
	agent_context_clear();
	agent_close(a);
}
END_TEST

/* ---- drops, reconnect, errno ------------------------------------------ */

START_TEST(drops_are_counted_when_nobody_reads_and_ride_on_the_next_datagram)
{
	agent_t *a = agent_open(rx.path);
	int sent = 0, r = 0;
	for (int i = 0; i < 1000000 && (r = agent_info(a, "fill")) == 0; i++)
		sent++;
	ck_assert_int_eq(r, -EAGAIN);
	ck_assert_int_gt(sent, 0);
	for (int i = 0; i < 9; i++)
		ck_assert_int_eq(agent_info(a, "more"), -EAGAIN);
	ck_assert_uint_eq(agent_dropped(a), 10);
	ck_assert_int_eq(rx_drain(&rx, rxbuf), sent);
	ck_assert_int_eq(agent_info(a, "through"), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_uint_eq(rec.dropped, 10);
	ck_assert_int_eq(agent_info(a, "next"), 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_uint_eq(rec.dropped, 0);
	ck_assert_uint_eq(agent_dropped(a), 10);
	agent_close(a);
}
END_TEST

START_TEST(missing_daemon_is_silent_counted_and_keeps_errno)
{
	char path[200];
	snprintf(path, sizeof path, "%s/absent.sock", rx.dir);
	errno = EXDEV;
	agent_t *a = agent_open(path);
	ck_assert_ptr_nonnull(a);
	ck_assert_int_eq(errno, EXDEV);
	ck_assert_int_eq(agent_info(a, "nobody"), -ENOTCONN);
	ck_assert_int_eq(errno, EXDEV);
	ck_assert_int_eq(agent_printf(a, AGENT_INFO, "x%d", 1), -ENOTCONN);
	ck_assert_int_eq(errno, EXDEV);
	ck_assert_uint_eq(agent_dropped(a), 2);
	ck_assert_int_eq(agent_connect(a), -ENOENT);
	ck_assert_int_eq(errno, EXDEV);
	agent_close(a);
	ck_assert_int_eq(errno, EXDEV);

	a = agent_open(rx.path);
	errno = ERANGE;
	ck_assert_int_eq(agent_info(a, "ok"), 0);
	ck_assert_int_eq(errno, ERANGE);
	agent_close(a);
}
END_TEST

START_TEST(default_socket_comes_from_AGENT_SOCKET)
{
	setenv("AGENT_SOCKET", rx.path, 1);
	agent_t *a = agent_open(NULL);
	ck_assert_int_eq(agent_info(a, "env"), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	agent_close(a);
	unsetenv("AGENT_SOCKET");
}
END_TEST

START_TEST(reconnects_after_the_socket_is_removed_and_recreated)
{
	agent_t *a = agent_open(rx.path);
	ck_assert_int_eq(agent_info(a, "first"), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);

	rx_unbind(&rx);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ck_assert_int_eq(agent_info(a, "lost"), -ENOTCONN);
	rx_bind(&rx);
	int r, failed = 1;
	for (int i = 0; i < 300 && (r = agent_info(a, "again")) != 0; i++) {
		ck_assert_int_eq(r, -ENOTCONN);
		failed++;
		nanosleep(&(struct timespec){0, 10000000}, NULL);
	}
	ck_assert_int_eq(r, 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ck_assert_int_ge(ms, 80); /* no reconnect attempt within 100 ms */
	ck_assert_uint_eq(agent_dropped(a), (uint64_t)failed);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_uint_eq(rec.dropped, (uint32_t)failed);
	ck_assert(rec.msg_len == 5 && memcmp(rec.msg, "again", 5) == 0);
	agent_close(a);
}
END_TEST

START_TEST(restarted_daemon_gets_the_record_at_once)
{
	/* the socket is re-created (restart) between two calls that are more
	 * than 100 ms apart: the failing send reconnects and resends */
	agent_t *a = agent_open(rx.path);
	rx_unbind(&rx);
	rx_bind(&rx);
	ck_assert_int_eq(agent_info(a, "after restart"), 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_uint_eq(agent_dropped(a), 0);
	agent_close(a);
}
END_TEST

/* ---- fork, threads, blocking ------------------------------------------ */

START_TEST(forked_child_logs_with_its_own_pid)
{
	agent_t *a = agent_open(rx.path);
	char *big = malloc(20000);
	memset(big, 'b', 19999);
	big[19999] = '\0';
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int r1 = agent_info(a, "from child");
		int r2 = agent_info(a, big);
		_exit(r1 == 0 && r2 == 0 ? 0 : 1);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ap_record_t rec;
	pid_t from;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, &from), &rec);
	ck_assert_int_eq(from, pid);
	ck_assert(rec.msg_len == 10 && memcmp(rec.msg, "from child", 10) == 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, &from), &rec);
	ck_assert_int_eq(from, pid);
	ck_assert_uint_eq(rec.msg_len, 19999);
	ck_assert_int_eq(agent_info(a, "from parent"), 0);
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, &from), &rec);
	ck_assert_int_eq(from, getpid());
	free(big);
	agent_close(a);
}
END_TEST

#define NTHREADS 8
#define PER_THREAD 2000

struct reader {
	struct rx *rx;
	long received;
	long dropped_hdr;
	long bad;
	long per_thread[NTHREADS];
};

static void *reader_main(void *arg)
{
	struct reader *rd = arg;
	uint8_t *buf = malloc(RXBUF);
	for (;;) {
		ssize_t n = rx_recv(rd->rx, buf, 10000, NULL);
		if (n < 0)
			break;
		ap_record_t rec;
		if (ap_decode(buf, (size_t)n, 0, &rec) != AP_OK) {
			rd->bad++;
			continue;
		}
		rd->received++;
		rd->dropped_hdr += rec.dropped;
		if (rec.msg_len == 3 && memcmp(rec.msg, "END", 3) == 0)
			break;
		ap_field_t f;
		if (find(&rec, "thread", &f) == 1 && f.v.i >= 0 && f.v.i < NTHREADS)
			rd->per_thread[f.v.i]++;
		else
			rd->bad++;
	}
	free(buf);
	return NULL;
}

struct sender {
	agent_t *a;
	int id;
	long fails;
};

static void *sender_main(void *arg)
{
	struct sender *s = arg;
	char big[6000];
	memset(big, 'B', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	for (int i = 0; i < PER_THREAD; i++) {
		int r = i % 100 == 0 ? agent_info(s->a, big, AGENT_INT("thread", s->id), AGENT_INT("seq", i))
				     : agent_info(s->a, "rec", AGENT_INT("thread", s->id), AGENT_INT("seq", i));
		if (r != 0)
			s->fails++;
		if (r != 0 && r != -EAGAIN)
			s->fails += 1000000; /* unexpected */
	}
	return NULL;
}

START_TEST(eight_threads_at_once_every_record_accounted_for)
{
	agent_t *a = agent_open(rx.path);
	struct reader rd = {.rx = &rx};
	pthread_t rt, st[NTHREADS];
	struct sender s[NTHREADS];
	pthread_create(&rt, NULL, reader_main, &rd);
	for (int i = 0; i < NTHREADS; i++) {
		s[i] = (struct sender){.a = a, .id = i};
		pthread_create(&st[i], NULL, sender_main, &s[i]);
	}
	long fails = 0;
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(st[i], NULL);
		fails += s[i].fails;
	}
	long end_tries = 1;
	while (agent_info(a, "END") != 0) {
		end_tries++;
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	}
	pthread_join(rt, NULL);
	ck_assert_int_eq(rd.bad, 0);
	ck_assert_int_lt(fails, 1000000);
	uint64_t dropped = agent_dropped(a);
	ck_assert_uint_eq(dropped, (uint64_t)(fails + end_tries - 1));
	ck_assert_int_eq(rd.received, NTHREADS * PER_THREAD + end_tries - (long)dropped);
	ck_assert_int_eq(rd.dropped_hdr, (long)dropped);
	for (int i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(rd.per_thread[i], PER_THREAD - s[i].fails);
	agent_close(a);
}
END_TEST

static void *slow_reader(void *arg)
{
	struct reader *rd = arg;
	uint8_t *buf = malloc(RXBUF);
	for (;;) {
		nanosleep(&(struct timespec){0, 200000}, NULL);
		ssize_t n = rx_recv(rd->rx, buf, 10000, NULL);
		if (n < 0)
			break;
		ap_record_t rec;
		if (ap_decode(buf, (size_t)n, 0, &rec) != AP_OK)
			rd->bad++;
		rd->received++;
		if (rec.msg_len == 3 && memcmp(rec.msg, "END", 3) == 0)
			break;
	}
	free(buf);
	return NULL;
}

START_TEST(blocking_handle_waits_instead_of_dropping)
{
	agent_t *a = agent_open_flags(rx.path, AGENT_BLOCKING);
	ck_assert_ptr_nonnull(a);
	struct reader rd = {.rx = &rx};
	pthread_t rt;
	pthread_create(&rt, NULL, slow_reader, &rd);
	for (int i = 0; i < 200; i++)
		ck_assert_int_eq(agent_info(a, "wait", AGENT_INT("i", i)), 0);
	ck_assert_int_eq(agent_info(a, "END"), 0);
	pthread_join(rt, NULL);
	ck_assert_int_eq(rd.bad, 0);
	ck_assert_int_eq(rd.received, 201);
	ck_assert_uint_eq(agent_dropped(a), 0);
	agent_close(a);

	char path[200];
	snprintf(path, sizeof path, "%s/absent.sock", rx.dir);
	a = agent_open_flags(path, AGENT_BLOCKING);
	ck_assert_int_eq(agent_info(a, "nobody"), -ENOENT); /* the real reason */
	agent_close(a);
}
END_TEST

/* ---- arguments, levels ------------------------------------------------- */

START_TEST(bad_arguments_are_rejected)
{
	agent_t *a = agent_open(rx.path);
	ck_assert_int_eq(agent_info(NULL, "x"), -EINVAL);
	ck_assert_int_eq(agent_log(a, 6, "x"), -EINVAL);
	ck_assert_int_eq(agent_log(a, -1, "x"), -EINVAL);
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, NULL, NULL, 0), -EINVAL);
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "x", NULL, 2), -EINVAL);
	agent_field_t nokey = {.key = NULL, .type = AGENT_T_INT};
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "x", &nokey, 1), -EINVAL);
	agent_field_t badtype = {.key = "k", .type = 42};
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "x", &badtype, 1), -EINVAL);
	ck_assert_int_eq(agent_printf_(a, AGENT_INFO, NULL, 0, NULL, NULL), -EINVAL);
	ck_assert_int_eq(rx_recv(&rx, rxbuf, 50, NULL), -1); /* nothing sent */
	ck_assert_uint_eq(agent_dropped(a), 0);
	ck_assert_uint_eq(agent_dropped(NULL), 0);
	ck_assert_int_eq(agent_connect(NULL), -EINVAL);
	ck_assert_int_eq(agent_crash_handler_enable(NULL), -EINVAL);
	agent_crash_handler_disable(NULL);
	agent_close(NULL);

	/* a key above 255 bytes is skipped and flagged, the rest travels */
	char longkey[300];
	memset(longkey, 'k', sizeof longkey - 1);
	longkey[sizeof longkey - 1] = '\0';
	ck_assert_int_eq(agent_logv(a, AGENT_INFO, NULL, 0, NULL, "x",
				    (agent_field_t[]){AGENT_INT(longkey, 1), AGENT_INT("ok", 2)}, 2),
			 0);
	ap_record_t rec;
	decode(rxbuf, rx_recv(&rx, rxbuf, 2000, NULL), &rec);
	ck_assert_int_eq(rec.flags, AP_F_TRUNCATED);
	ck_assert_int_eq(rec.nfields, 1);
	agent_close(a);

	char path[200];
	memset(path, 'p', sizeof path - 1);
	path[sizeof path - 1] = '\0';
	errno = 0;
	ck_assert_ptr_null(agent_open(path));
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_ptr_null(agent_open(""));
	ck_assert_ptr_null(agent_open_flags(rx.path, 0x80));
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(level_parse_accepts_names_aliases_and_syslog_numbers)
{
	ck_assert_int_eq(agent_level_parse("trace"), AGENT_TRACE);
	ck_assert_int_eq(agent_level_parse("DEBUG"), AGENT_DEBUG);
	ck_assert_int_eq(agent_level_parse("notice"), AGENT_INFO);
	ck_assert_int_eq(agent_level_parse("Warning"), AGENT_WARN);
	ck_assert_int_eq(agent_level_parse("err"), AGENT_ERROR);
	ck_assert_int_eq(agent_level_parse("crit"), AGENT_FATAL);
	ck_assert_int_eq(agent_level_parse("4"), AGENT_WARN);
	ck_assert_int_eq(agent_level_parse("0"), AGENT_FATAL);
	ck_assert_int_eq(agent_level_parse("8"), -1);
	ck_assert_int_eq(agent_level_parse("verbose"), -1);
	ck_assert_int_eq(agent_level_parse(""), -1);
	ck_assert_int_eq(agent_level_parse(NULL), -1);
}
END_TEST

/* ---- crash handler ----------------------------------------------------- */

static char self_exe[4096] = "/proc/self/exe";

/* Runs in a re-executed copy of this binary (see main). */
static int crash_child(const char *what)
{
	struct rlimit no_core = {0, 0};
	setrlimit(RLIMIT_CORE, &no_core);
	agent_t *a = agent_open(NULL); /* ENABLE_GLOBAL_ERROR_HANDLER=yes */
	if (!a)
		return 3;
	if (strcmp(what, "abort") == 0)
		abort();
	volatile uintptr_t addr = 16;
	*(volatile int *)addr = 1;
	return 4;
}

static void run_crash(const char *what, int want_sig, ap_record_t *rec)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		setenv("LIBAGENT_TEST_CRASH", what, 1);
		setenv("AGENT_SOCKET", rx.path, 1);
		setenv("ENABLE_GLOBAL_ERROR_HANDLER", "Yes", 1);
		/* sanitizers must leave SIGSEGV to the handler under test */
		setenv("ASAN_OPTIONS", "handle_segv=0:handle_abort=0:detect_leaks=0", 1);
		setenv("UBSAN_OPTIONS", "handle_segv=0:handle_abort=0", 1);
		execl(self_exe, "test_libagent", (char *)NULL);
		_exit(127);
	}
	ssize_t n = rx_recv(&rx, rxbuf, 20000, NULL);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFSIGNALED(st), "child exited with %d instead of dying", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	ck_assert_int_eq(WTERMSIG(st), want_sig);
	decode(rxbuf, n, rec);
	ck_assert_int_eq(rec->level, AP_FATAL);
}

START_TEST(crash_handler_reports_a_segfault_and_the_child_still_dies_of_it)
{
	ap_record_t rec;
	run_crash("segv", SIGSEGV, &rec);
	const char *want = "fatal signal SIGSEGV (11) at 0x10";
	ck_assert_uint_eq(rec.msg_len, strlen(want));
	ck_assert(memcmp(rec.msg, want, rec.msg_len) == 0);
	assert_str(&rec, "signal", "SIGSEGV");
	assert_str(&rec, "error_type", "SIGSEGV");
	assert_str(&rec, "fault_address", "0x10");
	ap_field_t f;
	ck_assert_int_eq(find(&rec, "signo", &f), 1);
	ck_assert_int_eq(f.v.i, SIGSEGV);
	ck_assert_int_eq(find(&rec, "stack_trace", &f), 1);
	ck_assert_uint_gt(f.v.s.len, 8);
	ck_assert(memcmp(f.v.s.ptr, "#0 0x", 5) == 0);
}
END_TEST

START_TEST(crash_handler_reports_abort_and_keeps_the_exit_status)
{
	ap_record_t rec;
	run_crash("abort", SIGABRT, &rec);
	const char *want = "fatal signal SIGABRT (6)";
	ck_assert_uint_eq(rec.msg_len, strlen(want));
	ck_assert(memcmp(rec.msg, want, rec.msg_len) == 0);
	assert_str(&rec, "signal", "SIGABRT");
	ck_assert_int_eq(find(&rec, "fault_address", NULL), 0);
}
END_TEST

START_TEST(crash_handler_is_held_by_one_handle_and_released_at_close)
{
	setenv("ENABLE_GLOBAL_ERROR_HANDLER", "TRUE", 1);
	agent_t *a = agent_open(rx.path);
	unsetenv("ENABLE_GLOBAL_ERROR_HANDLER");
	agent_t *b = agent_open(rx.path);
	struct sigaction sa;
	sigaction(SIGSEGV, NULL, &sa);
	ck_assert(sa.sa_flags & SA_SIGINFO);
	ck_assert_int_eq(agent_crash_handler_enable(b), -EBUSY);
	ck_assert_int_eq(agent_crash_handler_enable(a), 0);
	agent_close(a);
	ck_assert_int_eq(agent_crash_handler_enable(b), 0);
	agent_crash_handler_disable(b);
	agent_crash_handler_disable(b);
	agent_close(b);

	setenv("ENABLE_GLOBAL_ERROR_HANDLER", "no", 1);
	a = agent_open(rx.path);
	b = agent_open(rx.path);
	ck_assert_int_eq(agent_crash_handler_enable(b), 0); /* a did not take it */
	agent_close(b);
	agent_close(a);
	unsetenv("ENABLE_GLOBAL_ERROR_HANDLER");
}
END_TEST

static Suite *libagent_suite(void)
{
	Suite *s = suite_create("libagent");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, log_every_field_type_decodes_to_what_was_logged);
	tcase_add_test(tc, logv_without_caller_info_sends_only_the_fields);
	tcase_add_loop_test(tc, message_around_frame_limit_is_truncated_only_above_it, 0, 3);
	tcase_add_loop_test(tc, field_around_frame_limit_is_skipped_only_above_it, 0, 3);
	tcase_add_test(tc, records_between_stack_buffer_and_limit_travel_whole);
	tcase_add_test(tc, printf_formats_and_flags_a_cut_message);
	tcase_add_test(tc, defaults_come_from_the_environment_at_open);
	tcase_add_test(tc, context_fields_ride_along_and_the_call_wins);
	tcase_add_test(tc, context_limits_are_enforced_and_keep_the_old_state);
	tcase_add_test(tc, context_belongs_to_the_thread);
	tcase_add_test(tc, drops_are_counted_when_nobody_reads_and_ride_on_the_next_datagram);
	tcase_add_test(tc, missing_daemon_is_silent_counted_and_keeps_errno);
	tcase_add_test(tc, default_socket_comes_from_AGENT_SOCKET);
	tcase_add_test(tc, reconnects_after_the_socket_is_removed_and_recreated);
	tcase_add_test(tc, restarted_daemon_gets_the_record_at_once);
	tcase_add_test(tc, forked_child_logs_with_its_own_pid);
	tcase_add_test(tc, eight_threads_at_once_every_record_accounted_for);
	tcase_add_test(tc, blocking_handle_waits_instead_of_dropping);
	tcase_add_test(tc, bad_arguments_are_rejected);
	tcase_add_test(tc, level_parse_accepts_names_aliases_and_syslog_numbers);
	tcase_add_test(tc, crash_handler_reports_a_segfault_and_the_child_still_dies_of_it);
	tcase_add_test(tc, crash_handler_reports_abort_and_keeps_the_exit_status);
	tcase_add_test(tc, crash_handler_is_held_by_one_handle_and_released_at_close);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	const char *crash = getenv("LIBAGENT_TEST_CRASH");
	if (crash)
		return crash_child(crash);
	/* the real path, also under valgrind (which emulates this readlink) */
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
	if (n > 0)
		self_exe[n] = '\0';
	else
		snprintf(self_exe, sizeof self_exe, "/proc/self/exe");
	SRunner *sr = srunner_create(libagent_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
