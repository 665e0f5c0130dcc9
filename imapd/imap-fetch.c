/* imap-fetch.c: FETCH and UID FETCH (RFC 3501 6.4.5 / 7.4.2): FLAGS, UID,
 * RFC822.SIZE, INTERNALDATE, ENVELOPE, BODYSTRUCTURE, BODY, BODY[section]
 * and BODY.PEEK[section] with <partial>, RFC822, RFC822.HEADER and
 * RFC822.TEXT. Messages are stored with LF line ends; everything sent is
 * CRLF, and sizes and partial offsets count the CRLF form. The job renders a
 * batch of messages at a time (IMAP_BATCH_BYTES), so a long FETCH never
 * holds more than one batch plus one message in memory. */
#include "imapd/imap-private.h"
#include "imapd/imap-bodystructure.h"
#include "imapd/imap-envelope.h"
#include "imapd/imap-quote.h"
#include "lib/mime.h"
#include "store/mailbox-cache.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define FETCH_ITEMS_MAX 64
#define FETCH_FIELDS_MAX 64

enum fetch_type {
	F_FLAGS, F_UID, F_SIZE, F_INTERNALDATE, F_ENVELOPE, F_BODYSTRUCTURE, F_BODY,
	F_SECTION, F_RFC822, F_RFC822_HEADER, F_RFC822_TEXT, F_MODSEQ,
	F_BINARY, F_BINARY_SIZE,       /* RFC 3516 / RFC 9051 */
};

enum section_kind { SEC_WHOLE, SEC_HEADER, SEC_TEXT, SEC_MIME, SEC_FIELDS, SEC_FIELDS_NOT };

struct fetch_item {
	enum fetch_type type;
	bool peek;
	char *section;              /* as requested, between the brackets */
	char *nums;                 /* part numbers, "" for the message */
	enum section_kind kind;
	char *fields[FETCH_FIELDS_MAX];
	unsigned field_count;
	bool partial;
	uint64_t start, len;
};

struct fetch_data {
	struct fetch_item items[FETCH_ITEMS_MAX];
	unsigned count;
	bool uid, need_data, need_parse, sets_seen, has_flags;
	bool *seen_now;                /* per position: \Seen set by this FETCH */
	unsigned *idx, msg_count, pos;
	char *set;
	bool failed;
	/* (CHANGEDSINCE n [VANISHED]) modifiers, RFC 7162 3.1.4 / 3.2.6 */
	bool changed_since_set, vanished, has_modseq;
	bool unknown_cte;              /* a BINARY part had an unknown encoding */
	/* every item needing the message can come from the cache (cacheable),
	 * or at least one cacheable item is asked for (wants_cache) */
	bool cacheable, wants_cache;
	uint64_t changed_since;
	struct imap_seq_range *uid_ranges;   /* UID FETCH ... VANISHED: the set */
	size_t uid_range_count;
};

static void fetch_data_free(void *data)
{
	struct fetch_data *d = data;

	for (unsigned i = 0; i < d->count; i++) {
		free(d->items[i].section);
		free(d->items[i].nums);
		for (unsigned k = 0; k < d->items[i].field_count; k++)
			free(d->items[i].fields[k]);
	}
	free(d->idx);
	free(d->set);
	free(d->uid_ranges);
	free(d->seen_now);
	free(d);
}

/* ENVELOPE, BODYSTRUCTURE, BODY and BODY[HEADER.FIELDS (...)] of the
 * message itself, with every field one the cache keeps. */
static bool item_from_cache(const struct fetch_item *it)
{
	if (it->type == F_ENVELOPE || it->type == F_BODYSTRUCTURE || it->type == F_BODY)
		return true;
	if (it->type != F_SECTION || it->nums == NULL || it->nums[0] != '\0' || it->kind != SEC_FIELDS)
		return false;
	for (unsigned i = 0; i < it->field_count; i++) {
		if (!mailbox_cache_header_cached(it->fields[i], strlen(it->fields[i])))
			return false;
	}
	return true;
}

static bool item_needs_data(enum fetch_type t)
{
	return t == F_ENVELOPE || t == F_BODYSTRUCTURE || t == F_BODY || t == F_SECTION ||
		t == F_RFC822 || t == F_RFC822_HEADER || t == F_RFC822_TEXT || t == F_BINARY ||
		t == F_BINARY_SIZE;
}

/* ---- parsing the items ---- */

