/*
 * test_linreg.c -- unit tests of `train: linear_regression` (stages/linreg.c)
 * and `evaluate: regression` (stages/eval_regression.c).
 *
 * The stage runs through its ops->run on a hand-built mp_ctx whose host
 * captures metrics.  Known answers: an exact fit of y = 3 + 2a - b, ridge
 * against closed forms worked by hand, collinear and constant columns (the
 * least-squares fallback), the threaded Gram pass against one thread, the
 * gradient solvers against the exact solution.  The gradient the solvers use
 * is checked by central differences of J(w, b) = MSE + (l2/n)||w||^2: two
 * full-batch SGD runs of 1 and 2 epochs give p1 and p2 = p1 - lr * g(p1).
 * Also: errors (class target, no target, NaN), cancellation, a failing
 * metric sink, save -> load -> predict through the real artifact API, and
 * allocation-failure loops (every failure MP_E_NOMEM, nothing leaked).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>     /* before cmocka.h, which redefines malloc under UNIT_TESTING */
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cblas.h>

#include "mp.h"
#include "artifact.h"
#include "fixtures.h"

extern const mp_stage_ops mp_stage_linear_regression;
extern const mp_stage_ops mp_stage_eval_regression;

/* Mirrors linreg_conf in stages/linreg.c (the runner fills it by offsets). */
typedef struct linreg_conf {
    int    solver;          /* 0 exact, 1 sgd, 2 momentum, 3 adam */
    double l2;
    bool   fit_intercept;
    double learning_rate;
    int    epochs;
    int    batch_size;
    bool   shuffle;
    double tol;
} linreg_conf;
enum { EXACT = 0, SGD = 1, MOMENTUM = 2, ADAM = 3 };

static linreg_conf conf_default(void) {
    return (linreg_conf){ .solver = EXACT, .l2 = 0.0, .fit_intercept = true,
                          .learning_rate = 0.01, .epochs = 100, .batch_size = 32,
                          .shuffle = true, .tol = 1e-6 };
}

/* ---------------------------------------------------------------- fixtures */

/* n rows of d standard-normal features; y = bias + w . x + noise * N(0,1). */
static mp_dataset *linear_data(size_t n, size_t d, const double *w, double bias, double noise,
                               uint64_t seed) {
    mp_dataset *ds = dataset(n, d);
    mp_rng rng;
    mp_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        double y = bias;
        for (size_t j = 0; j < d; j++) {
            float x = (float)mp_rng_normal(&rng);
            MP_AT(&ds->X, i, j) = x;
            y += w[j] * (double)x;
        }
        ds->y[i] = y + noise * mp_rng_normal(&rng);
    }
    ds->task = MP_TASK_REGRESSION;
    ds->target_name = mp_strdup("y");
    return ds;
}

/* The metric sink of the test host. */
static metric_capture cap;
static mp_host host = { .metric = metric_capture_metric, .ud = &cap };

/* Number of captured rows with this key; the last value in *v. */
static int cap_count(const char *key, double *v) { return metric_count(&cap, key, v); }

/* The log sink: warnings, concatenated. */
static char logbuf[4096];
static void log_sink(int level, const char *msg, void *ud) {
    (void)ud;
    if (level <= MP_LOG_WARN && strlen(logbuf) + strlen(msg) + 2 < sizeof logbuf) {
        strcat(logbuf, msg);
        strcat(logbuf, "\n");
    }
}

static mp_ctx ctx_for(mp_dataset *ds) {
    memset(&cap, 0, sizeof cap);
    logbuf[0] = '\0';
    return (mp_ctx){ .train = ds, .seed = 42, .stage_index = 3, .pipeline = "test",
                     .host = &host };
}

static int run_stage(mp_ctx *ctx, linreg_conf *c, mp_err *err) {
    return run_ops(&mp_stage_linear_regression, c, ctx, err);
}

/* Reads the fitted intercept and d weights back through predict: the
 * prediction at 0 is b, at the unit vector e_j it is b + w_j. */
