/* mime.c: the MIME structure parser of lib/mime.h. One pass over the lines
 * of the message; a stack of the boundaries of the open multiparts decides
 * where parts end. Byte and line counters running with the pass give every
 * part its sizes without rescanning, so the work stays linear. */
#include "lib/mime-private.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LANGUAGES_MAX 64

/* A position with the LF and bare-LF counts before it. */
struct mark {
	uint64_t off, lf, bare;
};

struct part_priv {
	struct mime_part pub;   /* first: the public part is freed as this */
	struct mark start, body;
	bool in_header, ended;
};

struct boundary {
	struct mime_part *multipart;
	const char *str;        /* the multipart's boundary parameter */
	size_t len;
};

struct ctx {
	struct mime_message *msg;
	struct mime_limits limits;
	struct part_priv *cur;
	struct boundary *bnd;
	unsigned int nbnd;
	struct mark line;       /* start of the current line */
	bool prev_bare;         /* the previous line ended in a bare LF */
};

static struct part_priv *priv(struct mime_part *p)
{
	return (struct part_priv *)p;
}

static void size_set(struct mime_size *sz, const struct mime_message *msg,
		     const struct mark *from, const struct mark *to)
{
	sz->physical = to->off - from->off;
	sz->lines = to->lf - from->lf;
	sz->virtual = sz->physical +
		((msg->flags & MIME_PARSE_LF_TO_CRLF) != 0 ? to->bare - from->bare : 0);
}

static struct part_priv *part_new(struct ctx *c, struct mime_part *parent,
				  const struct mark *at)
{
	struct part_priv *p = mf_calloc(1, sizeof(*p));

	p->start = p->body = *at;
	p->in_header = true;
	p->pub.header_offset = p->pub.body_offset = at->off;
	p->pub.parent = parent;
	if (parent != NULL) {
		struct mime_part **tail = &parent->children;
		while (*tail != NULL)
			tail = &(*tail)->next;
		*tail = &p->pub;
		parent->child_count++;
	}
	c->msg->part_count++;
	return p;
}

static unsigned int part_depth(const struct mime_part *p)
{
	unsigned int depth = 0;

	for (; p->parent != NULL; p = p->parent)
		depth++;
	return depth;
}

/* ---- content headers ---- */

static char *unfold_dup(const struct mime_field *f)
{
	struct buf b;
	char *ret;

	buf_init(&b, 0);
	mime_field_unfold(f->value, f->value_len, &b);
	ret = mime_buf_strdup(&b);
	buf_free(&b);
	return ret;
}

static void set_content_type(struct mime_part *part, const char *value)
{
	char *type = NULL, *subtype = NULL;

	if (part->type != NULL)
		return;
	if (mime_parse_content_value(value, true, &type, &subtype, &part->params,
				     &part->param_count) < 0)
		return;
	part->type = type;
	part->subtype = subtype;
}

static void set_encoding(struct mime_part *part, const char *value)
{
	struct mime_lexer lx = { value, value + strlen(value) };
	struct buf tok;

	if (part->encoding != NULL)
		return;
	buf_init(&tok, 0);
	mime_lex_skip_cfws(&lx, NULL);
	if (mime_lex_token(&lx, "()<>@,;:\\\"/[]?=", &tok) > 0) {
		mime_lex_skip_cfws(&lx, NULL);
		if (lx.p == lx.end)
			part->encoding = mime_buf_strdup(&tok);
	}
	buf_free(&tok);
}

static void set_disposition(struct mime_part *part, const char *value)
{
	if (part->disposition != NULL)
		return;
	mime_parse_content_value(value, false, &part->disposition, NULL,
				 &part->disp_params, &part->disp_param_count);
}

static void set_languages(struct mime_part *part, const char *value)
{
	struct mime_lexer lx = { value, value + strlen(value) };
	struct buf tok;

	if (part->languages != NULL)
		return;
	part->languages = mf_calloc(LANGUAGES_MAX, sizeof(char *));
	buf_init(&tok, 0);
	while (lx.p < lx.end && part->language_count < LANGUAGES_MAX) {
		mime_lex_skip_cfws(&lx, NULL);
		buf_reset(&tok);
		if (mime_lex_token(&lx, "()<>@,;:\\\"/[]?=", &tok) > 0)
			part->languages[part->language_count++] = mime_buf_strdup(&tok);
		mime_lex_skip_cfws(&lx, NULL);
		if (lx.p < lx.end)
			lx.p++; /* ',' or junk */
	}
	buf_free(&tok);
	if (part->language_count == 0)
		mf_free(&part->languages);
}

static char *strip_spaces(char *s)
{
	char *w = s;

	for (char *r = s; *r != '\0'; r++) {
		if (*r != ' ' && *r != '\t' && *r != '\r' && *r != '\n')
			*w++ = *r;
	}
	*w = '\0';
	return s;
}