static bool parse_fields(struct fetch_item *it, const char *p)
{
	while (*p == ' ')
		p++;
	if (*p++ != '(')
		return false;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == ')')
			return p[1] == '\0' && it->field_count > 0;
		const char *start = p;
		bool quoted = *p == '"';
		if (quoted)
			start = ++p;
		while (*p != '\0' && (quoted ? *p != '"' : (*p != ' ' && *p != ')')))
			p++;
		if (*p == '\0' || p == start || it->field_count >= FETCH_FIELDS_MAX)
			return false;
		it->fields[it->field_count++] = mf_strndup(start, (size_t)(p - start));
		if (quoted)
			p++;
	}
}

static bool parse_section(struct fetch_item *it, const char *sec)
{
	const char *p = sec;

	while (isdigit((unsigned char)*p)) {
		if (*p == '0')
			return false;      /* part numbers are nz-number */
		while (isdigit((unsigned char)*p))
			p++;
		if (*p != '.' || !isdigit((unsigned char)p[1]))
			break;
		p++;
	}
	it->nums = mf_strndup(sec, (size_t)(p - sec));
	if (p != sec) {
		if (*p == '\0') {
			it->kind = SEC_WHOLE;
			return true;
		}
		if (*p++ != '.')
			return false;
	}
	if (*p == '\0' && p == sec)
		it->kind = SEC_WHOLE;
	else if (strcasecmp(p, "HEADER") == 0)
		it->kind = SEC_HEADER;
	else if (strcasecmp(p, "TEXT") == 0)
		it->kind = SEC_TEXT;
	else if (strcasecmp(p, "MIME") == 0 && p != sec)
		it->kind = SEC_MIME;
	else if (strncasecmp(p, "HEADER.FIELDS.NOT", 17) == 0 && (p[17] == ' ' || p[17] == '(')) {
		it->kind = SEC_FIELDS_NOT;
		return parse_fields(it, p + 17);
	} else if (strncasecmp(p, "HEADER.FIELDS", 13) == 0 && (p[13] == ' ' || p[13] == '(')) {
		it->kind = SEC_FIELDS;
		return parse_fields(it, p + 13);
	} else
		return false;
	return true;
}

/* "BODY[...]<a.b>" or "BODY.PEEK[...]<a.b>" */
static bool parse_body_item(struct fetch_item *it, const char *atom)
{
	const char *open = strchr(atom, '['), *close = strrchr(atom, ']');

	if (open == NULL || close == NULL || close < open)
		return false;
	it->type = F_SECTION;
	it->peek = (size_t)(open - atom) == 9;
	it->section = mf_strndup(open + 1, (size_t)(close - open - 1));
	if (!parse_section(it, it->section))
		return false;
	if (close[1] == '\0')
		return true;
	unsigned long long a, b;
	int used = 0;
	if (sscanf(close + 1, "<%llu.%llu>%n", &a, &b, &used) != 2 || close[1 + used] != '\0' || b == 0)
		return false;
	it->partial = true;
	it->start = a;
	it->len = b;
	return true;
}

/* BINARY[part]<partial>, BINARY.PEEK[part]<partial>, BINARY.SIZE[part].
 * RFC 3516 has only part numbers between the brackets; HEADER, TEXT, MIME
 * and HEADER.FIELDS are taken as for BODY[] (nothing to decode there), as
 * other servers and clients do. */
static bool parse_binary_item(struct fetch_item *it, const char *atom)
{
	const char *open = strchr(atom, '['), *close = strchr(atom, ']');
	size_t name_len = open != NULL ? (size_t)(open - atom) : 0;

	if (open == NULL || close == NULL || close < open)
		return false;
	if (name_len == 11 && strncasecmp(atom, "BINARY.SIZE", 11) == 0)
		it->type = F_BINARY_SIZE;
	else if ((name_len == 6 && strncasecmp(atom, "BINARY", 6) == 0) ||
		 (name_len == 11 && strncasecmp(atom, "BINARY.PEEK", 11) == 0))
		it->type = F_BINARY;
	else
		return false;
	it->peek = name_len == 11;
	it->section = mf_strndup(open + 1, (size_t)(close - open - 1));
	if (it->section[strspn(it->section, "0123456789.")] != '\0') {
		if (!parse_section(it, it->section))
			return false;
	} else {
		it->nums = mf_strdup(it->section);
		for (const char *p = it->nums; *p != '\0'; p++) {
			bool digit = *p >= '0' && *p <= '9';
			if (!digit && (*p != '.' || p == it->nums || p[1] == '\0' || p[1] == '.'))
				return false;
			if (*p == '0' && (p == it->nums || p[-1] == '.'))
				return false;      /* nz-number */
		}
		it->kind = SEC_WHOLE;
	}
	if (close[1] == '\0')
		return true;
	unsigned long long a, b;
	int used = 0;
	if (it->type == F_BINARY_SIZE || sscanf(close + 1, "<%llu.%llu>%n", &a, &b, &used) != 2 ||
	    close[1 + used] != '\0' || b == 0)
		return false;
	it->partial = true;
	it->start = a;
	it->len = b;
	return true;
}

