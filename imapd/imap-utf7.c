/* imap-utf7.c: modified UTF-7 (RFC 3501 5.1.3), see imap-utf7.h. Decoding
 * re-encodes its result and compares, which is what makes validation strict:
 * only the canonical encoding of a name is accepted. */
#include "imapd/imap-utf7.h"

#include <string.h>

static const char b64chars[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int b64_value(unsigned char c)
{
	const char *p;

	if (c == '\0')
		return -1;
	p = strchr(b64chars, c);
	return p == NULL ? -1 : (int)(p - b64chars);
}

/* Decodes one UTF-8 sequence at *s; returns the code point or -1. */
static long utf8_next(const unsigned char **s)
{
	const unsigned char *p = *s;
	unsigned long cp;
	int n, i;

	if (p[0] < 0x80) {
		*s = p + 1;
		return p[0];
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		n = 1; cp = p[0] & 0x1f;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		n = 2; cp = p[0] & 0x0f;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		n = 3; cp = p[0] & 0x07;
	} else {
		return -1;
	}
	for (i = 1; i <= n; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*s = p + n + 1;
	return (long)cp;
}

static int utf8_put(struct buf *dest, unsigned long cp)
{
	unsigned char out[4];
	size_t n;

	if (cp < 0x80) {
		out[0] = (unsigned char)cp; n = 1;
	} else if (cp < 0x800) {
		out[0] = 0xc0 | (cp >> 6); out[1] = 0x80 | (cp & 0x3f); n = 2;
	} else if (cp < 0x10000) {
		out[0] = 0xe0 | (cp >> 12); out[1] = 0x80 | ((cp >> 6) & 0x3f);
		out[2] = 0x80 | (cp & 0x3f); n = 3;
	} else {
		out[0] = 0xf0 | (cp >> 18); out[1] = 0x80 | ((cp >> 12) & 0x3f);
		out[2] = 0x80 | ((cp >> 6) & 0x3f); out[3] = 0x80 | (cp & 0x3f);
		n = 4;
	}
	return buf_append(dest, out, n);
}

/* Base64 state of an open "&...-" run while encoding. */
struct utf7_enc {
	uint32_t bits;
	int nbits;
	bool open;
};

static int utf7_put_unit(struct buf *dest, struct utf7_enc *enc, uint16_t unit)
{
	char c;

	if (!enc->open) {
		if (buf_append(dest, "&", 1) < 0)
			return -1;
		enc->open = true;
	}
	enc->bits = (enc->bits << 16) | unit;
	enc->nbits += 16;
	while (enc->nbits >= 6) {
		enc->nbits -= 6;
		c = b64chars[(enc->bits >> enc->nbits) & 0x3f];
		if (buf_append(dest, &c, 1) < 0)
			return -1;
	}
	return 0;
}

static int utf7_close(struct buf *dest, struct utf7_enc *enc)
{
	char c;

	if (!enc->open)
		return 0;
	if (enc->nbits > 0) {
		c = b64chars[(enc->bits << (6 - enc->nbits)) & 0x3f];
		if (buf_append(dest, &c, 1) < 0)
			return -1;
	}
	enc->bits = 0;
	enc->nbits = 0;
	enc->open = false;
	return buf_append(dest, "-", 1);
}

static int utf7_put_cp(struct buf *dest, struct utf7_enc *enc, unsigned long cp)
{
	if (cp < 0x10000)
		return utf7_put_unit(dest, enc, (uint16_t)cp);
	cp -= 0x10000;
	if (utf7_put_unit(dest, enc, (uint16_t)(0xd800 | (cp >> 10))) < 0)
		return -1;
	return utf7_put_unit(dest, enc, (uint16_t)(0xdc00 | (cp & 0x3ff)));
}

int imap_utf8_to_utf7(const char *src, struct buf *dest)
{
	const unsigned char *p = (const unsigned char *)src;
	struct utf7_enc enc = { 0, 0, false };

	while (*p != '\0') {
		if (*p >= 0x20 && *p <= 0x7e) {
			if (utf7_close(dest, &enc) < 0 || buf_append(dest, p, 1) < 0 ||
			    (*p == '&' && buf_append(dest, "-", 1) < 0))
				return -1;
			p++;
			continue;
		}
		long cp = utf8_next(&p);
		if (cp < 0 || utf7_put_cp(dest, &enc, (unsigned long)cp) < 0)
			return -1;
	}
	return utf7_close(dest, &enc);
}

/* Decodes the base64 run at *s (after '&', up to and including '-'). */
static int utf7_decode_run(const unsigned char **s, struct buf *dest)
{
	const unsigned char *p = *s;
	uint32_t bits = 0;
	int nbits = 0, v;
	unsigned long high = 0;

	for (; *p != '-'; p++) {
		if ((v = b64_value(*p)) < 0)
			return -1;
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits < 16)
			continue;
		nbits -= 16;
		unsigned long unit = (bits >> nbits) & 0xffff;
		if (high != 0) {
			if (unit < 0xdc00 || unit > 0xdfff)
				return -1;
			unit = 0x10000 + ((high - 0xd800) << 10) + (unit - 0xdc00);
			high = 0;
		} else if (unit >= 0xd800 && unit <= 0xdbff) {
			high = unit;
			continue;
		} else if (unit >= 0xdc00 && unit <= 0xdfff) {
			return -1;
		}
		if (utf8_put(dest, unit) < 0)
			return -1;
	}
	/* leftover bits must be padding (< 6 bits... up to 14 with a
	   partial unit is invalid) and zero */
	if (high != 0 || nbits >= 6 || (bits & ((1u << nbits) - 1)) != 0)
		return -1;
	*s = p + 1;
	return 0;
}

static int utf7_decode(const char *src, struct buf *dest)
{
	const unsigned char *p = (const unsigned char *)src;

	while (*p != '\0') {
		if (*p < 0x20 || *p > 0x7e)
			return -1;
		if (*p != '&') {
			if (buf_append(dest, p++, 1) < 0)
				return -1;
		} else if (p[1] == '-') {
			if (buf_append(dest, "&", 1) < 0)
				return -1;
			p += 2;
		} else {
			p++;
			if (utf7_decode_run(&p, dest) < 0)
				return -1;
		}
	}
	return 0;
}

int imap_utf7_to_utf8(const char *src, struct buf *dest)
{
	struct buf check;
	size_t start = dest->len;
	bool same;

	if (imap_utf7_is_plain(src))
		return src[0] == '\0' ? 0 : buf_append(dest, src, strlen(src));
	if (utf7_decode(src, dest) < 0 || buf_append(dest, "", 1) < 0)
		return -1;
	dest->len--;
	/* canonical form only: encoding the result must give src back */
	buf_init(&check, 0);
	same = imap_utf8_to_utf7((const char *)dest->data + start, &check) == 0 &&
		check.len == strlen(src) && memcmp(check.data, src, check.len) == 0;
	buf_free(&check);
	return same ? 0 : -1;
}

bool imap_utf7_is_valid(const char *src)
{
	struct buf tmp;
	int ret;

	if (imap_utf7_is_plain(src))
		return true;
	buf_init(&tmp, 0);
	ret = imap_utf7_to_utf8(src, &tmp);
	buf_free(&tmp);
	return ret == 0;
}

bool imap_utf7_is_plain(const char *src)
{
	for (const unsigned char *p = (const unsigned char *)src; *p != '\0'; p++) {
		if (*p < 0x20 || *p > 0x7e || *p == '&')
			return false;
	}
	return true;
}
