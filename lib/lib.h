/* lib.h: protocol-free basics every module uses: allocation that aborts on
 * out-of-memory, small macros. Nothing here knows about mail. */
#ifndef MF_LIB_H
#define MF_LIB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MF_N_ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))
#define MF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MF_MAX(a, b) ((a) > (b) ? (a) : (b))
#define MF_UNUSED __attribute__((unused))
#define MF_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* Out of memory aborts the process (after a log line): callers never check. */
void *mf_malloc(size_t size);
void *mf_calloc(size_t n, size_t size);
void *mf_realloc(void *ptr, size_t size);
char *mf_strdup(const char *s);
char *mf_strndup(const char *s, size_t n);
char *mf_asprintf(const char *fmt, ...) MF_PRINTF(1, 2);
/* Frees *ptr and sets it to NULL; accepts NULL and *ptr == NULL. */
void mf_free(void *ptr_to_ptr);

/* Monotonic clock in milliseconds / microseconds. */
uint64_t mf_now_ms(void);
uint64_t mf_now_us(void);

/* Value of a hexadecimal digit (either case), or -1. */
int mf_hex_value(unsigned char c);
/* Value of a base64 digit (RFC 4648 alphabet, '+' and '/'), or -1. */
int mf_base64_value(unsigned char c);

/* Compares two byte strings in time that depends only on the lengths. */
bool mf_mem_equal_ct(const void *a, const void *b, size_t len);

#endif
