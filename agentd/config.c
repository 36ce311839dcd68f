/*
 * config: agentd's settings, parsed from an INI file with libinih.
 *
 * Owns: the struct config that config_load()/config_parse_string() fill, and
 * every string in it (config_free() releases them). The key table below is
 * the single source of names, types, ranges and defaults.
 *
 * Limits: a file of at most CONFIG_MAX_FILE bytes; a line of at most
 * CONFIG_MAX_LINE bytes once its leading and trailing blanks are dropped
 * (libinih's line buffer); every number has a range, checked at load, and
 * a few keys are checked against each other (cross_checks below).
 *
 * Failure: the first error stops parsing and is described in err as
 *   FILE:LINE: key: bad value "x" (expected ...)
 *   FILE:LINE: key: unknown key in [section]
 *   FILE:LINE: [name]: unknown section
 *   FILE:LINE: syntax error
 *   FILE[:LINE]: key: ... (a cross-key error, at the line that set the key)
 * Values and names from the file are escaped (\xNN for control and non-ASCII
 * bytes) and cut at ESC_MAX bytes with "...". *out is written only on
 * success, so a reload that fails keeps the last good configuration.
 *
 * Syntax:
 *   - [section] and key = value lines (key: value also works, as in inih);
 *     blanks around sections, keys and values are ignored, indentation too.
 *   - A line whose first non-blank character is ';' or '#' is a comment.
 *     After a value, only ';' preceded by a blank starts a comment
 *     (libinih's inline comments); '#' there is part of the value, so
 *     "interval_ms = 5 # s" is rejected as a bad value rather than guessed.
 *   - No continuation lines. A repeated key: the last one wins.
 *   - Strings: a value wrapped in double quotes loses them (no escapes);
 *     "" or nothing after '=' is the empty string, which disables the keys
 *     documented so. Control characters are refused.
 *   - Integers: decimal digits only, no sign. Sizes: an integer with an
 *     optional K, M, G (or KiB, MiB, GiB) suffix, powers of 1024, any case.
 *     Booleans: true/false, yes/no, on/off, 1/0. Modes: octal, <= 0777.
 *     Names (log_level, compress, fsync, mode) are matched in any case.
 *
 * Why our own line reader (ini_parse_stream): Debian's libinih 55 is built
 * without INI_HANDLER_LINENO, so the handler gets no line number; the reader
 * hands inih one line at a time and counts them, so the handler knows the
 * line it is called for. The reader also
 *   - drops leading blanks: inih takes an indented line after a key as a
 *     continuation of that key, so an indented key would silently become
 *     part of the previous value;
 *   - drops a UTF-8 BOM and blanks comment lines (a long comment is fine);
 *   - checks section headers itself, so that an unknown section with no key
 *     is reported at its own line, as is junk after ']';
 *   - refuses a line longer than inih's buffer, which inih would otherwise
 *     split and parse the tail of as a new line.
 * inih does not stop at its own syntax errors (only through a build option),
 * so a first pass with an accept-all handler finds the first syntax error
 * line, and the real pass stops there unless an earlier line failed.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent_proto.h"

#define CONFIG_MAX_FILE (1024 * 1024)
#define ESC_MAX 64
#define ESC_BUF (ESC_MAX * 4 + 4)
#define SOCK_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define HOST_MAX 253

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)
#define SZ(x) ((uint64_t)(x) > (uint64_t)SIZE_MAX ? (uint64_t)SIZE_MAX : (uint64_t)(x))

enum ktype {
	T_UINT, /* unsigned, decimal */
	T_INT, /* int, decimal */
	T_COUNT, /* size_t, decimal */
	T_SIZE, /* size_t, with suffix */
	T_SIZE64, /* uint64_t, with suffix */
	T_MODE, /* unsigned, octal */
	T_BOOL, /* bool */
	T_ENUM, /* int, index into names */
	T_STR, /* char *, see S_* */
};

enum {
	S_EMPTY = 1, /* "" allowed */
	S_SOCKET = 2, /* fits sun_path */
	S_URL = 4, /* http:// or https:// */
	S_HOST = 8, /* host name characters */
};

