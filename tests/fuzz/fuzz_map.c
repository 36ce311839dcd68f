/*
 * fuzz_map: any frame the decoder accepts maps to a record the upstream
 * accepts (tests/unit/upstream_check.h), and a buffer too small for it is
 * left exactly as it was.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../unit/upstream_check.h"
#include "agent_proto.h"
#include "buf.h"
#include "map.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	ap_record_t rec;
	if (ap_decode(data, size, 0, &rec) != AP_OK)
		return 0;

	/* origin from the frame's dropped counter, so the fuzzer varies it */
	struct origin o = {.pid = (int32_t)rec.dropped, .uid = rec.dropped >> 1, .gid = 7, .comm = "fuzz\xff\xc3"};
	if (rec.dropped & 1)
		o.comm[0] = 0;
	static const char host[] = "host\xed\xa0\x80";

	struct buf out;
	struct map_counts c = {0};
	buf_init(&out, 64u << 20);
	if (map_record(&out, &rec, &o, host, sizeof host - 1, &c) != 0)
		abort();
	char err[256];
	if (upstream_check(out.data, out.len, err, sizeof err)) {
		fprintf(stderr, "fuzz_map: %s\n%.*s\n", err, (int)(out.len > 4096 ? 4096 : out.len), out.data);
		abort();
	}

	/*
	 * A cap somewhere around the size needed: -ENOMEM with the buffer
	 * untouched, or the same text. The buffer holds PRE bytes first, so
	 * that the cap stays at or above buf's initial allocation (256).
	 */
	enum { PRE = 253 };
	static const char pre[PRE];
	size_t need = out.len;
	struct buf small;
	buf_init(&small, PRE + 3 + (rec.time_ns % need));
	if (buf_append(&small, pre, PRE))
		abort();
	int rc = map_record(&small, &rec, &o, host, sizeof host - 1, NULL);
	if (small.max >= PRE + need) {
		if (rc != 0 || small.len != PRE + need || memcmp(small.data + PRE, out.data, need) != 0)
			abort();
	} else if (rc != -ENOMEM || small.len != PRE || memcmp(small.data, pre, PRE) != 0) {
		abort();
	}
	buf_free(&small);
	buf_free(&out);
	return 0;
}
