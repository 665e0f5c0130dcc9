/* test-store.c: maildir++ names, delivery (mem and posix backends), lz4 at
 * rest, quota usage (also with several processes delivering at once), and
 * delivery under injected I/O faults: a failed delivery leaves nothing in
 * new/ or cur/, cleans tmp/, and the next delivery works. */
#include "store/store.h"
#include "store/maildir.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

static struct store *new_store(struct mf_io *io, bool lz4)
{
	struct store_settings set;
	struct store *store;
	const char *error;

	store_settings_defaults(&set);
	set.hostname = "node1";
	set.compress_lz4 = lz4;
	if (store_new(io, &set, &store, &error) < 0) {
		fprintf(stderr, "store_new: %s\n", error);
		exit(1);
	}
	return store;
}

static char *tmp_root(void)
{
	const char *tmpdir = getenv("TMPDIR");
	char *tmpl = mf_asprintf("%s/mf-test-store-XXXXXX", tmpdir != NULL ? tmpdir : "/tmp");

	if (mkdtemp(tmpl) == NULL) {
		perror("mkdtemp");
		exit(1);
	}
	return tmpl;
}

static void rm_rf(const char *dir)
{
	char *cmd = mf_asprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
}

static int count_cb(void *ctx, const char *name)
{
	(*(unsigned *)ctx)++;
	return 0;
}

static unsigned count_dir(struct mf_io *io, const char *path)
{
	unsigned n = 0;

	if (io_readdir(io, path, count_cb, &n) < 0)
		return 9999;
	return n;
}

static int deliver_str(struct store *store, const char *user, const char *folder,
		       const char *msg, char **name_r)
{
	struct iovec iov[2] = {
		{ .iov_base = (void *)"Return-Path: <a@b>\r\n", .iov_len = 20 },
		{ .iov_base = (void *)msg, .iov_len = strlen(msg) },
	};
	const char *error = NULL;
	char *name = NULL;
	int ret = store_deliver(store, "example.com", user, folder, iov, 2, 20 + strlen(msg),
				&name, &error);
	if (name_r != NULL)
		*name_r = name;
	else
		free(name);
	if (ret < 0)
		CHECK(error != NULL);
	return ret;
}

static void test_names(void)
{
	static const char *const bad_users[] = {
		"", ".", "..", ".hidden", "a/b", "a\nb", "a\tb", "a\x7f",
	};
	static const char *const bad_folders[] = {
		"", ".", "..", "/a", "a/", "a//b", "a/./b", "a/../b", ".a", "a.b", "a\rb",
	};
	char long_user[MAILDIR_USER_MAX + 2];

	for (size_t i = 0; i < MF_N_ELEMENTS(bad_users); i++) {
		CHECK(!store_user_name_valid(bad_users[i]));
		CHECK(!store_domain_name_valid(bad_users[i]));
	}
	for (size_t i = 0; i < MF_N_ELEMENTS(bad_folders); i++) {
		if (store_folder_name_valid(bad_folders[i]))
			TEST_FAIL_AT(__FILE__, __LINE__, "folder \"%s\" accepted", bad_folders[i]);
		test_checks++;
	}
	memset(long_user, 'a', sizeof(long_user) - 1);
	long_user[sizeof(long_user) - 1] = '\0';
	CHECK(!store_user_name_valid(long_user));
	long_user[MAILDIR_USER_MAX] = '\0';
	CHECK(store_user_name_valid(long_user));
	CHECK(store_user_name_valid("john.doe+tag"));
	CHECK(store_domain_name_valid("example.com"));
	CHECK(store_folder_name_valid("Archive/2024/Q1"));
	CHECK(store_folder_name_valid("Sent Items"));
	CHECK(store_folder_name_valid("&AMQ-rger"));

	char *p = maildir_mailbox_path("example.com", "bob", "Archive/2024");
	CHECK_STR_EQ(p, "example.com/bob/Maildir/.Archive.2024");
	free(p);
	p = maildir_mailbox_path("example.com", "bob", "inbox");
	CHECK_STR_EQ(p, "example.com/bob/Maildir");
	free(p);
	errno = 0;
	CHECK(maildir_mailbox_path("example.com", "../x", NULL) == NULL);
	CHECK_INT_EQ(errno, EINVAL);
}

