/* io-conformance.h: behaviour every io.h backend must show, as one function
 * io_conformance_run(io, base) that records CHECK()s (tests/unit/test.h).
 * Shared by tests/unit/test-io.c (mem, posix, fault over both) and
 * tests/tools/store-tool.c (run against libnfs and a real NFS server).
 * Header-only on purpose: each includer is a separate binary. */
#ifndef MF_IO_CONFORMANCE_H
#define MF_IO_CONFORMANCE_H

#include "store/io.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <pthread.h>
#include <sys/stat.h>
#include <time.h>

#define IOC_DATA_SIZE 10000 /* more than one NFSv4 write chunk */

static char *ioc_path(const char *base, const char *rel)
{
	return mf_asprintf("%s/%s", base, rel);
}

static void ioc_sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

static void ioc_fill(unsigned char *data, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		data[i] = (unsigned char)((i * 31 + seed) & 0xff);
}

static void ioc_dirs(struct mf_io *io, const char *base)
{
	char *p = ioc_path(base, "a/b/c");
	struct io_stat st;

	CHECK_INT_EQ(io_mkdir(io, base, 0700), 0);
	errno = 0;
	CHECK_INT_EQ(io_mkdir(io, base, 0700), -1);
	CHECK_INT_EQ(errno, EEXIST);
	CHECK_INT_EQ(io_mkdir_parents(io, p, 0700), 0);
	CHECK_INT_EQ(io_mkdir_parents(io, p, 0700), 0);
	CHECK_INT_EQ(io_stat(io, p, &st), 0);
	CHECK(S_ISDIR(st.mode));
	CHECK_INT_EQ(io_fsync_dir(io, p), 0);
	errno = 0;
	CHECK_INT_EQ(io_rmdir(io, base), -1);
	CHECK(errno == ENOTEMPTY || errno == EEXIST);
	CHECK_INT_EQ(io_rmdir(io, p), 0);
	errno = 0;
	CHECK_INT_EQ(io_stat(io, p, &st), -1);
	CHECK_INT_EQ(errno, ENOENT);
	free(p);
}

static void ioc_bad_paths(struct mf_io *io)
{
	static const char *const bad[] = { "../x", "/abs", "a/../b", "a/..", ".." };
	struct io_stat st;
	struct io_file *f;

	for (size_t i = 0; i < MF_N_ELEMENTS(bad); i++) {
		errno = 0;
		CHECK_INT_EQ(io_stat(io, bad[i], &st), -1);
		CHECK_INT_EQ(errno, EINVAL);
		errno = 0;
		CHECK_INT_EQ(io_open(io, bad[i], IO_O_RDONLY, 0, &f), -1);
		CHECK_INT_EQ(errno, EINVAL);
	}
}

static void ioc_write_file(struct mf_io *io, const char *path, const unsigned char *data, size_t len)
{
	struct io_file *f;
	struct io_stat st;

	CHECK_INT_EQ(io_open(io, path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0640, &f), 0);
	if (f == NULL)
		return;
	CHECK_INT_EQ(io_write_all(f, data, len / 3), 0);
	CHECK_INT_EQ(io_write_all(f, data + len / 3, len - len / 3), 0);
	CHECK_INT_EQ(io_fsync(f), 0);
	CHECK_INT_EQ(io_fstat(f, &st), 0);
	CHECK_INT_EQ(st.size, len);
	CHECK_INT_EQ(io_close(&f), 0);
	CHECK(f == NULL);
}

