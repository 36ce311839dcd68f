/*
 * stats: agentd's counters and gauges. Owned and written by the loop thread
 * only; workers hand their counts back with the batch they worked on. Read by
 * the control socket, the STATUS= line and the shutdown report.
 */
#ifndef AGENTD_STATS_H
#define AGENTD_STATS_H

#include <stdint.h>

#include "agent_proto.h"
#include "map.h"

enum drop_reason {
	DROP_QUEUE_FULL, /* memory bound reached and no spool to take the overflow */
	DROP_RETRIES, /* retries exhausted and no spool */
	DROP_REJECTED, /* the server refused the record for good (dead letter) */
	DROP_SHUTDOWN, /* still queued at the shutdown deadline, no spool */
	DROP_SPOOL_FULL, /* oldest spool segment dropped to make room */
	DROP_SPOOL_ERROR, /* spool unwritable (disk full) and memory full */
	DROP_NREASONS
};

/* Malformed input: the codec's classes (index -AP_E*), then agentd's own. */
enum {
	MAL_OVERSIZED_DGRAM = AP_NERRORS, /* datagram above max_record_bytes */
	MAL_STREAM_FRAMING, /* bad length prefix on the stream socket */
	MAL_FDS_PASSED, /* a datagram carried file descriptors */
	MAL_NO_CREDENTIALS, /* the kernel gave no credentials */
	MAL_NREASONS
};

/* Sender table: the top senders by pid, for agentctl status. */
#define SENDERS_MAX 64
struct sender {
	int32_t pid;
	uint32_t uid;
	char comm[16];
	uint64_t records;
	uint64_t drops; /* drops the shim reported */
	uint64_t last_seen_ms;
};

struct stats {
	uint64_t received; /* records accepted from the sockets */
	uint64_t delivered; /* records the server confirmed */
	uint64_t batches; /* requests that succeeded */
	uint64_t requests; /* requests sent */
	uint64_t retries; /* requests retried */
	uint64_t spooled; /* records written to the spool */
	uint64_t replayed; /* records read back from the spool and delivered */
	uint64_t dead_letters; /* records isolated as poison */
	uint64_t shim_dropped; /* drops reported by shims in their frames */
	uint64_t bytes_json; /* request bodies before compression */
	uint64_t bytes_wire; /* request bodies as sent */
	uint64_t dropped[DROP_NREASONS];
	uint64_t malformed[MAL_NREASONS];
	struct map_counts mapped;
	/* upstream */
	long last_status; /* last HTTP status, 0 when none */
	uint64_t last_latency_us; /* last request's duration */
	uint64_t last_ok_ms; /* wall-clock ms of the last success, 0 never */
	/* senders */
	struct sender senders[SENDERS_MAX];
	unsigned nsenders;
	unsigned last_sender; /* index of the last one seen */
};

static inline uint64_t stats_dropped_total(const struct stats *s)
{
	uint64_t n = 0;
	for (int i = 0; i < DROP_NREASONS; i++)
		n += s->dropped[i];
	return n;
}

static inline uint64_t stats_malformed_total(const struct stats *s)
{
	uint64_t n = 0;
	for (int i = 1; i < MAL_NREASONS; i++)
		n += s->malformed[i];
	return n;
}

const char *stats_drop_name(int reason);
const char *stats_malformed_name(int reason);
/* Count one record (and the drops its frame reports) for a sender. */
void stats_sender_seen(struct stats *s, const struct origin *o, uint32_t shim_drops, uint64_t now_ms);

#endif
