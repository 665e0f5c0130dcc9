/* store-usage.c: quota usage derived from the maildir itself. Each message
 * file name carries S=<size>, so a user's usage is the sum over new/ and
 * cur/ of the inbox and every folder; nothing is kept on the side that could
 * drift when several nodes deliver at once.
 *
 * User cache: per user, the listing result of every new/ and cur/ with the
 * directory's mtime (NAS time). A call stats Maildir/ and each cached
 * directory and rescans only those whose mtime moved. A directory whose mtime
 * is within STORE_USAGE_DIRTY_SECS of the NAS's "now" is not trusted (a second
 * change within the same timestamp granule would not move the mtime), so it is
 * rescanned until it has been quiet for that long.
 *
 * Domain cache: the sum over the users found under <root>/<domain>/, reused
 * for STORE_DOMAIN_TTL_MS; deliveries made through this store are added to it
 * at once. Bound on overshoot: a domain can go over its quota by at most what
 * other nodes deliver to it within one TTL (plus the messages in flight when
 * the check was made), since each node sees its own deliveries immediately
 * and everybody else's after at most STORE_DOMAIN_TTL_MS. */
#include "store/store-private.h"
#include "store/maildir.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STORE_USAGE_DIRTY_SECS 2
#define STORE_DOMAIN_TTL_MS 2000
#define STORE_USAGE_CACHE_MAX 100000
#define STORE_USAGE_MAX_DIRS 4096    /* new/ + cur/ of at most 2048 mailboxes */

struct dir_usage {
	char *path;
	int64_t mtime_sec;
	int32_t mtime_nsec;
	bool trusted;
	uint64_t bytes, messages;
};

struct user_usage {
	int64_t mtime_sec;           /* of Maildir/ (folders added or removed) */
	int32_t mtime_nsec;
	bool trusted;
	uint64_t computed_ms;        /* when the NAS was last asked */
	uint64_t bytes, messages;    /* the totals then */
	uint64_t local_bytes, local_messages; /* delivered by us since */
	struct dir_usage *dirs;
	size_t count;
};

struct domain_usage {
	uint64_t bytes;
	uint64_t at_ms;
};

static void user_usage_free(void *value)
{
	struct user_usage *u = value;

	if (u == NULL)
		return;
	for (size_t i = 0; i < u->count; i++)
		free(u->dirs[i].path);
	free(u->dirs);
	free(u);
}

static struct user_usage *user_usage_dup(const struct user_usage *u)
{
	struct user_usage *copy = mf_calloc(1, sizeof(*copy));

	*copy = *u;
	copy->dirs = mf_calloc(u->count + 1, sizeof(*copy->dirs));
	for (size_t i = 0; i < u->count; i++) {
		copy->dirs[i] = u->dirs[i];
		copy->dirs[i].path = mf_strdup(u->dirs[i].path);
	}
	return copy;
}

void store_usage_init(struct store *store)
{
	scache_init(&store->user_usage, STORE_USAGE_CACHE_MAX, user_usage_free);
	scache_init(&store->domain_usage, STORE_USAGE_CACHE_MAX, free);
}

void store_usage_deinit(struct store *store)
{
	scache_deinit(&store->user_usage);
	scache_deinit(&store->domain_usage);
}

void store_usage_delivered(struct store *store, const char *domain, const char *user,
			   uint64_t size)
{
	char *key = mf_asprintf("%s/%s", domain, user);

	pthread_mutex_lock(&store->lock);
	struct domain_usage *d = scache_get(&store->domain_usage, domain);
	if (d != NULL)
		d->bytes += size;
	struct user_usage *u = scache_get(&store->user_usage, key);
	if (u != NULL) {
		u->local_bytes += size;
		u->local_messages++;
	}
	pthread_mutex_unlock(&store->lock);
	free(key);
}

struct scan_ctx {
	struct store *store;
	const char *dir;
	uint64_t bytes, messages;
	int error;
};

