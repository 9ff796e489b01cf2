/*
 * report.c -- `mlpipe report`: one HTML file with runs side by side,
 * learning curves and confusion matrices, readable offline and forever.
 *
 * Layout of the page, top to bottom:
 *   runs      id (with its colour), pipeline, status, started, duration, seed
 *   params    one column per run; rows whose values differ are marked "*"
 *   metrics   final figures, likewise (confusion-matrix cells excluded)
 *   curves    one SVG line chart per per-step key (train.loss, val.loss ...):
 *             x = step, y = value, runs overlaid in their colours, ticks at
 *             "nice" numbers (1, 2, 5 x 10^k), axis labels, a legend
 *   matrices  one SVG heat map per run and confusion-matrix prefix: rows are
 *             true classes, columns predicted ones, colour = share of the row
 *             (so a rare class reads as well as a common one), cell = count
 *
 * Everything is written straight to the FILE as it is computed.  All text
 * from the database goes through put_text(), which escapes markup and
 * replaces invalid UTF-8 and control characters, so the file stays
 * well-formed XML whatever a param or class name holds.  A run with tens of
 * thousands of steps is thinned to the minimum and maximum per pixel column,
 * which keeps every spike and keeps the file small.
 */
#include "report.h"

#include <errno.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#define REPORT_USAGE "mlpipe report RUN [RUN...] [-o FILE]"

enum { MAX_RUNS = 32 };

/* Tableau 10: distinct, colour-blind-aware; runs beyond 10 reuse them with
 * a dash pattern (see series_style). */
static const char *const palette[] = {
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
};
enum { N_COLORS = sizeof palette / sizeof *palette };

/* Line chart geometry, in SVG pixels. */
enum {
    CH_W = 560, CH_H = 320,                 /* whole chart */
    CH_L = 64, CH_R = 16, CH_T = 16, CH_B = 46,   /* margins: ticks and labels */
    CH_TICKS = 6                            /* about this many ticks per axis */
};

static const char css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
    "color:#222;background:#fff;margin:24px auto;max-width:1240px;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 4px}"
    "h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}"
    "p.meta{color:#666;margin:0}"
    "table{border-collapse:collapse;font-variant-numeric:tabular-nums}"
    "th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}"
    "th{background:#f6f6f6;font-weight:600}"
    "td.num{text-align:right}"
    "td.mark{color:#b35900;font-weight:700;padding-right:0}"
    "tr.diff td{background:#fff6d5}"
    "td.none{color:#aaa}"
    ".swatch{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:6px}"
    ".charts{display:flex;flex-wrap:wrap;gap:18px}"
    "figure{margin:0}"
    "figcaption{font-size:13px;color:#444;text-align:center;margin-top:2px}"
    "svg{background:#fff}"
    "svg text{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif}"
    ".grid{stroke:#e6e6e6;stroke-width:1}"
    ".axis{stroke:#555;stroke-width:1}"
    ".tick{font-size:11px;fill:#555}"
    ".label{font-size:12px;fill:#333}"
    ".series{fill:none;stroke-width:1.8;stroke-linejoin:round;stroke-linecap:round}"
    ".legend{font-size:12px;fill:#333}"
    ".cell-text{font-size:11px}"
    "p.note{color:#666}";

/* ---------------------------------------------------------------- text */

/* Length of the valid UTF-8 sequence at s (1-4), or 0 if it is not one. */
static size_t utf8_len(const unsigned char *s) {
    if (s[0] < 0x80) return 1;
    size_t n = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 ? 2 : 0;
    if (n == 0 || s[0] > 0xF4) return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    /* overlong 3/4-byte forms, surrogates, beyond U+10FFFF */
    if (n == 3 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] >= 0xA0))) return 0;
    if (n == 4 && ((s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] >= 0x90))) return 0;
    return n;
}

/* Writes s as XML text or attribute content: & < > " ' escaped, control
 * characters and invalid UTF-8 replaced by U+FFFD.  NULL writes nothing. */
static void put_text(FILE *fp, const char *s) {
    if (!s) return;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = utf8_len(p);
        switch (n == 1 ? *p : 0) {
        case '&': fputs("&amp;", fp); break;
        case '<': fputs("&lt;", fp); break;
        case '>': fputs("&gt;", fp); break;
        case '"': fputs("&quot;", fp); break;
        case '\'': fputs("&#39;", fp); break;
        default:
            if (n == 0 || (n == 1 && *p < 0x20 && *p != '\t' && *p != '\n') || *p == 0x7f)
                fputs("\xEF\xBF\xBD", fp);
            else
                fwrite(p, 1, n, fp);
        }
        p += n ? n : 1;
    }
}

/* printf into a buffer, then put_text: for formatted text that may hold
 * names from the database. */
