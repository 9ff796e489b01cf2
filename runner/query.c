/*
 * query.c -- the `--where` compiler of `mlpipe runs`: a small expression
 * language turned into SQL with bound parameters, plus the name resolution
 * and ordering that --sort and --columns share with it.
 *
 * Grammar (keywords are case-insensitive):
 *
 *   expr    := and { "or" and }
 *   and     := unary { "and" unary }
 *   unary   := "not" unary | primary
 *   primary := "(" expr ")" | NAME test
 *   test    := OP value                      OP: = == != <> < <= > >=
 *            | [ "not" ] "in" "(" value { "," value } ")"
 *            | [ "not" ] "like" STRING
 *   value   := NUMBER | STRING               'it''s' or "..."; 1, -2.5, 1e-3
 *   NAME    := [A-Za-z_][A-Za-z0-9_.-]*  or  `any text`   (`` for a backquote)
 *
 * The compiler is a recursive-descent parser that writes SQL as it goes
 * (there is no tree): a comparison becomes "(VALUE OP ?)", where VALUE is a
 * run column or a scalar subquery for a metric or param, so SQL's
 * three-valued logic gives the rule users see -- a run that lacks a key
 * matches no test on it, not even `!=` or `not`.  An and/or chain is
 * parenthesised once it has two operands, so precedence survives whatever
 * encloses it.  All user text -- keys, strings, numbers -- is bound, never
 * pasted: the SQL words come from the tables below.
 *
 * Errors carry the 1-based byte offset of the token where the problem was
 * seen ("--where: offset 17: expected a value after '>'"); the end of the
 * text counts as the offset just past it.
 */
#include "query.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"     /* mp_nearest */

/* ---------------------------------------------------------------- mp_sql */

void mp_sql_init(mp_sql *q) {
    memset(q, 0, sizeof *q);
}

void mp_sql_release(mp_sql *q) {
    for (size_t i = 0; i < q->n_vals; i++) mp_free(q->vals[i].s);
    mp_free(q->vals);
    mp_free(q->text);
    mp_sql_init(q);
}

/* Makes room for n more bytes of text (plus the NUL). */
static bool text_room(mp_sql *q, size_t n) {
    if (q->nomem) return false;
    if (q->len + n + 1 <= q->cap) return true;
    size_t cap = q->cap ? q->cap : 256;
    while (cap < q->len + n + 1) cap *= 2;
    char *t = mp_realloc(q->text, cap);
    if (!t) {
        q->nomem = true;
        return false;
    }
    q->text = t;
    q->cap = cap;
    return true;
}

void mp_sql_add(mp_sql *q, const char *sql) {
    size_t n = strlen(sql);
    if (!text_room(q, n)) return;
    memcpy(q->text + q->len, sql, n + 1);
    q->len += n;
}

/* Inserts sql at byte pos of the text (for the "(" of an and/or chain that
 * turned out to have a second operand).  Bound values are unaffected: the
 * inserted text has no "?". */
static void sql_insert(mp_sql *q, size_t pos, const char *sql) {
    size_t n = strlen(sql);
    if (!text_room(q, n)) return;
    memmove(q->text + pos + n, q->text + pos, q->len - pos + 1);
    memcpy(q->text + pos, sql, n);
    q->len += n;
}

/* Appends "?" and a slot for its value; NULL when out of memory. */
static mp_sql_value *add_value(mp_sql *q) {
    if (q->nomem) return NULL;
    if (q->n_vals == q->cap_vals) {
        size_t cap = q->cap_vals ? q->cap_vals * 2 : 8;
        mp_sql_value *v = mp_realloc(q->vals, mp_mul_size(cap, sizeof *v));
        if (!v) {
            q->nomem = true;
            return NULL;
        }
        q->vals = v;
        q->cap_vals = cap;
    }
    mp_sql_add(q, "?");
    if (q->nomem) return NULL;
    mp_sql_value *v = &q->vals[q->n_vals++];
    memset(v, 0, sizeof *v);
    return v;
}

void mp_sql_bind_text(mp_sql *q, const char *s) {
    char *c = q->nomem ? NULL : mp_strdup(s);
    if (!c) {
        q->nomem = true;
        return;
    }
    mp_sql_value *v = add_value(q);
    if (!v) {
        mp_free(c);
        return;
    }
    v->type = SQLITE_TEXT;
    v->s = c;
}

void mp_sql_bind_int(mp_sql *q, long long i) {
    mp_sql_value *v = add_value(q);
    if (v) {
        v->type = SQLITE_INTEGER;
        v->i = i;
    }
}

void mp_sql_bind_double(mp_sql *q, double d) {
    mp_sql_value *v = add_value(q);
    if (v) {
        v->type = SQLITE_FLOAT;
        v->d = d;
    }
}

