/*
 * upload: POSTs encoded batches to the upstream with libcurl's multi
 * interface, driven by the libuv loop (CURLMOPT_SOCKETFUNCTION and
 * CURLMOPT_TIMERFUNCTION): no call here blocks the loop.
 *
 * Owns: the curl multi handle, one easy handle per request, the retry timer
 * and the upstream's state (up, retrying, down). Limits: [upstream]
 * max_inflight requests at once; one at a time while the upstream is down.
 * Failure: connection errors, timeouts, 408, 429, 5xx, 3xx, 401, 403, 404 and
 * unconfirmed 2xx answers are retried with exponential backoff and jitter
 * (Retry-After wins when the server sends it); after [retry] max_retries the
 * batch goes to the spool (spoolq_defer). A batch the server refuses as bad
 * (other 4xx), or keeps refusing with 5xx while other batches succeed, is
 * split in halves until the bad record is alone; that record is a dead letter.
 */
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "agentd.h"
#include "log.h"
#include "spoolq.h"

#define RESP_MAX 4096
#define FAILS_FOR_DOWN 3

enum up_state { UP_UP, UP_RETRYING, UP_DOWN };

struct upload {
	struct agentd *d;
	CURLM *multi;
	uv_timer_t curl_timer;
	uv_timer_t retry_timer;
	struct curl_slist *hdr_plain, *hdr_gzip;
	char *url;
	unsigned inflight;
	enum up_state state;
	unsigned fails; /* consecutive failed requests, all batches */
	uint64_t down_since_ms; /* wall clock */
	uint64_t last_success; /* loop time of the last success */
	uint64_t retry_until_ms; /* wall clock, for status */
	bool closing;
};

struct csock {
	uv_poll_t poll;
	curl_socket_t fd;
	struct upload *up;
};

struct req {
	CURL *easy;
	struct batch *b;
	struct upload *up;
	char resp[RESP_MAX];
	size_t resp_len;
	long retry_after_s; /* -1 none */
	uint64_t sent_at; /* loop time */
};

static void check_done(struct upload *up);

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- libcurl <-> libuv glue ------------------------------------------- */

static void on_poll(uv_poll_t *h, int status, int events)
{
	struct csock *cs = h->data;
	int flags = 0, running;
	if (status < 0)
		flags = CURL_CSELECT_ERR;
	if (events & UV_READABLE)
		flags |= CURL_CSELECT_IN;
	if (events & UV_WRITABLE)
		flags |= CURL_CSELECT_OUT;
	struct upload *up = cs->up;
	curl_multi_socket_action(up->multi, cs->fd, flags, &running);
	check_done(up);
}

static void free_csock(uv_handle_t *h)
{
	free(h->data);
}

static int sock_cb(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct upload *up = userp;
	struct csock *cs = socketp;
	(void)e;
	if (what == CURL_POLL_REMOVE) {
		if (cs) {
			uv_poll_stop(&cs->poll);
			uv_close((uv_handle_t *)&cs->poll, free_csock);
			curl_multi_assign(up->multi, s, NULL);
		}
		return 0;
	}
	if (!cs) {
		cs = calloc(1, sizeof *cs);
		if (!cs)
			return -1;
		cs->fd = s;
		cs->up = up;
		if (uv_poll_init_socket(up->d->loop, &cs->poll, s)) {
			free(cs);
			return -1;
		}
		cs->poll.data = cs;
		curl_multi_assign(up->multi, s, cs);
	}
	int ev = 0;
	if (what & CURL_POLL_IN)
		ev |= UV_READABLE;
	if (what & CURL_POLL_OUT)
		ev |= UV_WRITABLE;
	uv_poll_start(&cs->poll, ev, on_poll);
	return 0;
}

static void on_curl_timer(uv_timer_t *t)
{
	struct upload *up = t->data;
	int running;
	curl_multi_socket_action(up->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(up);
}

static int timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	struct upload *up = userp;
	(void)m;
	if (timeout_ms < 0)
		uv_timer_stop(&up->curl_timer);
	else
		uv_timer_start(&up->curl_timer, on_curl_timer, (uint64_t)timeout_ms, 0);
	return 0;
}

/* ---- requests ----------------------------------------------------------- */

static size_t on_body(char *p, size_t size, size_t n, void *userp)
{
	struct req *r = userp;
	size_t len = size * n, room = RESP_MAX - 1 - r->resp_len;
	if (len > room)
		len = room;
	memcpy(r->resp + r->resp_len, p, len);
	r->resp_len += len;
	r->resp[r->resp_len] = 0;
	return size * n;
}