static void read_params(const mp_model *m, double *w, double *b) {
    size_t d = m->n_features;
    mp_err err = { 0 };
    mp_matrix E = { 0 }, out = { 0 };
    assert_int_equal(mp_matrix_init(&E, d + 1, d, &err), MP_OK);
    for (size_t j = 0; j < d; j++) MP_AT(&E, j + 1, j) = 1.0f;
    assert_int_equal(mp_matrix_init(&out, d + 1, 1, &err), MP_OK);
    assert_int_equal(m->ops->predict(m, &E, &out, &err), MP_OK);
    *b = out.data[0];
    for (size_t j = 0; j < d; j++) w[j] = (double)out.data[j + 1] - (double)out.data[0];
    mp_matrix_release(&E);
    mp_matrix_release(&out);
}

static int setup(void **state) {
    (void)state;
    reset_test_state();
    mp_log_set_sink(log_sink, NULL);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mp_log_set_sink(NULL, NULL);
    return 0;
}

/* ---------------------------------------------------------------- stage table */

static void test_stage_table(void **state) {
    (void)state;
    const mp_stage_ops *ops = &mp_stage_linear_regression;
    assert_int_equal(ops->abi, MP_STAGE_ABI);
    assert_string_equal(ops->name, "linear_regression");
    assert_int_equal(ops->kind, MP_KIND_TRAIN);
    assert_int_equal(ops->task, MP_TASK_REGRESSION);
    assert_int_equal(ops->conf_size, sizeof(linreg_conf));
    assert_non_null(ops->doc);
    assert_non_null(ops->model);
    assert_string_equal(ops->model->name, "linear_regression");
    size_t n = 0;
    for (const mp_param *p = ops->params; p->name; p++, n++) assert_non_null(p->doc);
    assert_int_equal(n, 8);
    assert_string_equal(ops->params[0].choices, "exact|sgd|momentum|adam");
    const mp_stage_ops *ev = &mp_stage_eval_regression;
    assert_string_equal(ev->name, "regression");
    assert_int_equal(ev->kind, MP_KIND_EVALUATE);
    assert_non_null(ev->doc);
    assert_non_null(ev->params[0].doc);
}

/* ---------------------------------------------------------------- exact */

static void test_exact_known_answer(void **state) {
    (void)state;
    /* y = 3 + 2a - b exactly: the fit must recover it with ~0 residual. */
    const double w[] = { 2.0, -1.0 };
    mp_ctx ctx = ctx_for(linear_data(200, 2, w, 3.0, 0.0, 1));
    linreg_conf c = conf_default();
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    mp_model *m = ctx.model;
    assert_non_null(m);
    assert_int_equal(m->task, MP_TASK_REGRESSION);
    assert_int_equal(m->n_features, 2);
    assert_int_equal(m->n_outputs, 1);
    assert_false(m->has_proba);
    double got[2], b;
    read_params(m, got, &b);
    assert_near(b, 3.0, 1e-4);
    assert_near(got[0], 2.0, 1e-4);
    assert_near(got[1], -1.0, 1e-4);
    /* One train.loss row, step 1, ~0. */
    double loss = -1.0;
    assert_int_equal(cap_count("train.loss", &loss), 1);
    assert_int_equal(cap.step[0], 1);
    assert_true(loss >= 0.0 && loss < 1e-10);
    assert_string_equal(logbuf, "");    /* no fallback warning */

    /* Without an intercept the same data leaves a bias-sized residual. */
    c.fit_intercept = false;
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    read_params(ctx.model, got, &b);
    assert_true(b == 0.0);
    assert_int_equal(cap_count("train.loss", &loss), 1);
    assert_true(loss > 1.0);
    ctx_release(&ctx);
}

static void test_exact_matches_noisy_least_squares(void **state) {
    (void)state;
    /* With noise, the exact fit's training MSE is the least-squares
     * minimum: any nudge of a weight raises it, and the loss row agrees with
     * the MSE of the model's own predictions. */
    const double w[] = { 0.5, -1.5, 2.0, 0.0 };
    mp_ctx ctx = ctx_for(linear_data(500, 4, w, -1.0, 0.3, 2));
    linreg_conf c = conf_default();
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    double loss = 0.0;
    assert_int_equal(cap_count("train.loss", &loss), 1);
    mp_matrix pred = { 0 };
    assert_int_equal(mp_model_predict(ctx.model, &ctx.train->X, &pred, &err), MP_OK);
    double sse = 0.0;
    for (size_t i = 0; i < 500; i++) {
        double e = (double)pred.data[i] - ctx.train->y[i];
        sse += e * e;
    }
    assert_near(loss, sse / 500.0, 1e-6 * loss);
    assert_true(loss > 0.05 && loss < 0.15);    /* about noise^2 = 0.09 */
    double got[4], b;
    read_params(ctx.model, got, &b);
    for (size_t j = 0; j < 4; j++) assert_near(got[j], w[j], 0.05);
    mp_matrix_release(&pred);
    ctx_release(&ctx);
}

