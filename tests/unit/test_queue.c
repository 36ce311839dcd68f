/*
 * Unit tests for agentd/queue.c on a real libuv loop: when a batch seals
 * ([batch] max_records, max_bytes of estimated JSON, interval_ms), the memory
 * bound ([queue] max_records, max_bytes) without a spool, queue_split,
 * batch_free's bookkeeping and queue_close. There is no upload stage
 * (d->up = NULL: upload_kick does nothing) and no spool (d->spool = NULL).
 * Encoding runs in libuv's thread pool: tests run the loop, then look at what
 * the after-work callbacks did.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_proto.h"
#include "agentd.h"
#include "log.h"

#define JSON_OVERHEAD 200 /* queue.c's estimate per record */

static uv_loop_t loop;
static struct agentd d;
static bool closed;
static const struct origin org = {.pid = 4242, .uid = 1000, .gid = 100, .comm = "worker"};

/* main.c is not in libagentd.a: count what the pipeline asks of it. */
static unsigned maybe_exit_calls, reload_calls;

void agentd_maybe_exit(struct agentd *ad)
{
	(void)ad;
	maybe_exit_calls++;
}

int agentd_reload(struct agentd *ad, char *msg, size_t msglen)
{
	(void)ad;
	if (msglen)
		msg[0] = 0;
	reload_calls++;
	return 0;
}

/* ---- helpers ------------------------------------------------------------- */

static uint8_t frame[AP_MAX_FRAME];
static char msgbuf[AP_MAX_FRAME];

/* Frame of record i: message "rec-<i>" and pad filler bytes. */
static uint32_t make_frame(uint32_t i, size_t pad)
{
	int n = snprintf(msgbuf, sizeof msgbuf, "rec-%u", i);
	ck_assert_uint_lt((size_t)n + pad, sizeof msgbuf - 1024);
	memset(msgbuf + n, 'x', pad);
	ap_writer_t w;
	ck_assert_int_eq(ap_writer_init(&w, frame, sizeof frame, AP_INFO, 1, 0, msgbuf, (size_t)n + pad), 0);
	ck_assert_int_eq(ap_put_int64(&w, "seq", 3, i), 0);
	return (uint32_t)ap_writer_finish(&w);
}

/* The frame size of every record push() makes (ids below 10000). */
static uint32_t frame_len(void)
{
	return make_frame(1000, 0);
}

static int push(uint32_t i)
{
	uint32_t len = make_frame(1000 + i, 0);
	return queue_push(&d, &org, frame, len);
}

static void push_ok(uint32_t from, uint32_t n)
{
	for (uint32_t i = from; i < from + n; i++)
		ck_assert_int_eq(push(i), 0);
}

/* Run the loop until no batch is in a worker (open batches stay open). */
static void drain_workers(void)
{
	while (d.q.encoding)
		uv_run(&loop, UV_RUN_ONCE);
}

static unsigned nbatches(void)
{
	unsigned n = 0;
	for (struct batch *b = d.q.head; b; b = b->next)
		n++;
	return n;
}

static struct batch *nth(unsigned i)
{
	struct batch *b = d.q.head;
	while (b && i--)
		b = b->next;
	ck_assert_ptr_nonnull(b);
	return b;
}

/* The queue's totals are the sums over its batches, and its links agree. */
static void check_totals(void)
{
	size_t records = 0, bytes = 0;
	struct batch *prev = NULL;
	for (struct batch *b = d.q.head; b; b = b->next) {
		ck_assert_ptr_eq(b->prev, prev);
		records += b->nrec;
		bytes += b->raw.len;
		prev = b;
	}
	ck_assert_ptr_eq(d.q.tail, prev);
	ck_assert_uint_eq(d.q.records, records);
	ck_assert_uint_eq(d.q.bytes, bytes);
}

