/*
 * fixtures.h -- what the unit tests of the training stages share
 * (test_logreg.c, test_svm.c, test_mlp.c, test_linreg.c, test_kmeans.c):
 * seeded data sets, a host that captures metrics, running a stage on a
 * hand-built mp_ctx, the allocation-failure step, and model files saved and
 * loaded back through the real artifact API.
 *
 * Each test is its own binary (tests/unit/test_<module>.c linked against
 * build/unit/libmlpipe.a), so everything here is `static inline`: one copy
 * per binary, and no -Wunused-function for what a test does not use.
 * Datasets and models are allocated with mp_malloc (cmocka's checked
 * allocator in test builds); the functions fail the running test, through
 * cmocka, when something they set up goes wrong.
 */
#ifndef MP_TEST_FIXTURES_H
#define MP_TEST_FIXTURES_H

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

/* ---------------------------------------------------------------- state */

/* What every test starts from: info lines off, no cancellation pending, no
 * allocation set to fail. */
static inline void reset_test_state(void) {
    mp_log_level = MP_LOG_WARN;
    mp_cancel_signal = 0;
    mp_mem_fail_after(0);
}

static inline void assert_msg_has(const mp_err *err, const char *needle) {
    if (!strstr(err->msg, needle)) fail_msg("message '%s' lacks '%s'", err->msg, needle);
}

static inline void assert_near(double got, double want, double tol) {
    if (!(fabs(got - want) <= tol)) fail_msg("got %.12g, want %.12g (tol %g)", got, want, tol);
}

/* ---------------------------------------------------------------- datasets */

/* n names stem0, stem1, ...; the caller owns them (mp_dataset_free frees
 * them with the dataset they are put in). */
static inline char **names(const char *stem, size_t n) {
    char **v = mp_calloc(n, sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) {
        char b[32];
        snprintf(b, sizeof b, "%s%zu", stem, i);
        v[i] = mp_strdup(b);
        assert_non_null(v[i]);
    }
    return v;
}

/* An empty dataset of n rows x d features (zeros) with a y column (zeros)
 * and feature names x0, x1, ...; no task, no classes. */
static inline mp_dataset *dataset(size_t n, size_t d) {
    mp_err err = { 0 };
    mp_dataset *ds = mp_dataset_new();
    assert_non_null(ds);
    assert_int_equal(mp_matrix_init(&ds->X, n, d, &err), MP_OK);
    ds->y = mp_calloc(n, sizeof *ds->y);
    assert_non_null(ds->y);
    ds->feature_names = names("x", d);
    return ds;
}

/* Makes ds a classification set of k classes named c0, c1, ... (y holds
 * the class indices). */
static inline void set_classes(mp_dataset *ds, size_t k) {
    ds->task = MP_TASK_CLASSIFICATION;
    ds->class_names = names("c", k);
    ds->n_classes = k;
}

/* Drops the class list: y keeps its numbers as a regression target. */
static inline void make_numeric(mp_dataset *ds) {
    for (size_t i = 0; i < ds->n_classes; i++) mp_free(ds->class_names[i]);
    mp_free(ds->class_names);
    ds->class_names = NULL;
    ds->n_classes = 0;
    ds->task = MP_TASK_REGRESSION;
}

/* n rows of k Gaussian blobs in 2-D: row i belongs to class i % k and lies
 * around ctr[class] with standard deviation sd. */
static inline mp_dataset *blobs(size_t n, size_t k, const float (*ctr)[2], double sd,
                                uint64_t seed) {
    mp_dataset *ds = dataset(n, 2);
    mp_rng rng;
    mp_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) {
        size_t c = i % k;
        MP_AT(&ds->X, i, 0) = (float)(ctr[c][0] + sd * mp_rng_normal(&rng));
        MP_AT(&ds->X, i, 1) = (float)(ctr[c][1] + sd * mp_rng_normal(&rng));
        ds->y[i] = (double)c;
    }
    set_classes(ds, k);
    return ds;
}

