/*
 * test_csv.c -- unit tests of runner/csv.c (mp_csv_read and its number
 * parser) and of the `load: csv` stage (stages/load_csv.c).
 *
 * Fixtures are small files in tests/data/csv/ (each named after what it
 * breaks), so the binary runs from the repository root, as `make unit` does.
 * Larger or random inputs are written by the tests into a mkdtemp folder.
 * Every error test asserts the code, the exact where ("FILE:LINE:COL") and a
 * part of the message, because pointing at the right cell is the feature.
 *
 * Covered: quoting (delimiter and newline inside quotes, line numbers after
 * it), tab / semicolon / space delimiters, CRLF, a UTF-8 BOM, blank lines,
 * trimming, stdin; string, numeric and no targets; columns / exclude /
 * predict-style selection; each error of the loader; missing: drop; the
 * float parser against strtof bit for bit on ~1e6 strings; the quote-free
 * path (short decimals eight characters at a time) against strtof, lines with
 * quotes between plain ones, and error places on both paths; files of 8 MiB+
 * read by two threads (errors in either half, quotes, dropped rows and blank
 * lines, a quoted cell across the split, row estimates off either way); the
 * stage's parameters, check hook, metrics and log line; iris; and
 * allocation-failure loops (fail the Nth allocation, N = 1, 2, ... until the
 * call succeeds; each failure must be MP_E_NOMEM, and cmocka's allocator
 * catches any leak).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka last: with UNIT_TESTING it redefines malloc and friends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "csv.h"

#define DIR "tests/data/csv/"

extern const mp_stage_ops mp_stage_load_csv;

/* ---------------------------------------------------------------- helpers */

static char last_log[2048];     /* the last info message logged */

static void capture_log(int level, const char *msg, void *ud) {
    (void)ud;
    if (level <= MP_LOG_INFO) snprintf(last_log, sizeof last_log, "%s", msg);
}

static int setup(void **state) {
    (void)state;
    last_log[0] = '\0';
    mp_log_set_sink(capture_log, NULL);
    mp_mem_fail_after(0);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mp_log_set_sink(NULL, NULL);
    mp_mem_fail_after(0);
    return 0;
}

static mp_csv_opts opts_target(const char *target) {
    mp_csv_opts o;
    mp_csv_opts_init(&o);
    o.target = target;
    return o;
}

/* Reads path and insists that it works. */
static mp_dataset *must_load(const char *path, const mp_csv_opts *o) {
    mp_err err = { 0 };
    mp_dataset *ds = NULL;
    int rc = mp_csv_read(path, o, &ds, &err);
    if (rc != MP_OK) fail_msg("%s: %s: %s", path, err.where, err.msg);
    assert_non_null(ds);
    return ds;
}

/* Reads path and insists on the error: code, exact where, message part. */
static void expect_error(const char *path, const mp_csv_opts *o, int code, const char *where,
                         const char *msg_part) {
    mp_err err = { 0 };
    mp_dataset *ds = NULL;
    int rc = mp_csv_read(path, o, &ds, &err);
    if (rc != code || strcmp(err.where, where) != 0 || !strstr(err.msg, msg_part))
        fail_msg("%s: got code %d where '%s' msg '%s'; want %d '%s' '...%s...'", path, rc,
                 err.where, err.msg, code, where, msg_part);
    assert_int_equal(err.code, code);
    assert_null(ds);
}

static void assert_row(const mp_dataset *ds, size_t i, const float *want) {
    for (size_t j = 0; j < ds->X.n_cols; j++)
        if (MP_AT(&ds->X, i, j) != want[j])
            fail_msg("X[%zu][%zu] = %.9g, want %.9g", i, j, (double)MP_AT(&ds->X, i, j),
                     (double)want[j]);
}

static void assert_names(char **got, size_t n, const char *const *want) {
    for (size_t i = 0; i < n; i++) assert_string_equal(got[i], want[i]);
}

static char tmpdir[64];

static int setup_tmp(void **state) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/test_csv.XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    return setup(state);
}

static int teardown_tmp(void **state) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) return -1;
    return teardown(state);
}

