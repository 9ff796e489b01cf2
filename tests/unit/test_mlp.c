/*
 * test_mlp.c -- unit tests of `train: mlp` (stages/mlp.c).
 *
 * The loss and gradient of whole networks (two hidden layers, each
 * activation, softmax cross-entropy and squared error) are checked against a
 * plain double-precision forward pass and by central differences; predict
 * (OpenBLAS, in row blocks) against the same double loops.  The stage runs
 * through its ops->run on a hand-built mp_ctx whose host captures metrics:
 * known answers (XOR, blobs, a smooth regression), the per-epoch metric
 * history, validation with early stopping and restored weights,
 * repeatability, the target conversions (numeric -> classes, classes ->
 * numbers for task: regression), the data and numeric errors, cancellation,
 * save -> load -> predict through the real artifact API, and an
 * allocation-failure loop (every failure MP_E_NOMEM, nothing leaked:
 * cmocka's allocator checks each test).
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>     /* before cmocka.h, which redefines malloc under UNIT_TESTING */
#include <string.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mp.h"
#include "artifact.h"
#include "mlp.h"
#include "optim.h"
#include "fixtures.h"

/* ---------------------------------------------------------------- fixtures */

/* XOR: the four corners of the unit square, each `reps` times. */
static mp_dataset *xor_data(size_t reps) {
    mp_dataset *ds = dataset(4 * reps, 2);
    for (size_t i = 0; i < 4 * reps; i++) {
        int a = (int)(i % 4) & 1, b = (int)(i % 4) >> 1;
        MP_AT(&ds->X, i, 0) = (float)a;
        MP_AT(&ds->X, i, 1) = (float)b;
        ds->y[i] = (double)(a ^ b);
    }
    set_classes(ds, 2);
    return ds;
}

/* y = sin(2 x0) + 0.5 x1^2 on uniform x in [-1.5, 1.5]^2: smooth, not linear. */
static double smooth_fn(double x0, double x1) { return sin(2.0 * x0) + 0.5 * x1 * x1; }

static mp_dataset *smooth_data(size_t n, uint64_t seed) {
    mp_dataset *ds = dataset(n, 2);
    mp_rng rng;
    mp_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        double x0 = 3.0 * mp_rng_uniform(&rng) - 1.5, x1 = 3.0 * mp_rng_uniform(&rng) - 1.5;
        MP_AT(&ds->X, i, 0) = (float)x0;
        MP_AT(&ds->X, i, 1) = (float)x1;
        ds->y[i] = smooth_fn(x0, x1);
    }
    ds->task = MP_TASK_REGRESSION;
    return ds;
}

static int hidden_storage[4];

/* The defaults of the parameter table, with `hidden` pointing at units. */
static mp_mlp_conf conf_default(const int *units, size_t n_units) {
    assert_true(n_units <= 4);
    if (n_units) memcpy(hidden_storage, units, n_units * sizeof *units);
    return (mp_mlp_conf){ .hidden = { n_units ? hidden_storage : NULL, n_units },
                          .activation = MP_MLP_RELU, .optimizer = MP_OPT_ADAM,
                          .learning_rate = 0.01, .momentum = 0.9, .beta1 = 0.9, .beta2 = 0.999,
                          .weight_decay = 0.0, .batch_size = 16, .epochs = 50, .shuffle = true,
                          .validation_split = 0.0, .patience = 0, .init = MP_MLP_INIT_AUTO,
                          .threads = 0, .task = MP_MLP_CLASSIFICATION };
}

/* The metric sink of the test host: each per-epoch series in order. */
#define MAX_ROWS 1000
typedef struct series {
    int    n;
    double v[MAX_ROWS];
    long   step[MAX_ROWS];
} series;

typedef struct capture {
    series loss, acc, vloss, vacc;  /* train.loss, train.accuracy, val.loss, val.accuracy */
    int    other;                   /* rows with any other key */
    int    fail_at;                 /* 1-based train.loss row that fails with MP_E_DB; 0 = never */
} capture;

static void push(series *s, double v, long step) {
    if (s->n < MAX_ROWS) {
        s->v[s->n] = v;
        s->step[s->n] = step;
    }
    s->n++;
}

static int cap_metric(void *ud, const char *key, double value, long step, mp_err *err) {
    capture *c = ud;
    if (strcmp(key, "train.loss") == 0) {
        if (c->fail_at && c->loss.n + 1 == c->fail_at)
            return MP_ERR(err, MP_E_DB, "cannot write metric: disk full");
        push(&c->loss, value, step);
    } else if (strcmp(key, "train.accuracy") == 0) {
        push(&c->acc, value, step);
    } else if (strcmp(key, "val.loss") == 0) {
        push(&c->vloss, value, step);
    } else if (strcmp(key, "val.accuracy") == 0) {
        push(&c->vacc, value, step);
    } else {
        c->other++;
    }
    return MP_OK;
}

static capture cap;
static mp_host host = { .metric = cap_metric, .ud = &cap };

static mp_ctx ctx_for(mp_dataset *ds) {
    memset(&cap, 0, sizeof cap);
    return (mp_ctx){ .train = ds, .seed = 42, .stage_index = 1, .pipeline = "test",
                     .host = &host };
}

static int run_stage(mp_ctx *ctx, mp_mlp_conf *c, mp_err *err) {
    return run_ops(&mp_stage_mlp, c, ctx, err);
}

static int setup(void **state) {
    (void)state;
    reset_test_state();     /* log level WARN keeps the per-epoch info lines out of the output */
    return 0;
}

/* ---------------------------------------------------------------- reference */

/* The network in plain double loops, straight from mlp.h: the outputs of
 * row x (before softmax) into out, with theta (n_params doubles) as params. */