static void ioc_files(struct mf_io *io, const char *base)
{
	unsigned char *data = mf_malloc(IOC_DATA_SIZE), buf[100];
	char *f1 = ioc_path(base, "f1"), *rd;
	struct io_file *f;
	struct io_stat st;
	size_t len;

	ioc_fill(data, IOC_DATA_SIZE, 7);
	errno = 0;
	CHECK_INT_EQ(io_open(io, f1, IO_O_RDONLY, 0, &f), -1);
	CHECK_INT_EQ(errno, ENOENT);
	ioc_write_file(io, f1, data, IOC_DATA_SIZE);
	errno = 0;
	CHECK_INT_EQ(io_open(io, f1, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0640, &f), -1);
	CHECK_INT_EQ(errno, EEXIST);
	CHECK_INT_EQ(io_read_file(io, f1, IOC_DATA_SIZE, &rd, &len), 0);
	CHECK_INT_EQ(len, IOC_DATA_SIZE);
	CHECK(rd != NULL && memcmp(rd, data, IOC_DATA_SIZE) == 0 && rd[len] == '\0');
	free(rd);
	errno = 0;
	CHECK_INT_EQ(io_read_file(io, f1, 100, &rd, &len), -1);
	CHECK_INT_EQ(errno, EFBIG);
	CHECK_INT_EQ(io_open(io, f1, IO_O_RDONLY, 0, &f), 0);
	if (f != NULL) {
		CHECK_INT_EQ(io_pread(f, buf, sizeof(buf), IOC_DATA_SIZE - 10), 10);
		CHECK(memcmp(buf, data + IOC_DATA_SIZE - 10, 10) == 0);
		CHECK_INT_EQ(io_pread(f, buf, sizeof(buf), IOC_DATA_SIZE * 2), 0);
		CHECK_INT_EQ(io_close(&f), 0);
	}
	CHECK_INT_EQ(io_stat(io, f1, &st), 0);
	CHECK(S_ISREG(st.mode));
	CHECK_INT_EQ(st.size, IOC_DATA_SIZE);
	CHECK_INT_EQ(st.mode & 0777, 0640);
	free(f1);
	free(data);
}

static void ioc_trunc_append(struct mf_io *io, const char *base)
{
	char *p = ioc_path(base, "f1"), *rd;
	struct io_file *f;
	struct io_stat st;
	size_t len;

	CHECK_INT_EQ(io_open(io, p, IO_O_WRONLY | IO_O_TRUNC, 0, &f), 0);
	if (f != NULL) {
		CHECK_INT_EQ(io_fstat(f, &st), 0);
		CHECK_INT_EQ(st.size, 0);
		CHECK_INT_EQ(io_write_all(f, "hello ", 6), 0);
		CHECK_INT_EQ(io_close(&f), 0);
	}
	CHECK_INT_EQ(io_open(io, p, IO_O_WRONLY | IO_O_APPEND, 0, &f), 0);
	if (f != NULL) {
		CHECK_INT_EQ(io_write_all(f, "world", 5), 0);
		CHECK_INT_EQ(io_close(&f), 0);
	}
	CHECK_INT_EQ(io_read_file(io, p, 1000, &rd, &len), 0);
	CHECK_STR_EQ(rd, "hello world");
	free(rd);
	free(p);
}

static void ioc_names(struct mf_io *io, const char *base)
{
	char *f1 = ioc_path(base, "f1"), *g = ioc_path(base, "g"), *h = ioc_path(base, "h");
	char *rd;
	struct io_stat st;
	size_t len;

	CHECK_INT_EQ(io_link(io, f1, g), 0);
	CHECK_INT_EQ(io_stat(io, g, &st), 0);
	CHECK_INT_EQ(st.nlink, 2);
	errno = 0;
	CHECK_INT_EQ(io_link(io, f1, g), -1);
	CHECK_INT_EQ(errno, EEXIST);
	CHECK_INT_EQ(io_rename(io, g, h), 0);
	errno = 0;
	CHECK_INT_EQ(io_stat(io, g, &st), -1);
	CHECK_INT_EQ(errno, ENOENT);
	errno = 0;
	CHECK_INT_EQ(io_rename(io, g, h), -1);
	CHECK_INT_EQ(errno, ENOENT);
	CHECK_INT_EQ(io_unlink(io, f1), 0);
	errno = 0;
	CHECK_INT_EQ(io_unlink(io, f1), -1);
	CHECK_INT_EQ(errno, ENOENT);
	CHECK_INT_EQ(io_stat(io, h, &st), 0);
	CHECK_INT_EQ(st.nlink, 1);
	/* rename replaces an existing file atomically */
	ioc_write_file(io, f1, (const unsigned char *)"other", 5);
	CHECK_INT_EQ(io_rename(io, f1, h), 0);
	CHECK_INT_EQ(io_read_file(io, h, 100, &rd, &len), 0);
	CHECK_STR_EQ(rd, "other");
	free(rd);
	CHECK_INT_EQ(io_chmod(io, h, 0604), 0);
	CHECK_INT_EQ(io_stat(io, h, &st), 0);
	CHECK_INT_EQ(st.mode & 0777, 0604);
	CHECK_INT_EQ(io_utimes(io, h, 1000000000, 1000000000), 0);
	CHECK_INT_EQ(io_stat(io, h, &st), 0);
	CHECK_INT_EQ(st.mtime_sec, 1000000000);
	free(f1);
	free(g);
	free(h);
}

struct ioc_list {
	char names[16][32];
	unsigned count, overflow;
};

