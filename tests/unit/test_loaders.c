/*
 * test_loaders.c -- unit tests of `load: idx`, `load: synthetic` and
 * `load: sqlite`.
 *
 * Fixtures are written by the tests themselves into a fresh directory under
 * $TMPDIR (tiny IDX files, raw and gzipped, cut-off and mislabelled ones; a
 * small SQLite database), so nothing binary is committed and the tests run
 * from any directory.  A slice of the real Fashion-MNIST is loaded when
 * /usr/share/datasets/fashion-mnist exists; otherwise that test is skipped.
 *
 * The conf structs below mirror the stages' private ones, as the runner sees
 * them only through the parameter tables; test_param_tables_match_confs
 * checks the mirrors against the tables' offsets so they cannot drift.
 */
/* System headers first: with UNIT_TESTING, cmocka.h redefines malloc & co. */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mp.h"

extern const mp_stage_ops mp_stage_load_idx;
extern const mp_stage_ops mp_stage_load_synthetic;
extern const mp_stage_ops mp_stage_load_sqlite;

#define FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* Mirrors of the stages' config structs (see the file header). */
typedef struct {
    char *train_images, *train_labels, *test_images, *test_labels;
    double scale;
    int limit, test_limit;
    mp_str_list class_names;
} idx_conf;

typedef struct {
    int kind, n_samples, n_features, n_classes;
    double noise;
    int n_informative;
    double test_size;
} synth_conf;
enum { CLASSIFICATION = 0, BLOBS = 1, REGRESSION = 2 };

typedef struct {
    char *path, *query, *target;
    mp_str_list exclude;
    int missing;
} sqlite_conf;
enum { MISSING_ERROR = 0, MISSING_DROP = 1 };

/* ---------------------------------------------------------------- fixtures */

static char tmp_dir[256];       /* made by group_setup, removed by group_teardown */
static char last_log[512];      /* the last log line, captured by log_sink */

static void log_sink(int level, const char *msg, void *ud) {
    (void)level;
    (void)ud;
    snprintf(last_log, sizeof last_log, "%s", msg);
}

/* A path inside the temporary directory (a static buffer per slot). */
static char *tmp_path(int slot, const char *name) {
    static char buf[8][320];
    snprintf(buf[slot], sizeof buf[slot], "%s/%s", tmp_dir, name);
    return buf[slot];
}

static void remove_tree(const char *dir) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "test_loaders: could not remove %s\n", dir);
}

static int group_setup(void **state) {
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(tmp_dir, sizeof tmp_dir, "%s/mlpipe-loaders-XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp_dir)) return -1;
    mp_log_set_sink(log_sink, NULL);
    mp_log_level = MP_LOG_INFO;
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    mp_log_set_sink(NULL, NULL);
    remove_tree(tmp_dir);
    return 0;
}

/* Captures the metrics a stage records through ctx->host. */
typedef struct metrics {
    char   key[8][32];
    double value[8];
    int    n;
} metrics;

static int capture_metric(void *ud, const char *key, double value, long step, mp_err *err) {
    (void)err;
    metrics *m = ud;
    assert_int_equal(step, -1);
    assert_true(m->n < 8);
    snprintf(m->key[m->n], sizeof m->key[m->n], "%s", key);
    m->value[m->n++] = value;
    return MP_OK;
}

static double metric_of(const metrics *m, const char *key) {
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->key[i], key) == 0) return m->value[i];
    fail_msg("metric %s not recorded", key);
    return NAN;
}

static void free_ctx(mp_ctx *ctx) {
    mp_dataset_free(ctx->train);
    mp_dataset_free(ctx->test);
    ctx->train = ctx->test = NULL;
}

static int run_stage(const mp_stage_ops *ops, void *conf, mp_ctx *ctx, mp_err *err) {
    mp_stage st = { .ops = ops, .conf = conf, .name = "load", .where = "test.yaml:1:1" };
    return ops->run(&st, ctx, err);
}

