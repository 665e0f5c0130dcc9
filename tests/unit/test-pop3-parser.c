/* test-pop3-parser.c: the POP3 input parser (fed whole and one byte at a
 * time, which must give the same events), SASL PLAIN decoding, UIDL
 * formats, CRLF sizes, TOP lengths and the wire conversion of messages
 * (whole and in tiny output pieces). */
#include "pop3d/pop3-parser.h"
#include "lib/sasl.h"
#include "pop3d/pop3-msg.h"
#include "lib/buf.h"
#include "tests/unit/test.h"

#include <stdio.h>

TEST_DEFINE_GLOBALS

/* Feeds input with the given read size; writes one transcript line per
 * event: "C VERB argc|arg|arg|rest", "R line", "L", "B error". */
static void transcript(const char *input, size_t len, size_t chunk, size_t line_max,
		       bool response_after_auth, char *out, size_t out_size)
{
	struct pop3_parser p;
	struct pop3_event ev;
	struct buf in;
	size_t fed = 0, o = 0;

	pop3_parser_init(&p, line_max);
	buf_init(&in, 0);
	out[0] = '\0';
	for (;;) {
		pop3_parser_next(&p, in.data, in.len, &ev);
		CHECK(ev.consumed <= in.len);
		if (ev.type == POP3_EV_COMMAND) {
			o += (size_t)snprintf(out + o, out_size - o, "C %s %u", ev.verb, ev.argc);
			for (unsigned i = 0; i < ev.argc; i++)
				o += (size_t)snprintf(out + o, out_size - o, "|%.*s", (int)ev.args[i].len, ev.args[i].s);
			o += (size_t)snprintf(out + o, out_size - o, "|%.*s\n", (int)ev.rest_len, ev.rest);
			if (response_after_auth && ev.cmd == POP3_CMD_AUTH && ev.argc == 1)
				pop3_parser_expect_response(&p);
		} else if (ev.type == POP3_EV_RESPONSE) {
			o += (size_t)snprintf(out + o, out_size - o, "R %.*s\n", (int)ev.line_len, ev.line);
		} else if (ev.type == POP3_EV_LINE_TOO_LONG) {
			o += (size_t)snprintf(out + o, out_size - o, "L\n");
		} else if (ev.type == POP3_EV_BAD_LINE) {
			o += (size_t)snprintf(out + o, out_size - o, "B %s\n", ev.error);
		}
		buf_consume(&in, ev.consumed);
		CHECK(in.len <= line_max);
		if (ev.type == POP3_EV_NEED_MORE) {
			if (fed == len)
				break;
			size_t n = MF_MIN(chunk, len - fed);
			buf_append(&in, input + fed, n);
			fed += n;
		}
	}
	buf_free(&in);
}

static void check_both_ways(const char *input, size_t line_max, bool resp, const char *expect)
{
	char whole[4096], bytewise[4096];

	transcript(input, strlen(input), strlen(input) + 1, line_max, resp, whole, sizeof(whole));
	transcript(input, strlen(input), 1, line_max, resp, bytewise, sizeof(bytewise));
	CHECK_STR_EQ(whole, expect);
	CHECK_STR_EQ(bytewise, expect);
}

static void test_commands(void)
{
	check_both_ways("USER alice@example.test\r\nPASS my secret pw \r\nstat\r\nlist 3\r\n"
			"TOP 1 10\r\nuidl\nQUIT\r\n", 512, false,
			"C USER 1|alice@example.test|alice@example.test\n"
			"C PASS 0|my secret pw \n"
			"C STAT 0|\n"
			"C LIST 1|3|3\n"
			"C TOP 2|1|10|1 10\n"
			"C UIDL 0|\n"
			"C QUIT 0|\n");
	/* unknown keywords keep a verb only when it is clean */
	check_both_ways("XYZZY 1\r\nFOO\x01\r\n\r\n  \r\n", 512, false,
			"C XYZZY 1|1|1\n"
			"B Control character in command line\n"
			"B Empty command line\n"
			"B Empty command line\n");
	check_both_ways("LIST 1 2 3 4 5\r\nNOOP\r\n", 512, false,
			"B Too many arguments\n"
			"C NOOP 0|\n");
}

static void test_too_many_args(void)
{
	struct pop3_parser p;
	struct pop3_event ev;
	const char *line = "LIST 1 2 3 4 5\r\n";

	pop3_parser_init(&p, 512);
	pop3_parser_next(&p, (const unsigned char *)line, strlen(line), &ev);
	CHECK_INT_EQ(ev.type, POP3_EV_BAD_LINE);
	CHECK_STR_EQ(ev.error, "Too many arguments");
	CHECK_INT_EQ(ev.consumed, strlen(line));
}

static void test_nul(void)
{
	struct pop3_parser p;
	struct pop3_event ev;
	const unsigned char line[] = "NO\0OP\r\n";

	pop3_parser_init(&p, 512);
	pop3_parser_next(&p, line, sizeof(line) - 1, &ev);
	CHECK_INT_EQ(ev.type, POP3_EV_BAD_LINE);
	CHECK_STR_EQ(ev.error, "NUL byte in command line");
}

