/*
 * rundb.h -- the SQLite run database.
 *
 * One file in WAL mode with a busy timeout, the schema version in
 * PRAGMA user_version (migrations run inside one transaction).  Tables are
 * documented in README.md ("Run database") for plain sqlite3 use:
 *   runs(id, pipeline, status, started, ended, seconds, config, config_sha256,
 *        seed, exit_code, error, failed_stage, host, pid, mlpipe_version, heartbeat)
 *   params(run, key, value)
 *   metrics(run, key, value, step, time)
 *   artifacts(run, name, path, sha256, bytes)
 *   stages(run, idx, kind, module, status, seconds, error)
 *   deleted_artifacts(run, name, path, sha256, bytes, deleted)   (schema 2)
 * Every function returns MP_OK or MP_E_DB with the SQLite message.
 *
 * The read side -- `mlpipe runs ...` and the table of runs that `runs export`,
 * `runs compare` and `mlpipe report` share -- is runner/runs.c, declared at
 * the end of this header.
 */
#ifndef MP_RUNDB_H
#define MP_RUNDB_H

#include "mp.h"

#define MP_RUNDB_SCHEMA 3       /* PRAGMA user_version this build writes */

typedef struct mp_rundb mp_rundb;

typedef struct mp_run_info {
    const char *pipeline;
    const char *config;         /* YAML text */
    const char *config_sha256;
    uint64_t    seed;
} mp_run_info;

typedef struct mp_metric_row {
    const char *key;            /* "train.loss", "test.accuracy" */
    double      value;
    long        step;           /* epoch/fold, or -1 for a final figure (stored NULL) */
    double      time;           /* unix seconds */
} mp_metric_row;

/* Opens (creating or migrating) the database at path.  On success *out is a
 * new handle the caller closes with mp_rundb_close.  Errors (MP_E_DB):
 *   "run database 'x.db': file is not a database" (or any SQLite message),
 *   "database 'x.db' has schema version 2, newer than this mlpipe's 1 (upgrade mlpipe)".
 * MP_E_NOMEM when an allocation fails.  Safe to call from several processes
 * on the same file at once: only one of them creates the schema.  A handle
 * may move between threads but must not be used by two at once. */
int  mp_rundb_open(const char *path, mp_rundb **out, mp_err *err);
/* Like mp_rundb_open, but never creates the file: MP_E_DB
 * "no run database at 'x.db'" when path does not exist.  For readers
 * (`mlpipe runs`), which should not leave an empty database behind. */
int  mp_rundb_open_existing(const char *path, mp_rundb **out, mp_err *err);
void mp_rundb_close(mp_rundb *db);                    /* NULL-safe */

/* Every write below is one BEGIN IMMEDIATE transaction, retried while another
 * process holds the write lock (up to MP_RUNDB_BUSY_MS in total). */
#define MP_RUNDB_BUSY_MS 30000

/* Inserts a `running` run (started, heartbeat = now; host, pid, version of
 * this process) and sets *run_id to its id.  info->config and
 * info->config_sha256 may be NULL; a NULL sha256 is computed from config. */
int  mp_rundb_run_begin(mp_rundb *db, const mp_run_info *info, long long *run_id, mp_err *err);
/* Sets n params (keys[i] = values[i]; a NULL value is stored as NULL) in one
 * transaction; a key already set for the run is replaced. */
int  mp_rundb_params(mp_rundb *db, long long run, char *const *keys, char *const *values,
                     size_t n, mp_err *err);
/* Inserts rows in one transaction and bumps the run's heartbeat.
 * A row with step < 0 is a final figure (step stored NULL); a row with
 * time <= 0 gets the current time. */
int  mp_rundb_metrics(mp_rundb *db, long long run, const mp_metric_row *rows, size_t n,
                      mp_err *err);
/* Records a file of the run; sha256 may be NULL, bytes < 0 is stored NULL. */
int  mp_rundb_artifact(mp_rundb *db, long long run, const char *name, const char *path,
                       const char *sha256, long long bytes, mp_err *err);
/* Inserts or replaces stage idx of the run (so a stage can be recorded as
 * "running" first and updated when it ends); error may be NULL.  seconds < 0
 * is stored NULL.  Bumps the run's heartbeat. */
int  mp_rundb_stage(mp_rundb *db, long long run, int idx, const char *kind, const char *module,
                    const char *status, double seconds, const char *error, mp_err *err);