/* One feature x = 1 2 3 4 and y = 2x: worked by hand.
 * With intercept: centred Sxx = 5, Sxy = 10, so w = 10 / (5 + l2) and
 * b = mean(y) - w mean(x) = 5 - 2.5 w.  Without: Sxx = 30, Sxy = 60, w = 60 / (30 + l2). */
static mp_dataset *tiny_data(void) {
    mp_err err = { 0 };
    mp_dataset *ds = mp_dataset_new();
    assert_non_null(ds);
    assert_int_equal(mp_matrix_init(&ds->X, 4, 1, &err), MP_OK);
    ds->y = mp_calloc(4, sizeof *ds->y);
    assert_non_null(ds->y);
    for (size_t i = 0; i < 4; i++) {
        ds->X.data[i] = (float)(i + 1);
        ds->y[i] = 2.0 * (double)(i + 1);
    }
    ds->task = MP_TASK_REGRESSION;
    return ds;
}

static void test_ridge_closed_form(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(tiny_data());
    linreg_conf c = conf_default();
    mp_err err = { 0 };
    double w, b, loss = 0.0;

    c.l2 = 0.0;     /* ordinary least squares: w = 2, b = 0 */
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    read_params(ctx.model, &w, &b);
    assert_near(w, 2.0, 1e-5);
    assert_near(b, 0.0, 1e-5);

    c.l2 = 5.0;     /* w = 10 / 10 = 1, b = 2.5; residuals -1.5 -.5 .5 1.5: MSE 1.25 */
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    read_params(ctx.model, &w, &b);
    assert_near(w, 1.0, 1e-6);
    assert_near(b, 2.5, 1e-6);
    assert_int_equal(cap_count("train.loss", &loss), 1);
    assert_near(loss, 1.25, 1e-9);

    c.l2 = 30.0;    /* w = 10 / 35: shrinks further */
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    read_params(ctx.model, &w, &b);
    assert_near(w, 10.0 / 35.0, 1e-6);
    assert_near(b, 5.0 - 2.5 * 10.0 / 35.0, 1e-6);

    c.fit_intercept = false;    /* w = 60 / 60 = 1, b = 0 */
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    read_params(ctx.model, &w, &b);
    assert_near(w, 1.0, 1e-6);
    assert_true(b == 0.0);
    ctx_release(&ctx);
}

static void test_collinear_and_constant_columns(void **state) {
    (void)state;
    /* Columns: a, b, c = 2a exactly, a constant 7.  y = 1 + a + b.  The
     * normal equations are singular: the fallback must still fit y, give
     * the constant column no weight, and split a/c in the minimum-norm way
     * of the standardised columns (c = 2a: w_a = 2 w_c, w_a + 2 w_c = 1). */
    const double w[] = { 1.0, 1.0 };
    mp_dataset *ds = linear_data(100, 2, w, 1.0, 0.0, 3);
    mp_err err = { 0 };
    mp_matrix X4 = { 0 };
    assert_int_equal(mp_matrix_init(&X4, 100, 4, &err), MP_OK);
    for (size_t i = 0; i < 100; i++) {
        MP_AT(&X4, i, 0) = MP_AT(&ds->X, i, 0);
        MP_AT(&X4, i, 1) = MP_AT(&ds->X, i, 1);
        MP_AT(&X4, i, 2) = 2.0f * MP_AT(&ds->X, i, 0);
        MP_AT(&X4, i, 3) = 7.0f;
    }
    mp_matrix_release(&ds->X);
    ds->X = X4;
    for (size_t j = 0; j < 2; j++) mp_free(ds->feature_names[j]);
    mp_free(ds->feature_names);
    ds->feature_names = names("x", 4);
    mp_ctx ctx = ctx_for(ds);
    linreg_conf c = conf_default();
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_non_null(strstr(logbuf, "minimum-norm"));
    double got[4], b, loss = 1.0;
    read_params(ctx.model, got, &b);
    assert_near(got[0] + 2.0 * got[2], 1.0, 1e-4);
    assert_near(got[0], 0.5, 1e-4);
    assert_near(got[1], 1.0, 1e-4);
    assert_near(got[3], 0.0, 1e-6);
    assert_near(b, 1.0, 1e-4);
    assert_int_equal(cap_count("train.loss", &loss), 1);
    assert_true(loss < 1e-8);

    /* c = a + b rounded to float: not exactly singular, but far beyond
     * what float features resolve.  No crash, still an exact fit of y. */
    for (size_t i = 0; i < 100; i++)
        MP_AT(&ctx.train->X, i, 2) = MP_AT(&ctx.train->X, i, 0) + MP_AT(&ctx.train->X, i, 1);
    logbuf[0] = '\0';
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(cap_count("train.loss", &loss), 1);
    assert_true(loss < 1e-8);
    ctx_release(&ctx);
}

