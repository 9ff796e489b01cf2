/*
 * scale.c -- `transform: standardize` and `transform: minmax`.
 *
 * Both are per-column affine maps x' = (x - offset[j]) * scale[j], so they
 * share one fitted state, one apply loop and one file layout; only the
 * fitting differs.  Statistics are accumulated in double (a float sum over
 * 60,000 rows loses digits) with Welford's update for the variance.
 */
#include "mp_stage.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct affine {
    size_t  n;          /* columns */
    float  *offset;     /* n values subtracted first */
    float  *scale;      /* n factors applied after */
} affine;

static void affine_free(void *state) {
    affine *a = state;
    if (!a) return;
    mp_free(a->offset);
    mp_free(a->scale);
    mp_free(a);
}

static affine *affine_new(size_t n, mp_err *err) {
    affine *a = mp_calloc(1, sizeof *a);
    if (a) {
        a->n = n;
        a->offset = mp_calloc(n ? n : 1, sizeof(float));
        a->scale = mp_calloc(n ? n : 1, sizeof(float));
        if (a->offset && a->scale) return a;
    }
    affine_free(a);
    MP_ERR(err, MP_E_NOMEM, "out of memory for a %zu-column transform", n);
    return NULL;
}

static int affine_apply(const void *state, mp_matrix *X, mp_err *err) {
    const affine *a = state;
    if (X->n_cols != a->n)
        return MP_ERR(err, MP_E_DATA, "transform fitted on %zu columns, got %zu", a->n, X->n_cols);
    const float *off = a->offset, *sc = a->scale;
    for (size_t i = 0; i < X->n_rows; i++) {
        float *r = X->data + i * X->n_cols;
        for (size_t j = 0; j < a->n; j++) r[j] = (r[j] - off[j]) * sc[j];
    }
    return MP_OK;
}

static int affine_save(const void *state, mp_art_writer *w, const char *prefix, mp_err *err) {
    const affine *a = state;
    char k1[128], k2[128];
    snprintf(k1, sizeof k1, "%soffset", prefix);
    snprintf(k2, sizeof k2, "%sscale", prefix);
    if (mp_art_put_floats(w, k1, a->offset, a->n) != MP_OK ||
        mp_art_put_floats(w, k2, a->scale, a->n) != MP_OK)
        return MP_ERR(err, MP_E_IO, "cannot write transform '%s'", prefix);
    return MP_OK;
}

static int affine_load(mp_art_reader *r, const char *prefix, size_t n_cols, void **state,
                       mp_err *err) {
    affine *a = affine_new(n_cols, err);
    if (!a) return err->code;
    char k1[128], k2[128];
    snprintf(k1, sizeof k1, "%soffset", prefix);
    snprintf(k2, sizeof k2, "%sscale", prefix);
    if (mp_art_get_floats(r, k1, a->offset, n_cols, err) != MP_OK ||
        mp_art_get_floats(r, k2, a->scale, n_cols, err) != MP_OK) {
        affine_free(a);
        return err->code;
    }
    *state = a;
    return MP_OK;
}

/* ---------------------------------------------------------------- standardize */

typedef struct standardize_conf {
    bool with_mean;     /* subtract the column mean */
    bool with_std;      /* divide by the column standard deviation */
} standardize_conf;

static int standardize_fit(const void *conf, const mp_matrix *X, void **state, mp_err *err) {
    const standardize_conf *c = conf;
    size_t n = X->n_cols;
    affine *a = affine_new(n, err);
    if (!a) return err->code;
    double *mean = mp_calloc(n ? n : 1, sizeof *mean), *m2 = mp_calloc(n ? n : 1, sizeof *m2);
    if (!mean || !m2) {
        mp_free(mean);
        mp_free(m2);
        affine_free(a);
        return MP_ERR(err, MP_E_NOMEM, "out of memory fitting standardize");
    }
    for (size_t i = 0; i < X->n_rows; i++) {
        const float *r = X->data + i * n;
        double k = (double)(i + 1);
        for (size_t j = 0; j < n; j++) {
            double d = r[j] - mean[j];
            mean[j] += d / k;
            m2[j] += d * (r[j] - mean[j]);
        }
    }
    for (size_t j = 0; j < n; j++) {
        double sd = X->n_rows ? sqrt(m2[j] / (double)X->n_rows) : 0.0;
        a->offset[j] = c->with_mean ? (float)mean[j] : 0.0f;
        /* A constant column keeps scale 1 (as scikit-learn does) instead of dividing by 0. */
        a->scale[j] = c->with_std && sd > 0.0 ? (float)(1.0 / sd) : 1.0f;
    }
    mp_free(mean);
    mp_free(m2);
    *state = a;
    return MP_OK;
}

