/*
 * artifact.c -- the MLPM container: an atomic, checksummed key/value writer
 * and a reader that validates the whole file before anyone reads a value.
 *
 * The format is specified in artifact.h.  The writer streams: values are
 * formatted into a 64 KiB staging buffer which, when full, is hashed
 * (SHA-256, incrementally) and written to "<path>.tmp.<pid>", so a model of
 * any size needs no more memory than that.  commit appends the checksum line,
 * fsyncs, renames over the target and fsyncs the folder; a crash at any point
 * leaves the old file or the new one, never a mix.
 *
 * The reader loads the file whole, checks magic, version and checksum first
 * (so a truncated or bit-flipped file is refused with a clear message before
 * any parsing), then parses every line into a sorted index of typed arrays.
 * Strings are decoded in place inside the file buffer (decoding only
 * shrinks), so get_str hands out pointers without copying.  Numbers go
 * through strtof/strtod, which glibc rounds correctly, so "%.9g"/"%.17g"
 * text reads back bit for bit.
 */
#include "artifact.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <openssl/evp.h>

#define STAGE_SIZE 65536        /* bytes formatted before one hash update + write() */
#define NUM_ROOM 48             /* room for " " + one formatted number ("%.17g" <= 24) */
#define CHECKSUM_TAG "sha256 "  /* the trailer line: CHECKSUM_TAG + 64 hex + "\n" */
#define TAG_LEN (sizeof CHECKSUM_TAG - 1)
#define TRAILER_LEN (TAG_LEN + 64 + 1)