static void content_field(struct mime_part *part, const struct mime_field *f)
{
	const char *n = f->name + 8;
	size_t len = f->name_len - 8;
	char *v;

#define IS(s) (len == sizeof(s) - 1 && strncasecmp(n, s, len) == 0)
	if (!(IS("Type") || IS("Transfer-Encoding") || IS("ID") || IS("Description") ||
	      IS("MD5") || IS("Disposition") || IS("Language") || IS("Location")))
		return;
	v = unfold_dup(f);
	if (IS("Type"))
		set_content_type(part, v);
	else if (IS("Transfer-Encoding"))
		set_encoding(part, v);
	else if (IS("Disposition"))
		set_disposition(part, v);
	else if (IS("Language"))
		set_languages(part, v);
	else {
		char **dest = IS("ID") ? &part->id : IS("Description") ? &part->description :
			IS("MD5") ? &part->md5 : &part->location;
		if (*dest == NULL) {
			*dest = IS("Location") ? strip_spaces(v) : v;
			v = NULL;
		}
	}
#undef IS
	free(v);
}

static void parse_content_headers(struct ctx *c, struct mime_part *part)
{
	struct mime_header_iter iter;
	struct mime_field f;

	mime_header_iter_init(&iter, c->msg, part);
	while (mime_header_next(&iter, &f)) {
		if (f.name_len > 8 && strncasecmp(f.name, "Content-", 8) == 0)
			content_field(part, &f);
	}
	if (part->type == NULL && part->parent != NULL &&
	    part->parent->kind == MIME_PART_MULTIPART &&
	    strcasecmp(part->parent->subtype, "digest") == 0) {
		part->type = mf_strdup("message");
		part->subtype = mf_strdup("rfc822");
	}
}

/* ---- structure ---- */

static const char *param_value(const struct mime_part *part, const char *name)
{
	for (unsigned int i = 0; i < part->param_count; i++) {
		if (strcasecmp(part->params[i].name, name) == 0)
			return part->params[i].value;
	}
	return NULL;
}

static bool can_nest(struct ctx *c, const struct mime_part *part)
{
	if (part_depth(part) + 1 >= c->limits.depth_max ||
	    c->msg->part_count >= c->limits.parts_max) {
		c->msg->limited = true;
		return false;
	}
	return true;
}

static void header_end(struct ctx *c, const struct mark *at)
{
	struct part_priv *p = c->cur;
	struct mime_part *part = &p->pub;
	const char *boundary;

	p->in_header = false;
	p->body = *at;
	part->body_offset = at->off;
	size_set(&part->header, c->msg, &p->start, at);
	parse_content_headers(c, part);
	if (part->type == NULL)
		return;
	if (strcasecmp(part->type, "multipart") == 0 &&
	    (boundary = param_value(part, "boundary")) != NULL && boundary[0] != '\0') {
		if (!can_nest(c, part))
			return;
		part->kind = MIME_PART_MULTIPART;
		c->bnd[c->nbnd].multipart = part;
		c->bnd[c->nbnd].str = boundary;
		c->bnd[c->nbnd].len = strlen(boundary);
		c->nbnd++;
	} else if (strcasecmp(part->type, "message") == 0 &&
		   (strcasecmp(part->subtype, "rfc822") == 0 ||
		    strcasecmp(part->subtype, "global") == 0)) {
		if (!can_nest(c, part))
			return;
		part->kind = MIME_PART_MESSAGE;
		c->cur = part_new(c, part, at);
	}
}

/* Ends an open part at `at` (clamped so no size goes negative).
   parent_ends: its parent is ended at `at` too. */
static void part_end(struct ctx *c, struct part_priv *p, const struct mark *at,
		     bool parent_ends)
{
	struct mark end = *at;

	if (p->in_header) {
		/* header cut off by a delimiter (or the end): no body. A part
		   starting on the delimiter line itself is empty and stays
		   there, unless its parent ends before it (right after an inner
		   delimiter whose line break the outer delimiter takes): then it
		   moves back to `end` so it stays inside its parent. */
		if (end.off < p->start.off && parent_ends) {
			p->start = end;
			p->pub.header_offset = end.off;
		} else if (end.off < p->start.off) {
			end = p->start;
		}
		c->cur = p;
		header_end(c, &end);
		if (p->pub.kind == MIME_PART_MESSAGE) {
			struct part_priv *child = priv(p->pub.children);
			child->in_header = false;
			child->ended = true;
		}
	} else if (end.off < p->body.off) {
		/* the delimiter took the line break of the blank line ending
		   the header: the header ends before it, the body is empty */
		p->body = end;
		p->pub.body_offset = end.off;
		size_set(&p->pub.header, c->msg, &p->start, &end);
		if (p->pub.kind == MIME_PART_MESSAGE) {
			/* its (empty, already ended) message moves along */
			struct part_priv *child = priv(p->pub.children);
			child->start = child->body = end;
			child->pub.header_offset = child->pub.body_offset = end.off;
			size_set(&child->pub.header, c->msg, &end, &end);
			size_set(&child->pub.body, c->msg, &end, &end);
		}
	}
	size_set(&p->pub.body, c->msg, &p->body, &end);
	p->ended = true;
}

