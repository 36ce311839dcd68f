#include "stats.h"

#include <stdbool.h>
#include <string.h>

const char *stats_drop_name(int reason)
{
	static const char *const names[DROP_NREASONS] = {
		"queue_full", "retries_exhausted", "rejected", "shutdown", "spool_full", "spool_error",
	};
	return reason >= 0 && reason < DROP_NREASONS ? names[reason] : "unknown";
}

const char *stats_malformed_name(int reason)
{
	switch (reason) {
	case MAL_OVERSIZED_DGRAM:
		return "oversized_datagram";
	case MAL_STREAM_FRAMING:
		return "stream_framing";
	case MAL_FDS_PASSED:
		return "fds_passed";
	case MAL_NO_CREDENTIALS:
		return "no_credentials";
	default:
		return ap_strerror(-reason);
	}
}

void stats_sender_seen(struct stats *s, const struct origin *o, uint32_t shim_drops, uint64_t now_ms)
{
	struct sender *victim = NULL;
	struct sender *last = &s->senders[s->last_sender];
	if (s->last_sender < s->nsenders && last->pid == o->pid && last->uid == o->uid) {
		last->records++; /* the common case: the same sender again */
		last->drops += shim_drops;
		last->last_seen_ms = now_ms;
		return;
	}
	for (unsigned i = 0; i < s->nsenders; i++) {
		struct sender *e = &s->senders[i];
		if (e->pid == o->pid && e->uid == o->uid) {
			e->records++;
			e->drops += shim_drops;
			e->last_seen_ms = now_ms;
			if (o->comm[0] && strcmp(e->comm, o->comm) != 0)
				memcpy(e->comm, o->comm, sizeof e->comm);
			s->last_sender = i;
			return;
		}
		if (!victim || e->records < victim->records)
			victim = e;
	}
	bool fresh = s->nsenders < SENDERS_MAX;
	if (fresh)
		victim = &s->senders[s->nsenders++];
	/* table full: the smallest sender makes room and passes its count on
	 * (space-saving top-k: counts are upper bounds) */
	uint64_t base = fresh ? 0 : victim->records;
	victim->pid = o->pid;
	victim->uid = o->uid;
	memcpy(victim->comm, o->comm, sizeof victim->comm);
	victim->records = base + 1;
	victim->drops = shim_drops;
	victim->last_seen_ms = now_ms;
	s->last_sender = (unsigned)(victim - s->senders);
}
