/* test-pop3-mailbox.c: the NAS lock files (store/store-lock.c), uidlist
 * extension fields (store/uidlist-ext.c) and the POP3 maildrop
 * (pop3d/pop3-mailbox.c) on a POSIX store in a temp dir: exclusive locks,
 * refresh, stale locks broken by their age, a taken-over lock never removed
 * by its old holder; locks linked to a reused token file (a lost LINK
 * reply, a store without hard links, dead processes' tokens swept, the
 * token's mtime kept fresh); W/P fields set under the uidlist lock; [IN-USE] for a
 * second open, sizes cached, DELE + commit removes files, close removes
 * nothing; and an I/O fault while committing. */
#include "pop3d/pop3-mailbox.h"
#include "store/store-lock.h"
#include "store/uidlist-ext.h"
#include "tests/unit/test.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

static char root[4096];

static struct store *new_store_io(bool fault)
{
	struct mf_io *io;
	struct store *store;
	struct store_settings set;
	const char *error;

	if (io_posix_new(root, &io, &error) < 0) {
		fprintf(stderr, "io_posix_new: %s\n", error);
		exit(1);
	}
	if (fault)
		io = io_fault_new(io);
	store_settings_defaults(&set);
	set.hostname = "unit";
	set.fsync = false;
	if (store_new(io, &set, &store, &error) < 0) {
		fprintf(stderr, "store_new: %s\n", error);
		exit(1);
	}
	return store;
}

static struct store *new_store(void)
{
	return new_store_io(false);
}

static void write_file(const char *rel, const char *text)
{
	char path[8192];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	FILE *f = fopen(path, "w");
	if (f == NULL) {
		perror(path);
		exit(1);
	}
	fputs(text, f);
	fclose(f);
}

static void unlink_file(const char *rel)
{
	char path[8192];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	if (unlink(path) < 0) {
		perror(path);
		exit(1);
	}
}

static int mkdir_rel(const char *rel)
{
	char path[8192];

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	return mkdir(path, 0700) < 0 && errno != EEXIST ? -1 : 0;
}

static bool exists(const char *rel)
{
	char path[8192];
	struct stat st;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	return stat(path, &st) == 0;
}

static void test_lock_exclusive_and_refresh(void)
{
	struct store *store = new_store();
	struct store_lock *a = NULL, *b = NULL;
	int64_t age = -1;

	CHECK_INT_EQ(io_mkdir_parents(store_io(store), "locks", 0700), 0);
	CHECK_INT_EQ(store_lock_try(store, "locks/x.lock", 60, &a, NULL), 0);
	CHECK_INT_EQ(store_lock_try(store, "locks/x.lock", 60, &b, &age), -1);
	CHECK_INT_EQ(errno, EEXIST);
	CHECK(b == NULL && age >= 0 && age < 60);
	CHECK_INT_EQ(store_lock_is_ours(a), 1);
	CHECK_INT_EQ(store_lock_refresh(a), 0);
	store_lock_release(&a);
	CHECK(a == NULL && !exists("locks/x.lock"));
	CHECK_INT_EQ(store_lock_take(store, "locks/x.lock", 60, 1000, &b), 0);
	store_lock_release(&b);
	store_free(&store);
}

static void test_lock_stale_is_broken(void)
{
	struct store *store = new_store();
	struct store_lock *old = NULL, *fresh = NULL;
	time_t long_ago = time(NULL) - 1000;

	CHECK_INT_EQ(io_mkdir_parents(store_io(store), "locks", 0700), 0);
	CHECK_INT_EQ(store_lock_try(store, "locks/s.lock", 60, &old, NULL), 0);
	CHECK_INT_EQ(io_utimes(store_io(store), "locks/s.lock", long_ago, long_ago), 0);
	CHECK_INT_EQ(store_lock_try(store, "locks/s.lock", 60, &fresh, NULL), 0);
	/* the old holder learns it lost the lock and never removes the new one */
	CHECK_INT_EQ(store_lock_is_ours(old), 0);
	CHECK_INT_EQ(store_lock_refresh(old), -1);
	CHECK_INT_EQ(errno, EPERM);
	store_lock_release(&old);
	CHECK(exists("locks/s.lock"));
	CHECK_INT_EQ(store_lock_is_ours(fresh), 1);
	store_lock_release(&fresh);
	CHECK(!exists("locks/s.lock"));
	store_free(&store);
}

