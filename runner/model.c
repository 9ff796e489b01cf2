/*
 * model.c -- the model file: a trained model together with its fitted
 * transforms, the names of its input columns and classes, and where it came
 * from, in one MLPM container (artifact.h).
 *
 * Keys written (all at the top level unless noted):
 *     mlpipe_version s, created s, pipeline s (opt), run_id s (opt),
 *     algorithm s, task i, n_features i, n_outputs i, has_proba i,
 *     features s[n_features], target s (opt), classes s[] (classification),
 *     transforms i, transform.<i>.name s + what that transform's save writes
 *     under "transform.<i>.", and what the model's save writes under "model.".
 * The implementations are found again by name through the registry, so a
 * model trained by a plugin loads once that plugin is loaded.  New keys may
 * be added later without a format version bump: the loader only asks for
 * the keys it knows.
 */
#include "artifact.h"
#include "registry.h"

#include <stdio.h>
#include <string.h>

#define PLUGIN_HINT "(is it from a plugin? load it with --plugin)"

/* The writer's own failure (out of memory, disk full) is the root cause of
 * whatever vaguer message a stage's save made of it, so report that first;
 * otherwise the stage's error, with what was being saved in front. */
static int save_failed(mp_art_writer *w, const char *path, const char *what, int rc,
                       mp_err *stage_err, mp_err *err) {
    if (mp_art_writer_status(w, err) == MP_OK) {
        if (stage_err->code == MP_OK)   /* a stage that failed without saying why */
            MP_ERR(stage_err, rc, "%s failed", what);
        if (err->code == MP_OK) {
            *err = *stage_err;
            mp_err_prefix(err, "cannot save %s to '%s'", what, path);
        }
    }
    mp_art_writer_abort(w);
    return err->code;
}

int mp_model_save(const char *path, const mp_ctx *ctx, char sha256[65], long long *bytes,
                  mp_err *err) {
    const mp_model *m = ctx->model;
    const mp_dataset *ds = ctx->train;
    if (!m || !m->ops || !m->ops->save)
        return MP_ERR(err, MP_E_DATA, "cannot save '%s': no trained model that can be saved",
                      path);
    if (!ds || (ds->X.n_cols > 0 && !ds->feature_names))
        return MP_ERR(err, MP_E_DATA, "cannot save '%s': no feature names for the model", path);
    /* Transforms work in place, so the raw columns are the model's columns;
     * a mismatch would make every later prediction misread its input. */
    if (ds->X.n_cols != m->n_features)
        return MP_ERR(err, MP_E_DATA,
                      "cannot save '%s': the model takes %zu features, the data has %zu columns",
                      path, m->n_features, ds->X.n_cols);
    bool classes = m->task == MP_TASK_CLASSIFICATION;
    if (classes && ds->n_classes > 0 && !ds->class_names)
        return MP_ERR(err, MP_E_DATA, "cannot save '%s': no class names for the model", path);
    for (size_t i = 0; i < ctx->n_transforms; i++)
        if (!ctx->transforms[i].ops->save)
            return MP_ERR(err, MP_E_DATA, "cannot save '%s': transform '%s' cannot be saved",
                          path, ctx->transforms[i].ops->name);

    mp_art_writer *w;
    if (mp_art_writer_open(path, &w, err) != MP_OK) return err->code;
    /* The puts keep their first error inside the writer and turn into
     * no-ops, so they need no checks here: commit reports the error. */
    char now[32];
    mp_iso_time(now);
    mp_art_put_str(w, "mlpipe_version", MP_VERSION);
    mp_art_put_str(w, "created", now);
    if (ctx->pipeline) mp_art_put_str(w, "pipeline", ctx->pipeline);
    if (ctx->run_id) mp_art_put_str(w, "run_id", ctx->run_id);
    mp_art_put_str(w, "algorithm", m->ops->name);
    mp_art_put_int(w, "task", (long long)m->task);
    mp_art_put_int(w, "n_features", (long long)m->n_features);
    mp_art_put_int(w, "n_outputs", (long long)m->n_outputs);
    mp_art_put_int(w, "has_proba", m->has_proba ? 1 : 0);
    mp_art_put_strs(w, "features", ds->feature_names, ds->X.n_cols);
    if (ds->target_name) mp_art_put_str(w, "target", ds->target_name);
    if (classes) mp_art_put_strs(w, "classes", ds->class_names, ds->n_classes);
    mp_art_put_int(w, "transforms", (long long)ctx->n_transforms);

    mp_err stage_err = { 0 };
    for (size_t i = 0; i < ctx->n_transforms; i++) {
        const mp_transform *t = &ctx->transforms[i];
        char key[64], prefix[64], what[160];
        snprintf(key, sizeof key, "transform.%zu.name", i);
        snprintf(prefix, sizeof prefix, "transform.%zu.", i);
        mp_art_put_str(w, key, t->ops->name);
        int rc = t->ops->save(t->state, w, prefix, &stage_err);
        if (rc != MP_OK) {
            snprintf(what, sizeof what, "transform '%s'", t->ops->name);
            return save_failed(w, path, what, rc, &stage_err, err);
        }
    }
    int rc = m->ops->save(m, w, "model.", &stage_err);
    if (rc != MP_OK) {
        char what[160];
        snprintf(what, sizeof what, "model '%s'", m->ops->name);
        return save_failed(w, path, what, rc, &stage_err, err);
    }
    return mp_art_writer_commit(w, sha256, bytes, err);
}

