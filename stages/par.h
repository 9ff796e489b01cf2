/*
 * par.h -- splitting the rows of a data set across threads, for the stages
 * whose passes over X are independent per row (linear_regression's Gram
 * pass, every k-means pass).
 *
 * Rows [0, n_rows) are cut into n_threads contiguous ranges, range t being
 *
 *     [n_rows * t / n_threads, n_rows * (t + 1) / n_threads)
 *
 * and fn(ud, t, lo, hi) runs once per range.  The ranges depend only on
 * n_rows and n_threads, never on timing or on whether a thread could be
 * started, so a caller that keeps per-thread sums and reduces them in the
 * order t = 0, 1, ... gets bit-identical results run after run.
 *
 * Typical use (acc has MP_PAR_MAX_THREADS slots, one per t):
 *     int nt = mp_par_threads(mp_mul_size(n, d) >> 17);
 *     mp_par_rows(n, nt, sum_rows, &job);
 *     for (int t = 0; t < nt; t++) total += job.acc[t];
 *
 * The training that needs workers to meet at barriers between steps (mlp.c's
 * team) and the dual CD problem queue (svm.c) are not row splits and do not
 * use this.
 */
#ifndef MP_PAR_H
#define MP_PAR_H

#include <stddef.h>

#define MP_PAR_MAX_THREADS 16   /* upper bound of n_threads: callers size per-thread arrays by it */

/* One range of rows: t in [0, n_threads) is the range's index (use it to pick
 * the per-thread scratch and accumulators), rows lo <= i < hi.  Called on
 * any thread, so it must not allocate (the test allocator is not
 * thread-safe), log or record metrics; an empty range (lo == hi) is
 * possible when n_rows < n_threads. */
typedef void (*mp_par_fn)(void *ud, int t, size_t lo, size_t hi);

/* The threads for `units` independent pieces of work, each worth a thread
 * of its own: as many as OpenBLAS would use, at most MP_PAR_MAX_THREADS
 * and at most units, never below 1.  The caller picks the unit (e.g. 2^17
 * values read, 2^20 multiply-adds), so small data stays on one thread. */
int  mp_par_threads(size_t units);

/* Runs fn over rows [0, n_rows) in n_threads (1..MP_PAR_MAX_THREADS)
 * ranges as above, and returns when every range is done.  The calling
 * thread runs range 0 itself; ranges 1.. get a thread each.  A thread that
 * cannot be created is not an error: its range runs on the calling thread
 * afterwards, so fn sees the same ranges either way.  With n_threads > 1
 * OpenBLAS is held to one thread meanwhile (restored on return), so BLAS
 * calls inside fn do not fight over the cores. */
void mp_par_rows(size_t n_rows, int n_threads, mp_par_fn fn, void *ud);

#endif
