/*
 * Unit tests for agentd/map.c: records built with the codec's writer,
 * decoded, mapped, parsed back with jansson and checked against the upstream
 * rules (upstream_check.h) and the mapping rules of DESIGN.md.
 *
 * MAP_BENCH=1 also prints the mapping cost of a typical record.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent_proto.h"
#include "buf.h"
#include "map.h"
#include "upstream_check.h"

/* ---- helpers ----------------------------------------------------------- */

static uint8_t frame[AP_MAX_FRAME];
static ap_writer_t w;
static struct map_counts cnt;
static struct buf out;
static const struct origin org = {.pid = 4242, .uid = 1000, .gid = 100, .comm = "worker"};

static void start(int level, uint64_t time_ns, const char *msg)
{
	ck_assert_int_eq(ap_writer_init(&w, frame, sizeof frame, level, time_ns, 0, msg, strlen(msg)), 0);
}

static void put_s(const char *k, const char *v)
{
	ck_assert_int_eq(ap_put_string(&w, k, strlen(k), v, strlen(v)), 0);
}

static void put_sn(const char *k, const char *v, size_t n)
{
	ck_assert_int_eq(ap_put_string(&w, k, strlen(k), v, n), 0);
}

static void put_i(const char *k, int64_t v)
{
	ck_assert_int_eq(ap_put_int64(&w, k, strlen(k), v), 0);
}

static void put_d(const char *k, double v)
{
	ck_assert_int_eq(ap_put_double(&w, k, strlen(k), v), 0);
}

static void put_b(const char *k, int v)
{
	ck_assert_int_eq(ap_put_bool(&w, k, strlen(k), v), 0);
}

/* The checks every mapped record must pass, beyond the upstream's own. */
static void check_shape(const char *text, size_t len)
{
	char err[256];
	if (upstream_check(text, len, err, sizeof err))
		ck_abort_msg("upstream check: %s in %.*s", err, (int)(len > 2000 ? 2000 : len), text);
	json_t *j = json_loadb(text, len, 0, NULL);
	ck_assert_ptr_nonnull(j);
	/* key order: level, message, [created_at], columns..., metadata */
	void *it = json_object_iter(j);
	ck_assert_str_eq(json_object_iter_key(it), "level");
	it = json_object_iter_next(j, it);
	ck_assert_str_eq(json_object_iter_key(it), "message");
	const char *last = NULL;
	for (; it; it = json_object_iter_next(j, it))
		last = json_object_iter_key(it);
	ck_assert_str_eq(last, "metadata");
	json_decref(j);
}

/* Finish the frame (with extra header flags), map it, check it, parse it. */
static json_t *map_flags(uint16_t flags, const struct origin *o, const char *host)
{
	size_t n = ap_writer_finish(&w);
	frame[4] |= (uint8_t)flags;
	ap_record_t rec;
	ck_assert_int_eq(ap_decode(frame, n, 0, &rec), AP_OK);
	memset(&cnt, 0, sizeof cnt);
	buf_free(&out);
	buf_init(&out, 16u << 20);
	ck_assert_int_eq(map_record(&out, &rec, o, host, host ? strlen(host) : 0, &cnt), 0);
	check_shape(out.data, out.len);
	json_error_t je;
	json_t *j = json_loadb(out.data, out.len, 0, &je);
	ck_assert_msg(j != NULL, "%s", je.text);
	return j;
}

static json_t *map(void)
{
	return map_flags(0, &org, "box1");
}

/* The output text contains s. */
static int has(const char *s)
{
	return memmem(out.data, out.len, s, strlen(s)) != NULL;
}

static const char *sget(json_t *o, const char *k)
{
	json_t *v = json_object_get(o, k);
	ck_assert_msg(json_is_string(v), "\"%s\" is not a string", k);
	return json_string_value(v);
}

static json_t *meta(json_t *j)
{
	json_t *m = json_object_get(j, "metadata");
	ck_assert(json_is_object(m));
	return m;
}

/* n code points cycling through 1-, 2-, 3- and 4-byte characters. */
static char *mbstr(size_t n, size_t *len)
{
	static const char *const ch[] = {"a", "\xC3\xA9", "\xE2\x82\xAC", "\xF0\x9D\x84\x9E"};
	char *s = malloc(4 * n + 1);
	size_t l = 0;
	for (size_t i = 0; i < n; i++) {
		const char *c = ch[i % 4];
		memcpy(s + l, c, strlen(c));
		l += strlen(c);
	}
	s[l] = 0;
	*len = l;
	return s;
}

static void teardown(void)
{
	buf_free(&out);
}

/* ---- header keys ------------------------------------------------------- */

START_TEST(map_header_level_message_created_at)
{
	start(AP_WARN, 1732800000123456789ull, "paid");
	json_t *j = map();
	ck_assert_str_eq(sget(j, "level"), "WARN");
	ck_assert_str_eq(sget(j, "message"), "paid");
	ck_assert(has("\"created_at\":1732800000.123456,"));
	ck_assert_uint_eq(json_object_size(j), 4);
	json_decref(j);

	static const char *const names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"};
	for (int lv = 0; lv < AP_NLEVELS; lv++) {
		start(lv, 1, "x");
		j = map();
		ck_assert_str_eq(sget(j, "level"), names[lv]);
		ck_assert(has("\"created_at\":0.000000,"));
		json_decref(j);
	}
}
END_TEST

START_TEST(map_created_at_has_six_decimals_and_zero_omits_it)
{
	start(AP_INFO, 0, "m");
	json_t *j = map();
	ck_assert_ptr_null(json_object_get(j, "created_at"));
	json_decref(j);

	start(AP_INFO, 999999999, "m");
	j = map();
	ck_assert(has("\"created_at\":0.999999,"));
	json_decref(j);

	start(AP_INFO, 1000001000, "m");
	j = map();
	ck_assert(has("\"created_at\":1.000001,"));
	json_decref(j);

	start(AP_INFO, UINT64_MAX, "m");
	j = map();
	ck_assert(has("\"created_at\":18446744073.709551,"));
	json_decref(j);
}
END_TEST

