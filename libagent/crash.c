/*
 * crash: the global error handler (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT).
 *
 * Owns: the process-wide sigactions for those signals while enabled, the
 * previous ones, a static frame buffer and an alternate signal stack
 * (allocated at the first enable, installed for the enabling thread when it
 * has none; kept for the life of the process, since a thread may still have
 * it installed).
 *
 * In the handler only async-signal-safe work happens: the FATAL record
 * ("fatal signal SIGSEGV (11) at 0x10", fields signal, signo,
 * fault_address, error_type, stack_trace and the handle's defaults) is
 * encoded with the codec (memcpy only) into the static buffer and sent; a
 * full socket is retried with nanosleep for at most ~100 ms. backtrace() is
 * called once at enable so that libgcc is loaded before any crash. Then the
 * previous sigaction is restored: a fault raised by the CPU (si_code > 0)
 * faults again when the handler returns, any other (abort, kill) is raised
 * again, so the exit status and the core dump stay what they would have
 * been. Only the first crashing thread sends; one handle holds the handler.
 */
#include "agent_int.h"

#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NSIG_CRASH 5
#define MAX_FRAMES 64
#define ALTSTACK_BYTES (64 * 1024)
#define SEND_RETRY_NS (1000000L)
#define SEND_RETRIES 100

static const int crash_signals[NSIG_CRASH] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
static const char *const crash_names[NSIG_CRASH] = {"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT"};

static pthread_mutex_t crash_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic(agent_t *) crash_agent;
static struct sigaction crash_old[NSIG_CRASH];
static void *crash_stack;
static atomic_flag crash_busy = ATOMIC_FLAG_INIT;
static uint8_t crash_frame[16384];
static char crash_trace[MAX_FRAMES * 24];

void agent__crash_atfork_child(void)
{
	pthread_mutex_init(&crash_lock, NULL);
}

static int sig_index(int sig)
{
	for (int i = 0; i < NSIG_CRASH; i++)
		if (crash_signals[i] == sig)
			return i;
	return -1;
}

static size_t put_dec(char *out, long v)
{
	char tmp[24];
	size_t n = 0;
	unsigned long u = v < 0 ? 0UL - (unsigned long)v : (unsigned long)v;
	do {
		tmp[n++] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	size_t k = 0;
	if (v < 0)
		out[k++] = '-';
	while (n)
		out[k++] = tmp[--n];
	return k;
}

static size_t put_str(char *out, const char *s)
{
	size_t n = strlen(s);
	memcpy(out, s, n);
	return n;
}

static void crash_send(agent_t *a, int idx, int sig, const siginfo_t *si)
{
	int fault = si && si->si_code > 0 && sig != SIGABRT;
	char addr[20];
	size_t addr_len = agent__hex(addr, fault ? (uint64_t)(uintptr_t)si->si_addr : 0);

	char msg[96];
	size_t m = put_str(msg, "fatal signal ");
	m += put_str(msg + m, crash_names[idx]);
	m += put_str(msg + m, " (");
	m += put_dec(msg + m, sig);
	m += put_str(msg + m, ")");
	if (fault) {
		m += put_str(msg + m, " at ");
		memcpy(msg + m, addr, addr_len);
		m += addr_len;
	}

	void *frames[MAX_FRAMES];
	int nf = backtrace(frames, MAX_FRAMES);
	size_t t = 0;
	for (int i = 0; i < nf; i++) {
		crash_trace[t++] = '#';
		t += put_dec(crash_trace + t, i);
		crash_trace[t++] = ' ';
		t += agent__hex(crash_trace + t, (uint64_t)(uintptr_t)frames[i]);
		crash_trace[t++] = '\n';
	}

	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ap_writer_t w;
	ap_writer_init(&w, crash_frame, sizeof crash_frame, AP_FATAL,
		       (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec, 0, msg, m);
	ap_put_string(&w, "signal", 6, crash_names[idx], strlen(crash_names[idx]));
	ap_put_int64(&w, "signo", 5, sig);
	if (fault)
		ap_put_string(&w, "fault_address", 13, addr, addr_len);
	ap_put_string(&w, "error_type", 10, crash_names[idx], strlen(crash_names[idx]));
	ap_put_string(&w, "stack_trace", 11, crash_trace, t);
	for (unsigned i = 0; i < a->ndefs; i++)
		agent__put_default(a, &w, i);
	size_t len = ap_writer_finish(&w);

	if (!atomic_load(&a->connected))
		(void)agent__connect_now(a);
	int fd = atomic_load(&a->fd);
	if (fd < 0)
		return;
	uint64_t carried = atomic_exchange(&a->pending, 0);
	ap_frame_set_dropped(crash_frame, carried > UINT32_MAX ? UINT32_MAX : (uint32_t)carried);
	for (int i = 0; i < SEND_RETRIES; i++) {
		if (send(fd, crash_frame, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS)
			break;
		struct timespec d = {0, SEND_RETRY_NS};
		nanosleep(&d, NULL);
	}
	atomic_fetch_add(&a->dropped, 1);
}

static void crash_handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	int saved = errno;
	int idx = sig_index(sig);
	if (idx < 0)
		return;
	if (!atomic_flag_test_and_set(&crash_busy)) {
		agent_t *a = atomic_load(&crash_agent);
		if (a)
			crash_send(a, idx, sig, si);
	}
	sigaction(sig, &crash_old[idx], NULL);
	errno = saved;
	if (!si || si->si_code <= 0 || sig == SIGABRT)
		raise(sig);
	/* a CPU fault: returning re-runs the instruction under the old action */
}

static void install_altstack(void)
{
	stack_t cur;
	if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
		return; /* the thread has one already */
	if (!crash_stack)
		crash_stack = malloc(ALTSTACK_BYTES);
	if (!crash_stack)
		return;
	stack_t ss = {.ss_sp = crash_stack, .ss_size = ALTSTACK_BYTES, .ss_flags = 0};
	(void)sigaltstack(&ss, NULL);
}

int agent_crash_handler_enable(agent_t *a)
{
	if (!a)
		return -EINVAL;
	int saved = errno;
	int r = 0;
	pthread_mutex_lock(&crash_lock);
	agent_t *cur = atomic_load(&crash_agent);
	if (cur) {
		r = cur == a ? 0 : -EBUSY;
		goto out;
	}
	void *warm[4];
	(void)backtrace(warm, 4); /* loads libgcc now, not in the handler */
	install_altstack();
	atomic_store(&crash_agent, a);
	atomic_flag_clear(&crash_busy);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = crash_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	for (int i = 0; i < NSIG_CRASH; i++) {
		if (sigaction(crash_signals[i], &sa, &crash_old[i]) < 0) {
			r = -errno;
			while (i-- > 0)
				sigaction(crash_signals[i], &crash_old[i], NULL);
			atomic_store(&crash_agent, NULL);
			goto out;
		}
	}
out:
	pthread_mutex_unlock(&crash_lock);
	errno = saved;
	return r;
}

void agent_crash_handler_disable(agent_t *a)
{
	if (!a)
		return;
	int saved = errno;
	pthread_mutex_lock(&crash_lock);
	if (atomic_load(&crash_agent) == a) {
		for (int i = 0; i < NSIG_CRASH; i++)
			sigaction(crash_signals[i], &crash_old[i], NULL);
		atomic_store(&crash_agent, NULL);
	}
	pthread_mutex_unlock(&crash_lock);
	errno = saved;
}
