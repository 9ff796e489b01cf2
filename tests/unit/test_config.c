/*
 * test_config.c -- unit tests of runner/config.c and runner/param.c.
 *
 * The built-in stages are written in parallel with this module, so the tests
 * register their own small stages (testload, testsplit, testscale, testtrain,
 * testeval, testexport) with mp_registry_add() and check the config module
 * against those tables: parsing with places, ${VAR}, --set, resolve with
 * every kind of parameter error, stage order, the flattened params, and an
 * allocation-failure loop.  Every error test asserts the exact where
 * ("p.yaml:LINE:COL") because pointing at the right spot is the feature.
 *
 * In unit builds mp_malloc is cmocka's test_malloc, so each test also fails
 * if anything leaks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* cmocka last: with UNIT_TESTING it redefines malloc and friends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "config.h"
#include "registry.h"

/* ---------------------------------------------------------------- test stages */

static int dummy_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    (void)st, (void)ctx, (void)err;
    return MP_OK;
}

typedef struct load_conf {
    char *path;
    char *target;
} load_conf;

static const mp_param load_params[] = {
    { "path", MP_P_STRING, offsetof(load_conf, path), NULL, MP_PF_REQUIRED, 0, 0, NULL, "file" },
    { "target", MP_P_STRING, offsetof(load_conf, target), NULL, 0, 0, 0, NULL, "label column" },
    { 0 }
};

static const mp_stage_ops test_load = {
    .abi = MP_STAGE_ABI, .name = "testload", .kind = MP_KIND_LOAD, .params = load_params,
    .conf_size = sizeof(load_conf), .run = dummy_run,
};

typedef struct split_conf {
    double test_size;
    bool   stratify;
} split_conf;

static const mp_param split_params[] = {
    { "test_size", MP_P_DOUBLE, offsetof(split_conf, test_size), "0.2", MP_PF_RANGE, 0, 1, NULL,
      "test fraction" },
    { "stratify", MP_P_BOOL, offsetof(split_conf, stratify), "false", 0, 0, 0, NULL, "" },
    { 0 }
};

static const mp_stage_ops test_split = {
    .abi = MP_STAGE_ABI, .name = "testsplit", .kind = MP_KIND_SPLIT, .params = split_params,
    .conf_size = sizeof(split_conf), .run = dummy_run,
};

typedef struct scale_conf {
    bool with_mean;
} scale_conf;

static const mp_param scale_params[] = {
    { "with_mean", MP_P_BOOL, offsetof(scale_conf, with_mean), "true", 0, 0, 0, NULL, "" },
    { 0 }
};

static int t_apply(const void *state, mp_matrix *X, mp_err *err) {
    (void)state, (void)X, (void)err;
    return MP_OK;
}
static int t_save(const void *state, mp_art_writer *w, const char *prefix, mp_err *err) {
    (void)state, (void)w, (void)prefix, (void)err;
    return MP_OK;
}
static int t_load(mp_art_reader *r, const char *prefix, size_t n_cols, void **state, mp_err *err) {
    (void)r, (void)prefix, (void)n_cols, (void)state, (void)err;
    return MP_OK;
}
static const mp_transform_ops scale_transform = {
    .name = "testscale", .apply = t_apply, .save = t_save, .load = t_load,
};

static const mp_stage_ops test_scale = {
    .abi = MP_STAGE_ABI, .name = "testscale", .kind = MP_KIND_TRANSFORM, .params = scale_params,
    .conf_size = sizeof(scale_conf), .run = dummy_run, .transform = &scale_transform,
};

typedef struct train_conf {
    double      learning_rate;
    int         epochs;
    int         optimizer;
    bool        shuffle;
    mp_int_list hidden;
    mp_str_list metrics;
    char       *label;
    int         patience;
} train_conf;

static const mp_param train_params[] = {
    { "learning_rate", MP_P_DOUBLE, offsetof(train_conf, learning_rate), "0.1",
      MP_PF_RANGE | MP_PF_MIN_OPEN, 0, HUGE_VAL, NULL, "step size" },
    { "epochs", MP_P_INT, offsetof(train_conf, epochs), "100", MP_PF_RANGE, 1, HUGE_VAL, NULL, "" },
    { "optimizer", MP_P_ENUM, offsetof(train_conf, optimizer), "adam", 0, 0, 0,
      "sgd|momentum|adam", "" },
    { "shuffle", MP_P_BOOL, offsetof(train_conf, shuffle), "true", 0, 0, 0, NULL, "" },
    { "hidden", MP_P_INT_LIST, offsetof(train_conf, hidden), "[64, 32]", MP_PF_RANGE, 1, HUGE_VAL,
      NULL, "" },
    { "metrics", MP_P_STR_LIST, offsetof(train_conf, metrics), "[accuracy, f1_macro]", 0, 0, 0,
      "accuracy|f1_macro|log_loss", "" },
    { "label", MP_P_STRING, offsetof(train_conf, label), NULL, 0, 0, 0, NULL, "" },
    { "patience", MP_P_INT, offsetof(train_conf, patience), "0", 0, 0, 0, NULL, "" },
    { 0 }
};

/* A cross-parameter rule, to test that check() runs and its error gets the
 * stage's place. */
static int train_check(const void *conf, mp_err *err) {
    const train_conf *c = conf;
    if (c->patience >= c->epochs)
        return MP_ERR(err, MP_E_CONFIG, "patience (%d) must be smaller than epochs (%d)",
                      c->patience, c->epochs);
    return MP_OK;
}

static int n_closed; /* counts close() calls made by mp_stages_free */
static void train_close(mp_stage *st) {
    (void)st;
    n_closed++;
}

static int m_predict(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err) {
    (void)m, (void)X, (void)out, (void)err;
    return MP_OK;
}
static int m_save(const mp_model *m, mp_art_writer *w, const char *prefix, mp_err *err) {
    (void)m, (void)w, (void)prefix, (void)err;
    return MP_OK;
}
static int m_load(mp_model *m, mp_art_reader *r, const char *prefix, mp_err *err) {
    (void)m, (void)r, (void)prefix, (void)err;
    return MP_OK;
}
static const mp_model_ops train_model = {
    .name = "testtrain", .predict = m_predict, .save = m_save, .load = m_load,
};

static const mp_stage_ops test_train = {
    .abi = MP_STAGE_ABI, .name = "testtrain", .kind = MP_KIND_TRAIN, .params = train_params,
    .conf_size = sizeof(train_conf), .check = train_check, .run = dummy_run,
    .close = train_close, .model = &train_model,
};

typedef struct eval_conf {
    mp_str_list metrics;
} eval_conf;

static const mp_param eval_params[] = {
    { "metrics", MP_P_STR_LIST, offsetof(eval_conf, metrics), "[accuracy]", 0, 0, 0,
      "accuracy|f1_macro|log_loss", "" },
    { 0 }
};

