/* io-fault.c: a wrapper backend that makes the Nth call of an operation fail
 * with a chosen errno (optionally after a stall), to test that the store loses
 * nothing acknowledged when the NAS misbehaves. A fault fires once. With
 * io_fault_set() the wrapped call is not performed (except close, which always
 * releases the inner file, as a real close does); with io_fault_set_after() it
 * is performed and its success is reported as a failure (a lost NFS reply). */
#include "store/io-private.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fault_rule {
	unsigned fire_at;   /* absolute call number; 0 = none */
	int err;
	unsigned stall_ms;
	bool after;         /* perform the call, then report err */
};

enum fault_action { FAULT_NONE, FAULT_BEFORE, FAULT_AFTER };

struct fault_io {
	struct mf_io io;
	struct mf_io *inner;
	pthread_mutex_t lock;
	unsigned calls[IO_OP_COUNT];
	struct fault_rule rules[IO_OP_COUNT];
};

struct fault_file {
	struct io_file file;
	struct io_file *inner;
};

#define FIO(io) ((struct fault_io *)(io))
#define FFILE(f) ((struct fault_file *)(f))

static const char *const op_names[IO_OP_COUNT] = {
	"open", "read", "write", "fsync", "close", "stat", "rename", "link",
	"unlink", "mkdir", "rmdir", "readdir", "other",
};

static const struct { const char *name; int err; } err_names[] = {
	{ "EIO", EIO }, { "ESTALE", ESTALE }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
	{ "EACCES", EACCES }, { "EROFS", EROFS }, { "ENOENT", ENOENT }, { "EEXIST", EEXIST },
};

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* Counts the call and says whether (and how) it must fail; *err_r is set
 * for FAULT_BEFORE and FAULT_AFTER. */
static enum fault_action fault_check(struct fault_io *fio, enum io_op op, int *err_r)
{
	struct fault_rule rule = { 0 };

	pthread_mutex_lock(&fio->lock);
	unsigned n = ++fio->calls[op];
	if (fio->rules[op].fire_at != 0 && fio->rules[op].fire_at == n) {
		rule = fio->rules[op];
		fio->rules[op].fire_at = 0;
	}
	pthread_mutex_unlock(&fio->lock);
	if (rule.fire_at == 0)
		return FAULT_NONE;
	if (rule.stall_ms > 0)
		sleep_ms(rule.stall_ms);
	if (rule.err == 0)
		return FAULT_NONE;   /* a stall only */
	*err_r = rule.err;
	return rule.after ? FAULT_AFTER : FAULT_BEFORE;
}

static void fault_set(struct mf_io *io, enum io_op op, unsigned nth, int err,
		      unsigned stall_ms, bool after)
{
	struct fault_io *fio = FIO(io);

	if (strcmp(io->v->name, "fault") != 0 || (unsigned)op >= IO_OP_COUNT)
		return;
	pthread_mutex_lock(&fio->lock);
	fio->rules[op].fire_at = nth == 0 ? 0 : fio->calls[op] + nth;
	fio->rules[op].err = err;
	fio->rules[op].stall_ms = stall_ms;
	fio->rules[op].after = after;
	pthread_mutex_unlock(&fio->lock);
}

void io_fault_set(struct mf_io *io, enum io_op op, unsigned nth, int err, unsigned stall_ms)
{
	fault_set(io, op, nth, err, stall_ms, false);
}

void io_fault_set_after(struct mf_io *io, enum io_op op, unsigned nth, int err)
{
	fault_set(io, op, nth, err, 0, true);
}

unsigned io_fault_calls(struct mf_io *io, enum io_op op)
{
	struct fault_io *fio = FIO(io);
	unsigned n;

	if (strcmp(io->v->name, "fault") != 0 || (unsigned)op >= IO_OP_COUNT)
		return 0;
	pthread_mutex_lock(&fio->lock);
	n = fio->calls[op];
	pthread_mutex_unlock(&fio->lock);
	return n;
}

static int parse_uint(const char *s, size_t len, unsigned max, unsigned *n_r)
{
	unsigned long n = 0;

	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (unsigned long)(s[i] - '0');
	}
	if (n > max)
		return -1;
	*n_r = (unsigned)n;
	return 0;
}

static int lookup_name(const char *s, size_t len, bool is_err, int *value_r)
{
	size_t count = is_err ? MF_N_ELEMENTS(err_names) : IO_OP_COUNT;

	for (size_t i = 0; i < count; i++) {
		const char *name = is_err ? err_names[i].name : op_names[i];
		if (strlen(name) == len && memcmp(name, s, len) == 0) {
			*value_r = is_err ? err_names[i].err : (int)i;
			return 0;
		}
	}
	return -1;
}