int mp_sql_prepare(const mp_sql *q, sqlite3 *db, sqlite3_stmt **out) {
    *out = NULL;
    if (q->nomem || !q->text) return SQLITE_NOMEM;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, q->text, (int)q->len, &st, NULL);
    for (size_t i = 0; rc == SQLITE_OK && i < q->n_vals; i++) {
        const mp_sql_value *v = &q->vals[i];
        int k = (int)i + 1;
        if (v->type == SQLITE_INTEGER) rc = sqlite3_bind_int64(st, k, v->i);
        else if (v->type == SQLITE_FLOAT) rc = sqlite3_bind_double(st, k, v->d);
        else rc = sqlite3_bind_text(st, k, v->s, -1, SQLITE_TRANSIENT);
    }
    if (rc != SQLITE_OK) {
        sqlite3_finalize(st);
        return rc;
    }
    *out = st;
    return SQLITE_OK;
}

/* ---------------------------------------------------------------- names */

/* The run fields a name can refer to, and the SQL of each.  `status` is what
 * readers see: rundb.c's mp_status() turns a dead `running` run into "lost". */
static const struct field {
    const char *name;
    const char *sql;
    mp_qtype    type;
} fields[] = {
    { "id",             "r.id",             MP_QT_INT },
    { "pipeline",       "r.pipeline",       MP_QT_TEXT },
    { "status",         "mp_status(r.status, r.host, r.pid, r.heartbeat)", MP_QT_STATUS },
    { "started",        "r.started",        MP_QT_TIME },
    { "ended",          "r.ended",          MP_QT_TIME },
    { "seconds",        "r.seconds",        MP_QT_REAL },
    { "seed",           "r.seed",           MP_QT_INT },
    { "exit_code",      "r.exit_code",      MP_QT_INT },
    { "host",           "r.host",           MP_QT_TEXT },
    { "pid",            "r.pid",            MP_QT_INT },
    { "error",          "r.error",          MP_QT_TEXT },
    { "failed_stage",   "r.failed_stage",   MP_QT_TEXT },
    { "mlpipe_version", "r.mlpipe_version", MP_QT_TEXT },
    { "config_sha256",  "r.config_sha256",  MP_QT_TEXT },
    { "heartbeat",      "r.heartbeat",      MP_QT_TIME },
};
enum { N_FIELDS = sizeof fields / sizeof *fields };

static const char *const statuses[] = { "running", "finished", "failed", "killed", "lost" };

/* The latest final figure of a metric, and a param's text, as scalar
 * subqueries around the bound key (HEAD ? TAIL).  Both are index lookups:
 * metrics (run, key, step) and the params primary key (run, key). */
static const char metric_head[] = "(SELECT m.value FROM metrics m WHERE m.run = r.id AND m.key = ";
static const char metric_tail[] = " AND m.step IS NULL ORDER BY m.rowid DESC LIMIT 1)";
static const char param_head[] = "(SELECT p.value FROM params p WHERE p.run = r.id AND p.key = ";
static const char param_tail[] = ")";

size_t mp_query_n_fields(void) { return N_FIELDS; }

const char *mp_query_field_name(int field) { return fields[field].name; }

mp_qtype mp_query_field_type(int field) { return fields[field].type; }

int mp_query_field_find(const char *name) {
    for (int i = 0; i < N_FIELDS; i++)
        if (strcmp(name, fields[i].name) == 0) return i;
    return -1;
}

