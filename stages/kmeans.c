/*
 * kmeans.c -- `train: kmeans`: Lloyd's algorithm with k-means++ seeding,
 * following scikit-learn's KMeans(algorithm="lloyd") step for step so the
 * figures compare one to one:
 *
 *   - seeding: greedy k-means++ (2 + ln k candidates per center, keep the one
 *     that lowers the potential most) or k distinct random rows;
 *   - each iteration assigns every row to its nearest center and moves each
 *     center to the mean of its rows; a cluster left empty is re-seeded with
 *     the row farthest from its own center (taken from its old cluster);
 *   - stop when no label changed, or when the centers moved (sum of squared
 *     shifts) by at most tol * mean feature variance; then one more
 *     assignment so labels and centers agree;
 *   - n_init runs from different seeds; the lowest final inertia wins.
 *
 * Distances go through BLAS: ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2, the
 * cross term one cblas_sgemm per block of rows (blocks of ~256 KiB stay in
 * cache while their rows are summed into the new centers with cblas_saxpy).
 * Rows are split across threads (one per core OpenBLAS would use), each with
 * its own accumulators, reduced in a fixed order so a seed repeats exactly.
 *
 * The model is the k x d float centers; predict writes the nearest center's
 * index as a float.
 */
#include "mp_stage.h"
#include "par.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MODULE "kmeans"
#define MAX_THREADS MP_PAR_MAX_THREADS   /* per-thread slots: mp_par_rows never uses more */

enum { INIT_KMEANSPP = 0, INIT_RANDOM = 1 };
#define INIT_CHOICES "kmeans++|random"

typedef struct kmeans_conf {
    int    k;           /* >= 1 clusters */
    int    init;        /* INIT_* */
    int    n_init;      /* >= 1 seeded runs; the best is kept */
    int    max_iter;    /* >= 1 Lloyd iterations per run */
    double tol;         /* >= 0, relative to the mean feature variance */
} kmeans_conf;

/* The fitted model, one allocation: centers (k x d) then their norms (k). */
typedef struct kmeans_state {
    size_t k, d;
    float *cnorm;       /* k squared norms ||c||^2, points into data */
    float  data[];      /* k * d centers (row-major), then k norms */
} kmeans_state;

/* ---------------------------------------------------------------- model */

static kmeans_state *state_new(size_t k, size_t d) {
    size_t floats = mp_mul_size(k, d + 1);
    size_t bytes = mp_mul_size(floats, sizeof(float));
    if (bytes > SIZE_MAX - sizeof(kmeans_state)) return NULL;
    kmeans_state *s = mp_calloc(1, sizeof *s + bytes);
    if (!s) return NULL;
    s->k = k;
    s->d = d;
    s->cnorm = s->data + k * d;
    return s;
}

static void kmeans_free_state(void *state) { mp_free(state); }

static void center_norms(const float *C, size_t k, size_t d, float *cnorm) {
    for (size_t c = 0; c < k; c++)
        cnorm[c] = cblas_sdot((blasint)d, C + c * d, 1, C + c * d, 1);
}

/* Rows per block: ~256 KiB of features, so a block stays in cache from its
 * distance product to the center sums. */
static size_t block_rows(size_t d) {
    size_t b = ((size_t)1 << 16) / (d ? d : 1);
    return b < 16 ? 16 : b > 4096 ? 4096 : b;
}

/* Nearest center of each of the m rows of Xb (m x d): labels[i], and when
 * mind is non-NULL the squared distance to it, ||x||^2 (xnorm) - 2 x.c +
 * ||c||^2 clamped at 0.  D is m x k scratch.  Ties go to the lower index. */
static void assign_block(const float *Xb, size_t m, size_t d, const float *C,
                         const float *cnorm, size_t k, const float *xnorm, float *D, int *labels,
                         float *mind) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)k, (blasint)d,
                -2.0f, Xb, (blasint)d, C, (blasint)d, 0.0f, D, (blasint)k);
    for (size_t i = 0; i < m; i++) {
        const float *row = D + i * k;
        size_t best = 0;
        float bv = row[0] + cnorm[0];
        for (size_t c = 1; c < k; c++) {
            float v = row[c] + cnorm[c];
            if (v < bv) {
                bv = v;
                best = c;
            }
        }
        labels[i] = (int)best;
        if (mind) mind[i] = xnorm[i] + bv > 0.0f ? xnorm[i] + bv : 0.0f;
    }
}

