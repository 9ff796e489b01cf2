/*
 * test_serve.c -- unit tests of the request decoding of runner/serve.c:
 * mp_serve_body_kind, mp_serve_parse_size and mp_serve_decode.
 *
 * The model here has four features a, b, c, d.  Each accepted format is
 * decoded and its matrix compared value by value; each error is checked for
 * its exact message, because naming the row and the field is the feature.
 * JSON numbers and CSV cells must give the same floats (the server and
 * `mlpipe predict` must agree), and every allocation failure must give
 * MP_E_NOMEM without a leak (jansson and libcsv allocate through mp_malloc
 * here, so cmocka's allocator sees their memory too).
 *
 * The HTTP side (routing, status codes, limits, shutdown) is tested end to
 * end by tests/e2e/t_serve.sh against the real binary.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* jansson's default allocator, restored after each test (before cmocka's
 * header renames malloc and free). */
static void restore_json_alloc(void) { json_set_alloc_funcs(malloc, free); }

/* cmocka last: with UNIT_TESTING it redefines malloc and friends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csv.h"
#include "serve.h"

static char *features[] = { "a", "b", "c", "d" };
#define N_FEAT 4

/* ---------------------------------------------------------------- helpers */

static void *json_malloc(size_t n) { return mp_malloc(n); }
static void json_free(void *p) { mp_free(p); }

static int setup(void **state) {
    (void)state;
    mp_mem_fail_after(0);
    json_set_alloc_funcs(json_malloc, json_free);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mp_mem_fail_after(0);
    restore_json_alloc();
    return 0;
}

/* Decodes body (a C string) and insists that it works. */
static mp_matrix must_decode(mp_body_kind kind, const char *body) {
    mp_err err = { 0 };
    mp_matrix X = { 0 };
    int rc = mp_serve_decode(kind, body, strlen(body), features, N_FEAT, &X, &err);
    if (rc != MP_OK) fail_msg("decode '%s': %s", body, err.msg);
    assert_int_equal(X.n_cols, N_FEAT);
    return X;
}

/* X must be rows x 4 and equal want (row-major). */
static void assert_matrix(mp_matrix *X, size_t rows, const float *want) {
    assert_int_equal(X->n_rows, rows);
    for (size_t i = 0; i < rows * N_FEAT; i++)
        if (X->data[i] != want[i])
            fail_msg("X[%zu][%zu] = %.9g, want %.9g", i / N_FEAT, i % N_FEAT,
                     (double)X->data[i], (double)want[i]);
    mp_matrix_release(X);
}

/* Decoding body must fail with MP_E_PARSE and exactly msg (or, when msg
 * ends with '*', a message starting with the rest). */
static void expect_error(mp_body_kind kind, const char *body, const char *msg) {
    mp_err err = { 0 };
    mp_matrix X = { 0 };
    int rc = mp_serve_decode(kind, body, strlen(body), features, N_FEAT, &X, &err);
    size_t n = strlen(msg);
    bool prefix = n > 0 && msg[n - 1] == '*';
    bool ok = prefix ? strncmp(err.msg, msg, n - 1) == 0 : strcmp(err.msg, msg) == 0;
    if (rc != MP_E_PARSE || !ok)
        fail_msg("decode '%s': got %d '%s', want %d '%s'", body, rc, err.msg, MP_E_PARSE, msg);
    assert_null(X.data);
}

static const float row1234[] = { 1, 2, 3, 4 };

/* ---------------------------------------------------------------- headers */

static void test_body_kind(void **state) {
    (void)state;
    assert_int_equal(mp_serve_body_kind("application/json"), MP_BODY_JSON);
    assert_int_equal(mp_serve_body_kind("Application/JSON; charset=UTF-8"), MP_BODY_JSON);
    assert_int_equal(mp_serve_body_kind(" application/json ;charset=utf-8"), MP_BODY_JSON);
    assert_int_equal(mp_serve_body_kind("text/csv"), MP_BODY_CSV);
    assert_int_equal(mp_serve_body_kind("text/CSV; header=present"), MP_BODY_CSV);
    assert_int_equal(mp_serve_body_kind("text/plain"), MP_BODY_UNSUPPORTED);
    assert_int_equal(mp_serve_body_kind("application/jsonl"), MP_BODY_UNSUPPORTED);
    assert_int_equal(mp_serve_body_kind("application/x-www-form-urlencoded"),
                     MP_BODY_UNSUPPORTED);
    assert_int_equal(mp_serve_body_kind(""), MP_BODY_UNSUPPORTED);
    assert_int_equal(mp_serve_body_kind(NULL), MP_BODY_UNSUPPORTED);
}

