/*
 * metrics.c -- classification metrics from a confusion matrix, log loss and
 * ROC AUC; regression errors; clustering inertia, adjusted Rand index and
 * silhouette.  Plain loops: these run once per evaluation over n rows, far
 * from the training hot path -- except the silhouette's all-pairs distances,
 * which go through cblas_sgemm.
 */
#include "metrics.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void mp_confusion(const int *y_true, const int *y_pred, size_t n, size_t k, double *cm) {
    for (size_t i = 0; i < k * k; i++) cm[i] = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (y_true[i] < 0 || y_pred[i] < 0 || (size_t)y_true[i] >= k || (size_t)y_pred[i] >= k)
            continue;
        cm[(size_t)y_true[i] * k + (size_t)y_pred[i]] += 1.0;
    }
}

double mp_cm_accuracy(const double *cm, size_t k) {
    double ok = 0.0, all = 0.0;
    for (size_t t = 0; t < k; t++)
        for (size_t p = 0; p < k; p++) {
            all += cm[t * k + p];
            if (t == p) ok += cm[t * k + p];
        }
    return all > 0.0 ? ok / all : NAN;
}

static double row_sum(const double *cm, size_t k, size_t t) {
    double s = 0.0;
    for (size_t p = 0; p < k; p++) s += cm[t * k + p];
    return s;
}

static double col_sum(const double *cm, size_t k, size_t p) {
    double s = 0.0;
    for (size_t t = 0; t < k; t++) s += cm[t * k + p];
    return s;
}

double mp_cm_balanced_accuracy(const double *cm, size_t k) {
    double sum = 0.0;
    size_t m = 0;
    for (size_t c = 0; c < k; c++) {
        double support = row_sum(cm, k, c);
        if (support > 0.0) {
            sum += cm[c * k + c] / support;
            m++;
        }
    }
    return m ? sum / (double)m : NAN;
}

/* which: 0 precision, 1 recall, 2 f1 -- averaged over the classes that occur. */
static double averaged(const double *cm, size_t k, bool weighted, int which) {
    double sum = 0.0, wsum = 0.0;
    size_t m = 0;
    for (size_t c = 0; c < k; c++) {
        double tp = cm[c * k + c], support = row_sum(cm, k, c), predicted = col_sum(cm, k, c);
        if (support == 0.0 && predicted == 0.0) continue; /* class absent from both */
        double prec = predicted > 0.0 ? tp / predicted : 0.0;
        double rec = support > 0.0 ? tp / support : 0.0;
        double f1 = prec + rec > 0.0 ? 2.0 * prec * rec / (prec + rec) : 0.0;
        double v = which == 0 ? prec : which == 1 ? rec : f1;
        if (weighted) {
            sum += v * support;
            wsum += support;
        } else {
            sum += v;
            m++;
        }
    }
    if (weighted) return wsum > 0.0 ? sum / wsum : NAN;
    return m ? sum / (double)m : NAN;
}

double mp_cm_precision(const double *cm, size_t k, bool weighted) { return averaged(cm, k, weighted, 0); }
double mp_cm_recall(const double *cm, size_t k, bool weighted) { return averaged(cm, k, weighted, 1); }
double mp_cm_f1(const double *cm, size_t k, bool weighted) { return averaged(cm, k, weighted, 2); }

double mp_log_loss(const int *y_true, const float *proba, size_t n, size_t k) {
    const double eps = 1e-15;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float *r = proba + i * k;
        double z = 0.0, pt = 0.0;
        for (size_t c = 0; c < k; c++) {
            double p = fmin(fmax((double)r[c], eps), 1.0 - eps);
            z += p;
            if ((int)c == y_true[i]) pt = p;
        }
        sum -= log(pt / z);
    }
    return n ? sum / (double)n : NAN;
}

typedef struct scored { float s; int pos; } scored;

static int cmp_scored(const void *a, const void *b) {
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x > y) - (x < y);
}

double mp_roc_auc_binary(const int *positive, const float *score, size_t n) {
    scored *v = mp_malloc(mp_mul_size(n ? n : 1, sizeof *v));
    if (!v) return NAN;
    size_t n_pos = 0;
    for (size_t i = 0; i < n; i++) {
        v[i].s = score[i];
        v[i].pos = positive[i] != 0;
        n_pos += (size_t)v[i].pos;
    }
    size_t n_neg = n - n_pos;
    if (n_pos == 0 || n_neg == 0) {
        mp_free(v);
        return NAN;
    }
    qsort(v, n, sizeof *v, cmp_scored);
    /* Mann-Whitney U: sum of the (tie-averaged) ranks of the positive rows. */
    double rank_sum = 0.0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && v[j].s == v[i].s) j++;
        double avg_rank = ((double)i + 1.0 + (double)j) / 2.0;
        for (size_t t = i; t < j; t++)
            if (v[t].pos) rank_sum += avg_rank;
        i = j;
    }
    mp_free(v);
    double u = rank_sum - (double)n_pos * ((double)n_pos + 1.0) / 2.0;
    return u / ((double)n_pos * (double)n_neg);
}

