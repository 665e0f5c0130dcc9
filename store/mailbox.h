/* mailbox.h: one maildir mailbox as an IMAP-like view on the store: the
 * messages with UID, flags (from the maildir file name ":2,<flags>", the
 * keywords a..z mapped through the per-mailbox "mailfleet-keywords" file in
 * the dovecot-keywords format), stored size, CRLF size and internal date
 * (file mtime); flag changes by renaming within cur/; append, expunge, copy;
 * and the user's folder list and subscriptions.
 *
 * UIDs come from uidlist_sync() (under the mailbox lock). A struct mailbox is
 * a snapshot owned by one session; mailbox_sync() refreshes it, keeping what
 * it already knew about each UID (size, date), so only new messages cost a
 * stat or a read.
 *
 * Every function here blocks on the NAS: call them from worker threads.
 * error_r strings are static. */
#ifndef MF_STORE_MAILBOX_H
#define MF_STORE_MAILBOX_H

#include "store/store.h"

struct mailbox_index;
struct mailbox_cache;

#define MAILBOX_KEYWORDS_MAX 26
#define MAILBOX_KEYWORD_LEN_MAX 64
#define MAILBOX_KEYWORDS_FILE "mailfleet-keywords"
#define MAILBOX_SUBSCRIPTIONS_FILE "subscriptions"

/* System flags, as in the maildir info letters. */
enum mailbox_flag {
	MAILBOX_FLAG_DRAFT    = 1 << 0,   /* D */
	MAILBOX_FLAG_FLAGGED  = 1 << 1,   /* F */
	MAILBOX_FLAG_ANSWERED = 1 << 2,   /* R */
	MAILBOX_FLAG_SEEN     = 1 << 3,   /* S */
	MAILBOX_FLAG_DELETED  = 1 << 4,   /* T */
	MAILBOX_FLAG_FORWARDED= 1 << 5,   /* P ($Forwarded) */
};

struct mailbox_msg {
	uint32_t uid;
	char *filename;        /* name in new/ (in_new) or cur/ */
	bool in_new;
	uint32_t flags;        /* enum mailbox_flag */
	uint32_t keywords;     /* bit i: keyword letter 'a' + i */
	uint64_t size;         /* stored bytes (LF line ends, uncompressed) */
	uint64_t vsize;        /* IMAP size (CRLF) */
	int64_t internal_date; /* seconds since the epoch */
	bool recent;           /* was in new/ when this session moved it */
	uint64_t modseq;       /* CONDSTORE: last change of flags/keywords (>= 1) */
	uint32_t cache_off;    /* entry in mailfleet-cache, 0 = none */
};

struct mailbox {
	struct store *store;
	char *domain, *user;
	char *name;            /* "INBOX" or "a/b" */
	char *path;            /* "dom/user/Maildir[/.a.b]" */
	bool read_only;
	uint32_t uid_validity, uid_next;
	uint64_t highest_modseq;    /* CONDSTORE HIGHESTMODSEQ (>= 1) */
	struct mailbox_msg *msgs;   /* ascending UID */
	unsigned count;
	char *keywords[MAILBOX_KEYWORDS_MAX];  /* index = letter - 'a'; NULL unused */
	int64_t stamps[2];     /* new/ and cur/ mtimes at the last sync */
	bool stamps_valid;
	uint64_t index_seen;   /* index bytes the view reflects (its last sync) */
	struct mailbox_index *index;   /* mailbox-index.h: modseqs, expunges */
	struct mailbox_cache *cache;   /* mailbox-cache.h: read window, queue */
};

/* Opens (and syncs) the mailbox; ENOENT when it does not exist. A read-write
 * open moves messages from new/ to cur/ and marks them recent. */
int mailbox_open(struct store *store, const char *domain, const char *user, const char *name,
		 bool read_only, struct mailbox **box_r, const char **error_r);
void mailbox_free(struct mailbox **box);
/* Re-reads uidlist and keywords; the message array is replaced. */
int mailbox_sync(struct mailbox *box, const char **error_r);

/* Frees what the view holds per message (messages, index records, cache
 * window) while keeping UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ and the change
 * stamps: an idling session's mailbox costs almost nothing until the next
 * mailbox_sync() brings the messages back. */
void mailbox_drop_msgs(struct mailbox *box);

/* Cheap check for a poll (IDLE): 1 when new/ or cur/ changed since the last
 * sync (by their mtimes on the NAS), 0 when not, -1 on error. A sync is
 * still needed now and then: a change within the mtime granularity of the
 * NAS can go unnoticed by this check alone. */
int mailbox_changed(struct mailbox *box);

/* The keyword index for name (case-insensitive), adding it to the keywords
 * file when create is set and there is room. -1 when absent / full. */
int mailbox_keyword_index(struct mailbox *box, const char *name, bool create);

/* Sets flags and keywords of box->msgs[idx] by renaming its file. */
int mailbox_set_flags(struct mailbox *box, unsigned idx, uint32_t flags, uint32_t keywords,
		      const char **error_r);

/* Adds and removes flags and keywords relative to what the file name says
 * at the time of the rename (so a concurrent change by another session to
 * other flags is kept); follows a file renamed meanwhile. */
struct mailbox_flag_change {
	uint32_t add, remove;          /* enum mailbox_flag */
	uint32_t kw_add, kw_remove;    /* keyword bits */
};
int mailbox_change_flags(struct mailbox *box, unsigned idx, const struct mailbox_flag_change *ch,
			 const char **error_r);

/* STORE under the mailbox lock: for each box->msgs[idxs[i]] whose modseq in
 * the index is still <= unchanged_since (0: no condition), applies ch as
 * mailbox_change_flags() does and records the change in the index with a
 * new modseq (m->modseq, box->highest_modseq updated). A message that fails
 * the condition is left alone and modified_r[i] set (modified_r may be NULL
 * when unchanged_since is 0); an expunged one is skipped (expunged_r[i]). */
