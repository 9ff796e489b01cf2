/*
 * linreg.c -- `train: linear_regression`: least squares and ridge regression.
 *
 * The model is y ~ X w + b, fitted by minimising
 *
 *     J(w, b) = (1/n) * sum_i (x_i . w + b - y_i)^2  +  (l2/n) * ||w||^2
 *
 * (scikit-learn's Ridge with alpha = l2; the intercept b is not penalised).
 * Two ways to get there:
 *
 *   exact (default)     The normal equations in double precision.  One pass
 *                       over X accumulates the Gram matrix of the augmented
 *                       rows [x - c, y - cy, 1] with cblas_dsyrk, block by
 *                       block on every core.  The shift (c, cy) is a rough
 *                       mean from a sample of rows: with it the sums stay
 *                       small, and the exact centred X^T X, X^T y and y^T y
 *                       follow from the same matrix (the last column holds
 *                       the column sums and n), so no separate pass for the
 *                       means.  Then (Xc^T Xc + l2 I) w = Xc^T yc is
 *                       equilibrated and solved by Cholesky (dposv); when it
 *                       is singular or too ill-conditioned (collinear
 *                       columns) a truncated eigen-decomposition gives the
 *                       minimum-norm least-squares solution instead.
 *   sgd|momentum|adam   Mini-batch gradient descent through stages/optim.h,
 *                       the batch gradient by two cblas_sgemv calls.
 *
 * The fitted state is d float weights and a double intercept; predict is one
 * sgemv over the rows.
 */
#include "mp_stage.h"
#include "optim.h"
#include "par.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* LAPACK from the same libopenblas (Fortran calling convention). */
extern void   dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda,
                     double *b, const int *ldb, int *info);
extern void   dpocon_(const char *uplo, const int *n, const double *a, const int *lda,
                      const double *anorm, double *rcond, double *work, int *iwork, int *info);
extern double dlansy_(const char *norm, const char *uplo, const int *n, const double *a,
                      const int *lda, double *work);
extern void   dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                      double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                      int *info);

#define MODULE "linear_regression"

/* Below this reciprocal condition number (1-norm estimate) of the
 * equilibrated normal matrix, Cholesky is not trusted: a matrix that far
 * from invertible comes from collinear columns (cond(X) >~ 1e6, beyond what
 * float32 features can resolve), and its solution would be mostly noise. */
#define RCOND_MIN 1e-12
/* The fallback drops eigen-directions below this fraction of the largest. */
#define EIG_CUTOFF 1e-12
/* Gradient solvers stop after this many epochs without a loss improvement
 * of more than tol (scikit-learn's SGDRegressor n_iter_no_change). */
#define N_NO_CHANGE 5
#define MAX_THREADS MP_PAR_MAX_THREADS   /* per-thread slots: mp_par_rows never uses more */

enum { SOLVER_EXACT = 0, SOLVER_SGD = 1, SOLVER_MOMENTUM = 2, SOLVER_ADAM = 3 };
#define SOLVER_CHOICES "exact|sgd|momentum|adam"

typedef struct linreg_conf {
    int    solver;          /* SOLVER_* */
    double l2;              /* >= 0: ridge penalty on w (not b) */
    bool   fit_intercept;   /* false: b = 0 and nothing is centred */
    double learning_rate;   /* > 0, gradient solvers */
    int    epochs;          /* >= 1, gradient solvers */
    int    batch_size;      /* >= 1, gradient solvers */
    bool   shuffle;         /* reshuffle rows every epoch (gradient solvers) */
    double tol;             /* >= 0: early-stop threshold on the epoch loss; 0 = off */
} linreg_conf;

/* The fitted model: one allocation, the weights trailing the struct. */
typedef struct linreg_state {
    size_t d;               /* features */
    double intercept;       /* b */
    float  coef[];          /* d weights w */
} linreg_state;

/* ---------------------------------------------------------------- model */

