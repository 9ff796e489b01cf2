/*
 * mp.h -- shared declarations of the runner (engine) modules.
 *
 * The stage ABI (matrix, dataset, error, parameter and model types) lives in
 * stages/mp_stage.h; this header adds what only the runner uses: version,
 * exit codes, the cancellation flag and small utilities.
 */
#ifndef MP_H
#define MP_H

#include "../stages/mp_stage.h"
#include <stdio.h>

#define MP_VERSION "0.1.0"

/* Process exit codes (README "Exit codes").  Kubernetes Jobs key off them. */
enum {
    MP_EXIT_OK = 0,         /* success */
    MP_EXIT_FAILED = 1,     /* a stage failed; the run is recorded as failed */
    MP_EXIT_CONFIG = 2,     /* usage or config error; nothing ran */
    MP_EXIT_SIGINT = 130,   /* interrupted by SIGINT; run recorded as killed */
    MP_EXIT_SIGTERM = 143   /* terminated by SIGTERM; run recorded as killed */
};

/* Set by the signal handler (runner/main.c) to the signal number. */
extern volatile int mp_cancel_signal;

/* Maps an error code to the process exit code. */
int mp_exit_code(const mp_err *err);

/* Prints "mlpipe: error: WHERE: MSG" to stderr (and the C location with
 * --verbose, i.e. when mp_log_level >= MP_LOG_DEBUG). */
void mp_err_print(const mp_err *err);

/* Fault injection for tests: the nth allocation from now fails (0 = never). */
void mp_mem_fail_after(long n);

/* SHA-256 of a buffer or file, as 64 lowercase hex digits + NUL. */
void mp_sha256_hex(const void *p, size_t n, char out[65]);
int  mp_sha256_file(const char *path, char out[65], long long *bytes, mp_err *err);

/* Reads a whole file into a NUL-terminated buffer the caller frees (mp_free). */
int mp_read_file(const char *path, char **out, size_t *len, mp_err *err);

/* Strict number parsing of a whole string (surrounding blanks allowed). */
bool mp_parse_double(const char *s, double *out);
bool mp_parse_long(const char *s, long long *out);

/* Wall clock in seconds (monotonic) and as an ISO 8601 UTC string. */
double mp_now(void);
void   mp_iso_time(char out[32]);

/* Log output: text (default) or JSON lines; the run id and stage name appear
 * in every record while a run is executing. */
enum { MP_LOG_TEXT = 0, MP_LOG_JSON = 1 };
void mp_log_set_format(int fmt);
void mp_log_set_context(const char *run_id, const char *stage);
typedef void (*mp_log_sink)(int level, const char *msg, void *userdata);
void mp_log_set_sink(mp_log_sink fn, void *userdata);   /* NULL restores stderr */
/* fn runs before each line written to stderr (NULL: nothing), e.g. to erase
 * a progress bar first. */
void mp_log_set_before_line(void (*fn)(void));
/* True when log lines go to stderr as text (no sink, not JSON): then a
 * progress bar can share the terminal with them. */
bool mp_log_is_text_stderr(void);
/* A named value added to a JSON log record: str when not NULL, else num
 * (NaN and infinities as null).  Text records show only the message. */
typedef struct mp_log_field {
    const char *key;
    const char *str;
    double      num;
} mp_log_field;
/* mp_log_write with fields; the caller checks the level. */
void mp_log_write_fields(int level, const mp_log_field *fields, size_t n_fields,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* What ctx->host points to: the run's services.  exec.c fills one per run;
 * tests fill their own to capture metrics.  With ctx->host == NULL metrics
 * and artifacts are only logged at debug level. */
typedef struct mp_host {
    int  (*metric)(void *ud, const char *key, double value, long step, mp_err *err);
    int  (*artifact)(void *ud, const char *name, const char *path, mp_err *err);
    void *ud;
    /* For cross-validation (runner/cv.c): the pipeline's stages and a copy of
     * the training rows as they were before any transform.  NULL when the
     * pipeline does not cross-validate. */
    mp_stage         *stages;
    size_t            n_stages;
    const mp_dataset *raw_train;
} mp_host;

#endif /* MP_H */
