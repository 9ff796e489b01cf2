/*
 * mlp.c -- `train: mlp`: a multi-layer perceptron (fully connected layers,
 * relu/tanh/sigmoid hidden units) trained by mini-batch gradient descent with
 * the shared optimizers (stages/optim.c).  Classification puts a softmax on
 * the output layer and minimises the mean cross-entropy; regression uses a
 * linear output and the mean squared error.
 *
 * The network, its parameter layout and the loss are described in mlp.h.
 * Per mini-batch of B rows, each layer costs three float32 sgemm calls, all
 * with row-major operands straight from the layout (no transposed copies):
 *
 *     forward     Z_l  = A_{l-1} W_l^T            (B x out)   NoTrans, Trans
 *     backward    dW_l = dZ_l^T A_{l-1}           (out x in)  Trans, NoTrans
 *                 dA_{l-1} = dZ_l W_l             (B x in)    NoTrans, NoTrans
 *
 * except that the first layer needs no dA (nothing below it learns).  Bias
 * and activation are one fused pass over Z after the sgemm; the activation
 * derivative is taken from A itself (relu: A > 0, tanh: 1 - A^2, sigmoid:
 * A (1 - A)), so Z is never kept.  The bias gradients are column sums of dZ.
 * All scratch lives in one mp_mlp_work allocated once per training run; the
 * mini-batch rows are gathered into one contiguous buffer.
 *
 * Where the time goes (Fashion-MNIST 784-512-10, batch 32, one thread, by
 * perf): the sgemm calls, mostly the forward and dW products of the first
 * layer (~26 MFLOP each), take about two thirds, the Adam update of the 407k
 * parameters (stages/optim.c, vector code) about a sixth, the activations
 * and the batch gathering the rest.  Neither parallelises well through
 * OpenBLAS' own threads at this batch size, so the stage runs its own small
 * team of threads that split every layer by units; see "team" below.
 *
 * Targets.  The stage table says MP_TASK_CLASSIFICATION, so the executor
 * turns a numeric target into classes right after loading (named by their
 * values, exactly).  With `task: regression` the stage turns such classes
 * back into the numbers their names spell, in ctx->train and ctx->test,
 * so the model, `evaluate: regression` and the exported file all see the
 * original values.  A target whose class names are not numbers is an error.
 */
#include "mlp.h"

#include <cblas.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "optim.h"

#define MODULE "mlp"
#define EVAL_ROWS 1024      /* rows per forward pass in predict and validation */
#define MAX_LAYERS 1024     /* weight layers; bounds what a model file may claim */
#define ADAM_EPS 1e-8       /* PyTorch's default (Keras uses 1e-7) */
#define OUT_SOFTMAX "softmax"
#define OUT_LINEAR "linear"

/* Random streams of mp_ctx_rng, so each choice is independent of the others. */
enum { STREAM_SHUFFLE = 0, STREAM_SPLIT = 1, STREAM_INIT = 2 };

static const char *const activation_names[] = { "relu", "tanh", "sigmoid" };
_Static_assert(sizeof activation_names / sizeof *activation_names == MP_MLP_SIGMOID + 1,
               "activation_names");

/* ---------------------------------------------------------------- network */

size_t mp_mlp_n_params(const size_t *sizes, size_t n_layers) {
    if (n_layers == 0) return SIZE_MAX;
    size_t total = 0;
    for (size_t l = 0; l < n_layers; l++) {
        size_t in = sizes[l], out = sizes[l + 1];
        if (in == 0 || out == 0 || in == SIZE_MAX) return SIZE_MAX;
        size_t k = mp_mul_size(out, in + 1);    /* W_l and b_l */
        if (k == SIZE_MAX || k >= SIZE_MAX - total) return SIZE_MAX;
        total += k;
    }
    return total;
}

/* True when every width fits cblas' int arguments and the block's bytes fit
 * a size_t: then every size and index below is representable. */
static bool shape_ok(const size_t *sizes, size_t n_layers) {
    if (n_layers == 0 || n_layers > MAX_LAYERS) return false;
    for (size_t l = 0; l <= n_layers; l++)
        if (sizes[l] == 0 || sizes[l] > INT_MAX) return false;
    size_t n = mp_mlp_n_params(sizes, n_layers);
    return n != SIZE_MAX && mp_mul_size(n, sizeof(float)) != SIZE_MAX;
}

mp_mlp *mp_mlp_new(const size_t *sizes, size_t n_layers, int activation, bool softmax) {
    if (!shape_ok(sizes, n_layers)) return NULL;
    size_t n = mp_mlp_n_params(sizes, n_layers);
    /* struct, then sizes (L + 1) and offset (L), then the floats: the struct
     * and the size_t arrays keep the floats aligned. */
    size_t head = sizeof(mp_mlp) + (2 * n_layers + 1) * sizeof(size_t);
    size_t bytes = n * sizeof(float);
    if (bytes > SIZE_MAX - head) return NULL;
    mp_mlp *net = mp_calloc(1, head + bytes);
    if (!net) return NULL;
    net->n_layers = n_layers;
    net->activation = activation;
    net->softmax = softmax;
    net->n_params = n;
    net->sizes = (size_t *)(net + 1);
    net->offset = net->sizes + n_layers + 1;
    net->params = (float *)(net->offset + n_layers);
    memcpy(net->sizes, sizes, (n_layers + 1) * sizeof *sizes);
    size_t off = 0;
    for (size_t l = 0; l < n_layers; l++) {
        net->offset[l] = off;
        off += sizes[l + 1] * (sizes[l] + 1);
    }
    return net;
}

void mp_mlp_free(mp_mlp *net) { mp_free(net); }

static void mlp_free_state(void *state) { mp_mlp_free(state); }

const mp_mlp *mp_mlp_of_model(const mp_model *m) { return m->state; }

/* Weights of layer l (W_l; b_l follows it). */
static float *layer_w(const mp_mlp *net, size_t l) { return net->params + net->offset[l]; }

static size_t layer_n_w(const mp_mlp *net, size_t l) {
    return net->sizes[l + 1] * net->sizes[l];
}

/* ---------------------------------------------------------------- scratch */

struct mp_mlp_work {
    size_t  max_rows;   /* rows per pass, >= 1 */
    float **act;        /* L buffers, act[l] is max_rows x sizes[l+1]: A_l; the last one
                           holds the output layer's Z, then dLoss/dZ */
    float **dz;         /* L - 1 buffers shaped as act[0 .. L-2]: dLoss/dZ_l of the hidden
                           layers (kept apart from A_l, which other threads may still read) */
};

int mp_mlp_work_new(const mp_mlp *net, size_t max_rows, mp_mlp_work **out, mp_err *err) {
    size_t L = net->n_layers, widths = 0;
    for (size_t l = 1; l <= L; l++) widths += net->sizes[l];  /* <= L * INT_MAX: no overflow */
    size_t hidden = widths - net->sizes[L];
    size_t floats = mp_mul_size(max_rows, widths + hidden);
    size_t head = sizeof(mp_mlp_work) + (2 * L) * sizeof(float *);
    size_t bytes = mp_mul_size(floats, sizeof(float));
    mp_mlp_work *w = bytes <= SIZE_MAX - head ? mp_malloc(head + bytes) : NULL;
    if (!w)
        return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %zu rows of activations",
                      max_rows);
    w->max_rows = max_rows;
    w->act = (float **)(w + 1);
    w->dz = w->act + L;
    float *p = (float *)(w->dz + L);
    for (size_t l = 0; l < L; l++) {
        w->act[l] = p;
        p += max_rows * net->sizes[l + 1];
    }
    for (size_t l = 0; l + 1 < L; l++) {
        w->dz[l] = p;
        p += max_rows * net->sizes[l + 1];
    }
    w->dz[L - 1] = w->act[L - 1];
    *out = w;
    return MP_OK;
}

