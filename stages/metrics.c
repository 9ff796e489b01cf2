/*
 * metrics.c -- classification metrics from a confusion matrix, log loss and
 * ROC AUC.  Plain loops: these run once per evaluation over n rows, far from
 * the training hot path.
 */
#include "metrics.h"

#include <math.h>
#include <stdlib.h>

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
