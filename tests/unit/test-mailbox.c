/* test-mailbox.c: store/mailbox*.c on the in-memory backend: sync from the
 * uidlist, flags and keywords in file names (also against a concurrent
 * change by another view), append with flags and date, copy, expunge,
 * folders, subscriptions and the first-login folders; snapshots of synced
 * mailboxes (settled ones reused without a rescan, unsettled ones not,
 * sessions asking together sharing one rescan). */
#include "tests/unit/test.h"
#include "store/mailbox-private.h"
#include "store/mailbox-index.h"
#include "store/maildir.h"

#include <errno.h>
#include <pthread.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

#define DOM "example.test"
#define USR "u"

static struct store *new_store(void)
{
	struct store_settings set;
	struct store *store;
	const char *error;

	store_settings_defaults(&set);
	set.hostname = "unit";
	if (store_new(io_mem_new(), &set, &store, &error) < 0) {
		fprintf(stderr, "store_new: %s\n", error);
		exit(1);
	}
	return store;
}

static void deliver(struct store *store, const char *folder, const char *text)
{
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	char *base;
	const char *error;

	CHECK(store_deliver(store, DOM, USR, folder, &iov, 1, strlen(text), &base, &error) == 0);
	free(base);
}

static struct mailbox *open_box(struct store *store, const char *name, bool ro)
{
	struct mailbox *box = NULL;
	const char *error;

	CHECK(mailbox_open(store, DOM, USR, name, ro, &box, &error) == 0);
	return box;
}

static void test_empty_and_sync(void)
{
	struct store *store = new_store();
	struct mailbox *box = open_box(store, "INBOX", false);
	const char *error;

	CHECK_INT_EQ(box->count, 0);
	CHECK(box->uid_validity != 0);
	CHECK_INT_EQ(box->uid_next, 1);
	deliver(store, NULL, "Subject: one\n\nline1\nline2\n");
	deliver(store, NULL, "Subject: two\n\nx\n");
	CHECK(mailbox_sync(box, &error) == 0);
	CHECK_INT_EQ(box->count, 2);
	CHECK_INT_EQ(box->msgs[0].uid, 1);
	CHECK_INT_EQ(box->msgs[1].uid, 2);
	CHECK_INT_EQ(box->msgs[0].size, 26);
	CHECK_INT_EQ(box->msgs[0].vsize, 26 + 4);
	/* read-write: moved from new/ to cur/, recent for this view */
	CHECK(!box->msgs[0].in_new && box->msgs[0].recent);
	CHECK(strstr(box->msgs[0].filename, ":2,") != NULL);
	CHECK(box->msgs[0].internal_date > 1700000000);
	mailbox_free(&box);
	CHECK(box == NULL);
	/* a second view: same UIDs, no longer in new/ */
	box = open_box(store, "INBOX", true);
	CHECK_INT_EQ(box->count, 2);
	CHECK(!box->msgs[1].recent);
	mailbox_free(&box);
	store_free(&store);
}

static void test_flags_and_keywords(void)
{
	struct store *store = new_store();
	struct mailbox *a, *b;
	const char *error;

	deliver(store, NULL, "Subject: f\n\nbody\n");
	a = open_box(store, "INBOX", false);
	b = open_box(store, "INBOX", false);
	int kw = mailbox_keyword_index(a, "$Label1", true);
	CHECK_INT_EQ(kw, 0);
	struct mailbox_flag_change seen = { .add = MAILBOX_FLAG_SEEN, .kw_add = 1u << kw };
	CHECK(mailbox_change_flags(a, 0, &seen, &error) == 0);
	CHECK(strstr(a->msgs[0].filename, ":2,Sa") != NULL);
	/* b's view is stale: its change must keep a's */
	struct mailbox_flag_change flagged = { .add = MAILBOX_FLAG_FLAGGED };
	CHECK(mailbox_change_flags(b, 0, &flagged, &error) == 0);
	CHECK_INT_EQ(b->msgs[0].flags, MAILBOX_FLAG_FLAGGED | MAILBOX_FLAG_SEEN);
	CHECK(mailbox_sync(a, &error) == 0);
	CHECK_INT_EQ(a->msgs[0].flags, MAILBOX_FLAG_FLAGGED | MAILBOX_FLAG_SEEN);
	CHECK_INT_EQ(a->msgs[0].keywords, 1);
	CHECK_STR_EQ(a->keywords[0], "$Label1");
	struct mailbox_flag_change unseen = { .remove = MAILBOX_FLAG_SEEN, .kw_remove = 1 };
	CHECK(mailbox_change_flags(a, 0, &unseen, &error) == 0);
	CHECK(strstr(a->msgs[0].filename, ":2,F") != NULL);
	CHECK(strchr(strstr(a->msgs[0].filename, ":2,"), 'S') == NULL);
	/* a third view reads the keyword names from the file */
	mailbox_free(&b);
	b = open_box(store, "INBOX", true);
	CHECK_STR_EQ(b->keywords[0], "$Label1");
	CHECK_INT_EQ(mailbox_keyword_index(b, "$label1", false), 0);
	CHECK_INT_EQ(mailbox_keyword_index(b, "$Other", false), -1);
	mailbox_free(&a);
	mailbox_free(&b);
	store_free(&store);
}

