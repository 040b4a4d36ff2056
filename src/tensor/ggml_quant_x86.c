/*
 * ggml_quant_x86.c -- AVX2 versions of the Q8_0 and Q4_0 reference encoders,
 * used when the CPU has AVX2 and F16C (ggml_quant.c asks cki_ggml_x86_usable).
 * On other machines, or other compilers' targets, this file compiles to nothing.
 *
 * Each gives exactly the bytes of the scalar encoder in ggml_quant.c (and so
 * of ggml and gguf-py; the interop tests run this path on AVX2 machines).
 * Blocks go eight at a time, each step a vector operation over the group:
 *  - the block maxima are exact integer maxima of the values' bits (|x|'s
 *    bits order like |x|, Inf and NaN above every finite value, so the same
 *    maxima check finiteness); eight per-block results are reduced together
 *    by a transposing tree into one vector. Q4_0's signed maximum (the
 *    first value of largest magnitude, +0.0f for an all-zero block) comes
 *    from two more maxima telling whether +max and -max occur; a block where
 *    both occur is scanned as the scalar encoder does;
 *  - d = max/127 (or max/-8) and 1/d by one vector division each for the
 *    eight blocks: each lane is the scalar float32 quotient; the fp16 scale
 *    with F16C (round to nearest even: the software conversion's bits for
 *    the finite values stored here), so the CPU must have F16C too;
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
#include <stdatomic.h>

#define TARGET __attribute__((target("avx2,f16c")))

int cki_ggml_x86_usable(void)
{
    /* the cast loops' test (AVX2 and F16C), made once: it runs CPUID, which
     * a virtual machine traps, and the encoders ask for every chunk */
    static _Atomic int usable = -1;
    int u = atomic_load_explicit(&usable, memory_order_relaxed);
    if (u < 0) {
        u = cki_cast_x86_usable();
        atomic_store_explicit(&usable, u, memory_order_relaxed);
    }
    return u;
}

/* The eight lanes of V[0..7] reduced: lane k of the result is the signed
 * 32-bit maximum of the eight lanes of V[k] (a transposing tree, no scalar
 * round trip). */
TARGET static inline __m256i max8x8(const __m256i v[8])
{
    __m256i a = _mm256_max_epi32(_mm256_unpacklo_epi32(v[0], v[1]), _mm256_unpackhi_epi32(v[0], v[1]));
    __m256i b = _mm256_max_epi32(_mm256_unpacklo_epi32(v[2], v[3]), _mm256_unpackhi_epi32(v[2], v[3]));
    __m256i c = _mm256_max_epi32(_mm256_unpacklo_epi32(v[4], v[5]), _mm256_unpackhi_epi32(v[4], v[5]));
    __m256i e = _mm256_max_epi32(_mm256_unpacklo_epi32(v[6], v[7]), _mm256_unpackhi_epi32(v[6], v[7]));
    __m256i s = _mm256_max_epi32(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
    __m256i u = _mm256_max_epi32(_mm256_unpacklo_epi64(c, e), _mm256_unpackhi_epi64(c, e));
    return _mm256_max_epi32(_mm256_permute2x128_si256(s, u, 0x20),
                            _mm256_permute2x128_si256(s, u, 0x31));
}

/* Lane K: the maximum over block K's 32 values of their bits XOR FLIP, as
 * signed 32-bit integers (zero for K >= G). With FLIP = 0x7fffffff masking
 * via ABS: |x|'s bits, whose integer order is the order of |x| for finite
 * values and puts Inf and NaN above every finite one. */
TARGET static inline __m256i block_max_bits(const float *x, size_t g, __m256i and_mask,
                                            __m256i xor_mask)
{
    __m256i v[8];
    for (size_t k = 0; k < 8; k++) {
        if (k < g) {
            const __m256i *p = (const __m256i *)(const void *)(x + 32 * k);
            __m256i r0 = _mm256_xor_si256(_mm256_and_si256(_mm256_loadu_si256(p), and_mask), xor_mask);
            __m256i r1 = _mm256_xor_si256(_mm256_and_si256(_mm256_loadu_si256(p + 1), and_mask), xor_mask);
            __m256i r2 = _mm256_xor_si256(_mm256_and_si256(_mm256_loadu_si256(p + 2), and_mask), xor_mask);
            __m256i r3 = _mm256_xor_si256(_mm256_and_si256(_mm256_loadu_si256(p + 3), and_mask), xor_mask);
            v[k] = _mm256_max_epi32(_mm256_max_epi32(r0, r1), _mm256_max_epi32(r2, r3));
        } else {
            v[k] = _mm256_setzero_si256();
        }
    }
    return max8x8(v);
}

/* The lanes (below G) whose |x| maximum in AMAX is Inf or NaN, as a bit mask. */
TARGET static inline unsigned nonfinite_lanes(__m256i amax, size_t g)
{
    __m256i big = _mm256_cmpgt_epi32(amax, _mm256_set1_epi32(0x7f7fffff));
    return (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(big)) & ((1u << g) - 1u);
}

/* Per group of eight blocks: d = T / DIV and id = 1/d (0 for d = 0) in one
 * vector division each, lane for lane the scalar float32 results; the fp16
 * bits of d (VCVTPS2PH, round to nearest even); and the mask of lanes whose
 * id is not finite (a subnormal d), which the scalar encoder handles. */
TARGET static inline unsigned scales8(__m256 t, float div, __m256 *id, uint16_t h[8])
{
    __m256 dv = _mm256_div_ps(t, _mm256_set1_ps(div));
    __m256 nz = _mm256_cmp_ps(dv, _mm256_setzero_ps(), _CMP_NEQ_OQ);
    __m256 iv = _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), dv), nz);
    __m256i e = _mm256_set1_epi32(0x7f800000);
    __m256i inf = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_castps_si256(iv), e), e);
    *id = iv;
    _mm_storeu_si128((__m128i *)(void *)h, _mm256_cvtps_ph(dv, 0));
    return (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(inf));
}