enum key_id {
	K_AGENTD_LOG_LEVEL,
	K_AGENTD_SHUTDOWN_TIMEOUT_MS,
	K_AGENTD_HOSTNAME,
	K_INGEST_SOCKET,
	K_INGEST_SOCKET_MODE,
	K_INGEST_STREAM_SOCKET,
	K_INGEST_STREAM_SOCKET_MODE,
	K_INGEST_MAX_RECORD_BYTES,
	K_INGEST_RECEIVE_BUFFER_BYTES,
	K_INGEST_MAX_STREAM_CLIENTS,
	K_UPSTREAM_URL,
	K_UPSTREAM_TIMEOUT_MS,
	K_UPSTREAM_CONNECT_TIMEOUT_MS,
	K_UPSTREAM_MAX_INFLIGHT,
	K_UPSTREAM_TOKEN_FILE,
	K_UPSTREAM_CA_FILE,
	K_UPSTREAM_TLS_VERIFY,
	K_BATCH_MAX_RECORDS,
	K_BATCH_MAX_BYTES,
	K_BATCH_INTERVAL_MS,
	K_BATCH_COMPRESS,
	K_BATCH_COMPRESS_MIN_RECORDS,
	K_BATCH_GZIP_LEVEL,
	K_RETRY_MAX_RETRIES,
	K_RETRY_INITIAL_BACKOFF_MS,
	K_RETRY_MAX_BACKOFF_MS,
	K_QUEUE_MAX_RECORDS,
	K_QUEUE_MAX_BYTES,
	K_SPOOL_DIR,
	K_SPOOL_MAX_BYTES,
	K_SPOOL_FSYNC,
	K_SPOOL_FSYNC_INTERVAL_MS,
	K_SPOOL_MODE,
	K_SPOOL_SEGMENT_BYTES,
	K_CONTROL_SOCKET,
	K_CONTROL_SOCKET_MODE,
	K_CONTROL_MAX_CLIENTS,
	N_KEYS
};

struct key {
	const char *section;
	const char *name;
	enum ktype type;
	size_t off;
	uint64_t min, max, def; /* numbers, booleans, enums */
	const char *sdef; /* T_STR default */
	const char *const *names; /* T_ENUM, NULL-terminated, in value order */
	unsigned flags; /* T_STR: S_* */
};

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const compress_modes[] = {"none", "gzip", NULL};
static const char *const fsync_modes[] = {"interval", "always", "never", NULL};
static const char *const spool_modes[] = {"on-failure", "always", NULL};

#define KEY(s, n, t, lo, hi, d)                                                                                        \
	{                                                                                                              \
#s, #n, t, offsetof(struct config, s.n), lo, hi, d, NULL, NULL, 0                                      \
	}
#define ENUMKEY(s, n, tab, d)                                                                                          \
	{                                                                                                              \
#s, #n, T_ENUM, offsetof(struct config, s.n), 0, 0, d, NULL, tab, 0                                    \
	}
#define STRKEY(s, n, d, f)                                                                                             \
	{                                                                                                              \
#s, #n, T_STR, offsetof(struct config, s.n), 0, 0, 0, d, NULL, f                                       \
	}

