/* nasbench-seq.c: the classic commissioning throughput test (write 256 MiB
 * in 16 KiB blocks, flushed, then read it back twice: once right away, when
 * a kernel client may serve it from its page cache, and once cold, with the
 * cache bypassed), the fsync check, and the free-space check before all. */
#include "store/nasbench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1024.0 * 1024.0)
#define CLASSIC_SIZE (256.0 * MIB)
#define POOL_SIZE (1024 * 1024)

/* Every block starts with its index, the rest comes from a random pool at an
 * offset that depends on the index: no two blocks alike, a misplaced block shows. */
static void make_block(unsigned char *block, uint32_t size, const unsigned char *pool, uint64_t index)
{
	size_t off = (size_t)((index * 4099) % (POOL_SIZE - size));
	memcpy(block, pool + off, size);
	memcpy(block, &index, sizeof(index));
}

static bool block_ok(const unsigned char *block, uint64_t index)
{
	uint64_t have;
	memcpy(&have, block, sizeof(have));
	return have == index;
}

struct seq_run {
	struct nb_ctx *ctx;
	char *path;
	unsigned char *pool, *block;
	uint64_t blocks;
	const char *what;   /* the call that failed */
	bool cold_cached;   /* the page cache could not be dropped */
	int err;
};

static int seq_write(struct seq_run *s, double *secs_r)
{
	struct io_file *f;
	uint32_t bs = s->ctx->opt.block_size;
	uint64_t t0 = mf_now_us();

	s->what = "create";
	if (io_open(s->ctx->io, s->path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0644, &f) < 0)
		return -1;
	s->what = "write";
	for (uint64_t i = 0; i < s->blocks && !nb_stopping(s->ctx); i++) {
		make_block(s->block, bs, s->pool, i);
		if (io_pwrite(f, s->block, bs, i * bs) != (ssize_t)bs) {
			if (errno == 0)
				errno = EIO;
			goto fail;
		}
		if ((i & 255) == 0)
			nb_progress_update(s->ctx->progress, "sequential write", (double)i / (double)s->blocks);
	}
	s->what = "fsync";
	if (io_fsync(f) < 0)
		goto fail;
	s->what = "close";
	if (io_close(&f) < 0)
		return -1;
	*secs_r = (double)(mf_now_us() - t0) / 1e6;
	return 0;
fail:;
	int err = errno;
	io_close(&f);
	errno = err;
	return -1;
}

/* Returns blocks that did not read back as written via *bad_r. */
static int seq_read(struct seq_run *s, const char *phase, double *secs_r, uint64_t *bad_r)
{
	struct io_file *f;
	uint32_t bs = s->ctx->opt.block_size;
	uint64_t t0 = mf_now_us();

	*bad_r = 0;
	s->what = "open for reading";
	if (io_open(s->ctx->io, s->path, IO_O_RDONLY, 0, &f) < 0)
		return -1;
	s->what = "read";
	for (uint64_t i = 0; i < s->blocks && !nb_stopping(s->ctx); i++) {
		ssize_t ret = io_pread(f, s->block, bs, i * bs);
		if (ret < 0) {
			int err = errno;
			io_close(&f);
			errno = err;
			return -1;
		}
		if (ret != (ssize_t)bs || !block_ok(s->block, i))
			(*bad_r)++;
		if ((i & 255) == 0)
			nb_progress_update(s->ctx->progress, phase, (double)i / (double)s->blocks);
	}
	io_close(&f);
	*secs_r = (double)(mf_now_us() - t0) / 1e6;
	return 0;
}

static struct nb_check *report_rate(struct seq_run *s, const char *name, enum nb_thr thr, enum nb_verdict over,
			double secs, uint64_t bad, const char *note)
{
	double bytes = (double)s->blocks * s->ctx->opt.block_size;
	double limit = s->ctx->thr[thr] * bytes / CLASSIC_SIZE;
	char *threshold = bytes == CLASSIC_SIZE ? mf_asprintf("< %.2f s", limit) :
		mf_asprintf("< %.3g s (%g s per 256 MiB)", limit, s->ctx->thr[thr]);
	enum nb_verdict v = bad > 0 ? NB_FAIL : secs > limit ? over : NB_PASS;
	char *bad_note = bad > 0 ? mf_asprintf("%llu blocks read back wrong", (unsigned long long)bad) : NULL;

	struct nb_check *c = nb_report_add(s->ctx->report, name, v, secs, "s", threshold,
		bad_note != NULL ? bad_note : note, "%.0f MiB in %.3f s (%.0f MiB/s)", bytes / MIB, secs,
		bytes / MIB / MF_MAX(secs, 1e-6));
	free(threshold);
	free(bad_note);
	return c;
}

static void report_error(struct seq_run *s, const char *name)
{
	char *note = nb_errstr(s->what, s->err);
	nb_fatal_check(s->ctx, s->err, s->what);
	nb_report_add(s->ctx->report, name, NB_FAIL, NAN, NULL, "must work", note, "error");
	free(note);
}

