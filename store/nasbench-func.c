/* nasbench-func.c: the functional checks of mailfleet-nasbench: does the
 * target behave as the maildir store needs (create, modify, delete, chmod,
 * chown, setgid groups, maildir file names, atomic rename, exclusive create,
 * link counts, fsync, clock)? Each check adds one "func.*" row. */
#include "store/nasbench.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define S_IFMT_BITS 0170000
#define S_IFDIR_BITS 0040000

/* Reports a failed call as the check's FAIL; remembers fatal errors. */
static void fail_errno(struct nb_ctx *ctx, const char *check, const char *what)
{
	int err = errno;
	char *note = nb_errstr(what, err);

	nb_fatal_check(ctx, err, what);
	nb_report_add(ctx->report, check, NB_FAIL, NAN, NULL, "must work", note, "error");
	free(note);
}

static int write_file(struct mf_io *io, const char *path, int flags, const void *data, size_t len)
{
	struct io_file *f;

	if (io_open(io, path, IO_O_WRONLY | IO_O_CREAT | flags, 0644, &f) < 0)
		return -1;
	if (io_write_all(f, data, len) < 0) {
		int err = errno;
		io_close(&f);
		errno = err;
		return -1;
	}
	return io_close(&f);
}

/* 1 equal, 0 different, -1 error */
static int content_equals(struct mf_io *io, const char *path, const void *data, size_t len)
{
	char *have;
	size_t have_len;

	if (io_read_file(io, path, len + 1, &have, &have_len) < 0)
		return -1;
	int ret = have_len == len && memcmp(have, data, len) == 0 ? 1 : 0;
	free(have);
	return ret;
}

/* create, modify in place, append, truncate, delete */
static void check_files(struct nb_ctx *ctx)
{
	const char *name = "func.files";
	char *p = nb_path(ctx, "f-files");
	struct io_file *f;
	struct io_stat st;
	int eq;

	if (write_file(ctx->io, p, IO_O_EXCL, "hello", 5) < 0) {
		fail_errno(ctx, name, "create");
	} else if (io_open(ctx->io, p, IO_O_RDWR, 0, &f) < 0) {
		fail_errno(ctx, name, "open for update");
	} else if (io_pwrite(f, "XY", 2, 2) != 2 || io_close(&f) < 0) {
		int err = errno != 0 ? errno : EIO;
		io_close(&f);
		errno = err;
		fail_errno(ctx, name, "modify in place");
	} else if (write_file(ctx->io, p, IO_O_APPEND, " world", 6) < 0) {
		fail_errno(ctx, name, "append");
	} else if ((eq = content_equals(ctx->io, p, "heXYo world", 11)) <= 0) {
		if (eq < 0)
			fail_errno(ctx, name, "read back");
		else
			nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "must work",
				      "modified content read back wrong", "wrong content");
	} else if (write_file(ctx->io, p, IO_O_TRUNC, "new", 3) < 0 ||
		   content_equals(ctx->io, p, "new", 3) != 1) {
		fail_errno(ctx, name, "truncate and rewrite");
	} else if (io_unlink(ctx->io, p) < 0) {
		fail_errno(ctx, name, "delete");
	} else if (io_stat(ctx->io, p, &st) == 0 || errno != ENOENT) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "must work",
			      "a deleted file is still visible", "still there");
	} else {
		nb_report_add(ctx->report, name, NB_PASS, NAN, NULL, "must work", NULL,
			      "create, modify, append, truncate, delete ok");
	}
	free(p);
}

struct find_name {
	const char *name;
	bool found;
	unsigned entries;
};

static int find_cb(void *ctx, const char *name)
{
	struct find_name *fn = ctx;

	fn->entries++;
	if (strcmp(name, fn->name) == 0)
		fn->found = true;
	return 0;
}

