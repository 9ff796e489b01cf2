/*
 * test_query.c -- unit tests of the --where compiler (runner/query.c).
 *
 * Most tests compile an expression against a fixed table of known keys and
 * compare the SQL with the bound values written in place of each "?", and
 * the metric and param subqueries abbreviated as M('key') and P('key') (and
 * the index prefilter of a metric test as HAS('key' OP value)), so an
 * expected string reads like the expression it came from:
 *   "test.r2 > 0.5"  ->  "(HAS('test.r2' > 0.5) AND M('test.r2') > 0.5)"
 * Every error message is checked word for word, offset included.  The last
 * tests run compiled expressions on a real run database to check what they
 * select (three-valued logic, params compared as numbers, LIKE escapes).
 */
#include <dirent.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "config.h"     /* mp_nearest */
#include "mp.h"
#include "query.h"
#include "rundb.h"

/* ---------------------------------------------------------------- a fake database */

static const struct { const char *key; unsigned has; } known[] = {
    { "test.accuracy",        MP_QHAS_FINAL },
    { "test.r2",              MP_QHAS_FINAL },
    { "train.loss",           MP_QHAS_STEPS },
    { "train.learning_rate",  MP_QHAS_PARAM },
    { "train.optimizer",      MP_QHAS_PARAM },
    { "both.key",             MP_QHAS_FINAL | MP_QHAS_PARAM },
    { "test.confusion_matrix.Iris setosa.x", MP_QHAS_FINAL },
};

static int fake_has(void *ud, const char *key, unsigned *found, mp_err *err) {
    (void)err;
    int *calls = ud;
    if (calls) (*calls)++;
    *found = 0;
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(key, known[i].key) == 0) *found = known[i].has;
    return MP_OK;
}

static const char *fake_nearest(void *ud, const char *key) {
    (void)ud;
    const char *names[sizeof known / sizeof *known];
    for (size_t i = 0; i < sizeof known / sizeof *known; i++) names[i] = known[i].key;
    return mp_nearest(key, names, sizeof known / sizeof *known);
}

static const mp_query_keys keys = { fake_has, fake_nearest, NULL };

/* ---------------------------------------------------------------- rendering */

/* Replaces every occurrence of from in s (in place; to is not longer). */
static void replace_all(char *s, const char *from, const char *to) {
    size_t lf = strlen(from), lt = strlen(to);
    assert_true(lt <= lf);
    for (char *p = strstr(s, from); p; p = strstr(p + lt, from)) {
        memmove(p + lt, p + lf, strlen(p + lf) + 1);
        memcpy(p, to, lt);
    }
}

/* q's SQL with each "?" replaced by its value ('text', 5, 0.9) and the
 * metric and param subqueries abbreviated. */
static void render(const mp_sql *q, char *out, size_t n) {
    size_t k = 0, v = 0;
    for (const char *s = q->text; *s && k + 64 < n; s++) {
        if (*s != '?') {
            out[k++] = *s;
            continue;
        }
        assert_true(v < q->n_vals);
        const mp_sql_value *val = &q->vals[v++];
        if (val->type == SQLITE_TEXT) k += (size_t)snprintf(out + k, n - k, "'%s'", val->s);
        else if (val->type == SQLITE_INTEGER) k += (size_t)snprintf(out + k, n - k, "%lld", val->i);
        else k += (size_t)snprintf(out + k, n - k, "%.17g", val->d);
    }
    out[k] = '\0';
    assert_int_equal(v, q->n_vals);     /* one value per "?" */
    replace_all(out, "(SELECT m.value FROM metrics m WHERE m.run = r.id AND m.key = ", "M(");
    replace_all(out, " AND m.step IS NULL ORDER BY m.rowid DESC LIMIT 1)", ")");
    replace_all(out, "(SELECT p.value FROM params p WHERE p.run = r.id AND p.key = ", "P(");
    replace_all(out, "+r.id IN (SELECT f.run FROM metrics f WHERE f.key = ", "HAS(");
    replace_all(out, " AND f.step IS NULL AND f.value ", " ");
    replace_all(out, "mp_status(r.status, r.host, r.pid, r.heartbeat)", "STATUS");
}