static void tmp_path(char *out, size_t cap, const char *name) {
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* ---------------------------------------------------------------- good files */

static void test_quoted_fields(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("species");
    mp_dataset *ds = must_load(DIR "good.csv", &o);
    assert_int_equal(ds->X.n_rows, 4);
    assert_int_equal(ds->X.n_cols, 2);
    assert_names(ds->feature_names, 2, (const char *const[]){ "sepal_length", "sepal_width" });
    assert_string_equal(ds->target_name, "species");
    assert_int_equal(ds->task, MP_TASK_CLASSIFICATION);
    assert_int_equal(ds->n_classes, 3);
    /* the delimiter and a newline inside quotes stay in the class names */
    assert_names(ds->class_names, 3, (const char *const[]){ "setosa", "versi,color", "virgi\nnica" });
    const double y[] = { 0, 1, 2, 0 };
    const size_t lines[] = { 2, 3, 4, 6 };     /* the 3rd record spans lines 4-5 */
    for (size_t i = 0; i < 4; i++) {
        assert_true(ds->y[i] == y[i]);
        assert_int_equal(ds->source_rows[i], lines[i]);
    }
    assert_row(ds, 0, (const float[]){ 5.1f, 3.5f });
    assert_row(ds, 3, (const float[]){ 5.8f, 2.7f });
    mp_dataset_free(ds);
}

static void test_line_after_quoted_newline(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("label");
    expect_error(DIR "bad_after_quote.csv", &o, MP_E_PARSE, DIR "bad_after_quote.csv:6:2",
                 "non-numeric value 'abc' in column 'b'");
}

static void test_tab_delimiter(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("y");
    o.delimiter = '\t';
    mp_dataset *ds = must_load(DIR "tab.tsv", &o);
    assert_int_equal(ds->X.n_rows, 2);          /* the blank line is not a row */
    assert_int_equal(ds->source_rows[1], 4);
    assert_row(ds, 0, (const float[]){ 1.5f, 2.0f });
    assert_row(ds, 1, (const float[]){ 2.5f, -300.0f });
    assert_names(ds->class_names, 2, (const char *const[]){ "cat", "dog" });
    mp_dataset_free(ds);
}

static void test_semicolon_numeric_target(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("y");
    o.delimiter = ';';
    mp_dataset *ds = must_load(DIR "semicolon.csv", &o);
    assert_int_equal(ds->task, MP_TASK_REGRESSION);
    assert_null(ds->class_names);
    assert_true(ds->y[0] == 10.5 && ds->y[1] == -1.0);
    assert_row(ds, 0, (const float[]){ 1.5f, 2.0f });
    mp_dataset_free(ds);
}

static void test_space_delimiter_runs(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("label");
    o.delimiter = ' ';
    mp_dataset *ds = must_load(DIR "spaces.txt", &o);
    assert_int_equal(ds->X.n_rows, 2);
    assert_names(ds->feature_names, 2, (const char *const[]){ "x", "y" });
    assert_row(ds, 0, (const float[]){ 1, 2 });
    assert_row(ds, 1, (const float[]){ 3, 4 });
    assert_names(ds->class_names, 2, (const char *const[]){ "a", "b" });
    mp_dataset_free(ds);
}

static void test_no_target(void **state) {
    (void)state;
    mp_dataset *ds = must_load(DIR "regress.csv", NULL);    /* NULL opts = defaults */
    assert_int_equal(ds->X.n_cols, 5);
    assert_int_equal(ds->task, MP_TASK_NONE);
    assert_null(ds->y);
    assert_null(ds->target_name);
    mp_dataset_free(ds);
}

static void test_columns_and_exclude(void **state) {
    (void)state;
    char *exclude[] = { "id", "note" };
    mp_csv_opts o = opts_target("price");
    o.exclude = exclude;
    o.n_exclude = 2;
    mp_dataset *ds = must_load(DIR "regress.csv", &o);
    assert_int_equal(ds->task, MP_TASK_REGRESSION);
    assert_names(ds->feature_names, 2, (const char *const[]){ "f1", "f2" });
    assert_row(ds, 2, (const float[]){ 2.5f, 30 });
    assert_true(ds->y[0] == 100.25 && ds->y[1] == 200.5 && ds->y[2] == -7);
    mp_dataset_free(ds);

    char *columns[] = { "f2", "id" };           /* in this order */
    o = opts_target("price");
    o.columns = columns;
    o.n_columns = 2;
    ds = must_load(DIR "regress.csv", &o);
    assert_names(ds->feature_names, 2, (const char *const[]){ "f2", "id" });
    assert_row(ds, 1, (const float[]){ 20, 2 });
    mp_dataset_free(ds);
}

static void test_column_errors(void **state) {
    (void)state;
    const char *f = DIR "regress.csv", *w = DIR "regress.csv:1";
    mp_csv_opts o = opts_target("prise");
    expect_error(f, &o, MP_E_DATA, w, "no column 'prise' in '" DIR "regress.csv' (did you mean 'price'?)");
    o = opts_target("zzzzzzzzzzzz");
    expect_error(f, &o, MP_E_DATA, w, "no column 'zzzzzzzzzzzz' in '" DIR
                 "regress.csv' (columns: id, f1, f2, price, note)");

    char *bad_exclude[] = { "nots" };
    o = opts_target("price");
    o.exclude = bad_exclude;
    o.n_exclude = 1;
    expect_error(f, &o, MP_E_DATA, w, "no column 'nots' in '" DIR "regress.csv' (did you mean 'note'?)");

    char *bad_columns[] = { "f1", "f3x" };
    o = opts_target("price");
    o.columns = bad_columns;
    o.n_columns = 2;
    expect_error(f, &o, MP_E_DATA, w, "no column 'f3x'");

    char *with_target[] = { "f1", "price" };
    o.columns = with_target;
    expect_error(f, &o, MP_E_DATA, w, "target column 'price' is also listed in columns");

    char *twice[] = { "f1", "f1" };
    o.columns = twice;
    expect_error(f, &o, MP_E_DATA, w, "column 'f1' is listed twice in columns");

    char *both[] = { "f1" };
    o.columns = both;
    o.n_columns = 1;
    o.exclude = both;
    o.n_exclude = 1;
    expect_error(f, &o, MP_E_DATA, w, "column 'f1' is listed in both columns and exclude");

    char *target_excluded[] = { "price" };
    o = opts_target("price");
    o.exclude = target_excluded;
    o.n_exclude = 1;
    expect_error(f, &o, MP_E_DATA, w, "target column 'price' is also listed in exclude");

    char *all[] = { "id", "f1", "f2", "note" };
    o.exclude = all;
    o.n_exclude = 4;
    expect_error(f, &o, MP_E_DATA, w, "no feature columns");

    expect_error(DIR "duplicate.csv", NULL, MP_E_DATA, DIR "duplicate.csv:1:3",
                 "duplicate column name 'a' (also column 1)");
}

static void test_predict_style(void **state) {
    (void)state;
    /* the model's features in its order; the id and an unparsable column are ignored */
    char *features[] = { "b", "a" };
    mp_csv_opts o;
    mp_csv_opts_init(&o);
    o.columns = features;
    o.n_columns = 2;
    o.ignore_extra = true;
    mp_dataset *ds = must_load(DIR "predict.csv", &o);
    assert_int_equal(ds->task, MP_TASK_NONE);
    assert_row(ds, 0, (const float[]){ 2, 1 });
    assert_row(ds, 1, (const float[]){ 4, 3 });
    mp_dataset_free(ds);

    o.target = "y";                 /* present: read */
    o.target_optional = true;
    ds = must_load(DIR "predict.csv", &o);
    assert_int_equal(ds->task, MP_TASK_CLASSIFICATION);
    assert_int_equal(ds->n_classes, 2);
    mp_dataset_free(ds);

    o.target = "label";             /* absent: fine when optional */
    ds = must_load(DIR "predict.csv", &o);
    assert_int_equal(ds->task, MP_TASK_NONE);
    assert_null(ds->target_name);
    mp_dataset_free(ds);

    o.target_optional = false;
    expect_error(DIR "predict.csv", &o, MP_E_DATA, DIR "predict.csv:1", "no column 'label'");
}

static void test_crlf(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("y");
    mp_dataset *ds = must_load(DIR "crlf_good.csv", &o);
    assert_int_equal(ds->X.n_rows, 2);
    assert_int_equal(ds->source_rows[0], 2);
    assert_int_equal(ds->source_rows[1], 3);
    assert_names(ds->class_names, 2, (const char *const[]){ "u", "v" });   /* no '\r' */
    mp_dataset_free(ds);
    /* a quoted CRLF and a blank CRLF line before the bad cell on line 6 */
    expect_error(DIR "crlf.csv", &o, MP_E_PARSE, DIR "crlf.csv:6:2", "non-numeric value 'bad'");
    /* old Mac files: a lone CR ends a line too */
    expect_error(DIR "cr_only.csv", &o, MP_E_PARSE, DIR "cr_only.csv:3:2", "non-numeric value 'bad'");
}

static void test_bom_blank_lines_trim(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("y");
    mp_dataset *ds = must_load(DIR "bom.csv", &o);
    assert_string_equal(ds->feature_names[0], "a");     /* the BOM is gone, quotes too */
    assert_row(ds, 0, (const float[]){ 1, 2 });
    mp_dataset_free(ds);

    ds = must_load(DIR "blank_lines.csv", &o);
    assert_int_equal(ds->X.n_rows, 2);
    assert_int_equal(ds->source_rows[0], 4);
    assert_int_equal(ds->source_rows[1], 7);
    mp_dataset_free(ds);

    ds = must_load(DIR "trim.csv", &o);
    assert_names(ds->feature_names, 2, (const char *const[]){ "a", "b" });
    assert_row(ds, 0, (const float[]){ 1, 2 });
    assert_string_equal(ds->class_names[0], "u");
    mp_dataset_free(ds);

    ds = must_load(DIR "no_final_newline.csv", &o);
    assert_int_equal(ds->X.n_rows, 2);
    assert_names(ds->class_names, 2, (const char *const[]){ "u", "v" });
    mp_dataset_free(ds);
}

static void test_stdin(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("species");
    assert_non_null(freopen(DIR "good.csv", "r", stdin));
    mp_dataset *ds = must_load("-", &o);
    assert_int_equal(ds->X.n_rows, 4);
    mp_dataset_free(ds);
    assert_non_null(freopen(DIR "nonnumeric.csv", "r", stdin));
    expect_error("-", &o, MP_E_PARSE, "<stdin>:3:2", "non-numeric value 'abc'");
}

static void test_iris(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("species");
    mp_dataset *ds = must_load("examples/data/iris.csv", &o);
    assert_int_equal(ds->X.n_rows, 150);
    assert_int_equal(ds->X.n_cols, 4);
    assert_int_equal(ds->task, MP_TASK_CLASSIFICATION);
    assert_names(ds->class_names, 3, (const char *const[]){ "setosa", "versicolor", "virginica" });
    assert_row(ds, 0, (const float[]){ 5.1f, 3.5f, 1.4f, 0.2f });
    assert_int_equal(ds->source_rows[149], 151);
    mp_dataset_free(ds);
}

/* ---------------------------------------------------------------- errors */

static void test_file_errors(void **state) {
    (void)state;
    expect_error(DIR "empty.csv", NULL, MP_E_DATA, DIR "empty.csv", "'" DIR "empty.csv' is empty");
    expect_error(DIR "header_only.csv", NULL, MP_E_DATA, DIR "header_only.csv", "no data rows");
    expect_error(DIR "no_such.csv", NULL, MP_E_IO, DIR "no_such.csv",
                 "cannot open '" DIR "no_such.csv': No such file or directory");
    /* a directory opens, but reading it fails */
    expect_error("tests/data/csv", NULL, MP_E_IO, "tests/data/csv", "cannot read 'tests/data/csv'");
    mp_csv_opts o;
    mp_csv_opts_init(&o);
    o.delimiter = '"';
    expect_error(DIR "good.csv", &o, MP_E_CONFIG, DIR "good.csv", "invalid delimiter");
}

static void test_cell_errors(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("y");
    expect_error(DIR "ragged.csv", NULL, MP_E_PARSE, DIR "ragged.csv:4",
                 "row has 3 fields, the header has 5");
    expect_error(DIR "ragged_long.csv", NULL, MP_E_PARSE, DIR "ragged_long.csv:3",
                 "row has 4 fields, the header has 3");
    mp_csv_opts species = opts_target("species");
    expect_error(DIR "nonnumeric.csv", &species, MP_E_PARSE, DIR "nonnumeric.csv:3:2",
                 "non-numeric value 'abc' in column 'sepal_width'");
    /* without a target the class names are features, and the first one fails */
    expect_error(DIR "nonnumeric.csv", NULL, MP_E_PARSE, DIR "nonnumeric.csv:2:3",
                 "non-numeric value 'setosa' in column 'species'");
    expect_error(DIR "infinite.csv", &o, MP_E_PARSE, DIR "infinite.csv:3:2",
                 "non-finite value 'inf' in column 'b'");
    expect_error(DIR "missing_empty.csv", &o, MP_E_PARSE, DIR "missing_empty.csv:3:2",
                 "missing value in column 'b' (set missing: drop to skip such rows)");
    expect_error(DIR "missing_drop.csv", &o, MP_E_PARSE, DIR "missing_drop.csv:4:2",
                 "missing value in column 'b'");
    expect_error(DIR "unterminated.csv", &o, MP_E_PARSE, DIR "unterminated.csv:2:3",
                 "unterminated quoted field");
    /* a missing target cell is an error too */
    char *cols[] = { "a" };
    o.columns = cols;
    o.n_columns = 1;
    expect_error(DIR "missing_drop.csv", &o, MP_E_PARSE, DIR "missing_drop.csv:8:3",
                 "missing value in column 'y'");
}

static void test_long_value_in_message(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "long.csv");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "a,b\n1,");
    for (int i = 0; i < 100; i++) fputc('x', f);
    fprintf(f, "\n");
    fclose(f);
    mp_err err = { 0 };
    mp_dataset *ds = NULL;
    assert_int_equal(mp_csv_read(path, NULL, &ds, &err), MP_E_PARSE);
    assert_non_null(strstr(err.msg, "xxxxxxxx...' in column 'b'"));  /* cut short */
    assert_true(strlen(err.msg) < 120);
}