/* The id (N in "rec-N") of record k of b. */
static uint32_t rec_id(const struct batch *b, uint32_t k)
{
	size_t off = 0;
	for (uint32_t i = 0; i < k; i++)
		off += rec_size(((const struct rec_hdr *)(b->raw.data + off))->len);
	ck_assert_uint_lt(off, b->raw.len);
	const struct rec_hdr *h = (const struct rec_hdr *)(b->raw.data + off);
	ap_record_t r;
	ck_assert_int_eq(ap_decode(rec_frame(h), h->len, 0, &r), AP_OK);
	ck_assert_int_eq(memcmp(h->origin.comm, org.comm, sizeof org.comm), 0);
	ck_assert_uint_gt(r.msg_len, 4);
	ck_assert_int_eq(memcmp(r.msg, "rec-", 4), 0);
	uint32_t id = 0;
	for (uint32_t i = 4; i < r.msg_len && r.msg[i] >= '0' && r.msg[i] <= '9'; i++)
		id = id * 10 + (uint32_t)(r.msg[i] - '0');
	return id;
}

/* b holds records first, first+1, ... in order. */
static void holds_ids(const struct batch *b, uint32_t first, uint32_t n)
{
	ck_assert_uint_eq(b->nrec, n);
	for (uint32_t k = 0; k < n; k++)
		ck_assert_uint_eq(rec_id(b, k), first + k);
}

/* b is encoded: its plain body lists records first.. in order. */
static void body_holds_ids(const struct batch *b, uint32_t first, uint32_t n)
{
	ck_assert_int_eq(b->state, B_READY);
	ck_assert(!b->gzipped);
	json_error_t je;
	json_t *j = json_loadb(b->body.data, b->body.len, 0, &je);
	ck_assert_msg(j != NULL, "%s", je.text);
	json_t *logs = json_object_get(j, "logs");
	ck_assert_uint_eq(json_array_size(logs), n);
	for (uint32_t k = 0; k < n; k++) {
		char want[32];
		snprintf(want, sizeof want, "rec-%u", first + k);
		json_t *r = json_array_get(logs, k);
		ck_assert_str_eq(json_string_value(json_object_get(r, "message")), want);
	}
	json_decref(j);
}

static void setup(void)
{
	memset(&d, 0, sizeof d);
	closed = false;
	maybe_exit_calls = reload_calls = 0;
	log_set_level(LOG_ERROR_ + 1); /* quiet */
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	d.loop = &loop;
	ck_assert_int_eq(config_defaults(&d.cfg), 0);
	d.cfg.batch.max_records = 10;
	d.cfg.batch.max_bytes = 1u << 20;
	d.cfg.batch.interval_ms = 3600000; /* only tests about it lower it */
	d.cfg.batch.compress = COMPRESS_NONE;
	d.cfg.queue.max_records = 1000;
	d.cfg.queue.max_bytes = 4u << 20;
	memcpy(d.host, "box1", 5);
	d.host_len = 4;
	d.up = NULL;
	d.spool = NULL;
	queue_init(&d);
}

static void teardown(void)
{
	drain_workers();
	if (!closed)
		queue_close(&d);
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
	config_free(&d.cfg);
	ck_assert_uint_eq(reload_calls, 0);
}

/* ---- sealing ----------------------------------------------------------- */

START_TEST(queue_batch_below_max_records_stays_open)
{
	push_ok(0, 9);
	ck_assert_ptr_nonnull(d.q.open);
	ck_assert_ptr_eq(d.q.open, d.q.head);
	ck_assert_int_eq(d.q.open->state, B_OPEN);
	ck_assert_uint_eq(d.q.encoding, 0);
	ck_assert(uv_is_active((uv_handle_t *)&d.q.timer));
	holds_ids(d.q.open, 1000, 9);
	ck_assert_uint_eq(d.q.bytes, 9 * rec_size(frame_len()));
	check_totals();
	ck_assert(!queue_empty(&d));
}
END_TEST

START_TEST(queue_batch_seals_at_max_records)
{
	push_ok(0, 10);
	ck_assert_ptr_null(d.q.open);
	ck_assert_uint_eq(nbatches(), 1);
	ck_assert_int_eq(d.q.head->state, B_ENCODING);
	ck_assert_uint_eq(d.q.encoding, 1);
	ck_assert(!uv_is_active((uv_handle_t *)&d.q.timer));
	drain_workers();
	body_holds_ids(d.q.head, 1000, 10);
	ck_assert_uint_eq(d.q.records, 10);
	ck_assert_uint_eq(d.st.mapped.moved, 0);
	check_totals();
}
END_TEST