static void test_parse_size(void **state) {
    (void)state;
    size_t n = 0;
    assert_true(mp_serve_parse_size("1048576", &n));
    assert_int_equal(n, 1048576);
    assert_true(mp_serve_parse_size("10m", &n));
    assert_int_equal(n, (size_t)10 << 20);
    assert_true(mp_serve_parse_size("4K", &n));
    assert_int_equal(n, 4096);
    assert_true(mp_serve_parse_size("1g", &n));
    assert_int_equal(n, (size_t)1 << 30);
    n = 7;
    const char *bad[] = { "0", "", "-5", "abc", "10x", "10mb", " 10", "1e6",
                          "99999999999999999999", "18014398509481984g" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (mp_serve_parse_size(bad[i], &n)) fail_msg("'%s' accepted", bad[i]);
    assert_int_equal(n, 7);     /* untouched on failure */
}

/* ---------------------------------------------------------------- JSON */

static void test_instances(void **state) {
    (void)state;
    mp_matrix X = must_decode(MP_BODY_JSON,
                              "{\"instances\": [[1, 2, 3, 4], [5.5, -6e-3, 0, 1e30]]}");
    assert_matrix(&X, 2, (const float[]){ 1, 2, 3, 4, 5.5f, -6e-3f, 0, 1e30f });
    /* rows as objects, keys in any order; the two row kinds may mix */
    X = must_decode(MP_BODY_JSON, "{\"instances\": [{\"d\": 4, \"b\": 2, \"a\": 1, \"c\": 3},"
                                  " [5, 6, 7, 8]]}");
    assert_matrix(&X, 2, (const float[]){ 1, 2, 3, 4, 5, 6, 7, 8 });
}

static void test_inputs(void **state) {
    (void)state;
    mp_matrix X = must_decode(MP_BODY_JSON, "{\"inputs\": [[1, 2, 3, 4]]}");
    assert_matrix(&X, 1, row1234);
    /* columns: {"name": [values]} */
    X = must_decode(MP_BODY_JSON, "{\"inputs\": {\"c\": [3, 7], \"a\": [1, 5], \"b\": [2, 6],"
                                  " \"d\": [4, 8]}}");
    assert_matrix(&X, 2, (const float[]){ 1, 2, 3, 4, 5, 6, 7, 8 });
}

static void test_dataframe_split(void **state) {
    (void)state;
    mp_matrix X = must_decode(MP_BODY_JSON,
        "{\"dataframe_split\": {\"index\": [0, 1], \"columns\": [\"d\", \"c\", \"b\", \"a\"],"
        " \"data\": [[4, 3, 2, 1], [8, 7, 6, 5]]}}");
    assert_matrix(&X, 2, (const float[]){ 1, 2, 3, 4, 5, 6, 7, 8 });
}

static void test_dataframe_records(void **state) {
    (void)state;
    mp_matrix X = must_decode(MP_BODY_JSON,
        "{\"dataframe_records\": [{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4},"
        " {\"b\": 6, \"a\": 5, \"d\": 8, \"c\": 7}]}");
    assert_matrix(&X, 2, (const float[]){ 1, 2, 3, 4, 5, 6, 7, 8 });
}

static void test_json_errors(void **state) {
    (void)state;
    /* the examples of the spec */
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,4], [1,2,3,4], [1,2,3]]}",
                 "row 3: expected 4 features, got 3");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,4], [1,\"x\",3,4]]}",
                 "row 2, field 'b': not a number");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,4],]}",
                 "malformed JSON at line 1, column 26 (position 26): unexpected token near ']'");
    expect_error(MP_BODY_JSON, "{\n  \"instances\": [\n    [1, 2, 3, 4]\n    x",
                 "malformed JSON at line 4, column 5*");
    /* values */
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,null,4]]}", "row 1, field 'c': not a number");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,true]]}", "row 1, field 'd': not a number");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,[4]]]}", "row 1, field 'd': not a number");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1e39,2,3,4]]}",
                 "row 1, field 'a': 1e+39 is out of range for a float");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,4,5]]}",
                 "row 1: expected 4 features, got 5");
    /* shape */
    expect_error(MP_BODY_JSON, "[[1,2,3,4]]", "the body must be a JSON object with one key of "
                 "instances, inputs, dataframe_split or dataframe_records, not an array");
    expect_error(MP_BODY_JSON, "{}", "the body has none of the keys instances, inputs, "
                 "dataframe_split or dataframe_records");
    expect_error(MP_BODY_JSON, "{\"rows\": [[1,2,3,4]]}", "unknown key 'rows' (expected "
                 "instances, inputs, dataframe_split or dataframe_records)");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,4]], \"inputs\": [[1,2,3,4]]}",
                 "give only one of instances, inputs, dataframe_split or dataframe_records "
                 "(got 'instances' and 'inputs')");
    expect_error(MP_BODY_JSON, "{\"instances\": {\"a\": 1}}",
                 "'instances' must be an array of rows, not an object");
    expect_error(MP_BODY_JSON, "{\"instances\": []}", "'instances' holds no rows");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,4], 7]}",
                 "row 2: expected an array or an object, got a number");
    expect_error(MP_BODY_JSON, "{\"instances\": [{\"a\": 1, \"b\": 2, \"d\": 4}]}",
                 "row 1: missing feature 'c'");
    expect_error(MP_BODY_JSON, "{\"instances\": [[1,2,3,4], {\"a\": 1, \"b\": 2, \"c\": 3, "
                 "\"d\": 4, \"colour\": 5}]}", "row 2: unknown column 'colour'");
    expect_error(MP_BODY_JSON, "{\"instances\": [{\"a\": 1, \"a\": 1, \"b\": 2, \"c\": 3}]}",
                 "malformed JSON at line 1, column 27 (position 27): duplicate object key "
                 "near '\"a\"'");
    expect_error(MP_BODY_JSON, "", "empty request body");
    expect_error(MP_BODY_JSON, "   ", "malformed JSON at line 1, column 3*");
    /* a long unknown name is cut in the message */
    expect_error(MP_BODY_JSON, "{\"instances\": [{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4, "
                 "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
                 "\": 5}]}", "row 1: unknown column "
                 "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'");
}

