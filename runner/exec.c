/*
 * exec.c -- the executor: runs the stages of one pipeline in order through
 * one mp_ctx and records everything in the run database.
 *
 * Order of events, so that nothing is lost whatever happens:
 *   1. config, --set, plugins and stage resolution: any error here is a
 *      config error (exit 2) and no run row is written;
 *   2. the run row is inserted as `running`, with its flattened params;
 *   3. each stage runs; its metrics are buffered and written in batched
 *      transactions (at least every second and at the end of each stage);
 *      its timing and status go to the `stages` table;
 *   4. the run ends `finished`, `failed` (error + failing stage) or `killed`
 *      (SIGINT/SIGTERM seen at a safe point).
 */
#include "exec.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "progress.h"
#include "registry.h"
#include "rundb.h"

/* ---------------------------------------------------------------- metric sink */

#define FLUSH_ROWS 4096         /* write a batch at least this often ... */
#define FLUSH_SECONDS 1.0       /* ... or after this long */

typedef struct sink {
    mp_rundb      *db;
    long long      run;
    mp_metric_row *rows;        /* buffered rows; keys owned */
    size_t         n, cap;
    double         last_flush;  /* mp_now() of the last write */
    json_t        *finals;      /* final figures (step < 0) for the summary */
} sink;

static double unix_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int sink_flush(sink *s, mp_err *err) {
    if (s->n == 0) return MP_OK;
    int rc = mp_rundb_metrics(s->db, s->run, s->rows, s->n, err);
    for (size_t i = 0; i < s->n; i++) mp_free((char *)s->rows[i].key);
    s->n = 0;
    s->last_flush = mp_now();
    return rc;
}

static int sink_metric(void *ud, const char *key, double value, long step, mp_err *err) {
    sink *s = ud;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        mp_metric_row *r = mp_realloc(s->rows, mp_mul_size(cap, sizeof *r));
        if (!r) return MP_ERR(err, MP_E_NOMEM, "out of memory buffering metrics");
        s->rows = r;
        s->cap = cap;
    }
    char *k = mp_strdup(key);
    if (!k) return MP_ERR(err, MP_E_NOMEM, "out of memory buffering metrics");
    s->rows[s->n++] = (mp_metric_row){ .key = k, .value = value, .step = step, .time = unix_now() };
    if (step < 0 && s->finals) json_object_set_new(s->finals, key, isfinite(value) ? json_real(value) : json_null());
    if (s->n >= FLUSH_ROWS || mp_now() - s->last_flush >= FLUSH_SECONDS) return sink_flush(s, err);
    return MP_OK;
}

static int sink_artifact(void *ud, const char *name, const char *path, mp_err *err) {
    sink *s = ud;
    char sha[65];
    long long bytes = 0;
    if (mp_sha256_file(path, sha, &bytes, err) != MP_OK) return err->code;
    return mp_rundb_artifact(s->db, s->run, name, path, sha, bytes, err);
}

static void sink_release(sink *s) {
    for (size_t i = 0; i < s->n; i++) mp_free((char *)s->rows[i].key);
    mp_free(s->rows);
    json_decref(s->finals);
    memset(s, 0, sizeof *s);
}

/* ---------------------------------------------------------------- prepare */

