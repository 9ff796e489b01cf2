/*
 * eval_clustering.c -- `evaluate: clustering`.
 *
 * Scores a clustering model on the test split (or, without a split, on the
 * training rows, with a warning and the prefix "train.") with the cluster
 * index its predict gives each row:
 *
 *   inertia         sum of squared distances of the rows to their cluster's
 *                   center (k-means models: the centers come from kmeans.c;
 *                   a model without centers skips it);
 *   silhouette      mean silhouette coefficient, Euclidean, on a seeded
 *                   random sample of at most silhouette_sample rows (the
 *                   all-pairs distances cost sample^2 * features);
 *   adjusted_rand   agreement with the data's labels (class names, or the
 *                   distinct values of a numeric target); skipped when the
 *                   data has no target.
 *
 * Definitions as scikit-learn's (stages/metrics.h).
 */
#include "mp_stage.h"
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRIC_CHOICES "inertia|silhouette|adjusted_rand"

enum { M_INERTIA, M_SILHOUETTE, M_ADJUSTED_RAND, M_COUNT };

static const char *const metric_names[] = { "inertia", "silhouette", "adjusted_rand" };
_Static_assert(sizeof metric_names / sizeof *metric_names == M_COUNT, "metric_names");

/* Defined in kmeans.c: the centers of a k-means model, NULL for any other. */
const float *mp_kmeans_centers(const mp_model *m, size_t *k);

typedef struct eval_conf {
    mp_str_list metrics;        /* names from METRIC_CHOICES */
    int silhouette_sample;      /* >= 2: rows the silhouette is computed on, at most */
} eval_conf;

static int metric_id(const char *name) {
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(name, metric_names[i]) == 0) return i;
    return -1;
}

typedef struct keyed { double v; size_t i; } keyed;

/* Orders by value (NaN last, so the order is total), then by row. */
static int cmp_keyed(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    bool xn = isnan(x->v), yn = isnan(y->v);
    if (xn != yn) return xn ? 1 : -1;
    if (!xn && x->v != y->v) return x->v < y->v ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

/* The data's labels as integers 0, 1, ...: class indices as they are, the
 * distinct values of a numeric target numbered in sorted order. */
static int true_labels(const mp_dataset *ds, int *out, mp_err *err) {
    size_t n = ds->X.n_rows;
    if (ds->task == MP_TASK_CLASSIFICATION) {
        for (size_t i = 0; i < n; i++) out[i] = (int)ds->y[i];
        return MP_OK;
    }
    keyed *v = mp_malloc(mp_mul_size(n, sizeof *v));
    if (!v) return MP_ERR(err, MP_E_NOMEM, "evaluate: out of memory numbering %zu targets", n);
    for (size_t i = 0; i < n; i++) v[i] = (keyed){ ds->y[i], i };
    qsort(v, n, sizeof *v, cmp_keyed);
    int id = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_keyed(&(keyed){ v[i].v, 0 }, &(keyed){ v[i - 1].v, 0 }) != 0) id++;
        out[v[i].i] = id;
    }
    mp_free(v);
    return MP_OK;
}

/* Silhouette on all rows, or on a seeded sample of `cap` rows (scikit-learn
 * draws random_state.permutation(n)[:sample_size] the same way). */
static int sampled_silhouette(mp_ctx *ctx, const mp_matrix *X, const int *labels, size_t k,
                              size_t cap, double *out, mp_err *err) {
    size_t n = X->n_rows, d = X->n_cols;
    if (n <= cap) return mp_silhouette(X, labels, k, out, err);
    size_t *idx = mp_malloc(mp_mul_size(n, sizeof *idx));
    int *lab = mp_malloc(mp_mul_size(cap, sizeof *lab));
    mp_matrix S = { 0 };
    if (!idx || !lab) {
        MP_ERR(err, MP_E_NOMEM, "evaluate: out of memory sampling %zu rows", cap);
        goto done;
    }
    if (mp_matrix_init(&S, cap, d, err) != MP_OK) goto done;
    mp_rng rng;
    mp_ctx_rng(ctx, 0, &rng);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    for (size_t i = 0; i < cap; i++) {     /* partial Fisher-Yates */
        size_t j = i + mp_rng_below(&rng, n - i), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        memcpy(S.data + i * d, X->data + idx[i] * d, d * sizeof *S.data);
        lab[i] = labels[idx[i]];
    }
    mp_silhouette(&S, lab, k, out, err);
done:
    mp_free(idx);
    mp_free(lab);
    mp_matrix_release(&S);
    return err->code;
}

