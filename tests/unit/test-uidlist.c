/* test-uidlist.c: the dovecot-uidlist v3 parser and serializer (with a real
 * sample), garbage rejection, and uidlist_sync(): UID assignment, flag
 * renames, expunges, import of a Dovecot uidlist, stale-lock breaking, and
 * two threads syncing while a third delivers (UIDs ascending, never reused). */
#include "store/uidlist.h"
#include "store/maildir.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

TEST_DEFINE_GLOBALS

static const char sample[] =
	"3 V1275660208 N25022 G3085f01b7f11094c501100008c4a11c1\n"
	"25006 :1276528487.M364837P9451.kurkku,S=1036,W=1063:2,S\n"
	"25017 W2481 :1276528488.M10P9451.kurkku,S=2400,W=2481:2,\n"
	"25018 P1a2b3c W512 S500 Z99 :1276528489.M20P9451.kurkku,S=500\n";

static void test_parse_sample(void)
{
	struct uidlist *ul;
	unsigned line;
	const char *error;
	size_t len;

	CHECK_INT_EQ(uidlist_parse(sample, strlen(sample), &ul, &line, &error), 0);
	if (ul == NULL)
		return;
	CHECK_INT_EQ(ul->uid_validity, 1275660208);
	CHECK_INT_EQ(ul->next_uid, 25022);
	CHECK_STR_EQ(ul->guid, "3085f01b7f11094c501100008c4a11c1");
	CHECK_INT_EQ(ul->count, 3);
	CHECK_INT_EQ(ul->recs[0].uid, 25006);
	CHECK_STR_EQ(ul->recs[0].filename, "1276528487.M364837P9451.kurkku,S=1036,W=1063:2,S");
	CHECK(ul->recs[0].ext == NULL);
	CHECK_STR_EQ(ul->recs[1].ext, "W2481");
	CHECK_STR_EQ(ul->recs[2].ext, "P1a2b3c W512 S500 Z99");
	const struct uidlist_rec *r = uidlist_lookup(ul, "1276528488.M10P9451.kurkku,S=2400,W=2481:2,RS");
	CHECK(r != NULL && r->uid == 25017);
	CHECK(uidlist_lookup(ul, "1276528488.M10P9451.kurkku") == NULL);
	char *text = uidlist_serialize(ul, &len);
	CHECK_STR_EQ(text, sample);
	CHECK_INT_EQ(len, strlen(sample));
	free(text);
	uidlist_free(&ul);
	CHECK(ul == NULL);

	/* unknown header keys, CRLF-free blank lines and no trailing newline */
	static const char other[] = "3 V7 Xfoo N9 Hbar\n\n2 :a,S=1\n5 :b";
	CHECK_INT_EQ(uidlist_parse(other, strlen(other), &ul, &line, &error), 0);
	if (ul != NULL) {
		CHECK_INT_EQ(ul->uid_validity, 7);
		CHECK_INT_EQ(ul->next_uid, 9);
		CHECK_STR_EQ(ul->guid, "");
		CHECK_INT_EQ(ul->count, 2);
		text = uidlist_serialize(ul, &len);
		CHECK_STR_EQ(text, "3 V7 N9\n2 :a,S=1\n5 :b\n");
		free(text);
		uidlist_free(&ul);
	}
	/* next uid below a listed uid is raised */
	CHECK_INT_EQ(uidlist_parse("3 V7 N2\n9 :x", 12, &ul, &line, &error), 0);
	CHECK(ul != NULL && ul->next_uid == 10);
	uidlist_free(&ul);
}