static void to_hex(const unsigned char *d, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[d[i] >> 4];
        out[2 * i + 1] = digits[d[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Finishes a SHA-256 context into 64 hex digits. */
static void md_hex(EVP_MD_CTX *md, char out[65]) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(md, d, &n);
    to_hex(d, n, out);
}

/* Copies src into dst unless dst already holds an error (first error wins). */
static int pass_error(mp_err *dst, const mp_err *src) {
    if (dst && dst->code == MP_OK) *dst = *src;
    return src->code;
}

/* ================================================================ writer */

struct mp_art_writer {
    char       *path;       /* the target file, for messages and the rename */
    char       *tmp;        /* "<path>.tmp.<pid>": bytes go here until commit */
    int         fd;         /* tmp open for writing, or -1 */
    EVP_MD_CTX *md;         /* SHA-256 of every byte handed to write() so far */
    long long   bytes;      /* bytes handed to write() so far */
    char      **keys;       /* open-addressing set of the keys written (owned copies) */
    size_t      n_keys;
    size_t      cap_keys;   /* 0 or a power of two; kept at most half full */
    mp_err      err;        /* sticky: the first failure; later puts are no-ops */
    size_t      len;        /* staged bytes in buf */
    char        buf[STAGE_SIZE];
};

/* write(2) until all n bytes are out; retries short writes and EINTR. */
static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t k = write(fd, p, n);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Hashes and writes the staged bytes. */
static int flush_stage(mp_art_writer *w) {
    if (w->err.code) return w->err.code;
    if (w->len == 0) return MP_OK;
    EVP_DigestUpdate(w->md, w->buf, w->len);
    if (write_all(w->fd, w->buf, w->len) != 0)
        return MP_ERR(&w->err, MP_E_IO, "cannot write '%s': %s", w->path, strerror(errno));
    w->bytes += (long long)w->len;
    w->len = 0;
    return MP_OK;
}

/* Makes room for `need` (<= STAGE_SIZE) more staged bytes. */
static int reserve(mp_art_writer *w, size_t need) {
    if (STAGE_SIZE - w->len >= need) return MP_OK;
    return flush_stage(w);
}

static int emit(mp_art_writer *w, const char *s, size_t n) {
    while (n > 0) {
        if (w->len == STAGE_SIZE && flush_stage(w) != MP_OK) return w->err.code;
        size_t k = STAGE_SIZE - w->len < n ? STAGE_SIZE - w->len : n;
        memcpy(w->buf + w->len, s, k);
        w->len += k;
        s += k;
        n -= k;
    }
    return w->err.code;
}

/* FNV-1a: keys are short and few; the set only guards against duplicates. */
static size_t key_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (size_t)h;
}

/* Inserts an owned copy of key; MP_E_IO if it is there already. */
static int key_add(mp_art_writer *w, const char *key) {
    if ((w->n_keys + 1) * 2 > w->cap_keys) {
        size_t cap = w->cap_keys ? w->cap_keys * 2 : 64;
        char **nk = mp_calloc(cap, sizeof *nk);
        if (!nk) return MP_ERR(&w->err, MP_E_NOMEM, "out of memory writing '%s'", w->path);
        for (size_t i = 0; i < w->cap_keys; i++) {
            if (!w->keys[i]) continue;
            size_t j = key_hash(w->keys[i]) & (cap - 1);
            while (nk[j]) j = (j + 1) & (cap - 1);
            nk[j] = w->keys[i];
        }
        mp_free(w->keys);
        w->keys = nk;
        w->cap_keys = cap;
    }
    size_t j = key_hash(key) & (w->cap_keys - 1);
    for (; w->keys[j]; j = (j + 1) & (w->cap_keys - 1))
        if (strcmp(w->keys[j], key) == 0)
            return MP_ERR(&w->err, MP_E_IO, "cannot write '%s': duplicate key '%s'", w->path,
                          key);
    if (!(w->keys[j] = mp_strdup(key)))
        return MP_ERR(&w->err, MP_E_NOMEM, "out of memory writing '%s'", w->path);
    w->n_keys++;
    return MP_OK;
}

/* A key byte must be visible ASCII or UTF-8: no space, no control byte, so
 * the key stays one token on one line. */
static bool key_byte_ok(unsigned char c) { return c > 0x20 && c != 0x7f; }

/* Checks the key, records it, and writes "<key> <type> <count>". */
static int begin_entry(mp_art_writer *w, const char *key, char type, size_t n) {
    if (w->err.code) return w->err.code;
    if (!key || !key[0])
        return MP_ERR(&w->err, MP_E_IO, "cannot write '%s': empty key", w->path);
    for (const char *k = key; *k; k++)
        if (!key_byte_ok((unsigned char)*k))
            return MP_ERR(&w->err, MP_E_IO,
                          "cannot write '%s': key '%s' holds a space or control character",
                          w->path, key);
    if (key_add(w, key) != MP_OK) return w->err.code;
    if (emit(w, key, strlen(key)) != MP_OK || reserve(w, NUM_ROOM) != MP_OK) return w->err.code;
    w->len += (size_t)snprintf(w->buf + w->len, NUM_ROOM, " %c %zu", type, n);
    return MP_OK;
}

static int end_entry(mp_art_writer *w) { return emit(w, "\n", 1); }

int mp_art_writer_status(const mp_art_writer *w, mp_err *err) {
    return w->err.code ? pass_error(err, &w->err) : MP_OK;
}

/* Closes and removes the temporary file (if still there) and frees w. */
static void writer_free(mp_art_writer *w, bool remove_tmp) {
    if (w->fd >= 0) close(w->fd);
    if (remove_tmp && w->tmp) unlink(w->tmp);
    if (w->md) EVP_MD_CTX_free(w->md);
    for (size_t i = 0; i < w->cap_keys; i++) mp_free(w->keys[i]);
    mp_free(w->keys);
    mp_free(w->tmp);
    mp_free(w->path);
    mp_free(w);
}

/* mkdir -p of the folder holding path.  An existing component is fine even
 * when mkdir reports EACCES/EROFS instead of EEXIST (some file systems do). */
static int make_parents(const char *path, mp_err *err) {
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return MP_OK;
    size_t n = (size_t)(slash - path);
    char *dir = mp_malloc(n + 1);
    if (!dir) return MP_ERR(err, MP_E_NOMEM, "out of memory writing '%s'", path);
    memcpy(dir, path, n);
    dir[n] = '\0';
    for (size_t i = 1; i <= n; i++) {
        if (i < n && dir[i] != '/') continue;
        if (i < n && dir[i - 1] == '/') continue;      /* "a//b" */
        char save = dir[i];
        dir[i] = '\0';
        struct stat st;
        int e = mkdir(dir, 0777) == 0 ? 0 : errno;
        if (e != 0 && e != EEXIST && !(stat(dir, &st) == 0 && S_ISDIR(st.st_mode))) {
            MP_ERR(err, MP_E_IO, "cannot create folder '%s' for '%s': %s", dir, path,
                   strerror(e));
            mp_free(dir);
            return err->code;
        }
        dir[i] = save;
    }
    mp_free(dir);
    return MP_OK;
}

int mp_art_writer_open(const char *path, mp_art_writer **out, mp_err *err) {
    if (!path || !path[0]) return MP_ERR(err, MP_E_IO, "cannot write a model file: empty path");
    /* "%.9g" follows LC_NUMERIC.  mlpipe never changes it, but a plugin might;
     * writing "1,5" would give a file no reader accepts, so refuse up front. */
    const char *dp = localeconv()->decimal_point;
    if (!dp || strcmp(dp, ".") != 0)
        return MP_ERR(err, MP_E_IO,
                      "cannot write '%s': the numeric locale is not C (did a plugin call setlocale?)",
                      path);
    mp_art_writer *w = mp_calloc(1, sizeof *w);
    if (!w) return MP_ERR(err, MP_E_NOMEM, "out of memory writing '%s'", path);
    w->fd = -1;
    size_t tmp_size = strlen(path) + 32;
    if (!(w->path = mp_strdup(path)) || !(w->tmp = mp_malloc(tmp_size))) {
        MP_ERR(err, MP_E_NOMEM, "out of memory writing '%s'", path);
        goto fail;
    }
    snprintf(w->tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
    if (make_parents(path, err) != MP_OK) goto fail;
    if (!(w->md = EVP_MD_CTX_new()) || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        MP_ERR(err, MP_E_NOMEM, "out of memory writing '%s'", path);
        goto fail;
    }
    /* O_TRUNC, not O_EXCL: a leftover with our pid is from a dead process. */
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (w->fd < 0) {
        MP_ERR(err, MP_E_IO, "cannot create '%s': %s", w->tmp, strerror(errno));
        mp_free(w->tmp);        /* nothing to remove: do not unlink another's file */
        w->tmp = NULL;
        goto fail;
    }
    w->len = (size_t)snprintf(w->buf, NUM_ROOM, "MLPM %d\n", MP_ART_VERSION);
    *out = w;
    return MP_OK;
fail:
    writer_free(w, true);
    return err->code;
}

/* fsync the folder holding path, so the rename itself survives a crash. */
static int sync_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) return 0;      /* cannot name it: skip, not fatal */
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    /* Some file systems cannot fsync a folder (EINVAL): nothing more to do. */
    if (rc != 0 && errno == EINVAL) rc = 0;
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int mp_art_writer_commit(mp_art_writer *w, char sha256[65], long long *bytes, mp_err *err) {
    char content[65], whole[65], trailer[TRAILER_LEN + 1];
    EVP_MD_CTX *full = NULL;
    if (flush_stage(w) != MP_OK) goto fail;
    /* The trailer covers the bytes above it; the file's own digest (what the
     * run DB records, as `sha256sum` would print) includes the trailer too. */
    if (!(full = EVP_MD_CTX_new()) || EVP_MD_CTX_copy_ex(full, w->md) != 1) {
        MP_ERR(&w->err, MP_E_NOMEM, "out of memory writing '%s'", w->path);
        goto fail;
    }
    md_hex(w->md, content);
    snprintf(trailer, sizeof trailer, CHECKSUM_TAG "%s\n", content);
    EVP_DigestUpdate(full, trailer, TRAILER_LEN);
    md_hex(full, whole);
    if (write_all(w->fd, trailer, TRAILER_LEN) != 0 || fsync(w->fd) != 0) {
        MP_ERR(&w->err, MP_E_IO, "cannot write '%s': %s", w->path, strerror(errno));
        goto fail;
    }
    int fd = w->fd;
    w->fd = -1;
    if (close(fd) != 0) {       /* NFS reports some write errors only here */
        MP_ERR(&w->err, MP_E_IO, "cannot write '%s': %s", w->path, strerror(errno));
        goto fail;
    }
    if (rename(w->tmp, w->path) != 0) {
        MP_ERR(&w->err, MP_E_IO, "cannot write '%s': %s", w->path, strerror(errno));
        goto fail;
    }
    long long total = w->bytes + (long long)TRAILER_LEN;
    if (sync_parent(w->path) != 0) {
        /* The complete new file is in place, but the rename may not survive
         * a power loss: report it, there is no temporary file left to remove. */
        MP_ERR(&w->err, MP_E_IO, "cannot sync the folder of '%s': %s", w->path,
               strerror(errno));
        EVP_MD_CTX_free(full);
        int code = pass_error(err, &w->err);
        writer_free(w, false);
        return code;
    }
    EVP_MD_CTX_free(full);
    if (sha256) memcpy(sha256, whole, 65);
    if (bytes) *bytes = total;
    writer_free(w, false);
    return MP_OK;
fail:
    if (full) EVP_MD_CTX_free(full);
    int code = pass_error(err, &w->err);
    writer_free(w, true);
    return code;
}

void mp_art_writer_abort(mp_art_writer *w) {
    if (w) writer_free(w, true);
}

/* ---------------------------------------------------------------- put_* */

/* Bytes a string writes verbatim; the rest become %XX so a value stays one
 * token (no space) on one line (no control byte) and '%' stays unambiguous. */
static bool str_byte_plain(unsigned char c) { return c > 0x20 && c != 0x7f && c != '%'; }

static int emit_str(mp_art_writer *w, const char *s) {
    static const char digits[] = "0123456789ABCDEF";
    if (!s[0]) return emit(w, " %", 2);
    if (emit(w, " ", 1) != MP_OK) return w->err.code;
    while (*s) {
        const char *run = s;            /* copy runs of plain bytes in one go */
        while (*s && str_byte_plain((unsigned char)*s)) s++;
        if (s > run && emit(w, run, (size_t)(s - run)) != MP_OK) return w->err.code;
        if (!*s) break;
        unsigned char c = (unsigned char)*s++;
        char esc[3] = { '%', digits[c >> 4], digits[c & 15] };
        if (emit(w, esc, 3) != MP_OK) return w->err.code;
    }
    return w->err.code;
}

static int put_strings(mp_art_writer *w, const char *key, const char *const *v, size_t n) {
    if (w->err.code) return w->err.code;
    for (size_t i = 0; i < n; i++)
        if (!v[i])
            return MP_ERR(&w->err, MP_E_IO, "cannot write '%s': key '%s' value %zu is NULL",
                          w->path, key ? key : "", i);
    if (begin_entry(w, key, 's', n) != MP_OK) return w->err.code;
    for (size_t i = 0; i < n; i++)
        if (emit_str(w, v[i]) != MP_OK) return w->err.code;
    return end_entry(w);
}

int mp_art_put_str(mp_art_writer *w, const char *key, const char *value) {
    return put_strings(w, key, &value, 1);
}

int mp_art_put_strs(mp_art_writer *w, const char *key, char *const *v, size_t n) {
    return put_strings(w, key, (const char *const *)v, n);
}

int mp_art_put_int(mp_art_writer *w, const char *key, long long value) {
    if (begin_entry(w, key, 'i', 1) != MP_OK || reserve(w, NUM_ROOM) != MP_OK)
        return w->err.code;
    w->len += (size_t)snprintf(w->buf + w->len, NUM_ROOM, " %lld", value);
    return end_entry(w);
}

/* Appends " <v>" with `digits` significant digits; NaN and the infinities
 * get fixed spellings ("-nan" from printf would depend on the sign bit). */
static void stage_real(mp_art_writer *w, double v, int digits) {
    char *p = w->buf + w->len;
    int k;
    if (isnan(v)) k = snprintf(p, NUM_ROOM, " nan");
    else if (isinf(v)) k = snprintf(p, NUM_ROOM, v > 0 ? " inf" : " -inf");
    else k = snprintf(p, NUM_ROOM, " %.*g", digits, v);
    w->len += (size_t)k;
}

int mp_art_put_double(mp_art_writer *w, const char *key, double value) {
    return mp_art_put_doubles(w, key, &value, 1);
}

int mp_art_put_doubles(mp_art_writer *w, const char *key, const double *v, size_t n) {
    if (begin_entry(w, key, 'd', n) != MP_OK) return w->err.code;
    for (size_t i = 0; i < n; i++) {
        if (reserve(w, NUM_ROOM) != MP_OK) return w->err.code;
        stage_real(w, v[i], 17);
    }
    return end_entry(w);
}

int mp_art_put_floats(mp_art_writer *w, const char *key, const float *v, size_t n) {
    if (begin_entry(w, key, 'f', n) != MP_OK) return w->err.code;
    for (size_t i = 0; i < n; i++) {
        if (reserve(w, NUM_ROOM) != MP_OK) return w->err.code;
        stage_real(w, (double)v[i], 9);
    }
    return end_entry(w);
}

/* ================================================================ reader */

/* One entry of the file, with its values already parsed. */
typedef struct entry {
    const char *key;        /* NUL-terminated, inside the reader's buffer */
    size_t      count;      /* number of values */
    void       *values;     /* count values (NULL when 0): 's' char *[] pointing into
                               the buffer, 'i' long long[], 'd' double[], 'f' float[] */
    int         line;       /* 1-based line in the file, for messages */
    char        type;       /* 's', 'i', 'd' or 'f' */
} entry;

struct mp_art_reader {
    char   *path;           /* as given, for messages */
    char   *buf;            /* the whole file; string values decoded in place */
    entry  *ents;           /* sorted by key */
    size_t  n_ents;
    char    sha256[65];     /* of the whole file */
};

void mp_art_reader_free(mp_art_reader *r) {
    if (!r) return;
    for (size_t i = 0; i < r->n_ents; i++) mp_free(r->ents[i].values);
    mp_free(r->ents);
    mp_free(r->buf);
    mp_free(r->path);
    mp_free(r);
}

const char *mp_art_reader_sha256(const mp_art_reader *r) { return r->sha256; }

/* Everything wrong inside an entry line is reported the same way. */
static int malformed(const mp_art_reader *r, int line, mp_err *err, const char *what) {
    MP_ERR(err, MP_E_PARSE, "'%s' is malformed: %s", r->path, what);
    if (err) mp_err_where(err, "%s:%d", r->path, line);
    return MP_E_PARSE;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* Decodes the string token at *pp in place and NUL-terminates it; *pp moves
 * to the separator that ended it, which is returned (' ' or '\n'), or 0 for
 * a bad token.  Decoding only shrinks, so the NUL lands at or before the
 * separator, which the caller has already read. */
static char decode_str(char **pp, char **value) {
    char *p = *pp, *dst = p;
    *value = p;
    if (p[0] == '%' && (p[1] == ' ' || p[1] == '\n')) {     /* the empty string */
        char sep = p[1];
        *pp = p + 1;
        p[0] = '\0';
        return sep;
    }
    for (;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == ' ' || c == '\n') break;
        if (c == '%') {
            int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);
            if (lo < 0 || (hi == 0 && lo == 0)) return 0;   /* NUL cannot live in a C string */
            *dst++ = (char)(hi * 16 + lo);
            p += 2;
        } else if (c < 0x20 || c == 0x7f) {
            return 0;
        } else {
            *dst++ = (char)c;
        }
    }
    if (p == *pp) return 0;             /* empty token: two separators in a row */
    char sep = *p;
    *dst = '\0';
    *pp = p;
    return sep;
}

