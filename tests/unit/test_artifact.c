/*
 * test_artifact.c -- the MLPM container (runner/artifact.c) and the model
 * file built on it (runner/model.c).
 *
 * Every test works in its own mkdtemp folder.  What is covered: exact round
 * trips of every value type (awkward strings, every float bit pattern class,
 * nan/inf, empty arrays, entries far larger than the staging buffer); the
 * writer's rules (duplicate and bad keys, sticky errors, atomic commit, no
 * temporary file left on any path, unwritable places); the reader refusing
 * truncated, bit-flipped, newer, garbage and malformed files without
 * crashing; getter errors; a model-file round trip through fake "shift" and
 * "linear" stages registered like a plugin; and allocation-failure loops
 * (fail the Nth allocation, N = 1, 2, ... until the call succeeds).
 *
 * MLPIPE_ART_BENCH=1 build/unit/test_artifact also times writing and reading
 * one 400k-float entry.
 */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* cmocka last: with UNIT_TESTING it redefines malloc/free to its checked
 * allocator, which must not reach the system headers' declarations. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "artifact.h"
#include "registry.h"

/* ---------------------------------------------------------------- fixture */

static char g_dir[64];          /* this test's mkdtemp folder */

/* "<g_dir>/<name>" in one of a few rotating buffers, so a test can hold several. */
static const char *tpath(const char *name) {
    static char bufs[8][512];
    static int next;
    char *b = bufs[next++ & 7];
    snprintf(b, sizeof bufs[0], "%s/%s", g_dir, name);
    return b;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

static int n_tmp_found;
static int count_tmp(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    if (strstr(p + strlen(g_dir), ".tmp.")) n_tmp_found++;
    return 0;
}

/* Temporary files ("*.tmp.*") anywhere under the test folder. */
static int tmp_files(void) {
    n_tmp_found = 0;
    nftw(g_dir, count_tmp, 16, FTW_PHYS);
    return n_tmp_found;
}

static bool exists(const char *p) {
    struct stat st;
    return lstat(p, &st) == 0;
}

static int setup(void **state) {
    (void)state;
    strcpy(g_dir, "/tmp/mlpipe-test-artifact-XXXXXX");
    if (!mkdtemp(g_dir)) return -1;
    mp_log_level = -1;          /* keep the test output clean */
    return 0;
}

static int teardown(void **state) {
    (void)state;
    mp_mem_fail_after(0);
    mp_registry_shutdown();
    nftw(g_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* Replaces p with n bytes.  Unlinking first avoids ext4's flush on
 * truncate-and-rewrite, which made the damage loops slow. */
static void write_bytes(const char *p, const void *data, size_t n) {
    unlink(p);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

/* Reads a whole file; the caller mp_frees it. */
static char *slurp(const char *p, size_t *n) {
    mp_err err = { 0 };
    char *buf = NULL;
    assert_int_equal(mp_read_file(p, &buf, n, &err), MP_OK);
    return buf;
}

/* Writes "MLPM 1\n" + body + a correct checksum line: a file whose only
 * fault can be in body. */
static void write_checked(const char *p, const char *body) {
    size_t n = 7 + strlen(body);
    char *buf = malloc(n + 80);
    assert_non_null(buf);
    memcpy(buf, "MLPM 1\n", 7);
    memcpy(buf + 7, body, strlen(body));
    char hex[65];
    mp_sha256_hex(buf, n, hex);
    n += (size_t)sprintf(buf + n, "sha256 %s\n", hex);
    write_bytes(p, buf, n);
    free(buf);
}

/* Opens path expecting failure with code; returns the error for checks. */
static mp_err open_fails(const char *p, int code) {
    mp_err err = { 0 };
    mp_art_reader *r = NULL;
    assert_int_equal(mp_art_reader_open(p, &r, &err), code);
    assert_null(r);
    assert_true(err.msg[0] != '\0');
    return err;
}

static bool same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

static bool same_double(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

/* ---------------------------------------------------------------- round trips */

static void test_roundtrip_all_types(void **state) {
    (void)state;
    const char *p = tpath("all.mlpm");
    static const char *const strs[] = {
        "plain", "with space", "100%", "%41 is not A", "line\nbreak", "tab\there", "",
        "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80", "\x01\x1f\x7f", "  lead and trail  ", "%",
        "a%%b", "-", "nan",
    };
    size_t n_strs = sizeof strs / sizeof *strs;
    const double dv[] = { 0.1, -0.0, 1e308, 5e-324, M_PI, 1.0 / 3.0, -123456789.125 };
    const float fv[] = { 0.1f, -0.0f, FLT_MAX, FLT_MIN, FLT_TRUE_MIN, 1.0f / 3.0f, -7.5f };
    mp_err err = { 0 };
    mp_art_writer *w = NULL;
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    for (size_t i = 0; i < n_strs; i++) {
        char key[32];
        snprintf(key, sizeof key, "s.%zu", i);
        assert_int_equal(mp_art_put_str(w, key, strs[i]), MP_OK);
    }
    assert_int_equal(mp_art_put_strs(w, "strs", (char *const *)strs, n_strs), MP_OK);
    assert_int_equal(mp_art_put_strs(w, "strs.none", NULL, 0), MP_OK);
    assert_int_equal(mp_art_put_int(w, "i.min", LLONG_MIN), MP_OK);
    assert_int_equal(mp_art_put_int(w, "i.max", LLONG_MAX), MP_OK);
    assert_int_equal(mp_art_put_int(w, "i.zero", 0), MP_OK);
    assert_int_equal(mp_art_put_double(w, "d.one", 0.1), MP_OK);
    assert_int_equal(mp_art_put_doubles(w, "d.arr", dv, 7), MP_OK);
    assert_int_equal(mp_art_put_doubles(w, "d.none", NULL, 0), MP_OK);
    assert_int_equal(mp_art_put_floats(w, "f.arr", fv, 7), MP_OK);
    assert_int_equal(mp_art_put_floats(w, "f.none", NULL, 0), MP_OK);
    assert_int_equal(mp_art_put_str(w, "\xc3\xbcnicode.key", "x"), MP_OK);
    char sha[65] = "";
    long long bytes = -1;
    assert_int_equal(mp_art_writer_commit(w, sha, &bytes, &err), MP_OK);
    assert_int_equal(err.code, MP_OK);

    /* The reported digest and size are the file's, as sha256sum would say. */
    char fsha[65];
    long long fbytes = 0;
    assert_int_equal(mp_sha256_file(p, fsha, &fbytes, &err), MP_OK);
    assert_string_equal(sha, fsha);
    assert_int_equal(bytes, fbytes);
    assert_int_equal(tmp_files(), 0);

    mp_art_reader *r = NULL;
    assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
    assert_string_equal(mp_art_reader_sha256(r), sha);
    for (size_t i = 0; i < n_strs; i++) {
        char key[32];
        const char *s = NULL;
        snprintf(key, sizeof key, "s.%zu", i);
        assert_int_equal(mp_art_get_str(r, key, &s, &err), MP_OK);
        assert_string_equal(s, strs[i]);
    }
    char **got = NULL;
    size_t n = 0;
    assert_int_equal(mp_art_get_strs(r, "strs", &got, &n, &err), MP_OK);
    assert_int_equal(n, n_strs);
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(got[i], strs[i]);
        mp_free(got[i]);
    }
    mp_free(got);
    assert_int_equal(mp_art_get_strs(r, "strs.none", &got, &n, &err), MP_OK);
    assert_int_equal(n, 0);
    mp_free(got);

    long long iv;
    assert_int_equal(mp_art_get_int(r, "i.min", &iv, &err), MP_OK);
    assert_true(iv == LLONG_MIN);
    assert_int_equal(mp_art_get_int(r, "i.max", &iv, &err), MP_OK);
    assert_true(iv == LLONG_MAX);
    assert_int_equal(mp_art_get_int(r, "i.zero", &iv, &err), MP_OK);
    assert_true(iv == 0);
    double d1, dgot[7];
    float fgot[7];
    assert_int_equal(mp_art_get_double(r, "d.one", &d1, &err), MP_OK);
    assert_true(d1 == 0.1);
    assert_int_equal(mp_art_get_doubles(r, "d.arr", dgot, 7, &err), MP_OK);
    assert_memory_equal(dgot, dv, sizeof dv);
    assert_int_equal(mp_art_get_doubles(r, "d.none", dgot, 0, &err), MP_OK);
    assert_int_equal(mp_art_get_floats(r, "f.arr", fgot, 7, &err), MP_OK);
    assert_memory_equal(fgot, fv, sizeof fv);
    assert_int_equal(mp_art_get_floats(r, "f.none", NULL, 0, &err), MP_OK);
    const char *u;
    assert_int_equal(mp_art_get_str(r, "\xc3\xbcnicode.key", &u, &err), MP_OK);
    assert_true(mp_art_has(r, "f.arr"));
    assert_false(mp_art_has(r, "f.ar"));
    assert_false(mp_art_has(r, "sha256"));
    assert_int_equal(err.code, MP_OK);
    mp_art_reader_free(r);

    /* The text stays one entry per line and readable. */
    size_t len;
    char *text = slurp(p, &len);
    assert_non_null(strstr(text, "MLPM 1\n"));
    assert_non_null(strstr(text, "\ns.1 s 1 with%20space\n"));
    assert_non_null(strstr(text, "\ns.2 s 1 100%25\n"));
    assert_non_null(strstr(text, "\ns.6 s 1 %\n"));
    assert_non_null(strstr(text, "\nstrs.none s 0\n"));
    assert_non_null(strstr(text, "\ni.min i 1 -9223372036854775808\n"));
    assert_non_null(strstr(text, "\nd.one d 1 0.10000000000000001\n"));
    mp_free(text);
}

/* Random bit patterns cover every exponent; each finite one must come back
 * bit for bit ("%.9g"/"%.17g" + strtof/strtod). */
static void test_exact_bits(void **state) {
    (void)state;
    enum { N = 20000 };
    float *f = malloc(N * sizeof *f), *fg = malloc(N * sizeof *fg);
    double *d = malloc(N * sizeof *d), *dg = malloc(N * sizeof *dg);
    assert_true(f && fg && d && dg);
    mp_rng rng;
    mp_rng_seed(&rng, 42);
    size_t nf = 0, nd = 0;
    const float fspecial[] = { -0.0f, 0.0f, FLT_MAX, -FLT_MAX, FLT_MIN, FLT_TRUE_MIN,
                               -FLT_TRUE_MIN, 1.17549421e-38f /* largest denormal */, 1.0f,
                               16777217.0f, 0.1f };
    const double dspecial[] = { -0.0, 0.0, DBL_MAX, -DBL_MAX, DBL_MIN, DBL_TRUE_MIN,
                                -DBL_TRUE_MIN, 2.2250738585072009e-308, 9007199254740993.0,
                                0.1, 1e23 };
    for (size_t i = 0; i < sizeof fspecial / sizeof *fspecial; i++) f[nf++] = fspecial[i];
    for (size_t i = 0; i < sizeof dspecial / sizeof *dspecial; i++) d[nd++] = dspecial[i];
    while (nf < N) {
        uint32_t bits = (uint32_t)mp_rng_next(&rng);
        if (nf % 4 == 0) bits &= 0x807fffffu;           /* a quarter denormal */
        float v;
        memcpy(&v, &bits, sizeof v);
        if (isfinite(v)) f[nf++] = v;
    }
    while (nd < N) {
        uint64_t bits = mp_rng_next(&rng);
        if (nd % 4 == 0) bits &= 0x800fffffffffffffULL;
        double v;
        memcpy(&v, &bits, sizeof v);
        if (isfinite(v)) d[nd++] = v;
    }
    const char *p = tpath("bits.mlpm");
    mp_err err = { 0 };
    mp_art_writer *w;
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    mp_art_put_floats(w, "f", f, N);
    mp_art_put_doubles(w, "d", d, N);
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
    mp_art_reader *r;
    assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
    assert_int_equal(mp_art_get_floats(r, "f", fg, N, &err), MP_OK);
    assert_int_equal(mp_art_get_doubles(r, "d", dg, N, &err), MP_OK);
    mp_art_reader_free(r);
    assert_memory_equal(f, fg, N * sizeof *f);
    assert_memory_equal(d, dg, N * sizeof *d);
    free(f);
    free(fg);
    free(d);
    free(dg);
}

static void test_nan_inf(void **state) {
    (void)state;
    const float f[] = { NAN, -NAN, INFINITY, -INFINITY, 1.0f };
    const double d[] = { NAN, -NAN, INFINITY, -INFINITY, 1.0 };
    const char *p = tpath("nan.mlpm");
    mp_err err = { 0 };
    mp_art_writer *w;
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    mp_art_put_floats(w, "f", f, 5);
    mp_art_put_doubles(w, "d", d, 5);
    mp_art_put_double(w, "one", -INFINITY);
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);

    size_t len;
    char *text = slurp(p, &len);
    assert_non_null(strstr(text, "\nf f 5 nan nan inf -inf 1\n"));
    assert_non_null(strstr(text, "\nd d 5 nan nan inf -inf 1\n"));
    mp_free(text);

    float fg[5];
    double dg[5], one;
    mp_art_reader *r;
    assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
    assert_int_equal(mp_art_get_floats(r, "f", fg, 5, &err), MP_OK);
    assert_int_equal(mp_art_get_doubles(r, "d", dg, 5, &err), MP_OK);
    assert_int_equal(mp_art_get_double(r, "one", &one, &err), MP_OK);
    mp_art_reader_free(r);
    for (int i = 0; i < 5; i++) {
        assert_true(same_float(f[i], fg[i]));
        assert_true(same_double(d[i], dg[i]));
    }
    assert_true(isinf(one) && one < 0);
}

/* Entries much larger than the 64 KiB staging buffer, and many keys (the
 * writer's key set grows). */
static void test_large_entries(void **state) {
    (void)state;
    enum { NF = 400000, NS = 300000, NK = 500 };
    float *f = malloc(NF * sizeof *f), *fg = malloc(NF * sizeof *fg);
    char *s = malloc(NS + 1);
    assert_true(f && fg && s);
    for (size_t i = 0; i < NF; i++) f[i] = (float)sin((double)i) * 1e3f;
    for (size_t i = 0; i < NS; i++) s[i] = "ab %\n\xc3\xa9"[i % 6];
    s[NS - 1] = 'z';            /* do not end inside the 2-byte UTF-8 sequence */
    s[NS] = '\0';
    const char *p = tpath("large.mlpm");
    mp_err err = { 0 };
    mp_art_writer *w;
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    assert_int_equal(mp_art_put_floats(w, "model.w", f, NF), MP_OK);
    assert_int_equal(mp_art_put_str(w, "big", s), MP_OK);
    for (int k = 0; k < NK; k++) {
        char key[32];
        snprintf(key, sizeof key, "k.%d", k);
        assert_int_equal(mp_art_put_int(w, key, k), MP_OK);
    }
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
    mp_art_reader *r;
    assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
    assert_int_equal(mp_art_get_floats(r, "model.w", fg, NF, &err), MP_OK);
    assert_memory_equal(f, fg, NF * sizeof *f);
    const char *sg;
    assert_int_equal(mp_art_get_str(r, "big", &sg, &err), MP_OK);
    assert_string_equal(sg, s);
    for (int k = 0; k < NK; k++) {
        char key[32];
        long long v;
        snprintf(key, sizeof key, "k.%d", k);
        assert_int_equal(mp_art_get_int(r, key, &v, &err), MP_OK);
        assert_int_equal(v, k);
    }
    mp_art_reader_free(r);
    free(f);
    free(fg);
    free(s);
}

/* ---------------------------------------------------------------- writer rules */

static void test_duplicate_key(void **state) {
    (void)state;
    const char *p = tpath("dup.mlpm");
    mp_err err = { 0 };
    mp_art_writer *w;
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    assert_int_equal(mp_art_put_int(w, "a", 1), MP_OK);
    assert_int_equal(mp_art_put_floats(w, "a", NULL, 0), MP_E_IO);
    /* Sticky: later puts are no-ops reporting the same error. */
    assert_int_equal(mp_art_put_int(w, "b", 2), MP_E_IO);
    mp_err st = { 0 };
    assert_int_equal(mp_art_writer_status(w, &st), MP_E_IO);
    assert_non_null(strstr(st.msg, "duplicate key 'a'"));
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_E_IO);
    assert_non_null(strstr(err.msg, "duplicate key 'a'"));
    assert_non_null(strstr(err.msg, p));
    assert_false(exists(p));
    assert_int_equal(tmp_files(), 0);
}

static void test_bad_keys(void **state) {
    (void)state;
    const char *bad[] = { "", "has space", "new\nline", "tab\tkey", "\x7f" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *p = tpath("badkey.mlpm");
        mp_err err = { 0 };
        mp_art_writer *w;
        assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
        assert_int_equal(mp_art_put_str(w, bad[i], "v"), MP_E_IO);
        assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_E_IO);
        assert_false(exists(p));
    }
    /* A NULL key or string value is refused, not dereferenced. */
    mp_err err = { 0 };
    mp_art_writer *w;
    assert_int_equal(mp_art_writer_open(tpath("null.mlpm"), &w, &err), MP_OK);
    assert_int_equal(mp_art_put_int(w, NULL, 1), MP_E_IO);
    mp_art_writer_abort(w);
    assert_int_equal(mp_art_writer_open(tpath("null.mlpm"), &w, &err), MP_OK);
    char *vals[] = { "a", NULL };
    assert_int_equal(mp_art_put_strs(w, "v", vals, 2), MP_E_IO);
    mp_art_writer_abort(w);
    assert_int_equal(tmp_files(), 0);
}

static void test_commit_creates_parents_and_replaces(void **state) {
    (void)state;
    const char *p = tpath("a/b//c/model.mlpm");
    mp_err err = { 0 };
    mp_art_writer *w;
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    /* While writing, only the temporary file exists. */
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    assert_true(exists(tmp));
    assert_false(exists(p));
    mp_art_put_int(w, "version", 1);
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
    assert_true(exists(p));
    assert_false(exists(tmp));
    assert_int_equal(tmp_files(), 0);

    /* A second commit replaces the file as a whole. */
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    mp_art_put_int(w, "version", 2);
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
    mp_art_reader *r;
    long long v = 0;
    assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
    assert_int_equal(mp_art_get_int(r, "version", &v, &err), MP_OK);
    assert_int_equal(v, 2);
    mp_art_reader_free(r);
    assert_int_equal(tmp_files(), 0);

    /* A bare file name (no folder) works too. */
    char cwd[512];
    assert_non_null(getcwd(cwd, sizeof cwd));
    assert_int_equal(chdir(g_dir), 0);
    assert_int_equal(mp_art_writer_open("bare.mlpm", &w, &err), MP_OK);
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
    assert_int_equal(chdir(cwd), 0);
    assert_true(exists(tpath("bare.mlpm")));
}

static void test_abort_removes_temp(void **state) {
    (void)state;
    const char *p = tpath("sub/aborted.mlpm");
    mp_err err = { 0 };
    mp_art_writer *w;
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    mp_art_put_int(w, "x", 1);
    assert_int_equal(tmp_files(), 1);
    mp_art_writer_abort(w);
    mp_art_writer_abort(NULL);
    assert_int_equal(tmp_files(), 0);
    assert_false(exists(p));

    /* An abort leaves an existing file alone. */
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    mp_art_writer_abort(w);
    assert_true(exists(p));
    assert_int_equal(tmp_files(), 0);
}

static void test_unwritable(void **state) {
    (void)state;
    write_bytes(tpath("plain"), "x", 1);
    const char *places[] = { tpath("plain/model.mlpm"), tpath("plain/deeper/model.mlpm"),
                             "/proc/mlpipe-test-no-such/model.mlpm", "/proc/model.mlpm" };
    for (size_t i = 0; i < sizeof places / sizeof *places; i++) {
        mp_err err = { 0 };
        mp_art_writer *w = NULL;
        assert_int_equal(mp_art_writer_open(places[i], &w, &err), MP_E_IO);
        assert_null(w);
        assert_non_null(strstr(err.msg, i < 2 ? "plain/" : "/proc/"));
        assert_non_null(strstr(err.msg, "': "));        /* ... followed by strerror */
        assert_false(exists(places[i]));
    }
    /* The rename fails at commit (the target is a folder): MP_E_IO naming the
     * path, and the temporary file is removed. */
    const char *dir = tpath("is-a-folder.mlpm");
    assert_int_equal(mkdir(dir, 0777), 0);
    mp_err err = { 0 };
    mp_art_writer *w;
    assert_int_equal(mp_art_writer_open(dir, &w, &err), MP_OK);
    mp_art_put_int(w, "x", 1);
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_E_IO);
    assert_non_null(strstr(err.msg, dir));
    assert_non_null(strstr(err.msg, strerror(EISDIR)));
    assert_int_equal(tmp_files(), 0);
    /* An empty path. */
    mp_err e2 = { 0 };
    assert_int_equal(mp_art_writer_open("", &w, &e2), MP_E_IO);
}