long upload_parse_retry_after(const char *v, size_t len, time_t now)
{
	char buf[64];
	while (len && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' ' || v[len - 1] == '\t'))
		len--;
	if (len == 0 || len >= sizeof buf)
		return -1;
	memcpy(buf, v, len);
	buf[len] = 0;
	long secs;
	if (buf[0] >= '0' && buf[0] <= '9') {
		char *end;
		errno = 0;
		secs = strtol(buf, &end, 10);
		if (*end || errno)
			return errno == ERANGE ? 3600 : -1;
	} else {
		time_t t = curl_getdate(buf, &now);
		if (t < 0)
			return -1;
		secs = t > now ? (long)(t - now) : 0;
	}
	return secs > 3600 ? 3600 : secs;
}

static size_t on_header(char *p, size_t size, size_t n, void *userp)
{
	struct req *r = userp;
	size_t len = size * n;
	static const char name[] = "retry-after:";
	if (len > sizeof name - 1 && strncasecmp(p, name, sizeof name - 1) == 0)
		r->retry_after_s = upload_parse_retry_after(p + sizeof name - 1, len - (sizeof name - 1), time(NULL));
	return len;
}

static int start_request(struct upload *up, struct batch *b)
{
	struct agentd *d = up->d;
	const struct config *c = &d->cfg;
	struct req *r = calloc(1, sizeof *r);
	if (!r)
		return -ENOMEM;
	r->easy = curl_easy_init();
	if (!r->easy) {
		free(r);
		return -ENOMEM;
	}
	r->b = b;
	r->up = up;
	r->retry_after_s = -1;
	r->sent_at = now_ms(d);
	CURL *e = r->easy;
	curl_easy_setopt(e, CURLOPT_URL, up->url);
	curl_easy_setopt(e, CURLOPT_POST, 1L);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, b->body.data);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->body.len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, b->gzipped ? up->hdr_gzip : up->hdr_plain);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->upstream.timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->upstream.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->upstream.tls_verify ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->upstream.tls_verify ? 2L : 0L);
	if (c->upstream.ca_file && c->upstream.ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, c->upstream.ca_file);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(e, CURLOPT_PRIVATE, r);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "agentd/" AGENTD_VERSION);
	if (curl_multi_add_handle(up->multi, e) != CURLM_OK) {
		curl_easy_cleanup(e);
		free(r);
		return -EIO;
	}
	b->state = B_INFLIGHT;
	b->req = r;
	b->attempts++;
	up->inflight++;
	d->st.requests++;
	return 0;
}

static void free_req(struct upload *up, struct req *r)
{
	curl_multi_remove_handle(up->multi, r->easy);
	curl_easy_cleanup(r->easy);
	if (r->b)
		r->b->req = NULL;
	free(r);
	up->inflight--;
}

/* ---- outcomes ----------------------------------------------------------- */

/* The server confirms the batch: {"status":"ok","count":N} with N records. */
static bool confirmed(const struct req *r, uint32_t nrec)
{
	json_t *j = json_loadb(r->resp, r->resp_len, 0, NULL);
	if (!j)
		return false;
	json_t *count = json_object_get(j, "count");
	bool ok = json_is_integer(count) && json_integer_value(count) == (json_int_t)nrec;
	json_decref(j);
	return ok;
}

int upload_classify(long status)
{
	if (status >= 200 && status < 300)
		return UPLOAD_OK;
	if (status == 400 || status == 413 || status == 415 || status == 422)
		return UPLOAD_REJECT;
	return UPLOAD_RETRY; /* network errors (0), 3xx, 401, 403, 404, 408, 429, 5xx ... */
}

uint64_t upload_backoff_ms(const struct config *c, unsigned attempt)
{
	uint64_t ms = c->retry.initial_backoff_ms;
	for (unsigned i = 1; i < attempt && ms < c->retry.max_backoff_ms; i++)
		ms *= 2;
	if (ms > c->retry.max_backoff_ms)
		ms = c->retry.max_backoff_ms;
	/* jitter: 80% .. 120%, never past the cap */
	uint64_t span = ms * 2 / 5;
	if (span)
		ms = ms - span / 2 + (uint64_t)random() % (span + 1);
	return ms > c->retry.max_backoff_ms ? c->retry.max_backoff_ms : ms;
}