static int kmeans_predict(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err) {
    const kmeans_state *s = m->state;
    if (X->n_cols != s->d)
        return MP_ERR(err, MP_E_DATA, MODULE ": model expects %zu features, got %zu", s->d,
                      X->n_cols);
    if (out->n_rows != X->n_rows || out->n_cols != 1)
        return MP_ERR(err, MP_E_DATA, MODULE ": output must be %zu x 1, got %zu x %zu",
                      X->n_rows, out->n_rows, out->n_cols);
    size_t block = block_rows(s->d);
    float *D = mp_malloc(mp_mul_size(mp_mul_size(block, s->k), sizeof *D));
    int *lab = mp_malloc(mp_mul_size(block, sizeof *lab));
    if (!D || !lab) {
        mp_free(D);
        mp_free(lab);
        return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory predicting");
    }
    for (size_t r0 = 0; r0 < X->n_rows; r0 += block) {
        size_t rows = X->n_rows - r0 < block ? X->n_rows - r0 : block;
        assign_block(X->data + r0 * s->d, rows, s->d, s->data, s->cnorm, s->k, NULL, D, lab,
                     NULL);
        for (size_t i = 0; i < rows; i++) out->data[r0 + i] = (float)lab[i];
    }
    mp_free(D);
    mp_free(lab);
    return MP_OK;
}

static int kmeans_save(const mp_model *m, mp_art_writer *w, const char *prefix, mp_err *err) {
    const kmeans_state *s = m->state;
    char k1[256], k2[256];
    if (!mp_art_key(k1, sizeof k1, MODULE, prefix, "k", MP_E_IO, err) ||
        !mp_art_key(k2, sizeof k2, MODULE, prefix, "centers", MP_E_IO, err))
        return err->code;
    if (mp_art_put_int(w, k1, (long long)s->k) != MP_OK ||
        mp_art_put_floats(w, k2, s->data, s->k * s->d) != MP_OK)
        return MP_ERR(err, MP_E_IO, MODULE ": cannot write the model under '%s'", prefix);
    return MP_OK;
}

static int kmeans_load(mp_model *m, mp_art_reader *r, const char *prefix, mp_err *err) {
    char k1[256], k2[256];
    if (!mp_art_key(k1, sizeof k1, MODULE, prefix, "k", MP_E_PARSE, err) ||
        !mp_art_key(k2, sizeof k2, MODULE, prefix, "centers", MP_E_PARSE, err))
        return err->code;
    long long k = 0;
    if (mp_art_get_int(r, k1, &k, err) != MP_OK) return err->code;
    if (m->n_outputs != 1 || m->n_features == 0 || k < 1 || k > INT_MAX)
        return MP_ERR(err, MP_E_PARSE,
                      MODULE ": bad model: k = %lld, %zu features, %zu outputs (expected 1)", k,
                      m->n_features, m->n_outputs);
    kmeans_state *s = state_new((size_t)k, m->n_features);
    if (!s) return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %lld centers", k);
    /* get_floats checks that the file holds exactly k * n_features values. */
    if (mp_art_get_floats(r, k2, s->data, s->k * s->d, err) != MP_OK) {
        mp_free(s);
        return err->code;
    }
    for (size_t i = 0; i < s->k * s->d; i++)
        if (!isfinite(s->data[i])) {
            mp_free(s);
            return MP_ERR(err, MP_E_PARSE, MODULE ": '%s' holds a non-finite value", k2);
        }
    center_norms(s->data, s->k, s->d, s->cnorm);
    m->state = s;
    return MP_OK;
}

static const mp_model_ops kmeans_model_ops = {
    .name = MODULE, .predict = kmeans_predict, .save = kmeans_save, .load = kmeans_load,
    .free_state = kmeans_free_state,
};

/* For `evaluate: clustering` (its inertia): the k x d centers of a k-means
 * model, borrowed from m, or NULL when m is not a k-means model. */
const float *mp_kmeans_centers(const mp_model *m, size_t *k) {
    if (!m || m->ops != &kmeans_model_ops || !m->state) return NULL;
    const kmeans_state *s = m->state;
    *k = s->k;
    return s->data;
}

/* ---------------------------------------------------------------- fitting */

