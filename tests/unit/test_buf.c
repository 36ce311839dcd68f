/*
 * Unit tests for agentd/buf.c: growth up to the hard cap and never past it,
 * a cap below the first block, and the inline reserve / append / putc / puts.
 * A call refused at the cap returns -ENOMEM and leaves the buffer as it was.
 */
#include <check.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define FIRST_BLOCK 256

static struct buf b;
static char src[8192];

static void setup(void)
{
	for (size_t i = 0; i < sizeof src; i++)
		src[i] = (char)('a' + i % 26);
	buf_init(&b, 0);
}

static void teardown(void)
{
	buf_free(&b);
}

/* The buffer holds exactly the first n bytes of src. */
static void holds_prefix(size_t n)
{
	ck_assert_uint_eq(b.len, n);
	ck_assert_uint_le(b.len, b.cap);
	ck_assert_uint_le(b.cap, b.max);
	if (n)
		ck_assert_int_eq(memcmp(b.data, src, n), 0);
}

/* A refused call changed nothing. */
static void unchanged(const struct buf *before)
{
	ck_assert_ptr_eq(b.data, before->data);
	ck_assert_uint_eq(b.len, before->len);
	ck_assert_uint_eq(b.cap, before->cap);
	ck_assert_uint_eq(b.max, before->max);
}

