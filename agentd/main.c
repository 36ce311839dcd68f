/*
 * agentd: the local log agent. Reads records from applications (libagent and
 * the other shims) on Unix sockets, batches them and delivers them to the
 * log server's POST /logs; see DESIGN.md. This file wires the stages
 * together, handles signals (as libuv signal handles, never work in a raw
 * handler), reloads and the shutdown sequence, and talks to systemd.
 */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "agentd.h"
#include "control.h"
#include "listenfds.h"
#include "log.h"
#include "sdnotify.h"
#include "spoolq.h"

#define DEFAULT_CONFIG "/etc/agentd/agentd.conf"

static struct sdnotify notify;
static uv_timer_t status_timer;
static uv_timer_t watchdog_timer;
static bool finished;

static void usage(FILE *f)
{
	fprintf(f, "usage: agentd [-c FILE] [--check-config] [--version] [-h]\n"
		   "  -c, --config FILE  configuration file (default " DEFAULT_CONFIG ")\n"
		   "  --check-config     check the configuration file and exit (0 when good)\n"
		   "  --version          print the version and exit\n"
		   "  -h, --help         this help\n");
}

static uint64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Workers read d->host while they encode: it is written only when it changes. */
static void set_host(struct agentd *d)
{
	char h[sizeof d->host];
	const char *cfg = d->cfg.agentd.hostname;
	if (cfg && cfg[0])
		snprintf(h, sizeof h, "%s", cfg);
	else if (gethostname(h, sizeof h - 1) < 0)
		snprintf(h, sizeof h, "localhost");
	h[sizeof h - 1] = 0;
	if (strcmp(h, d->host) == 0)
		return;
	if (d->host[0])
		log_info("host name is now %s", h);
	memcpy(d->host, h, sizeof h);
	d->host_len = strlen(d->host);
}

static void send_status(struct agentd *d)
{
	sdnotify_sendf(&notify,
		       "STATUS=received %llu, delivered %llu, queued %zu, spooled %llu, dropped %llu; upstream %s",
		       (unsigned long long)d->st.received, (unsigned long long)d->st.delivered, d->q.records,
		       (unsigned long long)d->st.spooled, (unsigned long long)stats_dropped_total(&d->st),
		       upload_state_name(d));
}

static void on_status_timer(uv_timer_t *t)
{
	send_status(t->data);
}

static void on_watchdog_timer(uv_timer_t *t)
{
	(void)t;
	sdnotify_send(&notify, "WATCHDOG=1");
}

/* ---- shutdown ----------------------------------------------------------- */

static void close_all(struct agentd *d)
{
	if (finished)
		return;
	finished = true;
	uv_timer_stop(&d->shutdown_timer);
	ingest_close(d);
	control_close(d);
	upload_close(d);
	spoolq_close(d);
	queue_close(d);
	uv_close((uv_handle_t *)&d->shutdown_timer, NULL);
	uv_close((uv_handle_t *)&d->sig_term, NULL);
	uv_close((uv_handle_t *)&d->sig_int, NULL);
	uv_close((uv_handle_t *)&d->sig_hup, NULL);
	uv_close((uv_handle_t *)&status_timer, NULL);
	uv_close((uv_handle_t *)&watchdog_timer, NULL);
}

static void report(struct agentd *d)
{
	const struct stats *s = &d->st;
	uint64_t dropped = stats_dropped_total(s);
	log_info("stopped: received %llu, delivered %llu, spooled %llu, dropped %llu, malformed %llu",
		 (unsigned long long)s->received, (unsigned long long)s->delivered, (unsigned long long)s->spooled,
		 (unsigned long long)dropped, (unsigned long long)stats_malformed_total(s));
	for (int i = 0; i < DROP_NREASONS; i++)
		if (s->dropped[i])
			log_warn("dropped %llu records: %s", (unsigned long long)s->dropped[i], stats_drop_name(i));
}

void agentd_maybe_exit(struct agentd *d)
{
	if (!d->stopping || finished)
		return;
	if (!queue_empty(d) || d->q.encoding || upload_inflight(d) || spoolq_busy(d))
		return;
	log_info("everything delivered or persisted: exiting");
	close_all(d);
}

