/* mime.h: protocol-free parsing of an Internet message (RFC 5322 + MIME,
 * RFC 2045-2047, 2231) held in memory into a tree of parts, plus header
 * helpers: unfolded field values, RFC 2047 encoded-word decoding to UTF-8,
 * RFC 2231 parameters, and RFC 5322 address lists (groups, routes, comments,
 * the broken forms real mail has).
 *
 * Sizes and line counts are what IMAP reports: with MIME_PARSE_LF_TO_CRLF a
 * bare LF counts as two bytes (the message is stored with LF endings but
 * served with CRLF); without it sizes are exact bytes. Lines are counted as
 * LF characters. The work done is linear in the input (times the number of
 * open multipart levels for boundary checks), whatever the input is; depth
 * and part count are limited and the tree never grows past them.
 *
 * The tree points into the caller's buffer (offsets only) and owns the
 * strings it extracted; the buffer must outlive mime_message for the header
 * helpers and for ENVELOPE rendering. */
#ifndef MF_MIME_H
#define MF_MIME_H

#include "lib/buf.h"

enum mime_parse_flags {
	MIME_PARSE_LF_TO_CRLF = 1 << 0,
};

struct mime_limits {
	unsigned int depth_max;   /* multipart / message nesting (100) */
	unsigned int parts_max;   /* parts in one message (10000) */
};

enum mime_part_kind {
	MIME_PART_LEAF,
	MIME_PART_MULTIPART,      /* children: the body parts */
	MIME_PART_MESSAGE,        /* message/rfc822 or message/global:
	                             one child, the encapsulated message */
};

struct mime_param {
	char *name;   /* as written, RFC 2231 continuations joined: "name" or
	                 "name*" when the value is extended (charset'lang'%xx) */
	char *value;  /* unquoted */
};

struct mime_size {
	uint64_t physical;  /* bytes in the buffer */
	uint64_t virtual;   /* IMAP size (bare LF = 2 with MIME_PARSE_LF_TO_CRLF) */
	uint64_t lines;     /* LF characters */
};

struct mime_part {
	struct mime_part *parent, *children, *next;
	unsigned int child_count;
	enum mime_part_kind kind;

	uint64_t header_offset;      /* where the header starts */
	uint64_t body_offset;        /* where the body starts */
	struct mime_size header;     /* header including the blank line */
	struct mime_size body;       /* body; for multiparts incl. preamble,
	                                children and epilogue */

	/* Content-Type; NULL type when absent or invalid (the default
	   text/plain; charset=us-ascii applies, or message/rfc822 inside
	   multipart/digest, in which case type/subtype are set). */
	char *type, *subtype;
	struct mime_param *params;
	unsigned int param_count;

	char *id;            /* Content-ID, unfolded and trimmed */
	char *description;   /* Content-Description, raw (encoded words kept) */
	char *encoding;      /* Content-Transfer-Encoding token; NULL = 7bit */
	char *md5;           /* Content-MD5 */
	char *disposition;   /* Content-Disposition type */
	struct mime_param *disp_params;
	unsigned int disp_param_count;
	char **languages;    /* Content-Language tags */
	unsigned int language_count;
	char *location;      /* Content-Location, whitespace removed */
};

struct mime_message {
	const unsigned char *data;   /* the caller's buffer, not owned */
	size_t size;
	unsigned int flags;
	struct mime_part *root;
	unsigned int part_count;
	/* a limit was hit: deeper levels or further parts were left as
	   plain content of their parent */
	bool limited;
};

/* Parses data[0..size). Never fails: broken input gives the tree a
   tolerant reader would see. limits may be NULL (defaults). */
struct mime_message *mime_parse(const void *data, size_t size,
				const struct mime_limits *limits, unsigned int flags);
void mime_message_free(struct mime_message **msg);

/* ---- header fields ---- */

struct mime_header_iter {
	const unsigned char *pos, *end;
};
struct mime_field {
	const char *name;            /* points into the message, not NUL-ended */
	size_t name_len;
	const unsigned char *value;  /* raw, from after the colon, with folds */
	size_t value_len;
};
/* Iterates the fields of part's header (lines without a colon and
   continuation lines without a field are skipped). */
void mime_header_iter_init(struct mime_header_iter *iter, const struct mime_message *msg,
			   const struct mime_part *part);
bool mime_header_next(struct mime_header_iter *iter, struct mime_field *field_r);

/* Appends the unfolded value (line breaks before whitespace removed,
   leading and trailing whitespace trimmed, other CR/LF kept) to out. */
void mime_field_unfold(const unsigned char *value, size_t len, struct buf *out);
/* The unfolded value of the first field named name (case-insensitive),
   mf_malloc'ed, or NULL when the part has no such field. */
char *mime_header_get(const struct mime_message *msg, const struct mime_part *part,
		      const char *name);

/* Appends text with RFC 2047 encoded words decoded to UTF-8 (whitespace
   between adjacent encoded words dropped; unknown charsets and invalid
   words kept as written; invalid UTF-8 replaced by U+FFFD). */
void mime_decode_words(const char *text, size_t len, struct buf *out);

/* Parses "token/token; a=b; c*0=...; c*1*=..." (Content-Type style, or
   Content-Disposition style with want_subtype false). Returns -1 when the
   value has no valid type; params are joined per RFC 2231 and returned as
   in struct mime_param. Free with mime_params_free. */
int mime_parse_content_value(const char *value, bool want_subtype, char **type_r,
			     char **subtype_r, struct mime_param **params_r,
			     unsigned int *count_r);
void mime_params_free(struct mime_param **params, unsigned int count);
/* The value of parameter name (case-insensitive) decoded to UTF-8: an
   RFC 2231 extended value (name*) is percent- and charset-decoded, a plain
   one is RFC 2047-decoded. mf_malloc'ed; NULL when absent. */
char *mime_param_get_utf8(const struct mime_param *params, unsigned int count,
			  const char *name);

/* Converts len bytes in charset to UTF-8 appended to out (invalid input
   replaced by U+FFFD). Returns -1 for an unknown charset (out unchanged). */
int mime_charset_to_utf8(const char *charset, const void *data, size_t len,
			 struct buf *out);

/* Decodes a body in Content-Transfer-Encoding encoding, appending to out:
   NULL, 7bit, 8bit and binary are copied; base64 skips characters outside
   the alphabet; quoted-printable drops soft line breaks and trailing
   whitespace and keeps broken escapes as written. Returns -1 for an unknown
   encoding (out unchanged), which IMAP BINARY answers with UNKNOWN-CTE. */
int mime_decode_transfer(const char *encoding, const void *data, size_t len,
			 struct buf *out);

/* ---- addresses ---- */

/* One entry of an address list in IMAP terms: a mailbox, or a group start
   (mailbox = group name, host NULL) / group end (mailbox and host NULL). */
struct mime_address {
	char *name;      /* display name or comment, raw (encoded words kept) */
	char *route;     /* obsolete route "@a,@b" */
	char *mailbox;   /* local part (or group name) */
	char *host;      /* domain */
	bool invalid;    /* filled in from a broken address */
};
/* Parses an address-list header value (unfolded). Never fails; broken
   addresses get mailbox "MISSING_MAILBOX" / host "MISSING_DOMAIN" so IMAP
   clients can still show them. At most max entries (0 = 1000). */
void mime_address_parse(const char *value, unsigned int max,
			struct mime_address **addrs_r, unsigned int *count_r);
void mime_address_free(struct mime_address **addrs, unsigned int count);

#endif
