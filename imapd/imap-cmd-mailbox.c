/* imap-cmd-mailbox.c: the selected mailbox: SELECT / EXAMINE, NOOP and
 * CHECK (with the untagged updates other sessions' changes produce), CLOSE,
 * UNSELECT, EXPUNGE / UID EXPUNGE, STORE, COPY and MOVE; and the
 * helpers they share: flag lists, sequence sets, change detection. */
#include "imapd/imap-private.h"
#include "imapd/imap-quote.h"
#include "store/mailbox-index.h"
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	uint32_t flag;
} system_flags[] = {
	{ "\\Answered", MAILBOX_FLAG_ANSWERED }, { "\\Flagged", MAILBOX_FLAG_FLAGGED },
	{ "\\Deleted", MAILBOX_FLAG_DELETED }, { "\\Seen", MAILBOX_FLAG_SEEN },
	{ "\\Draft", MAILBOX_FLAG_DRAFT }, { "$Forwarded", MAILBOX_FLAG_FORWARDED },
};

void imap_write_flags(const struct imap_session *s, const struct mailbox_msg *m, struct buf *out)
{
	const struct mailbox *box = s->box;
	bool rev2 = s->imap4rev2;    /* no \Recent in IMAP4rev2 (RFC 9051 2.3.2) */
	bool first = true;

	buf_append(out, "(", 1);
	for (size_t i = 0; i < MF_N_ELEMENTS(system_flags); i++) {
		if ((m->flags & system_flags[i].flag) != 0) {
			buf_printf(out, "%s%s", first ? "" : " ", system_flags[i].name);
			first = false;
		}
	}
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if ((m->keywords & (1u << i)) != 0 && box->keywords[i] != NULL) {
			buf_printf(out, "%s%s", first ? "" : " ", box->keywords[i]);
			first = false;
		}
	}
	if (m->recent && !rev2)
		buf_printf(out, "%s\\Recent", first ? "" : " ");
	buf_append(out, ")", 1);
}

void imap_write_flag_lists(struct imap_session *s, bool force, struct buf *out)
{
	const struct mailbox *box = s->box;
	uint32_t have = 0;
	bool room = false;

	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if (box->keywords[i] != NULL)
			have |= 1u << i;
		else
			room = true;
	}
	if (!force && (have & ~s->keywords_told) == 0)
		return;
	s->keywords_told = have;
	buf_printf(out, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded");
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if (box->keywords[i] != NULL)
			buf_printf(out, " %s", box->keywords[i]);
	}
	buf_printf(out, ")\r\n* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Forwarded");
	for (unsigned i = 0; i < MAILBOX_KEYWORDS_MAX; i++) {
		if (box->keywords[i] != NULL)
			buf_printf(out, " %s", box->keywords[i]);
	}
	buf_printf(out, "%s)] Flags permitted\r\n", room && !box->read_only ? " \\*" : "");
}

static bool keyword_valid(const char *kw)
{
	if (kw[0] == '\0' || strlen(kw) > MAILBOX_KEYWORD_LEN_MAX)
		return false;
	for (const char *p = kw; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
			return false;
	}
	return true;
}

bool imap_parse_flags(const struct imap_arg *list, size_t count, uint32_t *flags_r,
		      const char **kw, unsigned *kw_count_r)
{
	const char *atom;

	*flags_r = 0;
	*kw_count_r = 0;
	for (size_t i = 0; i < count; i++) {
		bool found = false;
		if (!imap_arg_get_atom(&list[i], &atom))
			return false;
		for (size_t f = 0; f < MF_N_ELEMENTS(system_flags) && !found; f++) {
			if (strcasecmp(atom, system_flags[f].name) == 0) {
				*flags_r |= system_flags[f].flag;
				found = true;
			}
		}
		if (found || strcasecmp(atom, "\\Recent") == 0)
			continue;
		if (atom[0] == '\\' || !keyword_valid(atom))
			return false;
		if (*kw_count_r < MAILBOX_KEYWORDS_MAX)
			kw[(*kw_count_r)++] = atom;
	}
	return true;
}

/* ---- message sets ---- */