double mp_roc_auc_ovr(const int *y_true, const float *proba, size_t n, size_t k) {
    int *pos = mp_malloc(mp_mul_size(n ? n : 1, sizeof *pos));
    float *col = mp_malloc(mp_mul_size(n ? n : 1, sizeof *col));
    double sum = 0.0;
    size_t m = 0;
    if (!pos || !col) goto out;
    for (size_t c = (k == 2 ? 1 : 0); c < k; c++) {
        for (size_t i = 0; i < n; i++) {
            pos[i] = y_true[i] == (int)c;
            col[i] = proba[i * k + c];
        }
        double auc = mp_roc_auc_binary(pos, col, n);
        if (!isnan(auc)) {
            sum += auc;
            m++;
        }
    }
out:
    mp_free(pos);
    mp_free(col);
    return m ? sum / (double)m : NAN;
}

/* ---------------------------------------------------------------- regression */

double mp_mse(const double *y_true, const float *y_pred, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = y_true[i] - (double)y_pred[i];
        s += e * e;
    }
    return n ? s / (double)n : NAN;
}

double mp_mae(const double *y_true, const float *y_pred, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += fabs(y_true[i] - (double)y_pred[i]);
    return n ? s / (double)n : NAN;
}

static double mean_of(const double *v, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += v[i];
    return s / (double)n;
}

/* 1 - num / den with scikit-learn's rule for a constant target (den == 0):
 * 1 when num is 0 too (perfect), else 0. */
static double one_minus_ratio(double num, double den) {
    if (den == 0.0) return num == 0.0 ? 1.0 : 0.0;
    return 1.0 - num / den;
}

double mp_r2(const double *y_true, const float *y_pred, size_t n) {
    if (n == 0) return NAN;
    double mean = mean_of(y_true, n), ss_res = 0.0, ss_tot = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = y_true[i] - (double)y_pred[i], t = y_true[i] - mean;
        ss_res += e * e;
        ss_tot += t * t;
    }
    return one_minus_ratio(ss_res, ss_tot);
}

double mp_explained_variance(const double *y_true, const float *y_pred, size_t n) {
    if (n == 0) return NAN;
    double mean = mean_of(y_true, n), mean_e = 0.0;
    for (size_t i = 0; i < n; i++) mean_e += y_true[i] - (double)y_pred[i];
    mean_e /= (double)n;
    double var_e = 0.0, var_t = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = y_true[i] - (double)y_pred[i] - mean_e, t = y_true[i] - mean;
        var_e += e * e;
        var_t += t * t;
    }
    return one_minus_ratio(var_e, var_t);
}

/* ---------------------------------------------------------------- clustering */

double mp_inertia(const mp_matrix *X, const int *labels, const float *centers, size_t k) {
    size_t d = X->n_cols;
    double s = 0.0;
    for (size_t i = 0; i < X->n_rows; i++) {
        if (labels[i] < 0 || (size_t)labels[i] >= k) continue;
        const float *x = X->data + i * d, *c = centers + (size_t)labels[i] * d;
        for (size_t j = 0; j < d; j++) {
            double e = (double)x[j] - (double)c[j];
            s += e * e;
        }
    }
    return s;
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sum over the runs of equal values in sorted v[0..n) of (run length)^2,
 * comparing only the bits above `shift`. */
static double sum_sq_runs(const uint64_t *v, size_t n, int shift) {
    double s = 0.0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && (v[j] >> shift) == (v[i] >> shift)) j++;
        s += (double)(j - i) * (double)(j - i);
        i = j;
    }
    return s;
}

int mp_adjusted_rand(const int *a, const int *b, size_t n, double *out, mp_err *err) {
    if (n == 0) {
        *out = NAN;
        return MP_OK;
    }
    /* The contingency table by sorting pairs (a, b) packed in 64 bits: the
     * runs of equal pairs are its cells, the runs of equal a its row sums;
     * a second sort of b gives the column sums.  No k_a x k_b table, so
     * labelings with many distinct values cost no more. */
    uint64_t *v = mp_malloc(mp_mul_size(n, sizeof *v));
    if (!v) return MP_ERR(err, MP_E_NOMEM, "out of memory for the adjusted Rand index");
    for (size_t i = 0; i < n; i++) {
        if (a[i] < 0 || b[i] < 0) {
            mp_free(v);
            return MP_ERR(err, MP_E_DATA, "adjusted Rand index: negative label at row %zu", i + 1);
        }
        v[i] = (uint64_t)(uint32_t)a[i] << 32 | (uint32_t)b[i];
    }
    qsort(v, n, sizeof *v, cmp_u64);
    double ss = sum_sq_runs(v, n, 0), ss_a = sum_sq_runs(v, n, 32);
    for (size_t i = 0; i < n; i++) v[i] = (uint32_t)b[i];
    qsort(v, n, sizeof *v, cmp_u64);
    double ss_b = sum_sq_runs(v, n, 0);
    mp_free(v);
    /* scikit-learn's pair confusion matrix (ordered pairs) and ARI. */
    double nn = (double)n;
    double tp = ss - nn, fp = ss_b - ss, fn = ss_a - ss, tn = nn * nn - fp - fn - ss;
    if (fn == 0.0 && fp == 0.0) {
        *out = 1.0;
        return MP_OK;
    }
    *out = 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn));
    return MP_OK;
}

