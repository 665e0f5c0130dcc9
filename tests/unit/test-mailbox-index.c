/* test-mailbox-index.c: store/mailbox-index.c: record encoding, replay with
 * superseded and expunge records, a damaged tail or header, reconciliation
 * with a uidlist (new, changed, gone), mod-sequences that only grow (also
 * across a rebuild), incremental refresh after another writer appended, and
 * rewrites that keep the newest expunges; plus modseqs through
 * mailbox_store_flags() with UNCHANGEDSINCE on the in-memory store. */
#include "tests/unit/test.h"
#include "store/mailbox-index.h"
#include "store/mailbox-private.h"

#include <errno.h>
#include <sys/uio.h>

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

static void rec_bytes(unsigned char *out, uint8_t type, uint32_t uid, uint64_t modseq, uint32_t flags)
{
	struct mailbox_index_rec rec = { .uid = uid, .modseq = modseq, .flags = flags, .size = 10 * uid,
					 .vsize = 11 * uid, .date = 1000 + uid };
	mailbox_index_encode_rec(out, type, &rec);
}

static void test_parse_replay(void)
{
	struct mailbox_index *idx = mailbox_index_new(NULL, "box");
	struct mailbox_index hdr = { .uid_validity = 7, .generation = 3, .highest_modseq = 5 };
	unsigned char data[MAILBOX_INDEX_HEADER_SIZE + 6 * MAILBOX_INDEX_RECORD_SIZE + 9];
	unsigned char *p = data + MAILBOX_INDEX_HEADER_SIZE;

	mailbox_index_encode_header(data, &hdr);
	rec_bytes(p, MAILBOX_INDEX_REC_MSG, 1, 6, 0);
	rec_bytes(p + 56, MAILBOX_INDEX_REC_MSG, 3, 6, 0);
	rec_bytes(p + 112, MAILBOX_INDEX_REC_MSG, 2, 7, MAILBOX_FLAG_SEEN);  /* out of order */
	rec_bytes(p + 168, MAILBOX_INDEX_REC_MSG, 1, 8, MAILBOX_FLAG_FLAGGED);  /* supersedes */
	rec_bytes(p + 224, MAILBOX_INDEX_REC_EXPUNGE, 3, 9, 0);
	rec_bytes(p + 280, MAILBOX_INDEX_REC_MSG, 4, 10, 0);
	mailbox_index_parse(idx, data, sizeof(data) - 9);
	CHECK_INT_EQ(idx->uid_validity, 7);
	CHECK_INT_EQ(idx->count, 3);
	CHECK_INT_EQ(idx->recs[0].uid, 1);
	CHECK_INT_EQ(idx->recs[1].uid, 2);
	CHECK_INT_EQ(idx->recs[2].uid, 4);
	CHECK_INT_EQ(idx->recs[0].flags, MAILBOX_FLAG_FLAGGED);
	CHECK_INT_EQ(idx->recs[0].modseq, 8);
	CHECK_INT_EQ(idx->recs[1].size, 20);
	CHECK_INT_EQ(idx->recs[1].date, 1002);
	CHECK(mailbox_index_lookup(idx, 3) == NULL);
	CHECK_INT_EQ(idx->exp_count, 1);
	CHECK_INT_EQ(idx->expunged[0].uid, 3);
	CHECK_INT_EQ(idx->expunged[0].modseq, 9);
	CHECK_INT_EQ(idx->highest_modseq, 10);
	CHECK(!idx->need_rewrite);
	CHECK_INT_EQ(idx->offset, sizeof(data) - 9);

	/* a torn record at the end: what came before counts, rewrite due */
	memset(p + 336, 0x55, 9);
	mailbox_index_parse(idx, data, sizeof(data));
	CHECK_INT_EQ(idx->count, 3);
	CHECK(idx->need_rewrite);
	/* a flipped bit in a record stops the replay there */
	p[112 + 20] ^= 1;
	mailbox_index_parse(idx, data, sizeof(data) - 9);
	CHECK_INT_EQ(idx->count, 2);
	CHECK(idx->need_rewrite);
	/* a bad header: nothing used, but the modseq seen stays a floor */
	idx->highest_modseq = 99;
	data[3] ^= 1;
	mailbox_index_parse(idx, data, sizeof(data) - 9);
	CHECK_INT_EQ(idx->count, 0);
	CHECK_INT_EQ(idx->highest_modseq, 99);
	CHECK(idx->need_rewrite);
	mailbox_index_free(&idx);
	CHECK(idx == NULL);
}

