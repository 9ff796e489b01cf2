/*
 * config.c -- pipeline YAML (version 1) -> mp_spec -> configured stages.
 *
 * The YAML is read as libyaml *events*, not through its document tree: events
 * carry the start mark of every key, and anchors, aliases and tags as they
 * were written, which the document API resolves away.  We need key places
 * for "unknown parameter" and "duplicate key" errors, and we refuse anchors
 * and aliases (a pipeline is short; a shared node would make "the place of a
 * value" ambiguous).  Each value keeps its 1-based line:col (libyaml's marks
 * are 0-based).
 *
 * Three steps, matching config.h:
 *   parse    events -> mp_spec (top-level keys, stage kinds and names, each
 *            parameter as a generic mp_value with its place); ${VAR} is
 *            substituted in every scalar before anything is typed;
 *   --set    overrides replace or add one parameter, parsed as YAML too;
 *   resolve  registry lookups, stage order, parameter tables (param.c).
 * Every allocation goes through mp_malloc so the tests can fail each one.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "registry.h"

#define NOMEM(err) MP_ERR((err), MP_E_NOMEM, "out of memory reading the pipeline")

/* A config error at line:col of file. */
#define FAIL_FILE(err, file, line, col, ...) \
    (MP_ERR((err), MP_E_CONFIG, __VA_ARGS__),  \
     mp_err_where((err), "%s:%d:%d", (file), (line), (col)))

static const char *const top_keys[] = { "version", "name", "seed", "plugins", "stages",
                                        "sweep" };
enum { TOP_VERSION, TOP_NAME, TOP_SEED, TOP_PLUGINS, TOP_STAGES, TOP_SWEEP, TOP_COUNT };
_Static_assert(sizeof top_keys / sizeof *top_keys == TOP_COUNT, "top_keys");

/* ---------------------------------------------------------------- values */

/* Ownership: an mp_spec owns every string and array below it; values move
 * (pointer copied, source set to NULL) from the parser into the spec rather
 * than being copied, so each release function frees exactly what it holds
 * and zeroes it, making a second release harmless. */

void mp_value_release(mp_value *v) {
    if (!v) return;
    mp_free(v->s);
    for (size_t i = 0; i < v->n; i++) {
        if (v->items) mp_value_release(&v->items[i]);
        if (v->keys) mp_free(v->keys[i]);
    }
    mp_free(v->items);
    mp_free(v->keys);
    memset(v, 0, sizeof *v);
}

static void param_release(mp_spec_param *p) {
    mp_free(p->key);
    mp_free(p->set_text);
    mp_value_release(&p->value);
    memset(p, 0, sizeof *p);
}

static void params_free(mp_spec_param *p, size_t n) {
    for (size_t i = 0; i < n; i++) param_release(&p[i]);
    mp_free(p);
}

static void stage_release(mp_spec_stage *st) {
    mp_free(st->module);
    mp_free(st->name);
    params_free(st->params, st->n_params);
    memset(st, 0, sizeof *st);
}

void mp_spec_free(mp_spec *s) {
    if (!s) return;
    mp_free(s->file);
    mp_free(s->text);
    mp_free(s->name);
    for (size_t i = 0; i < s->n_plugins; i++) mp_free(s->plugins[i]);
    mp_free(s->plugins);
    for (size_t i = 0; i < s->n_stages; i++) stage_release(&s->stages[i]);
    mp_free(s->stages);
    for (size_t i = 0; i < s->n_overrides; i++) mp_free(s->overrides[i]);
    mp_free(s->overrides);
    for (size_t i = 0; i < s->n_sweep; i++) {
        mp_free(s->sweep[i].key);
        for (size_t j = 0; j < s->sweep[i].n; j++) mp_free(s->sweep[i].values[j]);
        mp_free(s->sweep[i].values);
    }
    mp_free(s->sweep);
    mp_free(s);
}

/* Makes room for one more element in a growing array (doubling).  *arr is
 * untouched when the allocation fails. */
static bool grow(void *arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return true;
    size_t ncap = *cap ? *cap * 2 : 4;
    void *p = mp_realloc(*(void **)arr, mp_mul_size(ncap, elem));
    if (!p) return false;
    *(void **)arr = p;
    *cap = ncap;
    return true;
}

