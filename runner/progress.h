/*
 * progress.h -- progress of long stages: a bar on a terminal, a log line now
 * and then elsewhere.
 *
 * The executor brackets each stage with mp_progress_begin / _end; in between
 * the stage reports through mp_ctx_progress() (stages/mp_stage.h), and runner
 * code without a ctx (the CSV reader) through mp_progress_update().  Where it
 * shows:
 *   - stderr is a terminal (and TERM is not "dumb"), text logs, no log sink:
 *     a one-line bar redrawn in place with \r at most 10 times a second,
 *     erased before any other log line (mp_progress_clear is runner/log.c's
 *     before-line hook then) and at the end of the stage;
 *   - otherwise (a pipe, a file, JSON logs): an info log line every
 *     MLPIPE_PROGRESS_INTERVAL seconds (default 5), the first one only once
 *     the stage has run that long, so short stages print none.
 * Off with --quiet (log level below info) or MLPIPE_PROGRESS=0;
 * MLPIPE_PROGRESS=lines forces the log lines (sweep workers sharing one
 * terminal get it).  All of it is for the stage's thread only.
 */
#ifndef MP_PROGRESS_H
#define MP_PROGRESS_H

#include "mp.h"

#define MP_PROGRESS_INTERVAL 5.0    /* seconds between log lines off a terminal */

/* A stage named `stage` starts (copied): decides bar, lines or off from the
 * environment, the log level and format, and whether stderr is a terminal. */
void mp_progress_begin(const char *stage);

/* The stage ended: erases the bar if one is drawn; updates are ignored until
 * the next mp_progress_begin. */
void mp_progress_end(void);

/* done of total `unit`s ("epoch", "rows", "bytes") are through; total <= 0
 * when unknown (no bar, percentage or ETA then).  A done below the last one,
 * or a new unit, restarts the rate.  Costs a coarse clock read when nothing is
 * due, and one branch outside a stage. */
void mp_progress_update(const char *unit, double done, double total);

/* Erases the bar if one is drawn, so that a log line can follow on a clean
 * line.  Safe from any thread. */
void mp_progress_clear(void);

/* Formats the bar line for a terminal `width` columns wide into buf (at most
 * width - 1 characters, so the cursor never wraps, and at most size - 1):
 *   "train [=========>          ]  45% 2.3/5 epoch, 0.41 epoch/s, ETA 7s"
 * The bar shrinks or goes when the line would not fit; rate <= 0 (unknown)
 * leaves out the rate and the ETA; total <= 0 leaves out the bar, the
 * percentage and the ETA.  "bytes" are shown as KiB/MiB/GiB.  Returns the
 * length written. */
size_t mp_progress_format_bar(char *buf, size_t size, const char *stage, const char *unit,
                              double done, double total, double rate, int width);

/* A duration for people: "42s", "3m07s", "2h05m"; "?" when negative or not
 * finite. */
void mp_progress_format_eta(char *buf, size_t size, double seconds);

#endif /* MP_PROGRESS_H */
