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
    if (m->task != MP_TASK_CLASSIFICATION)
        return MP_ERR(err, MP_E_CONFIG,
                      "evaluate: classification needs a classifier, but '%s' is not one",
                      m->ops->name);
    const mp_dataset *ds = ctx->test ? ctx->test : ctx->train;
    const char *prefix = ctx->test ? "test" : "train";
    if (!ctx->test)
        mp_log(MP_LOG_WARN, "evaluate: no test split; scoring the training rows (add a split stage)");
    if (!ds || ds->task != MP_TASK_CLASSIFICATION || !ds->y)
        return MP_ERR(err, MP_E_DATA, "evaluate: the data has no class labels");
    for (size_t i = 0; i < c->metrics.n; i++) {
        int id = metric_id(c->metrics.v[i]);
        if ((id == M_LOG_LOSS || id == M_ROC_AUC) && !m->has_proba)
            return MP_ERR(err, MP_E_CONFIG,
                          "metric '%s' needs class probabilities, which '%s' does not give",
                          c->metrics.v[i], m->ops->name);
    }

    size_t n = ds->X.n_rows, k = m->n_outputs;
    if (k < 2) k = ds->n_classes;
    mp_matrix scores = { 0 };
    int *y_true = mp_malloc(mp_mul_size(n ? n : 1, sizeof *y_true));
    int *y_pred = mp_malloc(mp_mul_size(n ? n : 1, sizeof *y_pred));
    double *cm = mp_calloc(mp_mul_size(k, k), sizeof *cm);
    if (!y_true || !y_pred || !cm) {
        MP_ERR(err, MP_E_NOMEM, "out of memory evaluating %zu rows", n);
        goto done;
    }
    if (mp_matrix_init(&scores, n, m->n_outputs, err) != MP_OK) goto done;
    if (m->ops->predict(m, &ds->X, &scores, err) != MP_OK) goto done;
    for (size_t i = 0; i < n; i++) {
        const float *r = scores.data + i * scores.n_cols;
        size_t best = 0;
        for (size_t j = 1; j < scores.n_cols; j++)
            if (r[j] > r[best]) best = j;
        y_pred[i] = (int)best;
        y_true[i] = (int)ds->y[i];
    }
    mp_confusion(y_true, y_pred, n, k, cm);

    for (size_t i = 0; i < c->metrics.n; i++) {
        int id = metric_id(c->metrics.v[i]);
        char key[256];
        if (id == M_CONFUSION) {
            for (size_t t = 0; t < k; t++)
                for (size_t p = 0; p < k; p++) {
                    snprintf(key, sizeof key, "%s.confusion_matrix.%s.%s", prefix,
                             ds->class_names[t], ds->class_names[p]);
                    if (mp_ctx_metric(ctx, key, cm[t * k + p], -1, err) != MP_OK) goto done;
                }
            continue;
        }
        double v = NAN;
        switch (id) {
        case M_ACCURACY: v = mp_cm_accuracy(cm, k); break;
        case M_BALANCED: v = mp_cm_balanced_accuracy(cm, k); break;
        case M_PREC_MACRO: v = mp_cm_precision(cm, k, false); break;
        case M_REC_MACRO: v = mp_cm_recall(cm, k, false); break;
        case M_F1_MACRO: v = mp_cm_f1(cm, k, false); break;
        case M_PREC_W: v = mp_cm_precision(cm, k, true); break;
        case M_REC_W: v = mp_cm_recall(cm, k, true); break;
        case M_F1_W: v = mp_cm_f1(cm, k, true); break;
        case M_LOG_LOSS: v = mp_log_loss(y_true, scores.data, n, k); break;
        case M_ROC_AUC: v = mp_roc_auc_ovr(y_true, scores.data, n, k); break;
        default: break;
        }
        snprintf(key, sizeof key, "%s.%s", prefix, metric_names[id]);
        if (isnan(v)) {
            mp_log(MP_LOG_WARN, "evaluate: %s is undefined on this data; not recorded", key);
            continue;
        }
        if (mp_ctx_metric(ctx, key, v, -1, err) != MP_OK) goto done;
        mp_log(MP_LOG_INFO, "evaluate: %s = %.4f", key, v);
    }
done:
    mp_matrix_release(&scores);
    mp_free(y_true);
    mp_free(y_pred);
    mp_free(cm);
    return err->code;
}

static const mp_param eval_params[] = {
    { "metrics", MP_P_STR_LIST, offsetof(eval_conf, metrics),
      "[accuracy, precision_macro, recall_macro, f1_macro, confusion_matrix]", 0, 0, 0,
      METRIC_CHOICES, "metrics to record as test.<metric>" },
    { 0 }
};

const mp_stage_ops mp_stage_eval_classification = {
    .abi = MP_STAGE_ABI, .name = "classification", .kind = MP_KIND_EVALUATE,
    .doc = "score a classifier on the test split: accuracy, precision/recall/F1, log loss, AUC, "
           "confusion matrix",
    .params = eval_params, .conf_size = sizeof(eval_conf), .run = eval_run,
};
