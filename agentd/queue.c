/*
 * queue: the records in memory, as batches, and the batcher.
 *
 * Owns: every batch in memory, oldest first, and the open batch that takes
 * new records. Limits: [queue] max_records and max_bytes over all batches in
 * memory; a batch closes at [batch] max_records, at about [batch] max_bytes of
 * JSON, or interval_ms after its first record. Failure: at the memory bound
 * the oldest batch that is not in a worker or in flight goes to the spool, or,
 * without a spool, is dropped and counted (queue_full); when no batch can be
 * moved the new record is dropped and counted.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "agentd.h"
#include "log.h"
#include "spoolq.h"

/* Per-record JSON overhead beyond the frame: keys, origin metadata. */
#define JSON_OVERHEAD 200

static void on_interval(uv_timer_t *t);

void queue_init(struct agentd *d)
{
	memset(&d->q, 0, sizeof d->q);
	uv_timer_init(d->loop, &d->q.timer);
	d->q.timer.data = d;
}

bool queue_empty(const struct agentd *d)
{
	return d->q.head == NULL;
}

struct batch *batch_new(struct agentd *d)
{
	struct batch *b = calloc(1, sizeof *b);
	if (!b)
		return NULL;
	b->d = d;
	b->seq = ++d->q.next_seq;
	b->work.data = b;
	/* a batch's raw records never pass the memory bound */
	buf_init(&b->raw, d->cfg.queue.max_bytes + AP_MAX_FRAME + sizeof(struct rec_hdr) + REC_ALIGN);
	buf_init(&b->body, 0);
	b->first_ms = now_ms(d);
	return b;
}

static void link_tail(struct agentd *d, struct batch *b)
{
	b->next = NULL;
	b->prev = d->q.tail;
	if (d->q.tail)
		d->q.tail->next = b;
	else
		d->q.head = b;
	d->q.tail = b;
}

static void unlink_batch(struct agentd *d, struct batch *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		d->q.head = b->next;
	if (b->next)
		b->next->prev = b->prev;
	else
		d->q.tail = b->prev;
	b->next = b->prev = NULL;
}

void batch_free(struct agentd *d, struct batch *b)
{
	if (!b)
		return;
	unlink_batch(d, b);
	if (d->q.open == b)
		d->q.open = NULL;
	d->q.records -= b->nrec;
	d->q.bytes -= b->raw.len;
	buf_free(&b->raw);
	buf_free(&b->body);
	free(b->spool_ids);
	free(b);
}

static void after_encode(uv_work_t *w, int status);

static void encode_work(uv_work_t *w)
{
	struct batch *b = w->data;
	b->encode_err = encode_batch(b, &b->eo);
}

void batch_encode(struct agentd *d, struct batch *b)
{
	b->state = B_ENCODING;
	b->skipped = 0;
	memset(&b->mc, 0, sizeof b->mc);
	b->eo.host = d->host;
	b->eo.host_len = d->host_len;
	b->eo.compress_min_records = d->cfg.batch.compress == COMPRESS_GZIP ? d->cfg.batch.compress_min_records : 0;
	b->eo.gzip_level = d->cfg.batch.gzip_level;
	/* the estimate is rough; what is far above it gets split */
	b->eo.max_body = d->cfg.batch.max_bytes * 2 + AP_MAX_FRAME * 8;
	d->q.encoding++;
	int rc = uv_queue_work(d->loop, &b->work, encode_work, after_encode);
	if (rc) {
		/* cannot happen with a valid loop; encode here rather than lose it */
		encode_work(&b->work);
		after_encode(&b->work, 0);
	}
}

/* Split b in two halves (by records), in its place in the queue. Returns the
 * second half, or NULL when b holds one record or memory is short. */
struct batch *queue_split(struct agentd *d, struct batch *b)
{
	if (b->nrec < 2)
		return NULL;
	struct batch *b2 = batch_new(d);
	if (!b2)
		return NULL;
	uint32_t keep = b->nrec / 2, i = 0;
	size_t off = 0;
	while (i < keep) {
		const struct rec_hdr *h = (const struct rec_hdr *)(b->raw.data + off);
		off += rec_size(h->len);
		i++;
	}
	if (buf_append(&b2->raw, b->raw.data + off, b->raw.len - off)) {
		buf_free(&b2->raw);
		free(b2);
		return NULL;
	}
	b2->nrec = b->nrec - keep;
	b2->est_json = b->est_json / 2;
	b2->first_ms = b->first_ms;
	b2->seq = b->seq;
	if (spoolq_share(d, b, b2)) {
		buf_free(&b2->raw);
		free(b2->spool_ids);
		free(b2);
		return NULL;
	}
	b2->splits = b->splits + 1;
	b->splits++;
	b->est_json -= b2->est_json;
	b->raw.len = off;
	b->nrec = keep;
	/* b2 goes right after b: order is kept */
	b2->prev = b;
	b2->next = b->next;
	if (b->next)
		b->next->prev = b2;
	else
		d->q.tail = b2;
	b->next = b2;
	/* the records moved, the totals did not change */
	return b2;
}

