/*
 * metrics.h -- evaluation metrics as plain functions over label and score
 * arrays, shared by the evaluate stages and cross-validation.  Definitions
 * follow scikit-learn's (sklearn.metrics) so figures compare one to one.
 */
#ifndef MP_METRICS_H
#define MP_METRICS_H

#include "mp_stage.h"

/* Confusion matrix: cm[t * k + p] counts rows of true class t predicted p.
 * Labels outside [0, k) are ignored. */
void   mp_confusion(const int *y_true, const int *y_pred, size_t n, size_t k, double *cm);
double mp_cm_accuracy(const double *cm, size_t k);
/* Per-class average of recall (classes with no true rows skipped). */
double mp_cm_balanced_accuracy(const double *cm, size_t k);
/* Macro (weighted = false) or support-weighted averages over classes that
 * occur in truth or prediction; a 0/0 precision or recall counts as 0 (as
 * scikit-learn's zero_division=0). */
double mp_cm_precision(const double *cm, size_t k, bool weighted);
double mp_cm_recall(const double *cm, size_t k, bool weighted);
double mp_cm_f1(const double *cm, size_t k, bool weighted);
/* Mean negative log-likelihood of the true class; probabilities clipped to
 * [1e-15, 1 - 1e-15] and each row renormalised. proba is n x k row-major. */
double mp_log_loss(const int *y_true, const float *proba, size_t n, size_t k);
/* Area under the ROC curve of score for the positive rows (ties averaged);
 * NaN when one class is absent. */
double mp_roc_auc_binary(const int *positive, const float *score, size_t n);
/* One-vs-rest macro AUC over classes present (binary: AUC of column 1). */
double mp_roc_auc_ovr(const int *y_true, const float *proba, size_t n, size_t k);

#endif /* MP_METRICS_H */
