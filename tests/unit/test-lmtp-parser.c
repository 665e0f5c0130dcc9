/* test-lmtp-parser.c: the LMTP parser gives the same events whether input
 * comes in one piece or one byte at a time (and other splits): commands,
 * dot-unstuffing, CRLF/LF normalisation, the final "." across read
 * boundaries, line limits, garbage and NUL bytes; MAIL/RCPT arguments;
 * Message-ID extraction. */
#include "lmtpd/lmtp-parser.h"
#include "lib/buf.h"
#include "tests/unit/test.h"

TEST_DEFINE_GLOBALS

static const char *const cmd_names[] = {
	"?", "LHLO", "HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT",
	"VRFY", "HELP", "STARTTLS",
};

static void escape_into(struct buf *out, const unsigned char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] == '\r')
			buf_printf(out, "\\r");
		else if (s[i] == '\n')
			buf_printf(out, "\\n");
		else if (s[i] < 32 || s[i] >= 127)
			buf_printf(out, "\\x%02x", s[i]);
		else
			buf_append(out, &s[i], 1);
	}
}

static void flush_data(struct buf *out, struct buf *data)
{
	if (data->len == 0)
		return;
	buf_printf(out, "DATA ");
	escape_into(out, data->data, data->len);
	buf_printf(out, "\n");
	buf_reset(data);
}

static void record(struct buf *out, struct buf *data, const struct lmtp_event *ev)
{
	if (ev->type == LMTP_EV_DATA) {
		buf_append(data, ev->data, ev->data_len);
		return;
	}
	if (ev->type == LMTP_EV_NEED_MORE)
		return;
	flush_data(out, data);
	switch (ev->type) {
	case LMTP_EV_COMMAND:
		buf_printf(out, "CMD %s/%s [", cmd_names[ev->cmd], ev->verb);
		escape_into(out, (const unsigned char *)ev->arg, ev->arg_len);
		buf_printf(out, "]\n");
		break;
	case LMTP_EV_DATA_END:
		buf_printf(out, "END\n");
		break;
	case LMTP_EV_LINE_TOO_LONG:
		buf_printf(out, "TOOLONG\n");
		break;
	case LMTP_EV_BAD_LINE:
		buf_printf(out, "BAD %s\n", ev->error);
		break;
	default:
		break;
	}
}

/* Feeds input in chunks of `chunk` bytes like a session would (DATA switches
 * to data mode) and returns the transcript; "REST n" says how many bytes
 * stayed buffered at the end. */
static char *run_parser(const char *input, size_t len, size_t chunk, size_t line_max)
{
	struct lmtp_parser p;
	struct lmtp_event ev;
	struct buf in, out, data;
	size_t fed = 0;

	lmtp_parser_init(&p, line_max);
	buf_init(&in, 0);
	buf_init(&out, 0);
	buf_init(&data, 0);
	do {
		size_t n = MF_MIN(chunk, len - fed);

		buf_append(&in, input + fed, n);
		fed += n;
		for (;;) {
			lmtp_parser_next(&p, in.data, in.len, &ev);
			CHECK(ev.consumed <= in.len);
			record(&out, &data, &ev);
			if (ev.type == LMTP_EV_COMMAND && ev.cmd == LMTP_CMD_DATA)
				lmtp_parser_begin_data(&p);
			buf_consume(&in, ev.consumed);
			if (ev.type == LMTP_EV_NEED_MORE)
				break;
		}
		/* never more than line_max of an incomplete command line */
		if (!lmtp_parser_in_data(&p))
			CHECK(in.len < line_max);
	} while (fed < len);
	flush_data(&out, &data);
	buf_printf(&out, "REST %zu\n", in.len);
	buf_append(&out, "", 1);
	buf_free(&in);
	buf_free(&data);
	return (char *)out.data;
}

static void check_all_splits(const char *input, size_t len, size_t line_max, const char *expected)
{
	static const size_t chunks[] = { (size_t)-1, 1, 2, 3, 5, 7, 64 };
	size_t i;

	for (i = 0; i < MF_N_ELEMENTS(chunks); i++) {
		char *got = run_parser(input, len, chunks[i], line_max);

		CHECK_STR_EQ(got, expected);
		if (strcmp(got, expected) != 0)
			fprintf(stderr, "  (chunk size %zu)\n", chunks[i]);
		free(got);
	}
}

