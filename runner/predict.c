/*
 * predict.c -- `mlpipe predict MODEL INPUT [-o OUT]`: batch prediction.
 *
 * Reads raw rows the way the model's CSV was read (columns matched by name,
 * any order, extra columns such as the target ignored), applies the model
 * file's fitted transforms and model, and writes one prediction per row:
 * the class name for classifiers, the value for regressors.
 */
#include "predict.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "artifact.h"
#include "csv.h"

/* Writes s as one CSV field, quoted when it holds a delimiter, quote or newline. */
static void put_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int mp_predict_main(const mp_predict_opts *o, mp_err *err) {
    mp_model_file *mf = NULL;
    mp_dataset *ds = NULL;
    mp_matrix scores = { 0 };
    FILE *out = NULL;
    char tmp[4096] = "";

    if (mp_model_load(o->model_path, &mf, err) != MP_OK) return err->code;
    mp_csv_opts co;
    mp_csv_opts_init(&co);
    co.delimiter = o->delimiter ? o->delimiter : ',';
    co.columns = mf->feature_names;
    co.n_columns = mf->n_features;
    co.ignore_extra = true;
    if (mp_csv_read(o->input_path, &co, &ds, err) != MP_OK) goto done;
    if (mp_model_file_scores(mf, &ds->X, &scores, err) != MP_OK) goto done;

    /* Write to a temporary file and rename, so OUT is complete or untouched. */
    bool to_stdout = !o->output_path || strcmp(o->output_path, "-") == 0;
    if (to_stdout) {
        out = stdout;
    } else {
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", o->output_path, (long)getpid());
        if (!(out = fopen(tmp, "w"))) {
            MP_ERR(err, MP_E_IO, "cannot write '%s': %s", tmp, strerror(errno));
            tmp[0] = '\0';
            goto done;
        }
    }
    const mp_model *m = mf->model;
    bool classes = m->task == MP_TASK_CLASSIFICATION && mf->n_classes > 0;
    fputs("prediction", out);
    if (o->proba && classes && m->has_proba)
        for (size_t c = 0; c < mf->n_classes; c++) {
            fputc(',', out);
            char head[512];
            snprintf(head, sizeof head, "p_%s", mf->class_names[c]);
            put_field(out, head);
        }
    fputc('\n', out);
    for (size_t i = 0; i < scores.n_rows; i++) {
        const float *r = scores.data + i * scores.n_cols;
        if (classes) {
            size_t best = 0;
            for (size_t j = 1; j < scores.n_cols; j++)
                if (r[j] > r[best]) best = j;
            put_field(out, best < mf->n_classes ? mf->class_names[best] : "?");
            if (o->proba && m->has_proba)
                for (size_t j = 0; j < scores.n_cols; j++) fprintf(out, ",%.9g", r[j]);
        } else {
            fprintf(out, "%.9g", r[0]);
        }
        fputc('\n', out);
    }
    if (fflush(out) != 0 || ferror(out)) {
        MP_ERR(err, MP_E_IO, "cannot write predictions: %s", strerror(errno));
        goto done;
    }
    if (!to_stdout) {
        int rc = fclose(out);
        out = NULL;
        if (rc != 0 || rename(tmp, o->output_path) != 0) {
            MP_ERR(err, MP_E_IO, "cannot write '%s': %s", o->output_path, strerror(errno));
            goto done;
        }
        tmp[0] = '\0';
    }
    mp_log(MP_LOG_INFO, "predict: %zu rows%s%s", scores.n_rows, to_stdout ? "" : " -> ",
           to_stdout ? "" : o->output_path);
done:
    if (out && out != stdout) fclose(out);
    if (tmp[0]) unlink(tmp);
    mp_matrix_release(&scores);
    mp_dataset_free(ds);
    mp_model_file_free(mf);
    return err->code;
}
