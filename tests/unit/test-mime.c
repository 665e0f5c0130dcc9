/* test-mime.c: the MIME parser (lib/mime.h) and the ENVELOPE / BODYSTRUCTURE
 * writers: the tests/data/mime corpus (LF and CRLF forms), header helpers,
 * RFC 2047 / 2231 decoding, addresses, quoting, limits and linear work on
 * hostile input. */
#include "imapd/imap-bodystructure.h"
#include "imapd/imap-envelope.h"
#include "imapd/imap-quote.h"
#include "lib/mime.h"
#include "tests/unit/test.h"

#include <dirent.h>
#include <time.h>

TEST_DEFINE_GLOBALS

#define CORPUS "tests/data/mime"

static bool read_file(const char *path, struct buf *out)
{
	FILE *f = fopen(path, "rb");
	char tmp[8192];
	size_t n;

	buf_init(out, 0);
	if (f == NULL)
		return false;
	while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
		buf_append(out, tmp, n);
	fclose(f);
	buf_append(out, "", 1);
	out->len--;
	return true;
}

static void to_crlf(const struct buf *in, struct buf *out)
{
	buf_init(out, 0);
	for (size_t i = 0; i < in->len; i++) {
		if (in->data[i] == '\n' && (i == 0 || in->data[i - 1] != '\r'))
			buf_append(out, "\r", 1);
		buf_append(out, &in->data[i], 1);
	}
	buf_append(out, "", 1);
	out->len--;
}

static void check_output(const char *name, const char *what, const struct buf *got,
			  const struct buf *want)
{
	test_checks++;
	if (got->len != want->len || memcmp(got->data, want->data, got->len) != 0)
		TEST_FAIL_AT(__FILE__, __LINE__, "%s %s:\n  got  %.*s\n  want %.*s", name, what,
			     (int)got->len, (const char *)got->data, (int)want->len,
			     (const char *)want->data);
}

static void check_corpus_one(const char *name, const struct buf *msg_data, unsigned int flags)
{
	static const char *const whats[] = { "bodystructure", "body", "envelope" };
	struct mime_message *msg = mime_parse(msg_data->data, msg_data->len, NULL, flags);

	for (size_t i = 0; i < MF_N_ELEMENTS(whats); i++) {
		char path[512];
		struct buf want, got;
		snprintf(path, sizeof(path), CORPUS "/%s.%s", name, whats[i]);
		test_checks++;
		if (!read_file(path, &want)) {
			TEST_FAIL_AT(__FILE__, __LINE__, "missing %s", path);
			continue;
		}
		buf_init(&got, 0);
		if (i == 2)
			imap_envelope_write(msg, msg->root, 0, &got);
		else
			imap_bodystructure_write(msg, msg->root, i == 0, 0, &got);
		check_output(name, whats[i], &got, &want);
		buf_free(&got);
		buf_free(&want);
	}
	mime_message_free(&msg);
}

static void test_corpus(void)
{
	DIR *dir = opendir(CORPUS);
	struct dirent *d;
	int count = 0;

	CHECK(dir != NULL);
	while (dir != NULL && (d = readdir(dir)) != NULL) {
		size_t len = strlen(d->d_name);
		char name[256], path[512];
		struct buf raw, crlf;
		struct mime_message *msg;

		if (len < 5 || len >= sizeof(name) || strcmp(d->d_name + len - 4, ".eml") != 0)
			continue;
		memcpy(name, d->d_name, len - 4);
		name[len - 4] = '\0';
		snprintf(path, sizeof(path), CORPUS "/%s", d->d_name);
		CHECK(read_file(path, &raw));
		to_crlf(&raw, &crlf);
		check_corpus_one(name, &raw, MIME_PARSE_LF_TO_CRLF);
		check_corpus_one(name, &crlf, 0);
		check_corpus_one(name, &crlf, MIME_PARSE_LF_TO_CRLF);
		/* RFC822.SIZE: header + body of the root is the CRLF size */
		msg = mime_parse(raw.data, raw.len, NULL, MIME_PARSE_LF_TO_CRLF);
		CHECK_INT_EQ(msg->root->header.virtual + msg->root->body.virtual, crlf.len);
		CHECK_INT_EQ(msg->root->header.physical + msg->root->body.physical, raw.len);
		mime_message_free(&msg);
		buf_free(&raw);
		buf_free(&crlf);
		count++;
	}
	if (dir != NULL)
		closedir(dir);
	CHECK(count >= 20);
}

static struct mime_message *parse_str(const char *s, unsigned int flags)
{
	return mime_parse(s, strlen(s), NULL, flags);
}

