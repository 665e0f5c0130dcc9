/* io.c: the io.h front door. Checks every path (no escapes from the backend
 * root), dispatches to the backend vtable, and implements the helpers that
 * are the same for every backend (write-all, mkdir -p, read a whole file). */
#include "store/io-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>

bool io_path_valid(const char *path)
{
	if (path == NULL || path[0] == '/' || strlen(path) > IO_PATH_MAX)
		return false;
	for (const char *p = path; *p != '\0';) {
		const char *end = strchr(p, '/');
		size_t len = end == NULL ? strlen(p) : (size_t)(end - p);
		if (len == 2 && p[0] == '.' && p[1] == '.')
			return false;
		if (end == NULL)
			break;
		p = end + 1;
	}
	return true;
}

#define CHECK_PATH(path) do { if (!io_path_valid(path)) { errno = EINVAL; return -1; } } while (0)

int io_new_from_location(const char *location, struct mf_io **io_r, const char **error_r)
{
	if (strncmp(location, "nfs://", 6) == 0)
		return io_nfs_new(location, io_r, error_r);
	return io_posix_new(location, io_r, error_r);
}

void io_free(struct mf_io **io)
{
	if (io == NULL || *io == NULL)
		return;
	(*io)->v->deinit(*io);
	*io = NULL;
}

const char *io_backend_name(const struct mf_io *io)
{
	return io->v->name;
}

int io_open(struct mf_io *io, const char *path, int flags, uint32_t mode, struct io_file **file_r)
{
	struct io_stat st;

	*file_r = NULL;
	CHECK_PATH(path);
	if (io->v->open(io, path, flags, mode, file_r) < 0)
		return -1;
	(*file_r)->io = io;
	(*file_r)->write_pos = 0;
	if ((flags & IO_O_APPEND) != 0) {
		if (io_fstat(*file_r, &st) < 0) {
			int err = errno;
			io_close(file_r);
			errno = err;
			return -1;
		}
		(*file_r)->write_pos = st.size;
	}
	return 0;
}

ssize_t io_pread(struct io_file *file, void *buf, size_t len, uint64_t offset)
{
	return file->io->v->pread(file, buf, len, offset);
}

ssize_t io_pwrite(struct io_file *file, const void *buf, size_t len, uint64_t offset)
{
	ssize_t ret = file->io->v->pwrite(file, buf, len, offset);

	if (ret > 0 && offset + (uint64_t)ret > file->write_pos)
		file->write_pos = offset + (uint64_t)ret;
	return ret;
}

int io_write_all(struct io_file *file, const void *buf, size_t len)
{
	const unsigned char *p = buf;

	while (len > 0) {
		ssize_t ret = io_pwrite(file, p, len, file->write_pos);
		if (ret < 0)
			return -1;
		if (ret == 0) {
			errno = EIO;
			return -1;
		}
		p += ret;
		len -= (size_t)ret;
	}
	return 0;
}

int io_fsync(struct io_file *file)
{
	return file->io->v->fsync(file);
}

int io_fstat(struct io_file *file, struct io_stat *st_r)
{
	return file->io->v->fstat(file, st_r);
}

int io_close(struct io_file **file)
{
	struct io_file *f = *file;

	if (f == NULL)
		return 0;
	*file = NULL;
	return f->io->v->close(f);
}

int io_stat(struct mf_io *io, const char *path, struct io_stat *st_r)
{
	CHECK_PATH(path);
	return io->v->stat(io, path, st_r);
}

int io_rename(struct mf_io *io, const char *from, const char *to)
{
	CHECK_PATH(from);
	CHECK_PATH(to);
	return io->v->rename(io, from, to);
}

int io_link(struct mf_io *io, const char *from, const char *to)
{
	CHECK_PATH(from);
	CHECK_PATH(to);
	return io->v->link(io, from, to);
}

int io_unlink(struct mf_io *io, const char *path)
{
	CHECK_PATH(path);
	return io->v->unlink(io, path);
}