START_TEST(map_origin_is_written_from_the_kernel)
{
	start(AP_INFO, 1, "m");
	json_t *j = map();
	json_t *m = meta(j);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "pid")), 4242);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "uid")), 1000);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "gid")), 100);
	ck_assert_str_eq(sget(m, "process"), "worker");
	ck_assert_str_eq(sget(m, "host"), "box1");
	ck_assert_ptr_null(json_object_get(m, "truncated"));
	ck_assert_uint_eq(json_object_size(m), 5);
	json_decref(j);

	/* empty comm: no process; extreme ids */
	struct origin o = {.pid = INT32_MIN, .uid = UINT32_MAX, .gid = 0, .comm = ""};
	start(AP_INFO, 1, "m");
	j = map_flags(0, &o, "h");
	m = meta(j);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "pid")), INT32_MIN);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "uid")), UINT32_MAX);
	ck_assert_ptr_null(json_object_get(m, "process"));
	json_decref(j);

	/* a comm of the full 16 bytes without NUL, invalid UTF-8 in comm and host */
	memcpy(o.comm, "0123456789abcde\xff", 16);
	start(AP_INFO, 1, "m");
	j = map_flags(0, &o, "h\xc3");
	m = meta(j);
	ck_assert_str_eq(sget(m, "process"), "0123456789abcde\xEF\xBF\xBD");
	ck_assert_str_eq(sget(m, "host"), "h\xEF\xBF\xBD");
	ck_assert_uint_eq(cnt.invalid_utf8, 2);
	json_decref(j);

	/* no origin at all still gives an object */
	start(AP_INFO, 1, "m");
	j = map_flags(0, NULL, NULL);
	ck_assert_uint_eq(json_object_size(meta(j)), 0);
	json_decref(j);
	start(AP_INFO, 1, "m");
	put_i("n", 1);
	j = map_flags(AP_F_TRUNCATED, NULL, NULL);
	ck_assert_uint_eq(json_object_size(meta(j)), 2);
	json_decref(j);
}
END_TEST

START_TEST(map_client_origin_keys_are_renamed)
{
	static const char *const keys[] = {"pid", "uid", "gid", "process", "host", "truncated"};
	start(AP_INFO, 1, "m");
	for (int i = 0; i < 6; i++)
		put_s(keys[i], "forged");
	json_t *j = map();
	json_t *m = meta(j);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "pid")), 4242);
	ck_assert_str_eq(sget(m, "process"), "worker");
	ck_assert_str_eq(sget(m, "host"), "box1");
	ck_assert_ptr_null(json_object_get(m, "truncated"));
	char k[32];
	for (int i = 0; i < 6; i++) {
		snprintf(k, sizeof k, "client_%s", keys[i]);
		ck_assert_str_eq(sget(m, k), "forged");
	}
	ck_assert_uint_eq(cnt.origin_renamed, 6);
	ck_assert_uint_eq(cnt.moved, 0);
	json_decref(j);

	/* a literal client_pid next to a renamed pid: both kept */
	start(AP_INFO, 1, "m");
	put_i("client_pid", 1);
	put_i("pid", 2);
	j = map();
	m = meta(j);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "client_pid")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "client_pid#2")), 2);
	ck_assert_uint_eq(cnt.duplicate_keys, 1);
	json_decref(j);

	/* a near miss is not an origin key */
	start(AP_INFO, 1, "m");
	put_i("PID", 1);
	put_i("pids", 1);
	j = map();
	ck_assert_ptr_nonnull(json_object_get(meta(j), "PID"));
	ck_assert_ptr_nonnull(json_object_get(meta(j), "pids"));
	ck_assert_uint_eq(cnt.origin_renamed, 0);
	json_decref(j);
}
END_TEST

START_TEST(map_truncated_flag_goes_to_metadata)
{
	start(AP_INFO, 1, "m");
	json_t *j = map_flags(AP_F_TRUNCATED, &org, "box1");
	ck_assert(json_is_true(json_object_get(meta(j), "truncated")));
	ck_assert_uint_eq(cnt.truncated, 1);
	json_decref(j);

	/* the flag as the writer sets it, on a frame that did not fit */
	static char big[AP_MAX_FRAME];
	memset(big, 'x', sizeof big);
	ck_assert_int_eq(ap_writer_init(&w, frame, sizeof frame, AP_INFO, 1, 0, big, sizeof big), 0);
	j = map();
	ck_assert(json_is_true(json_object_get(meta(j), "truncated")));
	ck_assert_uint_eq(strlen(sget(j, "message")), AP_MAX_FRAME - AP_HDR_SIZE);
	json_decref(j);
}
END_TEST

/* ---- level ------------------------------------------------------------- */

START_TEST(map_level_field_overrides_header)
{
	static const struct {
		const char *text;
		const char *level;
		int normalized;
	} cases[] = {
		{"WARN", "WARN", 0},   {"warn", "WARN", 1},	 {"warning", "WARN", 1},     {"Warning", "WARN", 1},
		{"4", "WARN", 1},      {"critical", "FATAL", 1}, {"CRIT", "FATAL", 1},	     {"0", "FATAL", 1},
		{"7", "DEBUG", 1},     {"notice", "INFO", 1},	 {"err", "ERROR", 1},	     {"TRACE", "TRACE", 0},
		{"FATAL", "FATAL", 0}, {"panic", "FATAL", 1},	 {"information", "INFO", 1},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		start(AP_INFO, 1, "m");
		put_s("level", cases[i].text);
		json_t *j = map();
		ck_assert_str_eq(sget(j, "level"), cases[i].level);
		ck_assert_uint_eq(cnt.level_normalized, (uint64_t)cases[i].normalized);
		ck_assert_uint_eq(cnt.moved, 0);
		ck_assert_ptr_null(json_object_get(meta(j), "level"));
		json_decref(j);
	}
	static const char *const syslog[8] = {"FATAL", "FATAL", "FATAL", "ERROR", "WARN", "INFO", "INFO", "DEBUG"};
	for (int p = 0; p < 8; p++) {
		start(AP_TRACE, 1, "m");
		put_i("level", p);
		json_t *j = map();
		ck_assert_str_eq(sget(j, "level"), syslog[p]);
		ck_assert_uint_eq(cnt.level_normalized, 1);
		json_decref(j);
	}
}
END_TEST

