/*
 * load_idx.c -- `load: idx`: MNIST-format IDX files (MNIST, Fashion-MNIST,
 * KMNIST ...), gzipped or not.
 *
 * An IDX file is a 4-byte big-endian magic (0x00000803 for a stack of 2-D
 * unsigned-byte images, 0x00000801 for a vector of unsigned-byte labels),
 * one big-endian uint32 per dimension, then the bytes row by row.  zlib's
 * gzread reads a gzip stream and a plain file alike, so one code path serves
 * the .gz files as distributed and unpacked copies.
 *
 * Speed matters (60,000 x 784 is the common case and must load in well under
 * a second): pixels are read in blocks of up to CHUNK_BYTES and turned into
 * floats through a 256-entry table, which is exact (pixel / scale computed in
 * double once per byte value) and leaves a one-load-one-store inner loop.
 *
 * Errors name the file in err->where; item indices in messages are 0-based,
 * as in the IDX format itself.  The test pair, when given, becomes ctx->test
 * directly: no split stage is needed.
 */
#include "mp_stage.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 0x00000803u    /* unsigned byte, 3 dims: n, rows, cols */
#define IDX_MAGIC_LABELS 0x00000801u    /* unsigned byte, 1 dim: n */
#define CHUNK_BYTES (8u << 20)          /* pixel bytes read per gzread batch */
#define CANCEL_EVERY 10000              /* rows between cancellation checks */

typedef struct idx_conf {
    char       *train_images;   /* IDX3 image file (required) */
    char       *train_labels;   /* IDX1 label file (required) */
    char       *test_images;    /* optional; given together with test_labels */
    char       *test_labels;
    double      scale;          /* feature = pixel / scale; > 0 */
    int         limit;          /* keep the first N training rows; 0 = all */
    int         test_limit;     /* the same for the test rows */
    mp_str_list class_names;    /* names of labels 0..K-1; empty = decimal labels */
} idx_conf;

/* One open IDX file after its header has been read and checked. */
typedef struct idx_file {
    gzFile      f;
    const char *path;           /* borrowed from the conf, for messages */
    uint32_t    dims[3];        /* dims[0] = number of items */
} idx_file;

/* ---------------------------------------------------------------- reading */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* gzerror's text starts with "<path>: "; the path is already in err->where. */
static const char *gz_reason(gzFile f, const char *path, int *zerr) {
    const char *m = gzerror(f, zerr);
    size_t n = strlen(path);
    if (m && strncmp(m, path, n) == 0 && m[n] == ':' && m[n + 1] == ' ') m += n + 2;
    return m ? m : "unknown error";
}

/* Reads up to n bytes; *got is how many arrived before the data ended.  A
 * short count is not an error here (the caller knows which item was cut
 * off); read errors and corrupt gzip data are. */
static int read_block(idx_file *x, void *buf, size_t n, size_t *got, mp_err *err) {
    size_t total = 0;
    while (total < n) {
        /* gzread takes an unsigned and returns an int: feed it <= 1 GiB. */
        size_t want = n - total < (1u << 30) ? n - total : (1u << 30);
        int r = gzread(x->f, (unsigned char *)buf + total, (unsigned)want);
        if (r < 0) {
            int zerr = Z_OK;
            int e = errno;
            const char *why = gz_reason(x->f, x->path, &zerr);
            if (zerr == Z_ERRNO)
                MP_ERR(err, MP_E_IO, "cannot read: %s", strerror(e));
            else
                MP_ERR(err, MP_E_PARSE, "corrupt gzip data: %s", why);
            return mp_err_where(err, "%s", x->path);
        }
        if (r == 0) break;     /* end of data (or of a cut-off gzip stream) */
        total += (size_t)r;
    }
    *got = total;
    return MP_OK;
}

/* Opens path and reads its header: the magic must be `magic` and the file
 * has `n_dims` dimensions.  On failure nothing stays open. */
