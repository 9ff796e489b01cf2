/*
 * progress.c -- progress of long stages: the bar on a terminal, log lines
 * elsewhere (progress.h says where each shows and how to turn it off).
 *
 * Trainers report once per mini-batch, thousands of times a second, so the
 * common path of mp_progress_update is one branch and a read of the coarse
 * monotonic clock (a vDSO call, no syscall, a few ms resolution: plenty for a
 * 0.1 s throttle).  Formatting and writing happen at most every BAR_PERIOD
 * for the bar and every interval for the lines.
 *
 * The rate is the mean since the first update of the stage (or since the
 * last restart: a unit change, or done going back as k-means does for each
 * of its n_init runs), which is steadier than a per-redraw rate and good
 * enough for an ETA.
 */
#include "progress.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define BAR_PERIOD 0.1      /* seconds between redraws of the bar */
#define BAR_DELAY  0.3      /* no bar before a stage ran this long: no flicker */
#define BAR_MAX    40       /* widest bar, in cells */
#define BAR_MIN    5        /* narrower than this, the bar is left out */
#define REST_ROOM  44       /* columns kept for " 42% 2.3/5 epoch, 0.41 epoch/s, ETA 7s" */

enum { PG_OFF = 0, PG_BAR = 1, PG_LINES = 2 };

static struct {
    int    mode;            /* PG_OFF outside a stage */
    char   stage[64];
    char   unit[24];        /* the unit of the rate baseline */
    double interval;        /* PG_LINES: seconds between lines */
    double t_start;         /* clock at mp_progress_begin */
    double next;            /* updates before this clock time return at once */
    double t_base;          /* rate baseline: clock and done of the first update */
    double done_base;
    double last_done;       /* done at the last look, to see it go back */
    bool   have_base;
} pg;

/* The bar is on screen.  Log lines may come from any thread (the heartbeat,
 * a training thread's warning), so this one is atomic. */
static atomic_bool drawn;

