/*
 * load_synthetic.c -- `load: synthetic`: seeded generated data sets, for
 * demos, benchmarks and tests that must not depend on files.
 *
 * Three kinds, modelled on scikit-learn's generators:
 *   classification  make_classification-like: each class has a centroid on a
 *                   distinct vertex of the hypercube [-1, 1]^n_informative;
 *                   a row is its centroid plus N(0, 1) in every informative
 *                   dimension, the other dimensions are pure N(0, 1) noise,
 *                   and a fraction `noise` of labels is replaced by a random
 *                   class (scikit-learn's flip_y).
 *   blobs           make_blobs-like: n_classes centers uniform in [-10, 10]^d,
 *                   rows N(center, noise^2) in every dimension.
 *   regression      make_regression-like: X ~ N(0, 1), y = X.w + b + N(0, noise^2)
 *                   with w_j ~ U(0, 100) for the first n_informative
 *                   features (0 for the rest) and b ~ U(-10, 10).
 * Classes are balanced (counts differ by at most one) and in random order.
 *
 * Every number comes from mp_ctx_rng(ctx, 0), drawn in one fixed order, so
 * the same seed gives the same bits, and test_size only decides where the
 * rows go (the last ceil(n * test_size) rows form ctx->test), not what they
 * are.  Normals come from Marsaglia's polar method, two per log/sqrt, which
 * keeps 1,000,000 x 100 at about a second.
 */
#include "mp_stage.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define CANCEL_EVERY 10000      /* rows between cancellation checks */

enum { KIND_CLASSIFICATION = 0, KIND_BLOBS = 1, KIND_REGRESSION = 2, KIND_COUNT };
static const char *const kind_names[] = { "classification", "blobs", "regression" };
_Static_assert(sizeof kind_names / sizeof *kind_names == KIND_COUNT, "kind_names");
/* What noise = -1 (the default) means for each kind. */
static const double default_noise[] = { 0.01, 1.0, 1.0 };
_Static_assert(sizeof default_noise / sizeof *default_noise == KIND_COUNT, "default_noise");

typedef struct synth_conf {
    int    kind;            /* KIND_*: index into "classification|blobs|regression" */
    int    n_samples;       /* rows generated in all (train + test), >= 1 */
    int    n_features;      /* columns, >= 1 */
    int    n_classes;       /* classes, or blobs; >= 2 */
    double noise;           /* see the file header; -1 = the kind's default */
    int    n_informative;   /* informative columns; 0 = min(n_features, 10) */
    double test_size;       /* fraction of rows generated as ctx->test, in [0, 0.99] */
} synth_conf;

/* ---------------------------------------------------------------- normals */

/* Marsaglia's polar method makes normals in pairs; the second is kept for
 * the next call.  The spare carries across rows, which is fine: the draw
 * order is fixed, so the stream is still a function of the seed alone. */
typedef struct normal_gen {
    mp_rng *rng;
    double  spare;
    bool    has_spare;
} normal_gen;

