/*
 * test_kmeans.c -- unit tests of `train: kmeans` (stages/kmeans.c) and
 * `evaluate: clustering` (stages/eval_clustering.c).
 *
 * The stage runs through its ops->run on a hand-built mp_ctx whose host
 * captures metrics.  Known answers on well-separated blobs drawn with
 * mp_rng (each blob one cluster, with either seeding), the inertia against
 * a brute-force sum, the per-iteration history (non-increasing, as Lloyd's
 * algorithm guarantees), repeatability with one seed, the threaded passes
 * against one thread, empty-cluster re-seeding, a target being ignored,
 * errors, cancellation, save -> load -> predict through the real artifact
 * API, the evaluate stage's figures, and allocation-failure loops (every
 * failure MP_E_NOMEM, nothing leaked).
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
#include "metrics.h"
#include "fixtures.h"

extern const mp_stage_ops mp_stage_kmeans;
extern const mp_stage_ops mp_stage_eval_clustering;
const float *mp_kmeans_centers(const mp_model *m, size_t *k);     /* kmeans.c */

/* Mirrors kmeans_conf in stages/kmeans.c (the runner fills it by offsets). */
typedef struct kmeans_conf {
    int    k;
    int    init;        /* 0 kmeans++, 1 random */
    int    n_init;
    int    max_iter;
    double tol;
} kmeans_conf;
enum { KMEANSPP = 0, RANDOM = 1 };

static kmeans_conf conf_default(int k) {
    return (kmeans_conf){ .k = k, .init = KMEANSPP, .n_init = 1, .max_iter = 300, .tol = 1e-4 };
}

/* ---------------------------------------------------------------- fixtures */

/* n rows in d dimensions around k centers: row i belongs to blob i % k,
 * whose center is 20 * (blob + 1) in coordinate blob % d and 0 elsewhere
 * (far apart); noise sd.  y = the blob (classification) when labelled. */
static mp_dataset *axis_blobs(size_t n, size_t d, size_t k, double sd, bool labelled,
                              uint64_t seed) {
    mp_err err = { 0 };
    mp_dataset *ds = mp_dataset_new();
    assert_non_null(ds);
    assert_int_equal(mp_matrix_init(&ds->X, n, d, &err), MP_OK);
    mp_rng rng;
    mp_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) {
            size_t b = i % k;
            double ctr = j == b % d ? 20.0 * (double)(b + 1) : 0.0;
            MP_AT(&ds->X, i, j) = (float)(ctr + sd * mp_rng_normal(&rng));
        }
    ds->feature_names = names("f", d);
    if (labelled) {
        ds->y = mp_calloc(n, sizeof *ds->y);
        assert_non_null(ds->y);
        for (size_t i = 0; i < n; i++) ds->y[i] = (double)(i % k);
        set_classes(ds, k);
        ds->target_name = mp_strdup("blob");
    }
    return ds;
}

static metric_capture cap;
static mp_host host = { .metric = metric_capture_metric, .ud = &cap };

static int cap_count(const char *key, double *v) { return metric_count(&cap, key, v); }

