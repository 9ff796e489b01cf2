/*
 * eval_classification.c -- `evaluate: classification`.
 *
 * Scores the trained model on the test split (or, without a split, on the
 * training rows, with a warning and the prefix "train.") and records each
 * requested metric as a final figure "test.<metric>".  The confusion matrix
 * becomes one metric row per cell, "test.confusion_matrix.<true>.<predicted>"
 * with class names, so plain SQL can rebuild it.
 */
#include "mp_stage.h"
#include "metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define METRIC_CHOICES \
    "accuracy|balanced_accuracy|precision_macro|recall_macro|f1_macro|precision_weighted|" \
    "recall_weighted|f1_weighted|log_loss|roc_auc|confusion_matrix"

enum { M_ACCURACY, M_BALANCED, M_PREC_MACRO, M_REC_MACRO, M_F1_MACRO, M_PREC_W, M_REC_W, M_F1_W,
       M_LOG_LOSS, M_ROC_AUC, M_CONFUSION, M_COUNT };

static const char *const metric_names[] = { "accuracy", "balanced_accuracy", "precision_macro",
    "recall_macro", "f1_macro", "precision_weighted", "recall_weighted", "f1_weighted",
    "log_loss", "roc_auc", "confusion_matrix" };
_Static_assert(sizeof metric_names / sizeof *metric_names == M_COUNT, "metric_names");

typedef struct eval_conf {
    mp_str_list metrics;    /* names from METRIC_CHOICES */
    int         cv_folds;   /* 0 = no cross-validation, else k >= 2 */
    bool        cv_stratified;
} eval_conf;

static int metric_id(const char *name) {
    for (int i = 0; i < M_COUNT; i++)
        if (strcmp(name, metric_names[i]) == 0) return i;
    return -1;
}

/* A model's predictions on one data set, and its confusion matrix. */
typedef struct scored {
    mp_matrix scores;       /* n x n_outputs probabilities or decision scores */
    int      *y_true, *y_pred;
    double   *cm;           /* k x k */
    size_t    n, k;
} scored;

static void scored_release(scored *s) {
    mp_matrix_release(&s->scores);
    mp_free(s->y_true);
    mp_free(s->y_pred);
    mp_free(s->cm);
}

static int score(const mp_model *m, const mp_dataset *ds, scored *s, mp_err *err) {
    size_t n = ds->X.n_rows, k = m->n_outputs < 2 ? ds->n_classes : m->n_outputs;
    *s = (scored){ .n = n, .k = k };
    s->y_true = mp_malloc(mp_mul_size(n ? n : 1, sizeof *s->y_true));
    s->y_pred = mp_malloc(mp_mul_size(n ? n : 1, sizeof *s->y_pred));
    s->cm = mp_calloc(mp_mul_size(k, k), sizeof *s->cm);
    if (!s->y_true || !s->y_pred || !s->cm) {
        scored_release(s);
        return MP_ERR(err, MP_E_NOMEM, "out of memory evaluating %zu rows", n);
    }
    if (mp_matrix_init(&s->scores, n, m->n_outputs, err) != MP_OK ||
        m->ops->predict(m, &ds->X, &s->scores, err) != MP_OK) {
        scored_release(s);
        return err->code;
    }
    for (size_t i = 0; i < n; i++) {
        const float *r = s->scores.data + i * s->scores.n_cols;
        size_t best = 0;
        for (size_t j = 1; j < s->scores.n_cols; j++)
            if (r[j] > r[best]) best = j;
        s->y_pred[i] = (int)best;
        s->y_true[i] = (int)ds->y[i];
    }
    mp_confusion(s->y_true, s->y_pred, n, k, s->cm);
    return MP_OK;
}

static double metric_value(int id, const scored *s) {
    switch (id) {
    case M_ACCURACY: return mp_cm_accuracy(s->cm, s->k);
    case M_BALANCED: return mp_cm_balanced_accuracy(s->cm, s->k);
    case M_PREC_MACRO: return mp_cm_precision(s->cm, s->k, false);
    case M_REC_MACRO: return mp_cm_recall(s->cm, s->k, false);
    case M_F1_MACRO: return mp_cm_f1(s->cm, s->k, false);
    case M_PREC_W: return mp_cm_precision(s->cm, s->k, true);
    case M_REC_W: return mp_cm_recall(s->cm, s->k, true);
    case M_F1_W: return mp_cm_f1(s->cm, s->k, true);
    case M_LOG_LOSS: return mp_log_loss(s->y_true, s->scores.data, s->n, s->k);
    case M_ROC_AUC: return mp_roc_auc_ovr(s->y_true, s->scores.data, s->n, s->k);
    default: return NAN;
    }
}

