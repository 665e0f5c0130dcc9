/* store-private.h: the struct store shared by store.c (object, delivery,
 * messages), store-usage.c (quota usage) and uidlist.c, and a small
 * string-keyed cache they use. Internal to store/. */
#ifndef MF_STORE_PRIVATE_H
#define MF_STORE_PRIVATE_H

#include "store/store.h"

#include <pthread.h>

#define SCACHE_BUCKETS 1024

struct scache_entry {
	char *key;
	void *value;
	struct scache_entry *next;
};

/* A bounded map from strings to owned values; cleared wholesale when it
 * reaches max entries (it only caches what the NAS can tell again). */
struct scache {
	struct scache_entry *buckets[SCACHE_BUCKETS];
	size_t count, max;
	void (*value_free)(void *value);
};

void scache_init(struct scache *c, size_t max, void (*value_free)(void *value));
void scache_deinit(struct scache *c);
void *scache_get(struct scache *c, const char *key);
/* Replaces any old value (freeing it). */
void scache_put(struct scache *c, const char *key, void *value);
void scache_remove(struct scache *c, const char *key);

struct lock_token;
struct snapshot_registry;

struct store {
	struct mf_io *io;
	struct store_settings set;
	char *host;                /* sanitized, for unique names */
	pthread_mutex_t lock;      /* guards everything below */
	uint64_t counter;
	struct scache mailboxes;   /* mailbox paths known to exist */
	struct scache user_usage;  /* "dom/user" -> struct user_usage */
	struct scache domain_usage;/* "dom" -> struct domain_usage */
	bool nas_offset_valid;
	int64_t nas_offset_us;     /* NAS clock minus local clock */
	uint64_t nas_offset_at_ms;
	bool nas_mtime_fine;       /* the last probe's mtime had a fraction */
	/* store-lock.c: lock token files not linked as a lock right now */
	struct lock_token **tokens;
	size_t token_count, token_cap;
	bool tokens_swept;         /* dead processes' tokens removed */
	bool tokens_unsupported;   /* no hard links: locks by exclusive create */
	/* mailbox-snapshot.c: synced mailboxes (its own mutex) */
	struct snapshot_registry *snapshots;
};

uint64_t store_next_counter(struct store *store);
/* The NAS's idea of "now" (seconds), from the mtime of a file created there,
 * re-measured every minute; falls back to the local clock if that fails. */
int64_t store_nas_now(struct store *store);
/* The same, measured now (and the measure kept for store_nas_now()). */
int64_t store_nas_now_measured(struct store *store);
/* The NAS's now in microseconds (as store_nas_now()); *fine_r: the NAS's
 * timestamps have fractions of a second (false until the first probe). */
int64_t store_nas_now_us(struct store *store, bool *fine_r);
/* Called after a delivery of size bytes to domain/user succeeded. */
void store_usage_delivered(struct store *store, const char *domain, const char *user,
			   uint64_t size);
void store_usage_init(struct store *store);
/* Removes this store's idle lock tokens (store-lock.c). */
void store_lock_tokens_free(struct store *store);
void store_usage_deinit(struct store *store);

#endif