START_TEST(map_level_field_naming_no_level_goes_to_metadata)
{
	start(AP_ERROR, 1, "m");
	put_s("level", "verbose");
	json_t *j = map();
	ck_assert_str_eq(sget(j, "level"), "ERROR");
	ck_assert_str_eq(sget(meta(j), "level"), "verbose");
	ck_assert_uint_eq(cnt.moved, 1);
	ck_assert_uint_eq(cnt.level_normalized, 0);
	json_decref(j);

	static const int64_t bad[] = {-1, 8, INT64_MIN, INT64_MAX};
	for (size_t i = 0; i < 4; i++) {
		start(AP_ERROR, 1, "m");
		put_i("level", bad[i]);
		j = map();
		ck_assert_str_eq(sget(j, "level"), "ERROR");
		ck_assert_int_eq(json_integer_value(json_object_get(meta(j), "level")), bad[i]);
		ck_assert_uint_eq(cnt.moved, 1);
		json_decref(j);
	}

	start(AP_ERROR, 1, "m");
	put_d("level", 4.0);
	j = map();
	ck_assert_str_eq(sget(j, "level"), "ERROR");
	ck_assert(json_is_number(json_object_get(meta(j), "level")));
	json_decref(j);

	start(AP_ERROR, 1, "m");
	put_b("level", 1);
	j = map();
	ck_assert(json_is_true(json_object_get(meta(j), "level")));
	json_decref(j);

	/* "", a NUL inside, too long for any alias */
	start(AP_ERROR, 1, "m");
	put_s("level", "");
	j = map();
	ck_assert_str_eq(sget(meta(j), "level"), "");
	json_decref(j);
	start(AP_ERROR, 1, "m");
	put_sn("level", "warn\0", 5);
	j = map();
	ck_assert_str_eq(sget(j, "level"), "ERROR");
	ck_assert_str_eq(sget(meta(j), "level"), "warn\xEF\xBF\xBD");
	json_decref(j);
}
END_TEST

START_TEST(map_level_first_valid_wins_the_rest_go_to_metadata)
{
	start(AP_INFO, 1, "m");
	put_s("level", "nope");
	put_s("level", "error");
	put_i("level", 7);
	put_s("level", "x");
	json_t *j = map();
	ck_assert_str_eq(sget(j, "level"), "ERROR");
	json_t *m = meta(j);
	ck_assert_str_eq(sget(m, "level"), "nope");
	ck_assert_int_eq(json_integer_value(json_object_get(m, "level#2")), 7);
	ck_assert_str_eq(sget(m, "level#3"), "x");
	ck_assert_uint_eq(cnt.moved, 3);
	ck_assert_uint_eq(cnt.level_normalized, 1);
	ck_assert_uint_eq(cnt.duplicate_keys, 2);
	json_decref(j);
}
END_TEST

/* ---- enums ------------------------------------------------------------- */