/* Everything one fit needs; per-thread parts are indexed by thread. */
typedef struct fit {
    const mp_matrix *X;
    size_t n, d, k, block;
    int    nt;                      /* threads */
    float *xnorm;                   /* n: ||x_i||^2 */
    int   *labels;                  /* n: current assignment (-1 before the first) */
    float *mind;                    /* n: squared distance to the assigned center */
    float *C, *Cnew, *cnorm;        /* k x d, k x d, k */
    double *sum, *count;            /* k x d, k: reduced center sums */
    /* kmeans++ */
    size_t n_trials;                /* candidates per step */
    float *closest;                 /* n: squared distance to the nearest chosen center */
    float *dcand;                   /* n x n_trials: the same if each candidate were added */
    double *cum;                    /* n: running sum of closest */
    float *cand, *cand_norm;        /* n_trials x d, n_trials */
    size_t n_cand;                  /* candidates this step */
    /* per thread */
    float  *D[MAX_THREADS];         /* block x max(k, n_trials) */
    float  *fsum[MAX_THREADS];      /* k x d float sums of one block */
    double *tsum[MAX_THREADS];      /* k x d */
    double *tcount[MAX_THREADS];    /* k */
    unsigned char *touched[MAX_THREADS];  /* k: cluster met in this block */
    float  *ones[MAX_THREADS];      /* block ones */
    double  acc[MAX_THREADS];       /* inertia / norm sums */
    size_t  changed[MAX_THREADS];   /* labels that changed */
    double *pot[MAX_THREADS];       /* n_trials: candidate potentials; first pass: d column sums */
    bool    update;                 /* the pass accumulates center sums */
} fit;

/* First pass: row norms, and column sums for the mean feature variance. */
static void norms_rows(void *arg, int t, size_t lo, size_t hi) {
    fit *f = arg;
    size_t d = f->d;
    double *csum = f->pot[t], sq = 0.0;
    float *tmp = f->fsum[t];
    memset(csum, 0, d * sizeof *csum);
    for (size_t r0 = lo; r0 < hi; r0 += f->block) {
        size_t m = hi - r0 < f->block ? hi - r0 : f->block;
        const float *Xb = f->X->data + r0 * d;
        for (size_t i = 0; i < m; i++) {
            f->xnorm[r0 + i] = cblas_sdot((blasint)d, Xb + i * d, 1, Xb + i * d, 1);
            sq += f->xnorm[r0 + i];
        }
        cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)m, (blasint)d, 1.0f, Xb, (blasint)d,
                    f->ones[t], 1, 0.0f, tmp, 1);
        for (size_t j = 0; j < d; j++) csum[j] += tmp[j];
    }
    f->acc[t] = sq;
}

/* One Lloyd pass over [lo, hi): assign, count changes, add up inertia and,
 * when f->update, the per-cluster sums of the rows. */
static void lloyd_rows(void *arg, int t, size_t lo, size_t hi) {
    fit *f = arg;
    size_t d = f->d, k = f->k;
    int lab[4096];      /* one block's labels: block_rows() caps blocks at 4096 rows */
    double inertia = 0.0;
    size_t changed = 0;
    if (f->update) {
        memset(f->tsum[t], 0, k * d * sizeof(double));
        memset(f->tcount[t], 0, k * sizeof(double));
        memset(f->fsum[t], 0, k * d * sizeof(float));
    }
    for (size_t r0 = lo; r0 < hi; r0 += f->block) {
        size_t m = hi - r0 < f->block ? hi - r0 : f->block;
        const float *Xb = f->X->data + r0 * d;
        assign_block(Xb, m, d, f->C, f->cnorm, k, f->xnorm + r0, f->D[t], lab, f->mind + r0);
        for (size_t i = 0; i < m; i++) {
            changed += f->labels[r0 + i] != lab[i];
            f->labels[r0 + i] = lab[i];
            inertia += f->mind[r0 + i];
        }
        if (!f->update) continue;
        /* Sum the block's rows per cluster in float (cache-hot), then fold
         * the touched clusters into the double sums and clear them. */
        unsigned char *touched = f->touched[t];
        for (size_t i = 0; i < m; i++) {
            size_t c = (size_t)lab[i];
            cblas_saxpy((blasint)d, 1.0f, Xb + i * d, 1, f->fsum[t] + c * d, 1);
            f->tcount[t][c] += 1.0;
            touched[c] = 1;
        }
        for (size_t c = 0; c < k; c++) {
            if (!touched[c]) continue;
            float *fs = f->fsum[t] + c * d;
            double *ds = f->tsum[t] + c * d;
            for (size_t j = 0; j < d; j++) ds[j] += fs[j];
            memset(fs, 0, d * sizeof *fs);
            touched[c] = 0;
        }
    }
    f->acc[t] = inertia;
    f->changed[t] = changed;
}

