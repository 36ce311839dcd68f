/*
 * agent-log: send log records to agentd from the shell, like logger(1).
 *
 *     agent-log [-S socket] [-p level] [-t service] [-f key=value]...
 *               [-j key=json]... [message...]
 *
 * With message arguments, one record (the arguments joined by spaces);
 * without, one record per non-empty line of standard input. The handle is
 * opened with AGENT_BLOCKING: agent-log waits for room in the socket rather
 * than dropping, and exits 1 with a message on stderr when it cannot send.
 * Usage errors exit 2.
 */
#include "agent.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PROG "agent-log"
#define DEFAULT_SOCKET "/run/agentd/agentd.sock"

static void usage(FILE *out)
{
	fprintf(out, "usage: " PROG " [-S socket] [-p level] [-t service] [-f key=value]... [-j key=json]...\n"
		     "                 [message...]\n"
		     "Send one log record to agentd, or one per line of standard input.\n"
		     "  -S socket     agentd socket (default $AGENT_SOCKET, else " DEFAULT_SOCKET ")\n"
		     "  -p level      trace, debug, info, warn, error, fatal, an alias (warning, err,\n"
		     "                crit, notice, ...), a syslog number 0-7, or facility.level\n"
		     "                (default info)\n"
		     "  -t service    the service field (default $SERVICE_NAME)\n"
		     "  -f key=value  add a string field (repeatable)\n"
		     "  -j key=json   add a typed field: an integer (int64), a number (double),\n"
		     "                true or false (repeatable)\n"
		     "  -h            show this help\n");
}

/* Is s (len bytes) a JSON number? Sets *is_int when it has no fraction and
 * no exponent. */
static int json_number(const char *s, int *is_int)
{
	const char *p = s;
	*is_int = 1;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return 0;
	if (*p == '.') {
		*is_int = 0;
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		*is_int = 0;
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!(*p >= '0' && *p <= '9'))
			return 0;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	return *p == '\0';
}

/* Split "key=value" in place; returns the value or NULL (message printed). */
static char *split_kv(char *arg, int opt)
{
	char *eq = strchr(arg, '=');
	if (!eq || eq == arg) {
		fprintf(stderr, PROG ": -%c %s: expected key=value with a non-empty key\n", opt, arg);
		return NULL;
	}
	*eq = '\0';
	if (strlen(arg) > 255) {
		fprintf(stderr, PROG ": -%c: key longer than 255 bytes: %.40s...\n", opt, arg);
		return NULL;
	}
	return eq + 1;
}

static int parse_json_field(agent_field_t *f, char *arg)
{
	char *val = split_kv(arg, 'j');
	if (!val)
		return -1;
	int is_int;
	if (strcmp(val, "true") == 0 || strcmp(val, "false") == 0) {
		*f = AGENT_BOOL(arg, val[0] == 't');
		return 0;
	}
	if (json_number(val, &is_int)) {
		errno = 0;
		if (is_int) {
			long long v = strtoll(val, NULL, 10);
			if (errno == ERANGE) {
				fprintf(stderr, PROG ": -j %s=%s: integer out of the int64 range\n", arg, val);
				return -1;
			}
			*f = AGENT_INT(arg, v);
			return 0;
		}
		double d = strtod(val, NULL);
		if (errno == ERANGE && isinf(d)) {
			fprintf(stderr, PROG ": -j %s=%s: number out of the double range\n", arg, val);
			return -1;
		}
		*f = AGENT_DBL(arg, d);
		return 0;
	}
	fprintf(stderr,
		PROG ": -j %s=%s: not a JSON integer, number, true or false "
		     "(use -f for a string)\n",
		arg, val);
	return -1;
}

static int parse_level(const char *s)
{
	const char *dot = strrchr(s, '.'); /* logger's facility.level */
	int lv = agent_level_parse(dot ? dot + 1 : s);
	if (lv < 0)
		fprintf(stderr,
			PROG ": -p %s: unknown level (trace, debug, info, warn, error, fatal, an alias "
			     "such as warning or crit, or a syslog number 0-7)\n",
			s);
	return lv;
}

static int send_one(agent_t *a, int level, const char *path, const char *msg, const agent_field_t *fields, size_t n)
{
	int r = agent_logv(a, level, NULL, 0, NULL, msg, fields, n);
	if (r < 0) {
		fprintf(stderr, PROG ": cannot send to %s: %s\n", path, strerror(-r));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = NULL;
	int level = AGENT_INFO;
	agent_field_t *fields = calloc((size_t)argc + 1, sizeof *fields);
	size_t n = 0;
	int opt, status = 0;
	if (!fields) {
		fprintf(stderr, PROG ": out of memory\n");
		return 1;
	}
	while ((opt = getopt(argc, argv, "S:p:t:f:j:h")) != -1) {
		char *val;
		switch (opt) {
		case 'S':
			path = optarg;
			break;
		case 'p':
			if ((level = parse_level(optarg)) < 0)
				goto usage_error;
			break;
		case 't':
			fields[n++] = AGENT_STR("service", optarg);
			break;
		case 'f':
			if (!(val = split_kv(optarg, 'f')))
				goto usage_error;
			fields[n++] = AGENT_STR(optarg, val);
			break;
		case 'j':
			if (parse_json_field(&fields[n], optarg) < 0)
				goto usage_error;
			n++;
			break;
		case 'h':
			usage(stdout);
			free(fields);
			return 0;
		default:
			usage(stderr);
			goto usage_error;
		}
	}
	if (!path) {
		path = getenv("AGENT_SOCKET");
		if (!path || !*path)
			path = DEFAULT_SOCKET;
	}

	agent_t *a = agent_open_flags(path, AGENT_BLOCKING);
	if (!a) {
		fprintf(stderr, PROG ": cannot use socket %s: %s\n", path, strerror(errno));
		free(fields);
		return errno == EINVAL ? 2 : 1;
	}
	int r = agent_connect(a);
	if (r < 0) {
		fprintf(stderr, PROG ": cannot send to %s: %s\n", path, strerror(-r));
		status = 1;
		goto out;
	}

	if (optind < argc) {
		size_t len = 0;
		for (int i = optind; i < argc; i++)
			len += strlen(argv[i]) + 1;
		char *msg = malloc(len);
		if (!msg) {
			fprintf(stderr, PROG ": out of memory\n");
			status = 1;
			goto out;
		}
		size_t off = 0;
		for (int i = optind; i < argc; i++) {
			size_t l = strlen(argv[i]);
			memcpy(msg + off, argv[i], l);
			off += l;
			msg[off++] = i + 1 < argc ? ' ' : '\0';
		}
		if (send_one(a, level, path, msg, fields, n) < 0)
			status = 1;
		free(msg);
	} else {
		char *line = NULL;
		size_t cap = 0;
		ssize_t got;
		while ((got = getline(&line, &cap, stdin)) >= 0) {
			while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
				line[--got] = '\0';
			if (got == 0)
				continue;
			if (send_one(a, level, path, line, fields, n) < 0) {
				status = 1;
				break;
			}
		}
		if (ferror(stdin)) {
			fprintf(stderr, PROG ": reading standard input: %s\n", strerror(errno));
			status = 1;
		}
		free(line);
	}
out:
	agent_close(a);
	free(fields);
	return status;

usage_error:
	free(fields);
	return 2;
}