static void test_missing_drop(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("y");
    o.missing = MP_MISSING_DROP;
    mp_dataset *ds = must_load(DIR "missing_drop.csv", &o);
    /* NA, NaN, nan, ? in b and NA in the target: five rows go */
    assert_int_equal(ds->X.n_rows, 3);
    assert_int_equal(ds->source_rows[2], 9);
    assert_row(ds, 2, (const float[]){ 10, 10 });
    assert_names(ds->class_names, 3, (const char *const[]){ "u", "v", "z" });
    assert_true(ds->y[2] == 2);
    assert_non_null(strstr(last_log, "skipped 5 row(s) with missing values"));
    mp_dataset_free(ds);
    expect_error(DIR "missing_all.csv", &o, MP_E_DATA, DIR "missing_all.csv",
                 "no data rows (all 2 dropped for missing values)");
}

/* A value longer than libcsv's first cell buffer (64 KiB) makes it grow. */
static void test_huge_cell(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "huge.csv");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "a,y\n1,\"");
    for (int i = 0; i < 200000; i++) fputc(i % 1000 == 999 ? '\n' : 'q', f);
    fprintf(f, "\"\n2,small\n");
    fclose(f);
    mp_csv_opts o = opts_target("y");
    mp_dataset *ds = must_load(path, &o);
    assert_int_equal(ds->X.n_rows, 2);
    assert_int_equal(ds->source_rows[1], 3 + 200);     /* 200 newlines inside the cell */
    assert_int_equal(strlen(ds->class_names[0]), 200000);
    mp_dataset_free(ds);
}

/* Many rows of random numbers: growth of every array, and exact values. */
static void test_many_rows(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "many.csv");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    enum { ROWS = 3000, COLS = 7 };
    srand(7);
    fprintf(f, "c0,c1,c2,c3,c4,c5,c6,t\n");
    static float want[ROWS][COLS];
    for (int i = 0; i < ROWS; i++) {
        for (int j = 0; j < COLS; j++) {
            char cell[64];
            double v = (rand() - RAND_MAX / 2) * pow(10.0, rand() % 12 - 6);
            snprintf(cell, sizeof cell, j % 2 ? "%.9g" : "%.4f", v);
            want[i][j] = strtof(cell, NULL);
            fprintf(f, "%s,", cell);
        }
        fprintf(f, "class_%d_with_a_long_name_to_fill_the_pool\n", rand() % 40);
    }
    fclose(f);
    mp_csv_opts o = opts_target("t");
    mp_dataset *ds = must_load(path, &o);
    assert_int_equal(ds->X.n_rows, ROWS);
    assert_int_equal(ds->n_classes, 40);
    for (int i = 0; i < ROWS; i++) {
        assert_row(ds, (size_t)i, want[i]);
        assert_int_equal(ds->source_rows[i], (size_t)i + 2);
    }
    mp_dataset_free(ds);
}

