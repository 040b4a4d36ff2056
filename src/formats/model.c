/*
 * model.c -- building a ck_model: sources, storages, tensors with unique
 * names, metadata and the non-tensor values document.
 */
#include "model.h"

static int grow(ck_ctx *ctx, void **arr, size_t *cap, size_t count, size_t esize)
{
    size_t ncap;
    void *n;
    if (count < *cap) return 0;
    ncap = *cap ? *cap * 2 : 16;
    if (ncap < *cap) return -1;
    n = cki_realloc(ctx, *arr, ncap * esize);
    if (!n) return -1;
    *arr = n;
    *cap = ncap;
    return 0;
}

ck_status cki_model_new(ck_ctx *ctx, const char *path, ck_model **out)
{
    ck_model *m = cki_calloc(ctx, 1, sizeof *m);
    if (!m) return CK_ENOMEM;
    m->ctx = ctx;
    m->path = cki_strdup(ctx, path);
    if (!m->path) {
        cki_free(ctx, m);
        return CK_ENOMEM;
    }
    m->format_name = "?";
    cki_arena_init(&m->arena, ctx);
    cki_map_init(&m->names, ctx);
    *out = m;
    return CK_OK;
}

void ck_model_close(ck_model *m)
{
    ck_ctx *ctx;
    if (!m) return;
    ctx = m->ctx;
    if (m->driver_free) m->driver_free(m, m->driver_data);
    for (size_t i = 0; i < m->storage_count; i++) {
        cki_free(ctx, m->storages[i]->owned);
        if (m->storages[i]->fetch.free) m->storages[i]->fetch.free(ctx, m->storages[i]->fetch.state);
    }
    cki_free(ctx, m->storages);
    for (size_t i = 0; i < m->source_count; i++) cki_source_close(ctx, m->sources[i]);
    cki_free(ctx, m->sources);
    cki_free(ctx, m->tensors);
    cki_map_free(&m->names);
    cki_free(ctx, m->meta_keys);
    cki_free(ctx, m->meta_vals);
    cki_free(ctx, m->values_json);
    cki_free(ctx, m->skipped_names);
    cki_free(ctx, m->skipped_why);
    cki_arena_free(&m->arena);
    cki_free(ctx, m->path);
    cki_free(ctx, m);
}

ck_status cki_model_add_source(ck_model *m, cki_source *src)
{
    if (grow(m->ctx, (void **)&m->sources, &m->source_cap, m->source_count, sizeof *m->sources)) {
        cki_source_close(m->ctx, src);
        return CK_ENOMEM;
    }
    m->sources[m->source_count++] = src;
    return CK_OK;
}

/* A zeroed storage record in the model's arena (freed with it). */
static cki_storage *new_storage(ck_model *m)
{
    cki_storage *s = cki_arena_alloc(&m->arena, sizeof *s);
    if (s) memset(s, 0, sizeof *s);
    return s;
}

static ck_status push_storage(ck_model *m, cki_storage *s)
{
    if (grow(m->ctx, (void **)&m->storages, &m->storage_cap, m->storage_count,
             sizeof *m->storages))
        return CK_ENOMEM;
    m->storages[m->storage_count++] = s;
    s->id = m->storage_count;
    return CK_OK;
}

ck_status cki_model_storage(ck_model *m, const cki_source *src, uint64_t off, uint64_t len,
                            ck_dtype dtype, const char *what, cki_storage **out)
{
    cki_storage *s;
    ck_status st;
    if (cki_out_of(off, len, src->len))
        return cki_fail(m->ctx, CK_EFORMAT,
                        "%s: %s: bytes [%llu, %llu) lie outside the file of %llu bytes", src->path,
                        what, (unsigned long long)off, (unsigned long long)(off + len),
                        (unsigned long long)src->len);
    s = new_storage(m);
    if (!s) return CK_ENOMEM;
    s->src = src;
    /* a web window over a large file may move (cki_source_view): its storages
     * keep no pointer into it and are read with cki_source_pread */
    if (src->view_len < src->len) s->data = NULL;
    else s->data = src->base ? src->base + off : (const uint8_t *)"";
    s->len = len;
    s->file_off = off;
    s->dtype = dtype;
    if ((st = push_storage(m, s))) return st;
    *out = s;
    return CK_OK;
}

ck_status cki_model_storage_owned(ck_model *m, uint8_t *bytes, uint64_t len, ck_dtype dtype,
                                  cki_storage **out)
{
    cki_storage *s = new_storage(m);
    ck_status st;
    if (!s) {
        cki_free(m->ctx, bytes);
        return CK_ENOMEM;
    }
    s->data = bytes ? bytes : (const uint8_t *)"";
    s->owned = bytes;
    s->len = len;
    s->dtype = dtype;
    if ((st = push_storage(m, s))) {
        cki_free(m->ctx, bytes);
        return st;
    }
    *out = s;
    return CK_OK;
}