static void put_textf(FILE *fp, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put_textf(FILE *fp, const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    put_text(fp, buf);
}

/* A figure for a table or tick: 6 significant digits, "nan" for NaN. */
static void fmt_num(char *buf, size_t n, double v) {
    if (isnan(v)) snprintf(buf, n, "nan");
    else snprintf(buf, n, "%.6g", v);
}

/* ---------------------------------------------------------------- histories */

/* The per-step values of one key of one run. */
typedef struct series {
    char      *key;         /* owned */
    double    *x, *y;       /* n steps and values (NaN for NULL) */
    size_t     n, cap;
} series;

typedef struct run_hist {
    series *v;              /* sorted by key (the query orders them) */
    size_t  n, cap;
} run_hist;

static void run_hist_release(run_hist *h) {
    for (size_t i = 0; i < h->n; i++) {
        mp_free(h->v[i].key);
        mp_free(h->v[i].x);
        mp_free(h->v[i].y);
    }
    mp_free(h->v);
    memset(h, 0, sizeof *h);
}

static const char steps_sql[] =
    "SELECT key, step, value FROM metrics WHERE run = ?1 AND step IS NOT NULL"
    " ORDER BY key, step, rowid";

/* Reads every per-step key of run into h. */
static int read_hist(mp_rundb *db, long long run, run_hist *h, mp_err *err) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(mp_rundb_sqlite(db), steps_sql, -1, &st, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(st, 1, run);
    while (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        rc = SQLITE_OK;
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (h->n == 0 || strcmp(h->v[h->n - 1].key, key) != 0) {
            if (h->n == h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 8;
                series *v = mp_realloc(h->v, mp_mul_size(cap, sizeof *v));
                if (!v) goto nomem;
                h->v = v;
                h->cap = cap;
            }
            h->v[h->n] = (series){ .key = mp_strdup(key) };
            if (!h->v[h->n++].key) goto nomem;
        }
        series *s = &h->v[h->n - 1];
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 64;
            double *x = mp_realloc(s->x, mp_mul_size(cap, sizeof *x));
            if (x) s->x = x;
            double *y = x ? mp_realloc(s->y, mp_mul_size(cap, sizeof *y)) : NULL;
            if (!y) goto nomem;
            s->y = y;
            s->cap = cap;
        }
        s->x[s->n] = (double)sqlite3_column_int64(st, 1);
        s->y[s->n] = sqlite3_column_type(st, 2) == SQLITE_NULL ? NAN : sqlite3_column_double(st, 2);
        s->n++;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_OK) return mp_rundb_fail(db, err);
    return MP_OK;
nomem:
    sqlite3_finalize(st);
    return MP_ERR(err, MP_E_NOMEM, "out of memory reading the history of run %lld", run);
}

static const series *find_series(const run_hist *h, const char *key) {
    for (size_t i = 0; i < h->n; i++)
        if (strcmp(h->v[i].key, key) == 0) return &h->v[i];
    return NULL;
}

/* ---------------------------------------------------------------- axes */

/* An axis: data range widened to nice tick values. */
typedef struct axis {
    double lo, hi;          /* the drawn range: first and last tick */
    double step;            /* between ticks */
    int    decimals;        /* for tick labels; -1: use %g */
} axis;

/* Ticks at multiples of 1, 2 or 5 x 10^k covering [lo, hi]; integer steps
 * when integral (steps on the x axis). */
static axis nice_axis(double lo, double hi, bool integral) {
    axis a;
    if (!isfinite(lo) || !isfinite(hi)) lo = 0, hi = 1;
    if (hi - lo < 1e-12 * (fabs(lo) + fabs(hi)) || hi == lo) {
        double pad = fabs(lo) > 0 ? fabs(lo) * 0.1 : 1;
        lo -= pad;
        hi += pad;
    }
    double raw = (hi - lo) / CH_TICKS;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    a.step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    if (integral && a.step < 1) a.step = 1;
    a.lo = floor(lo / a.step) * a.step;
    a.hi = ceil(hi / a.step) * a.step;
    double big = fmax(fabs(a.lo), fabs(a.hi));
    if (a.step >= 1e-4 && big < 1e7) {
        int d = (int)ceil(-log10(a.step) - 1e-9);
        a.decimals = d < 0 ? 0 : d;
    } else {
        a.decimals = -1;
    }
    return a;
}

static void tick_label(char *buf, size_t n, const axis *a, double v) {
    if (fabs(v) < a->step * 1e-9) v = 0;    /* no "-0" or "1e-17" */
    if (a->decimals >= 0) snprintf(buf, n, "%.*f", a->decimals, v);
    else snprintf(buf, n, "%.3g", v);
}

