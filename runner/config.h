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
    int       line, col;        /* place of the key (0 when from_cli) */
    mp_value  value;
    bool      from_cli;         /* set by --set (place is then "--set") */
    char     *set_text;         /* from_cli: "KEY=VALUE" as given to --set (owned), so errors
                                   found later can say where = "--set KEY=VALUE"; else NULL */
} mp_spec_param;

typedef struct mp_spec_stage {
    mp_stage_kind  kind;
    char          *module;      /* "logistic_regression" */
    char          *name;        /* `name:` or NULL */
    int            line, col;   /* place of the `kind: module` key */
    int            module_line, module_col; /* place of the module name (the key's value) */
    mp_spec_param *params;
    size_t         n_params;
} mp_spec_stage;

/* One axis of a `sweep:` grid: a --set key and its values as YAML text. */
typedef struct mp_sweep_axis {
    char   *key;            /* "train.learning_rate" */
    char  **values;         /* n values, YAML flow text */
    size_t  n;
    int     line, col;      /* place of the value list */
} mp_sweep_axis;

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
    mp_sweep_axis *sweep;       /* `sweep:` axes, or NULL */
    size_t         n_sweep;
    size_t         n_points;    /* product of the axes' sizes (0 without a sweep) */
} mp_spec;

/* Parses path into *out (caller frees with mp_spec_free).  Unreadable file:
 * MP_E_IO; anything wrong in it: MP_E_CONFIG with where = "PATH:LINE:COL". */
int  mp_config_load(const char *path, mp_spec **out, mp_err *err);
/* Parses YAML text as if read from `name` (tests, stdin). */
int  mp_config_parse(const char *name, const char *text, size_t len, mp_spec **out, mp_err *err);
void mp_spec_free(mp_spec *s);

/* The --set strings ("KEY=VALUE") of sweep point index (0-based, last axis
 * varying fastest).  *sets is an array of *n strings the caller frees (each,
 * then the array).  MP_E_USAGE when index >= s->n_points. */
int  mp_config_sweep_point(const mp_spec *s, size_t index, char ***sets, size_t *n, mp_err *err);

/* Applies "KIND.param=value" or "NAME.param=value" (also "seed=N",
 * "name=TEXT"); value is parsed as a YAML flow value ("[256, 128]" works).
 * The parameter is replaced or added (from_cli = true) and the string is
 * appended to s->overrides; on failure s is unchanged.  No '=', or no '.' in
 * a stage key: MP_E_USAGE.  Unknown or ambiguous stage, bad seed/name value:
 * MP_E_CONFIG with where = "--set KEY=VALUE".  The parameter itself is checked
 * against the module's table later, by mp_config_resolve (same where).
 * ${VAR} is not substituted here: the shell has already expanded the line. */
int  mp_config_set(mp_spec *s, const char *assignment, mp_err *err);

/* Builds n_stages configured stages (registry lookups, parameter tables,
 * order).  *out is an array the caller frees with mp_stages_free; it is
 * written only on success.  Plugins named in s->plugins must be loaded first. */
int  mp_config_resolve(const mp_spec *s, mp_stage **out, mp_err *err);
void mp_stages_free(mp_stage *st, size_t n);

/* The flattened parameters of resolved stages, as "KIND.param" (or
 * "NAME.param") = value text, defaults included.  Arrays owned by caller:
 * free with mp_params_free.  st must come from mp_config_resolve(s).
 * The prefix is the stage's `name:`, else its kind; the 2nd, 3rd ... unnamed
 * stage of one kind get "transform2", "transform3".  Each stage also gets a
 * "PREFIX.module" row (unless its table declares a parameter named module). */
int  mp_config_params(const mp_spec *s, const mp_stage *st, char ***keys, char ***values,
                      size_t *n, mp_err *err);
void mp_params_free(char **keys, char **values, size_t n);

/* Parameter tables (runner/param.c). */
/* Fills conf (zero-initialised, e.g. mp_calloc'd) from the given params
 * (NULL-able), defaults for the rest.  stage_desc names the stage in
 * messages ("train: logistic_regression"); file is used for places.
 * Errors are MP_E_CONFIG (or MP_E_NOMEM); where = the value's "FILE:LINE:COL"
 * or "--set KEY=VALUE".  Errors that belong to no single value (a missing
 * required parameter, a bad default in the table) leave where empty for the
 * caller to fill with the stage's place.  On failure conf is released again
 * (every string and list freed, pointers NULL).
 * Defaults: numbers, bools and lists are parsed as YAML ("0.1", "true",
 * "[accuracy, f1_macro]"); string and enum defaults are taken literally
 * (so "," or "#" need no quoting in a table). */
int  mp_param_fill(const mp_param *table, void *conf, const mp_spec_param *given, size_t n,
                   const char *file, const char *stage_desc, mp_err *err);
/* Frees strings and lists inside conf (not conf itself) and zeroes them, so it
 * is safe twice and on a partially filled, zero-initialised conf. */
void mp_param_release(const mp_param *table, void *conf);
/* Formats one filled parameter as YAML text into buf (always NUL-terminated
 * when size > 0).  Returns the length of the full text, like snprintf, so a
 * result >= size means it was cut short.  Doubles use the shortest text that
 * reads back exactly; strings are quoted only where YAML needs it. */
size_t mp_param_format(const mp_param *p, const void *conf, char *buf, size_t size);
/* Type name for docs: "int", "double", "bool", "string", "enum", "int list" ... */
const char *mp_param_type_name(mp_param_type t);

/* Damerau-free Levenshtein distance, for "did you mean" suggestions.
 * Words longer than 127 bytes count as far from everything but themselves. */
size_t mp_edit_distance(const char *a, const char *b);
/* The candidate nearest to word (n entries, NULLs skipped) when it is a
 * plausible typo of it (a few edits, relative to word's length), else NULL. */
const char *mp_nearest(const char *word, const char *const *cands, size_t n);

/* YAML values (runner/config.c; param.c uses them for defaults). */
/* Parses text as one YAML value ("0.1", "[a, b]", "'x'") into *out (caller
 * releases with mp_value_release); empty text gives an empty plain scalar.
 * Errors: MP_E_CONFIG with where = `where` ("" leaves it empty), MP_E_NOMEM. */
int  mp_value_parse(const char *text, const char *where, mp_value *out, mp_err *err);
/* Frees everything inside v and zeroes it (v itself is not freed). */
void mp_value_release(mp_value *v);
/* Describes v for messages: "'1.5'", "'3' (a quoted string)", "a list",
 * "a mapping", "nothing" (an empty plain scalar).  Returns buf. */
const char *mp_value_what(const mp_value *v, char *buf, size_t size);

#endif /* MP_CONFIG_H */