static void test_parse_garbage(void)
{
	static const struct { const char *text; unsigned line; } bad[] = {
		{ "1 1275660208 25022\n", 1 },
		{ "3 N5\n", 1 },
		{ "3 V0 N1\n", 1 },
		{ "3 V1 Nx\n", 1 },
		{ "3 V1 N1 Gxyz\n", 1 },
		{ "3 V1 N1\nabc :x\n", 2 },
		{ "3 V1 N1\n5 :a\n4 :b\n", 3 },
		{ "3 V1 N1\n5 :a\n5 :b\n", 3 },
		{ "3 V1 N1\n5 w1 :x\n", 2 },
		{ "3 V1 N1\n5 W1\n", 2 },
		{ "3 V1 N1\n5 :a/b\n", 2 },
		{ "3 V1 N1\n5 :\n", 2 },
		{ "3 V1 N1\n5 :.hidden\n", 2 },
		{ "3 V1 N1\n0 :a\n", 2 },
		{ "3 V1 N1\n99999999999 :a\n", 2 },
		{ "3 V1 N1\n4294967295 :a\n", 2 },
		{ "3 V1 N1\n4294967294 :a\n", 2 },
		{ "3 V1 N1\n5 :a\tb\n", 2 },
		{ "", 1 },
	};
	struct uidlist *ul;
	unsigned line;
	const char *error;

	for (size_t i = 0; i < MF_N_ELEMENTS(bad); i++) {
		error = NULL;
		int ret = uidlist_parse(bad[i].text, strlen(bad[i].text), &ul, &line, &error);
		if (ret != -1 || ul != NULL || error == NULL || line != bad[i].line)
			TEST_FAIL_AT(__FILE__, __LINE__, "case %zu: ret=%d line=%u", i, ret, line);
		test_checks++;
	}
	/* embedded NUL and an over-long line */
	CHECK_INT_EQ(uidlist_parse("3 V1 N1\n5 :a\0b\n", 15, &ul, &line, &error), -1);
	CHECK_INT_EQ(line, 2);
	size_t big = UIDLIST_LINE_MAX + 100;
	char *text = mf_malloc(big + 16);
	strcpy(text, "3 V1 N1\n5 :");
	memset(text + 11, 'a', big);
	text[11 + big] = '\0';
	CHECK_INT_EQ(uidlist_parse(text, strlen(text), &ul, &line, &error), -1);
	CHECK_INT_EQ(line, 2);
	free(text);
}

static struct store *new_store(struct mf_io *io, unsigned lock_timeout)
{
	struct store_settings set;
	struct store *store;
	const char *error;

	store_settings_defaults(&set);
	set.hostname = "node1";
	set.lock_timeout_secs = lock_timeout;
	if (store_new(io, &set, &store, &error) < 0)
		exit(1);
	return store;
}

static char *deliver(struct store *store, const char *user, const char *text)
{
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	const char *error;
	char *name = NULL;

	if (store_deliver(store, "example.com", user, NULL, &iov, 1, iov.iov_len, &name, &error) < 0)
		TEST_FAIL_AT(__FILE__, __LINE__, "deliver: %s", error);
	return name;
}

static struct uidlist *sync_ok(struct store *store, const char *user)
{
	struct uidlist *ul = NULL;
	const char *error = NULL;

	if (uidlist_sync_mailbox(store, "example.com", user, NULL, &ul, &error) < 0)
		TEST_FAIL_AT(__FILE__, __LINE__, "sync: %s", error);
	test_checks++;
	return ul;
}

