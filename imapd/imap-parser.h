/* imap-parser.h: the resumable IMAP command parser (RFC 3501 / RFC 9051
 * syntax, RFC 7888 LITERAL+ / LITERAL-, RFC 3516 literal8). Fed arbitrary
 * chunks of bytes, it yields one event at a time: a complete command (tag,
 * name, argument tree), a literal that needs the caller's decision or a
 * continuation, streamed literal data, a raw line, or an error. It knows
 * nothing about sessions, mailboxes or the store; the command layer gives
 * meaning to the arguments (sequence sets, fetch sections, search keys are
 * atoms it parses further; imap_seqset_parse() helps with the first).
 *
 * Memory is bounded by the limits given at creation: the bytes kept for one
 * command never exceed about 2 * line_max, the argument nodes never exceed
 * arg_max; streamed literals are never kept. Buffers that one large command
 * grew are released before the next command, so idle sessions stay small.
 *
 * Typical loop:
 *	while (input left) {
 *		r = imap_parser_parse(p, data, len, &used); data += used; len -= used;
 *		switch (r) {
 *		case IMAP_PARSE_NEED_MORE: read more; break;
 *		case IMAP_PARSE_COMMAND: dispatch(imap_parser_command(p)); break;
 *		case IMAP_PARSE_CONTINUATION: send "+ OK"; break;
 *		case IMAP_PARSE_LITERAL: look at imap_parser_literal_info() and the
 *			partial imap_parser_command(), then accept / stream / reject
 *			(after a successful accept or stream of a synchronizing
 *			literal, send "+ OK");
 *		case IMAP_PARSE_LITERAL_DATA: write the chunk somewhere;
 *		case IMAP_PARSE_LINE: IDLE "DONE" / AUTHENTICATE response;
 *		case IMAP_PARSE_ERROR: BAD (tagged when imap_parser_tag() != NULL),
 *			disconnect when fatal.
 *		}
 *	}
 */
#ifndef MF_IMAP_PARSER_H
#define MF_IMAP_PARSER_H

#include "lib/lib.h"

/* Limits; a zero field takes the default shown. */
struct imap_parser_limits {
	/* Bytes of one command line including its in-memory literals and
	   CRLFs, excluding streamed literals (65536). Also the raw-line max. */
	size_t line_max;
	/* Largest literal kept in memory (65536). */
	uint64_t literal_max;
	/* Literals larger than this are offered to the caller with
	   IMAP_PARSE_LITERAL to accept, stream or reject (literal_max).
	   Set it to 1 to be asked about nearly every literal. */
	uint64_t stream_min;
	/* LITERAL-: largest non-synchronizing literal; a larger {n+} is a
	   fatal error (BAD, then disconnect, RFC 7888). 0 = no such limit
	   (LITERAL+). */
	uint64_t nonsync_max;
	/* Depth of nested parenthesised lists (32, at most 1000). */
	unsigned int nesting_max;
	/* Number of arguments in one command, list items included (4096). */
	unsigned int arg_max;
	/* Length of a tag (64) and of a command name (32). */
	size_t tag_max;
	size_t name_max;
};

enum imap_parse_result {
	/* See imap_parser_error(). */
	IMAP_PARSE_ERROR = -1,
	/* All input consumed; call again with more. */
	IMAP_PARSE_NEED_MORE = 0,
	/* A complete command: imap_parser_command(). */
	IMAP_PARSE_COMMAND,
	/* A synchronizing literal was accepted into memory: send "+ OK"
	   (or any "+" line), then keep feeding. */
	IMAP_PARSE_CONTINUATION,
	/* A literal larger than stream_min: see imap_parser_literal_info()
	   and call imap_parser_literal_accept/stream/reject before parsing
	   on (parsing on without a decision means accept). */
	IMAP_PARSE_LITERAL,
	/* A chunk of a streamed literal: imap_parser_literal_chunk(). */
	IMAP_PARSE_LITERAL_DATA,
	/* Raw-line mode delivered its line: imap_parser_line(). */
	IMAP_PARSE_LINE,
};

enum imap_parse_error {
	IMAP_PARSE_ERR_NONE = 0,
	IMAP_PARSE_ERR_SYNTAX,
	IMAP_PARSE_ERR_TAG,
	IMAP_PARSE_ERR_LINE_TOO_LONG,
	IMAP_PARSE_ERR_TOO_MANY_ARGS,
	IMAP_PARSE_ERR_NESTING,
	IMAP_PARSE_ERR_LITERAL_TOO_LARGE,
};

enum imap_arg_type {
	IMAP_ARG_EOL = 0,    /* terminates every argument array */
	IMAP_ARG_NIL,        /* the atom NIL (any case); str holds it as sent */
	IMAP_ARG_ATOM,       /* includes flags (\Seen), sequence sets, and
	                        fetch atoms with their [section]<partial> */
	IMAP_ARG_STRING,     /* quoted string, escapes removed */
	IMAP_ARG_LITERAL,    /* literal kept in memory; may contain NUL */
	IMAP_ARG_LITERAL_STREAMED, /* literal delivered as chunks; len = size */
	IMAP_ARG_LIST,
};

struct imap_arg {
	enum imap_arg_type type;
	bool literal8;        /* sent as ~{n} (RFC 3516) */
	bool nonsync;         /* literal sent as {n+} */
	size_t len;           /* bytes of str; items in list; literal size */
	const char *str;      /* NUL-terminated; "" for lists and streamed */
	const struct imap_arg *list; /* LIST: len items then an EOL */
};

struct imap_command {
	const char *tag;
	/* Upper-cased; "UID FETCH", "UID EXPUNGE" ... for UID commands. */
	const char *name;
	const struct imap_arg *args; /* arg_count items then an EOL */
	size_t arg_count;
};