static void test_offsets(void)
{
	struct buf raw;
	struct mime_message *msg;
	const struct mime_part *alt, *related, *png, *pdf;

	CHECK(read_file(CORPUS "/nested-multipart.eml", &raw));
	msg = mime_parse(raw.data, raw.len, NULL, MIME_PARSE_LF_TO_CRLF);
	CHECK_INT_EQ(msg->part_count, 7);
	CHECK_INT_EQ(msg->root->kind, MIME_PART_MULTIPART);
	CHECK_INT_EQ(msg->root->child_count, 2);
	alt = msg->root->children;
	related = alt->children->next;
	png = related->children->next;
	pdf = alt->next;
	CHECK_STR_EQ(png->subtype, "png");
	CHECK(memcmp(raw.data + png->body_offset, "iVBORw0KGgo=\n--rel--", 20) == 0);
	CHECK(memcmp(raw.data + png->header_offset, "Content-Type: image/png\n", 24) == 0);
	CHECK_INT_EQ(png->body.physical, 12);
	CHECK(memcmp(raw.data + pdf->body_offset, "JVBERi0=", 8) == 0);
	CHECK_INT_EQ(pdf->language_count, 1);
	char *fn = mime_param_get_utf8(pdf->disp_params, pdf->disp_param_count, "filename");
	CHECK_STR_EQ(fn, "R\xc3\xa9sum\xc3\xa9.pdf");
	free(fn);
	char *desc = mime_header_get(msg, pdf, "content-description");
	struct buf dec;
	buf_init(&dec, 0);
	mime_decode_words(desc, strlen(desc), &dec);
	buf_append(&dec, "", 1);
	CHECK_STR_EQ((const char *)dec.data, "R\xc3\xa9sum\xc3\xa9");
	buf_free(&dec);
	free(desc);
	mime_message_free(&msg);
	CHECK(msg == NULL);
	buf_free(&raw);
}

static void test_sizes_lf_crlf(void)
{
	const char *lf = "Subject: x\n\nab\ncd\n";
	const char *crlf = "Subject: x\r\n\r\nab\r\ncd\r\n";
	struct mime_message *a = parse_str(lf, MIME_PARSE_LF_TO_CRLF);
	struct mime_message *b = parse_str(lf, 0);
	struct mime_message *c = parse_str(crlf, 0);

	CHECK_INT_EQ(a->root->header.physical, 12);
	CHECK_INT_EQ(a->root->header.virtual, 14);
	CHECK_INT_EQ(a->root->header.lines, 2);
	CHECK_INT_EQ(a->root->body.physical, 6);
	CHECK_INT_EQ(a->root->body.virtual, 8);
	CHECK_INT_EQ(a->root->body.lines, 2);
	CHECK_INT_EQ(b->root->body.virtual, 6);
	CHECK_INT_EQ(c->root->header.virtual, 14);
	CHECK_INT_EQ(c->root->body.virtual, 8);
	CHECK_INT_EQ(c->root->body_offset, 14);
	mime_message_free(&a);
	mime_message_free(&b);
	mime_message_free(&c);

	/* empty input and a lone blank line */
	a = mime_parse("", 0, NULL, 0);
	CHECK_INT_EQ(a->root->header.physical + a->root->body.physical, 0);
	mime_message_free(&a);
	a = parse_str("\r\nbody", 0);
	CHECK_INT_EQ(a->root->header.physical, 2);
	CHECK_INT_EQ(a->root->body.physical, 4);
	mime_message_free(&a);
}

static void test_header_get(void)
{
	const char *m = "From: a@b\nno colon line\n\tstray continuation\nX-Bin\xff: v\n"
		"SUBJECT:  hello\n  world \t\nsubject: second\nX-Empty:\n8bit: \xc3\xa4\n\nX-Body: no\n";
	struct mime_message *msg = parse_str(m, 0);
	struct mime_header_iter it;
	struct mime_field f;
	char *v;
	int n = 0;

	v = mime_header_get(msg, msg->root, "subject");
	CHECK_STR_EQ(v, "hello  world");
	free(v);
	v = mime_header_get(msg, msg->root, "X-Empty");
	CHECK_STR_EQ(v, "");
	free(v);
	CHECK(mime_header_get(msg, msg->root, "X-Body") == NULL);
	CHECK(mime_header_get(msg, msg->root, "X-Bin\xff") == NULL);
	v = mime_header_get(msg, msg->root, "8bit");
	CHECK_STR_EQ(v, "\xc3\xa4");
	free(v);
	mime_header_iter_init(&it, msg, msg->root);
	while (mime_header_next(&it, &f))
		n++;
	CHECK_INT_EQ(n, 5); /* From, SUBJECT, subject, X-Empty, 8bit */
	mime_message_free(&msg);
}

