/*
 * libagent: send structured log records to agentd.
 *
 *     #include <agent.h>
 *
 *     agent_t *a = agent_open(NULL);               // $AGENT_SOCKET or the default
 *     agent_info(a, "paid", AGENT_STR("user_id", "u-42"), AGENT_INT("cents", 1250),
 *                AGENT_DBL("ratio", 0.25), AGENT_BOOL("first", 1));
 *     agent_printf(a, AGENT_WARN, "disk %d%% full", 91);
 *     agent_close(a);
 *
 * Every log call returns at once: it never blocks, never allocates and keeps the
 * caller's errno. A record that cannot be handed over (agentd is behind, or not
 * running) is counted, and the count travels with the next record that gets
 * through. The caller's file, function and line are recorded automatically.
 * Thread-safe and fork-safe. The library never prints anything.
 */
#ifndef AGENT_H
#define AGENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AGENT_VERSION_MAJOR 1
#define AGENT_VERSION_MINOR 0

#if defined(__GNUC__)
#define AGENT_API __attribute__((visibility("default")))
#define AGENT_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define AGENT_API
#define AGENT_PRINTF(f, a)
#endif

typedef struct agent agent_t;

enum agent_level {
	AGENT_TRACE = 0,
	AGENT_DEBUG = 1,
	AGENT_INFO = 2,
	AGENT_WARN = 3,
	AGENT_ERROR = 4,
	AGENT_FATAL = 5,
};

enum agent_field_type {
	AGENT_T_END = 0,
	AGENT_T_STR = 1,
	AGENT_T_INT = 2,
	AGENT_T_DBL = 3,
	AGENT_T_BOOL = 4,
};

/* One typed field. Build them with the AGENT_* macros below. */
typedef struct agent_field {
	const char *key;
	int type; /* enum agent_field_type */
	union {
		const char *s;
		int64_t i;
		double d;
		int b;
	} v;
} agent_field_t;

#define AGENT_STR(k, x) ((agent_field_t){.key = (k), .type = AGENT_T_STR, .v = {.s = (x)}})
#define AGENT_INT(k, x) ((agent_field_t){.key = (k), .type = AGENT_T_INT, .v = {.i = (int64_t)(x)}})
#define AGENT_DBL(k, x) ((agent_field_t){.key = (k), .type = AGENT_T_DBL, .v = {.d = (double)(x)}})
#define AGENT_BOOL(k, x) ((agent_field_t){.key = (k), .type = AGENT_T_BOOL, .v = {.b = !!(x)}})
#define AGENT_END ((agent_field_t){.key = NULL, .type = AGENT_T_END, .v = {.i = 0}})

/* Flags for agent_open_flags(). */
#define AGENT_BLOCKING 0x1u /* wait for room instead of dropping (agent-log) */

/*
 * Open a handle. socket_path NULL means $AGENT_SOCKET, else
 * /run/agentd/agentd.sock. Reads SERVICE_NAME, ENVIRONMENT, SERVICE_VERSION,
 * LOG_TYPE once, as defaults for every record, and installs the crash handler
 * when ENABLE_GLOBAL_ERROR_HANDLER is true. A daemon that is not running is
 * not an error: the socket is connected lazily. Returns NULL only when memory
 * is short (errno ENOMEM) or an argument is invalid (EINVAL).
 */
AGENT_API agent_t *agent_open(const char *socket_path);
AGENT_API agent_t *agent_open_flags(const char *socket_path, unsigned flags);

/*
 * Connect now, ignoring the 100 ms reconnect limit. Returns 0, or the reason
 * agentd cannot be reached as a negative errno (-ENOENT: no socket there,
 * -ECONNREFUSED: nobody listening, -EACCES ...). Optional: log calls connect
 * by themselves.
 */
AGENT_API int agent_connect(agent_t *a);

/* Close a handle (NULL is accepted); removes the crash handler it installed. */
AGENT_API void agent_close(agent_t *a);

/* Records this handle could not hand over, since it was opened. */
AGENT_API uint64_t agent_dropped(const agent_t *a);

/*
 * Send one record. fields points to n fields (n may be 0). file, func and line
 * may be NULL / 0. Returns 0 when the record was handed over, -EAGAIN when it
 * was dropped because agentd is behind, -ENOTCONN when agentd is not running,
 * -EINVAL on a bad argument. Drops are counted in every case. A handle opened
 * with AGENT_BLOCKING waits while the socket is full, connects at every call
 * while agentd is away, and returns the underlying error (-ENOENT,
 * -ECONNREFUSED, ...) instead of -ENOTCONN.
 */
AGENT_API int agent_logv(agent_t *a, int level, const char *file, int line, const char *func, const char *msg,
			 const agent_field_t *fields, size_t n);

/* Same, with fields as variadic agent_field_t values ending with AGENT_END. */
AGENT_API int agent_log_(agent_t *a, int level, const char *file, int line, const char *func, const char *msg, ...);

/* printf-style message, no fields. */
AGENT_API int agent_printf_(agent_t *a, int level, const char *file, int line, const char *func, const char *fmt, ...)
	AGENT_PRINTF(6, 7);

#define agent_log(a, level, ...) agent_log_((a), (level), __FILE__, __LINE__, __func__, __VA_ARGS__, AGENT_END)
#define agent_trace(a, ...) agent_log((a), AGENT_TRACE, __VA_ARGS__)
#define agent_debug(a, ...) agent_log((a), AGENT_DEBUG, __VA_ARGS__)
#define agent_info(a, ...) agent_log((a), AGENT_INFO, __VA_ARGS__)
#define agent_warn(a, ...) agent_log((a), AGENT_WARN, __VA_ARGS__)
#define agent_error(a, ...) agent_log((a), AGENT_ERROR, __VA_ARGS__)
#define agent_fatal(a, ...) agent_log((a), AGENT_FATAL, __VA_ARGS__)
#define agent_printf(a, level, ...) agent_printf_((a), (level), __FILE__, __LINE__, __func__, __VA_ARGS__)

/*
 * Per-thread context: fields attached to every record this thread sends, with
 * any handle, while they are set (trace_id, user_id, session_id, ...). A field
 * given in the call itself wins. At most AGENT_CONTEXT_MAX fields and
 * AGENT_CONTEXT_BYTES bytes; past that -ENOSPC. value NULL removes the key.
 */
#define AGENT_CONTEXT_MAX 16
#define AGENT_CONTEXT_BYTES 1024
AGENT_API int agent_context_set(const char *key, const char *value);
AGENT_API int agent_context_set_field(agent_field_t field);
AGENT_API void agent_context_clear(void);

/*
 * Global error handler: on SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT send one
 * FATAL record (signal, fault address, backtrace) through a, then restore the
 * previous handler and re-raise. Off by default; agent_open turns it on when
 * ENABLE_GLOBAL_ERROR_HANDLER is true. One handle at a time holds it.
 */
AGENT_API int agent_crash_handler_enable(agent_t *a);
AGENT_API void agent_crash_handler_disable(agent_t *a);

/* Level named s ("warning", "crit", "4", ...), or -1. */
AGENT_API int agent_level_parse(const char *s);

#ifdef __cplusplus
}
#endif

#endif
