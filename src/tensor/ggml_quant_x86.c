/*
 * ggml_quant_x86.c -- AVX2 versions of the Q8_0 and Q4_0 reference encoders,
 * used when the CPU has AVX2 and F16C (ggml_quant.c asks cki_ggml_x86_usable).
 * On other machines, or other compilers' targets, this file compiles to nothing.
 *
 * Each gives exactly the bytes of the scalar encoder in ggml_quant.c (and so
 * of ggml and gguf-py; the interop tests run this path on AVX2 machines):
 *  - the block maximum is exact (max of |x| by masking the sign bit);
 *    Q4_0's signed maximum is the first element whose |x| equals it, +0.0f
 *    for an all-zero block;
 *  - d = max/127 (or max/-8) and 1/d by vector division, eight blocks at a
 *    time: each lane is the scalar float32 quotient; the fp16 scale with
 *    F16C (round to nearest even: the software conversion's bits for the
 *    finite values stored here), so the CPU must have F16C too;
 *  - x*id (and + 8.5f) are separate vector multiplies and adds: no FMA (the
 *    file is built with -ffp-contract=off too);
 *  - Q8_0's half-away-from-zero rounding is truncation plus a step where the
 *    exact remainder is at least one half, as round_i32 does it;
 *  - a block whose 1/d is not finite (a subnormal scale) goes to the scalar
 *    encoder, which defines the out-of-range conversions.
 */
#include "cast_impl.h"
#include "ggml_codec.h"

#if CKI_CAST_X86

#include <immintrin.h>
#include <math.h>

#define TARGET __attribute__((target("avx2,f16c")))

int cki_ggml_x86_usable(void)
{
    /* the cast loops' test: AVX2 and F16C */
    return cki_cast_x86_usable();
}

TARGET static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* 1 if the 32 floats at X are all finite (exponent not all ones). */
TARGET static inline int finite32(const __m256 v[4])
{
    const __m256i e = _mm256_set1_epi32(0x7f800000);
    int bad = 0;
    for (int k = 0; k < 4; k++) {
        __m256i x = _mm256_and_si256(_mm256_castps_si256(v[k]), e);
        bad |= _mm256_movemask_epi8(_mm256_cmpeq_epi32(x, e));
    }
    return !bad;
}

/* Per group of up to 8 blocks: the scales d = T[b] / DIV and id = 1/d (0 for
 * d = 0) in one vector division each, exactly the scalar float32 results,
 * and their fp16 bits (VCVTPS2PH, round to nearest even). */
TARGET static inline void scales8(const float t[8], float div, float d[8], float id[8],
                                  uint16_t h[8])
{
    __m256 dv = _mm256_div_ps(_mm256_loadu_ps(t), _mm256_set1_ps(div));
    __m256 nz = _mm256_cmp_ps(dv, _mm256_setzero_ps(), _CMP_NEQ_OQ);
    __m256 iv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), dv), nz);
    _mm256_storeu_ps(d, dv);
    _mm256_storeu_ps(id, iv);
    _mm_storeu_si128((__m128i *)h, _mm256_cvtps_ph(dv, 0));
}

