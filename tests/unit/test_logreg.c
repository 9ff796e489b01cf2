/*
 * test_logreg.c -- unit tests of `train: logistic_regression` (stages/logreg.c).
 *
 * The loss/gradient function is checked against a plain double-precision
 * reference and by central differences (binary and 3-class, with l2 > 0).
 * The stage runs through its ops->run on a hand-built mp_ctx whose host
 * captures metrics: known answers on separable blobs, a 3-class problem with
 * each optimizer, the per-epoch loss history, early stopping, the data and
 * numeric errors, cancellation, save -> load -> predict through the real
 * artifact API, and an allocation-failure loop (every failure MP_E_NOMEM,
 * nothing leaked: cmocka's allocator checks each test).
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

#include "mp.h"
#include "artifact.h"
#include "logreg.h"
#include "optim.h"
#include "fixtures.h"

/* ---------------------------------------------------------------- fixtures */

static mp_logreg_conf conf_default(void) {
    return (mp_logreg_conf){ .optimizer = MP_OPT_ADAM, .learning_rate = 0.05, .epochs = 100,
                             .batch_size = 32, .l2 = 0.0, .momentum = 0.9, .beta1 = 0.9,
                             .beta2 = 0.999, .weight_decay = 0.0, .tol = 0.0,
                             .n_iter_no_change = 5, .shuffle = true };
}

/* The metric sink of the test host: train.loss rows in order. */
static loss_capture cap;
static mp_host host = { .metric = loss_capture_metric, .ud = &cap };

static mp_ctx ctx_for(mp_dataset *ds) {
    memset(&cap, 0, sizeof cap);
    return (mp_ctx){ .train = ds, .seed = 42, .stage_index = 3, .pipeline = "test",
                     .host = &host };
}

static int run_stage(mp_ctx *ctx, mp_logreg_conf *c, mp_err *err) {
    return run_ops(&mp_stage_logistic_regression, c, ctx, err);
}

static int setup(void **state) {
    (void)state;
    reset_test_state();     /* log level WARN keeps the per-run info lines out of the output */
    return 0;
}

/* ---------------------------------------------------------------- loss and gradient */

/* The objective in plain double loops, straight from its definition. */
static double ref_loss(const float *theta, size_t k, size_t d, const float *X, const int *y,
                       size_t n, double l2, const double *delta, size_t at) {
    size_t R = mp_logreg_n_logits(k), np = mp_logreg_n_params(k, d);
    double th[64];
    assert_true(np <= 64);
    for (size_t i = 0; i < np; i++) th[i] = theta[i] + (i == at ? *delta : 0.0);
    double ce = 0.0;
    for (size_t i = 0; i < n; i++) {
        double z[8];
        for (size_t r = 0; r < R; r++) {
            z[r] = th[R * d + r];
            for (size_t j = 0; j < d; j++) z[r] += th[r * d + j] * X[i * d + j];
        }
        if (R == 1) {
            double p = 1.0 / (1.0 + exp(-z[0]));
            ce -= y[i] ? log(p) : log(1.0 - p);
        } else {
            double s = 0.0;
            for (size_t r = 0; r < R; r++) s += exp(z[r]);
            ce -= log(exp(z[y[i]]) / s);
        }
    }
    double w2 = 0.0;
    for (size_t i = 0; i < R * d; i++) w2 += th[i] * th[i];
    return ce / (double)n + 0.5 * l2 * w2;
}

