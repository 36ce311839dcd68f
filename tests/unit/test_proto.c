/*
 * test_proto: the record codec (proto/agent_proto.[ch]).
 *
 * Covers: the golden frames of proto/vectors/ (each decodes to its JSON and
 * the JSON re-encodes to the same bytes; each bad_* frame fails with the
 * error its JSON names), every bound at limit-1, limit and limit+1, one case
 * per malformation class, the writer's buffer discipline (a canary after the
 * buffer), the level alias table, the error names, and the fuzzers'
 * regression inputs for the decoder.
 *
 * Environment: PROTO_VECTORS (default "proto/vectors") and FUZZ_REGRESSIONS
 * (default "tests/fuzz/regressions"), relative to the working directory.
 */
#include "agent_proto.h"
#include "vectors/vector_json.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(lit) (lit), (sizeof(lit) - 1)
#define CANARY 0xA5
/* ck_assert records a mark point per call, too slow for hot loops. */
#define REQUIRE(c)                                                                                                     \
	do {                                                                                                           \
		if (!(c))                                                                                              \
			ck_abort_msg("%s:%d: failed: %s", __FILE__, __LINE__, #c);                                     \
	} while (0)
#define SLACK 64

/* Room for the largest frame, its canary, and one byte more. */
static uint8_t big[AP_MAX_FRAME + 2 * SLACK];
static char text[AP_MAX_FRAME + 2 * SLACK];

/* ---- helpers ------------------------------------------------------------ */

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);
	return v && *v ? v : def;
}

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s: %s", path, strerror(errno));
	size_t cap = 4096, n = 0;
	uint8_t *b = malloc(cap);
	ck_assert_ptr_nonnull(b);
	for (;;) {
		n += fread(b + n, 1, cap - n, f);
		if (n < cap)
			break;
		cap *= 2;
		uint8_t *nb = realloc(b, cap);
		ck_assert_ptr_nonnull(nb);
		b = nb;
	}
	ck_assert_msg(!ferror(f), "cannot read %s", path);
	fclose(f);
	*len = n;
	return b;
}

static int has_suffix(const char *s, const char *suf)
{
	size_t n = strlen(s), m = strlen(suf);
	return n >= m && strcmp(s + n - m, suf) == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names of the regular files in dir ending in suffix; NULL-terminated.
 * Returns NULL when dir does not exist. */
static char **list_dir(const char *dir, const char *suffix, size_t *count)
{
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	size_t n = 0, cap = 16;
	char **names = malloc(cap * sizeof *names);
	ck_assert_ptr_nonnull(names);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.' || !has_suffix(e->d_name, suffix))
			continue;
		if (n + 1 >= cap) {
			cap *= 2;
			char **nn = realloc(names, cap * sizeof *names);
			ck_assert_ptr_nonnull(nn);
			names = nn;
		}
		names[n++] = strdup(e->d_name);
	}
	closedir(d);
	names[n] = NULL;
	qsort(names, n, sizeof *names, cmp_str);
	*count = n;
	return names;
}

static void free_list(char **names)
{
	for (size_t i = 0; names && names[i]; i++)
		free(names[i]);
	free(names);
}

/* ---- the vectors' JSON form (proto/vectors/vector_json.c) ---------------- */

/* The canonical JSON form of a decoded record. */
static json_t *record_to_json(const ap_record_t *rec)
{
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, rec);
	while (ap_iter_next(&it, &f)) {
		ck_assert_int_ge(f.type, AP_T_STRING);
		ck_assert_int_le(f.type, AP_T_BOOL);
	}
	json_t *j = vector_record_json(rec);
	ck_assert_ptr_nonnull(j);
	return j;
}

/* Bytes of a JSON string or {"hex": ...}; the caller frees *out. */
static int json_bytes(json_t *v, char **out, size_t *len)
{
	if (json_is_string(v)) {
		*len = json_string_length(v);
		*out = malloc(*len + 1);
		memcpy(*out, json_string_value(v), *len);
		return 0;
	}
	json_t *h = json_object_get(v, "hex");
	if (!json_is_string(h) || json_string_length(h) % 2)
		return -1;
	const char *s = json_string_value(h);
	*len = json_string_length(h) / 2;
	*out = malloc(*len + 1);
	for (size_t i = 0; i < *len; i++) {
		unsigned x;
		if (sscanf(s + 2 * i, "%2x", &x) != 1) {
			free(*out);
			return -1;
		}
		(*out)[i] = (char)x;
	}
	return 0;
}