/* Compiles expr; fails the test unless it compiles to want. */
static void compiles(const char *expr, const char *want) {
    mp_sql q = { 0 };
    mp_err err = { 0 };
    if (mp_query_where(&q, expr, &keys, &err) != MP_OK)
        fail_msg("'%s': %s", expr, err.msg);
    char got[4096];
    render(&q, got, sizeof got);
    if (strcmp(got, want) != 0) fail_msg("'%s':\n  want %s\n  got  %s", expr, want, got);
    mp_sql_release(&q);
}

/* Compiles expr; fails the test unless it fails with MP_E_USAGE and msg. */
static void fails(const char *expr, const char *msg) {
    mp_sql q = { 0 };
    mp_err err = { 0 };
    int rc = mp_query_where(&q, expr, &keys, &err);
    if (rc != MP_E_USAGE) fail_msg("'%s': code %d, want MP_E_USAGE (%s)", expr, rc, err.msg);
    if (strcmp(err.msg, msg) != 0) fail_msg("'%s':\n  want %s\n  got  %s", expr, msg, err.msg);
    mp_sql_release(&q);
}

/* ---------------------------------------------------------------- tokens, literals */

static void test_comparisons(void **state) {
    (void)state;
    compiles("test.accuracy > 0.9", "(HAS('test.accuracy' > 0.90000000000000002) AND M('test.accuracy') > 0.90000000000000002)");
    compiles("test.accuracy>=1", "(HAS('test.accuracy' >= 1) AND M('test.accuracy') >= 1)");
    compiles("test.accuracy <= -2.5e-1", "(HAS('test.accuracy' <= -0.25) AND M('test.accuracy') <= -0.25)");
    compiles("test.accuracy < .5", "(HAS('test.accuracy' < 0.5) AND M('test.accuracy') < 0.5)");
    compiles("test.accuracy = +3", "(HAS('test.accuracy' = 3) AND M('test.accuracy') = 3)");
    compiles("test.accuracy == 1E2", "(HAS('test.accuracy' = 100) AND M('test.accuracy') = 100)");
    compiles("test.accuracy != 0", "(HAS('test.accuracy' != 0) AND M('test.accuracy') != 0)");
    compiles("test.accuracy <> 0", "(HAS('test.accuracy' != 0) AND M('test.accuracy') != 0)");
    /* params: numbers compare as numbers (mp_num), strings as text */
    compiles("train.learning_rate < 0.05", "(mp_num(P('train.learning_rate')) < 0.050000000000000003)");
    compiles("train.optimizer = 'adam'", "(P('train.optimizer') = 'adam')");
    compiles("train.optimizer = \"sgd\"", "(P('train.optimizer') = 'sgd')");
    compiles("train.optimizer = 'it''s'", "(P('train.optimizer') = 'it's')");
    compiles("train.optimizer = \"a\"\"b\"", "(P('train.optimizer') = 'a\"b')");
    compiles("train.optimizer = ''", "(P('train.optimizer') = '')");
    /* run fields */
    compiles("id = 3", "(r.id = 3)");
    compiles("exit_code != 0", "(r.exit_code != 0)");
    compiles("seconds > 1.5", "(r.seconds > 1.5)");
    compiles("pipeline = 'iris'", "(r.pipeline = 'iris')");
    compiles("host = 'pod-7'", "(r.host = 'pod-7')");
    compiles("status = 'lost'", "(STATUS = 'lost')");
    compiles("started >= '2026-11-27T10:00Z'", "(r.started >= '2026-11-27T10:00:00.000Z')");
    compiles("ended < '2026-01-02Z'", "(r.ended < '2026-01-02T00:00:00.000Z')");
    /* seeds are unsigned 64-bit, stored two's complement */
    compiles("seed = 42", "(r.seed = 42)");
    compiles("seed = 18446744073709551615", "(r.seed = -1)");
    /* names: backquotes for any text, explicit prefixes */
    compiles("`test.confusion_matrix.Iris setosa.x` > 3",
             "(HAS('test.confusion_matrix.Iris setosa.x' > 3) AND M('test.confusion_matrix.Iris setosa.x') > 3)");
    compiles("metrics.val.loss < 1", "(HAS('val.loss' < 1) AND M('val.loss') < 1)");
    compiles("params.model.kind = 'x'", "(P('model.kind') = 'x')");
    compiles("metrics.both.key > 1", "(HAS('both.key' > 1) AND M('both.key') > 1)");
    compiles("params.both.key = 'a'", "(P('both.key') = 'a')");
    /* blanks anywhere, and none */
    compiles("  \ttest.accuracy\n>\r0.5  ", "(HAS('test.accuracy' > 0.5) AND M('test.accuracy') > 0.5)");
}

