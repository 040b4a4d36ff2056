/*
 * cast_x86.c -- F16C/AVX2 loops for F32 <-> F16 and F32 <-> BF16, compiled
 * with a target attribute and used only when the CPU has both (cast.c asks
 * cki_cast_x86_usable once). On other machines this file compiles to nothing.
 *
 * Each loop gives exactly the bits of the scalar loop in cast.c:
 *  - F32 -> F16: VCVTPS2PH with immediate 0 (round to nearest even, whatever
 *    MXCSR says) is the IEEE conversion, torch 2.x's: a NaN keeps its sign and
 *    the top 10 bits of its payload, quiet bit set.
 *  - F16 -> F32: VCVTPH2PS is exact, sets the quiet bit of a NaN and keeps its
 *    payload, as the scalar loop does.
 *  - F32 -> BF16: the scalar integer rounding on 8 lanes; NaN lanes -> 0xFFFF.
 *  - BF16 -> F32: zero-extend and shift.
 * Tails shorter than a vector go through a small zero-padded buffer, so every
 * element takes the same instructions. The narrowing loops count overflow and
 * underflow lanes in the same pass (compare masks, movemask, popcount), which
 * costs far less than a second pass over the block. Hand-written because gcc -O2 (SSE2
 * baseline) cannot emit F16C and these pairs are the bulk of every conversion.
 */
#include "cast_impl.h"

#if CKI_CAST_X86

#include <cpuid.h>
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,f16c")))

int cki_cast_x86_usable(void)
{
    unsigned a, b, c, d;
    __builtin_cpu_init();
    /* avx2 includes the check that the OS saves YMM registers; clang 14 does not
     * know "f16c" as a feature name, so that bit comes from CPUID leaf 1 */
    if (!__builtin_cpu_supports("avx2")) return 0;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C);
}

/* 16 floats -> 16 halves; a NaN keeps its sign and the top of its payload,
 * quiet bit set, as torch 2.x writes it. */
TARGET static inline __m256i f32x16_to_f16(__m256i a, __m256i b)
{
    __m128i lo = _mm256_cvtps_ph(_mm256_castsi256_ps(a), 0); /* 0: nearest even */
    __m128i hi = _mm256_cvtps_ph(_mm256_castsi256_ps(b), 0);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
}

/* Adds to ST the lanes where finite F32 sources A, B (8 + 8) became +-Inf, code
 * INF16, in the 16 results H, and where nonzero ones became +-0. */
TARGET static inline void tally16(__m256i a, __m256i b, __m256i h, __m256i inf16,
                                  cki_cast_stats *st)
{
    const __m256i mag32 = _mm256_set1_epi32(0x7fffffff), inf32 = _mm256_set1_epi32(0x7f800000);
    const __m256i mag16 = _mm256_set1_epi16(0x7fff), zero = _mm256_setzero_si256();
    __m256i ma = _mm256_and_si256(a, mag32), mb = _mm256_and_si256(b, mag32);
    __m256i hm = _mm256_and_si256(h, mag16);
    /* 32-bit lane masks packed to 16 bits; packs interleaves 128-bit halves, the
     * permute restores element order */
    __m256i fin = _mm256_packs_epi32(_mm256_cmpgt_epi32(inf32, ma), _mm256_cmpgt_epi32(inf32, mb));
    __m256i zer = _mm256_packs_epi32(_mm256_cmpeq_epi32(ma, zero), _mm256_cmpeq_epi32(mb, zero));
    fin = _mm256_permute4x64_epi64(fin, 0xd8);
    zer = _mm256_permute4x64_epi64(zer, 0xd8);
    __m256i ovl = _mm256_and_si256(fin, _mm256_cmpeq_epi16(hm, inf16));
    __m256i unl = _mm256_andnot_si256(zer, _mm256_cmpeq_epi16(hm, zero));
    unsigned ov = (unsigned)_mm256_movemask_epi8(ovl), un = (unsigned)_mm256_movemask_epi8(unl);
    st->overflow += (unsigned)__builtin_popcount(ov) / 2; /* two mask bits per lane */
    st->underflow += (unsigned)__builtin_popcount(un) / 2;
}