int imap_msgset(struct imap_session *s, const char *set, bool uid, unsigned **idx_r,
		unsigned *count_r)
{
	if (strcmp(set, "$") == 0) {
		/* SEARCHRES (RFC 5182): the saved result, a UID set in any command */
		char *saved = imap_searchres_uidset(s);
		int ret = 0;
		if (saved[0] == '\0') {
			*idx_r = mf_calloc(1, sizeof(**idx_r));
			*count_r = 0;
		} else {
			ret = imap_msgset(s, saved, true, idx_r, count_r);
		}
		free(saved);
		return ret;
	}
	struct imap_seq_range *ranges;
	size_t nranges;
	const char *error;
	const struct mailbox *box = s->box;
	unsigned *idx = mf_calloc(box->count + 1, sizeof(*idx)), n = 0;

	if (imap_seqset_parse(set, 0, &ranges, &nranges, &error) < 0) {
		free(idx);
		return -1;
	}
	if (uid) {
		uint32_t star = box->count > 0 ? box->msgs[box->count - 1].uid : 0;
		imap_seqset_resolve(ranges, &nranges, star);
		for (unsigned i = 0; i < box->count; i++) {
			if (imap_seqset_contains(ranges, nranges, box->msgs[i].uid))
				idx[n++] = i;
		}
	} else {
		imap_seqset_resolve(ranges, &nranges, box->count);
		for (size_t r = 0; r < nranges; r++) {
			for (uint32_t q = ranges[r].first; q != 0 && q <= ranges[r].last && q <= box->count; q++)
				idx[n++] = q - 1;
		}
		/* a sequence number past the end is an error (RFC 9051 6.4.1) */
		if (nranges > 0 && (ranges[nranges - 1].last > box->count || ranges[0].first == 0)) {
			mf_free(&ranges);
			free(idx);
			return -1;
		}
	}
	mf_free(&ranges);
	*idx_r = idx;
	*count_r = n;
	return 0;
}

/* ---- change detection ---- */

struct imap_view_msg *imap_view_save(const struct mailbox *box, unsigned *count_r)
{
	struct imap_view_msg *v = mf_calloc(box->count + 1, sizeof(*v));

