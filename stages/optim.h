/*
 * optim.h -- the gradient-descent optimizers every gradient-trained model
 * shares: plain SGD, SGD with momentum, and Adam (with decoupled weight decay,
 * as AdamW).  Parameters and gradients are flat float arrays.
 *
 * The update rules, with g the gradient, lr the learning rate, wd the weight
 * decay and t the 1-based time step (mini-batch count):
 *
 *     every kind, first:  p -= lr * wd * p          decoupled weight decay
 *     sgd:                p -= lr * g
 *     momentum:           v  = mu * v - lr * g;  p += v
 *     adam:               m  = b1 * m + (1 - b1) * g
 *                         v  = b2 * v + (1 - b2) * g^2
 *                         p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
 *
 * The momentum form is the Sutskever/Keras one; with a constant learning rate
 * it gives exactly the same iterates as PyTorch's (v = mu*v + g; p -= lr*v).
 * Adam follows torch.optim.Adam / AdamW: bias-corrected moments, eps added to
 * the square root of the corrected second moment.  Decay is applied before
 * the gradient step, as torch.optim.AdamW does, and is "decoupled": it is not
 * added to g, so Adam does not rescale it (Loshchilov & Hutter).
 *
 * Typical use, whole model at once:
 *     mp_optim_new(&conf, n, &o, err);  ... mp_optim_step(o, params, grad); ...
 * Layer by layer (one tick per mini-batch, then one step_range per layer):
 *     mp_optim_tick(o);
 *     mp_optim_step_range(o, off_w, n_w, params, grad_w);          decayed
 *     mp_optim_step_range_nodecay(o, off_b, n_b, params, grad_b);  biases
 */
#ifndef MP_OPTIM_H
#define MP_OPTIM_H

#include "mp_stage.h"

typedef enum mp_optim_kind { MP_OPT_SGD = 0, MP_OPT_MOMENTUM = 1, MP_OPT_ADAM = 2 } mp_optim_kind;
#define MP_OPTIM_CHOICES "sgd|momentum|adam"   /* order matches mp_optim_kind */

typedef struct mp_optim_conf {
    int    kind;            /* mp_optim_kind */
    double learning_rate;   /* > 0 */
    double momentum;        /* momentum: velocity decay in [0, 1), e.g. 0.9 */
    double beta1, beta2;    /* adam moment decays in [0, 1), e.g. 0.9, 0.999 */
    double eps;             /* adam denominator guard, > 0, e.g. 1e-8 */
    double weight_decay;    /* >= 0: decoupled decay per step, times learning_rate */
} mp_optim_conf;

typedef struct mp_optim mp_optim;

/* Fills c with the defaults: adam, learning_rate 0.01, momentum 0.9,
 * beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0. */
void mp_optim_conf_init(mp_optim_conf *c);

/* A new optimizer for n parameters (state zeroed, time step 0) in *out.
 * Errors: MP_E_CONFIG for a value outside the ranges above (naming it),
 * MP_E_NOMEM.  The caller frees *out with mp_optim_free. */
int  mp_optim_new(const mp_optim_conf *c, size_t n, mp_optim **out, mp_err *err);

/* One update of all n parameters: advances the time step, then applies the
 * rule above with weight decay.  Both arrays hold n floats. */
void mp_optim_step(mp_optim *o, float *params, const float *grad);

/* Updates only params[off .. off+len) from grad[0 .. len), using the
 * optimizer state of the same slots [off, off+len) and the time step of the
 * last mp_optim_tick (or mp_optim_step).  Note the asymmetry: params is the
 * whole parameter vector, grad is the slice's own gradient.  Lets a model
 * update layer by layer without gathering one big gradient. */
void mp_optim_step_range(mp_optim *o, size_t off, size_t len, float *params, const float *grad);
/* The same without weight decay, for biases (which are conventionally not
 * decayed, as the L2 penalty of the models does not cover them). */
void mp_optim_step_range_nodecay(mp_optim *o, size_t off, size_t len, float *params,
                                 const float *grad);
/* Advances the time step once per mini-batch when using step_range.  A
 * step_range before the first tick behaves as if t were 1. */
void mp_optim_tick(mp_optim *o);

/* Number of time steps taken so far (ticks plus mp_optim_step calls). */
long mp_optim_steps(const mp_optim *o);

void mp_optim_free(mp_optim *o);                      /* NULL-safe */

#endif /* MP_OPTIM_H */