static void test_json_format_errors(void **state) {
    (void)state;
    /* inputs as columns */
    expect_error(MP_BODY_JSON, "{\"inputs\": {\"a\": [1, 2], \"b\": [2], \"c\": [3, 3], "
                 "\"d\": [4, 4]}}", "column 'b' has 1 values, column 'a' has 2");
    expect_error(MP_BODY_JSON, "{\"inputs\": {\"a\": [1], \"b\": [2], \"d\": [4]}}",
                 "missing column 'c'");
    expect_error(MP_BODY_JSON, "{\"inputs\": {\"a\": [1], \"b\": [2], \"c\": [3], \"d\": [4], "
                 "\"e\": [5]}}", "unknown column 'e'");
    expect_error(MP_BODY_JSON, "{\"inputs\": {\"a\": 1, \"b\": [2], \"c\": [3], \"d\": [4]}}",
                 "column 'a' must be an array, not a number");
    expect_error(MP_BODY_JSON, "{\"inputs\": {\"a\": [1], \"b\": [2], \"c\": [\"3\"], \"d\": [4]}}",
                 "row 1, field 'c': not a number");
    /* dataframe_split */
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", \"c\", \"d\", "
                 "\"e\"], \"data\": [[1, 2, 3, 4, 5]]}}", "unknown column 'e'");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", \"c\"], "
                 "\"data\": [[1, 2, 3]]}}", "missing column 'd'");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", \"a\", \"d\"], "
                 "\"data\": [[1, 2, 3, 4]]}}", "duplicate column 'a'");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", 3, \"d\"], "
                 "\"data\": [[1, 2, 3, 4]]}}", "dataframe_split: column 3 is a number, not a name");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", \"c\", \"d\"], "
                 "\"data\": [[1, 2, 3, 4], [1, 2, 3]]}}", "row 2: expected 4 features, got 3");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", \"c\", \"d\"], "
                 "\"data\": [[1, 2, 3, 4], {\"a\": 1}]}}",
                 "row 2: expected an array, got an object");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"d\", \"c\", \"b\", \"a\"], "
                 "\"data\": [[1, 2, \"x\", 4]]}}", "row 1, field 'b': not a number");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", \"c\", \"d\"], "
                 "\"data\": []}}", "'dataframe_split' holds no rows");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", \"c\", \"d\"], "
                 "\"rows\": []}}",
                 "dataframe_split: unknown key 'rows' "
                 "(expected columns, data and optionally index)");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"a\", \"b\", \"c\", \"d\"]}}",
                 "dataframe_split needs arrays 'columns' and 'data'");
    expect_error(MP_BODY_JSON, "{\"dataframe_split\": [[1, 2, 3, 4]]}",
                 "'dataframe_split' must be an object, not an array");
    /* dataframe_records */
    expect_error(MP_BODY_JSON, "{\"dataframe_records\": [[1, 2, 3, 4]]}",
                 "row 1: expected an object, got an array");
    expect_error(MP_BODY_JSON, "{\"dataframe_records\": [{\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4}, "
                 "{\"a\": 1, \"b\": 2, \"c\": 3, \"x\": 4}]}", "row 2: missing feature 'd'");
    expect_error(MP_BODY_JSON, "{\"dataframe_records\": {\"a\": 1}}",
                 "'dataframe_records' must be an array of rows, not an object");
}

