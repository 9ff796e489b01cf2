/*
 * test_rundb.c -- unit tests of the run database (runner/rundb.c) and of
 * `mlpipe runs list|show` (runner/runs.c).
 *
 * Every test works in its own temporary directory.  What the module wrote is
 * checked through a second, raw sqlite3 connection with plain SQL, the way a
 * user would read the file, so a test does not trust the code it tests.  The
 * concurrency test forks 8 writers onto one fresh file; children report
 * through their exit status and leave with _exit, never back into cmocka.
 * The migration test builds a version-1 file from the version-1 DDL, kept
 * below exactly as mlpipe 0.1.0 ran it, and upgrades it.
 */
#include <dirent.h>
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* open_memstream's buffer comes from libc's malloc, but with UNIT_TESTING
 * cmocka.h maps free() to its checked test_free: such buffers are released
 * with this, defined while free is still libc's. */
static void libc_free(void *p) {
    free(p);
}

/* after the system headers: with UNIT_TESTING it redefines malloc and free */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mp.h"
#include "rundb.h"


/* ---------------------------------------------------------------- fixture */

typedef struct fixture {
    char dir[64];       /* mkdtemp directory, removed with its files by teardown */
    char path[128];     /* dir/runs.db */
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/mlpipe-rundb-XXXXXX");
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
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
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

/* ---------------------------------------------------------------- raw SQL */

/* The first column of the first row of sql on a fresh raw connection, as
 * text into buf ("" for none).  Fails the test on any SQLite error. */
static const char *raw_text(const char *path, const char *sql, char *buf, size_t n) {
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    int rc = sqlite3_step(st);
    assert_true(rc == SQLITE_ROW || rc == SQLITE_DONE);
    const unsigned char *t = rc == SQLITE_ROW ? sqlite3_column_text(st, 0) : NULL;
    snprintf(buf, n, "%s", t ? (const char *)t : "");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return buf;
}

static long long raw_int(const char *path, const char *sql) {
    char buf[64];
    return strtoll(raw_text(path, sql, buf, sizeof buf), NULL, 10);
}

/* Runs sql (any number of statements) on a raw connection, creating the file. */
static void raw_exec(const char *path, const char *sql) {
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        fail_msg("%s: %s", sql, sqlite3_errmsg(db));
    sqlite3_close(db);
}

static void write_file(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

/* ---------------------------------------------------------------- helpers */

static const char iris_config[] = "name: iris\nseed: 42\nstages:\n  - load: load_csv\n";

/* Opens path, failing the test with the message when it cannot. */
static mp_rundb *open_ok(const char *path) {
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    if (mp_rundb_open(path, &db, &err) != MP_OK) fail_msg("open: %s", err.msg);
    return db;
}

static void check(int rc, const mp_err *err) {
    if (rc != MP_OK) fail_msg("code %d: %s", rc, err->msg);
}

/* A whole finished run: params, n_steps of train.loss, final figures
 * (headline key = value), an artifact, two stages.  Returns its id. */
static long long add_run(mp_rundb *db, const char *pipeline, uint64_t seed, int n_steps,
                         const char *headline, double value) {
    mp_err err = { 0 };
    long long id = 0;
    mp_run_info info = { .pipeline = pipeline, .config = iris_config, .seed = seed };
    check(mp_rundb_run_begin(db, &info, &id, &err), &err);

    char *keys[] = { "train.learning_rate", "split.test_size", "train.epochs" };
    char *values[] = { "0.1", "0.2", "100" };
    check(mp_rundb_params(db, id, keys, values, 3, &err), &err);

    mp_metric_row *rows = calloc((size_t)n_steps + 2, sizeof *rows);
    assert_non_null(rows);
    for (int i = 0; i < n_steps; i++)
        rows[i] = (mp_metric_row){ "train.loss", 1.0 / (i + 1), i, 0 };
    rows[n_steps] = (mp_metric_row){ headline, value, -1, 1.7e9 };
    rows[n_steps + 1] = (mp_metric_row){ "test.accuracy.std", 0.01, -1, 1.7e9 };
    check(mp_rundb_metrics(db, id, rows, (size_t)n_steps + 2, &err), &err);
    free(rows);

    check(mp_rundb_artifact(db, id, "model", "out/model.mlp",
                            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                            1234, &err), &err);
    check(mp_rundb_stage(db, id, 0, "load", "load_csv", "running", -1, NULL, &err), &err);
    check(mp_rundb_stage(db, id, 0, "load", "load_csv", "finished", 0.012, NULL, &err), &err);
    check(mp_rundb_stage(db, id, 1, "train", "logistic_regression", "finished", 1.5, NULL,
                         &err), &err);
    check(mp_rundb_run_end(db, id, "finished", 0, NULL, NULL, &err), &err);
    return id;
}

/* Runs `mlpipe runs ARGS...` (NULL-terminated) on path; returns the output
 * (libc_free it) and the return code in *code, the error in *err. */
static char *runs_capture(const char *path, int *code, mp_err *err, ...) {
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, err);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;) argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    *err = (mp_err){ 0 };
    *code = mp_runs_main(path, argc, argv, out, err);
    assert_int_equal(fclose(out), 0);
    return buf;
}

/* The output of a command expected to succeed. */
static char *runs_ok(const char *path, ...) {
    char *argv[16];
    int argc = 0;
    va_list ap;
    va_start(ap, path);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 15;) argv[argc++] = a;
    va_end(ap);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    assert_non_null(out);
    mp_err err = { 0 };
    if (mp_runs_main(path, argc, argv, out, &err) != MP_OK) fail_msg("runs: %s", err.msg);
    assert_int_equal(fclose(out), 0);
    return buf;
}


/* The line of text that contains needle, copied into line. */
static const char *line_with(const char *text, const char *needle, char *line, size_t n) {
    const char *p = strstr(text, needle);
    if (!p) fail_msg("no '%s' in output:\n%s", needle, text);
    while (p > text && p[-1] != '\n') p--;
    size_t k = strcspn(p, "\n");
    snprintf(line, n, "%.*s", (int)k, p);
    return line;
}

/* The line with needle (see line_with), every run of blanks made one. */
static const char *squeezed(const char *text, const char *needle, char *line, size_t n) {
    line_with(text, needle, line, n);
    char *w = line;
    for (const char *r = line; *r; r++)
        if (*r != ' ' || w == line || w[-1] != ' ') *w++ = *r;
    *w = '\0';
    return line;
}

/* ---------------------------------------------------------------- open */

static void test_open_creates_schema(void **state) {
    fixture *f = *state;
    mp_rundb *db = open_ok(f->path);
    char buf[64];
    /* seen from a second connection while ours is still open */
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), MP_RUNDB_SCHEMA);
    assert_string_equal(raw_text(f->path, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
                                      " AND name IN ('runs', 'params', 'metrics', 'artifacts',"
                                      " 'stages', 'deleted_artifacts')"), 6);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
                                      " AND name IN ('runs_pipeline_started', 'runs_status',"
                                      " 'metrics_run_key_step', 'metrics_final',"
                                      " 'params_key_value', 'artifacts_run', 'artifacts_path',"
                                      " 'deleted_artifacts_path')"), 8);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE type ="
                                      " 'trigger' AND name = 'artifacts_deleted'"), 1);
    /* the full metrics (key, value) index of schema 1 is gone (see rundb.c) */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name ="
                                      " 'metrics_key_value'"), 0);
    mp_rundb_close(db);
    mp_rundb_close(NULL);   /* NULL-safe */

    /* opening again neither fails nor migrates */
    db = open_ok(f->path);
    mp_rundb_close(db);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), MP_RUNDB_SCHEMA);
}

static void test_newer_schema_refused(void **state) {
    fixture *f = *state;
    raw_exec(f->path, "CREATE TABLE future (x); PRAGMA user_version = 4;");
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    assert_int_equal(mp_rundb_open(f->path, &db, &err), MP_E_DB);
    assert_null(db);
    char want[512];
    snprintf(want, sizeof want, "database '%s' has schema version 4, newer than this "
             "mlpipe's 3 (upgrade mlpipe)", f->path);
    assert_string_equal(err.msg, want);
    /* left as it was */
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 4);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name = 'runs'"),
                     0);
}

