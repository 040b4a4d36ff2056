/*
 * tensor_blocks.c -- cki_tensor_read for ggml's block-quantised dtypes: the
 * casts to and from them are block codecs behind the one read interface.
 *
 *   quantised -> itself:  the blocks' bytes, copied (blocks are byte strings:
 *                         never swapped, not even in big-endian files);
 *   quantised -> float:   dequantised to F32 (ggml_dequant.c), then cast;
 *   float -> quantised:   read as F32 (dense aligned F32 in a mapped file:
 *                         in place), checked finite, quantised (ggml_quant.c);
 *   quantised -> another quantised type: dequantised, then quantised.
 * FIRST and COUNT must be whole blocks (COUNT may stop at the tensor's end,
 * which is always a block boundary). Memory: one chunk of floats on the stack
 * (per thread: large quantising reads use two, see PAR_MIN).
 */
#include <pthread.h>
#include <stdio.h>

#include "cast.h"
#include "ggml_codec.h"

#define CHUNK_FLOATS 8192 /* a multiple of every block size (32..256) */
/* Quantising reads of at least this many elements run on two threads (the
 * second half of the range on a new one): deterministic, as each half's
 * blocks are encoded exactly as they would be alone. */
#define PAR_MIN (1u << 18)

static ck_status small(ck_ctx *ctx, const cki_tensor *t, size_t cap)
{
    return cki_fail(ctx, CK_EARG, "tensor '%s': destination of %zu bytes is too small", t->name,
                    cap);
}

/* Elements [first, first+n) of T as float32 into F (n <= CHUNK_FLOATS, whole blocks). */
static ck_status floats(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t n, float *f)
{
    if (ck_dtype_is_quantized(t->dtype)) {
        unsigned bb, blk = ck_dtype_block(t->dtype, &bb);
        const uint8_t *p = cki_tensor_bytes(t);
        if (!p)
            return cki_fail(ctx, CK_EUNSUPPORTED,
                            "tensor '%s': %s blocks are not a dense run in memory",
                            t->name, ck_dtype_name(t->dtype));
        cki_ggml_dequant(t->dtype, p + first / blk * bb, (size_t)(n / blk), f);
        return CK_OK;
    }
    return cki_tensor_read(ctx, t, first, n, CK_DT_F32, f, (size_t)n * sizeof(float), NULL);
}

/* Elements [first, first+n) of T in place when T is dense little-endian
 * float32 in memory (a mapped file), aligned for float: the encoders read
 * them there, without a copy into the chunk. Else NULL. */
static const float *direct_f32(const cki_tensor *t, uint64_t first)
{
    const uint8_t *p = t->dtype == CK_DT_F32 ? cki_tensor_bytes(t) : NULL;
    if (!p || (uintptr_t)p % _Alignof(float)) return NULL;
    return (const float *)(const void *)p + first;
}

/* Quantises elements [first, first+count) of T (whole blocks of AS) into OUT.
 * A non-finite value stops it with CK_EFORMAT and its index in *BAD, without
 * a message (CTX may be NULL: a second thread must not write the context). */
static ck_status encode_range(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t count,
                              ck_dtype as, uint8_t *out, int64_t *bad)
{
    unsigned bb, blk = ck_dtype_block(as, &bb);
    float f[CHUNK_FLOATS];
    *bad = -1;
    while (count) {
        uint64_t n = count < CHUNK_FLOATS ? count : CHUNK_FLOATS;
        int64_t r;
        const float *src = direct_f32(t, first);
        if (!src) {
            ck_status st = floats(ctx, t, first, n, f);
            if (st) return st;
            src = f;
        }
        if ((r = cki_ggml_quant(as, src, (size_t)(n / blk), out)) >= 0) {
            *bad = (int64_t)first + r;
            return CK_EFORMAT;
        }
        out += n / blk * bb;
        first += n;
        count -= n;
    }
    return CK_OK;
}

typedef struct part {
    const cki_tensor *t;
    uint64_t first, count;
    ck_dtype as;
    uint8_t *out;
    ck_status st;
    int64_t bad;
} part;

static void *encode_part(void *arg)
{
    part *p = arg;
    p->st = encode_range(NULL, p->t, p->first, p->count, p->as, p->out, &p->bad);
    return NULL;
}