/* ---------------------------------------------------------------- the plain path */

/*
 * runner/csv.c splits lines without a quote character itself and parses short
 * decimals eight characters at a time; lines with a quote go through libcsv
 * and the general number parser.  These tests hold both to the same answers:
 * strtof's bits, the same lines and columns in errors.  (A differential fuzz
 * of the two against the libcsv-only reader found no difference; these are
 * the cases it taught us to keep.)
 */

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Bit for bit, so that -0 and 0 differ. */
static void assert_bits(float got, float want, size_t i, size_t j, const char *text) {
    uint32_t gb, wb;
    memcpy(&gb, &got, 4);
    memcpy(&wb, &want, 4);
    if (gb != wb)
        fail_msg("X[%zu][%zu] from '%s' = %.9g (0x%08x), strtof %.9g (0x%08x)", i, j, text,
                 (double)got, gb, (double)want, wb);
}

static void digits(char *p, int n);
static unsigned below(unsigned n);

/* A random number cell, mostly of the shapes the short-decimal path takes
 * (with their edges: 2^24, 8 and 9 characters, a dot at either end). */
static void random_plain_cell(char *out, size_t cap) {
    char a[16], b[16];
    const char *sign = below(5) == 0 ? "-" : "";
    switch (below(8)) {
    case 0:
        snprintf(out, cap, "%s%u", sign, below(1u << 25));
        break;
    case 1:
        snprintf(out, cap, "%s0", sign);
        break;
    case 2: { /* up to 9 digits with a dot anywhere among them */
        int n = 1 + (int)below(9), at = (int)below((unsigned)n + 1);
        digits(a, n);
        snprintf(out, cap, "%s%.*s.%s", sign, at, a, a + at);
        break;
    }
    case 3:
        digits(a, 1 + (int)below(8));
        snprintf(out, cap, "%s0.%s", sign, a);
        break;
    case 4: /* what pixel / 255 looks like printed with %.6g */
        snprintf(out, cap, "%.6g", below(256) / 255.0);
        break;
    case 5: /* long ones: the slower paths */
        digits(a, 1 + (int)below(12));
        digits(b, 1 + (int)below(12));
        snprintf(out, cap, "%s%s.%s", sign, a, b);
        break;
    case 6:
        digits(a, 1 + (int)below(4));
        snprintf(out, cap, "%s%se%d", sign, a, (int)below(20) - 10);
        break;
    default:
        snprintf(out, cap, "%s%u.%u", sign, below(1000), below(100));
        break;
    }
}

static void test_plain_cells_exact(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "plain.csv");
    enum { ROWS = 20000, COLS = 8 };
    static char text[ROWS][COLS][40];
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "c0,c1,c2,c3,c4,c5,c6,c7\n");
    for (int i = 0; i < ROWS; i++)
        for (int j = 0; j < COLS; j++) {
            random_plain_cell(text[i][j], sizeof text[i][j]);
            fprintf(f, "%s%s", text[i][j], j < COLS - 1 ? "," : i % 7 ? "\n" : "\r\n");
        }
    fclose(f);
    mp_dataset *ds = must_load(path, NULL);
    assert_int_equal(ds->X.n_rows, ROWS);
    for (size_t i = 0; i < ROWS; i++) {
        assert_int_equal(ds->source_rows[i], i + 2);
        for (size_t j = 0; j < COLS; j++)
            assert_bits(MP_AT(&ds->X, i, j), strtof(text[i][j], NULL), i, j, text[i][j]);
    }
    mp_dataset_free(ds);
}

/* Lines with quotes between plain ones, in every way they can meet. */
static void test_mixed_quoted_lines(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "mixed.csv");
    write_text(path, "a,b,y\n"
                     "1,2.5,u\n"                /* 2 */
                     "\"3\",4,v\n"              /* 3: a quoted number */
                     "5,6,\"w,x\"\n"            /* 4: the delimiter inside quotes */
                     "7,8,\"multi\nline\"\n"    /* 5-6 */
                     "9,10,u\r\n"               /* 7 */
                     "\r\n"                     /* 8: blank */
                     "  11 , 12\t,v\n"          /* 9: blanks around cells */
                     "13,-0,\"u\"\r\n");        /* 10 */
    mp_csv_opts o = opts_target("y");
    mp_dataset *ds = must_load(path, &o);
    assert_int_equal(ds->X.n_rows, 7);
    const size_t lines[] = { 2, 3, 4, 5, 7, 9, 10 };
    const float x[][2] = { { 1, 2.5f }, { 3, 4 }, { 5, 6 }, { 7, 8 }, { 9, 10 }, { 11, 12 },
                           { 13, -0.0f } };
    for (size_t i = 0; i < 7; i++) {
        assert_int_equal(ds->source_rows[i], lines[i]);
        for (size_t j = 0; j < 2; j++) assert_bits(MP_AT(&ds->X, i, j), x[i][j], i, j, "");
    }
    assert_int_equal(ds->n_classes, 4);
    assert_names(ds->class_names, 4, (const char *const[]){ "multi\nline", "u", "v", "w,x" });
    mp_dataset_free(ds);
}

/* Where a bad cell is reported, on either path. */
static void test_error_places(void **state) {
    (void)state;
    static const struct { const char *text, *where; } cases[] = {
        { "a,b,y\n1,2,u\n\"3\",x,v\n", ":3:2" },                /* a line with a quote */
        { "a,b,y\n\"1\",2,\"u\nz\"\n4,x,v\n", ":4:2" },          /* after a quoted newline */
        { "a,b,y\n1,2,u\n3,x,\"v\"\n", ":3:2" },                 /* a quote later on the line */
        { "a,b,y\r\n1,2,u\r\n\r\n3,x,v\r\n", ":4:2" },           /* CRLF and a blank line */
        { "a,b,y\r1,2,u\r3,x,v\r", ":3:2" },                     /* lone CRs */
        { "a,b,y\n1,2,u\n3,4\n", ":3" },                          /* ragged, plain */
        { "a,b,y\n1,\"2\",u\n3,4,\"v\",5\n", ":3" },             /* ragged, quoted */
        { "a,b,y\n1,2,u\n3,,v\n", ":3:2" },                      /* missing, plain */
        { "a,b,y\n1,2,u\n3,\"\",v\n", ":3:2" },                  /* missing, quoted */
        { "a\tb\ty\n1\t2\tu\n3\t\t v\n", ":3:2" },              /* tab: an empty cell */
    };
    char path[128], where[160];
    tmp_path(path, sizeof path, "errors.csv");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_text(path, cases[i].text);
        mp_csv_opts o = opts_target("y");
        o.delimiter = strchr(cases[i].text, '\t') ? '\t' : ',';
        snprintf(where, sizeof where, "%s%s", path, cases[i].where);
        mp_err err = { 0 };
        mp_dataset *ds = NULL;
        assert_int_equal(mp_csv_read(path, &o, &ds, &err), MP_E_PARSE);
        if (strcmp(err.where, where) != 0)
            fail_msg("case %zu: where '%s', want '%s' (%s)", i, err.where, where, err.msg);
    }
}

