/*
 * libagent internals shared by agent.c, context.c and crash.c. Never
 * installed; every name here is hidden (-fvisibility=hidden).
 */
#ifndef AGENT_INT_H
#define AGENT_INT_H

#include "agent.h"
#include "agent_proto.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/* Frames up to this size are encoded on the caller's stack. */
#define AGENT_STACK_FRAME 4096
/* printf-style messages are formatted into a stack buffer of this size. */
#define AGENT_PRINTF_MAX 4096
/* Lazy reconnect: at most one attempt per this many ns. */
#define AGENT_RECONNECT_NS (100 * 1000000LL)
/* Environment defaults, pre-encoded at open. */
#define AGENT_NDEFAULTS 4

struct agent_default {
	const char *key; /* static string */
	uint8_t klen;
	uint32_t off; /* encoded field in agent.defs */
	uint32_t len;
};

struct agent {
	atomic_int fd; /* created once, closed only by agent_close */
	atomic_int connected;
	atomic_llong next_try_ns; /* CLOCK_MONOTONIC_COARSE */
	atomic_ullong pending; /* dropped since the last successful send */
	atomic_ullong dropped; /* dropped since open */
	unsigned flags;
	struct sockaddr_un addr;
	socklen_t addrlen;

	pthread_mutex_t big_lock; /* guards big */
	uint8_t *big; /* AP_MAX_FRAME bytes, for records above the stack buffer */

	uint8_t *defs; /* encoded default fields */
	unsigned ndefs;
	struct agent_default def[AGENT_NDEFAULTS];

	struct agent *next; /* registry of open handles, for fork */
	struct agent *prev;
};

/* One per-thread context entry; key (and string value) live in bytes[]. */
struct agent_ctx_ent {
	uint8_t type; /* enum agent_field_type */
	uint8_t klen;
	uint16_t off;
	uint32_t vlen; /* string values */
	union {
		int64_t i;
		double d;
		int b;
	} v;
};

struct agent_ctx {
	unsigned n;
	unsigned used;
	struct agent_ctx_ent e[AGENT_CONTEXT_MAX];
	char bytes[AGENT_CONTEXT_BYTES];
};

/* This thread's context, or NULL when it holds no field. */
const struct agent_ctx *agent__context(void);

/* Append a context entry to a frame. */
void agent__context_put(ap_writer_t *w, const struct agent_ctx *c, unsigned i);

/* Append the pre-encoded default i of a to a frame. */
void agent__put_default(const agent_t *a, ap_writer_t *w, unsigned i);

/*
 * Hand a finished frame to the socket, with the pending drop count patched
 * into its header; counts a drop on failure. No lock, no allocation.
 * Returns 0 or a negative errno (see agent_logv).
 */
int agent__send(agent_t *a, uint8_t *frame, size_t len);

/* Try to (re)connect now; async-signal-safe. 0 or -errno. */
int agent__connect_now(agent_t *a);

/* crash.c: after fork in the child; when a handle closes. */
void agent__crash_atfork_child(void);

/* Format v as "0x" and lowercase hex digits into out (at least 18 bytes);
 * returns the length. Async-signal-safe. */
size_t agent__hex(char *out, uint64_t v);

#endif
