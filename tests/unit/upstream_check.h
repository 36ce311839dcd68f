/*
 * upstream_check: does a JSON record pass the upstream's POST /logs rules
 * (docs UPSTREAM.md)? Shared by the map unit tests and the map fuzz target.
 *
 * upstream_check() parses the text with jansson (duplicate keys rejected),
 * then checks: a JSON object; only the known top-level keys (the server
 * would silently drop any other); "message" present; every column of the
 * JSON type the server wants, enums within their sets, VARCHARs within their
 * lengths in code points, duration_ms within DECIMAL(10,3); "metadata" an
 * object; no NUL in any string or key. jansson itself rejects invalid UTF-8
 * and \u0000. Returns 0, or -1 with a description in err.
 */
#ifndef TESTS_UPSTREAM_CHECK_H
#define TESTS_UPSTREAM_CHECK_H

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
	const char *key;
	char type; /* 's' string, 'n' number, 'o' object */
	size_t limit; /* code points for a VARCHAR, 0: none */
	const char *values[8]; /* enum values, NULL-terminated */
} upstream_columns[] = {
	{"level", 's', 0, {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", NULL}},
	{"message", 's', 0, {NULL}},
	{"created_at", 'n', 0, {NULL}},
	{"log_type", 's', 0, {"BACKEND", "FRONTEND", "MOBILE", "IOT", "WORKER", NULL}},
	{"service", 's', 100, {NULL}},
	{"environment", 's', 0, {"production", "staging", "development", "test", "local", NULL}},
	{"service_version", 's', 50, {NULL}},
	{"trace_id", 's', 32, {NULL}},
	{"user_id", 's', 255, {NULL}},
	{"session_id", 's', 100, {NULL}},
	{"error_type", 's', 200, {NULL}},
	{"stack_trace", 's', 0, {NULL}},
	{"path", 's', 500, {NULL}},
	{"method", 's', 0, {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", NULL}},
	{"action_type", 's', 50, {NULL}},
	{"function_name", 's', 300, {NULL}},
	{"file_path", 's', 1000, {NULL}},
	{"duration_ms", 'n', 0, {NULL}},
	{"metadata", 'o', 0, {NULL}},
};

static int upstream_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int upstream_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (err && errlen)
		vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Code points of a valid UTF-8 string. */
static size_t upstream_cp(const char *s, size_t n)
{
	size_t cp = 0;
	for (size_t i = 0; i < n; i++)
		cp += ((unsigned char)s[i] & 0xC0) != 0x80;
	return cp;
}

/* No NUL in any string or key of v. */
static int upstream_no_nul(json_t *v, char *err, size_t errlen)
{
	if (json_is_string(v)) {
		if (strlen(json_string_value(v)) != json_string_length(v))
			return upstream_fail(err, errlen, "NUL in a string");
	} else if (json_is_object(v)) {
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x)
		{
			if (upstream_no_nul(x, err, errlen))
				return -1;
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x)
		{
			if (upstream_no_nul(x, err, errlen))
				return -1;
		}
	}
	return 0;
}

/* Check one parsed record. */
static int upstream_check_record(json_t *rec, char *err, size_t errlen)
{
	const size_t ncols = sizeof upstream_columns / sizeof upstream_columns[0];
	const char *key;
	json_t *v;
	if (!json_is_object(rec))
		return upstream_fail(err, errlen, "not an object");
	if (!json_is_string(json_object_get(rec, "message")))
		return upstream_fail(err, errlen, "no message");
	json_object_foreach(rec, key, v)
	{
		size_t i;
		for (i = 0; i < ncols; i++)
			if (strcmp(upstream_columns[i].key, key) == 0)
				break;
		if (i == ncols)
			return upstream_fail(err, errlen, "unknown top-level key \"%s\"", key);
		switch (upstream_columns[i].type) {
		case 's':
			if (!json_is_string(v))
				return upstream_fail(err, errlen, "%s: not a string", key);
			break;
		case 'n':
			if (!json_is_number(v) || !isfinite(json_number_value(v)))
				return upstream_fail(err, errlen, "%s: not a number", key);
			break;
		default:
			if (!json_is_object(v))
				return upstream_fail(err, errlen, "%s: not an object", key);
			break;
		}
		if (upstream_columns[i].values[0]) {
			int ok = 0;
			for (int j = 0; upstream_columns[i].values[j]; j++)
				ok |= strcmp(upstream_columns[i].values[j], json_string_value(v)) == 0;
			if (!ok)
				return upstream_fail(err, errlen, "%s: \"%s\" not in the enum", key,
						     json_string_value(v));
		}
		if (upstream_columns[i].limit &&
		    upstream_cp(json_string_value(v), json_string_length(v)) > upstream_columns[i].limit)
			return upstream_fail(err, errlen, "%s: longer than %zu", key, upstream_columns[i].limit);
		if (strcmp(key, "duration_ms") == 0 && !(fabs(json_number_value(v)) < 9999999.9995))
			return upstream_fail(err, errlen, "duration_ms: %g outside DECIMAL(10,3)",
					     json_number_value(v));
		if (strcmp(key, "created_at") == 0 && !(json_number_value(v) >= 0 && json_number_value(v) < 2e10))
			return upstream_fail(err, errlen, "created_at: %f not in seconds", json_number_value(v));
	}
	return upstream_no_nul(rec, err, errlen);
}

/* Parse len bytes of text as one record and check it. */
static int upstream_check(const char *text, size_t len, char *err, size_t errlen)
{
	json_error_t je;
	json_t *rec = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
	if (!rec)
		return upstream_fail(err, errlen, "not JSON: %s (at %d)", je.text, je.position);
	int rc = upstream_check_record(rec, err, errlen);
	json_decref(rec);
	return rc;
}

#endif