/* Files in the token directory, and the one token's path. */
static unsigned tokens_count(char *one, size_t size)
{
	char path[8192];
	unsigned n = 0;

	snprintf(path, sizeof(path), "%s/.mailfleet-lock-tokens", root);
	DIR *dir = opendir(path);
	if (dir == NULL)
		return 0;
	for (struct dirent *d; (d = readdir(dir)) != NULL;) {
		if (d->d_name[0] == '.')
			continue;
		n++;
		snprintf(one, size, ".mailfleet-lock-tokens/%s", d->d_name);
	}
	closedir(dir);
	return n;
}

static void test_lock_tokens_reused(void)
{
	struct store *store = new_store();
	struct store_lock *a = NULL;
	char token[1024] = "", path[8192];
	struct stat lock_st, token_st;

	CHECK_INT_EQ(io_mkdir_parents(store_io(store), "locks", 0700), 0);
	for (int i = 0; i < 100; i++) {
		CHECK_INT_EQ(store_lock_try(store, "locks/t.lock", 60, &a, NULL), 0);
		store_lock_release(&a);
	}
	CHECK(!exists("locks/t.lock"));
	/* one token, linked as the lock each time: no file made per lock */
	CHECK_INT_EQ(tokens_count(token, sizeof(token)), 1);
	CHECK_INT_EQ(store_lock_try(store, "locks/t.lock", 60, &a, NULL), 0);
	snprintf(path, sizeof(path), "%s/locks/t.lock", root);
	CHECK_INT_EQ(stat(path, &lock_st), 0);
	snprintf(path, sizeof(path), "%s/%s", root, token);
	CHECK_INT_EQ(stat(path, &token_st), 0);
	CHECK(lock_st.st_ino == token_st.st_ino && lock_st.st_nlink == 2);
	CHECK(time(NULL) - lock_st.st_mtime < 5);
	store_lock_release(&a);
	store_free(&store);
	/* the store removes its tokens when it goes */
	CHECK_INT_EQ(tokens_count(token, sizeof(token)), 0);
}

static void test_lock_link_reply_lost(void)
{
	struct store *store = new_store_io(true);
	struct store_lock *a = NULL, *b = NULL;

	CHECK_INT_EQ(io_mkdir_parents(store_io(store), "locks", 0700), 0);
	/* the LINK was carried out, its retransmission answered EEXIST */
	io_fault_set_after(store_io(store), IO_OP_LINK, 1, EEXIST);
	CHECK_INT_EQ(store_lock_try(store, "locks/r.lock", 60, &a, NULL), 0);
	CHECK_INT_EQ(store_lock_is_ours(a), 1);
	CHECK_INT_EQ(store_lock_try(store, "locks/r.lock", 60, &b, NULL), -1);
	CHECK_INT_EQ(errno, EEXIST);
	store_lock_release(&a);
	CHECK(!exists("locks/r.lock"));
	store_free(&store);
}