static void test_not_a_database_refused(void **state) {
    fixture *f = *state;
    static const char text[] = "id,pipeline\n1,iris\nthis is a CSV file, not SQLite\n";
    write_file(f->path, text);
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    assert_int_equal(mp_rundb_open(f->path, &db, &err), MP_E_DB);
    assert_null(db);
    char want[512];
    snprintf(want, sizeof want, "run database '%s': file is not a database", f->path);
    assert_string_equal(err.msg, want);

    /* the file is untouched */
    char *got = NULL;
    mp_err e2 = { 0 };
    assert_int_equal(mp_read_file(f->path, &got, NULL, &e2), MP_OK);
    assert_string_equal(got, text);
    mp_free(got);

    /* a directory where the file should be */
    char dir[160];
    snprintf(dir, sizeof dir, "%s/sub", f->dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    err = (mp_err){ 0 };
    assert_int_equal(mp_rundb_open(dir, &db, &err), MP_E_DB);
    assert_non_null(strstr(err.msg, dir));
    rmdir(dir);
}

static void test_migrate_from_version_0(void **state) {
    fixture *f = *state;
    /* an SQLite file someone made, user_version 0, with a table of its own */
    raw_exec(f->path, "CREATE TABLE notes (x); INSERT INTO notes VALUES ('keep me');");
    mp_rundb *db = open_ok(f->path);
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), MP_RUNDB_SCHEMA);
    char buf[64];
    assert_string_equal(raw_text(f->path, "SELECT x FROM notes", buf, sizeof buf), "keep me");
    assert_string_equal(raw_text(f->path, "PRAGMA journal_mode", buf, sizeof buf), "wal");
    add_run(db, "iris", 1, 3, "test.accuracy", 0.9);
    mp_rundb_close(db);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM runs"), 1);

    /* an empty (0-byte) file is a database of version 0 too */
    char empty[160];
    snprintf(empty, sizeof empty, "%s/empty.db", f->dir);
    write_file(empty, "");
    db = open_ok(empty);
    mp_rundb_close(db);
    assert_int_equal(raw_int(empty, "PRAGMA user_version"), MP_RUNDB_SCHEMA);
}

/* ---------------------------------------------------------------- writes */

static void test_lifecycle(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = open_ok(f->path);
    long long id = 0;
    mp_run_info info = { .pipeline = "iris-logreg", .config = iris_config, .seed = 42 };
    check(mp_rundb_run_begin(db, &info, &id, &err), &err);
    assert_int_equal(id, 1);

    /* while running, a reader sees the run */
    char buf[256], sql[256];
    assert_string_equal(raw_text(f->path, "SELECT status FROM runs WHERE id = 1", buf,
                                 sizeof buf), "running");
    assert_string_equal(raw_text(f->path, "SELECT heartbeat = started FROM runs", buf,
                                 sizeof buf), "1");

    char *keys[] = { "train.learning_rate", "split.test_size", "train.note" };
    char *values[] = { "0.1", "0.2", NULL };
    check(mp_rundb_params(db, id, keys, values, 3, &err), &err);
    values[0] = "0.05";     /* set again: replaced, not duplicated */
    check(mp_rundb_params(db, id, keys, values, 1, &err), &err);

    /* 1000 rows in one call: 998 per-epoch losses and two final figures */
    mp_metric_row rows[1000];
    for (int i = 0; i < 998; i++) rows[i] = (mp_metric_row){ "train.loss", 1.0 / (i + 1), i, 0 };
    rows[998] = (mp_metric_row){ "test.accuracy", 0.9666666666666667, -1, 1767000000.5 };
    rows[999] = (mp_metric_row){ "test.f1_macro", 0.96, -1, 0 };
    check(mp_rundb_metrics(db, id, rows, 1000, &err), &err);
    check(mp_rundb_metrics(db, id, rows, 0, &err), &err);   /* nothing to do */

    check(mp_rundb_artifact(db, id, "model", "out/iris.mlp", "ab12", 2048, &err), &err);
    check(mp_rundb_artifact(db, id, "report", "out/report.txt", NULL, -1, &err), &err);
    check(mp_rundb_stage(db, id, 0, "load", "load_csv", "running", -1, NULL, &err), &err);
    check(mp_rundb_stage(db, id, 0, "load", "load_csv", "finished", 0.25, NULL, &err), &err);
    check(mp_rundb_stage(db, id, 1, "train", "logistic_regression", "finished", 1.5, NULL,
                         &err), &err);
    check(mp_rundb_heartbeat(db, id, &err), &err);
    struct timespec pause = { 0, 20 * 1000000L };   /* so that seconds > 0 */
    nanosleep(&pause, NULL);
    check(mp_rundb_run_end(db, id, "finished", 0, NULL, NULL, &err), &err);
    mp_rundb_close(db);

    /* the run row */
    assert_string_equal(raw_text(f->path, "SELECT status || '|' || pipeline || '|' || seed ||"
                                 " '|' || exit_code || '|' || mlpipe_version FROM runs",
                                 buf, sizeof buf), "finished|iris-logreg|42|0|" MP_VERSION);
    assert_int_equal(raw_int(f->path, "SELECT error IS NULL AND failed_stage IS NULL FROM runs"),
                     1);
    assert_int_equal(raw_int(f->path, "SELECT pid FROM runs"), getpid());
    char host[256] = "";
    gethostname(host, sizeof host);
    assert_string_equal(raw_text(f->path, "SELECT host FROM runs", buf, sizeof buf), host);
    char sha[65];
    mp_sha256_hex(iris_config, strlen(iris_config), sha);
    assert_string_equal(raw_text(f->path, "SELECT config_sha256 FROM runs", buf, sizeof buf),
                        sha);
    assert_string_equal(raw_text(f->path, "SELECT config FROM runs", buf, sizeof buf),
                        iris_config);
    /* ISO 8601 UTC with milliseconds; seconds = ended - started */
    raw_text(f->path, "SELECT started FROM runs", buf, sizeof buf);
    assert_int_equal(strlen(buf), 24);
    assert_true(buf[10] == 'T' && buf[19] == '.' && buf[23] == 'Z');
    assert_int_equal(raw_int(f->path, "SELECT ended > started AND heartbeat = ended"
                                      " AND seconds >= 0.02 AND seconds < 60 AND abs(seconds -"
                                      " (julianday(ended) - julianday(started)) * 86400) < 0.002"
                                      " FROM runs"), 1);

    /* params */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM params WHERE run = 1"), 3);
    assert_string_equal(raw_text(f->path, "SELECT value FROM params WHERE key ="
                                 " 'train.learning_rate'", buf, sizeof buf), "0.05");
    assert_int_equal(raw_int(f->path, "SELECT value IS NULL FROM params WHERE key ="
                                      " 'train.note'"), 1);

    /* metrics: every row, steps NULL for final figures, a time on every row */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics WHERE run = 1"), 1000);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics WHERE step IS NULL"), 2);
    assert_int_equal(raw_int(f->path, "SELECT max(step) FROM metrics WHERE key = 'train.loss'"),
                     997);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics WHERE time > 1.6e9"), 1000);
    assert_string_equal(raw_text(f->path, "SELECT time FROM metrics WHERE key ="
                                 " 'test.accuracy'", buf, sizeof buf), "1767000000.5");
    snprintf(sql, sizeof sql, "SELECT value = 0.9666666666666667 FROM metrics"
             " WHERE key = 'test.accuracy' AND step IS NULL");
    assert_int_equal(raw_int(f->path, sql), 1);

    /* artifacts and stages */
    assert_string_equal(raw_text(f->path, "SELECT name || '|' || path || '|' || sha256 || '|' ||"
                                 " bytes FROM artifacts WHERE name = 'model'", buf, sizeof buf),
                        "model|out/iris.mlp|ab12|2048");
    assert_int_equal(raw_int(f->path, "SELECT sha256 IS NULL AND bytes IS NULL FROM artifacts"
                                      " WHERE name = 'report'"), 1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM stages"), 2);
    assert_string_equal(raw_text(f->path, "SELECT status || '|' || seconds FROM stages"
                                 " WHERE idx = 0", buf, sizeof buf), "finished|0.25");

    /* re-opened, the next run gets the next id */
    db = open_ok(f->path);
    assert_int_equal(add_run(db, "iris-logreg", 7, 5, "test.accuracy", 0.9), 2);
    mp_rundb_close(db);

    /* deleting a run takes its rows along (foreign keys with ON DELETE CASCADE) */
    raw_exec(f->path, "PRAGMA foreign_keys = ON; DELETE FROM runs WHERE id = 1;");
    assert_int_equal(raw_int(f->path, "SELECT (SELECT count(*) FROM metrics WHERE run = 1) +"
                                      " (SELECT count(*) FROM params WHERE run = 1) +"
                                      " (SELECT count(*) FROM stages WHERE run = 1) +"
                                      " (SELECT count(*) FROM artifacts WHERE run = 1)"), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics"), 7);
}

static void test_failed_run(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = open_ok(f->path);
    long long id = 0;
    mp_run_info info = { .pipeline = "wine", .seed = UINT64_MAX };   /* no config */
    check(mp_rundb_run_begin(db, &info, &id, &err), &err);
    check(mp_rundb_stage(db, id, 0, "train", "mlp", "failed", 0.5,
                         "loss diverged (NaN) at epoch 3", &err), &err);
    check(mp_rundb_run_end(db, id, "failed", 1, "stage 'train': loss diverged (NaN) at epoch 3",
                           "train", &err), &err);
    long long id2 = 0;
    check(mp_rundb_run_begin(db, &info, &id2, &err), &err);
    check(mp_rundb_run_end(db, id2, "killed", 143, "terminated by SIGTERM", NULL, &err), &err);

    /* an unknown run */
    assert_int_equal(mp_rundb_run_end(db, 99, "finished", 0, NULL, NULL, &err), MP_E_DB);
    assert_non_null(strstr(err.msg, "no run 99"));
    /* a status outside the CHECK constraint */
    err = (mp_err){ 0 };
    assert_int_equal(mp_rundb_run_end(db, id2, "done", 0, NULL, NULL, &err), MP_E_DB);
    assert_non_null(strstr(err.msg, "CHECK constraint failed"));
    mp_rundb_close(db);

    char buf[256];
    assert_string_equal(raw_text(f->path, "SELECT status || '|' || exit_code || '|' || error ||"
                                 " '|' || failed_stage FROM runs WHERE id = 1", buf, sizeof buf),
                        "failed|1|stage 'train': loss diverged (NaN) at epoch 3|train");
    assert_int_equal(raw_int(f->path, "SELECT config IS NULL AND config_sha256 IS NULL"
                                      " FROM runs WHERE id = 1"), 1);
    assert_int_equal(raw_int(f->path, "SELECT seed FROM runs WHERE id = 1"), -1);  /* 2^64 - 1 */
    assert_string_equal(raw_text(f->path, "SELECT error FROM stages", buf, sizeof buf),
                        "loss diverged (NaN) at epoch 3");
    assert_string_equal(raw_text(f->path, "SELECT status || '|' || exit_code || '|' ||"
                                 " (failed_stage IS NULL) FROM runs WHERE id = 2", buf,
                                 sizeof buf), "killed|143|1");
}

/* A batch either goes in whole or not at all, and SQLite's message says why. */
static void test_write_errors_roll_back(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = open_ok(f->path);
    mp_metric_row rows[3] = { { "a", 1, 0, 0 }, { "b", 2, 1, 0 }, { "c", 3, 2, 0 } };

    /* no such run: the foreign key */
    assert_int_equal(mp_rundb_metrics(db, 42, rows, 3, &err), MP_E_DB);
    char want[256];
    snprintf(want, sizeof want, "run database '%s': FOREIGN KEY constraint failed", f->path);
    assert_string_equal(err.msg, want);

    /* the third row is bad: the first two are rolled back with it */
    long long id = add_run(db, "iris", 1, 0, "test.accuracy", 1);
    rows[2].key = NULL;
    err = (mp_err){ 0 };
    assert_int_equal(mp_rundb_metrics(db, id, rows, 3, &err), MP_E_DB);
    assert_non_null(strstr(err.msg, "NOT NULL constraint failed: metrics.key"));
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics WHERE key IN ('a', 'b')"),
                     0);

    /* and the connection is fine afterwards */
    rows[2].key = "c";
    err = (mp_err){ 0 };
    check(mp_rundb_metrics(db, id, rows, 3, &err), &err);

    /* a bad row inside a multi-row insert (rows go 32 to a statement): the
     * whole batch goes, also the chunks before it */
    mp_metric_row many[100];
    for (int i = 0; i < 100; i++) many[i] = (mp_metric_row){ "m", i, i, 0 };
    many[70].key = NULL;
    err = (mp_err){ 0 };
    assert_int_equal(mp_rundb_metrics(db, id, many, 100, &err), MP_E_DB);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics WHERE key = 'm'"), 0);
    many[70].key = "m";
    check(mp_rundb_metrics(db, id, many, 100, &err), &err);
    /* every row, in order, the chunked ones and the single ones */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics WHERE key = 'm' AND"
                                      " step = value"), 100);
    assert_int_equal(raw_int(f->path, "SELECT max(step) - min(step) + 1 - count(DISTINCT step)"
                                      " FROM metrics WHERE key = 'm'"), 0);
    mp_rundb_close(db);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics WHERE key IN ('a','b','c')"),
                     3);
}

