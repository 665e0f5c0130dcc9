/* store-lock.c: lock files on the NAS (see store-lock.h). Staleness is
 * judged by the NAS's clock (store_nas_now(): the mtime of a file created
 * there), and a lock is removed only after checking that it is the same
 * file that was judged stale, or that it is still our own.
 *
 * A lock is a hard link to a token file of this process (one per lock held
 * at a time, kept in a small pool and reused): link() is as exclusive as an
 * exclusive create, but allocates no inode. Creating and removing a file
 * per lock made the NAS's inode allocator the largest single cost of a busy
 * mailbox (ext4 skips recently freed inodes one by one). The lock's mtime is
 * the token's, set to the NAS's now when the token is taken from the pool
 * (if older than an eighth of the timeout); whether a lock is ours is told by
 * its inode number. Where the store has no hard links, a lock is an
 * exclusively created file holding "<host> <pid> <time> <counter>", as
 * before. */
#include "store/store-lock.h"
#include "store/store-private.h"
#include "lib/log.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define LOCK_TEXT_MAX 512
#define BACKOFF_MIN_MS 5
#define BACKOFF_MAX_MS 500
#define TOKEN_DIR ".mailfleet-lock-tokens"
#define TOKENS_IDLE_MAX 64

struct lock_token {
	char *path;            /* TOKEN_DIR "/<host>.<pid>.<random>" */
	char *text;            /* "<host> <pid> <time> <counter>\n" */
	uint64_t ino;
	uint64_t touched_ms;   /* local clock when its mtime was last set */
};

struct store_lock {
	struct store *store;
	char *path;
	char *text;
	struct lock_token *token;   /* NULL: an exclusively created file */
};

static char *lock_text_new(struct store *store)
{
	return mf_asprintf("%s %d %lld %llu\n", store->host, (int)getpid(),
			   (long long)time(NULL), (unsigned long long)store_next_counter(store));
}

/* ---- tokens ---- */

static void token_free(struct lock_token **tp)
{
	if (*tp == NULL)
		return;
	free((*tp)->path);
	free((*tp)->text);
	mf_free(tp);
}

static void token_destroy(struct store *store, struct lock_token **tp)
{
	if (*tp != NULL)
		io_unlink(store->io, (*tp)->path);
	token_free(tp);
}

struct sweep_ctx {
	struct store *store;
	size_t host_len;
};

/* Removes the tokens of dead processes of this host ("<host>.<pid>.*"). */
static int sweep_cb(void *ctx, const char *name)
{
	struct sweep_ctx *sw = ctx;
	const char *host = sw->store->host;
	char *end;

	if (strncmp(name, host, sw->host_len) != 0 || name[sw->host_len] != '.')
		return 0;
	long pid = strtol(name + sw->host_len + 1, &end, 10);
	if (end == name + sw->host_len + 1 || *end != '.' || pid <= 0 || pid == getpid())
		return 0;
	if (kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
		char *path = mf_asprintf("%s/%s", TOKEN_DIR, name);
		io_unlink(sw->store->io, path);
		free(path);
	}
	return 0;
}

static void tokens_sweep_once(struct store *store)
{
	pthread_mutex_lock(&store->lock);
	bool swept = store->tokens_swept;
	store->tokens_swept = true;
	pthread_mutex_unlock(&store->lock);
	if (swept)
		return;
	struct sweep_ctx sw = { .store = store, .host_len = strlen(store->host) };
	if (io_readdir(store->io, TOKEN_DIR, sweep_cb, &sw) < 0 && errno != ENOENT)
		log_warn("store: cannot list %s: %s", TOKEN_DIR, strerror(errno));
}

static struct lock_token *token_create(struct store *store)
{
	uint64_t rnd = 0;
	struct lock_token *t;
	struct io_file *file;
	struct io_stat st;