static linreg_state *state_new(size_t d) {
    size_t bytes = mp_mul_size(d, sizeof(float));
    if (bytes > SIZE_MAX - sizeof(linreg_state)) return NULL;
    linreg_state *s = mp_calloc(1, sizeof *s + bytes);
    if (s) s->d = d;
    return s;
}

static void linreg_free_state(void *state) { mp_free(state); }

static int linreg_predict(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err) {
    const linreg_state *s = m->state;
    if (X->n_cols != s->d)
        return MP_ERR(err, MP_E_DATA, MODULE ": model expects %zu features, got %zu", s->d,
                      X->n_cols);
    if (out->n_rows != X->n_rows || out->n_cols != 1)
        return MP_ERR(err, MP_E_DATA, MODULE ": output must be %zu x 1, got %zu x %zu",
                      X->n_rows, out->n_rows, out->n_cols);
    float b = (float)s->intercept;
    for (size_t i = 0; i < X->n_rows; i++) out->data[i] = b;
    if (s->d == 0) return MP_OK;
    /* out = X w + out, in chunks whose row count fits BLAS's int. */
    const size_t chunk = (size_t)1 << 28;
    for (size_t r0 = 0; r0 < X->n_rows; r0 += chunk) {
        size_t rows = X->n_rows - r0 < chunk ? X->n_rows - r0 : chunk;
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)rows, (blasint)s->d, 1.0f,
                    X->data + r0 * s->d, (blasint)s->d, s->coef, 1, 1.0f, out->data + r0, 1);
    }
    return MP_OK;
}

static int linreg_save(const mp_model *m, mp_art_writer *w, const char *prefix, mp_err *err) {
    const linreg_state *s = m->state;
    char k1[256], k2[256];
    if (!mp_art_key(k1, sizeof k1, MODULE, prefix, "coef", MP_E_IO, err) ||
        !mp_art_key(k2, sizeof k2, MODULE, prefix, "intercept", MP_E_IO, err))
        return err->code;
    if (mp_art_put_floats(w, k1, s->coef, s->d) != MP_OK ||
        mp_art_put_double(w, k2, s->intercept) != MP_OK)
        return MP_ERR(err, MP_E_IO, MODULE ": cannot write the model under '%s'", prefix);
    return MP_OK;
}

static int linreg_load(mp_model *m, mp_art_reader *r, const char *prefix, mp_err *err) {
    if (m->n_outputs != 1)
        return MP_ERR(err, MP_E_PARSE, MODULE ": model file gives %zu outputs, expected 1",
                      m->n_outputs);
    char k1[256], k2[256];
    if (!mp_art_key(k1, sizeof k1, MODULE, prefix, "coef", MP_E_PARSE, err) ||
        !mp_art_key(k2, sizeof k2, MODULE, prefix, "intercept", MP_E_PARSE, err))
        return err->code;
    linreg_state *s = state_new(m->n_features);
    if (!s)
        return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %zu weights", m->n_features);
    /* get_floats checks that the file holds exactly n_features weights. */
    if (mp_art_get_floats(r, k1, s->coef, s->d, err) != MP_OK ||
        mp_art_get_double(r, k2, &s->intercept, err) != MP_OK) {
        mp_free(s);
        return err->code;
    }
    if (!isfinite(s->intercept)) {
        mp_free(s);
        return MP_ERR(err, MP_E_PARSE, MODULE ": '%s' is not a finite number", k2);
    }
    m->state = s;
    return MP_OK;
}

static const mp_model_ops linreg_model_ops = {
    .name = MODULE, .predict = linreg_predict, .save = linreg_save, .load = linreg_load,
    .free_state = linreg_free_state,
};

/* ---------------------------------------------------------------- threads */

/* Worker threads for n rows of width d (par.h): at least ~2^20
 * multiply-adds each, so small data stays on one thread. */
static int threads_for(size_t n, size_t d) {
    return mp_par_threads(mp_mul_size(n, d + 2) / ((size_t)1 << 20));
}

/* ---------------------------------------------------------------- exact */

