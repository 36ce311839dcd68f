/*
 * spoolq: where the pipeline meets the spool (spool.h).
 *
 * Owns: the spool handle, the replay of its entries into batches, the fsync
 * timer and the bookkeeping of which batch holds which spool entry.
 *
 * [spool] mode = on-failure: batches go to disk when they exhaust their
 * retries, while the upstream is down, at the memory bound and at the
 * shutdown deadline. mode = always: whatever ingest reads is appended to the
 * spool at once (one entry per wakeup), and batches are only ever assembled
 * from the spool, so the spool is the queue and a crash loses nothing that
 * was read. Either way entries come back oldest first, as batches of up to
 * [batch] max_records, acknowledged once delivered.
 *
 * Failure: when the spool cannot be written (disk full, unwritable), batches
 * stay in memory, and at the memory bound the oldest are dropped; each
 * episode is logged once when it begins and once when it ends, with a count.
 * Without a spool ([spool] dir empty) the same memory fallback applies.
 */
#include "spoolq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "spool.h"

/* A spool entry held by more than one batch after a split. */
struct shared_id {
	struct shared_id *next;
	uint64_t id;
	unsigned refs;
	bool failed;
};

static struct {
	uv_timer_t sync_timer;
	uv_timer_t replay_timer;
	uv_timer_t replay_tick; /* looks at the spool every second */
	uv_work_t sync_work;
	bool sync_busy;
	bool timers;
	bool stopped; /* shutdown: no more replay */
	/* mode = always: records appended and not yet handed out */
	uint64_t pending;
	uint64_t pending_since; /* loop time of the oldest of them */
	bool mem_episode;
	uint64_t mem_dropped;
	bool disk_episode;
	uint64_t disk_failed;
	uint64_t probe_after; /* upstream down: no probe from the spool before */
	struct shared_id *shared;
} sq;

static void replay_more(struct agentd *d);

static bool always(const struct agentd *d)
{
	return d->spool && d->cfg.spool.mode == SPOOL_ALWAYS;
}

/* ---- spool entry ownership --------------------------------------------- */

static int add_id(struct batch *b, uint64_t id)
{
	uint64_t *ids = realloc(b->spool_ids, (b->nspool_ids + 1) * sizeof *ids);
	if (!ids)
		return -ENOMEM;
	ids[b->nspool_ids++] = id;
	b->spool_ids = ids;
	return 0;
}

int spoolq_share(struct agentd *d, struct batch *b, struct batch *b2)
{
	(void)d;
	if (!b->nspool_ids)
		return 0;
	/* take every node first, so that a failure leaves nothing half done */
	struct shared_id *fresh = NULL;
	for (uint32_t i = 0; i < b->nspool_ids; i++) {
		struct shared_id *s;
		for (s = sq.shared; s && s->id != b->spool_ids[i]; s = s->next)
			;
		if (s)
			continue;
		if (!(s = calloc(1, sizeof *s)))
			goto fail;
		s->id = b->spool_ids[i];
		s->refs = 1;
		s->next = fresh;
		fresh = s;
	}
	b2->spool_ids = malloc(b->nspool_ids * sizeof *b2->spool_ids);
	if (!b2->spool_ids)
		goto fail;
	memcpy(b2->spool_ids, b->spool_ids, b->nspool_ids * sizeof *b2->spool_ids);
	b2->nspool_ids = b->nspool_ids;
	while (fresh) {
		struct shared_id *s = fresh;
		fresh = s->next;
		s->next = sq.shared;
		sq.shared = s;
	}
	for (uint32_t i = 0; i < b->nspool_ids; i++)
		for (struct shared_id *s = sq.shared; s; s = s->next)
			if (s->id == b->spool_ids[i]) {
				s->refs++;
				break;
			}
	return 0;
fail:
	while (fresh) {
		struct shared_id *s = fresh;
		fresh = s->next;
		free(s);
	}
	return -ENOMEM;
}

