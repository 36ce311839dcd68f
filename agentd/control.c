/*
 * control: the control socket (proto/CONTROL.md); limits and failure
 * behaviour in control.h.
 *
 * Each client reads into a fixed buffer of CONTROL_REQ_MAX + 1 bytes and
 * writes through a struct ctl_out: one uv_write at a time, while newer output
 * gathers in the queue, so a tail client costs one write per loop iteration
 * however many records pass. Memory of a client is freed in its close
 * callback, the control struct once its last handle is closed.
 */
#include "control.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "spool.h"
#include "unixsock.h"

#define FLUSH_POLL_MS 50
#define CLOSE_GRACE_MS 5000 /* a closing client that does not take its error line */
#define TOP_SENDERS 10
#define CONTROL_BACKLOG 64 /* connections waiting to be accepted */

struct control;

struct client {
	uv_pipe_t h;
	struct control *ctl;
	struct client *next, *prev;
	char in[CONTROL_REQ_MAX + 1];
	size_t inlen;
	struct ctl_out out;
	struct buf wire; /* the bytes of the write in progress */
	uv_write_t wr;
	bool writing;
	bool reading;
	bool closing; /* uv_close called */
	bool finishing; /* close once the output is written */
	bool eof; /* the peer sent everything it will send */
	bool tail; /* a tail subscriber */
	bool flushing; /* waiting for a flush to complete */
	uint64_t last_ms; /* loop time of connect or of the last reply */
	struct control_req tq; /* the tail's filters */
	uint64_t missed; /* records not queued since the last notice */
	/* flush */
	uint64_t flush_seq;
	uint64_t flush_timeout_ms; /* 0: none */
	uint64_t flush_start_ms;
	uint64_t flush_delivered, flush_spooled, flush_dropped;
};

struct control {
	struct agentd *d;
	uv_pipe_t server;
	uv_timer_t tick; /* 1 s: rate samples, idle clients */
	uv_timer_t flush; /* 50 ms while a flush waits */
	unsigned handles; /* open handles, the clients' included */
	bool closed;
	bool listening;
	char *path; /* what we bound, unlinked at close when still ours */
	dev_t dev;
	ino_t ino;
	struct client *clients;
	unsigned nclients;
	unsigned ntail;
	unsigned nflush;
	uint64_t accepted, refused, busy, tail_missed;
	struct rate_ring rates;
	struct buf line; /* the tail line being sent */
};

/* ---- small helpers ------------------------------------------------------- */

static int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof tmp)
		return -EINVAL;
	return buf_append(b, tmp, (size_t)n) ? -ENOMEM : 0;
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- request parsing ----------------------------------------------------- */

static void seterr(char *err, size_t errlen, const char *msg)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", msg);
}

int control_parse_request(const char *line, size_t len, struct control_req *req, char *err, size_t errlen)
{
	if (!line || !req)
		return -EINVAL;
	if (len > CONTROL_REQ_MAX) {
		seterr(err, errlen, "request too long");
		return -EINVAL;
	}
	json_error_t je;
	json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
	if (!j) {
		seterr(err, errlen, "request is not valid JSON");
		return -EINVAL;
	}
	int rc = -EINVAL;
	struct control_req q = {.min_level = -1};
	if (!json_is_object(j)) {
		seterr(err, errlen, "request is not a JSON object");
		goto out;
	}
	json_t *cmd = json_object_get(j, "cmd");
	if (!json_is_string(cmd)) {
		seterr(err, errlen, "request has no \"cmd\" string");
		goto out;
	}
	static const struct {
		const char *name;
		int cmd;
	} cmds[] = {
		{"status", CTL_STATUS}, {"tail", CTL_TAIL},	  {"flush", CTL_FLUSH},
		{"reload", CTL_RELOAD}, {"metrics", CTL_METRICS},
	};
	const char *c = json_string_value(cmd);
	size_t clen = json_string_length(cmd);
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strlen(cmds[i].name) == clen && memcmp(cmds[i].name, c, clen) == 0)
			q.cmd = cmds[i].cmd;
	if (!q.cmd) {
		seterr(err, errlen, "unknown command");
		goto out;
	}
	if (q.cmd == CTL_TAIL) {
		json_t *lv = json_object_get(j, "level");
		if (lv && !json_is_null(lv)) {
			if (!json_is_string(lv) ||
			    (q.min_level = ap_level_parse(json_string_value(lv), json_string_length(lv))) < 0) {
				seterr(err, errlen, "\"level\" names no level");
				goto out;
			}
		}
		json_t *sv = json_object_get(j, "service");
		if (sv && !json_is_null(sv)) {
			if (!json_is_string(sv) || json_string_length(sv) > CONTROL_SERVICE_MAX) {
				seterr(err, errlen, "\"service\" is not a string of at most 256 bytes");
				goto out;
			}
			q.has_service = true;
			q.service_len = json_string_length(sv);
			memcpy(q.service, json_string_value(sv), q.service_len);
			q.service[q.service_len] = 0;
		}
	}
	if (q.cmd == CTL_FLUSH) {
		json_t *t = json_object_get(j, "timeout_ms");
		if (t && !json_is_null(t)) {
			if (!json_is_integer(t) || json_integer_value(t) < 0 ||
			    json_integer_value(t) > 24 * 3600 * 1000) {
				seterr(err, errlen, "\"timeout_ms\" is not an integer of 0..86400000");
				goto out;
			}
			q.timeout_ms = (uint64_t)json_integer_value(t);
		}
	}
	*req = q;
	rc = 0;
out:
	json_decref(j);
	return rc;
}

/* ---- rates --------------------------------------------------------------- */

void rate_ring_push(struct rate_ring *r, uint64_t in, uint64_t out)
{
	r->in[r->head] = in;
	r->out[r->head] = out;
	r->head = (r->head + 1) % RATE_SLOTS;
	if (r->n < RATE_SLOTS)
		r->n++;
}

