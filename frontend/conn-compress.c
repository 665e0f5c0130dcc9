/* conn-compress.c: see conn-compress.h. */
#include "frontend/conn-compress.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define WINDOW_BITS (-15)           /* raw deflate, 32 KB window (RFC 4978) */
#define MEM_LEVEL 8
#define INFLATE_STEP 16384          /* output room taken per inflate() call */

struct conn_compress {
	z_stream def, inf;
	bool def_ready, inf_ready;
	bool inf_out_full;              /* the last inflate() ran out of room */
	bool inf_ended;                 /* the peer ended its stream */
};

struct conn_compress *conn_compress_new(void)
{
	return mf_calloc(1, sizeof(struct conn_compress));
}

void conn_compress_free(struct conn_compress **ccp)
{
	struct conn_compress *cc = *ccp;

	if (cc == NULL)
		return;
	conn_compress_release(cc);
	if (cc->inf_ready)
		inflateEnd(&cc->inf);
	free(cc);
	*ccp = NULL;
}

void conn_compress_release(struct conn_compress *cc)
{
	if (cc->def_ready) {
		deflateEnd(&cc->def);
		cc->def_ready = false;
	}
}

int conn_compress_deflate(struct conn_compress *cc, const void *data, size_t len, bool flush,
			  struct buf *out)
{
	z_stream *z = &cc->def;
	int ret;

	if (len > UINT_MAX / 2)
		return -1;
	if (!cc->def_ready) {
		memset(z, 0, sizeof(*z));
		if (deflateInit2(z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, WINDOW_BITS, MEM_LEVEL,
				 Z_DEFAULT_STRATEGY) != Z_OK)
			return -1;
		cc->def_ready = true;
	}
	z->next_in = (Bytef *)data;
	z->avail_in = (uInt)len;
	do {
		size_t room = len + len / 1000 + 64;
		unsigned char *p = buf_reserve(out, room);
		if (p == NULL)
			return -1;
		z->next_out = p;
		z->avail_out = (uInt)room;
		ret = deflate(z, flush ? Z_SYNC_FLUSH : Z_NO_FLUSH);
		if (ret != Z_OK && ret != Z_BUF_ERROR)
			return -1;
		buf_commit(out, room - z->avail_out);
		/* a full output buffer may hide more pending output */
	} while (z->avail_in > 0 || z->avail_out == 0);
	return 0;
}

static int inflate_init(struct conn_compress *cc)
{
	memset(&cc->inf, 0, sizeof(cc->inf));
	if (inflateInit2(&cc->inf, WINDOW_BITS) != Z_OK)
		return -1;
	cc->inf_ready = true;
	return 0;
}

bool conn_compress_inflate_pending(const struct conn_compress *cc)
{
	return cc->inf_out_full;
}

ssize_t conn_compress_inflate(struct conn_compress *cc, struct buf *zin, struct buf *out,
			      const char **error_r)
{
	z_stream *z = &cc->inf;
	size_t room = out->max > out->len ? MF_MIN(out->max - out->len, INFLATE_STEP) : 0;

	if (room == 0 || (zin->len == 0 && !cc->inf_out_full))
		return 0;
	if (cc->inf_ended) {
		*error_r = "data after the end of the compressed stream";
		return -1;
	}
	if (!cc->inf_ready && inflate_init(cc) < 0) {
		*error_r = "cannot start decompression";
		return -1;
	}
	unsigned char *p = buf_reserve(out, room);
	if (p == NULL)
		return 0;
	z->next_in = zin->data;
	z->avail_in = (uInt)MF_MIN(zin->len, (size_t)UINT_MAX);
	z->next_out = p;
	z->avail_out = (uInt)room;
	int ret = inflate(z, Z_SYNC_FLUSH);
	size_t used = (size_t)(z->next_in - zin->data), produced = room - z->avail_out;
	buf_consume(zin, used);
	buf_commit(out, produced);
	cc->inf_out_full = z->avail_out == 0;
	if (ret == Z_STREAM_END) {
		cc->inf_ended = true;
		cc->inf_out_full = false;
		if (zin->len > 0) {
			*error_r = "data after the end of the compressed stream";
			return -1;
		}
	} else if (ret != Z_OK && ret != Z_BUF_ERROR) {
		*error_r = "invalid compressed data";
		return -1;
	}
	return (ssize_t)produced;
}