/* ---------------------------------------------------------------- IDX files */

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes an IDX file: magic, dims, then `len` data bytes; gzipped when gz. */
static void write_idx(const char *path, uint32_t magic, const uint32_t *dims, int n_dims,
                      const unsigned char *data, size_t len, bool gz) {
    unsigned char h[16];
    put_be32(h, magic);
    for (int i = 0; i < n_dims; i++) put_be32(h + 4 * (i + 1), dims[i]);
    size_t hl = 4 * (1 + (size_t)n_dims);
    if (gz) {
        gzFile f = gzopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(gzwrite(f, h, (unsigned)hl), (int)hl);
        if (len) assert_int_equal(gzwrite(f, data, (unsigned)len), (int)len);
        assert_int_equal(gzclose(f), Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        assert_non_null(f);
        assert_int_equal(fwrite(h, 1, hl, f), hl);
        if (len) assert_int_equal(fwrite(data, 1, len, f), len);
        assert_int_equal(fclose(f), 0);
    }
}

/* n images of 2 x 3 pixels (pixel p of image i = 10 * i + p) and labels. */
static void write_images(const char *path, uint32_t n, bool gz) {
    unsigned char px[64 * 6];
    for (uint32_t i = 0; i < n; i++)
        for (int p = 0; p < 6; p++) px[i * 6 + p] = (unsigned char)(10 * i + (uint32_t)p);
    uint32_t dims[3] = { n, 2, 3 };
    write_idx(path, 0x803, dims, 3, px, (size_t)n * 6, gz);
}

static void write_labels(const char *path, const unsigned char *lab, uint32_t n, bool gz) {
    uint32_t dims[1] = { n };
    write_idx(path, 0x801, dims, 1, lab, n, gz);
}

static const unsigned char train_lab[5] = { 0, 1, 2, 1, 0 };
static const unsigned char test_lab[3] = { 2, 0, 1 };

/* The standard tiny fixture: 5 raw training images, 3 gzipped test images. */
static void write_idx_fixture(void) {
    write_images(tmp_path(0, "train-img"), 5, false);
    write_labels(tmp_path(1, "train-lab"), train_lab, 5, false);
    write_images(tmp_path(2, "test-img.gz"), 3, true);
    write_labels(tmp_path(3, "test-lab.gz"), test_lab, 3, true);
}

static idx_conf idx_defaults(void) {
    idx_conf c = { .train_images = tmp_path(0, "train-img"),
                   .train_labels = tmp_path(1, "train-lab"), .scale = 255.0 };
    return c;
}

/* ---------------------------------------------------------------- idx tests */

static void test_idx_raw_and_gz(void **state) {
    (void)state;
    write_idx_fixture();
    idx_conf c = idx_defaults();
    c.test_images = tmp_path(2, "test-img.gz");
    c.test_labels = tmp_path(3, "test-lab.gz");
    metrics m = { 0 };
    mp_host host = { .metric = capture_metric, .ud = &m };
    mp_ctx ctx = { .seed = 1, .host = &host };
    ctx.train = mp_dataset_new();      /* a previous dataset is replaced, not leaked */
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_idx, &c, &ctx, &err), MP_OK);

    mp_dataset *tr = ctx.train, *te = ctx.test;
    assert_non_null(te);
    assert_int_equal(tr->X.n_rows, 5);
    assert_int_equal(tr->X.n_cols, 6);
    assert_int_equal(te->X.n_rows, 3);
    assert_int_equal(tr->task, MP_TASK_CLASSIFICATION);
    for (size_t i = 0; i < 5; i++) {
        assert_float_equal(tr->y[i], train_lab[i], 0);
        for (size_t p = 0; p < 6; p++)
            assert_float_equal(MP_AT(&tr->X, i, p),
                               (float)((10.0 * (double)i + (double)p) / 255.0), 0);
    }
    for (size_t i = 0; i < 3; i++) {
        assert_float_equal(te->y[i], test_lab[i], 0);
        assert_float_equal(MP_AT(&te->X, i, 5), (float)((10.0 * (double)i + 5) / 255.0), 0);
    }
    assert_string_equal(tr->feature_names[0], "px0");
    assert_string_equal(te->feature_names[5], "px5");
    assert_string_equal(tr->target_name, "label");
    /* no class_names: labels 0..max are named by their decimal value */
    assert_int_equal(tr->n_classes, 3);
    assert_int_equal(te->n_classes, 3);
    assert_string_equal(tr->class_names[2], "2");
    assert_string_equal(te->class_names[0], "0");

    assert_float_equal(metric_of(&m, "data.rows"), 5, 0);
    assert_float_equal(metric_of(&m, "data.features"), 6, 0);
    assert_float_equal(metric_of(&m, "data.test_rows"), 3, 0);
    assert_string_equal(last_log, "idx: 5 train rows x 6 features, 3 test rows (3 classes)");
    free_ctx(&ctx);
}

static void test_idx_limit_scale_and_class_names(void **state) {
    (void)state;
    write_idx_fixture();
    /* gzipped training files too: gzread reads both kinds alike */
    write_images(tmp_path(4, "train-img.gz"), 5, true);
    write_labels(tmp_path(5, "train-lab.gz"), train_lab, 5, true);
    char *names[] = { "zero", "one", "two", "three" };
    idx_conf c = { .train_images = tmp_path(4, "train-img.gz"),
                   .train_labels = tmp_path(5, "train-lab.gz"), .scale = 2.0, .limit = 3,
                   .class_names = { names, 4 } };
    mp_ctx ctx = { .seed = 1 };
    ctx.test = mp_dataset_new();       /* a stale test set goes away with no test files */
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_idx, &c, &ctx, &err), MP_OK);
    assert_null(ctx.test);
    assert_int_equal(ctx.train->X.n_rows, 3);
    assert_float_equal(MP_AT(&ctx.train->X, 2, 1), 21.0 / 2.0, 0);
    assert_int_equal(ctx.train->n_classes, 4);
    assert_string_equal(ctx.train->class_names[3], "three");
    assert_string_equal(ctx.train->class_names[1], "one");
    free_ctx(&ctx);

    /* a limit beyond the file keeps every row */
    c.limit = 1000;
    assert_int_equal(run_stage(&mp_stage_load_idx, &c, &ctx, &err), MP_OK);
    assert_int_equal(ctx.train->X.n_rows, 5);
    free_ctx(&ctx);
}

/* Runs idx on c and checks the error code and that msg and where contain
 * the given texts (NULL = not checked). */
static void expect_idx_error(idx_conf *c, int code, const char *in_msg, const char *in_where) {
    mp_ctx ctx = { .seed = 1 };
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_idx, c, &ctx, &err), code);
    assert_null(ctx.train);
    assert_null(ctx.test);
    if (in_msg && !strstr(err.msg, in_msg)) fail_msg("message '%s' lacks '%s'", err.msg, in_msg);
    if (in_where && !strstr(err.where, in_where))
        fail_msg("where '%s' lacks '%s'", err.where, in_where);
}