void mp_mlp_work_free(mp_mlp_work *w) { mp_free(w); }

/* ---------------------------------------------------------------- math */

/* Monotonic wall clock in seconds, for the per-epoch log line. */
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* 1 / (1 + e^-z) without overflow for either sign of z. */
static float sigmoid(float z) {
    if (z >= 0.0f) return 1.0f / (1.0f + expf(-z));
    float e = expf(z);
    return e / (1.0f + e);
}

/* Z := f(Z + b) on m columns of n rows (row stride ld); act < 0 is the
 * identity (output layer).  The switch is outside the loops so that each
 * inner loop is one simple pass. */
static void bias_activate(float *Z, size_t ld, const float *b, size_t n, size_t m, int act) {
    for (size_t i = 0; i < n; i++) {
        float *z = Z + i * ld;
        switch (act) {
        case MP_MLP_RELU:
            /* "v > 0 ? v : 0" (not fmaxf) is one maxss/maxps and maps NaN to 0;
             * a NaN weight still reaches the loss through the next layer. */
            for (size_t j = 0; j < m; j++) {
                float v = z[j] + b[j];
                z[j] = v > 0.0f ? v : 0.0f;
            }
            break;
        case MP_MLP_TANH:
            for (size_t j = 0; j < m; j++) z[j] = tanhf(z[j] + b[j]);
            break;
        case MP_MLP_SIGMOID:
            for (size_t j = 0; j < m; j++) z[j] = sigmoid(z[j] + b[j]);
            break;
        default:
            for (size_t j = 0; j < m; j++) z[j] += b[j];
            break;
        }
    }
}

/* D := D * f'(Z) on m columns of n rows (row stride ld for both), with f'
 * written in terms of A = f(Z): relu A > 0, tanh 1 - A^2, sigmoid A (1 - A). */
static void activation_backward(float *D, const float *A, size_t ld, size_t n, size_t m,
                                int act) {
    for (size_t i = 0; i < n; i++) {
        float *d = D + i * ld;
        const float *a = A + i * ld;
        switch (act) {
        case MP_MLP_RELU:
            for (size_t j = 0; j < m; j++) d[j] = a[j] > 0.0f ? d[j] : 0.0f;
            break;
        case MP_MLP_TANH:
            for (size_t j = 0; j < m; j++) d[j] *= 1.0f - a[j] * a[j];
            break;
        default:    /* sigmoid */
            for (size_t j = 0; j < m; j++) d[j] *= a[j] * (1.0f - a[j]);
            break;
        }
    }
}

/* Softmax of the k logits in r, in place; returns log(sum(exp(r))). */
static double softmax(float *r, size_t k) {
    float mx = r[0];
    for (size_t j = 1; j < k; j++) mx = r[j] > mx ? r[j] : mx;
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

/* Index of the largest of k values (the first on ties). */
static size_t argmax(const float *r, size_t k) {
    size_t best = 0;
    for (size_t j = 1; j < k; j++)
        if (r[j] > r[best]) best = j;
    return best;
}

/* ---------------------------------------------------------------- team */

/*
 * Training threads.  Two cores and a mini-batch of 32 rows leave OpenBLAS'
 * own threading little to work with (it splits each call and hands off
 * through its queue: measured slower than one thread here), and the Adam
 * update, a sixth of a step, is not a BLAS call at all.  So the network is
 * split instead: every layer's units are shared out in contiguous slices
 * (see share), and each member of a small team runs single-threaded sgemm
 * calls on its own slices -- the forward rows of W_l, the rows of dW_l, the
 * columns of dA -- and then steps its own slices of the parameters with the
 * shared optimizer (mp_optim_step_range touches only its slots).  The members
 * meet at a barrier after every layer, where the next layer needs the whole
 * of the previous one.
 *
 * Member 0 is the calling thread; members 1 .. n-1 are workers that wait at
 * the start barrier between passes.  The barrier spins (a pass is ~1 ms and
 * barriers ~6 per pass, so sleeping in the kernel would cost more than it
 * saves), then yields the core.
 */
#define MAX_THREADS 64
#define MIN_UNITS 64            /* fewest units of a layer worth a thread of their own */
#define SPINS_BEFORE_YIELD 4096

typedef struct pass pass;
typedef struct team team;

typedef struct worker {
    team     *tm;
    int       id;               /* member number, 1 .. n-1 */
    pthread_t thread;
} worker;

struct team {
    int         n;              /* members; 1 = no threads, every sync is a no-op */
    atomic_uint arrived;        /* members at the current barrier */
    atomic_uint phase;          /* bumped each time the barrier opens */
    atomic_int  go;             /* start gate: 1 = run, -1 = exit at once (start failed) */
    pass       *job;            /* the current pass; NULL tells the workers to exit */
    worker     *workers;        /* n - 1 */
};

/* Units [*lo, *hi) of a layer of `units` that member id of `members`
 * computes: equal contiguous slices, but no slice under MIN_UNITS units (a
 * small layer goes to member 0 alone). */
static void share(size_t units, int members, int id, size_t *lo, size_t *hi) {
    size_t active = units / MIN_UNITS;
    if (active < 1) active = 1;
    if (active > (size_t)members) active = (size_t)members;
    if ((size_t)id >= active) {
        *lo = *hi = 0;
        return;
    }
    *lo = units * (size_t)id / active;
    *hi = units * ((size_t)id + 1) / active;
}

/* Waits until all members arrive.  The arrivals' acq_rel and the opening's
 * release order every write before the barrier before every read after it. */
static void team_sync(team *tm) {
    if (!tm || tm->n == 1) return;
    unsigned phase = atomic_load_explicit(&tm->phase, memory_order_acquire);
    unsigned before = atomic_fetch_add_explicit(&tm->arrived, 1, memory_order_acq_rel);
    if (before + 1 == (unsigned)tm->n) {
        atomic_store_explicit(&tm->arrived, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&tm->phase, 1, memory_order_release);
        return;
    }
    for (unsigned spins = 0; atomic_load_explicit(&tm->phase, memory_order_acquire) == phase;
         spins++)
        if (spins >= SPINS_BEFORE_YIELD) sched_yield();
}

static void pass_run(pass *p, team *tm, int id);

static void *worker_main(void *arg) {
    worker *wk = arg;
    team *tm = wk->tm;
    int go;
    while ((go = atomic_load_explicit(&tm->go, memory_order_acquire)) == 0) sched_yield();
    if (go < 0) return NULL;
    for (;;) {
        team_sync(tm);              /* start of a pass: tm->job is set */
        pass *p = tm->job;
        if (!p) return NULL;
        pass_run(p, tm, wk->id);
        team_sync(tm);              /* end of the pass */
    }
}

/* Starts n - 1 workers (n <= MAX_THREADS).  If the system refuses a thread,
 * the team carries on with none (tm->n = 1): slower, not wrong. */
static int team_start(team *tm, int n, mp_err *err) {
    *tm = (team){ .n = 1 };
    atomic_init(&tm->arrived, 0);
    atomic_init(&tm->phase, 0);
    atomic_init(&tm->go, 0);
    if (n <= 1) return MP_OK;
    if (!(tm->workers = mp_calloc((size_t)n - 1, sizeof *tm->workers)))
        return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory for %d threads", n);
    int started = 0;
    for (int i = 1; i < n; i++) {
        worker *wk = &tm->workers[i - 1];
        *wk = (worker){ .tm = tm, .id = i };
        if (pthread_create(&wk->thread, NULL, worker_main, wk) != 0) break;
        started++;
    }
    if (started < n - 1) {
        atomic_store_explicit(&tm->go, -1, memory_order_release);
        for (int i = 0; i < started; i++) pthread_join(tm->workers[i].thread, NULL);
        mp_free(tm->workers);
        tm->workers = NULL;
        mp_log(MP_LOG_WARN, MODULE ": could not start %d threads; training on one", n);
        return MP_OK;
    }
    tm->n = n;          /* written before the gate opens: every worker reads it after */
    atomic_store_explicit(&tm->go, 1, memory_order_release);
    return MP_OK;
}

/* Runs p on every member and returns when all are done. */
static void team_run(team *tm, pass *p) {
    if (tm->n == 1) {
        pass_run(p, NULL, 0);
        return;
    }
    tm->job = p;
    team_sync(tm);
    pass_run(p, tm, 0);
    team_sync(tm);
}

static void team_stop(team *tm) {
    if (tm->n > 1) {
        tm->job = NULL;
        team_sync(tm);      /* the workers see no job and return */
        for (int i = 0; i < tm->n - 1; i++) pthread_join(tm->workers[i].thread, NULL);
    }
    mp_free(tm->workers);
    *tm = (team){ .n = 1 };
}

/* ---------------------------------------------------------------- passes */

/* One forward (and maybe backward and update) pass over a block of rows. */
struct pass {
    mp_mlp_work  *w;
    const mp_mlp *net;          /* its params are updated in place when opt is set */
    const float  *X;            /* n x sizes[0] rows */
    size_t        n;            /* 1 .. w->max_rows */
    const int    *labels;       /* n class indices (softmax nets) */
    const float  *targets;      /* n x sizes[L] targets (linear nets) */
    float        *grad;         /* n_params floats, or NULL: forward and loss only */
    mp_optim     *opt;          /* set: step each member's slices after the backward
                                   pass (the caller has ticked it) */
    double        loss;         /* out: the mean loss (member 0 computes it) */
    size_t        correct;      /* out: rows whose argmax is the label */
};

/* Forward through every layer: act[l] = A_l; the last buffer gets the output
 * layer's Z, without softmax.  Member id computes its slice of each layer. */
static void forward(mp_mlp_work *w, const mp_mlp *net, const float *X, size_t n, team *tm,
                    int id) {
    int members = tm ? tm->n : 1;
    const float *in = X;
    for (size_t l = 0; l < net->n_layers; l++) {
        size_t n_in = net->sizes[l], n_out = net->sizes[l + 1], lo, hi;
        const float *W = layer_w(net, l), *b = W + n_out * n_in;
        float *out = w->act[l];
        share(n_out, members, id, &lo, &hi);
        if (lo < hi) {
            /* Z[:, lo:hi] = A_{l-1} W[lo:hi, :]^T */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)(hi - lo),
                        (blasint)n_in, 1.0f, in, (blasint)n_in, W + lo * n_in, (blasint)n_in,
                        0.0f, out + lo, (blasint)n_out);
            bias_activate(out + lo, n_out, b + lo, n, hi - lo,
                          l + 1 < net->n_layers ? net->activation : -1);
        }
        team_sync(tm);      /* the next layer reads all of A_l */
        in = out;
    }
}