/* kmeans++ step over [lo, hi): for each candidate, the squared distance of
 * each row to its nearest center if the candidate joined, and its total. */
static void cand_rows(void *arg, int t, size_t lo, size_t hi) {
    fit *f = arg;
    size_t d = f->d, nc = f->n_cand;
    double *pot = f->pot[t];
    for (size_t c = 0; c < nc; c++) pot[c] = 0.0;
    for (size_t r0 = lo; r0 < hi; r0 += f->block) {
        size_t m = hi - r0 < f->block ? hi - r0 : f->block;
        float *D = f->D[t];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)nc,
                    (blasint)d, -2.0f, f->X->data + r0 * d, (blasint)d, f->cand, (blasint)d,
                    0.0f, D, (blasint)nc);
        for (size_t i = 0; i < m; i++)
            for (size_t c = 0; c < nc; c++) {
                float v = D[i * nc + c] + f->xnorm[r0 + i] + f->cand_norm[c];
                v = v > 0.0f ? v : 0.0f;
                if (v > f->closest[r0 + i]) v = f->closest[r0 + i];
                f->dcand[(r0 + i) * nc + c] = v;
                pot[c] += v;
            }
    }
}

/* Exact inertia of the current labels, sum ||x - c||^2 in double. */
static void inertia_rows(void *arg, int t, size_t lo, size_t hi) {
    fit *f = arg;
    size_t d = f->d;
    double s = 0.0;
    for (size_t i = lo; i < hi; i++) {
        const float *x = f->X->data + i * d, *c = f->C + (size_t)f->labels[i] * d;
        for (size_t j = 0; j < d; j++) {
            double e = (double)x[j] - (double)c[j];
            s += e * e;
        }
    }
    f->acc[t] = s;
}

static double acc_total(const fit *f) {
    double s = 0.0;
    for (int t = 0; t < f->nt; t++) s += f->acc[t];
    return s;
}

/* Greedy k-means++ (scikit-learn's _kmeans_plusplus) into f->C. */
static int seed_kmeanspp(fit *f, mp_rng *rng, const mp_ctx *ctx, mp_err *err) {
    size_t n = f->n, d = f->d;
    size_t first = mp_rng_below(rng, n);
    memcpy(f->C, f->X->data + first * d, d * sizeof(float));
    /* closest = distances to the first center: a step with one candidate
     * against an "infinitely far" current set. */
    for (size_t i = 0; i < n; i++) f->closest[i] = INFINITY;
    memcpy(f->cand, f->C, d * sizeof(float));
    f->cand_norm[0] = f->xnorm[first];
    f->n_cand = 1;
    mp_par_rows(n, f->nt, cand_rows, f);
    double pot = 0.0;
    for (int t = 0; t < f->nt; t++) pot += f->pot[t][0];
    for (size_t i = 0; i < n; i++) f->closest[i] = f->dcand[i];

    for (size_t c = 1; c < f->k; c++) {
        if (mp_ctx_cancelled(ctx))
            return MP_ERR(err, MP_E_CANCELLED, MODULE ": interrupted while seeding");
        double run = 0.0;
        for (size_t i = 0; i < n; i++) f->cum[i] = run += f->closest[i];
        /* Candidates drawn with probability proportional to closest. */
        size_t ids[64];     /* n_trials <= 64 (kmeans_fit caps it) */
        for (size_t j = 0; j < f->n_trials; j++) {
            double v = mp_rng_uniform(rng) * pot;
            size_t lo = 0, hi = n;      /* first index with cum >= v */
            while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                if (f->cum[mid] < v) lo = mid + 1;
                else hi = mid;
            }
            ids[j] = lo < n ? lo : n - 1;
            memcpy(f->cand + j * d, f->X->data + ids[j] * d, d * sizeof(float));
            f->cand_norm[j] = f->xnorm[ids[j]];
        }
        f->n_cand = f->n_trials;
        mp_par_rows(n, f->nt, cand_rows, f);
        size_t best = 0;
        double best_pot = INFINITY;
        for (size_t j = 0; j < f->n_trials; j++) {
            double p = 0.0;
            for (int t = 0; t < f->nt; t++) p += f->pot[t][j];
            if (p < best_pot) {
                best_pot = p;
                best = j;
            }
        }
        pot = best_pot;
        for (size_t i = 0; i < n; i++) f->closest[i] = f->dcand[i * f->n_trials + best];
        memcpy(f->C + c * d, f->X->data + ids[best] * d, d * sizeof(float));
    }
    return MP_OK;
}

