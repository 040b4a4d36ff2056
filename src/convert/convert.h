/*
 * convert.h -- internal entry points of the conversion layer.
 */
#ifndef CKI_CONVERT_H
#define CKI_CONVERT_H

#include "../formats/format.h"

/* Scans every pickle of SRC like ck_scan; *WORST is the worst verdict seen
 * (set even when a later pickle fails to parse). */
ck_status cki_scan_source(ck_ctx *ctx, const cki_source *src, ck_scan_fn fn, void *user,
                          ck_verdict *worst);

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
/* The same for an output format with capabilities CAPS (CKI_CAP_*): quantised
 * dtypes only where it holds them, typed array metadata only where it keeps
 * them. cki_plan_build is this with CAPS 0. */
ck_status cki_plan_build_for(ck_ctx *ctx, ck_model *in, const ck_convert_opts *opts,
                             unsigned caps, cki_plan *plan);

/* ---- ggml block types (quant_policy.c) ------------------------------------- */

#include <regex.h>

/* Compiled --tensor-type rules. */
typedef struct cki_rules {
    regex_t *re;
    ck_dtype *type;
    size_t count;
} cki_rules;
ck_status cki_rules_compile(ck_ctx *ctx, const char *const *specs, cki_rules *r);
void cki_rules_free(ck_ctx *ctx, cki_rules *r);
/* 1 if a tensor named NAME with NDIM dimensions stays in its float type under
 * a quantised --dtype (1-D, biases, scales, norms). */
int cki_quant_policy_keeps(const char *name, int ndim);
/* llama-quantize's fallback for a type whose block does not fit a row. */
ck_dtype cki_quant_fallback(ck_dtype dt);
/* The output dtype of input tensor V (input name NAME) under O, for an output
 * of capabilities CAPS, when block types are involved (rules in quant_policy.c). */
ck_status cki_quant_choose(ck_ctx *ctx, const ck_model *in, const ck_convert_opts *o,
                           unsigned caps, const cki_rules *rules, const char *name,
                           const cki_tensor *v, ck_dtype *out);
void cki_plan_free(ck_ctx *ctx, cki_plan *plan);

/* Refuses (CK_ELIMIT) a plan whose tensor bytes exceed CKI_EXPAND_FACTOR x
 * the input's file bytes, naming the tensor that expands most (expand.c). */
#define CKI_EXPAND_FACTOR 16
ck_status cki_plan_check_expand(ck_ctx *ctx, const ck_model *in, const char *out,
                                const cki_plan *plan);
/* The same over COUNT output tensors, the first at FIRST, each STRIDE bytes
 * after the previous one (the cki_out_tensor inside a caller's records). */
ck_status cki_check_expand(ck_ctx *ctx, const ck_model *in, const char *out,
                           const cki_out_tensor *first, size_t count, size_t stride);

/* Writes PLAN to PATH in format F through an atomic sink (plus side outputs). */
ck_status cki_write_plan(ck_ctx *ctx, ck_model *in, const cki_format *f, const char *path,
                         const ck_convert_opts *opts, const cki_plan *plan,
                         ck_convert_stats *stats);

/* ---- EMA (ema.c) ----------------------------------------------------------- */

/* 1 if M holds Stable Diffusion EMA weights: a tensor named "model_ema.*" other
 * than model_ema.decay and model_ema.num_updates. */
int cki_ema_present(const ck_model *m);
/* Fills SRC[0..in->count): for each input tensor, the tensor whose values it
 * is written with, or NULL when it is dropped. MODE 0: every tensor as is;
 * -1 (--no-ema): "model_ema.*" dropped; 1 (--ema): "model.<rest>" takes the
 * values of "model_ema.<rest without dots>" and "model_ema.*" is dropped.
 * Fails on --ema without EMA weights, on twins of another shape, and on two
 * tensors claiming one twin. */
ck_status cki_ema_resolve(ck_ctx *ctx, const ck_model *in, int mode, const cki_tensor **src);

/* ---- sharding (write.c, sharded_read.c) --------------------------------------- */

/* Splits PLAN into shards of at most MAX_SIZE output bytes (FORMATS.md 6):
 * SHARD_OF[i] is tensor i's 0-based shard, *SHARD_COUNT the number of shards
 * (1 for an empty plan), *TOTAL_SIZE the index's total_size. KEEP_SHARED: a
 * tensor sharing a storage with an earlier one joins its shard. */
ck_status cki_shard_assign(ck_ctx *ctx, const cki_plan *plan, uint64_t max_size, int keep_shared,
                           size_t *shard_of, size_t *shard_count, uint64_t *total_size);

/* 1 if PATH is to be opened as a sharded checkpoint: its name ends in
 * ".index.json", or it is a folder (which must then hold exactly one
 * *.index.json; cki_sharded_open says so when it does not). */
int cki_is_sharded_path(const char *path);
/* Reads the index at PATH (file or folder, see above) and opens every shard
 * into M, which then holds all their tensors. Validates the index: shard
 * names are plain file names in the index's folder, every shard exists, no
 * tensor is in two shards, every weight_map entry is in the shard it names
 * (rules in sharded_read.c). */
ck_status cki_sharded_open(ck_model *m, const char *path, const ck_open_opts *opts);
/* The shard files of the sharded checkpoint at PATH (index or folder), after
 * the same index checks, in reading order; for tools that look at each file
 * (scan). *FILES and its strings are cki_malloc'd: free with
 * cki_sharded_list_free. */
ck_status cki_sharded_list(ck_ctx *ctx, const char *path, char ***files, size_t *count);
void cki_sharded_list_free(ck_ctx *ctx, char **files, size_t count);

#endif
