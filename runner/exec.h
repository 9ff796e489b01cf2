/*
 * exec.h -- the executor: config -> stages -> one recorded run.
 */
#ifndef MP_EXEC_H
#define MP_EXEC_H

#include "mp.h"
#include "config.h"

typedef struct mp_run_opts {
    const char  *pipeline;      /* YAML path */
    const char  *db_path;       /* run database */
    char *const *sets;          /* --set KEY=VALUE strings */
    size_t       n_sets;
    char *const *plugins;       /* --plugin paths */
    size_t       n_plugins;
} mp_run_opts;

/* Loads the pipeline, applies --set, loads plugins, resolves the stages.
 * On success the caller owns *spec and *stages (mp_spec_free, mp_stages_free). */
int mp_exec_prepare(const mp_run_opts *o, mp_spec **spec, mp_stage **stages, mp_err *err);

/* Runs the pipeline and records it.  Prints a JSON summary (run id, status,
 * final metrics) to out.  *run_id gets the run's id once one was created
 * (else 0).  Returns MP_OK, or the error that stopped the run. */
int mp_exec_run(const mp_run_opts *o, FILE *out, long long *run_id, mp_err *err);

#endif /* MP_EXEC_H */
