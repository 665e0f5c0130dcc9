/* imap-quote.h: writing strings in IMAP syntax: a quoted string when the
 * value allows it, a literal otherwise (8-bit text in IMAP4rev1, CR or LF),
 * NIL for absent values. */
#ifndef MF_IMAP_QUOTE_H
#define MF_IMAP_QUOTE_H

#include "lib/buf.h"

enum imap_quote_flags {
	/* The session enabled UTF-8 (IMAP4rev2 / UTF8=ACCEPT): valid UTF-8
	   may be sent in quoted strings. */
	IMAP_QUOTE_UTF8 = 1 << 0,
};

/* Appends s[0..len) as a quoted string or a literal ("{n}\r\n..."). NUL
   bytes, which neither form may carry, become spaces. */
void imap_append_string(struct buf *out, const char *s, size_t len, unsigned int flags);
/* True when data[0..len) is well-formed UTF-8 (RFC 3629: no overlong
   forms, surrogates or code points over U+10FFFF). */
bool imap_utf8_valid(const void *data, size_t len);
/* NULL gives NIL. */
void imap_append_nstring(struct buf *out, const char *s, unsigned int flags);

#endif