/* The loss of the output layer's Z, turned in place into dLoss/dZ when a
 * gradient is wanted. */
static void output_loss(pass *p) {
    const mp_mlp *net = p->net;
    size_t n = p->n, k = net->sizes[net->n_layers], correct = 0;
    float *Z = p->w->act[net->n_layers - 1];
    double sum = 0.0;
    if (net->softmax) {
        /* -log p(y) = logsumexp(z) - z_y; dLoss/dz = (p - onehot(y)) / n */
        float scale = (float)(1.0 / (double)n);
        for (size_t i = 0; i < n; i++) {
            float *r = Z + i * k;
            size_t y = (size_t)p->labels[i];
            double zy = r[y];
            correct += argmax(r, k) == y;
            sum += softmax(r, k) - zy;
            if (p->grad) {
                for (size_t j = 0; j < k; j++) r[j] *= scale;
                r[y] -= scale;
            }
        }
        sum /= (double)n;
    } else {
        /* mean of (z - t)^2 over n * k values; dLoss/dz = 2 (z - t) / (n k) */
        float scale = (float)(2.0 / ((double)n * (double)k));
        for (size_t i = 0; i < n * k; i++) {
            float e = Z[i] - p->targets[i];
            sum += (double)e * e;
            Z[i] = e * scale;
        }
        sum /= (double)n * (double)k;
    }
    p->loss = sum;
    p->correct = correct;
}

/* Backward through every layer, from dZ of the output layer (in act[L-1])
 * to grad.  Member id computes its rows of each dW_l and db_l and its
 * columns of each dZ_{l-1}. */
static void backward(pass *p, team *tm, int id) {
    mp_mlp_work *w = p->w;
    const mp_mlp *net = p->net;
    int members = tm ? tm->n : 1;
    size_t n = p->n;
    for (size_t l = net->n_layers; l-- > 0;) {
        size_t n_in = net->sizes[l], n_out = net->sizes[l + 1], lo, hi;
        const float *in = l ? w->act[l - 1] : p->X;
        const float *dZ = w->dz[l];
        float *gW = p->grad + net->offset[l], *gb = gW + n_out * n_in;
        share(n_out, members, id, &lo, &hi);
        if (lo < hi) {
            /* dW[lo:hi, :] = dZ[:, lo:hi]^T A_{l-1} */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)(hi - lo),
                        (blasint)n_in, (blasint)n, 1.0f, dZ + lo, (blasint)n_out, in,
                        (blasint)n_in, 0.0f, gW + lo * n_in, (blasint)n_in);
            /* db[lo:hi] = column sums of dZ, row by row (contiguous inner loop) */
            memcpy(gb + lo, dZ + lo, (hi - lo) * sizeof *gb);
            for (size_t i = 1; i < n; i++) {
                const float *r = dZ + i * n_out;
                for (size_t j = lo; j < hi; j++) gb[j] += r[j];
            }
        }
        if (l > 0) {    /* the input itself needs no gradient */
            /* dZ_{l-1}[:, lo:hi] = (dZ W[:, lo:hi]) * f'(Z_{l-1}[:, lo:hi]), the
             * columns being the units of layer l-1, shared out as in forward */
            share(n_in, members, id, &lo, &hi);
            if (lo < hi) {
                float *dprev = w->dz[l - 1];
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)n,
                            (blasint)(hi - lo), (blasint)n_out, 1.0f, dZ, (blasint)n_out,
                            layer_w(net, l) + lo, (blasint)n_in, 0.0f, dprev + lo,
                            (blasint)n_in);
                activation_backward(dprev + lo, w->act[l - 1] + lo, n_in, n, hi - lo,
                                    net->activation);
            }
        }
        team_sync(tm);      /* the next layer down reads all of dZ_{l-1} */
    }
}

/* The optimizer step on member id's slices: the rows of W_l (decayed) and
 * the entries of b_l (not decayed) of the units it computed. */
static void update(pass *p, int members, int id) {
    const mp_mlp *net = p->net;
    for (size_t l = 0; l < net->n_layers; l++) {
        size_t n_in = net->sizes[l], n_out = net->sizes[l + 1], lo, hi;
        share(n_out, members, id, &lo, &hi);
        if (lo == hi) continue;
        size_t w_off = net->offset[l] + lo * n_in, b_off = net->offset[l] + n_out * n_in + lo;
        mp_optim_step_range(p->opt, w_off, (hi - lo) * n_in, net->params, p->grad + w_off);
        mp_optim_step_range_nodecay(p->opt, b_off, hi - lo, net->params, p->grad + b_off);
    }
}