static void test_in_and_like(void **state) {
    (void)state;
    compiles("test.accuracy in (0.5, 1)", "(HAS('test.accuracy' IN (0.5, 1)) AND M('test.accuracy') IN (0.5, 1))");
    compiles("test.accuracy not in (1)", "NOT (M('test.accuracy') IN (1))");
    compiles("train.learning_rate in (0.1, 0.01)",
             "(mp_num(P('train.learning_rate')) IN (0.10000000000000001, 0.01))");
    compiles("train.optimizer in ('adam', 'sgd')", "(P('train.optimizer') IN ('adam', 'sgd'))");
    /* a param's list may mix numbers and strings */
    compiles("train.learning_rate in (0.1, 'auto', 1)",
             "(mp_num(P('train.learning_rate')) IN (0.10000000000000001, 1) OR "
             "P('train.learning_rate') IN ('auto'))");
    compiles("status in ('failed', 'lost')", "(STATUS IN ('failed', 'lost'))");
    compiles("pipeline like 'fmnist%'", "(r.pipeline LIKE 'fmnist%' ESCAPE '\\')");
    compiles("pipeline not like 'a\\_b'", "(r.pipeline NOT LIKE 'a\\_b' ESCAPE '\\')");
    compiles("train.optimizer like 'ad%'", "(P('train.optimizer') LIKE 'ad%' ESCAPE '\\')");
    /* a like pattern on a time is matched as written, not read as a time */
    compiles("started like '2026-11%'", "(r.started LIKE '2026-11%' ESCAPE '\\')");
}

static void test_precedence(void **state) {
    (void)state;
    /* the example of the issue */
    compiles("test.accuracy > 0.9 and train.learning_rate in (0.1, 0.01) and pipeline like "
             "'fmnist%'",
             "((HAS('test.accuracy' > 0.90000000000000002) AND M('test.accuracy') > 0.90000000000000002) AND "
             "(mp_num(P('train.learning_rate')) IN (0.10000000000000001, 0.01)) AND "
             "(r.pipeline LIKE 'fmnist%' ESCAPE '\\'))");
    /* and binds tighter than or; not tighter than and */
    compiles("id = 1 or id = 2 and id = 3", "((r.id = 1) OR ((r.id = 2) AND (r.id = 3)))");
    compiles("id = 1 and id = 2 or id = 3", "(((r.id = 1) AND (r.id = 2)) OR (r.id = 3))");
    compiles("not id = 1 and id = 2", "(NOT (r.id = 1) AND (r.id = 2))");
    compiles("not not id = 1", "NOT NOT (r.id = 1)");
    /* the metric prefilter is left out under a not (see query.c) */
    compiles("not test.r2 > 0.5 or test.r2 < 0",
             "(NOT (M('test.r2') > 0.5) OR (HAS('test.r2' < 0) AND M('test.r2') < 0))");
    compiles("not (id = 1 and test.r2 in (1))",
             "NOT ((r.id = 1) AND (M('test.r2') IN (1)))");
    /* parentheses */
    compiles("(id = 1 or id = 2) and id = 3", "(((r.id = 1) OR (r.id = 2)) AND (r.id = 3))");
    compiles("not (id = 1 or id = 2)", "NOT ((r.id = 1) OR (r.id = 2))");
    compiles("((id = 1))", "(r.id = 1)");
    compiles("id = 1 or (id = 2 or id = 3)", "((r.id = 1) OR ((r.id = 2) OR (r.id = 3)))");
    /* keywords in any case */
    compiles("id = 1 AND NOT id = 2 Or id IN (3) aNd pipeline LIKE 'x'",
             "(((r.id = 1) AND NOT (r.id = 2)) OR ((r.id IN (3)) AND "
             "(r.pipeline LIKE 'x' ESCAPE '\\')))");
}

