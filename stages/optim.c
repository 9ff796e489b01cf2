/*
 * optim.c -- SGD, SGD with momentum and Adam over flat float arrays, each
 * with decoupled weight decay.  The update rules are written out in optim.h.
 *
 * The vector updates of SGD and momentum are OpenBLAS saxpy/sscal calls; the
 * Adam update is elementwise and non-linear (a square root and a division per
 * parameter), which no BLAS routine expresses, so it is one plain float loop
 * that reads each of g, m, v and p once.  Scalars that depend only on the
 * time step (bias corrections) are computed once per call in double.
 *
 * That loop is most of an MLP's training step after the sgemm calls (the
 * 407k parameters of 784-512-10 are updated after every mini-batch of 32),
 * so it must run as vector code: the Makefile builds this file with
 * -fno-math-errno (otherwise sqrtf may set errno and stays a scalar call)
 * and -fvect-cost-model=dynamic (-O2's "very cheap" model leaves loops of
 * unknown length scalar), and on x86-64 the function is cloned for AVX2
 * (x86-64-v3) and picked at load time by the CPU it runs on.  Vector code
 * computes the same IEEE operations in the same order, so results are the
 * same bit for bit on every path (ISO C mode: no fused multiply-add).
 *
 * An optimizer is one allocation: the struct followed by its state arrays
 * (nothing for SGD, the velocity for momentum, m then v for Adam).
 */
#include "optim.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>

struct mp_optim {
    mp_optim_conf c;    /* validated copy */
    size_t n;           /* parameters */
    long   t;           /* time steps taken (1-based once stepping) */
    float *m;           /* momentum: velocity; adam: first moment; NULL for sgd */
    float *v;           /* adam: second moment; else NULL */
};

/* BLAS lengths are `blasint` (int here); longer vectors go in chunks. */
#define BLAS_CHUNK ((size_t)1 << 30)

static void vec_axpy(size_t n, float a, const float *x, float *y) {
    for (size_t i = 0; i < n; i += BLAS_CHUNK) {
        size_t k = n - i < BLAS_CHUNK ? n - i : BLAS_CHUNK;
        cblas_saxpy((blasint)k, a, x + i, 1, y + i, 1);
    }
}

static void vec_scal(size_t n, float a, float *x) {
    for (size_t i = 0; i < n; i += BLAS_CHUNK) {
        size_t k = n - i < BLAS_CHUNK ? n - i : BLAS_CHUNK;
        cblas_sscal((blasint)k, a, x + i, 1);
    }
}

void mp_optim_conf_init(mp_optim_conf *c) {
    *c = (mp_optim_conf){ .kind = MP_OPT_ADAM, .learning_rate = 0.01, .momentum = 0.9,
                          .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0 };
}

/* True when 0 <= x < 1 (false for NaN). */
static bool in_unit(double x) { return x >= 0.0 && x < 1.0; }

static int check_conf(const mp_optim_conf *c, mp_err *err) {
    if (c->kind < MP_OPT_SGD || c->kind > MP_OPT_ADAM)
        return MP_ERR(err, MP_E_CONFIG, "unknown optimizer kind %d", c->kind);
    if (!(c->learning_rate > 0.0) || !isfinite(c->learning_rate))
        return MP_ERR(err, MP_E_CONFIG, "learning_rate must be a positive number, got %g",
                      c->learning_rate);
    if (!(c->weight_decay >= 0.0) || !isfinite(c->weight_decay))
        return MP_ERR(err, MP_E_CONFIG, "weight_decay must be >= 0, got %g", c->weight_decay);
    /* A factor 1 - lr*wd <= 0 would flip or zero every weight each step. */
    if (c->learning_rate * c->weight_decay >= 1.0)
        return MP_ERR(err, MP_E_CONFIG,
                      "weight_decay * learning_rate must be below 1, got %g * %g",
                      c->weight_decay, c->learning_rate);
    if (c->kind == MP_OPT_MOMENTUM && !in_unit(c->momentum))
        return MP_ERR(err, MP_E_CONFIG, "momentum must be in [0, 1), got %g", c->momentum);
    if (c->kind == MP_OPT_ADAM) {
        if (!in_unit(c->beta1))
            return MP_ERR(err, MP_E_CONFIG, "beta1 must be in [0, 1), got %g", c->beta1);
        if (!in_unit(c->beta2))
            return MP_ERR(err, MP_E_CONFIG, "beta2 must be in [0, 1), got %g", c->beta2);
        if (!(c->eps > 0.0) || !isfinite(c->eps))
            return MP_ERR(err, MP_E_CONFIG, "eps must be a positive number, got %g", c->eps);
    }
    return MP_OK;
}