/* Maps v on axis a to pixels between p0 (at lo) and p1 (at hi). */
static double scale(const axis *a, double v, double p0, double p1) {
    return p0 + (v - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

/* ---------------------------------------------------------------- line chart */

/* Stroke colour and dash of the run in column i. */
static void series_style(FILE *fp, size_t i) {
    fprintf(fp, "stroke=\"%s\"", palette[i % N_COLORS]);
    if (i >= N_COLORS) fputs(" stroke-dasharray=\"6 3\"", fp);
}

/* Writes the points of s as polylines (a NaN breaks the line), thinned to
 * the min and max per pixel column when there are more points than pixels.
 *
 * Points are taken in runs that share one pixel column ([k, e)); of each
 * run only its lowest and highest value are drawn, in step order, so a
 * spike of one epoch in 100,000 still shows, and the file grows with the
 * width of the chart, not with the length of the history.  Steps that are
 * one pixel or more apart are all drawn. */
static void put_polylines(FILE *fp, const series *s, const axis *ax, const axis *ay, size_t i,
                          long long run) {
    const double x0 = CH_L, x1 = CH_W - CH_R, y0 = CH_H - CH_B, y1 = CH_T;
    bool open = false;
    size_t k = 0;
    while (k < s->n) {
        /* one pixel column's worth of points: [k, e) */
        double px = scale(ax, s->x[k], x0, x1);
        size_t e = k + 1;
        while (e < s->n && floor(scale(ax, s->x[e], x0, x1)) == floor(px)) e++;
        size_t lo = k, hi = k;
        bool gap = false;
        for (size_t m = k; m < e; m++) {
            if (isnan(s->y[m])) {
                gap = true;
                continue;
            }
            if (isnan(s->y[lo]) || s->y[m] < s->y[lo]) lo = m;
            if (isnan(s->y[hi]) || s->y[m] > s->y[hi]) hi = m;
        }
        size_t pts[2] = { lo < hi ? lo : hi, lo < hi ? hi : lo };
        for (int q = 0; q < 2; q++) {
            size_t m = pts[q];
            if (isnan(s->y[m]) || (q == 1 && pts[1] == pts[0])) continue;
            if (!open) {
                fprintf(fp, "<polyline class=\"series s%zu\" ", i);
                series_style(fp, i);
                fputs(" points=\"", fp);
                open = true;
            }
            fprintf(fp, "%.1f,%.1f ", scale(ax, s->x[m], x0, x1), scale(ay, s->y[m], y0, y1));
        }
        if (gap && open) {
            fprintf(fp, "\"><title>run %lld</title></polyline>\n", run);
            open = false;
        }
        k = e;
    }
    if (open) fprintf(fp, "\"><title>run %lld</title></polyline>\n", run);
}

/* One chart: key over steps for every run that has it.
 *
 * Layout: the plot area is the chart minus its margins (CH_L for the y tick
 * labels and the rotated key, CH_B for the x tick labels and "step").  Grid
 * lines and tick labels come first, so that the lines are drawn over them;
 * then the axes, the runs (in their palette colour, by column index) and a
 * legend box in the top-right corner of the plot.  Both axes run over the
 * data of every run, widened to whole ticks. */
static void put_chart(FILE *fp, const char *key, const run_hist *hists, const long long *ids,
                      size_t n_runs) {
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (size_t i = 0; i < n_runs; i++) {
        const series *s = find_series(&hists[i], key);
        for (size_t k = 0; s && k < s->n; k++) {
            xlo = fmin(xlo, s->x[k]);
            xhi = fmax(xhi, s->x[k]);
            if (isfinite(s->y[k])) {
                ylo = fmin(ylo, s->y[k]);
                yhi = fmax(yhi, s->y[k]);
            }
        }
    }
    axis ax = nice_axis(xlo, xhi, true), ay = nice_axis(ylo, yhi, false);
    const double x0 = CH_L, x1 = CH_W - CH_R, y0 = CH_H - CH_B, y1 = CH_T;

    fputs("<figure class=\"chart\">\n", fp);
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"line-chart\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"", CH_W, CH_H, CH_W,
            CH_H);
    put_textf(fp, "%s by step", key);
    fputs("\">\n<title>", fp);
    put_text(fp, key);
    fputs("</title>\n<g class=\"grid-lines\">\n", fp);
    char lab[48];
    /* grid and ticks: y */
    for (double v = ay.lo; v <= ay.hi + ay.step * 1e-6; v += ay.step) {
        double y = scale(&ay, v, y0, y1);
        tick_label(lab, sizeof lab, &ay, v);
        fprintf(fp, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                x0, y, x1, y, x0 - 6, y + 4, lab);
    }
    /* grid and ticks: x */
    for (double v = ax.lo; v <= ax.hi + ax.step * 1e-6; v += ax.step) {
        double x = scale(&ax, v, x0, x1);
        tick_label(lab, sizeof lab, &ax, v);
        fprintf(fp, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                x, y1, x, y0, x, y0 + 16, lab);
    }
    fputs("</g>\n", fp);
    /* axes and their labels */
    fprintf(fp, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n"
            "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
            x0, y0, x1, y0, x0, y0, x0, y1);
    fprintf(fp, "<text class=\"label x-label\" x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">step"
            "</text>\n", (x0 + x1) / 2, CH_H - 8);
    fprintf(fp, "<text class=\"label y-label\" x=\"14\" y=\"%.1f\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 14 %.1f)\">", (y0 + y1) / 2, (y0 + y1) / 2);
    put_text(fp, key);
    fputs("</text>\n", fp);
    /* the runs */
    size_t shown = 0;
    for (size_t i = 0; i < n_runs; i++) {
        const series *s = find_series(&hists[i], key);
        if (!s) continue;
        put_polylines(fp, s, &ax, &ay, i, ids[i]);
        shown++;
    }
    /* legend: top right, on a white box so lines do not run through it */
    double lw = 74, lh = 8 + 16.0 * (double)shown, lx = x1 - lw - 6, ly = y1 + 6;
    fprintf(fp, "<g class=\"legend\">\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" "
            "height=\"%.1f\" fill=\"#ffffff\" fill-opacity=\"0.85\" stroke=\"#dddddd\"/>\n",
            lx, ly, lw, lh);
    size_t row = 0;
    for (size_t i = 0; i < n_runs; i++) {
        if (!find_series(&hists[i], key)) continue;
        double y = ly + 14 + 16.0 * (double)row++;
        fprintf(fp, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"2.5\" ",
                lx + 8, y - 4, lx + 26, y - 4);
        series_style(fp, i);
        fprintf(fp, "/><text x=\"%.1f\" y=\"%.1f\">run %lld</text>\n", lx + 32, y, ids[i]);
    }
    fputs("</g>\n</svg>\n<figcaption>", fp);
    put_text(fp, key);
    fputs("</figcaption>\n</figure>\n", fp);
}

/* ---------------------------------------------------------------- confusion matrix */

/* One cell of a confusion matrix: a metric key PREFIX<true>.<predicted>. */
typedef struct cm_cell {
    const char *rest;       /* after the prefix: "<true>.<predicted>" */
    double      value;
} cm_cell;

static size_t class_index(const char **names, const size_t *lens, size_t n, const char *s,
                          size_t len) {
    for (size_t i = 0; i < n; i++)
        if (lens[i] == len && memcmp(names[i], s, len) == 0) return i;
    return n;
}

/* Splits the cells into class names and the matrix m (n x n, row = true
 * class).  Class names may hold dots ("v1.0"), so no fixed dot will do;
 * but the matrix is square over one set of classes, and a diagonal cell
 * reads "c.c": its two halves name a class.  Every other cell must then
 * split at some dot into two of those names.  names[] point into the keys,
 * lens[] are their lengths, in key order.  Returns n, or 0 when the cells
 * are no full square matrix (a cell missing, or one that fits no split). */
static size_t cm_split(const cm_cell *cells, size_t n_cells, const char **names, size_t *lens,
                       size_t max_classes, double *m) {
    size_t n = 0;
    for (size_t c = 0; c < n_cells; c++) {
        const char *r = cells[c].rest;
        size_t len = strlen(r), half = len / 2;
        if (len % 2 == 1 && r[half] == '.' && memcmp(r, r + half + 1, half) == 0 && half > 0 &&
            class_index(names, lens, n, r, half) == n) {
            if (n == max_classes) return 0;
            names[n] = r;
            lens[n++] = half;
        }
    }
    if (n == 0 || n * n != n_cells) return 0;
    for (size_t i = 0; i < n * n; i++) m[i] = NAN;
    for (size_t c = 0; c < n_cells; c++) {
        const char *r = cells[c].rest;
        size_t t = n, p = n;
        for (const char *dot = strchr(r, '.'); dot && (t == n || p == n); dot = strchr(dot + 1, '.')) {
            t = class_index(names, lens, n, r, (size_t)(dot - r));
            p = class_index(names, lens, n, dot + 1, strlen(dot + 1));
        }
        if (t == n || p == n || !isnan(m[t * n + p])) return 0;
        /* NaN figures are stored NULL; count them as 0 so the matrix stays whole */
        m[t * n + p] = isnan(cells[c].value) ? 0 : cells[c].value;
    }
    return n;       /* n * n cells, each placed once: none missing */
}

/* A heat map colour for share t in [0, 1]: white to dark blue. */
static void heat_color(char *buf, size_t n, double t) {
    static const double lo[3] = { 247, 251, 255 }, hi[3] = { 8, 48, 107 };
    if (!(t >= 0)) t = 0;
    if (t > 1) t = 1;
    int c[3];
    for (int k = 0; k < 3; k++) c[k] = (int)lround(lo[k] + (hi[k] - lo[k]) * t);
    snprintf(buf, n, "#%02x%02x%02x", c[0], c[1], c[2]);
}

/* One run's matrix for one prefix ("test.confusion_matrix").  Cells are up
 * to 48 px square and shrink to keep the matrix within about 400 px; below
 * 22 px the counts are left to the tooltips (<title>), which every cell has
 * ("true a, predicted b: 3 (20% of the row)").  Labels get room by the
 * length of the longest class name, up to 150 px. */
static int put_heatmap(FILE *fp, long long run, const char *prefix, const cm_cell *cells,
                       size_t n_cells, mp_err *err) {
    enum { MAX_CLASSES = 200 };
    const char *names[MAX_CLASSES];
    size_t lens[MAX_CLASSES];
    double *m = mp_malloc(mp_mul_size(n_cells ? n_cells : 1, sizeof *m));
    if (!m) return MP_ERR(err, MP_E_NOMEM, "out of memory drawing a confusion matrix");
    size_t n = cm_split(cells, n_cells, names, lens, MAX_CLASSES, m);
    if (n == 0) {
        fputs("<p class=\"note\">", fp);
        put_textf(fp, "run %lld: the %zu cells of %s.* do not form a square matrix", run,
                  n_cells, prefix);
        fputs("</p>\n", fp);
        mp_free(m);
        return MP_OK;
    }
    /* geometry: cells shrink with many classes; labels get room by length */
    double cell = n <= 8 ? 48 : fmax(8, 384.0 / (double)n);
    size_t longest = 1;
    for (size_t i = 0; i < n; i++) longest = lens[i] > longest ? lens[i] : longest;
    double label_w = fmin(150, 12 + 6.5 * (double)longest);
    double left = 24 + label_w, top = 24 + fmin(150, 12 + 6.5 * (double)longest);
    double w = left + cell * (double)n + 12, h = top + cell * (double)n + 12;
    bool texts = cell >= 22;

    fputs("<figure class=\"heatmap\">\n", fp);
    fprintf(fp, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"confusion-matrix\" "
            "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\" "
            "aria-label=\"", w, h, w, h);
    put_textf(fp, "confusion matrix of run %lld", run);
    fputs("\">\n<title>", fp);
    put_textf(fp, "run %lld: %s", run, prefix);
    fputs("</title>\n", fp);
    /* axis titles */
    fprintf(fp, "<text class=\"label\" x=\"%.1f\" y=\"14\" text-anchor=\"middle\">predicted"
            "</text>\n", left + cell * (double)n / 2);
    fprintf(fp, "<text class=\"label\" x=\"12\" y=\"%.1f\" text-anchor=\"middle\" "
            "transform=\"rotate(-90 12 %.1f)\">true</text>\n",
            top + cell * (double)n / 2, top + cell * (double)n / 2);
    for (size_t i = 0; i < n; i++) {
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)(lens[i] < 255 ? lens[i] : 255), names[i]);
        double c = (double)i * cell + cell / 2;
        fprintf(fp, "<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">",
                left - 6, top + c + 4);
        put_text(fp, name);
        /* column labels run upwards, ending at the matrix */
        fprintf(fp, "</text>\n<text class=\"tick\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"start\" "
                "transform=\"rotate(-90 %.1f %.1f)\">", left + c + 4, top - 6, left + c + 4,
                top - 6);
        put_text(fp, name);
        fputs("</text>\n", fp);
    }
    for (size_t i = 0; i < n; i++) {
        double row_sum = 0;
        for (size_t j = 0; j < n; j++) row_sum += fabs(m[i * n + j]);
        for (size_t j = 0; j < n; j++) {
            double v = m[i * n + j], share = row_sum > 0 ? fabs(v) / row_sum : 0;
            char fill[8], num[32];
            heat_color(fill, sizeof fill, share);
            fmt_num(num, sizeof num, v);
            double x = left + (double)j * cell, y = top + (double)i * cell;
            fprintf(fp, "<rect class=\"cell\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                    "fill=\"%s\" stroke=\"#ffffff\"><title>", x, y, cell, cell, fill);
            put_textf(fp, "true %.*s, predicted %.*s: %s (%.0f%% of the row)",
                      (int)lens[i], names[i], (int)lens[j], names[j], num, share * 100);
            fputs("</title></rect>\n", fp);
            if (texts)
                fprintf(fp, "<text class=\"cell-text\" x=\"%.1f\" y=\"%.1f\" "
                        "text-anchor=\"middle\" fill=\"%s\">%s</text>\n", x + cell / 2,
                        y + cell / 2 + 4, share > 0.5 ? "#ffffff" : "#222222", num);
        }
    }
    fputs("</svg>\n<figcaption>", fp);
    put_textf(fp, "run %lld: %s (rows: true class; colour: share of the row)", run, prefix);
    fputs("</figcaption>\n</figure>\n", fp);
    mp_free(m);
    return MP_OK;
}

