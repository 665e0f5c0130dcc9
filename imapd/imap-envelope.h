/* imap-envelope.h: the IMAP ENVELOPE structure (RFC 3501 7.4.2 / RFC 9051
 * 7.5.2) of a message header parsed by lib/mime.h. */
#ifndef MF_IMAP_ENVELOPE_H
#define MF_IMAP_ENVELOPE_H

#include "lib/mime.h"

/* Appends "(date subject from sender reply-to to cc bcc in-reply-to
   message-id)" for the header of part (the root, or the child of a
   message/rfc822 part). String fields are the raw unfolded values (encoded
   words kept, as IMAP requires); when a field occurs more than once the last
   one counts. Sender and Reply-To default to From. Addresses are
   ((name adl mailbox host) ...), groups as (NIL NIL "name" NIL) ...
   (NIL NIL NIL NIL). flags: enum imap_quote_flags. */
void imap_envelope_write(const struct mime_message *msg, const struct mime_part *part,
			 unsigned int flags, struct buf *out);

#endif
