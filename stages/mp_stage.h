/*
 * mp_stage.h -- the stage ABI of mlpipe.
 *
 * Everything a stage module (built in, or a plugin .so) needs to know about the
 * runner is in this one header: the matrix and dataset types, the error struct,
 * the parameter table that the runner fills from YAML, the fitted-transform and
 * model interfaces, and the stage table itself.  A plugin builds against this
 * file alone and is linked at load time against the mp_* functions the mlpipe
 * binary exports (it is linked with -rdynamic).
 *
 * Data layout, stated once: mp_matrix is ROW-MAJOR float32, one row per
 * sample, one column per feature.  Element (i, j) is data[i * n_cols + j].
 *
 * Any change to a struct below bumps MP_STAGE_ABI; the plugin loader refuses a
 * module whose abi field differs.
 */
#ifndef MP_STAGE_H
#define MP_STAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MP_STAGE_ABI 1          /* bump on any change to the structs in this file */

/* ---------------------------------------------------------------- errors */

/* Error codes.  The values are part of the ABI: append only. */
enum {
    MP_OK = 0,
    MP_E_IO = 1,        /* a file could not be read or written */
    MP_E_PARSE = 2,     /* bad input data (CSV cell, model file) */
    MP_E_CONFIG = 3,    /* bad pipeline YAML or parameter: exit code 2 */
    MP_E_NOMEM = 4,     /* an allocation failed */
    MP_E_NUMERIC = 5,   /* NaN/Inf, singular matrix, divergence */
    MP_E_PLUGIN = 6,    /* a plugin could not be loaded */
    MP_E_DB = 7,        /* the run database failed */
    MP_E_CANCELLED = 8, /* SIGINT/SIGTERM arrived; the run stops */
    MP_E_USAGE = 9,     /* bad command line: exit code 2 */
    MP_E_DATA = 10      /* data unusable for the stage (one class, no rows) */
};

/* One error travels down every call that can fail.  First error wins: set it
 * once with MP_ERR, and let callers add context with mp_err_prefix(). */
typedef struct mp_err {
    int         code;       /* MP_OK or an MP_E_* code */
    char        msg[512];   /* "cannot open 'data/iris.csv': No such file or directory" */
    char        where[256]; /* user-facing place: "pipelines/iris.yaml:14:9", "iris.csv:37:2" */
    const char *src_file;   /* C source location of the MP_ERR call (shown with --verbose) */
    int         src_line;
} mp_err;