static void test_unique_names(void)
{
	char *host = maildir_host_sanitize("mx/1:a b");
	uint64_t size = 0;

	CHECK_STR_EQ(host, "mx\\0571\\072ab");
	char *a = maildir_unique_name(host, 1, 1036, 0), *b = maildir_unique_name(host, 2, 1036, 0);
	CHECK(strcmp(a, b) != 0);
	CHECK(strchr(a, '/') == NULL && strchr(a, ':') == NULL);
	CHECK(strstr(a, ".mx\\0571\\072ab,S=1036") != NULL);
	CHECK(strstr(a, "Q1R") != NULL);
	CHECK(maildir_name_size(a, &size));
	CHECK_INT_EQ(size, 1036);
	free(a);
	free(b);
	free(host);
	host = maildir_host_sanitize("");
	CHECK_STR_EQ(host, "localhost");
	free(host);

	CHECK(maildir_name_size("1276528487.M364837P9451.kurkku,S=1036,W=1063:2,S", &size));
	CHECK_INT_EQ(size, 1036);
	CHECK(maildir_name_size("1.M2P3.h,W=5,S=77", &size));
	CHECK_INT_EQ(size, 77);
	CHECK(!maildir_name_size("1.M2P3.h:2,S=77", &size)); /* after the base name */
	CHECK(!maildir_name_size("1.M2P3.h,S=", &size));
	CHECK(!maildir_name_size("1.M2P3.h,S=12x", &size));
	CHECK(!maildir_name_size("1.M2P3.h,S=123456789012345678901234", &size));
	CHECK_INT_EQ(maildir_base_len("abc,S=1:2,FS"), 7);
	CHECK_INT_EQ(maildir_base_len("abc"), 3);
}

static void check_delivery(struct mf_io *io, bool lz4)
{
	struct store *store = new_store(io, lz4);
	unsigned char *data;
	size_t len;
	char *name, *path;
	uint64_t bytes, msgs;

	CHECK_INT_EQ(store_folder_exists(store, "example.com", "alice", "INBOX"), 0);
	CHECK_INT_EQ(deliver_str(store, "alice", NULL, "Subject: hi\r\n\r\nbody\r\n", &name), 0);
	CHECK(name != NULL && strstr(name, ",S=41") != NULL);
	CHECK_INT_EQ(store_folder_exists(store, "example.com", "alice", "inbox"), 1);
	CHECK_INT_EQ(count_dir(io, "example.com/alice/Maildir/new"), 1);
	CHECK_INT_EQ(count_dir(io, "example.com/alice/Maildir/tmp"), 0);
	CHECK_INT_EQ(count_dir(io, "example.com/alice/Maildir/cur"), 0);
	path = mf_asprintf("example.com/alice/Maildir/new/%s", name);
	CHECK_INT_EQ(store_read_message(store, path, 1000, &data, &len), 0);
	CHECK_INT_EQ(len, 41);
	CHECK(data != NULL && memcmp(data, "Return-Path: <a@b>\r\nSubject: hi\r\n\r\nbody\r\n", 41) == 0);
	free(data);
	errno = 0;
	CHECK_INT_EQ(store_read_message(store, path, 40, &data, &len), -1);
	CHECK_INT_EQ(errno, EFBIG);
	free(path);
	free(name);

	/* folders: missing -> ENOENT; created -> works */
	errno = 0;
	CHECK_INT_EQ(deliver_str(store, "alice", "Lists/dev", "x", NULL), -1);
	CHECK_INT_EQ(errno, ENOENT);
	CHECK_INT_EQ(store_folder_create(store, "example.com", "alice", "Lists/dev"), 0);
	CHECK_INT_EQ(store_folder_create(store, "example.com", "alice", "Lists/dev"), 0);
	CHECK_INT_EQ(store_folder_exists(store, "example.com", "alice", "Lists/dev"), 1);
	CHECK_INT_EQ(deliver_str(store, "alice", "Lists/dev", "xyz", NULL), 0);
	CHECK_INT_EQ(count_dir(io, "example.com/alice/Maildir/.Lists.dev/new"), 1);
	errno = 0;
	CHECK_INT_EQ(deliver_str(store, "../etc", NULL, "x", NULL), -1);
	CHECK_INT_EQ(errno, EINVAL);
	errno = 0;
	CHECK_INT_EQ(deliver_str(store, "alice", "a/../b", "x", NULL), -1);
	CHECK_INT_EQ(errno, EINVAL);
	/* S= must be the truth: a size that is not the parts' sum is refused */
	struct iovec iov = { .iov_base = (void *)"abc", .iov_len = 3 };
	const char *error;
	errno = 0;
	CHECK_INT_EQ(store_deliver(store, "example.com", "alice", NULL, &iov, 1, 4, &name, &error), -1);
	CHECK_INT_EQ(errno, EINVAL);

	CHECK_INT_EQ(store_user_usage(store, "example.com", "alice", &bytes, &msgs), 0);
	CHECK_INT_EQ(bytes, 41 + 23);
	CHECK_INT_EQ(msgs, 2);
	CHECK_INT_EQ(store_user_usage(store, "example.com", "nobody", &bytes, &msgs), 0);
	CHECK_INT_EQ(bytes, 0);
	CHECK_INT_EQ(deliver_str(store, "bob", NULL, "12345", NULL), 0);
	CHECK_INT_EQ(store_domain_usage(store, "example.com", &bytes), 0);
	CHECK_INT_EQ(bytes, 41 + 23 + 25);
	CHECK_INT_EQ(store_domain_usage(store, "example.net", &bytes), 0);
	CHECK_INT_EQ(bytes, 0);
	store_free(&store);
	CHECK(store == NULL);
}

