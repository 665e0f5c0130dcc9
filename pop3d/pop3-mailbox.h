/* pop3-mailbox.h: a user's inbox as one POP3 session sees it (RFC 1939
 * "maildrop"): opened under the cluster-wide POP3 lock, a fixed list of
 * messages with their UIDs, CRLF sizes and UIDLs taken from the uidlist
 * (never by opening every file once the sizes are cached), message reads,
 * and the UPDATE state that removes the messages marked deleted.
 *
 * The POP3 lock is the file "mailfleet-pop3.lock" in the user's Maildir on
 * the store (store-lock.h): exclusive create, refreshed by its holder, broken
 * by anyone once older than lock_timeout_secs by the NAS's clock.
 *
 * Login without listing the directories: when neither new/ nor cur/ changed
 * (by their mtimes on the NAS) since the last full sync began, the uidlist
 * is read as it is; otherwise uidlist_sync() runs.
 *
 * Every function except the accessors blocks on the NAS: call them from a
 * conn_run_blocking() job. */
#ifndef MF_POP3_MAILBOX_H
#define MF_POP3_MAILBOX_H

#include "pop3d/pop3-msg.h"
#include "store/store.h"

#define POP3_LOCK_FILE_NAME "mailfleet-pop3.lock"
/* Its mtime: when the last full uidlist sync by a POP3 login began. */
#define POP3_SYNC_MARK "mailfleet-pop3.synced"

struct pop3_mailbox_settings {
	const char *uidl_format;      /* checked with pop3_uidl_format_check() */
	unsigned lock_timeout_secs;
	size_t message_size_max;      /* larger files are not read (EFBIG) */
};

struct pop3_message {
	uint32_t uid;
	uint64_t size;                /* octets on the wire (CRLF line ends) */
	char *filename;               /* as last seen in new/ or cur/ */
	bool in_new;
	bool deleted;                 /* DELE'd in this session */
	const char *uidl;             /* points into the mailbox's storage */
};

struct pop3_mailbox {
	struct store *store;
	char *mbox;                   /* "dom/user/Maildir" */
	struct store_lock *lock;
	uint32_t uid_validity;
	struct pop3_message *msgs;
	unsigned count;
	char *uidl_storage;
	unsigned sizes_computed;      /* files read at open to learn their size */
};

enum pop3_open_result {
	POP3_OPEN_OK,
	POP3_OPEN_IN_USE,             /* another live session holds the lock */
	POP3_OPEN_FAILED,             /* I/O error: *error_r */
};

/* Locks and lists the inbox of domain/user (creating an empty Maildir for a
 * user who never got mail). error_r: static string. */
enum pop3_open_result pop3_mailbox_open(struct store *store, const char *domain, const char *user,
					const struct pop3_mailbox_settings *set,
					struct pop3_mailbox **mbox_r, const char **error_r);
/* Reads message idx (0-based) into *data_r (malloc()ed, LF line ends as
 * stored, lz4 undone). Follows a file renamed by another client (flags
 * changed, moved from new/ to cur/). errno ENOENT when it is gone. */
int pop3_mailbox_read(struct pop3_mailbox *mbox, unsigned idx, size_t max_size,
		      unsigned char **data_r, size_t *len_r);
/* Keeps the lock alive. -1 when it was lost (broken by another session). */
int pop3_mailbox_refresh_lock(struct pop3_mailbox *mbox);
/* UPDATE state: if the lock is still ours, removes the files of messages
 * marked deleted, brings the uidlist up to date, and releases the lock.
 * *removed_r counts files removed. -1 with a static *error_r when the lock
 * was lost (nothing removed) or I/O failed (some may be removed). The lock
 * is released in every case. */
int pop3_mailbox_commit(struct pop3_mailbox *mbox, unsigned *removed_r, const char **error_r);
/* Releases the lock (if still held) without removing anything, and frees. */
void pop3_mailbox_close(struct pop3_mailbox **mbox);

#endif
