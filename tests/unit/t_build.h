/*
 * t_build.h -- builds a ck_model by hand for writer tests: tensors over one
 * in-memory source (cki_source_from_memory) filled with a byte pattern, the
 * way a format reader would (cki_model_storage + cki_model_add_tensor).
 */
#ifndef T_BUILD_H
#define T_BUILD_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/model.h"

typedef struct tb_spec {
    const char *name;
    ck_dtype dtype;
    int ndim;
    int64_t shape[4];
} tb_spec;

static inline uint64_t tb_nbytes(const tb_spec *s)
{
    uint64_t numel = 1, nb = 0;
    for (int d = 0; d < s->ndim; d++) numel *= (uint64_t)s->shape[d];
    cki_dtype_nbytes(s->dtype, numel, &nb);
    return nb;
}

/* A model named "built" holding SPECS[0..COUNT) back to back over *BYTES
 * (malloc'd here, byte i = i * 31 + 17; free it after closing the model). */
static inline ck_model *tb_build(ck_ctx *ctx, const tb_spec *specs, size_t count, uint8_t **bytes)
{
    ck_model *m;
    cki_source *src;
    uint64_t total = 0, off = 0;
    for (size_t i = 0; i < count; i++) total += tb_nbytes(&specs[i]);
    *bytes = malloc(total + 1);
    for (uint64_t i = 0; i < total; i++) (*bytes)[i] = (uint8_t)(i * 31 + 17);
    if (cki_model_new(ctx, "built", &m)) return NULL;
    if (cki_source_from_memory(ctx, "built", *bytes, total, &src) || cki_model_add_source(m, src))
        goto fail;
    for (size_t i = 0; i < count; i++) {
        uint64_t nb = tb_nbytes(&specs[i]);
        cki_storage *sg;
        if (cki_model_storage(m, src, off, nb, specs[i].dtype, "t", &sg) ||
            cki_model_add_tensor(m, "built", specs[i].name, strlen(specs[i].name),
                                 specs[i].dtype, specs[i].ndim, specs[i].shape, NULL, 0, sg, 0,
                                 NULL))
            goto fail;
        off += nb;
    }
    return m;
fail:
    fprintf(stderr, "  tb_build: %s\n", ck_errmsg(ctx));
    ck_model_close(m);
    return NULL;
}

#endif