int mp_silhouette(const mp_matrix *X, const int *labels, size_t k, double *out, mp_err *err) {
    size_t n = X->n_rows, d = X->n_cols;
    const size_t block = 256;
    size_t bw = n < block ? n : block;
    float *Xc = NULL, *xn = NULL, *H = NULL, *D = NULL, *S = NULL;
    double *mean = NULL, *size = NULL;
    *out = NAN;
    for (size_t i = 0; i < n; i++)
        if (labels[i] < 0 || (size_t)labels[i] >= k)
            return MP_ERR(err, MP_E_DATA, "silhouette: label %d at row %zu is outside [0, %zu)",
                          labels[i], i + 1, k);
    Xc = mp_malloc(mp_mul_size(mp_mul_size(n, d), sizeof *Xc));
    xn = mp_malloc(mp_mul_size(n, sizeof *xn));
    H = mp_calloc(mp_mul_size(n, k), sizeof *H);
    D = mp_malloc(mp_mul_size(mp_mul_size(bw, n), sizeof *D));
    S = mp_malloc(mp_mul_size(mp_mul_size(bw, k), sizeof *S));
    mean = mp_calloc(d ? d : 1, sizeof *mean);
    size = mp_calloc(k ? k : 1, sizeof *size);
    if (!Xc || !xn || !H || !D || !S || !mean || !size) {
        MP_ERR(err, MP_E_NOMEM, "out of memory for the silhouette of %zu rows", n);
        goto done;
    }
    size_t present = 0;
    for (size_t i = 0; i < n; i++) {
        present += size[labels[i]] == 0.0;
        size[labels[i]] += 1.0;
        H[i * k + (size_t)labels[i]] = 1.0f;    /* one-hot: D H = per-cluster sums */
    }
    if (present < 2 || present > n - 1) goto done;  /* undefined: NaN */

    /* Centre the rows first: distances do not change, and the expansion
     * ||x||^2 - 2 x.y + ||y||^2 loses far fewer digits to cancellation. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) mean[j] += X->data[i * d + j];
    for (size_t j = 0; j < d; j++) mean[j] /= (double)n;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < d; j++) Xc[i * d + j] = (float)(X->data[i * d + j] - mean[j]);
        xn[i] = cblas_sdot((blasint)d, Xc + i * d, 1, Xc + i * d, 1);
    }
    double total = 0.0;
    for (size_t r0 = 0; r0 < n; r0 += block) {
        size_t m = n - r0 < block ? n - r0 : block;
        /* D = distances of rows r0.. to every row; S = D H, per cluster. */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)m, (blasint)n, (blasint)d,
                    -2.0f, Xc + r0 * d, (blasint)d, Xc, (blasint)d, 0.0f, D, (blasint)n);
        for (size_t i = 0; i < m; i++) {
            float *row = D + i * n;
            for (size_t j = 0; j < n; j++) {
                float q = row[j] + xn[r0 + i] + xn[j];
                row[j] = q > 0.0f ? sqrtf(q) : 0.0f;
            }
            row[r0 + i] = 0.0f;     /* exactly, whatever rounding said */
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)m, (blasint)k, (blasint)n,
                    1.0f, D, (blasint)n, H, (blasint)k, 0.0f, S, (blasint)k);
        for (size_t i = 0; i < m; i++) {
            size_t own = (size_t)labels[r0 + i];
            if (size[own] < 2.0) continue;      /* alone in its cluster: s = 0 */
            double a = S[i * k + own] / (size[own] - 1.0), b = INFINITY;
            for (size_t c = 0; c < k; c++)
                if (c != own && size[c] > 0.0 && S[i * k + c] / size[c] < b) b = S[i * k + c] / size[c];
            double mx = a > b ? a : b;
            if (mx > 0.0) total += (b - a) / mx;
        }
    }
    *out = total / (double)n;
done:
    mp_free(Xc);
    mp_free(xn);
    mp_free(H);
    mp_free(D);
    mp_free(S);
    mp_free(mean);
    mp_free(size);
    return err->code;
}
