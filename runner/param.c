/*
 * param.c -- declared stage parameters: YAML values -> a stage's config struct.
 *
 * A stage never parses its own options.  It declares a table of mp_param rows
 * (name, type, offsetof field, default as YAML text, range, choices) and this
 * file fills the struct, the way nginx fills module configs through
 * ngx_conf_set_*_slot + offsetof.  Because every value arrives here with its
 * place (file:line:col, or the --set string), every complaint -- unknown key,
 * wrong type, out of range, missing -- can point at the exact spot and
 * suggest the nearest valid word.
 *
 * Defaults are YAML text parsed by the same code as user values, so a table's
 * "[accuracy, f1_macro]" and a user's `metrics: [accuracy, f1_macro]` cannot
 * drift apart.  The file also holds the "did you mean" helpers.
 */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The field of conf that parameter p fills (CFIELD: read-only). */
#define FIELD(conf, p, type) ((type *)(void *)((char *)(conf) + (p)->offset))
#define CFIELD(conf, p, type) ((const type *)(const void *)((const char *)(conf) + (p)->offset))

#define NOMEM(err) MP_ERR((err), MP_E_NOMEM, "out of memory filling stage parameters")

/* ---------------------------------------------------------------- suggestions */

size_t mp_edit_distance(const char *a, const char *b) {
    /* Two rows on the stack: suggestions are for identifiers, and a function
     * that cannot fail keeps every caller simple. */
    enum { MAX_LEN = 127 };
    size_t la = strlen(a), lb = strlen(b);
    if (la > MAX_LEN || lb > MAX_LEN) return strcmp(a, b) == 0 ? 0 : (la > lb ? la : lb);
    size_t prev[MAX_LEN + 1], cur[MAX_LEN + 1];
    for (size_t j = 0; j <= lb; j++) prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

/* A plausible typo changes little of the word: one edit for very short words,
 * two for short ones, about a third for longer ones.  Looser limits suggest
 * nonsense ("x" -> "max"), which is worse than no suggestion. */
static bool close_enough(const char *word, size_t d) {
    size_t len = strlen(word);
    size_t limit = len <= 3 ? 1 : len < 6 ? 2 : len / 3 + 1;
    return d <= limit;
}

const char *mp_nearest(const char *word, const char *const *cands, size_t n) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (size_t i = 0; i < n; i++) {
        if (!cands[i]) continue;
        size_t d = mp_edit_distance(word, cands[i]);
        if (d < best_d) {
            best_d = d;
            best = cands[i];
        }
    }
    return best && close_enough(word, best_d) ? best : NULL;
}

/* ---------------------------------------------------------------- choices */

/* Choices are one '|'-separated string ("sgd|momentum|adam").  These walk it
 * without copying the table. */

/* Index of word among the choices, or -1. */
static int choice_index(const char *choices, const char *word) {
    size_t wl = strlen(word);
    int i = 0;
    for (const char *c = choices;; i++) {
        const char *bar = strchr(c, '|');
        size_t n = bar ? (size_t)(bar - c) : strlen(c);
        if (n == wl && memcmp(c, word, n) == 0) return i;
        if (!bar) return -1;
        c = bar + 1;
    }
}

/* Copies choice number idx into buf; false (and "?") when there is none. */
static bool choice_name(const char *choices, int idx, char *buf, size_t size) {
    const char *c = choices;
    for (int i = 0; c && i < idx; i++) {
        c = strchr(c, '|');
        if (c) c++;
    }
    if (!c || idx < 0) {
        snprintf(buf, size, "?");
        return false;
    }
    const char *bar = strchr(c, '|');
    int n = (int)(bar ? (size_t)(bar - c) : strlen(c));
    snprintf(buf, size, "%.*s", n, c);
    return true;
}

/* "sgd, momentum, adam" for messages. */
static void choice_list(const char *choices, char *buf, size_t size) {
    size_t o = 0;
    for (const char *c = choices; *c && o + 3 < size; c++) {
        if (*c == '|') {
            buf[o++] = ',';
            buf[o++] = ' ';
        } else {
            buf[o++] = *c;
        }
    }
    buf[o] = '\0';
}

