/*
 * test_optim.c -- unit tests of the shared optimizers (stages/optim.c):
 * one hand-computed step of SGD, momentum and Adam against the formulas of
 * optim.h (evaluated here in double), Adam minimising a quadratic, decoupled
 * weight decay, layer-wise updates, bad configurations and allocation failure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "mp.h"
#include "optim.h"

#define N 4
static const float P0[N] = { 1.0f, -2.0f, 0.5f, 3.0f };
static const float G1[N] = { 0.5f, -1.0f, 2.0f, -0.25f };
static const float G2[N] = { -0.3f, 0.7f, 1.5f, 0.0f };

static mp_optim_conf conf_of(int kind, double lr) {
    mp_optim_conf c;
    mp_optim_conf_init(&c);
    c.kind = kind;
    c.learning_rate = lr;
    return c;
}

static mp_optim *new_optim(const mp_optim_conf *c, size_t n) {
    mp_err err = { 0 };
    mp_optim *o = NULL;
    assert_int_equal(mp_optim_new(c, n, &o, &err), MP_OK);
    assert_non_null(o);
    return o;
}

/* |got - want| within float rounding of the values involved. */
static void assert_close(const float *got, const double *want, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double tol = 1e-6 * (1.0 + fabs(want[i]));
        if (fabs(got[i] - want[i]) > tol)
            fail_msg("element %zu: got %.9g, want %.9g", i, (double)got[i], want[i]);
    }
}

static void test_conf_defaults(void **state) {
    (void)state;
    mp_optim_conf c;
    mp_optim_conf_init(&c);
    assert_int_equal(c.kind, MP_OPT_ADAM);
    assert_true(c.learning_rate == 0.01 && c.momentum == 0.9 && c.beta1 == 0.9);
    assert_true(c.beta2 == 0.999 && c.eps == 1e-8 && c.weight_decay == 0.0);
}

static void test_sgd_step(void **state) {
    (void)state;
    mp_optim_conf c = conf_of(MP_OPT_SGD, 0.1);
    mp_optim *o = new_optim(&c, N);
    float p[N];
    memcpy(p, P0, sizeof p);
    mp_optim_step(o, p, G1);
    double want[N];
    for (int i = 0; i < N; i++) want[i] = P0[i] - 0.1 * G1[i];
    assert_close(p, want, N);
    assert_int_equal(mp_optim_steps(o), 1);
    mp_optim_free(o);
}

static void test_momentum_two_steps(void **state) {
    (void)state;
    mp_optim_conf c = conf_of(MP_OPT_MOMENTUM, 0.1);
    c.momentum = 0.8;
    mp_optim *o = new_optim(&c, N);
    float p[N];
    memcpy(p, P0, sizeof p);
    mp_optim_step(o, p, G1);
    mp_optim_step(o, p, G2);
    /* v1 = -lr g1; p1 = p0 + v1; v2 = mu v1 - lr g2; p2 = p1 + v2 */
    double want[N];
    for (int i = 0; i < N; i++) {
        double v1 = -0.1 * G1[i], p1 = P0[i] + v1;
        double v2 = 0.8 * v1 - 0.1 * G2[i];
        want[i] = p1 + v2;
    }
    assert_close(p, want, N);
    /* The PyTorch form (v = mu v + g; p -= lr v) gives the same iterate. */
    for (int i = 0; i < N; i++) {
        double v1 = G1[i], v2 = 0.8 * v1 + G2[i];
        double pt = P0[i] - 0.1 * v1 - 0.1 * v2;
        assert_true(fabs(pt - want[i]) < 1e-12);
    }
    mp_optim_free(o);
}