static void set_state(struct upload *up, enum up_state s)
{
	if (up->state == s)
		return;
	if (s == UP_DOWN) {
		up->down_since_ms = wall_ms();
		log_warn("upstream %s is down after %u failed requests: probing one request at a time", up->url,
			 up->fails);
	} else if (s == UP_UP && up->state == UP_DOWN) {
		log_info("upstream %s is up again", up->url);
	}
	enum up_state was = up->state;
	up->state = s;
	if (was == UP_DOWN)
		spoolq_upstream_up(up->d);
}

static void retry_later(struct upload *up, struct batch *b, const char *what, long retry_after_s)
{
	struct agentd *d = up->d;
	const struct config *c = &d->cfg;
	unsigned retries_done = b->attempts - 1;
	if (b->attempts == 1)
		b->first_fail_ms = now_ms(d);
	if (retries_done >= c->retry.max_retries && !d->stopping) {
		/* The server answers, but keeps refusing this batch: a poison record?
		 * Halve it once on suspicion; go on halving only while other batches
		 * get through, which proves the server works. A lone record refused
		 * while others get through is a dead letter. */
		bool answered = b->last_status >= 500 && b->last_status != 502 && b->last_status != 503 &&
				b->last_status != 504;
		uint64_t since = b->splits ? b->split_ms : b->first_fail_ms;
		bool others_succeed = up->last_success > since;
		if (answered && b->nrec > 1 && (b->splits == 0 || others_succeed)) {
			struct batch *b2 = queue_split(d, b);
			if (b2) {
				log_warn("upload failed (%s) %u times: splitting %u records to isolate a bad one", what,
					 b->attempts, b->nrec + b2->nrec);
				b->attempts = b2->attempts = 0;
				b->split_ms = b2->split_ms = now_ms(d);
				batch_encode(d, b);
				batch_encode(d, b2);
				return;
			}
		}
		if (answered && b->nrec == 1 && others_succeed) {
			spoolq_dead_letter(d, b, what);
			return;
		}
		if (answered && b->nrec == 1 && b->splits) {
			/* Isolated by halving, but no other batch has got through
			 * since: its sibling's answer may still be on the way. It
			 * waits in memory, where it keeps that history (the spool
			 * would not), and is judged again after another round. */
			log_debug("a lone refused record waits for its sibling's answer");
			b->attempts = 0;
			b->state = B_WAITING;
			b->not_before = now_ms(d) + c->retry.max_backoff_ms;
			return;
		}
		log_warn("upload failed (%s), %u retries exhausted: keeping %u records for later", what,
			 c->retry.max_retries, b->nrec);
		spoolq_defer(d, b, what);
		return;
	}
	unsigned exp = up->state == UP_DOWN && up->fails > b->attempts ? up->fails : b->attempts;
	uint64_t delay = retry_after_s >= 0 ? (uint64_t)retry_after_s * 1000 : upload_backoff_ms(c, exp);
	if (d->stopping && delay > 200)
		delay = 200; /* a retry past the deadline is useless: try again soon */
	d->st.retries++;
	b->state = B_WAITING;
	b->not_before = now_ms(d) + delay;
	up->retry_until_ms = wall_ms() + delay;
	if (d->stopping)
		log_warn("upload failed (%s), shutting down: retry in %.1f s until the deadline", what,
			 (double)delay / 1000.0);
	else
		log_warn("upload failed (%s), retry %u/%u in %.1f s", what, retries_done + 1, c->retry.max_retries,
			 (double)delay / 1000.0);
	if (up->state == UP_UP)
		set_state(up, UP_RETRYING);
}

static void split_rejected(struct upload *up, struct batch *b, const char *what)
{
	struct agentd *d = up->d;
	struct batch *b2 = queue_split(d, b);
	if (!b2) {
		if (b->nrec == 1)
			spoolq_dead_letter(d, b, what);
		else
			spoolq_defer(d, b, what);
		return;
	}
	log_warn("server refused a batch (%s): splitting %u records to isolate the bad one", what, b->nrec + b2->nrec);
	b->attempts = b2->attempts = 0;
	batch_encode(d, b);
	batch_encode(d, b2);
}