	for (unsigned i = 0; i < box->count; i++) {
		v[i].uid = box->msgs[i].uid;
		v[i].flags = box->msgs[i].flags;
		v[i].keywords = box->msgs[i].keywords;
	}
	*count_r = box->count;
	return v;
}

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool box_has(const struct mailbox *box, uint32_t uid)
{
	for (unsigned lo = 0, hi = box->count; lo < hi;) {
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

/* "* VANISHED <set>" of UIDs collected from the highest down (reversed in
 * place); nothing when there are none. */
static void write_vanished_desc(struct buf *out, uint32_t *gone, size_t n)
{
	if (n == 0)
		return;
	for (size_t a = 0, b = n - 1; a < b; a++, b--) {
		uint32_t t = gone[a];
		gone[a] = gone[b];
		gone[b] = t;
	}
	buf_printf(out, "* VANISHED ");
	imap_write_uidset(out, gone, n);
	buf_printf(out, "\r\n");
}

/* What left the mailbox: "* n EXPUNGE" from the highest sequence number
 * down (so each number is still valid when the client reads it), or one
 * "* VANISHED <uids>" once QRESYNC is on (RFC 7162 3.2.10). */
static void write_expunges(struct imap_session *s, const struct imap_view_msg *old,
			   unsigned old_count, struct buf *out)
{
	uint32_t *gone = NULL;
	size_t n = 0;

	if (s->qresync)
		gone = mf_calloc(old_count + 1, sizeof(*gone));
	for (unsigned i = old_count; i > 0; i--) {
		if (box_has(s->box, old[i - 1].uid))
			continue;
		if (gone != NULL)
			gone[n++] = old[i - 1].uid;
		else
			buf_printf(out, "* %u EXPUNGE\r\n", i);
	}
	write_vanished_desc(out, gone, n);
	free(gone);
}

static void write_updates(struct imap_session *s, const struct imap_view_msg *old, unsigned old_count,
			  struct buf *out)
{
	const struct mailbox *box = s->box;
	unsigned recent = 0, j = 0;

	write_expunges(s, old, old_count, out);
	imap_write_flag_lists(s, false, out);
	for (unsigned i = 0; i < box->count; i++) {
		const struct mailbox_msg *m = &box->msgs[i];
		if (m->recent)
			recent++;
		while (j < old_count && old[j].uid < m->uid)
			j++;
		if (j < old_count && old[j].uid == m->uid &&
		    (old[j].flags != m->flags || old[j].keywords != m->keywords)) {
			buf_printf(out, "* %u FETCH (UID %u FLAGS ", i + 1, m->uid);
			imap_write_flags(s, m, out);
			imap_write_modseq(s, m, out);
			buf_printf(out, ")\r\n");
		}
	}
	if (box->count > 0 && (old_count == 0 || box->msgs[box->count - 1].uid > old[old_count - 1].uid)) {
		buf_printf(out, "* %u EXISTS\r\n", box->count);
		if (!s->imap4rev2)
			buf_printf(out, "* %u RECENT\r\n", recent);
	}
}

struct imap_idle_view *imap_idle_view_save(const struct imap_session *s)
{
	const struct mailbox *box = s->box;
	struct imap_idle_view *v = mf_calloc(1, sizeof(*v));
	unsigned cap = 0;

	v->count = box->count;
	v->modseq = box->highest_modseq;
	for (unsigned i = 0; i < box->count; i++) {
		uint32_t uid = box->msgs[i].uid;
		if (v->range_count > 0 && v->ranges[v->range_count - 1].last + 1 == uid) {
			v->ranges[v->range_count - 1].last = uid;
		} else {
			if (v->range_count == cap) {
				cap = cap < 4 ? 4 : cap * 2;
				v->ranges = mf_realloc(v->ranges, cap * sizeof(*v->ranges));
			}
			v->ranges[v->range_count++] = (struct imap_seq_range){ uid, uid };
		}
		if (box->msgs[i].recent) {
			v->recent = mf_realloc(v->recent, (v->recent_count + 1) * sizeof(*v->recent));
			v->recent[v->recent_count++] = uid;
		}
	}
	return v;
}

void imap_idle_view_free(struct imap_idle_view **vp)
{
	struct imap_idle_view *v = *vp;

	if (v == NULL)
		return;
	free(v->ranges);
	free(v->recent);
	mf_free(vp);
}

/* write_updates() against an idle view: expunges from the UID ranges,
 * flag changes from the modseqs, \Recent restored. */
static void write_idle_updates(struct imap_session *s, const struct imap_idle_view *v, struct buf *out)
{
	struct mailbox *box = s->box;
	uint32_t seq = v->count, *gone = NULL, max_uid = 0;
	size_t ngone = 0;
	unsigned recent = 0;

	if (s->qresync)
		gone = mf_calloc(v->count + 1, sizeof(*gone));
	for (unsigned r = v->range_count; r > 0; r--) {
		const struct imap_seq_range *rg = &v->ranges[r - 1];
		max_uid = MF_MAX(max_uid, rg->last);
		for (uint32_t u = rg->last; u >= rg->first && u != 0; u--, seq--) {
			if (box_has(box, u))
				continue;
			if (gone != NULL)
				gone[ngone++] = u;
			else
				buf_printf(out, "* %u EXPUNGE\r\n", seq);
		}
	}
	write_vanished_desc(out, gone, ngone);
	free(gone);
	imap_write_flag_lists(s, false, out);
	for (unsigned i = 0; i < box->count; i++) {
		struct mailbox_msg *m = &box->msgs[i];
		bool known = imap_seqset_contains(v->ranges, v->range_count, m->uid);
		if (known && v->recent_count > 0 &&
		    bsearch(&m->uid, v->recent, v->recent_count, sizeof(uint32_t), uid_cmp) != NULL)
			m->recent = true;
		if (m->recent)
			recent++;
		if (known && m->modseq > v->modseq) {
			buf_printf(out, "* %u FETCH (UID %u FLAGS ", i + 1, m->uid);
			imap_write_flags(s, m, out);
			imap_write_modseq(s, m, out);
			buf_printf(out, ")\r\n");
		}
	}
	if (box->count > 0 && box->msgs[box->count - 1].uid > max_uid) {
		buf_printf(out, "* %u EXISTS\r\n", box->count);
		if (!s->imap4rev2)
			buf_printf(out, "* %u RECENT\r\n", recent);
	}
}

int imap_sync_box(struct imap_session *s, struct buf *out, const char **error_r)
{
	unsigned old_count;
	struct imap_view_msg *old;

	if (s->idle_view != NULL) {
		if (mailbox_sync(s->box, error_r) < 0)
			return -1;     /* the idle view stays what the client knows */
		write_idle_updates(s, s->idle_view, out);
		imap_idle_view_free(&s->idle_view);
		return 0;
	}
	old = imap_view_save(s->box, &old_count);
	int ret = mailbox_sync(s->box, error_r);
	if (ret == 0)
		write_updates(s, old, old_count, out);
	free(old);
	return ret;
}

int imap_uid_refresh(struct imap_job *job, const char *set, unsigned **idx_r, unsigned *count_r)
{
	struct imap_session *s = job->s;
	const char *error;

	if (mailbox_changed(s->box) != 1 || imap_sync_box(s, &job->out, &error) < 0 || set == NULL)
		return 0;
	mf_free(idx_r);
	return imap_msgset(s, set, true, idx_r, count_r);
}

/* ---- SELECT / EXAMINE ---- */

struct select_data {
	char name[MAILBOX_NAME_BUF];
	bool read_only;
	struct mailbox *box;
	const char *error;
	int err;
	/* SELECT ... (QRESYNC (uidvalidity modseq [known-uids])) */
	bool qresync;
	uint32_t q_validity;
	uint64_t q_modseq;
	struct imap_seq_range *q_known;
	size_t q_known_count;
};

static void select_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct select_data *d = job->data;

	if (mailbox_open(s->ctx->store, s->user.domain, s->user.localpart, d->name, d->read_only,
			 &d->box, &d->error) < 0)
		d->err = errno;
}

/* QRESYNC (RFC 7162 3.2.5): what changed since the client's modseq, when
 * its UIDVALIDITY is still the mailbox's. */
static void write_qresync(struct imap_session *s, const struct select_data *d, struct buf *out)
{
	const struct mailbox *box = s->box;

	if (!d->qresync || d->q_validity != box->uid_validity)
		return;
	imap_write_vanished_since(s, d->q_modseq, d->q_known, d->q_known_count, out);
	for (unsigned i = 0; i < box->count; i++) {
		const struct mailbox_msg *m = &box->msgs[i];
		if (m->modseq <= d->q_modseq ||
		    (d->q_known != NULL && !imap_seqset_contains(d->q_known, d->q_known_count, m->uid)))
			continue;
		buf_printf(out, "* %u FETCH (UID %u FLAGS ", i + 1, m->uid);
		imap_write_flags(s, m, out);
		imap_write_modseq(s, m, out);
		buf_printf(out, ")\r\n");
	}
}

static void write_select(struct imap_session *s, struct imap_job *job, struct mailbox *box)
{
	struct buf *out = &job->out;
	unsigned recent = 0, first_unseen = 0;

	imap_write_flag_lists(s, true, out);
	for (unsigned i = 0; i < box->count; i++) {
		if (box->msgs[i].recent || box->msgs[i].in_new)
			recent++;
		if (first_unseen == 0 && (box->msgs[i].flags & MAILBOX_FLAG_SEEN) == 0)
			first_unseen = i + 1;
	}
	buf_printf(out, "* %u EXISTS\r\n", box->count);
	if (!s->imap4rev2) {
		buf_printf(out, "* %u RECENT\r\n", recent);
	} else {
		/* RFC 9051 6.3.2: the mailbox's LIST line */
		buf_printf(out, "* LIST () \"/\" ");
		imap_append_mailbox_name(s, out, box->name);
		buf_printf(out, "\r\n");
	}
	if (first_unseen != 0 && !s->imap4rev2)
		buf_printf(out, "* OK [UNSEEN %u] First unseen\r\n", first_unseen);
	buf_printf(out, "* OK [UIDVALIDITY %u] UIDs valid\r\n* OK [UIDNEXT %u] Predicted next UID\r\n",
		   box->uid_validity, box->uid_next);
	buf_printf(out, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)box->highest_modseq);
	write_qresync(s, job->data, out);
	buf_printf(out, "%s OK [%s] %s completed\r\n", job->tag, box->read_only ? "READ-ONLY" : "READ-WRITE",
		   box->read_only ? "Examine" : "Select");
}