/* ---------------------------------------------------------------- errors */

static void test_syntax_errors(void **state) {
    (void)state;
    fails("", "--where: offset 1: empty expression");
    fails("   ", "--where: offset 4: empty expression");
    fails("test.accuracy > ", "--where: offset 17: expected a value after '>'");
    fails("test.accuracy >= x", "--where: offset 18: expected a value after '>=', found 'x'");
    fails("test.accuracy 0.9", "--where: offset 15: expected an operator (= != < <= > >= in "
          "like) after 'test.accuracy', found '0.9'");
    fails("test.accuracy", "--where: offset 14: expected an operator (= != < <= > >= in like) "
          "after 'test.accuracy', found the end of the expression");
    fails("> 1", "--where: offset 1: expected a key, 'not' or '(', found '>'");
    fails("id = 1 and", "--where: offset 11: expected a key, 'not' or '(' after 'and'");
    fails("id = 1 or or id = 2", "--where: offset 11: expected a key, 'not' or '(', found 'or'");
    fails("not", "--where: offset 4: expected a key, 'not' or '(' after 'not'");
    fails("id = 1 id = 2", "--where: offset 8: expected 'and', 'or' or the end, found 'id'");
    fails("id = 1)", "--where: offset 7: unmatched ')'");
    fails("(id = 1", "--where: offset 8: expected ')' to close the '(' at offset 1, found the "
          "end of the expression");
    fails("(id = 1 id", "--where: offset 9: expected ')' to close the '(' at offset 1, found 'id'");
    fails("pipeline = 'abc", "--where: offset 12: unterminated string (missing ')");
    fails("pipeline = \"abc", "--where: offset 12: unterminated string (missing \")");
    fails("`abc > 1", "--where: offset 1: unterminated name (missing `)");
    fails("id # 1", "--where: offset 4: unexpected character '#'");
    fails("id ! 1", "--where: offset 4: unexpected character '!'");
    fails("id = 1;", "--where: offset 7: unexpected character ';'");
    fails("id =\x01 1", "--where: offset 5: unexpected control character");
    fails("id = 1.2.3", "--where: offset 6: bad number '1.2.3'");
    fails("id = 1e", "--where: offset 6: bad number '1e'");
    fails("id = 0.9x", "--where: offset 6: bad number '0.9x'");
    fails("id = -", "--where: offset 6: bad number '-'");
    fails("id = 1e999", "--where: offset 6: number out of range '1e999'");
    fails("id = 1234567890123456789012345678901234567890123456789012345678901234567890",
          "--where: offset 6: number too long");
    fails("pipeline not = 'x'", "--where: offset 14: expected 'in' or 'like' after 'pipeline "
          "not', found '='");
    fails("id in 1", "--where: offset 7: expected '(' after 'in', found '1'");
    fails("id in (1,)", "--where: offset 10: expected a value in the list of 'in', found ')'");
    fails("id in ()", "--where: offset 8: expected a value in the list of 'in', found ')'");
    fails("id in (1 2)", "--where: offset 10: expected ',' or ')' in the list of 'in' at "
          "offset 4, found '2'");
    fails("id in (1", "--where: offset 9: expected ',' or ')' in the list of 'in' at offset 4, "
          "found the end of the expression");
    fails("pipeline like 5", "--where: offset 15: expected a 'pattern' after 'like', found '5'");
    /* a long token is cut in the message */
    fails("id = 1 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
          "--where: offset 8: expected 'and', 'or' or the end, found "
          "'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...'");
}

