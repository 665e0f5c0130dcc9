/* test-conn-compress.c: frontend/conn-compress.c: deflate output that raw
 * zlib inflate (windowBits -15) reads back, batches ending with a sync
 * flush decodable on their own, the deflate state dropped between batches
 * without breaking the stream, inflate fed one byte at a time, inflate
 * bounded by the output buffer's limit (a decompression bomb stays
 * compressed until there is room), and invalid or trailing data. */
#include "tests/unit/test.h"
#include "frontend/conn-compress.h"

#include <zlib.h>

TEST_DEFINE_GLOBALS

/* Raw-inflates all of in with a fresh or given stream. */
static size_t peer_inflate(z_stream *z, const struct buf *in, unsigned char *out, size_t size)
{
	z->next_in = in->data;
	z->avail_in = (uInt)in->len;
	z->next_out = out;
	z->avail_out = (uInt)size;
	int ret = inflate(z, Z_SYNC_FLUSH);
	CHECK(ret == Z_OK || ret == Z_BUF_ERROR);
	CHECK_INT_EQ(z->avail_in, 0);
	return size - z->avail_out;
}

static void peer_deflate(const void *data, size_t len, struct buf *out)
{
	z_stream z = { 0 };
	unsigned char tmp[65536];

	CHECK(deflateInit2(&z, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	z.next_in = (Bytef *)data;
	z.avail_in = (uInt)len;
	do {
		z.next_out = tmp;
		z.avail_out = sizeof(tmp);
		deflate(&z, Z_SYNC_FLUSH);
		CHECK(buf_append(out, tmp, sizeof(tmp) - z.avail_out) == 0);
	} while (z.avail_out == 0);
	deflateEnd(&z);
}

static void test_deflate_batches_and_release(void)
{
	struct conn_compress *cc = conn_compress_new();
	struct buf out;
	z_stream peer = { 0 };
	unsigned char plain[200000];
	static unsigned char got[300000];
	size_t n;

	for (size_t i = 0; i < sizeof(plain); i++)
		plain[i] = (unsigned char)("* 1 FETCH (FLAGS (\\Seen))\r\n"[i % 27] + (i / 5000) % 3);
	CHECK(inflateInit2(&peer, -15) == Z_OK);
	buf_init(&out, 0);
	/* batch 1 in two pieces, only the second flushed */
	CHECK(conn_compress_deflate(cc, plain, 100000, false, &out) == 0);
	CHECK(conn_compress_deflate(cc, plain + 100000, 50000, true, &out) == 0);
	CHECK(out.len < 150000 / 4);
	n = peer_inflate(&peer, &out, got, sizeof(got));
	CHECK_INT_EQ(n, 150000);
	CHECK(memcmp(got, plain, 150000) == 0);
	/* dropping the state between batches keeps one valid stream */
	conn_compress_release(cc);
	buf_reset(&out);
	CHECK(conn_compress_deflate(cc, plain + 150000, 50000, true, &out) == 0);
	n = peer_inflate(&peer, &out, got, sizeof(got));
	CHECK_INT_EQ(n, 50000);
	CHECK(memcmp(got, plain + 150000, 50000) == 0);
	/* a tiny batch, and an empty one, still decode */
	buf_reset(&out);
	CHECK(conn_compress_deflate(cc, "A OK\r\n", 6, true, &out) == 0);
	CHECK(conn_compress_deflate(cc, "", 0, true, &out) == 0);
	n = peer_inflate(&peer, &out, got, sizeof(got));
	CHECK_INT_EQ(n, 6);
	CHECK(memcmp(got, "A OK\r\n", 6) == 0);
	/* no room in a bounded output buffer: an error, not a crash */
	struct buf small;
	buf_init(&small, 16);
	CHECK(conn_compress_deflate(cc, plain, 1000, true, &small) < 0);
	buf_free(&small);
	inflateEnd(&peer);
	buf_free(&out);
	conn_compress_free(&cc);
	CHECK(cc == NULL);
	conn_compress_free(&cc);
}

static void test_inflate_bytewise(void)
{
	struct conn_compress *cc = conn_compress_new();
	const char *cmds = "a LOGIN u p\r\nb SELECT INBOX\r\nc IDLE\r\n";
	struct buf z, zin, out;
	const char *error;

	buf_init(&z, 0);
	buf_init(&zin, 64);
	buf_init(&out, 1024);
	peer_deflate(cmds, strlen(cmds), &z);
	for (size_t i = 0; i < z.len; i++) {
		CHECK(buf_append(&zin, z.data + i, 1) == 0);
		CHECK(conn_compress_inflate(cc, &zin, &out, &error) >= 0);
		CHECK_INT_EQ(zin.len, 0);
	}
	CHECK_INT_EQ(out.len, strlen(cmds));
	CHECK(memcmp(out.data, cmds, out.len) == 0);
	buf_free(&z);
	buf_free(&zin);
	buf_free(&out);
	conn_compress_free(&cc);
}

static void test_bomb_stays_bounded(void)
{
	struct conn_compress *cc = conn_compress_new();
	size_t big = 8 * 1024 * 1024, total = 0;
	unsigned char *zeros = calloc(1, big);
	struct buf z, zin, out;
	const char *error;
	ssize_t n;

	buf_init(&z, 0);
	peer_deflate(zeros, big, &z);
	CHECK(z.len < big / 500);
	buf_init(&zin, 0);
	CHECK(buf_append(&zin, z.data, z.len) == 0);
	buf_init(&out, 10000);
	/* only as much as out can hold; the rest waits, compressed */
	while ((n = conn_compress_inflate(cc, &zin, &out, &error)) > 0)
		;
	CHECK_INT_EQ(n, 0);
	CHECK_INT_EQ(out.len, 10000);
	CHECK(out.cap <= 10000);
	CHECK(zin.len > 0 || conn_compress_inflate_pending(cc));
	/* the consumer drains; everything comes out in bounded steps */
	do {
		total += out.len;
		buf_reset(&out);
		while ((n = conn_compress_inflate(cc, &zin, &out, &error)) > 0)
			;
		CHECK(n == 0);
		CHECK(out.cap <= 10000);
	} while (out.len > 0);
	CHECK_INT_EQ(total, big);
	CHECK_INT_EQ(zin.len, 0);
	free(zeros);
	buf_free(&z);
	buf_free(&zin);
	buf_free(&out);
	conn_compress_free(&cc);
}

static void test_invalid_and_trailing_data(void)
{
	struct conn_compress *cc = conn_compress_new();
	struct buf zin, out;
	const char *error = NULL;

	buf_init(&zin, 0);
	buf_init(&out, 4096);
	/* block type 3 does not exist */
	CHECK(buf_append(&zin, "\xff\xff\xff\xff garbage", 12) == 0);
	CHECK(conn_compress_inflate(cc, &zin, &out, &error) < 0);
	CHECK(error != NULL);
	conn_compress_free(&cc);

	/* a finished stream followed by more bytes */
	cc = conn_compress_new();
	z_stream z = { 0 };
	unsigned char tmp[256];
	CHECK(deflateInit2(&z, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	z.next_in = (Bytef *)"x NOOP\r\n";
	z.avail_in = 8;
	z.next_out = tmp;
	z.avail_out = sizeof(tmp);
	CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
	buf_reset(&zin);
	buf_reset(&out);
	CHECK(buf_append(&zin, tmp, sizeof(tmp) - z.avail_out) == 0);
	CHECK(buf_append(&zin, "more", 4) == 0);
	error = NULL;
	CHECK(conn_compress_inflate(cc, &zin, &out, &error) < 0);
	CHECK(error != NULL);
	deflateEnd(&z);
	buf_free(&zin);
	buf_free(&out);
	conn_compress_free(&cc);
}

int main(void)
{
	test_run(test_deflate_batches_and_release);
	test_run(test_inflate_bytewise);
	test_run(test_bomb_stays_bounded);
	test_run(test_invalid_and_trailing_data);
	return test_exit();
}