START_TEST(queue_record_past_max_records_opens_the_next_batch)
{
	push_ok(0, 11);
	ck_assert_uint_eq(nbatches(), 2);
	ck_assert_ptr_eq(d.q.open, d.q.tail);
	ck_assert_uint_lt(d.q.head->seq, d.q.tail->seq);
	holds_ids(d.q.head, 1000, 10);
	holds_ids(d.q.tail, 1010, 1);
	ck_assert_int_eq(d.q.tail->state, B_OPEN);
	ck_assert(uv_is_active((uv_handle_t *)&d.q.timer));
	drain_workers();
	body_holds_ids(d.q.head, 1000, 10);
	ck_assert_int_eq(d.q.tail->state, B_OPEN);
	check_totals();
}
END_TEST

START_TEST(queue_batch_max_records_one_seals_every_record)
{
	d.cfg.batch.max_records = 1;
	push_ok(0, 3);
	ck_assert_ptr_null(d.q.open);
	ck_assert_uint_eq(nbatches(), 3);
	drain_workers();
	for (unsigned i = 0; i < 3; i++)
		body_holds_ids(nth(i), 1000 + i, 1);
}
END_TEST

START_TEST(queue_batch_below_max_bytes_stays_open)
{
	size_t est = frame_len() + JSON_OVERHEAD;
	d.cfg.batch.max_bytes = 4 * est + 1;
	push_ok(0, 4);
	ck_assert_ptr_nonnull(d.q.open);
	ck_assert_uint_eq(d.q.open->est_json, 4 * est);
	ck_assert_int_eq(push(4), 0);
	ck_assert_ptr_null(d.q.open);
	holds_ids(d.q.head, 1000, 5);
}
END_TEST

START_TEST(queue_batch_seals_at_max_bytes_of_estimated_json)
{
	size_t est = frame_len() + JSON_OVERHEAD;
	d.cfg.batch.max_bytes = 4 * est;
	push_ok(0, 3);
	ck_assert_ptr_nonnull(d.q.open);
	ck_assert_int_eq(push(3), 0);
	ck_assert_ptr_null(d.q.open);
	ck_assert_int_eq(d.q.head->state, B_ENCODING);
	ck_assert_uint_eq(d.q.head->est_json, 4 * est);
	drain_workers();
	body_holds_ids(d.q.head, 1000, 4);
}
END_TEST

START_TEST(queue_batch_one_record_above_max_bytes_seals_alone)
{
	size_t est = frame_len() + JSON_OVERHEAD;
	d.cfg.batch.max_bytes = est - 1;
	push_ok(0, 2);
	ck_assert_ptr_null(d.q.open);
	ck_assert_uint_eq(nbatches(), 2);
	holds_ids(nth(0), 1000, 1);
	holds_ids(nth(1), 1001, 1);
}
END_TEST

START_TEST(queue_batch_seals_after_interval_ms)
{
	d.cfg.batch.interval_ms = 30;
	push_ok(0, 3);
	struct batch *b = d.q.head;
	ck_assert_int_eq(b->state, B_OPEN);
	uint64_t t0 = uv_now(&loop);
	/* the timer seals it, the worker encodes it, then the loop has nothing left */
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_ptr_eq(d.q.head, b);
	ck_assert_ptr_null(d.q.open);
	ck_assert_uint_ge(uv_now(&loop) - t0, 30);
	ck_assert_uint_eq(d.q.encoding, 0);
	body_holds_ids(b, 1000, 3);
	ck_assert(!uv_is_active((uv_handle_t *)&d.q.timer));

	/* the next record opens a new batch with its own interval */
	ck_assert_int_eq(push(3), 0);
	ck_assert_ptr_eq(d.q.open, d.q.tail);
	ck_assert(uv_is_active((uv_handle_t *)&d.q.timer));
	uv_run(&loop, UV_RUN_DEFAULT);
	ck_assert_uint_eq(nbatches(), 2);
	body_holds_ids(d.q.tail, 1003, 1);
	ck_assert_uint_eq(maybe_exit_calls, 0);
}
END_TEST