static char logbuf[8192];
static void log_sink(int level, const char *msg, void *ud) {
    (void)ud;
    (void)level;
    if (strlen(logbuf) + strlen(msg) + 2 < sizeof logbuf) {
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

static int run_stage(mp_ctx *ctx, kmeans_conf *c, mp_err *err) {
    return run_ops(&mp_stage_kmeans, c, ctx, err);
}

/* Cluster index per row through the model's predict (caller frees). */
static int *labels_of(const mp_model *m, const mp_matrix *X) {
    mp_err err = { 0 };
    mp_matrix out = { 0 };
    assert_int_equal(mp_model_predict(m, X, &out, &err), MP_OK);
    int *lab = malloc(X->n_rows * sizeof *lab);
    assert_non_null(lab);
    for (size_t i = 0; i < X->n_rows; i++) lab[i] = (int)out.data[i];
    mp_matrix_release(&out);
    return lab;
}

/* Each blob (row i in blob i % k) is exactly one cluster, and no two
 * blobs share one. */
static void assert_blobs_found(const int *lab, size_t n, size_t k) {
    for (size_t i = 0; i < n; i++) {
        if (lab[i] != lab[i % k]) fail_msg("row %zu: cluster %d, its blob's is %d", i, lab[i],
                                           lab[i % k]);
        for (size_t b = 0; b < i % k; b++)
            if (lab[b] == lab[i % k]) fail_msg("blobs %zu and %zu share a cluster", b, i % k);
    }
}

/* Sum of squared distances of rows to the mean of their blob, in double. */
static double brute_inertia(const mp_matrix *X, size_t k) {
    size_t n = X->n_rows, d = X->n_cols;
    double *mean = calloc(k * d, sizeof *mean), s = 0.0;
    size_t *cnt = calloc(k, sizeof *cnt);
    assert_non_null(mean);
    assert_non_null(cnt);
    for (size_t i = 0; i < n; i++) {
        cnt[i % k]++;
        for (size_t j = 0; j < d; j++) mean[(i % k) * d + j] += MP_AT(X, i, j);
    }
    for (size_t c = 0; c < k; c++)
        for (size_t j = 0; j < d; j++) mean[c * d + j] /= (double)cnt[c];
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) {
            double e = MP_AT(X, i, j) - mean[(i % k) * d + j];
            s += e * e;
        }
    free(mean);
    free(cnt);
    return s;
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
    mp_log_level = MP_LOG_WARN;
    return 0;
}

/* ---------------------------------------------------------------- stage table */

static void test_stage_table(void **state) {
    (void)state;
    const mp_stage_ops *ops = &mp_stage_kmeans;
    assert_int_equal(ops->abi, MP_STAGE_ABI);
    assert_string_equal(ops->name, "kmeans");
    assert_int_equal(ops->kind, MP_KIND_TRAIN);
    assert_int_equal(ops->task, MP_TASK_CLUSTERING);
    assert_int_equal(ops->conf_size, sizeof(kmeans_conf));
    assert_non_null(ops->doc);
    assert_string_equal(ops->model->name, "kmeans");
    size_t n = 0;
    for (const mp_param *p = ops->params; p->name; p++, n++) assert_non_null(p->doc);
    assert_int_equal(n, 5);
    assert_string_equal(ops->params[1].choices, "kmeans++|random");
    const mp_stage_ops *ev = &mp_stage_eval_clustering;
    assert_string_equal(ev->name, "clustering");
    assert_int_equal(ev->kind, MP_KIND_EVALUATE);
    assert_non_null(ev->doc);
    for (const mp_param *p = ev->params; p->name; p++) assert_non_null(p->doc);
}

/* ---------------------------------------------------------------- known answers */

static void known_answer(int init, int n_init) {
    enum { N = 400, D = 3, K = 4 };
    mp_ctx ctx = ctx_for(axis_blobs(N, D, K, 0.5, false, 1));
    kmeans_conf c = conf_default(K);
    c.init = init;
    c.n_init = n_init;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    const mp_model *m = ctx.model;
    assert_non_null(m);
    assert_int_equal(m->task, MP_TASK_CLUSTERING);
    assert_int_equal(m->n_features, D);
    assert_int_equal(m->n_outputs, 1);
    assert_false(m->has_proba);
    int *lab = labels_of(m, &ctx.train->X);
    assert_blobs_found(lab, N, K);

    /* Converged: the centers are the blob means, the final inertia the
     * brute-force sum, also as recomputed from the model's centers. */
    double want = brute_inertia(&ctx.train->X, K), fin = 0.0;
    assert_int_equal(cap_count("train.final_inertia", &fin), 1);
    assert_near(fin, want, 1e-6 * want);
    size_t k = 0;
    const float *centers = mp_kmeans_centers(m, &k);
    assert_non_null(centers);
    assert_int_equal(k, K);
    assert_near(mp_inertia(&ctx.train->X, lab, centers, k), want, 1e-6 * want);

    /* History: train.inertia and train.loss per iteration, steps 1..n,
     * never increasing; the final figure at step -1. */
    int n_it = cap_count("train.inertia", NULL);
    assert_true(n_it >= 1 && n_it < 300);
    assert_int_equal(cap_count("train.loss", NULL), n_it);
    double prev = INFINITY;
    int seen = 0;
    for (int i = 0; i < cap.n; i++) {
        if (strcmp(cap.key[i], "train.final_inertia") == 0) {
            assert_int_equal(cap.step[i], -1);
            continue;
        }
        if (strcmp(cap.key[i], "train.inertia") != 0) continue;
        assert_int_equal(cap.step[i], ++seen);
        assert_true(cap.value[i] <= prev * (1.0 + 1e-6));
        prev = cap.value[i];
    }
    assert_true(fin <= prev * (1.0 + 1e-6));
    free(lab);
    ctx_release(&ctx);
}

static void test_blobs_kmeanspp(void **state) {
    (void)state;
    known_answer(KMEANSPP, 1);
}

static void test_blobs_random_init(void **state) {
    (void)state;
    /* Random seeding can put two centers in one blob; ten restarts keep
     * the best, which finds all four. */
    known_answer(RANDOM, 10);
}

static void test_repeatable_with_seed(void **state) {
    (void)state;
    enum { N = 300, D = 5, K = 6 };
    for (int init = KMEANSPP; init <= RANDOM; init++) {
        mp_ctx ctx = ctx_for(axis_blobs(N, D, 3, 3.0, false, 2));   /* 6 clusters on 3 blobs */
        kmeans_conf c = conf_default(K);
        c.init = init;
        mp_err err = { 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
        size_t k = 0;
        float first[K * D];
        memcpy(first, mp_kmeans_centers(ctx.model, &k), sizeof first);
        metric_capture c1 = cap;
        memset(&cap, 0, sizeof cap);
        assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);  /* replaces the model */
        assert_memory_equal(mp_kmeans_centers(ctx.model, &k), first, sizeof first);
        assert_int_equal(cap.n, c1.n);
        assert_memory_equal(cap.value, c1.value, (size_t)cap.n * sizeof(double));
        /* Another pipeline seed draws other seeds (the centers differ). */
        ctx.seed = 43;
        assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
        assert_true(memcmp(mp_kmeans_centers(ctx.model, &k), first, sizeof first) != 0);
        ctx_release(&ctx);
    }
}

static void test_threads_match_one_thread(void **state) {
    (void)state;
    /* 6000 x 48 is enough for the passes to use every OpenBLAS thread. */
    enum { N = 6000, D = 48, K = 5 };
    mp_ctx ctx = ctx_for(axis_blobs(N, D, K, 2.0, false, 3));
    kmeans_conf c = conf_default(K);
    mp_err err = { 0 };
    int saved = openblas_get_num_threads();
    openblas_set_num_threads(1);
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    openblas_set_num_threads(saved);
    assert_int_equal(openblas_get_num_threads(), saved);
    double f1 = 0.0, f2 = 0.0;
    assert_int_equal(cap_count("train.final_inertia", &f1), 1);
    int *l1 = labels_of(ctx.model, &ctx.train->X);
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    assert_int_equal(openblas_get_num_threads(), saved);    /* restored after each pass */
    assert_int_equal(cap_count("train.final_inertia", &f2), 2);
    int *l2 = labels_of(ctx.model, &ctx.train->X);
    assert_near(f2, f1, 1e-6 * f1);
    assert_memory_equal(l1, l2, N * sizeof *l1);
    assert_blobs_found(l2, N, K);
    free(l1);
    free(l2);
    ctx_release(&ctx);
}

static void test_empty_cluster_reseeded(void **state) {
    (void)state;
    /* Rows 0 0 0 10, k = 3, random seeding: whichever rows are drawn, at
     * least one center duplicates another and its cluster starts empty
     * (ties go to the lower index).  It must be re-seeded from the row
     * farthest from its center, ending with zero inertia. */
    mp_err err = { 0 };
    bool reseeded = false;
    for (uint64_t seed = 1; seed <= 8; seed++) {
        mp_dataset *ds = mp_dataset_new();
        assert_non_null(ds);
        assert_int_equal(mp_matrix_init(&ds->X, 4, 1, &err), MP_OK);
        ds->X.data[3] = 10.0f;
        mp_ctx ctx = ctx_for(ds);
        ctx.seed = seed;
        mp_log_level = MP_LOG_DEBUG;
        kmeans_conf c = conf_default(3);
        c.init = RANDOM;
        assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
        mp_log_level = MP_LOG_WARN;
        reseeded |= strstr(logbuf, "was empty") != NULL;
        double fin = -1.0;
        assert_int_equal(cap_count("train.final_inertia", &fin), 1);
        assert_near(fin, 0.0, 1e-12);
        int *lab = labels_of(ctx.model, &ds->X);
        assert_int_equal(lab[0], lab[1]);
        assert_int_equal(lab[0], lab[2]);
        assert_int_not_equal(lab[0], lab[3]);
        free(lab);
        ctx_release(&ctx);
    }
    assert_true(reseeded);
}

static void test_target_ignored_and_k1(void **state) {
    (void)state;
    enum { N = 90, D = 2, K = 3 };
    mp_ctx a = ctx_for(axis_blobs(N, D, K, 0.5, false, 4));
    kmeans_conf c = conf_default(K);
    mp_err err = { 0 };
    assert_int_equal(run_stage(&a, &c, &err), MP_OK);
    size_t k = 0;
    float ca[K * D];
    memcpy(ca, mp_kmeans_centers(a.model, &k), sizeof ca);
    ctx_release(&a);
    mp_ctx b = ctx_for(axis_blobs(N, D, K, 0.5, true, 4));
    assert_int_equal(run_stage(&b, &c, &err), MP_OK);
    assert_memory_equal(mp_kmeans_centers(b.model, &k), ca, sizeof ca);
    /* k = 1: the center is the mean; max_iter = 1 still gives a model. */
    c.k = 1;
    c.max_iter = 1;
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_stage(&b, &c, &err), MP_OK);
    assert_int_equal(cap_count("train.inertia", NULL), 1);
    double fin = 0.0;
    assert_int_equal(cap_count("train.final_inertia", &fin), 1);
    assert_near(fin, brute_inertia(&b.train->X, 1), 1e-6 * fin);
    ctx_release(&b);
}

