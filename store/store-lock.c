/* store-lock.c: lock files on the NAS (see store-lock.h). Staleness is
 * judged by the NAS's clock (store_nas_now(): the mtime of a file created
 * there), and a lock is removed only after checking that it is the same
 * file that was judged stale, or that it still holds our own text. */
#include "store/store-lock.h"
#include "store/store-private.h"
#include "lib/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOCK_TEXT_MAX 512
#define BACKOFF_MIN_MS 5
#define BACKOFF_MAX_MS 500

struct store_lock {
	struct store *store;
	char *path;
	char *text;
};

const char *store_lock_path(const struct store_lock *lock)
{
	return lock->path;
}

static int lock_create(struct store *store, const char *path, const char *text)
{
	struct io_file *file;

	if (io_open(store->io, path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &file) < 0)
		return -1;
	int ret = io_write_all(file, text, strlen(text));
	int err = errno;
	if (io_close(&file) < 0 && ret == 0) {
		err = errno;
		ret = -1;
	}
	if (ret < 0) {
		io_unlink(store->io, path);
		errno = err;
	}
	return ret;
}

/* A lock file that another node removed between the LOOKUP and the GETATTR
 * of a stat shows up as ESTALE over NFS: for a lock, that is "gone". */
static bool lock_gone(int err)
{
	return err == ENOENT || err == ESTALE;
}

/* 1 broken (or gone), 0 alive (*age_r set), -1 error. */
static int break_if_stale(struct store *store, const char *path, unsigned timeout_secs,
			  int64_t *age_r)
{
	struct io_stat st, st2;

	if (io_stat(store->io, path, &st) < 0)
		return lock_gone(errno) ? 1 : -1;
	int64_t age = store_nas_now(store) - st.mtime_sec;
	*age_r = age;
	if (age <= (int64_t)timeout_secs)
		return 0;
	/* still the same file, not refreshed meanwhile? */
	if (io_stat(store->io, path, &st2) < 0)
		return lock_gone(errno) ? 1 : -1;
	if (st2.ino != st.ino || st2.mtime_sec != st.mtime_sec)
		return 0;
	log_warn("store: breaking stale lock %s (%lld s old)", path, (long long)age);
	if (io_unlink(store->io, path) < 0 && errno != ENOENT)
		return -1;
	return 1;
}

int store_lock_try(struct store *store, const char *path, unsigned timeout_secs,
		   struct store_lock **lock_r, int64_t *age_r)
{
	char *text = mf_asprintf("%s %d %lld %llu\n", store->host, (int)getpid(),
				 (long long)time(NULL), (unsigned long long)store_next_counter(store));
	int64_t age = 0;
	int ret = -1;

	*lock_r = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((ret = lock_create(store, path, text)) == 0 || errno != EEXIST)
			break;
		int broken = break_if_stale(store, path, timeout_secs, &age);
		if (broken <= 0) {
			if (broken == 0)
				errno = EEXIST;
			break;
		}
		errno = EEXIST;
	}
	if (ret < 0) {
		int err = errno;
		free(text);
		if (age_r != NULL)
			*age_r = age;
		errno = err;
		return -1;
	}
	struct store_lock *lock = mf_calloc(1, sizeof(*lock));
	lock->store = store;
	lock->path = mf_strdup(path);
	lock->text = text;
	*lock_r = lock;
	return 0;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

int store_lock_take(struct store *store, const char *path, unsigned timeout_secs,
		    unsigned wait_ms, struct store_lock **lock_r)
{
	uint64_t deadline = mf_now_ms() + wait_ms;
	unsigned backoff = BACKOFF_MIN_MS;

	for (;;) {
		if (store_lock_try(store, path, timeout_secs, lock_r, NULL) == 0)
			return 0;
		/* ESTALE: a lookup raced with another node's unlink; the next
		 * attempt looks the path up again */
		if (errno != EEXIST && errno != ESTALE) {
			int err = errno;
			log_warn("store: cannot take lock %s: %s", path, strerror(err));
			errno = err;
			return -1;
		}
		if (mf_now_ms() >= deadline) {
			errno = EAGAIN;
			return -1;
		}
		sleep_ms(backoff + (unsigned)(mf_now_us() % backoff));
		backoff = MF_MIN(backoff * 2, BACKOFF_MAX_MS);
	}
}

int store_lock_is_ours(struct store_lock *lock)
{
	char *data;
	size_t len;
	int ret = io_read_file(lock->store->io, lock->path, LOCK_TEXT_MAX, &data, &len);

	if (ret < 0 && errno == ESTALE)
		ret = io_read_file(lock->store->io, lock->path, LOCK_TEXT_MAX, &data, &len);
	if (ret < 0)
		return errno == ENOENT ? 0 : -1;
	int ours = strcmp(data, lock->text) == 0;
	free(data);
	return ours;
}

int store_lock_refresh(struct store_lock *lock)
{
	int ours = store_lock_is_ours(lock);

	if (ours <= 0) {
		if (ours == 0)
			errno = EPERM;
		return -1;
	}
	int64_t now = store_nas_now(lock->store);
	return io_utimes(lock->store->io, lock->path, now, now);
}

static void lock_free(struct store_lock *lock)
{
	free(lock->path);
	free(lock->text);
	free(lock);
}

void store_lock_release(struct store_lock **lockp)
{
	struct store_lock *lock = *lockp;

	if (lock == NULL)
		return;
	*lockp = NULL;
	int ours = store_lock_is_ours(lock);
	if (ours == 1)
		io_unlink(lock->store->io, lock->path);
	else if (ours == 0)
		log_warn("store: lock %s was taken over before release", lock->path);
	lock_free(lock);
}

void store_lock_forget(struct store_lock **lockp)
{
	if (*lockp != NULL)
		lock_free(*lockp);
	*lockp = NULL;
}
