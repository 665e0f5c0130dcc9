/* test.h: the unit-test harness. A test file defines test functions and a
 * main() that calls test_run() for each; the binary exits non-zero when any
 * check failed, and pytest (tests/test_unit.py) runs every binary. */
#ifndef MF_TEST_H
#define MF_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern int test_failures;
extern int test_checks;
extern const char *test_current;

#define TEST_FAIL_AT(file, line, ...) do { \
	fprintf(stderr, "FAIL %s (%s:%d): ", test_current, file, line); \
	fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); test_failures++; \
	} while (0)

#define CHECK(expr) do { test_checks++; if (!(expr)) \
	TEST_FAIL_AT(__FILE__, __LINE__, "%s", #expr); } while (0)
#define CHECK_INT_EQ(a, b) do { long long a_ = (long long)(a), b_ = (long long)(b); \
	test_checks++; if (a_ != b_) TEST_FAIL_AT(__FILE__, __LINE__, \
	"%s == %lld, expected %s == %lld", #a, a_, #b, b_); } while (0)
#define CHECK_STR_EQ(a, b) do { const char *a_ = (a), *b_ = (b); test_checks++; \
	if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) TEST_FAIL_AT(__FILE__, __LINE__, \
	"%s == \"%s\", expected \"%s\"", #a, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)

#define TEST_DEFINE_GLOBALS int test_failures, test_checks; const char *test_current = "";
#define test_run(fn) do { int before_ = test_failures; test_current = #fn; fn(); \
	printf("%s %s\n", test_failures == before_ ? "ok  " : "FAIL", #fn); } while (0)
#define test_exit() (printf("%d checks, %d failed\n", test_checks, test_failures), \
	(test_failures == 0 && test_checks > 0) ? 0 : 1)

#endif