static const struct {
	const char *key;
	const char *values[8];
} enums[] = {
	{"log_type", {"BACKEND", "FRONTEND", "MOBILE", "IOT", "WORKER", NULL}},
	{"environment", {"production", "staging", "development", "test", "local", NULL}},
	{"method", {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", NULL}},
};

static void case_variants(const char *s, char v[3][32])
{
	size_t n = strlen(s);
	for (size_t i = 0; i <= n; i++) {
		char c = s[i];
		v[0][i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
		v[1][i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
		v[2][i] = (char)(i % 2 ? v[0][i] : v[1][i]);
	}
}

START_TEST(map_enum_any_case_is_emitted_canonical)
{
	for (size_t e = 0; e < 3; e++) {
		for (int i = 0; enums[e].values[i]; i++) {
			char v[3][32];
			case_variants(enums[e].values[i], v);
			for (int c = 0; c < 3; c++) {
				start(AP_INFO, 1, "m");
				put_s(enums[e].key, v[c]);
				json_t *j = map();
				ck_assert_str_eq(sget(j, enums[e].key), enums[e].values[i]);
				ck_assert_uint_eq(cnt.moved, 0);
				ck_assert_ptr_null(json_object_get(meta(j), enums[e].key));
				json_decref(j);
			}
		}
	}
}
END_TEST

START_TEST(map_enum_outside_its_set_goes_to_metadata)
{
	static const char *const bad[] = {"", "prod", "GETS", "BACKEND ", "test\n", "\xff", "ge"};
	for (size_t e = 0; e < 3; e++) {
		for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			start(AP_INFO, 1, "m");
			put_s(enums[e].key, bad[i]);
			json_t *j = map();
			ck_assert_ptr_null(json_object_get(j, enums[e].key));
			ck_assert_ptr_nonnull(json_object_get(meta(j), enums[e].key));
			ck_assert_uint_eq(cnt.moved, 1);
			json_decref(j);
		}
		start(AP_INFO, 1, "m");
		put_i(enums[e].key, 1);
		json_t *j = map();
		ck_assert_ptr_null(json_object_get(j, enums[e].key));
		ck_assert_int_eq(json_integer_value(json_object_get(meta(j), enums[e].key)), 1);
		ck_assert_uint_eq(cnt.moved, 1);
		json_decref(j);
		start(AP_INFO, 1, "m");
		put_b(enums[e].key, 0);
		put_d(enums[e].key, 2.5);
		j = map();
		ck_assert(json_is_false(json_object_get(meta(j), enums[e].key)));
		char k[40];
		snprintf(k, sizeof k, "%s#2", enums[e].key);
		ck_assert(json_real_value(json_object_get(meta(j), k)) == 2.5);
		ck_assert_uint_eq(cnt.moved, 2);
		json_decref(j);
	}
}
END_TEST

/* ---- VARCHAR columns --------------------------------------------------- */

static const struct {
	const char *key;
	size_t limit;
} varchars[] = {
	{"service", 100},    {"service_version", 50}, {"trace_id", 32},	   {"user_id", 255},	   {"session_id", 100},
	{"error_type", 200}, {"path", 500},	      {"action_type", 50}, {"function_name", 300}, {"file_path", 1000},
};

START_TEST(map_varchar_limits_count_code_points)
{
	for (size_t c = 0; c < sizeof varchars / sizeof varchars[0]; c++) {
		for (size_t n = varchars[c].limit - 1; n <= varchars[c].limit + 1; n++) {
			size_t len;
			char *s = mbstr(n, &len);
			start(AP_INFO, 1, "m");
			put_sn(varchars[c].key, s, len);
			json_t *j = map();
			if (n <= varchars[c].limit) {
				ck_assert_str_eq(sget(j, varchars[c].key), s);
				ck_assert_ptr_null(json_object_get(meta(j), varchars[c].key));
				ck_assert_uint_eq(cnt.moved, 0);
			} else {
				ck_assert_ptr_null(json_object_get(j, varchars[c].key));
				ck_assert_str_eq(sget(meta(j), varchars[c].key), s); /* whole */
				ck_assert_uint_eq(cnt.moved, 1);
			}
			json_decref(j);

			/* all 4-byte characters: 4*limit bytes still fit */
			char *s4 = malloc(4 * n + 1);
			for (size_t i = 0; i < n; i++)
				memcpy(s4 + 4 * i, "\xF0\x9F\x98\x80", 4);
			start(AP_INFO, 1, "m");
			put_sn(varchars[c].key, s4, 4 * n);
			j = map();
			ck_assert_uint_eq(json_object_get(j, varchars[c].key) != NULL, n <= varchars[c].limit);
			json_decref(j);

			/* invalid bytes count one code point each once replaced */
			memset(s4, 0xFF, n);
			start(AP_INFO, 1, "m");
			put_sn(varchars[c].key, s4, n);
			j = map();
			json_t *v = n <= varchars[c].limit ? json_object_get(j, varchars[c].key)
							   : json_object_get(meta(j), varchars[c].key);
			ck_assert(json_is_string(v));
			ck_assert_uint_eq(json_string_length(v), 3 * n);
			ck_assert_uint_eq(cnt.invalid_utf8, 1);
			json_decref(j);
			free(s4);
			free(s);
		}
	}
}
END_TEST

START_TEST(map_varchar_maximal_subparts_count_as_one_code_point)
{
	/* trace_id, 32: "\xF0\x9F\x98" is one replaced subpart, 3 bytes */
	char s[200];
	for (size_t n = 31; n <= 33; n++) {
		for (size_t i = 0; i < n; i++)
			memcpy(s + 3 * i, "\xF0\x9F\x98", 3);
		start(AP_INFO, 1, "m");
		put_sn("trace_id", s, 3 * n);
		json_t *j = map();
		ck_assert_uint_eq(json_object_get(j, "trace_id") != NULL, n <= 32);
		json_decref(j);
	}
}
END_TEST

START_TEST(map_stack_trace_has_no_limit)
{
	static char big[100000];
	memset(big, 'x', sizeof big - 1);
	big[5] = '\n';
	start(AP_INFO, 1, "m");
	put_s("stack_trace", big);
	json_t *j = map();
	ck_assert_str_eq(sget(j, "stack_trace"), big);
	json_decref(j);

	start(AP_INFO, 1, "m");
	put_i("stack_trace", 12);
	j = map();
	ck_assert_str_eq(sget(j, "stack_trace"), "12");
	ck_assert_uint_eq(cnt.coerced, 1);
	json_decref(j);
}
END_TEST

START_TEST(map_numbers_are_coerced_into_string_columns)
{
	static const struct {
		int64_t v;
		const char *s;
	} ints[] = {
		{0, "0"},
		{-1, "-1"},
		{9, "9"},
		{10, "10"},
		{99, "99"},
		{100, "100"},
		{1234567890123, "1234567890123"},
		{INT64_MAX, "9223372036854775807"},
		{INT64_MIN, "-9223372036854775808"},
	};
	for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
		start(AP_INFO, 1, "m");
		put_i("user_id", ints[i].v);
		json_t *j = map();
		ck_assert_str_eq(sget(j, "user_id"), ints[i].s);
		ck_assert_uint_eq(cnt.coerced, 1);
		ck_assert_uint_eq(cnt.moved, 0);
		json_decref(j);
	}
	/* every string column takes the longest int64 */
	for (size_t c = 0; c < sizeof varchars / sizeof varchars[0]; c++) {
		start(AP_INFO, 1, "m");
		put_i(varchars[c].key, INT64_MIN);
		json_t *j = map();
		ck_assert_str_eq(sget(j, varchars[c].key), "-9223372036854775808");
		json_decref(j);
		start(AP_INFO, 1, "m");
		put_d(varchars[c].key, -2.2250738585072014e-308);
		j = map();
		ck_assert_str_eq(sget(j, varchars[c].key), "-2.2250738585072014e-308");
		json_decref(j);
	}
	static const struct {
		double v;
		const char *s;
	} dbl[] = {
		{0.1, "0.1"},
		{1.5, "1.5"},
		{42.0, "42"},
		{1e21, "1e+21"},
		{1.0 / 3, "0.3333333333333333"},
		{0.30000000000000004, "0.30000000000000004"},
		{5e-324, "4.94065645841247e-324"},
		{-0.0, "-0"},
	};
	for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++) {
		start(AP_INFO, 1, "m");
		put_d("session_id", dbl[i].v);
		json_t *j = map();
		ck_assert_str_eq(sget(j, "session_id"), dbl[i].s);
		ck_assert(strtod(dbl[i].s, NULL) == dbl[i].v);
		ck_assert_uint_eq(cnt.coerced, 1);
		json_decref(j);
	}
	/* NaN, infinities and bools cannot go: metadata */
	start(AP_INFO, 1, "m");
	put_d("user_id", NAN);
	put_d("service", INFINITY);
	put_d("path", -INFINITY);
	put_b("trace_id", 1);
	json_t *j = map();
	json_t *m = meta(j);
	ck_assert_str_eq(sget(m, "user_id"), "NaN");
	ck_assert_str_eq(sget(m, "service"), "Infinity");
	ck_assert_str_eq(sget(m, "path"), "-Infinity");
	ck_assert(json_is_true(json_object_get(m, "trace_id")));
	ck_assert_uint_eq(cnt.moved, 4);
	ck_assert_uint_eq(cnt.coerced, 0);
	json_decref(j);
}
END_TEST

/* ---- duration_ms ------------------------------------------------------- */

START_TEST(map_duration_fits_decimal_10_3)
{
	static const int64_t iok[] = {0, 1, -1, 9999999, -9999999};
	static const int64_t ibad[] = {10000000, -10000000, INT64_MAX, INT64_MIN};
	for (size_t i = 0; i < 5; i++) {
		start(AP_INFO, 1, "m");
		put_i("duration_ms", iok[i]);
		json_t *j = map();
		ck_assert_int_eq(json_integer_value(json_object_get(j, "duration_ms")), iok[i]);
		json_decref(j);
	}
	for (size_t i = 0; i < 4; i++) {
		start(AP_INFO, 1, "m");
		put_i("duration_ms", ibad[i]);
		json_t *j = map();
		ck_assert_ptr_null(json_object_get(j, "duration_ms"));
		ck_assert_int_eq(json_integer_value(json_object_get(meta(j), "duration_ms")), ibad[i]);
		ck_assert_uint_eq(cnt.moved, 1);
		json_decref(j);
	}
	const double below = nextafter(9999999.9995, 0);
	const double dok[] = {0.0, 12.5, 0.001, 9999999.999, -9999999.999, below, -below, 1e-300};
	const double dbad[] = {9999999.9995, -9999999.9995, 1e7, 1e300, NAN, INFINITY, -INFINITY};
	for (size_t i = 0; i < sizeof dok / sizeof dok[0]; i++) {
		start(AP_INFO, 1, "m");
		put_d("duration_ms", dok[i]);
		json_t *j = map();
		ck_assert(json_number_value(json_object_get(j, "duration_ms")) == dok[i]);
		ck_assert_uint_eq(cnt.moved, 0);
		json_decref(j);
	}
	for (size_t i = 0; i < sizeof dbad / sizeof dbad[0]; i++) {
		start(AP_INFO, 1, "m");
		put_d("duration_ms", dbad[i]);
		json_t *j = map();
		ck_assert_ptr_null(json_object_get(j, "duration_ms"));
		ck_assert_ptr_nonnull(json_object_get(meta(j), "duration_ms"));
		ck_assert_uint_eq(cnt.moved, 1);
		json_decref(j);
	}
	start(AP_INFO, 1, "m");
	put_s("duration_ms", "12");
	put_b("duration_ms", 1);
	json_t *j = map();
	ck_assert_ptr_null(json_object_get(j, "duration_ms"));
	ck_assert_str_eq(sget(meta(j), "duration_ms"), "12");
	ck_assert(json_is_true(json_object_get(meta(j), "duration_ms#2")));
	ck_assert_uint_eq(cnt.moved, 2);
	json_decref(j);
}
END_TEST

/* ---- reserved keys, duplicates, other keys ----------------------------- */

START_TEST(map_reserved_keys_go_to_metadata)
{
	start(AP_INFO, 5, "real");
	put_s("message", "fake");
	put_i("created_at", 7);
	put_s("metadata", "{}");
	json_t *j = map();
	ck_assert_str_eq(sget(j, "message"), "real");
	ck_assert(has("\"created_at\":0.000000,"));
	json_t *m = meta(j);
	ck_assert_str_eq(sget(m, "message"), "fake");
	ck_assert_int_eq(json_integer_value(json_object_get(m, "created_at")), 7);
	ck_assert_str_eq(sget(m, "metadata"), "{}");
	ck_assert_uint_eq(cnt.moved, 3);
	json_decref(j);
}
END_TEST

START_TEST(map_duplicate_column_first_valid_fills_it)
{
	start(AP_INFO, 1, "m");
	put_s("service", "api");
	put_s("service", "web");
	put_i("service", 3);
	json_t *j = map();
	ck_assert_str_eq(sget(j, "service"), "api");
	json_t *m = meta(j);
	ck_assert_str_eq(sget(m, "service"), "web");
	ck_assert_int_eq(json_integer_value(json_object_get(m, "service#2")), 3);
	ck_assert_uint_eq(cnt.moved, 2);
	ck_assert_uint_eq(cnt.duplicate_keys, 1);
	ck_assert_uint_eq(cnt.coerced, 0);
	json_decref(j);

	/* a value that cannot go in does not take the column */
	start(AP_INFO, 1, "m");
	put_b("service", 1);
	put_s("service", "api");
	j = map();
	ck_assert_str_eq(sget(j, "service"), "api");
	ck_assert(json_is_true(json_object_get(meta(j), "service")));
	ck_assert_uint_eq(cnt.moved, 1);
	json_decref(j);
}
END_TEST

START_TEST(map_duplicate_metadata_keys_get_suffixes)
{
	start(AP_INFO, 1, "m");
	put_i("a", 1);
	put_i("a#2", 2);
	put_i("a", 3);
	put_i("a", 4);
	put_i("a#3", 5);
	json_t *j = map();
	json_t *m = meta(j);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "a")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "a#2")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "a#3")), 3);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "a#4")), 4);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "a#3#2")), 5);
	ck_assert_uint_eq(cnt.duplicate_keys, 3);
	json_decref(j);

	/* keys equal once repaired are duplicates too */
	start(AP_INFO, 1, "m");
	put_i("k\xff", 1);
	put_i("k\xfe", 2);
	j = map();
	ck_assert_int_eq(json_integer_value(json_object_get(meta(j), "k\xEF\xBF\xBD#2")), 2);
	ck_assert_uint_eq(cnt.invalid_utf8, 2);
	json_decref(j);
}
END_TEST