static void test_idx_errors(void **state) {
    (void)state;
    write_idx_fixture();
    idx_conf c = idx_defaults();
    char *img = tmp_path(4, "bad-img"), *lab = tmp_path(5, "bad-lab");

    /* a label file given as the image file: wrong magic */
    c.train_images = tmp_path(1, "train-lab");
    expect_idx_error(&c, MP_E_PARSE, "magic 0x00000801, expected 0x00000803 (a label file?)",
                     "train-lab");
    c = idx_defaults();
    c.train_labels = tmp_path(0, "train-img");
    expect_idx_error(&c, MP_E_PARSE, "not an IDX label file", "train-img");

    /* header cut off after the magic */
    FILE *f = fopen(img, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite("\0\0\x08\x03\0\0", 1, 6, f), 6);
    fclose(f);
    c = idx_defaults();
    c.train_images = img;
    expect_idx_error(&c, MP_E_PARSE, "truncated IDX header (6 of 16 bytes)", "bad-img");

    /* pixel data cut off inside image 3 (raw), and a gzip stream cut short */
    unsigned char px[5 * 6] = { 0 };
    uint32_t dims[3] = { 5, 2, 3 };
    write_idx(img, 0x803, dims, 3, px, 3 * 6 + 2, false);
    expect_idx_error(&c, MP_E_PARSE, "image 3 is incomplete", "bad-img");
    write_images(img, 5, true);
    struct stat sb;
    assert_int_equal(stat(img, &sb), 0);
    assert_int_equal(truncate(img, sb.st_size / 2), 0);
    expect_idx_error(&c, MP_E_PARSE, "truncated", "bad-img");

    /* labels cut off */
    uint32_t ldims[1] = { 5 };
    c = idx_defaults();
    write_idx(lab, 0x801, ldims, 1, train_lab, 4, false);
    c.train_labels = lab;
    expect_idx_error(&c, MP_E_PARSE, "label of item 4 is missing", "bad-lab");

    /* 5 images, 4 labels */
    write_labels(lab, train_lab, 4, false);
    expect_idx_error(&c, MP_E_PARSE, "holds 5 images but", "bad-lab");

    /* label 2 at item 2 with only two class names */
    char *names[] = { "a", "b" };
    c = idx_defaults();
    c.class_names = (mp_str_list){ names, 2 };
    expect_idx_error(&c, MP_E_PARSE, "item 2: label 2 is out of range for 2 class names",
                     "train-lab");

    /* a missing file */
    c = idx_defaults();
    c.train_images = tmp_path(7, "no-such-file.gz");
    expect_idx_error(&c, MP_E_IO, "No such file", "no-such-file.gz");

    /* corrupt gzip data (a valid header, then garbage) */
    write_images(img, 5, true);
    f = fopen(img, "r+b");
    assert_non_null(f);
    fseek(f, 10, SEEK_SET);    /* the first deflate block header: BTYPE 11 is invalid */
    assert_int_equal(fwrite("\xff\xff\xff\xff\xff\xff", 1, 6, f), 6);
    fclose(f);
    c.train_images = img;
    expect_idx_error(&c, MP_E_PARSE, NULL, "bad-img");

    /* one test file without the other: a config error from the check hook */
    c = idx_defaults();
    c.test_images = tmp_path(2, "test-img.gz");
    mp_err err = { 0 };
    assert_int_equal(mp_stage_load_idx.check(&c, &err), MP_E_CONFIG);
    assert_non_null(strstr(err.msg, "test_labels"));
    expect_idx_error(&c, MP_E_CONFIG, "test_labels", NULL);
    c = idx_defaults();
    c.test_labels = tmp_path(3, "test-lab.gz");
    expect_idx_error(&c, MP_E_CONFIG, "test_images", NULL);
}

static void test_idx_alloc_failures(void **state) {
    (void)state;
    write_idx_fixture();
    for (long n = 1;; n++) {
        idx_conf c = idx_defaults();
        c.test_images = tmp_path(2, "test-img.gz");
        c.test_labels = tmp_path(3, "test-lab.gz");
        mp_ctx ctx = { .seed = 1 };
        mp_err err = { 0 };
        mp_mem_fail_after(n);
        int rc = run_stage(&mp_stage_load_idx, &c, &ctx, &err);
        mp_mem_fail_after(0);
        free_ctx(&ctx);
        if (rc == MP_OK) break;
        assert_int_equal(rc, MP_E_NOMEM);
        assert_true(n < 1000);
    }
}

static void test_idx_cancelled(void **state) {
    (void)state;
    write_idx_fixture();
    idx_conf c = idx_defaults();
    mp_ctx ctx = { .seed = 1 };
    mp_err err = { 0 };
    mp_cancel_signal = 2;
    int rc = run_stage(&mp_stage_load_idx, &c, &ctx, &err);
    mp_cancel_signal = 0;
    assert_int_equal(rc, MP_E_CANCELLED);
    assert_null(ctx.train);
}

static void test_idx_fashion_mnist_slice(void **state) {
    (void)state;
    struct stat sb;
    if (stat(FASHION_DIR "/train-images-idx3-ubyte.gz", &sb) != 0) skip();
    char *names[] = { "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot" };
    idx_conf c = { .train_images = FASHION_DIR "/train-images-idx3-ubyte.gz",
                   .train_labels = FASHION_DIR "/train-labels-idx1-ubyte.gz",
                   .test_images = FASHION_DIR "/t10k-images-idx3-ubyte.gz",
                   .test_labels = FASHION_DIR "/t10k-labels-idx1-ubyte.gz",
                   .scale = 255.0, .limit = 1000, .test_limit = 200,
                   .class_names = { names, 10 } };
    mp_ctx ctx = { .seed = 1 };
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_idx, &c, &ctx, &err), MP_OK);
    assert_int_equal(ctx.train->X.n_rows, 1000);
    assert_int_equal(ctx.train->X.n_cols, 784);
    assert_int_equal(ctx.test->X.n_rows, 200);
    assert_int_equal(ctx.test->X.n_cols, 784);
    assert_int_equal(ctx.train->n_classes, 10);
    assert_string_equal(ctx.train->class_names[9], "Ankle boot");
    assert_string_equal(ctx.train->feature_names[783], "px783");
    /* every label in range and every class present; pixels in [0, 1] */
    int seen[10] = { 0 };
    for (mp_dataset *d = ctx.train; d; d = d == ctx.train ? ctx.test : NULL) {
        float lo = 1, hi = 0;
        for (size_t i = 0; i < d->X.n_rows; i++) {
            assert_true(d->y[i] >= 0 && d->y[i] < 10 && d->y[i] == floor(d->y[i]));
            if (d == ctx.train) seen[(int)d->y[i]]++;
        }
        for (size_t i = 0; i < d->X.n_rows * d->X.n_cols; i++) {
            if (d->X.data[i] < lo) lo = d->X.data[i];
            if (d->X.data[i] > hi) hi = d->X.data[i];
        }
        assert_float_equal(lo, 0.0, 0);
        assert_float_equal(hi, 1.0, 0);     /* Fashion-MNIST uses the full byte range */
    }
    for (int k = 0; k < 10; k++) assert_true(seen[k] > 50);
    /* the first training image of Fashion-MNIST is an ankle boot (label 9) */
    assert_float_equal(ctx.train->y[0], 9, 0);
    free_ctx(&ctx);
}