static void test_threaded_gram_matches_one_thread(void **state) {
    (void)state;
    /* 40000 x 60 is enough work for the Gram pass to split across the
     * threads OpenBLAS has; the result must match a one-thread run. */
    enum { N = 40000, D = 60 };
    double w[D];
    for (size_t j = 0; j < D; j++) w[j] = (double)j / 10.0 - 3.0;
    mp_ctx ctx = ctx_for(linear_data(N, D, w, 5.0, 0.1, 4));
    /* A far-from-zero mean in one column checks the shift correction. */
    for (size_t i = 0; i < N; i++) MP_AT(&ctx.train->X, i, 0) += 1000.0f;
    for (size_t i = 0; i < N; i++) ctx.train->y[i] += w[0] * 1000.0;
    linreg_conf c = conf_default();
    mp_err err = { 0 };
    double w2[D], b2, wt[D], bt, l1 = 0, l2 = 0;
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    openblas_set_num_threads(saved);
    read_params(ctx.model, w2, &b2);
    assert_int_equal(cap_count("train.loss", &l1), 1);
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    read_params(ctx.model, wt, &bt);
    assert_int_equal(cap_count("train.loss", &l2), 2);
    assert_near(l2, l1, 1e-9 * l1);
    assert_near(l1, 0.01, 0.001);
    for (size_t j = 1; j < D; j++) {
        assert_near(wt[j], w2[j], 1e-5);
        assert_near(wt[j], w[j], 0.005);
    }
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- gradient */

/* J(w, b) = (1/n) sum (x.w + b - y)^2 + (l2/n) ||w||^2, in double. */
static double objective(const mp_dataset *ds, const double *w, double b, double l2) {
    size_t n = ds->X.n_rows, d = ds->X.n_cols;
    double s = 0.0, ww = 0.0;
    for (size_t i = 0; i < n; i++) {
        double r = b - ds->y[i];
        for (size_t j = 0; j < d; j++) r += (double)MP_AT(&ds->X, i, j) * w[j];
        s += r * r;
    }
    for (size_t j = 0; j < d; j++) ww += w[j] * w[j];
    return s / (double)n + l2 / (double)n * ww;
}

static void gradient_check(bool fit_intercept, double l2) {
    const double w[] = { 1.5, -0.5, 0.25 };
    enum { D = 3 };
    mp_ctx ctx = ctx_for(linear_data(64, D, w, 2.0, 0.5, 5));
    linreg_conf c = conf_default();
    c.solver = SGD;
    c.batch_size = 64;          /* full batch: one step per epoch */
    c.shuffle = false;
    c.learning_rate = 0.05;
    c.l2 = l2;
    c.fit_intercept = fit_intercept;
    c.tol = 0.0;
    mp_err err = { 0 };
    double p1[D + 1], p2[D + 1];
    c.epochs = 1;
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    read_params(ctx.model, p1, &p1[D]);
    c.epochs = 2;
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    read_params(ctx.model, p2, &p2[D]);
    /* p2 = p1 - lr * g(p1): compare g with central differences at p1. */
    const double h = 1e-4;
    for (size_t j = 0; j <= D; j++) {
        double g = (p1[j] - p2[j]) / c.learning_rate;
        double up[D + 1], dn[D + 1];
        memcpy(up, p1, sizeof up);
        memcpy(dn, p1, sizeof dn);
        up[j] += h;
        dn[j] -= h;
        double num = (objective(ctx.train, up, up[D], l2) - objective(ctx.train, dn, dn[D], l2)) /
                     (2.0 * h);
        if (j == D && !fit_intercept) num = 0.0;    /* b is held at 0 */
        if (fabs(g - num) > 1e-3 * fmax(1.0, fabs(num)))
            fail_msg("param %zu: solver gradient %.8g, central difference %.8g", j, g, num);
    }
    ctx_release(&ctx);
}

static void test_gradient_central_differences(void **state) {
    (void)state;
    gradient_check(true, 0.0);
    gradient_check(true, 3.0);
    gradient_check(false, 0.7);
}

static void test_gradient_solvers_approach_exact(void **state) {
    (void)state;
    const double w[] = { 2.0, -1.0, 0.5 };
    mp_ctx ctx = ctx_for(linear_data(400, 3, w, 3.0, 0.2, 6));
    linreg_conf c = conf_default();
    c.l2 = 2.0;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    double we[3], be;
    read_params(ctx.model, we, &be);
    const int solvers[] = { SGD, MOMENTUM, ADAM };
    for (size_t s = 0; s < 3; s++) {
        c.solver = solvers[s];
        c.epochs = 150;
        c.tol = 0.0;
        c.learning_rate = solvers[s] == ADAM ? 0.02 : 0.01;
        memset(&cap, 0, sizeof cap);
        assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
        double wg[3], bg;
        read_params(ctx.model, wg, &bg);
        for (size_t j = 0; j < 3; j++)
            if (fabs(wg[j] - we[j]) > 0.03)
                fail_msg("solver %d: w[%zu] = %.5f, exact %.5f", solvers[s], j, wg[j], we[j]);
        assert_near(bg, be, 0.03);
        /* One train.loss row per epoch, steps 1..150, ending near the
         * noise level and well below where it started. */
        assert_int_equal(cap_count("train.loss", NULL), 150);
        for (int i = 0; i < 150; i++) assert_int_equal(cap.step[i], i + 1);
        assert_true(cap.value[149] < 0.06);
        assert_true(cap.value[149] < cap.value[0]);
    }
    ctx_release(&ctx);
}

static void test_gradient_early_stop(void **state) {
    (void)state;
    const double w[] = { 1.0 };
    mp_ctx ctx = ctx_for(linear_data(200, 1, w, 0.0, 0.1, 7));
    linreg_conf c = conf_default();
    c.solver = ADAM;
    c.learning_rate = 0.05;
    c.epochs = 1000;
    c.tol = 1e-3;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    int n = cap_count("train.loss", NULL);
    assert_true(n >= 6 && n < 1000);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void **state) {
    (void)state;
    const double w[] = { 1.0, 2.0 };
    linreg_conf c = conf_default();
    mp_err err = { 0 };

    /* A classification target. */
    mp_ctx ctx = ctx_for(linear_data(20, 2, w, 0.0, 0.0, 8));
    ctx.train->task = MP_TASK_CLASSIFICATION;
    mp_free(ctx.train->target_name);
    ctx.train->target_name = mp_strdup("species");
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_string_equal(err.msg,
                        "linear_regression needs a numeric target; 'species' holds class names");
    assert_null(ctx.model);
    ctx_release(&ctx);

    /* No target. */
    ctx = ctx_for(linear_data(20, 2, w, 0.0, 0.0, 8));
    mp_free(ctx.train->y);
    ctx.train->y = NULL;
    ctx.train->task = MP_TASK_NONE;
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_msg_has(&err, "target");
    ctx_release(&ctx);

    /* No rows, no training set. */
    ctx = ctx_for(NULL);
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);

    /* NaN in a feature / Inf in the target, for each solver family. */
    for (int solver = EXACT; solver <= SGD; solver++) {
        c.solver = solver;
        ctx = ctx_for(linear_data(20, 2, w, 0.0, 0.0, 8));
        MP_AT(&ctx.train->X, 6, 1) = NAN;
        err = (mp_err){ 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_E_NUMERIC);
        assert_msg_has(&err, "feature 'x1' is not a finite number at row 7");
        assert_null(ctx.model);
        MP_AT(&ctx.train->X, 6, 1) = 0.0f;
        ctx.train->y[3] = INFINITY;
        err = (mp_err){ 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_E_NUMERIC);
        assert_msg_has(&err, "target is not a finite number at row 4");
        ctx_release(&ctx);
    }

    /* Divergence of a gradient solver is a numeric error, not a NaN model. */
    ctx = ctx_for(linear_data(50, 2, w, 0.0, 0.0, 8));
    c.solver = SGD;
    c.learning_rate = 1e6;
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_NUMERIC);
    assert_msg_has(&err, "diverged");
    assert_null(ctx.model);
    ctx_release(&ctx);
}

