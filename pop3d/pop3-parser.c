/* pop3-parser.c: the resumable POP3 input parser; see pop3-parser.h.
 * Pure code: no I/O, no allocation. */
#include "pop3d/pop3-parser.h"

#include <string.h>

static const struct {
	const char *name;
	enum pop3_cmd cmd;
} pop3_verbs[] = {
	{ "USER", POP3_CMD_USER }, { "PASS", POP3_CMD_PASS }, { "APOP", POP3_CMD_APOP },
	{ "AUTH", POP3_CMD_AUTH }, { "STAT", POP3_CMD_STAT }, { "LIST", POP3_CMD_LIST },
	{ "RETR", POP3_CMD_RETR }, { "DELE", POP3_CMD_DELE }, { "NOOP", POP3_CMD_NOOP },
	{ "RSET", POP3_CMD_RSET }, { "QUIT", POP3_CMD_QUIT }, { "TOP", POP3_CMD_TOP },
	{ "UIDL", POP3_CMD_UIDL }, { "CAPA", POP3_CMD_CAPA }, { "STLS", POP3_CMD_STLS },
};

void pop3_parser_init(struct pop3_parser *p, size_t line_max)
{
	memset(p, 0, sizeof(*p));
	p->line_max = line_max < 3 ? 3 : line_max;
	p->mode = POP3_MODE_COMMAND;
}

void pop3_parser_reset(struct pop3_parser *p)
{
	pop3_parser_init(p, p->line_max);
}

void pop3_parser_expect_response(struct pop3_parser *p)
{
	p->mode = POP3_MODE_RESPONSE;
}

static void event_init(struct pop3_event *ev, enum pop3_event_type type, size_t consumed)
{
	memset(ev, 0, sizeof(*ev));
	ev->type = type;
	ev->consumed = consumed;
}

static bool is_keyword_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

static void set_verb(struct pop3_event *ev, const char *s, size_t len)
{
	ev->cmd = POP3_CMD_UNKNOWN;
	if (len > POP3_VERB_MAX)
		return;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!is_keyword_char(c)) {
			ev->verb[0] = '\0';   /* never echo odd bytes */
			return;
		}
		ev->verb[i] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
	}
	ev->verb[len] = '\0';
	for (size_t i = 0; i < MF_N_ELEMENTS(pop3_verbs); i++) {
		if (strcmp(ev->verb, pop3_verbs[i].name) == 0) {
			ev->cmd = pop3_verbs[i].cmd;
			return;
		}
	}
}

static const char *check_bytes(const char *line, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if (c == '\0')
			return "NUL byte in command line";
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return "Control character in command line";
	}
	return NULL;
}

static void split_args(const char *s, size_t len, struct pop3_event *ev)
{
	size_t i = 0;

	while (i < len) {
		size_t start = i;
		while (i < len && s[i] != ' ')
			i++;
		if (ev->argc == POP3_ARGS_MAX) {
			ev->type = POP3_EV_BAD_LINE;
			ev->error = "Too many arguments";
			return;
		}
		if (i - start > POP3_ARG_MAX) {
			ev->type = POP3_EV_BAD_LINE;
			ev->error = "Argument too long";
			return;
		}
		ev->args[ev->argc++] = (struct pop3_arg){ s + start, i - start };
		if (i < len)
			i++;   /* the one separating space */
	}
}

/* line excludes the line end. */
static void parse_command(const char *line, size_t len, struct pop3_event *ev)
{
	size_t verb_len = 0;

	ev->line = line;
	ev->line_len = len;
	if ((ev->error = check_bytes(line, len)) != NULL) {
		ev->type = POP3_EV_BAD_LINE;
		return;
	}
	size_t full_len = len;
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	if (len == 0) {
		ev->type = POP3_EV_BAD_LINE;
		ev->error = "Empty command line";
		return;
	}
	while (verb_len < len && line[verb_len] != ' ')
		verb_len++;
	set_verb(ev, line, verb_len);
	if (ev->cmd == POP3_CMD_PASS) {
		/* the password is the rest of the line verbatim, spaces included */
		ev->rest = line + MF_MIN(verb_len + 1, full_len);
		ev->rest_len = full_len - MF_MIN(verb_len + 1, full_len);
	} else if (verb_len < len) {
		ev->rest = line + verb_len + 1;
		ev->rest_len = len - verb_len - 1;
		split_args(ev->rest, ev->rest_len, ev);
	} else {
		ev->rest = line + len;
	}
}

static size_t line_end_len(const unsigned char *in, size_t lf_pos)
{
	return lf_pos > 0 && in[lf_pos - 1] == '\r' ? 2 : 1;
}

void pop3_parser_next(struct pop3_parser *p, const unsigned char *in, size_t len,
		      struct pop3_event *ev)
{
	size_t start = p->scan_pos < len ? p->scan_pos : len;
	const unsigned char *lf = start < len ? memchr(in + start, '\n', len - start) : NULL;

	if (lf == NULL) {
		if (p->mode == POP3_MODE_SKIP_LINE) {
			event_init(ev, POP3_EV_NEED_MORE, len);
			p->scan_pos = 0;
			return;
		}
		if (len >= p->line_max) {
			event_init(ev, POP3_EV_LINE_TOO_LONG, len);
			ev->error = "Line too long";
			p->mode = POP3_MODE_SKIP_LINE;
			p->scan_pos = 0;
			return;
		}
		event_init(ev, POP3_EV_NEED_MORE, 0);
		p->scan_pos = len;
		return;
	}
	size_t lf_pos = (size_t)(lf - in), consumed = lf_pos + 1;
	size_t line_len = lf_pos + 1 - line_end_len(in, lf_pos);
	p->scan_pos = 0;
	if (p->mode == POP3_MODE_SKIP_LINE) {
		/* the too-long line ends here; go on with what follows it */
		p->mode = POP3_MODE_COMMAND;
		pop3_parser_next(p, in + consumed, len - consumed, ev);
		ev->consumed += consumed;
		return;
	}
	if (consumed > p->line_max) {
		event_init(ev, POP3_EV_LINE_TOO_LONG, consumed);
		ev->error = "Line too long";
		p->mode = POP3_MODE_COMMAND;
		return;
	}
	if (p->mode == POP3_MODE_RESPONSE) {
		event_init(ev, POP3_EV_RESPONSE, consumed);
		ev->line = (const char *)in;
		ev->line_len = line_len;
		ev->error = check_bytes(ev->line, line_len);
		p->mode = POP3_MODE_COMMAND;
		return;
	}
	event_init(ev, POP3_EV_COMMAND, consumed);
	parse_command((const char *)in, line_len, ev);
}

bool pop3_parse_number(const struct pop3_arg *arg, uint32_t *n_r)
{
	uint64_t n = 0;

	if (arg->len == 0 || arg->len > 10)
		return false;
	for (size_t i = 0; i < arg->len; i++) {
		if (arg->s[i] < '0' || arg->s[i] > '9')
			return false;
		n = n * 10 + (uint64_t)(arg->s[i] - '0');
	}
	if (n > UINT32_MAX)
		return false;
	*n_r = (uint32_t)n;
	return true;
}