START_TEST(queue_seal_seals_the_open_batch_now)
{
	queue_seal(&d); /* nothing open: nothing happens */
	ck_assert(queue_empty(&d));
	push_ok(0, 2);
	queue_seal(&d);
	ck_assert_ptr_null(d.q.open);
	ck_assert(!uv_is_active((uv_handle_t *)&d.q.timer));
	drain_workers();
	body_holds_ids(d.q.head, 1000, 2);
}
END_TEST

/* ---- the memory bound ---------------------------------------------------- */

/* Two READY batches of 10, the queue bound at 20 + extra records. */
static void two_ready_batches(size_t extra)
{
	d.cfg.queue.max_records = 20 + extra;
	push_ok(0, 20);
	drain_workers();
	ck_assert_uint_eq(nbatches(), 2);
	ck_assert_int_eq(nth(0)->state, B_READY);
	ck_assert_int_eq(nth(1)->state, B_READY);
}

START_TEST(queue_push_below_the_bound_drops_nothing)
{
	two_ready_batches(1);
	ck_assert_int_eq(push(20), 0);
	ck_assert_uint_eq(d.q.records, 21);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 0);
	ck_assert_uint_eq(nbatches(), 3);
}
END_TEST

START_TEST(queue_push_up_to_the_bound_drops_nothing)
{
	two_ready_batches(0);
	ck_assert_uint_eq(d.q.records, 20);
	ck_assert_uint_eq(stats_dropped_total(&d.st), 0);
}
END_TEST

START_TEST(queue_push_when_full_drops_oldest)
{
	two_ready_batches(0);
	uint64_t second = nth(1)->seq;
	ck_assert_int_eq(push(20), 0);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 10);
	ck_assert_uint_eq(stats_dropped_total(&d.st), 10);
	ck_assert_uint_eq(d.q.records, 11);
	ck_assert_uint_eq(nbatches(), 2);
	ck_assert_uint_eq(d.q.head->seq, second);
	holds_ids(d.q.head, 1010, 10);
	holds_ids(d.q.open, 1020, 1);
	check_totals();
}
END_TEST

START_TEST(queue_push_when_full_drops_oldest_waiting_batch)
{
	two_ready_batches(0);
	nth(0)->state = B_WAITING;
	ck_assert_int_eq(push(20), 0);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 10);
	holds_ids(d.q.head, 1010, 10);
	check_totals();
}
END_TEST

START_TEST(queue_push_when_full_skips_batches_in_flight)
{
	two_ready_batches(0);
	nth(0)->state = B_INFLIGHT; /* its request owns it */
	ck_assert_int_eq(push(20), 0);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 10);
	ck_assert_uint_eq(nbatches(), 2);
	holds_ids(d.q.head, 1000, 10);
	ck_assert_int_eq(d.q.head->state, B_INFLIGHT);
	holds_ids(d.q.tail, 1020, 1);
	check_totals();
}
END_TEST

START_TEST(queue_push_when_nothing_can_leave_drops_the_new_record)
{
	d.cfg.queue.max_records = 5;
	push_ok(0, 5); /* limit: all in the open batch */
	ck_assert_int_eq(push(5), -ENOBUFS);
	ck_assert_int_eq(push(6), -ENOBUFS);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 2);
	ck_assert_uint_eq(d.q.records, 5);
	holds_ids(d.q.open, 1000, 5);
	check_totals();
}
END_TEST

START_TEST(queue_push_while_batches_encode_drops_the_new_record)
{
	d.cfg.batch.max_records = 5;
	d.cfg.queue.max_records = 5;
	push_ok(0, 5);
	ck_assert_int_eq(d.q.head->state, B_ENCODING);
	ck_assert_int_eq(push(5), -ENOBUFS); /* a batch in a worker cannot move */
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 1);
	drain_workers();
	ck_assert_int_eq(push(6), 0); /* now READY: it makes room */
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 1 + 5);
	holds_ids(d.q.head, 1006, 1);
	check_totals();
}
END_TEST