/* Member id's part of pass p; tm is NULL when the caller works alone. */
static void pass_run(pass *p, team *tm, int id) {
    forward(p->w, p->net, p->X, p->n, tm, id);
    if (id == 0) output_loss(p);
    if (!p->grad) return;
    team_sync(tm);          /* everyone waits for dLoss/dZ */
    backward(p, tm, id);    /* ends at a barrier: no one reads W any more */
    if (p->opt) update(p, tm ? tm->n : 1, id);
}

double mp_mlp_loss_grad(mp_mlp_work *w, const mp_mlp *net, const float *X, size_t n,
                        const int *labels, const float *targets, float *grad, size_t *n_correct) {
    pass p = { .w = w, .net = net, .X = X, .n = n, .labels = labels, .targets = targets,
               .grad = grad };
    pass_run(&p, NULL, 0);
    if (n_correct) *n_correct = p.correct;
    return p.loss;
}

/* ---------------------------------------------------------------- model ops */

static int mlp_predict(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err) {
    const mp_mlp *net = m->state;
    size_t d = net->sizes[0], k = net->sizes[net->n_layers], n = X->n_rows;
    if (X->n_cols != d)
        return MP_ERR(err, MP_E_DATA, MODULE ": model expects %zu features, got %zu", d,
                      X->n_cols);
    if (out->n_rows != n || out->n_cols != k)
        return MP_ERR(err, MP_E_DATA, MODULE ": output is %zu x %zu, expected %zu x %zu",
                      out->n_rows, out->n_cols, n, k);
    if (n == 0) return MP_OK;
    mp_mlp_work *w = NULL;
    if (mp_mlp_work_new(net, n < EVAL_ROWS ? n : EVAL_ROWS, &w, err) != MP_OK) return err->code;
    for (size_t i0 = 0; i0 < n; i0 += w->max_rows) {
        size_t nb = n - i0 < w->max_rows ? n - i0 : w->max_rows;
        forward(w, net, X->data + i0 * d, nb, NULL, 0);
        float *ob = out->data + i0 * k;
        memcpy(ob, w->act[net->n_layers - 1], nb * k * sizeof *ob);
        if (net->softmax)
            for (size_t i = 0; i < nb; i++) softmax(ob + i * k, k);
    }
    mp_mlp_work_free(w);
    return MP_OK;
}

/* The keys of a saved network, each prefix + one of these names. */
enum { KEY_LAYERS, KEY_SIZES, KEY_ACTIVATION, KEY_OUTPUT, KEY_PARAMS, KEY_COUNT };
static const char *const key_names[] = { "n_layers", "sizes", "activation", "output", "params" };
_Static_assert(sizeof key_names / sizeof *key_names == KEY_COUNT, "key_names");

static bool make_keys(char (*keys)[256], const char *prefix, int code, mp_err *err) {
    for (int i = 0; i < KEY_COUNT; i++)
        if (!mp_art_key(keys[i], sizeof keys[i], MODULE, prefix, key_names[i], code, err))
            return false;
    return true;
}

/* Model file entries under prefix:
 *     n_layers i, sizes d (n_layers + 1 widths), activation s, output s
 *     ("softmax" | "linear"), params f (the block laid out as in mlp.h) */
static int mlp_save(const mp_model *m, mp_art_writer *w, const char *prefix, mp_err *err) {
    const mp_mlp *net = m->state;
    char keys[KEY_COUNT][256];
    if (!make_keys(keys, prefix, MP_E_IO, err)) return err->code;
    size_t L = net->n_layers;
    double sizes[MAX_LAYERS + 1];
    for (size_t l = 0; l <= L; l++) sizes[l] = (double)net->sizes[l];
    if (mp_art_put_int(w, keys[KEY_LAYERS], (long long)L) != MP_OK ||
        mp_art_put_doubles(w, keys[KEY_SIZES], sizes, L + 1) != MP_OK ||
        mp_art_put_str(w, keys[KEY_ACTIVATION], activation_names[net->activation]) != MP_OK ||
        mp_art_put_str(w, keys[KEY_OUTPUT], net->softmax ? OUT_SOFTMAX : OUT_LINEAR) != MP_OK ||
        mp_art_put_floats(w, keys[KEY_PARAMS], net->params, net->n_params) != MP_OK)
        return MP_ERR(err, MP_E_IO, MODULE ": cannot write model '%s'", prefix);
    return MP_OK;
}

static const char *task_name(mp_task task) {
    switch (task) {
    case MP_TASK_CLASSIFICATION: return "classification";
    case MP_TASK_REGRESSION: return "regression";
    case MP_TASK_CLUSTERING: return "clustering";
    default: return "target-less";
    }
}

/* Reads and checks the shape entries into sizes/activation/softmax. */
static int load_shape(const mp_model *m, mp_art_reader *r, char (*keys)[256], size_t *L_out,
                      size_t *sizes, int *activation, bool *softmax, mp_err *err) {
    long long L = 0;
    if (mp_art_get_int(r, keys[KEY_LAYERS], &L, err) != MP_OK) return err->code;
    if (L < 1 || L > MAX_LAYERS)
        return MP_ERR(err, MP_E_PARSE, MODULE ": '%s' is %lld, expected 1..%d", keys[KEY_LAYERS],
                      L, MAX_LAYERS);
    double v[MAX_LAYERS + 1];
    if (mp_art_get_doubles(r, keys[KEY_SIZES], v, (size_t)L + 1, err) != MP_OK) return err->code;
    for (long long l = 0; l <= L; l++) {
        if (!(v[l] >= 1.0 && v[l] <= INT_MAX && v[l] == floor(v[l])))
            return MP_ERR(err, MP_E_PARSE, MODULE ": '%s' holds %g, not a layer width",
                          keys[KEY_SIZES], v[l]);
        sizes[l] = (size_t)v[l];
    }
    if (sizes[0] != m->n_features || sizes[L] != m->n_outputs)
        return MP_ERR(err, MP_E_PARSE, MODULE ": the network maps %zu inputs to %zu outputs, "
                      "the model has %zu features and %zu outputs", sizes[0], sizes[L],
                      m->n_features, m->n_outputs);
    const char *s = NULL;
    if (mp_art_get_str(r, keys[KEY_ACTIVATION], &s, err) != MP_OK) return err->code;
    int act = -1;
    for (int i = 0; i <= MP_MLP_SIGMOID; i++)
        if (strcmp(s, activation_names[i]) == 0) act = i;
    if (act < 0)
        return MP_ERR(err, MP_E_PARSE, MODULE ": unknown activation '%s' in '%s'", s,
                      keys[KEY_ACTIVATION]);
    if (mp_art_get_str(r, keys[KEY_OUTPUT], &s, err) != MP_OK) return err->code;
    /* The output must suit what the model file says the model does. */
    bool want_softmax = m->task == MP_TASK_CLASSIFICATION;
    const char *want = want_softmax ? OUT_SOFTMAX : OUT_LINEAR;
    if (strcmp(s, want) != 0 || (want_softmax && (!m->has_proba || m->n_outputs < 2)) ||
        (!want_softmax && m->task != MP_TASK_REGRESSION))
        return MP_ERR(err, MP_E_PARSE, MODULE ": output '%s' does not suit a %s model with "
                      "%zu outputs", s, task_name(m->task), m->n_outputs);
    *L_out = (size_t)L;
    *activation = act;
    *softmax = want_softmax;
    return MP_OK;
}