static void check_folders(struct nb_ctx *ctx)
{
	const char *name = "func.folders";
	char *a = nb_path(ctx, "f-dir"), *b = nb_path(ctx, "f-dir/sub"), *c = nb_path(ctx, "f-dir/sub/deep");
	struct find_name fn = { .name = "sub" };
	struct io_stat st;

	if (io_mkdir_parents(ctx->io, c, 0755) < 0) {
		fail_errno(ctx, name, "mkdir -p");
	} else if (io_readdir(ctx->io, a, find_cb, &fn) < 0) {
		fail_errno(ctx, name, "readdir");
	} else if (!fn.found || fn.entries != 1) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "must work",
			      "a new folder is missing from its parent's listing", "listing wrong");
	} else if (io_rmdir(ctx->io, b) == 0 || (errno != ENOTEMPTY && errno != EEXIST)) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "must work",
			      "removing a non-empty folder did not fail with ENOTEMPTY", "rmdir wrong");
	} else if (io_rmdir(ctx->io, c) < 0 || io_rmdir(ctx->io, b) < 0 || io_rmdir(ctx->io, a) < 0) {
		fail_errno(ctx, name, "rmdir");
	} else if (io_stat(ctx->io, a, &st) == 0 || errno != ENOENT) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "must work",
			      "a removed folder is still visible", "still there");
	} else {
		nb_report_add(ctx->report, name, NB_PASS, NAN, NULL, "must work", NULL,
			      "mkdir -p, list, rmdir ok");
	}
	free(a);
	free(b);
	free(c);
}

static void check_chmod(struct nb_ctx *ctx)
{
	const char *name = "func.chmod";
	char *p = nb_path(ctx, "f-chmod");
	struct io_stat st1, st2;

	if (write_file(ctx->io, p, IO_O_EXCL, "x", 1) < 0) {
		fail_errno(ctx, name, "create");
	} else if (io_chmod(ctx->io, p, 0640) < 0 || io_stat(ctx->io, p, &st1) < 0 ||
		   io_chmod(ctx->io, p, 0604) < 0 || io_stat(ctx->io, p, &st2) < 0) {
		fail_errno(ctx, name, "chmod");
	} else if ((st1.mode & 07777) != 0640 || (st2.mode & 07777) != 0604) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "mode as set", NULL,
			      "mode %04o/%04o, wanted 0640/0604", st1.mode & 07777, st2.mode & 07777);
	} else {
		nb_report_add(ctx->report, name, NB_PASS, NAN, NULL, "mode as set", NULL,
			      "0640 and 0604 ok");
	}
	free(p);
}

/* Root checks a real ownership change; anyone else can only give a file to
 * himself, which still proves the call works. */
static void check_chown(struct nb_ctx *ctx)
{
	const char *name = "func.chown";
	char *p = nb_path(ctx, "f-chown");
	bool root = geteuid() == 0;
	uint32_t uid = root ? 4242 : geteuid(), gid = root ? 4243 : getegid();
	struct io_stat st;

	if (write_file(ctx->io, p, IO_O_EXCL, "x", 1) < 0) {
		fail_errno(ctx, name, "create");
	} else if (io_chown(ctx->io, p, uid, gid) < 0) {
		if (root && (errno == EPERM || errno == EACCES))
			nb_report_add(ctx->report, name, NB_WARN, NAN, NULL, "owner as set",
				      "root is squashed on this export; mailfleet writes as its mail user "
				      "and needs no chown, but restores and migrations do", "refused for root");
		else
			fail_errno(ctx, name, "chown");
	} else if (io_stat(ctx->io, p, &st) < 0) {
		fail_errno(ctx, name, "stat");
	} else if (st.uid != uid || st.gid != gid) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "owner as set",
			      "the NAS maps owners (NFSv4 idmapping or squashing?)",
			      "%u:%u, wanted %u:%u", st.uid, st.gid, uid, gid);
	} else {
		nb_report_add(ctx->report, name, NB_PASS, NAN, NULL, "owner as set", NULL,
			      "%u:%u ok", uid, gid);
	}
	free(p);
}

/* A group this process may hand a folder to: any for root, else a
 * supplementary one other than the primary. 0 when there is none. */
