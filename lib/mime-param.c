/* mime-param.c: Content-Type / Content-Disposition style values for
 * lib/mime.h: "type/subtype; name=value ..." with comments, unquoted values
 * real mail sends (boundary=----=_Part_1), and RFC 2231 continuations and
 * extended values. */
#include "lib/mime-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define TSPECIALS "()<>@,;:\\\"/[]?="
#define RAW_PARAMS_MAX 256
#define SECTIONS_MAX 1000

struct raw_param {
	char *name, *value;
};

static void skip_to_semicolon(struct mime_lexer *lx)
{
	const char *semi = memchr(lx->p, ';', (size_t)(lx->end - lx->p));
	lx->p = semi == NULL ? lx->end : semi;
}

/* An unquoted value: runs of non-space text up to ';', comments dropped. */
static void read_bare_value(struct mime_lexer *lx, struct buf *out)
{
	for (;;) {
		const char *start = lx->p;
		while (lx->p < lx->end && *lx->p != ';' && *lx->p != ' ' &&
		       *lx->p != '\t' && *lx->p != '\r' && *lx->p != '\n')
			lx->p++;
		if (lx->p > start) {
			if (out->len > 0)
				buf_append(out, " ", 1);
			buf_append(out, start, (size_t)(lx->p - start));
		}
		mime_lex_skip_cfws(lx, NULL);
		if (lx->p >= lx->end || *lx->p == ';')
			return;
	}
}

static bool read_param(struct mime_lexer *lx, struct raw_param *rp)
{
	struct buf name, value;
	bool ok = false;

	buf_init(&name, 0);
	buf_init(&value, 0);
	if (mime_lex_token(lx, TSPECIALS, &name) == 0)
		goto out;
	mime_lex_skip_cfws(lx, NULL);
	if (lx->p >= lx->end || *lx->p != '=')
		goto out;
	lx->p++;
	mime_lex_skip_cfws(lx, NULL);
	if (lx->p < lx->end && *lx->p == '"')
		mime_lex_quoted(lx, &value);
	else
		read_bare_value(lx, &value);
	rp->name = mime_buf_strdup(&name);
	rp->value = mime_buf_strdup(&value);
	ok = true;
out:
	buf_free(&name);
	buf_free(&value);
	return ok;
}

static unsigned int read_params(struct mime_lexer *lx, struct raw_param **rawp)
{
	unsigned int n = 0, cap = 0;

	for (;;) {
		mime_lex_skip_cfws(lx, NULL);
		if (lx->p >= lx->end)
			return n;
		if (*lx->p != ';') {
			skip_to_semicolon(lx);
			continue;
		}
		lx->p++;
		mime_lex_skip_cfws(lx, NULL);
		if (lx->p >= lx->end)
			return n;
		if (n == cap && cap < RAW_PARAMS_MAX) {
			cap = cap == 0 ? 4 : cap * 2;
			*rawp = mf_realloc(*rawp, cap * sizeof(**rawp));
		}
		if (n < cap && read_param(lx, &(*rawp)[n]))
			n++;
		else
			skip_to_semicolon(lx);
	}
}

/* "*", "*N" or "*N*" after the base name: section number and whether the
   section is extended; -1 for anything else. */
static int section_parse(const char *suffix, bool *ext_r)
{
	int n = 0;

	if (strcmp(suffix, "*") == 0) {
		*ext_r = true;
		return 0;
	}
	suffix++;
	if (*suffix < '0' || *suffix > '9')
		return -1;
	for (; *suffix >= '0' && *suffix <= '9'; suffix++) {
		n = n * 10 + (*suffix - '0');
		if (n >= SECTIONS_MAX)
			return -1;
	}
	*ext_r = *suffix == '*';
	if (suffix[*ext_r ? 1 : 0] != '\0')
		return -1;
	return n;
}

static bool name_seen(const struct mime_param *out, unsigned int n, const char *name)
{
	for (unsigned int i = 0; i < n; i++) {
		if (strcasecmp(out[i].name, name) == 0)
			return true;
	}
	return false;
}

/* Joins the sections of base (from raw[first] on) into one parameter. */
static void join_sections(struct raw_param *raw, unsigned int count, unsigned int first,
			  size_t base_len, struct mime_param *out)
{
	struct buf value;
	bool any_ext = false, ext;
	int want = 0;
	bool found = true;

	buf_init(&value, 0);
	/* sections may come in any order; each pass finds the next index */
	while (found && want < SECTIONS_MAX) {
		found = false;
		for (unsigned int j = first; j < count; j++) {
			const char *star = strchr(raw[j].name, '*');
			if (star == NULL || (size_t)(star - raw[j].name) != base_len ||
			    strncasecmp(raw[j].name, raw[first].name, base_len) != 0)
				continue;
			if (section_parse(star, &ext) != want)
				continue;
			any_ext = any_ext || ext;
			buf_append(&value, raw[j].value, strlen(raw[j].value));
			found = true;
			want++;
			break;
		}
	}
	out->name = mf_asprintf("%.*s%s", (int)base_len, raw[first].name, any_ext ? "*" : "");
	out->value = mime_buf_strdup(&value);
	buf_free(&value);
}