ck_status cki_model_storage_fetch(ck_model *m, uint64_t len, ck_dtype dtype,
                                  const cki_fetch *fetch, cki_storage **out)
{
    cki_storage *s = new_storage(m);
    ck_status st;
    if (!s) {
        if (fetch->free) fetch->free(m->ctx, fetch->state);
        return CK_ENOMEM;
    }
    s->len = len;
    s->dtype = dtype;
    s->fetch = *fetch;
    if ((st = push_storage(m, s))) {
        if (fetch->free) fetch->free(m->ctx, fetch->state);
        return st;
    }
    *out = s;
    return CK_OK;
}


ck_status cki_model_reserve(ck_model *m, size_t tensors, size_t storages)
{
    if (tensors > m->cap) {
        cki_tensor *n = cki_realloc(m->ctx, m->tensors, tensors * sizeof *n);
        if (!n) return CK_ENOMEM;
        m->tensors = n;
        m->cap = tensors;
    }
    if (storages > m->storage_cap) {
        cki_storage **n = cki_realloc(m->ctx, m->storages, storages * sizeof *n);
        if (!n) return CK_ENOMEM;
        m->storages = n;
        m->storage_cap = storages;
    }
    if (cki_map_reserve(&m->names, tensors)) return CK_ENOMEM;
    return CK_OK;
}

/* add_tensor's KEPT: what already lives in the model's arena */
enum { KEEP_NAME = 1, KEEP_SHAPE = 2 };

static ck_status add_tensor(ck_model *m, const char *file, const char *name, size_t name_len,
                            int kept, ck_dtype dtype, int ndim, const int64_t *shape,
                            const int64_t *stride, uint64_t offset, cki_storage *st,
                            unsigned flags, size_t *index);

ck_status cki_model_add_tensor(ck_model *m, const char *file, const char *name, size_t name_len,
                               ck_dtype dtype, int ndim, const int64_t *shape,
                               const int64_t *stride, uint64_t offset, cki_storage *st,
                               unsigned flags, size_t *index)
{
    return add_tensor(m, file, name, name_len, 0, dtype, ndim, shape, stride, offset, st, flags,
                      index);
}

ck_status cki_model_add_tensor_kept(ck_model *m, const char *file, const char *name,
                                    size_t name_len, ck_dtype dtype, int ndim,
                                    const int64_t *shape, cki_storage *st, size_t *index)
{
    return add_tensor(m, file, name, name_len, KEEP_NAME | KEEP_SHAPE, dtype, ndim, shape, NULL, 0,
                      st, 0, index);
}

ck_status cki_model_add_tensor_named(ck_model *m, const char *file, const char *name,
                                     size_t name_len, ck_dtype dtype, int ndim,
                                     const int64_t *shape, const int64_t *stride, uint64_t offset,
                                     cki_storage *st, unsigned flags, size_t *index)
{
    return add_tensor(m, file, name, name_len, KEEP_NAME, dtype, ndim, shape, stride, offset, st,
                      flags, index);
}

