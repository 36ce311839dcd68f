/*
 * buf: a growable byte buffer with a hard cap set at creation.
 *
 * Owns: one heap block. Limits: never grows past max bytes. Failure: an
 * append that would pass the cap (or fail to allocate) returns -ENOMEM and
 * leaves the buffer as it was.
 */
#ifndef AGENTD_BUF_H
#define AGENTD_BUF_H

#include <stddef.h>
#include <string.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* Make room for n more bytes. 0 or -ENOMEM. */
int buf_grow(struct buf *b, size_t n);
/* Give back the memory; keeps the cap. */
void buf_reset(struct buf *b);

static inline int buf_reserve(struct buf *b, size_t n)
{
	return b->cap - b->len >= n ? 0 : buf_grow(b, n);
}

static inline int buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n))
		return -12; /* -ENOMEM */
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	return 0;
}

static inline int buf_putc(struct buf *b, char c)
{
	if (buf_reserve(b, 1))
		return -12;
	b->data[b->len++] = c;
	return 0;
}

#define buf_puts(b, lit) buf_append((b), (lit), sizeof(lit) - 1)

#endif