static bool has_prefix(const char *s, const char *prefix) {
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Resolves name; on a name that is no key writes the reason (without the
 * option or offset) into why and returns MP_E_USAGE.  Other failures come
 * from keys->has with err set. */
static int resolve(const char *name, const mp_query_keys *keys, mp_query_ref *ref,
                   char *why, size_t n, mp_err *err) {
    int f = mp_query_field_find(name);
    if (f >= 0) {
        *ref = (mp_query_ref){ .kind = MP_QK_FIELD, .field = f, .key = name };
        return MP_OK;
    }
    unsigned found = 0;
    if (keys->has(keys->ud, name, &found, err) != MP_OK) return err->code;
    bool metric = found & MP_QHAS_FINAL, param = found & MP_QHAS_PARAM;
    if (metric && param) {
        snprintf(why, n, "'%s' is both a metric and a param: write metrics.%s or params.%s",
                 name, name, name);
        return MP_E_USAGE;
    }
    if (metric || param) {
        *ref = (mp_query_ref){ .kind = metric ? MP_QK_METRIC : MP_QK_PARAM, .key = name };
        return MP_OK;
    }
    /* explicit prefixes, for keys no run has yet or keys that are both */
    if (has_prefix(name, "metrics.") && name[8]) {
        *ref = (mp_query_ref){ .kind = MP_QK_METRIC, .key = name + 8 };
        return MP_OK;
    }
    if (has_prefix(name, "params.") && name[7]) {
        *ref = (mp_query_ref){ .kind = MP_QK_PARAM, .key = name + 7 };
        return MP_OK;
    }
    if (found & MP_QHAS_STEPS) {
        snprintf(why, n, "'%s' has only per-step values; filters and columns use final "
                 "figures (see 'mlpipe runs metrics RUN %s')", name, name);
        return MP_E_USAGE;
    }
    /* the closer of the nearest field and the nearest key in the database */
    const char *names[N_FIELDS];
    for (int i = 0; i < N_FIELDS; i++) names[i] = fields[i].name;
    const char *near = mp_nearest(name, names, N_FIELDS);
    const char *near_db = keys->nearest ? keys->nearest(keys->ud, name) : NULL;
    if (near_db && (!near || mp_edit_distance(name, near_db) < mp_edit_distance(name, near)))
        near = near_db;
    char hint[160] = "";
    if (near) snprintf(hint, sizeof hint, " (did you mean '%s'?)", near);
    snprintf(why, n, "unknown key '%s': no run field, and no run has a final metric or a "
             "param of that name%s", name, hint);
    return MP_E_USAGE;
}

int mp_query_resolve(const char *opt, const char *name, const mp_query_keys *keys,
                     mp_query_ref *ref, mp_err *err) {
    char why[400];
    int rc = resolve(name, keys, ref, why, sizeof why, err);
    if (rc == MP_E_USAGE && err->code == MP_OK)
        return MP_ERR(err, MP_E_USAGE, "%s: %s", opt, why);
    return rc;
}

void mp_query_value(mp_sql *q, const mp_query_ref *ref) {
    switch (ref->kind) {
    case MP_QK_FIELD:
        mp_sql_add(q, fields[ref->field].sql);
        break;
    case MP_QK_METRIC:
        mp_sql_add(q, metric_head);
        mp_sql_bind_text(q, ref->key);
        mp_sql_add(q, metric_tail);
        break;
    case MP_QK_PARAM:
        mp_sql_add(q, param_head);
        mp_sql_bind_text(q, ref->key);
        mp_sql_add(q, param_tail);
        break;
    }
}

void mp_query_order(mp_sql *q, const mp_query_ref *ref, bool desc) {
    /* NULLS LAST rather than "E IS NULL, E": each term is computed once per
     * row, and for a metric or param E is a subquery */
    const char *dir = desc ? " DESC NULLS LAST" : " NULLS LAST";
    if (ref->kind == MP_QK_PARAM) {
        /* numbers first, in numeric order; then other text; then unset */
        mp_sql_add(q, "mp_num(");
        mp_query_value(q, ref);
        mp_sql_add(q, ")");
        mp_sql_add(q, dir);
        mp_sql_add(q, ", ");
    }
    mp_query_value(q, ref);
    mp_sql_add(q, dir);
}

/* ---------------------------------------------------------------- times */

/* Parses "YYYY-MM-DD[(T| )HH:MM[:SS[.fff]]][Z]" into *t (unix seconds). */
static bool parse_date(const char *s, double *t) {
    int y, mo, d, h = 0, mi = 0, n = 0;
    double sec = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10) return false;
    const char *p = s + n;
    if (*p == 'T' || *p == ' ') {
        int m = 0;
        if (sscanf(p + 1, "%2d:%2d%n", &h, &mi, &m) != 2 || m != 5) return false;
        p += 1 + m;
        if (*p == ':') {
            char *end;
            if (!isdigit((unsigned char)p[1])) return false;
            sec = strtod(p + 1, &end);
            p = end;
        }
    }
    bool utc = *p == 'Z';
    if (utc) p++;
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
        sec < 0 || sec >= 61)
        return false;
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                     .tm_min = mi, .tm_isdst = -1 };
    time_t base = utc ? timegm(&tm) : mktime(&tm);
    if (base == (time_t)-1) return false;
    *t = (double)base + sec;
    return true;
}

/* Parses an age "90s", "30m", "2h", "3d", "1w" (a number, maybe with a
 * fraction, and one unit) into seconds. */
static bool parse_age(const char *s, double *secs) {
    char *end;
    if (!isdigit((unsigned char)*s)) return false;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || end[0] == '\0' || end[1] != '\0') return false;
    static const struct { char unit; double secs; } units[] = {
        { 's', 1 }, { 'm', 60 }, { 'h', 3600 }, { 'd', 86400 }, { 'w', 7 * 86400 },
    };
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (*end == units[i].unit) {
            *secs = v * units[i].secs;
            return isfinite(*secs);
        }
    return false;
}

bool mp_query_time(const char *s, char out[32]) {
    double t, age;
    if (parse_age(s, &age)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        t = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 - age;
    } else if (!parse_date(s, &t)) {
        return false;
    }
    time_t whole = (time_t)floor(t);
    int ms = (int)((t - (double)whole) * 1000.0);
    struct tm tm;
    if (!gmtime_r(&whole, &tm)) return false;
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", ms < 0 ? 0 : ms > 999 ? 999 : ms);
    return true;
}

/* ---------------------------------------------------------------- tokens */

