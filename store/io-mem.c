/* io-mem.c: an in-memory io.h backend for unit tests. It follows POSIX
 * semantics closely enough that the conformance checks in test-io.c pass on
 * it and on io-posix alike: hard links, unlink of open files, atomic rename
 * that replaces a file or an empty directory, directory mtimes that move on
 * every entry change. One mutex guards the whole tree. */
#include "store/io-private.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MEM_TOTAL_BYTES (1ULL << 40)
#define MEM_TOTAL_FILES (1ULL << 24)

struct mem_entry;

struct mem_inode {
	bool is_dir;
	uint64_t ino;
	uint32_t mode, nlink, uid, gid;
	unsigned open_refs;
	int64_t mtime_sec;
	int32_t mtime_nsec;
	unsigned char *data;       /* files */
	size_t len, cap;
	struct mem_entry *entries; /* directories */
	struct mem_inode *parent;  /* directories; NULL for the root */
};

struct mem_entry {
	char *name;
	struct mem_inode *inode;
	struct mem_entry *next;
};

struct mem_io {
	struct mf_io io;
	pthread_mutex_t lock;
	struct mem_inode *root;
	uint64_t next_ino;
	uint64_t used_bytes, used_files;
	int64_t clock_offset_secs;  /* the simulated NAS clock minus ours */
};

struct mem_file {
	struct io_file file;
	struct mem_inode *inode;
	int flags;
};

#define MIO(io) ((struct mem_io *)(io))
#define MFILE(f) ((struct mem_file *)(f))

static void touch(struct mem_io *mio, struct mem_inode *inode)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	inode->mtime_sec = ts.tv_sec + mio->clock_offset_secs;
	inode->mtime_nsec = (int32_t)ts.tv_nsec;
}

static struct mem_inode *inode_new(struct mem_io *mio, bool is_dir, uint32_t mode)
{
	struct mem_inode *inode = mf_calloc(1, sizeof(*inode));

	inode->is_dir = is_dir;
	inode->ino = ++mio->next_ino;
	inode->mode = (is_dir ? S_IFDIR : S_IFREG) | (mode & 07777);
	inode->nlink = is_dir ? 2 : 1;
	touch(mio, inode);
	mio->used_files++;
	return inode;
}

static void inode_maybe_free(struct mem_io *mio, struct mem_inode *inode)
{
	if (inode->nlink > 0 || inode->open_refs > 0)
		return;
	mio->used_bytes -= inode->len;
	mio->used_files--;
	free(inode->data);
	free(inode);
}

static struct mem_entry *entry_find(struct mem_inode *dir, const char *name)
{
	for (struct mem_entry *e = dir->entries; e != NULL; e = e->next) {
		if (strcmp(e->name, name) == 0)
			return e;
	}
	return NULL;
}

static void entry_add(struct mem_io *mio, struct mem_inode *dir, const char *name, struct mem_inode *inode)
{
	struct mem_entry *e = mf_calloc(1, sizeof(*e));

	e->name = mf_strdup(name);
	e->inode = inode;
	e->next = dir->entries;
	dir->entries = e;
	if (inode->is_dir)
		inode->parent = dir;
	touch(mio, dir);
}

/* Unhooks the entry (does not drop the inode's link count). */
static struct mem_inode *entry_remove(struct mem_io *mio, struct mem_inode *dir, const char *name)
{
	for (struct mem_entry **ep = &dir->entries; *ep != NULL; ep = &(*ep)->next) {
		if (strcmp((*ep)->name, name) == 0) {
			struct mem_entry *e = *ep;
			struct mem_inode *inode = e->inode;
			*ep = e->next;
			free(e->name);
			free(e);
			touch(mio, dir);
			return inode;
		}
	}
	return NULL;
}

/* Walks to the directory holding the last component of path. *name_r points
 * into the copy *buf_r (free it); it is NULL when path names the root. */
static int lookup_parent(struct mem_io *mio, const char *path, struct mem_inode **dir_r,
			 char **name_r, char **buf_r)
{
	char *buf = mf_strdup(path), *save = NULL, *last = NULL;
	struct mem_inode *dir = mio->root;

	for (char *comp = strtok_r(buf, "/", &save); comp != NULL; comp = strtok_r(NULL, "/", &save)) {
		if (strcmp(comp, ".") == 0)
			continue;
		if (last != NULL) {
			struct mem_entry *e = entry_find(dir, last);
			if (e == NULL || !e->inode->is_dir) {
				free(buf);
				errno = e == NULL ? ENOENT : ENOTDIR;
				return -1;
			}
			dir = e->inode;
		}
		last = comp;
	}
	*dir_r = dir;
	*name_r = last;
	*buf_r = buf;
	return 0;
}