/* Release one holder of id; acks (or nacks) the entry when it was the last. */
static void release_id(struct agentd *d, uint64_t id, bool ok)
{
	for (struct shared_id **p = &sq.shared; *p; p = &(*p)->next) {
		struct shared_id *s = *p;
		if (s->id != id)
			continue;
		s->failed |= !ok;
		if (--s->refs)
			return;
		ok = !s->failed;
		*p = s->next;
		free(s);
		break;
	}
	if (ok)
		spool_ack(d->spool, id);
	else
		spool_nack(d->spool, id);
}

/* The batch's spool entries go back to the spool (not delivered). */
static void release_all(struct agentd *d, struct batch *b, bool ok)
{
	if (!b->nspool_ids)
		return;
	for (uint32_t i = 0; i < b->nspool_ids; i++)
		release_id(d, b->spool_ids[i], ok);
	free(b->spool_ids);
	b->spool_ids = NULL;
	b->nspool_ids = 0;
}

/* Batches from the spool in memory now. */
static unsigned replaying(const struct agentd *d)
{
	unsigned n = 0;
	for (const struct batch *b = d->q.head; b; b = b->next)
		n += b->nspool_ids > 0;
	return n;
}

/* ---- writing ------------------------------------------------------------ */

static void disk_ok(struct agentd *d)
{
	if (sq.disk_episode)
		log_info("spool writable again (%llu batches could not be written meanwhile)",
			 (unsigned long long)sq.disk_failed);
	sq.disk_episode = false;
	sq.disk_failed = 0;
}

/* Write b's records to the spool. true when they are there (b not freed). */
static bool write_batch(struct agentd *d, struct batch *b)
{
	if (!d->spool)
		return false;
	int rc = spool_append(d->spool, b->raw.data, b->raw.len, b->nrec);
	if (rc < 0) {
		if (!sq.disk_episode)
			log_error(
				"cannot write to the spool %s (%s): keeping records in memory, dropping the oldest at "
				"the memory bound",
				d->cfg.spool.dir, strerror(-rc));
		sq.disk_episode = true;
		sq.disk_failed++;
		return false;
	}
	disk_ok(d);
	d->st.spooled += b->nrec;
	if (rc > 0) {
		d->st.dropped[DROP_SPOOL_FULL] += (uint64_t)rc;
		log_error("spool full ([spool] max_bytes %llu): dropped the oldest segment, %d records",
			  (unsigned long long)d->cfg.spool.max_bytes, rc);
	}
	return true;
}

/* Move b out of memory: back to the spool if it came from there, else onto it. */
static bool persist(struct agentd *d, struct batch *b)
{
	if (b->nspool_ids) {
		release_all(d, b, false);
		batch_free(d, b);
		replay_more(d);
		return true;
	}
	if (write_batch(d, b)) {
		batch_free(d, b);
		return true;
	}
	return false;
}

static void mem_drop(struct agentd *d, struct batch *b, int reason)
{
	if (!sq.mem_episode)
		log_error(
			"memory bound reached ([queue] max_records %zu, max_bytes %zu)%s: dropping the oldest records",
			d->cfg.queue.max_records, d->cfg.queue.max_bytes,
			d->spool ? " and the spool cannot take them" : " and no spool is configured");
	sq.mem_episode = true;
	sq.mem_dropped += b->nrec;
	d->st.dropped[reason] += b->nrec;
	batch_free(d, b);
}

static void mem_episode_check(struct agentd *d)
{
	if (sq.mem_episode && d->q.records < d->cfg.queue.max_records / 2 && d->q.bytes < d->cfg.queue.max_bytes / 2) {
		log_warn("below the memory bound again: %llu records were dropped meanwhile",
			 (unsigned long long)sq.mem_dropped);
		sq.mem_episode = false;
		sq.mem_dropped = 0;
	}
}

void spoolq_note_drop(struct agentd *d)
{
	if (!sq.mem_episode)
		log_error("memory bound reached and nothing can leave memory yet: dropping new records");
	sq.mem_episode = true;
	sq.mem_dropped++;
}