static int mlp_load(mp_model *m, mp_art_reader *r, const char *prefix, mp_err *err) {
    char keys[KEY_COUNT][256];
    if (!make_keys(keys, prefix, MP_E_PARSE, err)) return err->code;
    size_t L = 0, sizes[MAX_LAYERS + 1];
    int act = 0;
    bool softmax_out = false;
    if (load_shape(m, r, keys, &L, sizes, &act, &softmax_out, err) != MP_OK) return err->code;
    if (!shape_ok(sizes, L))
        return MP_ERR(err, MP_E_PARSE, MODULE ": network too large: %zu layers", L);
    mp_mlp *net = mp_mlp_new(sizes, L, act, softmax_out);
    if (!net) return MP_ERR(err, MP_E_NOMEM, MODULE ": out of memory loading the model");
    if (mp_art_get_floats(r, keys[KEY_PARAMS], net->params, net->n_params, err) != MP_OK)
        goto fail;
    for (size_t i = 0; i < net->n_params; i++) {
        if (!isfinite(net->params[i])) {
            MP_ERR(err, MP_E_PARSE, MODULE ": model parameter %zu is not a finite number", i);
            goto fail;
        }
    }
    m->state = net;
    return MP_OK;
fail:
    mp_mlp_free(net);
    return err->code;
}

static const mp_model_ops mlp_model_ops = {
    .name = MODULE, .predict = mlp_predict, .save = mlp_save, .load = mlp_load,
    .free_state = mlp_free_state,
};

/* ---------------------------------------------------------------- targets */

/* "line 37" of the source file when the loader kept line numbers, else
 * "row 36" (1-based) of the data set, for messages about row i. */
static void row_name(const mp_dataset *ds, size_t i, char *buf, size_t size) {
    if (ds->source_rows) snprintf(buf, size, "line %zu", ds->source_rows[i]);
    else snprintf(buf, size, "row %zu", i + 1);
}

/* Replaces class indices by the numbers their names spell, in ds. */
static void decode_with(mp_dataset *ds, const double *value) {
    for (size_t i = 0; i < ds->X.n_rows; i++) ds->y[i] = value[(size_t)ds->y[i]];
    for (size_t i = 0; i < ds->n_classes; i++) mp_free(ds->class_names[i]);
    mp_free(ds->class_names);
    ds->class_names = NULL;
    ds->n_classes = 0;
    ds->task = MP_TASK_REGRESSION;
}

/* True when every y of ds is a class index below k. */
static bool indices_ok(const mp_dataset *ds, size_t k, size_t *bad) {
    for (size_t i = 0; i < ds->X.n_rows; i++) {
        double v = ds->y[i];
        if (!(v >= 0.0 && v < (double)k && v == floor(v))) {
            *bad = i;
            return false;
        }
    }
    return true;
}

/* task: regression on data the executor encoded as classes: back to numbers
 * (in train and, when it shares the class list, test).  Checks everything
 * before changing anything, so a failure leaves the data as it was. */
static int decode_numeric(mp_dataset *train, mp_dataset *test, mp_err *err) {
    size_t k = train->n_classes, bad = 0;
    const char *target = train->target_name ? train->target_name : "the target";
    if (!train->class_names || k == 0)
        return MP_ERR(err, MP_E_DATA, MODULE ": the classes of %s have no names", target);
    if (test && (test->task != MP_TASK_CLASSIFICATION || test->n_classes != k ||
                 !test->class_names || !test->y))
        return MP_ERR(err, MP_E_DATA, "train and test targets differ in kind");
    char where[64];
    if (!indices_ok(train, k, &bad)) {
        row_name(train, bad, where, sizeof where);
        return MP_ERR(err, MP_E_DATA, "%s: label %g is not a class index below %zu", where,
                      train->y[bad], k);
    }
    if (test && !indices_ok(test, k, &bad))
        return MP_ERR(err, MP_E_DATA, "test row %zu: label %g is not a class index below %zu",
                      bad + 1, test->y[bad], k);
    double *value = mp_malloc(mp_mul_size(k, sizeof *value));
    if (!value) return MP_ERR(err, MP_E_NOMEM, "out of memory decoding %zu target values", k);
    for (size_t i = 0; i < k; i++) {
        const char *s = train->class_names[i];
        if (test && strcmp(s, test->class_names[i]) != 0) {
            MP_ERR(err, MP_E_DATA, "train and test class lists differ at '%s'", s);
            goto fail;
        }
        char *end = NULL;
        value[i] = strtod(s, &end);
        if (end == s || *end != '\0' || !isfinite(value[i])) {
            MP_ERR(err, MP_E_DATA, MODULE " with task: regression needs a numeric target; "
                   "'%s' holds class names such as '%s'", target, s);
            goto fail;
        }
    }
    decode_with(train, value);
    if (test) decode_with(test, value);
    mp_free(value);
    return MP_OK;
fail:
    mp_free(value);
    return err->code;
}

/* Brings ctx's target into the form the model needs: class indices for
 * classification (numeric targets are encoded, as logistic_regression
 * does), numbers for regression (classes decoded, see the file comment). */
static int prepare_target(mp_ctx *ctx, bool classify, mp_err *err) {
    mp_dataset *ds = ctx->train;
    mp_dataset *test = ctx->test && ctx->test->task == ds->task ? ctx->test : NULL;
    if (classify && ds->task == MP_TASK_REGRESSION)
        return mp_dataset_encode_labels_pair(ds, test, err);
    if (!classify && ds->task == MP_TASK_CLASSIFICATION) return decode_numeric(ds, test, err);
    return MP_OK;
}

/* ---------------------------------------------------------------- training */

/* Buffers of one training run.  train_release frees them on every path. */
typedef struct trainer {
    const mp_mlp_conf *c;
    const mp_dataset *ds;
    mp_mlp   *net;
    size_t    n, d, k;      /* all rows, features, outputs */
    size_t    n_train;      /* rows[0 .. n_train): training rows, reshuffled each epoch */
    size_t    n_val;        /* rows[n_train .. n): validation rows, in data order */
    size_t    batch;        /* rows per mini-batch (the last one may be short) */
    size_t    cap;          /* rows of xb and of the work: max(batch, validation block) */
    size_t   *rows;         /* n row indices */
    int      *labels;       /* n class indices (classification), else NULL */
    float    *targets;      /* n targets (regression), else NULL */
    float    *xb;           /* cap x d gathered rows */
    int      *yb;           /* cap gathered labels (classification) */
    float    *tb;           /* cap gathered targets (regression) */
    float    *grad;         /* n_params, laid out as params */
    float    *best;         /* n_params: the weights of the best epoch (patience only) */
    mp_mlp_work *work;
    mp_optim *opt;
    mp_rng    rng;          /* the shuffle stream */
    team      tm;           /* the training threads (tm.n = 1: none) */
} trainer;

static void train_release(trainer *t) {
    team_stop(&t->tm);
    mp_optim_free(t->opt);
    mp_mlp_work_free(t->work);
    mp_free(t->rows);
    mp_free(t->labels);
    mp_free(t->targets);
    mp_free(t->xb);
    mp_free(t->yb);
    mp_free(t->tb);
    mp_free(t->grad);
    mp_free(t->best);
}

