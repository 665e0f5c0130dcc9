/* buf.c: see buf.h. */
#include "lib/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

unsigned char *buf_reserve(struct buf *b, size_t n)
{
	if (b->max != 0 && (n > b->max || b->len > b->max - n))
		return NULL;
	if (b->cap - b->len < n) {
		size_t cap = b->cap == 0 ? 256 : b->cap;
		while (cap - b->len < n)
			cap *= 2;
		if (b->max != 0 && cap > b->max)
			cap = b->max;
		b->data = mf_realloc(b->data, cap);
		b->cap = cap;
	}
	return b->data + b->len;
}

void buf_commit(struct buf *b, size_t n)
{
	b->len += n;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	unsigned char *p = buf_reserve(b, len);
	if (p == NULL)
		return -1;
	if (len > 0)
		memcpy(p, data, len);
	b->len += len;
	return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char small[512];
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(small))
		return buf_append(b, small, (size_t)n);
	unsigned char *p = buf_reserve(b, (size_t)n + 1);
	if (p == NULL)
		return -1;
	va_start(ap, fmt);
	vsnprintf((char *)p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
}