static double normal_next(normal_gen *g) {
    if (g->has_spare) {
        g->has_spare = false;
        return g->spare;
    }
    double u, v, s;
    do {
        /* One 64-bit draw gives both coordinates: each 32-bit half, centred
         * and scaled, is uniform on [-1, 1) (exactly, in double). */
        uint64_t x = mp_rng_next(g->rng);
        u = ((double)(x >> 32) - 2147483648.0) * 0x1p-31;
        v = ((double)(x & 0xffffffffu) - 2147483648.0) * 0x1p-31;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    double m = sqrt(-2.0 * log(s) / s);
    g->spare = v * m;
    g->has_spare = true;
    return u * m;
}

/* ---------------------------------------------------------------- names */

/* An empty dataset of n rows x d columns with names, y and the task set. */
static mp_dataset *new_part(size_t n, size_t d, size_t k, bool classify, mp_err *err) {
    mp_dataset *ds = mp_dataset_new();
    if (!ds) goto nomem;
    if (mp_matrix_init(&ds->X, n, d, err) != MP_OK) goto fail;
    if (!(ds->y = mp_malloc(mp_mul_size(n, sizeof *ds->y))) ||
        !(ds->feature_names = mp_names_new("x", NULL, d)) || !(ds->target_name = mp_strdup("y")))
        goto nomem;
    ds->task = classify ? MP_TASK_CLASSIFICATION : MP_TASK_REGRESSION;
    if (classify) {
        if (!(ds->class_names = mp_names_new("", NULL, k))) goto nomem;
        ds->n_classes = k;
    }
    return ds;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory for %zu x %zu synthetic rows", n, d);
fail:
    mp_dataset_free(ds);
    return NULL;
}

/* ---------------------------------------------------------------- generator */

/* Everything drawn before the rows: per-class centers, or regression weights. */
typedef struct model {
    size_t  d, k, inf;      /* features, classes, informative features */
    double  noise;
    double *centers;        /* k x d (blobs) or k x inf (classification), row-major */
    double *w;              /* d regression weights */
    double  b;              /* regression intercept */
    unsigned *labels;       /* n balanced labels in random order (classification/blobs) */
} model;

/* Distinct hypercube vertices for k classes in inf dimensions.  The caller
 * has checked k <= 2^inf, so rejection of repeats ends (quickly: k is small
 * next to 2^inf, or inf is small). */
static void draw_vertices(mp_rng *rng, model *m) {
    for (size_t c = 0; c < m->k; c++) {
        double *v = m->centers + c * m->inf;
        for (;;) {
            for (size_t j = 0; j < m->inf; j++) v[j] = (mp_rng_next(rng) >> 63) ? 1.0 : -1.0;
            size_t o = 0;
            while (o < c && memcmp(m->centers + o * m->inf, v, m->inf * sizeof *v) != 0) o++;
            if (o == c) break;
        }
    }
}

/* Balanced labels: i % k, then shuffled, so every class has n/k rows (+-1)
 * and both parts of a test_size split see every class. */
static void draw_labels(mp_rng *rng, unsigned *lab, size_t n, size_t k) {
    for (size_t i = 0; i < n; i++) lab[i] = (unsigned)(i % k);
    for (size_t i = n; i > 1; i--) {
        size_t j = mp_rng_below(rng, i);
        unsigned t = lab[i - 1];
        lab[i - 1] = lab[j];
        lab[j] = t;
    }
}

/* Writes row i: d features into x, the target into *y. */
static void gen_row(const synth_conf *c, const model *m, mp_rng *rng, normal_gen *g, size_t i,
                    float *x, double *y) {
    switch (c->kind) {
    case KIND_CLASSIFICATION: {
        size_t cls = m->labels[i];
        const double *ctr = m->centers + cls * m->inf;
        for (size_t j = 0; j < m->inf; j++) x[j] = (float)(ctr[j] + normal_next(g));
        for (size_t j = m->inf; j < m->d; j++) x[j] = (float)normal_next(g);
        /* Always draw the flip decision, so the stream does not depend on noise. */
        double u = mp_rng_uniform(rng);
        size_t other = mp_rng_below(rng, m->k);
        *y = (double)(u < m->noise ? other : cls);
        break;
    }
    case KIND_BLOBS: {
        size_t cls = m->labels[i];
        const double *ctr = m->centers + cls * m->d;
        for (size_t j = 0; j < m->d; j++) x[j] = (float)(ctr[j] + m->noise * normal_next(g));
        *y = (double)cls;
        break;
    }
    default: {
        double t = m->b;
        for (size_t j = 0; j < m->d; j++) {
            x[j] = (float)normal_next(g);
            t += m->w[j] * (double)x[j];   /* the target sees the stored float */
        }
        *y = t + m->noise * normal_next(g);
        break;
    }
    }
}

/* Draws the per-class centers / weights and the label order. */
static int draw_model(const synth_conf *c, mp_rng *rng, size_t n, model *m, mp_err *err) {
    if (c->kind == KIND_REGRESSION) {
        if (!(m->w = mp_calloc(m->d, sizeof *m->w))) goto nomem;
        for (size_t j = 0; j < m->inf; j++) m->w[j] = 100.0 * mp_rng_uniform(rng);
        m->b = 20.0 * mp_rng_uniform(rng) - 10.0;
        return MP_OK;
    }
    /* Blob centers span every column; class centroids only the informative ones. */
    size_t cols = c->kind == KIND_BLOBS ? m->d : m->inf;
    if (!(m->centers = mp_malloc(mp_mul_size(m->k, mp_mul_size(cols, sizeof *m->centers)))) ||
        !(m->labels = mp_malloc(mp_mul_size(n, sizeof *m->labels))))
        goto nomem;
    if (c->kind == KIND_BLOBS)
        for (size_t i = 0; i < m->k * m->d; i++) m->centers[i] = 20.0 * mp_rng_uniform(rng) - 10.0;
    else
        draw_vertices(rng, m);
    draw_labels(rng, m->labels, n, m->k);
    return MP_OK;
nomem:
    return MP_ERR(err, MP_E_NOMEM, "out of memory drawing the synthetic %s model",
                  kind_names[c->kind]);
}

/* ---------------------------------------------------------------- stage */

static size_t informative_of(const synth_conf *c) {
    if (c->n_informative > 0) return (size_t)c->n_informative;
    return c->n_features < 10 ? (size_t)c->n_features : 10;
}

static int synth_check(const void *conf, mp_err *err) {
    const synth_conf *c = conf;
    if (c->kind < 0 || c->kind >= KIND_COUNT)
        return MP_ERR(err, MP_E_CONFIG, "unknown kind %d", c->kind);
    if (c->noise < 0 && c->noise != -1.0)
        return MP_ERR(err, MP_E_CONFIG, "noise must be >= 0 (or -1 for the default), got %g",
                      c->noise);
    if (c->kind == KIND_CLASSIFICATION && c->noise > 1.0)
        return MP_ERR(err, MP_E_CONFIG,
                      "noise is the label-flip fraction for classification: in [0, 1], got %g",
                      c->noise);
    if (c->kind != KIND_BLOBS && c->n_informative > c->n_features)
        return MP_ERR(err, MP_E_CONFIG, "n_informative %d is more than n_features %d",
                      c->n_informative, c->n_features);
    /* Class centroids are distinct hypercube vertices: 2^n_informative of them. */
    size_t inf = informative_of(c);
    if (c->kind == KIND_CLASSIFICATION && inf < 31 && (size_t)c->n_classes > ((size_t)1 << inf))
        return MP_ERR(err, MP_E_CONFIG,
                      "%d classes need at least %d informative features (2^n_informative >= "
                      "n_classes), got %zu",
                      c->n_classes, (int)ceil(log2((double)c->n_classes)), inf);
    return MP_OK;
}

static int synth_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const synth_conf *c = st->conf;
    if (synth_check(c, err) != MP_OK) return err->code;
    size_t n = (size_t)c->n_samples;
    bool classify = c->kind != KIND_REGRESSION;
    model m = { .d = (size_t)c->n_features, .k = (size_t)c->n_classes, .inf = informative_of(c),
                .noise = c->noise < 0 ? default_noise[c->kind] : c->noise };

    /* Same rule as split: holdout -- at least one test row, one left to train. */
    size_t n_te = 0;
    if (c->test_size > 0) {
        n_te = (size_t)ceil((double)n * c->test_size - 1e-9);
        if (n_te == 0) n_te = 1;
        if (n_te >= n)
            return MP_ERR(err, MP_E_DATA, "test_size %g leaves no training rows of %zu",
                          c->test_size, n);
    }
    size_t n_tr = n - n_te;

    /* Stream 0 of this stage: a later stage (split, init) draws from its own
     * stream, so adding one never changes the data generated here. */
    mp_dataset *train = NULL, *test = NULL;
    mp_rng rng;
    mp_ctx_rng(ctx, 0, &rng);
    normal_gen g = { .rng = &rng };
    if (draw_model(c, &rng, n, &m, err) != MP_OK) goto done;
    if (!(train = new_part(n_tr, m.d, m.k, classify, err))) goto done;
    if (n_te && !(test = new_part(n_te, m.d, m.k, classify, err))) goto done;

    /* Rows are generated in order 0..n-1 whatever the split, and written
     * straight into their part: no full-size copy is ever made. */
    for (size_t i = 0; i < n; i++) {
        if (i % CANCEL_EVERY == 0 && mp_ctx_cancelled(ctx)) {
            MP_ERR(err, MP_E_CANCELLED, "interrupted");
            goto done;
        }
        mp_dataset *p = i < n_tr ? train : test;
        size_t r = i < n_tr ? i : i - n_tr;
        gen_row(c, &m, &rng, &g, i, p->X.data + r * m.d, p->y + r);
    }

    if (mp_ctx_metric(ctx, "data.rows", (double)n_tr, -1, err) != MP_OK ||
        mp_ctx_metric(ctx, "data.features", (double)m.d, -1, err) != MP_OK ||
        (test && mp_ctx_metric(ctx, "data.test_rows", (double)n_te, -1, err) != MP_OK))
        goto done;
    if (classify)
        mp_log(MP_LOG_INFO,
               "synthetic: %s, %zu train rows x %zu features, %zu test rows "
               "(%zu classes, noise %g)",
               kind_names[c->kind], n_tr, m.d, n_te, m.k, m.noise);
    else
        mp_log(MP_LOG_INFO,
               "synthetic: regression, %zu train rows x %zu features, %zu test rows (noise %g)",
               n_tr, m.d, n_te, m.noise);
    /* Replace the context's data only on success (a failed stage leaves it). */
    mp_dataset_free(ctx->train);
    mp_dataset_free(ctx->test);
    ctx->train = train;
    ctx->test = test;
    train = test = NULL;
done:
    mp_dataset_free(train);
    mp_dataset_free(test);
    mp_free(m.centers);
    mp_free(m.w);
    mp_free(m.labels);
    return err->code;
}

