/* io-nfs.c: the io.h backend over libnfs (userspace NFSv3/NFSv4, no kernel
 * mount, no client cache). libnfs contexts are not thread-safe, so each
 * thread gets its own context (created and mounted on first use, destroyed
 * at thread exit or in io_free()). A file keeps a reference to the context it
 * was opened on (an NFSv4 open belongs to that client), and a mutex per
 * context serialises the rare use of a file from another thread. */
#include "store/io-private.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <stdint.h>
#include <nfsc/libnfs.h>

/* Debian's libnfs 4.0.0 fails NFSv4 WRITEs of about 4,000 bytes or more
 * (a ZDR encoding error), so v4 writes go out in chunks of at most this. */
#define NFS4_WRITE_CHUNK 3584
#define NFS_IO_CHUNK_MAX (1024 * 1024)

struct nfs_io;

struct nfs_tctx {
	struct nfs_context *nfs;
	struct nfs_io *owner;
	pthread_mutex_t lock;     /* one call at a time on this context */
	unsigned refs;            /* the thread + open files; guarded by owner->lock */
	struct nfs_tctx *prev, *next;
};

struct nfs_io {
	struct mf_io io;
	char *url;
	int version;
	pthread_key_t key;
	pthread_mutex_t lock;     /* guards the context list and refs */
	struct nfs_tctx *contexts;
};

struct nfs_file {
	struct io_file file;
	struct nfs_tctx *tc;
	struct nfsfh *fh;
};

#define NIO(io) ((struct nfs_io *)(io))
#define NFILE(f) ((struct nfs_file *)(f))

static int nfs_ret(int ret)
{
	if (ret >= 0)
		return ret;
	errno = (-ret > 0 && -ret < 4096) ? -ret : EIO;
	/* libnfs 4.0 reports a stale file handle on READ/WRITE as EFAULT:
	 * callers retry ESTALE from the parent once, which is the right cure. */
	if (errno == EFAULT)
		errno = ESTALE;
	return -1;
}

static void tctx_unref(struct nfs_tctx *tc)
{
	struct nfs_io *nio = tc->owner;

	pthread_mutex_lock(&nio->lock);
	bool last = --tc->refs == 0;
	if (last) {
		if (tc->prev != NULL)
			tc->prev->next = tc->next;
		else
			nio->contexts = tc->next;
		if (tc->next != NULL)
			tc->next->prev = tc->prev;
	}
	pthread_mutex_unlock(&nio->lock);
	if (last) {
		nfs_destroy_context(tc->nfs);
		pthread_mutex_destroy(&tc->lock);
		free(tc);
	}
}

static void tctx_thread_exit(void *ptr)
{
	tctx_unref(ptr);
}

static int url_version(const char *url)
{
	const char *q = strchr(url, '?');

	for (const char *p = q; p != NULL; p = strchr(p + 1, '&')) {
		if (strncmp(p + 1, "version=", 8) == 0)
			return atoi(p + 9);
	}
	return 3;
}

/* Every context is its own NFSv4 client. libnfs 4.0.0 names a client
 * "Libnfs pid:<pid> <time in seconds>", so contexts made in the same second
 * share a name, and each SETCLIENTID makes the server drop the others' state
 * (NFS4ERR_STALE_CLIENTID). Hence a unique name and verifier per context.
 * (libnfs 4.0.0 leaks its default name when it is replaced: 28 bytes per
 * NFSv4 context, i.e. per thread; it is not done for NFSv3.) */
static void nfs4_identity(struct nfs_context *nfs)
{
	char host[128] = "", name[256], verifier[8];
	uint64_t rnd = 0;

	gethostname(host, sizeof(host) - 1);
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = mf_now_us() ^ (uint64_t)pthread_self();
	snprintf(name, sizeof(name), "mailfleet.%s.%d.%016llx", host, (int)getpid(),
		 (unsigned long long)rnd);
	memcpy(verifier, &rnd, sizeof(verifier));
	nfs4_set_client_name(nfs, name);
	nfs4_set_verifier(nfs, verifier);
}

static struct nfs_context *nfs_connect(const char *url_str, const char **error_r)
{
	struct nfs_context *nfs = nfs_init_context();