static void check_gradient(size_t k, double l2) {
    enum { n = 9, d = 4 };
    size_t R = mp_logreg_n_logits(k), np = mp_logreg_n_params(k, d);
    assert_int_equal(np, R * (d + 1));
    float theta[64], X[n * d], grad[64], work[n * 8];
    int y[n];
    mp_rng rng;
    mp_rng_seed(&rng, 7 + k);
    for (size_t i = 0; i < np; i++) theta[i] = (float)(0.7 * mp_rng_normal(&rng));
    for (size_t i = 0; i < n * d; i++) X[i] = (float)mp_rng_normal(&rng);
    for (size_t i = 0; i < n; i++) y[i] = (int)(i % k);

    double loss = mp_logreg_loss_grad(theta, k, d, X, y, n, l2, work, grad);
    double zero = 0.0, ref = ref_loss(theta, k, d, X, y, n, l2, &zero, SIZE_MAX);
    /* The OpenBLAS float path against the double loops. */
    if (fabs(loss - ref) > 1e-5 * (1.0 + ref)) fail_msg("loss %.9g, reference %.9g", loss, ref);

    for (size_t i = 0; i < np; i++) {
        /* 1. Central difference of the double reference: checks that grad is
         *    the derivative of the right objective, to float precision. */
        double h = 1e-5, hp = h, hm = -h;
        double num = (ref_loss(theta, k, d, X, y, n, l2, &hp, i) -
                      ref_loss(theta, k, d, X, y, n, l2, &hm, i)) / (2 * h);
        if (fabs(num - grad[i]) > 1e-5 + 1e-4 * fabs(num))
            fail_msg("k=%zu param %zu: grad %.9g, central difference (double) %.9g", k, i,
                     (double)grad[i], num);
        /* 2. Central difference of the function itself, in float: a larger
         *    step because a float loss only carries ~7 digits. */
        float t = theta[i], hf = 1e-2f;
        theta[i] = t + hf;
        float up = theta[i];
        double fp = mp_logreg_loss_grad(theta, k, d, X, y, n, l2, work, NULL);
        theta[i] = t - hf;
        float dn = theta[i];
        double fm = mp_logreg_loss_grad(theta, k, d, X, y, n, l2, work, NULL);
        theta[i] = t;
        double numf = (fp - fm) / ((double)up - (double)dn);
        if (fabs(numf - grad[i]) > 1e-3 + 1e-2 * fabs(numf))
            fail_msg("k=%zu param %zu: grad %.9g, central difference (float) %.9g", k, i,
                     (double)grad[i], numf);
    }
}

static void test_gradient_binary(void **state) {
    (void)state;
    check_gradient(2, 0.3);
    check_gradient(2, 0.0);
}

static void test_gradient_multiclass(void **state) {
    (void)state;
    check_gradient(3, 0.3);
    check_gradient(5, 0.05);
}

/* Huge logits do not overflow: the loss stays finite and is ~ the margin. */
static void test_loss_stable_for_large_logits(void **state) {
    (void)state;
    float theta[3 * 2] = { 0 };     /* 3 classes, d = 1: W (3 x 1), b (3) */
    theta[0] = 1000.0f;             /* class 0's logit = 1000 x */
    float X[2] = { 1.0f, -1.0f }, work[2 * 3];
    int y[2] = { 1, 0 };            /* both wrong by a margin of 1000 */
    double loss = mp_logreg_loss_grad(theta, 3, 1, X, y, 2, 0.0, work, NULL);
    /* row 1: logits (1000, 0, 0), -log p(1) = 1000 + log(1 + 2e-1000) ~ 1000;
     * row 2: logits (-1000, 0, 0), -log p(0) = 1000 + log(2 + e-1000) ~ 1000 + log 2 */
    assert_true(fabs(loss - (1000.0 + 0.5 * log(2.0))) < 1e-3);
    float tb[2] = { 200.0f, 0.0f }; /* binary: z = 200 x */
    int yb[2] = { 0, 1 };           /* both wrong by a margin of 200 */
    double lb = mp_logreg_loss_grad(tb, 2, 1, X, yb, 2, 0.0, work, NULL);
    assert_true(fabs(lb - 200.0) < 1e-3);   /* both rows: softplus(200) = 200 */
    int yg[2] = { 1, 0 };           /* both right: the loss underflows to ~0, not NaN */
    lb = mp_logreg_loss_grad(tb, 2, 1, X, yg, 2, 0.0, work, NULL);
    assert_true(lb >= 0.0 && lb < 1e-6);
}

/* ---------------------------------------------------------------- training */