void rate_ring_rate(const struct rate_ring *r, unsigned secs, double *in, double *out)
{
	*in = *out = 0;
	if (r->n < 2 || secs == 0)
		return;
	unsigned span = secs < r->n - 1 ? secs : r->n - 1;
	unsigned last = (r->head + RATE_SLOTS - 1) % RATE_SLOTS;
	unsigned first = (last + RATE_SLOTS - span) % RATE_SLOTS;
	*in = (double)(r->in[last] - r->in[first]) / span;
	*out = (double)(r->out[last] - r->out[first]) / span;
}

/* ---- bounded output ------------------------------------------------------ */

void ctl_out_init(struct ctl_out *o, size_t max)
{
	buf_init(&o->next, max);
	o->inflight = 0;
	o->max = max;
}

int ctl_out_append(struct ctl_out *o, const void *p, size_t n)
{
	if (n > o->max || o->next.len + o->inflight > o->max - n)
		return -ENOBUFS;
	return buf_append(&o->next, p, n) ? -ENOBUFS : 0;
}

void ctl_out_free(struct ctl_out *o)
{
	buf_free(&o->next);
	o->inflight = 0;
}

/* ---- JSON text ----------------------------------------------------------- */

int ctl_json_escape(struct buf *b, const char *s, size_t len)
{
	size_t start = b->len;
	int fixed = 0;
	if (map_json_escape(b, s, len, &fixed)) {
		b->len = start;
		return -ENOMEM;
	}
	return 0;
}

static int put_str(struct buf *b, const char *s, size_t len)
{
	if (buf_putc(b, '"') || ctl_json_escape(b, s, len) || buf_putc(b, '"'))
		return -ENOMEM;
	return 0;
}

/* A JSON string that is always valid (invalid bytes replaced); NULL as null. */
static json_t *jstr(const char *s)
{
	if (!s)
		return json_null();
	size_t n = strlen(s);
	json_t *j = json_stringn(s, n);
	if (j)
		return j;
	char *t = malloc(n * 3 + 1);
	if (!t)
		return NULL;
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; i < n;) {
		size_t l = map_utf8_len(p + i, n - i);
		if (l) {
			memcpy(t + o, p + i, l);
			o += l;
			i += l;
		} else {
			memcpy(t + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	j = json_stringn(t, o);
	free(t);
	return j;
}

/* ---- tail records -------------------------------------------------------- */

int ctl_record_level(const ap_record_t *r)
{
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, r);
	while (ap_iter_next(&it, &f)) {
		if (f.klen != 5 || memcmp(f.key, "level", 5) != 0)
			continue;
		int lv = -1;
		if (f.type == AP_T_STRING)
			lv = ap_level_parse(f.v.s.ptr, f.v.s.len);
		else if (f.type == AP_T_INT64)
			lv = ap_level_from_syslog(f.v.i);
		if (lv >= 0)
			return lv;
	}
	return r->level;
}

/* The first string field "service", or NULL. */
static const char *record_service(const ap_record_t *r, size_t *len)
{
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, r);
	while (ap_iter_next(&it, &f)) {
		if (f.type == AP_T_STRING && f.klen == 7 && memcmp(f.key, "service", 7) == 0) {
			*len = f.v.s.len;
			return f.v.s.ptr;
		}
	}
	return NULL;
}

bool ctl_tail_match(const struct control_req *q, const ap_record_t *r)
{
	if (q->min_level >= 0 && ctl_record_level(r) < q->min_level)
		return false;
	if (q->has_service) {
		size_t len = 0;
		const char *s = record_service(r, &len);
		if (!s || len != q->service_len || memcmp(s, q->service, len) != 0)
			return false;
	}
	return true;
}

static int put_time(struct buf *b, uint64_t ns)
{
	if (!ns)
		return buf_puts(b, "null") ? -ENOMEM : 0;
	time_t sec = (time_t)(ns / 1000000000u);
	struct tm tm;
	if (!gmtime_r(&sec, &tm))
		return buf_puts(b, "null") ? -ENOMEM : 0;
	char t[40];
	size_t n = strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
	if (!n)
		return buf_puts(b, "null") ? -ENOMEM : 0;
	return buf_printf(b, "\"%s.%06uZ\"", t, (unsigned)(ns % 1000000000u / 1000u));
}

int ctl_tail_line(struct buf *b, const struct origin *o, const ap_record_t *r)
{
	size_t start = b->len;
	const char *lname = ap_level_name(ctl_record_level(r));
	size_t slen = 0;
	const char *svc = record_service(r, &slen);
	int rc = buf_puts(b, "{\"level\":\"");
	rc = rc ? rc : buf_append(b, lname ? lname : "INFO", strlen(lname ? lname : "INFO"));
	rc = rc ? rc : buf_puts(b, "\",\"time\":");
	rc = rc ? rc : put_time(b, r->time_ns);
	rc = rc ? rc : buf_puts(b, ",\"message\":");
	rc = rc ? rc : put_str(b, r->msg, r->msg_len);
	rc = rc ? rc : buf_puts(b, ",\"service\":");
	rc = rc ? rc : (svc ? put_str(b, svc, slen) : (buf_puts(b, "null") ? -ENOMEM : 0));
	if (!rc && o) {
		rc = buf_printf(b, ",\"pid\":%ld,\"uid\":%lu,\"gid\":%lu,\"process\":", (long)o->pid,
				(unsigned long)o->uid, (unsigned long)o->gid);
		rc = rc ? rc : put_str(b, o->comm, strnlen(o->comm, sizeof o->comm));
	}
	rc = rc ? rc : buf_puts(b, ",\"fields\":{");
	ap_iter_t it;
	ap_field_t f;
	ap_iter_init(&it, r);
	bool first = true;
	while (!rc && ap_iter_next(&it, &f)) {
		if (!first)
			rc = buf_putc(b, ',');
		first = false;
		rc = rc ? rc : put_str(b, f.key, f.klen);
		rc = rc ? rc : buf_putc(b, ':');
		if (rc)
			break;
		switch (f.type) {
		case AP_T_STRING:
			rc = put_str(b, f.v.s.ptr, f.v.s.len);
			break;
		case AP_T_INT64:
			rc = buf_printf(b, "%lld", (long long)f.v.i);
			break;
		case AP_T_DOUBLE:
			rc = isfinite(f.v.d) ? buf_printf(b, "%.17g", f.v.d) : (buf_puts(b, "null") ? -ENOMEM : 0);
			break;
		case AP_T_BOOL:
			rc = f.v.b ? buf_puts(b, "true") : buf_puts(b, "false");
			break;
		default:
			rc = buf_puts(b, "null");
			break;
		}
	}
	rc = rc ? rc : buf_puts(b, "}}\n");
	if (rc) {
		b->len = start;
		return -ENOMEM;
	}
	return 0;
}

