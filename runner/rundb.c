/*
 * rundb.c -- the SQLite run database: schema, migrations, and the writes the
 * executor makes while a pipeline runs.
 *
 * Every `mlpipe run` becomes one row of `runs`, with its parameters, metrics,
 * artifacts and stages in child tables, so that people can compare runs with
 * `mlpipe runs` (runs.c) or with plain sqlite3.  Many processes may share one
 * file (a CronJob's pods, a shell loop, a hyperparameter sweep), hence:
 *   - WAL journal: readers never block the writer and the writer never blocks
 *     readers; synchronous=NORMAL is durable enough for WAL and much faster;
 *   - each write is one BEGIN IMMEDIATE transaction: it takes the write lock
 *     up front, so two writers never both hold a read snapshot and deadlock
 *     trying to upgrade it;
 *   - a 30 s busy timeout, plus our own retry loop for the SQLITE_BUSY cases
 *     SQLite reports without calling the busy handler (WAL recovery, journal
 *     mode change, a COMMIT that lost a race);
 *   - the schema version lives in PRAGMA user_version; migrations run one
 *     version at a time, each in its own write transaction that re-reads the
 *     version after taking the lock, so two processes opening a fresh file at
 *     once do not both create the schema.
 *
 * Readers get two SQL functions on every connection opened here (see
 * "SQL functions" below): mp_status(), the status a run shows -- a `running`
 * run whose process is gone is "lost" -- and mp_num(), a param's text read
 * as a number.  The file also holds the maintenance writes of `mlpipe runs
 * delete|gc` and the heartbeat thread an executor can run.
 *
 * ---------------------------------------------------------------- schema 2
 * (README "Run database" is copied from this block.)
 *
 * PRAGMA user_version = 2.  Times are ISO 8601 UTC with milliseconds, e.g.
 * "2026-11-27T07:00:00.123Z": they sort as text and SQLite's date functions
 * read them (julianday(started)).  Durations are in seconds.
 *
 * runs -- one row per `mlpipe run`
 *   id              INTEGER PRIMARY KEY AUTOINCREMENT   never reused
 *   pipeline        TEXT NOT NULL    `name:` of the pipeline YAML
 *   status          TEXT NOT NULL    'running' | 'finished' | 'failed' | 'killed'
 *   started         TEXT NOT NULL    when the run began
 *   ended           TEXT             when it ended; NULL while running
 *   seconds         REAL             ended - started
 *   config          TEXT             the pipeline YAML as run
 *   config_sha256   TEXT             SHA-256 of config, 64 hex digits
 *   seed            INTEGER          pipeline seed (64-bit two's complement:
 *                                    seeds >= 2^63 read back negative)
 *   exit_code       INTEGER          process exit code: 0, 1, 130, 143
 *   error           TEXT             message of a failed or killed run
 *   failed_stage    TEXT             the stage that failed
 *   host            TEXT             hostname (the pod name in Kubernetes)
 *   pid             INTEGER          process id of the runner
 *   mlpipe_version  TEXT             version of mlpipe that ran it
 *   heartbeat       TEXT             last sign of life (begin, each stage and
 *                                    metric batch, end): a 'running' run with
 *                                    an old heartbeat lost its process
 * params -- resolved parameters, PRIMARY KEY (run, key)
 *   run INTEGER NOT NULL, key TEXT NOT NULL ("train.learning_rate"), value TEXT
 * metrics -- figures and per-step history
 *   run INTEGER NOT NULL, key TEXT NOT NULL ("test.accuracy", "train.loss"),
 *   value REAL (NULL for NaN), step INTEGER (epoch or fold; NULL for a final
 *   figure), time REAL (unix seconds)
 * artifacts -- files a run wrote
 *   run INTEGER NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL,
 *   sha256 TEXT, bytes INTEGER
 * stages -- one row per stage, PRIMARY KEY (run, idx)
 *   run INTEGER NOT NULL, idx INTEGER NOT NULL (0-based), kind TEXT NOT NULL
 *   ("load", "train" ...), module TEXT NOT NULL ("logistic_regression"),
 *   status TEXT NOT NULL ("running", "finished", "failed" ...),
 *   seconds REAL, error TEXT
 * deleted_artifacts -- files of deleted runs, for `mlpipe runs gc` (schema 2)
 *   run INTEGER NOT NULL (the deleted run), name TEXT NOT NULL, path TEXT NOT
 *   NULL, sha256 TEXT, bytes INTEGER, deleted TEXT NOT NULL (when).  Filled
 *   by the trigger artifacts_deleted on every DELETE from artifacts, so a run
 *   deleted with plain SQL is covered too; gc empties it.
 * Every child table's run REFERENCES runs(id) ON DELETE CASCADE: with
 * PRAGMA foreign_keys=ON, `DELETE FROM runs WHERE id = 3` removes all of run 3.
 * Indexes: runs(pipeline, started), runs(status), metrics(run, key, step),
 * metrics(key, value, run, step) WHERE step IS NULL (final figures only;
 * run and step make it covering -- SQLite 3.40 reads a partial index as
 * covering only when it holds every column the query names, the one of its
 * WHERE included -- so queries across runs read no table rows),
 * params(key, value), artifacts(run), artifacts(path).
 *
 * Schema 1 -> 2: adds deleted_artifacts and its trigger, params(key, value)
 * and artifacts(path), and replaces the index metrics(key, value) over every
 * row by one over final figures, metrics(key, value) WHERE step IS NULL.
 * The full index doubled the cost of logging per-step history (it is
 * maintained on every row, at random positions) and served no query:
 * histories are read by run, figures across runs by key.
 * Schema 2 -> 3: that index becomes metrics(key, value, run, step) WHERE
 * step IS NULL, covering (a --where on a metric read 2,000 table pages of
 * 10,000 runs instead of 25 without it).
 *
 * Example: the five best final test accuracies of a pipeline
 *   SELECT r.id, r.started, m.value FROM runs r JOIN metrics m ON m.run = r.id
 *    WHERE r.pipeline = 'iris-logreg' AND m.key = 'test.accuracy'
 *      AND m.step IS NULL ORDER BY m.value DESC LIMIT 5;
 * ----------------------------------------------------------------
 */
#include "rundb.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <sqlite3.h>

/* migrations[v] takes a database from version v-1 to v.  Append only: a
 * released step never changes, a schema change is a new step (and bumps
 * MP_RUNDB_SCHEMA). */
