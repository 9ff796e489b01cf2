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

/* The stage's config struct, filled by the runner from the parameter table
 * (defaults and ranges are in logreg.c's table; tests fill it by hand). */
typedef struct mp_logreg_conf {
    int    optimizer;           /* mp_optim_kind: MP_OPT_SGD, _MOMENTUM, _ADAM */
    double learning_rate;       /* > 0 */
    int    epochs;              /* passes over the data, >= 1 */
    int    batch_size;          /* rows per step, >= 1 (capped at the row count) */
    double l2;                  /* >= 0: 0.5 * l2 * ||W||^2 added to the mean loss */
    double momentum;            /* momentum optimizer, [0, 1) */
    double beta1, beta2;        /* adam, [0, 1) */
    double weight_decay;        /* >= 0: decoupled decay, times learning_rate, per step */
    double tol;                 /* relative improvement counted as progress; 0 = no early stop */
    int    n_iter_no_change;    /* >= 1: epochs without progress before stopping */
    bool   shuffle;             /* reshuffle rows every epoch (seeded by mp_ctx_rng) */
} mp_logreg_conf;

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