/* ---- status -------------------------------------------------------------- */

static double queue_oldest_age_s(struct agentd *d)
{
	uint64_t oldest = 0;
	for (struct batch *b = d->q.head; b; b = b->next)
		if (b->nrec && (!oldest || b->first_ms < oldest))
			oldest = b->first_ms;
	uint64_t now = now_ms(d);
	return oldest && now > oldest ? (double)(now - oldest) / 1000.0 : 0.0;
}

static unsigned queue_batches(const struct agentd *d)
{
	unsigned n = 0;
	for (const struct batch *b = d->q.head; b; b = b->next)
		n++;
	return n;
}

static double spool_oldest_age_s(const struct spool_stats *ss)
{
	if (ss->oldest_ns <= 0)
		return 0;
	int64_t now = (int64_t)wall_ms() * 1000000;
	return now > ss->oldest_ns ? (double)(now - ss->oldest_ns) / 1e9 : 0;
}

static void rates_of(struct agentd *d, double r[4])
{
	r[0] = r[1] = r[2] = r[3] = 0;
	if (d->ctl) {
		rate_ring_rate(&d->ctl->rates, 10, &r[0], &r[1]);
		rate_ring_rate(&d->ctl->rates, 60, &r[2], &r[3]);
	}
}

/* Indices of the top senders by records, most first. Returns how many. */
static unsigned top_senders(const struct stats *s, unsigned idx[TOP_SENDERS])
{
	unsigned n = 0;
	for (unsigned i = 0; i < s->nsenders && i < SENDERS_MAX; i++) {
		unsigned pos = n;
		while (pos > 0 && s->senders[idx[pos - 1]].records < s->senders[i].records) {
			if (pos < TOP_SENDERS)
				idx[pos] = idx[pos - 1];
			pos--;
		}
		if (pos < TOP_SENDERS) {
			idx[pos] = i;
			if (n < TOP_SENDERS)
				n++;
		}
	}
	return n;
}

static const char *const map_names[] = {"moved",     "invalid_utf8",   "level_normalized", "coerced",
					"truncated", "origin_renamed", "duplicate_keys"};

static void map_values(const struct map_counts *m, uint64_t v[7])
{
	v[0] = m->moved;
	v[1] = m->invalid_utf8;
	v[2] = m->level_normalized;
	v[3] = m->coerced;
	v[4] = m->truncated;
	v[5] = m->origin_renamed;
	v[6] = m->duplicate_keys;
}

#define JU(x) json_integer((json_int_t)(x))