	if (nfs == NULL) {
		*error_r = "cannot create an NFS context";
		errno = ENOMEM;
		return NULL;
	}
	if (url_version(url_str) == 4)
		nfs4_identity(nfs);
	/* No client-side directory cache: another node's delivery must be seen
	 * by the next listing. A URL may still say dircache=1. */
	nfs_set_dircache(nfs, 0);
	struct nfs_url *url = nfs_parse_url_dir(nfs, url_str);
	if (url == NULL) {
		log_error("nfs: bad store URL: %s", nfs_get_error(nfs));
		*error_r = "cannot parse the NFS URL";
		nfs_destroy_context(nfs);
		errno = EINVAL;
		return NULL;
	}
	int ret = nfs_mount(nfs, url->server, url->path);
	nfs_destroy_url(url);
	if (ret != 0) {
		log_error("nfs: mount failed: %s", nfs_get_error(nfs));
		*error_r = "NFS mount failed";
		nfs_destroy_context(nfs);
		nfs_ret(ret);
		return NULL;
	}
	return nfs;
}

static struct nfs_tctx *tctx_add(struct nfs_io *nio, struct nfs_context *nfs)
{
	struct nfs_tctx *tc = mf_calloc(1, sizeof(*tc));

	tc->nfs = nfs;
	tc->owner = nio;
	tc->refs = 1;
	pthread_mutex_init(&tc->lock, NULL);
	pthread_mutex_lock(&nio->lock);
	tc->next = nio->contexts;
	if (tc->next != NULL)
		tc->next->prev = tc;
	nio->contexts = tc;
	pthread_mutex_unlock(&nio->lock);
	pthread_setspecific(nio->key, tc);
	return tc;
}

/* This thread's context, connected on first use; NULL with errno set. */
static struct nfs_tctx *tctx_get(struct nfs_io *nio)
{
	struct nfs_tctx *tc = pthread_getspecific(nio->key);
	const char *error;

	if (tc != NULL)
		return tc;
	struct nfs_context *nfs = nfs_connect(nio->url, &error);
	if (nfs == NULL)
		return NULL;
	return tctx_add(nio, nfs);
}

static void nfs_path(const char *path, char buf[IO_PATH_MAX + 2])
{
	buf[0] = '/';
	strcpy(buf + 1, strcmp(path, ".") == 0 ? "" : path);
}

/* Runs one libnfs call on this thread's context with the path made absolute. */
#define NFS_PATH_CALL(io, path, expr) do { \
	char npath[IO_PATH_MAX + 2]; \
	struct nfs_tctx *tc = tctx_get(NIO(io)); \
	if (tc == NULL) return -1; \
	nfs_path(path, npath); \
	pthread_mutex_lock(&tc->lock); \
	int ret_ = (expr); \
	pthread_mutex_unlock(&tc->lock); \
	return nfs_ret(ret_); } while (0)

static int nfsio_open(struct mf_io *io, const char *path, int flags, uint32_t mode,
		      struct io_file **file_r)
{
	char npath[IO_PATH_MAX + 2];
	struct nfs_tctx *tc = tctx_get(NIO(io));
	struct nfsfh *fh = NULL;
	int ret;

	if (tc == NULL)
		return -1;
	nfs_path(path, npath);
	pthread_mutex_lock(&tc->lock);
	if (flags & IO_O_CREAT)
		ret = nfs_create(tc->nfs, npath, io_flags_to_open(flags), (int)mode, &fh);
	else
		ret = nfs_open(tc->nfs, npath, io_flags_to_open(flags), &fh);
	pthread_mutex_unlock(&tc->lock);
	if (nfs_ret(ret) < 0)
		return -1;
	struct nfs_file *nf = mf_calloc(1, sizeof(*nf));
	pthread_mutex_lock(&NIO(io)->lock);
	tc->refs++;
	pthread_mutex_unlock(&NIO(io)->lock);
	nf->tc = tc;
	nf->fh = fh;
	*file_r = &nf->file;
	return 0;
}

static ssize_t nfsio_pread(struct io_file *file, void *buf, size_t len, uint64_t offset)
{
	struct nfs_tctx *tc = NFILE(file)->tc;

	pthread_mutex_lock(&tc->lock);
	size_t max = MF_MIN((size_t)nfs_get_readmax(tc->nfs), (size_t)NFS_IO_CHUNK_MAX);
	int ret = nfs_pread(tc->nfs, NFILE(file)->fh, offset, MF_MIN(len, MF_MAX(max, 512)), buf);
	pthread_mutex_unlock(&tc->lock);
	return nfs_ret(ret);
}

static ssize_t nfsio_pwrite(struct io_file *file, const void *buf, size_t len, uint64_t offset)
{
	struct nfs_tctx *tc = NFILE(file)->tc;
	size_t max;

	pthread_mutex_lock(&tc->lock);
	if (tc->owner->version == 4)
		max = NFS4_WRITE_CHUNK;
	else
		max = MF_MIN((size_t)nfs_get_writemax(tc->nfs), (size_t)NFS_IO_CHUNK_MAX);
	int ret = nfs_pwrite(tc->nfs, NFILE(file)->fh, offset, MF_MIN(len, MF_MAX(max, 512)), buf);
	pthread_mutex_unlock(&tc->lock);
	return nfs_ret(ret);
}

