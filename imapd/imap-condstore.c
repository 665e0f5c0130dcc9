/* imap-condstore.c: CONDSTORE and QRESYNC (RFC 7162) pieces shared by
 * SELECT, FETCH, STORE and the untagged updates: enabling, the
 * mod-sequence parameters, compact UID sets and VANISHED responses. The
 * mod-sequences themselves come from the mailbox index (store/
 * mailbox-index.h) through struct mailbox. */
#include "imapd/imap-private.h"
#include "store/mailbox-index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool imap_enable_modseq(struct imap_session *s, const char *name)
{
	if (strcasecmp(name, "CONDSTORE") == 0) {
		imap_condstore_enabling(s);
		return true;
	}
	if (strcasecmp(name, "QRESYNC") == 0) {
		imap_condstore_enabling(s);
		s->qresync = true;
		return true;
	}
	return false;
}

void imap_condstore_enabling(struct imap_session *s)
{
	/* RFC 7162 3.1: the first CONDSTORE enabling command while a mailbox is
	 * selected reports its HIGHESTMODSEQ, as SELECT would have */
	if (!s->condstore && s->box != NULL)
		imap_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			    (unsigned long long)s->box->highest_modseq);
	s->condstore = true;
}

bool imap_parse_modseq(const struct imap_arg *arg, uint64_t *modseq_r)
{
	const char *atom;
	char *end;

	if (!imap_arg_get_atom(arg, &atom) || atom[0] < '0' || atom[0] > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(atom, &end, 10);
	/* mod-sequence-valzer: 0 .. 2^63 - 1 */
	if (errno != 0 || *end != '\0' || v > INT64_MAX)
		return false;
	*modseq_r = v;
	return true;
}

void imap_write_uidset(struct buf *out, const uint32_t *uids, size_t count)
{
	for (size_t i = 0; i < count;) {
		size_t j = i;
		while (j + 1 < count && uids[j + 1] == uids[j] + 1)
			j++;
		buf_printf(out, "%s%u", i == 0 ? "" : ",", uids[i]);
		if (j > i)
			buf_printf(out, ":%u", uids[j]);
		i = j + 1;
	}
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool box_has_uid(const struct mailbox *box, uint32_t uid)
{
	unsigned lo = 0, hi = box->count;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (box->msgs[mid].uid == uid)
			return true;
		if (box->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* First index of box->msgs with uid >= the given one. */
static unsigned msg_pos(const struct mailbox *box, uint32_t uid)
{
	unsigned lo = 0, hi = box->count;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (box->msgs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static void set_add_range(struct buf *set, uint32_t first, uint32_t last)
{
	buf_printf(set, "%s%u", set->len == 0 ? "" : ",", first);
	if (last > first)
		buf_printf(set, ":%u", last);
}

/* The UIDs in known (resolved ranges; NULL = 1..uid_next-1) that the
 * mailbox does not hold, as ranges of the gaps between its messages: what
 * is reported when the index no longer remembers the expunges after the
 * client's modseq (RFC 7162 3.2.10 lets VANISHED (EARLIER) name UIDs that
 * never existed). */
static void missing_in_range(const struct mailbox *box, const struct imap_seq_range *known,
			     size_t nknown, struct buf *set)
{
	uint32_t top = box->uid_next > 1 ? box->uid_next - 1 : 0;
	struct imap_seq_range all = { 1, top };

	if (known == NULL) {
		known = &all;
		nknown = top > 0 ? 1 : 0;
	}
	for (size_t r = 0; r < nknown; r++) {
		uint32_t first = known[r].first, last = MF_MIN(known[r].last, top);
		unsigned i = msg_pos(box, first);
		while (first != 0 && first <= last) {
			if (i < box->count && box->msgs[i].uid == first) {
				if (first == UINT32_MAX)
					break;
				first++;
				i++;
				continue;
			}
			uint32_t gap_end = i < box->count && box->msgs[i].uid <= last ?
				box->msgs[i].uid - 1 : last;
			set_add_range(set, first, gap_end);
			if (gap_end == UINT32_MAX)
				break;
			first = gap_end + 1;
		}
	}
}

void imap_write_vanished_since(struct imap_session *s, uint64_t modseq,
			       const struct imap_seq_range *known, size_t nknown, struct buf *out)
{
	const struct mailbox_index *idx = s->box->index;
	struct buf set;

	buf_init(&set, 0);
	if (modseq < idx->expunge_floor) {
		missing_in_range(s->box, known, nknown, &set);
	} else {
		uint32_t *uids = mf_calloc(idx->exp_count + 1, sizeof(*uids));
		size_t n = 0, w = 0;
		for (size_t i = 0; i < idx->exp_count; i++) {
			const struct mailbox_index_expunge *e = &idx->expunged[i];
			if (e->modseq <= modseq || box_has_uid(s->box, e->uid))
				continue;
			if (known != NULL && !imap_seqset_contains(known, nknown, e->uid))
				continue;
			uids[n++] = e->uid;
		}
		qsort(uids, n, sizeof(*uids), uid_cmp);
		for (size_t i = 0; i < n; i++) {
			if (w == 0 || uids[w - 1] != uids[i])
				uids[w++] = uids[i];
		}
		imap_write_uidset(&set, uids, w);
		free(uids);
	}
	if (set.len > 0)
		buf_printf(out, "* VANISHED (EARLIER) %.*s\r\n", (int)set.len, (const char *)set.data);
	buf_free(&set);
}

void imap_write_modseq(struct imap_session *s, const struct mailbox_msg *m, struct buf *out)
{
	if (s->condstore)
		buf_printf(out, " MODSEQ (%llu)", (unsigned long long)m->modseq);
}
