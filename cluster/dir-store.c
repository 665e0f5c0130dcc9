/* dir-store.c: the directory on disk, in one local folder:
 *   snapshot  "v1\tsnapshot\tGEN", the whole state as change records,
 *             "v1\tend\tCOUNT"; replaced by temp file + fsync + rename
 *   journal   "v1\tjournal\tGEN", then one record per line, each append
 *             fsync'd; it belongs to the snapshot of the same GEN
 *   lock      flock()ed exclusively by writers, shared by readers reloading
 * Compaction writes snapshot GEN+1, then an empty journal GEN+1. A crash in
 * between leaves a journal older than the snapshot, which is already in the
 * snapshot and is skipped (and replaced by the next exclusive opener). */
#include "cluster/dir-private.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_FILE_MAX (1024u * 1024u * 1024u)

struct loaded {
	struct dir_state *state;
	uint64_t generation;
	dev_t dev;
	ino_t ino;
	off_t offset;
	unsigned records;
};

/* --- small file helpers --- */

static int mkdir_parents(const char *path)
{
	char *copy = mf_strdup(path);
	int ret = 0;

	for (char *p = copy + 1; ret == 0; p++) {
		bool end = *p == '\0';
		if (*p != '/' && !end)
			continue;
		*p = '\0';
		if (mkdir(copy, 0700) < 0 && errno != EEXIST)
			ret = -1;
		if (end)
			break;
		*p = '/';
	}
	free(copy);
	return ret;
}

