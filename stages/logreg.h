/*
 * logreg.h -- internals of `train: logistic_regression` (stages/logreg.c)
 * exposed for its unit tests.  The stage itself is reached through
 * mp_stage_logistic_regression and its model ops.
 *
 * Parameter layout, shared by training, the optimizer and the model file:
 * theta = [ W | b ], W is R x d row-major (one row per logit), b has R floats.
 * R = 1 for two classes (one logit z, P(class 1) = sigmoid(z)), else R = k
 * (softmax over k logits).
 */
#ifndef MP_LOGREG_H
#define MP_LOGREG_H

#include "mp_stage.h"

extern const mp_stage_ops mp_stage_logistic_regression;

/* Rows of W for k >= 2 classes: 1 when k == 2, else k. */
size_t mp_logreg_n_logits(size_t n_classes);

/* Floats in theta: R * (d + 1); SIZE_MAX if that overflows. */
size_t mp_logreg_n_params(size_t n_classes, size_t n_features);

/* Objective and gradient on n >= 1 rows:
 *     loss = mean_i cross_entropy(softmax(W x_i + b), y_i) + 0.5 * l2 * ||W||^2
 * (b is not penalised), accumulated in double.  grad (R*(d+1) floats, same
 * layout as theta) receives d loss / d theta, or is skipped when NULL.
 *   theta     R*(d+1) floats, read only
 *   X         n x d row-major rows; y: n class indices in [0, k)
 *   work      n * R floats of scratch (overwritten)
 * n, d and k must fit in an int (cblas); the caller checks. */
double mp_logreg_loss_grad(const float *theta, size_t n_classes, size_t n_features,
                           const float *X, const int *y, size_t n, double l2,
                           float *work, float *grad);

#endif /* MP_LOGREG_H */
