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

/* Opens (creating or migrating) the database at path. */
int  mp_rundb_open(const char *path, mp_rundb **out, mp_err *err);
void mp_rundb_close(mp_rundb *db);                    /* NULL-safe */
/* Inserts a `running` run and returns its id. */
int  mp_rundb_run_begin(mp_rundb *db, const mp_run_info *info, long long *run_id, mp_err *err);
int  mp_rundb_params(mp_rundb *db, long long run, char *const *keys, char *const *values,
                     size_t n, mp_err *err);
/* Inserts rows in one transaction. */
int  mp_rundb_metrics(mp_rundb *db, long long run, const mp_metric_row *rows, size_t n,
                      mp_err *err);
int  mp_rundb_artifact(mp_rundb *db, long long run, const char *name, const char *path,
                       const char *sha256, long long bytes, mp_err *err);
int  mp_rundb_stage(mp_rundb *db, long long run, int idx, const char *kind, const char *module,
                    const char *status, double seconds, const char *error, mp_err *err);
/* status: "finished", "failed" or "killed". failed_stage may be NULL. */
int  mp_rundb_run_end(mp_rundb *db, long long run, const char *status, int exit_code,
                      const char *error, const char *failed_stage, mp_err *err);

/* `mlpipe runs ...` (runner/runs.c): argv after "runs". Prints to out.
 * Returns an MP_E_* code (MP_E_USAGE for bad arguments). */
int  mp_runs_main(const char *db_path, int argc, char **argv, FILE *out, mp_err *err);

#endif /* MP_RUNDB_H */
