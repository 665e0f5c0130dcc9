/* mailbox-snapshot.h: what the last full sync of a mailbox in this process
 * found (messages, keywords, index state), so that another sync of the same
 * mailbox can often skip the locked rescan of the maildir:
 *
 *  - Coalescing: a sync asked for at time T may use a snapshot whose own
 *    sync began at or after T (local monotonic clock): that sync saw every
 *    change completed before it began, so also every change completed
 *    before T. Syncs of one mailbox run one at a time in this process (an
 *    in-process mutex per mailbox, instead of polling the NAS lock), so the
 *    sessions woken together by one change share one rescan.
 *  - Validation: a snapshot whose new/ and cur/ mtimes and whose uidlist,
 *    index and keywords files (inode, size, mtime) were all older than the
 *    NAS's clock minus the settle time when its sync began ("settled")
 *    stays usable while the five stats still match: a later change gives a
 *    later mtime even on a NAS with a coarse clock. A change within the
 *    NAS's timestamp granularity of the listing could look like no change
 *    at all, which is why unsettled snapshots are never validated by stats.
 *
 * Snapshots take at most MAILBOX_SNAPSHOT_BYTES_MAX of memory per store,
 * least recently used ones dropped first. Internal to store/. */
#ifndef MF_STORE_MAILBOX_SNAPSHOT_H
#define MF_STORE_MAILBOX_SNAPSHOT_H

#include "store/mailbox.h"

/* How old (by the NAS's clock) everything a snapshot depends on must be
 * when its sync begins: well over the NAS's timestamp granularity and the
 * error of the measured NAS clock (MS for a NAS whose timestamps have
 * fractions of a second, SECS for one with whole seconds). */
#define MAILBOX_SNAPSHOT_SETTLE_MS 250
#define MAILBOX_SNAPSHOT_SETTLE_SECS 2
#define MAILBOX_SNAPSHOT_BYTES_MAX (64u * 1024 * 1024)

/* Identity of a file for validation; exists false when it is absent. */
struct snapshot_file_id {
	bool exists;
	uint64_t ino, size;
	int64_t mtime_ns;
};

enum snapshot_file {
	SNAPSHOT_FILE_UIDLIST, SNAPSHOT_FILE_INDEX, SNAPSHOT_FILE_KEYWORDS,
	SNAPSHOT_FILE_COUNT
};

struct mailbox_snapshot {
	uint64_t started_us;       /* mf_now_us() when its sync began */
	bool settled;
	int64_t stamps[2];         /* new/ and cur/ mtimes (ns) before the listing */
	struct snapshot_file_id files[SNAPSHOT_FILE_COUNT];
	uint32_t uid_validity, uid_next;
	struct mailbox_msg *msgs;  /* ascending UID; recent always false */
	unsigned count;
	char *keywords[MAILBOX_KEYWORDS_MAX];
	struct mailbox_index *index;
	size_t bytes;              /* memory it holds, roughly */
};

/* The mailbox's entry, with its sync mutex held (waits while another
 * session of this process syncs the mailbox). */
struct snapshot_entry;
struct snapshot_entry *mailbox_snapshot_enter(struct store *store, const char *mbox_path);
/* Releases the mutex and the entry; sets *entry to NULL. */
void mailbox_snapshot_leave(struct store *store, struct snapshot_entry **entry);
/* The entry's snapshot or NULL; valid while the entry is held. */
const struct mailbox_snapshot *mailbox_snapshot_get(struct snapshot_entry *entry);
/* Replaces the entry's snapshot by a copy of box's view (which the caller
 * just synced, with the given start time, stamps and files), when it is
 * settled or other sessions wait for the mailbox; else only drops the old
 * one. */
void mailbox_snapshot_publish(struct store *store, struct snapshot_entry *entry,
			      const struct mailbox *box, uint64_t started_us, bool settled,
			      const struct snapshot_file_id files[SNAPSHOT_FILE_COUNT]);
/* The identity of path now (a missing file is "absent"); -1 on I/O error. */
int mailbox_snapshot_file_id(struct store *store, const char *path, struct snapshot_file_id *id_r);
bool mailbox_snapshot_file_id_equal(const struct snapshot_file_id *a,
				    const struct snapshot_file_id *b);

/* The store's registry (store_new()) and its end (store_free()). */
struct snapshot_registry *mailbox_snapshots_new(void);
void mailbox_snapshots_free(struct snapshot_registry **reg);

#endif
