/*
 * load_sqlite.c -- `load: sqlite`: the rows of one SQL query become a dataset.
 *
 * The database is opened read-only (a pipeline must never change its input)
 * with a busy timeout, so it can be read while another process writes it in
 * WAL mode.  Every result column except the target and the excluded ones is
 * a feature and must be numeric: an INTEGER or REAL value, or TEXT that
 * parses completely as a finite number.  NULL is a missing value: an error
 * naming the row and column, or (missing: drop) the row is skipped.
 *
 * The target column follows the CSV loader's convention: when every value is
 * a number it is a regression target (a classifier later encodes it), else
 * the classes are the distinct texts sorted by strcmp and y is the index.
 * Since that is only known after the last row, the target's text is kept per
 * row until then.
 *
 * Row numbers in messages and in source_rows are 1-based positions in the
 * query's result, counting dropped rows too, so `LIMIT 1 OFFSET n-1` finds
 * the row a message names.
 */
#include "mp_stage.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CANCEL_EVERY 10000      /* rows between cancellation checks */
#define BUSY_TIMEOUT_MS 5000    /* wait this long for a writer's lock */

enum { MISSING_ERROR = 0, MISSING_DROP = 1 };

typedef struct sqlite_conf {
    char       *path;       /* database file; must exist */
    char       *query;      /* one SQL statement returning rows */
    char       *target;     /* target column name, or NULL for none */
    mp_str_list exclude;    /* result columns that are neither feature nor target */
    int         missing;    /* MISSING_ERROR or MISSING_DROP */
} sqlite_conf;

/* What is being built while the rows stream in; freed by reader_release. */
typedef struct reader {
    const sqlite_conf *c;
    sqlite3      *db;
    sqlite3_stmt *stmt;
    int     n_cols;         /* result columns */
    int     target_col;     /* result column of the target, or -1 */
    int    *feat_cols;      /* n_feat result-column indices of the features */
    size_t  n_feat;
    size_t  n_rows, cap;    /* rows kept; capacity of the arrays below */
    float  *X;              /* cap x n_feat, row-major */
    double *y;              /* cap target values while all are numeric */
    char  **ytext;          /* cap target texts (classes if any is non-numeric) */
    size_t *source;         /* cap 1-based result row numbers */
    bool    y_numeric;      /* every target value so far is a number */
} reader;

static void reader_release(reader *r) {
    if (r->ytext)
        for (size_t i = 0; i < r->n_rows; i++) mp_free(r->ytext[i]);
    mp_free(r->ytext);
    mp_free(r->feat_cols);
    mp_free(r->X);
    mp_free(r->y);
    mp_free(r->source);
    sqlite3_finalize(r->stmt);     /* both accept NULL */
    sqlite3_close(r->db);
}

/* ---------------------------------------------------------------- cells */

/* The value of a cell of storage class `type` (sqlite3_column_type, taken
 * before any other access: after a conversion its answer is undefined), or
 * false when it is not a finite number. */
static bool cell_number(sqlite3_stmt *s, int col, int type, double *out) {
    switch (type) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT:
        *out = sqlite3_column_double(s, col);
        return isfinite(*out);
    case SQLITE_TEXT: {
        /* strtod also takes "nan" and "inf"; neither is a usable feature. */
        const char *t = (const char *)sqlite3_column_text(s, col);
        char *end;
        if (!t) return false;
        while (*t == ' ' || *t == '\t') t++;
        if (!*t) return false;
        errno = 0;
        double v = strtod(t, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
        if (end == t || *end || !isfinite(v) || (errno == ERANGE && v != 0.0)) return false;
        *out = v;
        return true;
    }
    default:        /* BLOB */
        return false;
    }
}

