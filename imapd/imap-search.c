/* imap-search.c: SEARCH and UID SEARCH (RFC 3501 6.4.4, RFC 9051 6.4.4):
 * flags and keywords, sequence and UID sets, internal-date and sent-date
 * (Date: header) comparisons, sizes, header and text substrings
 * (case-insensitive over UTF-8, headers with encoded words decoded, bodies
 * with their transfer encoding undone and converted to UTF-8; CHARSET
 * UTF-8 and US-ASCII), NOT, OR and parenthesised groups, and MODSEQ
 * (RFC 7162 3.1.5). Results as "* SEARCH" or, with RETURN (...) (RFC 4731
 * ESEARCH) or once IMAP4rev2 is enabled, as "* ESEARCH" with MIN, MAX, ALL
 * (compact sequence set) and COUNT. RETURN (SAVE) keeps the result as
 * "$" (RFC 5182 SEARCHRES), which later SEARCHes (and, through
 * imap_searchres_uidset(), other commands) can use. Message files are read
 * only when a text or sent-date key needs them. */
#include "imapd/imap-private.h"
#include "lib/mime.h"
#include "store/mailbox-cache.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SEARCH_NODES_MAX 256
#define SEARCH_DEPTH_MAX 32
#define SEARCH_ERROR_MAX 128

enum skey {
	K_ALL, K_FLAG, K_UNFLAG, K_RECENT, K_NEW, K_OLD, K_KEYWORD, K_UNKEYWORD, K_HEADER, K_BODY,
	K_TEXT, K_BEFORE, K_ON, K_SINCE, K_SENTBEFORE, K_SENTON, K_SENTSINCE, K_LARGER, K_SMALLER,
	K_UIDSET, K_SEQSET, K_MODSEQ, K_SAVED, K_NOT, K_OR, K_AND,
};

/* RETURN options (RFC 4731) */
enum search_ret {
	RET_MIN = 1 << 0, RET_MAX = 1 << 1, RET_ALL = 1 << 2, RET_COUNT = 1 << 3,
	RET_SAVE = 1 << 4,             /* SEARCHRES (RFC 5182) */
};

struct snode {
	enum skey key;
	uint32_t flag;
	char *str, *header;            /* str: case-folded for substring keys */
	int64_t num;                   /* date (day start, UTC), size or modseq */
	struct imap_seq_range *ranges;
	size_t range_count;
	struct snode *a, *b;           /* NOT / OR operands; AND: a = first child, next links */
	struct snode *next;
};

struct search_data {
	struct snode *root;
	bool uid;
	bool esearch;                  /* answer with * ESEARCH */
	unsigned ret;                  /* enum search_ret */
	bool modseq;                   /* a MODSEQ key was used */
	uint32_t *saved;               /* "$" when the command started (UIDs) */
	unsigned saved_count;
	uint32_t *save;                /* RETURN (SAVE): the new "$" */
	unsigned save_count;
};

struct search_msg {
	unsigned char *data;
	size_t len;
	struct mime_message *msg;
	bool loaded, failed;
	/* the cached list header fields (mailbox-cache.h), parsed: header keys
	 * on those fields need no message file */
	unsigned char *hdr_data;
	struct mime_message *hdr_msg;
	bool hdr_loaded;
	struct buf scratch;            /* folded text being searched */
	const uint32_t *saved;         /* "$" (search_data) */
	unsigned saved_count;
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
	free(d->saved);
	free(d->save);
	free(d);
}

/* ---- case folding (UTF-8, length preserving) ---- */

/* Lower case of the letters of Latin-1, Latin Extended-A, Greek and
 * Cyrillic; each maps to a code point of the same UTF-8 length. */
static uint32_t fold_cp(uint32_t c)
{
	if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
		return c + 0x20;
	if ((c >= 0x100 && c <= 0x137) || (c >= 0x14A && c <= 0x177))
		return c | 1;
	if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
		return (c & 1) != 0 ? c + 1 : c;
	if (c == 0x178)
		return 0xFF;
	if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
		return c + 0x20;
	if (c >= 0x410 && c <= 0x42F)
		return c + 0x20;
	if (c >= 0x400 && c <= 0x40F)
		return c + 0x50;
	return c;
}

/* Folds text in place: ASCII letters and the two-byte letters above;
 * other bytes (invalid UTF-8 too) stay as they are. */