/* Adam by the PyTorch formula, in double, for steps t = 1..n_steps. */
static void adam_reference(const mp_optim_conf *c, const float *const *g, int n_steps,
                           double *p) {
    double m[N] = { 0 }, v[N] = { 0 };
    for (int i = 0; i < N; i++) p[i] = P0[i];
    for (int t = 1; t <= n_steps; t++) {
        for (int i = 0; i < N; i++) {
            p[i] -= c->learning_rate * c->weight_decay * p[i];
            m[i] = c->beta1 * m[i] + (1 - c->beta1) * g[t - 1][i];
            v[i] = c->beta2 * v[i] + (1 - c->beta2) * g[t - 1][i] * g[t - 1][i];
            double mh = m[i] / (1 - pow(c->beta1, t)), vh = v[i] / (1 - pow(c->beta2, t));
            p[i] -= c->learning_rate * mh / (sqrt(vh) + c->eps);
        }
    }
}

static void test_adam_steps(void **state) {
    (void)state;
    mp_optim_conf c = conf_of(MP_OPT_ADAM, 0.01);
    mp_optim *o = new_optim(&c, N);
    float p[N];
    memcpy(p, P0, sizeof p);
    mp_optim_step(o, p, G1);
    /* Step 1 by hand: m_hat = g, v_hat = g^2, so p -= lr * g / (|g| + eps):
     * every nonzero coordinate moves by lr against the sign of its gradient. */
    double want[N];
    for (int i = 0; i < N; i++) want[i] = P0[i] - 0.01 * G1[i] / (fabs(G1[i]) + 1e-8);
    assert_close(p, want, N);
    mp_optim_step(o, p, G2);
    const float *gs[] = { G1, G2 };
    adam_reference(&c, gs, 2, want);
    assert_close(p, want, N);
    mp_optim_free(o);
}

static void test_adamw_step(void **state) {
    (void)state;
    mp_optim_conf c = conf_of(MP_OPT_ADAM, 0.05);
    c.beta1 = 0.5;
    c.beta2 = 0.75;
    c.eps = 1e-3;   /* large enough to show in the result */
    c.weight_decay = 0.2;
    mp_optim *o = new_optim(&c, N);
    float p[N];
    memcpy(p, P0, sizeof p);
    mp_optim_step(o, p, G1);
    mp_optim_step(o, p, G2);
    const float *gs[] = { G1, G2 };
    double want[N];
    adam_reference(&c, gs, 2, want);
    assert_close(p, want, N);
    mp_optim_free(o);
}

/* The Adam loop is built as vector code (cloned for AVX2 on x86-64): it must
 * give the same floats, bit for bit, as the scalar float loop below does in
 * the same order of operations, over a length with a vector tail and from an
 * unaligned offset. */
static void test_adam_vector_bit_exact(void **state) {
    (void)state;
    enum { LEN = 1037, OFF = 3, STEPS = 3 };
    static float p[LEN], g[LEN], rp[LEN], rm[LEN], rv[LEN];
    mp_optim_conf c = conf_of(MP_OPT_ADAM, 0.001);
    mp_optim *o = new_optim(&c, LEN);
    uint32_t x = 12345;
    for (int i = 0; i < LEN; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = rp[i] = (float)((int32_t)x >> 8) * 0x1p-23f;
    }
    for (int t = 1; t <= STEPS; t++) {
        for (int i = 0; i < LEN; i++) {
            x = x * 1664525u + 1013904223u;
            g[i] = (float)((int32_t)x >> 8) * 0x1p-20f * (i % 7 == 0 ? 1e-6f : 1.0f);
        }
        mp_optim_tick(o);
        mp_optim_step_range(o, 0, OFF, p, g);
        mp_optim_step_range(o, OFF, LEN - OFF, p, g + OFF);
        const float step = (float)(c.learning_rate / (1.0 - pow(c.beta1, t)));
        const float isb = (float)(1.0 / sqrt(1.0 - pow(c.beta2, t)));
        const float b1 = (float)c.beta1, b2 = (float)c.beta2;
        const float a1 = (float)(1.0 - c.beta1), a2 = (float)(1.0 - c.beta2);
        for (volatile int i = 0; i < LEN; i++) {   /* volatile: kept scalar */
            float mi = b1 * rm[i] + a1 * g[i];
            float vi = b2 * rv[i] + a2 * g[i] * g[i];
            rm[i] = mi;
            rv[i] = vi;
            rp[i] -= step * mi / (sqrtf(vi) * isb + (float)c.eps);
        }
    }
    assert_memory_equal(p, rp, sizeof p);
    mp_optim_free(o);
}

