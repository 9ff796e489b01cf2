/*
 * cv.c -- k-fold cross-validation of a pipeline's transform and train stages.
 *
 * The evaluate stage asks for it; the runner owns what it needs: the stage
 * list and a copy of the training rows taken before the first transform ran
 * (exec.c).  Each fold re-runs the transform stages on its training part
 * only -- so no statistic of the held-out rows leaks into the fit -- then the
 * train stage, and hands the model and the transformed held-out rows to the
 * evaluator's callback.  Folds are assigned from the pipeline seed, so they
 * repeat exactly; with stratification each class is dealt round-robin over
 * the folds after a seeded shuffle (scikit-learn's StratifiedKFold keeps the
 * same proportions).  mp_cv_stat adds up one metric's figures over the folds
 * for the evaluators.
 */
#include "mp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Metrics of the folds' inner training runs are dropped: the per-epoch
 * history belongs to the main training run only. */
static int drop_metric(void *ud, const char *key, double value, long step, mp_err *err) {
    (void)ud; (void)key; (void)value; (void)step; (void)err;
    return MP_OK;
}

static int cmp_by_key(const void *a, const void *b, void *arg) {
    const double *key = arg;
    double x = key[*(const size_t *)a], y = key[*(const size_t *)b];
    return (x > y) - (x < y);
}

/* fold[i] in [0, k) for every row. */
static int assign_folds(const mp_ctx *ctx, const mp_dataset *ds, int k, bool stratified,
                        int *fold, mp_err *err) {
    size_t n = ds->X.n_rows;
    size_t *order = mp_malloc(mp_mul_size(n ? n : 1, sizeof *order));
    if (!order) return MP_ERR(err, MP_E_NOMEM, "out of memory assigning %zu rows to folds", n);
    for (size_t i = 0; i < n; i++) order[i] = i;
    mp_rng rng;
    mp_ctx_rng(ctx, 0xc5, &rng);
    mp_rng_shuffle(&rng, order, n);
    if (stratified) {
        /* Sort rows by (class, shuffled position): each class stays in seeded
         * random order, and dealing the sorted list round-robin gives every
         * fold its share of each class. */
        double *key = mp_malloc(mp_mul_size(n ? n : 1, sizeof *key));
        if (!key) {
            mp_free(order);
            return MP_ERR(err, MP_E_NOMEM, "out of memory assigning %zu rows to folds", n);
        }
        for (size_t i = 0; i < n; i++) key[order[i]] = ds->y[order[i]] * (double)n + (double)i;
        for (size_t i = 0; i < n; i++) order[i] = i;
        qsort_r(order, n, sizeof *order, cmp_by_key, key);
        mp_free(key);
    }
    for (size_t i = 0; i < n; i++) fold[order[i]] = (int)(i % (size_t)k);
    mp_free(order);
    return MP_OK;
}

static void fold_release(mp_ctx *c) {
    mp_dataset_free(c->train);
    mp_dataset_free(c->test);
    for (size_t i = 0; i < c->n_transforms; i++)
        if (c->transforms[i].ops->free_state) c->transforms[i].ops->free_state(c->transforms[i].state);
    mp_free(c->transforms);
    mp_model_free(c->model);
}