/* ---------------------------------------------------------------- reader refusals */

/* A small file with every type, for the damage tests. */
static void write_small(const char *p) {
    mp_err err = { 0 };
    mp_art_writer *w;
    const float f[] = { 1.5f, -2.0f };
    const double d[] = { 0.25 };
    char *s[] = { "a b", "" };
    assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
    mp_art_put_str(w, "name", "x%y");
    mp_art_put_strs(w, "names", s, 2);
    mp_art_put_int(w, "n", 3);
    mp_art_put_doubles(w, "d", d, 1);
    mp_art_put_floats(w, "f", f, 2);
    assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
}

static void test_truncation_everywhere(void **state) {
    (void)state;
    const char *p = tpath("small.mlpm"), *q = tpath("cut.mlpm");
    write_small(p);
    size_t len;
    char *full = slurp(p, &len);
    write_bytes(q, full, len);
    /* Shorten one file step by step (rewriting is slow on some /tmp's). */
    for (size_t cut = len; cut-- > 0;) {
        assert_int_equal(truncate(q, (off_t)cut), 0);
        mp_err err = open_fails(q, MP_E_PARSE);
        /* Past the magic line, the message says what happened. */
        if (cut > 7) {
            char want[600];
            snprintf(want, sizeof want, "'%s' is truncated (no checksum line)", q);
            assert_string_equal(err.msg, want);
        }
    }
    mp_free(full);
}