static void test_name_and_type_errors(void **state) {
    (void)state;
    fails("test.acuracy > 0.9", "--where: offset 1: unknown key 'test.acuracy': no run field, "
          "and no run has a final metric or a param of that name (did you mean "
          "'test.accuracy'?)");
    fails("pipline = 'x'", "--where: offset 1: unknown key 'pipline': no run field, and no run "
          "has a final metric or a param of that name (did you mean 'pipeline'?)");
    fails("id = 1 and zzz.qqq = 1", "--where: offset 12: unknown key 'zzz.qqq': no run field, "
          "and no run has a final metric or a param of that name");
    fails("train.loss < 0.1", "--where: offset 1: 'train.loss' has only per-step values; "
          "filters and columns use final figures (see 'mlpipe runs metrics RUN train.loss')");
    fails("both.key = 1", "--where: offset 1: 'both.key' is both a metric and a param: write "
          "metrics.both.key or params.both.key");
    fails("test.accuracy = 'high'", "--where: offset 17: 'test.accuracy' is a metric: compare "
          "it with a number, not a string");
    fails("test.accuracy in (1, 'x')", "--where: offset 22: 'test.accuracy' is a metric: "
          "compare it with a number, not a string");
    fails("test.accuracy like '0.9%'", "--where: offset 15: 'like' matches text, and "
          "'test.accuracy' is a metric (a number)");
    fails("id like '1%'", "--where: offset 4: 'like' matches text, and 'id' is a number");
    fails("id = '3'", "--where: offset 6: 'id' is a number: compare it with a number, not a "
          "string");
    fails("pipeline = 3", "--where: offset 12: 'pipeline' is text: quote the value ('3')");
    fails("started > 3", "--where: offset 11: 'started' is a time: quote it ('2026-11-27', "
          "'2h')");
    fails("started > 'yesterday'", "--where: offset 11: bad time 'yesterday' for 'started': "
          "expected a date (2026-11-27), a date and time (2026-11-27 10:00, local; Z for UTC) "
          "or an age (90s, 30m, 2h, 3d, 1w)");
    fails("status = 'done'", "--where: offset 10: unknown status 'done': expected running, "
          "finished, failed, killed or lost");
    fails("status in ('failed', 'ok')", "--where: offset 22: unknown status 'ok': expected "
          "running, finished, failed, killed or lost");
}

static void test_limits(void **state) {
    (void)state;
    /* nesting: 64 levels compile, 65 do not */
    char expr[512];
    size_t k = 0;
    for (int i = 0; i < 63; i++) expr[k++] = '(';
    k += (size_t)snprintf(expr + k, sizeof expr - k, "id = 1");
    for (int i = 0; i < 63; i++) expr[k++] = ')';
    expr[k] = '\0';
    compiles(expr, "(r.id = 1)");
    char deep[512];
    for (k = 0; k < 200; k++) deep[k] = '(';
    snprintf(deep + k, sizeof deep - k, "id = 1");
    fails(deep, "--where: offset 65: expression nested too deeply");
    for (k = 0; k < 280; k += 4) memcpy(deep + k, "not ", 4);
    snprintf(deep + k, sizeof deep - k, "id = 1");
    fails(deep, "--where: offset 257: expression nested too deeply");

    /* values: 1000 in one list compile, 1001 do not */
    size_t cap = 16 * 1024;
    char *big = malloc(cap);
    assert_non_null(big);
    k = (size_t)snprintf(big, cap, "id in (");
    for (int i = 0; i < 1000; i++) k += (size_t)snprintf(big + k, cap - k, "%s%d", i ? "," : "", i);
    snprintf(big + k, cap - k, ")");
    mp_sql q = { 0 };
    mp_err err = { 0 };
    assert_int_equal(mp_query_where(&q, big, &keys, &err), MP_OK);
    assert_int_equal(q.n_vals, 1000);
    mp_sql_release(&q);
    snprintf(big + k, cap - k, ",1000)");
    err = (mp_err){ 0 };
    assert_int_equal(mp_query_where(&q, big, &keys, &err), MP_E_USAGE);
    assert_non_null(strstr(err.msg, "too many values (at most 1000)"));
    mp_sql_release(&q);
    free(big);
}