/* Decoupled decay: with a zero gradient every kind only shrinks p by
 * (1 - lr*wd) per step (Adam's update is 0 / (0 + eps) = 0); the nodecay
 * range leaves it alone. */
static void test_weight_decay(void **state) {
    (void)state;
    const float zero[N] = { 0 };
    for (int kind = MP_OPT_SGD; kind <= MP_OPT_ADAM; kind++) {
        mp_optim_conf c = conf_of(kind, 0.1);
        c.weight_decay = 0.5;
        mp_optim *o = new_optim(&c, N);
        float p[N];
        memcpy(p, P0, sizeof p);
        for (int s = 0; s < 10; s++) mp_optim_step(o, p, zero);
        double want[N];
        for (int i = 0; i < N; i++) want[i] = P0[i] * pow(1.0 - 0.1 * 0.5, 10);
        assert_close(p, want, N);
        memcpy(p, P0, sizeof p);
        mp_optim_tick(o);
        mp_optim_step_range_nodecay(o, 0, N, p, zero);
        assert_memory_equal(p, P0, sizeof p);
        mp_optim_free(o);
    }
    /* With a gradient, SGD decays first, then steps: p(1 - lr wd) - lr g. */
    mp_optim_conf c = conf_of(MP_OPT_SGD, 0.1);
    c.weight_decay = 0.5;
    mp_optim *o = new_optim(&c, N);
    float p[N];
    memcpy(p, P0, sizeof p);
    mp_optim_step(o, p, G1);
    double want[N];
    for (int i = 0; i < N; i++) want[i] = P0[i] * 0.95 - 0.1 * G1[i];
    assert_close(p, want, N);
    mp_optim_free(o);
}

/* f(p) = 0.5 sum a_i (p_i - c_i)^2, badly conditioned (a spans 1e-2..1e2):
 * Adam's per-coordinate scaling still gets every coordinate there. */
static void test_adam_minimises_quadratic(void **state) {
    (void)state;
    const float a[N] = { 100.0f, 1.0f, 0.01f, 10.0f }, ctr[N] = { 3.0f, -1.0f, 2.0f, 0.5f };
    mp_optim_conf c = conf_of(MP_OPT_ADAM, 0.05);
    mp_optim *o = new_optim(&c, N);
    float p[N] = { 0 }, g[N];
    double f0 = 0.0, f = 0.0;
    for (int i = 0; i < N; i++) f0 += 0.5 * a[i] * ctr[i] * ctr[i];
    for (int s = 0; s < 3000; s++) {
        for (int i = 0; i < N; i++) g[i] = a[i] * (p[i] - ctr[i]);
        mp_optim_step(o, p, g);
    }
    for (int i = 0; i < N; i++) f += 0.5 * a[i] * (p[i] - ctr[i]) * (p[i] - ctr[i]);
    for (int i = 0; i < N; i++)
        if (fabsf(p[i] - ctr[i]) > 1e-2f) fail_msg("p[%d] = %g, want %g", i, p[i], ctr[i]);
    assert_true(f < 1e-6 * f0);
    mp_optim_free(o);
}

/* tick + step_range over two slices equals one step over the whole vector,
 * bit for bit, for every kind (the state slots line up). */