/* The nearest choice to word, if close, copied into buf; false when none. */
static bool choice_nearest(const char *choices, const char *word, char *buf, size_t size) {
    size_t best_d = (size_t)-1;
    char one[128];
    for (int i = 0; choice_name(choices, i, one, sizeof one); i++) {
        size_t d = mp_edit_distance(word, one);
        if (d < best_d) {
            best_d = d;
            snprintf(buf, size, "%s", one);
        }
    }
    return best_d != (size_t)-1 && close_enough(word, best_d);
}

/* ---------------------------------------------------------------- conversion */

/* YAML's null: an empty plain scalar, "~" or "null" (plain, not quoted). */
static bool is_null(const mp_value *v) {
    return v->type == MP_V_SCALAR && !v->quoted &&
           (!v->s || !v->s[0] || strcmp(v->s, "~") == 0 || strcasecmp(v->s, "null") == 0);
}

const char *mp_value_what(const mp_value *v, char *buf, size_t size) {
    if (v->type == MP_V_SEQ)
        snprintf(buf, size, "a list");
    else if (v->type == MP_V_MAP)
        snprintf(buf, size, "a mapping");
    else if (!v->quoted && (!v->s || !v->s[0]))
        snprintf(buf, size, "nothing");
    else if (is_null(v))
        snprintf(buf, size, "null");
    else
        snprintf(buf, size, "'%.80s%s'%s", v->s, strlen(v->s) > 80 ? "..." : "",
                 v->quoted ? " (a quoted string)" : "");
    return buf;
}

/* Where the value being converted came from, so errors can say where. */
typedef struct slot {
    const mp_param *p;
    const char     *file;       /* for "FILE:LINE:COL" */
    const char     *set_text;   /* "KEY=VALUE" when the value came from --set */
    bool            is_default; /* from p->def: the caller names the stage instead */
    mp_err         *err;
} slot;

/* Sets err->where to the place of v; returns the error code. */
static int place(const slot *c, const mp_value *v) {
    if (c->is_default) return c->err->code;
    if (c->set_text) return mp_err_where(c->err, "--set %s", c->set_text);
    return mp_err_where(c->err, "%s:%d:%d", c->file, v->line, v->col);
}

#define BAD(c, v, ...) (MP_ERR((c)->err, MP_E_CONFIG, __VA_ARGS__), place((c), (v)))

/* "> 0", ">= 1", "<= 5", "in [0, 1]", "in (0, 0.99]".  Infinite bounds
 * (-HUGE_VAL / HUGE_VAL in tables) are left out of the wording. */
static void range_rule(const mp_param *p, char *buf, size_t size) {
    bool open = p->flags & MP_PF_MIN_OPEN;
    bool has_lo = isfinite(p->min), has_hi = isfinite(p->max);
    if (has_lo && has_hi)
        snprintf(buf, size, "in %c%g, %g]", open ? '(' : '[', p->min, p->max);
    else if (has_lo)
        snprintf(buf, size, "%s %g", open ? ">" : ">=", p->min);
    else if (has_hi)
        snprintf(buf, size, "<= %g", p->max);
    else
        snprintf(buf, size, "a number");
}

static int check_range(const slot *c, const mp_value *v, double x) {
    const mp_param *p = c->p;
    if (!(p->flags & MP_PF_RANGE)) return MP_OK;
    bool lo_ok = (p->flags & MP_PF_MIN_OPEN) ? x > p->min : x >= p->min;
    if (lo_ok && x <= p->max) return MP_OK;
    char rule[96];
    range_rule(p, rule, sizeof rule);
    return BAD(c, v, "%s must be %s, got %s", p->name, rule, v->s);
}

/* The checks below take a value and write *out only when it is valid. */

static int scalar_int(const slot *c, const mp_value *v, int *out) {
    long long x;
    char what[128];
    /* A quoted "3" is a string in YAML; accepting it would make `epochs: "3"`
     * and `name: "3"` mean different things depending on the table. */
    if (v->type != MP_V_SCALAR || v->quoted || !mp_parse_long(v->s, &x) || x < INT_MIN ||
        x > INT_MAX)
        return BAD(c, v, "expected an integer for '%s', got %s", c->p->name,
                   mp_value_what(v, what, sizeof what));
    if (check_range(c, v, (double)x) != MP_OK) return c->err->code;
    *out = (int)x;
    return MP_OK;
}

