/*
 * optim.h -- the gradient-descent optimizers every gradient-trained model
 * shares: plain SGD, SGD with momentum, and Adam (with decoupled weight decay,
 * as AdamW).  Parameters and gradients are flat float arrays.
 */
#ifndef MP_OPTIM_H
#define MP_OPTIM_H

#include "mp_stage.h"

typedef enum mp_optim_kind { MP_OPT_SGD = 0, MP_OPT_MOMENTUM = 1, MP_OPT_ADAM = 2 } mp_optim_kind;
#define MP_OPTIM_CHOICES "sgd|momentum|adam"   /* order matches mp_optim_kind */

typedef struct mp_optim_conf {
    int    kind;            /* mp_optim_kind */
    double learning_rate;   /* > 0 */
    double momentum;        /* momentum: velocity decay, e.g. 0.9 */
    double beta1, beta2;    /* adam moments, e.g. 0.9, 0.999 */
    double eps;             /* adam denominator guard, e.g. 1e-8 */
    double weight_decay;    /* decoupled decay per step, times learning_rate */
} mp_optim_conf;

typedef struct mp_optim mp_optim;

/* A new optimizer for n parameters (state zeroed). */
int  mp_optim_new(const mp_optim_conf *c, size_t n, mp_optim **out, mp_err *err);
/* One update: params -= step(grad).  Both arrays hold n floats. */
void mp_optim_step(mp_optim *o, float *params, const float *grad);
/* Updates only params[off .. off+len) with grad[0 .. len) (same time step t as
 * the last mp_optim_step/tick): lets a model update layer by layer. */
void mp_optim_step_range(mp_optim *o, size_t off, size_t len, float *params, const float *grad);
/* Advances the time step once per mini-batch when using step_range. */
void mp_optim_tick(mp_optim *o);
void mp_optim_free(mp_optim *o);                      /* NULL-safe */

#endif /* MP_OPTIM_H */