static void test_sync_basic(void)
{
	struct store *store = new_store(io_mem_new(), 120);
	struct mf_io *io = store_io(store);
	char *names[5];
	struct io_stat st;

	for (int i = 0; i < 3; i++)
		names[i] = deliver(store, "ann", "hello");
	struct uidlist *ul = sync_ok(store, "ann");
	if (ul == NULL)
		return;
	CHECK_INT_EQ(ul->count, 3);
	CHECK_INT_EQ(ul->next_uid, 4);
	CHECK((int64_t)ul->uid_validity > time(NULL) - 60 && (int64_t)ul->uid_validity <= time(NULL) + 60);
	CHECK_INT_EQ(strlen(ul->guid), 32);
	uint32_t validity = ul->uid_validity;
	for (int i = 0; i < 3; i++) {
		const struct uidlist_rec *r = uidlist_lookup(ul, names[i]);
		CHECK(r != NULL && r->uid == (uint32_t)i + 1 && r->in_new);
	}
	CHECK_INT_EQ(io_stat(io, "example.com/ann/Maildir/mailfleet-uidlist", &st), 0);
	CHECK_INT_EQ(io_stat(io, "example.com/ann/Maildir/mailfleet-uidlist.lock", &st), -1);
	uidlist_free(&ul);

	/* seen: new/X -> cur/X:2,S keeps its UID; expunge drops it */
	char *from = mf_asprintf("example.com/ann/Maildir/new/%s", names[1]);
	char *to = mf_asprintf("example.com/ann/Maildir/cur/%s:2,S", names[1]);
	CHECK_INT_EQ(io_rename(io, from, to), 0);
	free(from);
	free(to);
	char *gone = mf_asprintf("example.com/ann/Maildir/new/%s", names[0]);
	CHECK_INT_EQ(io_unlink(io, gone), 0);
	free(gone);
	names[3] = deliver(store, "ann", "x");
	names[4] = deliver(store, "ann", "y");
	ul = sync_ok(store, "ann");
	if (ul == NULL)
		return;
	CHECK_INT_EQ(ul->uid_validity, validity);
	CHECK_INT_EQ(ul->count, 4);
	CHECK(uidlist_lookup(ul, names[0]) == NULL);
	const struct uidlist_rec *r = uidlist_lookup(ul, names[1]);
	CHECK(r != NULL && r->uid == 2 && !r->in_new && strstr(r->filename, ":2,S") != NULL);
	r = uidlist_lookup(ul, names[3]);
	const struct uidlist_rec *r2 = uidlist_lookup(ul, names[4]);
	CHECK(r != NULL && r2 != NULL && r->uid >= 4 && r2->uid >= 4 && r->uid != r2->uid);
	CHECK_INT_EQ(ul->next_uid, 6);
	uidlist_free(&ul);
	/* unchanged mailbox: same result */
	ul = sync_ok(store, "ann");
	CHECK(ul != NULL && ul->count == 4 && ul->next_uid == 6);
	uidlist_free(&ul);
	for (int i = 0; i < 5; i++)
		free(names[i]);
	errno = 0;
	const char *error;
	CHECK_INT_EQ(uidlist_sync_mailbox(store, "example.com", "nobody", NULL, &ul, &error), -1);
	CHECK_INT_EQ(errno, ENOENT);
	CHECK_INT_EQ(uidlist_sync_mailbox(store, "example.com", "..", NULL, &ul, &error), -1);
	store_free(&store);
}

/* A message caught in both new/ and cur/ by a listing (moved meanwhile) is
 * one record, in cur/; many files each keep their UID across syncs. */
static void test_sync_listing_duplicates(void)
{
	struct store *store = new_store(io_mem_new(), 120);
	struct mf_io *io = store_io(store);
	char *names[300];

	for (int i = 0; i < 300; i++)
		names[i] = deliver(store, "dup", "hello");
	struct uidlist *ul = sync_ok(store, "dup");
	if (ul == NULL)
		return;
	CHECK_INT_EQ(ul->count, 300);
	uidlist_free(&ul);
	char *from = mf_asprintf("example.com/dup/Maildir/new/%s", names[7]);
	char *to = mf_asprintf("example.com/dup/Maildir/cur/%s:2,S", names[7]);
	CHECK_INT_EQ(io_link(io, from, to), 0);
	free(from);
	free(to);
	char *late = deliver(store, "dup", "late");
	ul = sync_ok(store, "dup");
	if (ul == NULL)
		return;
	CHECK_INT_EQ(ul->count, 301);
	CHECK_INT_EQ(ul->next_uid, 302);
	const struct uidlist_rec *r = uidlist_lookup(ul, names[7]);
	CHECK(r != NULL && r->uid == 8 && !r->in_new && strstr(r->filename, ":2,S") != NULL);
	for (int i = 0; i < 300; i++) {
		r = uidlist_lookup(ul, names[i]);
		CHECK(r != NULL && r->uid == (uint32_t)i + 1);
	}
	r = uidlist_lookup(ul, late);
	CHECK(r != NULL && r->uid == 301);
	uidlist_free(&ul);
	for (int i = 0; i < 300; i++)
		free(names[i]);
	free(late);
	store_free(&store);
}

