/*
 * map: one decoded record -> one JSON object for the upstream's POST /logs.
 *
 * Owns: nothing; a pure function of its arguments, safe to call from any
 * number of threads at once. Writes JSON directly into the caller's buffer
 * (no object model): three cheap passes over the fields, (1) choose the
 * level and the field that fills each column, (2) write the header keys and
 * the columns, (3) write everything else into "metadata".
 *
 * Output: {"level":..,"message":..,"created_at":..,<columns>,"metadata":{..}}
 * with the columns in a fixed order (the table below). Every string is valid
 * UTF-8 without NUL; every column has the JSON type, enum value and length
 * UPSTREAM.md demands; a value that cannot go into its column goes into
 * metadata under its own key, untouched but for the UTF-8 repair.
 *
 * Metadata keys are unique: a key that repeats one already written (two
 * "level" fields that name no level, a column key given three times, "pid"
 * next to a literal "client_pid") is written as KEY#2, KEY#3, ... so that
 * no value is lost when the server stores the object as JSONB.
 *
 * Limits: the buffer's cap; up to 65535 fields (a table of metadata keys is
 * kept on the stack for up to 32 fields, on the heap above).
 * Failure: -ENOMEM (buffer cap reached, or the key table could not be
 * allocated), with out->len restored and the counters untouched.
 *
 * Numbers are written in the C locale's format: the daemon must not switch
 * LC_NUMERIC (snprintf/strtod are used for doubles).
 */
#include "map.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                                                       \
	do {                                                                                                           \
		if ((x) < 0)                                                                                           \
			goto nomem;                                                                                    \
	} while (0)

/* ---- columns ----------------------------------------------------------- */

enum kind { K_ENUM_UPPER, K_ENUM_LOWER, K_VARCHAR, K_TEXT, K_DECIMAL };

static const char *const log_types[] = {"BACKEND", "FRONTEND", "MOBILE", "IOT", "WORKER", NULL};
static const char *const environments[] = {"production", "staging", "development", "test", "local", NULL};
static const char *const methods[] = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", NULL};

static const struct column {
	const char *name;
	uint8_t len;
	uint8_t kind;
	uint16_t limit; /* code points, K_VARCHAR */
	const char *const *values; /* K_ENUM_* */
} columns[] = {
#define COL(n, k, l, v)                                                                                                \
	{                                                                                                              \
		n, sizeof(n) - 1, k, l, v                                                                              \
	}
	COL("log_type", K_ENUM_UPPER, 0, log_types),
	COL("service", K_VARCHAR, 100, NULL),
	COL("environment", K_ENUM_LOWER, 0, environments),
	COL("service_version", K_VARCHAR, 50, NULL),
	COL("trace_id", K_VARCHAR, 32, NULL),
	COL("user_id", K_VARCHAR, 255, NULL),
	COL("session_id", K_VARCHAR, 100, NULL),
	COL("error_type", K_VARCHAR, 200, NULL),
	COL("stack_trace", K_TEXT, 0, NULL),
	COL("path", K_VARCHAR, 500, NULL),
	COL("method", K_ENUM_UPPER, 0, methods),
	COL("action_type", K_VARCHAR, 50, NULL),
	COL("function_name", K_VARCHAR, 300, NULL),
	COL("file_path", K_VARCHAR, 1000, NULL),
	COL("duration_ms", K_DECIMAL, 0, NULL),
#undef COL
};
#define NCOLS ((int)(sizeof columns / sizeof columns[0]))

/* DECIMAL(10,3): anything at or past this rounds to 10^7, which overflows. */
#define DURATION_BOUND 9999999.9995

/* Key classes besides a column index (0 .. NCOLS-1). */
enum {
	KEY_OTHER = -1,
	KEY_LEVEL = -2, /* "level" */
	KEY_RESERVED = -3, /* "message", "created_at", "metadata": top-level keys of ours */
	KEY_ORIGIN = -4, /* a trusted origin key: stored as client_<key> */
};