/* ---------------------------------------------------------------- two threads */

/*
 * Files of 8 MiB and more are read by two threads, the second part (from the
 * first line start past the middle) by a worker whose rows are moved in after
 * the main thread's (see "two threads" in runner/csv.c).  Whatever sits in
 * either half must come out exactly as it does from one thread.  The rows of
 * these files are ~57 bytes, so BIG_ROWS of them make ~10 MB, the second half
 * starting near row 100,000.
 */
enum { BIG_ROWS = 180000, BIG_COLS = 10 };

/* The text of cell j of row i of a big file. */
static void big_cell(char *out, size_t cap, size_t i, size_t j) {
    unsigned v = (unsigned)((i * 7919 + j * 104729) % 100000);
    snprintf(out, cap, j % 3 ? "%u.%03u" : "%u", v / 1000, v % 1000);
}

/* Writes a big file with the target y (c0 .. c4), lines ending in eol; where
 * special(i) gives a text, it is written instead of row i. */
static void write_big(const char *path, const char *eol, const char *(*special)(size_t)) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fprintf(f, "f0,f1,f2,f3,f4,f5,f6,f7,f8,f9,y%s", eol);
    char cell[32];
    for (size_t i = 0; i < BIG_ROWS; i++) {
        const char *s = special ? special(i) : NULL;
        if (s) {
            fprintf(f, "%s%s", s, eol);
            continue;
        }
        for (size_t j = 0; j < BIG_COLS; j++) {
            big_cell(cell, sizeof cell, i, j);
            fprintf(f, "%s,", cell);
        }
        fprintf(f, "c%zu%s", i % 5, eol);
    }
    assert_int_equal(fclose(f), 0);
}

/* Row k of ds is row i of the big file, on line `line`. */
static void assert_big_row(const mp_dataset *ds, size_t k, size_t i, size_t line) {
    char cell[32];
    if (ds->source_rows[k] != line)
        fail_msg("row %zu (file row %zu): line %zu, want %zu", k, i, ds->source_rows[k], line);
    for (size_t j = 0; j < BIG_COLS; j++) {
        big_cell(cell, sizeof cell, i, j);
        assert_bits(MP_AT(&ds->X, k, j), strtof(cell, NULL), k, j, cell);
    }
    char want[8];
    snprintf(want, sizeof want, "c%zu", i % 5);
    assert_string_equal(ds->class_names[(size_t)ds->y[k]], want);
}

static void test_two_threads_clean(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "big.csv");
    mp_csv_opts o = opts_target("y");
    for (int crlf = 0; crlf < 2; crlf++) {
        write_big(path, crlf ? "\r\n" : "\n", NULL);
        mp_dataset *ds = must_load(path, &o);
        assert_int_equal(ds->X.n_rows, BIG_ROWS);
        assert_int_equal(ds->n_classes, 5);
        for (size_t i = 0; i < BIG_ROWS; i++) assert_big_row(ds, i, i, i + 2);
        mp_dataset_free(ds);
    }
}

static size_t bad_row[2];       /* rows given a bad cell by with_bad_cells */

static const char *with_bad_cells(size_t i) {
    return i == bad_row[0] || i == bad_row[1] ? "1,2,3,bad,5,6,7,8,9,10,c0" : NULL;
}

static void test_two_threads_errors(void **state) {
    (void)state;
    char path[128], where[160];
    tmp_path(path, sizeof path, "big_bad.csv");
    mp_csv_opts o = opts_target("y");
    /* in the second half, in the first, in both (the first one counts) */
    const size_t rows[][2] = { { 170000, 170000 }, { 3000, 3000 }, { 70000, 160000 },
                               { BIG_ROWS - 1, BIG_ROWS - 1 } };
    for (size_t t = 0; t < sizeof rows / sizeof *rows; t++) {
        bad_row[0] = rows[t][0];
        bad_row[1] = rows[t][1];
        write_big(path, "\n", with_bad_cells);
        snprintf(where, sizeof where, "%s:%zu:4", path, rows[t][0] + 2);
        expect_error(path, &o, MP_E_PARSE, where, "non-numeric value 'bad' in column 'f3'");
    }
    bad_row[0] = bad_row[1] = SIZE_MAX;
}

/* Quoted cells, a quoted newline, missing cells and blank lines in both halves. */
static const char *with_oddities(size_t i) {
    switch (i) {
    case 2000:   return "1,2,3,4,5,6,7,8,9,NA,c0";              /* dropped */
    case 90000:  return "\"1.5\",2,3,4,5,6,7,8,9,10,\"c,9\"";  /* quotes: libcsv */
    case 120000: return "1,2,3,4,5,6,7,8,9,10,\"x\ny\"";       /* one more line from here on */
    case 140000: return "";                                      /* a blank line: no row */
    case 150000: return "1,2,3,4,5,6,7,8,9,,c1";                 /* dropped */
    case 170000: return " 1 ,\t2,3,4,5,6,7,8,9,10, c2 ";         /* blanks around cells */
    default:     return NULL;
    }
}

static void test_two_threads_oddities(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "big_odd.csv");
    write_big(path, "\n", with_oddities);
    mp_csv_opts o = opts_target("y");
    o.missing = MP_MISSING_DROP;
    mp_dataset *ds = must_load(path, &o);
    assert_int_equal(ds->X.n_rows, BIG_ROWS - 3);           /* two dropped, one blank */
    assert_non_null(strstr(last_log, "skipped 2 row(s)"));
    size_t k = 0;
    for (size_t i = 0; i < BIG_ROWS; i++) {
        size_t line = i + 2 + (i > 120000);
        if (i == 2000 || i == 140000 || i == 150000) continue;
        if (i == 90000 || i == 120000 || i == 170000) {
            assert_int_equal(ds->source_rows[k], line);
            const char *label = i == 90000 ? "c,9" : i == 120000 ? "x\ny" : "c2";
            assert_string_equal(ds->class_names[(size_t)ds->y[k]], label);
            assert_true(MP_AT(&ds->X, k, 0) == (i == 90000 ? 1.5f : 1.0f));
            assert_true(MP_AT(&ds->X, k, 9) == 10);
            k++;
            continue;
        }
        assert_big_row(ds, k++, i, line);
    }
    assert_int_equal(k, ds->X.n_rows);
    mp_dataset_free(ds);
}

/* A quoted cell of 100,000 lines (2.1 MB) from row 100,000 on, across the
 * middle of the file: the main thread is inside it where the worker starts,
 * so the worker's rows are dropped and the main thread reads on alone. */
