/* mime-private.h: the RFC 5322 lexer shared by the MIME value parsers
 * (mime-header.c) and the address parser (mime-address.c). Not for use
 * outside lib/mime*.c. */
#ifndef MF_MIME_PRIVATE_H
#define MF_MIME_PRIVATE_H

#include "lib/mime.h"

struct mime_lexer {
	const char *p, *end;
};

/* Skips whitespace and (nested) comments; with comment non-NULL the text
   of the comments is appended to it (separated by spaces). */
void mime_lex_skip_cfws(struct mime_lexer *lx, struct buf *comment);
/* Reads a quoted string at lx->p (which must be '"'), unescaped, into out;
   an unterminated string runs to the end. */
void mime_lex_quoted(struct mime_lexer *lx, struct buf *out);
/* Reads a run of characters that are not in specials, not whitespace and not
   control characters (8-bit bytes are accepted) into out. Returns its length. */
size_t mime_lex_token(struct mime_lexer *lx, const char *specials, struct buf *out);
/* buf contents as a new NUL-terminated string. */
char *mime_buf_strdup(const struct buf *b);
/* Appends UTF-8 bytes, replacing invalid sequences by U+FFFD. */
void mime_append_utf8_valid(struct buf *out, const unsigned char *s, size_t len);

#endif