static void select_finish(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct select_data *d = job->data;

	if (d->box == NULL) {
		buf_printf(&job->out, "%s NO %s%s\r\n", job->tag,
			   d->err == ENOENT ? "[NONEXISTENT] " : "[SERVERBUG] ", d->error);
		return;
	}
	s->box = d->box;
	d->box = NULL;
	s->state = IMAP_STATE_SELECTED;
	s->read_only = s->box->read_only;
	write_select(s, job, s->box);
}

static void select_data_free(void *data)
{
	struct select_data *d = data;

	mailbox_free(&d->box);
	free(d->q_known);
	free(d);
}

/* QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]]); the
 * sequence match data is accepted and not needed. */
static bool parse_qresync(struct imap_session *s, const struct imap_arg *arg, struct select_data *d)
{
	const struct imap_arg *list;
	size_t count;
	const char *atom, *error;
	char *end;

	if (!s->qresync || !imap_arg_get_list(arg, &list, &count) || count < 2 || count > 4 ||
	    !imap_arg_get_atom(&list[0], &atom))
		return false;
	unsigned long v = strtoul(atom, &end, 10);
	if (*end != '\0' || v == 0 || v > UINT32_MAX || !imap_parse_modseq(&list[1], &d->q_modseq) ||
	    d->q_modseq == 0)
		return false;
	d->q_validity = (uint32_t)v;
	d->qresync = true;
	if (count >= 3 && imap_arg_get_atom(&list[2], &atom)) {
		if (imap_seqset_parse(atom, 0, &d->q_known, &d->q_known_count, &error) < 0)
			return false;
		for (size_t i = 0; i < d->q_known_count; i++) {
			if (d->q_known[i].first == IMAP_SEQ_STAR || d->q_known[i].last == IMAP_SEQ_STAR)
				return false;
		}
		imap_seqset_resolve(d->q_known, &d->q_known_count, 0);
	} else if (count >= 3 && !imap_arg_get_list(&list[2], &list, &count)) {
		return false;
	}
	return true;
}

/* SELECT / EXAMINE parameters (RFC 4466): CONDSTORE, QRESYNC (...). */
static bool parse_select_params(struct imap_session *s, const struct imap_command *cmd,
				struct select_data *d)
{
	const struct imap_arg *list;
	size_t count;
	const char *atom;

	if (cmd->arg_count == 1)
		return true;
	if (cmd->arg_count != 2 || !imap_arg_get_list(&cmd->args[1], &list, &count))
		return false;
	for (size_t i = 0; i < count; i++) {
		if (!imap_arg_get_atom(&list[i], &atom))
			return false;
		if (strcasecmp(atom, "CONDSTORE") == 0) {
			s->condstore = true;
		} else if (strcasecmp(atom, "QRESYNC") == 0 && i + 1 < count && !d->qresync) {
			if (!parse_qresync(s, &list[++i], d))
				return false;
		} else {
			return false;
		}
	}
	return true;
}