static uint32_t other_group(void)
{
	gid_t groups[64];
	int n;

	if (geteuid() == 0)
		return 4243;
	n = getgroups((int)MF_N_ELEMENTS(groups), groups);
	for (int i = 0; i < n; i++) {
		if (groups[i] != getegid() && groups[i] != 0)
			return groups[i];
	}
	return 0;
}

static void check_setgid(struct nb_ctx *ctx)
{
	const char *name = "func.setgid";
	uint32_t gid = other_group();
	char *d = nb_path(ctx, "f-setgid"), *f = nb_path(ctx, "f-setgid/file");
	struct io_stat st;

	if (gid == 0) {
		nb_report_add(ctx->report, name, NB_SKIP, NAN, NULL, "group inherited",
			      "needs root or a supplementary group to hand the folder to", "not run");
	} else if (io_mkdir(ctx->io, d, 0775) < 0) {
		fail_errno(ctx, name, "mkdir");
	} else if (io_chown(ctx->io, d, geteuid(), gid) < 0 || io_chmod(ctx->io, d, 02775) < 0) {
		if (errno == EPERM || errno == EACCES)
			nb_report_add(ctx->report, name, NB_WARN, NAN, NULL, "group inherited",
				      "the export refused to change the folder's group (root squashed?)",
				      "not testable");
		else
			fail_errno(ctx, name, "chown/chmod g+s");
	} else if (write_file(ctx->io, f, IO_O_EXCL, "x", 1) < 0) {
		fail_errno(ctx, name, "create in setgid folder");
	} else if (io_stat(ctx->io, f, &st) < 0) {
		fail_errno(ctx, name, "stat");
	} else if (st.gid != gid) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "group inherited",
			      "a new file in a setgid folder must take the folder's group "
			      "(shared mailboxes rely on it)", "group %u, wanted %u", st.gid, gid);
	} else {
		nb_report_add(ctx->report, name, NB_PASS, NAN, NULL, "group inherited", NULL,
			      "new file has group %u", gid);
	}
	free(d);
	free(f);
}

static void check_names(struct nb_ctx *ctx)
{
	const char *name = "func.maildir-names";
	const char *base = "1700000000.M123456P789.nasbench,S=1234,W=1260";
	char *tmp = nb_path(ctx, "f-names/%s", base);
	char *cur = nb_path(ctx, "f-names/%s:2,FRS", base);
	char *dir = nb_path(ctx, "f-names");
	char *want = mf_asprintf("%s:2,FRS", base);
	struct find_name fn = { .name = want };

	if (io_mkdir(ctx->io, dir, 0755) < 0) {
		fail_errno(ctx, name, "mkdir");
	} else if (write_file(ctx->io, tmp, IO_O_EXCL, "maildir", 7) < 0) {
		fail_errno(ctx, name, "create a name with ','");
	} else if (io_rename(ctx->io, tmp, cur) < 0) {
		fail_errno(ctx, name, "rename to a name with ':'");
	} else if (io_readdir(ctx->io, dir, find_cb, &fn) < 0) {
		fail_errno(ctx, name, "readdir");
	} else if (!fn.found || fn.entries != 1 || content_equals(ctx->io, cur, "maildir", 7) != 1) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "names kept exactly",
			      "the NAS mangles names with ':' or ',' (SMB-style name mapping?)",
			      "name not found as written");
	} else {
		nb_report_add(ctx->report, name, NB_PASS, NAN, NULL, "names kept exactly", NULL,
			      "':' and ',' kept");
	}
	free(tmp);
	free(cur);
	free(dir);
	free(want);
}

