/* fuzz-pop3.c: libFuzzer target for the POP3 parser and the pure helpers
 * beside it (pop3d/pop3-parser.c, pop3d/pop3-msg.c). The first input byte
 * picks line_max and a read size; the rest is fed once in one piece and
 * once in reads of that size, like a session would (AUTH without an
 * initial response switches to a SASL response line, which is decoded as
 * PLAIN). Both runs must give the same transcript, never consume more than
 * given, never keep more than line_max of an incomplete line, and always
 * make progress. The input is also used as a message (its wire form must
 * match its CRLF size) and, when short, as a UIDL format. */
#include "pop3d/pop3-parser.h"
#include "lib/sasl.h"
#include "pop3d/pop3-msg.h"
#include "lib/buf.h"

#include <stdlib.h>
#include <string.h>

static void transcript_event(struct buf *t, const struct pop3_event *ev)
{
	char z[SASL_ID_MAX + 1], c[SASL_ID_MAX + 1], p[SASL_PASS_MAX + 1];
	const char *error;
	unsigned char tag = (unsigned char)ev->type;

	if (ev->type == POP3_EV_NEED_MORE)
		return;
	buf_append(t, "\0", 1);
	buf_append(t, &tag, 1);
	if (ev->type == POP3_EV_COMMAND) {
		buf_append(t, ev->verb, strlen(ev->verb));
		for (unsigned i = 0; i < ev->argc; i++) {
			if (ev->args[i].len > POP3_ARG_MAX)
				abort();
			buf_append(t, ev->args[i].s, ev->args[i].len);
		}
		buf_append(t, ev->rest, ev->rest_len);
	} else if (ev->type == POP3_EV_RESPONSE) {
		tag = (unsigned char)sasl_plain_decode(ev->line, ev->line_len, z, c, p, &error);
		buf_append(t, &tag, 1);
		if (tag == 0 && (strlen(c) == 0 || strlen(p) == 0 || strlen(c) > SASL_ID_MAX))
			abort();
	}
}

static void run(const uint8_t *data, size_t size, size_t chunk, size_t line_max, struct buf *t)
{
	struct pop3_parser p;
	struct pop3_event ev;
	struct buf in;
	size_t fed = 0;
	unsigned idle = 0;

	pop3_parser_init(&p, line_max);
	buf_init(&in, 0);
	for (;;) {
		pop3_parser_next(&p, in.data, in.len, &ev);
		if (ev.consumed > in.len)
			abort();
		transcript_event(t, &ev);
		if (ev.type == POP3_EV_COMMAND && ev.cmd == POP3_CMD_AUTH && ev.argc == 1)
			pop3_parser_expect_response(&p);
		buf_consume(&in, ev.consumed);
		if (ev.type == POP3_EV_NEED_MORE && in.len >= line_max)
			abort();   /* an incomplete line is never kept at the limit */
		if (ev.type != POP3_EV_NEED_MORE) {
			idle = 0;
			continue;
		}
		if (fed == size)
			break;
		if (ev.consumed == 0 && ++idle > size + 2)
			abort();   /* no progress */
		size_t n = MF_MIN(chunk, size - fed);
		buf_append(&in, data + fed, n);
		fed += n;
	}
	buf_free(&in);
}

static void check_message(const uint8_t *data, size_t size, size_t out_max)
{
	struct pop3_msg_stream st;
	unsigned char *out = malloc(out_max);
	uint64_t total = 0, dots = 0;
	size_t w;
	bool done = false;

	pop3_msg_stream_init(&st, data, size);
	for (unsigned guard = 0; !done; guard++) {
		if (guard > size + 10)
			abort();
		done = pop3_msg_stream_run(&st, out, out_max, &w);
		if (w > out_max || (w == 0 && !done))
			abort();
		total += w;
	}
	for (size_t i = 0; i < size; i++)
		dots += data[i] == '.' && (i == 0 || data[i - 1] == '\n');
	uint64_t expect = pop3_crlf_size(data, size) + dots + 3;
	if (size > 0 && data[size - 1] != '\n')
		expect += 2;
	if (total != expect)
		abort();
	if (pop3_top_length(data, size, size > 0 ? data[0] % 8 : 0) > size)
		abort();
	free(out);
}

static void check_format(const uint8_t *data, size_t size)
{
	char fmt[80], out[POP3_UIDL_MAX + 1];
	const char *error;
	struct pop3_uidl_vars v = { .uid = 7, .uid_validity = 123456, .basename = "1.M2.host", .basename_len = 9 };

	if (size >= sizeof(fmt) || memchr(data, '\0', size) != NULL)
		return;
	memcpy(fmt, data, size);
	fmt[size] = '\0';
	if (pop3_uidl_format_check(fmt, &error) < 0)
		return;
	size_t len = pop3_uidl_expand(fmt, &v, out);
	if (len == 0 || len > POP3_UIDL_MAX || strlen(out) != len)
		abort();
	for (size_t i = 0; i < len; i++) {
		if ((unsigned char)out[i] < 0x21 || (unsigned char)out[i] > 0x7e)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole, pieces;

	if (size < 1)
		return 0;
	size_t line_max = 3 + (data[0] & 0x3f) * 4;
	size_t chunk = 1 + (data[0] >> 6) * 5;
	data++;
	size--;
	buf_init(&whole, 0);
	buf_init(&pieces, 0);
	run(data, size, size + 1, line_max, &whole);
	run(data, size, chunk, line_max, &pieces);
	if (whole.len != pieces.len || (whole.len > 0 && memcmp(whole.data, pieces.data, whole.len) != 0))
		abort();
	buf_free(&whole);
	buf_free(&pieces);
	check_message(data, size, 16 + line_max);
	check_format(data, size);
	return 0;
}
