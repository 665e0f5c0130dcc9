/* imap-parser.c: the resumable IMAP command parser, see imap-parser.h.
 * A byte-at-a-time state machine builds a flat node array (offsets into one
 * text buffer, which may move when it grows); imap_parser_command() turns it
 * into the pointer tree callers see. Literal data is copied or streamed in
 * bulk, never byte by byte. */
#include "imapd/imap-parser.h"

#include "lib/buf.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NO_NODE UINT32_MAX

enum pstate {
	S_TAG, S_NAME, S_SUBNAME, S_ARGS, S_ATOM, S_QUOTED, S_QUOTED_ESC,
	S_TILDE, S_LIT_OPEN, S_LIT_DIGITS, S_LIT_PLUS, S_LIT_CR, S_LIT_DATA,
	S_DECIDE, S_STREAM, S_CR, S_SKIP, S_SKIP_DATA, S_RAWLINE,
	S_FATAL,
};

struct pnode {
	enum imap_arg_type type;
	bool literal8, nonsync;
	uint32_t first_child, last_child, next;
	uint32_t count;
	size_t off, len;
};

struct imap_parser {
	struct imap_parser_limits limits;
	enum pstate state;
	bool command_ready;   /* reset before the next byte */
	bool reset_pending;   /* rejected sync literal: reset on next call */
	bool raw_line_next;

	struct buf text;
	struct pnode *nodes;
	uint32_t node_count, node_cap;
	uint32_t *stack;          /* open lists; stack[0] = root sentinel */
	unsigned int depth;
	uint32_t root_first, root_last, root_count;

	size_t line_len;      /* bytes of this command counted against line_max */
	size_t tag_off, name_off, tok_off;
	bool have_tag, have_name, after_token;
	unsigned int bracket;
	bool bracket_quote, bracket_esc;

	struct imap_literal_info lit;
	uint64_t lit_left;
	uint32_t lit_node;

	/* {n+} tracking while skipping a bad line */
	uint64_t skip_num;
	int skip_state;       /* 0 none, 1 digits, 2 plus, 3 closed */

	const unsigned char *chunk;
	size_t chunk_len;
	bool chunk_last;

	enum imap_parse_error error;
	const char *error_str;

	struct imap_arg *argv;
	size_t argv_cap;
	struct imap_command cmd;
};

enum { STEP_CONTINUE = 100 };

static void limits_fill(struct imap_parser_limits *l)
{
	if (l->line_max == 0)
		l->line_max = 65536;
	if (l->literal_max == 0)
		l->literal_max = 65536;
	if (l->stream_min == 0)
		l->stream_min = l->literal_max;
	if (l->nesting_max == 0)
		l->nesting_max = 32;
	if (l->nesting_max > 1000)
		l->nesting_max = 1000;
	if (l->arg_max == 0)
		l->arg_max = 4096;
	if (l->tag_max == 0)
		l->tag_max = 64;
	if (l->name_max == 0)
		l->name_max = 32;
}

struct imap_parser *imap_parser_create(const struct imap_parser_limits *limits)
{
	struct imap_parser *p = mf_calloc(1, sizeof(*p));

	if (limits != NULL)
		p->limits = *limits;
	limits_fill(&p->limits);
	p->stack = mf_calloc(p->limits.nesting_max + 1, sizeof(*p->stack));
	buf_init(&p->text, 0);
	imap_parser_reset(p);
	return p;
}

void imap_parser_destroy(struct imap_parser **parser)
{
	struct imap_parser *p = *parser;

	if (p == NULL)
		return;
	buf_free(&p->text);
	free(p->stack);
	free(p->nodes);
	free(p->argv);
	free(p);
	*parser = NULL;
}

/* Above these, buffers are released between commands so that thousands of
   idle sessions (IDLE) do not keep what one big command once needed. */
#define TEXT_KEEP_MAX 4096
#define NODES_KEEP_MAX 128