static const mp_stage_ops test_eval = {
    .abi = MP_STAGE_ABI, .name = "testeval", .kind = MP_KIND_EVALUATE, .params = eval_params,
    .conf_size = sizeof(eval_conf), .run = dummy_run,
};

/* Declares a parameter called `module`, so mp_config_params must not add the
 * extra "export.module" row for it. */
typedef struct export_conf {
    char *path;
    char *module;
} export_conf;

static const mp_param export_params[] = {
    { "path", MP_P_STRING, offsetof(export_conf, path), NULL, MP_PF_REQUIRED, 0, 0, NULL, "" },
    { "module", MP_P_STRING, offsetof(export_conf, module), "mlpm", 0, 0, 0, NULL, "" },
    { 0 }
};

static const mp_stage_ops test_export = {
    .abi = MP_STAGE_ABI, .name = "testexport", .kind = MP_KIND_EXPORT, .params = export_params,
    .conf_size = sizeof(export_conf), .run = dummy_run,
};

/* A stage that takes no parameters at all. */
static const mp_param no_params[] = { { 0 } };
static const mp_stage_ops test_bare = {
    .abi = MP_STAGE_ABI, .name = "testbare", .kind = MP_KIND_EVALUATE, .params = no_params,
    .conf_size = 0, .run = dummy_run,
};

static const mp_stage_ops *const test_stages[] = { &test_load, &test_split, &test_scale,
                                                   &test_train, &test_eval, &test_export,
                                                   &test_bare, NULL };

static int group_setup(void **state) {
    (void)state;
    mp_err err = { 0 };
    if (mp_registry_add(test_stages, "test_config", &err) != MP_OK) {
        fprintf(stderr, "registry: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    mp_registry_shutdown();
    return 0;
}

/* ---------------------------------------------------------------- helpers */

/* A full pipeline; line numbers matter to the tests below. */
static const char BASE[] =
    "version: 1\n"                      /* 1 */
    "name: demo\n"                      /* 2 */
    "seed: 7\n"                         /* 3 */
    "stages:\n"                         /* 4 */
    "  - load: testload\n"              /* 5 */
    "    path: data/iris.csv\n"         /* 6 */
    "  - split: testsplit\n"            /* 7 */
    "    test_size: 0.25\n"             /* 8 */
    "  - transform: testscale\n"        /* 9 */
    "  - train: testtrain\n"            /* 10 */
    "    learning_rate: 0.05\n"         /* 11 */
    "    epochs: 20\n"                  /* 12 */
    "    optimizer: momentum\n"         /* 13 */
    "    hidden: [16, 8]\n"             /* 14 */
    "  - evaluate: testeval\n"          /* 15 */
    "    metrics: [accuracy, f1_macro]\n" /* 16 */
    "  - export: testexport\n"          /* 17 */
    "    path: out/model.mlpm\n";       /* 18 */

/* Lines 1-4 of most error cases; the stage under test starts on line 5. */
#define HEAD "version: 1\nstages:\n  - load: testload\n    path: x.csv\n"

static mp_spec *parse_ok(const char *yaml) {
    mp_err err = { 0 };
    mp_spec *s = NULL;
    int rc = mp_config_parse("p.yaml", yaml, strlen(yaml), &s, &err);
    if (rc != MP_OK) print_error("unexpected error: %s: %s\n", err.where, err.msg);
    assert_int_equal(rc, MP_OK);
    assert_non_null(s);
    return s;
}

static mp_stage *resolve_ok(const mp_spec *s) {
    mp_err err = { 0 };
    mp_stage *st = NULL;
    int rc = mp_config_resolve(s, &st, &err);
    if (rc != MP_OK) print_error("unexpected error: %s: %s\n", err.where, err.msg);
    assert_int_equal(rc, MP_OK);
    return st;
}

static void check_err(const mp_err *err, int code, const char *where, const char *part) {
    if (err->code != code || strcmp(err->where, where) != 0 || !strstr(err->msg, part))
        print_error("got %d '%s: %s'\nwant %d '%s: ...%s...'\n", err->code, err->where,
                    err->msg, code, where, part);
    assert_int_equal(err->code, code);
    assert_string_equal(err->where, where);
    assert_non_null(strstr(err->msg, part));
}

/* Parses yaml, applies the --set strings (NULL-terminated, NULL-able) and
 * resolves; one of the steps must fail with code at where, and the message
 * must contain part. */
static void expect_fail_set(const char *yaml, const char *const *sets, int code,
                            const char *where, const char *part) {
    mp_err err = { 0 };
    mp_spec *s = NULL;
    mp_stage *st = NULL;
    int rc = mp_config_parse("p.yaml", yaml, strlen(yaml), &s, &err);
    for (size_t i = 0; rc == MP_OK && sets && sets[i]; i++) rc = mp_config_set(s, sets[i], &err);
    if (rc == MP_OK) rc = mp_config_resolve(s, &st, &err);
    assert_int_not_equal(rc, MP_OK);
    assert_null(st);
    check_err(&err, code, where, part);
    mp_spec_free(s);
}

static void expect_fail(const char *yaml, const char *where, const char *part) {
    expect_fail_set(yaml, NULL, MP_E_CONFIG, where, part);
}

/* The value of key in mp_config_params output, or NULL. */
static const char *param_value(char **keys, char **values, size_t n, const char *key) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i], key) == 0) return values[i];
    return NULL;
}

/* ---------------------------------------------------------------- parsing */

static void test_parse_full(void **state) {
    (void)state;
    mp_spec *s = parse_ok(BASE);
    assert_string_equal(s->file, "p.yaml");
    assert_string_equal(s->text, BASE);
    assert_int_equal(s->version, 1);
    assert_string_equal(s->name, "demo");
    assert_int_equal(s->seed, 7);
    assert_int_equal(s->n_plugins, 0);
    assert_int_equal(s->n_overrides, 0);
    assert_int_equal(s->n_stages, 6);
    static const mp_stage_kind kinds[] = { MP_KIND_LOAD, MP_KIND_SPLIT, MP_KIND_TRANSFORM,
                                           MP_KIND_TRAIN, MP_KIND_EVALUATE, MP_KIND_EXPORT };
    for (size_t i = 0; i < 6; i++) assert_int_equal(s->stages[i].kind, kinds[i]);

    const mp_spec_stage *t = &s->stages[3];
    assert_string_equal(t->module, "testtrain");
    assert_null(t->name);
    assert_int_equal(t->line, 10);
    assert_int_equal(t->col, 5);
    assert_int_equal(t->module_line, 10);
    assert_int_equal(t->module_col, 12);
    assert_int_equal(t->n_params, 4);
    assert_string_equal(t->params[0].key, "learning_rate");
    assert_int_equal(t->params[0].line, 11);
    assert_int_equal(t->params[0].col, 5);
    assert_false(t->params[0].from_cli);
    assert_int_equal(t->params[0].value.type, MP_V_SCALAR);
    assert_string_equal(t->params[0].value.s, "0.05");
    assert_int_equal(t->params[0].value.line, 11);
    assert_int_equal(t->params[0].value.col, 20);
    const mp_value *h = &t->params[3].value;
    assert_int_equal(h->type, MP_V_SEQ);
    assert_int_equal(h->n, 2);
    assert_string_equal(h->items[1].s, "8");
    assert_int_equal(h->items[1].col, 18);
    assert_int_equal(s->stages[2].n_params, 0);
    mp_spec_free(s);
}