static int eval_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const eval_conf *c = st->conf;
    const mp_model *m = ctx->model;
    if (!m) return MP_ERR(err, MP_E_DATA, "no trained model to evaluate");
    if (m->task != MP_TASK_CLUSTERING)
        return MP_ERR(err, MP_E_CONFIG,
                      "evaluate: clustering needs a clustering model, but '%s' is not one",
                      m->ops->name);
    const mp_dataset *ds = ctx->test ? ctx->test : ctx->train;
    const char *prefix = ctx->test ? "test" : "train";
    if (!ctx->test)
        mp_log(MP_LOG_WARN, "evaluate: no test split; scoring the training rows (add a split stage)");
    if (!ds || ds->X.n_rows == 0) return MP_ERR(err, MP_E_DATA, "evaluate: no rows to score");

    size_t n = ds->X.n_rows, k = 0;
    mp_matrix pred = { 0 };
    int *labels = mp_malloc(mp_mul_size(n, sizeof *labels));
    int *truth = NULL;
    if (!labels) {
        MP_ERR(err, MP_E_NOMEM, "evaluate: out of memory for %zu labels", n);
        goto done;
    }
    if (mp_model_predict(m, &ds->X, &pred, err) != MP_OK) goto done;
    for (size_t i = 0; i < n; i++) {
        float v = pred.data[i];
        if (!(v >= 0.0f && v < 2147483647.0f) || v != floorf(v)) {
            MP_ERR(err, MP_E_DATA, "evaluate: '%s' gave %g as a cluster index (row %zu)",
                   m->ops->name, (double)v, i + 1);
            goto done;
        }
        labels[i] = (int)v;
        if ((size_t)labels[i] + 1 > k) k = (size_t)labels[i] + 1;
    }

    for (size_t i = 0; i < c->metrics.n; i++) {
        int id = metric_id(c->metrics.v[i]);
        double v = NAN;
        char key[256];
        snprintf(key, sizeof key, "%s.%s", prefix, c->metrics.v[i]);
        if (id == M_INERTIA) {
            size_t kc = 0;
            const float *centers = mp_kmeans_centers(m, &kc);
            if (!centers || kc < k) {
                mp_log(MP_LOG_INFO, "evaluate: %s skipped: '%s' has no cluster centers", key,
                       m->ops->name);
                continue;
            }
            v = mp_inertia(&ds->X, labels, centers, kc);
        } else if (id == M_SILHOUETTE) {
            if (sampled_silhouette(ctx, &ds->X, labels, k, (size_t)c->silhouette_sample, &v,
                                   err) != MP_OK)
                goto done;
        } else if (id == M_ADJUSTED_RAND) {
            if (!ds->y) {
                mp_log(MP_LOG_INFO, "evaluate: %s skipped: the data has no labels", key);
                continue;
            }
            if (!truth && !(truth = mp_malloc(mp_mul_size(n, sizeof *truth)))) {
                MP_ERR(err, MP_E_NOMEM, "evaluate: out of memory for %zu labels", n);
                goto done;
            }
            if (true_labels(ds, truth, err) != MP_OK ||
                mp_adjusted_rand(truth, labels, n, &v, err) != MP_OK)
                goto done;
        }
        if (!isfinite(v)) {
            mp_log(MP_LOG_WARN, "evaluate: %s is undefined on this data (one cluster?); "
                   "not recorded", key);
            continue;
        }
        if (mp_ctx_metric(ctx, key, v, -1, err) != MP_OK) goto done;
        mp_log(MP_LOG_INFO, "evaluate: %s = %.6g", key, v);
    }
done:
    mp_matrix_release(&pred);
    mp_free(labels);
    mp_free(truth);
    return err->code;
}

static const mp_param eval_params[] = {
    { "metrics", MP_P_STR_LIST, offsetof(eval_conf, metrics),
      "[inertia, silhouette, adjusted_rand]", 0, 0, 0, METRIC_CHOICES,
      "metrics to record as test.<metric> (adjusted_rand only when the data has labels)" },
    { "silhouette_sample", MP_P_INT, offsetof(eval_conf, silhouette_sample), "5000",
      MP_PF_RANGE, 2, 1000000, NULL,
      "rows (a seeded random sample) the silhouette is computed on, at most" },
    { 0 }
};

const mp_stage_ops mp_stage_eval_clustering = {
    .abi = MP_STAGE_ABI, .name = "clustering", .kind = MP_KIND_EVALUATE,
    .doc = "score a clustering: inertia, silhouette (sampled), adjusted Rand index vs labels",
    .params = eval_params, .conf_size = sizeof(eval_conf), .run = eval_run,
};