/* Centers for blobs(): two classes, and three. */
__attribute__((unused)) static const float TWO[2][2] = { { -2.0f, -2.0f }, { 2.0f, 2.0f } };
__attribute__((unused)) static const float THREE[3][2] = { { 0.0f, 3.0f }, { -3.0f, -2.0f },
                                                           { 3.0f, -2.0f } };

/* ---------------------------------------------------------------- metric capture */

/* A host's metric sink that keeps the train.loss rows in order (the first
 * LOSS_ROWS of them) and counts the others. */
#define LOSS_ROWS 2000
typedef struct loss_capture {
    int    n;                   /* train.loss rows seen */
    double loss[LOSS_ROWS];
    long   step[LOSS_ROWS];
    int    other;               /* rows with any other key */
    int    fail_at;             /* 1-based train.loss row that fails with MP_E_DB; 0 = never */
} loss_capture;

/* mp_host.metric for a loss_capture (ud). */
static inline int loss_capture_metric(void *ud, const char *key, double value, long step,
                                      mp_err *err) {
    loss_capture *c = ud;
    if (strcmp(key, "train.loss") != 0) {
        c->other++;
        return MP_OK;
    }
    if (c->fail_at && c->n + 1 == c->fail_at)
        return MP_ERR(err, MP_E_DB, "cannot write metric: disk full");
    if (c->n < LOSS_ROWS) {
        c->loss[c->n] = value;
        c->step[c->n] = step;
    }
    c->n++;
    return MP_OK;
}

/* A host's metric sink that keeps every row (the first METRIC_ROWS) with
 * its key. */
#define METRIC_ROWS 4000
typedef struct metric_capture {
    int    n;                   /* rows seen */
    char   key[METRIC_ROWS][48];
    double value[METRIC_ROWS];
    long   step[METRIC_ROWS];
    int    fail_at;             /* 1-based row that fails with MP_E_DB; 0 = never */
} metric_capture;

/* mp_host.metric for a metric_capture (ud). */
static inline int metric_capture_metric(void *ud, const char *key, double value, long step,
                                        mp_err *err) {
    metric_capture *c = ud;
    if (c->fail_at && c->n + 1 == c->fail_at)
        return MP_ERR(err, MP_E_DB, "cannot write metric: disk full");
    if (c->n < METRIC_ROWS) {
        snprintf(c->key[c->n], sizeof c->key[c->n], "%s", key);
        c->value[c->n] = value;
        c->step[c->n] = step;
    }
    c->n++;
    return MP_OK;
}

/* Number of captured rows with this key; the last one's value in *v. */
static inline int metric_count(const metric_capture *c, const char *key, double *v) {
    int k = 0;
    for (int i = 0; i < c->n && i < METRIC_ROWS; i++)
        if (strcmp(c->key[i], key) == 0) {
            k++;
            if (v) *v = c->value[i];
        }
    return k;
}

/* The fold rows of key (steps 1, 2, ... in this order) into v, at most
 * max of them; returns how many there are. */
static inline int metric_folds(const metric_capture *c, const char *key, double *v, int max) {
    int k = 0;
    for (int i = 0; i < c->n && i < METRIC_ROWS; i++)
        if (strcmp(c->key[i], key) == 0 && c->step[i] >= 0) {
            if (k < max) {
                assert_int_equal(c->step[i], k + 1);
                v[k] = c->value[i];
            }
            k++;
        }
    return k;
}

/* Cross-validation figures: there are `folds` rows cv.<name> (to v), one
 * final cv.<name> that is their mean and one cv.<name>.std that is their
 * population standard deviation. */