START_TEST(queue_byte_bound_below_the_limit_accepts)
{
	size_t sz = rec_size(frame_len());
	d.cfg.queue.max_bytes = 3 * sz + 1;
	push_ok(0, 3);
	ck_assert_uint_eq(d.q.bytes, 3 * sz);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 0);
}
END_TEST

START_TEST(queue_byte_bound_exactly_reached_accepts)
{
	size_t sz = rec_size(frame_len());
	d.cfg.queue.max_bytes = 3 * sz;
	push_ok(0, 3);
	ck_assert_uint_eq(d.q.bytes, 3 * sz);
	ck_assert_int_eq(push(3), -ENOBUFS);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 1);
	ck_assert_uint_eq(d.q.bytes, 3 * sz);
}
END_TEST

START_TEST(queue_byte_bound_one_short_drops_the_last)
{
	size_t sz = rec_size(frame_len());
	d.cfg.queue.max_bytes = 3 * sz - 1;
	push_ok(0, 2);
	ck_assert_int_eq(push(2), -ENOBUFS);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 1);
	ck_assert_uint_eq(d.q.bytes, 2 * sz);
	check_totals();
}
END_TEST

START_TEST(queue_byte_bound_drops_oldest_ready_batch)
{
	size_t sz = rec_size(frame_len());
	d.cfg.batch.max_records = 4;
	d.cfg.queue.max_bytes = 8 * sz;
	push_ok(0, 8);
	drain_workers();
	ck_assert_int_eq(push(8), 0);
	ck_assert_uint_eq(d.st.dropped[DROP_QUEUE_FULL], 4);
	ck_assert_uint_eq(d.q.bytes, 5 * sz);
	holds_ids(d.q.head, 1004, 4);
	check_totals();
}
END_TEST

/* ---- split, add, free, close ------------------------------------------- */

START_TEST(queue_split_halves_records_in_order_and_keeps_totals)
{
	d.cfg.batch.max_records = 7;
	push_ok(0, 7);
	drain_workers();
	struct batch *b = d.q.head;
	size_t records = d.q.records, bytes = d.q.bytes, raw = b->raw.len, est = b->est_json;
	struct batch *b2 = queue_split(&d, b);
	ck_assert_ptr_nonnull(b2);
	ck_assert_ptr_eq(b->next, b2);
	ck_assert_ptr_eq(d.q.tail, b2);
	holds_ids(b, 1000, 3);
	holds_ids(b2, 1003, 4);
	ck_assert_uint_eq(b->raw.len + b2->raw.len, raw);
	ck_assert_uint_eq(b->est_json + b2->est_json, est);
	ck_assert_uint_eq(d.q.records, records);
	ck_assert_uint_eq(d.q.bytes, bytes);
	ck_assert_uint_eq(b->splits, 1);
	ck_assert_uint_eq(b2->splits, 1);
	ck_assert_uint_eq(b2->seq, b->seq);
	ck_assert_uint_eq(b2->first_ms, b->first_ms);
	check_totals();
	batch_encode(&d, b);
	batch_encode(&d, b2);
	drain_workers();
	body_holds_ids(b, 1000, 3);
	body_holds_ids(b2, 1003, 4);
}
END_TEST

START_TEST(queue_split_one_two_three_records)
{
	d.cfg.batch.max_records = 1;
	push_ok(0, 1);
	d.cfg.batch.max_records = 2;
	push_ok(1, 2);
	d.cfg.batch.max_records = 3;
	push_ok(3, 3);
	drain_workers();
	ck_assert_uint_eq(nbatches(), 3);
	ck_assert_ptr_null(queue_split(&d, nth(0))); /* one record: cannot */
	ck_assert_uint_eq(nbatches(), 3);
	ck_assert_ptr_nonnull(queue_split(&d, nth(1)));
	holds_ids(nth(1), 1001, 1);
	holds_ids(nth(2), 1002, 1);
	ck_assert_ptr_nonnull(queue_split(&d, nth(3)));
	holds_ids(nth(3), 1003, 1);
	holds_ids(nth(4), 1004, 2);
	ck_assert_uint_eq(nbatches(), 5);
	check_totals();
	ck_assert_uint_eq(d.q.records, 6);
}
END_TEST