/* Finds the inode path names; errno ENOENT/ENOTDIR when missing. */
static struct mem_inode *lookup(struct mem_io *mio, const char *path)
{
	struct mem_inode *dir, *ret;
	char *name, *buf;

	if (lookup_parent(mio, path, &dir, &name, &buf) < 0)
		return NULL;
	if (name == NULL) {
		ret = dir;
	} else {
		struct mem_entry *e = entry_find(dir, name);
		ret = e == NULL ? NULL : e->inode;
		if (ret == NULL)
			errno = ENOENT;
	}
	free(buf);
	return ret;
}

static int open_existing(struct mem_inode *inode, int flags)
{
	if ((flags & IO_O_CREAT) && (flags & IO_O_EXCL)) {
		errno = EEXIST;
		return -1;
	}
	if (inode->is_dir && (flags & 0x03) != IO_O_RDONLY) {
		errno = EISDIR;
		return -1;
	}
	return 0;
}

static int mem_open_locked(struct mem_io *mio, const char *path, int flags, uint32_t mode,
			   struct mem_inode **inode_r)
{
	struct mem_inode *dir;
	char *name, *buf;

	if (lookup_parent(mio, path, &dir, &name, &buf) < 0)
		return -1;
	int ret = 0;
	struct mem_entry *e = name == NULL ? NULL : entry_find(dir, name);
	if (name == NULL) {
		*inode_r = dir;
		ret = open_existing(dir, flags);
	} else if (e != NULL) {
		*inode_r = e->inode;
		ret = open_existing(e->inode, flags);
	} else if ((flags & IO_O_CREAT) == 0) {
		errno = ENOENT;
		ret = -1;
	} else {
		*inode_r = inode_new(mio, false, mode);
		entry_add(mio, dir, name, *inode_r);
	}
	free(buf);
	return ret;
}

static int mem_open(struct mf_io *io, const char *path, int flags, uint32_t mode,
		    struct io_file **file_r)
{
	struct mem_io *mio = MIO(io);
	struct mem_inode *inode;

	pthread_mutex_lock(&mio->lock);
	int ret = mem_open_locked(mio, path, flags, mode, &inode);
	if (ret == 0) {
		if ((flags & IO_O_TRUNC) && !inode->is_dir && inode->len > 0) {
			mio->used_bytes -= inode->len;
			inode->len = 0;
			touch(mio, inode);
		}
		inode->open_refs++;
		struct mem_file *mf = mf_calloc(1, sizeof(*mf));
		mf->inode = inode;
		mf->flags = flags;
		*file_r = &mf->file;
	}
	pthread_mutex_unlock(&mio->lock);
	return ret;
}

static ssize_t mem_pread(struct io_file *file, void *buf, size_t len, uint64_t offset)
{
	struct mem_io *mio = MIO(file->io);
	struct mem_inode *inode = MFILE(file)->inode;
	ssize_t ret = 0;

	if (inode->is_dir) {
		errno = EISDIR;
		return -1;
	}
	if ((MFILE(file)->flags & 0x03) == IO_O_WRONLY) {
		errno = EBADF;
		return -1;
	}
	pthread_mutex_lock(&mio->lock);
	if (offset < inode->len) {
		size_t n = MF_MIN(len, inode->len - (size_t)offset);
		memcpy(buf, inode->data + offset, n);
		ret = (ssize_t)n;
	}
	pthread_mutex_unlock(&mio->lock);
	return ret;
}

static ssize_t mem_pwrite(struct io_file *file, const void *buf, size_t len, uint64_t offset)
{
	struct mem_io *mio = MIO(file->io);
	struct mem_inode *inode = MFILE(file)->inode;

	if ((MFILE(file)->flags & 0x03) == IO_O_RDONLY) {
		errno = EBADF;
		return -1;
	}
	if (offset > SIZE_MAX / 2 || len > SIZE_MAX / 2) {
		errno = EFBIG;
		return -1;
	}
	pthread_mutex_lock(&mio->lock);
	if (MFILE(file)->flags & IO_O_APPEND)
		offset = inode->len;
	size_t end = (size_t)offset + len;
	if (end > inode->cap) {
		inode->cap = MF_MAX(end, inode->cap * 2);
		inode->data = mf_realloc(inode->data, inode->cap);
	}
	if (offset > inode->len)
		memset(inode->data + inode->len, 0, (size_t)offset - inode->len);
	memcpy(inode->data + offset, buf, len);
	if (end > inode->len) {
		mio->used_bytes += end - inode->len;
		inode->len = end;
	}
	touch(mio, inode);
	pthread_mutex_unlock(&mio->lock);
	return (ssize_t)len;
}