static const char *const migrations[] = {
    NULL,   /* version 0 is an empty file: nothing migrates to it */

    /* 1: the first schema */
    "CREATE TABLE runs ("
    "  id             INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  pipeline       TEXT NOT NULL,"
    "  status         TEXT NOT NULL"
    "                 CHECK (status IN ('running', 'finished', 'failed', 'killed')),"
    "  started        TEXT NOT NULL,"
    "  ended          TEXT,"
    "  seconds        REAL,"
    "  config         TEXT,"
    "  config_sha256  TEXT,"
    "  seed           INTEGER,"
    "  exit_code      INTEGER,"
    "  error          TEXT,"
    "  failed_stage   TEXT,"
    "  host           TEXT,"
    "  pid            INTEGER,"
    "  mlpipe_version TEXT,"
    "  heartbeat      TEXT"
    ");"
    "CREATE INDEX runs_pipeline_started ON runs (pipeline, started);"
    "CREATE INDEX runs_status ON runs (status);"
    "CREATE TABLE params ("
    "  run   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  key   TEXT NOT NULL,"
    "  value TEXT,"
    "  PRIMARY KEY (run, key)"
    ");"
    "CREATE TABLE metrics ("
    "  run   INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  key   TEXT NOT NULL,"
    "  value REAL,"
    "  step  INTEGER,"
    "  time  REAL"
    ");"
    "CREATE INDEX metrics_run_key_step ON metrics (run, key, step);"
    "CREATE INDEX metrics_key_value ON metrics (key, value);"
    "CREATE TABLE artifacts ("
    "  run    INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  name   TEXT NOT NULL,"
    "  path   TEXT NOT NULL,"
    "  sha256 TEXT,"
    "  bytes  INTEGER"
    ");"
    "CREATE INDEX artifacts_run ON artifacts (run);"
    "CREATE TABLE stages ("
    "  run     INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,"
    "  idx     INTEGER NOT NULL,"
    "  kind    TEXT NOT NULL,"
    "  module  TEXT NOT NULL,"
    "  status  TEXT NOT NULL,"
    "  seconds REAL,"
    "  error   TEXT,"
    "  PRIMARY KEY (run, idx)"
    ");",

    /* 2: gc of deleted runs' files; indexes for queries across runs; a
     * cheaper index on metrics (see the schema notes at the top) */
    "CREATE TABLE deleted_artifacts ("
    "  run     INTEGER NOT NULL,"
    "  name    TEXT NOT NULL,"
    "  path    TEXT NOT NULL,"
    "  sha256  TEXT,"
    "  bytes   INTEGER,"
    "  deleted TEXT NOT NULL"
    ");"
    "CREATE INDEX deleted_artifacts_path ON deleted_artifacts (path);"
    "CREATE TRIGGER artifacts_deleted AFTER DELETE ON artifacts BEGIN"
    "  INSERT INTO deleted_artifacts (run, name, path, sha256, bytes, deleted)"
    "  VALUES (old.run, old.name, old.path, old.sha256, old.bytes,"
    "          strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));"
    " END;"
    "CREATE INDEX artifacts_path ON artifacts (path);"
    "CREATE INDEX params_key_value ON params (key, value);"
    "DROP INDEX metrics_key_value;"
    "CREATE INDEX metrics_final ON metrics (key, value) WHERE step IS NULL;",

    /* 3: the final-figures index made covering (see the schema notes) */
    "DROP INDEX metrics_final;"
    "CREATE INDEX metrics_final ON metrics (key, value, run, step) WHERE step IS NULL;",
};
_Static_assert(sizeof migrations / sizeof *migrations == MP_RUNDB_SCHEMA + 1,
               "one migration per schema version");

/* The write statements, prepared once at open and reused. */
enum { ST_RUN_BEGIN, ST_PARAM, ST_METRIC, ST_ARTIFACT, ST_STAGE, ST_RUN_END, ST_HEARTBEAT,
       ST_COUNT };
static const char *const stmt_sql[] = {
    [ST_RUN_BEGIN] = "INSERT INTO runs (pipeline, status, started, config, config_sha256,"
                     " seed, host, pid, mlpipe_version, heartbeat)"
                     " VALUES (?1, 'running', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?2)",
    [ST_PARAM]     = "INSERT OR REPLACE INTO params (run, key, value) VALUES (?1, ?2, ?3)",
    [ST_METRIC]    = "INSERT INTO metrics (run, key, value, step, time)"
                     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_ARTIFACT]  = "INSERT INTO artifacts (run, name, path, sha256, bytes)"
                     " VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_STAGE]     = "INSERT OR REPLACE INTO stages (run, idx, kind, module, status, seconds,"
                     " error) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    /* seconds is rounded to the milliseconds the ISO times carry */
    [ST_RUN_END]   = "UPDATE runs SET status = ?2, ended = ?3, heartbeat = ?3,"
                     " seconds = round((julianday(?3) - julianday(started)) * 86400.0, 3),"
                     " exit_code = ?4, error = ?5, failed_stage = ?6 WHERE id = ?1",
    [ST_HEARTBEAT] = "UPDATE runs SET heartbeat = ?2 WHERE id = ?1",
};
_Static_assert(sizeof stmt_sql / sizeof *stmt_sql == ST_COUNT, "stmt_sql");

/* Metric rows go in METRIC_CHUNK at a time, one multi-row INSERT of
 * METRIC_CHUNK * 5 values: a statement execution opens and closes cursors,
 * allocates and frees, and that per-execution cost, not the B-tree work,
 * dominated one-row inserts.  32 rows cut the CPU time of logging by about
 * a third (8 do nearly as well, 128 no better).  The rest of a batch goes
 * one row at a time. */
enum { METRIC_CHUNK = 32 };

struct mp_rundb {
    sqlite3      *db;
    char         *path;         /* as given to open, for messages (owned) */
    sqlite3_stmt *st[ST_COUNT]; /* prepared by open; reset after every use */
    sqlite3_stmt *metric_chunk; /* ST_METRIC for METRIC_CHUNK rows */
    char          host[256];    /* this machine's hostname, for mp_status() */
    double        lost_after;   /* seconds without a heartbeat that make a run lost */
};

/* ---------------------------------------------------------------- errors, retries */

static int fail_msg(const char *path, const char *msg, mp_err *err) {
    return MP_ERR(err, MP_E_DB, "run database '%s': %s", path, msg);
}