/* ---------------------------------------------------------------- concurrency */

enum { N_WRITERS = 8, N_ROWS = 500, BATCH = 50 };

/* One child: open the shared file (maybe creating it), write a run with
 * N_ROWS metric rows in batches.  Never returns. */
static void writer_child(const char *path, int k, int go_fd) {
    char c;
    if (read(go_fd, &c, 1) < 0) _exit(3);     /* wait until all are forked */
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    long long id = 0;
    char name[32];
    snprintf(name, sizeof name, "writer-%d", k);
    mp_run_info info = { .pipeline = name, .config = iris_config, .seed = (uint64_t)k };
    mp_metric_row rows[BATCH];
    int rc = mp_rundb_open(path, &db, &err);
    if (rc == MP_OK) rc = mp_rundb_run_begin(db, &info, &id, &err);
    for (int b = 0; rc == MP_OK && b < N_ROWS / BATCH; b++) {
        for (int i = 0; i < BATCH; i++)
            rows[i] = (mp_metric_row){ "train.loss", (double)k + i, b * BATCH + i, 0 };
        rc = mp_rundb_metrics(db, id, rows, BATCH, &err);
    }
    if (rc == MP_OK) rc = mp_rundb_run_end(db, id, "finished", 0, NULL, NULL, &err);
    if (rc != MP_OK) fprintf(stderr, "writer %d: %s\n", k, err.msg);
    mp_rundb_close(db);
    _exit(rc == MP_OK ? 0 : 1);
}

static void test_concurrent_writers(void **state) {
    fixture *f = *state;
    /* the file does not exist yet: the children race to create the schema */
    int go[2];
    assert_int_equal(pipe(go), 0);
    pid_t pids[N_WRITERS];
    fflush(NULL);   /* nothing buffered gets written twice */
    for (int k = 0; k < N_WRITERS; k++) {
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            close(go[1]);
            writer_child(f->path, k, go[0]);
        }
    }
    close(go[0]);
    close(go[1]);   /* EOF on the pipe starts them all at once */
    for (int k = 0; k < N_WRITERS; k++) {
        int status = 0;
        assert_int_equal(waitpid(pids[k], &status, 0), pids[k]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    char buf[64];
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), MP_RUNDB_SCHEMA);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM runs WHERE status = 'finished'"),
                     N_WRITERS);
    assert_int_equal(raw_int(f->path, "SELECT count(DISTINCT pipeline) FROM runs"), N_WRITERS);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics"), N_WRITERS * N_ROWS);
    /* every run has its own N_ROWS rows, steps 0..N_ROWS-1 */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM (SELECT run FROM metrics GROUP BY"
                                      " run HAVING count(*) = 500 AND count(DISTINCT step) = 500"
                                      " AND min(step) = 0 AND max(step) = 499)"), N_WRITERS);
    assert_string_equal(raw_text(f->path, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    assert_string_equal(raw_text(f->path, "PRAGMA foreign_key_check", buf, sizeof buf), "");
}

/* ---------------------------------------------------------------- mlpipe runs */

/* Three runs: iris (accuracy), housing (r2), a failed one without metrics. */
static void populate(const char *path) {
    mp_rundb *db = open_ok(path);
    add_run(db, "iris", 42, 100, "test.accuracy", 0.9666666);
    add_run(db, "housing", UINT64_MAX, 10, "test.r2", 0.81234);
    mp_err err = { 0 };
    long long id = 0;
    mp_run_info info = { .pipeline = "iris", .config = iris_config, .seed = 1 };
    check(mp_rundb_run_begin(db, &info, &id, &err), &err);
    check(mp_rundb_stage(db, id, 0, "load", "load_csv", "failed", 0.001,
                         "cannot open 'data/\xff.csv'", &err), &err);   /* not UTF-8 */
    check(mp_rundb_run_end(db, id, "failed", 1, "stage 'load': cannot open 'data/\xff.csv'",
                           "load", &err), &err);
    mp_rundb_close(db);
    /* fixed durations, to check their format */
    raw_exec(path, "UPDATE runs SET seconds = 2.314 WHERE id = 1;"
                   "UPDATE runs SET seconds = 64.2 WHERE id = 2;"
                   "UPDATE runs SET seconds = 3725 WHERE id = 3;");
}

static void test_runs_list(void **state) {
    fixture *f = *state;
    populate(f->path);
    char *out = runs_ok(f->path, "list", NULL);
    char line[256];
    line_with(out, "PIPELINE", line, sizeof line);
    const char *cols[] = { "ID", "PIPELINE", "STATUS", "STARTED", "DURATION", "METRIC" };
    for (size_t i = 0; i < 6; i++) assert_non_null(strstr(line, cols[i]));
    assert_non_null(strstr(line_with(out, "test.accuracy=0.9667", line, sizeof line), "2.31s"));
    assert_non_null(strstr(line, "finished"));
    assert_non_null(strstr(line_with(out, "test.r2=0.8123", line, sizeof line), "1m04s"));
    assert_non_null(strstr(line_with(out, "failed", line, sizeof line), "1h02m05s"));
    /* newest first; columns line up: METRIC starts at the same offset */
    const char *r3 = strstr(out, "\n 3  "), *r1 = strstr(out, "\n 1  ");
    assert_non_null(r3);
    assert_non_null(r1);
    assert_true(r3 < r1);
    size_t col = (size_t)(strstr(out, "METRIC") - out);
    assert_int_equal((size_t)(strstr(r1 + 1, "test.accuracy") - (r1 + 1)), col);
    /* started is shown without milliseconds (TZ is UTC in these tests) */
    char started[32];
    raw_text(f->path, "SELECT substr(started, 1, 10) || ' ' || substr(started, 12, 8)"
                      " FROM runs WHERE id = 1", started, sizeof started);
    assert_non_null(strstr(out, started));
    libc_free(out);

    /* filters and limit */
    out = runs_ok(f->path, "list", "--pipeline", "iris", "--status=finished", NULL);
    assert_non_null(strstr(out, "test.accuracy"));
    assert_null(strstr(out, "housing"));
    assert_null(strstr(out, "failed"));
    libc_free(out);
    out = runs_ok(f->path, "list", "--limit", "1", NULL);
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 2);     /* header + run 3 */
    assert_non_null(strstr(out, "failed"));
    libc_free(out);
    out = runs_ok(f->path, "list", "--pipeline", "nope", NULL);
    assert_non_null(strstr(out, "no matching runs"));
    libc_free(out);

    /* JSON */
    out = runs_ok(f->path, "list", "--json", NULL);
    json_error_t jerr;
    json_t *arr = json_loads(out, 0, &jerr);
    if (!arr) fail_msg("bad JSON (%s):\n%s", jerr.text, out);
    assert_true(json_is_array(arr));
    assert_int_equal(json_array_size(arr), 3);
    json_t *r = json_array_get(arr, 2);
    assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
    assert_string_equal(json_string_value(json_object_get(r, "pipeline")), "iris");
    assert_string_equal(json_string_value(json_object_get(r, "status")), "finished");
    assert_true(json_real_value(json_object_get(r, "seconds")) == 2.314);
    json_t *m = json_object_get(r, "metric");
    assert_string_equal(json_string_value(json_object_get(m, "key")), "test.accuracy");
    assert_true(json_real_value(json_object_get(m, "value")) == 0.9666666);
    assert_true(json_is_null(json_object_get(json_array_get(arr, 0), "metric")));
    json_decref(arr);
    libc_free(out);

    /* bare `mlpipe runs` lists */
    out = runs_ok(f->path, NULL);
    assert_non_null(strstr(out, "PIPELINE"));
    libc_free(out);
}