static void check_decode(const char *in, const char *want, int line)
{
	struct buf out;

	buf_init(&out, 0);
	mime_decode_words(in, strlen(in), &out);
	buf_append(&out, "", 1);
	test_checks++;
	if (strcmp((const char *)out.data, want) != 0)
		TEST_FAIL_AT(__FILE__, line, "decode \"%s\" = \"%s\", want \"%s\"", in,
			     (const char *)out.data, want);
	buf_free(&out);
}

static void test_rfc2047(void)
{
	check_decode("plain text", "plain text", __LINE__);
	check_decode("=?UTF-8?Q?Caf=C3=A9_news?=", "Caf\xc3\xa9 news", __LINE__);
	check_decode("=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard", __LINE__);
	check_decode("=?ISO-8859-1?B?SWYgeW91IGNhbiByZWFkIHRoaXMgeW8=?=\r\n "
		     "=?ISO-8859-2?B?dSB1bmRlcnN0YW5kIHRoZSBleGFtcGxlLg==?=",
		     "If you can read this you understand the example.", __LINE__);
	check_decode("(=?ISO-8859-1?Q?a?= b)", "(a b)", __LINE__);
	check_decode("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab", __LINE__);
	check_decode("=?utf-8*en?q?x?=", "x", __LINE__);
	check_decode("=?x-unknown-cs?Q?abc?=", "=?x-unknown-cs?Q?abc?=", __LINE__);
	check_decode("=?utf-8?X?abc?=", "=?utf-8?X?abc?=", __LINE__);
	check_decode("=?utf-8?Q?no end", "=?utf-8?Q?no end", __LINE__);
	check_decode("=?utf-8?B?/w==?=", "\xef\xbf\xbd", __LINE__);
	check_decode("raw \xff byte", "raw \xef\xbf\xbd byte", __LINE__);
	check_decode("=?windows-1252?Q?=80?=", "\xe2\x82\xac", __LINE__);
	check_decode("=?=?=?=?utf-8?Q?ok?=", "=?=?=?ok", __LINE__);
}

static void test_params(void)
{
	char *type = NULL, *sub = NULL, *v;
	struct mime_param *p;
	unsigned int n;

	CHECK_INT_EQ(mime_parse_content_value("Multipart/Mixed (comment); boundary=----=_Part_1_2;"
		" name*1=\"b\"; name*0=a; name*2*=%41; X=\"q\\\"s\"; bogus; =x; ;",
		true, &type, &sub, &p, &n), 0);
	CHECK_STR_EQ(type, "Multipart");
	CHECK_STR_EQ(sub, "Mixed");
	CHECK_INT_EQ(n, 3);
	CHECK_STR_EQ(p[0].name, "boundary");
	CHECK_STR_EQ(p[0].value, "----=_Part_1_2");
	CHECK_STR_EQ(p[1].name, "name*");
	CHECK_STR_EQ(p[1].value, "ab%41");
	CHECK_STR_EQ(p[2].value, "q\"s");
	mime_params_free(&p, n);
	free(type);
	free(sub);

	CHECK_INT_EQ(mime_parse_content_value("attachment; filename*=iso-8859-1'de'%E4.txt; "
		"filename=\"=?utf-8?Q?x=C3=A4?=\"", false, &type, NULL, &p, &n), 0);
	v = mime_param_get_utf8(p, n, "FILENAME");
	CHECK_STR_EQ(v, "\xc3\xa4.txt");
	free(v);
	CHECK_STR_EQ(p[1].name, "filename");
	mime_params_free(&p, n);
	free(type);

	CHECK_INT_EQ(mime_parse_content_value("inline; filename=\"=?utf-8?Q?x=C3=A4?=\"",
					      false, &type, NULL, &p, &n), 0);
	v = mime_param_get_utf8(p, n, "filename");
	CHECK_STR_EQ(v, "x\xc3\xa4");
	free(v);
	CHECK(mime_param_get_utf8(p, n, "name") == NULL);
	mime_params_free(&p, n);
	free(type);

	type = NULL;
	CHECK_INT_EQ(mime_parse_content_value("text", true, &type, &sub, &p, &n), -1);
	CHECK_INT_EQ(mime_parse_content_value("/plain", true, &type, &sub, &p, &n), -1);
	CHECK_INT_EQ(mime_parse_content_value("", false, &type, NULL, &p, &n), -1);
	CHECK(type == NULL);
}