static void test_step_range_matches_step(void **state) {
    (void)state;
    for (int kind = MP_OPT_SGD; kind <= MP_OPT_ADAM; kind++) {
        mp_optim_conf c = conf_of(kind, 0.03);
        c.weight_decay = 0.1;
        mp_optim *whole = new_optim(&c, N), *parts = new_optim(&c, N);
        float p1[N], p2[N];
        memcpy(p1, P0, sizeof p1);
        memcpy(p2, P0, sizeof p2);
        for (int s = 0; s < 3; s++) {
            const float *g = s % 2 ? G2 : G1;
            mp_optim_step(whole, p1, g);
            mp_optim_tick(parts);
            mp_optim_step_range(parts, 0, 1, p2, g);          /* params whole, grad local */
            mp_optim_step_range(parts, 1, N - 1, p2, g + 1);
        }
        assert_memory_equal(p1, p2, sizeof p1);
        assert_int_equal(mp_optim_steps(parts), 3);
        mp_optim_free(whole);
        mp_optim_free(parts);
    }
}

static void expect_config_error(mp_optim_conf c, const char *needle) {
    mp_err err = { 0 };
    mp_optim *o = NULL;
    assert_int_equal(mp_optim_new(&c, N, &o, &err), MP_E_CONFIG);
    assert_null(o);
    if (!strstr(err.msg, needle)) fail_msg("message '%s' lacks '%s'", err.msg, needle);
}

static void test_bad_conf(void **state) {
    (void)state;
    mp_optim_conf c = conf_of(MP_OPT_ADAM, 0.0);
    expect_config_error(c, "learning_rate");
    c = conf_of(7, 0.1);
    expect_config_error(c, "kind");
    c = conf_of(MP_OPT_ADAM, 0.1);
    c.beta1 = 1.0;
    expect_config_error(c, "beta1");
    c = conf_of(MP_OPT_ADAM, 0.1);
    c.beta2 = NAN;
    expect_config_error(c, "beta2");
    c = conf_of(MP_OPT_ADAM, 0.1);
    c.eps = 0.0;
    expect_config_error(c, "eps");
    c = conf_of(MP_OPT_MOMENTUM, 0.1);
    c.momentum = 1.5;
    expect_config_error(c, "momentum");
    c = conf_of(MP_OPT_SGD, 0.5);
    c.weight_decay = 2.0;
    expect_config_error(c, "weight_decay");
    /* Fields of other kinds are not checked: sgd ignores beta1. */
    c = conf_of(MP_OPT_SGD, 0.1);
    c.beta1 = 5.0;
    mp_optim_free(new_optim(&c, N));
}

static void test_nomem(void **state) {
    (void)state;
    mp_optim_conf c = conf_of(MP_OPT_ADAM, 0.1);
    mp_err err = { 0 };
    mp_optim *o = NULL;
    mp_mem_fail_after(1);
    assert_int_equal(mp_optim_new(&c, 1000, &o, &err), MP_E_NOMEM);
    mp_mem_fail_after(0);
    assert_null(o);
    /* A size that overflows fails cleanly instead of wrapping. */
    err = (mp_err){ 0 };
    assert_int_equal(mp_optim_new(&c, SIZE_MAX / 4, &o, &err), MP_E_NOMEM);
    /* n = 0 is a valid, empty optimizer. */
    o = new_optim(&c, 0);
    float dummy = 1.0f;
    mp_optim_step(o, &dummy, &dummy);
    assert_true(dummy == 1.0f);
    mp_optim_free(o);
    mp_optim_free(NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_defaults),
        cmocka_unit_test(test_sgd_step),
        cmocka_unit_test(test_momentum_two_steps),
        cmocka_unit_test(test_adam_steps),
        cmocka_unit_test(test_adamw_step),
        cmocka_unit_test(test_adam_vector_bit_exact),
        cmocka_unit_test(test_weight_decay),
        cmocka_unit_test(test_adam_minimises_quadratic),
        cmocka_unit_test(test_step_range_matches_step),
        cmocka_unit_test(test_bad_conf),
        cmocka_unit_test(test_nomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