static void check_link_count(struct nb_ctx *ctx)
{
	const char *name = "func.link-count";
	char *a = nb_path(ctx, "f-link-a"), *b = nb_path(ctx, "f-link-b");
	char *d = nb_path(ctx, "f-link-dir"), *sub = nb_path(ctx, "f-link-dir/sub");
	struct io_stat st1, st2, st3, sd1, sd2;

	if (write_file(ctx->io, a, IO_O_EXCL, "x", 1) < 0 || io_stat(ctx->io, a, &st1) < 0) {
		fail_errno(ctx, name, "create");
	} else if (io_link(ctx->io, a, b) < 0 || io_stat(ctx->io, a, &st2) < 0) {
		fail_errno(ctx, name, "link");
	} else if (io_unlink(ctx->io, b) < 0 || io_stat(ctx->io, a, &st3) < 0) {
		fail_errno(ctx, name, "unlink");
	} else if (io_mkdir(ctx->io, d, 0755) < 0 || io_stat(ctx->io, d, &sd1) < 0 ||
		   io_mkdir(ctx->io, sub, 0755) < 0 || io_stat(ctx->io, d, &sd2) < 0) {
		fail_errno(ctx, name, "mkdir");
	} else if (st1.nlink != 1 || st2.nlink != 2 || st3.nlink != 1) {
		nb_report_add(ctx->report, name, NB_FAIL, NAN, NULL, "1 -> 2 -> 1",
			      "hard link counts are wrong: link-based copies and expunges break",
			      "%u -> %u -> %u", st1.nlink, st2.nlink, st3.nlink);
	} else if (sd2.nlink != sd1.nlink + 1) {
		nb_report_add(ctx->report, name, NB_WARN, NAN, NULL, "1 -> 2 -> 1",
			      "folder link counts do not count subfolders; tools that use them to "
			      "find child folders must list instead",
			      "files ok, folder %u -> %u", sd1.nlink, sd2.nlink);
	} else {
		nb_report_add(ctx->report, name, NB_PASS, NAN, NULL, "1 -> 2 -> 1", NULL,
			      "files 1 -> 2 -> 1, folder %u -> %u", sd1.nlink, sd2.nlink);
	}
	free(a);
	free(b);
	free(d);
	free(sub);
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The NAS stamps the mtime when the file is written; local time is taken
 * just before and just after, so the skew is measured to within the RPC. */
static void check_clock(struct nb_ctx *ctx)
{
	const char *name = "func.clock-skew";
	char *p = nb_path(ctx, "f-clock");
	double limit = ctx->thr[NB_THR_CLOCK_SKEW_S];
	char *thr = mf_asprintf("|skew| < %.2f s", limit);
	struct io_stat st;

	double t0 = wall_now();
	if (write_file(ctx->io, p, IO_O_EXCL, "clock", 5) < 0) {
		fail_errno(ctx, name, "create");
	} else if (io_stat(ctx->io, p, &st) < 0) {
		fail_errno(ctx, name, "stat");
	} else {
		double t1 = wall_now(), mtime = (double)st.mtime_sec + st.mtime_nsec / 1e9;
		/* File systems stamp with a coarse clock: allow 20 ms before t0. */
		double skew = mtime < t0 - 0.02 ? mtime - t0 : mtime > t1 ? mtime - t1 : 0.0;
		enum nb_verdict v = fabs(skew) > limit ? NB_FAIL :
			fabs(skew) > limit / 2 ? NB_WARN : NB_PASS;
		nb_report_add(ctx->report, name, v, skew, "s", thr,
			      v == NB_PASS ? NULL : "mail servers compare NAS mtimes with their own "
			      "clock; run NTP on the NAS and on every node",
			      "%+.3f s (NAS %s)", skew, skew >= 0 ? "ahead" : "behind");
	}
	free(thr);
	free(p);
}

void nb_check_functional(struct nb_ctx *ctx)
{
	static void (*const checks[])(struct nb_ctx *) = {
		check_files, check_folders, check_chmod, check_chown, check_setgid,
		check_names, check_link_count, check_clock,
	};

	for (size_t i = 0; i < MF_N_ELEMENTS(checks) && !nb_stopping(ctx); i++) {
		nb_progress_update(ctx->progress, "functional checks", (double)i / 12);
		checks[i](ctx);
	}
	if (!nb_stopping(ctx))
		nb_check_rename_atomic(ctx);
	if (!nb_stopping(ctx))
		nb_check_exclusive_create(ctx);
	if (!nb_stopping(ctx))
		nb_check_fsync(ctx);
	nb_progress_update(ctx->progress, "functional checks", 1.0);
}