/* ---------------------------------------------------------------- synthetic */

static synth_conf synth_defaults(int kind) {
    synth_conf c = { .kind = kind, .n_samples = 1000, .n_features = 20, .n_classes = 2,
                     .noise = -1, .n_informative = 0, .test_size = 0 };
    return c;
}

static mp_dataset *synth(synth_conf *c, uint64_t seed, mp_dataset **test) {
    mp_ctx ctx = { .seed = seed, .stage_index = 0 };
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_synthetic, c, &ctx, &err), MP_OK);
    if (test) *test = ctx.test;
    else mp_dataset_free(ctx.test);
    return ctx.train;
}

static bool same_data(const mp_dataset *a, const mp_dataset *b) {
    return a->X.n_rows == b->X.n_rows && a->X.n_cols == b->X.n_cols &&
           memcmp(a->X.data, b->X.data, a->X.n_rows * a->X.n_cols * sizeof(float)) == 0 &&
           memcmp(a->y, b->y, a->X.n_rows * sizeof(double)) == 0;
}

static void test_synthetic_deterministic(void **state) {
    (void)state;
    for (int kind = CLASSIFICATION; kind <= REGRESSION; kind++) {
        synth_conf c = synth_defaults(kind);
        c.n_samples = 300;
        mp_dataset *a = synth(&c, 42, NULL), *b = synth(&c, 42, NULL), *d = synth(&c, 43, NULL);
        assert_true(same_data(a, b));
        assert_false(same_data(a, d));
        /* test_size only moves the tail rows into the test set */
        mp_dataset *te = NULL;
        c.test_size = 0.1;
        mp_dataset *s = synth(&c, 42, &te);
        assert_int_equal(s->X.n_rows, 270);
        assert_int_equal(te->X.n_rows, 30);
        assert_memory_equal(s->X.data, a->X.data, 270 * 20 * sizeof(float));
        assert_memory_equal(te->X.data, a->X.data + 270 * 20, 30 * 20 * sizeof(float));
        assert_memory_equal(te->y, a->y + 270, 30 * sizeof(double));
        mp_dataset_free(a);
        mp_dataset_free(b);
        mp_dataset_free(d);
        mp_dataset_free(s);
        mp_dataset_free(te);
    }
}

static void test_synthetic_classification(void **state) {
    (void)state;
    synth_conf c = synth_defaults(CLASSIFICATION);
    c.n_samples = 3000;
    c.n_classes = 3;
    c.n_features = 8;
    c.n_informative = 4;
    c.noise = 0;
    c.test_size = 0.2;
    metrics m = { 0 };
    mp_host host = { .metric = capture_metric, .ud = &m };
    mp_ctx ctx = { .seed = 7, .host = &host };
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_synthetic, &c, &ctx, &err), MP_OK);
    mp_dataset *tr = ctx.train, *te = ctx.test;
    assert_int_equal(tr->X.n_rows, 2400);
    assert_int_equal(te->X.n_rows, 600);
    assert_int_equal(tr->X.n_cols, 8);
    assert_int_equal(tr->task, MP_TASK_CLASSIFICATION);
    assert_int_equal(tr->n_classes, 3);
    assert_string_equal(te->class_names[2], "2");
    assert_string_equal(tr->feature_names[7], "x7");
    assert_string_equal(tr->target_name, "y");
    assert_float_equal(metric_of(&m, "data.rows"), 2400, 0);
    assert_float_equal(metric_of(&m, "data.test_rows"), 600, 0);
    assert_string_equal(last_log,
                        "synthetic: classification, 2400 train rows x 8 features, 600 test rows "
                        "(3 classes, noise 0)");

    /* noise 0: exactly balanced over all rows; roughly in each part */
    size_t count[3] = { 0 }, count_te[3] = { 0 };
    double mean[3][8] = { { 0 } };
    for (mp_dataset *d = tr; d; d = d == tr ? te : NULL)
        for (size_t i = 0; i < d->X.n_rows; i++) {
            int k = (int)d->y[i];
            count[k]++;
            if (d == te) count_te[k]++;
            for (size_t j = 0; j < 8; j++) mean[k][j] += MP_AT(&d->X, i, j);
        }
    for (int k = 0; k < 3; k++) {
        assert_int_equal(count[k], 1000);
        assert_true(count_te[k] > 150 && count_te[k] < 250);
        /* informative columns sit at +-1 (a hypercube vertex), the rest at 0 */
        for (size_t j = 0; j < 8; j++) {
            double mu = mean[k][j] / 1000.0;
            if (j < 4) assert_true(fabs(fabs(mu) - 1.0) < 0.15);
            else assert_true(fabs(mu) < 0.15);
        }
    }
    /* the class centroids are distinct vertices */
    for (int a = 0; a < 3; a++)
        for (int b = a + 1; b < 3; b++) {
            bool differ = false;
            for (size_t j = 0; j < 4; j++) differ |= (mean[a][j] > 0) != (mean[b][j] > 0);
            assert_true(differ);
        }
    free_ctx(&ctx);

    /* the default noise flips about 1% of labels to a random class */
    synth_conf c2 = c;
    c2.noise = -1;
    c2.test_size = 0;
    mp_dataset *a = synth(&c, 7, NULL), *b = synth(&c2, 7, NULL);
    assert_memory_equal(a->X.data, b->X.data, a->X.n_rows * 8 * sizeof(float));
    size_t flipped = 0;
    for (size_t i = 0; i < 2400; i++) flipped += a->y[i] != b->y[i];
    /* 1% replaced, 2/3 of those land on another class: ~16 of 2400 */
    assert_true(flipped > 3 && flipped < 40);
    mp_dataset_free(a);
    mp_dataset_free(b);
}

