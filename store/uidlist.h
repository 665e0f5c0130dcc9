/* uidlist.h: per-mailbox UID list "mailfleet-uidlist" in the dovecot-uidlist
 * version 3 format, so other maildir tools can read it and an existing
 * Dovecot maildir keeps its UIDs (its dovecot-uidlist is imported on the
 * first sync):
 *
 *   3 V<uidvalidity> N<nextuid> G<mailbox guid, 32 hex digits>
 *   <uid> [<key><value> ...] :<file name>
 *
 * e.g. "25006 W1063 :1276528487.M364837P9451.kurkku,S=1036,W=1063:2,S".
 * Extension fields (key 'A'..'Z': W vsize, S size, P POP3 UIDL, ...) are kept
 * verbatim; unknown header keys are ignored. Records are matched to files by
 * base name (the part before ":2,"), since flags change the full name; the
 * flags in a stored record's name may be older than the file's (a flag
 * change alone does not rewrite the uidlist), the synced result has them
 * as listed. */
#ifndef MF_STORE_UIDLIST_H
#define MF_STORE_UIDLIST_H

#include "store/store.h"

#define UIDLIST_FILE_NAME "mailfleet-uidlist"
#define UIDLIST_DOVECOT_FILE_NAME "dovecot-uidlist"
#define UIDLIST_MAX_SIZE (64 * 1024 * 1024)
#define UIDLIST_LINE_MAX 8192

struct uidlist_rec {
	uint32_t uid;
	char *filename;   /* full name as last seen (new/ or cur/) */
	char *ext;        /* extension fields joined by ' ', or NULL */
	bool in_new;      /* set by uidlist_sync(): the file is in new/ */
};

struct uidlist {
	uint32_t uid_validity;
	uint32_t next_uid;
	char guid[33];            /* hex; "" when the file had none */
	struct uidlist_rec *recs; /* strictly ascending uid */
	size_t count, cap;
};

/* Parses a whole uidlist file. On error *line_r is the 1-based bad line and
 * *error_r a static string. */
int uidlist_parse(const char *data, size_t len, struct uidlist **ul_r,
		  unsigned *line_r, const char **error_r);
/* The file text (malloc()ed, NUL-terminated). */
char *uidlist_serialize(const struct uidlist *ul, size_t *len_r);
void uidlist_free(struct uidlist **ul);
/* The record whose file has the same base name as name, or NULL. */
const struct uidlist_rec *uidlist_lookup(const struct uidlist *ul, const char *name);

/* Brings the uidlist of the maildir mailbox at mbox_path ("dom/user/Maildir"
 * or "dom/user/Maildir/.Folder", relative to the store root) up to date:
 * takes the mailbox lock (exclusive create of mailfleet-uidlist.lock; a lock
 * older than the store's lock_timeout_secs by the NAS's clock is broken),
 * re-reads the uidlist, lists new/ and cur/, gives files not yet listed UIDs
 * in ascending order of name, drops records whose files are gone, writes the
 * result to a temp file renamed over the uidlist, and unlocks. *ul_r (may be
 * NULL) receives the result. error_r: static string.
 * A record is dropped only when a listing during which neither new/ nor cur/
 * changed lacks its file (a file renamed by a flag change while a listing
 * runs can be missed by it); while the mailbox keeps changing, such records
 * are kept, so a record may name a file that is already gone: readers must
 * take ENOENT for "expunged". */
int uidlist_sync(struct store *store, const char *mbox_path, struct uidlist **ul_r,
		 const char **error_r);
/* uidlist_sync() that also runs hook(hook_ctx, ...) with the mailbox lock
 * still held, once the uidlist is up to date (and written). The hook returns
 * -1 with errno and a static *error_r to fail the sync; it may be called a
 * second time (ESTALE retry). */
typedef int uidlist_locked_fn(void *ctx, struct store *store, const char *mbox_path,
			      const struct uidlist *ul, const char **error_r);
int uidlist_sync_hook(struct store *store, const char *mbox_path, uidlist_locked_fn *hook,
		      void *hook_ctx, struct uidlist **ul_r, const char **error_r);
/* The same for domain/user/folder (NULL or "INBOX": the inbox). */
int uidlist_sync_mailbox(struct store *store, const char *domain, const char *user,
			 const char *folder, struct uidlist **ul_r, const char **error_r);

#endif
