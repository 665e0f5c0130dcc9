/* imap-search.c: SEARCH and UID SEARCH (RFC 3501 6.4.4): flags and
 * keywords, sequence and UID sets, internal-date comparisons, sizes,
 * header and text substrings (case-insensitive, headers with encoded words
 * decoded; CHARSET UTF-8 and US-ASCII), NOT, OR and parenthesised groups.
 * Message files are read only when a text key needs them. */
#include "imapd/imap-private.h"
#include "lib/mime.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SEARCH_NODES_MAX 256
#define SEARCH_DEPTH_MAX 32

enum skey {
	K_ALL, K_FLAG, K_UNFLAG, K_RECENT, K_NEW, K_OLD, K_KEYWORD, K_UNKEYWORD, K_HEADER, K_BODY,
	K_TEXT, K_BEFORE, K_ON, K_SINCE, K_LARGER, K_SMALLER, K_UIDSET, K_SEQSET, K_NOT, K_OR, K_AND,
};

struct snode {
	enum skey key;
	uint32_t flag;
	char *str, *header;
	int64_t num;                   /* date (day start, UTC) or size */
	struct imap_seq_range *ranges;
	size_t range_count;
	struct snode *a, *b;           /* NOT / OR operands; AND: a = first child, next links */
	struct snode *next;
};

struct search_data {
	struct snode *root;
	unsigned nodes;
	bool uid;
};

struct search_msg {
	unsigned char *data;
	size_t len;
	struct mime_message *msg;
	bool loaded, failed;
};

static void snode_free(struct snode *n)
{
	while (n != NULL) {
		struct snode *next = n->next;
		snode_free(n->a);
		snode_free(n->b);
		free(n->str);
		free(n->header);
		free(n->ranges);
		free(n);
		n = next;
	}
}

static void search_data_free(void *data)
{
	struct search_data *d = data;

	snode_free(d->root);
	free(d);
}

/* ---- parsing ---- */

static bool parse_day(const char *s, int64_t *day_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4];
	int day, year, used = 0;
	struct tm tm = { 0 };

	if (sscanf(s, "%2d-%3c-%4d%n", &day, mon, &year, &used) != 3 || s[used] != '\0')
		return false;
	mon[3] = '\0';
	const char *m = strcasestr(months, mon);
	if (m == NULL || (m - months) % 3 != 0 || day < 1 || day > 31 || year < 1900)
		return false;
	tm.tm_mday = day;
	tm.tm_mon = (int)((m - months) / 3);
	tm.tm_year = year - 1900;
	*day_r = (int64_t)timegm(&tm);
	return true;
}

struct parse_ctx {
	struct imap_session *s;
	const struct imap_arg *args;
	size_t count, pos;
	unsigned nodes, depth;
	bool uid;
};

static struct snode *parse_key(struct parse_ctx *p);

static const char *next_string(struct parse_ctx *p)
{
	const char *str;

	if (p->pos >= p->count || !imap_arg_get_astring(&p->args[p->pos], &str))
		return NULL;
	p->pos++;
	return str;
}

static struct snode *parse_and(struct parse_ctx *p, const struct imap_arg *args, size_t count)
{
	struct parse_ctx sub = *p;
	struct snode *and = mf_calloc(1, sizeof(*and)), **tail = &and->a;

	and->key = K_AND;
	sub.args = args;
	sub.count = count;
	sub.pos = 0;
	sub.depth++;
	if (sub.depth > SEARCH_DEPTH_MAX || count == 0) {
		free(and);
		return NULL;
	}
	while (sub.pos < sub.count) {
		struct snode *n = parse_key(&sub);
		if (n == NULL) {
			snode_free(and);
			return NULL;
		}
		*tail = n;
		tail = &n->next;
	}
	p->nodes = sub.nodes;
	return and;
}