int mailbox_store_flags(struct mailbox *box, const unsigned *idxs, unsigned count,
			const struct mailbox_flag_change *ch, uint64_t unchanged_since,
			bool *modified_r, bool *expunged_r, const char **error_r);

/* Message file contents (LF line ends, lz4 undone). *data_r: free(). */
int mailbox_read(struct mailbox *box, unsigned idx, size_t max_size, unsigned char **data_r,
		 size_t *len_r, const char **error_r);

/* Removes the files of the given messages (indexes into box->msgs) under the
 * mailbox lock, then syncs. With only_deleted (IMAP EXPUNGE), a message whose
 * file no longer says \Deleted (another session removed the flag) stays. */
int mailbox_expunge(struct mailbox *box, const unsigned *idxs, unsigned count, bool only_deleted,
		    const char **error_r);

/* Appends a message (data with LF or CRLF line ends; stored with LF) into
 * the mailbox domain/user/name with flags, keywords (names) and internal date
 * (0 = now). *uid_r and *uid_validity_r receive its UID. errno ENOENT when
 * the mailbox does not exist. */
int mailbox_append(struct store *store, const char *domain, const char *user, const char *name,
		   const void *data, size_t len, uint32_t flags, const char *const *keywords,
		   unsigned keyword_count, int64_t date, uint32_t *uid_validity_r,
		   uint32_t *uid_r, const char **error_r);

/* mailbox_append() without asking for the UID: for a session that has the
 * mailbox selected and syncs it next; mailbox_uid_of_base() then finds the
 * UID in its view (0: another session expunged it first). *basename_r:
 * free(). */
int mailbox_append_unsynced(struct store *store, const char *domain, const char *user,
			    const char *name, const void *data, size_t len, uint32_t flags,
			    const char *const *keywords, unsigned keyword_count, int64_t date,
			    char **basename_r, const char **error_r);
uint32_t mailbox_uid_of_base(const struct mailbox *box, const char *basename);

/* Copies box->msgs[idxs[i]] into the mailbox dest_name (hard link where the
 * store allows it), keeping flags and keywords; a failed copy removes what
 * it made (errno ENOENT: no such mailbox; EIDRM: a message was expunged). With move the files are renamed instead (atomic: of two sessions
 * moving one message, one gets it); a message gone meanwhile is skipped and
 * its uids_r entry is 0. uids_r (count entries) gets the new UIDs in order;
 * *uid_validity_r the destination's. box is not synced. */
int mailbox_copy(struct mailbox *box, const unsigned *idxs, unsigned count,
		 const char *dest_name, bool move, uint32_t *uid_validity_r, uint32_t *uids_r,
		 const char **error_r);

/* Counts for STATUS without keeping the mailbox. */
struct mailbox_status {
	uint32_t messages, recent, unseen, uid_next, uid_validity;
	uint64_t size;
	uint64_t highest_modseq;
};
int mailbox_status(struct store *store, const char *domain, const char *user, const char *name,
		   struct mailbox_status *st_r, const char **error_r);

/* ---- folders (mailbox-list.c) ---- */

/* Every folder name of the user ("a", "a/b", ...; INBOX not included),
 * sorted. *names_r: NULL-terminated, free with mailbox_names_free(). */
int mailbox_list_folders(struct store *store, const char *domain, const char *user,
			 char ***names_r, const char **error_r);
void mailbox_names_free(char ***names);
/* Creates a folder (with parents); EEXIST when it exists. */
int mailbox_create(struct store *store, const char *domain, const char *user, const char *name,
		   const char **error_r);
/* Deletes a folder and its messages; its children stay, the name then
 * exists only as their \Noselect superior (no directory of its own; it
 * goes with the last child). ENOENT when there is no such folder, ENOTEMPTY
 * for such a \Noselect name (RFC 3501 6.3.4). */
int mailbox_delete(struct store *store, const char *domain, const char *user, const char *name,
		   const char **error_r);
/* Renames a folder and its children (a \Noselect name: its children);
 * EEXIST when the target exists.
 * Renaming INBOX moves its messages into the new folder (new UIDs there). */
int mailbox_rename(struct store *store, const char *domain, const char *user, const char *from,
		   const char *to, const char **error_r);
/* Special-use attributes (RFC 6154) given at CREATE, kept in
 * Maildir/mailfleet-special-use as "name<TAB>attrs" lines (attrs: "\Archive"
 * or several separated by spaces); a delete drops the folder's entry, a
 * rename moves its own and its children's. *entries_r: NULL-terminated,
 * free with mailbox_names_free(). set with attrs NULL clears the entry. */
#define MAILBOX_SPECIAL_USE_FILE "mailfleet-special-use"
int mailbox_special_use_get(struct store *store, const char *domain, const char *user,
			    char ***entries_r, const char **error_r);
int mailbox_special_use_set(struct store *store, const char *domain, const char *user,
			    const char *name, const char *attrs, const char **error_r);
/* Subscriptions (one name a line in Maildir/subscriptions). */
int mailbox_subscriptions_get(struct store *store, const char *domain, const char *user,
			      char ***names_r, const char **error_r);
int mailbox_subscription_set(struct store *store, const char *domain, const char *user,
			     const char *name, bool subscribe, const char **error_r);
/* First login: creates the Maildir and, when the user has no subscriptions
 * file yet, the given folders, subscribed together with INBOX. */
int mailbox_user_init(struct store *store, const char *domain, const char *user,
		      const char *const *folders, unsigned count, const char **error_r);

#endif