static double coarse_now(void) {
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- formatting */

static bool is_bytes(const char *unit) {
    return strcmp(unit, "bytes") == 0 || strcmp(unit, "B") == 0;
}

/* Binary scale for a byte count: divisor and suffix. */
static double byte_scale(double v, const char **suffix) {
    static const char *const names[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double div = 1.0;
    int i = 0;
    while (i < 4 && fabs(v) >= div * 1024.0) {
        div *= 1024.0;
        i++;
    }
    *suffix = names[i];
    return div;
}

/* A count as people read it: 17, 2.3 (cut, not rounded, so an epoch is not
 * shown done before it is), 12.3k, 4.56M. */
static void fmt_count(char *buf, size_t size, double v) {
    double a = fabs(v);
    if (a >= 1e9) snprintf(buf, size, "%.2fG", v / 1e9);
    else if (a >= 1e6) snprintf(buf, size, "%.2fM", v / 1e6);
    else if (a >= 1e4) snprintf(buf, size, "%.1fk", v / 1e3);
    else if (v == floor(v) || a >= 100) snprintf(buf, size, "%.0f", floor(v));
    else snprintf(buf, size, "%.1f", floor(v * 10.0 + 1e-9) / 10.0);
}

/* "2.3/5 epoch", "12.3/96.0 MiB", "1234 rows" (no total). */
static void fmt_amount(char *buf, size_t size, const char *unit, double done, double total) {
    if (is_bytes(unit)) {
        const char *sfx;
        double div = byte_scale(total > 0 ? total : done, &sfx);
        if (div == 1.0 && total > 0) snprintf(buf, size, "%.0f/%.0f B", done, total);
        else if (div == 1.0) snprintf(buf, size, "%.0f B", done);
        else if (total > 0) snprintf(buf, size, "%.1f/%.1f %s", done / div, total / div, sfx);
        else snprintf(buf, size, "%.1f %s", done / div, sfx);
        return;
    }
    char d[32], t[32];
    fmt_count(d, sizeof d, done);
    if (total > 0) {
        fmt_count(t, sizeof t, total);
        snprintf(buf, size, "%s/%s%s%s", d, t, unit[0] ? " " : "", unit);
    } else {
        snprintf(buf, size, "%s%s%s", d, unit[0] ? " " : "", unit);
    }
}

/* "0.412 epoch/s", "23.4k rows/s", "45.6 MiB/s". */
static void fmt_rate(char *buf, size_t size, const char *unit, double rate) {
    if (is_bytes(unit)) {
        const char *sfx;
        double div = byte_scale(rate, &sfx);
        snprintf(buf, size, "%.3g %s/s", rate / div, sfx);
        return;
    }
    const char *k = "";
    if (rate >= 1e6) {
        rate /= 1e6;
        k = "M";
    } else if (rate >= 1e3) {
        rate /= 1e3;
        k = "k";
    }
    snprintf(buf, size, "%.3g%s %s/s", rate, k, unit[0] ? unit : "units");
}

void mp_progress_format_eta(char *buf, size_t size, double s) {
    if (!isfinite(s) || s < 0 || s > 1e9) {
        snprintf(buf, size, "?");
        return;
    }
    long n = (long)ceil(s - 1e-6);     /* rounded up: "0s" only when done */
    if (n < 60) snprintf(buf, size, "%lds", n);
    else if (n < 3600) snprintf(buf, size, "%ldm%02lds", n / 60, n % 60);
    else snprintf(buf, size, "%ldh%02ldm", n / 3600, n / 60 % 60);
}

/* Percentage done, floored so 100 means finished; NAN without a total. */
static double percent(double done, double total) {
    if (!(total > 0)) return NAN;
    double p = 100.0 * done / total;
    return p < 0 ? 0 : p > 100 ? 100 : p;
}

/* Seconds left at `rate`; NAN when unknown. */
static double eta_of(double done, double total, double rate) {
    if (!(total > 0) || !(rate > 0)) return NAN;
    return done >= total ? 0.0 : (total - done) / rate;
}

size_t mp_progress_format_bar(char *buf, size_t size, const char *stage, const char *unit,
                              double done, double total, double rate, int width) {
    if (size == 0) return 0;
    if (!unit) unit = "";
    if (!stage) stage = "";
    char amount[96], speed[64] = "", eta[32] = "", rest[256];
    fmt_amount(amount, sizeof amount, unit, done, total);
    if (rate > 0 && isfinite(rate)) {
        char r[48];
        fmt_rate(r, sizeof r, unit, rate);
        snprintf(speed, sizeof speed, ", %s", r);
        double left = eta_of(done, total, rate);
        if (isfinite(left)) {
            char e[16];
            mp_progress_format_eta(e, sizeof e, left);
            snprintf(eta, sizeof eta, ", ETA %s", e);
        }
    }
    double pct = percent(done, total);
    if (isfinite(pct)) snprintf(rest, sizeof rest, " %3d%% %s%s%s", (int)floor(pct), amount,
                                speed, eta);
    else snprintf(rest, sizeof rest, " %s%s", amount, speed);

    /* stage + " [" + bar + "]" + rest in width - 1 columns (writing the last
     * column would wrap).  The bar gets what is left beside REST_ROOM for the
     * rest, so it keeps its width while the figures change length; only a
     * longer rest takes cells from it. */
    size_t max = width > 1 ? (size_t)width - 1 : 0, len_rest = strlen(rest);
    long room = (long)max - (long)strlen(stage) - 3;
    long cells = room - (long)(len_rest > REST_ROOM ? len_rest : REST_ROOM);
    if (cells > BAR_MAX) cells = BAR_MAX;
    if (!isfinite(pct)) cells = 0;
    char line[512];
    size_t n;
    if (cells >= BAR_MIN) {
        char bar[BAR_MAX + 1];
        long full = (long)floor(pct / 100.0 * (double)cells);
        for (long i = 0; i < cells; i++) bar[i] = i < full ? '=' : i == full ? '>' : ' ';
        bar[cells] = '\0';
        n = (size_t)snprintf(line, sizeof line, "%s [%s]%s", stage, bar, rest);
    } else {
        n = (size_t)snprintf(line, sizeof line, "%s%s", stage, rest);
    }
    if (n >= sizeof line) n = sizeof line - 1;
    if (n > max) n = max;
    if (n > size - 1) n = size - 1;
    memcpy(buf, line, n);
    buf[n] = '\0';
    return n;
}

/* ---------------------------------------------------------------- output */

static int term_width(void) {
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
    long long v;
    const char *c = getenv("COLUMNS");
    if (c && mp_parse_long(c, &v) && v > 0 && v < 10000) return (int)v;
    return 80;
}

static void draw_bar(double done, double total, double rate) {
    char line[512];
    mp_progress_format_bar(line, sizeof line, pg.stage, pg.unit, done, total, rate,
                           term_width());
    /* One write: \r, the line, then erase what a longer line left behind. */
    fprintf(stderr, "\r%s\033[K", line);
    atomic_store(&drawn, true);
}

/* Rounded to a tenth, for the JSON fields. */
static double tenth(double v) { return isfinite(v) ? round(v * 10.0) / 10.0 : v; }

static void log_line(double done, double total, double rate) {
    char amount[96], speed[64] = "", eta[32] = "";
    fmt_amount(amount, sizeof amount, pg.unit, done, total);
    double pct = percent(done, total), left = eta_of(done, total, rate);
    if (rate > 0 && isfinite(rate)) {
        char r[48];
        fmt_rate(r, sizeof r, pg.unit, rate);
        snprintf(speed, sizeof speed, ", %s", r);
    }
    if (isfinite(left)) {
        char e[16];
        mp_progress_format_eta(e, sizeof e, left);
        snprintf(eta, sizeof eta, ", ETA %s", e);
    }
    /* NAN goes out as JSON null: unknown. */
    const mp_log_field f[] = {
        { "unit", pg.unit, 0 },
        { "done", NULL, done },
        { "total", NULL, total > 0 ? total : NAN },
        { "pct", NULL, tenth(pct) },
        { "rate", NULL, rate > 0 ? rate : NAN },
        { "eta_s", NULL, tenth(left) },
    };
    if (isfinite(pct))
        mp_log_write_fields(MP_LOG_INFO, f, sizeof f / sizeof *f, "%s: progress %d%% (%s%s%s)",
                            pg.stage, (int)floor(pct), amount, speed, eta);
    else
        mp_log_write_fields(MP_LOG_INFO, f, sizeof f / sizeof *f, "%s: progress %s%s",
                            pg.stage, amount, speed);
}

/* ---------------------------------------------------------------- state */

void mp_progress_begin(const char *stage) {
    mp_progress_end();
    memset(&pg, 0, sizeof pg);
    const char *env = getenv("MLPIPE_PROGRESS");
    if (mp_log_level < MP_LOG_INFO || (env && (strcmp(env, "0") == 0 || strcmp(env, "off") == 0)))
        return;
    const char *term = getenv("TERM");
    bool bar = isatty(STDERR_FILENO) && mp_log_is_text_stderr() &&
               !(term && strcmp(term, "dumb") == 0) && !(env && strcmp(env, "lines") == 0);
    pg.mode = bar ? PG_BAR : PG_LINES;
    pg.interval = MP_PROGRESS_INTERVAL;
    const char *iv = getenv("MLPIPE_PROGRESS_INTERVAL");
    double v;
    if (iv && mp_parse_double(iv, &v) && v > 0 && v < 1e6) pg.interval = v;
    snprintf(pg.stage, sizeof pg.stage, "%s", stage ? stage : "");
    if (bar) mp_log_set_before_line(mp_progress_clear);     /* log lines erase the bar */
    pg.t_start = coarse_now();
    pg.next = 0;                /* the first update sets the rate baseline */
}

void mp_progress_end(void) {
    mp_progress_clear();
    pg.mode = PG_OFF;
}

void mp_progress_clear(void) {
    if (atomic_load(&drawn) && atomic_exchange(&drawn, false)) fputs("\r\033[K", stderr);
}

void mp_progress_update(const char *unit, double done, double total) {
    if (pg.mode == PG_OFF) return;
    double now = coarse_now();
    if (now < pg.next || !isfinite(done) || !isfinite(total)) return;
    if (!unit) unit = "";
    if (!pg.have_base || done < pg.last_done ||
        strncmp(unit, pg.unit, sizeof pg.unit - 1) != 0) {
        snprintf(pg.unit, sizeof pg.unit, "%s", unit);
        pg.t_base = now;
        pg.done_base = done;
        pg.have_base = true;
    }
    pg.last_done = done;
    double el = now - pg.t_base;
    double rate = el > 0 ? (done - pg.done_base) / el : 0.0;
    if (pg.mode == PG_BAR) {
        pg.next = now + BAR_PERIOD;
        if (now - pg.t_start < BAR_DELAY) {
            pg.next = pg.t_start + BAR_DELAY;
            return;
        }
        draw_bar(done, total, rate);
    } else {
        if (now - pg.t_start < pg.interval || el <= 0) {   /* too soon, or no rate yet */
            pg.next = pg.t_start + pg.interval;
            return;
        }
        pg.next = now + pg.interval;
        log_line(done, total, rate);
    }
}