static void test_known_answer_binary_blobs(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(blobs(200, 2, TWO, 0.5, 1));
    mp_logreg_conf c = conf_default();
    c.epochs = 50;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    mp_model *m = ctx.model;
    assert_non_null(m);
    assert_string_equal(ctx.train_module, "logistic_regression");
    assert_string_equal(m->ops->name, "logistic_regression");
    assert_int_equal(m->task, MP_TASK_CLASSIFICATION);
    assert_true(m->has_proba);
    assert_int_equal(m->n_features, 2);
    assert_int_equal(m->n_outputs, 2);
    double acc = accuracy(m, ctx.train);
    print_message("binary blobs: accuracy %.4f, final loss %.4g\n", acc, cap.loss[cap.n - 1]);
    assert_true(acc == 1.0);

    /* Probabilities: two columns that sum to 1, confident far from the line. */
    mp_matrix X = { 0 }, P = { 0 };
    assert_int_equal(mp_matrix_init(&X, 2, 2, &err), MP_OK);
    assert_int_equal(mp_matrix_init(&P, 2, 2, &err), MP_OK);
    X.data[0] = -3.0f, X.data[1] = -3.0f, X.data[2] = 3.0f, X.data[3] = 3.0f;
    assert_int_equal(m->ops->predict(m, &X, &P, &err), MP_OK);
    assert_true(fabsf(P.data[0] + P.data[1] - 1.0f) < 1e-6f);
    assert_true(fabsf(P.data[2] + P.data[3] - 1.0f) < 1e-6f);
    assert_true(P.data[0] > 0.99f && P.data[3] > 0.99f);
    /* A wrongly shaped input is refused. */
    mp_matrix bad = { 0 };
    assert_int_equal(mp_matrix_init(&bad, 1, 3, &err), MP_OK);
    assert_int_equal(m->ops->predict(m, &bad, &P, &err), MP_E_DATA);
    mp_matrix_release(&bad);
    mp_matrix_release(&X);
    mp_matrix_release(&P);
    ctx_release(&ctx);
}

static void test_three_classes_each_optimizer(void **state) {
    (void)state;
    static const double lr[] = { 0.1, 0.05, 0.05 };
    static const char *const name[] = { "sgd", "momentum", "adam" };
    for (int kind = MP_OPT_SGD; kind <= MP_OPT_ADAM; kind++) {
        mp_ctx ctx = ctx_for(blobs(300, 3, THREE, 1.2, 2));
        mp_logreg_conf c = conf_default();
        c.optimizer = kind;
        c.learning_rate = lr[kind];
        c.tol = 1e-4;
        c.l2 = 1e-4;
        mp_err err = { 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
        assert_int_equal(ctx.model->n_outputs, 3);
        double acc = accuracy(ctx.model, ctx.train);
        print_message("3 blobs, %-8s: accuracy %.4f, %d epochs, final loss %.4g\n", name[kind],
                      acc, cap.n, cap.loss[cap.n - 1]);
        assert_true(acc >= 0.95);
        ctx_release(&ctx);
    }
}

/* One train.loss row per epoch, steps 1..E, and the loss goes down. */
static void test_loss_history(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(blobs(150, 3, THREE, 1.0, 3));
    mp_logreg_conf c = conf_default();
    c.epochs = 40;
    c.optimizer = MP_OPT_SGD;
    c.learning_rate = 0.05;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(cap.n, 40);
    assert_int_equal(cap.other, 0);
    for (int i = 0; i < cap.n; i++) assert_int_equal(cap.step[i], i + 1);
    assert_true(cap.loss[0] < log(3.0));              /* below the zero-weight loss */
    assert_true(cap.loss[39] < 0.5 * cap.loss[0]);
    int ups = 0;
    for (int i = 1; i < cap.n; i++) ups += cap.loss[i] > cap.loss[i - 1];
    assert_true(ups <= 4);                            /* SGD noise only */
    ctx_release(&ctx);
}

static char last_info[512];
static void info_sink(int level, const char *msg, void *ud) {
    (void)ud;
    if (level == MP_LOG_INFO) snprintf(last_info, sizeof last_info, "%s", msg);
}

/* Overlapping classes: the loss levels off and training stops early. */
static void test_early_stop_and_summary_log(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(blobs(200, 2, TWO, 3.0, 4));
    mp_logreg_conf c = conf_default();
    c.epochs = 1000;
    c.tol = 1e-3;
    c.n_iter_no_change = 3;
    c.batch_size = 200;
    c.shuffle = false;
    mp_err err = { 0 };
    mp_log_level = MP_LOG_INFO;
    mp_log_set_sink(info_sink, NULL);
    int rc = run_stage(&ctx, &c, &err);
    mp_log_set_sink(NULL, NULL);
    mp_log_level = MP_LOG_WARN;
    assert_int_equal(rc, MP_OK);
    assert_true(cap.n > 3 && cap.n < 1000);
    char want[64];
    snprintf(want, sizeof want, "logistic_regression: epoch %d loss ", cap.n);
    if (!strstr(last_info, want) || !strstr(last_info, "stopped early"))
        fail_msg("summary line '%s'", last_info);
    print_message("early stop after %d epochs: %s\n", cap.n, last_info);
    /* tol = 0 runs every epoch. */
    mp_model_free(ctx.model);
    ctx.model = NULL;
    cap.n = 0;
    c.tol = 0.0;
    c.epochs = 30;
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(cap.n, 30);
    ctx_release(&ctx);
}

/* Same seed, same model; a retrain replaces (and frees) the old model. */
static void test_repeatable_and_replaces_model(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(blobs(120, 3, THREE, 1.0, 5));
    mp_logreg_conf c = conf_default();
    c.epochs = 5;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    double first = cap.loss[4];
    cap.n = 0;
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);   /* the first model is freed */
    assert_non_null(ctx.model);
    assert_true(cap.loss[4] == first);
    ctx_release(&ctx);
}

