/*
 * logreg.c -- `train: logistic_regression`: a linear classifier trained by
 * mini-batch gradient descent on the mean cross-entropy, with an optional
 * L2 penalty on the weights.
 *
 * Two classes use one weight vector and a sigmoid; more use one weight row
 * per class and a softmax (multinomial, not one-vs-rest).  Either way the
 * model predicts one probability column per class, so evaluation code never
 * needs to know which case it has.
 *
 * The work per mini-batch of B rows, d features and R logits is two sgemm
 * calls (logits Z = Xb W^T + b, then dW = (P - Y)^T Xb / B) and O(B R) scalar
 * work for the stable sigmoid / log-sum-exp in between; the optimizer
 * (stages/optim.c) applies the step.  The loss is accumulated in double.
 *
 * The parameter layout (theta = [W | b], see logreg.h) is the same in
 * training, in the optimizer's state and in the model file, and lives in one
 * allocation with the model state.
 */
#include "logreg.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "optim.h"

#define MODULE "logistic_regression"
#define PREDICT_BLOCK 4096  /* rows per sgemm call in predict: bounds int sizes, stays in cache */
#define ADAM_EPS 1e-8       /* PyTorch's and Keras' default */

/* ---------------------------------------------------------------- model state */

/* A fitted model.  theta points just past the struct (one allocation). */
typedef struct logreg {
    size_t n_classes;   /* k >= 2 */
    size_t n_logits;    /* R: 1 when k == 2, else k */
    size_t n_features;  /* d >= 1 */
    float *theta;       /* R * (d + 1) floats: W (R x d, row-major), then b (R) */
} logreg;

size_t mp_logreg_n_logits(size_t n_classes) { return n_classes == 2 ? 1 : n_classes; }

size_t mp_logreg_n_params(size_t n_classes, size_t n_features) {
    if (n_features == SIZE_MAX) return SIZE_MAX;
    return mp_mul_size(mp_logreg_n_logits(n_classes), n_features + 1);
}

/* True when the shapes fit the int arguments of cblas (and so every index). */
static bool shape_ok(size_t n_classes, size_t n_features) {
    return n_classes <= INT_MAX && mp_logreg_n_params(n_classes, n_features) <= INT_MAX;
}

/* A zeroed model; NULL on OOM.  The caller checked shape_ok. */
static logreg *logreg_new(size_t n_classes, size_t n_features) {
    size_t n = mp_logreg_n_params(n_classes, n_features);
    logreg *s = mp_calloc(1, sizeof *s + n * sizeof(float));
    if (!s) return NULL;
    s->n_classes = n_classes;
    s->n_logits = mp_logreg_n_logits(n_classes);
    s->n_features = n_features;
    s->theta = (float *)(s + 1);    /* sizeof *s is a multiple of 8: aligned */
    return s;
}

static void logreg_free(void *state) { mp_free(state); }

/* ---------------------------------------------------------------- math */

/* 1 / (1 + e^-z) without overflow for either sign of z. */
static float sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

/* log(1 + e^z), stable: max(z, 0) + log1p(e^-|z|). */
static float softplus(float z) { return fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z))); }

/* Replaces the k logits in r by their softmax; returns log(sum(exp(r))). */
static double softmax(float *r, size_t k) {
    float mx = r[0];
    for (size_t j = 1; j < k; j++) mx = fmaxf(mx, r[j]);
    double sum = 0.0;
    for (size_t j = 0; j < k; j++) {
        float e = expf(r[j] - mx);  /* <= 1: the largest term is exactly 1 */
        r[j] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (size_t j = 0; j < k; j++) r[j] *= inv;
    return (double)mx + log(sum);
}

/* Z (n x R, row stride ldz) = X W^T + b for n rows of X (n x d). */
static void logits(const float *theta, size_t R, size_t d, const float *X, size_t n, float *Z,
                   size_t ldz) {
    const float *b = theta + R * d;
    for (size_t i = 0; i < n; i++) memcpy(Z + i * ldz, b, R * sizeof *b);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)R, (blasint)d,
                1.0f, X, (blasint)d, theta, (blasint)d, 1.0f, Z, (blasint)ldz);
}