json_t *control_status(struct agentd *d)
{
	const struct stats *s = &d->st;
	struct control *ctl = d->ctl;
	json_t *j = json_object();
	if (!j)
		return NULL;
	uint64_t now = wall_ms();
	json_object_set_new(j, "version", json_string(AGENTD_VERSION));
	json_object_set_new(j, "pid", JU(getpid()));
	json_object_set_new(j, "host", jstr(d->host));
	json_object_set_new(j, "uptime_s", JU(now > d->start_ms ? (now - d->start_ms) / 1000 : 0));
	json_object_set_new(j, "config", jstr(d->cfg.path));
	json_object_set_new(j, "stopping", json_boolean(d->stopping));
	json_object_set_new(j, "received", JU(s->received));
	json_object_set_new(j, "delivered", JU(s->delivered));
	json_object_set_new(j, "batches", JU(s->batches));
	json_object_set_new(j, "requests", JU(s->requests));
	json_object_set_new(j, "retries", JU(s->retries));
	json_object_set_new(j, "spooled", JU(s->spooled));
	json_object_set_new(j, "replayed", JU(s->replayed));
	json_object_set_new(j, "dead_letters", JU(s->dead_letters));
	json_object_set_new(j, "shim_dropped", JU(s->shim_dropped));
	json_object_set_new(j, "bytes_json", JU(s->bytes_json));
	json_object_set_new(j, "bytes_wire", JU(s->bytes_wire));

	json_t *dr = json_object(), *dby = json_object();
	for (int i = 0; i < DROP_NREASONS; i++)
		json_object_set_new(dby, stats_drop_name(i), JU(s->dropped[i]));
	json_object_set_new(dr, "total", JU(stats_dropped_total(s)));
	json_object_set_new(dr, "by_reason", dby);
	json_object_set_new(j, "dropped", dr);

	json_t *ml = json_object(), *mby = json_object();
	for (int i = 1; i < MAL_NREASONS; i++)
		json_object_set_new(mby, stats_malformed_name(i), JU(s->malformed[i]));
	json_object_set_new(ml, "total", JU(stats_malformed_total(s)));
	json_object_set_new(ml, "by_reason", mby);
	json_object_set_new(j, "malformed", ml);

	json_object_set_new(j, "queued",
			    json_pack("{s:I,s:I,s:I,s:f}", "records", (json_int_t)d->q.records, "bytes",
				      (json_int_t)d->q.bytes, "batches", (json_int_t)queue_batches(d), "oldest_age_s",
				      queue_oldest_age_s(d)));

	json_t *up = json_object();
	const char *state = upload_state_name(d);
	json_object_set_new(up, "url", jstr(d->cfg.upstream.url));
	json_object_set_new(up, "state", json_string(state));
	uint64_t since = upload_down_since_ms(d), until = upload_retry_until_ms(d);
	json_object_set_new(up, "down_since", since ? json_real((double)since / 1000.0) : json_null());
	json_object_set_new(up, "retry_until", until ? json_real((double)until / 1000.0) : json_null());
	json_object_set_new(up, "last_status", s->last_status ? JU(s->last_status) : json_null());
	json_object_set_new(up, "last_latency_ms",
			    s->requests ? json_real((double)s->last_latency_us / 1000.0) : json_null());
	json_object_set_new(up, "last_ok", s->last_ok_ms ? json_real((double)s->last_ok_ms / 1000.0) : json_null());
	json_object_set_new(up, "inflight", JU(upload_inflight(d)));
	json_object_set_new(j, "upstream", up);

	if (d->spool) {
		struct spool_stats ss;
		memset(&ss, 0, sizeof ss);
		spool_stats(d->spool, &ss);
		json_t *sp = json_object();
		json_object_set_new(sp, "dir", jstr(d->cfg.spool.dir));
		json_object_set_new(sp, "bytes", JU(ss.bytes));
		json_object_set_new(sp, "max_bytes", JU(d->cfg.spool.max_bytes));
		json_object_set_new(sp, "segments", JU(ss.segments));
		json_object_set_new(sp, "entries", JU(ss.entries));
		json_object_set_new(sp, "records", JU(ss.records));
		json_object_set_new(sp, "oldest_age_s", json_real(spool_oldest_age_s(&ss)));
		json_object_set_new(sp, "dead_letters", JU(ss.dead_letters));
		json_object_set_new(sp, "dropped_records", JU(ss.dropped_records));
		json_object_set_new(sp, "write_errors", JU(ss.write_errors));
		json_object_set_new(j, "spool", sp);
	} else {
		json_object_set_new(j, "spool", json_null());
	}

	double r[4];
	rates_of(d, r);
	json_object_set_new(
		j, "rates",
		json_pack("{s:f,s:f,s:f,s:f}", "in_10s", r[0], "out_10s", r[1], "in_1m", r[2], "out_1m", r[3]));

	json_t *mp = json_object();
	uint64_t mv[7];
	map_values(&s->mapped, mv);
	for (int i = 0; i < 7; i++)
		json_object_set_new(mp, map_names[i], JU(mv[i]));
	json_object_set_new(j, "mapped", mp);

	json_t *snd = json_array();
	unsigned idx[TOP_SENDERS];
	unsigned n = top_senders(s, idx);
	for (unsigned i = 0; i < n; i++) {
		const struct sender *e = &s->senders[idx[i]];
		char comm[sizeof e->comm + 1];
		memcpy(comm, e->comm, sizeof e->comm);
		comm[sizeof e->comm] = 0;
		json_t *o = json_object();
		json_object_set_new(o, "pid", JU(e->pid));
		json_object_set_new(o, "process", jstr(comm));
		json_object_set_new(o, "uid", JU(e->uid));
		json_object_set_new(o, "records", JU(e->records));
		json_object_set_new(o, "drops", JU(e->drops));
		json_array_append_new(snd, o);
	}
	json_object_set_new(j, "senders", snd);

	json_t *c = json_object();
	json_object_set_new(c, "socket", jstr(d->cfg.control.socket));
	json_object_set_new(c, "clients", JU(ctl ? ctl->nclients : 0));
	json_object_set_new(c, "max_clients", JU(d->cfg.control.max_clients));
	json_object_set_new(c, "tail_clients", JU(ctl ? ctl->ntail : 0));
	json_object_set_new(c, "refused", JU(ctl ? ctl->refused : 0));
	json_object_set_new(c, "busy", JU(ctl ? ctl->busy : 0));
	json_object_set_new(c, "tail_missed", JU(ctl ? ctl->tail_missed : 0));
	json_object_set_new(j, "control", c);
	return j;
}

/* ---- metrics ------------------------------------------------------------- */

static int prom_head(struct buf *b, const char *name, const char *type, const char *help)
{
	return buf_printf(b, "# HELP agentd_%s %s\n# TYPE agentd_%s %s\n", name, help, name, type);
}

static int prom_u(struct buf *b, const char *name, uint64_t v)
{
	return buf_printf(b, "agentd_%s %llu\n", name, (unsigned long long)v);
}

static int prom_f(struct buf *b, const char *name, double v)
{
	return buf_printf(b, "agentd_%s %.6g\n", name, v);
}

/* name{label="value"} v, the value escaped as the text format says. */
static int prom_lu(struct buf *b, const char *name, const char *label, const char *value, uint64_t v)
{
	int rc = buf_printf(b, "agentd_%s{%s=\"", name, label);
	for (const char *p = value; !rc && *p; p++) {
		if (*p == '\\' || *p == '"')
			rc = buf_putc(b, '\\') || buf_putc(b, *p) ? -ENOMEM : 0;
		else if (*p == '\n')
			rc = buf_puts(b, "\\n") ? -ENOMEM : 0;
		else
			rc = buf_putc(b, *p) ? -ENOMEM : 0;
	}
	return rc ? rc : buf_printf(b, "\"} %llu\n", (unsigned long long)v);
}

#define PC(name, help, val)                                                                                            \
	do {                                                                                                           \
		rc = rc ? rc : prom_head(b, name, "counter", help);                                                    \
		rc = rc ? rc : prom_u(b, name, val);                                                                   \
	} while (0)
#define PG(name, help, val)                                                                                            \
	do {                                                                                                           \
		rc = rc ? rc : prom_head(b, name, "gauge", help);                                                      \
		rc = rc ? rc : prom_f(b, name, (double)(val));                                                         \
	} while (0)