static void test_cancelled_and_metric_failure(void **state) {
    (void)state;
    const double w[] = { 1.0, 2.0 };
    mp_ctx ctx = ctx_for(linear_data(50, 2, w, 0.0, 0.1, 9));
    linreg_conf c = conf_default();
    mp_err err = { 0 };
    mp_cancel_signal = 2;
    for (int solver = EXACT; solver <= ADAM; solver++) {
        c.solver = solver;
        err = (mp_err){ 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_E_CANCELLED);
        assert_null(ctx.model);
    }
    mp_cancel_signal = 0;
    for (int solver = EXACT; solver <= SGD; solver++) {
        c.solver = solver;
        memset(&cap, 0, sizeof cap);
        cap.fail_at = 1;
        err = (mp_err){ 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DB);
        assert_string_equal(err.msg, "cannot write metric: disk full");
        assert_null(ctx.model);
    }
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- evaluate */

/* Mirrors eval_conf in stages/eval_regression.c. */
typedef struct eval_conf {
    mp_str_list metrics;
    int         cv_folds;
} eval_conf;

static int run_eval_cv(mp_ctx *ctx, const char *const *metrics, size_t n, int folds,
                       mp_err *err) {
    eval_conf conf = { { .v = (char **)metrics, .n = n }, folds };
    mp_stage st = { .ops = &mp_stage_eval_regression, .conf = &conf, .name = "evaluate" };
    return mp_stage_eval_regression.run(&st, ctx, err);
}

static int run_eval(mp_ctx *ctx, const char *const *metrics, size_t n, mp_err *err) {
    return run_eval_cv(ctx, metrics, n, 0, err);
}

static void test_evaluate_regression(void **state) {
    (void)state;
    const double w[] = { 1.0, -2.0 };
    mp_ctx ctx = ctx_for(linear_data(300, 2, w, 0.5, 0.5, 10));
    ctx.test = linear_data(100, 2, w, 0.5, 0.5, 11);
    linreg_conf c = conf_default();
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    static const char *const all[] = { "mse", "rmse", "mae", "r2", "explained_variance" };
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval(&ctx, all, 5, &err), MP_OK);
    double mse = 0, rmse = 0, mae = 0, r2 = 0, ev = 0;
    assert_int_equal(cap_count("test.mse", &mse), 1);
    assert_int_equal(cap_count("test.rmse", &rmse), 1);
    assert_int_equal(cap_count("test.mae", &mae), 1);
    assert_int_equal(cap_count("test.r2", &r2), 1);
    assert_int_equal(cap_count("test.explained_variance", &ev), 1);
    for (int i = 0; i < cap.n; i++) assert_int_equal(cap.step[i], -1);
    assert_near(rmse, sqrt(mse), 1e-12);
    assert_near(mse, 0.25, 0.1);       /* the noise variance */
    assert_true(mae > 0.25 && mae < 0.55);
    assert_true(r2 > 0.9 && r2 < 1.0 && ev >= r2 - 1e-3);

    /* Without a test split: the training rows, "train." keys, a warning. */
    mp_dataset_free(ctx.test);
    ctx.test = NULL;
    memset(&cap, 0, sizeof cap);
    logbuf[0] = '\0';
    assert_int_equal(run_eval(&ctx, all + 3, 1, &err), MP_OK);
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.key[0], "train.r2");
    assert_non_null(strstr(logbuf, "no test split"));

    /* Class labels are not a regression target; a classifier is refused. */
    ctx.train->task = MP_TASK_CLASSIFICATION;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval(&ctx, all, 1, &err), MP_E_DATA);
    ctx.train->task = MP_TASK_REGRESSION;
    ctx.model->task = MP_TASK_CLASSIFICATION;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval(&ctx, all, 1, &err), MP_E_CONFIG);
    ctx.model->task = MP_TASK_REGRESSION;
    /* A failing sink fails the stage. */
    memset(&cap, 0, sizeof cap);
    cap.fail_at = 2;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval(&ctx, all, 5, &err), MP_E_DB);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- cross-validation */

