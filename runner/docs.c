/*
 * docs.c -- `mlpipe stages [NAME]`: every module with its parameters, types,
 * defaults, ranges and docs, straight from the registry's tables, so the
 * help can never disagree with what the config checker accepts.  With
 * --markdown it prints the README's YAML reference (a test checks that the
 * README carries exactly this text).
 */
#include "docs.h"

#include <math.h>
#include <string.h>

#include "config.h"
#include "registry.h"

/* "> 0", "[0, 1]", ">= 1", "sgd|momentum|adam" or "". */
static void constraint(const mp_param *p, char *buf, size_t size) {
    buf[0] = '\0';
    if (p->choices) {
        snprintf(buf, size, "%s", p->choices);
    } else if (p->flags & MP_PF_RANGE) {
        /* Bounds at the type's limits (INT_MAX, 1e300) are "no bound" to a reader. */
        bool lo = isfinite(p->min) && p->min > -1e300;
        bool hi = isfinite(p->max) && p->max < 1e300 &&
                  !(p->type != MP_P_DOUBLE && p->max >= 2147483647.0);
        bool open = p->flags & MP_PF_MIN_OPEN;
        if (lo && hi) snprintf(buf, size, "%s%g, %g]", open ? "(" : "[", p->min, p->max);
        else if (lo) snprintf(buf, size, "%s %g", open ? ">" : ">=", p->min);
        else if (hi) snprintf(buf, size, "<= %g", p->max);
    }
}

static const char *default_text(const mp_param *p) {
    if (p->flags & MP_PF_REQUIRED) return "(required)";
    if (!p->def) return "-";
    return p->def;
}

static void print_module(FILE *f, const mp_stage_ops *s, bool md) {
    const char *kind = mp_kind_name(s->kind);
    if (md) {
        fprintf(f, "### `%s: %s`\n\n%s.\n\n", kind, s->name, s->doc ? s->doc : "");
        if (!s->params || !s->params[0].name) {
            fprintf(f, "No parameters.\n\n");
            return;
        }
        fprintf(f, "| parameter | type | default | allowed | description |\n");
        fprintf(f, "|---|---|---|---|---|\n");
        for (const mp_param *p = s->params; p->name; p++) {
            char c[256];
            constraint(p, c, sizeof c);
            fprintf(f, "| `%s` | %s | `%s` | %s | %s |\n", p->name, mp_param_type_name(p->type),
                    default_text(p), c[0] ? c : "", p->doc ? p->doc : "");
        }
        fputc('\n', f);
        return;
    }
    fprintf(f, "%s: %s -- %s\n", kind, s->name, s->doc ? s->doc : "");
    for (const mp_param *p = s->params; p && p->name; p++) {
        char c[256];
        constraint(p, c, sizeof c);
        fprintf(f, "    %-18s %-11s default %-14s %-22s %s\n", p->name, mp_param_type_name(p->type),
                default_text(p), c, p->doc ? p->doc : "");
    }
}

int mp_stages_print(FILE *f, const char *name, bool markdown, mp_err *err) {
    size_t shown = 0;
    for (int k = 0; k < MP_KIND_COUNT; k++) {
        for (size_t i = 0; i < mp_registry_count(); i++) {
            const mp_stage_ops *s = mp_registry_at(i);
            if ((int)s->kind != k || (name && strcmp(name, s->name) != 0)) continue;
            if (!name && !markdown) {
                fprintf(f, "%-10s %-22s %s\n", mp_kind_name(s->kind), s->name, s->doc ? s->doc : "");
            } else {
                print_module(f, s, markdown);
                if (!markdown) fputc('\n', f);
            }
            shown++;
        }
    }
    if (name && shown == 0) return MP_ERR(err, MP_E_USAGE, "no stage module named '%s'", name);
    return MP_OK;
}