static void test_synthetic_blobs(void **state) {
    (void)state;
    synth_conf c = synth_defaults(BLOBS);
    c.n_samples = 4000;
    c.n_classes = 4;
    c.n_features = 3;
    c.noise = 0.5;
    mp_dataset *d = synth(&c, 11, NULL);
    assert_int_equal(d->n_classes, 4);
    /* per blob: center in [-10, 10], spread = noise */
    double s[4][3] = { { 0 } }, s2[4][3] = { { 0 } };
    size_t n[4] = { 0 };
    for (size_t i = 0; i < 4000; i++) {
        int k = (int)d->y[i];
        n[k]++;
        for (size_t j = 0; j < 3; j++) {
            double v = MP_AT(&d->X, i, j);
            s[k][j] += v;
            s2[k][j] += v * v;
        }
    }
    for (int k = 0; k < 4; k++) {
        assert_int_equal(n[k], 1000);
        for (size_t j = 0; j < 3; j++) {
            double mu = s[k][j] / 1000.0, sd = sqrt(s2[k][j] / 1000.0 - mu * mu);
            assert_true(mu > -10.1 && mu < 10.1);
            assert_true(fabs(sd - 0.5) < 0.05);
        }
    }
    mp_dataset_free(d);
}

static double corr(const double *a, const double *b, size_t n) {
    double ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
    for (size_t i = 0; i < n; i++) {
        ma += a[i];
        mb += b[i];
    }
    ma /= (double)n;
    mb /= (double)n;
    for (size_t i = 0; i < n; i++) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return sab / sqrt(saa * sbb);
}

static void test_synthetic_regression(void **state) {
    (void)state;
    synth_conf c = synth_defaults(REGRESSION);
    c.n_samples = 2000;
    c.n_features = 6;
    c.n_informative = 3;
    c.noise = 0;
    mp_dataset *d0 = synth(&c, 5, NULL);
    c.noise = 2.0;
    mp_dataset *d2 = synth(&c, 5, NULL);
    assert_int_equal(d0->task, MP_TASK_REGRESSION);
    assert_null(d0->class_names);
    assert_string_equal(d0->target_name, "y");
    /* noise changes only the target, by N(0, noise^2) */
    assert_memory_equal(d0->X.data, d2->X.data, 2000 * 6 * sizeof(float));
    double diff = 0, diff2 = 0;
    for (size_t i = 0; i < 2000; i++) {
        double e = d2->y[i] - d0->y[i];
        diff += e;
        diff2 += e * e;
    }
    double sd = sqrt(diff2 / 2000 - (diff / 2000) * (diff / 2000));
    assert_true(fabs(sd - 2.0) < 0.15);
    /* the target follows the informative columns (positive weights), not the others */
    double *col = malloc(2000 * sizeof *col), *sum = calloc(2000, sizeof *sum);
    assert_non_null(col);
    assert_non_null(sum);
    for (size_t i = 0; i < 2000; i++)
        for (size_t j = 0; j < 3; j++) sum[i] += MP_AT(&d0->X, i, j);
    assert_true(corr(sum, d0->y, 2000) > 0.5);
    for (size_t j = 3; j < 6; j++) {
        for (size_t i = 0; i < 2000; i++) col[i] = MP_AT(&d0->X, i, j);
        assert_true(fabs(corr(col, d0->y, 2000)) < 0.1);
    }
    free(col);
    free(sum);
    mp_dataset_free(d0);
    mp_dataset_free(d2);
}

static void test_synthetic_check(void **state) {
    (void)state;
    mp_err err = { 0 };
    synth_conf c = synth_defaults(BLOBS);
    assert_int_equal(mp_stage_load_synthetic.check(&c, &err), MP_OK);
    c.noise = -0.5;
    assert_int_equal(mp_stage_load_synthetic.check(&c, &err), MP_E_CONFIG);
    c = synth_defaults(CLASSIFICATION);
    c.noise = 1.5;
    err = (mp_err){ 0 };
    assert_int_equal(mp_stage_load_synthetic.check(&c, &err), MP_E_CONFIG);
    c = synth_defaults(CLASSIFICATION);
    c.n_informative = 21;
    err = (mp_err){ 0 };
    assert_int_equal(mp_stage_load_synthetic.check(&c, &err), MP_E_CONFIG);
    c = synth_defaults(CLASSIFICATION);
    c.n_informative = 2;
    c.n_classes = 5;       /* 5 classes need 3 dims: 4 vertices are not enough */
    err = (mp_err){ 0 };
    assert_int_equal(mp_stage_load_synthetic.check(&c, &err), MP_E_CONFIG);
    assert_non_null(strstr(err.msg, "at least 3 informative"));
    c.n_classes = 4;       /* exactly all 4 vertices */
    err = (mp_err){ 0 };
    assert_int_equal(mp_stage_load_synthetic.check(&c, &err), MP_OK);
    mp_dataset_free(synth(&c, 1, NULL));
    /* one row cannot also give a test row */
    c = synth_defaults(REGRESSION);
    c.n_samples = 1;
    c.test_size = 0.5;
    mp_ctx ctx = { .seed = 1 };
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&mp_stage_load_synthetic, &c, &ctx, &err), MP_E_DATA);
    assert_null(ctx.train);
}