static void select_common(struct imap_session *s, const struct imap_command *cmd, bool read_only)
{
	struct select_data *d = mf_calloc(1, sizeof(*d));
	struct imap_job *job;

	if (cmd->arg_count < 1 || !imap_client_mailbox_name(s, &cmd->args[0], d->name, sizeof(d->name))) {
		select_data_free(d);
		imap_bad(s, cmd->tag, "Invalid mailbox name");
		return;
	}
	if (!parse_select_params(s, cmd, d)) {
		select_data_free(d);
		imap_bad(s, cmd->tag, s->qresync ? "Invalid SELECT parameters" :
			 "Invalid SELECT parameters (QRESYNC needs ENABLE QRESYNC first)");
		return;
	}
	imap_searchres_reset(s);
	/* the previous mailbox is closed even if this SELECT fails */
	if (s->box != NULL) {
		mailbox_free(&s->box);
		s->state = IMAP_STATE_AUTH;
		if (s->qresync || s->imap4rev2)
			imap_printf(s, "* OK [CLOSED] Previous mailbox closed\r\n");
	}
	d->read_only = read_only;
	job = imap_job_new(s, cmd->tag, select_work);
	job->data = d;
	job->data_free = select_data_free;
	job->finish = select_finish;
	imap_job_start(job);
}

void imap_cmd_select(struct imap_session *s, const struct imap_command *cmd)
{
	select_common(s, cmd, false);
}

void imap_cmd_examine(struct imap_session *s, const struct imap_command *cmd)
{
	select_common(s, cmd, true);
}

void imap_cmd_unselect(struct imap_session *s, const struct imap_command *cmd)
{
	imap_searchres_reset(s);
	mailbox_free(&s->box);
	s->state = IMAP_STATE_AUTH;
	imap_tagged(s, cmd->tag, "OK Unselect completed");
}

/* ---- NOOP, CHECK: sync and report ---- */

static void sync_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	const char *error;
	const char *what = job->data;

	if (imap_sync_box(s, &job->out, &error) < 0)
		buf_printf(&job->out, "%s NO [SERVERBUG] %s\r\n", job->tag, error);
	else
		buf_printf(&job->out, "%s OK %s completed\r\n", job->tag, what);
}

static void sync_start(struct imap_session *s, const char *tag, const char *what)
{
	struct imap_job *job = imap_job_new(s, tag, sync_work);

	job->data = (void *)what;
	imap_job_start(job);
}

void imap_cmd_noop(struct imap_session *s, const struct imap_command *cmd)
{
	if (s->state == IMAP_STATE_SELECTED)
		sync_start(s, cmd->tag, "NOOP");
	else
		imap_tagged(s, cmd->tag, "OK NOOP completed");
}

void imap_cmd_check(struct imap_session *s, const struct imap_command *cmd)
{
	sync_start(s, cmd->tag, "CHECK");
}

/* ---- EXPUNGE, UID EXPUNGE, CLOSE ---- */

struct expunge_data {
	unsigned *uid_idx;       /* UID EXPUNGE: the set */
	unsigned uid_count;
	bool uid;
	bool close;              /* CLOSE: silent, then deselect */
};

static void expunge_data_free(void *data)
{
	struct expunge_data *d = data;

	free(d->uid_idx);
	free(d);
}

static void expunge_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct expunge_data *d = job->data;
	struct mailbox *box = s->box;
	unsigned *idx = mf_calloc(box->count + 1, sizeof(*idx)), n = 0, old_count;
	struct imap_view_msg *old = imap_view_save(box, &old_count);
	const char *error;

	for (unsigned i = 0; i < box->count; i++) {
		bool in_set = !d->uid;
		for (unsigned k = 0; k < d->uid_count && !in_set; k++)
			in_set = d->uid_idx[k] == i;
		if (in_set && (box->msgs[i].flags & MAILBOX_FLAG_DELETED) != 0)
			idx[n++] = i;
	}
	if (mailbox_expunge(box, idx, n, true, &error) < 0) {
		buf_printf(&job->out, "%s NO [SERVERBUG] %s\r\n", job->tag, error);
	} else {
		if (!d->close)
			write_updates(s, old, old_count, &job->out);
		buf_printf(&job->out, "%s OK %s completed\r\n", job->tag, d->close ? "Close" : "Expunge");
	}
	free(idx);
	free(old);
}

static void close_finish(struct imap_job *job)
{
	imap_searchres_reset(job->s);
	job->s->state = IMAP_STATE_AUTH;
	mailbox_free(&job->s->box);
}

void imap_cmd_expunge(struct imap_session *s, const struct imap_command *cmd)
{
	struct expunge_data *d = mf_calloc(1, sizeof(*d));
	const char *set;
	struct imap_job *job;

	d->uid = strcmp(cmd->name, "UID EXPUNGE") == 0;
	if ((d->uid && (cmd->arg_count != 1 || !imap_arg_get_atom(&cmd->args[0], &set) ||
			imap_msgset(s, set, true, &d->uid_idx, &d->uid_count) < 0)) ||
	    (!d->uid && cmd->arg_count != 0)) {
		expunge_data_free(d);
		imap_bad(s, cmd->tag, "Invalid arguments");
		return;
	}
	if (s->read_only) {
		expunge_data_free(d);
		imap_tagged(s, cmd->tag, "NO [READ-ONLY] Mailbox is read-only");
		return;
	}
	job = imap_job_new(s, cmd->tag, expunge_work);
	job->data = d;
	job->data_free = expunge_data_free;
	imap_job_start(job);
}