/* Allocation failures anywhere give MP_E_NOMEM and leak nothing. */
static void test_alloc_failure(void **state) {
    (void)state;
    const char *expr = "(test.accuracy > 0.9 or `test.r2` in (1, 2)) and not "
                       "train.optimizer like 'a%' and train.learning_rate in (0.1, 'x')";
    int n;
    for (n = 1; n < 1000; n++) {
        mp_sql q = { 0 };
        mp_err err = { 0 };
        mp_mem_fail_after(n);
        int rc = mp_query_where(&q, expr, &keys, &err);
        mp_mem_fail_after(0);
        mp_sql_release(&q);
        if (rc == MP_OK) break;
        if (rc != MP_E_NOMEM) fail_msg("allocation %d: code %d (%s)", n, rc, err.msg);
    }
    assert_true(n > 1 && n < 1000);
}

/* ---------------------------------------------------------------- names, order, times */

static void test_resolve_and_order(void **state) {
    (void)state;
    int calls = 0;
    mp_query_keys counted = { fake_has, NULL, &calls };
    mp_query_ref ref;
    mp_err err = { 0 };
    /* fields need no lookup */
    assert_int_equal(mp_query_resolve("--sort", "seconds", &counted, &ref, &err), MP_OK);
    assert_int_equal(ref.kind, MP_QK_FIELD);
    assert_string_equal(mp_query_field_name(ref.field), "seconds");
    assert_int_equal(mp_query_field_type(ref.field), MP_QT_REAL);
    assert_int_equal(calls, 0);
    assert_int_equal(mp_query_resolve("--sort", "test.accuracy", &counted, &ref, &err), MP_OK);
    assert_int_equal(ref.kind, MP_QK_METRIC);
    assert_string_equal(ref.key, "test.accuracy");
    assert_int_equal(calls, 1);
    assert_int_equal(mp_query_resolve("--columns", "zzz", &counted, &ref, &err), MP_E_USAGE);
    assert_string_equal(err.msg, "--columns: unknown key 'zzz': no run field, and no run has a "
                        "final metric or a param of that name");
    assert_int_equal(mp_query_field_find("nope"), -1);
    assert_true(mp_query_n_fields() >= 9);

    mp_sql q = { 0 };
    char got[1024];
    mp_query_ref m = { .kind = MP_QK_METRIC, .key = "test.accuracy" };
    mp_query_order(&q, &m, true);
    render(&q, got, sizeof got);
    assert_string_equal(got, "M('test.accuracy') DESC NULLS LAST");
    mp_sql_release(&q);
    mp_query_ref p = { .kind = MP_QK_PARAM, .key = "train.epochs" };
    mp_query_order(&q, &p, false);
    render(&q, got, sizeof got);
    assert_string_equal(got, "mp_num(P('train.epochs')) NULLS LAST, P('train.epochs') NULLS LAST");
    mp_sql_release(&q);
}

