/*
 * test_predict.c -- unit tests of the output text helpers of
 * runner/predict.c, which `mlpipe predict` and `mlpipe serve` share:
 * mp_format_float (must be printf's "%.9g" byte for byte), the JSON string
 * encoder (valid JSON whatever the bytes), the output buffer (file sink and
 * memory, errors kept), and the JSON value of one prediction per task.
 *
 * Batch predict itself (formats, stdin/stdout, every model kind) is tested
 * end to end by tests/e2e/t_predict.sh.
 */
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* cmocka last: with UNIT_TESTING it redefines malloc and friends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "predict.h"

static int setup(void **state) {
    (void)state;
    mp_mem_fail_after(0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mp_mem_fail_after(0);
    return 0;
}

/* The formatter must match snprintf("%.9g") for v. */
static void check_float(float v) {
    char got[MP_FLOAT_CHARS], want[64];
    size_t n = mp_format_float(v, got);
    snprintf(want, sizeof want, "%.9g", (double)v);
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    if (strcmp(got, want) != 0 || n != strlen(want))
        fail_msg("0x%08x: got '%s' (%zu), want '%s'", bits, got, n, want);
}

static float from_bits(uint32_t b) {
    float v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* ---------------------------------------------------------------- floats */

static void test_float_special(void **state) {
    (void)state;
    const float v[] = { 0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 0.1f, 1e-4f, 9.99999975e-05f, 1e-5f,
                        123456789.0f, 999999936.0f, 1e9f, 1e10f, 16777216.0f, 3.14159265f,
                        FLT_MAX, -FLT_MAX, FLT_MIN, FLT_TRUE_MIN, 1e-32f, 1e-33f, 1e-38f,
                        INFINITY, -INFINITY, NAN, 0.999999999f, 9.9999999e-5f, 99999999.5f,
                        1.73634382e-16f, 0.000311237731f, 2.5f, 0.125f, 100.0f, 1e8f };
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) check_float(v[i]);
    char out[MP_FLOAT_CHARS];
    mp_format_float(0.97f, out);
    assert_string_equal(out, "0.970000029");
    mp_format_float(1e-5f, out);
    assert_string_equal(out, "9.99999975e-06");
    /* every output reads back as the same float */
    for (uint32_t b = 1; b < 0x7f800000u; b += 0x00012345u) {
        float f = from_bits(b), back;
        mp_format_float(f, out);
        back = strtof(out, NULL);
        assert_memory_equal(&f, &back, sizeof f);
    }
}

/* Random bit patterns (every exponent) and values like probabilities and
 * predictions (the fast path), against glibc's printf. */
static void test_float_random(void **state) {
    (void)state;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 300000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        check_float(from_bits((uint32_t)x));
        double u = (double)(x >> 11) / 9007199254740992.0;     /* [0, 1) */
        check_float((float)u);
        check_float((float)(u * u * u * u));
        check_float((float)((u - 0.5) * 1e6));
    }
    /* every float of two whole binades: [1, 2) and [1e-3-ish, 2e-3) */
    for (uint32_t b = 0x3f800000u; b < 0x3f800000u + (1u << 23); b += 7) check_float(from_bits(b));
    for (uint32_t b = 0x3a800000u; b < 0x3a800000u + (1u << 23); b += 7) check_float(from_bits(b));
}

/* ---------------------------------------------------------------- JSON strings */

static void expect_json(const char *in, size_t n, const char *want) {
    mp_obuf b;
    mp_obuf_init(&b, NULL);
    mp_obuf_json_string(&b, in, n);
    size_t len;
    char *got = mp_obuf_take(&b, &len);
    assert_non_null(got);
    if (len != strlen(want) || memcmp(got, want, len) != 0)
        fail_msg("got '%.*s', want '%s'", (int)len, got, want);
    mp_free(got);
}