static void done(struct upload *up, struct req *r, CURLcode res)
{
	struct agentd *d = up->d;
	struct batch *b = r->b;
	long status = 0;
	curl_off_t total_us = 0;
	curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->easy, CURLINFO_TOTAL_TIME_T, &total_us);
	d->st.last_latency_us = (uint64_t)total_us;
	d->st.last_status = res == CURLE_OK ? status : 0;
	b->last_status = res == CURLE_OK ? status : 0;
	char what[160];
	if (res != CURLE_OK)
		snprintf(what, sizeof what, "%s", curl_easy_strerror(res));
	else
		snprintf(what, sizeof what, "HTTP %ld", status);
	/* keep the server's own words for the dead-letter file (never logged) */
	size_t n = strlen(what);
	memcpy(b->last_error, what, n + 1);
	if (res == CURLE_OK && (status < 200 || status >= 300) && r->resp_len) {
		size_t room = sizeof b->last_error - n - 3, take = r->resp_len < room ? r->resp_len : room;
		memcpy(b->last_error + n, ": ", 2);
		memcpy(b->last_error + n + 2, r->resp, take);
		b->last_error[n + 2 + take] = 0;
	}

	int o = res == CURLE_OK ? upload_classify(status) : UPLOAD_RETRY;
	uint32_t sent = b->nrec - b->skipped;
	if (o == UPLOAD_OK && !confirmed(r, sent)) {
		snprintf(what, sizeof what, "HTTP %ld without a confirmed count of %u", status, sent);
		o = UPLOAD_RETRY;
	}
	long retry_after = r->retry_after_s;
	b->req = NULL;
	r->b = NULL;
	free_req(up, r);

	switch (o) {
	case UPLOAD_OK:
		d->st.delivered += sent;
		d->st.batches++;
		d->st.bytes_json += b->json_len;
		d->st.bytes_wire += b->body.len;
		d->st.last_ok_ms = wall_ms();
		if (b->attempts > 1 && d->stopping)
			log_info("delivered %u records after %u attempts", b->nrec, b->attempts);
		up->fails = 0;
		up->last_success = now_ms(d);
		set_state(up, UP_UP);
		spoolq_delivered(d, b);
		batch_free(d, b);
		queue_pump(d);
		break;
	case UPLOAD_RETRY:
		/* unreachable, overloaded or misrouted counts towards "down"; an
		 * answered 500 may be this batch's fault and does not */
		if (res != CURLE_OK || status != 500)
			up->fails++;
		if (up->fails >= FAILS_FOR_DOWN && up->state != UP_DOWN)
			set_state(up, UP_DOWN);
		retry_later(up, b, what, retry_after);
		break;
	case UPLOAD_REJECT:
		split_rejected(up, b, what);
		break;
	}
}

static void check_done(struct upload *up)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(up->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct req *r = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
		if (r && r->b)
			done(up, r, m->data.result);
	}
	if (!up->closing) {
		upload_kick(up->d);
		agentd_maybe_exit(up->d);
	}
}

/* ---- scheduling --------------------------------------------------------- */

static void on_retry_timer(uv_timer_t *t)
{
	struct upload *up = t->data;
	upload_kick(up->d);
}

void upload_kick(struct agentd *d)
{
	struct upload *up = d->up;
	if (!up || up->closing)
		return;
	queue_pump(d);
	if (up->state == UP_DOWN && !d->stopping)
		spoolq_while_down(d);
	unsigned limit = up->state == UP_DOWN ? 1 : d->cfg.upstream.max_inflight;
	uint64_t now = now_ms(d), due = UINT64_MAX;
	for (struct batch *b = d->q.head, *next; b && up->inflight < limit; b = next) {
		next = b->next; /* b may leave memory below */
		if (b->state == B_WAITING) {
			if (b->not_before > now)
				continue;
		} else if (b->state != B_READY) {
			continue;
		}
		if (start_request(up, b)) {
			log_error("cannot start a request: will try again in 1 s");
			due = now + 1000;
			break;
		}
	}
	/* the earliest waiting batch sets the retry timer */
	for (struct batch *b = d->q.head; b; b = b->next)
		if (b->state == B_WAITING && b->not_before < due)
			due = b->not_before > now ? b->not_before : now + 1;
	if (due != UINT64_MAX)
		uv_timer_start(&up->retry_timer, on_retry_timer, due - now, 0);
	else
		uv_timer_stop(&up->retry_timer);
}

/* ---- setup -------------------------------------------------------------- */

static char *read_token(const char *path, int *err)
{
	*err = 0;
	if (!path || !path[0])
		return NULL;
	FILE *f = fopen(path, "re");
	if (!f) {
		*err = -errno;
		return NULL;
	}
	char line[4096];
	size_t n = fread(line, 1, sizeof line - 1, f);
	fclose(f);
	line[n] = 0;
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
		line[--n] = 0;
	if (n == 0 || memchr(line, '\n', n) || memchr(line, '\r', n)) {
		*err = -EINVAL;
		return NULL;
	}
	return strdup(line);
}

