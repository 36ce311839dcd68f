/*
 * gen_vectors: writes the golden frames of proto/vectors/ (`make vectors`).
 *
 * Owns: the list of test vectors. Each valid frame is built with the codec's
 * writer, decoded again and dumped as NAME.json in the format PROTOCOL.md
 * gives (64-bit integers beyond 2^53-1, time_ns included, as decimal strings;
 * strings that are not strict UTF-8 as {"hex": ...}; nan/inf/-inf as
 * strings). Each bad_* frame is crafted by hand and must fail with the error
 * its JSON names. Output is deterministic: running it twice gives the same
 * files. Not part of the default build.
 *
 * Usage: gen_vectors [DIR]   (DIR defaults to proto/vectors)
 */
#include "agent_proto.h"
#include "vector_json.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SAFE_INT_MAX VECTOR_SAFE_INT_MAX

static const char *outdir = "proto/vectors";
static int nwritten;

static void die(const char *what, const char *name)
{
	fprintf(stderr, "gen_vectors: %s: %s\n", name, what);
	exit(1);
}

static void write_file(const char *name, const char *ext, const void *data, size_t len)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s.%s", outdir, name, ext);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0)
		die("cannot write", path);
	nwritten++;
}

static void write_json(const char *name, json_t *j)
{
	if (!j)
		die("cannot build JSON", name);
	char *s = json_dumps(j, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	if (!s)
		die("cannot dump JSON", name);
	size_t n = strlen(s);
	char *t = malloc(n + 2);
	if (!t)
		die("out of memory", name);
	memcpy(t, s, n);
	t[n] = '\n';
	write_file(name, "json", t, n + 1);
	free(t);
	free(s);
	json_decref(j);
}

/* A valid vector: the frame must decode, and its JSON is its decoded form. */
static void emit(const char *name, const uint8_t *frame, size_t len)
{
	ap_record_t rec;
	int rc = ap_decode(frame, len, 0, &rec);
	if (rc != AP_OK)
		die(ap_strerror(rc), name);
	write_file(name, "bin", frame, len);
	write_json(name, vector_record_json(&rec));
}

/* A malformed vector: the frame must fail with the expected error. */
static void emit_bad(const char *name, const uint8_t *frame, size_t len, int expect)
{
	ap_record_t rec;
	int rc = ap_decode(frame, len, 0, &rec);
	if (rc != expect)
		die(ap_strerror(rc), name);
	write_file(name, "bin", frame, len);
	write_json(name, json_pack("{s:s}", "error", ap_strerror(rc)));
}

#define S(lit) (lit), (sizeof(lit) - 1)

static uint8_t buf[AP_MAX_FRAME + 64];

static size_t finish(ap_writer_t *w)
{
	return ap_writer_finish(w);
}

static void gen_valid(void)
{
	ap_writer_t w;
	size_t n;

	/* The example of PROTOCOL.md. */
	ap_writer_init(&w, buf, sizeof buf, AP_INFO, 1732800000123456789ULL, 0, S("paid"));
	ap_put_string(&w, S("user_id"), S("u-42"));
	ap_put_int64(&w, S("amount"), 1250);
	ap_put_double(&w, S("ratio"), 0.25);
	ap_put_bool(&w, S("ok"), 1);
	n = finish(&w);
	emit("basic", buf, n);

	/* The smallest frame: header only. */
	ap_writer_init(&w, buf, sizeof buf, AP_TRACE, 0, 0, NULL, 0);
	n = finish(&w);
	emit("empty", buf, n);

	/* Multi-byte UTF-8 of every length, in message, key and value; an
	 * empty value; a NUL, which is valid UTF-8 ("\u0000" in JSON). */
	ap_writer_init(&w, buf, sizeof buf, AP_WARN, 1732800000000000000ULL, 0,
		       S("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x93\xa6 \xc2\xa9"));
	ap_put_string(&w, S("ville"), S("Z\xc3\xbcrich"));
	ap_put_string(&w, S("\xe5\x90\x8d\xe5\x89\x8d"), S("\xe5\xb1\xb1\xe7\x94\xb0"));
	ap_put_string(&w, S("emoji"), S("\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd"));
	ap_put_string(&w, S("edge"), S("\xed\x9f\xbf\xee\x80\x80\xef\xbf\xbd\xf4\x8f\xbf\xbf"));
	ap_put_string(&w, S("empty"), S(""));
	ap_put_string(&w, S("nul"), S("a\0b"));
	n = finish(&w);
	emit("unicode", buf, n);

	/* Bytes that are not UTF-8, in message, key and values: a lone 0xff,
	 * a cut sequence, an overlong '/', a surrogate, past U+10FFFF, and a
	 * stray continuation byte. */
	ap_writer_init(&w, buf, sizeof buf, AP_ERROR, 1732800000000000001ULL, 0, S("bad \xff byte"));
	ap_put_string(&w, S("cut"), S("\xe2\x82"));
	ap_put_string(&w, S("overlong"), S("\xc0\xaf"));
	ap_put_string(&w, S("surrogate"), S("\xed\xa0\x80"));
	ap_put_string(&w, S("too_big"), S("\xf4\x90\x80\x80"));
	ap_put_string(&w, S("k\xfe"), S("\x80"));
	ap_put_string(&w, S("nul_and_ff"), S("\0\xff"));
	n = finish(&w);
	emit("invalid_utf8", buf, n);

	/* int64 around 0, 2^53 and the extremes. */
	ap_writer_init(&w, buf, sizeof buf, AP_DEBUG, 1732800000000000002ULL, 0, S("ints"));
	ap_put_int64(&w, S("zero"), 0);
	ap_put_int64(&w, S("one"), 1);
	ap_put_int64(&w, S("minus_one"), -1);
	ap_put_int64(&w, S("safe_max"), SAFE_INT_MAX);
	ap_put_int64(&w, S("safe_min"), -SAFE_INT_MAX);
	ap_put_int64(&w, S("two_53"), SAFE_INT_MAX + 1);
	ap_put_int64(&w, S("minus_two_53"), -SAFE_INT_MAX - 1);
	ap_put_int64(&w, S("max"), INT64_MAX);
	ap_put_int64(&w, S("min"), INT64_MIN);
	ap_put_int64(&w, S("bytes"), 0x0102030405060708LL);
	n = finish(&w);
	emit("int64_limits", buf, n);

	/* Doubles, the special values included (NaN is the quiet NaN
	 * 0x7ff8000000000000 every runtime produces). */
	ap_writer_init(&w, buf, sizeof buf, AP_INFO, 1732800000000000003ULL, 0, S("doubles"));
	ap_put_double(&w, S("quarter"), 0.25);
	ap_put_double(&w, S("neg"), -1.5);
	ap_put_double(&w, S("zero"), 0.0);
	ap_put_double(&w, S("neg_zero"), -0.0);
	ap_put_double(&w, S("integral"), 3.0);
	ap_put_double(&w, S("tenth"), 0.1);
	ap_put_double(&w, S("third"), 1.0 / 3.0);
	ap_put_double(&w, S("big"), 1e300);
	ap_put_double(&w, S("max"), 1.7976931348623157e308);
	ap_put_double(&w, S("min_normal"), 2.2250738585072014e-308);
	ap_put_double(&w, S("min_subnormal"), 5e-324);
	ap_put_double(&w, S("nan"), NAN);
	ap_put_double(&w, S("inf"), INFINITY);
	ap_put_double(&w, S("neg_inf"), -INFINITY);
	ap_put_bool(&w, S("t"), 1);
	ap_put_bool(&w, S("f"), 0);
	n = finish(&w);
	emit("doubles_bools", buf, n);

	/* Header fields at their limits: FATAL, TRUNCATED, dropped saturated,
	 * time_ns at 2^64-1. Made the way a shim makes it: the 40-byte buffer
	 * cuts the message before the 4-byte character and skips the field. */
	ap_writer_init(&w, buf, 40, AP_FATAL, UINT64_MAX, UINT32_MAX, S("fifteen bytes: \xf0\x9f\x93\xa6 and more"));
	ap_put_bool(&w, S("skipped"), 1);
	n = finish(&w);
	if (!(w.flags & AP_F_TRUNCATED) || n != 39)
		die("writer did not truncate as expected", "header_limits");
	emit("header_limits", buf, n);

	/* 300 fields (nfields above 255), key lengths 1..255 and back,
	 * every type. */
	char key[AP_MAX_KEY];
	ap_writer_init(&w, buf, sizeof buf, AP_INFO, 1732800000000000004ULL, 7, S("many fields"));
	for (int i = 0; i < 300; i++) {
		size_t klen = i < 255 ? (size_t)i + 1 : (size_t)(300 - i);
		for (size_t k = 0; k < klen; k++)
			key[k] = (char)('a' + (i + k) % 26);
		switch (i % 4) {
		case 0:
			ap_put_string(&w, key, klen, key, (size_t)i % 7);
			break;
		case 1:
			ap_put_int64(&w, key, klen, (int64_t)i * -1000003);
			break;
		case 2:
			ap_put_double(&w, key, klen, i / 8.0);
			break;
		default:
			ap_put_bool(&w, key, klen, i % 8 == 3);
			break;
		}
	}
	n = finish(&w);
	if (w.nfields != 300 || w.flags)
		die("writer skipped a field", "many_fields");
	emit("many_fields", buf, n);
}

/* A valid frame to mutate: "hi" and one field of each type. */
static size_t base_frame(uint8_t *b)
{
	ap_writer_t w;
	ap_writer_init(&w, b, AP_MAX_FRAME, AP_INFO, 1732800000000000005ULL, 0, S("hi"));
	ap_put_string(&w, S("s"), S("str"));
	ap_put_int64(&w, S("i"), 42);
	ap_put_double(&w, S("d"), 0.5);
	ap_put_bool(&w, S("b"), 1);
	return ap_writer_finish(&w);
}

/* Offsets into base_frame's output. */
enum {
	OFF_F1 = AP_HDR_SIZE + 2, /* first field (string "s") */
	OFF_F2 = OFF_F1 + 2 + 1 + 4 + 3, /* int64 "i" */
	OFF_F3 = OFF_F2 + 2 + 1 + 8, /* double "d" */
	OFF_F4 = OFF_F3 + 2 + 1 + 8, /* bool "b" */
	BASE_LEN = OFF_F4 + 2 + 1 + 1,
};

static void gen_bad(void)
{
	size_t n = base_frame(buf);
	if (n != BASE_LEN)
		die("unexpected base frame size", "bad_*");

	emit_bad("bad_short", buf, AP_HDR_SIZE - 1, AP_ESHORT);

	/* Well formed but for its size: one byte above AP_MAX_FRAME. */
	{
		ap_writer_t w;
		static char big[AP_MAX_FRAME];
		memset(big, 'x', sizeof big);
		ap_writer_init(&w, buf, AP_MAX_FRAME, AP_INFO, 1732800000000000006ULL, 0, big,
			       AP_MAX_FRAME - AP_HDR_SIZE);
		n = ap_writer_finish(&w);
		ap_wr32(buf + 20, AP_MAX_FRAME - AP_HDR_SIZE + 1);
		buf[n] = 'x';
		emit_bad("bad_oversized", buf, n + 1, AP_EBIG);
	}

	n = base_frame(buf);
	buf[1] = 'H';
	emit_bad("bad_magic", buf, n, AP_EMAGIC);

	n = base_frame(buf);
	buf[2] = 2;
	emit_bad("bad_version", buf, n, AP_EVERSION);

	n = base_frame(buf);
	buf[3] = AP_NLEVELS;
	emit_bad("bad_level", buf, n, AP_ELEVEL);

	n = base_frame(buf);
	buf[4] = 0x02;
	emit_bad("bad_flags", buf, n, AP_EFLAGS);

	/* msg_len one past the end of a header-only frame. */
	n = base_frame(buf);
	buf[6] = 0;
	ap_wr32(buf + 20, 1);
	emit_bad("bad_truncated_message", buf, AP_HDR_SIZE, AP_EMSG);

	/* The string value's length runs one byte past the end. */
	n = base_frame(buf);
	ap_wr32(buf + OFF_F1 + 3, (uint32_t)(BASE_LEN - (OFF_F1 + 7) + 1));
	emit_bad("bad_truncated_field", buf, n, AP_EFIELD);

	n = base_frame(buf);
	buf[OFF_F3] = 5;
	emit_bad("bad_type", buf, n, AP_ETYPE);

	n = base_frame(buf);
	buf[OFF_F2 + 1] = 0;
	emit_bad("bad_key", buf, n, AP_EKEY);

	n = base_frame(buf);
	buf[OFF_F4 + 3] = 2;
	emit_bad("bad_bool", buf, n, AP_EBOOL);

	/* nfields one short of what follows. */
	n = base_frame(buf);
	buf[6] = 3;
	emit_bad("bad_trailing_bytes", buf, n, AP_ETRAILING);
}

int main(int argc, char **argv)
{
	if (argc > 1)
		outdir = argv[1];
	gen_valid();
	gen_bad();
	printf("gen_vectors: wrote %d files to %s\n", nwritten, outdir);
	return 0;
}