static void render_addresses(const char *value, struct buf *out)
{
	struct mime_address *a;
	unsigned int n;

	mime_address_parse(value, 0, &a, &n);
	buf_reset(out);
	for (unsigned int i = 0; i < n; i++) {
		buf_printf(out, "[%s|%s|%s|%s]", a[i].name ? a[i].name : "-",
			   a[i].route ? a[i].route : "-", a[i].mailbox ? a[i].mailbox : "-",
			   a[i].host ? a[i].host : "-");
	}
	buf_append(out, "", 1);
	out->len--;
	mime_address_free(&a, n);
}

#define CHECK_ADDR(in, want) do { render_addresses(in, &out); \
	CHECK_STR_EQ(out.len == 0 ? "" : (const char *)out.data, want); } while (0)

static void test_addresses(void)
{
	struct buf out;

	buf_init(&out, 0);
	CHECK_ADDR("", "");
	CHECK_ADDR("a@b", "[-|-|a|b]");
	CHECK_ADDR("\"Last, First\" <f.l@x.org>", "[Last, First|-|f.l|x.org]");
	CHECK_ADDR("John (middle) Doe <j@d>", "[John Doe|-|j|d]");
	CHECK_ADDR("j@d (John Doe)", "[John Doe|-|j|d]");
	CHECK_ADDR("undisclosed-recipients:;", "[-|-|undisclosed-recipients|-][-|-|-|-]");
	CHECK_ADDR("g: a@b, <c@d>; , e@f", "[-|-|g|-][-|-|a|b][-|-|c|d][-|-|-|-][-|-|e|f]");
	CHECK_ADDR("<@r1,@r2:u@h>", "[-|@r1,@r2|u|h]");
	CHECK_ADDR("\"quoted local\"@h", "[-|-|quoted local|h]");
	CHECK_ADDR("u@[192.0.2.1]", "[-|-|u|[192.0.2.1]]");
	CHECK_ADDR("=?utf-8?Q?J=C3=BCrgen?= <j@x>", "[=?utf-8?Q?J=C3=BCrgen?=|-|j|x]");
	CHECK_ADDR("J\xc3\xbcrgen <j@x>", "[J\xc3\xbcrgen|-|j|x]");
	CHECK_ADDR("nodomain", "[-|-|nodomain|MISSING_DOMAIN]");
	CHECK_ADDR("<>", "[-|-|MISSING_MAILBOX|MISSING_DOMAIN]");
	CHECK_ADDR(",,,", "");
	CHECK_ADDR(">)]:;@", "[-|-|MISSING_MAILBOX|MISSING_DOMAIN]");
	CHECK_ADDR("a@b.example . org (c)", "[c|-|a|b.example.org]");
	CHECK_ADDR(": a@b", "[-|-|a|b]");
	buf_free(&out);

	/* bounded entries */
	struct mime_address *a;
	unsigned int n;
	mime_address_parse("a@b, c@d, e@f", 2, &a, &n);
	CHECK_INT_EQ(n, 2);
	mime_address_free(&a, n);
	CHECK(a == NULL);
}

static void test_quote(void)
{
	struct buf out;

	buf_init(&out, 0);
	imap_append_nstring(&out, "a \"b\" \\c", 0);
	imap_append_nstring(&out, NULL, 0);
	imap_append_nstring(&out, "\xc3\xa4", 0);
	imap_append_nstring(&out, "\xc3\xa4", IMAP_QUOTE_UTF8);
	imap_append_nstring(&out, "\xff", IMAP_QUOTE_UTF8);
	imap_append_nstring(&out, "x\r\ny", IMAP_QUOTE_UTF8);
	imap_append_string(&out, "n\0l", 3, 0);
	imap_append_nstring(&out, "", 0);
	buf_append(&out, "", 1);
	CHECK_STR_EQ((const char *)out.data, "\"a \\\"b\\\" \\\\c\"NIL{2}\r\n\xc3\xa4\"\xc3\xa4\""
		     "{1}\r\n\xff{4}\r\nx\r\ny\"n l\"\"\"");
	buf_free(&out);
}

static void test_envelope_utf8(void)
{
	struct mime_message *msg = parse_str("Subject: Gr\xc3\xbc\xc3\x9f" "e\n"
					     "From: \"A \\\"B\\\"\" <a@b>\n\n", 0);
	struct buf out;

	buf_init(&out, 0);
	imap_envelope_write(msg, msg->root, IMAP_QUOTE_UTF8, &out);
	buf_append(&out, "", 1);
	CHECK_STR_EQ((const char *)out.data, "(NIL \"Gr\xc3\xbc\xc3\x9f" "e\" "
		     "((\"A \\\"B\\\"\" NIL \"a\" \"b\")) ((\"A \\\"B\\\"\" NIL \"a\" \"b\")) "
		     "((\"A \\\"B\\\"\" NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)");
	buf_free(&out);
	mime_message_free(&msg);
}

