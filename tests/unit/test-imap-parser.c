/* test-imap-parser.c: the IMAP command parser. Every input is fed in one
 * piece, one byte at a time and in 7-byte pieces; the three event transcripts
 * must be identical and equal to the expected one. */
#include "imapd/imap-parser.h"
#include "lib/buf.h"
#include "tests/unit/test.h"

TEST_DEFINE_GLOBALS

enum decision { DECIDE_ACCEPT, DECIDE_STREAM, DECIDE_REJECT };

static void render_args(struct buf *out, const struct imap_arg *args)
{
	for (const struct imap_arg *a = args; a->type != IMAP_ARG_EOL; a++) {
		if (a != args)
			buf_append(out, " ", 1);
		switch (a->type) {
		case IMAP_ARG_NIL:
			buf_printf(out, "NIL");
			break;
		case IMAP_ARG_ATOM:
			buf_printf(out, "%s", a->str);
			break;
		case IMAP_ARG_STRING:
			buf_printf(out, "\"%s\"", a->str);
			break;
		case IMAP_ARG_LITERAL:
			buf_printf(out, "%s{%zu%s}", a->literal8 ? "~" : "", a->len,
				   a->nonsync ? "+" : "");
			buf_append(out, a->str, a->len);
			break;
		case IMAP_ARG_LITERAL_STREAMED:
			buf_printf(out, "{%zu*}", a->len);
			break;
		case IMAP_ARG_LIST:
			buf_append(out, "(", 1);
			render_args(out, a->list);
			buf_append(out, ")", 1);
			break;
		case IMAP_ARG_EOL:
			break;
		}
	}
}

static void render_command(struct buf *out, const struct imap_command *cmd)
{
	buf_printf(out, "[%s %s", cmd->tag, cmd->name);
	if (cmd->arg_count > 0) {
		buf_append(out, " ", 1);
		render_args(out, cmd->args);
	}
	buf_append(out, "]", 1);
}

static void handle_event(struct imap_parser *p, enum imap_parse_result r,
			 enum decision decide, struct buf *out, struct buf *stream)
{
	const struct imap_literal_info *li;
	const void *chunk;
	const char *err;
	size_t len;
	bool last, fatal;
	enum imap_parse_error code;

	switch (r) {
	case IMAP_PARSE_COMMAND:
		render_command(out, imap_parser_command(p));
		break;
	case IMAP_PARSE_CONTINUATION:
		buf_printf(out, "+");
		break;
	case IMAP_PARSE_LITERAL:
		li = imap_parser_literal_info(p);
		buf_printf(out, "<lit %llu%s %s>", (unsigned long long)li->size,
			   li->sync ? "" : "+", imap_parser_command(p)->name);
		if (decide == DECIDE_ACCEPT) {
			if (imap_parser_literal_accept(p, &err) < 0)
				buf_printf(out, "<refused>");
			else if (li->sync)
				buf_printf(out, "+");
		} else if (decide == DECIDE_STREAM) {
			if (imap_parser_literal_stream(p, &err) < 0)
				buf_printf(out, "<nostream %s>", err);
			else if (li->sync)
				buf_printf(out, "+");
		} else {
			buf_printf(out, "<reject %s%s>", imap_parser_tag(p),
				   imap_parser_literal_reject(p) ? " close" : "");
		}
		break;
	case IMAP_PARSE_LITERAL_DATA:
		imap_parser_literal_chunk(p, &chunk, &len, &last);
		buf_append(stream, chunk, len);
		if (last) {
			buf_printf(out, "<data ");
			buf_append(out, stream->data, stream->len);
			buf_printf(out, ">");
			buf_reset(stream);
		}
		break;
	case IMAP_PARSE_LINE:
		buf_printf(out, "<line %s>", imap_parser_line(p, &len));
		break;
	case IMAP_PARSE_ERROR:
		err = imap_parser_error(p, &code, &fatal);
		buf_printf(out, "<err %d %s%s%s>", (int)code,
			   imap_parser_tag(p) != NULL ? imap_parser_tag(p) : "*", err,
			   fatal ? " FATAL" : "");
		break;
	case IMAP_PARSE_NEED_MORE:
		break;
	}
}