/* The confusion-matrix prefix of key ("test.confusion_matrix."), or 0. */
static size_t cm_prefix_len(const char *key) {
    const char *p = strstr(key, "confusion_matrix.");
    return p ? (size_t)(p - key) + strlen("confusion_matrix.") : 0;
}

/* Heat maps of every run, one per prefix. */
static int put_matrices(FILE *fp, const mp_runs_table *t, mp_err *err) {
    cm_cell *cells = mp_malloc(mp_mul_size(t->n_metrics ? t->n_metrics : 1, sizeof *cells));
    if (!cells) return MP_ERR(err, MP_E_NOMEM, "out of memory drawing confusion matrices");
    bool any = false;
    for (size_t i = 0; i < t->n_runs && err->code == MP_OK; i++) {
        /* keys are sorted, so each prefix's keys are adjacent */
        for (size_t j = 0; j < t->n_metrics && err->code == MP_OK;) {
            size_t plen = cm_prefix_len(t->metric_keys[j]);
            if (plen == 0) {
                j++;
                continue;
            }
            const char *prefix = t->metric_keys[j];
            size_t n = 0, k = j;
            for (; k < t->n_metrics && strncmp(t->metric_keys[k], prefix, plen) == 0 &&
                   cm_prefix_len(t->metric_keys[k]) == plen; k++) {
                size_t at = i * t->n_metrics + k;
                if (t->has_metric[at])
                    cells[n++] = (cm_cell){ t->metric_keys[k] + plen, t->metrics[at] };
            }
            if (n > 0) {
                if (!any) fputs("<h2>Confusion matrices</h2>\n<div class=\"charts\">\n", fp);
                any = true;
                char pre[256];      /* "test.confusion_matrix", without the last dot */
                snprintf(pre, sizeof pre, "%.*s", (int)(plen - 1 < 255 ? plen - 1 : 255), prefix);
                put_heatmap(fp, t->ids[i], pre, cells, n, err);
            }
            j = k;
        }
    }
    if (any) fputs("</div>\n", fp);
    mp_free(cells);
    return err->code;
}

