/*
 * test_metrics.c -- unit tests of the regression and clustering metrics in
 * stages/metrics.c against hand-worked values and values printed by
 * scikit-learn 1.2 for the same inputs (sklearn.metrics.mean_squared_error,
 * mean_absolute_error, r2_score, explained_variance_score,
 * adjusted_rand_score, silhouette_score), plus a plain double-precision
 * reference for the BLAS silhouette on data spanning several blocks, and
 * allocation-failure loops (each failure MP_E_NOMEM, no leak).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>     /* before cmocka.h, which redefines malloc under UNIT_TESTING */
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mp.h"
#include "metrics.h"

static void assert_near(double got, double want, double tol) {
    if (!(fabs(got - want) <= tol)) fail_msg("got %.17g, want %.17g (tol %g)", got, want, tol);
}

/* ---------------------------------------------------------------- regression */

static void test_regression_hand_worked(void **state) {
    (void)state;
    /* scikit-learn's documentation example. */
    const double yt[] = { 3.0, -0.5, 2.0, 7.0 };
    const float yp[] = { 2.5f, 0.0f, 2.0f, 8.0f };
    assert_near(mp_mse(yt, yp, 4), 0.375, 1e-15);               /* (.25 + .25 + 0 + 1) / 4 */
    assert_near(sqrt(mp_mse(yt, yp, 4)), sqrt(0.375), 1e-15);
    assert_near(mp_mae(yt, yp, 4), 0.5, 1e-15);                 /* (.5 + .5 + 0 + 1) / 4 */
    assert_near(mp_r2(yt, yp, 4), 0.9486081370449679, 1e-15);
    assert_near(mp_explained_variance(yt, yp, 4), 0.9571734475374732, 1e-15);
}

static void test_regression_edge_cases(void **state) {
    (void)state;
    const double y3[] = { 1.0, 2.0, 3.0 }, c3[] = { 2.0, 2.0, 2.0 };
    const float mean_pred[] = { 2.0f, 2.0f, 2.0f }, off[] = { 2.0f, 3.0f, 4.0f };
    const float imperfect[] = { 2.0f, 2.0f, 3.0f };
    /* A constant prediction at the mean explains nothing: r2 = 0. */
    assert_near(mp_r2(y3, mean_pred, 3), 0.0, 1e-15);
    /* A constant target: 1 if predicted perfectly, else 0 (force_finite). */
    assert_near(mp_r2(c3, mean_pred, 3), 1.0, 0.0);
    assert_near(mp_r2(c3, imperfect, 3), 0.0, 0.0);
    assert_near(mp_explained_variance(c3, mean_pred, 3), 1.0, 0.0);
    assert_near(mp_explained_variance(c3, imperfect, 3), 0.0, 0.0);
    /* A constant offset costs r2 but not explained variance. */
    assert_near(mp_explained_variance(y3, off, 3), 1.0, 1e-15);
    assert_near(mp_r2(y3, off, 3), 1.0 - 3.0 / 2.0, 1e-15);
    /* No rows: undefined. */
    assert_true(isnan(mp_mse(y3, off, 0)));
    assert_true(isnan(mp_mae(y3, off, 0)));
    assert_true(isnan(mp_r2(y3, off, 0)));
    assert_true(isnan(mp_explained_variance(y3, off, 0)));
}

/* ---------------------------------------------------------------- inertia */

static void test_inertia_hand_worked(void **state) {
    (void)state;
    mp_err err = { 0 };
    mp_matrix X = { 0 };
    assert_int_equal(mp_matrix_init(&X, 3, 2, &err), MP_OK);
    const float v[] = { 0, 0, 1, 1, 5, 5 };
    memcpy(X.data, v, sizeof v);
    const float centers[] = { 0.5f, 0.5f, 5.0f, 4.0f };
    const int labels[] = { 0, 0, 1 };
    /* 0.25+0.25 + 0.25+0.25 + 0+1 */
    assert_near(mp_inertia(&X, labels, centers, 2), 2.0, 1e-15);
    const int outside[] = { 0, 7, 1 };      /* a label out of range is skipped */
    assert_near(mp_inertia(&X, outside, centers, 2), 1.5, 1e-15);
    mp_matrix_release(&X);
}

/* ---------------------------------------------------------------- adjusted Rand */

static double ari(const int *a, const int *b, size_t n) {
    mp_err err = { 0 };
    double v = -99.0;
    assert_int_equal(mp_adjusted_rand(a, b, n, &v, &err), MP_OK);
    return v;
}