static inline void assert_cv_mean_std(const metric_capture *c, const char *name, int folds,
                                      double *v) {
    char key[64];
    double mean = 0, sd = 0, got_mean = 0, got_sd = 0;
    snprintf(key, sizeof key, "cv.%s", name);
    assert_int_equal(metric_folds(c, key, v, folds), folds);
    for (int f = 0; f < folds; f++) mean += v[f] / folds;
    for (int f = 0; f < folds; f++) sd += (v[f] - mean) * (v[f] - mean) / folds;
    sd = sqrt(sd);
    int finals = 0;
    for (int i = 0; i < c->n && i < METRIC_ROWS; i++)
        if (strcmp(c->key[i], key) == 0 && c->step[i] < 0) {
            finals++;
            got_mean = c->value[i];
        }
    assert_int_equal(finals, 1);
    snprintf(key, sizeof key, "cv.%s.std", name);
    assert_int_equal(metric_count(c, key, &got_sd), 1);
    assert_near(got_mean, mean, 1e-9 * (1 + fabs(mean)));
    assert_near(got_sd, sd, 1e-9 * (1 + sd));
}

/* ---------------------------------------------------------------- running a stage */

/* Runs the stage ops with its config struct conf on ctx, as the executor
 * would (stage name "train"). */
static inline int run_ops(const mp_stage_ops *ops, void *conf, mp_ctx *ctx, mp_err *err) {
    mp_stage st = { .ops = ops, .conf = conf, .name = "train" };
    return ops->run(&st, ctx, err);
}

/* Frees what a test's ctx holds (train, test, model) and zeroes it. */
static inline void ctx_release(mp_ctx *ctx) {
    mp_dataset_free(ctx->train);
    mp_dataset_free(ctx->test);
    mp_model_free(ctx->model);
    memset(ctx, 0, sizeof *ctx);
}

/* Fraction of rows of ds the model classifies right. */
static inline double accuracy(const mp_model *m, const mp_dataset *ds) {
    mp_err err = { 0 };
    mp_matrix pred = { 0 };
    assert_int_equal(mp_model_predict(m, &ds->X, &pred, &err), MP_OK);
    size_t ok = 0;
    for (size_t i = 0; i < ds->X.n_rows; i++) ok += pred.data[i] == (float)ds->y[i];
    mp_matrix_release(&pred);
    return (double)ok / (double)ds->X.n_rows;
}

/* One step of an allocation-failure loop: runs the training stage ops on
 * ctx with allocation nth (1-based) failing.  Either the run succeeds and
 * leaves a model (returns true), or it fails with MP_E_NOMEM and leaves no
 * model (returns false); anything else fails the test.  ctx is released
 * either way, and cmocka checks at the end of the test that nothing leaked. */
static inline bool train_with_failing_alloc(const mp_stage_ops *ops, void *conf, mp_ctx *ctx,
                                            long nth) {
    mp_err err = { 0 };
    mp_mem_fail_after(nth);
    int rc = run_ops(ops, conf, ctx, &err);
    mp_mem_fail_after(0);
    if (rc == MP_OK) {
        assert_non_null(ctx->model);
        ctx_release(ctx);
        return true;
    }
    if (rc != MP_E_NOMEM) fail_msg("allocation %ld: code %d (%s)", nth, rc, err.msg);
    assert_null(ctx->model);
    ctx_release(ctx);
    return false;
}

/* ---------------------------------------------------------------- model files */

/* A new temporary folder in dir and the name of a file m.mlpm in it in
 * path; remove both with remove_model. */