/* Checks the features and copies the targets into labels or targets. */
static int prepare_rows(trainer *t, mp_err *err) {
    const mp_dataset *ds = t->ds;
    size_t n = t->n, d = t->d;
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
    if (t->net->softmax) {
        if (!(t->labels = mp_malloc(mp_mul_size(n, sizeof *t->labels))))
            return MP_ERR(err, MP_E_NOMEM, "out of memory for %zu labels", n);
        size_t bad = 0;
        if (!indices_ok(ds, t->k, &bad)) {
            row_name(ds, bad, where, sizeof where);
            return MP_ERR(err, MP_E_DATA, "%s: label %g is not a class index below %zu", where,
                          ds->y[bad], t->k);
        }
        for (size_t i = 0; i < n; i++) t->labels[i] = (int)ds->y[i];
        return MP_OK;
    }
    if (!(t->targets = mp_malloc(mp_mul_size(n, sizeof *t->targets))))
        return MP_ERR(err, MP_E_NOMEM, "out of memory for %zu targets", n);
    for (size_t i = 0; i < n; i++) {
        t->targets[i] = (float)ds->y[i];
        if (!isfinite(t->targets[i])) {
            row_name(ds, i, where, sizeof where);
            return MP_ERR(err, MP_E_DATA, "target %g is not a finite float at %s", ds->y[i],
                          where);
        }
    }
    return MP_OK;
}

/* rows := a seeded random n_val of the n rows at the end, the others first,
 * each part in data order.  mask is n bytes of scratch. */
static void split_rows(trainer *t, mp_ctx *ctx, unsigned char *mask) {
    size_t n = t->n, *rows = t->rows;
    for (size_t i = 0; i < n; i++) rows[i] = i;
    mp_rng rng;
    mp_ctx_rng(ctx, STREAM_SPLIT, &rng);
    /* A partial Fisher-Yates shuffle: rows[0 .. n_val) is a uniform sample. */
    for (size_t i = 0; i < t->n_val; i++) {
        size_t j = i + mp_rng_below(&rng, n - i), tmp = rows[i];
        rows[i] = rows[j];
        rows[j] = tmp;
    }
    memset(mask, 0, n);
    for (size_t i = 0; i < t->n_val; i++) mask[rows[i]] = 1;
    size_t a = 0, b = t->n_train;
    for (size_t i = 0; i < n; i++) rows[mask[i] ? b++ : a++] = i;
}

/* Initial weights: uniform in +-sqrt(6 / fan_in) (He) for layers followed
 * by relu, +-sqrt(6 / (fan_in + fan_out)) (Glorot, Keras' glorot_uniform)
 * otherwise, including the output layer; `init` can force either.  Biases
 * start at 0. */
static void init_weights(mp_mlp *net, int init, mp_ctx *ctx) {
    mp_rng rng;
    mp_ctx_rng(ctx, STREAM_INIT, &rng);
    for (size_t l = 0; l < net->n_layers; l++) {
        double fan_in = (double)net->sizes[l], fan_out = (double)net->sizes[l + 1];
        bool hidden = l + 1 < net->n_layers;
        bool he = init == MP_MLP_INIT_HE ||
                  (init == MP_MLP_INIT_AUTO && hidden && net->activation == MP_MLP_RELU);
        double limit = he ? sqrt(6.0 / fan_in) : sqrt(6.0 / (fan_in + fan_out));
        float *W = layer_w(net, l);
        size_t n_w = layer_n_w(net, l);
        for (size_t i = 0; i < n_w; i++)
            W[i] = (float)((2.0 * mp_rng_uniform(&rng) - 1.0) * limit);
        memset(W + n_w, 0, net->sizes[l + 1] * sizeof *W);
    }
}

/* Sets up a training run on `members` threads (the caller included). */
static int train_init(trainer *t, const mp_mlp_conf *c, mp_ctx *ctx, mp_mlp *net, int members,
                      mp_err *err) {
    const mp_dataset *ds = ctx->train;
    *t = (trainer){ .c = c, .ds = ds, .net = net, .n = ds->X.n_rows, .d = ds->X.n_cols,
                    .k = net->sizes[net->n_layers], .tm = { .n = 1 } };
    size_t n = t->n, d = t->d;
    if (c->validation_split > 0.0) {
        if (n < 2)
            return MP_ERR(err, MP_E_DATA, "validation_split needs at least 2 rows, got %zu", n);
        double want = floor(c->validation_split * (double)n + 0.5);
        t->n_val = want < 1.0 ? 1 : want > (double)(n - 1) ? n - 1 : (size_t)want;
    }
    t->n_train = n - t->n_val;
    t->batch = (size_t)c->batch_size < t->n_train ? (size_t)c->batch_size : t->n_train;
    size_t val_block = t->n_val < EVAL_ROWS ? t->n_val : EVAL_ROWS;
    t->cap = t->batch > val_block ? t->batch : val_block;
    if (t->cap > INT_MAX) t->cap = INT_MAX;   /* cblas int sizes */
    if (t->batch > t->cap) t->batch = t->cap;

    if (prepare_rows(t, err) != MP_OK) return err->code;
    t->rows = mp_malloc(mp_mul_size(n, sizeof *t->rows));
    t->xb = mp_malloc(mp_mul_size(t->cap, mp_mul_size(d, sizeof(float))));
    if (net->softmax) t->yb = mp_malloc(mp_mul_size(t->cap, sizeof *t->yb));
    else t->tb = mp_malloc(mp_mul_size(t->cap, sizeof *t->tb));
    t->grad = mp_malloc(mp_mul_size(net->n_params, sizeof(float)));
    if (c->patience > 0 && t->n_val > 0)
        t->best = mp_malloc(mp_mul_size(net->n_params, sizeof(float)));
    bool ok = t->rows && t->xb && (t->yb || t->tb) && t->grad &&
              (t->best || !(c->patience > 0 && t->n_val > 0));
    if (!ok)
        return MP_ERR(err, MP_E_NOMEM, "out of memory training on %zu rows x %zu features", n, d);
    if (t->n_val > 0) {
        unsigned char *mask = mp_malloc(n);
        if (!mask) return MP_ERR(err, MP_E_NOMEM, "out of memory splitting %zu rows", n);
        split_rows(t, ctx, mask);
        mp_free(mask);
    } else {
        for (size_t i = 0; i < n; i++) t->rows[i] = i;
    }
    mp_ctx_rng(ctx, STREAM_SHUFFLE, &t->rng);
    if (mp_mlp_work_new(net, t->cap, &t->work, err) != MP_OK) return err->code;
    mp_optim_conf oc = { .kind = c->optimizer, .learning_rate = c->learning_rate,
                         .momentum = c->momentum, .beta1 = c->beta1, .beta2 = c->beta2,
                         .eps = ADAM_EPS, .weight_decay = c->weight_decay };
    if (mp_optim_new(&oc, net->n_params, &t->opt, err) != MP_OK) return err->code;
    return team_start(&t->tm, members, err);
}

/* Copies rows idx[0 .. nb) and their targets into xb / yb / tb. */
static void gather(trainer *t, const size_t *idx, size_t nb) {
    size_t d = t->d;
    for (size_t i = 0; i < nb; i++) {
        size_t r = idx[i];
        memcpy(t->xb + i * d, t->ds->X.data + r * d, d * sizeof(float));
        if (t->labels) t->yb[i] = t->labels[r];
        else t->tb[i] = t->targets[r];
    }
}

/* Loss and accuracy of one epoch: the means over its rows of what each
 * mini-batch saw before its step (as Keras reports them, no second pass). */
typedef struct epoch_stats { double loss, accuracy; } epoch_stats;

