/*
 * util.c -- small helpers shared by the runner: SHA-256 (OpenSSL libcrypto),
 * whole-file reads, strict number parsing, clocks.
 */
#include "mp.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>

static void hex(const unsigned char *d, unsigned n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (unsigned i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

void mp_sha256_hex(const void *p, size_t n, char out[65]) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(p, n, md, &len, EVP_sha256(), NULL);
    hex(md, len, out);
}

int mp_sha256_file(const char *path, char out[65], long long *bytes, mp_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return MP_ERR(err, MP_E_IO, "cannot open '%s': %s", path, strerror(errno));
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (!c) {
        fclose(f);
        return MP_ERR(err, MP_E_NOMEM, "out of memory hashing '%s'", path);
    }
    EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    unsigned char buf[65536];
    long long total = 0;
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        EVP_DigestUpdate(c, buf, got);
        total += (long long)got;
    }
    int bad = ferror(f);
    fclose(f);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(c, md, &len);
    EVP_MD_CTX_free(c);
    if (bad) return MP_ERR(err, MP_E_IO, "cannot read '%s'", path);
    hex(md, len, out);
    if (bytes) *bytes = total;
    return MP_OK;
}

int mp_read_file(const char *path, char **out, size_t *len, mp_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return MP_ERR(err, MP_E_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t cap = 65536, n = 0;
    char *buf = mp_malloc(cap);
    if (!buf) goto nomem;
    for (;;) {
        if (cap - n < 2) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : mp_realloc(buf, cap * 2);
            if (!nb) goto nomem;
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        mp_free(buf);
        return MP_ERR(err, MP_E_IO, "cannot read '%s': %s", path, strerror(e));
    }
    fclose(f);
    buf[n] = '\0';
    *out = buf;
    if (len) *len = n;
    return MP_OK;
nomem:
    fclose(f);
    mp_free(buf);
    return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", path);
}

static bool only_blanks(const char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n') s++;
    return *s == '\0';
}

bool mp_parse_double(const char *s, double *out) {
    char *end;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '\0') return false;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || !only_blanks(end)) return false;
    if (errno == ERANGE && isinf(v)) return false;
    *out = v;
    return true;
}

bool mp_parse_long(const char *s, long long *out) {
    char *end;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '\0') return false;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || !only_blanks(end) || errno == ERANGE) return false;
    *out = v;
    return true;
}

double mp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void mp_iso_time(char out[32]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(ts.tv_nsec / 1000000L) % 1000);
}