int io_mkdir(struct mf_io *io, const char *path, uint32_t mode)
{
	CHECK_PATH(path);
	return io->v->mkdir(io, path, mode);
}

int io_rmdir(struct mf_io *io, const char *path)
{
	CHECK_PATH(path);
	return io->v->rmdir(io, path);
}

int io_readdir(struct mf_io *io, const char *path, io_readdir_cb *cb, void *ctx)
{
	CHECK_PATH(path);
	return io->v->readdir(io, path, cb, ctx);
}

int io_fsync_dir(struct mf_io *io, const char *path)
{
	CHECK_PATH(path);
	return io->v->fsync_dir(io, path);
}

int io_chmod(struct mf_io *io, const char *path, uint32_t mode)
{
	CHECK_PATH(path);
	return io->v->chmod(io, path, mode);
}

int io_chown(struct mf_io *io, const char *path, uint32_t uid, uint32_t gid)
{
	CHECK_PATH(path);
	return io->v->chown(io, path, uid, gid);
}

int io_utimes(struct mf_io *io, const char *path, int64_t atime_sec, int64_t mtime_sec)
{
	CHECK_PATH(path);
	return io->v->utimes(io, path, atime_sec, mtime_sec);
}

int io_statvfs(struct mf_io *io, const char *path, struct io_statvfs *st_r)
{
	CHECK_PATH(path);
	return io->v->statvfs(io, path, st_r);
}

/* Tries the full path first, so an existing parent chain costs one call. */
int io_mkdir_parents(struct mf_io *io, const char *path, uint32_t mode)
{
	CHECK_PATH(path);
	if (path[0] == '\0' || strcmp(path, ".") == 0)
		return 0;
	if (io_mkdir(io, path, mode) == 0 || errno == EEXIST)
		return 0;
	if (errno != ENOENT)
		return -1;
	const char *slash = strrchr(path, '/');
	if (slash == NULL)
		return -1;
	char *parent = mf_strndup(path, (size_t)(slash - path));
	int ret = io_mkdir_parents(io, parent, mode);
	free(parent);
	if (ret < 0)
		return -1;
	if (io_mkdir(io, path, mode) == 0 || errno == EEXIST)
		return 0;
	return -1;
}

static int read_all(struct io_file *file, size_t max_size, char **data_r, size_t *len_r)
{
	size_t cap = 4096, len = 0;
	char *data = mf_malloc(cap + 1);

	for (;;) {
		if (len == cap) {
			if (cap > max_size) {
				free(data);
				errno = EFBIG;
				return -1;
			}
			cap *= 2;
			data = mf_realloc(data, cap + 1);
		}
		ssize_t ret = io_pread(file, data + len, cap - len, len);
		if (ret < 0) {
			free(data);
			return -1;
		}
		if (ret == 0)
			break;
		len += (size_t)ret;
	}
	if (len > max_size) {
		free(data);
		errno = EFBIG;
		return -1;
	}
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

int io_read_file(struct mf_io *io, const char *path, size_t max_size, char **data_r, size_t *len_r)
{
	struct io_file *file;

	*data_r = NULL;
	*len_r = 0;
	if (io_open(io, path, IO_O_RDONLY, 0, &file) < 0)
		return -1;
	int ret = read_all(file, max_size, data_r, len_r);
	int err = errno;
	io_close(&file);
	errno = err;
	return ret;
}

int io_flags_to_open(int flags)
{
	int ret;

	switch (flags & 0x03) {
	case IO_O_WRONLY: ret = O_WRONLY; break;
	case IO_O_RDWR: ret = O_RDWR; break;
	default: ret = O_RDONLY; break;
	}
	if (flags & IO_O_CREAT) ret |= O_CREAT;
	if (flags & IO_O_EXCL) ret |= O_EXCL;
	if (flags & IO_O_TRUNC) ret |= O_TRUNC;
	if (flags & IO_O_APPEND) ret |= O_APPEND;
	return ret;
}