static ck_status add_tensor(ck_model *m, const char *file, const char *name, size_t name_len,
                            int kept, ck_dtype dtype, int ndim, const int64_t *shape,
                            const int64_t *stride, uint64_t offset, cki_storage *st,
                            unsigned flags, size_t *index)
{
    cki_tensor *t;
    size_t existing;
    ck_status s;
    uint64_t limit = m->ctx ? m->ctx->limits[CK_LIMIT_TENSORS] : 0;

    if (limit && m->count >= limit)
        return cki_fail(m->ctx, CK_ELIMIT, "%s: more than %llu tensors (limit)", file,
                        (unsigned long long)limit);
    if (ndim < 0 || ndim > CKI_MAX_DIMS)
        return cki_fail(m->ctx, CK_EFORMAT, "%s: tensor '%.*s': %d dimensions (at most %d)", file,
                        (int)(name_len > 200 ? 200 : name_len), name, ndim, CKI_MAX_DIMS);
    if (grow(m->ctx, (void **)&m->tensors, &m->cap, m->count, sizeof *m->tensors))
        return CK_ENOMEM;
    t = &m->tensors[m->count];
    memset(t, 0, sizeof *t);
    t->name = kept & KEEP_NAME ? name : cki_arena_strndup(&m->arena, name, name_len);
    t->shape = kept & KEEP_SHAPE
                   ? (int64_t *)shape
                   : cki_arena_alloc_ptrs(&m->arena, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
    if (!t->name || !t->shape) return CK_ENOMEM;
    if (ndim && !(kept & KEEP_SHAPE)) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->dtype = dtype;
    t->ndim = ndim;
    t->offset = offset;
    t->storage = st;
    t->flags = flags;
    /* checked on the caller's strides; copied only when not dense after all */
    t->stride = (int64_t *)stride;
    if ((s = cki_tensor_validate(m->ctx, file, t))) {
        t->stride = NULL;
        return s;
    }
    if (!stride || !t->stride || cki_tensor_is_dense(t)) {
        t->stride = NULL;
    } else {
        t->stride = cki_arena_alloc_ptrs(&m->arena, sizeof(int64_t) * (size_t)(ndim ? ndim : 1));
        if (!t->stride) return CK_ENOMEM;
        if (ndim) memcpy(t->stride, stride, sizeof(int64_t) * (size_t)ndim);
    }
    switch (cki_map_put(&m->names, t->name, name_len, m->count, &existing)) {
    case 0: break;
    case 1:
        return cki_fail(m->ctx, CK_EFORMAT, "%s: tensor '%s' appears twice", file, t->name);
    default: return CK_ENOMEM;
    }
    if (index) *index = m->count;
    m->count++;
    return CK_OK;
}

ck_status cki_model_set_meta(ck_model *m, const char *key, size_t key_len, const char *val,
                             size_t val_len)
{
    char *k, *v;
    v = cki_arena_strndup(&m->arena, val, val_len);
    if (!v) return CK_ENOMEM;
    for (size_t i = 0; i < m->meta_count; i++) {
        if (strlen(m->meta_keys[i]) == key_len && memcmp(m->meta_keys[i], key, key_len) == 0) {
            m->meta_vals[i] = v;
            return CK_OK;
        }
    }
    k = cki_arena_strndup(&m->arena, key, key_len);
    if (!k) return CK_ENOMEM;
    if (m->meta_count == m->meta_cap) {
        size_t cap = m->meta_cap;
        if (grow(m->ctx, (void **)&m->meta_keys, &cap, m->meta_count, sizeof(char *)))
            return CK_ENOMEM;
        cap = m->meta_cap;
        if (grow(m->ctx, (void **)&m->meta_vals, &cap, m->meta_count, sizeof(char *)))
            return CK_ENOMEM;
        m->meta_cap = cap;
    }
    m->meta_keys[m->meta_count] = k;
    m->meta_vals[m->meta_count] = v;
    m->meta_count++;
    return CK_OK;
}

ck_status cki_model_add_skipped(ck_model *m, const char *name, const char *why)
{
    const char *n = cki_arena_strdup(&m->arena, name), *w = cki_arena_strdup(&m->arena, why);
    if (!n || !w) return CK_ENOMEM;
    if (m->skipped_count == m->skipped_cap) {
        size_t cap = m->skipped_cap;
        if (grow(m->ctx, (void **)&m->skipped_names, &cap, m->skipped_count, sizeof(char *)))
            return CK_ENOMEM;
        cap = m->skipped_cap;
        if (grow(m->ctx, (void **)&m->skipped_why, &cap, m->skipped_count, sizeof(char *)))
            return CK_ENOMEM;
        m->skipped_cap = cap;
    }
    m->skipped_names[m->skipped_count] = n;
    m->skipped_why[m->skipped_count] = w;
    m->skipped_count++;
    return CK_OK;
}

void cki_model_set_values(ck_model *m, char *json)
{
    cki_free(m->ctx, m->values_json);
    m->values_json = json;
}

ck_status cki_model_reindex(ck_model *m)
{
    size_t dummy;
    cki_map_free(&m->names);
    cki_map_init(&m->names, m->ctx);
    for (size_t i = 0; i < m->count; i++) {
        const char *n = m->tensors[i].name;
        int r = cki_map_put(&m->names, n, strlen(n), i, &dummy);
        if (r < 0) return CK_ENOMEM;
        if (r == 1)
            return cki_fail(m->ctx, CK_EFORMAT, "%s: tensor name '%s' would appear twice", m->path,
                            n);
    }
    return CK_OK;
}

ck_status cki_model_filter(ck_model *m, const unsigned char *keep)
{
    size_t j = 0;
    for (size_t i = 0; i < m->count; i++)
        if (keep[i]) m->tensors[j++] = m->tensors[i];
    m->count = j;
    return cki_model_reindex(m);
}

ck_status cki_model_rename(ck_model *m, size_t i, const char *name)
{
    size_t other;
    const char *old;
    if (i >= m->count) return CK_EARG;
    old = m->tensors[i].name;
    if (strcmp(old, name) == 0) return CK_OK;
    if (!cki_map_get(&m->names, name, strlen(name), &other))
        return cki_fail(m->ctx, CK_EFORMAT,
                        "%s: renaming '%s' to '%s' collides with the tensor already named '%s'",
                        m->path, old, name, m->tensors[other].name);
    m->tensors[i].name = cki_arena_strdup(&m->arena, name);
    if (!m->tensors[i].name) return CK_ENOMEM;
    return cki_model_reindex(m);
}

void cki_model_streaming(const ck_model *m)
{
    for (size_t i = 0; m && i < m->source_count; i++) cki_source_sequential(m->sources[i]);
}
