/* store.h: the mail store on top of io.h: maildir++ layout, delivery,
 * uidlists, quota usage, lz4 at rest. Knows nothing of protocols.
 *
 * Layout: <root>/<domain>/<user>/Maildir/{tmp,new,cur}, folders as
 * Maildir/.Name/{tmp,new,cur} (maildir++; "/" in a folder name becomes ".").
 * Domain, user and folder names are validated here too (no path escapes):
 * an invalid name fails with EINVAL.
 *
 * Thread-safety: a struct store is shared by all worker threads; every call
 * may block on the NAS, so the event loops never call it directly. */
#ifndef MF_STORE_H
#define MF_STORE_H

#include "lib/lib.h"
#include "store/io.h"

#include <sys/uio.h>

struct store;

struct store_settings {
	bool compress_lz4;          /* compress new message files (lz4 frame) */
	int lz4_level;              /* 0 = fast default */
	bool fsync;                 /* fsync files and directories (never off in production) */
	unsigned lock_timeout_secs; /* a uidlist lock older than this is stale (default 120) */
	const char *hostname;       /* used in unique file names; NULL = gethostname() */
};

void store_settings_defaults(struct store_settings *set);

/* Takes ownership of io. */
int store_new(struct mf_io *io, const struct store_settings *set,
	      struct store **store_r, const char **error_r);
void store_free(struct store **store);
struct mf_io *store_io(struct store *store);

/* True when name is acceptable as a domain, user (local part) or folder name. */
bool store_domain_name_valid(const char *domain);
bool store_user_name_valid(const char *user);
bool store_folder_name_valid(const char *folder);

/* Does the folder exist for the user? folder "INBOX" (any case) always "exists"
 * once the user has been delivered to. Returns 1 yes, 0 no, -1 error (errno). */
int store_folder_exists(struct store *store, const char *domain, const char *user, const char *folder);
/* Creates the user's Maildir (INBOX) or a folder if missing; idempotent. */
int store_folder_create(struct store *store, const char *domain, const char *user, const char *folder);

/* Delivers one message: the concatenation of iov[] (size bytes in all) is
 * written to tmp/, fsync'd, renamed into new/, and new/ made durable. Creates
 * the user's Maildir on first delivery. folder NULL or "INBOX" is the inbox.
 * On success the message is durable and *basename_r (free()) names it in new/.
 * On failure nothing is visible in new/ or cur/ and errno says why (ENOSPC,
 * EDQUOT, EIO, ESTALE, ENOENT for a missing folder, EINVAL for a bad name). */
int store_deliver(struct store *store, const char *domain, const char *user,
		  const char *folder, const struct iovec *iov, int iovcnt, size_t size,
		  char **basename_r, const char **error_r);

/* Quota usage, derived from the maildir itself (sizes are in the file names,
 * S=<uncompressed size>), so it never drifts and stays right when several
 * nodes deliver at once. Cached; the cache is validated against the NAS. */
int store_user_usage(struct store *store, const char *domain, const char *user,
		     uint64_t *bytes_r, uint64_t *messages_r);
int store_domain_usage(struct store *store, const char *domain, uint64_t *bytes_r);
/* Like store_user_usage(), but a result computed less than max_age_ms ago is
 * reused (plus what this store has delivered to the user since), without
 * asking the NAS. It may miss what other nodes delivered within max_age_ms;
 * a quota check can use it while the user is well below the limit and call
 * store_user_usage() near it. (store_user_usage() re-reads every changed
 * new/ or cur/, which costs a directory listing per delivery.) */
int store_user_usage_recent(struct store *store, const char *domain, const char *user,
			    unsigned max_age_ms, uint64_t *bytes_r, uint64_t *messages_r);

/* Reads a message file, undoing lz4 if the file starts with the lz4 frame
 * magic. *data_r is malloc()ed. */
int store_read_message(struct store *store, const char *path, size_t max_size,
		       unsigned char **data_r, size_t *len_r);

#endif