static int mem_fsync(struct io_file *file)
{
	return 0;
}

static void stat_fill(const struct mem_inode *inode, struct io_stat *st_r)
{
	memset(st_r, 0, sizeof(*st_r));
	st_r->size = inode->is_dir ? 4096 : inode->len;
	st_r->ino = inode->ino;
	st_r->mtime_sec = inode->mtime_sec;
	st_r->mtime_nsec = inode->mtime_nsec;
	st_r->mode = inode->mode;
	st_r->nlink = inode->nlink;
	st_r->uid = inode->uid;
	st_r->gid = inode->gid;
}

static int mem_fstat(struct io_file *file, struct io_stat *st_r)
{
	struct mem_io *mio = MIO(file->io);

	pthread_mutex_lock(&mio->lock);
	stat_fill(MFILE(file)->inode, st_r);
	pthread_mutex_unlock(&mio->lock);
	return 0;
}

static int mem_close(struct io_file *file)
{
	struct mem_io *mio = MIO(file->io);
	struct mem_inode *inode = MFILE(file)->inode;

	pthread_mutex_lock(&mio->lock);
	inode->open_refs--;
	inode_maybe_free(mio, inode);
	pthread_mutex_unlock(&mio->lock);
	free(file);
	return 0;
}

static int mem_stat(struct mf_io *io, const char *path, struct io_stat *st_r)
{
	struct mem_io *mio = MIO(io);

	pthread_mutex_lock(&mio->lock);
	struct mem_inode *inode = lookup(mio, path);
	if (inode != NULL)
		stat_fill(inode, st_r);
	pthread_mutex_unlock(&mio->lock);
	return inode == NULL ? -1 : 0;
}

static bool dir_is_inside(struct mem_inode *dir, struct mem_inode *ancestor)
{
	for (; dir != NULL; dir = dir->parent) {
		if (dir == ancestor)
			return true;
	}
	return false;
}

/* Checks whether src may replace dst (POSIX rename rules). */
static int rename_check(struct mem_inode *src, struct mem_inode *dst_dir, struct mem_inode *dst)
{
	if (src->is_dir && dir_is_inside(dst_dir, src)) {
		errno = EINVAL;
		return -1;
	}
	if (dst == NULL)
		return 0;
	if (src->is_dir && !dst->is_dir) {
		errno = ENOTDIR;
		return -1;
	}
	if (!src->is_dir && dst->is_dir) {
		errno = EISDIR;
		return -1;
	}
	if (dst->is_dir && dst->entries != NULL) {
		errno = ENOTEMPTY;
		return -1;
	}
	return 0;
}

static void inode_unlinked(struct mem_io *mio, struct mem_inode *inode)
{
	if (inode->is_dir)
		inode->nlink = 0;
	else
		inode->nlink--;
	inode_maybe_free(mio, inode);
}

static int mem_rename_locked(struct mem_io *mio, struct mem_inode *fdir, const char *fname,
			     struct mem_inode *tdir, const char *tname)
{
	struct mem_entry *fe = fname == NULL ? NULL : entry_find(fdir, fname);
	if (fe == NULL || tname == NULL) {
		errno = fe == NULL ? ENOENT : EBUSY;
		return -1;
	}
	struct mem_entry *te = entry_find(tdir, tname);
	if (te != NULL && te->inode == fe->inode)
		return 0;
	if (rename_check(fe->inode, tdir, te == NULL ? NULL : te->inode) < 0)
		return -1;
	if (te != NULL)
		inode_unlinked(mio, entry_remove(mio, tdir, tname));
	struct mem_inode *inode = entry_remove(mio, fdir, fname);
	entry_add(mio, tdir, tname, inode);
	return 0;
}

