/*
 * runs.c -- `mlpipe runs list|show`: the run database read back, for people
 * (an aligned table of recent runs, a report of one run) and for scripts
 * (--json, through jansson).
 *
 * It only reads: the database is opened with mp_rundb_open_existing, so a
 * mistyped --db path is an error instead of a new empty file, and the queries
 * run on the connection rundb.c set up (WAL, so a run writing at the same
 * time neither blocks us nor is blocked).  Text goes to `out` (stdout in the
 * CLI); errors go back through mp_err for main.c to print.
 */
#include "rundb.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define LIST_USAGE "mlpipe runs list [--pipeline P] [--status S] [--limit N] [--json]"
#define SHOW_USAGE "mlpipe runs show RUN|last [--json]"

enum { DEFAULT_LIMIT = 20 };

/* The one figure `runs list` shows per run: the first of these the run
 * recorded as a final figure (classification, regression, cross-validation,
 * clustering). */
static const char *const headline_keys[] = {
    "test.accuracy", "test.r2", "test.f1_macro", "cv.accuracy", "test.mse", "test.inertia"
};

static const char *const statuses[] = { "running", "finished", "failed", "killed" };

typedef struct runs_opts {
    const char *pipeline;   /* --pipeline: exact name, NULL for all */
    const char *status;     /* --status: one of statuses[], NULL for all */
    long long   limit;      /* --limit: most rows listed, 0 for all */
    bool        json;       /* --json */
    const char *run;        /* show: the RUN argument */
} runs_opts;

/* ---------------------------------------------------------------- arguments */

/* MP_E_USAGE: the problem, then the usage line of the subcommand. */
static int usage_err(mp_err *err, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int usage_err(mp_err *err, const char *usage, const char *fmt, ...) {
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return MP_ERR(err, MP_E_USAGE, "%s (usage: %s)", what, usage);
}

/* Matches argv[*i] against "--name VALUE" and "--name=VALUE".  Returns 0 for
 * another argument, 1 with *val set (and *i moved past a separate value), -1
 * when the value is missing. */
static int opt_value(int argc, char **argv, int *i, const char *name, const char **val) {
    size_t n = strlen(name);
    const char *a = argv[*i];
    if (strncmp(a, name, n) != 0) return 0;
    if (a[n] == '=') {
        *val = a + n + 1;
        return 1;
    }
    if (a[n] != '\0') return 0;
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 1;
}

static bool known_status(const char *s) {
    for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
        if (strcmp(s, statuses[i]) == 0) return true;
    return false;
}

/* Parses argv[1..] (argv[0] is the subcommand) into *o. */
static int parse_opts(int argc, char **argv, bool list, runs_opts *o, mp_err *err) {
    const char *usage = list ? LIST_USAGE : SHOW_USAGE;
    const char *sub = list ? "list" : "show";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int m = 0;  /* the last opt_value result: once -1, no later branch matches */
        if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (list && (m = opt_value(argc, argv, &i, "--pipeline", &v)) > 0) {
            o->pipeline = v;
        } else if (list && m == 0 && (m = opt_value(argc, argv, &i, "--status", &v)) > 0) {
            if (!known_status(v))
                return usage_err(err, usage, "unknown status '%s': expected running, "
                                 "finished, failed or killed", v);
            o->status = v;
        } else if (list && m == 0 && (m = opt_value(argc, argv, &i, "--limit", &v)) > 0) {
            if (!mp_parse_long(v, &o->limit) || o->limit < 0)
                return usage_err(err, usage, "bad --limit '%s': expected a number "
                                 "(0 for all runs)", v);
        } else if (m < 0) {
            return usage_err(err, usage, "option '%s' needs a value", a);
        } else if (a[0] == '-' && a[1] != '\0') {
            return usage_err(err, usage, "unknown option '%s' for 'runs %s'", a, sub);
        } else if (!list && !o->run) {
            o->run = a;
        } else {
            return usage_err(err, usage, "unexpected argument '%s' for 'runs %s'", a, sub);
        }
    }
    if (!list && !o->run) return usage_err(err, usage, "'runs show' needs a run id or 'last'");
    return MP_OK;
}

