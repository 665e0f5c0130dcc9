/* imap-bodystructure.h: the IMAP BODY and BODYSTRUCTURE responses
 * (RFC 3501 7.4.2 / RFC 9051 7.5.2) of a message parsed by lib/mime.h. */
#ifndef MF_IMAP_BODYSTRUCTURE_H
#define MF_IMAP_BODYSTRUCTURE_H

#include "lib/mime.h"

/* Appends the parenthesised body structure of part (usually msg->root):
   with extended, BODYSTRUCTURE (md5, disposition, language, location for
   single parts; parameters, disposition, language, location for
   multiparts), otherwise BODY. Rules, for every part:
   - no or invalid Content-Type: "text" "plain"; a text part without a
     charset parameter gets "charset" "us-ascii" added; no encoding: "7bit";
   - message/rfc822 and message/global: envelope, body structure and lines
     of the encapsulated message; text/ parts: lines;
   - a multipart without parts gets one empty text/plain part (IMAP needs
     at least one); a multipart or message left unparsed (no boundary, or a
     depth / part-count limit) is written as "application" "octet-stream".
   flags: enum imap_quote_flags. */
void imap_bodystructure_write(const struct mime_message *msg, const struct mime_part *part,
			      bool extended, unsigned int flags, struct buf *out);

/* The part an IMAP section part number names (RFC 3501 6.4.5 / RFC 9051
   6.4.5): "1", "2.1", "3.2.1" ... counted from the message root. A
   message/rfc822 part's numbers continue into the encapsulated message; a
   non-multipart message (or encapsulated message) has just part 1, its
   body. Reads numbers separated by '.' from numbers and sets *end_r after the
   last one (the caller checks for "", ".HEADER", ".MIME" ...). NULL when
   there is no such part or a number is invalid. */
const struct mime_part *imap_section_part(const struct mime_message *msg,
					  const char *numbers, const char **end_r);

#endif