enum { QUOTE_ROW = 100000, QUOTE_LINES = 100000 };

static const char *with_long_quote(size_t i) {
    static char cell[QUOTE_LINES * 21 + 64];
    if (i != QUOTE_ROW) return NULL;
    if (!cell[0]) {
        char *p = cell + sprintf(cell, "1,2,3,4,5,6,7,8,9,10,\"");
        for (int k = 0; k < QUOTE_LINES; k++) p += sprintf(p, "zzzzzzzzzzzzzzzzzzzz\n");
        strcpy(p, "\"");
    }
    return cell;
}

static void test_two_threads_quote_at_split(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "big_quote.csv");
    write_big(path, "\n", with_long_quote);
    mp_csv_opts o = opts_target("y");
    mp_dataset *ds = must_load(path, &o);
    assert_int_equal(ds->X.n_rows, BIG_ROWS);
    assert_int_equal(ds->n_classes, 6);
    for (size_t i = 0; i < BIG_ROWS; i++)
        if (i != QUOTE_ROW) assert_big_row(ds, i, i, i + 2 + (i > QUOTE_ROW) * QUOTE_LINES);
    assert_int_equal(ds->source_rows[QUOTE_ROW], QUOTE_ROW + 2);
    mp_dataset_free(ds);
}

/* Cell j of row i of a file whose first n_long rows are long (~115 bytes)
 * and the others short (~23 bytes). */
static void shaped_cell(char *out, size_t cap, size_t i, size_t j, size_t n_long) {
    unsigned v = (unsigned)((i * 7919 + j * 104729) % 1000000);
    if (i < n_long) snprintf(out, cap, "%u.%06u", v / 1000, v);
    else snprintf(out, cap, "%u", v % 10);
}

/*
 * The rows the worker's share of the arrays is sized for come from the first
 * block's bytes per row.  Long rows first and short ones after the split fill
 * the worker's share early (it stops, the main thread reads on from there);
 * short ones before the split need more rows than the main thread was given
 * (the worker's rows are dropped, the main thread reads on alone).
 */
static void test_two_threads_row_estimates(void **state) {
    (void)state;
    char path[128], cell[32];
    tmp_path(path, sizeof path, "big_shaped.csv");
    const size_t shapes[][2] = { { 50000, 150000 }, { 12000, 400000 } };  /* long, short */
    for (size_t t = 0; t < 2; t++) {
        size_t n_long = shapes[t][0], rows = n_long + shapes[t][1];
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        fprintf(f, "f0,f1,f2,f3,f4,f5,f6,f7,f8,f9\n");
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < 10; j++) {
                shaped_cell(cell, sizeof cell, i, j, n_long);
                fprintf(f, "%s%c", cell, j < 9 ? ',' : '\n');
            }
        assert_int_equal(fclose(f), 0);
        mp_dataset *ds = must_load(path, NULL);
        assert_int_equal(ds->X.n_rows, rows);
        for (size_t i = 0; i < rows; i++) {
            assert_int_equal(ds->source_rows[i], i + 2);
            for (size_t j = 0; j < 10; j++) {
                shaped_cell(cell, sizeof cell, i, j, n_long);
                assert_bits(MP_AT(&ds->X, i, j), strtof(cell, NULL), i, j, cell);
            }
        }
        mp_dataset_free(ds);
    }
}

static void fail_loop(const char *path, const mp_csv_opts *o, int final_code);

/* Every allocation of a two-thread read failed in turn, the worker's included. */
static void test_two_threads_alloc_failures(void **state) {
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "big_alloc.csv");
    write_big(path, "\n", with_oddities);
    mp_csv_opts o = opts_target("y");
    o.missing = MP_MISSING_DROP;
    fail_loop(path, &o, MP_OK);
}

/* ---------------------------------------------------------------- numbers */

/* mp_csv_parse_float must agree with strtof on acceptance and on the bits. */
static void check_parse(const char *s) {
    const char *a = s, *b = s + strlen(s);
    while (*a == ' ' || *a == '\t') a++;
    while (b > a && (b[-1] == ' ' || b[-1] == '\t')) b--;
    char trimmed[300];
    size_t n = (size_t)(b - a);
    assert_true(n < sizeof trimmed);
    memcpy(trimmed, a, n);
    trimmed[n] = '\0';
    char *end;
    float want = strtof(trimmed, &end);
    /* blanks are trimmed; other white space (which strtof would skip) is refused */
    bool want_ok = n > 0 && end == trimmed + n && !isspace((unsigned char)trimmed[0]);
    float got = 12345.0f;
    bool ok = mp_csv_parse_float(s, strlen(s), &got);
    if (ok != want_ok) fail_msg("'%s': parse says %d, strtof %d", s, ok, want_ok);
    if (!ok) return;
    uint32_t gb, wb;
    memcpy(&gb, &got, 4);
    memcpy(&wb, &want, 4);
    if (gb != wb && !(isnan(got) && isnan(want)))
        fail_msg("'%s': got %.9g (0x%08x), strtof %.9g (0x%08x)", s, (double)got, gb,
                 (double)want, wb);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) {         /* xorshift64*: fixed seed, repeatable */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}
static unsigned below(unsigned n) { return (unsigned)(rnd() % n); }

static void digits(char *p, int n) {
    for (int i = 0; i < n; i++) p[i] = (char)('0' + below(10));
    p[n] = '\0';
}

