/*
 * log.c -- leveled logging to stderr, as text or JSON lines.
 *
 * stdout is for results; every log line goes to stderr (or to a sink a test
 * installs).  The mp_log() macro checks the level before formatting, so debug
 * logging in a hot loop costs one comparison.  While a run executes, the run
 * id and stage name are attached to each record so log collectors can index
 * JSON lines by them.  Whatever else draws on the terminal (the progress bar
 * of runner/progress.c) registers a hook that clears it before each line.
 */
#include "mp.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <sys/time.h>

int mp_log_level = MP_LOG_INFO;

static int log_format = MP_LOG_TEXT;
static void (*before_line)(void);      /* mp_log_set_before_line */

void mp_log_set_before_line(void (*fn)(void)) { before_line = fn; }
static char ctx_run[32];
static char ctx_stage[64];
static mp_log_sink sink_fn;
static void *sink_data;

static const char *const level_names[] = { "error", "warn", "info", "debug" };
_Static_assert(sizeof level_names / sizeof *level_names == MP_LOG_DEBUG + 1, "level_names");

void mp_log_set_format(int fmt) { log_format = fmt; }

void mp_log_set_context(const char *run_id, const char *stage) {
    snprintf(ctx_run, sizeof ctx_run, "%s", run_id ? run_id : "");
    snprintf(ctx_stage, sizeof ctx_stage, "%s", stage ? stage : "");
}

void mp_log_set_sink(mp_log_sink fn, void *userdata) {
    sink_fn = fn;
    sink_data = userdata;
}

bool mp_log_is_text_stderr(void) { return !sink_fn && log_format == MP_LOG_TEXT; }

static void write_record(int level, const mp_log_field *fields, size_t n_fields,
                         const char *fmt, va_list ap) {
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (level < 0) level = 0;
    if (level > MP_LOG_DEBUG) level = MP_LOG_DEBUG;
    if (sink_fn) {
        sink_fn(level, msg, sink_data);
        return;
    }
    /* A progress bar drawn on the terminal goes first (runner/progress.c
     * redraws it at its next update), so the line starts on a clean line. */
    if (before_line) before_line();
    if (log_format == MP_LOG_JSON) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        char ts[48];
        snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (int)(tv.tv_usec / 1000));
        json_t *o = json_object();
        if (o) {
            json_object_set_new(o, "time", json_string(ts));
            json_object_set_new(o, "level", json_string(level_names[level]));
            if (ctx_run[0]) json_object_set_new(o, "run", json_string(ctx_run));
            if (ctx_stage[0]) json_object_set_new(o, "stage", json_string(ctx_stage));
            json_object_set_new(o, "msg", json_string(msg));
            for (size_t i = 0; i < n_fields; i++) {
                const mp_log_field *f = &fields[i];
                json_object_set_new(o, f->key, f->str ? json_string(f->str)
                                               : isfinite(f->num) ? json_real(f->num)
                                               : json_null());
            }
            char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(10));
            if (s) {
                fprintf(stderr, "%s\n", s);
                free(s);
            }
            json_decref(o);
        }
        return;
    }
    if (level <= MP_LOG_WARN)
        fprintf(stderr, "mlpipe: %s: %s\n", level_names[level], msg);
    else
        fprintf(stderr, "mlpipe: %s\n", msg);
}

void mp_log_write(int level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    write_record(level, NULL, 0, fmt, ap);
    va_end(ap);
}

void mp_log_write_fields(int level, const mp_log_field *fields, size_t n_fields,
                         const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    write_record(level, fields, n_fields, fmt, ap);
    va_end(ap);
}
