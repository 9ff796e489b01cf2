/*
 * report.h -- `mlpipe report`: runs rendered as one self-contained HTML file.
 *
 * The file needs nothing else: CSS inline, charts as inline SVG, no script,
 * no fonts or images fetched.  It holds the runs side by side (fields,
 * params, final figures, differing rows marked), one line chart per
 * per-step metric key with the runs overlaid, and a heat map of each run's
 * confusion matrix (metric rows PREFIX.confusion_matrix.<true>.<predicted>).
 * The markup is well-formed XML (XHTML polyglot), so `xmllint --noout`
 * checks it.
 */
#ifndef MP_REPORT_H
#define MP_REPORT_H

#include "mp.h"
#include "rundb.h"

/* `mlpipe report RUN [RUN...] [-o FILE]`: runs are ids or "last"; the
 * report goes to out_path (a regular file is written to a temporary file
 * beside it and renamed, so it is complete or absent; a device or pipe is
 * written directly), or to stdout when out_path is NULL or "-".
 * Errors: MP_E_USAGE (no runs, too many, a bad or unknown run), MP_E_DB,
 * MP_E_IO (cannot write), MP_E_NOMEM. */
int mp_report_main(const char *db_path, char *const *runs, size_t n_runs, const char *out_path,
                   mp_err *err);

/* Writes the report of runs ids[0 .. n) (which must exist) to fp.  The
 * caller checks fp for write errors.  MP_E_DB or MP_E_NOMEM. */
int mp_report_write(mp_rundb *db, const long long *ids, size_t n, FILE *fp, mp_err *err);

#endif /* MP_REPORT_H */