static int train_epoch(trainer *t, mp_ctx *ctx, int epoch, epoch_stats *out, mp_err *err) {
    if (t->c->shuffle) mp_rng_shuffle(&t->rng, t->rows, t->n_train);
    double sum = 0.0;
    size_t correct = 0;
    for (size_t i0 = 0; i0 < t->n_train; i0 += t->batch) {
        if (mp_ctx_cancelled(ctx))
            return MP_ERR(err, MP_E_CANCELLED, "interrupted at epoch %d", epoch);
        mp_ctx_progress(ctx, "epoch", epoch - 1 + (double)i0 / (double)t->n_train, t->c->epochs);
        size_t nb = t->n_train - i0 < t->batch ? t->n_train - i0 : t->batch;
        gather(t, t->rows + i0, nb);
        /* One pass: forward, backward and the step (weights decayed, biases,
         * conventionally, not).  A non-finite loss has taken its step too,
         * but the run fails and the weights are thrown away. */
        pass p = { .w = t->work, .net = t->net, .X = t->xb, .n = nb, .labels = t->yb,
                   .targets = t->tb, .grad = t->grad, .opt = t->opt };
        mp_optim_tick(t->opt);
        team_run(&t->tm, &p);
        if (!isfinite(p.loss))
            return MP_ERR(err, MP_E_NUMERIC,
                          "loss is not finite at epoch %d (try a lower learning_rate)", epoch);
        sum += p.loss * (double)nb;
        correct += p.correct;
    }
    out->loss = sum / (double)t->n_train;
    out->accuracy = (double)correct / (double)t->n_train;
    return MP_OK;
}

/* Loss and accuracy of the current weights on the validation rows. */
static int validate(trainer *t, mp_ctx *ctx, int epoch, epoch_stats *out, mp_err *err) {
    const size_t *val = t->rows + t->n_train;
    double sum = 0.0;
    size_t correct = 0;
    for (size_t i0 = 0; i0 < t->n_val; i0 += t->cap) {
        if (mp_ctx_cancelled(ctx))
            return MP_ERR(err, MP_E_CANCELLED, "interrupted at epoch %d", epoch);
        size_t nb = t->n_val - i0 < t->cap ? t->n_val - i0 : t->cap;
        gather(t, val + i0, nb);
        pass p = { .w = t->work, .net = t->net, .X = t->xb, .n = nb, .labels = t->yb,
                   .targets = t->tb };
        team_run(&t->tm, &p);
        sum += p.loss * (double)nb;
        correct += p.correct;
    }
    out->loss = sum / (double)t->n_val;
    out->accuracy = (double)correct / (double)t->n_val;
    if (!isfinite(out->loss))
        return MP_ERR(err, MP_E_NUMERIC, "validation loss is not finite at epoch %d", epoch);
    return MP_OK;
}

static int metric(mp_ctx *ctx, const char *key, double value, long step_no, mp_err *err) {
    int rc = mp_ctx_metric(ctx, key, value, step_no, err);
    if (rc != MP_OK && err->code == MP_OK) MP_ERR(err, rc, "cannot record metric %s", key);
    return rc == MP_OK ? MP_OK : err->code;
}

/* Records an epoch's figures and logs its line. */
static int report_epoch(trainer *t, mp_ctx *ctx, int epoch, const epoch_stats *tr,
                        const epoch_stats *va, double secs, mp_err *err) {
    bool cls = t->net->softmax;
    if (metric(ctx, "train.loss", tr->loss, epoch, err) != MP_OK ||
        (cls && metric(ctx, "train.accuracy", tr->accuracy, epoch, err) != MP_OK))
        return err->code;
    if (va && (metric(ctx, "val.loss", va->loss, epoch, err) != MP_OK ||
               (cls && metric(ctx, "val.accuracy", va->accuracy, epoch, err) != MP_OK)))
        return err->code;
    char acc[32] = "", val[64] = "";
    if (cls) snprintf(acc, sizeof acc, " acc %.4f", tr->accuracy);
    if (va && cls) snprintf(val, sizeof val, " val_loss %.4g val_acc %.4f", va->loss, va->accuracy);
    else if (va) snprintf(val, sizeof val, " val_loss %.4g", va->loss);
    mp_log(MP_LOG_INFO, MODULE ": epoch %d/%d loss %.4g%s%s (%.1fs)", epoch, t->c->epochs,
           tr->loss, acc, val, secs);
    return MP_OK;
}

/* Runs the epochs, with early stopping on the validation loss when
 * patience > 0: the weights of the best epoch are kept and restored. */
static int train(trainer *t, mp_ctx *ctx, mp_err *err) {
    const mp_mlp_conf *c = t->c;
    bool watch = c->patience > 0 && t->n_val > 0;
    double best = INFINITY;
    int best_epoch = 0, stale = 0, epoch = 0;
    while (epoch < c->epochs) {
        epoch++;
        double t0 = now();
        epoch_stats tr = { 0 }, va = { 0 };
        if (train_epoch(t, ctx, epoch, &tr, err) != MP_OK) return err->code;
        if (t->n_val > 0 && validate(t, ctx, epoch, &va, err) != MP_OK) return err->code;
        if (report_epoch(t, ctx, epoch, &tr, t->n_val ? &va : NULL, now() - t0, err) != MP_OK)
            return err->code;
        if (!watch) continue;
        if (va.loss < best) {
            best = va.loss;
            best_epoch = epoch;
            stale = 0;
            memcpy(t->best, t->net->params, t->net->n_params * sizeof(float));
        } else if (++stale >= c->patience) {
            mp_log(MP_LOG_INFO, MODULE ": stopped early at epoch %d: val_loss has not improved "
                   "for %d epochs", epoch, c->patience);
            break;
        }
    }
    if (watch && best_epoch != epoch) {
        memcpy(t->net->params, t->best, t->net->n_params * sizeof(float));
        mp_log(MP_LOG_INFO, MODULE ": restored the weights of epoch %d (val_loss %.4g)",
               best_epoch, best);
    }
    return MP_OK;
}

/* ---------------------------------------------------------------- stage */

/* Training threads: `threads`, or OpenBLAS' count when 0 (OPENBLAS_NUM_THREADS
 * or the cores), but no more than the widest layer can use (see share). */
static int team_size(const mp_mlp *net, int threads) {
    int n = threads > 0 ? threads : openblas_get_num_threads();
    size_t useful = 1;
    for (size_t l = 1; l <= net->n_layers; l++)
        if (net->sizes[l] / MIN_UNITS > useful) useful = net->sizes[l] / MIN_UNITS;
    if ((size_t)n > useful) n = (int)useful;
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
}

static int mlp_check(const void *conf, mp_err *err) {
    const mp_mlp_conf *c = conf;
    /* The table's ranges are inclusive; these three must stay below 1. */
    if (c->momentum >= 1.0)
        return MP_ERR(err, MP_E_CONFIG, "momentum must be below 1, got %g", c->momentum);
    if (c->beta1 >= 1.0) return MP_ERR(err, MP_E_CONFIG, "beta1 must be below 1, got %g", c->beta1);
    if (c->beta2 >= 1.0) return MP_ERR(err, MP_E_CONFIG, "beta2 must be below 1, got %g", c->beta2);
    if (c->learning_rate * c->weight_decay >= 1.0)
        return MP_ERR(err, MP_E_CONFIG, "weight_decay * learning_rate must be below 1, got %g",
                      c->learning_rate * c->weight_decay);
    if (c->hidden.n >= MAX_LAYERS)
        return MP_ERR(err, MP_E_CONFIG, "hidden lists %zu layers, at most %d are allowed",
                      c->hidden.n, MAX_LAYERS - 1);
    for (size_t i = 0; i < c->hidden.n; i++)
        if (c->hidden.v[i] < 1)
            return MP_ERR(err, MP_E_CONFIG, "hidden layer %zu has %d units, needs at least 1",
                          i + 1, c->hidden.v[i]);
    if (c->patience > 0 && !(c->validation_split > 0.0))
        return MP_ERR(err, MP_E_CONFIG, "patience needs validation rows: set validation_split "
                      "(e.g. 0.1)");
    return MP_OK;
}

