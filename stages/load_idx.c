/* PLACEHOLDER: replaced by the real module. */
#include "mp_stage.h"
static int run(mp_stage *st, mp_ctx *ctx, mp_err *err) { (void)st; (void)ctx; return MP_ERR(err, MP_E_DATA, "not built yet"); }
static const mp_param params[] = { { 0 } };
const mp_stage_ops mp_stage_load_idx = { .abi = MP_STAGE_ABI, .name = "PLACEHOLDER_idx", .kind = MP_KIND_LOAD, .params = params, .run = run };
