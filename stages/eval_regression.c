/*
 * eval_regression.c -- `evaluate: regression`.
 *
 * Scores the trained regressor on the test split (or, without a split, on
 * the training rows, with a warning and the prefix "train.") and records
 * each requested metric as a final figure "test.<metric>".  The definitions
 * are scikit-learn's (stages/metrics.h), computed in double over float
 * predictions.
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
} eval_conf;

static int metric_id(const char *name) {
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(name, metric_names[i]) == 0) return i;
    return -1;
}

static int eval_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const eval_conf *c = st->conf;
    const mp_model *m = ctx->model;
    if (!m) return MP_ERR(err, MP_E_DATA, "no trained model to evaluate");
    if (m->task != MP_TASK_REGRESSION)
        return MP_ERR(err, MP_E_CONFIG,
                      "evaluate: regression needs a regressor, but '%s' is not one",
                      m->ops->name);
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
        int id = metric_id(c->metrics.v[i]);
        double v = NAN;
        switch (id) {
        case M_MSE: v = mp_mse(y, pred.data, n); break;
        case M_RMSE: v = sqrt(mp_mse(y, pred.data, n)); break;
        case M_MAE: v = mp_mae(y, pred.data, n); break;
        case M_R2: v = mp_r2(y, pred.data, n); break;
        case M_EXPLAINED_VARIANCE: v = mp_explained_variance(y, pred.data, n); break;
        default: break;     /* the runner checked the names against the choices */
        }
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
    return err->code;
}

static const mp_param eval_params[] = {
    { "metrics", MP_P_STR_LIST, offsetof(eval_conf, metrics),
      "[mse, rmse, mae, r2, explained_variance]", 0, 0, 0, METRIC_CHOICES,
      "metrics to record as test.<metric> (scikit-learn's definitions)" },
    { 0 }
};

const mp_stage_ops mp_stage_eval_regression = {
    .abi = MP_STAGE_ABI, .name = "regression", .kind = MP_KIND_EVALUATE,
    .doc = "score a regressor on the test split: MSE, RMSE, MAE, R^2, explained variance",
    .params = eval_params, .conf_size = sizeof(eval_conf), .run = eval_run,
};