static const struct key keys[N_KEYS] = {
	[K_AGENTD_LOG_LEVEL] = ENUMKEY(agentd, log_level, log_levels, 1),
	[K_AGENTD_SHUTDOWN_TIMEOUT_MS] = KEY(agentd, shutdown_timeout_ms, T_UINT, 0, 600000, 10000),
	[K_AGENTD_HOSTNAME] = STRKEY(agentd, hostname, "", S_EMPTY | S_HOST),
	[K_INGEST_SOCKET] = STRKEY(ingest, socket, "/run/agentd/agentd.sock", S_SOCKET),
	[K_INGEST_SOCKET_MODE] = KEY(ingest, socket_mode, T_MODE, 0, 0777, 0666),
	[K_INGEST_STREAM_SOCKET] = STRKEY(ingest, stream_socket, "/run/agentd/agentd.stream", S_EMPTY | S_SOCKET),
	[K_INGEST_STREAM_SOCKET_MODE] = KEY(ingest, stream_socket_mode, T_MODE, 0, 0777, 0666),
	[K_INGEST_MAX_RECORD_BYTES] = KEY(ingest, max_record_bytes, T_SIZE, 1 * KIB, AP_MAX_FRAME, AP_MAX_FRAME),
	[K_INGEST_RECEIVE_BUFFER_BYTES] = KEY(ingest, receive_buffer_bytes, T_SIZE, 4 * KIB, 1 * GIB, 8 * MIB),
	[K_INGEST_MAX_STREAM_CLIENTS] = KEY(ingest, max_stream_clients, T_UINT, 1, 65536, 256),
	[K_UPSTREAM_URL] = STRKEY(upstream, url, "http://127.0.0.1:8000/logs", S_URL),
	[K_UPSTREAM_TIMEOUT_MS] = KEY(upstream, timeout_ms, T_UINT, 100, 3600000, 10000),
	[K_UPSTREAM_CONNECT_TIMEOUT_MS] = KEY(upstream, connect_timeout_ms, T_UINT, 100, 3600000, 3000),
	[K_UPSTREAM_MAX_INFLIGHT] = KEY(upstream, max_inflight, T_UINT, 1, 64, 4),
	[K_UPSTREAM_TOKEN_FILE] = STRKEY(upstream, token_file, "", S_EMPTY),
	[K_UPSTREAM_CA_FILE] = STRKEY(upstream, ca_file, "", S_EMPTY),
	[K_UPSTREAM_TLS_VERIFY] = KEY(upstream, tls_verify, T_BOOL, 0, 1, 1),
	[K_BATCH_MAX_RECORDS] = KEY(batch, max_records, T_UINT, 1, 100000, 1000),
	[K_BATCH_MAX_BYTES] = KEY(batch, max_bytes, T_SIZE, 1 * KIB, 256 * MIB, 4 * MIB),
	[K_BATCH_INTERVAL_MS] = KEY(batch, interval_ms, T_UINT, 1, 3600000, 1000),
	[K_BATCH_COMPRESS] = ENUMKEY(batch, compress, compress_modes, COMPRESS_GZIP),
	[K_BATCH_COMPRESS_MIN_RECORDS] = KEY(batch, compress_min_records, T_UINT, 0, 100000, 100),
	[K_BATCH_GZIP_LEVEL] = KEY(batch, gzip_level, T_INT, 1, 9, 1),
	[K_RETRY_MAX_RETRIES] = KEY(retry, max_retries, T_UINT, 0, 100, 3),
	[K_RETRY_INITIAL_BACKOFF_MS] = KEY(retry, initial_backoff_ms, T_UINT, 1, 3600000, 1000),
	[K_RETRY_MAX_BACKOFF_MS] = KEY(retry, max_backoff_ms, T_UINT, 1, 3600000, 30000),
	[K_QUEUE_MAX_RECORDS] = KEY(queue, max_records, T_COUNT, 1, SZ(100000000), 100000),
	[K_QUEUE_MAX_BYTES] = KEY(queue, max_bytes, T_SIZE, 1 * KIB, SZ(64 * GIB), 32 * MIB),
	[K_SPOOL_DIR] = STRKEY(spool, dir, "/var/lib/agentd/spool", S_EMPTY),
	[K_SPOOL_MAX_BYTES] = KEY(spool, max_bytes, T_SIZE64, 64 * KIB, 16384 * GIB, 1 * GIB),
	[K_SPOOL_FSYNC] = ENUMKEY(spool, fsync, fsync_modes, FSYNC_INTERVAL),
	[K_SPOOL_FSYNC_INTERVAL_MS] = KEY(spool, fsync_interval_ms, T_UINT, 1, 3600000, 1000),
	[K_SPOOL_MODE] = ENUMKEY(spool, mode, spool_modes, SPOOL_ON_FAILURE),
	[K_SPOOL_SEGMENT_BYTES] = KEY(spool, segment_bytes, T_SIZE, 64 * KIB, 1 * GIB, 8 * MIB),
	[K_CONTROL_SOCKET] = STRKEY(control, socket, "/run/agentd/control.sock", S_EMPTY | S_SOCKET),
	[K_CONTROL_SOCKET_MODE] = KEY(control, socket_mode, T_MODE, 0, 0777, 0660),
	[K_CONTROL_MAX_CLIENTS] = KEY(control, max_clients, T_UINT, 1, 1024, 16),
};

static const char *const sections[] = {"agentd", "ingest", "upstream", "batch", "retry", "queue", "spool", "control"};

struct parser {
	struct config *c;
	const char *name; /* file name for messages */
	const char *pos, *end; /* text not yet handed to inih */
	unsigned line; /* the line last handed to inih */
	unsigned stop_line; /* first syntax error (first pass), 0 if none */
	bool first_pass;
	int err; /* 0, -EINVAL or -ENOMEM */
	char *msg;
	size_t msglen;
	unsigned key_line[N_KEYS]; /* where each key was last set, 0: default */
};

/* ---- messages ---------------------------------------------------------- */

/* Quote-safe copy of s for a message: at most ESC_MAX bytes of s, control,
 * non-ASCII, '"' and '\' bytes escaped, "..." when cut. */