/* ---------------------------------------------------------------- load */

static void free_strs(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) mp_free(v[i]);
    mp_free(v);
}

void mp_model_file_free(mp_model_file *mf) {
    if (!mf) return;
    if (mf->model && mf->model->state) mp_model_free(mf->model);
    else mp_free(mf->model);        /* load failed: no state for free_state to see */
    for (size_t i = 0; i < mf->n_transforms; i++) {
        const mp_transform *t = &mf->transforms[i];
        if (t->state && t->ops && t->ops->free_state) t->ops->free_state(t->state);
    }
    mp_free(mf->transforms);
    free_strs(mf->feature_names, mf->n_features);
    free_strs(mf->class_names, mf->n_classes);
    mp_free(mf->target_name);
    mp_free(mf->algorithm);
    mp_free(mf->pipeline);
    mp_free(mf->run_id);
    mp_free(mf->created);
    mp_free(mf->mlpipe_version);
    mp_free(mf);
}

/* A copy of the string under key; an absent optional key gives NULL. */
static int dup_str(mp_art_reader *r, const char *path, const char *key, bool optional,
                   char **out, mp_err *err) {
    const char *s;
    if (optional && !mp_art_has(r, key)) {
        *out = NULL;
        return MP_OK;
    }
    if (mp_art_get_str(r, key, &s, err) != MP_OK) return err->code;
    if (!(*out = mp_strdup(s))) return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", path);
    return MP_OK;
}

/* An integer key that must lie in [lo, hi]. */
static int get_range(mp_art_reader *r, const char *path, const char *key, long long lo,
                     long long hi, long long *out, mp_err *err) {
    if (mp_art_get_int(r, key, out, err) != MP_OK) return err->code;
    if (*out < lo || *out > hi)
        return MP_ERR(err, MP_E_PARSE, "'%s': key '%s' is %lld, expected %lld..%lld", path, key,
                      *out, lo, hi);
    return MP_OK;
}

