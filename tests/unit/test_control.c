/*
 * Unit tests for agentd/control.c, the parts that need no running daemon:
 * the request parser (limits at CONTROL_REQ_MAX and CONTROL_SERVICE_MAX), the
 * rate ring, the bounded client output, JSON escaping, the tail line and its
 * filters, the status object and the Prometheus text writer.
 */
#include <check.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

/* main.c's, which the library calls back */
void agentd_maybe_exit(struct agentd *ad)
{
	(void)ad;
}

int agentd_reload(struct agentd *ad, char *msg, size_t msglen)
{
	(void)ad;
	snprintf(msg, msglen, "reloaded");
	return 0;
}

static int parse(const char *s, struct control_req *q)
{
	char err[128];
	return control_parse_request(s, strlen(s), q, err, sizeof err);
}

/* ---- request parsing ----------------------------------------------------- */

START_TEST(control_parse_each_command)
{
	struct control_req q;
	static const struct {
		const char *line;
		int cmd;
	} cases[] = {
		{"{\"cmd\":\"status\"}", CTL_STATUS},	{"{\"cmd\":\"tail\"}", CTL_TAIL},
		{"{\"cmd\":\"flush\"}", CTL_FLUSH},	{"{\"cmd\":\"reload\"}", CTL_RELOAD},
		{"{\"cmd\":\"metrics\"}", CTL_METRICS},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ck_assert_int_eq(parse(cases[i].line, &q), 0);
		ck_assert_int_eq(q.cmd, cases[i].cmd);
		ck_assert_int_eq(q.min_level, -1);
		ck_assert(!q.has_service);
	}
}
END_TEST

START_TEST(control_parse_rejects_garbage_with_a_message)
{
	static const char *const bad[] = {
		"",
		"garbage",
		"[\"status\"]",
		"\"status\"",
		"{}",
		"{\"cmd\":1}",
		"{\"cmd\":\"STATUS\"}",
		"{\"cmd\":\"status\",\"cmd\":\"tail\"}",
		"{\"cmd\":\"status\"} {\"cmd\":\"status\"}",
		"{\"cmd\":\"stat\"}",
		"{\"cmd\":\"tail\",\"level\":\"loud\"}",
		"{\"cmd\":\"tail\",\"level\":3}",
		"{\"cmd\":\"tail\",\"service\":5}",
		"{\"cmd\":\"flush\",\"timeout_ms\":-1}",
		"{\"cmd\":\"flush\",\"timeout_ms\":\"1\"}",
		"{\"cmd\":\"status\"",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		struct control_req q = {.cmd = 99};
		char err[128] = "";
		ck_assert_int_eq(control_parse_request(bad[i], strlen(bad[i]), &q, err, sizeof err), -EINVAL);
		ck_assert_msg(err[0], "no message for %s", bad[i]);
		ck_assert_int_eq(q.cmd, 99); /* untouched */
	}
}
END_TEST

START_TEST(control_parse_binary_with_nul_is_refused)
{
	struct control_req q;
	char err[64];
	static const char line[] = "{\"cmd\":\"status\"}\0xx";
	ck_assert_int_eq(control_parse_request(line, sizeof line - 1, &q, err, sizeof err), -EINVAL);
}
END_TEST

START_TEST(control_parse_tail_level_aliases_and_service)
{
	struct control_req q;
	ck_assert_int_eq(parse("{\"cmd\":\"tail\",\"level\":\"warning\",\"service\":\"billing\"}", &q), 0);
	ck_assert_int_eq(q.min_level, AP_WARN);
	ck_assert(q.has_service);
	ck_assert_uint_eq(q.service_len, 7);
	ck_assert_str_eq(q.service, "billing");
	ck_assert_int_eq(parse("{\"cmd\":\"tail\",\"level\":\"CRITICAL\"}", &q), 0);
	ck_assert_int_eq(q.min_level, AP_FATAL);
	ck_assert_int_eq(parse("{\"cmd\":\"tail\",\"level\":\"3\"}", &q), 0);
	ck_assert_int_eq(q.min_level, AP_ERROR);
	ck_assert_int_eq(parse("{\"cmd\":\"tail\",\"level\":null,\"extra\":1}", &q), 0);
	ck_assert_int_eq(q.min_level, -1);
}
END_TEST

