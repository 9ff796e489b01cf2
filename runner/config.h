/*
 * config.h -- pipeline YAML (version 1) -> spec -> configured stages.
 *
 * Every value keeps the file:line:col it came from, so every later check can
 * name the place.  Three steps:
 *   mp_config_load()     parse YAML (libyaml), substitute ${VAR}/${VAR:-def},
 *                        check the top-level keys, version and stage kinds;
 *   mp_config_set()      apply one `--set KIND.param=value` override;
 *   mp_config_resolve()  look each stage's module up in the registry, fill its
 *                        config struct from the parameter table (unknown key
 *                        with a suggestion, wrong type, out of range, missing
 *                        required), check the stage order.
 * All errors are MP_E_CONFIG with err->where = "FILE:LINE:COL".
 */
#ifndef MP_CONFIG_H
#define MP_CONFIG_H

#include "mp.h"

typedef enum mp_value_type { MP_V_SCALAR = 1, MP_V_SEQ = 2, MP_V_MAP = 3 } mp_value_type;

/* One YAML value with its place. */
typedef struct mp_value {
    mp_value_type    type;
    char            *s;         /* scalar text (after ${VAR} substitution) */
    bool             quoted;    /* scalar was quoted: never a number or bool */
    int              line, col; /* 1-based place in the file */
    struct mp_value *items;     /* SEQ: n items; MAP: n values, keys in `keys` */
    char           **keys;      /* MAP only */
    size_t           n;
} mp_value;

typedef struct mp_spec_param {
    char     *key;
    int       line, col;        /* place of the key */
    mp_value  value;
    bool      from_cli;         /* set by --set (place is then "--set") */
} mp_spec_param;

typedef struct mp_spec_stage {
    mp_stage_kind  kind;
    char          *module;      /* "logistic_regression" */
    char          *name;        /* `name:` or NULL */
    int            line, col;   /* place of the `kind: module` key */
    mp_spec_param *params;
    size_t         n_params;
} mp_spec_stage;

typedef struct mp_spec {
    char          *file;        /* path as given */
    char          *text;        /* the file's text (stored in the run DB) */
    int            version;     /* 1 */
    char          *name;        /* pipeline name (defaults to the file's base name) */
    uint64_t       seed;        /* default 42 */
    char         **plugins;     /* paths, resolved relative to the YAML file's folder */
    size_t         n_plugins;
    mp_spec_stage *stages;
    size_t         n_stages;
    char         **overrides;   /* the --set strings applied, for the run record */
    size_t         n_overrides;
} mp_spec;

/* Parses path into *out (caller frees with mp_spec_free). */
int  mp_config_load(const char *path, mp_spec **out, mp_err *err);
/* Parses YAML text as if read from `name` (tests, stdin). */
int  mp_config_parse(const char *name, const char *text, size_t len, mp_spec **out, mp_err *err);
void mp_spec_free(mp_spec *s);

/* Applies "KIND.param=value" or "NAME.param=value" (also "seed=N",
 * "name=TEXT"); value is parsed as a YAML flow value ("[256, 128]" works). */
int  mp_config_set(mp_spec *s, const char *assignment, mp_err *err);

/* Builds n_stages configured stages (registry lookups, parameter tables,
 * order).  *out is an array the caller frees with mp_stages_free. */
int  mp_config_resolve(const mp_spec *s, mp_stage **out, mp_err *err);
void mp_stages_free(mp_stage *st, size_t n);

/* The flattened parameters of resolved stages, as "KIND.param" (or
 * "NAME.param") = value text, defaults included.  Arrays owned by caller:
 * free with mp_params_free. */
int  mp_config_params(const mp_spec *s, const mp_stage *st, char ***keys, char ***values,
                      size_t *n, mp_err *err);
void mp_params_free(char **keys, char **values, size_t n);

/* Parameter tables (runner/param.c). */
/* Fills conf from the given params (NULL-able), defaults for the rest. */
int  mp_param_fill(const mp_param *table, void *conf, const mp_spec_param *given, size_t n,
                   const char *file, const char *stage_desc, mp_err *err);
/* Frees strings and lists inside conf (not conf itself). */
void mp_param_release(const mp_param *table, void *conf);
/* Formats one filled parameter as YAML text into buf. */
void mp_param_format(const mp_param *p, const void *conf, char *buf, size_t size);
/* Type name for docs: "int", "double", "bool", "string", "enum", "int list" ... */
const char *mp_param_type_name(mp_param_type t);

/* Damerau-free Levenshtein distance, for "did you mean" suggestions. */
size_t mp_edit_distance(const char *a, const char *b);

#endif /* MP_CONFIG_H */