/* ---------------------------------------------------------------- tables */

static void put_swatch(FILE *fp, size_t i) {
    fprintf(fp, "<span class=\"swatch\" style=\"background:%s\"></span>", palette[i % N_COLORS]);
}

/* The run header cells of a side-by-side table. */
static void put_run_heads(FILE *fp, const mp_runs_table *t) {
    for (size_t i = 0; i < t->n_runs; i++) {
        fputs("<th>", fp);
        put_swatch(fp, i);
        fprintf(fp, "run %lld</th>", t->ids[i]);
    }
}

static void put_runs_table(FILE *fp, const mp_runs_table *t) {
    fputs("<h2>Runs</h2>\n<table class=\"runs\">\n<tr><th>run</th><th>pipeline</th>"
          "<th>status</th><th>started (UTC)</th><th>seconds</th><th>seed</th><th>host</th>"
          "</tr>\n", fp);
    static const int cols[] = { MP_RT_PIPELINE, MP_RT_STATUS, MP_RT_STARTED, MP_RT_SECONDS,
                                MP_RT_SEED, MP_RT_HOST };
    for (size_t i = 0; i < t->n_runs; i++) {
        fputs("<tr><td>", fp);
        put_swatch(fp, i);
        fprintf(fp, "%lld</td>", t->ids[i]);
        for (size_t c = 0; c < sizeof cols / sizeof *cols; c++) {
            const char *s = t->fields[i * MP_RT_FIELDS + cols[c]];
            bool num = cols[c] == MP_RT_SECONDS || cols[c] == MP_RT_SEED;
            fprintf(fp, "<td%s>", !s ? " class=\"none\"" : num ? " class=\"num\"" : "");
            put_text(fp, s ? s : "-");
            fputs("</td>", fp);
        }
        fputs("</tr>\n", fp);
    }
    fputs("</table>\n", fp);
}

