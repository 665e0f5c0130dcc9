/* dir-private.h: what the directory's source files share and nobody else
 * needs: the string-keyed hash table, the in-memory state (domains, users,
 * aliases) with its validate/apply steps, record normalisation, and the
 * persistence layer (snapshot + journal + folder lock). */
#ifndef MF_DIR_PRIVATE_H
#define MF_DIR_PRIVATE_H

#include "cluster/directory.h"

#include <pthread.h>
#include <sys/types.h>

#define DIR_LOCALPART_MAX 64
#define DIR_DOMAIN_MAX 253
#define DIR_ALIAS_DEPTH_MAX 8
#define DIR_ERROR_RING 16
#define DIR_COMPACT_DEFAULT 10000

/* --- hash table: string keys (owned by the values), values are pointers --- */
struct dir_hash;
struct dir_hash *dir_hash_new(void);
/* Frees the table only; values stay with the caller. */
void dir_hash_free(struct dir_hash **hash);
void *dir_hash_get(const struct dir_hash *hash, const char *key);
/* key must stay valid while the entry exists; a key may be inserted once. */
void dir_hash_put(struct dir_hash *hash, const char *key, void *value);
void *dir_hash_remove(struct dir_hash *hash, const char *key);
unsigned dir_hash_count(const struct dir_hash *hash);
/* Iteration: *iter starts at 0; returns NULL at the end. The table must not
 * change while iterating. */
void *dir_hash_next(const struct dir_hash *hash, size_t *iter, const char **key_r);

/* --- state --- */
struct dir_domain {
	char *name;
	uint64_t quota_bytes;
	unsigned user_count, alias_count;
};

struct dir_user {
	char *address;          /* lower case; localpart@domain */
	size_t at;              /* index of '@' in address */
	char *password_hash;    /* "{SCHEME}..." */
	uint64_t quota_bytes;
	bool imap_enabled, pop3_enabled;
	char *archive_policy;   /* "" = none */
};

struct dir_alias {
	char *address;
	char **members;
	unsigned count;
};

struct dir_state {
	struct dir_hash *domains, *users, *aliases;
};

struct dir_state *dir_state_new(void);
void dir_state_free(struct dir_state **state);
struct dir_state *dir_state_clone(const struct dir_state *state);
/* Validates a normalised change. relaxed (for snapshot loading) skips the
 * check that alias members exist, since a snapshot lists aliases in any
 * order. Writes a human error into err. */
int dir_state_check(const struct dir_state *state, const struct dir_change *ch,
		    bool relaxed, char *err, size_t err_size);
/* Applies a change dir_state_check() accepted; cannot fail. */
void dir_state_do(struct dir_state *state, const struct dir_change *ch);
int dir_state_apply(struct dir_state *state, const struct dir_change *ch,
		    bool relaxed, char *err, size_t err_size);
/* Encodes the whole state as change records, one per line, to out (malloc'd);
 * *count_r records. */
char *dir_state_dump(const struct dir_state *state, size_t *len_r, unsigned *count_r);
void dir_user_to_info(const struct dir_state *state, const struct dir_user *user,
		      struct dir_user_info *info_r);

/* --- record helpers (dir-change.c) --- */
/* Copies ch into *out with name (and an alias member) lower-cased; strings
 * live in *storage_r (free()). */
void dir_change_normalize(const struct dir_change *ch, struct dir_change *out,
			  char **storage_r);
const char *dir_change_type_name(enum dir_change_type type);
/* Writes the upper-case scheme of "{SCHEME}..." (CRYPT without braces). */
int dir_password_scheme_name(const char *hash, char *buf, size_t size);

/* --- the directory object --- */
struct directory {
	pthread_rwlock_t lock;      /* guards state */
	pthread_mutex_t io_lock;    /* one writer/refresher per process handle */
	struct dir_state *state;

	char *path, *journal_path, *snapshot_path, *lock_path;
	int lock_fd;
	dev_t journal_dev;
	ino_t journal_ino;
	off_t journal_offset;       /* bytes of the journal applied */
	unsigned journal_records;
	uint64_t generation;
	unsigned compact_records;

	pthread_mutex_t error_lock;
	char *errors[DIR_ERROR_RING];
	unsigned error_next;
};

/* Keeps a formatted error in the directory's ring; valid for the next
 * DIR_ERROR_RING errors. */
const char *dir_error(struct directory *dir, const char *fmt, ...) MF_PRINTF(2, 3);

/* --- persistence (dir-store.c); the caller holds dir->io_lock --- */
int dir_store_open(struct directory *dir, const char **error_r);
void dir_store_close(struct directory *dir);
/* locked: the caller holds the folder lock exclusively (repairs allowed). */
int dir_store_refresh(struct directory *dir, bool locked, const char **error_r);
int dir_store_lock(struct directory *dir, const char **error_r);
void dir_store_unlock(struct directory *dir);
/* Appends encoded lines (each ending in '\n') and fsyncs; on failure the
 * journal is cut back to its old size. */
int dir_store_append(struct directory *dir, const char *data, size_t len,
		     unsigned records, const char **error_r);
/* Writes a new snapshot and an empty journal when the journal is over its
 * bound (or always when force). */
int dir_store_maybe_compact(struct directory *dir, bool force, const char **error_r);

#endif