static void test_times(void **state) {
    (void)state;
    char iso[32];
    assert_true(mp_query_time("2026-11-27Z", iso));
    assert_string_equal(iso, "2026-11-27T00:00:00.000Z");
    assert_true(mp_query_time("2026-11-27T10:05Z", iso));
    assert_string_equal(iso, "2026-11-27T10:05:00.000Z");
    assert_true(mp_query_time("2026-11-27 10:05:06.25Z", iso));
    assert_string_equal(iso, "2026-11-27T10:05:06.250Z");
    /* local time: TZ is pinned to UTC+2 (no DST) in main */
    assert_true(mp_query_time("2026-11-27 10:00", iso));
    assert_string_equal(iso, "2026-11-27T08:00:00.000Z");
    /* ages back from now */
    char before[32], now[32];
    mp_iso_time(before);
    assert_true(mp_query_time("0s", iso));
    mp_iso_time(now);
    assert_true(strcmp(before, iso) <= 0 && strcmp(iso, now) <= 0);
    assert_true(mp_query_time("2h", iso) && strcmp(iso, before) < 0);
    assert_true(mp_query_time("1.5d", iso) && mp_query_time("1w", iso) && mp_query_time("30m", iso));
    static const char *const bad[] = {
        "", "today", "2h ", "h", "2x", "-2h", "2026-13-01", "2026-11-32", "2026-1-1",
        "2026-11-27T25:00", "2026-11-27T10", "2026-11-27T10:00:", "2026-11-27 10:00Zx",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        if (mp_query_time(bad[i], iso)) fail_msg("'%s' was accepted: %s", bad[i], iso);
}

/* ---------------------------------------------------------------- on a real database */

typedef struct fixture {
    char dir[64];
    char path[128];
} fixture;

static int setup(void **state) {
    fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    snprintf(f->dir, sizeof f->dir, "/tmp/mlpipe-query-XXXXXX");
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s/runs.db", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    fixture *f = *state;
    DIR *d = opendir(f->dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.') continue;
            char p[512];
            snprintf(p, sizeof p, "%s/%s", f->dir, e->d_name);
            unlink(p);
        }
        closedir(d);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A run with a pipeline name, learning rate (param text) and accuracy
 * (NaN: none recorded). */
static void add_run(mp_rundb *db, const char *pipeline, const char *lr, double acc) {
    mp_err err = { 0 };
    long long id;
    mp_run_info info = { .pipeline = pipeline, .seed = 1 };
    assert_int_equal(mp_rundb_run_begin(db, &info, &id, &err), MP_OK);
    char *k[] = { "train.learning_rate" }, *v[] = { (char *)lr };
    assert_int_equal(mp_rundb_params(db, id, k, v, 1, &err), MP_OK);
    if (!isnan(acc)) {
        mp_metric_row r = { "test.accuracy", acc, -1, 0 };
        assert_int_equal(mp_rundb_metrics(db, id, &r, 1, &err), MP_OK);
    }
    assert_int_equal(mp_rundb_run_end(db, id, "finished", 0, NULL, NULL, &err), MP_OK);
}

/* The ids selected by expr, as "1,3" (keys looked up in the database). */
static int db_has(void *ud, const char *key, unsigned *found, mp_err *err) {
    (void)err;
    sqlite3 *db = mp_rundb_sqlite(ud);
    *found = 0;
    static const char *const sql[] = {
        "SELECT 1 FROM metrics WHERE key = ?1 AND step IS NULL",
        "SELECT 1 FROM params WHERE key = ?1",
    };
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st;
        assert_int_equal(sqlite3_prepare_v2(db, sql[i], -1, &st, NULL), SQLITE_OK);
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW) *found |= i ? MP_QHAS_PARAM : MP_QHAS_FINAL;
        sqlite3_finalize(st);
    }
    return MP_OK;
}