static int learn_fixed(void *ctx, const struct uidlist_rec *rec, struct mailbox_index_rec *rec_r)
{
	unsigned *calls = ctx;

	(*calls)++;
	if (strstr(rec->filename, "gone") != NULL) {
		errno = ENOENT;
		return -1;
	}
	rec_r->size = 100 + rec->uid;
	rec_r->vsize = 110 + rec->uid;
	rec_r->date = 5000;
	return 0;
}

static void ul_add(struct uidlist *ul, uint32_t uid, const char *name)
{
	ul->recs = mf_realloc(ul->recs, (ul->count + 1) * sizeof(*ul->recs));
	ul->recs[ul->count++] = (struct uidlist_rec){ .uid = uid, .filename = mf_strdup(name) };
	ul->next_uid = uid + 1;
}

static void test_reconcile(void)
{
	struct store *store = new_store();
	struct mailbox_index *idx = mailbox_index_new(store, "box"), *other;
	struct uidlist *ul = mf_calloc(1, sizeof(*ul));
	unsigned calls = 0;
	const char *error;
	uint64_t h1, h2;

	CHECK(io_mkdir(store_io(store), "box", 0700) == 0);
	ul->uid_validity = 42;
	ul_add(ul, 1, "a:2,");
	ul_add(ul, 2, "b:2,S");
	ul_add(ul, 3, "gone:2,");
	CHECK(mailbox_index_refresh(idx) == 0);
	CHECK(mailbox_index_reconcile(idx, ul, learn_fixed, &calls, &error) == 0);
	CHECK_INT_EQ(calls, 3);
	CHECK_INT_EQ(idx->count, 2);    /* the vanished file is left out */
	CHECK_INT_EQ(mailbox_index_lookup(idx, 2)->flags, MAILBOX_FLAG_SEEN);
	CHECK_INT_EQ(mailbox_index_lookup(idx, 1)->size, 101);
	h1 = idx->highest_modseq;
	CHECK(h1 > 1000000);            /* a new index starts above any lost one */

	/* nothing changed: no new modseq, nothing learned again */
	calls = 0;
	free(ul->recs[2].filename);
	ul->count = 2;
	CHECK(mailbox_index_reconcile(idx, ul, learn_fixed, &calls, &error) == 0);
	CHECK_INT_EQ(calls, 0);
	CHECK_INT_EQ(idx->highest_modseq, h1);

	/* another reader sees the same state */
	other = mailbox_index_new(store, "box");
	CHECK(mailbox_index_refresh(other) == 0);
	CHECK_INT_EQ(other->count, 2);
	CHECK_INT_EQ(other->highest_modseq, h1);
	CHECK_INT_EQ(other->uid_validity, 42);

	/* a flag change and an expunge and a new message: one new modseq */
	free(ul->recs[0].filename);
	ul->recs[0].filename = mf_strdup("a:2,FS");
	free(ul->recs[1].filename);
	ul->recs[1] = ul->recs[0];
	ul->count = 1;
	ul_add(ul, 4, "d:2,");
	CHECK(mailbox_index_reconcile(idx, ul, learn_fixed, &calls, &error) == 0);
	h2 = idx->highest_modseq;
	CHECK(h2 == h1 + 1);
	CHECK_INT_EQ(mailbox_index_lookup(idx, 1)->modseq, h2);
	CHECK_INT_EQ(mailbox_index_lookup(idx, 1)->flags, MAILBOX_FLAG_FLAGGED | MAILBOX_FLAG_SEEN);
	CHECK(mailbox_index_lookup(idx, 2) == NULL);
	CHECK_INT_EQ(mailbox_index_lookup(idx, 4)->modseq, h2);

	/* the other reader continues from where it stopped */
	uint64_t offset = other->offset;
	CHECK(mailbox_index_refresh(other) == 0);
	CHECK(other->offset > offset);
	CHECK_INT_EQ(other->count, 2);
	CHECK_INT_EQ(other->highest_modseq, h2);
	CHECK_INT_EQ(other->exp_count, 1);
	CHECK_INT_EQ(other->expunged[0].uid, 2);
	CHECK_INT_EQ(other->expunged[0].modseq, h2);

	/* set_flags from the other one; unchanged flags keep their modseq */
	struct mailbox_index_rec ch[2] = {
		{ .uid = 1, .flags = MAILBOX_FLAG_SEEN },
		{ .uid = 4, .flags = 0 },
	};
	CHECK(mailbox_index_set_flags(other, ch, 2, &error) == 0);
	CHECK_INT_EQ(ch[0].modseq, h2 + 1);
	CHECK_INT_EQ(ch[1].modseq, h2);
	CHECK(mailbox_index_refresh(idx) == 0);
	CHECK_INT_EQ(mailbox_index_lookup(idx, 1)->flags, MAILBOX_FLAG_SEEN);
	CHECK_INT_EQ(idx->highest_modseq, h2 + 1);

	/* a new UIDVALIDITY: rebuilt, every modseq above the old ones */
	ul->uid_validity = 43;
	CHECK(mailbox_index_reconcile(idx, ul, learn_fixed, &calls, &error) == 0);
	CHECK(idx->highest_modseq > h2 + 1);
	CHECK(idx->expunge_floor > h2 + 1);
	CHECK(mailbox_index_lookup(idx, 1)->modseq > h2 + 1);
	CHECK(mailbox_index_refresh(other) == 0);
	CHECK_INT_EQ(other->uid_validity, 43);
	CHECK_INT_EQ(other->highest_modseq, idx->highest_modseq);

	mailbox_index_free(&idx);
	mailbox_index_free(&other);
	uidlist_free(&ul);
	store_free(&store);
}

