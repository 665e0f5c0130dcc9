/* io-private.h: the backend vtable behind io.h. Each backend (io-posix.c,
 * io-nfs.c, io-mem.c, io-fault.c) embeds struct mf_io / struct io_file at the
 * start of its own structs and fills in an io_vfuncs table; io.c validates
 * paths and dispatches. Only store/ includes this header. */
#ifndef MF_STORE_IO_PRIVATE_H
#define MF_STORE_IO_PRIVATE_H

#include "store/io.h"

struct io_vfuncs {
	const char *name;
	/* Frees the backend (io itself included). */
	void (*deinit)(struct mf_io *io);

	int (*open)(struct mf_io *io, const char *path, int flags, uint32_t mode,
		    struct io_file **file_r);
	ssize_t (*pread)(struct io_file *file, void *buf, size_t len, uint64_t offset);
	ssize_t (*pwrite)(struct io_file *file, const void *buf, size_t len, uint64_t offset);
	int (*fsync)(struct io_file *file);
	int (*fstat)(struct io_file *file, struct io_stat *st_r);
	/* Releases the file (always, even when returning -1). */
	int (*close)(struct io_file *file);

	int (*stat)(struct mf_io *io, const char *path, struct io_stat *st_r);
	int (*rename)(struct mf_io *io, const char *from, const char *to);
	int (*link)(struct mf_io *io, const char *from, const char *to);
	int (*unlink)(struct mf_io *io, const char *path);
	int (*mkdir)(struct mf_io *io, const char *path, uint32_t mode);
	int (*rmdir)(struct mf_io *io, const char *path);
	int (*readdir)(struct mf_io *io, const char *path, io_readdir_cb *cb, void *ctx);
	int (*fsync_dir)(struct mf_io *io, const char *path);
	int (*chmod)(struct mf_io *io, const char *path, uint32_t mode);
	int (*chown)(struct mf_io *io, const char *path, uint32_t uid, uint32_t gid);
	int (*utimes)(struct mf_io *io, const char *path, int64_t atime_sec, int64_t mtime_sec);
	int (*statvfs)(struct mf_io *io, const char *path, struct io_statvfs *st_r);
};

struct mf_io {
	const struct io_vfuncs *v;
};

struct io_file {
	struct mf_io *io;      /* the io the file was opened through */
	uint64_t write_pos;    /* where io_write_all() appends next */
};

/* Paths handed to backends have passed this: relative, no "..", no NUL
 * inside, not longer than IO_PATH_MAX. "" and "." name the root. */
#define IO_PATH_MAX 4096
bool io_path_valid(const char *path);

/* IO_O_* flags as open(2) O_* flags (both backends speak the latter). */
int io_flags_to_open(int flags);

#endif
