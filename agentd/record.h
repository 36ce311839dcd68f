/*
 * record: how agentd holds a received record between ingest and upload.
 *
 * A record is a fixed header (who sent it, as the kernel says, and its frame
 * size) followed by the frame exactly as received, padded to 8 bytes. Batches,
 * the queue and the spool store runs of these back to back, so a batch is one
 * contiguous block that can be written to disk and read back as it is.
 */
#ifndef AGENTD_RECORD_H
#define AGENTD_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "map.h"

struct rec_hdr {
	uint32_t len; /* frame bytes that follow */
	uint32_t flags;
	struct origin origin; /* pid, uid, gid, comm[16] */
};

#define REC_ALIGN 8
static inline size_t rec_size(uint32_t frame_len)
{
	return (sizeof(struct rec_hdr) + frame_len + REC_ALIGN - 1) & ~(size_t)(REC_ALIGN - 1);
}

static inline const uint8_t *rec_frame(const struct rec_hdr *h)
{
	return (const uint8_t *)(h + 1);
}

#endif