static void test_parse_values(void **state) {
    (void)state;
    /* Quoting, block sequences and nested mappings are kept as generic values. */
    mp_spec *s = parse_ok(HEAD
                          "    target: \"species\"\n"
                          "    cols:\n"
                          "      - a\n"
                          "      - 'b'\n"
                          "    opts: {x: 1, y: [2]}\n"
                          "    note: !!str 12\n");
    const mp_spec_stage *l = &s->stages[0];
    assert_int_equal(l->n_params, 5);
    assert_true(l->params[1].value.quoted);
    assert_false(l->params[0].value.quoted);
    const mp_value *cols = &l->params[2].value;
    assert_int_equal(cols->type, MP_V_SEQ);
    assert_int_equal(cols->n, 2);
    assert_false(cols->items[0].quoted);
    assert_true(cols->items[1].quoted);
    assert_int_equal(cols->items[1].line, 8);
    const mp_value *opts = &l->params[3].value;
    assert_int_equal(opts->type, MP_V_MAP);
    assert_int_equal(opts->n, 2);
    assert_string_equal(opts->keys[1], "y");
    assert_int_equal(opts->items[1].type, MP_V_SEQ);
    assert_true(l->params[4].value.quoted); /* !!str makes it text */
    mp_spec_free(s);
}

static void test_top_level_defaults(void **state) {
    (void)state;
    static const char y[] = HEAD;
    mp_err err = { 0 };
    mp_spec *s = NULL;
    assert_int_equal(mp_config_parse("pipelines/iris.yaml", y, strlen(y), &s, &err), MP_OK);
    assert_string_equal(s->name, "iris");
    assert_int_equal(s->seed, 42);
    mp_spec_free(s);
    assert_int_equal(mp_config_parse("a/b.c.yml", y, strlen(y), &s, &err), MP_OK);
    assert_string_equal(s->name, "b.c");
    mp_spec_free(s);
}

static void test_plugins_relative(void **state) {
    (void)state;
    static const char y[] = "version: 1\nplugins: [x.so, /abs/y.so, ../z.so]\n"
                            "stages:\n  - load: testload\n    path: a\n";
    mp_err err = { 0 };
    mp_spec *s = NULL;
    assert_int_equal(mp_config_parse("dir/sub/p.yaml", y, strlen(y), &s, &err), MP_OK);
    assert_int_equal(s->n_plugins, 3);
    assert_string_equal(s->plugins[0], "dir/sub/x.so");
    assert_string_equal(s->plugins[1], "/abs/y.so");
    assert_string_equal(s->plugins[2], "dir/sub/../z.so");
    mp_spec_free(s);
    s = parse_ok(y); /* a file in the current folder: paths stay as written */
    assert_string_equal(s->plugins[0], "x.so");
    mp_spec_free(s);
    expect_fail("version: 1\nplugins: x.so\nstages: []\n", "p.yaml:2:10",
                "expected a list of paths for 'plugins', got 'x.so'");
}

static void test_config_load_file(void **state) {
    (void)state;
    char path[] = "/tmp/mlpipe_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, BASE, strlen(BASE)), (ssize_t)strlen(BASE));
    close(fd);
    mp_err err = { 0 };
    mp_spec *s = NULL;
    assert_int_equal(mp_config_load(path, &s, &err), MP_OK);
    assert_string_equal(s->file, path);
    assert_string_equal(s->text, BASE);
    assert_int_equal(s->n_stages, 6);
    mp_spec_free(s);
    unlink(path);
    s = NULL;
    assert_int_equal(mp_config_load(path, &s, &err), MP_E_IO);
    assert_null(s);
}

/* ---------------------------------------------------------------- YAML errors */

static void test_syntax_error(void **state) {
    (void)state;
    expect_fail("version: 1\nname: a: b\n", "p.yaml:2:8",
                "invalid YAML: mapping values are not allowed in this context");
    expect_fail(HEAD "    target: [a, b\n", "p.yaml:6:1", "invalid YAML: did not find expected");
    expect_fail(HEAD "  bad\n", "p.yaml:5:3", "invalid YAML: could not find expected ':'");
}

static void test_structure_errors(void **state) {
    (void)state;
    expect_fail("", "p.yaml", "empty pipeline");
    expect_fail("# only a comment\n", "p.yaml", "empty pipeline");
    expect_fail("- load: x\n", "p.yaml:1:1", "a pipeline must be a mapping");
    expect_fail(HEAD "---\nversion: 1\n", "p.yaml:5:1", "one YAML document");
    expect_fail("version: 1\nstages: []\n", "p.yaml:2:1", "'stages' is empty");
    expect_fail("version: 1\nstages: x\n", "p.yaml:2:9", "'stages' must be a list");
    expect_fail("version: 1\nstages:\n  - load\n", "p.yaml:3:5", "a stage must be a mapping");
    expect_fail("version: 1\n", "p.yaml:1:1", "missing 'stages'");
    expect_fail("version: 1\nstages:\n  - load: testload\n    [a]: 1\n", "p.yaml:4:5",
                "a mapping key must be plain text");
}

static void test_version(void **state) {
    (void)state;
    expect_fail("version: 2\nstages: []\n", "p.yaml:1:10",
                "unsupported pipeline version 2 (this mlpipe reads version 1)");
    expect_fail("version: '1'\nstages: []\n", "p.yaml:1:10",
                "expected an integer for 'version', got '1' (a quoted string)");
    expect_fail("stages:\n  - load: testload\n    path: x\n", "p.yaml:1:1",
                "missing 'version: 1'");
}

static void test_unknown_top_key(void **state) {
    (void)state;
    expect_fail("version: 1\nstagse: []\n", "p.yaml:2:1",
                "unknown key 'stagse' (did you mean 'stages'?)");
    expect_fail("version: 1\nfoo: 1\n", "p.yaml:2:1",
                "unknown key 'foo' (expected version, name, seed, plugins, stages, sweep)");
    expect_fail("version: 1\nseed: -1\n", "p.yaml:2:7",
                "expected a non-negative integer for 'seed', got '-1'");
}

