/*
 * runs.c -- `mlpipe runs ...`: the run database read back, for people (an
 * aligned table, a report of one run, two runs side by side, a sparkline of
 * a metric) and for scripts (CSV and JSON through jansson, `runs best`
 * printing a bare run id); plus the two maintenance commands, `runs delete`
 * and `runs gc`, whose writes live in rundb.c.
 *
 *   list     filtered (--pipeline --status --since --where), sorted, chosen columns
 *   show     one run: fields, params, metrics, artifacts, stages, config
 *   compare  runs side by side, rows that differ marked
 *   best     the id of the best run by a final figure
 *   metrics  the per-step history of one key
 *   export   runs with params and final figures flattened (CSV, JSON)
 *   delete   runs and their rows (files stay for gc)
 *   gc       files of deleted runs that no run refers to any more
 *
 * The database is opened with mp_rundb_open_existing, so a mistyped --db
 * path is an error instead of a new empty file, and the queries run on the
 * connection rundb.c set up (WAL: a run writing at the same time neither
 * blocks us nor is blocked; mp_status() shows dead runs as lost).  Filters
 * compile to SQL with bound values only (query.c).  Text goes to `out`
 * (stdout in the CLI); errors go back through mp_err for main.c to print.
 */
#include "rundb.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"     /* mp_nearest */
#include "query.h"

/* ---------------------------------------------------------------- subcommands, options */

#define FILTER_USAGE "[--pipeline P] [--status S] [--since TIME] [--where EXPR]"
#define LIST_USAGE   "mlpipe runs list " FILTER_USAGE " [--sort [-]KEY] [--limit N]" \
                     " [--columns K,...] [--format table|csv|json]"
#define SHOW_USAGE   "mlpipe runs show RUN|last [--json]"
#define CMP_USAGE    "mlpipe runs compare RUN RUN... [--diff] [--format table|csv|json]"
#define BEST_USAGE   "mlpipe runs best --metric KEY [--min] " FILTER_USAGE
#define HIST_USAGE   "mlpipe runs metrics RUN KEY [--format table|csv|json] [--sparkline]"
#define EXPORT_USAGE "mlpipe runs export [--format csv|json] " FILTER_USAGE \
                     " [--sort [-]KEY] [--limit N]"
#define DELETE_USAGE "mlpipe runs delete RUN... [--force]"
#define GC_USAGE     "mlpipe runs gc [--dry-run]"

enum {
    DEFAULT_LIMIT = 20,     /* runs `runs list` shows unless --limit */
    MAX_COLS = 64,          /* columns of a text table (--columns, compare) */
    SPARK_WIDTH = 60        /* characters of a sparkline */
};

/* Options, as bits of the set a subcommand accepts. */
enum {
    O_PIPELINE = 1 << 0, O_STATUS = 1 << 1, O_SINCE = 1 << 2, O_WHERE = 1 << 3,
    O_SORT = 1 << 4, O_LIMIT = 1 << 5, O_COLUMNS = 1 << 6, O_FORMAT = 1 << 7,
    O_JSON = 1 << 8, O_METRIC = 1 << 9, O_MIN = 1 << 10, O_DIFF = 1 << 11,
    O_SPARK = 1 << 12, O_FORCE = 1 << 13, O_DRY = 1 << 14,
    O_FILTERS = O_PIPELINE | O_STATUS | O_SINCE | O_WHERE
};

typedef enum { F_DEFAULT, F_TABLE, F_CSV, F_JSON } out_format;

enum { MAX_POS = 64 };      /* positional arguments (run ids) */

typedef struct runs_opts {
    const char *pipeline;   /* --pipeline: exact name */
    const char *status;     /* --status: one of statuses[] */
    const char *since;      /* --since: a time for mp_query_time */
    const char *where;      /* --where: an expression for mp_query_where */
    const char *sort;       /* --sort: KEY or -KEY */
    const char *columns;    /* --columns: comma-separated names */
    const char *metric;     /* best --metric */
    long long   limit;      /* --limit: most rows, 0 for all */
    out_format  format;     /* --format (--json is F_JSON) */
    bool        min;        /* best --min */
    bool        diff;       /* compare --diff: only rows that differ */
    bool        spark;      /* metrics --sparkline: even when out is no terminal */
    bool        force;      /* delete --force: also runs that are running */
    bool        dry_run;    /* gc --dry-run */
    const char *pos[MAX_POS];   /* positional arguments */
    int         n_pos;
} runs_opts;

typedef int (*sub_fn)(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err);

static int runs_list(mp_rundb *, const runs_opts *, FILE *, mp_err *);
static int runs_show(mp_rundb *, const runs_opts *, FILE *, mp_err *);
static int runs_compare(mp_rundb *, const runs_opts *, FILE *, mp_err *);
static int runs_best(mp_rundb *, const runs_opts *, FILE *, mp_err *);
static int runs_history(mp_rundb *, const runs_opts *, FILE *, mp_err *);
static int runs_export(mp_rundb *, const runs_opts *, FILE *, mp_err *);
static int runs_delete(mp_rundb *, const runs_opts *, FILE *, mp_err *);
static int runs_gc(mp_rundb *, const runs_opts *, FILE *, mp_err *);

static const struct sub {
    const char *name;
    const char *usage;
    unsigned    opts;           /* O_* accepted */
    int         min_pos, max_pos;
    unsigned    formats;        /* 1 << F_TABLE | ... accepted by --format */
    sub_fn      fn;
} subs[] = {
    { "list", LIST_USAGE, O_FILTERS | O_SORT | O_LIMIT | O_COLUMNS | O_FORMAT | O_JSON, 0, 0,
      1 << F_TABLE | 1 << F_CSV | 1 << F_JSON, runs_list },
    { "show", SHOW_USAGE, O_JSON | O_FORMAT, 1, 1, 1 << F_TABLE | 1 << F_JSON, runs_show },
    { "compare", CMP_USAGE, O_DIFF | O_FORMAT | O_JSON, 2, MAX_COLS - 2,
      1 << F_TABLE | 1 << F_CSV | 1 << F_JSON, runs_compare },
    { "best", BEST_USAGE, O_METRIC | O_MIN | O_FILTERS, 0, 0, 0, runs_best },
    { "metrics", HIST_USAGE, O_FORMAT | O_JSON | O_SPARK, 2, 2,
      1 << F_TABLE | 1 << F_CSV | 1 << F_JSON, runs_history },
    { "export", EXPORT_USAGE, O_FILTERS | O_SORT | O_LIMIT | O_FORMAT | O_JSON, 0, 0,
      1 << F_CSV | 1 << F_JSON, runs_export },
    { "delete", DELETE_USAGE, O_FORCE, 1, MAX_POS, 0, runs_delete },
    { "gc", GC_USAGE, O_DRY, 0, 0, 0, runs_gc },
};

static const char *const statuses[] = { "running", "finished", "failed", "killed", "lost" };

/* The one figure `runs list` shows per run by default: the first of these the
 * run recorded as a final figure (classification, regression,
 * cross-validation, clustering). */
static const char *const headline_keys[] = {
    "test.accuracy", "test.r2", "test.f1_macro", "cv.accuracy", "test.mse", "test.inertia"
};

/* MP_E_USAGE: the problem, then the usage line of the subcommand. */
static int usage_err(mp_err *err, const char *usage, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int usage_err(mp_err *err, const char *usage, const char *fmt, ...) {
    char what[400];
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

/* Options that take a value, and where it goes. */
static const struct valopt {
    const char *name;
    unsigned    bit;
    size_t      offset;     /* of the const char * in runs_opts */
} valopts[] = {
    { "--pipeline", O_PIPELINE, offsetof(runs_opts, pipeline) },
    { "--status",   O_STATUS,   offsetof(runs_opts, status) },
    { "--since",    O_SINCE,    offsetof(runs_opts, since) },
    { "--where",    O_WHERE,    offsetof(runs_opts, where) },
    { "--sort",     O_SORT,     offsetof(runs_opts, sort) },
    { "--columns",  O_COLUMNS,  offsetof(runs_opts, columns) },
    { "--metric",   O_METRIC,   offsetof(runs_opts, metric) },
};

/* Flags, and the bool each sets. */
static const struct flagopt {
    const char *name;
    unsigned    bit;
    size_t      offset;     /* of the bool in runs_opts */
} flagopts[] = {
    { "--min",       O_MIN,   offsetof(runs_opts, min) },
    { "--diff",      O_DIFF,  offsetof(runs_opts, diff) },
    { "--sparkline", O_SPARK, offsetof(runs_opts, spark) },
    { "--force",     O_FORCE, offsetof(runs_opts, force) },
    { "--dry-run",   O_DRY,   offsetof(runs_opts, dry_run) },
};

static const char *const format_names[] = { "default", "table", "csv", "json" };

/* Parses argv[1..] (argv[0] is the subcommand) into *o. */
static int parse_opts(const struct sub *sub, int argc, char **argv, runs_opts *o, mp_err *err) {
    const char *usage = sub->usage;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = NULL;
        int m = 0;
        bool done = false;
        for (size_t k = 0; k < sizeof flagopts / sizeof *flagopts && !done; k++)
            if ((sub->opts & flagopts[k].bit) && strcmp(a, flagopts[k].name) == 0) {
                *(bool *)(void *)((char *)o + flagopts[k].offset) = true;
                done = true;
            }
        if (done) continue;
        if ((sub->opts & O_JSON) && strcmp(a, "--json") == 0) {
            o->format = F_JSON;     /* alias of --format json */
            continue;
        }
        for (size_t k = 0; k < sizeof valopts / sizeof *valopts && !done; k++) {
            if (!(sub->opts & valopts[k].bit)) continue;
            if ((m = opt_value(argc, argv, &i, valopts[k].name, &v)) > 0) {
                *(const char **)(void *)((char *)o + valopts[k].offset) = v;
                done = true;
            } else if (m < 0) {
                return usage_err(err, usage, "option '%s' needs a value", a);
            }
        }
        if (done) continue;
        if ((sub->opts & O_LIMIT) && (m = opt_value(argc, argv, &i, "--limit", &v)) != 0) {
            if (m < 0) return usage_err(err, usage, "option '%s' needs a value", a);
            if (!mp_parse_long(v, &o->limit) || o->limit < 0)
                return usage_err(err, usage, "bad --limit '%s': expected a number "
                                 "(0 for all runs)", v);
            continue;
        }
        if ((sub->opts & O_FORMAT) && (m = opt_value(argc, argv, &i, "--format", &v)) != 0) {
            if (m < 0) return usage_err(err, usage, "option '%s' needs a value", a);
            int f;
            for (f = F_TABLE; f <= F_JSON; f++)
                if ((sub->formats & (1u << f)) && strcmp(v, format_names[f]) == 0) break;
            if (f > F_JSON)
                return usage_err(err, usage, "bad --format '%s' for 'runs %s'", v, sub->name);
            o->format = (out_format)f;
            continue;
        }
        if (a[0] == '-' && a[1] != '\0')
            return usage_err(err, usage, "unknown option '%s' for 'runs %s'", a, sub->name);
        if (o->n_pos >= sub->max_pos)
            return usage_err(err, usage, "unexpected argument '%s' for 'runs %s'", a, sub->name);
        o->pos[o->n_pos++] = a;
    }
    if (o->n_pos < sub->min_pos)
        return usage_err(err, usage, "'runs %s' needs %s", sub->name,
                         sub->min_pos == 1 ? (sub->max_pos == 1 ? "a run id or 'last'"
                                                                : "one or more run ids")
                         : strcmp(sub->name, "metrics") == 0 ? "a run and a metric key"
                         : "two or more run ids");
    if (o->status && !known_status(o->status))
        return usage_err(err, usage, "unknown status '%s': expected running, finished, failed, "
                         "killed or lost", o->status);
    if ((sub->opts & O_METRIC) && !o->metric)
        return usage_err(err, usage, "'runs %s' needs --metric KEY", sub->name);
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

/* Unix seconds as local "2026-11-27 08:00:00" (with ".123" when ms). */
static void fmt_unix_local(char *buf, size_t n, double t, bool ms) {
    time_t whole = (time_t)floor(t);
    struct tm tm;
    if (!isfinite(t) || !localtime_r(&whole, &tm)) {
        snprintf(buf, n, "-");
        return;
    }
    size_t k = strftime(buf, n, "%Y-%m-%d %H:%M:%S", &tm);
    if (ms && k) snprintf(buf + k, n - k, ".%03d", (int)((t - (double)whole) * 1000.0) % 1000);
}

/* A stored time ("2026-11-27T07:00:00.123Z") as local "2026-11-27 08:00:00";
 * text that is no such time is copied as it is. */
static void fmt_iso_local(char *buf, size_t n, const char *iso) {
    int y, mo, d, h, mi, k = 0;
    double sec;
    if (sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &k) == 6 &&
        iso[k] == 'Z') {
        struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                         .tm_min = mi };
        time_t base = timegm(&tm);
        if (base != (time_t)-1) {
            fmt_unix_local(buf, n, (double)base + floor(sec), false);
            return;
        }
    }
    snprintf(buf, n, "%s", iso);
}

