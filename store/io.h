/* io.h: the store's file-I/O interface. Everything above store/ reaches files
 * only through it, so an NFS fault (ESTALE, EIO, a stall) can be injected and
 * tested. Backends: POSIX (local disk or kernel NFS mount), libnfs (userspace
 * NFSv3/v4 with no client cache), in-memory, and a fault-injecting wrapper.
 *
 * Conventions: paths are relative to the backend's root ("dom/user/Maildir/new"),
 * never absolute, never containing "..". Every call returns -1 with errno set
 * (EIO, ESTALE, ENOSPC, EEXIST, ENOENT, ...) or >= 0 on success. An io object
 * is safe to use from several threads at once; an io_file belongs to one
 * thread at a time. */
#ifndef MF_STORE_IO_H
#define MF_STORE_IO_H

#include "lib/lib.h"

struct mf_io;
struct io_file;

/* Open flags (the backends translate them). */
#define IO_O_RDONLY 0x00
#define IO_O_WRONLY 0x01
#define IO_O_RDWR   0x02
#define IO_O_CREAT  0x04
#define IO_O_EXCL   0x08
#define IO_O_TRUNC  0x10
#define IO_O_APPEND 0x20

struct io_stat {
	uint64_t size;
	uint64_t ino;
	int64_t mtime_sec;
	int32_t mtime_nsec;
	uint32_t mode;    /* type and permission bits, as st_mode */
	uint32_t nlink;
	uint32_t uid;
	uint32_t gid;
};

struct io_statvfs {
	uint64_t total_bytes;
	uint64_t free_bytes;   /* available to an unprivileged user */
	uint64_t total_files;
	uint64_t free_files;
};

/* Called per entry, "." and ".." excluded; return non-zero to stop early. */
typedef int io_readdir_cb(void *ctx, const char *name);

/* --- backends --- */
/* POSIX files below root_dir (created if missing). */
int io_posix_new(const char *root_dir, struct mf_io **io_r, const char **error_r);
/* libnfs: url is nfs://server/export/path?nfsport=N&mountport=M&version=3.
 * Each thread gets its own NFS context (libnfs contexts are not thread-safe). */
int io_nfs_new(const char *url, struct mf_io **io_r, const char **error_r);
/* Picks io_nfs_new() for "nfs://" URLs and io_posix_new() otherwise. */
int io_new_from_location(const char *location, struct mf_io **io_r, const char **error_r);
/* Everything in memory; for unit tests. */
struct mf_io *io_mem_new(void);
/* Makes an io_mem_new() object stamp mtimes offset_secs away from the local
 * clock, to test logic that must use the NAS's clock (skew). */
void io_mem_set_clock_offset(struct mf_io *io, int64_t offset_secs);
/* Wraps inner (takes ownership). Fails calls as configured by io_fault_set(). */
struct mf_io *io_fault_new(struct mf_io *inner);
void io_free(struct mf_io **io);
/* "posix", "nfs", "mem", "fault". */
const char *io_backend_name(const struct mf_io *io);

/* --- fault injection (only on an io_fault_new() object) --- */
enum io_op {
	IO_OP_OPEN, IO_OP_READ, IO_OP_WRITE, IO_OP_FSYNC, IO_OP_CLOSE,
	IO_OP_STAT, IO_OP_RENAME, IO_OP_LINK, IO_OP_UNLINK, IO_OP_MKDIR,
	IO_OP_RMDIR, IO_OP_READDIR, IO_OP_OTHER,
	IO_OP_COUNT
};
/* The nth (1-based) call of op from now on fails with err; with stall_ms > 0
 * it sleeps that long first (err 0: it only sleeps, then is carried out).
 * nth == 0 clears the fault for op. */
void io_fault_set(struct mf_io *io, enum io_op op, unsigned nth, int err, unsigned stall_ms);
/* Configures faults from a spec such as "write:3:EIO,rename:1:ESTALE"; used by
 * the daemon's test-only setting store.fault_inject. Returns -1 on a bad spec. */
int io_fault_parse(struct mf_io *io, const char *spec, const char **error_r);
unsigned io_fault_calls(struct mf_io *io, enum io_op op);
/* Like io_fault_set(), but the nth call is carried out and then reports err,
 * as when an NFS reply is lost after the server acted and the retransmitted
 * request fails (a rename that succeeded reports ENOENT). */
void io_fault_set_after(struct mf_io *io, enum io_op op, unsigned nth, int err);

/* --- files --- */
int io_open(struct mf_io *io, const char *path, int flags, uint32_t mode, struct io_file **file_r);
ssize_t io_pread(struct io_file *file, void *buf, size_t len, uint64_t offset);
ssize_t io_pwrite(struct io_file *file, const void *buf, size_t len, uint64_t offset);
/* Writes everything (looping over short writes) at the current end offset. */
int io_write_all(struct io_file *file, const void *buf, size_t len);
int io_fsync(struct io_file *file);
int io_fstat(struct io_file *file, struct io_stat *st_r);
/* Closes and sets *file to NULL; returns the close error (NFS reports late write errors there). */
int io_close(struct io_file **file);

/* --- names --- */
int io_stat(struct mf_io *io, const char *path, struct io_stat *st_r);
int io_rename(struct mf_io *io, const char *from, const char *to);
int io_link(struct mf_io *io, const char *from, const char *to);
int io_unlink(struct mf_io *io, const char *path);
int io_mkdir(struct mf_io *io, const char *path, uint32_t mode);
int io_rmdir(struct mf_io *io, const char *path);
int io_readdir(struct mf_io *io, const char *path, io_readdir_cb *cb, void *ctx);
/* Makes the directory's entries durable (fsync of the directory on POSIX; NFS
 * directory operations are already stable when they return). */
int io_fsync_dir(struct mf_io *io, const char *path);
int io_chmod(struct mf_io *io, const char *path, uint32_t mode);
int io_chown(struct mf_io *io, const char *path, uint32_t uid, uint32_t gid);
int io_utimes(struct mf_io *io, const char *path, int64_t atime_sec, int64_t mtime_sec);
int io_statvfs(struct mf_io *io, const char *path, struct io_statvfs *st_r);

/* --- helpers built on the calls above --- */
/* mkdir -p; existing directories are fine. */
int io_mkdir_parents(struct mf_io *io, const char *path, uint32_t mode);
/* Reads a whole file (at most max_size bytes, else EFBIG); *data_r is NUL-terminated, free() it. */
int io_read_file(struct mf_io *io, const char *path, size_t max_size, char **data_r, size_t *len_r);

#endif