/* ---------------------------------------------------------------- formatting */

/* "2.31s", "1m04s", "2h03m09s"; "-" when unknown (a run still running). */
static void fmt_duration(char *buf, size_t n, bool known, double s) {
    if (!known || isnan(s)) {
        snprintf(buf, n, "-");
    } else if (s < 59.995) {   /* below this %.2f would print 60.00s */
        snprintf(buf, n, "%.2fs", s);
    } else {
        long long t = llround(s);
        if (t < 3600) snprintf(buf, n, "%lldm%02llds", t / 60, t % 60);
        else snprintf(buf, n, "%lldh%02lldm%02llds", t / 3600, t / 60 % 60, t % 60);
    }
}

/* Column i of the current row as text, or NULL for SQL NULL. */
static const char *ctext(sqlite3_stmt *st, int i) {
    return (const char *)sqlite3_column_text(st, i);
}

/* A column holding a number, with NaN for SQL NULL (SQLite stores NaN so). */
static double cdouble(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* A text table: every column but the last is padded to its widest cell.
 * Cells are copied; widths count bytes, which is right for ASCII names. */
typedef struct table {
    char      **cells;  /* n_rows * n_cols strings, row-major, owned */
    size_t      n_cols;
    size_t      n_rows;
    size_t      cap;    /* rows allocated */
    const char *sep;    /* between columns; NULL for two spaces */
} table;

/* Appends one row of t->n_cols cells (NULL prints empty).  -1 on OOM. */
static int table_add(table *t, const char *const *row) {
    if (t->n_rows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **c = mp_realloc(t->cells, mp_mul_size(mp_mul_size(cap, t->n_cols), sizeof *c));
        if (!c) return -1;
        t->cells = c;
        t->cap = cap;
    }
    char **dst = t->cells + t->n_rows * t->n_cols;
    for (size_t j = 0; j < t->n_cols; j++) {
        dst[j] = mp_strdup(row[j] ? row[j] : "");
        if (!dst[j]) {
            while (j--) mp_free(dst[j]);
            return -1;
        }
    }
    t->n_rows++;
    return 0;
}

/* Prints the rows, each after `indent` spaces, columns t->sep apart.
 * Bit j of right_mask right-aligns column j (numbers).  A row's empty
 * trailing cells print nothing, so no line ends in blanks. */
static void table_print(const table *t, FILE *out, int indent, unsigned right_mask) {
    enum { MAX_COLS = 8 };
    size_t width[MAX_COLS] = { 0 };
    assert(t->n_cols <= MAX_COLS);
    for (size_t i = 0; i < t->n_rows; i++)
        for (size_t j = 0; j < t->n_cols; j++) {
            size_t w = strlen(t->cells[i * t->n_cols + j]);
            if (w > width[j]) width[j] = w;
        }
    for (size_t i = 0; i < t->n_rows; i++) {
        char *const *row = t->cells + i * t->n_cols;
        size_t end = t->n_cols;             /* one past the last non-empty cell */
        while (end > 1 && row[end - 1][0] == '\0') end--;
        fprintf(out, "%*s", indent, "");
        for (size_t j = 0; j < end; j++) {
            int w = (j + 1 < end || (right_mask & (1u << j))) ? (int)width[j] : 0;
            if (j > 0) fputs(t->sep ? t->sep : "  ", out);
            if (right_mask & (1u << j)) fprintf(out, "%*s", w, row[j]);
            else fprintf(out, "%-*s", w, row[j]);
        }
        fputc('\n', out);
    }
}

static void table_release(table *t) {
    for (size_t i = 0; i < t->n_rows * t->n_cols; i++) mp_free(t->cells[i]);
    mp_free(t->cells);
    t->cells = NULL;
    t->n_rows = t->cap = 0;
}

/* ---------------------------------------------------------------- JSON */

/* Jansson refuses NaN and infinities; they print as null. */
static json_t *jreal(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

/* A JSON string for s (null for NULL).  Jansson refuses invalid UTF-8, which
 * a path or an error message from a Latin-1 system may hold: such bytes
 * become '?' rather than failing the whole report. */
static json_t *jstr(const char *s) {
    if (!s) return json_null();
    json_t *j = json_string(s);
    if (j) return j;
    char *c = mp_strdup(s);
    if (!c) return NULL;
    for (unsigned char *p = (unsigned char *)c; *p; p++)
        if (*p >= 0x80) *p = '?';
    j = json_string(c);
    mp_free(c);
    return j;
}

/* Column i of the current row as JSON, following its SQLite type. */
static json_t *jcol(sqlite3_stmt *st, int i) {
    switch (sqlite3_column_type(st, i)) {
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(st, i));
    case SQLITE_FLOAT:   return jreal(sqlite3_column_double(st, i));
    case SQLITE_NULL:    return json_null();
    default:             return jstr(ctext(st, i));
    }
}

/* The first n columns of the current row as an object keyed by column name,
 * or NULL when out of memory.  The seed is unsigned 64-bit in mlpipe but
 * signed in SQLite: one that reads back negative prints as its unsigned
 * digits in a string, since JSON numbers that large lose precision anyway. */
static json_t *row_object(sqlite3_stmt *st, int n) {
    json_t *o = json_object();
    int bad = !o;
    for (int i = 0; i < n && !bad; i++) {
        const char *name = sqlite3_column_name(st, i);
        json_t *v;
        if (strcmp(name, "seed") == 0 && sqlite3_column_type(st, i) == SQLITE_INTEGER &&
            sqlite3_column_int64(st, i) < 0) {
            char digits[24];
            snprintf(digits, sizeof digits, "%llu",
                     (unsigned long long)(uint64_t)sqlite3_column_int64(st, i));
            v = json_string(digits);
        } else {
            v = jcol(st, i);
        }
        bad = json_object_set_new(o, name, v);   /* takes v, even on failure */
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Writes root to out, indented, with a final newline; takes root. */
static int json_emit(json_t *root, FILE *out, mp_err *err) {
    if (!root) return MP_ERR(err, MP_E_NOMEM, "out of memory building the JSON output");
    /* 15 significant digits: 0.9666667 rather than 0.96666669999999999, and
     * still exact for any value written with up to 15 digits */
    int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER |
                        JSON_REAL_PRECISION(15));
    json_decref(root);
    if (rc != 0) return MP_ERR(err, MP_E_IO, "cannot write the JSON output");
    fputc('\n', out);
    return MP_OK;
}

/* ---------------------------------------------------------------- queries */

/* Prepares sql on the run database with ?1 bound to run (when run > 0).
 * Returns NULL with err set on failure. */
static sqlite3_stmt *prepare(mp_rundb *rdb, const char *sql, long long run, mp_err *err) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(mp_rundb_sqlite(rdb), sql, -1, &st, NULL) != SQLITE_OK ||
        (run > 0 && sqlite3_bind_int64(st, 1, run) != SQLITE_OK)) {
        mp_rundb_fail(rdb, err);
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* Ends a row loop: rc is the last sqlite3_step result, SQLITE_DONE when the
 * rows ran out.  Finalizes st; returns MP_OK or MP_E_DB. */
static int finish(mp_rundb *rdb, sqlite3_stmt *st, int rc, mp_err *err) {
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) mp_rundb_fail(rdb, err);
    sqlite3_finalize(st);
    return err->code;
}

/* Looks up the run's headline figure: sets *key (NULL when the run has none
 * of headline_keys) and *value.  st is the prepared headline query. */
static int headline(sqlite3_stmt *st, long long run, const char **key, double *value) {
    *key = NULL;
    for (size_t k = 0; k < sizeof headline_keys / sizeof *headline_keys; k++) {
        sqlite3_bind_int64(st, 1, run);
        sqlite3_bind_text(st, 2, headline_keys[k], -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            *key = headline_keys[k];
            *value = cdouble(st, 0);
        }
        sqlite3_reset(st);
        if (rc == SQLITE_ROW) return SQLITE_OK;
        if (rc != SQLITE_DONE) return rc;
    }
    return SQLITE_OK;
}

/* ---------------------------------------------------------------- list */

/* The JSON object of a list row: the first LIST_JSON_COLS columns plus the
 * headline metric. */
enum { LIST_JSON_COLS = 7 };
static const char list_sql[] =
    "SELECT id, pipeline, status, started, ended, seconds, exit_code,"
    " strftime('%Y-%m-%d %H:%M:%S', started, 'localtime')"
    " FROM runs WHERE (?1 IS NULL OR pipeline = ?1) AND (?2 IS NULL OR status = ?2)"
    " ORDER BY id DESC LIMIT ?3";
static const char headline_sql[] =
    "SELECT value FROM metrics WHERE run = ?1 AND key = ?2 AND step IS NULL"
    " ORDER BY rowid DESC LIMIT 1";

static json_t *list_json_row(sqlite3_stmt *st, const char *key, double value) {
    json_t *o = row_object(st, LIST_JSON_COLS);
    if (!o) return NULL;
    json_t *m = json_null();
    if (key) {
        m = json_object();
        if (m && (json_object_set_new(m, "key", json_string(key)) ||
                  json_object_set_new(m, "value", jreal(value)))) {
            json_decref(m);
            m = NULL;
        }
    }
    if (json_object_set_new(o, "metric", m)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* `runs list`: newest first, as a table or a JSON array. */
static int runs_list(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    static const char *const header[] = {
        "ID", "PIPELINE", "STATUS", "STARTED", "DURATION", "METRIC"
    };
    table t = { .n_cols = sizeof header / sizeof *header };
    json_t *arr = NULL;
    sqlite3_stmt *st = NULL, *hl = NULL;
    int rc = SQLITE_OK;

    if (!(st = prepare(rdb, list_sql, 0, err)) || !(hl = prepare(rdb, headline_sql, 0, err)))
        goto done;
    sqlite3_bind_text(st, 1, o->pipeline, -1, SQLITE_STATIC);   /* NULL binds NULL */
    sqlite3_bind_text(st, 2, o->status, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, o->limit > 0 ? o->limit : -1);    /* -1: no limit */
    if (o->json) {
        if (!(arr = json_array())) goto nomem;
    } else if (table_add(&t, header) != 0) {
        goto nomem;
    }

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0);
        const char *key;
        double value = 0;
        if ((rc = headline(hl, id, &key, &value)) != SQLITE_OK) break;
        if (o->json) {
            if (json_array_append_new(arr, list_json_row(st, key, value))) goto nomem;
            continue;
        }
        char ids[24], dur[32], metric[160];
        snprintf(ids, sizeof ids, "%lld", id);
        fmt_duration(dur, sizeof dur, sqlite3_column_type(st, 5) != SQLITE_NULL,
                     sqlite3_column_double(st, 5));
        if (key) snprintf(metric, sizeof metric, "%s=%.4g", key, value);
        else snprintf(metric, sizeof metric, "-");
        const char *row[] = { ids, ctext(st, 1), ctext(st, 2), ctext(st, 7), dur, metric };
        if (table_add(&t, row) != 0) goto nomem;
    }
    if (rc != SQLITE_DONE) {
        mp_rundb_fail(rdb, err);
        goto done;
    }
    if (o->json) {
        json_emit(arr, out, err);
        arr = NULL;     /* json_emit took it */
    } else if (t.n_rows == 1) {     /* the header alone */
        fprintf(out, "no %sruns in '%s'\n", o->pipeline || o->status ? "matching " : "",
                mp_rundb_path(rdb));
    } else {
        table_print(&t, out, 0, 1u << 0 | 1u << 4);   /* ID and DURATION right-aligned */
    }
    goto done;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory listing runs");
done:
    sqlite3_finalize(st);
    sqlite3_finalize(hl);
    json_decref(arr);
    table_release(&t);
    return err->code;
}

/* ---------------------------------------------------------------- show */

static const char run_sql[] =
    "SELECT id, pipeline, status, started, ended, seconds, seed, exit_code, error,"
    " failed_stage, host, pid, mlpipe_version, heartbeat, config_sha256, config"
    " FROM runs WHERE id = ?1";
static const char params_sql[] =
    "SELECT key, value FROM params WHERE run = ?1 ORDER BY key";
/* Final figures: the latest row of each key (SQLite takes the bare column
 * `value` from the row that has MAX(rowid)). */
static const char finals_sql[] =
    "SELECT key, value, MAX(rowid) FROM metrics WHERE run = ?1 AND step IS NULL"
    " GROUP BY key ORDER BY key";
/* Per-step keys in summary: steps, min, max, and the value of the last step. */
static const char history_sql[] =
    "SELECT m.key, COUNT(*), MIN(m.value), MAX(m.value),"
    " (SELECT l.value FROM metrics l WHERE l.run = ?1 AND l.key = m.key"
    "   AND l.step IS NOT NULL ORDER BY l.step DESC, l.rowid DESC LIMIT 1)"
    " FROM metrics m WHERE m.run = ?1 AND m.step IS NOT NULL"
    " GROUP BY m.key ORDER BY m.key";
static const char steps_sql[] =
    "SELECT key, step, value FROM metrics WHERE run = ?1 AND step IS NOT NULL"
    " ORDER BY key, step, rowid";
static const char artifacts_sql[] =
    "SELECT name, path, bytes, sha256 FROM artifacts WHERE run = ?1 ORDER BY rowid";
static const char stages_sql[] =
    "SELECT idx, kind, module, status, seconds, error FROM stages WHERE run = ?1"
    " ORDER BY idx";

/* Turns the RUN argument (an id or "last") into an existing run id. */
static int resolve_run(mp_rundb *rdb, const char *arg, long long *id, mp_err *err) {
    bool last = strcmp(arg, "last") == 0;
    if (!last && (!mp_parse_long(arg, id) || *id <= 0))
        return usage_err(err, SHOW_USAGE, "bad run '%s': expected a run id or 'last'", arg);
    sqlite3_stmt *st = prepare(rdb, last ? "SELECT MAX(id) FROM runs"
                                         : "SELECT id FROM runs WHERE id = ?1",
                               last ? 0 : *id, err);
    if (!st) return err->code;
    int rc = sqlite3_step(st);
    bool found = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
    if (found) *id = sqlite3_column_int64(st, 0);
    if (finish(rdb, st, rc, err) != MP_OK) return err->code;
    if (!found && last)
        return MP_ERR(err, MP_E_USAGE, "no runs in '%s'", mp_rundb_path(rdb));
    if (!found)
        return MP_ERR(err, MP_E_USAGE, "no run %lld in '%s'", *id, mp_rundb_path(rdb));
    return MP_OK;
}

/* Prints "title" and then t indented, unless t is empty. */
static void section(FILE *out, const char *title, const table *t, unsigned right_mask) {
    if (t->n_rows == 0) return;
    fprintf(out, "\n%s\n", title);
    table_print(t, out, 2, right_mask);
}

/* The runs row of a text report: "run 12  iris  finished" and a field list.
 * *config is set to a copy of the config text (caller frees). */
static int show_fields(mp_rundb *rdb, long long id, FILE *out, char **config, mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, run_sql, id, err);
    if (!st) return err->code;
    table t = { .n_cols = 2 };
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        char dur[32], seed[24], code[24], pid[24];
        fmt_duration(dur, sizeof dur, sqlite3_column_type(st, 5) != SQLITE_NULL,
                     sqlite3_column_double(st, 5));
        snprintf(seed, sizeof seed, "%llu", (unsigned long long)(uint64_t)
                 sqlite3_column_int64(st, 6));
        snprintf(code, sizeof code, "%s", ctext(st, 7) ? ctext(st, 7) : "-");
        snprintf(pid, sizeof pid, "%lld", sqlite3_column_int64(st, 11));
        bool running = strcmp(ctext(st, 2), "running") == 0;
        const char *fields[][2] = {
            { "started", ctext(st, 3) },
            { "ended", ctext(st, 4) ? ctext(st, 4) : "-" },
            { "duration", dur },
            { "seed", sqlite3_column_type(st, 6) == SQLITE_NULL ? "-" : seed },
            { "exit code", code },
            { "error", ctext(st, 8) },              /* NULL rows are skipped */
            { "failed stage", ctext(st, 9) },
            { "host", ctext(st, 10) },
            { "pid", sqlite3_column_type(st, 11) == SQLITE_NULL ? NULL : pid },
            { "version", ctext(st, 12) },
            { "heartbeat", running ? ctext(st, 13) : NULL },
            { "config sha256", ctext(st, 14) },
        };
        fprintf(out, "run %lld  %s  %s\n", id, ctext(st, 1), ctext(st, 2));
        for (size_t i = 0; i < sizeof fields / sizeof *fields; i++)
            if (fields[i][1] && table_add(&t, fields[i]) != 0) goto nomem;
        table_print(&t, out, 2, 0);
        if (ctext(st, 15) && !(*config = mp_strdup(ctext(st, 15)))) goto nomem;
    }
    finish(rdb, st, rc, err);
    table_release(&t);
    return err->code;
