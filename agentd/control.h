/*
 * control: the control socket that agentctl talks to (proto/CONTROL.md).
 *
 * Owns: the listening pipe at [control] socket, its clients (at most
 * [control] max_clients), a 1 s timer (rates, idle clients) and a 50 ms timer
 * (pending flushes). Limits: a request line is at most CONTROL_REQ_MAX bytes;
 * each client's unsent output is at most CONTROL_OUT_MAX bytes; a client
 * that sends no complete request for CONTROL_IDLE_MS is closed. Failure: a
 * bad request gets {"ok":false,"error":...} and the connection is closed; a
 * tail client that does not keep up loses records (counted, then told with
 * {"missed":N}); any other client that does not read its replies is closed.
 * Nothing here blocks the loop.
 */
#ifndef AGENTD_CONTROL_H
#define AGENTD_CONTROL_H

#include <jansson.h>
#include <stdbool.h>

#include "agentd.h"

#define CONTROL_REQ_MAX 4096u /* bytes of a request line, newline excluded */
#define CONTROL_OUT_MAX (1024u * 1024u) /* bytes queued for one client */
#define CONTROL_IDLE_MS 10000u /* time to send a complete request */
#define CONTROL_SERVICE_MAX 256u /* bytes of a tail service filter */

/* Bind [control] socket (none when empty). 0 or -errno. */
int control_init(struct agentd *d);
/* End every tail subscription (shutdown). */
void control_stop_tail(struct agentd *d);
void control_close(struct agentd *d);

/* ---- the parts below are exposed for the unit tests and the fuzzer ---- */

enum control_cmd { CTL_STATUS = 1, CTL_TAIL, CTL_FLUSH, CTL_RELOAD, CTL_METRICS };

struct control_req {
	int cmd; /* enum control_cmd */
	int min_level; /* tail: lowest level shown, -1 for all */
	bool has_service;
	size_t service_len;
	char service[CONTROL_SERVICE_MAX + 1];
	uint64_t timeout_ms; /* flush: answer after this long at the latest, 0: no limit */
};

/*
 * Parse one request line (without its newline) of len bytes. 0 and *req
 * filled, or -EINVAL with a message in err (not JSON, not an object, no or
 * unknown "cmd", a bad "level" or "service", a line over CONTROL_REQ_MAX).
 */
int control_parse_request(const char *line, size_t len, struct control_req *req, char *err, size_t errlen);

/* Per-second samples of the received and delivered counters, last minute. */
#define RATE_SLOTS 61
struct rate_ring {
	uint64_t in[RATE_SLOTS], out[RATE_SLOTS];
	unsigned head; /* next slot written */
	unsigned n; /* samples held, at most RATE_SLOTS */
};
void rate_ring_push(struct rate_ring *r, uint64_t in, uint64_t out);
/* Rates per second over the last secs seconds (fewer while fewer samples are
   held; 0 with fewer than two). */
void rate_ring_rate(const struct rate_ring *r, unsigned secs, double *in, double *out);

/* A client's output: what is queued (next) plus what is being written
   (inflight bytes) never passes max. */
struct ctl_out {
	struct buf next;
	size_t inflight;
	size_t max;
};
void ctl_out_init(struct ctl_out *o, size_t max);
/* Queue n bytes. 0, or -ENOBUFS when they do not fit (nothing queued). */
int ctl_out_append(struct ctl_out *o, const void *p, size_t n);
void ctl_out_free(struct ctl_out *o);

/* Append str as JSON string contents (no quotes); invalid UTF-8 and control
   bytes are escaped or replaced by U+FFFD. 0 or -ENOMEM. */
int ctl_json_escape(struct buf *b, const char *s, size_t len);
/* The effective level of a record: a "level" field that names one, else the
   header's. */
int ctl_record_level(const ap_record_t *r);
/* Append the tail line for one record (JSON object and a newline). 0 or
   -ENOMEM (b restored). */
int ctl_tail_line(struct buf *b, const struct origin *o, const ap_record_t *r);
/* Does the record pass the request's filters? */
bool ctl_tail_match(const struct control_req *q, const ap_record_t *r);

/* The status object (caller json_decref()s it); NULL when out of memory. */
json_t *control_status(struct agentd *d);
/* Append the Prometheus text exposition of d's counters. 0 or -ENOMEM. */
int control_metrics(struct agentd *d, struct buf *b);

#endif
