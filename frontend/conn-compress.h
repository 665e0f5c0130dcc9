/* conn-compress.h: the raw DEFLATE (RFC 1951) layer of a connection, as
 * IMAP COMPRESS=DEFLATE (RFC 4978) uses it: zlib with windowBits -15 in
 * both directions, the output flushed with Z_SYNC_FLUSH at the end of each
 * batch so the peer can decode everything sent so far. conn.c puts it
 * between the protocol's buffers and the socket (or TLS: compress, then
 * encrypt). Bounded: inflate writes only into the room its caller gives
 * it, leaving the rest compressed, so a small input that inflates to a
 * lot ("bomb") never grows memory beyond the input buffers.
 *
 * Memory: the deflate state (~260 KB at windowBits 15, memLevel 8) is
 * made on first output and can be dropped between batches
 * (conn_compress_release), because after a sync flush the next block may
 * start a new stream's history; the inflate window (32 KB) must stay. */
#ifndef MF_CONN_COMPRESS_H
#define MF_CONN_COMPRESS_H

#include "lib/buf.h"

struct conn_compress;

struct conn_compress *conn_compress_new(void);
void conn_compress_free(struct conn_compress **cc);

/* Compresses data[0..len) and appends the result to out (which grows
 * within its max: a chunk needs at most len + len / 1000 + 64 bytes of
 * room). flush: end with a sync flush (the peer can decode all of it).
 * -1 when out has no room (nothing consumed) or zlib fails. */
int conn_compress_deflate(struct conn_compress *cc, const void *data, size_t len, bool flush,
			  struct buf *out);
/* Drops the deflate state (it is made again on the next output). Call
 * only after a flushed batch. */
void conn_compress_release(struct conn_compress *cc);

/* Inflates from zin into the free room of out (up to out->max), removing
 * what was used from zin. Returns the bytes written to out (0: no room or
 * nothing to do), -1 on invalid data (*error_r static). More may be
 * pending afterwards: call again after out has room, also with zin empty
 * (conn_compress_inflate_pending). */
ssize_t conn_compress_inflate(struct conn_compress *cc, struct buf *zin, struct buf *out,
			      const char **error_r);
bool conn_compress_inflate_pending(const struct conn_compress *cc);

#endif
