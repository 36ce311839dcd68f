/*
 * spool: agentd's disk buffer for batches that could not be delivered yet
 * (outage, overflow, shutdown, or every batch with `[spool] mode = always`).
 *
 * Owns: one directory (created 0700 if missing, locked with flock so that two
 * agentd cannot share it) holding
 *   <16 hex digits>.seg    segment files (0600), appended to in order;
 *   ack-cursor             where delivery of the oldest segment got to;
 *   dead/dead-YYYYMMDD.jsonl  dead letters (0600), one JSON object a line.
 * A segment is a run of entries. An entry is a 32-byte header (magic, blob
 * length, record count, wall-clock write time in ns, crc32 of header and
 * blob) followed by the blob, which is opaque here (a batch's records, see
 * record.h). Integers are in host byte order: a spool is read back by the host
 * that wrote it.
 *
 * Limits: the segments together never pass max_bytes: an append that would
 * pass it first drops the oldest whole segment(s), delivered or not, and
 * counts them (segments, entries, records). An entry bigger than max_bytes
 * (or 4 GiB) is refused. A segment is rotated when the next entry would take
 * it past segment_bytes (an entry bigger than segment_bytes gets a segment of
 * its own). At most SPOOL_MAX_INFLIGHT entries are handed out at once. Memory
 * is a small record per segment plus one per entry in flight: entries on disk
 * are not indexed in memory, they are read back one at a time.
 *
 * Delivery is at-least-once. Entries are handed out oldest first; an entry
 * given back with spool_nack() is handed out again before anything newer. A
 * segment is unlinked once every entry in it is acknowledged (the segment
 * being written stays until it is rotated or the spool is closed). The
 * ack-cursor file records how far the oldest segment is acknowledged without
 * a gap; after a restart, replay starts there. Entries acknowledged out of
 * order after a gap, and any acknowledgement that had not reached the disk at
 * a crash, are replayed again: the receiver may see an entry twice, never
 * zero times.
 *
 * Durability (fsync mode): FSYNC_ALWAYS makes each entry durable
 * (fdatasync) before spool_append() returns; FSYNC_INTERVAL leaves it to the
 * caller to call spool_sync() on a timer, from any thread (it syncs outside
 * the spool's lock, so appends and reads go on meanwhile); FSYNC_NEVER leaves
 * it to the kernel.
 *
 * Recovery (spool_open): every segment is read in order and every entry
 * checked (magic, lengths, checksum). The first bad entry of a segment ends
 * it: the segment is cut there (ftruncate), the rest is counted as one torn
 * entry and skipped. That is a write torn by a crash in the last segment, or
 * corruption in an older one. What was found is reported by spool_stats();
 * nothing here prints or logs.
 *
 * Failure: every call returns 0 (or a count) on success and a negative errno
 * on failure. A write that fails (ENOSPC, EDQUOT, EFBIG, EIO, EACCES, ...) is
 * cut back so the segment stays whole, counted in write_errors, and the entry
 * is not stored: the caller keeps it or drops it. The next append tries again,
 * so the spool recovers on its own once space returns. When RLIMIT_FSIZE can
 * be hit, the caller must ignore SIGXFSZ (the process default kills it);
 * writes then fail with -EFBIG. An entry found corrupt at replay time is
 * skipped with the rest of its segment and counted (corrupt_entries,
 * dropped_records).
 *
 * Threads: every call but spool_close() may be made from any thread (one
 * internal mutex); the intended use is the loop thread for everything but
 * spool_sync(). With FSYNC_INTERVAL a rotated segment waits for the next
 * spool_sync(); if 16 are waiting, the oldest is synced in spool_append().
 */
#ifndef AGENTD_SPOOL_H
#define AGENTD_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h" /* enum fsync_mode */

#define SPOOL_ENTRY_HDR 32u /* on-disk bytes of an entry besides its blob */
#define SPOOL_MAX_INFLIGHT 4096u /* entries handed out and not yet acked/nacked */
#define SPOOL_DEAD_REASON_MAX 4096u /* bytes of a dead letter's reason kept */

struct spool;

/* One entry handed out by spool_peek_next(). The caller frees blob (free()). */
struct spool_entry {
	uint64_t id; /* for spool_ack / spool_nack; unique while the spool is open */
	void *blob; /* malloc'd copy, len bytes (non-NULL even when len is 0) */
	size_t len;
	uint32_t nrecords;
	int64_t time_ns; /* wall-clock time it was appended, ns since the epoch */
};

