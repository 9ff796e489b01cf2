/*
 * csv.c -- delimited text (CSV, TSV ...) -> mp_dataset, with libcsv underneath.
 *
 * libcsv splits the bytes into cells and calls us back once per cell
 * (on_field) and once per record end (on_row).  The file is read in 1 MiB
 * blocks and fed straight to csv_parse; nothing holds the whole file.  Each
 * feature cell is parsed right in the field callback into its slot of the
 * growing row-major float array, so a cell costs no allocation and no copy
 * beyond libcsv's own; the arrays grow geometrically.  Numbers are read by
 * our own parser (short decimals inline, exact float and double fast paths,
 * strtof for the rest), which gives strtof's bits several times faster: with
 * libcsv's own scanning it is what a 60,000 x 785 file costs.
 *
 * libcsv tells no positions, so we count lines ourselves.  With CSV_REPALL_NL
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
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
 * "3.25": an optional '-', at most 7 digits, at most one '.'), are read
 * inline.  m < 10^7 < 2^24 and the divisor 10^k (k <= 7) are exact floats, so
 * the one division is exactly rounded, as above.  Returns false for anything
 * else, which then takes the general path.
 */
static inline bool parse_short(const char *s, size_t len, float *out) {
    if (len - 1 >= 9) return false;     /* not 1 <= len <= 9 (len 0 wraps around) */
    size_t i = s[0] == '-', dot = 0, nd = 0;
    uint32_t m = 0;
    for (; i < len; i++) {
        uint32_t d = (uint32_t)(unsigned char)s[i] - '0';
        if (d < 10) {
            m = m * 10 + d;     /* at most 9 digits here: no overflow */
            nd++;
        } else if (s[i] == '.' && !dot) {
            dot = i + 1;        /* digits after the dot: len - dot */
        } else {
            return false;
        }
    }
    if (nd == 0 || nd > 7) return false;
    float f = (float)m;
    if (dot) f /= pow10f_exact[len - dot];
    *out = s[0] == '-' ? -f : f;
    return true;
}

bool mp_csv_parse_float(const char *s, size_t len, float *out) {
    return parse_short(s, len, out) || parse_float_general(s, len, out);
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

/* Makes room for row slot n_rows in every per-row array; points r->row at it. */
static bool grow_rows(reader *r) {
    if (r->n_rows < r->cap_rows) {
        r->row = r->X + r->n_rows * r->n_feat;
        return true;
    }
    if (r->cap_rows > SIZE_MAX / 2) return fail_nomem(r), false;
    size_t cap = r->cap_rows ? r->cap_rows * 2 : FIRST_ROWS;
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

/* Appends a target string to the pool; its offset goes to tgt_off[n_rows]. */
static bool pool_add(reader *r, const char *s, size_t len) {
    if (len >= SIZE_MAX - r->pool_len) return fail_nomem(r), false;
    size_t need = r->pool_len + len + 1;
    if (need > r->pool_cap) {
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
        if (role < r->n_feat && parse_short(cell, len, r->row + role)) return;
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

/* ------------------------------------------------------------ result */

static void reader_release(reader *r) {
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

/* Feeds the whole stream to libcsv; the callbacks do the rest. */
static void parse_stream(reader *r, FILE *f, struct csv_parser *p, char *buf) {
    bool first = true;
    size_t got;
    while (!r->failed && (got = fread(buf, 1, BLOCK_SIZE, f)) > 0) {
        const char *s = buf;
        if (first && got >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
            s += 3;             /* a UTF-8 byte order mark before the header */
            got -= 3;
        }
        first = false;
        if (csv_parse(p, s, got, on_field, on_row, r) != got && !r->failed)
            FAIL(r, csv_error(p) == CSV_ENOMEM ? MP_E_NOMEM : MP_E_PARSE, r->line, 0,
                 "cannot parse '%s': %s", r->name, csv_strerror(csv_error(p)));
    }
    if (r->failed) return;
    if (ferror(f)) {
        FAIL(r, MP_E_IO, 0, 0, "cannot read '%s': %s", r->name, strerror(errno));
        return;
    }
    /*
     * End the last record with a newline of our own: harmless after a complete
     * record, and it tells an unterminated quote apart (the newline then lands
     * inside the cell and libcsv is still in a quoted cell).
     */
    csv_parse(p, "\n", 1, on_field, on_row, r);
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
                 .space_runs = o->delimiter == ' ' };
    char d = o->delimiter;
    if (d == '"' || d == '\r' || d == '\n' || d == '\0')
        return FAIL(&r, MP_E_CONFIG, 0, 0, "invalid delimiter (code %d) for '%s'", d, r.name);

    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    if (!f) return FAIL(&r, MP_E_IO, 0, 0, "cannot open '%s': %s", path, strerror(errno));
    char *buf = mp_malloc(BLOCK_SIZE);
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