static void test_depth_limit(void)
{
	struct mime_limits limits = { .depth_max = 10 };
	struct buf m, out;
	struct mime_message *msg;

	buf_init(&m, 0);
	for (int i = 0; i < 150; i++)
		buf_printf(&m, "Content-Type: multipart/mixed; boundary=\"b%d\"\n\n--b%d\n", i, i);
	buf_printf(&m, "Content-Type: text/plain\n\ndeep\n");
	msg = mime_parse(m.data, m.len, &limits, 0);
	CHECK(msg->limited);
	CHECK(msg->part_count <= 10);
	buf_init(&out, 0);
	imap_bodystructure_write(msg, msg->root, true, 0, &out);
	CHECK(out.len > 0 && out.data[0] == '(' && out.data[out.len - 1] == ')');
	mime_message_free(&msg);
	/* the default limit (100) also holds */
	msg = mime_parse(m.data, m.len, NULL, 0);
	CHECK(msg->limited);
	CHECK(msg->part_count <= 100);
	mime_message_free(&msg);
	buf_free(&m);
	buf_free(&out);

	/* message/rfc822 nesting */
	buf_init(&m, 0);
	for (int i = 0; i < 500; i++)
		buf_printf(&m, "Content-Type: message/rfc822\n\n");
	msg = mime_parse(m.data, m.len, NULL, 0);
	CHECK(msg->limited);
	CHECK(msg->part_count <= 100);
	buf_init(&out, 0);
	imap_bodystructure_write(msg, msg->root, false, 0, &out);
	CHECK(strstr((const char *)out.data, "\"application\" \"octet-stream\"") != NULL);
	buf_free(&out);
	mime_message_free(&msg);
	buf_free(&m);
}

static double elapsed(clock_t start)
{
	return (double)(clock() - start) / CLOCKS_PER_SEC;
}

static void test_many_parts(void)
{
	struct mime_limits limits = { .parts_max = 1000 };
	struct buf m;
	struct mime_message *msg;
	clock_t start;

	buf_init(&m, 0);
	buf_printf(&m, "Content-Type: multipart/mixed; boundary=x\n\n");
	for (int i = 0; i < 100000; i++)
		buf_printf(&m, "--x\n\n%d\n", i);
	start = clock();
	msg = mime_parse(m.data, m.len, &limits, 0);
	CHECK(msg->limited);
	CHECK_INT_EQ(msg->part_count, 1000);
	CHECK_INT_EQ(msg->root->child_count, 999);
	mime_message_free(&msg);
	msg = mime_parse(m.data, m.len, NULL, 0);
	CHECK_INT_EQ(msg->part_count, 10000);
	mime_message_free(&msg);
	CHECK(elapsed(start) < 10.0);
	buf_free(&m);
}

static void test_huge_header(void)
{
	struct buf m, out;
	struct mime_message *msg;
	clock_t start;
	char *v;

	/* 1 MB folded To header with 50000 addresses, and 20000 lines with
	   no colon: parsing and ENVELOPE stay linear */
	buf_init(&m, 0);
	buf_printf(&m, "To: u0@x");
	for (int i = 1; i < 50000; i++)
		buf_printf(&m, ",\n u%d@x", i);
	buf_printf(&m, "\n");
	for (int i = 0; i < 20000; i++)
		buf_printf(&m, "garbage line without colon %d\n", i);
	buf_printf(&m, "Subject: end\n\nbody\n");
	start = clock();
	msg = mime_parse(m.data, m.len, NULL, MIME_PARSE_LF_TO_CRLF);
	v = mime_header_get(msg, msg->root, "subject");
	CHECK_STR_EQ(v, "end");
	free(v);
	buf_init(&out, 0);
	imap_envelope_write(msg, msg->root, 0, &out);
	/* the address list is capped at 1000 entries */
	CHECK(strstr((const char *)out.data, "\"u999\"") != NULL);
	CHECK(strstr((const char *)out.data, "\"u1000\"") == NULL);
	CHECK(elapsed(start) < 10.0);
	buf_free(&out);
	mime_message_free(&msg);
	buf_free(&m);
}

