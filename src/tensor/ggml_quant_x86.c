/*
 * ggml_quant_x86.c -- AVX2 versions of the Q8_0 and Q4_0 reference encoders,
 * used when the CPU has AVX2 (ggml_quant.c asks cki_ggml_x86_usable once).
 * On other machines, or other compilers' targets, this file compiles to nothing.
 *
 * Each gives exactly the bytes of the scalar encoder in ggml_quant.c (and so
 * of ggml and gguf-py; the interop tests run this path on AVX2 machines):
 *  - the block maximum is exact (max of |x| by masking the sign bit);
 *    Q4_0's signed maximum is the first element whose |x| equals it, +0.0f
 *    for an all-zero block;
 *  - d, 1/d and the fp16 scale are computed in scalar float32 as before;
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

#define TARGET __attribute__((target("avx2")))

int cki_ggml_x86_usable(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

TARGET static inline float hmax8(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

static void st16(uint8_t *p, float f)
{
    uint16_t h = cki_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
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

TARGET int cki_ggml_q8_0_avx2(const float *x, size_t nblocks, uint8_t *y,
                              void (*scalar)(const float *, uint8_t *), size_t *bad_block)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), half = _mm256_set1_ps(0.5f);
    const __m256 mhalf = _mm256_set1_ps(-0.5f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (size_t b = 0; b < nblocks; b++, x += 32, y += 34) {
        __m256 v[4], m;
        __m256i q[4];
        float amax, d, id;
        for (int k = 0; k < 4; k++) v[k] = _mm256_loadu_ps(x + 8 * k);
        if (!finite32(v)) {
            *bad_block = b;
            return 1;
        }
        m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                          _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
        amax = hmax8(m);
        d = amax / 127.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!isfinite(id)) {
            scalar(x, y);
            continue;
        }
        st16(y, d);
        for (int k = 0; k < 4; k++) {
            __m256 p = _mm256_mul_ps(v[k], _mm256_set1_ps(id));
            __m256i t = _mm256_cvttps_epi32(p);
            __m256 r = _mm256_sub_ps(p, _mm256_cvtepi32_ps(t));
            __m256i up = _mm256_castps_si256(_mm256_cmp_ps(r, half, _CMP_GE_OQ));
            __m256i dn = _mm256_castps_si256(_mm256_cmp_ps(r, mhalf, _CMP_LE_OQ));
            q[k] = _mm256_add_epi32(_mm256_sub_epi32(t, up), dn);
        }
        {
            __m256i a = _mm256_packs_epi32(q[0], q[1]), c = _mm256_packs_epi32(q[2], q[3]);
            __m256i s = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, c), perm);
            _mm256_storeu_si256((__m256i *)(y + 2), s);
        }
    }
    return 0;
}

TARGET int cki_ggml_q4_0_avx2(const float *x, size_t nblocks, uint8_t *y,
                              void (*scalar)(const float *, uint8_t *), size_t *bad_block)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), off = _mm256_set1_ps(8.5f);
    const __m256i fifteen = _mm256_set1_epi32(15);
    for (size_t b = 0; b < nblocks; b++, x += 32, y += 18) {
        __m256 v[4], a[4];
        __m256i q[4];
        float amax, mx = 0.0f, d, id;
        int32_t lo[8], hi[8];
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            a[k] = _mm256_andnot_ps(sign, v[k]);
        }
        if (!finite32(v)) {
            *bad_block = b;
            return 1;
        }
        amax = hmax8(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3])));
        if (amax > 0.0f) { /* the first element of largest magnitude */
            __m256 t = _mm256_set1_ps(amax);
            for (int k = 0; k < 4; k++) {
                int mask = _mm256_movemask_ps(_mm256_cmp_ps(a[k], t, _CMP_EQ_OQ));
                if (mask) {
                    mx = x[8 * k + __builtin_ctz((unsigned)mask)];
                    break;
                }
            }
        }
        d = mx / -8.0f;
        id = d != 0.0f ? 1.0f / d : 0.0f;
        if (!isfinite(id)) {
            scalar(x, y);
            continue;
        }
        st16(y, d);
        for (int k = 0; k < 4; k++) {
            __m256 p = _mm256_add_ps(_mm256_mul_ps(v[k], _mm256_set1_ps(id)), off);
            q[k] = _mm256_min_epi32(_mm256_cvttps_epi32(p), fifteen);
        }
        /* elements j and j+16 share byte j: low and high nibble */
        _mm256_storeu_si256((__m256i *)lo, _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4)));
        _mm256_storeu_si256((__m256i *)hi, _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4)));
        for (int j = 0; j < 8; j++) {
            y[2 + j] = (uint8_t)lo[j];
            y[10 + j] = (uint8_t)hi[j];
        }
    }
    return 0;
}

#endif