/* A numeric target becomes classes (named by value), as a classifier needs. */
static void test_numeric_labels_encoded(void **state) {
    (void)state;
    mp_dataset *ds = blobs(100, 2, TWO, 0.5, 6);
    for (size_t i = 0; i < ds->n_classes; i++) mp_free(ds->class_names[i]);
    mp_free(ds->class_names);
    ds->class_names = NULL;
    ds->n_classes = 0;
    ds->task = MP_TASK_REGRESSION;
    for (size_t i = 0; i < 100; i++) ds->y[i] = ds->y[i] ? 20.0 : 10.0;
    mp_ctx ctx = ctx_for(ds);
    mp_logreg_conf c = conf_default();
    c.epochs = 20;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(ds->task, MP_TASK_CLASSIFICATION);
    assert_int_equal(ds->n_classes, 2);
    assert_string_equal(ds->class_names[1], "20");
    assert_true(accuracy(ctx.model, ds) == 1.0);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- errors */

static void test_no_target(void **state) {
    (void)state;
    mp_dataset *ds = blobs(20, 2, TWO, 0.5, 7);
    mp_free(ds->y);
    ds->y = NULL;
    ds->task = MP_TASK_NONE;
    mp_ctx ctx = ctx_for(ds);
    mp_logreg_conf c = conf_default();
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_string_equal(err.msg, "logistic_regression needs a target column "
                                 "(set target: in the load stage)");
    assert_null(ctx.model);
    ctx.train = NULL;   /* no data at all */
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    ctx.train = ds;
    ctx_release(&ctx);
}

static void test_one_class(void **state) {
    (void)state;
    /* One class in the class list ... */
    mp_ctx ctx = ctx_for(blobs(20, 1, TWO, 0.5, 8));
    mp_logreg_conf c = conf_default();
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_msg_has(&err, "at least 2 classes");
    ctx_release(&ctx);
    /* ... or three classes, of which the rows hold only one. */
    ctx = ctx_for(blobs(20, 3, THREE, 0.5, 8));
    for (size_t i = 0; i < 20; i++) ctx.train->y[i] = 2.0;
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_msg_has(&err, "only 'c2'");
    ctx_release(&ctx);
    /* ... or a numeric target with one value. */
    ctx = ctx_for(blobs(20, 2, TWO, 0.5, 8));
    mp_dataset *ds = ctx.train;
    for (size_t i = 0; i < ds->n_classes; i++) mp_free(ds->class_names[i]);
    mp_free(ds->class_names);
    ds->class_names = NULL;
    ds->n_classes = 0;
    ds->task = MP_TASK_REGRESSION;
    for (size_t i = 0; i < 20; i++) ds->y[i] = 1.5;
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_null(ctx.model);
    ctx_release(&ctx);
}

static void test_bad_values(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(blobs(20, 2, TWO, 0.5, 9));
    mp_logreg_conf c = conf_default();
    mp_err err = { 0 };
    MP_AT(&ctx.train->X, 4, 1) = NAN;
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_string_equal(err.msg, "feature 'x1' is not a finite number at row 5");
    MP_AT(&ctx.train->X, 4, 1) = 0.0f;
    ctx.train->y[3] = 7.0;
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_msg_has(&err, "row 4: label 7");
    /* With the loader's line numbers, messages name the source line. */
    ctx.train->source_rows = mp_calloc(20, sizeof(size_t));
    assert_non_null(ctx.train->source_rows);
    for (size_t i = 0; i < 20; i++) ctx.train->source_rows[i] = i + 2;   /* after a header */
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);
    assert_string_equal(err.msg, "line 5: label 7 is not a class index below 2");
    ctx_release(&ctx);
}

