/*
 * predict.c -- `mlpipe predict MODEL INPUT [-o OUT] [--proba] [--format F]`:
 * batch prediction, and the output text helpers that `mlpipe serve` shares.
 *
 * Reads raw rows the way the model's CSV was read (columns matched by name,
 * any order, extra columns such as the target ignored), applies the model
 * file's fitted transforms and model, and writes one prediction per row as
 * CSV or JSON lines.
 *
 * Writing is the part this file optimises: a million rows of three
 * probabilities are three million numbers, and printf("%.9g") costs about
 * 300 ns each.  So the text goes into one 1 MiB buffer that is written with
 * fwrite when full, class names are pre-encoded once and copied with memcpy,
 * and floats go through mp_format_float, which produces printf's exact "%.9g"
 * text with integer arithmetic.
 */
#include "predict.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include "csv.h"

/* ---------------------------------------------------------------- obuf */

void mp_obuf_init(mp_obuf *b, FILE *f) {
    memset(b, 0, sizeof *b);
    b->f = f;
}

void mp_obuf_release(mp_obuf *b) {
    mp_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

int mp_obuf_flush(mp_obuf *b) {
    if (b->err || !b->f || b->len == 0) return b->err;
    if (fwrite(b->data, 1, b->len, b->f) != b->len) {
        b->err = MP_E_IO;
        b->err_no = errno;
    }
    b->len = 0;
    return b->err;
}

bool mp_obuf_reserve(mp_obuf *b, size_t n) {
    if (b->err) return false;
    if (b->cap - b->len >= n) return true;
    if (b->f && b->len > 0 && mp_obuf_flush(b) != MP_OK) return false;
    if (b->cap - b->len >= n) return true;
    /* A file sink needs one block (or one item, if bigger); memory doubles. */
    size_t want = b->f ? MP_OBUF_BLOCK : (b->cap ? b->cap : 256);
    while (want - b->len < n) {
        if (want > SIZE_MAX / 2) {
            b->err = MP_E_NOMEM;
            return false;
        }
        want *= 2;
    }
    char *d = mp_realloc(b->data, want);
    if (!d) {
        b->err = MP_E_NOMEM;
        return false;
    }
    b->data = d;
    b->cap = want;
    return true;
}

char *mp_obuf_take(mp_obuf *b, size_t *len) {
    char *d = b->err ? NULL : b->data;
    *len = d ? b->len : 0;
    if (!d) mp_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}

void mp_obuf_long(mp_obuf *b, long long v) {
    char tmp[24], *p = tmp + sizeof tmp;
    /* Work on the unsigned magnitude so LLONG_MIN does not overflow. */
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do *--p = (char)('0' + u % 10); while ((u /= 10) != 0);
    if (v < 0) *--p = '-';
    mp_obuf_put(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* ---------------------------------------------------------------- floats */

/*
 * Exact "%.9g" without printf.  A finite float is v = M * 2^e2 with M < 2^24.
 * Nine significant digits are m = round(|v| * 10^k) for k = 8 - floor(log10
 * |v|), and for 0 <= k <= 40 that product is exact in 128-bit integers:
 * M * 5^k < 2^24 * 2^93, then a shift by e2 + k.  Rounding is half to even on
 * the exact value, as glibc's printf does in the default rounding mode, so
 * the text is printf's byte for byte (tests/unit/test_predict.c checks it on
 * millions of floats).  Outside that range (|v| >= 1e9 or below ~1e-32) the
 * function calls snprintf: such values are rare in predictions.
 */
__extension__ typedef unsigned __int128 u128;

static const uint64_t pow5[28] = {
    1u, 5u, 25u, 125u, 625u, 3125u, 15625u, 78125u, 390625u, 1953125u, 9765625u,
    48828125u, 244140625u, 1220703125u, 6103515625ull, 30517578125ull, 152587890625ull,
    762939453125ull, 3814697265625ull, 19073486328125ull, 95367431640625ull,
    476837158203125ull, 2384185791015625ull, 11920928955078125ull, 59604644775390625ull,
    298023223876953125ull, 1490116119384765625ull, 7450580596923828125ull
};

/* "00" "01" ... "99": two digits per lookup. */
static const char digit_pairs[201] =
    "0001020304050607080910111213141516171819"
    "2021222324252627282930313233343536373839"
    "4041424344454647484950515253545556575859"
    "6061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* round(M * 2^e2 * 10^k) for 0 <= k <= 40, into *out; false outside that
 * range or when the result would not fit (the caller falls back). */
static bool scale_round(uint32_t M, int e2, int k, uint64_t *out) {
    if (k < 0 || k > 40) return false;
    u128 n = (u128)M * pow5[k < 27 ? k : 27];
    if (k > 27) n *= pow5[k - 27];
    int s = e2 + k;                   /* n * 2^s is the exact scaled value */
    if (s >= 0) {
        if (s > 40) return false;     /* cannot happen below 1e9; be safe */
        *out = (uint64_t)(n << s);
        return true;
    }
    int q = -s;
    if (q >= 127) {                   /* far below one: rounds to 0 */
        *out = 0;
        return true;
    }
    u128 ip = n >> q, rem = n & (((u128)1 << q) - 1), half = (u128)1 << (q - 1);
    if (rem > half || (rem == half && (ip & 1))) ip++;
    *out = (uint64_t)ip;
    return true;
}

size_t mp_format_float(float v, char *out) {
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t bexp = bits >> 23 & 0xff, frac = bits & 0x7fffff;
    char *p = out;
    if (bexp == 0xff) goto slow;                        /* inf, nan */
    if (bits >> 31) *p++ = '-';
    if (bexp == 0 && frac == 0) {                       /* 0 and -0 */
        *p++ = '0';
        *p = '\0';
        return (size_t)(p - out);
    }
    uint32_t M = bexp ? frac | 1u << 23 : frac;
    int e2 = bexp ? (int)bexp - 150 : -149;             /* |v| = M * 2^e2 */
    /* floor(log10 |v|) is floor(lg2 * log10(2)) or one more; 1233/4096 is
     * log10(2) to within 1e-5, exact enough for |lg2| <= 150.  The division
     * rounds toward zero, so adjust negative results down to the floor. */
    int lg2 = e2 + 31 - __builtin_clz(M);
    int e10 = lg2 >= 0 ? lg2 * 1233 / 4096 : -((-lg2 * 1233 + 4095) / 4096);
    uint64_t m;
    if (!scale_round(M, e2, 8 - e10, &m)) goto slow;
    while (m >= 1000000000u) {          /* e10 was one low, or 9.99999999x rounded up */
        e10++;
        if (!scale_round(M, e2, 8 - e10, &m)) goto slow;
    }
    if (m < 100000000u) goto slow;      /* cannot happen; keep the output right anyway */

    /* The nine digits of m in 32-bit arithmetic, two at a time. */
    char d[9];
    uint32_t mm = (uint32_t)m, hi, lo;
    d[0] = (char)('0' + mm / 100000000u);
    mm %= 100000000u;
    hi = mm / 10000u;
    lo = mm % 10000u;
    memcpy(d + 1, digit_pairs + 2 * (hi / 100), 2);
    memcpy(d + 3, digit_pairs + 2 * (hi % 100), 2);
    memcpy(d + 5, digit_pairs + 2 * (lo / 100), 2);
    memcpy(d + 7, digit_pairs + 2 * (lo % 100), 2);
    int nd = 9;                         /* %g drops trailing zeros */
    while (nd > 1 && d[nd - 1] == '0') nd--;
    if (e10 >= 0) {                     /* 9 > e10 >= 0: ddd.ddd */
        memcpy(p, d, (size_t)e10 + 1);
        p += e10 + 1;
        if (nd > e10 + 1) {
            *p++ = '.';
            memcpy(p, d + e10 + 1, (size_t)(nd - e10 - 1));
            p += nd - e10 - 1;
        }
    } else if (e10 >= -4) {             /* 0.000ddd */
        *p++ = '0';
        *p++ = '.';
        for (int i = -1; i > e10; i--) *p++ = '0';
        memcpy(p, d, (size_t)nd);
        p += nd;
    } else {                            /* d.ddde-XX */
        *p++ = d[0];
        if (nd > 1) {
            *p++ = '.';
            memcpy(p, d + 1, (size_t)nd - 1);
            p += nd - 1;
        }
        *p++ = 'e';
        *p++ = '-';
        int x = -e10;                   /* 5 .. 45: two digits */
        *p++ = (char)('0' + x / 10);
        *p++ = (char)('0' + x % 10);
    }
    *p = '\0';
    return (size_t)(p - out);
slow:
    return (size_t)snprintf(out, MP_FLOAT_CHARS, "%.9g", (double)v);
}

void mp_obuf_float(mp_obuf *b, float v, bool json) {
    if (json && !isfinite(v)) {
        mp_obuf_put(b, "null", 4);
        return;
    }
    if (b->cap - b->len < MP_FLOAT_CHARS && !mp_obuf_reserve(b, MP_FLOAT_CHARS)) return;
    b->len += mp_format_float(v, b->data + b->len);
}

/* ---------------------------------------------------------------- JSON strings */

/* Length of the valid UTF-8 sequence at s[0..n) (s[0] >= 0x80), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf;      /* range of the second byte */
    if (c >= 0xc2 && c <= 0xdf) len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0;       /* no overlong forms */
        if (c == 0xed) hi = 0x9f;       /* no UTF-16 surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;       /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return len;
}

void mp_obuf_json_string(mp_obuf *b, const char *str, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    mp_obuf_putc(b, '"');
    size_t i = 0;
    while (i < n) {
        size_t run = i;                 /* copy plain ASCII in one go */
        while (run < n && s[run] >= 0x20 && s[run] < 0x80 && s[run] != '"' && s[run] != '\\')
            run++;
        mp_obuf_put(b, s + i, run - i);
        if ((i = run) >= n) break;
        unsigned c = s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = { '\\', (char)c };
            mp_obuf_put(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            mp_obuf_put(b, esc, 6);
            i++;
        } else {
            size_t len = utf8_len(s + i, n - i);
            if (len) mp_obuf_put(b, s + i, len);
            else mp_obuf_put(b, "\\ufffd", 6);
            i += len ? len : 1;
        }
    }
    mp_obuf_putc(b, '"');
}

/* ---------------------------------------------------------------- labels */

void mp_predict_names_free(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) mp_free(v[i]);
    mp_free(v);
}

