/*
 * fuzz_stream: the stream socket's framing (agentd/frames.c) as ingest uses
 * it: a per-connection buffer of 4 + max_record_bytes bytes, filled by reads
 * of any size, parsed after each read, the rest moved to the front.
 *
 * Input: byte 0 picks max_record_bytes (the protocol's maximum, or a small
 * bound so that prefixes near it are reached), bytes 1-2 seed the read
 * sizes, the rest is what the client sends. Checked for every input:
 * - one parse of the whole stream and the chunked reader hand over the same
 *   frames, byte for byte, in the same order, and stop with the same framing
 *   error (or none) at the same offset;
 * - every frame lies inside the buffer, is 1..max bytes, and a full buffer
 *   always yields a frame or an error (a reader never stalls);
 * - each frame goes through ap_decode with ingest's limit, which accepts it
 *   or names the error; an accepted one ends exactly at the frame's end.
 * Any violation aborts, which libFuzzer reports as a crash.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_proto.h"
#include "frames.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c)                                                                                                     \
	do {                                                                                                           \
		if (!(c)) {                                                                                            \
			fprintf(stderr, "fuzz_stream: %s:%d: failed: %s\n", __FILE__, __LINE__, #c);                   \
			abort();                                                                                       \
		}                                                                                                      \
	} while (0)

#define MAX_REF 65536

struct ref {
	const uint8_t *lo, *hi; /* the buffer the frames must lie in */
	size_t max;
	size_t n;
	const uint8_t *at[MAX_REF];
	size_t len[MAX_REF];
	int decoded[MAX_REF];
};

struct reader {
	struct ref *ref;
	const uint8_t *lo, *hi;
	size_t max;
	size_t k; /* frames seen so far */
};

static struct ref ref;
static uint8_t rbuf[FRAMES_PREFIX + AP_MAX_FRAME];

static int decode_checked(const uint8_t *frame, size_t len, size_t max)
{
	ap_record_t r;
	int rc = ap_decode(frame, len, max, &r);
	REQUIRE(rc <= 0 && rc > -AP_NERRORS);
	REQUIRE(strcmp(ap_strerror(rc), "unknown") != 0);
	if (rc == AP_OK) {
		REQUIRE(r.end == frame + len);
		REQUIRE((const uint8_t *)r.msg == frame + AP_HDR_SIZE);
	}
	return rc;
}

static void on_ref(void *ctx, const uint8_t *frame, size_t len)
{
	struct ref *s = ctx;
	REQUIRE(len >= 1 && len <= s->max);
	REQUIRE(frame >= s->lo + FRAMES_PREFIX && len <= (size_t)(s->hi - frame));
	REQUIRE(s->n < MAX_REF);
	s->at[s->n] = frame;
	s->len[s->n] = len;
	s->decoded[s->n] = decode_checked(frame, len, s->max);
	s->n++;
}

static void on_chunked(void *ctx, const uint8_t *frame, size_t len)
{
	struct reader *r = ctx;
	REQUIRE(len >= 1 && len <= r->max);
	REQUIRE(frame >= r->lo + FRAMES_PREFIX && len <= (size_t)(r->hi - frame));
	REQUIRE(r->k < r->ref->n);
	REQUIRE(r->ref->len[r->k] == len);
	REQUIRE(memcmp(r->ref->at[r->k], frame, len) == 0);
	REQUIRE(decode_checked(frame, len, r->max) == r->ref->decoded[r->k]);
	r->k++;
}

static uint32_t next_rand(uint32_t *s)
{
	uint32_t x = *s;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return *s = x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3)
		return 0;
	size_t max = data[0] < 0x40 ? AP_MAX_FRAME : 1 + ((size_t)data[0] * 37) % 600;
	uint32_t seed = (uint32_t)data[1] | (uint32_t)data[2] << 8 | 0x9e370000u;
	const uint8_t *in = data + 3;
	size_t n = size - 3;

	/* one parse of everything */
	ref.lo = in;
	ref.hi = in + n;
	ref.max = max;
	ref.n = 0;
	size_t used = 0;
	int rc = frames_parse(in, n, max, on_ref, &ref, &used);
	REQUIRE(rc == 0 || rc == -EPROTO);
	REQUIRE(used <= n);
	if (rc == -EPROTO) {
		REQUIRE(n - used >= FRAMES_PREFIX);
		uint32_t bad = ap_rd32(in + used);
		REQUIRE(bad == 0 || bad > max);
	} else {
		/* what is left is one incomplete unit */
		REQUIRE(n - used < FRAMES_PREFIX || ap_rd32(in + used) > n - used - FRAMES_PREFIX);
	}

	/* the same bytes through ingest's buffer, in reads of random sizes */
	struct reader rd = {.ref = &ref, .lo = rbuf, .max = max};
	size_t cap = FRAMES_PREFIX + max, len = 0, sent = 0, taken = 0;
	int crc = 0;
	uint32_t mode = next_rand(&seed) % 3;
	while (sent < n) {
		size_t want = mode == 0 ? 1 + next_rand(&seed) % 7 : 1 + next_rand(&seed) % (mode == 1 ? 300 : cap);
		size_t room = cap - len;
		if (want > room)
			want = room;
		if (want > n - sent)
			want = n - sent;
		REQUIRE(want > 0); /* the buffer is never full after a parse */
		memcpy(rbuf + len, in + sent, want);
		len += want;
		sent += want;
		rd.hi = rbuf + len;
		size_t u = 0;
		crc = frames_parse(rbuf, len, max, on_chunked, &rd, &u);
		REQUIRE(crc == 0 || crc == -EPROTO);
		REQUIRE(u <= len);
		taken += u;
		if (crc)
			break;
		REQUIRE(u > 0 || len < cap); /* a full buffer always makes progress */
		memmove(rbuf, rbuf + u, len - u);
		len -= u;
	}
	REQUIRE(crc == rc);
	REQUIRE(rd.k == ref.n);
	REQUIRE(taken == used);
	return 0;
}
