/*
 * test_prep.c -- unit tests of the data-preparation stages and helpers:
 * split: holdout, transform: standardize / minmax, label encoding, the rng,
 * and the classification metrics against hand-worked values (computed with
 * scikit-learn's definitions).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "mp.h"
#include "metrics.h"

extern const mp_stage_ops mp_stage_split_holdout;
extern const mp_stage_ops mp_stage_standardize;
extern const mp_stage_ops mp_stage_minmax;

/* n rows x d cols; y = i % k (classification with k classes). */
static mp_dataset *make_data(size_t n, size_t d, size_t k) {
    mp_err err = { 0 };
    mp_dataset *ds = mp_dataset_new();
    assert_non_null(ds);
    assert_int_equal(mp_matrix_init(&ds->X, n, d, &err), MP_OK);
    ds->y = mp_calloc(n, sizeof *ds->y);
    ds->feature_names = mp_calloc(d, sizeof(char *));
    for (size_t j = 0; j < d; j++) {
        char b[16];
        snprintf(b, sizeof b, "f%zu", j);
        ds->feature_names[j] = mp_strdup(b);
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++) MP_AT(&ds->X, i, j) = (float)(i * 10 + j);
        ds->y[i] = (double)(i % k);
    }
    ds->task = MP_TASK_CLASSIFICATION;
    ds->n_classes = k;
    ds->class_names = mp_calloc(k, sizeof(char *));
    for (size_t c = 0; c < k; c++) {
        char b[16];
        snprintf(b, sizeof b, "c%zu", c);
        ds->class_names[c] = mp_strdup(b);
    }
    return ds;
}

typedef struct { double test_size; bool stratify; bool shuffle; } holdout_conf;

static void run_holdout(mp_ctx *ctx, holdout_conf *c, mp_err *err) {
    mp_stage st = { .ops = &mp_stage_split_holdout, .conf = c };
    mp_stage_split_holdout.run(&st, ctx, err);
}

static void test_holdout_sizes_and_disjoint(void **state) {
    (void)state;
    mp_ctx ctx = { .seed = 42, .stage_index = 1 };
    ctx.train = make_data(100, 3, 4);
    holdout_conf c = { 0.2, false, true };
    mp_err err = { 0 };
    run_holdout(&ctx, &c, &err);
    assert_int_equal(err.code, MP_OK);
    assert_int_equal(ctx.train->X.n_rows, 80);
    assert_int_equal(ctx.test->X.n_rows, 20);
    /* every original row appears exactly once (column 0 = 10 * row) */
    int seen[100] = { 0 };
    for (size_t i = 0; i < 80; i++) seen[(int)MP_AT(&ctx.train->X, i, 0) / 10]++;
    for (size_t i = 0; i < 20; i++) seen[(int)MP_AT(&ctx.test->X, i, 0) / 10]++;
    for (int i = 0; i < 100; i++) assert_int_equal(seen[i], 1);
    /* names travel with the rows */
    assert_string_equal(ctx.test->feature_names[2], "f2");
    assert_string_equal(ctx.test->class_names[3], "c3");
    mp_dataset_free(ctx.train);
    mp_dataset_free(ctx.test);
}

static void test_holdout_stratified_and_seeded(void **state) {
    (void)state;
    float first[2][30];
    for (int rep = 0; rep < 2; rep++) {
        mp_ctx ctx = { .seed = 7, .stage_index = 1 };
        ctx.train = make_data(150, 2, 3);
        holdout_conf c = { 0.2, true, true };
        mp_err err = { 0 };
        run_holdout(&ctx, &c, &err);
        assert_int_equal(err.code, MP_OK);
        assert_int_equal(ctx.test->X.n_rows, 30);
        size_t per[3] = { 0 };
        for (size_t i = 0; i < 30; i++) per[(int)ctx.test->y[i]]++;
        for (int k = 0; k < 3; k++) assert_int_equal(per[k], 10);
        for (size_t i = 0; i < 30; i++) first[rep][i] = MP_AT(&ctx.test->X, i, 0);
        mp_dataset_free(ctx.train);
        mp_dataset_free(ctx.test);
    }
    assert_memory_equal(first[0], first[1], sizeof first[0]); /* same seed, same split */
}

static void test_holdout_no_shuffle_takes_last_rows(void **state) {
    (void)state;
    mp_ctx ctx = { .seed = 1 };
    ctx.train = make_data(10, 1, 2);
    holdout_conf c = { 0.3, false, false };
    mp_err err = { 0 };
    run_holdout(&ctx, &c, &err);
    assert_int_equal(err.code, MP_OK);
    assert_int_equal(ctx.test->X.n_rows, 3);
    assert_float_equal(MP_AT(&ctx.test->X, 0, 0), 70.0, 0);
    assert_float_equal(MP_AT(&ctx.test->X, 2, 0), 90.0, 0);
    mp_dataset_free(ctx.train);
    mp_dataset_free(ctx.test);
}