int mp_ctx_cross_validate(mp_ctx *ctx, int k, bool stratified, mp_cv_fn fn, void *ud,
                          mp_err *err) {
    const mp_host *h = ctx->host;
    if (!h || !h->raw_train || !h->stages)
        return MP_ERR(err, MP_E_DATA, "cross-validation needs the runner's copy of the training rows");
    const mp_dataset *raw = h->raw_train;
    size_t n = raw->X.n_rows;
    if (k < 2 || (size_t)k > n)
        return MP_ERR(err, MP_E_DATA, "cannot make %d folds of %zu rows", k, n);
    size_t train_idx = h->n_stages;
    for (size_t i = 0; i < h->n_stages; i++)
        if (h->stages[i].ops->kind == MP_KIND_TRAIN) train_idx = i;
    if (train_idx == h->n_stages)
        return MP_ERR(err, MP_E_DATA, "cross-validation needs a train stage");
    stratified = stratified && raw->task == MP_TASK_CLASSIFICATION && raw->y;

    int *fold = mp_malloc(mp_mul_size(n, sizeof *fold));
    size_t *tr = mp_malloc(mp_mul_size(n, sizeof *tr)), *va = mp_malloc(mp_mul_size(n, sizeof *va));
    if (!fold || !tr || !va) {
        MP_ERR(err, MP_E_NOMEM, "out of memory for %d folds", k);
        goto done;
    }
    if (assign_folds(ctx, raw, k, stratified, fold, err) != MP_OK) goto done;

    mp_host quiet = { .metric = drop_metric };
    for (int f = 0; f < k && err->code == MP_OK; f++) {
        size_t n_tr = 0, n_va = 0;
        for (size_t i = 0; i < n; i++) {
            if (fold[i] == f) va[n_va++] = i;
            else tr[n_tr++] = i;
        }
        mp_ctx c = { .seed = ctx->seed, .pipeline = ctx->pipeline, .run_id = ctx->run_id,
                     .host = &quiet };
        if (!(c.train = mp_dataset_subset(raw, tr, n_tr, err)) ||
            !(c.test = mp_dataset_subset(raw, va, n_va, err))) {
            fold_release(&c);
            break;
        }
        int rc = MP_OK;
        for (size_t i = 0; i < h->n_stages && rc == MP_OK; i++) {
            mp_stage *st = &h->stages[i];
            if (st->ops->kind != MP_KIND_TRANSFORM && i != train_idx) continue;
            c.stage_index = (int)i;
            rc = st->ops->run(st, &c, err);
        }
        if (rc == MP_OK && !c.model) rc = MP_ERR(err, MP_E_DATA, "fold %d: no model trained", f + 1);
        if (rc == MP_OK) rc = fn(ud, f + 1, c.model, c.test, err);
        if (rc == MP_OK && mp_ctx_cancelled(ctx))
            rc = MP_ERR(err, MP_E_CANCELLED, "interrupted after fold %d", f + 1);
        if (rc != MP_OK && rc != MP_E_CANCELLED) mp_err_prefix(err, "cross-validation fold %d", f + 1);
        mp_log(MP_LOG_DEBUG, "cv: fold %d/%d: %zu train rows, %zu held out", f + 1, k, n_tr, n_va);
        fold_release(&c);
    }
done:
    mp_free(fold);
    mp_free(tr);
    mp_free(va);
    return err->code;
}

int mp_cv_stat_add(mp_ctx *ctx, mp_cv_stat *s, const char *name, double v, int fold,
                   mp_err *err) {
    char key[128];
    snprintf(key, sizeof key, "cv.%s", name);
    s->sum += v;
    s->sumsq += v * v;
    s->count++;
    mp_ctx_metric(ctx, key, v, fold, err);
    return err->code;
}

int mp_cv_stat_record(mp_ctx *ctx, const mp_cv_stat *s, const char *name, mp_err *err) {
    if (s->count == 0) return MP_OK;
    double mean = s->sum / s->count;
    double var = s->sumsq / s->count - mean * mean;
    double sd = var > 0 ? sqrt(var) : 0.0;
    char key[128];
    snprintf(key, sizeof key, "cv.%s", name);
    if (mp_ctx_metric(ctx, key, mean, -1, err) != MP_OK) return err->code;
    snprintf(key, sizeof key, "cv.%s.std", name);
    if (mp_ctx_metric(ctx, key, sd, -1, err) != MP_OK) return err->code;
    mp_log(MP_LOG_INFO, "evaluate: cv.%s = %.6g +- %.6g (%d folds)", name, mean, sd, s->count);
    return MP_OK;
}
