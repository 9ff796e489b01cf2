/*
 * registry.h -- the table of stage modules: built-ins plus loaded plugins.
 *
 * Built-ins sit in one static table in registry.c (adding a stage = one
 * extern line and one row).  Plugins add modules through the entry point
 * MP_PLUGIN_ENTRY; every module is checked for abi == MP_STAGE_ABI and name
 * clashes before any is added.  Handles stay open until mp_registry_shutdown.
 */
#ifndef MP_REGISTRY_H
#define MP_REGISTRY_H

#include "mp.h"

const char *mp_kind_name(mp_stage_kind k);            /* "load", "train", ... */
int         mp_kind_parse(const char *s);             /* -1 when unknown */

const mp_stage_ops *mp_registry_find(mp_stage_kind kind, const char *name);
/* The nearest module name of that kind, for "did you mean"; NULL if none close. */
const char *mp_registry_suggest(mp_stage_kind kind, const char *name);
size_t      mp_registry_count(void);
const mp_stage_ops *mp_registry_at(size_t i);

/* Model and transform implementations by name (from model files). */
const mp_model_ops     *mp_registry_model(const char *name);
const mp_transform_ops *mp_registry_transform(const char *name);

/* Loads a plugin .so (MP_E_PLUGIN naming path and dlerror() on failure). */
int  mp_registry_load_plugin(const char *path, mp_err *err);
/* Adds a NULL-terminated list of stage tables (checked as plugin entries are;
 * origin names them in errors).  Used by the plugin loader and by tests. */
int  mp_registry_add(const mp_stage_ops *const *list, const char *origin, mp_err *err);
/* Forgets added stages and closes plugin handles. */
void mp_registry_shutdown(void);

#endif /* MP_REGISTRY_H */