/* The error for a cell that is not a number, quoting (the start of) it. */
static int bad_cell(reader *r, size_t row, int col, int type, mp_err *err) {
    const char *name = sqlite3_column_name(r->stmt, col);
    if (type == SQLITE_BLOB) {
        MP_ERR(err, MP_E_PARSE, "row %zu, column '%s': non-numeric value (a blob of %d bytes)",
               row, name, sqlite3_column_bytes(r->stmt, col));
    } else {
        const char *t = (const char *)sqlite3_column_text(r->stmt, col);
        MP_ERR(err, MP_E_PARSE, "row %zu, column '%s': non-numeric value '%.60s%s'", row, name,
               t ? t : "", sqlite3_column_bytes(r->stmt, col) > 60 ? "..." : "");
    }
    return mp_err_where(err, "%s: query row %zu", r->c->path, row);
}

/* ---------------------------------------------------------------- set-up */

static bool excluded(const sqlite_conf *c, const char *name) {
    for (size_t i = 0; i < c->exclude.n; i++)
        if (strcmp(c->exclude.v[i], name) == 0) return true;
    return false;
}

static int find_col(sqlite3_stmt *s, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(sqlite3_column_name(s, i), name) == 0) return i;
    return -1;
}

/* "a, b, c" (shortened) for messages about a column that is not there. */
static void col_list(sqlite3_stmt *s, int n, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && o < size; i++)
        o += (size_t)snprintf(buf + o, size - o, "%s%s", i ? ", " : "", sqlite3_column_name(s, i));
}

/* Opens the database read-only and prepares the query; sorts the result
 * columns into features and target. */