static void test_flipped_byte_everywhere(void **state) {
    (void)state;
    const char *p = tpath("small.mlpm"), *q = tpath("flip.mlpm");
    write_small(p);
    size_t len;
    char *full = slurp(p, &len);
    write_bytes(q, full, len);
    /* Each byte, each mask, patched in place and restored. */
    const unsigned char masks[] = { 0x01, 0x20, 0x80, 0xff };
    int fd = open(q, O_WRONLY);
    assert_true(fd >= 0);
    for (size_t i = 0; i < len; i++)
        for (size_t m = 0; m < sizeof masks; m++) {
            char c = (char)(full[i] ^ masks[m]);
            assert_int_equal(pwrite(fd, &c, 1, (off_t)i), 1);
            open_fails(q, MP_E_PARSE);
            assert_int_equal(pwrite(fd, &full[i], 1, (off_t)i), 1);
        }
    close(fd);
    /* Content damage in particular is named as such. */
    full[12] ^= 1;
    write_bytes(q, full, len);
    mp_err err = open_fails(q, MP_E_PARSE);
    char want[600];
    snprintf(want, sizeof want, "'%s' is corrupted (checksum mismatch)", q);
    assert_string_equal(err.msg, want);
    mp_free(full);
}

static void test_newer_version(void **state) {
    (void)state;
    const char *p = tpath("v2.mlpm");
    write_bytes(p, "MLPM 2\nwhatever a version 2 holds\n", 34);
    mp_err err = open_fails(p, MP_E_PARSE);
    char want[600];
    snprintf(want, sizeof want,
             "'%s' has model format version 2; this mlpipe reads version 1 (upgrade mlpipe)", p);
    assert_string_equal(err.msg, want);
    write_bytes(p, "MLPM 123456789012345678901234567890\n", 36);
    err = open_fails(p, MP_E_PARSE);
    assert_non_null(strstr(err.msg, "version 123456789012345678901234567890;"));
}