static void test_adjusted_rand(void **state) {
    (void)state;
    const int a[] = { 0, 0, 1, 1, 2, 2 }, renamed[] = { 5, 5, 3, 3, 1, 1 };
    assert_near(ari(a, a, 6), 1.0, 0.0);                        /* identical */
    assert_near(ari(a, renamed, 6), 1.0, 0.0);                  /* permuted names */
    const int p[] = { 0, 0, 1, 2 }, q[] = { 0, 0, 1, 1 };
    assert_near(ari(p, q, 4), 0.5714285714285714, 1e-15);       /* scikit-learn doc values */
    assert_near(ari(q, p, 4), 0.5714285714285714, 1e-15);       /* symmetric */
    const int one[] = { 0, 0, 0, 0 }, each[] = { 0, 1, 2, 3 };
    assert_near(ari(one, each, 4), 0.0, 0.0);
    const int r[] = { 0, 0, 1, 1 }, s[] = { 0, 1, 0, 1 };
    assert_near(ari(r, s, 4), -0.5, 1e-15);
    const int t10[] = { 0, 0, 0, 1, 1, 1, 2, 2, 2, 2 }, u10[] = { 0, 0, 1, 1, 1, 2, 2, 2, 0, 0 };
    assert_near(ari(t10, u10, 10), 0.09090909090909091, 1e-15);
    /* Large label values need no table of that size. */
    const int big[] = { 2000000000, 2000000000, 7, 7 };
    assert_near(ari(big, q, 4), 1.0, 0.0);

    mp_err err = { 0 };
    double v = 0.0;
    assert_int_equal(mp_adjusted_rand(a, a, 0, &v, &err), MP_OK);
    assert_true(isnan(v));
    const int neg[] = { 0, -1, 1, 1 };
    assert_int_equal(mp_adjusted_rand(neg, q, 4, &v, &err), MP_E_DATA);
    assert_non_null(strstr(err.msg, "row 2"));
}

/* ---------------------------------------------------------------- silhouette */

static double silhouette_of(const float *v, size_t n, size_t d, const int *labels, size_t k) {
    mp_err err = { 0 };
    mp_matrix X = { 0 };
    assert_int_equal(mp_matrix_init(&X, n, d, &err), MP_OK);
    memcpy(X.data, v, n * d * sizeof *v);
    double s = -99.0;
    assert_int_equal(mp_silhouette(&X, labels, k, &s, &err), MP_OK);
    mp_matrix_release(&X);
    return s;
}

static void test_silhouette_hand_worked(void **state) {
    (void)state;
    /* 1-D points 0 1 | 4 5: s = 3.5/4.5, 2.5/3.5, 2.5/3.5, 3.5/4.5. */
    const float four[] = { 0, 1, 4, 5 };
    const int l4[] = { 0, 0, 1, 1 };
    assert_near(silhouette_of(four, 4, 1, l4, 2), 0.746031746031746, 1e-6);
    /* 0 1 | 10: the singleton scores 0 and still counts in the mean. */
    const float three[] = { 0, 1, 10 };
    const int l3[] = { 0, 0, 1 };
    assert_near(silhouette_of(three, 3, 1, l3, 2), 0.5962962962962962, 1e-6);
    /* Unused label values (k larger than needed) change nothing. */
    const int l3b[] = { 0, 0, 4 };
    assert_near(silhouette_of(three, 3, 1, l3b, 5), 0.5962962962962962, 1e-6);
    /* One cluster, or every row its own: undefined (NaN). */
    const int same[] = { 0, 0, 0, 0 }, each[] = { 0, 1, 2, 3 };
    assert_true(isnan(silhouette_of(four, 4, 1, same, 1)));
    assert_true(isnan(silhouette_of(four, 4, 1, each, 4)));
}

static void test_silhouette_two_far_blobs(void **state) {
    (void)state;
    /* Two tight blobs far apart, and far from the origin (the centring keeps
     * float cancellation out of the small within-blob distances). */
    enum { N = 60, D = 3 };
    float v[N * D];
    int lab[N];
    mp_rng rng;
    mp_rng_seed(&rng, 5);
    for (size_t i = 0; i < N; i++) {
        lab[i] = (int)(i % 2);
        for (size_t j = 0; j < D; j++)
            v[i * D + j] = (float)(1000.0 + (lab[i] ? 50.0 : 0.0) + 0.01 * mp_rng_normal(&rng));
    }
    double s = silhouette_of(v, N, D, lab, 2);
    assert_true(s > 0.99 && s <= 1.0);
}

