/* lmtp-parser.c: the resumable LMTP input parser and the MAIL/RCPT argument
 * grammar; see lmtp-parser.h. Pure code: no I/O, no allocation. */
#include "lmtpd/lmtp-parser.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum data_state {
	DS_LINE_START,  /* at the first byte of a line */
	DS_DOT,         /* line began with '.', which is dropped */
	DS_DOT_CR,      /* ".\r" seen: end if LF follows */
	DS_TEXT,        /* inside a line */
	DS_CR,          /* a CR inside a line, held back until we see if LF follows */
};

static const struct {
	const char *name;
	enum lmtp_cmd cmd;
} lmtp_verbs[] = {
	{ "LHLO", LMTP_CMD_LHLO }, { "HELO", LMTP_CMD_HELO }, { "EHLO", LMTP_CMD_EHLO },
	{ "MAIL", LMTP_CMD_MAIL }, { "RCPT", LMTP_CMD_RCPT }, { "DATA", LMTP_CMD_DATA },
	{ "RSET", LMTP_CMD_RSET }, { "NOOP", LMTP_CMD_NOOP }, { "QUIT", LMTP_CMD_QUIT },
	{ "VRFY", LMTP_CMD_VRFY }, { "HELP", LMTP_CMD_HELP },
	{ "STARTTLS", LMTP_CMD_STARTTLS },
};

static const unsigned char lf_byte[] = "\n";
static const unsigned char cr_byte[] = "\r";

void lmtp_parser_init(struct lmtp_parser *p, size_t line_max)
{
	memset(p, 0, sizeof(*p));
	p->line_max = line_max < 3 ? 3 : line_max;
	p->mode = LMTP_MODE_COMMAND;
}

void lmtp_parser_reset(struct lmtp_parser *p)
{
	lmtp_parser_init(p, p->line_max);
}

void lmtp_parser_begin_data(struct lmtp_parser *p)
{
	p->mode = LMTP_MODE_DATA;
	p->data_state = DS_LINE_START;
	p->scan_pos = 0;
}

bool lmtp_parser_in_data(const struct lmtp_parser *p)
{
	return p->mode == LMTP_MODE_DATA;
}

static bool is_blank(unsigned char c)
{
	return c == ' ' || c == '\t';
}

static bool is_alnum_verb(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '-' || c == '_';
}

static void event_init(struct lmtp_event *ev, enum lmtp_event_type type, size_t consumed)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->consumed = consumed;
}

static void set_verb(struct lmtp_event *ev, const unsigned char *line, size_t verb_len)
{
	size_t i;

	ev->cmd = LMTP_CMD_UNKNOWN;
	if (verb_len > LMTP_VERB_MAX)
		return;
	for (i = 0; i < verb_len; i++) {
		unsigned char c = line[i];

		if (!is_alnum_verb(c)) {
			ev->verb[0] = '\0';   /* never echo odd bytes as a verb */
			return;
		}
		ev->verb[i] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
	}
	ev->verb[verb_len] = '\0';
	for (i = 0; i < MF_N_ELEMENTS(lmtp_verbs); i++) {
		if (strcmp(ev->verb, lmtp_verbs[i].name) == 0) {
			ev->cmd = lmtp_verbs[i].cmd;
			return;
		}
	}
}

/* line excludes the line end. */
static void parse_command_line(const unsigned char *line, size_t len, struct lmtp_event *ev)
{
	size_t i, verb_len;

	for (i = 0; i < len; i++) {
		if (line[i] == '\0') {
			ev->type = LMTP_EV_BAD_LINE;
			ev->error = "NUL byte in command line";
			return;
		}
		if ((line[i] < 0x20 && line[i] != '\t') || line[i] == 0x7f) {
			ev->type = LMTP_EV_BAD_LINE;
			ev->error = "Control character in command line";
			return;
		}
	}
	while (len > 0 && is_blank(line[len - 1]))
		len--;
	if (len == 0) {
		ev->type = LMTP_EV_BAD_LINE;
		ev->error = "Empty command line";
		return;
	}
	for (verb_len = 0; verb_len < len && !is_blank(line[verb_len]); verb_len++)
		;
	ev->type = LMTP_EV_COMMAND;
	set_verb(ev, line, verb_len);
	for (i = verb_len; i < len && is_blank(line[i]); i++)
		;
	ev->arg = (const char *)line + i;
	ev->arg_len = len - i;
}