/* ---------------------------------------------------------------- errors */

static void test_errors(void **state) {
    (void)state;
    kmeans_conf c = conf_default(3);
    mp_err err = { 0 };
    mp_ctx ctx = ctx_for(axis_blobs(2, 2, 2, 0.1, false, 5));
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);      /* k > rows */
    assert_non_null(strstr(err.msg, "k = 3"));
    assert_null(ctx.model);
    ctx_release(&ctx);

    ctx = ctx_for(NULL);
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DATA);      /* no rows */

    ctx = ctx_for(axis_blobs(30, 2, 3, 0.1, false, 5));
    MP_AT(&ctx.train->X, 12, 1) = NAN;
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_E_NUMERIC);
    assert_non_null(strstr(err.msg, "feature 'f1' is not a finite number at row 13"));
    assert_null(ctx.model);
    MP_AT(&ctx.train->X, 12, 1) = 0.0f;

    mp_cancel_signal = 15;
    for (int init = KMEANSPP; init <= RANDOM; init++) {
        c.init = init;
        err = (mp_err){ 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_E_CANCELLED);
        assert_null(ctx.model);
    }
    mp_cancel_signal = 0;

    for (int at = 1; at <= 3; at++) {   /* the first history row, then the final figure */
        memset(&cap, 0, sizeof cap);
        c.max_iter = 1;
        cap.fail_at = at;
        err = (mp_err){ 0 };
        assert_int_equal(run_stage(&ctx, &c, &err), MP_E_DB);
        assert_null(ctx.model);
    }
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- evaluate */