#define CHECK_PARSE(input, line_max, expected) \
	check_all_splits(input, sizeof(input) - 1, line_max, expected)

static void test_session_crlf(void)
{
	CHECK_PARSE("LHLO mx.example\r\nMAIL FROM:<a@b.example> SIZE=10\r\n"
		    "RCPT TO:<c@d.example>\r\nDATA\r\n"
		    "Subject: hi\r\n\r\n..dot\r\n.x\r\nbody\r\n.\r\nQUIT\r\n", 512,
		    "CMD LHLO/LHLO [mx.example]\n"
		    "CMD MAIL/MAIL [FROM:<a@b.example> SIZE=10]\n"
		    "CMD RCPT/RCPT [TO:<c@d.example>]\n"
		    "CMD DATA/DATA []\n"
		    "DATA Subject: hi\\n\\n.dot\\nx\\nbody\\n\n"
		    "END\n"
		    "CMD QUIT/QUIT []\n"
		    "REST 0\n");
}

static void test_session_lf(void)
{
	CHECK_PARSE("lhlo mx\nmail from:<a@b>\nrcpt to:<c@d>\ndata\n"
		    "A: b\n\n..\n.\nrset\n", 512,
		    "CMD LHLO/LHLO [mx]\n"
		    "CMD MAIL/MAIL [from:<a@b>]\n"
		    "CMD RCPT/RCPT [to:<c@d>]\n"
		    "CMD DATA/DATA []\n"
		    "DATA A: b\\n\\n.\\n\n"
		    "END\n"
		    "CMD RSET/RSET []\n"
		    "REST 0\n");
}

static void test_every_verb(void)
{
	CHECK_PARSE("LHLO a\r\nHELO a\r\nEHLO a\r\nMAIL x\r\nRCPT x\r\nRSET\r\n"
		    "NOOP\r\nQUIT\r\nVRFY u\r\nHELP\r\nStartTLS\r\nBDAT 10\r\n"
		    "\tnoop \t \r\n", 512,
		    "CMD LHLO/LHLO [a]\nCMD HELO/HELO [a]\nCMD EHLO/EHLO [a]\n"
		    "CMD MAIL/MAIL [x]\nCMD RCPT/RCPT [x]\nCMD RSET/RSET []\n"
		    "CMD NOOP/NOOP []\nCMD QUIT/QUIT []\nCMD VRFY/VRFY [u]\n"
		    "CMD HELP/HELP []\nCMD STARTTLS/STARTTLS []\nCMD ?/BDAT [10]\n"
		    "CMD ?/ [noop]\n"
		    "REST 0\n");
}

static void test_data_edge_cases(void)
{
	/* ".\rX" is not the end; bare CR kept; "\r\r\n" keeps one CR; ". " unstuffed */
	CHECK_PARSE("DATA\r\n.\rX\r\na\rb\r\nc\r\r\n. x\r\n...\r\n\r\n.\r\n", 512,
		    "CMD DATA/DATA []\n"
		    "DATA \\rX\\na\\rb\\nc\\r\\n x\\n..\\n\\n\n"
		    "END\n"
		    "REST 0\n");
	/* empty message */
	CHECK_PARSE("DATA\r\n.\r\nNOOP\r\n", 512,
		    "CMD DATA/DATA []\nEND\nCMD NOOP/NOOP []\nREST 0\n");
	/* NUL and 8-bit bytes pass through the data */
	CHECK_PARSE("DATA\r\na\0b\xff\r\n.\n", 512,
		    "CMD DATA/DATA []\nDATA a\\x00b\\xff\\n\nEND\nREST 0\n");
	/* "x.\r\n" and ".." at the start of the message */
	CHECK_PARSE("DATA\r\n..\r\nx.\r\n.\r\n", 512,
		    "CMD DATA/DATA []\nDATA .\\nx.\\n\nEND\nREST 0\n");
	/* unterminated data stays data: nothing buffered is lost */
	CHECK_PARSE("DATA\r\nabc\r\n.", 512,
		    "CMD DATA/DATA []\nDATA abc\\n\nREST 0\n");
}

