/*
 * predict.h -- batch prediction from a model file, and the text of
 * predictions shared with the HTTP server (runner/serve.c).
 *
 * `mlpipe predict` and `mlpipe serve` turn the score rows of
 * mp_model_file_scores() into text through the same helpers below (the
 * argmax, the float formatter, the JSON string encoder), so one row gives the
 * same prediction, byte for byte, on both paths.
 *
 * What a score row means depends on the model's task:
 *   classification  n_classes scores (probabilities when has_proba); the
 *                   prediction is the class name of the largest (the first
 *                   on ties), or its index when the file has no names
 *   regression      one value, written like printf("%.9g")
 *   clustering      one cluster index, written as an integer
 */
#ifndef MP_PREDICT_H
#define MP_PREDICT_H

#include "mp.h"
#include "artifact.h"

#include <string.h>

/* Output formats of `mlpipe predict`.  Names: "csv", "jsonl". */
typedef enum mp_predict_format {
    MP_FORMAT_CSV = 0,      /* header "prediction[,p_<class>...]", one line per row */
    MP_FORMAT_JSONL = 1     /* one JSON object per row (see mp_predict_main) */
} mp_predict_format;

typedef struct mp_predict_opts {
    const char *model_path;     /* .mlpm file */
    const char *input_path;     /* CSV with a header row; "-" = stdin */
    const char *output_path;    /* NULL or "-" = stdout; else written atomically */
    char        delimiter;      /* input delimiter, 0 = ',' */
    bool        proba;          /* add the class probabilities */
    int         format;         /* mp_predict_format */
} mp_predict_opts;

/*
 * `mlpipe predict`: reads the CSV (columns matched by name, extra columns
 * ignored), scores it and writes one prediction per row:
 *   csv    "prediction" (+ ",p_<class>" per class with proba), then one line
 *          per row: the class name (CSV-quoted when needed), the value, or
 *          the cluster index (+ one probability per class)
 *   jsonl  {"prediction": "setosa", "probabilities": {"setosa": 0.97, ...}}
 *          per line, "probabilities" only with proba; values are numbers and
 *          cluster ids integers; a non-finite value is null
 * Probabilities are written like "%.9g" (they read back as the same float).
 * Errors: whatever loading the model or reading the CSV reports (bad rows are
 * named by file:line:col), MP_E_USAGE for proba on a model without
 * probabilities or an unknown format, MP_E_IO when the output cannot be
 * written (the output file is then left untouched).
 */
int mp_predict_main(const mp_predict_opts *o, mp_err *err);

/* "csv" / "jsonl" -> *out; false for anything else. */
bool mp_predict_parse_format(const char *name, int *out);

/* ---------------------------------------------------------------- output text */

/*
 * A byte buffer for output text.  With a FILE sink it flushes there whenever
 * it fills (batch predict: one fwrite per MP_OBUF_BLOCK bytes); without one
 * it grows in memory (an HTTP response body).  The first failure is kept in
 * err (MP_E_NOMEM or MP_E_IO, errno in err_no) and turns later appends into
 * no-ops, so callers write freely and check once at the end.
 */
#define MP_OBUF_BLOCK (1u << 20)

typedef struct mp_obuf {
    char  *data;        /* cap bytes, owned; NULL until the first append */
    size_t len;         /* bytes in data not yet flushed */
    size_t cap;
    FILE  *f;           /* sink (borrowed), or NULL = grow in memory */
    int    err;         /* MP_OK or the first failure */
    int    err_no;      /* errno of a failed write */
} mp_obuf;

/* An empty buffer writing to f (NULL = in memory).  Allocates nothing. */
void mp_obuf_init(mp_obuf *b, FILE *f);
/* Frees the buffer (unflushed bytes are dropped); leaves it empty. */
void mp_obuf_release(mp_obuf *b);
/* Writes the buffered bytes to the sink (no-op in memory); returns b->err. */
int  mp_obuf_flush(mp_obuf *b);
/* Makes room for n more bytes: flushes or grows.  False once b->err is set. */
bool mp_obuf_reserve(mp_obuf *b, size_t n);
/* Hands over the in-memory bytes (the caller frees them with mp_free) and
 * leaves b empty; *len gets their count.  NULL when nothing was written or
 * after a failure. */
char *mp_obuf_take(mp_obuf *b, size_t *len);

/* Appends n bytes.  Inline: it is the inner loop of batch predict. */
static inline void mp_obuf_put(mp_obuf *b, const void *s, size_t n) {
    if (b->cap - b->len < n && !mp_obuf_reserve(b, n)) return;
    memcpy(b->data + b->len, s, n);
    b->len += n;
}
static inline void mp_obuf_puts(mp_obuf *b, const char *s) { mp_obuf_put(b, s, strlen(s)); }
static inline void mp_obuf_putc(mp_obuf *b, char c) {
    if (b->len == b->cap && !mp_obuf_reserve(b, 1)) return;
    b->data[b->len++] = c;
}

/*
 * Writes v exactly as printf("%.9g", v) would (C locale) into out and
 * returns the length; out gets a NUL too and must hold MP_FLOAT_CHARS bytes.
 * Nine significant digits read back (strtof) as the same float.  Finite
 * values between 1e-32 and 1e9 in magnitude (almost every probability and
 * prediction) are formatted with exact integer arithmetic, ten times faster
 * than printf; the rest go through snprintf.
 */
#define MP_FLOAT_CHARS 24
size_t mp_format_float(float v, char *out);
/* Appends mp_format_float(v); as JSON, a non-finite value becomes null. */
void mp_obuf_float(mp_obuf *b, float v, bool json);
/* Appends a signed integer in decimal. */
void mp_obuf_long(mp_obuf *b, long long v);
/* Appends s[0..n) as a quoted JSON string: '"' and '\' escaped, control
 * bytes as \u00XX, and each byte that is not part of valid UTF-8 as \ufffd,
 * so the output is valid JSON whatever the input. */
void mp_obuf_json_string(mp_obuf *b, const char *s, size_t n);

/* Index of the largest of scores[0..n) (the first on ties; a NaN never
 * wins over a number). */
static inline size_t mp_predict_argmax(const float *scores, size_t n) {
    size_t best = 0;
    for (size_t j = 1; j < n; j++)
        if (scores[j] > scores[best] || scores[best] != scores[best]) best = j;
    return best;
}

/*
 * Appends the prediction for one score row (model file mf, row scores[0 ..
 * mf->model->n_outputs)) as a JSON value: the quoted class name, the number
 * (null when not finite), or the integer cluster index.  The JSON form of a
 * class name is looked up in names_json (mp_predict_json_names) when given.
 */
void mp_predict_put_json(const mp_model_file *mf, char *const *names_json, const float *scores,
                         mp_obuf *b);

/* The class names of mf pre-encoded as JSON strings (quotes included), so a
 * hot loop appends them with one memcpy.  NULL when mf has no class names
 * (and on NOMEM, with err set: check err->code).  Free with
 * mp_predict_names_free(v, mf->n_classes). */
char **mp_predict_json_names(const mp_model_file *mf, mp_err *err);
void   mp_predict_names_free(char **v, size_t n);

#endif /* MP_PREDICT_H */