typedef enum tok_kind {
    T_END, T_NAME, T_NUMBER, T_STRING, T_LPAREN, T_RPAREN, T_COMMA, T_OP,
    T_AND, T_OR, T_NOT, T_IN, T_LIKE
} tok_kind;

typedef struct token {
    tok_kind    kind;
    size_t      off, len;   /* its bytes in the source */
    char       *text;       /* T_NAME, T_STRING: decoded text (owned); T_OP: the SQL operator */
    double      num;        /* T_NUMBER */
    bool        is_int;     /* T_NUMBER written without '.' or exponent, fits in ival */
    long long   ival;
} token;

enum {
    MAX_DEPTH = 64,         /* nested parentheses and nots */
    MAX_VALUES = 1000,      /* bound values per expression */
    SHOW_MAX = 40           /* bytes of a token quoted in a message */
};

typedef struct parser {
    const char          *src;
    token               *toks;      /* n tokens, the last one T_END */
    size_t               n, pos;
    mp_sql              *q;
    const mp_query_keys *keys;
    mp_err              *err;
    int                  depth;
    int                  negated;   /* enclosing nots: > 0 turns off the prefilter */
    int                  n_values;  /* literals so far, at most MAX_VALUES */
} parser;

/* MP_E_USAGE "--where: offset N: msg" for the byte at off (0-based). */
static int perr(parser *p, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int perr(parser *p, size_t off, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return MP_ERR(p->err, MP_E_USAGE, "--where: offset %zu: %s", off + 1, msg);
}

/* The token as the user wrote it, for messages: "'>'", "the end". */
static const char *show(const parser *p, const token *t, char *buf, size_t n) {
    if (t->kind == T_END) return "the end of the expression";
    if (t->len > SHOW_MAX) snprintf(buf, n, "'%.*s...'", SHOW_MAX, p->src + t->off);
    else snprintf(buf, n, "'%.*s'", (int)t->len, p->src + t->off);
    return buf;
}

static bool name_start(int c) { return isalpha(c) || c == '_' || c >= 0x80; }

static bool name_char(int c) {
    return isalnum(c) || c == '_' || c == '.' || c == '-' || c >= 0x80;
}

/* Decodes a quoted string or backquoted name starting at s[i] (the quote):
 * a doubled quote stands for one.  Sets *end past the closing quote; NULL
 * with *end = 0 when it is not closed, NULL with *end != 0 on OOM. */
static char *unquote(const char *s, size_t i, size_t *end) {
    char quote = s[i];
    size_t j = i + 1, n = 0;
    for (;; j++) {
        if (s[j] == '\0') {
            *end = 0;
            return NULL;
        }
        if (s[j] == quote) {
            if (s[j + 1] != quote) break;
            j++;
        }
        n++;
    }
    *end = j + 1;
    char *out = mp_malloc(n + 1);
    if (!out) return NULL;
    size_t k = 0;
    for (size_t m = i + 1; m < j; m++) {
        out[k++] = s[m];
        if (s[m] == quote) m++;     /* skip the second of a doubled quote */
    }
    out[k] = '\0';
    return out;
}

/* Scans a number at s[i]: [+-] digits [. digits] [e [+-] digits]. */
static int scan_number(parser *p, size_t i, token *t) {
    const char *s = p->src;
    size_t j = i;
    bool digits = false, plain = true;
    if (s[j] == '+' || s[j] == '-') j++;
    while (isdigit((unsigned char)s[j])) j++, digits = true;
    if (s[j] == '.') {
        plain = false;
        j++;
        while (isdigit((unsigned char)s[j])) j++, digits = true;
    }
    if (digits && (s[j] == 'e' || s[j] == 'E')) {
        plain = false;
        size_t k = j + 1;
        if (s[k] == '+' || s[k] == '-') k++;
        if (isdigit((unsigned char)s[k])) {
            while (isdigit((unsigned char)s[k])) k++;
            j = k;
        } else {
            j = k;      /* "1e" or "1e+": reported below as a bad number */
            digits = false;
        }
    }
    size_t end = j;
    while (name_char((unsigned char)s[end])) end++;     /* "0.9x", "1.2.3" */
    if (!digits || end != j)
        return perr(p, i, "bad number '%.*s'", (int)(end - i > SHOW_MAX ? SHOW_MAX : end - i),
                    s + i);
    char buf[64];
    if (j - i >= sizeof buf) return perr(p, i, "number too long");
    memcpy(buf, s + i, j - i);
    buf[j - i] = '\0';
    errno = 0;
    t->num = strtod(buf, NULL);
    if (errno == ERANGE && isinf(t->num)) return perr(p, i, "number out of range '%s'", buf);
    if (plain) {
        errno = 0;
        t->ival = strtoll(buf, NULL, 10);
        t->is_int = errno == 0;
    }
    t->kind = T_NUMBER;
    t->len = j - i;
    return MP_OK;
}

static bool word_is(const char *s, size_t len, const char *w) {
    return strlen(w) == len && strncasecmp(s, w, len) == 0;
}

/* Splits p->src into p->toks (ending with T_END).  The whole expression is
 * tokenised before parsing, so the parser can look at the next token and
 * every message can quote the token as written.  A keyword is a name that
 * spells one (any case); operators map to their SQL spelling here. */
static int tokenize(parser *p) {
    const char *s = p->src;
    size_t cap = 16, i = 0;
    p->toks = mp_calloc(cap, sizeof *p->toks);
    if (!p->toks) goto nomem;
    for (;;) {
        while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') i++;
        if (p->n + 1 >= cap) {
            token *t = mp_realloc(p->toks, mp_mul_size(cap * 2, sizeof *t));
            if (!t) goto nomem;
            memset(t + cap, 0, cap * sizeof *t);
            p->toks = t;
            cap *= 2;
        }
        token *t = &p->toks[p->n];
        t->off = i;
        t->len = 1;
        unsigned char c = (unsigned char)s[i];
        if (c == '\0') {
            t->kind = T_END;
            t->len = 0;
            p->n++;
            return MP_OK;
        }
        if (c == '(' || c == ')' || c == ',') {
            t->kind = c == '(' ? T_LPAREN : c == ')' ? T_RPAREN : T_COMMA;
        } else if (strchr("=!<>", c)) {
            static const struct { const char *src, *sql; } ops[] = {
                { "==", "=" }, { "!=", "!=" }, { "<>", "!=" }, { "<=", "<=" }, { ">=", ">=" },
                { "=", "=" }, { "<", "<" }, { ">", ">" },
            };
            size_t k;
            for (k = 0; k < sizeof ops / sizeof *ops; k++)
                if (strncmp(s + i, ops[k].src, strlen(ops[k].src)) == 0) break;
            if (k == sizeof ops / sizeof *ops) return perr(p, i, "unexpected character '!'");
            t->kind = T_OP;
            t->len = strlen(ops[k].src);
            t->text = (char *)ops[k].sql;   /* static; see tokens_free */
        } else if (c == '\'' || c == '"' || c == '`') {
            size_t end;
            char *text = unquote(s, i, &end);
            if (!text && end) goto nomem;
            if (!text)
                return perr(p, i, c == '`' ? "unterminated name (missing `)"
                                           : "unterminated string (missing %c)", c);
            t->kind = c == '`' ? T_NAME : T_STRING;
            t->text = text;
            t->len = end - i;
        } else if (isdigit(c) || c == '.' || c == '+' || c == '-') {
            if (scan_number(p, i, t) != MP_OK) return p->err->code;
        } else if (name_start(c)) {
            size_t j = i;
            while (name_char((unsigned char)s[j])) j++;
            t->len = j - i;
            static const struct { const char *word; tok_kind kind; } kw[] = {
                { "and", T_AND }, { "or", T_OR }, { "not", T_NOT }, { "in", T_IN },
                { "like", T_LIKE },
            };
            t->kind = T_NAME;
            for (size_t k = 0; k < sizeof kw / sizeof *kw; k++)
                if (word_is(s + i, t->len, kw[k].word)) t->kind = kw[k].kind;
            if (t->kind == T_NAME) {
                t->text = mp_malloc(t->len + 1);
                if (!t->text) goto nomem;
                memcpy(t->text, s + i, t->len);
                t->text[t->len] = '\0';
            }
        } else {
            if (c < 0x20 || c == 0x7f) return perr(p, i, "unexpected control character");
            return perr(p, i, "unexpected character '%c'", c);
        }
        i += t->len;
        p->n++;
    }
nomem:
    return MP_ERR(p->err, MP_E_NOMEM, "out of memory compiling --where");
}

static void tokens_free(parser *p) {
    /* a token is counted in n only once complete, and nothing fails after
     * its text is allocated, so the first n tokens own all the text */
    for (size_t i = 0; i < p->n; i++)
        if (p->toks[i].kind == T_NAME || p->toks[i].kind == T_STRING) mp_free(p->toks[i].text);
    mp_free(p->toks);
}

/* ---------------------------------------------------------------- parser */

static token *peek(parser *p) { return &p->toks[p->pos]; }

static token *next(parser *p) {
    token *t = &p->toks[p->pos];
    if (t->kind != T_END) p->pos++;
    return t;
}

static int parse_or(parser *p);

/* Whether the values of ref compare as numbers, as text, or as times. */
typedef enum { V_NUMBER, V_TEXT, V_TIME, V_STATUS } vclass;

static vclass class_of(const mp_query_ref *ref) {
    if (ref->kind == MP_QK_METRIC) return V_NUMBER;
    if (ref->kind == MP_QK_PARAM) return V_TEXT;     /* numbers allowed too, see bind_value */
    switch (fields[ref->field].type) {
    case MP_QT_INT:
    case MP_QT_REAL: return V_NUMBER;
    case MP_QT_TIME: return V_TIME;
    case MP_QT_STATUS: return V_STATUS;
    default: return V_TEXT;
    }
}

/* Checks literal t (a value of the test on ref named name; the caller has
 * made sure it is a number or a string) and binds it: numbers as integers
 * or doubles, times normalised to the stored ISO form, statuses checked
 * against the known ones. */
static int bind_value(parser *p, const mp_query_ref *ref, const char *name, const token *t) {
    assert(t->kind == T_NUMBER || t->kind == T_STRING);
    vclass c = class_of(ref);
    if (t->kind == T_NUMBER) {
        if (c == V_TIME)
            return perr(p, t->off, "'%s' is a time: quote it ('2026-11-27', '2h')", name);
        if (c != V_NUMBER && ref->kind != MP_QK_PARAM)
            return perr(p, t->off, "'%s' is text: quote the value ('%.*s')", name,
                        (int)t->len, p->src + t->off);
        if (t->is_int) {
            mp_sql_bind_int(p->q, t->ival);
        } else if (ref->kind == MP_QK_FIELD && strcmp(fields[ref->field].name, "seed") == 0 &&
                   t->num >= 9223372036854775808.0 && t->num <= 18446744073709551615.0 &&
                   !memchr(p->src + t->off, '.', t->len) && !memchr(p->src + t->off, 'e', t->len)) {
            /* seeds are unsigned 64-bit, stored two's complement: 2^64 - 1 is -1 */
            mp_sql_bind_int(p->q, (long long)strtoull(p->src + t->off, NULL, 10));
        } else {
            mp_sql_bind_double(p->q, t->num);
        }
        return MP_OK;
    }
    if (c == V_NUMBER)
        return perr(p, t->off, "'%s' is a %s: compare it with a number, not a string", name,
                    ref->kind == MP_QK_METRIC ? "metric" : "number");
    if (c == V_TIME) {
        char iso[32];
        if (!mp_query_time(t->text, iso))
            return perr(p, t->off, "bad time '%.*s' for '%s': expected a date (2026-11-27), "
                        "a date and time (2026-11-27 10:00, local; Z for UTC) or an age "
                        "(90s, 30m, 2h, 3d, 1w)", SHOW_MAX, t->text, name);
        mp_sql_bind_text(p->q, iso);
        return MP_OK;
    }
    if (c == V_STATUS) {
        bool known = false;
        for (size_t i = 0; i < sizeof statuses / sizeof *statuses; i++)
            known |= strcmp(t->text, statuses[i]) == 0;
        if (!known)
            return perr(p, t->off, "unknown status '%.*s': expected running, finished, "
                        "failed, killed or lost", SHOW_MAX, t->text);
    }
    mp_sql_bind_text(p->q, t->text);
    return MP_OK;
}

/* The value of ref as SQL for a test against a number (params: their text
 * read as a number, NULL when it is not one) or against text. */
static void value_as(parser *p, const mp_query_ref *ref, bool number) {
    if (number && ref->kind == MP_QK_PARAM) {
        mp_sql_add(p->q, "mp_num(");
        mp_query_value(p->q, ref);
        mp_sql_add(p->q, ")");
    } else {
        mp_query_value(p->q, ref);
    }
}

/* Counts a literal against MAX_VALUES. */
static int count_value(parser *p, const token *t) {
    if (++p->n_values > MAX_VALUES)
        return perr(p, t->off, "too many values (at most %d)", MAX_VALUES);
    return MP_OK;
}

/* Whether a test on ref gets the prefilter: a metric, outside any `not`.
 *
 * A test on a metric reads the run's latest final figure through a scalar
 * subquery, one index probe per run: with 10,000 runs and a test few of
 * them pass, every run is probed (some 50 ms).  So it is preceded by
 *   +r.id IN (SELECT f.run FROM metrics f WHERE f.key = K AND f.step IS NULL
 *             AND f.value OP V)
 * a list SQLite builds once from the covering index metrics_final, reading
 * only the matching index entries; a run not in it is passed over without a probe.  The "+"
 * keeps SQLite from driving the whole query by that list (looking up each
 * listed run, then sorting them all): runs are still read newest first, so
 * `--limit 20` stops after 20 matches when matches are common.
 *
 * The prefilter is implied by the test (if the latest figure passes, some
 * figure does), so "prefilter AND test" selects the same runs -- except
 * under a `not`, where a run without the metric would turn from NULL (no
 * match) into false and then, negated, into a match. */
static bool prefilter(const parser *p, const mp_query_ref *ref) {
    return ref->kind == MP_QK_METRIC && p->negated == 0;
}

static void prefilter_head(parser *p, const mp_query_ref *ref) {
    mp_sql_add(p->q, "+r.id IN (SELECT f.run FROM metrics f WHERE f.key = ");
    mp_sql_bind_text(p->q, ref->key);
    mp_sql_add(p->q, " AND f.step IS NULL AND f.value ");
}

/* "(?, ?, ...)" for the values of vals[0 .. n) that are (not) numbers. */
static int put_list(parser *p, const mp_query_ref *ref, const char *name, const token **vals,
                    size_t n, bool all, bool numbers) {
    mp_sql_add(p->q, "(");
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (!all && (vals[i]->kind == T_NUMBER) != numbers) continue;
        if (!first) mp_sql_add(p->q, ", ");
        first = false;
        if (bind_value(p, ref, name, vals[i]) != MP_OK) return p->err->code;
    }
    mp_sql_add(p->q, ")");
    return MP_OK;
}