/* Features near FLT_MAX and plain SGD overflow the logits in the second step. */
static void test_non_finite_loss(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(blobs(40, 2, TWO, 0.1, 10));
    for (size_t i = 0; i < 40; i++) {
        float *r = ctx.train->X.data + i * 2;
        r[0] = r[0] > 0 ? 1e30f : -1e30f;
    }
    mp_logreg_conf c = conf_default();
    c.optimizer = MP_OPT_SGD;
    c.learning_rate = 1.0;
    c.batch_size = 40;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_NUMERIC);
    assert_string_equal(err.msg, "loss is not finite at epoch 2 (try a lower learning_rate)");
    assert_int_equal(cap.n, 1);     /* epoch 1 was recorded */
    assert_null(ctx.model);
    ctx_release(&ctx);
}

static void test_cancelled(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(blobs(50, 2, TWO, 0.5, 11));
    mp_logreg_conf c = conf_default();
    mp_err err = { 0 };
    mp_cancel_signal = 15;
    int rc = run_stage(&ctx, &c, &err);
    mp_cancel_signal = 0;
    assert_int_equal(rc, MP_E_CANCELLED);
    assert_string_equal(err.msg, "interrupted at epoch 1");
    assert_null(ctx.model);
    assert_int_equal(cap.n, 0);
    ctx_release(&ctx);
}

static void test_metric_failure(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(blobs(50, 2, TWO, 0.5, 12));
    cap.fail_at = 3;
    mp_logreg_conf c = conf_default();
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DB);
    assert_string_equal(err.msg, "cannot write metric: disk full");
    assert_int_equal(cap.n, 2);
    assert_null(ctx.model);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- save / load */