	tokens_sweep_once(store);
	if (io_mkdir(store->io, TOKEN_DIR, 0700) < 0 && errno != EEXIST)
		return NULL;
	if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
		rnd = mf_now_us() ^ store_next_counter(store);
	t = mf_calloc(1, sizeof(*t));
	t->path = mf_asprintf("%s/%s.%d.%016llx", TOKEN_DIR, store->host, (int)getpid(),
			      (unsigned long long)rnd);
	t->text = lock_text_new(store);
	if (io_open(store->io, t->path, IO_O_WRONLY | IO_O_CREAT | IO_O_EXCL, 0600, &file) < 0) {
		token_free(&t);
		return NULL;
	}
	int ret = io_write_all(file, t->text, strlen(t->text));
	if (ret == 0)
		ret = io_fstat(file, &st);
	if (io_close(&file) < 0)
		ret = -1;
	if (ret < 0) {
		token_destroy(store, &t);
		return NULL;
	}
	t->ino = st.ino;
	t->touched_ms = mf_now_ms();
	return t;
}

/* A token from the pool (or a new one) whose mtime is fresh enough for a
 * lock of timeout_secs; NULL when tokens cannot be made. */
static struct lock_token *token_get(struct store *store, unsigned timeout_secs)
{
	struct lock_token *t = NULL;

	pthread_mutex_lock(&store->lock);
	if (store->token_count > 0)
		t = store->tokens[--store->token_count];
	pthread_mutex_unlock(&store->lock);
	if (t == NULL)
		return token_create(store);
	if (mf_now_ms() - t->touched_ms > (uint64_t)timeout_secs * 1000 / 8) {
		int64_t now = store_nas_now(store);
		if (io_utimes(store->io, t->path, now, now) < 0) {
			token_destroy(store, &t);
			return token_create(store);
		}
		t->touched_ms = mf_now_ms();
	}
	return t;
}

static void token_put(struct store *store, struct lock_token **tp)
{
	pthread_mutex_lock(&store->lock);
	if (store->token_count < TOKENS_IDLE_MAX) {
		if (store->token_count == store->token_cap) {
			store->token_cap = store->token_cap == 0 ? 8 : store->token_cap * 2;
			store->tokens = mf_realloc(store->tokens, store->token_cap * sizeof(*store->tokens));
		}
		store->tokens[store->token_count++] = *tp;
		*tp = NULL;
	}
	pthread_mutex_unlock(&store->lock);
	token_destroy(store, tp);
}

void store_lock_tokens_free(struct store *store)
{
	for (size_t i = 0; i < store->token_count; i++)
		token_destroy(store, &store->tokens[i]);
	mf_free(&store->tokens);
	store->token_count = store->token_cap = 0;
}

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
	/* the NAS's clock as measured up to a minute ago is checked again
	 * before a lock is broken, and when the lock seems to come from the
	 * future (the NAS's clock was set forward meanwhile) */
	if (age > (int64_t)timeout_secs || age < -2)
		age = store_nas_now_measured(store) - st.mtime_sec;
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

static bool link_unsupported(int err)
{
	return err == EXDEV || err == EPERM || err == ENOTSUP || err == EOPNOTSUPP ||
		err == ENOSYS || err == EMLINK;
}

/* Links token t as the lock at path. 0: taken; -1 with errno (EEXIST: held
 * by another); 1: tokens do not work here (t destroyed), create instead. */
static int lock_link(struct store *store, const char *path, struct lock_token **tp)
{
	struct lock_token *t = *tp;
	struct io_stat st;

	if (io_link(store->io, t->path, path) == 0)
		return 0;
	int err = errno;
	if (err == EEXIST && io_stat(store->io, path, &st) == 0 && st.ino == t->ino)
		return 0;   /* a LINK retried after its reply was lost */
	if (err == ENOENT && io_stat(store->io, t->path, &st) < 0 && errno == ENOENT) {
		log_warn("store: lock token %s vanished", t->path);
		token_free(tp);
		return 1;
	}
	if (link_unsupported(err)) {
		log_warn("store: no hard links on the store (%s); locks by exclusive create",
			 strerror(err));
		pthread_mutex_lock(&store->lock);
		store->tokens_unsupported = true;
		pthread_mutex_unlock(&store->lock);
		token_destroy(store, tp);
		return 1;
	}
	token_put(store, tp);
	errno = err;
	return -1;
}