/* One random number text of a random shape. */
static void random_number(char *out, size_t cap) {
    char a[40], b[40];
    const char *sign = below(4) == 0 ? "-" : below(8) == 0 ? "+" : "";
    switch (below(12)) {
    case 0: /* integers, some with leading zeros */
        digits(a, 1 + (int)below(12));
        snprintf(out, cap, "%s%s%s", sign, below(5) ? "" : "00", a);
        break;
    case 1: /* 0.xxx */
        digits(a, 1 + (int)below(12));
        snprintf(out, cap, "%s0.%s", sign, a);
        break;
    case 2: /* short decimals: the fast path */
        digits(a, 1 + (int)below(4));
        digits(b, 1 + (int)below(4));
        snprintf(out, cap, "%s%s.%s", sign, a, b);
        break;
    case 3: /* long mantissas */
        digits(a, 1 + (int)below(20));
        digits(b, 1 + (int)below(25));
        snprintf(out, cap, "%s%s.%s", sign, a, b);
        break;
    case 4: /* exponents, small and large */
        digits(a, 1 + (int)below(9));
        digits(b, (int)below(5));
        snprintf(out, cap, "%s%s%s%s%c%s%d", sign, a, b[0] ? "." : "", b, below(2) ? 'e' : 'E',
                 below(2) ? "-" : below(2) ? "+" : "", (int)below(below(4) ? 14 : 60));
        break;
    case 5: { /* shortest round trip of a random float */
        uint32_t bits = (uint32_t)rnd();
        float f;
        memcpy(&f, &bits, 4);
        snprintf(out, cap, "%.9g", (double)f);
        break;
    }
    case 6: { /* near halfway between two floats: hard rounding */
        uint32_t bits = (uint32_t)rnd() & 0x7effffffu;
        float f, g;
        memcpy(&f, &bits, 4);
        g = nextafterf(f, INFINITY);
        snprintf(out, cap, "%.*g", 9 + (int)below(18), ((double)f + (double)g) / 2);
        break;
    }
    case 7: /* trailing zeros, dots at the ends */
        digits(a, 1 + (int)below(3));
        snprintf(out, cap, "%s%s%s", sign, a,
                 (const char *[]){ "000000000", ".500000", ".", ".0e3", "0000e-5" }[below(5)]);
        if (below(4) == 0) snprintf(out, cap, ".%s", a);
        break;
    case 9: /* integers around 2^24..2^27, where floats are 2, 4, 8 apart */
        snprintf(out, cap, "%s%llu", sign, (unsigned long long)((1u << 24) + below(7u << 24)));
        break;
    case 10: /* printf shapes of doubles in a common range */
        snprintf(out, cap, (const char *[]){ "%.6f", "%.9g", "%.15g", "%.3e", "%.12e" }[below(5)],
                 ((double)(int64_t)rnd() / 9.2e18) * pow(10.0, (int)below(16) - 8));
        break;
    case 8: /* blanks around, and junk strtof would half-accept */
        digits(a, 1 + (int)below(6));
        snprintf(out, cap, "%s%s%s%s", below(2) ? " \t" : "", a,
                 (const char *[]){ "", " ", "e", "e+", "x", "..", ",5", "-" }[below(8)],
                 below(2) ? "  " : "");
        break;
    default: /* integers 0..255 (pixel values) */
        snprintf(out, cap, "%u", below(256));
        break;
    }
}

static void test_parse_float_cases(void **state) {
    (void)state;
    static const char *const cases[] = {
        "0", "-0", "+0", "00", "0.0", "-0.0", ".5", "5.", "1e10", "1e-10", "16777216", "16777217",
        "16777218", "1.6777217e7", "3.4028235e38", "3.4028236e38", "1e39", "-1e39", "1e-45",
        "1e-46", "7e-46", "1.17549435e-38", "0.1", "0.2", "0.3", "123.456", "1.000000",
        "2000000000", "0e999", "inf", "-inf", "Infinity", "nan", "NaN", "0x1p3", "0x10", "",
        " ", ".", "-", "+", "e5", "1e", "1e+", "1.2.3", "1,5", "--1", "+-1", " 42 ", "\t7\t",
        "\n7", "7\n", "1 2", "9999999", "99999999", "4.2e-8", "1234567e-10", "1234567e10",
        "0.000000000000000000000000000000000000000000001",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_parse(cases[i]);
    float f = 1;
    assert_true(mp_csv_parse_float("12abc", 2, &f) && f == 12.0f);  /* only len bytes count */
    f = 1;
    assert_false(mp_csv_parse_float("", 0, &f));
    assert_true(f == 1);                        /* untouched on failure */
}

static void test_parse_float_random(void **state) {
    (void)state;
    char s[128];
    for (int i = 0; i < 1000000; i++) {
        random_number(s, sizeof s);
        check_parse(s);
    }
}

/*
 * Decimals of <= 16 digits next to a point halfway between two floats.  For
 * some the exactly rounded double lands on the halfway point itself, and only
 * strtof can tell which way the float goes: the fast path must notice.
 */
static void test_parse_float_halfway(void **state) {
    (void)state;
    char s[64];
    int landed = 0;
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = 0x30000000u + (uint32_t)(rnd() % 0x1d000000u);   /* ~1e-9 .. 1e14 */
        float f, g;
        memcpy(&f, &bits, 4);
        g = nextafterf(f, INFINITY);
        double h = ((double)f + (double)g) / 2;
        snprintf(s, sizeof s, "%.*g", 15 + (int)below(2), h);
        if (strtod(s, NULL) == h && atof(s) == h) landed++;
        check_parse(s);
    }
    assert_true(landed > 100);  /* the hard case did come up */
}

static void test_parse_delimiter(void **state) {
    (void)state;
    char d = 0;
    assert_true(mp_csv_parse_delimiter("tab", &d) && d == '\t');
    assert_true(mp_csv_parse_delimiter("\\t", &d) && d == '\t');
    assert_true(mp_csv_parse_delimiter("\t", &d) && d == '\t');
    assert_true(mp_csv_parse_delimiter("semicolon", &d) && d == ';');
    assert_true(mp_csv_parse_delimiter("comma", &d) && d == ',');
    assert_true(mp_csv_parse_delimiter("pipe", &d) && d == '|');
    assert_true(mp_csv_parse_delimiter("space", &d) && d == ' ');
    assert_true(mp_csv_parse_delimiter(":", &d) && d == ':');
    assert_false(mp_csv_parse_delimiter("", &d));
    assert_false(mp_csv_parse_delimiter("::", &d));
    assert_false(mp_csv_parse_delimiter("\"", &d));
    assert_false(mp_csv_parse_delimiter("\n", &d));
    assert_false(mp_csv_parse_delimiter("tabs", &d));
}

/* ---------------------------------------------------------------- allocation failures */

/* Fails allocation 1, 2, ... until the read gives final_code. */
static void fail_loop(const char *path, const mp_csv_opts *o, int final_code) {
    long n;
    for (n = 1; n < 100000; n++) {
        mp_err err = { 0 };
        mp_dataset *ds = NULL;
        mp_mem_fail_after(n);
        int rc = mp_csv_read(path, o, &ds, &err);
        mp_mem_fail_after(0);
        if (rc == MP_E_NOMEM) {
            assert_null(ds);
            assert_int_equal(err.code, MP_E_NOMEM);
            continue;
        }
        if (rc != final_code) fail_msg("%s: N=%ld gave %d: %s", path, n, rc, err.msg);
        mp_dataset_free(ds);
        break;
    }
    assert_true(n > 3 && n < 100000);   /* several allocations were failed in turn */
}

static void test_alloc_failures(void **state) {
    (void)state;
    mp_csv_opts o = opts_target("species");
    fail_loop(DIR "good.csv", &o, MP_OK);               /* classes */
    o = opts_target("price");
    fail_loop(DIR "regress.csv", &o, MP_OK);            /* regression */
    fail_loop(DIR "regress.csv", NULL, MP_OK);          /* no target */
    o = opts_target("y");
    o.missing = MP_MISSING_DROP;
    fail_loop(DIR "missing_drop.csv", &o, MP_OK);
    o = opts_target("y");
    fail_loop(DIR "ragged.csv", NULL, MP_E_PARSE);      /* error paths too */
    o = opts_target("specie");
    fail_loop(DIR "good.csv", &o, MP_E_DATA);

    /* enough rows and class text to make every array grow several times */
    char path[128];
    tmp_path(path, sizeof path, "grow.csv");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "a,b,c\n");
    for (int i = 0; i < 700; i++) fprintf(f, "%d,%d.5,label_number_%d\n", i, i, i % 50);
    fclose(f);
    o = opts_target("c");
    fail_loop(path, &o, MP_OK);
}

