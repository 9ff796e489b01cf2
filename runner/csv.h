/*
 * csv.h -- reading delimited text into an mp_dataset (libcsv underneath).
 *
 * Shared by `load: csv` and `mlpipe predict`.  The first row is the header.
 * Feature cells must be numbers; the target column may hold numbers
 * (regression target, or classes once a classifier encodes them) or any
 * strings (classes named by them, sorted by name).  Every error names the
 * file, the 1-based line and the 1-based column:
 *   "iris.csv:37:2: non-numeric value 'abc' in column 'sepal_width'".
 * The line is the physical line on which the record starts (a quoted cell may
 * span lines); the column is the 1-based field number in that record.
 *
 * Accepted input: RFC 4180 quoting (lenient about stray quotes inside unquoted
 * cells), LF or CRLF line ends, blank lines (skipped), a UTF-8 byte order mark
 * (stripped), blanks around cells (trimmed).  Missing cells are the empty
 * cell, NA, NaN/nan/NAN and "?".  With the delimiter ' ', runs of spaces
 * separate cells (as in whitespace-aligned tables), so there a missing value
 * must be written as NA.
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
                                       unparsed (predict); see below */
} mp_csv_opts;

/*
 * Column roles.  The target (if named and present) is the label column.  When
 * `columns` is given, exactly those are the features, in that order, and every
 * other column is skipped without being parsed, so ignore_extra changes
 * nothing there (predict sets it anyway, to say what it relies on).  When
 * `columns` is NULL, every column that is neither the target nor in `exclude`
 * is a feature.  Errors (MP_E_DATA, where = "FILE:HEADER_LINE"): a name in
 * target (unless target_optional), columns or exclude that is not in the
 * header ("did you mean ..." or the list of columns), the target also listed
 * in columns or exclude, a name in both columns and exclude or twice in
 * columns, no feature column left, duplicate header names.
 */

void mp_csv_opts_init(mp_csv_opts *o);                /* the defaults above */

/*
 * Reads path ("-" = stdin) into *out, a new dataset the caller frees with
 * mp_dataset_free; *out is written only on success.  The dataset has
 * X = rows x features (float32), feature_names, source_rows (the line of each
 * row) and, when there is a target: target_name and y.  A target whose every
 * cell is a finite number gives MP_TASK_REGRESSION with y = the values;
 * otherwise MP_TASK_CLASSIFICATION with class_names = the distinct strings
 * sorted by strcmp and y = class indices.  No target: MP_TASK_NONE, y NULL.
 * With o->missing == MP_MISSING_DROP rows holding a missing cell (target
 * included) are skipped and their number logged at info level.
 * Returns MP_OK, or: MP_E_IO (cannot open/read: strerror), MP_E_PARSE (bad
 * cell, ragged row, missing value, unterminated quote: where =
 * "FILE:LINE[:COL]"), MP_E_DATA (empty file, no data rows, column names as
 * above), MP_E_CONFIG (an invalid delimiter), MP_E_NOMEM.
 * A regular file of 8 MiB or more (not stdin) is parsed by two threads, the
 * calling one and a worker it joins before returning; the result, errors
 * included, is the same as from one.  The file should not change meanwhile.
 */
int  mp_csv_read(const char *path, const mp_csv_opts *o, mp_dataset **out, mp_err *err);

/*
 * Parses the number in s[0..len) (no NUL needed; blanks around it allowed)
 * the way the loader does: the exactly rounded float, bit for bit what strtof
 * gives for the same text (C locale).  Accepts whatever strtof accepts as a
 * whole, so also "inf", "nan" and hex floats (the loader rejects non-finite
 * values itself); numbers longer than 255 characters are refused.  Writes
 * *out and returns true on success; false (and *out untouched) otherwise.
 */
bool mp_csv_parse_float(const char *s, size_t len, float *out);

/*
 * A delimiter as a user writes it: one character, or the words "tab" (also
 * "\t" as two characters), "semicolon", "comma", "pipe", "space".  A quote,
 * CR, LF or NUL is refused.  Writes *out and returns true when valid.
 */
bool mp_csv_parse_delimiter(const char *name, char *out);

#endif /* MP_CSV_H */

