/*
 * agentctl: talks to agentd over its control socket (proto/CONTROL.md).
 *
 *   agentctl [-s SOCKET] status [--json] [--watch]
 *   agentctl [-s SOCKET] tail [--level L] [--service S] [--json]
 *   agentctl [-s SOCKET] flush | reload | metrics
 *
 * Exit status: 0 success, 1 agentd answered with an error, 2 agentd could not
 * be reached (or the reply made no sense), 64 usage.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent_proto.h"

#define PROG "agentctl"
#define DEFAULT_SOCKET "/run/agentd/control.sock"
#define REPLY_MAX (16u * 1024 * 1024)
#define EXIT_ERR 1
#define EXIT_UNREACHABLE 2
#define EXIT_USAGE 64

static const char *sock_path;

static void usage(FILE *f)
{
	fprintf(f, "usage: " PROG " [-s SOCKET] COMMAND [OPTIONS]\n"
		   "  status [--json] [--watch]   agentd's state and counters\n"
		   "  tail [--level L] [--service S] [--json]\n"
		   "                              records as they pass through\n"
		   "  flush [--timeout SECONDS]   send what is queued now; wait until it is delivered or failed\n"
		   "  reload                      reload the configuration file (as SIGHUP)\n"
		   "  metrics                     counters and gauges in the Prometheus text format\n"
		   "  -s, --socket SOCKET         control socket (default $AGENTCTL_SOCKET or " DEFAULT_SOCKET ")\n"
		   "  -h, --help                  this help\n"
		   "  --version                   print the version\n"
		   "exit status: 0 success, 1 agentd answered with an error, 2 agentd cannot be reached\n");
}

/* ---- the connection ------------------------------------------------------ */

struct conn {
	int fd;
	char *buf;
	size_t len, cap;
};

static int conn_open(struct conn *c, int timeout_s)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	c->buf = NULL;
	c->len = c->cap = 0;
	if (strlen(sock_path) >= sizeof sa.sun_path) {
		fprintf(stderr, PROG ": cannot connect to %s: %s\n", sock_path, strerror(ENAMETOOLONG));
		return -1;
	}
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		int e = errno;
		const char *hint = e == ENOENT || e == ECONNREFUSED ? " (is agentd running?)"
				   : e == EACCES		    ? " (run as root or as agentd's user or group)"
								    : "";
		fprintf(stderr, PROG ": cannot connect to %s: %s%s\n", sock_path, strerror(e), hint);
		if (c->fd >= 0)
			close(c->fd);
		c->fd = -1;
		return -1;
	}
	if (timeout_s > 0) {
		struct timeval tv = {.tv_sec = timeout_s};
		setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
		setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
	}
	return 0;
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
}

static int conn_send(struct conn *c, json_t *req)
{
	char *s = json_dumps(req, JSON_COMPACT);
	if (!s) {
		fprintf(stderr, PROG ": out of memory\n");
		return -1;
	}
	size_t n = strlen(s);
	s[n] = '\n';
	size_t off = 0;
	while (off < n + 1) {
		ssize_t w = send(c->fd, s + off, n + 1 - off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			int e = errno;
			free(s);
			/* agentd may have answered and closed before the request
			   went out (a refusal is sent at accept): the caller reads
			   that answer before reporting this. */
			if (e == EPIPE || e == ECONNRESET)
				return -EPIPE;
			fprintf(stderr, PROG ": cannot send to %s: %s\n", sock_path, strerror(e));
			return -1;
		}
		off += (size_t)w;
	}
	free(s);
	return 0;
}

/* Read one line (without its newline) into *line; 0, or -1 with a message
   (quiet: no message at the end of input). */