int control_metrics(struct agentd *d, struct buf *b)
{
	const struct stats *s = &d->st;
	struct control *ctl = d->ctl;
	size_t start = b->len;
	int rc = 0;
	uint64_t now = wall_ms();

	rc = prom_head(b, "build_info", "gauge", "agentd's version (always 1).");
	rc = rc ? rc : prom_lu(b, "build_info", "version", AGENTD_VERSION, 1);
	PG("uptime_seconds", "Seconds since agentd started.", now > d->start_ms ? (now - d->start_ms) / 1000 : 0);
	PC("received_records_total", "Records accepted from the ingest sockets.", s->received);
	PC("delivered_records_total", "Records the upstream confirmed.", s->delivered);
	rc = rc ? rc : prom_head(b, "dropped_records_total", "counter", "Records dropped, by reason.");
	for (int i = 0; i < DROP_NREASONS; i++)
		rc = rc ? rc : prom_lu(b, "dropped_records_total", "reason", stats_drop_name(i), s->dropped[i]);
	rc = rc ? rc : prom_head(b, "malformed_records_total", "counter", "Malformed input skipped, by reason.");
	for (int i = 1; i < MAL_NREASONS; i++)
		rc = rc ? rc
			: prom_lu(b, "malformed_records_total", "reason", stats_malformed_name(i), s->malformed[i]);
	rc = rc ? rc : prom_head(b, "mapped_values_total", "counter", "Values the mapping changed, by kind.");
	uint64_t mv[7];
	map_values(&s->mapped, mv);
	for (int i = 0; i < 7; i++)
		rc = rc ? rc : prom_lu(b, "mapped_values_total", "change", map_names[i], mv[i]);
	PC("spooled_records_total", "Records written to the spool.", s->spooled);
	PC("replayed_records_total", "Records replayed from the spool and delivered.", s->replayed);
	PC("dead_letters_total", "Records the upstream refused for good, set aside.", s->dead_letters);
	PC("shim_dropped_records_total", "Records the shims reported dropping before sending.", s->shim_dropped);
	PC("requests_total", "Requests sent to the upstream.", s->requests);
	PC("retries_total", "Requests retried.", s->retries);
	PC("batches_delivered_total", "Requests that succeeded.", s->batches);
	PC("body_json_bytes_total", "Request bodies before compression, bytes.", s->bytes_json);
	PC("body_wire_bytes_total", "Request bodies as sent, bytes.", s->bytes_wire);

	PG("queue_records", "Records in memory.", d->q.records);
	PG("queue_bytes", "Bytes of records in memory.", d->q.bytes);
	PG("queue_batches", "Batches in memory.", queue_batches(d));
	PG("queue_oldest_age_seconds", "Age of the oldest record in memory.", queue_oldest_age_s(d));

	const char *state = upload_state_name(d);
	PG("upstream_up", "1 when the upstream is up.", strcmp(state, "up") == 0);
	rc = rc ? rc : prom_head(b, "upstream_state", "gauge", "The upstream's state (1 for the current one).");
	static const char *const states[] = {"up", "retrying", "down"};
	for (int i = 0; i < 3; i++)
		rc = rc ? rc : prom_lu(b, "upstream_state", "state", states[i], strcmp(state, states[i]) == 0);
	PG("upstream_inflight_requests", "Requests under way.", upload_inflight(d));
	PG("upstream_last_status", "HTTP status of the last request, 0 when none.", s->last_status);
	PG("upstream_last_latency_seconds", "Duration of the last request.", (double)s->last_latency_us / 1e6);
	PG("upstream_last_success_timestamp_seconds", "Wall-clock time of the last success, 0 when none.",
	   (double)s->last_ok_ms / 1000.0);

	PG("spool_enabled", "1 when a spool is configured.", d->spool != NULL);
	if (d->spool) {
		struct spool_stats ss;
		memset(&ss, 0, sizeof ss);
		spool_stats(d->spool, &ss);
		PG("spool_bytes", "Bytes of spool segments on disk.", ss.bytes);
		PG("spool_segments", "Spool segments on disk.", ss.segments);
		PG("spool_entries", "Spool entries not yet delivered.", ss.entries);
		PG("spool_records", "Records in those entries.", ss.records);
		PG("spool_oldest_age_seconds", "Age of the oldest undelivered spool entry.", spool_oldest_age_s(&ss));
		PC("spool_dead_letters_total", "Dead letters written.", ss.dead_letters);
		PC("spool_write_errors_total", "Failed spool writes and syncs.", ss.write_errors);
	}

	double r[4];
	rates_of(d, r);
	rc = rc ? rc : prom_head(b, "rate_records_per_second", "gauge", "Records per second, by direction and window.");
	rc = rc ? rc : buf_printf(b, "agentd_rate_records_per_second{direction=\"in\",window=\"10s\"} %.6g\n", r[0]);
	rc = rc ? rc : buf_printf(b, "agentd_rate_records_per_second{direction=\"out\",window=\"10s\"} %.6g\n", r[1]);
	rc = rc ? rc : buf_printf(b, "agentd_rate_records_per_second{direction=\"in\",window=\"1m\"} %.6g\n", r[2]);
	rc = rc ? rc : buf_printf(b, "agentd_rate_records_per_second{direction=\"out\",window=\"1m\"} %.6g\n", r[3]);

	PG("control_clients", "Control socket clients connected.", ctl ? ctl->nclients : 0);
	PG("control_tail_clients", "Tail subscribers.", ctl ? ctl->ntail : 0);
	PC("control_refused_total", "Control clients refused for their credentials.", ctl ? ctl->refused : 0);
	PC("control_busy_total", "Control clients turned away at max_clients.", ctl ? ctl->busy : 0);
	PC("control_tail_missed_records_total", "Records a slow tail client missed.", ctl ? ctl->tail_missed : 0);
	if (rc) {
		b->len = start;
		return -ENOMEM;
	}
	return 0;
}

/* ---- clients ------------------------------------------------------------- */

static void ctl_maybe_free(struct control *ctl)
{
	if (ctl->closed && ctl->handles == 0) {
		buf_free(&ctl->line);
		free(ctl->path);
		free(ctl);
	}
}

static void on_handle_closed(uv_handle_t *h)
{
	struct control *ctl = h->data;
	ctl->handles--;
	ctl_maybe_free(ctl);
}

static void on_client_closed(uv_handle_t *h)
{
	struct client *c = h->data;
	struct control *ctl = c->ctl;
	ctl_out_free(&c->out);
	buf_free(&c->wire);
	free(c);
	ctl->handles--;
	ctl_maybe_free(ctl);
}

static void control_on_record(struct agentd *d, const struct origin *o, const ap_record_t *r);

static void update_hook(struct control *ctl)
{
	ctl->d->on_record = NULL;
	if (ctl->ntail > 0 && !ctl->closed && !ctl->d->stopping)
		ctl->d->on_record = control_on_record;
}

static void client_close(struct client *c)
{
	if (c->closing)
		return;
	struct control *ctl = c->ctl;
	c->closing = true;
	if (c->prev)
		c->prev->next = c->next;
	else
		ctl->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	ctl->nclients--;
	if (c->tail) {
		c->tail = false;
		ctl->ntail--;
		update_hook(ctl);
	}
	if (c->flushing) {
		c->flushing = false;
		ctl->nflush--;
	}
	uv_close((uv_handle_t *)&c->h, on_client_closed);
}