static int nfsio_fsync(struct io_file *file)
{
	struct nfs_tctx *tc = NFILE(file)->tc;

	pthread_mutex_lock(&tc->lock);
	int ret = nfs_fsync(tc->nfs, NFILE(file)->fh);
	pthread_mutex_unlock(&tc->lock);
	return nfs_ret(ret);
}

static void stat_convert(const struct nfs_stat_64 *st, struct io_stat *st_r)
{
	memset(st_r, 0, sizeof(*st_r));
	st_r->size = st->nfs_size;
	st_r->ino = st->nfs_ino;
	st_r->mtime_sec = (int64_t)st->nfs_mtime;
	st_r->mtime_nsec = (int32_t)st->nfs_mtime_nsec;
	st_r->mode = (uint32_t)st->nfs_mode;
	st_r->nlink = (uint32_t)st->nfs_nlink;
	st_r->uid = (uint32_t)st->nfs_uid;
	st_r->gid = (uint32_t)st->nfs_gid;
}

static int nfsio_fstat(struct io_file *file, struct io_stat *st_r)
{
	struct nfs_tctx *tc = NFILE(file)->tc;
	struct nfs_stat_64 st;

	pthread_mutex_lock(&tc->lock);
	int ret = nfs_fstat64(tc->nfs, NFILE(file)->fh, &st);
	pthread_mutex_unlock(&tc->lock);
	if (nfs_ret(ret) < 0)
		return -1;
	stat_convert(&st, st_r);
	return 0;
}

static int nfsio_close(struct io_file *file)
{
	struct nfs_tctx *tc = NFILE(file)->tc;

	pthread_mutex_lock(&tc->lock);
	int ret = nfs_close(tc->nfs, NFILE(file)->fh);
	pthread_mutex_unlock(&tc->lock);
	free(file);
	tctx_unref(tc);
	return nfs_ret(ret);
}

static int nfsio_stat(struct mf_io *io, const char *path, struct io_stat *st_r)
{
	char npath[IO_PATH_MAX + 2];
	struct nfs_tctx *tc = tctx_get(NIO(io));
	struct nfs_stat_64 st;

	if (tc == NULL)
		return -1;
	nfs_path(path, npath);
	pthread_mutex_lock(&tc->lock);
	int ret = nfs_lstat64(tc->nfs, npath, &st);
	pthread_mutex_unlock(&tc->lock);
	if (nfs_ret(ret) < 0)
		return -1;
	stat_convert(&st, st_r);
	return 0;
}

static int nfsio_rename(struct mf_io *io, const char *from, const char *to)
{
	char nto[IO_PATH_MAX + 2];

	nfs_path(to, nto);
	NFS_PATH_CALL(io, from, nfs_rename(tc->nfs, npath, nto));
}

static int nfsio_link(struct mf_io *io, const char *from, const char *to)
{
	char nto[IO_PATH_MAX + 2];

	nfs_path(to, nto);
	NFS_PATH_CALL(io, from, nfs_link(tc->nfs, npath, nto));
}

static int nfsio_unlink(struct mf_io *io, const char *path)
{
	NFS_PATH_CALL(io, path, nfs_unlink(tc->nfs, npath));
}

static int nfsio_mkdir(struct mf_io *io, const char *path, uint32_t mode)
{
	NFS_PATH_CALL(io, path, nfs_mkdir2(tc->nfs, npath, (int)mode));
}

static int nfsio_rmdir(struct mf_io *io, const char *path)
{
	NFS_PATH_CALL(io, path, nfs_rmdir(tc->nfs, npath));
}

/* nfs_opendir reads the whole directory; callbacks run after the lock is
 * dropped so that they may call io themselves. */
static int nfsio_readdir(struct mf_io *io, const char *path, io_readdir_cb *cb, void *ctx)
{
	char npath[IO_PATH_MAX + 2];
	struct nfs_tctx *tc = tctx_get(NIO(io));
	struct nfsdir *dir;
	struct nfsdirent *ent;

	if (tc == NULL)
		return -1;
	nfs_path(path, npath);
	pthread_mutex_lock(&tc->lock);
	int ret = nfs_opendir(tc->nfs, npath, &dir);
	pthread_mutex_unlock(&tc->lock);
	if (nfs_ret(ret) < 0)
		return -1;
	while ((ent = nfs_readdir(tc->nfs, dir)) != NULL) {
		if (strcmp(ent->name, ".") == 0 || strcmp(ent->name, "..") == 0)
			continue;
		if (cb(ctx, ent->name) != 0)
			break;
	}
	pthread_mutex_lock(&tc->lock);
	nfs_closedir(tc->nfs, dir);
	pthread_mutex_unlock(&tc->lock);
	return 0;
}

