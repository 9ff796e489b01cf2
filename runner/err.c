/*
 * err.c -- the mp_err error struct: set once, prefix with context, print.
 *
 * First error wins (like SQLite's sticky errCode): a second mp_err_set on an
 * error that is already set keeps the first message, so the innermost, most
 * specific cause is what the user sees.  Outer layers add context with
 * mp_err_prefix() and the user-facing place with mp_err_where().
 */
#include "mp.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int mp_err_set(mp_err *e, int code, const char *src_file, int src_line,
               const char *fmt, ...) {
    if (e == NULL || e->code != MP_OK) return e ? e->code : code;
    e->code = code;
    e->src_file = src_file;
    e->src_line = src_line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int mp_err_where(mp_err *e, const char *fmt, ...) {
    if (e->where[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->where, sizeof e->where, fmt, ap);
        va_end(ap);
    }
    return e->code;
}

void mp_err_prefix(mp_err *e, const char *fmt, ...) {
    char head[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    size_t hl = strlen(head);
    if (hl > sizeof e->msg - 3) hl = sizeof e->msg - 3;
    memcpy(e->msg, head, hl);
    memcpy(e->msg + hl, ": ", 2);
    size_t room = sizeof e->msg - hl - 3, ol = strlen(old);
    if (ol > room) ol = room;
    memcpy(e->msg + hl + 2, old, ol);
    e->msg[hl + 2 + ol] = '\0';
}

int mp_exit_code(const mp_err *err) {
    switch (err->code) {
    case MP_OK: return MP_EXIT_OK;
    case MP_E_CONFIG:
    case MP_E_USAGE:
    case MP_E_PLUGIN: return MP_EXIT_CONFIG;
    case MP_E_CANCELLED: return mp_cancel_signal == 2 ? MP_EXIT_SIGINT : MP_EXIT_SIGTERM;
    default: return MP_EXIT_FAILED;
    }
}

void mp_err_print(const mp_err *err) {
    if (err->where[0])
        mp_log_write(MP_LOG_ERROR, "%s: %s", err->where, err->msg);
    else
        mp_log_write(MP_LOG_ERROR, "%s", err->msg);
    if (mp_log_level >= MP_LOG_DEBUG && err->src_file)
        mp_log_write(MP_LOG_DEBUG, "error raised at %s:%d", err->src_file, err->src_line);
}
