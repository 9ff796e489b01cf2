/*
 * serve.c -- `mlpipe serve MODEL`: HTTP prediction server (libmicrohttpd).
 *
 * The file has three parts:
 *   1. decoding request bodies (JSON with jansson, CSV with libcsv) into a
 *      matrix of raw feature values, with errors that name the row and field;
 *   2. the metrics (atomic counters, rendered as Prometheus text);
 *   3. the server: routing, body reading with a size limit, responses,
 *      access logging and the graceful stop on SIGTERM.
 *
 * Threads: libmicrohttpd runs an epoll thread pool of --threads threads and
 * calls the handlers below on them.  The model file is loaded once and only
 * read afterwards: mp_model_file_scores applies the transforms to the
 * request's own matrix and the built-in models' predict functions allocate
 * their scratch per call, so requests need no lock.  (A plugin model or
 * transform must be as careful.)  OpenBLAS is limited to one thread per call
 * so that request threads do not queue on its pool.
 *
 * Predictions go through mp_model_file_scores and the text helpers of
 * runner/predict.c, exactly like `mlpipe predict`, so a row gives the same
 * answer on both paths.
 */
#include "serve.h"

#include <arpa/inet.h>
#include <assert.h>
#include <cblas.h>
#include <csv.h>                /* libcsv; "csv.h" below is runner/csv.h */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "artifact.h"
#include "csv.h"
#include "predict.h"

#define DEFAULT_HOST       "127.0.0.1"
#define DEFAULT_THREADS    2
#define DEFAULT_MAX_BODY   ((size_t)10 << 20)   /* 10 MiB */
#define DRAIN_SECONDS      20       /* how long SIGTERM waits for requests in flight */
#define IDLE_TIMEOUT       30       /* seconds before an idle connection is closed */
#define NAME_SHOWN         64       /* bytes of a client-given name quoted in an error */
#define BODY_FIRST         ((size_t)64 << 10)   /* first allocation for a request body */

/* ================================================================ 1. decoding */

mp_body_kind mp_serve_body_kind(const char *ct) {
    if (!ct) return MP_BODY_UNSUPPORTED;
    while (*ct == ' ' || *ct == '\t') ct++;
    size_t n = strcspn(ct, ";");
    while (n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t')) n--;
    if (n == 16 && strncasecmp(ct, "application/json", n) == 0) return MP_BODY_JSON;
    if (n == 8 && strncasecmp(ct, "text/csv", n) == 0) return MP_BODY_CSV;
    return MP_BODY_UNSUPPORTED;
}

bool mp_serve_parse_size(const char *s, size_t *out) {
    if (!s || !isdigit((unsigned char)*s)) return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno) return false;
    unsigned shift = 0;
    switch (tolower((unsigned char)*end)) {
    case 'k': shift = 10; end++; break;
    case 'm': shift = 20; end++; break;
    case 'g': shift = 30; end++; break;
    default: break;
    }
    if (*end != '\0' || v == 0 || v > (SIZE_MAX >> shift)) return false;
    *out = (size_t)(v << shift);
    return true;
}

/* A client-given name, cut to NAME_SHOWN bytes, for an error message.  The
 * message is JSON-escaped when sent, so any byte is safe here. */
static const char *shown(const char *s, size_t len, char buf[NAME_SHOWN + 4]) {
    size_t n = len < NAME_SHOWN ? len : NAME_SHOWN;
    memcpy(buf, s, n);
    strcpy(buf + n, len > n ? "..." : "");
    return buf;
}

/* What the decoders share: the model's feature names and the output. */
typedef struct decoder {
    char *const *names;     /* n feature names, model order */
    size_t       n;
    float       *X;         /* rows x n, row-major */
    size_t       rows;
    mp_err      *err;
} decoder;