/* ---------------------------------------------------------------- CSV */

static void test_csv(void **state) {
    (void)state;
    /* columns by name in any order; extra columns (a target, an id) are skipped */
    mp_matrix X = must_decode(MP_BODY_CSV, "d,id,a,c,b,species\n4,x17,1,3,2,setosa\n"
                                           "8,\"not, a number\",5,7,6,virginica\n");
    assert_matrix(&X, 2, (const float[]){ 1, 2, 3, 4, 5, 6, 7, 8 });
    /* a byte order mark, CRLF, blank lines, blanks around cells, quoted numbers,
     * no final newline */
    X = must_decode(MP_BODY_CSV, "\xEF\xBB\xBF a ,b,\"c\",d\r\n\r\n 1 ,2,\"3\",4\r\n\n5,6,7,8");
    assert_matrix(&X, 2, (const float[]){ 1, 2, 3, 4, 5, 6, 7, 8 });
}

static void test_csv_errors(void **state) {
    (void)state;
    expect_error(MP_BODY_CSV, "a,b,d\n1,2,4\n", "missing column 'c'");
    expect_error(MP_BODY_CSV, "a,b,c,d,a\n1,2,3,4,1\n", "duplicate column 'a'");
    expect_error(MP_BODY_CSV, "a,b,c,d\n1,2,3,4\n1,x,3,4\n", "row 2, field 'b': not a number");
    expect_error(MP_BODY_CSV, "a,b,c,d\n1,2,3,4\n1,2,3,nan\n", "row 2, field 'd': not a number");
    expect_error(MP_BODY_CSV, "a,b,c,d\n,2,3,4\n", "row 1, field 'a': missing value");
    expect_error(MP_BODY_CSV, "a,b,c,d,e\n1,2,3,4,5\n1,2,3,4\n",
                 "row 2: expected 5 fields (as the header), got 4");
    expect_error(MP_BODY_CSV, "a,b,c,d\n1,2,3,4,5\n",
                 "row 1: expected 4 fields (as the header), got 5");
    expect_error(MP_BODY_CSV, "a,b,c,d\n1,2,3,\"4\n", "row 1: unterminated quoted field");
    expect_error(MP_BODY_CSV, "a,b,c,d\n", "no rows after the CSV header");
    expect_error(MP_BODY_CSV, "\n\n", "empty CSV body (no header row)");
    expect_error(MP_BODY_CSV, "", "empty request body");
}

/* JSON numbers and CSV cells give the same floats, and those are the floats
 * the CSV loader reads (mp_csv_parse_float), for numbers as people write
 * them: up to nine significant digits, any exponent. */
