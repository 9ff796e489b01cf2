# Plugins: the example log1p transform end to end, and the loader's checks.

test_plugin_pipeline_and_predict() {
    run_ml run examples/plugins/randhie-log1p.yaml --db "$DB"
    expect_exit 0 || return 1
    sql_eq "SELECT count(*) FROM stages WHERE module = 'log1p' AND status = 'finished'" "1" || return 1
    sql_ge "SELECT value FROM metrics WHERE key = 'test.roc_auc'" 0.6 || return 1
    local m="$T/artifacts/randhie-any-visit.mlpm"
    grep -q '^transform.0.name s 1 log1p$' "$m" || fail "model file lacks the log1p transform" || return 1
    run_ml predict "$m" examples/data/randhie-visits.csv
    expect_exit 1 || return 1
    expect_err "--plugin" || return 1
    run_ml predict "$m" examples/data/randhie-visits.csv --plugin examples/plugins/log1p.so
    expect_exit 0 || return 1
    [ "$(wc -l < "$T/out")" -eq 20191 ] || fail "expected 20191 lines" || return 1
    run_ml stages log1p --plugin examples/plugins/log1p.so
    expect_exit 0 || return 1
    expect_out "scale" || return 1
}

# build_plugin NAME ABI MODULE: compiles a one-transform plugin into $T.
build_plugin() {
    cat >"$T/$1.c" <<C
#include "mp_stage.h"
static int fit(const void *c, const mp_matrix *X, void **s, mp_err *e) { (void)c; (void)X; (void)e; *s = 0; return 0; }
static int apply(const void *s, mp_matrix *X, mp_err *e) { (void)s; (void)X; (void)e; return 0; }
static int save(const void *s, mp_art_writer *w, const char *p, mp_err *e) { (void)s; (void)w; (void)p; (void)e; return 0; }
static int load(mp_art_reader *r, const char *p, size_t n, void **s, mp_err *e) { (void)r; (void)p; (void)n; (void)e; *s = 0; return 0; }
static const mp_transform_ops ops = { .name = "$3", .fit = fit, .apply = apply, .save = save, .load = load };
static const mp_param params[] = { { 0 } };
static const mp_stage_ops st = { .abi = $2, .name = "$3", .kind = MP_KIND_TRANSFORM, .params = params,
    .run = mp_transform_stage_run, .transform = &ops };
static const mp_stage_ops *const list[] = { &st, 0 };
const mp_stage_ops *const *mp_plugin_stages(void) { return list; }
C
    cc -std=c11 -shared -fPIC -Istages -o "$T/$1.so" "$T/$1.c" || fail "cannot build test plugin"
}

test_plugin_abi_mismatch_refused() {
    build_plugin old 99 identity || return 1
    run_ml validate pipelines/iris-logreg.yaml --plugin "$T/old.so"
    expect_exit 2 || return 1
    expect_err "ABI 99" || return 1
    expect_err "$T/old.so" || return 1
}

test_plugin_name_clash_refused() {
    build_plugin clash MP_STAGE_ABI standardize || return 1
    run_ml validate pipelines/iris-logreg.yaml --plugin "$T/clash.so"
    expect_exit 2 || return 1
    expect_err "clashes" || return 1
}

test_plugin_missing_file() {
    run_ml validate pipelines/iris-logreg.yaml --plugin "$T/nope.so"
    expect_exit 2 || return 1
    expect_err "cannot load plugin '$T/nope.so'" || return 1
}
