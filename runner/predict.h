/*
 * predict.h -- batch prediction from a model file over a CSV file.
 */
#ifndef MP_PREDICT_H
#define MP_PREDICT_H

#include "mp.h"

typedef struct mp_predict_opts {
    const char *model_path;     /* .mlpm file */
    const char *input_path;     /* CSV with a header row; "-" = stdin */
    const char *output_path;    /* NULL or "-" = stdout; else written atomically */
    char        delimiter;      /* input delimiter, 0 = ',' */
    bool        proba;          /* add one probability column per class */
} mp_predict_opts;

int mp_predict_main(const mp_predict_opts *o, mp_err *err);

#endif /* MP_PREDICT_H */
