/*
 * transform.c -- what every transform stage does with its fitted transform.
 *
 * Fitting happens on the training rows only (so no statistics of the test
 * rows leak into training), then the same fitted state is applied to train
 * and test and appended to the context's chain, which export saves into the
 * model file so predict and serve can take raw rows.
 */
#include "mp.h"

int mp_transform_stage_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const mp_transform_ops *t = st->ops->transform;
    if (!ctx->train || ctx->train->X.n_rows == 0)
        return MP_ERR(err, MP_E_DATA, "transform '%s' has no training rows to fit on", t->name);
    if (ctx->model)
        return MP_ERR(err, MP_E_DATA, "transform '%s' after the model was trained", t->name);
    mp_transform *chain = mp_realloc(ctx->transforms, (ctx->n_transforms + 1) * sizeof *chain);
    if (!chain) return MP_ERR(err, MP_E_NOMEM, "out of memory for transform '%s'", t->name);
    ctx->transforms = chain;
    void *state = NULL;
    if (t->fit) {
        if (t->fit(st->conf, &ctx->train->X, &state, err) != MP_OK) return err->code;
    }
    if (t->apply(state, &ctx->train->X, err) != MP_OK ||
        (ctx->test && t->apply(state, &ctx->test->X, err) != MP_OK)) {
        if (t->free_state) t->free_state(state);
        return err->code;
    }
    chain[ctx->n_transforms].ops = t;
    chain[ctx->n_transforms].state = state;
    ctx->n_transforms++;
    mp_log(MP_LOG_INFO, "%s: fitted on %zu rows x %zu columns", t->name, ctx->train->X.n_rows,
           ctx->train->X.n_cols);
    return MP_OK;
}