static bool add_item(struct fetch_data *d, const char *atom)
{
	static const struct { const char *name; enum fetch_type type; } simple[] = {
		{ "FLAGS", F_FLAGS }, { "UID", F_UID }, { "RFC822.SIZE", F_SIZE },
		{ "INTERNALDATE", F_INTERNALDATE }, { "ENVELOPE", F_ENVELOPE },
		{ "BODYSTRUCTURE", F_BODYSTRUCTURE }, { "BODY", F_BODY }, { "RFC822", F_RFC822 },
		{ "RFC822.HEADER", F_RFC822_HEADER }, { "RFC822.TEXT", F_RFC822_TEXT },
		{ "MODSEQ", F_MODSEQ },
	};
	struct fetch_item *it;

	if (d->count >= FETCH_ITEMS_MAX)
		return false;
	it = &d->items[d->count++];
	for (size_t i = 0; i < MF_N_ELEMENTS(simple); i++) {
		if (strcasecmp(atom, simple[i].name) == 0) {
			it->type = simple[i].type;
			return true;
		}
	}
	if (strncasecmp(atom, "BODY[", 5) == 0 || strncasecmp(atom, "BODY.PEEK[", 10) == 0)
		return parse_body_item(it, atom);
	if (strncasecmp(atom, "BINARY", 6) == 0)
		return parse_binary_item(it, atom);
	return false;
}

static bool add_macro_or_item(struct fetch_data *d, const char *atom)
{
	static const char *const all[] = { "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY" };
	size_t n = strcasecmp(atom, "FAST") == 0 ? 3 : strcasecmp(atom, "ALL") == 0 ? 4 :
		strcasecmp(atom, "FULL") == 0 ? 5 : 0;

	if (n == 0)
		return add_item(d, atom);
	for (size_t i = 0; i < n; i++)
		add_item(d, all[i]);
	return true;
}

/* "(CHANGEDSINCE n [VANISHED])" after the item list. */
static bool fetch_modifiers(const struct imap_arg *arg, struct fetch_data *d)
{
	const struct imap_arg *list;
	size_t count;
	const char *atom;

	if (!imap_arg_get_list(arg, &list, &count) || count == 0)
		return false;
	for (size_t i = 0; i < count; i++) {
		if (!imap_arg_get_atom(&list[i], &atom))
			return false;
		if (strcasecmp(atom, "CHANGEDSINCE") == 0 && i + 1 < count && !d->changed_since_set) {
			if (!imap_parse_modseq(&list[++i], &d->changed_since))
				return false;
			d->changed_since_set = true;
		} else if (strcasecmp(atom, "VANISHED") == 0 && !d->vanished) {
			d->vanished = true;
		} else {
			return false;
		}
	}
	/* VANISHED only with CHANGEDSINCE and only in UID FETCH */
	return !d->vanished || (d->changed_since_set && d->uid);
}

