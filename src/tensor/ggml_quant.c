/*
 * ggml_quant.c -- ggml's reference encoders (quantize_row_*_ref, no
 * importance matrix), bit-exact with ggml's C reference built without FMA
 * and with gguf-py 0.19's gguf.quants.quantize.
 *
 * This file is compiled with -ffp-contract=off (Makefile): with contraction,
 * x*id + 8.5f becomes one fused multiply-add and a few blocks per million
 * round differently from ggml and gguf-py. All arithmetic is float32.
 *
 *   Q8_0: amax = max |x|; d = amax/127; q = roundf(x/d) (half away from zero)
 *   Q4_0: max = the value of largest |x| (the first on ties, starting from
 *         +0.0f); d = max/-8; q = min(15, (int8)(x*id + 8.5f))
 *   Q5_0: as Q4_0 with d = max/-16, q = min(31, (int8)(x*id + 16.5f))
 *   Q4_1: min, max of the block; d = (max-min)/15; m = min;
 *         q = min(15, (int8)((x-min)*id + 0.5f))
 *   Q5_1: d = (max-min)/31; q = (uint8)((x-min)*id + 0.5f)
 * with id = d ? 1/d : 0 computed from the unrounded float d; d and m are
 * stored as fp16 (round to nearest even). Non-finite input is refused (both
 * references leave it undefined). Q8_0 and Q4_0 have AVX2 versions with the
 * same bytes (ggml_quant_x86.c), chosen at run time.
 */
#include <float.h>
#include <stdint.h>
#include <math.h>

#include "cast_impl.h"
#include "ggml_codec.h"

/* float -> int as x86's cvttss2si does it (ggml's behaviour on the machines
 * that made the reference files): truncation, and INT_MIN for NaN and values
 * out of range -- which a tiny subnormal block can produce, since 1/d then
 * overflows to Inf. A plain C cast would be undefined there. */
static int32_t trunc_i32(float v)
{
    if (v > -2147483648.0f && v < 2147483648.0f) return (int32_t)v;
    return INT32_MIN;
}

/* The low byte of an int, as C's (int8_t)/(uint8_t) casts of a wider value give it. */
static uint8_t low8(int32_t v)
{
    return (uint8_t)((uint32_t)v & 0xFF);
}

static void st16(uint8_t *p, float f)
{
    uint16_t h = cki_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

static void st32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* roundf (half away from zero) for the codes' range, without a libm call:
 * truncate, then step by one where the dropped fraction is at least a half
 * (the difference is exact in float32). Out of range: as trunc_i32. */
static int32_t round_i32(float v)
{
    int32_t q;
    float r;
    if (!(v > -2147483520.0f && v < 2147483520.0f)) return INT32_MIN;
    q = (int32_t)v;
    r = v - (float)q;
    if (r >= 0.5f) q++;
    else if (r <= -0.5f) q--;
    return q;
}

static void q8_0(const float *x, uint8_t *y)
{
    float amax = 0.0f, d, id;
    for (int j = 0; j < 32; j++) {
        float a = fabsf(x[j]);
        if (a > amax) amax = a;
    }
    d = amax / 127.0f;
    id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(y, d);
    for (int j = 0; j < 32; j++) y[2 + j] = low8(round_i32(x[j] * id));
}

/* The value of largest magnitude, the first one on ties, +0.0f for none. */
static float signed_max(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void q4_0(const float *x, uint8_t *y)
{
    float d = signed_max(x) / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(y, d);
    for (int j = 0; j < 16; j++) {
        int8_t a = (int8_t)low8(trunc_i32(x[j] * id + 8.5f));
        int8_t b = (int8_t)low8(trunc_i32(x[j + 16] * id + 8.5f));
        uint8_t lo = (uint8_t)(a < 15 ? a : 15), hi = (uint8_t)(b < 15 ? b : 15);
        y[2 + j] = (uint8_t)(lo | hi << 4);
    }
}

static void q5_0(const float *x, uint8_t *y)
{
    float d = signed_max(x) / -16.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    uint32_t qh = 0;
    st16(y, d);
    for (int j = 0; j < 16; j++) {
        int8_t a = (int8_t)low8(trunc_i32(x[j] * id + 16.5f));
        int8_t b = (int8_t)low8(trunc_i32(x[j + 16] * id + 16.5f));
        uint8_t lo = (uint8_t)(a < 31 ? a : 31), hi = (uint8_t)(b < 31 ? b : 31);
        y[6 + j] = (uint8_t)((lo & 15) | (hi & 15) << 4);
        qh |= (uint32_t)((lo & 0x10) >> 4) << j;
        qh |= (uint32_t)((hi & 0x10) >> 4) << (j + 16);
    }
    st32(y + 2, qh);
}

static void min_max(const float *x, float *mn, float *mx)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < 32; j++) {
        if (x[j] < lo) lo = x[j];
        if (x[j] > hi) hi = x[j];
    }
    *mn = lo;
    *mx = hi;
}

