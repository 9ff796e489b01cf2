/*
 * test_report.c -- unit tests of `mlpipe report` (runner/report.c).
 *
 * Runs are written with the rundb API into a temporary database, the report
 * is rendered into memory (open_memstream) and checked as text: the SVG
 * elements that must be there, escaping of hostile names, invalid UTF-8,
 * NaN gaps, thinning of long histories, the confusion-matrix split, and
 * allocation failures.  The e2e test checks the same file with xmllint.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void libc_free(void *p) {
    free(p);
}

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mp.h"
#include "report.h"
#include "rundb.h"

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/mlpipe-report-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/runs.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    mp_mem_fail_after(0);
    return 0;
}

static void check(int rc, const mp_err *err) {
    if (rc != MP_OK) fail_msg("code %d: %s", rc, err->msg);
}

/* A run: a param, n steps of train.loss (NaN at step nan_at, if >= 0), an
 * accuracy, and a confusion matrix over classes[0 .. n_classes). */
static long long add_run(mp_rundb *db, const char *lr, int n, int nan_at,
                         const char *const *classes, int n_classes) {
    mp_err err = { 0 };
    long long id;
    mp_run_info info = { .pipeline = "iris", .seed = 1 };
    check(mp_rundb_run_begin(db, &info, &id, &err), &err);
    char *k[] = { "train.learning_rate", "load.target" };
    char *v[] = { (char *)lr, "<script>alert('x')</script> & \"\xff\x01\"" };
    check(mp_rundb_params(db, id, k, v, 2, &err), &err);
    mp_metric_row *rows = calloc((size_t)n + 1 + (size_t)(n_classes * n_classes), sizeof *rows);
    assert_non_null(rows);
    char (*keys)[128] = calloc((size_t)(n_classes * n_classes) + 1, sizeof *keys);
    assert_non_null(keys);
    size_t r = 0;
    for (int i = 0; i < n; i++)
        rows[r++] = (mp_metric_row){ "train.loss", i == nan_at ? NAN : 1.0 / (i + 1) + (i % 7) * 1e-3, i, 0 };
    rows[r++] = (mp_metric_row){ "test.accuracy", 0.9, -1, 0 };
    for (int t = 0; t < n_classes; t++)
        for (int p = 0; p < n_classes; p++) {
            char *key = keys[t * n_classes + p];
            snprintf(key, 128, "test.confusion_matrix.%s.%s", classes[t], classes[p]);
            rows[r++] = (mp_metric_row){ key, t == p ? 10 : t + p, -1, 0 };
        }
    check(mp_rundb_metrics(db, id, rows, r, &err), &err);
    check(mp_rundb_run_end(db, id, "finished", 0, NULL, NULL, &err), &err);
    free(rows);
    free(keys);
    return id;
}

/* The report of ids as text (libc_free it). */
static char *render(const char *path, const long long *ids, size_t n) {
    mp_rundb *db = NULL;
    mp_err err = { 0 };
    check(mp_rundb_open(path, &db, &err), &err);
    char *buf = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&buf, &len);
    assert_non_null(fp);
    check(mp_report_write(db, ids, n, fp, &err), &err);
    assert_int_equal(fclose(fp), 0);
    mp_rundb_close(db);
    return buf;
}