static void on_deadline(uv_timer_t *t)
{
	struct agentd *d = t->data;
	if (!d->draining_done && !queue_empty(d))
		log_warn("shutdown: %zu records not delivered yet: persisting them", d->q.records);
	uv_timer_stop(&d->shutdown_timer);
	spoolq_deadline(d);
	upload_abort_all(d);
	for (struct batch *b = d->q.head, *next; b; b = next) {
		next = b->next;
		if (b->state != B_ENCODING)
			spoolq_shutdown(d, b);
	}
	/* batches still in a worker come back through after_encode, then here */
	d->draining_done = true;
	agentd_maybe_exit(d);
}

static void begin_shutdown(struct agentd *d, const char *why)
{
	if (d->stopping) {
		log_warn("%s again: persisting what is left now", why);
		on_deadline(&d->shutdown_timer);
		return;
	}
	d->stopping = true;
	sdnotify_sendf(&notify, "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu",
		       (unsigned long long)(d->cfg.agentd.shutdown_timeout_ms + 5000) * 1000ULL);
	log_info("%s: reading what the sockets hold, then flushing %zu queued records (deadline %u ms)", why,
		 d->q.records, d->cfg.agentd.shutdown_timeout_ms);
	ingest_drain_and_stop(d);
	control_stop_tail(d);
	queue_seal(d);
	uv_timer_start(&d->shutdown_timer, on_deadline, d->cfg.agentd.shutdown_timeout_ms, 0);
	/* waiting batches retry now rather than after their backoff */
	for (struct batch *b = d->q.head; b; b = b->next)
		if (b->state == B_WAITING)
			b->not_before = 0;
	spoolq_shutdown_begin(d);
	if (upload_down(d) && !queue_empty(d)) {
		/* waiting out the deadline would not help: persist now */
		log_warn("upstream is down: persisting %zu records now", d->q.records);
		on_deadline(&d->shutdown_timer);
		return;
	}
	upload_kick(d);
	agentd_maybe_exit(d);
}

/* ---- reload ------------------------------------------------------------- */

int agentd_reload(struct agentd *d, char *msg, size_t msglen)
{
	struct config nc;
	char err[512] = "";
	sdnotify_reloading(&notify);
	int rc = config_load(&nc, d->cfg.path, err, sizeof err);
	if (rc) {
		snprintf(msg, msglen, "reload failed, keeping the running configuration: %s",
			 err[0] ? err : strerror(-rc));
		log_error("%s", msg);
		sdnotify_send(&notify, "READY=1");
		return rc;
	}
	/* sockets, the spool and the control socket are set up once: their
	 * settings change at the next start, and the running ones are kept */
	const struct config *o = &d->cfg;
	bool restart_needed =
		strcmp(nc.ingest.socket, o->ingest.socket) ||
		strcmp(nc.ingest.stream_socket, o->ingest.stream_socket) ||
		nc.ingest.socket_mode != o->ingest.socket_mode ||
		nc.ingest.stream_socket_mode != o->ingest.stream_socket_mode ||
		nc.ingest.max_record_bytes != o->ingest.max_record_bytes ||
		nc.ingest.receive_buffer_bytes != o->ingest.receive_buffer_bytes ||
		strcmp(nc.control.socket, o->control.socket) || nc.control.socket_mode != o->control.socket_mode ||
		nc.control.max_clients != o->control.max_clients || strcmp(nc.spool.dir, o->spool.dir) ||
		nc.spool.max_bytes != o->spool.max_bytes || nc.spool.segment_bytes != o->spool.segment_bytes ||
		nc.spool.fsync != o->spool.fsync || nc.spool.fsync_interval_ms != o->spool.fsync_interval_ms ||
		nc.spool.mode != o->spool.mode;
	unsigned max_stream_clients = nc.ingest.max_stream_clients;
	free(nc.ingest.socket);
	free(nc.ingest.stream_socket);
	free(nc.control.socket);
	free(nc.spool.dir);
	nc.ingest = o->ingest;
	nc.ingest.max_stream_clients = max_stream_clients;
	nc.control = o->control;
	nc.spool = o->spool;
	d->cfg.ingest.socket = d->cfg.ingest.stream_socket = d->cfg.control.socket = d->cfg.spool.dir = NULL;
	config_free(&d->cfg);
	d->cfg = nc;
	log_set_level(d->cfg.agentd.log_level);
	set_host(d);
	rc = upload_reconfigure(d);
	snprintf(msg, msglen, "reloaded %s%s%s", d->cfg.path,
		 restart_needed ? " (changes to [ingest] sockets, [control] and [spool] apply at the next start)" : "",
		 rc ? "; the token file could not be read: the previous token stays in use" : "");
	log_info("%s", msg);
	sdnotify_send(&notify, "READY=1");
	return 0;
}

