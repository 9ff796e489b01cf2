/*
 * export_model.c -- `export: model`: write the fitted transforms and the
 * trained model to one model file (runner/artifact.h, format MLPM 1) and
 * record it as a run artifact (path, sha256, size).
 *
 * The file is written to a temporary name and renamed into place after an
 * fsync, so an interrupted export leaves either the old file or none.
 */
#include "mp_stage.h"
#include "artifact.h"

typedef struct export_conf {
    char *path;     /* where the model file goes; folders are created */
    char *artifact; /* artifact name in the run database */
} export_conf;

static int export_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    const export_conf *c = st->conf;
    if (!ctx->model) return MP_ERR(err, MP_E_DATA, "no trained model to export");
    char sha[65];
    long long bytes = 0;
    if (mp_model_save(c->path, ctx, sha, &bytes, err) != MP_OK) return err->code;
    mp_log(MP_LOG_INFO, "export: wrote '%s' (%lld bytes, sha256 %.12s...)", c->path, bytes, sha);
    return mp_ctx_artifact(ctx, c->artifact, c->path, err);
}

static const mp_param export_params[] = {
    { "path", MP_P_STRING, offsetof(export_conf, path), NULL, MP_PF_REQUIRED, 0, 0, NULL,
      "model file to write (.mlpm); missing folders are created" },
    { "artifact", MP_P_STRING, offsetof(export_conf, artifact), "model", 0, 0, 0, NULL,
      "artifact name recorded in the run database" },
    { 0 }
};

const mp_stage_ops mp_stage_export_model = {
    .abi = MP_STAGE_ABI, .name = "model", .kind = MP_KIND_EXPORT,
    .doc = "write transforms + model to one checksummed model file, atomically",
    .params = export_params, .conf_size = sizeof(export_conf), .run = export_run,
};
