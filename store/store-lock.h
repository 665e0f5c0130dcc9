/* store-lock.h: lock files on the NAS, shared by every node. A lock is a
 * hard link, made at the lock's path, to a token file of the holder
 * (".mailfleet-lock-tokens/<host>.<pid>.<random>", holding "<host> <pid>
 * <time> <counter>"): link() fails with EEXIST when the path exists, as an
 * exclusive create does (atomic from NFSv3 on), and the holder tells its own
 * lock from a successor's by the inode number. Where the store has no hard
 * links, the lock is an exclusively created file holding that text. A lock
 * is kept alive by touching its mtime and broken by anyone once the mtime is
 * older than a timeout by the NAS's clock (never by the local clock, which
 * may be skewed). Used for the mailbox (uidlist) lock and the POP3 session
 * lock; both kinds of lock exclude each other on the same path.
 *
 * All calls block on the NAS: run them from worker threads. A struct
 * store_lock belongs to one session; calls on it must not overlap. */
#ifndef MF_STORE_LOCK_H
#define MF_STORE_LOCK_H

#include "store/store.h"

struct store_lock;

/* One attempt. 0: taken. -1: errno EEXIST when another live holder has it
 * (*age_r, when not NULL, is its age in seconds by the NAS clock), other
 * errno for I/O errors. A stale lock (older than timeout_secs) is broken
 * and the create retried once. */
int store_lock_try(struct store *store, const char *path, unsigned timeout_secs,
		   struct store_lock **lock_r, int64_t *age_r);
/* Retries store_lock_try() with backoff for up to wait_ms; errno EAGAIN
 * when it gives up. */
int store_lock_take(struct store *store, const char *path, unsigned timeout_secs,
		    unsigned wait_ms, struct store_lock **lock_r);
/* Sets the lock's mtime to the NAS's now. -1 with errno ENOENT when the
 * lock file is gone or EPERM when another holder took it over (it was
 * broken as stale): the caller no longer holds it. */
int store_lock_refresh(struct store_lock *lock);
/* 1 when the lock at the path is still ours, 0 when gone or taken over, -1
 * on I/O error. */
int store_lock_is_ours(struct store_lock *lock);
/* Removes the lock file if it is still ours (or when that cannot be told),
 * frees, sets *lock to NULL. */
void store_lock_release(struct store_lock **lock);
/* Frees without touching the file (the lock stays until it goes stale; its
 * token file stays until a later start of this host's server sweeps it). */
void store_lock_forget(struct store_lock **lock);
const char *store_lock_path(const struct store_lock *lock);

#endif