static void test_json_csv_same_floats(void **state) {
    (void)state;
    char json[64 * 1024], csv[64 * 1024];
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int round = 0; round < 50; round++) {
        size_t jn = (size_t)snprintf(json, sizeof json, "{\"instances\": [");
        size_t cn = (size_t)snprintf(csv, sizeof csv, "a,b,c,d\n");
        float want[200 * N_FEAT];
        for (int i = 0; i < 200 * N_FEAT; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            char num[40];
            int digits = 1 + (int)(x % 9), e = (int)((x >> 8) % 40) - 20;
            long long mant = (long long)((x >> 16) % 1000000000ull);
            snprintf(num, sizeof num, "%s%.*e", (x >> 60) & 1 ? "-" : "",
                     digits - 1, (double)mant * pow(10.0, e - 9));
            assert_true(mp_csv_parse_float(num, strlen(num), &want[i]));
            jn += (size_t)snprintf(json + jn, sizeof json - jn, "%s%s%s", i % N_FEAT ? ", " :
                                   i ? "], [" : "[", num, "");
            cn += (size_t)snprintf(csv + cn, sizeof csv - cn, "%s%s", num,
                                   i % N_FEAT == N_FEAT - 1 ? "\n" : ",");
        }
        snprintf(json + jn, sizeof json - jn, "]]}");
        mp_matrix J = must_decode(MP_BODY_JSON, json), C = must_decode(MP_BODY_CSV, csv);
        assert_int_equal(J.n_rows, 200);
        assert_int_equal(C.n_rows, 200);
        assert_memory_equal(J.data, want, sizeof want);
        assert_memory_equal(C.data, want, sizeof want);
        mp_matrix_release(&J);
        mp_matrix_release(&C);
    }
}

/* ---------------------------------------------------------------- allocation failures */

/* Fails allocation N = 1, 2, ..., 300 of decoding body (more than a decode
 * makes): each call must succeed or give MP_E_NOMEM, and leak nothing.  The
 * loop does not stop at the first success because libcsv retries a failed
 * allocation at half the size, so one injected failure can go unnoticed.
 * jansson's lexer ignores a failed allocation while it collects a token, so
 * the token comes out cut or invalid: for JSON any MP_E_PARSE is accepted
 * too (the client would get a 400 instead of a 500); what matters here is no
 * crash and no leak. */
static void alloc_loop(mp_body_kind kind, const char *body) {
    int n_nomem = 0, last = -1;
    for (long n = 1; n <= 300; n++) {
        mp_err err = { 0 };
        mp_matrix X = { 0 };
        mp_mem_fail_after(n);
        last = mp_serve_decode(kind, body, strlen(body), features, N_FEAT, &X, &err);
        mp_mem_fail_after(0);
        if (last == MP_OK) {
            mp_matrix_release(&X);
            continue;
        }
        bool lexer_oom = kind == MP_BODY_JSON && last == MP_E_PARSE;
        if (last != MP_E_NOMEM && !lexer_oom)
            fail_msg("allocation %ld: got %d '%s'", n, last, err.msg);
        assert_null(X.data);
        n_nomem += last == MP_E_NOMEM;
    }
    assert_true(n_nomem > 0);
    assert_int_equal(last, MP_OK);      /* 300 is past the last allocation */
}

static void test_alloc_failures(void **state) {
    (void)state;
    alloc_loop(MP_BODY_JSON,
               "{\"instances\": [[1, 2, 3, 4], {\"a\": 1, \"b\": 2, \"c\": 3, \"d\": 4}]}");
    alloc_loop(MP_BODY_JSON, "{\"dataframe_split\": {\"columns\": [\"d\", \"c\", \"b\", \"a\"],"
                             " \"data\": [[4, 3, 2, 1]]}}");
    alloc_loop(MP_BODY_JSON, "{\"inputs\": {\"a\": [1], \"b\": [2], \"c\": [3], \"d\": [4]}}");
    /* enough rows and header fields that the CSV arrays grow */
    char csv[8192];
    size_t n = (size_t)snprintf(csv, sizeof csv, "a,b,c,d");
    for (int i = 0; i < 20; i++) n += (size_t)snprintf(csv + n, sizeof csv - n, ",x%d", i);
    csv[n++] = '\n';
    for (int r = 0; r < 100; r++) {
        n += (size_t)snprintf(csv + n, sizeof csv - n, "1,2,3,4");
        for (int i = 0; i < 20; i++) n += (size_t)snprintf(csv + n, sizeof csv - n, ",%d", i);
        csv[n++] = '\n';
    }
    csv[n] = '\0';
    alloc_loop(MP_BODY_CSV, csv);
}

int main(void) {
    const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_body_kind),
        T(test_parse_size),
        T(test_instances),
        T(test_inputs),
        T(test_dataframe_split),
        T(test_dataframe_records),
        T(test_json_errors),
        T(test_json_format_errors),
        T(test_csv),
        T(test_csv_errors),
        T(test_json_csv_same_floats),
        T(test_alloc_failures),
#undef T
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
