/* imap-envelope.c: see imap-envelope.h. */
#include "imapd/imap-envelope.h"

#include "imapd/imap-quote.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum env_field {
	ENV_DATE, ENV_SUBJECT, ENV_FROM, ENV_SENDER, ENV_REPLY_TO, ENV_TO, ENV_CC,
	ENV_BCC, ENV_IN_REPLY_TO, ENV_MESSAGE_ID, ENV_COUNT
};

static const char *const env_names[ENV_COUNT] = {
	"Date", "Subject", "From", "Sender", "Reply-To", "To", "Cc", "Bcc",
	"In-Reply-To", "Message-ID",
};

static int env_field_index(const struct mime_field *f)
{
	for (int i = 0; i < ENV_COUNT; i++) {
		if (strlen(env_names[i]) == f->name_len &&
		    strncasecmp(f->name, env_names[i], f->name_len) == 0)
			return i;
	}
	return -1;
}

static void write_addresses(struct buf *out, const struct mime_address *a,
			    unsigned int count, unsigned int flags)
{
	buf_append(out, "(", 1);
	for (unsigned int i = 0; i < count; i++) {
		buf_append(out, "(", 1);
		imap_append_nstring(out, a[i].name, flags);
		buf_append(out, " ", 1);
		imap_append_nstring(out, a[i].route, flags);
		buf_append(out, " ", 1);
		imap_append_nstring(out, a[i].mailbox, flags);
		buf_append(out, " ", 1);
		imap_append_nstring(out, a[i].host, flags);
		buf_append(out, ")", 1);
	}
	buf_append(out, ")", 1);
}

/* Writes an address list field; returns false (writing nothing) when the
   field is absent or holds no address, so the caller can fall back. */
static bool write_address_field(struct buf *out, const char *value, unsigned int flags)
{
	struct mime_address *addrs;
	unsigned int count;

	if (value == NULL)
		return false;
	mime_address_parse(value, 0, &addrs, &count);
	if (count > 0)
		write_addresses(out, addrs, count, flags);
	mime_address_free(&addrs, count);
	return count > 0;
}

void imap_envelope_write(const struct mime_message *msg, const struct mime_part *part,
			 unsigned int flags, struct buf *out)
{
	struct mime_header_iter iter;
	struct mime_field f, fields[ENV_COUNT];
	bool have[ENV_COUNT] = { false };
	char *values[ENV_COUNT] = { NULL };
	struct buf tmp;

	mime_header_iter_init(&iter, msg, part);
	while (mime_header_next(&iter, &f)) {
		int i = env_field_index(&f);
		if (i >= 0) {
			fields[i] = f;
			have[i] = true;
		}
	}
	buf_init(&tmp, 0);
	for (int i = 0; i < ENV_COUNT; i++) {
		if (!have[i])
			continue;
		buf_reset(&tmp);
		mime_field_unfold(fields[i].value, fields[i].value_len, &tmp);
		values[i] = mf_strndup(tmp.len == 0 ? "" : (const char *)tmp.data, tmp.len);
	}
	buf_free(&tmp);

	buf_append(out, "(", 1);
	imap_append_nstring(out, values[ENV_DATE], flags);
	buf_append(out, " ", 1);
	imap_append_nstring(out, values[ENV_SUBJECT], flags);
	for (int i = ENV_FROM; i <= ENV_BCC; i++) {
		buf_append(out, " ", 1);
		if (write_address_field(out, values[i], flags))
			continue;
		if ((i == ENV_SENDER || i == ENV_REPLY_TO) &&
		    write_address_field(out, values[ENV_FROM], flags))
			continue;
		buf_append(out, "NIL", 3);
	}
	buf_append(out, " ", 1);
	imap_append_nstring(out, values[ENV_IN_REPLY_TO], flags);
	buf_append(out, " ", 1);
	imap_append_nstring(out, values[ENV_MESSAGE_ID], flags);
	buf_append(out, ")", 1);
	for (int i = 0; i < ENV_COUNT; i++)
		free(values[i]);
}