static void test_lock_without_hard_links(void)
{
	struct store *store = new_store_io(true);
	struct store_lock *a = NULL, *b = NULL;
	char path[8192];
	struct stat st;

	CHECK_INT_EQ(io_mkdir_parents(store_io(store), "locks", 0700), 0);
	io_fault_set(store_io(store), IO_OP_LINK, 1, EPERM, 0);
	CHECK_INT_EQ(store_lock_try(store, "locks/n.lock", 60, &a, NULL), 0);
	snprintf(path, sizeof(path), "%s/locks/n.lock", root);
	CHECK_INT_EQ(stat(path, &st), 0);
	CHECK_INT_EQ(st.st_nlink, 1);   /* a file of its own, holding our text */
	CHECK_INT_EQ(store_lock_is_ours(a), 1);
	CHECK_INT_EQ(store_lock_try(store, "locks/n.lock", 60, &b, NULL), -1);
	CHECK_INT_EQ(errno, EEXIST);
	store_lock_release(&a);
	CHECK(!exists("locks/n.lock"));
	/* and so are later locks: the store has been found to lack links */
	CHECK_INT_EQ(store_lock_try(store, "locks/n.lock", 60, &a, NULL), 0);
	CHECK_INT_EQ(stat(path, &st), 0);
	CHECK_INT_EQ(st.st_nlink, 1);
	store_lock_release(&a);
	store_free(&store);
}

static void test_lock_tokens_of_dead_processes_swept(void)
{
	static const char *const names[] = { "unit.999999.aa", "unit.1.bb", "other.999999.cc" };
	struct store *store;
	struct store_lock *a = NULL;

	CHECK(kill(999999, 0) < 0 && errno == ESRCH);
	CHECK_INT_EQ(mkdir_rel(".mailfleet-lock-tokens"), 0);
	for (size_t i = 0; i < 3; i++) {
		char rel[256];
		snprintf(rel, sizeof(rel), ".mailfleet-lock-tokens/%s", names[i]);
		write_file(rel, "x\n");
	}
	store = new_store();
	CHECK_INT_EQ(io_mkdir_parents(store_io(store), "locks", 0700), 0);
	CHECK_INT_EQ(store_lock_try(store, "locks/w.lock", 60, &a, NULL), 0);
	store_lock_release(&a);
	CHECK(!exists(".mailfleet-lock-tokens/unit.999999.aa"));   /* this host, dead */
	CHECK(exists(".mailfleet-lock-tokens/unit.1.bb"));         /* alive */
	CHECK(exists(".mailfleet-lock-tokens/other.999999.cc"));   /* another host's */
	store_free(&store);
	unlink_file(".mailfleet-lock-tokens/unit.1.bb");
	unlink_file(".mailfleet-lock-tokens/other.999999.cc");
}

static void test_lock_token_mtime_fresh(void)
{
	struct store *store = new_store();
	struct store_lock *a = NULL;
	char token[1024] = "", path[8192];
	time_t long_ago = time(NULL) - 1000;
	struct stat st;

	CHECK_INT_EQ(io_mkdir_parents(store_io(store), "locks", 0700), 0);
	CHECK_INT_EQ(store_lock_try(store, "locks/m.lock", 8, &a, NULL), 0);
	store_lock_release(&a);
	CHECK_INT_EQ(tokens_count(token, sizeof(token)), 1);
	CHECK_INT_EQ(io_utimes(store_io(store), token, long_ago, long_ago), 0);
	usleep(1100 * 1000);   /* over an eighth of the timeout */
	CHECK_INT_EQ(store_lock_try(store, "locks/m.lock", 8, &a, NULL), 0);
	snprintf(path, sizeof(path), "%s/locks/m.lock", root);
	CHECK_INT_EQ(stat(path, &st), 0);
	CHECK(time(NULL) - st.st_mtime < 5);   /* not taken for a stale lock */
	store_lock_release(&a);
	store_free(&store);
}

static void make_mailbox(struct store *store, const char *user, unsigned count)
{
	char rel[512], text[256];

	CHECK_INT_EQ(store_folder_create(store, "ex.test", user, NULL), 0);
	for (unsigned i = 0; i < count; i++) {
		snprintf(text, sizeof(text), "Subject: %u\n\n.body %u\n", i, i);
		snprintf(rel, sizeof(rel), "ex.test/%s/Maildir/new/17000000%02u.M1P1.unit,S=%zu",
			 user, i, strlen(text));
		write_file(rel, text);
	}
}