static void test_boundary_edge_cases(void)
{
	/* a delimiter right after the header; a nested multipart ended by
	   its parent's delimiter; transport padding after the delimiter */
	const char *m = "Content-Type: multipart/mixed; boundary=o\n\n"
		"--o\n"
		"--o \t\n"
		"Content-Type: multipart/alternative; boundary=i\n\n"
		"--i\n\ninner text\n"
		"--o--\n";
	struct mime_message *msg = parse_str(m, MIME_PARSE_LF_TO_CRLF);
	struct buf out;

	buf_init(&out, 0);
	imap_bodystructure_write(msg, msg->root, false, 0, &out);
	buf_append(&out, "", 1);
	CHECK_STR_EQ((const char *)out.data,
		     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 0 0)"
		     "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 0) "
		     "\"alternative\") \"mixed\")");
	buf_free(&out);
	mime_message_free(&msg);
}

static void check_transfer(const char *enc, const char *in, const char *want, int line)
{
	struct buf out;

	buf_init(&out, 0);
	test_checks++;
	if (mime_decode_transfer(enc, in, strlen(in), &out) < 0) {
		TEST_FAIL_AT(__FILE__, line, "%s refused", enc);
	} else {
		buf_append(&out, "", 1);
		if (strcmp((const char *)out.data, want) != 0)
			TEST_FAIL_AT(__FILE__, line, "%s \"%s\" = \"%s\", want \"%s\"", enc, in,
				     (const char *)out.data, want);
	}
	buf_free(&out);
}

static void test_transfer_decoding(void)
{
	struct buf out;

	check_transfer(NULL, "as is\r\n", "as is\r\n", __LINE__);
	check_transfer("8BIT", "\xc3\xa4", "\xc3\xa4", __LINE__);
	check_transfer("base64", "SGVs\r\nbG8=\r\n", "Hello", __LINE__);
	check_transfer("BASE64", "SGVsbG8gd29ybGQ", "Hello world", __LINE__);
	check_transfer("base64", "QQ==Qg==", "AB", __LINE__);
	check_transfer("base64", "!!S!G!V!s", "Hel", __LINE__);
	check_transfer("quoted-printable", "Caf=C3=A9 =\r\nopen  \r\nline=3D2\n=ZZ=4", 
		       "Caf\xc3\xa9 open\r\nline=2\r\n=ZZ=4", __LINE__);
	check_transfer("quoted-printable", "a=\nb=", "ab", __LINE__);
	check_transfer("quoted-printable", "=", "", __LINE__);
	buf_init(&out, 0);
	CHECK_INT_EQ(mime_decode_transfer("x-uuencode", "x", 1, &out), -1);
	CHECK_INT_EQ(out.len, 0);
	buf_free(&out);
}

static void test_section_part(void)
{
	struct buf raw;
	struct mime_message *msg;
	const struct mime_part *p;
	const char *end;

	CHECK(read_file(CORPUS "/rfc822-in-multipart.eml", &raw));
	msg = mime_parse(raw.data, raw.len, NULL, 0);
	p = imap_section_part(msg, "1", &end);
	CHECK(p == msg->root->children && *end == '\0');
	p = imap_section_part(msg, "2.HEADER", &end);
	CHECK(p != NULL && p->kind == MIME_PART_MESSAGE && strcmp(end, ".HEADER") == 0);
	p = imap_section_part(msg, "2.2.MIME", &end);
	CHECK(p != NULL && strcmp(p->subtype, "jpeg") == 0 && strcmp(end, ".MIME") == 0);
	p = imap_section_part(msg, "2.1", &end);
	CHECK(p != NULL && strcmp(p->params[0].value, "iso-8859-1") == 0);
	CHECK(imap_section_part(msg, "3", &end) == NULL);
	CHECK(imap_section_part(msg, "1.1", &end) == NULL);
	CHECK(imap_section_part(msg, "0", &end) == NULL);
	CHECK(imap_section_part(msg, "2.01", &end) == NULL);
	CHECK(imap_section_part(msg, "99999999999", &end) == NULL);
	mime_message_free(&msg);
	buf_free(&raw);

	/* single-part message: 1 is its body; message/global body: 1.1 */
	msg = parse_str("Subject: x\n\nbody\n", 0);
	CHECK(imap_section_part(msg, "1", &end) == msg->root);
	CHECK(imap_section_part(msg, "2", &end) == NULL);
	CHECK(imap_section_part(msg, "1.1", &end) == NULL);
	mime_message_free(&msg);
	msg = parse_str("Content-Type: message/rfc822\n\nSubject: in\n\nbody\n", 0);
	CHECK(imap_section_part(msg, "1", &end) == msg->root);
	p = imap_section_part(msg, "1.1", &end);
	CHECK(p != NULL && p == msg->root->children);
	mime_message_free(&msg);
}