enum {
	C_LOG_TYPE,
	C_SERVICE,
	C_ENVIRONMENT,
	C_SERVICE_VERSION,
	C_TRACE_ID,
	C_USER_ID,
	C_SESSION_ID,
	C_ERROR_TYPE,
	C_STACK_TRACE,
	C_PATH,
	C_METHOD,
	C_ACTION_TYPE,
	C_FUNCTION_NAME,
	C_FILE_PATH,
	C_DURATION_MS,
};

/* The class of a key: a column index (the table above), or a KEY_* value. */
static int classify(const char *k, size_t klen)
{
#define IS(lit) (memcmp(k, lit, sizeof(lit) - 1) == 0)
	switch (klen) {
	case 3:
		return IS("pid") || IS("uid") || IS("gid") ? KEY_ORIGIN : KEY_OTHER;
	case 4:
		return IS("path") ? C_PATH : IS("host") ? KEY_ORIGIN : KEY_OTHER;
	case 5:
		return IS("level") ? KEY_LEVEL : KEY_OTHER;
	case 6:
		return IS("method") ? C_METHOD : KEY_OTHER;
	case 7:
		return IS("service")   ? C_SERVICE
		       : IS("user_id") ? C_USER_ID
		       : IS("message") ? KEY_RESERVED
		       : IS("process") ? KEY_ORIGIN
				       : KEY_OTHER;
	case 8:
		return IS("log_type")	? C_LOG_TYPE
		       : IS("trace_id") ? C_TRACE_ID
		       : IS("metadata") ? KEY_RESERVED
					: KEY_OTHER;
	case 9:
		return IS("file_path") ? C_FILE_PATH : IS("truncated") ? KEY_ORIGIN : KEY_OTHER;
	case 10:
		return IS("session_id")	  ? C_SESSION_ID
		       : IS("error_type") ? C_ERROR_TYPE
		       : IS("created_at") ? KEY_RESERVED
					  : KEY_OTHER;
	case 11:
		return IS("environment")   ? C_ENVIRONMENT
		       : IS("stack_trace") ? C_STACK_TRACE
		       : IS("action_type") ? C_ACTION_TYPE
		       : IS("duration_ms") ? C_DURATION_MS
					   : KEY_OTHER;
	case 13:
		return IS("function_name") ? C_FUNCTION_NAME : KEY_OTHER;
	case 15:
		return IS("service_version") ? C_SERVICE_VERSION : KEY_OTHER;
	default:
		return KEY_OTHER;
	}
#undef IS
}

/* ---- UTF-8 ------------------------------------------------------------- */

/*
 * s[0] >= 0x80. Returns the length of the well-formed sequence at s (at most
 * n bytes available), or 0 with *bad set to the length of the maximal
 * invalid subpart (Unicode 3.9, "U+FFFD substitution of maximal subparts").
 */
static inline size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned c = s[0], lo = 0x80, hi = 0xBF;
	size_t need;
	if (c >= 0xC2 && c <= 0xDF) {
		need = 1;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		if (c == 0xE0)
			lo = 0xA0; /* overlong */
		else if (c == 0xED)
			hi = 0x9F; /* surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		if (c == 0xF0)
			lo = 0x90; /* overlong */
		else if (c == 0xF4)
			hi = 0x8F; /* above U+10FFFF */
	} else {
		*bad = 1; /* continuation byte, C0/C1, F5..FF */
		return 0;
	}
	if (n < 2 || s[1] < lo || s[1] > hi) {
		*bad = 1;
		return 0;
	}
	for (size_t i = 2; i <= need; i++) {
		if (i >= n || (s[i] & 0xC0) != 0x80) {
			*bad = i;
			return 0;
		}
	}
	return need + 1;
}

size_t map_utf8_len(const unsigned char *s, size_t n)
{
	size_t bad;
	if (n == 0)
		return 0;
	return s[0] < 0x80 ? 1 : utf8_seq(s, n, &bad);
}

/* Code points in s once repaired, counting stops past stop. */
static size_t utf8_count(const char *str, size_t n, size_t stop)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, cp = 0;
	while (i < n && cp <= stop) {
		if (s[i] < 0x80) {
			i++;
		} else {
			size_t bad, l = utf8_seq(s + i, n - i, &bad);
			i += l ? l : bad;
		}
		cp++;
	}
	return cp;
}