static char *memdup_str(const char *s, size_t n) {
    char *d = mp_malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

/* ---------------------------------------------------------------- reader */

typedef struct reader {
    yaml_parser_t parser;
    yaml_event_t  ev;           /* the current event, valid while have_ev */
    bool          have_ev;
    bool          parser_ok;    /* parser initialised (must be deleted) */
    const char   *file;         /* FILE in "FILE:LINE:COL" */
    const char   *fixed_where;  /* non-NULL: every error gets this where (--set, defaults) */
    bool          env;          /* substitute ${VAR} in scalars */
    mp_err       *err;
} reader;

static int line_of(const yaml_mark_t *m) { return m->line < INT32_MAX ? (int)m->line + 1 : 0; }
static int col_of(const yaml_mark_t *m) { return m->column < INT32_MAX ? (int)m->column + 1 : 0; }

/* Sets err->where to line:col (or the reader's fixed place); returns the code. */
static int at(reader *r, int line, int col) {
    if (r->fixed_where) return mp_err_where(r->err, "%s", r->fixed_where);
    return mp_err_where(r->err, "%s:%d:%d", r->file, line, col);
}

#define FAIL_AT(r, line, col, ...) \
    (MP_ERR((r)->err, MP_E_CONFIG, __VA_ARGS__), at((r), (line), (col)))
#define FAIL_MARK(r, mark, ...) FAIL_AT((r), line_of(mark), col_of(mark), __VA_ARGS__)

/* Turns libyaml's error into ours: its problem text, at its problem mark. */
static int syntax_error(reader *r) {
    yaml_parser_t *p = &r->parser;
    if (p->error == YAML_MEMORY_ERROR) return NOMEM(r->err);
    const char *problem = p->problem ? p->problem : "unknown error";
    if (p->error == YAML_READER_ERROR) {
        /* Bad encoding: libyaml knows the byte offset but no line. */
        MP_ERR(r->err, MP_E_CONFIG, "invalid YAML: %s (at byte %zu)", problem, p->problem_offset);
        return mp_err_where(r->err, "%s", r->fixed_where ? r->fixed_where : r->file);
    }
    /* A plain line with no ':' is reported at the start of the *next* line,
     * with the key being scanned as context: the context is where to look. */
    if (p->context && strcmp(p->context, "while scanning a simple key") == 0)
        FAIL_MARK(r, &p->context_mark, "invalid YAML: %s (is this a 'key: value' line?)",
                  problem);
    else if (p->context)
        FAIL_MARK(r, &p->problem_mark, "invalid YAML: %s (%s at line %d)", problem, p->context,
                  line_of(&p->context_mark));
    else
        FAIL_MARK(r, &p->problem_mark, "invalid YAML: %s", problem);
    return r->err->code;
}

/* Advances to the next event (the previous one is freed). */
static int next(reader *r) {
    if (r->have_ev) {
        yaml_event_delete(&r->ev);
        r->have_ev = false;
    }
    if (!yaml_parser_parse(&r->parser, &r->ev)) return syntax_error(r);
    r->have_ev = true;
    return MP_OK;
}

static int reader_open(reader *r, const char *text, size_t len) {
    if (!yaml_parser_initialize(&r->parser)) return NOMEM(r->err);
    r->parser_ok = true;
    yaml_parser_set_input_string(&r->parser, (const unsigned char *)text, len);
    return MP_OK;
}

static void reader_close(reader *r) {
    if (r->have_ev) yaml_event_delete(&r->ev);
    if (r->parser_ok) yaml_parser_delete(&r->parser);
    r->have_ev = r->parser_ok = false;
}

/* Refuses anchors and tags on a node (an alias is refused where it occurs).
 * The one tag allowed is !!str on a scalar: it means "this is text". */
static int check_props(reader *r, const yaml_char_t *anchor, const yaml_char_t *tag,
                       const yaml_mark_t *m, bool *is_str) {
    if (anchor)
        return FAIL_MARK(r, m, "YAML anchors and aliases are not supported ('&%s')",
                         (const char *)anchor);
    if (tag) {
        if (is_str && strcmp((const char *)tag, YAML_STR_TAG) == 0) {
            *is_str = true;
            return MP_OK;
        }
        return FAIL_MARK(r, m, "YAML tags are not supported ('%s')", (const char *)tag);
    }
    return MP_OK;
}

/* r->ev is an alias (*name): refused like anchors. */
static int alias_error(reader *r) {
    return FAIL_MARK(r, &r->ev.start_mark, "YAML anchors and aliases are not supported ('*%s')",
                     (const char *)r->ev.data.alias.anchor);
}

/* ---------------------------------------------------------------- ${VAR} */

/* A growing string; a failed allocation sets oom and later appends do nothing. */
typedef struct sbuf {
    char  *p;
    size_t n, cap;
    bool   oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 32;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = mp_realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

/* Substitutes ${VAR}, ${VAR:-default} and $$ in in[0..len) into a new string.
 * As in the shell, ":-" also applies when VAR is set but empty.  A '$' that
 * starts neither form is kept, so "costs $5" needs no escaping. */
static int substitute(reader *r, const char *in, size_t len, int line, int col, char **out) {
    sbuf b = { 0 };
    size_t i = 0;
    while (i < len) {
        const char *d = memchr(in + i, '$', len - i);
        size_t lit = d ? (size_t)(d - (in + i)) : len - i;
        sb_add(&b, in + i, lit);
        i += lit;
        if (i >= len) break;
        if (i + 1 < len && in[i + 1] == '$') { /* "$$" -> "$" */
            sb_add(&b, "$", 1);
            i += 2;
            continue;
        }
        if (i + 1 >= len || in[i + 1] != '{') {
            sb_add(&b, "$", 1);
            i++;
            continue;
        }
        size_t start = i + 2, j = start;
        while (j < len && (isalnum((unsigned char)in[j]) || in[j] == '_')) j++;
        size_t name_len = j - start, end = 0;
        const char *def = NULL;
        size_t def_len = 0;
        bool ok = name_len > 0 && name_len < 256 && !isdigit((unsigned char)in[start]);
        if (ok && j < len && in[j] == '}') {
            end = j + 1;
        } else if (ok && j + 1 < len && in[j] == ':' && in[j + 1] == '-') {
            const char *close = memchr(in + j + 2, '}', len - (j + 2));
            if (close) {
                def = in + j + 2;
                def_len = (size_t)(close - def);
                end = (size_t)(close - in) + 1;
            } else {
                ok = false;
            }
        } else {
            ok = false;
        }
        if (!ok) {
            mp_free(b.p);
            return FAIL_AT(r, line, col,
                           "invalid variable reference in '%.*s' (write ${NAME} or "
                           "${NAME:-default}; '$$' is a literal '$')",
                           (int)(len < 80 ? len : 80), in);
        }
        char name[256];
        memcpy(name, in + start, name_len);
        name[name_len] = '\0';
        const char *val = getenv(name);
        if (def && (!val || !val[0])) {
            sb_add(&b, def, def_len);
        } else if (!val) {
            mp_free(b.p);
            return FAIL_AT(r, line, col,
                           "environment variable '%s' is not set (set it, or write ${%s:-default})",
                           name, name);
        } else {
            sb_add(&b, val, strlen(val));
        }
        i = end;
    }
    if (!b.p && !b.oom) sb_add(&b, "", 0); /* empty input still gives a string */
    if (b.oom) {
        mp_free(b.p);
        return NOMEM(r->err);
    }
    *out = b.p;
    return MP_OK;
}

/* ---------------------------------------------------------------- nodes */

static int read_node(reader *r, mp_value *out);

/* Each read_* starts at the node's first event and returns with r->ev at its
 * last one (the scalar, or the end event); *out is written only on success. */

/* A scalar keeps its text (after ${VAR}) and whether it was quoted: typing
 * happens later, against the parameter table, and `epochs: "3"` must stay
 * distinguishable from `epochs: 3`.  Block scalars (| and >) count as quoted:
 * they are always text. */
static int read_scalar(reader *r, mp_value *out) {
    const yaml_event_t *e = &r->ev;
    int line = line_of(&e->start_mark), col = col_of(&e->start_mark);
    bool quoted = e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
    if (check_props(r, e->data.scalar.anchor, e->data.scalar.tag, &e->start_mark, &quoted))
        return r->err->code;
    const char *text = (const char *)e->data.scalar.value;
    size_t len = e->data.scalar.length;
    /* "\0" in a double-quoted scalar would silently cut the C string short. */
    if (memchr(text, '\0', len)) return FAIL_AT(r, line, col, "NUL character in a value");
    char *s;
    if (r->env) {
        if (substitute(r, text, len, line, col, &s) != MP_OK) return r->err->code;
    } else if (!(s = memdup_str(text, len))) {
        return NOMEM(r->err);
    }
    *out = (mp_value){ .type = MP_V_SCALAR, .s = s, .quoted = quoted, .line = line, .col = col };
    return MP_OK;
}

/* items[0..n) are always complete values, so the failure path can release
 * exactly those and nothing half-built. */
static int read_seq(reader *r, mp_value *out) {
    const yaml_event_t *e = &r->ev;
    int line = line_of(&e->start_mark), col = col_of(&e->start_mark);
    if (check_props(r, e->data.sequence_start.anchor, e->data.sequence_start.tag,
                    &e->start_mark, NULL))
        return r->err->code;
    mp_value *items = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (next(r) != MP_OK) goto fail;
        if (r->ev.type == YAML_SEQUENCE_END_EVENT) break;
        if (!grow(&items, &cap, n, sizeof *items)) {
            NOMEM(r->err);
            goto fail;
        }
        if (read_node(r, &items[n]) != MP_OK) goto fail;
        n++;
    }
    *out = (mp_value){ .type = MP_V_SEQ, .items = items, .n = n, .line = line, .col = col };
    return MP_OK;
fail:
    for (size_t i = 0; i < n; i++) mp_value_release(&items[i]);
    mp_free(items);
    return r->err->code;
}

/* Reads the key/value pairs of a mapping (r->ev at its start) as entries with
 * the keys' places, refusing duplicate and non-text keys.  Stages and the
 * generic mapping value are both built from these entries. */
static int read_entries(reader *r, mp_spec_param **out, size_t *n_out) {
    const yaml_event_t *e = &r->ev;
    if (check_props(r, e->data.mapping_start.anchor, e->data.mapping_start.tag, &e->start_mark,
                    NULL))
        return r->err->code;
    mp_spec_param *ents = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (next(r) != MP_OK) goto fail;
        e = &r->ev;
        if (e->type == YAML_MAPPING_END_EVENT) break;
        if (e->type == YAML_ALIAS_EVENT) {
            alias_error(r);
            goto fail;
        }
        if (e->type != YAML_SCALAR_EVENT) {
            FAIL_MARK(r, &e->start_mark, "a mapping key must be plain text, not a %s",
                      e->type == YAML_SEQUENCE_START_EVENT ? "list" : "mapping");
            goto fail;
        }
        mp_value k;
        bool saved_env = r->env;
        r->env = false; /* keys are names from a fixed vocabulary, never substituted */
        int rc = read_scalar(r, &k);
        r->env = saved_env;
        if (rc != MP_OK) goto fail;
        for (size_t i = 0; i < n; i++) {
            if (strcmp(ents[i].key, k.s) == 0) {
                FAIL_AT(r, k.line, k.col, "duplicate key '%s' (first at line %d)", k.s,
                        ents[i].line);
                mp_value_release(&k);
                goto fail;
            }
        }
        if (!grow(&ents, &cap, n, sizeof *ents)) {
            mp_value_release(&k);
            NOMEM(r->err);
            goto fail;
        }
        mp_spec_param *p = &ents[n];
        *p = (mp_spec_param){ .key = k.s, .line = k.line, .col = k.col };
        if (next(r) != MP_OK || read_node(r, &p->value) != MP_OK) {
            mp_free(p->key);
            goto fail;
        }
        n++;
    }
    *out = ents;
    *n_out = n;
    return MP_OK;
fail:
    params_free(ents, n);
    return r->err->code;
}