START_TEST(map_many_fields_use_the_heap_key_table)
{
	/* 20000 identical keys: linear, not quadratic, in the number of repeats */
	enum { N = 20000 };
	start(AP_INFO, 1, "m");
	for (int i = 0; i < N; i++)
		put_b("k", i & 1);
	json_t *j = map();
	json_t *m = meta(j);
	ck_assert_uint_eq(json_object_size(m), N + 5);
	ck_assert_ptr_nonnull(json_object_get(m, "k#20000"));
	ck_assert_uint_eq(cnt.duplicate_keys, N - 1);
	json_decref(j);

	start(AP_INFO, 1, "m");
	char k[16];
	for (int i = 0; i < 1000; i++) {
		snprintf(k, sizeof k, "f%d", i);
		put_i(k, i);
	}
	j = map();
	ck_assert_int_eq(json_integer_value(json_object_get(meta(j), "f999")), 999);
	ck_assert_uint_eq(cnt.duplicate_keys, 0);
	json_decref(j);
}
END_TEST

START_TEST(map_other_keys_keep_their_type)
{
	start(AP_INFO, 1, "m");
	put_s("s", "text");
	put_i("imax", INT64_MAX);
	put_i("imin", INT64_MIN);
	put_d("d", 0.1);
	put_d("big", 1.7976931348623157e308);
	put_d("tiny", 5e-324);
	put_d("negzero", -0.0);
	put_d("nan", NAN);
	put_d("inf", INFINITY);
	put_d("ninf", -INFINITY);
	put_b("t", 1);
	put_b("f", 0);
	json_t *j = map();
	json_t *m = meta(j);
	ck_assert_str_eq(sget(m, "s"), "text");
	ck_assert_int_eq(json_integer_value(json_object_get(m, "imax")), INT64_MAX);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "imin")), INT64_MIN);
	ck_assert(json_real_value(json_object_get(m, "d")) == 0.1);
	ck_assert(json_real_value(json_object_get(m, "big")) == 1.7976931348623157e308);
	ck_assert(json_real_value(json_object_get(m, "tiny")) == 5e-324);
	ck_assert(json_is_number(json_object_get(m, "negzero")));
	ck_assert_str_eq(sget(m, "nan"), "NaN");
	ck_assert_str_eq(sget(m, "inf"), "Infinity");
	ck_assert_str_eq(sget(m, "ninf"), "-Infinity");
	ck_assert(json_is_true(json_object_get(m, "t")));
	ck_assert(json_is_false(json_object_get(m, "f")));
	ck_assert_uint_eq(cnt.moved + cnt.coerced + cnt.invalid_utf8, 0);
	json_decref(j);

	/* any NaN bit pattern */
	uint64_t bits = 0xFFF8000000000001ull;
	double d;
	memcpy(&d, &bits, sizeof d);
	start(AP_INFO, 1, "m");
	put_d("n2", d);
	j = map();
	ck_assert_str_eq(sget(meta(j), "n2"), "NaN");
	json_decref(j);
}
END_TEST

