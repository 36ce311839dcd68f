/*
 * agentd: the daemon's shared state and the batch, the unit that flows
 * through the pipeline:
 *
 *   ingest ──▶ open batch ──seal──▶ encoding (worker) ──▶ ready ──▶ in flight
 *                                                          ▲           │
 *                                                          └─ waiting ◀┘ (retry)
 *
 * Everything here is owned by the loop thread. A batch being encoded belongs
 * to its worker until the after-work callback returns it.
 */
#ifndef AGENTD_AGENTD_H
#define AGENTD_AGENTD_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "buf.h"
#include "config.h"
#include "map.h"
#include "record.h"
#include "stats.h"

struct agentd;
struct spool;

struct encode_opts {
	const char *host;
	size_t host_len;
	unsigned compress_min_records; /* 0: never compress */
	int gzip_level;
	size_t max_body; /* cap of the JSON body; past it the batch is split */
};

enum batch_state {
	B_OPEN, /* taking records */
	B_SEALED, /* closed, waiting for a worker */
	B_ENCODING, /* in a worker */
	B_READY, /* encoded, waiting for an upload slot */
	B_INFLIGHT, /* a request is under way */
	B_WAITING, /* waiting for its retry time */
};

struct batch {
	struct batch *next, *prev; /* in the queue, oldest first */
	struct agentd *d;
	uint64_t seq; /* creation order, for agentctl flush */
	enum batch_state state;
	struct buf raw; /* struct rec_hdr + frame, back to back */
	uint32_t nrec; /* records in raw */
	uint32_t skipped; /* records the encoder could not decode */
	size_t est_json; /* estimated JSON size, for [batch] max_bytes */
	uint64_t first_ms; /* loop time of its first record */
	uint64_t not_before; /* loop time before which it is not retried */
	unsigned attempts; /* requests made for it so far */
	uint64_t first_fail_ms; /* loop time of its first failed attempt */
	unsigned splits; /* times it was halved to isolate a poison record */
	uint64_t split_ms; /* loop time of the last halving */
	uint64_t *spool_ids; /* spool entries it holds (replay, mode = always) */
	uint32_t nspool_ids;
	struct buf body; /* request body, gzipped or not */
	size_t json_len; /* body size before compression */
	bool gzipped;
	long last_status; /* HTTP status of the last attempt, 0 none */
	char last_error[160]; /* what the last attempt said */
	struct map_counts mc; /* what the encoder changed */
	struct encode_opts eo; /* settings when it was sealed */
	int encode_err;
	uv_work_t work;
	void *req; /* the upload's request while in flight */
};

/* The queue of batches in memory: bounded by [queue] max_records/max_bytes. */
struct queue {
	struct batch *head, *tail; /* every batch in memory, oldest first */
	struct batch *open; /* the one taking records, if any */
	size_t records; /* records in all batches */
	size_t bytes; /* raw bytes in all batches */
	unsigned encoding; /* batches in workers */
	uv_timer_t timer; /* seals the open batch after interval_ms */
	uint64_t next_seq; /* seq of the next batch */
};

struct ingest;
struct upload;
struct control;

struct agentd {
	uv_loop_t *loop;
	struct config cfg;
	struct stats st;
	char host[256];
	size_t host_len;
	struct queue q;
	struct ingest *in;
	struct upload *up;
	struct spool *spool;
	struct control *ctl;
	uint64_t start_ms; /* wall clock */
	bool stopping; /* SIGTERM seen: no new records, flush, exit */
	bool draining_done;
	uv_timer_t shutdown_timer;
	uv_signal_t sig_term, sig_int, sig_hup;
	void (*on_record)(struct agentd *d, const struct origin *o, const ap_record_t *r); /* tail hook */
	int exit_code;
};

/* queue.c */
void queue_init(struct agentd *d);
/* Take one validated record. Returns 0, or -ENOBUFS when it was dropped. */
int queue_push(struct agentd *d, const struct origin *o, const void *frame, uint32_t len);
/* The ingest sockets were read: [spool] mode = always persists what came. */
void queue_ingest_done(struct agentd *d);
/* Seal the open batch now (flush, shutdown). */
void queue_seal(struct agentd *d);
/* Put a batch (from a split or the spool) back to be encoded and sent. */
void queue_add_batch(struct agentd *d, struct batch *b);
struct batch *batch_new(struct agentd *d);
void batch_free(struct agentd *d, struct batch *b);
/* Halve b in place (poison isolation, oversize); returns the second half. */
struct batch *queue_split(struct agentd *d, struct batch *b);
/* Start encoding a sealed batch in a worker. */
/* Hand sealed batches to workers while few encoded ones are waiting. */
void queue_pump(struct agentd *d);
void batch_encode(struct agentd *d, struct batch *b);
bool queue_empty(const struct agentd *d);
void queue_close(struct agentd *d);

/* encode.c: pure, runs in a worker */
int encode_batch(struct batch *b, const struct encode_opts *o);
/* gzip (RFC 1952) of in into out, level 1..9. 0, -EINVAL, -ENOMEM or -EIO. */
int encode_gzip(struct buf *out, const void *in, size_t len, int level);
/* Free the compressors kept between batches (at exit). */
void encode_cleanup(void);

/* upload.c */
enum upload_outcome { UPLOAD_OK, UPLOAD_RETRY, UPLOAD_REJECT };
/* What an HTTP status means for a batch (0: no answer at all). */
int upload_classify(long status);
/* Delay before retry number attempt: exponential from initial_backoff_ms,
 * capped at max_backoff_ms, with 80-120% jitter. */
uint64_t upload_backoff_ms(const struct config *c, unsigned attempt);
/* A Retry-After value (delta-seconds or HTTP-date) in seconds, 0..3600, or -1. */
long upload_parse_retry_after(const char *value, size_t len, time_t now);
int upload_init(struct agentd *d);
/* A batch is ready: send it when a slot is free. */
void upload_kick(struct agentd *d);
/* Abort what is in flight (shutdown deadline); batches go back to the queue. */
void upload_abort_all(struct agentd *d);
unsigned upload_inflight(const struct agentd *d);
const char *upload_state_name(const struct agentd *d);
/* The upstream is down: every recent request failed to reach it. */
bool upload_down(const struct agentd *d);
uint64_t upload_down_since_ms(const struct agentd *d);
/* How long to wait before the next probe while the upstream is down. */
uint64_t upload_probe_delay_ms(const struct agentd *d);
uint64_t upload_retry_until_ms(const struct agentd *d);
void upload_free(struct agentd *d);
int upload_reconfigure(struct agentd *d);
void upload_close(struct agentd *d);

/* ingest.c */
int ingest_init(struct agentd *d);
/* Read what the sockets hold now, then stop reading (shutdown). */
void ingest_drain_and_stop(struct agentd *d);
void ingest_close(struct agentd *d);

/* main.c: reload the configuration file (SIGHUP, agentctl reload); msg says how it went. */
int agentd_reload(struct agentd *d, char *msg, size_t msglen);
/* main.c: called when the pipeline might have emptied during shutdown. */
void agentd_maybe_exit(struct agentd *d);

static inline uint64_t now_ms(const struct agentd *d)
{
	return uv_now(d->loop);
}

#endif