static void test_deliver_mem(void)
{
	check_delivery(io_mem_new(), false);
}

static void test_deliver_posix(void)
{
	char *root = tmp_root();
	struct mf_io *io;
	const char *error;

	CHECK_INT_EQ(io_posix_new(root, &io, &error), 0);
	check_delivery(io, false);
	rm_rf(root);
	free(root);
}

static void test_deliver_lz4(void)
{
	char *root = tmp_root();
	struct mf_io *io, *io2, *raw_io;
	const char *error;
	size_t big_len = 300000;
	char *big = mf_malloc(big_len + 1), *name, *path, *raw;
	unsigned char *data;
	size_t len, raw_len;
	uint64_t bytes, msgs;
	struct io_file *f;

	CHECK_INT_EQ(io_posix_new(root, &io, &error), 0);
	CHECK_INT_EQ(io_posix_new(root, &io2, &error), 0);
	CHECK_INT_EQ(io_posix_new(root, &raw_io, &error), 0);
	struct store *plain = new_store(io, false), *lz = new_store(io2, true);
	for (size_t i = 0; i < big_len; i++)
		big[i] = (char)("From: x\r\nabcdefgh\r\n"[i % 19] + (i % 1000 == 0));
	big[big_len] = '\0';
	/* compressed and plain files in the same maildir */
	CHECK_INT_EQ(deliver_str(lz, "carol", NULL, big, &name), 0);
	path = mf_asprintf("example.com/carol/Maildir/new/%s", name);
	CHECK_INT_EQ(io_read_file(raw_io, path, 10000000, &raw, &raw_len), 0);
	CHECK(raw_len < big_len / 2);
	CHECK(raw_len >= 4 && (unsigned char)raw[0] == 0x04 && (unsigned char)raw[1] == 0x22 &&
	      (unsigned char)raw[2] == 0x4d && (unsigned char)raw[3] == 0x18);
	free(raw);
	CHECK_INT_EQ(store_read_message(plain, path, 10000000, &data, &len), 0);
	CHECK_INT_EQ(len, big_len + 20);
	CHECK(data != NULL && memcmp(data + 20, big, big_len) == 0);
	free(data);
	errno = 0;
	CHECK_INT_EQ(store_read_message(plain, path, big_len, &data, &len), -1);
	CHECK_INT_EQ(errno, EFBIG);
	free(path);
	free(name);
	CHECK_INT_EQ(deliver_str(plain, "carol", NULL, "small plain", &name), 0);
	path = mf_asprintf("example.com/carol/Maildir/new/%s", name);
	CHECK_INT_EQ(store_read_message(lz, path, 1000, &data, &len), 0);
	CHECK_INT_EQ(len, 31);
	free(data);
	free(path);
	free(name);
	/* S= is the uncompressed size */
	CHECK_INT_EQ(store_user_usage(plain, "example.com", "carol", &bytes, &msgs), 0);
	CHECK_INT_EQ(bytes, big_len + 20 + 31);
	CHECK_INT_EQ(msgs, 2);
	/* a truncated frame is an error, not a short message */
	CHECK_INT_EQ(deliver_str(lz, "carol", NULL, big, &name), 0);
	path = mf_asprintf("example.com/carol/Maildir/new/%s", name);
	CHECK_INT_EQ(io_read_file(raw_io, path, 10000000, &raw, &raw_len), 0);
	CHECK_INT_EQ(io_open(raw_io, path, IO_O_WRONLY | IO_O_TRUNC, 0, &f), 0);
	CHECK_INT_EQ(io_write_all(f, raw, raw_len / 2), 0);
	io_close(&f);
	errno = 0;
	CHECK_INT_EQ(store_read_message(plain, path, 10000000, &data, &len), -1);
	CHECK_INT_EQ(errno, EBADMSG);
	free(raw);
	free(path);
	free(name);
	free(big);
	store_free(&lz);
	store_free(&plain);
	io_free(&raw_io);
	rm_rf(root);
	free(root);
}