/* NAME [not] in ( v, ... ): t is the "in" token.  A param's list may mix
 * numbers and strings: "(mp_num(P) IN (1, 2) OR P IN ('a'))". */
static int parse_in(parser *p, const mp_query_ref *ref, const char *name, const token *in_tok,
                    bool negate) {
    char buf[SHOW_MAX + 8];
    token *t = next(p);
    if (t->kind != T_LPAREN)
        return perr(p, t->off, "expected '(' after 'in', found %s", show(p, t, buf, sizeof buf));
    const token *vals[MAX_VALUES];
    size_t n = 0;
    for (;;) {
        t = next(p);
        if (t->kind != T_NUMBER && t->kind != T_STRING)
            return perr(p, t->off, "expected a value in the list of 'in', found %s",
                        show(p, t, buf, sizeof buf));
        if (count_value(p, t) != MP_OK) return p->err->code;
        vals[n++] = t;
        t = next(p);
        if (t->kind == T_RPAREN) break;
        if (t->kind != T_COMMA)
            return perr(p, t->off, "expected ',' or ')' in the list of 'in' at offset %zu, "
                        "found %s", in_tok->off + 1, show(p, t, buf, sizeof buf));
    }
    mp_sql_add(p->q, negate ? "NOT (" : "(");
    if (ref->kind != MP_QK_PARAM) {
        if (!negate && prefilter(p, ref)) {
            prefilter_head(p, ref);
            mp_sql_add(p->q, "IN ");
            if (put_list(p, ref, name, vals, n, true, false) != MP_OK) return p->err->code;
            mp_sql_add(p->q, ") AND ");
        }
        value_as(p, ref, false);
        mp_sql_add(p->q, " IN ");
        if (put_list(p, ref, name, vals, n, true, false) != MP_OK) return p->err->code;
        mp_sql_add(p->q, ")");
        return MP_OK;
    }
    /* a param: numbers against its text read as a number, strings as text */
    size_t n_num = 0;
    for (size_t i = 0; i < n; i++) n_num += vals[i]->kind == T_NUMBER;
    if (n_num > 0) {
        value_as(p, ref, true);
        mp_sql_add(p->q, " IN ");
        if (put_list(p, ref, name, vals, n, false, true) != MP_OK) return p->err->code;
    }
    if (n_num > 0 && n_num < n) mp_sql_add(p->q, " OR ");
    if (n_num < n) {
        value_as(p, ref, false);
        mp_sql_add(p->q, " IN ");
        if (put_list(p, ref, name, vals, n, false, false) != MP_OK) return p->err->code;
    }
    mp_sql_add(p->q, ")");
    return MP_OK;
}