static char *tail_with_service_of(size_t n)
{
	char *s = malloc(n + 64);
	int off = snprintf(s, n + 64, "{\"cmd\":\"tail\",\"service\":\"");
	memset(s + off, 's', n);
	memcpy(s + off + n, "\"}", 3);
	return s;
}

START_TEST(control_parse_service_at_limit)
{
	struct control_req q;
	for (size_t n = CONTROL_SERVICE_MAX - 1; n <= CONTROL_SERVICE_MAX + 1; n++) {
		char *s = tail_with_service_of(n);
		int rc = parse(s, &q);
		free(s);
		if (n <= CONTROL_SERVICE_MAX) {
			ck_assert_int_eq(rc, 0);
			ck_assert_uint_eq(q.service_len, n);
			ck_assert_uint_eq(strlen(q.service), n);
		} else {
			ck_assert_int_eq(rc, -EINVAL);
		}
	}
}
END_TEST

START_TEST(control_parse_request_length_at_limit)
{
	static const char req[] = "{\"cmd\":\"status\"}";
	char *line = malloc(CONTROL_REQ_MAX + 2);
	struct control_req q;
	for (size_t n = CONTROL_REQ_MAX - 1; n <= CONTROL_REQ_MAX + 1; n++) {
		memset(line, ' ', n);
		memcpy(line, req, sizeof req - 1);
		char err[128];
		int rc = control_parse_request(line, n, &q, err, sizeof err);
		ck_assert_int_eq(rc, n <= CONTROL_REQ_MAX ? 0 : -EINVAL);
	}
	free(line);
}
END_TEST

/* ---- rate ring ----------------------------------------------------------- */

START_TEST(rate_ring_empty_and_single_sample_give_zero)
{
	struct rate_ring r;
	memset(&r, 0, sizeof r);
	double in, out;
	rate_ring_rate(&r, 10, &in, &out);
	ck_assert(in == 0 && out == 0);
	rate_ring_push(&r, 100, 50);
	rate_ring_rate(&r, 10, &in, &out);
	ck_assert(in == 0 && out == 0);
}
END_TEST

START_TEST(rate_ring_short_history_uses_what_it_has)
{
	struct rate_ring r;
	memset(&r, 0, sizeof r);
	rate_ring_push(&r, 0, 0);
	rate_ring_push(&r, 10, 4);
	rate_ring_push(&r, 30, 8);
	double in, out;
	rate_ring_rate(&r, 10, &in, &out);
	ck_assert_double_eq_tol(in, 15.0, 1e-9);
	ck_assert_double_eq_tol(out, 4.0, 1e-9);
}
END_TEST

START_TEST(rate_ring_wraps_and_keeps_the_last_minute)
{
	struct rate_ring r;
	memset(&r, 0, sizeof r);
	/* 200 s: 5/s in for the first 140 s, then 20/s; out steady 2/s */
	uint64_t in_total = 0;
	for (unsigned s = 0; s < 200; s++) {
		rate_ring_push(&r, in_total, 2 * (uint64_t)s);
		in_total += s < 140 ? 5 : 20;
	}
	double in, out;
	rate_ring_rate(&r, 10, &in, &out);
	ck_assert_double_eq_tol(in, 20.0, 1e-9);
	ck_assert_double_eq_tol(out, 2.0, 1e-9);
	rate_ring_rate(&r, 60, &in, &out);
	/* the last 60 s: samples 139..199, 59 s of 20/s and 1 s of 5/s */
	ck_assert_double_eq_tol(in, (59.0 * 20 + 5) / 60, 1e-9);
	ck_assert_uint_eq(r.n, RATE_SLOTS);
	rate_ring_rate(&r, 1000, &in, &out); /* more than held: capped at 60 s */
	ck_assert_double_eq_tol(out, 2.0, 1e-9);
}
END_TEST

/* ---- bounded output ------------------------------------------------------ */