void imap_cmd_close(struct imap_session *s, const struct imap_command *cmd)
{
	struct expunge_data *d;
	struct imap_job *job;

	if (s->read_only) {
		imap_searchres_reset(s);
		mailbox_free(&s->box);
		s->state = IMAP_STATE_AUTH;
		imap_tagged(s, cmd->tag, "OK Close completed");
		return;
	}
	d = mf_calloc(1, sizeof(*d));
	d->close = true;
	job = imap_job_new(s, cmd->tag, expunge_work);
	job->data = d;
	job->data_free = expunge_data_free;
	job->finish = close_finish;
	imap_job_start(job);
}

/* ---- STORE ---- */

enum store_mode { STORE_SET, STORE_ADD, STORE_REMOVE };

struct store_data {
	unsigned *idx, count;
	char *set;
	enum store_mode mode;
	bool silent, uid;
	uint32_t flags;
	char *kw[MAILBOX_KEYWORDS_MAX];
	unsigned kw_count;
	bool conditional;            /* (UNCHANGEDSINCE n) */
	uint64_t unchanged_since;
};

static void store_data_free(void *data)
{
	struct store_data *d = data;

	free(d->idx);
	free(d->set);
	for (unsigned i = 0; i < d->kw_count; i++)
		free(d->kw[i]);
	free(d);
}

static struct mailbox_flag_change store_change(const struct store_data *d, uint32_t kw)
{
	const uint32_t all_flags = MAILBOX_FLAG_DRAFT | MAILBOX_FLAG_FLAGGED | MAILBOX_FLAG_ANSWERED |
		MAILBOX_FLAG_SEEN | MAILBOX_FLAG_DELETED | MAILBOX_FLAG_FORWARDED;
	struct mailbox_flag_change ch = { 0 };

	if (d->mode == STORE_REMOVE) {
		ch.remove = d->flags;
		ch.kw_remove = kw;
	} else {
		ch.add = d->flags;
		ch.kw_add = kw;
		if (d->mode == STORE_SET) {
			ch.remove = all_flags & ~d->flags;
			ch.kw_remove = ~kw;
		}
	}
	return ch;
}

/* The untagged FETCH for one stored message: FLAGS unless .SILENT, and
 * with CONDSTORE the MODSEQ even when silent (RFC 7162 3.1.3). A silent
 * STORE still reports the flags when they are not what the client expects
 * (another session changed others meanwhile), so its view stays right. */
static void store_write_fetch(struct imap_session *s, const struct store_data *d, unsigned idx,
			      const struct mailbox_msg *before, const struct mailbox_flag_change *ch,
			      struct buf *out)
{
	const struct mailbox_msg *m = &s->box->msgs[idx];
	bool changed = m->modseq != before->modseq;
	bool expected = m->flags == ((before->flags | ch->add) & ~ch->remove) &&
		m->keywords == ((before->keywords | ch->kw_add) & ~ch->kw_remove);
	bool silent = d->silent && expected;

	if (silent && !(s->condstore && changed))
		return;
	buf_printf(out, "* %u FETCH (", idx + 1);
	if (d->uid || s->qresync)
		buf_printf(out, "UID %u ", m->uid);
	if (!silent) {
		buf_printf(out, "FLAGS ");
		imap_write_flags(s, m, out);
		imap_write_modseq(s, m, out);
	} else {
		buf_printf(out, "MODSEQ (%llu)", (unsigned long long)m->modseq);
	}
	buf_printf(out, ")\r\n");
}