static void fold_text(unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = p[i];
		if (c < 0x80) {
			if (c >= 'A' && c <= 'Z')
				p[i] = (unsigned char)(c + 32);
			continue;
		}
		if ((c & 0xE0) != 0xC0 || i + 1 >= len || (p[i + 1] & 0xC0) != 0x80)
			continue;
		uint32_t cp = ((uint32_t)(c & 0x1F) << 6) | (p[i + 1] & 0x3F);
		uint32_t f = fold_cp(cp);
		if (f != cp && f < 0x800) {
			p[i] = (unsigned char)(0xC0 | (f >> 6));
			p[i + 1] = (unsigned char)(0x80 | (f & 0x3F));
		}
		i++;
	}
}

static char *folded_dup(const char *s)
{
	char *f = mf_strdup(s);

	fold_text((unsigned char *)f, strlen(f));
	return f;
}

/* ---- parsing ---- */

static bool parse_day(const char *s, int64_t *day_r)
{
	static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
	char mon[4];
	int day, year, used = 0;
	struct tm tm = { 0 };

	if (!isdigit((unsigned char)s[0]) ||
	    sscanf(s, "%2d-%3c-%4d%n", &day, mon, &year, &used) != 3 || s[used] != '\0')
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
	bool modseq;
	bool saved;                    /* "$" was used */
	char error[SEARCH_ERROR_MAX];
};

static struct snode *parse_key(struct parse_ctx *p);

static bool parse_fail(struct parse_ctx *p, const char *what, const char *key)
{
	if (p->error[0] == '\0')
		snprintf(p->error, sizeof(p->error), "%s %.40s", what, key);
	return false;
}

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
		snprintf(p->error, sizeof(p->error), "%s", count == 0 ? "Empty search key list" :
			 "Search keys nested too deeply");
		return NULL;
	}
	while (sub.pos < sub.count) {
		struct snode *n = parse_key(&sub);
		if (n == NULL) {
			snode_free(and);
			memcpy(p->error, sub.error, sizeof(p->error));
			return NULL;
		}
		*tail = n;
		tail = &n->next;
	}
	p->nodes = sub.nodes;
	p->modseq = sub.modseq;
	p->saved = sub.saved;
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

static const struct { const char *name; enum skey key; } date_keys[] = {
	{ "BEFORE", K_BEFORE }, { "ON", K_ON }, { "SINCE", K_SINCE },
	{ "SENTBEFORE", K_SENTBEFORE }, { "SENTON", K_SENTON }, { "SENTSINCE", K_SENTSINCE },
};

static bool parse_number(const char *str, uint64_t max, int64_t *num_r)
{
	char *end;

	if (str == NULL || !isdigit((unsigned char)str[0]))
		return false;
	errno = 0;
	unsigned long long v = strtoull(str, &end, 10);
	if (*end != '\0' || errno != 0 || v > max)
		return false;
	*num_r = (int64_t)v;
	return true;
}

/* MODSEQ [<entry-name> <entry-type-req>] <mod-sequence-valzer> (RFC 7162
 * 3.1.5): per-flag entries are not kept apart, so the message's modseq
 * stands for every entry. */
static bool parse_modseq(struct parse_ctx *p, struct snode *n)
{
	const char *str, *type;

	n->key = K_MODSEQ;
	p->modseq = true;
	if (p->pos < p->count && (p->args[p->pos].type == IMAP_ARG_STRING ||
				  p->args[p->pos].type == IMAP_ARG_LITERAL)) {
		p->pos++;
		if (p->pos >= p->count || !imap_arg_get_atom(&p->args[p->pos], &type) ||
		    (strcasecmp(type, "priv") != 0 && strcasecmp(type, "shared") != 0 &&
		     strcasecmp(type, "all") != 0))
			return parse_fail(p, "Invalid entry type for", "MODSEQ");
		p->pos++;
	}
	if (p->pos >= p->count || !imap_arg_get_atom(&p->args[p->pos], &str) ||
	    !parse_number(str, INT64_MAX, &n->num))
		return parse_fail(p, "Invalid number for", "MODSEQ");
	p->pos++;
	return true;
}