START_TEST(ctl_out_append_at_limit)
{
	struct ctl_out o;
	char data[16] = "0123456789abcdef";
	ctl_out_init(&o, 10);
	ck_assert_int_eq(ctl_out_append(&o, data, 9), 0); /* limit-1 */
	ck_assert_int_eq(ctl_out_append(&o, data, 1), 0); /* limit */
	ck_assert_int_eq(ctl_out_append(&o, data, 1), -ENOBUFS); /* limit+1 */
	ck_assert_uint_eq(o.next.len, 10);
	ctl_out_free(&o);
	ctl_out_init(&o, 10);
	ck_assert_int_eq(ctl_out_append(&o, data, 11), -ENOBUFS);
	ck_assert_uint_eq(o.next.len, 0);
	ctl_out_free(&o);
}
END_TEST

START_TEST(ctl_out_counts_the_write_in_progress)
{
	struct ctl_out o;
	char data[8] = "abcdefgh";
	ctl_out_init(&o, 10);
	o.inflight = 4;
	ck_assert_int_eq(ctl_out_append(&o, data, 7), -ENOBUFS);
	ck_assert_int_eq(ctl_out_append(&o, data, 6), 0);
	ck_assert_int_eq(ctl_out_append(&o, data, 1), -ENOBUFS);
	o.inflight = 0;
	ck_assert_int_eq(ctl_out_append(&o, data, 4), 0);
	ck_assert_int_eq(memcmp(o.next.data, "abcdefabcd", 10), 0);
	ctl_out_free(&o);
}
END_TEST

/* ---- JSON text and tail lines -------------------------------------------- */

static char *escaped(const char *s, size_t n)
{
	struct buf b;
	buf_init(&b, 4096);
	ck_assert_int_eq(ctl_json_escape(&b, s, n), 0);
	char *out = strndup(b.data ? b.data : "", b.len);
	buf_free(&b);
	return out;
}

START_TEST(ctl_json_escape_quotes_controls_and_bad_utf8)
{
	char *e = escaped("a\"b\\c\nd\te\x01", 10);
	ck_assert_str_eq(e, "a\\\"b\\\\c\\nd\\te\\u0001");
	free(e);
	e = escaped("x\xff\xc3(y\0z", 7);
	ck_assert_str_eq(e, "x\xef\xbf\xbd\xef\xbf\xbd(y\xef\xbf\xbdz");
	free(e);
	e = escaped("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9); /* é € 😀 kept */
	ck_assert_str_eq(e, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
	free(e);
	e = escaped("\xed\xa0\x80", 3); /* a surrogate is not UTF-8 */
	ck_assert_str_eq(e, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
	free(e);
}
END_TEST

START_TEST(ctl_json_escape_at_cap_restores_the_buffer)
{
	struct buf b;
	buf_init(&b, 8);
	ck_assert_int_eq(buf_append(&b, "ab", 2), 0);
	ck_assert_int_eq(ctl_json_escape(&b, "\"\"\"\"", 4), -ENOMEM);
	ck_assert_uint_eq(b.len, 2);
	buf_free(&b);
}
END_TEST

static uint8_t frame[4096];

static ap_record_t make_record(int level, const char *msg, const char *service, const char *level_field)
{
	ap_writer_t w;
	ck_assert_int_eq(ap_writer_init(&w, frame, sizeof frame, level, 1700000000123456789ull, 0, msg, strlen(msg)),
			 0);
	if (service)
		ap_put_string(&w, "service", 7, service, strlen(service));
	if (level_field)
		ap_put_string(&w, "level", 5, level_field, strlen(level_field));
	ap_put_int64(&w, "n", 1, -42);
	ap_put_double(&w, "d", 1, 1.5);
	ap_put_bool(&w, "ok", 2, 1);
	size_t len = ap_writer_finish(&w);
	ap_record_t r;
	ck_assert_int_eq(ap_decode(frame, len, 0, &r), AP_OK);
	return r;
}

START_TEST(ctl_tail_line_is_one_json_object)
{
	ap_record_t r = make_record(AP_WARN, "disk \"full\"\n", "billing", NULL);
	struct origin o = {.pid = 42, .uid = 1000, .gid = 1000, .comm = "worker"};
	struct buf b;
	buf_init(&b, 65536);
	ck_assert_int_eq(ctl_tail_line(&b, &o, &r), 0);
	ck_assert(b.len > 0 && b.data[b.len - 1] == '\n');
	ck_assert(memchr(b.data, '\n', b.len) == b.data + b.len - 1);
	json_error_t je;
	json_t *j = json_loadb(b.data, b.len - 1, 0, &je);
	ck_assert_msg(j != NULL, "%s", je.text);
	ck_assert_str_eq(json_string_value(json_object_get(j, "level")), "WARN");
	ck_assert_str_eq(json_string_value(json_object_get(j, "message")), "disk \"full\"\n");
	ck_assert_str_eq(json_string_value(json_object_get(j, "service")), "billing");
	ck_assert_str_eq(json_string_value(json_object_get(j, "time")), "2023-11-14T22:13:20.123456Z");
	ck_assert_str_eq(json_string_value(json_object_get(j, "process")), "worker");
	ck_assert_int_eq(json_integer_value(json_object_get(j, "pid")), 42);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "uid")), 1000);
	json_t *f = json_object_get(j, "fields");
	ck_assert_int_eq(json_integer_value(json_object_get(f, "n")), -42);
	ck_assert(json_real_value(json_object_get(f, "d")) == 1.5);
	ck_assert(json_is_true(json_object_get(f, "ok")));
	json_decref(j);
	buf_free(&b);
}
END_TEST

