/* imap-utf7.h: IMAP modified UTF-7 mailbox names (RFC 3501 5.1.3) to and
 * from UTF-8. Validation is strict: a modified UTF-7 string is accepted only
 * in its one canonical form (printable ASCII never base64-encoded, no empty or
 * adjacent shift sequences, zero padding bits, paired surrogates), so two
 * different wire names never map to one mailbox. */
#ifndef MF_IMAP_UTF7_H
#define MF_IMAP_UTF7_H

#include "lib/buf.h"

/* Appends the modified UTF-7 form of the NUL-terminated UTF-8 string src to
 * dest. Returns -1 when src is not valid UTF-8 (overlong forms, surrogates and
 * code points over U+10FFFF are invalid) or dest's limit is reached; dest may
 * then hold a partial result. */
int imap_utf8_to_utf7(const char *src, struct buf *dest);

/* Appends the UTF-8 form of the modified UTF-7 string src to dest. Returns -1
 * when src is not canonical modified UTF-7 (see above) or dest is full. */
int imap_utf7_to_utf8(const char *src, struct buf *dest);

/* True when src is canonical modified UTF-7. */
bool imap_utf7_is_valid(const char *src);

/* True when src is plain printable ASCII without '&', i.e. the same in both
 * encodings (the common case; lets callers skip conversion). */
bool imap_utf7_is_plain(const char *src);

#endif
