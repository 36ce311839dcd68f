/*
 * frames: the stream socket's framing (proto/PROTOCOL.md): a u32
 * little-endian length, then that many bytes of one frame; repeated.
 *
 * Owns: nothing; a pure function over a caller's buffer (no I/O, no
 * allocation), shared by ingest and the fuzzer. Limits: a length prefix of 0
 * or above max is a framing error, after which the connection cannot
 * resynchronise. Failure: frames_parse stops at the bad prefix and says how
 * far it got; the frames before it have been handed over already.
 */
#ifndef AGENTD_FRAMES_H
#define AGENTD_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#define FRAMES_PREFIX 4 /* bytes of the length prefix */

/* Called once per whole frame, in order; frame points into the buffer. */
typedef void (*frames_cb)(void *ctx, const uint8_t *frame, size_t len);

/*
 * Hand every whole frame in buf[0, len) to cb. *consumed is set to the bytes
 * taken (whole prefix-and-frame units); what follows is an incomplete unit
 * the caller keeps for the next read. Returns 0, or -EPROTO when the next
 * prefix is 0 or above max: then *consumed is the offset of that prefix.
 * -EINVAL for a NULL buf with len > 0, a NULL cb or consumed, or max 0.
 * A buffer of FRAMES_PREFIX + max bytes always holds a whole frame or a bad
 * prefix, so a reader with that capacity never stalls.
 */
int frames_parse(const uint8_t *buf, size_t len, size_t max, frames_cb cb, void *ctx, size_t *consumed);

#endif
