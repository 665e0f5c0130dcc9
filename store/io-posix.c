/* io-posix.c: the io.h backend for local disks and kernel NFS mounts. Every
 * call is relative to a directory fd opened on the root (the *at() calls), so
 * paths never leave the root even if the root itself is renamed. */
#include "store/io-private.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

struct posix_io {
	struct mf_io io;
	int root_fd;
	char *root_dir;
};

struct posix_file {
	struct io_file file;
	int fd;
};

#define PIO(io) ((struct posix_io *)(io))
#define PFILE(f) ((struct posix_file *)(f))

static const char *rel(const char *path)
{
	return path[0] == '\0' ? "." : path;
}

static int posix_open(struct mf_io *io, const char *path, int flags, uint32_t mode,
		      struct io_file **file_r)
{
	int fd = openat(PIO(io)->root_fd, rel(path), io_flags_to_open(flags) | O_CLOEXEC | O_NOFOLLOW, (mode_t)mode);

	if (fd < 0)
		return -1;
	struct posix_file *pf = mf_calloc(1, sizeof(*pf));
	pf->fd = fd;
	*file_r = &pf->file;
	return 0;
}

static ssize_t posix_pread(struct io_file *file, void *buf, size_t len, uint64_t offset)
{
	ssize_t ret;

	do {
		ret = pread(PFILE(file)->fd, buf, len, (off_t)offset);
	} while (ret < 0 && errno == EINTR);
	return ret;
}

static ssize_t posix_pwrite(struct io_file *file, const void *buf, size_t len, uint64_t offset)
{
	ssize_t ret;

	do {
		ret = pwrite(PFILE(file)->fd, buf, len, (off_t)offset);
	} while (ret < 0 && errno == EINTR);
	return ret;
}

static int posix_fsync(struct io_file *file)
{
	return fsync(PFILE(file)->fd);
}

static void stat_convert(const struct stat *st, struct io_stat *st_r)
{
	memset(st_r, 0, sizeof(*st_r));
	st_r->size = (uint64_t)st->st_size;
	st_r->ino = (uint64_t)st->st_ino;
	st_r->mtime_sec = (int64_t)st->st_mtim.tv_sec;
	st_r->mtime_nsec = (int32_t)st->st_mtim.tv_nsec;
	st_r->mode = (uint32_t)st->st_mode;
	st_r->nlink = (uint32_t)st->st_nlink;
	st_r->uid = (uint32_t)st->st_uid;
	st_r->gid = (uint32_t)st->st_gid;
}

static int posix_fstat(struct io_file *file, struct io_stat *st_r)
{
	struct stat st;

	if (fstat(PFILE(file)->fd, &st) < 0)
		return -1;
	stat_convert(&st, st_r);
	return 0;
}

static int posix_close(struct io_file *file)
{
	int ret = close(PFILE(file)->fd);

	free(file);
	return ret;
}