/* Reads a whole file; -1 with errno set on failure. */
static int read_fd(int fd, char **data_r, size_t *len_r)
{
	struct stat st;
	size_t len = 0;
	char *data;

	if (fstat(fd, &st) < 0)
		return -1;
	if ((uint64_t)st.st_size > DIR_FILE_MAX) {
		errno = EFBIG;
		return -1;
	}
	data = mf_malloc((size_t)st.st_size + 1);
	while (len < (size_t)st.st_size) {
		ssize_t n = read(fd, data + len, (size_t)st.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;   /* shrank underneath us: use what we have */
		len += (size_t)n;
	}
	data[len] = '\0';
	*data_r = data;
	*len_r = len;
	return 0;
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static int fsync_folder(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int ret;

	if (fd < 0)
		return -1;
	ret = fsync(fd);
	close(fd);
	return ret;
}

/* temp file, fsync, rename over path, fsync the folder */
static int write_atomic(struct directory *dir, const char *path, const char *data,
			size_t len, const char **error_r)
{
	char *tmp = mf_asprintf("%s.tmp", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0 || write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		*error_r = dir_error(dir, "writing %s: %s", tmp, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		free(tmp);
		return -1;
	}
	close(fd);
	if (rename(tmp, path) < 0 || fsync_folder(dir->path) < 0) {
		*error_r = dir_error(dir, "renaming %s: %s", tmp, strerror(errno));
		unlink(tmp);
		free(tmp);
		return -1;
	}
	free(tmp);
	return 0;
}

/* "v1\tKIND\tNUMBER" */
static int parse_header(const char *line, size_t len, const char *kind, uint64_t *num_r)
{
	size_t klen = strlen(kind);
	uint64_t num = 0;

	if (len < 5 + klen || memcmp(line, "v1\t", 3) != 0 ||
	    memcmp(line + 3, kind, klen) != 0 || line[3 + klen] != '\t')
		return -1;
	for (size_t i = 4 + klen; i < len; i++) {
		if (line[i] < '0' || line[i] > '9' || num > UINT64_MAX / 10 - 1)
			return -1;
		num = num * 10 + (uint64_t)(line[i] - '0');
	}
	*num_r = num;
	return 0;
}

/* --- applying lines --- */

static int apply_line(struct directory *dir, struct dir_state *state, const char *line,
		      size_t len, bool relaxed, char *err, size_t err_size)
{
	struct dir_change ch, norm;
	char *storage, *nstorage;
	const char *error;
	int ret;

	if (dir_change_decode(line, len, &ch, &storage, &error) < 0) {
		snprintf(err, err_size, "%s", error);
		return -1;
	}
	dir_change_normalize(&ch, &norm, &nstorage);
	ret = dir_state_apply(state, &norm, relaxed, err, err_size);
	free(nstorage);
	free(storage);
	return ret;
}

struct replay {
	const char *file;        /* for errors */
	unsigned first_line;     /* line number of data[0] */
	bool relaxed;
	size_t consumed;         /* bytes of complete lines applied */
	unsigned records;
	bool torn;               /* data ends in a line without '\n' */
};

/* Applies every complete line of data[0..len). */
static int replay_lines(struct directory *dir, struct dir_state *state, const char *data,
			size_t len, struct replay *r, const char **error_r)
{
	char err[400];
	size_t pos = 0;

	while (pos < len) {
		const char *nl = memchr(data + pos, '\n', len - pos);
		size_t line_len;
		if (nl == NULL) {
			r->torn = true;
			break;
		}
		line_len = (size_t)(nl - (data + pos));
		if (apply_line(dir, state, data + pos, line_len, r->relaxed, err, sizeof(err)) < 0) {
			*error_r = dir_error(dir, "%s: line %u: %s", r->file,
					     r->first_line + r->records, err);
			return -1;
		}
		r->records++;
		pos += line_len + 1;
		r->consumed = pos;
	}
	return 0;
}

/* --- snapshot --- */

static int load_snapshot(struct directory *dir, struct loaded *l, const char **error_r)
{
	int fd = open(dir->snapshot_path, O_RDONLY | O_CLOEXEC);
	struct replay r = { .file = dir->snapshot_path, .first_line = 2, .relaxed = true };
	const char *nl, *last;
	uint64_t count;
	size_t len;
	char *data;
	int ret = -1;

	if (fd < 0 && errno == ENOENT)
		return 0;   /* a new directory: generation 0, empty */
	if (fd < 0 || read_fd(fd, &data, &len) < 0) {
		*error_r = dir_error(dir, "reading %s: %s", dir->snapshot_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	nl = memchr(data, '\n', len);
	if (nl == NULL || parse_header(data, (size_t)(nl - data), "snapshot", &l->generation) < 0) {
		*error_r = dir_error(dir, "%s: missing or malformed header line", dir->snapshot_path);
		goto out;
	}
	/* the trailer is the last line; records lie between header and trailer */
	last = len > 1 && data[len - 1] == '\n' ? memrchr(data, '\n', len - 1) : NULL;
	if (last == NULL || last < nl ||
	    parse_header(last + 1, (size_t)(data + len - 1 - (last + 1)), "end", &count) < 0) {
		*error_r = dir_error(dir, "%s: truncated (no end line)", dir->snapshot_path);
		goto out;
	}
	if (replay_lines(dir, l->state, nl + 1, (size_t)(last - nl), &r, error_r) < 0)
		goto out;
	if (count != r.records) {
		*error_r = dir_error(dir, "%s: has %u records, its end line says %" PRIu64,
				     dir->snapshot_path, r.records, count);
		goto out;
	}
	ret = 0;
out:
	free(data);
	return ret;
}

/* --- journal --- */

static int journal_create(struct directory *dir, uint64_t generation, const char **error_r)
{
	char header[64];
	int len = snprintf(header, sizeof(header), "v1\tjournal\t%" PRIu64 "\n", generation);

	return write_atomic(dir, dir->journal_path, header, (size_t)len, error_r);
}

static int journal_open_read(struct directory *dir, bool locked, struct loaded *l,
			     char **data_r, size_t *len_r, const char **error_r)
{
	struct stat st;
	int fd;

	fd = open(dir->journal_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT && locked) {
		if (journal_create(dir, l->generation, error_r) < 0)
			return -1;
		fd = open(dir->journal_path, O_RDONLY | O_CLOEXEC);
	}
	if (fd < 0 || fstat(fd, &st) < 0 || read_fd(fd, data_r, len_r) < 0) {
		*error_r = dir_error(dir, "reading %s: %s", dir->journal_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	return 0;
}

static int journal_truncate(struct directory *dir, off_t size, const char **error_r)
{
	int fd = open(dir->journal_path, O_WRONLY | O_CLOEXEC);

	if (fd < 0 || ftruncate(fd, size) < 0 || fsync(fd) < 0) {
		*error_r = dir_error(dir, "truncating %s: %s", dir->journal_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

/* Replays the journal's records into l->state; l->generation is the snapshot's. */
static int load_journal(struct directory *dir, bool locked, struct loaded *l,
			const char **error_r)
{
	struct replay r = { .file = dir->journal_path, .first_line = 2 };
	uint64_t generation;
	const char *nl;
	char *data;
	size_t len;
	int ret = -1;

	if (journal_open_read(dir, locked, l, &data, &len, error_r) < 0)
		return -1;
	nl = memchr(data, '\n', len);
	if (nl == NULL || parse_header(data, (size_t)(nl - data), "journal", &generation) < 0) {
		if (len == 0 && locked) {   /* never written: start it again */
			free(data);
			if (journal_create(dir, l->generation, error_r) < 0)
				return -1;
			return load_journal(dir, locked, l, error_r);
		}
		*error_r = dir_error(dir, "%s: missing or malformed header line", dir->journal_path);
		goto out;
	}
	if (generation > l->generation) {
		*error_r = dir_error(dir, "%s: generation %" PRIu64 " is newer than the "
				     "snapshot's (%" PRIu64 ")", dir->journal_path,
				     generation, l->generation);
		goto out;
	}
	if (generation < l->generation) {
		/* an interrupted compaction: the snapshot already holds these records */
		if (locked) {
			free(data);
			log_warn("directory: replacing journal of generation %" PRIu64
				 " already contained in snapshot %" PRIu64, generation, l->generation);
			if (journal_create(dir, l->generation, error_r) < 0)
				return -1;
			return load_journal(dir, locked, l, error_r);
		}
		l->offset = (off_t)len;
		ret = 0;
		goto out;
	}
	if (replay_lines(dir, l->state, nl + 1, len - (size_t)(nl + 1 - data), &r, error_r) < 0)
		goto out;
	l->records = r.records;
	l->offset = (off_t)(nl + 1 - data) + (off_t)r.consumed;
	if (r.torn && locked) {
		log_warn("directory: %s: ignoring a torn last line (%zu bytes) left by an "
			 "interrupted write; truncating it", dir->journal_path,
			 len - (size_t)l->offset);
		if (journal_truncate(dir, l->offset, error_r) < 0)
			goto out;
	}
	ret = 0;
out:
	free(data);
	return ret;
}

static int load_all(struct directory *dir, bool locked, struct loaded *l,
		    const char **error_r)
{
	memset(l, 0, sizeof(*l));
	l->state = dir_state_new();
	if (load_snapshot(dir, l, error_r) < 0 || load_journal(dir, locked, l, error_r) < 0) {
		dir_state_free(&l->state);
		return -1;
	}
	return 0;
}

static void install(struct directory *dir, struct loaded *l)
{
	struct dir_state *old;

	pthread_rwlock_wrlock(&dir->lock);
	old = dir->state;
	dir->state = l->state;
	pthread_rwlock_unlock(&dir->lock);
	dir_state_free(&old);
	dir->generation = l->generation;
	dir->journal_dev = l->dev;
	dir->journal_ino = l->ino;
	dir->journal_offset = l->offset;
	dir->journal_records = l->records;
}

/* --- locking --- */

int dir_store_lock(struct directory *dir, const char **error_r)
{
	while (flock(dir->lock_fd, LOCK_EX) < 0) {
		if (errno != EINTR) {
			*error_r = dir_error(dir, "locking %s: %s", dir->lock_path, strerror(errno));
			return -1;
		}
	}
	return 0;
}

void dir_store_unlock(struct directory *dir)
{
	flock(dir->lock_fd, LOCK_UN);
}

/* --- public to the directory --- */

int dir_store_open(struct directory *dir, const char **error_r)
{
	struct loaded l;
	int ret;

	if (mkdir_parents(dir->path) < 0) {
		*error_r = dir_error(dir, "creating %s: %s", dir->path, strerror(errno));
		return -1;
	}
	dir->lock_fd = open(dir->lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (dir->lock_fd < 0) {
		*error_r = dir_error(dir, "opening %s: %s", dir->lock_path, strerror(errno));
		return -1;
	}
	if (dir_store_lock(dir, error_r) < 0)
		return -1;
	ret = load_all(dir, true, &l, error_r);
	if (ret == 0) {
		install(dir, &l);
		ret = dir_store_maybe_compact(dir, false, error_r);
	}
	dir_store_unlock(dir);
	return ret;
}

void dir_store_close(struct directory *dir)
{
	if (dir->lock_fd >= 0)
		close(dir->lock_fd);
	dir->lock_fd = -1;
}

static int reload(struct directory *dir, bool locked, const char **error_r)
{
	struct loaded l;
	int ret;

	if (!locked) {
		while (flock(dir->lock_fd, LOCK_SH) < 0 && errno == EINTR)
			;
	}
	ret = load_all(dir, locked, &l, error_r);
	if (!locked)
		flock(dir->lock_fd, LOCK_UN);
	if (ret == 0)
		install(dir, &l);
	return ret;
}

/* Reads journal bytes [offset, size) and applies their complete lines. */
static int catch_up(struct directory *dir, bool locked, const char **error_r)
{
	struct replay r = { .file = dir->journal_path, .first_line = dir->journal_records + 2 };
	int fd = open(dir->journal_path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	size_t len = 0;
	char *data;
	int ret;

	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = dir_error(dir, "reading %s: %s", dir->journal_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_ino != dir->journal_ino || st.st_dev != dir->journal_dev ||
	    st.st_size < dir->journal_offset || st.st_size - dir->journal_offset > DIR_FILE_MAX) {
		close(fd);
		return reload(dir, locked, error_r);
	}
	data = mf_malloc((size_t)(st.st_size - dir->journal_offset) + 1);
	while (len < (size_t)(st.st_size - dir->journal_offset)) {
		ssize_t n = pread(fd, data + len, (size_t)(st.st_size - dir->journal_offset) - len,
				  dir->journal_offset + (off_t)len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	pthread_rwlock_wrlock(&dir->lock);
	ret = replay_lines(dir, dir->state, data, len, &r, error_r);
	pthread_rwlock_unlock(&dir->lock);
	free(data);
	dir->journal_offset += (off_t)r.consumed;
	dir->journal_records += r.records;
	if (ret == 0 && r.torn && locked) {
		log_warn("directory: %s: truncating a torn last line left by an interrupted write",
			 dir->journal_path);
		ret = journal_truncate(dir, dir->journal_offset, error_r);
	}
	return ret;
}

int dir_store_refresh(struct directory *dir, bool locked, const char **error_r)
{
	struct stat st;

	if (stat(dir->journal_path, &st) < 0) {
		if (errno == ENOENT)
			return reload(dir, locked, error_r);
		*error_r = dir_error(dir, "stat %s: %s", dir->journal_path, strerror(errno));
		return -1;
	}
	if (st.st_ino == dir->journal_ino && st.st_dev == dir->journal_dev &&
	    st.st_size == dir->journal_offset)
		return 0;
	return catch_up(dir, locked, error_r);
}

int dir_store_append(struct directory *dir, const char *data, size_t len,
		     unsigned records, const char **error_r)
{
	int fd = open(dir->journal_path, O_WRONLY | O_APPEND | O_CLOEXEC);
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0) {
		*error_r = dir_error(dir, "opening %s: %s", dir->journal_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (st.st_ino != dir->journal_ino || st.st_size != dir->journal_offset) {
		close(fd);
		*error_r = dir_error(dir, "%s changed while locked", dir->journal_path);
		return -1;
	}
	if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
		*error_r = dir_error(dir, "writing %s: %s", dir->journal_path, strerror(errno));
		if (ftruncate(fd, dir->journal_offset) == 0)
			(void)fsync(fd);
		close(fd);
		return -1;
	}
	close(fd);
	dir->journal_offset += (off_t)len;
	dir->journal_records += records;
	return 0;
}

static char *snapshot_text(struct directory *dir, uint64_t generation, size_t *len_r)
{
	unsigned count;
	size_t dump_len;
	char *dump, *text;

	pthread_rwlock_rdlock(&dir->lock);
	dump = dir_state_dump(dir->state, &dump_len, &count);
	pthread_rwlock_unlock(&dir->lock);
	text = mf_asprintf("v1\tsnapshot\t%" PRIu64 "\n%sv1\tend\t%u\n", generation, dump, count);
	explicit_bzero(dump, dump_len);
	free(dump);
	*len_r = strlen(text);
	return text;
}

int dir_store_maybe_compact(struct directory *dir, bool force, const char **error_r)
{
	uint64_t generation = dir->generation + 1;
	struct stat st;
	size_t len;
	char *text;
	int ret;

	if (!force && dir->journal_records <= dir->compact_records)
		return 0;
	text = snapshot_text(dir, generation, &len);
	ret = write_atomic(dir, dir->snapshot_path, text, len, error_r);
	explicit_bzero(text, len);
	free(text);
	if (ret < 0)
		return -1;
	/* From here the old journal is stale; forget its identity so that the
	 * next refresh reloads (and, locked, recreates it) if the rest fails. */
	dir->generation = generation;
	dir->journal_ino = 0;
	dir->journal_offset = -1;
	if (journal_create(dir, generation, error_r) < 0)
		return -1;
	if (stat(dir->journal_path, &st) < 0) {
		*error_r = dir_error(dir, "stat %s: %s", dir->journal_path, strerror(errno));
		return -1;
	}
	dir->journal_dev = st.st_dev;
	dir->journal_ino = st.st_ino;
	dir->journal_offset = st.st_size;
	dir->journal_records = 0;
	log_info("directory: compacted into snapshot generation %" PRIu64, generation);
	return 0;
}