/* NFS servers commit directory operations (CREATE, RENAME, ...) to stable
 * storage before replying, so there is nothing left to flush. */
static int nfsio_fsync_dir(struct mf_io *io, const char *path)
{
	return 0;
}

static int nfsio_chmod(struct mf_io *io, const char *path, uint32_t mode)
{
	NFS_PATH_CALL(io, path, nfs_chmod(tc->nfs, npath, (int)mode));
}

static int nfsio_chown(struct mf_io *io, const char *path, uint32_t uid, uint32_t gid)
{
	NFS_PATH_CALL(io, path, nfs_chown(tc->nfs, npath, (int)uid, (int)gid));
}

static int nfsio_utimes(struct mf_io *io, const char *path, int64_t atime_sec, int64_t mtime_sec)
{
	struct timeval tv[2] = { { .tv_sec = (time_t)atime_sec }, { .tv_sec = (time_t)mtime_sec } };

	NFS_PATH_CALL(io, path, nfs_utimes(tc->nfs, npath, tv));
}

static int nfsio_statvfs(struct mf_io *io, const char *path, struct io_statvfs *st_r)
{
	char npath[IO_PATH_MAX + 2];
	struct nfs_tctx *tc = tctx_get(NIO(io));
	struct nfs_statvfs_64 st;

	if (tc == NULL)
		return -1;
	nfs_path(path, npath);
	pthread_mutex_lock(&tc->lock);
	int ret = nfs_statvfs64(tc->nfs, npath, &st);
	pthread_mutex_unlock(&tc->lock);
	if (nfs_ret(ret) < 0)
		return -1;
	st_r->total_bytes = st.f_blocks * st.f_frsize;
	st_r->free_bytes = st.f_bavail * st.f_frsize;
	st_r->total_files = st.f_files;
	st_r->free_files = st.f_favail;
	return 0;
}

/* Every thread must be done with the io (files closed) before this. */
static void nfsio_deinit(struct mf_io *io)
{
	struct nfs_io *nio = NIO(io);
	struct nfs_tctx *tc, *next;

	pthread_key_delete(nio->key);
	for (tc = nio->contexts; tc != NULL; tc = next) {
		next = tc->next;
		nfs_destroy_context(tc->nfs);
		pthread_mutex_destroy(&tc->lock);
		free(tc);
	}
	pthread_mutex_destroy(&nio->lock);
	free(nio->url);
	free(nio);
}

static const struct io_vfuncs nfs_vfuncs = {
	.name = "nfs",
	.deinit = nfsio_deinit,
	.open = nfsio_open,
	.pread = nfsio_pread,
	.pwrite = nfsio_pwrite,
	.fsync = nfsio_fsync,
	.fstat = nfsio_fstat,
	.close = nfsio_close,
	.stat = nfsio_stat,
	.rename = nfsio_rename,
	.link = nfsio_link,
	.unlink = nfsio_unlink,
	.mkdir = nfsio_mkdir,
	.rmdir = nfsio_rmdir,
	.readdir = nfsio_readdir,
	.fsync_dir = nfsio_fsync_dir,
	.chmod = nfsio_chmod,
	.chown = nfsio_chown,
	.utimes = nfsio_utimes,
	.statvfs = nfsio_statvfs,
};

int io_nfs_new(const char *url, struct mf_io **io_r, const char **error_r)
{
	*io_r = NULL;
	if (strncmp(url, "nfs://", 6) != 0 || strlen(url) > 4096) {
		*error_r = "NFS URL must start with nfs:// (at most 4096 bytes)";
		errno = EINVAL;
		return -1;
	}
	/* Connect in the calling thread first, so a bad URL or a dead server
	 * fails here rather than on the first store call. */
	struct nfs_context *nfs = nfs_connect(url, error_r);
	if (nfs == NULL)
		return -1;
	struct nfs_io *nio = mf_calloc(1, sizeof(*nio));
	nio->io.v = &nfs_vfuncs;
	nio->url = mf_strdup(url);
	nio->version = url_version(url);
	pthread_mutex_init(&nio->lock, NULL);
	if (pthread_key_create(&nio->key, tctx_thread_exit) != 0) {
		nfs_destroy_context(nfs);
		pthread_mutex_destroy(&nio->lock);
		free(nio->url);
		free(nio);
		*error_r = "out of thread-specific keys";
		errno = EAGAIN;
		return -1;
	}
	tctx_add(nio, nfs);
	*io_r = &nio->io;
	return 0;
}