START_TEST(queue_split_in_the_middle_keeps_queue_order)
{
	d.cfg.batch.max_records = 4;
	push_ok(0, 12);
	drain_workers();
	struct batch *b2 = queue_split(&d, nth(1));
	ck_assert_ptr_nonnull(b2);
	ck_assert_uint_eq(nbatches(), 4);
	holds_ids(nth(0), 1000, 4);
	holds_ids(nth(1), 1004, 2);
	holds_ids(nth(2), 1006, 2);
	holds_ids(nth(3), 1008, 4);
	ck_assert_ptr_eq(nth(2), b2);
	check_totals();
}
END_TEST

START_TEST(batch_free_keeps_queue_totals_consistent)
{
	d.cfg.batch.max_records = 3;
	push_ok(0, 10); /* 3 + 3 + 3 sealed, 1 open */
	drain_workers();
	ck_assert_uint_eq(nbatches(), 4);
	batch_free(&d, NULL);
	batch_free(&d, nth(1));
	check_totals();
	ck_assert_uint_eq(d.q.records, 7);
	holds_ids(nth(1), 1006, 3);
	batch_free(&d, d.q.head);
	check_totals();
	batch_free(&d, d.q.open); /* the open one: no longer open */
	ck_assert_ptr_null(d.q.open);
	check_totals();
	batch_free(&d, d.q.tail);
	ck_assert(queue_empty(&d));
	ck_assert_ptr_null(d.q.tail);
	ck_assert_uint_eq(d.q.records, 0);
	ck_assert_uint_eq(d.q.bytes, 0);
	/* the next record starts over */
	ck_assert_int_eq(push(10), 0);
	holds_ids(d.q.open, 1010, 1);
	check_totals();
}
END_TEST

/* A batch made outside the batcher (as the spool's replay does). */
static struct batch *made_batch(uint32_t first, uint32_t n, size_t pad)
{
	struct batch *b = batch_new(&d);
	ck_assert_ptr_nonnull(b);
	for (uint32_t i = first; i < first + n; i++) {
		uint32_t len = make_frame(i, pad);
		size_t sz = rec_size(len);
		ck_assert_int_eq(buf_reserve(&b->raw, sz), 0);
		struct rec_hdr *h = (struct rec_hdr *)(b->raw.data + b->raw.len);
		memset(h, 0, sz);
		h->len = len;
		h->origin = org;
		memcpy(h + 1, frame, len);
		b->raw.len += sz;
		b->nrec++;
		b->est_json += len + JSON_OVERHEAD;
	}
	return b;
}

START_TEST(queue_add_batch_counts_and_encodes_it)
{
	push_ok(0, 2); /* an open batch first */
	struct batch *b = made_batch(50, 6, 0);
	queue_add_batch(&d, b);
	ck_assert_ptr_eq(d.q.tail, b);
	ck_assert_int_eq(b->state, B_ENCODING);
	ck_assert_uint_eq(d.q.records, 8);
	check_totals();
	drain_workers();
	body_holds_ids(b, 50, 6);
	ck_assert_int_eq(d.q.open->state, B_OPEN);
}
END_TEST

START_TEST(queue_batch_too_large_once_encoded_is_split)
{
	/* max_body is 2 * [batch] max_bytes + 8 frames: 12 records of ~100 KiB are past it */
	d.cfg.batch.max_bytes = 1024;
	d.cfg.queue.max_bytes = 8u << 20;
	struct batch *b = made_batch(0, 12, 100000);
	queue_add_batch(&d, b);
	drain_workers();
	ck_assert_uint_ge(nbatches(), 2);
	ck_assert_uint_eq(d.q.records, 12);
	ck_assert_uint_eq(stats_dropped_total(&d.st), 0);
	uint32_t next = 0;
	for (struct batch *x = d.q.head; x; x = x->next) {
		ck_assert_int_eq(x->state, B_READY);
		ck_assert_uint_le(x->json_len, x->eo.max_body);
		for (uint32_t k = 0; k < x->nrec; k++)
			ck_assert_uint_eq(rec_id(x, k), next++);
	}
	ck_assert_uint_eq(next, 12);
	check_totals();
}
END_TEST