static void write_file(struct mf_io *io, const char *path, const char *text)
{
	struct io_file *f;

	CHECK_INT_EQ(io_open(io, path, IO_O_WRONLY | IO_O_CREAT | IO_O_TRUNC, 0600, &f), 0);
	if (f != NULL) {
		CHECK_INT_EQ(io_write_all(f, text, strlen(text)), 0);
		io_close(&f);
	}
}

/* An existing Dovecot maildir keeps its UIDVALIDITY, UIDs and POP3 UIDLs. */
static void test_import_dovecot(void)
{
	struct store *store = new_store(io_mem_new(), 120);
	struct mf_io *io = store_io(store);
	char *data;
	size_t len;

	CHECK_INT_EQ(store_folder_create(store, "example.com", "bea", NULL), 0);
	write_file(io, "example.com/bea/Maildir/cur/1276528487.M364837P9451.kurkku,S=5,W=6:2,S", "hello");
	write_file(io, "example.com/bea/Maildir/cur/1276528488.M10P9451.kurkku,S=5:2,", "world");
	write_file(io, "example.com/bea/Maildir/dovecot-uidlist",
		   "3 V1275660208 N105 G3085f01b7f11094c501100008c4a11c1\n"
		   "100 P0001abcd W6 :1276528487.M364837P9451.kurkku,S=5,W=6:2,S\n"
		   "101 :1276528488.M10P9451.kurkku,S=5\n"
		   "102 :1276528490.M11P9451.kurkku,S=5\n");
	char *fresh = deliver(store, "bea", "new one");
	struct uidlist *ul = sync_ok(store, "bea");
	if (ul == NULL)
		return;
	CHECK_INT_EQ(ul->uid_validity, 1275660208);
	CHECK_STR_EQ(ul->guid, "3085f01b7f11094c501100008c4a11c1");
	CHECK_INT_EQ(ul->count, 3);
	CHECK_INT_EQ(ul->recs[0].uid, 100);
	CHECK_STR_EQ(ul->recs[0].ext, "P0001abcd W6");
	CHECK_INT_EQ(ul->recs[1].uid, 101);
	CHECK_STR_EQ(ul->recs[1].filename, "1276528488.M10P9451.kurkku,S=5:2,");
	const struct uidlist_rec *r = uidlist_lookup(ul, fresh);
	CHECK(r != NULL && r->uid == 105);
	CHECK_INT_EQ(ul->next_uid, 106);
	uidlist_free(&ul);
	CHECK_INT_EQ(io_read_file(io, "example.com/bea/Maildir/mailfleet-uidlist", 100000, &data, &len), 0);
	CHECK(data != NULL && strstr(data, "100 P0001abcd W6 :1276528487.M364837P9451.kurkku,S=5,W=6:2,S\n") != NULL);
	free(data);
	/* later syncs read mailfleet-uidlist, not the old file */
	CHECK_INT_EQ(io_unlink(io, "example.com/bea/Maildir/dovecot-uidlist"), 0);
	ul = sync_ok(store, "bea");
	CHECK(ul != NULL && ul->count == 3 && ul->uid_validity == 1275660208);
	uidlist_free(&ul);
	/* a corrupt uidlist is an error, not a silent reset */
	write_file(io, "example.com/bea/Maildir/mailfleet-uidlist", "3 V1 N1\ngarbage\n");
	const char *error = NULL;
	errno = 0;
	CHECK_INT_EQ(uidlist_sync_mailbox(store, "example.com", "bea", NULL, &ul, &error), -1);
	CHECK_INT_EQ(errno, EIO);
	CHECK(error != NULL);
	free(fresh);
	store_free(&store);
}

