/*
 * dataset.c -- the matrix and dataset types every stage shares.
 *
 * mp_matrix is row-major float32 (rows = samples) so algorithms hand whole
 * blocks to OpenBLAS.  mp_dataset adds the target vector, column and class
 * names, and the source line of each row so errors found late (in predict)
 * can still name the row of the input file.
 */
#include "mp.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A fresh matrix costs one page fault per 4 KiB on first write (46,000 for
 * 60,000 x 784 floats), which can take longer than the work itself.  Asking
 * for transparent huge pages cuts that about tenfold where the kernel allows
 * it (THP in "madvise" mode, the usual default); elsewhere it is a no-op.
 * Only the whole pages inside the block are advised. */
static void advise_huge(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0 || bytes < ((size_t)4 << 20)) return;
    uintptr_t mask = (uintptr_t)pg - 1;
    uintptr_t lo = ((uintptr_t)p + mask) & ~mask, hi = ((uintptr_t)p + bytes) & ~mask;
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)bytes;
#endif
}

int mp_matrix_init(mp_matrix *m, size_t n_rows, size_t n_cols, mp_err *err) {
    size_t n = mp_mul_size(n_rows, n_cols);
    float *d = mp_calloc(n ? n : 1, sizeof *d);
    if (!d)
        return MP_ERR(err, MP_E_NOMEM, "out of memory for a %zu x %zu matrix", n_rows, n_cols);
    advise_huge(d, n * sizeof *d);
    m->data = d;
    m->n_rows = n_rows;
    m->n_cols = n_cols;
    return MP_OK;
}

void mp_matrix_release(mp_matrix *m) {
    if (!m) return;
    mp_free(m->data);
    m->data = NULL;
    m->n_rows = m->n_cols = 0;
}

mp_dataset *mp_dataset_new(void) {
    return mp_calloc(1, sizeof(mp_dataset));
}

void mp_names_free(char **v, size_t n) {
    if (!v) return;
    for (size_t i = 0; i < n; i++) mp_free(v[i]);
    mp_free(v);
}

char **mp_names_new(const char *prefix, char *const *src, size_t n) {
    char **v = mp_calloc(n ? n : 1, sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        char buf[64];
        if (!src) snprintf(buf, sizeof buf, "%s%zu", prefix, i);
        if (!(v[i] = mp_strdup(src ? src[i] : buf))) {
            mp_names_free(v, i);
            return NULL;
        }
    }
    return v;
}

void mp_dataset_free(mp_dataset *ds) {
    if (!ds) return;
    mp_names_free(ds->feature_names, ds->X.n_cols);
    mp_names_free(ds->class_names, ds->n_classes);
    mp_free(ds->target_name);
    mp_free(ds->y);
    mp_free(ds->source_rows);
    mp_matrix_release(&ds->X);
    mp_free(ds);
}

/* Copies names, task and classes of src into an empty dst. */
static int copy_meta(mp_dataset *dst, const mp_dataset *src) {
    dst->task = src->task;
    if (src->feature_names && !(dst->feature_names = mp_names_new(NULL, src->feature_names, src->X.n_cols)))
        return MP_E_NOMEM;
    if (src->target_name && !(dst->target_name = mp_strdup(src->target_name))) return MP_E_NOMEM;
    if (src->class_names) {
        if (!(dst->class_names = mp_names_new(NULL, src->class_names, src->n_classes))) return MP_E_NOMEM;
        dst->n_classes = src->n_classes;
    }
    return MP_OK;
}

mp_dataset *mp_dataset_subset(const mp_dataset *src, const size_t *idx, size_t n, mp_err *err) {
    mp_dataset *d = mp_dataset_new();
    if (!d) goto nomem;
    size_t nc = src->X.n_cols;
    if (mp_matrix_init(&d->X, n, nc, err) != MP_OK) goto fail;
    if (copy_meta(d, src) != MP_OK) goto nomem;
    if (src->y && !(d->y = mp_malloc(mp_mul_size(n ? n : 1, sizeof *d->y)))) goto nomem;
    if (src->source_rows && !(d->source_rows = mp_malloc(mp_mul_size(n ? n : 1, sizeof(size_t)))))
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        size_t r = idx[i];
        memcpy(d->X.data + i * nc, src->X.data + r * nc, nc * sizeof(float));
        if (d->y) d->y[i] = src->y[r];
        if (d->source_rows) d->source_rows[i] = src->source_rows[r];
    }
    return d;
nomem:
    MP_ERR(err, MP_E_NOMEM, "out of memory copying %zu rows", n);
fail:
    mp_dataset_free(d);
    return NULL;
}