static size_t feature_index(const decoder *d, const char *name, size_t len) {
    for (size_t j = 0; j < d->n; j++)
        if (strlen(d->names[j]) == len && memcmp(d->names[j], name, len) == 0) return j;
    return SIZE_MAX;
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Allocates X for rows x n (zeroed). */
static int alloc_rows(decoder *d, size_t rows) {
    d->X = mp_calloc(mp_mul_size(rows, d->n), sizeof *d->X);
    if (!d->X) return MP_ERR(d->err, MP_E_NOMEM, "out of memory for %zu rows", rows);
    d->rows = rows;
    return MP_OK;
}

/* X[row][col] := the number v. */
static int put_number(decoder *d, size_t row, size_t col, const json_t *v) {
    if (!json_is_number(v))
        return MP_ERR(d->err, MP_E_PARSE, "row %zu, field '%s': not a number", row + 1,
                      d->names[col]);
    float f = (float)json_number_value(v);
    if (!isfinite(f))
        return MP_ERR(d->err, MP_E_PARSE, "row %zu, field '%s': %g is out of range for a float",
                      row + 1, d->names[col], json_number_value(v));
    d->X[row * d->n + col] = f;
    return MP_OK;
}

/* A row given as an array of values in feature order. */
static int row_from_array(decoder *d, size_t row, const json_t *a) {
    if (json_array_size(a) != d->n)
        return MP_ERR(d->err, MP_E_PARSE, "row %zu: expected %zu features, got %zu", row + 1,
                      d->n, json_array_size(a));
    for (size_t j = 0; j < d->n; j++)
        if (put_number(d, row, j, json_array_get(a, j)) != MP_OK) return d->err->code;
    return MP_OK;
}

/* The first key of object o that is not a feature name (o has one). */
static int unknown_key(decoder *d, const char *what, const json_t *o) {
    const char *key;
    json_t *v;
    char buf[NAME_SHOWN + 4];
    json_object_foreach((json_t *)o, key, v) {
        if (feature_index(d, key, strlen(key)) == SIZE_MAX)
            return MP_ERR(d->err, MP_E_PARSE, "%sunknown column '%s'", what,
                          shown(key, strlen(key), buf));
    }
    assert(!"unknown_key: called on an object whose keys are all features");
    return MP_ERR(d->err, MP_E_PARSE, "%sunexpected columns", what);
}

/* A row given as an object {"feature": value}: every feature, nothing else. */
static int row_from_object(decoder *d, size_t row, const json_t *o) {
    char what[48];
    for (size_t j = 0; j < d->n; j++) {
        const json_t *v = json_object_get(o, d->names[j]);
        if (!v)
            return MP_ERR(d->err, MP_E_PARSE, "row %zu: missing feature '%s'", row + 1,
                          d->names[j]);
        if (put_number(d, row, j, v) != MP_OK) return d->err->code;
    }
    if (json_object_size(o) == d->n) return MP_OK;  /* n distinct feature keys found */
    snprintf(what, sizeof what, "row %zu: ", row + 1);
    return unknown_key(d, what, o);
}

/* "instances", "inputs" or "dataframe_records": an array of rows, each an
 * array or (objects_only or not) an object. */
static int decode_rows(decoder *d, const char *key, const json_t *rows, bool objects_only) {
    if (!json_is_array(rows))
        return MP_ERR(d->err, MP_E_PARSE, "'%s' must be an array of rows, not %s", key,
                      json_type_name(rows));
    size_t n_rows = json_array_size(rows);
    if (n_rows == 0) return MP_ERR(d->err, MP_E_PARSE, "'%s' holds no rows", key);
    if (alloc_rows(d, n_rows) != MP_OK) return d->err->code;
    for (size_t i = 0; i < n_rows; i++) {
        const json_t *r = json_array_get(rows, i);
        int rc;
        if (json_is_object(r)) rc = row_from_object(d, i, r);
        else if (json_is_array(r) && !objects_only) rc = row_from_array(d, i, r);
        else
            rc = MP_ERR(d->err, MP_E_PARSE, "row %zu: expected %s, got %s", i + 1,
                        objects_only ? "an object" : "an array or an object",
                        json_type_name(r));
        if (rc != MP_OK) return rc;
    }
    return MP_OK;
}

/* {"inputs": {"feature": [values...], ...}}: one array per column. */
static int decode_columns(decoder *d, const json_t *cols) {
    size_t n_rows = 0;
    for (size_t j = 0; j < d->n; j++) {
        const json_t *c = json_object_get(cols, d->names[j]);
        if (!c) return MP_ERR(d->err, MP_E_PARSE, "missing column '%s'", d->names[j]);
        if (!json_is_array(c))
            return MP_ERR(d->err, MP_E_PARSE, "column '%s' must be an array, not %s",
                          d->names[j], json_type_name(c));
        if (j == 0) n_rows = json_array_size(c);
        else if (json_array_size(c) != n_rows)
            return MP_ERR(d->err, MP_E_PARSE, "column '%s' has %zu values, column '%s' has %zu",
                          d->names[j], json_array_size(c), d->names[0], n_rows);
    }
    if (json_object_size(cols) != d->n) return unknown_key(d, "", cols);
    if (n_rows == 0) return MP_ERR(d->err, MP_E_PARSE, "'inputs' holds no rows");
    if (alloc_rows(d, n_rows) != MP_OK) return d->err->code;
    for (size_t j = 0; j < d->n; j++) {
        const json_t *c = json_object_get(cols, d->names[j]);
        for (size_t i = 0; i < n_rows; i++)
            if (put_number(d, i, j, json_array_get(c, i)) != MP_OK) return d->err->code;
    }
    return MP_OK;
}

/* {"dataframe_split": {"columns": [...], "data": [[...], ...]}}. */
static int decode_split(decoder *d, const json_t *df) {
    if (!json_is_object(df))
        return MP_ERR(d->err, MP_E_PARSE, "'dataframe_split' must be an object, not %s",
                      json_type_name(df));
    const char *key;
    json_t *v;
    char buf[NAME_SHOWN + 4];
    json_object_foreach((json_t *)df, key, v) {
        if (strcmp(key, "columns") != 0 && strcmp(key, "data") != 0 && strcmp(key, "index") != 0)
            return MP_ERR(d->err, MP_E_PARSE, "dataframe_split: unknown key '%s' (expected "
                          "columns, data and optionally index)", shown(key, strlen(key), buf));
    }
    const json_t *cols = json_object_get(df, "columns"), *data = json_object_get(df, "data");
    if (!json_is_array(cols) || !json_is_array(data))
        return MP_ERR(d->err, MP_E_PARSE, "dataframe_split needs arrays 'columns' and 'data'");

    /* pos[j] = the position of feature j in each data row */
    size_t n_cols = json_array_size(cols), *pos = mp_malloc(mp_mul_size(d->n + 1, sizeof *pos));
    if (!pos) return MP_ERR(d->err, MP_E_NOMEM, "out of memory decoding the request");
    for (size_t j = 0; j < d->n; j++) pos[j] = SIZE_MAX;
    for (size_t c = 0; c < n_cols && d->err->code == MP_OK; c++) {
        const json_t *name = json_array_get(cols, c);
        if (!json_is_string(name)) {
            MP_ERR(d->err, MP_E_PARSE, "dataframe_split: column %zu is %s, not a name", c + 1,
                   json_type_name(name));
            break;
        }
        const char *s = json_string_value(name);
        size_t len = json_string_length(name), j = feature_index(d, s, len);
        if (j == SIZE_MAX) MP_ERR(d->err, MP_E_PARSE, "unknown column '%s'", shown(s, len, buf));
        else if (pos[j] != SIZE_MAX) MP_ERR(d->err, MP_E_PARSE, "duplicate column '%s'", s);
        else pos[j] = c;
    }
    for (size_t j = 0; j < d->n && d->err->code == MP_OK; j++)
        if (pos[j] == SIZE_MAX) MP_ERR(d->err, MP_E_PARSE, "missing column '%s'", d->names[j]);
    size_t n_rows = json_array_size(data);
    if (d->err->code == MP_OK && n_rows == 0)
        MP_ERR(d->err, MP_E_PARSE, "'dataframe_split' holds no rows");
    if (d->err->code == MP_OK) alloc_rows(d, n_rows);
    /* All columns are features here (an unknown one failed above). */
    for (size_t i = 0; i < n_rows && d->err->code == MP_OK; i++) {
        const json_t *r = json_array_get(data, i);
        if (!json_is_array(r))
            MP_ERR(d->err, MP_E_PARSE, "row %zu: expected an array, got %s", i + 1,
                   json_type_name(r));
        else if (json_array_size(r) != n_cols)
            MP_ERR(d->err, MP_E_PARSE, "row %zu: expected %zu features, got %zu", i + 1, n_cols,
                   json_array_size(r));
        for (size_t j = 0; j < d->n && d->err->code == MP_OK; j++)
            put_number(d, i, j, json_array_get(r, pos[j]));
    }
    mp_free(pos);
    return d->err->code;
}

static const char *const json_keys[] = { "instances", "inputs", "dataframe_split",
                                         "dataframe_records" };
#define JSON_KEYS "instances, inputs, dataframe_split or dataframe_records"

static int decode_json(decoder *d, const char *body, size_t len) {
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        /* jansson leaves the message empty when its very first allocation
         * (the lexer's buffer) fails, and says "out of memory" for the rest */
        if (json_error_code(&je) == json_error_out_of_memory || je.text[0] == '\0')
            return MP_ERR(d->err, MP_E_NOMEM, "out of memory decoding the request");
        return MP_ERR(d->err, MP_E_PARSE, "malformed JSON at line %d, column %d (position %d): %s",
                      je.line, je.column, je.position, je.text);
    }
    const char *key, *found = NULL;
    json_t *v, *rows = NULL;
    char buf[NAME_SHOWN + 4];
    if (!json_is_object(root)) {
        MP_ERR(d->err, MP_E_PARSE, "the body must be a JSON object with one key of " JSON_KEYS
               ", not %s", json_type_name(root));
        goto done;
    }
    json_object_foreach(root, key, v) {
        size_t k = 0;
        while (k < sizeof json_keys / sizeof *json_keys && strcmp(key, json_keys[k]) != 0) k++;
        if (k == sizeof json_keys / sizeof *json_keys) {
            MP_ERR(d->err, MP_E_PARSE, "unknown key '%s' (expected " JSON_KEYS ")",
                   shown(key, strlen(key), buf));
            goto done;
        }
        if (found) {
            MP_ERR(d->err, MP_E_PARSE, "give only one of " JSON_KEYS " (got '%s' and '%s')",
                   found, key);
            goto done;
        }
        found = key;
        rows = v;
    }
    if (!found) MP_ERR(d->err, MP_E_PARSE, "the body has none of the keys " JSON_KEYS);
    else if (strcmp(found, "dataframe_split") == 0) decode_split(d, rows);
    else if (strcmp(found, "inputs") == 0 && json_is_object(rows)) decode_columns(d, rows);
    else decode_rows(d, found, rows, strcmp(found, "dataframe_records") == 0);
done:
    json_decref(root);
    return d->err->code;
}