static int scan_cb(void *ctx, const char *name)
{
	struct scan_ctx *s = ctx;
	uint64_t size;
	struct io_stat st;

	if (name[0] == '.')
		return 0;
	if (!maildir_name_size(name, &size)) {
		/* a file from another writer without S=: ask the NAS */
		char *path = mf_asprintf("%s/%s", s->dir, name);
		int ret = io_stat(s->store->io, path, &st);
		free(path);
		if (ret < 0)
			return 0; /* gone meanwhile (expunged or moved to cur/) */
		size = st.size;
	}
	s->bytes += size;
	s->messages++;
	return 0;
}

static bool time_trusted(struct store *store, int64_t mtime_sec)
{
	int64_t now = store_nas_now(store);

	return mtime_sec < now - STORE_USAGE_DIRTY_SECS || mtime_sec > now + 3600;
}

/* Rescans d (path set) unless its mtime still matches a trusted result. */
static int dir_refresh(struct store *store, struct dir_usage *d)
{
	struct io_stat st;

	if (io_stat(store->io, d->path, &st) < 0) {
		if (errno != ENOENT)
			return -1;
		d->bytes = d->messages = 0;
		d->trusted = false;
		return 0;
	}
	if (d->trusted && st.mtime_sec == d->mtime_sec && st.mtime_nsec == d->mtime_nsec)
		return 0;
	struct scan_ctx s = { .store = store, .dir = d->path };
	if (io_readdir(store->io, d->path, scan_cb, &s) < 0)
		return errno == ENOENT ? 0 : -1;
	d->bytes = s.bytes;
	d->messages = s.messages;
	d->mtime_sec = st.mtime_sec;
	d->mtime_nsec = st.mtime_nsec;
	d->trusted = time_trusted(store, st.mtime_sec);
	return 0;
}

struct list_ctx {
	const char *maildir;
	struct user_usage *u;
	size_t cap;
};

static void usage_add_dirs(struct user_usage *u, size_t *cap, const char *mbox)
{
	static const char *const subdirs[] = { "new", "cur" };

	for (size_t i = 0; i < 2 && u->count < STORE_USAGE_MAX_DIRS; i++) {
		if (u->count == *cap) {
			*cap = *cap * 2 + 4;
			u->dirs = mf_realloc(u->dirs, *cap * sizeof(*u->dirs));
		}
		memset(&u->dirs[u->count], 0, sizeof(u->dirs[0]));
		u->dirs[u->count++].path = mf_asprintf("%s/%s", mbox, subdirs[i]);
	}
}

static int list_folder_cb(void *ctx, const char *name)
{
	struct list_ctx *l = ctx;

	/* maildir++ folders: ".Name"; never "." / ".." (io excludes them) */
	if (name[0] == '.' && name[1] != '\0' && strlen(name) <= MAILDIR_FOLDER_MAX + 1) {
		char *mbox = mf_asprintf("%s/%s", l->maildir, name);
		usage_add_dirs(l->u, &l->cap, mbox);
		free(mbox);
	}
	return 0;
}

/* A fresh user_usage listing the inbox and folders (not yet scanned). */
static int usage_list(struct store *store, const char *maildir, const struct io_stat *st,
		      struct user_usage **u_r)
{
	struct user_usage *u = mf_calloc(1, sizeof(*u));
	struct list_ctx l = { .maildir = maildir, .u = u };

	usage_add_dirs(u, &l.cap, maildir);
	if (io_readdir(store->io, maildir, list_folder_cb, &l) < 0) {
		int err = errno;
		user_usage_free(u);
		errno = err;
		return -1;
	}
	u->mtime_sec = st->mtime_sec;
	u->mtime_nsec = st->mtime_nsec;
	u->trusted = time_trusted(store, st->mtime_sec);
	*u_r = u;
	return 0;
}

static struct user_usage *cache_get_copy(struct store *store, const char *key)
{
	pthread_mutex_lock(&store->lock);
	struct user_usage *cached = scache_get(&store->user_usage, key);
	struct user_usage *copy = cached == NULL ? NULL : user_usage_dup(cached);
	pthread_mutex_unlock(&store->lock);
	return copy;
}