static const struct { const char *name; enum skey key; uint32_t flag; } flag_keys[] = {
	{ "ANSWERED", K_FLAG, MAILBOX_FLAG_ANSWERED }, { "DELETED", K_FLAG, MAILBOX_FLAG_DELETED },
	{ "DRAFT", K_FLAG, MAILBOX_FLAG_DRAFT }, { "FLAGGED", K_FLAG, MAILBOX_FLAG_FLAGGED },
	{ "SEEN", K_FLAG, MAILBOX_FLAG_SEEN }, { "UNANSWERED", K_UNFLAG, MAILBOX_FLAG_ANSWERED },
	{ "UNDELETED", K_UNFLAG, MAILBOX_FLAG_DELETED }, { "UNDRAFT", K_UNFLAG, MAILBOX_FLAG_DRAFT },
	{ "UNFLAGGED", K_UNFLAG, MAILBOX_FLAG_FLAGGED }, { "UNSEEN", K_UNFLAG, MAILBOX_FLAG_SEEN },
	{ "ALL", K_ALL, 0 }, { "RECENT", K_RECENT, 0 }, { "NEW", K_NEW, 0 }, { "OLD", K_OLD, 0 },
};

static const struct { const char *name; const char *header; } header_keys[] = {
	{ "FROM", "From" }, { "TO", "To" }, { "CC", "Cc" }, { "BCC", "Bcc" }, { "SUBJECT", "Subject" },
};

static bool parse_word(struct parse_ctx *p, const char *w, struct snode *n)
{
	const char *str;

	for (size_t i = 0; i < MF_N_ELEMENTS(flag_keys); i++) {
		if (strcasecmp(w, flag_keys[i].name) == 0) {
			n->key = flag_keys[i].key;
			n->flag = flag_keys[i].flag;
			return true;
		}
	}
	for (size_t i = 0; i < MF_N_ELEMENTS(header_keys); i++) {
		if (strcasecmp(w, header_keys[i].name) == 0) {
			n->key = K_HEADER;
			n->header = mf_strdup(header_keys[i].header);
			return (str = next_string(p)) != NULL && (n->str = mf_strdup(str)) != NULL;
		}
	}
	if (strcasecmp(w, "HEADER") == 0) {
		const char *name = next_string(p);
		n->key = K_HEADER;
		return name != NULL && (n->header = mf_strdup(name)) != NULL &&
			(str = next_string(p)) != NULL && (n->str = mf_strdup(str)) != NULL;
	}
	if (strcasecmp(w, "BODY") == 0 || strcasecmp(w, "TEXT") == 0) {
		n->key = strcasecmp(w, "BODY") == 0 ? K_BODY : K_TEXT;
		return (str = next_string(p)) != NULL && (n->str = mf_strdup(str)) != NULL;
	}
	if (strcasecmp(w, "KEYWORD") == 0 || strcasecmp(w, "UNKEYWORD") == 0) {
		n->key = strcasecmp(w, "KEYWORD") == 0 ? K_KEYWORD : K_UNKEYWORD;
		return (str = next_string(p)) != NULL && (n->str = mf_strdup(str)) != NULL;
	}
	if (strcasecmp(w, "BEFORE") == 0 || strcasecmp(w, "ON") == 0 || strcasecmp(w, "SINCE") == 0) {
		n->key = strcasecmp(w, "BEFORE") == 0 ? K_BEFORE : strcasecmp(w, "ON") == 0 ? K_ON : K_SINCE;
		return (str = next_string(p)) != NULL && parse_day(str, &n->num);
	}
	if (strcasecmp(w, "LARGER") == 0 || strcasecmp(w, "SMALLER") == 0) {
		char *end;
		n->key = strcasecmp(w, "LARGER") == 0 ? K_LARGER : K_SMALLER;
		if ((str = next_string(p)) == NULL || !isdigit((unsigned char)str[0]))
			return false;
		n->num = (int64_t)strtoull(str, &end, 10);
		return *end == '\0';
	}
	if (strcasecmp(w, "UID") == 0) {
		const char *error;
		n->key = K_UIDSET;
		return (str = next_string(p)) != NULL &&
			imap_seqset_parse(str, 0, &n->ranges, &n->range_count, &error) == 0;
	}
	if (strcasecmp(w, "NOT") == 0) {
		n->key = K_NOT;
		return (n->a = parse_key(p)) != NULL;
	}
	if (strcasecmp(w, "OR") == 0) {
		n->key = K_OR;
		return (n->a = parse_key(p)) != NULL && (n->b = parse_key(p)) != NULL;
	}
	const char *error;
	n->key = K_SEQSET;
	return (isdigit((unsigned char)w[0]) || w[0] == '*') &&
		imap_seqset_parse(w, 0, &n->ranges, &n->range_count, &error) == 0;
}

static struct snode *parse_key(struct parse_ctx *p)
{
	const struct imap_arg *list;
	size_t count;
	const char *w;