/* NAME test: t is the name token.  The name is resolved first (a field, a
 * metric or a param; errors point at the name), then the test is checked
 * against its type: numbers for metrics and numeric fields, quoted text for
 * text fields and times, either for params. */
static int parse_test(parser *p, token *name_tok) {
    char buf[SHOW_MAX + 8], why[400];
    mp_query_ref ref;
    int rc = resolve(name_tok->text, p->keys, &ref, why, sizeof why, p->err);
    if (rc == MP_E_USAGE && p->err->code == MP_OK) return perr(p, name_tok->off, "%s", why);
    if (rc != MP_OK) return rc;
    const char *name = name_tok->text;

    token *t = next(p);
    bool negate = false;
    if (t->kind == T_NOT) {
        negate = true;
        t = next(p);
        if (t->kind != T_IN && t->kind != T_LIKE)
            return perr(p, t->off, "expected 'in' or 'like' after '%s not', found %s", name,
                        show(p, t, buf, sizeof buf));
    }
    if (t->kind == T_IN) return parse_in(p, &ref, name, t, negate);
    if (t->kind == T_LIKE) {
        token *v = next(p);
        if (v->kind != T_STRING)
            return perr(p, v->off, "expected a 'pattern' after 'like', found %s",
                        show(p, v, buf, sizeof buf));
        if (class_of(&ref) == V_NUMBER)
            return perr(p, t->off, "'like' matches text, and '%s' is a %s", name,
                        ref.kind == MP_QK_METRIC ? "metric (a number)" : "number");
        mp_sql_add(p->q, "(");
        mp_query_value(p->q, &ref);
        mp_sql_add(p->q, negate ? " NOT LIKE " : " LIKE ");
        if (count_value(p, v) != MP_OK) return p->err->code;
        mp_sql_bind_text(p->q, v->text);    /* a pattern: not normalised like a time */
        mp_sql_add(p->q, " ESCAPE '\\')");
        return MP_OK;
    }
    if (t->kind != T_OP)
        return perr(p, t->off, "expected an operator (= != < <= > >= in like) after '%s', "
                    "found %s", name, show(p, t, buf, sizeof buf));
    token *v = next(p);
    if (v->kind == T_END)
        return perr(p, v->off, "expected a value after '%.*s'", (int)t->len, p->src + t->off);
    if (v->kind != T_NUMBER && v->kind != T_STRING)
        return perr(p, v->off, "expected a value after '%.*s', found %s", (int)t->len,
                    p->src + t->off, show(p, v, buf, sizeof buf));
    if (count_value(p, v) != MP_OK) return p->err->code;
    mp_sql_add(p->q, "(");
    if (prefilter(p, &ref)) {
        prefilter_head(p, &ref);
        mp_sql_add(p->q, t->text);
        mp_sql_add(p->q, " ");
        if (bind_value(p, &ref, name, v) != MP_OK) return p->err->code;
        mp_sql_add(p->q, ") AND ");
    }
    value_as(p, &ref, v->kind == T_NUMBER);
    mp_sql_add(p->q, " ");
    mp_sql_add(p->q, t->text);
    mp_sql_add(p->q, " ");
    if (bind_value(p, &ref, name, v) != MP_OK) return p->err->code;
    mp_sql_add(p->q, ")");
    return MP_OK;
}