static bool fetch_parse(const struct imap_command *cmd, struct fetch_data *d)
{
	const struct imap_arg *list;
	size_t count;
	const char *atom;

	if (cmd->arg_count == 3 && !fetch_modifiers(&cmd->args[2], d))
		return false;
	if (cmd->arg_count != 2 && cmd->arg_count != 3)
		return false;
	if (imap_arg_get_atom(&cmd->args[1], &atom)) {
		if (!add_macro_or_item(d, atom))
			return false;
	} else if (imap_arg_get_list(&cmd->args[1], &list, &count) && count > 0) {
		for (size_t i = 0; i < count; i++) {
			if (!imap_arg_get_atom(&list[i], &atom) || !add_item(d, atom))
				return false;
		}
	} else {
		return false;
	}
	for (unsigned i = 0; i < d->count; i++) {
		enum fetch_type t = d->items[i].type;
		if (t == F_ENVELOPE || t == F_BODYSTRUCTURE || t == F_BODY || t == F_SECTION ||
		    t == F_BINARY || t == F_BINARY_SIZE ||
		    t == F_RFC822 || t == F_RFC822_HEADER || t == F_RFC822_TEXT)
			d->need_data = true;
		if (t == F_ENVELOPE || t == F_BODYSTRUCTURE || t == F_BODY || t == F_RFC822_HEADER ||
		    t == F_RFC822_TEXT || t == F_BINARY || t == F_BINARY_SIZE ||
		    (t == F_SECTION && (d->items[i].kind != SEC_WHOLE || d->items[i].nums[0] != '\0')))
			d->need_parse = true;
		if (((t == F_SECTION || t == F_BINARY) && !d->items[i].peek) || t == F_RFC822 ||
		    t == F_RFC822_TEXT)
			d->sets_seen = true;
		if (t == F_FLAGS)
			d->has_flags = true;
		if (t == F_MODSEQ)
			d->has_modseq = true;
	}
	d->cacheable = d->need_data;
	for (unsigned i = 0; i < d->count; i++) {
		bool cached = item_from_cache(&d->items[i]);
		d->wants_cache |= cached;
		if (item_needs_data(d->items[i].type) && !cached)
			d->cacheable = false;
	}
	/* CHANGEDSINCE implies MODSEQ in the results */
	if (d->changed_since_set && !d->has_modseq && d->count < FETCH_ITEMS_MAX) {
		d->items[d->count++].type = F_MODSEQ;
		d->has_modseq = true;
	}
	return true;
}

/* ---- rendering ---- */

/* Appends data[0..len) with every bare LF made CRLF. */
static void append_crlf(struct buf *out, const unsigned char *data, size_t len)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		if (data[i] == '\n' && (i == 0 || data[i - 1] != '\r')) {
			buf_append(out, data + start, i - start);
			buf_append(out, "\r\n", 2);
			start = i + 1;
		}
	}
	buf_append(out, data + start, len - start);
}

static bool field_listed(const struct fetch_item *it, const char *name, size_t len)
{
	for (unsigned i = 0; i < it->field_count; i++) {
		if (strlen(it->fields[i]) == len && strncasecmp(it->fields[i], name, len) == 0)
			return true;
	}
	return false;
}

static void header_fields(const struct mime_message *msg, const struct mime_part *part,
			  const struct fetch_item *it, struct buf *out)
{
	struct mime_header_iter iter;
	struct mime_field f;

	mime_header_iter_init(&iter, msg, part);
	while (mime_header_next(&iter, &f)) {
		if (field_listed(it, f.name, f.name_len) != (it->kind == SEC_FIELDS))
			continue;
		const unsigned char *start = (const unsigned char *)f.name;
		append_crlf(out, start, (size_t)(f.value + f.value_len - start));
		buf_append(out, "\r\n", 2);
	}
	buf_append(out, "\r\n", 2);
}

/* HEADER.FIELDS (...) from the cached header lines (CRLF, whole fields in
 * message order): the same text header_fields() makes from the message. */
static void cached_header_fields(const struct mailbox_cache_entry *ce, const struct fetch_item *it,
				 struct buf *out)
{
	const char *p = ce->data[MAILBOX_CACHE_HEADERS], *end = p + ce->len[MAILBOX_CACHE_HEADERS];

	while (p < end) {
		const char *field = p, *colon;
		/* a field runs to the CRLF not followed by folding white space */
		for (;;) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			p = nl == NULL ? end : nl + 1;
			if (p >= end || (*p != ' ' && *p != '\t'))
				break;
		}
		colon = memchr(field, ':', (size_t)(p - field));
		if (colon == NULL)
			continue;
		size_t name_len = (size_t)(colon - field);
		while (name_len > 0 && (field[name_len - 1] == ' ' || field[name_len - 1] == '\t'))
			name_len--;
		if (field_listed(it, field, name_len))
			buf_append(out, field, (size_t)(p - field));
	}
	buf_append(out, "\r\n", 2);
}

/* The cache entry of a parsed message. */
static void cache_entry_build(const struct mime_message *msg, struct buf bufs[MAILBOX_CACHE_FIELD_COUNT],
			      struct mailbox_cache_entry *ce)
{
	struct mime_header_iter iter;
	struct mime_field f;

