/* mime-header.c: header field access for lib/mime.h: iteration, unfolding,
 * RFC 2047 encoded words, Content-Type style values with RFC 2231
 * parameters, charset conversion (iconv) to UTF-8. */
#include "lib/mime-private.h"

#include <errno.h>
#include <iconv.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ENCODED_WORD_MAX 512

static bool is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

char *mime_buf_strdup(const struct buf *b)
{
	return mf_strndup(b->len == 0 ? "" : (const char *)b->data, b->len);
}

/* ---- iteration and unfolding ---- */

void mime_header_iter_init(struct mime_header_iter *iter, const struct mime_message *msg,
			   const struct mime_part *part)
{
	iter->pos = msg->data + part->header_offset;
	iter->end = iter->pos + part->header.physical;
}

static const unsigned char *line_end(const unsigned char *p, const unsigned char *end)
{
	const unsigned char *lf = memchr(p, '\n', (size_t)(end - p));
	return lf == NULL ? end : lf + 1;
}

static bool field_name_ok(const unsigned char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] <= 0x20 || s[i] >= 0x7f)
			return false;
	}
	return true;
}

bool mime_header_next(struct mime_header_iter *iter, struct mime_field *field_r)
{
	while (iter->pos < iter->end) {
		const unsigned char *s = iter->pos, *e = line_end(s, iter->end);
		const unsigned char *colon, *name_end;

		iter->pos = e;
		if (*s == '\n' || (*s == '\r' && s + 1 < iter->end && s[1] == '\n'))
			return false; /* the blank line ending the header */
		if (is_wsp(*s))
			continue;
		colon = memchr(s, ':', (size_t)(e - s));
		if (colon == NULL)
			continue;
		for (name_end = colon; name_end > s && is_wsp(name_end[-1]); name_end--)
			;
		if (!field_name_ok(s, (size_t)(name_end - s)))
			continue;
		while (iter->pos < iter->end && is_wsp(*iter->pos))
			iter->pos = line_end(iter->pos, iter->end);
		e = iter->pos;
		if (e > colon + 1 && e[-1] == '\n')
			e--;
		if (e > colon + 1 && e[-1] == '\r')
			e--;
		field_r->name = (const char *)s;
		field_r->name_len = (size_t)(name_end - s);
		field_r->value = colon + 1;
		field_r->value_len = (size_t)(e - (colon + 1));
		return true;
	}
	return false;
}

void mime_field_unfold(const unsigned char *v, size_t len, struct buf *out)
{
	size_t start = out->len, i = 0;

	while (i < len && (is_wsp(v[i]) || v[i] == '\r' || v[i] == '\n'))
		i++;
	while (i < len) {
		/* copy up to the next line break, then drop it if it folds */
		const unsigned char *lf = memchr(v + i, '\n', len - i);
		size_t end = lf == NULL ? len : (size_t)(lf - v);
		size_t copy_end = end;
		bool fold = lf != NULL && end + 1 < len && is_wsp(v[end + 1]);
		if (fold && copy_end > i && v[copy_end - 1] == '\r')
			copy_end--;
		if (copy_end > i)
			buf_append(out, v + i, copy_end - i);
		if (lf != NULL && !fold)
			buf_append(out, "\n", 1);
		i = lf == NULL ? len : end + 1;
	}
	while (out->len > start && (is_wsp(out->data[out->len - 1]) ||
				    out->data[out->len - 1] == '\r' ||
				    out->data[out->len - 1] == '\n'))
		out->len--;
}

char *mime_header_get(const struct mime_message *msg, const struct mime_part *part,
		      const char *name)
{
	struct mime_header_iter iter;
	struct mime_field f;
	size_t nlen = strlen(name);

	mime_header_iter_init(&iter, msg, part);
	while (mime_header_next(&iter, &f)) {
		if (f.name_len == nlen && strncasecmp(f.name, name, nlen) == 0) {
			struct buf b;
			char *ret;
			buf_init(&b, 0);
			mime_field_unfold(f.value, f.value_len, &b);
			ret = mime_buf_strdup(&b);
			buf_free(&b);
			return ret;
		}
	}
	return NULL;
}

/* ---- lexer ---- */