static void next_command(struct lmtp_parser *p, const unsigned char *in, size_t len,
			 struct lmtp_event *ev)
{
	size_t limit = MF_MIN(len, p->line_max);
	const unsigned char *lf;

	if (p->scan_pos > limit)
		p->scan_pos = 0;
	/* in is NULL when the connection's buffer was never filled */
	lf = limit > p->scan_pos ? memchr(in + p->scan_pos, '\n', limit - p->scan_pos) : NULL;
	if (lf != NULL) {
		size_t line_len = (size_t)(lf - in);

		p->scan_pos = 0;
		event_init(ev, LMTP_EV_COMMAND, line_len + 1);
		if (line_len > 0 && in[line_len - 1] == '\r')
			line_len--;
		parse_command_line(in, line_len, ev);
		return;
	}
	if (len < p->line_max) {
		p->scan_pos = len;
		event_init(ev, LMTP_EV_NEED_MORE, 0);
		return;
	}
	/* Over the limit: report now, skip to the LF (maybe already here). */
	p->scan_pos = 0;
	lf = memchr(in + limit, '\n', len - limit);
	if (lf != NULL) {
		event_init(ev, LMTP_EV_LINE_TOO_LONG, (size_t)(lf - in) + 1);
	} else {
		p->mode = LMTP_MODE_SKIP_LINE;
		event_init(ev, LMTP_EV_LINE_TOO_LONG, len);
	}
	ev->error = "Line too long";
}

static void set_data(struct lmtp_event *ev, const unsigned char *data, size_t len,
		     size_t consumed)
{
	event_init(ev, LMTP_EV_DATA, consumed);
	ev->data = data;
	ev->data_len = len;
}

/* Returns true when ev was filled in; false to go on at *pos. */
static bool data_text(struct lmtp_parser *p, const unsigned char *in, size_t len,
		      size_t *pos, struct lmtp_event *ev)
{
	size_t start = *pos, i;

	for (i = start; i < len && in[i] != '\n' && in[i] != '\r'; i++)
		;
	if (i == len) {
		*pos = len;
		set_data(ev, in + start, len - start, len);
		return len > start;
	}
	if (in[i] == '\n') {
		*pos = i + 1;
		p->data_state = DS_LINE_START;
		set_data(ev, in + start, i + 1 - start, i + 1);
		return true;
	}
	*pos = i + 1;
	p->data_state = DS_CR;
	set_data(ev, in + start, i - start, i + 1);
	return i > start;
}

static bool data_step(struct lmtp_parser *p, const unsigned char *in, size_t len,
		      size_t *pos, struct lmtp_event *ev)
{
	unsigned char c = in[*pos];

	switch ((enum data_state)p->data_state) {
	case DS_LINE_START:
		p->data_state = c == '.' ? DS_DOT : DS_TEXT;
		if (c == '.')
			(*pos)++;
		return false;
	case DS_DOT:
		if (c == '\r') {
			(*pos)++;
			p->data_state = DS_DOT_CR;
		} else if (c == '\n') {
			(*pos)++;
			p->mode = LMTP_MODE_COMMAND;
			event_init(ev, LMTP_EV_DATA_END, *pos);
			return true;
		} else {
			p->data_state = DS_TEXT;
		}
		return false;
	case DS_DOT_CR:
	case DS_CR:
		if (c == '\n') {
			(*pos)++;
			if (p->data_state == DS_DOT_CR) {
				p->mode = LMTP_MODE_COMMAND;
				event_init(ev, LMTP_EV_DATA_END, *pos);
				return true;
			}
			p->data_state = DS_LINE_START;
			set_data(ev, lf_byte, 1, *pos);
			return true;
		}
		/* A CR not followed by LF is message content. */
		p->data_state = DS_TEXT;
		set_data(ev, cr_byte, 1, *pos);
		return true;
	case DS_TEXT:
		return data_text(p, in, len, pos, ev);
	}
	return false;
}