static void test_holdout_alloc_failures(void **state) {
    (void)state;
    for (long n = 1;; n++) {
        mp_ctx ctx = { .seed = 3 };
        ctx.train = make_data(50, 2, 2);
        holdout_conf c = { 0.2, true, true };
        mp_err err = { 0 };
        mp_mem_fail_after(n);
        run_holdout(&ctx, &c, &err);
        mp_mem_fail_after(0);
        mp_dataset_free(ctx.train);
        mp_dataset_free(ctx.test);
        if (err.code == MP_OK) break;
        assert_int_equal(err.code, MP_E_NOMEM);
        assert_true(n < 1000);
    }
}

static void test_standardize_fits_train_only(void **state) {
    (void)state;
    mp_ctx ctx = { .seed = 1 };
    ctx.train = make_data(4, 2, 2);     /* column 0: 0, 10, 20, 30 */
    ctx.test = make_data(2, 2, 2);      /* column 0: 0, 10 */
    struct { bool with_mean, with_std; } conf = { true, true };
    mp_stage st = { .ops = &mp_stage_standardize, .conf = &conf };
    mp_err err = { 0 };
    assert_int_equal(mp_stage_standardize.run(&st, &ctx, &err), MP_OK);
    double sd = sqrt((225.0 + 25.0 + 25.0 + 225.0) / 4.0);
    assert_float_equal(MP_AT(&ctx.train->X, 0, 0), (0 - 15) / sd, 1e-6);
    assert_float_equal(MP_AT(&ctx.test->X, 1, 0), (10 - 15) / sd, 1e-6);
    assert_int_equal(ctx.n_transforms, 1);
    /* the fitted state maps new rows the same way */
    mp_matrix m = { 0 };
    assert_int_equal(mp_matrix_init(&m, 1, 2, &err), MP_OK);
    m.data[0] = 30;
    assert_int_equal(mp_transform_chain_apply(ctx.transforms, 1, &m, &err), MP_OK);
    assert_float_equal(m.data[0], 15 / sd, 1e-6);
    mp_matrix_release(&m);
    ctx.transforms[0].ops->free_state(ctx.transforms[0].state);
    mp_free(ctx.transforms);
    mp_dataset_free(ctx.train);
    mp_dataset_free(ctx.test);
}

static void test_minmax_range_and_constant_column(void **state) {
    (void)state;
    mp_ctx ctx = { .seed = 1 };
    ctx.train = make_data(3, 2, 2);
    for (size_t i = 0; i < 3; i++) MP_AT(&ctx.train->X, i, 1) = 5.0f; /* constant */
    struct { double min, max; } conf = { -1.0, 1.0 };
    mp_stage st = { .ops = &mp_stage_minmax, .conf = &conf };
    mp_err err = { 0 };
    assert_int_equal(mp_stage_minmax.run(&st, &ctx, &err), MP_OK);
    assert_float_equal(MP_AT(&ctx.train->X, 0, 0), -1.0, 1e-6);
    assert_float_equal(MP_AT(&ctx.train->X, 1, 0), 0.0, 1e-6);
    assert_float_equal(MP_AT(&ctx.train->X, 2, 0), 1.0, 1e-6);
    assert_true(isfinite(MP_AT(&ctx.train->X, 0, 1)));
    struct { double min, max; } bad = { 1.0, 1.0 };
    mp_err e2 = { 0 };
    assert_int_equal(mp_stage_minmax.check(&bad, &e2), MP_E_CONFIG);
    ctx.transforms[0].ops->free_state(ctx.transforms[0].state);
    mp_free(ctx.transforms);
    mp_dataset_free(ctx.train);
}

static void test_encode_labels_pair(void **state) {
    (void)state;
    mp_err err = { 0 };
    mp_dataset *a = make_data(3, 1, 1), *b = make_data(2, 1, 1);
    for (mp_dataset *d = a; d; d = d == a ? b : NULL) {
        for (size_t i = 0; i < d->n_classes; i++) mp_free(d->class_names[i]);
        mp_free(d->class_names);
        d->class_names = NULL;
        d->n_classes = 0;
        d->task = MP_TASK_REGRESSION;
    }
    a->y[0] = 2.5; a->y[1] = 1; a->y[2] = 2.5;
    b->y[0] = 7; b->y[1] = 1;
    assert_int_equal(mp_dataset_encode_labels_pair(a, b, &err), MP_OK);
    assert_int_equal(a->n_classes, 3);
    assert_string_equal(a->class_names[0], "1");
    assert_string_equal(a->class_names[1], "2.5");
    assert_string_equal(b->class_names[2], "7");
    assert_float_equal(a->y[0], 1, 0);
    assert_float_equal(b->y[0], 2, 0);
    mp_dataset_free(a);
    mp_dataset_free(b);
}

