/*
 * metrics.h -- evaluation metrics (classification, regression, clustering)
 * as plain functions over label and score arrays, shared by the evaluate
 * stages and cross-validation.  Definitions
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

/* ---------------------------------------------------------------- regression */

/* Regression metrics of n predictions against n true values, in double, as
 * sklearn.metrics defines them.  NaN when n == 0.  (rmse = sqrt(mse).) */
double mp_mse(const double *y_true, const float *y_pred, size_t n);
double mp_mae(const double *y_true, const float *y_pred, size_t n);
/* 1 - SS_res / SS_tot.  A constant y_true gives 1 for a perfect prediction,
 * else 0 (scikit-learn's force_finite=True); a constant prediction equal to
 * the mean gives 0. */
double mp_r2(const double *y_true, const float *y_pred, size_t n);
/* 1 - Var(y_true - y_pred) / Var(y_true), same constant-target rule as r2. */
double mp_explained_variance(const double *y_true, const float *y_pred, size_t n);

/* ---------------------------------------------------------------- clustering */

/* Sum over rows of ||x_i - centers[labels[i]]||^2 in double: X is n x d,
 * centers k x d row-major (d = X->n_cols).  Rows labelled outside [0, k)
 * are skipped. */
double mp_inertia(const mp_matrix *X, const int *labels, const float *centers, size_t k);

/* Adjusted Rand index of two labelings of n rows (labels >= 0), symmetric,
 * as sklearn.metrics.adjusted_rand_score: 1 for identical partitions (up to
 * renaming), about 0 for independent ones.  *out = NaN when n == 0.
 * Errors: MP_E_NOMEM, MP_E_DATA for a negative label. */
int mp_adjusted_rand(const int *a, const int *b, size_t n, double *out, mp_err *err);

/* Mean silhouette coefficient of the rows of X (n x d) with labels in
 * [0, k), Euclidean, as sklearn.metrics.silhouette_score: per row
 * s = (b - a) / max(a, b), a the mean distance to the other rows of its
 * cluster, b the smallest mean distance to another cluster; 0 for a row
 * alone in its cluster.  Distances come from cblas_sgemm blocks on a
 * centred copy of X (n x d floats of scratch, plus one block of n x 256).
 * *out = NaN when fewer than 2 or more than n - 1 clusters occur (where
 * scikit-learn raises).  Errors: MP_E_NOMEM, MP_E_DATA for a label outside
 * [0, k). */
int mp_silhouette(const mp_matrix *X, const int *labels, size_t k, double *out, mp_err *err);

#endif /* MP_METRICS_H */