/* Feeds input in pieces of `step` bytes (0 = all at once). "\x01" in the
   input is not sent: it asks for raw-line mode before the next command. */
static char *run(const struct imap_parser_limits *limits, const char *input,
		 size_t input_len, size_t step, enum decision decide)
{
	struct imap_parser *p = imap_parser_create(limits);
	struct buf out, stream;
	size_t pos = 0;
	bool dead = false;
	char *ret;

	buf_init(&out, 0);
	buf_init(&stream, 0);
	while (pos < input_len && !dead) {
		size_t piece = step == 0 ? input_len - pos : MF_MIN(step, input_len - pos);
		const char *mark = memchr(input + pos, '\x01', piece);
		if (mark == input + pos) {
			imap_parser_read_line(p);
			pos++;
			continue;
		}
		if (mark != NULL)
			piece = (size_t)(mark - (input + pos));
		size_t used_total = 0;
		for (;;) {
			size_t used;
			enum imap_parse_result r = imap_parser_parse(p, input + pos + used_total,
				piece - used_total, &used);
			used_total += used;
			handle_event(p, r, decide, &out, &stream);
			if (r == IMAP_PARSE_ERROR && imap_parser_error(p, NULL, &dead) && dead)
				break;
			if (r == IMAP_PARSE_NEED_MORE)
				break;
		}
		pos += used_total;
	}
	buf_append(&out, "", 1);
	ret = mf_strdup((const char *)out.data);
	buf_free(&out);
	buf_free(&stream);
	imap_parser_destroy(&p);
	CHECK(p == NULL);
	return ret;
}

static void expect_len(const struct imap_parser_limits *limits, const char *input,
		       size_t len, enum decision decide, const char *expected, int line)
{
	char *whole = run(limits, input, len, 0, decide);
	char *bytes = run(limits, input, len, 1, decide);
	char *sevens = run(limits, input, len, 7, decide);

	test_checks++;
	if (strcmp(whole, expected) != 0)
		TEST_FAIL_AT(__FILE__, line, "whole:\n  got  %s\n  want %s", whole, expected);
	test_checks++;
	if (strcmp(bytes, whole) != 0)
		TEST_FAIL_AT(__FILE__, line, "bytewise:\n  got  %s\n  whole %s", bytes, whole);
	test_checks++;
	if (strcmp(sevens, whole) != 0)
		TEST_FAIL_AT(__FILE__, line, "7-byte:\n  got  %s\n  whole %s", sevens, whole);
	free(whole);
	free(bytes);
	free(sevens);
}

#define EXPECT(input, expected) \
	expect_len(NULL, input, strlen(input), DECIDE_ACCEPT, expected, __LINE__)
#define EXPECT_L(limits, input, decide, expected) \
	expect_len(limits, input, strlen(input), decide, expected, __LINE__)

static void test_simple(void)
{
	EXPECT("a1 NOOP\r\n", "[a1 NOOP]");
	EXPECT("a1 noop\n", "[a1 NOOP]");
	EXPECT("\r\n\r\nA.1 CAPABILITY\r\n", "[A.1 CAPABILITY]");
	EXPECT("a LOGIN user \"pa ss\\\"w\\\\\"\r\n", "[a LOGIN user \"pa ss\"w\\\"]");
	EXPECT("a LOGIN {4}\r\nuser {3+}\r\npwd\r\n", "+[a LOGIN {4}user {3+}pwd]");
	EXPECT("x1 SELECT INBOX (CONDSTORE)\r\n", "[x1 SELECT INBOX (CONDSTORE)]");
	EXPECT("a ENABLE QRESYNC CONDSTORE IMAP4rev2\r\n",
	       "[a ENABLE QRESYNC CONDSTORE IMAP4rev2]");
	EXPECT("a ID (\"name\" \"Thunderbird\" \"version\" NIL)\r\n",
	       "[a ID (\"name\" \"Thunderbird\" \"version\" NIL)]");
	EXPECT("a ID NIL\r\n", "[a ID NIL]");
	EXPECT("a NOOP \r\n", "[a NOOP]");
	EXPECT("a] NOOP\r\n", "[a] NOOP]");
}