/* Mirrors eval_conf in stages/eval_clustering.c. */
typedef struct eval_conf {
    mp_str_list metrics;
    int         silhouette_sample;
    int         cv_folds;
    bool        cv_stratified;
} eval_conf;

static int run_eval_conf(mp_ctx *ctx, eval_conf *conf, mp_err *err) {
    mp_stage st = { .ops = &mp_stage_eval_clustering, .conf = conf, .name = "evaluate" };
    return mp_stage_eval_clustering.run(&st, ctx, err);
}

static int run_eval(mp_ctx *ctx, const char *const *metrics, size_t n, int sample, mp_err *err) {
    eval_conf conf = { { .v = (char **)metrics, .n = n }, sample, 0, false };
    return run_eval_conf(ctx, &conf, err);
}

static void test_evaluate_clustering(void **state) {
    (void)state;
    enum { N = 300, D = 2, K = 3 };
    mp_ctx ctx = ctx_for(axis_blobs(N, D, K, 0.5, true, 6));
    ctx.test = axis_blobs(150, D, K, 0.5, true, 7);
    kmeans_conf c = conf_default(K);
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    static const char *const all[] = { "inertia", "silhouette", "adjusted_rand" };
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval(&ctx, all, 3, 5000, &err), MP_OK);
    double inertia = 0, sil = 0, ari = 0;
    assert_int_equal(cap_count("test.inertia", &inertia), 1);
    assert_int_equal(cap_count("test.silhouette", &sil), 1);
    assert_int_equal(cap_count("test.adjusted_rand", &ari), 1);
    for (int i = 0; i < cap.n; i++) assert_int_equal(cap.step[i], -1);
    /* Test rows around the same blobs: their inertia w.r.t. the model's
     * centers is at least their own within-blob sum, and close to it. */
    double own = brute_inertia(&ctx.test->X, K);
    assert_true(inertia >= own && inertia < own * 1.05);
    assert_near(ari, 1.0, 1e-12);       /* blobs = labels */
    assert_true(sil > 0.9 && sil < 1.0);

    /* A sample smaller than the rows: seeded, so the same figure twice. */
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval(&ctx, all + 1, 1, 40, &err), MP_OK);
    assert_int_equal(run_eval(&ctx, all + 1, 1, 40, &err), MP_OK);
    assert_int_equal(cap.n, 2);
    assert_true(cap.value[0] == cap.value[1] && cap.value[0] > 0.9);

    /* A numeric target is numbered by its distinct values. */
    ctx.test->task = MP_TASK_REGRESSION;
    for (size_t i = 0; i < 150; i++) ctx.test->y[i] = 0.5 * ctx.test->y[i] - 7.0;
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval(&ctx, all + 2, 1, 5000, &err), MP_OK);
    assert_int_equal(cap_count("test.adjusted_rand", &ari), 1);
    assert_near(ari, 1.0, 1e-12);

    /* No labels: adjusted_rand skipped.  No test split: "train." keys and a
     * warning. */
    mp_dataset_free(ctx.test);
    ctx.test = NULL;
    mp_free(ctx.train->y);
    ctx.train->y = NULL;
    memset(&cap, 0, sizeof cap);
    logbuf[0] = '\0';
    assert_int_equal(run_eval(&ctx, all, 3, 5000, &err), MP_OK);
    assert_int_equal(cap.n, 2);
    assert_string_equal(cap.key[0], "train.inertia");
    assert_string_equal(cap.key[1], "train.silhouette");
    assert_non_null(strstr(logbuf, "no test split"));

    /* One cluster: the silhouette is undefined and not recorded. */
    c.k = 1;
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval(&ctx, all + 1, 1, 5000, &err), MP_OK);
    assert_int_equal(cap.n, 0);

    /* Not a clustering model; no model; a failing sink. */
    ctx.model->task = MP_TASK_REGRESSION;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval(&ctx, all, 3, 5000, &err), MP_E_CONFIG);
    ctx.model->task = MP_TASK_CLUSTERING;
    memset(&cap, 0, sizeof cap);
    cap.fail_at = 1;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval(&ctx, all, 1, 5000, &err), MP_E_DB);
    mp_model_free(ctx.model);
    ctx.model = NULL;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval(&ctx, all, 3, 5000, &err), MP_E_DATA);
    ctx_release(&ctx);
}