/* Whether a string value fits a column of limit code points (after repair). */
static int fits(const char *s, size_t n, size_t limit)
{
	if (n <= limit)
		return 1; /* a code point takes at least one byte */
	if (n > 4 * limit)
		return 0; /* and at most four (a replaced subpart, at most three) */
	return utf8_count(s, n, limit) <= limit;
}

/* ---- JSON writers ------------------------------------------------------ */

static const char hex[] = "0123456789abcdef";

/* A byte that can be copied as it is: printable ASCII but '"' and '\\'. */
static inline int plain(unsigned c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* Whether any of 8 bytes is not plain (exact as a whole, not per byte). */
static inline int special8(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
	uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\');
	uint64_t t = ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((bs - ones) & ~bs) | x;
	return (t & high) != 0;
}

/*
 * Append s as the body of a JSON string (no quotes), repairing UTF-8 and
 * replacing NUL with U+FFFD. Sets *fixed when anything was replaced.
 */
int map_json_escape(struct buf *b, const char *str, size_t n, int *fixed)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;
	while (i < n) {
		while (n - i >= 8) {
			uint64_t x;
			memcpy(&x, s + i, 8);
			if (special8(x))
				break;
			i += 8;
		}
		if (i == n)
			break;
		unsigned c = s[i];
		if (plain(c)) {
			i++;
			continue;
		}
		size_t skip = 1;
		if (c >= 0x80) {
			size_t bad, l = utf8_seq(s + i, n - i, &bad);
			if (l) {
				i += l;
				continue;
			}
			skip = bad;
		}
		if (buf_append(b, s + run, i - run))
			return -ENOMEM;
		if (c >= 0x80 || c == 0) {
			if (buf_append(b, "\xEF\xBF\xBD", 3))
				return -ENOMEM;
			*fixed = 1;
		} else {
			char e[6] = {'\\', 0};
			size_t el = 2;
			switch (c) {
			case '"':
			case '\\':
				e[1] = (char)c;
				break;
			case '\n':
				e[1] = 'n';
				break;
			case '\t':
				e[1] = 't';
				break;
			case '\r':
				e[1] = 'r';
				break;
			case '\b':
				e[1] = 'b';
				break;
			case '\f':
				e[1] = 'f';
				break;
			default:
				memcpy(e + 1, "u00", 3);
				e[4] = hex[c >> 4];
				e[5] = hex[c & 15];
				el = 6;
				break;
			}
			if (buf_append(b, e, el))
				return -ENOMEM;
		}
		i += skip;
		run = i;
	}
	return buf_append(b, s + run, n - run);
}

static int put_str(struct buf *b, const char *s, size_t n, struct map_counts *c)
{
	int fixed = 0;
	if (buf_putc(b, '"') || map_json_escape(b, s, n, &fixed) || buf_putc(b, '"'))
		return -ENOMEM;
	c->invalid_utf8 += (uint64_t)fixed;
	return 0;
}

static const char digits2[] = "00010203040506070809101112131415161718192021222324"
			      "25262728293031323334353637383940414243444546474849"
			      "50515253545556575859606162636465666768697071727374"
			      "75767778798081828384858687888990919293949596979899";

/* Decimal digits of v, written backwards ending at end; returns the start. */
static char *fmt_u64(char *end, uint64_t v)
{
	while (v >= 100) {
		unsigned r = (unsigned)(v % 100);
		v /= 100;
		end -= 2;
		memcpy(end, digits2 + 2 * r, 2);
	}
	if (v >= 10) {
		end -= 2;
		memcpy(end, digits2 + 2 * v, 2);
	} else {
		*--end = (char)('0' + v);
	}
	return end;
}

/* v in decimal into dst (at least 21 bytes); returns the length. */
static size_t fmt_i64(char *dst, int64_t v)
{
	char tmp[24], *end = tmp + sizeof tmp;
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN too */
	char *p = fmt_u64(end, u);
	if (v < 0)
		*--p = '-';
	memcpy(dst, p, (size_t)(end - p));
	return (size_t)(end - p);
}