static void on_write(uv_write_t *req, int status);

/* Start writing what is queued, if nothing is being written. */
static void client_kick(struct client *c)
{
	if (c->writing || c->closing)
		return;
	if (c->out.next.len == 0) {
		if (c->finishing)
			client_close(c);
		return;
	}
	struct buf t = c->wire;
	c->wire = c->out.next;
	c->out.next = t;
	c->out.next.len = 0;
	c->out.inflight = c->wire.len;
	uv_buf_t ub = uv_buf_init(c->wire.data, (unsigned)c->wire.len);
	c->wr.data = c;
	int rc = uv_write(&c->wr, (uv_stream_t *)&c->h, &ub, 1, on_write);
	if (rc) {
		c->out.inflight = 0;
		client_close(c);
		return;
	}
	c->writing = true;
}

static int client_send_missed(struct client *c)
{
	char line[64];
	int n = snprintf(line, sizeof line, "{\"missed\":%llu}\n", (unsigned long long)c->missed);
	if (ctl_out_append(&c->out, line, (size_t)n))
		return -ENOBUFS;
	c->missed = 0;
	return 0;
}

static void on_write(uv_write_t *req, int status)
{
	struct client *c = req->data;
	c->writing = false;
	c->out.inflight = 0;
	c->wire.len = 0;
	if (c->wire.cap > 64 * 1024)
		buf_reset(&c->wire);
	if (c->closing)
		return;
	if (status < 0) {
		client_close(c);
		return;
	}
	if (c->tail && c->missed)
		client_send_missed(c);
	client_kick(c);
}

/* Queue a reply; a client that lets replies pile up past the bound is closed. */
static void client_reply(struct client *c, const char *p, size_t n)
{
	if (ctl_out_append(&c->out, p, n) || ctl_out_append(&c->out, "\n", 1)) {
		client_close(c);
		return;
	}
	c->last_ms = now_ms(c->ctl->d);
	client_kick(c);
}

static void client_reply_json(struct client *c, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (!s) {
		static const char oom[] = "{\"ok\":false,\"error\":\"out of memory\"}";
		client_reply(c, oom, sizeof oom - 1);
		return;
	}
	client_reply(c, s, strlen(s));
	free(s);
}

/* Say what went wrong, then close once it is written. */
static void client_fail(struct client *c, const char *msg)
{
	if (c->closing || c->finishing)
		return;
	json_t *j = json_pack("{s:b,s:s}", "ok", 0, "error", msg);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	if (s) {
		if (ctl_out_append(&c->out, s, strlen(s)) == 0)
			ctl_out_append(&c->out, "\n", 1);
		free(s);
	}
	if (c->reading) {
		uv_read_stop((uv_stream_t *)&c->h);
		c->reading = false;
	}
	c->finishing = true;
	c->last_ms = now_ms(c->ctl->d);
	client_kick(c);
}

/* Send a record to every tail client that wants it. */
static void control_on_record(struct agentd *d, const struct origin *o, const ap_record_t *r)
{
	struct control *ctl = d->ctl;
	if (!ctl)
		return;
	bool built = false;
	for (struct client *c = ctl->clients, *next; c; c = next) {
		next = c->next;
		if (!c->tail || c->finishing || !ctl_tail_match(&c->tq, r))
			continue;
		if (!built) {
			ctl->line.len = 0;
			if (ctl_tail_line(&ctl->line, o, r))
				return;
			built = true;
		}
		if (c->missed && client_send_missed(c)) {
			c->missed++;
			ctl->tail_missed++;
			continue;
		}
		if (ctl_out_append(&c->out, ctl->line.data, ctl->line.len)) {
			c->missed++;
			ctl->tail_missed++;
			continue;
		}
		client_kick(c);
	}
	if (ctl->line.cap > 64 * 1024)
		buf_reset(&ctl->line);
}

/* ---- commands ------------------------------------------------------------ */

/* Records of the flush still in memory, and whether any is being worked on. */
static uint64_t flush_pending(struct client *c, bool *busy)
{
	uint64_t n = 0;
	*busy = false;
	for (struct batch *b = c->ctl->d->q.head; b; b = b->next) {
		if (b->seq > c->flush_seq)
			continue;
		n += b->nrec ? b->nrec : 1;
		if (b->state == B_ENCODING || b->state == B_READY || b->state == B_INFLIGHT)
			*busy = true;
	}
	return n;
}

/* Answer the flush; pending records are those still queued (0: complete). */
static void flush_done(struct client *c, uint64_t pending, const char *why)
{
	struct agentd *d = c->ctl->d;
	uint64_t delivered = d->st.delivered - c->flush_delivered;
	uint64_t spooled = d->st.spooled - c->flush_spooled;
	uint64_t dropped = stats_dropped_total(&d->st) - c->flush_dropped;
	uint64_t failed = dropped + (d->cfg.spool.mode == SPOOL_ALWAYS ? 0 : spooled);
	c->flushing = false;
	c->ctl->nflush--;
	json_t *j = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:I}", "ok", failed == 0 && pending == 0, "delivered",
			      (json_int_t)delivered, "failed", (json_int_t)failed, "spooled", (json_int_t)spooled,
			      "dropped", (json_int_t)dropped, "pending", (json_int_t)pending, "waited_ms",
			      (json_int_t)(now_ms(d) - c->flush_start_ms));
	if (j && why)
		json_object_set_new(j, "error", json_string(why));
	else if (j && failed)
		json_object_set_new(j, "error", json_string("some records were not delivered (spooled or dropped)"));
	client_reply_json(c, j);
}

/* Answer when the flush is complete, cannot complete now, or timed out. */
static bool flush_check(struct client *c)
{
	bool busy;
	uint64_t pending = flush_pending(c, &busy);
	if (!pending) {
		flush_done(c, 0, NULL);
		return true;
	}
	if (!busy && strcmp(upload_state_name(c->ctl->d), "down") == 0) {
		flush_done(c, pending, "the upstream is down: records still queued, to be sent when it is back");
		return true;
	}
	if (c->flush_timeout_ms && now_ms(c->ctl->d) - c->flush_start_ms >= c->flush_timeout_ms) {
		flush_done(c, pending, "timed out with records still queued");
		return true;
	}
	return false;
}