/* A figure for people: 6 significant digits, "nan" for NaN. */
static void fmt_figure(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "nan");
    else snprintf(buf, n, "%.6g", v);
}

/* A figure for files (CSV): 15 significant digits, like the JSON output --
 * 0.9666667 rather than 0.96666669999999999, and exact for any value
 * written with up to 15 digits.  Empty for NaN (stored NULL). */
static void fmt_exact(char *buf, size_t n, double v) {
    if (!isfinite(v)) snprintf(buf, n, "%s", "");
    else snprintf(buf, n, "%.15g", v);
}

/* Column i of the current row as text, or NULL for SQL NULL. */
static const char *ctext(sqlite3_stmt *st, int i) {
    return (const char *)sqlite3_column_text(st, i);
}

/* A column holding a number, with NaN for SQL NULL (SQLite stores NaN so). */
static double cdouble(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

/* The seed column: unsigned 64-bit in mlpipe, two's complement in SQLite. */
static void fmt_seed(char *buf, size_t n, long long stored) {
    snprintf(buf, n, "%llu", (unsigned long long)(uint64_t)stored);
}

/* ---------------------------------------------------------------- text tables */

/* A text table: every column but the last is padded to its widest cell.
 * Cells are copied; widths count characters (UTF-8 continuation bytes do
 * not count), so names with accents line up too. */
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

static size_t text_width(const char *s) {
    size_t w = 0;
    for (; *s; s++) w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

/* Prints the rows, each after `indent` spaces, columns t->sep apart.
 * Bit j of right_mask right-aligns column j (numbers).  A row's empty
 * trailing cells print nothing, so no line ends in blanks. */
static void table_print(const table *t, FILE *out, int indent, uint64_t right_mask) {
    size_t width[MAX_COLS] = { 0 };
    size_t n_cols = t->n_cols < MAX_COLS ? t->n_cols : MAX_COLS;   /* callers stay below */
    for (size_t i = 0; i < t->n_rows; i++)
        for (size_t j = 0; j < n_cols; j++) {
            size_t w = text_width(t->cells[i * t->n_cols + j]);
            if (w > width[j]) width[j] = w;
        }
    for (size_t i = 0; i < t->n_rows; i++) {
        char *const *row = t->cells + i * t->n_cols;
        size_t end = n_cols;             /* one past the last non-empty cell */
        while (end > 1 && row[end - 1][0] == '\0') end--;
        if (end == 1 && row[0][0] == '\0') {    /* an empty row: a blank line */
            fputc('\n', out);
            continue;
        }
        fprintf(out, "%*s", indent, "");
        for (size_t j = 0; j < end; j++) {
            bool right = right_mask & ((uint64_t)1 << j);
            size_t pad = (j + 1 < end || right) ? width[j] - text_width(row[j]) : 0;
            if (j > 0) fputs(t->sep ? t->sep : "  ", out);
            if (right) fprintf(out, "%*s%s", (int)pad, "", row[j]);
            else fprintf(out, "%s%*s", row[j], (int)pad, "");
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

/* ---------------------------------------------------------------- CSV */

/* One RFC 4180 cell: quoted when it holds a comma, quote, CR or LF, or
 * starts or ends with a blank (which readers may trim). */
static void csv_cell(FILE *out, const char *s, bool last) {
    if (!s) s = "";
    size_t n = strlen(s);
    bool quote = strpbrk(s, ",\"\r\n") != NULL || (n && (s[0] == ' ' || s[n - 1] == ' '));
    if (!quote) {
        fputs(s, out);
    } else {
        fputc('"', out);
        for (; *s; s++) {
            if (*s == '"') fputc('"', out);
            fputc(*s, out);
        }
        fputc('"', out);
    }
    fputc(last ? '\n' : ',', out);
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

/* A seed as JSON: a number, or -- above 2^63, where SQLite reads it back
 * negative -- its unsigned digits in a string, since JSON numbers that large
 * lose precision anyway. */
static json_t *jseed(long long stored) {
    if (stored >= 0) return json_integer(stored);
    char digits[24];
    fmt_seed(digits, sizeof digits, stored);
    return json_string(digits);
}

/* The first n columns of the current row as an object keyed by column name,
 * or NULL when out of memory. */
static json_t *row_object(sqlite3_stmt *st, int n) {
    json_t *o = json_object();
    int bad = !o;
    for (int i = 0; i < n && !bad; i++) {
        const char *name = sqlite3_column_name(st, i);
        json_t *v;
        if (strcmp(name, "seed") == 0 && sqlite3_column_type(st, i) == SQLITE_INTEGER)
            v = jseed(sqlite3_column_int64(st, i));
        else
            v = jcol(st, i);
        bad = json_object_set_new(o, name, v);   /* takes v, even on failure */
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* Sets o[key] = v, taking v; false when out of memory (o may be NULL). */
static bool jset(json_t *o, const char *key, json_t *v) {
    if (!o || !v) {
        json_decref(v);
        return false;
    }
    return json_object_set_new(o, key, v) == 0;
}

/* Appends v to a, taking v; false when out of memory. */
static bool jpush(json_t *a, json_t *v) {
    if (!a || !v) {
        json_decref(v);
        return false;
    }
    return json_array_append_new(a, v) == 0;
}

/* Writes root to out, indented, with a final newline; takes root. */
static int json_emit(json_t *root, FILE *out, mp_err *err) {
    if (!root) return MP_ERR(err, MP_E_NOMEM, "out of memory building the JSON output");
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

/* Prepares a built query; NULL with err set on failure. */
static sqlite3_stmt *prepare_sql(mp_rundb *rdb, const mp_sql *q, mp_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = mp_sql_prepare(q, mp_rundb_sqlite(rdb), &st);
    if (rc == SQLITE_NOMEM && q->nomem)
        MP_ERR(err, MP_E_NOMEM, "out of memory building a query");
    else if (rc != SQLITE_OK)
        mp_rundb_fail(rdb, err);
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

static const char headline_sql[] =
    "SELECT value FROM metrics WHERE run = ?1 AND key = ?2 AND step IS NULL"
    " ORDER BY rowid DESC LIMIT 1";

int mp_runs_resolve(mp_rundb *rdb, const char *arg, long long *id, mp_err *err) {
    bool last = strcmp(arg, "last") == 0;
    long long want = 0;
    if (!last && (!mp_parse_long(arg, &want) || want <= 0))
        return MP_ERR(err, MP_E_USAGE, "bad run '%s': expected a run id or 'last'", arg);
    sqlite3_stmt *st = prepare(rdb, last ? "SELECT MAX(id) FROM runs"
                                         : "SELECT id FROM runs WHERE id = ?1",
                               last ? 0 : want, err);
    if (!st) return err->code;
    int rc = sqlite3_step(st);
    bool found = rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL;
    long long got = found ? sqlite3_column_int64(st, 0) : 0;
    if (finish(rdb, st, rc, err) != MP_OK) return err->code;
    if (!found && last)
        return MP_ERR(err, MP_E_USAGE, "no runs in '%s'", mp_rundb_path(rdb));
    if (!found)
        return MP_ERR(err, MP_E_USAGE, "no run %lld in '%s'", want, mp_rundb_path(rdb));
    *id = got;
    return MP_OK;
}

/* mp_runs_resolve for a RUN argument of a subcommand: a malformed one is
 * reported with the subcommand's usage line. */
static int resolve_arg(mp_rundb *rdb, const char *arg, const char *usage, long long *id,
                       mp_err *err) {
    long long v;
    if (strcmp(arg, "last") != 0 && (!mp_parse_long(arg, &v) || v <= 0))
        return usage_err(err, usage, "bad run '%s': expected a run id or 'last'", arg);
    return mp_runs_resolve(rdb, arg, id, err);
}

/* ---------------------------------------------------------------- names in the database */

/* What --where, --sort and --columns ask the database about names. */
typedef struct keyctx {
    mp_rundb *rdb;
    char    **names;        /* every final-metric and param key, for suggestions */
    size_t    n_names;
    bool      loaded;       /* names were read (or reading failed: no suggestions) */
    char      near[256];    /* the last suggestion */
} keyctx;

static int key_has(void *ud, const char *key, unsigned *found, mp_err *err) {
    keyctx *k = ud;
    /* each an index lookup: metrics_final, params_key_value, and one probe of
     * metrics (run, key, step) per run, only needed for a better message */
    static const struct { const char *sql; unsigned bit; } probes[] = {
        { "SELECT 1 FROM metrics WHERE key = ?1 AND step IS NULL LIMIT 1", MP_QHAS_FINAL },
        { "SELECT 1 FROM params WHERE key = ?1 LIMIT 1", MP_QHAS_PARAM },
        { "SELECT 1 FROM runs r WHERE EXISTS (SELECT 1 FROM metrics m WHERE m.run = r.id"
          " AND m.key = ?1 AND m.step IS NOT NULL) LIMIT 1", MP_QHAS_STEPS },
    };
    *found = 0;
    for (size_t i = 0; i < sizeof probes / sizeof *probes; i++) {
        if (probes[i].bit == MP_QHAS_STEPS && *found) break;
        sqlite3_stmt *st = prepare(k->rdb, probes[i].sql, 0, err);
        if (!st) return err->code;
        int rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) *found |= probes[i].bit;
        if (finish(k->rdb, st, rc, err) != MP_OK) return err->code;
    }
    if (*found == 0) {
        /* a database without runs knows no key, and has no typo to catch:
         * take the name as a metric, so a script that filters a new
         * database gets "no matching runs" rather than an error */
        sqlite3_stmt *st = prepare(k->rdb, "SELECT NOT EXISTS (SELECT 1 FROM runs)", 0, err);
        if (!st) return err->code;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && sqlite3_column_int(st, 0)) *found = MP_QHAS_FINAL;
        if (finish(k->rdb, st, rc, err) != MP_OK) return err->code;
    }
    return MP_OK;
}

static const char *key_nearest(void *ud, const char *key) {
    keyctx *k = ud;
    enum { MAX_NAMES = 10000 };     /* suggestions are a courtesy: bound their cost */
    if (!k->loaded) {
        k->loaded = true;
        mp_err e = { 0 };
        sqlite3_stmt *st = prepare(k->rdb, "SELECT key FROM metrics WHERE step IS NULL"
                                   " UNION SELECT key FROM params", 0, &e);
        if (!st) return NULL;
        size_t cap = 0;
        while (k->n_names < MAX_NAMES && sqlite3_step(st) == SQLITE_ROW) {
            if (k->n_names == cap) {
                cap = cap ? cap * 2 : 64;
                char **v = mp_realloc(k->names, mp_mul_size(cap, sizeof *v));
                if (!v) break;
                k->names = v;
            }
            if (!(k->names[k->n_names] = mp_strdup(ctext(st, 0)))) break;
            k->n_names++;
        }
        sqlite3_finalize(st);
    }
    const char *near = mp_nearest(key, (const char *const *)k->names, k->n_names);
    if (!near) return NULL;
    snprintf(k->near, sizeof k->near, "%s", near);
    return k->near;
}

static void keyctx_release(keyctx *k) {
    for (size_t i = 0; i < k->n_names; i++) mp_free(k->names[i]);
    mp_free(k->names);
}

/* ---------------------------------------------------------------- filters */

/* Appends " AND ..." conditions on the runs row `r` for the filter options
 * of o (nothing without filters). */
static int add_filters(mp_sql *q, const runs_opts *o, const mp_query_keys *keys,
                       const char *usage, mp_err *err) {
    if (o->pipeline) {
        mp_sql_add(q, " AND r.pipeline = ");
        mp_sql_bind_text(q, o->pipeline);
    }
    if (o->status) {
        /* ended runs keep their recorded status: the status index serves
         * them; running/lost need mp_status() on the running ones */
        bool live = strcmp(o->status, "running") == 0 || strcmp(o->status, "lost") == 0;
        mp_sql_add(q, live ? " AND r.status = 'running'"
                             " AND mp_status(r.status, r.host, r.pid, r.heartbeat) = "
                           : " AND r.status = ");
        mp_sql_bind_text(q, o->status);
    }
    if (o->since) {
        char iso[32];
        if (!mp_query_time(o->since, iso))
            return usage_err(err, usage, "bad --since '%s': expected a date (2026-11-27), a "
                             "date and time (2026-11-27 10:00, local; Z for UTC) or an age "
                             "(90s, 30m, 2h, 3d, 1w)", o->since);
        mp_sql_add(q, " AND r.started >= ");
        mp_sql_bind_text(q, iso);
    }
    if (o->where) {
        mp_sql_add(q, " AND ");
        if (mp_query_where(q, o->where, keys, err) != MP_OK) return err->code;
    }
    return MP_OK;
}

/* Appends " ORDER BY ..." for --sort KEY / -KEY (newest first without it;
 * ties by id, newest first). */
static int add_order(mp_sql *q, const char *sort, const mp_query_keys *keys, mp_err *err) {
    mp_sql_add(q, " ORDER BY ");
    if (sort) {
        bool desc = sort[0] == '-';
        const char *key = sort + (sort[0] == '-' || sort[0] == '+');
        if (strcmp(key, "duration") == 0) key = "seconds";
        mp_query_ref ref;
        if (mp_query_resolve("--sort", key, keys, &ref, err) != MP_OK) return err->code;
        mp_query_order(q, &ref, desc);
        mp_sql_add(q, ", ");
    }
    mp_sql_add(q, "r.id DESC");
    return MP_OK;
}

/* ---------------------------------------------------------------- list */

/* A column of `runs list`: a field, metric or param, or one of two made
 * for people: duration (seconds, formatted) and metric (the headline). */
typedef enum { C_REF, C_DURATION, C_HEADLINE } col_kind;

typedef struct column {
    col_kind     kind;
    mp_query_ref ref;       /* C_REF; its key points into name */
    char        *name;      /* as written in --columns (owned) */
} column;

typedef struct columns {
    column *v;
    size_t  n;
} columns;

static void columns_release(columns *c) {
    for (size_t i = 0; i < c->n; i++) mp_free(c->v[i].name);
    mp_free(c->v);
    c->v = NULL;
    c->n = 0;
}

/* Parses a comma-separated list of column names. */
static int columns_parse(const char *spec, const mp_query_keys *keys, columns *c, mp_err *err) {
    size_t n = 1;
    for (const char *s = spec; *s; s++) n += *s == ',';
    if (n > MAX_COLS - 1)
        return usage_err(err, LIST_USAGE, "too many --columns (at most %d)", MAX_COLS - 1);
    if (!(c->v = mp_calloc(n, sizeof *c->v)))
        return MP_ERR(err, MP_E_NOMEM, "out of memory listing runs");
    for (const char *s = spec;; s++) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        while (len && (s[0] == ' ')) s++, len--;
        while (len && s[len - 1] == ' ') len--;
        if (len == 0)
            return usage_err(err, LIST_USAGE, "empty name in --columns '%s'", spec);
        column *col = &c->v[c->n];
        if (!(col->name = mp_malloc(len + 1)))
            return MP_ERR(err, MP_E_NOMEM, "out of memory listing runs");
        memcpy(col->name, s, len);
        col->name[len] = '\0';
        c->n++;
        if (strcmp(col->name, "duration") == 0) col->kind = C_DURATION;
        else if (strcmp(col->name, "metric") == 0) col->kind = C_HEADLINE;
        else if (mp_query_resolve("--columns", col->name, keys, &col->ref, err) != MP_OK)
            return err->code;
        if (!e) break;
        s = e;
    }
    return MP_OK;
}

static bool col_numeric(const column *c) {
    if (c->kind == C_DURATION) return true;
    if (c->kind != C_REF) return false;
    if (c->ref.kind == MP_QK_METRIC) return true;
    if (c->ref.kind == MP_QK_PARAM) return false;
    mp_qtype t = mp_query_field_type(c->ref.field);
    return t == MP_QT_INT || t == MP_QT_REAL;
}

static bool col_is_seed(const column *c) {
    return c->kind == C_REF && c->ref.kind == MP_QK_FIELD &&
           strcmp(mp_query_field_name(c->ref.field), "seed") == 0;
}

/* The header of a column: field names in capitals as the default table has
 * always had them, keys as written. */
static void col_title(const column *c, bool for_table, char *buf, size_t n) {
    bool caps = for_table && (c->kind != C_REF || c->ref.kind == MP_QK_FIELD);
    snprintf(buf, n, "%s", c->name);
    for (char *p = buf; caps && *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
}

/* Cell i (SQL column i + 1; column 0 is the id) as text for a table or a
 * CSV file.  hl_key/hl_value: the headline of the row.  A table is for
 * people: local times without milliseconds, 6 significant digits,
 * durations as 1m04s, "-" for nothing.  CSV is for programs: the stored ISO
 * times, 15 digits, seconds as a number, empty for nothing. */
static const char *col_text(const column *c, sqlite3_stmt *st, int i, bool for_table,
                            const char *hl_key, double hl_value, char *buf, size_t n) {
    int k = i + 1;
    bool null = sqlite3_column_type(st, k) == SQLITE_NULL;
    const char *none = for_table ? "-" : "";
    switch (c->kind) {
    case C_HEADLINE:
        if (!hl_key) return none;
        if (for_table) snprintf(buf, n, "%s=%.4g", hl_key, hl_value);
        else snprintf(buf, n, "%s", hl_key);    /* CSV: the value is a column of its own */
        return buf;
    case C_DURATION:
        if (for_table) fmt_duration(buf, n, !null, cdouble(st, k));
        else if (null) return none;
        else fmt_exact(buf, n, cdouble(st, k));
        return buf;
    case C_REF:
        break;
    }
    if (null) return none;
    if (c->ref.kind == MP_QK_METRIC) {
        if (for_table) fmt_figure(buf, n, cdouble(st, k));
        else fmt_exact(buf, n, cdouble(st, k));
        return buf;
    }
    if (c->ref.kind == MP_QK_PARAM) return ctext(st, k);
    switch (mp_query_field_type(c->ref.field)) {
    case MP_QT_INT:
        if (col_is_seed(c)) fmt_seed(buf, n, sqlite3_column_int64(st, k));
        else snprintf(buf, n, "%lld", sqlite3_column_int64(st, k));
        return buf;
    case MP_QT_REAL:
        if (for_table) fmt_figure(buf, n, cdouble(st, k));
        else fmt_exact(buf, n, cdouble(st, k));
        return buf;
    case MP_QT_TIME:
        if (!for_table) return ctext(st, k);
        fmt_iso_local(buf, n, ctext(st, k));
        return buf;
    default:
        return ctext(st, k);
    }
}

/* Cell i as JSON (NULL when out of memory). */
static json_t *col_json(const column *c, sqlite3_stmt *st, int i, const char *hl_key,
                        double hl_value) {
    int k = i + 1;
    if (c->kind == C_HEADLINE) {
        if (!hl_key) return json_null();
        json_t *m = json_object();
        if (!jset(m, "key", json_string(hl_key)) || !jset(m, "value", jreal(hl_value))) {
            json_decref(m);
            return NULL;
        }
        return m;
    }
    if (sqlite3_column_type(st, k) == SQLITE_NULL) return json_null();
    if (c->kind == C_DURATION || (c->kind == C_REF && c->ref.kind == MP_QK_METRIC))
        return jreal(sqlite3_column_double(st, k));
    if (col_is_seed(c)) return jseed(sqlite3_column_int64(st, k));
    return jcol(st, k);
}

/* The rows of `runs list` and `runs export`: "SELECT r.id, <columns>
 * FROM runs r WHERE <filters> ORDER BY <sort> LIMIT n".  The id comes
 * first whatever the columns, for the headline lookup and for export; the
 * column expressions come from query.c, so a metric or param column is the
 * same figure a --where test on that name compares. */
static sqlite3_stmt *select_runs(mp_rundb *rdb, const runs_opts *o, const columns *cols,
                                 const mp_query_keys *keys, const char *usage, mp_err *err) {
    mp_sql q = { 0 };
    sqlite3_stmt *st = NULL;
    mp_sql_add(&q, "SELECT r.id");
    for (size_t i = 0; cols && i < cols->n; i++) {
        mp_sql_add(&q, ", ");
        if (cols->v[i].kind == C_REF) mp_query_value(&q, &cols->v[i].ref);
        else if (cols->v[i].kind == C_DURATION) mp_sql_add(&q, "r.seconds");
        else mp_sql_add(&q, "NULL");
    }
    mp_sql_add(&q, " FROM runs r WHERE 1");
    if (add_filters(&q, o, keys, usage, err) == MP_OK && add_order(&q, o->sort, keys, err) == MP_OK) {
        mp_sql_add(&q, " LIMIT ");
        mp_sql_bind_int(&q, o->limit > 0 ? o->limit : -1);     /* -1: no limit */
        st = prepare_sql(rdb, &q, err);
    }
    mp_sql_release(&q);
    return st;
}

/* `runs list`: newest first (or --sort), as a table, CSV or JSON.
 *
 * Without --columns the table keeps the columns it has always had (ID,
 * PIPELINE, STATUS, STARTED, DURATION, METRIC), and CSV/JSON the fields
 * scripts need, with the headline figure as {"key", "value"} in JSON (the
 * shape of earlier versions) and as two columns in CSV.  Rows are formatted
 * as they are read; only the table waits for all rows, to size columns. */
static int runs_list(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    keyctx kc = { .rdb = rdb };
    mp_query_keys keys = { key_has, key_nearest, &kc };
    columns cols = { 0 };
    table t = { 0 };
    json_t *arr = NULL;
    sqlite3_stmt *st = NULL, *hl = NULL;
    out_format fmt = o->format == F_DEFAULT ? F_TABLE : o->format;
    int rc = SQLITE_OK;
    bool headline_used = false;

    const char *spec = o->columns ? o->columns
                       : fmt == F_TABLE ? "id,pipeline,status,started,duration,metric"
                                        : "id,pipeline,status,started,ended,seconds,exit_code,metric";
    if (columns_parse(spec, &keys, &cols, err) != MP_OK) goto done;
    for (size_t i = 0; i < cols.n; i++) headline_used |= cols.v[i].kind == C_HEADLINE;
    if (!(st = select_runs(rdb, o, &cols, &keys, LIST_USAGE, err))) goto done;
    if (headline_used && !(hl = prepare(rdb, headline_sql, 0, err))) goto done;

    char title[MAX_COLS][128];
    const char *row[MAX_COLS];
    uint64_t right = 0;
    for (size_t i = 0; i < cols.n; i++) {
        col_title(&cols.v[i], fmt == F_TABLE, title[i], sizeof title[i]);
        row[i] = title[i];
        if (col_numeric(&cols.v[i])) right |= (uint64_t)1 << i;
    }
    if (fmt == F_JSON) {
        if (!(arr = json_array())) goto nomem;
    } else if (fmt == F_TABLE) {
        t.n_cols = cols.n;
        if (table_add(&t, row) != 0) goto nomem;
    } else {
        for (size_t i = 0; i < cols.n; i++) {
            csv_cell(out, title[i], i + 1 == cols.n && cols.v[i].kind != C_HEADLINE);
            if (cols.v[i].kind == C_HEADLINE) csv_cell(out, "value", i + 1 == cols.n);
        }
    }

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        long long id = sqlite3_column_int64(st, 0);
        const char *hl_key = NULL;
        double hl_value = NAN;
        if (hl && (rc = headline(hl, id, &hl_key, &hl_value)) != SQLITE_OK) break;
        if (fmt == F_JSON) {
            json_t *obj = json_object();
            bool ok = obj != NULL;
            for (size_t i = 0; i < cols.n && ok; i++)
                ok = jset(obj, cols.v[i].name, col_json(&cols.v[i], st, (int)i, hl_key, hl_value));
            if (!ok) {
                json_decref(obj);
                goto nomem;
            }
            if (!jpush(arr, obj)) goto nomem;
            continue;
        }
        char buf[MAX_COLS][128];
        for (size_t i = 0; i < cols.n; i++)
            row[i] = col_text(&cols.v[i], st, (int)i, fmt == F_TABLE, hl_key, hl_value, buf[i],
                              sizeof buf[i]);
        if (fmt == F_TABLE) {
            if (table_add(&t, row) != 0) goto nomem;
            continue;
        }
        for (size_t i = 0; i < cols.n; i++) {
            bool hlc = cols.v[i].kind == C_HEADLINE, last = i + 1 == cols.n;
            csv_cell(out, row[i], last && !hlc);
            if (hlc) {
                char v[64] = "";
                if (hl_key) fmt_exact(v, sizeof v, hl_value);
                csv_cell(out, v, last);
            }
        }
    }
    if (rc != SQLITE_DONE) {
        mp_rundb_fail(rdb, err);
        goto done;
    }
    if (fmt == F_JSON) {
        json_emit(arr, out, err);
        arr = NULL;     /* json_emit took it */
    } else if (fmt == F_TABLE && t.n_rows == 1) {     /* the header alone */
        fprintf(out, "no %sruns in '%s'\n", o->pipeline || o->status || o->since || o->where
                ? "matching " : "", mp_rundb_path(rdb));
    } else if (fmt == F_TABLE) {
        table_print(&t, out, 0, right);
    }
    goto done;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory listing runs");
done:
    sqlite3_finalize(st);
    sqlite3_finalize(hl);
    json_decref(arr);
    table_release(&t);
    columns_release(&cols);
    keyctx_release(&kc);
    return err->code;
}

/* ---------------------------------------------------------------- show */

/* status as readers see it: a dead `running` run shows "lost" */
static const char run_sql[] =
    "SELECT id, pipeline, mp_status(status, host, pid, heartbeat) AS status, started, ended,"
    " seconds, seed, exit_code, error, failed_stage, host, pid, mlpipe_version, heartbeat,"
    " config_sha256, config FROM runs WHERE id = ?1";
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

/* Prints "title" and then t indented, unless t is empty. */
static void section(FILE *out, const char *title, const table *t, uint64_t right_mask) {
    if (t->n_rows == 0) return;
    fprintf(out, "\n%s\n", title);
    table_print(t, out, 2, right_mask);
}

/* Why a run shows as lost (st: a run_sql row); "" when it does not. */
static void lost_reason(mp_rundb *rdb, sqlite3_stmt *st, char *why, size_t n) {
    why[0] = '\0';
    if (strcmp(ctext(st, 2), "lost") == 0)
        mp_rundb_status(rdb, "running", ctext(st, 10), sqlite3_column_int64(st, 11),
                        ctext(st, 13), why, n);
}

/* The runs row of a text report: "run 12  iris  finished" and a field list.
 * *config is set to a copy of the config text (caller frees). */
static int show_fields(mp_rundb *rdb, long long id, FILE *out, char **config, mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, run_sql, id, err);
    if (!st) return err->code;
    table t = { .n_cols = 2 };
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        char dur[32], seed[24], code[24], pid[24], why[256];
        fmt_duration(dur, sizeof dur, sqlite3_column_type(st, 5) != SQLITE_NULL,
                     sqlite3_column_double(st, 5));
        fmt_seed(seed, sizeof seed, sqlite3_column_int64(st, 6));
        snprintf(code, sizeof code, "%s", ctext(st, 7) ? ctext(st, 7) : "-");
        snprintf(pid, sizeof pid, "%lld", sqlite3_column_int64(st, 11));
        bool running = strcmp(ctext(st, 2), "running") == 0 || strcmp(ctext(st, 2), "lost") == 0;
        lost_reason(rdb, st, why, sizeof why);
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
            { "lost", why[0] ? why : NULL },
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
    char why[256] = "";
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        o = row_object(st, CONFIG_COL);
        config = jcol(st, CONFIG_COL);
        lost_reason(rdb, st, why, sizeof why);
        if (o && why[0] && !jset(o, "lost_reason", json_string(why))) {
            json_decref(o);
            o = NULL;
        }
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

/* `runs show RUN`. */
static int runs_show(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    long long id;
    if (resolve_arg(rdb, o->pos[0], SHOW_USAGE, &id, err) != MP_OK) return err->code;
    return o->format == F_JSON ? show_json(rdb, id, out, err) : show_text(rdb, id, out, err);
}

/* ---------------------------------------------------------------- the runs table */

static const char *const rt_names[] = {
    [MP_RT_ID] = "id", [MP_RT_PIPELINE] = "pipeline", [MP_RT_STATUS] = "status",
    [MP_RT_STARTED] = "started", [MP_RT_ENDED] = "ended", [MP_RT_SECONDS] = "seconds",
    [MP_RT_SEED] = "seed", [MP_RT_EXIT_CODE] = "exit_code", [MP_RT_HOST] = "host",
};
_Static_assert(sizeof rt_names / sizeof *rt_names == MP_RT_FIELDS, "rt_names");

/* Where the rows of one run go: its positions in the table (a run asked for
 * twice has two), found by binary search on id. */
typedef struct idpos {
    long long id;
    size_t    pos;
} idpos;

static int idpos_cmp(const void *a, const void *b) {
    const idpos *x = a, *y = b;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The first of the entries of id in the sorted order[0 .. n), or n. */
static size_t idpos_first(const idpos *order, size_t n, long long id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (order[mid].id < id) lo = mid + 1;
        else hi = mid;
    }
    return lo < n && order[lo].id == id ? lo : n;
}

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The index of key in the sorted keys[0 .. n), or n. */
static size_t key_index(char *const *keys, size_t n, const char *key) {
    char *const *hit = bsearch(&key, keys, n, sizeof *keys, str_cmp);
    return hit ? (size_t)(hit - keys) : n;
}

/* ids as JSON text "[3,4,5]", so that one bound value selects any number of
 * runs: "run IN (SELECT value FROM json_each(?1))". */
static char *ids_json(const long long *ids, size_t n) {
    char *s = mp_malloc(mp_mul_size(n, 21) + 3);
    if (!s) return NULL;
    size_t k = 0;
    s[k++] = '[';
    for (size_t i = 0; i < n; i++) k += (size_t)sprintf(s + k, "%s%lld", i ? "," : "", ids[i]);
    s[k++] = ']';
    s[k] = '\0';
    return s;
}

/* Reads the one text column of sql (?1 = json) into a new array. */
static int load_strings(mp_rundb *rdb, const char *sql, const char *json, char ***out,
                        size_t *n, mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, sql, 0, err);
    if (!st) return err->code;
    size_t cap = 0;
    int rc = sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        if (*n == cap) {
            cap = cap ? cap * 2 : 32;
            char **v = mp_realloc(*out, mp_mul_size(cap, sizeof *v));
            if (!v) goto nomem;
            *out = v;
        }
        if (!((*out)[*n] = mp_strdup(ctext(st, 0)))) goto nomem;
        (*n)++;
    }
    return finish(rdb, st, rc, err);
nomem:
    sqlite3_finalize(st);
    return MP_ERR(err, MP_E_NOMEM, "out of memory reading runs");
}

static const char rt_fields_sql[] =
    "SELECT r.id, r.pipeline, mp_status(r.status, r.host, r.pid, r.heartbeat), r.started,"
    " r.ended, r.seconds, r.seed, r.exit_code, r.host"
    " FROM runs r WHERE r.id IN (SELECT value FROM json_each(?1))";
static const char rt_param_keys_sql[] =
    "SELECT DISTINCT key FROM params WHERE run IN (SELECT value FROM json_each(?1)) ORDER BY key";
static const char rt_metric_keys_sql[] =
    "SELECT DISTINCT key FROM metrics WHERE step IS NULL"
    " AND run IN (SELECT value FROM json_each(?1)) ORDER BY key";
static const char rt_params_sql[] =
    "SELECT run, key, value FROM params WHERE run IN (SELECT value FROM json_each(?1))";
/* in rowid order: a later figure of a key replaces an earlier one */
static const char rt_metrics_sql[] =
    "SELECT run, key, value FROM metrics WHERE step IS NULL"
    " AND run IN (SELECT value FROM json_each(?1)) ORDER BY rowid";

/* Runs one of the table queries and hands each row to fill() for every
 * position of its run. */
typedef int (*rt_fill)(mp_runs_table *t, size_t pos, sqlite3_stmt *st);

static int rt_query(mp_rundb *rdb, const char *sql, const char *json, const idpos *order,
                    mp_runs_table *t, rt_fill fill, mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, sql, 0, err);
    if (!st) return err->code;
    int rc = sqlite3_bind_text(st, 1, json, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        long long id = sqlite3_column_int64(st, 0);
        for (size_t k = idpos_first(order, t->n_runs, id); k < t->n_runs && order[k].id == id; k++)
            if (fill(t, order[k].pos, st) != 0) {
                sqlite3_finalize(st);
                return MP_ERR(err, MP_E_NOMEM, "out of memory reading runs");
            }
    }
    return finish(rdb, st, rc, err);
}

static int fill_fields(mp_runs_table *t, size_t pos, sqlite3_stmt *st) {
    char **row = t->fields + pos * MP_RT_FIELDS;
    for (int k = 0; k < MP_RT_FIELDS; k++) {
        if (sqlite3_column_type(st, k) == SQLITE_NULL) continue;
        char seed[24];
        if (k == MP_RT_SEED) fmt_seed(seed, sizeof seed, sqlite3_column_int64(st, k));
        if (!(row[k] = mp_strdup(k == MP_RT_SEED ? seed : ctext(st, k)))) return -1;
    }
    return 0;
}

static int fill_param(mp_runs_table *t, size_t pos, sqlite3_stmt *st) {
    size_t j = key_index(t->param_keys, t->n_params, ctext(st, 1));
    if (j == t->n_params || !ctext(st, 2)) return 0;
    char **cell = &t->params[pos * t->n_params + j];
    mp_free(*cell);
    return (*cell = mp_strdup(ctext(st, 2))) ? 0 : -1;
}

static int fill_metric(mp_runs_table *t, size_t pos, sqlite3_stmt *st) {
    size_t j = key_index(t->metric_keys, t->n_metrics, ctext(st, 1));
    if (j < t->n_metrics) {
        t->metrics[pos * t->n_metrics + j] = cdouble(st, 2);
        t->has_metric[pos * t->n_metrics + j] = 1;
    }
    return 0;
}

/* Five queries whatever the number of runs (fields, param keys, metric
 * keys, params, figures), each selecting its runs through one JSON array
 * bound to ?1 -- no statement per run, no limit on the number of ids (an
 * "IN (?, ?, ...)" list would hit SQLite's limit on bound values).  Keys
 * come sorted from SQLite (binary collation, the order strcmp gives), so a
 * row finds its column by binary search, and its run by binary search on
 * the sorted (id, position) pairs. */
int mp_runs_table_load(mp_rundb *rdb, const long long *ids, size_t n, mp_runs_table *t,
                       mp_err *err) {
    memset(t, 0, sizeof *t);
    char *json = ids_json(ids, n);
    idpos *order = mp_calloc(n ? n : 1, sizeof *order);
    t->ids = mp_calloc(n ? n : 1, sizeof *t->ids);
    t->fields = mp_calloc(mp_mul_size(n ? n : 1, MP_RT_FIELDS), sizeof *t->fields);
    if (!json || !order || !t->ids || !t->fields) goto nomem;
    t->n_runs = n;
    for (size_t i = 0; i < n; i++) {
        t->ids[i] = ids[i];
        order[i] = (idpos){ ids[i], i };
    }
    qsort(order, n, sizeof *order, idpos_cmp);
    if (rt_query(rdb, rt_fields_sql, json, order, t, fill_fields, err) != MP_OK ||
        load_strings(rdb, rt_param_keys_sql, json, &t->param_keys, &t->n_params, err) != MP_OK ||
        load_strings(rdb, rt_metric_keys_sql, json, &t->metric_keys, &t->n_metrics, err) != MP_OK)
        goto done;
    size_t np = mp_mul_size(n, t->n_params), nm = mp_mul_size(n, t->n_metrics);
    t->params = mp_calloc(np ? np : 1, sizeof *t->params);
    t->metrics = mp_calloc(nm ? nm : 1, sizeof *t->metrics);
    t->has_metric = mp_calloc(nm ? nm : 1, 1);
    if (!t->params || !t->metrics || !t->has_metric) goto nomem;
    for (size_t i = 0; i < nm; i++) t->metrics[i] = NAN;
    if (rt_query(rdb, rt_params_sql, json, order, t, fill_param, err) == MP_OK)
        rt_query(rdb, rt_metrics_sql, json, order, t, fill_metric, err);
    goto done;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory reading runs");
done:
    mp_free(json);
    mp_free(order);
    return err->code;
}

void mp_runs_table_release(mp_runs_table *t) {
    if (t->fields)
        for (size_t i = 0; i < t->n_runs * MP_RT_FIELDS; i++) mp_free(t->fields[i]);
    if (t->params)
        for (size_t i = 0; i < t->n_runs * t->n_params; i++) mp_free(t->params[i]);
    for (size_t i = 0; i < t->n_params; i++) mp_free(t->param_keys[i]);
    for (size_t i = 0; i < t->n_metrics; i++) mp_free(t->metric_keys[i]);
    mp_free(t->ids);
    mp_free(t->fields);
    mp_free(t->param_keys);
    mp_free(t->params);
    mp_free(t->metric_keys);
    mp_free(t->metrics);
    mp_free(t->has_metric);
    memset(t, 0, sizeof *t);
}

/* A field of the table as JSON: numbers for id, seconds, seed, exit code. */
static json_t *rt_field_json(const mp_runs_table *t, size_t run, int k) {
    const char *s = t->fields[run * MP_RT_FIELDS + k];
    if (!s) return json_null();
    double d;
    long long i;
    switch (k) {
    case MP_RT_SECONDS:
        return mp_parse_double(s, &d) ? jreal(d) : jstr(s);
    case MP_RT_ID:
    case MP_RT_EXIT_CODE:
    case MP_RT_SEED:    /* unsigned digits: above 2^63 they stay a string */
        return mp_parse_long(s, &i) ? json_integer(i) : jstr(s);
    default:
        return jstr(s);
    }
}

/* ---------------------------------------------------------------- compare */

/* Where the rows of `runs compare` go, in one of the three formats. */
typedef struct cmp_out {
    out_format   fmt;
    FILE        *out;
    bool         diff_only;     /* --diff */
    size_t       n_runs;
    table        t;             /* F_TABLE: marker, key, one column per run */
    json_t      *rows;          /* F_JSON: the "rows" array */
    const char  *section;       /* of the rows being added */
    bool         titled;        /* the section's title row is in t */
    bool         nomem;
} cmp_out;

/* s cut to CMP_CELL_MAX characters with a final "…" when longer (a list
 * param would widen every column of a table); buf holds CMP_CELL_MAX + 4. */
enum { CMP_CELL_MAX = 40 };

static const char *shorten(const char *s, char *buf) {
    if (text_width(s) <= CMP_CELL_MAX) return s;
    size_t k = 0, chars = 0;
    for (; s[k]; k++)       /* up to the start of character CMP_CELL_MAX */
        if (((unsigned char)s[k] & 0xC0) != 0x80 && chars++ == CMP_CELL_MAX - 1) break;
    memcpy(buf, s, k);
    memcpy(buf + k, "\xE2\x80\xA6", 4);     /* "…" and the NUL */
    return buf;
}

/* Adds one row: disp[] for the table, raw[] for CSV, vals[] (taken) for
 * JSON.  With --diff, rows that agree are skipped. */
static void cmp_row(cmp_out *c, const char *key, const char *const *disp,
                    const char *const *raw, json_t **vals, bool differs) {
    if (c->diff_only && !differs) {
        for (size_t i = 0; i < c->n_runs; i++) json_decref(vals[i]);
        return;
    }
    if (c->fmt == F_TABLE) {
        const char *row[MAX_COLS] = { 0 };
        if (strcmp(c->section, "run") != 0 && !c->titled) {
            c->titled = true;
            c->nomem |= table_add(&c->t, row) != 0;     /* a blank line */
            row[1] = c->section;
            c->nomem |= table_add(&c->t, row) != 0;
        }
        char indented[300], cut[MAX_COLS][CMP_CELL_MAX + 4];
        snprintf(indented, sizeof indented, "%s%s", strcmp(c->section, "run") ? "  " : "", key);
        row[0] = differs ? "*" : "";
        row[1] = indented;
        for (size_t i = 0; i < c->n_runs; i++) row[2 + i] = shorten(disp[i], cut[i]);
        c->nomem |= table_add(&c->t, row) != 0;
    } else if (c->fmt == F_CSV) {
        csv_cell(c->out, c->section, false);
        csv_cell(c->out, key, false);
        csv_cell(c->out, differs ? "1" : "0", false);
        for (size_t i = 0; i < c->n_runs; i++) csv_cell(c->out, raw[i], i + 1 == c->n_runs);
    }
    if (c->fmt != F_JSON) {
        for (size_t i = 0; i < c->n_runs; i++) json_decref(vals[i]);
        return;
    }
    json_t *row = json_object(), *arr = json_array();
    bool ok = jset(row, "section", json_string(c->section)) && jset(row, "key", jstr(key)) &&
              jset(row, "differs", json_boolean(differs));
    for (size_t i = 0; i < c->n_runs; i++) ok = jpush(arr, vals[i]) && ok;
    ok = ok && jset(row, "values", json_incref(arr));
    json_decref(arr);
    if (!ok || !jpush(c->rows, row)) {
        if (!ok) json_decref(row);
        c->nomem = true;
    }
}

/* Whether the texts differ (NULL = missing counts as a value). */
static bool texts_differ(const char *const *v, size_t n) {
    for (size_t i = 1; i < n; i++)
        if ((v[i] == NULL) != (v[0] == NULL) || (v[i] && strcmp(v[i], v[0]) != 0)) return true;
    return false;
}

/* `runs compare A B ...`: fields, params and final figures side by side,
 * one column per run in the order given, every key any of them has (a run
 * without it shows "-").  A row "differs" when its values are not all the
 * same, where missing counts as a value. */
static int runs_compare(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    long long ids[MAX_POS] = { 0 };
    size_t n = (size_t)o->n_pos;
    for (size_t i = 0; i < n; i++)
        if (resolve_arg(rdb, o->pos[i], CMP_USAGE, &ids[i], err) != MP_OK) return err->code;
    mp_runs_table rt;
    cmp_out c = { .fmt = o->format == F_DEFAULT ? F_TABLE : o->format, .out = out,
                  .diff_only = o->diff, .n_runs = n, .t = { .n_cols = 2 + n } };
    if (mp_runs_table_load(rdb, ids, n, &rt, err) != MP_OK) goto done;

    const char *disp[MAX_COLS], *raw[MAX_COLS], *vals_text[MAX_COLS];
    json_t *vals[MAX_COLS];
    char buf[MAX_COLS][64], ids_text[MAX_COLS][24];
    for (size_t i = 0; i < n; i++) snprintf(ids_text[i], sizeof ids_text[i], "%lld", ids[i]);

    /* the header: the run ids */
    if (c.fmt == F_TABLE) {
        const char *row[MAX_COLS] = { "", "run" };
        for (size_t i = 0; i < n; i++) row[2 + i] = ids_text[i];
        c.nomem |= table_add(&c.t, row) != 0;
    } else if (c.fmt == F_CSV) {
        fputs("section,key,differs,", out);
        for (size_t i = 0; i < n; i++) csv_cell(out, ids_text[i], i + 1 == n);
    } else if (!(c.rows = json_array())) {
        c.nomem = true;
    }

    /* fields (the id is the header) */
    c.section = "run";
    static const int shown[] = { MP_RT_PIPELINE, MP_RT_STATUS, MP_RT_STARTED, MP_RT_SECONDS,
                                 MP_RT_SEED, MP_RT_EXIT_CODE, MP_RT_HOST };
    for (size_t f = 0; f < sizeof shown / sizeof *shown; f++) {
        int k = shown[f];
        for (size_t i = 0; i < n; i++) {
            const char *s = rt.fields[i * MP_RT_FIELDS + k];
            raw[i] = s;
            vals[i] = rt_field_json(&rt, i, k);
            disp[i] = s ? s : "-";
            if (k == MP_RT_STARTED && s) fmt_iso_local(buf[i], sizeof buf[i], s), disp[i] = buf[i];
            if (k == MP_RT_SECONDS) {
                double d = NAN;
                if (s) mp_parse_double(s, &d);
                fmt_duration(buf[i], sizeof buf[i], s != NULL, d);
                disp[i] = buf[i];
            }
        }
        /* durations of the same work always differ a little: not marked */
        bool differs = k != MP_RT_SECONDS && k != MP_RT_STARTED && texts_differ(raw, n);
        cmp_row(&c, k == MP_RT_SECONDS ? "duration" : rt_names[k], disp, raw, vals, differs);
    }

    c.section = "params";
    c.titled = false;
    for (size_t j = 0; j < rt.n_params; j++) {
        for (size_t i = 0; i < n; i++) {
            vals_text[i] = rt.params[i * rt.n_params + j];
            raw[i] = vals_text[i];
            disp[i] = vals_text[i] ? vals_text[i] : "-";
            vals[i] = jstr(vals_text[i]);
        }
        cmp_row(&c, rt.param_keys[j], disp, raw, vals, texts_differ(vals_text, n));
    }

    c.section = "metrics";
    c.titled = false;
    char exact[MAX_COLS][32];
    for (size_t j = 0; j < rt.n_metrics; j++) {
        for (size_t i = 0; i < n; i++) {
            size_t k = i * rt.n_metrics + j;
            bool has = rt.has_metric[k];
            fmt_exact(exact[i], sizeof exact[i], rt.metrics[k]);
            if (has && isnan(rt.metrics[k])) snprintf(exact[i], sizeof exact[i], "nan");
            vals_text[i] = has ? exact[i] : NULL;
            raw[i] = has && !isnan(rt.metrics[k]) ? exact[i] : NULL;
            vals[i] = has ? jreal(rt.metrics[k]) : json_null();
            if (has) fmt_figure(buf[i], sizeof buf[i], rt.metrics[k]);
            disp[i] = has ? buf[i] : "-";
        }
        bool differs = texts_differ(vals_text, n), alike = false;
        /* values that differ but print alike at 6 digits get 15 */
        for (size_t a = 0; differs && a < n; a++)
            for (size_t b = a + 1; b < n; b++) {
                const char *pair[2] = { vals_text[a], vals_text[b] };
                alike |= strcmp(disp[a], disp[b]) == 0 && texts_differ(pair, 2);
            }
        for (size_t m = 0; alike && m < n; m++) disp[m] = vals_text[m] ? vals_text[m] : "-";
        cmp_row(&c, rt.metric_keys[j], disp, raw, vals, differs);
    }

    if (c.nomem) {
        MP_ERR(err, MP_E_NOMEM, "out of memory comparing runs");
    } else if (c.fmt == F_TABLE) {
        table_print(&c.t, out, 0, 0);
    } else if (c.fmt == F_JSON) {
        json_t *root = json_object(), *runs = json_array();
        bool ok = root && runs;
        for (size_t i = 0; i < n && ok; i++) ok = jpush(runs, json_integer(ids[i]));
        ok = ok && jset(root, "runs", json_incref(runs)) && jset(root, "rows", json_incref(c.rows));
        json_decref(runs);
        if (!ok) {
            json_decref(root);
            root = NULL;
        }
        json_emit(root, out, err);
    }
done:
    json_decref(c.rows);
    table_release(&c.t);
    mp_runs_table_release(&rt);
    return err->code;
}

/* ---------------------------------------------------------------- best */

/* Writes " (did you mean 'K'?)" into hint when a final figure K of some
 * run is close to key; leaves hint alone otherwise. */
static void nearest_final(mp_rundb *rdb, const char *key, char *hint, size_t n) {
    mp_err e = { 0 };
    sqlite3_stmt *st = prepare(rdb, "SELECT DISTINCT key FROM metrics WHERE step IS NULL", 0, &e);
    size_t best_d = (size_t)-1;
    while (st && sqlite3_step(st) == SQLITE_ROW) {
        const char *cand = ctext(st, 0);
        size_t d = mp_edit_distance(key, cand);
        if (d < best_d && mp_nearest(key, &cand, 1)) {
            best_d = d;
            snprintf(hint, n, " (did you mean '%s'?)", cand);
        }
    }
    sqlite3_finalize(st);
}

/* `runs best --metric KEY`: the id of the finished run (or --status) with
 * the highest final figure (--min: lowest).  Ties go to the newest run, so
 * the answer is the first row of `runs list --sort -KEY` (or KEY). */
static int runs_best(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    keyctx kc = { .rdb = rdb };
    mp_query_keys keys = { key_has, key_nearest, &kc };
    mp_sql q = { 0 };
    sqlite3_stmt *st = NULL;
    runs_opts f = *o;
    if (!f.status) f.status = "finished";

    /* a key no run has is "none found" (exit 1), not a usage error */
    unsigned found = 0;
    const char *key = o->metric;
    bool forced = strncmp(key, "metrics.", 8) == 0 && key[8];
    if (key_has(&kc, key, &found, err) != MP_OK) goto done;
    if (!(found & MP_QHAS_FINAL) && forced) {
        key += 8;
        if (key_has(&kc, key, &found, err) != MP_OK) goto done;
    }
    if (!(found & MP_QHAS_FINAL)) {
        char hint[300] = "";
        if (found & MP_QHAS_STEPS) snprintf(hint, sizeof hint, " (it has only per-step values)");
        else nearest_final(rdb, key, hint, sizeof hint);
        MP_ERR(err, MP_E_DATA, "no run has a final figure '%s'%s", key, hint);
        goto done;
    }
    /* Driven by the metrics_final index in value order, so the answer comes
     * after a few rows instead of a probe per run; m must be the run's latest
     * final row of the key (the figure `runs list` and --where use). */
    mp_sql_add(&q, "SELECT m.run FROM metrics m JOIN runs r ON r.id = m.run WHERE m.key = ");
    mp_sql_bind_text(&q, key);
    mp_sql_add(&q, " AND m.step IS NULL AND m.value IS NOT NULL AND m.rowid = (SELECT"
               " max(l.rowid) FROM metrics l WHERE l.run = m.run AND l.key = m.key AND"
               " l.step IS NULL)");
    if (add_filters(&q, &f, &keys, BEST_USAGE, err) != MP_OK) goto done;
    mp_sql_add(&q, o->min ? " ORDER BY m.value ASC, m.run DESC LIMIT 1"
                          : " ORDER BY m.value DESC, m.run DESC LIMIT 1");
    if (!(st = prepare_sql(rdb, &q, err))) goto done;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        fprintf(out, "%lld\n", sqlite3_column_int64(st, 0));
    } else if (rc == SQLITE_DONE) {
        char what[300];
        snprintf(what, sizeof what, "%s run%s%s%s", f.status, o->pipeline ? " of pipeline '" : "",
                 o->pipeline ? o->pipeline : "", o->pipeline ? "'" : "");
        MP_ERR(err, MP_E_DATA, "no %s%s has a final figure '%s'", what,
               o->since || o->where ? " matching the filters" : "", key);
    } else {
        mp_rundb_fail(rdb, err);
    }
done:
    sqlite3_finalize(st);
    mp_sql_release(&q);
    keyctx_release(&kc);
    return err->code;
}

/* ---------------------------------------------------------------- metrics (history) */

/* A Unicode sparkline of v[0 .. n) in at most width block characters, each
 * the mean of its share of the values (NaN skipped; a share without numbers
 * prints a space).  buf holds width * 3 + 1 bytes. */
static void sparkline(const double *v, size_t n, size_t width, char *buf) {
    static const char *const blocks[] = { "▁", "▂", "▃", "▄", "▅", "▆", "▇", "█" };
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (!isnan(v[i])) {
            if (v[i] < lo) lo = v[i];
            if (v[i] > hi) hi = v[i];
        }
    size_t w = n < width ? n : width, k = 0;
    for (size_t c = 0; c < w; c++) {
        size_t a = c * n / w, b = (c + 1) * n / w;
        double sum = 0;
        size_t cnt = 0;
        for (size_t i = a; i < b; i++)
            if (!isnan(v[i])) sum += v[i], cnt++;
        if (cnt == 0) {
            buf[k++] = ' ';
            continue;
        }
        double x = hi > lo ? (sum / (double)cnt - lo) / (hi - lo) : 0;
        int level = (int)(x * 7.0 + 0.5);
        const char *b3 = blocks[level < 0 ? 0 : level > 7 ? 7 : level];
        memcpy(buf + k, b3, 3);
        k += 3;
    }
    buf[k] = '\0';
}

/* A metric's history while it is read. */
typedef struct history {
    long long *steps;       /* -1 for a final figure (step NULL) */
    double    *values, *times;
    size_t     n, cap;
} history;

static void history_release(history *h) {
    mp_free(h->steps);
    mp_free(h->values);
    mp_free(h->times);
}

static int history_add(history *h, long long step, double value, double time) {
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 256;
        long long *s = mp_realloc(h->steps, mp_mul_size(cap, sizeof *s));
        if (s) h->steps = s;
        double *v = s ? mp_realloc(h->values, mp_mul_size(cap, sizeof *v)) : NULL;
        if (v) h->values = v;
        double *t = v ? mp_realloc(h->times, mp_mul_size(cap, sizeof *t)) : NULL;
        if (!t) return -1;
        h->times = t;
        h->cap = cap;
    }
    h->steps[h->n] = step;
    h->values[h->n] = value;
    h->times[h->n] = time;
    h->n++;
    return 0;
}

/* The per-step rows of a key; when it has none, its latest final figure. */
static const char hist_sql[] =
    "SELECT step, value, time FROM metrics WHERE run = ?1 AND key = ?2 AND step IS NOT NULL"
    " ORDER BY step, rowid";
static const char hist_final_sql[] =
    "SELECT NULL, value, time FROM metrics WHERE run = ?1 AND key = ?2 AND step IS NULL"
    " ORDER BY rowid DESC LIMIT 1";

static int read_history(mp_rundb *rdb, long long run, const char *key, const char *sql,
                        history *h, mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, sql, run, err);
    if (!st) return err->code;
    int rc = sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        long long step = sqlite3_column_type(st, 0) == SQLITE_NULL ? -1 : sqlite3_column_int64(st, 0);
        if (history_add(h, step, cdouble(st, 1), cdouble(st, 2)) != 0) {
            sqlite3_finalize(st);
            return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", key);
        }
    }
    return finish(rdb, st, rc, err);
}