/* ESTALE once during a sync is retried; the lock is not left behind. */
static void test_sync_estale(void)
{
	static const enum io_op ops[] = { IO_OP_READDIR, IO_OP_RENAME, IO_OP_OPEN, IO_OP_READ };

	for (size_t i = 0; i < MF_N_ELEMENTS(ops); i++) {
		struct mf_io *io = io_fault_new(io_mem_new());
		struct store *store = new_store(io, 120);
		struct io_stat st;
		free(deliver(store, "eve", "one"));
		io_fault_set(io, ops[i], 1, ESTALE, 0);
		struct uidlist *ul = sync_ok(store, "eve");
		CHECK(ul != NULL && ul->count == 1 && ul->recs[0].uid == 1);
		uidlist_free(&ul);
		CHECK_INT_EQ(io_stat(io, "example.com/eve/Maildir/mailfleet-uidlist.lock", &st), -1);
		/* a hard failure reports the error and still unlocks */
		free(deliver(store, "eve", "two"));
		io_fault_set(io, IO_OP_RENAME, 1, EIO, 0);
		const char *error = NULL;
		errno = 0;
		CHECK_INT_EQ(uidlist_sync_mailbox(store, "example.com", "eve", NULL, &ul, &error), -1);
		CHECK_INT_EQ(errno, EIO);
		CHECK(error != NULL && ul == NULL);
		CHECK_INT_EQ(io_stat(io, "example.com/eve/Maildir/mailfleet-uidlist.lock", &st), -1);
		ul = sync_ok(store, "eve");
		CHECK(ul != NULL && ul->count == 2 && ul->next_uid == 3);
		uidlist_free(&ul);
		store_free(&store);
	}
}

static char *tmp_root(void)
{
	const char *tmpdir = getenv("TMPDIR");
	char *tmpl = mf_asprintf("%s/mf-test-uidlist-XXXXXX", tmpdir != NULL ? tmpdir : "/tmp");

	if (mkdtemp(tmpl) == NULL)
		exit(1);
	return tmpl;
}