/* strtof & co. skip leading blanks; a token must start with its first character. */
static bool token_start_ok(const char *p) {
    return *p && *p != ' ' && *p != '\n' && *p != '\t' && *p != '\r' && *p != '\v' && *p != '\f';
}

/* Parses one number token of type t at *pp into slot i of values; moves *pp
 * to the separator and returns it, or 0 for a bad token. */
static char parse_number(char type, char **pp, void *values, size_t i) {
    char *p = *pp, *end;
    if (!token_start_ok(p)) return 0;
    errno = 0;
    if (type == 'f') {
        float v = strtof(p, &end);
        /* ERANGE with a finite result is underflow to a denormal or zero:
         * exactly what "%.9g" of a denormal reads back as, so it is fine. */
        if (end == p || (errno == ERANGE && isinf(v))) return 0;
        ((float *)values)[i] = v;
    } else if (type == 'd') {
        double v = strtod(p, &end);
        if (end == p || (errno == ERANGE && isinf(v))) return 0;
        ((double *)values)[i] = v;
    } else {
        long long v = strtoll(p, &end, 10);
        if (end == p || errno == ERANGE) return 0;
        ((long long *)values)[i] = v;
    }
    *pp = end;
    return *end == ' ' || *end == '\n' ? *end : 0;
}