static void ref_forward(const mp_mlp *net, const double *theta, const float *x, double *out) {
    double a[64], z[64];
    size_t L = net->n_layers;
    for (size_t j = 0; j < net->sizes[0]; j++) a[j] = x[j];
    for (size_t l = 0; l < L; l++) {
        size_t n_in = net->sizes[l], n_out = net->sizes[l + 1];
        const double *W = theta + net->offset[l], *b = W + n_out * n_in;
        assert_true(n_in <= 64 && n_out <= 64);
        for (size_t o = 0; o < n_out; o++) {
            z[o] = b[o];
            for (size_t j = 0; j < n_in; j++) z[o] += W[o * n_in + j] * a[j];
        }
        for (size_t o = 0; o < n_out; o++) {
            if (l + 1 == L) a[o] = z[o];
            else if (net->activation == MP_MLP_RELU) a[o] = z[o] > 0 ? z[o] : 0;
            else if (net->activation == MP_MLP_TANH) a[o] = tanh(z[o]);
            else a[o] = 1.0 / (1.0 + exp(-z[o]));
        }
    }
    memcpy(out, a, net->sizes[L] * sizeof *out);
}

/* The mean loss in double, with theta[at] moved by delta. */
static double ref_loss(const mp_mlp *net, const double *theta_in, size_t at, double delta,
                       const float *X, size_t n, const int *labels, const float *targets) {
    static double theta[4096];
    assert_true(net->n_params <= 4096);
    memcpy(theta, theta_in, net->n_params * sizeof *theta);
    if (at < net->n_params) theta[at] += delta;
    size_t d = net->sizes[0], k = net->sizes[net->n_layers];
    double sum = 0.0, out[64];
    for (size_t i = 0; i < n; i++) {
        ref_forward(net, theta, X + i * d, out);
        if (net->softmax) {
            double mx = out[0], s = 0.0;
            for (size_t j = 1; j < k; j++) mx = fmax(mx, out[j]);
            for (size_t j = 0; j < k; j++) s += exp(out[j] - mx);
            sum += mx + log(s) - out[labels[i]];
        } else {
            for (size_t j = 0; j < k; j++) sum += pow(out[j] - targets[i * k + j], 2);
        }
    }
    return net->softmax ? sum / (double)n : sum / ((double)n * (double)k);
}

/* ---------------------------------------------------------------- gradient */

/* Two hidden layers (4 -> 6 -> 5 -> k), random weights and rows: the
 * gradient of mp_mlp_loss_grad against central differences. */
static void check_gradient(int activation, bool softmax) {
    enum { n = 7, d = 4 };
    size_t k = softmax ? 3 : 2;
    size_t sizes[4] = { d, 6, 5, k };
    mp_mlp *net = mp_mlp_new(sizes, 3, activation, softmax);
    assert_non_null(net);
    assert_int_equal(net->n_params, mp_mlp_n_params(sizes, 3));
    assert_int_equal(net->n_params, 6 * 5 + 5 * 7 + k * 6);
    mp_rng rng;
    mp_rng_seed(&rng, 100 + (uint64_t)activation * 2 + softmax);
    for (size_t i = 0; i < net->n_params; i++) net->params[i] = (float)(0.8 * mp_rng_normal(&rng));
    float X[n * d], targets[n * 3];
    int labels[n];
    for (size_t i = 0; i < n * d; i++) X[i] = (float)mp_rng_normal(&rng);
    for (size_t i = 0; i < n; i++) labels[i] = (int)(i % k);
    for (size_t i = 0; i < n * k; i++) targets[i] = (float)mp_rng_normal(&rng);
    const int *lab = softmax ? labels : NULL;
    const float *tgt = softmax ? NULL : targets;

    mp_err err = { 0 };
    mp_mlp_work *w = NULL;
    assert_int_equal(mp_mlp_work_new(net, n, &w, &err), MP_OK);
    float *grad = mp_calloc(net->n_params, sizeof *grad);
    double *theta = mp_calloc(net->n_params, sizeof *theta);
    assert_non_null(grad);
    assert_non_null(theta);
    for (size_t i = 0; i < net->n_params; i++) theta[i] = net->params[i];

    size_t correct = 99;
    double loss = mp_mlp_loss_grad(w, net, X, n, lab, tgt, grad, &correct);
    double ref = ref_loss(net, theta, SIZE_MAX, 0.0, X, n, lab, tgt);
    /* The OpenBLAS float path against the double loops. */
    if (fabs(loss - ref) > 1e-5 * (1.0 + fabs(ref)))
        fail_msg("act %d softmax %d: loss %.9g, reference %.9g", activation, softmax, loss, ref);
    assert_true(correct <= n);
    if (!softmax) assert_int_equal(correct, 0);

    double worst = 0.0;
    for (size_t i = 0; i < net->n_params; i++) {
        /* 1. Central difference of the double reference: grad is the
         *    derivative of the right objective, to float precision. */
        double h = 1e-6;
        double num = (ref_loss(net, theta, i, h, X, n, lab, tgt) -
                      ref_loss(net, theta, i, -h, X, n, lab, tgt)) / (2 * h);
        double e = fabs(num - grad[i]);
        if (e > worst) worst = e;
        if (e > 1e-5 + 1e-4 * fabs(num))
            fail_msg("act %d softmax %d param %zu: grad %.9g, central difference (double) %.9g",
                     activation, softmax, i, (double)grad[i], num);
        /* 2. Central difference of the float function itself (a larger step:
         *    a float loss carries ~7 digits).  Skipped for relu, whose kinks
         *    a step that large may cross. */
        if (activation == MP_MLP_RELU) continue;
        float t = net->params[i], hf = 1e-2f;
        net->params[i] = t + hf;
        double up = net->params[i];
        double fp = mp_mlp_loss_grad(w, net, X, n, lab, tgt, NULL, NULL);
        net->params[i] = t - hf;
        double dn = net->params[i];
        double fm = mp_mlp_loss_grad(w, net, X, n, lab, tgt, NULL, NULL);
        net->params[i] = t;
        double numf = (fp - fm) / (up - dn);
        if (fabs(numf - grad[i]) > 2e-3 + 2e-2 * fabs(numf))
            fail_msg("act %d softmax %d param %zu: grad %.9g, central difference (float) %.9g",
                     activation, softmax, i, (double)grad[i], numf);
    }
    print_message("gradient, activation %d, %s: %zu params, largest error %.2g\n", activation,
                  softmax ? "softmax" : "mse", net->n_params, worst);
    mp_free(theta);
    mp_free(grad);
    mp_mlp_work_free(w);
    mp_mlp_free(net);
}