static void client_process(struct client *c);

static void on_flush_timer(uv_timer_t *t)
{
	struct control *ctl = t->data;
	for (struct client *c = ctl->clients, *next; c; c = next) {
		next = c->next;
		if (c->flushing && flush_check(c)) {
			if (!c->closing)
				client_process(c);
		}
	}
	if (!ctl->nflush)
		uv_timer_stop(&ctl->flush);
}

static void cmd_flush(struct client *c, const struct control_req *q)
{
	struct control *ctl = c->ctl;
	struct agentd *d = ctl->d;
	c->flush_delivered = d->st.delivered;
	c->flush_spooled = d->st.spooled;
	c->flush_dropped = stats_dropped_total(&d->st);
	c->flush_start_ms = now_ms(d);
	queue_seal(d);
	c->flush_seq = d->q.next_seq;
	c->flush_timeout_ms = q->timeout_ms;
	c->flushing = true;
	ctl->nflush++;
	upload_kick(d);
	if (flush_check(c))
		return;
	if (!uv_is_active((uv_handle_t *)&ctl->flush))
		uv_timer_start(&ctl->flush, on_flush_timer, FLUSH_POLL_MS, FLUSH_POLL_MS);
}

static void cmd_reload(struct client *c)
{
	char msg[700];
	msg[0] = 0;
	int rc = agentd_reload(c->ctl->d, msg, sizeof msg);
	json_t *j = json_pack("{s:b,s:o}", "ok", rc == 0, rc ? "error" : "message", jstr(msg));
	client_reply_json(c, j);
}

static void cmd_metrics(struct client *c)
{
	struct buf b;
	buf_init(&b, CONTROL_OUT_MAX / 2);
	if (control_metrics(c->ctl->d, &b)) {
		buf_free(&b);
		client_fail(c, "out of memory");
		return;
	}
	/* the text format as one JSON string, so that replies stay one line each */
	json_t *j = json_object();
	json_object_set_new(j, "ok", json_true());
	json_object_set_new(j, "metrics", json_stringn(b.data ? b.data : "", b.len));
	buf_free(&b);
	client_reply_json(c, j);
}

static void cmd_tail(struct client *c, const struct control_req *q)
{
	struct control *ctl = c->ctl;
	if (ctl->d->stopping) {
		client_fail(c, "agentd is shutting down");
		return;
	}
	c->tq = *q;
	c->tail = true;
	c->inlen = 0;
	ctl->ntail++;
	update_hook(ctl);
	static const char ok[] = "{\"ok\":true,\"tail\":true}";
	client_reply(c, ok, sizeof ok - 1);
}

static void dispatch(struct client *c, const char *line, size_t len)
{
	struct control_req q;
	char err[128];
	if (control_parse_request(line, len, &q, err, sizeof err)) {
		client_fail(c, err);
		return;
	}
	switch (q.cmd) {
	case CTL_STATUS: {
		json_t *j = control_status(c->ctl->d);
		if (j)
			json_object_set_new(j, "ok", json_true());
		client_reply_json(c, j);
		break;
	}
	case CTL_TAIL:
		cmd_tail(c, &q);
		break;
	case CTL_FLUSH:
		cmd_flush(c, &q);
		break;
	case CTL_RELOAD:
		cmd_reload(c);
		break;
	case CTL_METRICS:
		cmd_metrics(c);
		break;
	default:
		client_fail(c, "unknown command");
		break;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *ub);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *ub);

static void client_read_start(struct client *c)
{
	if (c->reading || c->closing || c->finishing || c->eof)
		return;
	if (uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read) == 0)
		c->reading = true;
}

/* Handle the complete lines buffered, one request at a time. */
static void client_process(struct client *c)
{
	while (!c->closing && !c->finishing && !c->flushing && !c->tail) {
		char *nl = memchr(c->in, '\n', c->inlen);
		if (!nl) {
			if (c->inlen > CONTROL_REQ_MAX) {
				client_fail(c, "request too long (more than 4096 bytes before a newline)");
				return;
			}
			break;
		}
		size_t len = (size_t)(nl - c->in);
		size_t rest = c->inlen - len - 1;
		char line[CONTROL_REQ_MAX + 1];
		memcpy(line, c->in, len);
		memmove(c->in, nl + 1, rest);
		c->inlen = rest;
		if (len && line[len - 1] == '\r')
			len--;
		size_t i = 0;
		while (i < len && (line[i] == ' ' || line[i] == '\t'))
			i++;
		if (i == len)
			continue; /* blank line */
		dispatch(c, line, len);
	}
	if (c->closing || c->finishing)
		return;
	if (c->eof && !c->flushing) {
		if (c->inlen && !c->tail)
			client_fail(c, "incomplete request (no newline before the end of input)");
		else if (c->tail)
			client_close(c);
		else {
			c->finishing = true;
			client_kick(c);
		}
		return;
	}
	/* a flush waits with a full buffer: stop reading until it is answered */
	if (c->flushing && c->inlen > CONTROL_REQ_MAX && c->reading) {
		uv_read_stop((uv_stream_t *)&c->h);
		c->reading = false;
	} else if (!c->flushing) {
		client_read_start(c);
	}
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *ub)
{
	struct client *c = h->data;
	static char sink[4096]; /* a tail client's input is read and ignored */
	(void)hint;
	if (c->tail) {
		*ub = uv_buf_init(sink, sizeof sink);
		return;
	}
	size_t room = sizeof c->in - c->inlen;
	*ub = uv_buf_init(c->in + c->inlen, (unsigned)room);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *ub)
{
	struct client *c = s->data;
	(void)ub;
	if (c->closing)
		return;
	if (nread == UV_ENOBUFS) {
		/* the buffer is full and a flush is waiting */
		uv_read_stop(s);
		c->reading = false;
		return;
	}
	if (nread < 0) {
		uv_read_stop(s);
		c->reading = false;
		if (nread != UV_EOF) {
			client_close(c);
			return;
		}
		c->eof = true;
		client_process(c);
		return;
	}
	if (c->tail)
		return;
	c->inlen += (size_t)nread;
	client_process(c);
}

