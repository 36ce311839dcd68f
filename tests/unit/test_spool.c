/*
 * Unit tests for agentd/spool.c: round trip, order, rotation, the size bound,
 * recovery from torn and corrupt entries, ack/nack, dead letters, write
 * errors, and a throughput figure per fsync mode (printed).
 */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "spool.h"

#define E(n) (SPOOL_ENTRY_HDR + (n)) /* on-disk size of an entry with an n-byte blob */
#define BLOB 100

static char base[64];

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
	(void)sb;
	(void)flag;
	(void)f;
	return remove(p);
}

static void base_setup(void)
{
	snprintf(base, sizeof(base), "/tmp/spool-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(base));
}

static void base_teardown(void)
{
	nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* A fresh directory path (not created) under base. */
static void fresh_dir(char *out, size_t n)
{
	char tmpl[128];
	snprintf(tmpl, sizeof(tmpl), "%s/t-XXXXXX", base);
	ck_assert_ptr_nonnull(mkdtemp(tmpl));
	snprintf(out, n, "%s/spool", tmpl);
}

/* Blob i: BLOB bytes, first 4 hold i, the rest a pattern derived from i. */
static void make_blob(unsigned char *b, size_t len, uint32_t i)
{
	for (size_t k = 0; k < len; k++)
		b[k] = (unsigned char)(i * 31 + k * 7);
	if (len >= 4)
		memcpy(b, &i, 4);
}

static void append_n(struct spool *s, uint32_t from, uint32_t n)
{
	unsigned char b[BLOB];
	for (uint32_t i = from; i < from + n; i++) {
		make_blob(b, sizeof(b), i);
		ck_assert_int_eq(spool_append(s, b, sizeof(b), i + 1), 0);
	}
}

/* Peek one entry, check it is blob i (with i + 1 records); returns its id. */
static uint64_t expect_next(struct spool *s, uint32_t i)
{
	struct spool_entry e;
	unsigned char b[BLOB];
	ck_assert_int_eq(spool_peek_next(s, &e), 0);
	make_blob(b, sizeof(b), i);
	uint32_t got;
	memcpy(&got, e.blob, 4);
	ck_assert_uint_eq(got, i);
	ck_assert_uint_eq(e.len, BLOB);
	ck_assert_int_eq(memcmp(e.blob, b, BLOB), 0);
	ck_assert_uint_eq(e.nrecords, i + 1);
	free(e.blob);
	return e.id;
}

static void expect_empty(struct spool *s)
{
	struct spool_entry e;
	ck_assert_int_eq(spool_peek_next(s, &e), -ENOENT);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Segment files in dir, sorted; returns how many (paths in out, up to max). */
static int seg_files(const char *dir, char out[][256], int max)
{
	DIR *d = opendir(dir);
	ck_assert_ptr_nonnull(d);
	char *names[256] = {NULL};
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		if (l > 4 && strcmp(de->d_name + l - 4, ".seg") == 0 && n < 256)
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(char *), cmp_str);
	for (int i = 0; i < n; i++) {
		if (i < max)
			snprintf(out[i], 256, "%s/%s", dir, names[i]);
		free(names[i]);
	}
	return n;
}

static int count_segs(const char *dir)
{
	return seg_files(dir, NULL, 0);
}

static off_t file_size(const char *path)
{
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	return sb.st_size;
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	unsigned char c;
	ck_assert_int_eq(pread(fd, &c, 1, off), 1);
	c ^= 0x5a;
	ck_assert_int_eq(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static struct spool *open_ok(const char *dir, uint64_t max, size_t seg, int mode)
{
	struct spool *s = NULL;
	ck_assert_int_eq(spool_open(&s, dir, max, seg, mode), 0);
	ck_assert_ptr_nonnull(s);
	return s;
}

/* ---- round trip and order ---- */

START_TEST(spool_round_trip_returns_blob_records_and_time)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_ALWAYS);
	struct stat sb;
	ck_assert_int_eq(stat(dir, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0700);

	struct timespec t0, t1;
	clock_gettime(CLOCK_REALTIME, &t0);
	ck_assert_int_eq(spool_append(s, "hello", 5, 3), 0);
	clock_gettime(CLOCK_REALTIME, &t1);
	ck_assert_int_eq(spool_append(s, "", 0, 0), 0);

	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.entries, 2);
	ck_assert_uint_eq(st.records, 3);
	ck_assert_uint_eq(st.bytes, E(5) + E(0));
	ck_assert_uint_eq(st.segments, 1);

	struct spool_entry e;
	ck_assert_int_eq(spool_peek_next(s, &e), 0);
	ck_assert_uint_eq(e.len, 5);
	ck_assert_int_eq(memcmp(e.blob, "hello", 5), 0);
	ck_assert_uint_eq(e.nrecords, 3);
	ck_assert_int_ge(e.time_ns, (int64_t)t0.tv_sec * 1000000000 + t0.tv_nsec);
	ck_assert_int_le(e.time_ns, (int64_t)t1.tv_sec * 1000000000 + t1.tv_nsec);
	ck_assert_int_eq(st.oldest_ns, e.time_ns);
	free(e.blob);
	ck_assert_int_eq(spool_ack(s, e.id), 0);

	ck_assert_int_eq(spool_peek_next(s, &e), 0);
	ck_assert_uint_eq(e.len, 0);
	ck_assert_ptr_nonnull(e.blob);
	free(e.blob);
	ck_assert_int_eq(spool_ack(s, e.id), 0);
	expect_empty(s);

	spool_stats(s, &st);
	ck_assert_uint_eq(st.entries, 0);
	ck_assert_uint_eq(st.records, 0);
	ck_assert_int_eq(st.oldest_ns, 0);
	ck_assert_uint_eq(st.appended_entries, 2);
	ck_assert_uint_eq(st.acked_entries, 2);

	char segs[4][256];
	ck_assert_int_eq(seg_files(dir, segs, 4), 1);
	ck_assert_int_eq(stat(segs[0], &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);
	ck_assert_int_eq(spool_close(s), 0);
	/* Everything was delivered: closing removes the last segment too. */
	ck_assert_int_eq(count_segs(dir), 0);
}
END_TEST

START_TEST(spool_replays_oldest_first_across_segments)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 3 * E(BLOB), FSYNC_NEVER);
	append_n(s, 0, 10);
	ck_assert_int_eq(count_segs(dir), 4);
	for (uint32_t i = 0; i < 10; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_replays_in_order_across_reopen)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 4 * E(BLOB), FSYNC_INTERVAL);
	append_n(s, 0, 5);
	ck_assert_int_eq(spool_close(s), 0);

	s = open_ok(dir, 1 << 20, 4 * E(BLOB), FSYNC_INTERVAL);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.recovered_entries, 5);
	ck_assert_uint_eq(st.recovered_records, 1 + 2 + 3 + 4 + 5);
	ck_assert_uint_eq(st.recovered_bytes, 5 * E(BLOB));
	ck_assert_uint_eq(st.torn_entries, 0);
	append_n(s, 5, 5);
	ck_assert_int_eq(spool_close(s), 0);

	s = open_ok(dir, 1 << 20, 4 * E(BLOB), FSYNC_INTERVAL);
	for (uint32_t i = 0; i < 10; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(count_segs(dir), 0);
}
END_TEST