nomem:
    sqlite3_finalize(st);
    table_release(&t);
    return MP_ERR(err, MP_E_NOMEM, "out of memory showing run %lld", id);
}

/* Fills t from a query of run: each row's columns turned into cells by fmt.
 * fmt writes t->n_cols cell pointers into cells; formatted numbers go into
 * buf, CELL_BUF bytes each.  Text cells point into the row (table_add copies). */
enum { CELL_BUF = 128 };
typedef void (*row_fmt)(sqlite3_stmt *st, const char **cells, char (*buf)[CELL_BUF]);

static int fill_table(mp_rundb *rdb, const char *sql, long long id, row_fmt fmt, table *t,
                      mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, sql, id, err);
    if (!st) return err->code;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *cells[8] = { 0 };
        char buf[8][CELL_BUF];
        fmt(st, cells, buf);
        if (table_add(t, cells) != 0) {
            sqlite3_finalize(st);
            return MP_ERR(err, MP_E_NOMEM, "out of memory showing run %lld", id);
        }
    }
    return finish(rdb, st, rc, err);
}

static void param_row(sqlite3_stmt *st, const char **c, char (*buf)[CELL_BUF]) {
    (void)buf;
    c[0] = ctext(st, 0);
    c[1] = "=";
    c[2] = ctext(st, 1) ? ctext(st, 1) : "null";
}