static unsigned int join_params(struct raw_param *raw, unsigned int count,
				struct mime_param *out)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < count; i++) {
		const char *star = strchr(raw[i].name, '*');
		if (star == NULL) {
			if (!name_seen(out, n, raw[i].name)) {
				out[n].name = mf_strdup(raw[i].name);
				out[n].value = mf_strdup(raw[i].value);
				n++;
			}
			continue;
		}
		size_t base_len = (size_t)(star - raw[i].name);
		bool seen = false;
		for (unsigned int j = 0; j < i && !seen; j++) {
			const char *s2 = strchr(raw[j].name, '*');
			seen = s2 != NULL && (size_t)(s2 - raw[j].name) == base_len &&
				strncasecmp(raw[j].name, raw[i].name, base_len) == 0;
		}
		if (!seen && base_len > 0) {
			join_sections(raw, count, i, base_len, &out[n]);
			if (out[n].value[0] == '\0' && name_seen(out, n, out[n].name)) {
				mf_free(&out[n].name);
				mf_free(&out[n].value);
			} else {
				n++;
			}
		}
	}
	return n;
}

int mime_parse_content_value(const char *value, bool want_subtype, char **type_r,
			     char **subtype_r, struct mime_param **params_r,
			     unsigned int *count_r)
{
	struct mime_lexer lx = { value, value + strlen(value) };
	struct raw_param *raw;
	struct buf type, subtype;
	unsigned int raw_count;
	int ret = -1;

	*params_r = NULL;
	*count_r = 0;
	buf_init(&type, 0);
	buf_init(&subtype, 0);
	mime_lex_skip_cfws(&lx, NULL);
	if (mime_lex_token(&lx, TSPECIALS, &type) == 0)
		goto out;
	if (want_subtype) {
		mime_lex_skip_cfws(&lx, NULL);
		if (lx.p >= lx.end || *lx.p != '/')
			goto out;
		lx.p++;
		mime_lex_skip_cfws(&lx, NULL);
		if (mime_lex_token(&lx, TSPECIALS, &subtype) == 0)
			goto out;
		*subtype_r = mime_buf_strdup(&subtype);
	}
	*type_r = mime_buf_strdup(&type);
	raw = NULL;
	raw_count = read_params(&lx, &raw);
	if (raw_count > 0) {
		*params_r = mf_calloc(raw_count, sizeof(**params_r));
		*count_r = join_params(raw, raw_count, *params_r);
	}
	for (unsigned int i = 0; i < raw_count; i++) {
		free(raw[i].name);
		free(raw[i].value);
	}
	free(raw);
	ret = 0;
out:
	buf_free(&type);
	buf_free(&subtype);
	return ret;
}

void mime_params_free(struct mime_param **params, unsigned int count)
{
	if (*params == NULL)
		return;
	for (unsigned int i = 0; i < count; i++) {
		free((*params)[i].name);
		free((*params)[i].value);
	}
	mf_free(params);
}

/* charset'language'percent-encoded */
static char *decode_extended(const char *v)
{
	const char *q1 = strchr(v, '\''), *q2;
	struct buf raw, out;
	char charset[64];
	char *ret;

	if (q1 == NULL || (q2 = strchr(q1 + 1, '\'')) == NULL ||
	    (size_t)(q1 - v) >= sizeof(charset))
		return mf_strdup(v);
	memcpy(charset, v, (size_t)(q1 - v));
	charset[q1 - v] = '\0';
	buf_init(&raw, 0);
	for (const char *p = q2 + 1; *p != '\0'; p++) {
		char c = *p;
		if (c == '%' && mf_hex_value((unsigned char)p[1]) >= 0 &&
		    mf_hex_value((unsigned char)p[2]) >= 0) {
			c = (char)(mf_hex_value((unsigned char)p[1]) * 16 + mf_hex_value((unsigned char)p[2]));
			p += 2;
		}
		buf_append(&raw, &c, 1);
	}
	buf_init(&out, 0);
	if (mime_charset_to_utf8(charset[0] == '\0' ? "us-ascii" : charset,
				 raw.len == 0 ? "" : (const char *)raw.data, raw.len, &out) < 0)
		mime_append_utf8_valid(&out, raw.len == 0 ? (const unsigned char *)"" : raw.data,
				       raw.len);
	ret = mime_buf_strdup(&out);
	buf_free(&raw);
	buf_free(&out);
	return ret;
}

char *mime_param_get_utf8(const struct mime_param *params, unsigned int count,
			  const char *name)
{
	size_t nlen = strlen(name);

	for (unsigned int i = 0; i < count; i++) {
		if (strncasecmp(params[i].name, name, nlen) == 0 &&
		    strcmp(params[i].name + nlen, "*") == 0)
			return decode_extended(params[i].value);
	}
	for (unsigned int i = 0; i < count; i++) {
		if (strcasecmp(params[i].name, name) == 0) {
			struct buf out;
			char *ret;
			buf_init(&out, 0);
			mime_decode_words(params[i].value, strlen(params[i].value), &out);
			ret = mime_buf_strdup(&out);
			buf_free(&out);
			return ret;
		}
	}
	return NULL;
}