static int json_u64(json_t *v, uint64_t *out)
{
	if (json_is_integer(v) && json_integer_value(v) >= 0) {
		*out = (uint64_t)json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -1;
	const char *s = json_string_value(v);
	char *end;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || end == s || *end || s[0] == '-' ? -1 : 0;
}

static int json_i64(json_t *v, int64_t *out)
{
	if (json_is_integer(v)) {
		*out = json_integer_value(v);
		return 0;
	}
	if (!json_is_string(v))
		return -1;
	const char *s = json_string_value(v);
	char *end;
	errno = 0;
	*out = strtoll(s, &end, 10);
	return errno || end == s || *end ? -1 : 0;
}

static int json_double(json_t *v, double *out)
{
	if (json_is_number(v)) {
		*out = json_number_value(v);
		return 0;
	}
	const char *s = json_string_value(v);
	if (!s)
		return -1;
	if (strcmp(s, "nan") == 0)
		*out = NAN;
	else if (strcmp(s, "inf") == 0)
		*out = INFINITY;
	else if (strcmp(s, "-inf") == 0)
		*out = -INFINITY;
	else
		return -1;
	return 0;
}

/* Encode a vector's JSON with the writer, as a shim would. Returns the frame
 * size, or 0 when the JSON does not describe a frame. */
static size_t json_to_frame(json_t *j, uint8_t *buf, size_t cap)
{
	uint64_t time_ns, dropped;
	json_t *level = json_object_get(j, "level"), *flags = json_object_get(j, "flags");
	json_t *fields = json_object_get(j, "fields");
	char *msg;
	size_t msg_len;
	if (!json_is_integer(level) || !json_is_integer(flags) || !json_is_array(fields) ||
	    json_u64(json_object_get(j, "time_ns"), &time_ns) || json_u64(json_object_get(j, "dropped"), &dropped) ||
	    dropped > UINT32_MAX || json_bytes(json_object_get(j, "message"), &msg, &msg_len))
		return 0;
	ap_writer_t w;
	int rc = ap_writer_init(&w, buf, cap, (int)json_integer_value(level), time_ns, (uint32_t)dropped, msg, msg_len);
	free(msg);
	if (rc)
		return 0;
	/* A shim sets TRUNCATED when it cut the record; the vector says so. */
	w.flags |= (uint16_t)json_integer_value(flags);
	size_t i;
	json_t *f;
	json_array_foreach(fields, i, f)
	{
		char *key;
		size_t klen;
		const char *type = json_string_value(json_object_get(f, "type"));
		json_t *v = json_object_get(f, "value");
		if (!type || json_bytes(json_object_get(f, "key"), &key, &klen))
			return 0;
		rc = -1;
		if (strcmp(type, "string") == 0) {
			char *s;
			size_t n;
			if (json_bytes(v, &s, &n) == 0) {
				rc = ap_put_string(&w, key, klen, s, n);
				free(s);
			}
		} else if (strcmp(type, "int64") == 0) {
			int64_t x;
			if (json_i64(v, &x) == 0)
				rc = ap_put_int64(&w, key, klen, x);
		} else if (strcmp(type, "double") == 0) {
			double d;
			if (json_double(v, &d) == 0)
				rc = ap_put_double(&w, key, klen, d);
		} else if (strcmp(type, "bool") == 0 && json_is_boolean(v)) {
			rc = ap_put_bool(&w, key, klen, json_is_true(v));
		}
		free(key);
		if (rc)
			return 0;
	}
	return ap_writer_finish(&w);
}

/* ---- golden vectors ----------------------------------------------------- */

static void check_vector(const char *dir, const char *name, unsigned *errors_seen)
{
	char path[4096];
	size_t len;
	snprintf(path, sizeof path, "%s/%s.bin", dir, name);
	uint8_t *frame = read_all(path, &len);
	snprintf(path, sizeof path, "%s/%s.json", dir, name);
	json_error_t jerr;
	json_t *want = json_load_file(path, JSON_ALLOW_NUL, &jerr);
	ck_assert_msg(want != NULL, "%s: line %d: %s", path, jerr.line, jerr.text);

	ap_record_t rec;
	int rc = ap_decode(frame, len, 0, &rec);
	if (strncmp(name, "bad_", 4) == 0) {
		const char *err = json_string_value(json_object_get(want, "error"));
		ck_assert_msg(err != NULL, "%s: no \"error\"", name);
		ck_assert_msg(rc < 0, "%s: decoded, expected %s", name, err);
		ck_assert_msg(strcmp(ap_strerror(rc), err) == 0, "%s: got %s, expected %s", name, ap_strerror(rc), err);
		*errors_seen |= 1u << -rc;
	} else {
		ck_assert_msg(rc == AP_OK, "%s: %s", name, ap_strerror(rc));
		json_t *got = record_to_json(&rec);
		if (!json_equal(got, want)) {
			char *s = json_dumps(got, JSON_COMPACT);
			ck_abort_msg("%s: decodes to %s", name, s);
		}
		json_decref(got);

		/* Re-encoding the JSON gives the same bytes, with room to
		 * spare and with exactly enough room. */
		memset(big, CANARY, sizeof big);
		size_t n = json_to_frame(want, big, AP_MAX_FRAME);
		ck_assert_msg(n == len, "%s: re-encoded to %zu bytes, expected %zu", name, n, len);
		ck_assert_msg(memcmp(big, frame, len) == 0, "%s: re-encoded bytes differ", name);
		memset(big, CANARY, sizeof big);
		ck_assert_uint_eq(json_to_frame(want, big, len), len);
		ck_assert_msg(memcmp(big, frame, len) == 0, "%s: re-encoded bytes differ at exact size", name);
		ck_assert_uint_eq(big[len], CANARY);

		/* The max argument: the frame's own size is enough, one less is not. */
		ck_assert_int_eq(ap_decode(frame, len, len, &rec), AP_OK);
		ck_assert_int_eq(ap_decode(frame, len, len - 1, &rec), AP_EBIG);
	}
	json_decref(want);
	free(frame);
}

START_TEST(vectors_decode_to_their_json_and_reencode_byte_for_byte)
{
	const char *dir = env_or("PROTO_VECTORS", "proto/vectors");
	size_t nbin, njson;
	char **bins = list_dir(dir, ".bin", &nbin);
	char **jsons = list_dir(dir, ".json", &njson);
	ck_assert_msg(bins != NULL, "no vectors directory %s (set PROTO_VECTORS)", dir);
	ck_assert_msg(nbin >= 20, "only %zu vectors in %s", nbin, dir);
	ck_assert_msg(nbin == njson, "%zu .bin files but %zu .json files in %s", nbin, njson, dir);
	unsigned errors_seen = 0;
	for (size_t i = 0; i < nbin; i++) {
		bins[i][strlen(bins[i]) - 4] = '\0';
		jsons[i][strlen(jsons[i]) - 5] = '\0';
		ck_assert_msg(strcmp(bins[i], jsons[i]) == 0, "%s.bin and %s.json do not pair", bins[i], jsons[i]);
		check_vector(dir, bins[i], &errors_seen);
	}
	/* Every decoder error has a vector. */
	for (int e = 1; e < AP_NERRORS; e++)
		ck_assert_msg(errors_seen & 1u << e, "no bad_* vector for %s", ap_strerror(-e));
	free_list(bins);
	free_list(jsons);
}
END_TEST

/* Decode, iterate and re-encode; a frame the decoder accepts is canonical. */
static void roundtrip_if_valid(const uint8_t *frame, size_t len)
{
	ap_record_t rec;
	if (ap_decode(frame, len, 0, &rec) != AP_OK)
		return;
	ap_writer_t w;
	REQUIRE(ap_writer_init(&w, big, len, rec.level, rec.time_ns, rec.dropped, rec.msg, rec.msg_len) == 0);
	w.flags = rec.flags;
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, &rec);
	while (ap_iter_next(&it, &f)) {
		REQUIRE((const uint8_t *)f.key + f.klen <= rec.end);
		switch (f.type) {
		case AP_T_STRING:
			REQUIRE(f.v.s.len <= (size_t)(rec.end - (const uint8_t *)f.v.s.ptr));
			REQUIRE(ap_put_string(&w, f.key, f.klen, f.v.s.ptr, f.v.s.len) == 0);
			break;
		case AP_T_INT64:
			REQUIRE(ap_put_int64(&w, f.key, f.klen, f.v.i) == 0);
			break;
		case AP_T_DOUBLE:
			REQUIRE(ap_put_double(&w, f.key, f.klen, f.v.d) == 0);
			break;
		default:
			REQUIRE(ap_put_bool(&w, f.key, f.klen, f.v.b) == 0);
			break;
		}
	}
	REQUIRE(it.p == rec.end);
	REQUIRE(ap_writer_finish(&w) == len);
	REQUIRE(memcmp(big, frame, len) == 0);
}