static void test_synthetic_alloc_failures(void **state) {
    (void)state;
    for (int kind = CLASSIFICATION; kind <= REGRESSION; kind++) {
        for (long n = 1;; n++) {
            synth_conf c = synth_defaults(kind);
            c.n_samples = 50;
            c.n_features = 4;
            c.test_size = 0.2;
            mp_ctx ctx = { .seed = 1 };
            mp_err err = { 0 };
            mp_mem_fail_after(n);
            int rc = run_stage(&mp_stage_load_synthetic, &c, &ctx, &err);
            mp_mem_fail_after(0);
            free_ctx(&ctx);
            if (rc == MP_OK) break;
            assert_int_equal(rc, MP_E_NOMEM);
            assert_true(n < 1000);
        }
    }
}

static void test_synthetic_cancelled(void **state) {
    (void)state;
    synth_conf c = synth_defaults(CLASSIFICATION);
    mp_ctx ctx = { .seed = 1 };
    mp_err err = { 0 };
    mp_cancel_signal = 15;
    int rc = run_stage(&mp_stage_load_synthetic, &c, &ctx, &err);
    mp_cancel_signal = 0;
    assert_int_equal(rc, MP_E_CANCELLED);
    assert_null(ctx.train);
}

/* ---------------------------------------------------------------- sqlite */

static void make_db(const char *path, const char *sql) {
    unlink(path);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) fail_msg("fixture SQL: %s", msg);
    sqlite3_close(db);
}

/* Six flowers: numeric REAL/INTEGER columns, numeric TEXT, a text class, a
 * numeric target, an id to exclude; row 4 has a NULL, row 5 a bad cell
 * (both only in the columns named in the test that wants them). */
static const char *flowers_sql =
    "CREATE TABLE flowers (id INTEGER PRIMARY KEY, sepal REAL, petals INTEGER, width TEXT,"
    " species TEXT, height REAL, note TEXT);"
    "INSERT INTO flowers VALUES (1, 5.1, 3, '0.2', 'setosa', 10.5, 'x');"
    "INSERT INTO flowers VALUES (2, 7.0, 4, ' 1.4 ', 'versicolor', 20, 'y');"
    "INSERT INTO flowers VALUES (3, 6.3, 5, '2.5e0', 'virginica', 30.25, 'z');"
    "INSERT INTO flowers VALUES (4, NULL, 3, '0.3', 'setosa', 11, 'w');"
    "INSERT INTO flowers VALUES (5, 6.0, 4, 'abc', 'versicolor', 19, 'v');"
    "INSERT INTO flowers VALUES (6, 5.0, 3, '0.1', 'Setosa', 9, 'u');";

static sqlite_conf sqlite_defaults(const char *query, const char *target) {
    sqlite_conf c = { .path = tmp_path(6, "flowers.db"), .query = (char *)query,
                      .target = (char *)target, .missing = MISSING_ERROR };
    return c;
}

static void test_sqlite_text_target(void **state) {
    (void)state;
    make_db(tmp_path(6, "flowers.db"), flowers_sql);
    /* id is excluded, the bad cell and the NULL are outside the columns */
    char *excl[] = { "id" };
    sqlite_conf c = sqlite_defaults("SELECT id, petals, width, species FROM flowers WHERE id <> 5 "
                                    "ORDER BY id", "species");
    c.exclude = (mp_str_list){ excl, 1 };
    metrics m = { 0 };
    mp_host host = { .metric = capture_metric, .ud = &m };
    mp_ctx ctx = { .seed = 1, .host = &host };
    ctx.test = mp_dataset_new();        /* replaced: a loader's data has no test split */
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_sqlite, &c, &ctx, &err), MP_OK);
    mp_dataset *d = ctx.train;
    assert_null(ctx.test);
    assert_int_equal(d->X.n_rows, 5);
    assert_int_equal(d->X.n_cols, 2);
    assert_string_equal(d->feature_names[0], "petals");
    assert_string_equal(d->feature_names[1], "width");
    assert_string_equal(d->target_name, "species");
    assert_int_equal(d->task, MP_TASK_CLASSIFICATION);
    /* classes sorted by strcmp: upper case first */
    assert_int_equal(d->n_classes, 4);
    assert_string_equal(d->class_names[0], "Setosa");
    assert_string_equal(d->class_names[1], "setosa");
    assert_string_equal(d->class_names[3], "virginica");
    double want_y[5] = { 1, 2, 3, 1, 0 };
    float want_w[5] = { 0.2f, 1.4f, 2.5f, 0.3f, 0.1f };
    for (size_t i = 0; i < 5; i++) {
        assert_float_equal(d->y[i], want_y[i], 0);
        assert_float_equal(MP_AT(&d->X, i, 1), want_w[i], 0);
    }
    assert_float_equal(MP_AT(&d->X, 2, 0), 5, 0);
    assert_int_equal(d->source_rows[4], 5);
    assert_float_equal(metric_of(&m, "data.rows"), 5, 0);
    assert_float_equal(metric_of(&m, "data.features"), 2, 0);
    free_ctx(&ctx);
}

