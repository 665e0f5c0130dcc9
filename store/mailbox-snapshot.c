/* mailbox-snapshot.c: the per-process memory of synced mailboxes (see
 * mailbox-snapshot.h): a hash of entries by mailbox path, each with the
 * mutex its syncs take and at most one snapshot; entries holding a snapshot
 * are kept in least-recently-used order for the memory cap. */
#include "store/mailbox-snapshot.h"
#include "store/mailbox-index.h"
#include "store/store-private.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SNAPSHOT_BUCKETS 1024

struct snapshot_entry {
	char *path;
	unsigned refs;             /* sessions in enter()..leave() */
	pthread_mutex_t sync;      /* held by the session syncing the mailbox */
	struct mailbox_snapshot *snap;
	struct snapshot_entry *hnext;
	struct snapshot_entry *newer, *older;   /* LRU, when snap != NULL */
};

struct snapshot_registry {
	pthread_mutex_t lock;      /* the table, refs, LRU and bytes */
	struct snapshot_entry *buckets[SNAPSHOT_BUCKETS];
	struct snapshot_entry *newest, *oldest;
	size_t bytes;
};

struct snapshot_registry *mailbox_snapshots_new(void)
{
	struct snapshot_registry *reg = mf_calloc(1, sizeof(*reg));

	pthread_mutex_init(&reg->lock, NULL);
	return reg;
}

static void snap_free(struct mailbox_snapshot **snapp)
{
	struct mailbox_snapshot *snap = *snapp;

	if (snap == NULL)
		return;
	for (unsigned i = 0; i < snap->count; i++)
		free(snap->msgs[i].filename);
	free(snap->msgs);
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++)
		free(snap->keywords[i]);
	mailbox_index_free(&snap->index);
	mf_free(snapp);
}

static void entry_free(struct snapshot_entry *e)
{
	snap_free(&e->snap);
	pthread_mutex_destroy(&e->sync);
	free(e->path);
	free(e);
}

void mailbox_snapshots_free(struct snapshot_registry **regp)
{
	struct snapshot_registry *reg = *regp;

	if (reg == NULL)
		return;
	for (size_t b = 0; b < SNAPSHOT_BUCKETS; b++) {
		while (reg->buckets[b] != NULL) {
			struct snapshot_entry *e = reg->buckets[b];
			reg->buckets[b] = e->hnext;
			entry_free(e);
		}
	}
	pthread_mutex_destroy(&reg->lock);
	mf_free(regp);
}

static size_t path_hash(const char *path)
{
	size_t h = 5381;

	for (const unsigned char *p = (const unsigned char *)path; *p != '\0'; p++)
		h = h * 33 + *p;
	return h % SNAPSHOT_BUCKETS;
}

/* ---- LRU (registry lock held) ---- */

static void lru_unlink(struct snapshot_registry *reg, struct snapshot_entry *e)
{
	if (e->newer != NULL)
		e->newer->older = e->older;
	else if (reg->newest == e)
		reg->newest = e->older;
	if (e->older != NULL)
		e->older->newer = e->newer;
	else if (reg->oldest == e)
		reg->oldest = e->newer;
	e->newer = e->older = NULL;
}

static void lru_push_newest(struct snapshot_registry *reg, struct snapshot_entry *e)
{
	e->older = reg->newest;
	e->newer = NULL;
	if (reg->newest != NULL)
		reg->newest->newer = e;
	reg->newest = e;
	if (reg->oldest == NULL)
		reg->oldest = e;
}

