/* directory.c: the directory's public API: open/close, the change entry
 * points (apply, commit, batch), lookups, alias resolution and password
 * authentication. State lives in dir-state.c, files in dir-store.c. */
#include "cluster/dir-private.h"
#include "lib/log.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Verified against for unknown users, so they cost as much as known ones. */
#define DIR_DUMMY_HASH "{SHA512-CRYPT}$6$hK9yjsQxOWYxnvJ1$H9YAc/6/BmVWFnzCIwHPML7zaMAVuTrGNXIM9ElIHWYosy3y8iSeNyjoNskrkEwNmkyN6Whyeig2XPeN5mAyJ0"

/* directory_open()'s error must outlive the failed object; one per thread. */
static __thread char open_error[512];

const char *dir_error(struct directory *dir, const char *fmt, ...)
{
	va_list ap;
	char *msg;
	unsigned slot;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		msg = mf_strdup("out of memory formatting an error");
	va_end(ap);
	pthread_mutex_lock(&dir->error_lock);
	slot = dir->error_next++ % DIR_ERROR_RING;
	free(dir->errors[slot]);
	dir->errors[slot] = msg;
	pthread_mutex_unlock(&dir->error_lock);
	return msg;
}

static void directory_free(struct directory *dir)
{
	dir_store_close(dir);
	dir_state_free(&dir->state);
	for (unsigned i = 0; i < DIR_ERROR_RING; i++)
		free(dir->errors[i]);
	free(dir->path);
	free(dir->journal_path);
	free(dir->snapshot_path);
	free(dir->lock_path);
	pthread_rwlock_destroy(&dir->lock);
	pthread_mutex_destroy(&dir->io_lock);
	pthread_mutex_destroy(&dir->error_lock);
	free(dir);
}

int directory_open(const char *path, struct directory **dir_r, const char **error_r)
{
	struct directory *dir = mf_calloc(1, sizeof(*dir));
	const char *error;

	pthread_rwlock_init(&dir->lock, NULL);
	pthread_mutex_init(&dir->io_lock, NULL);
	pthread_mutex_init(&dir->error_lock, NULL);
	dir->lock_fd = -1;
	dir->compact_records = DIR_COMPACT_DEFAULT;
	dir->state = dir_state_new();
	dir->path = mf_strdup(path[0] == '\0' ? "." : path);
	dir->journal_path = mf_asprintf("%s/journal", dir->path);
	dir->snapshot_path = mf_asprintf("%s/snapshot", dir->path);
	dir->lock_path = mf_asprintf("%s/lock", dir->path);
	if (dir_store_open(dir, &error) < 0) {
		snprintf(open_error, sizeof(open_error), "%s", error);
		*error_r = open_error;
		directory_free(dir);
		*dir_r = NULL;
		return -1;
	}
	*dir_r = dir;
	return 0;
}

void directory_close(struct directory **_dir)
{
	if (*_dir == NULL)
		return;
	directory_free(*_dir);
	*_dir = NULL;
}

void directory_set_compact_threshold(struct directory *dir, unsigned records)
{
	pthread_mutex_lock(&dir->io_lock);
	dir->compact_records = records;
	pthread_mutex_unlock(&dir->io_lock);
}

int directory_refresh(struct directory *dir, const char **error_r)
{
	int ret;

	pthread_mutex_lock(&dir->io_lock);
	ret = dir_store_refresh(dir, false, error_r);
	pthread_mutex_unlock(&dir->io_lock);
	return ret;
}

/* --- changes --- */

/* Validates a change against the live state; the caller holds io_lock, so
 * the state cannot change underneath without the read lock. */
static int check_change(struct directory *dir, const struct dir_change *ch,
			const char **error_r)
{
	char err[400];

	if (dir_state_check(dir->state, ch, false, err, sizeof(err)) < 0) {
		*error_r = dir_error(dir, "%s", err);
		return -1;
	}
	return 0;
}

static void do_change(struct directory *dir, const struct dir_change *ch)
{
	pthread_rwlock_wrlock(&dir->lock);
	dir_state_do(dir->state, ch);
	pthread_rwlock_unlock(&dir->lock);
}

int directory_apply(struct directory *dir, const struct dir_change *ch, const char **error_r)
{
	struct dir_change norm;
	char *storage;
	int ret;

	dir_change_normalize(ch, &norm, &storage);
	pthread_mutex_lock(&dir->io_lock);
	ret = check_change(dir, &norm, error_r);
	if (ret == 0)
		do_change(dir, &norm);
	pthread_mutex_unlock(&dir->io_lock);
	free(storage);
	return ret;
}