static void test_more_commands(void)
{
	EXPECT("a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))\r\n",
	       "[a SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))]");
	EXPECT("a EXAMINE \"Sent Items\"\r\n", "[a EXAMINE \"Sent Items\"]");
	EXPECT("a UID MOVE 42:69 foo\r\n", "[a UID MOVE 42:69 foo]");
	EXPECT("a COPY 2:4 MEETING\r\n", "[a COPY 2:4 MEETING]");
	EXPECT("a GETQUOTAROOT INBOX\r\n", "[a GETQUOTAROOT INBOX]");
	EXPECT("a COMPRESS DEFLATE\r\n", "[a COMPRESS DEFLATE]");
	EXPECT("a NAMESPACE\r\na UNSELECT\r\na CLOSE\r\na EXPUNGE\r\na STARTTLS\r\n",
	       "[a NAMESPACE][a UNSELECT][a CLOSE][a EXPUNGE][a STARTTLS]");
	EXPECT("a SUBSCRIBE #news.comp.mail.misc\r\n", "[a SUBSCRIBE #news.comp.mail.misc]");
	EXPECT("a DELETE {5+}\r\nfoo\"]\r\n", "[a DELETE {5+}foo\"]]");
	EXPECT("a SEARCH MODSEQ \"/flags/\\\\draft\" all 620162338\r\n",
	       "[a SEARCH MODSEQ \"/flags/\\draft\" all 620162338]");
	EXPECT("a APPEND x CATENATE (URL \"/INBOX;UID=20\" TEXT {5}\r\nhello)\r\n",
	       "+[a APPEND x CATENATE (URL \"/INBOX;UID=20\" TEXT {5}hello)]");
	EXPECT("a AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=\r\n",
	       "[a AUTHENTICATE PLAIN dXNlcgB1c2VyAHBhc3M=]");
	EXPECT("a AUTHENTICATE PLAIN =\r\n", "[a AUTHENTICATE PLAIN =]");
	EXPECT("a FETCH 1 (BODY[]<0.2048> MODSEQ X-GM-MSGID)\r\n",
	       "[a FETCH 1 (BODY[]<0.2048> MODSEQ X-GM-MSGID)]");
	EXPECT("a STORE $ +FLAGS (\\Answered)\r\n", "[a STORE $ +FLAGS (\\Answered)]");
	EXPECT("a GETMETADATA \"\" /shared/comment\r\n",
	       "[a GETMETADATA \"\" /shared/comment]");
}

static void test_pipelining(void)
{
	EXPECT("1 NOOP\r\n2 CHECK\r\n3 LOGOUT\r\n", "[1 NOOP][2 CHECK][3 LOGOUT]");
	EXPECT("1 LOGIN a {1+}\r\nb\r\n2 NOOP\r\n", "[1 LOGIN a {1+}b][2 NOOP]");
}

static void test_uid(void)
{
	EXPECT("a uid fetch 1:* (FLAGS)\r\n", "[a UID FETCH 1:* (FLAGS)]");
	EXPECT("a UID EXPUNGE 3:5,7\r\n", "[a UID EXPUNGE 3:5,7]");
	EXPECT("a UID\r\n", "[a UID]");
	EXPECT("a UID STORE 1 +FLAGS.SILENT (\\Seen $Junk)\r\n",
	       "[a UID STORE 1 +FLAGS.SILENT (\\Seen $Junk)]");
}