static void command_clear(struct imap_parser *p)
{
	if (p->text.cap > TEXT_KEEP_MAX)
		buf_free(&p->text);
	buf_reset(&p->text);
	if (p->node_cap > NODES_KEEP_MAX) {
		mf_free(&p->nodes);
		p->node_cap = 0;
		mf_free(&p->argv);
		p->argv_cap = 0;
	}
	p->node_count = 0;
	p->depth = 0;
	p->stack[0] = NO_NODE;
	p->root_first = p->root_last = NO_NODE;
	p->root_count = 0;
	p->line_len = 0;
	p->have_tag = p->have_name = p->after_token = false;
	p->bracket = 0;
	p->command_ready = p->reset_pending = false;
	p->error = IMAP_PARSE_ERR_NONE;
	p->error_str = NULL;
}

void imap_parser_reset(struct imap_parser *p)
{
	command_clear(p);
	p->state = S_TAG;
	p->raw_line_next = false;
	p->tok_off = 0;
}

/* ---- errors ---- */

static int fail(struct imap_parser *p, enum imap_parse_error code,
		const char *msg, bool line_ended, bool fatal)
{
	p->error = code;
	p->error_str = msg;
	p->skip_state = 0;
	if (fatal)
		p->state = S_FATAL;
	else
		p->state = line_ended ? S_TAG : S_SKIP;
	p->reset_pending = !fatal && line_ended;
	return IMAP_PARSE_ERROR;
}

static int fail_syntax(struct imap_parser *p, const char *msg, unsigned char c)
{
	return fail(p, IMAP_PARSE_ERR_SYNTAX, msg, c == '\n', false);
}

/* ---- text and nodes ---- */

static void text_put(struct imap_parser *p, const void *data, size_t len)
{
	/* the text buffer is unlimited here: line_len already bounds it */
	if (len > 0 && buf_append(&p->text, data, len) < 0)
		abort();
}

static void text_byte(struct imap_parser *p, unsigned char c)
{
	if (p->text.len < p->text.cap)
		p->text.data[p->text.len++] = c;
	else
		text_put(p, &c, 1);
}

static int node_add(struct imap_parser *p, enum imap_arg_type type, uint32_t *idx_r)
{
	struct pnode *n;
	uint32_t idx, parent;

	if (p->node_count >= p->limits.arg_max)
		return fail(p, IMAP_PARSE_ERR_TOO_MANY_ARGS, "Too many arguments",
			    false, false);
	if (p->node_count == p->node_cap) {
		p->node_cap = p->node_cap == 0 ? 16 : p->node_cap * 2;
		p->nodes = mf_realloc(p->nodes, p->node_cap * sizeof(*p->nodes));
	}
	idx = p->node_count++;
	n = &p->nodes[idx];
	memset(n, 0, sizeof(*n));
	n->type = type;
	n->first_child = n->last_child = n->next = NO_NODE;
	n->off = p->text.len;
	parent = p->stack[p->depth];
	if (parent == NO_NODE) {
		if (p->root_last != NO_NODE)
			p->nodes[p->root_last].next = idx;
		else
			p->root_first = idx;
		p->root_last = idx;
		p->root_count++;
	} else {
		struct pnode *par = &p->nodes[parent];
		if (par->last_child != NO_NODE)
			p->nodes[par->last_child].next = idx;
		else
			par->first_child = idx;
		par->last_child = idx;
		par->count++;
	}
	*idx_r = idx;
	return STEP_CONTINUE;
}

/* Ends the token begun at tok_off: NUL-terminates it and sets the node. */
static void token_end(struct imap_parser *p, uint32_t idx)
{
	struct pnode *n = &p->nodes[idx];

	n->len = p->text.len - n->off;
	text_byte(p, '\0');
	p->after_token = true;
}

/* ---- the tag and the command name ---- */

static bool is_atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' &&
		c != '"';
}

static bool is_tag_char(unsigned char c)
{
	return is_atom_char(c) && c != '%' && c != '*' && c != '\\' && c != '+';
}

static int step_tag(struct imap_parser *p, unsigned char c)
{
	size_t len = p->text.len - p->tag_off;

	if (c == '\r' || c == '\n') {
		if (len == 0) {
			/* blank line between commands: ignored */
			p->line_len = 0;
			return STEP_CONTINUE;
		}
		text_byte(p, '\0');
		p->have_tag = true;
		return fail(p, IMAP_PARSE_ERR_TAG, "Missing command", c == '\n', false);
	}
	if (c == ' ' && len > 0) {
		text_byte(p, '\0');
		p->have_tag = true;
		p->name_off = p->text.len;
		p->state = S_NAME;
		return STEP_CONTINUE;
	}
	if (!is_tag_char(c))
		return fail(p, IMAP_PARSE_ERR_TAG, "Invalid tag", false, false);
	if (len >= p->limits.tag_max)
		return fail(p, IMAP_PARSE_ERR_TAG, "Tag too long", false, false);
	text_byte(p, c);
	return STEP_CONTINUE;
}

