/*
 * spoolq: where the pipeline meets the spool. Each function decides, for a
 * batch that cannot stay in memory or cannot be delivered now, whether it goes
 * to disk or, without a usable spool, is dropped and counted.
 */
#ifndef AGENTD_SPOOLQ_H
#define AGENTD_SPOOLQ_H

#include "agentd.h"

/* Open the spool ([spool] dir), recovering what a previous run left. */
int spoolq_init(struct agentd *d);
/* Start replaying what the spool holds (after READY). */
void spoolq_start_replay(struct agentd *d);
/* Shutdown began: stop replaying. */
void spoolq_shutdown_begin(struct agentd *d);
/* Make everything durable and close (handles); then free. */
void spoolq_close(struct agentd *d);
void spoolq_free(struct agentd *d);

/* A batch was sealed: with [spool] mode = always it is written to disk and
 * freed (true); otherwise false and it is encoded as usual. */
bool spoolq_sealed(struct agentd *d, struct batch *b);
/* The memory bound is reached: move b out of memory. Frees b. */
void spoolq_overflow(struct agentd *d, struct batch *b);
/* b exhausted its retries, or the upstream is down: keep it for later. Frees b. */
void spoolq_defer(struct agentd *d, struct batch *b, const char *why);
/* b is still here at the shutdown deadline. Frees b. */
void spoolq_shutdown(struct agentd *d, struct batch *b);
/* b was delivered: forget its spool entry, if any. */
void spoolq_delivered(struct agentd *d, struct batch *b);
/* b holds one record the server refuses for good: write it aside. Frees b. */
void spoolq_dead_letter(struct agentd *d, struct batch *b, const char *why);
/* The upstream is down: keep one batch as the probe, move the rest to disk. */
void spoolq_while_down(struct agentd *d);
/* b2 was split off b: it holds the same spool entries. 0 or -ENOMEM. */
int spoolq_share(struct agentd *d, struct batch *b, struct batch *b2);
/* Write the open batch to the spool and free it; false when it could not. */
bool spoolq_take_open(struct agentd *d, struct batch *b);
/* mode = always: append what ingest just read to the spool. */
void spoolq_ingest_flush(struct agentd *d);
/* The upstream answers again: resume replay. */
void spoolq_upstream_up(struct agentd *d);
/* The shutdown deadline passed: no more replay. */
void spoolq_deadline(struct agentd *d);
/* Records on disk that shutdown should still try to deliver (mode = always). */
bool spoolq_busy(const struct agentd *d);
/* A record was dropped at the memory bound: log once per episode. */
void spoolq_note_drop(struct agentd *d);

#endif