/* status: "finished", "failed" or "killed". failed_stage may be NULL.
 * Sets ended = now and seconds = ended - started.  MP_E_DB for an unknown run. */
int  mp_rundb_run_end(mp_rundb *db, long long run, const char *status, int exit_code,
                      const char *error, const char *failed_stage, mp_err *err);
/* Sets the run's heartbeat to now, so a reader can tell a live `running` run
 * from one whose process died (SIGKILL, OOM killer) without recording its end. */
int  mp_rundb_heartbeat(mp_rundb *db, long long run, mp_err *err);

/* For read-only queries (runs.c): the connection, borrowed, valid until
 * mp_rundb_close; the path it was opened with; and the error helper that
 * turns the connection's last error into MP_E_DB "run database 'path': msg".
 * The connection has two SQL functions besides SQLite's own:
 *   mp_status(status, host, pid, heartbeat) -> mp_rundb_status(), as text;
 *   mp_num(x) -> x as a REAL if it is or reads as a finite number, else NULL. */
struct sqlite3 *mp_rundb_sqlite(mp_rundb *db);
const char     *mp_rundb_path(const mp_rundb *db);
int             mp_rundb_fail(mp_rundb *db, mp_err *err);

/* ---------------------------------------------------------------- lost runs */

/* A process killed with SIGKILL (or by the OOM killer, or a node that went
 * away) leaves its run `running` for ever.  Readers show such a run as
 * "lost" instead; the row is not rewritten (a slow run that beats again is
 * simply running again, and no reader needs the write lock). */
#define MP_RUNDB_LOST_AFTER 300         /* s without a heartbeat: lost (env MLPIPE_LOST_AFTER) */
#define MP_RUNDB_LOST_PID_AFTER 30      /* s without one when the pid is gone on this host */
#define MP_RUNDB_BEAT_SECONDS 30        /* interval for mp_rundb_beat_start */

/* The status to show for a runs row: status itself, or the static string
 * "lost" for a 'running' run whose heartbeat (ISO 8601 UTC) is older than
 * the lost threshold (MLPIPE_LOST_AFTER seconds when set at open, else
 * MP_RUNDB_LOST_AFTER), or that ran on this host (host = this hostname)
 * under a pid that no longer exists (kill(pid, 0) fails with ESRCH) and has
 * not beaten for MP_RUNDB_LOST_PID_AFTER seconds -- pids are reused and
 * containers sharing a hostname have their own pids, so the pid alone does
 * not decide.  host and heartbeat may be NULL (unknown: not lost), pid <= 0
 * is unknown.  For a lost run, when why is not NULL, a reason goes there:
 * "no heartbeat for 7m12s (lost after 300s)". */
const char *mp_rundb_status(const mp_rundb *db, const char *status, const char *host,
                            long long pid, const char *heartbeat, char *why, size_t n);

/* A thread that bumps a run's heartbeat every interval seconds through a
 * connection of its own, so that a stage that computes for minutes without
 * logging a metric is not taken for lost.  Start it after
 * mp_rundb_run_begin, stop it before mp_rundb_run_end.  Errors: those of
 * mp_rundb_open, MP_E_NOMEM, MP_E_IO when no thread can be created.  A beat
 * that fails is skipped silently (the next may succeed). */
typedef struct mp_rundb_beat mp_rundb_beat;
int  mp_rundb_beat_start(const char *path, long long run, double interval, mp_rundb_beat **out,
                         mp_err *err);
void mp_rundb_beat_stop(mp_rundb_beat *b);    /* NULL-safe: wakes, joins, closes, frees */

/* ---------------------------------------------------------------- delete, gc */

/* Deletes runs ids[0 .. n) with everything recorded about them (params,
 * metrics, artifacts, stages), in one transaction.  Files are not touched:
 * the artifact rows move to deleted_artifacts for mp_rundb_gc.  Unknown ids
 * are skipped; *n_deleted is the number of runs that existed. */
int  mp_rundb_delete_runs(mp_rundb *db, const long long *ids, size_t n, size_t *n_deleted,
                          mp_err *err);