static void table_remove(struct snapshot_registry *reg, struct snapshot_entry *e)
{
	struct snapshot_entry **pp = &reg->buckets[path_hash(e->path)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
}

/* Drops the oldest snapshots of other mailboxes (not being synced right
 * now) until the total fits under the cap. */
static void evict(struct snapshot_registry *reg, const struct snapshot_entry *keep)
{
	struct snapshot_entry *e = reg->oldest;

	while (e != NULL && reg->bytes > MAILBOX_SNAPSHOT_BYTES_MAX) {
		struct snapshot_entry *next = e->newer;
		if (e != keep && pthread_mutex_trylock(&e->sync) == 0) {
			lru_unlink(reg, e);
			reg->bytes -= e->snap->bytes;
			snap_free(&e->snap);
			pthread_mutex_unlock(&e->sync);
			if (e->refs == 0) {
				table_remove(reg, e);
				entry_free(e);
			}
		}
		e = next;
	}
}

/* ---- entries ---- */

struct snapshot_entry *mailbox_snapshot_enter(struct store *store, const char *mbox_path)
{
	struct snapshot_registry *reg = store->snapshots;
	size_t b = path_hash(mbox_path);
	struct snapshot_entry *e;

	pthread_mutex_lock(&reg->lock);
	for (e = reg->buckets[b]; e != NULL; e = e->hnext) {
		if (strcmp(e->path, mbox_path) == 0)
			break;
	}
	if (e == NULL) {
		e = mf_calloc(1, sizeof(*e));
		e->path = mf_strdup(mbox_path);
		pthread_mutex_init(&e->sync, NULL);
		e->hnext = reg->buckets[b];
		reg->buckets[b] = e;
	}
	e->refs++;
	pthread_mutex_unlock(&reg->lock);
	pthread_mutex_lock(&e->sync);
	return e;
}

void mailbox_snapshot_leave(struct store *store, struct snapshot_entry **entryp)
{
	struct snapshot_registry *reg = store->snapshots;
	struct snapshot_entry *e = *entryp;

	if (e == NULL)
		return;
	*entryp = NULL;
	pthread_mutex_lock(&reg->lock);
	if (e->snap != NULL) {
		lru_unlink(reg, e);
		lru_push_newest(reg, e);
	}
	pthread_mutex_unlock(&e->sync);
	if (--e->refs == 0 && e->snap == NULL) {
		table_remove(reg, e);
		entry_free(e);
	}
	pthread_mutex_unlock(&reg->lock);
}

const struct mailbox_snapshot *mailbox_snapshot_get(struct snapshot_entry *entry)
{
	return entry->snap;
}

static struct mailbox_snapshot *snap_from_box(const struct mailbox *box)
{
	struct mailbox_snapshot *snap = mf_calloc(1, sizeof(*snap));

	snap->uid_validity = box->uid_validity;
	snap->uid_next = box->uid_next;
	snap->count = box->count;
	snap->msgs = mf_malloc((box->count + 1) * sizeof(*snap->msgs));
	snap->bytes = sizeof(*snap) + (box->count + 1) * sizeof(*snap->msgs);
	for (unsigned i = 0; i < box->count; i++) {
		snap->msgs[i] = box->msgs[i];
		snap->msgs[i].filename = mf_strdup(box->msgs[i].filename);
		snap->msgs[i].recent = false;
		snap->bytes += strlen(box->msgs[i].filename) + 1 + 16;
	}
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if (box->keywords[i] != NULL)
			snap->keywords[i] = mf_strdup(box->keywords[i]);
	}
	snap->index = mailbox_index_new(box->store, box->path);
	mailbox_index_copy(snap->index, box->index);
	snap->bytes += snap->index->count * sizeof(*snap->index->recs) +
		snap->index->exp_count * sizeof(*snap->index->expunged);
	return snap;
}

void mailbox_snapshot_publish(struct store *store, struct snapshot_entry *entry,
			      const struct mailbox *box, uint64_t started_us, bool settled,
			      const struct snapshot_file_id files[SNAPSHOT_FILE_COUNT])
{
	struct snapshot_registry *reg = store->snapshots;
	struct mailbox_snapshot *snap = NULL;

	/* kept when stats can validate it later or when other sessions wait
	 * for this mailbox now; a mailbox too large for the cap is not kept.
	 * Either way the old snapshot goes. */
	pthread_mutex_lock(&reg->lock);
	bool wanted = settled || entry->refs > 1;
	pthread_mutex_unlock(&reg->lock);
	if (wanted && box->count < MAILBOX_SNAPSHOT_BYTES_MAX / 2 / 256) {
		snap = snap_from_box(box);
		snap->started_us = started_us;
		snap->settled = settled;
		memcpy(snap->stamps, box->stamps, sizeof(snap->stamps));
		memcpy(snap->files, files, sizeof(snap->files));
	}
	pthread_mutex_lock(&reg->lock);
	if (entry->snap != NULL) {
		lru_unlink(reg, entry);
		reg->bytes -= entry->snap->bytes;
		snap_free(&entry->snap);
	}
	if (snap != NULL) {
		entry->snap = snap;
		reg->bytes += snap->bytes;
		lru_push_newest(reg, entry);
		evict(reg, entry);
	}
	pthread_mutex_unlock(&reg->lock);
}

/* ---- file identities ---- */

int mailbox_snapshot_file_id(struct store *store, const char *path, struct snapshot_file_id *id_r)
{
	struct io_stat st;

	memset(id_r, 0, sizeof(*id_r));
	if (io_stat(store->io, path, &st) < 0)
		return errno == ENOENT ? 0 : -1;
	id_r->exists = true;
	id_r->ino = st.ino;
	id_r->size = st.size;
	id_r->mtime_ns = st.mtime_sec * 1000000000LL + st.mtime_nsec;
	return 0;
}

bool mailbox_snapshot_file_id_equal(const struct snapshot_file_id *a,
				    const struct snapshot_file_id *b)
{
	return a->exists == b->exists && a->ino == b->ino && a->size == b->size &&
		a->mtime_ns == b->mtime_ns;
}
