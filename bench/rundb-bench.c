/*
 * rundb-bench.c -- the run database at scale (driven by bench/runs-db.sh).
 *
 *   rundb-bench gen DB RUNS ROWS   a database of RUNS finished runs with ROWS
 *                                  metric rows each (and 10 params), written in
 *                                  one transaction with prepared statements on
 *                                  the schema mp_rundb_open creates
 *   rundb-bench log DB ROWS BATCH  logs ROWS metric rows of a new run through
 *                                  mp_rundb_metrics, BATCH rows per call (the
 *                                  executor flushes up to 4096), and prints
 *                                  "rows wall_s cpu_s rows_per_s"
 *
 * Generated runs look like a sweep of an MLP on Fashion-MNIST and friends:
 * five pipelines, five learning rates, three optimizers; per run
 * ROWS - 6 history rows (train.loss and val.loss per epoch) and six final
 * figures, test.accuracy uniform in [0.5, 1) (so about a fifth exceed 0.9).
 * Values come from a fixed-seed generator: every database is the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sqlite3.h>

#include "mp.h"
#include "rundb.h"

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* xorshift64*: fixed seed, same database every time */
static unsigned long long rng_state = 0x9E3779B97F4A7C15ULL;

static double uniform(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) * (1.0 / 9007199254740992.0);
}

static void die_sql(sqlite3 *db, const char *what) {
    fprintf(stderr, "rundb-bench: %s: %s\n", what, sqlite3_errmsg(db));
    exit(1);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) die_sql(db, sql);
    return st;
}

static void step(sqlite3 *db, sqlite3_stmt *st) {
    if (sqlite3_step(st) != SQLITE_DONE) die_sql(db, "insert");
    sqlite3_reset(st);
}

static int gen(const char *path, long runs, long rows) {
    static const char *const pipelines[] = { "fmnist-mlp", "fmnist-logreg", "iris-logreg",
                                             "housing-linreg", "fmnist-svm" };
    static const char *const rates[] = { "0.1", "0.05", "0.01", "0.005", "0.001" };
    static const char *const optimizers[] = { "sgd", "momentum", "adam" };
    mp_err err = { 0 };
    mp_rundb *rdb;
    if (mp_rundb_open(path, &rdb, &err) != MP_OK) {
        fprintf(stderr, "rundb-bench: %s\n", err.msg);
        return 1;
    }
    sqlite3 *db = mp_rundb_sqlite(rdb);
    double t0 = wall();
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) die_sql(db, "begin");
    sqlite3_stmt *run = prep(db, "INSERT INTO runs (pipeline, status, started, ended, seconds,"
                             " seed, exit_code, host, pid, mlpipe_version, heartbeat)"
                             " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'bench', 1, '" MP_VERSION "', ?4)");
    sqlite3_stmt *par = prep(db, "INSERT INTO params (run, key, value) VALUES (?1, ?2, ?3)");
    sqlite3_stmt *met = prep(db, "INSERT INTO metrics (run, key, value, step, time)"
                             " VALUES (?1, ?2, ?3, ?4, ?5)");
    long epochs = (rows - 6) / 2;
    time_t base = time(NULL) - 30L * 86400;     /* runs over the last 30 days */
    for (long i = 0; i < runs; i++) {
        char started[32], ended[32];
        time_t t = base + (time_t)(i * (30L * 86400 / runs));
        double secs = 5 + 100 * uniform();
        time_t te = t + (time_t)secs;
        strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%S.000Z", gmtime(&t));
        strftime(ended, sizeof ended, "%Y-%m-%dT%H:%M:%S.000Z", gmtime(&te));
        bool failed = i % 50 == 49;
        sqlite3_bind_text(run, 1, pipelines[i % 5], -1, SQLITE_STATIC);
        sqlite3_bind_text(run, 2, failed ? "failed" : "finished", -1, SQLITE_STATIC);
        sqlite3_bind_text(run, 3, started, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(run, 4, ended, -1, SQLITE_TRANSIENT);
        sqlite3_bind_double(run, 5, secs);
        sqlite3_bind_int64(run, 6, i);
        sqlite3_bind_int(run, 7, failed);
        step(db, run);
        long long id = sqlite3_last_insert_rowid(db);

        char epochs_s[24], batch_s[24], seed_s[24];
        snprintf(epochs_s, sizeof epochs_s, "%ld", epochs);
        snprintf(batch_s, sizeof batch_s, "%d", 32 << (i % 3));
        snprintf(seed_s, sizeof seed_s, "%ld", i % 7);
        const char *params[][2] = {
            { "train.learning_rate", rates[(i / 5) % 5] }, { "train.epochs", epochs_s },
            { "train.batch_size", batch_s }, { "train.optimizer", optimizers[i % 3] },
            { "train.l2", "0.0001" }, { "train.module", "mlp" }, { "split.test_size", "0.2" },
            { "split.seed_offset", seed_s }, { "load.module", "idx" },
            { "evaluate.module", "classification" },
        };
        for (size_t k = 0; k < sizeof params / sizeof *params; k++) {
            sqlite3_bind_int64(par, 1, id);
            sqlite3_bind_text(par, 2, params[k][0], -1, SQLITE_STATIC);
            sqlite3_bind_text(par, 3, params[k][1], -1, SQLITE_STATIC);
            step(db, par);
        }

        double now = (double)t;
        sqlite3_bind_int64(met, 1, id);
        for (long e = 0; e < epochs; e++) {
            double loss = 2.3 / (1 + 0.2 * (double)e) + 0.02 * uniform();
            for (int k = 0; k < 2; k++) {
                sqlite3_bind_text(met, 2, k ? "val.loss" : "train.loss", -1, SQLITE_STATIC);
                sqlite3_bind_double(met, 3, loss * (k ? 1.1 : 1.0));
                sqlite3_bind_int64(met, 4, e);
                sqlite3_bind_double(met, 5, now + (double)e);
                step(db, met);
            }
        }
        double acc = 0.5 + 0.5 * uniform();
        const struct { const char *key; double v; } finals[] = {
            { "test.accuracy", acc }, { "test.f1_macro", acc - 0.01 },
            { "test.log_loss", 1.5 * (1 - acc) }, { "cv.accuracy", acc - 0.005 },
            { "data.rows", 70000 }, { "data.features", 784 },
        };
        for (size_t k = 0; k < sizeof finals / sizeof *finals && !failed; k++) {
            sqlite3_bind_text(met, 2, finals[k].key, -1, SQLITE_STATIC);
            sqlite3_bind_double(met, 3, finals[k].v);
            sqlite3_bind_null(met, 4);
            sqlite3_bind_double(met, 5, now + (double)epochs);
            step(db, met);
        }
    }
    sqlite3_finalize(run);
    sqlite3_finalize(par);
    sqlite3_finalize(met);
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) die_sql(db, "commit");
    double t1 = wall();
    /* fold the WAL into the file, so the query timings start from one file (no
     * ANALYZE: users' databases have no statistics either) */
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    mp_rundb_close(rdb);
    printf("%.3f\n", t1 - t0);
    return 0;
}