START_TEST(fuzz_regressions_for_the_decoder_pass)
{
	char dir[4096];
	snprintf(dir, sizeof dir, "%s/decode", env_or("FUZZ_REGRESSIONS", "tests/fuzz/regressions"));
	size_t n;
	char **names = list_dir(dir, "", &n);
	if (!names)
		return; /* no regression inputs yet */
	for (size_t i = 0; i < n; i++) {
		char path[8192];
		size_t len;
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		uint8_t *frame = read_all(path, &len);
		roundtrip_if_valid(frame, len);
		free(frame);
	}
	free_list(names);
}
END_TEST

/* ---- frame construction for the bounds tests --------------------------- */

/* A header-only frame with a message of msg_len bytes ('m'), msg_len and
 * nfields as given. Returns its size. */
static size_t raw_frame(uint8_t *b, size_t msg_len, uint16_t nfields)
{
	memset(b, 0, AP_HDR_SIZE);
	b[0] = AP_MAGIC0;
	b[1] = AP_MAGIC1;
	b[2] = AP_VERSION;
	b[3] = AP_INFO;
	b[6] = (uint8_t)nfields;
	b[7] = (uint8_t)(nfields >> 8);
	ap_wr32(b + 20, (uint32_t)msg_len);
	memset(b + AP_HDR_SIZE, 'm', msg_len);
	return AP_HDR_SIZE + msg_len;
}

/* A valid frame with "hi" and one field of each type. */
static size_t base_frame(uint8_t *b)
{
	ap_writer_t w;
	ck_assert_int_eq(ap_writer_init(&w, b, 256, AP_INFO, 1, 0, S("hi")), 0);
	ck_assert_int_eq(ap_put_string(&w, S("s"), S("str")), 0);
	ck_assert_int_eq(ap_put_int64(&w, S("i"), 42), 0);
	ck_assert_int_eq(ap_put_double(&w, S("d"), 0.5), 0);
	ck_assert_int_eq(ap_put_bool(&w, S("b"), 1), 0);
	return ap_writer_finish(&w);
}

enum {
	OFF_F1 = AP_HDR_SIZE + 2, /* string "s" */
	OFF_F2 = OFF_F1 + 10, /* int64 "i" */
	OFF_F3 = OFF_F2 + 11, /* double "d" */
	OFF_F4 = OFF_F3 + 11, /* bool "b" */
	BASE_LEN = OFF_F4 + 4,
};

/* Decode and check that rec is left alone on failure. */
static int decode(const void *frame, size_t len, size_t max)
{
	ap_record_t rec, orig;
	memset(&rec, 0x5A, sizeof rec);
	orig = rec;
	int rc = ap_decode(frame, len, max, &rec);
	if (rc != AP_OK)
		ck_assert_int_eq(memcmp(&rec, &orig, sizeof rec), 0);
	return rc;
}

/* ---- bounds: frame size, header, max ----------------------------------- */

START_TEST(decode_frame_size_at_max_frame)
{
	size_t n = raw_frame(big, AP_MAX_FRAME - 1 - AP_HDR_SIZE, 0);
	ck_assert_uint_eq(n, AP_MAX_FRAME - 1);
	ck_assert_int_eq(decode(big, n, 0), AP_OK);
	n = raw_frame(big, AP_MAX_FRAME - AP_HDR_SIZE, 0);
	ck_assert_int_eq(decode(big, n, 0), AP_OK);
	n = raw_frame(big, AP_MAX_FRAME + 1 - AP_HDR_SIZE, 0);
	ck_assert_int_eq(decode(big, n, 0), AP_EBIG);
	/* A max above AP_MAX_FRAME is clamped to it. */
	ck_assert_int_eq(decode(big, n, AP_MAX_FRAME + 1), AP_EBIG);
	ck_assert_int_eq(decode(big, n, SIZE_MAX), AP_EBIG);
}
END_TEST

START_TEST(decode_max_argument_at_frame_size)
{
	size_t n = raw_frame(big, 100, 0);
	ck_assert_int_eq(decode(big, n, n - 1), AP_EBIG);
	ck_assert_int_eq(decode(big, n, n), AP_OK);
	ck_assert_int_eq(decode(big, n, n + 1), AP_OK);
	ck_assert_int_eq(decode(big, n, 0), AP_OK);
	/* A max below the header size rejects everything but a short frame. */
	n = raw_frame(big, 0, 0);
	ck_assert_int_eq(decode(big, n, AP_HDR_SIZE - 1), AP_EBIG);
	ck_assert_int_eq(decode(big, n, 1), AP_EBIG);
	ck_assert_int_eq(decode(big, AP_HDR_SIZE - 1, 1), AP_ESHORT);
}
END_TEST

START_TEST(decode_header_size_limits)
{
	size_t n = raw_frame(big, 0, 0);
	ck_assert_uint_eq(n, AP_HDR_SIZE);
	ck_assert_int_eq(decode(big, AP_HDR_SIZE - 1, 0), AP_ESHORT);
	ck_assert_int_eq(decode(big, AP_HDR_SIZE, 0), AP_OK);
	big[AP_HDR_SIZE] = 0;
	ck_assert_int_eq(decode(big, AP_HDR_SIZE + 1, 0), AP_ETRAILING);
	ck_assert_int_eq(decode(big, 0, 0), AP_ESHORT);
	ck_assert_int_eq(decode(NULL, 100, 0), AP_ESHORT);
}
END_TEST

START_TEST(decode_fills_record)
{
	uint8_t b[256];
	ap_writer_t w;
	ck_assert_int_eq(ap_writer_init(&w, b, sizeof b, AP_ERROR, 0x0102030405060708ULL, 0xA0B0C0D0u, S("msg")), 0);
	ck_assert_int_eq(ap_put_bool(&w, S("k"), 0), 0);
	size_t n = ap_writer_finish(&w);
	ap_record_t rec;
	ck_assert_int_eq(ap_decode(b, n, 0, &rec), AP_OK);
	ck_assert_uint_eq(rec.level, AP_ERROR);
	ck_assert_uint_eq(rec.flags, 0);
	ck_assert_uint_eq(rec.nfields, 1);
	ck_assert_uint_eq(rec.time_ns, 0x0102030405060708ULL);
	ck_assert_uint_eq(rec.dropped, 0xA0B0C0D0u);
	ck_assert_ptr_eq(rec.msg, (const char *)b + AP_HDR_SIZE);
	ck_assert_uint_eq(rec.msg_len, 3);
	ck_assert_ptr_eq(rec.fields, b + AP_HDR_SIZE + 3);
	ck_assert_ptr_eq(rec.end, b + n);
	ap_frame_set_dropped(b, 7);
	ck_assert_int_eq(ap_decode(b, n, 0, &rec), AP_OK);
	ck_assert_uint_eq(rec.dropped, 7);
}
END_TEST

