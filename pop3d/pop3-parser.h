/* pop3-parser.h: a resumable, pure POP3 input parser (RFC 1939 with the
 * RFC 2449 command grammar). It knows nothing of connections or the store:
 * feed it the unconsumed input, it returns one event (a command line, a SASL
 * response line, a protocol error, or need-more) and how many bytes it
 * consumed. State lives in struct pop3_parser, so input may arrive in any
 * split, one byte at a time included.
 *
 * Usage:
 *   for (;;) {
 *       pop3_parser_next(&p, in->data, in->len, &ev);
 *       ... use ev (pointers point into the input, valid until it is consumed) ...
 *       buf_consume(in, ev.consumed);
 *       if (ev.type == POP3_EV_NEED_MORE) break;
 *   }
 * When NEED_MORE does not consume everything, the next call must pass the
 * same unconsumed bytes followed by new ones.
 *
 * Lines end with CRLF (a bare LF is accepted). A line including its line end
 * may be line_max bytes long; a longer one yields POP3_EV_LINE_TOO_LONG as
 * soon as line_max bytes without LF are buffered, and the rest of that line
 * up to the next LF is skipped silently. So the caller never holds more than
 * line_max bytes of an incomplete line.
 *
 * Command lines: "KEYWORD[ arg[ arg...]]". Keywords are matched
 * case-insensitively; arguments are separated by single spaces (RFC 1939
 * 3); a trailing blank is dropped. ev.rest is everything after the keyword
 * and one space, for PASS, whose argument may contain spaces. */
#ifndef MF_POP3_PARSER_H
#define MF_POP3_PARSER_H

#include "lib/lib.h"

#define POP3_VERB_MAX 8          /* longest keyword recognised (4 in RFC 1939) */
#define POP3_ARGS_MAX 4          /* more arguments than this: POP3_EV_BAD_LINE */
#define POP3_ARG_MAX 255         /* RFC 2449: an argument is at most 40 octets; we allow more */

enum pop3_cmd {
	POP3_CMD_UNKNOWN = 0,
	POP3_CMD_USER, POP3_CMD_PASS, POP3_CMD_APOP, POP3_CMD_AUTH,
	POP3_CMD_STAT, POP3_CMD_LIST, POP3_CMD_RETR, POP3_CMD_DELE,
	POP3_CMD_NOOP, POP3_CMD_RSET, POP3_CMD_QUIT, POP3_CMD_TOP,
	POP3_CMD_UIDL, POP3_CMD_CAPA, POP3_CMD_STLS,
};

enum pop3_event_type {
	POP3_EV_NEED_MORE,      /* feed more input (ev.consumed may still be > 0) */
	POP3_EV_COMMAND,        /* ev.cmd, ev.verb, ev.args, ev.rest */
	POP3_EV_RESPONSE,       /* a SASL response line (after pop3_parser_expect_response()): ev.line */
	POP3_EV_LINE_TOO_LONG,  /* over line_max; the rest of the line is skipped */
	POP3_EV_BAD_LINE,       /* empty line, NUL or control bytes, too many or too long arguments: ev.error */
};

struct pop3_arg {
	const char *s;
	size_t len;
};

struct pop3_event {
	enum pop3_event_type type;
	size_t consumed;
	enum pop3_cmd cmd;
	char verb[POP3_VERB_MAX + 1];   /* upper-cased; "" when longer or with odd bytes */
	struct pop3_arg args[POP3_ARGS_MAX];
	unsigned argc;
	const char *rest;               /* after the keyword and one space; not NUL-terminated */
	size_t rest_len;
	const char *line;               /* the whole line without its line end */
	size_t line_len;
	const char *error;              /* static string */
};

enum pop3_parser_mode { POP3_MODE_COMMAND, POP3_MODE_RESPONSE, POP3_MODE_SKIP_LINE };

struct pop3_parser {
	size_t line_max;
	enum pop3_parser_mode mode;
	size_t scan_pos;     /* private: bytes already searched for LF */
};

/* line_max must be at least 3 (it includes the line end). */
void pop3_parser_init(struct pop3_parser *p, size_t line_max);
/* Back to command mode, forgetting any partial state (after STLS). */
void pop3_parser_reset(struct pop3_parser *p);
/* The next line is a SASL response (AUTH continuation), not a command:
 * it is returned as POP3_EV_RESPONSE, then the parser is in command mode. */
void pop3_parser_expect_response(struct pop3_parser *p);
void pop3_parser_next(struct pop3_parser *p, const unsigned char *in, size_t len,
		      struct pop3_event *ev_r);

/* A message number or line count: 1..10 decimal digits, no sign, value
 * below 2^32 (zero allowed; callers check ranges). */
bool pop3_parse_number(const struct pop3_arg *arg, uint32_t *n_r);

/* SASL PLAIN (RFC 4616) as carried by AUTH (RFC 5034): lib/sasl.h. */

#endif