START_TEST(spool_entries_appended_during_replay_come_after_older_ones)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 2 * E(BLOB), FSYNC_NEVER);
	append_n(s, 0, 3);
	uint64_t a = expect_next(s, 0);
	append_n(s, 3, 2);
	uint64_t b = expect_next(s, 1);
	ck_assert_int_eq(spool_nack(s, a), 0);
	append_n(s, 5, 1);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 0)), 0);
	ck_assert_int_eq(spool_ack(s, b), 0);
	for (uint32_t i = 2; i < 6; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* ---- rotation ---- */

static void rotation_case(size_t segment_bytes, int want_segs)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, segment_bytes, FSYNC_NEVER);
	append_n(s, 0, 4);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.segments, (uint64_t)want_segs);
	ck_assert_int_eq(count_segs(dir), want_segs);
	for (uint32_t i = 0; i < 4; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	ck_assert_int_eq(spool_close(s), 0);
}

START_TEST(spool_rotates_when_two_entries_pass_segment_bytes_by_one)
{
	rotation_case(2 * E(BLOB) - 1, 4);
}
END_TEST

START_TEST(spool_keeps_two_entries_that_fill_segment_bytes_exactly)
{
	rotation_case(2 * E(BLOB), 2);
}
END_TEST

START_TEST(spool_keeps_two_entries_one_under_segment_bytes)
{
	rotation_case(2 * E(BLOB) + 1, 2);
}
END_TEST

