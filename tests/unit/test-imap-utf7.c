/* test-imap-utf7.c: modified UTF-7 round trips and strict rejection of every
 * non-canonical form. */
#include "imapd/imap-utf7.h"
#include "tests/unit/test.h"

TEST_DEFINE_GLOBALS

static const char *to7(const char *utf8, char *out, size_t size)
{
	struct buf b;
	const char *ret = NULL;

	buf_init(&b, 0);
	if (imap_utf8_to_utf7(utf8, &b) == 0 && b.len < size) {
		if (b.len > 0)
			memcpy(out, b.data, b.len);
		out[b.len] = '\0';
		ret = out;
	}
	buf_free(&b);
	return ret;
}

static const char *to8(const char *utf7, char *out, size_t size)
{
	struct buf b;
	const char *ret = NULL;

	buf_init(&b, 0);
	if (imap_utf7_to_utf8(utf7, &b) == 0 && b.len < size) {
		if (b.len > 0)
			memcpy(out, b.data, b.len);
		out[b.len] = '\0';
		ret = out;
	}
	buf_free(&b);
	return ret;
}

static const struct { const char *utf8, *utf7; } pairs[] = {
	{ "INBOX", "INBOX" },
	{ "", "" },
	{ "Entw\xc3\xbcrfe", "Entw&APw-rfe" },
	{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
	  "~peter/mail/&U,BTFw-/&ZeVnLIqe-" },
	{ "A&B", "A&-B" },
	{ "&&", "&-&-" },
	{ "\xf0\x9f\x98\x80", "&2D3eAA-" },
	{ "Gel\xc3\xb6scht & \xc3\xa4hnliches", "Gel&APY-scht &- &AOQ-hnliches" },
	{ "\xd0\x9e\xd1\x82\xd0\xbf\xd1\x80\xd0\xb0\xd0\xb2\xd0\xbb\xd0\xb5\xd0\xbd\xd0\xbd\xd1\x8b\xd0\xb5",
	  "&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-" },
	{ "tab\there", "tab&AAk-here" },
};

static void test_round_trip(void)
{
	char out[256];

	for (size_t i = 0; i < MF_N_ELEMENTS(pairs); i++) {
		CHECK_STR_EQ(to7(pairs[i].utf8, out, sizeof(out)), pairs[i].utf7);
		CHECK_STR_EQ(to8(pairs[i].utf7, out, sizeof(out)), pairs[i].utf8);
		CHECK(imap_utf7_is_valid(pairs[i].utf7));
	}
}

static void test_long_run(void)
{
	char utf8[3 * 300 + 1], back[sizeof(utf8)];
	struct buf b;

	/* one run of 300 non-ASCII characters stays a single shift sequence */
	for (int i = 0; i < 300; i++)
		memcpy(utf8 + 3 * i, "\xe2\x82\xac", 3);
	utf8[sizeof(utf8) - 1] = '\0';
	buf_init(&b, 0);
	CHECK_INT_EQ(imap_utf8_to_utf7(utf8, &b), 0);
	buf_append(&b, "", 1);
	CHECK(memchr(b.data, '-', b.len) == b.data + b.len - 2);
	CHECK_STR_EQ(to8((const char *)b.data, back, sizeof(back)), utf8);
	buf_free(&b);
}

static void test_invalid_utf7(void)
{
	static const char *bad[] = {
		"&", "&U,BTFw", "&U,BTFw-&ZeVnLIqe-", "&AGE-", "&AGEAYg-",
		"&U,B-", "&U,BTF-", "&2D0-", "&3gA-", "&2D3YPQ-", "&Jjo!-",
		"a\x80", "new\nline", "&AAA-", "&-&AOQ", "&AOQ=-", "&A-",
	};
	char out[64];

	for (size_t i = 0; i < MF_N_ELEMENTS(bad); i++) {
		test_checks++;
		if (to8(bad[i], out, sizeof(out)) != NULL || imap_utf7_is_valid(bad[i]))
			TEST_FAIL_AT(__FILE__, __LINE__, "accepted \"%s\"", bad[i]);
	}
}

static void test_invalid_utf8(void)
{
	static const char *bad[] = {
		"\x80", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
		"\xc3", "a\xe2\x82", "\xff", "\xf8\x88\x80\x80\x80",
	};
	char out[64];

	for (size_t i = 0; i < MF_N_ELEMENTS(bad); i++) {
		test_checks++;
		if (to7(bad[i], out, sizeof(out)) != NULL)
			TEST_FAIL_AT(__FILE__, __LINE__, "accepted UTF-8 #%zu", i);
	}
}

static void test_plain(void)
{
	CHECK(imap_utf7_is_plain("Sent Items/2024"));
	CHECK(!imap_utf7_is_plain("A&-B"));
	CHECK(!imap_utf7_is_plain("\xc3\xa4"));
}

static void test_limit(void)
{
	struct buf b;

	buf_init(&b, 5);
	CHECK_INT_EQ(imap_utf8_to_utf7("\xc3\xbc\xc3\xbc", &b), -1);
	CHECK(b.len <= 5);
	buf_free(&b);
}

int main(void)
{
	test_run(test_round_trip);
	test_run(test_long_run);
	test_run(test_invalid_utf7);
	test_run(test_invalid_utf8);
	test_run(test_plain);
	test_run(test_limit);
	return test_exit();
}