void mime_lex_skip_cfws(struct mime_lexer *lx, struct buf *comment)
{
	for (;;) {
		while (lx->p < lx->end && (is_wsp((unsigned char)*lx->p) ||
					   *lx->p == '\r' || *lx->p == '\n'))
			lx->p++;
		if (lx->p >= lx->end || *lx->p != '(')
			return;
		unsigned int level = 0;
		if (comment != NULL && comment->len > 0)
			buf_append(comment, " ", 1);
		for (; lx->p < lx->end; lx->p++) {
			char c = *lx->p;
			if (c == '\\' && lx->p + 1 < lx->end) {
				lx->p++;
				c = *lx->p;
			} else if (c == '(') {
				if (level++ == 0)
					continue;
			} else if (c == ')') {
				if (--level == 0) {
					lx->p++;
					break;
				}
			}
			if (comment != NULL)
				buf_append(comment, &c, 1);
		}
	}
}

void mime_lex_quoted(struct mime_lexer *lx, struct buf *out)
{
	lx->p++;
	while (lx->p < lx->end) {
		const char *start = lx->p;
		while (lx->p < lx->end && *lx->p != '"' && *lx->p != '\\' &&
		       *lx->p != '\r' && *lx->p != '\n')
			lx->p++;
		if (lx->p > start)
			buf_append(out, start, (size_t)(lx->p - start));
		if (lx->p >= lx->end)
			return;
		if (*lx->p == '"') {
			lx->p++;
			return;
		}
		if (*lx->p == '\\' && lx->p + 1 < lx->end)
			buf_append(out, ++lx->p, 1);
		lx->p++;
	}
}

size_t mime_lex_token(struct mime_lexer *lx, const char *specials, struct buf *out)
{
	const char *start = lx->p;

	while (lx->p < lx->end) {
		unsigned char c = (unsigned char)*lx->p;
		if (c <= 0x20 || c == 0x7f || strchr(specials, c) != NULL)
			break;
		lx->p++;
	}
	if (out != NULL && lx->p > start)
		buf_append(out, start, (size_t)(lx->p - start));
	return (size_t)(lx->p - start);
}

/* ---- charsets ---- */

void mime_append_utf8_valid(struct buf *out, const unsigned char *s, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		size_t n = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 :
			c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
		bool ok = n > 0 && i + n <= len;
		for (size_t k = 1; ok && k < n; k++)
			ok = (s[i + k] & 0xc0) == 0x80;
		if (ok && n == 3) {
			ok = !(c == 0xe0 && s[i + 1] < 0xa0) && !(c == 0xed && s[i + 1] >= 0xa0);
		} else if (ok && n == 4) {
			ok = !(c == 0xf0 && s[i + 1] < 0x90) && !(c == 0xf4 && s[i + 1] >= 0x90);
		}
		if (!ok) {
			buf_append(out, "\xef\xbf\xbd", 3);
			i++;
			continue;
		}
		buf_append(out, s + i, n);
		i += n;
	}
}

static bool charset_is_utf8(const char *cs)
{
	return strcasecmp(cs, "utf-8") == 0 || strcasecmp(cs, "utf8") == 0 ||
		strcasecmp(cs, "us-ascii") == 0 || strcasecmp(cs, "ascii") == 0;
}

int mime_charset_to_utf8(const char *charset, const void *data, size_t len, struct buf *out)
{
	char inbuf_name[64], outbuf[1024];
	iconv_t cd;
	char *in = (char *)data;

	if (charset_is_utf8(charset)) {
		mime_append_utf8_valid(out, data, len);
		return 0;
	}
	if (strlen(charset) >= sizeof(inbuf_name))
		return -1;
	for (const char *c = charset; *c != '\0'; c++) {
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr("-_.:+", *c) != NULL))
			return -1;
	}
	cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return -1;
	while (len > 0) {
		char *o = outbuf;
		size_t olen = sizeof(outbuf);
		size_t r = iconv(cd, &in, &len, &o, &olen);
		buf_append(out, outbuf, sizeof(outbuf) - olen);
		if (r == (size_t)-1 && errno != E2BIG) {
			/* invalid or truncated input: one replacement char, go on */
			buf_append(out, "\xef\xbf\xbd", 3);
			in++;
			len--;
			iconv(cd, NULL, NULL, NULL, NULL);
		}
	}
	iconv_close(cd);
	return 0;
}