static void test_append_copy_expunge(void)
{
	struct store *store = new_store();
	const char *kws[] = { "$Junk" };
	uint32_t validity, uid, uids[2], dvalidity;
	const char *error;
	unsigned char *data;
	size_t len;

	CHECK(store_folder_create(store, DOM, USR, NULL) == 0);
	CHECK(mailbox_append(store, DOM, USR, "INBOX", "Subject: a\r\n\r\nx\r\n", 17,
			     MAILBOX_FLAG_SEEN, kws, 1, 1600000000, &validity, &uid, &error) == 0);
	CHECK_INT_EQ(uid, 1);
	CHECK(mailbox_append(store, DOM, USR, "INBOX", "Subject: b\n\ny\n", 14, 0, NULL, 0, 0,
			     &validity, &uid, &error) == 0);
	CHECK_INT_EQ(uid, 2);
	errno = 0;
	CHECK(mailbox_append(store, DOM, USR, "Nope", "x", 1, 0, NULL, 0, 0, &validity, &uid, &error) < 0);
	CHECK_INT_EQ(errno, ENOENT);

	struct mailbox *box = open_box(store, "INBOX", false);
	CHECK_INT_EQ(box->count, 2);
	CHECK_INT_EQ(box->uid_validity, validity);
	CHECK_INT_EQ(box->msgs[0].internal_date, 1600000000);
	CHECK_INT_EQ(box->msgs[0].flags, MAILBOX_FLAG_SEEN);
	CHECK_STR_EQ(box->keywords[0], "$Junk");
	CHECK_INT_EQ(box->msgs[0].size, 14);      /* stored with LF */
	CHECK_INT_EQ(box->msgs[0].vsize, 17);     /* served with CRLF */
	CHECK(mailbox_read(box, 0, 1000, &data, &len, &error) == 0);
	CHECK(len == 14 && memcmp(data, "Subject: a\n\nx\n", 14) == 0);
	free(data);

	CHECK(mailbox_create(store, DOM, USR, "Archive", &error) == 0);
	unsigned idx[2] = { 0, 1 };
	CHECK(mailbox_copy(box, idx, 2, "Archive", false, &dvalidity, uids, &error) == 0);
	CHECK_INT_EQ(uids[0], 1);
	CHECK_INT_EQ(uids[1], 2);
	errno = 0;
	CHECK(mailbox_copy(box, idx, 1, "Missing", false, &dvalidity, uids, &error) < 0);
	CHECK_INT_EQ(errno, ENOENT);
	struct mailbox *dest = open_box(store, "Archive", false);
	CHECK_INT_EQ(dest->count, 2);
	CHECK_INT_EQ(dest->uid_validity, dvalidity);
	CHECK_INT_EQ(dest->msgs[0].flags, MAILBOX_FLAG_SEEN);
	CHECK_INT_EQ(dest->msgs[0].vsize, 17);
	CHECK(dest->msgs[0].keywords != 0);
	CHECK_STR_EQ(dest->keywords[__builtin_ctz(dest->msgs[0].keywords)], "$Junk");

	unsigned gone = 0;
	CHECK(mailbox_expunge(box, &gone, 1, false, &error) == 0);
	CHECK_INT_EQ(box->count, 1);
	CHECK_INT_EQ(box->msgs[0].uid, 2);
	/* UIDs are never reused */
	CHECK(mailbox_append(store, DOM, USR, "INBOX", "z\n", 2, 0, NULL, 0, 0, &validity, &uid, &error) == 0);
	CHECK_INT_EQ(uid, 3);
	struct mailbox_status st;
	CHECK(mailbox_status(store, DOM, USR, "INBOX", &st, &error) == 0);
	CHECK_INT_EQ(st.messages, 2);
	CHECK_INT_EQ(st.uid_next, 4);
	CHECK_INT_EQ(st.unseen, 2);
	mailbox_free(&dest);
	mailbox_free(&box);
	store_free(&store);
}