START_TEST(spool_gives_an_entry_bigger_than_segment_bytes_its_own_segment)
{
	rotation_case(E(BLOB) / 2, 4);
}
END_TEST

/* ---- the size bound ---- */

START_TEST(spool_full_drops_oldest_segment_and_counts_records)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 4 * E(BLOB), 2 * E(BLOB), FSYNC_NEVER);
	append_n(s, 0, 4); /* exactly max_bytes: nothing dropped */
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.bytes, 4 * E(BLOB));
	ck_assert_uint_eq(st.dropped_segments, 0);

	unsigned char b[BLOB];
	make_blob(b, sizeof(b), 4);
	/* The oldest segment holds blobs 0 and 1: 1 + 2 records. */
	ck_assert_int_eq(spool_append(s, b, sizeof(b), 5), 3);
	spool_stats(s, &st);
	ck_assert_uint_eq(st.dropped_segments, 1);
	ck_assert_uint_eq(st.dropped_entries, 2);
	ck_assert_uint_eq(st.dropped_records, 3);
	ck_assert_uint_eq(st.bytes, 3 * E(BLOB));
	ck_assert_uint_eq(st.entries, 3);
	ck_assert_int_eq(count_segs(dir), 2);
	for (uint32_t i = 2; i < 5; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_full_drops_segment_with_entry_in_flight)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 2 * E(BLOB), E(BLOB), FSYNC_NEVER);
	append_n(s, 0, 2);
	uint64_t id = expect_next(s, 0);
	unsigned char b[BLOB];
	make_blob(b, sizeof(b), 2);
	ck_assert_int_eq(spool_append(s, b, sizeof(b), 3), 1); /* blob 0's one record */
	/* Its segment is gone: the ack has nothing to do. */
	ck_assert_int_eq(spool_ack(s, id), -ENOENT);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 1)), 0);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 2)), 0);
	expect_empty(s);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.dropped_records, 1);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_refuses_entry_bigger_than_max_bytes)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	size_t max = 1000;
	struct spool *s = open_ok(dir, max, 512, FSYNC_NEVER);
	char *b = calloc(1, max);
	ck_assert_int_eq(spool_append(s, b, max - SPOOL_ENTRY_HDR + 1, 1), -EMSGSIZE);
	ck_assert_int_eq(spool_append(s, b, max - SPOOL_ENTRY_HDR, 1), 0);
	/* A second one fills it again: the first goes. */
	ck_assert_int_eq(spool_append(s, b, max - SPOOL_ENTRY_HDR - 1, 2), 1);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.refused_entries, 1);
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.records, 2);
	free(b);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* ---- recovery ---- */

/* Three entries in one segment, then damage(path), then reopen: entries 0, 1 kept, 2 cut. */
static void torn_case(void (*damage)(const char *path, off_t arg), off_t arg)
{
	char dir[256], segs[4][256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_ALWAYS);
	append_n(s, 0, 3);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(seg_files(dir, segs, 4), 1);
	damage(segs[0], arg);
	off_t damaged = file_size(segs[0]);

	s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_ALWAYS);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.torn_entries, 1);
	ck_assert_uint_eq(st.torn_bytes, (uint64_t)damaged - 2 * E(BLOB));
	ck_assert_uint_eq(st.recovered_entries, 2);
	ck_assert_uint_eq(st.recovered_records, 3);
	ck_assert_int_eq(file_size(segs[0]), 2 * E(BLOB));
	ck_assert_int_eq(spool_ack(s, expect_next(s, 0)), 0);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 1)), 0);
	expect_empty(s);
	/* New entries go on after the cut and survive another reopen. */
	append_n(s, 7, 1);
	ck_assert_int_eq(spool_close(s), 0);
	s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_ALWAYS);
	spool_stats(s, &st);
	ck_assert_uint_eq(st.torn_entries, 0);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 7)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}

static void cut_at(const char *path, off_t off)
{
	ck_assert_int_eq(truncate(path, off), 0);
}

static void flip_at(const char *path, off_t off)
{
	flip_byte(path, off);
}

START_TEST(spool_recovery_cuts_entry_torn_in_header)
{
	torn_case(cut_at, 2 * E(BLOB) + 10);
}
END_TEST

START_TEST(spool_recovery_cuts_entry_torn_in_body)
{
	torn_case(cut_at, 2 * E(BLOB) + SPOOL_ENTRY_HDR + BLOB / 2);
}
END_TEST

