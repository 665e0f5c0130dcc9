/* mime-decode.c: Content-Transfer-Encoding decoding for lib/mime.h
 * (RFC 2045 section 6), for IMAP BINARY and for searching body text. */
#include "lib/mime.h"

#include <string.h>
#include <strings.h>

static void decode_base64(const unsigned char *s, size_t len, struct buf *out)
{
	unsigned char chunk[768];
	size_t n = 0;
	uint32_t bits = 0;
	int nbits = 0;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = s[i];
		int v = mf_base64_value(c);
		if (c == '=') {
			/* padding ends a quantum; a new one may follow */
			bits = 0;
			nbits = 0;
			continue;
		}
		if (v < 0)
			continue;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			chunk[n++] = (unsigned char)(bits >> nbits);
			if (n == sizeof(chunk)) {
				buf_append(out, chunk, n);
				n = 0;
			}
		}
	}
	if (n > 0)
		buf_append(out, chunk, n);
}

/* One line of quoted-printable without its line break. */
static void qp_line(const unsigned char *s, size_t len, bool hard_break, struct buf *out)
{
	bool soft = false;
	size_t i = 0;

	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	if (len > 0 && s[len - 1] == '=') {
		soft = true;
		len--;
	}
	while (i < len) {
		const unsigned char *eq = memchr(s + i, '=', len - i);
		size_t run = eq == NULL ? len - i : (size_t)(eq - (s + i));
		if (run > 0)
			buf_append(out, s + i, run);
		i += run;
		if (i >= len)
			break;
		if (i + 2 < len && mf_hex_value(s[i + 1]) >= 0 && mf_hex_value(s[i + 2]) >= 0) {
			unsigned char c = (unsigned char)(mf_hex_value(s[i + 1]) * 16 + mf_hex_value(s[i + 2]));
			buf_append(out, &c, 1);
			i += 3;
		} else {
			buf_append(out, "=", 1);
			i++;
		}
	}
	if (hard_break && !soft)
		buf_append(out, "\r\n", 2);
}

static void decode_qp(const unsigned char *s, size_t len, struct buf *out)
{
	size_t i = 0;

	while (i < len) {
		const unsigned char *lf = memchr(s + i, '\n', len - i);
		size_t end = lf == NULL ? len : (size_t)(lf - s);
		size_t content = end;
		if (lf != NULL && content > i && s[content - 1] == '\r')
			content--;
		qp_line(s + i, content - i, lf != NULL, out);
		i = lf == NULL ? len : end + 1;
	}
}

int mime_decode_transfer(const char *encoding, const void *data, size_t len,
			 struct buf *out)
{
	if (encoding == NULL || strcasecmp(encoding, "7bit") == 0 ||
	    strcasecmp(encoding, "8bit") == 0 || strcasecmp(encoding, "binary") == 0) {
		if (len > 0)
			buf_append(out, data, len);
		return 0;
	}
	if (strcasecmp(encoding, "base64") == 0) {
		decode_base64(data, len, out);
		return 0;
	}
	if (strcasecmp(encoding, "quoted-printable") == 0) {
		decode_qp(data, len, out);
		return 0;
	}
	return -1;
}
