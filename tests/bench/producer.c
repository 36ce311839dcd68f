/*
 * producer: the benchmark's workload, offered at a fixed rate.
 *
 *   producer -S SOCKET -r RATE -t SECONDS [-P PROCS] [-f agent|syslog]
 *
 * PROCS processes (default 1) each offer RATE/PROCS records per second for
 * SECONDS, paced on the monotonic clock (the records due are sent, then a
 * 100 us sleep). Every record is the same realistic one in both formats: a
 * level mix (TRACE 2%, DEBUG 15%, INFO 65%, WARN 10%, ERROR 7%, FATAL 1%), an
 * ~80-character message with varying numbers, service, trace_id and three
 * fields that go into metadata (region, shard, ratio), stamped with the wall
 * clock when it is sent.
 *
 *   -f agent   through libagent (agent_logv), in its normal non-blocking
 *              mode: a full socket refuses the record (counted)
 *   -f syslog  as an RFC 5424 datagram on a connected, non-blocking Unix
 *              datagram socket (MSG_DONTWAIT): EAGAIN refuses the record;
 *              level, trace_id and the fields travel as SD-PARAMs
 *
 * Prints one line of totals over all processes:
 *   offered N sent S refused R elapsed SECONDS cpu SECONDS
 * (elapsed: the slowest process; cpu: user+system of all of them). Exit
 * status 0 when every process ran, 1 otherwise, 2 on a usage error.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

struct result {
	uint64_t offered, sent, refused;
	double elapsed;
};

struct rec {
	int level;
	char msg[160];
	char trace[40];
	const char *region;
	int64_t shard;
	double ratio;
};

static const char *const regions[] = {"eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"};
static const char *const level_names[] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"};
static const int syslog_sev[] = {7, 7, 6, 4, 3, 2};

static void usage(void)
{
	fprintf(stderr, "usage: producer -S SOCKET -r RATE -t SECONDS [-P PROCS] [-f agent|syslog]\n");
	exit(2);
}

static long parse_long(const char *s, long min, long max, const char *what)
{
	char *end = NULL;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "producer: bad %s \"%s\" (expected %ld..%ld)\n", what, s, min, max);
		exit(2);
	}
	return v;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static void make_record(struct rec *r, uint64_t *rng, int proc, uint64_t seq)
{
	uint64_t a = xorshift(rng), b = xorshift(rng);
	unsigned u1 = (unsigned)(a % 100000), u2 = (unsigned)((a >> 20) % 1000), u3 = (unsigned)((a >> 32) % 50000);
	unsigned pick = (unsigned)(b % 1000);

	r->level = pick < 20 ? 0 : pick < 170 ? 1 : pick < 820 ? 2 : pick < 920 ? 3 : pick < 990 ? 4 : 5;
	switch (seq % 4) {
	case 0:
		snprintf(r->msg, sizeof r->msg,
			 "GET /api/v1/orders/%u completed with status %u in %u ms, %u bytes sent", u1,
			 r->level >= 4 ? 500u : 200u, u2, u3);
		break;
	case 1:
		snprintf(r->msg, sizeof r->msg, "payment %u for customer %u authorised: amount %u.%02u EUR in %u ms",
			 u1, u3, u2, (unsigned)(b >> 40) % 100, u2 / 3);
		break;
	case 2:
		snprintf(r->msg, sizeof r->msg, "cache miss for key session:%08x, refilled from shard %u in %u us",
			 (unsigned)(a >> 16), u2 % 16, u3);
		break;
	default:
		snprintf(r->msg, sizeof r->msg,
			 "worker %d processed job %u from queue emails after %u retries, depth %u", proc, u1, u2 % 5,
			 u3);
		break;
	}
	snprintf(r->trace, sizeof r->trace, "%016" PRIx64 "%016" PRIx64, xorshift(rng), seq);
	r->region = regions[(b >> 20) % 4];
	r->shard = (int64_t)((b >> 24) % 64);
	r->ratio = (double)((b >> 32) % 10000) / 10000.0;
}

static int send_agent(agent_t *ag, const struct rec *r)
{
	agent_field_t f[] = {
		AGENT_STR("service", "checkout"), AGENT_STR("trace_id", r->trace), AGENT_STR("region", r->region),
		AGENT_INT("shard", r->shard),	  AGENT_DBL("ratio", r->ratio),
	};
	return agent_logv(ag, r->level, __FILE__, __LINE__, __func__, r->msg, f, sizeof f / sizeof f[0]);
}

static int send_syslog(int fd, const struct rec *r, const char *host, int pid)
{
	static time_t cached_sec = -1;
	static char stamp[32];
	struct timespec ts;
	char dgram[512];

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = ts.tv_sec;
	}
	int n = snprintf(dgram, sizeof dgram,
			 "<%d>1 %s.%06ldZ %s checkout %d - [m@32473 level=\"%s\" service=\"checkout\" "
			 "trace_id=\"%s\" func=\"%s\" file=\"%s\" line=\"%d\" region=\"%s\" shard=\"%" PRId64
			 "\" ratio=\"%.4f\"] %s",
			 16 * 8 + syslog_sev[r->level], stamp, ts.tv_nsec / 1000, host, pid, level_names[r->level],
			 r->trace, __func__, __FILE__, __LINE__, r->region, r->shard, r->ratio, r->msg);
	if (n < 0 || (size_t)n >= sizeof dgram)
		return -EINVAL;
	return send(fd, dgram, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == n ? 0 : -errno;
}

static int connect_dgram(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t n = strlen(path);
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || n >= sizeof sa.sun_path)
		return -1;
	memcpy(sa.sun_path, path, n + 1);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static struct result produce(const char *sock, int proc, double rate, double seconds, int syslog_fmt)
{
	struct result res = {0, 0, 0, 0};
	uint64_t rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(proc + 1) * 0x100000001b3ull) ^ (uint64_t)getpid();
	uint64_t total = (uint64_t)(rate * seconds);
	agent_t *ag = NULL;
	int fd = -1, pid = (int)getpid();
	char host[64] = "localhost";
	struct rec r;

	if (syslog_fmt) {
		fd = connect_dgram(sock);
		if (fd < 0) {
			perror("producer: connect");
			exit(1);
		}
		gethostname(host, sizeof host - 1);
	} else {
		ag = agent_open(sock);
		if (!ag || agent_connect(ag) < 0) {
			fprintf(stderr, "producer: cannot reach %s\n", sock);
			exit(1);
		}
	}
	uint64_t t0 = mono_ns();
	while (res.offered < total) {
		uint64_t due = (uint64_t)((double)(mono_ns() - t0) * rate / 1e9) + 1;
		if (due > total)
			due = total;
		while (res.offered < due) {
			make_record(&r, &rng, proc, res.offered);
			int rc = syslog_fmt ? send_syslog(fd, &r, host, pid) : send_agent(ag, &r);
			res.offered++;
			if (rc == 0)
				res.sent++;
			else
				res.refused++;
		}
		if (res.offered < total) {
			struct timespec nap = {0, 100000};
			nanosleep(&nap, NULL);
		}
	}
	res.elapsed = (double)(mono_ns() - t0) / 1e9;
	if (ag)
		agent_close(ag);
	if (fd >= 0)
		close(fd);
	return res;
}

int main(int argc, char **argv)
{
	const char *sock = NULL;
	long rate = 0, seconds = 0, procs = 1;
	int syslog_fmt = 0, opt, fds[2], failed = 0;
	struct result total = {0, 0, 0, 0}, r;

	while ((opt = getopt(argc, argv, "S:r:t:P:f:h")) != -1) {
		switch (opt) {
		case 'S':
			sock = optarg;
			break;
		case 'r':
			rate = parse_long(optarg, 1, 100000000, "RATE");
			break;
		case 't':
			seconds = parse_long(optarg, 1, 3600, "SECONDS");
			break;
		case 'P':
			procs = parse_long(optarg, 1, 256, "PROCS");
			break;
		case 'f':
			if (strcmp(optarg, "syslog") == 0)
				syslog_fmt = 1;
			else if (strcmp(optarg, "agent") != 0)
				usage();
			break;
		default:
			usage();
		}
	}
	if (!sock || rate == 0 || seconds == 0 || optind != argc)
		usage();
	if (pipe(fds) != 0) {
		perror("producer: pipe");
		return 1;
	}
	for (long p = 0; p < procs; p++) {
		pid_t pid = fork();
		if (pid < 0) {
			perror("producer: fork");
			failed = 1;
			break;
		}
		if (pid == 0) {
			close(fds[0]);
			r = produce(sock, (int)p, (double)rate / (double)procs, (double)seconds, syslog_fmt);
			_exit(write(fds[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
		}
	}
	close(fds[1]);
	while (read(fds[0], &r, sizeof r) == (ssize_t)sizeof r) {
		total.offered += r.offered;
		total.sent += r.sent;
		total.refused += r.refused;
		if (r.elapsed > total.elapsed)
			total.elapsed = r.elapsed;
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
	struct rusage ru;
	getrusage(RUSAGE_CHILDREN, &ru);
	double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
		     (double)ru.ru_stime.tv_usec / 1e6;
	printf("offered %" PRIu64 " sent %" PRIu64 " refused %" PRIu64 " elapsed %.3f cpu %.3f\n", total.offered,
	       total.sent, total.refused, total.elapsed, cpu);
	return failed;
}