static void test_fetch(void)
{
	EXPECT("a FETCH 1:4 (UID BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100>)\r\n",
	       "[a FETCH 1:4 (UID BODY.PEEK[HEADER.FIELDS (From Subject)]<0.100>)]");
	EXPECT("a FETCH 1 BODY[1.2.MIME]\r\n", "[a FETCH 1 BODY[1.2.MIME]]");
	EXPECT("a FETCH 1 (BODY[] BINARY.PEEK[1]<5.10> RFC822.SIZE)\r\n",
	       "[a FETCH 1 (BODY[] BINARY.PEEK[1]<5.10> RFC822.SIZE)]");
	EXPECT("a FETCH 1 BODY[HEADER.FIELDS.NOT (\"X-A]\" B)]\r\n",
	       "[a FETCH 1 BODY[HEADER.FIELDS.NOT (\"X-A]\" B)]]");
	EXPECT("a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)\r\n",
	       "[a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345 VANISHED)]");
	EXPECT("a FETCH 1 ALL\r\n", "[a FETCH 1 ALL]");
}

static void test_search(void)
{
	EXPECT("a SEARCH CHARSET UTF-8 OR (NOT SEEN FROM \"a b\") "
	       "(OR SUBJECT {3}\r\n\xc3\xa4x LARGER 100) SINCE 1-Feb-1994\r\n",
	       "+[a SEARCH CHARSET UTF-8 OR (NOT SEEN FROM \"a b\") "
	       "(OR SUBJECT {3}\xc3\xa4x LARGER 100) SINCE 1-Feb-1994]");
	EXPECT("a UID SEARCH RETURN (MIN MAX COUNT) UID 1:100 NOT DELETED\r\n",
	       "[a UID SEARCH RETURN (MIN MAX COUNT) UID 1:100 NOT DELETED]");
	EXPECT("a SEARCH TEXT \"\xe2\x82\xac\"\r\n", "[a SEARCH TEXT \"\xe2\x82\xac\"]");
	EXPECT("a SEARCH HEADER X-Spam \"\"\r\n", "[a SEARCH HEADER X-Spam \"\"]");
}

static void test_store_list(void)
{
	EXPECT("a STORE 2:4 -FLAGS (\\Deleted)\r\n", "[a STORE 2:4 -FLAGS (\\Deleted)]");
	EXPECT("a STORE 1 (UNCHANGEDSINCE 5) FLAGS ()\r\n",
	       "[a STORE 1 (UNCHANGEDSINCE 5) FLAGS ()]");
	EXPECT("a LIST \"\" *\r\n", "[a LIST \"\" *]");
	EXPECT("a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent/%\") "
	       "RETURN (CHILDREN STATUS (MESSAGES UNSEEN SIZE))\r\n",
	       "[a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (INBOX \"Sent/%\") "
	       "RETURN (CHILDREN STATUS (MESSAGES UNSEEN SIZE))]");
	EXPECT("a LSUB \"\" %/&AOQ-\r\n", "[a LSUB \"\" %/&AOQ-]");
	EXPECT("a CREATE Archive (USE (\\Archive))\r\n", "[a CREATE Archive (USE (\\Archive))]");
	EXPECT("a RENAME {3}\r\nfoo NIL\r\n", "+[a RENAME {3}foo NIL]");
	EXPECT("a STATUS blurdybloop (UIDNEXT MESSAGES)\r\n",
	       "[a STATUS blurdybloop (UIDNEXT MESSAGES)]");
	EXPECT("a SETQUOTA \"\" (STORAGE 512)\r\n", "[a SETQUOTA \"\" (STORAGE 512)]");
}