/* The augmented Gram pass.  Each thread owns one block buffer and one
 * w x w upper-triangular accumulator (w = d + 2 with an intercept: the
 * columns are x - c, y - cy, 1; w = d + 1 without: x, y). */
typedef struct gram_job {
    const mp_matrix *X;
    const double *y;
    const double *shift;        /* d + 1: c, then cy (zeros without intercept) */
    size_t w;                   /* augmented width */
    size_t block;               /* rows per block */
    double *buf[MAX_THREADS];   /* block x w each */
    double *gram[MAX_THREADS];  /* w x w each, upper triangle (row-major) */
    bool cancelled[MAX_THREADS];
    const mp_ctx *ctx;
} gram_job;

static void gram_rows(void *arg, int t, size_t lo, size_t hi) {
    gram_job *g = arg;
    size_t d = g->X->n_cols, w = g->w;
    double *A = g->buf[t];
    for (size_t r0 = lo; r0 < hi; r0 += g->block) {
        if (mp_ctx_cancelled(g->ctx)) {
            g->cancelled[t] = true;
            return;
        }
        size_t m = hi - r0 < g->block ? hi - r0 : g->block;
        for (size_t i = 0; i < m; i++) {
            const float *x = g->X->data + (r0 + i) * d;
            double *a = A + i * w;
            for (size_t j = 0; j < d; j++) a[j] = (double)x[j] - g->shift[j];
            a[d] = g->y[r0 + i] - g->shift[d];
            if (w == d + 2) a[d + 1] = 1.0;
        }
        /* G += A^T A: one call yields X^T X, X^T y, y^T y, the sums and n. */
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (blasint)w, (blasint)m, 1.0, A,
                    (blasint)w, 1.0, g->gram[t], (blasint)w);
    }
}

/* MP_OK when every feature and target value is finite, else an error
 * naming the first bad one with its source row. */
static int check_finite(const mp_dataset *ds, mp_err *err) {
    const mp_matrix *X = &ds->X;
    for (size_t i = 0; i < X->n_rows; i++) {
        size_t line = ds->source_rows ? ds->source_rows[i] : i + 1;
        for (size_t j = 0; j < X->n_cols; j++)
            if (!isfinite(MP_AT(X, i, j)))
                return MP_ERR(err, MP_E_NUMERIC,
                              MODULE ": feature '%s' is not a finite number at row %zu",
                              ds->feature_names ? ds->feature_names[j] : "?", line);
        if (!isfinite(ds->y[i]))
            return MP_ERR(err, MP_E_NUMERIC,
                          MODULE ": the target is not a finite number at row %zu", line);
    }
    return MP_OK;
}

/* Solves (A) x = b for the d x d symmetric positive semi-definite A (upper
 * triangle, row-major, leading dimension lda), b has d values; x gets d.
 * A is equilibrated (unit diagonal) first, so the conditioning test does not
 * punish features that merely differ in scale.  Cholesky when A is well
 * conditioned, else the minimum-norm solution from eigenvalues above
 * EIG_CUTOFF times the largest, with a warning.  *fallback tells which. */
