/*
 * verify.c -- exact comparison of two checkpoints: same names, dtypes,
 * shapes and bytes. Values are read in chunks through the common read path,
 * so strided, big-endian and compressed storages compare by value.
 */
#include "convert.h"

#define CHUNK (1u << 20)

static ck_status compare_values(ck_ctx *ctx, const cki_tensor *a, const cki_tensor *b,
                                uint8_t *ba, uint8_t *bb, int *same, uint64_t *first_diff,
                                uint64_t *done)
{
    unsigned es = cki_dtype_size(a->dtype);
    uint64_t per = es ? CHUNK / es : a->numel;
    ck_status st;
    *same = 1;
    if (!es) { /* sub-byte: whole */
        if (a->nbytes > CHUNK)
            return cki_fail(ctx, CK_EUNSUPPORTED, "tensor '%s': too large a %s tensor to compare",
                            a->name, ck_dtype_name(a->dtype));
        if ((st = cki_tensor_read(ctx, a, 0, a->numel, CK_DT_KEEP, ba, CHUNK, NULL))) return st;
        if ((st = cki_tensor_read(ctx, b, 0, b->numel, CK_DT_KEEP, bb, CHUNK, NULL))) return st;
        if (memcmp(ba, bb, (size_t)a->nbytes)) {
            *same = 0;
            *first_diff = 0;
        }
        return CK_OK;
    }
    for (uint64_t first = 0; first < a->numel; first += per) {
        uint64_t n = a->numel - first < per ? a->numel - first : per;
        if ((st = cki_tensor_read(ctx, a, first, n, CK_DT_KEEP, ba, CHUNK, NULL))) return st;
        if ((st = cki_tensor_read(ctx, b, first, n, CK_DT_KEEP, bb, CHUNK, NULL))) return st;
        *done += n * es;
        if (ctx->progress && ctx->progress(ctx->progress_user, *done, 0))
            return cki_fail(ctx, CK_EINTR, "interrupted");
        if (memcmp(ba, bb, (size_t)(n * es))) {
            for (uint64_t i = 0; i < n; i++) {
                if (memcmp(ba + i * es, bb + i * es, es)) {
                    *first_diff = first + i;
                    break;
                }
            }
            *same = 0;
            return CK_OK;
        }
    }
    return CK_OK;
}

ck_status ck_verify(ck_ctx *ctx, ck_model *a, ck_model *b, ck_diff_fn fn, void *user, int *same)
{
    uint8_t *ba = NULL, *bb = NULL;
    ck_status st = CK_OK;
    int all_same = 1, stop = 0;
    uint64_t done = 0;
    if (!ctx || !a || !b || !same) return cki_fail(ctx, CK_EARG, "ck_verify: missing argument");
    cki_model_streaming(a);
    cki_model_streaming(b);
    ba = cki_malloc(ctx, CHUNK);
    bb = cki_malloc(ctx, CHUNK);
    if (!ba || !bb) { st = CK_ENOMEM; goto out; }
    for (size_t i = 0; i < a->count && !stop; i++) {
        const cki_tensor *ta = &a->tensors[i], *tb;
        size_t j;
        ck_diff_item it = {CK_DIFF_ONLY_A, ta->name, i, (size_t)-1, 0};
        if (cki_map_get(&b->names, ta->name, strlen(ta->name), &j)) {
            all_same = 0;
            if (fn) stop = fn(user, &it);
            continue;
        }
        tb = &b->tensors[j];
        it.index_b = j;
        if (ta->dtype != tb->dtype) {
            it.kind = CK_DIFF_DTYPE;
        } else if (ta->ndim != tb->ndim ||
                   memcmp(ta->shape, tb->shape, sizeof(int64_t) * (size_t)ta->ndim)) {
            it.kind = CK_DIFF_SHAPE;
        } else {
            int eq;
            if ((st = compare_values(ctx, ta, tb, ba, bb, &eq, &it.first_elem, &done))) goto out;
            if (eq) continue;
            it.kind = CK_DIFF_VALUES;
        }
        all_same = 0;
        if (fn) stop = fn(user, &it);
    }
    for (size_t j = 0; j < b->count && !stop; j++) {
        size_t i;
        const cki_tensor *tb = &b->tensors[j];
        if (!cki_map_get(&a->names, tb->name, strlen(tb->name), &i)) continue;
        ck_diff_item it = {CK_DIFF_ONLY_B, tb->name, (size_t)-1, j, 0};
        all_same = 0;
        if (fn) stop = fn(user, &it);
    }
    *same = all_same;
out:
    cki_free(ctx, ba);
    cki_free(ctx, bb);
    return st;
}
