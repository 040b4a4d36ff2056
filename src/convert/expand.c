/*
 * expand.c -- bounded output. A view can declare far more elements than its
 * storage holds: a stride of 0 repeats one element along a dimension
 * (PyTorch's expand()/broadcast_to), so a 4-byte storage can stand for a
 * [100000, 100000] float tensor. Writing it dense would produce 40 GB from a
 * file of a few hundred bytes and fill the disk. Before anything is written,
 * the planned tensor bytes of the output are compared with the input's size:
 *
 *   planned output bytes <= CKI_EXPAND_FACTOR x input bytes
 *
 * (input bytes: the files the model reads, plus storages not in them)
 * (16: the largest legitimate growth is a cast from a 4-bit type to a 64-bit
 * one, 16 x; every other cast and every dense view stays within it). Above
 * that the conversion is refused unless allow_expand is set, naming the
 * tensor that expands most (planned bytes against the bytes of storage its
 * view can reach) with both sizes.
 *
 * Block-quantised types can grow more when decoded (IQ1_S, 256 elements in 50
 * bytes, is 20.5 x as F32 and 41 x as F64), so a dense quantised tensor that
 * is dequantised adds its growth beyond 16 x to the limit. The blocks counted
 * that way never add up to more than the input's bytes, so overlapping
 * tensors cannot multiply the allowance.
 */
#include <stdio.h>

#include "../formats/model.h"
#include "convert.h"

static void human(char *b, size_t n, uint64_t v)
{
    if (v >= (1ull << 30)) snprintf(b, n, "%.1f GiB", (double)v / (double)(1ull << 30));
    else if (v >= (1ull << 20)) snprintf(b, n, "%.1f MiB", (double)v / (double)(1ull << 20));
    else if (v >= 1024) snprintf(b, n, "%.1f KiB", (double)v / 1024.0);
    else snprintf(b, n, "%llu bytes", (unsigned long long)v);
}

/* Bytes of storage the view of T can reach (its storage's length when the
 * view spans it, less for a view of a part). */
static uint64_t reach(const cki_tensor *t)
{
    return t->storage ? t->storage->len : 0;
}

ck_status cki_plan_check_expand(ck_ctx *ctx, const ck_model *in, const char *out,
                                const cki_plan *plan)
{
    return cki_check_expand(ctx, in, out, plan->tensors, plan->count, sizeof *plan->tensors);
}

ck_status cki_check_expand(ck_ctx *ctx, const ck_model *in, const char *out,
                           const cki_out_tensor *first, size_t count, size_t stride)
{
    uint64_t input = 0, total = 0, limit, worst_gain = 0, extra = 0, decoded = 0;
    const cki_out_tensor *worst = NULL;
    char a[32], b[32], c[32], d[32], shape[256];
    size_t k = 0;

    /* the files read, plus bytes that are not in them (inflated zip members,
     * models built in memory, storages fetched on demand) */
    for (size_t i = 0; i < in->source_count; i++) input += in->sources[i]->len;
    for (size_t i = 0; i < in->storage_count; i++)
        if (in->storages[i]->owned || !in->storages[i]->src) input += in->storages[i]->len;
    for (size_t i = 0; i < count; i++) {
        const cki_out_tensor *ot =
            (const cki_out_tensor *)(const void *)((const char *)first + i * stride);
        uint64_t r = reach(ot->src);
        if (cki_add_u64(&total, total, ot->nbytes)) total = UINT64_MAX;
        if (ck_dtype_is_quantized(ot->src->dtype) && !ck_dtype_is_quantized(ot->dtype) &&
            cki_tensor_is_dense(ot->src) && ot->src->nbytes <= input - decoded &&
            ot->nbytes / CKI_EXPAND_FACTOR > ot->src->nbytes) {
            decoded += ot->src->nbytes;
            if (cki_add_u64(&extra, extra, ot->nbytes - ot->src->nbytes * CKI_EXPAND_FACTOR))
                extra = UINT64_MAX;
        }
        if (ot->nbytes > r && ot->nbytes - r > worst_gain) {
            worst_gain = ot->nbytes - r;
            worst = ot;
        }
    }
    if (cki_mul_u64(&limit, input, CKI_EXPAND_FACTOR) || cki_add_u64(&limit, limit, extra))
        limit = UINT64_MAX;
    if (total <= limit) return CK_OK;
    human(a, sizeof a, total);
    human(b, sizeof b, input);
    if (!worst)
        return cki_fail(ctx, CK_ELIMIT,
                        "%s: output would hold %s of tensor data, more than %d x the input's %s; "
                        "use --allow-expand to write it anyway",
                        out, a, CKI_EXPAND_FACTOR, b);
    shape[k++] = '[';
    for (int dim = 0; dim < worst->src->ndim && k < sizeof shape - 32; dim++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%lld", dim ? ", " : "",
                              (long long)worst->src->shape[dim]);
    snprintf(shape + k, sizeof shape - k, "]");
    human(c, sizeof c, worst->nbytes);
    human(d, sizeof d, reach(worst->src));
    return cki_fail(ctx, CK_ELIMIT,
                    "%s: output would hold %s of tensor data, more than %d x the input's %s: "
                    "tensor '%s' declares %s x %s = %s over %s of storage (a broadcast or "
                    "overlapping view); use --allow-expand to write it anyway",
                    out, a, CKI_EXPAND_FACTOR, b, worst->name, shape,
                    ck_dtype_name(worst->dtype), c, d);
}