/* "run 3 has no metric 'x'", with the nearest key the run has. */
static int no_such_metric(mp_rundb *rdb, long long run, const char *key, mp_err *err) {
    sqlite3_stmt *st = prepare(rdb, "SELECT DISTINCT key FROM metrics WHERE run = ?1", run, err);
    if (!st) return err->code;
    char hint[300] = "";
    size_t best_d = (size_t)-1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *cand = ctext(st, 0);
        size_t d = mp_edit_distance(key, cand);
        if (d < best_d && mp_nearest(key, &cand, 1)) {
            best_d = d;
            snprintf(hint, sizeof hint, " (did you mean '%s'?)", cand);
        }
    }
    sqlite3_finalize(st);
    return MP_ERR(err, MP_E_USAGE, "run %lld has no metric '%s'%s", run, key, hint);
}

/* `runs metrics RUN KEY`: step, value, time; a sparkline on a terminal.
 * The whole history is read into memory first: the sparkline and the
 * summary line above the table need all of it, and a history is at most a
 * few hundred thousand rows (24 bytes each). */
static int runs_history(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    long long run;
    const char *key = o->pos[1];
    if (resolve_arg(rdb, o->pos[0], HIST_USAGE, &run, err) != MP_OK) return err->code;
    history h = { 0 };
    table t = { .n_cols = 3 };
    out_format fmt = o->format == F_DEFAULT ? F_TABLE : o->format;
    if (read_history(rdb, run, key, hist_sql, &h, err) != MP_OK) goto done;
    if (h.n == 0 && read_history(rdb, run, key, hist_final_sql, &h, err) != MP_OK) goto done;
    if (h.n == 0) {
        no_such_metric(rdb, run, key, err);
        goto done;
    }
    if (fmt == F_JSON) {
        json_t *root = json_object(), *rows = json_array();
        bool ok = jset(root, "run", json_integer(run)) && jset(root, "key", jstr(key));
        for (size_t i = 0; i < h.n && ok; i++) {
            json_t *r = json_object();
            ok = jset(r, "step", h.steps[i] < 0 ? json_null() : json_integer(h.steps[i])) &&
                 jset(r, "value", jreal(h.values[i])) && jset(r, "time", jreal(h.times[i]));
            ok = ok ? jpush(rows, r) : (json_decref(r), false);
        }
        ok = ok && jset(root, "history", json_incref(rows));
        json_decref(rows);
        if (!ok) {
            json_decref(root);
            root = NULL;
        }
        json_emit(root, out, err);
        goto done;
    }
    if (fmt == F_CSV) {
        fputs("step,value,time\n", out);
        for (size_t i = 0; i < h.n; i++) {
            char s[24] = "", v[32], tm[32] = "";
            if (h.steps[i] >= 0) snprintf(s, sizeof s, "%lld", h.steps[i]);
            fmt_exact(v, sizeof v, h.values[i]);
            if (isfinite(h.times[i])) snprintf(tm, sizeof tm, "%.3f", h.times[i]);
            fprintf(out, "%s,%s,%s\n", s, v, tm);
        }
        goto done;
    }
    if ((o->spark || isatty(fileno(out))) && h.n >= 2) {
        char spark[SPARK_WIDTH * 3 + 1];
        sparkline(h.values, h.n, SPARK_WIDTH, spark);
        size_t lo = 0, hi = 0;
        for (size_t i = 1; i < h.n; i++) {
            if (isnan(h.values[lo]) || h.values[i] < h.values[lo]) lo = i;
            if (isnan(h.values[hi]) || h.values[i] > h.values[hi]) hi = i;
        }
        char first[32], last[32], min[32], max[32];
        fmt_figure(first, sizeof first, h.values[0]);
        fmt_figure(last, sizeof last, h.values[h.n - 1]);
        fmt_figure(min, sizeof min, h.values[lo]);
        fmt_figure(max, sizeof max, h.values[hi]);
        fprintf(out, "%s  %s\n%zu steps: first %s, last %s, min %s (step %lld), max %s "
                "(step %lld)\n\n", key, spark, h.n, first, last, min, h.steps[lo], max,
                h.steps[hi]);
    }
    static const char *const header[] = { "STEP", "VALUE", "TIME" };
    if (table_add(&t, header) != 0) goto nomem;
    for (size_t i = 0; i < h.n; i++) {
        char s[24] = "-", v[32], tm[40];
        if (h.steps[i] >= 0) snprintf(s, sizeof s, "%lld", h.steps[i]);
        fmt_figure(v, sizeof v, h.values[i]);
        fmt_unix_local(tm, sizeof tm, h.times[i], true);
        const char *row[] = { s, v, tm };
        if (table_add(&t, row) != 0) goto nomem;
    }
    table_print(&t, out, 0, 1u << 0 | 1u << 1);
    goto done;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory showing '%s'", key);
done:
    table_release(&t);
    history_release(&h);
    return err->code;
}

