/* pop3-msg.h: pure helpers for what POP3 sends about and of a message:
 * the UIDL string from a configurable format, the CRLF size of a stored
 * (LF) message, the end of the part TOP sends, and the conversion of a
 * stored message to the wire (LF -> CRLF, dot-stuffing, the final ".")
 * in bounded pieces so output to a slow client never piles up. */
#ifndef MF_POP3_MSG_H
#define MF_POP3_MSG_H

#include "lib/lib.h"

#define POP3_UIDL_MAX 70          /* RFC 1939 7: 1..70 characters 0x21..0x7E */
#define POP3_UIDL_FORMAT_DEFAULT "%08Xu%08Xv"

/* The UIDL format uses the variables of Dovecot's pop3_uidl_format that a
 * maildir store can give: %u (UID), %v (UIDVALIDITY), %f and %g (the
 * message file's base name, which is what identifies a maildir message),
 * also as %{uid} %{uidvalidity} %{filename} %{guid}; %% is '%'. Between '%'
 * and the variable: an optional '0' (zero padding), a width, and modifiers
 * X (number in lower-case hex, as Dovecot prints it), L (lower case),
 * U (upper case). Example: "%08Xu%08Xv" -> "0000002a65f1b2c3".
 * Returns -1 with a static *error_r for an unknown variable or modifier, a
 * format without %u/%f/%g (it would not tell messages apart) or longer than
 * 64 bytes. */
int pop3_uidl_format_check(const char *format, const char **error_r);

struct pop3_uidl_vars {
	uint32_t uid, uid_validity;
	const char *basename;  /* the file name without ":2,..." */
	size_t basename_len;
};

/* Expands format (checked with pop3_uidl_format_check()) into out. Bytes
 * outside 0x21..0x7E are replaced by '_' and the result is cut at
 * POP3_UIDL_MAX, so it is always a valid UIDL. Returns its length. */
size_t pop3_uidl_expand(const char *format, const struct pop3_uidl_vars *vars,
			char out[POP3_UIDL_MAX + 1]);

/* The size of data on the wire: every LF not preceded by CR counts 2. */
uint64_t pop3_crlf_size(const unsigned char *data, size_t len);

/* How many bytes of data TOP sends for "lines" body lines: the header,
 * the empty line after it, and at most lines lines of the body. */
size_t pop3_top_length(const unsigned char *data, size_t len, uint32_t lines);

/* Streams data to the wire form. Init it, then call pop3_msg_stream_run()
 * as long as it returns false; each call appends at most about out_max
 * bytes to out (out_max >= 16). The stream ends with ".\r\n" (and a CRLF
 * before it when data does not end with a line end). */
struct pop3_msg_stream {
	const unsigned char *data;
	size_t len, pos;
	bool line_start;  /* the next byte starts a line */
	bool prev_cr;     /* the last byte copied was CR */
	bool done;
};

void pop3_msg_stream_init(struct pop3_msg_stream *s, const unsigned char *data, size_t len);
/* Writes into out[0..out_max); *written_r bytes. True when the whole
 * message including the final ".\r\n" has been written. */
bool pop3_msg_stream_run(struct pop3_msg_stream *s, unsigned char *out, size_t out_max,
			 size_t *written_r);

#endif
