/* privs.h: leaving root once the listening sockets are bound. The daemon
 * binds as root, hands its local state folders to the run user, and then
 * runs as that user for good (it verifies that root cannot be regained). */
#ifndef MF_PRIVS_H
#define MF_PRIVS_H

#include "lib/lib.h"

struct privs_target {
	uid_t uid;
	gid_t gid;
	char user[64];
};

/* Looks up user (and group, or the user's primary group when NULL). On
 * failure a message is written to error (size bytes). */
int privs_lookup(const char *user, const char *group, struct privs_target *t_r,
		 char *error, size_t size);
/* Gives path and everything below it to the target user, unless path itself
 * already belongs to it (so a big store is walked only the first time).
 * A missing path is fine. */
int privs_chown_tree(const char *path, const struct privs_target *t, char *error, size_t size);
/* initgroups, setgid, setuid; then checks setuid(0) fails and marks the
 * process non-dumpable (it holds TLS keys). */
int privs_drop(const struct privs_target *t, char *error, size_t size);

#endif
