/*
 * upload: what an answer means for a batch, the retry delays, and
 * Retry-After. The requests themselves are tested end to end.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "agentd.h"

/* upload.o calls these; the daemon defines them in main.c */
void agentd_maybe_exit(struct agentd *d)
{
	(void)d;
}

int agentd_reload(struct agentd *d, char *msg, size_t msglen)
{
	(void)d;
	(void)msg;
	(void)msglen;
	return 0;
}

static struct config cfg;

static void setup(void)
{
	ck_assert_int_eq(config_defaults(&cfg), 0);
	srandom(1);
}

static void teardown(void)
{
	config_free(&cfg);
}

START_TEST(classify_2xx_is_delivered)
{
	ck_assert_int_eq(upload_classify(200), UPLOAD_OK);
	ck_assert_int_eq(upload_classify(204), UPLOAD_OK);
	ck_assert_int_eq(upload_classify(299), UPLOAD_OK);
}
END_TEST

START_TEST(classify_transient_answers_are_retried)
{
	static const long st[] = {0, 301, 302, 401, 403, 404, 408, 429, 500, 502, 503, 504, 599};
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
		ck_assert_msg(upload_classify(st[i]) == UPLOAD_RETRY, "status %ld", st[i]);
}
END_TEST

START_TEST(classify_bad_request_is_split_not_retried)
{
	static const long st[] = {400, 413, 415, 422};
	for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
		ck_assert_msg(upload_classify(st[i]) == UPLOAD_REJECT, "status %ld", st[i]);
}
END_TEST

START_TEST(backoff_doubles_from_initial_within_jitter)
{
	cfg.retry.initial_backoff_ms = 1000;
	cfg.retry.max_backoff_ms = 30000;
	for (int i = 0; i < 1000; i++) {
		for (unsigned a = 1; a <= 4; a++) {
			uint64_t base = 1000ull << (a - 1), ms = upload_backoff_ms(&cfg, a);
			ck_assert_msg(ms >= base * 8 / 10 && ms <= base * 12 / 10, "attempt %u: %llu", a,
				      (unsigned long long)ms);
		}
	}
}
END_TEST

START_TEST(backoff_never_passes_the_cap)
{
	cfg.retry.initial_backoff_ms = 1000;
	cfg.retry.max_backoff_ms = 30000;
	for (int i = 0; i < 1000; i++) {
		ck_assert_uint_le(upload_backoff_ms(&cfg, 5), 30000); /* 16 s, below the cap */
		ck_assert_uint_le(upload_backoff_ms(&cfg, 6), 30000); /* 32 s: capped */
		ck_assert_uint_ge(upload_backoff_ms(&cfg, 6), 24000); /* cap minus jitter */
		ck_assert_uint_le(upload_backoff_ms(&cfg, 99), 30000); /* no overflow */
	}
}
END_TEST

START_TEST(backoff_jitter_spreads_the_retries)
{
	cfg.retry.initial_backoff_ms = 1000;
	uint64_t lo = UINT64_MAX, hi = 0;
	for (int i = 0; i < 1000; i++) {
		uint64_t ms = upload_backoff_ms(&cfg, 1);
		lo = ms < lo ? ms : lo;
		hi = ms > hi ? ms : hi;
	}
	ck_assert_uint_lt(lo, 900);
	ck_assert_uint_gt(hi, 1100);
}
END_TEST

#define RA(s) upload_parse_retry_after((s), strlen(s), 1700000000)

START_TEST(retry_after_seconds)
{
	ck_assert_int_eq(RA("0"), 0);
	ck_assert_int_eq(RA(" 7\r\n"), 7);
	ck_assert_int_eq(RA("3599"), 3599);
	ck_assert_int_eq(RA("3600"), 3600);
	ck_assert_int_eq(RA("3601"), 3600); /* capped at an hour */
	ck_assert_int_eq(RA("99999999999999999999999"), 3600);
}
END_TEST

START_TEST(retry_after_http_date)
{
	/* 1700000000 is Tue, 14 Nov 2023 22:13:20 GMT */
	ck_assert_int_eq(RA("Tue, 14 Nov 2023 22:13:50 GMT"), 30);
	ck_assert_int_eq(RA("Tue, 14 Nov 2023 22:13:00 GMT"), 0); /* in the past */
}
END_TEST

START_TEST(retry_after_garbage_is_ignored)
{
	ck_assert_int_eq(RA(""), -1);
	ck_assert_int_eq(RA("   \r\n"), -1);
	ck_assert_int_eq(RA("5s"), -1);
	ck_assert_int_eq(RA("soon"), -1);
	ck_assert_int_eq(RA("-3"), -1);
	char big[200];
	memset(big, '1', sizeof big - 1);
	big[sizeof big - 1] = 0;
	ck_assert_int_eq(RA(big), -1);
}
END_TEST

static Suite *upload_suite(void)
{
	Suite *s = suite_create("upload");
	TCase *t = tcase_create("upload");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, classify_2xx_is_delivered);
	tcase_add_test(t, classify_transient_answers_are_retried);
	tcase_add_test(t, classify_bad_request_is_split_not_retried);
	tcase_add_test(t, backoff_doubles_from_initial_within_jitter);
	tcase_add_test(t, backoff_never_passes_the_cap);
	tcase_add_test(t, backoff_jitter_spreads_the_retries);
	tcase_add_test(t, retry_after_seconds);
	tcase_add_test(t, retry_after_http_date);
	tcase_add_test(t, retry_after_garbage_is_ignored);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(upload_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