static void test_line_limit(void)
{
	char input[300];

	memset(input, 'A', 100);
	memcpy(input + 100, "\r\nNOOP\r\n", 9);
	/* 16-byte limit: one LINE_TOO_LONG, the rest skipped, then NOOP */
	check_both_ways(input, 16, false, "L\nC NOOP 0|\n");
	/* a line of exactly the limit (with CRLF) is fine */
	check_both_ways("NOOP 12345\r\n", 12, false, "C NOOP 1|12345|12345\n");
	check_both_ways("NOOP 123456\r\nQUIT\r\n", 12, false, "L\nC QUIT 0|\n");
}

static void test_sasl_response(void)
{
	check_both_ways("AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nAUTH PLAIN\r\n*\r\nNOOP\r\n", 512, true,
			"C AUTH 1|PLAIN|PLAIN\n"
			"R AGFsaWNlAHNlY3JldA==\n"
			"C AUTH 1|PLAIN|PLAIN\n"
			"R *\n"
			"C NOOP 0|\n");
	/* an empty response is a response, not a bad command */
	check_both_ways("AUTH PLAIN\r\n\r\n", 512, true, "C AUTH 1|PLAIN|PLAIN\nR \n");
}

static void test_numbers(void)
{
	uint32_t n;
	struct pop3_arg a;

	a = (struct pop3_arg){ "42", 2 };
	CHECK(pop3_parse_number(&a, &n) && n == 42);
	a = (struct pop3_arg){ "4294967295", 10 };
	CHECK(pop3_parse_number(&a, &n) && n == 4294967295U);
	a = (struct pop3_arg){ "4294967296", 10 };
	CHECK(!pop3_parse_number(&a, &n));
	a = (struct pop3_arg){ "-1", 2 };
	CHECK(!pop3_parse_number(&a, &n));
	a = (struct pop3_arg){ "+1", 2 };
	CHECK(!pop3_parse_number(&a, &n));
	a = (struct pop3_arg){ "1a", 2 };
	CHECK(!pop3_parse_number(&a, &n));
	a = (struct pop3_arg){ "", 0 };
	CHECK(!pop3_parse_number(&a, &n));
}

static void test_sasl_plain(void)
{
	char z[SASL_ID_MAX + 1], c[SASL_ID_MAX + 1], p[SASL_PASS_MAX + 1];
	const char *error;

	/* "\0alice\0secret" */
	CHECK_INT_EQ(sasl_plain_decode("AGFsaWNlAHNlY3JldA==", 20, z, c, p, &error), 0);
	CHECK_STR_EQ(z, "");
	CHECK_STR_EQ(c, "alice");
	CHECK_STR_EQ(p, "secret");
	/* "bob\0bob\0pw" */
	CHECK_INT_EQ(sasl_plain_decode("Ym9iAGJvYgBwdw==", 16, z, c, p, &error), 0);
	CHECK_STR_EQ(z, "bob");
	CHECK_STR_EQ(p, "pw");
	CHECK_INT_EQ(sasl_plain_decode("AGFsaWNl", 8, z, c, p, &error), -1);   /* one NUL */
	CHECK_INT_EQ(sasl_plain_decode("AGFsaWNlAHNlY3JldA=", 19, z, c, p, &error), -1);
	CHECK_INT_EQ(sasl_plain_decode("AGFs!WNlAHNlY3JldA==", 20, z, c, p, &error), -1);
	CHECK_INT_EQ(sasl_plain_decode("=", 1, z, c, p, &error), -1);
	CHECK_INT_EQ(sasl_plain_decode("AABzZWNyZXQ=", 12, z, c, p, &error), -1); /* no authcid */
	CHECK_INT_EQ(sasl_plain_decode("AGFsaWNlAA==", 12, z, c, p, &error), -1); /* no password */
}

