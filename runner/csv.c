/*
 * csv.c -- delimited text (CSV, TSV ...) -> mp_dataset, with libcsv underneath.
 *
 * Two splitters feed the same two callbacks, on_field (once per cell) and
 * on_row (once per record end).  The file is read in 1 MiB blocks of whole
 * lines.  A run of lines without a quote character goes to parse_plain, which
 * splits them itself, exactly as libcsv would, straight from the block (no
 * copy, no call per byte); a line with a quote, and every line while a quoted
 * cell spans lines, goes to libcsv.  The two only ever switch between records,
 * so the callbacks cannot tell them apart.  Each feature cell is parsed into
 * its slot of the growing row-major float array, so a cell costs no
 * allocation; the arrays grow geometrically.  Numbers are read by our own
 * parser (short decimals eight characters at a time, exact float and double
 * fast paths, strtof for the rest), which gives strtof's bits several times
 * faster.  A big regular file is read by two threads, each parsing about half
 * (see "two threads").  Nothing holds the whole file.
 *
 * We count lines ourselves (libcsv tells no positions).  With CSV_REPALL_NL
 * every unquoted CR and LF ends a (possibly empty) record, and the callback
 * gets that character: a '\n' or a lone '\r' ends one physical line, the '\n'
 * of a CRLF (an empty record right after a '\r') does not.  Newlines inside
 * quoted cells arrive as cell text and are counted there.  So `line` always
 * holds the line on which the record being read started, which is what every
 * message names; the column is the 1-based field number.
 *
 * Roles of the header's columns are settled once, at the end of the header
 * record: each column is a feature (index into the row), the target, or
 * skipped.  The target's cells are kept as strings in one pool (plus their
 * numeric value while all of them are numbers) until the end, when the
 * target becomes either a regression vector or class indices.
 */
#include "csv.h"

#include <csv.h>                /* libcsv (the Makefile puts runner/ on the quote path only) */

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined __SSE2__
#include <emmintrin.h>
#endif

#include "progress.h"

#define BLOCK_SIZE  (1u << 20)  /* bytes per fread: large, so syscalls are rare */
#define ENTRY_SIZE  (1u << 16)  /* libcsv's cell buffer, allocated by us (below) */
#define FIRST_ROWS  64          /* initial row capacity; doubles from there */
#define SLOW_MAX    255         /* longest number text handed to strtof */
#define VALUE_SHOW  40          /* bytes of a bad cell quoted in a message */

/* Role of a header column: a feature index (< n_feat) or one of these. */
#define ROLE_SKIP    SIZE_MAX
#define ROLE_TARGET  (SIZE_MAX - 1)
#define ROLE_EXCLUDE (SIZE_MAX - 2)     /* only while roles are being settled */
#define NO_COLUMN    SIZE_MAX

/* ------------------------------------------------------------ numbers */

static inline bool is_blank(char c) { return c == ' ' || c == '\t'; }
static inline bool is_digit(char c) { return (unsigned char)(c - '0') < 10; }

/*
 * The fast path below is exact only when float arithmetic is done in float
 * (FLT_EVAL_METHOD 0, as on x86-64 SSE and AArch64); with wider intermediates
 * the product would be rounded twice.
 */
#if defined FLT_EVAL_METHOD && FLT_EVAL_METHOD == 0
#define FAST_FLOAT 1
#else
#define FAST_FLOAT 0
#endif

/* 10^0 .. 10^10 are exact floats: 10^10 = 2^10 * 5^10 and 5^10 < 2^24. */
static const float pow10f_exact[] = { 1e0f, 1e1f, 1e2f, 1e3f, 1e4f, 1e5f,
                                      1e6f, 1e7f, 1e8f, 1e9f, 1e10f };
/* 10^0 .. 10^22 are exact doubles: 5^22 < 2^53. */
static const double pow10d_exact[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
                                       1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
                                       1e20, 1e21, 1e22 };
static const uint64_t pow10_u64[] = { 1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL,
    1000000ULL, 10000000ULL, 100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL,
    1000000000000ULL, 10000000000000ULL, 100000000000000ULL, 1000000000000000ULL,
    10000000000000000ULL, 100000000000000000ULL, 1000000000000000000ULL,
    10000000000000000000ULL };
#define FLOAT_MANT ((uint64_t)1 << 24)  /* every integer up to 2^24 is an exact float */
#define DOUBLE_MANT ((uint64_t)1 << 53) /* ... up to 2^53 an exact double */

/*
 * strtof on a NUL-terminated copy of s[0..len), which is already trimmed of
 * blanks.  strtof would skip other leading white space ('\n', '\r' ...); we do
 * not accept it.  The C locale is assumed (mlpipe never calls setlocale), so
 * the decimal point is '.'.
 */
static bool parse_float_slow(const char *s, size_t len, float *out) {
    char buf[SLOW_MAX + 1];
    if (len == 0 || len > SLOW_MAX || isspace((unsigned char)s[0])) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    float v = strtof(buf, &end);    /* overflow gives inf, underflow the rounded tiny value */
    if (end != buf + len) return false;
    *out = v;
    return true;
}

/*
 * Plain decimals ([sign] digits [. digits] [e [sign] digits]) are read as an
 * integer m of significant digits (at most 19) and a power of ten e, with
 * trailing zeros folded into e ("1.500000" is 15e-1).  Then, in this order:
 *  1. m <= 2^24 and |e| <= 10: m and 10^|e| are exact floats, so one IEEE
 *     float multiplication or division gives the exactly rounded result.
 *  2. m <= 2^53 and |e| <= 22: the same in double gives d, the exactly
 *     rounded double (Clinger's fast path).  Rounding d to float is right
 *     unless d lies exactly halfway between two floats: every such halfway
 *     point is a double, so if the true value were on the other side of one,
 *     that point would be nearer to it than d.  The halfway case goes to
 *     strtof.
 *  3. everything else: strtof.
 * So the result always has the bits strtof gives.
 */
static bool parse_float_general(const char *s, size_t len, float *out) {
    const char *p = s, *end = s + len;
    while (p < end && is_blank(*p)) p++;
    while (end > p && is_blank(end[-1])) end--;
    const char *start = p;
    if (!FAST_FLOAT || end - p > 64) goto slow;   /* keeps every counter below small */

    bool neg = false;
    if (p < end && (*p == '-' || *p == '+')) neg = *p++ == '-';
    uint64_t m = 0;             /* significant digits seen, without trailing zeros */
    int nd = 0;                 /* digits in m */
    int zeros = 0;              /* zeros seen after the last nonzero digit */
    int e = 0;                  /* power of ten applied to m * 10^zeros */
    bool any = false, dot = false;
    for (; p < end; p++) {
        char c = *p;
        if (is_digit(c)) {
            any = true;
            if (dot) e--;
            if (c == '0') {
                if (m) zeros++;         /* a leading zero adds nothing */
                continue;
            }
            nd += zeros + 1;
            if (nd > 19) goto slow;     /* m < 10^19 < 2^64 below */
            m = m * pow10_u64[zeros + 1] + (uint64_t)(c - '0');
            zeros = 0;
        } else if (c == '.' && !dot) {
            dot = true;
        } else {
            break;
        }
    }
    if (!any) goto slow;
    e += zeros;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        bool eneg = false;
        if (p < end && (*p == '-' || *p == '+')) eneg = *p++ == '-';
        if (p == end || !is_digit(*p)) goto slow;
        int x = 0;
        for (; p < end && is_digit(*p); p++)
            if (x < 10000) x = x * 10 + (*p - '0');
        e += eneg ? -x : x;
    }
    if (p != end) goto slow;
    float f;
    if (m == 0) {
        f = 0.0f;
    } else if (m <= FLOAT_MANT && e >= -10 && e <= 10) {
        f = (float)m;
        f = e >= 0 ? f * pow10f_exact[e] : f / pow10f_exact[-e];
    } else if (m <= DOUBLE_MANT && e >= -22 && e <= 22) {
        double d = (double)m;
        d = e >= 0 ? d * pow10d_exact[e] : d / pow10d_exact[-e];
        /* 1e-22 <= d < 2^53 * 1e22 < 2^127: always a normal float, whose
         * halfway points are the doubles with the bit pattern tested here */
        uint64_t bits;
        memcpy(&bits, &d, sizeof bits);
        /* the 29 mantissa bits a float drops are exactly 100...0: halfway */
        if ((bits & 0x1fffffffULL) == 0x10000000ULL) goto slow;
        f = (float)d;
    } else {
        goto slow;
    }
    *out = neg ? -f : f;
    return true;