static void test_sweep_grid(void **state) {
    (void)state;
    mp_spec *s = parse_ok(HEAD "sweep:\n  testload.path: [a.csv, 'b c.csv']\n"
                               "  seed: [1, 2, 3]\n  testload.hidden: [[4, 2]]\n");
    assert_int_equal(s->n_sweep, 3);
    assert_int_equal(s->n_points, 6);
    assert_string_equal(s->sweep[1].values[2], "3");
    assert_string_equal(s->sweep[0].values[1], "'b c.csv'");
    assert_string_equal(s->sweep[2].values[0], "[4, 2]");
    assert_int_equal(s->sweep[1].line, 7);
    char **sets = NULL;
    size_t n = 0;
    mp_err err = { 0 };
    /* last axis fastest: point 5 = (b c.csv, 3, [4, 2]) */
    assert_int_equal(mp_config_sweep_point(s, 5, &sets, &n, &err), MP_OK);
    assert_int_equal(n, 3);
    assert_string_equal(sets[0], "testload.path='b c.csv'");
    assert_string_equal(sets[1], "seed=3");
    assert_string_equal(sets[2], "testload.hidden=[4, 2]");
    for (size_t i = 0; i < n; i++) mp_free(sets[i]);
    mp_free(sets);
    assert_int_equal(mp_config_sweep_point(s, 6, &sets, &n, &err), MP_E_USAGE);
    mp_spec_free(s);
    expect_fail(HEAD "sweep: [1, 2]\n", "p.yaml:5:8", "expected a mapping of KIND.param");
    expect_fail(HEAD "sweep:\n  train.epochs: []\n", "p.yaml:6:17", "non-empty list");
    expect_fail(HEAD "sweep:\n  epochs: [1]\n", "p.yaml:6:11", "must be KIND.param");
}

static void test_duplicate_keys(void **state) {
    (void)state;
    expect_fail("version: 1\nversion: 1\n", "p.yaml:2:1",
                "duplicate key 'version' (first at line 1)");
    expect_fail(HEAD "    path: y.csv\n", "p.yaml:5:5", "duplicate key 'path' (first at line 4)");
    expect_fail(HEAD "    opts: {a: 1, a: 2}\n", "p.yaml:5:18", "duplicate key 'a'");
}

static void test_anchors_refused(void **state) {
    (void)state;
    expect_fail(HEAD "    target: &t species\n", "p.yaml:5:13",
                "YAML anchors and aliases are not supported ('&t')");
    expect_fail(HEAD "    target: *t\n", "p.yaml:5:13",
                "YAML anchors and aliases are not supported ('*t')");
    expect_fail(HEAD "    target: !weird x\n", "p.yaml:5:13", "YAML tags are not supported");
}

/* ---------------------------------------------------------------- stages */

static void test_stage_kind_errors(void **state) {
    (void)state;
    expect_fail(HEAD "  - trian: testtrain\n", "p.yaml:5:5",
                "unknown stage kind 'trian' (did you mean 'train'?)");
    expect_fail(HEAD "  - foo: bar\n", "p.yaml:5:5",
                "stage has no kind (expected one of load, split, transform, train, evaluate, "
                "export)");
    expect_fail(HEAD "  - train: testtrain\n    evaluate: testeval\n", "p.yaml:6:5",
                "stage has two kinds, 'train' and 'evaluate'");
    expect_fail(HEAD "  - train: [a]\n", "p.yaml:5:12",
                "expected a module name for 'train', got a list");
    expect_fail(HEAD "  - transform:\n", "p.yaml:5:15",
                "expected a module name for 'transform', got nothing");
}

static void test_stage_names(void **state) {
    (void)state;
    mp_spec *s = parse_ok(HEAD "  - transform: testscale\n    name: scale_a\n");
    assert_string_equal(s->stages[1].name, "scale_a");
    assert_int_equal(s->stages[1].n_params, 0);
    mp_spec_free(s);
    expect_fail(HEAD "  - transform: testscale\n    name: a\n  - transform: testscale\n"
                     "    name: a\n",
                "p.yaml:8:11", "stage name 'a' is already used by the stage at line 5");
    expect_fail(HEAD "  - transform: testscale\n    name: a.b\n", "p.yaml:6:11",
                "invalid stage name 'a.b'");
    expect_fail(HEAD "  - transform: testscale\n    name: train\n", "p.yaml:6:11",
                "stage name 'train' is a stage kind");
}

static void test_unknown_module(void **state) {
    (void)state;
    expect_fail(HEAD "  - train: testtrian\n", "p.yaml:5:12",
                "unknown train module 'testtrian' (did you mean 'testtrain'?)");
    expect_fail(HEAD "  - train: zzz\n", "p.yaml:5:12", "unknown train module 'zzz' (available: ");
    expect_fail(HEAD "  - train: zzz\n", "p.yaml:5:12", "testtrain");
}

static void test_stage_order(void **state) {
    (void)state;
    expect_fail("version: 1\nstages:\n  - train: testtrain\n", "p.yaml:3:5",
                "the first stage must be a 'load' stage, not 'train'");
    expect_fail(HEAD "  - load: testload\n    path: y\n", "p.yaml:5:5",
                "a pipeline has at most one 'load' stage (the first is at line 3)");
    expect_fail(HEAD "  - transform: testscale\n  - split: testsplit\n", "p.yaml:6:5",
                "'split' must come before the transform and train stages");
    expect_fail(HEAD "  - split: testsplit\n  - split: testsplit\n", "p.yaml:6:5",
                "at most one 'split' stage");
    expect_fail(HEAD "  - train: testtrain\n  - transform: testscale\n", "p.yaml:6:5",
                "'transform' stages must come before the 'train' stage");
    expect_fail(HEAD "  - train: testtrain\n  - train: testtrain\n", "p.yaml:6:5",
                "at most one 'train' stage");
    expect_fail(HEAD "  - evaluate: testeval\n", "p.yaml:5:5",
                "'evaluate' needs a 'train' stage before it");
    expect_fail(HEAD "  - export: testexport\n    path: m\n", "p.yaml:5:5",
                "'export' needs a 'train' stage before it");
    /* evaluate and export may come in either order after train */
    mp_spec *s = parse_ok(HEAD "  - train: testtrain\n  - export: testexport\n    path: m\n"
                               "  - evaluate: testeval\n  - evaluate: testbare\n");
    mp_stage *st = resolve_ok(s);
    mp_stages_free(st, s->n_stages);
    mp_spec_free(s);
}

/* ---------------------------------------------------------------- parameters */

static void test_resolve_values(void **state) {
    (void)state;
    mp_spec *s = parse_ok(BASE);
    mp_stage *st = resolve_ok(s);
    const load_conf *l = st[0].conf;
    assert_string_equal(l->path, "data/iris.csv");
    assert_null(l->target); /* optional, no default: zero */
    const split_conf *sp = st[1].conf;
    assert_true(sp->test_size == 0.25);
    assert_false(sp->stratify);
    assert_true(((const scale_conf *)st[2].conf)->with_mean);
    const train_conf *t = st[3].conf;
    assert_true(t->learning_rate == 0.05);
    assert_int_equal(t->epochs, 20);
    assert_int_equal(t->optimizer, 1); /* momentum */
    assert_true(t->shuffle);
    assert_int_equal(t->hidden.n, 2);
    assert_int_equal(t->hidden.v[0], 16);
    assert_int_equal(t->hidden.v[1], 8);
    assert_int_equal(t->metrics.n, 2); /* from the default "[accuracy, f1_macro]" */
    assert_string_equal(t->metrics.v[1], "f1_macro");
    assert_null(t->label);
    assert_int_equal(t->patience, 0);
    assert_string_equal(st[3].name, "train");
    assert_string_equal(st[3].where, "p.yaml:10:5");
    assert_ptr_equal(st[3].ops, &test_train);
    const export_conf *e = st[5].conf;
    assert_string_equal(e->path, "out/model.mlpm");
    assert_string_equal(e->module, "mlpm");
    n_closed = 0;
    mp_stages_free(st, s->n_stages);
    assert_int_equal(n_closed, 1); /* close() of the train stage */
    mp_spec_free(s);
}