/* k distinct random rows (a partial Fisher-Yates shuffle of idx). */
static void seed_random(fit *f, mp_rng *rng, size_t *idx) {
    for (size_t i = 0; i < f->n; i++) idx[i] = i;
    for (size_t c = 0; c < f->k; c++) {
        size_t j = c + mp_rng_below(rng, f->n - c), tmp = idx[c];
        idx[c] = idx[j];
        idx[j] = tmp;
        memcpy(f->C + c * f->d, f->X->data + idx[c] * f->d, f->d * sizeof(float));
    }
}

/* Reduces the threads' sums, re-seeds empty clusters (counted in
 * *reseeded) and writes the new centers into Cnew.  Returns the total
 * squared center shift. */
static double update_centers(fit *f, size_t *reseeded) {
    size_t k = f->k, d = f->d;
    *reseeded = 0;
    memcpy(f->sum, f->tsum[0], k * d * sizeof(double));
    memcpy(f->count, f->tcount[0], k * sizeof(double));
    for (int t = 1; t < f->nt; t++) {
        cblas_daxpy((blasint)(k * d), 1.0, f->tsum[t], 1, f->sum, 1);
        cblas_daxpy((blasint)k, 1.0, f->tcount[t], 1, f->count, 1);
    }
    /* An empty cluster takes the row farthest from its own center, each
     * empty one a different row (scikit-learn's _relocate_empty_clusters). */
    for (size_t c = 0; c < k; c++) {
        if (f->count[c] > 0.0) continue;
        size_t far = 0;
        float fd = -1.0f;
        for (size_t i = 0; i < f->n; i++)
            if (f->mind[i] > fd) {
                fd = f->mind[i];
                far = i;
            }
        if (fd < 0.0f) break;   /* fewer rows than empty clusters */
        f->mind[far] = -1.0f;   /* taken */
        const float *x = f->X->data + far * d;
        size_t old = (size_t)f->labels[far];
        for (size_t j = 0; j < d; j++) {
            f->sum[old * d + j] -= x[j];
            f->sum[c * d + j] = x[j];
        }
        f->count[old] -= 1.0;
        f->count[c] = 1.0;
        (*reseeded)++;
        mp_log(MP_LOG_DEBUG, MODULE ": cluster %zu was empty; re-seeded from row %zu", c, far);
    }
    double shift = 0.0;
    for (size_t c = 0; c < k; c++) {
        const float *old = f->C + c * d;
        float *nw = f->Cnew + c * d;
        if (f->count[c] > 0.0) {
            for (size_t j = 0; j < d; j++) nw[j] = (float)(f->sum[c * d + j] / f->count[c]);
        } else {
            memcpy(nw, old, d * sizeof *nw);    /* a donor emptied by re-seeding */
        }
        for (size_t j = 0; j < d; j++) {
            double e = (double)nw[j] - (double)old[j];
            shift += e * e;
        }
    }
    return shift;
}

/* One seeded run: seeding, Lloyd iterations, final assignment.  Leaves the
 * centers in f->C, the per-iteration inertia in hist (max_iter values),
 * their count in *n_iter and the exact final inertia in *inertia. */