static void test_runs_show(void **state) {
    fixture *f = *state;
    populate(f->path);
    char *out = runs_ok(f->path, "show", "1", NULL);
    char line[256];
    assert_non_null(strstr(out, "run 1  iris  finished"));
    assert_non_null(strstr(line_with(out, "duration", line, sizeof line), "2.31s"));
    assert_non_null(strstr(line_with(out, "seed", line, sizeof line), "42"));
    assert_non_null(strstr(line_with(out, "version", line, sizeof line), MP_VERSION));
    assert_null(strstr(out, "failed stage"));      /* only when there is one */
    /* params sorted, aligned on '=' */
    const char *p1 = strstr(out, "  split.test_size     = 0.2\n");
    const char *p2 = strstr(out, "  train.epochs        = 100\n");
    const char *p3 = strstr(out, "  train.learning_rate = 0.1\n");
    assert_true(p1 && p2 && p3 && p1 < p2 && p2 < p3);
    /* final figures, then the history summary */
    assert_non_null(strstr(line_with(out, "test.accuracy ", line, sizeof line), "0.966667"));
    line_with(out, "train.loss", line, sizeof line);
    assert_non_null(strstr(line, "= 0.01"));
    assert_non_null(strstr(line, "(last of 100 steps; min 0.01, max 1)"));
    /* artifacts, stages */
    line_with(out, "out/model.mlp", line, sizeof line);
    assert_non_null(strstr(line, "1234 bytes"));
    assert_non_null(strstr(line, "e3b0c442"));
    line_with(out, "logistic_regression", line, sizeof line);
    assert_non_null(strstr(line, "train"));
    assert_non_null(strstr(line, "1.50s"));
    /* config last */
    const char *cfg = strstr(out, "\nconfig\n");
    assert_non_null(cfg);
    assert_string_equal(cfg + strlen("\nconfig\n"), iris_config);
    libc_free(out);

    /* the failed run, by `last`: error and failed stage; 64-bit seeds */
    out = runs_ok(f->path, "show", "last", NULL);
    assert_non_null(strstr(out, "run 3  iris  failed"));
    assert_non_null(strstr(line_with(out, "failed stage", line, sizeof line), "load"));
    assert_non_null(strstr(line_with(out, "exit code", line, sizeof line), "1"));
    assert_non_null(strstr(out, "stage 'load': cannot open"));
    libc_free(out);
    out = runs_ok(f->path, "show", "2", NULL);
    assert_non_null(strstr(out, "18446744073709551615"));
    libc_free(out);

    /* JSON: the same content, the history as arrays */
    out = runs_ok(f->path, "show", "1", "--json", NULL);
    json_error_t jerr;
    json_t *o = json_loads(out, 0, &jerr);
    if (!o) fail_msg("bad JSON (%s):\n%s", jerr.text, out);
    assert_int_equal(json_integer_value(json_object_get(o, "id")), 1);
    assert_int_equal(json_integer_value(json_object_get(o, "seed")), 42);
    json_t *params = json_object_get(o, "params");
    assert_int_equal(json_object_size(params), 3);
    assert_string_equal(json_string_value(json_object_get(params, "train.learning_rate")), "0.1");
    assert_string_equal(json_string_value(json_object_get(params, "train.epochs")), "100");
    assert_true(json_real_value(json_object_get(json_object_get(o, "metrics"),
                                                "test.accuracy")) == 0.9666666);
    json_t *loss = json_object_get(json_object_get(o, "history"), "train.loss");
    assert_int_equal(json_array_size(json_object_get(loss, "steps")), 100);
    assert_int_equal(json_array_size(json_object_get(loss, "values")), 100);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(loss, "steps"), 99)), 99);
    assert_true(json_real_value(json_object_get(loss, "last")) == 0.01);
    assert_true(json_real_value(json_object_get(loss, "max")) == 1.0);
    json_t *arts = json_object_get(o, "artifacts");
    assert_int_equal(json_array_size(arts), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arts, 0), "bytes")), 1234);
    assert_int_equal(json_array_size(json_object_get(o, "stages")), 2);
    assert_string_equal(json_string_value(json_object_get(o, "config")), iris_config);
    json_decref(o);
    libc_free(out);

    /* a seed above 2^63 and a non-UTF-8 error message still make valid JSON */
    out = runs_ok(f->path, "show", "2", "--json", NULL);
    o = json_loads(out, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "seed")), "18446744073709551615");
    json_decref(o);
    libc_free(out);
    out = runs_ok(f->path, "show", "3", "--json", NULL);
    o = json_loads(out, 0, &jerr);
    if (!o) fail_msg("bad JSON (%s):\n%s", jerr.text, out);
    assert_string_equal(json_string_value(json_object_get(o, "error")),
                        "stage 'load': cannot open 'data/?.csv'");
    assert_string_equal(json_string_value(json_object_get(o, "failed_stage")), "load");
    json_decref(o);
    libc_free(out);
}