static void store_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct store_data *d = job->data;
	struct mailbox *box = s->box;
	uint32_t kw = 0;
	const char *error = NULL;

	if (d->uid)
		imap_uid_refresh(job, d->set, &d->idx, &d->count);
	for (unsigned i = 0; i < d->kw_count; i++) {
		int k = mailbox_keyword_index(box, d->kw[i], d->mode != STORE_REMOVE);
		if (k >= 0)
			kw |= 1u << k;
	}
	struct mailbox_flag_change ch = store_change(d, kw);
	bool *modified = mf_calloc(d->count + 1, sizeof(bool));
	bool *expunged = mf_calloc(d->count + 1, sizeof(bool));
	struct mailbox_msg *before = mf_calloc(d->count + 1, sizeof(*before));
	unsigned *run = mf_calloc(d->count + 1, sizeof(unsigned)), nrun = 0;
	bool failed = false;

	for (unsigned i = 0; i < d->count; i++) {
		before[i] = box->msgs[d->idx[i]];
		before[i].filename = NULL;
		/* UNCHANGEDSINCE 0 fails for every message (RFC 7162 3.1.3) */
		if (d->conditional && d->unchanged_since == 0)
			modified[i] = true;
		else
			run[nrun++] = d->idx[i];
	}
	bool *mod_run = mf_calloc(nrun + 1, sizeof(bool)), *exp_run = mf_calloc(nrun + 1, sizeof(bool));
	if (nrun > 0 && mailbox_store_flags(box, run, nrun, &ch, d->conditional ? d->unchanged_since : 0,
					     mod_run, exp_run, &error) < 0)
		failed = true;
	imap_write_flag_lists(s, false, &job->out);
	for (unsigned i = 0, t = 0; i < d->count; i++) {
		if (modified[i])
			continue;
		modified[i] = mod_run[t];
		expunged[i] = exp_run[t];
		t++;
		if (failed || expunged[i])
			continue;
		const struct mailbox_msg *m = &box->msgs[d->idx[i]];
		if (!modified[i]) {
			store_write_fetch(s, d, d->idx[i], &before[i], &ch, &job->out);
		} else if (m->modseq != before[i].modseq) {
			/* failed the condition: the client learns the state it lost to */
			buf_printf(&job->out, "* %u FETCH (UID %u FLAGS ", d->idx[i] + 1, m->uid);
			imap_write_flags(s, m, &job->out);
			buf_printf(&job->out, " MODSEQ (%llu))\r\n", (unsigned long long)m->modseq);
		}
	}
	if (failed) {
		buf_printf(&job->out, "%s NO Flags could not be changed: %s\r\n", job->tag, error);
	} else {
		struct buf set;
		buf_init(&set, 0);
		for (unsigned i = 0; i < d->count; i++) {
			if (modified[i])
				buf_printf(&set, "%s%u", set.len == 0 ? "" : ",",
					   d->uid ? box->msgs[d->idx[i]].uid : d->idx[i] + 1);
		}
		if (set.len > 0)
			buf_printf(&job->out, "%s OK [MODIFIED %.*s] Conditional STORE failed for some\r\n",
				   job->tag, (int)set.len, (const char *)set.data);
		else
			buf_printf(&job->out, "%s OK Store completed\r\n", job->tag);
		buf_free(&set);
	}
	free(modified);
	free(expunged);
	free(before);
	free(run);
	free(mod_run);
	free(exp_run);
}

/* The optional "(UNCHANGEDSINCE n)" modifier list (RFC 7162 3.1.3). */
static bool store_modifiers(struct imap_session *s, const struct imap_arg *arg, struct store_data *d)
{
	const struct imap_arg *list;
	size_t count;

	if (!imap_arg_get_list(arg, &list, &count) || count != 2 ||
	    !imap_arg_atom_equals(&list[0], "UNCHANGEDSINCE") ||
	    !imap_parse_modseq(&list[1], &d->unchanged_since))
		return false;
	d->conditional = true;
	imap_condstore_enabling(s);
	return true;
}

static bool store_parse(struct imap_session *s, const struct imap_command *cmd, struct store_data *d)
{
	const char *set, *item, *kw[MAILBOX_KEYWORDS_MAX];
	const struct imap_arg *list, *args = cmd->args;
	size_t count;

	if (cmd->arg_count == 4) {
		if (!store_modifiers(s, &args[1], d))
			return false;
		args = cmd->args + 1;
	} else if (cmd->arg_count != 3) {
		return false;
	}
	if (!imap_arg_get_atom(&cmd->args[0], &set) || !imap_arg_get_atom(&args[1], &item))
		return false;
	if (imap_arg_get_list(&args[2], &list, &count)) {
		if (!imap_parse_flags(list, count, &d->flags, kw, &d->kw_count))
			return false;
	} else if (!imap_parse_flags(&args[2], 1, &d->flags, kw, &d->kw_count)) {
		return false;
	}
	for (unsigned i = 0; i < d->kw_count; i++)
		d->kw[i] = mf_strdup(kw[i]);
	d->mode = item[0] == '+' ? STORE_ADD : item[0] == '-' ? STORE_REMOVE : STORE_SET;
	if (d->mode != STORE_SET)
		item++;
	if (strcasecmp(item, "FLAGS.SILENT") == 0)
		d->silent = true;
	else if (strcasecmp(item, "FLAGS") != 0)
		return false;
	d->set = mf_strdup(set);
	return imap_msgset(s, set, d->uid, &d->idx, &d->count) == 0;
}

void imap_cmd_store(struct imap_session *s, const struct imap_command *cmd)
{
	struct store_data *d = mf_calloc(1, sizeof(*d));
	struct imap_job *job;

	d->uid = strncmp(cmd->name, "UID ", 4) == 0;
	if (!store_parse(s, cmd, d)) {
		store_data_free(d);
		imap_bad(s, cmd->tag, "Invalid STORE arguments");
		return;
	}
	if (s->read_only) {
		store_data_free(d);
		imap_tagged(s, cmd->tag, "NO [READ-ONLY] Mailbox is read-only");
		return;
	}
	job = imap_job_new(s, cmd->tag, store_work);
	job->data = d;
	job->data_free = store_data_free;
	imap_job_start(job);
}

