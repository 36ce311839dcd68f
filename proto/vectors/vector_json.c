/* vector_json: see vector_json.h. */
#include "vector_json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#define SAFE_INT_MAX VECTOR_SAFE_INT_MAX

int vector_utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0;
	while (i < n) {
		uint8_t c = s[i];
		size_t len;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			len = 2;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			len = 3;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			len = 4;
			cp = c & 0x07;
		} else {
			return 0;
		}
		if (n - i < len)
			return 0;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = cp << 6 | (s[i + k] & 0x3F);
		}
		if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
		    (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += len;
	}
	return 1;
}

static json_t *jstr(const void *p, size_t n)
{
	if (vector_utf8_valid(p, n))
		return json_stringn(p, n);
	static const char digits[] = "0123456789abcdef";
	char *hex = malloc(2 * n + 1);
	if (!hex)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		hex[2 * i] = digits[((const uint8_t *)p)[i] >> 4];
		hex[2 * i + 1] = digits[((const uint8_t *)p)[i] & 15];
	}
	json_t *v = json_pack("{s:s#}", "hex", hex, (int)(2 * n));
	free(hex);
	return v;
}

static json_t *jint(int64_t v)
{
	if (v >= -SAFE_INT_MAX && v <= SAFE_INT_MAX)
		return json_integer(v);
	char s[32];
	snprintf(s, sizeof s, "%" PRId64, v);
	return json_string(s);
}

static json_t *juint(uint64_t v)
{
	if (v <= (uint64_t)SAFE_INT_MAX)
		return json_integer((json_int_t)v);
	char s[32];
	snprintf(s, sizeof s, "%" PRIu64, v);
	return json_string(s);
}

static json_t *jdouble(double d)
{
	if (isnan(d))
		return json_string("nan");
	if (isinf(d))
		return json_string(d > 0 ? "inf" : "-inf");
	return json_real(d);
}

static const char *type_name(int type)
{
	switch (type) {
	case AP_T_STRING:
		return "string";
	case AP_T_INT64:
		return "int64";
	case AP_T_DOUBLE:
		return "double";
	default:
		return "bool";
	}
}

json_t *vector_record_json(const ap_record_t *rec)
{
	json_t *fields = json_array();
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, rec);
	while (fields && ap_iter_next(&it, &f)) {
		json_t *v;
		switch (f.type) {
		case AP_T_STRING:
			v = jstr(f.v.s.ptr, f.v.s.len);
			break;
		case AP_T_INT64:
			v = jint(f.v.i);
			break;
		case AP_T_DOUBLE:
			v = jdouble(f.v.d);
			break;
		default:
			v = json_boolean(f.v.b);
			break;
		}
		/* json_pack's "o" takes v and the key, and fails when either is NULL */
		if (json_array_append_new(fields, json_pack("{s:o,s:s,s:o}", "key", jstr(f.key, f.klen), "type",
							    type_name(f.type), "value", v))) {
			json_decref(fields);
			return NULL;
		}
	}
	if (!fields)
		return NULL;
	return json_pack("{s:i,s:i,s:o,s:o,s:o,s:o}", "level", rec->level, "flags", rec->flags, "time_ns",
			 juint(rec->time_ns), "dropped", juint(rec->dropped), "message", jstr(rec->msg, rec->msg_len),
			 "fields", fields);
}
