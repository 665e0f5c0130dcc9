/* buf.h: a byte buffer with a hard size limit. Appending past the limit fails
 * instead of growing, so no peer can make a buffer grow without bound. */
#ifndef MF_BUF_H
#define MF_BUF_H

#include "lib/lib.h"

struct buf {
	unsigned char *data;
	size_t len;   /* bytes in use */
	size_t cap;   /* bytes allocated */
	size_t max;   /* hard limit for len; 0 = unlimited (only for trusted data) */
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
/* Returns -1 (and leaves the buffer unchanged) when len would pass max. */
int buf_append(struct buf *b, const void *data, size_t len);
int buf_printf(struct buf *b, const char *fmt, ...) MF_PRINTF(2, 3);
/* Removes the first n bytes. */
void buf_consume(struct buf *b, size_t n);
void buf_reset(struct buf *b);
/* Ensures room for n more bytes (within max); returns a pointer to it or NULL. */
unsigned char *buf_reserve(struct buf *b, size_t n);
/* Marks n bytes written into the reserved space as used. */
void buf_commit(struct buf *b, size_t n);

#endif