/* One attempt at taking the lock at path into lk (token or text). */
static int lock_acquire(struct store *store, const char *path, unsigned timeout_secs,
			struct store_lock *lk)
{
	pthread_mutex_lock(&store->lock);
	bool tokens = !store->tokens_unsupported;
	pthread_mutex_unlock(&store->lock);

	struct lock_token *t = tokens ? token_get(store, timeout_secs) : NULL;
	if (t != NULL) {
		int ret = lock_link(store, path, &t);
		if (ret <= 0) {
			lk->token = t;
			return ret;
		}
	}
	if (lk->text == NULL)
		lk->text = lock_text_new(store);
	return lock_create(store, path, lk->text);
}

int store_lock_try(struct store *store, const char *path, unsigned timeout_secs,
		   struct store_lock **lock_r, int64_t *age_r)
{
	struct store_lock lk = { .store = store };
	int64_t age = 0;
	int ret = -1;

	*lock_r = NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		if ((ret = lock_acquire(store, path, timeout_secs, &lk)) == 0 || errno != EEXIST)
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
		free(lk.text);
		if (age_r != NULL)
			*age_r = age;
		errno = err;
		return -1;
	}
	struct store_lock *lock = mf_calloc(1, sizeof(*lock));
	*lock = lk;
	lock->path = mf_strdup(path);
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

static int lock_is_ours_once(struct store_lock *lock)
{
	if (lock->token != NULL) {
		struct io_stat st;
		if (io_stat(lock->store->io, lock->path, &st) < 0)
			return -1;
		return st.ino == lock->token->ino ? 1 : 0;
	}
	char *data;
	size_t len;
	if (io_read_file(lock->store->io, lock->path, LOCK_TEXT_MAX, &data, &len) < 0)
		return -1;
	int ours = strcmp(data, lock->text) == 0;
	free(data);
	return ours;
}

int store_lock_is_ours(struct store_lock *lock)
{
	int ret = lock_is_ours_once(lock);

	if (ret < 0 && errno == ESTALE)
		ret = lock_is_ours_once(lock);
	if (ret < 0)
		return errno == ENOENT ? 0 : -1;
	return ret;
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
	if (io_utimes(lock->store->io, lock->path, now, now) < 0)
		return -1;
	if (lock->token != NULL)
		lock->token->touched_ms = mf_now_ms();
	return 0;
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
	/* When it cannot be told (EIO, ESTALE twice), the lock is removed
	 * anyway: a lock left behind blocks the mailbox for the timeout, while
	 * removing one that is no longer ours needs us to have held it that
	 * long already. */
	int ours = store_lock_is_ours(lock);
	if (ours != 0 && io_unlink(lock->store->io, lock->path) < 0 && errno == ESTALE)
		io_unlink(lock->store->io, lock->path);
	else if (ours == 0)
		log_warn("store: lock %s was taken over before release", lock->path);
	if (lock->token != NULL) {
		/* a token whose lock was broken as stale had its mtime aged:
		 * it is not reused */
		if (ours == 1)
			token_put(lock->store, &lock->token);
		else
			token_destroy(lock->store, &lock->token);
	}
	lock_free(lock);
}

void store_lock_forget(struct store_lock **lockp)
{
	struct store_lock *lock = *lockp;

	if (lock == NULL)
		return;
	*lockp = NULL;
	/* the lock stays linked to its token until it goes stale: the token
	 * file stays too (removed by the sweep after this process ends) */
	token_free(&lock->token);
	lock_free(lock);
}
