/*
 * spoolq: see spoolq.h. Without a spool every path here drops and counts.
 */
#include "spoolq.h"

#include "log.h"

static bool drop_episode;

void spoolq_sealed(struct agentd *d, struct batch *b)
{
	(void)d;
	(void)b;
}

static void drop(struct agentd *d, struct batch *b, int reason, const char *why)
{
	d->st.dropped[reason] += b->nrec;
	log_error("%s: dropped a batch of %u records (no spool)", why, b->nrec);
	batch_free(d, b);
}

void spoolq_overflow(struct agentd *d, struct batch *b)
{
	if (!drop_episode)
		log_error("memory bound reached (%zu records, %zu bytes): dropping the oldest records",
			  d->q.records, d->q.bytes);
	drop_episode = true;
	d->st.dropped[DROP_QUEUE_FULL] += b->nrec;
	batch_free(d, b);
}

void spoolq_defer(struct agentd *d, struct batch *b, const char *why)
{
	drop(d, b, DROP_RETRIES, why);
}

void spoolq_shutdown(struct agentd *d, struct batch *b)
{
	drop(d, b, DROP_SHUTDOWN, "shutdown deadline passed");
}

void spoolq_delivered(struct agentd *d, struct batch *b)
{
	(void)d;
	(void)b;
	drop_episode = false;
}

void spoolq_note_drop(struct agentd *d)
{
	if (!drop_episode)
		log_error("memory bound reached and nothing can move out of memory: dropping new records");
	drop_episode = true;
}

void spoolq_dead_letter(struct agentd *d, struct batch *b, const char *why)
{
	d->st.dead_letters += b->nrec;
	d->st.dropped[DROP_REJECTED] += b->nrec;
	log_error("server refuses a record for good (%s): dropped (no spool for dead letters)", why);
	batch_free(d, b);
}

bool spoolq_may_send_while_down(struct agentd *d, struct batch *b)
{
	(void)d;
	(void)b;
	return true;
}

int spoolq_init(struct agentd *d)
{
	(void)d;
	return 0;
}

void spoolq_start_replay(struct agentd *d)
{
	(void)d;
}

void spoolq_shutdown_begin(struct agentd *d)
{
	(void)d;
}

void spoolq_close(struct agentd *d)
{
	(void)d;
}

void spoolq_free(struct agentd *d)
{
	(void)d;
}