static int mem_rename(struct mf_io *io, const char *from, const char *to)
{
	struct mem_io *mio = MIO(io);
	struct mem_inode *fdir, *tdir;
	char *fname, *tname, *fbuf, *tbuf;
	int ret = -1;

	pthread_mutex_lock(&mio->lock);
	if (lookup_parent(mio, from, &fdir, &fname, &fbuf) == 0) {
		if (lookup_parent(mio, to, &tdir, &tname, &tbuf) == 0) {
			ret = mem_rename_locked(mio, fdir, fname, tdir, tname);
			free(tbuf);
		}
		free(fbuf);
	}
	pthread_mutex_unlock(&mio->lock);
	return ret;
}

static int mem_link(struct mf_io *io, const char *from, const char *to)
{
	struct mem_io *mio = MIO(io);
	struct mem_inode *tdir;
	char *tname, *tbuf;
	int ret = -1;

	pthread_mutex_lock(&mio->lock);
	struct mem_inode *src = lookup(mio, from);
	if (src != NULL && src->is_dir) {
		errno = EPERM;
	} else if (src != NULL && lookup_parent(mio, to, &tdir, &tname, &tbuf) == 0) {
		if (tname == NULL || entry_find(tdir, tname) != NULL) {
			errno = EEXIST;
		} else {
			src->nlink++;
			entry_add(mio, tdir, tname, src);
			ret = 0;
		}
		free(tbuf);
	}
	pthread_mutex_unlock(&mio->lock);
	return ret;
}

/* Removes a file (want_dir false) or an empty directory (want_dir true). */
static int mem_remove(struct mf_io *io, const char *path, bool want_dir)
{
	struct mem_io *mio = MIO(io);
	struct mem_inode *dir;
	char *name, *buf;
	int ret = -1;

	pthread_mutex_lock(&mio->lock);
	if (lookup_parent(mio, path, &dir, &name, &buf) == 0) {
		struct mem_entry *e = name == NULL ? NULL : entry_find(dir, name);
		if (name == NULL)
			errno = EBUSY;
		else if (e == NULL)
			errno = ENOENT;
		else if (e->inode->is_dir != want_dir)
			errno = want_dir ? ENOTDIR : EISDIR;
		else if (want_dir && e->inode->entries != NULL)
			errno = ENOTEMPTY;
		else {
			inode_unlinked(mio, entry_remove(mio, dir, name));
			ret = 0;
		}
		free(buf);
	}
	pthread_mutex_unlock(&mio->lock);
	return ret;
}

static int mem_unlink(struct mf_io *io, const char *path)
{
	return mem_remove(io, path, false);
}

static int mem_rmdir(struct mf_io *io, const char *path)
{
	return mem_remove(io, path, true);
}

static int mem_mkdir(struct mf_io *io, const char *path, uint32_t mode)
{
	struct mem_io *mio = MIO(io);
	struct mem_inode *dir;
	char *name, *buf;
	int ret = -1;

	pthread_mutex_lock(&mio->lock);
	if (lookup_parent(mio, path, &dir, &name, &buf) == 0) {
		if (name == NULL || entry_find(dir, name) != NULL) {
			errno = EEXIST;
		} else {
			entry_add(mio, dir, name, inode_new(mio, true, mode));
			ret = 0;
		}
		free(buf);
	}
	pthread_mutex_unlock(&mio->lock);
	return ret;
}

/* Names are copied under the lock; callbacks run without it. */
static int mem_readdir(struct mf_io *io, const char *path, io_readdir_cb *cb, void *ctx)
{
	struct mem_io *mio = MIO(io);
	char **names = NULL;
	size_t count = 0;

	pthread_mutex_lock(&mio->lock);
	struct mem_inode *dir = lookup(mio, path);
	if (dir != NULL && !dir->is_dir) {
		errno = ENOTDIR;
		dir = NULL;
	}
	if (dir != NULL) {
		for (struct mem_entry *e = dir->entries; e != NULL; e = e->next)
			count++;
		names = mf_calloc(count + 1, sizeof(*names));
		count = 0;
		for (struct mem_entry *e = dir->entries; e != NULL; e = e->next)
			names[count++] = mf_strdup(e->name);
	}
	pthread_mutex_unlock(&mio->lock);
	if (dir == NULL)
		return -1;
	bool stop = false;
	for (size_t i = 0; i < count; i++) {
		if (!stop && cb(ctx, names[i]) != 0)
			stop = true;
		free(names[i]);
	}
	free(names);
	return 0;
}

