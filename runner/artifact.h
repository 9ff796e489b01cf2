/*
 * artifact.h -- the model file container (format "MLPM", version 1) and the
 * model file built on it.
 *
 * Container layout, all text so a model can be read with `less` and diffed:
 *     MLPM 1\n
 *     <key> <type> <count> <value> <value> ...\n      one entry per line
 *     ...
 *     sha256 <64 hex digits>\n                         of every byte above
 * type is s (string, %XX-escaped: space, %, control bytes), i (int64),
 * d (double, %.17g) or f (float, %.9g); both round-trip exactly in the C
 * locale.  Keys are unique.  A reader refuses a newer version, a missing or
 * wrong checksum (truncated or corrupted file) and malformed lines, naming the
 * file and line.  Writers go to a temporary file in the same folder, fsync,
 * then rename: the file is either complete or absent.
 */
#ifndef MP_ARTIFACT_H
#define MP_ARTIFACT_H

#include "mp.h"

#define MP_ART_VERSION 1        /* the container version this build writes and reads */

/* Opens a writer for path (the temporary file "<path>.tmp.<pid>"). */
int  mp_art_writer_open(const char *path, mp_art_writer **out, mp_err *err);
/* Writes the checksum, fsyncs, renames over path, fsyncs the folder and frees
 * w.  On failure removes the temporary file; w is freed either way.
 * sha256/bytes (NULL-able) receive the final file's digest and size. */
int  mp_art_writer_commit(mp_art_writer *w, char sha256[65], long long *bytes, mp_err *err);
/* Removes the temporary file and frees w.  NULL-safe. */
void mp_art_writer_abort(mp_art_writer *w);

int  mp_art_reader_open(const char *path, mp_art_reader **out, mp_err *err);
void mp_art_reader_free(mp_art_reader *r);            /* NULL-safe */
/* The whole-file sha256 of what was read (64 hex + NUL, borrowed). */
const char *mp_art_reader_sha256(const mp_art_reader *r);

/* A model file: the fitted transforms + the model + names + provenance. */
typedef struct mp_model_file {
    mp_model      *model;
    mp_transform  *transforms;      /* applied in order to raw feature columns */
    size_t         n_transforms;
    char         **feature_names;   /* raw input columns, in model order */
    size_t         n_features;
    char         **class_names;     /* classification only */
    size_t         n_classes;
    char          *target_name;     /* NULL-able */
    char          *algorithm;       /* model ops name */
    char          *pipeline;        /* provenance, NULL-able */
    char          *run_id;
    char          *created;
    char          *mlpipe_version;
    char           sha256[65];      /* of the whole file */
} mp_model_file;

/* Saves ctx's transforms and model with the names of ctx->train to path,
 * atomically.  sha256/bytes (NULL-able) receive the result. */
int  mp_model_save(const char *path, const mp_ctx *ctx, char sha256[65], long long *bytes,
                   mp_err *err);
int  mp_model_load(const char *path, mp_model_file **out, mp_err *err);
void mp_model_file_free(mp_model_file *mf);           /* NULL-safe */
/* Applies the transforms to X (raw columns in feature_names order, modified
 * in place) and writes X.n_rows x model->n_outputs scores into out (which
 * this initialises). */
int  mp_model_file_scores(const mp_model_file *mf, mp_matrix *X, mp_matrix *out, mp_err *err);

#endif /* MP_ARTIFACT_H */