/* ---------------------------------------------------------------- CSV */

/* libcsv callback state for a CSV body. */
typedef struct csv_dec {
    decoder  *d;
    bool      in_header;
    size_t    n_hdr;        /* header fields */
    size_t   *feat;         /* n_hdr: the feature of each column, or SIZE_MAX (ignored) */
    size_t    cap_hdr;
    bool     *seen;         /* d->n: feature found in the header */
    size_t    field;        /* fields so far in the current record */
    size_t    rows;         /* data rows completed */
    size_t    cap_rows;     /* rows X has room for */
    bool      failed;
} csv_dec;

static void csv_fail_nomem(csv_dec *c) {
    MP_ERR(c->d->err, MP_E_NOMEM, "out of memory decoding the request");
    c->failed = true;
}

static void trim_blanks(const char **s, size_t *len) {
    while (*len && (**s == ' ' || **s == '\t')) (*s)++, (*len)--;
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) (*len)--;
}

static void csv_header_cell(csv_dec *c, const char *s, size_t len) {
    decoder *d = c->d;
    if (c->n_hdr == c->cap_hdr) {
        size_t cap = c->cap_hdr ? 2 * c->cap_hdr : 16;
        size_t *f = mp_realloc(c->feat, mp_mul_size(cap, sizeof *f));
        if (!f) return csv_fail_nomem(c);
        c->feat = f;
        c->cap_hdr = cap;
    }
    trim_blanks(&s, &len);
    size_t j = feature_index(d, s, len);
    if (j != SIZE_MAX && c->seen[j]) {
        MP_ERR(d->err, MP_E_PARSE, "duplicate column '%s'", d->names[j]);
        c->failed = true;
        return;
    }
    if (j != SIZE_MAX) c->seen[j] = true;
    c->feat[c->n_hdr++] = j;
}

static void csv_on_field(void *cell, size_t len, void *data) {
    csv_dec *c = data;
    decoder *d = c->d;
    if (c->failed) return;
    const char *s = cell ? cell : "";
    size_t col = c->field++;
    if (c->in_header) return csv_header_cell(c, s, len);
    if (col == 0 && c->rows == c->cap_rows) {       /* room for this row */
        size_t cap = c->cap_rows ? 2 * c->cap_rows : 64;
        float *x = mp_realloc(d->X, mp_mul_size(mp_mul_size(cap, d->n), sizeof *x));
        if (!x) return csv_fail_nomem(c);
        d->X = x;
        c->cap_rows = cap;
    }
    if (col >= c->n_hdr || c->feat[col] == SIZE_MAX) return;   /* ragged: at row end */
    size_t j = c->feat[col];
    float *dst = d->X + c->rows * d->n + j;
    trim_blanks(&s, &len);
    if (len > 0 && mp_csv_parse_float(s, len, dst) && isfinite(*dst)) return;
    MP_ERR(d->err, MP_E_PARSE, "row %zu, field '%s': %s", c->rows + 1, d->names[j],
           len ? "not a number" : "missing value");
    c->failed = true;
}

