/* privs.c: see privs.h. */
#include "frontend/privs.h"
#include "lib/log.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

int privs_lookup(const char *user, const char *group, struct privs_target *t_r,
		 char *error, size_t size)
{
	struct passwd *pw = getpwnam(user);

	if (pw == NULL) {
		snprintf(error, size, "run_user %s: no such user", user);
		return -1;
	}
	memset(t_r, 0, sizeof(*t_r));
	t_r->uid = pw->pw_uid;
	t_r->gid = pw->pw_gid;
	snprintf(t_r->user, sizeof(t_r->user), "%s", user);
	if (group != NULL) {
		struct group *gr = getgrnam(group);
		if (gr == NULL) {
			snprintf(error, size, "run_group %s: no such group", group);
			return -1;
		}
		t_r->gid = gr->gr_gid;
	}
	if (t_r->uid == 0) {
		snprintf(error, size, "run_user %s is root; use a dedicated user", user);
		return -1;
	}
	return 0;
}

/* Gives the entries below the open directory dfd to t, depth first;
 * symlinks are changed themselves, never followed. */
static int chown_below(int dfd, const struct privs_target *t, unsigned depth)
{
	DIR *d = fdopendir(dfd);
	struct dirent *de;
	int ret = 0;

	if (d == NULL) {
		close(dfd);
		return -1;
	}
	while (ret == 0 && (de = readdir(d)) != NULL) {
		struct stat st;
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		if ((st.st_uid != t->uid || st.st_gid != t->gid) &&
		    fchownat(dirfd(d), de->d_name, t->uid, t->gid, AT_SYMLINK_NOFOLLOW) < 0)
			ret = -1;
		if (ret == 0 && S_ISDIR(st.st_mode) && depth < 64) {
			int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
			ret = sub < 0 ? -1 : chown_below(sub, t, depth + 1);
		}
	}
	closedir(d);
	return ret;
}

int privs_chown_tree(const char *path, const struct privs_target *t, char *error, size_t size)
{
	struct stat st;
	int fd;

	if (lstat(path, &st) < 0) {
		if (errno == ENOENT)
			return 0;
		snprintf(error, size, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (st.st_uid == t->uid)
		return 0;
	if (lchown(path, t->uid, t->gid) < 0 ||
	    (S_ISDIR(st.st_mode) &&
	     ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
	      chown_below(fd, t, 0) < 0))) {
		snprintf(error, size, "cannot give %s to user %s: %s", path, t->user, strerror(errno));
		return -1;
	}
	log_info("gave %s to user %s", path, t->user);
	return 0;
}

int privs_drop(const struct privs_target *t, char *error, size_t size)
{
	if (initgroups(t->user, t->gid) < 0 || setgid(t->gid) < 0 || setuid(t->uid) < 0) {
		snprintf(error, size, "cannot switch to user %s: %s", t->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0 || geteuid() == 0 || getegid() == 0) {
		snprintf(error, size, "still able to regain root after switching to %s", t->user);
		return -1;
	}
	/* no core dumps or ptrace by the same user: memory holds TLS keys */
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
	return 0;
}
