/*
 * Unit tests for agentd/frames.c: the stream socket's length-prefixed
 * framing, at the limits (prefix 0, max, max + 1), across partial reads and
 * with bad arguments.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent_proto.h"
#include "frames.h"

struct seen {
	unsigned n;
	size_t len[16];
	const uint8_t *at[16];
};

static void collect(void *ctx, const uint8_t *frame, size_t len)
{
	struct seen *s = ctx;
	ck_assert_uint_lt(s->n, 16);
	s->at[s->n] = frame;
	s->len[s->n++] = len;
}

/* Append a prefix of value v and n bytes of fill to buf at *off. */
static void put(uint8_t *buf, size_t *off, uint32_t v, size_t n, uint8_t fill)
{
	ap_wr32(buf + *off, v);
	memset(buf + *off + FRAMES_PREFIX, fill, n);
	*off += FRAMES_PREFIX + n;
}

START_TEST(frames_whole_units_are_handed_over_in_order)
{
	uint8_t buf[64];
	size_t len = 0, used = 99;
	put(buf, &len, 3, 3, 'a');
	put(buf, &len, 1, 1, 'b');
	put(buf, &len, 5, 5, 'c');
	struct seen s = {0};
	ck_assert_int_eq(frames_parse(buf, len, 100, collect, &s, &used), 0);
	ck_assert_uint_eq(used, len);
	ck_assert_uint_eq(s.n, 3);
	ck_assert_uint_eq(s.len[0], 3);
	ck_assert_ptr_eq(s.at[0], buf + 4);
	ck_assert_uint_eq(s.len[1], 1);
	ck_assert_ptr_eq(s.at[1], buf + 11);
	ck_assert_uint_eq(s.len[2], 5);
	ck_assert_int_eq(s.at[2][4], 'c');
}
END_TEST

START_TEST(frames_incomplete_tail_is_left_for_the_next_read)
{
	uint8_t buf[64];
	size_t len = 0, used;
	put(buf, &len, 2, 2, 'a');
	size_t whole = len;
	put(buf, &len, 10, 10, 'b');
	for (size_t cut = whole; cut < len; cut++) {
		struct seen s = {0};
		ck_assert_int_eq(frames_parse(buf, cut, 100, collect, &s, &used), 0);
		ck_assert_uint_eq(s.n, 1);
		ck_assert_uint_eq(used, whole);
	}
	struct seen s = {0};
	ck_assert_int_eq(frames_parse(buf, 3, 100, collect, &s, &used), 0); /* half a prefix */
	ck_assert_uint_eq(s.n, 0);
	ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(frames_prefix_zero_is_a_framing_error_after_the_good_ones)
{
	uint8_t buf[64];
	size_t len = 0, used;
	put(buf, &len, 2, 2, 'a');
	size_t bad = len;
	put(buf, &len, 0, 0, 0);
	put(buf, &len, 2, 2, 'c');
	struct seen s = {0};
	ck_assert_int_eq(frames_parse(buf, len, 100, collect, &s, &used), -EPROTO);
	ck_assert_uint_eq(s.n, 1);
	ck_assert_uint_eq(used, bad);
}
END_TEST

START_TEST(frames_prefix_max_minus_one_max_max_plus_one)
{
	enum { MAX = 40 };
	uint8_t buf[3 * (FRAMES_PREFIX + MAX + 1)];
	size_t used;
	for (uint32_t v = MAX - 1; v <= MAX + 1; v++) {
		size_t len = 0;
		put(buf, &len, v, v, 'x');
		struct seen s = {0};
		int rc = frames_parse(buf, len, MAX, collect, &s, &used);
		if (v <= MAX) {
			ck_assert_int_eq(rc, 0);
			ck_assert_uint_eq(s.n, 1);
			ck_assert_uint_eq(s.len[0], v);
			ck_assert_uint_eq(used, len);
		} else {
			ck_assert_int_eq(rc, -EPROTO);
			ck_assert_uint_eq(s.n, 0);
			ck_assert_uint_eq(used, 0);
		}
	}
	/* a prefix above max is refused before its bytes arrive */
	size_t len = 0;
	put(buf, &len, 0xffffffffu, 0, 0);
	struct seen s = {0};
	ck_assert_int_eq(frames_parse(buf, len, MAX, collect, &s, &used), -EPROTO);
}
END_TEST

START_TEST(frames_a_full_reader_buffer_never_stalls)
{
	enum { MAX = 16 };
	uint8_t buf[FRAMES_PREFIX + MAX];
	for (uint32_t v = 0; v <= 300; v++) {
		memset(buf, 0xee, sizeof buf);
		ap_wr32(buf, v);
		struct seen s = {0};
		size_t used;
		int rc = frames_parse(buf, sizeof buf, MAX, collect, &s, &used);
		ck_assert(rc == -EPROTO || used > 0);
	}
}
END_TEST

START_TEST(frames_bad_arguments_are_einval)
{
	uint8_t b[8] = {0};
	size_t used;
	struct seen s = {0};
	ck_assert_int_eq(frames_parse(NULL, 1, 10, collect, &s, &used), -EINVAL);
	ck_assert_int_eq(frames_parse(b, sizeof b, 10, NULL, &s, &used), -EINVAL);
	ck_assert_int_eq(frames_parse(b, sizeof b, 10, collect, &s, NULL), -EINVAL);
	ck_assert_int_eq(frames_parse(b, sizeof b, 0, collect, &s, &used), -EINVAL);
	ck_assert_int_eq(frames_parse(NULL, 0, 10, collect, &s, &used), 0);
	ck_assert_uint_eq(used, 0);
	ck_assert_uint_eq(s.n, 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("frames");
	TCase *tc = tcase_create("frames");
	tcase_add_test(tc, frames_whole_units_are_handed_over_in_order);
	tcase_add_test(tc, frames_incomplete_tail_is_left_for_the_next_read);
	tcase_add_test(tc, frames_prefix_zero_is_a_framing_error_after_the_good_ones);
	tcase_add_test(tc, frames_prefix_max_minus_one_max_max_plus_one);
	tcase_add_test(tc, frames_a_full_reader_buffer_never_stalls);
	tcase_add_test(tc, frames_bad_arguments_are_einval);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