/* ---- strings ----------------------------------------------------------- */

START_TEST(map_invalid_utf8_is_replaced_per_maximal_subpart)
{
#define R "\xEF\xBF\xBD"
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
		{"\xC0\x80", 2, R R}, /* overlong NUL */
		{"\xC1\xBF", 2, R R}, /* overlong */
		{"\xE0\x80\x80", 3, R R R}, /* overlong, 3 bytes */
		{"\xE0\x9F\xBF", 3, R R R}, /* overlong, 3 bytes */
		{"\xF0\x80\x80\x80", 4, R R R R}, /* overlong, 4 bytes */
		{"\xED\xA0\x80", 3, R R R}, /* surrogate D800 */
		{"\xED\xBF\xBF", 3, R R R}, /* surrogate DFFF */
		{"\xF4\x90\x80\x80", 4, R R R R}, /* U+110000 */
		{"\xF5\x80\x80\x80", 4, R R R R}, /* no such lead */
		{"\xFF", 1, R}, /* never in UTF-8 */
		{"\x80", 1, R}, /* stray continuation */
		{"a\xBF\xBF"
		 "b",
		 4, "a" R R "b"}, /* stray continuations */
		{"\xE2\x82", 2, R}, /* truncated at end */
		{"\xE2\x82"
		 "A",
		 3, R "A"}, /* truncated by ASCII */
		{"\xF0\x9F\x98", 3, R}, /* truncated 4-byte */
		{"\xF0\x9F\x98\xF0\x9F\x98\x80", 7, R "\xF0\x9F\x98\x80"},
		{"\xC3", 1, R}, /* lone lead at end */
		{"x\0y", 3, "x" R "y"}, /* NUL */
		{"\xED\x9F\xBF", 3, "\xED\x9F\xBF"}, /* U+D7FF, valid */
		{"\xEE\x80\x80", 3, "\xEE\x80\x80"}, /* U+E000, valid */
		{"\xF4\x8F\xBF\xBF", 4, "\xF4\x8F\xBF\xBF"}, /* U+10FFFF, valid */
		{"\xC2\x80\xDF\xBF", 4, "\xC2\x80\xDF\xBF"}, /* U+0080, U+07FF */
		{"\xE0\xA0\x80", 3, "\xE0\xA0\x80"}, /* U+0800 */
		{"\xF0\x90\x80\x80", 4, "\xF0\x90\x80\x80"}, /* U+10000 */
		{"\xEF\xBF\xBD", 3, R}, /* U+FFFD itself is valid */
	};
#undef R
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ck_assert_int_eq(ap_writer_init(&w, frame, sizeof frame, AP_INFO, 1, 0, cases[i].in, cases[i].len), 0);
		put_sn("v", cases[i].in, cases[i].len);
		json_t *j = map();
		ck_assert_msg(strcmp(sget(j, "message"), cases[i].out) == 0, "case %zu", i);
		ck_assert_msg(strcmp(sget(meta(j), "v"), cases[i].out) == 0, "case %zu", i);
		int bad = strcmp(cases[i].in, cases[i].out) != 0 || strlen(cases[i].in) != cases[i].len;
		ck_assert_uint_eq(cnt.invalid_utf8, 2 * (uint64_t)bad);
		json_decref(j);
	}
	/* a string counts once however many bytes it had to replace */
	start(AP_INFO, 1, "\xff\xff\xff\xff");
	json_t *j = map();
	ck_assert_uint_eq(cnt.invalid_utf8, 1);
	json_decref(j);
}
END_TEST

START_TEST(map_keys_are_repaired_and_escaped)
{
	start(AP_INFO, 1, "m");
	put_i("a\"b\\c\n\x01\xff", 1);
	json_t *j = map();
	ck_assert_int_eq(json_integer_value(json_object_get(meta(j), "a\"b\\c\n\x01\xEF\xBF\xBD")), 1);
	ck_assert(has("\"a\\\"b\\\\c\\n\\u0001\xEF\xBF\xBD\":1"));
	ck_assert_uint_eq(cnt.invalid_utf8, 1);
	json_decref(j);

	/* a NUL in a key */
	start(AP_INFO, 1, "m");
	ck_assert_int_eq(ap_put_int64(&w, "k\0", 2, 1), 0);
	j = map();
	ck_assert_ptr_nonnull(json_object_get(meta(j), "k\xEF\xBF\xBD"));
	json_decref(j);
}
END_TEST

START_TEST(map_control_characters_are_escaped)
{
	char s[40];
	for (int i = 0; i < 32; i++)
		s[i] = (char)(i + 1);
	memcpy(s + 31, "\"\\\x7f/", 4);
	s[35] = 0;
	start(AP_INFO, 1, s);
	json_t *j = map();
	ck_assert_str_eq(sget(j, "message"), s);
	ck_assert(has("\"message\":\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r"
		      "\\u000e\\u000f\\u0010"));
	ck_assert(has("\\u001e\\u001f\\\"\\\\\x7f/\""));
	ck_assert_uint_eq(cnt.invalid_utf8, 0);
	json_decref(j);
}
END_TEST

/* ---- failure ----------------------------------------------------------- */