static int check_model(const eval_conf *c, const mp_model *m, mp_err *err) {
    if (m->task != MP_TASK_CLASSIFICATION)
        return MP_ERR(err, MP_E_CONFIG,
                      "evaluate: classification needs a classifier, but '%s' is not one",
                      m->ops->name);
    for (size_t i = 0; i < c->metrics.n; i++) {
        int id = metric_id(c->metrics.v[i]);
        if ((id == M_LOG_LOSS || id == M_ROC_AUC) && !m->has_proba)
            return MP_ERR(err, MP_E_CONFIG,
                          "metric '%s' needs class probabilities, which '%s' does not give",
                          c->metrics.v[i], m->ops->name);
    }
    return MP_OK;
}

/* ---------------------------------------------------------------- cross-validation */

typedef struct cv_acc {
    const eval_conf *conf;
    mp_ctx          *ctx;
    mp_cv_stat       stat[M_COUNT];     /* over the folds where the metric was defined */
} cv_acc;

/* One fold: record cv.<metric> at step = fold and accumulate mean/std. */
static int cv_fold(void *ud, int fold, const mp_model *m, const mp_dataset *held_out, mp_err *err) {
    cv_acc *a = ud;
    scored s;
    if (check_model(a->conf, m, err) != MP_OK || score(m, held_out, &s, err) != MP_OK)
        return err->code;
    for (size_t i = 0; i < a->conf->metrics.n && err->code == MP_OK; i++) {
        int id = metric_id(a->conf->metrics.v[i]);
        if (id == M_CONFUSION) continue;
        double v = metric_value(id, &s);
        if (isnan(v)) continue;
        mp_cv_stat_add(a->ctx, &a->stat[id], metric_names[id], v, fold, err);
    }
    scored_release(&s);
    return err->code;
}

static int cross_validate(const eval_conf *c, mp_ctx *ctx, mp_err *err) {
    cv_acc a = { .conf = c, .ctx = ctx };
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
    if (check_model(c, m, err) != MP_OK) return err->code;
    const mp_dataset *ds = ctx->test ? ctx->test : ctx->train;
    const char *prefix = ctx->test ? "test" : "train";
    if (!ctx->test)
        mp_log(MP_LOG_WARN, "evaluate: no test split; scoring the training rows (add a split stage)");
    if (!ds || ds->task != MP_TASK_CLASSIFICATION || !ds->y)
        return MP_ERR(err, MP_E_DATA, "evaluate: the data has no class labels");

    scored s;
    if (score(m, ds, &s, err) != MP_OK) return err->code;
    for (size_t i = 0; i < c->metrics.n && err->code == MP_OK; i++) {
        int id = metric_id(c->metrics.v[i]);
        char key[256];
        if (id == M_CONFUSION) {
            for (size_t t = 0; t < s.k && err->code == MP_OK; t++)
                for (size_t p = 0; p < s.k && err->code == MP_OK; p++) {
                    snprintf(key, sizeof key, "%s.confusion_matrix.%s.%s", prefix,
                             ds->class_names[t], ds->class_names[p]);
                    mp_ctx_metric(ctx, key, s.cm[t * s.k + p], -1, err);
                }
            continue;
        }
        double v = metric_value(id, &s);
        snprintf(key, sizeof key, "%s.%s", prefix, metric_names[id]);
        if (isnan(v)) {
            mp_log(MP_LOG_WARN, "evaluate: %s is undefined on this data; not recorded", key);
            continue;
        }
        if (mp_ctx_metric(ctx, key, v, -1, err) == MP_OK)
            mp_log(MP_LOG_INFO, "evaluate: %s = %.4f", key, v);
    }
    scored_release(&s);
    if (err->code == MP_OK && c->cv_folds >= 2) cross_validate(c, ctx, err);
    return err->code;
}

static const mp_param eval_params[] = {
    { "metrics", MP_P_STR_LIST, offsetof(eval_conf, metrics),
      "[accuracy, precision_macro, recall_macro, f1_macro, confusion_matrix]", 0, 0, 0,
      METRIC_CHOICES, "metrics to record as test.<metric> (and cv.<metric>)" },
    { "cv_folds", MP_P_INT, offsetof(eval_conf, cv_folds), "0", MP_PF_RANGE, 0, 100, NULL,
      "k-fold cross-validation of the transform and train stages on the training rows; "
      "records cv.<metric>, cv.<metric>.std and one row per fold (0 = off)" },
    { "cv_stratified", MP_P_BOOL, offsetof(eval_conf, cv_stratified), "true", 0, 0, 0, NULL,
      "keep class proportions in every fold" },
    { 0 }
};

const mp_stage_ops mp_stage_eval_classification = {
    .abi = MP_STAGE_ABI, .name = "classification", .kind = MP_KIND_EVALUATE,
    .doc = "score a classifier on the test split (accuracy, precision/recall/F1, log loss, AUC, "
           "confusion matrix), optionally with k-fold cross-validation",
    .params = eval_params, .conf_size = sizeof(eval_conf), .check = eval_check, .run = eval_run,
};