static int reader_open(reader *r, mp_err *err) {
    const sqlite_conf *c = r->c;
    struct stat sb;
    /* sqlite would only say "unable to open database file": say why. */
    if (stat(c->path, &sb) != 0) {
        MP_ERR(err, MP_E_IO, "cannot open '%s': %s", c->path, strerror(errno));
        return mp_err_where(err, "%s", c->path);
    }
    int rc = sqlite3_open_v2(c->path, &r->db, SQLITE_OPEN_READONLY, NULL);
    if (rc != SQLITE_OK) {
        if (rc == SQLITE_NOMEM)
            return MP_ERR(err, MP_E_NOMEM, "out of memory opening '%s'", c->path);
        MP_ERR(err, MP_E_IO, "cannot open '%s': %s", c->path,
               r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
        return mp_err_where(err, "%s", c->path);
    }
    sqlite3_busy_timeout(r->db, BUSY_TIMEOUT_MS);

    const char *tail = NULL;
    if (sqlite3_prepare_v2(r->db, c->query, -1, &r->stmt, &tail) != SQLITE_OK) {
        MP_ERR(err, MP_E_DATA, "bad query: %s", sqlite3_errmsg(r->db));
        return mp_err_where(err, "%s", c->path);
    }
    if (!r->stmt) {
        MP_ERR(err, MP_E_DATA, "the query is empty");
        return mp_err_where(err, "%s", c->path);
    }
    /* A second statement would be silently ignored; refuse it instead
     * (a trailing comment or ';' prepares to no statement and is fine). */
    sqlite3_stmt *extra = NULL;
    rc = sqlite3_prepare_v2(r->db, tail, -1, &extra, NULL);
    sqlite3_finalize(extra);
    if (rc != SQLITE_OK || extra) {
        MP_ERR(err, MP_E_DATA, "the query holds more than one SQL statement");
        return mp_err_where(err, "%s", c->path);
    }

    r->n_cols = sqlite3_column_count(r->stmt);
    if (r->n_cols == 0) {
        MP_ERR(err, MP_E_DATA, "the query returns no columns (not a SELECT?)");
        return mp_err_where(err, "%s", c->path);
    }
    /* Names are looked up by strcmp below; sqlite returns NULL only on OOM. */
    for (int i = 0; i < r->n_cols; i++)
        if (!sqlite3_column_name(r->stmt, i))
            return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", c->path);
    char cols[256];
    r->target_col = -1;
    if (c->target && (r->target_col = find_col(r->stmt, r->n_cols, c->target)) < 0) {
        col_list(r->stmt, r->n_cols, cols, sizeof cols);
        MP_ERR(err, MP_E_DATA, "target column '%s' is not in the query result (columns: %s)",
               c->target, cols);
        return mp_err_where(err, "%s", c->path);
    }
    /* An exclude name that matches nothing is most likely a typo. */
    for (size_t i = 0; i < c->exclude.n; i++) {
        if (find_col(r->stmt, r->n_cols, c->exclude.v[i]) < 0) {
            col_list(r->stmt, r->n_cols, cols, sizeof cols);
            MP_ERR(err, MP_E_DATA, "excluded column '%s' is not in the query result (columns: %s)",
                   c->exclude.v[i], cols);
            return mp_err_where(err, "%s", c->path);
        }
    }
    if (!(r->feat_cols = mp_malloc(mp_mul_size((size_t)r->n_cols, sizeof *r->feat_cols))))
        return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", c->path);
    for (int i = 0; i < r->n_cols; i++)
        if (i != r->target_col && !excluded(c, sqlite3_column_name(r->stmt, i)))
            r->feat_cols[r->n_feat++] = i;
    if (r->n_feat == 0) {
        MP_ERR(err, MP_E_DATA, "no feature columns left after the target and exclude");
        return mp_err_where(err, "%s", c->path);
    }
    return MP_OK;
}

/* ---------------------------------------------------------------- rows */

/* Makes room for one more row (capacity doubles). */
static int grow(reader *r, mp_err *err) {
    /* The row count is unknown until sqlite3_step says DONE (COUNT(*) would
     * run the query twice), so the arrays grow geometrically instead. */
    if (r->n_rows < r->cap) return MP_OK;
    size_t cap = r->cap ? r->cap * 2 : 256;
    size_t xbytes = mp_mul_size(cap, mp_mul_size(r->n_feat, sizeof(float)));
    /* Each array is replaced only once its realloc worked, so release() can
     * always free what the reader holds. */
    float *x = mp_realloc(r->X, xbytes);
    if (!x) goto nomem;
    r->X = x;
    size_t *s = mp_realloc(r->source, mp_mul_size(cap, sizeof *s));
    if (!s) goto nomem;
    r->source = s;
    if (r->target_col >= 0) {
        double *y = mp_realloc(r->y, mp_mul_size(cap, sizeof *y));
        if (!y) goto nomem;
        r->y = y;
        char **t = mp_realloc(r->ytext, mp_mul_size(cap, sizeof *t));
        if (!t) goto nomem;
        r->ytext = t;
    }
    r->cap = cap;
    return MP_OK;
nomem:
    return MP_ERR(err, MP_E_NOMEM, "out of memory after %zu rows of '%s'", r->n_rows, r->c->path);
}

/* A NULL cell in row `row`: an error, or true in *drop. */
static int missing_cell(reader *r, size_t row, int col, bool *drop, mp_err *err) {
    if (r->c->missing == MISSING_DROP) {
        *drop = true;
        return MP_OK;
    }
    MP_ERR(err, MP_E_PARSE, "row %zu, column '%s': missing value (NULL); set missing: drop to "
           "skip such rows", row, sqlite3_column_name(r->stmt, col));
    return mp_err_where(err, "%s: query row %zu", r->c->path, row);
}

/* Adds the current result row (number `row`) unless it is dropped. */
static int take_row(reader *r, size_t row, mp_err *err) {
    sqlite3_stmt *s = r->stmt;
    bool drop = false;
    /* The target is checked first: a row dropped for a NULL target costs
     * nothing, and its feature cells are never judged. */
    int ttype = r->target_col >= 0 ? sqlite3_column_type(s, r->target_col) : SQLITE_NULL;
    if (r->target_col >= 0 && ttype == SQLITE_NULL)
        if (missing_cell(r, row, r->target_col, &drop, err) != MP_OK || drop) return err->code;
    if (grow(r, err) != MP_OK) return err->code;
    float *x = r->X + r->n_rows * r->n_feat;
    for (size_t j = 0; j < r->n_feat; j++) {
        int col = r->feat_cols[j], type = sqlite3_column_type(s, col);
        double v;
        if (type == SQLITE_NULL) {
            if (missing_cell(r, row, col, &drop, err) != MP_OK || drop) return err->code;
            continue;
        }
        if (!cell_number(s, col, type, &v)) return bad_cell(r, row, col, type, err);
        x[j] = (float)v;
    }
    if (r->target_col >= 0) {
        /* Keep the number while every target is one, and the text (for classes). */
        double v;
        if (r->y_numeric && cell_number(s, r->target_col, ttype, &v)) r->y[r->n_rows] = v;
        else r->y_numeric = false;
        const char *t = (const char *)sqlite3_column_text(s, r->target_col);
        if (!t || !(r->ytext[r->n_rows] = mp_strdup(t)))
            return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", r->c->path);
    }
    r->source[r->n_rows++] = row;
    return MP_OK;
}

/* Steps through the whole result. */
static int read_rows(reader *r, mp_ctx *ctx, mp_err *err) {
    size_t row = 0;
    for (;;) {
        if (row % CANCEL_EVERY == 0 && mp_ctx_cancelled(ctx))
            return MP_ERR(err, MP_E_CANCELLED, "interrupted");
        int rc = sqlite3_step(r->stmt);
        if (rc == SQLITE_DONE) break;
        if (rc != SQLITE_ROW) {
            if (rc == SQLITE_NOMEM)
                return MP_ERR(err, MP_E_NOMEM, "out of memory running the query on '%s'",
                              r->c->path);
            MP_ERR(err, MP_E_DATA, "query failed after %zu rows: %s", row, sqlite3_errmsg(r->db));
            return mp_err_where(err, "%s", r->c->path);
        }
        if (take_row(r, ++row, err) != MP_OK) return err->code;
    }
    if (row == 0) {
        MP_ERR(err, MP_E_DATA, "the query returned no rows");
        return mp_err_where(err, "%s", r->c->path);
    }
    if (r->n_rows == 0) {
        MP_ERR(err, MP_E_DATA, "all %zu rows have a missing value (missing: drop)", row);
        return mp_err_where(err, "%s", r->c->path);
    }
    return MP_OK;
}

/* ---------------------------------------------------------------- result */

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Text target: classes = the distinct texts sorted by strcmp, y = index. */
static int encode_classes(reader *r, mp_dataset *ds, mp_err *err) {
    size_t n = r->n_rows;
    char **u = mp_malloc(mp_mul_size(n, sizeof *u));
    if (!u) return MP_ERR(err, MP_E_NOMEM, "out of memory encoding classes");
    memcpy(u, r->ytext, n * sizeof *u);
    qsort(u, n, sizeof *u, cmp_str);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || strcmp(u[i], u[k - 1]) != 0) u[k++] = u[i];
    /* The names are fresh copies: the row texts are freed with the reader. */
    char **names = mp_calloc(k, sizeof *names);
    if (!names) goto nomem;
    for (size_t i = 0; i < k; i++) {
        if (!(names[i] = mp_strdup(u[i]))) {
            for (size_t j = 0; j < i; j++) mp_free(names[j]);
            mp_free(names);
            goto nomem;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char **hit = bsearch(&r->ytext[i], u, k, sizeof *u, cmp_str);
        ds->y[i] = (double)(hit - u);
    }
    mp_free(u);
    ds->class_names = names;
    ds->n_classes = k;
    ds->task = MP_TASK_CLASSIFICATION;
    return MP_OK;
nomem:
    mp_free(u);
    return MP_ERR(err, MP_E_NOMEM, "out of memory encoding classes");
}

/* Moves the reader's arrays into a new dataset. */
static int build_dataset(reader *r, mp_dataset **out, mp_err *err) {
    /* X and source_rows are handed over, not copied (the spare capacity at
     * the end is at most the size of the data and freed with it). */
    size_t n = r->n_rows, d = r->n_feat;
    mp_dataset *ds = mp_dataset_new();
    if (!ds) goto nomem;
    if (!(ds->feature_names = mp_calloc(d, sizeof *ds->feature_names))) goto nomem;
    ds->X.n_cols = d;      /* so mp_dataset_free frees the names set so far */
    for (size_t j = 0; j < d; j++)
        if (!(ds->feature_names[j] = mp_strdup(sqlite3_column_name(r->stmt, r->feat_cols[j]))))
            goto nomem;
    if (r->target_col >= 0) {
        if (!(ds->target_name = mp_strdup(r->c->target))) goto nomem;
        if (r->y_numeric) {
            ds->y = r->y;
            r->y = NULL;
            ds->task = MP_TASK_REGRESSION;
        } else {
            if (!(ds->y = mp_malloc(mp_mul_size(n, sizeof *ds->y)))) goto nomem;
            if (encode_classes(r, ds, err) != MP_OK) goto fail;
        }
    }
    ds->X.data = r->X;
    ds->X.n_rows = n;
    ds->source_rows = r->source;
    r->X = NULL;
    r->source = NULL;
    *out = ds;
    return MP_OK;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory building the dataset from '%s'", r->c->path);
fail:
    mp_dataset_free(ds);
    return err->code;
}

/* ---------------------------------------------------------------- stage */

static int sqlite_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    reader r = { .c = st->conf, .y_numeric = true };
    mp_dataset *ds = NULL;
    if (reader_open(&r, err) != MP_OK || read_rows(&r, ctx, err) != MP_OK ||
        build_dataset(&r, &ds, err) != MP_OK)
        goto done;
    if (mp_ctx_metric(ctx, "data.rows", (double)ds->X.n_rows, -1, err) != MP_OK ||
        mp_ctx_metric(ctx, "data.features", (double)ds->X.n_cols, -1, err) != MP_OK)
        goto done;
    if (ds->task == MP_TASK_CLASSIFICATION)
        mp_log(MP_LOG_INFO, "sqlite: %zu rows x %zu features from '%s' (target '%s', %zu classes)",
               ds->X.n_rows, ds->X.n_cols, r.c->path, ds->target_name, ds->n_classes);
    else
        mp_log(MP_LOG_INFO, "sqlite: %zu rows x %zu features from '%s'%s%s%s", ds->X.n_rows,
               ds->X.n_cols, r.c->path, ds->target_name ? " (numeric target '" : "",
               ds->target_name ? ds->target_name : "", ds->target_name ? "')" : "");
    /* A table has no test split of its own: any earlier test set goes too. */
    mp_dataset_free(ctx->train);
    mp_dataset_free(ctx->test);
    ctx->train = ds;
    ctx->test = NULL;
    ds = NULL;
done:
    mp_dataset_free(ds);
    reader_release(&r);
    return err->code;
}