/* The class names as encoded by enc (JSON or CSV), each NUL-terminated. */
static char **encode_names(const mp_model_file *mf, void (*enc)(mp_obuf *, const char *),
                           mp_err *err) {
    char **v = mp_calloc(mf->n_classes ? mf->n_classes : 1, sizeof *v);
    if (!v) goto nomem;
    for (size_t c = 0; c < mf->n_classes; c++) {
        mp_obuf b;
        mp_obuf_init(&b, NULL);
        enc(&b, mf->class_names[c]);
        mp_obuf_putc(&b, '\0');
        size_t len;
        if (!(v[c] = mp_obuf_take(&b, &len))) {
            mp_predict_names_free(v, c);
            goto nomem;
        }
    }
    return v;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory encoding class names");
    return NULL;
}

static void enc_json(mp_obuf *b, const char *s) { mp_obuf_json_string(b, s, strlen(s)); }

/* A CSV field: quoted when it holds a delimiter, quote or newline. */
static void enc_csv(mp_obuf *b, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        mp_obuf_puts(b, s);
        return;
    }
    mp_obuf_putc(b, '"');
    for (; *s; s++) {
        if (*s == '"') mp_obuf_putc(b, '"');
        mp_obuf_putc(b, *s);
    }
    mp_obuf_putc(b, '"');
}

