/*
 * docs.h -- module documentation generated from the registry.
 */
#ifndef MP_DOCS_H
#define MP_DOCS_H

#include "mp.h"

/* Prints every module (name == NULL) or the modules called name, as text or
 * as the README's Markdown reference.  MP_E_USAGE if name matches none. */
int mp_stages_print(FILE *f, const char *name, bool markdown, mp_err *err);

#endif /* MP_DOCS_H */