START_TEST(buf_init_is_empty_and_allocates_nothing)
{
	buf_init(&b, 1000);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	ck_assert_uint_eq(b.max, 1000);
	/* an empty append needs no memory */
	ck_assert_int_eq(buf_append(&b, NULL, 0), 0);
	ck_assert_ptr_null(b.data);
	ck_assert_int_eq(buf_reserve(&b, 0), 0);
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(buf_first_block_is_256_then_doubles)
{
	buf_init(&b, 1 << 20);
	ck_assert_int_eq(buf_putc(&b, src[0]), 0);
	ck_assert_uint_eq(b.cap, FIRST_BLOCK);
	ck_assert_int_eq(buf_append(&b, src + 1, FIRST_BLOCK - 1), 0);
	ck_assert_uint_eq(b.cap, FIRST_BLOCK); /* limit: full, no growth */
	ck_assert_int_eq(buf_putc(&b, src[FIRST_BLOCK]), 0);
	ck_assert_uint_eq(b.cap, 2 * FIRST_BLOCK); /* limit+1: doubled */
	ck_assert_int_eq(buf_append(&b, src + FIRST_BLOCK + 1, 3 * FIRST_BLOCK), 0);
	ck_assert_uint_eq(b.cap, 8 * FIRST_BLOCK); /* doubled until it fits */
	holds_prefix(4 * FIRST_BLOCK + 1);
}
END_TEST

START_TEST(buf_append_one_below_max_fits)
{
	buf_init(&b, 1000);
	ck_assert_int_eq(buf_append(&b, src, 999), 0);
	holds_prefix(999);
}
END_TEST

START_TEST(buf_append_exactly_max_fits_and_cap_is_max)
{
	buf_init(&b, 1000);
	ck_assert_int_eq(buf_append(&b, src, 1000), 0);
	holds_prefix(1000);
	ck_assert_uint_eq(b.cap, 1000);
}
END_TEST

START_TEST(buf_append_one_past_max_is_enomem_and_unchanged)
{
	buf_init(&b, 1000);
	struct buf before = b;
	ck_assert_int_eq(buf_append(&b, src, 1001), -ENOMEM);
	unchanged(&before);
	ck_assert_ptr_null(b.data);
}
END_TEST

START_TEST(buf_grows_step_by_step_to_exactly_max)
{
	/* not a power of two times the first block: the last step clamps */
	buf_init(&b, 3000);
	size_t n = 0;
	while (n + 7 <= 3000) {
		ck_assert_int_eq(buf_append(&b, src + n, 7), 0);
		n += 7;
	}
	size_t rest = 3000 - n;
	ck_assert_int_eq(buf_append(&b, src + n, rest), 0);
	holds_prefix(3000);
	ck_assert_uint_eq(b.cap, 3000);

	struct buf before = b;
	ck_assert_int_eq(buf_putc(&b, 'x'), -ENOMEM);
	unchanged(&before);
	ck_assert_int_eq(buf_append(&b, src, 1), -ENOMEM);
	unchanged(&before);
	ck_assert_int_eq(buf_puts(&b, "x"), -ENOMEM);
	unchanged(&before);
	ck_assert_int_eq(buf_reserve(&b, 1), -ENOMEM);
	unchanged(&before);
	holds_prefix(3000);
}
END_TEST

START_TEST(buf_refused_append_keeps_content_below_max)
{
	buf_init(&b, 1000);
	ck_assert_int_eq(buf_append(&b, src, 600), 0);
	struct buf before = b;
	ck_assert_int_eq(buf_append(&b, src + 600, 401), -ENOMEM); /* limit+1 */
	unchanged(&before);
	holds_prefix(600);
	ck_assert_int_eq(buf_append(&b, src + 600, 400), 0); /* limit */
	holds_prefix(1000);
}
END_TEST

START_TEST(buf_max_below_first_block_caps_the_first_block)
{
	buf_init(&b, 100);
	ck_assert_int_eq(buf_putc(&b, src[0]), 0);
	ck_assert_uint_eq(b.cap, 100); /* not 256 */
	ck_assert_int_eq(buf_append(&b, src + 1, 98), 0);
	holds_prefix(99);
	ck_assert_int_eq(buf_putc(&b, src[99]), 0);
	holds_prefix(100);
	struct buf before = b;
	ck_assert_int_eq(buf_putc(&b, 'x'), -ENOMEM);
	unchanged(&before);
}
END_TEST

START_TEST(buf_max_of_first_block_and_one_more)
{
	buf_init(&b, FIRST_BLOCK - 1);
	ck_assert_int_eq(buf_append(&b, src, FIRST_BLOCK - 1), 0);
	ck_assert_uint_eq(b.cap, FIRST_BLOCK - 1);
	ck_assert_int_eq(buf_putc(&b, 'x'), -ENOMEM);
	buf_free(&b);

	buf_init(&b, FIRST_BLOCK);
	ck_assert_int_eq(buf_append(&b, src, FIRST_BLOCK), 0);
	ck_assert_uint_eq(b.cap, FIRST_BLOCK);
	ck_assert_int_eq(buf_putc(&b, 'x'), -ENOMEM);
	buf_free(&b);

	buf_init(&b, FIRST_BLOCK + 1);
	ck_assert_int_eq(buf_append(&b, src, FIRST_BLOCK), 0);
	ck_assert_uint_eq(b.cap, FIRST_BLOCK);
	ck_assert_int_eq(buf_putc(&b, src[FIRST_BLOCK]), 0);
	ck_assert_uint_eq(b.cap, FIRST_BLOCK + 1); /* clamped, not doubled */
	holds_prefix(FIRST_BLOCK + 1);
	ck_assert_int_eq(buf_putc(&b, 'x'), -ENOMEM);
}
END_TEST

START_TEST(buf_zero_max_refuses_every_byte)
{
	buf_init(&b, 0);
	ck_assert_int_eq(buf_putc(&b, 'x'), -ENOMEM);
	ck_assert_int_eq(buf_append(&b, src, 1), -ENOMEM);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
}
END_TEST

START_TEST(buf_reserve_makes_room_without_changing_len)
{
	buf_init(&b, 4096);
	ck_assert_int_eq(buf_append(&b, src, 10), 0);
	ck_assert_int_eq(buf_reserve(&b, 1000), 0);
	ck_assert_uint_eq(b.len, 10);
	ck_assert_uint_ge(b.cap - b.len, 1000);
	holds_prefix(10);
	/* what was reserved is used without another allocation */
	char *p = b.data;
	size_t cap = b.cap;
	ck_assert_int_eq(buf_append(&b, src + 10, 1000), 0);
	ck_assert_ptr_eq(b.data, p);
	ck_assert_uint_eq(b.cap, cap);
	holds_prefix(1010);
	/* reserve up to the cap: limit fits, limit+1 does not */
	ck_assert_int_eq(buf_reserve(&b, 4096 - 1010), 0);
	struct buf before = b;
	ck_assert_int_eq(buf_reserve(&b, 4096 - 1010 + 1), -ENOMEM);
	unchanged(&before);
}
END_TEST

START_TEST(buf_grow_refuses_sizes_that_would_overflow)
{
	buf_init(&b, SIZE_MAX);
	ck_assert_int_eq(buf_append(&b, src, 10), 0);
	struct buf before = b;
	ck_assert_int_eq(buf_grow(&b, SIZE_MAX - 5), -ENOMEM);
	unchanged(&before);
	ck_assert_int_eq(buf_grow(&b, SIZE_MAX), -ENOMEM);
	unchanged(&before);
	holds_prefix(10);
}
END_TEST

START_TEST(buf_putc_and_puts_append_in_order)
{
	buf_init(&b, 64);
	ck_assert_int_eq(buf_puts(&b, "{\"a\":"), 0);
	ck_assert_int_eq(buf_putc(&b, '1'), 0);
	ck_assert_int_eq(buf_putc(&b, '}'), 0);
	ck_assert_uint_eq(b.len, 7);
	ck_assert_int_eq(memcmp(b.data, "{\"a\":1}", 7), 0);
	ck_assert_int_eq(buf_puts(&b, ""), 0);
	ck_assert_uint_eq(b.len, 7);
}
END_TEST

START_TEST(buf_reset_frees_memory_and_keeps_the_max)
{
	buf_init(&b, 500);
	ck_assert_int_eq(buf_append(&b, src, 300), 0);
	buf_reset(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	ck_assert_uint_eq(b.max, 500);
	ck_assert_int_eq(buf_append(&b, src, 500), 0);
	ck_assert_int_eq(buf_putc(&b, 'x'), -ENOMEM);
	holds_prefix(500);
}
END_TEST

START_TEST(buf_free_twice_is_harmless)
{
	buf_init(&b, 100);
	ck_assert_int_eq(buf_append(&b, src, 50), 0);
	buf_free(&b);
	buf_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
}
END_TEST

static Suite *buf_suite(void)
{
	Suite *s = suite_create("buf");
	TCase *t = tcase_create("buf");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, buf_init_is_empty_and_allocates_nothing);
	tcase_add_test(t, buf_first_block_is_256_then_doubles);
	tcase_add_test(t, buf_append_one_below_max_fits);
	tcase_add_test(t, buf_append_exactly_max_fits_and_cap_is_max);
	tcase_add_test(t, buf_append_one_past_max_is_enomem_and_unchanged);
	tcase_add_test(t, buf_grows_step_by_step_to_exactly_max);
	tcase_add_test(t, buf_refused_append_keeps_content_below_max);
	tcase_add_test(t, buf_max_below_first_block_caps_the_first_block);
	tcase_add_test(t, buf_max_of_first_block_and_one_more);
	tcase_add_test(t, buf_zero_max_refuses_every_byte);
	tcase_add_test(t, buf_reserve_makes_room_without_changing_len);
	tcase_add_test(t, buf_grow_refuses_sizes_that_would_overflow);
	tcase_add_test(t, buf_putc_and_puts_append_in_order);
	tcase_add_test(t, buf_reset_frees_memory_and_keeps_the_max);
	tcase_add_test(t, buf_free_twice_is_harmless);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(buf_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