static int mlp_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const mp_mlp_conf *c = st->conf;
    if (mlp_check(c, err) != MP_OK) return err->code;   /* tests may skip the runner */
    mp_dataset *ds = ctx->train;
    if (!ds) return MP_ERR(err, MP_E_DATA, "no data to train on (add a load stage)");
    if (ds->task == MP_TASK_NONE || !ds->y)
        return MP_ERR(err, MP_E_DATA,
                      MODULE " needs a target column (set target: in the load stage)");
    bool classify = c->task == MP_MLP_CLASSIFICATION;
    if (prepare_target(ctx, classify, err) != MP_OK) return err->code;
    size_t n = ds->X.n_rows, d = ds->X.n_cols, k = classify ? ds->n_classes : 1;
    if (n == 0) return MP_ERR(err, MP_E_DATA, "no training rows");
    if (d == 0) return MP_ERR(err, MP_E_DATA, "no feature columns to train on");
    if (classify && k < 2)
        return MP_ERR(err, MP_E_DATA, MODULE " needs at least 2 classes, the target has %zu", k);

    size_t L = c->hidden.n + 1, sizes[MAX_LAYERS + 1];
    sizes[0] = d;
    for (size_t l = 0; l < c->hidden.n; l++) sizes[l + 1] = (size_t)c->hidden.v[l];
    sizes[L] = k;
    if (!shape_ok(sizes, L))
        return MP_ERR(err, MP_E_DATA, "network too large for " MODULE ": %zu features, %zu "
                      "layers, %zu outputs", d, L, k);

    trainer t = { 0 };
    mp_mlp *net = mp_mlp_new(sizes, L, c->activation, classify);
    mp_model *m = mp_calloc(1, sizeof *m);
    int rc = net && m ? MP_OK : MP_ERR(err, MP_E_NOMEM, "out of memory for the network");
    if (rc == MP_OK) {
        mp_log(MP_LOG_DEBUG, MODULE ": %zu rows, %zu features -> %zu outputs (%s), %zu layers, "
               "%zu parameters, batch %d", n, d, k, classify ? "softmax" : "linear", L,
               net->n_params, c->batch_size);
        init_weights(net, c->init, ctx);
        rc = train_init(&t, c, ctx, net, team_size(net, c->threads), err);
    }
    if (rc == MP_OK) {
        /* Each member's sgemm calls run single-threaded (the team is the
         * parallelism); OpenBLAS' process-wide setting comes back after. */
        int blas = openblas_get_num_threads();
        openblas_set_num_threads(1);
        mp_log(MP_LOG_DEBUG, MODULE ": training on %d thread%s", t.tm.n, t.tm.n > 1 ? "s" : "");
        rc = train(&t, ctx, err);
        openblas_set_num_threads(blas);
    }
    train_release(&t);
    if (rc != MP_OK) {
        mp_mlp_free(net);
        mp_free(m);
        return rc;
    }
    *m = (mp_model){ .ops = &mlp_model_ops, .state = net, .n_features = d, .n_outputs = k,
                     .task = classify ? MP_TASK_CLASSIFICATION : MP_TASK_REGRESSION,
                     .has_proba = classify };
    mp_model_free(ctx->model);
    ctx->model = m;
    ctx->train_module = MODULE;
    return MP_OK;
}

static const mp_param mlp_params[] = {
    { "hidden", MP_P_INT_LIST, offsetof(mp_mlp_conf, hidden), "[512]", MP_PF_RANGE, 1, INT_MAX,
      NULL, "units of each hidden layer, input side first; [] = no hidden layer" },
    { "activation", MP_P_ENUM, offsetof(mp_mlp_conf, activation), "relu", 0, 0, 0,
      MP_MLP_ACTIVATIONS, "activation of the hidden layers" },
    { "optimizer", MP_P_ENUM, offsetof(mp_mlp_conf, optimizer), "adam", 0, 0, 0,
      MP_OPTIM_CHOICES, "gradient-descent variant" },
    { "learning_rate", MP_P_DOUBLE, offsetof(mp_mlp_conf, learning_rate), "0.001",
      MP_PF_RANGE | MP_PF_MIN_OPEN, 0.0, INFINITY, NULL, "step size" },
    { "momentum", MP_P_DOUBLE, offsetof(mp_mlp_conf, momentum), "0.9", MP_PF_RANGE, 0.0, 1.0,
      NULL, "velocity decay of the momentum optimizer, below 1" },
    { "beta1", MP_P_DOUBLE, offsetof(mp_mlp_conf, beta1), "0.9", MP_PF_RANGE, 0.0, 1.0, NULL,
      "adam first-moment decay, below 1" },
    { "beta2", MP_P_DOUBLE, offsetof(mp_mlp_conf, beta2), "0.999", MP_PF_RANGE, 0.0, 1.0, NULL,
      "adam second-moment decay, below 1" },
    { "weight_decay", MP_P_DOUBLE, offsetof(mp_mlp_conf, weight_decay), "0", MP_PF_RANGE, 0.0,
      INFINITY, NULL, "decoupled weight decay: w -= learning_rate*weight_decay*w each step "
      "(biases are not decayed)" },
    { "batch_size", MP_P_INT, offsetof(mp_mlp_conf, batch_size), "32", MP_PF_RANGE, 1, INT_MAX,
      NULL, "rows per gradient step" },
    { "epochs", MP_P_INT, offsetof(mp_mlp_conf, epochs), "5", MP_PF_RANGE, 1, INT_MAX, NULL,
      "passes over the training rows (at most, with patience)" },
    { "shuffle", MP_P_BOOL, offsetof(mp_mlp_conf, shuffle), "true", 0, 0, 0, NULL,
      "reshuffle the training rows every epoch (seeded)" },
    { "validation_split", MP_P_DOUBLE, offsetof(mp_mlp_conf, validation_split), "0",
      MP_PF_RANGE, 0.0, 0.9, NULL, "fraction of the training rows held out (seeded) for "
      "val.loss/val.accuracy each epoch" },
    { "patience", MP_P_INT, offsetof(mp_mlp_conf, patience), "0", MP_PF_RANGE, 0, INT_MAX, NULL,
      "stop after this many epochs without a lower val.loss and keep the best epoch's "
      "weights; 0 = never (needs validation_split)" },
    { "init", MP_P_ENUM, offsetof(mp_mlp_conf, init), "auto", 0, 0, 0, MP_MLP_INITS,
      "uniform initial weights: he +-sqrt(6/fan_in), glorot +-sqrt(6/(fan_in+fan_out)); "
      "auto = he before relu, else glorot" },
    { "threads", MP_P_INT, offsetof(mp_mlp_conf, threads), "0", MP_PF_RANGE, 0, MAX_THREADS,
      NULL,
      "training threads, each computing a slice of every layer's units (at most one per 64 "
      "units of the widest layer); 0 = OpenBLAS' thread count (OPENBLAS_NUM_THREADS, else "
      "the cores)" },
    { "task", MP_P_ENUM, offsetof(mp_mlp_conf, task), "classification", 0, 0, 0, MP_MLP_TASKS,
      "classification: softmax + cross-entropy; regression: linear output + mean squared "
      "error on a numeric target" },
    { 0 }
};

const mp_stage_ops mp_stage_mlp = {
    .abi = MP_STAGE_ABI, .name = MODULE, .kind = MP_KIND_TRAIN,
    .doc = "multi-layer perceptron (relu/tanh/sigmoid, softmax or linear output) by mini-batch "
           "gradient descent",
    .params = mlp_params, .conf_size = sizeof(mp_mlp_conf), .check = mlp_check,
    .run = mlp_run, .model = &mlp_model_ops, .task = MP_TASK_CLASSIFICATION,
};