	for (int i = 0; i < MAILBOX_CACHE_FIELD_COUNT; i++)
		buf_init(&bufs[i], 0);
	imap_envelope_write(msg, msg->root, 0, &bufs[MAILBOX_CACHE_ENVELOPE]);
	imap_bodystructure_write(msg, msg->root, true, 0, &bufs[MAILBOX_CACHE_BODYSTRUCTURE]);
	imap_bodystructure_write(msg, msg->root, false, 0, &bufs[MAILBOX_CACHE_BODY]);
	mime_header_iter_init(&iter, msg, msg->root);
	while (mime_header_next(&iter, &f)) {
		if (!mailbox_cache_header_cached(f.name, f.name_len))
			continue;
		const unsigned char *start = (const unsigned char *)f.name;
		append_crlf(&bufs[MAILBOX_CACHE_HEADERS], start, (size_t)(f.value + f.value_len - start));
		buf_append(&bufs[MAILBOX_CACHE_HEADERS], "\r\n", 2);
	}
	for (int i = 0; i < MAILBOX_CACHE_FIELD_COUNT; i++) {
		ce->data[i] = bufs[i].len > 0 ? (const char *)bufs[i].data : "";
		ce->len[i] = bufs[i].len;
	}
}

void imap_cache_add(struct mailbox *box, unsigned idx, const struct mime_message *msg)
{
	struct buf bufs[MAILBOX_CACHE_FIELD_COUNT];
	struct mailbox_cache_entry built;

	cache_entry_build(msg, bufs, &built);
	mailbox_cache_add(box, idx, &built);
	for (int i = 0; i < MAILBOX_CACHE_FIELD_COUNT; i++)
		buf_free(&bufs[i]);
}

/* The section's text (CRLF) into sec. */
static void section_text(const struct mime_message *msg, const unsigned char *data, size_t len,
			 const struct fetch_item *it, struct buf *sec)
{
	const struct mime_part *part = msg != NULL ? msg->root : NULL;
	const char *end;

	if (it->nums[0] == '\0' && it->kind == SEC_WHOLE) {
		append_crlf(sec, data, len);
		return;
	}
	if (it->nums[0] != '\0') {
		part = imap_section_part(msg, it->nums, &end);
		if (part == NULL)
			return;
		if (it->kind == SEC_WHOLE) {
			append_crlf(sec, data + part->body_offset, part->body.physical);
			return;
		}
		if (it->kind == SEC_MIME) {
			append_crlf(sec, data + part->header_offset, part->header.physical);
			return;
		}
		/* HEADER / TEXT / FIELDS of an encapsulated message */
		if (part->kind != MIME_PART_MESSAGE || part->children == NULL)
			return;
		part = part->children;
	}
	if (it->kind == SEC_HEADER)
		append_crlf(sec, data + part->header_offset, part->header.physical);
	else if (it->kind == SEC_TEXT)
		append_crlf(sec, data + part->body_offset, part->body.physical);
	else
		header_fields(msg, part, it, sec);
}

static void write_literal(struct buf *out, const struct buf *sec, const struct fetch_item *it)
{
	size_t start = 0, len = sec->len;

	if (it->partial) {
		start = it->start < sec->len ? (size_t)it->start : sec->len;
		len = MF_MIN(sec->len - start, it->len);
	}
	buf_printf(out, "{%zu}\r\n", len);
	if (len == 0)
		return;
	size_t at = out->len;
	buf_append(out, sec->data + start, len);
	/* a literal carries no NUL (RFC 3501 CHAR8): BODY[] gives 0x80 in its
	 * place, same length; BINARY[] has literal8 for the real octets */
	for (unsigned char *p = out->data + at, *end = out->data + out->len;
	     (p = memchr(p, '\0', (size_t)(end - p))) != NULL; p++)
		*p = 0x80;
}