extern const mp_stage_ops mp_stage_standardize;

/* Mirrors standardize_conf in stages/scale.c. */
typedef struct standardize_conf { bool with_mean, with_std; } standardize_conf;

/* The fold rows of key in fold order; returns their count. */
static int cap_folds(const char *key, double *v, int max) { return metric_folds(&cap, key, v, max); }

/* The final figure cv.<name> is the mean of its fold rows and cv.<name>.std
 * their population standard deviation. */
static void assert_mean_std(const char *name, int folds) {
    double v[16];
    assert_true(folds <= 16);
    assert_cv_mean_std(&cap, name, folds, v);
}

/* cv_folds: the transform and train stages re-run on each fold of the raw
 * training rows (the host's copy), and cv.<metric> rows land at step =
 * fold, with the mean and the std as final figures. */
static void test_evaluate_cross_validation(void **state) {
    (void)state;
    const double w[] = { 1.0, -2.0, 0.5 };
    mp_dataset *raw = linear_data(500, 3, w, 4.0, 0.5, 20);
    for (size_t i = 0; i < 500; i++) MP_AT(&raw->X, i, 1) = 100.0f * MP_AT(&raw->X, i, 1) + 7.0f;
    mp_ctx ctx = ctx_for(mp_dataset_copy(raw, &(mp_err){ 0 }));
    assert_non_null(ctx.train);
    ctx.test = linear_data(100, 3, w, 4.0, 0.5, 21);
    linreg_conf lc = conf_default();
    standardize_conf sc = { true, true };
    mp_stage stages[3] = {
        { .ops = &mp_stage_standardize, .conf = &sc, .name = "transform" },
        { .ops = &mp_stage_linear_regression, .conf = &lc, .name = "train" },
        { .ops = &mp_stage_eval_regression, .name = "evaluate" },
    };
    mp_host h = host;
    h.stages = stages;
    h.n_stages = 3;
    h.raw_train = raw;
    ctx.host = &h;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &lc, &err), MP_OK);

    static const char *const all[] = { "mse", "rmse", "mae", "r2", "explained_variance" };
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval_cv(&ctx, all, 5, 5, &err), MP_OK);
    /* Only test.* and cv.* rows: the folds' own training metrics are dropped. */
    for (int i = 0; i < cap.n; i++)
        if (strncmp(cap.key[i], "test.", 5) != 0 && strncmp(cap.key[i], "cv.", 3) != 0)
            fail_msg("unexpected metric row '%s'", cap.key[i]);
    for (size_t i = 0; i < 5; i++) assert_mean_std(all[i], 5);
    double mse[5], rmse[5], r2[5], ev[5];
    assert_int_equal(cap_folds("cv.mse", mse, 5), 5);
    assert_int_equal(cap_folds("cv.rmse", rmse, 5), 5);
    assert_int_equal(cap_folds("cv.r2", r2, 5), 5);
    assert_int_equal(cap_folds("cv.explained_variance", ev, 5), 5);
    for (int f = 0; f < 5; f++) {
        assert_near(rmse[f], sqrt(mse[f]), 1e-12);
        assert_near(mse[f], 0.25, 0.1);             /* 100 held-out rows: the noise variance */
        assert_true(r2[f] > 0.9 && ev[f] >= r2[f] - 1e-3);    /* var(y) = 5.5 */
    }
    /* Seeded folds: the same figures again. */
    metric_capture first = cap;
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval_cv(&ctx, all, 5, 5, &err), MP_OK);
    assert_int_equal(cap.n, first.n);
    for (int i = 0; i < cap.n; i++) {
        assert_string_equal(cap.key[i], first.key[i]);
        assert_true(cap.value[i] == first.value[i]);
    }
    /* Another fold count. */
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval_cv(&ctx, all, 1, 3, &err), MP_OK);
    assert_mean_std("mse", 3);

    /* Too many folds, no train stage, no raw copy: MP_E_DATA, named. */
    err = (mp_err){ 0 };
    assert_int_equal(run_eval_cv(&ctx, all, 1, 501, &err), MP_E_DATA);
    assert_msg_has(&err, "cannot make 501 folds of 500 rows");
    h.n_stages = 1;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval_cv(&ctx, all, 1, 5, &err), MP_E_DATA);
    assert_msg_has(&err, "needs a train stage");
    h.n_stages = 3;
    h.raw_train = NULL;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval_cv(&ctx, all, 1, 5, &err), MP_E_DATA);
    h.raw_train = raw;
    /* A failing sink fails the stage, during the folds or at the mean. */
    for (int at = 2; at <= 4; at++) {
        memset(&cap, 0, sizeof cap);
        cap.fail_at = at;       /* test.mse, then the folds' rows and the final figures */
        err = (mp_err){ 0 };
        assert_int_equal(run_eval_cv(&ctx, all, 1, 2, &err), MP_E_DB);
    }
    /* cv_folds: 1 is a config error (the runner adds the file:line:col). */
    eval_conf bad = { { .v = (char **)all, .n = 1 }, 1 };
    err = (mp_err){ 0 };
    assert_non_null(mp_stage_eval_regression.check);
    assert_int_equal(mp_stage_eval_regression.check(&bad, &err), MP_E_CONFIG);
    assert_msg_has(&err, "cv_folds must be 0");
    bad.cv_folds = 2;
    err = (mp_err){ 0 };
    assert_int_equal(mp_stage_eval_regression.check(&bad, &err), MP_OK);
    ctx_release(&ctx);
    mp_dataset_free(raw);
}