double mp_logreg_loss_grad(const float *theta, size_t n_classes, size_t n_features,
                           const float *X, const int *y, size_t n, double l2,
                           float *work, float *grad) {
    size_t R = mp_logreg_n_logits(n_classes), d = n_features;
    logits(theta, R, d, X, n, work, R);

    /* Cross-entropy per row, and work := P - Y (the logit residuals). */
    double ce = 0.0;
    if (R == 1) {
        for (size_t i = 0; i < n; i++) {
            float z = work[i];
            /* -log p(y) = softplus(z) - y z for y in {0, 1} */
            ce += (double)softplus(z) - (y[i] ? (double)z : 0.0);
            work[i] = sigmoid(z) - (float)y[i];
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            float *r = work + i * R;
            double zy = r[y[i]];
            ce += softmax(r, R) - zy;   /* -log p(y) = logsumexp(z) - z_y */
            r[y[i]] -= 1.0f;
        }
    }
    const float *W = theta;
    double loss = ce / (double)n;
    if (l2 > 0.0) loss += 0.5 * l2 * cblas_dsdot((blasint)(R * d), W, 1, W, 1);
    if (!grad) return loss;

    /* dW = (P - Y)^T X / n + l2 W;  db = column means of (P - Y). */
    float *gW = grad, *gb = grad + R * d;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)R, (blasint)d, (blasint)n,
                (float)(1.0 / (double)n), work, (blasint)R, X, (blasint)d, 0.0f, gW, (blasint)d);
    if (l2 > 0.0) cblas_saxpy((blasint)(R * d), (float)l2, W, 1, gW, 1);
    for (size_t j = 0; j < R; j++) {
        double s = 0.0;
        for (size_t i = 0; i < n; i++) s += work[i * R + j];
        gb[j] = (float)(s / (double)n);
    }
    return loss;
}

/* ---------------------------------------------------------------- model ops */

static int logreg_predict(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err) {
    const logreg *s = m->state;
    size_t d = s->n_features, k = s->n_classes, R = s->n_logits;
    if (X->n_cols != d)
        return MP_ERR(err, MP_E_DATA, MODULE ": model expects %zu features, got %zu", d,
                      X->n_cols);
    if (out->n_rows != X->n_rows || out->n_cols != k)
        return MP_ERR(err, MP_E_DATA, MODULE ": output is %zu x %zu, expected %zu x %zu",
                      out->n_rows, out->n_cols, X->n_rows, k);
    for (size_t i0 = 0; i0 < X->n_rows; i0 += PREDICT_BLOCK) {
        size_t nb = X->n_rows - i0 < PREDICT_BLOCK ? X->n_rows - i0 : PREDICT_BLOCK;
        const float *xb = X->data + i0 * d;
        float *ob = out->data + i0 * k;
        if (R == 1) {
            /* The one logit goes to column 1, then becomes [P(0), P(1)].
             * sigmoid(-z) rather than 1 - p keeps small P(0) accurate. */
            logits(s->theta, 1, d, xb, nb, ob + 1, 2);
            for (size_t i = 0; i < nb; i++) {
                float z = ob[2 * i + 1];
                ob[2 * i] = sigmoid(-z);
                ob[2 * i + 1] = sigmoid(z);
            }
        } else {
            logits(s->theta, R, d, xb, nb, ob, k);
            for (size_t i = 0; i < nb; i++) softmax(ob + i * k, k);
        }
    }
    return MP_OK;
}

static int logreg_save(const mp_model *m, mp_art_writer *w, const char *prefix, mp_err *err) {
    const logreg *s = m->state;
    size_t R = s->n_logits, d = s->n_features;
    char kw[256], kb[256], kn[256];
    if (!mp_art_key(kw, sizeof kw, MODULE, prefix, "weights", MP_E_IO, err) ||
        !mp_art_key(kb, sizeof kb, MODULE, prefix, "bias", MP_E_IO, err) ||
        !mp_art_key(kn, sizeof kn, MODULE, prefix, "n_classes", MP_E_IO, err))
        return err->code;
    if (mp_art_put_int(w, kn, (long long)s->n_classes) != MP_OK ||
        mp_art_put_floats(w, kw, s->theta, R * d) != MP_OK ||
        mp_art_put_floats(w, kb, s->theta + R * d, R) != MP_OK)
        return MP_ERR(err, MP_E_IO, MODULE ": cannot write model '%s'", prefix);
    return MP_OK;
}