START_TEST(spool_recovery_cuts_entry_missing_last_byte)
{
	torn_case(cut_at, 3 * E(BLOB) - 1);
}
END_TEST

START_TEST(spool_recovery_cuts_entry_with_flipped_checksum)
{
	torn_case(flip_at, 2 * E(BLOB) + 24); /* the crc field */
}
END_TEST

START_TEST(spool_recovery_cuts_entry_with_flipped_body_byte)
{
	torn_case(flip_at, 2 * E(BLOB) + SPOOL_ENTRY_HDR + 50);
}
END_TEST

START_TEST(spool_recovery_cuts_entry_with_flipped_length)
{
	torn_case(flip_at, 2 * E(BLOB) + 4);
}
END_TEST

START_TEST(spool_recovery_cuts_garbage_after_last_entry)
{
	char dir[256], segs[4][256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_NEVER);
	append_n(s, 0, 2);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(seg_files(dir, segs, 4), 1);
	int fd = open(segs[0], O_WRONLY | O_APPEND);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "\0\0\0\0\0\0\0", 7), 7);
	close(fd);
	s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_NEVER);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.torn_entries, 1);
	ck_assert_uint_eq(st.torn_bytes, 7);
	ck_assert_uint_eq(st.recovered_entries, 2);
	ck_assert_int_eq(file_size(segs[0]), 2 * E(BLOB));
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_recovery_skips_rest_of_older_segment_after_corrupt_entry)
{
	char dir[256], segs[4][256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 3 * E(BLOB), FSYNC_NEVER);
	append_n(s, 0, 7); /* segments: 0 1 2 | 3 4 5 | 6 */
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(seg_files(dir, segs, 4), 3);
	flip_byte(segs[0], E(BLOB) + SPOOL_ENTRY_HDR + 3); /* blob 1 */

	s = open_ok(dir, 1 << 20, 3 * E(BLOB), FSYNC_NEVER);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.torn_entries, 1);
	ck_assert_uint_eq(st.torn_bytes, 2 * E(BLOB));
	ck_assert_uint_eq(st.recovered_entries, 5);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 0)), 0);
	for (uint32_t i = 3; i < 7; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_recovery_removes_segment_with_no_whole_entry)
{
	char dir[256], segs[4][256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, E(BLOB), FSYNC_NEVER);
	append_n(s, 0, 2);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(seg_files(dir, segs, 4), 2);
	cut_at(segs[1], 5);
	s = open_ok(dir, 1 << 20, E(BLOB), FSYNC_NEVER);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.torn_entries, 1);
	ck_assert_uint_eq(st.segments, 1);
	ck_assert_int_eq(count_segs(dir), 1);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 0)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_skips_entry_found_corrupt_at_replay_and_counts_it)
{
	char dir[256], segs[4][256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_NEVER);
	append_n(s, 0, 3);
	ck_assert_int_eq(seg_files(dir, segs, 4), 1);
	flip_byte(segs[0], E(BLOB) + SPOOL_ENTRY_HDR + 9); /* blob 1, after recovery */
	ck_assert_int_eq(spool_ack(s, expect_next(s, 0)), 0);
	expect_empty(s); /* blob 1 is bad: it and the rest of its segment are lost */
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.corrupt_entries, 2);
	ck_assert_uint_eq(st.dropped_records, 2 + 3);
	ck_assert_uint_eq(st.entries, 0);
	/* Appends go to a new segment, readable as usual. */
	append_n(s, 3, 1);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 3)), 0);
	ck_assert_int_eq(count_segs(dir), 1);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* ---- ack / nack ---- */