static const mp_param synth_params[] = {
    { "kind", MP_P_ENUM, offsetof(synth_conf, kind), "classification", 0, 0, 0,
      "classification|blobs|regression",
      "classification: classes around hypercube vertices; blobs: Gaussian blobs with centers in "
      "[-10, 10]^d; regression: y = X.w + b + noise" },
    { "n_samples", MP_P_INT, offsetof(synth_conf, n_samples), "1000", MP_PF_RANGE, 1,
      HUGE_VAL, NULL, "rows to generate in all, test rows included" },
    { "n_features", MP_P_INT, offsetof(synth_conf, n_features), "20", MP_PF_RANGE, 1, 100000,
      NULL, "feature columns x0..x{n-1}" },
    { "n_classes", MP_P_INT, offsetof(synth_conf, n_classes), "2", MP_PF_RANGE, 2, 1000, NULL,
      "classes (classification) or blobs (blobs); ignored by regression" },
    { "noise", MP_P_DOUBLE, offsetof(synth_conf, noise), "-1", MP_PF_RANGE, -1.0, HUGE_VAL, NULL,
      "classification: fraction of labels replaced by a random class (default 0.01); blobs: "
      "std dev around each center (default 1); regression: std dev of the target noise "
      "(default 1); -1 = the kind's default" },
    { "n_informative", MP_P_INT, offsetof(synth_conf, n_informative), "0", MP_PF_RANGE, 0,
      100000, NULL,
      "features that carry signal (classification, regression); 0 = min(n_features, 10)" },
    { "test_size", MP_P_DOUBLE, offsetof(synth_conf, test_size), "0", MP_PF_RANGE, 0.0, 0.99,
      NULL, "fraction of rows generated as the test set (no split stage needed); 0 = none" },
    { 0 }
};

const mp_stage_ops mp_stage_load_synthetic = {
    .abi = MP_STAGE_ABI, .name = "synthetic", .kind = MP_KIND_LOAD,
    .doc = "generate a seeded classification, blobs or regression data set",
    .params = synth_params, .conf_size = sizeof(synth_conf), .check = synth_check,
    .run = synth_run,
};