static int logreg_load(mp_model *m, mp_art_reader *r, const char *prefix, mp_err *err) {
    char kw[256], kb[256], kn[256];
    if (!mp_art_key(kw, sizeof kw, MODULE, prefix, "weights", MP_E_PARSE, err) ||
        !mp_art_key(kb, sizeof kb, MODULE, prefix, "bias", MP_E_PARSE, err) ||
        !mp_art_key(kn, sizeof kn, MODULE, prefix, "n_classes", MP_E_PARSE, err))
        return err->code;
    long long k = 0;
    if (mp_art_get_int(r, kn, &k, err) != MP_OK) return err->code;
    /* The file's other fields must agree with what the stage saved. */
    if (k < 2 || (unsigned long long)k != m->n_outputs)
        return MP_ERR(err, MP_E_PARSE, MODULE ": '%s' is %lld but the model has %zu outputs",
                      kn, k, m->n_outputs);
    size_t d = m->n_features;
    if (d == 0 || !shape_ok((size_t)k, d))
        return MP_ERR(err, MP_E_PARSE, MODULE ": unusable model shape: %zu features, %lld classes",
                      d, k);
    logreg *s = logreg_new((size_t)k, d);
    if (!s) return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory loading the model");
    size_t R = s->n_logits, n = R * (d + 1);
    if (mp_art_get_floats(r, kw, s->theta, R * d, err) != MP_OK ||
        mp_art_get_floats(r, kb, s->theta + R * d, R, err) != MP_OK)
        goto fail;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(s->theta[i])) {
            MP_ERR(err, MP_E_PARSE, MODULE ": model parameter %zu is not a finite number", i);
            goto fail;
        }
    }
    m->state = s;
    return MP_OK;
fail:
    logreg_free(s);
    return err->code;
}

static const mp_model_ops logreg_model_ops = {
    .name = MODULE, .predict = logreg_predict, .save = logreg_save, .load = logreg_load,
    .free_state = logreg_free,
};

/* ---------------------------------------------------------------- stage */

static int logreg_check(const void *conf, mp_err *err) {
    const mp_logreg_conf *c = conf;
    /* The table's ranges are inclusive; these three must stay below 1. */
    if (c->momentum >= 1.0)
        return MP_ERR(err, MP_E_CONFIG, "momentum must be below 1, got %g", c->momentum);
    if (c->beta1 >= 1.0) return MP_ERR(err, MP_E_CONFIG, "beta1 must be below 1, got %g", c->beta1);
    if (c->beta2 >= 1.0) return MP_ERR(err, MP_E_CONFIG, "beta2 must be below 1, got %g", c->beta2);
    if (c->learning_rate * c->weight_decay >= 1.0)
        return MP_ERR(err, MP_E_CONFIG, "weight_decay * learning_rate must be below 1, got %g",
                      c->learning_rate * c->weight_decay);
    return MP_OK;
}

/* "line 37" of the source file when the loader kept line numbers, else
 * "row 36" (1-based) of the data set, for messages about row i. */
static void row_name(const mp_dataset *ds, size_t i, char *buf, size_t size) {
    if (ds->source_rows) snprintf(buf, size, "line %zu", ds->source_rows[i]);
    else snprintf(buf, size, "row %zu", i + 1);
}

/* Checks the training data and gives the class index of each row in
 * labels (n ints, allocated here on success). */
static int prepare_labels(const mp_dataset *ds, int **labels_out, mp_err *err) {
    size_t n = ds->X.n_rows, d = ds->X.n_cols, k = ds->n_classes;
    char where[64];
    for (size_t i = 0; i < n; i++) {
        const float *r = ds->X.data + i * d;
        for (size_t j = 0; j < d; j++) {
            if (!isfinite(r[j])) {
                row_name(ds, i, where, sizeof where);
                return MP_ERR(err, MP_E_DATA, "feature '%s' is not a finite number at %s",
                              ds->feature_names ? ds->feature_names[j] : "?", where);
            }
        }
    }
    int *labels = mp_malloc(mp_mul_size(n, sizeof *labels));
    bool *seen = mp_calloc(k, sizeof *seen);
    if (!labels || !seen) {
        MP_ERR(err, MP_E_NOMEM, "out of memory for %zu labels", n);
        goto fail;
    }
    size_t n_seen = 0;
    for (size_t i = 0; i < n; i++) {
        double v = ds->y[i];
        if (!(v >= 0.0 && v < (double)k && v == floor(v))) {
            row_name(ds, i, where, sizeof where);
            MP_ERR(err, MP_E_DATA, "%s: label %g is not a class index below %zu", where, v, k);
            goto fail;
        }
        labels[i] = (int)v;
        if (!seen[labels[i]]) {
            seen[labels[i]] = true;
            n_seen++;
        }
    }
    if (n_seen < 2) {
        if (ds->class_names)
            MP_ERR(err, MP_E_DATA, MODULE " needs at least 2 classes, the training rows hold "
                   "only '%s'", ds->class_names[labels[0]]);
        else
            MP_ERR(err, MP_E_DATA, MODULE " needs at least 2 classes, the training rows hold "
                   "only class %d", labels[0]);
        goto fail;
    }
    mp_free(seen);
    *labels_out = labels;
    return MP_OK;
fail:
    mp_free(labels);
    mp_free(seen);
    return err->code;
}