int mp_rundb_fail(mp_rundb *db, mp_err *err) {
    /* sqlite3_errmsg(NULL) is "out of memory": the handle itself failed */
    return fail_msg(db->path, sqlite3_errmsg(db->db), err);
}

/* SQLITE_BUSY / SQLITE_LOCKED and their extended codes (BUSY_RECOVERY ...):
 * another connection holds a lock, trying again later can succeed. */
static bool is_busy(int rc) {
    rc &= 0xff;
    return rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
}

/* Waits before retry `attempt` (1, 2, ...): 1, 2, 4 ... 64 ms.  The pid
 * varies the wait so that processes that collided do not retry in step. */
static void backoff(int attempt) {
    long ms = attempt < 7 ? 1L << (attempt - 1) : 64;
    ms += (long)(getpid() % 4);
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static double busy_deadline(void) {
    return mp_now() + MP_RUNDB_BUSY_MS / 1000.0;
}

/* Runs one SQL statement that returns no rows (or rows we ignore), retrying
 * while the database is busy until deadline.  Only for statements that are
 * safe to repeat: a busy statement changed nothing.  Returns an SQLite code. */
static int exec_retry(sqlite3 *db, const char *sql, double deadline) {
    for (int attempt = 1;; attempt++) {
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (!is_busy(rc) || mp_now() >= deadline) return rc;
        backoff(attempt);
    }
}

/* Runs a one-row query (a PRAGMA) and copies column 0 of its row as text
 * into buf ("" when it returns no row), retrying while busy. */
static int query_text(sqlite3 *db, const char *sql, double deadline, char *buf, size_t n) {
    for (int attempt = 1;; attempt++) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
            rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                const unsigned char *t = sqlite3_column_text(st, 0);
                snprintf(buf, n, "%s", t ? (const char *)t : "");
                rc = SQLITE_OK;
            } else if (rc == SQLITE_DONE) {
                snprintf(buf, n, "%s", "");
                rc = SQLITE_OK;
            }
        }
        sqlite3_finalize(st);   /* NULL-safe; keeps a failed step's message */
        if (!is_busy(rc) || mp_now() >= deadline) return rc;
        backoff(attempt);
    }
}

static int user_version(sqlite3 *db, double deadline, long long *v) {
    char buf[32];
    int rc = query_text(db, "PRAGMA user_version", deadline, buf, sizeof buf);
    if (rc == SQLITE_OK) *v = strtoll(buf, NULL, 10);
    return rc;
}

/* ---------------------------------------------------------------- transactions */

/* The body of a write transaction: runs its statements and returns an
 * SQLite result code (SQLITE_OK when all went well). */
typedef int (*txn_body)(mp_rundb *db, void *arg);

/* Runs body inside BEGIN IMMEDIATE ... COMMIT.  When any step meets a busy
 * database, the whole transaction is rolled back and run again from BEGIN
 * (after a failed statement SQLite may or may not have rolled back for us),
 * until MP_RUNDB_BUSY_MS have passed.  So a body must be safe to repeat. */
static int write_txn(mp_rundb *db, txn_body body, void *arg, mp_err *err) {
    double deadline = busy_deadline();
    for (int attempt = 1;; attempt++) {
        int rc = exec_retry(db->db, "BEGIN IMMEDIATE", deadline);
        if (rc == SQLITE_OK) {
            rc = body(db, arg);
            if (rc == SQLITE_OK) rc = sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL);
        }
        if (rc == SQLITE_OK) return MP_OK;
        /* ROLLBACK replaces the message; keep the one that explains the failure */
        char msg[256];
        snprintf(msg, sizeof msg, "%s", sqlite3_errmsg(db->db));
        if (!sqlite3_get_autocommit(db->db))
            sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        if (!is_busy(rc) || mp_now() >= deadline) return fail_msg(db->path, msg, err);
        backoff(attempt);
    }
}

/* Binding helpers collect the first failure in *rc, so the binds of one
 * statement read as a list and step_done reports the failure.  Strings are
 * SQLITE_STATIC: they belong to our caller and outlive the statement's step. */
static void bind_text(sqlite3_stmt *st, int i, const char *s, int *rc) {
    if (*rc == SQLITE_OK)
        *rc = s ? sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static void bind_int(sqlite3_stmt *st, int i, long long v, int *rc) {
    if (*rc == SQLITE_OK) *rc = sqlite3_bind_int64(st, i, v);
}

/* NaN is stored as NULL by SQLite itself. */
static void bind_double(sqlite3_stmt *st, int i, double v, int *rc) {
    if (*rc == SQLITE_OK) *rc = sqlite3_bind_double(st, i, v);
}

static void bind_null(sqlite3_stmt *st, int i, int *rc) {
    if (*rc == SQLITE_OK) *rc = sqlite3_bind_null(st, i);
}

/* Steps a bound write statement (unless a bind failed), then resets it and
 * drops its bindings for the next use.  Returns SQLITE_OK or the error. */
static int step_done(sqlite3_stmt *st, int rc) {
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) rc = SQLITE_OK;
    }
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc;
}

static int heartbeat(mp_rundb *db, long long run, const char *now) {
    sqlite3_stmt *st = db->st[ST_HEARTBEAT];
    int rc = SQLITE_OK;
    bind_int(st, 1, run, &rc);
    bind_text(st, 2, now, &rc);
    return step_done(st, rc);
}

/* ---------------------------------------------------------------- lost runs, SQL functions */