bool spoolq_sealed(struct agentd *d, struct batch *b)
{
	if (!always(d) || b->nspool_ids || !write_batch(d, b))
		return false; /* encoded and sent from memory as usual */
	/* mode = always: it is on disk; it comes back through replay */
	uint64_t n = b->nrec;
	batch_free(d, b);
	if (!sq.pending)
		sq.pending_since = now_ms(d);
	sq.pending += n;
	replay_more(d);
	return true;
}

bool spoolq_take_open(struct agentd *d, struct batch *b)
{
	if (!write_batch(d, b))
		return false; /* the batch stays in memory */
	uint64_t n = b->nrec;
	d->q.open = NULL;
	uv_timer_stop(&d->q.timer);
	batch_free(d, b);
	if (always(d)) {
		if (!sq.pending)
			sq.pending_since = now_ms(d);
		sq.pending += n;
		replay_more(d);
	}
	return true;
}

void spoolq_ingest_flush(struct agentd *d)
{
	if (d->q.open && d->q.open->nrec)
		spoolq_take_open(d, d->q.open);
}

void spoolq_overflow(struct agentd *d, struct batch *b)
{
	if (!persist(d, b))
		mem_drop(d, b, d->spool ? DROP_SPOOL_ERROR : DROP_QUEUE_FULL);
}

void spoolq_defer(struct agentd *d, struct batch *b, const char *why)
{
	if (upload_down(d))
		sq.probe_after = now_ms(d) + upload_probe_delay_ms(d);
	if (persist(d, b)) {
		log_debug("%s: batch kept in the spool", why);
		return;
	}
	/* no spool to take it: it stays in memory and is tried again later;
	 * the memory bound decides when it must go */
	b->attempts = 0;
	b->state = B_WAITING;
	b->not_before = now_ms(d) + d->cfg.retry.max_backoff_ms;
}

void spoolq_shutdown(struct agentd *d, struct batch *b)
{
	if (persist(d, b))
		return;
	d->st.dropped[DROP_SHUTDOWN] += b->nrec;
	log_error("shutdown: %u records could not be delivered nor written to a spool: dropped", b->nrec);
	batch_free(d, b);
}

void spoolq_delivered(struct agentd *d, struct batch *b)
{
	if (b->nspool_ids) {
		d->st.replayed += b->nrec;
		release_all(d, b, true);
	}
	mem_episode_check(d);
	replay_more(d);
}

void spoolq_while_down(struct agentd *d)
{
	if (!d->spool)
		return; /* kept in memory, up to the memory bound */
	/* one batch stays as the probe: the one in flight or waiting to retry,
	 * else the oldest; everything else goes to disk until the upstream is back */
	struct batch *probe = NULL;
	for (struct batch *b = d->q.head; b && !probe; b = b->next)
		if (b->state == B_INFLIGHT || b->state == B_WAITING)
			probe = b;
	for (struct batch *b = d->q.head; b && !probe; b = b->next)
		if (b->state == B_READY || b->state == B_SEALED)
			probe = b;
	for (struct batch *b = d->q.head, *next; b; b = next) {
		next = b->next;
		if (b != probe && (b->state == B_SEALED || b->state == B_READY || b->state == B_WAITING))
			persist(d, b);
	}
}