static int idx_open(idx_file *x, const char *path, uint32_t magic, int n_dims, mp_err *err) {
    x->path = path;
    errno = 0;
    x->f = gzopen(path, "rb");
    if (!x->f) {
        /* gzopen leaves errno at 0 when only its own allocation failed. */
        if (errno == 0) return MP_ERR(err, MP_E_NOMEM, "out of memory opening '%s'", path);
        MP_ERR(err, MP_E_IO, "cannot open '%s': %s", path, strerror(errno));
        return mp_err_where(err, "%s", path);
    }
    gzbuffer(x->f, 1u << 18);   /* bigger than zlib's 8 KiB default: fewer read() calls */

    /* The magic is checked before the length, so a label file passed as
     * images says "wrong magic" rather than "truncated header". */
    unsigned char h[16];
    size_t want = 4 * (1 + (size_t)n_dims), got = 0;
    if (read_block(x, h, want, &got, err) != MP_OK) goto fail;
    if (got >= 4 && be32(h) != magic) {
        uint32_t m = be32(h);
        const char *hint = magic == IDX_MAGIC_IMAGES && m == IDX_MAGIC_LABELS ? " (a label file?)"
                         : magic == IDX_MAGIC_LABELS && m == IDX_MAGIC_IMAGES ? " (an image file?)"
                         : "";
        MP_ERR(err, MP_E_PARSE, "not an IDX %s file: magic 0x%08x, expected 0x%08x%s",
               magic == IDX_MAGIC_IMAGES ? "image" : "label", m, magic, hint);
        mp_err_where(err, "%s", path);
        goto fail;
    }
    if (got < want) {
        MP_ERR(err, MP_E_PARSE, "truncated IDX header (%zu of %zu bytes)", got, want);
        mp_err_where(err, "%s", path);
        goto fail;
    }
    for (int i = 0; i < n_dims; i++) x->dims[i] = be32(h + 4 * (i + 1));
    return MP_OK;
fail:
    gzclose(x->f);
    x->f = NULL;
    return err->code;
}

static void idx_close(idx_file *x) {
    if (x->f) gzclose(x->f);
    x->f = NULL;
}

/* Reads the first n labels into y, checking each against n_names (0 = any
 * byte value is a label).  *max_label gets the largest label seen. */
static int read_labels(idx_file *lf, size_t n, size_t n_names, double *y, unsigned *max_label,
                       mp_err *err) {
    unsigned char *b = mp_malloc(n ? n : 1);
    if (!b) return MP_ERR(err, MP_E_NOMEM, "out of memory for %zu labels", n);
    size_t got = 0;
    if (read_block(lf, b, n, &got, err) != MP_OK) goto done;
    if (got < n) {
        MP_ERR(err, MP_E_PARSE,
               "truncated: label of item %zu is missing (file ends after %zu of %zu labels)", got,
               got, n);
        mp_err_where(err, "%s", lf->path);
        goto done;
    }
    unsigned mx = 0;
    for (size_t i = 0; i < n; i++) {
        if (n_names && b[i] >= n_names) {
            MP_ERR(err, MP_E_PARSE, "item %zu: label %u is out of range for %zu class names", i,
                   b[i], n_names);
            mp_err_where(err, "%s", lf->path);
            goto done;
        }
        if (b[i] > mx) mx = b[i];
        y[i] = b[i];
    }
    *max_label = mx;
done:
    mp_free(b);
    return err->code;
}

/* Reads n images of d pixels each into X (already n x d), a block at a time. */
static int read_pixels(idx_file *imf, mp_ctx *ctx, size_t n, size_t d, const float *lut,
                       mp_matrix *X, mp_err *err) {
    /* Whole images per block, so a short read names the image it cut, and
     * at most CANCEL_EVERY of them, so a signal is seen in good time. */
    size_t rows_per = CHUNK_BYTES / d;
    if (rows_per == 0) rows_per = 1;            /* a huge image: one at a time */
    if (rows_per > CANCEL_EVERY) rows_per = CANCEL_EVERY;
    if (rows_per > n) rows_per = n;
    unsigned char *b = mp_malloc(mp_mul_size(rows_per, d));
    if (!b) return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", imf->path);
    for (size_t r0 = 0; r0 < n; r0 += rows_per) {
        if (mp_ctx_cancelled(ctx)) {
            MP_ERR(err, MP_E_CANCELLED, "interrupted");
            break;
        }
        mp_ctx_progress(ctx, "rows", (double)r0, (double)n);
        size_t k = n - r0 < rows_per ? n - r0 : rows_per;
        size_t got = 0;
        if (read_block(imf, b, k * d, &got, err) != MP_OK) break;
        if (got < k * d) {
            size_t whole = r0 + got / d;    /* images that did arrive complete */
            MP_ERR(err, MP_E_PARSE,
                   "truncated: image %zu is incomplete (file ends after %zu of %zu images)", whole,
                   whole, n);
            mp_err_where(err, "%s", imf->path);
            break;
        }
        float *dst = X->data + r0 * d;
        for (size_t i = 0; i < k * d; i++) dst[i] = lut[b[i]];
    }
    mp_free(b);
    return err->code;
}

