/*
 * fuzz_decode: libFuzzer target for ap_decode and the field iterator.
 *
 * For every input: decode it (with the default limit and with limits around
 * its size); when it is accepted, check that the record and every field lie
 * inside the input, touch every byte of the message, keys and strings, check
 * that iteration ends exactly at the end after nfields fields, and re-encode
 * it with the writer, which must give the input back byte for byte (a valid
 * frame has one encoding). A rejected input must give a named error. Any
 * violation aborts, which libFuzzer reports as a crash.
 */
#include "agent_proto.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                                     \
	do {                                                                                                           \
		if (!(c)) {                                                                                            \
			fprintf(stderr, "fuzz_decode: %s:%d: failed: %s\n", __FILE__, __LINE__, #c);                   \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

static uint8_t out[AP_MAX_FRAME];
static volatile uint8_t sink;

/* Read every byte of [p, p+n), which must lie inside [lo, hi). */
static void touch(const void *p, size_t n, const uint8_t *lo, const uint8_t *hi)
{
	const uint8_t *b = p;
	REQUIRE(b >= lo && b <= hi && n <= (size_t)(hi - b));
	uint8_t x = 0;
	for (size_t i = 0; i < n; i++)
		x ^= b[i];
	sink = x;
}

static int put_field(ap_writer_t *w, const ap_field_t *f)
{
	switch (f->type) {
	case AP_T_STRING:
		return ap_put_string(w, f->key, f->klen, f->v.s.ptr, f->v.s.len);
	case AP_T_INT64:
		return ap_put_int64(w, f->key, f->klen, f->v.i);
	case AP_T_DOUBLE:
		return ap_put_double(w, f->key, f->klen, f->v.d);
	case AP_T_BOOL:
		REQUIRE(f->v.b == 0 || f->v.b == 1);
		return ap_put_bool(w, f->key, f->klen, f->v.b);
	default:
		REQUIRE(!"unknown field type yielded");
		return -1;
	}
}

static void check_accepted(const uint8_t *data, size_t size, const ap_record_t *rec)
{
	const uint8_t *end = data + size;
	REQUIRE(rec->end == end);
	REQUIRE(rec->level < AP_NLEVELS);
	REQUIRE((rec->flags & ~AP_F_KNOWN) == 0);
	REQUIRE((const uint8_t *)rec->msg == data + AP_HDR_SIZE);
	touch(rec->msg, rec->msg_len, data, end);
	REQUIRE(rec->fields == data + AP_HDR_SIZE + rec->msg_len);

	ap_writer_t w;
	REQUIRE(ap_writer_init(&w, out, size, rec->level, rec->time_ns, rec->dropped, rec->msg, rec->msg_len) == 0);
	REQUIRE(w.flags == 0);
	w.flags = rec->flags;

	ap_iter_t it;
	ap_field_t f;
	unsigned n = 0;
	ap_iter_init(&it, rec);
	while (ap_iter_next(&it, &f)) {
		n++;
		REQUIRE(n <= rec->nfields);
		REQUIRE(f.type >= AP_T_STRING && f.type <= AP_T_BOOL);
		REQUIRE(f.klen >= 1);
		touch(f.key, f.klen, rec->fields, end);
		if (f.type == AP_T_STRING)
			touch(f.v.s.ptr, f.v.s.len, (const uint8_t *)f.key + f.klen, end);
		REQUIRE(it.p <= end);
		REQUIRE(put_field(&w, &f) == 0);
	}
	REQUIRE(n == rec->nfields);
	REQUIRE(it.p == end);
	REQUIRE(ap_iter_next(&it, &f) == 0);

	size_t len = ap_writer_finish(&w);
	REQUIRE(len == size);
	REQUIRE(memcmp(out, data, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ap_record_t rec;
	int rc = ap_decode(data, size, 0, &rec);
	REQUIRE(rc <= 0 && rc > -AP_NERRORS);
	REQUIRE(strcmp(ap_strerror(rc), "unknown") != 0);

	/* The max argument: the input's own size changes nothing, one byte
	 * less turns any frame of a valid size into "oversized". */
	ap_record_t rec2;
	int rc2 = ap_decode(data, size, size ? size : 1, &rec2);
	if (size <= AP_MAX_FRAME)
		REQUIRE(rc2 == rc);
	if (size > AP_HDR_SIZE)
		REQUIRE(ap_decode(data, size, size - 1, &rec2) == AP_EBIG);

	if (rc == AP_OK)
		check_accepted(data, size, &rec);
	return 0;
}