static void test_dot_across_reads(void)
{
	/* byte-wise feeding already splits "\r\n." everywhere; check a long body
	 * with the terminator at every offset against a 64-byte read size */
	char input[300];
	char expected[600];
	size_t pre;

	for (pre = 0; pre < 70; pre++) {
		size_t n = 0, e;

		n += (size_t)sprintf(input + n, "DATA\r\n");
		memset(input + n, 'a', pre);
		n += pre;
		n += (size_t)sprintf(input + n, "\r\n.\r\nNOOP\r\n");
		e = (size_t)sprintf(expected, "CMD DATA/DATA []\nDATA ");
		memset(expected + e, 'a', pre);
		e += pre;
		sprintf(expected + e, "\\n\nEND\nCMD NOOP/NOOP []\nREST 0\n");
		check_all_splits(input, n, 512, expected);
	}
}

static void test_line_too_long(void)
{
	/* a line with its CRLF may be line_max (16) bytes */
	CHECK_PARSE("NOOP 123456789\r\nNOOP 1234567890\n", 16,
		    "CMD NOOP/NOOP [123456789]\nCMD NOOP/NOOP [1234567890]\nREST 0\n");
	CHECK_PARSE("NOOP 1234567890\r\nNOOP\r\n", 16,
		    "TOOLONG\nCMD NOOP/NOOP []\nREST 0\n");
	CHECK_PARSE("MAIL FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@b>\r\nRSET\r\n", 16,
		    "TOOLONG\nCMD RSET/RSET []\nREST 0\n");
	/* never ends: reported once, nothing kept */
	CHECK_PARSE("XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX", 16, "TOOLONG\nREST 0\n");
	/* an incomplete short line stays buffered */
	CHECK_PARSE("NOOP\r\nRSE", 16, "CMD NOOP/NOOP []\nREST 3\n");
	/* long lines are fine inside DATA */
	CHECK_PARSE("DATA\r\n0123456789012345678901234567890123456789\r\n.\r\n", 16,
		    "CMD DATA/DATA []\nDATA 0123456789012345678901234567890123456789\\n\n"
		    "END\nREST 0\n");
}

static void test_garbage(void)
{
	CHECK_PARSE("\r\n\x01\x02\r\nNO\0OP\r\n\xc3\xa9t\xc3\xa9\r\nNOOP \xc3\xa9\r\n"
		    "AAAAAAAAAAAAAAAAAAAAAAAA x\r\n\x7f\r\nNOOP a\rb\r\n", 512,
		    "BAD Empty command line\n"
		    "BAD Control character in command line\n"
		    "BAD NUL byte in command line\n"
		    "CMD ?/ []\n"
		    "CMD NOOP/NOOP [\\xc3\\xa9]\n"
		    "CMD ?/ [x]\n"
		    "BAD Control character in command line\n"
		    "BAD Control character in command line\n"
		    "REST 0\n");
}

static void test_reset(void)
{
	struct lmtp_parser p;
	struct lmtp_event ev;

	lmtp_parser_init(&p, 16);
	lmtp_parser_begin_data(&p);
	CHECK(lmtp_parser_in_data(&p));
	lmtp_parser_next(&p, (const unsigned char *)"ab", 2, &ev);
	CHECK_INT_EQ(ev.type, LMTP_EV_DATA);
	lmtp_parser_reset(&p);
	CHECK(!lmtp_parser_in_data(&p));
	lmtp_parser_next(&p, (const unsigned char *)"NOOP\n", 5, &ev);
	CHECK_INT_EQ(ev.type, LMTP_EV_COMMAND);
	CHECK_INT_EQ(ev.cmd, LMTP_CMD_NOOP);
	CHECK_INT_EQ(ev.consumed, 5);
	lmtp_parser_next(&p, (const unsigned char *)"", 0, &ev);
	CHECK_INT_EQ(ev.type, LMTP_EV_NEED_MORE);
	CHECK_INT_EQ(ev.consumed, 0);
	/* a connection whose input buffer was never allocated passes NULL */
	lmtp_parser_next(&p, NULL, 0, &ev);
	CHECK_INT_EQ(ev.type, LMTP_EV_NEED_MORE);
	lmtp_parser_begin_data(&p);
	lmtp_parser_next(&p, NULL, 0, &ev);
	CHECK_INT_EQ(ev.type, LMTP_EV_NEED_MORE);
}

static enum lmtp_arg_result mail(const char *arg, struct lmtp_mail_args *a)
{
	const char *error = NULL;
	enum lmtp_arg_result r = lmtp_parse_mail(arg, strlen(arg), a, &error);