slow:
    return parse_float_slow(start, (size_t)(end - start), out);
}

/*
 * The commonest cells of all, short plain decimals ("0", "255", "-0.5",
 * "0.00392157": an optional '-', digits with at most one '.' among them), are
 * read by scan_short from p up to the first other character or end.  With m
 * the digits read as one integer and k the number of digits after the dot,
 * m <= 2^24 and k <= 10 make m and 10^k exact floats, so the one IEEE division
 * m / 10^k is the exactly rounded value, strtof's bits.  (Going through double
 * instead would round twice; a division done in double or x87 precision and
 * then rounded to float is still exact, as 53 >= 2 * 24 + 2 bits make the
 * second rounding harmless for one operation.)  At most 19 digits are taken,
 * so m cannot wrap around before it is checked.  Returns the end of the
 * number, or NULL when it is not such a decimal (no digit, too many,
 * m > 2^24 or k > 10); whatever follows the number (an exponent, a blank) is
 * for the caller to judge.
 */
static inline const char *scan_short(const char *p, const char *end, float *out) {
    bool neg = p < end && *p == '-';
    p += neg;
    const char *first = p;
    uint64_t m = 0;
    while (p < end && is_digit(*p)) m = m * 10 + (uint64_t)(*p++ - '0');
    size_t n_int = (size_t)(p - first), k = 0;
    if (p < end && *p == '.') {
        const char *frac = ++p;
        while (p < end && is_digit(*p)) m = m * 10 + (uint64_t)(*p++ - '0');
        k = (size_t)(p - frac);
    }
    if (n_int + k - 1 >= 19 || k > 10 || m > FLOAT_MANT) return NULL;  /* also no digit */
    float f = (float)m;
    if (k) f /= pow10f_exact[k];
    *out = neg ? -f : f;
    return p;
}

/*
 * Eight characters at a time (SIMD within a register) for parse_plain, which
 * may read its buffer up to PAD bytes past the text.  Byte j of a word loaded
 * by load8 is p[j], whatever the byte order.  The masks below set the high bit
 * of each byte that passes a test; the arithmetic never carries from one byte
 * into the next, so a byte's result never depends on its neighbours.
 */
#define PAD 64                  /* readable bytes past the text given to parse_plain */

static inline uint64_t load8(const char *p) {
    uint64_t w;
    memcpy(&w, p, sizeof w);    /* one unaligned load */
#if defined __BYTE_ORDER__ && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;                   /* p[0] in the low byte */
}

/* The high bit of each byte of x that is 0 (exact: no carry between bytes). */
static inline uint64_t zero_bytes(uint64_t x) {
    return ~(((x & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL) | x) & 0x8080808080808080ULL;
}

#define ONES 0x0101010101010101ULL      /* times a character: it in every byte */

/* The high bit of each byte of w that is not an ASCII digit (no carry between bytes). */
static inline uint64_t nondigits(uint64_t w) {
    uint64_t x = w ^ 0x3030303030303030ULL;    /* digits become 0..9 */
    return (((x & 0x7f7f7f7f7f7f7f7fULL) + 0x7676767676767676ULL) | x) & 0x8080808080808080ULL;
}

/* The value of the first n (0..8) characters of w, all digits. */
static inline uint64_t digits_value(uint64_t w, unsigned n) {
    unsigned half = 4 * (8 - n);                /* two shifts, so n = 0 shifts by 64 safely */
    w = ((w & 0x0f0f0f0f0f0f0f0fULL) << half) << half;  /* leading zeros in the low bytes */
    w = (w * 10 + (w >> 8)) & 0x00ff00ff00ff00ffULL;     /* pairs of digits */
    w = (w * 100 + (w >> 16)) & 0x0000ffff0000ffffULL;   /* groups of four */
    return (w * 10000 + (w >> 32)) & 0xffffffffULL;
}

/*
 * The cell p[0..len), whose end parse_plain already knows, as a short decimal:
 * an optional '-', then at most 8 characters that are digits and at most one
 * '.', taken as one word.  Drops the dot by moving the fraction digits down a
 * byte, then converts.  Longer cells go to scan_short.
 */
static inline bool parse_cell(const char *p, size_t len, float *out) {
    if (len == 1 && is_digit(*p)) {             /* "0" above all, in sparse data */
        *out = (float)(*p - '0');
        return true;
    }
    uint64_t w = load8(p);
    unsigned neg = (w & 0xff) == '-';
    if (neg) {
        w = load8(p + 1);
        len--;
    }
    if (len - 1 >= 8) {                         /* not 1 <= len <= 8 */
        const char *e = p + neg + len;
        return len && scan_short(p, e, out) == e;
    }
    uint64_t keep = ~0ULL >> (64 - 8 * len);    /* the cell's bytes */
    uint64_t high = keep & 0x8080808080808080ULL;
    w &= keep;
    uint64_t dot = zero_bytes(w ^ ONES * '.') & high;
    if ((nondigits(w) & high & ~dot) || (dot & (dot - 1))) return false;
    unsigned has_dot = dot != 0;
    /* j: the dot's byte, or len when there is none */
    unsigned j = has_dot ? (unsigned)__builtin_ctzll(dot) >> 3 : (unsigned)len;
    uint64_t below = ((1ULL << 4 * j) << 4 * j) - 1;    /* bytes 0 .. j-1; all when j = 8 */
    w = (w & below) | ((w >> 8) & ~below);      /* the digits, without the dot */
    unsigned n = (unsigned)len - has_dot, k = has_dot ? (unsigned)len - 1 - j : 0;
    uint64_t m = digits_value(w, n);
    if (n == 0 || m > FLOAT_MANT) return false;
    float f = (float)m / pow10f_exact[k];       /* k <= 7; 10^0 = 1 divides exactly */
    *out = neg ? -f : f;
    return true;
}

bool mp_csv_parse_float(const char *s, size_t len, float *out) {
    float v;                    /* scan_short may write before it sees what follows */
    const char *e = len ? scan_short(s, s + len, &v) : NULL;
    if (e && e == s + len) {
        *out = v;
        return true;
    }
    return parse_float_general(s, len, out);
}

/* The cell spellings of a missing value (after trimming blanks). */
static bool is_missing(const char *s, size_t len) {
    while (len && is_blank(*s)) s++, len--;
    while (len && is_blank(s[len - 1])) len--;
    switch (len) {
    case 0: return true;
    case 1: return s[0] == '?';
    case 2: return memcmp(s, "NA", 2) == 0;
    case 3: return memcmp(s, "NaN", 3) == 0 || memcmp(s, "nan", 3) == 0 ||
                   memcmp(s, "NAN", 3) == 0;
    default: return false;
    }
}

bool mp_csv_parse_delimiter(const char *name, char *out) {
    static const struct { const char *word; char c; } words[] = {
        { "tab", '\t' }, { "\\t", '\t' }, { "semicolon", ';' }, { "comma", ',' },
        { "pipe", '|' }, { "space", ' ' },
    };
    if (!name) return false;
    for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
        if (strcmp(name, words[i].word) == 0) {
            *out = words[i].c;
            return true;
        }
    }
    if (name[0] == '\0' || name[1] != '\0') return false;
    if (name[0] == '"' || name[0] == '\r' || name[0] == '\n') return false;
    *out = name[0];
    return true;
}