/* RFC 2046 delimiters exactly: "--" boundary ["--"] then only transport
   padding; "--boundaryX" or "--boundary-- text" are content. */
static int boundary_match(const struct boundary *b, const unsigned char *line, size_t len)
{
	size_t i;
	int kind = 1;

	if (len < 2 + b->len || memcmp(line + 2, b->str, b->len) != 0)
		return 0;
	i = 2 + b->len;
	if (len - i >= 2 && line[i] == '-' && line[i + 1] == '-') {
		kind = 2;
		i += 2;
	}
	for (; i < len; i++) {
		if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
			return 0;
	}
	return kind;
}

static void boundary_hit(struct ctx *c, unsigned int k, bool close, const struct mark *after)
{
	struct mime_part *m = c->bnd[k].multipart;
	struct mark end = c->line;

	if (!close && c->msg->part_count >= c->limits.parts_max) {
		c->msg->limited = true;
		return; /* the line stays content of the current part */
	}
	/* the line break before a delimiter belongs to the delimiter */
	if (end.off > 0) {
		end.off -= c->prev_bare ? 1 : 2;
		end.lf--;
		end.bare -= c->prev_bare ? 1 : 0;
	}
	for (struct part_priv *p = c->cur; &p->pub != m; p = priv(p->pub.parent))
		part_end(c, p, &end, p->pub.parent != m);
	c->nbnd = close ? k : k + 1;
	c->cur = priv(m);
	if (!close)
		c->cur = part_new(c, m, after);
}

static void handle_line(struct ctx *c, const unsigned char *line, size_t len,
			const struct mark *after)
{
	if (c->nbnd > 0 && len >= 2 && line[0] == '-' && line[1] == '-') {
		for (unsigned int k = c->nbnd; k-- > 0;) {
			int m = boundary_match(&c->bnd[k], line, len);
			if (m != 0) {
				boundary_hit(c, k, m == 2, after);
				return;
			}
		}
	}
	if (c->cur->in_header && len == 0 && after->lf > c->line.lf)
		header_end(c, after);
}

static void parse_lines(struct ctx *c)
{
	const unsigned char *data = c->msg->data;
	size_t size = c->msg->size;

	while (c->line.off < size) {
		const unsigned char *s = data + c->line.off;
		const unsigned char *lf = memchr(s, '\n', size - c->line.off);
		size_t len = lf == NULL ? size - c->line.off : (size_t)(lf - s);
		bool bare = lf != NULL && (len == 0 || s[len - 1] != '\r');
		struct mark after = c->line;

		after.off += len + (lf != NULL);
		after.lf += lf != NULL;
		after.bare += bare;
		if (lf != NULL && !bare)
			len--;
		handle_line(c, s, len, &after);
		c->line = after;
		c->prev_bare = bare;
	}
}

struct mime_message *mime_parse(const void *data, size_t size,
				const struct mime_limits *limits, unsigned int flags)
{
	struct mime_message *msg = mf_calloc(1, sizeof(*msg));
	struct ctx c;

	memset(&c, 0, sizeof(c));
	msg->data = data;
	msg->size = size;
	msg->flags = flags;
	c.msg = msg;
	if (limits != NULL)
		c.limits = *limits;
	if (c.limits.depth_max == 0)
		c.limits.depth_max = 100;
	if (c.limits.parts_max == 0)
		c.limits.parts_max = 10000;
	c.bnd = mf_calloc(c.limits.depth_max + 1, sizeof(*c.bnd));
	c.cur = part_new(&c, NULL, &c.line);
	msg->root = &c.cur->pub;
	parse_lines(&c);
	for (struct part_priv *p = c.cur; p != NULL; p = priv(p->pub.parent)) {
		part_end(&c, p, &c.line, p->pub.parent != NULL);
		if (p->pub.parent == NULL)
			break;
	}
	free(c.bnd);
	return msg;
}

/* ---- freeing ---- */

static void part_free(struct mime_part *part)
{
	while (part != NULL) {
		struct mime_part *next = part->next;
		part_free(part->children);
		free(part->type);
		free(part->subtype);
		mime_params_free(&part->params, part->param_count);
		free(part->id);
		free(part->description);
		free(part->encoding);
		free(part->md5);
		free(part->disposition);
		mime_params_free(&part->disp_params, part->disp_param_count);
		for (unsigned int i = 0; i < part->language_count; i++)
			free(part->languages[i]);
		free(part->languages);
		free(part->location);
		free(priv(part));
		part = next;
	}
}

void mime_message_free(struct mime_message **msg)
{
	if (*msg == NULL)
		return;
	part_free((*msg)->root);
	mf_free(msg);
}