/* ---------------------------------------------------------------- export */

/* `runs export`: every selected run as one row (CSV) or one flat object
 * (JSON): its fields, "params.KEY" for every param key any of them has and
 * "metrics.KEY" for every final figure -- the columns of MLflow's
 * search_runs() data frame, so notebooks read it as they are used to. */
static int runs_export(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    keyctx kc = { .rdb = rdb };
    mp_query_keys keys = { key_has, key_nearest, &kc };
    out_format fmt = o->format == F_DEFAULT ? F_CSV : o->format;
    mp_runs_table rt = { 0 };
    long long *ids = NULL;
    size_t n = 0, cap = 0;
    json_t *arr = NULL;
    int rc;
    sqlite3_stmt *st = select_runs(rdb, o, NULL, &keys, EXPORT_USAGE, err);
    if (!st) goto done;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 256;
            long long *v = mp_realloc(ids, mp_mul_size(cap, sizeof *v));
            if (!v) {
                sqlite3_finalize(st);
                goto nomem;
            }
            ids = v;
        }
        ids[n++] = sqlite3_column_int64(st, 0);
    }
    if (finish(rdb, st, rc, err) != MP_OK) goto done;
    if (mp_runs_table_load(rdb, ids, n, &rt, err) != MP_OK) goto done;

    if (fmt == F_CSV) {
        size_t n_cols = MP_RT_FIELDS + rt.n_params + rt.n_metrics;
        for (int k = 0; k < MP_RT_FIELDS; k++) csv_cell(out, rt_names[k], n_cols == (size_t)k + 1);
        char name[512];
        for (size_t j = 0; j < rt.n_params; j++) {
            snprintf(name, sizeof name, "params.%s", rt.param_keys[j]);
            csv_cell(out, name, rt.n_metrics == 0 && j + 1 == rt.n_params);
        }
        for (size_t j = 0; j < rt.n_metrics; j++) {
            snprintf(name, sizeof name, "metrics.%s", rt.metric_keys[j]);
            csv_cell(out, name, j + 1 == rt.n_metrics);
        }
        for (size_t i = 0; i < rt.n_runs; i++) {
            for (int k = 0; k < MP_RT_FIELDS; k++)
                csv_cell(out, rt.fields[i * MP_RT_FIELDS + k], n_cols == (size_t)k + 1);
            for (size_t j = 0; j < rt.n_params; j++)
                csv_cell(out, rt.params[i * rt.n_params + j],
                         rt.n_metrics == 0 && j + 1 == rt.n_params);
            for (size_t j = 0; j < rt.n_metrics; j++) {
                char v[32];
                fmt_exact(v, sizeof v, rt.metrics[i * rt.n_metrics + j]);
                csv_cell(out, v, j + 1 == rt.n_metrics);
            }
        }
        goto done;
    }
    if (!(arr = json_array())) goto nomem;
    for (size_t i = 0; i < rt.n_runs; i++) {
        json_t *obj = json_object();
        bool ok = obj != NULL;
        for (int k = 0; k < MP_RT_FIELDS && ok; k++)
            ok = jset(obj, rt_names[k], rt_field_json(&rt, i, k));
        char name[512];
        for (size_t j = 0; j < rt.n_params && ok; j++) {
            snprintf(name, sizeof name, "params.%s", rt.param_keys[j]);
            ok = jset(obj, name, jstr(rt.params[i * rt.n_params + j]));
        }
        for (size_t j = 0; j < rt.n_metrics && ok; j++) {
            snprintf(name, sizeof name, "metrics.%s", rt.metric_keys[j]);
            ok = jset(obj, name, jreal(rt.metrics[i * rt.n_metrics + j]));
        }
        if (!ok) {
            json_decref(obj);
            goto nomem;
        }
        if (!jpush(arr, obj)) goto nomem;
    }
    json_emit(arr, out, err);
    arr = NULL;
    goto done;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory exporting runs");