START_TEST(spool_ack_and_nack_in_and_out_of_order)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 2 * E(BLOB), FSYNC_NEVER);
	append_n(s, 0, 6);
	uint64_t a = expect_next(s, 0), b = expect_next(s, 1), c = expect_next(s, 2);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.inflight, 3);
	ck_assert_int_eq(spool_ack(s, c), 0);
	ck_assert_int_eq(spool_ack(s, c), -ENOENT);
	ck_assert_int_eq(spool_nack(s, a), 0);
	ck_assert_int_eq(expect_next(s, 0), a); /* before blob 3, same id */
	ck_assert_int_eq(spool_nack(s, b), 0);
	ck_assert_int_eq(spool_nack(s, a), 0);
	ck_assert_int_eq(expect_next(s, 0), a); /* oldest nacked first */
	ck_assert_int_eq(expect_next(s, 1), b);
	uint64_t d = expect_next(s, 3);
	ck_assert_int_eq(spool_nack(s, d), 0);
	ck_assert_int_eq(expect_next(s, 3), d);
	ck_assert_int_eq(spool_ack(s, d), 0);
	ck_assert_int_eq(spool_ack(s, b), 0);
	ck_assert_int_eq(spool_ack(s, a), 0);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 4)), 0);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 5)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_nack(s, 12345), -ENOENT);
	spool_stats(s, &st);
	ck_assert_uint_eq(st.entries, 0);
	ck_assert_uint_eq(st.inflight, 0);
	ck_assert_uint_eq(st.acked_entries, 6);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_unlinks_fully_acked_segments)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 2 * E(BLOB), FSYNC_NEVER);
	append_n(s, 0, 6); /* 0 1 | 2 3 | 4 5 (being written) */
	ck_assert_int_eq(count_segs(dir), 3);
	uint64_t a = expect_next(s, 0), b = expect_next(s, 1);
	ck_assert_int_eq(spool_ack(s, a), 0);
	ck_assert_int_eq(count_segs(dir), 3);
	ck_assert_int_eq(spool_ack(s, b), 0);
	ck_assert_int_eq(count_segs(dir), 2);
	/* Out of order: the later one first. */
	uint64_t c = expect_next(s, 2), d = expect_next(s, 3);
	ck_assert_int_eq(spool_ack(s, d), 0);
	ck_assert_int_eq(count_segs(dir), 2);
	ck_assert_int_eq(spool_ack(s, c), 0);
	ck_assert_int_eq(count_segs(dir), 1);
	/* The segment being written stays until it is rotated. */
	ck_assert_int_eq(spool_ack(s, expect_next(s, 4)), 0);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 5)), 0);
	ck_assert_int_eq(count_segs(dir), 1);
	append_n(s, 6, 1); /* rotates: the old one goes */
	ck_assert_int_eq(count_segs(dir), 1);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.segments, 1);
	ck_assert_uint_eq(st.bytes, E(BLOB));
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_reopen_after_partial_ack_replays_unacked_entries)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_INTERVAL);
	append_n(s, 0, 6);
	uint64_t id[4];
	for (uint32_t i = 0; i < 4; i++)
		id[i] = expect_next(s, i);
	ck_assert_int_eq(spool_ack(s, id[1]), 0);
	ck_assert_int_eq(spool_ack(s, id[0]), 0);
	ck_assert_int_eq(spool_ack(s, id[3]), 0); /* after a gap: blob 2 is in flight */
	ck_assert_int_eq(spool_close(s), 0);

	s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_INTERVAL);
	struct spool_stats st;
	spool_stats(s, &st);
	/* 0 and 1 are behind the ack cursor; 3 comes again (at-least-once). */
	ck_assert_uint_eq(st.recovered_entries, 4);
	ck_assert_uint_eq(st.recovered_records, 3 + 4 + 5 + 6);
	ck_assert_uint_eq(st.entries, 4);
	for (uint32_t i = 2; i < 6; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(count_segs(dir), 0);
}
END_TEST

START_TEST(spool_reopen_replays_everything_when_ack_cursor_is_damaged)
{
	char dir[256], path[300];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_NEVER);
	append_n(s, 0, 3);
	ck_assert_int_eq(spool_ack(s, expect_next(s, 0)), 0);
	ck_assert_int_eq(spool_close(s), 0);
	snprintf(path, sizeof(path), "%s/ack-cursor", dir);
	flip_byte(path, 17);
	s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_NEVER);
	for (uint32_t i = 0; i < 3; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

/* ---- dead letters ---- */

START_TEST(spool_dead_letter_appends_json_line_mode_0600)
{
	char dir[256], path[400];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_ALWAYS);
	const char *rec = "{\"message\":\"x\",\n \"level\":\"INFO\"}";
	ck_assert_int_eq(spool_dead_letter(s, rec, strlen(rec), "HTTP 422: \"bad\"\n\xff"), 0);
	ck_assert_int_eq(spool_dead_letter(s, "{}", 2, "second"), 0);
	ck_assert_int_eq(spool_dead_letter(s, NULL, 2, "x"), -EINVAL);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.dead_letters, 2);
	ck_assert_int_eq(spool_close(s), 0);

	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	char day[16];
	strftime(day, sizeof(day), "%Y%m%d", &tm);
	snprintf(path, sizeof(path), "%s/dead/dead-%s.jsonl", dir, day);
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	ck_assert_uint_eq(sb.st_mode & 0777, 0600);

	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char line[512];
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	/* {"time":"YYYY-MM-DDTHH:MM:SS.mmmZ", ... */
	ck_assert_int_eq(strncmp(line, "{\"time\":\"", 9), 0);
	ck_assert_int_eq(line[9 + 4], '-');
	ck_assert_int_eq(line[9 + 10], 'T');
	ck_assert_int_eq(strncmp(line + 9 + 19, ".", 1), 0);
	ck_assert_int_eq(strncmp(line + 9 + 23, "Z\",", 3), 0);
	ck_assert_str_eq(line + 9 + 26, "\"reason\":\"HTTP 422: \\\"bad\\\"\\u000a\\ufffd\","
					"\"record\":{\"message\":\"x\",  \"level\":\"INFO\"}}\n");
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	ck_assert_str_eq(line + 9 + 26, "\"reason\":\"second\",\"record\":{}}\n");
	ck_assert_ptr_null(fgets(line, sizeof(line), f));
	fclose(f);
}
END_TEST