/* "2026-11-27T07:00:00.123Z" -> unix seconds.  false for anything else. */
static bool iso_to_unix(const char *iso, double *t) {
    int y, mo, d, h, mi, n = 0;
    double sec;
    if (sscanf(iso, "%4d-%2d-%2dT%2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
        iso[n] != 'Z')
        return false;
    struct tm tm = { .tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h,
                     .tm_min = mi };
    time_t base = timegm(&tm);
    if (base == (time_t)-1) return false;
    *t = (double)base + sec;
    return true;
}

/* Unix time with sub-second precision. */
static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "45s", "7m12s", "3h05m", "2d04h": an age, to the unit that matters. */
static void fmt_age(char *buf, size_t n, double s) {
    long long t = llround(s < 0 ? 0 : s);
    if (t < 60) snprintf(buf, n, "%llds", t);
    else if (t < 3600) snprintf(buf, n, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400) snprintf(buf, n, "%lldh%02lldm", t / 3600, t / 60 % 60);
    else snprintf(buf, n, "%lldd%02lldh", t / 86400, t / 3600 % 24);
}

const char *mp_rundb_status(const mp_rundb *db, const char *status, const char *host,
                            long long pid, const char *heartbeat, char *why, size_t n) {
    double beat;
    if (!status || strcmp(status, "running") != 0 || !heartbeat || !iso_to_unix(heartbeat, &beat))
        return status;
    double age = unix_now() - beat;
    char ago[32];
    fmt_age(ago, sizeof ago, age);
    if (age > db->lost_after) {
        if (why) snprintf(why, n, "no heartbeat for %s (lost after %gs)", ago, db->lost_after);
        return "lost";
    }
    /* kill(pid, 0) only means something on the machine that ran it, and a
     * dead pid alone is not proof: pids are reused, and another container
     * with the same hostname has its own pid namespace.  So the heartbeat
     * must also have gone quiet for a while. */
    if (age > MP_RUNDB_LOST_PID_AFTER && host && strcmp(host, db->host) == 0 && pid > 0 &&
        pid <= INT32_MAX && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        if (why) snprintf(why, n, "its process (pid %lld on this host) is gone; last heartbeat "
                          "%s ago", pid, ago);
        return "lost";
    }
    return status;
}

/* mp_status(status, host, pid, heartbeat): mp_rundb_status for SQL, so that
 * `--status lost` and `--where "status = 'lost'"` filter in the query. */
static void sql_status(sqlite3_context *ctx, int argc, sqlite3_value **v) {
    (void)argc;
    const mp_rundb *db = sqlite3_user_data(ctx);
    const char *status = (const char *)sqlite3_value_text(v[0]);
    if (!status) {
        sqlite3_result_null(ctx);
        return;
    }
    const char *shown = mp_rundb_status(db, status, (const char *)sqlite3_value_text(v[1]),
                                        sqlite3_value_int64(v[2]),
                                        (const char *)sqlite3_value_text(v[3]), NULL, 0);
    if (shown == status) sqlite3_result_value(ctx, v[0]);
    else sqlite3_result_text(ctx, shown, -1, SQLITE_STATIC);
}

/* mp_num(x): x as a REAL when it is a number or text that reads as a finite
 * number ("0.01", "1e-3", "200"), else NULL ("adam", "true", NULL).  Params
 * are stored as YAML text; this lets `train.learning_rate < 0.05` compare
 * numbers, not strings. */
static void sql_num(sqlite3_context *ctx, int argc, sqlite3_value **v) {
    (void)argc;
    double d;
    switch (sqlite3_value_type(v[0])) {
    case SQLITE_INTEGER:
    case SQLITE_FLOAT:
        sqlite3_result_double(ctx, sqlite3_value_double(v[0]));
        break;
    case SQLITE_TEXT:
        if (mp_parse_double((const char *)sqlite3_value_text(v[0]), &d) && isfinite(d))
            sqlite3_result_double(ctx, d);
        else
            sqlite3_result_null(ctx);
        break;
    default:
        sqlite3_result_null(ctx);
    }
}

/* Reads MLPIPE_LOST_AFTER (seconds > 0) or falls back to the default. */
static double lost_after(void) {
    const char *s = getenv("MLPIPE_LOST_AFTER");
    double v;
    if (!s || !*s) return MP_RUNDB_LOST_AFTER;
    if (mp_parse_double(s, &v) && v > 0 && isfinite(v)) return v;
    mp_log(MP_LOG_WARN, "MLPIPE_LOST_AFTER='%s' is not a number of seconds > 0; using %d", s,
           MP_RUNDB_LOST_AFTER);
    return MP_RUNDB_LOST_AFTER;
}

/* Sets up what the SQL functions need and registers them on db->db. */
static int add_functions(mp_rundb *db) {
    if (gethostname(db->host, sizeof db->host) != 0) snprintf(db->host, sizeof db->host, "unknown");
    db->host[sizeof db->host - 1] = '\0';
    db->lost_after = lost_after();
    int rc = sqlite3_create_function_v2(db->db, "mp_status", 4, SQLITE_UTF8, db, sql_status,
                                        NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_create_function_v2(db->db, "mp_num", 1,
                                        SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS,
                                        NULL, sql_num, NULL, NULL, NULL);
    return rc;
}

/* ---------------------------------------------------------------- open, migrate */

/* One migration step: under the write lock, re-reads the version (another
 * process may have migrated since we looked) and applies the next step. */
static int migrate_step(mp_rundb *db, void *arg) {
    (void)arg;
    long long v;
    int rc = user_version(db->db, 0, &v);
    if (rc != SQLITE_OK || v < 0 || v >= MP_RUNDB_SCHEMA) return rc;
    rc = sqlite3_exec(db->db, migrations[v + 1], NULL, NULL, NULL);
    if (rc != SQLITE_OK) return rc;
    char sql[64];   /* PRAGMAs take no parameters */
    snprintf(sql, sizeof sql, "PRAGMA user_version = %lld", v + 1);
    return sqlite3_exec(db->db, sql, NULL, NULL, NULL);
}

/* Brings the schema to MP_RUNDB_SCHEMA, or refuses a newer one.  Looks at the
 * version before taking any lock, so the usual open (schema current) never
 * waits for a writer. */
static int migrate(mp_rundb *db, double deadline, mp_err *err) {
    /* each pass moves the version up by at least one, or stops */
    long long first = -1;       /* the version found: a new file (0) is not news */
    for (int pass = 0; pass <= MP_RUNDB_SCHEMA; pass++) {
        long long v;
        int rc = user_version(db->db, deadline, &v);
        if (rc != SQLITE_OK) return mp_rundb_fail(db, err);
        if (v > MP_RUNDB_SCHEMA)
            return MP_ERR(err, MP_E_DB, "database '%s' has schema version %lld, newer than "
                          "this mlpipe's %d (upgrade mlpipe)", db->path, v, MP_RUNDB_SCHEMA);
        if (v < 0)
            return MP_ERR(err, MP_E_DB, "database '%s' has schema version %lld, which no "
                          "mlpipe writes (not a run database?)", db->path, v);
        if (v == MP_RUNDB_SCHEMA) return MP_OK;
        if (first < 0) first = v;
        if (first > 0) mp_log(MP_LOG_INFO, "run database '%s': migrating schema %lld -> %lld",
                              db->path, v, v + 1);
        if (write_txn(db, migrate_step, NULL, err) != MP_OK) return err->code;
    }
    return MP_ERR(err, MP_E_DB, "run database '%s': schema migration made no progress",
                  db->path);
}

static int open_db(const char *path, bool create, mp_rundb **out, mp_err *err) {
    mp_rundb *db = mp_calloc(1, sizeof *db);
    if (db) db->path = mp_strdup(path);
    if (!db || !db->path) {
        mp_free(db);
        return MP_ERR(err, MP_E_NOMEM, "out of memory opening run database '%s'", path);
    }
    /* NOMUTEX: a handle is used by one thread at a time (the heartbeat
     * thread opens its own), so SQLite's per-call connection mutex is pure
     * cost -- about a quarter of the CPU time of logging metrics */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
    /* on failure db->db may still be a handle: it carries the message */
    if (sqlite3_open_v2(path, &db->db, flags, NULL) != SQLITE_OK) goto fail_sqlite;
    sqlite3_extended_result_codes(db->db, 1);
    sqlite3_busy_timeout(db->db, MP_RUNDB_BUSY_MS);

    double deadline = busy_deadline();
    /* the first statement that reads the file: a non-database fails here
     * with "file is not a database" */
    char mode[16];
    if (query_text(db->db, "PRAGMA journal_mode = WAL", deadline, mode, sizeof mode)
        != SQLITE_OK)
        goto fail_sqlite;
    if (strcmp(mode, "wal") != 0)   /* e.g. a file system without shared memory */
        mp_log(MP_LOG_WARN, "run database '%s': journal mode is '%s', not 'wal'; "
               "concurrent runs will wait for each other", path, mode);
    if (exec_retry(db->db, "PRAGMA synchronous = NORMAL", deadline) != SQLITE_OK ||
        exec_retry(db->db, "PRAGMA foreign_keys = ON", deadline) != SQLITE_OK)
        goto fail_sqlite;
    if (migrate(db, deadline, err) != MP_OK) goto fail;
    if (add_functions(db) != SQLITE_OK) goto fail_sqlite;

    for (int i = 0; i < ST_COUNT; i++)
        if (sqlite3_prepare_v3(db->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &db->st[i], NULL) != SQLITE_OK)
            goto fail_sqlite;
    /* ST_METRIC with METRIC_CHUNK rows of values */
    char chunk[128 + METRIC_CHUNK * 16];
    size_t k = (size_t)snprintf(chunk, sizeof chunk, "%s", stmt_sql[ST_METRIC]);
    k -= strlen(" VALUES (?1, ?2, ?3, ?4, ?5)");
    k += (size_t)snprintf(chunk + k, sizeof chunk - k, " VALUES ");
    for (int j = 0; j < METRIC_CHUNK; j++)
        k += (size_t)snprintf(chunk + k, sizeof chunk - k, "%s(?,?,?,?,?)", j ? "," : "");
    if (sqlite3_prepare_v3(db->db, chunk, (int)k, SQLITE_PREPARE_PERSISTENT, &db->metric_chunk,
                           NULL) != SQLITE_OK)
        goto fail_sqlite;
    *out = db;
    return MP_OK;
fail_sqlite:
    mp_rundb_fail(db, err);
fail:
    mp_rundb_close(db);
    return err->code;
}

int mp_rundb_open(const char *path, mp_rundb **out, mp_err *err) {
    return open_db(path, true, out, err);
}

int mp_rundb_open_existing(const char *path, mp_rundb **out, mp_err *err) {
    struct stat sb;
    if (stat(path, &sb) != 0 && errno == ENOENT)
        return MP_ERR(err, MP_E_DB, "no run database at '%s'", path);
    return open_db(path, false, out, err);
}

void mp_rundb_close(mp_rundb *db) {
    if (!db) return;
    for (int i = 0; i < ST_COUNT; i++) sqlite3_finalize(db->st[i]);   /* NULL-safe */
    sqlite3_finalize(db->metric_chunk);
    sqlite3_close(db->db);                                            /* NULL-safe */
    mp_free(db->path);
    mp_free(db);
}

struct sqlite3 *mp_rundb_sqlite(mp_rundb *db) { return db->db; }

const char *mp_rundb_path(const mp_rundb *db) { return db->path; }

/* ---------------------------------------------------------------- writes */

typedef struct begin_arg {
    const mp_run_info *info;
    const char        *sha256;     /* info->config_sha256, or computed */
    const char        *now;
    const char        *host;
    long long          id;         /* out */
} begin_arg;

static int begin_body(mp_rundb *db, void *p) {
    begin_arg *a = p;
    sqlite3_stmt *st = db->st[ST_RUN_BEGIN];
    int rc = SQLITE_OK;
    bind_text(st, 1, a->info->pipeline, &rc);
    bind_text(st, 2, a->now, &rc);
    bind_text(st, 3, a->info->config, &rc);
    bind_text(st, 4, a->sha256, &rc);
    bind_int(st, 5, (long long)a->info->seed, &rc);   /* two's complement above 2^63 */
    bind_text(st, 6, a->host, &rc);
    bind_int(st, 7, (long long)getpid(), &rc);
    bind_text(st, 8, MP_VERSION, &rc);
    rc = step_done(st, rc);
    if (rc == SQLITE_OK) a->id = sqlite3_last_insert_rowid(db->db);
    return rc;
}

int mp_rundb_run_begin(mp_rundb *db, const mp_run_info *info, long long *run_id, mp_err *err) {
    char now[32], host[256], sha[65];
    mp_iso_time(now);
    if (gethostname(host, sizeof host) != 0) snprintf(host, sizeof host, "%s", "unknown");
    host[sizeof host - 1] = '\0';   /* gethostname need not terminate a cut name */
    begin_arg a = { .info = info, .sha256 = info->config_sha256, .now = now, .host = host };
    if (!a.sha256 && info->config) {
        mp_sha256_hex(info->config, strlen(info->config), sha);
        a.sha256 = sha;
    }
    if (write_txn(db, begin_body, &a, err) != MP_OK) return err->code;
    *run_id = a.id;
    return MP_OK;
}

typedef struct params_arg {
    long long    run;
    char *const *keys, *const *values;
    size_t       n;
} params_arg;

static int params_body(mp_rundb *db, void *p) {
    params_arg *a = p;
    sqlite3_stmt *st = db->st[ST_PARAM];
    int rc = SQLITE_OK;
    for (size_t i = 0; i < a->n && rc == SQLITE_OK; i++) {
        bind_int(st, 1, a->run, &rc);
        bind_text(st, 2, a->keys[i], &rc);
        bind_text(st, 3, a->values[i], &rc);
        rc = step_done(st, rc);
    }
    return rc;
}

int mp_rundb_params(mp_rundb *db, long long run, char *const *keys, char *const *values,
                    size_t n, mp_err *err) {
    if (n == 0) return MP_OK;
    params_arg a = { .run = run, .keys = keys, .values = values, .n = n };
    return write_txn(db, params_body, &a, err);
}

typedef struct metrics_arg {
    long long            run;
    const mp_metric_row *rows;
    size_t               n;
    double               now;      /* unix seconds, for rows without a time */
    const char          *iso_now;  /* for the heartbeat */
} metrics_arg;

/* Binds row r to parameters base + 1 .. base + 5 of st. */
static void bind_metric(sqlite3_stmt *st, int base, const metrics_arg *a,
                        const mp_metric_row *r, int *rc) {
    bind_int(st, base + 1, a->run, rc);
    bind_text(st, base + 2, r->key, rc);
    bind_double(st, base + 3, r->value, rc);
    if (r->step < 0) bind_null(st, base + 4, rc);   /* a final figure */
    else bind_int(st, base + 4, r->step, rc);
    bind_double(st, base + 5, r->time > 0 ? r->time : a->now, rc);
}

static int metrics_body(mp_rundb *db, void *p) {
    metrics_arg *a = p;
    int rc = SQLITE_OK;
    size_t i = 0;
    for (; i + METRIC_CHUNK <= a->n && rc == SQLITE_OK; i += METRIC_CHUNK) {
        for (int j = 0; j < METRIC_CHUNK; j++)
            bind_metric(db->metric_chunk, 5 * j, a, &a->rows[i + (size_t)j], &rc);
        rc = step_done(db->metric_chunk, rc);
    }
    for (; i < a->n && rc == SQLITE_OK; i++) {
        bind_metric(db->st[ST_METRIC], 0, a, &a->rows[i], &rc);
        rc = step_done(db->st[ST_METRIC], rc);
    }
    return rc == SQLITE_OK ? heartbeat(db, a->run, a->iso_now) : rc;
}

int mp_rundb_metrics(mp_rundb *db, long long run, const mp_metric_row *rows, size_t n,
                     mp_err *err) {
    if (n == 0) return MP_OK;
    char now[32];
    mp_iso_time(now);
    metrics_arg a = { .run = run, .rows = rows, .n = n, .now = unix_now(), .iso_now = now };
    return write_txn(db, metrics_body, &a, err);
}

typedef struct artifact_arg {
    long long   run;
    const char *name, *path, *sha256;
    long long   bytes;
} artifact_arg;

static int artifact_body(mp_rundb *db, void *p) {
    artifact_arg *a = p;
    sqlite3_stmt *st = db->st[ST_ARTIFACT];
    int rc = SQLITE_OK;
    bind_int(st, 1, a->run, &rc);
    bind_text(st, 2, a->name, &rc);
    bind_text(st, 3, a->path, &rc);
    bind_text(st, 4, a->sha256, &rc);
    if (a->bytes < 0) bind_null(st, 5, &rc);
    else bind_int(st, 5, a->bytes, &rc);
    return step_done(st, rc);
}

int mp_rundb_artifact(mp_rundb *db, long long run, const char *name, const char *path,
                      const char *sha256, long long bytes, mp_err *err) {
    artifact_arg a = { .run = run, .name = name, .path = path, .sha256 = sha256,
                       .bytes = bytes };
    return write_txn(db, artifact_body, &a, err);
}

typedef struct stage_arg {
    long long   run;
    int         idx;
    const char *kind, *module, *status, *error, *now;
    double      seconds;
} stage_arg;

static int stage_body(mp_rundb *db, void *p) {
    stage_arg *a = p;
    sqlite3_stmt *st = db->st[ST_STAGE];
    int rc = SQLITE_OK;
    bind_int(st, 1, a->run, &rc);
    bind_int(st, 2, a->idx, &rc);
    bind_text(st, 3, a->kind, &rc);
    bind_text(st, 4, a->module, &rc);
    bind_text(st, 5, a->status, &rc);
    if (a->seconds < 0) bind_null(st, 6, &rc);
    else bind_double(st, 6, a->seconds, &rc);
    bind_text(st, 7, a->error, &rc);
    rc = step_done(st, rc);
    return rc == SQLITE_OK ? heartbeat(db, a->run, a->now) : rc;
}

int mp_rundb_stage(mp_rundb *db, long long run, int idx, const char *kind, const char *module,
                   const char *status, double seconds, const char *error, mp_err *err) {
    char now[32];
    mp_iso_time(now);
    stage_arg a = { .run = run, .idx = idx, .kind = kind, .module = module, .status = status,
                    .error = error, .now = now, .seconds = seconds };
    return write_txn(db, stage_body, &a, err);
}

typedef struct end_arg {
    long long   run;
    const char *status, *now, *error, *failed_stage;
    int         exit_code;
    bool        found;     /* out: the run exists */
} end_arg;

static int end_body(mp_rundb *db, void *p) {
    end_arg *a = p;
    sqlite3_stmt *st = db->st[ST_RUN_END];
    int rc = SQLITE_OK;
    bind_int(st, 1, a->run, &rc);
    bind_text(st, 2, a->status, &rc);
    bind_text(st, 3, a->now, &rc);
    bind_int(st, 4, a->exit_code, &rc);
    bind_text(st, 5, a->error, &rc);
    bind_text(st, 6, a->failed_stage, &rc);
    rc = step_done(st, rc);
    a->found = rc == SQLITE_OK && sqlite3_changes(db->db) > 0;
    return rc;
}

int mp_rundb_run_end(mp_rundb *db, long long run, const char *status, int exit_code,
                     const char *error, const char *failed_stage, mp_err *err) {
    char now[32];
    mp_iso_time(now);
    end_arg a = { .run = run, .status = status, .now = now, .error = error,
                  .failed_stage = failed_stage, .exit_code = exit_code };
    if (write_txn(db, end_body, &a, err) != MP_OK) return err->code;
    if (!a.found) return MP_ERR(err, MP_E_DB, "run database '%s': no run %lld", db->path, run);
    return MP_OK;
}

typedef struct beat_arg {
    long long   run;
    const char *now;
} beat_arg;

static int beat_body(mp_rundb *db, void *p) {
    beat_arg *a = p;
    return heartbeat(db, a->run, a->now);
}

int mp_rundb_heartbeat(mp_rundb *db, long long run, mp_err *err) {
    char now[32];
    mp_iso_time(now);
    beat_arg a = { .run = run, .now = now };
    return write_txn(db, beat_body, &a, err);
}

/* ---------------------------------------------------------------- delete, gc */

typedef struct delete_arg {
    const long long *ids;
    size_t           n;
    size_t           deleted;   /* out */
} delete_arg;

static int delete_body(mp_rundb *db, void *p) {
    delete_arg *a = p;
    sqlite3_stmt *st = NULL;
    a->deleted = 0;     /* the body may run again after a busy rollback */
    int rc = sqlite3_prepare_v2(db->db, "DELETE FROM runs WHERE id = ?1", -1, &st, NULL);
    for (size_t i = 0; i < a->n && rc == SQLITE_OK; i++) {
        rc = sqlite3_bind_int64(st, 1, a->ids[i]);
        if (rc == SQLITE_OK) rc = sqlite3_step(st);
        if (rc == SQLITE_DONE) {
            rc = SQLITE_OK;
            a->deleted += (size_t)sqlite3_changes(db->db) > 0;
        }
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

int mp_rundb_delete_runs(mp_rundb *db, const long long *ids, size_t n, size_t *n_deleted,
                         mp_err *err) {
    delete_arg a = { .ids = ids, .n = n };
    if (n > 0 && write_txn(db, delete_body, &a, err) != MP_OK) return err->code;
    *n_deleted = a.deleted;
    return MP_OK;
}

/* Rows of child tables whose run is gone: left by a DELETE made with
 * foreign_keys off (plain sqlite3 leaves it off).  Deleting the artifacts
 * ones fires the trigger, so their files become gc candidates too. */
static const char *const orphan_tables[] = { "artifacts", "metrics", "params", "stages" };

typedef struct orphan_arg {
    long long rows;     /* out */
} orphan_arg;

static int orphans_body(mp_rundb *db, void *p) {
    orphan_arg *a = p;
    a->rows = 0;
    for (size_t i = 0; i < sizeof orphan_tables / sizeof *orphan_tables; i++) {
        char sql[128];      /* table names from the list above */
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE run NOT IN (SELECT id FROM runs)",
                 orphan_tables[i]);
        int rc = sqlite3_exec(db->db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK) return rc;
        a->rows += sqlite3_changes(db->db);
    }
    return SQLITE_OK;
}

/* Counts the orphan rows without deleting them (for --dry-run). */
static int count_orphans(mp_rundb *db, long long *rows, mp_err *err) {
    *rows = 0;
    for (size_t i = 0; i < sizeof orphan_tables / sizeof *orphan_tables; i++) {
        char sql[128];
        snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE run NOT IN (SELECT id FROM runs)",
                 orphan_tables[i]);
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db->db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            *rows += sqlite3_column_int64(st, 0);
            rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        if (rc != SQLITE_OK) return mp_rundb_fail(db, err);
    }
    return MP_OK;
}

/* One deleted_artifacts row (or, in a dry run, an orphan artifacts row). */
typedef struct gc_row {
    char      *path, *name, *sha256;    /* owned; sha256 may be NULL */
    long long  run, bytes;              /* bytes -1 when unknown */
    bool       in_use;                  /* an artifacts row of a live run has the path */
} gc_row;

typedef struct gc_rows {
    gc_row *v;
    size_t  n, cap;
} gc_rows;

static void gc_rows_release(gc_rows *r) {
    for (size_t i = 0; i < r->n; i++) {
        mp_free(r->v[i].path);
        mp_free(r->v[i].name);
        mp_free(r->v[i].sha256);
    }
    mp_free(r->v);
}

/* Candidates sorted by path, the most recent deletion first within a path. */
static const char gc_sql[] =
    "SELECT path, name, sha256, run, bytes,"
    "  EXISTS (SELECT 1 FROM artifacts a JOIN runs r ON r.id = a.run WHERE a.path = c.path)"
    " FROM (SELECT rowid AS k, path, name, sha256, run, bytes FROM deleted_artifacts"
    "       UNION ALL"
    "       SELECT -rowid, path, name, sha256, run, bytes FROM artifacts"
    "        WHERE ?1 AND run NOT IN (SELECT id FROM runs)) c"
    " ORDER BY path, k DESC";

static int gc_load(mp_rundb *db, bool dry_run, gc_rows *rows, mp_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->db, gc_sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int(st, 1, dry_run);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        if (rows->n == rows->cap) {
            size_t cap = rows->cap ? rows->cap * 2 : 16;
            gc_row *v = mp_realloc(rows->v, mp_mul_size(cap, sizeof *v));
            if (!v) goto nomem;
            rows->v = v;
            rows->cap = cap;
        }
        gc_row *r = &rows->v[rows->n];
        const char *sha = (const char *)sqlite3_column_text(st, 2);
        *r = (gc_row){ .path = mp_strdup((const char *)sqlite3_column_text(st, 0)),
                       .name = mp_strdup((const char *)sqlite3_column_text(st, 1)),
                       .sha256 = sha ? mp_strdup(sha) : NULL,
                       .run = sqlite3_column_int64(st, 3),
                       .bytes = sqlite3_column_type(st, 4) == SQLITE_NULL
                                    ? -1 : sqlite3_column_int64(st, 4),
                       .in_use = sqlite3_column_int(st, 5) != 0 };
        rows->n++;      /* counted before the checks: release frees what was copied */
        if (!r->path || !r->name || (sha && !r->sha256)) goto nomem;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_OK) return mp_rundb_fail(db, err);
    return MP_OK;
nomem:
    sqlite3_finalize(st);
    return MP_ERR(err, MP_E_NOMEM, "out of memory collecting artifacts for gc");
}

/* What to do with the file at the path of rows[0 .. n): all rows share it. */
static mp_gc_action gc_decide(const gc_row *rows, size_t n, const char **detail, mp_err *err) {
    *detail = NULL;
    if (rows[0].in_use) return MP_GC_IN_USE;
    struct stat sb;
    if (stat(rows[0].path, &sb) != 0) {
        if (errno == ENOENT) return MP_GC_MISSING;
        *detail = strerror(errno);
        return MP_GC_FAILED;
    }
    if (!S_ISREG(sb.st_mode)) {
        *detail = "not a regular file";
        return MP_GC_CHANGED;
    }
    /* the file must be one a deleted run wrote: some row's checksum (a row
     * without one cannot be checked and is taken at its word) */
    char sha[65] = "";
    bool hashed = false;
    for (size_t i = 0; i < n; i++) {
        if (!rows[i].sha256) return MP_GC_REMOVED;
        if (!hashed) {
            mp_err e = { 0 };
            if (mp_sha256_file(rows[0].path, sha, NULL, &e) != MP_OK) {
                if (e.code == MP_E_NOMEM) *err = e;
                *detail = "cannot read it";
                return MP_GC_FAILED;
            }
            hashed = true;
        }
        if (strcmp(rows[i].sha256, sha) == 0) return MP_GC_REMOVED;
    }
    *detail = "its content changed since a deleted run wrote it";
    return MP_GC_CHANGED;
}

typedef struct forget_arg {
    const gc_rows *rows;
    const bool    *forget;      /* per row: delete its deleted_artifacts rows */
} forget_arg;

static int forget_body(mp_rundb *db, void *p) {
    forget_arg *a = p;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db->db, "DELETE FROM deleted_artifacts WHERE path = ?1", -1,
                                &st, NULL);
    for (size_t i = 0; i < a->rows->n && rc == SQLITE_OK; i++) {
        if (!a->forget[i]) continue;
        rc = sqlite3_bind_text(st, 1, a->rows->v[i].path, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_DONE) rc = SQLITE_OK;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

int mp_rundb_gc(mp_rundb *db, bool dry_run, mp_gc_fn fn, void *ud, mp_gc_stats *stats,
                mp_err *err) {
    memset(stats, 0, sizeof *stats);
    gc_rows rows = { 0 };
    bool *forget = NULL;
    if (dry_run) {
        if (count_orphans(db, &stats->orphan_rows, err) != MP_OK) goto done;
    } else {
        orphan_arg oa = { 0 };
        if (write_txn(db, orphans_body, &oa, err) != MP_OK) goto done;
        stats->orphan_rows = oa.rows;
    }
    if (gc_load(db, dry_run, &rows, err) != MP_OK) goto done;
    if (rows.n && !(forget = mp_calloc(rows.n, sizeof *forget))) {
        MP_ERR(err, MP_E_NOMEM, "out of memory collecting artifacts for gc");
        goto done;
    }
    /* one decision per path: rows come grouped by path */
    for (size_t i = 0, j; i < rows.n; i = j) {
        for (j = i + 1; j < rows.n && strcmp(rows.v[j].path, rows.v[i].path) == 0; j++) {}
        const char *detail;
        mp_gc_action act = gc_decide(&rows.v[i], j - i, &detail, err);
        if (err->code != MP_OK) goto done;
        if (act == MP_GC_REMOVED && !dry_run && unlink(rows.v[i].path) != 0 && errno != ENOENT) {
            act = MP_GC_FAILED;
            detail = strerror(errno);
        }
        stats->files[act]++;
        if (act == MP_GC_REMOVED && rows.v[i].bytes > 0) stats->bytes += rows.v[i].bytes;
        forget[i] = act != MP_GC_FAILED;    /* a failed one is tried again next time */
        mp_gc_file f = { .path = rows.v[i].path, .name = rows.v[i].name, .run = rows.v[i].run,
                         .bytes = rows.v[i].bytes, .action = act, .detail = detail };
        if (fn) fn(ud, &f);
    }
    if (!dry_run && rows.n) {
        forget_arg fa = { .rows = &rows, .forget = forget };
        write_txn(db, forget_body, &fa, err);
    }
done:
    mp_free(forget);
    gc_rows_release(&rows);
    return err->code;
}

/* ---------------------------------------------------------------- heartbeat thread */

struct mp_rundb_beat {
    mp_rundb       *db;         /* the thread's own connection */
    long long       run;
    double          interval;   /* seconds between beats */
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;         /* signalled by stop; waits on CLOCK_MONOTONIC */
    bool            stop;       /* under mu */
};

/* The thread: beat, sleep interval (or until stopped), repeat.  A failed
 * beat (the database busy for 30 s, the disk full) is not fatal: the next
 * one may succeed, and the run's own writes report real trouble.  Nothing
 * here allocates through mp_malloc, which is not thread-safe in tests. */
static void *beat_main(void *p) {
    mp_rundb_beat *b = p;
    pthread_mutex_lock(&b->mu);
    while (!b->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        double whole = floor(b->interval);
        until.tv_sec += (time_t)whole;
        until.tv_nsec += (long)((b->interval - whole) * 1e9);
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!b->stop && pthread_cond_timedwait(&b->cv, &b->mu, &until) == 0) {}
        if (b->stop) break;
        pthread_mutex_unlock(&b->mu);
        mp_err e = { 0 };
        mp_rundb_heartbeat(b->db, b->run, &e);
        pthread_mutex_lock(&b->mu);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int mp_rundb_beat_start(const char *path, long long run, double interval, mp_rundb_beat **out,
                        mp_err *err) {
    mp_rundb_beat *b = mp_calloc(1, sizeof *b);
    if (!b) return MP_ERR(err, MP_E_NOMEM, "out of memory starting the heartbeat");
    if (mp_rundb_open(path, &b->db, err) != MP_OK) {
        mp_free(b);
        return err->code;
    }
    b->run = run;
    b->interval = interval > 0.001 ? interval : 0.001;
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc == 0) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        rc = pthread_cond_init(&b->cv, &ca);
        pthread_condattr_destroy(&ca);
    }
    if (rc == 0 && (rc = pthread_mutex_init(&b->mu, NULL)) != 0) pthread_cond_destroy(&b->cv);
    if (rc == 0) {
        /* signals stay with the main thread, whose handler stops the run */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        rc = pthread_create(&b->thread, NULL, beat_main, b);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) {
            pthread_mutex_destroy(&b->mu);
            pthread_cond_destroy(&b->cv);
        }
    }
    if (rc != 0) {
        mp_rundb_close(b->db);
        mp_free(b);
        return MP_ERR(err, MP_E_IO, "cannot start the heartbeat thread: %s", strerror(rc));
    }
    *out = b;
    return MP_OK;
}

void mp_rundb_beat_stop(mp_rundb_beat *b) {
    if (!b) return;
    pthread_mutex_lock(&b->mu);
    b->stop = true;
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->cv);
    mp_rundb_close(b->db);
    mp_free(b);
}