static void test_rename_inbox_and_changed(void)
{
	struct store *store = new_store();
	const char *error;

	deliver(store, NULL, "Subject: 1\n\na\n");
	deliver(store, NULL, "Subject: 2\n\nb\n");
	struct mailbox *box = open_box(store, "INBOX", false);
	CHECK(mailbox_keyword_index(box, "$Work", true) == 0);
	struct mailbox_flag_change ch = { .kw_add = 1 };
	CHECK(mailbox_change_flags(box, 1, &ch, &error) == 0);
	CHECK(mailbox_sync(box, &error) == 0);
	CHECK_INT_EQ(mailbox_changed(box), 0);
	deliver(store, NULL, "Subject: 3\n\nc\n");
	CHECK_INT_EQ(mailbox_changed(box), 1);
	CHECK(mailbox_sync(box, &error) == 0);
	CHECK_INT_EQ(mailbox_changed(box), 0);

	CHECK(mailbox_rename(store, DOM, USR, "INBOX", "Old", &error) == 0);
	CHECK_INT_EQ(mailbox_changed(box), 1);
	CHECK(mailbox_sync(box, &error) == 0);
	CHECK_INT_EQ(box->count, 0);
	struct mailbox *old = open_box(store, "Old", true);
	CHECK_INT_EQ(old->count, 3);
	CHECK_STR_EQ(old->keywords[0], "$Work");
	CHECK_INT_EQ(old->msgs[1].keywords, 1);
	errno = 0;
	CHECK(mailbox_rename(store, DOM, USR, "INBOX", "Old", &error) < 0 && errno == EEXIST);
	mailbox_free(&old);
	mailbox_free(&box);
	store_free(&store);
}

static bool names_equal(char **names, const char *const *want, size_t n)
{
	size_t i = 0;

	for (; names[i] != NULL; i++) {
		if (i >= n || strcmp(names[i], want[i]) != 0)
			return false;
	}
	return i == n;
}