/* Another store (another node) delivers; the cached usage must notice. */
static void test_usage_cache(void)
{
	char *root = tmp_root();
	struct mf_io *io1, *io2;
	const char *error;
	uint64_t bytes, msgs;

	CHECK_INT_EQ(io_posix_new(root, &io1, &error), 0);
	CHECK_INT_EQ(io_posix_new(root, &io2, &error), 0);
	struct store *a = new_store(io1, false), *b = new_store(io2, false);
	CHECK_INT_EQ(deliver_str(a, "dave", NULL, "one", NULL), 0);
	CHECK_INT_EQ(store_user_usage(b, "example.com", "dave", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 1);
	for (int i = 0; i < 3; i++) {
		CHECK_INT_EQ(deliver_str(a, "dave", NULL, "two", NULL), 0);
		CHECK_INT_EQ(store_user_usage(b, "example.com", "dave", &bytes, &msgs), 0);
		CHECK_INT_EQ(msgs, 2 + i);
		CHECK_INT_EQ(bytes, 23 * (2 + i));
	}
	/* old, quiet directories are trusted and still right */
	CHECK_INT_EQ(io_utimes(io1, "example.com/dave/Maildir/new", 1000000000, 1000000000), 0);
	CHECK_INT_EQ(io_utimes(io1, "example.com/dave/Maildir/cur", 1000000000, 1000000000), 0);
	CHECK_INT_EQ(io_utimes(io1, "example.com/dave/Maildir", 1000000000, 1000000000), 0);
	CHECK_INT_EQ(store_user_usage(b, "example.com", "dave", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 4);
	CHECK_INT_EQ(store_user_usage(b, "example.com", "dave", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 4);
	CHECK_INT_EQ(deliver_str(a, "dave", NULL, "three", NULL), 0);
	CHECK_INT_EQ(store_user_usage(b, "example.com", "dave", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 5);
	/* a message moved to cur/ with flags keeps counting once */
	CHECK_INT_EQ(store_folder_create(a, "example.com", "dave", "Old"), 0);
	CHECK_INT_EQ(io_rename(io1, "example.com/dave/Maildir", "example.com/dave/Maildir.tmp"), 0);
	CHECK_INT_EQ(io_rename(io1, "example.com/dave/Maildir.tmp", "example.com/dave/Maildir"), 0);
	CHECK_INT_EQ(store_user_usage(b, "example.com", "dave", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 5);
	store_free(&a);
	store_free(&b);
	rm_rf(root);
	free(root);
}

/* Two changes within one timestamp granule leave a directory's mtime as it
 * was; a directory changed within the last seconds (by the NAS's clock, here
 * an hour behind ours) is therefore never trusted from the cache. */
static void test_usage_same_granule_skew(void)
{
	struct mf_io *io = io_mem_new();
	struct store *store = new_store(io, false);
	struct io_stat st;
	uint64_t bytes, msgs;

	io_mem_set_clock_offset(io, -3600);
	CHECK_INT_EQ(deliver_str(store, "lee", NULL, "one", NULL), 0);
	CHECK_INT_EQ(io_stat(io, "example.com/lee/Maildir/new", &st), 0);
	CHECK_INT_EQ(io_utimes(io, "example.com/lee/Maildir/new", st.mtime_sec, st.mtime_sec), 0);
	CHECK_INT_EQ(store_user_usage(store, "example.com", "lee", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 1);
	CHECK_INT_EQ(deliver_str(store, "lee", NULL, "two", NULL), 0);
	/* coarse timestamps: the second delivery did not move the mtime */
	CHECK_INT_EQ(io_utimes(io, "example.com/lee/Maildir/new", st.mtime_sec, st.mtime_sec), 0);
	CHECK_INT_EQ(store_user_usage(store, "example.com", "lee", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 2);
	CHECK_INT_EQ(bytes, 46);
	store_free(&store);
}

/* The quick path: reused within max_age_ms plus our own deliveries; may
 * miss another node's deliveries for at most that long. */
static void test_usage_recent(void)
{
	char *root = tmp_root();
	struct mf_io *io1, *io2;
	const char *error;
	uint64_t bytes, msgs;

	CHECK_INT_EQ(io_posix_new(root, &io1, &error), 0);
	CHECK_INT_EQ(io_posix_new(root, &io2, &error), 0);
	struct store *a = new_store(io1, false), *b = new_store(io2, false);
	CHECK_INT_EQ(store_user_usage_recent(a, "example.com", "mia", 60000, &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 0);
	CHECK_INT_EQ(deliver_str(a, "mia", NULL, "one", NULL), 0);
	CHECK_INT_EQ(store_user_usage_recent(a, "example.com", "mia", 60000, &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 1);
	CHECK_INT_EQ(deliver_str(a, "mia", NULL, "two", NULL), 0);   /* counted locally */
	CHECK_INT_EQ(deliver_str(b, "mia", NULL, "other", NULL), 0); /* another node */
	CHECK_INT_EQ(store_user_usage_recent(a, "example.com", "mia", 60000, &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 2);
	CHECK_INT_EQ(bytes, 46);
	/* max_age 0, or the exact call, asks the NAS */
	CHECK_INT_EQ(store_user_usage_recent(a, "example.com", "mia", 0, &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 3);
	CHECK_INT_EQ(bytes, 71);
	CHECK_INT_EQ(deliver_str(b, "mia", NULL, "other", NULL), 0);
	usleep(120 * 1000);
	CHECK_INT_EQ(store_user_usage_recent(a, "example.com", "mia", 100, &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 4);
	store_free(&a);
	store_free(&b);
	rm_rf(root);
	free(root);
}

#define PROCS 4
#define PER_PROC 50

/* Several processes deliver at once; usage equals the truth on disk. */
static void test_usage_processes(void)
{
	char *root = tmp_root();
	struct mf_io *io;
	const char *error;
	uint64_t bytes, msgs, dom;
	pid_t pids[PROCS];

	CHECK_INT_EQ(io_posix_new(root, &io, &error), 0);
	struct store *watcher = new_store(io, false);
	for (int p = 0; p < PROCS; p++) {
		pids[p] = fork();
		if (pids[p] == 0) {
			struct mf_io *cio;
			int fails = 0;
			if (io_posix_new(root, &cio, &error) < 0)
				_exit(2);
			struct store *s = new_store(cio, p % 2 == 1);
			for (int i = 0; i < PER_PROC; i++)
				fails += deliver_str(s, p < 2 ? "erin" : "frank", NULL, "0123456789", NULL) < 0;
			store_free(&s);
			_exit(fails == 0 ? 0 : 1);
		}
	}
	/* query while they run: never more than the final truth */
	for (int i = 0; i < 20; i++) {
		CHECK_INT_EQ(store_user_usage(watcher, "example.com", "erin", &bytes, &msgs), 0);
		CHECK(msgs <= 2 * PER_PROC);
		CHECK_INT_EQ(bytes, msgs * 30);
	}
	for (int p = 0; p < PROCS; p++) {
		int status = -1;
		waitpid(pids[p], &status, 0);
		CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	CHECK_INT_EQ(store_user_usage(watcher, "example.com", "erin", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 2 * PER_PROC);
	CHECK_INT_EQ(bytes, 2 * PER_PROC * 30);
	CHECK_INT_EQ(count_dir(io, "example.com/erin/Maildir/new"), 2 * PER_PROC);
	CHECK_INT_EQ(count_dir(io, "example.com/frank/Maildir/tmp"), 0);
	usleep(2100 * 1000); /* the domain total may be cached for up to 2 s */
	CHECK_INT_EQ(store_domain_usage(watcher, "example.com", &dom), 0);
	CHECK_INT_EQ(dom, PROCS * PER_PROC * 30);
	store_free(&watcher);
	rm_rf(root);
	free(root);
}

struct fault_case {
	enum io_op op;
	unsigned nth;
	int err;
};

static void check_fault(const struct fault_case *fc, bool lz4)
{
	struct mf_io *mem = io_mem_new(), *io = io_fault_new(mem);
	struct store *store = new_store(io, lz4);
	char *name = NULL;
	uint64_t bytes, msgs;

	/* the Maildir exists already, so faults hit the delivery itself */
	CHECK_INT_EQ(deliver_str(store, "gina", NULL, "first", NULL), 0);
	io_fault_set(io, fc->op, fc->nth, fc->err, 0);
	errno = 0;
	int ret = deliver_str(store, "gina", NULL, "second message", &name);
	CHECK_INT_EQ(ret, -1);
	if (ret == 0)
		fprintf(stderr, "  fault op=%d nth=%u err=%d did not fail\n", fc->op, fc->nth, fc->err);
	CHECK_INT_EQ(errno, fc->err);
	CHECK(name == NULL);
	CHECK_INT_EQ(count_dir(mem, "example.com/gina/Maildir/new"), 1);
	CHECK_INT_EQ(count_dir(mem, "example.com/gina/Maildir/cur"), 0);
	CHECK_INT_EQ(count_dir(mem, "example.com/gina/Maildir/tmp"), 0);
	io_fault_set(io, fc->op, 0, 0, 0);
	CHECK_INT_EQ(deliver_str(store, "gina", NULL, "third", NULL), 0);
	CHECK_INT_EQ(count_dir(mem, "example.com/gina/Maildir/new"), 2);
	CHECK_INT_EQ(store_user_usage(store, "example.com", "gina", &bytes, &msgs), 0);
	CHECK_INT_EQ(msgs, 2);
	CHECK_INT_EQ(bytes, 25 + 25);
	free(name);
	store_free(&store);
}

static void test_deliver_faults(void)
{
	static const int errs[] = { EIO, ENOSPC, EDQUOT };
	static const enum io_op ops[] = { IO_OP_WRITE, IO_OP_FSYNC, IO_OP_RENAME, IO_OP_CLOSE };

	for (size_t e = 0; e < MF_N_ELEMENTS(errs); e++) {
		for (size_t o = 0; o < MF_N_ELEMENTS(ops); o++) {
			struct fault_case fc = { ops[o], 1, errs[e] };
			check_fault(&fc, false);
			check_fault(&fc, true);
		}
	}
	/* the second fsync is the one of new/ after the rename */
	struct fault_case dirsync = { IO_OP_FSYNC, 2, EIO };
	check_fault(&dirsync, false);
	struct fault_case open_fail = { IO_OP_OPEN, 1, EACCES };
	check_fault(&open_fail, false);
}

/* ESTALE once is retried and the delivery succeeds; twice in a row fails. */
static void test_deliver_estale(void)
{
	static const enum io_op ops[] = { IO_OP_OPEN, IO_OP_WRITE, IO_OP_FSYNC, IO_OP_RENAME, IO_OP_CLOSE };

	for (size_t o = 0; o < MF_N_ELEMENTS(ops); o++) {
		struct mf_io *mem = io_mem_new(), *io = io_fault_new(mem);
		struct store *store = new_store(io, false);
		CHECK_INT_EQ(deliver_str(store, "hank", NULL, "first", NULL), 0);
		io_fault_set(io, ops[o], 1, ESTALE, 0);
		CHECK_INT_EQ(deliver_str(store, "hank", NULL, "second", NULL), 0);
		CHECK_INT_EQ(count_dir(mem, "example.com/hank/Maildir/new"), 2);
		CHECK_INT_EQ(count_dir(mem, "example.com/hank/Maildir/tmp"), 0);
		store_free(&store);
	}
}

/* The NFS rename trap: the server did the rename but the reply was lost and
 * the retransmission reports ENOENT (or EEXIST): the delivery succeeded. */
static void test_rename_trap(void)
{
	static const int errs[] = { ENOENT, EEXIST };

	for (size_t i = 0; i < MF_N_ELEMENTS(errs); i++) {
		struct mf_io *mem = io_mem_new(), *io = io_fault_new(mem);
		struct store *store = new_store(io, false);
		char *name = NULL;
		CHECK_INT_EQ(deliver_str(store, "ivan", NULL, "first", NULL), 0);
		io_fault_set_after(io, IO_OP_RENAME, 1, errs[i]);
		CHECK_INT_EQ(deliver_str(store, "ivan", NULL, "second", &name), 0);
		CHECK_INT_EQ(count_dir(mem, "example.com/ivan/Maildir/new"), 2);
		CHECK_INT_EQ(count_dir(mem, "example.com/ivan/Maildir/tmp"), 0);
		CHECK_INT_EQ(io_fault_calls(io, IO_OP_RENAME), 2);
		free(name);
		/* a rename that really failed with EEXIST: retried with a new name */
		io_fault_set(io, IO_OP_RENAME, 1, EEXIST, 0);
		CHECK_INT_EQ(deliver_str(store, "ivan", NULL, "third", NULL), 0);
		CHECK_INT_EQ(count_dir(mem, "example.com/ivan/Maildir/new"), 3);
		CHECK_INT_EQ(count_dir(mem, "example.com/ivan/Maildir/tmp"), 0);
		/* ENOENT for real (tmp file gone): not reported as success */
		io_fault_set(io, IO_OP_RENAME, 1, ENOENT, 0);
		io_fault_set(io, IO_OP_OPEN, 2, ENOENT, 0);
		errno = 0;
		CHECK_INT_EQ(deliver_str(store, "ivan", NULL, "fourth", NULL), -1);
		CHECK_INT_EQ(errno, ENOENT);
		CHECK_INT_EQ(count_dir(mem, "example.com/ivan/Maildir/new"), 3);
		CHECK_INT_EQ(count_dir(mem, "example.com/ivan/Maildir/tmp"), 0);
		store_free(&store);
	}
}

/* fsync off (never in production) makes no fsync calls at all; a fault
 * spec with a stall delays the failing call. Host names are escaped. */
static void test_fsync_off_and_stall(void)
{
	struct mf_io *io = io_fault_new(io_mem_new());
	struct store_settings set;
	struct store *store;
	const char *error;

	store_settings_defaults(&set);
	CHECK(set.fsync);
	CHECK_INT_EQ(set.lock_timeout_secs, 120);
	set.fsync = false;
	set.hostname = "n:3/x";
	CHECK_INT_EQ(store_new(io, &set, &store, &error), 0);
	char *name = NULL;
	CHECK_INT_EQ(deliver_str(store, "kim", NULL, "a", &name), 0);
	CHECK(name != NULL && strstr(name, ".n\\0723\\057x,S=21") != NULL);
	free(name);
	CHECK_INT_EQ(io_fault_calls(io, IO_OP_FSYNC), 0);
	CHECK_INT_EQ(io_fault_parse(io, "write:1:EIO:200", &error), 0);
	uint64_t start = mf_now_ms();
	errno = 0;
	CHECK_INT_EQ(deliver_str(store, "kim", NULL, "b", NULL), -1);
	CHECK_INT_EQ(errno, EIO);
	CHECK(mf_now_ms() - start >= 190);
	store_free(&store);
}

int main(void)
{
	test_run(test_names);
	test_run(test_unique_names);
	test_run(test_deliver_mem);
	test_run(test_deliver_posix);
	test_run(test_deliver_lz4);
	test_run(test_usage_cache);
	test_run(test_usage_same_granule_skew);
	test_run(test_usage_recent);
	test_run(test_usage_processes);
	test_run(test_deliver_faults);
	test_run(test_deliver_estale);
	test_run(test_rename_trap);
	test_run(test_fsync_off_and_stall);
	return test_exit();
}