static void test_rewrite_keeps_newest_expunges(void)
{
	struct store *store = new_store();
	struct mailbox_index *idx = mailbox_index_new(store, "box"), *other;
	struct uidlist *ul = mf_calloc(1, sizeof(*ul));
	unsigned calls = 0;
	const char *error;
	char name[32];

	CHECK(io_mkdir(store_io(store), "box", 0700) == 0);
	ul->uid_validity = 1;
	for (uint32_t uid = 1; uid <= 3000; uid++) {
		snprintf(name, sizeof(name), "m%u:2,", uid);
		ul_add(ul, uid, name);
	}
	CHECK(mailbox_index_refresh(idx) == 0);
	CHECK(mailbox_index_reconcile(idx, ul, learn_fixed, &calls, &error) == 0);
	/* flip flags of all many times: the log is compacted on the way */
	for (int round = 0; round < 4; round++) {
		for (size_t i = 0; i < ul->count; i++) {
			char *f = ul->recs[i].filename;
			f[strlen(f) - 1] = round % 2 == 0 ? 'S' : ',';
		}
		CHECK(mailbox_index_reconcile(idx, ul, learn_fixed, &calls, &error) == 0);
	}
	struct io_stat st;
	CHECK(io_stat(store_io(store), "box/" MAILBOX_INDEX_FILE, &st) == 0);
	CHECK(st.size < MAILBOX_INDEX_HEADER_SIZE + 3u * 3000 * MAILBOX_INDEX_RECORD_SIZE);
	other = mailbox_index_new(store, "box");
	CHECK(mailbox_index_refresh(other) == 0);
	CHECK_INT_EQ(other->count, 3000);
	CHECK_INT_EQ(other->highest_modseq, idx->highest_modseq);
	CHECK_INT_EQ(mailbox_index_lookup(other, 17)->modseq, idx->highest_modseq);
	mailbox_index_free(&idx);
	mailbox_index_free(&other);
	uidlist_free(&ul);
	store_free(&store);
}