static void next_data(struct lmtp_parser *p, const unsigned char *in, size_t len,
		      struct lmtp_event *ev)
{
	size_t pos = 0;

	while (pos < len) {
		if (data_step(p, in, len, &pos, ev))
			return;
	}
	event_init(ev, LMTP_EV_NEED_MORE, pos);
}

void lmtp_parser_next(struct lmtp_parser *p, const unsigned char *in, size_t len,
		      struct lmtp_event *ev_r)
{
	if (p->mode == LMTP_MODE_DATA) {
		next_data(p, in, len, ev_r);
		return;
	}
	if (p->mode == LMTP_MODE_SKIP_LINE) {
		const unsigned char *lf = len == 0 ? NULL : memchr(in, '\n', len);

		if (lf == NULL) {
			event_init(ev_r, LMTP_EV_NEED_MORE, len);
			return;
		}
		p->mode = LMTP_MODE_COMMAND;
		size_t skipped = (size_t)(lf - in) + 1;
		next_command(p, in + skipped, len - skipped, ev_r);
		ev_r->consumed += skipped;
		return;
	}
	next_command(p, in, len, ev_r);
}

/* --- MAIL / RCPT arguments --- */

struct cursor {
	const char *s;
	size_t len, pos;
};

static int cur_peek(const struct cursor *c)
{
	return c->pos < c->len ? (unsigned char)c->s[c->pos] : -1;
}

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_atext(int c)
{
	return c > 0 && (is_alpha(c) || is_digit(c) || strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Dot-string, leniently: atext and dots in any order (the MTA accepted it). */
static bool is_dot_string(const char *s, size_t len)
{
	size_t i;

	if (len == 0)
		return false;
	for (i = 0; i < len; i++) {
		if (s[i] != '.' && !is_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

static bool expect_keyword(struct cursor *c, const char *kw)
{
	size_t n = strlen(kw);

	if (c->len - c->pos < n || strncasecmp(c->s + c->pos, kw, n) != 0)
		return false;
	c->pos += n;
	while (c->pos < c->len && is_blank((unsigned char)c->s[c->pos]))
		c->pos++;
	return true;
}

/* A-d-l ":" before the mailbox: ignored (RFC 5321 4.1.2, C.). */
static bool skip_source_route(struct cursor *c)
{
	if (cur_peek(c) != '@')
		return true;
	while (c->pos < c->len) {
		int ch = cur_peek(c);

		c->pos++;
		if (ch == ':')
			return true;
		if (!(is_alpha(ch) || is_digit(ch) || ch == '.' || ch == '-' ||
		      ch == '@' || ch == ',' || ch == '[' || ch == ']'))
			return false;
	}
	return false;
}

static bool parse_quoted_local(struct cursor *c, struct lmtp_path *path)
{
	size_t out = 0;

	c->pos++;   /* opening quote */
	for (;;) {
		int ch = cur_peek(c);

		if (ch < 0)
			return false;
		c->pos++;
		if (ch == '"')
			break;
		if (ch == '\\') {
			ch = cur_peek(c);
			if (ch < 32 || ch > 126)
				return false;
			c->pos++;
		} else if (ch < 32 || ch > 126) {
			return false;
		}
		if (out >= LMTP_LOCALPART_MAX)
			return false;
		path->localpart[out++] = (char)ch;
	}
	path->localpart[out] = '\0';
	return true;
}

static bool parse_dot_local(struct cursor *c, struct lmtp_path *path)
{
	size_t start = c->pos, n;

	while (c->pos < c->len && (is_atext(cur_peek(c)) || cur_peek(c) == '.'))
		c->pos++;
	n = c->pos - start;
	if (n == 0 || n > LMTP_LOCALPART_MAX)
		return false;
	memcpy(path->localpart, c->s + start, n);
	path->localpart[n] = '\0';
	return true;
}

static bool domain_valid(const char *d, size_t len)
{
	size_t i, label = 0;

	if (len >= 2 && d[0] == '[' && d[len - 1] == ']') {
		for (i = 1; i + 1 < len; i++) {
			unsigned char ch = (unsigned char)d[i];
			if (ch < 33 || ch > 126 || ch == '[' || ch == ']' || ch == '\\')
				return false;
		}
		return len > 2;
	}
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)d[i];

		if (ch == '.') {
			if (label == 0 || d[i - 1] == '-')
				return false;
			label = 0;
		} else if (is_alpha(ch) || is_digit(ch) || ch == '_' ||
			   (ch == '-' && label > 0)) {
			label++;
		} else {
			return false;
		}
	}
	return label > 0 && d[len - 1] != '-';
}

static bool parse_domain(struct cursor *c, struct lmtp_path *path)
{
	size_t start = c->pos, n;

	while (c->pos < c->len && c->s[c->pos] != '>')
		c->pos++;
	n = c->pos - start;
	if (n == 0 || n > LMTP_DOMAIN_MAX || !domain_valid(c->s + start, n))
		return false;
	memcpy(path->domain, c->s + start, n);
	path->domain[n] = '\0';
	return true;
}

/* The path was checked to fit LMTP_PATH_MAX, so the address fits too. */
static void path_make_address(struct lmtp_path *path, const char *raw_local, size_t raw_len)
{
	size_t lp_len = strlen(path->localpart), dom_len = strlen(path->domain), n;

	if (is_dot_string(path->localpart, lp_len)) {
		raw_local = path->localpart;
		raw_len = lp_len;
	}
	n = MF_MIN(raw_len, sizeof(path->address) - 1);
	memcpy(path->address, raw_local, n);
	if (dom_len > 0 && n + 1 + dom_len < sizeof(path->address)) {
		path->address[n++] = '@';
		memcpy(path->address + n, path->domain, dom_len);
		n += dom_len;
	}
	path->address[n] = '\0';
}

/* "<...>" at the cursor. allow_null: "<>" ok. allow_postmaster: no domain. */
static enum lmtp_arg_result parse_path(struct cursor *c, struct lmtp_path *path,
				       bool allow_null, bool allow_postmaster,
				       const char **error_r)
{
	size_t open = c->pos, local_start;

	memset(path, 0, sizeof(*path));
	*error_r = "Syntax error in address";
	if (cur_peek(c) != '<') {
		*error_r = "Address must be in <>";
		return LMTP_ARG_SYNTAX;
	}
	c->pos++;
	if (cur_peek(c) == '>') {
		c->pos++;
		if (!allow_null) {
			*error_r = "Null address not allowed here";
			return LMTP_ARG_SYNTAX;
		}
		return LMTP_ARG_OK;
	}
	if (!skip_source_route(c))
		return LMTP_ARG_SYNTAX;
	local_start = c->pos;
	if (!(cur_peek(c) == '"' ? parse_quoted_local(c, path) : parse_dot_local(c, path)))
		return LMTP_ARG_SYNTAX;
	size_t local_len = c->pos - local_start;
	if (cur_peek(c) == '@') {
		c->pos++;
		if (!parse_domain(c, path))
			return LMTP_ARG_SYNTAX;
	} else if (!allow_postmaster || strcasecmp(path->localpart, "postmaster") != 0 ||
		   c->s[local_start] == '"') {
		*error_r = "Address needs a domain";
		return LMTP_ARG_SYNTAX;
	}
	if (cur_peek(c) != '>')
		return LMTP_ARG_SYNTAX;
	c->pos++;
	if (c->pos - open > LMTP_PATH_MAX) {
		*error_r = "Address too long";
		return LMTP_ARG_SYNTAX;
	}
	path_make_address(path, c->s + local_start, local_len);
	return LMTP_ARG_OK;
}

struct esmtp_param {
	const char *key, *value;
	size_t key_len, value_len;   /* value NULL when there was no '=' */
};

/* Splits " KEY[=VALUE] KEY..." after the path. Returns count or -1. */
static int parse_params(struct cursor *c, struct esmtp_param *params, const char **error_r)
{
	int count = 0;

	while (c->pos < c->len) {
		struct esmtp_param *pr = &params[count];

		if (!is_blank((unsigned char)c->s[c->pos])) {
			*error_r = "Syntax error after address";
			return -1;
		}
		while (c->pos < c->len && is_blank((unsigned char)c->s[c->pos]))
			c->pos++;
		if (count == LMTP_PARAMS_MAX) {
			*error_r = "Too many parameters";
			return -1;
		}
		pr->key = c->s + c->pos;
		while (c->pos < c->len && (is_alpha(cur_peek(c)) || is_digit(cur_peek(c)) ||
					   (cur_peek(c) == '-' && c->s + c->pos > pr->key)))
			c->pos++;
		pr->key_len = (size_t)(c->s + c->pos - pr->key);
		pr->value = NULL;
		pr->value_len = 0;
		if (cur_peek(c) == '=') {
			c->pos++;
			pr->value = c->s + c->pos;
			while (c->pos < c->len && cur_peek(c) >= 33 && cur_peek(c) <= 126 &&
			       cur_peek(c) != '=')
				c->pos++;
			pr->value_len = (size_t)(c->s + c->pos - pr->value);
			if (pr->value_len == 0) {
				*error_r = "Empty parameter value";
				return -1;
			}
		}
		if (pr->key_len == 0 || (c->pos < c->len && !is_blank(cur_peek(c)))) {
			*error_r = "Syntax error in parameter";
			return -1;
		}
		count++;
	}
	return count;
}

static bool key_is(const struct esmtp_param *pr, const char *name)
{
	return pr->key_len == strlen(name) && strncasecmp(pr->key, name, pr->key_len) == 0;
}

static bool value_is(const struct esmtp_param *pr, const char *value)
{
	return pr->value_len == strlen(value) &&
		strncasecmp(pr->value, value, pr->value_len) == 0;
}

static enum lmtp_arg_result mail_param_size(const struct esmtp_param *pr,
					    struct lmtp_mail_args *args, const char **error_r)
{
	uint64_t n = 0;
	size_t i;

	if (args->size_given || pr->value == NULL || pr->value_len > 20) {
		*error_r = "Bad SIZE parameter";
		return LMTP_ARG_PARAM_INVALID;
	}
	for (i = 0; i < pr->value_len; i++) {
		unsigned d = (unsigned char)pr->value[i] - '0';

		if (d > 9) {
			*error_r = "Bad SIZE parameter";
			return LMTP_ARG_PARAM_INVALID;
		}
		n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
	}
	args->size_given = true;
	args->size = n;
	return LMTP_ARG_OK;
}

static enum lmtp_arg_result mail_param(const struct esmtp_param *pr,
				       struct lmtp_mail_args *args, const char **error_r)
{
	if (key_is(pr, "SIZE"))
		return mail_param_size(pr, args, error_r);
	if (key_is(pr, "BODY")) {
		if (args->body != LMTP_BODY_NONE || pr->value == NULL) {
			*error_r = "Bad BODY parameter";
			return LMTP_ARG_PARAM_INVALID;
		}
		if (value_is(pr, "7BIT"))
			args->body = LMTP_BODY_7BIT;
		else if (value_is(pr, "8BITMIME"))
			args->body = LMTP_BODY_8BITMIME;
		else {
			*error_r = "Unsupported BODY type";
			return LMTP_ARG_PARAM_INVALID;
		}
		return LMTP_ARG_OK;
	}
	*error_r = "Unsupported parameter";
	return LMTP_ARG_PARAM_UNKNOWN;
}

enum lmtp_arg_result lmtp_parse_mail(const char *arg, size_t len,
				     struct lmtp_mail_args *args_r, const char **error_r)
{
	struct cursor c = { .s = arg, .len = len };
	struct esmtp_param params[LMTP_PARAMS_MAX];
	enum lmtp_arg_result ret;
	int count, i;

	memset(args_r, 0, sizeof(*args_r));
	if (!expect_keyword(&c, "FROM:")) {
		*error_r = "Syntax: MAIL FROM:<address>";
		return LMTP_ARG_SYNTAX;
	}
	ret = parse_path(&c, &args_r->path, true, false, error_r);
	if (ret != LMTP_ARG_OK)
		return ret;
	count = parse_params(&c, params, error_r);
	if (count < 0)
		return LMTP_ARG_SYNTAX;
	for (i = 0; i < count; i++) {
		ret = mail_param(&params[i], args_r, error_r);
		if (ret != LMTP_ARG_OK)
			return ret;
	}
	return LMTP_ARG_OK;
}

enum lmtp_arg_result lmtp_parse_rcpt(const char *arg, size_t len,
				     struct lmtp_path *path_r, const char **error_r)
{
	struct cursor c = { .s = arg, .len = len };
	struct esmtp_param params[LMTP_PARAMS_MAX];
	enum lmtp_arg_result ret;
	int count;

	if (!expect_keyword(&c, "TO:")) {
		memset(path_r, 0, sizeof(*path_r));
		*error_r = "Syntax: RCPT TO:<address>";
		return LMTP_ARG_SYNTAX;
	}
	ret = parse_path(&c, path_r, false, true, error_r);
	if (ret != LMTP_ARG_OK)
		return ret;
	count = parse_params(&c, params, error_r);
	if (count < 0)
		return LMTP_ARG_SYNTAX;
	if (count > 0) {
		*error_r = "Unsupported parameter";
		return LMTP_ARG_PARAM_UNKNOWN;
	}
	return LMTP_ARG_OK;
}

/* --- Message-ID --- */

static size_t line_end(const unsigned char *msg, size_t len, size_t pos)
{
	const unsigned char *lf = memchr(msg + pos, '\n', len - pos);

	return lf == NULL ? len : (size_t)(lf - msg);
}

static void append_sanitized(const unsigned char *s, size_t n, char *out, size_t out_size,
			     size_t *out_len)
{
	size_t i;

	for (i = 0; i < n && *out_len + 1 < out_size; i++) {
		unsigned char ch = s[i];

		if (ch == ' ' || ch == '\t' || ch == '\r')
			continue;
		out[(*out_len)++] = ch > 32 && ch < 127 ? (char)ch : '?';
	}
	out[*out_len] = '\0';
}

bool lmtp_find_message_id(const unsigned char *msg, size_t len, char *out, size_t out_size)
{
	static const char name[] = "message-id:";
	size_t pos = 0, out_len = 0, end;

	if (out_size == 0)
		return false;
	out[0] = '\0';
	len = MF_MIN(len, (size_t)LMTP_HEADER_SCAN_MAX);
	while (pos < len) {
		end = line_end(msg, len, pos);
		if (end == pos || (end == pos + 1 && msg[pos] == '\r'))
			return false;   /* end of the header section */
		if (end - pos >= sizeof(name) - 1 &&
		    strncasecmp((const char *)msg + pos, name, sizeof(name) - 1) == 0) {
			size_t start = pos + sizeof(name) - 1;

			append_sanitized(msg + start, end - start, out, out_size, &out_len);
			/* folded continuation lines */
			for (pos = end + 1; pos < len && (msg[pos] == ' ' || msg[pos] == '\t');
			     pos = end + 1) {
				end = line_end(msg, len, pos);
				append_sanitized(msg + pos, end - pos, out, out_size, &out_len);
			}
			return out_len > 0;
		}
		pos = end + 1;
	}
	return false;
}