/*
 * A decimal that reads back as d (finite); dst >= 32. Most values in logs
 * have at most 6 decimals: n / 10^6 is then exactly d (the division is
 * correctly rounded, as strtod is), and the digits are written directly.
 * Otherwise the shortest of %.15g, %.16g, %.17g that reads back as d.
 */
static size_t fmt_double(char *dst, double d)
{
	double scaled = d * 1e6;
	if (scaled > -9007199254740992.0 && scaled < 9007199254740992.0) {
		int64_t n = (int64_t)scaled;
		if ((double)n == scaled && (double)n / 1e6 == d && !(d == 0 && signbit(d))) {
			uint64_t u = n < 0 ? 0 - (uint64_t)n : (uint64_t)n;
			char tmp[32], *end = tmp + sizeof tmp;
			uint64_t frac = u % 1000000;
			char *p = end;
			if (frac) {
				int digits = 6;
				while (frac % 10 == 0) {
					frac /= 10;
					digits--;
				}
				for (int i = 0; i < digits; i++) {
					*--p = (char)('0' + frac % 10);
					frac /= 10;
				}
				*--p = '.';
			}
			p = fmt_u64(p, u / 1000000);
			if (n < 0)
				*--p = '-';
			memcpy(dst, p, (size_t)(end - p));
			return (size_t)(end - p);
		}
	}
	int n = 0;
	for (int prec = 15; prec <= 17; prec++) {
		n = snprintf(dst, 32, "%.*g", prec, d);
		if (prec == 17 || strtod(dst, NULL) == d)
			break;
	}
	return (size_t)n;
}

static int put_i64(struct buf *b, int64_t v)
{
	char tmp[24];
	return buf_append(b, tmp, fmt_i64(tmp, v));
}

static int put_double(struct buf *b, double d)
{
	char tmp[32];
	return buf_append(b, tmp, fmt_double(tmp, d));
}

/* A JSON value for a metadata entry: any field, nothing lost. */
static int put_value(struct buf *b, const ap_field_t *f, struct map_counts *c)
{
	switch (f->type) {
	case AP_T_STRING:
		return put_str(b, f->v.s.ptr, f->v.s.len, c);
	case AP_T_INT64:
		return put_i64(b, f->v.i);
	case AP_T_DOUBLE:
		if (isnan(f->v.d))
			return buf_puts(b, "\"NaN\"");
		if (isinf(f->v.d))
			return f->v.d > 0 ? buf_puts(b, "\"Infinity\"") : buf_puts(b, "\"-Infinity\"");
		return put_double(b, f->v.d);
	default:
		return f->v.b ? buf_puts(b, "true") : buf_puts(b, "false");
	}
}

/* ---- column decisions -------------------------------------------------- */

static int ascii_ieq(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
		if (x >= 'A' && x <= 'Z')
			x = (unsigned char)(x + 32);
		if (y >= 'A' && y <= 'Z')
			y = (unsigned char)(y + 32);
		if (x != y)
			return 0;
	}
	return 1;
}

/* Index of the enum value s names (any case), or -1. */
static int enum_find(const char *const *values, const char *s, size_t n)
{
	for (int i = 0; values[i]; i++)
		if (strlen(values[i]) == n && ascii_ieq(values[i], s, n))
			return i;
	return -1;
}

/*
 * Whether f can go into column col as it is or by a lossless coercion; *v
 * receives the enum index for an enum column.
 */
static int column_accepts(const struct column *col, const ap_field_t *f, int *v)
{
	switch (col->kind) {
	case K_ENUM_UPPER:
	case K_ENUM_LOWER:
		if (f->type != AP_T_STRING)
			return 0;
		*v = enum_find(col->values, f->v.s.ptr, f->v.s.len);
		return *v >= 0;
	case K_VARCHAR:
	case K_TEXT:
		switch (f->type) {
		case AP_T_STRING:
			return col->kind == K_TEXT || fits(f->v.s.ptr, f->v.s.len, col->limit);
		case AP_T_INT64:
			return 1; /* at most 20 characters; every limit is above */
		case AP_T_DOUBLE:
			return isfinite(f->v.d); /* at most 24 characters */
		default:
			return 0;
		}
	default: /* K_DECIMAL */
		if (f->type == AP_T_INT64)
			return f->v.i > -10000000 && f->v.i < 10000000;
		return f->type == AP_T_DOUBLE && fabs(f->v.d) < DURATION_BOUND; /* false for NaN */
	}
}