/* ---- one test per malformation class ------------------------------------ */

START_TEST(decode_bad_magic)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
	b[0] = 'a';
	ck_assert_int_eq(decode(b, n, 0), AP_EMAGIC);
	b[0] = AP_MAGIC0;
	b[1] = 'g';
	ck_assert_int_eq(decode(b, n, 0), AP_EMAGIC);
}
END_TEST

START_TEST(decode_bad_version)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	b[2] = 0;
	ck_assert_int_eq(decode(b, n, 0), AP_EVERSION);
	b[2] = 2;
	ck_assert_int_eq(decode(b, n, 0), AP_EVERSION);
	b[2] = 255;
	ck_assert_int_eq(decode(b, n, 0), AP_EVERSION);
}
END_TEST

START_TEST(decode_level_limits)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	b[3] = AP_NLEVELS - 1;
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
	b[3] = AP_NLEVELS;
	ck_assert_int_eq(decode(b, n, 0), AP_ELEVEL);
	b[3] = 255;
	ck_assert_int_eq(decode(b, n, 0), AP_ELEVEL);
}
END_TEST

START_TEST(decode_reserved_flag_bits)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	b[4] = AP_F_TRUNCATED;
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
	for (int bit = 1; bit < 16; bit++) {
		uint16_t fl = (uint16_t)(1u << bit);
		b[4] = (uint8_t)fl;
		b[5] = (uint8_t)(fl >> 8);
		ck_assert_msg(decode(b, n, 0) == AP_EFLAGS, "flag bit %d accepted", bit);
	}
}
END_TEST

START_TEST(decode_message_length_limits)
{
	uint8_t b[256];
	size_t n = raw_frame(b, 10, 0);
	ap_wr32(b + 20, 9);
	ck_assert_int_eq(decode(b, n, 0), AP_ETRAILING);
	ap_wr32(b + 20, 10);
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
	ap_wr32(b + 20, 11);
	ck_assert_int_eq(decode(b, n, 0), AP_EMSG);
	ap_wr32(b + 20, UINT32_MAX);
	ck_assert_int_eq(decode(b, n, 0), AP_EMSG);
}
END_TEST

START_TEST(decode_every_cut_is_a_truncation)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	ck_assert_uint_eq(n, BASE_LEN);
	for (size_t len = AP_HDR_SIZE; len < n; len++) {
		int want = len < AP_HDR_SIZE + 2 ? AP_EMSG : AP_EFIELD;
		ck_assert_msg(decode(b, len, 0) == want, "cut at %zu: %s", len, ap_strerror(decode(b, len, 0)));
	}
	b[n] = 0;
	ck_assert_int_eq(decode(b, n + 1, 0), AP_ETRAILING);
}
END_TEST

START_TEST(decode_string_length_limits)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	/* Grow the value by one byte at a time past what is there. */
	ap_wr32(b + OFF_F1 + 3, 3 + (uint32_t)(n - OFF_F2));
	ck_assert_int_eq(decode(b, n, 0), AP_EFIELD); /* eats all, then nothing for field 2 */
	ap_wr32(b + OFF_F1 + 3, 3 + (uint32_t)(n - OFF_F2) + 1);
	ck_assert_int_eq(decode(b, n, 0), AP_EFIELD);
	ap_wr32(b + OFF_F1 + 3, UINT32_MAX);
	ck_assert_int_eq(decode(b, n, 0), AP_EFIELD);
	ap_wr32(b + OFF_F1 + 3, UINT32_MAX - 3);
	ck_assert_int_eq(decode(b, n, 0), AP_EFIELD);
	/* With one field, a string that ends exactly at the end is fine. */
	n = raw_frame(b, 0, 1);
	uint8_t f[] = {AP_T_STRING, 1, 'k', 2, 0, 0, 0, 'v', 'w'};
	memcpy(b + n, f, sizeof f);
	ck_assert_int_eq(decode(b, n + sizeof f, 0), AP_OK);
	ck_assert_int_eq(decode(b, n + sizeof f - 1, 0), AP_EFIELD);
	b[n + 3] = 1;
	ck_assert_int_eq(decode(b, n + sizeof f, 0), AP_ETRAILING);
}
END_TEST

START_TEST(decode_bad_type)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	static const uint8_t bad[] = {0, 5, 6, 0x80, 255};
	for (size_t i = 0; i < sizeof bad; i++) {
		b[OFF_F3] = bad[i];
		ck_assert_msg(decode(b, n, 0) == AP_ETYPE, "type %u accepted", bad[i]);
	}
	/* A bad type is reported before a short field. */
	n = raw_frame(b, 0, 1);
	b[n] = 9;
	b[n + 1] = 1;
	ck_assert_int_eq(decode(b, n + 2, 0), AP_ETYPE);
}
END_TEST

START_TEST(decode_key_length_limits)
{
	uint8_t b[512];
	size_t n = base_frame(b);
	b[OFF_F2 + 1] = 0;
	ck_assert_int_eq(decode(b, n, 0), AP_EKEY);
	/* A 255-byte key decodes; its length byte cannot say 256. */
	n = raw_frame(b, 0, 1);
	b[n] = AP_T_BOOL;
	b[n + 1] = AP_MAX_KEY;
	memset(b + n + 2, 'k', AP_MAX_KEY);
	b[n + 2 + AP_MAX_KEY] = 1;
	ck_assert_int_eq(decode(b, n + 3 + AP_MAX_KEY, 0), AP_OK);
	ck_assert_int_eq(decode(b, n + 2 + AP_MAX_KEY, 0), AP_EFIELD);
	ck_assert_int_eq(decode(b, n + 1 + AP_MAX_KEY, 0), AP_EFIELD);
	b[n + 1] = AP_MAX_KEY - 1;
	ck_assert_int_eq(decode(b, n + 3 + AP_MAX_KEY, 0), AP_EBOOL); /* value is 'k' */
	ck_assert_int_eq(decode(b, n + 2 + AP_MAX_KEY, 0), AP_EBOOL);
}
END_TEST

START_TEST(decode_bad_bool)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	b[OFF_F4 + 3] = 0;
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
	b[OFF_F4 + 3] = 1;
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
	b[OFF_F4 + 3] = 2;
	ck_assert_int_eq(decode(b, n, 0), AP_EBOOL);
	b[OFF_F4 + 3] = 255;
	ck_assert_int_eq(decode(b, n, 0), AP_EBOOL);
	/* A BOOL whose byte is missing is truncated, not bad. */
	ck_assert_int_eq(decode(b, n - 1, 0), AP_EFIELD);
}
END_TEST

