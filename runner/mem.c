/*
 * mem.c -- the allocator every module goes through.
 *
 * One choke point gives two things: unit tests built with -DUNIT_TESTING get
 * cmocka's checked allocator (leaks and overruns fail the test), and a
 * countdown (mp_mem_fail_after) fails the Nth allocation on purpose so tests
 * can prove each failure path returns MP_E_NOMEM and leaks nothing, the way
 * SQLite's fault-simulation tests do.
 */
#include "mp.h"

#include <stdlib.h>
#include <string.h>

#ifdef UNIT_TESTING
#include <stdarg.h>
#include <setjmp.h>
#include <cmocka.h>
#define RAW_MALLOC(n)     test_malloc(n)
#define RAW_CALLOC(n, s)  test_calloc(n, s)
#define RAW_REALLOC(p, n) test_realloc(p, n)
#define RAW_FREE(p)       test_free(p)
#else
#define RAW_MALLOC(n)     malloc(n)
#define RAW_CALLOC(n, s)  calloc(n, s)
#define RAW_REALLOC(p, n) realloc(p, n)
#define RAW_FREE(p)       free(p)
#endif

static long fail_countdown;     /* 0 = off; 1 = the next allocation fails */

void mp_mem_fail_after(long n) { fail_countdown = n; }

static bool should_fail(void) {
    if (fail_countdown <= 0) return false;
    return --fail_countdown == 0;
}

size_t mp_mul_size(size_t n, size_t size) {
    if (size != 0 && n > SIZE_MAX / size) return SIZE_MAX;
    return n * size;
}

void *mp_malloc(size_t n) {
    if (should_fail() || n == SIZE_MAX) return NULL;
    return RAW_MALLOC(n ? n : 1);
}

void *mp_calloc(size_t n, size_t size) {
    if (should_fail() || mp_mul_size(n, size) == SIZE_MAX) return NULL;
    return RAW_CALLOC(n ? n : 1, size ? size : 1);
}

void *mp_realloc(void *p, size_t n) {
    if (should_fail() || n == SIZE_MAX) return NULL;
    return RAW_REALLOC(p, n ? n : 1);
}

void mp_free(void *p) {
    if (p) RAW_FREE(p);
}

char *mp_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mp_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}
