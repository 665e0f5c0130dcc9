/* directory.h: domains, users, aliases, quotas and access switches.
 *
 * The directory lives in memory and persists as a snapshot plus an
 * append-only, fsync'd journal of change records in one local folder. Every
 * change, local or (later) received through Corosync, is a struct dir_change
 * applied by directory_apply(): that record is the unit of replication.
 * mailfleetctl and mailfleetd may both open the same folder; writers take an
 * flock on it, and directory_refresh() picks up records others appended.
 *
 * Thread-safety: lookups may run from any thread at once (read lock);
 * changes and refresh take the write lock. */
#ifndef MF_DIRECTORY_H
#define MF_DIRECTORY_H

#include "lib/lib.h"

struct directory;

#define DIR_ADDRESS_MAX 320   /* local@domain, RFC 5321 limits 64 + 1 + 255 */
#define DIR_NAME_MAX 255
#define DIR_POLICY_MAX 64

/* What the protocol modules need to know about a user (a copy, safe to keep). */
struct dir_user_info {
	char address[DIR_ADDRESS_MAX + 1];     /* canonical, lower case */
	char localpart[DIR_NAME_MAX + 1];
	char domain[DIR_NAME_MAX + 1];
	uint64_t quota_bytes;           /* 0 = unlimited */
	uint64_t domain_quota_bytes;    /* the domain's pool; 0 = unlimited */
	bool imap_enabled;
	bool pop3_enabled;
	char archive_policy[DIR_POLICY_MAX + 1];
};

/* Opens (creating if missing) the directory kept in folder path. */
int directory_open(const char *path, struct directory **dir_r, const char **error_r);
void directory_close(struct directory **dir);
/* Applies journal records appended by another process since the last look;
 * cheap (one stat) when nothing changed. */
int directory_refresh(struct directory *dir, const char **error_r);

/* 1 found, 0 not found. address is matched case-insensitively. */
int directory_user_get(struct directory *dir, const char *address, struct dir_user_info *info_r);

/* Delivery targets of an address: a user ("user+detail@domain" too: *detail_r
 * is set to "detail", or "" when none), or an alias expanded to its members
 * (recursively, loops and depth bounded). Returns the number of users written
 * to users_r (at most max), 0 when the address is unknown, -1 on error. */
int directory_resolve(struct directory *dir, const char *address,
		      struct dir_user_info *users_r, unsigned max,
		      char *detail_r, size_t detail_size, const char **error_r);

/* Verifies a password in constant time (a dummy verification runs for unknown
 * users so timing does not tell whether the user exists). 1 ok, 0 bad. */
int directory_authenticate(struct directory *dir, const char *address,
			   const char *password, struct dir_user_info *info_r);

/* --- changes: the replication unit --- */
enum dir_change_type {
	DIR_CH_DOMAIN_ADD = 1,
	DIR_CH_DOMAIN_DEL,
	DIR_CH_DOMAIN_QUOTA,
	DIR_CH_USER_ADD,
	DIR_CH_USER_DEL,
	DIR_CH_USER_PASSWD,
	DIR_CH_USER_QUOTA,
	DIR_CH_USER_ACCESS,
	DIR_CH_USER_ARCHIVE,
	DIR_CH_ALIAS_ADD,
	DIR_CH_ALIAS_DEL,
};

struct dir_change {
	enum dir_change_type type;
	const char *name;        /* domain, user address or alias address */
	const char *value;       /* password hash "{SCHEME}...", alias member, archive policy */
	uint64_t number;         /* quota bytes */
	bool imap_enabled, pop3_enabled;  /* for DIR_CH_USER_ACCESS */
};

/* Validates ch against the current state and applies it in memory.
 * A change that is not valid (unknown domain, duplicate user, malformed
 * address, weak hash scheme) fails with a clear *error_r and changes nothing. */
int directory_apply(struct directory *dir, const struct dir_change *ch, const char **error_r);
/* Validates, appends to the journal (fsync'd) and applies, under the folder's lock. */
int directory_commit(struct directory *dir, const struct dir_change *ch, const char **error_r);

/* Encodes/decodes one change record (journal lines and, later, CPG messages). */
char *dir_change_encode(const struct dir_change *ch);
/* Parses one record; strings in ch_r point into *storage_r (free() it). */
int dir_change_decode(const char *data, size_t len, struct dir_change *ch_r,
		      char **storage_r, const char **error_r);

/* Hashes a password with the default scheme ({SHA512-CRYPT}); free() the result. */
char *dir_password_hash(const char *password, const char *scheme);
/* True for schemes accepted in the directory. */
bool dir_password_scheme_ok(const char *hash);

/* --- additions for listings, batches and tools (mailfleetctl, tests) --- */
#define DIR_RECORD_MAX 4096   /* longest encoded change record, bytes */

/* Errors from directory_* calls that are not static strings are owned by the
 * directory and stay valid for its next 16 errors; a failed directory_open()'s
 * error lives in thread-local storage until that thread's next failed open.
 * directory_apply() and directory_commit*() lower-case names (and alias
 * members) first.
 * DIR_CH_USER_ADD creates the user with IMAP and POP3 enabled and ignores
 * imap_enabled/pop3_enabled; number is its quota. directory_resolve() fails
 * (-1) rather than drop members when an alias expands to more than max users. */

struct dir_domain_info {
	char name[DIR_NAME_MAX + 1];
	uint64_t quota_bytes;          /* 0 = unlimited */
	unsigned user_count, alias_count;
};

/* 1 found, 0 not found. */
int directory_domain_get(struct directory *dir, const char *name, struct dir_domain_info *info_r);
/* Sorted, NULL-terminated arrays of copies; free with dir_strv_free().
 * domain NULL lists every domain's entries. */
char **directory_domain_list(struct directory *dir);
char **directory_user_list(struct directory *dir, const char *domain);
char **directory_alias_list(struct directory *dir, const char *domain);
/* 1 found (*members_r as above, in insertion order), 0 not found. */
int directory_alias_get(struct directory *dir, const char *address, char ***members_r);
void dir_strv_free(char ***strv);
/* Writes the scheme of the user's password hash ("SHA512-CRYPT"); 1 found, 0 not. */
int directory_user_password_scheme(struct directory *dir, const char *address,
				   char *buf, size_t size);

/* Commits changes[0..count) all or none: each is validated against the state
 * the previous ones leave, then all are appended with one fsync and applied.
 * On a validation failure *failed_index_r is the index of the bad change. */
int directory_commit_batch(struct directory *dir, const struct dir_change *changes,
			   unsigned count, unsigned *failed_index_r, const char **error_r);
/* Journal length (records) past which a commit compacts it into a new
 * snapshot; default 10000. */
void directory_set_compact_threshold(struct directory *dir, unsigned records);

/* Syntax checks as the directory applies them (lower case input expected;
 * errors are static strings). A stored local part has no '+'. */
int dir_address_check(const char *address, const char **error_r);
int dir_domain_check(const char *domain, const char **error_r);
/* NULL when the directory accepts hash; otherwise a message naming the
 * scheme, written into buf. */
const char *dir_password_scheme_error(const char *hash, char *buf, size_t size);
/* Verifies password against a "{SCHEME}..." hash; output compared in
 * constant time. */
bool dir_password_verify(const char *password, const char *hash);

#endif