static bool parse_string_key(struct parse_ctx *p, const char *w, struct snode *n)
{
	const char *str;

	for (size_t i = 0; i < MF_N_ELEMENTS(header_keys); i++) {
		if (strcasecmp(w, header_keys[i].name) == 0) {
			n->key = K_HEADER;
			n->header = mf_strdup(header_keys[i].header);
			if ((str = next_string(p)) == NULL)
				return parse_fail(p, "Missing string for", w);
			n->str = folded_dup(str);
			return true;
		}
	}
	if (strcasecmp(w, "HEADER") == 0) {
		const char *name = next_string(p);
		n->key = K_HEADER;
		if (name == NULL || name[0] == '\0' || (str = next_string(p)) == NULL)
			return parse_fail(p, "Missing field name or string for", w);
		n->header = mf_strdup(name);
		n->str = folded_dup(str);
		return true;
	}
	if (strcasecmp(w, "BODY") == 0 || strcasecmp(w, "TEXT") == 0) {
		n->key = strcasecmp(w, "BODY") == 0 ? K_BODY : K_TEXT;
		if ((str = next_string(p)) == NULL)
			return parse_fail(p, "Missing string for", w);
		n->str = folded_dup(str);
		return true;
	}
	if (strcasecmp(w, "KEYWORD") == 0 || strcasecmp(w, "UNKEYWORD") == 0) {
		n->key = strcasecmp(w, "KEYWORD") == 0 ? K_KEYWORD : K_UNKEYWORD;
		if (p->pos >= p->count || !imap_arg_get_atom(&p->args[p->pos], &str) || str[0] == '\\')
			return parse_fail(p, "Missing keyword for", w);
		p->pos++;
		n->str = mf_strdup(str);
		return true;
	}
	return parse_fail(p, "Unknown search key", w);
}

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
	for (size_t i = 0; i < MF_N_ELEMENTS(date_keys); i++) {
		if (strcasecmp(w, date_keys[i].name) == 0) {
			n->key = date_keys[i].key;
			if ((str = next_string(p)) == NULL || !parse_day(str, &n->num))
				return parse_fail(p, "Invalid date for", w);
			return true;
		}
	}
	if (strcasecmp(w, "LARGER") == 0 || strcasecmp(w, "SMALLER") == 0) {
		n->key = strcasecmp(w, "LARGER") == 0 ? K_LARGER : K_SMALLER;
		if (!parse_number(next_string(p), UINT32_MAX, &n->num))
			return parse_fail(p, "Invalid number for", w);
		return true;
	}
	if (strcmp(w, "$") == 0) {
		n->key = K_SAVED;
		p->saved = true;
		return true;
	}
	if (strcasecmp(w, "UID") == 0) {
		const char *error;
		n->key = K_UIDSET;
		if (p->pos < p->count && imap_arg_atom_equals(&p->args[p->pos], "$")) {
			p->pos++;
			n->key = K_SAVED;
			p->saved = true;
			return true;
		}
		if ((str = next_string(p)) == NULL ||
		    imap_seqset_parse(str, 0, &n->ranges, &n->range_count, &error) < 0)
			return parse_fail(p, "Invalid UID set for", w);
		return true;
	}
	if (strcasecmp(w, "MODSEQ") == 0)
		return parse_modseq(p, n);
	if (strcasecmp(w, "NOT") == 0) {
		n->key = K_NOT;
		return (n->a = parse_key(p)) != NULL || parse_fail(p, "Missing operand for", w);
	}
	if (strcasecmp(w, "OR") == 0) {
		n->key = K_OR;
		return ((n->a = parse_key(p)) != NULL && (n->b = parse_key(p)) != NULL) ||
			parse_fail(p, "Missing operand for", w);
	}
	if (isdigit((unsigned char)w[0]) || w[0] == '*') {
		const char *error;
		n->key = K_SEQSET;
		if (imap_seqset_parse(w, 0, &n->ranges, &n->range_count, &error) < 0)
			return parse_fail(p, "Invalid sequence set", w);
		return true;
	}
	return parse_string_key(p, w, n);
}

static struct snode *parse_key(struct parse_ctx *p)
{
	const struct imap_arg *list;
	size_t count;
	const char *w;