static void test_evaluate_alloc_failures(void **state) {
    (void)state;
    mp_ctx ctx = ctx_for(axis_blobs(60, 2, 3, 0.5, true, 8));
    kmeans_conf c = conf_default(3);
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    ctx.train->task = MP_TASK_REGRESSION;   /* numbering the target allocates too */
    static const char *const all[] = { "inertia", "silhouette", "adjusted_rand" };
    int failures = 0;
    for (long nth = 1;; nth++) {
        err = (mp_err){ 0 };
        mp_mem_fail_after(nth);
        int rc = run_eval(&ctx, all, 3, 20, &err);
        mp_mem_fail_after(0);
        if (rc == MP_OK) break;
        if (rc != MP_E_NOMEM) fail_msg("allocation %ld: code %d (%s)", nth, rc, err.msg);
        failures++;
        assert_true(nth < 100);
    }
    assert_true(failures >= 10);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- cross-validation */

/* cv.<name> (final) is the mean of the fold rows, cv.<name>.std their
 * population standard deviation; the fold values go to v. */
static void assert_mean_std(const char *name, int folds, double *v) {
    assert_cv_mean_std(&cap, name, folds, v);
}

/* cv_folds: k-means re-runs on each fold of the raw training rows (the
 * host's copy) and scores the held-out rows.  On well-separated blobs every
 * fold finds the blobs, so each fold's adjusted Rand index is 1, and the
 * folds' inertias add up to about the inertia of all rows around their
 * blob means (each fold's centers are near those means). */
static void test_evaluate_cross_validation(void **state) {
    (void)state;
    enum { N = 300, D = 2, K = 3, F = 5 };
    mp_dataset *raw = axis_blobs(N, D, K, 0.5, true, 30);
    mp_ctx ctx = ctx_for(mp_dataset_copy(raw, &(mp_err){ 0 }));
    assert_non_null(ctx.train);
    kmeans_conf kc = conf_default(K);
    mp_stage stages[2] = {
        { .ops = &mp_stage_kmeans, .conf = &kc, .name = "train" },
        { .ops = &mp_stage_eval_clustering, .name = "evaluate" },
    };
    mp_host h = host;
    h.stages = stages;
    h.n_stages = 2;
    h.raw_train = raw;
    ctx.host = &h;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &kc, &err), MP_OK);

    static const char *const all[] = { "inertia", "silhouette", "adjusted_rand" };
    for (int strat = 0; strat <= 1; strat++) {
        eval_conf conf = { { .v = (char **)all, .n = 3 }, 5000, F, strat };
        memset(&cap, 0, sizeof cap);
        assert_int_equal(run_eval_conf(&ctx, &conf, &err), MP_OK);
        /* train.* (no test split), then cv.*: the folds' own history is dropped. */
        for (int i = 0; i < cap.n; i++)
            if (strncmp(cap.key[i], "cv.", 3) != 0 && strncmp(cap.key[i], "train.", 6) != 0)
                fail_msg("unexpected metric row '%s'", cap.key[i]);
        assert_int_equal(cap_count("train.final_inertia", NULL), 0);
        double inertia[F], sil[F], ari[F], sum = 0;
        assert_mean_std("inertia", F, inertia);
        assert_mean_std("silhouette", F, sil);
        assert_mean_std("adjusted_rand", F, ari);
        for (int f = 0; f < F; f++) {
            sum += inertia[f];
            assert_near(ari[f], 1.0, 1e-12);
            assert_true(sil[f] > 0.9 && sil[f] < 1.0);
        }
        double own = brute_inertia(&raw->X, K);
        assert_true(sum >= own && sum < own * 1.05);
    }
    /* Seeded folds: the same figures twice. */
    eval_conf conf = { { .v = (char **)all, .n = 1 }, 5000, 4, false };
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval_conf(&ctx, &conf, &err), MP_OK);
    metric_capture first = cap;
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval_conf(&ctx, &conf, &err), MP_OK);
    assert_int_equal(cap.n, first.n);
    for (int i = 0; i < cap.n; i++) assert_true(cap.value[i] == first.value[i]);

    /* Without labels adjusted_rand is left out of the folds too. */
    mp_dataset *unlabelled = axis_blobs(N, D, K, 0.5, false, 30);
    h.raw_train = unlabelled;
    conf = (eval_conf){ { .v = (char **)all, .n = 3 }, 5000, 3, true };
    memset(&cap, 0, sizeof cap);
    assert_int_equal(run_eval_conf(&ctx, &conf, &err), MP_OK);
    assert_int_equal(cap_count("cv.adjusted_rand", NULL), 0);
    assert_int_equal(cap_count("cv.inertia", NULL), 3 + 1);
    h.raw_train = raw;

    /* Errors: more folds than rows, no raw copy, a failing sink. */
    conf.cv_folds = N + 1;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval_conf(&ctx, &conf, &err), MP_E_DATA);
    if (!strstr(err.msg, "cannot make 301 folds of 300 rows")) fail_msg("%s", err.msg);
    conf.cv_folds = 3;
    h.raw_train = NULL;
    err = (mp_err){ 0 };
    assert_int_equal(run_eval_conf(&ctx, &conf, &err), MP_E_DATA);
    h.raw_train = raw;
    for (int at = 4; at <= 6; at++) {   /* the three train.* rows, then cv rows */
        memset(&cap, 0, sizeof cap);
        cap.fail_at = at;
        err = (mp_err){ 0 };
        assert_int_equal(run_eval_conf(&ctx, &conf, &err), MP_E_DB);
    }
    /* cv_folds: 1 is a config error (the runner adds the file:line:col). */
    conf.cv_folds = 1;
    err = (mp_err){ 0 };
    assert_non_null(mp_stage_eval_clustering.check);
    assert_int_equal(mp_stage_eval_clustering.check(&conf, &err), MP_E_CONFIG);
    if (!strstr(err.msg, "cv_folds must be 0")) fail_msg("%s", err.msg);
    conf.cv_folds = 0;
    err = (mp_err){ 0 };
    assert_int_equal(mp_stage_eval_clustering.check(&conf, &err), MP_OK);
    ctx_release(&ctx);
    mp_dataset_free(raw);
    mp_dataset_free(unlabelled);
}