static void final_row(sqlite3_stmt *st, const char **c, char (*buf)[CELL_BUF]) {
    c[0] = ctext(st, 0);
    c[1] = "=";
    snprintf(buf[0], CELL_BUF, "%.6g", cdouble(st, 1));
    c[2] = buf[0];
}

static void history_row(sqlite3_stmt *st, const char **c, char (*buf)[CELL_BUF]) {
    c[0] = ctext(st, 0);
    c[1] = "=";
    snprintf(buf[0], CELL_BUF, "%.6g", cdouble(st, 4));
    c[2] = buf[0];
    long long n = sqlite3_column_int64(st, 1);
    snprintf(buf[1], CELL_BUF, "(last of %lld step%s; min %.6g, max %.6g)", n, n == 1 ? "" : "s",
             cdouble(st, 2), cdouble(st, 3));
    c[3] = buf[1];
}

static void artifact_row(sqlite3_stmt *st, const char **c, char (*buf)[CELL_BUF]) {
    c[0] = ctext(st, 0);
    c[1] = ctext(st, 1);
    if (sqlite3_column_type(st, 2) == SQLITE_NULL) snprintf(buf[0], CELL_BUF, "-");
    else snprintf(buf[0], CELL_BUF, "%lld bytes", sqlite3_column_int64(st, 2));
    c[2] = buf[0];
    c[3] = ctext(st, 3) ? ctext(st, 3) : "-";
}