/* unary := "not" unary | "(" expr ")" | NAME test.  Depth counts both
 * parentheses and nots, so no input can exhaust the C stack. */
static int parse_unary(parser *p) {
    char buf[SHOW_MAX + 8];
    token *t = next(p);
    if (++p->depth > MAX_DEPTH) return perr(p, t->off, "expression nested too deeply");
    int rc;
    if (t->kind == T_NOT) {
        mp_sql_add(p->q, "NOT ");
        p->negated++;
        rc = parse_unary(p);
        p->negated--;
    } else if (t->kind == T_LPAREN) {
        rc = parse_or(p);
        token *close = next(p);
        if (rc == MP_OK && close->kind != T_RPAREN)
            rc = perr(p, close->off, "expected ')' to close the '(' at offset %zu, found %s",
                      t->off + 1, show(p, close, buf, sizeof buf));
    } else if (t->kind == T_NAME) {
        rc = parse_test(p, t);
    } else if (t->kind == T_END && p->pos == 0) {
        rc = perr(p, t->off, "empty expression");
    } else if (t->kind == T_END) {
        const token *prev = &p->toks[p->pos - 1];
        rc = perr(p, t->off, "expected a key, 'not' or '(' after %s", show(p, prev, buf, sizeof buf));
    } else {
        rc = perr(p, t->off, "expected a key, 'not' or '(', found %s", show(p, t, buf, sizeof buf));
    }
    p->depth--;
    return rc;
}

