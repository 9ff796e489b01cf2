/*
 * sweep.c -- grid sweeps: a top-level `sweep:` maps KIND.param to lists of
 * values, and `mlpipe run` runs one recorded run per grid point.
 *
 *   mlpipe run p.yaml                  every point, one after another
 *   mlpipe run p.yaml -j 4             every point, 4 worker processes
 *   mlpipe run p.yaml --sweep-index 3  only point 3 (a Kubernetes Indexed
 *                                      Job passes $JOB_COMPLETION_INDEX)
 *
 * Every point's run carries params sweep.id, sweep.index and sweep.points,
 * so `mlpipe runs list --where "sweep.id = '...'"` finds them.  The id is
 * $MLPIPE_SWEEP_ID when set (workers inherit it; an Indexed Job can set it
 * from the Job's name), else derived from the config and overrides for
 * --sweep-index (so independent pods agree), else unique per invocation.
 * Workers are separate processes (this binary re-executed with
 * --sweep-index), so a crash in one point cannot take the others down and
 * each has its own OpenBLAS threads and SQLite connection.
 */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <spawn.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rundb.h"

extern char **environ;

static void make_sweep_id(const mp_run_opts *o, const mp_spec *spec, bool unique, char id[16]) {
    const char *env = getenv("MLPIPE_SWEEP_ID");
    if (env && env[0]) {
        snprintf(id, 16, "%.15s", env);
        return;
    }
    /* Hash the config and overrides, plus time and pid when it must be unique. */
    size_t len = strlen(spec->text) + 64;
    for (size_t i = 0; i < o->n_sets; i++) len += strlen(o->sets[i]) + 1;
    char *buf = mp_malloc(len);
    char hex[65];
    if (!buf) {
        snprintf(id, 16, "%08lx", (unsigned long)time(NULL));
        return;
    }
    size_t n = (size_t)snprintf(buf, len, "%s", spec->text);
    for (size_t i = 0; i < o->n_sets; i++) n += (size_t)snprintf(buf + n, len - n, "\n%s", o->sets[i]);
    if (unique) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        n += (size_t)snprintf(buf + n, len - n, "\n%lld.%09ld/%ld", (long long)ts.tv_sec,
                              ts.tv_nsec, (long)getpid());
    }
    mp_sha256_hex(buf, n, hex);
    mp_free(buf);
    snprintf(id, 16, "%.12s", hex);
}

static void free_sets(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) mp_free(v[i]);
    mp_free(v);
}

/* Runs (or, with dry, only checks) one point in this process. */
static int run_point(const mp_run_opts *o, const mp_spec *spec, const char *id, size_t index,
                     bool dry, FILE *out, mp_err *err) {
    char **sets = NULL;
    size_t n = 0;
    if (mp_config_sweep_point(spec, index, &sets, &n, err) != MP_OK) return err->code;
    mp_run_opts p = *o;
    p.point_sets = sets;
    p.n_point_sets = n;
    p.sweep_id = id;
    p.point_index = index;
    p.n_points = spec->n_points;
    if (dry) {
        mp_spec *s2 = NULL;
        mp_stage *st = NULL;
        if (mp_exec_prepare(&p, &s2, &st, err) == MP_OK) {
            mp_stages_free(st, s2->n_stages);
            mp_spec_free(s2);
        }
    } else {
        long long run = 0;
        mp_exec_run(&p, out, &run, err);
    }
    free_sets(sets, n);
    return err->code;
}

/* Starts `argv[0] ... --sweep-index I` with MLPIPE_SWEEP_ID=id, stdout to /dev/null. */
static pid_t spawn_point(const mp_run_opts *o, size_t index, mp_err *err) {
    char idx[32];
    snprintf(idx, sizeof idx, "%zu", index);
    char **argv = mp_calloc((size_t)o->argc + 3, sizeof *argv);
    if (!argv) {
        MP_ERR(err, MP_E_NOMEM, "out of memory starting sweep point %zu", index);
        return -1;
    }
    /* Drop -j N from the worker's command line; add --sweep-index I. */
    size_t k = 0;
    for (int i = 0; i < o->argc; i++) {
        if (strcmp(o->argv[i], "-j") == 0 || strcmp(o->argv[i], "--jobs") == 0) {
            i++;
            continue;
        }
        argv[k++] = o->argv[i];
    }
    argv[k++] = "--sweep-index";
    argv[k++] = idx;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    mp_free(argv);
    if (rc != 0) {
        MP_ERR(err, MP_E_IO, "cannot start a worker for sweep point %zu: %s", index, strerror(rc));
        return -1;
    }
    return pid;
}

/* Runs every point in up to o->jobs worker processes.  Forwards SIGINT /
 * SIGTERM to the running workers (each stops at its next safe point and
 * records its run as killed) and waits for them. */