static void test_folders_and_subscriptions(void)
{
	struct store *store = new_store();
	const char *special[] = { "Drafts", "Trash" };
	const char *error;
	char **names;

	CHECK(mailbox_user_init(store, DOM, USR, special, 2, &error) == 0);
	CHECK(mailbox_list_folders(store, DOM, USR, &names, &error) == 0);
	CHECK(names_equal(names, (const char *[]){ "Drafts", "Trash" }, 2));
	mailbox_names_free(&names);
	CHECK(mailbox_subscriptions_get(store, DOM, USR, &names, &error) == 0);
	CHECK(names_equal(names, (const char *[]){ "INBOX", "Drafts", "Trash" }, 3));
	mailbox_names_free(&names);
	/* deleted defaults are not made again on the next login */
	CHECK(mailbox_delete(store, DOM, USR, "Trash", &error) == 0);
	CHECK(mailbox_user_init(store, DOM, USR, special, 2, &error) == 0);
	CHECK(store_folder_exists(store, DOM, USR, "Trash") == 0);

	CHECK(mailbox_create(store, DOM, USR, "a/b", &error) == 0);
	errno = 0;
	CHECK(mailbox_create(store, DOM, USR, "a", &error) < 0 && errno == EEXIST);
	CHECK(mailbox_create(store, DOM, USR, "x.y", &error) < 0);
	CHECK(mailbox_delete(store, DOM, USR, "a", &error) == 0);   /* a/b stays, "a" is \Noselect */
	CHECK(store_folder_exists(store, DOM, USR, "a") == 0);
	errno = 0;
	CHECK(mailbox_delete(store, DOM, USR, "a", &error) < 0 && errno == ENOTEMPTY);
	CHECK(mailbox_create(store, DOM, USR, "a", &error) == 0);
	deliver(store, "a/b", "Subject: in a/b\n\nz\n");
	CHECK(mailbox_rename(store, DOM, USR, "a", "c/d", &error) == 0);
	CHECK(mailbox_list_folders(store, DOM, USR, &names, &error) == 0);
	CHECK(names_equal(names, (const char *[]){ "Drafts", "c", "c/d", "c/d/b" }, 4));
	mailbox_names_free(&names);
	struct mailbox *box = open_box(store, "c/d/b", true);
	CHECK_INT_EQ(box->count, 1);
	mailbox_free(&box);
	CHECK(mailbox_delete(store, DOM, USR, "c/d/b", &error) == 0);
	CHECK(store_folder_exists(store, DOM, USR, "c/d/b") == 0);
	errno = 0;
	CHECK(mailbox_delete(store, DOM, USR, "c/d/b", &error) < 0 && errno == ENOENT);

	CHECK(mailbox_subscription_set(store, DOM, USR, "c/d", true, &error) == 0);
	CHECK(mailbox_subscription_set(store, DOM, USR, "c/d", true, &error) == 0);
	CHECK(mailbox_subscription_set(store, DOM, USR, "INBOX", false, &error) == 0);
	CHECK(mailbox_subscriptions_get(store, DOM, USR, &names, &error) == 0);
	CHECK(names_equal(names, (const char *[]){ "Drafts", "Trash", "c/d" }, 3));
	mailbox_names_free(&names);
	store_free(&store);
}

static void test_names(void)
{
	uint32_t flags, kw;
	char *name;

	mailbox_name_flags("123.M1P2.host,S=10:2,FRSac", &flags, &kw);
	CHECK_INT_EQ(flags, MAILBOX_FLAG_FLAGGED | MAILBOX_FLAG_ANSWERED | MAILBOX_FLAG_SEEN);
	CHECK_INT_EQ(kw, 5);
	name = mailbox_name_with_flags("123.M1P2.host,S=10:2,FRSac", MAILBOX_FLAG_DELETED | MAILBOX_FLAG_DRAFT, 2);
	CHECK_STR_EQ(name, "123.M1P2.host,S=10:2,DTb");
	free(name);
	name = mailbox_name_with_flags("123.M1P2.host,S=10", 0, 0);
	CHECK_STR_EQ(name, "123.M1P2.host,S=10:2,");
	free(name);
	CHECK_INT_EQ(mailbox_crlf_size((const unsigned char *)"a\nb\r\nc\n", 7), 9);
}

/* A STORE when nothing else changed since the view's sync leaves the view
 * current (no rescan for the next command); one after another session's
 * change does not hide that change. */
static void test_own_store_is_no_news(void)
{
	struct store *store = new_store();
	const char *error;
	bool modified[2], expunged[2];
	unsigned idx0 = 0, idx1 = 1;
	struct mailbox_flag_change seen = { .add = MAILBOX_FLAG_SEEN };

	for (int i = 0; i < 3; i++)
		deliver(store, NULL, "Subject: s\n\nbody\n");
	struct mailbox *a = open_box(store, "INBOX", false);
	struct mailbox *b = open_box(store, "INBOX", false);
	CHECK(mailbox_sync(a, &error) == 0);
	CHECK_INT_EQ(mailbox_changed(a), 0);
	CHECK(mailbox_store_flags(a, &idx0, 1, &seen, 0, modified, expunged, &error) == 0);
	CHECK_INT_EQ(mailbox_changed(a), 0);
	CHECK(a->msgs[0].flags & MAILBOX_FLAG_SEEN);
	/* b's view is older than a's change: b's own STORE must not hide it */
	CHECK(mailbox_store_flags(b, &idx1, 1, &seen, 0, modified, expunged, &error) == 0);
	CHECK_INT_EQ(mailbox_changed(b), 1);
	CHECK(mailbox_sync(b, &error) == 0);
	CHECK((b->msgs[0].flags & MAILBOX_FLAG_SEEN) && (b->msgs[1].flags & MAILBOX_FLAG_SEEN));
	/* and a sees b's */
	CHECK_INT_EQ(mailbox_changed(a), 1);
	CHECK(mailbox_sync(a, &error) == 0);
	CHECK(a->msgs[1].flags & MAILBOX_FLAG_SEEN);
	/* a delivery after the view's sync is not hidden by a STORE either */
	deliver(store, NULL, "Subject: late\n\nbody\n");
	CHECK(mailbox_store_flags(a, &idx1, 1, &(struct mailbox_flag_change){ .add = MAILBOX_FLAG_FLAGGED },
				  0, modified, expunged, &error) == 0);
	CHECK_INT_EQ(mailbox_changed(a), 1);
	CHECK(mailbox_sync(a, &error) == 0);
	CHECK_INT_EQ(a->count, 4);
	mailbox_free(&a);
	mailbox_free(&b);
	store_free(&store);
}