static void stage_row(sqlite3_stmt *st, const char **c, char (*buf)[CELL_BUF]) {
    snprintf(buf[0], CELL_BUF, "%lld", sqlite3_column_int64(st, 0));
    c[0] = buf[0];
    c[1] = ctext(st, 1);
    c[2] = ctext(st, 2);
    c[3] = ctext(st, 3);
    fmt_duration(buf[1], CELL_BUF, sqlite3_column_type(st, 4) != SQLITE_NULL,
                 sqlite3_column_double(st, 4));
    c[4] = buf[1];
    c[5] = ctext(st, 5);
}

/* `runs show RUN`: fields, params, metrics, artifacts, stages, config. */
static int show_text(mp_rundb *rdb, long long id, FILE *out, mp_err *err) {
    char *config = NULL;
    /* "key = value": the '=' is a column of its own, one space either side */
    table params = { .n_cols = 3, .sep = " " }, metrics = { .n_cols = 4, .sep = " " };
    table artifacts = { .n_cols = 4 }, stages = { .n_cols = 6 };
    if (show_fields(rdb, id, out, &config, err) != MP_OK ||
        fill_table(rdb, params_sql, id, param_row, &params, err) != MP_OK ||
        fill_table(rdb, finals_sql, id, final_row, &metrics, err) != MP_OK ||
        fill_table(rdb, history_sql, id, history_row, &metrics, err) != MP_OK ||
        fill_table(rdb, artifacts_sql, id, artifact_row, &artifacts, err) != MP_OK ||
        fill_table(rdb, stages_sql, id, stage_row, &stages, err) != MP_OK)
        goto done;
    section(out, "params", &params, 0);
    section(out, "metrics", &metrics, 0);
    section(out, "artifacts", &artifacts, 0);
    section(out, "stages", &stages, 1u << 0 | 1u << 4);
    if (config) {
        size_t n = strlen(config);
        fprintf(out, "\nconfig\n%s%s", config, n && config[n - 1] == '\n' ? "" : "\n");
    }
done:
    mp_free(config);
    table_release(&params);
    table_release(&metrics);
    table_release(&artifacts);
    table_release(&stages);
    return err->code;
}