void mp_csv_opts_init(mp_csv_opts *o) {
    memset(o, 0, sizeof *o);
    o->delimiter = ',';
    o->missing = MP_MISSING_ERROR;
}

/* ------------------------------------------------------------ reader state */

typedef struct reader {
    const char        *name;        /* file name in messages ("<stdin>" for "-") */
    const mp_csv_opts *o;
    mp_err            *err;
    bool               failed;      /* err is set: later callbacks do nothing */
    bool               fast;        /* reading data rows and no error: on_field's hot path */
    bool               space_runs;  /* delimiter ' ': empty unquoted cells are not cells */
    char               delim;       /* the cell delimiter */

    /* position */
    size_t  line;           /* 1-based line on which the current record started */
    size_t  rec_nl;         /* newlines inside quoted cells of the current record */
    int     last_term;      /* the character that ended the previous record */
    size_t  field;          /* cells seen so far in the current record */

    /* header */
    bool    in_header;      /* still waiting for the header record */
    size_t  hdr_line;       /* its line */
    char  **hdr;            /* n_hdr column names, owned */
    size_t  n_hdr, cap_hdr;
    size_t *by_name;        /* n_hdr column indices sorted by (name, index) */
    size_t *role;           /* n_hdr roles: feature index, ROLE_TARGET, ROLE_SKIP */
    size_t *feat_col;       /* n_feat header columns of the features, in order */
    size_t  n_feat;
    size_t  target_col;     /* NO_COLUMN when there is no target */

    /* rows: slot n_rows of each array is the row being read; it is allocated
     * ahead, as soon as the header or the previous row is complete */
    float  *X;              /* cap_rows * n_feat, row-major */
    float  *row;            /* X + n_rows * n_feat: the row being read */
    size_t *src_rows;       /* cap_rows line numbers */
    double *y;              /* cap_rows target values (with a target) */
    size_t *tgt_off;        /* cap_rows offsets of the target strings in pool */
    size_t  n_rows, cap_rows;
    char   *pool;           /* target strings, each NUL-terminated */
    size_t  pool_len, pool_cap, pool_mark;
    bool    y_numeric;      /* every kept target cell so far is a finite number */
    bool    row_nonnum;     /* the current row's target is not a finite number */
    bool    row_missing;    /* the current row has a missing cell (drop mode) */
    size_t  n_dropped;

    /* two threads (see "two threads" below) */
    size_t  file_size;      /* bytes of a regular file; 0 for a pipe */
    struct worker *w;       /* main thread: the worker parsing the second part, or NULL */
    bool    worker;         /* this is the worker's reader: it allocates nothing */
    bool    full;           /* worker: its share of the rows is full */
} reader;

/*
 * Sets the error (first one wins), with where = "FILE", "FILE:LINE" or
 * "FILE:LINE:COL" (line or col 0 = leave out), and stops the reader.
 */
__attribute__((format(printf, 6, 7)))
static int fail(reader *r, int code, int src_line, size_t line, size_t col,
                const char *fmt, ...) {
    char msg[sizeof r->err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->err->code == MP_OK) {
        mp_err_set(r->err, code, __FILE__, src_line, "%s", msg);
        if (line && col) mp_err_where(r->err, "%s:%zu:%zu", r->name, line, col);
        else if (line) mp_err_where(r->err, "%s:%zu", r->name, line);
        else mp_err_where(r->err, "%s", r->name);
    }
    r->failed = true;
    r->fast = false;
    return r->err->code;
}
#define FAIL(r, code, line, col, ...) fail((r), (code), __LINE__, (line), (col), __VA_ARGS__)

static int fail_nomem(reader *r) {
    return FAIL(r, MP_E_NOMEM, 0, 0, "out of memory reading '%s'", r->name);
}

/* A cell's text made safe to quote in a message: short, no control characters. */
static void show_value(char *out, size_t cap, const char *s, size_t len) {
    size_t n = len < VALUE_SHOW ? len : VALUE_SHOW, k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        out[k++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    out[k] = '\0';
    if (len > n && k + 4 < cap) strcpy(out + k, "...");
}

static size_t count_newlines(const char *s, size_t len) {
    size_t n = 0;
    const char *p = s, *end = s + len;
    while (p < end && (p = memchr(p, '\n', (size_t)(end - p)))) n++, p++;
    return n;
}

static void trim(const char **s, size_t *len) {
    while (*len && is_blank(**s)) (*s)++, (*len)--;
    while (*len && is_blank((*s)[*len - 1])) (*len)--;
}

static bool grow_rows(reader *r);

/* ------------------------------------------------------------ header */

static void header_field(reader *r, const char *s, size_t len) {
    r->rec_nl += count_newlines(s, len);
    if (r->n_hdr == r->cap_hdr) {
        size_t cap = r->cap_hdr ? r->cap_hdr * 2 : 64;
        char **v = cap > SIZE_MAX / 2 ? NULL : mp_realloc(r->hdr, mp_mul_size(cap, sizeof *v));
        if (!v) {
            fail_nomem(r);
            return;
        }
        r->hdr = v;
        r->cap_hdr = cap;
    }
    trim(&s, &len);
    char unnamed[32];
    if (len == 0) {             /* e.g. the index column pandas writes: give it a name */
        len = (size_t)snprintf(unnamed, sizeof unnamed, "column_%zu", r->n_hdr + 1);
        s = unnamed;
    }
    char *name = mp_malloc(len + 1);
    if (!name) {
        fail_nomem(r);
        return;
    }
    memcpy(name, s, len);
    name[len] = '\0';
    r->hdr[r->n_hdr++] = name;
}

static int cmp_name(const void *a, const void *b, void *arg) {
    char *const *hdr = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    int c = strcmp(hdr[i], hdr[j]);
    return c ? c : (i > j) - (i < j);
}

/* Index of the column called name (the first, if there were duplicates), or NO_COLUMN. */
static size_t find_column(const reader *r, const char *name) {
    size_t lo = 0, hi = r->n_hdr;       /* lower bound over by_name */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(r->hdr[r->by_name[mid]], name) < 0) lo = mid + 1;
        else hi = mid;
    }
    if (lo < r->n_hdr && strcmp(r->hdr[r->by_name[lo]], name) == 0) return r->by_name[lo];
    return NO_COLUMN;
}

/* Levenshtein distance, or SIZE_MAX when either string is too long to bother. */
static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), row[65];
    if (la > 64 || lb > 64) return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* "no column 'x' in 'f.csv' (did you mean 'y'?)", or with the list of columns. */
static int fail_no_column(reader *r, const char *name) {
    size_t best = NO_COLUMN, best_d = SIZE_MAX, n = strlen(name);
    for (size_t i = 0; i < r->n_hdr; i++) {
        size_t d = edit_distance(name, r->hdr[i]);
        if (d < best_d) best_d = d, best = i;
    }
    if (best != NO_COLUMN && best_d <= (n / 3 > 2 ? n / 3 : 2))
        return FAIL(r, MP_E_DATA, r->hdr_line, 0, "no column '%s' in '%s' (did you mean '%s'?)",
                    name, r->name, r->hdr[best]);
    char list[300];
    size_t k = 0, i = 0;
    for (; i < r->n_hdr; i++) {
        size_t need = strlen(r->hdr[i]) + 2;
        if (k + need + 8 > sizeof list) break;
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", r->hdr[i]);
    }
    if (i < r->n_hdr) snprintf(list + k, sizeof list - k, ", ...");
    return FAIL(r, MP_E_DATA, r->hdr_line, 0, "no column '%s' in '%s' (columns: %s)", name,
                r->name, list);
}