static int posix_stat(struct mf_io *io, const char *path, struct io_stat *st_r)
{
	struct stat st;

	if (fstatat(PIO(io)->root_fd, rel(path), &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -1;
	stat_convert(&st, st_r);
	return 0;
}

static int posix_rename(struct mf_io *io, const char *from, const char *to)
{
	return renameat(PIO(io)->root_fd, rel(from), PIO(io)->root_fd, rel(to));
}

static int posix_link(struct mf_io *io, const char *from, const char *to)
{
	return linkat(PIO(io)->root_fd, rel(from), PIO(io)->root_fd, rel(to), 0);
}

static int posix_unlink(struct mf_io *io, const char *path)
{
	return unlinkat(PIO(io)->root_fd, rel(path), 0);
}

static int posix_mkdir(struct mf_io *io, const char *path, uint32_t mode)
{
	return mkdirat(PIO(io)->root_fd, rel(path), (mode_t)mode);
}

static int posix_rmdir(struct mf_io *io, const char *path)
{
	return unlinkat(PIO(io)->root_fd, rel(path), AT_REMOVEDIR);
}

static int posix_readdir(struct mf_io *io, const char *path, io_readdir_cb *cb, void *ctx)
{
	int fd = openat(PIO(io)->root_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	DIR *dir = fdopendir(fd);
	if (dir == NULL) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	struct dirent *d;
	int ret = 0;
	errno = 0;
	while ((d = readdir(dir)) != NULL) {
		if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
			continue;
		if (cb(ctx, d->d_name) != 0)
			break;
		errno = 0;
	}
	if (d == NULL && errno != 0)
		ret = -1;
	int err = errno;
	closedir(dir);
	errno = err;
	return ret;
}

static int posix_fsync_dir(struct mf_io *io, const char *path)
{
	int fd = openat(PIO(io)->root_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int ret = fsync(fd);
	int err = errno;
	close(fd);
	errno = err;
	return ret;
}

static int posix_chmod(struct mf_io *io, const char *path, uint32_t mode)
{
	return fchmodat(PIO(io)->root_fd, rel(path), (mode_t)mode, 0);
}

static int posix_chown(struct mf_io *io, const char *path, uint32_t uid, uint32_t gid)
{
	return fchownat(PIO(io)->root_fd, rel(path), (uid_t)uid, (gid_t)gid, AT_SYMLINK_NOFOLLOW);
}

static int posix_utimes(struct mf_io *io, const char *path, int64_t atime_sec, int64_t mtime_sec)
{
	struct timespec ts[2] = { { .tv_sec = (time_t)atime_sec }, { .tv_sec = (time_t)mtime_sec } };

	return utimensat(PIO(io)->root_fd, rel(path), ts, AT_SYMLINK_NOFOLLOW);
}

static int posix_statvfs(struct mf_io *io, const char *path, struct io_statvfs *st_r)
{
	struct statvfs st;
	int fd = openat(PIO(io)->root_fd, rel(path), O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	int ret = fstatvfs(fd, &st);
	int err = errno;
	close(fd);
	errno = err;
	if (ret < 0)
		return -1;
	st_r->total_bytes = (uint64_t)st.f_blocks * st.f_frsize;
	st_r->free_bytes = (uint64_t)st.f_bavail * st.f_frsize;
	st_r->total_files = (uint64_t)st.f_files;
	st_r->free_files = (uint64_t)st.f_favail;
	return 0;
}

static void posix_deinit(struct mf_io *io)
{
	close(PIO(io)->root_fd);
	free(PIO(io)->root_dir);
	free(io);
}

static const struct io_vfuncs posix_vfuncs = {
	.name = "posix",
	.deinit = posix_deinit,
	.open = posix_open,
	.pread = posix_pread,
	.pwrite = posix_pwrite,
	.fsync = posix_fsync,
	.fstat = posix_fstat,
	.close = posix_close,
	.stat = posix_stat,
	.rename = posix_rename,
	.link = posix_link,
	.unlink = posix_unlink,
	.mkdir = posix_mkdir,
	.rmdir = posix_rmdir,
	.readdir = posix_readdir,
	.fsync_dir = posix_fsync_dir,
	.chmod = posix_chmod,
	.chown = posix_chown,
	.utimes = posix_utimes,
	.statvfs = posix_statvfs,
};

/* mkdir -p for the root itself (an absolute or cwd-relative host path). */
static int mkdir_host_parents(const char *dir)
{
	if (mkdir(dir, 0700) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -1;
	const char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return -1;
	char *parent = mf_strndup(dir, (size_t)(slash - dir));
	int ret = mkdir_host_parents(parent);
	free(parent);
	if (ret < 0)
		return -1;
	return (mkdir(dir, 0700) == 0 || errno == EEXIST) ? 0 : -1;
}

int io_posix_new(const char *root_dir, struct mf_io **io_r, const char **error_r)
{
	*io_r = NULL;
	if (root_dir == NULL || root_dir[0] == '\0') {
		*error_r = "empty store root directory";
		errno = EINVAL;
		return -1;
	}
	if (mkdir_host_parents(root_dir) < 0) {
		*error_r = "cannot create the store root directory";
		return -1;
	}
	int fd = open(root_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		*error_r = "cannot open the store root directory";
		return -1;
	}
	struct posix_io *pio = mf_calloc(1, sizeof(*pio));
	pio->io.v = &posix_vfuncs;
	pio->root_fd = fd;
	pio->root_dir = mf_strdup(root_dir);
	*io_r = &pio->io;
	return 0;
}