done:
    json_decref(arr);
    mp_runs_table_release(&rt);
    mp_free(ids);
    keyctx_release(&kc);
    return err->code;
}

/* ---------------------------------------------------------------- delete, gc */

/* `runs delete RUN...`: refuses a run that is still running (its process
 * would fail on its next write: the foreign keys reject rows of a run that
 * is gone) unless --force.  A lost run is no longer running: it goes.  The
 * ids are all resolved first, so a typo in the third deletes nothing. */
static int runs_delete(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    long long ids[MAX_POS] = { 0 };
    long long files = 0;
    size_t n = (size_t)o->n_pos, deleted = 0;
    for (size_t i = 0; i < n; i++)
        if (resolve_arg(rdb, o->pos[i], DELETE_USAGE, &ids[i], err) != MP_OK) return err->code;
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = prepare(rdb, "SELECT mp_status(status, host, pid, heartbeat), host,"
                                   " pid, (SELECT count(*) FROM artifacts WHERE run = ?1)"
                                   " FROM runs WHERE id = ?1", ids[i], err);
        if (!st) return err->code;
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW && strcmp(ctext(st, 0), "running") == 0 && !o->force) {
            MP_ERR(err, MP_E_USAGE, "run %lld is still running (pid %lld on '%s'): stop it "
                   "first, or delete it with --force", ids[i], sqlite3_column_int64(st, 2),
                   ctext(st, 1) ? ctext(st, 1) : "?");
            sqlite3_finalize(st);
            return err->code;
        }
        if (rc == SQLITE_ROW) files += sqlite3_column_int64(st, 3);
        if (finish(rdb, st, rc, err) != MP_OK) return err->code;
    }
    if (mp_rundb_delete_runs(rdb, ids, n, &deleted, err) != MP_OK) return err->code;
    fprintf(out, "deleted %zu run%s:", deleted, deleted == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++) fprintf(out, " %lld", ids[i]);
    fputc('\n', out);
    if (files > 0)
        fprintf(out, "%lld artifact file%s stay on disk until 'mlpipe runs gc' removes those "
                "no other run uses\n", files, files == 1 ? "" : "s");
    return MP_OK;
}