int mp_optim_new(const mp_optim_conf *c, size_t n, mp_optim **out, mp_err *err) {
    if (check_conf(c, err) != MP_OK) return err->code;
    size_t n_state = c->kind == MP_OPT_ADAM ? 2 : c->kind == MP_OPT_MOMENTUM ? 1 : 0;
    size_t floats = mp_mul_size(n, n_state);
    size_t bytes = mp_mul_size(floats, sizeof(float));
    if (bytes > SIZE_MAX - sizeof(mp_optim))
        return MP_ERR(err, MP_E_NOMEM, "too many parameters for an optimizer: %zu", n);
    /* The struct's size is a multiple of its (pointer) alignment, so the
     * floats that follow it are aligned. */
    mp_optim *o = mp_calloc(1, sizeof *o + bytes);
    if (!o) return MP_ERR(err, MP_E_NOMEM, "out of memory for an optimizer of %zu parameters", n);
    o->c = *c;
    o->n = n;
    float *state = (float *)(o + 1);
    if (n_state >= 1) o->m = state;
    if (n_state == 2) o->v = state + n;
    *out = o;
    return MP_OK;
}

void mp_optim_free(mp_optim *o) { mp_free(o); }

void mp_optim_tick(mp_optim *o) { o->t++; }

long mp_optim_steps(const mp_optim *o) { return o->t; }

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

typedef struct { float b1, b2, a1, a2, step, inv_sqrt_bc2, eps; } adam_k;

VECTOR_CLONES
static void adam_update(size_t len, const adam_k *k, float *restrict p, const float *restrict g,
                        float *restrict m, float *restrict v) {
    const float b1 = k->b1, b2 = k->b2, a1 = k->a1, a2 = k->a2;
    const float step = k->step, inv_sqrt_bc2 = k->inv_sqrt_bc2, eps = k->eps;
    for (size_t i = 0; i < len; i++) {
        float gi = g[i];
        float mi = b1 * m[i] + a1 * gi;
        float vi = b2 * v[i] + a2 * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

/* The update of slots [off, off+len): p and g point at the slice itself. */
static void update(mp_optim *o, size_t off, size_t len, float *p, const float *g, bool decay) {
    const mp_optim_conf *c = &o->c;
    assert(off <= o->n && len <= o->n - off);
    if (len == 0) return;
    float lr = (float)c->learning_rate;
    if (decay && c->weight_decay > 0.0)
        vec_scal(len, (float)(1.0 - c->learning_rate * c->weight_decay), p);

    switch (c->kind) {
    case MP_OPT_SGD:
        vec_axpy(len, -lr, g, p);
        break;
    case MP_OPT_MOMENTUM: {
        float *v = o->m + off;
        vec_scal(len, (float)c->momentum, v);   /* v = mu * v */
        vec_axpy(len, -lr, g, v);               /* v -= lr * g */
        vec_axpy(len, 1.0f, v, p);              /* p += v */
        break;
    }
    case MP_OPT_ADAM: {
        double t = (double)(o->t > 0 ? o->t : 1);
        double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
        /* lr * m_hat / (sqrt(v_hat) + eps) with m_hat = m / bc1 and
         * sqrt(v_hat) = sqrt(v) / sqrt(bc2): the same algebra as PyTorch. */
        const adam_k k = {
            .b1 = (float)c->beta1, .b2 = (float)c->beta2,
            .a1 = (float)(1.0 - c->beta1), .a2 = (float)(1.0 - c->beta2),
            .step = (float)(c->learning_rate / bc1),
            .inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2)),
            .eps = (float)c->eps,
        };
        adam_update(len, &k, p, g, o->m + off, o->v + off);
        break;
    }
    default:
        break;  /* unreachable: the kind was checked in mp_optim_new */
    }
}

void mp_optim_step(mp_optim *o, float *params, const float *grad) {
    o->t++;
    update(o, 0, o->n, params, grad, true);
}

void mp_optim_step_range(mp_optim *o, size_t off, size_t len, float *params, const float *grad) {
    update(o, off, len, params + off, grad, true);
}

void mp_optim_step_range_nodecay(mp_optim *o, size_t off, size_t len, float *params,
                                 const float *grad) {
    update(o, off, len, params + off, grad, false);
}