static int logrows(const char *path, long n, long batch) {
    mp_err err = { 0 };
    mp_rundb *db;
    if (mp_rundb_open(path, &db, &err) != MP_OK) {
        fprintf(stderr, "rundb-bench: %s\n", err.msg);
        return 1;
    }
    long long run;
    mp_run_info info = { .pipeline = "bench-log", .seed = 1 };
    if (mp_rundb_run_begin(db, &info, &run, &err) != MP_OK) {
        fprintf(stderr, "rundb-bench: %s\n", err.msg);
        return 1;
    }
    mp_metric_row *rows = calloc((size_t)batch, sizeof *rows);
    if (!rows) return 1;
    double w0 = wall(), c0 = cpu();
    long done = 0, stepno = 0;
    while (done < n) {
        long k = n - done < batch ? n - done : batch;
        /* a training loop's pattern: per step a loss and an accuracy */
        for (long i = 0; i < k; i++) {
            bool acc = i % 2;
            rows[i] = (mp_metric_row){ acc ? "train.accuracy" : "train.loss",
                                       acc ? 1 - 1.0 / (double)(stepno + 2) : 2.0 / (double)(stepno + 1),
                                       stepno, 0 };
            stepno += acc;
        }
        if (mp_rundb_metrics(db, run, rows, (size_t)k, &err) != MP_OK) {
            fprintf(stderr, "rundb-bench: %s\n", err.msg);
            return 1;
        }
        done += k;
    }
    double w = wall() - w0, c = cpu() - c0;
    mp_rundb_run_end(db, run, "finished", 0, NULL, NULL, &err);
    mp_rundb_close(db);
    free(rows);
    printf("%ld %.3f %.3f %.0f\n", done, w, c, (double)done / w);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "gen") == 0) return gen(argv[2], atol(argv[3]), atol(argv[4]));
    if (argc == 5 && strcmp(argv[1], "log") == 0)
        return logrows(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: rundb-bench gen DB RUNS ROWS | log DB ROWS BATCH\n");
    return 2;
}
