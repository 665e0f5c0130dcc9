/* nasbench-local.c: facts that exist only for a target that is a local path
 * (a kernel NFS mount or a local disk): which mount holds it and with which
 * options (/proc/self/mountinfo), and dropping a file's pages from the client
 * page cache so that a read really goes to the NAS. These use the local file
 * system directly on purpose: io.h has no notion of mounts or page caches. */
#include "store/nasbench.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MOUNTINFO_LINE_MAX 16384

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape_octal(char *s)
{
	char *w = s;

	for (const char *r = s; *r != '\0'; r++) {
		if (r[0] == '\\' && r[1] >= '0' && r[1] <= '3' && r[2] >= '0' && r[2] <= '7' &&
		    r[3] >= '0' && r[3] <= '7') {
			*w++ = (char)((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
			r += 3;
		} else {
			*w++ = *r;
		}
	}
	*w = '\0';
}

static bool path_under(const char *path, const char *mount_point)
{
	size_t len = strlen(mount_point);

	if (strcmp(mount_point, "/") == 0)
		return path[0] == '/';
	return strncmp(path, mount_point, len) == 0 && (path[len] == '\0' || path[len] == '/');
}

/* Splits one mountinfo line; false when it is malformed. */
static bool parse_line(char *line, struct nb_mount *mnt_r)
{
	char *fields[6], *save = NULL, *tok;
	int n = 0;

	line[strcspn(line, "\n")] = '\0';
	while (n < 6 && (tok = strtok_r(n == 0 ? line : NULL, " ", &save)) != NULL)
		fields[n++] = tok;
	if (n < 6)
		return false;
	/* optional fields until the lone "-" */
	while ((tok = strtok_r(NULL, " ", &save)) != NULL && strcmp(tok, "-") != 0)
		;
	char *fstype = strtok_r(NULL, " ", &save);
	char *source = strtok_r(NULL, " ", &save);
	char *super = strtok_r(NULL, " ", &save);
	if (tok == NULL || fstype == NULL || source == NULL)
		return false;
	unescape_octal(fields[4]);
	mnt_r->mount_point = mf_strdup(fields[4]);
	mnt_r->fstype = mf_strdup(fstype);
	mnt_r->source = mf_strdup(source);
	mnt_r->options = mf_asprintf("%s%s%s", fields[5], super != NULL ? "," : "",
				     super != NULL ? super : "");
	return true;
}

int nb_mount_find(const char *mountinfo_path, const char *path, struct nb_mount *mnt_r,
		  const char **error_r)
{
	FILE *f = fopen(mountinfo_path, "r");
	char *line = mf_malloc(MOUNTINFO_LINE_MAX);
	size_t best_len = 0;
	bool found = false;

	memset(mnt_r, 0, sizeof(*mnt_r));
	if (f == NULL) {
		free(line);
		*error_r = "cannot read the mount table";
		return -1;
	}
	while (fgets(line, MOUNTINFO_LINE_MAX, f) != NULL) {
		struct nb_mount m;
		if (!parse_line(line, &m))
			continue;
		/* ">=": a later mount on the same point hides the earlier one. */
		if (path_under(path, m.mount_point) && strlen(m.mount_point) >= best_len) {
			best_len = strlen(m.mount_point);
			nb_mount_free(mnt_r);
			*mnt_r = m;
			found = true;
		} else {
			nb_mount_free(&m);
		}
	}
	fclose(f);
	free(line);
	if (!found) {
		*error_r = "no mount in the mount table holds the target";
		return -1;
	}
	return 0;
}

void nb_mount_free(struct nb_mount *mnt)
{
	mf_free(&mnt->mount_point);
	mf_free(&mnt->fstype);
	mf_free(&mnt->source);
	mf_free(&mnt->options);
}

static int cached_pct(int fd, off_t size, double *pct_r)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t pages = (size_t)((size + page - 1) / page), cached = 0;

	*pct_r = 0;
	if (size == 0)
		return 0;
	void *map = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	unsigned char *vec = mf_malloc(pages);
	int ret = mincore(map, (size_t)size, vec);
	for (size_t i = 0; ret == 0 && i < pages; i++)
		cached += vec[i] & 1;
	free(vec);
	munmap(map, (size_t)size);
	*pct_r = 100.0 * (double)cached / (double)pages;
	return ret;
}

int nb_local_drop_cache(const char *path, double *still_cached_pct_r)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -1;
	/* Dirty pages are not dropped: write them out first. */
	int ret = fdatasync(fd) < 0 || fstat(fd, &st) < 0 ? -1 : 0;
	if (ret == 0) {
		int err = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		if (err != 0)
			errno = err, ret = -1;
	}
	if (ret == 0)
		ret = cached_pct(fd, st.st_size, still_cached_pct_r);
	int err = errno;
	close(fd);
	errno = err;
	return ret;
}