static void test_param_forms(void **state) {
    (void)state;
    /* Block lists, yes/no bools, exponents, ints as doubles, quoted strings. */
    mp_spec *s = parse_ok(HEAD "    target: '42'\n"
                               "  - train: testtrain\n"
                               "    learning_rate: 1e-3\n"
                               "    epochs: 5\n"
                               "    shuffle: no\n"
                               "    hidden:\n"
                               "      - 3\n"
                               "    metrics: []\n"
                               "    label: \"\"\n"
                               "    optimizer: 'sgd'\n");
    mp_stage *st = resolve_ok(s);
    assert_string_equal(((const load_conf *)st[0].conf)->target, "42");
    const train_conf *t = st[1].conf;
    assert_true(t->learning_rate == 1e-3);
    assert_false(t->shuffle);
    assert_int_equal(t->hidden.n, 1);
    assert_int_equal(t->hidden.v[0], 3);
    assert_int_equal(t->metrics.n, 0);
    assert_null(t->metrics.v);
    assert_string_equal(t->label, "");
    assert_int_equal(t->optimizer, 0);
    mp_stages_free(st, s->n_stages);
    mp_spec_free(s);
}

#define TRAIN HEAD "  - train: testtrain\n"

static void test_unknown_param(void **state) {
    (void)state;
    expect_fail(TRAIN "    learnin_rate: 0.1\n", "p.yaml:6:5",
                "unknown parameter 'learnin_rate' for train: testtrain (did you mean "
                "'learning_rate'?)");
    expect_fail(TRAIN "    colour: red\n", "p.yaml:6:5",
                "unknown parameter 'colour' for train: testtrain (valid: learning_rate, epochs, "
                "optimizer, shuffle, hidden, metrics, label, patience)");
    expect_fail(TRAIN "  - evaluate: testbare\n    x: 1\n", "p.yaml:7:5",
                "unknown parameter 'x' for evaluate: testbare (it takes no parameters)");
}

static void test_param_types(void **state) {
    (void)state;
    expect_fail(TRAIN "    epochs: 1.5\n", "p.yaml:6:13",
                "expected an integer for 'epochs', got '1.5'");
    expect_fail(TRAIN "    epochs: abc\n", "p.yaml:6:13",
                "expected an integer for 'epochs', got 'abc'");
    expect_fail(TRAIN "    epochs: \"3\"\n", "p.yaml:6:13",
                "expected an integer for 'epochs', got '3' (a quoted string)");
    expect_fail(TRAIN "    epochs: [3]\n", "p.yaml:6:13",
                "expected an integer for 'epochs', got a list");
    expect_fail(TRAIN "    epochs: 99999999999\n", "p.yaml:6:13",
                "expected an integer for 'epochs'");
    expect_fail(TRAIN "    learning_rate: fast\n", "p.yaml:6:20",
                "expected a number for 'learning_rate', got 'fast'");
    expect_fail(TRAIN "    learning_rate: nan\n", "p.yaml:6:20",
                "expected a number for 'learning_rate', got 'nan'");
    expect_fail(TRAIN "    learning_rate: inf\n", "p.yaml:6:20", "expected a number");
    expect_fail(TRAIN "    shuffle: maybe\n", "p.yaml:6:14",
                "expected true or false for 'shuffle', got 'maybe'");
    expect_fail(TRAIN "    shuffle: 'true'\n", "p.yaml:6:14", "expected true or false");
    expect_fail(TRAIN "    optimizer: adm\n", "p.yaml:6:16",
                "invalid value 'adm' for 'optimizer': expected one of sgd, momentum, adam (did "
                "you mean 'adam'?)");
    expect_fail(TRAIN "    optimizer: lbfgs\n", "p.yaml:6:16",
                "invalid value 'lbfgs' for 'optimizer': expected one of sgd, momentum, adam");
    expect_fail(TRAIN "    hidden: 5\n", "p.yaml:6:13",
                "expected a list of integers for 'hidden', got '5'");
    expect_fail(TRAIN "    hidden: [4, x]\n", "p.yaml:6:17",
                "expected an integer for 'hidden', got 'x'");
    expect_fail(TRAIN "    metrics: accuracy\n", "p.yaml:6:14",
                "expected a list for 'metrics', got 'accuracy'");
    expect_fail(TRAIN "    metrics: [accuracy, acuracy]\n", "p.yaml:6:25",
                "invalid value 'acuracy' in 'metrics': expected one of accuracy, f1_macro, "
                "log_loss (did you mean 'accuracy'?)");
    expect_fail(TRAIN "    metrics: [[a]]\n", "p.yaml:6:15",
                "expected a string for 'metrics', got a list");
    expect_fail(TRAIN "    label:\n", "p.yaml:6:11", "expected a string for 'label', got nothing");
    expect_fail(TRAIN "    label: ~\n", "p.yaml:6:12", "expected a string for 'label', got null");
    expect_fail(TRAIN "    label: {a: 1}\n", "p.yaml:6:12",
                "expected a string for 'label', got a mapping");
}

static void test_param_range(void **state) {
    (void)state;
    expect_fail(TRAIN "    learning_rate: -1\n", "p.yaml:6:20",
                "learning_rate must be > 0, got -1");
    expect_fail(TRAIN "    learning_rate: 0\n", "p.yaml:6:20", "learning_rate must be > 0, got 0");
    expect_fail(TRAIN "    epochs: 0\n", "p.yaml:6:13", "epochs must be >= 1, got 0");
    expect_fail(TRAIN "    hidden: [8, 0]\n", "p.yaml:6:17", "hidden must be >= 1, got 0");
    expect_fail(HEAD "  - split: testsplit\n    test_size: 1.5\n", "p.yaml:6:16",
                "test_size must be in [0, 1], got 1.5");
    /* the bounds themselves are inside an inclusive range */
    mp_spec *s = parse_ok(HEAD "  - split: testsplit\n    test_size: 1\n");
    mp_stage *st = resolve_ok(s);
    mp_stages_free(st, s->n_stages);
    mp_spec_free(s);
}

static void test_missing_required(void **state) {
    (void)state;
    expect_fail("version: 1\nstages:\n  - load: testload\n    target: y\n", "p.yaml:3:5",
                "missing required parameter 'path' for load: testload");
}

