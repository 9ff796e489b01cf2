/*
 * split_holdout.c -- `split: holdout`: hold out a fraction of the rows as the
 * test set.
 *
 * Seeded by the pipeline seed (through mp_ctx_rng), so the same pipeline and
 * seed always split the same way.  With `stratify`, each distinct target value
 * is split on its own, so the class proportions of train and test match the
 * whole data set (what scikit-learn's train_test_split(stratify=y) does).
 */
#include "mp_stage.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct holdout_conf {
    double test_size;   /* fraction of rows for the test set, in (0, 1) */
    bool   stratify;    /* keep target proportions in both parts */
    bool   shuffle;     /* shuffle before splitting (else the last rows are the test set) */
} holdout_conf;

/* Sorts row indices by target value (arg), keeping row order within a value. */
static int cmp_by_target(const void *a, const void *b, void *arg) {
    const double *key = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    double x = key[i], y = key[j];
    if (x != y) return (x > y) - (x < y);
    return (i > j) - (i < j);
}

/* Number of test rows out of n: at least one, and at least one left to train. */
static size_t n_test_of(size_t n, double frac) {
    size_t k = (size_t)ceil((double)n * frac - 1e-9);
    if (k == 0) k = 1;
    if (k >= n) k = n - 1;
    return k;
}

static int holdout_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const holdout_conf *c = st->conf;
    mp_dataset *all = ctx->train;
    if (!all) return MP_ERR(err, MP_E_DATA, "no data to split");
    if (ctx->test)
        return MP_ERR(err, MP_E_DATA, "the data already has a test split (from the loader)");
    size_t n = all->X.n_rows;
    if (n < 2) return MP_ERR(err, MP_E_DATA, "cannot split %zu row(s)", n);
    if (c->stratify && !all->y)
        return MP_ERR(err, MP_E_DATA, "stratify needs a target column (set target: in the load stage)");

    size_t *order = mp_malloc(mp_mul_size(n, sizeof *order));
    unsigned char *is_test = mp_calloc(n, 1);
    size_t *tr = mp_malloc(mp_mul_size(n, sizeof *tr)), *te = mp_malloc(mp_mul_size(n, sizeof *te));
    mp_dataset *train = NULL, *test = NULL;
    if (!order || !is_test || !tr || !te) {
        MP_ERR(err, MP_E_NOMEM, "out of memory splitting %zu rows", n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) order[i] = i;
    mp_rng rng;
    mp_ctx_rng(ctx, 0, &rng);
    if (c->shuffle) mp_rng_shuffle(&rng, order, n);

    if (c->stratify) {
        /* Group rows by target value, then take a share of each group. */
        size_t *grp = mp_malloc(mp_mul_size(n, sizeof *grp));
        if (!grp) {
            MP_ERR(err, MP_E_NOMEM, "out of memory splitting %zu rows", n);
            goto done;
        }
        for (size_t i = 0; i < n; i++) grp[i] = i;
        qsort_r(grp, n, sizeof *grp, cmp_by_target, all->y);
        /* gid[row] = group number; k[g] = test rows wanted from group g */
        size_t *gid = mp_malloc(mp_mul_size(n, sizeof *gid));
        size_t *want = mp_calloc(n, sizeof *want);
        if (!gid || !want) {
            mp_free(gid);
            mp_free(want);
            mp_free(grp);
            MP_ERR(err, MP_E_NOMEM, "out of memory splitting %zu rows", n);
            goto done;
        }
        size_t n_groups = 0;
        for (size_t s = 0; s < n;) {
            size_t e = s;
            while (e < n && all->y[grp[e]] == all->y[grp[s]]) gid[grp[e++]] = n_groups;
            want[n_groups++] = e - s > 1 ? n_test_of(e - s, c->test_size) : 0;
            s = e;
        }
        /* The last rows of each group in shuffled order go to test. */
        for (size_t i = n; i-- > 0;) {
            size_t r = order[i];
            if (want[gid[r]] > 0) {
                want[gid[r]]--;
                is_test[r] = 1;
            }
        }
        mp_free(gid);
        mp_free(want);
        mp_free(grp);
    } else {
        size_t k = n_test_of(n, c->test_size);
        for (size_t i = n - k; i < n; i++) is_test[order[i]] = 1;
    }

    /* Keep the shuffled order in both parts: training sees rows in random order. */
    size_t n_tr = 0, n_te = 0;
    for (size_t i = 0; i < n; i++) {
        size_t r = order[i];
        if (is_test[r]) te[n_te++] = r;
        else tr[n_tr++] = r;
    }
    if (n_te == 0 || n_tr == 0) {
        MP_ERR(err, MP_E_DATA, "test_size %g leaves an empty part of %zu rows", c->test_size, n);
        goto done;
    }
    if (!(train = mp_dataset_subset(all, tr, n_tr, err))) goto done;
    if (!(test = mp_dataset_subset(all, te, n_te, err))) goto done;
    if (mp_ctx_metric(ctx, "data.train_rows", (double)n_tr, -1, err) != MP_OK ||
        mp_ctx_metric(ctx, "data.test_rows", (double)n_te, -1, err) != MP_OK)
        goto done;
    mp_dataset_free(ctx->train);
    ctx->train = train;
    ctx->test = test;
    train = test = NULL;
    mp_log(MP_LOG_INFO, "holdout: %zu train rows, %zu test rows%s", n_tr, n_te,
           c->stratify ? " (stratified)" : "");
done:
    mp_dataset_free(train);
    mp_dataset_free(test);
    mp_free(order);
    mp_free(is_test);
    mp_free(tr);
    mp_free(te);
    return err->code;
}

static const mp_param holdout_params[] = {
    { "test_size", MP_P_DOUBLE, offsetof(holdout_conf, test_size), "0.2",
      MP_PF_RANGE | MP_PF_MIN_OPEN, 0.0, 0.99, NULL, "fraction of rows held out for testing" },
    { "stratify", MP_P_BOOL, offsetof(holdout_conf, stratify), "false", 0, 0, 0, NULL,
      "split each target value separately to keep class proportions" },
    { "shuffle", MP_P_BOOL, offsetof(holdout_conf, shuffle), "true", 0, 0, 0, NULL,
      "shuffle rows (seeded) before splitting; false takes the last rows as test" },
    { 0 }
};

const mp_stage_ops mp_stage_split_holdout = {
    .abi = MP_STAGE_ABI, .name = "holdout", .kind = MP_KIND_SPLIT,
    .doc = "hold out a seeded, optionally stratified fraction of rows as the test set",
    .params = holdout_params, .conf_size = sizeof(holdout_conf), .run = holdout_run,
};
