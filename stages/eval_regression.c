/*
 * eval_regression.c -- `evaluate: regression`.
 *
 * Scores the trained regressor on the test split (or, without a split, on
 * the training rows, with a warning and the prefix "train.") and records
 * each requested metric as a final figure "test.<metric>".  The definitions
 * are scikit-learn's (stages/metrics.h), computed in double over float
 * predictions.
 *
 * With cv_folds: K it also cross-validates the pipeline's transform and
 * train stages on K seeded folds of the training rows (runner/cv.c) and
 * records cv.<metric> (the mean over the folds), cv.<metric>.std and one
 * cv.<metric> row per fold with step = fold.  Folds are not stratified: the
 * target is a number, not a class.
 */
#include "mp_stage.h"
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define METRIC_CHOICES "mse|rmse|mae|r2|explained_variance"

enum { M_MSE, M_RMSE, M_MAE, M_R2, M_EXPLAINED_VARIANCE, M_COUNT };

static const char *const metric_names[] = { "mse", "rmse", "mae", "r2", "explained_variance" };
_Static_assert(sizeof metric_names / sizeof *metric_names == M_COUNT, "metric_names");

typedef struct eval_conf {
    mp_str_list metrics;    /* names from METRIC_CHOICES */
    int         cv_folds;   /* 0 = no cross-validation, else k >= 2 */
} eval_conf;

static int metric_id(const char *name) {
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(name, metric_names[i]) == 0) return i;
    return -1;
}

/* Metric id of n predictions against the targets y; NaN when the runner let
 * an unknown name through (it checks them against the choices). */
static double metric_value(int id, const double *y, const float *pred, size_t n) {
    switch (id) {
    case M_MSE: return mp_mse(y, pred, n);
    case M_RMSE: return sqrt(mp_mse(y, pred, n));
    case M_MAE: return mp_mae(y, pred, n);
    case M_R2: return mp_r2(y, pred, n);
    case M_EXPLAINED_VARIANCE: return mp_explained_variance(y, pred, n);
    default: return NAN;
    }
}

static int check_model(const mp_model *m, mp_err *err) {
    if (m->task != MP_TASK_REGRESSION)
        return MP_ERR(err, MP_E_CONFIG,
                      "evaluate: regression needs a regressor, but '%s' is not one",
                      m->ops->name);
    return MP_OK;
}

/* ---------------------------------------------------------------- cross-validation */

typedef struct cv_acc {
    mp_ctx          *ctx;
    bool             want[M_COUNT];     /* asked for (a name listed twice counts once) */
    mp_cv_stat       stat[M_COUNT];     /* over the folds where the metric was defined */
} cv_acc;

/* One fold: record cv.<metric> at step = fold and accumulate mean/std. */
static int cv_fold(void *ud, int fold, const mp_model *m, const mp_dataset *held_out,
                   mp_err *err) {
    cv_acc *a = ud;
    if (check_model(m, err) != MP_OK) return err->code;
    if (!held_out->y || held_out->X.n_rows == 0)
        return MP_ERR(err, MP_E_DATA, "evaluate: fold %d has no targets to score", fold);
    mp_matrix pred = { 0 };
    if (mp_model_predict(m, &held_out->X, &pred, err) != MP_OK) return err->code;
    for (int id = 0; id < M_COUNT && err->code == MP_OK; id++) {
        if (!a->want[id]) continue;
        double v = metric_value(id, held_out->y, pred.data, held_out->X.n_rows);
        if (!isfinite(v)) continue;     /* e.g. r2 of a fold whose targets are all equal */
        mp_cv_stat_add(a->ctx, &a->stat[id], metric_names[id], v, fold, err);
    }
    mp_matrix_release(&pred);
    return err->code;
}

static int cross_validate(const eval_conf *c, mp_ctx *ctx, mp_err *err) {
    cv_acc a = { .ctx = ctx };
    for (size_t i = 0; i < c->metrics.n; i++) {
        int id = metric_id(c->metrics.v[i]);
        if (id >= 0) a.want[id] = true;
    }
    /* Regression targets are numbers: there are no classes to stratify by. */
    if (mp_ctx_cross_validate(ctx, c->cv_folds, false, cv_fold, &a, err) != MP_OK)
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
    if (!ds || !ds->y)
        return MP_ERR(err, MP_E_DATA, "evaluate: the data has no target column");
    if (ds->task != MP_TASK_REGRESSION)
        return MP_ERR(err, MP_E_DATA, "evaluate: regression needs a numeric target; '%s' holds "
                      "class names", ds->target_name ? ds->target_name : "the target");
    if (ds->X.n_rows == 0) return MP_ERR(err, MP_E_DATA, "evaluate: no rows to score");

    mp_matrix pred = { 0 };
    if (mp_model_predict(m, &ds->X, &pred, err) != MP_OK) return err->code;
    const double *y = ds->y;
    size_t n = ds->X.n_rows;
    for (size_t i = 0; i < c->metrics.n; i++) {
        double v = metric_value(metric_id(c->metrics.v[i]), y, pred.data, n);
        char key[256];
        snprintf(key, sizeof key, "%s.%s", prefix, c->metrics.v[i]);
        if (!isfinite(v)) {
            mp_log(MP_LOG_WARN, "evaluate: %s is undefined on this data; not recorded", key);
            continue;
        }
        if (mp_ctx_metric(ctx, key, v, -1, err) != MP_OK) break;
        mp_log(MP_LOG_INFO, "evaluate: %s = %.6g", key, v);
    }
    mp_matrix_release(&pred);
    if (err->code == MP_OK && c->cv_folds >= 2) cross_validate(c, ctx, err);
    return err->code;
}

static const mp_param eval_params[] = {
    { "metrics", MP_P_STR_LIST, offsetof(eval_conf, metrics),
      "[mse, rmse, mae, r2, explained_variance]", 0, 0, 0, METRIC_CHOICES,
      "metrics to record as test.<metric> (and cv.<metric>; scikit-learn's definitions)" },
    { "cv_folds", MP_P_INT, offsetof(eval_conf, cv_folds), "0", MP_PF_RANGE, 0, 100, NULL,
      "k-fold cross-validation of the transform and train stages on the training rows "
      "(seeded, not stratified); records cv.<metric>, cv.<metric>.std and one row per fold "
      "(0 = off)" },
    { 0 }
};

const mp_stage_ops mp_stage_eval_regression = {
    .abi = MP_STAGE_ABI, .name = "regression", .kind = MP_KIND_EVALUATE,
    .doc = "score a regressor on the test split: MSE, RMSE, MAE, R^2, explained variance, "
           "optionally with k-fold cross-validation",
    .params = eval_params, .conf_size = sizeof(eval_conf), .check = eval_check, .run = eval_run,
};