void spoolq_dead_letter(struct agentd *d, struct batch *b, const char *why)
{
	struct buf json;
	buf_init(&json, 4 * AP_MAX_FRAME + 4096);
	const struct rec_hdr *h = (const struct rec_hdr *)b->raw.data;
	ap_record_t r;
	struct map_counts mc = {0};
	int rc = -EINVAL;
	if (b->raw.len >= sizeof *h && ap_decode(rec_frame(h), h->len, 0, &r) == AP_OK &&
	    map_record(&json, &r, &h->origin, d->host, d->host_len, &mc) == 0 && d->spool) {
		/* the last error holds the status and the server's answer */
		char reason[sizeof b->last_error];
		snprintf(reason, sizeof reason, "%s", b->last_error[0] ? b->last_error : why);
		rc = spool_dead_letter(d->spool, json.data, json.len, reason);
	}
	buf_free(&json);
	if (rc == 0) {
		d->st.dead_letters += b->nrec;
		log_error("the server refuses one record for good (%s): written to %s/dead/", why, d->cfg.spool.dir);
	} else {
		d->st.dropped[DROP_REJECTED] += b->nrec;
		log_error("the server refuses one record for good (%s) and it cannot be kept (%s): dropped", why,
			  d->spool ? strerror(-rc) : "no spool");
	}
	release_all(d, b, true);
	batch_free(d, b);
}

/* ---- replay ------------------------------------------------------------- */

static void on_replay_timer(uv_timer_t *t)
{
	replay_more(t->data);
}

static void on_replay_tick(uv_timer_t *t)
{
	replay_more(t->data);
}

/* Batches from the spool in memory at once: they share the upload slots with
 * fresh records, so neither starves. */
static unsigned replay_limit(const struct agentd *d)
{
	if (always(d))
		return d->cfg.upstream.max_inflight + 1;
	unsigned n = d->cfg.upstream.max_inflight / 2;
	return n ? n : 1;
}

static void replay_more(struct agentd *d)
{
	if (!d->spool || sq.stopped || !sq.timers)
		return;
	const struct config *c = &d->cfg;
	unsigned limit = replay_limit(d);
	if (upload_down(d)) {
		/* one probe at a time, on backoff, and only when memory has none */
		for (const struct batch *b = d->q.head; b; b = b->next)
			if (b->state != B_OPEN)
				return;
		if (now_ms(d) < sq.probe_after)
			return;
		limit = 1;
	}
	while (replaying(d) < limit) {
		if (always(d) && sq.pending < c->batch.max_records) {
			/* wait for a full batch, or interval_ms after the oldest record */
			uint64_t due = sq.pending_since + c->batch.interval_ms, now = now_ms(d);
			if (!sq.pending)
				return;
			if (due > now) {
				uv_timer_start(&sq.replay_timer, on_replay_timer, due - now, 0);
				return;
			}
		}
		if (d->q.records >= c->queue.max_records / 2 || d->q.bytes >= c->queue.max_bytes / 2)
			return; /* memory is for fresh records first */
		struct batch *b = NULL;
		struct spool_entry e;
		int rc;
		while ((rc = spool_peek_next(d->spool, &e)) == 0) {
			if (b &&
			    (b->nrec + e.nrecords > c->batch.max_records || b->raw.len + e.len > c->batch.max_bytes)) {
				spool_nack(d->spool, e.id);
				free(e.blob);
				break;
			}
			if (!b && !(b = batch_new(d))) {
				spool_nack(d->spool, e.id);
				free(e.blob);
				break;
			}
			if (buf_append(&b->raw, e.blob, e.len) || add_id(b, e.id)) {
				spool_nack(d->spool, e.id);
				free(e.blob);
				break;
			}
			b->nrec += e.nrecords;
			b->est_json += e.len + 200 * (size_t)e.nrecords;
			if (always(d))
				sq.pending = sq.pending > e.nrecords ? sq.pending - e.nrecords : 0;
			free(e.blob);
			if (!always(d))
				break; /* on-failure entries are whole batches already */
		}
		if (!b)
			return;
		if (!b->nrec) {
			free(b->spool_ids);
			buf_free(&b->raw);
			free(b);
			return;
		}
		if (always(d) && sq.pending)
			sq.pending_since = now_ms(d);
		queue_add_batch(d, b);
	}
}

void spoolq_start_replay(struct agentd *d)
{
	if (!d->spool)
		return;
	struct spool_stats st;
	spool_stats(d->spool, &st);
	if (always(d)) {
		sq.pending = st.records;
		sq.pending_since = 0; /* due at once */
	}
	replay_more(d);
}