static void test_runs_errors(void **state) {
    fixture *f = *state;
    mp_err err;
    int code;
    char want[512];

    /* a missing database is an error and is not created */
    libc_free(runs_capture(f->path, &code, &err, "list", NULL));
    assert_int_equal(code, MP_E_DB);
    snprintf(want, sizeof want, "no run database at '%s'", f->path);
    assert_string_equal(err.msg, want);
    assert_int_equal(access(f->path, F_OK), -1);

    populate(f->path);
    libc_free(runs_capture(f->path, &code, &err, "show", "42", NULL));
    assert_int_equal(code, MP_E_USAGE);
    snprintf(want, sizeof want, "no run 42 in '%s'", f->path);
    assert_string_equal(err.msg, want);

    static const char *const bad[][4] = {
        { "frobnicate" },
        { "list", "--frob" },
        { "list", "--limit" },
        { "list", "--limit", "ten" },
        { "list", "--status", "done" },
        { "list", "extra" },
        { "show" },
        { "show", "abc" },
        { "show", "0" },
        { "show", "1", "2" },
        { "show", "1", "--pipeline", "iris" },
        { "show", "1", "--format", "csv" },
        { "list", "--where" },
        { "list", "--format", "yaml" },
        { "list", "--since", "yesterday" },
        { "list", "--columns", "id,,status" },
        { "list", "--min" },
        { "compare", "1" },
        { "compare", "1", "x" },
        { "best" },
        { "best", "--metric" },
        { "best", "--metric", "test.accuracy", "1" },
        { "metrics", "1" },
        { "metrics", "1", "train.loss", "x" },
        { "export", "--format", "table" },
        { "delete" },
        { "delete", "abc" },
        { "gc", "now" },
        { "gc", "--force" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char *argv[4] = { 0 };
        int argc = 0;
        while (argc < 4 && bad[i][argc]) argv[argc] = (char *)bad[i][argc], argc++;
        char *buf = NULL;
        size_t len = 0;
        FILE *out = open_memstream(&buf, &len);
        err = (mp_err){ 0 };
        code = mp_runs_main(f->path, argc, argv, out, &err);
        fclose(out);
        if (code != MP_E_USAGE) fail_msg("case %zu: code %d (%s)", i, code, err.msg);
        if (!strstr(err.msg, "usage: mlpipe runs")) fail_msg("case %zu: %s", i, err.msg);
        assert_int_equal(len, 0);   /* nothing printed */
        libc_free(buf);
    }

    /* help goes to out */
    char *out = runs_ok(f->path, "help", NULL);
    assert_non_null(strstr(out, "usage: mlpipe runs list"));
    libc_free(out);
}

/* ---------------------------------------------------------------- schema 1 -> 2 */

/* The version-1 schema exactly as mlpipe 0.1.0 created it (migration 1 of
 * runner/rundb.c at that version).  Never edit: it stands for files that
 * exist. */
static const char v1_ddl[] =
    "CREATE TABLE runs ("
    "  id             INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  pipeline       TEXT NOT NULL,"
    "  status         TEXT NOT NULL"
    "                 CHECK (status IN ('running', 'finished', 'failed', 'killed')),"
    "  started        TEXT NOT NULL,"
    "  ended          TEXT,"
    "  seconds        REAL,"
    "  config         TEXT,"
    "  config_sha256  TEXT,"
    "  seed           INTEGER,"
    "  exit_code      INTEGER,"
    "  error          TEXT,"
    "  failed_stage   TEXT,"
    "  host           TEXT,"
    "  pid            INTEGER,"
    "  mlpipe_version TEXT,"
    "  heartbeat      TEXT"
    ");"
    "CREATE INDEX runs_pipeline_started ON runs (pipeline, started);"
    "CREATE INDEX runs_status ON runs (status);"
    "CREATE TABLE params ("
    "  run   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  key   TEXT NOT NULL,"
    "  value TEXT,"
    "  PRIMARY KEY (run, key)"
    ");"
    "CREATE TABLE metrics ("
    "  run   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  key   TEXT NOT NULL,"
    "  value REAL,"
    "  step  INTEGER,"
    "  time  REAL"
    ");"
    "CREATE INDEX metrics_run_key_step ON metrics (run, key, step);"
    "CREATE INDEX metrics_key_value ON metrics (key, value);"
    "CREATE TABLE artifacts ("
    "  run    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  name   TEXT NOT NULL,"
    "  path   TEXT NOT NULL,"
    "  sha256 TEXT,"
    "  bytes  INTEGER"
    ");"
    "CREATE INDEX artifacts_run ON artifacts (run);"
    "CREATE TABLE stages ("
    "  run     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  idx     INTEGER NOT NULL,"
    "  kind    TEXT NOT NULL,"
    "  module  TEXT NOT NULL,"
    "  status  TEXT NOT NULL,"
    "  seconds REAL,"
    "  error   TEXT,"
    "  PRIMARY KEY (run, idx)"
    ");"
    "PRAGMA user_version = 1;";

/* A version-1 file with one finished run and all its kinds of rows. */
static void make_v1(const char *path) {
    raw_exec(path, "PRAGMA journal_mode = WAL;");
    raw_exec(path, v1_ddl);
    raw_exec(path,
             "INSERT INTO runs (pipeline, status, started, ended, seconds, config, seed,"
             " exit_code, host, pid, mlpipe_version, heartbeat) VALUES ('old', 'finished',"
             " '2025-01-02T03:04:05.000Z', '2025-01-02T03:04:06.500Z', 1.5, 'name: old', -1,"
             " 0, 'h', 7, '0.1.0', '2025-01-02T03:04:06.500Z');"
             "INSERT INTO params VALUES (1, 'train.learning_rate', '0.3');"
             "INSERT INTO metrics VALUES (1, 'test.accuracy', 0.75, NULL, 1.7e9),"
             " (1, 'train.loss', 0.5, 1, 1.7e9), (1, 'train.loss', 0.25, 2, 1.7e9);"
             "INSERT INTO artifacts VALUES (1, 'model', 'out/old.mlpm', 'ab', 10);"
             "INSERT INTO stages VALUES (1, 0, 'train', 'mlp', 'finished', 1.2, NULL);");
}

static void test_migrate_from_version_1(void **state) {
    fixture *f = *state;
    make_v1(f->path);
    mp_log_level = MP_LOG_WARN;     /* "migrating schema 1 -> 2" */
    mp_rundb *db = open_ok(f->path);
    mp_log_level = MP_LOG_INFO;
    mp_rundb_close(db);
    char buf[256];
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 3);
    /* the data survived, row for row */
    assert_string_equal(raw_text(f->path, "SELECT pipeline || '|' || status || '|' || seconds ||"
                                 " '|' || seed || '|' || heartbeat FROM runs", buf, sizeof buf),
                        "old|finished|1.5|-1|2025-01-02T03:04:06.500Z");
    assert_string_equal(raw_text(f->path, "SELECT group_concat(key || '=' || value) FROM"
                                 " (SELECT key, value FROM metrics ORDER BY rowid)", buf,
                                 sizeof buf), "test.accuracy=0.75,train.loss=0.5,train.loss=0.25");
    assert_string_equal(raw_text(f->path, "SELECT value FROM params", buf, sizeof buf), "0.3");
    assert_string_equal(raw_text(f->path, "SELECT path FROM artifacts", buf, sizeof buf),
                        "out/old.mlpm");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM stages"), 1);
    /* the new objects are there, the old index is not */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
                                      " ('deleted_artifacts', 'artifacts_deleted', 'metrics_final',"
                                      " 'params_key_value', 'artifacts_path')"), 5);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name ="
                                      " 'metrics_key_value'"), 0);
    assert_string_equal(raw_text(f->path, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    /* and work: the queries read the old rows, a new run goes in */
    char *out = runs_ok(f->path, "list", "--where", "test.accuracy = 0.75", "--columns",
                        "id,train.learning_rate", "--format", "csv", NULL);
    assert_string_equal(out, "id,train.learning_rate\n1,0.3\n");
    libc_free(out);
    db = open_ok(f->path);
    assert_int_equal(add_run(db, "new", 1, 2, "test.accuracy", 0.5), 2);
    mp_rundb_close(db);
}

/* Schema 2 -> 3: the final-figures index of a version-2 file (as the 2
 * migration made it) becomes the covering one; rows and queries unchanged. */
static void test_migrate_from_version_2(void **state) {
    fixture *f = *state;
    make_v1(f->path);
    mp_log_level = MP_LOG_WARN;
    mp_rundb_close(open_ok(f->path));
    raw_exec(f->path, "DROP INDEX metrics_final;"
                      "CREATE INDEX metrics_final ON metrics (key, value) WHERE step IS NULL;"
                      "PRAGMA user_version = 2;");
    mp_rundb_close(open_ok(f->path));
    mp_log_level = MP_LOG_INFO;
    char buf[256];
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 3);
    assert_string_equal(raw_text(f->path, "SELECT sql FROM sqlite_master WHERE name ="
                                 " 'metrics_final'", buf, sizeof buf),
                        "CREATE INDEX metrics_final ON metrics (key, value, run, step)"
                        " WHERE step IS NULL");
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics"), 3);
    assert_string_equal(raw_text(f->path, "PRAGMA integrity_check", buf, sizeof buf), "ok");
    char *out = runs_ok(f->path, "list", "--where", "test.accuracy = 0.75", "--columns",
                        "id,train.learning_rate", "--format", "csv", NULL);
    assert_string_equal(out, "id,train.learning_rate\n1,0.3\n");
    libc_free(out);
}

/* A migration that fails leaves the file as it was: one transaction. */
static void test_migration_is_atomic(void **state) {
    fixture *f = *state;
    make_v1(f->path);
    /* an object of the user's that step 2 would create again: it fails */
    raw_exec(f->path, "CREATE TABLE deleted_artifacts (mine TEXT);");
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    mp_log_level = MP_LOG_WARN;
    assert_int_equal(mp_rundb_open(f->path, &db, &err), MP_E_DB);
    mp_log_level = MP_LOG_INFO;
    assert_null(db);
    assert_non_null(strstr(err.msg, "table deleted_artifacts already exists"));
    assert_int_equal(raw_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
                                      " ('metrics_key_value')"), 1);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
                                      " ('metrics_final', 'artifacts_deleted', 'params_key_value')"),
                     0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM metrics"), 3);
}

/* ---------------------------------------------------------------- lost runs */

/* A pid that no process has: a child that has exited and been reaped. */
static pid_t dead_pid(void) {
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(0);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return pid;
}