/* ---- write errors ---- */

START_TEST(spool_append_past_rlimit_fsize_fails_efbig_then_recovers)
{
	char dir[256], segs[4][256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_ALWAYS);
	append_n(s, 0, 2);
	ck_assert_int_eq(seg_files(dir, segs, 4), 1);

	void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
	struct rlimit saved, lim;
	ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &saved), 0);
	lim = saved;
	lim.rlim_cur = 2 * E(BLOB) + 50; /* the next entry gets half written */
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);

	unsigned char b[BLOB];
	make_blob(b, sizeof(b), 2);
	int r1 = spool_append(s, b, sizeof(b), 3);
	int r2 = spool_append(s, b, sizeof(b), 3);
	off_t during = file_size(segs[0]);
	ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &saved), 0);
	signal(SIGXFSZ, old);

	ck_assert_int_eq(r1, -EFBIG);
	ck_assert_int_eq(r2, -EFBIG);
	ck_assert_int_eq(during, 2 * E(BLOB));
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.write_errors, 2);
	ck_assert_int_eq(st.last_error, -EFBIG);
	ck_assert_uint_eq(st.entries, 2);
	ck_assert_uint_eq(st.bytes, 2 * E(BLOB));

	/* Space is back: the same append works, and everything reads back whole. */
	ck_assert_int_eq(spool_append(s, b, sizeof(b), 3), 0);
	ck_assert_int_eq(spool_close(s), 0);
	s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_ALWAYS);
	spool_stats(s, &st);
	ck_assert_uint_eq(st.torn_entries, 0);
	ck_assert_uint_eq(st.recovered_entries, 3);
	for (uint32_t i = 0; i < 3; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_open_under_a_regular_file_fails_cleanly)
{
	char dir[256], file[300], below[400];
	fresh_dir(dir, sizeof(dir));
	snprintf(file, sizeof(file), "%s-file", dir);
	int fd = open(file, O_WRONLY | O_CREAT | O_EXCL, 0600);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(below, sizeof(below), "%s/spool", file);
	struct spool *s = NULL;
	ck_assert_int_eq(spool_open(&s, below, 1 << 20, 1 << 16, FSYNC_NEVER), -ENOTDIR);
	ck_assert_int_eq(spool_open(&s, file, 1 << 20, 1 << 16, FSYNC_NEVER), -ENOTDIR);
	ck_assert_ptr_null(s);
}
END_TEST

START_TEST(spool_append_to_removed_dir_fails_cleanly)
{
	char dir[256], path[300];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_NEVER);
	snprintf(path, sizeof(path), "%s/ack-cursor", dir);
	unlink(path);
	ck_assert_int_eq(rmdir(dir), 0);
	unsigned char b[BLOB] = {0};
	ck_assert_int_eq(spool_append(s, b, sizeof(b), 1), -ENOENT);
	ck_assert_int_eq(spool_append(s, b, sizeof(b), 1), -ENOENT);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.write_errors, 2);
	ck_assert_int_eq(st.last_error, -ENOENT);
	ck_assert_uint_eq(st.entries, 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
}
END_TEST