START_TEST(map_enomem_restores_the_buffer)
{
	start(AP_WARN, 1732800000123456789ull, "a message\n with \xff");
	put_s("service", "api");
	put_s("service", "dup");
	put_i("pid", 1);
	put_d("duration_ms", 1.5);
	put_s("level", "error");
	for (int i = 0; i < 40; i++)
		put_i("many", i); /* more than the stack key table */
	size_t n = ap_writer_finish(&w);
	frame[4] |= AP_F_TRUNCATED;
	ap_record_t rec;
	ck_assert_int_eq(ap_decode(frame, n, 0, &rec), AP_OK);

	/* the full size first */
	struct buf b;
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(map_record(&b, &rec, &org, "box1", 4, NULL), 0);
	size_t need = b.len;
	char *want = malloc(need);
	memcpy(want, b.data, need);
	buf_free(&b);

	/*
	 * Every cap below the size needed. The buffer holds PRE bytes first so
	 * that the cap stays at or above buf's first allocation (256 bytes).
	 */
	enum { PRE = 253 };
	char pre[PRE];
	memset(pre, 'p', PRE);
	for (size_t cap = PRE + 3; cap < PRE + need; cap++) {
		struct map_counts c = {0};
		buf_init(&b, cap);
		ck_assert_int_eq(buf_append(&b, pre, PRE), 0);
		ck_assert_int_eq(map_record(&b, &rec, &org, "box1", 4, &c), -ENOMEM);
		ck_assert_uint_eq(b.len, PRE);
		ck_assert(memcmp(b.data, pre, PRE) == 0);
		ck_assert_uint_eq(c.moved + c.invalid_utf8 + c.truncated + c.origin_renamed + c.duplicate_keys +
					  c.level_normalized,
				  0);
		buf_free(&b);
	}
	struct map_counts c = {0};
	buf_init(&b, PRE + need);
	ck_assert_int_eq(buf_append(&b, pre, PRE), 0);
	ck_assert_int_eq(map_record(&b, &rec, &org, "box1", 4, &c), 0);
	ck_assert_uint_eq(b.len, PRE + need);
	ck_assert(memcmp(b.data + PRE, want, need) == 0);
	ck_assert_uint_eq(c.moved, 1);
	ck_assert_uint_eq(c.truncated, 1);
	ck_assert_uint_eq(c.origin_renamed, 1);
	ck_assert_uint_eq(c.duplicate_keys, 39);
	buf_free(&b);
	free(want);
}
END_TEST

START_TEST(map_appends_after_existing_content)
{
	start(AP_INFO, 1, "one");
	size_t n = ap_writer_finish(&w);
	ap_record_t rec;
	ck_assert_int_eq(ap_decode(frame, n, 0, &rec), AP_OK);
	struct buf b;
	buf_init(&b, 4096);
	ck_assert_int_eq(buf_puts(&b, "{\"logs\":["), 0);
	ck_assert_int_eq(map_record(&b, &rec, &org, "h", 1, NULL), 0);
	ck_assert_int_eq(buf_putc(&b, ','), 0);
	ck_assert_int_eq(map_record(&b, &rec, &org, "h", 1, NULL), 0);
	ck_assert_int_eq(buf_puts(&b, "]}"), 0);
	json_t *j = json_loadb(b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "logs")), 2);
	json_decref(j);
	buf_free(&b);
}
END_TEST

/* ---- random records ---------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static const char *const pool_keys[] = {
	"level",	 "message",    "created_at",  "metadata",
	"log_type",	 "service",    "environment", "service_version",
	"trace_id",	 "user_id",    "session_id",  "error_type",
	"stack_trace",	 "path",       "method",      "action_type",
	"function_name", "file_path",  "duration_ms", "pid",
	"uid",		 "gid",	       "process",     "host",
	"truncated",	 "client_pid", "x",	      "x#2",
};
static const char *const pool_vals[] = {"WARN", "warning", "GET",      "post", "production", "Staging",
					"iot",	"7",	   "critical", "",     "BACKEND",    "x#2"};

/* Random bytes biased toward the interesting ones. */
static size_t rnd_bytes(char *s, size_t max)
{
	static const char special[] = {0,	   '"',	       '\\',	   '\n',       0x1f,
				       0x7f,	   (char)0x80, (char)0xbf, (char)0xc0, (char)0xc2,
				       (char)0xe0, (char)0xed, (char)0xef, (char)0xf0, (char)0xf4,
				       (char)0xf5, (char)0xff, (char)0xa0, (char)0x90, (char)0x8f};
	size_t n = rnd() % (max + 1);
	for (size_t i = 0; i < n; i++) {
		uint64_t r = rnd();
		s[i] = r % 3 == 0   ? special[(r >> 8) % sizeof special]
		       : r % 3 == 1 ? (char)('a' + (r >> 8) % 26)
				    : (char)(r >> 8);
	}
	return n;
}

/* Build, map and check one random record; returns the number of fields. */
static void random_record(void)
{
	char msg[300], key[300], val[2000];
	size_t ml = rnd_bytes(msg, rnd() % 4 ? 100 : sizeof msg);
	ck_assert_int_eq(
		ap_writer_init(&w, frame, sizeof frame, (int)(rnd() % AP_NLEVELS), rnd() % 4 ? rnd() : 0, 0, msg, ml),
		0);
	int nf = (int)(rnd() % 40), level_field = 0;
	for (int i = 0; i < nf; i++) {
		size_t kl;
		if (rnd() % 3) {
			const char *k = pool_keys[rnd() % (sizeof pool_keys / sizeof pool_keys[0])];
			kl = strlen(k);
			memcpy(key, k, kl);
		} else {
			kl = 1 + rnd_bytes(key, 254);
			key[kl - 1] = 'k';
		}
		int is_level = kl == 5 && memcmp(key, "level", 5) == 0;
		switch (rnd() % 5) {
		case 0: {
			size_t vl;
			if (rnd() % 2) {
				const char *v = pool_vals[rnd() % (sizeof pool_vals / sizeof pool_vals[0])];
				vl = strlen(v);
				memcpy(val, v, vl);
			} else {
				vl = rnd_bytes(val, rnd() % 8 ? 40 : sizeof val);
			}
			ap_put_string(&w, key, kl, val, vl);
			level_field |= is_level && ap_level_parse(val, vl) >= 0;
			break;
		}
		case 1: {
			int64_t v = rnd() % 2 ? (int64_t)(rnd() % 20) - 10 : (int64_t)rnd();
			ap_put_int64(&w, key, kl, v);
			level_field |= is_level && ap_level_from_syslog(v) >= 0;
			break;
		}
		case 2: {
			uint64_t bits = rnd();
			double d;
			memcpy(&d, &bits, sizeof d);
			if (rnd() % 2)
				d = (double)(int64_t)(rnd() % 20000000) / 1000 - 10000;
			ap_put_double(&w, key, kl, d);
			break;
		}
		case 3:
			ap_put_bool(&w, key, kl, (int)(rnd() % 2));
			break;
		default: {
			/* a VARCHAR value near its limit */
			size_t len;
			char *s = mbstr(rnd() % 1100, &len);
			ap_put_string(&w, key, kl, s, len);
			free(s);
			break;
		}
		}
	}
	struct origin o = org;
	if (rnd() % 4 == 0)
		rnd_bytes(o.comm, 16);
	json_t *j = map_flags(rnd() % 2 ? AP_F_TRUNCATED : 0, &o, rnd() % 2 ? "box1" : "b\xff\0x");

	/* every field lands exactly once: the level, a column or a metadata key */
	size_t placed = json_object_size(j) - 3 - (json_object_get(j, "created_at") != NULL);
	json_t *m = meta(j);
	size_t origin_keys = 0;
	static const char *const ok[] = {"pid", "uid", "gid", "process", "host", "truncated"};
	for (int i = 0; i < 6; i++)
		origin_keys += json_object_get(m, ok[i]) != NULL;
	placed += json_object_size(m) - origin_keys + (size_t)level_field;
	ck_assert_uint_eq(placed, w.nfields);
	json_decref(j);
}