static int commit_locked(struct directory *dir, const struct dir_change *ch,
			 const char **error_r)
{
	char *line;
	size_t len;
	int ret;

	if (dir_store_refresh(dir, true, error_r) < 0 || check_change(dir, ch, error_r) < 0)
		return -1;
	if ((line = dir_change_encode(ch)) == NULL) {
		*error_r = "change record too long";
		return -1;
	}
	len = strlen(line);
	line = mf_realloc(line, len + 2);
	memcpy(line + len, "\n", 2);
	ret = dir_store_append(dir, line, len + 1, 1, error_r);
	explicit_bzero(line, len);
	free(line);
	if (ret == 0)
		do_change(dir, ch);
	return ret;
}

static void compact_after_commit(struct directory *dir)
{
	const char *error;

	if (dir_store_maybe_compact(dir, false, &error) < 0)
		log_warn("directory: compaction failed (the change is committed): %s", error);
}

int directory_commit(struct directory *dir, const struct dir_change *ch, const char **error_r)
{
	struct dir_change norm;
	char *storage;
	int ret;

	dir_change_normalize(ch, &norm, &storage);
	pthread_mutex_lock(&dir->io_lock);
	ret = dir_store_lock(dir, error_r);
	if (ret == 0) {
		ret = commit_locked(dir, &norm, error_r);
		if (ret == 0)
			compact_after_commit(dir);
		dir_store_unlock(dir);
	}
	pthread_mutex_unlock(&dir->io_lock);
	free(storage);
	return ret;
}

/* Applies the batch to a copy of the state and encodes it; the copy replaces
 * the state only after the journal append succeeded. */
static int batch_locked(struct directory *dir, const struct dir_change *changes,
			unsigned count, unsigned *failed_r, const char **error_r)
{
	struct dir_state *copy;
	size_t len = 0, size = 256;
	char *text = mf_malloc(size), err[400];
	int ret = -1;

	if (dir_store_refresh(dir, true, error_r) < 0) {
		free(text);
		return -1;
	}
	copy = dir_state_clone(dir->state);
	for (unsigned i = 0; i < count; i++) {
		struct dir_change norm;
		char *storage, *line = NULL;
		dir_change_normalize(&changes[i], &norm, &storage);
		if (dir_state_apply(copy, &norm, false, err, sizeof(err)) < 0)
			*error_r = dir_error(dir, "%s", err);
		else if ((line = dir_change_encode(&norm)) == NULL)
			*error_r = "change record too long";
		free(storage);
		if (line == NULL) {
			*failed_r = i;
			goto out;
		}
		if (len + strlen(line) + 2 > size) {
			size = (len + strlen(line) + 2) * 2;
			text = mf_realloc(text, size);
		}
		len += (size_t)sprintf(text + len, "%s\n", line);
		free(line);
	}
	ret = count == 0 ? 0 : dir_store_append(dir, text, len, count, error_r);
	if (ret == 0) {
		pthread_rwlock_wrlock(&dir->lock);
		struct dir_state *old = dir->state;
		dir->state = copy;
		copy = old;
		pthread_rwlock_unlock(&dir->lock);
	}
out:
	dir_state_free(&copy);
	explicit_bzero(text, len);
	free(text);
	return ret;
}

int directory_commit_batch(struct directory *dir, const struct dir_change *changes,
			   unsigned count, unsigned *failed_index_r, const char **error_r)
{
	int ret;

	*failed_index_r = count;
	pthread_mutex_lock(&dir->io_lock);
	ret = dir_store_lock(dir, error_r);
	if (ret == 0) {
		ret = batch_locked(dir, changes, count, failed_index_r, error_r);
		if (ret == 0)
			compact_after_commit(dir);
		dir_store_unlock(dir);
	}
	pthread_mutex_unlock(&dir->io_lock);
	return ret;
}

/* --- lookups --- */

/* Lower-cases address into buf; false when it does not fit. */
static bool canonical(const char *address, char *buf, size_t size)
{
	size_t len = strlen(address);

	if (len >= size)
		return false;
	for (size_t i = 0; i <= len; i++)
		buf[i] = (char)tolower((unsigned char)address[i]);
	return true;
}