static void check_sizes(const struct mime_part *p, uint64_t pos, uint64_t hdr_phys,
			uint64_t hdr_virt, uint64_t hdr_lines, uint64_t body_phys,
			uint64_t body_virt, uint64_t body_lines, int line)
{
	test_checks++;
	if (p == NULL || p->header_offset != pos || p->header.physical != hdr_phys ||
	    p->header.virtual != hdr_virt || p->header.lines != hdr_lines ||
	    p->body.physical != body_phys || p->body.virtual != body_virt ||
	    p->body.lines != body_lines)
		TEST_FAIL_AT(__FILE__, line, "part sizes differ: pos %llu hdr %llu/%llu/%llu "
			     "body %llu/%llu/%llu", p == NULL ? 0ULL : (unsigned long long)p->header_offset,
			     p == NULL ? 0ULL : (unsigned long long)p->header.physical,
			     p == NULL ? 0ULL : (unsigned long long)p->header.virtual,
			     p == NULL ? 0ULL : (unsigned long long)p->header.lines,
			     p == NULL ? 0ULL : (unsigned long long)p->body.physical,
			     p == NULL ? 0ULL : (unsigned long long)p->body.virtual,
			     p == NULL ? 0ULL : (unsigned long long)p->body.lines);
}

/* Headers cut off by delimiters: the same positions and sizes Dovecot's
   message parser reports for these inputs. */
static void test_truncated_headers(void)
{
	struct mime_message *msg = parse_str(
		"Content-Type: multipart/mixed; boundary=\":foo\"\n\n"
		"--:foo\n--:foo\nContent-Type: text/plain\n--:foo\n"
		"Content-Type: text/plain\r\n--:foo\nContent-Type: text/html\n--:foo--\n",
		MIME_PARSE_LF_TO_CRLF);
	const struct mime_part *c = msg->root->children;

	CHECK_INT_EQ(msg->root->kind, MIME_PART_MULTIPART);
	check_sizes(msg->root, 0, 48, 50, 2, 112, 119, 8, __LINE__);
	check_sizes(c, 55, 0, 0, 0, 0, 0, 0, __LINE__);
	check_sizes(c->next, 62, 24, 24, 0, 0, 0, 0, __LINE__);
	check_sizes(c->next->next, 94, 24, 24, 0, 0, 0, 0, __LINE__);
	check_sizes(c->next->next->next, 127, 23, 23, 0, 0, 0, 0, __LINE__);
	CHECK(c->next->next->next->next == NULL);
	mime_message_free(&msg);

	msg = parse_str("Content-Type: multipart/mixed; boundary=\"ab\"\n\n--ab\n"
			"Content-Type: multipart/mixed; boundary=\"a\"\n\n--ab\n"
			"Content-Type: text/plain\n\n--a\n\n", MIME_PARSE_LF_TO_CRLF);
	c = msg->root->children;
	check_sizes(msg->root, 0, 46, 48, 2, 86, 94, 8, __LINE__);
	CHECK_INT_EQ(c->kind, MIME_PART_MULTIPART);
	check_sizes(c, 51, 44, 45, 1, 0, 0, 0, __LINE__);
	CHECK(c->children == NULL);
	check_sizes(c->next, 101, 26, 28, 2, 5, 7, 2, __LINE__);
	mime_message_free(&msg);

	msg = parse_str("Content-Type: multipart/mixed; boundary=\"ab\"\n", MIME_PARSE_LF_TO_CRLF);
	check_sizes(msg->root, 0, 45, 46, 1, 0, 0, 0, __LINE__);
	CHECK(msg->root->children == NULL);
	mime_message_free(&msg);

	msg = parse_str("Content-Type: multipart/mixed; boundary=\"ab\"\n\nbody\n",
			MIME_PARSE_LF_TO_CRLF);
	check_sizes(msg->root, 0, 46, 48, 2, 5, 6, 1, __LINE__);
	CHECK(msg->root->children == NULL);
	mime_message_free(&msg);

	/* the same boundary nested: the inner multipart takes it */
	msg = parse_str("Content-Type: multipart/mixed; boundary=\"a\"\n\n--a\n"
			"Content-Type: multipart/mixed; boundary=\"a\"\n\n--a\n"
			"Content-Type: text/plain\n\nbody\n", MIME_PARSE_LF_TO_CRLF);
	c = msg->root->children;
	check_sizes(msg->root, 0, 45, 47, 2, 84, 91, 7, __LINE__);
	check_sizes(c, 49, 45, 47, 2, 35, 39, 4, __LINE__);
	check_sizes(c->children, 98, 26, 28, 2, 5, 6, 1, __LINE__);
	mime_message_free(&msg);

	/* an inner boundary that extends the outer one */
	msg = parse_str("Content-Type: multipart/mixed; boundary=\"a\"\n\n--a\n"
			"Content-Type: multipart/mixed; boundary=\"ab\"\n\n--ab\n"
			"Content-Type: text/plain\n\nbody\n", MIME_PARSE_LF_TO_CRLF);
	c = msg->root->children;
	check_sizes(msg->root, 0, 45, 47, 2, 86, 93, 7, __LINE__);
	check_sizes(c, 49, 46, 48, 2, 36, 40, 4, __LINE__);
	check_sizes(c->children, 100, 26, 28, 2, 5, 6, 1, __LINE__);
	mime_message_free(&msg);

	/* "a:b" and no end of header: all header */
	msg = parse_str("a:b\n", 0);
	check_sizes(msg->root, 0, 4, 4, 1, 0, 0, 0, __LINE__);
	mime_message_free(&msg);
}

