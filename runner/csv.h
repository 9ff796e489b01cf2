/*
 * csv.h -- reading delimited text into an mp_dataset (libcsv underneath).
 *
 * Shared by `load: csv` and `mlpipe predict`.  The first row is the header.
 * Feature cells must be numbers; the target column may hold numbers
 * (regression target, or classes once a classifier encodes them) or any
 * strings (classes named by them, sorted by name).  Every error names the
 * file, the 1-based line and the 1-based column:
 *   "iris.csv:37:2: non-numeric value 'abc' in column 'sepal_width'".
 */
#ifndef MP_CSV_H
#define MP_CSV_H

#include "mp.h"

enum { MP_MISSING_ERROR = 0, MP_MISSING_DROP = 1 };

typedef struct mp_csv_opts {
    char         delimiter;         /* ',' by default; '\t', ';' ... */
    const char  *target;            /* target column name, or NULL for none */
    bool         target_optional;   /* a missing target column is not an error */
    char *const *columns;           /* features to keep, in this order; NULL = all */
    size_t       n_columns;
    char *const *exclude;           /* columns to drop */
    size_t       n_exclude;
    int          missing;           /* MP_MISSING_ERROR or MP_MISSING_DROP */
    bool         ignore_extra;      /* columns neither feature nor target are skipped
                                       (predict); otherwise they are features */
} mp_csv_opts;

void mp_csv_opts_init(mp_csv_opts *o);                /* the defaults above */
/* Reads path ("-" = stdin) into *out (caller frees with mp_dataset_free). */
int  mp_csv_read(const char *path, const mp_csv_opts *o, mp_dataset **out, mp_err *err);
/* Parses a number the way the loader does: exactly rounded float. */
bool mp_csv_parse_float(const char *s, size_t len, float *out);

#endif /* MP_CSV_H */