/* The loop shared by F32 -> F16 and F32 -> BF16; inlined with constant
 * arguments so that each instance keeps only what it needs. */
#define NARROW_LOOP(CONVERT, INF16)                                                               \
    do {                                                                                          \
        size_t i = 0;                                                                             \
        for (; i + 16 <= n; i += 16) {                                                            \
            __m256i a = _mm256_loadu_si256((const __m256i *)(src + i));                           \
            __m256i b = _mm256_loadu_si256((const __m256i *)(src + i + 8));                       \
            __m256i h = CONVERT(a, b);                                                            \
            _mm256_storeu_si256((__m256i *)(dst + i), h);                                         \
            if (st) tally16(a, b, h, _mm256_set1_epi16(INF16), st);                               \
        }                                                                                         \
        if (i < n) { /* zero padding: zero sources count as nothing */                            \
            uint32_t in[16] = {0};                                                                \
            uint16_t out[16];                                                                     \
            memcpy(in, src + i, (n - i) * 4);                                                     \
            __m256i a = _mm256_loadu_si256((const __m256i *)in);                                  \
            __m256i b = _mm256_loadu_si256((const __m256i *)(in + 8));                            \
            __m256i h = CONVERT(a, b);                                                            \
            _mm256_storeu_si256((__m256i *)out, h);                                               \
            memcpy(dst + i, out, (n - i) * 2);                                                    \
            if (st) tally16(a, b, h, _mm256_set1_epi16(INF16), st);                               \
        }                                                                                         \
    } while (0)

TARGET void cki_cast_x86_f32_f16(const uint32_t *src, uint16_t *dst, size_t n, cki_cast_stats *st)
{
    if (st) NARROW_LOOP(f32x16_to_f16, 0x7c00);
    else NARROW_LOOP(f32x16_to_f16, 0x7c00);
}

TARGET void cki_cast_x86_f16_f32(const uint16_t *src, uint32_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i a = _mm_loadu_si128((const __m128i *)(src + i));
        __m128i b = _mm_loadu_si128((const __m128i *)(src + i + 8));
        _mm256_storeu_ps((float *)(dst + i), _mm256_cvtph_ps(a));
        _mm256_storeu_ps((float *)(dst + i + 8), _mm256_cvtph_ps(b));
    }
    for (; i < n; i += 8) {
        uint16_t in[8] = {0};
        uint32_t out[8];
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(in, src + i, k * 2);
        _mm256_storeu_ps((float *)out, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)in)));
        memcpy(dst + i, out, k * 4);
    }
}

/* 8 floats -> 8 bfloat16 in the low half of each 32-bit lane. */
TARGET static inline __m256i f32x8_to_bf16(__m256i u)
{
    const __m256i one = _mm256_set1_epi32(1), bias = _mm256_set1_epi32(0x7fff);
    const __m256i mag = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
    __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), one);
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, bias), lsb), 16);
    __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, mag), inf);
    return _mm256_or_si256(r, _mm256_srli_epi32(nan, 16)); /* NaN lanes: 0xFFFF */
}

TARGET static inline __m256i f32x16_to_bf16(__m256i a, __m256i b)
{
    /* packus interleaves 128-bit halves: a0 b0 a1 b1 -> reorder to a0 a1 b0 b1 */
    __m256i p = _mm256_packus_epi32(f32x8_to_bf16(a), f32x8_to_bf16(b));
    return _mm256_permute4x64_epi64(p, 0xd8);
}

TARGET void cki_cast_x86_f32_bf16(const uint32_t *src, uint16_t *dst, size_t n, cki_cast_stats *st)
{
    if (st) NARROW_LOOP(f32x16_to_bf16, 0x7f80);
    else NARROW_LOOP(f32x16_to_bf16, 0x7f80);
}

TARGET void cki_cast_x86_bf16_f32(const uint16_t *src, uint32_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256i a = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i)));
        __m256i b = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(src + i + 8)));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_slli_epi32(a, 16));
        _mm256_storeu_si256((__m256i *)(dst + i + 8), _mm256_slli_epi32(b, 16));
    }
    for (; i < n; i++) dst[i] = (uint32_t)src[i] << 16;
}

#else

typedef int cki_cast_x86_absent; /* ISO C wants at least one declaration per file */

#endif