static void write_section(struct buf *out, const struct mime_message *msg, const unsigned char *data,
			  size_t len, const struct fetch_item *it, const struct mailbox_cache_entry *ce)
{
	struct buf sec;

	buf_init(&sec, 0);
	switch (it->type) {
	case F_RFC822:
		buf_printf(out, "RFC822 ");
		append_crlf(&sec, data, len);
		break;
	case F_RFC822_HEADER:
		buf_printf(out, "RFC822.HEADER ");
		append_crlf(&sec, data + msg->root->header_offset, msg->root->header.physical);
		break;
	case F_RFC822_TEXT:
		buf_printf(out, "RFC822.TEXT ");
		append_crlf(&sec, data + msg->root->body_offset, msg->root->body.physical);
		break;
	default:
		buf_printf(out, "BODY[%s]", it->section);
		if (it->partial)
			buf_printf(out, "<%llu>", (unsigned long long)it->start);
		buf_append(out, " ", 1);
		if (ce != NULL)
			cached_header_fields(ce, it, &sec);
		else
			section_text(msg, data, len, it, &sec);
		break;
	}
	write_literal(out, &sec, it);
	buf_free(&sec);
}

/* The decoded content of a BINARY section into sec: the whole message as
 * it is for [], else the part's body with its transfer encoding undone.
 * -1 for an unknown encoding. */
static int binary_text(const struct mime_message *msg, const unsigned char *data, size_t len,
		       const struct fetch_item *it, struct buf *sec)
{
	const struct mime_part *part;
	const char *end;
	struct buf crlf;
	int ret;

	if (it->kind != SEC_WHOLE) {
		section_text(msg, data, len, it, sec);
		return 0;
	}
	if (it->nums[0] == '\0') {
		append_crlf(sec, data, len);
		return 0;
	}
	part = imap_section_part(msg, it->nums, &end);
	if (part == NULL || *end != '\0')
		return 0;      /* no such part: empty, as for BODY[] */
	buf_init(&crlf, 0);
	append_crlf(&crlf, data + part->body_offset, part->body.physical);
	ret = mime_decode_transfer(part->kind == MIME_PART_MULTIPART || part->kind == MIME_PART_MESSAGE ?
				   NULL : part->encoding, crlf.data != NULL ? crlf.data : (const unsigned char *)"",
				   crlf.len, sec);
	buf_free(&crlf);
	return ret;
}

/* BINARY[...] (literal8 when the content has a NUL) or BINARY.SIZE[...]. */
static void write_binary(struct buf *out, const struct fetch_item *it, const struct buf *sec)
{
	if (it->type == F_BINARY_SIZE) {
		buf_printf(out, "BINARY.SIZE[%s] %zu", it->section, sec->len);
		return;
	}
	size_t start = 0, len = sec->len;
	if (it->partial) {
		start = it->start < sec->len ? (size_t)it->start : sec->len;
		len = MF_MIN(sec->len - start, it->len);
		buf_printf(out, "BINARY[%s]<%llu> ", it->section, (unsigned long long)it->start);
	} else {
		buf_printf(out, "BINARY[%s] ", it->section);
	}
	bool nul = len > 0 && memchr(sec->data + start, '\0', len) != NULL;
	buf_printf(out, "%s{%zu}\r\n", nul ? "~" : "", len);
	if (len > 0)
		buf_append(out, sec->data + start, len);
}