int mp_exec_prepare(const mp_run_opts *o, mp_spec **spec_out, mp_stage **stages_out, mp_err *err) {
    mp_spec *spec = NULL;
    mp_stage *stages = NULL;
    if (mp_config_load(o->pipeline, &spec, err) != MP_OK) {
        /* An unreadable pipeline file is a usage error: exit 2, nothing ran. */
        if (err->code == MP_E_IO) err->code = MP_E_CONFIG;
        return err->code;
    }
    for (size_t i = 0; i < o->n_sets; i++)
        if (mp_config_set(spec, o->sets[i], err) != MP_OK) goto fail;
    for (size_t i = 0; i < o->n_point_sets; i++)
        if (mp_config_set(spec, o->point_sets[i], err) != MP_OK) goto fail;
    for (size_t i = 0; i < o->n_plugins; i++)
        if (mp_registry_load_plugin(o->plugins[i], err) != MP_OK) goto fail;
    for (size_t i = 0; i < spec->n_plugins; i++)
        if (mp_registry_load_plugin(spec->plugins[i], err) != MP_OK) goto fail;
    if (mp_config_resolve(spec, &stages, err) != MP_OK) goto fail;
    *spec_out = spec;
    *stages_out = stages;
    return MP_OK;
fail:
    /* An error in a sweep value points at the sweep axis in the file, not at
     * the "--set KEY=VALUE" the sweep driver applied. */
    for (size_t i = 0; i < o->n_point_sets && i < spec->n_sweep; i++)
        if (strncmp(err->where, "--set ", 6) == 0 && strcmp(err->where + 6, o->point_sets[i]) == 0)
            snprintf(err->where, sizeof err->where, "%s:%d:%d", o->pipeline, spec->sweep[i].line,
                     spec->sweep[i].col);
    mp_spec_free(spec);
    return err->code;
}

/* ---------------------------------------------------------------- run */

static int run_one(const mp_run_opts *o, FILE *out, long long *run_id, mp_err *err);

static void ctx_release(mp_ctx *ctx) {
    mp_dataset_free(ctx->train);
    mp_dataset_free(ctx->test);
    for (size_t i = 0; i < ctx->n_transforms; i++)
        if (ctx->transforms[i].ops->free_state)
            ctx->transforms[i].ops->free_state(ctx->transforms[i].state);
    mp_free(ctx->transforms);
    mp_model_free(ctx->model);
    memset(ctx, 0, sizeof *ctx);
}

/* True if a classifier trains later in the pipeline: then numeric targets
 * become classes right after loading, before any split, so train and test
 * share one class list. */
static bool classifier_follows(const mp_stage *st, size_t n, size_t from) {
    for (size_t i = from; i < n; i++)
        if (st[i].ops->kind == MP_KIND_TRAIN && st[i].ops->task == MP_TASK_CLASSIFICATION)
            return true;
    return false;
}

/* True if some evaluate stage asks for k-fold cross-validation (k >= 2):
 * then the training rows are copied before the first transform runs. */
static bool wants_cv(char *const *keys, char *const *vals, size_t n) {
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(keys[i]);
        if (len > 9 && strcmp(keys[i] + len - 9, ".cv_folds") == 0 && atoi(vals[i]) >= 2)
            return true;
    }
    return false;
}

static const char *status_of(int code) {
    return code == MP_OK ? "finished" : code == MP_E_CANCELLED ? "killed" : "failed";
}

/* "where: msg" for the database. */
static void err_text(const mp_err *e, char *buf, size_t size) {
    if (e->where[0]) snprintf(buf, size, "%s: %s", e->where, e->msg);
    else snprintf(buf, size, "%s", e->msg);
}

/* Adds the sweep.* rows to the flattened params of a sweep point. */
static int add_sweep_params(const mp_run_opts *o, char ***keys, char ***vals, size_t *n,
                            mp_err *err) {
    char idx[32], pts[32];
    snprintf(idx, sizeof idx, "%zu", o->point_index);
    snprintf(pts, sizeof pts, "%zu", o->n_points);
    const char *k[] = { "sweep.id", "sweep.index", "sweep.points" };
    const char *v[] = { o->sweep_id, idx, pts };
    char **nk = mp_realloc(*keys, (*n + 3) * sizeof *nk);
    if (!nk) return MP_ERR(err, MP_E_NOMEM, "out of memory for sweep params");
    *keys = nk;
    char **nv = mp_realloc(*vals, (*n + 3) * sizeof *nv);
    if (!nv) return MP_ERR(err, MP_E_NOMEM, "out of memory for sweep params");
    *vals = nv;
    for (int i = 0; i < 3; i++) {
        nk[*n] = mp_strdup(k[i]);
        nv[*n] = mp_strdup(v[i]);
        (*n)++;
        if (!nk[*n - 1] || !nv[*n - 1]) return MP_ERR(err, MP_E_NOMEM, "out of memory for sweep params");
    }
    return MP_OK;
}