static void name_upper(struct imap_parser *p, size_t off)
{
	for (size_t i = off; i < p->text.len; i++) {
		if (p->text.data[i] >= 'a' && p->text.data[i] <= 'z')
			p->text.data[i] -= 32;
	}
}

static int name_finish(struct imap_parser *p, unsigned char c)
{
	const char *name = (const char *)p->text.data + p->name_off;
	bool is_uid;

	name_upper(p, p->name_off);
	is_uid = p->state == S_NAME && p->text.len - p->name_off == 3 &&
		memcmp(name, "UID", 3) == 0;
	if (is_uid && c == ' ') {
		text_byte(p, ' ');
		p->state = S_SUBNAME;
		return STEP_CONTINUE;
	}
	text_byte(p, '\0');
	p->have_name = true;
	p->after_token = false;
	p->state = S_ARGS;
	if (c == '\r') {
		p->state = S_CR;
		return STEP_CONTINUE;
	}
	if (c == '\n') {
		p->command_ready = true;
		return IMAP_PARSE_COMMAND;
	}
	return STEP_CONTINUE;
}

static int step_name(struct imap_parser *p, unsigned char c)
{
	size_t len = p->text.len - p->name_off;
	size_t start = p->state == S_SUBNAME ? 4 : 0;

	if (c == ' ' || c == '\r' || c == '\n') {
		if (len == start)
			return fail_syntax(p, "Missing command name", c);
		return name_finish(p, c);
	}
	if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	      (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
		return fail_syntax(p, "Invalid command name", c);
	if (len - start >= p->limits.name_max)
		return fail_syntax(p, "Command name too long", c);
	text_byte(p, c);
	return STEP_CONTINUE;
}

/* ---- arguments ---- */

static int list_open(struct imap_parser *p)
{
	uint32_t idx;
	int ret;

	if (p->depth >= p->limits.nesting_max)
		return fail(p, IMAP_PARSE_ERR_NESTING, "Lists nested too deeply",
			    false, false);
	if ((ret = node_add(p, IMAP_ARG_LIST, &idx)) != STEP_CONTINUE)
		return ret;
	p->stack[++p->depth] = idx;
	p->after_token = false;
	return STEP_CONTINUE;
}

static int command_done(struct imap_parser *p)
{
	p->command_ready = true;
	p->state = S_TAG;
	return IMAP_PARSE_COMMAND;
}

static int args_eol(struct imap_parser *p, unsigned char c)
{
	if (p->depth > 0)
		return fail_syntax(p, "Missing ')'", c);
	if (c == '\r') {
		p->state = S_CR;
		return STEP_CONTINUE;
	}
	return command_done(p);
}

static void atom_finish(struct imap_parser *p)
{
	struct pnode *n = &p->nodes[p->lit_node];

	token_end(p, p->lit_node);
	if (n->len == 3 && strncasecmp((const char *)p->text.data + n->off, "NIL", 3) == 0)
		n->type = IMAP_ARG_NIL;
	p->state = S_ARGS;
}

static int step_args(struct imap_parser *p, unsigned char c);

static int step_atom_bracket(struct imap_parser *p, unsigned char c)
{
	if (c == '\r' || c == '\n')
		return fail_syntax(p, "Missing ']'", c);
	if (c < 0x20 || c > 0x7e)
		return fail_syntax(p, "Invalid characters in atom", c);
	if (p->bracket_quote) {
		if (p->bracket_esc)
			p->bracket_esc = false;
		else if (c == '\\')
			p->bracket_esc = true;
		else if (c == '"')
			p->bracket_quote = false;
	} else if (c == '"') {
		p->bracket_quote = true;
	} else if (c == '[') {
		if (p->bracket >= p->limits.nesting_max)
			return fail(p, IMAP_PARSE_ERR_NESTING, "Brackets nested too deeply",
				    false, false);
		p->bracket++;
	} else if (c == ']') {
		p->bracket--;
	}
	text_byte(p, c);
	return STEP_CONTINUE;
}

/* Atoms carry fetch attributes whole: inside [...] spaces, parentheses and
   quoted header names belong to the atom (BODY[HEADER.FIELDS (A B)]<0.9>). */
static int step_atom(struct imap_parser *p, unsigned char c)
{
	if (p->bracket > 0)
		return step_atom_bracket(p, c);
	if (c == ' ' || c == ')' || c == '\r' || c == '\n') {
		atom_finish(p);
		return step_args(p, c);
	}
	if (!is_atom_char(c))
		return fail_syntax(p, "Invalid characters in atom", c);
	if (c == '[') {
		p->bracket = 1;
		p->bracket_quote = p->bracket_esc = false;
	}
	text_byte(p, c);
	return STEP_CONTINUE;
}

static int atom_start(struct imap_parser *p, unsigned char c)
{
	int ret;

	if ((ret = node_add(p, IMAP_ARG_ATOM, &p->lit_node)) != STEP_CONTINUE)
		return ret;
	p->bracket = 0;
	p->state = S_ATOM;
	return step_atom(p, c);
}

static int token_start(struct imap_parser *p, unsigned char c)
{
	int ret;

	if (p->after_token)
		return fail_syntax(p, "Missing space between arguments", c);
	switch (c) {
	case '(':
		return list_open(p);
	case '"':
		ret = node_add(p, IMAP_ARG_STRING, &p->lit_node);
		if (ret == STEP_CONTINUE)
			p->state = S_QUOTED;
		return ret;
	case '{':
		p->lit.literal8 = false;
		p->state = S_LIT_OPEN;
		return STEP_CONTINUE;
	case '~':
		p->state = S_TILDE;
		return STEP_CONTINUE;
	default:
		if (!is_atom_char(c) || c == ']')
			return fail_syntax(p, "Invalid characters in atom", c);
		return atom_start(p, c);
	}
}

static int step_args(struct imap_parser *p, unsigned char c)
{
	p->state = S_ARGS;
	switch (c) {
	case ' ':
		p->after_token = false;
		return STEP_CONTINUE;
	case ')':
		if (p->depth == 0)
			return fail_syntax(p, "Unexpected ')'", c);
		p->depth--;
		p->after_token = true;
		return STEP_CONTINUE;
	case '\r':
	case '\n':
		return args_eol(p, c);
	default:
		return token_start(p, c);
	}
}

static int step_quoted(struct imap_parser *p, unsigned char c)
{
	if (p->state == S_QUOTED_ESC) {
		if (c != '"' && c != '\\')
			return fail_syntax(p, "Invalid escape in quoted string", c);
		text_byte(p, c);
		p->state = S_QUOTED;
		return STEP_CONTINUE;
	}
	switch (c) {
	case '\\':
		p->state = S_QUOTED_ESC;
		return STEP_CONTINUE;
	case '"':
		token_end(p, p->lit_node);
		p->state = S_ARGS;
		return STEP_CONTINUE;
	case '\r':
	case '\n':
	case '\0':
		return fail_syntax(p, "Invalid characters in quoted string", c);
	default:
		text_byte(p, c);
		return STEP_CONTINUE;
	}
}

/* ---- literals ---- */

static int literal_too_large(struct imap_parser *p)
{
	/* a refused {n} is never sent; a refused {n+} is already coming */
	return fail(p, IMAP_PARSE_ERR_LITERAL_TOO_LARGE, "Literal too large",
		    true, !p->lit.sync);
}

static int literal_node(struct imap_parser *p, enum imap_arg_type type)
{
	struct pnode *n;

	if (p->node_count >= p->limits.arg_max)
		return fail(p, IMAP_PARSE_ERR_TOO_MANY_ARGS, "Too many arguments",
			    true, !p->lit.sync);
	node_add(p, type, &p->lit_node);
	n = &p->nodes[p->lit_node];
	n->literal8 = p->lit.literal8;
	n->nonsync = !p->lit.sync;
	return STEP_CONTINUE;
}

static int literal_accept(struct imap_parser *p)
{
	if (p->lit.size > p->limits.literal_max ||
	    p->lit.size > p->limits.line_max - MF_MIN(p->line_len, p->limits.line_max))
		return literal_too_large(p);
	if (literal_node(p, IMAP_ARG_LITERAL) != STEP_CONTINUE)
		return IMAP_PARSE_ERROR;
	p->lit_left = p->lit.size;
	p->state = S_LIT_DATA;
	if (p->lit_left == 0) {
		token_end(p, p->lit_node);
		p->state = S_ARGS;
	}
	return p->lit.sync ? IMAP_PARSE_CONTINUATION : STEP_CONTINUE;
}

static int literal_header_done(struct imap_parser *p)
{
	p->lit.depth = p->depth;
	if (!p->lit.sync && p->limits.nonsync_max != 0 &&
	    p->lit.size > p->limits.nonsync_max)
		return literal_too_large(p);
	if (p->lit.size > p->limits.stream_min) {
		p->state = S_DECIDE;
		return IMAP_PARSE_LITERAL;
	}
	return literal_accept(p);
}

static int step_literal_header(struct imap_parser *p, unsigned char c)
{
	bool digit = c >= '0' && c <= '9';

	switch (p->state) {
	case S_TILDE:
		if (c != '{')
			return atom_start(p, '~') == STEP_CONTINUE ?
				step_atom(p, c) : IMAP_PARSE_ERROR;
		p->lit.literal8 = true;
		p->state = S_LIT_OPEN;
		return STEP_CONTINUE;
	case S_LIT_OPEN:
		if (!digit)
			return fail_syntax(p, "Invalid literal size", c);
		p->lit.size = (uint64_t)(c - '0');
		p->lit.sync = true;
		p->state = S_LIT_DIGITS;
		return STEP_CONTINUE;
	case S_LIT_DIGITS:
		if (digit) {
			if (p->lit.size > (UINT64_MAX - 9) / 10)
				return fail(p, IMAP_PARSE_ERR_LITERAL_TOO_LARGE,
					    "Literal size too large", false, false);
			p->lit.size = p->lit.size * 10 + (uint64_t)(c - '0');
			return STEP_CONTINUE;
		}
		if (c == '+') {
			p->lit.sync = false;
			p->state = S_LIT_PLUS;
			return STEP_CONTINUE;
		}
		/* fall through */
	case S_LIT_PLUS:
		if (c != '}')
			return fail_syntax(p, "Invalid literal size", c);
		p->state = S_LIT_CR;
		p->bracket_esc = false; /* reused: CR seen */
		return STEP_CONTINUE;
	default: /* S_LIT_CR */
		if (c == '\r' && !p->bracket_esc) {
			p->bracket_esc = true;
			return STEP_CONTINUE;
		}
		if (c != '\n')
			return fail_syntax(p, "Missing CRLF after literal size", c);
		return literal_header_done(p);
	}
}

int imap_parser_literal_accept(struct imap_parser *p, const char **error_r)
{
	if (p->state != S_DECIDE) {
		*error_r = "No literal pending";
		return -1;
	}
	if (literal_accept(p) == IMAP_PARSE_ERROR) {
		*error_r = p->error_str;
		return -1;
	}
	return 0;
}

int imap_parser_literal_stream(struct imap_parser *p, const char **error_r)
{
	if (p->state != S_DECIDE) {
		*error_r = "No literal pending";
		return -1;
	}
	if (literal_node(p, IMAP_ARG_LITERAL_STREAMED) != STEP_CONTINUE) {
		*error_r = p->error_str;
		return -1;
	}
	token_end(p, p->lit_node);
	p->nodes[p->lit_node].len = (size_t)p->lit.size;
	p->lit_left = p->lit.size;
	p->state = S_STREAM;
	return 0;
}

bool imap_parser_literal_reject(struct imap_parser *p)
{
	if (p->state != S_DECIDE)
		return p->state == S_FATAL;
	literal_too_large(p);
	return !p->lit.sync;
}

const struct imap_literal_info *imap_parser_literal_info(const struct imap_parser *p)
{
	return &p->lit;
}

void imap_parser_literal_chunk(const struct imap_parser *p, const void **data_r,
			       size_t *size_r, bool *last_r)
{
	*data_r = p->chunk;
	*size_r = p->chunk_len;
	*last_r = p->chunk_last;
}

/* ---- skipping a bad line, raw lines ---- */

/* Follows "{n+}" at the end of a skipped line so its data is skipped too
   and never read as commands. */
static int step_skip(struct imap_parser *p, unsigned char c)
{
	if (c == '\n') {
		if (p->skip_state == 4 && p->skip_num > 0) {
			p->lit_left = p->skip_num;
			p->state = S_SKIP_DATA;
		} else {
			command_clear(p);
			p->state = S_TAG;
		}
		p->skip_state = 0;
		return STEP_CONTINUE;
	}
	if (c == '{') {
		p->skip_state = 1;
		p->skip_num = 0;
	} else if ((p->skip_state == 1 || p->skip_state == 2) && c >= '0' && c <= '9' &&
		   p->skip_num <= (UINT64_MAX - 9) / 10) {
		p->skip_num = p->skip_num * 10 + (uint64_t)(c - '0');
		p->skip_state = 2;
	} else if (p->skip_state == 2 && c == '+') {
		p->skip_state = 3;
	} else if (p->skip_state == 3 && c == '}') {
		p->skip_state = 4;
	} else if (!(p->skip_state == 4 && c == '\r')) {
		p->skip_state = 0;
	}
	return STEP_CONTINUE;
}

static int step_rawline(struct imap_parser *p, unsigned char c)
{
	if (c != '\n') {
		text_byte(p, c);
		return STEP_CONTINUE;
	}
	if (p->text.len > 0 && p->text.data[p->text.len - 1] == '\r')
		p->text.len--;
	p->tok_off = p->text.len;
	text_byte(p, '\0');
	p->command_ready = true;
	p->state = S_TAG;
	return IMAP_PARSE_LINE;
}

void imap_parser_read_line(struct imap_parser *p)
{
	if (p->state == S_FATAL)
		return;
	command_clear(p);
	p->state = S_RAWLINE;
}

const char *imap_parser_line(const struct imap_parser *p, size_t *len_r)
{
	if (len_r != NULL)
		*len_r = p->tok_off;
	return p->text.len == 0 ? "" : (const char *)p->text.data;
}

/* ---- the driver ---- */

static int step(struct imap_parser *p, unsigned char c)
{
	if ((p->state < S_SKIP || p->state == S_RAWLINE) && ++p->line_len > p->limits.line_max && c != '\n')
		return fail(p, IMAP_PARSE_ERR_LINE_TOO_LONG, "Line too long", false, false);
	switch (p->state) {
	case S_TAG:
		return step_tag(p, c);
	case S_NAME:
	case S_SUBNAME:
		return step_name(p, c);
	case S_ARGS:
		return step_args(p, c);
	case S_ATOM:
		return step_atom(p, c);
	case S_QUOTED:
	case S_QUOTED_ESC:
		return step_quoted(p, c);
	case S_TILDE:
	case S_LIT_OPEN:
	case S_LIT_DIGITS:
	case S_LIT_PLUS:
	case S_LIT_CR:
		return step_literal_header(p, c);
	case S_CR:
		if (c != '\n')
			return fail_syntax(p, "CR without LF", c);
		return command_done(p);
	case S_RAWLINE:
		return step_rawline(p, c);
	default:
		return step_skip(p, c);
	}
}

static size_t bulk_literal(struct imap_parser *p, const unsigned char *d, size_t avail)
{
	size_t n = (size_t)MF_MIN((uint64_t)avail, p->lit_left);

	p->lit_left -= n;
	if (p->state == S_SKIP_DATA) {
		if (p->lit_left == 0)
			p->state = S_SKIP;
		return n;
	}
	text_put(p, d, n);
	p->line_len += n;
	if (p->lit_left == 0) {
		token_end(p, p->lit_node);
		p->state = S_ARGS;
	}
	return n;
}

static bool stream_chunk(struct imap_parser *p, const unsigned char *d, size_t avail,
			 size_t *used_r)
{
	size_t n = (size_t)MF_MIN((uint64_t)avail, p->lit_left);

	if (n == 0 && p->lit_left > 0)
		return false;
	p->chunk = d;
	p->chunk_len = n;
	p->lit_left -= n;
	p->chunk_last = p->lit_left == 0;
	if (p->chunk_last) {
		p->state = S_ARGS;
		p->after_token = true;
	}
	*used_r = n;
	return true;
}

enum imap_parse_result imap_parser_parse(struct imap_parser *p, const void *data,
					 size_t size, size_t *consumed_r)
{
	const unsigned char *d = data;
	size_t i = 0, n;
	int ret;

	*consumed_r = 0;
	if (p->state == S_FATAL)
		return IMAP_PARSE_ERROR;
	if (p->command_ready || p->reset_pending) {
		command_clear(p);
		p->state = S_TAG;
	}
	if (p->state == S_DECIDE) {
		ret = literal_accept(p);
		if (ret != STEP_CONTINUE)
			return (enum imap_parse_result)ret;
	}
	for (;;) {
		if (p->state == S_STREAM) {
			if (!stream_chunk(p, d + i, size - i, &n))
				break;
			*consumed_r = i + n;
			return IMAP_PARSE_LITERAL_DATA;
		}
		if (i >= size)
			break;
		if (p->state == S_LIT_DATA || p->state == S_SKIP_DATA) {
			i += bulk_literal(p, d + i, size - i);
			continue;
		}
		ret = step(p, d[i++]);
		if (ret != STEP_CONTINUE) {
			*consumed_r = i;
			return (enum imap_parse_result)ret;
		}
	}
	*consumed_r = i;
	return IMAP_PARSE_NEED_MORE;
}

/* ---- results ---- */

static void build_list(struct imap_parser *p, uint32_t first, uint32_t count,
		       struct imap_arg *out, size_t *cursor)
{
	uint32_t idx = first;

	for (uint32_t i = 0; i < count; i++, idx = p->nodes[idx].next) {
		const struct pnode *n = &p->nodes[idx];
		struct imap_arg *a = &out[i];

		a->type = n->type;
		a->literal8 = n->literal8;
		a->nonsync = n->nonsync;
		a->len = n->type == IMAP_ARG_LIST ? n->count : n->len;
		a->list = NULL;
		a->str = n->type == IMAP_ARG_LIST || n->type == IMAP_ARG_LITERAL_STREAMED ?
			"" : (const char *)p->text.data + n->off;
		if (n->type == IMAP_ARG_LIST) {
			struct imap_arg *block = &p->argv[*cursor];
			*cursor += n->count + 1;
			a->list = block;
			build_list(p, n->first_child, n->count, block, cursor);
		}
	}
	memset(&out[count], 0, sizeof(out[count]));
	out[count].str = "";
}

const struct imap_command *imap_parser_command(struct imap_parser *p)
{
	size_t need = 1, cursor;

	if (!p->have_name || p->state == S_FATAL)
		return NULL;
	for (uint32_t i = 0; i < p->node_count; i++)
		need += p->nodes[i].type == IMAP_ARG_LIST ? 2 : 1;
	if (need > p->argv_cap) {
		p->argv_cap = need;
		p->argv = mf_realloc(p->argv, need * sizeof(*p->argv));
	}
	cursor = p->root_count + 1;
	build_list(p, p->root_first, p->root_count, p->argv, &cursor);
	p->cmd.tag = (const char *)p->text.data + p->tag_off;
	p->cmd.name = (const char *)p->text.data + p->name_off;
	p->cmd.args = p->argv;
	p->cmd.arg_count = p->root_count;
	return &p->cmd;
}

const char *imap_parser_tag(const struct imap_parser *p)
{
	return p->have_tag ? (const char *)p->text.data + p->tag_off : NULL;
}

const char *imap_parser_error(const struct imap_parser *p,
			      enum imap_parse_error *code_r, bool *fatal_r)
{
	if (code_r != NULL)
		*code_r = p->error;
	if (fatal_r != NULL)
		*fatal_r = p->state == S_FATAL;
	return p->error_str != NULL ? p->error_str : "No error";
}

/* ---- argument helpers ---- */

/* literal8 (~{n}) is no string: RFC 3516 and RFC 6855 4 allow it only as
 * APPEND's message data, which callers take from the argument itself. */
static bool arg_is_string(const struct imap_arg *arg)
{
	return (arg->type == IMAP_ARG_STRING || arg->type == IMAP_ARG_LITERAL) &&
		!arg->literal8 && strlen(arg->str) == arg->len;
}

bool imap_arg_get_astring(const struct imap_arg *arg, const char **str_r)
{
	if (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_NIL &&
	    !arg_is_string(arg))
		return false;
	*str_r = arg->str;
	return true;
}

bool imap_arg_get_nstring(const struct imap_arg *arg, const char **str_r)
{
	if (arg->type == IMAP_ARG_NIL) {
		*str_r = NULL;
		return true;
	}
	return imap_arg_get_string(arg, str_r);
}

bool imap_arg_get_string(const struct imap_arg *arg, const char **str_r)
{
	if (!arg_is_string(arg))
		return false;
	*str_r = arg->str;
	return true;
}

bool imap_arg_get_atom(const struct imap_arg *arg, const char **str_r)
{
	if (arg->type != IMAP_ARG_ATOM)
		return false;
	*str_r = arg->str;
	return true;
}

bool imap_arg_atom_equals(const struct imap_arg *arg, const char *atom)
{
	return (arg->type == IMAP_ARG_ATOM || arg->type == IMAP_ARG_NIL) &&
		strcasecmp(arg->str, atom) == 0;
}

bool imap_arg_get_list(const struct imap_arg *arg, const struct imap_arg **list_r,
		       size_t *count_r)
{
	if (arg->type != IMAP_ARG_LIST)
		return false;
	*list_r = arg->list;
	if (count_r != NULL)
		*count_r = arg->len;
	return true;
}

/* ---- sequence sets ---- */

static int seq_number(const char **s, uint32_t *num_r)
{
	const char *p = *s;
	uint64_t n = 0;

	if (*p == '*') {
		*num_r = IMAP_SEQ_STAR;
		*s = p + 1;
		return 0;
	}
	if (*p < '1' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		n = n * 10 + (uint64_t)(*p - '0');
		if (n > UINT32_MAX)
			return -1;
	}
	*num_r = (uint32_t)n;
	*s = p;
	return 0;
}

int imap_seqset_parse(const char *str, unsigned int max_ranges,
		      struct imap_seq_range **ranges_r, size_t *count_r,
		      const char **error_r)
{
	size_t cap = 1, count = 0;
	struct imap_seq_range *ranges;

	for (const char *s = str; *s != '\0'; s++)
		cap += *s == ',';
	if (max_ranges != 0 && cap > max_ranges) {
		*error_r = "Too many ranges in sequence set";
		return -1;
	}
	ranges = mf_malloc(cap * sizeof(*ranges));
	for (const char *s = str;; s++) {
		struct imap_seq_range *r = &ranges[count++];
		if (seq_number(&s, &r->first) < 0)
			goto bad;
		r->last = r->first;
		if (*s == ':' && (s++, seq_number(&s, &r->last) < 0))
			goto bad;
		if (*s == '\0')
			break;
		if (*s != ',')
			goto bad;
	}
	*ranges_r = ranges;
	*count_r = count;
	return 0;
bad:
	free(ranges);
	*error_r = "Invalid sequence set";
	return -1;
}

static int range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;

	return x->first < y->first ? -1 : x->first > y->first;
}