START_TEST(decode_field_count_limits)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	b[6] = 3;
	ck_assert_int_eq(decode(b, n, 0), AP_ETRAILING);
	b[6] = 4;
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
	b[6] = 5;
	ck_assert_int_eq(decode(b, n, 0), AP_EFIELD);
	b[6] = 0xFF;
	b[7] = 0xFF;
	ck_assert_int_eq(decode(b, n, 0), AP_EFIELD);
	b[6] = 0;
	b[7] = 0;
	ck_assert_int_eq(decode(b, n, 0), AP_ETRAILING);
}
END_TEST

/* The most fields a frame can hold (BOOL, 1-byte key: 4 bytes each), and
 * nfields 65535 claiming more than there is. */
START_TEST(fields_at_frame_capacity)
{
	enum { MOST = (AP_MAX_FRAME - AP_HDR_SIZE) / 4 };
	ap_writer_t w;
	memset(big, CANARY, sizeof big);
	ck_assert_int_eq(ap_writer_init(&w, big, AP_MAX_FRAME, AP_INFO, 0, 0, NULL, 0), 0);
	for (int i = 0; i < MOST; i++)
		REQUIRE(ap_put_bool(&w, S("k"), i & 1) == 0);
	ck_assert_int_eq(ap_put_bool(&w, S("k"), 1), -ENOSPC);
	ck_assert_uint_eq(w.flags, AP_F_TRUNCATED);
	size_t n = ap_writer_finish(&w);
	ck_assert_uint_eq(n, AP_MAX_FRAME);
	ck_assert_uint_eq(big[AP_MAX_FRAME], CANARY);
	ap_record_t rec;
	ck_assert_int_eq(ap_decode(big, n, 0, &rec), AP_OK);
	ck_assert_uint_eq(rec.nfields, MOST);
	ap_iter_t it;
	ap_field_t f;
	unsigned count = 0;
	ap_iter_init(&it, &rec);
	while (ap_iter_next(&it, &f)) {
		REQUIRE(f.v.b == (int)(count & 1));
		count++;
	}
	ck_assert_uint_eq(count, MOST);
	ck_assert_int_eq(ap_iter_next(&it, &f), 0);
	big[6] = 0xFF;
	big[7] = 0xFF;
	ck_assert_int_eq(decode(big, n, 0), AP_EFIELD);
}
END_TEST

/* The writer's own field-count guard, reached by presetting its count (a
 * frame cannot hold 65535 fields within AP_MAX_FRAME). */
START_TEST(writer_field_count_limit)
{
	uint8_t b[256];
	ap_writer_t w;
	ck_assert_int_eq(ap_writer_init(&w, b, sizeof b, AP_INFO, 0, 0, NULL, 0), 0);
	w.nfields = AP_MAX_FIELDS - 2;
	ck_assert_int_eq(ap_put_bool(&w, S("a"), 1), 0);
	ck_assert_uint_eq(w.nfields, AP_MAX_FIELDS - 1);
	ck_assert_uint_eq(w.flags, 0);
	ck_assert_int_eq(ap_put_bool(&w, S("b"), 1), 0);
	ck_assert_uint_eq(w.nfields, AP_MAX_FIELDS);
	ck_assert_int_eq(ap_put_bool(&w, S("c"), 1), -ENOSPC);
	ck_assert_uint_eq(w.nfields, AP_MAX_FIELDS);
	ck_assert_uint_eq(w.flags, AP_F_TRUNCATED);
	ap_writer_finish(&w);
	ck_assert_uint_eq(b[6], 0xFF);
	ck_assert_uint_eq(b[7], 0xFF);
}
END_TEST

/* ---- the writer --------------------------------------------------------- */

START_TEST(writer_key_length_limits)
{
	char key[AP_MAX_KEY + 1];
	uint8_t b[1024];
	memset(key, 'k', sizeof key);
	ap_writer_t w;
	ck_assert_int_eq(ap_writer_init(&w, b, sizeof b, AP_INFO, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(ap_put_int64(&w, key, 0, 1), -ENOSPC);
	ck_assert_uint_eq(w.flags, AP_F_TRUNCATED);
	ck_assert_int_eq(ap_put_int64(&w, NULL, 1, 1), -ENOSPC);
	ck_assert_int_eq(ap_put_int64(&w, key, 1, 1), 0);
	ck_assert_int_eq(ap_put_int64(&w, key, AP_MAX_KEY - 1, 2), 0);
	ck_assert_int_eq(ap_put_int64(&w, key, AP_MAX_KEY, 3), 0);
	ck_assert_int_eq(ap_put_int64(&w, key, AP_MAX_KEY + 1, 4), -ENOSPC);
	ck_assert_int_eq(ap_put_string(&w, key, AP_MAX_KEY + 1, S("v")), -ENOSPC);
	ck_assert_uint_eq(w.nfields, 3);
	size_t n = ap_writer_finish(&w);
	ap_record_t rec;
	ck_assert_int_eq(ap_decode(b, n, 0, &rec), AP_OK);
	ck_assert_uint_eq(rec.flags, AP_F_TRUNCATED);
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, &rec);
	static const size_t klens[] = {1, AP_MAX_KEY - 1, AP_MAX_KEY};
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(ap_iter_next(&it, &f), 1);
		ck_assert_uint_eq(f.type, AP_T_INT64);
		ck_assert_uint_eq(f.klen, klens[i]);
		ck_assert_int_eq(f.v.i, i + 1);
	}
	ck_assert_int_eq(ap_iter_next(&it, &f), 0);
}
END_TEST

