/* PLACEHOLDER: replaced by the real config module. */
#include "config.h"
#include <string.h>
size_t mp_edit_distance(const char *a, const char *b) { return strcmp(a, b) != 0; }