static bool strs_differ(char *const *v, size_t n, size_t stride) {
    for (size_t i = 1; i < n; i++) {
        const char *a = v[0], *b = v[i * stride];
        if ((a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0)) return true;
    }
    return false;
}

static void put_params_table(FILE *fp, const mp_runs_table *t) {
    fputs("<h2>Parameters</h2>\n", fp);
    if (t->n_params == 0) {
        fputs("<p class=\"note\">no parameters recorded</p>\n", fp);
        return;
    }
    fputs("<table class=\"params\">\n<tr><th></th><th>parameter</th>", fp);
    put_run_heads(fp, t);
    fputs("</tr>\n", fp);
    for (size_t j = 0; j < t->n_params; j++) {
        bool differs = t->n_runs > 1 && strs_differ(&t->params[j], t->n_runs, t->n_params);
        fprintf(fp, "<tr%s><td class=\"mark\">%s</td><td>", differs ? " class=\"diff\"" : "",
                differs ? "*" : "");
        put_text(fp, t->param_keys[j]);
        fputs("</td>", fp);
        for (size_t i = 0; i < t->n_runs; i++) {
            const char *v = t->params[i * t->n_params + j];
            fputs(v ? "<td>" : "<td class=\"none\">", fp);
            put_text(fp, v ? v : "-");
            fputs("</td>", fp);
        }
        fputs("</tr>\n", fp);
    }
    fputs("</table>\n", fp);
}