static int solve_spd(const double *A, size_t lda, const double *b, size_t d, double *x,
                     bool *fallback, mp_err *err) {
    int n = (int)d, one = 1, info = 0;
    size_t dd = mp_mul_size(d, d);
    /* S: equilibrated A; F: its Cholesky factor; sc, rhs, work: 3d; iwork: d ints. */
    double *S = mp_malloc(mp_mul_size(dd, sizeof(double)));
    double *F = mp_malloc(mp_mul_size(dd, sizeof(double)));
    double *v = mp_malloc(mp_mul_size(d, 5 * sizeof(double)));
    int *iwork = mp_malloc(mp_mul_size(d, sizeof(int)));
    double *ework = NULL;
    int *eiwork = NULL;
    if (!S || !F || !v || !iwork) {
        MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory solving %zu normal equations", d);
        goto done;
    }
    double *sc = v, *rhs = v + d, *work = v + 2 * d;    /* work: 3d */
    bool zero_col = false;
    for (size_t j = 0; j < d; j++) {
        double a = A[j * lda + j];
        sc[j] = a > 0.0 ? 1.0 / sqrt(a) : 0.0;
        zero_col |= !(a > 0.0);
    }
    /* Row-major upper == column-major lower; fill both, LAPACK reads 'L'
     * of the column-major view, i.e. our upper triangle. */
    for (size_t i = 0; i < d; i++) {
        for (size_t j = i; j < d; j++) S[i * d + j] = S[j * d + i] = sc[i] * A[i * lda + j] * sc[j];
        rhs[i] = sc[i] * b[i];
    }
    memcpy(F, S, dd * sizeof *F);
    memcpy(x, rhs, d * sizeof *x);
    double anorm = dlansy_("1", "L", &n, S, &n, work), rcond = 0.0;
    if (!zero_col) {
        dposv_("L", &n, &one, F, &n, x, &n, &info);
        if (info == 0) dpocon_("L", &n, F, &n, &anorm, &rcond, work, iwork, &info);
    }
    *fallback = zero_col || info != 0 || !(rcond >= RCOND_MIN);
    if (*fallback) {
        mp_log(MP_LOG_WARN,
               MODULE ": the normal equations are singular or nearly so (collinear or constant "
               "columns; reciprocal condition %.3g); using the minimum-norm least-squares solution",
               rcond);
        /* Eigen-decomposition of S in place (F is free now): S = V L V^T. */
        memcpy(F, S, dd * sizeof *F);
        double *lam = work, wq = 0.0;
        int lwork = -1, liwork = -1, iq = 0;
        dsyevd_("V", "L", &n, F, &n, lam, &wq, &lwork, &iq, &liwork, &info);
        lwork = (int)wq;
        liwork = iq;
        ework = mp_malloc(mp_mul_size((size_t)(lwork > 1 ? lwork : 1), sizeof(double)));
        eiwork = mp_malloc(mp_mul_size((size_t)(liwork > 1 ? liwork : 1), sizeof(int)));
        if (!ework || !eiwork) {
            MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for the least-squares fallback");
            goto done;
        }
        dsyevd_("V", "L", &n, F, &n, lam, ework, &lwork, eiwork, &liwork, &info);
        if (info != 0) {
            MP_ERR(err, MP_E_NUMERIC, MODULE ": eigen-decomposition failed (info %d)", info);
            goto done;
        }
        /* Eigenvector k is column k of the column-major F = row k here.
         * t = V^T rhs, t_k /= lam_k (or 0 below the cutoff), x = V t. */
        double *t = v + 4 * d, top = lam[d - 1];    /* ascending eigenvalues */
        cblas_dgemv(CblasRowMajor, CblasNoTrans, n, n, 1.0, F, n, rhs, 1, 0.0, t, 1);
        for (size_t k = 0; k < d; k++) t[k] = lam[k] > EIG_CUTOFF * top ? t[k] / lam[k] : 0.0;
        cblas_dgemv(CblasRowMajor, CblasTrans, n, n, 1.0, F, n, t, 1, 0.0, x, 1);
    }
    for (size_t j = 0; j < d; j++) x[j] *= sc[j];
done:
    mp_free(S);
    mp_free(F);
    mp_free(v);
    mp_free(iwork);
    mp_free(ework);
    mp_free(eiwork);
    return err->code;
}