/* A generic mapping value (a parameter given as {a: 1}): entries become the
 * parallel keys/items arrays of mp_value.  No stage takes a mapping today,
 * but keeping it lets the type error name the place instead of failing in
 * the parser. */
static int read_map(reader *r, mp_value *out) {
    int line = line_of(&r->ev.start_mark), col = col_of(&r->ev.start_mark);
    mp_spec_param *ents;
    size_t n;
    if (read_entries(r, &ents, &n) != MP_OK) return r->err->code;
    char **keys = NULL;
    mp_value *items = NULL;
    if (n > 0) {
        keys = mp_calloc(n, sizeof *keys);
        items = mp_calloc(n, sizeof *items);
        if (!keys || !items) {
            mp_free(keys);
            mp_free(items);
            params_free(ents, n);
            return NOMEM(r->err);
        }
    }
    for (size_t i = 0; i < n; i++) { /* move, key places are dropped */
        keys[i] = ents[i].key;
        items[i] = ents[i].value;
    }
    mp_free(ents);
    *out = (mp_value){ .type = MP_V_MAP, .keys = keys, .items = items, .n = n, .line = line,
                       .col = col };
    return MP_OK;
}

static int read_node(reader *r, mp_value *out) {
    const yaml_event_t *e = &r->ev;
    switch (e->type) {
    case YAML_SCALAR_EVENT: return read_scalar(r, out);
    case YAML_SEQUENCE_START_EVENT: return read_seq(r, out);
    case YAML_MAPPING_START_EVENT: return read_map(r, out);
    case YAML_ALIAS_EVENT: return alias_error(r);
    default: return FAIL_MARK(r, &e->start_mark, "invalid YAML: unexpected event %d", e->type);
    }
}

/* Used for --set values and table defaults.  No ${VAR} here: a --set line
 * was already expanded by the shell, and defaults are fixed text. */
int mp_value_parse(const char *text, const char *where, mp_value *out, mp_err *err) {
    reader r = { .file = "", .fixed_where = where ? where : "", .env = false, .err = err };
    mp_value v = { 0 };
    if (reader_open(&r, text, strlen(text)) != MP_OK || next(&r) != MP_OK || next(&r) != MP_OK)
        goto fail;
    if (r.ev.type == YAML_STREAM_END_EVENT) { /* empty text or only a comment */
        v = (mp_value){ .type = MP_V_SCALAR, .s = mp_strdup(""), .line = 1, .col = 1 };
        if (!v.s) {
            NOMEM(err);
            goto fail;
        }
    } else {
        if (next(&r) != MP_OK || read_node(&r, &v) != MP_OK) goto fail;
        if (next(&r) != MP_OK || next(&r) != MP_OK) goto fail; /* document end, stream end */
        if (r.ev.type != YAML_STREAM_END_EVENT) {
            MP_ERR(err, MP_E_CONFIG, "expected one YAML value, got several documents");
            mp_err_where(err, "%s", r.fixed_where);
            goto fail;
        }
    }
    reader_close(&r);
    *out = v;
    return MP_OK;
fail:
    reader_close(&r);
    mp_value_release(&v);
    return err->code;
}

/* ---------------------------------------------------------------- top level */

/* Resolves a plugin path against the YAML file's folder, so a pipeline and
 * its plugins can move together. */
static char *plugin_path(const char *file, const char *p) {
    const char *slash = strrchr(file, '/');
    if (p[0] == '/' || !slash) return mp_strdup(p);
    size_t dl = (size_t)(slash - file) + 1, pl = strlen(p);
    char *out = mp_malloc(dl + pl + 1);
    if (!out) return NULL;
    memcpy(out, file, dl);
    memcpy(out + dl, p, pl + 1);
    return out;
}

/* The default pipeline name: the file's base name without .yaml/.yml. */
static char *default_name(const char *file) {
    const char *b = strrchr(file, '/');
    b = b ? b + 1 : file;
    size_t n = strlen(b);
    if (n > 5 && strcmp(b + n - 5, ".yaml") == 0)
        n -= 5;
    else if (n > 4 && strcmp(b + n - 4, ".yml") == 0)
        n -= 4;
    return n ? memdup_str(b, n) : mp_strdup("pipeline");
}

/* A non-negative integer scalar (version, seed); false if it is not one. */
static bool plain_uint(const mp_value *v, long long *out) {
    return v->type == MP_V_SCALAR && !v->quoted && mp_parse_long(v->s, out) && *out >= 0;
}

/* Appends v as YAML flow text ("0.1", "'text'", "[256, 128]") to buf[*len..];
 * false when it does not fit or v is a mapping. */