struct imap_literal_info {
	uint64_t size;
	bool sync;            /* {n}: the client waits for "+" */
	bool literal8;
	unsigned int depth;   /* list nesting where it appears (0 = top) */
};

struct imap_parser;

struct imap_parser *imap_parser_create(const struct imap_parser_limits *limits);
void imap_parser_destroy(struct imap_parser **parser);

/* Parses from data[0..size); *consumed_r says how much was used (the caller
   drops that much and calls again with the rest). Returns one event. After
   IMAP_PARSE_COMMAND the next call starts the next command (pipelining);
   strings returned by the accessors stay valid until the next call. */
enum imap_parse_result imap_parser_parse(struct imap_parser *parser,
					 const void *data, size_t size,
					 size_t *consumed_r);

/* The command: complete after IMAP_PARSE_COMMAND; after
   IMAP_PARSE_LITERAL / CONTINUATION / LITERAL_DATA, the part parsed so far
   (tag, name and preceding arguments; open lists hold their items so far;
   the literal itself is not yet in it). NULL before a name was read. */
const struct imap_command *imap_parser_command(struct imap_parser *parser);
/* The tag of the command being parsed or failed, NULL if not read yet
   (then errors are answered with an untagged BAD). */
const char *imap_parser_tag(const struct imap_parser *parser);

/* After IMAP_PARSE_LITERAL. */
const struct imap_literal_info *imap_parser_literal_info(const struct imap_parser *parser);
/* Keep the literal in memory: -1 (with *error_r, a static string) when it
   exceeds literal_max or the line budget; the parser then behaves as
   after imap_parser_literal_reject(). For a synchronizing literal the caller
   sends "+ OK" after a successful accept or stream. */
int imap_parser_literal_accept(struct imap_parser *parser, const char **error_r);
/* Deliver the literal as IMAP_PARSE_LITERAL_DATA events (APPEND). -1
   (with *error_r, static) when the command has too many arguments for it;
   the parser then behaves as after imap_parser_literal_reject(), and the
   caller must not send a continuation. */
int imap_parser_literal_stream(struct imap_parser *parser, const char **error_r);
/* Refuse the literal. Returns true when the caller must disconnect after
   its tagged BAD (a non-synchronizing literal: its data is on the way,
   RFC 7888). For a synchronizing literal the client sends no data; the
   parser starts a new command on the next call (the tag stays readable
   until then). */
bool imap_parser_literal_reject(struct imap_parser *parser);

/* After IMAP_PARSE_LITERAL_DATA: the chunk points into the caller's input
   given to the last imap_parser_parse() call; *last_r is true on the final
   chunk (possibly empty for a zero-size literal). */
void imap_parser_literal_chunk(const struct imap_parser *parser, const void **data_r,
			       size_t *size_r, bool *last_r);

/* Raw-line mode for the next line only (IDLE "DONE", AUTHENTICATE
   responses, "*" cancel): the next event is IMAP_PARSE_LINE (or an error for
   a line over line_max, which is then skipped). Call between commands. */
void imap_parser_read_line(struct imap_parser *parser);
/* After IMAP_PARSE_LINE: the line without CRLF / LF, NUL-terminated. */
const char *imap_parser_line(const struct imap_parser *parser, size_t *len_r);

/* After IMAP_PARSE_ERROR: a static human string. *fatal_r true means the
   connection cannot be resynchronised (send BAD or BYE, then close);
   otherwise the rest of the bad line is skipped by the next calls, literals
   announced with {n+} in it included. */
const char *imap_parser_error(const struct imap_parser *parser,
			      enum imap_parse_error *code_r, bool *fatal_r);

/* Drops the current command and any partial input state. */
void imap_parser_reset(struct imap_parser *parser);

/* Argument helpers. astring: atom, NIL (as its text), quoted or literal
   without NUL. nstring: NIL gives NULL; quoted or literal without NUL.
   string: quoted or literal without NUL. atom: atom only. A literal8
   (~{n}) is none of these. */
bool imap_arg_get_astring(const struct imap_arg *arg, const char **str_r);
bool imap_arg_get_nstring(const struct imap_arg *arg, const char **str_r);
bool imap_arg_get_string(const struct imap_arg *arg, const char **str_r);
bool imap_arg_get_atom(const struct imap_arg *arg, const char **str_r);
bool imap_arg_atom_equals(const struct imap_arg *arg, const char *atom);
bool imap_arg_get_list(const struct imap_arg *arg, const struct imap_arg **list_r,
		       size_t *count_r);

/* Sequence sets (RFC 9051 sequence-set). '*' is IMAP_SEQ_STAR (0, which
   is never a valid number) until resolved. */
#define IMAP_SEQ_STAR 0
struct imap_seq_range {
	uint32_t first, last;
};
/* Parses "1,3:5,7:*,*" into ranges as written (first may exceed last).
   Returns -1 with *error_r (static) for syntax errors, 0 and numbers over
   4294967295. *ranges_r is mf_malloc'ed (free with mf_free). At most
   max_ranges ranges (0 = no limit beyond the string length). */
int imap_seqset_parse(const char *str, unsigned int max_ranges,
		      struct imap_seq_range **ranges_r, size_t *count_r,
		      const char **error_r);
/* Replaces IMAP_SEQ_STAR by star, orders each range, sorts and merges
   overlapping and adjacent ranges; *count_r is updated. star 0 (empty
   mailbox) turns '*' into 0, which the caller then treats as no match. */
void imap_seqset_resolve(struct imap_seq_range *ranges, size_t *count_r, uint32_t star);
/* True when n is in the resolved set (binary search). */
bool imap_seqset_contains(const struct imap_seq_range *ranges, size_t count, uint32_t n);

#endif
