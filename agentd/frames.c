/*
 * frames: length-prefixed frames on the stream socket; see frames.h.
 */
#include "frames.h"

#include <errno.h>

#include "agent_proto.h"

int frames_parse(const uint8_t *buf, size_t len, size_t max, frames_cb cb, void *ctx, size_t *consumed)
{
	if ((!buf && len) || !cb || !consumed || !max)
		return -EINVAL;
	size_t off = 0;
	int rc = 0;
	while (len - off >= FRAMES_PREFIX) {
		uint32_t flen = ap_rd32(buf + off);
		if (flen == 0 || flen > max) {
			rc = -EPROTO;
			break;
		}
		if (len - off - FRAMES_PREFIX < flen)
			break;
		cb(ctx, buf + off + FRAMES_PREFIX, flen);
		off += FRAMES_PREFIX + (size_t)flen;
	}
	*consumed = off;
	return rc;
}