static int scalar_double(const slot *c, const mp_value *v, double *out) {
    double x;
    char what[128];
    if (v->type != MP_V_SCALAR || v->quoted || !mp_parse_double(v->s, &x) || !isfinite(x))
        return BAD(c, v, "expected a number for '%s', got %s", c->p->name,
                   mp_value_what(v, what, sizeof what));
    if (check_range(c, v, x) != MP_OK) return c->err->code;
    *out = x;
    return MP_OK;
}

static int scalar_bool(const slot *c, const mp_value *v, bool *out) {
    static const char *const yes[] = { "true", "yes", "on" };
    static const char *const no[] = { "false", "no", "off" };
    char what[128];
    if (v->type == MP_V_SCALAR && !v->quoted) {
        for (size_t i = 0; i < 3; i++) {
            if (strcasecmp(v->s, yes[i]) == 0) return *out = true, MP_OK;
            if (strcasecmp(v->s, no[i]) == 0) return *out = false, MP_OK;
        }
    }
    return BAD(c, v, "expected true or false for '%s', got %s", c->p->name,
               mp_value_what(v, what, sizeof what));
}

/* Any scalar is a string, but YAML null (`path:`, `path: ~`) is almost
 * always a forgotten value, so it is refused rather than kept as "" or "~".
 * A string that really is "null" is written quoted. */
static int scalar_string(const slot *c, const mp_value *v, const char *label, char **out) {
    char what[128];
    if (v->type != MP_V_SCALAR || is_null(v))
        return BAD(c, v, "expected a string for '%s', got %s", label,
                   mp_value_what(v, what, sizeof what));
    if (c->p->choices && c->p->type == MP_P_STR_LIST && choice_index(c->p->choices, v->s) < 0) {
        char list[400], near[128];
        choice_list(c->p->choices, list, sizeof list);
        if (choice_nearest(c->p->choices, v->s, near, sizeof near))
            return BAD(c, v, "invalid value '%s' in '%s': expected one of %s (did you mean '%s'?)",
                       v->s, label, list, near);
        return BAD(c, v, "invalid value '%s' in '%s': expected one of %s", v->s, label, list);
    }
    char *s = mp_strdup(v->s);
    if (!s) return NOMEM(c->err);
    *out = s;
    return MP_OK;
}

static int scalar_enum(const slot *c, const mp_value *v, int *out) {
    const char *choices = c->p->choices ? c->p->choices : "";
    char list[400], near[128], what[128];
    choice_list(choices, list, sizeof list);
    if (v->type != MP_V_SCALAR)
        return BAD(c, v, "expected one of %s for '%s', got %s", list, c->p->name,
                   mp_value_what(v, what, sizeof what));
    int i = choice_index(choices, v->s);
    if (i >= 0) return *out = i, MP_OK;
    if (choice_nearest(choices, v->s, near, sizeof near))
        return BAD(c, v, "invalid value '%s' for '%s': expected one of %s (did you mean '%s'?)",
                   v->s, c->p->name, list, near);
    return BAD(c, v, "invalid value '%s' for '%s': expected one of %s", v->s, c->p->name, list);
}

static int int_list(const slot *c, const mp_value *v, mp_int_list *out) {
    char what[128];
    if (v->type != MP_V_SEQ)
        return BAD(c, v, "expected a list of integers for '%s', got %s", c->p->name,
                   mp_value_what(v, what, sizeof what));
    int *a = NULL;
    if (v->n > 0 && !(a = mp_calloc(v->n, sizeof *a))) return NOMEM(c->err);
    for (size_t i = 0; i < v->n; i++) {
        if (scalar_int(c, &v->items[i], &a[i]) != MP_OK) {
            mp_free(a);
            return c->err->code;
        }
    }
    out->v = a;
    out->n = v->n;
    return MP_OK;
}

static int str_list(const slot *c, const mp_value *v, mp_str_list *out) {
    char what[128];
    if (v->type != MP_V_SEQ)
        return BAD(c, v, "expected a list for '%s', got %s", c->p->name,
                   mp_value_what(v, what, sizeof what));
    char **a = NULL;
    if (v->n > 0 && !(a = mp_calloc(v->n, sizeof *a))) return NOMEM(c->err);
    for (size_t i = 0; i < v->n; i++) {
        if (scalar_string(c, &v->items[i], c->p->name, &a[i]) != MP_OK) {
            for (size_t j = 0; j < i; j++) mp_free(a[j]);
            mp_free(a);
            return c->err->code;
        }
    }
    out->v = a;
    out->n = v->n;
    return MP_OK;
}

