/*
 * registry.c -- the stage table: built-in modules and loaded plugins.
 *
 * Adding a built-in stage: write stages/<name>.c exporting a const
 * mp_stage_ops, add one extern line and one row to `builtins` below.
 * Lookup is a linear scan by (kind, name); there are a few dozen entries.
 *
 * Plugins are .so files exporting MP_PLUGIN_ENTRY, a function returning a
 * NULL-terminated array of stage tables.  Each entry is checked (ABI version,
 * kind, name clash, required hooks) before any is added, so a bad plugin adds
 * nothing.  Handles stay open until shutdown because the tables live in them.
 */
#include "registry.h"

#include <dlfcn.h>
#include <string.h>

#include "config.h"

extern const mp_stage_ops mp_stage_load_csv;
extern const mp_stage_ops mp_stage_split_holdout;
extern const mp_stage_ops mp_stage_standardize;
extern const mp_stage_ops mp_stage_minmax;
extern const mp_stage_ops mp_stage_logistic_regression;
extern const mp_stage_ops mp_stage_eval_classification;
extern const mp_stage_ops mp_stage_export_model;
extern const mp_stage_ops mp_stage_load_idx;
extern const mp_stage_ops mp_stage_load_synthetic;
extern const mp_stage_ops mp_stage_load_sqlite;
extern const mp_stage_ops mp_stage_linear_regression;
extern const mp_stage_ops mp_stage_linear_svm;
extern const mp_stage_ops mp_stage_mlp;
extern const mp_stage_ops mp_stage_kmeans;
extern const mp_stage_ops mp_stage_eval_regression;
extern const mp_stage_ops mp_stage_eval_clustering;

static const mp_stage_ops *const builtins[] = {
    &mp_stage_load_csv,
    &mp_stage_load_idx,
    &mp_stage_load_synthetic,
    &mp_stage_load_sqlite,
    &mp_stage_split_holdout,
    &mp_stage_standardize,
    &mp_stage_minmax,
    &mp_stage_logistic_regression,
    &mp_stage_linear_regression,
    &mp_stage_linear_svm,
    &mp_stage_mlp,
    &mp_stage_kmeans,
    &mp_stage_eval_classification,
    &mp_stage_eval_regression,
    &mp_stage_eval_clustering,
    &mp_stage_export_model,
};
#define N_BUILTINS (sizeof builtins / sizeof *builtins)

#define MAX_PLUGIN_STAGES 256
#define MAX_PLUGINS 32
static const mp_stage_ops *plugin_stages[MAX_PLUGIN_STAGES];
static size_t n_plugin_stages;
static void *handles[MAX_PLUGINS];
static char *handle_paths[MAX_PLUGINS];
static size_t n_handles;

static const char *const kind_names[] = { "load", "split", "transform", "train", "evaluate",
                                          "export" };
_Static_assert(sizeof kind_names / sizeof *kind_names == MP_KIND_COUNT, "kind_names");

const char *mp_kind_name(mp_stage_kind k) {
    return (unsigned)k < MP_KIND_COUNT ? kind_names[k] : "?";
}

int mp_kind_parse(const char *s) {
    for (int i = 0; i < MP_KIND_COUNT; i++)
        if (strcmp(s, kind_names[i]) == 0) return i;
    return -1;
}

size_t mp_registry_count(void) { return N_BUILTINS + n_plugin_stages; }

const mp_stage_ops *mp_registry_at(size_t i) {
    if (i < N_BUILTINS) return builtins[i];
    i -= N_BUILTINS;
    return i < n_plugin_stages ? plugin_stages[i] : NULL;
}

const mp_stage_ops *mp_registry_find(mp_stage_kind kind, const char *name) {
    for (size_t i = 0; i < mp_registry_count(); i++) {
        const mp_stage_ops *s = mp_registry_at(i);
        if (s->kind == kind && strcmp(s->name, name) == 0) return s;
    }
    return NULL;
}

const char *mp_registry_suggest(mp_stage_kind kind, const char *name) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < mp_registry_count(); i++) {
        const mp_stage_ops *s = mp_registry_at(i);
        if (s->kind != kind) continue;
        size_t d = mp_edit_distance(name, s->name);
        if (d < best_d) {
            best_d = d;
            best = s->name;
        }
    }
    /* Suggest only plausible typos: at most a third of the name changed. */
    size_t len = strlen(name);
    return best && best_d <= (len < 6 ? 2 : len / 3 + 1) ? best : NULL;
}

const mp_model_ops *mp_registry_model(const char *name) {
    for (size_t i = 0; i < mp_registry_count(); i++) {
        const mp_stage_ops *s = mp_registry_at(i);
        if (s->model && strcmp(s->model->name, name) == 0) return s->model;
    }
    return NULL;
}

