/* mime-address.c: RFC 5322 address lists for lib/mime.h, tolerant of what
 * real mail carries: groups ("undisclosed-recipients:;"), quoted and
 * commented display names, obsolete routes, missing domains, stray
 * brackets. Every loop consumes input, so the work is linear. */
#include "lib/mime-private.h"

#include <stdlib.h>
#include <string.h>

#define ADDR_SPECIALS "()<>[]:;@\\,\""
#define MISSING_MAILBOX "MISSING_MAILBOX"
#define MISSING_DOMAIN "MISSING_DOMAIN"

struct addr_ctx {
	struct mime_lexer lx;
	struct mime_address *addrs;
	unsigned int count, max;
};

static char *dup_or_null(const struct buf *b)
{
	return b->len == 0 ? NULL : mime_buf_strdup(b);
}

static void emit(struct addr_ctx *c, char *name, char *route, char *mailbox,
		 char *host, bool invalid)
{
	struct mime_address *a;

	if (c->count >= c->max) {
		free(name); free(route); free(mailbox); free(host);
		return;
	}
	a = &c->addrs[c->count++];
	a->name = name;
	a->route = route;
	a->mailbox = mailbox;
	a->host = host;
	a->invalid = invalid;
}

/* Words (atoms with dots, quoted strings) joined by single spaces. */
static unsigned int read_phrase(struct mime_lexer *lx, struct buf *out)
{
	unsigned int words = 0;

	for (;;) {
		mime_lex_skip_cfws(lx, NULL);
		if (lx->p >= lx->end)
			return words;
		if (words > 0 && *lx->p != '.')
			buf_append(out, " ", 1);
		if (*lx->p == '"') {
			mime_lex_quoted(lx, out);
		} else if (mime_lex_token(lx, ADDR_SPECIALS, out) == 0) {
			if (words > 0 && *lx->p != '.')
				out->len--;
			return words;
		}
		words++;
	}
}

static void read_domain(struct mime_lexer *lx, struct buf *out)
{
	mime_lex_skip_cfws(lx, NULL);
	if (lx->p < lx->end && *lx->p == '[') {
		const char *close = memchr(lx->p, ']', (size_t)(lx->end - lx->p));
		const char *stop = close == NULL ? lx->end : close + 1;
		buf_append(out, lx->p, (size_t)(stop - lx->p));
		lx->p = stop;
		return;
	}
	/* dot-atom, tolerating spaces around dots (obs-domain) */
	for (;;) {
		if (mime_lex_token(lx, ADDR_SPECIALS, out) == 0)
			return;
		if (out->data[out->len - 1] != '.') {
			const char *save = lx->p;
			while (lx->p < lx->end && (*lx->p == ' ' || *lx->p == '\t'))
				lx->p++;
			if (lx->p >= lx->end || *lx->p != '.') {
				lx->p = save; /* a comment after it may be the name */
				return;
			}
			buf_append(out, ".", 1);
			lx->p++;
		}
		mime_lex_skip_cfws(lx, NULL);
	}
}

/* "<[@route,@route:]local@domain>" after the '<'. */
static void read_angle(struct addr_ctx *c, struct buf *name)
{
	struct mime_lexer *lx = &c->lx;
	struct buf route, local, domain;
	const char *close;

	buf_init(&route, 0);
	buf_init(&local, 0);
	buf_init(&domain, 0);
	mime_lex_skip_cfws(lx, NULL);
	if (lx->p < lx->end && *lx->p == '@') {
		const char *colon = memchr(lx->p, ':', (size_t)(lx->end - lx->p));
		close = memchr(lx->p, '>', (size_t)(lx->end - lx->p));
		if (colon != NULL && (close == NULL || colon < close)) {
			for (const char *s = lx->p; s < colon; s++) {
				if (*s != ' ' && *s != '\t')
					buf_append(&route, s, 1);
			}
			lx->p = colon + 1;
		}
	}
	read_phrase(lx, &local);
	if (lx->p < lx->end && *lx->p == '@') {
		lx->p++;
		read_domain(lx, &domain);
	}
	close = memchr(lx->p, '>', (size_t)(lx->end - lx->p));
	lx->p = close == NULL ? lx->end : close + 1;
	bool invalid = local.len == 0 || domain.len == 0;
	emit(c, dup_or_null(name), dup_or_null(&route),
	     local.len == 0 ? mf_strdup(MISSING_MAILBOX) : mime_buf_strdup(&local),
	     domain.len == 0 ? mf_strdup(MISSING_DOMAIN) : mime_buf_strdup(&domain), invalid);
	buf_free(&route);
	buf_free(&local);
	buf_free(&domain);
}