static void test_lost_runs(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = open_ok(f->path);
    long long ids[5];
    mp_run_info info = { .pipeline = "p", .seed = 1 };
    for (int i = 0; i < 5; i++) check(mp_rundb_run_begin(db, &info, &ids[i], &err), &err);
    check(mp_rundb_run_end(db, ids[4], "finished", 0, NULL, NULL, &err), &err);
    mp_rundb_close(db);
    char host[256] = "";
    gethostname(host, sizeof host);
    char sql[1024];
    /* 1: alive (this process, fresh heartbeat); 2: heartbeat 10 min old;
     * 3: this host, pid gone, 60 s old; 4: pid gone but on another host */
    snprintf(sql, sizeof sql,
             "UPDATE runs SET heartbeat = strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now', '-600 seconds')"
             " WHERE id = 2;"
             "UPDATE runs SET pid = %d, heartbeat = strftime('%%Y-%%m-%%dT%%H:%%M:%%fZ', 'now',"
             " '-60 seconds') WHERE id IN (3, 4);"
             "UPDATE runs SET host = 'elsewhere' WHERE id = 4;", (int)dead_pid());
    raw_exec(f->path, sql);

    char *out = runs_ok(f->path, "list", "--columns", "id,status", "--format", "csv", "--sort",
                        "id", NULL);
    assert_string_equal(out, "id,status\n1,running\n2,lost\n3,lost\n4,running\n5,finished\n");
    libc_free(out);
    out = runs_ok(f->path, "list", "--status", "lost", "--columns", "id", "--format", "csv", NULL);
    assert_string_equal(out, "id\n3\n2\n");
    libc_free(out);
    out = runs_ok(f->path, "list", "--status", "running", "--columns", "id", "--format", "csv",
                  NULL);
    assert_string_equal(out, "id\n4\n1\n");
    libc_free(out);
    out = runs_ok(f->path, "list", "--where", "status != 'lost'", "--columns", "id", "--format",
                  "csv", NULL);
    assert_string_equal(out, "id\n5\n4\n1\n");
    libc_free(out);

    /* show says why */
    out = runs_ok(f->path, "show", "2", NULL);
    char line[256];
    assert_non_null(strstr(out, "run 2  p  lost"));
    /* 10m00s, or a few seconds more on a slow machine */
    line_with(out, "  lost ", line, sizeof line);
    assert_non_null(strstr(line, "no heartbeat for 10m0"));
    assert_non_null(strstr(line, "s (lost after 300s)"));
    libc_free(out);
    out = runs_ok(f->path, "show", "3", "--json", NULL);
    json_error_t jerr;
    json_t *o = json_loads(out, 0, &jerr);
    assert_non_null(o);
    assert_string_equal(json_string_value(json_object_get(o, "status")), "lost");
    assert_non_null(strstr(json_string_value(json_object_get(o, "lost_reason")),
                           "on this host) is gone; last heartbeat 1m0"));
    json_decref(o);
    libc_free(out);

    /* MLPIPE_LOST_AFTER moves the threshold (read when the database opens) */
    setenv("MLPIPE_LOST_AFTER", "30", 1);
    out = runs_ok(f->path, "list", "--status", "lost", "--columns", "id", "--format", "csv", NULL);
    assert_string_equal(out, "id\n4\n3\n2\n");
    libc_free(out);
    setenv("MLPIPE_LOST_AFTER", "nonsense", 1);     /* warned about, default kept */
    mp_log_level = MP_LOG_ERROR;
    out = runs_ok(f->path, "list", "--status", "lost", "--columns", "id", "--format", "csv", NULL);
    mp_log_level = MP_LOG_INFO;
    assert_string_equal(out, "id\n3\n2\n");
    libc_free(out);
    unsetenv("MLPIPE_LOST_AFTER");

    /* a live run is not deleted without --force; a lost one is */
    mp_err e;
    int code;
    libc_free(runs_capture(f->path, &code, &e, "delete", "1", NULL));
    assert_int_equal(code, MP_E_USAGE);
    assert_non_null(strstr(e.msg, "run 1 is still running"));
    libc_free(runs_ok(f->path, "delete", "2", NULL));
    libc_free(runs_ok(f->path, "delete", "1", "--force", NULL));
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM runs"), 3);
}

/* The heartbeat thread keeps a quiet run's heartbeat fresh. */
static void test_heartbeat_thread(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = open_ok(f->path);
    long long id;
    mp_run_info info = { .pipeline = "p", .seed = 1 };
    check(mp_rundb_run_begin(db, &info, &id, &err), &err);
    mp_rundb_beat *beat = NULL;
    check(mp_rundb_beat_start(f->path, id, 0.02, &beat, &err), &err);
    /* while the thread beats, the run's own writes go on */
    mp_metric_row row = { "train.loss", 1, 0, 0 };
    check(mp_rundb_metrics(db, id, &row, 1, &err), &err);
    /* the heartbeat moves on with no write of ours (within 10 s, for a busy machine) */
    const char *moved = "SELECT (julianday(heartbeat) - julianday(started)) * 86400000 >= 200"
                        " FROM runs";
    struct timespec pause = { 0, 20 * 1000000L };
    for (int i = 0; i < 500 && raw_int(f->path, moved) == 0; i++) nanosleep(&pause, NULL);
    assert_int_equal(raw_int(f->path, moved), 1);
    mp_rundb_beat_stop(beat);
    mp_rundb_beat_stop(NULL);
    check(mp_rundb_run_end(db, id, "finished", 0, NULL, NULL, &err), &err);
    mp_rundb_close(db);
    /* a database that cannot be opened */
    mp_rundb_beat *b2 = NULL;
    char bad[160];
    snprintf(bad, sizeof bad, "%s/no/such/dir/x.db", f->dir);
    err = (mp_err){ 0 };
    assert_int_equal(mp_rundb_beat_start(bad, id, 1, &b2, &err), MP_E_DB);
    assert_null(b2);
}

/* ---------------------------------------------------------------- delete, gc */

typedef struct gc_seen {
    char   lines[16][300];
    size_t n;
} gc_seen;

static void gc_collect(void *ud, const mp_gc_file *file) {
    gc_seen *s = ud;
    static const char *const what[] = { "removed", "missing", "in use", "changed", "failed" };
    if (s->n < 16)
        snprintf(s->lines[s->n++], sizeof s->lines[0], "%s %s", what[file->action],
                 strrchr(file->path, '/') + 1);
}

static void add_artifact_run(mp_rundb *db, const char *dir, const char *file, long long *id) {
    mp_err err = { 0 };
    mp_run_info info = { .pipeline = "p", .seed = 1 };
    check(mp_rundb_run_begin(db, &info, id, &err), &err);
    char path[256], sha[65];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    if (access(path, F_OK) != 0) write_file(path, file);    /* content: its own name */
    mp_sha256_hex(file, strlen(file), sha);
    check(mp_rundb_artifact(db, *id, "model", path, sha, (long long)strlen(file), &err), &err);
    check(mp_rundb_run_end(db, *id, "finished", 0, NULL, NULL, &err), &err);
}

static void test_delete_and_gc(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = open_ok(f->path);
    long long id[6];
    add_artifact_run(db, f->dir, "a.mlpm", &id[0]);         /* deleted: removed */
    add_artifact_run(db, f->dir, "shared.mlpm", &id[1]);    /* deleted, but id[2] keeps it */
    add_artifact_run(db, f->dir, "shared.mlpm", &id[2]);
    add_artifact_run(db, f->dir, "changed.mlpm", &id[3]);   /* rewritten since: kept */
    add_artifact_run(db, f->dir, "gone.mlpm", &id[4]);      /* already removed */
    add_artifact_run(db, f->dir, "orphan.mlpm", &id[5]);    /* deleted with plain SQL */
    char path[256];
    snprintf(path, sizeof path, "%s/changed.mlpm", f->dir);
    write_file(path, "something else");
    snprintf(path, sizeof path, "%s/gone.mlpm", f->dir);
    unlink(path);

    size_t n = 0;
    long long del[] = { id[0], id[1], id[3], id[4], 99 };
    check(mp_rundb_delete_runs(db, del, 5, &n, &err), &err);
    assert_int_equal(n, 4);
    mp_rundb_close(db);
    raw_exec(f->path, "DELETE FROM runs WHERE id = 6");     /* foreign keys off: orphans */
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM deleted_artifacts"), 4);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM runs"), 1);

    /* a dry run reports and changes nothing */
    db = open_ok(f->path);
    gc_seen seen = { 0 };
    mp_gc_stats st;
    check(mp_rundb_gc(db, true, gc_collect, &seen, &st, &err), &err);
    assert_int_equal(seen.n, 5);
    assert_string_equal(seen.lines[0], "removed a.mlpm");
    assert_string_equal(seen.lines[1], "changed changed.mlpm");
    assert_string_equal(seen.lines[2], "missing gone.mlpm");
    assert_string_equal(seen.lines[3], "removed orphan.mlpm");
    assert_string_equal(seen.lines[4], "in use shared.mlpm");
    assert_int_equal(st.files[MP_GC_REMOVED], 2);
    assert_int_equal(st.orphan_rows, 1);    /* run 6's artifacts row */
    snprintf(path, sizeof path, "%s/a.mlpm", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM deleted_artifacts"), 4);

    /* the real one */
    seen = (gc_seen){ 0 };
    check(mp_rundb_gc(db, false, gc_collect, &seen, &st, &err), &err);
    assert_int_equal(seen.n, 5);
    assert_int_equal(st.files[MP_GC_REMOVED], 2);
    assert_int_equal(st.bytes, (long long)(strlen("a.mlpm") + strlen("orphan.mlpm")));
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/orphan.mlpm", f->dir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof path, "%s/shared.mlpm", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/changed.mlpm", f->dir);
    assert_int_equal(access(path, F_OK), 0);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM deleted_artifacts"), 0);
    assert_int_equal(raw_int(f->path, "SELECT (SELECT count(*) FROM artifacts) +"
                                      " (SELECT count(*) FROM stages)"), 1);

    /* nothing left to do */
    check(mp_rundb_gc(db, false, NULL, NULL, &st, &err), &err);
    assert_int_equal(st.files[MP_GC_REMOVED] + st.files[MP_GC_IN_USE] + st.orphan_rows, 0);
    mp_rundb_close(db);

    /* through `mlpipe runs`: the last user of shared.mlpm goes, then its file */
    char *out = runs_ok(f->path, "delete", "last", NULL);
    assert_string_equal(out, "deleted 1 run: 3\n1 artifact file stay on disk until 'mlpipe runs"
                        " gc' removes those no other run uses\n");
    libc_free(out);
    out = runs_ok(f->path, "gc", "--dry-run", NULL);
    assert_non_null(strstr(out, "would remove "));
    assert_non_null(strstr(out, "gc --dry-run: would remove 1 file (11 bytes)"));
    libc_free(out);
    out = runs_ok(f->path, "gc", NULL);
    assert_non_null(strstr(out, "removed "));
    assert_non_null(strstr(out, "gc: removed 1 file (11 bytes); kept 0 in use and 0 changed"));
    libc_free(out);
    snprintf(path, sizeof path, "%s/shared.mlpm", f->dir);
    assert_int_equal(access(path, F_OK), -1);
}