int directory_user_get(struct directory *dir, const char *address, struct dir_user_info *info_r)
{
	char key[DIR_ADDRESS_MAX + 1];
	const struct dir_user *user;

	if (!canonical(address, key, sizeof(key)))
		return 0;
	pthread_rwlock_rdlock(&dir->lock);
	user = dir_hash_get(dir->state->users, key);
	if (user != NULL)
		dir_user_to_info(dir->state, user, info_r);
	pthread_rwlock_unlock(&dir->lock);
	return user != NULL ? 1 : 0;
}

int directory_domain_get(struct directory *dir, const char *name, struct dir_domain_info *info_r)
{
	char key[DIR_NAME_MAX + 1];
	const struct dir_domain *domain;

	if (!canonical(name, key, sizeof(key)))
		return 0;
	pthread_rwlock_rdlock(&dir->lock);
	domain = dir_hash_get(dir->state->domains, key);
	if (domain != NULL) {
		memset(info_r, 0, sizeof(*info_r));
		snprintf(info_r->name, sizeof(info_r->name), "%s", domain->name);
		info_r->quota_bytes = domain->quota_bytes;
		info_r->user_count = domain->user_count;
		info_r->alias_count = domain->alias_count;
	}
	pthread_rwlock_unlock(&dir->lock);
	return domain != NULL ? 1 : 0;
}

int directory_user_password_scheme(struct directory *dir, const char *address,
				   char *buf, size_t size)
{
	char key[DIR_ADDRESS_MAX + 1];
	const struct dir_user *user;
	int ret = 0;

	if (!canonical(address, key, sizeof(key)))
		return 0;
	pthread_rwlock_rdlock(&dir->lock);
	user = dir_hash_get(dir->state->users, key);
	if (user != NULL)
		ret = dir_password_scheme_name(user->password_hash, buf, size) == 0 ? 1 : 0;
	pthread_rwlock_unlock(&dir->lock);
	return ret;
}

/* --- listings --- */

static int strv_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool in_domain(const char *key, const char *domain)
{
	const char *at = strchr(key, '@');

	return domain == NULL || (at != NULL && strcasecmp(at + 1, domain) == 0);
}

static char **list_keys(struct directory *dir, const struct dir_hash *hash, const char *domain)
{
	size_t iter = 0, n = 0;
	const char *key;
	char **strv;

	strv = mf_malloc(sizeof(char *) * (dir_hash_count(hash) + 1));
	while (dir_hash_next(hash, &iter, &key) != NULL) {
		if (in_domain(key, domain))
			strv[n++] = mf_strdup(key);
	}
	strv[n] = NULL;
	qsort(strv, n, sizeof(char *), strv_cmp);
	return strv;
}

char **directory_domain_list(struct directory *dir)
{
	char **strv;

	pthread_rwlock_rdlock(&dir->lock);
	strv = list_keys(dir, dir->state->domains, NULL);
	pthread_rwlock_unlock(&dir->lock);
	return strv;
}

char **directory_user_list(struct directory *dir, const char *domain)
{
	char **strv;

	pthread_rwlock_rdlock(&dir->lock);
	strv = list_keys(dir, dir->state->users, domain);
	pthread_rwlock_unlock(&dir->lock);
	return strv;
}

char **directory_alias_list(struct directory *dir, const char *domain)
{
	char **strv;

	pthread_rwlock_rdlock(&dir->lock);
	strv = list_keys(dir, dir->state->aliases, domain);
	pthread_rwlock_unlock(&dir->lock);
	return strv;
}

int directory_alias_get(struct directory *dir, const char *address, char ***members_r)
{
	char key[DIR_ADDRESS_MAX + 1];
	const struct dir_alias *alias;

	if (!canonical(address, key, sizeof(key)))
		return 0;
	pthread_rwlock_rdlock(&dir->lock);
	alias = dir_hash_get(dir->state->aliases, key);
	if (alias != NULL) {
		*members_r = mf_malloc(sizeof(char *) * (alias->count + 1));
		for (unsigned i = 0; i < alias->count; i++)
			(*members_r)[i] = mf_strdup(alias->members[i]);
		(*members_r)[alias->count] = NULL;
	}
	pthread_rwlock_unlock(&dir->lock);
	return alias != NULL ? 1 : 0;
}

void dir_strv_free(char ***_strv)
{
	char **strv = *_strv;

	if (strv == NULL)
		return;
	for (size_t i = 0; strv[i] != NULL; i++)
		free(strv[i]);
	free(strv);
	*_strv = NULL;
}

/* --- resolution --- */

