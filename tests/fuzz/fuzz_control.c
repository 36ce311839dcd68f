/*
 * fuzz_control: feeds arbitrary bytes to the control socket's request parser
 * (control_parse_request) as one request line, and the tail-line writer with
 * whatever request came out of it. Any crash, leak or sanitizer report is a
 * bug; a parse error is a normal outcome.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "control.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* control.o reaches these in main.c, which is not in the library */
void agentd_maybe_exit(struct agentd *d)
{
	(void)d;
}

int agentd_reload(struct agentd *d, char *msg, size_t msglen)
{
	(void)d;
	(void)msg;
	(void)msglen;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct control_req q;
	char err[128];
	if (control_parse_request((const char *)data, size, &q, err, sizeof err) != 0) {
		if (!memchr(err, 0, sizeof err))
			abort(); /* the message must be a C string */
		return 0;
	}
	if (q.cmd < CTL_STATUS || q.cmd > CTL_METRICS || q.min_level >= AP_NLEVELS ||
	    q.service_len > CONTROL_SERVICE_MAX)
		abort();
	/* the input again, as a record's message and service: the JSON written must stay in bounds */
	struct buf b;
	buf_init(&b, 1024 * 1024);
	if (ctl_json_escape(&b, (const char *)data, size) == 0 && b.len < size)
		abort();
	buf_free(&b);
	return 0;
}