static void after_encode(uv_work_t *w, int status)
{
	struct batch *b = w->data;
	struct agentd *d = b->d;
	d->q.encoding--;
	struct map_counts *m = &d->st.mapped;
	m->moved += b->mc.moved;
	m->invalid_utf8 += b->mc.invalid_utf8;
	m->level_normalized += b->mc.level_normalized;
	m->coerced += b->mc.coerced;
	m->truncated += b->mc.truncated;
	m->origin_renamed += b->mc.origin_renamed;
	m->duplicate_keys += b->mc.duplicate_keys;
	if (b->skipped) {
		d->st.dropped[DROP_SPOOL_ERROR] += b->skipped;
		log_warn("%u records of a batch no longer decode (corrupt spool entry?): dropped", b->skipped);
	}
	if (status == 0 && b->encode_err == -EMSGSIZE) {
		struct batch *b2 = queue_split(d, b);
		if (b2) {
			log_debug("batch of %u records is too large once encoded: split in two", b->nrec + b2->nrec);
			batch_encode(d, b);
			batch_encode(d, b2);
			return;
		}
	}
	if (status != 0 || b->encode_err) {
		log_error("cannot encode a batch of %u records (%s): dropped", b->nrec,
			  status ? uv_strerror(status) : strerror(-b->encode_err));
		d->st.dropped[DROP_REJECTED] += b->nrec;
		batch_free(d, b);
		agentd_maybe_exit(d);
		return;
	}
	b->state = B_READY;
	if (d->draining_done) {
		/* the shutdown deadline passed while it was in a worker */
		spoolq_shutdown(d, b);
		agentd_maybe_exit(d);
		return;
	}
	upload_kick(d);
}

void queue_ingest_done(struct agentd *d)
{
	if (d->cfg.spool.mode == SPOOL_ALWAYS && d->q.open)
		spoolq_ingest_flush(d);
}

void queue_seal(struct agentd *d)
{
	struct batch *b = d->q.open;
	if (!b)
		return;
	d->q.open = NULL;
	uv_timer_stop(&d->q.timer);
	if (b->nrec == 0) {
		batch_free(d, b);
		return;
	}
	if (spoolq_sealed(d, b))
		return;
	b->state = B_SEALED;
	queue_pump(d);
}

/*
 * Encoded bodies wait in memory until an upload slot is free. To bound that
 * memory (the [queue] bound counts raw records only), a sealed batch is
 * encoded only while fewer than max_inflight + 2 batches are encoding or
 * ready.
 */
void queue_pump(struct agentd *d)
{
	unsigned ahead = d->q.encoding, limit = d->cfg.upstream.max_inflight + 2;
	for (struct batch *b = d->q.head; b && ahead < limit; b = b->next)
		ahead += b->state == B_READY;
	for (struct batch *b = d->q.head; b && ahead < limit; b = b->next)
		if (b->state == B_SEALED) {
			batch_encode(d, b);
			ahead++;
		}
}

static void on_interval(uv_timer_t *t)
{
	queue_seal(t->data);
}

void queue_add_batch(struct agentd *d, struct batch *b)
{
	link_tail(d, b);
	d->q.records += b->nrec;
	d->q.bytes += b->raw.len;
	b->state = B_SEALED;
	queue_pump(d);
}

/* Make room for one record of size sz. Returns 0, or -ENOBUFS. */
static int make_room(struct agentd *d, size_t sz)
{
	const struct config *c = &d->cfg;
	while (d->q.records + 1 > c->queue.max_records || d->q.bytes + sz > c->queue.max_bytes) {
		struct batch *victim = NULL;
		for (struct batch *b = d->q.head; b; b = b->next)
			if (b->state == B_SEALED || b->state == B_READY || b->state == B_WAITING) {
				victim = b;
				break;
			}
		if (!victim && d->q.open && d->q.open->nrec) {
			/* everything else is in a worker or in flight: the open
			 * batch goes to the spool, if one takes it */
			struct batch *open = d->q.open;
			if (!spoolq_take_open(d, open))
				return -ENOBUFS;
			continue;
		}
		if (!victim)
			return -ENOBUFS;
		spoolq_overflow(d, victim);
	}
	return 0;
}

int queue_push(struct agentd *d, const struct origin *o, const void *frame, uint32_t len)
{
	const struct config *c = &d->cfg;
	size_t sz = rec_size(len);
	if (make_room(d, sz)) {
		d->st.dropped[DROP_QUEUE_FULL]++;
		spoolq_note_drop(d);
		return -ENOBUFS;
	}
	struct batch *b = d->q.open;
	if (!b) {
		b = batch_new(d);
		if (!b) {
			d->st.dropped[DROP_QUEUE_FULL]++;
			return -ENOBUFS;
		}
		link_tail(d, b);
		d->q.open = b;
		uv_timer_start(&d->q.timer, on_interval, c->batch.interval_ms, 0);
	}
	/* a batch's first block holds many records: fewer reallocations */
	size_t want = sz;
	if (!b->raw.cap && want < 64 * 1024 && b->raw.max >= 64 * 1024)
		want = 64 * 1024;
	if (buf_reserve(&b->raw, want)) {
		d->st.dropped[DROP_QUEUE_FULL]++;
		return -ENOBUFS;
	}
	struct rec_hdr *h = (struct rec_hdr *)(b->raw.data + b->raw.len);
	h->len = len;
	h->flags = 0;
	h->origin = *o;
	memcpy(h + 1, frame, len);
	size_t pad = sz - sizeof *h - len;
	if (pad)
		memset((char *)(h + 1) + len, 0, pad);
	b->raw.len += sz;
	b->nrec++;
	b->est_json += len + JSON_OVERHEAD;
	d->q.records++;
	d->q.bytes += sz;
	if (b->nrec >= c->batch.max_records || b->est_json >= c->batch.max_bytes)
		queue_seal(d);
	return 0;
}

void queue_close(struct agentd *d)
{
	uv_close((uv_handle_t *)&d->q.timer, NULL);
	while (d->q.head)
		batch_free(d, d->q.head);
}
