/*
 * serve.h -- `mlpipe serve MODEL`: an HTTP prediction server for a model file.
 *
 * Endpoints (README "Serving" has examples):
 *   POST /predict, POST /invocations   rows in, {"predictions": [...]} out;
 *                                      ?proba=true adds "classes" and
 *                                      "probabilities"
 *   GET  /healthz                      {"status": "ok"}
 *   GET  /metadata                     the model file's names and provenance
 *   GET  /metrics                      Prometheus text: requests by path and
 *                                      status, latency histogram, rows
 * Request bodies are JSON in the shapes MLflow's scoring server accepts, or
 * CSV with a header row; see mp_serve_decode.  Errors are JSON
 * {"error": "..."} with 400 (bad rows: the message names the row and field),
 * 404, 405 (with Allow), 413 (body over max_body) or 415 (content type).
 */
#ifndef MP_SERVE_H
#define MP_SERVE_H

#include "mp.h"

typedef struct mp_serve_opts {
    const char *model_path;     /* .mlpm file */
    const char *host;           /* address to listen on (name or numeric); NULL = 127.0.0.1 */
    int         port;           /* 0..65535; 0 = any free port (logged at start) */
    int         threads;        /* request threads, 1..MP_SERVE_MAX_THREADS; 0 = 2 */
    size_t      max_body;       /* request body limit in bytes; 0 = 10 MiB */
} mp_serve_opts;

#define MP_SERVE_MAX_THREADS 64   /* OpenBLAS keeps a buffer per calling thread */
#define MP_SERVE_DEFAULT_PORT 8080  /* the CLI's --port when none is given */

/*
 * Loads the model and serves it until SIGINT or SIGTERM (mp_cancel_signal,
 * set by the handler runner/main.c installs); then stops accepting, lets the
 * requests in flight finish (for up to 20 s) and returns MP_OK.  Logs
 * "serving MODEL on http://HOST:PORT" at info once listening, and one access
 * line per request ("serve: method=POST path=/predict status=200 rows=1
 * us=85").  Errors: those of mp_model_load, MP_E_USAGE (bad option values),
 * MP_E_IO (cannot listen: the address and reason), MP_E_NOMEM.
 */
int mp_serve_main(const mp_serve_opts *o, mp_err *err);

/* ---------------------------------------------------------------- requests */

/* What a request body holds, from its Content-Type. */
typedef enum mp_body_kind {
    MP_BODY_UNSUPPORTED = 0,    /* anything else: 415 */
    MP_BODY_JSON = 1,           /* application/json */
    MP_BODY_CSV = 2             /* text/csv */
} mp_body_kind;

/* The kind named by a Content-Type header value: the media type compared
 * without case, parameters such as "; charset=utf-8" ignored.  NULL (no
 * header) is MP_BODY_UNSUPPORTED. */
mp_body_kind mp_serve_body_kind(const char *content_type);

/*
 * Decodes the rows of a request body into *X, raw feature values in the
 * order of features[0..n_features) (the model file's feature names).  X is
 * written only on success and owned by the caller (mp_matrix_release).
 *
 * JSON: an object with exactly one of
 *   {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}     rows in feature order, or
 *   {"instances": [{"sepal_length": 5.1, ...}]}    rows as objects by name
 *   {"inputs": <the same>}  or  {"inputs": {"sepal_length": [5.1, ...], ...}}
 *   {"dataframe_split": {"columns": [...], "data": [[...], ...]}}
 *                                                  (columns in any order;
 *                                                  "index" is ignored)
 *   {"dataframe_records": [{"sepal_length": 5.1, ...}, ...]}
 * Every feature must be given, as a JSON number; a name that is not a
 * feature is an error ("unknown column").  Numbers are parsed as doubles (by
 * jansson) and rounded to float: the CSV reader's float, except when the
 * decimal lies within 2^-53 of halfway between two floats (double rounding;
 * tests/unit/test_serve.c checks the usual case).
 *
 * CSV: a header row, then one row per sample, ',' separated, quoting as in
 * RFC 4180; columns are matched by name in any order and columns that are
 * not features (a target, an id) are ignored, as `mlpipe predict` does.
 * Cells are parsed exactly as the CSV loader parses them.
 *
 * Errors are MP_E_PARSE with the message for the client, rows counted from 1
 * (in CSV, the first row after the header):
 *   "malformed JSON at line 1, column 12 (position 11): ..."
 *   "row 3: expected 4 features, got 3"
 *   "row 2, field 'sepal_width': not a number"
 *   "row 1: unknown column 'colour'", "missing column 'petal_width'"
 * or MP_E_NOMEM.
 */
int mp_serve_decode(mp_body_kind kind, const char *body, size_t len, char *const *features,
                    size_t n_features, mp_matrix *X, mp_err *err);

/* A size in bytes: digits with an optional k, m or g suffix (KiB, MiB, GiB;
 * case ignored).  Writes *out and returns true when valid and > 0. */
bool mp_serve_parse_size(const char *s, size_t *out);

#endif /* MP_SERVE_H */