static int fit_exact(const linreg_conf *c, mp_ctx *ctx, const mp_dataset *ds, linreg_state *s,
                     mp_err *err) {
    const mp_matrix *X = &ds->X;
    size_t n = X->n_rows, d = X->n_cols, w = c->fit_intercept ? d + 2 : d + 1;
    int nt = threads_for(n, d);
    gram_job g = { .X = X, .y = ds->y, .w = w, .ctx = ctx };
    /* Blocks of ~512 KiB, small enough to stay in a core's cache between
     * conversion and use; but at least 256 rows, so each dsyrk call does
     * 256 multiply-adds per element of the w x w accumulator it reads and
     * writes (wide data would otherwise spend its time moving that). */
    g.block = (size_t)65536 / w;
    if (g.block < 256) g.block = 256;
    double *shift = mp_calloc(d + 1, sizeof *shift);
    double *coef = mp_calloc(d ? d : 1, sizeof *coef);
    double *ws = mp_calloc(d ? d : 1, sizeof *ws);     /* w as rounded to float */
    double *Gw = mp_calloc(d ? d : 1, sizeof *Gw);
    bool ok = shift && coef && ws && Gw;
    for (int t = 0; t < nt && ok; t++) {
        g.buf[t] = mp_malloc(mp_mul_size(mp_mul_size(g.block, w), sizeof(double)));
        g.gram[t] = mp_calloc(mp_mul_size(w, w), sizeof(double));
        ok = g.buf[t] && g.gram[t];
    }
    if (!ok) {
        MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %zu x %zu normal equations", w, w);
        goto done;
    }

    if (c->fit_intercept) {
        /* The shift: the mean of up to 1024 rows spread over the data. */
        size_t step = n > 1024 ? n / 1024 : 1, m = 0;
        for (size_t i = 0; i < n; i += step, m++) {
            for (size_t j = 0; j < d; j++) shift[j] += MP_AT(X, i, j);
            shift[d] += ds->y[i];
        }
        for (size_t j = 0; j <= d; j++) shift[j] = isfinite(shift[j]) ? shift[j] / (double)m : 0.0;
    }
    g.shift = shift;
    mp_par_rows(n, nt, gram_rows, &g);
    for (int t = 0; t < nt; t++)
        if (g.cancelled[t]) {
            MP_ERR(err, MP_E_CANCELLED, MODULE ": interrupted while reading the rows");
            goto done;
        }
    double *G = g.gram[0];
    for (int t = 1; t < nt; t++)
        for (size_t i = 0; i < w; i++)
            cblas_daxpy((blasint)w, 1.0, g.gram[t] + i * w, 1, G + i * w, 1);
    for (size_t i = 0; i < w; i++)
        for (size_t j = i; j < w; j++)
            if (!isfinite(G[i * w + j])) {
                /* A NaN or Inf anywhere poisons the sums: find it for the message. */
                if (check_finite(ds, err) == MP_OK)
                    MP_ERR(err, MP_E_NUMERIC, MODULE ": the data overflow double precision");
                goto done;
            }

    /* Remove the shift: with sx = sum(x - c) and sy = sum(y - cy),
     *   Xc^T Xc = G_xx - sx sx^T / n,  Xc^T yc = G_xy - sx sy / n,
     *   yc^T yc = G_yy - sy^2 / n,     means = c + sx / n,  cy + sy / n. */
    double ymean = 0.0;
    if (c->fit_intercept) {
        double nn = G[(d + 1) * w + d + 1], sy = G[d * w + d + 1];
        for (size_t i = 0; i <= d; i++) {
            double si = G[i * w + d + 1];
            for (size_t j = i; j <= d; j++) G[i * w + j] -= si * G[j * w + d + 1] / nn;
        }
        for (size_t j = 0; j < d; j++) shift[j] += G[j * w + d + 1] / nn;  /* now the means */
        ymean = shift[d] + sy / nn;
    }
    /* Ridge: (G_xx + l2 I) w = G_xy.  G_xx is the leading d x d block. */
    for (size_t j = 0; j < d; j++) {
        G[j * w + j] += c->l2;
        Gw[j] = G[j * w + d];           /* Xc^T yc, gathered from column d */
    }
    bool fallback = false;
    int rc = solve_spd(G, w, Gw, d, coef, &fallback, err);
    for (size_t j = 0; j < d; j++) G[j * w + j] -= c->l2;
    if (rc != MP_OK) goto done;

    /* The model keeps float weights; the intercept and the training MSE are
     * computed for exactly those:  b = ymean - mean . w,
     *   MSE = (yc^T yc - 2 w . Xc^T yc + w^T Xc^T Xc w) / n. */
    double b = ymean;
    for (size_t j = 0; j < d; j++) {
        s->coef[j] = (float)coef[j];
        ws[j] = (double)s->coef[j];
        if (c->fit_intercept) b -= shift[j] * ws[j];
    }
    s->intercept = c->fit_intercept ? b : 0.0;
    cblas_dsymv(CblasRowMajor, CblasUpper, (blasint)d, 1.0, G, (blasint)w, ws, 1, 0.0, Gw, 1);
    double sse = G[d * w + d] - 2.0 * cblas_ddot((blasint)d, ws, 1, G + d, (blasint)w) +
                 cblas_ddot((blasint)d, ws, 1, Gw, 1);
    double mse = sse > 0.0 ? sse / (double)n : 0.0;
    if (!isfinite(mse) || !isfinite(s->intercept)) {
        MP_ERR(err, MP_E_NUMERIC, MODULE ": the solution is not finite");
        goto done;
    }
    if (mp_ctx_metric(ctx, "train.loss", mse, 1, err) != MP_OK) goto done;
    mp_log(MP_LOG_INFO, MODULE ": exact fit on %zu rows x %zu features (%s), train MSE %.6g", n,
           d, fallback ? "least-squares fallback" : "Cholesky", mse);
done:
    for (int t = 0; t < nt; t++) {
        mp_free(g.buf[t]);
        mp_free(g.gram[t]);
    }
    mp_free(shift);
    mp_free(coef);
    mp_free(ws);
    mp_free(Gw);
    return err->code;
}