static const char *select_ids(mp_rundb *db, const char *expr, char *buf, size_t n) {
    mp_query_keys k = { db_has, NULL, db };
    mp_sql q = { 0 };
    mp_err err = { 0 };
    mp_sql_add(&q, "SELECT r.id FROM runs r WHERE ");
    if (mp_query_where(&q, expr, &k, &err) != MP_OK) fail_msg("'%s': %s", expr, err.msg);
    mp_sql_add(&q, " ORDER BY r.id");
    sqlite3_stmt *st;
    if (mp_sql_prepare(&q, mp_rundb_sqlite(db), &st) != SQLITE_OK)
        fail_msg("'%s': %s\n%s", expr, sqlite3_errmsg(mp_rundb_sqlite(db)), q.text);
    size_t k2 = 0;
    buf[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW)
        k2 += (size_t)snprintf(buf + k2, n - k2, "%s%lld", k2 ? "," : "", sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
    mp_sql_release(&q);
    return buf;
}

static void test_on_database(void **state) {
    fixture *f = *state;
    mp_err err = { 0 };
    mp_rundb *db = NULL;
    assert_int_equal(mp_rundb_open(f->path, &db, &err), MP_OK);
    add_run(db, "fmnist-mlp", "0.1", 0.95);     /* 1 */
    add_run(db, "fmnist_cnn", "0.01", 0.85);    /* 2 */
    add_run(db, "iris", "0.10", NAN);           /* 3: no accuracy */
    add_run(db, "iris", "auto", 0.9);           /* 4: a non-numeric param */
    char b[128];
    assert_string_equal(select_ids(db, "test.accuracy > 0.9", b, sizeof b), "1");
    assert_string_equal(select_ids(db, "test.accuracy >= 0.85 and test.accuracy < 0.95", b,
                                   sizeof b), "2,4");
    /* a run without the key matches no test on it, not != and not `not` */
    assert_string_equal(select_ids(db, "test.accuracy != 0.9", b, sizeof b), "1,2");
    assert_string_equal(select_ids(db, "not test.accuracy > 0.9", b, sizeof b), "2,4");
    assert_string_equal(select_ids(db, "test.accuracy not in (0.9)", b, sizeof b), "1,2");
    /* params compare as numbers ("0.10" = 0.1); text that is no number never matches one */
    assert_string_equal(select_ids(db, "train.learning_rate = 0.1", b, sizeof b), "1,3");
    assert_string_equal(select_ids(db, "train.learning_rate in (0.1, 0.01)", b, sizeof b), "1,2,3");
    assert_string_equal(select_ids(db, "train.learning_rate < 1", b, sizeof b), "1,2,3");
    assert_string_equal(select_ids(db, "train.learning_rate = 'auto'", b, sizeof b), "4");
    assert_string_equal(select_ids(db, "train.learning_rate in (0.01, 'auto')", b, sizeof b), "2,4");
    /* like: case-insensitive, and \ escapes % and _ */
    assert_string_equal(select_ids(db, "pipeline like 'FMNIST%'", b, sizeof b), "1,2");
    assert_string_equal(select_ids(db, "pipeline like 'fmnist\\_%'", b, sizeof b), "2");
    assert_string_equal(select_ids(db, "pipeline not like 'fmnist%' or id = 1", b, sizeof b),
                        "1,3,4");
    assert_string_equal(select_ids(db, "status = 'finished' and started > '1h'", b, sizeof b),
                        "1,2,3,4");
    assert_string_equal(select_ids(db, "status in ('running', 'lost')", b, sizeof b), "");
    assert_string_equal(select_ids(db, "metrics.never.logged > 0 or id = 4", b, sizeof b), "4");
    /* the latest final figure counts: run 1 logged a second, lower one (the
     * prefilter, which any final figure passes, must not change that) */
    mp_metric_row again = { "test.accuracy", 0.5, -1, 0 };
    assert_int_equal(mp_rundb_metrics(db, 1, &again, 1, &err), MP_OK);
    assert_string_equal(select_ids(db, "test.accuracy > 0.9", b, sizeof b), "");
    assert_string_equal(select_ids(db, "test.accuracy in (0.95, 0.85)", b, sizeof b), "2");
    assert_string_equal(select_ids(db, "test.accuracy = 0.5 or id = 3", b, sizeof b), "1,3");
    assert_string_equal(select_ids(db, "not test.accuracy > 0.9", b, sizeof b), "1,2,4");
    /* an expression that tries to inject SQL is only ever a value */
    assert_string_equal(select_ids(db, "pipeline = 'x'') OR 1=1 --'", b, sizeof b), "");
    mp_rundb_close(db);
}

int main(void) {
    /* pin local time for mp_query_time: 2 hours east of UTC, no DST */
    setenv("TZ", "XXX-2", 1);
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_comparisons),
        cmocka_unit_test(test_in_and_like),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_name_and_type_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_resolve_and_order),
        cmocka_unit_test(test_times),
        cmocka_unit_test_setup_teardown(test_on_database, setup, teardown),
    };
    return cmocka_run_group_tests_name("query", tests, NULL, NULL);
}