START_TEST(writer_init_capacity_limits)
{
	uint8_t b[AP_HDR_SIZE + SLACK];
	ap_writer_t w;
	memset(b, CANARY, sizeof b);
	ck_assert_int_eq(ap_writer_init(&w, b, AP_HDR_SIZE - 1, AP_INFO, 0, 0, S("x")), -EINVAL);
	ck_assert_uint_eq(b[0], CANARY);
	ck_assert_int_eq(ap_writer_init(&w, b, AP_HDR_SIZE, AP_INFO, 0, 0, S("x")), 0);
	ck_assert_uint_eq(w.flags, AP_F_TRUNCATED);
	ck_assert_uint_eq(ap_writer_finish(&w), AP_HDR_SIZE);
	ck_assert_uint_eq(b[AP_HDR_SIZE], CANARY);
	ck_assert_int_eq(decode(b, AP_HDR_SIZE, 0), AP_OK);
	ck_assert_int_eq(ap_writer_init(&w, b, AP_HDR_SIZE + 1, AP_INFO, 0, 0, S("x")), 0);
	ck_assert_uint_eq(w.flags, 0);
	ck_assert_uint_eq(ap_writer_finish(&w), AP_HDR_SIZE + 1);
	ck_assert_uint_eq(b[AP_HDR_SIZE + 1], CANARY);
	/* Bad arguments. */
	ck_assert_int_eq(ap_writer_init(NULL, b, sizeof b, AP_INFO, 0, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(ap_writer_init(&w, NULL, sizeof b, AP_INFO, 0, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(ap_writer_init(&w, b, sizeof b, -1, 0, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(ap_writer_init(&w, b, sizeof b, AP_NLEVELS, 0, 0, NULL, 0), -EINVAL);
	ck_assert_int_eq(ap_writer_init(&w, b, sizeof b, AP_FATAL, 0, 0, NULL, 5), 0);
	ck_assert_uint_eq(w.len, AP_HDR_SIZE);
}
END_TEST

START_TEST(writer_message_at_capacity)
{
	enum { ROOM = 40 };
	uint8_t b[AP_HDR_SIZE + ROOM + SLACK];
	char msg[ROOM + 1];
	memset(msg, 'a', sizeof msg);
	ap_writer_t w;
	for (size_t len = ROOM - 1; len <= ROOM + 1; len++) {
		memset(b, CANARY, sizeof b);
		ck_assert_int_eq(ap_writer_init(&w, b, AP_HDR_SIZE + ROOM, AP_INFO, 0, 0, msg, len), 0);
		size_t want = len > ROOM ? ROOM : len;
		ck_assert_uint_eq(w.len, AP_HDR_SIZE + want);
		ck_assert_uint_eq(w.flags, len > ROOM ? AP_F_TRUNCATED : 0);
		size_t n = ap_writer_finish(&w);
		ck_assert_uint_eq(b[AP_HDR_SIZE + ROOM], CANARY);
		ap_record_t rec;
		ck_assert_int_eq(ap_decode(b, n, 0, &rec), AP_OK);
		ck_assert_uint_eq(rec.msg_len, want);
		ck_assert_uint_eq(rec.flags, w.flags);
	}
}
END_TEST

/* A message of n-byte characters is cut at a character boundary, whatever
 * the room. */
START_TEST(writer_cuts_message_at_utf8_boundary)
{
	static const char *const chars[] = {"a", "\xc3\xa9", "\xe6\x97\xa5", "\xf0\x9f\x93\xa6"};
	char msg[64];
	uint8_t b[AP_HDR_SIZE + 64 + SLACK];
	for (size_t c = 0; c < 4; c++) {
		size_t clen = c + 1;
		for (size_t i = 0; i + clen <= sizeof msg; i += clen)
			memcpy(msg + i, chars[c], clen);
		size_t mlen = sizeof msg / clen * clen;
		for (size_t room = 0; room <= mlen; room++) {
			ap_writer_t w;
			memset(b, CANARY, sizeof b);
			ck_assert_int_eq(ap_writer_init(&w, b, AP_HDR_SIZE + room, AP_INFO, 0, 0, msg, mlen), 0);
			size_t want = room / clen * clen;
			ck_assert_msg(w.len == AP_HDR_SIZE + want, "%zu-byte chars, room %zu: kept %zu", clen, room,
				      w.len - AP_HDR_SIZE);
			ck_assert_uint_eq(w.flags, room < mlen ? AP_F_TRUNCATED : 0);
			ck_assert_uint_eq(b[AP_HDR_SIZE + room], CANARY);
			ck_assert(vector_utf8_valid(b + AP_HDR_SIZE, want));
		}
	}
}
END_TEST

/* Above AP_MAX_FRAME the capacity is clamped: the writer stops there. */
START_TEST(writer_clamps_capacity_to_max_frame)
{
	ap_writer_t w;
	memset(text, 'x', sizeof text);
	memcpy(text + AP_MAX_FRAME - AP_HDR_SIZE - 1, "\xc3\xa9", 2); /* straddles the limit */
	memset(big, CANARY, sizeof big);
	ck_assert_int_eq(ap_writer_init(&w, big, sizeof big, AP_INFO, 0, 0, text, sizeof text), 0);
	ck_assert_uint_eq(w.cap, AP_MAX_FRAME);
	ck_assert_uint_eq(w.len, AP_MAX_FRAME - 1);
	ck_assert_uint_eq(w.flags, AP_F_TRUNCATED);
	ck_assert_int_eq(ap_put_bool(&w, S("b"), 1), -ENOSPC);
	ck_assert_uint_eq(ap_writer_finish(&w), AP_MAX_FRAME - 1);
	for (size_t i = AP_MAX_FRAME - 1; i < sizeof big; i++)
		REQUIRE(big[i] == CANARY);
	ck_assert_int_eq(decode(big, AP_MAX_FRAME - 1, 0), AP_OK);

	/* Exactly AP_MAX_FRAME - AP_HDR_SIZE bytes of message fit, untouched. */
	memset(big, CANARY, sizeof big);
	ck_assert_int_eq(ap_writer_init(&w, big, sizeof big, AP_INFO, 0, 0, text, AP_MAX_FRAME - AP_HDR_SIZE - 1), 0);
	ck_assert_uint_eq(w.flags, 0);
	ck_assert_int_eq(ap_put_bool(&w, S("b"), 1), -ENOSPC); /* needs 4, 1 left */
	memset(text, 'y', sizeof text);
	ck_assert_int_eq(ap_writer_init(&w, big, sizeof big, AP_INFO, 0, 0, text, AP_MAX_FRAME - AP_HDR_SIZE), 0);
	ck_assert_uint_eq(w.flags, 0);
	ck_assert_uint_eq(ap_writer_finish(&w), AP_MAX_FRAME);
	ck_assert_uint_eq(big[AP_MAX_FRAME], CANARY);
}
END_TEST

/* A field that needs exactly the room left fits; one byte more is skipped,
 * flagged, and smaller fields after it are still written. */
START_TEST(writer_field_at_capacity)
{
	static const int types[] = {AP_T_STRING, AP_T_INT64, AP_T_DOUBLE, AP_T_BOOL};
	for (size_t t = 0; t < 4; t++) {
		size_t need = ap_field_size(types[t], 3, 5);
		for (size_t room = need - 1; room <= need + 1; room++) {
			uint8_t b[AP_HDR_SIZE + 64 + SLACK];
			ap_writer_t w;
			memset(b, CANARY, sizeof b);
			ck_assert_int_eq(ap_writer_init(&w, b, AP_HDR_SIZE + room, AP_INFO, 0, 0, NULL, 0), 0);
			int rc;
			switch (types[t]) {
			case AP_T_STRING:
				rc = ap_put_string(&w, S("key"), S("value"));
				break;
			case AP_T_INT64:
				rc = ap_put_int64(&w, S("key"), -2);
				break;
			case AP_T_DOUBLE:
				rc = ap_put_double(&w, S("key"), 2.5);
				break;
			default:
				rc = ap_put_bool(&w, S("key"), 1);
				break;
			}
			ck_assert_int_eq(rc, room < need ? -ENOSPC : 0);
			ck_assert_uint_eq(w.flags, room < need ? AP_F_TRUNCATED : 0);
			ck_assert_uint_eq(w.len, AP_HDR_SIZE + (room < need ? 0 : need));
			if (room < need && room >= 4)
				ck_assert_int_eq(ap_put_bool(&w, S("k"), 0), 0);
			size_t n = ap_writer_finish(&w);
			ck_assert_uint_eq(b[AP_HDR_SIZE + room], CANARY);
			ck_assert_int_eq(decode(b, n, 0), AP_OK);
		}
	}
}
END_TEST

START_TEST(writer_bool_is_zero_or_one)
{
	uint8_t b[64];
	ap_writer_t w;
	ck_assert_int_eq(ap_writer_init(&w, b, sizeof b, AP_INFO, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(ap_put_bool(&w, S("k"), 42), 0);
	ck_assert_int_eq(ap_put_bool(&w, S("k"), -1), 0);
	ck_assert_int_eq(ap_put_bool(&w, S("k"), 0), 0);
	size_t n = ap_writer_finish(&w);
	ck_assert_uint_eq(b[AP_HDR_SIZE + 3], 1);
	ck_assert_uint_eq(b[AP_HDR_SIZE + 7], 1);
	ck_assert_uint_eq(b[AP_HDR_SIZE + 11], 0);
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
	/* A NULL value is an empty string. */
	ck_assert_int_eq(ap_writer_init(&w, b, sizeof b, AP_INFO, 0, 0, NULL, 0), 0);
	ck_assert_int_eq(ap_put_string(&w, S("k"), NULL, 9), 0);
	n = ap_writer_finish(&w);
	ck_assert_uint_eq(n, AP_HDR_SIZE + ap_field_size(AP_T_STRING, 1, 0));
	ck_assert_int_eq(decode(b, n, 0), AP_OK);
}
END_TEST

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint32_t rnd(uint32_t n)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16) % n;
}

/* Random capacities, messages and fields: the writer never touches a byte
 * past its capacity, and what it writes always decodes. */
START_TEST(writer_never_writes_past_capacity)
{
	static uint8_t b[2048 + SLACK];
	char data[1200];
	for (int iter = 0; iter < 20000; iter++) {
		for (size_t i = 0; i < sizeof data; i++)
			data[i] = (char)(rnd(4) ? 'a' + rnd(26) : 0x80 + rnd(0x80));
		size_t cap = AP_HDR_SIZE + rnd(2048 - AP_HDR_SIZE);
		memset(b, CANARY, sizeof b);
		ap_writer_t w;
		REQUIRE(ap_writer_init(&w, b, cap, (int)rnd(AP_NLEVELS), rnd(UINT32_MAX), rnd(10), data,
				       rnd(sizeof data)) == 0);
		unsigned nput = rnd(20), ok = 0;
		for (unsigned i = 0; i < nput; i++) {
			size_t klen = rnd(300);
			const char *key = data + rnd(sizeof data - 300);
			int rc;
			switch (rnd(4)) {
			case 0:
				rc = ap_put_string(&w, key, klen, data, rnd(sizeof data));
				break;
			case 1:
				rc = ap_put_int64(&w, key, klen, (int64_t)rnd(UINT32_MAX) - INT32_MAX);
				break;
			case 2:
				rc = ap_put_double(&w, key, klen, rnd(1000) / 7.0);
				break;
			default:
				rc = ap_put_bool(&w, key, klen, (int)rnd(3));
				break;
			}
			REQUIRE(rc == 0 || rc == -ENOSPC);
			ok += rc == 0;
			REQUIRE(w.len <= cap);
		}
		size_t n = ap_writer_finish(&w);
		REQUIRE(n <= cap);
		for (size_t i = cap; i < sizeof b; i++)
			REQUIRE(b[i] == CANARY);
		ap_record_t rec;
		REQUIRE(ap_decode(b, n, 0, &rec) == AP_OK);
		REQUIRE(rec.nfields == ok);
		roundtrip_if_valid(b, n);
	}
}
END_TEST

START_TEST(iterator_yields_values)
{
	uint8_t b[256];
	size_t n = base_frame(b);
	ap_record_t rec;
	ck_assert_int_eq(ap_decode(b, n, 0, &rec), AP_OK);
	ck_assert_uint_eq(rec.msg_len, 2);
	ck_assert_int_eq(memcmp(rec.msg, "hi", 2), 0);
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, &rec);
	ck_assert_int_eq(ap_iter_next(&it, &f), 1);
	ck_assert_uint_eq(f.type, AP_T_STRING);
	ck_assert_uint_eq(f.klen, 1);
	ck_assert_int_eq(f.key[0], 's');
	ck_assert_uint_eq(f.v.s.len, 3);
	ck_assert_int_eq(memcmp(f.v.s.ptr, "str", 3), 0);
	ck_assert_int_eq(ap_iter_next(&it, &f), 1);
	ck_assert_uint_eq(f.type, AP_T_INT64);
	ck_assert_int_eq(f.v.i, 42);
	ck_assert_int_eq(ap_iter_next(&it, &f), 1);
	ck_assert_uint_eq(f.type, AP_T_DOUBLE);
	ck_assert(f.v.d == 0.5);
	ck_assert_int_eq(ap_iter_next(&it, &f), 1);
	ck_assert_uint_eq(f.type, AP_T_BOOL);
	ck_assert_int_eq(f.v.b, 1);
	ck_assert_int_eq(ap_iter_next(&it, &f), 0);
	ck_assert_int_eq(ap_iter_next(&it, &f), 0);
	ck_assert_ptr_eq(it.p, rec.end);
}
END_TEST

/* ---- levels and names ----------------------------------------------------- */

static const struct {
	const char *name;
	int level;
} level_aliases[] = {
	{"trace", AP_TRACE}, {"debug", AP_DEBUG}, {"info", AP_INFO},	   {"information", AP_INFO},
	{"notice", AP_INFO}, {"warn", AP_WARN},	  {"warning", AP_WARN},	   {"error", AP_ERROR},
	{"err", AP_ERROR},   {"fatal", AP_FATAL}, {"critical", AP_FATAL},  {"crit", AP_FATAL},
	{"alert", AP_FATAL}, {"emerg", AP_FATAL}, {"emergency", AP_FATAL}, {"panic", AP_FATAL},
};

START_TEST(level_parse_accepts_every_alias_in_any_case)
{
	for (size_t i = 0; i < sizeof level_aliases / sizeof level_aliases[0]; i++) {
		char s[32];
		size_t n = strlen(level_aliases[i].name);
		int want = level_aliases[i].level;
		memcpy(s, level_aliases[i].name, n);
		ck_assert_msg(ap_level_parse(s, n) == want, "%s", level_aliases[i].name);
		for (size_t k = 0; k < n; k++)
			s[k] = (char)(s[k] - 'a' + 'A');
		ck_assert_msg(ap_level_parse(s, n) == want, "%.*s", (int)n, s);
		for (size_t k = 0; k < n; k += 2)
			s[k] = (char)(s[k] - 'A' + 'a');
		ck_assert_msg(ap_level_parse(s, n) == want, "%.*s", (int)n, s);
		/* Only the given length counts. */
		s[n] = 'x';
		ck_assert_msg(ap_level_parse(s, n) == want, "%.*s", (int)n, s);
	}
	/* Canonical names round-trip. */
	for (int l = 0; l < AP_NLEVELS; l++) {
		const char *name = ap_level_name(l);
		ck_assert_ptr_nonnull(name);
		ck_assert_int_eq(ap_level_parse(name, strlen(name)), l);
	}
}
END_TEST

START_TEST(level_parse_accepts_syslog_numbers)
{
	static const int want[8] = {AP_FATAL, AP_FATAL, AP_FATAL, AP_ERROR, AP_WARN, AP_INFO, AP_INFO, AP_DEBUG};
	for (int p = 0; p < 8; p++) {
		char c = (char)('0' + p);
		ck_assert_int_eq(ap_level_parse(&c, 1), want[p]);
		ck_assert_int_eq(ap_level_from_syslog(p), want[p]);
	}
	ck_assert_int_eq(ap_level_from_syslog(-1), -1);
	ck_assert_int_eq(ap_level_from_syslog(8), -1);
	ck_assert_int_eq(ap_level_from_syslog(INT64_MIN), -1);
	ck_assert_int_eq(ap_level_from_syslog(INT64_MAX), -1);
}
END_TEST

START_TEST(level_parse_rejects_other_names)
{
	static const char *const bad[] = {"",	      "8",     "9",   "-1",	      "00",	    "07",     "1 ",
					  " info",    "info ", "inf", "informations", "warnin",	    "war",    "fatal!",
					  "warnings", "none",  "off", "notice!",      "emergencyy", "trace_", "0x1"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		ck_assert_msg(ap_level_parse(bad[i], strlen(bad[i])) == -1, "\"%s\" accepted", bad[i]);
	ck_assert_int_eq(ap_level_parse(NULL, 4), -1);
	ck_assert_int_eq(ap_level_parse("info", 0), -1);
	ck_assert_int_eq(ap_level_parse("info\0", 5), -1);
	ck_assert_int_eq(ap_level_parse("in\0o", 4), -1);
	ck_assert_int_eq(ap_level_parse("informationinformation", 22), -1);
	ck_assert_ptr_null(ap_level_name(-1));
	ck_assert_ptr_null(ap_level_name(AP_NLEVELS));
	ck_assert_str_eq(ap_level_name(AP_WARN), "WARN");
	ck_assert_str_eq(ap_level_name(AP_FATAL), "FATAL");
}
END_TEST

START_TEST(strerror_names_every_code)
{
	static const char *const names[AP_NERRORS] = {
		"ok",	     "short",	  "oversized",	       "bad_magic",	  "bad_version",
		"bad_level", "bad_flags", "truncated_message", "truncated_field", "bad_type",
		"bad_key",   "bad_bool",  "trailing_bytes",
	};
	static const int codes[AP_NERRORS] = {AP_OK,	 AP_ESHORT, AP_EBIG,	 AP_EMAGIC, AP_EVERSION,
					      AP_ELEVEL, AP_EFLAGS, AP_EMSG,	 AP_EFIELD, AP_ETYPE,
					      AP_EKEY,	 AP_EBOOL,  AP_ETRAILING};
	for (int i = 0; i < AP_NERRORS; i++)
		ck_assert_str_eq(ap_strerror(codes[i]), names[i]);
	ck_assert_str_eq(ap_strerror(-AP_NERRORS), "unknown");
	ck_assert_str_eq(ap_strerror(1), "unknown");
	ck_assert_str_eq(ap_strerror(INT_MIN), "unknown");
	ck_assert_str_eq(ap_strerror(INT_MAX), "unknown");
}
END_TEST

static Suite *proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *t = tcase_create("vectors");
	tcase_add_test(t, vectors_decode_to_their_json_and_reencode_byte_for_byte);
	tcase_add_test(t, fuzz_regressions_for_the_decoder_pass);
	suite_add_tcase(s, t);

	t = tcase_create("decode");
	tcase_add_test(t, decode_frame_size_at_max_frame);
	tcase_add_test(t, decode_max_argument_at_frame_size);
	tcase_add_test(t, decode_header_size_limits);
	tcase_add_test(t, decode_fills_record);
	tcase_add_test(t, decode_bad_magic);
	tcase_add_test(t, decode_bad_version);
	tcase_add_test(t, decode_level_limits);
	tcase_add_test(t, decode_reserved_flag_bits);
	tcase_add_test(t, decode_message_length_limits);
	tcase_add_test(t, decode_every_cut_is_a_truncation);
	tcase_add_test(t, decode_string_length_limits);
	tcase_add_test(t, decode_bad_type);
	tcase_add_test(t, decode_key_length_limits);
	tcase_add_test(t, decode_bad_bool);
	tcase_add_test(t, decode_field_count_limits);
	tcase_add_test(t, fields_at_frame_capacity);
	tcase_add_test(t, iterator_yields_values);
	suite_add_tcase(s, t);

	t = tcase_create("writer");
	tcase_add_test(t, writer_field_count_limit);
	tcase_add_test(t, writer_key_length_limits);
	tcase_add_test(t, writer_init_capacity_limits);
	tcase_add_test(t, writer_message_at_capacity);
	tcase_add_test(t, writer_cuts_message_at_utf8_boundary);
	tcase_add_test(t, writer_clamps_capacity_to_max_frame);
	tcase_add_test(t, writer_field_at_capacity);
	tcase_add_test(t, writer_bool_is_zero_or_one);
	tcase_add_test(t, writer_never_writes_past_capacity);
	suite_add_tcase(s, t);

	t = tcase_create("levels");
	tcase_add_test(t, level_parse_accepts_every_alias_in_any_case);
	tcase_add_test(t, level_parse_accepts_syslog_numbers);
	tcase_add_test(t, level_parse_rejects_other_names);
	tcase_add_test(t, strerror_names_every_code);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