static void test_check_hook(void **state) {
    (void)state;
    expect_fail(TRAIN "    epochs: 3\n    patience: 3\n", "p.yaml:5:5",
                "patience (3) must be smaller than epochs (3)");
}

/* A table whose default does not parse is a stage bug; it is reported, not
 * crashed on, and names the table. */
typedef struct bad_conf {
    int n;
} bad_conf;
static const mp_param bad_default[] = {
    { "n", MP_P_INT, offsetof(bad_conf, n), "lots", 0, 0, 0, NULL, "" },
    { 0 }
};

/* String and enum defaults are literal text, not YAML: "," and "#" work. */
typedef struct lit_conf {
    char *sep;
    char *comment;
    int   mode;
    char *empty;
} lit_conf;
static const mp_param literal_defaults[] = {
    { "sep", MP_P_STRING, offsetof(lit_conf, sep), ",", 0, 0, 0, NULL, "" },
    { "comment", MP_P_STRING, offsetof(lit_conf, comment), "#", 0, 0, 0, NULL, "" },
    { "mode", MP_P_ENUM, offsetof(lit_conf, mode), "b", 0, 0, 0, "a|b", "" },
    { "empty", MP_P_STRING, offsetof(lit_conf, empty), "", 0, 0, 0, NULL, "" },
    { 0 }
};

static void test_bad_default(void **state) {
    (void)state;
    lit_conf l = { 0 };
    mp_err lerr = { 0 };
    assert_int_equal(mp_param_fill(literal_defaults, &l, NULL, 0, "p.yaml", "load: lit", &lerr),
                     MP_OK);
    assert_string_equal(l.sep, ",");
    assert_string_equal(l.comment, "#");
    assert_int_equal(l.mode, 1);
    assert_string_equal(l.empty, "");
    mp_param_release(literal_defaults, &l);
    assert_null(l.sep);
    mp_param_release(literal_defaults, &l); /* twice is harmless */

    bad_conf c = { 0 };
    mp_err err = { 0 };
    assert_int_equal(mp_param_fill(bad_default, &c, NULL, 0, "p.yaml", "train: bad", &err),
                     MP_E_CONFIG);
    assert_string_equal(err.where, "");
    assert_non_null(strstr(err.msg, "bad default \"lots\" in the parameter table of train: bad"));
}

/* ---------------------------------------------------------------- ${VAR} */

static void test_env_substitution(void **state) {
    (void)state;
    setenv("MP_TEST_DIR", "/data", 1);
    setenv("MP_TEST_EPOCHS", "30", 1);
    setenv("MP_TEST_EMPTY", "", 1);
    unsetenv("MP_TEST_UNSET");
    mp_spec *s = parse_ok("version: 1\n"
                          "stages:\n"
                          "  - load: testload\n"
                          "    path: ${MP_TEST_DIR}/iris.csv\n"
                          "    target: ${MP_TEST_UNSET:-species}-$$-${MP_TEST_EMPTY:-e}-$5\n"
                          "  - train: testtrain\n"
                          "    epochs: ${MP_TEST_EPOCHS}\n"
                          "    label: \"${MP_TEST_EMPTY}\"\n");
    mp_stage *st = resolve_ok(s);
    const load_conf *l = st[0].conf;
    assert_string_equal(l->path, "/data/iris.csv");
    assert_string_equal(l->target, "species-$-e-$5");
    const train_conf *t = st[1].conf;
    assert_int_equal(t->epochs, 30); /* substituted before typing */
    assert_string_equal(t->label, "");
    mp_stages_free(st, s->n_stages);
    mp_spec_free(s);

    expect_fail(HEAD "    target: x/${MP_TEST_UNSET}\n", "p.yaml:5:13",
                "environment variable 'MP_TEST_UNSET' is not set");
    expect_fail(HEAD "    target: ${MP_TEST_UNSET\n", "p.yaml:5:13", "invalid variable reference");
    expect_fail(HEAD "    target: ${1X}\n", "p.yaml:5:13", "invalid variable reference");
    /* quoted stays quoted: still a string after substitution */
    expect_fail(TRAIN "    epochs: '${MP_TEST_EPOCHS}'\n", "p.yaml:6:13",
                "got '30' (a quoted string)");
    unsetenv("MP_TEST_DIR");
    unsetenv("MP_TEST_EPOCHS");
    unsetenv("MP_TEST_EMPTY");
}

/* ---------------------------------------------------------------- --set */

static void test_set_overrides(void **state) {
    (void)state;
    mp_err err = { 0 };
    mp_spec *s = parse_ok(BASE);
    assert_int_equal(mp_config_set(s, "train.learning_rate=0.01", &err), MP_OK);
    assert_int_equal(mp_config_set(s, "train.hidden=[256, 128]", &err), MP_OK);
    assert_int_equal(mp_config_set(s, "train.label='true'", &err), MP_OK);    /* added */
    assert_int_equal(mp_config_set(s, "load.target=species", &err), MP_OK);
    assert_int_equal(mp_config_set(s, "seed=5", &err), MP_OK);
    assert_int_equal(mp_config_set(s, "name=my run", &err), MP_OK);
    assert_int_equal(mp_config_set(s, "train.epochs=7", &err), MP_OK);
    assert_int_equal(mp_config_set(s, "train.epochs=8", &err), MP_OK);      /* twice: last wins */
    assert_int_equal(err.code, MP_OK);
    assert_int_equal(s->seed, 5);
    assert_string_equal(s->name, "my run");
    assert_int_equal(s->n_overrides, 8);
    assert_string_equal(s->overrides[1], "train.hidden=[256, 128]");
    const mp_spec_stage *t = &s->stages[3];
    assert_int_equal(t->n_params, 5); /* four from the file + label */
    assert_true(t->params[0].from_cli);
    assert_string_equal(t->params[0].set_text, "train.learning_rate=0.01");
    assert_int_equal(t->params[0].line, 0);
    assert_false(t->params[2].from_cli); /* optimizer untouched */

    mp_stage *st = resolve_ok(s);
    const train_conf *c = st[3].conf;
    assert_true(c->learning_rate == 0.01);
    assert_int_equal(c->hidden.n, 2);
    assert_int_equal(c->hidden.v[0], 256);
    assert_int_equal(c->hidden.v[1], 128);
    assert_string_equal(c->label, "true");
    assert_int_equal(c->epochs, 8);
    assert_string_equal(((const load_conf *)st[0].conf)->target, "species");
    mp_stages_free(st, s->n_stages);
    mp_spec_free(s);
}