/* Sets obj[name] to the rows of sql: an array of row objects, or with
 * as_map (two-column queries) the object { col0: col1, ... }. */
static int json_rows(mp_rundb *rdb, const char *sql, long long id, bool as_map, json_t *obj,
                     const char *name, mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, sql, id, err);
    if (!st) return err->code;
    json_t *c = as_map ? json_object() : json_array();
    int rc = SQLITE_DONE;
    bool ok = c != NULL;
    while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (as_map) ok = !json_object_set_new(c, ctext(st, 0), jcol(st, 1));
        else ok = !json_array_append_new(c, row_object(st, sqlite3_column_count(st)));
    }
    if (ok) {
        ok = !json_object_set_new(obj, name, c);   /* takes c, even on failure */
        c = NULL;
    }
    json_decref(c);                                 /* NULL-safe */
    if (!ok) {
        sqlite3_finalize(st);
        return MP_ERR(err, MP_E_NOMEM, "out of memory showing run %lld", id);
    }
    return finish(rdb, st, rc, err);
}

/* The history of one metric key while its rows are read. */
typedef struct hist_key {
    json_t *obj;                /* { "steps": [...], "values": [...] }, owned by the history */
    json_t *steps, *values;     /* borrowed from obj */
    double  last, lo, hi;       /* NaN until a value is seen */
} hist_key;