static int run_once(fit *f, const kmeans_conf *c, double tol_abs, mp_rng *rng, size_t *idx,
                    const mp_ctx *ctx, double *hist, int *n_iter, double *inertia, mp_err *err) {
    size_t k = f->k, d = f->d;
    if (c->init == INIT_KMEANSPP) {
        if (seed_kmeanspp(f, rng, ctx, err) != MP_OK) return err->code;
    } else {
        seed_random(f, rng, idx);
    }
    center_norms(f->C, k, d, f->cnorm);
    for (size_t i = 0; i < f->n; i++) f->labels[i] = -1;
    bool strict = false;
    int it;
    for (it = 1; it <= c->max_iter; it++) {
        if (mp_ctx_cancelled(ctx))
            return MP_ERR(err, MP_E_CANCELLED, MODULE ": interrupted at iteration %d", it);
        mp_ctx_progress(ctx, "iteration", it - 1, c->max_iter);   /* an upper bound */
        f->update = true;
        mp_par_rows(f->n, f->nt, lloyd_rows, f);
        hist[it - 1] = acc_total(f);
        size_t changed = 0;
        for (int t = 0; t < f->nt; t++) changed += f->changed[t];
        size_t reseeded = 0;
        double shift = update_centers(f, &reseeded);
        float *tmp = f->C;
        f->C = f->Cnew;
        f->Cnew = tmp;
        center_norms(f->C, k, d, f->cnorm);
        if (!isfinite(hist[it - 1]))
            return MP_ERR(err, MP_E_NUMERIC, MODULE ": the inertia is not finite at iteration %d",
                          it);
        if (changed == 0 && reseeded == 0) {   /* same labels, same centers: converged */
            strict = true;
            break;
        }
        if (shift <= tol_abs) break;
    }
    *n_iter = it > c->max_iter ? c->max_iter : it;
    if (!strict) {  /* labels for the final centers */
        f->update = false;
        mp_par_rows(f->n, f->nt, lloyd_rows, f);
    }
    mp_par_rows(f->n, f->nt, inertia_rows, f);
    *inertia = acc_total(f);
    mp_log(MP_LOG_DEBUG, MODULE ": run %s after %d iterations, inertia %.8g",
           strict ? "converged" : it > c->max_iter ? "hit max_iter" : "within tol", *n_iter,
           *inertia);
    return MP_OK;
}

/* Finds the first non-finite value for the message. */
static int report_nonfinite(const mp_dataset *ds, mp_err *err) {
    const mp_matrix *X = &ds->X;
    for (size_t i = 0; i < X->n_rows; i++)
        for (size_t j = 0; j < X->n_cols; j++)
            if (!isfinite(MP_AT(X, i, j)))
                return MP_ERR(err, MP_E_NUMERIC,
                              MODULE ": feature '%s' is not a finite number at row %zu",
                              ds->feature_names ? ds->feature_names[j] : "?",
                              ds->source_rows ? ds->source_rows[i] : i + 1);
    return MP_ERR(err, MP_E_NUMERIC, MODULE ": the data overflow float precision");
}

static void fit_release(fit *f) {
    mp_free(f->xnorm);
    mp_free(f->labels);
    mp_free(f->mind);
    mp_free(f->C);
    mp_free(f->Cnew);
    mp_free(f->cnorm);
    mp_free(f->sum);
    mp_free(f->count);
    mp_free(f->closest);
    mp_free(f->dcand);
    mp_free(f->cum);
    mp_free(f->cand);
    mp_free(f->cand_norm);
    for (int t = 0; t < MAX_THREADS; t++) {
        mp_free(f->D[t]);
        mp_free(f->fsum[t]);
        mp_free(f->tsum[t]);
        mp_free(f->tcount[t]);
        mp_free(f->touched[t]);
        mp_free(f->ones[t]);
        mp_free(f->pot[t]);
    }
}