/* ---------------------------------------------------------------- the stage */

static const mp_param *param(const char *name) {
    for (const mp_param *p = mp_stage_load_csv.params; p->name; p++)
        if (strcmp(p->name, name) == 0) return p;
    fail_msg("no parameter '%s'", name);
    return NULL;
}

/* Sets a field of the stage's config struct the way the runner does: by offset. */
#define CONF(conf, name, type) (*(type *)((char *)(conf) + param(name)->offset))

typedef struct metrics { double rows, features; int n; } metrics;

static int capture_metric(void *ud, const char *key, double value, long step, mp_err *err) {
    (void)err;
    metrics *m = ud;
    assert_true(step < 0);
    if (strcmp(key, "data.rows") == 0) m->rows = value;
    else if (strcmp(key, "data.features") == 0) m->features = value;
    else fail_msg("unexpected metric '%s'", key);
    m->n++;
    return MP_OK;
}

static void test_stage_params(void **state) {
    (void)state;
    const mp_stage_ops *ops = &mp_stage_load_csv;
    assert_int_equal(ops->abi, MP_STAGE_ABI);
    assert_string_equal(ops->name, "csv");
    assert_int_equal(ops->kind, MP_KIND_LOAD);
    assert_true(param("path")->flags & MP_PF_REQUIRED);
    assert_int_equal(param("path")->type, MP_P_STRING);
    assert_null(param("target")->def);
    assert_string_equal(param("delimiter")->def, ",");
    assert_int_equal(param("columns")->type, MP_P_STR_LIST);
    assert_int_equal(param("exclude")->type, MP_P_STR_LIST);
    assert_int_equal(param("missing")->type, MP_P_ENUM);
    assert_string_equal(param("missing")->choices, "error|drop");
    assert_string_equal(param("missing")->def, "error");
    for (const mp_param *p = ops->params; p->name; p++) assert_non_null(p->doc);

    void *conf = test_calloc(1, ops->conf_size);
    CONF(conf, "path", char *) = "x.csv";
    CONF(conf, "delimiter", char *) = "::";
    mp_err err = { 0 };
    assert_int_equal(ops->check(conf, &err), MP_E_CONFIG);
    assert_non_null(strstr(err.msg, "invalid delimiter '::'"));
    const char *good[] = { ",", "tab", "\\t", "semicolon", "pipe", "space", "|" };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        CONF(conf, "delimiter", char *) = (char *)good[i];
        memset(&err, 0, sizeof err);
        assert_int_equal(ops->check(conf, &err), MP_OK);
    }
    char *cols[] = { "a", "y" };
    CONF(conf, "target", char *) = "y";
    CONF(conf, "columns", mp_str_list) = (mp_str_list){ cols, 2 };
    memset(&err, 0, sizeof err);
    assert_int_equal(ops->check(conf, &err), MP_E_CONFIG);
    assert_non_null(strstr(err.msg, "target column 'y' is also listed in columns"));
    CONF(conf, "columns", mp_str_list) = (mp_str_list){ cols, 1 };
    CONF(conf, "exclude", mp_str_list) = (mp_str_list){ cols, 1 };
    memset(&err, 0, sizeof err);
    assert_int_equal(ops->check(conf, &err), MP_E_CONFIG);
    assert_non_null(strstr(err.msg, "column 'a' is listed in both columns and exclude"));
    test_free(conf);
}

static void test_stage_run(void **state) {
    (void)state;
    const mp_stage_ops *ops = &mp_stage_load_csv;
    void *conf = test_calloc(1, ops->conf_size);
    CONF(conf, "path", char *) = "examples/data/iris.csv";
    CONF(conf, "target", char *) = "species";
    CONF(conf, "delimiter", char *) = "comma";
    mp_stage st = { .ops = ops, .conf = conf, .name = "load", .where = "p.yaml:3:5" };
    metrics m = { 0 };
    mp_host host = { .metric = capture_metric, .ud = &m };
    mp_ctx ctx = { .host = &host };
    ctx.train = mp_dataset_new();   /* an earlier load's data: must be freed, not leaked */
    ctx.test = mp_dataset_new();
    mp_err err = { 0 };
    assert_int_equal(ops->run(&st, &ctx, &err), MP_OK);
    assert_non_null(ctx.train);
    assert_null(ctx.test);
    assert_int_equal(ctx.train->X.n_rows, 150);
    assert_int_equal(m.n, 2);
    assert_true(m.rows == 150 && m.features == 4);
    assert_string_equal(last_log, "load_csv: read 150 rows x 4 features from "
                        "'examples/data/iris.csv' (3 classes: setosa, versicolor, virginica)");

    /* numeric target, columns, missing: drop */
    char *cols[] = { "a" };
    CONF(conf, "path", char *) = DIR "missing_drop.csv";
    CONF(conf, "target", char *) = "b";
    CONF(conf, "columns", mp_str_list) = (mp_str_list){ cols, 1 };
    CONF(conf, "missing", int) = MP_MISSING_DROP;
    assert_int_equal(ops->run(&st, &ctx, &err), MP_OK);
    assert_int_equal(ctx.train->X.n_rows, 4);
    assert_int_equal(ctx.train->task, MP_TASK_REGRESSION);
    assert_string_equal(last_log, "load_csv: read 4 rows x 1 features from '" DIR
                        "missing_drop.csv' (numeric target 'b')");

    /* a failing read leaves ctx as it was and names the cell */
    CONF(conf, "path", char *) = DIR "nonnumeric.csv";
    CONF(conf, "target", char *) = "species";
    CONF(conf, "columns", mp_str_list) = (mp_str_list){ NULL, 0 };
    mp_dataset *before = ctx.train;
    assert_int_equal(ops->run(&st, &ctx, &err), MP_E_PARSE);
    assert_string_equal(err.where, DIR "nonnumeric.csv:3:2");
    assert_ptr_equal(ctx.train, before);
    mp_dataset_free(ctx.train);
    test_free(conf);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_quoted_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_after_quoted_newline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tab_delimiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_semicolon_numeric_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_space_delimiter_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_target, setup, teardown),
        cmocka_unit_test_setup_teardown(test_columns_and_exclude, setup, teardown),
        cmocka_unit_test_setup_teardown(test_column_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_predict_style, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bom_blank_lines_trim, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iris, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cell_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_value_in_message, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_missing_drop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_cell, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_many_rows, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_plain_cells_exact, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_mixed_quoted_lines, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_error_places, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_two_threads_clean, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_two_threads_errors, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_two_threads_oddities, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_two_threads_quote_at_split, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_two_threads_row_estimates, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_two_threads_alloc_failures, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_parse_float_cases, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_float_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_float_halfway, setup, teardown),
        cmocka_unit_test_setup_teardown(test_parse_delimiter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup_tmp, teardown_tmp),
        cmocka_unit_test_setup_teardown(test_stage_params, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stage_run, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