static int mem_fsync_dir(struct mf_io *io, const char *path)
{
	struct io_stat st;

	if (mem_stat(io, path, &st) < 0)
		return -1;
	if (!S_ISDIR(st.mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

enum mem_attr { MEM_ATTR_MODE, MEM_ATTR_OWNER, MEM_ATTR_MTIME };

static int mem_setattr(struct mf_io *io, const char *path, enum mem_attr attr,
		       int64_t a, int64_t b)
{
	struct mem_io *mio = MIO(io);

	pthread_mutex_lock(&mio->lock);
	struct mem_inode *inode = lookup(mio, path);
	if (inode != NULL) {
		if (attr == MEM_ATTR_MODE) {
			inode->mode = (inode->mode & ~07777U) | ((uint32_t)a & 07777U);
		} else if (attr == MEM_ATTR_OWNER) {
			inode->uid = (uint32_t)a;
			inode->gid = (uint32_t)b;
		} else {
			inode->mtime_sec = b;
			inode->mtime_nsec = 0;
		}
	}
	pthread_mutex_unlock(&mio->lock);
	return inode == NULL ? -1 : 0;
}

static int mem_chmod(struct mf_io *io, const char *path, uint32_t mode)
{
	return mem_setattr(io, path, MEM_ATTR_MODE, mode, 0);
}

static int mem_chown(struct mf_io *io, const char *path, uint32_t uid, uint32_t gid)
{
	return mem_setattr(io, path, MEM_ATTR_OWNER, uid, gid);
}

static int mem_utimes(struct mf_io *io, const char *path, int64_t atime_sec, int64_t mtime_sec)
{
	return mem_setattr(io, path, MEM_ATTR_MTIME, atime_sec, mtime_sec);
}

static int mem_statvfs(struct mf_io *io, const char *path, struct io_statvfs *st_r)
{
	struct mem_io *mio = MIO(io);
	struct io_stat st;

	if (mem_stat(io, path, &st) < 0)
		return -1;
	pthread_mutex_lock(&mio->lock);
	st_r->total_bytes = MEM_TOTAL_BYTES;
	st_r->free_bytes = MEM_TOTAL_BYTES - MF_MIN(mio->used_bytes, MEM_TOTAL_BYTES);
	st_r->total_files = MEM_TOTAL_FILES;
	st_r->free_files = MEM_TOTAL_FILES - MF_MIN(mio->used_files, MEM_TOTAL_FILES);
	pthread_mutex_unlock(&mio->lock);
	return 0;
}

static void tree_free(struct mem_inode *inode)
{
	struct mem_entry *e, *next;

	for (e = inode->entries; e != NULL; e = next) {
		next = e->next;
		if (e->inode->is_dir) {
			tree_free(e->inode);
		} else if (--e->inode->nlink == 0) {
			free(e->inode->data);
			free(e->inode);
		}
		free(e->name);
		free(e);
	}
	free(inode);
}

static void mem_deinit(struct mf_io *io)
{
	tree_free(MIO(io)->root);
	pthread_mutex_destroy(&MIO(io)->lock);
	free(io);
}

static const struct io_vfuncs mem_vfuncs = {
	.name = "mem",
	.deinit = mem_deinit,
	.open = mem_open,
	.pread = mem_pread,
	.pwrite = mem_pwrite,
	.fsync = mem_fsync,
	.fstat = mem_fstat,
	.close = mem_close,
	.stat = mem_stat,
	.rename = mem_rename,
	.link = mem_link,
	.unlink = mem_unlink,
	.mkdir = mem_mkdir,
	.rmdir = mem_rmdir,
	.readdir = mem_readdir,
	.fsync_dir = mem_fsync_dir,
	.chmod = mem_chmod,
	.chown = mem_chown,
	.utimes = mem_utimes,
	.statvfs = mem_statvfs,
};

void io_mem_set_clock_offset(struct mf_io *io, int64_t offset_secs)
{
	struct mem_io *mio = MIO(io);

	if (strcmp(io->v->name, "mem") != 0)
		return;
	pthread_mutex_lock(&mio->lock);
	mio->clock_offset_secs = offset_secs;
	pthread_mutex_unlock(&mio->lock);
}

struct mf_io *io_mem_new(void)
{
	struct mem_io *mio = mf_calloc(1, sizeof(*mio));

	mio->io.v = &mem_vfuncs;
	pthread_mutex_init(&mio->lock, NULL);
	mio->root = inode_new(mio, true, 0755);
	return &mio->io;
}