static void test_set_named_selector(void **state) {
    (void)state;
    static const char y[] = HEAD "  - transform: testscale\n    name: a\n"
                                 "  - transform: testscale\n    name: b\n";
    mp_err err = { 0 };
    mp_spec *s = parse_ok(y);
    assert_int_equal(mp_config_set(s, "b.with_mean=false", &err), MP_OK);
    mp_stage *st = resolve_ok(s);
    assert_true(((const scale_conf *)st[1].conf)->with_mean);
    assert_false(((const scale_conf *)st[2].conf)->with_mean);
    mp_stages_free(st, s->n_stages);
    mp_spec_free(s);
    expect_fail_set(y, (const char *const[]){ "transform.with_mean=false", NULL }, MP_E_CONFIG,
                    "--set transform.with_mean=false",
                    "'transform' is ambiguous: the pipeline has 2 transform stages (select one by "
                    "name: a, b)");
}

static void test_set_errors(void **state) {
    (void)state;
    static const char two[] = HEAD "  - transform: testscale\n  - transform: testscale\n"
                                   "  - train: testtrain\n";
    expect_fail_set(BASE, (const char *const[]){ "train.epochs=abc", NULL }, MP_E_CONFIG,
                    "--set train.epochs=abc", "expected an integer for 'epochs', got 'abc'");
    expect_fail_set(BASE, (const char *const[]){ "train.hidden=[1, 0]", NULL }, MP_E_CONFIG,
                    "--set train.hidden=[1, 0]", "hidden must be >= 1, got 0");
    expect_fail_set(BASE, (const char *const[]){ "train.learnin_rate=1", NULL }, MP_E_CONFIG,
                    "--set train.learnin_rate=1",
                    "unknown parameter 'learnin_rate' for train: testtrain (did you mean "
                    "'learning_rate'?)");
    expect_fail_set(BASE, (const char *const[]){ "trian.epochs=3", NULL }, MP_E_CONFIG,
                    "--set trian.epochs=3", "unknown stage 'trian' (did you mean 'train'?)");
    expect_fail_set(BASE, (const char *const[]){ "model.epochs=3", NULL }, MP_E_CONFIG,
                    "--set model.epochs=3",
                    "unknown stage 'model' (valid: load, split, transform, train, evaluate, "
                    "export)");
    expect_fail_set(two, (const char *const[]){ "transform.with_mean=no", NULL }, MP_E_CONFIG,
                    "--set transform.with_mean=no",
                    "'transform' is ambiguous: the pipeline has 2 transform stages (give each a "
                    "'name:'");
    expect_fail_set(BASE, (const char *const[]){ "train.epochs=[1", NULL }, MP_E_CONFIG,
                    "--set train.epochs=[1", "invalid YAML");
    expect_fail_set(BASE, (const char *const[]){ "seed=-3", NULL }, MP_E_CONFIG, "--set seed=-3",
                    "expected a non-negative integer for 'seed', got '-3'");
    expect_fail_set(BASE, (const char *const[]){ "train.name=x", NULL }, MP_E_CONFIG,
                    "--set train.name=x", "--set cannot change a stage's 'name'");
    expect_fail_set(BASE, (const char *const[]){ "train.epochs", NULL }, MP_E_USAGE, "",
                    "invalid --set 'train.epochs' (expected KEY=VALUE");
    expect_fail_set(BASE, (const char *const[]){ "epochs=3", NULL }, MP_E_USAGE, "",
                    "invalid --set 'epochs=3' (expected seed=N, name=TEXT or STAGE.PARAM=VALUE)");
    expect_fail_set(BASE, (const char *const[]){ "train.=3", NULL }, MP_E_USAGE, "",
                    "invalid --set");

    /* a failed --set leaves the spec as it was */
    mp_err err = { 0 };
    mp_spec *s = parse_ok(BASE);
    assert_int_equal(mp_config_set(s, "trian.epochs=3", &err), MP_E_CONFIG);
    assert_int_equal(s->n_overrides, 0);
    assert_int_equal(s->stages[3].n_params, 4);
    mp_spec_free(s);
}

/* ---------------------------------------------------------------- params */

static void test_config_params(void **state) {
    (void)state;
    mp_spec *s = parse_ok(HEAD "  - transform: testscale\n"
                               "  - transform: testscale\n"
                               "    name: scaler\n"
                               "  - transform: testscale\n"
                               "    with_mean: false\n"
                               "  - train: testtrain\n"
                               "    learning_rate: 0.05\n"
                               "  - export: testexport\n"
                               "    path: 'yes'\n");
    mp_stage *st = resolve_ok(s);
    mp_err err = { 0 };
    char **keys = NULL, **vals = NULL;
    size_t n = 0;
    assert_int_equal(mp_config_params(s, st, &keys, &vals, &n, &err), MP_OK);
    /* 1+2 load, 3 x (1+1) transforms, 1+8 train, 2 export (has its own 'module') */
    assert_int_equal(n, 3 + 6 + 9 + 2);
    assert_string_equal(param_value(keys, vals, n, "load.module"), "testload");
    assert_string_equal(param_value(keys, vals, n, "load.path"), "x.csv");
    assert_string_equal(param_value(keys, vals, n, "load.target"), "");
    assert_string_equal(param_value(keys, vals, n, "transform.with_mean"), "true");
    assert_string_equal(param_value(keys, vals, n, "scaler.with_mean"), "true");
    assert_string_equal(param_value(keys, vals, n, "transform2.with_mean"), "false");
    assert_string_equal(param_value(keys, vals, n, "train.module"), "testtrain");
    assert_string_equal(param_value(keys, vals, n, "train.learning_rate"), "0.05");
    assert_string_equal(param_value(keys, vals, n, "train.epochs"), "100");
    assert_string_equal(param_value(keys, vals, n, "train.optimizer"), "adam");
    assert_string_equal(param_value(keys, vals, n, "train.shuffle"), "true");
    assert_string_equal(param_value(keys, vals, n, "train.hidden"), "[64, 32]");
    assert_string_equal(param_value(keys, vals, n, "train.metrics"), "[accuracy, f1_macro]");
    assert_string_equal(param_value(keys, vals, n, "export.path"), "'yes'");
    assert_string_equal(param_value(keys, vals, n, "export.module"), "mlpm");
    assert_string_equal(keys[0], "load.module"); /* stage order, module row first */
    mp_params_free(keys, vals, n);
    mp_stages_free(st, s->n_stages);
    mp_spec_free(s);
}