static bool flow_text(const mp_value *v, char *buf, size_t size, size_t *len) {
    int w;
    if (v->type == MP_V_SCALAR) {
        if (!v->quoted) {
            w = snprintf(buf + *len, size - *len, "%s", v->s);
        } else {
            /* single-quoted YAML: '' stands for ' */
            if (*len + 1 >= size) return false;
            buf[(*len)++] = '\'';
            for (const char *c = v->s; *c; c++) {
                if (*len + 3 >= size) return false;
                if (*c == '\'') buf[(*len)++] = '\'';
                buf[(*len)++] = *c;
            }
            w = snprintf(buf + *len, size - *len, "'");
        }
    } else if (v->type == MP_V_SEQ) {
        w = snprintf(buf + *len, size - *len, "[");
        if (w < 0 || (size_t)w >= size - *len) return false;
        *len += (size_t)w;
        for (size_t i = 0; i < v->n; i++) {
            if (i && (w = snprintf(buf + *len, size - *len, ", ")) > 0) *len += (size_t)w;
            if (!flow_text(&v->items[i], buf, size, len)) return false;
        }
        w = snprintf(buf + *len, size - *len, "]");
    } else {
        return false;
    }
    if (w < 0 || (size_t)w >= size - *len) return false;
    *len += (size_t)w;
    return true;
}

#define MAX_SWEEP_POINTS 100000

/* `sweep:` maps "KIND.param" (or "NAME.param", "seed") to a list of values;
 * each value is kept as YAML flow text and applied later like --set. */
static int read_sweep(reader *r, mp_spec *s, const mp_value *v) {
    char what[128];
    if (v->type != MP_V_MAP || v->n == 0)
        return FAIL_AT(r, v->line, v->col,
                       "expected a mapping of KIND.param to lists of values for 'sweep', got %s",
                       mp_value_what(v, what, sizeof what));
    if (!(s->sweep = mp_calloc(v->n, sizeof *s->sweep))) return NOMEM(r->err);
    size_t points = 1;
    for (size_t i = 0; i < v->n; i++) {
        const mp_value *list = &v->items[i];
        mp_sweep_axis *ax = &s->sweep[i];
        s->n_sweep = i + 1;
        ax->line = list->line;
        ax->col = list->col;
        if (!(ax->key = mp_strdup(v->keys[i]))) return NOMEM(r->err);
        if (!strchr(ax->key, '.') && strcmp(ax->key, "seed") != 0)
            return FAIL_AT(r, list->line, list->col,
                           "sweep key '%s' must be KIND.param, NAME.param or seed", ax->key);
        if (list->type != MP_V_SEQ || list->n == 0)
            return FAIL_AT(r, list->line, list->col,
                           "expected a non-empty list of values for sweep key '%s', got %s",
                           ax->key, mp_value_what(list, what, sizeof what));
        if (!(ax->values = mp_calloc(list->n, sizeof *ax->values))) return NOMEM(r->err);
        for (size_t j = 0; j < list->n; j++) {
            char buf[1024];
            size_t len = 0;
            if (!flow_text(&list->items[j], buf, sizeof buf, &len))
                return FAIL_AT(r, list->items[j].line, list->items[j].col,
                               "sweep value for '%s' must be a scalar or a list", ax->key);
            buf[len] = '\0';
            if (!(ax->values[j] = mp_strdup(buf))) return NOMEM(r->err);
            ax->n = j + 1;
        }
        if (points > MAX_SWEEP_POINTS / ax->n)
            return FAIL_AT(r, list->line, list->col, "sweep has more than %d points",
                           MAX_SWEEP_POINTS);
        points *= ax->n;
    }
    s->n_points = points;
    return MP_OK;
}

int mp_config_sweep_point(const mp_spec *s, size_t index, char ***sets, size_t *n, mp_err *err) {
    if (index >= s->n_points)
        return MP_ERR(err, MP_E_USAGE, "sweep index %zu is out of range (the sweep has %zu points)",
                      index, s->n_points);
    char **v = mp_calloc(s->n_sweep ? s->n_sweep : 1, sizeof *v);
    if (!v) return NOMEM(err);
    /* Mixed radix, last axis fastest: point 0 is every axis's first value. */
    size_t rest = index;
    for (size_t i = s->n_sweep; i-- > 0;) {
        const mp_sweep_axis *ax = &s->sweep[i];
        const char *val = ax->values[rest % ax->n];
        rest /= ax->n;
        size_t len = strlen(ax->key) + strlen(val) + 2;
        if (!(v[i] = mp_malloc(len))) {
            for (size_t j = 0; j < s->n_sweep; j++) mp_free(v[j]);
            mp_free(v);
            return NOMEM(err);
        }
        snprintf(v[i], len, "%s=%s", ax->key, val);
    }
    *sets = v;
    *n = s->n_sweep;
    return MP_OK;
}

/* Interprets the value of a top-level key other than `stages`.  v is the
 * caller's: strings worth keeping are moved out of it (v->s = NULL). */
static int top_value(reader *r, mp_spec *s, int key, mp_value *v) {
    char what[128];
    long long x;
    switch (key) {
    case TOP_VERSION:
        if (!plain_uint(v, &x))
            return FAIL_AT(r, v->line, v->col, "expected an integer for 'version', got %s",
                           mp_value_what(v, what, sizeof what));
        if (x != 1)
            return FAIL_AT(r, v->line, v->col,
                           "unsupported pipeline version %lld (this mlpipe reads version 1)", x);
        s->version = 1;
        return MP_OK;
    case TOP_NAME:
        if (v->type != MP_V_SCALAR || !v->s[0])
            return FAIL_AT(r, v->line, v->col, "expected a pipeline name for 'name', got %s",
                           mp_value_what(v, what, sizeof what));
        s->name = v->s; /* moved */
        v->s = NULL;
        return MP_OK;
    case TOP_SEED:
        /* Signed range on purpose: the run DB stores the seed as an SQLite
         * integer, which is 64-bit signed. */
        if (!plain_uint(v, &x))
            return FAIL_AT(r, v->line, v->col, "expected a non-negative integer for 'seed', got %s",
                           mp_value_what(v, what, sizeof what));
        s->seed = (uint64_t)x;
        return MP_OK;
    case TOP_SWEEP:
        return read_sweep(r, s, v);
    case TOP_PLUGINS:
        /* n_plugins grows with each path, so a failure midway frees what exists. */
        if (v->type != MP_V_SEQ)
            return FAIL_AT(r, v->line, v->col, "expected a list of paths for 'plugins', got %s",
                           mp_value_what(v, what, sizeof what));
        if (v->n == 0) return MP_OK;
        if (!(s->plugins = mp_calloc(v->n, sizeof *s->plugins))) return NOMEM(r->err);
        for (size_t i = 0; i < v->n; i++) {
            const mp_value *it = &v->items[i];
            if (it->type != MP_V_SCALAR || !it->s[0])
                return FAIL_AT(r, it->line, it->col, "expected a plugin path, got %s",
                               mp_value_what(it, what, sizeof what));
            if (!(s->plugins[i] = plugin_path(r->file, it->s))) return NOMEM(r->err);
            s->n_plugins = i + 1;
        }
        return MP_OK;
    }
    return MP_OK;
}

/* ---------------------------------------------------------------- stages */

/* A stage name is used as a --set selector and a parameter prefix
 * ("NAME.param"), so it must not contain '.', '=' or blanks. */