/* Converts v into p's field of conf.  The field is written only on success;
 * a string or list already there (none, on a fresh conf) is replaced. */
static int convert(const slot *c, const mp_value *v, void *conf) {
    const mp_param *p = c->p;
    switch (p->type) {
    case MP_P_INT: return scalar_int(c, v, FIELD(conf, p, int));
    case MP_P_DOUBLE: return scalar_double(c, v, FIELD(conf, p, double));
    case MP_P_BOOL: return scalar_bool(c, v, FIELD(conf, p, bool));
    case MP_P_ENUM: return scalar_enum(c, v, FIELD(conf, p, int));
    case MP_P_STRING: {
        char *s = NULL;
        if (scalar_string(c, v, p->name, &s) != MP_OK) return c->err->code;
        mp_free(*FIELD(conf, p, char *));
        *FIELD(conf, p, char *) = s;
        return MP_OK;
    }
    case MP_P_INT_LIST: {
        mp_int_list l = { 0 };
        if (int_list(c, v, &l) != MP_OK) return c->err->code;
        mp_free(FIELD(conf, p, mp_int_list)->v);
        *FIELD(conf, p, mp_int_list) = l;
        return MP_OK;
    }
    case MP_P_STR_LIST: {
        mp_str_list l = { 0 };
        if (str_list(c, v, &l) != MP_OK) return c->err->code;
        mp_str_list *old = FIELD(conf, p, mp_str_list);
        for (size_t i = 0; i < old->n; i++) mp_free(old->v[i]);
        mp_free(old->v);
        *old = l;
        return MP_OK;
    }
    }
    return MP_ERR(c->err, MP_E_CONFIG, "parameter '%s' has an unknown type %d in its table",
                  p->name, (int)p->type);
}

/* The zero value: what an optional parameter without a default gets. */
static void set_zero(const mp_param *p, void *conf) {
    switch (p->type) {
    case MP_P_INT:
    case MP_P_ENUM: *FIELD(conf, p, int) = 0; break;
    case MP_P_DOUBLE: *FIELD(conf, p, double) = 0.0; break;
    case MP_P_BOOL: *FIELD(conf, p, bool) = false; break;
    case MP_P_STRING: *FIELD(conf, p, char *) = NULL; break;
    case MP_P_INT_LIST: *FIELD(conf, p, mp_int_list) = (mp_int_list){ 0 }; break;
    case MP_P_STR_LIST: *FIELD(conf, p, mp_str_list) = (mp_str_list){ 0 }; break;
    }
}

/* ---------------------------------------------------------------- filling */

static const mp_param *find_param(const mp_param *table, const char *key) {
    for (const mp_param *p = table; p && p->name; p++)
        if (strcmp(p->name, key) == 0) return p;
    return NULL;
}

/* The error for a key the table does not declare: the nearest name when it
 * looks like a typo, else the whole list so the user need not open the docs. */
static int unknown_param(const mp_param *table, const mp_spec_param *g, const char *file,
                         const char *stage_desc, mp_err *err) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    char list[400] = "";
    size_t o = 0;
    for (const mp_param *p = table; p && p->name; p++) {
        size_t d = mp_edit_distance(g->key, p->name);
        if (d < best_d) {
            best_d = d;
            best = p->name;
        }
        if (o < sizeof list)
            o += (size_t)snprintf(list + o, sizeof list - o, "%s%s", o ? ", " : "", p->name);
    }
    if (best && close_enough(g->key, best_d))
        MP_ERR(err, MP_E_CONFIG, "unknown parameter '%s' for %s (did you mean '%s'?)", g->key,
               stage_desc, best);
    else if (best)
        MP_ERR(err, MP_E_CONFIG, "unknown parameter '%s' for %s (valid: %s)", g->key, stage_desc,
               list);
    else
        MP_ERR(err, MP_E_CONFIG, "unknown parameter '%s' for %s (it takes no parameters)",
               g->key, stage_desc);
    if (g->from_cli) return mp_err_where(err, "--set %s", g->set_text ? g->set_text : g->key);
    return mp_err_where(err, "%s:%d:%d", file, g->line, g->col);
}