/* Settles each column's role from the options, once the header is complete. */
static void finish_header(reader *r) {
    const mp_csv_opts *o = r->o;
    size_t n = r->n_hdr;
    r->in_header = false;
    r->by_name = mp_malloc(mp_mul_size(n, sizeof *r->by_name));
    r->role = mp_malloc(mp_mul_size(n, sizeof *r->role));
    if (!r->by_name || !r->role) {
        fail_nomem(r);
        return;
    }

    /* Duplicate names: sorted by (name, index), equal names are neighbours. */
    for (size_t i = 0; i < n; i++) r->by_name[i] = i;
    qsort_r(r->by_name, n, sizeof *r->by_name, cmp_name, r->hdr);
    size_t dup = NO_COLUMN;
    for (size_t i = 1; i < n; i++)
        if (strcmp(r->hdr[r->by_name[i]], r->hdr[r->by_name[i - 1]]) == 0 &&
            (dup == NO_COLUMN || r->by_name[i] < dup))
            dup = r->by_name[i];
    if (dup != NO_COLUMN) {
        FAIL(r, MP_E_DATA, r->hdr_line, dup + 1, "duplicate column name '%s' (also column %zu)",
             r->hdr[dup], find_column(r, r->hdr[dup]) + 1);
        return;
    }

    for (size_t i = 0; i < n; i++) r->role[i] = ROLE_SKIP;
    r->target_col = NO_COLUMN;
    if (o->target) {
        r->target_col = find_column(r, o->target);
        if (r->target_col != NO_COLUMN) r->role[r->target_col] = ROLE_TARGET;
        else if (!o->target_optional) {
            fail_no_column(r, o->target);
            return;
        }
    }
    for (size_t k = 0; k < o->n_exclude; k++) {
        size_t c = find_column(r, o->exclude[k]);
        if (c == NO_COLUMN) {
            fail_no_column(r, o->exclude[k]);
            return;
        }
        if (c == r->target_col) {
            FAIL(r, MP_E_DATA, r->hdr_line, 0, "target column '%s' is also listed in exclude",
                 o->exclude[k]);
            return;
        }
        r->role[c] = ROLE_EXCLUDE;
    }

    size_t n_feat = o->columns ? o->n_columns : n;
    r->feat_col = mp_malloc(mp_mul_size(n_feat ? n_feat : 1, sizeof *r->feat_col));
    if (!r->feat_col) {
        fail_nomem(r);
        return;
    }
    if (o->columns) {
        for (size_t k = 0; k < o->n_columns; k++) {
            const char *name = o->columns[k];
            size_t c = find_column(r, name);
            if (c == NO_COLUMN) {
                fail_no_column(r, name);
                return;
            }
            const char *why = c == r->target_col ? "target column '%s' is also listed in columns"
                            : r->role[c] == ROLE_EXCLUDE ? "column '%s' is listed in both columns and exclude"
                            : r->role[c] != ROLE_SKIP ? "column '%s' is listed twice in columns"
                            : NULL;
            if (why) {          /* one of the literals above, each with one %s */
                FAIL(r, MP_E_DATA, r->hdr_line, 0, why, name);
                return;
            }
            r->role[c] = k;
            r->feat_col[k] = c;
        }
        r->n_feat = o->n_columns;
    } else {
        for (size_t c = 0; c < n; c++) {
            if (r->role[c] != ROLE_SKIP) continue;
            r->role[c] = r->n_feat;
            r->feat_col[r->n_feat++] = c;
        }
    }
    for (size_t c = 0; c < n; c++)
        if (r->role[c] == ROLE_EXCLUDE) r->role[c] = ROLE_SKIP;
    if (r->n_feat == 0) {
        FAIL(r, MP_E_DATA, r->hdr_line, 0, "no feature columns in '%s'%s", r->name,
             r->target_col != NO_COLUMN ? " besides the target" : "");
        return;
    }
    r->fast = grow_rows(r);     /* the first row's slot; data rows follow */
}

/* ------------------------------------------------------------ rows */

/*
 * Asks for transparent huge pages under a big array.  Filling 200 MB of fresh
 * memory otherwise takes ~50,000 page faults, which cost as much as parsing
 * (virtual machines make each one dear).  The advice covers every page the
 * block touches, so a block that has a mapping of its own stays one mapping
 * and the next realloc can still move it with mremap.  Errors are ignored.
 */
static void advise_huge(void *p, size_t bytes) {
#ifdef MADV_HUGEPAGE
    const uintptr_t page = 4096;
    if (bytes < ((size_t)4 << 20)) return;
    uintptr_t a = (uintptr_t)p & ~(page - 1);
    uintptr_t b = ((uintptr_t)p + bytes + page - 1) & ~(page - 1);
    madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)p, (void)bytes;
#endif
}

static size_t finish_worker(reader *r, bool keep);

/* Makes every per-row array hold cap (> cap_rows) rows; main thread only. */
static bool reserve_rows(reader *r, size_t cap) {
    /* Each array is stored as soon as it grew, so a failure part-way leaks nothing. */
    float *X = mp_realloc(r->X, mp_mul_size(mp_mul_size(cap, r->n_feat), sizeof *X));
    if (!X) return fail_nomem(r), false;
    r->X = X;
    advise_huge(X, cap * r->n_feat * sizeof *X);
    size_t *src = mp_realloc(r->src_rows, mp_mul_size(cap, sizeof *src));
    if (!src) return fail_nomem(r), false;
    r->src_rows = src;
    if (r->target_col != NO_COLUMN) {
        double *y = mp_realloc(r->y, mp_mul_size(cap, sizeof *y));
        if (!y) return fail_nomem(r), false;
        r->y = y;
        size_t *off = mp_realloc(r->tgt_off, mp_mul_size(cap, sizeof *off));
        if (!off) return fail_nomem(r), false;
        r->tgt_off = off;
    }
    r->cap_rows = cap;
    r->row = r->X + r->n_rows * r->n_feat;
    return true;
}

/* Makes room for row slot n_rows in every per-row array; points r->row at it. */
static bool grow_rows(reader *r) {
    if (r->n_rows >= r->cap_rows && r->w)
        finish_worker(r, false);    /* the rows the worker fills are needed here */
    if (r->n_rows < r->cap_rows) {
        r->row = r->X + r->n_rows * r->n_feat;
        return true;
    }
    if (r->worker) {            /* the worker stops after this row */
        r->full = true;
        return false;
    }
    if (r->cap_rows > SIZE_MAX / 2) return fail_nomem(r), false;
    return reserve_rows(r, r->cap_rows ? r->cap_rows * 2 : FIRST_ROWS);
}

/* Appends a target string to the pool; its offset goes to tgt_off[n_rows]. */
static bool pool_add(reader *r, const char *s, size_t len) {
    if (len >= SIZE_MAX - r->pool_len) return fail_nomem(r), false;
    size_t need = r->pool_len + len + 1;
    if (need > r->pool_cap) {
        if (r->worker) return fail_nomem(r), false;    /* the main thread takes the row */
        size_t cap = r->pool_cap ? r->pool_cap : 4096;
        while (cap < need) {
            if (cap > SIZE_MAX / 2) return fail_nomem(r), false;
            cap *= 2;
        }
        char *p = mp_realloc(r->pool, cap);
        if (!p) return fail_nomem(r), false;
        r->pool = p;
        r->pool_cap = cap;
    }
    r->tgt_off[r->n_rows] = r->pool_len;
    memcpy(r->pool + r->pool_len, s, len);
    r->pool[r->pool_len + len] = '\0';
    r->pool_len = need;
    return true;
}