/* One level of a left-associative chain: operand { word operand }.  The
 * chain is parenthesised once a second operand follows. */
static int parse_chain(parser *p, tok_kind word, const char *sql, int (*operand)(parser *)) {
    size_t start = p->q->len;
    if (operand(p) != MP_OK) return p->err->code;
    if (peek(p)->kind != word) return MP_OK;
    sql_insert(p->q, start, "(");
    while (peek(p)->kind == word) {
        next(p);
        mp_sql_add(p->q, sql);
        if (operand(p) != MP_OK) return p->err->code;
    }
    mp_sql_add(p->q, ")");
    return MP_OK;
}

static int parse_and(parser *p) { return parse_chain(p, T_AND, " AND ", parse_unary); }

static int parse_or(parser *p) { return parse_chain(p, T_OR, " OR ", parse_and); }

/* The expression must be used up: a parse that stops early (at a ")" or a
 * second test without "and") is an error at that token. */
int mp_query_where(mp_sql *q, const char *expr, const mp_query_keys *keys, mp_err *err) {
    parser p = { .src = expr, .q = q, .keys = keys, .err = err };
    if (tokenize(&p) == MP_OK && parse_or(&p) == MP_OK) {
        char buf[SHOW_MAX + 8];
        token *t = peek(&p);
        if (t->kind == T_RPAREN)
            perr(&p, t->off, "unmatched ')'");
        else if (t->kind != T_END)
            perr(&p, t->off, "expected 'and', 'or' or the end, found %s",
                 show(&p, t, buf, sizeof buf));
    }
    tokens_free(&p);
    if (err->code == MP_OK && q->nomem)
        MP_ERR(err, MP_E_NOMEM, "out of memory compiling --where");
    return err->code;
}