static bool valid_stage_name(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-') return false;
    return true;
}

/* Builds one stage from its mapping's entries (always takes them over):
 * the kind key, `name:`, and everything else as parameters.  Parameters are
 * compacted in place to the front of ents, which then becomes st.params, so
 * the common case allocates nothing.  Each entry is taken out (and its slot
 * zeroed) before it is looked at, so `fail:` can free ents[0..n) whatever
 * point the loop reached. */
static int add_stage(reader *r, mp_spec *s, size_t *cap, mp_spec_param *ents, size_t n, int line,
                     int col) {
    mp_spec_stage st = { .line = line, .col = col };
    bool has_kind = false;
    int name_line = 0, name_col = 0;
    size_t kept = 0;
    char what[128];
    for (size_t i = 0; i < n; i++) {
        mp_spec_param e = ents[i]; /* taken out; ents[i] is then empty */
        memset(&ents[i], 0, sizeof ents[i]);
        int kind = mp_kind_parse(e.key);
        if (kind >= 0) {
            if (has_kind) {
                FAIL_AT(r, e.line, e.col,
                        "stage has two kinds, '%s' and '%s' (start each stage with its own "
                        "'- KIND: MODULE' item)",
                        mp_kind_name(st.kind), e.key);
                param_release(&e);
                goto fail;
            }
            if (e.value.type != MP_V_SCALAR || !e.value.s[0]) {
                FAIL_AT(r, e.value.line, e.value.col, "expected a module name for '%s', got %s",
                        e.key, mp_value_what(&e.value, what, sizeof what));
                param_release(&e);
                goto fail;
            }
            has_kind = true;
            st.kind = (mp_stage_kind)kind;
            st.module = e.value.s;
            e.value.s = NULL;
            st.line = e.line;
            st.col = e.col;
            st.module_line = e.value.line;
            st.module_col = e.value.col;
            param_release(&e);
        } else if (strcmp(e.key, "name") == 0) {
            if (e.value.type != MP_V_SCALAR || !valid_stage_name(e.value.s)) {
                FAIL_AT(r, e.value.line, e.value.col,
                        "invalid stage name %s (use letters, digits, '_' and '-')",
                        mp_value_what(&e.value, what, sizeof what));
                param_release(&e);
                goto fail;
            }
            for (size_t j = 0; j < s->n_stages; j++) {
                if (s->stages[j].name && strcmp(s->stages[j].name, e.value.s) == 0) {
                    FAIL_AT(r, e.value.line, e.value.col,
                            "stage name '%s' is already used by the stage at line %d", e.value.s,
                            s->stages[j].line);
                    param_release(&e);
                    goto fail;
                }
            }
            st.name = e.value.s;
            e.value.s = NULL;
            name_line = e.value.line;
            name_col = e.value.col;
            param_release(&e);
        } else {
            ents[kept++] = e;
        }
    }
    if (!has_kind) {
        /* A misspelt kind is the likely cause; point at that key if one is close. */
        const char *kinds[MP_KIND_COUNT];
        for (int k = 0; k < MP_KIND_COUNT; k++) kinds[k] = mp_kind_name((mp_stage_kind)k);
        for (size_t i = 0; i < kept; i++) {
            const char *near = mp_nearest(ents[i].key, kinds, MP_KIND_COUNT);
            if (near) {
                FAIL_AT(r, ents[i].line, ents[i].col,
                        "unknown stage kind '%s' (did you mean '%s'?)", ents[i].key, near);
                goto fail;
            }
        }
        FAIL_AT(r, line, col,
                "stage has no kind (expected one of load, split, transform, train, evaluate, "
                "export)");
        goto fail;
    }
    /* A name equal to another kind would make `--set train.x=` mean two things. */
    if (st.name && mp_kind_parse(st.name) >= 0 && mp_kind_parse(st.name) != (int)st.kind) {
        FAIL_AT(r, name_line, name_col, "stage name '%s' is a stage kind (choose another name)",
                st.name);
        goto fail;
    }
    if (!grow(&s->stages, cap, s->n_stages, sizeof *s->stages)) {
        NOMEM(r->err);
        goto fail;
    }
    if (kept == 0) {
        mp_free(ents);
        ents = NULL;
    }
    st.params = ents;
    st.n_params = kept;
    s->stages[s->n_stages++] = st;
    return MP_OK;
fail:
    params_free(ents, n); /* taken-out entries are zeroed: freeing them is a no-op */
    stage_release(&st);
    return r->err->code;
}

/* The `stages` list.  It is read from events directly, not through
 * read_node, because a stage's keys need their places (kind, unknown
 * parameter, duplicate key) and mp_value keeps no key places. */
static int read_stages(reader *r, mp_spec *s, int key_line, int key_col) {
    const yaml_event_t *e = &r->ev;
    if (e->type != YAML_SEQUENCE_START_EVENT)
        return FAIL_MARK(r, &e->start_mark,
                         "'stages' must be a list of stages, each '- KIND: MODULE'");
    if (check_props(r, e->data.sequence_start.anchor, e->data.sequence_start.tag, &e->start_mark,
                    NULL))
        return r->err->code;
    size_t cap = 0;
    for (;;) {
        if (next(r) != MP_OK) return r->err->code;
        e = &r->ev;
        if (e->type == YAML_SEQUENCE_END_EVENT) break;
        if (e->type == YAML_ALIAS_EVENT) return alias_error(r);
        if (e->type != YAML_MAPPING_START_EVENT)
            return FAIL_MARK(r, &e->start_mark,
                             "a stage must be a mapping such as '- train: logistic_regression'");
        int line = line_of(&e->start_mark), col = col_of(&e->start_mark);
        mp_spec_param *ents;
        size_t n;
        if (read_entries(r, &ents, &n) != MP_OK) return r->err->code;
        if (add_stage(r, s, &cap, ents, n, line, col) != MP_OK) return r->err->code;
    }
    if (s->n_stages == 0)
        return FAIL_AT(r, key_line, key_col, "'stages' is empty (a pipeline needs at least a "
                                              "load stage)");
    return MP_OK;
}

/* The whole document: one mapping of the top-level keys.  Keys are checked
 * as they come, so an unknown key is reported before its value is parsed;
 * `seen` also catches duplicates without keeping the key strings. */