START_TEST(ctl_tail_line_at_cap_restores_the_buffer)
{
	ap_record_t r = make_record(AP_INFO, "hello", NULL, NULL);
	struct buf b;
	buf_init(&b, 40);
	ck_assert_int_eq(ctl_tail_line(&b, NULL, &r), -ENOMEM);
	ck_assert_uint_eq(b.len, 0);
	buf_free(&b);
}
END_TEST

START_TEST(ctl_tail_match_filters_level_and_service)
{
	struct control_req q = {.cmd = CTL_TAIL, .min_level = AP_WARN};
	ap_record_t r = make_record(AP_INFO, "m", "billing", NULL);
	ck_assert(!ctl_tail_match(&q, &r));
	r = make_record(AP_WARN, "m", "billing", NULL);
	ck_assert(ctl_tail_match(&q, &r));
	r = make_record(AP_INFO, "m", "billing", "error"); /* a level field wins, as upstream */
	ck_assert_int_eq(ctl_record_level(&r), AP_ERROR);
	ck_assert(ctl_tail_match(&q, &r));
	q.has_service = true;
	memcpy(q.service, "billing", 8);
	q.service_len = 7;
	ck_assert(ctl_tail_match(&q, &r));
	r = make_record(AP_FATAL, "m", "billin", NULL);
	ck_assert(!ctl_tail_match(&q, &r));
	r = make_record(AP_FATAL, "m", NULL, NULL);
	ck_assert(!ctl_tail_match(&q, &r));
}
END_TEST

/* ---- status and metrics -------------------------------------------------- */

static struct agentd d;
static uv_loop_t loop;

static void agentd_setup(void)
{
	memset(&d, 0, sizeof d);
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	d.loop = &loop;
	ck_assert_int_eq(config_defaults(&d.cfg), 0);
	d.st.received = 10;
	d.st.delivered = 7;
	d.st.dropped[DROP_QUEUE_FULL] = 2;
	d.st.malformed[-AP_EMAGIC] = 3;
	d.st.mapped.moved = 4;
	struct origin o = {.pid = 9, .uid = 5, .comm = "app"};
	stats_sender_seen(&d.st, &o, 1, 0);
}

static void agentd_teardown(void)
{
	config_free(&d.cfg);
	uv_loop_close(&loop);
}

START_TEST(control_status_has_the_documented_keys)
{
	json_t *j = control_status(&d);
	ck_assert(j != NULL);
	static const char *const keys[] = {"version",	"uptime_s", "config",  "received",     "delivered", "dropped",
					   "malformed", "queued",   "spooled", "replayed",     "retries",   "upstream",
					   "spool",	"rates",    "mapped",  "shim_dropped", "senders",   "control"};
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		ck_assert_msg(json_object_get(j, keys[i]) != NULL, "no %s", keys[i]);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "received")), 10);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "dropped"), "total")), 2);
	json_t *mby = json_object_get(json_object_get(j, "malformed"), "by_reason");
	ck_assert_int_eq(json_integer_value(json_object_get(mby, "bad_magic")), 3);
	ck_assert(json_is_null(json_object_get(j, "spool")));
	json_t *s0 = json_array_get(json_object_get(j, "senders"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(s0, "process")), "app");
	ck_assert_int_eq(json_integer_value(json_object_get(s0, "drops")), 1);
	json_decref(j);
}
END_TEST