/* A missing cell in column col (0-based): an error, or the row is dropped. */
static void missing_cell(reader *r, size_t col) {
    if (r->o->missing == MP_MISSING_DROP) {
        r->row_missing = true;
        return;
    }
    FAIL(r, MP_E_PARSE, r->line, col + 1,
         "missing value in column '%s' (set missing: drop to skip such rows)", r->hdr[col]);
}

static void target_cell(reader *r, const char *s, size_t len, size_t col) {
    r->rec_nl += count_newlines(s, len);
    trim(&s, &len);
    if (is_missing(s, len)) {
        missing_cell(r, col);
        return;
    }
    if (!pool_add(r, s, len)) return;
    if (r->y_numeric) {
        double v;
        if (mp_parse_double(r->pool + r->tgt_off[r->n_rows], &v) && isfinite(v))
            r->y[r->n_rows] = v;
        else
            r->row_nonnum = true;
    }
}

/* Every cell but the commonest: header cells, targets, skipped columns, bad
 * or unusual numbers, ragged rows.  The cell's index is col. */
static void field_slow(reader *r, const char *s, size_t len, size_t col) {
    if (r->failed) return;
    if (!s) {                   /* an empty unquoted cell (CSV_EMPTY_IS_NULL) */
        if (r->space_runs) {
            r->field--;         /* runs of spaces: not a cell at all */
            return;
        }
        s = "";
    }
    if (r->in_header) {
        header_field(r, s, len);
        return;
    }
    if (col >= r->n_hdr) return;        /* a ragged row: reported at its end */

    size_t role = r->role[col];
    if (role < r->n_feat) {
        float *dst = r->row + role;
        bool ok = parse_float_general(s, len, dst);
        if (ok && isfinite(*dst)) return;
        if (is_missing(s, len)) {
            missing_cell(r, col);
            return;
        }
        char shown[VALUE_SHOW + 8];
        show_value(shown, sizeof shown, s, len);
        FAIL(r, MP_E_PARSE, r->line, col + 1, "%s value '%s' in column '%s'",
             ok ? "non-finite" : "non-numeric", shown, r->hdr[col]);
    } else if (role == ROLE_TARGET) {
        target_cell(r, s, len, col);
    } else {
        r->rec_nl += count_newlines(s, len);    /* skipped unparsed; lines still count */
    }
}

/*
 * libcsv's cell callback.  The hot path: a feature cell holding a short
 * number goes straight into its slot of the current row (r->row, which on_row
 * keeps allocated ahead), with no other test.  A number holds no newline, so
 * there is nothing to count either.
 */
static void on_field(void *cell, size_t len, void *data) {
    reader *r = data;
    size_t col = r->field++;
    if (r->fast && cell && col < r->n_hdr) {
        size_t role = r->role[col];
        const char *s = cell;
        if (role < r->n_feat && scan_short(s, s + len, r->row + role) == s + len) return;
    }
    field_slow(r, cell, len, col);
}

static void on_row(int c, void *data) {
    reader *r = data;
    size_t n = r->field, start = r->line;
    /* Advance to the line the next record starts on (see the top of the file). */
    r->line += r->rec_nl;
    if (c == '\r' || (c == '\n' && !(n == 0 && r->last_term == '\r'))) r->line++;
    r->last_term = c;
    r->field = 0;
    r->rec_nl = 0;
    bool missing = r->row_missing, nonnum = r->row_nonnum;
    r->row_missing = r->row_nonnum = false;
    if (r->failed || n == 0) return;    /* n == 0: a blank line, not a row */

    if (r->in_header) {
        r->hdr_line = start;
        finish_header(r);
        return;
    }
    if (n != r->n_hdr) {
        FAIL(r, MP_E_PARSE, start, 0, "row has %zu field%s, the header has %zu", n,
             n == 1 ? "" : "s", r->n_hdr);
        return;
    }
    if (missing) {              /* drop mode: forget the row's target string too */
        r->n_dropped++;
        r->pool_len = r->pool_mark;
        return;
    }
    if (nonnum) r->y_numeric = false;
    r->src_rows[r->n_rows++] = start;
    r->pool_mark = r->pool_len;
    grow_rows(r);               /* the next row's slot (fails the reader on OOM) */
}

/* ------------------------------------------------------------ plain lines */

/* A blank libcsv skips before a cell: ' ' or '\t', unless it is the delimiter. */
static inline bool is_pad(char c, char d) { return is_blank(c) && c != d; }

/*
 * Bit i set when p[i] (0 <= i < 64) is the delimiter d, a CR or a LF: where
 * cells end.  With SSE2 (every x86-64) 16 bytes per compare; otherwise eight
 * at a time in a word, where the multiplication gathers the high bit of byte
 * j into bit 56 + j, i.e. bit j after the shift.  (MP_CSV_PORTABLE builds the
 * latter on x86-64 too, to test it.)
 */
#if defined __SSE2__ && !defined MP_CSV_PORTABLE
static inline uint64_t cell_ends(const char *p, char d) {
    const __m128i kd = _mm_set1_epi8(d), lf = _mm_set1_epi8('\n'), cr = _mm_set1_epi8('\r');
    uint64_t m = 0;
    for (int i = 0; i < 4; i++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + 16 * i));
        __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, kd),
                                   _mm_or_si128(_mm_cmpeq_epi8(v, lf), _mm_cmpeq_epi8(v, cr)));
        m |= (uint64_t)(unsigned)_mm_movemask_epi8(hit) << (16 * i);
    }
    return m;
}
#else
static inline uint64_t cell_ends(const char *p, char d) {
    const uint64_t kd = ONES * (unsigned char)d;
    uint64_t m = 0;
    for (int i = 0; i < 8; i++) {
        uint64_t w = load8(p + 8 * i);
        uint64_t hit = zero_bytes(w ^ kd) | zero_bytes(w ^ ONES * '\n') |
                       zero_bytes(w ^ ONES * '\r');
        m |= ((hit >> 7) * 0x0102040810204080ULL >> 56) << (8 * i);
    }
    return m;
}
#endif

/*
 * Splits text without a quote character into cells and records exactly as
 * libcsv 3.0.3 does from its state between records, and hands them to the
 * same callbacks, straight from the buffer: every delimiter ends a cell and
 * every CR and every LF a record (on_row is told which); blanks (' ', '\t')
 * before a cell are skipped unless the delimiter is one of them, blanks after
 * it trimmed; an empty cell is NULL (CSV_EMPTY_IS_NULL); and a record that
 * is nothing but such blanks before its CR or LF has no cell at all.
 * s[0..end) holds whole lines (end[-1] is '\n') and may be read PAD bytes
 * past end.
 *
 * Returns end, or where the reader stopped: the start of the record in which
 * it failed (with r->line and r->last_term as they were there), or, when the
 * worker's share of the rows is full, the start of the next record.  Only
 * the worker reads on from there (see "two threads").
 *
 * Where the cells end is found first, for 64 bytes at a time, so no cell
 * waits for the one before it to be scanned: the parsing of consecutive cells
 * overlaps in the processor.  The hot path: a feature cell that is exactly a
 * short decimal is parsed into its slot of the row, and nothing else happens
 * to it.  col mirrors r->field, which is written back before any callback.
 */