/* ---- accepting ----------------------------------------------------------- */

static bool peer_allowed(struct client *c)
{
	uv_os_fd_t fd;
	struct ucred cr;
	socklen_t len = sizeof cr;
	if (uv_fileno((uv_handle_t *)&c->h, &fd) || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
		return false;
	return cr.uid == 0 || cr.uid == geteuid() || cr.gid == getegid();
}

static void on_connection(uv_stream_t *server, int status)
{
	struct control *ctl = server->data;
	if (status < 0 || ctl->closed)
		return;
	struct client *c = calloc(1, sizeof *c);
	if (!c)
		return; /* the connection waits in the backlog; retried on the next event */
	c->ctl = ctl;
	ctl_out_init(&c->out, CONTROL_OUT_MAX);
	buf_init(&c->wire, CONTROL_OUT_MAX);
	uv_pipe_init(ctl->d->loop, &c->h, 0);
	c->h.data = c;
	ctl->handles++;
	c->next = ctl->clients;
	if (ctl->clients)
		ctl->clients->prev = c;
	ctl->clients = c;
	ctl->nclients++;
	c->last_ms = now_ms(ctl->d);
	if (uv_accept(server, (uv_stream_t *)&c->h)) {
		client_close(c);
		return;
	}
	ctl->accepted++;
	if (!peer_allowed(c)) {
		ctl->refused++;
		client_fail(c, "permission denied: agentctl must run as root or as agentd's user or group");
		return;
	}
	if (ctl->nclients > ctl->d->cfg.control.max_clients) {
		ctl->busy++;
		client_fail(c, "too many clients ([control] max_clients)");
		return;
	}
	client_read_start(c);
}

/* ---- timers -------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
	struct control *ctl = t->data;
	struct agentd *d = ctl->d;
	rate_ring_push(&ctl->rates, d->st.received, d->st.delivered);
	uint64_t now = now_ms(d);
	for (struct client *c = ctl->clients, *next; c; c = next) {
		next = c->next;
		if (c->finishing) {
			if (now - c->last_ms > CLOSE_GRACE_MS)
				client_close(c);
		} else if (!c->tail && !c->flushing && now - c->last_ms > CONTROL_IDLE_MS) {
			if (c->writing)
				client_close(c); /* it does not read what it asked for */
			else
				client_fail(c, "idle timeout (no complete request within 10 s)");
		}
	}
}

/* ---- init / stop / close ------------------------------------------------- */

int control_init(struct agentd *d)
{
	const char *path = d->cfg.control.socket;
	struct control *ctl = calloc(1, sizeof *ctl);
	if (!ctl)
		return -ENOMEM;
	ctl->d = d;
	buf_init(&ctl->line, CONTROL_OUT_MAX);
	d->ctl = ctl;
	uv_timer_init(d->loop, &ctl->tick);
	uv_timer_init(d->loop, &ctl->flush);
	ctl->tick.data = ctl->flush.data = ctl;
	ctl->handles = 2;
	rate_ring_push(&ctl->rates, d->st.received, d->st.delivered);
	uv_timer_start(&ctl->tick, on_tick, 1000, 1000);
	uv_unref((uv_handle_t *)&ctl->tick);
	if (!path || !path[0]) {
		log_info("control: no control socket ([control] socket is empty)");
		return 0;
	}
	int fd = unixsock_bind(SOCK_STREAM, path, d->cfg.control.socket_mode, CONTROL_BACKLOG);
	if (fd < 0) {
		log_error("cannot create the control socket %s: %s", path,
			  fd == -EADDRINUSE ? "another agentd is listening there" : strerror(-fd));
		return fd;
	}
	struct stat st;
	if (lstat(path, &st) == 0) {
		ctl->dev = st.st_dev;
		ctl->ino = st.st_ino;
	}
	ctl->path = strdup(path);
	uv_pipe_init(d->loop, &ctl->server, 0);
	ctl->server.data = ctl;
	ctl->handles++;
	ctl->listening = true;
	int rc = uv_pipe_open(&ctl->server, fd);
	if (rc)
		close(fd);
	else
		rc = uv_listen((uv_stream_t *)&ctl->server, CONTROL_BACKLOG, on_connection);
	if (rc) {
		log_error("cannot listen on the control socket %s: %s", path, uv_strerror(rc));
		return rc;
	}
	log_info("control: agentctl socket %s (mode %04o, at most %u clients)", path, d->cfg.control.socket_mode,
		 d->cfg.control.max_clients);
	return 0;
}

void control_stop_tail(struct agentd *d)
{
	struct control *ctl = d->ctl;
	if (!ctl)
		return;
	for (struct client *c = ctl->clients, *next; c; c = next) {
		next = c->next;
		if (!c->tail)
			continue;
		if (c->missed)
			client_send_missed(c);
		static const char bye[] = "{\"end\":\"agentd is shutting down\"}\n";
		ctl_out_append(&c->out, bye, sizeof bye - 1);
		c->tail = false;
		ctl->ntail--;
		if (c->reading) {
			uv_read_stop((uv_stream_t *)&c->h);
			c->reading = false;
		}
		c->finishing = true;
		c->last_ms = now_ms(d);
		client_kick(c);
	}
	update_hook(ctl);
}

void control_close(struct agentd *d)
{
	struct control *ctl = d->ctl;
	if (!ctl)
		return;
	d->ctl = NULL;
	d->on_record = NULL;
	ctl->closed = true;
	while (ctl->clients)
		client_close(ctl->clients);
	if (ctl->listening) {
		struct stat st;
		if (ctl->path && lstat(ctl->path, &st) == 0 && st.st_dev == ctl->dev && st.st_ino == ctl->ino)
			unlink(ctl->path);
		uv_close((uv_handle_t *)&ctl->server, on_handle_closed);
	}
	uv_close((uv_handle_t *)&ctl->tick, on_handle_closed);
	uv_close((uv_handle_t *)&ctl->flush, on_handle_closed);
}