static void csv_on_row(int term, void *data) {
    csv_dec *c = data;
    decoder *d = c->d;
    (void)term;
    size_t n = c->field;
    c->field = 0;
    if (c->failed || n == 0) return;
    if (c->in_header) {
        c->in_header = false;
        for (size_t j = 0; j < d->n; j++)
            if (!c->seen[j]) {
                MP_ERR(d->err, MP_E_PARSE, "missing column '%s'", d->names[j]);
                c->failed = true;
                return;
            }
        return;
    }
    if (n != c->n_hdr) {
        MP_ERR(d->err, MP_E_PARSE, "row %zu: expected %zu fields (as the header), got %zu",
               c->rows + 1, c->n_hdr, n);
        c->failed = true;
        return;
    }
    c->rows++;
}

static int decode_csv(decoder *d, const char *body, size_t len) {
    csv_dec c = { .d = d, .in_header = true };
    struct csv_parser p;
    if (len >= 3 && memcmp(body, "\xEF\xBB\xBF", 3) == 0) {     /* a UTF-8 byte order mark */
        body += 3;
        len -= 3;
    }
    c.seen = mp_calloc(d->n ? d->n : 1, sizeof *c.seen);
    if (!c.seen) return MP_ERR(d->err, MP_E_NOMEM, "out of memory decoding the request");
    csv_init(&p, 0);
    csv_set_realloc_func(&p, mp_realloc);
    csv_set_free_func(&p, mp_free);
    if (csv_parse(&p, body, len, csv_on_field, csv_on_row, &c) != len && !c.failed) {
        if (csv_error(&p) == CSV_ENOMEM) csv_fail_nomem(&c);
        else MP_ERR(d->err, MP_E_PARSE, "malformed CSV: %s", csv_strerror(csv_error(&p)));
        c.failed = true;
    }
    /* End the last record with a newline of our own, as runner/csv.c does:
     * harmless after a complete record, and an open quote then shows. */
    if (!c.failed) csv_parse(&p, "\n", 1, csv_on_field, csv_on_row, &c);
    if (!c.failed && p.quoted) {
        MP_ERR(d->err, MP_E_PARSE, "row %zu: unterminated quoted field", c.rows + 1);
        c.failed = true;
    }
    if (!c.failed) csv_fini(&p, csv_on_field, csv_on_row, &c);
    csv_free(&p);
    if (!c.failed && c.in_header) MP_ERR(d->err, MP_E_PARSE, "empty CSV body (no header row)");
    else if (!c.failed && c.rows == 0) MP_ERR(d->err, MP_E_PARSE, "no rows after the CSV header");
    mp_free(c.feat);
    mp_free(c.seen);
    d->rows = c.rows;
    return d->err->code;
}

int mp_serve_decode(mp_body_kind kind, const char *body, size_t len, char *const *features,
                    size_t n_features, mp_matrix *X, mp_err *err) {
    decoder d = { .names = features, .n = n_features, .err = err };
    if (len == 0) return MP_ERR(err, MP_E_PARSE, "empty request body");
    if (n_features == 0) return MP_ERR(err, MP_E_PARSE, "the model takes no features");
    if (kind == MP_BODY_JSON) decode_json(&d, body, len);
    else if (kind == MP_BODY_CSV) decode_csv(&d, body, len);
    else MP_ERR(err, MP_E_PARSE, "unsupported content type");
    if (err->code != MP_OK) {
        mp_free(d.X);
        return err->code;
    }
    X->data = d.X;
    X->n_rows = d.rows;
    X->n_cols = n_features;
    return MP_OK;
}

/* ================================================================ 2. metrics */

/* Paths are a fixed set so the metric labels stay bounded: anything else is
 * counted as "other". */
enum { R_PREDICT, R_INVOCATIONS, R_HEALTHZ, R_METADATA, R_METRICS, R_OTHER, R_COUNT };
static const char *const route_paths[] = { "/predict", "/invocations", "/healthz", "/metadata",
                                           "/metrics", "other" };
_Static_assert(sizeof route_paths / sizeof *route_paths == R_COUNT, "route_paths");

/* The statuses this server sends; 0 = the client left before a response. */
static const unsigned statuses[] = { 0, 200, 400, 404, 405, 413, 415, 500 };
#define N_STATUS (sizeof statuses / sizeof *statuses)

/* Latency bucket bounds in microseconds (Prometheus "le", in seconds). */
static const unsigned long long bucket_us[] = { 100, 250, 500, 1000, 2500, 5000, 10000, 25000,
                                                50000, 100000, 250000, 500000, 1000000,
                                                2500000, 5000000, 10000000 };
#define N_BUCKET (sizeof bucket_us / sizeof *bucket_us)

/* Counters shared by the request threads: relaxed atomics, since each is an
 * independent tally (a scrape may see one request counted in the total but
 * not yet in its bucket, which Prometheus tolerates). */
typedef struct metrics {
    atomic_ullong requests[R_COUNT][N_STATUS];
    atomic_ullong bucket[R_COUNT][N_BUCKET + 1];    /* not cumulative; last = +Inf */
    atomic_ullong sum_us[R_COUNT];
    atomic_ullong rows;                             /* rows predicted */
    atomic_int    in_flight;                        /* requests begun, not completed */
} metrics;