int mp_model_load(const char *path, mp_model_file **out, mp_err *err) {
    mp_art_reader *r = NULL;
    mp_model_file *mf = NULL;
    long long task, n_features, n_outputs, has_proba, n_tr;
    char key[64], prefix[64];

    if (mp_art_reader_open(path, &r, err) != MP_OK) return err->code;
    if (!(mf = mp_calloc(1, sizeof *mf))) {
        MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", path);
        goto fail;
    }
    /* Find every implementation before loading any state, so a missing
     * plugin is reported at once and plainly. */
    if (dup_str(r, path, "algorithm", false, &mf->algorithm, err) != MP_OK) goto fail;
    const mp_model_ops *ops = mp_registry_model(mf->algorithm);
    if (!ops) {
        MP_ERR(err, MP_E_PARSE, "'%s' needs algorithm '%s', which this mlpipe does not have "
               PLUGIN_HINT, path, mf->algorithm);
        goto fail;
    }
    if (get_range(r, path, "task", MP_TASK_NONE, MP_TASK_CLUSTERING, &task, err) != MP_OK ||
        get_range(r, path, "n_features", 0, 1LL << 40, &n_features, err) != MP_OK ||
        get_range(r, path, "n_outputs", 1, 1LL << 40, &n_outputs, err) != MP_OK ||
        get_range(r, path, "has_proba", 0, 1, &has_proba, err) != MP_OK ||
        get_range(r, path, "transforms", 0, 1 << 20, &n_tr, err) != MP_OK)
        goto fail;
    if (n_tr > 0 && !(mf->transforms = mp_calloc((size_t)n_tr, sizeof *mf->transforms))) {
        MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", path);
        goto fail;
    }
    mf->n_transforms = (size_t)n_tr;  /* states stay NULL until loaded: free is safe */
    for (size_t i = 0; i < mf->n_transforms; i++) {
        const char *name;
        snprintf(key, sizeof key, "transform.%zu.name", i);
        if (mp_art_get_str(r, key, &name, err) != MP_OK) goto fail;
        if (!(mf->transforms[i].ops = mp_registry_transform(name))) {
            MP_ERR(err, MP_E_PARSE, "'%s' needs transform '%s', which this mlpipe does not have "
                   PLUGIN_HINT, path, name);
            goto fail;
        }
    }

    size_t n_names = 0;
    if (mp_art_get_strs(r, "features", &mf->feature_names, &n_names, err) != MP_OK) goto fail;
    mf->n_features = n_names;
    if (n_names != (size_t)n_features) {
        MP_ERR(err, MP_E_PARSE, "'%s': %zu feature names for %lld features", path, n_names,
               n_features);
        goto fail;
    }
    if (task == MP_TASK_CLASSIFICATION &&
        mp_art_get_strs(r, "classes", &mf->class_names, &mf->n_classes, err) != MP_OK)
        goto fail;
    if (dup_str(r, path, "target", true, &mf->target_name, err) != MP_OK ||
        dup_str(r, path, "pipeline", true, &mf->pipeline, err) != MP_OK ||
        dup_str(r, path, "run_id", true, &mf->run_id, err) != MP_OK ||
        dup_str(r, path, "created", false, &mf->created, err) != MP_OK ||
        dup_str(r, path, "mlpipe_version", false, &mf->mlpipe_version, err) != MP_OK)
        goto fail;

    for (size_t i = 0; i < mf->n_transforms; i++) {
        void *state = NULL;
        snprintf(prefix, sizeof prefix, "transform.%zu.", i);
        if (mf->transforms[i].ops->load(r, prefix, mf->n_features, &state, err) != MP_OK)
            goto fail;
        mf->transforms[i].state = state;
    }
    mp_model *m = mp_calloc(1, sizeof *m);
    if (!m) {
        MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", path);
        goto fail;
    }
    m->ops = ops;
    m->task = (mp_task)task;
    m->n_features = (size_t)n_features;
    m->n_outputs = (size_t)n_outputs;
    m->has_proba = has_proba != 0;
    mf->model = m;
    if (ops->load(m, r, "model.", err) != MP_OK) goto fail;

    memcpy(mf->sha256, mp_art_reader_sha256(r), sizeof mf->sha256);
    mp_art_reader_free(r);
    *out = mf;
    return MP_OK;
fail:
    mp_model_file_free(mf);
    mp_art_reader_free(r);
    return err->code;
}

int mp_model_file_scores(const mp_model_file *mf, mp_matrix *X, mp_matrix *out, mp_err *err) {
    const mp_model *m = mf->model;
    if (X->n_cols != mf->n_features)
        return MP_ERR(err, MP_E_DATA, "the model takes %zu feature columns, the input has %zu",
                      mf->n_features, X->n_cols);
    if (mp_transform_chain_apply(mf->transforms, mf->n_transforms, X, err) != MP_OK)
        return err->code;
    mp_matrix res = { 0 };
    if (mp_matrix_init(&res, X->n_rows, m->n_outputs, err) != MP_OK) return err->code;
    if (m->ops->predict(m, X, &res, err) != MP_OK) {
        mp_matrix_release(&res);
        return err->code;
    }
    *out = res;
    return MP_OK;
}