char **mp_predict_json_names(const mp_model_file *mf, mp_err *err) {
    if (!mf->class_names || mf->n_classes == 0) return NULL;
    return encode_names(mf, enc_json, err);
}

/* A cluster index that converts to an integer safely (NaN fails). */
static bool is_index(float v) { return v >= -1e18f && v <= 1e18f; }

/* True when rows are predicted as class names (or indices without names). */
static bool is_classifier(const mp_model_file *mf) {
    return mf->model->task == MP_TASK_CLASSIFICATION;
}

void mp_predict_put_json(const mp_model_file *mf, char *const *names_json, const float *scores,
                         mp_obuf *b) {
    const mp_model *m = mf->model;
    if (is_classifier(mf)) {
        size_t best = mp_predict_argmax(scores, m->n_outputs);
        if (names_json && best < mf->n_classes) mp_obuf_puts(b, names_json[best]);
        else if (best < mf->n_classes) enc_json(b, mf->class_names[best]);
        else mp_obuf_long(b, (long long)best);
    } else if (m->task == MP_TASK_CLUSTERING && is_index(scores[0])) {
        mp_obuf_long(b, (long long)scores[0]);
    } else {
        mp_obuf_float(b, scores[0], true);
    }
}

/* ---------------------------------------------------------------- predict */

bool mp_predict_parse_format(const char *name, int *out) {
    if (strcmp(name, "csv") == 0) *out = MP_FORMAT_CSV;
    else if (strcmp(name, "jsonl") == 0) *out = MP_FORMAT_JSONL;
    else return false;
    return true;
}