static inline void tmp_model_path(char dir[static 64], char path[static 128]) {
    snprintf(dir, 64, "/tmp/mp_test_model_XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(path, 128, "%s/m.mlpm", dir);
}

/* Saves m under the prefix "model." in a new temporary model file, as
 * tmp_model_path names them. */
static inline void save_model(const mp_model *m, char dir[static 64], char path[static 128]) {
    tmp_model_path(dir, path);
    mp_err err = { 0 };
    mp_art_writer *w = NULL;
    assert_int_equal(mp_art_writer_open(path, &w, &err), MP_OK);
    if (m->ops->save(m, w, "model.", &err) != MP_OK) {
        mp_art_writer_abort(w);
        fail_msg("save: %s", err.msg);
    }
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
}

static inline void remove_model(const char *dir, const char *path) {
    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

/* The model saved from m at path (save_model), loaded into a fresh model
 * with the shape the model-file loader would set.  *r gets the open reader
 * for more loads.  The caller frees both (mp_model_free, mp_art_reader_free). */
static inline mp_model *load_model(const mp_model *m, const char *path, mp_art_reader **r) {
    mp_err err = { 0 };
    assert_int_equal(mp_art_reader_open(path, r, &err), MP_OK);
    mp_model *m2 = mp_calloc(1, sizeof *m2);
    assert_non_null(m2);
    *m2 = (mp_model){ .ops = m->ops, .task = m->task, .n_features = m->n_features,
                      .n_outputs = m->n_outputs, .has_proba = m->has_proba };
    if (m->ops->load(m2, *r, "model.", &err) != MP_OK) fail_msg("load: %s", err.msg);
    return m2;
}

/* m and m2 predict bitwise the same outputs (n_outputs columns) on X. */
static inline void assert_same_predictions(const mp_model *m, const mp_model *m2,
                                           const mp_matrix *X) {
    mp_err err = { 0 };
    size_t n = X->n_rows, k = m->n_outputs;
    mp_matrix p1 = { 0 }, p2 = { 0 };
    assert_int_equal(mp_matrix_init(&p1, n, k, &err), MP_OK);
    assert_int_equal(mp_matrix_init(&p2, n, k, &err), MP_OK);
    assert_int_equal(m->ops->predict(m, X, &p1, &err), MP_OK);
    assert_int_equal(m2->ops->predict(m2, X, &p2, &err), MP_OK);
    assert_memory_equal(p1.data, p2.data, n * k * sizeof(float));
    mp_matrix_release(&p1);
    mp_matrix_release(&p2);
}

/* Shapes that disagree with the file in r (one more output, one more
 * feature) and a prefix with no keys fail to load with MP_E_PARSE,
 * building nothing.  m2 is the model loaded from r. */
static inline void assert_bad_shapes_refused(const mp_model *m2, mp_art_reader *r) {
    mp_err err = { 0 };
    mp_model bad = *m2;
    bad.state = NULL;
    bad.n_outputs = m2->n_outputs + 1;
    assert_int_equal(m2->ops->load(&bad, r, "model.", &err), MP_E_PARSE);
    assert_null(bad.state);
    bad.n_outputs = m2->n_outputs;
    bad.n_features = m2->n_features + 1;
    err = (mp_err){ 0 };
    assert_int_equal(m2->ops->load(&bad, r, "model.", &err), MP_E_PARSE);
    assert_null(bad.state);
    err = (mp_err){ 0 };
    assert_int_equal(m2->ops->load(&bad, r, "other.", &err), MP_E_PARSE);   /* missing keys */
    assert_null(bad.state);
}

/* Checks of a loaded model beyond round_trip's: m the original, m2 loaded
 * from r. */
typedef void (*round_trip_fn)(const mp_model *m, const mp_model *m2, mp_art_reader *r);

/* Saves m, loads it back (load_model), checks the predictions on the rows
 * of ds are bitwise equal and that wrong shapes are refused, runs extra
 * (when not NULL), and removes the file. */
static inline void round_trip(const mp_model *m, const mp_dataset *ds, round_trip_fn extra) {
    char dir[64], path[128];
    save_model(m, dir, path);
    mp_art_reader *r = NULL;
    mp_model *m2 = load_model(m, path, &r);
    assert_same_predictions(m, m2, &ds->X);
    assert_bad_shapes_refused(m2, r);
    if (extra) extra(m, m2, r);
    mp_model_free(m2);
    mp_art_reader_free(r);
    remove_model(dir, path);
}

#endif