static void test_uidlist_ext(void)
{
	struct store *store = new_store();
	struct uidlist *ul = NULL;
	const char *error, *v;
	size_t len;
	struct uidlist_ext_update up[] = {
		{ 1, 'W', "123" }, { 2, 'P', "kept-uidl" }, { 99, 'W', "1" }, { 1, 'w', "bad key" },
	};

	make_mailbox(store, "ext", 2);
	CHECK_INT_EQ(uidlist_sync_mailbox(store, "ex.test", "ext", NULL, NULL, &error), 0);
	CHECK_INT_EQ(uidlist_ext_set(store, "ex.test/ext/Maildir", up, 4, &error), 0);
	CHECK_INT_EQ(uidlist_ext_set(store, "ex.test/ext/Maildir", up, 1, &error), 0); /* again */
	struct uidlist_ext_update w2 = { 1, 'W', "456" };
	CHECK_INT_EQ(uidlist_ext_set(store, "ex.test/ext/Maildir", &w2, 1, &error), 0);
	CHECK_INT_EQ(uidlist_sync_mailbox(store, "ex.test", "ext", NULL, &ul, &error), 0);
	CHECK(ul != NULL && ul->count == 2);
	if (ul != NULL && ul->count == 2) {
		CHECK(uidlist_ext_get(&ul->recs[0], 'W', &v, &len) && len == 3 && memcmp(v, "456", 3) == 0);
		CHECK_STR_EQ(ul->recs[0].ext, "W456");
		CHECK(uidlist_ext_get(&ul->recs[1], 'P', &v, &len) && len == 9);
		CHECK(!uidlist_ext_get(&ul->recs[1], 'W', &v, &len));
	}
	uidlist_free(&ul);
	store_free(&store);
}

static const struct pop3_mailbox_settings mset = {
	.uidl_format = POP3_UIDL_FORMAT_DEFAULT, .lock_timeout_secs = 60,
	.message_size_max = 1024 * 1024,
};

static void test_maildrop(void)
{
	struct store *store = new_store();
	struct pop3_mailbox *mbox = NULL, *second = NULL;
	const char *error;
	unsigned char *data;
	size_t len;
	unsigned removed;
	char uidl[40];

	make_mailbox(store, "drop", 3);
	CHECK_INT_EQ(pop3_mailbox_open(store, "ex.test", "drop", &mset, &mbox, &error), POP3_OPEN_OK);
	CHECK_INT_EQ(pop3_mailbox_open(store, "ex.test", "drop", &mset, &second, &error), POP3_OPEN_IN_USE);
	CHECK(second == NULL);
	CHECK(exists("ex.test/drop/Maildir/" POP3_LOCK_FILE_NAME));
	CHECK_INT_EQ(mbox->count, 3);
	CHECK_INT_EQ(mbox->sizes_computed, 3);
	snprintf(uidl, sizeof(uidl), "%08x%08x", 2, mbox->uid_validity);
	CHECK_STR_EQ(mbox->msgs[1].uidl, uidl);
	/* "Subject: 1\n\n.body 1\n": 20 bytes, 3 LF */
	CHECK_INT_EQ(mbox->msgs[1].size, 23);
	CHECK_INT_EQ(pop3_mailbox_read(mbox, 1, 1024, &data, &len), 0);
	CHECK_INT_EQ(len, 20);
	free(data);
	/* a dropped session: close deletes nothing and frees the lock */
	mbox->msgs[0].deleted = true;
	pop3_mailbox_close(&mbox);
	CHECK(!exists("ex.test/drop/Maildir/" POP3_LOCK_FILE_NAME));
	CHECK_INT_EQ(pop3_mailbox_open(store, "ex.test", "drop", &mset, &mbox, &error), POP3_OPEN_OK);
	CHECK_INT_EQ(mbox->count, 3);
	CHECK_INT_EQ(mbox->sizes_computed, 0);   /* the W cache was used */
	mbox->msgs[0].deleted = mbox->msgs[2].deleted = true;
	CHECK_INT_EQ(pop3_mailbox_commit(mbox, &removed, &error), 0);
	CHECK_INT_EQ(removed, 2);
	pop3_mailbox_close(&mbox);
	CHECK_INT_EQ(pop3_mailbox_open(store, "ex.test", "drop", &mset, &mbox, &error), POP3_OPEN_OK);
	CHECK_INT_EQ(mbox->count, 1);
	CHECK_STR_EQ(mbox->msgs[0].uidl, uidl);
	pop3_mailbox_close(&mbox);
	store_free(&store);
}