typedef struct gc_ctx {
    FILE *out;
    bool  dry_run;
} gc_ctx;

static void gc_print(void *ud, const mp_gc_file *f) {
    gc_ctx *g = ud;
    char size[40] = "";
    if (f->bytes >= 0) snprintf(size, sizeof size, "%lld bytes, ", f->bytes);
    switch (f->action) {
    case MP_GC_REMOVED:
        fprintf(g->out, "%s %s  (%s%s of deleted run %lld)\n", g->dry_run ? "would remove"
                : "removed", f->path, size, f->name, f->run);
        break;
    case MP_GC_IN_USE:
        fprintf(g->out, "kept %s  (a remaining run recorded the same path)\n", f->path);
        break;
    case MP_GC_MISSING:
        fprintf(g->out, "gone %s  (already removed)\n", f->path);
        break;
    case MP_GC_CHANGED:
        fprintf(g->out, "kept %s  (%s)\n", f->path, f->detail);
        break;
    default:
        fprintf(g->out, "failed %s: %s\n", f->path, f->detail ? f->detail : "error");
    }
}

/* `runs gc [--dry-run]`: see mp_rundb_gc.  One line per path, then a
 * summary; a file that could not be removed makes the command fail (exit
 * 1), so a CronJob that runs gc notices. */
