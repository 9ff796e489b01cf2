/* PLACEHOLDER: replaced by the real artifact module. */
#include "artifact.h"
int mp_art_put_str(mp_art_writer *w, const char *key, const char *value) { (void)w; (void)key; (void)value; return MP_E_IO; }
int mp_art_put_strs(mp_art_writer *w, const char *key, char *const *v, size_t n) { (void)w; (void)key; (void)v; (void)n; return MP_E_IO; }
int mp_art_put_int(mp_art_writer *w, const char *key, long long value) { (void)w; (void)key; (void)value; return MP_E_IO; }
int mp_art_put_double(mp_art_writer *w, const char *key, double value) { (void)w; (void)key; (void)value; return MP_E_IO; }
int mp_art_put_floats(mp_art_writer *w, const char *key, const float *v, size_t n) { (void)w; (void)key; (void)v; (void)n; return MP_E_IO; }
int mp_art_put_doubles(mp_art_writer *w, const char *key, const double *v, size_t n) { (void)w; (void)key; (void)v; (void)n; return MP_E_IO; }
int mp_art_get_str(mp_art_reader *r, const char *key, const char **out, mp_err *err) { (void)r; (void)key; (void)out; return MP_ERR(err, MP_E_IO, "x"); }
int mp_art_get_strs(mp_art_reader *r, const char *key, char ***out, size_t *n, mp_err *err) { (void)r; (void)key; (void)out; (void)n; return MP_ERR(err, MP_E_IO, "x"); }
int mp_art_get_int(mp_art_reader *r, const char *key, long long *out, mp_err *err) { (void)r; (void)key; (void)out; return MP_ERR(err, MP_E_IO, "x"); }
int mp_art_get_double(mp_art_reader *r, const char *key, double *out, mp_err *err) { (void)r; (void)key; (void)out; return MP_ERR(err, MP_E_IO, "x"); }
int mp_art_get_floats(mp_art_reader *r, const char *key, float *dst, size_t n, mp_err *err) { (void)r; (void)key; (void)dst; (void)n; return MP_ERR(err, MP_E_IO, "x"); }
int mp_art_get_doubles(mp_art_reader *r, const char *key, double *dst, size_t n, mp_err *err) { (void)r; (void)key; (void)dst; (void)n; return MP_ERR(err, MP_E_IO, "x"); }
bool mp_art_has(mp_art_reader *r, const char *key) { (void)r; (void)key; return false; }