/* ---- RFC 2047 ---- */

static void decode_q(const char *s, size_t len, struct buf *out)
{
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		if (c == '_') {
			c = ' ';
		} else if (c == '=' && i + 2 < len && mf_hex_value((unsigned char)s[i + 1]) >= 0 &&
			   mf_hex_value((unsigned char)s[i + 2]) >= 0) {
			c = (char)(mf_hex_value((unsigned char)s[i + 1]) * 16 +
				   mf_hex_value((unsigned char)s[i + 2]));
			i += 2;
		}
		buf_append(out, &c, 1);
	}
}

static void decode_b(const char *s, size_t len, struct buf *out)
{
	uint32_t bits = 0;
	int nbits = 0;

	for (size_t i = 0; i < len; i++) {
		int v = mf_base64_value((unsigned char)s[i]);
		if (v < 0)
			continue; /* padding and junk */
		bits = (bits << 6) | (uint32_t)v;
		nbits += 6;
		if (nbits >= 8) {
			nbits -= 8;
			unsigned char c = (unsigned char)(bits >> nbits);
			buf_append(out, &c, 1);
		}
	}
}

/* Tries to decode one encoded word at s (starting "=?"); returns its length
   or 0 when it is not one. */
static size_t encoded_word(const char *s, size_t len, struct buf *out)
{
	const char *q1, *q3, *end = s + MF_MIN(len, ENCODED_WORD_MAX);
	char charset[64], enc;
	struct buf raw;
	size_t cslen;

	q1 = memchr(s + 2, '?', (size_t)(end - (s + 2)));
	if (q1 == NULL || q1 + 3 >= end || q1[2] != '?')
		return 0;
	enc = q1[1];
	if (enc != 'q' && enc != 'Q' && enc != 'b' && enc != 'B')
		return 0;
	for (q3 = q1 + 3; q3 + 1 < end; q3++) {
		if (*q3 == '?' && q3[1] == '=')
			break;
		if ((unsigned char)*q3 <= 0x20)
			return 0;
	}
	if (q3 + 1 >= end)
		return 0;
	cslen = (size_t)(q1 - (s + 2));
	if (cslen == 0 || cslen >= sizeof(charset))
		return 0;
	memcpy(charset, s + 2, cslen);
	charset[cslen] = '\0';
	if (strchr(charset, '*') != NULL)
		*strchr(charset, '*') = '\0'; /* RFC 2231 language suffix */
	buf_init(&raw, 0);
	if (enc == 'q' || enc == 'Q')
		decode_q(q1 + 3, (size_t)(q3 - (q1 + 3)), &raw);
	else
		decode_b(q1 + 3, (size_t)(q3 - (q1 + 3)), &raw);
	int ret = mime_charset_to_utf8(charset, raw.data == NULL ? "" : (const char *)raw.data,
				       raw.len, out);
	buf_free(&raw);
	return ret < 0 ? 0 : (size_t)(q3 + 2 - s);
}

static bool all_wsp(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (!is_wsp((unsigned char)s[i]) && s[i] != '\r' && s[i] != '\n')
			return false;
	}
	return true;
}

void mime_decode_words(const char *text, size_t len, struct buf *out)
{
	size_t i = 0, plain_start = 0;
	bool last_encoded = false;

	while (i < len) {
		if (text[i] == '=' && i + 1 < len && text[i + 1] == '?') {
			size_t mark = out->len, n;
			/* whitespace between two encoded words is dropped */
			if (!last_encoded || !all_wsp(text + plain_start, i - plain_start))
				mime_append_utf8_valid(out, (const unsigned char *)text +
						       plain_start, i - plain_start);
			n = encoded_word(text + i, len - i, out);
			if (n > 0) {
				i += n;
				plain_start = i;
				last_encoded = true;
				continue;
			}
			out->len = mark;
		}
		i++;
	}
	mime_append_utf8_valid(out, (const unsigned char *)text + plain_start,
			       len - plain_start);
}