/* Each table row is filled from, in order of preference: the given value
 * (YAML or --set), the table's default text, nothing (an error if required,
 * else the zero value).  Applied defaults are logged at debug level. */
int mp_param_fill(const mp_param *table, void *conf, const mp_spec_param *given, size_t n,
                  const char *file, const char *stage_desc, mp_err *err) {
    /* Unknown keys first: a typo'd key would otherwise surface as a confusing
     * "missing required parameter" for the name the user meant. */
    for (size_t i = 0; i < n; i++)
        if (!find_param(table, given[i].key))
            return unknown_param(table, &given[i], file, stage_desc, err);

    for (const mp_param *p = table; p && p->name; p++) {
        const mp_spec_param *g = NULL;
        for (size_t i = 0; i < n; i++)
            if (strcmp(given[i].key, p->name) == 0) g = &given[i]; /* the last one wins */
        const char *set_text = g && g->from_cli ? (g->set_text ? g->set_text : g->key) : NULL;
        slot c = { p, file, set_text, false, err };
        if (g) {
            if (convert(&c, &g->value, conf) != MP_OK) goto fail;
        } else if (p->def) {
            c.is_default = true;
            int rc;
            if (p->type == MP_P_STRING || p->type == MP_P_ENUM) {
                /* Taken literally: any scalar is a string, and parsing would
                 * only trip over defaults such as "," or "#" in the tables. */
                mp_value dv = { .type = MP_V_SCALAR, .s = (char *)p->def, .quoted = true };
                rc = convert(&c, &dv, conf);
            } else {
                mp_value dv;
                rc = mp_value_parse(p->def, "", &dv, err);
                if (rc == MP_OK) {
                    rc = convert(&c, &dv, conf);
                    mp_value_release(&dv);
                }
            }
            if (rc != MP_OK) {
                /* A bad default is a bug in the stage's table, not in the YAML. */
                if (rc == MP_E_CONFIG)
                    mp_err_prefix(err, "bad default \"%s\" in the parameter table of %s", p->def,
                                  stage_desc);
                goto fail;
            }
            mp_log(MP_LOG_DEBUG, "%s: %s defaults to %s", stage_desc, p->name, p->def);
        } else if (p->flags & MP_PF_REQUIRED) {
            MP_ERR(err, MP_E_CONFIG, "missing required parameter '%s' for %s", p->name,
                   stage_desc);
            goto fail;
        } else {
            set_zero(p, conf);
        }
    }
    return MP_OK;
fail:
    mp_param_release(table, conf);
    return err->code;
}

/* Only strings and lists own memory; numbers, bools and enums need nothing. */
void mp_param_release(const mp_param *table, void *conf) {
    if (!conf) return;
    for (const mp_param *p = table; p && p->name; p++) {
        switch (p->type) {
        case MP_P_STRING: {
            char **s = FIELD(conf, p, char *);
            mp_free(*s);
            *s = NULL;
            break;
        }
        case MP_P_INT_LIST: {
            mp_int_list *l = FIELD(conf, p, mp_int_list);
            mp_free(l->v);
            *l = (mp_int_list){ 0 };
            break;
        }
        case MP_P_STR_LIST: {
            mp_str_list *l = FIELD(conf, p, mp_str_list);
            for (size_t i = 0; i < l->n; i++) mp_free(l->v[i]);
            mp_free(l->v);
            *l = (mp_str_list){ 0 };
            break;
        }
        default: break;
        }
    }
}

/* ---------------------------------------------------------------- formatting */

/* A bounded writer that keeps counting past the end, so the caller learns
 * the full length (snprintf semantics). */
typedef struct outbuf {
    char  *buf;
    size_t size, len;
} outbuf;

static void put(outbuf *o, const char *s, size_t n) {
    if (o->len + 1 < o->size) {
        size_t room = o->size - 1 - o->len;
        memcpy(o->buf + o->len, s, n < room ? n : room);
    }
    o->len += n;
    if (o->size) o->buf[o->len < o->size ? o->len : o->size - 1] = '\0';
}

static void puts_(outbuf *o, const char *s) { put(o, s, strlen(s)); }

