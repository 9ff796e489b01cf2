/*
 * par.c -- runs a function over the rows of a data set split into
 * contiguous ranges, one thread per range (par.h).  Threads live for one
 * call: a pass over X is long enough (mp_par_threads keeps small data on
 * one thread) that creating them costs nothing measurable, and no pool
 * means nothing to shut down or leak.
 */
#include "par.h"

#include <assert.h>
#include <cblas.h>
#include <pthread.h>
#include <stdbool.h>

_Static_assert(MP_PAR_MAX_THREADS >= 1, "MP_PAR_MAX_THREADS");

/* One range and what to run on it. */
typedef struct rows_job {
    mp_par_fn fn;
    void     *ud;
    int       t;        /* range index */
    size_t    lo, hi;   /* rows lo <= i < hi */
} rows_job;

static void *rows_main(void *p) {
    rows_job *j = p;
    j->fn(j->ud, j->t, j->lo, j->hi);
    return NULL;
}

int mp_par_threads(size_t units) {
    int t = openblas_get_num_threads();
    if (t > MP_PAR_MAX_THREADS) t = MP_PAR_MAX_THREADS;
    if ((size_t)t > units) t = (int)(units ? units : 1);
    return t < 1 ? 1 : t;
}

void mp_par_rows(size_t n_rows, int n_threads, mp_par_fn fn, void *ud) {
    assert(n_threads >= 1 && n_threads <= MP_PAR_MAX_THREADS);
    pthread_t th[MP_PAR_MAX_THREADS];
    rows_job job[MP_PAR_MAX_THREADS];
    bool started[MP_PAR_MAX_THREADS] = { false };
    int saved = openblas_get_num_threads();
    if (n_threads > 1) openblas_set_num_threads(1);
    for (int t = 0; t < n_threads; t++)
        job[t] = (rows_job){ fn, ud, t, n_rows * (size_t)t / (size_t)n_threads,
                             n_rows * (size_t)(t + 1) / (size_t)n_threads };
    for (int t = 1; t < n_threads; t++)
        started[t] = pthread_create(&th[t], NULL, rows_main, &job[t]) == 0;
    rows_main(&job[0]);
    /* Join in order; a range whose thread did not start runs here now. */
    for (int t = 1; t < n_threads; t++) {
        if (started[t]) pthread_join(th[t], NULL);
        else rows_main(&job[t]);
    }
    if (n_threads > 1) openblas_set_num_threads(saved);
}