/* Buffers of one training run.  train_release frees them on every path. */
typedef struct trainer {
    const mp_logreg_conf *c;
    const mp_dataset *ds;
    size_t  n, d, k, R;     /* rows, features, classes, logits */
    size_t  batch;          /* rows per mini-batch (the last one may be short) */
    int    *labels;         /* n class indices */
    size_t *order;          /* n row indices, reshuffled each epoch (shuffle only) */
    float  *xb;             /* batch x d gathered rows (shuffle only) */
    int    *yb;             /* batch gathered labels (shuffle only) */
    float  *work;           /* batch x R logits, then residuals */
    float  *grad;           /* R * (d + 1), laid out as theta */
    mp_optim *opt;
    mp_rng  rng;            /* the shuffle stream (shuffle only) */
} trainer;

static void train_release(trainer *t) {
    mp_optim_free(t->opt);
    mp_free(t->labels);
    mp_free(t->order);
    mp_free(t->xb);
    mp_free(t->yb);
    mp_free(t->work);
    mp_free(t->grad);
}

static int train_init(trainer *t, const mp_logreg_conf *c, mp_ctx *ctx, const mp_dataset *ds,
                      mp_err *err) {
    *t = (trainer){ .c = c, .ds = ds, .n = ds->X.n_rows, .d = ds->X.n_cols,
                    .k = ds->n_classes, .R = mp_logreg_n_logits(ds->n_classes) };
    size_t n = t->n, d = t->d, R = t->R, widest = R > d ? R : d;
    t->batch = (size_t)c->batch_size < n ? (size_t)c->batch_size : n;
    if (t->batch > INT_MAX / widest) t->batch = INT_MAX / widest;   /* cblas int sizes */
    if (prepare_labels(ds, &t->labels, err) != MP_OK) return err->code;
    t->work = mp_malloc(mp_mul_size(t->batch, R * sizeof(float)));
    t->grad = mp_malloc(mp_mul_size(R * (d + 1), sizeof(float)));
    bool ok = t->work && t->grad;
    if (c->shuffle) {   /* without shuffling, batches are read in place */
        t->order = mp_malloc(mp_mul_size(n, sizeof *t->order));
        t->xb = mp_malloc(mp_mul_size(t->batch, d * sizeof(float)));
        t->yb = mp_malloc(mp_mul_size(t->batch, sizeof(int)));
        ok = ok && t->order && t->xb && t->yb;
    }
    if (!ok)
        return MP_ERR(err, MP_E_NOMEM, "out of memory training on %zu rows x %zu features", n, d);
    if (c->shuffle) {
        for (size_t i = 0; i < n; i++) t->order[i] = i;
        mp_ctx_rng(ctx, 0, &t->rng);
    }
    mp_optim_conf oc = { .kind = c->optimizer, .learning_rate = c->learning_rate,
                         .momentum = c->momentum, .beta1 = c->beta1, .beta2 = c->beta2,
                         .eps = ADAM_EPS, .weight_decay = c->weight_decay };
    return mp_optim_new(&oc, R * (d + 1), &t->opt, err);
}

/* One pass over the rows in mini-batches, updating theta.  *loss gets the
 * epoch's loss: the mean of the batch objectives weighted by batch rows
 * (what the steps actually minimised, without a second pass). */