TARGET static inline __m256 lane(__m256 v, size_t k)
{
    return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32((int)k));
}

TARGET int cki_ggml_q8_0_avx2(const float *x, size_t nblocks, uint8_t *y,
                              void (*scalar)(const float *, uint8_t *), size_t *bad_block)
{
    const __m256 half = _mm256_set1_ps(0.5f), mhalf = _mm256_set1_ps(-0.5f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), zero = _mm256_setzero_si256();
    for (size_t b0 = 0; b0 < nblocks; b0 += 8) {
        size_t g = nblocks - b0 < 8 ? nblocks - b0 : 8;
        const float *xg = x + 32 * b0;
        __m256i amax = block_max_bits(xg, g, absm, zero);
        unsigned bad = nonfinite_lanes(amax, g), slow;
        __m256 id;
        uint16_t h[8];
        if (bad) {
            *bad_block = b0 + (size_t)__builtin_ctz(bad);
            return 1;
        }
        slow = scales8(_mm256_castsi256_ps(amax), 127.0f, &id, h);
        for (size_t k = 0; k < g; k++) {
            const float *xb = xg + 32 * k;
            uint8_t *yb = y + 34 * (b0 + k);
            __m256 idk;
            __m256i q[4];
            if (slow >> k & 1u) {
                scalar(xb, yb);
                continue;
            }
            idk = lane(id, k);
            yb[0] = (uint8_t)h[k];
            yb[1] = (uint8_t)(h[k] >> 8);
            for (int i = 0; i < 4; i++) {
                /* roundf: truncate, then step where the exact remainder is a half or more */
                __m256 p = _mm256_mul_ps(_mm256_loadu_ps(xb + 8 * i), idk);
                __m256i t = _mm256_cvttps_epi32(p);
                __m256 r = _mm256_sub_ps(p, _mm256_cvtepi32_ps(t));
                __m256i up = _mm256_castps_si256(_mm256_cmp_ps(r, half, _CMP_GE_OQ));
                __m256i dn = _mm256_castps_si256(_mm256_cmp_ps(r, mhalf, _CMP_LE_OQ));
                q[i] = _mm256_add_epi32(_mm256_sub_epi32(t, up), dn);
            }
            {
                __m256i a = _mm256_packs_epi32(q[0], q[1]), c = _mm256_packs_epi32(q[2], q[3]);
                __m256i o = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, c), perm);
                _mm256_storeu_si256((__m256i *)(void *)(yb + 2), o);
            }
        }
    }
    return 0;
}