static void metrics_record(metrics *m, int route, unsigned status, unsigned long long us) {
    size_t s = 0;
    while (s < N_STATUS && statuses[s] != status) s++;
    if (s == N_STATUS) s = 0;       /* unknown: cannot happen, count as "no response" */
    size_t b = 0;
    while (b < N_BUCKET && us > bucket_us[b]) b++;
    atomic_fetch_add_explicit(&m->requests[route][s], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->bucket[route][b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->sum_us[route], us, memory_order_relaxed);
}

/* The Prometheus text exposition format, version 0.0.4. */
static void metrics_render(metrics *m, const mp_model_file *mf, mp_obuf *b) {
    char line[256];
#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)
    mp_obuf_puts(b, "# HELP mlpipe_requests_total HTTP requests by path and status.\n"
                    "# TYPE mlpipe_requests_total counter\n");
    for (int r = 0; r < R_COUNT; r++)
        for (size_t s = 0; s < N_STATUS; s++) {
            unsigned long long n = LOAD(m->requests[r][s]);
            if (n == 0) continue;
            snprintf(line, sizeof line, "mlpipe_requests_total{path=\"%s\",status=\"%u\"} %llu\n",
                     route_paths[r], statuses[s], n);
            mp_obuf_puts(b, line);
        }
    mp_obuf_puts(b, "# HELP mlpipe_request_duration_seconds Time from the request headers to "
                    "the end of the response.\n"
                    "# TYPE mlpipe_request_duration_seconds histogram\n");
    for (int r = 0; r < R_COUNT; r++) {
        unsigned long long cum = 0;
        for (size_t k = 0; k <= N_BUCKET; k++) cum += LOAD(m->bucket[r][k]);
        if (cum == 0) continue;
        unsigned long long total = cum;
        cum = 0;
        for (size_t k = 0; k <= N_BUCKET; k++) {
            cum += LOAD(m->bucket[r][k]);
            char le[32];
            if (k < N_BUCKET) snprintf(le, sizeof le, "%g", (double)bucket_us[k] / 1e6);
            else snprintf(le, sizeof le, "+Inf");
            snprintf(line, sizeof line,
                     "mlpipe_request_duration_seconds_bucket{path=\"%s\",le=\"%s\"} %llu\n",
                     route_paths[r], le, k < N_BUCKET ? cum : total);
            mp_obuf_puts(b, line);
        }
        snprintf(line, sizeof line, "mlpipe_request_duration_seconds_sum{path=\"%s\"} %.6f\n"
                 "mlpipe_request_duration_seconds_count{path=\"%s\"} %llu\n", route_paths[r],
                 (double)LOAD(m->sum_us[r]) / 1e6, route_paths[r], total);
        mp_obuf_puts(b, line);
    }
    snprintf(line, sizeof line, "# HELP mlpipe_rows_predicted_total Rows predicted.\n"
             "# TYPE mlpipe_rows_predicted_total counter\nmlpipe_rows_predicted_total %llu\n",
             LOAD(m->rows));
    mp_obuf_puts(b, line);
    snprintf(line, sizeof line, "# HELP mlpipe_requests_in_flight Requests being served.\n"
             "# TYPE mlpipe_requests_in_flight gauge\nmlpipe_requests_in_flight %d\n",
             atomic_load(&m->in_flight));
    mp_obuf_puts(b, line);
    /* algorithm names come from the registry and the digest is hex: no escaping needed */
    snprintf(line, sizeof line, "# HELP mlpipe_model_info The model being served.\n"
             "# TYPE mlpipe_model_info gauge\n"
             "mlpipe_model_info{algorithm=\"%s\",sha256=\"%s\"} 1\n", mf->algorithm, mf->sha256);
    mp_obuf_puts(b, line);
#undef LOAD
}

/* ================================================================ 3. server */

typedef struct server {
    const mp_model_file *mf;
    const char  *model_path;
    size_t       max_body;
    char       **names_json;    /* class names as JSON strings, or NULL */
    char        *metadata;      /* the GET /metadata body, built once */
    size_t       metadata_len;
    metrics      m;
    atomic_bool  draining;      /* SIGTERM arrived: ask clients to close */
    atomic_bool  starting;      /* keep libmicrohttpd's messages for the error */
    char         start_msg[256];
} server;

/* One HTTP request, from its headers to the end of its response. */
typedef struct request {
    double  t0;             /* mp_now() when the headers were in */
    int     route;          /* R_* */
    char    method[12];     /* for the access log */
    char    path[96];       /* the URL path, control bytes and blanks as '?' */
    mp_body_kind kind;      /* POST: what the body is */
    char   *body;           /* bytes read so far (POST) */
    size_t  len, cap;
    bool    too_large;      /* the body passed max_body: discard the rest */
    bool    nomem;          /* the body could not be stored: discard the rest */
    unsigned status;        /* sent, or 0 */
    size_t  rows;           /* rows predicted */
} request;

/* Sends status with body (taken over: freed by libmicrohttpd with mp_free)
 * and records the status for the access log and metrics. */
static enum MHD_Result reply(server *s, struct MHD_Connection *c, request *rq, unsigned status,
                             char *body, size_t len, const char *type, const char *allow) {
    static const char oom[] = "{\"error\": \"out of memory\"}\n";
    struct MHD_Response *resp = NULL;
    if (body) {
        resp = MHD_create_response_from_buffer_with_free_callback(len, body, mp_free);
        if (!resp) mp_free(body);
    }
    if (!resp) {    /* no body (out of memory) or no response object: try a static one */
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        type = "application/json";
        allow = NULL;
        resp = MHD_create_response_from_buffer(sizeof oom - 1, (void *)oom,
                                               MHD_RESPMEM_PERSISTENT);
        if (!resp) return MHD_NO;   /* libmicrohttpd closes the connection */
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (allow) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (atomic_load(&s->draining))  /* stopping: clients should not reuse the connection */
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result ret = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES) rq->status = status;
    return ret;
}

/* {"error": "<message>"} with status. */
__attribute__((format(printf, 6, 7)))
static enum MHD_Result reply_error(server *s, struct MHD_Connection *c, request *rq,
                                   unsigned status, const char *allow, const char *fmt, ...) {
    char msg[sizeof ((mp_err *)0)->msg + 64];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    mp_obuf b;
    mp_obuf_init(&b, NULL);
    mp_obuf_puts(&b, "{\"error\": ");
    mp_obuf_json_string(&b, msg, strlen(msg));
    mp_obuf_puts(&b, "}\n");
    size_t len;
    char *body = mp_obuf_take(&b, &len);
    return reply(s, c, rq, status, body, len, "application/json", allow);
}

/* The JSON body for a request's predictions. */
static char *predictions_json(const server *s, const mp_matrix *scores, bool proba, size_t *len) {
    const mp_model_file *mf = s->mf;
    const size_t k = scores->n_cols;
    mp_obuf b;
    mp_obuf_init(&b, NULL);
    mp_obuf_puts(&b, "{\"predictions\": [");
    for (size_t i = 0; i < scores->n_rows; i++) {
        if (i) mp_obuf_put(&b, ", ", 2);
        mp_predict_put_json(mf, s->names_json, scores->data + i * k, &b);
    }
    mp_obuf_putc(&b, ']');
    if (proba) {
        mp_obuf_puts(&b, ", \"classes\": [");
        for (size_t c = 0; c < mf->n_classes; c++) {
            if (c) mp_obuf_put(&b, ", ", 2);
            mp_obuf_puts(&b, s->names_json[c]);
        }
        mp_obuf_puts(&b, "], \"probabilities\": [");
        for (size_t i = 0; i < scores->n_rows; i++) {
            mp_obuf_puts(&b, i ? ", [" : "[");
            for (size_t j = 0; j < k; j++) {
                if (j) mp_obuf_put(&b, ", ", 2);
                mp_obuf_float(&b, scores->data[i * k + j], true);
            }
            mp_obuf_putc(&b, ']');
        }
        mp_obuf_putc(&b, ']');
    }
    mp_obuf_puts(&b, "}\n");
    return mp_obuf_take(&b, len);
}

/* POST /predict and /invocations once the whole body is in. */
static enum MHD_Result handle_predict(server *s, struct MHD_Connection *c, request *rq) {
    const mp_model_file *mf = s->mf;
    bool proba = false;
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "proba");
    if (q) {
        if (strcmp(q, "true") == 0 || strcmp(q, "1") == 0) proba = true;
        else if (strcmp(q, "false") != 0 && strcmp(q, "0") != 0)
            return reply_error(s, c, rq, MHD_HTTP_BAD_REQUEST, NULL,
                               "proba must be true or false, not '%.64s'", q);
    }
    if (proba && mf->model->task == MP_TASK_CLUSTERING)
        return reply_error(s, c, rq, MHD_HTTP_BAD_REQUEST, NULL,
                           "proba=true: this model (%s) is a clustering model: it predicts "
                           "cluster ids, not class probabilities", mf->algorithm);
    if (proba && !(mf->model->task == MP_TASK_CLASSIFICATION && mf->model->has_proba &&
                   s->names_json))
        return reply_error(s, c, rq, MHD_HTTP_BAD_REQUEST, NULL,
                           "proba=true: this model (%s) does not give class probabilities",
                           mf->algorithm);

    mp_matrix X = { 0 }, scores = { 0 };
    mp_err err = { 0 };
    enum MHD_Result ret;
    if (mp_serve_decode(rq->kind, rq->body, rq->len, mf->feature_names, mf->n_features, &X,
                        &err) != MP_OK ||
        mp_model_file_scores(mf, &X, &scores, &err) != MP_OK) {
        ret = reply_error(s, c, rq, err.code == MP_E_PARSE ? MHD_HTTP_BAD_REQUEST
                          : MHD_HTTP_INTERNAL_SERVER_ERROR, NULL, "%s", err.msg);
    } else {
        size_t len;
        char *body = predictions_json(s, &scores, proba, &len);
        rq->rows = scores.n_rows;
        ret = reply(s, c, rq, MHD_HTTP_OK, body, len, "application/json", NULL);
        if (rq->status == MHD_HTTP_OK)
            atomic_fetch_add_explicit(&s->m.rows, scores.n_rows, memory_order_relaxed);
    }
    mp_matrix_release(&X);
    mp_matrix_release(&scores);
    return ret;
}