static void test_sqlite_numeric_target_and_drop(void **state) {
    (void)state;
    make_db(tmp_path(6, "flowers.db"), flowers_sql);
    sqlite_conf c = sqlite_defaults("SELECT sepal, petals, height FROM flowers ORDER BY id",
                                    "height");
    c.missing = MISSING_DROP;
    mp_ctx ctx = { .seed = 1 };
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_sqlite, &c, &ctx, &err), MP_OK);
    mp_dataset *d = ctx.train;
    assert_int_equal(d->task, MP_TASK_REGRESSION);
    assert_null(d->class_names);
    assert_int_equal(d->X.n_rows, 5);       /* row 4 (sepal NULL) dropped */
    double want_y[5] = { 10.5, 20, 30.25, 19, 9 };
    size_t want_src[5] = { 1, 2, 3, 5, 6 };
    for (size_t i = 0; i < 5; i++) {
        assert_float_equal(d->y[i], want_y[i], 0);
        assert_int_equal(d->source_rows[i], want_src[i]);
    }
    assert_float_equal(MP_AT(&d->X, 3, 0), 6.0, 0);
    free_ctx(&ctx);

    /* no target: every column is a feature, y stays NULL */
    c = sqlite_defaults("SELECT sepal, petals FROM flowers WHERE sepal IS NOT NULL", NULL);
    assert_int_equal(run_stage(&mp_stage_load_sqlite, &c, &ctx, &err), MP_OK);
    assert_null(ctx.train->y);
    assert_null(ctx.train->target_name);
    assert_int_equal(ctx.train->X.n_cols, 2);
    free_ctx(&ctx);
}

static void expect_sqlite_error(sqlite_conf *c, int code, const char *msg, const char *where) {
    mp_ctx ctx = { .seed = 1 };
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_sqlite, c, &ctx, &err), code);
    assert_null(ctx.train);
    if (msg && !strstr(err.msg, msg)) fail_msg("message '%s' lacks '%s'", err.msg, msg);
    if (where && strcmp(err.where, where) != 0)
        fail_msg("where '%s' is not '%s'", err.where, where);
}

static void test_sqlite_errors(void **state) {
    (void)state;
    char *db = tmp_path(6, "flowers.db");
    make_db(db, flowers_sql);
    char where[400];

    /* NULL with missing: error names the row and column */
    sqlite_conf c = sqlite_defaults("SELECT sepal, species FROM flowers ORDER BY id", "species");
    snprintf(where, sizeof where, "%s: query row 4", db);
    expect_sqlite_error(&c, MP_E_PARSE, "row 4, column 'sepal': missing value (NULL)", where);

    /* a NULL target is missing too */
    c = sqlite_defaults("SELECT petals, NULLIF(species, 'virginica') AS s FROM flowers ORDER BY id",
                        "s");
    snprintf(where, sizeof where, "%s: query row 3", db);
    expect_sqlite_error(&c, MP_E_PARSE, "row 3, column 's': missing value", where);

    /* non-numeric text in a feature column (exact message) */
    c = sqlite_defaults("SELECT petals, width FROM flowers ORDER BY id", NULL);
    snprintf(where, sizeof where, "%s: query row 5", db);
    mp_ctx ctx = { .seed = 1 };
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_sqlite, &c, &ctx, &err), MP_E_PARSE);
    assert_string_equal(err.msg, "row 5, column 'width': non-numeric value 'abc'");
    assert_string_equal(err.where, where);

    /* a text column as a feature: the first row already fails */
    c = sqlite_defaults("SELECT petals, note FROM flowers ORDER BY id", NULL);
    snprintf(where, sizeof where, "%s: query row 1", db);
    expect_sqlite_error(&c, MP_E_PARSE, "column 'note': non-numeric value 'x'", where);

    /* bad SQL, more than one statement, no rows: MP_E_DATA at the path */
    c = sqlite_defaults("SELEC * FROM flowers", NULL);
    expect_sqlite_error(&c, MP_E_DATA, "syntax error", db);
    c = sqlite_defaults("SELECT * FROM no_such_table", NULL);
    expect_sqlite_error(&c, MP_E_DATA, "no such table", db);
    c = sqlite_defaults("SELECT petals FROM flowers; SELECT sepal FROM flowers", NULL);
    expect_sqlite_error(&c, MP_E_DATA, "more than one", db);
    c = sqlite_defaults("SELECT petals FROM flowers; -- a trailing comment is fine", NULL);
    err = (mp_err){ 0 };
    assert_int_equal(run_stage(&mp_stage_load_sqlite, &c, &ctx, &err), MP_OK);
    free_ctx(&ctx);
    c = sqlite_defaults("SELECT petals FROM flowers WHERE id > 100", NULL);
    expect_sqlite_error(&c, MP_E_DATA, "no rows", db);
    c = sqlite_defaults("DELETE FROM flowers", NULL);
    expect_sqlite_error(&c, MP_E_DATA, NULL, db);

    /* unknown target / exclude names; nothing left to be a feature */
    c = sqlite_defaults("SELECT petals FROM flowers", "species");
    expect_sqlite_error(&c, MP_E_DATA, "target column 'species' is not in the query result", db);
    char *excl[] = { "petal" };
    c = sqlite_defaults("SELECT petals, species FROM flowers", "species");
    c.exclude = (mp_str_list){ excl, 1 };
    expect_sqlite_error(&c, MP_E_DATA, "excluded column 'petal'", db);
    c = sqlite_defaults("SELECT species FROM flowers", "species");
    expect_sqlite_error(&c, MP_E_DATA, "no feature columns", db);

    /* a missing database file is an I/O error naming it (and is not created) */
    char *missing = tmp_path(7, "missing.db");
    c = sqlite_defaults("SELECT 1", NULL);
    c.path = missing;
    expect_sqlite_error(&c, MP_E_IO, "missing.db", missing);
    struct stat sb;
    assert_int_not_equal(stat(missing, &sb), 0);
}