	if (p->pos >= p->count)
		return NULL;
	if (++p->nodes > SEARCH_NODES_MAX) {
		snprintf(p->error, sizeof(p->error), "Too many search keys");
		return NULL;
	}
	if (imap_arg_get_list(&p->args[p->pos], &list, &count)) {
		p->pos++;
		return parse_and(p, list, count);
	}
	if (!imap_arg_get_atom(&p->args[p->pos], &w)) {
		snprintf(p->error, sizeof(p->error), "Search key expected");
		return NULL;
	}
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

/* The message's cached header fields as a parsed header block; false when
 * it has no cache entry. */
static bool hdr_load(struct imap_session *s, unsigned idx, struct search_msg *sm)
{
	struct mailbox_cache_entry e;

	if (!sm->hdr_loaded) {
		sm->hdr_loaded = true;
		if (mailbox_cache_lookup(s->box, idx, &e)) {
			size_t len = e.len[MAILBOX_CACHE_HEADERS];
			sm->hdr_data = mf_malloc(len + 3);
			memcpy(sm->hdr_data, e.data[MAILBOX_CACHE_HEADERS], len);
			memcpy(sm->hdr_data + len, "\r\n", 3);
			sm->hdr_msg = mime_parse(sm->hdr_data, len + 2, NULL, MIME_PARSE_LF_TO_CRLF);
		}
	}
	return sm->hdr_msg != NULL;
}

static void hdr_free(struct search_msg *sm)
{
	mime_message_free(&sm->hdr_msg);
	mf_free(&sm->hdr_data);
	sm->hdr_loaded = false;
}

/* needle (already folded) in the folded copy of hay. */
static bool contains(struct search_msg *sm, const unsigned char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);

	if (n == 0)
		return true;
	if (len < n)
		return false;
	buf_reset(&sm->scratch);
	if (buf_append(&sm->scratch, hay, len) < 0)
		return false;
	fold_text(sm->scratch.data, sm->scratch.len);
	return memmem(sm->scratch.data, sm->scratch.len, needle, n) != NULL;
}

static bool contains_buf(struct search_msg *sm, const struct buf *b, const char *needle)
{
	return contains(sm, b->data != NULL ? b->data : (const unsigned char *)"", b->len, needle);
}

static bool is_address_field(const char *name)
{
	static const char *const fields[] = { "From", "To", "Cc", "Bcc", "Sender", "Reply-To" };

	for (size_t i = 0; i < MF_N_ELEMENTS(fields); i++) {
		if (strcasecmp(name, fields[i]) == 0)
			return true;
	}
	return false;
}

/* The addresses as the envelope has them ("name <mailbox@host>, ..."), so
 * FROM finds "user@host" in "<user (comment) @ host>" too (RFC 3501 6.4.4
 * searches the envelope's field). */
static bool address_match(struct search_msg *sm, const struct buf *raw, const char *needle)
{
	struct mime_address *a;
	unsigned int count;
	struct buf text, dec;
	char *value = mf_strndup(raw->data != NULL ? (const char *)raw->data : "", raw->len);
	bool found;

	mime_address_parse(value, 0, &a, &count);
	buf_init(&text, 0);
	buf_init(&dec, 0);
	for (unsigned int i = 0; i < count; i++) {
		if (a[i].name != NULL)
			buf_printf(&text, "%s ", a[i].name);
		buf_printf(&text, "<%s@%s>, ", a[i].mailbox != NULL ? a[i].mailbox : "",
			   a[i].host != NULL ? a[i].host : "");
	}
	if (text.len > 0)
		mime_decode_words((const char *)text.data, text.len, &dec);
	found = contains_buf(sm, &dec, needle);
	mime_address_free(&a, count);
	buf_free(&text);
	buf_free(&dec);
	free(value);
	return found;
}

static bool header_match(struct search_msg *sm, const struct mime_message *msg, const struct snode *n)
{
	struct mime_header_iter iter;
	struct mime_field f;
	bool found = false;

	mime_header_iter_init(&iter, msg, msg->root);
	while (!found && mime_header_next(&iter, &f)) {
		if (f.name_len != strlen(n->header) || strncasecmp(f.name, n->header, f.name_len) != 0)
			continue;
		struct buf raw, dec;
		buf_init(&raw, 0);
		buf_init(&dec, 0);
		mime_field_unfold(f.value, f.value_len, &raw);
		if (raw.len > 0)
			mime_decode_words((const char *)raw.data, raw.len, &dec);
		found = contains_buf(sm, &dec, n->str) || contains_buf(sm, &raw, n->str) ||
			(n->str[0] != '\0' && is_address_field(n->header) && address_match(sm, &raw, n->str));
		buf_free(&raw);
		buf_free(&dec);
	}
	return found;
}