/* Shortest "%.Ng" that reads back as exactly x, so 0.1 prints as 0.1 and not
 * 0.10000000000000001, yet nothing is lost when the text is parsed again. */
static void format_double(double x, char *buf, size_t size) {
    /* Start at the number of integer digits, so 200 prints as 200, not 2e+02. */
    int start = 1;
    if (x != 0 && fabs(x) >= 1 && fabs(x) < 1e17) start = (int)floor(log10(fabs(x))) + 1;
    for (int prec = start; prec <= 17; prec++) {
        snprintf(buf, size, "%.*g", prec, x);
        if (strtod(buf, NULL) == x) return;
    }
}

/* True when s must be quoted to read back as the same string: empty, YAML
 * indicators up front, ": " or " #" inside, flow punctuation inside a list,
 * or text that would read as a number, bool or null. */
static bool needs_quotes(const char *s, bool in_flow) {
    static const char *const words[] = { "true", "false", "yes", "no", "on", "off",
                                         "y", "n", "null", "~" };
    size_t n = strlen(s);
    double d;
    if (n == 0 || strchr("-?:,[]{}#&*!|>'\"%@` \t", s[0]) || s[n - 1] == ' ' ||
        s[n - 1] == ':' || strstr(s, ": ") || strstr(s, " #") || strpbrk(s, "\n\r\t"))
        return true;
    if (in_flow && strpbrk(s, ",[]{}")) return true;
    if (mp_parse_double(s, &d)) return true;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcasecmp(s, words[i]) == 0) return true;
    return false;
}

static void put_string(outbuf *o, const char *s, bool in_flow) {
    if (!needs_quotes(s, in_flow)) {
        puts_(o, s);
        return;
    }
    /* Single quotes: the only escape inside them is '' for a quote. */
    put(o, "'", 1);
    for (const char *q = s; *q; q++) {
        put(o, q, 1);
        if (*q == '\'') put(o, "'", 1);
    }
    put(o, "'", 1);
}

size_t mp_param_format(const mp_param *p, const void *conf, char *buf, size_t size) {
    outbuf o = { buf, size, 0 };
    char tmp[64];
    if (size) buf[0] = '\0';
    switch (p->type) {
    case MP_P_INT:
        snprintf(tmp, sizeof tmp, "%d", *CFIELD(conf, p, int));
        puts_(&o, tmp);
        break;
    case MP_P_DOUBLE:
        format_double(*CFIELD(conf, p, double), tmp, sizeof tmp);
        puts_(&o, tmp);
        break;
    case MP_P_BOOL: puts_(&o, *CFIELD(conf, p, bool) ? "true" : "false"); break;
    case MP_P_ENUM: {
        char name[128];
        choice_name(p->choices ? p->choices : "", *CFIELD(conf, p, int), name, sizeof name);
        puts_(&o, name);
        break;
    }
    case MP_P_STRING: {
        /* An unset optional string prints as nothing (YAML null); a set one,
         * even "", prints so that it reads back the same. */
        const char *s = *CFIELD(conf, p, char *);
        if (s) put_string(&o, s, false);
        break;
    }
    case MP_P_INT_LIST: {
        const mp_int_list *l = CFIELD(conf, p, mp_int_list);
        put(&o, "[", 1);
        for (size_t i = 0; i < l->n; i++) {
            snprintf(tmp, sizeof tmp, "%s%d", i ? ", " : "", l->v[i]);
            puts_(&o, tmp);
        }
        put(&o, "]", 1);
        break;
    }
    case MP_P_STR_LIST: {
        const mp_str_list *l = CFIELD(conf, p, mp_str_list);
        put(&o, "[", 1);
        for (size_t i = 0; i < l->n; i++) {
            if (i) put(&o, ", ", 2);
            put_string(&o, l->v[i], true);
        }
        put(&o, "]", 1);
        break;
    }
    }
    return o.len;
}

const char *mp_param_type_name(mp_param_type t) {
    switch (t) {
    case MP_P_INT: return "int";
    case MP_P_DOUBLE: return "double";
    case MP_P_BOOL: return "bool";
    case MP_P_STRING: return "string";
    case MP_P_ENUM: return "enum";
    case MP_P_INT_LIST: return "int list";
    case MP_P_STR_LIST: return "string list";
    }
    return "?";
}