/* ---- COPY, MOVE ---- */

struct copy_data {
	unsigned *idx, count;
	char dest[MAILBOX_NAME_BUF];
	bool uid, move;
};

static void copy_data_free(void *data)
{
	struct copy_data *d = data;

	free(d->idx);
	free(d);
}

static void write_uid_set(struct buf *out, const uint32_t *uids, unsigned count)
{
	for (unsigned i = 0; i < count; i++)
		buf_printf(out, "%s%u", i == 0 ? "" : ",", uids[i]);
}

static void copy_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct copy_data *d = job->data;
	struct mailbox *box = s->box;
	uint32_t *src_uids = mf_calloc(d->count + 1, sizeof(*src_uids));
	uint32_t *dst_uids = mf_calloc(d->count + 1, sizeof(*dst_uids)), validity = 0;
	const char *error;
	struct buf code;

	buf_init(&code, 0);
	for (unsigned i = 0; i < d->count; i++)
		src_uids[i] = box->msgs[d->idx[i]].uid;
	int ret = d->count == 0 ? 0 :
		mailbox_copy(box, d->idx, d->count, d->dest, d->move, &validity, dst_uids, &error);
	int err = errno;
	unsigned done = 0;
	for (unsigned i = 0; i < d->count; i++) {
		/* a MOVE skips what another session moved or expunged first */
		if (dst_uids[i] != 0) {
			src_uids[done] = src_uids[i];
			dst_uids[done++] = dst_uids[i];
		}
	}
	if (done > 0) {
		buf_printf(&code, "[COPYUID %u ", validity);
		write_uid_set(&code, src_uids, done);
		buf_printf(&code, " ");
		write_uid_set(&code, dst_uids, done);
		buf_printf(&code, "] ");
	}
	if (d->move) {
		if (code.len > 0)
			buf_printf(&job->out, "* OK %.*s Moved\r\n", (int)code.len - 1, code.data);
		/* the moved files left the mailbox: the sync reports them */
		if (imap_sync_box(s, &job->out, &error) < 0 && ret == 0) {
			buf_printf(&job->out, "%s NO [SERVERBUG] Moved, but the mailbox cannot be read: %s\r\n",
				   job->tag, error);
			goto out;
		}
		if (ret < 0)
			buf_printf(&job->out, "%s NO %s%s\r\n", job->tag, err == ENOENT ? "[TRYCREATE] " : "", error);
		else if (done == 0 && d->count > 0)
			buf_printf(&job->out, "%s NO [EXPUNGEISSUED] The messages were moved or expunged meanwhile\r\n",
				   job->tag);
		else
			buf_printf(&job->out, "%s OK Move completed\r\n", job->tag);
	} else if (ret < 0) {
		buf_printf(&job->out, "%s NO %s%s\r\n", job->tag, err == ENOENT ? "[TRYCREATE] " : "", error);
	} else if (done == 0 && d->count > 0) {
		/* what another session expunged meanwhile is not there to copy
		 * (RFC 2180 4.4): the rest is copied, the command succeeds */
		buf_printf(&job->out, "%s OK [EXPUNGEISSUED] Nothing copied, the messages were expunged\r\n",
			   job->tag);
	} else {
		buf_printf(&job->out, "%s OK %.*sCopy completed%s\r\n", job->tag, (int)code.len, code.data,
			   done < d->count ? ", some messages were expunged meanwhile" : "");
	}
out:
	buf_free(&code);
	free(src_uids);
	free(dst_uids);
}

static void copy_common(struct imap_session *s, const struct imap_command *cmd, bool move)
{
	struct copy_data *d = mf_calloc(1, sizeof(*d));
	const char *set;
	struct imap_job *job;

	d->uid = strncmp(cmd->name, "UID ", 4) == 0;
	d->move = move;
	if (cmd->arg_count != 2 || !imap_arg_get_atom(&cmd->args[0], &set) ||
	    !imap_client_mailbox_name(s, &cmd->args[1], d->dest, sizeof(d->dest)) ||
	    imap_msgset(s, set, d->uid, &d->idx, &d->count) < 0) {
		copy_data_free(d);
		imap_bad(s, cmd->tag, "Invalid arguments");
		return;
	}
	if (move && s->read_only) {
		copy_data_free(d);
		imap_tagged(s, cmd->tag, "NO [READ-ONLY] Mailbox is read-only");
		return;
	}
	job = imap_job_new(s, cmd->tag, copy_work);
	job->data = d;
	job->data_free = copy_data_free;
	imap_job_start(job);
}

void imap_cmd_copy(struct imap_session *s, const struct imap_command *cmd)
{
	copy_common(s, cmd, false);
}

void imap_cmd_move(struct imap_session *s, const struct imap_command *cmd)
{
	copy_common(s, cmd, true);
}
