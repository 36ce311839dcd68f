/*
 * agent_proto: the record codec shared by libagent and agentd.
 *
 * Owns: the version-1 frame layout described in proto/PROTOCOL.md.
 * Limits: frames of AP_HDR_SIZE .. AP_MAX_FRAME bytes, keys of 1..255 bytes,
 *         at most 65535 fields.
 * Failure: the encoder never allocates and never writes past its buffer; what
 *          does not fit is skipped and the frame is flagged AP_F_TRUNCATED.
 *          The decoder never allocates, never reads past its input and returns
 *          a distinct negative AP_E* code for each malformation class.
 */
#ifndef AGENT_PROTO_H
#define AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define AP_MAGIC0 0x41 /* 'A' */
#define AP_MAGIC1 0x47 /* 'G' */
#define AP_VERSION 1
#define AP_HDR_SIZE 24
#define AP_MAX_FRAME 131072
#define AP_MAX_KEY 255
#define AP_MAX_FIELDS 65535

#define AP_F_TRUNCATED 0x0001u
#define AP_F_KNOWN AP_F_TRUNCATED

enum ap_level { AP_TRACE = 0, AP_DEBUG, AP_INFO, AP_WARN, AP_ERROR, AP_FATAL, AP_NLEVELS };

enum ap_type { AP_T_STRING = 1, AP_T_INT64 = 2, AP_T_DOUBLE = 3, AP_T_BOOL = 4 };

/* Decoder errors, one per malformation class (negative, distinct). */
enum ap_error {
	AP_OK = 0,
	AP_ESHORT = -1,
	AP_EBIG = -2,
	AP_EMAGIC = -3,
	AP_EVERSION = -4,
	AP_ELEVEL = -5,
	AP_EFLAGS = -6,
	AP_EMSG = -7,
	AP_EFIELD = -8,
	AP_ETYPE = -9,
	AP_EKEY = -10,
	AP_EBOOL = -11,
	AP_ETRAILING = -12,
};
#define AP_NERRORS 13 /* number of codes, AP_OK included: index with -code */

/* Stable, machine-friendly name of an error code ("bad_magic", ...). */
const char *ap_strerror(int code);

/* ---- encoding ---------------------------------------------------------- */

typedef struct ap_writer {
	uint8_t *buf;
	size_t cap; /* never above AP_MAX_FRAME */
	size_t len;
	uint32_t nfields;
	uint16_t flags;
} ap_writer_t;

/*
 * Start a frame in buf (cap bytes, at least AP_HDR_SIZE, clamped to
 * AP_MAX_FRAME) and write the message, cut at a UTF-8 boundary if it does
 * not fit. Returns 0, or -EINVAL when buf is too small for the header.
 */
int ap_writer_init(ap_writer_t *w, void *buf, size_t cap, int level, uint64_t time_ns, uint32_t dropped,
		   const char *msg, size_t msg_len);

/* Append a field. Returns 0, or -ENOSPC when it was skipped (flag set). */
int ap_put_string(ap_writer_t *w, const char *key, size_t klen, const char *val, size_t vlen);
int ap_put_int64(ap_writer_t *w, const char *key, size_t klen, int64_t val);
int ap_put_double(ap_writer_t *w, const char *key, size_t klen, double val);
int ap_put_bool(ap_writer_t *w, const char *key, size_t klen, int val);

/* Write the field count and flags into the header; returns the frame size. */
size_t ap_writer_finish(ap_writer_t *w);

/* Patch the dropped counter of a finished frame (before sending it). */
void ap_frame_set_dropped(void *frame, uint32_t dropped);

/* Size of one encoded field, for callers that plan ahead. */
static inline size_t ap_field_size(int type, size_t klen, size_t vlen)
{
	size_t v = type == AP_T_STRING ? 4 + vlen : type == AP_T_BOOL ? 1 : 8;
	return 2 + klen + v;
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct ap_record {
	uint8_t level;
	uint16_t flags;
	uint16_t nfields;
	uint64_t time_ns;
	uint32_t dropped;
	const char *msg; /* points into the frame */
	uint32_t msg_len;
	const uint8_t *fields; /* first field */
	const uint8_t *end; /* one past the frame */
} ap_record_t;

typedef struct ap_field {
	uint8_t type;
	uint8_t klen;
	const char *key; /* points into the frame */
	union {
		struct {
			const char *ptr; /* points into the frame */
			uint32_t len;
		} s;
		int64_t i;
		double d;
		int b;
	} v;
} ap_field_t;

typedef struct ap_iter {
	const uint8_t *p;
	const uint8_t *end;
	uint32_t left;
} ap_iter_t;

/*
 * Validate a whole frame of len bytes (at most max bytes; 0 means
 * AP_MAX_FRAME) and fill rec. Returns AP_OK or a negative AP_E* code; rec
 * is written only on success.
 */
int ap_decode(const void *frame, size_t len, size_t max, ap_record_t *rec);

/* Iterate the fields of a record that ap_decode accepted. */
void ap_iter_init(ap_iter_t *it, const ap_record_t *rec);
/* Returns 1 and fills f, or 0 after the last field. */
int ap_iter_next(ap_iter_t *it, ap_field_t *f);

/* ---- levels ------------------------------------------------------------ */

/* "WARN", "INFO", ...; NULL for a level out of range. */
const char *ap_level_name(int level);
/* Level named by s (aliases and syslog numbers 0-7 included, any case),
 * or -1. */
int ap_level_parse(const char *s, size_t len);
/* Level for a syslog priority 0..7, or -1. */
int ap_level_from_syslog(int64_t prio);

/* ---- little-endian helpers -------------------------------------------- */

static inline uint32_t ap_rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	return v;
}

static inline void ap_wr32(uint8_t *p, uint32_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap32(v);
#endif
	memcpy(p, &v, sizeof v);
}

#endif