/* Plain double-precision silhouette, O(n^2 d), as a reference. */
static double silhouette_ref(const float *v, size_t n, size_t d, const int *lab, size_t k) {
    double total = 0.0;
    double *sum = calloc(k, sizeof *sum), *cnt = calloc(k, sizeof *cnt);
    assert_non_null(sum);
    assert_non_null(cnt);
    for (size_t i = 0; i < n; i++) cnt[lab[i]] += 1.0;
    for (size_t i = 0; i < n; i++) {
        memset(sum, 0, k * sizeof *sum);
        for (size_t j = 0; j < n; j++) {
            double q = 0.0;
            for (size_t t = 0; t < d; t++) {
                double e = (double)v[i * d + t] - (double)v[j * d + t];
                q += e * e;
            }
            sum[lab[j]] += sqrt(q);
        }
        size_t own = (size_t)lab[i];
        if (cnt[own] < 2) continue;
        double a = sum[own] / (cnt[own] - 1), b = INFINITY;
        for (size_t c = 0; c < k; c++)
            if (c != own && cnt[c] > 0 && sum[c] / cnt[c] < b) b = sum[c] / cnt[c];
        total += (b - a) / fmax(a, b);
    }
    free(sum);
    free(cnt);
    return total / (double)n;
}

static void test_silhouette_matches_reference(void **state) {
    (void)state;
    /* 700 rows: three blocks of the BLAS path, overlapping clusters. */
    enum { N = 700, D = 5, K = 4 };
    float *v = malloc(N * D * sizeof *v);
    int *lab = malloc(N * sizeof *lab);
    assert_non_null(v);
    assert_non_null(lab);
    mp_rng rng;
    mp_rng_seed(&rng, 11);
    for (size_t i = 0; i < N; i++) {
        lab[i] = (int)mp_rng_below(&rng, K);
        for (size_t j = 0; j < D; j++)
            v[i * D + j] = (float)(lab[i] * 0.8 + (double)j + mp_rng_normal(&rng));
    }
    double want = silhouette_ref(v, N, D, lab, K);
    assert_near(silhouette_of(v, N, D, lab, K), want, 1e-5);
    free(v);
    free(lab);
}

static void test_silhouette_bad_label(void **state) {
    (void)state;
    mp_err err = { 0 };
    mp_matrix X = { 0 };
    assert_int_equal(mp_matrix_init(&X, 3, 1, &err), MP_OK);
    const int lab[] = { 0, 2, 1 };
    double s = 0.0;
    assert_int_equal(mp_silhouette(&X, lab, 2, &s, &err), MP_E_DATA);
    assert_non_null(strstr(err.msg, "row 2"));
    mp_matrix_release(&X);
}

/* ---------------------------------------------------------------- allocation failure */

static void test_alloc_failures(void **state) {
    (void)state;
    const float v[] = { 0, 1, 4, 5, 9, 10 };
    const int lab[] = { 0, 0, 1, 1, 2, 2 }, other[] = { 0, 1, 1, 2, 2, 2 };
    mp_err err = { 0 };
    mp_matrix X = { 0 };
    assert_int_equal(mp_matrix_init(&X, 6, 1, &err), MP_OK);
    memcpy(X.data, v, sizeof v);
    int failures = 0;
    for (long nth = 1;; nth++) {
        err = (mp_err){ 0 };
        double s = 0.0;
        mp_mem_fail_after(nth);
        int rc = mp_silhouette(&X, lab, 3, &s, &err);
        mp_mem_fail_after(0);
        if (rc == MP_OK) break;
        assert_int_equal(rc, MP_E_NOMEM);
        failures++;
        assert_true(nth < 50);
    }
    assert_true(failures >= 7);
    err = (mp_err){ 0 };
    double a = 0.0;
    mp_mem_fail_after(1);
    assert_int_equal(mp_adjusted_rand(lab, other, 6, &a, &err), MP_E_NOMEM);
    mp_mem_fail_after(0);
    mp_matrix_release(&X);
}

static int setup(void **state) {
    (void)state;
    mp_mem_fail_after(0);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_regression_hand_worked, setup),
        cmocka_unit_test_setup(test_regression_edge_cases, setup),
        cmocka_unit_test_setup(test_inertia_hand_worked, setup),
        cmocka_unit_test_setup(test_adjusted_rand, setup),
        cmocka_unit_test_setup(test_silhouette_hand_worked, setup),
        cmocka_unit_test_setup(test_silhouette_two_far_blobs, setup),
        cmocka_unit_test_setup(test_silhouette_matches_reference, setup),
        cmocka_unit_test_setup(test_silhouette_bad_label, setup),
        cmocka_unit_test_setup(test_alloc_failures, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