/* ---- snapshots of synced mailboxes (mailbox-snapshot.c) ---- */

static struct store *new_fault_store(struct mf_io **io_r)
{
	struct store_settings set;
	struct store *store;
	const char *error;

	*io_r = io_fault_new(io_mem_new());
	store_settings_defaults(&set);
	set.hostname = "unit";
	if (store_new(*io_r, &set, &store, &error) < 0)
		exit(1);
	return store;
}

/* Sets the mtimes of the mailbox's directories and files 100 s back. */
static void age_mailbox(struct mf_io *io, const char *mbox)
{
	static const char *const names[] = { "new", "cur", "mailfleet-uidlist", "mailfleet-index",
					     "mailfleet-keywords" };
	int64_t past = time(NULL) - 100;

	for (size_t i = 0; i < MF_N_ELEMENTS(names); i++) {
		char *path = mf_asprintf("%s/%s", mbox, names[i]);
		struct io_stat st;
		if (io_stat(io, path, &st) == 0)
			CHECK_INT_EQ(io_utimes(io, path, past, past), 0);
		free(path);
	}
}

static void test_snapshot_settled(void)
{
	struct mf_io *io;
	struct store *store = new_fault_store(&io);
	const char *mbox = DOM "/" USR "/Maildir";
	const char *error;

	for (int i = 0; i < 5; i++)
		deliver(store, NULL, "Subject: s\n\nbody\n");
	struct mailbox *a = open_box(store, "INBOX", false);
	CHECK_INT_EQ(mailbox_keyword_index(a, "$Label1", true), 0);
	CHECK(mailbox_change_flags(a, 1, &(struct mailbox_flag_change){ .add = MAILBOX_FLAG_SEEN,
								       .kw_add = 1 }, &error) == 0);
	mailbox_free(&a);
	a = open_box(store, "INBOX", false);   /* the index learns the flags */
	age_mailbox(io, mbox);
	/* a full sync of a quiet mailbox leaves a settled snapshot ... */
	unsigned readdirs = io_fault_calls(io, IO_OP_READDIR);
	CHECK(mailbox_sync(a, &error) == 0);
	CHECK(io_fault_calls(io, IO_OP_READDIR) > readdirs);
	/* ... so the next view of it lists nothing */
	readdirs = io_fault_calls(io, IO_OP_READDIR);
	struct mailbox *b = open_box(store, "INBOX", true);
	CHECK_INT_EQ(io_fault_calls(io, IO_OP_READDIR), readdirs);
	CHECK_INT_EQ(b->count, 5);
	CHECK_INT_EQ(b->uid_next, 6);
	CHECK_INT_EQ(b->uid_validity, a->uid_validity);
	CHECK_INT_EQ(b->highest_modseq, a->highest_modseq);
	CHECK(b->msgs[1].flags == MAILBOX_FLAG_SEEN && b->msgs[1].keywords == 1);
	CHECK(b->keywords[0] != NULL && strcmp(b->keywords[0], "$Label1") == 0);
	CHECK_INT_EQ(b->msgs[4].modseq, a->msgs[4].modseq);
	CHECK(b->index->count == 5 && b->msgs[0].size == a->msgs[0].size);
	CHECK(!b->msgs[0].recent);
	/* a change by anyone moves an mtime: the next sync rescans */
	CHECK(mailbox_change_flags(a, 0, &(struct mailbox_flag_change){ .add = MAILBOX_FLAG_FLAGGED },
				   &error) == 0);
	readdirs = io_fault_calls(io, IO_OP_READDIR);
	CHECK(mailbox_sync(b, &error) == 0);
	CHECK(io_fault_calls(io, IO_OP_READDIR) > readdirs);
	CHECK(b->msgs[0].flags & MAILBOX_FLAG_FLAGGED);
	/* a new message in new/ too */
	age_mailbox(io, mbox);
	CHECK(mailbox_sync(b, &error) == 0);     /* settles again */
	deliver(store, NULL, "Subject: late\n\nbody\n");
	CHECK(mailbox_sync(a, &error) == 0);
	CHECK_INT_EQ(a->count, 6);
	CHECK(a->msgs[5].recent);
	mailbox_free(&a);
	mailbox_free(&b);
	store_free(&store);
}