static int runs_gc(mp_rundb *rdb, const runs_opts *o, FILE *out, mp_err *err) {
    gc_ctx g = { .out = out, .dry_run = o->dry_run };
    mp_gc_stats s;
    if (mp_rundb_gc(rdb, o->dry_run, gc_print, &g, &s, err) != MP_OK) return err->code;
    size_t removed = s.files[MP_GC_REMOVED];
    fprintf(out, "gc%s: %s %zu file%s (%lld bytes); kept %zu in use and %zu changed; %zu "
            "already gone; %zu failed; %lld orphan row%s %s\n", o->dry_run ? " --dry-run" : "",
            o->dry_run ? "would remove" : "removed", removed, removed == 1 ? "" : "s", s.bytes,
            s.files[MP_GC_IN_USE], s.files[MP_GC_CHANGED], s.files[MP_GC_MISSING],
            s.files[MP_GC_FAILED], s.orphan_rows, s.orphan_rows == 1 ? "" : "s",
            o->dry_run ? "to delete" : "deleted");
    if (s.files[MP_GC_FAILED] > 0)
        return MP_ERR(err, MP_E_IO, "gc: %zu file%s could not be removed (kept for the next gc)",
                      s.files[MP_GC_FAILED], s.files[MP_GC_FAILED] == 1 ? "" : "s");
    return MP_OK;
}

