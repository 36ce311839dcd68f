#include "buf.h"

#include <errno.h>
#include <stdlib.h>

void buf_init(struct buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void buf_reset(struct buf *b)
{
	buf_free(b);
}

int buf_grow(struct buf *b, size_t n)
{
	if (n > b->max || b->len > b->max - n)
		return -ENOMEM;
	size_t need = b->len + n;
	size_t cap = b->cap ? b->cap : 256;
	if (cap > b->max)
		cap = b->max;
	while (cap < need)
		cap = cap > b->max / 2 ? b->max : cap * 2;
	if (cap < need)
		cap = need;
	char *p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}