/* A file gc cannot check or remove stays recorded for the next gc, and gc
 * fails.  (A path through a regular file fails stat with ENOTDIR, even for
 * root, who ignores permissions.) */
static void test_gc_failure_kept(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = open_ok(f->path);
    long long id;
    mp_run_info info = { .pipeline = "p", .seed = 1 };
    check(mp_rundb_run_begin(db, &info, &id, &err), &err);
    char blocker[160], path[200];
    snprintf(blocker, sizeof blocker, "%s/blocker", f->dir);
    snprintf(path, sizeof path, "%s/m.mlpm", blocker);
    check(mp_rundb_artifact(db, id, "model", path, NULL, -1, &err), &err);
    check(mp_rundb_run_end(db, id, "finished", 0, NULL, NULL, &err), &err);
    mp_rundb_close(db);
    libc_free(runs_ok(f->path, "delete", "1", NULL));
    write_file(blocker, "a file where a directory should be");
    int code;
    char *out = runs_capture(f->path, &code, &err, "gc", NULL);
    assert_int_equal(code, MP_E_IO);
    assert_string_equal(err.msg, "gc: 1 file could not be removed (kept for the next gc)");
    char line[256];
    assert_non_null(strstr(line_with(out, "failed ", line, sizeof line), ": Not a directory"));
    libc_free(out);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM deleted_artifacts"), 1);
    /* once the path is sorted out, the next gc finishes the job */
    unlink(blocker);
    out = runs_ok(f->path, "gc", NULL);
    assert_non_null(strstr(out, "gone "));
    libc_free(out);
    assert_int_equal(raw_int(f->path, "SELECT count(*) FROM deleted_artifacts"), 0);
}

/* ---------------------------------------------------------------- queries */

static void test_runs_queries(void **state) {
    fixture *f = *state;
    populate(f->path);      /* 1 iris 0.9666666, 2 housing r2, 3 iris failed */
    mp_rundb *db = open_ok(f->path);
    add_run(db, "iris", 5, 3, "test.accuracy", 0.5);        /* 4 */
    mp_rundb_close(db);
    raw_exec(f->path, "UPDATE params SET value = '0.01' WHERE run = 4 AND key ="
                      " 'train.learning_rate'; UPDATE runs SET seconds = 0.5 WHERE id = 4;");

    char *out = runs_ok(f->path, "list", "--where", "test.accuracy > 0.6 or test.r2 > 0.8",
                        "--columns", "id,pipeline,test.accuracy,test.r2", "--format", "csv", NULL);
    assert_string_equal(out, "id,pipeline,test.accuracy,test.r2\n2,housing,,0.81234\n"
                        "1,iris,0.9666666,\n");
    libc_free(out);
    out = runs_ok(f->path, "list", "--sort", "-test.accuracy", "--columns",
                  "id,test.accuracy,train.learning_rate,seed,duration", NULL);
    assert_string_equal(out, "ID  test.accuracy  train.learning_rate                  SEED"
                        "  DURATION\n"
                        " 1       0.966667  0.1                                    42     2.31s\n"
                        " 4            0.5  0.01                                    5     0.50s\n"
                        " 3              -  -                                       1  1h02m05s\n"
                        " 2              -  0.1                  18446744073709551615     1m04s\n");
    libc_free(out);
    /* a param sorts as a number; runs without it last */
    out = runs_ok(f->path, "list", "--sort", "train.learning_rate", "--columns", "id",
                  "--format", "csv", NULL);
    assert_string_equal(out, "id\n4\n2\n1\n3\n");
    libc_free(out);
    out = runs_ok(f->path, "list", "--sort", "duration", "--limit", "2", "--columns", "id",
                  "--format", "csv", "--pipeline", "iris", NULL);
    assert_string_equal(out, "id\n4\n1\n");
    libc_free(out);
    out = runs_ok(f->path, "list", "--since", "2000-01-01", "--status", "failed", "--columns",
                  "id,error", "--format", "json", NULL);
    json_error_t jerr;
    json_t *a = json_loads(out, 0, &jerr);
    if (!a) fail_msg("bad JSON (%s):\n%s", jerr.text, out);
    assert_int_equal(json_array_size(a), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(a, 0), "id")), 3);
    json_decref(a);
    libc_free(out);
    out = runs_ok(f->path, "list", "--since", "2999-01-01", NULL);
    assert_non_null(strstr(out, "no matching runs"));
    libc_free(out);
    /* CSV quoting and the default columns of CSV */
    raw_exec(f->path, "UPDATE runs SET pipeline = 'a,\"b\"' WHERE id = 2;");
    out = runs_ok(f->path, "list", "--format", "csv", "--pipeline", "a,\"b\"", NULL);
    char line[256];
    assert_string_equal(line_with(out, "id,", line, sizeof line),
                        "id,pipeline,status,started,ended,seconds,exit_code,metric,value");
    assert_non_null(strstr(out, "\n2,\"a,\"\"b\"\"\",finished,"));
    assert_non_null(strstr(out, ",test.r2,0.81234\n"));
    libc_free(out);
}