START_TEST(queue_records_that_no_longer_decode_are_counted)
{
	struct batch *b = made_batch(0, 4, 0);
	struct rec_hdr *h = (struct rec_hdr *)b->raw.data;
	((uint8_t *)(h + 1))[0] ^= 0xff; /* record 0 */
	queue_add_batch(&d, b);
	drain_workers();
	ck_assert_int_eq(b->state, B_READY);
	ck_assert_uint_eq(b->skipped, 1);
	ck_assert_uint_eq(d.st.dropped[DROP_SPOOL_ERROR], 1);
	json_t *j = json_loadb(b->body.data, b->body.len, 0, NULL);
	ck_assert_uint_eq(json_array_size(json_object_get(j, "logs")), 3);
	json_decref(j);
}
END_TEST

START_TEST(queue_close_frees_every_batch)
{
	d.cfg.batch.max_records = 4;
	push_ok(0, 10); /* 2 sealed, 1 open */
	drain_workers();
	nth(0)->state = B_WAITING;
	struct batch *b2 = queue_split(&d, nth(1));
	ck_assert_ptr_nonnull(b2);
	queue_close(&d);
	closed = true;
	ck_assert(queue_empty(&d));
	ck_assert_ptr_null(d.q.open);
	ck_assert_uint_eq(d.q.records, 0);
	ck_assert_uint_eq(d.q.bytes, 0);
	uv_run(&loop, UV_RUN_DEFAULT); /* the timer's close completes */
	ck_assert(uv_is_closing((uv_handle_t *)&d.q.timer));
}
END_TEST

static Suite *queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *t = tcase_create("queue");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_set_timeout(t, 60);
	tcase_add_test(t, queue_batch_below_max_records_stays_open);
	tcase_add_test(t, queue_batch_seals_at_max_records);
	tcase_add_test(t, queue_record_past_max_records_opens_the_next_batch);
	tcase_add_test(t, queue_batch_max_records_one_seals_every_record);
	tcase_add_test(t, queue_batch_below_max_bytes_stays_open);
	tcase_add_test(t, queue_batch_seals_at_max_bytes_of_estimated_json);
	tcase_add_test(t, queue_batch_one_record_above_max_bytes_seals_alone);
	tcase_add_test(t, queue_batch_seals_after_interval_ms);
	tcase_add_test(t, queue_seal_seals_the_open_batch_now);
	tcase_add_test(t, queue_push_below_the_bound_drops_nothing);
	tcase_add_test(t, queue_push_up_to_the_bound_drops_nothing);
	tcase_add_test(t, queue_push_when_full_drops_oldest);
	tcase_add_test(t, queue_push_when_full_drops_oldest_waiting_batch);
	tcase_add_test(t, queue_push_when_full_skips_batches_in_flight);
	tcase_add_test(t, queue_push_when_nothing_can_leave_drops_the_new_record);
	tcase_add_test(t, queue_push_while_batches_encode_drops_the_new_record);
	tcase_add_test(t, queue_byte_bound_below_the_limit_accepts);
	tcase_add_test(t, queue_byte_bound_exactly_reached_accepts);
	tcase_add_test(t, queue_byte_bound_one_short_drops_the_last);
	tcase_add_test(t, queue_byte_bound_drops_oldest_ready_batch);
	tcase_add_test(t, queue_split_halves_records_in_order_and_keeps_totals);
	tcase_add_test(t, queue_split_one_two_three_records);
	tcase_add_test(t, queue_split_in_the_middle_keeps_queue_order);
	tcase_add_test(t, batch_free_keeps_queue_totals_consistent);
	tcase_add_test(t, queue_add_batch_counts_and_encodes_it);
	tcase_add_test(t, queue_batch_too_large_once_encoded_is_split);
	tcase_add_test(t, queue_records_that_no_longer_decode_are_counted);
	tcase_add_test(t, queue_close_frees_every_batch);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(queue_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