	if (r != LMTP_ARG_OK)
		CHECK(error != NULL);
	return r;
}

static enum lmtp_arg_result rcpt(const char *arg, struct lmtp_path *path)
{
	const char *error = NULL;
	enum lmtp_arg_result r = lmtp_parse_rcpt(arg, strlen(arg), path, &error);

	if (r != LMTP_ARG_OK)
		CHECK(error != NULL);
	return r;
}

static void test_mail_args(void)
{
	struct lmtp_mail_args a;

	CHECK_INT_EQ(mail("FROM:<a@b.example>", &a), LMTP_ARG_OK);
	CHECK_STR_EQ(a.path.address, "a@b.example");
	CHECK_STR_EQ(a.path.localpart, "a");
	CHECK_STR_EQ(a.path.domain, "b.example");
	CHECK(!a.size_given);
	CHECK_INT_EQ(a.body, LMTP_BODY_NONE);

	CHECK_INT_EQ(mail("from:<>", &a), LMTP_ARG_OK);
	CHECK_STR_EQ(a.path.address, "");
	CHECK_INT_EQ(mail("FROM: <x@y>", &a), LMTP_ARG_OK);
	CHECK_STR_EQ(a.path.address, "x@y");
	CHECK_INT_EQ(mail("FROM:<a@b> SIZE=1000 BODY=8BITMIME", &a), LMTP_ARG_OK);
	CHECK(a.size_given);
	CHECK_INT_EQ(a.size, 1000);
	CHECK_INT_EQ(a.body, LMTP_BODY_8BITMIME);
	CHECK_INT_EQ(mail("FROM:<a@b>  body=7bit  size=0", &a), LMTP_ARG_OK);
	CHECK_INT_EQ(a.body, LMTP_BODY_7BIT);
	CHECK(a.size_given);
	CHECK_INT_EQ(a.size, 0);
	CHECK_INT_EQ(mail("FROM:<a@b> SIZE=99999999999999999999", &a), LMTP_ARG_OK);
	CHECK(a.size == UINT64_MAX);

	CHECK_INT_EQ(mail("FROM:<a@b> SIZE=999999999999999999999", &a), LMTP_ARG_PARAM_INVALID);
	CHECK_INT_EQ(mail("FROM:<a@b> SIZE=12k", &a), LMTP_ARG_PARAM_INVALID);
	CHECK_INT_EQ(mail("FROM:<a@b> SIZE", &a), LMTP_ARG_PARAM_INVALID);
	CHECK_INT_EQ(mail("FROM:<a@b> SIZE=1 SIZE=2", &a), LMTP_ARG_PARAM_INVALID);
	CHECK_INT_EQ(mail("FROM:<a@b> BODY=BINARYMIME", &a), LMTP_ARG_PARAM_INVALID);
	CHECK_INT_EQ(mail("FROM:<a@b> FOO=bar", &a), LMTP_ARG_PARAM_UNKNOWN);
	CHECK_INT_EQ(mail("FROM:<a@b> SMTPUTF8", &a), LMTP_ARG_PARAM_UNKNOWN);
	CHECK_INT_EQ(mail("FROM:<a@b> SIZE=", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:<a@b> =x", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:<a@b>x", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:a@b", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM<a@b>", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("TO:<a@b>", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:<a@b", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:<a>", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:<postmaster>", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:<a b@c>", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:<\xc3\xa9@c>", &a), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(mail("FROM:<a@b> A=1 B=2 C=3 D=4 E=5 F=6 G=7 H=8 I=9 J=10 K=11 L=12 "
			  "M=13 N=14 O=15 P=16 Q=17", &a), LMTP_ARG_SYNTAX);
}

static void test_paths(void)
{
	struct lmtp_path p;
	char big[400];

	CHECK_INT_EQ(rcpt("TO:<@relay.example,@r2.example:u@d.example>", &p), LMTP_ARG_OK);
	CHECK_STR_EQ(p.address, "u@d.example");
	CHECK_INT_EQ(rcpt("TO:<\"john doe\"@d>", &p), LMTP_ARG_OK);
	CHECK_STR_EQ(p.localpart, "john doe");
	CHECK_STR_EQ(p.address, "\"john doe\"@d");
	CHECK_INT_EQ(rcpt("TO:<\"john\"@d>", &p), LMTP_ARG_OK);
	CHECK_STR_EQ(p.address, "john@d");
	CHECK_INT_EQ(rcpt("TO:<\"a\\\"b\"@d>", &p), LMTP_ARG_OK);
	CHECK_STR_EQ(p.localpart, "a\"b");
	CHECK_INT_EQ(rcpt("TO:<user+Sent@Example.TEST>", &p), LMTP_ARG_OK);
	CHECK_STR_EQ(p.address, "user+Sent@Example.TEST");
	CHECK_INT_EQ(rcpt("TO:<a@[192.0.2.1]>", &p), LMTP_ARG_OK);
	CHECK_STR_EQ(p.domain, "[192.0.2.1]");
	CHECK_INT_EQ(rcpt("TO:<Postmaster>", &p), LMTP_ARG_OK);
	CHECK_STR_EQ(p.address, "Postmaster");
	CHECK_STR_EQ(p.domain, "");
	CHECK_INT_EQ(rcpt("TO:<a-b_c.d@sub-1.x_y.example>", &p), LMTP_ARG_OK);

	CHECK_INT_EQ(rcpt("TO:<>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<bob>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<\"postmaster\">", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<a@>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<a@-x>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<a@x-.y>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<a@x..y>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<a@x.>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<a@[]>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<a@b/c>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<\"unterminated@d>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<@relay:>", &p), LMTP_ARG_SYNTAX);
	CHECK_INT_EQ(rcpt("TO:<a@b> NOTIFY=NEVER", &p), LMTP_ARG_PARAM_UNKNOWN);

	/* local part 64 ok, 65 not; the whole path at most 256 */
	sprintf(big, "TO:<%064d@d>", 0);
	CHECK_INT_EQ(rcpt(big, &p), LMTP_ARG_OK);
	sprintf(big, "TO:<%065d@d>", 0);
	CHECK_INT_EQ(rcpt(big, &p), LMTP_ARG_SYNTAX);
	sprintf(big, "TO:<a@%0250d.x>", 0);
	CHECK_INT_EQ(rcpt(big, &p), LMTP_ARG_OK);
	sprintf(big, "TO:<abcdef@%0250d.x>", 0);
	CHECK_INT_EQ(rcpt(big, &p), LMTP_ARG_SYNTAX);
}

static void test_message_id(void)
{
	char id[32];
	const char *m1 = "From: a@b\r\nMessage-ID: <abc@def.example>\r\n\r\nbody\r\n";
	const char *m2 = "Subject: x\nMessage-Id:\n  <folded@x>\n\nMessage-ID: <no@x>\n";
	const char *m3 = "Subject: x\n\nMessage-ID: <body@x>\n";
	const char *m4 = "message-id: <a\x01" "b\xff@x> trailing\n";
	const char *m5 = "Message-ID: <0123456789012345678901234567890123456789>\n";

	CHECK(lmtp_find_message_id((const unsigned char *)m1, strlen(m1), id, sizeof(id)));
	CHECK_STR_EQ(id, "<abc@def.example>");
	CHECK(lmtp_find_message_id((const unsigned char *)m2, strlen(m2), id, sizeof(id)));
	CHECK_STR_EQ(id, "<folded@x>");
	CHECK(!lmtp_find_message_id((const unsigned char *)m3, strlen(m3), id, sizeof(id)));
	CHECK_STR_EQ(id, "");
	CHECK(lmtp_find_message_id((const unsigned char *)m4, strlen(m4), id, sizeof(id)));
	CHECK_STR_EQ(id, "<a?b?@x>trailing");
	CHECK(lmtp_find_message_id((const unsigned char *)m5, strlen(m5), id, sizeof(id)));
	CHECK_INT_EQ(strlen(id), sizeof(id) - 1);
	CHECK(!lmtp_find_message_id((const unsigned char *)"", 0, id, sizeof(id)));
}

int main(void)
{
	test_run(test_session_crlf);
	test_run(test_session_lf);
	test_run(test_every_verb);
	test_run(test_data_edge_cases);
	test_run(test_dot_across_reads);
	test_run(test_line_too_long);
	test_run(test_garbage);
	test_run(test_reset);
	test_run(test_mail_args);
	test_run(test_paths);
	test_run(test_message_id);
	return test_exit();
}