/* Loads one image/label pair, keeping the first `limit` items (0 = all). */
static int load_part(mp_ctx *ctx, const char *img_path, const char *lbl_path, int limit,
                     const float *lut, size_t n_names, mp_dataset **out, unsigned *max_label,
                     mp_err *err) {
    idx_file imf = { 0 }, lf = { 0 };
    mp_dataset *ds = NULL;
    if (idx_open(&imf, img_path, IDX_MAGIC_IMAGES, 3, err) != MP_OK) return err->code;
    if (idx_open(&lf, lbl_path, IDX_MAGIC_LABELS, 1, err) != MP_OK) goto fail;

    /* Check the headers agree before reading megabytes of pixels. */
    if (imf.dims[0] != lf.dims[0]) {
        MP_ERR(err, MP_E_PARSE, "count mismatch: '%s' holds %u images but '%s' holds %u labels",
               img_path, imf.dims[0], lbl_path, lf.dims[0]);
        mp_err_where(err, "%s", lbl_path);
        goto fail;
    }
    size_t d = mp_mul_size(imf.dims[1], imf.dims[2]);
    if (d == 0 || d == SIZE_MAX) {
        MP_ERR(err, MP_E_PARSE, "bad image size %u x %u", imf.dims[1], imf.dims[2]);
        mp_err_where(err, "%s", img_path);
        goto fail;
    }
    /* With a limit only the first n items are read; the rest of the file is
     * never inflated, which keeps small test slices of big files cheap. */
    size_t n = imf.dims[0];
    if (limit > 0 && (size_t)limit < n) n = (size_t)limit;
    if (n == 0) {
        MP_ERR(err, MP_E_DATA, "the file holds no images");
        mp_err_where(err, "%s", img_path);
        goto fail;
    }

    if (!(ds = mp_dataset_new()) || !(ds->y = mp_malloc(mp_mul_size(n, sizeof *ds->y)))) {
        MP_ERR(err, MP_E_NOMEM, "out of memory for %zu labels", n);
        goto fail;
    }
    if (read_labels(&lf, n, n_names, ds->y, max_label, err) != MP_OK) goto fail;
    if (mp_matrix_init(&ds->X, n, d, err) != MP_OK) goto fail;
    if (read_pixels(&imf, ctx, n, d, lut, &ds->X, err) != MP_OK) goto fail;
    ds->task = MP_TASK_CLASSIFICATION;
    idx_close(&imf);
    idx_close(&lf);
    *out = ds;
    return MP_OK;
fail:
    idx_close(&imf);
    idx_close(&lf);
    mp_dataset_free(ds);
    return err->code;
}

/* ---------------------------------------------------------------- names */

/* Gives ds its feature, target and class names. */
static int name_part(mp_dataset *ds, const idx_conf *c, size_t n_classes, mp_err *err) {
    if (!(ds->feature_names = mp_names_new("px", NULL, ds->X.n_cols)) ||
        !(ds->target_name = mp_strdup("label")) ||
        !(ds->class_names = mp_names_new("", c->class_names.n ? c->class_names.v : NULL, n_classes)))
        return MP_ERR(err, MP_E_NOMEM, "out of memory naming %zu columns", ds->X.n_cols);
    ds->n_classes = n_classes;
    return MP_OK;
}

/* ---------------------------------------------------------------- stage */

static int idx_check(const void *conf, mp_err *err) {
    const idx_conf *c = conf;
    if (!c->test_images != !c->test_labels)
        return MP_ERR(err, MP_E_CONFIG, "'%s' needs '%s' too: give both test files or neither",
                      c->test_images ? "test_images" : "test_labels",
                      c->test_images ? "test_labels" : "test_images");
    return MP_OK;
}

