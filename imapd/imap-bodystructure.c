/* imap-bodystructure.c: see imap-bodystructure.h. */
#include "imapd/imap-bodystructure.h"

#include "imapd/imap-envelope.h"
#include "imapd/imap-quote.h"

#include <string.h>
#include <strings.h>

#define EMPTY_TEXT_PART "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0"

/* With default_charset (text parts), "charset" "us-ascii" is added when
   no charset parameter was given. */
static void write_params(struct buf *out, const struct mime_param *params,
			 unsigned int count, bool default_charset, unsigned int flags)
{
	bool seen_charset = false;

	if (count == 0 && !default_charset) {
		buf_append(out, "NIL", 3);
		return;
	}
	buf_append(out, "(", 1);
	for (unsigned int i = 0; i < count; i++) {
		if (i > 0)
			buf_append(out, " ", 1);
		seen_charset = seen_charset || strcasecmp(params[i].name, "charset") == 0;
		imap_append_nstring(out, params[i].name, flags);
		buf_append(out, " ", 1);
		imap_append_nstring(out, params[i].value, flags);
	}
	if (default_charset && !seen_charset)
		buf_printf(out, "%s\"charset\" \"us-ascii\"", count > 0 ? " " : "");
	buf_append(out, ")", 1);
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void write_dsp_lang_loc(struct buf *out, const struct mime_part *part,
			       unsigned int flags)
{
	if (part->disposition == NULL) {
		buf_append(out, "NIL", 3);
	} else {
		buf_append(out, "(", 1);
		imap_append_nstring(out, part->disposition, flags);
		buf_append(out, " ", 1);
		write_params(out, part->disp_params, part->disp_param_count, false, flags);
		buf_append(out, ")", 1);
	}
	buf_append(out, " ", 1);
	if (part->language_count == 0) {
		buf_append(out, "NIL", 3);
	} else {
		buf_append(out, "(", 1);
		for (unsigned int i = 0; i < part->language_count; i++) {
			if (i > 0)
				buf_append(out, " ", 1);
			imap_append_nstring(out, part->languages[i], flags);
		}
		buf_append(out, ")", 1);
	}
	buf_append(out, " ", 1);
	imap_append_nstring(out, part->location, flags);
}

static void write_multipart(const struct mime_message *msg, const struct mime_part *part,
			    bool extended, unsigned int flags, struct buf *out)
{
	buf_append(out, "(", 1);
	if (part->children == NULL) {
		buf_printf(out, "%s%s)", EMPTY_TEXT_PART, extended ? " NIL NIL NIL NIL" : "");
	}
	for (const struct mime_part *c = part->children; c != NULL; c = c->next)
		imap_bodystructure_write(msg, c, extended, flags, out);
	buf_append(out, " ", 1);
	imap_append_nstring(out, part->subtype, flags);
	if (extended) {
		buf_append(out, " ", 1);
		write_params(out, part->params, part->param_count, false, flags);
		buf_append(out, " ", 1);
		write_dsp_lang_loc(out, part, flags);
	}
	buf_append(out, ")", 1);
}

/* A multipart or message part that was not parsed as one. */
static bool unparsed_container(const struct mime_part *part)
{
	if (part->type == NULL || part->kind != MIME_PART_LEAF)
		return false;
	return strcasecmp(part->type, "multipart") == 0 ||
		(strcasecmp(part->type, "message") == 0 &&
		 (strcasecmp(part->subtype, "rfc822") == 0 ||
		  strcasecmp(part->subtype, "global") == 0));
}

static void write_single(const struct mime_message *msg, const struct mime_part *part,
			 bool extended, unsigned int flags, struct buf *out)
{
	bool text = part->type == NULL || strcasecmp(part->type, "text") == 0;
	bool opaque = unparsed_container(part);
	const struct mime_param *params = opaque ? NULL : part->params;
	unsigned int param_count = opaque ? 0 : part->param_count;

	buf_append(out, "(", 1);
	if (part->type == NULL)
		buf_append(out, "\"text\" \"plain\"", 14);
	else if (opaque)
		buf_append(out, "\"application\" \"octet-stream\"", 28);
	else {
		imap_append_nstring(out, part->type, flags);
		buf_append(out, " ", 1);
		imap_append_nstring(out, part->subtype, flags);
	}
	buf_append(out, " ", 1);
	write_params(out, params, param_count, text, flags);
	buf_append(out, " ", 1);
	imap_append_nstring(out, part->id, flags);
	buf_append(out, " ", 1);
	imap_append_nstring(out, part->description, flags);
	buf_append(out, " ", 1);
	imap_append_nstring(out, part->encoding != NULL ? part->encoding : "7bit", flags);
	buf_printf(out, " %llu", (unsigned long long)part->body.virtual);
	if (part->kind == MIME_PART_MESSAGE) {
		buf_append(out, " ", 1);
		imap_envelope_write(msg, part->children, flags, out);
		buf_append(out, " ", 1);
		imap_bodystructure_write(msg, part->children, extended, flags, out);
		buf_printf(out, " %llu", (unsigned long long)part->body.lines);
	} else if (text) {
		buf_printf(out, " %llu", (unsigned long long)part->body.lines);
	}
	if (extended) {
		buf_append(out, " ", 1);
		imap_append_nstring(out, part->md5, flags);
		buf_append(out, " ", 1);
		write_dsp_lang_loc(out, part, flags);
	}
	buf_append(out, ")", 1);
}

void imap_bodystructure_write(const struct mime_message *msg, const struct mime_part *part,
			      bool extended, unsigned int flags, struct buf *out)
{
	if (part->kind == MIME_PART_MULTIPART)
		write_multipart(msg, part, extended, flags, out);
	else
		write_single(msg, part, extended, flags, out);
}

/* The n-th part inside x (a message root or any part). */
static const struct mime_part *sub_part(const struct mime_part *x, bool is_root,
					unsigned long n)
{
	const struct mime_part *c;

	if (x->kind == MIME_PART_MESSAGE && !is_root) {
		/* numbers below a message/rfc822 part are those of the
		   encapsulated message; at the root, part 1 is the body */
		x = x->children;
		is_root = true;
	}
	if (x->kind == MIME_PART_MULTIPART) {
		for (c = x->children; c != NULL && n > 1; c = c->next)
			n--;
		return c;
	}
	return is_root && n == 1 ? x : NULL;
}

const struct mime_part *imap_section_part(const struct mime_message *msg,
					  const char *numbers, const char **end_r)
{
	const struct mime_part *part = msg->root;
	const char *p = numbers;
	bool is_root = true;

	*end_r = numbers;
	do {
		unsigned long n = 0;
		if (*p < '1' || *p > '9')
			return NULL;
		for (; *p >= '0' && *p <= '9'; p++) {
			n = n * 10 + (unsigned long)(*p - '0');
			if (n > UINT32_MAX)
				return NULL;
		}
		part = sub_part(part, is_root, n);
		if (part == NULL)
			return NULL;
		is_root = false;
		*end_r = p;
	} while (*p == '.' && p[1] >= '0' && p[1] <= '9' && *p++ == '.');
	return part;
}
