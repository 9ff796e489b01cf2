/*
 * artifact.h -- the model file container (format "MLPM", version 1) and the
 * model file built on it.
 *
 * Container layout, all text so a model can be read with `less` and diffed:
 *     MLPM 1\n
 *     <key> <type> <count> <value> <value> ...\n      one entry per line
 *     ...
 *     sha256 <64 hex digits>\n                         of every byte above
 * Fields are separated by exactly one space; an entry with count 0 ends right
 * after the count.  type is
 *     s  string: bytes as they are (UTF-8 passes through), except space, '%',
 *        control bytes (0x00-0x1f, 0x7f) which are written as %XX (two
 *        upper-case hex digits); the empty string is the lone token "%"
 *        (no non-empty string encodes to it, every other '%' has two digits)
 *     i  int64, decimal
 *     d  double, %.17g
 *     f  float, %.9g
 * Both number formats round-trip every finite value exactly in the C locale
 * (mlpipe never calls setlocale); NaN and infinities are written as nan,
 * inf and -inf (a NaN's sign and payload are not kept).  Keys are unique,
 * non-empty, and hold no space or control byte.
 *
 * A reader refuses a newer version, a missing or wrong checksum (truncated or
 * corrupted file) and malformed lines, naming the file and line.  Writers go
 * to a temporary file "<path>.tmp.<pid>" in the same folder, fsync, then
 * rename: the file is either complete or absent.
 *
 * Compatibility rule: a new build keeps reading every older version; adding
 * keys does not change the version (readers look keys up by name and ignore
 * the ones they do not know), only a change of the layout above does.
 */
#ifndef MP_ARTIFACT_H
#define MP_ARTIFACT_H

#include "mp.h"

#define MP_ART_VERSION 1        /* the container version this build writes and reads */

/* Opens a writer for path: creates missing parent folders (like mkdir -p) and
 * the temporary file "<path>.tmp.<pid>".  Errors: MP_E_IO naming the path and
 * strerror, MP_E_NOMEM.  *out is set only on success; the caller must end the
 * writer with exactly one of mp_art_writer_commit / mp_art_writer_abort.
 *
 * The mp_art_put_* functions (stages/mp_stage.h) return MP_OK, MP_E_NOMEM or
 * MP_E_IO (a write failed, or the key is empty, has a space, or was written
 * before).  The first failure is kept inside the writer and every later put
 * is a no-op returning the same code, so a caller may write many keys and
 * check once: commit reports the kept error with the path. */
int  mp_art_writer_open(const char *path, mp_art_writer **out, mp_err *err);
/* The writer's kept error: MP_OK, or its code after copying the message into
 * err (unless err already holds an error).  Lets a caller whose stage failed
 * report the root cause ("out of memory writing 'x.mlpm'"). */
int  mp_art_writer_status(const mp_art_writer *w, mp_err *err);
/* Writes the checksum, fsyncs, renames over path, fsyncs the folder and frees
 * w.  On failure removes the temporary file; w is freed either way.
 * sha256/bytes (NULL-able) receive the final file's digest and size. */
int  mp_art_writer_commit(mp_art_writer *w, char sha256[65], long long *bytes, mp_err *err);
/* Removes the temporary file and frees w.  NULL-safe. */
void mp_art_writer_abort(mp_art_writer *w);

/* Reads and checks the whole file (magic, version, checksum, every line) and
 * parses every value, so a file that opens is fully valid and the getters
 * only copy.  Errors are MP_E_PARSE (with where = "file:LINE" for a bad
 * line), MP_E_IO, MP_E_NOMEM.  *out is set only on success. */
int  mp_art_reader_open(const char *path, mp_art_reader **out, mp_err *err);
void mp_art_reader_free(mp_art_reader *r);            /* NULL-safe */
/* The whole-file sha256 of what was read (64 hex + NUL, borrowed). */
const char *mp_art_reader_sha256(const mp_art_reader *r);

/* A model file: the fitted transforms + the model + names + provenance.
 * Owns every pointer; free with mp_model_file_free. */
typedef struct mp_model_file {
    mp_model      *model;
    mp_transform  *transforms;      /* applied in order to raw feature columns */
    size_t         n_transforms;
    char         **feature_names;   /* raw input columns, in model order */
    size_t         n_features;      /* == model->n_features (transforms keep columns) */
    char         **class_names;     /* classification only, else NULL */
    size_t         n_classes;
    char          *target_name;     /* NULL-able */
    char          *algorithm;       /* model ops name */
    char          *pipeline;        /* provenance, NULL-able */
    char          *run_id;          /* NULL-able */
    char          *created;         /* ISO 8601 UTC time of the save */
    char          *mlpipe_version;  /* MP_VERSION of the mlpipe that saved it */
    char           sha256[65];      /* of the whole file */
} mp_model_file;

/* Saves ctx's transforms and model with the names of ctx->train to path,
 * atomically.  sha256/bytes (NULL-able) receive the result.  Errors:
 * MP_E_DATA (no model, no feature names), MP_E_IO, MP_E_NOMEM, or whatever a
 * stage's save reported; on error no file (and no temporary file) is left. */
int  mp_model_save(const char *path, const mp_ctx *ctx, char sha256[65], long long *bytes,
                   mp_err *err);
/* Loads a model file; the algorithm and transforms are looked up by name in
 * the registry (so plugins must be loaded first).  *out, set only on success,
 * is owned by the caller. */
int  mp_model_load(const char *path, mp_model_file **out, mp_err *err);
void mp_model_file_free(mp_model_file *mf);           /* NULL-safe */
/* Applies the transforms to X (raw columns in feature_names order, modified
 * in place) and writes X.n_rows x model->n_outputs scores into out (which
 * this initialises; written only on success).  MP_E_DATA when X has the
 * wrong number of columns. */
int  mp_model_file_scores(const mp_model_file *mf, mp_matrix *X, mp_matrix *out, mp_err *err);

#endif /* MP_ARTIFACT_H */