START_TEST(spool_open_rejects_bad_arguments_and_a_second_opener)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	struct spool *s = NULL, *t = NULL;
	ck_assert_int_eq(spool_open(&s, "", 1 << 20, 1 << 16, FSYNC_NEVER), -EINVAL);
	ck_assert_int_eq(spool_open(&s, dir, SPOOL_ENTRY_HDR, 1 << 16, FSYNC_NEVER), -EINVAL);
	ck_assert_int_eq(spool_open(&s, dir, 1 << 20, 0, FSYNC_NEVER), -EINVAL);
	ck_assert_int_eq(spool_open(&s, dir, 1 << 20, 1 << 16, 7), -EINVAL);
	s = open_ok(dir, 1 << 20, 1 << 16, FSYNC_NEVER);
	ck_assert_int_eq(spool_open(&t, dir, 1 << 20, 1 << 16, FSYNC_NEVER), -EBUSY);
	ck_assert_ptr_null(t);
	ck_assert_int_eq(spool_append(s, NULL, 3, 1), -EINVAL);
	ck_assert_int_eq(spool_peek_next(s, NULL), -EINVAL);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(spool_close(NULL), 0);
	t = open_ok(dir, 1 << 20, 1 << 16, FSYNC_NEVER);
	ck_assert_int_eq(spool_close(t), 0);
}
END_TEST

/* ---- throughput (printed) ---- */

struct syncer {
	struct spool *s;
	atomic_int stop;
	long sleep_ns;
	int syncs;
};

static void *sync_thread(void *arg)
{
	struct syncer *y = arg;
	while (!atomic_load(&y->stop)) {
		struct timespec ts = {0, y->sleep_ns};
		nanosleep(&ts, NULL);
		ck_assert_int_eq(spool_sync(y->s), 0);
		y->syncs++;
	}
	return NULL;
}

START_TEST(spool_sync_from_another_thread_while_appending_and_replaying)
{
	char dir[256];
	fresh_dir(dir, sizeof(dir));
	/* One entry a segment: every append rotates, so rotated segments queue up for the syncer. */
	struct spool *s = open_ok(dir, 1 << 20, E(BLOB), FSYNC_INTERVAL);
	struct syncer y = {.s = s, .sleep_ns = 200 * 1000};
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, sync_thread, &y), 0);
	uint32_t next = 0;
	for (uint32_t i = 0; i < 300; i++) {
		append_n(s, i, 1);
		if (i % 3 == 2) /* deliver two of every three */
			ck_assert_int_eq(spool_ack(s, expect_next(s, next++)), 0);
	}
	atomic_store(&y.stop, 1);
	pthread_join(th, NULL);
	ck_assert_int_gt(y.syncs, 0);
	struct spool_stats st;
	spool_stats(s, &st);
	ck_assert_uint_eq(st.write_errors, 0);
	ck_assert_uint_eq(st.entries, 300 - next);
	ck_assert_int_eq(spool_close(s), 0);

	s = open_ok(dir, 1 << 20, E(BLOB), FSYNC_INTERVAL);
	spool_stats(s, &st);
	ck_assert_uint_eq(st.recovered_entries, 300 - next);
	for (uint32_t i = next; i < 300; i++)
		ck_assert_int_eq(spool_ack(s, expect_next(s, i)), 0);
	expect_empty(s);
	ck_assert_int_eq(spool_close(s), 0);
	ck_assert_int_eq(count_segs(dir), 0);
}
END_TEST