static void test_commit_after_lock_lost(void)
{
	struct store *store = new_store();
	struct pop3_mailbox *mbox = NULL;
	const char *error;
	unsigned removed = 99;

	make_mailbox(store, "lost", 2);
	CHECK_INT_EQ(pop3_mailbox_open(store, "ex.test", "lost", &mset, &mbox, &error), POP3_OPEN_OK);
	/* another node broke the lock as stale and holds it now (a lock is
	 * identified by its file, so the old one is removed first) */
	unlink_file("ex.test/lost/Maildir/" POP3_LOCK_FILE_NAME);
	write_file("ex.test/lost/Maildir/" POP3_LOCK_FILE_NAME, "othernode 1 1 1\n");
	mbox->msgs[0].deleted = true;
	CHECK_INT_EQ(pop3_mailbox_refresh_lock(mbox), -1);
	CHECK_INT_EQ(pop3_mailbox_commit(mbox, &removed, &error), -1);
	CHECK_INT_EQ(removed, 0);
	pop3_mailbox_close(&mbox);
	CHECK(exists("ex.test/lost/Maildir/" POP3_LOCK_FILE_NAME));   /* not ours: kept */
	CHECK_INT_EQ(pop3_mailbox_open(store, "ex.test", "lost", &mset, &mbox, &error), POP3_OPEN_IN_USE);
	store_free(&store);
}

static void test_commit_unlink_fails(void)
{
	struct store *store = new_store_io(true);
	struct pop3_mailbox *mbox = NULL;
	const char *error = NULL;
	unsigned removed = 99;

	make_mailbox(store, "fault", 2);
	CHECK_INT_EQ(pop3_mailbox_open(store, "ex.test", "fault", &mset, &mbox, &error), POP3_OPEN_OK);
	mbox->msgs[0].deleted = mbox->msgs[1].deleted = true;
	io_fault_set(store_io(store), IO_OP_UNLINK, 1, EIO, 0);
	CHECK_INT_EQ(pop3_mailbox_commit(mbox, &removed, &error), -1);
	CHECK_INT_EQ(removed, 1);
	CHECK(error != NULL && strstr(error, "not removed") != NULL);
	pop3_mailbox_close(&mbox);
	/* the lock is gone, the message whose unlink failed is still there */
	CHECK_INT_EQ(pop3_mailbox_open(store, "ex.test", "fault", &mset, &mbox, &error), POP3_OPEN_OK);
	CHECK_INT_EQ(mbox->count, 1);
	pop3_mailbox_close(&mbox);
	store_free(&store);
}

int main(void)
{
	const char *tmpdir = getenv("TMPDIR");

	snprintf(root, sizeof(root), "%s/mf-pop3-XXXXXX", tmpdir != NULL ? tmpdir : "/tmp");
	if (mkdtemp(root) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_run(test_lock_exclusive_and_refresh);
	test_run(test_lock_stale_is_broken);
	test_run(test_lock_tokens_reused);
	test_run(test_lock_link_reply_lost);
	test_run(test_lock_without_hard_links);
	test_run(test_lock_tokens_of_dead_processes_swept);
	test_run(test_lock_token_mtime_fresh);
	test_run(test_uidlist_ext);
	test_run(test_maildrop);
	test_run(test_commit_after_lock_lost);
	test_run(test_commit_unlink_fails);
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", root);
	return test_exit();
}