static void test_garbage(void **state) {
    (void)state;
    const char *p = tpath("garbage.mlpm");
    const char *const cases[] = { "", "M", "MLPM", "MLPM \n", "MLPM 1", "MLPM 0\n", "MLPM x\n",
                                  "MLPM 1 \n", "mlpm 1\n", "sepal_length,species\n1,a\n",
                                  "\x7f" "ELF\x02\x01\x01" };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_bytes(p, cases[i], strlen(cases[i]));
        mp_err err = open_fails(p, MP_E_PARSE);
        char want[600];
        snprintf(want, sizeof want, "'%s' is not an mlpipe model file", p);
        assert_string_equal(err.msg, want);
    }
    /* Random bytes, some starting like a model file: refused, never a crash. */
    mp_rng rng;
    mp_rng_seed(&rng, 7);
    unsigned char buf[512];
    for (int t = 0; t < 100; t++) {
        size_t n = mp_rng_below(&rng, sizeof buf);
        for (size_t i = 0; i < n; i++) buf[i] = (unsigned char)mp_rng_next(&rng);
        if (t % 2 && n >= 7) memcpy(buf, "MLPM 1\n", 7);
        write_bytes(p, buf, n);
        open_fails(p, MP_E_PARSE);
    }
    /* Missing file and a folder are I/O errors. */
    mp_err err = open_fails(tpath("missing.mlpm"), MP_E_IO);
    assert_non_null(strstr(err.msg, "missing.mlpm"));
    open_fails(g_dir, MP_E_IO);
}

/* Lines that are wrong although the checksum is right (a buggy writer or a
 * hand-edited file with a recomputed checksum): MP_E_PARSE at "file:LINE". */
static void test_malformed_lines(void **state) {
    (void)state;
    static const struct { const char *body; int line; } cases[] = {
        { "k\n", 2 },                       /* no type */
        { "k s\n", 2 },
        { " s 1 a\n", 2 },                  /* empty key */
        { "k x 1 a\n", 2 },                 /* unknown type */
        { "k ss 1 a\n", 2 },
        { "a i 1 1\nk s 2 a\n", 3 },        /* fewer values than the count */
        { "k s 1 a b\n", 2 },               /* more */
        { "k s 1 a \n", 2 },                /* trailing space */
        { "k s 2 a  b\n", 2 },              /* double space */
        { "k s 0 \n", 2 },
        { "k s 01 a\n", 2 },                /* leading zero */
        { "k s -1 a\n", 2 },
        { "k s 99999999999999999999999 a\n", 2 },
        { "k s 9999999 a\n", 2 },
        { "k s 1 %4\n", 2 },                /* bad escapes */
        { "k s 1 %zz\n", 2 },
        { "k s 1 %00\n", 2 },               /* NUL cannot be in a string */
        { "k s 1 a\tb\n", 2 },              /* raw control byte */
        { "k s 1 a\rb\n", 2 },
        { "k s 1 a\r\n", 2 },
        { "k f 1 1.5x\n", 2 },
        { "k f 1 1e39\n", 2 },              /* overflows a float */
        { "k f 2 1 \t2\n", 2 },
        { "k d 1 abc\n", 2 },
        { "k d 1 1e999\n", 2 },
        { "k i 1 1.5\n", 2 },
        { "k i 1 99999999999999999999\n", 2 },
        { "k i 1 \n", 2 },
        { "a i 1 1\nb i 1 2\na i 1 3\n", 4 },  /* duplicate key */
        { "k\x01 i 1 1\n", 2 },             /* control byte in a key */
        { "k i 1 1\n\n", 3 },               /* empty line */
    };
    const char *p = tpath("bad.mlpm");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_checked(p, cases[i].body);
        mp_err err = open_fails(p, MP_E_PARSE);
        char where[600];
        snprintf(where, sizeof where, "%s:%d", p, cases[i].line);
        if (strcmp(err.where, where) != 0)
            fail_msg("case %zu (%s): where '%s', want '%s' (%s)", i, cases[i].body, err.where,
                     where, err.msg);
        assert_non_null(strstr(err.msg, "is malformed"));
    }
    /* What a valid hand-written file may hold: no entries at all, hex floats,
     * "infinity", and unknown-to-us keys. */
    write_checked(p, "");
    mp_err err = { 0 };
    mp_art_reader *r;
    assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
    assert_false(mp_art_has(r, "x"));
    mp_art_reader_free(r);
    write_checked(p, "f f 3 0x1p-3 infinity -0\n");
    assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
    float f[3];
    assert_int_equal(mp_art_get_floats(r, "f", f, 3, &err), MP_OK);
    assert_true(f[0] == 0.125f && isinf(f[1]) && f[2] == 0.0f && signbit(f[2]));
    mp_art_reader_free(r);
}