static void test_append(void)
{
	EXPECT("a APPEND saved-messages (\\Seen) \"7-Feb-1994 21:52:25 -0800\" {5}\r\nhello\r\n",
	       "+[a APPEND saved-messages (\\Seen) \"7-Feb-1994 21:52:25 -0800\" {5}hello]");
	static const char nul_in[] = "a APPEND INBOX ~{3+}\r\na\0b\r\n";
	static const char nul_out[] = "[a APPEND INBOX ~{3+}a\0b]";
	char *got = run(NULL, nul_in, sizeof(nul_in) - 1, 1, DECIDE_ACCEPT);
	/* the transcript is cut at the NUL; check the part before it */
	CHECK_STR_EQ(got, "[a APPEND INBOX ~{3+}a");
	CHECK(sizeof(nul_out) > 0);
	free(got);
	EXPECT("a APPEND INBOX {0}\r\n\r\n", "+[a APPEND INBOX {0}]");
	/* MULTIAPPEND with streaming of literals over stream_min */
	struct imap_parser_limits l = { .stream_min = 4 };
	EXPECT_L(&l, "a APPEND Drafts (\\Draft) {10}\r\n0123456789 {2+}\r\nab {6+}\r\nuvwxyz\r\n",
		 DECIDE_STREAM,
		 "<lit 10 APPEND>+<data 0123456789><lit 6+ APPEND><data uvwxyz>"
		 "[a APPEND Drafts (\\Draft) {10*} {2+}ab {6*}]");
	EXPECT_L(&l, "a APPEND X {0+}\r\n\r\n", DECIDE_STREAM, "[a APPEND X {0+}]");
	struct imap_parser_limits l0 = { .stream_min = 1 };
	EXPECT_L(&l0, "a APPEND X ~{2}\r\nzz\r\nb NOOP\r\n", DECIDE_STREAM,
		 "<lit 2 APPEND>+<data zz>[a APPEND X {2*}][b NOOP]");
	/* no room for the literal's argument: refused, no continuation */
	struct imap_parser_limits la = { .stream_min = 1, .arg_max = 2 };
	EXPECT_L(&la, "a APPEND X Y {2}\r\nb NOOP\r\n", DECIDE_STREAM,
		 "<lit 2 APPEND><nostream Too many arguments>[b NOOP]");
	EXPECT_L(&la, "a APPEND X Y {2+}\r\nzz\r\n", DECIDE_STREAM,
		 "<lit 2+ APPEND><nostream Too many arguments><err 4 aToo many arguments FATAL>");
}

static void test_literal_limits(void)
{
	struct imap_parser_limits l = { .literal_max = 8, .stream_min = 100 };

	/* a sync literal over the limit: the client sends nothing; next command */
	EXPECT_L(&l, "a LOGIN {9}\r\nb NOOP\r\n", DECIDE_ACCEPT,
		 "<err 6 aLiteral too large>[b NOOP]");
	/* a non-sync one is already on its way: fatal (RFC 7888) */
	EXPECT_L(&l, "a LOGIN {9+}\r\n123456789\r\nb NOOP\r\n", DECIDE_ACCEPT,
		 "<err 6 aLiteral too large FATAL>");
	struct imap_parser_limits la = { .literal_max = 8 };
	EXPECT_L(&la, "a LOGIN {9+}\r\n", DECIDE_ACCEPT,
		 "<lit 9+ LOGIN><refused><err 6 aLiteral too large FATAL>");
	struct imap_parser_limits lm = { .nonsync_max = 4096 };
	EXPECT_L(&lm, "a APPEND x {4097+}\r\n", DECIDE_ACCEPT,
		 "<err 6 aLiteral too large FATAL>");
	/* the caller refuses a big literal it was asked about */
	struct imap_parser_limits ls = { .stream_min = 3 };
	EXPECT_L(&ls, "a APPEND x {10}\r\nb NOOP\r\n", DECIDE_REJECT,
		 "<lit 10 APPEND><reject a>[b NOOP]");
	EXPECT_L(&ls, "a APPEND x {10+}\r\n0123456789\r\n", DECIDE_REJECT,
		 "<lit 10+ APPEND><reject a close><err 6 aLiteral too large FATAL>");
	/* accepting a literal over literal_max fails */
	EXPECT_L(&ls, "a APPEND x {100000}\r\nb NOOP\r\n", DECIDE_ACCEPT,
		 "<lit 100000 APPEND><refused>[b NOOP]");
	EXPECT("a X {99999999999999999999}\r\nb NOOP\r\n",
	       "<err 6 aLiteral size too large>[b NOOP]");
}