/* GET /healthz, /metadata, /metrics. */
static enum MHD_Result handle_get(server *s, struct MHD_Connection *c, request *rq) {
    mp_obuf b;
    size_t len;
    mp_obuf_init(&b, NULL);
    switch (rq->route) {
    case R_HEALTHZ:
        mp_obuf_puts(&b, "{\"status\": \"ok\"}\n");
        break;
    case R_METADATA:
        mp_obuf_put(&b, s->metadata, s->metadata_len);
        break;
    default:
        metrics_render(&s->m, s->mf, &b);
        break;
    }
    char *body = mp_obuf_take(&b, &len);
    return reply(s, c, rq, MHD_HTTP_OK, body, len, rq->route == R_METRICS ?
                 "text/plain; version=0.0.4; charset=utf-8" : "application/json", NULL);
}

/* First call for a request (headers in, no body yet): route it.  Errors are
 * answered at once, so a refused body is never read (libmicrohttpd then
 * closes the connection); a good request is answered on the last call, which
 * keeps the connection open for the next one. */
static enum MHD_Result begin(server *s, struct MHD_Connection *c, request *rq, const char *url,
                             const char *method) {
    int r = 0;
    while (r < R_OTHER && strcmp(url, route_paths[r]) != 0) r++;
    rq->route = r;
    if (r == R_OTHER)
        return reply_error(s, c, rq, MHD_HTTP_NOT_FOUND, NULL, "no such path '%s' (try POST "
                           "/predict, GET /healthz, /metadata or /metrics)", rq->path);
    bool is_post = strcmp(method, "POST") == 0;
    if (r == R_PREDICT || r == R_INVOCATIONS) {
        if (!is_post)
            return reply_error(s, c, rq, MHD_HTTP_METHOD_NOT_ALLOWED, "POST",
                               "%s takes POST, not %s", url, rq->method);
    } else {
        if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
            return reply_error(s, c, rq, MHD_HTTP_METHOD_NOT_ALLOWED, "GET, HEAD",
                               "%s takes GET, not %s", url, rq->method);
        return MHD_YES;     /* answered by handle_get on the last call */
    }
    const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_TYPE);
    if ((rq->kind = mp_serve_body_kind(ct)) == MP_BODY_UNSUPPORTED)
        return reply_error(s, c, rq, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, NULL,
                           "Content-Type must be application/json or text/csv, not '%.64s'",
                           ct ? ct : "(none)");
    /* A declared length over the limit is refused before reading any of it. */
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                 MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        unsigned long long n = strtoull(cl, NULL, 10);
        if (n > s->max_body)
            return reply_error(s, c, rq, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                               "request body of %llu bytes is over the limit of %zu bytes "
                               "(--max-body)", n, s->max_body);
        /* Room for the declared length, up to a first 64 KiB: a client that
         * announces a big body must send it before it costs memory. */
        size_t cap = n < BODY_FIRST ? (size_t)n : BODY_FIRST;
        if (cap > 0 && !(rq->body = mp_malloc(cap))) return MHD_NO;
        rq->cap = cap;
    }
    return MHD_YES;     /* read the body */
}