static int train_epoch(trainer *t, mp_ctx *ctx, float *theta, int epoch, double *loss,
                       mp_err *err) {
    const mp_logreg_conf *c = t->c;
    size_t n = t->n, d = t->d, n_w = t->R * d;
    if (c->shuffle) mp_rng_shuffle(&t->rng, t->order, n);
    double sum = 0.0;
    for (size_t i0 = 0; i0 < n; i0 += t->batch) {
        if (mp_ctx_cancelled(ctx))
            return MP_ERR(err, MP_E_CANCELLED, "interrupted at epoch %d", epoch);
        mp_ctx_progress(ctx, "epoch", epoch - 1 + (double)i0 / (double)n, c->epochs);
        size_t nb = n - i0 < t->batch ? n - i0 : t->batch;
        const float *x = t->ds->X.data + i0 * d;
        const int *y = t->labels + i0;
        if (c->shuffle) {
            for (size_t i = 0; i < nb; i++) {
                size_t r = t->order[i0 + i];
                memcpy(t->xb + i * d, t->ds->X.data + r * d, d * sizeof(float));
                t->yb[i] = t->labels[r];
            }
            x = t->xb;
            y = t->yb;
        }
        double bl = mp_logreg_loss_grad(theta, t->k, d, x, y, nb, c->l2, t->work, t->grad);
        if (!isfinite(bl))
            return MP_ERR(err, MP_E_NUMERIC,
                          "loss is not finite at epoch %d (try a lower learning_rate)", epoch);
        sum += bl * (double)nb;
        /* Weights are decayed; the bias, as in the L2 term, is not. */
        mp_optim_tick(t->opt);
        mp_optim_step_range(t->opt, 0, n_w, theta, t->grad);
        mp_optim_step_range_nodecay(t->opt, n_w, t->R, theta, t->grad + n_w);
    }
    *loss = sum / (double)n;
    return MP_OK;
}

/* Runs the epochs with early stopping; the summary goes to the info log. */
static int train(trainer *t, mp_ctx *ctx, float *theta, mp_err *err) {
    const mp_logreg_conf *c = t->c;
    double loss = NAN, best = INFINITY;
    int epoch = 0, stale = 0;
    bool early = false;
    while (epoch < c->epochs && !early) {
        epoch++;
        if (train_epoch(t, ctx, theta, epoch, &loss, err) != MP_OK) return err->code;
        int rc = mp_ctx_metric(ctx, "train.loss", loss, epoch, err);
        if (rc != MP_OK) {
            if (err->code == MP_OK) MP_ERR(err, rc, "cannot record metric train.loss");
            return err->code;
        }
        mp_log(MP_LOG_DEBUG, MODULE ": epoch %d loss %.6g", epoch, loss);
        /* Early stop, as scikit-learn's SGD does: an epoch counts as progress
         * when it beats the best loss so far by more than tol (relative). */
        if (c->tol > 0.0) {
            if (epoch > 1 && loss > best - c->tol * fabs(best)) stale++;
            else stale = 0;
            if (loss < best) best = loss;
            early = stale >= c->n_iter_no_change;
        }
    }
    if (early)
        mp_log(MP_LOG_INFO,
               MODULE ": epoch %d loss %.6g (stopped early: under %g relative improvement "
               "for %d epochs)", epoch, loss, c->tol, c->n_iter_no_change);
    else
        mp_log(MP_LOG_INFO, MODULE ": epoch %d loss %.6g", epoch, loss);
    return MP_OK;
}

static int logreg_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const mp_logreg_conf *c = st->conf;
    mp_dataset *ds = ctx->train;
    if (!ds) return MP_ERR(err, MP_E_DATA, "no data to train on (add a load stage)");
    if (ds->task == MP_TASK_NONE || !ds->y)
        return MP_ERR(err, MP_E_DATA,
                      MODULE " needs a target column (set target: in the load stage)");
    if (ds->task == MP_TASK_REGRESSION) {
        /* Numeric labels become classes; encode the test split with the same
         * class list when it is still numeric too (the executor normally has
         * done both right after loading). */
        mp_dataset *test = ctx->test && ctx->test->task == MP_TASK_REGRESSION ? ctx->test : NULL;
        if (mp_dataset_encode_labels_pair(ds, test, err) != MP_OK) return err->code;
    }
    size_t n = ds->X.n_rows, d = ds->X.n_cols, k = ds->n_classes;
    if (n == 0) return MP_ERR(err, MP_E_DATA, "no training rows");
    if (d == 0) return MP_ERR(err, MP_E_DATA, "no feature columns to train on");
    if (k < 2)
        return MP_ERR(err, MP_E_DATA, MODULE " needs at least 2 classes, the target has %zu", k);
    if (!shape_ok(k, d))
        return MP_ERR(err, MP_E_DATA, "too large for " MODULE ": %zu features x %zu classes", d, k);
    mp_log(MP_LOG_DEBUG, MODULE ": %zu rows, %zu features, %zu classes (%s), batch %d", n, d, k,
           k == 2 ? "sigmoid" : "softmax", c->batch_size);

    trainer t = { 0 };
    logreg *s = logreg_new(k, d);   /* zero weights: the loss is convex */
    mp_model *m = mp_calloc(1, sizeof *m);
    int rc = s && m ? MP_OK : MP_ERR(err, MP_E_NOMEM, "out of memory for a %zu x %zu model", k, d);
    if (rc == MP_OK) rc = train_init(&t, c, ctx, ds, err);
    if (rc == MP_OK) rc = train(&t, ctx, s->theta, err);
    train_release(&t);
    if (rc != MP_OK) {
        logreg_free(s);
        mp_free(m);
        return rc;
    }
    *m = (mp_model){ .ops = &logreg_model_ops, .state = s, .task = MP_TASK_CLASSIFICATION,
                     .n_features = d, .n_outputs = k, .has_proba = true };
    mp_model_free(ctx->model);
    ctx->model = m;
    ctx->train_module = MODULE;
    return MP_OK;
}