static int conn_line(struct conn *c, char **line, size_t *llen, bool quiet_eof)
{
	static size_t consumed;
	if (consumed) {
		memmove(c->buf, c->buf + consumed, c->len - consumed);
		c->len -= consumed;
		consumed = 0;
	}
	for (;;) {
		char *nl = c->buf ? memchr(c->buf, '\n', c->len) : NULL;
		if (nl) {
			*nl = 0;
			*line = c->buf;
			*llen = (size_t)(nl - c->buf);
			consumed = *llen + 1;
			return 0;
		}
		if (c->len == c->cap) {
			if (c->cap >= REPLY_MAX) {
				fprintf(stderr, PROG ": reply from agentd longer than %u bytes\n", REPLY_MAX);
				return -1;
			}
			size_t ncap = c->cap ? c->cap * 2 : 65536;
			char *p = realloc(c->buf, ncap);
			if (!p) {
				fprintf(stderr, PROG ": out of memory\n");
				return -1;
			}
			c->buf = p;
			c->cap = ncap;
		}
		ssize_t r = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, PROG ": no answer from agentd on %s: %s\n", sock_path,
				errno == EAGAIN ? "timed out" : strerror(errno));
			return -1;
		}
		if (r == 0) {
			if (!quiet_eof)
				fprintf(stderr, PROG ": agentd closed the connection on %s without answering\n",
					sock_path);
			return -1;
		}
		c->len += (size_t)r;
	}
}

/* Read one JSON reply. Returns it, or NULL (exit 2). */
static json_t *conn_reply(struct conn *c, bool quiet_eof)
{
	char *line;
	size_t len;
	if (conn_line(c, &line, &len, quiet_eof))
		return NULL;
	json_error_t je;
	json_t *j = json_loadb(line, len, 0, &je);
	if (!json_is_object(j)) {
		fprintf(stderr, PROG ": agentd's reply is not a JSON object: %s\n", je.text);
		json_decref(j);
		return NULL;
	}
	return j;
}

/* 0 when the reply says ok, else print agentd's error and return EXIT_ERR. */
static int check_ok(json_t *j)
{
	if (json_is_true(json_object_get(j, "ok")))
		return 0;
	const char *e = json_string_value(json_object_get(j, "error"));
	fprintf(stderr, PROG ": agentd: %s\n", e ? e : "request failed");
	return EXIT_ERR;
}

/* One request, one reply. Returns the reply (ok or not) or NULL (exit 2). */
static json_t *request(struct conn *c, json_t *req)
{
	int rc = conn_send(c, req);
	json_decref(req);
	if (rc == -EPIPE) {
		json_t *j = conn_reply(c, true);
		if (!j)
			fprintf(stderr, PROG ": cannot send to %s: %s\n", sock_path, strerror(EPIPE));
		return j;
	}
	return rc ? NULL : conn_reply(c, false);
}

/* ---- formatting ---------------------------------------------------------- */

static json_t *path(json_t *o, const char *a, const char *b)
{
	json_t *v = json_object_get(o, a);
	return b ? json_object_get(v, b) : v;
}

static long long gi(json_t *o, const char *a, const char *b)
{
	json_t *v = path(o, a, b);
	return json_is_integer(v) ? (long long)json_integer_value(v)
	       : json_is_real(v)  ? (long long)json_real_value(v)
				  : 0;
}

static double gd(json_t *o, const char *a, const char *b)
{
	return json_number_value(path(o, a, b));
}

static const char *gs(json_t *o, const char *a, const char *b)
{
	const char *s = json_string_value(path(o, a, b));
	return s ? s : "-";
}

static void human_bytes(char *out, size_t n, double v)
{
	static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
	int i = 0;
	while (v >= 1024 && i < 4) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(out, n, "%.0f B", v);
	else
		snprintf(out, n, "%.1f %s", v, u[i]);
}

static void human_duration(char *out, size_t n, double s)
{
	long long t = (long long)s;
	if (s < 60)
		snprintf(out, n, "%.1f s", s);
	else if (t < 3600)
		snprintf(out, n, "%lldm %02llds", t / 60, t % 60);
	else if (t < 86400)
		snprintf(out, n, "%lldh %02lldm", t / 3600, t / 60 % 60);
	else
		snprintf(out, n, "%lldd %02lldh", t / 86400, t / 3600 % 24);
}