static int read_pipeline(reader *r, mp_spec *s) {
    if (next(r) != MP_OK || next(r) != MP_OK) return r->err->code; /* stream start, document */
    if (r->ev.type == YAML_STREAM_END_EVENT) {
        MP_ERR(r->err, MP_E_CONFIG, "empty pipeline (expected 'version: 1' and 'stages')");
        return mp_err_where(r->err, "%s", r->file);
    }
    if (next(r) != MP_OK) return r->err->code;
    const yaml_event_t *e = &r->ev;
    int root_line = line_of(&e->start_mark), root_col = col_of(&e->start_mark);
    if (e->type != YAML_MAPPING_START_EVENT) {
        if (e->type == YAML_SCALAR_EVENT && e->data.scalar.length == 0 &&
            e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            MP_ERR(r->err, MP_E_CONFIG, "empty pipeline (expected 'version: 1' and 'stages')");
            return mp_err_where(r->err, "%s", r->file);
        }
        return FAIL_AT(r, root_line, root_col,
                       "a pipeline must be a mapping with 'version: 1' and 'stages'");
    }
    if (check_props(r, e->data.mapping_start.anchor, e->data.mapping_start.tag, &e->start_mark,
                    NULL))
        return r->err->code;
    int seen[TOP_COUNT] = { 0 }; /* line where each key was seen, 0 = not yet */
    for (;;) {
        if (next(r) != MP_OK) return r->err->code;
        e = &r->ev;
        if (e->type == YAML_MAPPING_END_EVENT) break;
        if (e->type == YAML_ALIAS_EVENT) return alias_error(r);
        if (e->type != YAML_SCALAR_EVENT)
            return FAIL_MARK(r, &e->start_mark, "a mapping key must be plain text");
        bool is_str = false;
        if (check_props(r, e->data.scalar.anchor, e->data.scalar.tag, &e->start_mark, &is_str))
            return r->err->code;
        const char *key = (const char *)e->data.scalar.value;
        int kl = line_of(&e->start_mark), kc = col_of(&e->start_mark);
        int idx = -1;
        for (int i = 0; i < TOP_COUNT; i++)
            if (strcmp(key, top_keys[i]) == 0) idx = i;
        if (idx < 0) {
            const char *near = mp_nearest(key, top_keys, TOP_COUNT);
            if (near)
                return FAIL_AT(r, kl, kc, "unknown key '%s' (did you mean '%s'?)", key, near);
            return FAIL_AT(r, kl, kc,
                           "unknown key '%s' (expected version, name, seed, plugins, stages, sweep)", key);
        }
        if (seen[idx])
            return FAIL_AT(r, kl, kc, "duplicate key '%s' (first at line %d)", key, seen[idx]);
        seen[idx] = kl;
        if (next(r) != MP_OK) return r->err->code;
        if (idx == TOP_STAGES) {
            if (read_stages(r, s, kl, kc) != MP_OK) return r->err->code;
            continue;
        }
        mp_value v;
        if (read_node(r, &v) != MP_OK) return r->err->code;
        int rc = top_value(r, s, idx, &v);
        mp_value_release(&v);
        if (rc != MP_OK) return rc;
    }
    if (next(r) != MP_OK || next(r) != MP_OK) return r->err->code; /* document end, next */
    if (r->ev.type != YAML_STREAM_END_EVENT)
        return FAIL_MARK(r, &r->ev.start_mark, "a pipeline file holds one YAML document");
    if (!seen[TOP_VERSION])
        return FAIL_AT(r, root_line, root_col,
                       "missing 'version: 1' (the pipeline format version)");
    if (!seen[TOP_STAGES]) return FAIL_AT(r, root_line, root_col, "missing 'stages'");
    return MP_OK;
}

/* Parses text (taken over: freed on failure, kept as spec->text on success).
 * mp_config_load hands over the buffer it read, so the file is held once;
 * the run DB stores spec->text as the exact configuration that ran. */
static int parse_owned(const char *name, char *text, size_t len, mp_spec **out, mp_err *err) {
    mp_spec *s = mp_calloc(1, sizeof *s);
    if (!s) {
        mp_free(text);
        return NOMEM(err);
    }
    s->text = text;
    s->seed = 42;
    if (!(s->file = mp_strdup(name))) {
        mp_spec_free(s);
        return NOMEM(err);
    }
    reader r = { .file = s->file, .env = true, .err = err };
    int rc = reader_open(&r, text, len);
    if (rc == MP_OK) rc = read_pipeline(&r, s);
    reader_close(&r);
    if (rc == MP_OK && !s->name && !(s->name = default_name(s->file))) rc = NOMEM(err);
    if (rc != MP_OK) {
        mp_spec_free(s);
        return rc;
    }
    *out = s;
    return MP_OK;
}

int mp_config_parse(const char *name, const char *text, size_t len, mp_spec **out, mp_err *err) {
    char *copy = memdup_str(text, len);
    if (!copy) return NOMEM(err);
    return parse_owned(name, copy, len, out, err);
}

int mp_config_load(const char *path, mp_spec **out, mp_err *err) {
    char *text;
    size_t len;
    if (mp_read_file(path, &text, &len, err) != MP_OK) return err->code;
    return parse_owned(path, text, len, out, err);
}

/* ---------------------------------------------------------------- --set */

/* Finds the stage a --set selector means: a `name:` first, then a kind that
 * occurs exactly once.  With two stages of one kind, picking "the first"
 * would silently change the wrong one, so that is an error that asks for
 * names. */
static int select_stage(const mp_spec *s, const char *sel, const char *where, size_t *idx,
                        mp_err *err) {
    for (size_t i = 0; i < s->n_stages; i++) {
        if (s->stages[i].name && strcmp(s->stages[i].name, sel) == 0) {
            *idx = i;
            return MP_OK;
        }
    }
    int kind = mp_kind_parse(sel);
    size_t count = 0;
    char names[256] = "";
    size_t o = 0;
    for (size_t i = 0; kind >= 0 && i < s->n_stages; i++) {
        if ((int)s->stages[i].kind != kind) continue;
        if (count++ == 0) *idx = i;
        if (s->stages[i].name && o < sizeof names)
            o += (size_t)snprintf(names + o, sizeof names - o, "%s%s", o ? ", " : "",
                                  s->stages[i].name);
    }
    if (count == 1) return MP_OK;
    if (count > 1) {
        if (o)
            MP_ERR(err, MP_E_CONFIG,
                   "'%s' is ambiguous: the pipeline has %zu %s stages (select one by name: %s)",
                   sel, count, sel, names);
        else
            MP_ERR(err, MP_E_CONFIG,
                   "'%s' is ambiguous: the pipeline has %zu %s stages (give each a 'name:' and "
                   "select it by name)",
                   sel, count, sel);
        return mp_err_where(err, "%s", where);
    }
    /* Unknown: list what would have worked, and the nearest of it. */
    const char *valid[64];
    size_t nv = 0;
    char list[300] = "";
    o = 0;
    for (size_t i = 0; i < s->n_stages && nv < 64; i++) {
        const mp_spec_stage *st = &s->stages[i];
        size_t same = 0;
        for (size_t j = 0; j < s->n_stages; j++) same += s->stages[j].kind == st->kind;
        bool kind_ok = same == 1;
        bool kind_listed = false;
        for (size_t j = 0; j < i; j++) kind_listed |= s->stages[j].kind == st->kind;
        if (st->name) valid[nv++] = st->name;
        if (kind_ok && !kind_listed && nv < 64) valid[nv++] = mp_kind_name(st->kind);
    }
    for (size_t i = 0; i < nv && o < sizeof list; i++)
        o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", i ? ", " : "", valid[i]);
    const char *near = mp_nearest(sel, valid, nv);
    if (near)
        MP_ERR(err, MP_E_CONFIG, "unknown stage '%s' (did you mean '%s'?)", sel, near);
    else
        MP_ERR(err, MP_E_CONFIG, "unknown stage '%s' (valid: %s)", sel, list);
    return mp_err_where(err, "%s", where);
}

