/*
 * ctx.c -- the services a stage reaches through its mp_ctx: seeded random
 * streams, metric and artifact recording, progress, and the cancellation
 * flag.
 */
#include "mp.h"
#include "progress.h"

volatile int mp_cancel_signal;

void mp_ctx_rng(const mp_ctx *ctx, uint64_t stream, mp_rng *out) {
    /* Mix seed, stage index and stream so no two draw the same sequence. */
    uint64_t s = ctx->seed * 0x9e3779b97f4a7c15ULL;
    s ^= ((uint64_t)(ctx->stage_index + 1) << 32) ^ (stream * 0xd1b54a32d192ed03ULL);
    mp_rng_seed(out, s);
}

int mp_ctx_metric(mp_ctx *ctx, const char *key, double value, long step, mp_err *err) {
    const mp_host *h = ctx->host;
    if (h && h->metric) return h->metric(h->ud, key, value, step, err);
    mp_log(MP_LOG_DEBUG, "metric %s = %.6g (step %ld)", key, value, step);
    return MP_OK;
}

int mp_ctx_artifact(mp_ctx *ctx, const char *name, const char *path, mp_err *err) {
    const mp_host *h = ctx->host;
    if (h && h->artifact) return h->artifact(h->ud, name, path, err);
    mp_log(MP_LOG_DEBUG, "artifact %s = %s", name, path);
    return MP_OK;
}

void mp_ctx_progress(const mp_ctx *ctx, const char *unit, double done, double total) {
    (void)ctx;      /* one stage runs at a time: the progress state is the runner's */
    mp_progress_update(unit, done, total);
}

bool mp_ctx_cancelled(const mp_ctx *ctx) {
    (void)ctx;
    return mp_cancel_signal != 0;
}