static size_t type_size(char type) {
    switch (type) {
    case 's': return sizeof(char *);
    case 'i': return sizeof(long long);
    case 'd': return sizeof(double);
    default: return sizeof(float);
    }
}

/* Parses the entry line p..end (end points at its '\n') into e. */
static int parse_line(mp_art_reader *r, char *p, char *end, int line, entry *e, mp_err *err) {
    char *sp = memchr(p, ' ', (size_t)(end - p));
    if (!sp || sp == p) return malformed(r, line, err, "expected '<key> <type> <count> <values>'");
    for (char *k = p; k < sp; k++)
        if (!key_byte_ok((unsigned char)*k))
            return malformed(r, line, err, "control character in a key");
    char type = sp[1];
    if (end - sp < 4 || type == '\0' || !strchr("sidf", type) || sp[2] != ' ')
        return malformed(r, line, err, "bad type (expected s, i, d or f)");
    *sp = '\0';
    e->key = p;
    e->type = type;
    e->line = line;
    /* The count: plain decimal, no sign, no leading zero. */
    char *q = sp + 3;
    size_t count = 0;
    if (!(*q >= '0' && *q <= '9') || (q[0] == '0' && q[1] >= '0' && q[1] <= '9'))
        return malformed(r, line, err, "bad value count");
    for (; *q >= '0' && *q <= '9'; q++) {
        if (count > (SIZE_MAX - 9) / 10) return malformed(r, line, err, "bad value count");
        count = count * 10 + (size_t)(*q - '0');
    }
    if (count == 0) {
        if (q != end) return malformed(r, line, err, "values after a count of 0");
        return MP_OK;
    }
    if (*q != ' ') return malformed(r, line, err, "bad value count");
    q++;
    /* n values need at least 2n - 1 bytes: refuse a count the line cannot
     * hold before allocating for it. */
    if (count > ((size_t)(end - q) + 1) / 2)
        return malformed(r, line, err, "fewer values than the count says");
    void *values = mp_malloc(mp_mul_size(count, type_size(type)));
    if (!values) return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", r->path);
    e->values = values;     /* freed with the reader, also on failure below */
    for (size_t i = 0; i < count; i++) {
        char sep = type == 's' ? decode_str(&q, &((char **)values)[i])
                               : parse_number(type, &q, values, i);
        if (sep == 0) {
            char what[128];
            snprintf(what, sizeof what, "bad value #%zu of '%s'", i + 1, e->key);
            return malformed(r, line, err, what);
        }
        if ((i + 1 < count) != (sep == ' ') || (sep == '\n' && q != end))
            return malformed(r, line, err, i + 1 < count ? "fewer values than the count says"
                                                         : "more values than the count says");
        q++;
    }
    e->count = count;
    return MP_OK;
}