static void test_uidl_format(void)
{
	struct pop3_uidl_vars v = { .uid = 42, .uid_validity = 1700000000,
				    .basename = "1700000000.M1P2.host,S=10", .basename_len = 25 };
	char out[POP3_UIDL_MAX + 1];
	const char *error;

	CHECK_INT_EQ(pop3_uidl_format_check(POP3_UIDL_FORMAT_DEFAULT, &error), 0);
	CHECK_INT_EQ(pop3_uidl_expand(POP3_UIDL_FORMAT_DEFAULT, &v, out), 16);
	CHECK_STR_EQ(out, "0000002a6553f100");
	pop3_uidl_expand("%v.%u", &v, out);
	CHECK_STR_EQ(out, "1700000000.42");
	pop3_uidl_expand("%{uidvalidity}-%{uid}%%", &v, out);
	CHECK_STR_EQ(out, "1700000000-42%");
	pop3_uidl_expand("%XUu-%4v", &v, out);
	CHECK_STR_EQ(out, "2A-1700");
	pop3_uidl_expand("%f", &v, out);
	CHECK_STR_EQ(out, "1700000000.M1P2.host,S=10");
	pop3_uidl_expand("%Uf", &v, out);
	CHECK_STR_EQ(out, "1700000000.M1P2.HOST,S=10");
	pop3_uidl_expand("%Lu-%Xv-%04u", &v, out);
	CHECK_STR_EQ(out, "42-6553f100-0042");
	v.uid = 4294967295U;
	pop3_uidl_expand(POP3_UIDL_FORMAT_DEFAULT, &v, out);
	CHECK_STR_EQ(out, "ffffffff6553f100");
	v.uid = 42;
	CHECK_INT_EQ(pop3_uidl_format_check("%v", &error), -1);    /* not unique */
	CHECK_INT_EQ(pop3_uidl_format_check("%m", &error), -1);    /* unknown */
	CHECK_INT_EQ(pop3_uidl_format_check("%{nope}", &error), -1);
	CHECK_INT_EQ(pop3_uidl_format_check("%Qu", &error), -1);
	CHECK_INT_EQ(pop3_uidl_format_check("", &error), -1);
	/* spaces never reach the client */
	pop3_uidl_expand("a b%u", &v, out);
	CHECK_STR_EQ(out, "a_b42");
}

static void test_sizes(void)
{
	const char *m = "A: b\n\nline1\r\nline2\n";
	const unsigned char *u = (const unsigned char *)m;

	CHECK_INT_EQ(pop3_crlf_size(u, strlen(m)), strlen(m) + 3);
	CHECK_INT_EQ(pop3_crlf_size(u, 0), 0);
	CHECK_INT_EQ(pop3_top_length(u, strlen(m), 0), 6);
	CHECK_INT_EQ(pop3_top_length(u, strlen(m), 1), 13);
	CHECK_INT_EQ(pop3_top_length(u, strlen(m), 99), strlen(m));
	/* no blank line: everything is header */
	CHECK_INT_EQ(pop3_top_length((const unsigned char *)"A: b\nC: d", 9, 0), 9);
}

static void wire(const char *msg, size_t out_max, char *out, size_t out_size)
{
	struct pop3_msg_stream st;
	unsigned char piece[256];
	size_t o = 0, w;
	bool done = false;
	int guard = 0;

	pop3_msg_stream_init(&st, (const unsigned char *)msg, strlen(msg));
	while (!done && guard++ < 10000) {
		done = pop3_msg_stream_run(&st, piece, out_max, &w);
		CHECK(w <= out_max);
		memcpy(out + o, piece, w);
		o += w;
	}
	CHECK(done);
	out[o] = '\0';
	CHECK(o < out_size);
}

static void test_wire(void)
{
	static const char *const cases[][2] = {
		{ "Subject: x\n\n.hidden\nbody\n", "Subject: x\r\n\r\n..hidden\r\nbody\r\n.\r\n" },
		{ "a\r\nb\n.\n", "a\r\nb\r\n..\r\n.\r\n" },
		{ "no final newline", "no final newline\r\n.\r\n" },
		{ "", ".\r\n" },
		{ "..x\n", "...x\r\n.\r\n" },
		{ "cr\ronly\n", "cr\ronly\r\n.\r\n" },
	};
	char out[512];
	size_t sizes[] = { 16, 17, 20, 255 };

	for (size_t i = 0; i < MF_N_ELEMENTS(cases); i++) {
		for (size_t k = 0; k < MF_N_ELEMENTS(sizes); k++) {
			wire(cases[i][0], sizes[k], out, sizeof(out));
			CHECK_STR_EQ(out, cases[i][1]);
		}
		/* the announced size is the wire size minus the terminator */
		size_t body = strlen(cases[i][1]) - 3;
		size_t in_len = strlen(cases[i][0]);
		uint64_t dots = 0;
		for (size_t j = 0; j < in_len; j++)
			dots += cases[i][0][j] == '.' && (j == 0 || cases[i][0][j - 1] == '\n');
		bool ends_lf = in_len == 0 || cases[i][0][in_len - 1] == '\n';
		CHECK_INT_EQ(pop3_crlf_size((const unsigned char *)cases[i][0], in_len) + dots + (ends_lf ? 0 : 2), body);
	}
}

static void test_wire_long_line(void)
{
	char msg[1000], out[1200], expect[1200];

	memset(msg, 'x', 998);
	msg[0] = '.';
	msg[998] = '\n';
	msg[999] = '\0';
	snprintf(expect, sizeof(expect), ".%.*s\r\n.\r\n", 998, msg);
	wire(msg, 16, out, sizeof(out));
	CHECK_STR_EQ(out, expect);
}

int main(void)
{
	test_run(test_commands);
	test_run(test_too_many_args);
	test_run(test_nul);
	test_run(test_line_limit);
	test_run(test_sasl_response);
	test_run(test_numbers);
	test_run(test_sasl_plain);
	test_run(test_uidl_format);
	test_run(test_sizes);
	test_run(test_wire);
	test_run(test_wire_long_line);
	return test_exit();
}