static const mp_param standardize_params[] = {
    { "with_mean", MP_P_BOOL, offsetof(standardize_conf, with_mean), "true", 0, 0, 0, NULL,
      "subtract each column's mean (fitted on the training rows)" },
    { "with_std", MP_P_BOOL, offsetof(standardize_conf, with_std), "true", 0, 0, 0, NULL,
      "divide by each column's standard deviation" },
    { 0 }
};

static const mp_transform_ops standardize_ops = {
    .name = "standardize", .fit = standardize_fit, .apply = affine_apply,
    .save = affine_save, .load = affine_load, .free_state = affine_free,
};

const mp_stage_ops mp_stage_standardize = {
    .abi = MP_STAGE_ABI, .name = "standardize", .kind = MP_KIND_TRANSFORM,
    .doc = "scale each feature to zero mean and unit variance",
    .params = standardize_params, .conf_size = sizeof(standardize_conf),
    .run = mp_transform_stage_run, .transform = &standardize_ops,
};

/* ---------------------------------------------------------------- minmax */

typedef struct minmax_conf {
    double min;     /* target range low end */
    double max;     /* target range high end, > min */
} minmax_conf;

static int minmax_check(const void *conf, mp_err *err) {
    const minmax_conf *c = conf;
    if (!(c->max > c->min))
        return MP_ERR(err, MP_E_CONFIG, "minmax needs max > min, got min %g and max %g", c->min,
                      c->max);
    return MP_OK;
}

static int minmax_fit(const void *conf, const mp_matrix *X, void **state, mp_err *err) {
    const minmax_conf *c = conf;
    size_t n = X->n_cols;
    affine *a = affine_new(n, err);
    if (!a) return err->code;
    for (size_t j = 0; j < n; j++) {
        float lo = X->n_rows ? X->data[j] : 0.0f, hi = lo;
        for (size_t i = 1; i < X->n_rows; i++) {
            float v = X->data[i * n + j];
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
        double range = (double)hi - (double)lo;
        double s = range > 0.0 ? (c->max - c->min) / range : 1.0;
        /* (x - lo) * s + min  ==  (x - (lo - min / s)) * s */
        a->scale[j] = (float)s;
        a->offset[j] = (float)((double)lo - c->min / s);
    }
    *state = a;
    return MP_OK;
}

static const mp_param minmax_params[] = {
    { "min", MP_P_DOUBLE, offsetof(minmax_conf, min), "0", 0, 0, 0, NULL,
      "value the smallest training value maps to" },
    { "max", MP_P_DOUBLE, offsetof(minmax_conf, max), "1", 0, 0, 0, NULL,
      "value the largest training value maps to" },
    { 0 }
};

static const mp_transform_ops minmax_ops = {
    .name = "minmax", .fit = minmax_fit, .apply = affine_apply,
    .save = affine_save, .load = affine_load, .free_state = affine_free,
};

const mp_stage_ops mp_stage_minmax = {
    .abi = MP_STAGE_ABI, .name = "minmax", .kind = MP_KIND_TRANSFORM,
    .doc = "scale each feature linearly to [min, max] of the training rows",
    .params = minmax_params, .conf_size = sizeof(minmax_conf), .check = minmax_check,
    .run = mp_transform_stage_run, .transform = &minmax_ops,
};