/* Everything the row loop needs, prepared once. */
typedef struct writer {
    const mp_model_file *mf;
    int     format;
    bool    proba;
    char  **names;          /* class names encoded for the format, or NULL */
    size_t *name_len;
} writer;

static void write_header(const writer *w, mp_obuf *b) {
    if (w->format != MP_FORMAT_CSV) return;
    mp_obuf_puts(b, "prediction");
    for (size_t c = 0; w->proba && c < w->mf->n_classes; c++) {
        char head[512];
        snprintf(head, sizeof head, "p_%s", w->mf->class_names[c]);
        mp_obuf_putc(b, ',');
        enc_csv(b, head);
    }
    mp_obuf_putc(b, '\n');
}

/* One CSV line: the prediction, then the probabilities. */
static void write_csv_row(const writer *w, const float *r, mp_obuf *b) {
    const mp_model *m = w->mf->model;
    if (is_classifier(w->mf)) {
        size_t best = mp_predict_argmax(r, m->n_outputs);
        if (w->names && best < w->mf->n_classes) mp_obuf_put(b, w->names[best], w->name_len[best]);
        else mp_obuf_long(b, (long long)best);
        for (size_t j = 0; w->proba && j < m->n_outputs; j++) {
            mp_obuf_putc(b, ',');
            mp_obuf_float(b, r[j], false);
        }
    } else if (m->task == MP_TASK_CLUSTERING && is_index(r[0])) {
        mp_obuf_long(b, (long long)r[0]);
    } else {
        mp_obuf_float(b, r[0], false);
    }
    mp_obuf_putc(b, '\n');
}

/* One JSON line: {"prediction": ..., "probabilities": {"name": p, ...}}. */
static void write_json_row(const writer *w, const float *r, mp_obuf *b) {
    mp_obuf_put(b, "{\"prediction\": ", 15);
    mp_predict_put_json(w->mf, w->names, r, b);
    if (w->proba) {
        mp_obuf_put(b, ", \"probabilities\": {", 20);
        for (size_t j = 0; j < w->mf->n_classes; j++) {
            if (j) mp_obuf_put(b, ", ", 2);
            mp_obuf_put(b, w->names[j], w->name_len[j]);
            mp_obuf_put(b, ": ", 2);
            mp_obuf_float(b, r[j], true);
        }
        mp_obuf_putc(b, '}');
    }
    mp_obuf_put(b, "}\n", 2);
}

/* Checks the options against the model and pre-encodes the class names. */
static int writer_init(writer *w, const mp_model_file *mf, const mp_predict_opts *o,
                       mp_err *err) {
    const mp_model *m = mf->model;
    memset(w, 0, sizeof *w);
    w->mf = mf;
    w->format = o->format;
    w->proba = o->proba;
    if (o->format != MP_FORMAT_CSV && o->format != MP_FORMAT_JSONL)
        return MP_ERR(err, MP_E_USAGE, "unknown output format (code %d)", o->format);
    if (is_classifier(mf) && mf->class_names && mf->n_classes != m->n_outputs)
        return MP_ERR(err, MP_E_PARSE, "'%s' has %zu class names for %zu model outputs",
                      o->model_path, mf->n_classes, m->n_outputs);
    if (o->proba && m->task == MP_TASK_CLUSTERING)
        return MP_ERR(err, MP_E_USAGE, "--proba: model '%s' (%s) is a clustering model: it "
                      "predicts cluster ids, not class probabilities", o->model_path,
                      mf->algorithm);
    if (o->proba && !(is_classifier(mf) && m->has_proba && mf->class_names))
        return MP_ERR(err, MP_E_USAGE, "--proba: model '%s' (%s) does not give class "
                      "probabilities", o->model_path, mf->algorithm);
    if (!mf->class_names) return MP_OK;
    w->names = encode_names(mf, o->format == MP_FORMAT_CSV ? enc_csv : enc_json, err);
    w->name_len = mp_calloc(mf->n_classes, sizeof *w->name_len);
    if (!w->names || !w->name_len)
        return MP_ERR(err, MP_E_NOMEM, "out of memory encoding class names");
    for (size_t c = 0; c < mf->n_classes; c++) w->name_len[c] = strlen(w->names[c]);
    return MP_OK;
}

static void writer_release(writer *w) {
    mp_predict_names_free(w->names, w->mf ? w->mf->n_classes : 0);
    mp_free(w->name_len);
}