const mp_transform_ops *mp_registry_transform(const char *name) {
    for (size_t i = 0; i < mp_registry_count(); i++) {
        const mp_stage_ops *s = mp_registry_at(i);
        if (s->transform && strcmp(s->transform->name, name) == 0) return s->transform;
    }
    return NULL;
}

/* Checks one plugin entry; the message says which rule it broke. */
static int check_entry(const char *path, size_t idx, const mp_stage_ops *s,
                       const mp_stage_ops *const *batch, mp_err *err) {
    if (s->abi != MP_STAGE_ABI)
        return MP_ERR(err, MP_E_PLUGIN,
                      "plugin '%s': stage #%zu was built for stage ABI %d, this mlpipe has ABI %d "
                      "(rebuild the plugin against this mlpipe's mp_stage.h)",
                      path, idx, s->abi, MP_STAGE_ABI);
    if (!s->name || !s->name[0] || (unsigned)s->kind >= MP_KIND_COUNT || !s->run)
        return MP_ERR(err, MP_E_PLUGIN,
                      "plugin '%s': stage #%zu lacks a name, a valid kind or a run function",
                      path, idx);
    if (s->kind == MP_KIND_TRANSFORM && (!s->transform || !s->transform->apply ||
                                         !s->transform->save || !s->transform->load))
        return MP_ERR(err, MP_E_PLUGIN, "plugin '%s': transform '%s' lacks transform ops", path,
                      s->name);
    if (s->kind == MP_KIND_TRAIN && (!s->model || !s->model->predict || !s->model->save ||
                                     !s->model->load))
        return MP_ERR(err, MP_E_PLUGIN, "plugin '%s': train module '%s' lacks model ops", path,
                      s->name);
    if (mp_registry_find(s->kind, s->name))
        return MP_ERR(err, MP_E_PLUGIN,
                      "plugin '%s': %s module '%s' clashes with a module already registered",
                      path, mp_kind_name(s->kind), s->name);
    for (size_t j = 0; j < idx; j++)
        if (batch[j]->kind == s->kind && strcmp(batch[j]->name, s->name) == 0)
            return MP_ERR(err, MP_E_PLUGIN, "plugin '%s': module '%s' is listed twice", path,
                          s->name);
    return MP_OK;
}

int mp_registry_add(const mp_stage_ops *const *list, const char *origin, mp_err *err) {
    size_t n = 0;
    while (list && list[n]) {
        if (check_entry(origin, n, list[n], list, err) != MP_OK) return err->code;
        n++;
    }
    if (n == 0 || n_plugin_stages + n > MAX_PLUGIN_STAGES)
        return MP_ERR(err, MP_E_PLUGIN, "plugin '%s': %s", origin,
                      n == 0 ? "no stages" : "too many stages");
    for (size_t i = 0; i < n; i++) plugin_stages[n_plugin_stages++] = list[i];
    return MP_OK;
}

int mp_registry_load_plugin(const char *path, mp_err *err) {
    for (size_t i = 0; i < n_handles; i++)
        if (strcmp(handle_paths[i], path) == 0) return MP_OK; /* already loaded */
    if (n_handles == MAX_PLUGINS)
        return MP_ERR(err, MP_E_PLUGIN, "plugin '%s': more than %d plugins", path, MAX_PLUGINS);
    /* dlopen searches the library path for a bare name; "./x.so" is what users mean. */
    char buf[4096];
    const char *open_path = path;
    if (!strchr(path, '/')) {
        snprintf(buf, sizeof buf, "./%s", path);
        open_path = buf;
    }
    void *h = dlopen(open_path, RTLD_NOW | RTLD_LOCAL);
    if (!h) return MP_ERR(err, MP_E_PLUGIN, "cannot load plugin '%s': %s", path, dlerror());
    mp_plugin_entry_fn entry;
    *(void **)&entry = dlsym(h, MP_PLUGIN_ENTRY);
    if (!entry) {
        MP_ERR(err, MP_E_PLUGIN, "plugin '%s' has no '%s' entry point", path, MP_PLUGIN_ENTRY);
        dlclose(h);
        return err->code;
    }
    const mp_stage_ops *const *list = entry();
    if (mp_registry_add(list, path, err) != MP_OK) {
        dlclose(h);
        return err->code;
    }
    char *p = mp_strdup(path);
    if (!p) {
        dlclose(h);
        return MP_ERR(err, MP_E_NOMEM, "out of memory loading plugin '%s'", path);
    }
    handle_paths[n_handles] = p;
    handles[n_handles++] = h;
    mp_log(MP_LOG_DEBUG, "registry: loaded plugin '%s'", path);
    return MP_OK;
}

void mp_registry_shutdown(void) {
    n_plugin_stages = 0;
    for (size_t i = 0; i < n_handles; i++) {
        dlclose(handles[i]);
        mp_free(handle_paths[i]);
    }
    n_handles = 0;
}