static int build_headers(struct upload *up)
{
	const struct config *c = &up->d->cfg;
	int err;
	char *token = read_token(c->upstream.token_file, &err);
	if (err) {
		log_error("cannot read token_file %s: %s", c->upstream.token_file,
			  err == -EINVAL ? "empty or more than one line" : strerror(-err));
		return err;
	}
	struct curl_slist *plain = NULL, *gz = NULL;
	plain = curl_slist_append(plain, "Content-Type: application/json");
	plain = curl_slist_append(plain, "Expect:");
	if (token) {
		size_t n = strlen(token) + 32;
		char *h = malloc(n);
		if (h) {
			snprintf(h, n, "Authorization: Bearer %s", token);
			plain = curl_slist_append(plain, h);
			memset(h, 0, n);
			free(h);
		}
		memset(token, 0, strlen(token));
		free(token);
	}
	for (struct curl_slist *s = plain; s; s = s->next)
		gz = curl_slist_append(gz, s->data);
	gz = curl_slist_append(gz, "Content-Encoding: gzip");
	if (!plain || !gz) {
		curl_slist_free_all(plain);
		curl_slist_free_all(gz);
		return -ENOMEM;
	}
	curl_slist_free_all(up->hdr_plain);
	curl_slist_free_all(up->hdr_gzip);
	up->hdr_plain = plain;
	up->hdr_gzip = gz;
	char *url = strdup(c->upstream.url);
	if (!url)
		return -ENOMEM;
	free(up->url);
	up->url = url;
	return 0;
}

int upload_init(struct agentd *d)
{
	struct upload *up = calloc(1, sizeof *up);
	if (!up)
		return -ENOMEM;
	up->d = d;
	up->multi = curl_multi_init();
	if (!up->multi) {
		free(up);
		return -ENOMEM;
	}
	int rc = build_headers(up);
	if (rc) {
		curl_multi_cleanup(up->multi);
		free(up);
		return rc;
	}
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(up->multi, CURLMOPT_SOCKETDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(up->multi, CURLMOPT_TIMERDATA, up);
	curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)d->cfg.upstream.max_inflight);
	uv_timer_init(d->loop, &up->curl_timer);
	uv_timer_init(d->loop, &up->retry_timer);
	up->curl_timer.data = up;
	up->retry_timer.data = up;
	srandom((unsigned)(wall_ms() ^ (uint64_t)getpid()));
	d->up = up;
	return 0;
}

int upload_reconfigure(struct agentd *d)
{
	struct upload *up = d->up;
	int rc = build_headers(up);
	curl_multi_setopt(up->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)d->cfg.upstream.max_inflight);
	upload_kick(d);
	return rc;
}

uint64_t upload_probe_delay_ms(const struct agentd *d)
{
	return d->up ? upload_backoff_ms(&d->cfg, d->up->fails) : 1000;
}

unsigned upload_inflight(const struct agentd *d)
{
	return d->up ? d->up->inflight : 0;
}

const char *upload_state_name(const struct agentd *d)
{
	static const char *const names[] = {"up", "retrying", "down"};
	return d->up ? names[d->up->state] : "none";
}

bool upload_down(const struct agentd *d)
{
	return d->up && d->up->state == UP_DOWN;
}

uint64_t upload_down_since_ms(const struct agentd *d)
{
	return d->up && d->up->state == UP_DOWN ? d->up->down_since_ms : 0;
}

uint64_t upload_retry_until_ms(const struct agentd *d)
{
	return d->up && d->up->state == UP_RETRYING ? d->up->retry_until_ms : 0;
}

void upload_abort_all(struct agentd *d)
{
	struct upload *up = d->up;
	for (struct batch *b = d->q.head; b; b = b->next) {
		if (b->state == B_INFLIGHT && b->req) {
			struct req *r = b->req;
			r->b = NULL;
			b->req = NULL;
			free_req(up, r);
			/* it may have reached the server: at-least-once */
			b->state = B_WAITING;
		}
	}
}

void upload_close(struct agentd *d)
{
	struct upload *up = d->up;
	if (!up)
		return;
	up->closing = true;
	upload_abort_all(d);
	uv_close((uv_handle_t *)&up->curl_timer, NULL);
	uv_close((uv_handle_t *)&up->retry_timer, NULL);
}

void upload_free(struct agentd *d)
{
	struct upload *up = d->up;
	if (!up)
		return;
	curl_multi_cleanup(up->multi);
	curl_slist_free_all(up->hdr_plain);
	curl_slist_free_all(up->hdr_gzip);
	free(up->url);
	free(up);
	d->up = NULL;
}