/* Appends an upload chunk to the body, or drops it once over the limit
 * (a chunked upload declares no length up front). */
static void take_chunk(server *s, request *rq, const char *data, size_t n) {
    if (rq->too_large || rq->nomem) return;
    if (n > s->max_body - rq->len) {
        rq->too_large = true;
        mp_free(rq->body);
        rq->body = NULL;
        rq->len = rq->cap = 0;
        return;
    }
    if (rq->cap - rq->len < n) {
        size_t cap = rq->cap ? rq->cap : 4096;
        while (cap - rq->len < n) cap = cap > s->max_body / 2 ? s->max_body : 2 * cap;
        char *b = mp_realloc(rq->body, cap);
        if (!b) {               /* answered with 500 once the upload ends */
            rq->nomem = true;
            mp_free(rq->body);
            rq->body = NULL;
            rq->len = rq->cap = 0;
            return;
        }
        rq->body = b;
        rq->cap = cap;
    }
    memcpy(rq->body + rq->len, data, n);
    rq->len += n;
}

/* Copies the URL path (already %-decoded) for logs: at most size - 1
 * bytes, printable ASCII only, other bytes as '?'.  Blanks would break the
 * key=value log line, and bytes that are not UTF-8 would make the JSON log
 * writer drop the message. */
static void copy_path(char *dst, size_t size, const char *url) {
    size_t i = 0;
    for (; url[i] && i + 1 < size; i++) {
        unsigned char ch = (unsigned char)url[i];
        dst[i] = ch <= 0x20 || ch >= 0x7f || ch == '"' ? '?' : (char)ch;
    }
    dst[i] = '\0';
}

/* libmicrohttpd's access handler: called once with the headers, once per
 * body chunk, and once more when the body is complete. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **req_cls) {
    server *s = cls;
    request *rq = *req_cls;
    (void)version;
    if (!rq) {
        if (!(rq = mp_calloc(1, sizeof *rq))) return MHD_NO;
        rq->t0 = mp_now();
        copy_path(rq->method, sizeof rq->method, method);
        copy_path(rq->path, sizeof rq->path, url);
        *req_cls = rq;
        atomic_fetch_add(&s->m.in_flight, 1);
        return begin(s, c, rq, url, method);
    }
    if (*upload_size) {
        if (rq->kind != MP_BODY_UNSUPPORTED) take_chunk(s, rq, upload, *upload_size);
        *upload_size = 0;   /* a GET's body is ignored */
        return MHD_YES;
    }
    if (rq->route != R_PREDICT && rq->route != R_INVOCATIONS) return handle_get(s, c, rq);
    if (rq->too_large)
        return reply_error(s, c, rq, MHD_HTTP_CONTENT_TOO_LARGE, NULL,
                           "request body is over the limit of %zu bytes (--max-body)",
                           s->max_body);
    if (rq->nomem)
        return reply_error(s, c, rq, MHD_HTTP_INTERNAL_SERVER_ERROR, NULL,
                           "out of memory reading the request body");
    return handle_predict(s, c, rq);
}

/* Called when a request ends (response sent, or the client left): metrics,
 * the access log line, and freeing the request. */
static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                         enum MHD_RequestTerminationCode toe) {
    server *s = cls;
    request *rq = *req_cls;
    (void)c;
    if (!rq) return;
    double sec = mp_now() - rq->t0;
    unsigned long long us = sec > 0 ? (unsigned long long)(sec * 1e6) : 0;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && rq->status == MHD_HTTP_OK)
        rq->status = 0;     /* the response did not reach the client */
    metrics_record(&s->m, rq->route, rq->status, us);
    mp_log(MP_LOG_INFO, "serve: method=%s path=%s status=%u rows=%zu us=%llu", rq->method,
           rq->path, rq->status, rq->rows, us);
    mp_free(rq->body);
    mp_free(rq);
    *req_cls = NULL;
    atomic_fetch_sub(&s->m.in_flight, 1);
}

/* libmicrohttpd's own messages: kept for the error while starting (it says
 * why a bind failed), otherwise logged at debug level. */
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    server *s = cls;
    char msg[256];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '.')) msg[--n] = '\0';
    if (atomic_load(&s->starting)) snprintf(s->start_msg, sizeof s->start_msg, "%s", msg);
    mp_log(MP_LOG_DEBUG, "serve: libmicrohttpd: %s", msg);
}

/* ---------------------------------------------------------------- start-up */

static const char *task_name(mp_task t) {
    switch (t) {
    case MP_TASK_CLASSIFICATION: return "classification";
    case MP_TASK_REGRESSION: return "regression";
    case MP_TASK_CLUSTERING: return "clustering";
    default: return "none";
    }
}

static void put_key(mp_obuf *b, const char *key, bool first) {
    if (!first) mp_obuf_put(b, ", ", 2);
    mp_obuf_json_string(b, key, strlen(key));
    mp_obuf_put(b, ": ", 2);
}

static void put_str(mp_obuf *b, const char *key, const char *v) {
    put_key(b, key, false);
    if (v) mp_obuf_json_string(b, v, strlen(v));
    else mp_obuf_puts(b, "null");
}

static void put_strs(mp_obuf *b, const char *key, char *const *v, size_t n) {
    put_key(b, key, false);
    if (!v) {
        mp_obuf_puts(b, "null");
        return;
    }
    mp_obuf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i) mp_obuf_put(b, ", ", 2);
        mp_obuf_json_string(b, v[i], strlen(v[i]));
    }
    mp_obuf_putc(b, ']');
}

/* The GET /metadata body.  Written with the same JSON encoder as the
 * predictions, which turns bytes that are not UTF-8 into U+FFFD. */
