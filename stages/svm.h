/*
 * svm.h -- internals of `train: linear_svm` (stages/svm.c) exposed for its
 * unit tests.  The stage itself is reached through mp_stage_linear_svm and
 * its model ops.
 *
 * Problem layout.  A k-class problem is solved one-vs-rest as R binary
 * problems: R = 1 when k == 2 (class 1 is the positive class), else R = k
 * (problem r: class r against the rest).  With fit_intercept the bias is an
 * extra constant feature of value B = intercept_scaling appended to every
 * row, as liblinear does, so it is regularised like the other weights.  A
 * problem's weight vector therefore has d + 1 floats, w = [ w_1..w_d | w_b ],
 * and its decision value is  s(x) = w . x + B * w_b  (B = 0 without an
 * intercept, which makes w_b inert).  The model stores W (R x d) and
 * b = B * w_b (R).
 *
 * Objectives, for one binary problem with labels y_i in {-1, +1}:
 *     primal (dual CD)   P(w) = 0.5 ||w||^2 + C * sum_i loss(y_i s(x_i))
 *     SGD                F(w) = 0.5 * lambda ||w||^2 + mean_i loss(y_i s(x_i)),
 *                        lambda = 1 / (C n), so F = P / (C n)
 * with loss(m) = max(0, 1 - m) (hinge) or max(0, 1 - m)^2 (squared_hinge).
 * `train.loss` is the sum of the objective over the R problems (they are
 * independent, so the sum is the objective the whole model minimises):
 * dual CD records sum P after passes 1, 2, 4, 8, ... and after the last pass
 * of the slowest problem (step = pass); SGD records sum F once per epoch
 * (step = epoch), as the mean of the mini-batch objectives of that epoch.
 */
#ifndef MP_SVM_H
#define MP_SVM_H

#include "mp_stage.h"

extern const mp_stage_ops mp_stage_linear_svm;

/* The values of the `loss` and `solver` enum parameters (their order in the
 * choices strings). */
enum { MP_SVM_SQUARED_HINGE = 0, MP_SVM_HINGE = 1 };
enum { MP_SVM_DUAL_CD = 0, MP_SVM_SGD = 1 };

/* The stage's config struct, filled by the runner from the parameter table
 * (defaults and ranges are in svm.c's table; tests fill it by hand). */
typedef struct mp_svm_conf {
    int    loss;                /* MP_SVM_SQUARED_HINGE or MP_SVM_HINGE */
    double C;                   /* > 0: weight of the loss against 0.5 ||w||^2 */
    int    solver;              /* MP_SVM_DUAL_CD or MP_SVM_SGD */
    int    max_iter;            /* >= 1: outer passes (dual_cd) or epochs (sgd) */
    double tol;                 /* >= 0: dual_cd projected-gradient tolerance */
    bool   fit_intercept;       /* append the constant feature intercept_scaling */
    double intercept_scaling;   /* > 0: B, the value of that feature */
    bool   shuffle;             /* random coordinate (dual_cd) or row (sgd) order */
    double learning_rate;       /* > 0, sgd only */
    int    batch_size;          /* >= 1, sgd only (capped at the row count) */
    int    optimizer;           /* mp_optim_kind, sgd only */
} mp_svm_conf;

/* Number of binary problems (rows of W) for k >= 2 classes: 1 when k == 2. */
size_t mp_svm_n_problems(size_t n_classes);

/* The training rows shared by every problem (all borrowed). */
typedef struct mp_svm_data {
    const float  *X;        /* n x d row-major */
    size_t        n, d;
    const int    *labels;   /* n class indices */
    double        bias;     /* B: intercept_scaling, or 0 without an intercept */
    const double *sqnorm;   /* n values ||x_i||^2 + B^2 (mp_svm_sqnorms) */
} mp_svm_data;

/* sq[i] = ||x_i||^2 + B^2 in double for the n rows of X (n x d).  Returns the
 * index of the first row holding NaN or Inf, or n when all are finite. */
size_t mp_svm_sqnorms(const float *X, size_t n, size_t d, double B, double *sq);

typedef struct mp_svm_dcd_conf {
    int    loss;        /* MP_SVM_SQUARED_HINGE or MP_SVM_HINGE */
    double C;           /* > 0 */
    int    max_iter;    /* >= 1 outer passes */
    double tol;         /* stop when max PG - min PG <= tol on a full pass */
    bool   shuffle;     /* random coordinate order each pass */
} mp_svm_dcd_conf;

#define MP_SVM_HIST 64  /* primal objective after passes 1, 2, 4, ..., 2^63 */

/* What one dual CD solve reports. */
typedef struct mp_svm_dcd_info {
    int    passes;              /* outer passes taken (<= max_iter) */
    bool   converged;           /* stopped on tol, not on max_iter */
    double pg_gap;              /* max PG - min PG of the last pass (a full one if converged) */
    double primal;              /* P(w) at the end */
    double dual;                /* D(alpha) = -f(alpha) at the end, with the float w:
                                   D <= min P <= P(w) up to that rounding */
    double hist[MP_SVM_HIST];   /* hist[j] = P(w) after pass 2^j, for 2^j <= passes */
} mp_svm_dcd_info;

/* Dual coordinate descent (Hsieh et al. 2008; liblinear -s 1 / -s 3) for
 * the binary problem "class pos against the rest" of D.
 *   w      d + 1 floats, overwritten with the solution (layout above)
 *   alpha  n doubles, overwritten with the dual solution
 *   index  n size_t of scratch
 *   rng    coordinate order (advanced); NULL-able when !c->shuffle
 *   ctx    polled between passes for cancellation; NULL-able
 * Allocates nothing and may run concurrently on distinct w/alpha/index.
 * Returns MP_OK or MP_E_CANCELLED (then w and alpha hold the last pass). */
int mp_svm_dcd_solve(const mp_svm_dcd_conf *c, const mp_svm_data *D, int pos, float *w,
                     double *alpha, size_t *index, mp_rng *rng, const mp_ctx *ctx,
                     mp_svm_dcd_info *info);

/* Primal objective P(w) of problem pos (w: d + 1 floats), in double. */
double mp_svm_primal(const mp_svm_data *D, int pos, const float *w, int loss, double C);

/* The SGD objective summed over R problems on n rows, and its gradient:
 *     sum_r [ 0.5 * lambda ||theta_r||^2 + mean_i loss(y_ir s_r(x_i)) ]
 * theta is R x (d + 1) floats (row r: problem r, layout above); y_ir = +1
 * when labels[i] is problem r's positive class, else -1.
 *   X      n x d row-major; labels n class indices
 *   work   n * R floats of scratch
 *   grad   R x (d + 1) floats receiving the (sub)gradient, or NULL to skip
 * n, d and R must fit in an int (cblas); the caller checks. */
double mp_svm_sgd_loss_grad(const float *theta, size_t R, size_t d, const float *X,
                            const int *labels, size_t n, double B, double lambda, int loss,
                            float *work, float *grad);

#endif /* MP_SVM_H */