static void test_raw_line(void)
{
	EXPECT("a IDLE\r\n\x01" "DONE\r\nb NOOP\r\n", "[a IDLE]<line DONE>[b NOOP]");
	EXPECT("a AUTHENTICATE PLAIN\r\n\x01" "AHVzZXIAcGFzcw==\r\n\x01*\n",
	       "[a AUTHENTICATE PLAIN]<line AHVzZXIAcGFzcw==><line *>");
	EXPECT("a AUTHENTICATE PLAIN\r\n\x01\r\n", "[a AUTHENTICATE PLAIN]<line >");
	struct imap_parser_limits l = { .line_max = 10 };
	EXPECT_L(&l, "\x01" "0123456789ABC\r\nb NOOP\r\n", DECIDE_ACCEPT,
		 "<err 3 *Line too long>[b NOOP]");
}

static void test_malformed(void)
{
	EXPECT("a\r\nb NOOP\r\n", "<err 2 aMissing command>[b NOOP]");
	EXPECT("+ NOOP\r\nb NOOP\r\n", "<err 2 *Invalid tag>[b NOOP]");
	EXPECT("* NOOP\r\n", "<err 2 *Invalid tag>");
	EXPECT("a(b NOOP\r\n", "<err 2 *Invalid tag>");
	EXPECT("a NO\x80OP\r\nb NOOP\r\n", "<err 1 aInvalid command name>[b NOOP]");
	EXPECT("a FETCH 1 (FLAGS\r\nb NOOP\r\n", "<err 1 aMissing ')'>[b NOOP]");
	EXPECT("a FETCH 1 FLAGS)\r\n", "<err 1 aUnexpected ')'>");
	EXPECT("a LOGIN \"a\r\nb NOOP\r\n", "<err 1 aInvalid characters in quoted string>[b NOOP]");
	EXPECT("a LOGIN \"a\\x\"\r\n", "<err 1 aInvalid escape in quoted string>");
	EXPECT("a LOGIN \"a\"\"b\"\r\n", "<err 1 aMissing space between arguments>");
	EXPECT("a LOGIN (a)(b)\r\n", "<err 1 aMissing space between arguments>");
	EXPECT("a LOGIN {x}\r\n", "<err 1 aInvalid literal size>");
	EXPECT("a LOGIN {5 }\r\n", "<err 1 aInvalid literal size>");
	EXPECT("a LOGIN {5}x\r\n", "<err 1 aMissing CRLF after literal size>");
	EXPECT("a LOGIN u\x7fx\r\n", "<err 1 aInvalid characters in atom>");
	EXPECT("a LOGIN \xc3\xa4\r\n", "<err 1 aInvalid characters in atom>");
	EXPECT("a FETCH 1 BODY[HEADER\r\nb NOOP\r\n", "<err 1 aMissing ']'>[b NOOP]");
	EXPECT("a NOOP\rX\r\nb NOOP\r\n", "<err 1 aCR without LF>[b NOOP]");
	EXPECT("a X ]\r\n", "<err 1 aInvalid characters in atom>");
	/* data of a {n+} literal on a bad line is skipped, never executed */
	EXPECT("a FOO ( {12+}\r\nb DELETE x\r\n\r\nc NOOP\r\n",
	       "<err 1 aMissing ')'>[c NOOP]");
	EXPECT("a FOO \"x\\y\" {12+}\r\nb DELETE x\r\n\r\nc NOOP\r\n",
	       "<err 1 aInvalid escape in quoted string>[c NOOP]");
}