static const char *parse_plain(reader *r, const char *s, const char *end) {
    const char d = r->delim;
    const char *p = s;                  /* the start of the current cell, blanks included */
    const char *rec = s;                /* the start of the current record */
    size_t col = r->field, rec_line = r->line;
    int rec_term = r->last_term;
    for (const char *blk = s; blk < end; blk += 64) {
        uint64_t m = cell_ends(blk, d);
        if (end - blk < 64) m &= ((uint64_t)1 << (end - blk)) - 1;
        for (; m; m &= m - 1) {
            const char *e = blk + __builtin_ctzll(m);
            size_t role;
            bool cell = true;
            if (col == 0 && *e != d) { /* a record's only cell: blanks alone are none */
                const char *b = p;
                while (b < e && is_pad(*b, d)) b++;
                cell = b < e;
            }
            if (!cell) {
            } else if (r->fast && col < r->n_hdr && (role = r->role[col]) < r->n_feat &&
                       parse_cell(p, (size_t)(e - p), r->row + role)) {
                col++;
            } else {
                const char *b = p, *x = e;  /* the delimiter is never among these blanks */
                while (b < x && is_pad(*b, d)) b++;
                while (x > b && is_blank(x[-1])) x--;
                r->field = col + 1;
                field_slow(r, x > b ? b : NULL, (size_t)(x - b), col);
                if (r->failed) goto failed;
                col = r->field;         /* one less for a run of spaces */
            }
            p = e + 1;
            if (*e == d) continue;
            r->field = col;
            on_row((unsigned char)*e, r);
            if (r->failed) goto failed;
            col = 0;
            rec = p;
            rec_line = r->line;
            rec_term = r->last_term;
            if (r->full) return rec;
        }
    }
    r->field = col;
    return end;
failed:
    r->line = rec_line;
    r->last_term = rec_term;
    return rec;
}

/* ------------------------------------------------------------ two threads */

/*
 * A big regular file is read by two threads.  Once the first block (header
 * included) has shown how long a row is, the rest of the file is split at the
 * first line start past its middle.  A worker thread parses the second part
 * with a reader of its own that writes straight into the same arrays, from
 * row `base` on (base leaves the main thread room for the rows expected
 * before the split, and some to spare), while the main thread reads on up to
 * the split.  There the main thread joins the worker and, if it is between
 * records, moves the worker's rows down after its own, adds its line offset to
 * their line numbers, appends its target strings, and reads on from where the
 * worker stopped: the end of the file, or the first record it did not take.
 *
 * The worker takes only what parse_plain takes from the same place, so it
 * builds what the main thread would have, and it stops, leaving the rest to
 * the main thread, at the first line holding a quote, at the first record in
 * error (so the main thread reports every error, in file order, with its line
 * and column), and when its share of the rows is full.  It allocates nothing:
 * mp_malloc is not thread-safe (its failure countdown, cmocka's allocator).
 * When the main thread is inside a quoted cell at the split, needs more rows
 * than base, or fails, the worker's rows are dropped and the main thread reads
 * the second part itself.
 */
#define PARALLEL_MIN ((size_t)8 << 20)  /* a smaller file is read by one thread */
#define SPLIT_SCAN   ((size_t)1 << 16)  /* bytes searched for a line end at the split (< BLOCK_SIZE) */

typedef struct worker {
    reader       r;         /* its reader: rows base .. base + r.cap_rows of the arrays */
    mp_err       err;       /* r's errors, never shown (the main thread meets them again) */
    int          fd;        /* the file, read with pread */
    size_t       from;      /* file offset of its first byte, just after a '\n' */
    size_t       stop;      /* file offset of the first byte it did not take */
    size_t       size;      /* file size */
    size_t       base;      /* the row of the arrays where its rows start */
    size_t       cap_all;   /* rows allocated in the arrays */
    char        *buf;       /* BLOCK_SIZE + 1 + PAD bytes */
    pthread_t    thread;
    atomic_bool  cancel;    /* its rows will be dropped: stop early */
} worker;

static void *worker_main(void *arg) {
    worker *w = arg;
    reader *r = &w->r;
    char *buf = w->buf;
    size_t off = w->from, have = 0;     /* buf[0] is the byte at file offset off */
    w->stop = w->from;
    while (!atomic_load_explicit(&w->cancel, memory_order_relaxed)) {
        ssize_t got = pread(w->fd, buf + have, BLOCK_SIZE - have, (off_t)(off + have));
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) return NULL;       /* the main thread reads it again, and reports */
        bool eof = got == 0 || off + have + (size_t)got >= w->size;
        have += (size_t)got;
        size_t n = have;                /* the whole lines in buf */
        if (eof) {
            if (have == 0) return NULL;
            if (buf[have - 1] != '\n') buf[n++] = '\n';     /* as parse_stream does */
        } else {
            const char *last = memrchr(buf, '\n', have);
            if (!last && have < BLOCK_SIZE) continue;
            if (!last) return NULL;     /* a line longer than a block */
            n = (size_t)(last + 1 - buf);
        }
        const char *q = memchr(buf, '"', n), *end = buf + n;
        if (q) {                        /* the main thread takes it from that line on */
            const char *nl = memrchr(buf, '\n', (size_t)(q - buf));
            end = nl ? nl + 1 : buf;
        }
        const char *stop = end > buf ? parse_plain(r, buf, end) : buf;
        w->stop = off + (size_t)(stop - buf);
        if (w->stop > w->size) w->stop = w->size;   /* our own final '\n' */
        if (r->failed || r->full || stop != buf + n || eof) return NULL;  /* full: maybe at n */
        memmove(buf, buf + n, have - n);
        off += n;
        have -= n;
    }
    return NULL;
}

/*
 * Called by the main thread once it has parsed the first `done` bytes of the
 * file and read `pos`: starts a worker on the second part of the rest.
 * Returns the split (the file offset the main thread must stop reading at),
 * or SIZE_MAX when one thread reads on alone.  Fails the reader only on OOM.
 */
static size_t start_worker(reader *r, FILE *f, size_t done, size_t pos) {
    size_t seen = r->n_rows + r->n_dropped;
    if (r->failed || r->in_header || r->file_size < PARALLEL_MIN || !seen || !done ||
        pos >= r->file_size)
        return SIZE_MAX;
    worker *w = mp_calloc(1, sizeof *w);
    char *buf = w ? mp_calloc(1, BLOCK_SIZE + 1 + PAD) : NULL;   /* zeroed: the padding is read */
    char *pool = NULL;
    if (!buf) goto nomem;

    /* The split: the first line start past the middle of what is left. */
    int fd = fileno(f);
    size_t mid = pos + (r->file_size - pos) / 2;
    ssize_t got = pread(fd, buf, SPLIT_SCAN, (off_t)mid);
    const char *nl = got > 0 ? memchr(buf, '\n', (size_t)got) : NULL;
    if (!nl) goto alone;
    size_t split = mid + (size_t)(nl - buf) + 1;
    if (split >= r->file_size) goto alone;

    /* Rows expected before and after the split, from the rows per byte so far. */
    double per_byte = (double)seen / (double)done;
    double most = (double)r->file_size / (double)r->n_hdr + FIRST_ROWS;   /* a cell takes a byte */
    double before = (double)r->n_rows + per_byte * (double)(split - done) * 1.05 + FIRST_ROWS;
    double after = per_byte * (double)(r->file_size - split) * 1.05 + FIRST_ROWS;
    if (before > most) before = most;
    if (after > most) after = most;
    size_t base = (size_t)before, cap = (size_t)after;
    if (base <= r->n_rows || base + cap < base) goto alone;
    if (base + cap < r->cap_rows) cap = r->cap_rows - base;    /* never shrinks the arrays */

    /* Target strings: the average length so far, twice over. */
    size_t pool_cap = r->target_col == NO_COLUMN ? 0
                    : mp_mul_size(cap, 2 * (r->pool_len / (r->n_rows ? r->n_rows : 1) + 1));
    if (pool_cap && !(pool = mp_malloc(pool_cap))) goto nomem;
    if (base + cap > r->cap_rows && !reserve_rows(r, base + cap)) goto nomem;
    w->fd = fd;
    w->from = split;
    w->size = r->file_size;
    w->base = base;
    w->cap_all = base + cap;
    w->buf = buf;
    atomic_init(&w->cancel, false);
    w->r = (reader){ .name = r->name, .o = r->o, .err = &w->err, .fast = true,
                     .space_runs = r->space_runs, .delim = r->delim, .line = 1,
                     .last_term = '\n', .hdr = r->hdr, .n_hdr = r->n_hdr, .role = r->role,
                     .n_feat = r->n_feat, .target_col = r->target_col,
                     .X = r->X + base * r->n_feat, .src_rows = r->src_rows + base,
                     .y = r->y ? r->y + base : NULL,
                     .tgt_off = r->tgt_off ? r->tgt_off + base : NULL,
                     .cap_rows = cap, .pool = pool, .pool_cap = pool_cap, .y_numeric = true,
                     .worker = true };
    w->r.row = w->r.X;
    sigset_t all, old;          /* signals stay with the main thread, whose handler stops the run */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) goto alone;
    r->w = w;
    r->cap_rows = base;         /* the rows above are the worker's */
    return split;