/* Sets *e (unless an error is already set) and returns code. */
int mp_err_set(mp_err *e, int code, const char *src_file, int src_line,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Sets e->where (printf-style); keeps an existing where. Returns e->code. */
int mp_err_where(mp_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "<context>: " to the message of an error already set. */
void mp_err_prefix(mp_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define MP_ERR(e, code, ...) mp_err_set((e), (code), __FILE__, __LINE__, __VA_ARGS__)

/* ---------------------------------------------------------------- memory */

/* All allocations of stages go through these, so tests can fail the Nth one.
 * mp_free(NULL) is a no-op.  Each returns NULL on failure (never aborts). */
void *mp_malloc(size_t n);
void *mp_calloc(size_t n, size_t size);      /* overflow-checked */
void *mp_realloc(void *p, size_t n);
void  mp_free(void *p);
char *mp_strdup(const char *s);
/* n * size, or SIZE_MAX if it overflows (so the allocation then fails). */
size_t mp_mul_size(size_t n, size_t size);

/* ---------------------------------------------------------------- logging */

enum { MP_LOG_ERROR = 0, MP_LOG_WARN = 1, MP_LOG_INFO = 2, MP_LOG_DEBUG = 3 };
extern int mp_log_level;                   /* messages above this level are dropped */
void mp_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Checks the level before the arguments are evaluated or formatted. */
#define mp_log(level, ...) \
    do { if ((level) <= mp_log_level) mp_log_write((level), __VA_ARGS__); } while (0)

/* ---------------------------------------------------------------- matrix */

/* Row-major float32 matrix; rows = samples, cols = features. Owns data. */
typedef struct mp_matrix {
    float  *data;       /* n_rows * n_cols floats, row-major; NULL when empty */
    size_t  n_rows;
    size_t  n_cols;
} mp_matrix;

/* Zeroed; large blocks are advised to use huge pages (fewer page faults). */
int  mp_matrix_init(mp_matrix *m, size_t n_rows, size_t n_cols, mp_err *err);
void mp_matrix_release(mp_matrix *m);                    /* frees data, leaves {0} */
#define MP_AT(m, i, j) ((m)->data[(size_t)(i) * (m)->n_cols + (size_t)(j)])

/* ---------------------------------------------------------------- dataset */

typedef enum mp_task {
    MP_TASK_NONE = 0,           /* no target (clustering input) */
    MP_TASK_CLASSIFICATION = 1, /* y holds class indices 0..n_classes-1 */
    MP_TASK_REGRESSION = 2,     /* y holds real values */
    MP_TASK_CLUSTERING = 3      /* models only: predictions are cluster indices */
} mp_task;

/* A table of samples.  X and y have n_rows = X.n_rows rows.
 * For classification, y[i] is an integer class index into class_names.
 * A numeric target column loads as MP_TASK_REGRESSION; a classifier turns it
 * into classes with mp_dataset_encode_labels().  Owns every pointer. */
typedef struct mp_dataset {
    mp_matrix X;                /* features, row-major */
    double   *y;                /* n_rows targets, or NULL when the data has none */
    mp_task   task;
    char    **feature_names;    /* X.n_cols names */
    char     *target_name;      /* NULL when no target */
    char    **class_names;      /* n_classes names, classification only */
    size_t    n_classes;
    size_t   *source_rows;      /* n_rows 1-based line numbers in the source, or NULL */
} mp_dataset;

mp_dataset *mp_dataset_new(void);                     /* empty; NULL on OOM */
/* n names: copies of src[i] when src is given, else "<prefix><i>" ("px0",
 * "px1" ...).  NULL on OOM.  Free with mp_names_free. */
char      **mp_names_new(const char *prefix, char *const *src, size_t n);
void        mp_names_free(char **v, size_t n);           /* NULL-safe */
void        mp_dataset_free(mp_dataset *ds);          /* NULL-safe */
/* A new dataset holding rows idx[0..n-1] of src (same names). */
mp_dataset *mp_dataset_subset(const mp_dataset *src, const size_t *idx, size_t n, mp_err *err);
/* Deep copy. */
mp_dataset *mp_dataset_copy(const mp_dataset *src, mp_err *err);
/* Regression target -> classes named by the distinct values ("%.17g", sorted).
 * No-op for classification data.  Error if there is no target. */
int mp_dataset_encode_labels(mp_dataset *ds, mp_err *err);
/* The same for a train/test pair (test NULL-able), over the values of both,
 * so one class index means the same class in both parts. */
int mp_dataset_encode_labels_pair(mp_dataset *train, mp_dataset *test, mp_err *err);

/* ---------------------------------------------------------------- rng */

/* xoshiro256** seeded through splitmix64; every random choice derives from the
 * pipeline seed so that runs repeat exactly. */
typedef struct mp_rng { uint64_t s[4]; } mp_rng;
void     mp_rng_seed(mp_rng *r, uint64_t seed);
uint64_t mp_rng_next(mp_rng *r);
double   mp_rng_uniform(mp_rng *r);                   /* [0, 1) */
double   mp_rng_normal(mp_rng *r);                    /* N(0, 1) */
size_t   mp_rng_below(mp_rng *r, size_t n);           /* [0, n), unbiased; n > 0 */
void     mp_rng_shuffle(mp_rng *r, size_t *v, size_t n);

/* ---------------------------------------------------------------- artifacts */

/* Model files are written through a key/value writer and read back through a
 * reader (runner/artifact.c).  Keys are dotted ("model.weights"); a stage
 * writes under the prefix it is given. */
typedef struct mp_art_writer mp_art_writer;
typedef struct mp_art_reader mp_art_reader;

/* buf := prefix + name, the key a stage's value goes under.  False, with err
 * set to code and "<module>: model key prefix '...' is too long", when it
 * does not fit in size bytes. */
bool mp_art_key(char *buf, size_t size, const char *module, const char *prefix, const char *name,
                int code, mp_err *err);
int mp_art_put_str(mp_art_writer *w, const char *key, const char *value);
int mp_art_put_strs(mp_art_writer *w, const char *key, char *const *v, size_t n);
int mp_art_put_int(mp_art_writer *w, const char *key, long long value);
int mp_art_put_double(mp_art_writer *w, const char *key, double value);
int mp_art_put_floats(mp_art_writer *w, const char *key, const float *v, size_t n);
int mp_art_put_doubles(mp_art_writer *w, const char *key, const double *v, size_t n);

/* Getters fail with MP_E_PARSE naming the file and key when the key is
 * missing, has the wrong type, or (for arrays) not exactly n values. */
int mp_art_get_str(mp_art_reader *r, const char *key, const char **out, mp_err *err); /* borrowed */
int mp_art_get_strs(mp_art_reader *r, const char *key, char ***out, size_t *n, mp_err *err); /* caller frees each + array */
int mp_art_get_int(mp_art_reader *r, const char *key, long long *out, mp_err *err);
int mp_art_get_double(mp_art_reader *r, const char *key, double *out, mp_err *err);
int mp_art_get_floats(mp_art_reader *r, const char *key, float *dst, size_t n, mp_err *err);
int mp_art_get_doubles(mp_art_reader *r, const char *key, double *dst, size_t n, mp_err *err);
bool mp_art_has(mp_art_reader *r, const char *key);

/* ---------------------------------------------------------------- parameters */

typedef enum mp_param_type {
    MP_P_INT = 1,       /* int */
    MP_P_DOUBLE = 2,    /* double */
    MP_P_BOOL = 3,      /* bool */
    MP_P_STRING = 4,    /* char *, owned by the runner */
    MP_P_ENUM = 5,      /* int: index into the '|'-separated choices */
    MP_P_INT_LIST = 6,  /* mp_int_list */
    MP_P_STR_LIST = 7   /* mp_str_list; each item checked against choices if set */
} mp_param_type;

typedef struct mp_int_list { int *v; size_t n; } mp_int_list;
typedef struct mp_str_list { char **v; size_t n; } mp_str_list;

enum {
    MP_PF_REQUIRED = 1 << 0,    /* no default: the YAML must give it */
    MP_PF_RANGE = 1 << 1,       /* min/max apply (numbers, and each int-list item) */
    MP_PF_MIN_OPEN = 1 << 2     /* the lower bound is exclusive (> min) */
};

/* One declared parameter.  The runner fills the stage's config struct at
 * `offset` from YAML, from `--set`, or from `def` (YAML text), and rejects
 * unknown keys, wrong types and out-of-range values with file:line:col. */
typedef struct mp_param {
    const char   *name;
    mp_param_type type;
    size_t        offset;       /* offsetof(conf struct, field) */
    const char   *def;          /* default as YAML text; NULL when required or empty */
    unsigned      flags;        /* MP_PF_* */
    double        min, max;     /* inclusive range when MP_PF_RANGE */
    const char   *choices;      /* "sgd|momentum|adam" for MP_P_ENUM / MP_P_STR_LIST */
    const char   *doc;          /* one line for `mlpipe stages` */
} mp_param;

/* ---------------------------------------------------------------- transforms */

/* A fitted feature transform (standardize, minmax, a plugin's log1p ...).
 * Fitted on the training rows only; applied in place to any matrix with the
 * same columns; saved inside the model file so predict sees raw rows. */
typedef struct mp_transform_ops {
    const char *name;   /* as in YAML: `transform: standardize` */
    /* Fits on X (not modified); *state is owned by the caller, freed with free_state. */
    int  (*fit)(const void *conf, const mp_matrix *X, void **state, mp_err *err);
    int  (*apply)(const void *state, mp_matrix *X, mp_err *err);   /* in place */
    int  (*save)(const void *state, mp_art_writer *w, const char *prefix, mp_err *err);
    int  (*load)(mp_art_reader *r, const char *prefix, size_t n_cols, void **state, mp_err *err);
    void (*free_state)(void *state);
} mp_transform_ops;

typedef struct mp_transform {
    const mp_transform_ops *ops;
    void *state;
} mp_transform;

/* ---------------------------------------------------------------- models */

typedef struct mp_model_ops mp_model_ops;

/* A trained model.  The runner owns it; ops->free_state frees state. */
typedef struct mp_model {
    const mp_model_ops *ops;
    void   *state;
    mp_task task;               /* what predictions mean */
    size_t  n_features;         /* input columns (after transforms) */
    size_t  n_outputs;          /* columns predict() writes: n_classes, or 1 */
    bool    has_proba;          /* classification outputs are probabilities */
} mp_model;

struct mp_model_ops {
    const char *name;   /* the train module's name; written into model files */
    /* Writes X.n_rows x model->n_outputs floats into out (already sized).
     * Classification: probabilities when has_proba, else decision scores
     * (the predicted class is the argmax).  Regression: the value.
     * Clustering: the cluster index. */
    int  (*predict)(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err);
    int  (*save)(const mp_model *m, mp_art_writer *w, const char *prefix, mp_err *err);
    /* Fills m->state (the other fields are already set from the file). */
    int  (*load)(mp_model *m, mp_art_reader *r, const char *prefix, mp_err *err);
    void (*free_state)(void *state);
};

/* ---------------------------------------------------------------- context */

/* What travels through the stages of one run.  The runner owns every pointer;
 * a stage that replaces one frees the old one through the runner's helpers. */
typedef struct mp_ctx {
    mp_dataset   *train;        /* after load: all rows (or the train split) */
    mp_dataset   *test;         /* after split, or from a loader that gives one */
    mp_transform *transforms;   /* fitted transforms, in pipeline order */
    size_t        n_transforms;
    mp_model     *model;        /* after train */
    const char   *train_module; /* name of the train stage that made model */
    uint64_t      seed;         /* pipeline seed */
    int           stage_index;  /* 0-based index of the running stage */
    const char   *pipeline;     /* pipeline name */
    const char   *run_id;       /* run id, for artifact names and logs */
    void         *host;         /* runner-private (metric sink, run DB) */
} mp_ctx;

/* A seeded generator for the running stage: the pipeline seed mixed with the
 * stage index and `stream`, so stages do not share random sequences. */
void mp_ctx_rng(const mp_ctx *ctx, uint64_t stream, mp_rng *out);
/* Records a metric (buffered, written in batched transactions).  step < 0
 * means a final figure; per-epoch history uses step = epoch. */
int  mp_ctx_metric(mp_ctx *ctx, const char *key, double value, long step, mp_err *err);
/* Records a file the stage wrote: path, sha256 and size go to the run DB. */
int  mp_ctx_artifact(mp_ctx *ctx, const char *name, const char *path, mp_err *err);
/* True once SIGINT/SIGTERM arrived: stop at the next safe point with
 * MP_ERR(err, MP_E_CANCELLED, ...). */
bool mp_ctx_cancelled(const mp_ctx *ctx);
/* Reports how far the stage is: done of total units (unit is borrowed for
 * the call: "epoch", "rows"; "bytes" show as KiB/MiB), e.g. done = epochs
 * finished + the fraction of this epoch's mini-batches, total = epochs.
 * total <= 0 means unknown (no percentage or ETA); done going back (a new
 * fold or restart) restarts the rate.  The runner shows it as a bar on a
 * terminal, elsewhere as a log line every few seconds, not at all with
 * --quiet or outside a pipeline run.  Cheap enough to call per mini-batch (a
 * clock read when nothing is due); call it from the stage's own thread only.
 * Never fails.  A plugin that calls it needs an mlpipe binary that has it
 * (an older one refuses the plugin, naming the missing symbol). */
void mp_ctx_progress(const mp_ctx *ctx, const char *unit, double done, double total);

/* Called once per cross-validation fold (1-based) with the model trained on
 * the other folds and the held-out rows, transformed by transforms fitted on
 * the other folds only.  Both are borrowed for the call. */
typedef int (*mp_cv_fn)(void *ud, int fold, const mp_model *model, const mp_dataset *held_out,
                        mp_err *err);
/* K-fold cross-validation of the pipeline's transform and train stages on
 * the training rows (before any transform), seeded from the pipeline seed;
 * stratified by class when asked and the data has classes.  Metrics the
 * folds' training would record are not written.  MP_E_DATA when the
 * pipeline has no train stage or K exceeds the rows (or a class's rows). */
int mp_ctx_cross_validate(mp_ctx *ctx, int k, bool stratified, mp_cv_fn fn, void *ud, mp_err *err);

/* The figures of one metric over the folds, for an evaluator's mp_cv_fn:
 * mp_cv_stat_add records a fold's value v as cv.<name> at step = fold and
 * adds it up; after mp_ctx_cross_validate, mp_cv_stat_record records
 * cv.<name> (the mean over the folds that gave a value) and cv.<name>.std
 * (the population standard deviation, as numpy's std()) and logs them --
 * nothing when no fold gave a value.  Start from a zeroed mp_cv_stat. */
typedef struct mp_cv_stat {
    double sum, sumsq;
    int    count;
} mp_cv_stat;
int mp_cv_stat_add(mp_ctx *ctx, mp_cv_stat *s, const char *name, double v, int fold,
                   mp_err *err);
int mp_cv_stat_record(mp_ctx *ctx, const mp_cv_stat *s, const char *name, mp_err *err);

/* ---------------------------------------------------------------- stages */

typedef enum mp_stage_kind {
    MP_KIND_LOAD = 0,
    MP_KIND_SPLIT = 1,
    MP_KIND_TRANSFORM = 2,
    MP_KIND_TRAIN = 3,
    MP_KIND_EVALUATE = 4,
    MP_KIND_EXPORT = 5,
    MP_KIND_COUNT
} mp_stage_kind;

typedef struct mp_stage_ops mp_stage_ops;

/* One configured stage of a pipeline. */
typedef struct mp_stage {
    const mp_stage_ops *ops;
    void       *conf;           /* ops->conf_size bytes, filled from the param table */
    void       *priv;           /* the stage's own state between open and close */
    const char *name;           /* `name:` from YAML, or the kind name */
    const char *where;          /* "file.yaml:LINE:COL" of the stage, for messages */
} mp_stage;

struct mp_stage_ops {
    int              abi;       /* MP_STAGE_ABI when the stage was built */
    const char      *name;      /* the module name in YAML: `train: logistic_regression` */
    mp_stage_kind    kind;
    const char      *doc;       /* one line for `mlpipe stages` */
    const mp_param  *params;    /* ends with { 0 } */
    size_t           conf_size; /* bytes of the config struct */
    /* Optional: cross-parameter checks after the table is filled (exit 2). */
    int  (*check)(const void *conf, mp_err *err);
    /* Runs the stage on ctx.  Must not exit() or print to stdout. */
    int  (*run)(mp_stage *st, mp_ctx *ctx, mp_err *err);
    void (*close)(mp_stage *st);                     /* optional */
    const mp_transform_ops *transform;   /* transform stages: what they fit */
    const mp_model_ops     *model;       /* train stages: what they produce */
    mp_task          task;      /* train stages: the task their model solves */
};

/* A plugin exports this symbol: a NULL-terminated array of stage tables. */
typedef const mp_stage_ops *const *(*mp_plugin_entry_fn)(void);
#define MP_PLUGIN_ENTRY "mp_plugin_stages"

/* Helpers for stages (implemented by the runner, callable from plugins). */
/* The whole run() of a transform stage: fits st->ops->transform on
 * ctx->train, applies it to ctx->train and ctx->test, and appends it to
 * ctx->transforms.  Transform stages (plugins too) use it as their run. */
int  mp_transform_stage_run(mp_stage *st, mp_ctx *ctx, mp_err *err);
/* Applies ctx->transforms' fitted states in order: used by evaluate. */
int  mp_transform_chain_apply(const mp_transform *t, size_t n, mp_matrix *X, mp_err *err);
/* Predicted class / value per row: out gets n_rows floats. */
int  mp_model_predict(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err);
void mp_model_free(mp_model *m);                     /* NULL-safe; frees state and m */

#ifdef __cplusplus
}
#endif
#endif /* MP_STAGE_H */