static void q4_1(const float *x, uint8_t *y)
{
    float mn, mx, d, id;
    min_max(x, &mn, &mx);
    d = (mx - mn) / 15.0f;
    id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(y, d);
    st16(y + 2, mn);
    for (int j = 0; j < 16; j++) {
        int8_t a = (int8_t)low8(trunc_i32((x[j] - mn) * id + 0.5f));
        int8_t b = (int8_t)low8(trunc_i32((x[j + 16] - mn) * id + 0.5f));
        uint8_t lo = (uint8_t)(a < 15 ? a : 15), hi = (uint8_t)(b < 15 ? b : 15);
        y[4 + j] = (uint8_t)(lo | hi << 4);
    }
}

static void q5_1(const float *x, uint8_t *y)
{
    float mn, mx, d, id;
    uint32_t qh = 0;
    min_max(x, &mn, &mx);
    d = (mx - mn) / 31.0f;
    id = d != 0.0f ? 1.0f / d : 0.0f;
    st16(y, d);
    st16(y + 2, mn);
    for (int j = 0; j < 16; j++) {
        uint8_t a = low8(trunc_i32((x[j] - mn) * id + 0.5f));
        uint8_t b = low8(trunc_i32((x[j + 16] - mn) * id + 0.5f));
        y[8 + j] = (uint8_t)((a & 15) | (b & 15) << 4);
        qh |= (uint32_t)((a & 0x10) >> 4) << j;
        qh |= (uint32_t)((b & 0x10) >> 4) << (j + 16);
    }
    st32(y + 4, qh);
}

static cki_ggml_block_fn encoder(ck_dtype dt)
{
    switch (dt) {
    case CK_DT_Q8_0: return q8_0;
    case CK_DT_Q4_0: return q4_0;
    case CK_DT_Q4_1: return q4_1;
    case CK_DT_Q5_0: return q5_0;
    case CK_DT_Q5_1: return q5_1;
    default: return cki_ggml_kquant_encoder(dt);
    }
}

int cki_ggml_can_quant(ck_dtype dt)
{
    return encoder(dt) != NULL;
}

int ck_dtype_can_quantize(ck_dtype dt)
{
    return cki_ggml_can_quant(dt);
}

int64_t cki_ggml_quant(ck_dtype dt, const float *src, size_t nblocks, uint8_t *dst)
{
    unsigned bb, blk = ck_dtype_block(dt, &bb);
    cki_ggml_block_fn f = encoder(dt);
    size_t n = nblocks * blk;
    if (!f) return 0;
#if CKI_CAST_X86 && defined(__x86_64__)
    /* the AVX2 encoders, under the same switch as the cast loops
     * (CKPTKIT_NO_SIMD=1 selects the scalar ones) */
    if ((dt == CK_DT_Q8_0 || dt == CK_DT_Q4_0) && cki_cast_simd_active() && cki_ggml_x86_usable()) {
        size_t bad;
        int r = dt == CK_DT_Q8_0 ? cki_ggml_q8_0_avx2(src, nblocks, dst, f, &bad)
                                 : cki_ggml_q4_0_avx2(src, nblocks, dst, f, &bad);
        if (!r) return -1;
        for (size_t i = bad * blk; i < n; i++)
            if (!isfinite(src[i])) return (int64_t)i;
        return (int64_t)(bad * blk); /* not reached: the block held a non-finite value */
    }
#endif
    for (size_t i = 0; i < n; i++)
        if (!isfinite(src[i])) return (int64_t)i;
    for (size_t i = 0; i < nblocks; i++) f(src + i * blk, dst + i * bb);
    return -1;
}