static void test_save_load_predict(void **state) {
    (void)state;
    mp_logreg_conf c = conf_default();
    c.epochs = 20;
    mp_err err = { 0 };
    mp_ctx ctx = ctx_for(blobs(100, 2, TWO, 1.0, 13));
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    round_trip(ctx.model, ctx.train, NULL);
    ctx_release(&ctx);
    ctx = ctx_for(blobs(150, 3, THREE, 1.0, 14));
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    round_trip(ctx.model, ctx.train, NULL);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- allocation failure */

/* Fails allocation 1, 2, ... of a whole run until it succeeds; each failure
 * must be MP_E_NOMEM with no model and (checked by cmocka) no leak. */
static void alloc_fail_loop(bool numeric_target, bool shuffle) {
    mp_logreg_conf c = conf_default();
    c.epochs = 3;
    c.shuffle = shuffle;
    int failures = 0;
    for (long nth = 1;; nth++) {
        mp_dataset *ds = blobs(40, 3, THREE, 0.5, 15);
        if (numeric_target) make_numeric(ds);
        mp_ctx ctx = ctx_for(ds);
        if (train_with_failing_alloc(&mp_stage_logistic_regression, &c, &ctx, nth)) break;
        failures++;
        assert_true(nth < 100);
    }
    print_message("allocation failures (numeric target %d, shuffle %d): %d, all MP_E_NOMEM\n",
                  numeric_target, shuffle, failures);
    assert_true(failures >= 5);
}

static void test_alloc_failures(void **state) {
    (void)state;
    alloc_fail_loop(false, true);
    alloc_fail_loop(false, false);
    alloc_fail_loop(true, true);
}

/* ---------------------------------------------------------------- stage table */

static void test_stage_table_and_check(void **state) {
    (void)state;
    const mp_stage_ops *ops = &mp_stage_logistic_regression;
    assert_int_equal(ops->abi, MP_STAGE_ABI);
    assert_int_equal(ops->kind, MP_KIND_TRAIN);
    assert_int_equal(ops->task, MP_TASK_CLASSIFICATION);
    assert_int_equal(ops->conf_size, sizeof(mp_logreg_conf));
    assert_string_equal(ops->model->name, "logistic_regression");
    static const char *const want[][2] = {
        { "optimizer", "adam" }, { "learning_rate", "0.01" }, { "epochs", "100" },
        { "batch_size", "32" }, { "l2", "0" }, { "momentum", "0.9" }, { "beta1", "0.9" },
        { "beta2", "0.999" }, { "weight_decay", "0" }, { "tol", "1e-4" },
        { "n_iter_no_change", "5" }, { "shuffle", "true" },
    };
    size_t n = 0;
    for (const mp_param *p = ops->params; p->name; p++, n++) {
        assert_true(n < sizeof want / sizeof *want);
        assert_string_equal(p->name, want[n][0]);
        assert_string_equal(p->def, want[n][1]);
        assert_non_null(p->doc);
        assert_true(p->offset + sizeof(int) <= sizeof(mp_logreg_conf));
    }
    assert_int_equal(n, sizeof want / sizeof *want);
    assert_string_equal(ops->params[0].choices, "sgd|momentum|adam");

    /* The check hook rejects what the inclusive table ranges let through. */
    mp_logreg_conf c = conf_default();
    mp_err err = { 0 };
    assert_int_equal(ops->check(&c, &err), MP_OK);
    c.beta2 = 1.0;
    assert_int_equal(ops->check(&c, &err), MP_E_CONFIG);
    assert_msg_has(&err, "beta2");
    c = conf_default();
    c.momentum = 1.0;
    err = (mp_err){ 0 };
    assert_int_equal(ops->check(&c, &err), MP_E_CONFIG);
    assert_msg_has(&err, "momentum");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_stage_table_and_check, setup),
        cmocka_unit_test_setup(test_gradient_binary, setup),
        cmocka_unit_test_setup(test_gradient_multiclass, setup),
        cmocka_unit_test_setup(test_loss_stable_for_large_logits, setup),
        cmocka_unit_test_setup(test_known_answer_binary_blobs, setup),
        cmocka_unit_test_setup(test_three_classes_each_optimizer, setup),
        cmocka_unit_test_setup(test_loss_history, setup),
        cmocka_unit_test_setup(test_early_stop_and_summary_log, setup),
        cmocka_unit_test_setup(test_repeatable_and_replaces_model, setup),
        cmocka_unit_test_setup(test_numeric_labels_encoded, setup),
        cmocka_unit_test_setup(test_no_target, setup),
        cmocka_unit_test_setup(test_one_class, setup),
        cmocka_unit_test_setup(test_bad_values, setup),
        cmocka_unit_test_setup(test_non_finite_loss, setup),
        cmocka_unit_test_setup(test_cancelled, setup),
        cmocka_unit_test_setup(test_metric_failure, setup),
        cmocka_unit_test_setup(test_save_load_predict, setup),
        cmocka_unit_test_setup(test_alloc_failures, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
