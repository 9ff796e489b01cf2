/*
 * load_csv.c -- `load: csv`: read a delimited text file into ctx->train.
 *
 * A thin stage over runner/csv.c (mp_csv_read), which does the parsing and
 * names file, line and column in every error.  This file maps the YAML
 * parameters onto mp_csv_opts, checks the ones that can be checked before any
 * data is read (so `mlpipe validate` catches them with exit code 2), and
 * reports what was loaded.  The path is used as given, i.e. relative to the
 * current directory; ${VAR} in the YAML covers other locations.
 */
#include "mp_stage.h"
#include "csv.h"

#include <stdio.h>
#include <string.h>

typedef struct csv_conf {
    char        *path;          /* file to read; "-" = stdin */
    char        *target;        /* label column, or NULL for none (clustering) */
    char        *delimiter;     /* one character or a word; see mp_csv_parse_delimiter */
    mp_str_list  columns;       /* features in this order; empty = all but target/exclude */
    mp_str_list  exclude;       /* columns to leave out */
    int          missing;       /* index into "error|drop" = MP_MISSING_* */
} csv_conf;

_Static_assert(MP_MISSING_ERROR == 0 && MP_MISSING_DROP == 1, "missing choices are error|drop");

static bool in_list(const mp_str_list *l, const char *s) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->v[i], s) == 0) return true;
    return false;
}

/* What can be told wrong without reading the file (MP_E_CONFIG, exit 2). */
static int csv_check(const void *conf, mp_err *err) {
    const csv_conf *c = conf;
    char d;
    if (c->delimiter && !mp_csv_parse_delimiter(c->delimiter, &d))
        return MP_ERR(err, MP_E_CONFIG,
                      "invalid delimiter '%s' (use one character, or tab, semicolon, comma, "
                      "pipe, space)", c->delimiter);
    if (c->target && in_list(&c->columns, c->target))
        return MP_ERR(err, MP_E_CONFIG, "target column '%s' is also listed in columns",
                      c->target);
    if (c->target && in_list(&c->exclude, c->target))
        return MP_ERR(err, MP_E_CONFIG, "target column '%s' is also listed in exclude",
                      c->target);
    for (size_t i = 0; i < c->columns.n; i++)
        if (in_list(&c->exclude, c->columns.v[i]))
            return MP_ERR(err, MP_E_CONFIG, "column '%s' is listed in both columns and exclude",
                          c->columns.v[i]);
    return MP_OK;
}

/* " (3 classes: a, b, c)", " (numeric target 'y')" or " (no target)". */
static void describe_target(const mp_dataset *ds, char *out, size_t cap) {
    if (ds->task == MP_TASK_NONE) {
        snprintf(out, cap, " (no target)");
        return;
    }
    if (ds->task != MP_TASK_CLASSIFICATION) {
        snprintf(out, cap, " (numeric target '%s')", ds->target_name);
        return;
    }
    size_t k = (size_t)snprintf(out, cap, " (%zu class%s: ", ds->n_classes,
                                ds->n_classes == 1 ? "" : "es");
    for (size_t i = 0; i < ds->n_classes && k < cap; i++) {
        if (k + strlen(ds->class_names[i]) + 8 > cap) {   /* room for ", ...)" */
            k += (size_t)snprintf(out + k, cap - k, "%s...", i ? ", " : "");
            break;
        }
        k += (size_t)snprintf(out + k, cap - k, "%s%s", i ? ", " : "", ds->class_names[i]);
    }
    if (k < cap) snprintf(out + k, cap - k, ")");
}

static int csv_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const csv_conf *c = st->conf;
    if (csv_check(c, err) != MP_OK) return err->code;  /* also when no runner checked */
    mp_csv_opts o;
    mp_csv_opts_init(&o);
    if (c->delimiter) mp_csv_parse_delimiter(c->delimiter, &o.delimiter);
    o.target = c->target;
    if (c->columns.n) {         /* an empty list means "not given" */
        o.columns = c->columns.v;
        o.n_columns = c->columns.n;
    }
    o.exclude = c->exclude.v;
    o.n_exclude = c->exclude.n;
    o.missing = c->missing;

    mp_dataset *ds = NULL;
    if (mp_csv_read(c->path, &o, &ds, err) != MP_OK) return err->code;
    if (mp_ctx_metric(ctx, "data.rows", (double)ds->X.n_rows, -1, err) != MP_OK ||
        mp_ctx_metric(ctx, "data.features", (double)ds->X.n_cols, -1, err) != MP_OK) {
        mp_dataset_free(ds);
        return err->code;
    }
    /* A second load replaces whatever an earlier one left. */
    mp_dataset_free(ctx->train);
    mp_dataset_free(ctx->test);
    ctx->train = ds;
    ctx->test = NULL;

    char what[400];
    describe_target(ds, what, sizeof what);
    mp_log(MP_LOG_INFO, "load_csv: read %zu rows x %zu features from '%s'%s", ds->X.n_rows,
           ds->X.n_cols, c->path, what);
    return MP_OK;
}

static const mp_param csv_params[] = {
    { "path", MP_P_STRING, offsetof(csv_conf, path), NULL, MP_PF_REQUIRED, 0, 0, NULL,
      "CSV file to read, relative to the current directory (\"-\" = stdin)" },
    { "target", MP_P_STRING, offsetof(csv_conf, target), NULL, 0, 0, 0, NULL,
      "label column; numbers -> regression, text -> classes; omit for no target" },
    { "delimiter", MP_P_STRING, offsetof(csv_conf, delimiter), ",", 0, 0, 0, NULL,
      "one character, or tab, semicolon, comma, pipe, space" },
    { "columns", MP_P_STR_LIST, offsetof(csv_conf, columns), NULL, 0, 0, 0, NULL,
      "feature columns in this order (default: all but target and exclude)" },
    { "exclude", MP_P_STR_LIST, offsetof(csv_conf, exclude), NULL, 0, 0, 0, NULL,
      "columns to leave out (ids, leaks)" },
    { "missing", MP_P_ENUM, offsetof(csv_conf, missing), "error", 0, 0, 0, "error|drop",
      "missing cells (empty, NA, NaN, ?): fail, or drop the row" },
    { 0 }
};

const mp_stage_ops mp_stage_load_csv = {
    .abi = MP_STAGE_ABI, .name = "csv", .kind = MP_KIND_LOAD,
    .doc = "read a CSV/TSV file with a header row; features must be numbers",
    .params = csv_params, .conf_size = sizeof(csv_conf), .check = csv_check, .run = csv_run,
};