static void test_get_errors(void **state) {
    (void)state;
    const char *p = tpath("get.mlpm");
    write_small(p);
    mp_art_reader *r;
    mp_err err = { 0 };
    assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
    char want[700];

    float f[3];
    double d;
    long long i;
    const char *s;
    char **ss;
    size_t n;

    err = (mp_err){ 0 };
    assert_int_equal(mp_art_get_floats(r, "model.bias", f, 2, &err), MP_E_PARSE);
    snprintf(want, sizeof want, "'%s': missing key 'model.bias'", p);
    assert_string_equal(err.msg, want);

    err = (mp_err){ 0 };    /* wrong count */
    assert_int_equal(mp_art_get_floats(r, "f", f, 3, &err), MP_E_PARSE);
    snprintf(want, sizeof want, "'%s': key 'f' holds 2 floats, expected 3 floats", p);
    assert_string_equal(err.msg, want);
    snprintf(want, sizeof want, "%s:6", p);
    assert_string_equal(err.where, want);

    err = (mp_err){ 0 };    /* wrong type */
    assert_int_equal(mp_art_get_doubles(r, "f", &d, 2, &err), MP_E_PARSE);
    snprintf(want, sizeof want, "'%s': key 'f' holds 2 floats, expected 2 doubles", p);
    assert_string_equal(err.msg, want);

    err = (mp_err){ 0 };
    assert_int_equal(mp_art_get_double(r, "n", &d, &err), MP_E_PARSE);
    snprintf(want, sizeof want, "'%s': key 'n' holds 1 integer, expected 1 double", p);
    assert_string_equal(err.msg, want);

    err = (mp_err){ 0 };
    assert_int_equal(mp_art_get_int(r, "d", &i, &err), MP_E_PARSE);
    assert_non_null(strstr(err.msg, "holds 1 double, expected 1 integer"));

    err = (mp_err){ 0 };    /* a list where one string is wanted */
    assert_int_equal(mp_art_get_str(r, "names", &s, &err), MP_E_PARSE);
    assert_non_null(strstr(err.msg, "key 'names' holds 2 strings, expected 1 string"));

    err = (mp_err){ 0 };
    assert_int_equal(mp_art_get_strs(r, "f", &ss, &n, &err), MP_E_PARSE);
    assert_non_null(strstr(err.msg, "holds 2 floats, expected strings"));

    err = (mp_err){ 0 };    /* a single string is a list of one */
    assert_int_equal(mp_art_get_strs(r, "name", &ss, &n, &err), MP_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ss[0], "x%y");
    mp_free(ss[0]);
    mp_free(ss);
    mp_art_reader_free(r);
    mp_art_reader_free(NULL);
}

/* ---------------------------------------------------------------- model file */

/* "shift_test": adds a constant per column. */
typedef struct shift { size_t n; float *add; } shift;

static void shift_free(void *st) {
    shift *s = st;
    if (!s) return;
    mp_free(s->add);
    mp_free(s);
}

static shift *shift_new(size_t n) {
    shift *s = mp_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->n = n;
    if (!(s->add = mp_calloc(n ? n : 1, sizeof *s->add))) {
        mp_free(s);
        return NULL;
    }
    return s;
}

static int shift_apply(const void *st, mp_matrix *X, mp_err *err) {
    const shift *s = st;
    if (X->n_cols != s->n) return MP_ERR(err, MP_E_DATA, "shift: bad column count");
    for (size_t i = 0; i < X->n_rows; i++)
        for (size_t j = 0; j < X->n_cols; j++) MP_AT(X, i, j) += s->add[j];
    return MP_OK;
}

static int shift_save(const void *st, mp_art_writer *w, const char *prefix, mp_err *err) {
    const shift *s = st;
    char key[128];
    snprintf(key, sizeof key, "%sadd", prefix);
    if (mp_art_put_floats(w, key, s->add, s->n) != MP_OK)
        return MP_ERR(err, MP_E_IO, "cannot write transform '%s'", prefix);  /* vague on purpose */
    return MP_OK;
}

static int shift_load(mp_art_reader *r, const char *prefix, size_t n_cols, void **state,
                      mp_err *err) {
    shift *s = shift_new(n_cols);
    if (!s) return MP_ERR(err, MP_E_NOMEM, "out of memory");
    char key[128];
    snprintf(key, sizeof key, "%sadd", prefix);
    if (mp_art_get_floats(r, key, s->add, n_cols, err) != MP_OK) {
        shift_free(s);
        return err->code;
    }
    *state = s;
    return MP_OK;
}

static const mp_transform_ops shift_ops = { .name = "shift_test", .apply = shift_apply,
    .save = shift_save, .load = shift_load, .free_state = shift_free };

/* "linear_test": out[i][k] = sum_j x[i][j] w[j][k] + b[k]. */
typedef struct linear { float *w; double *b; } linear;

static void linear_free(void *st) {
    linear *l = st;
    if (!l) return;
    mp_free(l->w);
    mp_free(l->b);
    mp_free(l);
}

static linear *linear_new(size_t n_in, size_t n_out) {
    linear *l = mp_calloc(1, sizeof *l);
    if (!l) return NULL;
    size_t n = n_in * n_out;
    l->w = mp_calloc(n > 0 ? n : 1, sizeof *l->w);
    l->b = mp_calloc(n_out, sizeof *l->b);
    if (!l->w || !l->b) {
        linear_free(l);
        return NULL;
    }
    return l;
}

static int linear_predict(const mp_model *m, const mp_matrix *X, mp_matrix *out, mp_err *err) {
    (void)err;
    const linear *l = m->state;
    for (size_t i = 0; i < X->n_rows; i++)
        for (size_t k = 0; k < m->n_outputs; k++) {
            double acc = l->b[k];
            for (size_t j = 0; j < m->n_features; j++)
                acc += (double)MP_AT(X, i, j) * l->w[j * m->n_outputs + k];
            MP_AT(out, i, k) = (float)acc;
        }
    return MP_OK;
}

static int linear_save(const mp_model *m, mp_art_writer *w, const char *prefix, mp_err *err) {
    const linear *l = m->state;
    char kw[128], kb[128];
    snprintf(kw, sizeof kw, "%sweights", prefix);
    snprintf(kb, sizeof kb, "%sbias", prefix);
    if (mp_art_put_floats(w, kw, l->w, m->n_features * m->n_outputs) != MP_OK ||
        mp_art_put_doubles(w, kb, l->b, m->n_outputs) != MP_OK)
        return MP_ERR(err, MP_E_IO, "cannot write the model");
    return MP_OK;
}

static int linear_load(mp_model *m, mp_art_reader *r, const char *prefix, mp_err *err) {
    linear *l = linear_new(m->n_features, m->n_outputs);
    if (!l) return MP_ERR(err, MP_E_NOMEM, "out of memory");
    char kw[128], kb[128];
    snprintf(kw, sizeof kw, "%sweights", prefix);
    snprintf(kb, sizeof kb, "%sbias", prefix);
    if (mp_art_get_floats(r, kw, l->w, m->n_features * m->n_outputs, err) != MP_OK ||
        mp_art_get_doubles(r, kb, l->b, m->n_outputs, err) != MP_OK) {
        linear_free(l);
        return err->code;
    }
    m->state = l;
    return MP_OK;
}