/* ---------------------------------------------------------------- save / load */

/* round_trip's check for a linear model: predict refuses a matrix of the
 * wrong width. */
static void wrong_width_refused(const mp_model *m, const mp_model *m2, mp_art_reader *r) {
    (void)r;
    mp_err err = { 0 };
    mp_matrix X1 = { 0 }, out = { 0 };
    assert_int_equal(mp_matrix_init(&X1, 2, m->n_features + 1, &err), MP_OK);
    assert_int_equal(mp_matrix_init(&out, 2, 1, &err), MP_OK);
    assert_int_equal(m2->ops->predict(m2, &X1, &out, &err), MP_E_DATA);
    mp_matrix_release(&X1);
    mp_matrix_release(&out);
}

static void test_save_load_predict(void **state) {
    (void)state;
    const double w[] = { 0.3, -1.7, 2.9 };
    mp_ctx ctx = ctx_for(linear_data(120, 3, w, 0.1, 0.2, 12));
    linreg_conf c = conf_default();
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    round_trip(ctx.model, ctx.train, wrong_width_refused);
    c.solver = ADAM;
    c.epochs = 5;
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    round_trip(ctx.model, ctx.train, wrong_width_refused);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- allocation failure */

/* Fails allocation 1, 2, ... of a whole run until it succeeds; each failure
 * must be MP_E_NOMEM with no model and (checked by cmocka) no leak. */
static void alloc_fail_loop(int solver, bool shuffle, bool collinear) {
    linreg_conf c = conf_default();
    c.solver = solver;
    c.epochs = 3;
    c.shuffle = shuffle;
    int failures = 0;
    for (long nth = 1;; nth++) {
        const double w[] = { 1.0, -1.0, 0.5 };
        mp_dataset *ds = linear_data(40, 3, w, 1.0, 0.1, 13);
        if (collinear)
            for (size_t i = 0; i < 40; i++) MP_AT(&ds->X, i, 2) = 3.0f * MP_AT(&ds->X, i, 0);
        mp_ctx ctx = ctx_for(ds);
        if (train_with_failing_alloc(&mp_stage_linear_regression, &c, &ctx, nth)) break;
        failures++;
        assert_true(nth < 100);
    }
    assert_true(failures >= 3);
}

static void test_alloc_failures(void **state) {
    (void)state;
    alloc_fail_loop(EXACT, false, false);
    alloc_fail_loop(EXACT, false, true);    /* through the least-squares fallback */
    alloc_fail_loop(SGD, true, false);
    alloc_fail_loop(ADAM, false, false);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stage_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_known_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_matches_noisy_least_squares, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ridge_closed_form, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collinear_and_constant_columns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threaded_gram_matches_one_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gradient_central_differences, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gradient_solvers_approach_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gradient_early_stop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancelled_and_metric_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evaluate_regression, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evaluate_cross_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_load_predict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