	if (p->pos >= p->count || ++p->nodes > SEARCH_NODES_MAX)
		return NULL;
	if (imap_arg_get_list(&p->args[p->pos], &list, &count)) {
		p->pos++;
		return parse_and(p, list, count);
	}
	if (!imap_arg_get_atom(&p->args[p->pos], &w))
		return NULL;
	p->pos++;
	struct snode *n = mf_calloc(1, sizeof(*n));
	if (!parse_word(p, w, n)) {
		snode_free(n);
		return NULL;
	}
	return n;
}

/* ---- evaluation ---- */

static void msg_load(struct imap_session *s, unsigned idx, struct search_msg *sm)
{
	const char *error;

	if (sm->loaded)
		return;
	sm->loaded = true;
	if (mailbox_read(s->box, idx, SIZE_MAX, &sm->data, &sm->len, &error) < 0) {
		sm->failed = true;
		return;
	}
	sm->msg = mime_parse(sm->data, sm->len, NULL, MIME_PARSE_LF_TO_CRLF);
}

static bool contains(const unsigned char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	if (n == 0)
		return true;
	for (size_t i = 0; i + n <= len; i++) {
		if (strncasecmp((const char *)hay + i, needle, n) == 0)
			return true;
	}
	return false;
}

static bool header_match(struct search_msg *sm, const struct snode *n)
{
	struct mime_header_iter iter;
	struct mime_field f;
	bool found = false;

	mime_header_iter_init(&iter, sm->msg, sm->msg->root);
	while (!found && mime_header_next(&iter, &f)) {
		if (f.name_len != strlen(n->header) || strncasecmp(f.name, n->header, f.name_len) != 0)
			continue;
		struct buf raw, dec;
		buf_init(&raw, 0);
		buf_init(&dec, 0);
		mime_field_unfold(f.value, f.value_len, &raw);
		if (raw.len > 0)
			mime_decode_words((const char *)raw.data, raw.len, &dec);
		found = contains(dec.data != NULL ? dec.data : (const unsigned char *)"", dec.len, n->str) ||
			contains(raw.data != NULL ? raw.data : (const unsigned char *)"", raw.len, n->str);
		buf_free(&raw);
		buf_free(&dec);
	}
	return found;
}

/* The decoded text of leaf parts (transfer encoding undone, text parts
 * converted to UTF-8), so BODY and TEXT find words in base64 and
 * quoted-printable bodies too. */
static bool parts_contain(const struct search_msg *sm, const struct mime_part *part, const char *needle)
{
	if (part->kind != MIME_PART_LEAF) {
		for (const struct mime_part *c = part->children; c != NULL; c = c->next) {
			if (parts_contain(sm, c, needle))
				return true;
		}
		return false;
	}
	const unsigned char *body = sm->data + part->body_offset;
	struct buf dec, utf8;
	bool found;
	char *charset = NULL;

	if (part->encoding == NULL || strcasecmp(part->encoding, "7bit") == 0 ||
	    strcasecmp(part->encoding, "8bit") == 0 || strcasecmp(part->encoding, "binary") == 0)
		return contains(body, part->body.physical, needle);
	buf_init(&dec, 0);
	buf_init(&utf8, 0);
	if (mime_decode_transfer(part->encoding, body, part->body.physical, &dec) < 0) {
		buf_free(&dec);
		return contains(body, part->body.physical, needle);
	}
	if (part->type == NULL || strcasecmp(part->type, "text") == 0)
		charset = mime_param_get_utf8(part->params, part->param_count, "charset");
	if (charset != NULL && dec.len > 0 &&
	    mime_charset_to_utf8(charset, dec.data, dec.len, &utf8) == 0)
		found = contains(utf8.data, utf8.len, needle);
	else
		found = contains(dec.data != NULL ? dec.data : (const unsigned char *)"", dec.len, needle);
	free(charset);
	buf_free(&dec);
	buf_free(&utf8);
	return found;
}

static int64_t day_of(int64_t t)
{
	return t - ((t % 86400) + 86400) % 86400;
}