static const mp_model_ops linear_ops = { .name = "linear_test", .predict = linear_predict,
    .save = linear_save, .load = linear_load, .free_state = linear_free };

/* A model whose save always fails with its own message. */
static int failing_save(const mp_model *m, mp_art_writer *w, const char *prefix, mp_err *err) {
    (void)m; (void)w; (void)prefix;
    return MP_ERR(err, MP_E_NUMERIC, "weights are not finite");
}
static const mp_model_ops failing_ops = { .name = "failing_test", .predict = linear_predict,
    .save = failing_save, .load = linear_load, .free_state = linear_free };

static int no_run(mp_stage *st, mp_ctx *ctx, mp_err *err) {
    (void)st; (void)ctx; (void)err;
    return MP_OK;
}

static const mp_param no_params[] = { { 0 } };
static const mp_stage_ops shift_stage = { .abi = MP_STAGE_ABI, .name = "shift_test",
    .kind = MP_KIND_TRANSFORM, .params = no_params, .run = mp_transform_stage_run,
    .transform = &shift_ops };
static const mp_stage_ops linear_stage = { .abi = MP_STAGE_ABI, .name = "linear_test",
    .kind = MP_KIND_TRAIN, .params = no_params, .run = no_run, .model = &linear_ops,
    .task = MP_TASK_CLASSIFICATION };
static const mp_stage_ops *const both_stages[] = { &shift_stage, &linear_stage, NULL };
static const mp_stage_ops *const linear_only[] = { &linear_stage, NULL };

static void register_fakes(const mp_stage_ops *const *list) {
    mp_err err = { 0 };
    assert_int_equal(mp_registry_add(list, "test_artifact", &err), MP_OK);
}

enum { ROWS = 5, COLS = 3, OUTS = 3 };

/* A hand-built context: a trained linear model on 3 named features with two
 * fitted shifts, as the executor would hold it before export. */
typedef struct fixture {
    mp_ctx       ctx;
    mp_dataset  *ds;
    mp_transform tr[2];
    mp_model    *model;
} fixture;

static char *dup_or_fail(const char *s) {
    char *d = mp_strdup(s);
    assert_non_null(d);
    return d;
}

static void fixture_init(fixture *f, mp_task task) {
    memset(f, 0, sizeof *f);
    f->ds = mp_dataset_new();
    assert_non_null(f->ds);
    mp_err err = { 0 };
    assert_int_equal(mp_matrix_init(&f->ds->X, ROWS, COLS, &err), MP_OK);
    for (size_t i = 0; i < ROWS * COLS; i++) f->ds->X.data[i] = (float)i * 0.37f - 2.0f;
    f->ds->feature_names = mp_calloc(COLS, sizeof(char *));
    assert_non_null(f->ds->feature_names);
    f->ds->feature_names[0] = dup_or_fail("sepal length");
    f->ds->feature_names[1] = dup_or_fail("petal%width");
    f->ds->feature_names[2] = dup_or_fail("\xc3\xbc" "ber\tcol");
    f->ds->task = task;
    if (task == MP_TASK_CLASSIFICATION) {
        f->ds->target_name = dup_or_fail("species");
        f->ds->n_classes = 3;
        f->ds->class_names = mp_calloc(3, sizeof(char *));
        assert_non_null(f->ds->class_names);
        f->ds->class_names[0] = dup_or_fail("Iris setosa");
        f->ds->class_names[1] = dup_or_fail("");
        f->ds->class_names[2] = dup_or_fail("100%");
    }
    for (int t = 0; t < 2; t++) {
        shift *s = shift_new(COLS);
        assert_non_null(s);
        for (size_t j = 0; j < COLS; j++) s->add[j] = (float)(t + 1) * 0.1f * (float)(j + 1);
        f->tr[t] = (mp_transform){ &shift_ops, s };
    }
    f->model = mp_calloc(1, sizeof *f->model);
    assert_non_null(f->model);
    size_t outs = task == MP_TASK_CLASSIFICATION ? OUTS : 1;
    *f->model = (mp_model){ .ops = &linear_ops, .task = task, .n_features = COLS,
                            .n_outputs = outs, .has_proba = false };
    linear *l = linear_new(COLS, outs);
    assert_non_null(l);
    for (size_t i = 0; i < COLS * outs; i++) l->w[i] = 1.0f / (float)(i + 3);
    for (size_t k = 0; k < outs; k++) l->b[k] = 0.1 * (double)k - 0.05;
    f->model->state = l;
    f->ctx = (mp_ctx){ .train = f->ds, .transforms = f->tr, .n_transforms = 2,
                       .model = f->model, .train_module = "linear_test",
                       .pipeline = "iris test", .run_id = "42" };
}

static void fixture_release(fixture *f) {
    mp_model_free(f->model);
    for (int t = 0; t < 2; t++) shift_free(f->tr[t].state);
    mp_dataset_free(f->ds);
}

