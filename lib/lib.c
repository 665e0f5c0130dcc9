/* lib.c: allocation wrappers, clocks, constant-time compare. */
#include "lib/lib.h"
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void oom(size_t size)
{
	log_error("out of memory allocating %zu bytes", size);
	abort();
}

void *mf_malloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);
	if (p == NULL)
		oom(size);
	return p;
}

void *mf_calloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
	if (p == NULL)
		oom(n * size);
	return p;
}

void *mf_realloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size == 0 ? 1 : size);
	if (p == NULL)
		oom(size);
	return p;
}

char *mf_strdup(const char *s)
{
	return mf_strndup(s, strlen(s));
}

char *mf_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = mf_malloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *mf_asprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	if (vasprintf(&p, fmt, ap) < 0)
		oom(strlen(fmt));
	va_end(ap);
	return p;
}

void mf_free(void *ptr_to_ptr)
{
	void **pp = ptr_to_ptr;
	if (pp == NULL)
		return;
	free(*pp);
	*pp = NULL;
}

uint64_t mf_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t mf_now_ms(void)
{
	return mf_now_us() / 1000u;
}

bool mf_mem_equal_ct(const void *a, const void *b, size_t len)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char acc = 0;
	for (size_t i = 0; i < len; i++)
		acc |= x[i] ^ y[i];
	return acc == 0;
}

int mf_hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int mf_base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	return c == '+' ? 62 : c == '/' ? 63 : -1;
}
