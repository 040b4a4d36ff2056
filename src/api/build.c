/*
 * build.c -- models built in memory: ck_model_new, ck_model_add,
 * ck_model_set_meta (ckptkit.h). The tensors' bytes are borrowed from the
 * caller; each becomes a storage with no file behind it, which the writers
 * read in place. Checks: a dtype of the table, 0..64 dimensions, no negative
 * size, an element count and byte length that do not overflow and that match
 * LEN exactly, a name not used before.
 */
#include "../formats/model.h"

ck_status ck_model_new(ck_ctx *ctx, const char *name, ck_model **out)
{
    ck_model *m;
    ck_status st;
    if (!ctx || !name || !out) return cki_fail(ctx, CK_EARG, "ck_model_new: missing argument");
    cki_clear(ctx);
    if ((st = cki_model_new(ctx, name, &m))) return st;
    m->format_name = "memory";
    *out = m;
    return CK_OK;
}

/* An existing storage over exactly these bytes, or NULL. */
static cki_storage *same_storage(const ck_model *m, const void *data, uint64_t len, ck_dtype dt)
{
    for (size_t i = m->storage_count; i-- > 0;) {
        cki_storage *s = m->storages[i];
        if (!s->src && !s->owned && s->data == data && s->len == len && s->dtype == dt && len)
            return s;
    }
    return NULL;
}

ck_status ck_model_add(ck_model *m, const char *name, ck_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, uint64_t len)
{
    uint64_t numel = 1, need;
    size_t existing;
    cki_storage *s;
    ck_status st;
    if (!m || !name || (ndim && !shape) || (len && !data))
        return cki_fail(m ? m->ctx : NULL, CK_EARG, "ck_model_add: missing argument");
    if (!cki_dtype_info_of(dtype))
        return cki_fail(m->ctx, CK_EARG, "%s: tensor '%s': invalid dtype %d", m->path, name,
                        (int)dtype);
    if (ndim < 0 || ndim > CKI_MAX_DIMS)
        return cki_fail(m->ctx, CK_EARG, "%s: tensor '%s': %d dimensions (at most %d)", m->path,
                        name, ndim, CKI_MAX_DIMS);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return cki_fail(m->ctx, CK_EARG, "%s: tensor '%s': dimension %d is %lld", m->path,
                            name, d, (long long)shape[d]);
        if (cki_mul_u64(&numel, numel, (uint64_t)shape[d]))
            return cki_fail(m->ctx, CK_EARG, "%s: tensor '%s': element count overflows", m->path,
                            name);
    }
    if (cki_dtype_nbytes(dtype, numel, &need))
        return cki_fail(m->ctx, CK_EARG, "%s: tensor '%s': byte count overflows", m->path, name);
    if (need != len)
        return cki_fail(m->ctx, CK_EARG,
                        "%s: tensor '%s': %llu bytes given but shape x %s needs %llu", m->path,
                        name, (unsigned long long)len, ck_dtype_name(dtype),
                        (unsigned long long)need);
    if (ck_model_find(m, name, &existing) == CK_OK)
        return cki_fail(m->ctx, CK_EARG, "%s: tensor '%s' given twice", m->path, name);
    if (!(s = same_storage(m, data, len, dtype))) {
        if ((st = cki_model_storage_owned(m, NULL, len, dtype, &s))) return st;
        if (len) s->data = data;
    }
    return cki_model_add_tensor(m, m->path, name, strlen(name), dtype, ndim, shape, NULL, 0, s, 0,
                                NULL);
}

ck_status ck_model_set_meta(ck_model *m, const char *key, const char *value)
{
    if (!m || !key || !value)
        return cki_fail(m ? m->ctx : NULL, CK_EARG, "ck_model_set_meta: missing argument");
    return cki_model_set_meta(m, key, strlen(key), value, strlen(value));
}
