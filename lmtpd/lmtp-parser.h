/* lmtp-parser.h: a resumable, pure LMTP input parser (RFC 2033 with the
 * RFC 5321 grammar). It knows nothing of connections or the store: feed it
 * the unconsumed input, it returns one event (a command line, a chunk of
 * message data, the end of the message, a protocol error, or need-more) and
 * how many bytes it consumed. State lives in struct lmtp_parser, so input may
 * arrive in any split, one byte at a time included.
 *
 * Usage:
 *   for (;;) {
 *       lmtp_parser_next(&p, in->data, in->len, &ev);
 *       ... use ev (ev.arg / ev.data point into the input or into static
 *           storage, valid until the input is consumed) ...
 *       buf_consume(in, ev.consumed);
 *       if (ev.type == LMTP_EV_NEED_MORE) break;
 *   }
 * When lmtp_parser_next() returns NEED_MORE without consuming everything,
 * the next call must pass the same unconsumed bytes followed by new ones.
 *
 * Command lines: a line including its CRLF (or bare LF) may be line_max bytes
 * long. A longer one yields LMTP_EV_LINE_TOO_LONG as soon as line_max bytes
 * without LF are buffered; the rest of that line up to the next LF is then
 * skipped silently. So the caller never holds more than line_max bytes of an
 * incomplete command line.
 *
 * Message data (after lmtp_parser_begin_data()): lines are dot-unstuffed and
 * line ends normalised to LF (CRLF -> LF, a bare LF stays, a CR not followed
 * by LF stays). Lines have no length limit here; the caller bounds the total.
 * The final "." line (CRLF or bare LF) ends the data and the parser returns to
 * command mode by itself. */
#ifndef MF_LMTP_PARSER_H
#define MF_LMTP_PARSER_H

#include "lib/lib.h"

#define LMTP_VERB_MAX 16
#define LMTP_PATH_MAX 256        /* RFC 5321 4.5.3.1.3, with the brackets */
#define LMTP_LOCALPART_MAX 64    /* RFC 5321 4.5.3.1.1 */
#define LMTP_DOMAIN_MAX 255      /* RFC 5321 4.5.3.1.2 */
#define LMTP_PARAMS_MAX 16       /* ESMTP parameters on one MAIL/RCPT */
#define LMTP_HEADER_SCAN_MAX (64 * 1024)  /* header bytes searched for Message-ID */

enum lmtp_cmd {
	LMTP_CMD_UNKNOWN = 0,
	LMTP_CMD_LHLO,
	LMTP_CMD_HELO,
	LMTP_CMD_EHLO,
	LMTP_CMD_MAIL,
	LMTP_CMD_RCPT,
	LMTP_CMD_DATA,
	LMTP_CMD_RSET,
	LMTP_CMD_NOOP,
	LMTP_CMD_QUIT,
	LMTP_CMD_VRFY,
	LMTP_CMD_HELP,
	LMTP_CMD_STARTTLS,
};

enum lmtp_event_type {
	LMTP_EV_NEED_MORE,      /* feed more input (ev.consumed may still be > 0) */
	LMTP_EV_COMMAND,        /* ev.cmd, ev.verb, ev.arg/arg_len */
	LMTP_EV_DATA,           /* ev.data/data_len: a piece of the message */
	LMTP_EV_DATA_END,       /* the final "." line; back in command mode */
	LMTP_EV_LINE_TOO_LONG,  /* command line over line_max; its rest is skipped */
	LMTP_EV_BAD_LINE,       /* empty line, NUL or control bytes: ev.error */
};

struct lmtp_event {
	enum lmtp_event_type type;
	size_t consumed;
	enum lmtp_cmd cmd;
	char verb[LMTP_VERB_MAX + 1];   /* upper-cased; "" when over LMTP_VERB_MAX */
	const char *arg;                /* after the verb and blanks, trailing blanks cut */
	size_t arg_len;
	const unsigned char *data;
	size_t data_len;
	const char *error;              /* static string */
};

enum lmtp_parser_mode { LMTP_MODE_COMMAND, LMTP_MODE_SKIP_LINE, LMTP_MODE_DATA };

struct lmtp_parser {
	size_t line_max;
	enum lmtp_parser_mode mode;
	int data_state;     /* private: position within a data line */
	size_t scan_pos;    /* private: bytes already searched for LF */
};

/* line_max must be at least 3 (it includes the line end). */
void lmtp_parser_init(struct lmtp_parser *p, size_t line_max);
/* Back to command mode, forgetting any partial state (after STARTTLS). */
void lmtp_parser_reset(struct lmtp_parser *p);
/* Switches to message data; call after replying 354 to DATA. */
void lmtp_parser_begin_data(struct lmtp_parser *p);
bool lmtp_parser_in_data(const struct lmtp_parser *p);
void lmtp_parser_next(struct lmtp_parser *p, const unsigned char *in, size_t len,
		      struct lmtp_event *ev_r);

/* --- MAIL FROM / RCPT TO arguments --- */

enum lmtp_body { LMTP_BODY_NONE, LMTP_BODY_7BIT, LMTP_BODY_8BITMIME };

enum lmtp_arg_result {
	LMTP_ARG_OK,
	LMTP_ARG_SYNTAX,          /* 501 5.5.4 */
	LMTP_ARG_PARAM_UNKNOWN,   /* 555 5.5.4 */
	LMTP_ARG_PARAM_INVALID,   /* 501 5.5.4: known parameter, bad value */
};

struct lmtp_path {
	/* "local@domain" without brackets and source route; "" for the null
	 * path "<>". A quoted local part whose content is a plain dot-string is
	 * unquoted ("\"a.b\"@x" -> "a.b@x"); otherwise it stays quoted. */
	char address[LMTP_PATH_MAX + 1];
	char localpart[LMTP_LOCALPART_MAX + 1];   /* decoded (quotes removed) */
	char domain[LMTP_DOMAIN_MAX + 1];         /* "" only for "<>" / "<postmaster>" */
};

struct lmtp_mail_args {
	struct lmtp_path path;
	bool size_given;
	uint64_t size;            /* UINT64_MAX when the number overflowed */
	enum lmtp_body body;
};

/* arg is the command argument ("FROM:<a@b> SIZE=10"). error_r: static. */
enum lmtp_arg_result lmtp_parse_mail(const char *arg, size_t len,
				     struct lmtp_mail_args *args_r, const char **error_r);
/* "TO:<a@b>". The null path is refused; "<postmaster>" (any case) without a
 * domain is accepted (RFC 5321 4.5.1). No parameters are supported. */
enum lmtp_arg_result lmtp_parse_rcpt(const char *arg, size_t len,
				     struct lmtp_path *path_r, const char **error_r);

/* Finds the Message-ID header in the header section of msg (first
 * LMTP_HEADER_SCAN_MAX bytes; folded lines joined) and writes its value,
 * sanitised for logs (printable ASCII only, others become '?', whitespace
 * dropped), truncated to out_size - 1. Returns false (out = "") if absent. */
bool lmtp_find_message_id(const unsigned char *msg, size_t len, char *out, size_t out_size);

#endif