static void test_snapshot_unsettled_not_trusted(void)
{
	struct mf_io *io;
	struct store *store = new_fault_store(&io);

	deliver(store, NULL, "Subject: s\n\nbody\n");
	struct mailbox *a = open_box(store, "INBOX", false);
	/* just written: a change within the NAS's clock granularity could
	 * look like none, so every view rescans */
	unsigned readdirs = io_fault_calls(io, IO_OP_READDIR);
	struct mailbox *b = open_box(store, "INBOX", false);
	CHECK(io_fault_calls(io, IO_OP_READDIR) > readdirs);
	CHECK_INT_EQ(b->count, 1);
	mailbox_free(&a);
	mailbox_free(&b);
	store_free(&store);
}

struct sync_thread {
	struct store *store;
	struct mailbox *box;
	int ret;
	pthread_t tid;
};

static void *sync_thread_run(void *ctx)
{
	struct sync_thread *t = ctx;
	const char *error;

	t->ret = mailbox_sync(t->box, &error);
	return NULL;
}

static void test_snapshot_coalesced(void)
{
	struct mf_io *io;
	struct store *store = new_fault_store(&io);
	struct sync_thread t[3];

	deliver(store, NULL, "Subject: s\n\nbody\n");
	for (int i = 0; i < 3; i++)
		t[i] = (struct sync_thread){ .store = store, .box = open_box(store, "INBOX", false) };
	deliver(store, NULL, "Subject: woken\n\nbody\n");
	/* the first sync's listing stalls; the two others ask meanwhile: the
	 * second rescans (the first began before it asked), the third uses
	 * what the second found (it began after the third asked) */
	unsigned readdirs = io_fault_calls(io, IO_OP_READDIR);
	io_fault_set(io, IO_OP_READDIR, 1, 0, 300);
	pthread_create(&t[0].tid, NULL, sync_thread_run, &t[0]);
	usleep(100 * 1000);
	pthread_create(&t[1].tid, NULL, sync_thread_run, &t[1]);
	usleep(50 * 1000);
	pthread_create(&t[2].tid, NULL, sync_thread_run, &t[2]);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i].tid, NULL);
		CHECK_INT_EQ(t[i].ret, 0);
		CHECK_INT_EQ(t[i].box->count, 2);
		CHECK_INT_EQ(t[i].box->msgs[1].uid, 2);
	}
	/* two rescans of new/ and cur/, not three */
	CHECK_INT_EQ(io_fault_calls(io, IO_OP_READDIR) - readdirs, 4);
	/* exactly one view moved the new message to cur/: its \Recent */
	CHECK_INT_EQ(t[0].box->msgs[1].recent + t[1].box->msgs[1].recent +
		     t[2].box->msgs[1].recent, 1);
	for (int i = 0; i < 3; i++)
		mailbox_free(&t[i].box);
	store_free(&store);
}

int main(void)
{
	test_run(test_names);
	test_run(test_empty_and_sync);
	test_run(test_flags_and_keywords);
	test_run(test_append_copy_expunge);
	test_run(test_folders_and_subscriptions);
	test_run(test_rename_inbox_and_changed);
	test_run(test_own_store_is_no_news);
	test_run(test_snapshot_settled);
	test_run(test_snapshot_unsettled_not_trusted);
	test_run(test_snapshot_coalesced);
	return test_exit();
}