/* A part that starts right after an inner delimiter which is directly
   followed by an outer one: the outer delimiter takes the inner delimiter's
   line break, the inner multipart ends before it, and the empty part moves
   back so it stays inside its parent (found by fuzz-mime; the corpus file
   is tests/fuzz/corpus/mime/regress-nested-empty-part). */
static void test_nested_empty_part(void)
{
	static const char m[] = "Content-Type: multipart/mixed; boundary=outer\n\n"
		"--outer\n"
		"Content-Type: multipart/mixed; boundary=inner\n\n"
		"--inner\n"
		"--outer--\n";
	struct buf lf = { 0 }, crlf;
	struct mime_message *msg = parse_str(m, MIME_PARSE_LF_TO_CRLF);
	const struct mime_part *c = msg->root->children;

	check_sizes(msg->root, 0, 47, 49, 2, 73, 78, 5, __LINE__);
	CHECK(c != NULL && c->kind == MIME_PART_MULTIPART && c->next == NULL);
	check_sizes(c, 55, 47, 49, 2, 7, 7, 0, __LINE__);
	CHECK(c->child_count == 1);
	check_sizes(c->children, 109, 0, 0, 0, 0, 0, 0, __LINE__);
	CHECK_INT_EQ(c->children->body_offset, 109);
	CHECK(c->children->body_offset + c->children->body.physical <=
	      c->body_offset + c->body.physical);
	mime_message_free(&msg);

	/* the same with CRLF: the part moves back over the CR LF */
	buf_init(&lf, 0);
	buf_append(&lf, m, sizeof(m) - 1);
	to_crlf(&lf, &crlf);
	msg = mime_parse(crlf.data, crlf.len, NULL, 0);
	c = msg->root->children;
	check_sizes(c, 58, 49, 49, 2, 7, 7, 0, __LINE__);
	check_sizes(c->children, 114, 0, 0, 0, 0, 0, 0, __LINE__);
	mime_message_free(&msg);

	/* through a message/rfc822 part, and with a multipart/digest whose
	   empty part becomes message/rfc822 */
	msg = parse_str("Content-Type: multipart/mixed; boundary=o\n\n--o\n"
			"Content-Type: message/rfc822\n\n"
			"Content-Type: multipart/digest; boundary=i\n\n--i\n--o--\n", 0);
	c = msg->root->children->children;
	CHECK(c != NULL && c->kind == MIME_PART_MULTIPART && c->children != NULL);
	check_sizes(c->children, 124, 0, 0, 0, 0, 0, 0, __LINE__);
	CHECK_INT_EQ(c->children->kind, MIME_PART_MESSAGE);
	CHECK_INT_EQ(c->children->children->header_offset, 124);
	CHECK_INT_EQ(c->body_offset + c->body.physical, 124);
	mime_message_free(&msg);
	buf_free(&lf);
	buf_free(&crlf);
}

int main(void)
{
	test_run(test_corpus);
	test_run(test_offsets);
	test_run(test_sizes_lf_crlf);
	test_run(test_header_get);
	test_run(test_rfc2047);
	test_run(test_params);
	test_run(test_addresses);
	test_run(test_quote);
	test_run(test_envelope_utf8);
	test_run(test_depth_limit);
	test_run(test_many_parts);
	test_run(test_huge_header);
	test_run(test_boundary_edge_cases);
	test_run(test_transfer_decoding);
	test_run(test_section_part);
	test_run(test_truncated_headers);
	test_run(test_nested_empty_part);
	return test_exit();
}