/* ---------------------------------------------------------------- gradient */

/* Mean squared error and its gradient on one mini-batch of m rows (Xb is
 * m x d row-major, yb m targets), at params p = [w (d), b]:
 *     r = Xb w + b - yb
 *     grad_w = (2/m) Xb^T r + (2 l2 / n) w,   grad_b = (2/m) sum(r)
 * (the penalty spread evenly over the n/m batches of an epoch).  Returns
 * sum(r^2) for the epoch loss; r is scratch of m floats. */
static double batch_grad(const float *Xb, const float *yb, size_t m, size_t d, const float *p,
                         double l2_over_n, bool fit_intercept, float *r, float *grad) {
    for (size_t i = 0; i < m; i++) r[i] = p[d] - yb[i];
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)m, (blasint)d, 1.0f, Xb, (blasint)d, p, 1,
                1.0f, r, 1);
    double sq = cblas_dsdot((blasint)m, r, 1, r, 1);
    cblas_sgemv(CblasRowMajor, CblasTrans, (blasint)m, (blasint)d, (float)(2.0 / (double)m), Xb,
                (blasint)d, r, 1, 0.0f, grad, 1);
    if (l2_over_n > 0.0) cblas_saxpy((blasint)d, (float)(2.0 * l2_over_n), p, 1, grad, 1);
    double sr = 0.0;
    if (fit_intercept)
        for (size_t i = 0; i < m; i++) sr += r[i];
    grad[d] = (float)(2.0 * sr / (double)m);
    return sq;
}