/*
 * Rows are scored and written SCORE_BLOCK at a time: the block's features
 * are still in cache when the model reads them after the transforms, and
 * its scores when they are written, instead of three passes over the whole
 * matrix (a million rows of 100 features is 400 MB).
 */
#define SCORE_BLOCK 4096

int mp_predict_main(const mp_predict_opts *o, mp_err *err) {
    mp_model_file *mf = NULL;
    mp_dataset *ds = NULL;
    mp_matrix scores = { 0 };
    writer w = { 0 };
    mp_obuf b;
    FILE *out = NULL;
    char tmp[4096] = "";
    mp_obuf_init(&b, NULL);

    if (mp_model_load(o->model_path, &mf, err) != MP_OK) return err->code;
    if (writer_init(&w, mf, o, err) != MP_OK) goto done;
    mp_csv_opts co;
    mp_csv_opts_init(&co);
    co.delimiter = o->delimiter ? o->delimiter : ',';
    co.columns = mf->feature_names;
    co.n_columns = mf->n_features;
    co.ignore_extra = true;
    double t0 = mp_now();
    if (mp_csv_read(o->input_path, &co, &ds, err) != MP_OK) goto done;
    double t_read = mp_now() - t0, t_score = 0.0;

    /* Write to a temporary file and rename, so OUT is complete or untouched
     * (stdout may have received part of the rows when scoring fails). */
    bool to_stdout = !o->output_path || strcmp(o->output_path, "-") == 0;
    if (to_stdout) {
        out = stdout;
    } else {
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->output_path, (long)getpid());
        if (!(out = fopen(tmp, "w"))) {
            MP_ERR(err, MP_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
            tmp[0] = '\0';
            goto done;
        }
    }
    mp_obuf_init(&b, out);
    write_header(&w, &b);
    const mp_matrix *X = &ds->X;
    t0 = mp_now();
    for (size_t i0 = 0; i0 < X->n_rows && b.err == MP_OK; i0 += SCORE_BLOCK) {
        size_t nb = X->n_rows - i0 < SCORE_BLOCK ? X->n_rows - i0 : SCORE_BLOCK;
        mp_matrix view = { X->data + i0 * X->n_cols, nb, X->n_cols };     /* borrowed rows */
        double ts = mp_now();
        if (mp_model_file_scores(mf, &view, &scores, err) != MP_OK) goto done;
        t_score += mp_now() - ts;
        const size_t k = scores.n_cols;
        if (w.format == MP_FORMAT_CSV)
            for (size_t i = 0; i < nb; i++) write_csv_row(&w, scores.data + i * k, &b);
        else
            for (size_t i = 0; i < nb; i++) write_json_row(&w, scores.data + i * k, &b);
        mp_matrix_release(&scores);
    }
    if (mp_obuf_flush(&b) == MP_OK && (fflush(out) != 0 || ferror(out))) {
        b.err = MP_E_IO;
        b.err_no = errno;
    }
    if (b.err == MP_E_NOMEM) {
        MP_ERR(err, MP_E_NOMEM, "out of memory writing predictions");
        goto done;
    } else if (b.err) {
        MP_ERR(err, MP_E_IO, "cannot write predictions to '%s': %s",
               to_stdout ? "<stdout>" : o->output_path, strerror(b.err_no));
        goto done;
    }
    if (!to_stdout) {
        int rc = fclose(out);
        out = NULL;
        if (rc != 0 || rename(tmp, o->output_path) != 0) {
            MP_ERR(err, MP_E_IO, "cannot write '%s': %s", o->output_path, strerror(errno));
            goto done;
        }
        tmp[0] = '\0';
    }
    double t_all = mp_now() - t0;
    mp_log(MP_LOG_INFO, "predict: %zu rows%s%s", X->n_rows, to_stdout ? "" : " -> ",
           to_stdout ? "" : o->output_path);
    mp_log(MP_LOG_DEBUG, "predict: read %.3f s, scored %.3f s, wrote %.3f s (%.0f rows/s "
           "scored and written)", t_read, t_score, t_all - t_score,
           t_all > 0 ? (double)X->n_rows / t_all : 0.0);
done:
    mp_obuf_release(&b);
    if (out && out != stdout) fclose(out);
    if (tmp[0]) unlink(tmp);
    writer_release(&w);
    mp_matrix_release(&scores);
    mp_dataset_free(ds);
    mp_model_file_free(mf);
    return err->code;
}