static void test_gradient_softmax(void **state) {
    (void)state;
    check_gradient(MP_MLP_RELU, true);
    check_gradient(MP_MLP_TANH, true);
    check_gradient(MP_MLP_SIGMOID, true);
}

static void test_gradient_mse(void **state) {
    (void)state;
    check_gradient(MP_MLP_RELU, false);
    check_gradient(MP_MLP_TANH, false);
    check_gradient(MP_MLP_SIGMOID, false);
}

/* No hidden layer: softmax regression, whose gradient is known in closed
 * form: dW = (P - Y)^T X / n. */
static void test_gradient_no_hidden(void **state) {
    (void)state;
    size_t sizes[2] = { 3, 4 };
    mp_mlp *net = mp_mlp_new(sizes, 1, MP_MLP_RELU, true);
    assert_non_null(net);
    for (size_t i = 0; i < net->n_params; i++) net->params[i] = 0.1f * (float)((int)i % 5 - 2);
    float X[2 * 3] = { 1, 2, -1, 0.5f, -0.5f, 2 };
    int y[2] = { 3, 0 };
    float grad[16];
    mp_err err = { 0 };
    mp_mlp_work *w = NULL;
    assert_int_equal(mp_mlp_work_new(net, 2, &w, &err), MP_OK);
    mp_mlp_loss_grad(w, net, X, 2, y, NULL, grad, NULL);
    double theta[16], out[4];
    for (size_t i = 0; i < net->n_params; i++) theta[i] = net->params[i];
    double gW[4][3] = { { 0 } }, gb[4] = { 0 };
    for (size_t i = 0; i < 2; i++) {
        ref_forward(net, theta, X + i * 3, out);
        double mx = fmax(fmax(out[0], out[1]), fmax(out[2], out[3])), s = 0.0;
        for (size_t j = 0; j < 4; j++) s += exp(out[j] - mx);
        for (size_t j = 0; j < 4; j++) {
            double r = (exp(out[j] - mx) / s - (j == (size_t)y[i])) / 2.0;
            gb[j] += r;
            for (size_t c = 0; c < 3; c++) gW[j][c] += r * X[i * 3 + c];
        }
    }
    for (size_t j = 0; j < 4; j++) {
        for (size_t c = 0; c < 3; c++) assert_true(fabs(grad[j * 3 + c] - gW[j][c]) < 1e-6);
        assert_true(fabs(grad[12 + j] - gb[j]) < 1e-6);
    }
    mp_mlp_work_free(w);
    mp_mlp_free(net);
}

/* Huge logits do not overflow the loss (log-sum-exp). */
static void test_loss_stable_for_large_logits(void **state) {
    (void)state;
    size_t sizes[2] = { 1, 3 };
    mp_mlp *net = mp_mlp_new(sizes, 1, MP_MLP_RELU, true);
    assert_non_null(net);
    net->params[0] = 1000.0f;       /* class 0's logit = 1000 x */
    float X[2] = { 1.0f, -1.0f };
    int y[2] = { 1, 0 };            /* both wrong by a margin of 1000 */
    mp_err err = { 0 };
    mp_mlp_work *w = NULL;
    assert_int_equal(mp_mlp_work_new(net, 2, &w, &err), MP_OK);
    double loss = mp_mlp_loss_grad(w, net, X, 2, y, NULL, NULL, NULL);
    assert_true(fabs(loss - (1000.0 + 0.5 * log(2.0))) < 1e-3);
    mp_mlp_work_free(w);
    mp_mlp_free(net);
}

/* Shapes that cannot work are refused, and counts that overflow say so. */
static void test_shapes(void **state) {
    (void)state;
    size_t zero[3] = { 4, 0, 2 }, huge[3] = { (size_t)INT_MAX + 1, 2, 2 };
    assert_null(mp_mlp_new(zero, 2, MP_MLP_RELU, true));
    assert_null(mp_mlp_new(huge, 2, MP_MLP_RELU, true));
    assert_int_equal(mp_mlp_n_params(zero, 2), SIZE_MAX);
    size_t big[3] = { SIZE_MAX / 2, SIZE_MAX / 2, 2 };
    assert_int_equal(mp_mlp_n_params(big, 2), SIZE_MAX);
    size_t ok[3] = { 784, 512, 10 };
    assert_int_equal(mp_mlp_n_params(ok, 2), 784 * 512 + 512 + 512 * 10 + 10);
}

/* ---------------------------------------------------------------- training */

