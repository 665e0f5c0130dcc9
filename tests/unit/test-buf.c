/* test-buf.c: the bounded buffer never passes its limit. */
#include "lib/buf.h"
#include "tests/unit/test.h"

TEST_DEFINE_GLOBALS

static void test_limit(void)
{
	struct buf b;
	buf_init(&b, 10);
	CHECK_INT_EQ(buf_append(&b, "12345", 5), 0);
	CHECK_INT_EQ(buf_append(&b, "123456", 6), -1);
	CHECK_INT_EQ(b.len, 5);
	CHECK_INT_EQ(buf_append(&b, "12345", 5), 0);
	CHECK_INT_EQ(buf_printf(&b, "x"), -1);
	buf_consume(&b, 3);
	CHECK_INT_EQ(b.len, 7);
	CHECK(memcmp(b.data, "4512345", 7) == 0);
	buf_free(&b);
}

static void test_printf_large(void)
{
	struct buf b;
	char big[2000];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	buf_init(&b, 0);
	CHECK_INT_EQ(buf_printf(&b, "<%s>", big), 0);
	CHECK_INT_EQ(b.len, sizeof(big) + 1);
	CHECK(b.data[0] == '<' && b.data[b.len - 1] == '>');
	buf_free(&b);
}

int main(void)
{
	test_run(test_limit);
	test_run(test_printf_large);
	return test_exit();
}
