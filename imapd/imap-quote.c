/* imap-quote.c: see imap-quote.h. */
#include "imapd/imap-quote.h"

#include <string.h>

bool imap_utf8_valid(const void *data, size_t len)
{
	const unsigned char *s = data;

	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 :
			c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		if (n == 0 || i + n > len)
			return false;
		for (size_t k = 1; k < n; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
		}
		if ((c == 0xe0 && s[i + 1] < 0xa0) || (c == 0xed && s[i + 1] >= 0xa0) ||
		    (c == 0xf0 && s[i + 1] < 0x90) || (c == 0xf4 && s[i + 1] >= 0x90))
			return false;
		i += n;
	}
	return true;
}

static bool needs_literal(const unsigned char *s, size_t len, unsigned int flags)
{
	bool eight_bit = false;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '\r' || s[i] == '\n')
			return true;
		eight_bit = eight_bit || s[i] >= 0x80;
	}
	if (!eight_bit)
		return false;
	return (flags & IMAP_QUOTE_UTF8) == 0 || !imap_utf8_valid(s, len);
}

void imap_append_string(struct buf *out, const char *str, size_t len, unsigned int flags)
{
	const unsigned char *s = (const unsigned char *)str;

	if (needs_literal(s, len, flags)) {
		buf_printf(out, "{%zu}\r\n", len);
		for (size_t i = 0; i < len; i++)
			buf_append(out, s[i] == '\0' ? (const unsigned char *)" " : &s[i], 1);
		return;
	}
	buf_append(out, "\"", 1);
	for (size_t i = 0; i < len;) {
		size_t run = 0;
		while (i + run < len && s[i + run] != '"' && s[i + run] != '\\' &&
		       s[i + run] != '\0')
			run++;
		if (run > 0)
			buf_append(out, s + i, run);
		i += run;
		if (i >= len)
			break;
		if (s[i] == '\0')
			buf_append(out, " ", 1);
		else
			buf_append(out, (const char[]){ '\\', (char)s[i] }, 2);
		i++;
	}
	buf_append(out, "\"", 1);
}

void imap_append_nstring(struct buf *out, const char *s, unsigned int flags)
{
	if (s == NULL)
		buf_append(out, "NIL", 3);
	else
		imap_append_string(out, s, strlen(s), flags);
}