static void clock_time(char *out, size_t n, double epoch_s)
{
	time_t t = (time_t)epoch_s;
	struct tm tm;
	if (!localtime_r(&t, &tm) || !strftime(out, n, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(out, n, "?");
}

/* "name N, name N" for the non-zero members of an object of counters. */
static void print_reasons(json_t *by)
{
	const char *k;
	json_t *v;
	bool any = false;
	json_object_foreach(by, k, v)
	{
		if (json_integer_value(v)) {
			printf("%s%s %lld", any ? ", " : " (", k, (long long)json_integer_value(v));
			any = true;
		}
	}
	printf("%s\n", any ? ")" : "");
}

static void print_status(json_t *j)
{
	char a[64], b[64], c[64];
	human_duration(a, sizeof a, gd(j, "uptime_s", NULL));
	printf("agentd %s (pid %lld) on %s, up %s%s\n", gs(j, "version", NULL), gi(j, "pid", NULL), gs(j, "host", NULL),
	       a, json_is_true(json_object_get(j, "stopping")) ? ", SHUTTING DOWN" : "");
	printf("config      %s\n", gs(j, "config", NULL));

	const char *state = gs(j, "upstream", "state");
	printf("upstream    %s\n", gs(j, "upstream", "url"));
	if (strcmp(state, "retrying") == 0 && json_is_number(path(j, "upstream", "retry_until"))) {
		clock_time(a, sizeof a, gd(j, "upstream", "retry_until"));
		printf("  state     retrying until %s\n", a);
	} else if (strcmp(state, "down") == 0 && json_is_number(path(j, "upstream", "down_since"))) {
		clock_time(a, sizeof a, gd(j, "upstream", "down_since"));
		printf("  state     down since %s\n", a);
	} else {
		printf("  state     %s\n", state);
	}
	if (json_is_integer(path(j, "upstream", "last_status")))
		printf("  last      HTTP %lld in %.1f ms\n", gi(j, "upstream", "last_status"),
		       gd(j, "upstream", "last_latency_ms"));
	else
		printf("  last      no request yet\n");
	printf("  in flight %lld\n", gi(j, "upstream", "inflight"));

	human_bytes(a, sizeof a, gd(j, "queued", "bytes"));
	human_duration(b, sizeof b, gd(j, "queued", "oldest_age_s"));
	printf("queue       %lld records, %s, oldest %s\n", gi(j, "queued", "records"), a,
	       gi(j, "queued", "records") ? b : "-");
	json_t *sp = json_object_get(j, "spool");
	if (json_is_object(sp)) {
		human_bytes(a, sizeof a, gd(sp, "bytes", NULL));
		human_bytes(c, sizeof c, gd(sp, "max_bytes", NULL));
		human_duration(b, sizeof b, gd(sp, "oldest_age_s", NULL));
		printf("spool       %s of %s in %lld segments, %lld records waiting, oldest %s, %lld dead letters\n", a,
		       c, gi(sp, "segments", NULL), gi(sp, "records", NULL), gi(sp, "entries", NULL) ? b : "-",
		       gi(sp, "dead_letters", NULL));
	} else {
		printf("spool       none\n");
	}
	printf("rates       in  %.1f/s (10 s), %.1f/s (1 min)\n", gd(j, "rates", "in_10s"), gd(j, "rates", "in_1m"));
	printf("            out %.1f/s (10 s), %.1f/s (1 min)\n", gd(j, "rates", "out_10s"), gd(j, "rates", "out_1m"));
	printf("counters    received %lld, delivered %lld, retries %lld, spooled %lld, replayed %lld\n",
	       gi(j, "received", NULL), gi(j, "delivered", NULL), gi(j, "retries", NULL), gi(j, "spooled", NULL),
	       gi(j, "replayed", NULL));
	printf("            dead letters %lld, dropped by shims %lld\n", gi(j, "dead_letters", NULL),
	       gi(j, "shim_dropped", NULL));
	printf("dropped     %lld", gi(j, "dropped", "total"));
	print_reasons(path(j, "dropped", "by_reason"));
	printf("malformed   %lld", gi(j, "malformed", "total"));
	print_reasons(path(j, "malformed", "by_reason"));
	long long moved = 0;
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(j, "mapped"), k, v) moved += json_integer_value(v);
	printf("mapping     %lld changes", moved);
	print_reasons(json_object_get(j, "mapped"));
	printf("control     %lld clients (%lld tailing), %lld refused\n", gi(j, "control", "clients"),
	       gi(j, "control", "tail_clients"), gi(j, "control", "refused"));
	json_t *snd = json_object_get(j, "senders");
	if (json_array_size(snd)) {
		printf("\ntop senders\n  %8s  %-16s %8s %12s %10s\n", "PID", "PROCESS", "UID", "RECORDS", "DROPS");
		size_t i;
		json_array_foreach(snd, i, v)
		{
			printf("  %8lld  %-16s %8lld %12lld %10lld\n", gi(v, "pid", NULL), gs(v, "process", NULL),
			       gi(v, "uid", NULL), gi(v, "records", NULL), gi(v, "drops", NULL));
		}
	}
}

/* ---- commands ------------------------------------------------------------ */

static int cmd_status(bool as_json, bool watch)
{
	struct conn c;
	if (conn_open(&c, 30))
		return EXIT_UNREACHABLE;
	bool tty = isatty(STDOUT_FILENO);
	int rc = 0;
	for (;;) {
		json_t *j = request(&c, json_pack("{s:s}", "cmd", "status"));
		if (!j) {
			rc = EXIT_UNREACHABLE;
			break;
		}
		if ((rc = check_ok(j))) {
			json_decref(j);
			break;
		}
		if (watch && tty)
			fputs("\033[H\033[2J", stdout);
		if (as_json) {
			json_object_del(j, "ok");
			json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS);
			putchar('\n');
		} else {
			print_status(j);
		}
		json_decref(j);
		if (!watch)
			break;
		if (!tty && !as_json)
			putchar('\n');
		fflush(stdout);
		sleep(1);
	}
	conn_close(&c);
	return rc;
}

