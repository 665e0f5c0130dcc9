/* uidlist-ext.c: extension fields of uidlist records; see uidlist-ext.h.
 * The update follows the store's rule for shared state on the NAS:
 * lock -> fresh read -> write temp -> rename -> unlock. */
#include "store/uidlist-ext.h"
#include "store/store-lock.h"
#include "store/store-private.h"
#include "lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define UIDLIST_LOCK_NAME "mailfleet-uidlist.lock"

bool uidlist_ext_get(const struct uidlist_rec *rec, char key, const char **value_r, size_t *len_r)
{
	const char *p = rec->ext;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ' ');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (p[0] == key && len > 1) {
			*value_r = p + 1;
			*len_r = len - 1;
			return true;
		}
		p = end != NULL ? end + 1 : NULL;
	}
	return false;
}

/* Rebuilds ext with key set to value (replacing an old value). */
static char *ext_with(const char *ext, char key, const char *value)
{
	size_t cap = (ext != NULL ? strlen(ext) : 0) + strlen(value) + 4, len = 0;
	char *out = mf_malloc(cap);
	const char *p = ext;

	while (p != NULL && *p != '\0') {
		const char *end = strchr(p, ' ');
		size_t n = end != NULL ? (size_t)(end - p) : strlen(p);
		if (n > 0 && p[0] != key) {
			memcpy(out + len, p, n);
			len += n;
			out[len++] = ' ';
		}
		p = end != NULL ? end + 1 : NULL;
	}
	out[len++] = key;
	memcpy(out + len, value, strlen(value) + 1);
	return out;
}

static struct uidlist_rec *find_uid(struct uidlist *ul, uint32_t uid)
{
	size_t lo = 0, hi = ul->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (ul->recs[mid].uid == uid)
			return &ul->recs[mid];
		if (ul->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static bool update_valid(const struct uidlist_ext_update *u)
{
	if (u->key < 'A' || u->key > 'Z' || u->value[0] == '\0')
		return false;
	for (const char *s = u->value; *s != '\0'; s++) {
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f || *s == ':')
			return false;
	}
	return true;
}

static int write_replace(struct store *store, const char *mbox, const struct uidlist *ul)
{
	char *tmp = mf_asprintf("%s/%s.tmp.%s.%d.%llu", mbox, UIDLIST_FILE_NAME, store->host,
				(int)getpid(), (unsigned long long)store_next_counter(store));
	char *path = mf_asprintf("%s/%s", mbox, UIDLIST_FILE_NAME);
	size_t len;
	char *data = uidlist_serialize(ul, &len);
	struct io_file *file;
	int ret = io_open(store->io, tmp, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0600, &file);

	if (ret == 0) {
		ret = io_write_all(file, data, len);
		if (ret == 0 && store->set.fsync)
			ret = io_fsync(file);
		if (io_close(&file) < 0)
			ret = -1;
	}
	if (ret == 0)
		ret = io_rename(store->io, tmp, path);
	if (ret < 0) {
		int err = errno;
		io_unlink(store->io, tmp);
		errno = err;
	}
	free(data);
	free(tmp);
	free(path);
	return ret;
}

/* Under the lock. 1 when the uidlist is missing. */
static int update_locked(struct store *store, const char *mbox,
			 const struct uidlist_ext_update *updates, size_t count,
			 const char **error_r)
{
	char *path = mf_asprintf("%s/%s", mbox, UIDLIST_FILE_NAME), *data;
	struct uidlist *ul = NULL;
	size_t len, changed = 0;
	unsigned line;
	int ret = io_read_file(store->io, path, UIDLIST_MAX_SIZE, &data, &len);

	free(path);
	if (ret < 0) {
		*error_r = "cannot read the uidlist";
		return errno == ENOENT ? 1 : -1;
	}
	ret = uidlist_parse(data, len, &ul, &line, error_r);
	free(data);
	if (ret < 0) {
		errno = EIO;
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		struct uidlist_rec *r = find_uid(ul, updates[i].uid);
		if (r == NULL || !update_valid(&updates[i]))
			continue;
		char *ext = ext_with(r->ext, updates[i].key, updates[i].value);
		free(r->ext);
		r->ext = ext;
		changed++;
	}
	if (changed > 0 && (ret = write_replace(store, mbox, ul)) < 0)
		*error_r = "cannot write the uidlist";
	uidlist_free(&ul);
	return ret;
}

int uidlist_ext_set(struct store *store, const char *mbox_path,
		    const struct uidlist_ext_update *updates, size_t count, const char **error_r)
{
	char *lock_path = mf_asprintf("%s/%s", mbox_path, UIDLIST_LOCK_NAME);
	unsigned timeout = store->set.lock_timeout_secs;
	struct store_lock *lock;

	if (count == 0) {
		free(lock_path);
		return 0;
	}
	int ret = store_lock_take(store, lock_path, timeout, (timeout + 10) * 1000, &lock);
	free(lock_path);
	if (ret < 0) {
		*error_r = errno == EAGAIN ? "timed out waiting for the uidlist lock" :
			"cannot create the uidlist lock";
		return -1;
	}
	ret = update_locked(store, mbox_path, updates, count, error_r);
	int err = errno;
	store_lock_release(&lock);
	errno = err;
	return ret < 0 ? -1 : 0;
}