/* Starts key in hist.  false when out of memory. */
static bool hist_open(json_t *hist, const char *key, hist_key *h) {
    *h = (hist_key){ .obj = json_object(), .last = NAN, .lo = NAN, .hi = NAN };
    /* each set_new takes its value, so nothing leaks on any failure */
    if (json_object_set_new(hist, key, h->obj)) {
        h->obj = NULL;
        return false;
    }
    return !json_object_set_new(h->obj, "steps", h->steps = json_array()) &&
           !json_object_set_new(h->obj, "values", h->values = json_array());
}

/* Finishes the open key with its summary, as the text report shows it. */
static bool hist_close(const hist_key *h) {
    return !h->obj || (!json_object_set_new(h->obj, "last", jreal(h->last)) &&
                       !json_object_set_new(h->obj, "min", jreal(h->lo)) &&
                       !json_object_set_new(h->obj, "max", jreal(h->hi)));
}

/* obj["history"] = { key: { "steps", "values", "last", "min", "max" } } for
 * every per-step key.  NaN values are null and do not count for min/max. */
static int json_history(mp_rundb *rdb, long long id, json_t *obj, mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, steps_sql, id, err);
    if (!st) return err->code;
    json_t *hist = json_object();
    hist_key h = { 0 };
    int rc = SQLITE_DONE;
    bool ok = hist != NULL;
    while (ok && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = ctext(st, 0);
        /* rows come sorted by key: a key not yet in hist starts a new one */
        if (!h.obj || json_object_get(hist, key) != h.obj)
            ok = hist_close(&h) && hist_open(hist, key, &h);
        if (!ok) break;
        double v = cdouble(st, 2);
        h.last = v;
        if (!isnan(v)) {
            if (isnan(h.lo) || v < h.lo) h.lo = v;
            if (isnan(h.hi) || v > h.hi) h.hi = v;
        }
        ok = !json_array_append_new(h.steps, json_integer(sqlite3_column_int64(st, 1))) &&
             !json_array_append_new(h.values, jreal(v));
    }
    ok = ok && hist_close(&h);
    if (ok) {
        ok = !json_object_set_new(obj, "history", hist);
        hist = NULL;
    }
    json_decref(hist);
    if (!ok) {
        sqlite3_finalize(st);
        return MP_ERR(err, MP_E_NOMEM, "out of memory showing run %lld", id);
    }
    return finish(rdb, st, rc, err);
}

