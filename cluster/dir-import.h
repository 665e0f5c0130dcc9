/* dir-import.h: importing a Dovecot passwd-file into the directory.
 * Lines are "user@domain:{SCHEME}hash:uid:gid:gecos:home:shell:extra"; the
 * fields after the hash may be empty or missing, '#' starts a comment. The
 * extra field "userdb_quota_rule=*:storage=N[unit]" (kilobytes without a
 * unit) or "*:bytes=N" sets the user's quota. The import is all or nothing. */
#ifndef MF_DIR_IMPORT_H
#define MF_DIR_IMPORT_H

#include "cluster/directory.h"

struct dir_import_settings {
	bool domain_create;          /* add domains that do not exist yet */
	const char *default_domain;  /* for lines whose user has no @domain; NULL = error */
};

struct dir_import_result {
	unsigned users, domains_created;
	unsigned errors;             /* lines reported as bad */
};

/* Called for every problem; line 0 means the file as a whole. */
typedef void dir_import_report_fn(void *context, unsigned line, const char *message);

/* Checks every line first (reporting each bad one), then commits all users
 * (and created domains) in one batch. -1 when anything was wrong: then
 * nothing was imported. */
int dir_import_passwd_file(struct directory *dir, const char *path,
			   const struct dir_import_settings *set,
			   dir_import_report_fn *report, void *context,
			   struct dir_import_result *result_r);

#endif