/* Appends a copy of a to s->overrides; false on OOM (s unchanged). */
static bool record_override(mp_spec *s, const char *a) {
    char *c = mp_strdup(a);
    char **arr = c ? mp_realloc(s->overrides, (s->n_overrides + 1) * sizeof *arr) : NULL;
    if (!arr) {
        mp_free(c);
        return false;
    }
    s->overrides = arr;
    s->overrides[s->n_overrides++] = c;
    return true;
}

/* Two phases: everything that can fail (parsing the value, allocating the
 * copies, growing the arrays) happens first; the spec is changed only after,
 * by assignments that cannot fail.  So a rejected --set leaves no trace. */
int mp_config_set(mp_spec *s, const char *a, mp_err *err) {
    const char *eq = strchr(a, '=');
    if (!eq || eq == a)
        return MP_ERR(err, MP_E_USAGE,
                      "invalid --set '%s' (expected KEY=VALUE, e.g. train.learning_rate=0.01)", a);
    size_t key_len = (size_t)(eq - a);
    char where[300];
    snprintf(where, sizeof where, "--set %s", a);
    char what[128];
    mp_value v = { 0 };

    /* Top-level keys first: they contain no '.'. */
    bool is_seed = key_len == 4 && memcmp(a, "seed", 4) == 0;
    bool is_name = key_len == 4 && memcmp(a, "name", 4) == 0;
    if (is_seed || is_name) {
        if (mp_value_parse(eq + 1, where, &v, err) != MP_OK) return err->code;
        long long x = 0;
        char *name = NULL;
        if (is_seed && !plain_uint(&v, &x)) {
            MP_ERR(err, MP_E_CONFIG, "expected a non-negative integer for 'seed', got %s",
                   mp_value_what(&v, what, sizeof what));
            mp_err_where(err, "%s", where);
        } else if (is_name && (v.type != MP_V_SCALAR || !v.s[0])) {
            MP_ERR(err, MP_E_CONFIG, "expected a pipeline name for 'name', got %s",
                   mp_value_what(&v, what, sizeof what));
            mp_err_where(err, "%s", where);
        } else if (is_name && !(name = mp_strdup(v.s))) {
            NOMEM(err);
        } else if (!record_override(s, a)) {
            mp_free(name);
            NOMEM(err);
        } else if (is_seed) {
            s->seed = (uint64_t)x;
        } else {
            mp_free(s->name);
            s->name = name;
        }
        mp_value_release(&v);
        return err->code;
    }

    const char *dot = memchr(a, '.', key_len);
    if (!dot || dot == a || dot + 1 == eq)
        return MP_ERR(err, MP_E_USAGE,
                      "invalid --set '%s' (expected seed=N, name=TEXT or STAGE.PARAM=VALUE)", a);
    char sel[128], param[128];
    size_t sel_len = (size_t)(dot - a), param_len = (size_t)(eq - dot - 1);
    if (sel_len >= sizeof sel || param_len >= sizeof param)
        return MP_ERR(err, MP_E_USAGE, "invalid --set '%s' (key too long)", a);
    memcpy(sel, a, sel_len);
    sel[sel_len] = '\0';
    memcpy(param, dot + 1, param_len);
    param[param_len] = '\0';

    size_t idx = 0;
    if (select_stage(s, sel, where, &idx, err) != MP_OK) return err->code;
    mp_spec_stage *st = &s->stages[idx];
    /* The kind, module and name keys are the stage's identity, not parameters. */
    if (strcmp(param, "name") == 0 || mp_kind_parse(param) >= 0) {
        MP_ERR(err, MP_E_CONFIG, "--set cannot change a stage's '%s' (only its parameters)",
               param);
        return mp_err_where(err, "%s", where);
    }
    if (mp_value_parse(eq + 1, where, &v, err) != MP_OK) return err->code;

    /* Allocate everything first, so a failure leaves the spec as it was. */
    size_t pi = st->n_params;
    for (size_t i = 0; i < st->n_params; i++)
        if (strcmp(st->params[i].key, param) == 0) pi = i;
    char *set_text = mp_strdup(a);
    char *key = pi == st->n_params ? mp_strdup(param) : NULL;
    bool ok = set_text && (pi < st->n_params || key);
    if (ok && pi == st->n_params) {
        mp_spec_param *np = mp_realloc(st->params, (st->n_params + 1) * sizeof *np);
        if (np) st->params = np; /* grown, not yet used: harmless if we stop below */
        ok = np != NULL;
    }
    if (!ok || !record_override(s, a)) {
        mp_free(set_text);
        mp_free(key);
        mp_value_release(&v);
        return NOMEM(err);
    }
    if (pi == st->n_params) {
        st->params[st->n_params++] = (mp_spec_param){ .key = key };
    } else {
        mp_value_release(&st->params[pi].value);
        mp_free(st->params[pi].set_text);
    }
    mp_spec_param *p = &st->params[pi];
    p->value = v;
    p->from_cli = true;
    p->set_text = set_text;
    p->line = p->col = 0;
    return MP_OK;
}

/* ---------------------------------------------------------------- resolve */

/* The stage order of DESIGN.md: load -> [split] -> [transform...] -> train
 * -> [evaluate/export, any order].  Each error points at the offending stage. */
static int check_order(const mp_spec *s, mp_err *err) {
    /* first[k]: the first stage of kind k seen so far (for "at most one"
     * rules and to know whether a train came before). */
    const mp_spec_stage *first[MP_KIND_COUNT] = { 0 };
    for (size_t i = 0; i < s->n_stages; i++) {
        const mp_spec_stage *st = &s->stages[i];
        const char *k = mp_kind_name(st->kind);
        const char *problem = NULL;
        char buf[200];
        if (i == 0 && st->kind != MP_KIND_LOAD) {
            snprintf(buf, sizeof buf, "the first stage must be a 'load' stage, not '%s'", k);
            problem = buf;
        } else if (first[st->kind] &&
                   (st->kind == MP_KIND_LOAD || st->kind == MP_KIND_SPLIT ||
                    st->kind == MP_KIND_TRAIN)) {
            snprintf(buf, sizeof buf,
                     "a pipeline has at most one '%s' stage (the first is at line %d)", k,
                     first[st->kind]->line);
            problem = buf;
        } else if (st->kind == MP_KIND_SPLIT &&
                   (first[MP_KIND_TRANSFORM] || first[MP_KIND_TRAIN])) {
            problem = "'split' must come before the transform and train stages";
        } else if (st->kind == MP_KIND_TRANSFORM && first[MP_KIND_TRAIN]) {
            problem = "'transform' stages must come before the 'train' stage";
        } else if ((st->kind == MP_KIND_EVALUATE || st->kind == MP_KIND_EXPORT) &&
                   !first[MP_KIND_TRAIN]) {
            snprintf(buf, sizeof buf, "'%s' needs a 'train' stage before it", k);
            problem = buf;
        }
        if (problem) return FAIL_FILE(err, s->file, st->line, st->col, "%s", problem);
        if (!first[st->kind]) first[st->kind] = st;
    }
    return MP_OK;
}