static void test_limits(void)
{
	struct imap_parser_limits l = { .nesting_max = 3, .arg_max = 5, .line_max = 40,
					.tag_max = 4 };

	EXPECT_L(&l, "a X (((x)))\r\n", DECIDE_ACCEPT, "[a X (((x)))]");
	EXPECT_L(&l, "a X ((((x))))\r\nb NOOP\r\n", DECIDE_ACCEPT,
		 "<err 5 aLists nested too deeply>[b NOOP]");
	EXPECT_L(&l, "a X 1 2 3 4 5\r\n", DECIDE_ACCEPT, "[a X 1 2 3 4 5]");
	EXPECT_L(&l, "a X 1 2 3 4 5 6\r\nb NOOP\r\n", DECIDE_ACCEPT,
		 "<err 4 aToo many arguments>[b NOOP]");
	EXPECT_L(&l, "a X (1 2 3 4 5)\r\n", DECIDE_ACCEPT, "<err 4 aToo many arguments>");
	EXPECT_L(&l, "abcd NOOP\r\n", DECIDE_ACCEPT, "[abcd NOOP]");
	EXPECT_L(&l, "abcde NOOP\r\nb NOOP\r\n", DECIDE_ACCEPT, "<err 2 *Tag too long>[b NOOP]");
	EXPECT_L(&l, "a X 0123456789012345678901234567890123456789\r\nb NOOP\r\n",
		 DECIDE_ACCEPT, "<err 3 aLine too long>[b NOOP]");
	/* an in-memory literal counts against the line */
	EXPECT_L(&l, "a X {31}\r\nb NOOP\r\n", DECIDE_ACCEPT,
		 "<err 6 aLiteral too large>[b NOOP]");
	EXPECT_L(&l, "a X {20}\r\n01234567890123456789\r\n", DECIDE_ACCEPT,
		 "+[a X {20}01234567890123456789]");
}

static void test_nil_and_tilde(void)
{
	EXPECT("a X nil NILS \"NIL\" ~ ~a\r\n", "[a X NIL NILS \"NIL\" ~ ~a]");
}

static void test_partial_command(void)
{
	struct imap_parser_limits l = { .stream_min = 1 };
	struct imap_parser *p = imap_parser_create(&l);
	const char *in = "t APPEND \"Sent Items\" (\\Seen $MDNSent) {4}\r\n";
	const struct imap_command *cmd;
	const char *s;
	size_t used;

	CHECK_INT_EQ(imap_parser_parse(p, in, strlen(in), &used), IMAP_PARSE_LITERAL);
	CHECK_INT_EQ(used, strlen(in));
	cmd = imap_parser_command(p);
	CHECK_STR_EQ(cmd->tag, "t");
	CHECK_STR_EQ(cmd->name, "APPEND");
	CHECK_INT_EQ(cmd->arg_count, 2);
	CHECK(imap_arg_get_astring(&cmd->args[0], &s) && strcmp(s, "Sent Items") == 0);
	CHECK_INT_EQ(cmd->args[1].type, IMAP_ARG_LIST);
	CHECK_INT_EQ(cmd->args[1].len, 2);
	CHECK_STR_EQ(cmd->args[1].list[1].str, "$MDNSent");
	CHECK_INT_EQ(cmd->args[1].list[2].type, IMAP_ARG_EOL);
	CHECK_INT_EQ(cmd->args[2].type, IMAP_ARG_EOL);
	CHECK_INT_EQ(imap_parser_literal_info(p)->size, 4);
	CHECK(imap_parser_literal_info(p)->sync);
	imap_parser_destroy(&p);
}

static void test_arg_helpers(void)
{
	struct imap_parser *p = imap_parser_create(NULL);
	static const char in[] = "a X atom \"q\" {2+}\r\na\0 NIL (x) ~{1+}\r\nz\r\n";
	const struct imap_command *cmd;
	const struct imap_arg *list;
	const char *s;
	size_t used, n;

	CHECK_INT_EQ(imap_parser_parse(p, in, sizeof(in) - 1, &used), IMAP_PARSE_COMMAND);
	CHECK_INT_EQ(used, sizeof(in) - 1);
	cmd = imap_parser_command(p);
	CHECK_INT_EQ(cmd->arg_count, 6);
	CHECK(imap_arg_get_atom(&cmd->args[0], &s) && strcmp(s, "atom") == 0);
	CHECK(!imap_arg_get_string(&cmd->args[0], &s));
	CHECK(imap_arg_get_string(&cmd->args[1], &s) && strcmp(s, "q") == 0);
	CHECK(!imap_arg_get_astring(&cmd->args[2], &s)); /* embedded NUL */
	CHECK_INT_EQ(cmd->args[2].len, 2);
	CHECK(imap_arg_get_nstring(&cmd->args[3], &s) && s == NULL);
	CHECK(imap_arg_get_astring(&cmd->args[3], &s) && strcmp(s, "NIL") == 0);
	CHECK(imap_arg_atom_equals(&cmd->args[3], "nil"));
	CHECK(imap_arg_get_list(&cmd->args[4], &list, &n) && n == 1);
	CHECK(imap_arg_atom_equals(&list[0], "X"));
	CHECK(cmd->args[5].literal8 && cmd->args[5].nonsync);
	imap_parser_destroy(&p);
}