TARGET int cki_ggml_q8_0_avx2(const float *x, size_t nblocks, uint8_t *y,
                              void (*scalar)(const float *, uint8_t *), size_t *bad_block)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f);
    const __m256 mhalf = _mm256_set1_ps(-0.5f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t b0 = 0; b0 < nblocks; b0 += 8) {
        size_t g = nblocks - b0 < 8 ? nblocks - b0 : 8;
        float amax[8] = {0}, d[8], id[8];
        uint16_t h[8];
        for (size_t k = 0; k < g; k++) {
            const float *xb = x + 32 * (b0 + k);
            __m256 v[4], m;
            for (int i = 0; i < 4; i++) v[i] = _mm256_loadu_ps(xb + 8 * i);
            if (!finite32(v)) {
                *bad_block = b0 + k;
                return 1;
            }
            m = _mm256_max_ps(
                _mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
            amax[k] = hmax8(m);
        }
        scales8(amax, 127.0f, d, id, h);
        for (size_t k = 0; k < g; k++) {
            const float *xb = x + 32 * (b0 + k);
            uint8_t *yb = y + 34 * (b0 + k);
            __m256i q[4];
            if (!isfinite(id[k])) {
                scalar(xb, yb);
                continue;
            }
            yb[0] = (uint8_t)h[k];
            yb[1] = (uint8_t)(h[k] >> 8);
            for (int i = 0; i < 4; i++) {
                __m256 p = _mm256_mul_ps(_mm256_loadu_ps(xb + 8 * i), _mm256_set1_ps(id[k]));
                __m256i t = _mm256_cvttps_epi32(p);
                __m256 r = _mm256_sub_ps(p, _mm256_cvtepi32_ps(t));
                __m256i up = _mm256_castps_si256(_mm256_cmp_ps(r, half, _CMP_GE_OQ));
                __m256i dn = _mm256_castps_si256(_mm256_cmp_ps(r, mhalf, _CMP_LE_OQ));
                q[i] = _mm256_add_epi32(_mm256_sub_epi32(t, up), dn);
            }
            {
                __m256i a = _mm256_packs_epi32(q[0], q[1]), c = _mm256_packs_epi32(q[2], q[3]);
                __m256i o = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, c), perm);
                _mm256_storeu_si256((__m256i *)(yb + 2), o);
            }
        }
    }
    return 0;
}

TARGET int cki_ggml_q4_0_avx2(const float *x, size_t nblocks, uint8_t *y,
                              void (*scalar)(const float *, uint8_t *), size_t *bad_block)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), off = _mm256_set1_ps(8.5f);
    const __m256i fifteen = _mm256_set1_epi32(15);
    for (size_t b0 = 0; b0 < nblocks; b0 += 8) {
        size_t g = nblocks - b0 < 8 ? nblocks - b0 : 8;
        float mx[8] = {0}, d[8], id[8];
        uint16_t h[8];
        for (size_t k = 0; k < g; k++) {
            const float *xb = x + 32 * (b0 + k);
            __m256 v[4], a[4];
            float amax;
            for (int i = 0; i < 4; i++) {
                v[i] = _mm256_loadu_ps(xb + 8 * i);
                a[i] = _mm256_andnot_ps(sign, v[i]);
            }
            if (!finite32(v)) {
                *bad_block = b0 + k;
                return 1;
            }
            amax = hmax8(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
            if (amax > 0.0f) { /* the first element of largest magnitude */
                __m256 t = _mm256_set1_ps(amax);
                for (int i = 0; i < 4; i++) {
                    int mask = _mm256_movemask_ps(_mm256_cmp_ps(a[i], t, _CMP_EQ_OQ));
                    if (mask) {
                        mx[k] = xb[8 * i + __builtin_ctz((unsigned)mask)];
                        break;
                    }
                }
            }
        }
        scales8(mx, -8.0f, d, id, h);
        for (size_t k = 0; k < g; k++) {
            const float *xb = x + 32 * (b0 + k);
            uint8_t *yb = y + 18 * (b0 + k);
            __m256i q[4];
            if (!isfinite(id[k])) {
                scalar(xb, yb);
                continue;
            }
            yb[0] = (uint8_t)h[k];
            yb[1] = (uint8_t)(h[k] >> 8);
            for (int i = 0; i < 4; i++) {
                __m256 p = _mm256_add_ps(
                    _mm256_mul_ps(_mm256_loadu_ps(xb + 8 * i), _mm256_set1_ps(id[k])), off);
                q[i] = _mm256_min_epi32(_mm256_cvttps_epi32(p), fifteen);
            }
            /* elements j and j+16 share byte j: low and high nibble; the bytes of
             * 0..7 then 8..15, narrowed in order (all values are 0..255) */
            {
                __m256i l = _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4));
                __m256i hi = _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4));
                __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(l, hi), 0xD8);
                __m128i b8 =
                    _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
                _mm_storeu_si128((__m128i *)(yb + 2), b8);
            }
        }
    }
    return 0;
}

#endif