nomem:
    if (!r->failed) fail_nomem(r);  /* reserve_rows has said so already */
alone:
    mp_free(pool);
    mp_free(buf);
    mp_free(w);
    return SIZE_MAX;
}

/*
 * Joins the worker.  keep: the main thread is between records at the split,
 * so the worker's rows are taken (see above); otherwise they are dropped.
 * Returns the file offset the main thread reads on from.
 */
static size_t finish_worker(reader *r, bool keep) {
    worker *w = r->w;
    r->w = NULL;
    if (!keep) atomic_store(&w->cancel, true);
    pthread_join(w->thread, NULL);
    r->cap_rows = w->cap_all;
    size_t resume = w->from;
    const reader *wr = &w->r;
    if (keep && r->target_col != NO_COLUMN && wr->pool_mark > r->pool_cap - r->pool_len) {
        size_t cap = r->pool_len + wr->pool_mark;
        char *pool = cap < r->pool_len ? NULL : mp_realloc(r->pool, cap);
        if (!pool) {
            fail_nomem(r);
            keep = false;
        } else {
            r->pool = pool;
            r->pool_cap = cap;
        }
    }
    if (keep) {
        size_t n1 = r->n_rows, n2 = wr->n_rows, nf = r->n_feat, lines = r->line - 1;
        /* base >= n1, so each copy moves down: forward loops are safe */
        memmove(r->X + n1 * nf, wr->X, n2 * nf * sizeof *r->X);
        for (size_t i = 0; i < n2; i++) r->src_rows[n1 + i] = wr->src_rows[i] + lines;
        if (r->target_col != NO_COLUMN) {
            memmove(r->y + n1, wr->y, n2 * sizeof *r->y);
            for (size_t i = 0; i < n2; i++) r->tgt_off[n1 + i] = wr->tgt_off[i] + r->pool_len;
            if (wr->pool_mark) memcpy(r->pool + r->pool_len, wr->pool, wr->pool_mark);
            r->pool_len += wr->pool_mark;
            r->pool_mark = r->pool_len;
        }
        r->n_rows += n2;
        r->n_dropped += wr->n_dropped;
        r->y_numeric = r->y_numeric && wr->y_numeric;
        r->line = lines + wr->line;
        r->last_term = wr->last_term;
        resume = w->stop;
    }
    mp_free(w->r.pool);
    mp_free(w->buf);
    mp_free(w);
    if (!r->failed) grow_rows(r);   /* the next row's slot */
    return resume;
}

/* ------------------------------------------------------------ result */

static void reader_release(reader *r) {
    if (r->w) finish_worker(r, false);
    for (size_t i = 0; i < r->n_hdr; i++) mp_free(r->hdr[i]);
    mp_free(r->hdr);
    mp_free(r->by_name);
    mp_free(r->role);
    mp_free(r->feat_col);
    mp_free(r->X);
    mp_free(r->src_rows);
    mp_free(r->y);
    mp_free(r->tgt_off);
    mp_free(r->pool);
}

static int cmp_target(const void *a, const void *b, void *arg) {
    const reader *r = arg;
    size_t i = *(const size_t *)a, j = *(const size_t *)b;
    return strcmp(r->pool + r->tgt_off[i], r->pool + r->tgt_off[j]);
}

/* Classes = distinct target strings in strcmp order; y[i] = class index. */
static int encode_classes(reader *r, mp_dataset *ds) {
    size_t n = r->n_rows, k = 0;
    size_t *idx = mp_malloc(mp_mul_size(n, sizeof *idx));
    if (!idx) return fail_nomem(r);
    for (size_t i = 0; i < n; i++) idx[i] = i;
    qsort_r(idx, n, sizeof *idx, cmp_target, r);
    for (size_t i = 0; i < n; i++)
        if (i == 0 || cmp_target(&idx[i - 1], &idx[i], r) != 0) k++;
    char **names = mp_calloc(k, sizeof *names);
    if (!names) {
        mp_free(idx);
        return fail_nomem(r);
    }
    ds->class_names = names;    /* mp_dataset_free frees it even when half filled */
    ds->n_classes = k;
    size_t cls = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && cmp_target(&idx[i - 1], &idx[i], r) != 0) cls++;
        if (!names[cls] && !(names[cls] = mp_strdup(r->pool + r->tgt_off[idx[i]]))) {
            mp_free(idx);
            return fail_nomem(r);
        }
        r->y[idx[i]] = (double)cls;
    }
    mp_free(idx);
    ds->task = MP_TASK_CLASSIFICATION;
    return MP_OK;
}

/* Shrinks an array to its final size; if that fails the larger block is kept. */
static void *shrink(void *p, size_t bytes) {
    void *q = mp_realloc(p, bytes);
    return q ? q : p;
}

/* Moves what the reader built into a new dataset. */
static mp_dataset *build_dataset(reader *r) {
    mp_dataset *ds = mp_dataset_new();
    if (!ds) return fail_nomem(r), NULL;
    char **names = mp_calloc(r->n_feat, sizeof *names);
    if (!names) goto nomem;
    for (size_t k = 0; k < r->n_feat; k++) {    /* hand the header's strings over */
        names[k] = r->hdr[r->feat_col[k]];
        r->hdr[r->feat_col[k]] = NULL;
    }
    ds->feature_names = names;
    ds->X.n_cols = r->n_feat;   /* mp_dataset_free needs n_cols to free the names */
    ds->task = MP_TASK_NONE;
    if (r->target_col != NO_COLUMN) {
        ds->target_name = r->hdr[r->target_col];
        r->hdr[r->target_col] = NULL;
        ds->task = MP_TASK_REGRESSION;
        if (!r->y_numeric && encode_classes(r, ds) != MP_OK) goto fail;
    }
    /* Last, so the allocation-failure tests reach everything before: the shrinks. */
    size_t n = r->n_rows;
    ds->X.data = shrink(r->X, n * r->n_feat * sizeof(float)); /* <= what was allocated */
    ds->X.n_rows = n;
    r->X = NULL;
    ds->source_rows = shrink(r->src_rows, n * sizeof(size_t));
    r->src_rows = NULL;
    if (r->target_col != NO_COLUMN) {
        ds->y = shrink(r->y, n * sizeof(double));
        r->y = NULL;
    }
    return ds;
nomem:
    fail_nomem(r);
fail:
    mp_dataset_free(ds);
    return NULL;
}

/* ------------------------------------------------------------ reading */

/* Hands s[0..len) to libcsv, which calls on_field and on_row. */
static void feed_libcsv(reader *r, struct csv_parser *p, const char *s, size_t len) {
    if (csv_parse(p, s, len, on_field, on_row, r) != len && !r->failed)
        FAIL(r, csv_error(p) == CSV_ENOMEM ? MP_E_NOMEM : MP_E_PARSE, r->line, 0,
             "cannot parse '%s': %s", r->name, csv_strerror(csv_error(p)));
}