static const mp_param sqlite_params[] = {
    { "path", MP_P_STRING, offsetof(sqlite_conf, path), NULL, MP_PF_REQUIRED, 0, 0, NULL,
      "SQLite database file, opened read-only" },
    { "query", MP_P_STRING, offsetof(sqlite_conf, query), NULL, MP_PF_REQUIRED, 0, 0, NULL,
      "one SQL statement whose rows are the samples, e.g. SELECT * FROM iris" },
    { "target", MP_P_STRING, offsetof(sqlite_conf, target), NULL, 0, 0, 0, NULL,
      "result column holding the label or value to predict; omit for none" },
    { "exclude", MP_P_STR_LIST, offsetof(sqlite_conf, exclude), NULL, 0, 0, 0, NULL,
      "result columns to leave out of the features (ids, free text)" },
    { "missing", MP_P_ENUM, offsetof(sqlite_conf, missing), "error", 0, 0, 0, "error|drop",
      "what a NULL cell does: fail naming the row and column, or drop the row" },
    { 0 }
};

const mp_stage_ops mp_stage_load_sqlite = {
    .abi = MP_STAGE_ABI, .name = "sqlite", .kind = MP_KIND_LOAD,
    .doc = "load the rows of an SQL query on a SQLite database (numeric feature columns)",
    .params = sqlite_params, .conf_size = sizeof(sqlite_conf), .run = sqlite_run,
};
