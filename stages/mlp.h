/*
 * mlp.h -- internals of `train: mlp` (stages/mlp.c) exposed for its unit
 * tests.  The stage itself is reached through mp_stage_mlp and its model ops.
 *
 * A network of L = n_layers weight layers maps sizes[0] inputs through
 * hidden layers of sizes[1..L-1] units to sizes[L] outputs.  Layer l
 * (0-based) computes
 *
 *     Z_l = A_{l-1} W_l^T + b_l,    A_l = f(Z_l)        (A_{-1} = X)
 *
 * with f the hidden activation for l < L-1, and for the output layer either
 * softmax (classification, cross-entropy loss) or the identity (regression,
 * mean squared error).  All rows are samples: X is n x sizes[0] row-major.
 *
 * Parameter layout, shared by training, the optimizer state and the model
 * file: one float block holding, for l = 0 .. L-1 in order, W_l
 * (sizes[l+1] x sizes[l], row-major: one row per unit, as PyTorch's
 * nn.Linear) and then b_l (sizes[l+1] floats).  offset[l] is where W_l
 * starts; b_l starts at offset[l] + sizes[l+1] * sizes[l].
 */
#ifndef MP_MLP_H
#define MP_MLP_H

#include "mp_stage.h"

extern const mp_stage_ops mp_stage_mlp;

/* Hidden activations; the order matches MP_MLP_ACTIVATIONS and the file. */
enum { MP_MLP_RELU = 0, MP_MLP_TANH = 1, MP_MLP_SIGMOID = 2 };
#define MP_MLP_ACTIVATIONS "relu|tanh|sigmoid"

/* Weight initialisation (the `init` parameter). */
enum { MP_MLP_INIT_AUTO = 0, MP_MLP_INIT_HE = 1, MP_MLP_INIT_GLOROT = 2 };
#define MP_MLP_INITS "auto|he|glorot"

/* What the network predicts (the `task` parameter). */
enum { MP_MLP_CLASSIFICATION = 0, MP_MLP_REGRESSION = 1 };
#define MP_MLP_TASKS "classification|regression"

/* The stage's config struct, filled by the runner from the parameter table
 * (defaults and ranges are in mlp.c's table; tests fill it by hand). */
typedef struct mp_mlp_conf {
    mp_int_list hidden;         /* units per hidden layer, each >= 1; empty = no hidden layer */
    int    activation;          /* MP_MLP_RELU, _TANH, _SIGMOID */
    int    optimizer;           /* mp_optim_kind: MP_OPT_SGD, _MOMENTUM, _ADAM */
    double learning_rate;       /* > 0 */
    double momentum;            /* momentum optimizer, [0, 1) */
    double beta1, beta2;        /* adam, [0, 1) */
    double weight_decay;        /* >= 0: decoupled decay of the weights (not biases) per step */
    int    batch_size;          /* rows per step, >= 1 (capped at the training row count) */
    int    epochs;              /* passes over the training rows, >= 1 */
    bool   shuffle;             /* reshuffle the training rows every epoch (seeded) */
    double validation_split;    /* [0, 0.9]: fraction of rows held out (seeded) */
    int    patience;            /* >= 0: epochs without val.loss progress before stopping */
    int    init;                /* MP_MLP_INIT_AUTO, _HE, _GLOROT */
    int    threads;             /* 0 .. 64 training threads; 0 = OpenBLAS' thread count */
    int    task;                /* MP_MLP_CLASSIFICATION or MP_MLP_REGRESSION (see mlp.c) */
} mp_mlp_conf;

/* A network: shape and parameters in one allocation (free with mp_mlp_free). */
typedef struct mp_mlp {
    size_t  n_layers;           /* L >= 1 weight layers (hidden layers + 1) */
    int     activation;         /* of the hidden layers: MP_MLP_RELU ... */
    bool    softmax;            /* output: softmax + cross-entropy; false: linear + MSE */
    size_t  n_params;           /* floats in params */
    size_t *sizes;              /* L + 1 layer widths; sizes[0] = inputs, sizes[L] = outputs */
    size_t *offset;             /* L: start of W_l in params (b_l follows W_l) */
    float  *params;             /* n_params floats, laid out as above */
} mp_mlp;

/* Floats of parameters of a network with these L + 1 widths, or SIZE_MAX when
 * a width is 0 or the count overflows. */
size_t mp_mlp_n_params(const size_t *sizes, size_t n_layers);

/* A new network with zeroed parameters; NULL when out of memory or when the
 * shape is unusable (a zero width, or sizes that do not fit cblas' int). */
mp_mlp *mp_mlp_new(const size_t *sizes, size_t n_layers, int activation, bool softmax);
void    mp_mlp_free(mp_mlp *net);                     /* NULL-safe */

/* Scratch for forward and backward passes of up to max_rows rows.  The
 * caller frees *out with mp_mlp_work_free.  Errors: MP_E_NOMEM. */
typedef struct mp_mlp_work mp_mlp_work;
int  mp_mlp_work_new(const mp_mlp *net, size_t max_rows, mp_mlp_work **out, mp_err *err);
void mp_mlp_work_free(mp_mlp_work *w);                /* NULL-safe */

/* Mean loss of net on n rows (1 <= n <= the work's max_rows), accumulated in
 * double: cross-entropy of the softmax against labels (class indices below
 * sizes[L]) for a softmax net, else the mean over rows and outputs of
 * (output - target)^2 against targets (n x sizes[L] floats).  The other of
 * labels/targets is NULL.  grad (n_params floats, laid out as params)
 * receives d loss / d params unless NULL.  n_correct (NULL-able) receives the
 * rows whose largest output is the label (softmax nets; 0 otherwise). */
double mp_mlp_loss_grad(mp_mlp_work *w, const mp_mlp *net, const float *X, size_t n,
                        const int *labels, const float *targets, float *grad, size_t *n_correct);

/* The network inside a model trained by the stage (borrowed), for tests. */
const mp_mlp *mp_mlp_of_model(const mp_model *m);

#endif /* MP_MLP_H */