void imap_seqset_resolve(struct imap_seq_range *ranges, size_t *count_r, uint32_t star)
{
	size_t count = *count_r, out = 0;

	for (size_t i = 0; i < count; i++) {
		struct imap_seq_range *r = &ranges[i];
		if (r->first == IMAP_SEQ_STAR)
			r->first = star;
		if (r->last == IMAP_SEQ_STAR)
			r->last = star;
		/* (both may be 0 now: an empty mailbox) */
		if (r->first > r->last) {
			uint32_t t = r->first;
			r->first = r->last;
			r->last = t;
		}
	}
	if (count == 0)
		return;
	qsort(ranges, count, sizeof(*ranges), range_cmp);
	for (size_t i = 1; i < count; i++) {
		struct imap_seq_range *cur = &ranges[out];
		if (cur->last == UINT32_MAX || ranges[i].first <= cur->last + 1) {
			if (ranges[i].last > cur->last)
				cur->last = ranges[i].last;
		} else {
			ranges[++out] = ranges[i];
		}
	}
	*count_r = out + 1;
}

bool imap_seqset_contains(const struct imap_seq_range *ranges, size_t count, uint32_t n)
{
	size_t lo = 0, hi = count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (n < ranges[mid].first)
			hi = mid;
		else if (n > ranges[mid].last)
			lo = mid + 1;
		else
			return true;
	}
	return false;
}