/* ---------------------------------------------------------------- entry */

int mp_runs_main(const char *db_path, int argc, char **argv, FILE *out, mp_err *err) {
    /* bare `mlpipe runs` lists, like `git stash` without a subcommand */
    const char *name = argc > 0 ? argv[0] : "list";
    size_t n_subs = sizeof subs / sizeof *subs;
    if (strcmp(name, "help") == 0 || strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        for (size_t i = 0; i < n_subs; i++)
            fprintf(out, "%s %s\n", i ? "      " : "usage:", subs[i].usage);
        return MP_OK;
    }
    const struct sub *sub = NULL;
    for (size_t i = 0; i < n_subs && !sub; i++)
        if (strcmp(name, subs[i].name) == 0) sub = &subs[i];
    if (!sub)
        return MP_ERR(err, MP_E_USAGE, "unknown subcommand 'runs %s' (usage: mlpipe runs "
                      "list|show|compare|best|metrics|export|delete|gc ...; see "
                      "'mlpipe runs help')", name);
    runs_opts o = { .limit = sub->fn == runs_list ? DEFAULT_LIMIT : 0 };
    if (parse_opts(sub, argc, argv, &o, err) != MP_OK) return err->code;

    mp_rundb *rdb;
    if (mp_rundb_open_existing(db_path, &rdb, err) != MP_OK) return err->code;
    sub->fn(rdb, &o, out, err);
    mp_rundb_close(rdb);
    if (err->code == MP_OK && (fflush(out) != 0 || ferror(out)))
        return MP_ERR(err, MP_E_IO, "cannot write the output: %s", strerror(errno));
    return err->code;
}
