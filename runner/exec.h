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
    /* Sweeps (runner/sweep.c) */
    long         sweep_index;   /* -1: every point of a `sweep:`; else only this point */
    int          jobs;          /* worker processes for a sweep (1 = one after another) */
    int          argc;          /* the command line, to start sweep workers */
    char *const *argv;
    /* One sweep point, filled by the sweep driver: */
    char *const *point_sets;    /* KEY=VALUE per sweep axis, applied after `sets` */
    size_t       n_point_sets;
    const char  *sweep_id;      /* shared by the points of one sweep */
    size_t       point_index, n_points;
} mp_run_opts;

/* Loads the pipeline, applies --set, loads plugins, resolves the stages.
 * On success the caller owns *spec and *stages (mp_spec_free, mp_stages_free). */
int mp_exec_prepare(const mp_run_opts *o, mp_spec **spec, mp_stage **stages, mp_err *err);

/* Runs the pipeline once (exec.c; o->point_sets, when set, are a sweep
 * point's overrides) and records it.  Prints a JSON summary (run id,
 * status, final metrics) to out.  *run_id gets the run's id once one was
 * created (else 0).  Returns MP_OK, or the error that stopped the run. */
int mp_exec_run(const mp_run_opts *o, FILE *out, long long *run_id, mp_err *err);

/* What `mlpipe run` does (sweep.c): mp_sweep_run when the pipeline has a
 * `sweep:` (and o is not already one point of it), else mp_exec_run. */
int mp_run(const mp_run_opts *o, FILE *out, long long *run_id, mp_err *err);

/* Runs the sweep of spec (loaded from o->pipeline): one point (o->sweep_index
 * >= 0) or all of them, with o->jobs worker processes, then prints a table of
 * the points with the best marked.  Returns the first failure's error. */
int mp_sweep_run(const mp_run_opts *o, const mp_spec *spec, FILE *out, mp_err *err);

#endif /* MP_EXEC_H */