static void rm_rf(const char *dir)
{
	char *cmd = mf_asprintf("rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	free(cmd);
}

struct lock_thread {
	struct store *store;
	int ret;
	uint64_t ms;
};

static void *lock_thread_main(void *arg)
{
	struct lock_thread *t = arg;
	struct uidlist *ul = NULL;
	const char *error;
	uint64_t start = mf_now_ms();

	t->ret = uidlist_sync_mailbox(t->store, "example.com", "cid", NULL, &ul, &error);
	t->ms = mf_now_ms() - start;
	uidlist_free(&ul);
	return NULL;
}

static void test_stale_lock(void)
{
	char *root = tmp_root();
	struct mf_io *io;
	const char *error;
	struct io_stat st;

	CHECK_INT_EQ(io_posix_new(root, &io, &error), 0);
	struct store *store = new_store(io, 1);
	free(deliver(store, "cid", "m1"));
	/* an old lock left by a dead node is broken at once */
	write_file(io, "example.com/cid/Maildir/mailfleet-uidlist.lock", "othernode 1 1 1\n");
	CHECK_INT_EQ(io_utimes(io, "example.com/cid/Maildir/mailfleet-uidlist.lock", 1000000000, 1000000000), 0);
	struct lock_thread t = { .store = store };
	lock_thread_main(&t);
	CHECK_INT_EQ(t.ret, 0);
	CHECK(t.ms < 1000);
	CHECK_INT_EQ(io_stat(io, "example.com/cid/Maildir/mailfleet-uidlist.lock", &st), -1);
	/* a fresh lock is waited for, then broken once older than the timeout */
	write_file(io, "example.com/cid/Maildir/mailfleet-uidlist.lock", "othernode 1 1 1\n");
	pthread_t tid;
	pthread_create(&tid, NULL, lock_thread_main, &t);
	pthread_join(tid, NULL);
	CHECK_INT_EQ(t.ret, 0);
	CHECK(t.ms >= 900 && t.ms < 5000);
	CHECK_INT_EQ(io_stat(io, "example.com/cid/Maildir/mailfleet-uidlist.lock", &st), -1);
	store_free(&store);
	rm_rf(root);
	free(root);
}

struct skew_thread {
	struct store *store;
	int ret;
};

static void *skew_sync(void *arg)
{
	struct skew_thread *t = arg;
	const char *error;
	struct uidlist *ul = NULL;

	t->ret = uidlist_sync_mailbox(t->store, "example.com", "sky", NULL, &ul, &error);
	uidlist_free(&ul);
	return NULL;
}

/* Staleness is judged by the NAS's clock, not the local one. */
static void test_lock_clock_skew(void)
{
	static const char lock[] = "example.com/sky/Maildir/mailfleet-uidlist.lock";
	struct mf_io *io = io_mem_new();
	struct store *store = new_store(io, 120);
	struct io_stat st;
	char *data = NULL;
	size_t len;

	free(deliver(store, "sky", "m"));
	/* NAS one hour behind: a fresh lock looks an hour old locally, but
	 * must be respected until its holder removes it */
	io_mem_set_clock_offset(io, -3600);
	write_file(io, lock, "othernode 1 1 1\n");
	struct skew_thread t = { .store = store, .ret = -2 };
	pthread_t tid;
	pthread_create(&tid, NULL, skew_sync, &t);
	usleep(1200 * 1000);
	CHECK_INT_EQ(io_read_file(io, lock, 100, &data, &len), 0);
	CHECK_STR_EQ(data, "othernode 1 1 1\n");
	free(data);
	CHECK_INT_EQ(t.ret, -2);
	CHECK_INT_EQ(io_unlink(io, lock), 0);
	pthread_join(tid, NULL);
	CHECK_INT_EQ(t.ret, 0);
	/* NAS one hour ahead: a lock 200 s old by the NAS looks like it is
	 * from the future locally, but is stale */
	io_mem_set_clock_offset(io, 3600);
	write_file(io, lock, "othernode 1 1 1\n");
	CHECK_INT_EQ(io_stat(io, lock, &st), 0);
	CHECK_INT_EQ(io_utimes(io, lock, st.mtime_sec - 200, st.mtime_sec - 200), 0);
	uint64_t start = mf_now_ms();
	skew_sync(&t);
	CHECK_INT_EQ(t.ret, 0);
	CHECK(mf_now_ms() - start < 1000);
	CHECK_INT_EQ(io_stat(io, lock, &st), -1);
	store_free(&store);
}

#define CONC_MESSAGES 150
#define CONC_MAX_UID (CONC_MESSAGES * 4)

struct conc {
	struct store *store;
	pthread_mutex_t lock;
	char *uid_base[CONC_MAX_UID + 1];  /* uid -> base name ever assigned */
	volatile int delivering;
	unsigned syncs, errors;
};

static bool cmp_base_equal(const char *a, const char *b)
{
	size_t alen = maildir_base_len(a);

	return alen == maildir_base_len(b) && memcmp(a, b, alen) == 0;
}

static void conc_check(struct conc *c, const struct uidlist *ul)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < ul->count; i++) {
		const struct uidlist_rec *r = &ul->recs[i];
		size_t blen = maildir_base_len(r->filename);
		if ((i > 0 && r->uid <= ul->recs[i - 1].uid) || r->uid > CONC_MAX_UID || r->uid >= ul->next_uid) {
			c->errors++;
			continue;
		}
		char *base = mf_strndup(r->filename, blen);
		if (c->uid_base[r->uid] == NULL)
			c->uid_base[r->uid] = base;
		else {
			if (strcmp(c->uid_base[r->uid], base) != 0)
				c->errors++;  /* a UID given to two messages */
			free(base);
		}
	}
	/* one message never gets two UIDs */
	for (size_t i = 0; i < ul->count; i++) {
		for (size_t j = i + 1; j < ul->count; j++) {
			if (cmp_base_equal(ul->recs[i].filename, ul->recs[j].filename))
				c->errors++;
		}
	}
	c->syncs++;
	pthread_mutex_unlock(&c->lock);
}