static void put_metrics_table(FILE *fp, const mp_runs_table *t) {
    fputs("<h2>Final metrics</h2>\n", fp);
    size_t shown = 0;
    for (size_t j = 0; j < t->n_metrics; j++) {
        if (cm_prefix_len(t->metric_keys[j])) continue;     /* drawn as heat maps */
        if (shown++ == 0) {
            fputs("<table class=\"metrics\">\n<tr><th></th><th>metric</th>", fp);
            put_run_heads(fp, t);
            fputs("</tr>\n", fp);
        }
        bool differs = false;
        for (size_t i = 1; i < t->n_runs; i++) {
            size_t a = j, b = i * t->n_metrics + j;
            double x = t->metrics[a], y = t->metrics[b];
            differs |= t->has_metric[a] != t->has_metric[b] ||
                       (isnan(x) != isnan(y)) || (!isnan(x) && x != y);
        }
        fprintf(fp, "<tr%s><td class=\"mark\">%s</td><td>", differs ? " class=\"diff\"" : "",
                differs ? "*" : "");
        put_text(fp, t->metric_keys[j]);
        fputs("</td>", fp);
        for (size_t i = 0; i < t->n_runs; i++) {
            size_t k = i * t->n_metrics + j;
            char num[32] = "-";
            if (t->has_metric[k]) fmt_num(num, sizeof num, t->metrics[k]);
            fprintf(fp, "<td class=\"%s\">%s</td>", t->has_metric[k] ? "num" : "none", num);
        }
        fputs("</tr>\n", fp);
    }
    if (shown) fputs("</table>\n", fp);
    else fputs("<p class=\"note\">no final figures recorded</p>\n", fp);
}

/* ---------------------------------------------------------------- the page */

static int str_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The learning curves: one chart per key any run has, keys sorted. */
static int put_curves(FILE *fp, const run_hist *hists, const long long *ids, size_t n,
                      mp_err *err) {
    size_t n_keys = 0;
    for (size_t i = 0; i < n; i++) n_keys += hists[i].n;
    const char **keys = mp_malloc(mp_mul_size(n_keys ? n_keys : 1, sizeof *keys));
    if (!keys) return MP_ERR(err, MP_E_NOMEM, "out of memory drawing learning curves");
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < hists[i].n; j++) keys[k++] = hists[i].v[j].key;
    qsort(keys, n_keys, sizeof *keys, str_cmp);
    fputs("<h2>Learning curves</h2>\n", fp);
    if (n_keys == 0) fputs("<p class=\"note\">no per-step metrics recorded</p>\n", fp);
    else fputs("<div class=\"charts\">\n", fp);
    for (size_t i = 0; i < n_keys; i++)
        if (i == 0 || strcmp(keys[i], keys[i - 1]) != 0) put_chart(fp, keys[i], hists, ids, n);
    if (n_keys) fputs("</div>\n", fp);
    mp_free(keys);
    return MP_OK;
}