static int fit_gradient(const linreg_conf *c, mp_ctx *ctx, const mp_dataset *ds, linreg_state *s,
                        mp_err *err) {
    const mp_matrix *X = &ds->X;
    size_t n = X->n_rows, d = X->n_cols;
    size_t bs = (size_t)c->batch_size < n ? (size_t)c->batch_size : n;
    mp_optim *opt = NULL;
    mp_optim_conf oc;
    mp_optim_conf_init(&oc);
    oc.kind = c->solver - SOLVER_SGD;       /* sgd|momentum|adam in mp_optim_kind order */
    oc.learning_rate = c->learning_rate;
    /* One allocation: params (d + 1), grad (d + 1), batch rows, targets, residuals. */
    size_t floats = 2 * (d + 1) + mp_mul_size(bs, d) + 2 * bs;
    float *p = mp_calloc(floats, sizeof(float));
    size_t *idx = mp_malloc(mp_mul_size(n, sizeof *idx));
    if (!p || !idx) {
        MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %zu rows x %zu features", n, d);
        goto done;
    }
    if (mp_optim_new(&oc, d + 1, &opt, err) != MP_OK) goto done;
    float *grad = p + d + 1, *Xb = grad + d + 1, *yb = Xb + bs * d, *r = yb + bs;

    /* Start at w = 0 and b = mean(y): the best constant, so the first
     * epochs are not spent walking the intercept over. */
    if (c->fit_intercept) {
        double sy = 0.0;
        for (size_t i = 0; i < n; i++) sy += ds->y[i];
        p[d] = (float)(sy / (double)n);
    }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    mp_rng rng;
    mp_ctx_rng(ctx, 0, &rng);
    double best = INFINITY, loss = NAN;
    int stale = 0, ep;
    for (ep = 1; ep <= c->epochs; ep++) {
        if (mp_ctx_cancelled(ctx)) {
            MP_ERR(err, MP_E_CANCELLED, MODULE ": interrupted at epoch %d", ep);
            goto done;
        }
        mp_ctx_progress(ctx, "epoch", ep - 1, c->epochs);
        if (c->shuffle) mp_rng_shuffle(&rng, idx, n);
        double sq = 0.0;
        for (size_t b0 = 0; b0 < n; b0 += bs) {
            size_t m = n - b0 < bs ? n - b0 : bs;
            const float *rows = X->data + b0 * d;
            if (c->shuffle) {   /* gather the batch's rows */
                for (size_t i = 0; i < m; i++) {
                    memcpy(Xb + i * d, X->data + idx[b0 + i] * d, d * sizeof *Xb);
                    yb[i] = (float)ds->y[idx[b0 + i]];
                }
                rows = Xb;
            } else {
                for (size_t i = 0; i < m; i++) yb[i] = (float)ds->y[b0 + i];
            }
            sq += batch_grad(rows, yb, m, d, p, c->l2 / (double)n, c->fit_intercept, r, grad);
            mp_optim_step(opt, p, grad);
        }
        /* The epoch loss: mean of the batch losses as they were met (what
         * scikit-learn and Keras report); no extra pass over the data. */
        loss = sq / (double)n;
        if (!isfinite(loss)) {
            MP_ERR(err, MP_E_NUMERIC,
                   MODULE ": training diverged at epoch %d (loss %g); lower learning_rate", ep,
                   loss);
            goto done;
        }
        if (mp_ctx_metric(ctx, "train.loss", loss, ep, err) != MP_OK) goto done;
        mp_log(MP_LOG_DEBUG, MODULE ": epoch %d loss %.6g", ep, loss);
        stale = loss > best - c->tol ? stale + 1 : 0;
        if (loss < best) best = loss;
        if (c->tol > 0.0 && stale >= N_NO_CHANGE) {
            mp_log(MP_LOG_INFO, MODULE ": loss improved by less than tol=%g for %d epochs; "
                   "stopping at epoch %d", c->tol, N_NO_CHANGE, ep);
            break;
        }
    }
    for (size_t j = 0; j < d; j++)
        if (!isfinite(p[j]) || !isfinite(p[d])) {
            MP_ERR(err, MP_E_NUMERIC, MODULE ": the weights are not finite");
            goto done;
        }
    memcpy(s->coef, p, d * sizeof *p);
    s->intercept = c->fit_intercept ? (double)p[d] : 0.0;
    mp_log(MP_LOG_INFO, MODULE ": %s, %d epochs on %zu rows, train MSE %.6g",
           c->solver == SOLVER_SGD ? "sgd" : c->solver == SOLVER_MOMENTUM ? "momentum" : "adam",
           ep > c->epochs ? c->epochs : ep, n, loss);
done:
    mp_optim_free(opt);
    mp_free(p);
    mp_free(idx);
    return err->code;
}

/* ---------------------------------------------------------------- stage */

