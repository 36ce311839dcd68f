/*
 * context: per-thread fields attached to every record the thread sends.
 *
 * Owns: one thread-local struct agent_ctx (a fixed buffer, no allocation).
 * Limits: AGENT_CONTEXT_MAX fields; AGENT_CONTEXT_BYTES bytes of keys and
 * string values together; keys of 1..255 bytes.
 * Failure: a set that would pass a limit returns -ENOSPC and leaves the
 * context as it was; a bad argument returns -EINVAL.
 */
#include "agent_int.h"

#include <errno.h>
#include <string.h>

static _Thread_local struct agent_ctx ctx;

const struct agent_ctx *agent__context(void)
{
	return ctx.n ? &ctx : NULL;
}

void agent__context_put(ap_writer_t *w, const struct agent_ctx *c, unsigned i)
{
	const struct agent_ctx_ent *e = &c->e[i];
	const char *k = c->bytes + e->off;
	switch (e->type) {
	case AGENT_T_STR:
		ap_put_string(w, k, e->klen, k + e->klen, e->vlen);
		break;
	case AGENT_T_INT:
		ap_put_int64(w, k, e->klen, e->v.i);
		break;
	case AGENT_T_DBL:
		ap_put_double(w, k, e->klen, e->v.d);
		break;
	default:
		ap_put_bool(w, k, e->klen, e->v.b);
		break;
	}
}

static int find(const char *key, size_t klen)
{
	for (unsigned i = 0; i < ctx.n; i++)
		if (ctx.e[i].klen == klen && memcmp(ctx.bytes + ctx.e[i].off, key, klen) == 0)
			return (int)i;
	return -1;
}

static unsigned ent_bytes(const struct agent_ctx_ent *e)
{
	return e->klen + (e->type == AGENT_T_STR ? e->vlen : 0);
}

static void remove_at(unsigned i)
{
	unsigned off = ctx.e[i].off, sz = ent_bytes(&ctx.e[i]);
	memmove(ctx.bytes + off, ctx.bytes + off + sz, ctx.used - off - sz);
	ctx.used -= sz;
	for (unsigned j = i + 1; j < ctx.n; j++) {
		ctx.e[j - 1] = ctx.e[j];
		if (ctx.e[j - 1].off > off)
			ctx.e[j - 1].off = (uint16_t)(ctx.e[j - 1].off - sz);
	}
	ctx.n--;
}

int agent_context_set_field(agent_field_t field)
{
	int saved = errno;
	int r = 0;
	size_t klen = field.key ? strlen(field.key) : 0;
	if (klen == 0 || klen > AP_MAX_KEY || field.type < AGENT_T_STR || field.type > AGENT_T_BOOL) {
		r = -EINVAL;
		goto out;
	}
	int old = find(field.key, klen);
	if (field.type == AGENT_T_STR && !field.v.s) { /* remove */
		if (old >= 0)
			remove_at((unsigned)old);
		goto out;
	}
	size_t vlen = field.type == AGENT_T_STR ? strlen(field.v.s) : 0;
	size_t used = ctx.used - (old >= 0 ? ent_bytes(&ctx.e[old]) : 0);
	unsigned n = ctx.n - (old >= 0 ? 1 : 0);
	if (n >= AGENT_CONTEXT_MAX || klen + vlen > AGENT_CONTEXT_BYTES - used) {
		r = -ENOSPC;
		goto out;
	}
	if (old >= 0)
		remove_at((unsigned)old);
	struct agent_ctx_ent *e = &ctx.e[ctx.n];
	e->type = (uint8_t)field.type;
	e->klen = (uint8_t)klen;
	e->off = (uint16_t)ctx.used;
	e->vlen = (uint32_t)vlen;
	memcpy(ctx.bytes + ctx.used, field.key, klen);
	if (vlen)
		memcpy(ctx.bytes + ctx.used + klen, field.v.s, vlen);
	ctx.used += (unsigned)(klen + vlen);
	switch (field.type) {
	case AGENT_T_INT:
		e->v.i = field.v.i;
		break;
	case AGENT_T_DBL:
		e->v.d = field.v.d;
		break;
	case AGENT_T_BOOL:
		e->v.b = field.v.b ? 1 : 0;
		break;
	default:
		e->v.i = 0;
		break;
	}
	ctx.n++;
out:
	errno = saved;
	return r;
}

int agent_context_set(const char *key, const char *value)
{
	return agent_context_set_field(AGENT_STR(key, value));
}

void agent_context_clear(void)
{
	ctx.n = 0;
	ctx.used = 0;
}