static void test_xor(void **state) {
    (void)state;
    static const int units[] = { 8 };
    for (int act = MP_MLP_RELU; act <= MP_MLP_SIGMOID; act++) {
        mp_ctx ctx = ctx_for(xor_data(8));
        mp_mlp_conf c = conf_default(units, 1);
        c.activation = act;
        c.learning_rate = 0.05;
        c.batch_size = 8;
        c.epochs = 300;
        mp_err err = { 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
        mp_model *m = ctx.model;
        assert_int_equal(m->n_outputs, 2);
        /* The four corners, each predicted with confidence. */
        mp_matrix X = { 0 }, P = { 0 };
        assert_int_equal(mp_matrix_init(&X, 4, 2, &err), MP_OK);
        assert_int_equal(mp_matrix_init(&P, 4, 2, &err), MP_OK);
        memcpy(X.data, ctx.train->X.data, 8 * sizeof(float));
        assert_int_equal(m->ops->predict(m, &X, &P, &err), MP_OK);
        for (int i = 0; i < 4; i++) {
            int want = (i & 1) ^ (i >> 1);
            float p = P.data[2 * i + want];
            assert_true(fabsf(P.data[2 * i] + P.data[2 * i + 1] - 1.0f) < 1e-6f);
            if (!(p > 0.9f))
                fail_msg("activation %d: P(xor(%d,%d) = %d) = %.4f after %d epochs", act, i & 1,
                         i >> 1, want, p, cap.loss.n);
        }
        print_message("xor, activation %d: final loss %.3g, P(right) >= 0.9 at every corner\n",
                      act, cap.loss.v[cap.loss.n - 1]);
        mp_matrix_release(&X);
        mp_matrix_release(&P);
        ctx_release(&ctx);
    }
}

static void test_blobs_each_optimizer(void **state) {
    (void)state;
    static const double lr[] = { 0.05, 0.02, 0.01 };
    static const char *const name[] = { "sgd", "momentum", "adam" };
    static const int units[] = { 16, 8 };
    for (int kind = MP_OPT_SGD; kind <= MP_OPT_ADAM; kind++) {
        mp_ctx ctx = ctx_for(blobs(300, 3, THREE, 1.2, 2));
        mp_mlp_conf c = conf_default(units, 2);
        c.optimizer = kind;
        c.learning_rate = lr[kind];
        c.epochs = 30;
        c.weight_decay = 1e-4;
        mp_err err = { 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
        mp_model *m = ctx.model;
        assert_string_equal(ctx.train_module, "mlp");
        assert_string_equal(m->ops->name, "mlp");
        assert_int_equal(m->task, MP_TASK_CLASSIFICATION);
        assert_true(m->has_proba);
        assert_int_equal(m->n_features, 2);
        assert_int_equal(m->n_outputs, 3);
        double acc = accuracy(m, ctx.train);
        print_message("3 blobs, %-8s: accuracy %.4f, final loss %.4g, train.accuracy %.4f\n",
                      name[kind], acc, cap.loss.v[cap.loss.n - 1], cap.acc.v[cap.acc.n - 1]);
        assert_true(acc >= 0.95);
        assert_true(cap.acc.v[cap.acc.n - 1] >= 0.9);
        ctx_release(&ctx);
    }
}

/* One train.loss and train.accuracy row per epoch, steps 1..E; the loss goes down. */
static void test_metric_history(void **state) {
    (void)state;
    static const int units[] = { 8 };
    mp_ctx ctx = ctx_for(blobs(150, 3, THREE, 1.0, 3));
    mp_mlp_conf c = conf_default(units, 1);
    c.epochs = 20;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(cap.loss.n, 20);
    assert_int_equal(cap.acc.n, 20);
    assert_int_equal(cap.vloss.n, 0);
    assert_int_equal(cap.vacc.n, 0);
    assert_int_equal(cap.other, 0);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(cap.loss.step[i], i + 1);
        assert_int_equal(cap.acc.step[i], i + 1);
        assert_true(cap.acc.v[i] >= 0.0 && cap.acc.v[i] <= 1.0);
    }
    assert_true(cap.loss.v[19] < 0.5 * cap.loss.v[0]);
    ctx_release(&ctx);
}

static char info_lines[16][512];
static int n_info;
static void info_sink(int level, const char *msg, void *ud) {
    (void)ud;
    if (level == MP_LOG_INFO && n_info < 16) snprintf(info_lines[n_info++], 512, "%s", msg);
}

/* One info line per epoch, "mlp: epoch 3/5 loss 0.31 acc 0.887 (0.0s)". */
static void test_epoch_log_lines(void **state) {
    (void)state;
    static const int units[] = { 4 };
    mp_ctx ctx = ctx_for(blobs(60, 2, TWO, 0.5, 4));
    mp_mlp_conf c = conf_default(units, 1);
    c.epochs = 3;
    c.validation_split = 0.25;
    mp_err err = { 0 };
    n_info = 0;
    mp_log_level = MP_LOG_INFO;
    mp_log_set_sink(info_sink, NULL);
    int rc = run_stage(&ctx, &c, &err);
    mp_log_set_sink(NULL, NULL);
    mp_log_level = MP_LOG_WARN;
    assert_int_equal(rc, MP_OK);
    assert_int_equal(n_info, 3);
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof want, "mlp: epoch %d/3 loss ", i + 1);
        if (strncmp(info_lines[i], want, strlen(want)) != 0 || !strstr(info_lines[i], " acc ") ||
            !strstr(info_lines[i], " val_loss ") || !strstr(info_lines[i], " val_acc ") ||
            !strstr(info_lines[i], "s)"))
            fail_msg("line %d: '%s'", i + 1, info_lines[i]);
    }
    print_message("%s\n", info_lines[2]);
    ctx_release(&ctx);
}

/* A smooth non-linear function: a tanh net fits it far better than the
 * best constant, predicts one value per row, and is a regression model. */
static void test_regression(void **state) {
    (void)state;
    static const int units[] = { 32 };
    mp_ctx ctx = ctx_for(smooth_data(400, 5));
    mp_mlp_conf c = conf_default(units, 1);
    c.task = MP_MLP_REGRESSION;
    c.activation = MP_MLP_TANH;
    c.epochs = 150;
    c.learning_rate = 0.01;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    mp_model *m = ctx.model;
    assert_int_equal(m->task, MP_TASK_REGRESSION);
    assert_int_equal(m->n_outputs, 1);
    assert_false(m->has_proba);
    assert_int_equal(cap.acc.n, 0);     /* no accuracy for regression */
    const mp_dataset *ds = ctx.train;
    double mean = 0.0, var = 0.0, mse = 0.0;
    for (size_t i = 0; i < 400; i++) mean += ds->y[i] / 400.0;
    for (size_t i = 0; i < 400; i++) var += pow(ds->y[i] - mean, 2) / 400.0;
    mp_matrix P = { 0 };
    assert_int_equal(mp_matrix_init(&P, 400, 1, &err), MP_OK);
    assert_int_equal(m->ops->predict(m, &ds->X, &P, &err), MP_OK);
    for (size_t i = 0; i < 400; i++) mse += pow(P.data[i] - ds->y[i], 2) / 400.0;
    print_message("regression: MSE %.4g (variance %.4g), last train.loss %.4g\n", mse, var,
                  cap.loss.v[cap.loss.n - 1]);
    assert_true(mse < 0.02 * var);
    assert_true(fabs(mse - cap.loss.v[cap.loss.n - 1]) < 0.5 * var);
    mp_matrix_release(&P);
    ctx_release(&ctx);
}

/* The executor encodes a numeric target as classes (train: mlp is a
 * classifier in its table); task: regression decodes it back, in train and
 * test, to the exact values. */