static void test_fatal_sticks(void)
{
	struct imap_parser_limits l = { .nonsync_max = 2 };
	struct imap_parser *p = imap_parser_create(&l);
	size_t used;
	bool fatal;

	CHECK_INT_EQ(imap_parser_parse(p, "a X {3+}\r\n", 10, &used), IMAP_PARSE_ERROR);
	imap_parser_error(p, NULL, &fatal);
	CHECK(fatal);
	CHECK_INT_EQ(imap_parser_parse(p, "b NOOP\r\n", 8, &used), IMAP_PARSE_ERROR);
	CHECK_INT_EQ(used, 0);
	imap_parser_destroy(&p);
}

static void test_seqset(void)
{
	struct imap_seq_range *r;
	size_t n;
	const char *err;

	CHECK_INT_EQ(imap_seqset_parse("1,3:5,7:*,*,4294967295", 0, &r, &n, &err), 0);
	CHECK_INT_EQ(n, 5);
	CHECK(r[1].first == 3 && r[1].last == 5);
	CHECK(r[2].first == 7 && r[2].last == IMAP_SEQ_STAR);
	CHECK(r[3].first == IMAP_SEQ_STAR && r[3].last == IMAP_SEQ_STAR);
	CHECK(r[4].first == UINT32_MAX);
	imap_seqset_resolve(r, &n, 6);
	/* 1, 3:5, 6:7 (7:* with * = 6), 6, 4294967295 -> 1, 3:7, max */
	CHECK_INT_EQ(n, 3);
	CHECK(r[0].first == 1 && r[0].last == 1);
	CHECK(r[1].first == 3 && r[1].last == 7);
	CHECK(r[2].first == UINT32_MAX && r[2].last == UINT32_MAX);
	CHECK(imap_seqset_contains(r, n, 4));
	CHECK(!imap_seqset_contains(r, n, 2));
	CHECK(!imap_seqset_contains(r, n, 8));
	CHECK(imap_seqset_contains(r, n, UINT32_MAX));
	mf_free(&r);

	CHECK_INT_EQ(imap_seqset_parse("1:*", 0, &r, &n, &err), 0);
	imap_seqset_resolve(r, &n, 0);
	CHECK(n == 1 && r[0].first == 0 && r[0].last == 1);
	mf_free(&r);
	CHECK_INT_EQ(imap_seqset_parse("5:2,2:3", 0, &r, &n, &err), 0);
	imap_seqset_resolve(r, &n, 9);
	CHECK(n == 1 && r[0].first == 2 && r[0].last == 5);
	mf_free(&r);

	static const char *bad[] = { "", "0", "1,", ",1", "1::2", "1:", "a", "01",
		"4294967296", "1,,2", "1:2:3", "* ", "-1", "1.5" };
	for (size_t i = 0; i < MF_N_ELEMENTS(bad); i++) {
		test_checks++;
		if (imap_seqset_parse(bad[i], 0, &r, &n, &err) == 0) {
			TEST_FAIL_AT(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
			mf_free(&r);
		}
	}
	CHECK_INT_EQ(imap_seqset_parse("1,2,3", 2, &r, &n, &err), -1);
}

int main(void)
{
	test_run(test_simple);
	test_run(test_more_commands);
	test_run(test_pipelining);
	test_run(test_uid);
	test_run(test_fetch);
	test_run(test_search);
	test_run(test_store_list);
	test_run(test_append);
	test_run(test_literal_limits);
	test_run(test_raw_line);
	test_run(test_malformed);
	test_run(test_limits);
	test_run(test_nil_and_tilde);
	test_run(test_partial_command);
	test_run(test_arg_helpers);
	test_run(test_fatal_sticks);
	test_run(test_seqset);
	return test_exit();
}
