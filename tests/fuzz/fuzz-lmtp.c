/* fuzz-lmtp.c: libFuzzer target for the LMTP parser (lmtpd/lmtp-parser.c).
 * The first input byte picks line_max and a read size; the rest is fed once
 * in one piece and once in reads of that size, like a session would (DATA
 * switches to data mode, MAIL/RCPT arguments are parsed, the message is
 * searched for its Message-ID). Both runs must give the same transcript,
 * never consume more than given, never keep more than line_max of an
 * incomplete command line, and always make progress. */
#include "lmtpd/lmtp-parser.h"
#include "lib/buf.h"

#include <stdlib.h>
#include <string.h>

#define MESSAGE_KEEP_MAX (256 * 1024)

static void transcript_event(struct buf *t, const struct lmtp_event *ev)
{
	struct lmtp_mail_args mail;
	struct lmtp_path path;
	const char *error;
	unsigned char tag = (unsigned char)ev->type;

	if (ev->type == LMTP_EV_NEED_MORE)
		return;
	if (ev->type == LMTP_EV_DATA) {
		/* chunk boundaries differ between runs: record bytes only */
		buf_append(t, ev->data, ev->data_len);
		return;
	}
	buf_append(t, "\0", 1);
	buf_append(t, &tag, 1);
	if (ev->type != LMTP_EV_COMMAND)
		return;
	buf_append(t, ev->verb, strlen(ev->verb));
	buf_append(t, ev->arg, ev->arg_len);
	if (ev->cmd == LMTP_CMD_MAIL) {
		tag = (unsigned char)lmtp_parse_mail(ev->arg, ev->arg_len, &mail, &error);
		buf_append(t, &tag, 1);
		if (tag == LMTP_ARG_OK)
			buf_append(t, mail.path.address, strlen(mail.path.address));
	} else if (ev->cmd == LMTP_CMD_RCPT) {
		tag = (unsigned char)lmtp_parse_rcpt(ev->arg, ev->arg_len, &path, &error);
		buf_append(t, &tag, 1);
		if (tag == LMTP_ARG_OK && strlen(path.address) > LMTP_PATH_MAX)
			abort();
	}
}

static void run(const uint8_t *data, size_t size, size_t chunk, size_t line_max,
		struct buf *transcript)
{
	struct lmtp_parser p;
	struct lmtp_event ev;
	struct buf in, message;
	size_t fed = 0;
	unsigned idle;
	char msgid[64];

	lmtp_parser_init(&p, line_max);
	buf_init(&in, 0);
	buf_init(&message, MESSAGE_KEEP_MAX);
	do {
		size_t n = chunk < size - fed ? chunk : size - fed;

		buf_append(&in, data + fed, n);
		fed += n;
		for (idle = 0;; idle = ev.consumed == 0 ? idle + 1 : 0) {
			lmtp_parser_next(&p, in.data, in.len, &ev);
			if (ev.consumed > in.len || idle > 4)
				abort();
			transcript_event(transcript, &ev);
			if (ev.type == LMTP_EV_DATA)
				buf_append(&message, ev.data, ev.data_len);
			if (ev.type == LMTP_EV_DATA_END) {
				lmtp_find_message_id(message.data, message.len, msgid, sizeof(msgid));
				if (strlen(msgid) >= sizeof(msgid))
					abort();
				buf_reset(&message);
			}
			if (ev.type == LMTP_EV_COMMAND && ev.cmd == LMTP_CMD_DATA)
				lmtp_parser_begin_data(&p);
			buf_consume(&in, ev.consumed);
			if (ev.type == LMTP_EV_NEED_MORE)
				break;
		}
		if (!lmtp_parser_in_data(&p) && in.len >= line_max)
			abort();
	} while (fed < size);
	buf_free(&in);
	buf_free(&message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t line_maxes[] = { 3, 8, 16, 64, 512, 8192 };
	struct buf t1, t2;
	size_t line_max, chunk;

	if (size < 1)
		return 0;
	line_max = line_maxes[data[0] % MF_N_ELEMENTS(line_maxes)];
	chunk = (size_t)(data[0] >> 3) + 1;
	data++;
	size--;
	buf_init(&t1, 0);
	buf_init(&t2, 0);
	run(data, size, size == 0 ? 1 : size, line_max, &t1);
	run(data, size, chunk, line_max, &t2);
	if (t1.len != t2.len || (t1.len > 0 && memcmp(t1.data, t2.data, t1.len) != 0))
		abort();
	buf_free(&t1);
	buf_free(&t2);
	return 0;
}