static int run_parallel(const mp_run_opts *o, const mp_spec *spec, mp_err *err) {
    pid_t *pids = mp_calloc((size_t)o->jobs, sizeof *pids);
    if (!pids) return MP_ERR(err, MP_E_NOMEM, "out of memory for %d workers", o->jobs);
    size_t next = 0, running = 0, failed = 0;
    int worst = 0;
    bool forwarded = false;
    for (;;) {
        for (int s = 0; s < o->jobs && next < spec->n_points && !mp_cancel_signal &&
                        err->code == MP_OK; s++) {
            if (pids[s]) continue;
            if ((pids[s] = spawn_point(o, next, err)) < 0) {
                pids[s] = 0;
                break;
            }
            next++;
            running++;
        }
        if (running == 0) break;
        int status;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) {
            if (errno != EINTR) break;
            if (mp_cancel_signal && !forwarded) {
                for (int s = 0; s < o->jobs; s++)
                    if (pids[s]) kill(pids[s], mp_cancel_signal);
                forwarded = true;
            }
            continue;
        }
        for (int s = 0; s < o->jobs; s++)
            if (pids[s] == pid) pids[s] = 0;
        running--;
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code != 0) {
            failed++;
            if (code > worst) worst = code;
        }
    }
    mp_free(pids);
    if (mp_cancel_signal) return MP_ERR(err, MP_E_CANCELLED, "sweep interrupted");
    if (err->code == MP_OK && failed)
        MP_ERR(err, worst == MP_EXIT_CONFIG ? MP_E_CONFIG : MP_E_DATA,
               "%zu of %zu sweep points failed (see the table and 'mlpipe runs list')", failed,
               spec->n_points);
    return err->code;
}

/* The metric that ranks points: the first of these a point recorded. */
static const struct { const char *key; bool lower_is_better; } rank_keys[] = {
    { "cv.accuracy", false }, { "test.accuracy", false }, { "test.r2", false },
    { "test.f1_macro", false }, { "test.mse", true }, { "test.log_loss", true },
    { "test.inertia", true }, { "train.loss", true },
};

/* Width of axis a's column: its key or its longest value. */
static int col_width(const mp_spec *spec, size_t a) {
    size_t w = strlen(spec->sweep[a].key);
    for (size_t j = 0; j < spec->sweep[a].n; j++)
        if (strlen(spec->sweep[a].values[j]) > w) w = strlen(spec->sweep[a].values[j]);
    return (int)w;
}