static double elapsed(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) + (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

START_TEST(spool_throughput_256k_blobs_per_fsync_mode)
{
	static const char *names[] = {"interval", "always", "never"};
	const size_t len = 256 * 1024;
	const int n = getenv("SPOOL_BENCH_BLOBS") ? (int)strtol(getenv("SPOOL_BENCH_BLOBS"), NULL, 10) : 64;
	unsigned char *b = malloc(len);
	ck_assert_ptr_nonnull(b);
	make_blob(b, len, 1);
	int modes[] = {FSYNC_NEVER, FSYNC_INTERVAL, FSYNC_ALWAYS};
	for (int m = 0; m < 3; m++) {
		char dir[256];
		fresh_dir(dir, sizeof(dir));
		struct spool *s = open_ok(dir, 1ull << 30, 8u << 20, modes[m]);
		struct syncer y = {.s = s, .sleep_ns = 20 * 1000 * 1000};
		pthread_t th;
		if (modes[m] == FSYNC_INTERVAL)
			ck_assert_int_eq(pthread_create(&th, NULL, sync_thread, &y), 0);
		struct timespec t0, ta, t1, t2;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		for (int i = 0; i < n; i++)
			ck_assert_int_eq(spool_append(s, b, len, 1000), 0);
		clock_gettime(CLOCK_MONOTONIC, &ta);
		if (modes[m] == FSYNC_INTERVAL) {
			atomic_store(&y.stop, 1);
			pthread_join(th, NULL);
		}
		ck_assert_int_eq(spool_sync(s), 0); /* all durable, for every mode */
		clock_gettime(CLOCK_MONOTONIC, &t1);
		for (int i = 0; i < n; i++) {
			struct spool_entry e;
			ck_assert_int_eq(spool_peek_next(s, &e), 0);
			ck_assert_uint_eq(e.len, len);
			free(e.blob);
			ck_assert_int_eq(spool_ack(s, e.id), 0);
		}
		clock_gettime(CLOCK_MONOTONIC, &t2);
		double mb = (double)n * (double)len / 1e6;
		printf("spool throughput: %d x 256 KiB, fsync=%-8s append %7.1f MB/s, append+final sync %7.1f MB/s, "
		       "replay (peek+ack) %7.1f MB/s\n",
		       n, names[modes[m]], mb / elapsed(&t0, &ta), mb / elapsed(&t0, &t1), mb / elapsed(&t1, &t2));
		fflush(stdout);
		ck_assert_int_eq(spool_close(s), 0);
	}
	free(b);
}
END_TEST

static Suite *spool_suite(void)
{
	Suite *su = suite_create("spool");
	TCase *tc = tcase_create("core");
	tcase_add_unchecked_fixture(tc, base_setup, base_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, spool_round_trip_returns_blob_records_and_time);
	tcase_add_test(tc, spool_replays_oldest_first_across_segments);
	tcase_add_test(tc, spool_replays_in_order_across_reopen);
	tcase_add_test(tc, spool_entries_appended_during_replay_come_after_older_ones);
	tcase_add_test(tc, spool_rotates_when_two_entries_pass_segment_bytes_by_one);
	tcase_add_test(tc, spool_keeps_two_entries_that_fill_segment_bytes_exactly);
	tcase_add_test(tc, spool_keeps_two_entries_one_under_segment_bytes);
	tcase_add_test(tc, spool_gives_an_entry_bigger_than_segment_bytes_its_own_segment);
	tcase_add_test(tc, spool_full_drops_oldest_segment_and_counts_records);
	tcase_add_test(tc, spool_full_drops_segment_with_entry_in_flight);
	tcase_add_test(tc, spool_refuses_entry_bigger_than_max_bytes);
	tcase_add_test(tc, spool_recovery_cuts_entry_torn_in_header);
	tcase_add_test(tc, spool_recovery_cuts_entry_torn_in_body);
	tcase_add_test(tc, spool_recovery_cuts_entry_missing_last_byte);
	tcase_add_test(tc, spool_recovery_cuts_entry_with_flipped_checksum);
	tcase_add_test(tc, spool_recovery_cuts_entry_with_flipped_body_byte);
	tcase_add_test(tc, spool_recovery_cuts_entry_with_flipped_length);
	tcase_add_test(tc, spool_recovery_cuts_garbage_after_last_entry);
	tcase_add_test(tc, spool_recovery_skips_rest_of_older_segment_after_corrupt_entry);
	tcase_add_test(tc, spool_recovery_removes_segment_with_no_whole_entry);
	tcase_add_test(tc, spool_skips_entry_found_corrupt_at_replay_and_counts_it);
	tcase_add_test(tc, spool_ack_and_nack_in_and_out_of_order);
	tcase_add_test(tc, spool_unlinks_fully_acked_segments);
	tcase_add_test(tc, spool_reopen_after_partial_ack_replays_unacked_entries);
	tcase_add_test(tc, spool_reopen_replays_everything_when_ack_cursor_is_damaged);
	tcase_add_test(tc, spool_dead_letter_appends_json_line_mode_0600);
	tcase_add_test(tc, spool_append_past_rlimit_fsize_fails_efbig_then_recovers);
	tcase_add_test(tc, spool_open_under_a_regular_file_fails_cleanly);
	tcase_add_test(tc, spool_append_to_removed_dir_fails_cleanly);
	tcase_add_test(tc, spool_open_rejects_bad_arguments_and_a_second_opener);
	tcase_add_test(tc, spool_sync_from_another_thread_while_appending_and_replaying);
	tcase_add_test(tc, spool_throughput_256k_blobs_per_fsync_mode);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(spool_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