/* libcsv is between records: its state ROW_NOT_BEGUN, 0 (csv.h has no name for it). */
static bool libcsv_idle(const struct csv_parser *p) {
    return p->pstate == 0;
}

/*
 * Parses whole lines, s[0..len) with s[len - 1] == '\n'.  While libcsv is
 * between records, the lines up to the first one holding a quote character go
 * to parse_plain; that line, and every line while libcsv is inside a record
 * (a quoted cell spanning lines), go to libcsv.  The two never overlap on a
 * record, so the callbacks see what libcsv alone would have shown them.
 */
static void parse_lines(reader *r, struct csv_parser *p, const char *s, size_t len) {
    const char *end = s + len;
    while (s < end && !r->failed) {
        const char *from = s;
        if (libcsv_idle(p)) {
            const char *q = memchr(s, '"', (size_t)(end - s));
            if (!q) {
                parse_plain(r, s, end);
                return;
            }
            const char *nl = memrchr(s, '\n', (size_t)(q - s));
            from = nl ? nl + 1 : s;         /* the start of the quote's line */
            if (from > s) parse_plain(r, s, from);
            if (r->failed) return;
        }
        const char *nl = memchr(from, '\n', (size_t)(end - from));
        feed_libcsv(r, p, from, (size_t)(nl + 1 - from));
        s = nl + 1;
    }
}

/*
 * Reads the stream in blocks and parses the whole lines of each; the last,
 * unfinished line moves to the front of buf and the next block is read after
 * it.  A line longer than a block goes to libcsv in pieces, which then takes
 * the lines after it until its record ends.  After the first block a big file
 * is split (start_worker): the main thread reads no further than the split,
 * then takes the worker's rows and reads on from where the worker stopped.
 * buf holds BLOCK_SIZE + 1 + PAD bytes: at the end of the stream the last
 * line gets a '\n' of our own, harmless after a complete record, and what
 * tells an unterminated quote apart (the newline then lands inside the cell
 * and libcsv is still in a quoted cell).
 */
static void parse_stream(reader *r, FILE *f, struct csv_parser *p, char *buf) {
    size_t have = 0;            /* bytes in buf: the unfinished line */
    size_t pos = 0;             /* bytes of the file read so far */
    size_t split = SIZE_MAX;    /* read no further while the worker has the rest */
    bool planned = false, eof = false;
    struct stat sb;             /* progress: bytes read of the file (no total for a pipe) */
    double done = 0, total = fstat(fileno(f), &sb) == 0 && S_ISREG(sb.st_mode) ? sb.st_size : 0;
    while (!r->failed && !eof) {
        size_t want = BLOCK_SIZE - have;
        if (split - pos < want) want = split - pos;
        size_t got = fread(buf + have, 1, want, f);
        pos += got;
        mp_progress_update("bytes", done += (double)got, total);
        if (got < want) {
            if (ferror(f)) {
                FAIL(r, MP_E_IO, 0, 0, "cannot read '%s': %s", r->name, strerror(errno));
                break;
            }
            eof = true;
        }
        if (pos == got && got >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
            memmove(buf, buf + 3, got - 3); /* a UTF-8 byte order mark before the header */
            got -= 3;
        }
        have += got;
        if (eof) {
            buf[have++] = '\n';
            parse_lines(r, p, buf, have);
            break;
        }
        if (pos == split) {             /* the worker's part is next */
            split = SIZE_MAX;
            if (have && buf[have - 1] == '\n') {
                parse_lines(r, p, buf, have);
                have = 0;
                if (!r->w) continue;    /* dropped already: read on */
                size_t from = pos;
                pos = finish_worker(r, !r->failed && libcsv_idle(p) && r->field == 0);
                done += (double)(pos - from);
                if (pos != from && fseeko(f, (off_t)pos, SEEK_SET) != 0)
                    FAIL(r, MP_E_IO, 0, 0, "cannot read '%s': %s", r->name, strerror(errno));
                continue;
            }
            if (r->w) finish_worker(r, false);  /* no line end there: the file changed */
        }
        const char *last = memrchr(buf, '\n', have);
        if (!last) {
            feed_libcsv(r, p, buf, have);
            have = 0;
            continue;
        }
        size_t n = (size_t)(last + 1 - buf);
        parse_lines(r, p, buf, n);
        if (!planned) split = start_worker(r, f, pos - (have - n), pos);
        planned = true;             /* after the first block, which holds the header */
        memmove(buf, buf + n, have - n);
        have -= n;
    }
    if (r->w) finish_worker(r, false);  /* a failure, or the file ended early */
    if (!r->failed && p->quoted)
        FAIL(r, MP_E_PARSE, r->line, r->field + 1,
             "unterminated quoted field (a closing '\"' is missing)");
}

int mp_csv_read(const char *path, const mp_csv_opts *o, mp_dataset **out, mp_err *err) {
    mp_csv_opts defaults;
    if (!o) {
        mp_csv_opts_init(&defaults);
        o = &defaults;
    }
    bool is_stdin = strcmp(path, "-") == 0;
    reader r = { .name = is_stdin ? "<stdin>" : path, .o = o, .err = err, .line = 1,
                 .in_header = true, .y_numeric = true, .target_col = NO_COLUMN,
                 .space_runs = o->delimiter == ' ', .delim = o->delimiter };
    char d = o->delimiter;
    if (d == '"' || d == '\r' || d == '\n' || d == '\0')
        return FAIL(&r, MP_E_CONFIG, 0, 0, "invalid delimiter (code %d) for '%s'", d, r.name);

    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return FAIL(&r, MP_E_IO, 0, 0, "cannot open '%s': %s", path, strerror(errno));
    struct stat st;             /* stdin may not start at offset 0: one thread reads it */
    if (!is_stdin && fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
        r.file_size = (size_t)st.st_size;
    char *buf = mp_calloc(1, BLOCK_SIZE + 1 + PAD);  /* zeroed: the padding is read */
    struct csv_parser p;
    /* No CSV_APPEND_NULL: cells are parsed by length, and target strings are
     * copied (NUL-terminated) into the pool anyway. */
    csv_init(&p, CSV_EMPTY_IS_NULL | CSV_REPALL_NL);
    csv_set_delim(&p, (unsigned char)d);
    /* libcsv allocates through these, and we give it its cell buffer up front:
     * its own first allocation would retry a failed one at half the size,
     * which hides injected failures from the tests. */
    csv_set_realloc_func(&p, mp_realloc);
    csv_set_free_func(&p, mp_free);
    csv_set_blk_size(&p, ENTRY_SIZE);
    p.entry_buf = mp_malloc(ENTRY_SIZE);
    p.entry_size = p.entry_buf ? ENTRY_SIZE : 0;
    mp_dataset *ds = NULL;

    if (!buf || !p.entry_buf) fail_nomem(&r);
    else parse_stream(&r, f, &p, buf);
    if (!is_stdin) fclose(f);
    mp_free(buf);
    if (!r.failed) csv_fini(&p, on_field, on_row, &r);
    csv_free(&p);

    if (!r.failed && r.in_header)
        FAIL(&r, MP_E_DATA, 0, 0, "'%s' is empty", r.name);
    else if (!r.failed && r.n_rows == 0 && r.n_dropped)
        FAIL(&r, MP_E_DATA, 0, 0, "no data rows (all %zu dropped for missing values)",
             r.n_dropped);
    else if (!r.failed && r.n_rows == 0)
        FAIL(&r, MP_E_DATA, 0, 0, "no data rows");
    if (!r.failed) ds = build_dataset(&r);
    if (ds && r.n_dropped)
        mp_log(MP_LOG_INFO, "csv: skipped %zu row(s) with missing values in '%s'", r.n_dropped,
               r.name);
    reader_release(&r);
    if (!ds) return err->code;
    *out = ds;
    return MP_OK;
}