static void test_runs_compare_best_history_export(void **state) {
    fixture *f = *state;
    populate(f->path);
    mp_rundb *db = open_ok(f->path);
    add_run(db, "iris", 5, 4, "test.accuracy", 0.9666667);      /* 4: differs at 7 digits */
    mp_rundb_close(db);
    raw_exec(f->path, "UPDATE params SET value = '0.01' WHERE run = 4 AND key ="
                      " 'train.learning_rate';");

    char *out = runs_ok(f->path, "compare", "1", "4", NULL);
    char line[256];
    /* rows that differ start with '*'; blanks squeezed, columns aside */
    assert_string_equal(squeezed(out, "learning_rate", line, sizeof line),
                        "* train.learning_rate 0.1 0.01");
    assert_string_equal(squeezed(out, "train.epochs", line, sizeof line),
                        " train.epochs 100 100");
    /* 0.9666666 and 0.9666667 print alike at 6 digits: shown with 15 */
    assert_string_equal(squeezed(out, "test.accuracy ", line, sizeof line),
                        "* test.accuracy 0.9666666 0.9666667");
    assert_string_equal(squeezed(out, "seed", line, sizeof line), "* seed 42 5");
    assert_string_equal(squeezed(out, "pipeline", line, sizeof line),
                        " pipeline iris iris");
    /* the columns line up: each value starts where its run's id does */
    const char *head = strstr(out, "run "), *lr = strstr(out, "*    train.learning_rate");
    assert_non_null(head);
    assert_non_null(lr);
    const char *hl = head;
    while (hl > out && hl[-1] != '\n') hl--;
    assert_int_equal(strstr(head, " 4") + 1 - hl, strstr(lr, "0.01") - lr);
    libc_free(out);
    out = runs_ok(f->path, "compare", "1", "4", "--diff", "--format", "csv", NULL);
    assert_null(strstr(out, "train.epochs"));
    assert_non_null(strstr(out, "section,key,differs,1,4\n"));
    assert_non_null(strstr(out, "params,train.learning_rate,1,0.1,0.01\n"));
    libc_free(out);
    out = runs_ok(f->path, "compare", "1", "2", "--format", "json", NULL);
    json_error_t jerr;
    json_t *o = json_loads(out, 0, &jerr);
    if (!o) fail_msg("bad JSON (%s):\n%s", jerr.text, out);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(o, "runs"), 1)), 2);
    json_t *rows = json_object_get(o, "rows");
    bool seen_r2 = false;
    for (size_t i = 0; i < json_array_size(rows); i++) {
        json_t *r = json_array_get(rows, i);
        if (strcmp(json_string_value(json_object_get(r, "key")), "test.r2") != 0) continue;
        seen_r2 = true;
        assert_true(json_is_true(json_object_get(r, "differs")));
        assert_true(json_is_null(json_array_get(json_object_get(r, "values"), 0)));
        assert_true(json_real_value(json_array_get(json_object_get(r, "values"), 1)) == 0.81234);
    }
    assert_true(seen_r2);
    json_decref(o);
    libc_free(out);

    /* best: the id alone */
    out = runs_ok(f->path, "best", "--metric", "test.accuracy", NULL);
    assert_string_equal(out, "4\n");
    libc_free(out);
    out = runs_ok(f->path, "best", "--metric", "test.accuracy", "--min", "--pipeline", "iris",
                  NULL);
    assert_string_equal(out, "1\n");
    libc_free(out);
    mp_err err;
    int code;
    libc_free(runs_capture(f->path, &code, &err, "best", "--metric", "test.accuracy",
                           "--status", "failed", NULL));
    assert_int_equal(code, MP_E_DATA);
    assert_string_equal(err.msg, "no failed run has a final figure 'test.accuracy'");
    libc_free(runs_capture(f->path, &code, &err, "best", "--metric", "train.loss", NULL));
    assert_int_equal(code, MP_E_DATA);
    assert_string_equal(err.msg, "no run has a final figure 'train.loss' (it has only per-step "
                        "values)");

    /* history */
    out = runs_ok(f->path, "metrics", "4", "train.loss", NULL);
    assert_string_equal(line_with(out, "STEP", line, sizeof line), "STEP     VALUE  TIME");
    assert_non_null(strstr(out, "\n   3      0.25  "));
    libc_free(out);
    out = runs_ok(f->path, "metrics", "4", "train.loss", "--sparkline", NULL);
    assert_string_equal(line_with(out, "train.loss", line, sizeof line),
                        "train.loss  █▃▂▁");
    assert_non_null(strstr(out, "4 steps: first 1, last 0.25, min 0.25 (step 3), max 1 (step 0)"));
    libc_free(out);
    out = runs_ok(f->path, "metrics", "4", "train.loss", "--format", "csv", NULL);
    assert_true(strncmp(out, "step,value,time\n0,1,", 20) == 0);
    libc_free(out);
    out = runs_ok(f->path, "metrics", "4", "train.loss", "--format", "json", NULL);
    o = json_loads(out, 0, &jerr);
    assert_non_null(o);
    assert_int_equal(json_array_size(json_object_get(o, "history")), 4);
    json_decref(o);
    libc_free(out);
    out = runs_ok(f->path, "metrics", "4", "test.accuracy", "--format", "csv", NULL);
    assert_true(strncmp(out, "step,value,time\n,0.9666667,", 27) == 0);     /* a final figure */
    libc_free(out);
    libc_free(runs_capture(f->path, &code, &err, "metrics", "4", "train.los", NULL));
    assert_int_equal(code, MP_E_USAGE);
    assert_string_equal(err.msg, "run 4 has no metric 'train.los' (did you mean 'train.loss'?)");

    /* export */
    out = runs_ok(f->path, "export", "--where", "pipeline = 'iris'", "--sort", "id", NULL);
    assert_string_equal(line_with(out, "id,", line, sizeof line),
                        "id,pipeline,status,started,ended,seconds,seed,exit_code,host,"
                        "params.split.test_size,params.train.epochs,params.train.learning_rate,"
                        "metrics.test.accuracy,metrics.test.accuracy.std");
    int lines = 0;
    for (const char *p = out; *p; p++) lines += *p == '\n';
    assert_int_equal(lines, 4);
    assert_non_null(strstr(out, ",0.2,100,0.01,0.9666667,0.01\n"));
    assert_non_null(strstr(out, "\n3,iris,failed,"));
    libc_free(out);
    out = runs_ok(f->path, "export", "--format", "json", NULL);
    json_t *arr = json_loads(out, 0, &jerr);
    if (!arr) fail_msg("bad JSON (%s):\n%s", jerr.text, out);
    assert_int_equal(json_array_size(arr), 4);
    json_t *r2 = json_array_get(arr, 2);    /* newest first: run 2 */
    assert_int_equal(json_integer_value(json_object_get(r2, "id")), 2);
    assert_string_equal(json_string_value(json_object_get(r2, "seed")), "18446744073709551615");
    assert_true(json_real_value(json_object_get(r2, "metrics.test.r2")) == 0.81234);
    assert_true(json_is_null(json_object_get(r2, "metrics.test.accuracy")));
    assert_string_equal(json_string_value(json_object_get(r2, "params.train.epochs")), "100");
    json_decref(arr);
    libc_free(out);
}

/* A database without runs: filters on any key find nothing (no error). */
static void test_empty_database(void **state) {
    fixture *f = *state;
    mp_rundb_close(open_ok(f->path));
    char *out = runs_ok(f->path, "list", "--where", "test.accuracy > 0.9", NULL);
    assert_non_null(strstr(out, "no matching runs"));
    libc_free(out);
    out = runs_ok(f->path, "export", NULL);
    assert_string_equal(out, "id,pipeline,status,started,ended,seconds,seed,exit_code,host\n");
    libc_free(out);
    out = runs_ok(f->path, "export", "--format", "json", NULL);
    assert_string_equal(out, "[]\n");
    libc_free(out);
    out = runs_ok(f->path, "gc", NULL);
    assert_non_null(strstr(out, "gc: removed 0 files"));
    libc_free(out);
    mp_err err;
    int code;
    libc_free(runs_capture(f->path, &code, &err, "best", "--metric", "test.accuracy", NULL));
    assert_int_equal(code, MP_E_DATA);
    libc_free(runs_capture(f->path, &code, &err, "show", "last", NULL));
    assert_int_equal(code, MP_E_USAGE);
}

/* ---------------------------------------------------------------- allocation failure */

/* Fails the 1st, 2nd ... allocation of fn until it succeeds: each failure
 * must be MP_E_NOMEM and leak nothing (cmocka and ASan check). */
static void test_alloc_failure(void **state) {
    fixture *f = *state;
    populate(f->path);
    static const char *const cases[][10] = {
        { "open" }, { "list" }, { "show", "1" }, { "show", "3", "--json" },
        { "list", "--where", "test.accuracy > 0.5 or train.epochs in (100, 'x')", "--columns",
          "id,test.accuracy,train.epochs,duration,metric", "--sort", "-train.epochs" },
        { "list", "--format", "json", "--columns", "id,seed,started,test.r2" },
        { "list", "--format", "csv", "--where", "test.acuracy > 1" },  /* a suggestion */
        { "compare", "1", "2", "3" }, { "compare", "1", "2", "--format", "json" },
        { "compare", "1", "3", "--format", "csv", "--diff" },
        { "best", "--metric", "test.accuracy" }, { "best", "--metric", "test.accuracy.std" },
        { "metrics", "1", "train.loss", "--sparkline" },
        { "metrics", "1", "train.loss", "--format", "json" },
        { "export" }, { "export", "--format", "json" }, { "gc", "--dry-run" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int n;
        for (n = 1; n < 10000; n++) {
            mp_err err = { 0 };
            int rc;
            char *buf = NULL;
            size_t len = 0;
            mp_mem_fail_after(n);
            if (c == 0) {
                mp_rundb *db = NULL;
                rc = mp_rundb_open(f->path, &db, &err);
                mp_rundb_close(db);
            } else {
                char *argv[10] = { 0 };
                int argc = 0;
                while (argc < 10 && cases[c][argc]) argv[argc] = (char *)cases[c][argc], argc++;
                FILE *out = open_memstream(&buf, &len);
                rc = mp_runs_main(f->path, argc, argv, out, &err);
                fclose(out);
            }
            mp_mem_fail_after(0);
            libc_free(buf);
            /* the misspelt key fails as a usage error once it can */
            if (rc == MP_OK || (c == 6 && rc == MP_E_USAGE)) break;
            if (rc != MP_E_NOMEM) fail_msg("%s %s, allocation %d: code %d (%s)", cases[c][0],
                                           cases[c][1] ? cases[c][1] : "", n, rc, err.msg);
        }
        if (n <= 1 || n >= 10000) fail_msg("case %zu: n = %d", c, n);
    }
}

int main(void) {
    /* `runs list` shows local time; pin it so expected strings hold */
    setenv("TZ", "UTC", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_version_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_errors_roll_back, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_show, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_version_2, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrate_from_version_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migration_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_heartbeat_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_gc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gc_failure_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_queries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runs_compare_best_history_export, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failure, setup, teardown),
    };
    return cmocka_run_group_tests_name("rundb", tests, NULL, NULL);
}