mp_dataset *mp_dataset_copy(const mp_dataset *src, mp_err *err) {
    size_t n = src->X.n_rows;
    size_t *idx = mp_malloc(mp_mul_size(n ? n : 1, sizeof *idx));
    if (!idx) {
        MP_ERR(err, MP_E_NOMEM, "out of memory copying %zu rows", n);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    mp_dataset *d = mp_dataset_subset(src, idx, n, err);
    mp_free(idx);
    return d;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Builds sorted distinct values of a's and b's targets into *out. */
static size_t distinct_targets(const mp_dataset *a, const mp_dataset *b, double **out) {
    size_t na = a->X.n_rows, nb = b ? b->X.n_rows : 0, n = na + nb;
    double *u = mp_malloc(mp_mul_size(n ? n : 1, sizeof *u));
    if (!u) return SIZE_MAX;
    memcpy(u, a->y, na * sizeof *u);
    if (nb) memcpy(u + na, b->y, nb * sizeof *u);
    qsort(u, n, sizeof *u, cmp_double);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (k == 0 || u[i] != u[k - 1]) u[k++] = u[i];
    *out = u;
    return k;
}

/* The class name of a numeric label: the shortest form that reads back the same. */
static char *label_name(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%g", v);
    if (strtod(buf, NULL) != v) snprintf(buf, sizeof buf, "%.17g", v);
    return mp_strdup(buf);
}

static int encode_with(mp_dataset *ds, const double *u, size_t k, mp_err *err) {
    char **names = mp_calloc(k ? k : 1, sizeof *names);
    if (!names) return MP_ERR(err, MP_E_NOMEM, "out of memory encoding labels");
    for (size_t i = 0; i < k; i++) {
        if (!(names[i] = label_name(u[i]))) {
            mp_names_free(names, i);
            return MP_ERR(err, MP_E_NOMEM, "out of memory encoding labels");
        }
    }
    for (size_t i = 0; i < ds->X.n_rows; i++) {
        double *hit = bsearch(&ds->y[i], u, k, sizeof *u, cmp_double);
        ds->y[i] = (double)(hit - u);
    }
    ds->class_names = names;
    ds->n_classes = k;
    ds->task = MP_TASK_CLASSIFICATION;
    return MP_OK;
}

int mp_dataset_encode_labels_pair(mp_dataset *train, mp_dataset *test, mp_err *err) {
    if (test && test->task != train->task)
        return MP_ERR(err, MP_E_DATA, "train and test targets differ in kind");
    if (train->task == MP_TASK_CLASSIFICATION) return MP_OK;
    if (!train->y || (test && !test->y))
        return MP_ERR(err, MP_E_DATA, "the data has no target column to classify");
    double *u = NULL;
    size_t k = distinct_targets(train, test, &u);
    if (k == SIZE_MAX) return MP_ERR(err, MP_E_NOMEM, "out of memory encoding labels");
    int rc = encode_with(train, u, k, err);
    if (rc == MP_OK && test) rc = encode_with(test, u, k, err);
    mp_free(u);
    return rc;
}

int mp_dataset_encode_labels(mp_dataset *ds, mp_err *err) {
    return mp_dataset_encode_labels_pair(ds, NULL, err);
}

void mp_model_free(mp_model *m) {
    if (!m) return;
    if (m->ops && m->ops->free_state) m->ops->free_state(m->state);
    mp_free(m);
}

int mp_transform_chain_apply(const mp_transform *t, size_t n, mp_matrix *X, mp_err *err) {
    for (size_t i = 0; i < n; i++)
        if (t[i].ops->apply(t[i].state, X, err) != MP_OK) return err->code;
    return MP_OK;
}

int mp_model_predict(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err) {
    if (X->n_cols != m->n_features)
        return MP_ERR(err, MP_E_DATA, "model expects %zu features, got %zu", m->n_features,
                      X->n_cols);
    mp_matrix raw = { 0 };
    if (mp_matrix_init(&raw, X->n_rows, m->n_outputs, err) != MP_OK) return err->code;
    if (m->ops->predict(m, X, &raw, err) != MP_OK) {
        mp_matrix_release(&raw);
        return err->code;
    }
    if (mp_matrix_init(out, X->n_rows, 1, err) != MP_OK) {
        mp_matrix_release(&raw);
        return err->code;
    }
    for (size_t i = 0; i < X->n_rows; i++) {
        const float *r = raw.data + i * raw.n_cols;
        if (m->task == MP_TASK_CLASSIFICATION && raw.n_cols > 1) {
            size_t best = 0;
            for (size_t j = 1; j < raw.n_cols; j++)
                if (r[j] > r[best]) best = j;
            out->data[i] = (float)best;
        } else if (m->task == MP_TASK_CLASSIFICATION) {
            out->data[i] = r[0] > 0.0f ? 1.0f : 0.0f; /* a single binary score */
        } else {
            out->data[i] = r[0];
        }
    }
    mp_matrix_release(&raw);
    return MP_OK;
}