static void test_model_roundtrip(void **state) {
    (void)state;
    register_fakes(both_stages);
    fixture f;
    fixture_init(&f, MP_TASK_CLASSIFICATION);
    const char *p = tpath("models/iris.mlpm");
    mp_err err = { 0 };
    char sha[65];
    long long bytes = 0;
    assert_int_equal(mp_model_save(p, &f.ctx, sha, &bytes, &err), MP_OK);
    assert_true(bytes > 0);
    assert_int_equal(tmp_files(), 0);

    mp_model_file *mf = NULL;
    assert_int_equal(mp_model_load(p, &mf, &err), MP_OK);
    assert_string_equal(mf->sha256, sha);
    assert_string_equal(mf->algorithm, "linear_test");
    assert_string_equal(mf->pipeline, "iris test");
    assert_string_equal(mf->run_id, "42");
    assert_string_equal(mf->mlpipe_version, MP_VERSION);
    assert_int_equal(strlen(mf->created), 24);          /* 2024-01-02T03:04:05.678Z */
    assert_true(mf->created[10] == 'T' && mf->created[23] == 'Z');
    assert_string_equal(mf->target_name, "species");
    assert_int_equal(mf->n_features, COLS);
    for (size_t j = 0; j < COLS; j++)
        assert_string_equal(mf->feature_names[j], f.ds->feature_names[j]);
    assert_int_equal(mf->n_classes, 3);
    for (size_t c = 0; c < 3; c++) assert_string_equal(mf->class_names[c], f.ds->class_names[c]);
    const mp_model *m = mf->model;
    assert_ptr_equal(m->ops, &linear_ops);
    assert_int_equal(m->task, MP_TASK_CLASSIFICATION);
    assert_int_equal(m->n_features, COLS);
    assert_int_equal(m->n_outputs, OUTS);
    assert_false(m->has_proba);
    const linear *l0 = f.model->state, *l1 = m->state;
    assert_memory_equal(l0->w, l1->w, COLS * OUTS * sizeof *l0->w);
    assert_memory_equal(l0->b, l1->b, OUTS * sizeof *l0->b);
    assert_int_equal(mf->n_transforms, 2);
    for (int t = 0; t < 2; t++) {
        assert_ptr_equal(mf->transforms[t].ops, &shift_ops);
        const shift *a = f.tr[t].state, *b = mf->transforms[t].state;
        assert_int_equal(b->n, COLS);
        assert_memory_equal(a->add, b->add, COLS * sizeof *a->add);
    }

    /* Scores through the file equal transforming and predicting directly. */
    mp_matrix X1 = { 0 }, X2 = { 0 }, s1 = { 0 }, s2 = { 0 };
    assert_int_equal(mp_matrix_init(&X1, ROWS, COLS, &err), MP_OK);
    assert_int_equal(mp_matrix_init(&X2, ROWS, COLS, &err), MP_OK);
    memcpy(X1.data, f.ds->X.data, ROWS * COLS * sizeof(float));
    memcpy(X2.data, f.ds->X.data, ROWS * COLS * sizeof(float));
    assert_int_equal(mp_model_file_scores(mf, &X1, &s1, &err), MP_OK);
    assert_int_equal(mp_transform_chain_apply(f.tr, 2, &X2, &err), MP_OK);
    assert_int_equal(mp_matrix_init(&s2, ROWS, OUTS, &err), MP_OK);
    assert_int_equal(linear_predict(f.model, &X2, &s2, &err), MP_OK);
    assert_int_equal(s1.n_rows, ROWS);
    assert_int_equal(s1.n_cols, OUTS);
    assert_memory_equal(s1.data, s2.data, ROWS * OUTS * sizeof(float));
    assert_memory_equal(X1.data, X2.data, ROWS * COLS * sizeof(float));  /* in place */

    /* The wrong number of columns is refused and out stays untouched. */
    mp_matrix narrow = { 0 }, none = { 0 };
    assert_int_equal(mp_matrix_init(&narrow, 2, COLS - 1, &err), MP_OK);
    assert_int_equal(mp_model_file_scores(mf, &narrow, &none, &err), MP_E_DATA);
    assert_null(none.data);
    mp_matrix_release(&narrow);
    mp_matrix_release(&X1);
    mp_matrix_release(&X2);
    mp_matrix_release(&s1);
    mp_matrix_release(&s2);
    mp_model_file_free(mf);
    mp_model_file_free(NULL);
    fixture_release(&f);
}

/* Regression, no provenance, no transforms: the optional keys are absent. */
static void test_model_minimal(void **state) {
    (void)state;
    register_fakes(both_stages);
    fixture f;
    fixture_init(&f, MP_TASK_REGRESSION);
    f.ctx.pipeline = NULL;
    f.ctx.run_id = NULL;
    f.ctx.n_transforms = 0;
    const char *p = tpath("reg.mlpm");
    mp_err err = { 0 };
    assert_int_equal(mp_model_save(p, &f.ctx, NULL, NULL, &err), MP_OK);
    mp_model_file *mf = NULL;
    assert_int_equal(mp_model_load(p, &mf, &err), MP_OK);
    assert_null(mf->pipeline);
    assert_null(mf->run_id);
    assert_null(mf->target_name);
    assert_null(mf->class_names);
    assert_int_equal(mf->n_classes, 0);
    assert_int_equal(mf->n_transforms, 0);
    assert_int_equal(mf->model->task, MP_TASK_REGRESSION);
    assert_int_equal(mf->model->n_outputs, 1);
    mp_model_file_free(mf);
    fixture_release(&f);
}

static void test_model_unknown_implementation(void **state) {
    (void)state;
    register_fakes(both_stages);
    fixture f;
    fixture_init(&f, MP_TASK_CLASSIFICATION);
    const char *p = tpath("plugin.mlpm");
    mp_err err = { 0 };
    assert_int_equal(mp_model_save(p, &f.ctx, NULL, NULL, &err), MP_OK);
    fixture_release(&f);

    mp_registry_shutdown();     /* as if the plugin was not loaded */
    mp_model_file *mf = NULL;
    assert_int_equal(mp_model_load(p, &mf, &err), MP_E_PARSE);
    assert_null(mf);
    char want[700];
    snprintf(want, sizeof want,
             "'%s' needs algorithm 'linear_test', which this mlpipe does not have "
             "(is it from a plugin? load it with --plugin)", p);
    assert_string_equal(err.msg, want);

    register_fakes(linear_only);
    err = (mp_err){ 0 };
    assert_int_equal(mp_model_load(p, &mf, &err), MP_E_PARSE);
    snprintf(want, sizeof want,
             "'%s' needs transform 'shift_test', which this mlpipe does not have "
             "(is it from a plugin? load it with --plugin)", p);
    assert_string_equal(err.msg, want);
}