START_TEST(map_random_records_pass_the_upstream_check)
{
	rng_state = 0x9E3779B97F4A7C15ull;
	for (int i = 0; i < 3000; i++)
		random_record();
}
END_TEST

START_TEST(map_mutated_frames_pass_the_upstream_check)
{
	rng_state = 0x2545F4914F6CDD1Dull;
	static uint8_t f2[4096];
	int mapped = 0;
	for (int i = 0; i < 3000; i++) {
		start(AP_INFO, 1732800000123456789ull, "a normal message");
		put_s("service", "api");
		put_s("level", "warning");
		put_i("user_id", 42);
		put_d("duration_ms", 12.5);
		put_b("ok", 1);
		put_s("method", "get");
		size_t n = ap_writer_finish(&w);
		memcpy(f2, frame, n);
		int flips = 1 + (int)(rnd() % 4);
		for (int k = 0; k < flips; k++)
			f2[AP_HDR_SIZE + rnd() % (n - AP_HDR_SIZE)] = (uint8_t)rnd();
		ap_record_t rec;
		if (ap_decode(f2, n, 0, &rec) != AP_OK)
			continue;
		struct buf b;
		buf_init(&b, 1 << 20);
		ck_assert_int_eq(map_record(&b, &rec, &org, "h", 1, NULL), 0);
		check_shape(b.data, b.len);
		buf_free(&b);
		mapped++;
	}
	ck_assert_int_gt(mapped, 1000);
}
END_TEST

/* ---- benchmark (MAP_BENCH=1) ------------------------------------------- */

static void bench(void)
{
	static uint8_t f[1024];
	ap_writer_t bw;
	const char *msg = "GET /api/v1/orders/12345 completed in 12 ms for user 42 with status 200 OK, cache hit";
	ap_writer_init(&bw, f, sizeof f, AP_INFO, 1732800000123456789ull, 0, msg, strlen(msg));
	ap_put_string(&bw, "service", 7, "orders-api", 10);
	ap_put_string(&bw, "trace_id", 8, "4bf92f3577b34da6a3ce929d0e0e4736", 32);
	ap_put_string(&bw, "region", 6, "eu-west-1", 9);
	ap_put_int64(&bw, "status", 6, 200);
	ap_put_bool(&bw, "cache_hit", 9, 1);
	size_t n = ap_writer_finish(&bw);
	struct buf b;
	buf_init(&b, 1 << 20);
	struct map_counts c = {0};
	/* best of several rounds: the machine may be shared */
	const int iters = 200000;
	double ns = 1e9;
	for (int round = 0; round < 10; round++) {
		struct timespec t0, t1;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < iters; i++) {
			ap_record_t rec;
			b.len = 0;
			if (ap_decode(f, n, 0, &rec) || map_record(&b, &rec, &org, "box1", 4, &c))
				abort();
		}
		clock_gettime(CLOCK_MONOTONIC, &t1);
		double r = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / iters;
		ns = r < ns ? r : ns;
	}
	printf("map bench: %.0f ns/record (decode + map, best of 10 rounds), %zu bytes of JSON\n", ns, b.len);
	buf_free(&b);
}

static Suite *map_suite(void)
{
	Suite *s = suite_create("map");
	TCase *t = tcase_create("map");
	tcase_add_checked_fixture(t, NULL, teardown);
	tcase_set_timeout(t, 120);
	tcase_add_test(t, map_header_level_message_created_at);
	tcase_add_test(t, map_created_at_has_six_decimals_and_zero_omits_it);
	tcase_add_test(t, map_origin_is_written_from_the_kernel);
	tcase_add_test(t, map_client_origin_keys_are_renamed);
	tcase_add_test(t, map_truncated_flag_goes_to_metadata);
	tcase_add_test(t, map_level_field_overrides_header);
	tcase_add_test(t, map_level_field_naming_no_level_goes_to_metadata);
	tcase_add_test(t, map_level_first_valid_wins_the_rest_go_to_metadata);
	tcase_add_test(t, map_enum_any_case_is_emitted_canonical);
	tcase_add_test(t, map_enum_outside_its_set_goes_to_metadata);
	tcase_add_test(t, map_varchar_limits_count_code_points);
	tcase_add_test(t, map_varchar_maximal_subparts_count_as_one_code_point);
	tcase_add_test(t, map_stack_trace_has_no_limit);
	tcase_add_test(t, map_numbers_are_coerced_into_string_columns);
	tcase_add_test(t, map_duration_fits_decimal_10_3);
	tcase_add_test(t, map_reserved_keys_go_to_metadata);
	tcase_add_test(t, map_duplicate_column_first_valid_fills_it);
	tcase_add_test(t, map_duplicate_metadata_keys_get_suffixes);
	tcase_add_test(t, map_many_fields_use_the_heap_key_table);
	tcase_add_test(t, map_other_keys_keep_their_type);
	tcase_add_test(t, map_invalid_utf8_is_replaced_per_maximal_subpart);
	tcase_add_test(t, map_keys_are_repaired_and_escaped);
	tcase_add_test(t, map_control_characters_are_escaped);
	tcase_add_test(t, map_enomem_restores_the_buffer);
	tcase_add_test(t, map_appends_after_existing_content);
	tcase_add_test(t, map_random_records_pass_the_upstream_check);
	tcase_add_test(t, map_mutated_frames_pass_the_upstream_check);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	if (getenv("MAP_BENCH"))
		bench();
	SRunner *sr = srunner_create(map_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