static int linreg_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const linreg_conf *c = st->conf;
    const mp_dataset *ds = ctx->train;
    if (!ds || ds->X.n_rows == 0) return MP_ERR(err, MP_E_DATA, MODULE ": no training rows");
    if (ds->task == MP_TASK_CLASSIFICATION)
        return MP_ERR(err, MP_E_DATA, MODULE " needs a numeric target; '%s' holds class names",
                      ds->target_name ? ds->target_name : "the target");
    if (!ds->y) return MP_ERR(err, MP_E_DATA, MODULE " needs a target column (load ... target:)");
    size_t d = ds->X.n_cols;
    if (d == 0) return MP_ERR(err, MP_E_DATA, MODULE ": the data has no feature columns");
    if (d > (size_t)INT_MAX / 2)    /* LAPACK and BLAS sizes are int */
        return MP_ERR(err, MP_E_DATA, MODULE ": %zu features is too many", d);

    linreg_state *s = state_new(d);
    mp_model *m = mp_calloc(1, sizeof *m);
    if (!s || !m) {
        mp_free(s);
        mp_free(m);
        return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for the model");
    }
    int rc;
    if (c->solver == SOLVER_EXACT) {
        rc = fit_exact(c, ctx, ds, s, err);   /* checks finiteness through its sums */
    } else {
        rc = check_finite(ds, err);
        if (rc == MP_OK) rc = fit_gradient(c, ctx, ds, s, err);
    }
    if (rc != MP_OK) {
        mp_free(s);
        mp_free(m);
        return rc;
    }
    m->ops = &linreg_model_ops;
    m->state = s;
    m->task = MP_TASK_REGRESSION;
    m->n_features = d;
    m->n_outputs = 1;
    m->has_proba = false;
    mp_model_free(ctx->model);
    ctx->model = m;
    return MP_OK;
}

static const mp_param linreg_params[] = {
    { "solver", MP_P_ENUM, offsetof(linreg_conf, solver), "exact", 0, 0, 0, SOLVER_CHOICES,
      "exact: normal equations by Cholesky (double); sgd|momentum|adam: mini-batch gradient "
      "descent" },
    { "l2", MP_P_DOUBLE, offsetof(linreg_conf, l2), "0", MP_PF_RANGE, 0, 1e300, NULL,
      "ridge penalty l2 * ||w||^2 added to the squared error (the intercept is not penalised)" },
    { "fit_intercept", MP_P_BOOL, offsetof(linreg_conf, fit_intercept), "true", 0, 0, 0, NULL,
      "fit a bias term b; false forces b = 0" },
    { "learning_rate", MP_P_DOUBLE, offsetof(linreg_conf, learning_rate), "0.01",
      MP_PF_RANGE | MP_PF_MIN_OPEN, 0, 1e300, NULL, "step size of the gradient solvers" },
    { "epochs", MP_P_INT, offsetof(linreg_conf, epochs), "100", MP_PF_RANGE, 1, INT_MAX, NULL,
      "passes over the training rows (gradient solvers)" },
    { "batch_size", MP_P_INT, offsetof(linreg_conf, batch_size), "32", MP_PF_RANGE, 1, INT_MAX,
      NULL, "rows per gradient step (gradient solvers)" },
    { "shuffle", MP_P_BOOL, offsetof(linreg_conf, shuffle), "true", 0, 0, 0, NULL,
      "reshuffle the rows every epoch (gradient solvers)" },
    { "tol", MP_P_DOUBLE, offsetof(linreg_conf, tol), "1e-6", MP_PF_RANGE, 0, 1e300, NULL,
      "gradient solvers stop after 5 epochs whose loss improved by less than tol (0: never)" },
    { 0 }
};

const mp_stage_ops mp_stage_linear_regression = {
    .abi = MP_STAGE_ABI, .name = MODULE, .kind = MP_KIND_TRAIN,
    .doc = "least-squares / ridge regression: exact normal equations or SGD, momentum, Adam",
    .params = linreg_params, .conf_size = sizeof(linreg_conf), .run = linreg_run,
    .model = &linreg_model_ops, .task = MP_TASK_REGRESSION,
};