static const char *level_color(const char *lv)
{
	if (!strcmp(lv, "TRACE") || !strcmp(lv, "DEBUG"))
		return "\033[2m";
	if (!strcmp(lv, "WARN"))
		return "\033[33m";
	if (!strcmp(lv, "ERROR"))
		return "\033[31m";
	if (!strcmp(lv, "FATAL"))
		return "\033[1;31m";
	return "";
}

static void print_record(json_t *r, bool color)
{
	const char *lv = gs(r, "level", NULL);
	const char *t = json_string_value(json_object_get(r, "time"));
	const char *col = color ? level_color(lv) : "";
	printf("%s%s %-5s %s[%lld] %s: %s", col, t ? t : "-", lv, gs(r, "process", NULL), gi(r, "pid", NULL),
	       json_is_string(json_object_get(r, "service")) ? gs(r, "service", NULL) : "-", gs(r, "message", NULL));
	const char *k;
	json_t *v;
	json_object_foreach(json_object_get(r, "fields"), k, v)
	{
		if (!strcmp(k, "service"))
			continue;
		if (json_is_string(v)) {
			printf(" %s=%s", k, json_string_value(v));
		} else {
			char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
			printf(" %s=%s", k, s ? s : "?");
			free(s);
		}
	}
	printf("%s\n", color && col[0] ? "\033[0m" : "");
}

static int cmd_tail(const char *level, const char *service, bool as_json)
{
	if (level && ap_level_parse(level, strlen(level)) < 0) {
		fprintf(stderr,
			PROG ": unknown level \"%s\" (TRACE, DEBUG, INFO, WARN, ERROR, FATAL, an alias or 0-7)\n",
			level);
		return EXIT_USAGE;
	}
	struct conn c;
	if (conn_open(&c, 0))
		return EXIT_UNREACHABLE;
	json_t *req = json_pack("{s:s}", "cmd", "tail");
	if (level)
		json_object_set_new(req, "level", json_string(level));
	if (service)
		json_object_set_new(req, "service", json_string(service));
	json_t *j = request(&c, req);
	if (!j) {
		conn_close(&c);
		return EXIT_UNREACHABLE;
	}
	int rc = check_ok(j);
	json_decref(j);
	bool color = !as_json && isatty(STDOUT_FILENO);
	while (!rc) {
		char *line;
		size_t len;
		if (conn_line(&c, &line, &len, true))
			break; /* agentd went away */
		if (as_json) {
			fwrite(line, 1, len, stdout);
			putchar('\n');
		} else {
			json_t *r = json_loadb(line, len, 0, NULL);
			if (json_is_integer(json_object_get(r, "missed")))
				fprintf(stderr, PROG ": missed %lld records (this terminal did not keep up)\n",
					gi(r, "missed", NULL));
			else if (json_is_string(json_object_get(r, "end")))
				fprintf(stderr, PROG ": %s\n", gs(r, "end", NULL));
			else if (json_is_object(r))
				print_record(r, color);
			json_decref(r);
		}
		if (fflush(stdout) == EOF)
			break; /* the reader went away */
	}
	conn_close(&c);
	return rc;
}