static int put_column(struct buf *b, const struct column *col, const ap_field_t *f, int v, struct map_counts *c)
{
	CHECK(buf_putc(b, ','));
	CHECK(buf_putc(b, '"'));
	CHECK(buf_append(b, col->name, col->len));
	CHECK(buf_puts(b, "\":"));
	switch (col->kind) {
	case K_ENUM_UPPER:
	case K_ENUM_LOWER:
		CHECK(buf_putc(b, '"'));
		CHECK(buf_append(b, col->values[v], strlen(col->values[v])));
		return buf_putc(b, '"');
	case K_VARCHAR:
	case K_TEXT: {
		if (f->type == AP_T_STRING)
			return put_str(b, f->v.s.ptr, f->v.s.len, c);
		char tmp[32];
		size_t n = f->type == AP_T_INT64 ? fmt_i64(tmp, f->v.i) : fmt_double(tmp, f->v.d);
		c->coerced++;
		CHECK(buf_putc(b, '"'));
		CHECK(buf_append(b, tmp, n));
		return buf_putc(b, '"');
	}
	default:
		return f->type == AP_T_INT64 ? put_i64(b, f->v.i) : put_double(b, f->v.d);
	}
nomem:
	return -ENOMEM;
}

/* The level a "level" field names, or -1; *alias when not the canonical name. */
static int level_of(const ap_field_t *f, int *alias)
{
	int lv = -1;
	if (f->type == AP_T_STRING) {
		lv = ap_level_parse(f->v.s.ptr, f->v.s.len);
		if (lv >= 0) {
			const char *name = ap_level_name(lv);
			*alias = !(strlen(name) == f->v.s.len && memcmp(name, f->v.s.ptr, f->v.s.len) == 0);
		}
	} else if (f->type == AP_T_INT64) {
		lv = ap_level_from_syslog(f->v.i);
		*alias = 1;
	}
	return lv;
}

/* ---- metadata keys ----------------------------------------------------- */

/*
 * The metadata keys written so far, as offsets of their escaped text in the
 * output (escaping is canonical, so equal text means equal keys). Open
 * addressing; slots hold entry index + 1.
 */
struct keyent {
	size_t off;
	uint32_t len, hash;
	uint32_t next; /* next suffix to try for a repeat of this key */
};

#define KEYS_SMALL 32 /* entries on the stack */
#define KEYS_LINEAR 8 /* searched linearly up to this many */

struct keyset {
	struct keyent *ent;
	uint32_t *slot; /* NULL while searching linearly */
	uint32_t mask, n;
	void *heap;
	struct keyent ent_small[KEYS_SMALL];
	uint32_t slot_small[2 * KEYS_SMALL];
};

static int keyset_init(struct keyset *ks, uint32_t nfields)
{
	ks->n = 0;
	ks->heap = NULL;
	ks->slot = NULL;
	if (nfields <= KEYS_SMALL) {
		ks->ent = ks->ent_small;
		ks->mask = 2 * KEYS_SMALL - 1;
		return 0;
	}
	uint32_t size = 2 * KEYS_SMALL;
	while (size < 2 * nfields)
		size *= 2;
	ks->heap = calloc(1, nfields * sizeof(struct keyent) + size * sizeof(uint32_t));
	if (!ks->heap)
		return -ENOMEM;
	ks->ent = ks->heap;
	ks->slot = (uint32_t *)(ks->ent + nfields);
	ks->mask = size - 1;
	return 0;
}

static uint32_t hash_bytes(const char *p, size_t n)
{
	uint32_t h = 2166136261u; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)p[i]) * 16777619u;
	return h;
}

static void keyset_slot(struct keyset *ks, uint32_t idx)
{
	uint32_t i = ks->ent[idx].hash & ks->mask;
	while (ks->slot[i])
		i = (i + 1) & ks->mask;
	ks->slot[i] = idx + 1;
}

