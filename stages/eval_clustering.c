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
 *
 * With cv_folds: K it also cross-validates the pipeline's transform and
 * train stages on K seeded folds of the training rows (runner/cv.c): each
 * fold's model scores its held-out rows, and the stage records cv.<metric>
 * (the mean over the folds), cv.<metric>.std and one cv.<metric> row per
 * fold with step = fold.  A held-out fold's inertia sums over its rows only,
 * so it is about 1/K of the training rows' figure.
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
    int cv_folds;               /* 0 = no cross-validation, else k >= 2 */
    bool cv_stratified;         /* folds keep the proportions of the data's classes */
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
static int sampled_silhouette(mp_ctx *ctx, uint64_t stream, const mp_matrix *X,
                              const int *labels, size_t k, size_t cap, double *out, mp_err *err) {
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
    mp_ctx_rng(ctx, stream, &rng);
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

/* A model's clustering of one data set, and what scoring it needs. */
typedef struct scored {
    const mp_model   *m;
    const mp_dataset *ds;
    int              *labels;   /* cluster index of each row */
    int              *truth;    /* the data's labels numbered 0.. (made on first use) */
    size_t            k;        /* 1 + the largest cluster index */
} scored;

static void scored_release(scored *s) {
    mp_free(s->labels);
    mp_free(s->truth);
}

static int score(const mp_model *m, const mp_dataset *ds, scored *s, mp_err *err) {
    size_t n = ds->X.n_rows;
    mp_matrix pred = { 0 };
    *s = (scored){ .m = m, .ds = ds };
    if (!(s->labels = mp_malloc(mp_mul_size(n, sizeof *s->labels))))
        return MP_ERR(err, MP_E_NOMEM, "evaluate: out of memory for %zu labels", n);
    if (mp_model_predict(m, &ds->X, &pred, err) != MP_OK) goto fail;
    for (size_t i = 0; i < n; i++) {
        float v = pred.data[i];
        if (!(v >= 0.0f && v < 2147483647.0f) || v != floorf(v)) {
            MP_ERR(err, MP_E_DATA, "evaluate: '%s' gave %g as a cluster index (row %zu)",
                   m->ops->name, (double)v, i + 1);
            goto fail;
        }
        s->labels[i] = (int)v;
        if ((size_t)s->labels[i] + 1 > s->k) s->k = (size_t)s->labels[i] + 1;
    }
    mp_matrix_release(&pred);
    return MP_OK;
fail:
    mp_matrix_release(&pred);
    scored_release(s);
    return err->code;
}

/* Metric id of a scored data set into *v.  A metric that does not apply
 * (no centers, no labels) sets *skip to the reason and *v to NaN; one that
 * is undefined on this data (one cluster) leaves *v NaN.  `stream` seeds the
 * silhouette's sample. */
static int metric_value(const eval_conf *c, mp_ctx *ctx, scored *s, int id, uint64_t stream,
                        double *v, const char **skip, mp_err *err) {
    const mp_dataset *ds = s->ds;
    size_t n = ds->X.n_rows;
    *v = NAN;
    *skip = NULL;
    if (id == M_INERTIA) {
        size_t kc = 0;
        const float *centers = mp_kmeans_centers(s->m, &kc);
        if (!centers || kc < s->k) *skip = "the model has no cluster centers";
        else *v = mp_inertia(&ds->X, s->labels, centers, kc);
    } else if (id == M_SILHOUETTE) {
        return sampled_silhouette(ctx, stream, &ds->X, s->labels, s->k,
                                  (size_t)c->silhouette_sample, v, err);
    } else if (id == M_ADJUSTED_RAND) {
        if (!ds->y) {
            *skip = "the data has no labels";
            return MP_OK;
        }
        if (!s->truth) {
            if (!(s->truth = mp_malloc(mp_mul_size(n, sizeof *s->truth))))
                return MP_ERR(err, MP_E_NOMEM, "evaluate: out of memory for %zu labels", n);
            if (true_labels(ds, s->truth, err) != MP_OK) {
                mp_free(s->truth);
                s->truth = NULL;
                return err->code;
            }
        }
        return mp_adjusted_rand(s->truth, s->labels, n, v, err);
    }
    return MP_OK;
}

static int check_model(const mp_model *m, mp_err *err) {
    if (m->task != MP_TASK_CLUSTERING)
        return MP_ERR(err, MP_E_CONFIG,
                      "evaluate: clustering needs a clustering model, but '%s' is not one",
                      m->ops->name);
    return MP_OK;
}

/* ---------------------------------------------------------------- cross-validation */

typedef struct cv_acc {
    const eval_conf *conf;
    mp_ctx          *ctx;
    bool             want[M_COUNT];     /* asked for (a name listed twice counts once) */
    mp_cv_stat       stat[M_COUNT];     /* over the folds where the metric was defined */
} cv_acc;

/* One fold: record cv.<metric> at step = fold and accumulate mean/std. */
static int cv_fold(void *ud, int fold, const mp_model *m, const mp_dataset *held_out,
                   mp_err *err) {
    cv_acc *a = ud;
    scored s;
    if (check_model(m, err) != MP_OK) return err->code;
    if (held_out->X.n_rows == 0)
        return MP_ERR(err, MP_E_DATA, "evaluate: fold %d has no rows to score", fold);
    if (score(m, held_out, &s, err) != MP_OK) return err->code;
    for (int id = 0; id < M_COUNT && err->code == MP_OK; id++) {
        if (!a->want[id]) continue;
        double v;
        const char *skip;
        if (metric_value(a->conf, a->ctx, &s, id, (uint64_t)fold, &v, &skip, err) != MP_OK)
            break;
        if (!isfinite(v)) continue;     /* skipped, or one cluster in this fold */
        mp_cv_stat_add(a->ctx, &a->stat[id], metric_names[id], v, fold, err);
    }
    scored_release(&s);
    return err->code;
}

static int cross_validate(const eval_conf *c, mp_ctx *ctx, mp_err *err) {
    cv_acc a = { .conf = c, .ctx = ctx };
    for (size_t i = 0; i < c->metrics.n; i++) {
        int id = metric_id(c->metrics.v[i]);
        if (id >= 0) a.want[id] = true;
    }
    if (mp_ctx_cross_validate(ctx, c->cv_folds, c->cv_stratified, cv_fold, &a, err) != MP_OK)
        return err->code;
    for (int id = 0; id < M_COUNT; id++)
        if (mp_cv_stat_record(ctx, &a.stat[id], metric_names[id], err) != MP_OK) return err->code;
    return MP_OK;
}

/* ---------------------------------------------------------------- stage */

static int eval_check(const void *conf, mp_err *err) {
    const eval_conf *c = conf;
    if (c->cv_folds == 1)
        return MP_ERR(err, MP_E_CONFIG, "cv_folds must be 0 (no cross-validation) or at least 2");
    return MP_OK;
}

static int eval_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const eval_conf *c = st->conf;
    const mp_model *m = ctx->model;
    if (!m) return MP_ERR(err, MP_E_DATA, "no trained model to evaluate");
    if (check_model(m, err) != MP_OK) return err->code;
    const mp_dataset *ds = ctx->test ? ctx->test : ctx->train;
    const char *prefix = ctx->test ? "test" : "train";
    if (!ctx->test)
        mp_log(MP_LOG_WARN, "evaluate: no test split; scoring the training rows (add a split stage)");
    if (!ds || ds->X.n_rows == 0) return MP_ERR(err, MP_E_DATA, "evaluate: no rows to score");

    scored s;
    if (score(m, ds, &s, err) != MP_OK) return err->code;
    for (size_t i = 0; i < c->metrics.n; i++) {
        double v;
        const char *skip;
        char key[256];
        snprintf(key, sizeof key, "%s.%s", prefix, c->metrics.v[i]);
        if (metric_value(c, ctx, &s, metric_id(c->metrics.v[i]), 0, &v, &skip, err) != MP_OK)
            break;
        if (skip) {
            mp_log(MP_LOG_INFO, "evaluate: %s skipped: %s", key, skip);
            continue;
        }
        if (!isfinite(v)) {
            mp_log(MP_LOG_WARN, "evaluate: %s is undefined on this data (one cluster?); "
                   "not recorded", key);
            continue;
        }
        if (mp_ctx_metric(ctx, key, v, -1, err) != MP_OK) break;
        mp_log(MP_LOG_INFO, "evaluate: %s = %.6g", key, v);
    }
    scored_release(&s);
    if (err->code == MP_OK && c->cv_folds >= 2) cross_validate(c, ctx, err);
    return err->code;
}