static int entry_cmp(const void *a, const void *b) {
    return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

/* Checks the magic line; *body gets the first byte after it. */
static int check_magic(const mp_art_reader *r, size_t len, char **body, mp_err *err) {
    char *p = r->buf;
    if (len < 7 || memcmp(p, "MLPM ", 5) != 0 || !(p[5] >= '0' && p[5] <= '9'))
        return MP_ERR(err, MP_E_PARSE, "'%s' is not an mlpipe model file", r->path);
    size_t nd = 0;
    long long version = 0;
    while (5 + nd < len && p[5 + nd] >= '0' && p[5 + nd] <= '9') {
        if (version < 1000000000) version = version * 10 + (p[5 + nd] - '0');
        nd++;
    }
    if (5 + nd >= len || p[5 + nd] != '\n' || version == 0)
        return MP_ERR(err, MP_E_PARSE, "'%s' is not an mlpipe model file", r->path);
    if (version > MP_ART_VERSION)
        return MP_ERR(err, MP_E_PARSE,
                      "'%s' has model format version %.*s; this mlpipe reads version %d "
                      "(upgrade mlpipe)",
                      r->path, (int)nd, p + 5, MP_ART_VERSION);
    *body = p + 5 + nd + 1;
    return MP_OK;
}

/* Finds the checksum line and checks it against the bytes above it; also
 * fills r->sha256 (the whole file).  *content_end gets the trailer's start. */
static int check_trailer(mp_art_reader *r, size_t len, const char *body, char **content_end,
                         mp_err *err) {
    char *buf = r->buf;
    if (len < TRAILER_LEN || buf[len - 1] != '\n' || (size_t)(buf + len - body) < TRAILER_LEN)
        return MP_ERR(err, MP_E_PARSE, "'%s' is truncated (no checksum line)", r->path);
    char *t = buf + len - TRAILER_LEN;
    if (t[-1] != '\n' || memcmp(t, CHECKSUM_TAG, TAG_LEN) != 0)
        return MP_ERR(err, MP_E_PARSE, "'%s' is truncated (no checksum line)", r->path);
    for (size_t i = 0; i < 64; i++) {
        char c = t[TAG_LEN + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return MP_ERR(err, MP_E_PARSE, "'%s' is corrupted (bad checksum line)", r->path);
    }
    EVP_MD_CTX *md = EVP_MD_CTX_new(), *full = EVP_MD_CTX_new();
    if (!md || !full || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(md);
        EVP_MD_CTX_free(full);
        return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", r->path);
    }
    /* One pass over the content gives both digests: the trailer's, and (with
     * the trailer added to a copy) the whole file's. */
    char content[65];
    EVP_DigestUpdate(md, buf, (size_t)(t - buf));
    int ok = EVP_MD_CTX_copy_ex(full, md);
    md_hex(md, content);
    if (ok == 1) {
        EVP_DigestUpdate(full, t, TRAILER_LEN);
        md_hex(full, r->sha256);
    }
    EVP_MD_CTX_free(md);
    EVP_MD_CTX_free(full);
    if (ok != 1) return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", r->path);
    if (memcmp(content, t + TAG_LEN, 64) != 0)
        return MP_ERR(err, MP_E_PARSE, "'%s' is corrupted (checksum mismatch)", r->path);
    *content_end = t;
    return MP_OK;
}

int mp_art_reader_open(const char *path, mp_art_reader **out, mp_err *err) {
    mp_art_reader *r = mp_calloc(1, sizeof *r);
    if (!r || !(r->path = mp_strdup(path))) {
        mp_free(r);
        return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", path);
    }
    size_t len = 0;
    char *body = NULL, *end = NULL;
    if (mp_read_file(path, &r->buf, &len, err) != MP_OK) goto fail;
    if (check_magic(r, len, &body, err) != MP_OK) goto fail;
    if (check_trailer(r, len, body, &end, err) != MP_OK) goto fail;

    size_t n_lines = 0;
    for (char *p = body; p < end; p++) n_lines += *p == '\n';
    if (!(r->ents = mp_calloc(n_lines ? n_lines : 1, sizeof *r->ents))) {
        MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", path);
        goto fail;
    }
    int line = 2;                           /* line 1 is the magic */
    for (char *p = body; p < end; line++) {
        char *nl = memchr(p, '\n', (size_t)(end - p));  /* found: end[-1] is '\n' */
        entry *e = &r->ents[r->n_ents++];
        if (parse_line(r, p, nl, line, e, err) != MP_OK) goto fail;
        p = nl + 1;
    }
    qsort(r->ents, r->n_ents, sizeof *r->ents, entry_cmp);
    for (size_t i = 1; i < r->n_ents; i++)
        if (strcmp(r->ents[i - 1].key, r->ents[i].key) == 0) {
            int l = r->ents[i].line > r->ents[i - 1].line ? r->ents[i].line : r->ents[i - 1].line;
            char what[300];
            snprintf(what, sizeof what, "duplicate key '%s'", r->ents[i].key);
            malformed(r, l, err, what);
            goto fail;
        }
    *out = r;
    return MP_OK;
fail:
    mp_art_reader_free(r);
    return err->code;
}

/* ---------------------------------------------------------------- get_* */

static const entry *find(const mp_art_reader *r, const char *key) {
    entry probe = { .key = key };
    return bsearch(&probe, r->ents, r->n_ents, sizeof *r->ents, entry_cmp);
}

bool mp_art_has(mp_art_reader *r, const char *key) { return find(r, key) != NULL; }

static const char *type_name(char type) {
    return type == 's' ? "string" : type == 'i' ? "integer" : type == 'd' ? "double" : "float";
}

/* The entry for key if it has this type and (unless any_count) n values;
 * otherwise MP_E_PARSE naming the key, what was expected and what was found. */
static const entry *lookup(mp_art_reader *r, const char *key, char type, size_t n,
                           bool any_count, mp_err *err) {
    const entry *e = find(r, key);
    if (!e) {
        MP_ERR(err, MP_E_PARSE, "'%s': missing key '%s'", r->path, key);
        return NULL;
    }
    if (e->type == type && (any_count || e->count == n)) return e;
    /* "holds 3 doubles, expected 4 floats" / "expected strings" */
    char want[64];
    if (any_count) snprintf(want, sizeof want, "%ss", type_name(type));
    else snprintf(want, sizeof want, "%zu %s%s", n, type_name(type), n == 1 ? "" : "s");
    MP_ERR(err, MP_E_PARSE, "'%s': key '%s' holds %zu %s%s, expected %s", r->path, key,
           e->count, type_name(e->type), e->count == 1 ? "" : "s", want);
    if (err) mp_err_where(err, "%s:%d", r->path, e->line);
    return NULL;
}

int mp_art_get_str(mp_art_reader *r, const char *key, const char **out, mp_err *err) {
    const entry *e = lookup(r, key, 's', 1, false, err);
    if (!e) return MP_E_PARSE;
    *out = ((char **)e->values)[0];
    return MP_OK;
}

int mp_art_get_strs(mp_art_reader *r, const char *key, char ***out, size_t *n, mp_err *err) {
    const entry *e = lookup(r, key, 's', 0, true, err);
    if (!e) return MP_E_PARSE;
    char **v = mp_calloc(e->count ? e->count : 1, sizeof *v);
    if (!v) return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", r->path);
    for (size_t i = 0; i < e->count; i++)
        if (!(v[i] = mp_strdup(((char **)e->values)[i]))) {
            for (size_t j = 0; j < i; j++) mp_free(v[j]);
            mp_free(v);
            return MP_ERR(err, MP_E_NOMEM, "out of memory reading '%s'", r->path);
        }
    *out = v;
    *n = e->count;
    return MP_OK;
}

int mp_art_get_int(mp_art_reader *r, const char *key, long long *out, mp_err *err) {
    const entry *e = lookup(r, key, 'i', 1, false, err);
    if (!e) return MP_E_PARSE;
    *out = ((long long *)e->values)[0];
    return MP_OK;
}

int mp_art_get_double(mp_art_reader *r, const char *key, double *out, mp_err *err) {
    return mp_art_get_doubles(r, key, out, 1, err);
}

int mp_art_get_floats(mp_art_reader *r, const char *key, float *dst, size_t n, mp_err *err) {
    const entry *e = lookup(r, key, 'f', n, false, err);
    if (!e) return MP_E_PARSE;
    if (n) memcpy(dst, e->values, n * sizeof *dst);
    return MP_OK;
}

int mp_art_get_doubles(mp_art_reader *r, const char *key, double *dst, size_t n, mp_err *err) {
    const entry *e = lookup(r, key, 'd', n, false, err);
    if (!e) return MP_E_PARSE;
    if (n) memcpy(dst, e->values, n * sizeof *dst);
    return MP_OK;
}

bool mp_art_key(char *buf, size_t size, const char *module, const char *prefix, const char *name,
                int code, mp_err *err) {
    int n = snprintf(buf, size, "%s%s", prefix, name);
    if (n < 0 || (size_t)n >= size) {
        MP_ERR(err, code, "%s: model key prefix '%s' is too long", module, prefix);
        return false;
    }
    return true;
}