START_TEST(control_metrics_is_prometheus_text)
{
	struct buf b;
	buf_init(&b, 1024 * 1024);
	ck_assert_int_eq(control_metrics(&d, &b), 0);
	ck_assert_int_eq(buf_putc(&b, 0), 0);
	const char *t = b.data;
	ck_assert(strstr(t, "# HELP agentd_received_records_total "));
	ck_assert(strstr(t, "# TYPE agentd_received_records_total counter\nagentd_received_records_total 10\n"));
	ck_assert(strstr(t, "agentd_dropped_records_total{reason=\"queue_full\"} 2\n"));
	ck_assert(strstr(t, "agentd_malformed_records_total{reason=\"bad_magic\"} 3\n"));
	ck_assert(strstr(t, "# TYPE agentd_queue_records gauge\n"));
	ck_assert(strstr(t, "agentd_spool_enabled 0\n"));
	/* every sample follows its own HELP and TYPE lines */
	char *copy = strdup(t), *save = NULL;
	char typed[128] = "";
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# TYPE ", 7) == 0) {
			snprintf(typed, sizeof typed, "%.*s", (int)strcspn(line + 7, " "), line + 7);
			continue;
		}
		if (line[0] == '#')
			continue;
		ck_assert_msg(strncmp(line, "agentd_", 7) == 0, "%s", line);
		size_t n = strcspn(line, "{ ");
		ck_assert_msg(strlen(typed) == n && strncmp(line, typed, n) == 0, "%s not under its TYPE", line);
	}
	free(copy);
	buf_free(&b);
}
END_TEST

START_TEST(control_metrics_at_cap_restores_the_buffer)
{
	struct buf b;
	buf_init(&b, 512);
	ck_assert_int_eq(control_metrics(&d, &b), -ENOMEM);
	ck_assert_uint_eq(b.len, 0);
	buf_free(&b);
}
END_TEST

static Suite *control_suite(void)
{
	Suite *s = suite_create("control");
	TCase *t = tcase_create("parse");
	tcase_add_test(t, control_parse_each_command);
	tcase_add_test(t, control_parse_rejects_garbage_with_a_message);
	tcase_add_test(t, control_parse_binary_with_nul_is_refused);
	tcase_add_test(t, control_parse_tail_level_aliases_and_service);
	tcase_add_test(t, control_parse_service_at_limit);
	tcase_add_test(t, control_parse_request_length_at_limit);
	suite_add_tcase(s, t);
	t = tcase_create("buffers");
	tcase_add_test(t, rate_ring_empty_and_single_sample_give_zero);
	tcase_add_test(t, rate_ring_short_history_uses_what_it_has);
	tcase_add_test(t, rate_ring_wraps_and_keeps_the_last_minute);
	tcase_add_test(t, ctl_out_append_at_limit);
	tcase_add_test(t, ctl_out_counts_the_write_in_progress);
	tcase_add_test(t, ctl_json_escape_quotes_controls_and_bad_utf8);
	tcase_add_test(t, ctl_json_escape_at_cap_restores_the_buffer);
	tcase_add_test(t, ctl_tail_line_is_one_json_object);
	tcase_add_test(t, ctl_tail_line_at_cap_restores_the_buffer);
	tcase_add_test(t, ctl_tail_match_filters_level_and_service);
	suite_add_tcase(s, t);
	t = tcase_create("report");
	tcase_add_checked_fixture(t, agentd_setup, agentd_teardown);
	tcase_add_test(t, control_status_has_the_documented_keys);
	tcase_add_test(t, control_metrics_is_prometheus_text);
	tcase_add_test(t, control_metrics_at_cap_restores_the_buffer);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(control_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