/* Allocates every buffer of f (in this thread: workers never allocate). */
static int fit_alloc(fit *f, const kmeans_conf *c, mp_err *err) {
    size_t n = f->n, d = f->d, k = f->k, kd = mp_mul_size(k, d);
    size_t nt = f->n_trials, wide = k > nt ? k : nt;
    bool ok = (f->xnorm = mp_malloc(mp_mul_size(n, sizeof(float)))) &&
              (f->labels = mp_malloc(mp_mul_size(n, sizeof(int)))) &&
              (f->mind = mp_malloc(mp_mul_size(n, sizeof(float)))) &&
              (f->C = mp_malloc(mp_mul_size(kd, sizeof(float)))) &&
              (f->Cnew = mp_malloc(mp_mul_size(kd, sizeof(float)))) &&
              (f->cnorm = mp_malloc(mp_mul_size(k, sizeof(float)))) &&
              (f->sum = mp_malloc(mp_mul_size(kd, sizeof(double)))) &&
              (f->count = mp_malloc(mp_mul_size(k, sizeof(double)))) &&
              (f->closest = mp_malloc(mp_mul_size(n, sizeof(float)))) &&
              (f->cand = mp_malloc(mp_mul_size(mp_mul_size(nt, d), sizeof(float)))) &&
              (f->cand_norm = mp_malloc(mp_mul_size(nt, sizeof(float))));
    if (ok && c->init == INIT_KMEANSPP)
        ok = (f->dcand = mp_malloc(mp_mul_size(mp_mul_size(n, nt), sizeof(float)))) &&
             (f->cum = mp_malloc(mp_mul_size(n, sizeof(double))));
    for (int t = 0; t < f->nt && ok; t++) {
        ok = (f->D[t] = mp_malloc(mp_mul_size(mp_mul_size(f->block, wide), sizeof(float)))) &&
             (f->fsum[t] = mp_calloc(kd > d ? kd : d, sizeof(float))) &&
             (f->tsum[t] = mp_malloc(mp_mul_size(kd, sizeof(double)))) &&
             (f->tcount[t] = mp_malloc(mp_mul_size(k, sizeof(double)))) &&
             (f->touched[t] = mp_calloc(k, 1)) &&
             (f->ones[t] = mp_malloc(mp_mul_size(f->block, sizeof(float)))) &&
             (f->pot[t] = mp_malloc(mp_mul_size(nt > d ? nt : d, sizeof(double))));
        for (size_t i = 0; ok && i < f->block; i++) f->ones[t][i] = 1.0f;
    }
    if (!ok)
        return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %zu rows x %zu features, k = %zu",
                      n, d, k);
    return MP_OK;
}

/* Threads for n rows x d (par.h): each with at least 2^17 values to read,
 * so small data stays on one thread. */
static int threads_for(size_t n, size_t d) {
    return mp_par_threads(mp_mul_size(n, d) >> 17);
}

static int kmeans_fit(const kmeans_conf *c, mp_ctx *ctx, const mp_dataset *ds, kmeans_state *s,
                      mp_err *err) {
    fit f = { .X = &ds->X, .n = ds->X.n_rows, .d = ds->X.n_cols, .k = (size_t)c->k };
    size_t n = f.n, d = f.d, k = f.k;
    f.block = block_rows(d);
    f.nt = threads_for(n, d);
    /* scikit-learn: 2 + int(log(k)) local trials per center. */
    f.n_trials = c->init == INIT_KMEANSPP ? 2 + (size_t)log((double)k) : 1;
    if (f.n_trials > 64) f.n_trials = 64;
    double *hist = mp_malloc(mp_mul_size((size_t)c->max_iter, 2 * sizeof(double)));
    size_t *idx = c->init == INIT_RANDOM ? mp_malloc(mp_mul_size(n, sizeof *idx)) : NULL;
    if (!hist || (c->init == INIT_RANDOM && !idx)) {
        MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %zu rows", n);
        goto done;
    }
    if (fit_alloc(&f, c, err) != MP_OK) goto done;

    /* Row norms and the tolerance: tol * mean over features of the
     * variance, from sum ||x||^2 / n - ||mean||^2 (scikit-learn's
     * _tolerance uses np.mean(np.var(X, axis=0)) * tol). */
    mp_par_rows(n, f.nt, norms_rows, &f);
    double sq = acc_total(&f), mean_sq = 0.0;
    if (!isfinite(sq)) {
        report_nonfinite(ds, err);
        goto done;
    }
    for (size_t j = 0; j < d; j++) {
        double cs = 0.0;
        for (int t = 0; t < f.nt; t++) cs += f.pot[t][j];
        mean_sq += (cs / (double)n) * (cs / (double)n);
    }
    double var = sq / (double)n - mean_sq;
    double tol_abs = c->tol * (var > 0.0 ? var : 0.0) / (double)d;

    mp_rng rng;
    mp_ctx_rng(ctx, 0, &rng);
    double best = INFINITY, *best_hist = hist + c->max_iter, *cur_hist = hist;
    int best_iter = 0;
    for (int r = 0; r < c->n_init; r++) {
        double inertia = 0.0;
        int n_iter = 0;
        if (run_once(&f, c, tol_abs, &rng, idx, ctx, cur_hist, &n_iter, &inertia, err) != MP_OK)
            goto done;
        if (inertia < best) {   /* keep this run: its centers and history */
            best = inertia;
            best_iter = n_iter;
            memcpy(s->data, f.C, k * d * sizeof(float));
            double *tmp = best_hist;
            best_hist = cur_hist;
            cur_hist = tmp;
        }
        if (c->n_init > 1)
            mp_log(MP_LOG_INFO, MODULE ": init %d of %d: %d iterations, inertia %.8g", r + 1,
                   c->n_init, n_iter, inertia);
    }
    center_norms(s->data, k, d, s->cnorm);
    for (int it = 0; it < best_iter; it++) {
        if (mp_ctx_metric(ctx, "train.inertia", best_hist[it], it + 1, err) != MP_OK ||
            mp_ctx_metric(ctx, "train.loss", best_hist[it], it + 1, err) != MP_OK)
            goto done;
    }
    if (mp_ctx_metric(ctx, "train.final_inertia", best, -1, err) != MP_OK) goto done;
    mp_log(MP_LOG_INFO, MODULE ": k = %zu on %zu rows x %zu features: %d iterations, inertia %.8g",
           k, n, d, best_iter, best);
done:
    fit_release(&f);
    mp_free(hist);
    mp_free(idx);
    return err->code;
}