static void test_regression_decodes_classes(void **state) {
    (void)state;
    static const int units[] = { 16 };
    mp_dataset *train = smooth_data(200, 6), *test = smooth_data(50, 7);
    for (size_t i = 0; i < 200; i++) train->y[i] = round(train->y[i] * 8.0) / 8.0 + 0.1;
    for (size_t i = 0; i < 50; i++) test->y[i] = round(test->y[i] * 8.0) / 8.0 + 0.1;
    double *want = mp_malloc(250 * sizeof *want);
    assert_non_null(want);
    memcpy(want, train->y, 200 * sizeof *want);
    memcpy(want + 200, test->y, 50 * sizeof *want);
    mp_err err = { 0 };
    assert_int_equal(mp_dataset_encode_labels_pair(train, test, &err), MP_OK);
    assert_int_equal(train->task, MP_TASK_CLASSIFICATION);
    assert_true(train->n_classes > 10);
    mp_ctx ctx = ctx_for(train);
    ctx.test = test;
    mp_mlp_conf c = conf_default(units, 1);
    c.task = MP_MLP_REGRESSION;
    c.epochs = 5;
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(train->task, MP_TASK_REGRESSION);
    assert_int_equal(test->task, MP_TASK_REGRESSION);
    assert_int_equal(train->n_classes, 0);
    assert_null(train->class_names);
    assert_null(test->class_names);
    for (size_t i = 0; i < 200; i++) assert_true(train->y[i] == want[i]);
    for (size_t i = 0; i < 50; i++) assert_true(test->y[i] == want[200 + i]);
    assert_int_equal(ctx.model->task, MP_TASK_REGRESSION);
    mp_free(want);
    ctx_release(&ctx);

    /* Class names that are not numbers cannot be regressed on. */
    ctx = ctx_for(blobs(30, 2, TWO, 0.5, 8));
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_msg_has(&err, "needs a numeric target");
    assert_msg_has(&err, "'c0'");
    assert_int_equal(ctx.train->task, MP_TASK_CLASSIFICATION);   /* left as it was */
    assert_null(ctx.model);
    ctx_release(&ctx);
}

