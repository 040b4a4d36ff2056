/*
 * model.h -- the opened checkpoint (struct ck_model) and the calls format
 * readers use to fill it. A model owns its sources (mapped files), storages,
 * tensors (in file order, names unique), string metadata and a JSON rendering
 * of non-tensor values. Names, shapes and strides live in the model's arena.
 */
#ifndef CKI_MODEL_H
#define CKI_MODEL_H

#include "../common/cki.h"
#include "../io/source.h"
#include "../tensor/tensor.h"

struct ck_model {
    ck_ctx *ctx;
    char *path;
    const char *format_name; /* static string set by the reader, e.g. "torch-zip" */
    cki_arena arena;

    cki_source **sources;
    size_t source_count, source_cap;

    cki_storage **storages;
    size_t storage_count, storage_cap;

    cki_tensor *tensors;
    size_t count, cap;
    cki_map names; /* tensor name -> index */

    const char **meta_keys, **meta_vals;
    size_t meta_count, meta_cap;

    char *values_json; /* owned (cki_malloc) or NULL */
    const ck_value *values; /* the value tree (ck_open_opts.values), in the arena, or NULL */

    /* tensors the reader found but cannot represent (quantized, sparse, ...):
     * names and reasons in the arena; a conversion that would include one
     * fails naming it, so nothing is dropped silently */
    const char **skipped_names, **skipped_why;
    size_t skipped_count, skipped_cap;

    /* arrays a reader left out on request (ck_open_opts.skip_unsupported,
     * allow_unsafe object arrays), each announced by a warning */
    size_t omitted_count;

    void *driver_data;
    void (*driver_free)(ck_model *m, void *data);
    /* typed metadata (GGUF): the type of metadata entry I as the format
     * spells it, or NULL; NULL for formats whose metadata is plain strings */
    const char *(*meta_type)(const ck_model *m, size_t i);
};

/* An empty model for PATH (also used by tests to build models by hand). */
ck_status cki_model_new(ck_ctx *ctx, const char *path, ck_model **out);
/* Takes ownership of SRC (closed with the model). */
ck_status cki_model_add_source(ck_model *m, cki_source *src);
/* A storage of LEN bytes at OFF in SRC; fails if the range is outside SRC.
 * FILE and WHAT name the object in the message ("zip member 'archive/data/0'"). */
ck_status cki_model_storage(ck_model *m, const cki_source *src, uint64_t off, uint64_t len,
                            ck_dtype dtype, const char *what, cki_storage **out);
/* A storage over bytes the model will own and free (cki_malloc'd with m->ctx). */
ck_status cki_model_storage_owned(ck_model *m, uint8_t *bytes, uint64_t len, ck_dtype dtype,
                                  cki_storage **out);
/* A storage of LEN bytes produced by FETCH (copied; the model calls
 * fetch->free on its state when it closes, or now if this fails). */
ck_status cki_model_storage_fetch(ck_model *m, uint64_t len, ck_dtype dtype,
                                  const cki_fetch *fetch, cki_storage **out);
/* Adds a tensor; copies NAME, SHAPE and STRIDE (NULL: dense) into the arena,
 * validates the view against the storage and rejects a repeated name.
 * FILE names the input in messages. On success *INDEX (may be NULL) is set. */
ck_status cki_model_add_tensor(ck_model *m, const char *file, const char *name, size_t name_len,
                               ck_dtype dtype, int ndim, const int64_t *shape,
                               const int64_t *stride, uint64_t offset, cki_storage *st,
                               unsigned flags, size_t *index);
/* Room for TENSORS tensors and STORAGES storages in all (a reader that knows
 * its counts up front avoids the doubling of the arrays). */
ck_status cki_model_reserve(ck_model *m, size_t tensors, size_t storages);
/* cki_model_add_tensor for a dense tensor whose NAME (NUL-terminated) and
 * SHAPE already live in the model's arena: they are kept, not copied. */
ck_status cki_model_add_tensor_kept(ck_model *m, const char *file, const char *name,
                                    size_t name_len, ck_dtype dtype, int ndim,
                                    const int64_t *shape, cki_storage *st, size_t *index);
/* cki_model_add_tensor whose NAME (NUL-terminated) already lives in the
 * model's arena: kept, not copied (SHAPE and STRIDE are copied). */
ck_status cki_model_add_tensor_named(ck_model *m, const char *file, const char *name,
                                     size_t name_len, ck_dtype dtype, int ndim,
                                     const int64_t *shape, const int64_t *stride, uint64_t offset,
                                     cki_storage *st, unsigned flags, size_t *index);
/* Adds or replaces KEY -> VALUE (copied). */
ck_status cki_model_set_meta(ck_model *m, const char *key, size_t key_len, const char *val,
                             size_t val_len);
/* Records a tensor the reader cannot represent (copied), with the reason. */
ck_status cki_model_add_skipped(ck_model *m, const char *name, const char *why);
/* Takes ownership of JSON (cki_malloc'd with m->ctx). */
void cki_model_set_values(ck_model *m, char *json);
/* Removes tensors for which KEEP[i] is 0, keeping order (selection). */
ck_status cki_model_filter(ck_model *m, const unsigned char *keep);
/* Renames tensor I (copied); fails on a collision, naming both. O(n): for
 * many renames, set the names directly and call cki_model_reindex once. */
ck_status cki_model_rename(ck_model *m, size_t i, const char *name);
/* Readies every source of M for streaming (sequential read-ahead). */
void cki_model_streaming(const ck_model *m);
/* Rebuilds the name index; fails if two tensors now share a name. */
ck_status cki_model_reindex(ck_model *m);

#endif