/* ---------------------------------------------------------------- stage */

static int kmeans_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const kmeans_conf *c = st->conf;
    const mp_dataset *ds = ctx->train;
    if (!ds || ds->X.n_rows == 0) return MP_ERR(err, MP_E_DATA, MODULE ": no training rows");
    size_t n = ds->X.n_rows, d = ds->X.n_cols, k = (size_t)c->k;
    if (d == 0) return MP_ERR(err, MP_E_DATA, MODULE ": the data has no feature columns");
    if (c->k < 1 || k > n)
        return MP_ERR(err, MP_E_DATA, MODULE ": k = %d clusters needs at least as many rows, got %zu",
                      c->k, n);
    /* BLAS sizes are int: a block (<= 4096 rows), the centers, the rows. */
    if (d > (size_t)INT_MAX / 4096 || mp_mul_size(k, d) > (size_t)INT_MAX || n > (size_t)INT_MAX)
        return MP_ERR(err, MP_E_DATA, MODULE ": %zu rows x %zu features is too large", n, d);
    /* A target, if the data has one, is ignored: clustering uses X only. */

    kmeans_state *s = state_new(k, d);
    mp_model *m = mp_calloc(1, sizeof *m);
    if (!s || !m) {
        mp_free(s);
        mp_free(m);
        return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %zu centers", k);
    }
    if (kmeans_fit(c, ctx, ds, s, err) != MP_OK) {
        mp_free(s);
        mp_free(m);
        return err->code;
    }
    m->ops = &kmeans_model_ops;
    m->state = s;
    m->task = MP_TASK_CLUSTERING;
    m->n_features = d;
    m->n_outputs = 1;
    m->has_proba = false;
    mp_model_free(ctx->model);
    ctx->model = m;
    return MP_OK;
}

static const mp_param kmeans_params[] = {
    { "k", MP_P_INT, offsetof(kmeans_conf, k), "8", MP_PF_RANGE, 1, INT_MAX, NULL,
      "number of clusters" },
    { "init", MP_P_ENUM, offsetof(kmeans_conf, init), "kmeans++", 0, 0, 0, INIT_CHOICES,
      "seeding: greedy k-means++ (as scikit-learn) or k distinct random rows" },
    { "n_init", MP_P_INT, offsetof(kmeans_conf, n_init), "1", MP_PF_RANGE, 1, 1000, NULL,
      "seeded runs; the one with the lowest inertia is kept" },
    { "max_iter", MP_P_INT, offsetof(kmeans_conf, max_iter), "300", MP_PF_RANGE, 1, 1000000,
      NULL, "Lloyd iterations per run at most" },
    { "tol", MP_P_DOUBLE, offsetof(kmeans_conf, tol), "1e-4", MP_PF_RANGE, 0, 1e300, NULL,
      "stop when the centers move less than tol times the mean feature variance" },
    { 0 }
};

const mp_stage_ops mp_stage_kmeans = {
    .abi = MP_STAGE_ABI, .name = MODULE, .kind = MP_KIND_TRAIN,
    .doc = "k-means clustering: Lloyd iterations with k-means++ seeding (as scikit-learn)",
    .params = kmeans_params, .conf_size = sizeof(kmeans_conf), .run = kmeans_run,
    .model = &kmeans_model_ops, .task = MP_TASK_CLUSTERING,
};