static size_t count(const char *text, const char *needle) {
    size_t n = 0;
    for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static const char *const iris[] = { "setosa", "versicolor", "virginica" };

static void test_structure_and_escaping(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    check(mp_rundb_open(f->path, &db, &err), &err);
    long long ids[2];
    ids[0] = add_run(db, "0.1", 50, 20, iris, 3);
    ids[1] = add_run(db, "0.01", 30, -1, iris, 3);
    mp_rundb_close(db);
    char *html = render(f->path, ids, 2);

    assert_true(strncmp(html, "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\"", 58) == 0);
    assert_non_null(strstr(html, "<title>mlpipe report: runs 1, 2</title>"));
    assert_non_null(strstr(html, "</body>\n</html>\n"));
    /* one chart (train.loss), two heat maps; every element closed */
    assert_int_equal(count(html, "<svg "), 3);
    assert_int_equal(count(html, "</svg>"), 3);
    assert_int_equal(count(html, "class=\"line-chart\""), 1);
    assert_int_equal(count(html, "class=\"confusion-matrix\""), 2);
    assert_int_equal(count(html, "<figure"), count(html, "</figure>"));
    assert_int_equal(count(html, "<table"), count(html, "</table>"));
    assert_int_equal(count(html, "<tr"), count(html, "</tr>"));
    /* run 1's line breaks at its NaN: two polylines; run 2 has one */
    assert_int_equal(count(html, "<polyline class=\"series s0\""), 2);
    assert_int_equal(count(html, "<polyline class=\"series s1\""), 1);
    assert_int_equal(count(html, "<rect class=\"cell\""), 18);
    assert_non_null(strstr(html, ">predicted</text>"));
    assert_non_null(strstr(html, "true versicolor, predicted virginica: 3 (21% of the row)"));
    assert_non_null(strstr(html, "<figcaption>run 1: test.confusion_matrix (rows"));
    assert_non_null(strstr(html, ">step</text>"));
    assert_non_null(strstr(html, ">run 2</text>"));
    /* the differing param is marked, the equal one not; matrix cells are no table rows */
    assert_non_null(strstr(html, "<tr class=\"diff\"><td class=\"mark\">*</td><td>"
                                 "train.learning_rate</td><td>0.1</td><td>0.01</td></tr>"));
    assert_non_null(strstr(html, "<tr><td class=\"mark\"></td><td>load.target</td>"));
    assert_null(strstr(html, "<td>test.confusion_matrix"));
    /* hostile text is escaped; invalid UTF-8 and control characters replaced */
    assert_null(strstr(html, "<script"));
    assert_non_null(strstr(html, "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; "
                                 "&quot;\xEF\xBF\xBD\xEF\xBF\xBD&quot;"));
    /* nothing to fetch */
    assert_null(strstr(html, "src="));
    assert_null(strstr(html, "href="));
    assert_null(strstr(html, "url("));
    libc_free(html);
}

/* 100 000 steps become at most two points per pixel column. */
static void test_long_history_thinned(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    check(mp_rundb_open(f->path, &db, &err), &err);
    long long id = add_run(db, "0.1", 100000, -1, iris, 0);
    mp_rundb_close(db);
    char *html = render(f->path, &id, 1);
    const char *pl = strstr(html, "points=\"");
    assert_non_null(pl);
    size_t points = 0;
    for (const char *p = pl + 8; *p != '"'; p++) points += *p == ',';
    assert_true(points > 400 && points <= 2 * 481);     /* plot width 480 px */
    assert_true(strlen(html) < 100000);
    assert_non_null(strstr(html, ">100000</text>"));    /* the last x tick */
    libc_free(html);
}

/* Class names with dots split right (the diagonal names them); a matrix
 * with a cell missing is skipped with a note. */
static void test_confusion_split(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    check(mp_rundb_open(f->path, &db, &err), &err);
    static const char *const dotted[] = { "v1.0", "v2.0", "v2" };
    long long ids[2];
    ids[0] = add_run(db, "0.1", 2, -1, dotted, 3);
    mp_rundb_close(db);
    /* a matrix with a hole: 3 cells */
    check(mp_rundb_open(f->path, &db, &err), &err);
    mp_run_info info = { .pipeline = "x", .seed = 1 };
    check(mp_rundb_run_begin(db, &info, &ids[1], &err), &err);
    mp_metric_row rows[] = { { "val.confusion_matrix.a.a", 1, -1, 0 },
                             { "val.confusion_matrix.a.b", 1, -1, 0 },
                             { "val.confusion_matrix.b.b", 1, -1, 0 } };
    check(mp_rundb_metrics(db, ids[1], rows, 3, &err), &err);
    mp_rundb_close(db);
    char *html = render(f->path, ids, 2);
    assert_int_equal(count(html, "class=\"confusion-matrix\""), 1);
    assert_non_null(strstr(html, "true v1.0, predicted v2.0: 1 (8% of the row)"));
    assert_non_null(strstr(html, "true v2, predicted v2.0: 3 (20% of the row)"));
    assert_non_null(strstr(html, "run 2: the 3 cells of val.confusion_matrix.* do not form a "
                                 "square matrix"));
    /* a run without history: a note, no chart for it */
    libc_free(html);
    html = render(f->path, &ids[1], 1);
    assert_non_null(strstr(html, "no per-step metrics recorded"));
    assert_non_null(strstr(html, "no parameters recorded"));
    libc_free(html);
}

static void test_main_errors(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    check(mp_rundb_open(f->path, &db, &err), &err);
    add_run(db, "0.1", 5, -1, iris, 3);
    mp_rundb_close(db);
    char out[200];
    snprintf(out, sizeof out, "%s/r.html", f->dir);
    char *one[] = { "last" };
    check(mp_report_main(f->path, one, 1, out, &err), &err);
    assert_int_equal(access(out, F_OK), 0);

    static const struct { const char *run; int code; const char *msg; } bad[] = {
        { "0", MP_E_USAGE, "bad run '0': expected a run id or 'last'" },
        { "x", MP_E_USAGE, "bad run 'x': expected a run id or 'last'" },
        { "9", MP_E_USAGE, "no run 9 in '" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *r[] = { (char *)bad[i].run };
        err = (mp_err){ 0 };
        assert_int_equal(mp_report_main(f->path, r, 1, out, &err), bad[i].code);
        assert_non_null(strstr(err.msg, bad[i].msg));
    }
    err = (mp_err){ 0 };
    assert_int_equal(mp_report_main(f->path, one, 0, out, &err), MP_E_USAGE);
    assert_non_null(strstr(err.msg, "needs one or more runs"));
    char *many[40];
    for (int i = 0; i < 40; i++) many[i] = "1";
    err = (mp_err){ 0 };
    assert_int_equal(mp_report_main(f->path, many, 40, out, &err), MP_E_USAGE);
    /* an output directory that does not exist: nothing left behind */
    snprintf(out, sizeof out, "%s/no/such/r.html", f->dir);
    err = (mp_err){ 0 };
    assert_int_equal(mp_report_main(f->path, one, 1, out, &err), MP_E_IO);
    assert_non_null(strstr(err.msg, "cannot write"));
    /* a missing database is not created */
    snprintf(out, sizeof out, "%s/r2.html", f->dir);
    char missing[200];
    snprintf(missing, sizeof missing, "%s/none.db", f->dir);
    err = (mp_err){ 0 };
    assert_int_equal(mp_report_main(missing, one, 1, out, &err), MP_E_DB);
    assert_int_equal(access(missing, F_OK), -1);
    assert_int_equal(access(out, F_OK), -1);
}

/* A pipe (like /dev/null or /dev/stdout) is written as it is: renaming a
 * temporary file over it would replace it.  A child reads the pipe. */
static void test_output_not_a_file(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    check(mp_rundb_open(f->path, &db, &err), &err);
    add_run(db, "0.1", 5, -1, iris, 3);
    mp_rundb_close(db);
    char fifo[200];
    snprintf(fifo, sizeof fifo, "%s/pipe", f->dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {     /* the reader: counts the bytes, reports through the exit status */
        FILE *in = fopen(fifo, "r");
        size_t n = 0;
        int c;
        while (in && (c = getc(in)) != EOF) n++;
        _exit(n > 1000 ? 0 : 1);
    }
    char *one[] = { "1" };
    check(mp_report_main(f->path, one, 1, fifo, &err), &err);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    struct stat sb;
    assert_int_equal(stat(fifo, &sb), 0);
    assert_true(S_ISFIFO(sb.st_mode));
}

static void test_alloc_failure(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    check(mp_rundb_open(f->path, &db, &err), &err);
    long long ids[2];
    ids[0] = add_run(db, "0.1", 20, 5, iris, 3);
    ids[1] = add_run(db, "0.2", 10, -1, iris, 3);
    int n;
    for (n = 1; n < 10000; n++) {
        char *buf = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&buf, &len);
        err = (mp_err){ 0 };
        mp_mem_fail_after(n);
        int rc = mp_report_write(db, ids, 2, fp, &err);
        mp_mem_fail_after(0);
        fclose(fp);
        libc_free(buf);
        if (rc == MP_OK) break;
        if (rc != MP_E_NOMEM) fail_msg("allocation %d: code %d (%s)", n, rc, err.msg);
    }
    mp_rundb_close(db);
    assert_true(n > 1 && n < 10000);
}

int main(void) {
    mp_log_level = MP_LOG_WARN;     /* "report: wrote ..." */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_structure_and_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_history_thinned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_confusion_split, setup, teardown),
        cmocka_unit_test_setup_teardown(test_main_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_output_not_a_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failure, setup, teardown),
    };
    return cmocka_run_group_tests_name("report", tests, NULL, NULL);
}
