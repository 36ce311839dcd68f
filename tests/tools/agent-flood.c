/*
 * agent-flood: load generator for agentd, through libagent.
 *
 *   agent-flood -S socket -n COUNT [-r RATE_PER_SEC] [-p MSG_PREFIX] [-P PROCS] [-d]
 *
 * Each of PROCS processes (default 1) sends COUNT records, numbered seq = 0 ..
 * COUNT-1, with the message "PREFIX <proc>-<seq>", level seq % 6 and fields:
 *   seq (int), proc (int), service = "flood",
 *   trace_id = "%08x%08x%016x" of proc, seq, (proc * 1000003 + seq) * 2654435761 mod 2^64,
 *   user_id = "u-<seq % 1000>", note = "n-<seq>" (string), count = seq * 3 (int),
 *   ratio = seq + 0.25 (double).
 * tests/e2e/harness.py checks what lands against exactly these values.
 *
 * By default the handle is opened with AGENT_BLOCKING, so the shim waits for
 * room and drops nothing; -d uses the normal (dropping) mode. -r paces each
 * process to RATE records per second on the monotonic clock. At the end it
 * prints the totals over all processes: "sent N dropped D". Exit status 0
 * when every process ran, 1 otherwise, 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

struct result {
	uint64_t sent;
	uint64_t dropped;
};

static void usage(void)
{
	fprintf(stderr, "usage: agent-flood -S socket -n COUNT [-r RATE_PER_SEC] [-p MSG_PREFIX] [-P PROCS] [-d]\n");
	exit(2);
}

static long parse_long(const char *s, long min, long max, const char *what)
{
	char *end = NULL;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "agent-flood: bad %s \"%s\" (expected %ld..%ld)\n", what, s, min, max);
		exit(2);
	}
	return v;
}

static void pace(const struct timespec *t0, uint64_t i, long rate)
{
	uint64_t ns = i * 1000000000ull / (uint64_t)rate;
	struct timespec at = *t0;

	at.tv_sec += (time_t)(ns / 1000000000ull);
	at.tv_nsec += (long)(ns % 1000000000ull);
	if (at.tv_nsec >= 1000000000L) {
		at.tv_sec++;
		at.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
		;
}

static struct result flood_one(const char *sock, int proc, long count, long rate, const char *prefix, int dropping)
{
	struct result r = {0, 0};
	struct timespec t0;
	agent_t *a = agent_open_flags(sock, dropping ? 0 : AGENT_BLOCKING);

	if (a == NULL) {
		perror("agent-flood: agent_open");
		exit(1);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long seq = 0; seq < count; seq++) {
		char msg[256], trace[40], user[32], note[32];
		uint64_t mix = ((uint64_t)proc * 1000003u + (uint64_t)seq) * 2654435761u;

		if (rate > 0)
			pace(&t0, (uint64_t)seq, rate);
		snprintf(msg, sizeof(msg), "%s %d-%ld", prefix, proc, seq);
		snprintf(trace, sizeof(trace), "%08x%08x%016" PRIx64, (unsigned)proc, (unsigned)seq, mix);
		snprintf(user, sizeof(user), "u-%ld", seq % 1000);
		snprintf(note, sizeof(note), "n-%ld", seq);
		agent_field_t f[] = {
			AGENT_INT("seq", seq),	       AGENT_INT("proc", proc),
			AGENT_STR("service", "flood"), AGENT_STR("trace_id", trace),
			AGENT_STR("user_id", user),    AGENT_STR("note", note),
			AGENT_INT("count", seq * 3),   AGENT_DBL("ratio", (double)seq + 0.25),
		};
		if (agent_logv(a, (int)(seq % 6), __FILE__, __LINE__, __func__, msg, f, sizeof(f) / sizeof(f[0])) == 0)
			r.sent++;
	}
	r.dropped = agent_dropped(a);
	agent_close(a);
	return r;
}

int main(int argc, char **argv)
{
	const char *sock = NULL, *prefix = "flood";
	long count = -1, rate = 0, procs = 1;
	int dropping = 0, opt, fds[2], failed = 0;
	struct result total = {0, 0}, r;

	while ((opt = getopt(argc, argv, "S:n:r:p:P:dh")) != -1) {
		switch (opt) {
		case 'S':
			sock = optarg;
			break;
		case 'n':
			count = parse_long(optarg, 0, LONG_MAX / 4, "COUNT");
			break;
		case 'r':
			rate = parse_long(optarg, 1, 100000000, "RATE");
			break;
		case 'p':
			prefix = optarg;
			break;
		case 'P':
			procs = parse_long(optarg, 1, 1024, "PROCS");
			break;
		case 'd':
			dropping = 1;
			break;
		default:
			usage();
		}
	}
	if (sock == NULL || count < 0 || optind != argc)
		usage();
	if (pipe(fds) != 0) {
		perror("agent-flood: pipe");
		return 1;
	}
	for (long p = 0; p < procs; p++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("agent-flood: fork");
			failed = 1;
			break;
		}
		if (pid == 0) {
			close(fds[0]);
			r = flood_one(sock, (int)p, count, rate, prefix, dropping);
			/* Small writes to a pipe are atomic: one result per write. */
			_exit(write(fds[1], &r, sizeof(r)) == (ssize_t)sizeof(r) ? 0 : 1);
		}
	}
	close(fds[1]);
	while (read(fds[0], &r, sizeof(r)) == (ssize_t)sizeof(r)) {
		total.sent += r.sent;
		total.dropped += r.dropped;
	}
	close(fds[0]);
	for (;;) {
		int st;
		pid_t pid = wait(&st);

		if (pid < 0)
			break;
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	printf("sent %" PRIu64 " dropped %" PRIu64 "\n", total.sent, total.dropped);
	return failed;
}
