/* store-lock.h: lock files on the NAS, shared by every node: taken by
 * exclusive create (atomic from NFSv3 on), holding "<host> <pid> <time>
 * <counter>" so the holder can tell its own lock from a successor's, kept
 * alive by touching the mtime, and broken by anyone once the mtime is older
 * than a timeout by the NAS's clock (never by the local clock, which may be
 * skewed). Used for the POP3 session lock and for uidlist updates; the lock
 * file format and rules are those of uidlist-sync.c's mailbox lock, so both
 * exclude each other on the same path.
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
/* 1 when the file still holds our text, 0 when gone or taken over, -1 on
 * I/O error. */
int store_lock_is_ours(struct store_lock *lock);
/* Removes the lock file if it is still ours, frees, sets *lock to NULL. */
void store_lock_release(struct store_lock **lock);
/* Frees without touching the file (the lock stays until it goes stale). */
void store_lock_forget(struct store_lock **lock);
const char *store_lock_path(const struct store_lock *lock);

#endif