static void test_evaluate_cv_alloc_failures(void **state) {
    (void)state;
    mp_dataset *raw = axis_blobs(60, 2, 3, 0.5, true, 31);
    mp_ctx ctx = ctx_for(mp_dataset_copy(raw, &(mp_err){ 0 }));
    assert_non_null(ctx.train);
    kmeans_conf kc = conf_default(3);
    mp_stage stages[1] = { { .ops = &mp_stage_kmeans, .conf = &kc, .name = "train" } };
    mp_host h = host;
    h.stages = stages;
    h.n_stages = 1;
    h.raw_train = raw;
    ctx.host = &h;
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &kc, &err), MP_OK);
    static const char *const all[] = { "inertia", "silhouette", "adjusted_rand" };
    eval_conf conf = { { .v = (char **)all, .n = 3 }, 20, 3, true };
    int failures = 0;
    for (long nth = 1;; nth++) {
        err = (mp_err){ 0 };
        mp_mem_fail_after(nth);
        int rc = run_eval_conf(&ctx, &conf, &err);
        mp_mem_fail_after(0);
        if (rc == MP_OK) break;
        if (rc != MP_E_NOMEM) fail_msg("allocation %ld: code %d (%s)", nth, rc, err.msg);
        failures++;
        assert_true(nth < 2000);
    }
    assert_true(failures >= 20);
    ctx_release(&ctx);
    mp_dataset_free(raw);
}