struct spool_stats {
	/* Now. */
	uint64_t bytes; /* on disk, segments only (acked entries count until their segment goes) */
	uint64_t segments;
	uint64_t entries; /* not yet acknowledged (includes in flight) */
	uint64_t records; /* records in those entries */
	uint64_t inflight; /* entries handed out, not yet acked or nacked */
	int64_t oldest_ns; /* write time of the first entry of the oldest segment still holding an
			      unacknowledged entry; 0 when there is none */
	/* Found by spool_open(). */
	uint64_t recovered_entries; /* whole entries, not yet acknowledged */
	uint64_t recovered_records;
	uint64_t recovered_bytes; /* segment bytes kept */
	uint64_t torn_entries; /* bad tails cut off (one per segment cut) */
	uint64_t torn_bytes; /* bytes cut off */
	/* Since spool_open(). */
	uint64_t appended_entries;
	uint64_t appended_records;
	uint64_t acked_entries;
	uint64_t dropped_segments; /* removed to stay under max_bytes */
	uint64_t dropped_entries; /* unacknowledged entries in them */
	uint64_t dropped_records; /* their records, plus those of corrupt entries */
	uint64_t corrupt_entries; /* entries found bad when read back for replay */
	uint64_t refused_entries; /* bigger than max_bytes */
	uint64_t write_errors; /* failed appends, syncs and dead-letter writes */
	int last_error; /* negative errno of the last of those, 0 if none */
	uint64_t dead_letters;
};

/*
 * Open (creating it, 0700, if missing) and recover the spool in dir.
 * max_bytes bounds the segments, segment_bytes is where a segment is
 * rotated; fsync_mode is an enum fsync_mode. On success *sp owns the spool.
 * -EINVAL (bad argument), -EBUSY (another process has it open), -ENOMEM,
 * or the -errno of a failed mkdir/open/read (say -ENOTDIR, -EACCES).
 */
int spool_open(struct spool **sp, const char *dir, uint64_t max_bytes, size_t segment_bytes, int fsync_mode);

/*
 * Append one entry: len bytes of blob holding nrecords records. Returns the
 * number of unacknowledged records dropped (oldest segments removed) to make
 * room, usually 0, capped at INT_MAX; spool_stats() has the totals. Errors:
 * -EINVAL, -EMSGSIZE (entry bigger than max_bytes, counted in
 * refused_entries), -ENOMEM, or the write's -errno (-ENOSPC, -EDQUOT,
 * -EFBIG, -EIO, -EACCES ...), counted in write_errors; the spool is as before
 * (except for segments already dropped to make room).
 */
int spool_append(struct spool *s, const void *blob, size_t len, uint32_t nrecords);

/*
 * Hand out the oldest entry not in flight: nacked entries first, then the
 * next one on disk. Fills *e (the caller frees e->blob). -ENOENT when there is
 * nothing to hand out, -EBUSY at SPOOL_MAX_INFLIGHT, -ENOMEM, -EIO (or the
 * read's -errno; nothing was consumed, try again later).
 */
int spool_peek_next(struct spool *s, struct spool_entry *e);

/* The entry was delivered. 0, or -ENOENT for an unknown id (say, its segment
   was dropped for space meanwhile: nothing to do). */
int spool_ack(struct spool *s, uint64_t id);

/* Delivery failed: hand the entry out again, before newer ones. 0 or -ENOENT. */
int spool_nack(struct spool *s, uint64_t id);

/*
 * Make what was appended durable: fdatasync the segments written since the
 * last call, the directory and the ack cursor. Safe from a worker thread while
 * another thread appends and reads. 0 or the first -errno (counted).
 */
int spool_sync(struct spool *s);

/*
 * Append {"time":"<UTC RFC 3339>","reason":"<reason, escaped>","record":<json>}
 * as one line to <dir>/dead/dead-YYYYMMDD.jsonl (UTC date, 0600). json is a
 * JSON value of len bytes, written as is (line breaks in it become spaces).
 * reason is escaped (invalid UTF-8 becomes U+FFFD); past SPOOL_DEAD_REASON_MAX
 * bytes it is cut and ends in "...". A day's file is capped at max_bytes:
 * -EFBIG past it. 0 or -errno (counted in write_errors); fdatasync'd with
 * FSYNC_ALWAYS only.
 */
int spool_dead_letter(struct spool *s, const char *json, size_t len, const char *reason);

/* Copy the counters (see struct spool_stats) into *st. */
void spool_stats(struct spool *s, struct spool_stats *st);

/*
 * Sync (unless FSYNC_NEVER), unlink the segment being written if nothing in
 * it is left to deliver, release everything. Entries in flight stay on disk
 * and are replayed at the next open. Returns 0 or the sync's -errno. NULL is
 * accepted.
 */
int spool_close(struct spool *s);

#endif