int mp_report_write(mp_rundb *db, const long long *ids, size_t n, FILE *fp, mp_err *err) {
    mp_runs_table t;
    run_hist *hists = mp_calloc(n ? n : 1, sizeof *hists);
    if (!hists) return MP_ERR(err, MP_E_NOMEM, "out of memory writing the report");
    if (mp_runs_table_load(db, ids, n, &t, err) != MP_OK) goto done;
    for (size_t i = 0; i < n; i++)
        if (read_hist(db, ids[i], &hists[i], err) != MP_OK) goto done;

    char now[32];
    mp_iso_time(now);
    fputs("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n"
          "<meta charset=\"utf-8\"/>\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
          "<title>mlpipe report: run", fp);
    fputs(n == 1 ? " " : "s ", fp);
    for (size_t i = 0; i < n; i++) fprintf(fp, "%s%lld", i ? ", " : "", ids[i]);
    fprintf(fp, "</title>\n<style>%s</style>\n</head>\n<body>\n<h1>mlpipe report</h1>\n"
            "<p class=\"meta\">", css);
    put_textf(fp, "%zu run%s from %s, written %s by mlpipe %s", n, n == 1 ? "" : "s",
              mp_rundb_path(db), now, MP_VERSION);
    fputs("</p>\n", fp);
    put_runs_table(fp, &t);
    put_params_table(fp, &t);
    put_metrics_table(fp, &t);
    if (put_curves(fp, hists, ids, n, err) == MP_OK && put_matrices(fp, &t, err) == MP_OK)
        fputs("</body>\n</html>\n", fp);
done:
    for (size_t i = 0; i < n; i++) run_hist_release(&hists[i]);
    mp_free(hists);
    mp_runs_table_release(&t);
    return err->code;
}

int mp_report_main(const char *db_path, char *const *runs, size_t n_runs, const char *out_path,
                   mp_err *err) {
    if (n_runs == 0)
        return MP_ERR(err, MP_E_USAGE, "'report' needs one or more runs (usage: %s)",
                      REPORT_USAGE);
    if (n_runs > MAX_RUNS)
        return MP_ERR(err, MP_E_USAGE, "'report' takes at most %d runs (usage: %s)", MAX_RUNS,
                      REPORT_USAGE);
    long long ids[MAX_RUNS];
    for (size_t i = 0; i < n_runs; i++) {
        long long v;
        if (strcmp(runs[i], "last") != 0 && (!mp_parse_long(runs[i], &v) || v <= 0))
            return MP_ERR(err, MP_E_USAGE, "bad run '%s': expected a run id or 'last' "
                          "(usage: %s)", runs[i], REPORT_USAGE);
    }
    mp_rundb *db;
    if (mp_rundb_open_existing(db_path, &db, err) != MP_OK) return err->code;
    for (size_t i = 0; i < n_runs; i++)
        if (mp_runs_resolve(db, runs[i], &ids[i], err) != MP_OK) goto done;

    bool to_stdout = !out_path || strcmp(out_path, "-") == 0;
    /* A regular file (or a new one) is written beside and renamed into
     * place; anything else -- /dev/null, a pipe, /dev/stdout -- is written
     * as it is: renaming over it would replace a device with a file. */
    struct stat sb;
    bool direct = !to_stdout && stat(out_path, &sb) == 0 && !S_ISREG(sb.st_mode);
    char tmp[4096] = "";
    FILE *fp = stdout;
    if (direct && !(fp = fopen(out_path, "w"))) {
        MP_ERR(err, MP_E_IO, "cannot write '%s': %s", out_path, strerror(errno));
        goto done;
    }
    if (!to_stdout && !direct) {
        /* a temporary file beside the target, renamed when complete */
        if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out_path, (long)getpid()) >= sizeof tmp) {
            MP_ERR(err, MP_E_IO, "path too long: '%s'", out_path);
            goto done;
        }
        if (!(fp = fopen(tmp, "w"))) {
            MP_ERR(err, MP_E_IO, "cannot write '%s': %s", out_path, strerror(errno));
            goto done;
        }
    }
    mp_report_write(db, ids, n_runs, fp, err);
    if (to_stdout) {
        if (err->code == MP_OK && (fflush(fp) != 0 || ferror(fp)))
            MP_ERR(err, MP_E_IO, "cannot write the report: %s", strerror(errno));
    } else if (direct) {
        bool bad = ferror(fp) != 0;
        if (fclose(fp) != 0) bad = true;
        if (err->code == MP_OK && bad)
            MP_ERR(err, MP_E_IO, "cannot write '%s': %s", out_path, strerror(errno));
    } else {
        bool bad = ferror(fp) != 0;
        if (fclose(fp) != 0) bad = true;
        if (err->code == MP_OK && bad)
            MP_ERR(err, MP_E_IO, "cannot write '%s': %s", out_path, strerror(errno));
        if (err->code == MP_OK && rename(tmp, out_path) != 0)
            MP_ERR(err, MP_E_IO, "cannot write '%s': %s", out_path, strerror(errno));
        if (err->code != MP_OK) unlink(tmp);
        else mp_log(MP_LOG_INFO, "report: wrote '%s' (%zu run%s)", out_path, n_runs,
                    n_runs == 1 ? "" : "s");
    }
done:
    mp_rundb_close(db);
    return err->code;
}