int mp_exec_run(const mp_run_opts *o, FILE *out, long long *run_id, mp_err *err) {
    return run_one(o, out, run_id, err);
}

static int run_one(const mp_run_opts *o, FILE *out, long long *run_id, mp_err *err) {
    mp_spec *spec = NULL;
    mp_stage *st = NULL;
    mp_rundb *db = NULL;
    char **keys = NULL, **vals = NULL;
    size_t n_params = 0;
    sink sk = { 0 };
    mp_ctx ctx = { 0 };
    long long run = 0;
    mp_rundb_beat *beat = NULL;
    *run_id = 0;

    if (mp_exec_prepare(o, &spec, &st, err) != MP_OK) return err->code;
    if (mp_config_params(spec, st, &keys, &vals, &n_params, err) != MP_OK) goto out;
    if (o->sweep_id && add_sweep_params(o, &keys, &vals, &n_params, err) != MP_OK) goto out;
    if (mp_rundb_open(o->db_path, &db, err) != MP_OK) goto out;

    char sha[65];
    mp_sha256_hex(spec->text, strlen(spec->text), sha);
    mp_run_info info = { .pipeline = spec->name, .config = spec->text, .config_sha256 = sha,
                         .seed = spec->seed };
    if (mp_rundb_run_begin(db, &info, &run, err) != MP_OK) goto out;
    *run_id = run;
    /* A stage can run for minutes without a metric; the heartbeat thread keeps
     * the run from looking lost meanwhile. */
    mp_err be = { 0 };
    if (mp_rundb_beat_start(o->db_path, run, MP_RUNDB_BEAT_SECONDS, &beat, &be) != MP_OK)
        mp_log(MP_LOG_WARN, "run %lld: no heartbeat thread: %s", run, be.msg);
    char run_str[32];
    snprintf(run_str, sizeof run_str, "%lld", run);
    mp_log_set_context(run_str, NULL);
    mp_log(MP_LOG_INFO, "run %lld: pipeline '%s' (%zu stages), database '%s'", run, spec->name,
           spec->n_stages, o->db_path);

    /* From here on every failure is recorded on the run row. */
    mp_err rec = { 0 };
    const char *failed_stage = NULL;
    char failed_buf[128];
    if (mp_rundb_params(db, run, keys, vals, n_params, err) != MP_OK) goto record;
    sk = (sink){ .db = db, .run = run, .last_flush = mp_now(), .finals = json_object() };
    mp_host host = { .metric = sink_metric, .artifact = sink_artifact, .ud = &sk };
    bool cv = wants_cv(keys, vals, n_params);
    mp_dataset *raw_train = NULL;
    if (cv) {
        host.stages = st;
        host.n_stages = spec->n_stages;
    }
    ctx.seed = spec->seed;
    ctx.pipeline = spec->name;
    ctx.run_id = run_str;
    ctx.host = &host;
    double t_run = mp_now();

    for (size_t i = 0; i < spec->n_stages; i++) {
        mp_stage *s = &st[i];
        const char *kind = mp_kind_name(s->ops->kind);
        mp_log_set_context(run_str, s->name);
        ctx.stage_index = (int)i;
        double t0 = mp_now();
        int rc = MP_OK;
        if (cv && !raw_train && ctx.train &&
            (s->ops->kind == MP_KIND_TRANSFORM || s->ops->kind == MP_KIND_TRAIN)) {
            if (!(raw_train = mp_dataset_copy(ctx.train, err))) rc = err->code;
            host.raw_train = raw_train;
        }
        if (rc == MP_OK && mp_cancel_signal)
            rc = MP_ERR(err, MP_E_CANCELLED, "interrupted before stage %zu", i + 1);
        mp_progress_begin(s->name);     /* mp_ctx_progress shows from here ... */
        if (rc == MP_OK) rc = s->ops->run(s, &ctx, err);
        mp_progress_end();              /* ... to here: the bar goes before the next line */
        if (rc == MP_OK && s->ops->kind == MP_KIND_LOAD && ctx.train &&
            classifier_follows(st, spec->n_stages, i + 1))
            rc = mp_dataset_encode_labels_pair(ctx.train, ctx.test, err);
        if (rc == MP_OK && s->ops->kind == MP_KIND_TRAIN) ctx.train_module = s->ops->name;
        double secs = mp_now() - t0;
        char etext[1024] = "";
        if (rc != MP_OK) {
            if (rc != MP_E_CANCELLED && err->where[0] == '\0') mp_err_where(err, "%s", s->where);
            err_text(err, etext, sizeof etext);
        }
        mp_err e2 = { 0 };
        int frc = sink_flush(&sk, &e2);
        if (frc == MP_OK)
            frc = mp_rundb_stage(db, run, (int)i, kind, s->ops->name, status_of(rc), secs,
                                 rc != MP_OK ? etext : NULL, &e2);
        if (rc == MP_OK && frc != MP_OK) {
            *err = e2;
            rc = frc;
        }
        mp_log(rc == MP_OK ? MP_LOG_DEBUG : MP_LOG_INFO, "stage %zu %s: %s %s in %.3fs", i + 1,
               kind, s->ops->name, status_of(rc), secs);
        if (rc != MP_OK) {
            snprintf(failed_buf, sizeof failed_buf, "%zu %s: %s", i + 1, kind, s->ops->name);
            failed_stage = failed_buf;
            if (rc != MP_E_CANCELLED) {
                /* The place (file:line:col) leads; which stage it was follows. */
                size_t len = strlen(err->msg);
                snprintf(err->msg + len, sizeof err->msg - len, " (stage %zu, %s: %s)", i + 1,
                         kind, s->ops->name);
            }
            break;
        }
    }
    mp_log_set_context(run_str, NULL);
    mp_log(MP_LOG_INFO, "run %lld %s in %.3fs", run, status_of(err->code), mp_now() - t_run);
    mp_dataset_free(raw_train);

record:;
    mp_rundb_beat_stop(beat);
    beat = NULL;
    char etext[1024] = "";
    if (err->code != MP_OK) err_text(err, etext, sizeof etext);
    int code = mp_exit_code(err);
    if (mp_rundb_run_end(db, run, status_of(err->code), code, err->code ? etext : NULL,
                         failed_stage, &rec) != MP_OK) {
        if (err->code == MP_OK) *err = rec;
        else mp_err_print(&rec);
    }
    if (out) {
        json_t *sum = json_object();
        json_object_set_new(sum, "run", json_integer(run));
        json_object_set_new(sum, "pipeline", json_string(spec->name));
        json_object_set_new(sum, "status", json_string(status_of(err->code)));
        json_object_set_new(sum, "metrics", sk.finals ? json_incref(sk.finals) : json_object());
        char *text = json_dumps(sum, JSON_INDENT(2) | JSON_REAL_PRECISION(10));
        if (text) {
            fprintf(out, "%s\n", text);
            free(text);
        }
        json_decref(sum);
    }
out:
    mp_rundb_beat_stop(beat);
    mp_log_set_context(NULL, NULL);
    ctx_release(&ctx);
    sink_release(&sk);
    mp_params_free(keys, vals, n_params);
    mp_rundb_close(db);
    if (st) mp_stages_free(st, spec->n_stages);
    mp_spec_free(spec);
    return err->code;
}