static void on_signal(uv_signal_t *h, int signum)
{
	struct agentd *d = h->data;
	if (signum == SIGHUP) {
		char msg[600];
		agentd_reload(d, msg, sizeof msg);
		return;
	}
	begin_shutdown(d, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* ---- main --------------------------------------------------------------- */

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = DEFAULT_CONFIG;
	bool check = false;
	int o;
	while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
		switch (o) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check = true;
			break;
		case 'V':
			printf("agentd %s\n", AGENTD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "agentd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	static struct agentd d;
	char err[512] = "";
	int rc = config_load(&d.cfg, path, err, sizeof err);
	if (rc) {
		if (err[0])
			fprintf(stderr, "agentd: %s\n", err);
		else
			fprintf(stderr, "agentd: cannot read %s: %s\n", path, strerror(-rc));
		return 2;
	}
	if (check) {
		printf("%s: ok\n", path);
		config_free(&d.cfg);
		return 0;
	}
	log_set_level(d.cfg.agentd.log_level);
	/* batch buffers (a few hundred KB) come and go all the time: keep them on
	 * the heap rather than mapping and unmapping each one */
	mallopt(M_MMAP_THRESHOLD, 2 << 20);
	mallopt(M_TRIM_THRESHOLD, 8 << 20);
	signal(SIGPIPE, SIG_IGN);
	signal(SIGXFSZ, SIG_IGN); /* a spool past RLIMIT_FSIZE is an EFBIG error, not a kill */
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_error("cannot initialise libcurl: exiting");
		return 1;
	}
	if (sdnotify_open(&notify))
		log_warn("NOTIFY_SOCKET or WATCHDOG_USEC is malformed: systemd notifications may be off");
	d.loop = uv_default_loop();
	d.start_ms = wall_ms();
	set_host(&d);
	queue_init(&d);
	uv_timer_init(d.loop, &d.shutdown_timer);
	d.shutdown_timer.data = &d;
	uv_timer_init(d.loop, &status_timer);
	status_timer.data = &d;
	uv_timer_init(d.loop, &watchdog_timer);
	uv_signal_init(d.loop, &d.sig_term);
	uv_signal_init(d.loop, &d.sig_int);
	uv_signal_init(d.loop, &d.sig_hup);
	d.sig_term.data = d.sig_int.data = d.sig_hup.data = &d;

	if ((rc = spoolq_init(&d)) || (rc = upload_init(&d)) || (rc = ingest_init(&d)) || (rc = control_init(&d))) {
		log_error("cannot start (%s): exiting", strerror(rc < 0 ? -rc : rc));
		d.stopping = true;
		close_all(&d);
		uv_run(d.loop, UV_RUN_DEFAULT);
		upload_free(&d);
		spoolq_free(&d);
		config_free(&d.cfg);
		uv_loop_close(d.loop);
		curl_global_cleanup();
		return 1;
	}
	listenfds_close_untaken();

	uv_signal_start(&d.sig_term, on_signal, SIGTERM);
	uv_signal_start(&d.sig_int, on_signal, SIGINT);
	uv_signal_start(&d.sig_hup, on_signal, SIGHUP);

	uv_timer_start(&status_timer, on_status_timer, 1000, 1000);
	uint64_t wd = sdnotify_watchdog_usec(&notify);
	if (wd) {
		uint64_t every = wd / 2000;
		uv_timer_start(&watchdog_timer, on_watchdog_timer, every ? every : 1, every ? every : 1);
	}
	log_info("agentd %s ready: upstream %s, batches of %u records or %u ms", AGENTD_VERSION, d.cfg.upstream.url,
		 d.cfg.batch.max_records, d.cfg.batch.interval_ms);
	sdnotify_send(&notify, "READY=1");
	send_status(&d);
	spoolq_start_replay(&d);

	uv_run(d.loop, UV_RUN_DEFAULT);

	report(&d);
	encode_cleanup();
	upload_free(&d);
	spoolq_free(&d);
	sdnotify_close(&notify);
	int code = d.exit_code;
	config_free(&d.cfg);
	if (uv_loop_close(d.loop))
		log_warn("loop closed with handles still open");
	curl_global_cleanup();
	return code;
}