static int ioc_list_cb(void *ctx, const char *name)
{
	struct ioc_list *l = ctx;

	if (l->count == 16 || strlen(name) >= 32)
		l->overflow++;
	else
		strcpy(l->names[l->count++], name);
	return 0;
}

static bool ioc_list_has(const struct ioc_list *l, const char *name)
{
	for (unsigned i = 0; i < l->count; i++) {
		if (strcmp(l->names[i], name) == 0)
			return true;
	}
	return false;
}

static void ioc_readdir_mtime(struct mf_io *io, const char *base)
{
	struct ioc_list l = { .count = 0 };
	struct io_stat before, after;
	char *f2 = ioc_path(base, "f2");

	CHECK_INT_EQ(io_readdir(io, base, ioc_list_cb, &l), 0);
	CHECK_INT_EQ(l.count, 2);
	CHECK(ioc_list_has(&l, "a") && ioc_list_has(&l, "h"));
	CHECK_INT_EQ(io_stat(io, base, &before), 0);
	ioc_sleep_ms(20); /* coarse directory timestamps (ext4: one jiffy) */
	ioc_write_file(io, f2, (const unsigned char *)"x", 1);
	CHECK_INT_EQ(io_stat(io, base, &after), 0);
	CHECK(after.mtime_sec != before.mtime_sec || after.mtime_nsec != before.mtime_nsec);
	memset(&l, 0, sizeof(l));
	CHECK_INT_EQ(io_readdir(io, base, ioc_list_cb, &l), 0);
	CHECK_INT_EQ(l.count, 3);
	errno = 0;
	CHECK_INT_EQ(io_readdir(io, f2, ioc_list_cb, &l), -1);
	CHECK_INT_EQ(errno, ENOTDIR);
	free(f2);
}

struct ioc_thread {
	struct mf_io *io;
	const char *base;
	unsigned id, ok;
};

#define IOC_THREADS 4
#define IOC_FILES_PER_THREAD 20

static void *ioc_thread_main(void *arg)
{
	struct ioc_thread *t = arg;
	unsigned char data[5000];

	for (unsigned i = 0; i < IOC_FILES_PER_THREAD; i++) {
		char *p = mf_asprintf("%s/t/%u-%u", t->base, t->id, i), *rd = NULL;
		struct io_file *f;
		size_t len = 0;
		ioc_fill(data, sizeof(data), t->id * 100 + i);
		if (io_open(t->io, p, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &f) == 0 &&
		    io_write_all(f, data, sizeof(data)) == 0 && io_close(&f) == 0 &&
		    io_read_file(t->io, p, sizeof(data), &rd, &len) == 0 &&
		    len == sizeof(data) && memcmp(rd, data, len) == 0)
			t->ok++;
		free(rd);
		free(p);
	}
	return NULL;
}

static void ioc_threads(struct mf_io *io, const char *base)
{
	struct ioc_thread t[IOC_THREADS];
	pthread_t tid[IOC_THREADS];
	char *dir = ioc_path(base, "t");
	unsigned count = 0;

	CHECK_INT_EQ(io_mkdir(io, dir, 0700), 0);
	for (unsigned i = 0; i < IOC_THREADS; i++) {
		t[i] = (struct ioc_thread){ .io = io, .base = base, .id = i };
		pthread_create(&tid[i], NULL, ioc_thread_main, &t[i]);
	}
	for (unsigned i = 0; i < IOC_THREADS; i++) {
		pthread_join(tid[i], NULL);
		CHECK_INT_EQ(t[i].ok, IOC_FILES_PER_THREAD);
	}
	struct ioc_list l = { .count = 0 };
	CHECK_INT_EQ(io_readdir(io, dir, ioc_list_cb, &l), 0);
	count = l.count + l.overflow;
	CHECK_INT_EQ(count, IOC_THREADS * IOC_FILES_PER_THREAD);
	free(dir);
}

static void ioc_statvfs(struct mf_io *io, const char *base)
{
	struct io_statvfs st;

	CHECK_INT_EQ(io_statvfs(io, base, &st), 0);
	CHECK(st.total_bytes > 0 && st.free_bytes <= st.total_bytes);
}

/* Runs every check below base (which must not exist yet). */
static void io_conformance_run(struct mf_io *io, const char *base)
{
	ioc_dirs(io, base);
	ioc_bad_paths(io);
	ioc_files(io, base);
	ioc_trunc_append(io, base);
	ioc_names(io, base);
	ioc_readdir_mtime(io, base);
	ioc_threads(io, base);
	ioc_statvfs(io, base);
}

#endif
