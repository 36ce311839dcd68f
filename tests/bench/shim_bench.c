/*
 * shim_bench: latency of one libagent log call next to a bare send() of a
 * datagram of the same size on a connected socket, in the same run, with a
 * reader thread draining the socket; then the worst cases: the socket full
 * (nobody reads) and no socket at all.
 *
 * Changes nothing system-wide, except that as root it raises
 * net.unix.max_dgram_qlen for the run (so the reader, not the queue length,
 * sets the pace) and puts the old value back at exit; it says so.
 */
#include "agent.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define N 200000
#define WARMUP 10000
/* one call every PACE_NS, so that the reader keeps up on a small machine */
#define PACE_NS 4000
#define QLEN_PATH "/proc/sys/net/unix/max_dgram_qlen"

static char dir[64];
static char sock_path[128];
static long old_qlen = -1;
static atomic_int stop;

static uint64_t now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static long read_qlen(void)
{
	FILE *f = fopen(QLEN_PATH, "r");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static int write_qlen(long v)
{
	FILE *f = fopen(QLEN_PATH, "w");
	if (!f)
		return -1;
	int ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

static void restore(void)
{
	if (old_qlen >= 0 && write_qlen(old_qlen) == 0)
		printf("net.unix.max_dgram_qlen restored to %ld\n", old_qlen);
	unlink(sock_path);
	rmdir(dir);
}

static int bind_rx(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, path, strlen(path) + 1);
	unlink(path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		perror("shim_bench: bind");
		exit(1);
	}
	struct timeval tv = {0, 20000};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

static void *reader(void *arg)
{
	int fd = *(int *)arg;
	static char buf[256 * 1024];
	while (!atomic_load(&stop))
		(void)recv(fd, buf, sizeof buf, 0);
	return NULL;
}

static void pace(uint64_t t0)
{
	while (now() - t0 < PACE_NS)
		;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

struct stats {
	uint64_t p50, p99, p999, max;
};

static struct stats summarize(uint64_t *v, size_t n)
{
	qsort(v, n, sizeof *v, cmp_u64);
	struct stats s = {v[n / 2], v[n * 99 / 100], v[n * 999 / 1000], v[n - 1]};
	return s;
}

static void print_row(const char *name, struct stats s, const char *note)
{
	printf("%-34s %8llu %8llu %8llu %9llu  %s\n", name, (unsigned long long)s.p50, (unsigned long long)s.p99,
	       (unsigned long long)s.p999, (unsigned long long)s.max, note);
}

static int log3(agent_t *a, int i)
{
	return agent_info(a, "order paid", AGENT_STR("user_id", "u-42"), AGENT_INT("cents", i),
			  AGENT_DBL("ratio", 0.25));
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/shim-bench.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("shim_bench: mkdtemp");
		return 1;
	}
	snprintf(sock_path, sizeof sock_path, "%s/agentd.sock", dir);
	atexit(restore);

	long q = read_qlen();
	if (geteuid() == 0 && q >= 0 && q < 1024 && write_qlen(1024) == 0) {
		old_qlen = q;
		printf("net.unix.max_dgram_qlen raised from %ld to 1024 for this run (root)\n", q);
	} else {
		printf("net.unix.max_dgram_qlen is %ld (unchanged)\n", q);
	}

	int rx = bind_rx(sock_path);
	agent_t *a = agent_open(sock_path);
	if (!a) {
		perror("shim_bench: agent_open");
		return 1;
	}

	/* the size of the record the log call sends */
	static uint8_t frame[256 * 1024];
	log3(a, 1000);
	ssize_t flen = recv(rx, frame, sizeof frame, 0);
	if (flen <= 0) {
		fprintf(stderr, "shim_bench: no record received\n");
		return 1;
	}

	int bare = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	int sz = 4 * 1024 * 1024;
	if (setsockopt(bare, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) < 0)
		setsockopt(bare, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	if (connect(bare, (struct sockaddr *)&sa, sizeof sa) < 0) {
		perror("shim_bench: connect");
		return 1;
	}

	pthread_t rt;
	pthread_create(&rt, NULL, reader, &rx);

	uint64_t *tb = malloc(N * sizeof *tb), *tl = malloc(N * sizeof *tl);
	long bare_fail = 0, log_fail = 0;
	/* warm up, then alternate rounds so both see the same conditions */
	for (int i = 0; i < WARMUP; i++) {
		(void)send(bare, frame, (size_t)flen, MSG_DONTWAIT | MSG_NOSIGNAL);
		(void)log3(a, i);
	}
	/* alternate call by call, so that both see the same conditions */
	for (int i = 0; i < N; i++) {
		uint64_t t0 = now();
		ssize_t s = send(bare, frame, (size_t)flen, MSG_DONTWAIT | MSG_NOSIGNAL);
		tb[i] = now() - t0;
		bare_fail += s < 0;
		pace(t0);
		t0 = now();
		int rc = log3(a, i);
		tl[i] = now() - t0;
		log_fail += rc != 0;
		pace(t0);
	}
	atomic_store(&stop, 1);
	pthread_join(rt, NULL);

	printf("record: %zd bytes (message, 3 fields, file_path, function_name, line%s)\n", flen,
	       getenv("SERVICE_NAME") ? ", defaults" : "");
	printf("%d calls each, alternating call by call, one call per %d ns, reader thread draining\n", N, PACE_NS);
	printf("%-34s %8s %8s %8s %9s\n", "latency (ns)", "p50", "p99", "p99.9", "max");
	struct stats sb = summarize(tb, N), sl = summarize(tl, N);
	char note[64];
	snprintf(note, sizeof note, "(%ld EAGAIN)", bare_fail);
	print_row("bare send() same size", sb, note);
	snprintf(note, sizeof note, "(%ld dropped)", log_fail);
	print_row("agent_info, 3 fields", sl, note);
	double ratio = (double)sl.p50 / (double)(sb.p50 ? sb.p50 : 1);
	printf("p50 ratio log/bare: %.2f (target <= 1.25: %s)\n", ratio, ratio <= 1.25 ? "met" : "missed");

	/* worst case 1: the socket is full, nobody reads */
	int full = bind_rx(sock_path); /* re-created: a new, unread socket */
	close(rx);
	agent_close(a);
	a = agent_open(sock_path);
	for (int i = 0; i < 1000000 && log3(a, i) == 0; i++)
		;
	for (int i = 0; i < N; i++) {
		uint64_t t0 = now();
		(void)log3(a, i);
		tl[i] = now() - t0;
	}
	snprintf(note, sizeof note, "(agent_dropped %llu)", (unsigned long long)agent_dropped(a));
	print_row("agent_info, socket full", summarize(tl, N), note);
	agent_close(a);
	close(full);

	/* worst case 2: no socket at all */
	unlink(sock_path);
	a = agent_open(sock_path);
	for (int i = 0; i < N; i++) {
		uint64_t t0 = now();
		(void)log3(a, i);
		tl[i] = now() - t0;
	}
	snprintf(note, sizeof note, "(agent_dropped %llu)", (unsigned long long)agent_dropped(a));
	print_row("agent_info, no socket", summarize(tl, N), note);
	agent_close(a);

	close(bare);
	free(tb);
	free(tl);
	return 0; /* figures, not a gate: shared machines are noisy */
}