static void test_param_format(void **state) {
    (void)state;
    typedef struct f_conf {
        double      d;
        char       *s;
        mp_str_list l;
        int         e;
    } f_conf;
    static const mp_param p[] = {
        { "d", MP_P_DOUBLE, offsetof(f_conf, d), NULL, 0, 0, 0, NULL, "" },
        { "s", MP_P_STRING, offsetof(f_conf, s), NULL, 0, 0, 0, NULL, "" },
        { "l", MP_P_STR_LIST, offsetof(f_conf, l), NULL, 0, 0, 0, NULL, "" },
        { "e", MP_P_ENUM, offsetof(f_conf, e), NULL, 0, 0, 0, "a|bb|ccc", "" },
    };
    char buf[64];
    f_conf c = { 0 };
    static const struct { double v; const char *text; } doubles[] = {
        { 0.1, "0.1" }, { 1e-5, "1e-05" }, { 200, "200" }, { -2.5, "-2.5" },
        { 1.0 / 3, "0.3333333333333333" }, { 123456.5, "123456.5" }, { 1e20, "1e+20" },
        { 0, "0" },
    };
    for (size_t i = 0; i < sizeof doubles / sizeof *doubles; i++) {
        c.d = doubles[i].v;
        mp_param_format(&p[0], &c, buf, sizeof buf);
        assert_string_equal(buf, doubles[i].text);
        assert_true(strtod(buf, NULL) == c.d);
    }
    static const struct { const char *v, *text; } strs[] = {
        { "plain text", "plain text" }, { "true", "'true'" }, { "12", "'12'" }, { "", "''" },
        { "it's: x", "'it''s: x'" }, { "#x", "'#x'" }, { "a/b.csv", "a/b.csv" },
    };
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        c.s = (char *)strs[i].v;
        mp_param_format(&p[1], &c, buf, sizeof buf);
        assert_string_equal(buf, strs[i].text);
    }
    char *items[] = { "a", "b,c", "d e" };
    c.l = (mp_str_list){ items, 3 };
    assert_int_equal(mp_param_format(&p[2], &c, buf, sizeof buf), strlen("[a, 'b,c', d e]"));
    assert_string_equal(buf, "[a, 'b,c', d e]");
    /* cut short: NUL-terminated, and the full length is returned */
    assert_int_equal(mp_param_format(&p[2], &c, buf, 5), strlen("[a, 'b,c', d e]"));
    assert_string_equal(buf, "[a, ");
    c.e = 2;
    mp_param_format(&p[3], &c, buf, sizeof buf);
    assert_string_equal(buf, "ccc");
    assert_string_equal(mp_param_type_name(MP_P_INT_LIST), "int list");
    assert_string_equal(mp_param_type_name(MP_P_STR_LIST), "string list");
}

static void test_edit_distance(void **state) {
    (void)state;
    assert_int_equal(mp_edit_distance("kitten", "sitting"), 3);
    assert_int_equal(mp_edit_distance("", "abc"), 3);
    assert_int_equal(mp_edit_distance("same", "same"), 0);
    assert_int_equal(mp_edit_distance("trian", "train"), 2);
    static const char *const words[] = { "learning_rate", "epochs", NULL, "optimizer" };
    assert_string_equal(mp_nearest("learnin_rate", words, 4), "learning_rate");
    assert_string_equal(mp_nearest("optimiser", words, 4), "optimizer");
    assert_null(mp_nearest("x", words, 4));
    assert_null(mp_nearest("colour", words, 4));
}

/* ---------------------------------------------------------------- memory */

/* Fails allocation 1, 2, 3 ... of the whole path (parse, --set, and with
 * full also resolve and params) until it succeeds; every failure must be
 * MP_E_NOMEM and, since mp_malloc is cmocka's test_malloc here, leak nothing.
 * Returns how many runs failed. */
static int alloc_loop(const char *y, bool full) {
    long n;
    int failures = 0;
    for (n = 1; n < 100000; n++) {
        mp_err err = { 0 };
        mp_spec *s = NULL;
        mp_stage *st = NULL;
        char **keys = NULL, **vals = NULL;
        size_t np = 0;
        mp_mem_fail_after(n);
        int rc = mp_config_parse("dir/p.yaml", y, strlen(y), &s, &err);
        if (rc == MP_OK) rc = mp_config_set(s, "train.metrics=[log_loss]", &err);
        if (rc == MP_OK) rc = mp_config_set(s, "train.hidden=[4]", &err);
        if (rc == MP_OK) rc = mp_config_set(s, "seed=3", &err);
        if (rc == MP_OK && full) rc = mp_config_resolve(s, &st, &err);
        if (rc == MP_OK && full) rc = mp_config_params(s, st, &keys, &vals, &np, &err);
        mp_mem_fail_after(0);
        if (rc != MP_OK && rc != MP_E_NOMEM)
            print_error("allocation %ld: %s: %s\n", n, err.where, err.msg);
        assert_true(rc == MP_OK || rc == MP_E_NOMEM);
        if (rc == MP_OK && full) {
            assert_string_equal(param_value(keys, vals, np, "train.metrics"), "[log_loss]");
            assert_string_equal(param_value(keys, vals, np, "train.hidden"), "[4]");
        } else if (rc != MP_OK) {
            assert_null(keys); /* out-parameters are written only on success */
            failures++;
        }
        mp_params_free(keys, vals, np);
        if (st) mp_stages_free(st, s->n_stages);
        mp_spec_free(s);
        if (rc == MP_OK) break;
    }
    assert_true(n < 100000);
    return failures;
}

static void test_alloc_failures(void **state) {
    (void)state;
    setenv("MP_TEST_DIR", "/data", 1);
    static const char full[] = "version: 1\n"
                               "name: demo\n"
                               "plugins: [p.so]\n"
                               "stages:\n"
                               "  - load: testload\n"
                               "    path: ${MP_TEST_DIR}/iris.csv\n"
                               "  - split: testsplit\n"
                               "  - transform: testscale\n"
                               "    name: scaler\n"
                               "  - train: testtrain\n"
                               "    hidden: [16, 8]\n"
                               "    optimizer: sgd\n"
                               "  - evaluate: testeval\n"
                               "    metrics: [accuracy, log_loss]\n"
                               "  - export: testexport\n"
                               "    path: m.mlpm\n";
    assert_true(alloc_loop(full, true) > 50); /* the loop really walked the allocations */
    /* Nested mappings and block lists only parse (a stage would refuse them). */
    static const char nested[] = "version: 1\n"
                                 "stages:\n"
                                 "  - load: testload\n"
                                 "    opts: {a: [1, 2], b: {c: d}}\n"
                                 "    cols:\n"
                                 "      - x\n"
                                 "      - y\n"
                                 "  - train: testtrain\n";
    assert_true(alloc_loop(nested, false) > 10);
    unsetenv("MP_TEST_DIR");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full),
        cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_top_level_defaults),
        cmocka_unit_test(test_plugins_relative),
        cmocka_unit_test(test_config_load_file),
        cmocka_unit_test(test_syntax_error),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_unknown_top_key),
        cmocka_unit_test(test_sweep_grid),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_anchors_refused),
        cmocka_unit_test(test_stage_kind_errors),
        cmocka_unit_test(test_stage_names),
        cmocka_unit_test(test_unknown_module),
        cmocka_unit_test(test_stage_order),
        cmocka_unit_test(test_resolve_values),
        cmocka_unit_test(test_param_forms),
        cmocka_unit_test(test_unknown_param),
        cmocka_unit_test(test_param_types),
        cmocka_unit_test(test_param_range),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_check_hook),
        cmocka_unit_test(test_bad_default),
        cmocka_unit_test(test_env_substitution),
        cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_set_named_selector),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_config_params),
        cmocka_unit_test(test_param_format),
        cmocka_unit_test(test_edit_distance),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
