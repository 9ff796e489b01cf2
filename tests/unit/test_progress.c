/*
 * test_progress.c -- unit tests of runner/progress.c: the bar line (a pure
 * function of stage, unit, done, total, rate and width: exact text, every
 * width fits, unknown totals and rates, bytes, small buffers), the ETA
 * format, and the update path through a log sink (lines only after the
 * interval, none with --quiet or MLPIPE_PROGRESS=0, none outside a stage,
 * and cheap per call).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>     /* before cmocka.h, which redefines malloc under UNIT_TESTING */
#include <string.h>
#include <time.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "mp.h"
#include "progress.h"

/* ---------------------------------------------------------------- helpers */

static int n_lines;             /* info lines logged */
static char last_line[2048];

static void capture(int level, const char *msg, void *ud) {
    (void)ud;
    if (level > MP_LOG_INFO) return;
    n_lines++;
    snprintf(last_line, sizeof last_line, "%s", msg);
}

static int setup(void **state) {
    (void)state;
    n_lines = 0;
    last_line[0] = '\0';
    mp_log_level = MP_LOG_INFO;
    mp_log_set_sink(capture, NULL);
    unsetenv("MLPIPE_PROGRESS");
    setenv("MLPIPE_PROGRESS_INTERVAL", "0.05", 1);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mp_progress_end();
    mp_log_set_sink(NULL, NULL);
    unsetenv("MLPIPE_PROGRESS_INTERVAL");
    unsetenv("MLPIPE_PROGRESS");
    return 0;
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Formats into a roomy buffer and checks the returned length. */
static const char *bar(const char *unit, double done, double total, double rate, int width) {
    static char buf[1024];
    size_t n = mp_progress_format_bar(buf, sizeof buf, "train", unit, done, total, rate, width);
    assert_int_equal(n, strlen(buf));
    return buf;
}

static void expect_has(const char *s, const char *part) {
    if (!strstr(s, part)) fail_msg("'%s' lacks '%s'", s, part);
}

static void expect_lacks(const char *s, const char *part) {
    if (strstr(s, part)) fail_msg("'%s' has '%s'", s, part);
}

/* ---------------------------------------------------------------- the bar line */

static void test_bar_exact(void **state) {
    (void)state;
    /* 80 columns: 79 usable; "train [" + 27 cells + "]" + 44 kept for the rest. */
    assert_string_equal(bar("epoch", 2.5, 5, 0.5, 80),
                        "train [=============>             ]  50% 2.5/5 epoch, 0.5 epoch/s, "
                        "ETA 5s");
    /* Nothing yet, and all of it. */
    assert_string_equal(bar("epoch", 0, 5, 0.5, 80),
                        "train [>                          ]   0% 0/5 epoch, 0.5 epoch/s, "
                        "ETA 10s");
    assert_string_equal(bar("epoch", 5, 5, 0.5, 80),
                        "train [===========================] 100% 5/5 epoch, 0.5 epoch/s, "
                        "ETA 0s");
}

/* An epoch is not shown as finished before it is: 2.97 reads 2.9, 29%. */
static void test_bar_rounds_down(void **state) {
    (void)state;
    const char *s = bar("epoch", 2.97, 10, 1, 80);
    expect_has(s, " 29% 2.9/10 epoch");
    s = bar("epoch", 9.999, 10, 1, 80);
    expect_has(s, " 99% 9.9/10 epoch");
}

static void test_bar_fits_every_width(void **state) {
    (void)state;
    const char *units[] = { "epoch", "rows", "bytes", "" };
    const double totals[] = { 5, 60000, 3.5e9, 0 };
    for (int u = 0; u < 4; u++)
        for (int w = 0; w <= 300; w++) {
            const char *s = bar(units[u], totals[u] * 0.37, totals[u], totals[u] / 7.0 + 1, w);
            size_t max = w > 1 ? (size_t)w - 1 : 0;
            if (strlen(s) > max) fail_msg("width %d: %zu chars: '%s'", w, strlen(s), s);
            /* Never wider than the widest bar. */
            assert_true(strlen(s) <= 5 + 3 + 40 + 60);
        }
}

/* The bar keeps its width while the figures change length. */
static void test_bar_width_is_steady(void **state) {
    (void)state;
    const char *a = bar("epoch", 1.2, 40, 9.8, 100);
    size_t wa = (size_t)(strchr(a, ']') - strchr(a, '['));
    const char *b = bar("epoch", 12.3, 40, 10.55, 100);
    size_t wb = (size_t)(strchr(b, ']') - strchr(b, '['));
    assert_int_equal(wa, wb);
    assert_int_equal(wa, 41);   /* BAR_MAX cells + 1 */
}

static void test_bar_narrow_drops_the_bar(void **state) {
    (void)state;
    const char *s = bar("epoch", 2.5, 5, 0.5, 52);
    expect_lacks(s, "[");
    assert_string_equal(s, "train  50% 2.5/5 epoch, 0.5 epoch/s, ETA 5s");
    /* Narrower still: cut at the edge. */
    assert_string_equal(bar("epoch", 2.5, 5, 0.5, 12), "train  50% ");
}

static void test_bar_unknown_total_and_rate(void **state) {
    (void)state;
    /* A pipe: no total, so no bar, percentage or ETA. */
    const char *s = bar("rows", 1234, 0, 500, 80);
    assert_string_equal(s, "train 1234 rows, 500 rows/s");
    /* No rate yet: no speed, no ETA. */
    s = bar("epoch", 1, 4, 0, 80);
    expect_has(s, " 25% 1/4 epoch");
    expect_lacks(s, "/s");
    expect_lacks(s, "ETA");
    s = bar("epoch", 1, 4, NAN, 80);
    expect_lacks(s, "ETA");
}

static void test_bar_bytes_and_big_counts(void **state) {
    (void)state;
    const double mib = 1024.0 * 1024.0;
    const char *s = bar("bytes", 12.5 * mib, 100 * mib, 4 * mib, 100);
    expect_has(s, " 12% 12.5/100.0 MiB, 4 MiB/s, ETA 22s");
    s = bar("bytes", 512, 1000, 100, 100);
    expect_has(s, "512/1000 B, 100 B/s");
    s = bar("bytes", 3.0 * mib, 0, 2048, 100);
    expect_has(s, "train 3.0 MiB, 2 KiB/s");
    s = bar("rows", 25000, 60000, 23400, 100);
    expect_has(s, " 41% 25.0k/60.0k rows, 23.4k rows/s, ETA 2s");
    s = bar("rows", 2.5e6, 1e7, 2e6, 100);
    expect_has(s, "2.50M/10.00M rows, 2M rows/s, ETA 4s");
}

static void test_bar_small_buffer(void **state) {
    (void)state;
    char buf[16];
    memset(buf, 'x', sizeof buf);
    size_t n = mp_progress_format_bar(buf, sizeof buf, "train", "epoch", 1, 2, 1, 80);
    assert_int_equal(n, 15);
    assert_int_equal(strlen(buf), 15);
    assert_memory_equal(buf, "train [========", 15);
    assert_int_equal(mp_progress_format_bar(buf, 1, "train", "epoch", 1, 2, 1, 80), 0);
    assert_string_equal(buf, "");
    /* NULL names are empty ones. */
    n = mp_progress_format_bar(buf, sizeof buf, NULL, NULL, 1, 0, 0, 80);
    assert_string_equal(buf, " 1");
}

static void test_eta_format(void **state) {
    (void)state;
    char b[16];
    const struct { double s; const char *want; } cases[] = {
        { 0, "0s" }, { 0.2, "1s" }, { 42, "42s" }, { 59.5, "1m00s" }, { 187, "3m07s" },
        { 3599, "59m59s" }, { 7500, "2h05m" }, { 90000, "25h00m" }, { -1, "?" }, { NAN, "?" },
        { INFINITY, "?" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mp_progress_format_eta(b, sizeof b, cases[i].s);
        if (strcmp(b, cases[i].want) != 0)
            fail_msg("eta %g: got '%s', want '%s'", cases[i].s, b, cases[i].want);
    }
}

/* ---------------------------------------------------------------- updates */

/* Calls update for `secs` seconds, done rising from 0 to total. */
static long spin(double secs, double total) {
    double t0 = wall();
    long calls = 0;
    for (double t = 0; (t = wall() - t0) < secs; calls++)
        mp_progress_update("epoch", total * t / secs, total);
    return calls;
}

/* With a log sink there is no terminal: info lines every interval, none
 * before the first interval has passed. */
static void test_lines_after_interval(void **state) {
    (void)state;
    mp_progress_begin("train");
    spin(0.03, 4);                      /* shorter than the 0.05 s interval */
    assert_int_equal(n_lines, 0);
    spin(0.25, 4);
    mp_progress_end();
    /* ~0.28 s at one line per 0.05 s (the clock is coarse: a few ms). */
    if (n_lines < 2 || n_lines > 7) fail_msg("%d lines", n_lines);
    expect_has(last_line, "train: progress ");
    expect_has(last_line, "/4 epoch, ");
    expect_has(last_line, " epoch/s, ETA ");
    /* Ended: updates do nothing. */
    int n = n_lines;
    spin(0.1, 4);
    assert_int_equal(n_lines, n);
}

static void test_short_stage_no_line(void **state) {
    (void)state;
    setenv("MLPIPE_PROGRESS_INTERVAL", "5", 1);
    mp_progress_begin("load");
    spin(0.1, 100);
    mp_progress_end();
    assert_int_equal(n_lines, 0);
}

static void test_off_switches(void **state) {
    (void)state;
    mp_log_level = MP_LOG_WARN;         /* --quiet */
    mp_progress_begin("train");
    spin(0.15, 4);
    mp_progress_end();
    assert_int_equal(n_lines, 0);
    mp_log_level = MP_LOG_INFO;
    setenv("MLPIPE_PROGRESS", "0", 1);
    mp_progress_begin("train");
    spin(0.15, 4);
    mp_progress_end();
    assert_int_equal(n_lines, 0);
    /* A bad interval falls back to the default (5 s): none in 0.15 s. */
    unsetenv("MLPIPE_PROGRESS");
    setenv("MLPIPE_PROGRESS_INTERVAL", "soon", 1);
    mp_progress_begin("train");
    spin(0.15, 4);
    mp_progress_end();
    assert_int_equal(n_lines, 0);
}

/* The per-mini-batch call is cheap: a million calls in well under a second
 * when on (nothing due) and when off. */
static void test_update_is_cheap(void **state) {
    (void)state;
    setenv("MLPIPE_PROGRESS_INTERVAL", "1000", 1);
    const long n = 1000000;
    mp_progress_begin("train");
    double t0 = wall();
    for (long i = 0; i < n; i++) mp_progress_update("epoch", (double)i / (double)n, 1.0);
    double on = wall() - t0;
    mp_progress_end();
    t0 = wall();
    for (long i = 0; i < n; i++) mp_progress_update("epoch", (double)i / (double)n, 1.0);
    double off = wall() - t0;
    print_message("    %ld updates: %.1f ns each on, %.1f ns off\n", n, on / (double)n * 1e9,
                  off / (double)n * 1e9);
    assert_true(on < 1.0);
    assert_true(off < 1.0);
    assert_int_equal(n_lines, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bar_exact),
        cmocka_unit_test(test_bar_rounds_down),
        cmocka_unit_test(test_bar_fits_every_width),
        cmocka_unit_test(test_bar_width_is_steady),
        cmocka_unit_test(test_bar_narrow_drops_the_bar),
        cmocka_unit_test(test_bar_unknown_total_and_rate),
        cmocka_unit_test(test_bar_bytes_and_big_counts),
        cmocka_unit_test(test_bar_small_buffer),
        cmocka_unit_test(test_eta_format),
        cmocka_unit_test_setup_teardown(test_lines_after_interval, setup, teardown),
        cmocka_unit_test_setup_teardown(test_short_stage_no_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_off_switches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_is_cheap, setup, teardown),
    };
    return cmocka_run_group_tests_name("progress", tests, NULL, NULL);
}