/* A numeric target becomes classes (named by value) for classification. */
static void test_numeric_labels_encoded(void **state) {
    (void)state;
    static const int units[] = { 8 };
    mp_dataset *ds = blobs(100, 2, TWO, 0.5, 9);
    make_numeric(ds);
    for (size_t i = 0; i < 100; i++) ds->y[i] = ds->y[i] ? 20.0 : 10.0;
    mp_ctx ctx = ctx_for(ds);
    mp_mlp_conf c = conf_default(units, 1);
    c.epochs = 20;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(ds->task, MP_TASK_CLASSIFICATION);
    assert_int_equal(ds->n_classes, 2);
    assert_string_equal(ds->class_names[1], "20");
    assert_true(accuracy(ctx.model, ds) == 1.0);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- validation */

/* Overlapping classes and a large net: the validation loss bottoms out and
 * rises as the net overfits; training stops `patience` epochs after the best
 * epoch and keeps that epoch's weights, bit for bit the weights of a run
 * that simply stops there. */
static void test_validation_patience_restores_best(void **state) {
    (void)state;
    static const int units[] = { 64 };
    mp_ctx ctx = ctx_for(blobs(120, 2, TWO, 2.5, 10));
    mp_mlp_conf c = conf_default(units, 1);
    c.learning_rate = 0.02;
    c.batch_size = 8;
    c.epochs = 300;
    c.validation_split = 0.3;
    c.patience = 5;
    mp_err err = { 0 };
    n_info = 0;
    mp_log_level = MP_LOG_INFO;
    mp_log_set_sink(info_sink, NULL);
    int rc = run_stage(&ctx, &c, &err);
    mp_log_set_sink(NULL, NULL);
    mp_log_level = MP_LOG_WARN;
    assert_int_equal(rc, MP_OK);
    int epochs = cap.loss.n;
    assert_int_equal(cap.vloss.n, epochs);
    assert_int_equal(cap.vacc.n, epochs);
    assert_true(epochs < 300);
    int best = 0;
    for (int i = 1; i < epochs; i++)
        if (cap.vloss.v[i] < cap.vloss.v[best]) best = i;
    assert_int_equal(epochs - 1 - best, 5);     /* exactly patience epochs without progress */
    print_message("stopped after %d epochs, best epoch %d (val.loss %.4f, last %.4f)\n", epochs,
                  best + 1, cap.vloss.v[best], cap.vloss.v[epochs - 1]);
    assert_true(n_info >= 2);
    assert_non_null(strstr(info_lines[n_info - 2], "stopped early at epoch"));
    assert_non_null(strstr(info_lines[n_info - 1], "restored the weights of epoch"));
    const mp_mlp *stopped = mp_mlp_of_model(ctx.model);

    /* The same run told to stop at the best epoch, without patience. */
    mp_ctx ctx2 = ctx_for(blobs(120, 2, TWO, 2.5, 10));
    c.patience = 0;
    c.epochs = best + 1;
    assert_int_equal(run_stage(&ctx2, &c, &err), MP_OK);
    assert_int_equal(cap.loss.n, best + 1);
    const mp_mlp *direct = mp_mlp_of_model(ctx2.model);
    assert_int_equal(stopped->n_params, direct->n_params);
    assert_memory_equal(stopped->params, direct->params, direct->n_params * sizeof(float));
    ctx_release(&ctx2);
    ctx_release(&ctx);
}

/* validation_split holds rows out: they are never trained on. */
static void test_validation_split_sizes(void **state) {
    (void)state;
    static const int units[] = { 4 };
    mp_mlp_conf c = conf_default(units, 1);
    c.epochs = 2;
    c.validation_split = 0.9;
    /* 2 rows of 2 classes leave 1 for training even at 0.9 */
    mp_ctx ctx = ctx_for(blobs(2, 2, TWO, 0.5, 11));
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(cap.vloss.n, 2);
    ctx_release(&ctx);
    /* one row cannot be split */
    ctx = ctx_for(blobs(1, 2, TWO, 0.5, 11));
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_msg_has(&err, "validation_split needs at least 2 rows");
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- repeatability */

/* Same seed, same weights bit for bit; another seed, other weights; a
 * retrain replaces (and frees) the old model. */
static void test_repeatable(void **state) {
    (void)state;
    static const int units[] = { 12, 6 };
    mp_mlp_conf c = conf_default(units, 2);
    c.epochs = 4;
    c.validation_split = 0.2;
    mp_err err = { 0 };
    mp_ctx a = ctx_for(blobs(120, 3, THREE, 1.0, 12));
    assert_int_equal(run_stage(&a, &c, &err), MP_OK);
    mp_ctx b = ctx_for(blobs(120, 3, THREE, 1.0, 12));
    assert_int_equal(run_stage(&b, &c, &err), MP_OK);
    const mp_mlp *na = mp_mlp_of_model(a.model), *nb = mp_mlp_of_model(b.model);
    assert_memory_equal(na->params, nb->params, na->n_params * sizeof(float));
    b.seed = 43;
    assert_int_equal(run_stage(&b, &c, &err), MP_OK);     /* frees the first model */
    nb = mp_mlp_of_model(b.model);
    assert_true(memcmp(na->params, nb->params, na->n_params * sizeof(float)) != 0);
    ctx_release(&a);
    ctx_release(&b);
}

static char debug_lines[8][512];
static int n_debug;
static void debug_sink(int level, const char *msg, void *ud) {
    (void)ud;
    if (level == MP_LOG_DEBUG && strstr(msg, "training on") && n_debug < 8)
        snprintf(debug_lines[n_debug++], 512, "%s", msg);
}

/* Trains on `threads` threads; returns the model and checks the team size
 * the stage reports. */
static mp_ctx train_threads(mp_mlp_conf *c, int threads, const char *want_log) {
    mp_ctx ctx = ctx_for(blobs(600, 3, THREE, 1.5, 22));
    c->threads = threads;
    mp_err err = { 0 };
    n_debug = 0;
    mp_log_level = MP_LOG_DEBUG;
    mp_log_set_sink(debug_sink, NULL);
    int rc = run_stage(&ctx, c, &err);
    mp_log_set_sink(NULL, NULL);
    mp_log_level = MP_LOG_WARN;
    assert_int_equal(rc, MP_OK);
    assert_int_equal(n_debug, 1);
    if (!strstr(debug_lines[0], want_log)) fail_msg("'%s' lacks '%s'", debug_lines[0], want_log);
    return ctx;
}

/* The team of threads computes what one thread does (up to float rounding:
 * the sgemm calls see other shapes), repeats itself exactly, and gives
 * uneven or idle members nothing to break: 192 units make three slices of
 * 64, the 3-unit output layer goes to member 0 alone. */
static void test_threads_agree(void **state) {
    (void)state;
    static const int units[] = { 192, 128 };
    mp_mlp_conf c = conf_default(units, 2);
    c.epochs = 3;
    c.batch_size = 32;
    c.validation_split = 0.2;
    c.activation = MP_MLP_TANH;
    mp_ctx one = train_threads(&c, 1, "training on 1 thread");
    double loss1[3];
    memcpy(loss1, cap.loss.v, sizeof loss1);
    mp_ctx two = train_threads(&c, 2, "training on 2 threads");
    mp_ctx two_again = train_threads(&c, 2, "training on 2 threads");
    mp_ctx three = train_threads(&c, 3, "training on 3 threads");
    mp_ctx many = train_threads(&c, 64, "training on 3 threads");   /* capped by 192 / 64 */
    const mp_mlp *n1 = mp_mlp_of_model(one.model), *n2 = mp_mlp_of_model(two.model);
    assert_memory_equal(n2->params, mp_mlp_of_model(two_again.model)->params,
                        n2->n_params * sizeof(float));
    assert_memory_equal(mp_mlp_of_model(three.model)->params,
                        mp_mlp_of_model(many.model)->params, n2->n_params * sizeof(float));
    for (int i = 0; i < 3; i++)
        if (fabs(cap.loss.v[i] - loss1[i]) > 1e-4 * loss1[i])
            fail_msg("epoch %d: loss %.9g on 3 threads, %.9g on 1", i + 1, cap.loss.v[i],
                     loss1[i]);
    double worst = 0.0;
    for (size_t i = 0; i < n1->n_params; i++)
        worst = fmax(worst, fabs(n1->params[i] - n2->params[i]));
    print_message("threads: largest weight difference 1 vs 2 threads %.2g\n", worst);
    assert_true(worst < 1e-3);
    ctx_release(&one);
    ctx_release(&two);
    ctx_release(&two_again);
    ctx_release(&three);
    ctx_release(&many);
}

/* predict, in blocks of rows, matches the double loops. */
static void test_predict_matches_reference(void **state) {
    (void)state;
    static const int units[] = { 10, 7 };
    mp_ctx ctx = ctx_for(blobs(2500, 3, THREE, 1.0, 13));   /* > one predict block */
    mp_mlp_conf c = conf_default(units, 2);
    c.activation = MP_MLP_SIGMOID;
    c.epochs = 2;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    const mp_mlp *net = mp_mlp_of_model(ctx.model);
    mp_matrix P = { 0 };
    assert_int_equal(mp_matrix_init(&P, 2500, 3, &err), MP_OK);
    assert_int_equal(ctx.model->ops->predict(ctx.model, &ctx.train->X, &P, &err), MP_OK);
    double theta[1024], out[3];
    for (size_t i = 0; i < net->n_params; i++) theta[i] = net->params[i];
    double worst = 0.0;
    for (size_t i = 0; i < 2500; i++) {
        ref_forward(net, theta, ctx.train->X.data + 2 * i, out);
        double mx = fmax(out[0], fmax(out[1], out[2])), s = 0.0;
        for (int j = 0; j < 3; j++) s += exp(out[j] - mx);
        for (int j = 0; j < 3; j++)
            worst = fmax(worst, fabs(exp(out[j] - mx) / s - P.data[3 * i + j]));
    }
    assert_true(worst < 1e-5);
    /* A wrongly shaped input or output is refused. */
    mp_matrix bad = { 0 };
    assert_int_equal(mp_matrix_init(&bad, 1, 3, &err), MP_OK);
    assert_int_equal(ctx.model->ops->predict(ctx.model, &bad, &P, &err), MP_E_DATA);
    err = (mp_err){ 0 };
    assert_int_equal(ctx.model->ops->predict(ctx.model, &ctx.train->X, &bad, &err), MP_E_DATA);
    mp_matrix_release(&bad);
    mp_matrix_release(&P);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- errors */

static void test_no_target(void **state) {
    (void)state;
    static const int units[] = { 4 };
    mp_dataset *ds = blobs(20, 2, TWO, 0.5, 14);
    mp_free(ds->y);
    ds->y = NULL;
    ds->task = MP_TASK_NONE;
    mp_ctx ctx = ctx_for(ds);
    mp_mlp_conf c = conf_default(units, 1);
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_string_equal(err.msg, "mlp needs a target column (set target: in the load stage)");
    assert_null(ctx.model);
    ctx.train = NULL;   /* no data at all */
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    ctx.train = ds;
    ctx_release(&ctx);
}

static void test_one_class_and_bad_values(void **state) {
    (void)state;
    static const int units[] = { 4 };
    mp_mlp_conf c = conf_default(units, 1);
    mp_ctx ctx = ctx_for(blobs(20, 1, TWO, 0.5, 15));
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_msg_has(&err, "at least 2 classes");
    ctx_release(&ctx);

    ctx = ctx_for(blobs(20, 2, TWO, 0.5, 15));
    MP_AT(&ctx.train->X, 4, 1) = NAN;
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_string_equal(err.msg, "feature 'x1' is not a finite number at row 5");
    MP_AT(&ctx.train->X, 4, 1) = 0.0f;
    ctx.train->y[3] = 7.0;
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_string_equal(err.msg, "row 4: label 7 is not a class index below 2");
    assert_null(ctx.model);
    ctx_release(&ctx);
}

/* Features near FLT_MAX and plain SGD overflow the weights in the first step. */
static void test_non_finite_loss(void **state) {
    (void)state;
    static const int units[] = { 4 };
    mp_ctx ctx = ctx_for(blobs(40, 2, TWO, 0.1, 16));
    for (size_t i = 0; i < 40; i++) {
        float *r = ctx.train->X.data + i * 2;
        r[0] = r[0] > 0 ? 1e30f : -1e30f;
    }
    mp_mlp_conf c = conf_default(units, 1);
    c.optimizer = MP_OPT_SGD;
    c.learning_rate = 1.0;
    c.batch_size = 40;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_NUMERIC);
    assert_string_equal(err.msg, "loss is not finite at epoch 2 (try a lower learning_rate)");
    assert_int_equal(cap.loss.n, 1);    /* epoch 1 was recorded */
    assert_null(ctx.model);
    ctx_release(&ctx);
}

static void test_cancelled(void **state) {
    (void)state;
    static const int units[] = { 4 };
    mp_ctx ctx = ctx_for(blobs(50, 2, TWO, 0.5, 17));
    mp_mlp_conf c = conf_default(units, 1);
    mp_err err = { 0 };
    mp_cancel_signal = 15;
    int rc = run_stage(&ctx, &c, &err);
    mp_cancel_signal = 0;
    assert_int_equal(rc, MP_E_CANCELLED);
    assert_string_equal(err.msg, "interrupted at epoch 1");
    assert_null(ctx.model);
    assert_int_equal(cap.loss.n, 0);
    ctx_release(&ctx);
}

static void test_metric_failure(void **state) {
    (void)state;
    static const int units[] = { 4 };
    mp_ctx ctx = ctx_for(blobs(50, 2, TWO, 0.5, 18));
    cap.fail_at = 3;
    mp_mlp_conf c = conf_default(units, 1);
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DB);
    assert_string_equal(err.msg, "cannot write metric: disk full");
    assert_int_equal(cap.loss.n, 2);
    assert_null(ctx.model);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- save / load */

static void load_fails(const mp_model *m2, mp_art_reader *r, mp_model bad, const char *prefix) {
    (void)m2;
    mp_err err = { 0 };
    bad.state = NULL;
    assert_int_equal(bad.ops->load(&bad, r, prefix, &err), MP_E_PARSE);
    assert_null(bad.state);
}

/* round_trip's checks for an MLP: the same network, and a model file of the
 * other task or with no keys under the prefix is refused. */
static void same_network(const mp_model *m, const mp_model *m2, mp_art_reader *r) {
    const mp_mlp *a = mp_mlp_of_model(m), *b = mp_mlp_of_model(m2);
    assert_int_equal(a->n_layers, b->n_layers);
    assert_int_equal(a->activation, b->activation);
    assert_memory_equal(a->sizes, b->sizes, (a->n_layers + 1) * sizeof(size_t));
    mp_model bad = *m2;
    bad.task = m->task == MP_TASK_CLASSIFICATION ? MP_TASK_REGRESSION : MP_TASK_CLASSIFICATION;
    load_fails(m2, r, bad, "model.");
    load_fails(m2, r, *m2, "other.");    /* missing keys */
}

static void test_save_load_predict(void **state) {
    (void)state;
    static const int units[] = { 9, 5 };
    mp_mlp_conf c = conf_default(units, 2);
    c.epochs = 5;
    c.activation = MP_MLP_TANH;
    mp_err err = { 0 };
    mp_ctx ctx = ctx_for(blobs(150, 3, THREE, 1.0, 19));
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    round_trip(ctx.model, ctx.train, same_network);
    ctx_release(&ctx);
    /* regression, no hidden layer */
    c = conf_default(NULL, 0);
    c.task = MP_MLP_REGRESSION;
    c.epochs = 3;
    ctx = ctx_for(smooth_data(80, 20));
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    round_trip(ctx.model, ctx.train, same_network);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- allocation failure */

/* Fails allocation 1, 2, ... of a whole run until it succeeds; each failure
 * must be MP_E_NOMEM with no model and (checked by cmocka) no leak. */
static void alloc_fail_loop(int task, bool encoded, double validation_split, int patience,
                            int threads) {
    static const int units[] = { 6, 4 }, wide[] = { 128 };
    mp_mlp_conf c = threads > 1 ? conf_default(wide, 1) : conf_default(units, 2);
    c.threads = threads;
    c.epochs = 3;
    c.task = task;
    c.validation_split = validation_split;
    c.patience = patience;
    int failures = 0;
    for (long nth = 1;; nth++) {
        mp_dataset *ds = task == MP_MLP_CLASSIFICATION ? blobs(40, 3, THREE, 0.5, 21)
                                                       : smooth_data(40, 21);
        mp_err err = { 0 };
        if (encoded) {
            if (task == MP_MLP_CLASSIFICATION) make_numeric(ds);
            else assert_int_equal(mp_dataset_encode_labels(ds, &err), MP_OK);
        }
        mp_ctx ctx = ctx_for(ds);
        if (train_with_failing_alloc(&mp_stage_mlp, &c, &ctx, nth)) break;
        failures++;
        assert_true(nth < 100);
    }
    print_message("allocation failures (task %d, encoded %d, validation %.2f, patience %d, "
                  "threads %d): %d, all MP_E_NOMEM\n", task, encoded, validation_split, patience,
                  threads, failures);
    assert_true(failures >= 6);
}

static void test_alloc_failures(void **state) {
    (void)state;
    alloc_fail_loop(MP_MLP_CLASSIFICATION, false, 0.0, 0, 1);
    alloc_fail_loop(MP_MLP_CLASSIFICATION, false, 0.25, 2, 1);
    alloc_fail_loop(MP_MLP_CLASSIFICATION, true, 0.0, 0, 1);
    alloc_fail_loop(MP_MLP_CLASSIFICATION, false, 0.25, 0, 2);    /* with the thread team */
    alloc_fail_loop(MP_MLP_REGRESSION, false, 0.25, 0, 1);
    alloc_fail_loop(MP_MLP_REGRESSION, true, 0.0, 0, 1);
}

/* ---------------------------------------------------------------- stage table */

static void test_stage_table_and_check(void **state) {
    (void)state;
    const mp_stage_ops *ops = &mp_stage_mlp;
    assert_int_equal(ops->abi, MP_STAGE_ABI);
    assert_string_equal(ops->name, "mlp");
    assert_int_equal(ops->kind, MP_KIND_TRAIN);
    assert_int_equal(ops->task, MP_TASK_CLASSIFICATION);
    assert_int_equal(ops->conf_size, sizeof(mp_mlp_conf));
    assert_string_equal(ops->model->name, "mlp");
    static const char *const want[][2] = {
        { "hidden", "[512]" }, { "activation", "relu" }, { "optimizer", "adam" },
        { "learning_rate", "0.001" }, { "momentum", "0.9" }, { "beta1", "0.9" },
        { "beta2", "0.999" }, { "weight_decay", "0" }, { "batch_size", "32" },
        { "epochs", "5" }, { "shuffle", "true" }, { "validation_split", "0" },
        { "patience", "0" }, { "init", "auto" }, { "threads", "0" },
        { "task", "classification" },
    };
    size_t n = 0;
    for (const mp_param *p = ops->params; p->name; p++, n++) {
        assert_true(n < sizeof want / sizeof *want);
        assert_string_equal(p->name, want[n][0]);
        assert_string_equal(p->def, want[n][1]);
        assert_non_null(p->doc);
        assert_true(p->offset < sizeof(mp_mlp_conf));
    }
    assert_int_equal(n, sizeof want / sizeof *want);

    static const int units[] = { 8 };
    mp_mlp_conf c = conf_default(units, 1);
    mp_err err = { 0 };
    assert_int_equal(ops->check(&c, &err), MP_OK);
    c.beta2 = 1.0;
    assert_int_equal(ops->check(&c, &err), MP_E_CONFIG);
    assert_msg_has(&err, "beta2");
    c = conf_default(units, 1);
    c.momentum = 1.0;
    err = (mp_err){ 0 };
    assert_int_equal(ops->check(&c, &err), MP_E_CONFIG);
    assert_msg_has(&err, "momentum");
    c = conf_default(units, 1);
    c.patience = 3;
    err = (mp_err){ 0 };
    assert_int_equal(ops->check(&c, &err), MP_E_CONFIG);
    assert_msg_has(&err, "validation_split");
    c.validation_split = 0.1;
    err = (mp_err){ 0 };
    assert_int_equal(ops->check(&c, &err), MP_OK);
    static const int zero[] = { 8, 0 };
    c = conf_default(zero, 2);
    err = (mp_err){ 0 };
    assert_int_equal(ops->check(&c, &err), MP_E_CONFIG);
    assert_string_equal(err.msg, "hidden layer 2 has 0 units, needs at least 1");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_stage_table_and_check, setup),
        cmocka_unit_test_setup(test_shapes, setup),
        cmocka_unit_test_setup(test_gradient_softmax, setup),
        cmocka_unit_test_setup(test_gradient_mse, setup),
        cmocka_unit_test_setup(test_gradient_no_hidden, setup),
        cmocka_unit_test_setup(test_loss_stable_for_large_logits, setup),
        cmocka_unit_test_setup(test_xor, setup),
        cmocka_unit_test_setup(test_blobs_each_optimizer, setup),
        cmocka_unit_test_setup(test_metric_history, setup),
        cmocka_unit_test_setup(test_epoch_log_lines, setup),
        cmocka_unit_test_setup(test_regression, setup),
        cmocka_unit_test_setup(test_regression_decodes_classes, setup),
        cmocka_unit_test_setup(test_numeric_labels_encoded, setup),
        cmocka_unit_test_setup(test_validation_patience_restores_best, setup),
        cmocka_unit_test_setup(test_validation_split_sizes, setup),
        cmocka_unit_test_setup(test_repeatable, setup),
        cmocka_unit_test_setup(test_threads_agree, setup),
        cmocka_unit_test_setup(test_predict_matches_reference, setup),
        cmocka_unit_test_setup(test_no_target, setup),
        cmocka_unit_test_setup(test_one_class_and_bad_values, setup),
        cmocka_unit_test_setup(test_non_finite_loss, setup),
        cmocka_unit_test_setup(test_cancelled, setup),
        cmocka_unit_test_setup(test_metric_failure, setup),
        cmocka_unit_test_setup(test_save_load_predict, setup),
        cmocka_unit_test_setup(test_alloc_failures, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