/* Prints one row per point (its latest run) with the best marked. */
static void print_table(const mp_run_opts *o, const mp_spec *spec, const char *id, FILE *out) {
    mp_rundb *db = NULL;
    mp_err e = { 0 };
    if (mp_rundb_open_existing(o->db_path, &db, &e) != MP_OK) {
        mp_err_print(&e);
        return;
    }
    sqlite3 *h = mp_rundb_sqlite(db);
    sqlite3_stmt *q = NULL, *m = NULL;
    sqlite3_prepare_v2(h,
                       "SELECT r.id, r.status FROM runs r "
                       "JOIN params a ON a.run = r.id AND a.key = 'sweep.id' AND a.value = ?1 "
                       "JOIN params b ON b.run = r.id AND b.key = 'sweep.index' AND b.value = ?2 "
                       "ORDER BY r.id DESC LIMIT 1", -1, &q, NULL);
    sqlite3_prepare_v2(h,
                       "SELECT value FROM metrics WHERE run = ?1 AND key = ?2 "
                       "ORDER BY step IS NOT NULL, step DESC LIMIT 1", -1, &m, NULL);
    size_t n = spec->n_points;
    long long *runs = mp_calloc(n, sizeof *runs);
    double *val = mp_calloc(n, sizeof *val);
    char (*status)[16] = mp_calloc(n, sizeof *status);
    if (!q || !m || !runs || !val || !status) goto done;
    /* which metric: the first rank key any point has */
    int rk = -1;
    for (size_t i = 0; i < n; i++) {
        char idx[32];
        snprintf(idx, sizeof idx, "%zu", i);
        sqlite3_bind_text(q, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(q, 2, idx, -1, SQLITE_TRANSIENT);
        if (sqlite3_step(q) == SQLITE_ROW) {
            runs[i] = sqlite3_column_int64(q, 0);
            snprintf(status[i], sizeof status[i], "%s", (const char *)sqlite3_column_text(q, 1));
        } else {
            snprintf(status[i], sizeof status[i], "not run");
        }
        sqlite3_reset(q);
    }
    for (size_t k = 0; rk < 0 && k < sizeof rank_keys / sizeof *rank_keys; k++)
        for (size_t i = 0; i < n && rk < 0; i++) {
            sqlite3_bind_int64(m, 1, runs[i]);
            sqlite3_bind_text(m, 2, rank_keys[k].key, -1, SQLITE_STATIC);
            if (runs[i] && sqlite3_step(m) == SQLITE_ROW) rk = (int)k;
            sqlite3_reset(m);
        }
    size_t best = n;
    for (size_t i = 0; i < n; i++) {
        val[i] = NAN;
        if (rk < 0 || !runs[i]) continue;
        sqlite3_bind_int64(m, 1, runs[i]);
        sqlite3_bind_text(m, 2, rank_keys[rk].key, -1, SQLITE_STATIC);
        if (sqlite3_step(m) == SQLITE_ROW && sqlite3_column_type(m, 0) != SQLITE_NULL)
            val[i] = sqlite3_column_double(m, 0);
        sqlite3_reset(m);
        if (isnan(val[i]) || strcmp(status[i], "finished") != 0) continue;
        if (best == n || (rank_keys[rk].lower_is_better ? val[i] < val[best] : val[i] > val[best]))
            best = i;
    }
    fprintf(out, "sweep %s: %zu points\n", id, n);
    fprintf(out, "  %-5s %-6s %-9s", "point", "run", "status");
    for (size_t a = 0; a < spec->n_sweep; a++) fprintf(out, " %-*s", col_width(spec, a), spec->sweep[a].key);
    fprintf(out, " %s\n", rk >= 0 ? rank_keys[rk].key : "metric");
    for (size_t i = 0; i < n; i++) {
        char **sets = NULL;
        size_t ns = 0;
        mp_err e2 = { 0 };
        if (mp_config_sweep_point(spec, i, &sets, &ns, &e2) != MP_OK) break;
        fprintf(out, "%s %-5zu %-6lld %-9s", i == best ? "*" : " ", i, runs[i], status[i]);
        for (size_t a = 0; a < ns; a++)
            fprintf(out, " %-*s", col_width(spec, a), strchr(sets[a], '=') + 1);
        if (isnan(val[i])) fprintf(out, " -\n");
        else fprintf(out, " %.6g\n", val[i]);
        free_sets(sets, ns);
    }
    if (best < n)
        fprintf(out, "best: point %zu (run %lld), %s = %.6g\n", best, runs[best],
                rank_keys[rk].key, val[best]);
done:
    sqlite3_finalize(q);
    sqlite3_finalize(m);
    mp_free(runs);
    mp_free(val);
    mp_free(status);
    mp_rundb_close(db);
}

int mp_run(const mp_run_opts *o, FILE *out, long long *run_id, mp_err *err) {
    *run_id = 0;
    if (!o->point_sets) {
        /* A pipeline with a `sweep:` runs once per grid point. */
        mp_spec *spec = NULL;
        if (mp_config_load(o->pipeline, &spec, err) != MP_OK) {
            if (err->code == MP_E_IO) err->code = MP_E_CONFIG;
            return err->code;
        }
        int rc = spec->n_points ? mp_sweep_run(o, spec, out, err) : -1;
        mp_spec_free(spec);
        if (rc != -1) return rc;
    }
    return mp_exec_run(o, out, run_id, err);
}

int mp_sweep_run(const mp_run_opts *o, const mp_spec *spec, FILE *out, mp_err *err) {
    char id[16];
    if (o->sweep_index >= 0) {
        make_sweep_id(o, spec, false, id);
        return run_point(o, spec, id, (size_t)o->sweep_index, false, out, err);
    }
    make_sweep_id(o, spec, true, id);
    /* Check every point first: a typo in the grid fails before anything runs. */
    for (size_t i = 0; i < spec->n_points; i++)
        if (run_point(o, spec, id, i, true, NULL, err) != MP_OK) return err->code;
    mp_log(MP_LOG_INFO, "sweep %s: %zu points, %d at a time", id, spec->n_points,
           o->jobs > 1 ? o->jobs : 1);
    if (o->jobs > 1) {
        setenv("MLPIPE_SWEEP_ID", id, 1);
        setenv("MLPIPE_PROGRESS", "lines", 0);  /* workers share stderr: no bars (unless 0) */
        run_parallel(o, spec, err);
    } else {
        size_t failed = 0;
        for (size_t i = 0; i < spec->n_points && !mp_cancel_signal; i++) {
            mp_err e = { 0 };
            if (run_point(o, spec, id, i, false, NULL, &e) != MP_OK) {
                mp_err_print(&e);
                failed++;
                if (e.code == MP_E_CANCELLED) *err = e;
            }
        }
        if (err->code == MP_OK && failed)
            MP_ERR(err, MP_E_DATA, "%zu of %zu sweep points failed", failed, spec->n_points);
    }
    if (out) print_table(o, spec, id, out);
    return err->code;
}