/* Model files with a missing or out-of-range key are refused by name. */
static void test_model_bad_keys(void **state) {
    (void)state;
    register_fakes(both_stages);
    const char *p = tpath("badmodel.mlpm");
    static const struct { const char *body; const char *msg; } cases[] = {
        { "x i 1 1\n", "missing key 'algorithm'" },
        { "algorithm s 1 linear_test\ntask i 1 9\n", "key 'task' is 9, expected 0..3" },
        { "algorithm s 1 linear_test\ntask i 1 1\nn_features i 1 2\nn_outputs i 1 1\n"
          "has_proba i 1 0\ntransforms i 1 0\nfeatures s 1 a\n",
          "1 feature names for 2 features" },
        { "algorithm s 1 linear_test\ntask i 1 2\nn_features i 1 1\nn_outputs i 1 1\n"
          "has_proba i 1 0\ntransforms i 1 0\nfeatures s 1 a\ncreated s 1 now\n"
          "mlpipe_version s 1 0.1.0\n",
          "missing key 'model.weights'" },
        { "algorithm s 1 linear_test\ntask i 1 2\nn_features i 1 1\nn_outputs i 1 1\n"
          "has_proba i 1 0\ntransforms i 1 1\n", "missing key 'transform.0.name'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_checked(p, cases[i].body);
        mp_err err = { 0 };
        mp_model_file *mf = NULL;
        assert_int_equal(mp_model_load(p, &mf, &err), MP_E_PARSE);
        assert_null(mf);
        if (!strstr(err.msg, cases[i].msg)) fail_msg("case %zu: %s", i, err.msg);
    }
}

static void test_model_save_errors(void **state) {
    (void)state;
    register_fakes(both_stages);
    fixture f;
    fixture_init(&f, MP_TASK_CLASSIFICATION);
    const char *p = tpath("out/err.mlpm");
    mp_err err = { 0 };

    mp_ctx no_model = f.ctx;
    no_model.model = NULL;
    assert_int_equal(mp_model_save(p, &no_model, NULL, NULL, &err), MP_E_DATA);

    /* A stage's own failure reaches the caller with context; nothing is left. */
    f.model->ops = &failing_ops;
    err = (mp_err){ 0 };
    assert_int_equal(mp_model_save(p, &f.ctx, NULL, NULL, &err), MP_E_NUMERIC);
    char want[700];
    snprintf(want, sizeof want, "cannot save model 'failing_test' to '%s': weights are not finite",
             p);
    assert_string_equal(err.msg, want);
    assert_false(exists(p));
    assert_int_equal(tmp_files(), 0);
    f.model->ops = &linear_ops;

    /* Feature names that do not match the model's inputs. */
    f.model->n_features = COLS + 1;
    err = (mp_err){ 0 };
    assert_int_equal(mp_model_save(p, &f.ctx, NULL, NULL, &err), MP_E_DATA);
    f.model->n_features = COLS;
    assert_false(exists(p));
    fixture_release(&f);
}

/* ---------------------------------------------------------------- allocation failures */

/* Fails allocation N = 1, 2, ... of save and then of load until each
 * succeeds: every failure is MP_E_NOMEM, leaves no file and no temporary
 * file, and leaks nothing (cmocka's allocator checks at the end). */
static void test_alloc_failures(void **state) {
    (void)state;
    register_fakes(both_stages);
    fixture f;
    fixture_init(&f, MP_TASK_CLASSIFICATION);
    const char *p = tpath("nomem/m.mlpm");
    int n_fail = 0;
    for (long n = 1;; n++) {
        mp_err err = { 0 };
        mp_mem_fail_after(n);
        int rc = mp_model_save(p, &f.ctx, NULL, NULL, &err);
        mp_mem_fail_after(0);
        if (rc == MP_OK) break;
        if (rc != MP_E_NOMEM) fail_msg("save, allocation %ld: code %d: %s", n, rc, err.msg);
        assert_false(exists(p));
        assert_int_equal(tmp_files(), 0);
        n_fail++;
        assert_true(n < 10000);
    }
    assert_true(n_fail > 3);

    n_fail = 0;
    for (long n = 1;; n++) {
        mp_err err = { 0 };
        mp_model_file *mf = NULL;
        mp_mem_fail_after(n);
        int rc = mp_model_load(p, &mf, &err);
        mp_mem_fail_after(0);
        if (rc == MP_OK) {
            mp_model_file_free(mf);
            break;
        }
        assert_null(mf);
        if (rc != MP_E_NOMEM) fail_msg("load, allocation %ld: code %d: %s", n, rc, err.msg);
        n_fail++;
        assert_true(n < 10000);
    }
    assert_true(n_fail > 10);
    fixture_release(&f);

    /* The writer's key set growing past its first size, and get_strs. */
    const char *q = tpath("nomem/keys.mlpm");
    for (long n = 1;; n++) {
        mp_err err = { 0 };
        mp_art_writer *w = NULL;
        mp_mem_fail_after(n);
        int rc = mp_art_writer_open(q, &w, &err);
        for (int k = 0; rc == MP_OK && k < 100; k++) {
            char key[32];
            snprintf(key, sizeof key, "key.%d", k);
            mp_art_put_int(w, key, k);
        }
        if (rc == MP_OK) {
            char *s[] = { "a", "b", "c" };
            mp_art_put_strs(w, "strs", s, 3);
            rc = mp_art_writer_commit(w, NULL, NULL, &err);
        }
        mp_mem_fail_after(0);
        if (rc == MP_OK) break;
        assert_int_equal(rc, MP_E_NOMEM);
        assert_int_equal(tmp_files(), 0);
        assert_false(exists(q));
    }
    for (long n = 1;; n++) {
        mp_err err = { 0 };
        mp_art_reader *r = NULL;
        char **v = NULL;
        size_t nv = 0;
        mp_mem_fail_after(n);
        int rc = mp_art_reader_open(q, &r, &err);
        if (rc == MP_OK) rc = mp_art_get_strs(r, "strs", &v, &nv, &err);
        mp_mem_fail_after(0);
        mp_art_reader_free(r);
        if (rc == MP_OK) {
            for (size_t i = 0; i < nv; i++) mp_free(v[i]);
            mp_free(v);
            break;
        }
        assert_int_equal(rc, MP_E_NOMEM);
    }
}

/* ---------------------------------------------------------------- benchmark */

/* Off unless MLPIPE_ART_BENCH is set: times one 400k-float entry, the size
 * of a mid-sized MLP. */
static void test_bench_400k(void **state) {
    (void)state;
    if (!getenv("MLPIPE_ART_BENCH")) skip();
    enum { N = 400000, REPS = 5 };
    float *f = malloc(N * sizeof *f), *g = malloc(N * sizeof *g);
    assert_true(f && g);
    mp_rng rng;
    mp_rng_seed(&rng, 1);
    for (size_t i = 0; i < N; i++) f[i] = (float)(mp_rng_normal(&rng) * 0.05);
    const char *p = tpath("bench.mlpm");
    double tw = 1e9, tr = 1e9;
    for (int rep = 0; rep < REPS; rep++) {
        mp_err err = { 0 };
        double t0 = mp_now();
        mp_art_writer *w;
        assert_int_equal(mp_art_writer_open(p, &w, &err), MP_OK);
        mp_art_put_floats(w, "model.weights", f, N);
        assert_int_equal(mp_art_writer_commit(w, NULL, NULL, &err), MP_OK);
        double t1 = mp_now();
        mp_art_reader *r;
        assert_int_equal(mp_art_reader_open(p, &r, &err), MP_OK);
        assert_int_equal(mp_art_get_floats(r, "model.weights", g, N, &err), MP_OK);
        mp_art_reader_free(r);
        double t2 = mp_now();
        if (t1 - t0 < tw) tw = t1 - t0;
        if (t2 - t1 < tr) tr = t2 - t1;
    }
    assert_memory_equal(f, g, N * sizeof *f);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    print_message("400k floats, %lld bytes: write+fsync %.1f ms, read+verify %.1f ms (best of %d)\n",
                  (long long)st.st_size, tw * 1e3, tr * 1e3, REPS);
    free(f);
    free(g);
}

/* mp_art_key: prefix + name when it fits (the terminator included), else
 * false with the stage's error code and a message naming module and prefix. */
static void test_art_key(void **state) {
    (void)state;
    mp_err err = { 0 };
    char buf[8];
    assert_true(mp_art_key(buf, sizeof buf, "svm", "m.", "bias", MP_E_IO, &err));
    assert_string_equal(buf, "m.bias");
    assert_true(mp_art_key(buf, sizeof buf, "svm", "m.w", "eigh", MP_E_IO, &err));
    assert_string_equal(buf, "m.weigh");
    assert_int_equal(err.code, MP_OK);
    assert_false(mp_art_key(buf, sizeof buf, "svm", "m.w", "eight", MP_E_PARSE, &err));
    assert_int_equal(err.code, MP_E_PARSE);
    assert_string_equal(err.msg, "svm: model key prefix 'm.w' is too long");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_art_key),
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
        T(test_roundtrip_all_types),
        T(test_exact_bits),
        T(test_nan_inf),
        T(test_large_entries),
        T(test_duplicate_key),
        T(test_bad_keys),
        T(test_commit_creates_parents_and_replaces),
        T(test_abort_removes_temp),
        T(test_unwritable),
        T(test_truncation_everywhere),
        T(test_flipped_byte_everywhere),
        T(test_newer_version),
        T(test_garbage),
        T(test_malformed_lines),
        T(test_get_errors),
        T(test_model_roundtrip),
        T(test_model_minimal),
        T(test_model_unknown_implementation),
        T(test_model_bad_keys),
        T(test_model_save_errors),
        T(test_alloc_failures),
        T(test_bench_400k),
#undef T
    };
    return cmocka_run_group_tests_name("artifact", tests, NULL, NULL);
}