static int cmd_simple(const char *cmd, long long timeout_ms)
{
	struct conn c;
	/* a flush waits for delivery, retries included: no timeout */
	if (conn_open(&c, strcmp(cmd, "flush") == 0 ? 0 : 60))
		return EXIT_UNREACHABLE;
	json_t *req = json_pack("{s:s}", "cmd", cmd);
	if (timeout_ms > 0)
		json_object_set_new(req, "timeout_ms", json_integer(timeout_ms));
	json_t *j = request(&c, req);
	conn_close(&c);
	if (!j)
		return EXIT_UNREACHABLE;
	int rc = check_ok(j);
	if (!strcmp(cmd, "flush")) {
		printf("flush: %lld records delivered, %lld failed (%lld spooled, %lld dropped)",
		       gi(j, "delivered", NULL), gi(j, "failed", NULL), gi(j, "spooled", NULL), gi(j, "dropped", NULL));
		if (gi(j, "pending", NULL))
			printf(", %lld still queued", gi(j, "pending", NULL));
		printf(" in %lld ms\n", gi(j, "waited_ms", NULL));
	} else if (!strcmp(cmd, "reload")) {
		if (!rc)
			printf("%s\n", gs(j, "message", NULL));
	} else if (!rc) {
		fputs(gs(j, "metrics", NULL), stdout);
	}
	json_decref(j);
	return rc;
}

int main(int argc, char **argv)
{
	enum { O_JSON = 256, O_WATCH, O_LEVEL, O_SERVICE, O_VERSION, O_TIMEOUT };
	static const struct option opts[] = {
		{"socket", required_argument, NULL, 's'},
		{"help", no_argument, NULL, 'h'},
		{"json", no_argument, NULL, O_JSON},
		{"watch", no_argument, NULL, O_WATCH},
		{"level", required_argument, NULL, O_LEVEL},
		{"service", required_argument, NULL, O_SERVICE},
		{"version", no_argument, NULL, O_VERSION},
		{"timeout", required_argument, NULL, O_TIMEOUT},
		{NULL, 0, NULL, 0},
	};
	const char *level = NULL, *service = NULL;
	bool as_json = false, watch = false;
	long long timeout_ms = -1;
	sock_path = getenv("AGENTCTL_SOCKET");
	if (!sock_path || !sock_path[0])
		sock_path = DEFAULT_SOCKET;
	int o;
	while ((o = getopt_long(argc, argv, "s:hjwl:S:", opts, NULL)) != -1) {
		switch (o) {
		case 's':
			sock_path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'j':
		case O_JSON:
			as_json = true;
			break;
		case 'w':
		case O_WATCH:
			watch = true;
			break;
		case 'l':
		case O_LEVEL:
			level = optarg;
			break;
		case 'S':
		case O_SERVICE:
			service = optarg;
			break;
		case O_TIMEOUT: {
			char *end;
			errno = 0;
			double t = strtod(optarg, &end);
			if (errno || end == optarg || *end || t < 0 || t > 86400) {
				fprintf(stderr, PROG ": --timeout: bad value \"%s\" (seconds, 0..86400)\n", optarg);
				return EXIT_USAGE;
			}
			timeout_ms = (long long)(t * 1000);
			break;
		}
		case O_VERSION:
			printf(PROG " %s\n", AGENTD_VERSION);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		if (optind >= argc)
			fprintf(stderr, PROG ": no command given\n");
		else
			fprintf(stderr, PROG ": one command at a time (got \"%s\" and \"%s\")\n", argv[optind],
				argv[optind + 1]);
		usage(stderr);
		return EXIT_USAGE;
	}
	const char *cmd = argv[optind];
	bool is_status = !strcmp(cmd, "status"), is_tail = !strcmp(cmd, "tail");
	if ((watch && !is_status) || (as_json && !is_status && !is_tail) || ((level || service) && !is_tail) ||
	    (timeout_ms >= 0 && strcmp(cmd, "flush") != 0)) {
		fprintf(stderr, PROG ": option not valid for \"%s\"\n", cmd);
		usage(stderr);
		return EXIT_USAGE;
	}
	signal(SIGPIPE, SIG_IGN);
	if (is_status)
		return cmd_status(as_json, watch);
	if (is_tail)
		return cmd_tail(level, service, as_json);
	if (!strcmp(cmd, "flush") || !strcmp(cmd, "reload") || !strcmp(cmd, "metrics"))
		return cmd_simple(cmd, timeout_ms);
	fprintf(stderr, PROG ": unknown command \"%s\"\n", cmd);
	usage(stderr);
	return EXIT_USAGE;
}
