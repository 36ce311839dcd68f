/*
 * agent_proto: see agent_proto.h and PROTOCOL.md. No allocation, no I/O.
 */
#include "agent_proto.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static const char *const error_names[AP_NERRORS] = {
	"ok",	     "short",	  "oversized",	       "bad_magic",	  "bad_version",
	"bad_level", "bad_flags", "truncated_message", "truncated_field", "bad_type",
	"bad_key",   "bad_bool",  "trailing_bytes",
};

const char *ap_strerror(int code)
{
	if (code > 0 || code <= -AP_NERRORS)
		return "unknown";
	return error_names[-code];
}

/* Little-endian loads and stores, as one move each on the usual hosts. */
static inline void wr16(uint8_t *p, uint16_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap16(v);
#endif
	memcpy(p, &v, sizeof v);
}

static inline uint16_t rd16(const uint8_t *p)
{
	uint16_t v;
	memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap16(v);
#endif
	return v;
}

static inline void wr64(uint8_t *p, uint64_t v)
{
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	memcpy(p, &v, sizeof v);
}

static inline uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof v);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
	v = __builtin_bswap64(v);
#endif
	return v;
}

/* Longest prefix of s (at most n bytes) that does not end inside a UTF-8
 * sequence. */
static size_t utf8_cut(const char *s, size_t n)
{
	size_t i = n;
	/* back off over continuation bytes, at most 3 */
	while (i > 0 && n - i < 4 && ((unsigned char)s[i] & 0xC0) == 0x80)
		i--;
	return ((unsigned char)s[i] & 0xC0) == 0x80 ? n : i;
}

int ap_writer_init(ap_writer_t *w, void *buf, size_t cap, int level, uint64_t time_ns, uint32_t dropped,
		   const char *msg, size_t msg_len)
{
	if (!w || !buf || cap < AP_HDR_SIZE || level < 0 || level >= AP_NLEVELS)
		return -EINVAL;
	if (cap > AP_MAX_FRAME)
		cap = AP_MAX_FRAME;
	uint8_t *p = buf;
	w->buf = p;
	w->cap = cap;
	w->nfields = 0;
	w->flags = 0;
	if (!msg)
		msg_len = 0;
	if (msg_len > cap - AP_HDR_SIZE) {
		/* utf8_cut looks at s[n], which exists since msg_len > n */
		msg_len = utf8_cut(msg, cap - AP_HDR_SIZE);
		w->flags |= AP_F_TRUNCATED;
	}
	p[0] = AP_MAGIC0;
	p[1] = AP_MAGIC1;
	p[2] = AP_VERSION;
	p[3] = (uint8_t)level;
	wr16(p + 4, 0);
	wr16(p + 6, 0);
	wr64(p + 8, time_ns);
	ap_wr32(p + 16, dropped);
	ap_wr32(p + 20, (uint32_t)msg_len);
	if (msg_len)
		memcpy(p + AP_HDR_SIZE, msg, msg_len);
	w->len = AP_HDR_SIZE + msg_len;
	return 0;
}

/* Reserve the key part of a field; NULL when it does not fit. */
static uint8_t *put_key(ap_writer_t *w, int type, const char *key, size_t klen, size_t vsize)
{
	if (!key || klen == 0 || klen > AP_MAX_KEY || w->nfields >= AP_MAX_FIELDS ||
	    w->cap - w->len < 2 + klen + vsize) {
		w->flags |= AP_F_TRUNCATED;
		return NULL;
	}
	uint8_t *p = w->buf + w->len;
	p[0] = (uint8_t)type;
	p[1] = (uint8_t)klen;
	memcpy(p + 2, key, klen);
	w->len += 2 + klen + vsize;
	w->nfields++;
	return p + 2 + klen;
}

int ap_put_string(ap_writer_t *w, const char *key, size_t klen, const char *val, size_t vlen)
{
	if (!val)
		vlen = 0;
	if (vlen > UINT32_MAX - 8)
		vlen = UINT32_MAX - 8;
	uint8_t *p = put_key(w, AP_T_STRING, key, klen, 4 + vlen);
	if (!p)
		return -ENOSPC;
	ap_wr32(p, (uint32_t)vlen);
	if (vlen)
		memcpy(p + 4, val, vlen);
	return 0;
}

int ap_put_int64(ap_writer_t *w, const char *key, size_t klen, int64_t val)
{
	uint8_t *p = put_key(w, AP_T_INT64, key, klen, 8);
	if (!p)
		return -ENOSPC;
	wr64(p, (uint64_t)val);
	return 0;
}

int ap_put_double(ap_writer_t *w, const char *key, size_t klen, double val)
{
	uint8_t *p = put_key(w, AP_T_DOUBLE, key, klen, 8);
	if (!p)
		return -ENOSPC;
	uint64_t bits;
	memcpy(&bits, &val, sizeof bits);
	wr64(p, bits);
	return 0;
}

int ap_put_bool(ap_writer_t *w, const char *key, size_t klen, int val)
{
	uint8_t *p = put_key(w, AP_T_BOOL, key, klen, 1);
	if (!p)
		return -ENOSPC;
	p[0] = val ? 1 : 0;
	return 0;
}

size_t ap_writer_finish(ap_writer_t *w)
{
	wr16(w->buf + 4, w->flags);
	wr16(w->buf + 6, (uint16_t)w->nfields);
	return w->len;
}