static int build_metadata(server *s, mp_err *err) {
    const mp_model_file *mf = s->mf;
    mp_obuf b;
    mp_obuf_init(&b, NULL);
    mp_obuf_putc(&b, '{');
    put_key(&b, "algorithm", true);
    mp_obuf_json_string(&b, mf->algorithm, strlen(mf->algorithm));
    put_str(&b, "task", task_name(mf->model->task));
    put_strs(&b, "features", mf->feature_names, mf->n_features);
    put_strs(&b, "classes", mf->class_names, mf->n_classes);
    put_str(&b, "target", mf->target_name);
    put_key(&b, "has_proba", false);
    mp_obuf_puts(&b, mf->model->has_proba ? "true" : "false");
    put_key(&b, "transforms", false);
    mp_obuf_putc(&b, '[');
    for (size_t i = 0; i < mf->n_transforms; i++) {
        if (i) mp_obuf_put(&b, ", ", 2);
        const char *t = mf->transforms[i].ops->name;
        mp_obuf_json_string(&b, t, strlen(t));
    }
    mp_obuf_putc(&b, ']');
    put_str(&b, "run_id", mf->run_id);
    put_str(&b, "pipeline", mf->pipeline);
    put_str(&b, "created", mf->created);
    put_str(&b, "sha256", mf->sha256);
    put_str(&b, "model_path", s->model_path);
    put_str(&b, "model_mlpipe_version", mf->mlpipe_version);
    put_str(&b, "mlpipe_version", MP_VERSION);
    mp_obuf_puts(&b, "}\n");
    if (!(s->metadata = mp_obuf_take(&b, &s->metadata_len)))
        return MP_ERR(err, MP_E_NOMEM, "out of memory building the metadata");
    return MP_OK;
}

/* Resolves host into *ss with port; *v6 tells which family. */
static int resolve(const char *host, int port, struct sockaddr_storage *ss, bool *v6,
                   mp_err *err) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0 || !res)
        return MP_ERR(err, MP_E_USAGE, "--host '%s': %s", host, gai_strerror(rc));
    memset(ss, 0, sizeof *ss);
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *v6 = res->ai_family == AF_INET6;
    if (*v6) ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    freeaddrinfo(res);
    return MP_OK;
}

static void sleep_ms(long ms) {
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int mp_serve_main(const mp_serve_opts *o, mp_err *err) {
    const char *host = o->host ? o->host : DEFAULT_HOST;
    int threads = o->threads ? o->threads : DEFAULT_THREADS;
    if (threads < 1 || threads > MP_SERVE_MAX_THREADS)
        return MP_ERR(err, MP_E_USAGE, "--threads must be 1 to %d, not %d",
                      MP_SERVE_MAX_THREADS, threads);
    if (o->port < 0 || o->port > 65535)
        return MP_ERR(err, MP_E_USAGE, "--port must be 0 to 65535, not %d", o->port);

    mp_model_file *mf = NULL;
    struct MHD_Daemon *d = NULL;
    server *s = mp_calloc(1, sizeof *s);
    if (!s) return MP_ERR(err, MP_E_NOMEM, "out of memory starting the server");
    s->max_body = o->max_body ? o->max_body : DEFAULT_MAX_BODY;
    s->model_path = o->model_path;
    if (mp_model_load(o->model_path, &mf, err) != MP_OK) goto done;
    s->mf = mf;
    if (mf->model->task == MP_TASK_CLASSIFICATION && mf->class_names &&
        mf->n_classes != mf->model->n_outputs) {
        MP_ERR(err, MP_E_PARSE, "'%s' has %zu class names for %zu model outputs", o->model_path,
               mf->n_classes, mf->model->n_outputs);
        goto done;
    }
    s->names_json = mp_predict_json_names(mf, err);
    if (err->code != MP_OK || build_metadata(s, err) != MP_OK) goto done;

    struct sockaddr_storage ss;
    bool v6 = false;
    if (resolve(host, o->port, &ss, &v6, err) != MP_OK) goto done;
    /* Requests are the parallelism: one BLAS thread each (see the top). */
    openblas_set_num_threads(1);
    json_object_seed(0);        /* jansson's hash seed, set once before threads exist */
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    atomic_store(&s->starting, true);
    d = MHD_start_daemon(flags, (uint16_t)o->port, NULL, NULL, on_request, s,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                         MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT,
                         MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                         MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, s,
                         MHD_OPTION_END);
    atomic_store(&s->starting, false);
    if (!d) {
        MP_ERR(err, MP_E_IO, "cannot listen on %s port %d: %s", host, o->port,
               s->start_msg[0] ? s->start_msg : "libmicrohttpd could not start");
        goto done;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = info ? info->port : (unsigned)o->port;
    mp_log(MP_LOG_INFO, "serve: %s (%s, %zu features), %d threads, max body %zu bytes",
           o->model_path, mf->algorithm, mf->n_features, threads, s->max_body);
    mp_log(MP_LOG_INFO, "serving %s on http://%s%s%s:%u", o->model_path, v6 ? "[" : "", host,
           v6 ? "]" : "", port);

    /* Wait for SIGINT/SIGTERM (runner/main.c's handler sets the flag; a
     * second signal exits at once). */
    while (!mp_cancel_signal) sleep_ms(50);
    atomic_store(&s->draining, true);
    int busy = atomic_load(&s->m.in_flight);
    mp_log(MP_LOG_INFO, "serve: %s: stopping; %d request%s in flight",
           mp_cancel_signal == 2 ? "SIGINT" : "SIGTERM", busy, busy == 1 ? "" : "s");
    MHD_socket lfd = MHD_quiesce_daemon(d);   /* stop accepting; connections go on */
    double deadline = mp_now() + DRAIN_SECONDS;
    while (atomic_load(&s->m.in_flight) > 0 && mp_now() < deadline) sleep_ms(10);
    if ((busy = atomic_load(&s->m.in_flight)) > 0)
        mp_log(MP_LOG_WARN, "serve: %d request%s still running after %d s; closing them", busy,
               busy == 1 ? "" : "s", DRAIN_SECONDS);
    MHD_stop_daemon(d);
    d = NULL;
    if (lfd != MHD_INVALID_SOCKET) close(lfd);
    mp_log(MP_LOG_INFO, "serve: stopped");
done:
    if (d) MHD_stop_daemon(d);
    mp_predict_names_free(s->names_json, mf ? mf->n_classes : 0);
    mp_free(s->metadata);
    mp_free(s);
    mp_model_file_free(mf);
    return err->code;
}