/* What gc did (or, in a dry run, would do) with one file. */
typedef enum mp_gc_action {
    MP_GC_REMOVED,      /* no live run refers to it and it is what a deleted run wrote */
    MP_GC_MISSING,      /* already gone */
    MP_GC_IN_USE,       /* a run that still exists recorded the same path: kept */
    MP_GC_CHANGED,      /* the file's SHA-256 matches no deleted run's: kept */
    MP_GC_FAILED,       /* stat/read/unlink failed: kept, and tried again next time */
    MP_GC_ACTION_COUNT
} mp_gc_action;

typedef struct mp_gc_file {
    const char   *path;     /* as recorded: relative paths are relative to the cwd */
    const char   *name;     /* the artifact name ("model") */
    long long     run;      /* the deleted run that wrote it (the latest, if several) */
    long long     bytes;    /* recorded size, -1 when unknown */
    mp_gc_action  action;
    const char   *detail;   /* why, for CHANGED and FAILED; else NULL */
} mp_gc_file;

typedef struct mp_gc_stats {
    size_t    files[MP_GC_ACTION_COUNT];    /* paths, by action */
    long long bytes;                        /* recorded bytes of the removed files */
    long long orphan_rows;                  /* child rows of runs deleted with plain SQL */
} mp_gc_stats;

typedef void (*mp_gc_fn)(void *ud, const mp_gc_file *file);

/* Removes the files of deleted runs that no remaining run refers to (README
 * "Deleting runs"):
 *   1. child rows whose run is gone (a DELETE made with foreign_keys off)
 *      are deleted, their artifacts joining deleted_artifacts;
 *   2. for each path in deleted_artifacts: kept if an artifacts row of an
 *      existing run has the same path; else, if the file still holds what a
 *      deleted run wrote (same SHA-256), it is unlinked;
 *   3. the deleted_artifacts rows of every path dealt with are dropped (not
 *      those whose unlink failed).
 * fn (may be NULL) is called once per path.  With dry_run nothing changes
 * and fn hears what would happen.  Returns MP_OK even when some files
 * failed (see stats->files[MP_GC_FAILED]); MP_E_DB / MP_E_NOMEM otherwise. */
int  mp_rundb_gc(mp_rundb *db, bool dry_run, mp_gc_fn fn, void *ud, mp_gc_stats *stats,
                 mp_err *err);

/* ---------------------------------------------------------------- runs.c */

/* `mlpipe runs ...` (runner/runs.c): argv after "runs". Prints to out.
 * Returns an MP_E_* code (MP_E_USAGE for bad arguments). */
int  mp_runs_main(const char *db_path, int argc, char **argv, FILE *out, mp_err *err);

/* Turns a RUN argument -- an id or "last" -- into the id of an existing run.
 * MP_E_USAGE "bad run 'x': ...", "no run 42 in 'db'", "no runs in 'db'". */
int  mp_runs_resolve(mp_rundb *db, const char *arg, long long *id, mp_err *err);

/* The runs side by side: fields, params and final figures (the latest row of
 * each key with step NULL), as `runs compare`, `runs export` and
 * `mlpipe report` show them.  Cells are row-major, one row per run. */
enum {
    MP_RT_ID, MP_RT_PIPELINE, MP_RT_STATUS, MP_RT_STARTED, MP_RT_ENDED, MP_RT_SECONDS,
    MP_RT_SEED, MP_RT_EXIT_CODE, MP_RT_HOST,
    MP_RT_FIELDS            /* the fields of each run, in this order */
};
typedef struct mp_runs_table {
    size_t          n_runs;
    long long      *ids;            /* n_runs run ids, in the order asked for */
    char          **fields;         /* n_runs * MP_RT_FIELDS texts, NULL for SQL NULL;
                                     * status as shown (lost), seed unsigned */
    size_t          n_params;
    char          **param_keys;     /* sorted */
    char          **params;         /* n_runs * n_params, NULL when the run lacks it */
    size_t          n_metrics;
    char          **metric_keys;    /* sorted */
    double         *metrics;        /* n_runs * n_metrics; NaN for a NULL (NaN) figure */
    unsigned char  *has_metric;     /* n_runs * n_metrics: 1 when the run has the key */
} mp_runs_table;

/* Fills *t with runs ids[0 .. n) (which must exist), in that order.  The
 * caller releases it with mp_runs_table_release, also after a failure. */
int  mp_runs_table_load(mp_rundb *db, const long long *ids, size_t n, mp_runs_table *t,
                        mp_err *err);
void mp_runs_table_release(mp_runs_table *t);

#endif /* MP_RUNDB_H */
