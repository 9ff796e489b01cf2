/*
 * log1p.c -- an example mlpipe plugin: `transform: log1p`.
 *
 * Compresses heavy-tailed, non-negative features (counts, incomes) with
 * x' = sign(x) * log(1 + |x|).  The transform has nothing to fit, but it is a
 * real transform all the same: it is saved into the model file by name, so
 * `mlpipe predict --plugin log1p.so` applies it to raw rows.
 *
 * Build: make plugins  (cc -shared -fPIC -Istages log1p.c -o log1p.so)
 * Use:   plugins: [log1p.so]  at the top of a pipeline, or --plugin PATH.
 * It builds against stages/mp_stage.h alone and calls back into mlpipe's
 * exported mp_* functions.
 */
#include "mp_stage.h"

#include <math.h>
#include <stdio.h>

typedef struct log1p_conf {
    double scale;   /* x is multiplied by this before the log */
} log1p_conf;

typedef struct log1p_state {
    size_t n_cols;
    double scale;
} log1p_state;

static int log1p_fit(const void *conf, const mp_matrix *X, void **state, mp_err *err) {
    log1p_state *s = mp_malloc(sizeof *s);
    if (!s) return MP_ERR(err, MP_E_NOMEM, "log1p: out of memory");
    s->n_cols = X->n_cols;
    s->scale = ((const log1p_conf *)conf)->scale;
    *state = s;
    return MP_OK;
}

static int log1p_apply(const void *state, mp_matrix *X, mp_err *err) {
    const log1p_state *s = state;
    if (X->n_cols != s->n_cols)
        return MP_ERR(err, MP_E_DATA, "log1p: fitted on %zu columns, got %zu", s->n_cols, X->n_cols);
    float sc = (float)s->scale;
    size_t n = X->n_rows * X->n_cols;
    for (size_t i = 0; i < n; i++) {
        float v = X->data[i] * sc;
        X->data[i] = v < 0 ? -log1pf(-v) : log1pf(v);
    }
    return MP_OK;
}

static int log1p_save(const void *state, mp_art_writer *w, const char *prefix, mp_err *err) {
    const log1p_state *s = state;
    char key[256];
    snprintf(key, sizeof key, "%sscale", prefix);
    if (mp_art_put_double(w, key, s->scale) != MP_OK)
        return MP_ERR(err, MP_E_IO, "log1p: cannot write '%s'", key);
    return MP_OK;
}

static int log1p_load(mp_art_reader *r, const char *prefix, size_t n_cols, void **state,
                      mp_err *err) {
    log1p_state *s = mp_malloc(sizeof *s);
    if (!s) return MP_ERR(err, MP_E_NOMEM, "log1p: out of memory");
    char key[256];
    snprintf(key, sizeof key, "%sscale", prefix);
    s->n_cols = n_cols;
    if (mp_art_get_double(r, key, &s->scale, err) != MP_OK) {
        mp_free(s);
        return err->code;
    }
    *state = s;
    return MP_OK;
}

static void log1p_free(void *state) { mp_free(state); }

static const mp_transform_ops log1p_ops = {
    .name = "log1p", .fit = log1p_fit, .apply = log1p_apply, .save = log1p_save,
    .load = log1p_load, .free_state = log1p_free,
};

static const mp_param log1p_params[] = {
    { "scale", MP_P_DOUBLE, offsetof(log1p_conf, scale), "1", MP_PF_RANGE | MP_PF_MIN_OPEN,
      0.0, HUGE_VAL, NULL, "multiply features by this before taking the log" },
    { 0 }
};

static const mp_stage_ops log1p_stage = {
    .abi = MP_STAGE_ABI, .name = "log1p", .kind = MP_KIND_TRANSFORM,
    .doc = "compress heavy-tailed features: sign(x) * log(1 + |scale * x|) (example plugin)",
    .params = log1p_params, .conf_size = sizeof(log1p_conf),
    .run = mp_transform_stage_run, .transform = &log1p_ops,
};

static const mp_stage_ops *const stages[] = { &log1p_stage, NULL };

const mp_stage_ops *const *mp_plugin_stages(void) { return stages; }