void spoolq_upstream_up(struct agentd *d)
{
	replay_more(d);
}

void spoolq_shutdown_begin(struct agentd *d)
{
	if (!always(d)) {
		sq.stopped = true; /* what is on disk stays there for the next start */
		return;
	}
	/* mode = always: everything read is on disk; deliver what we can now */
	sq.pending_since = 0;
	replay_more(d);
}

void spoolq_deadline(struct agentd *d)
{
	(void)d;
	sq.stopped = true;
}

bool spoolq_busy(const struct agentd *d)
{
	return always(d) && !sq.stopped && sq.pending > 0 && !upload_down(d);
}

/* ---- setup and durability ---------------------------------------------- */

static void sync_work(uv_work_t *w)
{
	struct agentd *d = w->data;
	spool_sync(d->spool);
}

static void sync_done(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
	sq.sync_busy = false;
}

static void on_sync_timer(uv_timer_t *t)
{
	struct agentd *d = t->data;
	if (sq.sync_busy || !d->spool)
		return;
	sq.sync_busy = true;
	sq.sync_work.data = d;
	if (uv_queue_work(d->loop, &sq.sync_work, sync_work, sync_done))
		sq.sync_busy = false;
}

int spoolq_init(struct agentd *d)
{
	const struct config *c = &d->cfg;
	memset(&sq, 0, sizeof sq);
	d->spool = NULL;
	uv_timer_init(d->loop, &sq.sync_timer);
	uv_timer_init(d->loop, &sq.replay_timer);
	uv_timer_init(d->loop, &sq.replay_tick);
	sq.sync_timer.data = sq.replay_timer.data = sq.replay_tick.data = d;
	sq.timers = true;
	if (!c->spool.dir || !c->spool.dir[0]) {
		log_warn("no spool ([spool] dir is empty): records that cannot be delivered are kept in memory only");
		return 0;
	}
	int rc = spool_open(&d->spool, c->spool.dir, c->spool.max_bytes, c->spool.segment_bytes, c->spool.fsync);
	if (rc == -EBUSY) {
		log_error("spool %s is in use by another agentd", c->spool.dir);
		return rc;
	}
	if (rc) {
		log_error("cannot open the spool %s (%s): running without it, records that cannot be delivered are "
			  "kept in memory only",
			  c->spool.dir, strerror(-rc));
		d->spool = NULL;
		return 0;
	}
	struct spool_stats st;
	spool_stats(d->spool, &st);
	if (st.records || st.torn_entries)
		log_info("spool %s: %llu records in %llu entries to replay%s", c->spool.dir,
			 (unsigned long long)st.records, (unsigned long long)st.entries,
			 st.torn_entries ? "; a torn entry was cut off (a crash mid-write)" : "");
	if (st.torn_entries)
		log_warn("spool recovery cut %llu torn entries (%llu bytes)", (unsigned long long)st.torn_entries,
			 (unsigned long long)st.torn_bytes);
	uv_timer_start(&sq.replay_tick, on_replay_tick, 1000, 1000);
	if (c->spool.fsync == FSYNC_INTERVAL)
		uv_timer_start(&sq.sync_timer, on_sync_timer, c->spool.fsync_interval_ms, c->spool.fsync_interval_ms);
	return 0;
}

void spoolq_close(struct agentd *d)
{
	(void)d;
	if (!sq.timers)
		return;
	sq.timers = false;
	uv_close((uv_handle_t *)&sq.sync_timer, NULL);
	uv_close((uv_handle_t *)&sq.replay_timer, NULL);
	uv_close((uv_handle_t *)&sq.replay_tick, NULL);
}

void spoolq_free(struct agentd *d)
{
	if (d->spool) {
		int rc = spool_close(d->spool);
		if (rc)
			log_error("spool: final sync failed: %s", strerror(-rc));
		d->spool = NULL;
	}
	while (sq.shared) {
		struct shared_id *s = sq.shared;
		sq.shared = s->next;
		free(s);
	}
}
