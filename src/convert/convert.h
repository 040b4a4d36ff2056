/*
 * convert.h -- internal entry points of the conversion layer.
 */
#ifndef CKI_CONVERT_H
#define CKI_CONVERT_H

#include "../formats/format.h"

/* Opens one file with its detected reader and adds its tensors to M. */
ck_status cki_open_file_into(ck_model *m, const char *path, const ck_open_opts *opts);

/* The output plan: which tensors, under which names, in which dtype. */
typedef struct cki_plan {
    cki_out_tensor *tensors;
    size_t count;
    const char **meta_keys, **meta_vals;
    size_t meta_count;
    cki_arena arena; /* names */
} cki_plan;

/* Builds the plan from IN and the options (selection, renaming, dtype
 * policy, metadata). Fails on a collision, naming both tensors. */
ck_status cki_plan_build(ck_ctx *ctx, ck_model *in, const ck_convert_opts *opts, cki_plan *plan);
void cki_plan_free(ck_ctx *ctx, cki_plan *plan);

/* Writes PLAN to PATH in format F through an atomic sink (plus side outputs). */
ck_status cki_write_plan(ck_ctx *ctx, ck_model *in, const cki_format *f, const char *path,
                         const ck_convert_opts *opts, const cki_plan *plan,
                         ck_convert_stats *stats);

#endif