/* "local@domain (comment)" once the local part is read and '@' is next. */
static void read_addr_spec(struct addr_ctx *c, struct buf *local)
{
	struct buf domain, comment;

	buf_init(&domain, 0);
	buf_init(&comment, 0);
	c->lx.p++;
	read_domain(&c->lx, &domain);
	mime_lex_skip_cfws(&c->lx, &comment);
	emit(c, dup_or_null(&comment), NULL,
	     local->len == 0 ? mf_strdup(MISSING_MAILBOX) : mime_buf_strdup(local),
	     domain.len == 0 ? mf_strdup(MISSING_DOMAIN) : mime_buf_strdup(&domain),
	     local->len == 0 || domain.len == 0);
	buf_free(&domain);
	buf_free(&comment);
}

/* One mailbox (or, at top level, a group). Returns false at a ';' that
   ends the current group. */
static bool read_address(struct addr_ctx *c, bool in_group)
{
	struct mime_lexer *lx = &c->lx;
	struct buf phrase;
	bool ret = true;

	buf_init(&phrase, 0);
	read_phrase(lx, &phrase);
	char ch = lx->p < lx->end ? *lx->p : '\0';
	if (ch == '@') {
		read_addr_spec(c, &phrase);
	} else if (ch == '<') {
		lx->p++;
		read_angle(c, &phrase);
	} else if (ch == ':' && !in_group && phrase.len > 0) {
		lx->p++;
		emit(c, NULL, NULL, mime_buf_strdup(&phrase), NULL, false);
		while (lx->p < lx->end && read_address(c, true))
			;
		emit(c, NULL, NULL, NULL, NULL, false);
	} else {
		if (phrase.len > 0)
			emit(c, NULL, NULL, mime_buf_strdup(&phrase), mf_strdup(MISSING_DOMAIN),
			     true);
		if (ch == ';' && in_group)
			ret = false;
		if (lx->p < lx->end)
			lx->p++; /* ',' ';' or a stray special */
	}
	buf_free(&phrase);
	return ret;
}

void mime_address_parse(const char *value, unsigned int max,
			struct mime_address **addrs_r, unsigned int *count_r)
{
	struct addr_ctx c;

	memset(&c, 0, sizeof(c));
	c.lx.p = value;
	c.lx.end = value + strlen(value);
	c.max = max == 0 ? 1000 : max;
	/* each entry needs at least one input byte, groups two entries */
	c.addrs = mf_calloc(MF_MIN((size_t)c.max, strlen(value) * 2 + 2),
			    sizeof(*c.addrs));
	c.max = (unsigned int)MF_MIN((size_t)c.max, strlen(value) * 2 + 2);
	while (c.lx.p < c.lx.end)
		read_address(&c, false);
	*addrs_r = c.addrs;
	*count_r = c.count;
}

void mime_address_free(struct mime_address **addrs, unsigned int count)
{
	if (*addrs == NULL)
		return;
	for (unsigned int i = 0; i < count; i++) {
		free((*addrs)[i].name);
		free((*addrs)[i].route);
		free((*addrs)[i].mailbox);
		free((*addrs)[i].host);
	}
	mf_free(addrs);
}