static bool eval(struct imap_session *s, const struct snode *n, unsigned idx, struct search_msg *sm)
{
	const struct mailbox_msg *m = &s->box->msgs[idx];
	int k;

	switch (n->key) {
	case K_ALL: return true;
	case K_FLAG: return (m->flags & n->flag) != 0;
	case K_UNFLAG: return (m->flags & n->flag) == 0;
	case K_RECENT: return m->recent;
	case K_OLD: return !m->recent;
	case K_NEW: return m->recent && (m->flags & MAILBOX_FLAG_SEEN) == 0;
	case K_KEYWORD:
	case K_UNKEYWORD:
		k = mailbox_keyword_index(s->box, n->str, false);
		return (k >= 0 && (m->keywords & (1u << k)) != 0) == (n->key == K_KEYWORD);
	case K_BEFORE: return day_of(m->internal_date) < n->num;
	case K_ON: return day_of(m->internal_date) == n->num;
	case K_SINCE: return day_of(m->internal_date) >= n->num;
	case K_LARGER: return m->vsize > (uint64_t)n->num;
	case K_SMALLER: return m->vsize < (uint64_t)n->num;
	case K_UIDSET: return imap_seqset_contains(n->ranges, n->range_count, m->uid);
	case K_SEQSET: return imap_seqset_contains(n->ranges, n->range_count, idx + 1);
	case K_NOT: return !eval(s, n->a, idx, sm);
	case K_OR: return eval(s, n->a, idx, sm) || eval(s, n->b, idx, sm);
	case K_AND:
		for (const struct snode *c = n->a; c != NULL; c = c->next) {
			if (!eval(s, c, idx, sm))
				return false;
		}
		return true;
	case K_HEADER:
	case K_BODY:
	case K_TEXT:
		msg_load(s, idx, sm);
		if (sm->failed)
			return false;
		if (n->key == K_HEADER)
			return header_match(sm, n);
		if (n->key == K_TEXT && contains(sm->data + sm->msg->root->header_offset,
						 sm->msg->root->header.physical, n->str))
			return true;
		return parts_contain(sm, sm->msg->root, n->str);
	}
	return false;
}

/* Resolves '*' in the sets once the mailbox is known. */
static void resolve_sets(struct snode *n, uint32_t max_uid, uint32_t count)
{
	for (; n != NULL; n = n->next) {
		if (n->key == K_UIDSET)
			imap_seqset_resolve(n->ranges, &n->range_count, max_uid);
		else if (n->key == K_SEQSET)
			imap_seqset_resolve(n->ranges, &n->range_count, count);
		resolve_sets(n->a, max_uid, count);
		resolve_sets(n->b, max_uid, count);
	}
}

static void search_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct search_data *d = job->data;
	struct mailbox *box;

	if (d->uid)
		imap_uid_refresh(job, NULL, NULL, NULL);
	box = s->box;
	resolve_sets(d->root, box->count > 0 ? box->msgs[box->count - 1].uid : 0, box->count);
	buf_printf(&job->out, "* SEARCH");
	for (unsigned i = 0; i < box->count; i++) {
		struct search_msg sm = { 0 };
		if (eval(s, d->root, i, &sm))
			buf_printf(&job->out, " %u", d->uid ? box->msgs[i].uid : i + 1);
		mime_message_free(&sm.msg);
		free(sm.data);
	}
	buf_printf(&job->out, "\r\n%s OK Search completed\r\n", job->tag);
}

void imap_cmd_search(struct imap_session *s, const struct imap_command *cmd)
{
	struct parse_ctx p = { .s = s, .args = cmd->args, .count = cmd->arg_count };
	struct search_data *d;
	struct imap_job *job;
	const char *charset;

	if (p.count >= 2 && imap_arg_atom_equals(&cmd->args[0], "CHARSET")) {
		if (!imap_arg_get_astring(&cmd->args[1], &charset)) {
			imap_bad(s, cmd->tag, "Invalid CHARSET");
			return;
		}
		if (strcasecmp(charset, "UTF-8") != 0 && strcasecmp(charset, "US-ASCII") != 0) {
			imap_tagged(s, cmd->tag, "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
			return;
		}
		p.args += 2;
		p.count -= 2;
	}
	d = mf_calloc(1, sizeof(*d));
	d->uid = strncmp(cmd->name, "UID ", 4) == 0;
	d->root = parse_and(&p, p.args, p.count);
	if (d->root == NULL) {
		search_data_free(d);
		imap_bad(s, cmd->tag, "Invalid SEARCH arguments");
		return;
	}
	job = imap_job_new(s, cmd->tag, search_work);
	job->data = d;
	job->data_free = search_data_free;
	imap_job_start(job);
}