/* The error for a module the registry does not have. */
static int unknown_module(const mp_spec *s, const mp_spec_stage *sp, mp_err *err) {
    const char *kind = mp_kind_name(sp->kind);
    const char *near = mp_registry_suggest(sp->kind, sp->module);
    if (near)
        return FAIL_FILE(err, s->file, sp->module_line, sp->module_col,
                         "unknown %s module '%s' (did you mean '%s'?)", kind, sp->module, near);
    char list[300] = "";
    size_t o = 0;
    for (size_t i = 0; i < mp_registry_count() && o < sizeof list; i++) {
        const mp_stage_ops *ops = mp_registry_at(i);
        if (ops->kind == sp->kind)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", ops->name);
    }
    return FAIL_FILE(err, s->file, sp->module_line, sp->module_col,
                     "unknown %s module '%s' (available: %s)", kind, sp->module,
                     o ? list : "none");
}

/* Fills one mp_stage.  Errors that concern no single value (missing
 * required parameter, the stage's own check()) get the stage's place. */
static int resolve_stage(const mp_spec *s, const mp_spec_stage *sp, mp_stage *st, mp_err *err) {
    const mp_stage_ops *ops = mp_registry_find(sp->kind, sp->module);
    if (!ops) return unknown_module(s, sp, err);
    char place[300], desc[200];
    snprintf(place, sizeof place, "%s:%d:%d", s->file, sp->line, sp->col);
    snprintf(desc, sizeof desc, "%s: %s", mp_kind_name(sp->kind), sp->module);
    char *where = mp_strdup(place);
    char *name = mp_strdup(sp->name ? sp->name : mp_kind_name(sp->kind));
    void *conf = mp_calloc(1, ops->conf_size);
    if (!where || !name || !conf) {
        mp_free(where);
        mp_free(name);
        mp_free(conf);
        return NOMEM(err);
    }
    if (mp_param_fill(ops->params, conf, sp->params, sp->n_params, s->file, desc, err) != MP_OK) {
        mp_free(where);
        mp_free(name);
        mp_free(conf);
        return mp_err_where(err, "%s", place); /* e.g. a missing required parameter */
    }
    /* From here the stage owns conf, so mp_stages_free releases it. */
    *st = (mp_stage){ .ops = ops, .conf = conf, .name = name, .where = where };
    if (ops->check && ops->check(conf, err) != MP_OK) {
        if (err->code == MP_OK) MP_ERR(err, MP_E_CONFIG, "invalid parameters for %s", desc);
        return mp_err_where(err, "%s", place);
    }
    return MP_OK;
}

int mp_config_resolve(const mp_spec *s, mp_stage **out, mp_err *err) {
    /* Order first: it needs no registry, and a misplaced stage explains
     * itself better than a parameter error inside it. */
    if (check_order(s, err) != MP_OK) return err->code;
    mp_stage *st = mp_calloc(s->n_stages, sizeof *st);
    if (!st) return NOMEM(err);
    for (size_t i = 0; i < s->n_stages; i++) {
        if (resolve_stage(s, &s->stages[i], &st[i], err) != MP_OK) {
            mp_stages_free(st, s->n_stages);
            return err->code;
        }
    }
    *out = st;
    return MP_OK;
}

/* close() runs even for a stage that never ran: the stage ABI makes close
 * responsible for a NULL priv, and this keeps one cleanup path. */
void mp_stages_free(mp_stage *st, size_t n) {
    if (!st) return;
    for (size_t i = 0; i < n; i++) {
        if (st[i].ops) {
            if (st[i].ops->close) st[i].ops->close(&st[i]);
            mp_param_release(st[i].ops->params, st[i].conf);
        }
        mp_free(st[i].conf);
        mp_free((char *)st[i].name);
        mp_free((char *)st[i].where);
    }
    mp_free(st);
}

/* ---------------------------------------------------------------- params */

/* "NAME", else the kind; the 2nd, 3rd ... unnamed stage of a kind gets
 * "kind2", "kind3" so every key stays unique. */
static void stage_prefix(const mp_spec *s, size_t i, char *buf, size_t size) {
    const mp_spec_stage *st = &s->stages[i];
    if (st->name) {
        snprintf(buf, size, "%s", st->name);
        return;
    }
    size_t k = 1;
    for (size_t j = 0; j < i; j++) k += !s->stages[j].name && s->stages[j].kind == st->kind;
    if (k == 1)
        snprintf(buf, size, "%s", mp_kind_name(st->kind));
    else
        snprintf(buf, size, "%s%zu", mp_kind_name(st->kind), k);
}

static bool has_param(const mp_param *table, const char *name) {
    for (const mp_param *p = table; p && p->name; p++)
        if (strcmp(p->name, name) == 0) return true;
    return false;
}

/* "prefix.name" as a new string. */
static char *join_key(const char *prefix, const char *name) {
    size_t a = strlen(prefix), b = strlen(name);
    char *k = mp_malloc(a + b + 2);
    if (!k) return NULL;
    memcpy(k, prefix, a);
    k[a] = '.';
    memcpy(k + a + 1, name, b + 1);
    return k;
}

int mp_config_params(const mp_spec *s, const mp_stage *st, char ***keys, char ***values,
                     size_t *n, mp_err *err) {
    /* Count first, so both arrays are allocated once at their final size. */
    size_t total = 0;
    for (size_t i = 0; i < s->n_stages; i++) {
        total += !has_param(st[i].ops->params, "module");
        for (const mp_param *p = st[i].ops->params; p && p->name; p++) total++;
    }
    char **k = mp_calloc(total, sizeof *k), **v = mp_calloc(total, sizeof *v);
    size_t m = 0;
    if (!k || !v) goto nomem;
    for (size_t i = 0; i < s->n_stages; i++) {
        char prefix[160];
        stage_prefix(s, i, prefix, sizeof prefix);
        if (!has_param(st[i].ops->params, "module")) {
            k[m] = join_key(prefix, "module");
            v[m] = mp_strdup(s->stages[i].module);
            m++;
            if (!k[m - 1] || !v[m - 1]) goto nomem;
        }
        for (const mp_param *p = st[i].ops->params; p && p->name; p++) {
            char small[256];
            size_t need = mp_param_format(p, st[i].conf, small, sizeof small);
            k[m] = join_key(prefix, p->name);
            if (need < sizeof small)
                v[m] = mp_strdup(small);
            else if ((v[m] = mp_malloc(need + 1))) /* a long list: format again in full */
                mp_param_format(p, st[i].conf, v[m], need + 1);
            m++;
            if (!k[m - 1] || !v[m - 1]) goto nomem;
        }
    }
    *keys = k;
    *values = v;
    *n = total;
    return MP_OK;
nomem:
    mp_params_free(k, v, m); /* NULL-safe at every level */
    return NOMEM(err);
}

void mp_params_free(char **keys, char **values, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (keys) mp_free(keys[i]);
        if (values) mp_free(values[i]);
    }
    mp_free(keys);
    mp_free(values);
}