static int idx_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const idx_conf *c = st->conf;
    /* The runner calls check before any stage runs; repeating it keeps a
     * direct caller (tests, an embedding program) from loading half a pair. */
    if (idx_check(c, err) != MP_OK) return err->code;

    /* pixel / scale rounded once from double: the same floats a division per
     * pixel would give, at the cost of a table lookup. */
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (float)(v / c->scale);
    size_t n_names = c->class_names.n;
    mp_dataset *train = NULL, *test = NULL;
    unsigned max_tr = 0, max_te = 0;

    if (load_part(ctx, c->train_images, c->train_labels, c->limit, lut, n_names, &train, &max_tr,
                  err) != MP_OK)
        goto fail;
    if (c->test_images) {
        if (load_part(ctx, c->test_images, c->test_labels, c->test_limit, lut, n_names, &test,
                      &max_te, err) != MP_OK)
            goto fail;
        if (test->X.n_cols != train->X.n_cols) {
            MP_ERR(err, MP_E_DATA, "test images have %zu pixels but training images have %zu",
                   test->X.n_cols, train->X.n_cols);
            mp_err_where(err, "%s", c->test_images);
            goto fail;
        }
    }
    /* One class count for both parts, so class i means the same in each. */
    size_t k = n_names ? n_names : (size_t)(max_tr > max_te ? max_tr : max_te) + 1;
    if (name_part(train, c, k, err) != MP_OK) goto fail;
    if (test && name_part(test, c, k, err) != MP_OK) goto fail;

    size_t n_te = test ? test->X.n_rows : 0;
    if (mp_ctx_metric(ctx, "data.rows", (double)train->X.n_rows, -1, err) != MP_OK ||
        mp_ctx_metric(ctx, "data.features", (double)train->X.n_cols, -1, err) != MP_OK ||
        (test && mp_ctx_metric(ctx, "data.test_rows", (double)n_te, -1, err) != MP_OK))
        goto fail;
    mp_log(MP_LOG_INFO, "idx: %zu train rows x %zu features, %zu test rows (%zu classes)",
           train->X.n_rows, train->X.n_cols, n_te, k);

    /* Only now, with nothing left to fail, replace what an earlier loader
     * left: a failed load keeps the context as it was. */
    mp_dataset_free(ctx->train);
    mp_dataset_free(ctx->test);
    ctx->train = train;
    ctx->test = test;
    return MP_OK;
fail:
    mp_dataset_free(train);
    mp_dataset_free(test);
    return err->code;
}

static const mp_param idx_params[] = {
    { "train_images", MP_P_STRING, offsetof(idx_conf, train_images), NULL, MP_PF_REQUIRED, 0, 0,
      NULL, "IDX image file of the training set (.gz or plain), e.g. train-images-idx3-ubyte.gz" },
    { "train_labels", MP_P_STRING, offsetof(idx_conf, train_labels), NULL, MP_PF_REQUIRED, 0, 0,
      NULL, "IDX label file of the training set, e.g. train-labels-idx1-ubyte.gz" },
    { "test_images", MP_P_STRING, offsetof(idx_conf, test_images), NULL, 0, 0, 0, NULL,
      "IDX image file of the test set; with test_labels it is the test split (no split stage)" },
    { "test_labels", MP_P_STRING, offsetof(idx_conf, test_labels), NULL, 0, 0, 0, NULL,
      "IDX label file of the test set; given together with test_images" },
    { "scale", MP_P_DOUBLE, offsetof(idx_conf, scale), "255", MP_PF_RANGE | MP_PF_MIN_OPEN, 0.0,
      HUGE_VAL, NULL, "each feature is pixel / scale (255 maps bytes to [0, 1])" },
    { "limit", MP_P_INT, offsetof(idx_conf, limit), "0", MP_PF_RANGE, 0, HUGE_VAL, NULL,
      "keep only the first N training rows; 0 keeps all" },
    { "test_limit", MP_P_INT, offsetof(idx_conf, test_limit), "0", MP_PF_RANGE, 0, HUGE_VAL,
      NULL, "keep only the first N test rows; 0 keeps all" },
    { "class_names", MP_P_STR_LIST, offsetof(idx_conf, class_names), NULL, 0, 0, 0, NULL,
      "names of labels 0..K-1 (a larger label is an error); default: the decimal label" },
    { 0 }
};

const mp_stage_ops mp_stage_load_idx = {
    .abi = MP_STAGE_ABI, .name = "idx", .kind = MP_KIND_LOAD,
    .doc = "load MNIST-format IDX image and label files (gzipped or not) as a classification set",
    .params = idx_params, .conf_size = sizeof(idx_conf), .check = idx_check, .run = idx_run,
};