static void write_date(struct buf *out, int64_t t)
{
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
					      "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	buf_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, months[tm.tm_mon],
		   tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ce: the message's cache entry when every data item comes from it. */
static void write_item(struct imap_session *s, struct buf *out, const struct fetch_item *it,
		       const struct mailbox_msg *m, const struct mime_message *msg,
		       const unsigned char *data, size_t len, const struct mailbox_cache_entry *ce)
{
	switch (it->type) {
	case F_FLAGS:
		buf_printf(out, "FLAGS ");
		imap_write_flags(s, m, out);
		break;
	case F_UID:
		buf_printf(out, "UID %u", m->uid);
		break;
	case F_SIZE:
		buf_printf(out, "RFC822.SIZE %llu", (unsigned long long)m->vsize);
		break;
	case F_INTERNALDATE:
		buf_printf(out, "INTERNALDATE ");
		write_date(out, m->internal_date);
		break;
	case F_MODSEQ:
		buf_printf(out, "MODSEQ (%llu)", (unsigned long long)m->modseq);
		break;
	case F_ENVELOPE:
		buf_printf(out, "ENVELOPE ");
		if (ce != NULL)
			buf_append(out, ce->data[MAILBOX_CACHE_ENVELOPE], ce->len[MAILBOX_CACHE_ENVELOPE]);
		else
			imap_envelope_write(msg, msg->root, 0, out);
		break;
	case F_BODYSTRUCTURE:
	case F_BODY:
		buf_printf(out, "%s ", it->type == F_BODY ? "BODY" : "BODYSTRUCTURE");
		if (ce != NULL) {
			enum mailbox_cache_field f = it->type == F_BODY ? MAILBOX_CACHE_BODY :
				MAILBOX_CACHE_BODYSTRUCTURE;
			buf_append(out, ce->data[f], ce->len[f]);
		} else {
			imap_bodystructure_write(msg, msg->root, it->type == F_BODYSTRUCTURE, 0, out);
		}
		break;
	default:
		write_section(out, msg, data, len, it, ce);
		break;
	}
}

/* What fetch_one() holds for a message: the decoded BINARY parts (may be
 * NULL), the parsed message and its data. */
static void fetch_parts_free(struct buf *bin, unsigned count, struct mime_message **msg,
			     unsigned char *data)
{
	if (bin != NULL) {
		for (unsigned i = 0; i < count; i++)
			buf_free(&bin[i]);
		free(bin);
	}
	mime_message_free(msg);
	free(data);
}

/* One "* n FETCH (...)" line. -1 when the message is gone. */
static int fetch_one(struct imap_job *job, struct fetch_data *d, unsigned idx)
{
	struct imap_session *s = job->s;
	struct mailbox_msg *m = &s->box->msgs[idx];
	unsigned char *data = NULL;
	size_t len = 0;
	struct mime_message *msg = NULL;
	const char *error;
	bool seen_now = false;
	struct mailbox_cache_entry entry, *ce = NULL;

	if (d->changed_since_set && m->modseq <= d->changed_since)
		return 0;
	bool cache_bad = false;
	if (d->cacheable && mailbox_cache_lookup(s->box, idx, &entry))
		ce = &entry;
	else if (d->cacheable && m->cache_off != 0)
		cache_bad = true;   /* damaged or replaced: write it anew */
	if (ce == NULL && d->need_data && mailbox_read(s->box, idx, SIZE_MAX, &data, &len, &error) < 0)
		return -1;
	if (ce == NULL && d->need_parse)
		msg = mime_parse(data != NULL ? data : (const unsigned char *)"", len, NULL,
				 MIME_PARSE_LF_TO_CRLF);
	if (msg != NULL && d->wants_cache && (m->cache_off == 0 || cache_bad))
		imap_cache_add(s->box, idx, msg);
	/* BINARY sections first: an unknown encoding fails the message */
	struct buf *bin = NULL;
	for (unsigned i = 0; i < d->count && msg != NULL; i++) {
		enum fetch_type t = d->items[i].type;
		if (t != F_BINARY && t != F_BINARY_SIZE)
			continue;
		if (bin == NULL)
			bin = mf_calloc(d->count, sizeof(*bin));
		buf_init(&bin[i], 0);
		if (binary_text(msg, data, len, &d->items[i], &bin[i]) < 0)
			d->unknown_cte = true;
	}
	if (d->unknown_cte && bin != NULL) {
		fetch_parts_free(bin, d->count, &msg, data);
		return 0;
	}
	if (d->seen_now != NULL)
		seen_now = d->seen_now[d->pos];
	buf_printf(&job->out, "* %u FETCH (", idx + 1);
	bool first = true;
	/* with QRESYNC every FETCH names its UID: the client tracks messages
	 * by UID once VANISHED replaces EXPUNGE (RFC 7162 3.2) */
	if (d->uid || s->qresync) {
		bool asked = false;
		for (unsigned i = 0; i < d->count; i++)
			asked |= d->items[i].type == F_UID;
		if (!asked) {
			buf_printf(&job->out, "UID %u", m->uid);
			first = false;
		}
	}
	for (unsigned i = 0; i < d->count; i++) {
		if (!first)
			buf_append(&job->out, " ", 1);
		first = false;
		if (d->items[i].type == F_BINARY || d->items[i].type == F_BINARY_SIZE)
			write_binary(&job->out, &d->items[i], &bin[i]);
		else
			write_item(s, &job->out, &d->items[i], m, msg, data, len, ce);
	}
	if (seen_now && !d->has_flags) {
		buf_printf(&job->out, "%sFLAGS ", first ? "" : " ");
		imap_write_flags(s, m, &job->out);
	}
	if (seen_now && !d->has_modseq && s->condstore)
		buf_printf(&job->out, " MODSEQ (%llu)", (unsigned long long)m->modseq);
	buf_printf(&job->out, ")\r\n");
	fetch_parts_free(bin, d->count, &msg, data);
	return 0;
}

/* A body fetch sets \Seen (RFC 3501 6.4.5): for every message of the
 * command at once, so it costs one mailbox lock and one index write. */
static void fetch_set_seen(struct imap_session *s, struct fetch_data *d)
{
	const struct mailbox_flag_change ch = { .add = MAILBOX_FLAG_SEEN };
	unsigned *idx = mf_calloc(d->msg_count + 1, sizeof(*idx)), *pos = mf_calloc(d->msg_count + 1, sizeof(*pos));
	bool *modified = mf_calloc(d->msg_count + 1, sizeof(bool));
	bool *expunged = mf_calloc(d->msg_count + 1, sizeof(bool));
	unsigned n = 0;
	const char *error;

	d->seen_now = mf_calloc(d->msg_count + 1, sizeof(bool));
	for (unsigned i = 0; i < d->msg_count; i++) {
		const struct mailbox_msg *m = &s->box->msgs[d->idx[i]];
		if ((m->flags & MAILBOX_FLAG_SEEN) != 0 ||
		    (d->changed_since_set && m->modseq <= d->changed_since))
			continue;
		pos[n] = i;
		idx[n++] = d->idx[i];
	}
	if (n > 0 && mailbox_store_flags(s->box, idx, n, &ch, 0, modified, expunged, &error) == 0) {
		for (unsigned k = 0; k < n; k++)
			d->seen_now[pos[k]] = !expunged[k];
	}
	free(idx);
	free(pos);
	free(modified);
	free(expunged);
}

static void fetch_work(struct imap_job *job)
{
	struct fetch_data *d = job->data;

	if (d->uid && d->pos == 0 && d->set != NULL) {
		imap_uid_refresh(job, d->set, &d->idx, &d->msg_count);
		mf_free(&d->set);
		if (d->vanished)
			imap_write_vanished_since(job->s, d->changed_since, d->uid_ranges,
						  d->uid_range_count, &job->out);
	}
	if (d->pos == 0 && d->sets_seen && !job->s->read_only && d->seen_now == NULL)
		fetch_set_seen(job->s, d);
	imap_write_flag_lists(job->s, false, &job->out);
	while (d->pos < d->msg_count) {
		if (fetch_one(job, d, d->idx[d->pos]) < 0)
			d->failed = true;
		d->pos++;
		if (job->out.len >= IMAP_BATCH_BYTES && d->pos < d->msg_count) {
			mailbox_cache_flush(job->s->box);
			job->more = true;
			return;
		}
	}
	mailbox_cache_flush(job->s->box);
	mailbox_cache_release(job->s->box);
	if (d->unknown_cte)
		buf_printf(&job->out, "%s NO [UNKNOWN-CTE] Unknown Content-Transfer-Encoding\r\n", job->tag);
	else if (d->failed && !d->uid)
		buf_printf(&job->out, "%s NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n", job->tag);
	else
		buf_printf(&job->out, "%s OK Fetch completed\r\n", job->tag);
}

void imap_cmd_fetch(struct imap_session *s, const struct imap_command *cmd)
{
	struct fetch_data *d = mf_calloc(1, sizeof(*d));
	const char *set;
	struct imap_job *job;

	d->uid = strncmp(cmd->name, "UID ", 4) == 0;
	if (!fetch_parse(cmd, d) || !imap_arg_get_atom(&cmd->args[0], &set) ||
	    imap_msgset(s, set, d->uid, &d->idx, &d->msg_count) < 0) {
		fetch_data_free(d);
		imap_bad(s, cmd->tag, "Invalid FETCH arguments");
		return;
	}
	if (d->vanished && !s->qresync) {
		fetch_data_free(d);
		imap_bad(s, cmd->tag, "VANISHED needs ENABLE QRESYNC");
		return;
	}
	if (d->vanished) {
		const char *error;
		uint32_t top = s->box->uid_next > 1 ? s->box->uid_next - 1 : 0;
		if (imap_seqset_parse(set, 0, &d->uid_ranges, &d->uid_range_count, &error) == 0)
			imap_seqset_resolve(d->uid_ranges, &d->uid_range_count, top);
	}
	if (d->has_modseq)
		imap_condstore_enabling(s);
	if (d->uid)
		d->set = mf_strdup(set);
	job = imap_job_new(s, cmd->tag, fetch_work);
	job->data = d;
	job->data_free = fetch_data_free;
	imap_job_start(job);
}
