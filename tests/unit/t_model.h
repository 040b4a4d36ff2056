/*
 * t_model.h -- building small models by hand for the converter unit tests
 * (t_ema.c, t_shard.c, t_diff.c, t_export.c): tensors over owned storages,
 * and a warning collector.
 */
#ifndef T_MODEL_H
#define T_MODEL_H

#include <stdio.h>
#include <string.h>

#include "formats/model.h"
#include "tensor/tensor.h"

/* Adds tensor NAME of DT and SHAPE over a copy of the NBYTES at P; returns its index. */
static inline size_t tm_add(ck_model *m, const char *name, ck_dtype dt, int ndim,
                            const int64_t *shape, const void *p, size_t nbytes)
{
    uint8_t *b = nbytes ? cki_malloc(m->ctx, nbytes) : NULL;
    cki_storage *st = NULL;
    size_t idx = (size_t)-1;
    if (nbytes) memcpy(b, p, nbytes);
    if (cki_model_storage_owned(m, b, nbytes, dt, &st) ||
        cki_model_add_tensor(m, "mem", name, strlen(name), dt, ndim, shape, NULL, 0, st, 0, &idx))
        fprintf(stderr, "  tm_add(%s): %s\n", name, ck_errmsg(m->ctx));
    return idx;
}

/* A 1-D F32 tensor of N values. */
static inline size_t tm_f32(ck_model *m, const char *name, const float *v, int64_t n)
{
    return tm_add(m, name, CK_DT_F32, 1, &n, v, (size_t)n * 4);
}

/* Warnings seen, newline-separated. */
typedef struct tm_warns {
    char text[4096];
    int count;
} tm_warns;

static inline void tm_on_warn(void *user, const char *msg)
{
    tm_warns *w = user;
    size_t l = strlen(w->text);
    w->count++;
    snprintf(w->text + l, sizeof w->text - l, "%s\n", msg);
}

#endif