/* Index of the key whose text is at b->data + off, or -1. */
static long keyset_find(const struct keyset *ks, const struct buf *b, size_t off, uint32_t len)
{
	const char *k = b->data + off;
	if (!ks->slot) {
		for (uint32_t i = 0; i < ks->n; i++)
			if (ks->ent[i].len == len && memcmp(b->data + ks->ent[i].off, k, len) == 0)
				return i;
		return -1;
	}
	uint32_t h = hash_bytes(k, len);
	for (uint32_t i = h & ks->mask; ks->slot[i]; i = (i + 1) & ks->mask) {
		const struct keyent *e = &ks->ent[ks->slot[i] - 1];
		if (e->hash == h && e->len == len && memcmp(b->data + e->off, k, len) == 0)
			return ks->slot[i] - 1;
	}
	return -1;
}

static void keyset_add(struct keyset *ks, const struct buf *b, size_t off, uint32_t len)
{
	uint32_t idx = ks->n++;
	ks->ent[idx] = (struct keyent){off, len, 0, 2};
	if (!ks->slot && ks->n > KEYS_LINEAR) {
		/* switch to hashing (only a record of at most KEYS_SMALL fields gets here) */
		ks->slot = ks->slot_small;
		memset(ks->slot_small, 0, sizeof ks->slot_small);
		for (uint32_t i = 0; i < idx; i++) {
			ks->ent[i].hash = hash_bytes(b->data + ks->ent[i].off, ks->ent[i].len);
			keyset_slot(ks, i);
		}
	}
	if (ks->slot) {
		ks->ent[idx].hash = hash_bytes(b->data + off, len);
		keyset_slot(ks, idx);
	}
}

/*
 * Append the key of a metadata entry, "prefix+key":, made unique by a #N
 * suffix when it repeats an earlier one.
 */
static int put_meta_key(struct buf *b, struct keyset *ks, const char *prefix, const char *key, size_t klen,
			struct map_counts *c)
{
	int fixed = 0;
	CHECK(buf_putc(b, '"'));
	size_t off = b->len;
	if (prefix)
		CHECK(buf_append(b, prefix, strlen(prefix)));
	CHECK(map_json_escape(b, key, klen, &fixed));
	c->invalid_utf8 += (uint64_t)fixed;
	uint32_t len = (uint32_t)(b->len - off);
	long i = keyset_find(ks, b, off, len);
	if (i >= 0) {
		/* A repeat: try base#N from where the last repeat of base stopped. */
		struct keyent *base = &ks->ent[i];
		c->duplicate_keys++;
		do {
			char tmp[24];
			tmp[0] = '#';
			size_t n = 1 + fmt_i64(tmp + 1, base->next++);
			b->len = off + len;
			CHECK(buf_append(b, tmp, n));
		} while (keyset_find(ks, b, off, (uint32_t)(b->len - off)) >= 0);
		len = (uint32_t)(b->len - off);
	}
	keyset_add(ks, b, off, len);
	return buf_puts(b, "\":");
nomem:
	return -ENOMEM;
}

/* ---- the record -------------------------------------------------------- */

static int put_created_at(struct buf *b, uint64_t ns)
{
	char tmp[32], *end = tmp + sizeof tmp;
	uint32_t us = (uint32_t)(ns % 1000000000u / 1000u);
	for (int i = 0; i < 6; i++, us /= 10)
		*--end = (char)('0' + us % 10);
	*--end = '.';
	char *p = fmt_u64(end, ns / 1000000000u);
	CHECK(buf_puts(b, ",\"created_at\":"));
	return buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
nomem:
	return -ENOMEM;
}

static int put_origin(struct buf *b, const ap_record_t *rec, const struct origin *o, const char *host, size_t host_len,
		      struct map_counts *c)
{
	int first = 1;
	if (o) {
		CHECK(buf_puts(b, "\"pid\":"));
		CHECK(put_i64(b, o->pid));
		CHECK(buf_puts(b, ",\"uid\":"));
		CHECK(put_i64(b, o->uid));
		CHECK(buf_puts(b, ",\"gid\":"));
		CHECK(put_i64(b, o->gid));
		size_t n = strnlen(o->comm, sizeof o->comm);
		if (n) {
			CHECK(buf_puts(b, ",\"process\":"));
			CHECK(put_str(b, o->comm, n, c));
		}
		first = 0;
	}
	if (host) {
		CHECK(buf_append(b, &",\"host\":"[first], 8 - (size_t)first));
		CHECK(put_str(b, host, host_len, c));
		first = 0;
	}
	if (rec->flags & AP_F_TRUNCATED) {
		CHECK(buf_append(b, &",\"truncated\":true"[first], 17 - (size_t)first));
		c->truncated++;
		first = 0;
	}
	return first; /* 1 when nothing was written */
nomem:
	return -ENOMEM;
}

