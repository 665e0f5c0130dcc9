/* fuzz-mailbox-index.c: libFuzzer target for the mailbox index replay in
 * store/mailbox-index.c. Whatever is read must leave the records strictly
 * ascending by UID, the highest modseq at or above every record's, the
 * replayed length on a record boundary within the input; and the state
 * written back out (header, a MSG record per message, the expunges) must
 * replay to the same state. */
#include "store/mailbox-index.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const struct mailbox_index *idx, size_t size)
{
	if (idx->offset > size || (idx->offset != 0 &&
	    (idx->offset - MAILBOX_INDEX_HEADER_SIZE) % MAILBOX_INDEX_RECORD_SIZE != 0))
		abort();
	for (size_t i = 0; i < idx->count; i++) {
		if ((i > 0 && idx->recs[i - 1].uid >= idx->recs[i].uid) ||
		    idx->recs[i].modseq > idx->highest_modseq || idx->recs[i].uid == 0)
			abort();
		if (mailbox_index_lookup(idx, idx->recs[i].uid) != &idx->recs[i])
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mailbox_index *idx = mailbox_index_new(NULL, "fuzz"), *again;
	size_t n, len;
	unsigned char *out, *p;

	mailbox_index_parse(idx, data, size);
	check(idx, size);
	if (idx->offset == 0) {
		mailbox_index_free(&idx);
		return 0;
	}
	n = idx->count + idx->exp_count;
	len = MAILBOX_INDEX_HEADER_SIZE + n * MAILBOX_INDEX_RECORD_SIZE;
	out = malloc(len);
	mailbox_index_encode_header(out, idx);
	p = out + MAILBOX_INDEX_HEADER_SIZE;
	for (size_t i = 0; i < idx->count; i++, p += MAILBOX_INDEX_RECORD_SIZE)
		mailbox_index_encode_rec(p, MAILBOX_INDEX_REC_MSG, &idx->recs[i]);
	for (size_t i = 0; i < idx->exp_count; i++, p += MAILBOX_INDEX_RECORD_SIZE) {
		struct mailbox_index_rec rec = { .uid = idx->expunged[i].uid, .modseq = idx->expunged[i].modseq };
		mailbox_index_encode_rec(p, MAILBOX_INDEX_REC_EXPUNGE, &rec);
	}
	again = mailbox_index_new(NULL, "fuzz");
	mailbox_index_parse(again, out, len);
	check(again, len);
	if (again->need_rewrite || again->offset != len || again->uid_validity != idx->uid_validity)
		abort();
	/* an expunge record of a UID that is live again removes it on replay,
	 * so compare only when the expunged UIDs are all gone */
	bool live_expunged = false;
	for (size_t i = 0; i < idx->exp_count; i++)
		live_expunged |= mailbox_index_lookup(idx, idx->expunged[i].uid) != NULL;
	if (!live_expunged) {
		if (again->count != idx->count || again->exp_count != idx->exp_count ||
		    again->highest_modseq < idx->highest_modseq)
			abort();
		for (size_t i = 0; i < idx->count; i++) {
			const struct mailbox_index_rec *a = &again->recs[i], *b = &idx->recs[i];
			if (a->uid != b->uid || a->flags != b->flags || a->keywords != b->keywords ||
			    a->modseq != b->modseq || a->size != b->size || a->vsize != b->vsize ||
			    a->date != b->date)
				abort();
		}
	}
	free(out);
	mailbox_index_free(&idx);
	mailbox_index_free(&again);
	return 0;
}