static const mp_param logreg_params[] = {
    { "optimizer", MP_P_ENUM, offsetof(mp_logreg_conf, optimizer), "adam", 0, 0, 0,
      MP_OPTIM_CHOICES, "gradient-descent variant" },
    { "learning_rate", MP_P_DOUBLE, offsetof(mp_logreg_conf, learning_rate), "0.01",
      MP_PF_RANGE | MP_PF_MIN_OPEN, 0.0, INFINITY, NULL, "step size" },
    { "epochs", MP_P_INT, offsetof(mp_logreg_conf, epochs), "100", MP_PF_RANGE, 1, INFINITY, NULL,
      "passes over the training rows (at most)" },
    { "batch_size", MP_P_INT, offsetof(mp_logreg_conf, batch_size), "32", MP_PF_RANGE, 1, INFINITY,
      NULL, "rows per gradient step" },
    { "l2", MP_P_DOUBLE, offsetof(mp_logreg_conf, l2), "0", MP_PF_RANGE, 0.0, INFINITY, NULL,
      "L2 penalty 0.5*l2*||W||^2 added to the mean loss (bias not penalised)" },
    { "momentum", MP_P_DOUBLE, offsetof(mp_logreg_conf, momentum), "0.9", MP_PF_RANGE, 0.0, 1.0,
      NULL, "velocity decay of the momentum optimizer, below 1" },
    { "beta1", MP_P_DOUBLE, offsetof(mp_logreg_conf, beta1), "0.9", MP_PF_RANGE, 0.0, 1.0, NULL,
      "adam first-moment decay, below 1" },
    { "beta2", MP_P_DOUBLE, offsetof(mp_logreg_conf, beta2), "0.999", MP_PF_RANGE, 0.0, 1.0, NULL,
      "adam second-moment decay, below 1" },
    { "weight_decay", MP_P_DOUBLE, offsetof(mp_logreg_conf, weight_decay), "0", MP_PF_RANGE, 0.0,
      INFINITY, NULL, "decoupled weight decay: w -= learning_rate*weight_decay*w each step" },
    { "tol", MP_P_DOUBLE, offsetof(mp_logreg_conf, tol), "1e-4", MP_PF_RANGE, 0.0, INFINITY, NULL,
      "stop when the epoch loss improves by less than this (relative); 0 = never" },
    { "n_iter_no_change", MP_P_INT, offsetof(mp_logreg_conf, n_iter_no_change), "5", MP_PF_RANGE,
      1, INFINITY, NULL, "epochs in a row without tol improvement before stopping" },
    { "shuffle", MP_P_BOOL, offsetof(mp_logreg_conf, shuffle), "true", 0, 0, 0, NULL,
      "reshuffle the rows every epoch (seeded)" },
    { 0 }
};

const mp_stage_ops mp_stage_logistic_regression = {
    .abi = MP_STAGE_ABI, .name = MODULE, .kind = MP_KIND_TRAIN,
    .doc = "logistic regression (sigmoid / softmax) by mini-batch gradient descent",
    .params = logreg_params, .conf_size = sizeof(mp_logreg_conf), .check = logreg_check,
    .run = logreg_run, .model = &logreg_model_ops, .task = MP_TASK_CLASSIFICATION,
};