struct expansion {
	const struct dir_state *state;
	struct dir_user_info *users;
	unsigned max, count;
	struct dir_hash *seen;   /* aliases already expanded and users already added */
	const char *error;
};

static int expand(struct expansion *e, const char *address, unsigned depth)
{
	const struct dir_user *user = dir_hash_get(e->state->users, address);
	const struct dir_alias *alias;

	if (dir_hash_get(e->seen, address) != NULL)
		return 0;   /* a loop, or a user reached twice */
	if (user != NULL) {
		if (e->count == e->max) {
			e->error = "the address expands to more users than allowed";
			return -1;
		}
		dir_hash_put(e->seen, user->address, (void *)user);
		dir_user_to_info(e->state, user, &e->users[e->count++]);
		return 0;
	}
	if ((alias = dir_hash_get(e->state->aliases, address)) == NULL)
		return 0;
	if (depth >= DIR_ALIAS_DEPTH_MAX) {
		e->error = "aliases nested too deeply";
		return -1;
	}
	dir_hash_put(e->seen, alias->address, (void *)alias);
	for (unsigned i = 0; i < alias->count; i++) {
		if (expand(e, alias->members[i], depth + 1) < 0)
			return -1;
	}
	return 0;
}

/* Splits "local+detail@domain" into base address and detail. */
static bool split_detail(const char *address, char *base, size_t base_size,
			 const char **detail_r, size_t *detail_len_r)
{
	const char *at = strrchr(address, '@'), *plus = strchr(address, '+');

	if (at == NULL || plus == NULL || plus > at || plus == address)
		return false;
	if (snprintf(base, base_size, "%.*s%s", (int)(plus - address), address, at) >=
	    (int)base_size)
		return false;
	*detail_r = plus + 1;
	*detail_len_r = (size_t)(at - plus - 1);
	return true;
}

/* key is the lower-cased address; the detail keeps the case of original. */
static int resolve_locked(struct directory *dir, const char *key, const char *original,
			  struct expansion *e, char *detail_r, size_t detail_size,
			  const char **error_r)
{
	char base[DIR_ADDRESS_MAX + 1];
	const char *detail = NULL, *lower_key = key;
	size_t detail_len = 0;

	if (dir_hash_get(dir->state->users, key) == NULL &&
	    dir_hash_get(dir->state->aliases, key) == NULL) {
		if (!split_detail(key, base, sizeof(base), &detail, &detail_len))
			return 0;
		key = base;
	}
	if (detail_size > 0) {
		if (detail_len >= detail_size) {
			*error_r = "address detail too long";
			return -1;
		}
		if (detail_len > 0)
			memcpy(detail_r, original + (detail - lower_key), detail_len);
		detail_r[detail_len] = '\0';
	}
	if (expand(e, key, 0) < 0) {
		*error_r = e->error;
		return -1;
	}
	return (int)e->count;
}

int directory_resolve(struct directory *dir, const char *address,
		      struct dir_user_info *users_r, unsigned max,
		      char *detail_r, size_t detail_size, const char **error_r)
{
	char key[DIR_ADDRESS_MAX + 1];
	struct expansion e = { .users = users_r, .max = max };
	int ret;

	if (detail_size > 0)
		detail_r[0] = '\0';
	if (!canonical(address, key, sizeof(key)))
		return 0;
	e.seen = dir_hash_new();
	pthread_rwlock_rdlock(&dir->lock);
	e.state = dir->state;
	ret = resolve_locked(dir, key, address, &e, detail_r, detail_size, error_r);
	pthread_rwlock_unlock(&dir->lock);
	dir_hash_free(&e.seen);
	return ret;
}

/* --- authentication --- */

int directory_authenticate(struct directory *dir, const char *address,
			   const char *password, struct dir_user_info *info_r)
{
	char key[DIR_ADDRESS_MAX + 1], *hash = NULL;
	const struct dir_user *user = NULL;
	bool ok;

	if (canonical(address, key, sizeof(key))) {
		pthread_rwlock_rdlock(&dir->lock);
		user = dir_hash_get(dir->state->users, key);
		if (user != NULL) {
			hash = mf_strdup(user->password_hash);
			dir_user_to_info(dir->state, user, info_r);
		}
		pthread_rwlock_unlock(&dir->lock);
	}
	ok = dir_password_verify(password, hash != NULL ? hash : DIR_DUMMY_HASH);
	if (hash == NULL)
		return 0;
	explicit_bzero(hash, strlen(hash));
	free(hash);
	return ok ? 1 : 0;
}