/* `runs show RUN --json`: one object with the runs columns, then params,
 * metrics (final figures), history, artifacts, stages and config. */
static int show_json(mp_rundb *rdb, long long id, FILE *out, mp_err *err) {
    enum { CONFIG_COL = 15 };   /* the last column of run_sql; goes at the end */
    sqlite3_stmt *st = prepare(rdb, run_sql, id, err);
    if (!st) return err->code;
    json_t *o = NULL, *config = NULL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        o = row_object(st, CONFIG_COL);
        config = jcol(st, CONFIG_COL);
    }
    if (finish(rdb, st, rc, err) != MP_OK) goto fail;
    if (!o || !config) {
        MP_ERR(err, MP_E_NOMEM, "out of memory showing run %lld", id);
        goto fail;
    }
    if (json_rows(rdb, params_sql, id, true, o, "params", err) != MP_OK ||
        json_rows(rdb, finals_sql, id, true, o, "metrics", err) != MP_OK ||
        json_history(rdb, id, o, err) != MP_OK ||
        json_rows(rdb, artifacts_sql, id, false, o, "artifacts", err) != MP_OK ||
        json_rows(rdb, stages_sql, id, false, o, "stages", err) != MP_OK)
        goto fail;
    if (json_object_set_new(o, "config", config)) {     /* takes config */
        json_decref(o);
        return MP_ERR(err, MP_E_NOMEM, "out of memory showing run %lld", id);
    }
    return json_emit(o, out, err);
fail:
    json_decref(o);
    json_decref(config);
    return err->code;
}

/* ---------------------------------------------------------------- entry */

int mp_runs_main(const char *db_path, int argc, char **argv, FILE *out, mp_err *err) {
    /* bare `mlpipe runs` lists, like `git stash` without a subcommand */
    const char *sub = argc > 0 ? argv[0] : "list";
    if (strcmp(sub, "help") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "-h") == 0) {
        fprintf(out, "usage: %s\n       %s\n", LIST_USAGE, SHOW_USAGE);
        return MP_OK;
    }
    bool list = strcmp(sub, "list") == 0;
    if (!list && strcmp(sub, "show") != 0)
        return MP_ERR(err, MP_E_USAGE, "unknown subcommand 'runs %s' (usage: %s | %s)", sub,
                      LIST_USAGE, SHOW_USAGE);
    runs_opts o = { .limit = DEFAULT_LIMIT };
    if (parse_opts(argc, argv, list, &o, err) != MP_OK) return err->code;

    mp_rundb *rdb;
    if (mp_rundb_open_existing(db_path, &rdb, err) != MP_OK) return err->code;
    long long id = 0;
    if (list) {
        runs_list(rdb, &o, out, err);
    } else if (resolve_run(rdb, o.run, &id, err) == MP_OK) {
        if (o.json) show_json(rdb, id, out, err);
        else show_text(rdb, id, out, err);
    }
    mp_rundb_close(rdb);
    if (err->code == MP_OK && (fflush(out) != 0 || ferror(out)))
        return MP_ERR(err, MP_E_IO, "cannot write the output: %s", strerror(errno));
    return err->code;
}