/* One "op:nth:ERRNO[:stall_ms]" item of len bytes. */
static int parse_item(const char *s, size_t len, enum io_op *op_r, unsigned *nth_r,
		      int *err_r, unsigned *stall_r, const char **error_r)
{
	const char *fields[4];
	size_t lens[4], count = 0;
	const char *p = s, *end = s + len;
	int op;

	for (;;) {
		const char *colon = memchr(p, ':', (size_t)(end - p));
		if (count == 4) {
			count = 5;
			break;
		}
		fields[count] = p;
		lens[count++] = (size_t)((colon == NULL ? end : colon) - p);
		if (colon == NULL)
			break;
		p = colon + 1;
	}
	if (count < 3 || count > 4) {
		*error_r = "fault spec item must be op:nth:ERRNO[:stall_ms]";
		return -1;
	}
	if (lookup_name(fields[0], lens[0], false, &op) < 0) {
		*error_r = "fault spec: unknown operation";
		return -1;
	}
	if (parse_uint(fields[1], lens[1], 1000000000, nth_r) < 0 ||
	    (count == 4 && parse_uint(fields[3], lens[3], 3600000, stall_r) < 0)) {
		*error_r = "fault spec: bad number";
		return -1;
	}
	if (lookup_name(fields[2], lens[2], true, err_r) < 0) {
		*error_r = "fault spec: unknown errno name";
		return -1;
	}
	*op_r = (enum io_op)op;
	return 0;
}

/* Validates the whole spec before applying any of it. */
int io_fault_parse(struct mf_io *io, const char *spec, const char **error_r)
{
	struct { enum io_op op; unsigned nth, stall; int err; } items[IO_OP_COUNT * 4];
	size_t count = 0;

	if (strcmp(io->v->name, "fault") != 0) {
		*error_r = "fault spec given for an io that is not a fault wrapper";
		return -1;
	}
	for (const char *p = spec; *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma == NULL ? strlen(p) : (size_t)(comma - p);
		if (count == MF_N_ELEMENTS(items)) {
			*error_r = "fault spec: too many items";
			return -1;
		}
		items[count].stall = 0;
		if (parse_item(p, len, &items[count].op, &items[count].nth, &items[count].err,
			       &items[count].stall, error_r) < 0)
			return -1;
		count++;
		p += len + (comma != NULL ? 1 : 0);
		if (comma != NULL && *p == '\0') {
			*error_r = "fault spec: trailing comma";
			return -1;
		}
	}
	for (size_t i = 0; i < count; i++)
		io_fault_set(io, items[i].op, items[i].nth, items[i].err, items[i].stall);
	return 0;
}

/* Runs call under the fault rule for op; ret_type is int or ssize_t. */
#define FAULT_RUN(fio, op, ret_type, call) do { \
	int ferr_ = 0; \
	enum fault_action fa_ = fault_check(fio, op, &ferr_); \
	if (fa_ == FAULT_BEFORE) { errno = ferr_; return -1; } \
	ret_type ret_ = call; \
	if (fa_ == FAULT_AFTER) { errno = ferr_; return -1; } \
	return ret_; } while (0)

static int fault_open(struct mf_io *io, const char *path, int flags, uint32_t mode,
		      struct io_file **file_r)
{
	struct io_file *inner;
	int err = 0;
	enum fault_action fa = fault_check(FIO(io), IO_OP_OPEN, &err);

	if (fa == FAULT_BEFORE) {
		errno = err;
		return -1;
	}
	if (io_open(FIO(io)->inner, path, flags, mode, &inner) < 0)
		return -1;
	if (fa == FAULT_AFTER) {
		io_close(&inner);
		errno = err;
		return -1;
	}
	struct fault_file *ff = mf_calloc(1, sizeof(*ff));
	ff->inner = inner;
	*file_r = &ff->file;
	return 0;
}

static ssize_t fault_pread(struct io_file *file, void *buf, size_t len, uint64_t offset)
{
	FAULT_RUN(FIO(file->io), IO_OP_READ, ssize_t, io_pread(FFILE(file)->inner, buf, len, offset));
}

static ssize_t fault_pwrite(struct io_file *file, const void *buf, size_t len, uint64_t offset)
{
	FAULT_RUN(FIO(file->io), IO_OP_WRITE, ssize_t, io_pwrite(FFILE(file)->inner, buf, len, offset));
}