static const mp_param eval_params[] = {
    { "metrics", MP_P_STR_LIST, offsetof(eval_conf, metrics),
      "[inertia, silhouette, adjusted_rand]", 0, 0, 0, METRIC_CHOICES,
      "metrics to record as test.<metric> (and cv.<metric>; adjusted_rand only when the data "
      "has labels)" },
    { "silhouette_sample", MP_P_INT, offsetof(eval_conf, silhouette_sample), "5000",
      MP_PF_RANGE, 2, 1000000, NULL,
      "rows (a seeded random sample) the silhouette is computed on, at most" },
    { "cv_folds", MP_P_INT, offsetof(eval_conf, cv_folds), "0", MP_PF_RANGE, 0, 100, NULL,
      "k-fold cross-validation of the transform and train stages on the training rows; "
      "records cv.<metric>, cv.<metric>.std and one row per fold (0 = off)" },
    { "cv_stratified", MP_P_BOOL, offsetof(eval_conf, cv_stratified), "false", 0, 0, 0, NULL,
      "keep the proportions of the data's classes (a text target) in every fold" },
    { 0 }
};

const mp_stage_ops mp_stage_eval_clustering = {
    .abi = MP_STAGE_ABI, .name = "clustering", .kind = MP_KIND_EVALUATE,
    .doc = "score a clustering: inertia, silhouette (sampled), adjusted Rand index vs labels, "
           "optionally with k-fold cross-validation",
    .params = eval_params, .conf_size = sizeof(eval_conf), .check = eval_check, .run = eval_run,
};