void ap_frame_set_dropped(void *frame, uint32_t dropped)
{
	ap_wr32((uint8_t *)frame + 16, dropped);
}

int ap_decode(const void *frame, size_t len, size_t max, ap_record_t *rec)
{
	const uint8_t *p = frame;
	if (max == 0 || max > AP_MAX_FRAME)
		max = AP_MAX_FRAME;
	if (!p || len < AP_HDR_SIZE)
		return AP_ESHORT;
	if (len > max)
		return AP_EBIG;
	if (p[0] != AP_MAGIC0 || p[1] != AP_MAGIC1)
		return AP_EMAGIC;
	if (p[2] != AP_VERSION)
		return AP_EVERSION;
	if (p[3] >= AP_NLEVELS)
		return AP_ELEVEL;
	uint16_t flags = rd16(p + 4);
	if (flags & ~AP_F_KNOWN)
		return AP_EFLAGS;
	uint32_t msg_len = ap_rd32(p + 20);
	if (msg_len > len - AP_HDR_SIZE)
		return AP_EMSG;

	const uint8_t *end = p + len;
	const uint8_t *fields = p + AP_HDR_SIZE + msg_len;
	const uint8_t *q = fields;
	uint16_t nfields = rd16(p + 6);
	for (unsigned i = 0; i < nfields; i++) {
		if (end - q < 2)
			return AP_EFIELD;
		uint8_t type = q[0], klen = q[1];
		if (type < AP_T_STRING || type > AP_T_BOOL)
			return AP_ETYPE;
		if (klen == 0)
			return AP_EKEY;
		q += 2;
		if ((size_t)(end - q) < klen)
			return AP_EFIELD;
		q += klen;
		size_t vsize;
		switch (type) {
		case AP_T_STRING:
			/* compare before adding: 4 + len wraps a 32-bit size_t */
			if (end - q < 4 || (size_t)(end - q) - 4 < ap_rd32(q))
				return AP_EFIELD;
			vsize = 4 + (size_t)ap_rd32(q);
			break;
		case AP_T_BOOL:
			vsize = 1;
			if (end - q >= 1 && q[0] > 1)
				return AP_EBOOL;
			break;
		default:
			vsize = 8;
			break;
		}
		if ((size_t)(end - q) < vsize)
			return AP_EFIELD;
		q += vsize;
	}
	if (q != end)
		return AP_ETRAILING;

	rec->level = p[3];
	rec->flags = flags;
	rec->nfields = nfields;
	rec->time_ns = rd64(p + 8);
	rec->dropped = ap_rd32(p + 16);
	rec->msg = (const char *)p + AP_HDR_SIZE;
	rec->msg_len = msg_len;
	rec->fields = fields;
	rec->end = end;
	return AP_OK;
}

void ap_iter_init(ap_iter_t *it, const ap_record_t *rec)
{
	it->p = rec->fields;
	it->end = rec->end;
	it->left = rec->nfields;
}

int ap_iter_next(ap_iter_t *it, ap_field_t *f)
{
	if (it->left == 0)
		return 0;
	const uint8_t *q = it->p;
	f->type = q[0];
	f->klen = q[1];
	f->key = (const char *)q + 2;
	q += 2 + f->klen;
	switch (f->type) {
	case AP_T_STRING:
		f->v.s.len = ap_rd32(q);
		f->v.s.ptr = (const char *)q + 4;
		q += 4 + f->v.s.len;
		break;
	case AP_T_INT64:
		f->v.i = (int64_t)rd64(q);
		q += 8;
		break;
	case AP_T_DOUBLE: {
		uint64_t bits = rd64(q);
		memcpy(&f->v.d, &bits, sizeof bits);
		q += 8;
		break;
	}
	default:
		f->v.b = q[0];
		q += 1;
		break;
	}
	it->p = q;
	it->left--;
	return 1;
}

static const char *const level_names[AP_NLEVELS] = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"};

const char *ap_level_name(int level)
{
	return level >= 0 && level < AP_NLEVELS ? level_names[level] : NULL;
}

int ap_level_from_syslog(int64_t prio)
{
	static const int8_t map[8] = {AP_FATAL, AP_FATAL, AP_FATAL, AP_ERROR, AP_WARN, AP_INFO, AP_INFO, AP_DEBUG};
	return prio >= 0 && prio <= 7 ? map[prio] : -1;
}

static const struct {
	const char *name;
	int level;
} aliases[] = {
	{"trace", AP_TRACE}, {"debug", AP_DEBUG}, {"info", AP_INFO},	   {"information", AP_INFO},
	{"notice", AP_INFO}, {"warn", AP_WARN},	  {"warning", AP_WARN},	   {"error", AP_ERROR},
	{"err", AP_ERROR},   {"fatal", AP_FATAL}, {"critical", AP_FATAL},  {"crit", AP_FATAL},
	{"alert", AP_FATAL}, {"emerg", AP_FATAL}, {"emergency", AP_FATAL}, {"panic", AP_FATAL},
};

int ap_level_parse(const char *s, size_t len)
{
	if (!s || len == 0 || len > 16)
		return -1;
	if (len == 1 && s[0] >= '0' && s[0] <= '7')
		return ap_level_from_syslog(s[0] - '0');
	for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
		if (strlen(aliases[i].name) == len && strncasecmp(aliases[i].name, s, len) == 0)
			return aliases[i].level;
	return -1;
}