static int fault_fsync(struct io_file *file)
{
	FAULT_RUN(FIO(file->io), IO_OP_FSYNC, int, io_fsync(FFILE(file)->inner));
}

static int fault_fstat(struct io_file *file, struct io_stat *st_r)
{
	FAULT_RUN(FIO(file->io), IO_OP_STAT, int, io_fstat(FFILE(file)->inner, st_r));
}

/* The inner file is always closed, as a failing close(2) still closes. */
static int fault_close(struct io_file *file)
{
	int err = 0;
	enum fault_action fa = fault_check(FIO(file->io), IO_OP_CLOSE, &err);
	int ret = io_close(&FFILE(file)->inner);

	free(file);
	if (fa != FAULT_NONE) {
		errno = err;
		return -1;
	}
	return ret;
}

#define FAULT_WRAP(op, call) FAULT_RUN(FIO(io), op, int, call)

static int fault_stat(struct mf_io *io, const char *path, struct io_stat *st_r)
{
	FAULT_WRAP(IO_OP_STAT, io_stat(FIO(io)->inner, path, st_r));
}

static int fault_rename(struct mf_io *io, const char *from, const char *to)
{
	FAULT_WRAP(IO_OP_RENAME, io_rename(FIO(io)->inner, from, to));
}

static int fault_link(struct mf_io *io, const char *from, const char *to)
{
	FAULT_WRAP(IO_OP_LINK, io_link(FIO(io)->inner, from, to));
}

static int fault_unlink(struct mf_io *io, const char *path)
{
	FAULT_WRAP(IO_OP_UNLINK, io_unlink(FIO(io)->inner, path));
}

static int fault_mkdir(struct mf_io *io, const char *path, uint32_t mode)
{
	FAULT_WRAP(IO_OP_MKDIR, io_mkdir(FIO(io)->inner, path, mode));
}

static int fault_rmdir(struct mf_io *io, const char *path)
{
	FAULT_WRAP(IO_OP_RMDIR, io_rmdir(FIO(io)->inner, path));
}

static int fault_readdir(struct mf_io *io, const char *path, io_readdir_cb *cb, void *ctx)
{
	FAULT_WRAP(IO_OP_READDIR, io_readdir(FIO(io)->inner, path, cb, ctx));
}

static int fault_fsync_dir(struct mf_io *io, const char *path)
{
	FAULT_WRAP(IO_OP_FSYNC, io_fsync_dir(FIO(io)->inner, path));
}

static int fault_chmod(struct mf_io *io, const char *path, uint32_t mode)
{
	FAULT_WRAP(IO_OP_OTHER, io_chmod(FIO(io)->inner, path, mode));
}

static int fault_chown(struct mf_io *io, const char *path, uint32_t uid, uint32_t gid)
{
	FAULT_WRAP(IO_OP_OTHER, io_chown(FIO(io)->inner, path, uid, gid));
}

static int fault_utimes(struct mf_io *io, const char *path, int64_t atime_sec, int64_t mtime_sec)
{
	FAULT_WRAP(IO_OP_OTHER, io_utimes(FIO(io)->inner, path, atime_sec, mtime_sec));
}

static int fault_statvfs(struct mf_io *io, const char *path, struct io_statvfs *st_r)
{
	FAULT_WRAP(IO_OP_OTHER, io_statvfs(FIO(io)->inner, path, st_r));
}

static void fault_deinit(struct mf_io *io)
{
	io_free(&FIO(io)->inner);
	pthread_mutex_destroy(&FIO(io)->lock);
	free(io);
}

static const struct io_vfuncs fault_vfuncs = {
	.name = "fault",
	.deinit = fault_deinit,
	.open = fault_open,
	.pread = fault_pread,
	.pwrite = fault_pwrite,
	.fsync = fault_fsync,
	.fstat = fault_fstat,
	.close = fault_close,
	.stat = fault_stat,
	.rename = fault_rename,
	.link = fault_link,
	.unlink = fault_unlink,
	.mkdir = fault_mkdir,
	.rmdir = fault_rmdir,
	.readdir = fault_readdir,
	.fsync_dir = fault_fsync_dir,
	.chmod = fault_chmod,
	.chown = fault_chown,
	.utimes = fault_utimes,
	.statvfs = fault_statvfs,
};

struct mf_io *io_fault_new(struct mf_io *inner)
{
	struct fault_io *fio = mf_calloc(1, sizeof(*fio));

	fio->io.v = &fault_vfuncs;
	fio->inner = inner;
	pthread_mutex_init(&fio->lock, NULL);
	return &fio->io;
}