static void test_json_string(void **state) {
    (void)state;
    expect_json("setosa", 6, "\"setosa\"");
    expect_json("", 0, "\"\"");
    expect_json("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
    expect_json("t\tn\nz", 5, "\"t\\u0009n\\u000az\"");
    expect_json("nul\0x", 5, "\"nul\\u0000x\"");
    const char *utf8 = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";    /* é, €, an emoji */
    expect_json(utf8, strlen(utf8), "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
    /* not UTF-8: each bad byte becomes U+FFFD */
    expect_json("\xff", 1, "\"\\ufffd\"");
    expect_json("a\xc3", 2, "\"a\\ufffd\"");                     /* cut sequence */
    expect_json("\xc0\xaf", 2, "\"\\ufffd\\ufffd\"");            /* overlong '/' */
    expect_json("\xed\xa0\x80", 3, "\"\\ufffd\\ufffd\\ufffd\"");  /* a UTF-16 surrogate */
    expect_json("\xf4\x90\x80\x80", 4, "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");   /* > U+10FFFF */
    expect_json("\xe2\x82x", 3, "\"\\ufffd\\ufffdx\"");
}

/* ---------------------------------------------------------------- obuf */

static void test_obuf_numbers(void **state) {
    (void)state;
    mp_obuf b;
    mp_obuf_init(&b, NULL);
    mp_obuf_long(&b, 0);
    mp_obuf_putc(&b, ' ');
    mp_obuf_long(&b, -17);
    mp_obuf_putc(&b, ' ');
    mp_obuf_long(&b, LLONG_MIN);
    mp_obuf_putc(&b, ' ');
    mp_obuf_long(&b, LLONG_MAX);
    mp_obuf_putc(&b, ' ');
    mp_obuf_float(&b, NAN, true);
    mp_obuf_putc(&b, ' ');
    mp_obuf_float(&b, -INFINITY, false);
    mp_obuf_putc(&b, ' ');
    mp_obuf_float(&b, 0.25f, true);
    mp_obuf_putc(&b, '\0');
    size_t len;
    char *s = mp_obuf_take(&b, &len);
    assert_string_equal(s, "0 -17 -9223372036854775808 9223372036854775807 null -inf 0.25");
    mp_free(s);
    /* nothing written: take gives NULL */
    mp_obuf_init(&b, NULL);
    assert_null(mp_obuf_take(&b, &len));
    assert_int_equal(len, 0);
}

/* A file sink gets every byte, in order, across many flushes. */
static void test_obuf_file(void **state) {
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    mp_obuf b;
    mp_obuf_init(&b, f);
    size_t total = 0;
    for (int i = 0; i < 300000; i++) {
        char line[32];
        int n = snprintf(line, sizeof line, "%d,row\n", i);
        mp_obuf_put(&b, line, (size_t)n);
        total += (size_t)n;
    }
    char *big = mp_malloc(3 * MP_OBUF_BLOCK);           /* one item over a block */
    memset(big, 'x', 3 * MP_OBUF_BLOCK);
    mp_obuf_put(&b, big, 3 * MP_OBUF_BLOCK);
    total += 3 * MP_OBUF_BLOCK;
    mp_free(big);
    assert_int_equal(mp_obuf_flush(&b), MP_OK);
    mp_obuf_release(&b);
    assert_int_equal(ftell(f), (long)total);
    rewind(f);
    char line[32];
    for (int i = 0; i < 300000; i++) {
        char want[32];
        snprintf(want, sizeof want, "%d,row\n", i);
        assert_non_null(fgets(line, sizeof line, f));
        assert_string_equal(line, want);
    }
    fclose(f);
}

/* A failed write is kept (with errno) and later appends do nothing. */
static void test_obuf_write_error(void **state) {
    (void)state;
    FILE *f = fopen("/dev/full", "w");
    if (!f) skip();
    setvbuf(f, NULL, _IONBF, 0);
    mp_obuf b;
    mp_obuf_init(&b, f);
    for (int i = 0; i < 200000; i++) mp_obuf_puts(&b, "0123456789");
    mp_obuf_flush(&b);
    assert_int_equal(b.err, MP_E_IO);
    assert_int_equal(b.err_no, ENOSPC);
    mp_obuf_puts(&b, "more");
    assert_int_equal(mp_obuf_flush(&b), MP_E_IO);
    mp_obuf_release(&b);
    fclose(f);
}

static void test_obuf_nomem(void **state) {
    (void)state;
    for (long n = 1; n <= 3; n++) {
        mp_obuf b;
        mp_obuf_init(&b, NULL);
        mp_mem_fail_after(n);
        for (int i = 0; i < 1000; i++) mp_obuf_puts(&b, "0123456789");
        mp_mem_fail_after(0);
        assert_int_equal(b.err, MP_E_NOMEM);
        size_t len;
        assert_null(mp_obuf_take(&b, &len));    /* frees what was there */
    }
}

/* ---------------------------------------------------------------- predictions */

static char *classes[] = { "setosa", "versi\"color", "virginica" };

static char *put_json(const mp_model_file *mf, char *const *names, const float *scores) {
    mp_obuf b;
    mp_obuf_init(&b, NULL);
    mp_predict_put_json(mf, names, scores, &b);
    mp_obuf_putc(&b, '\0');
    size_t len;
    return mp_obuf_take(&b, &len);
}

static void expect_put(const mp_model_file *mf, char *const *names, const float *scores,
                       const char *want) {
    char *got = put_json(mf, names, scores);
    assert_string_equal(got, want);
    mp_free(got);
}

static void test_put_json(void **state) {
    (void)state;
    mp_model m = { .task = MP_TASK_CLASSIFICATION, .n_outputs = 3, .has_proba = true };
    mp_model_file mf = { .model = &m, .class_names = classes, .n_classes = 3 };
    mp_err err = { 0 };
    char **names = mp_predict_json_names(&mf, &err);
    assert_non_null(names);
    assert_string_equal(names[1], "\"versi\\\"color\"");
    expect_put(&mf, names, (const float[]){ 0.1f, 0.7f, 0.2f }, "\"versi\\\"color\"");
    expect_put(&mf, NULL, (const float[]){ 0.1f, 0.7f, 0.2f }, "\"versi\\\"color\"");
    expect_put(&mf, names, (const float[]){ 0.4f, 0.2f, 0.4f }, "\"setosa\"");   /* first on ties */
    expect_put(&mf, names, (const float[]){ NAN, 0.2f, 0.3f }, "\"virginica\"");
    expect_put(&mf, names, (const float[]){ 0.5f, NAN, 0.3f }, "\"setosa\"");
    mp_predict_names_free(names, 3);
    /* a classifier without names: the index */
    mp_model_file anon = { .model = &m };
    assert_null(mp_predict_json_names(&anon, &err));
    assert_int_equal(err.code, MP_OK);
    expect_put(&anon, NULL, (const float[]){ 0.1f, 0.2f, 0.7f }, "2");
    /* regression: the value, null when not finite */
    mp_model r = { .task = MP_TASK_REGRESSION, .n_outputs = 1 };
    mp_model_file reg = { .model = &r };
    expect_put(&reg, NULL, (const float[]){ 152.25f }, "152.25");
    expect_put(&reg, NULL, (const float[]){ -0.1f }, "-0.100000001");
    expect_put(&reg, NULL, (const float[]){ INFINITY }, "null");
    /* clustering: an integer */
    mp_model k = { .task = MP_TASK_CLUSTERING, .n_outputs = 1 };
    mp_model_file km = { .model = &k };
    expect_put(&km, NULL, (const float[]){ 3.0f }, "3");
    expect_put(&km, NULL, (const float[]){ 0.0f }, "0");
}

static void test_json_names_nomem(void **state) {
    (void)state;
    mp_model m = { .task = MP_TASK_CLASSIFICATION, .n_outputs = 3, .has_proba = true };
    mp_model_file mf = { .model = &m, .class_names = classes, .n_classes = 3 };
    for (long n = 1;; n++) {
        mp_err err = { 0 };
        mp_mem_fail_after(n);
        char **v = mp_predict_json_names(&mf, &err);
        mp_mem_fail_after(0);
        if (v) {
            mp_predict_names_free(v, 3);
            break;
        }
        assert_int_equal(err.code, MP_E_NOMEM);
    }
}

static void test_parse_format(void **state) {
    (void)state;
    int f = -1;
    assert_true(mp_predict_parse_format("csv", &f));
    assert_int_equal(f, MP_FORMAT_CSV);
    assert_true(mp_predict_parse_format("jsonl", &f));
    assert_int_equal(f, MP_FORMAT_JSONL);
    assert_false(mp_predict_parse_format("json", &f));
    assert_false(mp_predict_parse_format("CSV", &f));
    assert_int_equal(f, MP_FORMAT_JSONL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_float_special),
        T(test_float_random),
        T(test_json_string),
        T(test_obuf_numbers),
        T(test_obuf_file),
        T(test_obuf_write_error),
        T(test_obuf_nomem),
        T(test_put_json),
        T(test_json_names_nomem),
        T(test_parse_format),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
