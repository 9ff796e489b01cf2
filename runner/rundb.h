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
 * Every function returns MP_OK or MP_E_DB with the SQLite message.
 */
#ifndef MP_RUNDB_H
#define MP_RUNDB_H

#include "mp.h"

#define MP_RUNDB_SCHEMA 1       /* PRAGMA user_version this build writes */

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
 * on the same file at once: only one of them creates the schema. */
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
 * turns the connection's last error into MP_E_DB "run database 'path': msg". */
struct sqlite3 *mp_rundb_sqlite(mp_rundb *db);
const char     *mp_rundb_path(const mp_rundb *db);
int             mp_rundb_fail(mp_rundb *db, mp_err *err);

/* `mlpipe runs ...` (runner/runs.c): argv after "runs". Prints to out.
 * Returns an MP_E_* code (MP_E_USAGE for bad arguments). */
int  mp_runs_main(const char *db_path, int argc, char **argv, FILE *out, mp_err *err);

#endif /* MP_RUNDB_H */