int map_record(struct buf *out, const ap_record_t *rec, const struct origin *o, const char *host, size_t host_len,
	       struct map_counts *counts)
{
	const size_t start = out->len;
	struct map_counts c = {0};
	struct keyset ks;
	ap_iter_t it;
	ap_field_t f;
	int rc;

	/* Pass 1: the level, and the field that fills each column. */
	int level = rec->level, level_idx = -1, level_alias = 0;
	int col_idx[NCOLS], col_val[NCOLS];
	ap_field_t col_field[NCOLS];
	for (int i = 0; i < NCOLS; i++)
		col_idx[i] = -1;
	int8_t cls[64]; /* the class of the first 64 keys, for pass 3 */
	ap_iter_init(&it, rec);
	for (int idx = 0; ap_iter_next(&it, &f); idx++) {
		int k = classify(f.key, f.klen);
		if (idx < 64)
			cls[idx] = (int8_t)k;
		if (k >= 0) {
			if (col_idx[k] < 0 && column_accepts(&columns[k], &f, &col_val[k])) {
				col_idx[k] = idx;
				col_field[k] = f;
			}
		} else if (k == KEY_LEVEL && level_idx < 0) {
			int lv = level_of(&f, &level_alias);
			if (lv >= 0) {
				level = lv;
				level_idx = idx;
			}
		}
	}
	c.level_normalized += (uint64_t)(level_idx >= 0 && level_alias);

	/* Pass 2: header keys and columns. */
	if (keyset_init(&ks, rec->nfields))
		return -ENOMEM;
	CHECK(buf_puts(out, "{\"level\":\""));
	const char *lname = ap_level_name(level);
	CHECK(buf_append(out, lname, strlen(lname)));
	CHECK(buf_puts(out, "\",\"message\":"));
	CHECK(put_str(out, rec->msg, rec->msg_len, &c));
	if (rec->time_ns)
		CHECK(put_created_at(out, rec->time_ns));
	for (int i = 0; i < NCOLS; i++)
		if (col_idx[i] >= 0)
			CHECK(put_column(out, &columns[i], &col_field[i], col_val[i], &c));

	/* Pass 3: metadata, trusted origin first. */
	CHECK(buf_puts(out, ",\"metadata\":{"));
	CHECK(rc = put_origin(out, rec, o, host, host_len, &c));
	int first = rc;
	ap_iter_init(&it, rec);
	for (int idx = 0; ap_iter_next(&it, &f); idx++) {
		int k = idx < 64 ? cls[idx] : classify(f.key, f.klen);
		if (idx == level_idx || (k >= 0 && col_idx[k] == idx))
			continue;
		const char *prefix = NULL;
		if (k == KEY_ORIGIN) {
			prefix = "client_";
			c.origin_renamed++;
		} else if (k != KEY_OTHER) {
			c.moved++; /* a column, level or reserved key that did not fit */
		}
		if (!first)
			CHECK(buf_putc(out, ','));
		first = 0;
		CHECK(put_meta_key(out, &ks, prefix, f.key, f.klen, &c));
		CHECK(put_value(out, &f, &c));
	}
	CHECK(buf_puts(out, "}}"));
	free(ks.heap);

	if (counts) {
		counts->moved += c.moved;
		counts->invalid_utf8 += c.invalid_utf8;
		counts->level_normalized += c.level_normalized;
		counts->coerced += c.coerced;
		counts->truncated += c.truncated;
		counts->origin_renamed += c.origin_renamed;
		counts->duplicate_keys += c.duplicate_keys;
	}
	return 0;
nomem:
	free(ks.heap);
	out->len = start;
	return -ENOMEM;
}