static bool charset_is_utf8(const char *charset)
{
	return charset == NULL || strcasecmp(charset, "utf-8") == 0 ||
		strcasecmp(charset, "us-ascii") == 0 || strcasecmp(charset, "utf8") == 0;
}

/* A leaf part's text: transfer encoding undone, text converted to UTF-8. */
static bool leaf_contains(struct search_msg *sm, const struct mime_part *part, const char *needle)
{
	const unsigned char *body = sm->data + part->body_offset;
	struct buf dec, utf8;
	const struct buf *text = &dec;
	char *charset = NULL;
	bool found;

	buf_init(&dec, 0);
	buf_init(&utf8, 0);
	if (mime_decode_transfer(part->encoding, body, part->body.physical, &dec) < 0) {
		buf_free(&dec);
		return contains(sm, body, part->body.physical, needle);
	}
	if (part->type == NULL || strcasecmp(part->type, "text") == 0)
		charset = mime_param_get_utf8(part->params, part->param_count, "charset");
	if (!charset_is_utf8(charset) && dec.len > 0 &&
	    mime_charset_to_utf8(charset, dec.data, dec.len, &utf8) == 0)
		text = &utf8;
	found = contains_buf(sm, text, needle);
	free(charset);
	buf_free(&dec);
	buf_free(&utf8);
	return found;
}

/* The header of part, raw and with encoded words decoded. */
static bool part_header_contains(struct search_msg *sm, const struct mime_part *part,
				 const char *needle)
{
	const unsigned char *hdr = sm->data + part->header_offset;
	struct buf dec;
	bool found;

	if (contains(sm, hdr, part->header.physical, needle))
		return true;
	buf_init(&dec, 0);
	mime_decode_words((const char *)hdr, part->header.physical, &dec);
	found = contains_buf(sm, &dec, needle);
	buf_free(&dec);
	return found;
}

/* The decoded text of the parts, so BODY and TEXT find words in base64
 * and quoted-printable bodies too; an attached message's header counts as
 * body text of the outer message. */
static bool parts_contain(struct search_msg *sm, const struct mime_part *part, const char *needle)
{
	if (part->kind == MIME_PART_LEAF)
		return leaf_contains(sm, part, needle);
	for (const struct mime_part *c = part->children; c != NULL; c = c->next) {
		if (part->kind == MIME_PART_MESSAGE && part_header_contains(sm, c, needle))
			return true;
		if (parts_contain(sm, c, needle))
			return true;
	}
	return false;
}

static int64_t day_of(int64_t t)
{
	return t - ((t % 86400) + 86400) % 86400;
}

/* The day of an RFC 5322 date ("[Www,] D Mon YYYY ..."), time and zone
 * disregarded (RFC 3501 SENTBEFORE); false when it cannot be read. */
static bool rfc5322_day(const char *value, int64_t *day_r)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	const char *p = value;
	char mon[4];
	int day, year;
	struct tm tm = { 0 };

	while (*p == ' ' || *p == '\t')
		p++;
	if (isalpha((unsigned char)*p)) {
		/* day-of-week "," */
		while (isalpha((unsigned char)*p))
			p++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p++ != ',')
			return false;
	}
	if (sscanf(p, " %2d %3[A-Za-z] %4d", &day, mon, &year) != 3 || strlen(mon) != 3)
		return false;
	for (char *c = mon; *c != '\0'; c++)
		*c = (char)tolower((unsigned char)*c);
	const char *m = strstr(months, mon);
	if (m == NULL || (m - months) % 3 != 0 || day < 1 || day > 31)
		return false;
	if (year < 50)
		year += 2000;
	else if (year < 1000)
		year += 1900;   /* obs-year: two or three digits */
	tm.tm_mday = day;
	tm.tm_mon = (int)((m - months) / 3);
	tm.tm_year = year - 1900;
	*day_r = (int64_t)timegm(&tm);
	return true;
}

/* The sent date's day, or the internal date's when Date: is absent or
 * unreadable. */