static void *conc_syncer(void *arg)
{
	struct conc *c = arg;
	const char *error;

	for (int round = 0; round < 2000; round++) {
		bool last = !c->delivering;
		struct uidlist *ul = NULL;
		if (uidlist_sync_mailbox(c->store, "example.com", "dan", NULL, &ul, &error) < 0) {
			pthread_mutex_lock(&c->lock);
			c->errors++;
			pthread_mutex_unlock(&c->lock);
			fprintf(stderr, "sync failed: %s\n", error);
		} else {
			conc_check(c, ul);
		}
		uidlist_free(&ul);
		if (last)
			break;
	}
	return NULL;
}

static void *conc_deliverer(void *arg)
{
	struct conc *c = arg;

	struct mf_io *io = store_io(c->store);

	for (int i = 0; i < CONC_MESSAGES; i++) {
		char *name = deliver(c->store, "dan", "concurrent message");
		if (name != NULL && i % 7 == 0) {
			/* some messages are seen (moved into cur/) meanwhile */
			char *from = mf_asprintf("example.com/dan/Maildir/new/%s", name);
			char *to = mf_asprintf("example.com/dan/Maildir/cur/%s:2,S", name);
			if (io_rename(io, from, to) < 0) {
				pthread_mutex_lock(&c->lock);
				c->errors++;
				pthread_mutex_unlock(&c->lock);
			}
			free(from);
			free(to);
		}
		free(name);
	}
	c->delivering = 0;
	return NULL;
}

static void test_sync_concurrent(void)
{
	char *root = tmp_root();
	struct mf_io *io1, *io2;
	const char *error;
	struct conc c;
	pthread_t tids[3];

	memset(&c, 0, sizeof(c));
	pthread_mutex_init(&c.lock, NULL);
	CHECK_INT_EQ(io_posix_new(root, &io1, &error), 0);
	CHECK_INT_EQ(io_posix_new(root, &io2, &error), 0);
	c.store = new_store(io1, 120);
	struct store *other = new_store(io2, 120);
	free(deliver(c.store, "dan", "first"));
	c.delivering = 1;
	pthread_create(&tids[0], NULL, conc_deliverer, &c);
	pthread_create(&tids[1], NULL, conc_syncer, &c);
	pthread_create(&tids[2], NULL, conc_syncer, &c);
	for (int i = 0; i < 3; i++)
		pthread_join(tids[i], NULL);
	/* a second node's view agrees */
	struct uidlist *ul = sync_ok(other, "dan");
	if (ul != NULL) {
		conc_check(&c, ul);
		CHECK_INT_EQ(ul->count, CONC_MESSAGES + 1);
		CHECK_INT_EQ(ul->next_uid, CONC_MESSAGES + 2);
		CHECK_INT_EQ(ul->recs[0].uid, 1);
		CHECK_INT_EQ(ul->recs[ul->count - 1].uid, CONC_MESSAGES + 1);
	}
	uidlist_free(&ul);
	CHECK_INT_EQ(c.errors, 0);
	CHECK(c.syncs > 2);
	for (int i = 0; i <= CONC_MAX_UID; i++)
		free(c.uid_base[i]);
	pthread_mutex_destroy(&c.lock);
	store_free(&c.store);
	store_free(&other);
	rm_rf(root);
	free(root);
}

int main(void)
{
	test_run(test_parse_sample);
	test_run(test_parse_garbage);
	test_run(test_sync_basic);
	test_run(test_sync_listing_duplicates);
	test_run(test_import_dovecot);
	test_run(test_sync_estale);
	test_run(test_stale_lock);
	test_run(test_lock_clock_skew);
	test_run(test_sync_concurrent);
	return test_exit();
}