/* ---------------------------------------------------------------- model file */

/* A k-means model goes through the model file (runner/model.c) like any
 * other: saved with its transforms, loaded back as task clustering, and
 * mp_model_file_scores gives the cluster index of each raw row. */
static void test_model_file_round_trip(void **state) {
    (void)state;
    enum { N = 120, D = 3, K = 4 };
    mp_ctx ctx = ctx_for(axis_blobs(N, D, K, 0.5, true, 32));
    kmeans_conf c = conf_default(K);
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    char dir[64], path[128];
    tmp_model_path(dir, path);
    assert_int_equal(mp_model_save(path, &ctx, NULL, NULL, &err), MP_OK);

    mp_model_file *mf = NULL;
    if (mp_model_load(path, &mf, &err) != MP_OK) fail_msg("load: %s", err.msg);
    assert_int_equal(mf->model->task, MP_TASK_CLUSTERING);
    assert_string_equal(mf->algorithm, "kmeans");
    assert_int_equal(mf->n_features, D);
    assert_int_equal(mf->n_classes, 0);
    assert_null(mf->class_names);
    assert_false(mf->model->has_proba);
    mp_matrix X = { 0 }, scores = { 0 };
    assert_int_equal(mp_matrix_init(&X, N, D, &err), MP_OK);
    memcpy(X.data, ctx.train->X.data, (size_t)N * D * sizeof *X.data);
    assert_int_equal(mp_model_file_scores(mf, &X, &scores, &err), MP_OK);
    assert_int_equal(scores.n_cols, 1);
    int *want = labels_of(ctx.model, &ctx.train->X);
    for (size_t i = 0; i < N; i++) assert_true(scores.data[i] == (float)want[i]);
    free(want);
    mp_matrix_release(&X);
    mp_matrix_release(&scores);
    mp_model_file_free(mf);
    remove_model(dir, path);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- save / load */

/* round_trip's checks for k-means: the same centers, and none for a
 * model without state. */
static void same_centers(const mp_model *m, const mp_model *m2, mp_art_reader *r) {
    (void)r;
    size_t k1 = 0, k2 = 0;
    const float *c1 = mp_kmeans_centers(m, &k1), *c2 = mp_kmeans_centers(m2, &k2);
    assert_non_null(c1);
    assert_non_null(c2);
    assert_int_equal(k1, k2);
    assert_memory_equal(c1, c2, k1 * m->n_features * sizeof(float));
    mp_model bad = *m2;
    bad.state = NULL;
    assert_null(mp_kmeans_centers(&bad, &k1));
}

static void test_save_load_predict(void **state) {
    (void)state;
    enum { N = 200, D = 4, K = 5 };
    mp_ctx ctx = ctx_for(axis_blobs(N, D, K, 1.0, false, 9));
    kmeans_conf c = conf_default(K);
    mp_err err = { 0 };
    assert_int_equal(run_stage(&ctx, &c, &err), MP_OK);
    size_t k = 0;
    assert_non_null(mp_kmeans_centers(ctx.model, &k));
    assert_int_equal(k, K);
    assert_int_equal(ctx.model->n_features, D);
    round_trip(ctx.model, ctx.train, same_centers);
    ctx_release(&ctx);
}

/* ---------------------------------------------------------------- allocation failure */

static void alloc_fail_loop(int init, int n_init) {
    kmeans_conf c = conf_default(3);
    c.init = init;
    c.n_init = n_init;
    int failures = 0;
    for (long nth = 1;; nth++) {
        mp_ctx ctx = ctx_for(axis_blobs(60, 2, 3, 0.5, false, 10));
        if (train_with_failing_alloc(&mp_stage_kmeans, &c, &ctx, nth)) break;
        failures++;
        assert_true(nth < 200);
    }
    assert_true(failures >= 10);
}

static void test_alloc_failures(void **state) {
    (void)state;
    alloc_fail_loop(KMEANSPP, 1);
    alloc_fail_loop(RANDOM, 2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stage_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blobs_kmeanspp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blobs_random_init, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeatable_with_seed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_match_one_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_cluster_reseeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_target_ignored_and_k1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evaluate_clustering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evaluate_alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evaluate_cross_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evaluate_cv_alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_model_file_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_load_predict, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