static int64_t sent_day(struct imap_session *s, unsigned idx, struct search_msg *sm)
{
	int64_t day;
	const struct mime_message *msg = NULL;

	if (hdr_load(s, idx, sm)) {
		msg = sm->hdr_msg;
	} else {
		msg_load(s, idx, sm);
		msg = sm->failed ? NULL : sm->msg;
	}
	if (msg != NULL) {
		char *date = mime_header_get(msg, msg->root, "Date");
		bool ok = date != NULL && rfc5322_day(date, &day);
		free(date);
		if (ok)
			return day;
	}
	return day_of(s->box->msgs[idx].internal_date);
}

static bool eval(struct imap_session *s, const struct snode *n, unsigned idx, struct search_msg *sm);

static int uid_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool in_saved(const struct search_msg *sm, uint32_t uid)
{
	return sm->saved_count > 0 &&
		bsearch(&uid, sm->saved, sm->saved_count, sizeof(uid), uid_cmp) != NULL;
}

static bool eval_text(struct imap_session *s, const struct snode *n, unsigned idx,
		      struct search_msg *sm)
{
	bool cacheable = n->key == K_HEADER && mailbox_cache_header_cached(n->header, strlen(n->header));
	if (cacheable && hdr_load(s, idx, sm))
		return header_match(sm, sm->hdr_msg, n);
	bool was_loaded = sm->loaded;
	msg_load(s, idx, sm);
	if (sm->failed)
		return false;
	/* read for a cacheable header: the next search of it needs no file */
	if (cacheable && !was_loaded)
		imap_cache_add(s->box, idx, sm->msg);
	if (n->key == K_HEADER)
		return header_match(sm, sm->msg, n);
	if (n->key == K_TEXT && part_header_contains(sm, sm->msg->root, n->str))
		return true;
	return parts_contain(sm, sm->msg->root, n->str);
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
	case K_SENTBEFORE: return sent_day(s, idx, sm) < n->num;
	case K_SENTON: return sent_day(s, idx, sm) == n->num;
	case K_SENTSINCE: return sent_day(s, idx, sm) >= n->num;
	case K_LARGER: return m->vsize > (uint64_t)n->num;
	case K_SMALLER: return m->vsize < (uint64_t)n->num;
	case K_UIDSET: return imap_seqset_contains(n->ranges, n->range_count, m->uid);
	case K_SEQSET: return imap_seqset_contains(n->ranges, n->range_count, idx + 1);
	case K_MODSEQ: return m->modseq >= (uint64_t)n->num;
	case K_SAVED: return in_saved(sm, m->uid);
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
		return eval_text(s, n, idx, sm);
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

/* ---- results ---- */

/* ids ascending as a compact sequence set: "1:3,5,7:9". */
static void write_set(struct buf *out, const uint32_t *ids, unsigned n)
{
	for (unsigned i = 0; i < n;) {
		unsigned j = i;
		while (j + 1 < n && ids[j + 1] == ids[j] + 1)
			j++;
		buf_printf(out, "%s%u", i == 0 ? "" : ",", ids[i]);
		if (j > i)
			buf_printf(out, ":%u", ids[j]);
		i = j + 1;
	}
}

/* RFC 7162 3.1.5: the highest modseq of what is returned; with only MIN
 * and/or MAX, of those messages. */
static uint64_t result_modseq(const struct search_data *d, const uint64_t *mods, unsigned n)
{
	uint64_t max = 0;

	if (n == 0)
		return 0;
	if (d->esearch && (d->ret & (RET_ALL | RET_COUNT)) == 0) {
		if ((d->ret & RET_MIN) != 0)
			max = mods[0];
		if ((d->ret & RET_MAX) != 0)
			max = MF_MAX(max, mods[n - 1]);
		return max;
	}
	for (unsigned i = 0; i < n; i++)
		max = MF_MAX(max, mods[i]);
	return max;
}

static void write_result(struct imap_job *job, const struct search_data *d, const uint32_t *ids,
			 const uint64_t *mods, unsigned n)
{
	struct buf *out = &job->out;
	uint64_t modseq = d->modseq ? result_modseq(d, mods, n) : 0;

	if (d->ret == RET_SAVE)
		return;   /* SAVE alone: no response (RFC 5182 2.1) */
	if (!d->esearch) {
		buf_printf(out, "* SEARCH");
		for (unsigned i = 0; i < n; i++)
			buf_printf(out, " %u", ids[i]);
		if (modseq != 0)
			buf_printf(out, " (MODSEQ %llu)", (unsigned long long)modseq);
		buf_printf(out, "\r\n");
		return;
	}
	buf_printf(out, "* ESEARCH (TAG \"%s\")%s", job->tag, d->uid ? " UID" : "");
	if (n > 0 && (d->ret & RET_MIN) != 0)
		buf_printf(out, " MIN %u", ids[0]);
	if (n > 0 && (d->ret & RET_MAX) != 0)
		buf_printf(out, " MAX %u", ids[n - 1]);
	if (n > 0 && (d->ret & RET_ALL) != 0) {
		buf_printf(out, " ALL ");
		write_set(out, ids, n);
	}
	if ((d->ret & RET_COUNT) != 0)
		buf_printf(out, " COUNT %u", n);
	if (modseq != 0)
		buf_printf(out, " MODSEQ %llu", (unsigned long long)modseq);
	buf_printf(out, "\r\n");
}

/* RETURN (SAVE): with MIN and/or MAX (and no ALL or COUNT) only those are
 * kept (RFC 5182 2.4); uids are those of the matches, ascending. */
static void save_result(struct search_data *d, const uint32_t *uids, unsigned n)
{
	d->save = mf_calloc(n + 1, sizeof(*d->save));
	d->save_count = 0;
	if (n > 0 && (d->ret & (RET_ALL | RET_COUNT)) == 0 && (d->ret & (RET_MIN | RET_MAX)) != 0) {
		if ((d->ret & RET_MIN) != 0)
			d->save[d->save_count++] = uids[0];
		if ((d->ret & RET_MAX) != 0 && (d->save_count == 0 || uids[n - 1] != uids[0]))
			d->save[d->save_count++] = uids[n - 1];
		return;
	}
	memcpy(d->save, uids, n * sizeof(*uids));
	d->save_count = n;
}

/* Loop thread, after search_work: the new "$". */
static void search_finish(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct search_data *d = job->data;

	if ((d->ret & RET_SAVE) == 0 || s->box == NULL)
		return;
	imap_searchres_reset(s);
	s->searchres = d->save;
	s->searchres_count = d->save_count;
	s->searchres_box = mf_strdup(s->box->name);
	d->save = NULL;
}

static void search_work(struct imap_job *job)
{
	struct imap_session *s = job->s;
	struct search_data *d = job->data;
	struct mailbox *box;
	struct search_msg sm = { .saved = d->saved, .saved_count = d->saved_count };
	uint32_t *ids, *uids;
	uint64_t *mods;
	unsigned n = 0;

	if (d->uid)
		imap_uid_refresh(job, NULL, NULL, NULL);
	box = s->box;
	resolve_sets(d->root, box->count > 0 ? box->msgs[box->count - 1].uid : 0, box->count);
	ids = mf_calloc(box->count + 1, sizeof(*ids));
	uids = mf_calloc(box->count + 1, sizeof(*uids));
	mods = mf_calloc(box->count + 1, sizeof(*mods));
	buf_init(&sm.scratch, 0);
	for (unsigned i = 0; i < box->count; i++) {
		sm.loaded = sm.failed = false;
		if (eval(s, d->root, i, &sm)) {
			ids[n] = d->uid ? box->msgs[i].uid : i + 1;
			uids[n] = box->msgs[i].uid;
			mods[n++] = box->msgs[i].modseq;
		}
		mime_message_free(&sm.msg);
		free(sm.data);
		sm.data = NULL;
		hdr_free(&sm);
	}
	buf_free(&sm.scratch);
	mailbox_cache_flush(box);
	mailbox_cache_release(box);
	write_result(job, d, ids, mods, n);
	if ((d->ret & RET_SAVE) != 0)
		save_result(d, uids, n);
	free(uids);
	free(ids);
	free(mods);
	buf_printf(&job->out, "%s OK %s completed\r\n", job->tag, d->uid ? "UID SEARCH" : "SEARCH");
}

/* RETURN (MIN MAX ALL COUNT); "()" means ALL (RFC 4731 3.1). */
static bool parse_return(const struct imap_arg *arg, unsigned *ret_r)
{
	static const struct { const char *name; unsigned ret; } opts[] = {
		{ "MIN", RET_MIN }, { "MAX", RET_MAX }, { "ALL", RET_ALL }, { "COUNT", RET_COUNT },
		{ "SAVE", RET_SAVE },
	};
	const struct imap_arg *list;
	size_t count;
	const char *atom;

	if (!imap_arg_get_list(arg, &list, &count))
		return false;
	*ret_r = count == 0 ? RET_ALL : 0;
	for (size_t i = 0; i < count; i++) {
		unsigned found = 0;
		if (!imap_arg_get_atom(&list[i], &atom))
			return false;
		for (size_t k = 0; k < MF_N_ELEMENTS(opts); k++) {
			if (strcasecmp(atom, opts[k].name) == 0)
				found = opts[k].ret;
		}
		if (found == 0)
			return false;
		*ret_r |= found;
	}
	return true;
}

void imap_cmd_search(struct imap_session *s, const struct imap_command *cmd)
{
	struct parse_ctx p = { .s = s, .args = cmd->args, .count = cmd->arg_count };
	struct search_data *d = mf_calloc(1, sizeof(*d));
	struct imap_job *job;
	const char *charset;

	if (p.count >= 2 && imap_arg_atom_equals(&p.args[0], "RETURN")) {
		if (!parse_return(&p.args[1], &d->ret)) {
			search_data_free(d);
			imap_bad(s, cmd->tag, "Invalid SEARCH RETURN options");
			return;
		}
		d->esearch = true;
		p.args += 2;
		p.count -= 2;
	} else if (s->imap4rev2) {
		d->esearch = true;       /* RFC 9051 6.4.4: SEARCH means RETURN (ALL) */
		d->ret = RET_ALL;
	}
	if (p.count >= 2 && imap_arg_atom_equals(&p.args[0], "CHARSET")) {
		if (s->utf8_accept) {
			/* RFC 6855 3: the charset is UTF-8 now, a label conflicts */
			search_data_free(d);
			imap_bad(s, cmd->tag, "No CHARSET after ENABLE UTF8=ACCEPT");
			return;
		}
		if (!imap_arg_get_astring(&p.args[1], &charset)) {
			search_data_free(d);
			imap_bad(s, cmd->tag, "Invalid CHARSET");
			return;
		}
		if (strcasecmp(charset, "UTF-8") != 0 && strcasecmp(charset, "US-ASCII") != 0) {
			search_data_free(d);
			imap_tagged(s, cmd->tag, "NO [BADCHARSET (UTF-8 US-ASCII)] Unsupported charset");
			return;
		}
		p.args += 2;
		p.count -= 2;
	}
	d->uid = strncmp(cmd->name, "UID ", 4) == 0;
	d->root = parse_and(&p, p.args, p.count);
	if (d->root == NULL) {
		if ((d->ret & RET_SAVE) != 0)
			imap_searchres_reset(s);   /* a failed SAVE empties "$" (RFC 5182 2.1) */
		search_data_free(d);
		imap_bad(s, cmd->tag, "%s", p.error[0] != '\0' ? p.error : "Invalid SEARCH arguments");
		return;
	}
	if (p.saved && s->searchres_box != NULL && strcmp(s->searchres_box, s->box->name) == 0) {
		d->saved = mf_calloc(s->searchres_count + 1, sizeof(*d->saved));
		memcpy(d->saved, s->searchres, s->searchres_count * sizeof(*d->saved));
		d->saved_count = s->searchres_count;
	}
	d->modseq = p.modseq;
	if (p.modseq)
		imap_condstore_enabling(s);
	job = imap_job_new(s, cmd->tag, search_work);
	job->data = d;
	job->data_free = search_data_free;
	job->finish = search_finish;
	imap_job_start(job);
}

/* ---- SEARCHRES for other commands ---- */

void imap_searchres_reset(struct imap_session *s)
{
	mf_free(&s->searchres);
	mf_free(&s->searchres_box);
	s->searchres_count = 0;
}

char *imap_searchres_uidset(const struct imap_session *s)
{
	struct buf out;
	char *set;

	if (s->box == NULL || s->searchres_box == NULL || strcmp(s->searchres_box, s->box->name) != 0)
		return mf_strdup("");
	buf_init(&out, 0);
	write_set(&out, s->searchres, s->searchres_count);
	set = mf_strndup(out.data != NULL ? (const char *)out.data : "", out.len);
	buf_free(&out);
	return set;
}
