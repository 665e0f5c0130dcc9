/* fuzz-mime.c: libFuzzer target for the MIME parser and the ENVELOPE /
 * BODYSTRUCTURE writers. The first byte chooses flags and limits. Checks:
 * part sizes add up and stay inside the message, virtual sizes are never
 * below physical ones, the output is balanced, and the header helpers
 * (encoded words, addresses, parameters) survive every header. */
#include "imapd/imap-bodystructure.h"
#include "imapd/imap-envelope.h"
#include "imapd/imap-quote.h"
#include "lib/mime.h"

#include <stdlib.h>
#include <string.h>

static void check_part(const struct mime_message *msg, const struct mime_part *part,
		       unsigned int *count)
{
	const struct mime_part *c;

	(*count)++;
	if (part->header_offset + part->header.physical != part->body_offset ||
	    part->body_offset + part->body.physical > msg->size ||
	    part->header.virtual < part->header.physical ||
	    part->body.virtual < part->body.physical ||
	    ((msg->flags & MIME_PARSE_LF_TO_CRLF) == 0 &&
	     part->body.virtual != part->body.physical))
		abort();
	for (c = part->children; c != NULL; c = c->next) {
		if (c->parent != part || c->header_offset < part->body_offset ||
		    c->body_offset + c->body.physical > part->body_offset + part->body.physical)
			abort();
		check_part(msg, c, count);
	}
	if (part->kind == MIME_PART_MESSAGE && part->child_count != 1)
		abort();
}

static void check_headers(const struct mime_message *msg, const struct mime_part *part)
{
	struct mime_header_iter iter;
	struct mime_field f;
	struct buf tmp;
	unsigned int n = 0;

	buf_init(&tmp, 0);
	mime_header_iter_init(&iter, msg, part);
	while (mime_header_next(&iter, &f) && n++ < 50) {
		struct mime_address *addrs;
		unsigned int count;
		buf_reset(&tmp);
		mime_field_unfold(f.value, f.value_len, &tmp);
		buf_append(&tmp, "", 1);
		char *value = mf_strdup((const char *)tmp.data);
		buf_reset(&tmp);
		mime_decode_words(value, strlen(value), &tmp);
		mime_address_parse(value, 0, &addrs, &count);
		mime_address_free(&addrs, count);
		free(value);
	}
	for (unsigned int i = 0; i < part->param_count; i++)
		free(mime_param_get_utf8(part->params, part->param_count, part->params[i].name));
	buf_free(&tmp);
}

static void check_balanced(const struct buf *b)
{
	int depth = 0;
	bool quoted = false;

	for (size_t i = 0; i < b->len; i++) {
		unsigned char c = b->data[i];
		if (quoted) {
			if (c == '\\')
				i++;
			else if (c == '"')
				quoted = false;
		} else if (c == '"') {
			quoted = true;
		} else if (c == '{') {
			/* literal: {n}\r\n then n bytes */
			size_t n = strtoul((const char *)b->data + i + 1, NULL, 10);
			const unsigned char *nl = memchr(b->data + i, '\n', b->len - i);
			if (nl == NULL)
				abort();
			i = (size_t)(nl - b->data) + n;
		} else if (c == '(') {
			depth++;
		} else if (c == ')' && --depth < 0) {
			abort();
		}
	}
	if (depth != 0 || quoted)
		abort();
}

static void walk(const struct mime_message *msg, const struct mime_part *part)
{
	struct buf body;

	check_headers(msg, part);
	buf_init(&body, 0);
	if (part->kind == MIME_PART_LEAF)
		(void)mime_decode_transfer(part->encoding, msg->data + part->body_offset,
					   part->body.physical, &body);
	buf_free(&body);
	for (const struct mime_part *c = part->children; c != NULL; c = c->next)
		walk(msg, c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mime_limits limits = { 0 };
	struct mime_message *msg;
	unsigned int flags, count = 0;
	struct buf out;

	if (size < 1)
		return 0;
	flags = (data[0] & 1) ? MIME_PARSE_LF_TO_CRLF : 0;
	if (data[0] & 2) {
		limits.depth_max = 3;
		limits.parts_max = 8;
	}
	msg = mime_parse(data + 1, size - 1, &limits, flags);
	if (msg->root->header.physical + msg->root->body.physical != size - 1)
		abort();
	check_part(msg, msg->root, &count);
	if (count != msg->part_count)
		abort();
	walk(msg, msg->root);
	static const char *const sections[] = { "1", "2", "1.1", "2.1.HEADER", "1.2.3.4", "3.1" };
	for (size_t i = 0; i < MF_N_ELEMENTS(sections); i++) {
		const char *end;
		const struct mime_part *p = imap_section_part(msg, sections[i], &end);
		if (p != NULL && (p->body_offset + p->body.physical > msg->size ||
				  end < sections[i] || end > sections[i] + strlen(sections[i])))
			abort();
	}
	buf_init(&out, 0);
	imap_bodystructure_write(msg, msg->root, true, (data[0] & 4) ? IMAP_QUOTE_UTF8 : 0, &out);
	check_balanced(&out);
	buf_reset(&out);
	imap_bodystructure_write(msg, msg->root, false, 0, &out);
	check_balanced(&out);
	buf_reset(&out);
	imap_envelope_write(msg, msg->root, 0, &out);
	check_balanced(&out);
	buf_free(&out);
	mime_message_free(&msg);
	return 0;
}