static const char *esc(char *dst, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i;

	for (i = 0; i < ESC_MAX && s[i]; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\') {
			dst[o++] = '\\';
			dst[o++] = (char)ch;
		} else if (ch < 0x20 || ch >= 0x7f) {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[ch >> 4];
			dst[o++] = hex[ch & 15];
		} else {
			dst[o++] = (char)ch;
		}
	}
	if (s[i]) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o] = '\0';
	return dst;
}

static void vmsg(char *msg, size_t msglen, const char *name, unsigned line, const char *fmt, va_list ap)
	__attribute__((format(printf, 5, 0)));

static void vmsg(char *msg, size_t msglen, const char *name, unsigned line, const char *fmt, va_list ap)
{
	int n;

	if (!msg || msglen == 0)
		return;
	if (line)
		n = snprintf(msg, msglen, "%s:%u: ", name, line);
	else
		n = snprintf(msg, msglen, "%s: ", name);
	if (n >= 0 && (size_t)n < msglen)
		vsnprintf(msg + n, msglen - (size_t)n, fmt, ap);
}

/* Record the first error only; at line 0 the message has no line number. */
static void fail_at(struct parser *p, int err, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail_at(struct parser *p, int err, unsigned line, const char *fmt, ...)
{
	va_list ap;

	if (p->err)
		return;
	p->err = err;
	va_start(ap, fmt);
	vmsg(p->msg, p->msglen, p->name, line, fmt, ap);
	va_end(ap);
}

static void set_msg(char *msg, size_t msglen, const char *name, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void set_msg(char *msg, size_t msglen, const char *name, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vmsg(msg, msglen, name, 0, fmt, ap);
	va_end(ap);
}

/* 1048576 -> "1M"; sizes in messages read as written in the file. */
static const char *fmt_size(char *dst, size_t len, uint64_t v)
{
	if (v && v % GIB == 0)
		snprintf(dst, len, "%lluG", (unsigned long long)(v / GIB));
	else if (v && v % MIB == 0)
		snprintf(dst, len, "%lluM", (unsigned long long)(v / MIB));
	else if (v && v % KIB == 0)
		snprintf(dst, len, "%lluK", (unsigned long long)(v / KIB));
	else
		snprintf(dst, len, "%llu", (unsigned long long)v);
	return dst;
}

/* The "(expected ...)" text of key k. */
static void expected(const struct key *k, char *dst, size_t len)
{
	char a[32], b[32];
	size_t o = 0;
	int i;

	switch (k->type) {
	case T_UINT:
	case T_INT:
	case T_COUNT:
		snprintf(dst, len, "an integer %llu..%llu", (unsigned long long)k->min, (unsigned long long)k->max);
		break;
	case T_SIZE:
	case T_SIZE64:
		snprintf(dst, len, "a size %s..%s with an optional K, M or G suffix", fmt_size(a, sizeof(a), k->min),
			 fmt_size(b, sizeof(b), k->max));
		break;
	case T_MODE:
		snprintf(dst, len, "an octal mode %04llo..%04llo", (unsigned long long)k->min,
			 (unsigned long long)k->max);
		break;
	case T_BOOL:
		snprintf(dst, len, "true, false, yes, no, on, off, 1 or 0");
		break;
	case T_ENUM:
		dst[0] = '\0';
		for (i = 0; k->names[i] && o < len; i++) {
			const char *sep = i == 0 ? "" : k->names[i + 1] ? ", " : " or ";
			int n = snprintf(dst + o, len - o, "%s%s", sep, k->names[i]);
			if (n < 0)
				break;
			o += (size_t)n;
		}
		break;
	case T_STR:
		if (k->flags & S_URL)
			snprintf(dst, len, "an http:// or https:// URL");
		else if (k->flags & S_HOST)
			snprintf(dst, len,
				 "a host name of letters, digits, '-', '.' and '_', at most %d bytes, or \"\"",
				 HOST_MAX);
		else if ((k->flags & S_SOCKET) && (k->flags & S_EMPTY))
			snprintf(dst, len, "a socket path of at most %zu bytes, or \"\" for none", SOCK_PATH_MAX);
		else if (k->flags & S_SOCKET)
			snprintf(dst, len, "a socket path of 1..%zu bytes", SOCK_PATH_MAX);
		else
			snprintf(dst, len, "a path, or \"\" for none");
		break;
	}
}

static void bad_value(struct parser *p, const struct key *k, const char *value)
{
	char v[ESC_BUF], want[160];

	expected(k, want, sizeof(want));
	fail_at(p, -EINVAL, p->line, "%s: bad value \"%s\" (expected %s)", k->name, esc(v, value), want);
}

/* ---- values ------------------------------------------------------------ */

static int parse_u64(const char *s, bool suffix, uint64_t *out)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL; /* no sign, no blank, not empty */
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (suffix && *end) {
		const char *u = end;
		while (*u == ' ' || *u == '\t')
			u++;
		switch (tolower((unsigned char)*u)) {
		case 'k':
			shift = 10;
			break;
		case 'm':
			shift = 20;
			break;
		case 'g':
			shift = 30;
			break;
		default:
			return -EINVAL;
		}
		u++;
		if (strcasecmp(u, "ib") == 0)
			u += 2;
		if (*u)
			return -EINVAL;
		if (v > (UINT64_MAX >> shift))
			return -ERANGE;
		v <<= shift;
	} else if (*end) {
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int parse_mode(const char *s, uint64_t *out)
{
	unsigned long long v;
	const char *q;
	char *end;

	if (!*s)
		return -EINVAL;
	for (q = s; *q; q++)
		if (*q < '0' || *q > '7')
			return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 8);
	if (errno == ERANGE || *end)
		return -EINVAL;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, uint64_t *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	size_t i;

	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_enum(const struct key *k, const char *s, uint64_t *out)
{
	uint64_t i;

	for (i = 0; k->names[i]; i++) {
		if (strcasecmp(s, k->names[i]) == 0) {
			*out = i;
			return 0;
		}
	}
	return -EINVAL;
}

static bool str_ok(const struct key *k, const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	if (n == 0)
		return (k->flags & S_EMPTY) != 0;
	if ((k->flags & S_SOCKET) && n > SOCK_PATH_MAX)
		return false;
	if (k->flags & S_HOST) {
		if (n > HOST_MAX)
			return false;
		for (i = 0; i < n; i++)
			if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.' && s[i] != '_')
				return false;
	}
	if (k->flags & S_URL) {
		size_t pre;
		if (strncasecmp(s, "http://", 7) == 0)
			pre = 7;
		else if (strncasecmp(s, "https://", 8) == 0)
			pre = 8;
		else
			return false;
		if (n == pre || s[pre] == '/')
			return false; /* no host */
		for (i = pre; i < n; i++)
			if (s[i] == ' ')
				return false;
	}
	return true;
}

static void store_num(struct config *c, const struct key *k, uint64_t v)
{
	char *f = (char *)c + k->off;

	switch (k->type) {
	case T_UINT:
	case T_MODE:
		*(unsigned *)(void *)f = (unsigned)v;
		break;
	case T_INT:
	case T_ENUM:
		*(int *)(void *)f = (int)v;
		break;
	case T_COUNT:
	case T_SIZE:
		*(size_t *)(void *)f = (size_t)v;
		break;
	case T_SIZE64:
		*(uint64_t *)(void *)f = v;
		break;
	case T_BOOL:
		*(bool *)(void *)f = v != 0;
		break;
	case T_STR:
		break;
	}
}

static uint64_t load_num(const struct config *c, enum key_id id)
{
	const char *f = (const char *)c + keys[id].off;

	switch (keys[id].type) {
	case T_UINT:
	case T_MODE:
		return *(const unsigned *)(const void *)f;
	case T_INT:
	case T_ENUM:
		return (uint64_t) * (const int *)(const void *)f;
	case T_COUNT:
	case T_SIZE:
		return *(const size_t *)(const void *)f;
	case T_SIZE64:
		return *(const uint64_t *)(const void *)f;
	case T_BOOL:
		return *(const bool *)(const void *)f;
	case T_STR:
		break;
	}
	return 0;
}

static char **str_field(struct config *c, const struct key *k)
{
	return (char **)(void *)((char *)c + k->off);
}

static const char *load_str(const struct config *c, enum key_id id)
{
	return *(char *const *)(const void *)((const char *)c + keys[id].off);
}

static int set_str(struct config *c, const struct key *k, const char *s, size_t n)
{
	char **f = str_field(c, k);
	char *dup = strndup(s, n);

	if (!dup)
		return -ENOMEM;
	free(*f);
	*f = dup;
	return 0;
}

/* Parse value for key k into p->c; 0, or fail_at() and a negative errno. */
static int set_value(struct parser *p, const struct key *k, const char *value)
{
	uint64_t v = 0;
	int r;

	switch (k->type) {
	case T_UINT:
	case T_INT:
	case T_COUNT:
		r = parse_u64(value, false, &v);
		break;
	case T_SIZE:
	case T_SIZE64:
		r = parse_u64(value, true, &v);
		break;
	case T_MODE:
		r = parse_mode(value, &v);
		break;
	case T_BOOL:
		r = parse_bool(value, &v);
		break;
	case T_ENUM:
		r = parse_enum(k, value, &v);
		break;
	case T_STR: {
		size_t n = strlen(value);
		const char *s = value;
		if (n >= 2 && s[0] == '"' && s[n - 1] == '"') {
			s++;
			n -= 2;
		}
		if (!str_ok(k, s, n)) {
			bad_value(p, k, value);
			return -EINVAL;
		}
		r = set_str(p->c, k, s, n);
		if (r < 0)
			fail_at(p, r, p->line, "out of memory");
		return r;
	}
	default:
		r = -EINVAL;
	}
	if (r == 0 && k->type != T_ENUM && (v < k->min || v > k->max))
		r = -ERANGE;
	if (r < 0) {
		bad_value(p, k, value);
		return -EINVAL;
	}
	store_num(p->c, k, v);
	return 0;
}

/* ---- inih glue --------------------------------------------------------- */

static const struct key *find_key(const char *section, const char *name)
{
	size_t i;

	for (i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].section, section) == 0 && strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

static int handler(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	const struct key *k;
	char a[ESC_BUF], b[ESC_BUF];

	if (p->first_pass)
		return 1;
	if (p->err)
		return 0;
	if (!*name) {
		fail_at(p, -EINVAL, p->line, "syntax error"); /* "= value" */
		return 0;
	}
	k = find_key(section, name);
	if (!k) {
		fail_at(p, -EINVAL, p->line, "%s: unknown key in [%s]", esc(a, name), esc(b, section));
		return 0;
	}
	if (set_value(p, k, value ? value : "") < 0)
		return 0;
	p->key_line[k - keys] = p->line;
	return 1;
}

static bool is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/*
 * A section header s[0..n) (s[0] == '['). Without ']' (before an inline
 * comment, as inih looks for it) it is left to inih, which calls it a syntax
 * error. Otherwise only blanks or a comment may follow, and the name must be
 * known. Returns 0, or -1 after fail_at().
 */
static int check_section(struct parser *p, const char *s, size_t n)
{
	char name[ESC_BUF], v[ESC_BUF];
	size_t i, j, len;
	bool was_blank = false;

	for (i = 1; i < n && s[i] != ']'; i++) {
		if (was_blank && s[i] == ';')
			return 0;
		was_blank = is_blank(s[i]);
	}
	if (i == n)
		return 0;
	for (j = i + 1; j < n && is_blank(s[j]); j++)
		;
	if (j < n && s[j] != ';' && s[j] != '#') {
		fail_at(p, -EINVAL, p->line, "syntax error");
		return -1;
	}
	len = i - 1;
	for (j = 0; j < sizeof(sections) / sizeof(sections[0]); j++)
		if (strlen(sections[j]) == len && memcmp(sections[j], s + 1, len) == 0)
			return 0;
	len = len < ESC_MAX ? len : ESC_MAX;
	memcpy(v, s + 1, len);
	v[len] = '\0';
	esc(name, v);
	fail_at(p, -EINVAL, p->line, "[%s%s]: unknown section", name, i - 1 > ESC_MAX ? "..." : "");
	return -1;
}

/* inih's fgets: one line per call, see the comment at the top. */
static char *reader(char *str, int num, void *stream)
{
	struct parser *p = stream;
	const char *s, *e, *nl;
	size_t n;

	if (p->err || p->pos >= p->end)
		return NULL;
	if (num < 3) {
		fail_at(p, -EINVAL, p->line + 1, "syntax error (line buffer too small)");
		return NULL;
	}
	s = p->pos;
	nl = memchr(s, '\n', (size_t)(p->end - s));
	e = nl ? nl : p->end;
	p->pos = nl ? nl + 1 : p->end;
	p->line++;
	if (p->line == p->stop_line) {
		fail_at(p, -EINVAL, p->line, "syntax error");
		return NULL;
	}
	if (p->line == 1 && e - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	while (s < e && is_blank(*s))
		s++;
	while (e > s && is_blank(e[-1]))
		e--;
	n = (size_t)(e - s);
	if (n == 0 || *s == ';' || *s == '#') {
		n = 0;
	} else if (n > (size_t)num - 2) {
		fail_at(p, -EINVAL, p->line, "syntax error (line longer than %d bytes)", num - 2);
		return NULL;
	} else if (*s == '[' && check_section(p, s, n) < 0) {
		return NULL;
	}
	memcpy(str, s, n);
	str[n] = '\n'; /* a full line, so inih never asks for the rest of it */
	str[n + 1] = '\0';
	return str;
}

/* ---- cross-key checks -------------------------------------------------- */

/* value(big) >= value(small) must hold. */
static const struct {
	enum key_id big, small;
} at_least[] = {
	{K_RETRY_MAX_BACKOFF_MS, K_RETRY_INITIAL_BACKOFF_MS},
	{K_UPSTREAM_TIMEOUT_MS, K_UPSTREAM_CONNECT_TIMEOUT_MS},
	{K_INGEST_RECEIVE_BUFFER_BYTES, K_INGEST_MAX_RECORD_BYTES},
	{K_BATCH_MAX_BYTES, K_INGEST_MAX_RECORD_BYTES},
	{K_QUEUE_MAX_RECORDS, K_BATCH_MAX_RECORDS},
	{K_QUEUE_MAX_BYTES, K_BATCH_MAX_BYTES},
	{K_SPOOL_SEGMENT_BYTES, K_BATCH_MAX_BYTES},
	{K_SPOOL_MAX_BYTES, K_SPOOL_SEGMENT_BYTES},
};

static const struct {
	enum key_id a, b;
} distinct[] = {
	{K_INGEST_SOCKET, K_INGEST_STREAM_SOCKET},
	{K_INGEST_SOCKET, K_CONTROL_SOCKET},
	{K_INGEST_STREAM_SOCKET, K_CONTROL_SOCKET},
};

/*
 * The error names the key of the pair set last in the file (the one the
 * reader most likely just changed), at its line; line 0 if both are
 * defaults. Returns 0 or -EINVAL after fail_at().
 */
static int cross_checks(struct parser *p)
{
	const struct config *c = p->c;
	char v[ESC_BUF];
	size_t i;

	for (i = 0; i < sizeof(at_least) / sizeof(at_least[0]); i++) {
		enum key_id big = at_least[i].big, small = at_least[i].small;
		unsigned long long vb = load_num(c, big), vs = load_num(c, small);
		if (vb >= vs)
			continue;
		if (p->key_line[small] > p->key_line[big])
			fail_at(p, -EINVAL, p->key_line[small], "%s: %llu is greater than [%s] %s (%llu)",
				keys[small].name, vs, keys[big].section, keys[big].name, vb);
		else
			fail_at(p, -EINVAL, p->key_line[big], "%s: %llu is less than [%s] %s (%llu)", keys[big].name,
				vb, keys[small].section, keys[small].name, vs);
		return -EINVAL;
	}
	for (i = 0; i < sizeof(distinct) / sizeof(distinct[0]); i++) {
		enum key_id a = distinct[i].a, b = distinct[i].b, t;
		if (!*load_str(c, a) || strcmp(load_str(c, a), load_str(c, b)) != 0)
			continue;
		if (p->key_line[a] > p->key_line[b]) {
			t = a;
			a = b;
			b = t;
		}
		fail_at(p, -EINVAL, p->key_line[b], "%s: \"%s\" is also [%s] %s", keys[b].name, esc(v, load_str(c, b)),
			keys[a].section, keys[a].name);
		return -EINVAL;
	}
	if (c->spool.mode == SPOOL_ALWAYS && !*c->spool.dir) {
		enum key_id k = p->key_line[K_SPOOL_DIR] > p->key_line[K_SPOOL_MODE] ? K_SPOOL_DIR : K_SPOOL_MODE;
		fail_at(p, -EINVAL, p->key_line[k], "%s: [spool] mode = always needs a [spool] dir", keys[k].name);
		return -EINVAL;
	}
	return 0;
}

/* ---- public ------------------------------------------------------------ */

void config_free(struct config *c)
{
	size_t i;

	if (!c)
		return;
	for (i = 0; i < N_KEYS; i++) {
		if (keys[i].type == T_STR) {
			char **f = str_field(c, &keys[i]);
			free(*f);
			*f = NULL;
		}
	}
	free(c->path);
	c->path = NULL;
}

int config_defaults(struct config *c)
{
	size_t i;

	if (!c)
		return -EINVAL;
	memset(c, 0, sizeof(*c));
	for (i = 0; i < N_KEYS; i++) {
		if (keys[i].type != T_STR) {
			store_num(c, &keys[i], keys[i].def);
		} else if (set_str(c, &keys[i], keys[i].sdef, strlen(keys[i].sdef)) < 0) {
			config_free(c);
			return -ENOMEM;
		}
	}
	return 0;
}

/* Parse text[0..len) (no NUL inside) over the defaults into *out. */
static void parser_start(struct parser *p, struct config *c, const char *name, const char *text, size_t len)
{
	memset(p, 0, sizeof *p);
	p->c = c;
	p->name = name;
	p->pos = text;
	p->end = text + len;
}

static int parse_text(struct config *out, const char *text, size_t len, const char *name, char *err, size_t errlen)
{
	struct config tmp;
	struct parser p;
	int r;

	if (config_defaults(&tmp) < 0) {
		set_msg(err, errlen, name, "out of memory");
		return -ENOMEM;
	}
	tmp.path = strdup(name);
	if (!tmp.path) {
		config_free(&tmp);
		set_msg(err, errlen, name, "out of memory");
		return -ENOMEM;
	}

	/* Pass 1: where is inih's first syntax error? */
	parser_start(&p, &tmp, name, text, len);
	p.first_pass = true;
	r = ini_parse_stream(reader, &p, handler, &p);
	if (r == -2) {
		config_free(&tmp);
		set_msg(err, errlen, name, "out of memory");
		return -ENOMEM;
	}

	/* Pass 2: the real one, stopping at that line at the latest. */
	parser_start(&p, &tmp, name, text, len);
	p.stop_line = r > 0 ? (unsigned)r : 0;
	p.msg = err;
	p.msglen = errlen;
	r = ini_parse_stream(reader, &p, handler, &p);
	if (!p.err && r == -2)
		fail_at(&p, -ENOMEM, 0, "out of memory");
	else if (!p.err && r > 0)
		fail_at(&p, -EINVAL, (unsigned)r, "syntax error");
	else if (!p.err && r < 0)
		fail_at(&p, -EIO, 0, "cannot parse");
	if (!p.err)
		cross_checks(&p);
	if (p.err) {
		config_free(&tmp);
		return p.err;
	}
	*out = tmp;
	return 0;
}

int config_parse_string(struct config *out, const char *text, const char *name, char *err, size_t errlen)
{
	if (!name)
		name = "<string>";
	if (!out || !text) {
		set_msg(err, errlen, name, "invalid argument");
		return -EINVAL;
	}
	return parse_text(out, text, strlen(text), name, err, errlen);
}

/* Read all of fd, at most CONFIG_MAX_FILE bytes. */
static int read_all(int fd, char **buf, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = malloc(cap), *nb;
	ssize_t got;

	if (!b)
		return -ENOMEM;
	for (;;) {
		if (n == cap) {
			if (cap > CONFIG_MAX_FILE) {
				free(b);
				return -EFBIG;
			}
			cap *= 2;
			nb = realloc(b, cap);
			if (!nb) {
				free(b);
				return -ENOMEM;
			}
			b = nb;
		}
		got = read(fd, b + n, cap - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			int r = -errno;
			free(b);
			return r;
		}
		if (got == 0)
			break;
		n += (size_t)got;
	}
	if (n > CONFIG_MAX_FILE) {
		free(b);
		return -EFBIG;
	}
	*buf = b;
	*len = n;
	return 0;
}

int config_load(struct config *out, const char *path, char *err, size_t errlen)
{
	char *buf = NULL;
	const char *nul;
	size_t len = 0;
	int fd, r;

	if (!out || !path) {
		set_msg(err, errlen, path ? path : "<null>", "invalid argument");
		return -EINVAL;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		r = -errno;
		set_msg(err, errlen, path, "cannot open: %s", strerror(-r));
		return r;
	}
	r = read_all(fd, &buf, &len);
	close(fd);
	if (r == -EFBIG) {
		set_msg(err, errlen, path, "larger than %d bytes", CONFIG_MAX_FILE);
		return r;
	}
	if (r < 0) {
		set_msg(err, errlen, path, "cannot read: %s", strerror(-r));
		return r;
	}
	nul = memchr(buf, '\0', len);
	if (nul) {
		unsigned line = 1;
		const char *q;
		for (q = buf; q < nul; q++)
			line += *q == '\n';
		free(buf);
		if (err && errlen)
			snprintf(err, errlen, "%s:%u: syntax error (NUL byte)", path, line);
		return -EINVAL;
	}
	r = parse_text(out, buf, len, path, err, errlen);
	free(buf);
	return r;
}