/* The cold read: libnfs has no cache at all; a local path's cache is dropped. */
static char *cold_read_prepare(struct seq_run *s)
{
	double still = 0;

	if (s->ctx->is_nfs)
		return mf_strdup("cold: libnfs has no client cache, every read goes to the NAS "
				 "(the NAS may still serve it from its own RAM)");
	char *local = mf_asprintf("%s/%s", s->ctx->local_root, s->path);
	int ret = nb_local_drop_cache(local, &still);
	int err = errno;
	free(local);
	if (ret < 0) {
		s->cold_cached = true;
		return mf_asprintf("dropping the page cache failed (%s): this read may be cached",
				   strerror(err));
	}
	if (still > 10) {
		s->cold_cached = true;
		return mf_asprintf("the page cache could not be dropped (%.0f%% of pages still cached, "
				   "a RAM file system?): this read was cached", still);
	}
	return mf_asprintf("cold: page cache dropped with posix_fadvise(DONTNEED), %.0f%% of "
			   "pages still cached (mincore)", still);
}

static void run_seq(struct seq_run *s)
{
	double secs;
	uint64_t bad;

	if (seq_write(s, &secs) < 0) {
		s->err = errno;
		if (!atomic_load(s->ctx->stop))
			report_error(s, "seq.write");
		return;
	}
	report_rate(s, "seq.write", NB_THR_SEQ_WRITE_S, NB_FAIL, secs, 0,
		    "written in 16 KiB blocks, fsync'd and closed within the time");
	if (nb_stopping(s->ctx))
		return;
	if (seq_read(s, "read back", &secs, &bad) < 0) {
		s->err = errno;
		report_error(s, "seq.read-back");
		return;
	}
	report_rate(s, "seq.read-back", NB_THR_SEQ_READ_S, NB_WARN, secs, bad, s->ctx->is_nfs ?
		    "read back at once: libnfs has no client cache, this is the NAS too" :
		    "read back at once: cached, served by this machine's page cache");
	if (nb_stopping(s->ctx))
		return;
	char *note = cold_read_prepare(s);
	if (seq_read(s, "cold read", &secs, &bad) < 0) {
		s->err = errno;
		report_error(s, "seq.read-cold");
	} else {
		struct nb_check *c = report_rate(s, "seq.read-cold", NB_THR_COLD_READ_S, NB_WARN,
						 secs, bad, note);
		if (s->cold_cached && c->verdict == NB_PASS)
			c->verdict = NB_WARN;
	}
	free(note);
}

void nb_check_sequential(struct nb_ctx *ctx)
{
	struct seq_run s = { .ctx = ctx };

	s.blocks = ctx->opt.seq_size / ctx->opt.block_size;
	s.path = nb_path(ctx, "seq.dat");
	s.pool = mf_malloc(POOL_SIZE);
	s.block = mf_malloc(ctx->opt.block_size);
	nb_fill_random(s.pool, POOL_SIZE, 0x5eed);
	run_seq(&s);
	if (io_unlink(ctx->io, s.path) < 0 && errno != ENOENT)
		nb_report_add(ctx->report, "seq.cleanup", NB_WARN, NAN, NULL, "-",
			      "the test file could not be removed now; the final cleanup retries", "%s",
			      strerror(errno));
	free(s.path);
	free(s.pool);
	free(s.block);
}

/* --- fsync --- */

/* Writes data, times the fsync, closes, and reads the file back cold.
 * -1 with errno and *what_r naming the call that failed. */
static int fsync_roundtrip(struct nb_ctx *ctx, const char *path, const unsigned char *data, size_t len,
			   double *ms_r, char **got_r, size_t *got_len_r, const char **what_r)
{
	struct io_file *f = NULL;
	int ret, err;

	*what_r = "create";
	ret = io_open(ctx->io, path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0644, &f);
	if (ret == 0 && (*what_r = "write", ret = io_write_all(f, data, len)) == 0) {
		uint64_t t0 = mf_now_us();
		*what_r = "fsync";
		ret = io_fsync(f);
		*ms_r = (double)(mf_now_us() - t0) / 1000.0;
	}
	err = errno;
	if (f != NULL && io_close(&f) < 0 && ret == 0)
		ret = -1, err = errno, *what_r = "close";
	if (ret == 0 && !ctx->is_nfs) {
		char *local = mf_asprintf("%s/%s", ctx->local_root, path);
		double still;
		(void)nb_local_drop_cache(local, &still);
		free(local);
	}
	if (ret == 0 && io_read_file(ctx->io, path, len, got_r, got_len_r) < 0)
		ret = -1, err = errno, *what_r = "read back";
	errno = err;
	return ret;
}

void nb_check_fsync(struct nb_ctx *ctx)
{
	const char *name = "func.fsync", *what;
	size_t len = 1024 * 1024, got_len = 0;
	unsigned char *data = mf_malloc(len);
	char *p = nb_path(ctx, "f-fsync"), *got = NULL;
	char *thr = mf_asprintf("ok, < %g ms", ctx->thr[NB_THR_FSYNC_MS]);
	double ms = 0;

	nb_fill_random(data, len, 0xf5);
	if (fsync_roundtrip(ctx, p, data, len, &ms, &got, &got_len, &what) < 0) {
		int err = errno;
		char *note = nb_errstr(what, err);
		nb_fatal_check(ctx, err, what);
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, thr, note, "error");
		free(note);
	} else if (got_len != len || memcmp(got, data, len) != 0) {
		nb_report_add(ctx->report, name, NB_FAIL, ms, "ms", thr,
			      "fsync said stored, but the data read back differs", "data differs");
	} else {
		bool slow = ms > ctx->thr[NB_THR_FSYNC_MS];
		nb_report_add(ctx->report, name, slow ? NB_WARN : NB_PASS, ms, "ms", thr,
			      slow ? "slow fsync: every delivery waits for one" : NULL,
			      "1 MiB fsync'd in %.2f ms, read back intact", ms);
	}
	free(thr);
	free(got);
	free(p);
	free(data);
}