static void test_rng_repeatable_and_unbiased(void **state) {
    (void)state;
    mp_rng r1, r2;
    mp_rng_seed(&r1, 99);
    mp_rng_seed(&r2, 99);
    for (int i = 0; i < 100; i++) assert_true(mp_rng_next(&r1) == mp_rng_next(&r2));
    size_t count[3] = { 0 };
    for (int i = 0; i < 30000; i++) count[mp_rng_below(&r1, 3)]++;
    for (int k = 0; k < 3; k++) assert_true(count[k] > 9500 && count[k] < 10500);
    double s = 0, s2 = 0;
    for (int i = 0; i < 20000; i++) {
        double z = mp_rng_normal(&r1);
        s += z;
        s2 += z * z;
    }
    assert_float_equal(s / 20000, 0.0, 0.03);
    assert_float_equal(s2 / 20000, 1.0, 0.05);
}

/* y_true = [0 0 0 1 1 2], y_pred = [0 1 0 1 2 2]: worked by hand (and with
 * sklearn.metrics): accuracy 4/6; per-class precision 1, 0.5, 0.5; recall
 * 2/3, 1/2, 1; f1 0.8, 0.5, 2/3. */
static void test_classification_metrics_hand_worked(void **state) {
    (void)state;
    int yt[] = { 0, 0, 0, 1, 1, 2 }, yp[] = { 0, 1, 0, 1, 2, 2 };
    double cm[9];
    mp_confusion(yt, yp, 6, 3, cm);
    assert_float_equal(cm[0], 2, 0);
    assert_float_equal(cm[1], 1, 0);
    assert_float_equal(cm[5], 1, 0);
    assert_float_equal(mp_cm_accuracy(cm, 3), 4.0 / 6, 1e-12);
    assert_float_equal(mp_cm_precision(cm, 3, false), (1 + 0.5 + 0.5) / 3, 1e-12);
    assert_float_equal(mp_cm_recall(cm, 3, false), (2.0 / 3 + 0.5 + 1) / 3, 1e-12);
    assert_float_equal(mp_cm_f1(cm, 3, false), (0.8 + 0.5 + 2.0 / 3) / 3, 1e-12);
    assert_float_equal(mp_cm_f1(cm, 3, true), (0.8 * 3 + 0.5 * 2 + 2.0 / 3) / 6, 1e-12);
    assert_float_equal(mp_cm_balanced_accuracy(cm, 3), (2.0 / 3 + 0.5 + 1) / 3, 1e-12);
}

static void test_log_loss_and_auc(void **state) {
    (void)state;
    int y[] = { 0, 1, 1, 0 };
    float p[] = { 0.9f, 0.1f, 0.2f, 0.8f, 0.3f, 0.7f, 0.6f, 0.4f };
    double want = -(log(0.9) + log(0.8) + log(0.7) + log(0.6)) / 4;
    assert_float_equal(mp_log_loss(y, p, 4, 2), want, 1e-6);
    /* scores 0.1 0.8 0.7 0.4 for positives {1,2}: both outrank both negatives */
    assert_float_equal(mp_roc_auc_ovr(y, p, 4, 2), 1.0, 1e-12);
    int pos[] = { 1, 0, 1, 0 };
    float s[] = { 0.5f, 0.5f, 0.9f, 0.1f };    /* a tie counts one half */
    assert_float_equal(mp_roc_auc_binary(pos, s, 4), (1.0 + 0.5 + 1.0 + 1.0) / 4, 1e-12);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_holdout_sizes_and_disjoint),
        cmocka_unit_test(test_holdout_stratified_and_seeded),
        cmocka_unit_test(test_holdout_no_shuffle_takes_last_rows),
        cmocka_unit_test(test_holdout_alloc_failures),
        cmocka_unit_test(test_standardize_fits_train_only),
        cmocka_unit_test(test_minmax_range_and_constant_column),
        cmocka_unit_test(test_encode_labels_pair),
        cmocka_unit_test(test_rng_repeatable_and_unbiased),
        cmocka_unit_test(test_classification_metrics_hand_worked),
        cmocka_unit_test(test_log_loss_and_auc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