static void test_sqlite_alloc_failures(void **state) {
    (void)state;
    make_db(tmp_path(6, "flowers.db"), flowers_sql);
    /* a text target and a drop, so class encoding and the drop path run too */
    for (long n = 1;; n++) {
        sqlite_conf c = sqlite_defaults("SELECT sepal, petals, species FROM flowers", "species");
        c.missing = MISSING_DROP;
        mp_ctx ctx = { .seed = 1 };
        mp_err err = { 0 };
        mp_mem_fail_after(n);
        int rc = run_stage(&mp_stage_load_sqlite, &c, &ctx, &err);
        mp_mem_fail_after(0);
        free_ctx(&ctx);
        if (rc == MP_OK) break;
        assert_int_equal(rc, MP_E_NOMEM);
        assert_true(n < 1000);
    }
}

static void test_sqlite_many_rows(void **state) {
    (void)state;
    /* enough rows to grow the buffers several times and pass a cancel check */
    char *db = tmp_path(6, "big.db");
    make_db(db, "CREATE TABLE t (a REAL, b INTEGER, k TEXT);"
                "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 24999)"
                " INSERT INTO t SELECT i * 0.5, i % 7, CASE i % 3 WHEN 0 THEN 'c' WHEN 1 THEN 'a'"
                " ELSE 'b' END FROM n;");
    sqlite_conf c = { .path = db, .query = "SELECT * FROM t", .target = "k" };
    mp_ctx ctx = { .seed = 1 };
    mp_err err = { 0 };
    assert_int_equal(run_stage(&mp_stage_load_sqlite, &c, &ctx, &err), MP_OK);
    mp_dataset *d = ctx.train;
    assert_int_equal(d->X.n_rows, 25000);
    assert_int_equal(d->n_classes, 3);
    assert_float_equal(MP_AT(&d->X, 24999, 0), 12499.5, 0);
    assert_float_equal(MP_AT(&d->X, 24999, 1), (24999 % 7), 0);
    assert_float_equal(d->y[0], 2, 0);      /* 'c' */
    assert_float_equal(d->y[1], 0, 0);      /* 'a' */
    free_ctx(&ctx);

    mp_cancel_signal = 2;
    int rc = run_stage(&mp_stage_load_sqlite, &c, &ctx, &err);
    mp_cancel_signal = 0;
    assert_int_equal(rc, MP_E_CANCELLED);
    assert_null(ctx.train);
}

/* ---------------------------------------------------------------- tables */

typedef struct { const char *name; size_t offset; } field;

/* Every parameter of ops is in want[] at the same offset, and vice versa;
 * every parameter and the stage carry a doc string. */
static void check_table(const mp_stage_ops *ops, const field *want, size_t n, size_t conf_size) {
    size_t seen = 0;
    assert_non_null(ops->doc);
    assert_int_equal(ops->abi, MP_STAGE_ABI);
    assert_int_equal(ops->kind, MP_KIND_LOAD);
    assert_int_equal(ops->conf_size, conf_size);
    for (const mp_param *p = ops->params; p->name; p++) {
        size_t i = 0;
        while (i < n && strcmp(want[i].name, p->name) != 0) i++;
        if (i == n) fail_msg("%s: parameter '%s' not in the test's mirror", ops->name, p->name);
        assert_int_equal(p->offset, want[i].offset);
        assert_non_null(p->doc);
        seen++;
    }
    assert_int_equal(seen, n);
}

#define F(type, f) { #f, offsetof(type, f) }

static void test_param_tables_match_confs(void **state) {
    (void)state;
    static const field idx[] = { F(idx_conf, train_images), F(idx_conf, train_labels),
                                 F(idx_conf, test_images), F(idx_conf, test_labels),
                                 F(idx_conf, scale), F(idx_conf, limit), F(idx_conf, test_limit),
                                 F(idx_conf, class_names) };
    static const field syn[] = { F(synth_conf, kind), F(synth_conf, n_samples),
                                 F(synth_conf, n_features), F(synth_conf, n_classes),
                                 F(synth_conf, noise), F(synth_conf, n_informative),
                                 F(synth_conf, test_size) };
    static const field sql[] = { F(sqlite_conf, path), F(sqlite_conf, query),
                                 F(sqlite_conf, target), F(sqlite_conf, exclude),
                                 F(sqlite_conf, missing) };
    check_table(&mp_stage_load_idx, idx, 8, sizeof(idx_conf));
    check_table(&mp_stage_load_synthetic, syn, 7, sizeof(synth_conf));
    check_table(&mp_stage_load_sqlite, sql, 5, sizeof(sqlite_conf));
    assert_string_equal(mp_stage_load_idx.name, "idx");
    assert_string_equal(mp_stage_load_synthetic.name, "synthetic");
    assert_string_equal(mp_stage_load_sqlite.name, "sqlite");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param_tables_match_confs),
        cmocka_unit_test(test_idx_raw_and_gz),
        cmocka_unit_test(test_idx_limit_scale_and_class_names),
        cmocka_unit_test(test_idx_errors),
        cmocka_unit_test(test_idx_alloc_failures),
        cmocka_unit_test(test_idx_cancelled),
        cmocka_unit_test(test_idx_fashion_mnist_slice),
        cmocka_unit_test(test_synthetic_deterministic),
        cmocka_unit_test(test_synthetic_classification),
        cmocka_unit_test(test_synthetic_blobs),
        cmocka_unit_test(test_synthetic_regression),
        cmocka_unit_test(test_synthetic_check),
        cmocka_unit_test(test_synthetic_alloc_failures),
        cmocka_unit_test(test_synthetic_cancelled),
        cmocka_unit_test(test_sqlite_text_target),
        cmocka_unit_test(test_sqlite_numeric_target_and_drop),
        cmocka_unit_test(test_sqlite_errors),
        cmocka_unit_test(test_sqlite_alloc_failures),
        cmocka_unit_test(test_sqlite_many_rows),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