static int usage_compute(struct store *store, const char *key, const char *maildir,
			 uint64_t *bytes_r, uint64_t *messages_r)
{
	struct io_stat st;
	struct user_usage *u = cache_get_copy(store, key);

	if (io_stat(store->io, maildir, &st) < 0) {
		user_usage_free(u);
		return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
	}
	if (u == NULL || !u->trusted || u->mtime_sec != st.mtime_sec || u->mtime_nsec != st.mtime_nsec) {
		user_usage_free(u);
		if (usage_list(store, maildir, &st, &u) < 0)
			return -1;
	}
	for (size_t i = 0; i < u->count; i++) {
		if (dir_refresh(store, &u->dirs[i]) < 0) {
			int err = errno;
			user_usage_free(u);
			errno = err;
			return -1;
		}
		*bytes_r += u->dirs[i].bytes;
		*messages_r += u->dirs[i].messages;
	}
	u->bytes = *bytes_r;
	u->messages = *messages_r;
	u->local_bytes = u->local_messages = 0;
	u->computed_ms = mf_now_ms();
	pthread_mutex_lock(&store->lock);
	scache_put(&store->user_usage, key, u);
	pthread_mutex_unlock(&store->lock);
	return 0;
}

int store_user_usage(struct store *store, const char *domain, const char *user,
		     uint64_t *bytes_r, uint64_t *messages_r)
{
	*bytes_r = 0;
	*messages_r = 0;
	char *maildir = maildir_mailbox_path(domain, user, NULL);
	if (maildir == NULL)
		return -1;
	char *key = mf_asprintf("%s/%s", domain, user);
	int ret = usage_compute(store, key, maildir, bytes_r, messages_r);
	int err = errno;
	free(key);
	free(maildir);
	errno = err;
	return ret;
}

int store_user_usage_recent(struct store *store, const char *domain, const char *user,
			    unsigned max_age_ms, uint64_t *bytes_r, uint64_t *messages_r)
{
	char *key = mf_asprintf("%s/%s", domain, user);
	bool hit = false;

	pthread_mutex_lock(&store->lock);
	struct user_usage *u = scache_get(&store->user_usage, key);
	if (u != NULL && mf_now_ms() - u->computed_ms < max_age_ms) {
		*bytes_r = u->bytes + u->local_bytes;
		*messages_r = u->messages + u->local_messages;
		hit = true;
	}
	pthread_mutex_unlock(&store->lock);
	free(key);
	if (hit)
		return 0;
	return store_user_usage(store, domain, user, bytes_r, messages_r);
}

struct domain_ctx {
	struct store *store;
	const char *domain;
	uint64_t bytes;
	int error;
};

static int domain_user_cb(void *ctx, const char *name)
{
	struct domain_ctx *d = ctx;
	uint64_t bytes, messages;

	if (!store_user_name_valid(name))
		return 0;
	if (store_user_usage(d->store, d->domain, name, &bytes, &messages) < 0) {
		d->error = errno;
		return 1;
	}
	d->bytes += bytes;
	return 0;
}

int store_domain_usage(struct store *store, const char *domain, uint64_t *bytes_r)
{
	*bytes_r = 0;
	if (!store_domain_name_valid(domain)) {
		errno = EINVAL;
		return -1;
	}
	pthread_mutex_lock(&store->lock);
	struct domain_usage *cached = scache_get(&store->domain_usage, domain);
	bool hit = cached != NULL && mf_now_ms() - cached->at_ms < STORE_DOMAIN_TTL_MS;
	if (hit)
		*bytes_r = cached->bytes;
	pthread_mutex_unlock(&store->lock);
	if (hit)
		return 0;

	struct domain_ctx d = { .store = store, .domain = domain };
	if (io_readdir(store->io, domain, domain_user_cb, &d) < 0)
		return errno == ENOENT ? 0 : -1;
	if (d.error != 0) {
		errno = d.error;
		return -1;
	}
	struct domain_usage *du = mf_calloc(1, sizeof(*du));
	du->bytes = d.bytes;
	du->at_ms = mf_now_ms();
	pthread_mutex_lock(&store->lock);
	scache_put(&store->domain_usage, domain, du);
	pthread_mutex_unlock(&store->lock);
	*bytes_r = d.bytes;
	return 0;
}