/* Quantises COUNT elements from FIRST, on two threads when there are many. */
static ck_status encode(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t count,
                        ck_dtype as, uint8_t *out)
{
    unsigned bb, blk = ck_dtype_block(as, &bb);
    uint64_t half = count / 2 / CHUNK_FLOATS * CHUNK_FLOATS;
    int64_t bad = -1;
    ck_status st;
    pthread_t th;
    part p;
    if (count >= PAR_MIN && half) {
        p.t = t;
        p.first = first + half;
        p.count = count - half;
        p.as = as;
        p.out = out + half / blk * bb;
        p.st = CK_OK;
        p.bad = -1;
        if (pthread_create(&th, NULL, encode_part, &p) == 0) {
            st = encode_range(ctx, t, first, half, as, out, &bad);
            pthread_join(th, NULL);
            if (!st && p.st) {
                st = p.st;
                bad = p.bad;
            }
            goto done;
        }
    }
    st = encode_range(ctx, t, first, count, as, out, &bad);
done:
    if (st == CK_EFORMAT && bad >= 0) {
        float f[256];
        uint64_t b0 = (uint64_t)bad / blk * blk;
        if (floats(ctx, t, b0, blk, f)) return ck_last_status(ctx);
        return cki_fail(ctx, CK_EFORMAT,
                        "tensor '%s': element %llu is %s; %s cannot encode it (quantise only "
                        "finite tensors, or keep this one with --dtype-exclude)",
                        t->name, (unsigned long long)bad,
                        f[(uint64_t)bad - b0] != f[(uint64_t)bad - b0] ? "NaN" : "infinite",
                        ck_dtype_name(as));
    }
    if (st && !ck_errmsg(ctx)[0])
        return cki_fail(ctx, st, "tensor '%s': its values could not be read to quantise them",
                        t->name);
    return st;
}

ck_status cki_tensor_read_blocks(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t count,
                                 ck_dtype as, void *dst, size_t dst_cap)
{
    const ck_dtype from = t->dtype;
    const int qin = ck_dtype_is_quantized(from), qout = ck_dtype_is_quantized(as);
    unsigned bb_in, blk_in = ck_dtype_block(from, &bb_in);
    unsigned bb_out, blk_out = ck_dtype_block(as, &bb_out);
    unsigned blk = blk_in > blk_out ? blk_in : blk_out;
    uint8_t *out = dst;
    uint64_t need;
    float f[CHUNK_FLOATS];

    if (first % blk || (count % blk && first + count != t->numel))
        return cki_fail(ctx, CK_EUNSUPPORTED,
                        "tensor '%s': read of elements [%llu, +%llu) would split %u-element "
                        "blocks",
                        t->name, (unsigned long long)first, (unsigned long long)count, blk);
    if (qin && as == from) {
        const uint8_t *p = cki_tensor_bytes(t);
        if (!p)
            return cki_fail(ctx, CK_EUNSUPPORTED,
                            "tensor '%s': %s blocks are not a dense run in memory",
                            t->name, ck_dtype_name(from));
        need = count / blk_in * bb_in;
        if (need > dst_cap) return small(ctx, t, dst_cap);
        memcpy(dst, p + first / blk_in * bb_in, (size_t)need);
        return CK_OK;
    }
    if (qin && !cki_ggml_can_dequant(from))
        return cki_fail(ctx, CK_EUNSUPPORTED, "tensor '%s': ckptkit cannot dequantise %s",
                        t->name, ck_dtype_name(from));
    if (qout && !cki_ggml_can_quant(as))
        return cki_fail(ctx, CK_EUNSUPPORTED, "tensor '%s': ckptkit cannot quantise to %s",
                        t->name, ck_dtype_name(as));
    if (!qin && !(ck_dtype_is_float(from) && cki_cast_supported(from, CK_DT_F32)))
        return cki_fail(ctx, CK_EUNSUPPORTED, "tensor '%s': cannot quantise %s values to %s",
                        t->name, ck_dtype_name(from), ck_dtype_name(as));
    if (!qout && !cki_cast_supported(CK_DT_F32, as))
        return cki_fail(ctx, CK_EUNSUPPORTED, "tensor '%s': cannot convert %s to %s", t->name,
                        ck_dtype_name(from), ck_dtype_name(as));
    if (qout) {
        if (count % blk_out)
            return cki_fail(ctx, CK_EUNSUPPORTED,
                            "tensor '%s': %llu elements are not whole %u-element blocks of %s",
                            t->name, (unsigned long long)count, blk_out, ck_dtype_name(as));
        need = count / blk_out * bb_out;
    } else if (cki_mul_u64(&need, count, cki_dtype_size(as))) {
        return small(ctx, t, dst_cap);
    }
    if (need > dst_cap) return small(ctx, t, dst_cap);
    if (qout) return encode(ctx, t, first, count, as, out);
    while (count) {
        uint64_t n = count < CHUNK_FLOATS ? count : CHUNK_FLOATS;
        ck_status st = floats(ctx, t, first, n, f);
        if (st) return st;
        cki_cast(CK_DT_F32, as, f, out, (size_t)n, NULL);
        out += n * cki_dtype_size(as);
        first += n;
        count -= n;
    }
    return CK_OK;
}