/* The scalar encoder's signed maximum: the first value of largest magnitude. */
static float first_signed_max(const float *x)
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

TARGET int cki_ggml_q4_0_avx2(const float *x, size_t nblocks, uint8_t *y,
                              void (*scalar)(const float *, uint8_t *), size_t *bad_block)
{
    const __m256 off = _mm256_set1_ps(8.5f);
    const __m256i fifteen = _mm256_set1_epi32(15), zero = _mm256_setzero_si256();
    const __m256i absm = _mm256_set1_epi32(0x7fffffff), ones = _mm256_set1_epi32(-1);
    const __m256i sign = _mm256_set1_epi32((int)0x80000000u);
    for (size_t b0 = 0; b0 < nblocks; b0 += 8) {
        size_t g = nblocks - b0 < 8 ? nblocks - b0 : 8;
        const float *xg = x + 32 * b0;
        /* A: the bits of max |x|; P: the largest bits of a value >= +0.0
         * (A exactly when +A occurs); N: the largest |x| bits of a value
         * <= -0.0 (A exactly when -A occurs). The signed maximum is -A when
         * only -A occurs, +A when only +A does or A is zero; when both do,
         * the first one counts (rare: the scalar scan decides). */
        __m256i a = block_max_bits(xg, g, absm, zero);
        unsigned bad = nonfinite_lanes(a, g), slow, tie;
        __m256i p, n, nz, has_p, has_n, neg;
        __m256 id, mx;
        uint16_t h[8];
        if (bad) {
            *bad_block = b0 + (size_t)__builtin_ctz(bad);
            return 1;
        }
        p = block_max_bits(xg, g, ones, zero);
        n = block_max_bits(xg, g, ones, sign);
        nz = _mm256_xor_si256(_mm256_cmpeq_epi32(a, zero), ones);
        has_p = _mm256_cmpeq_epi32(p, a);
        has_n = _mm256_and_si256(_mm256_cmpeq_epi32(n, a), nz);
        neg = _mm256_andnot_si256(has_p, has_n);
        mx = _mm256_castsi256_ps(_mm256_or_si256(a, _mm256_and_si256(neg, sign)));
        tie = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_and_si256(has_p, has_n))) &
              ((1u << g) - 1u);
        if (tie) {
            float m[8];
            _mm256_storeu_ps(m, mx);
            for (size_t k = 0; k < g; k++)
                if (tie >> k & 1u) m[k] = first_signed_max(xg + 32 * k);
            mx = _mm256_loadu_ps(m);
        }
        slow = scales8(mx, -8.0f, &id, h);
        for (size_t k = 0; k < g; k++) {
            const float *xb = xg + 32 * k;
            uint8_t *yb = y + 18 * (b0 + k);
            __m256 idk;
            __m256i q[4];
            if (slow >> k & 1u) {
                scalar(xb, yb);
                continue;
            }
            idk = lane(id, k);
            yb[0] = (uint8_t)h[k];
            yb[1] = (uint8_t)(h[k] >> 8);
            for (int i = 0; i < 4; i++) {
                __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + 8 * i), idk), off);
                q[i] = _mm256_min_epi32(_mm256_cvttps_epi32(v), fifteen);
            }
            /* elements j and j+16 share byte j: low and high nibble; the bytes of
             * 0..7 then 8..15, narrowed in order (all values are 0..255) */
            {
                __m256i l = _mm256_or_si256(q[0], _mm256_slli_epi32(q[2], 4));
                __m256i hi = _mm256_or_si256(q[1], _mm256_slli_epi32(q[3], 4));
                __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(l, hi), 0xD8);
                __m128i b8 =
                    _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
                _mm_storeu_si128((__m128i *)(void *)(yb + 2), b8);
            }
        }
    }
    return 0;
}

#endif
