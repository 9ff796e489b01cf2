/*
 * query.h -- the `--where` compiler of `mlpipe runs`, and the pieces of SQL
 * the other run options (--sort, --columns, --since) share with it.
 *
 * Everything here builds SQL over the runs table aliased `r`.  User text
 * never becomes SQL text: every key and literal is a bound parameter, and
 * the SQL words come from fixed tables in query.c.  README "Querying runs"
 * documents the language; in short:
 *
 *   test.accuracy > 0.9 and train.learning_rate in (0.1, 0.01)
 *     and not pipeline like 'fmnist%'
 *
 * A name is a run field (id, pipeline, status, started, ...), else a metric
 * (its final figure: the latest row with step NULL) or a param, decided by
 * looking the key up in the database; `metrics.KEY` and `params.KEY` say
 * which one explicitly.
 */
#ifndef MP_QUERY_H
#define MP_QUERY_H

#include "mp.h"

#include <sqlite3.h>

/* ---------------------------------------------------------------- SQL text + bound values */

/* One bound value: SQLITE_INTEGER (i), SQLITE_FLOAT (d) or SQLITE_TEXT (s, owned). */
typedef struct mp_sql_value {
    int        type;
    long long  i;
    double     d;
    char      *s;
} mp_sql_value;

/* SQL under construction.  Each mp_sql_bind_* appends one "?" and its value,
 * so the values are in the order of the ?s in the text.  An allocation
 * failure is sticky (nomem) and reported by mp_sql_prepare, so building code
 * reads as a list of appends.  Zero-initialise ({ 0 }) or mp_sql_init. */
typedef struct mp_sql {
    char         *text;     /* NUL-terminated once anything was added; owned */
    size_t        len, cap;
    mp_sql_value *vals;     /* n_vals bound values, owned */
    size_t        n_vals, cap_vals;
    bool          nomem;    /* an append failed: the text is incomplete */
} mp_sql;

void mp_sql_init(mp_sql *q);
void mp_sql_release(mp_sql *q);                 /* frees everything; q can be reused after init */
/* Appends SQL text from the program (never from the user). */
void mp_sql_add(mp_sql *q, const char *sql);
/* Append "?" bound to a copy of s / to v. */
void mp_sql_bind_text(mp_sql *q, const char *s);
void mp_sql_bind_int(mp_sql *q, long long v);
void mp_sql_bind_double(mp_sql *q, double v);
/* Prepares q's text on db and binds its values.  Returns an SQLite result
 * code: SQLITE_NOMEM when q->nomem; on failure *st is NULL and the message
 * is sqlite3_errmsg(db). */
int  mp_sql_prepare(const mp_sql *q, sqlite3 *db, sqlite3_stmt **st);

/* ---------------------------------------------------------------- names */

/* What the database holds under a key (bits). */
enum {
    MP_QHAS_FINAL = 1,      /* a metric row with step NULL (a final figure) */
    MP_QHAS_STEPS = 2,      /* a metric row with a step (a history) */
    MP_QHAS_PARAM = 4       /* a params row */
};

/* How names are looked up: has() sets *found to the MP_QHAS_* bits of key
 * (MP_OK) or fails (an MP_E_* code, err set).  nearest() is optional (may be
 * NULL): a known key close to key for a "did you mean" hint, or NULL; the
 * string stays valid until the next call. */
typedef struct mp_query_keys {
    int         (*has)(void *ud, const char *key, unsigned *found, mp_err *err);
    const char *(*nearest)(void *ud, const char *key);
    void        *ud;
} mp_query_keys;

typedef enum mp_qkind { MP_QK_FIELD, MP_QK_METRIC, MP_QK_PARAM } mp_qkind;

/* The value types of run fields. */
typedef enum mp_qtype {
    MP_QT_INT,      /* id, seed, exit_code, pid */
    MP_QT_REAL,     /* seconds */
    MP_QT_TEXT,     /* pipeline, host, error, ... */
    MP_QT_TIME,     /* started, ended, heartbeat: ISO 8601 UTC text */
    MP_QT_STATUS    /* status, as readers see it (running may be "lost") */
} mp_qtype;

/* A resolved name. */
typedef struct mp_query_ref {
    mp_qkind    kind;
    int         field;      /* MP_QK_FIELD: index for mp_query_field_* */
    const char *key;        /* metric or param key, without a metrics./params.
                             * prefix; points into the name that was resolved */
} mp_query_ref;

/* The run fields, by index 0 .. mp_query_n_fields() - 1. */
size_t      mp_query_n_fields(void);
const char *mp_query_field_name(int field);     /* "id", "pipeline", ... */
mp_qtype    mp_query_field_type(int field);
int         mp_query_field_find(const char *name);  /* index, or -1 */

/* Resolves name (a field, metric or param; see the top of this header).
 * MP_E_USAGE "OPT: unknown key 'x': ..." (opt names the option, e.g.
 * "--sort"), or an error of keys->has.  *ref borrows name. */
int mp_query_resolve(const char *opt, const char *name, const mp_query_keys *keys,
                     mp_query_ref *ref, mp_err *err);

/* Appends the SQL value of ref for the run `r`: the field's column, the
 * metric's final figure (REAL, NULL when the run has none) or the param's
 * text (NULL when unset). */
void mp_query_value(mp_sql *q, const mp_query_ref *ref);

/* Appends ORDER BY terms (without "ORDER BY") sorting on ref, ascending or
 * descending, runs without a value last.  Params that read as numbers sort
 * as numbers, before text values. */
void mp_query_order(mp_sql *q, const mp_query_ref *ref, bool desc);

/* ---------------------------------------------------------------- --where, --since */

/* Compiles a --where expression into q: appends one SQL boolean expression
 * over `r` (parenthesised where needed) and its bound values.  Errors are
 * MP_E_USAGE with the 1-based byte offset of the problem:
 *   "--where: offset 17: expected a value after '>'"
 * or an error of keys->has (MP_E_DB, MP_E_NOMEM).  q is left with a partial
 * expression on error: release it. */
int mp_query_where(mp_sql *q, const char *expr, const mp_query_keys *keys, mp_err *err);

/* Parses a point in time into ISO 8601 UTC with milliseconds (the form the
 * run database stores): "2026-11-27", "2026-11-27T10:00", "2026-11-27
 * 10:00:05" (local time, or UTC with a final "Z"), or an age back from now:
 * "90s", "30m", "2h", "3d", "1w".  false when s is none of these. */
bool mp_query_time(const char *s, char out[32]);

#endif /* MP_QUERY_H */