static void deliver(struct store *store, const char *text)
{
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	char *base;
	const char *error;

	CHECK(store_deliver(store, DOM, USR, NULL, &iov, 1, strlen(text), &base, &error) == 0);
	free(base);
}

static void test_store_flags_unchangedsince(void)
{
	struct store *store = new_store();
	struct mailbox *a = NULL, *b = NULL;
	const char *error;
	const struct mailbox_flag_change seen = { .add = MAILBOX_FLAG_SEEN };
	const struct mailbox_flag_change flag = { .add = MAILBOX_FLAG_FLAGGED };
	unsigned both[2] = { 0, 1 };
	bool mod[2] = { false, false }, exp[2] = { false, false };

	deliver(store, "Subject: 1\n\nx\n");
	deliver(store, "Subject: 2\n\ny\n");
	CHECK(mailbox_open(store, DOM, USR, "INBOX", false, &a, &error) == 0);
	CHECK(mailbox_open(store, DOM, USR, "INBOX", false, &b, &error) == 0);
	uint64_t h0 = a->highest_modseq;
	CHECK(h0 > 0 && b->highest_modseq == h0);
	CHECK(a->msgs[0].modseq <= h0);
	CHECK(mailbox_store_flags(b, both, 1, &seen, 0, mod, exp, &error) == 0);
	CHECK(b->msgs[0].modseq == h0 + 1 && b->highest_modseq == h0 + 1);
	/* a still believes h0: message 0 fails the condition and a learns its state */
	CHECK(mailbox_store_flags(a, both, 2, &flag, h0, mod, exp, &error) == 0);
	CHECK(mod[0] && !mod[1] && !exp[0] && !exp[1]);
	CHECK_INT_EQ(a->msgs[0].flags, MAILBOX_FLAG_SEEN);
	CHECK_INT_EQ(a->msgs[0].modseq, h0 + 1);
	CHECK_INT_EQ(a->msgs[1].flags, MAILBOX_FLAG_FLAGGED);
	CHECK_INT_EQ(a->msgs[1].modseq, h0 + 2);
	/* b syncs: sees the change with its modseq */
	CHECK(mailbox_sync(b, &error) == 0);
	CHECK_INT_EQ(b->msgs[1].flags, MAILBOX_FLAG_FLAGGED);
	CHECK_INT_EQ(b->msgs[1].modseq, h0 + 2);
	CHECK_INT_EQ(b->highest_modseq, h0 + 2);
	/* expunged by b: a's store skips it, a's sync records no new modseq twice */
	unsigned first = 0;
	CHECK(mailbox_expunge(b, &first, 1, false, &error) == 0);
	uint64_t h3 = b->highest_modseq;
	CHECK(h3 == h0 + 3);
	mod[0] = exp[0] = false;
	CHECK(mailbox_store_flags(a, both, 1, &flag, 0, mod, exp, &error) == 0);
	CHECK(exp[0]);
	CHECK(mailbox_sync(a, &error) == 0);
	CHECK_INT_EQ(a->count, 1);
	CHECK_INT_EQ(a->highest_modseq, h3);
	mailbox_free(&a);
	mailbox_free(&b);
	store_free(&store);
}

int main(void)
{
	test_run(test_parse_replay);
	test_run(test_reconcile);
	test_run(test_rewrite_keeps_newest_expunges);
	test_run(test_store_flags_unchangedsince);
	return test_exit();
}
