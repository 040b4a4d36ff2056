/*
 * crc32.c -- CRC-32 as zip and zlib define it, fast. cki_crc32 is a drop-in
 * for zlib's crc32() over 64-bit lengths: every zip member the readers check
 * and the writers produce goes through it, fused with the copy.
 *
 * CRC-32 (zlib's: reflected polynomial 0x04C11DB7, inverted in and out) runs
 * at memory speed on x86-64 with PCLMULQDQ, by folding: a 16-byte block A
 * followed D bits later by block B contributes A(x)*x^D to the message
 * polynomial, and A(x)*x^D == A_hi(x)*(x^(D+64) mod P) + A_lo(x)*(x^D mod P)
 * (mod P), two 64x32-bit carry-less products that fit in 128 bits and are
 * added into B. Four lanes fold across 512 bits, then into one lane across
 * 128 bits; the last 16 bytes and the tail go through zlib, which starts from
 * register 0 because the initial register was XORed into the first 4 bytes.
 * With the reflected bit order (bit i of a lane is the coefficient of
 * x^(127-i)) the 128-bit product of two 64-bit operands is the true product
 * divided by x, so the constants are x^(D+63) and x^(D-1) mod P, bit-reversed
 * into the top 32 bits of a 64-bit word. They are computed once, and the
 * folded CRC is compared with zlib's on a test buffer before it is trusted:
 * any disagreement (or a CPU without PCLMULQDQ) keeps zlib for everything.
 */
#include <zlib.h>

#include "cki.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <emmintrin.h>
#include <wmmintrin.h>
#define CRC_FOLD 1
#else
#define CRC_FOLD 0
#endif

static uint32_t crc_zlib(uint32_t crc, const uint8_t *p, uint64_t n)
{
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
}

#if CRC_FOLD
/* x^N mod P, plain bit order (bit d is the coefficient of x^d). */
static uint64_t xpow_mod(unsigned n)
{
    uint64_t r = 1;
    while (n--) {
        r <<= 1;
        if (r >> 32) r ^= 0x104C11DB7ull;
    }
    return r;
}

/* The coefficient of x^d (d < 32) moved to bit 63 - d. */
static uint64_t reflect_top(uint64_t r)
{
    uint64_t o = 0;
    for (int d = 0; d < 32; d++)
        if (r >> d & 1) o |= 1ull << (63 - d);
    return o;
}

static uint64_t k512_lo, k512_hi, k128_lo, k128_hi;
static volatile int fold_state; /* 0 unknown, 1 usable, -1 not */

__attribute__((target("pclmul,sse2"))) static inline __m128i fold(__m128i a, __m128i k)
{
    return _mm_xor_si128(_mm_clmulepi64_si128(a, k, 0x00), _mm_clmulepi64_si128(a, k, 0x11));
}

/* N >= 64. */
__attribute__((target("pclmul,sse2"))) static uint32_t crc_fold(uint32_t crc, const uint8_t *p,
                                                                 uint64_t n)
{
    const __m128i k4 = _mm_set_epi64x((long long)k512_hi, (long long)k512_lo);
    const __m128i k1 = _mm_set_epi64x((long long)k128_hi, (long long)k128_lo);
    __m128i x0 = _mm_loadu_si128((const __m128i *)p);
    __m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
    __m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
    __m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
    uint8_t last[16];

    x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)~crc));
    p += 64;
    n -= 64;
    while (n >= 64) {
        x0 = _mm_xor_si128(fold(x0, k4), _mm_loadu_si128((const __m128i *)p));
        x1 = _mm_xor_si128(fold(x1, k4), _mm_loadu_si128((const __m128i *)(p + 16)));
        x2 = _mm_xor_si128(fold(x2, k4), _mm_loadu_si128((const __m128i *)(p + 32)));
        x3 = _mm_xor_si128(fold(x3, k4), _mm_loadu_si128((const __m128i *)(p + 48)));
        p += 64;
        n -= 64;
    }
    x1 = _mm_xor_si128(x1, fold(x0, k1));
    x2 = _mm_xor_si128(x2, fold(x1, k1));
    x3 = _mm_xor_si128(x3, fold(x2, k1));
    while (n >= 16) {
        x3 = _mm_xor_si128(fold(x3, k1), _mm_loadu_si128((const __m128i *)p));
        p += 16;
        n -= 16;
    }
    _mm_storeu_si128((__m128i *)last, x3);
    crc = (uint32_t)crc32(0xFFFFFFFFul, last, 16);
    return crc_zlib(crc, p, n);
}

static int fold_usable(void)
{
    if (fold_state) return fold_state > 0;
    {
        uint8_t probe[1000];
        uint32_t s = 12345;
        int ok;
        __builtin_cpu_init();
        if (!__builtin_cpu_supports("pclmul") || !__builtin_cpu_supports("sse2")) {
            fold_state = -1;
            return 0;
        }
        k512_lo = reflect_top(xpow_mod(512 + 63));
        k512_hi = reflect_top(xpow_mod(512 - 1));
        k128_lo = reflect_top(xpow_mod(128 + 63));
        k128_hi = reflect_top(xpow_mod(128 - 1));
        for (size_t i = 0; i < sizeof probe; i++) {
            s = s * 1103515245u + 12345u;
            probe[i] = (uint8_t)(s >> 16);
        }
        ok = crc_fold(0, probe, sizeof probe) == crc_zlib(0, probe, sizeof probe) &&
             crc_fold(0xdeadbeefu, probe + 3, 77) == crc_zlib(0xdeadbeefu, probe + 3, 77) &&
             crc_fold(7, probe + 1, 128) == crc_zlib(7, probe + 1, 128);
        __sync_synchronize(); /* constants visible before the state says so */
        fold_state = ok ? 1 : -1;
        return ok;
    }
}
#endif

uint32_t cki_crc32(uint32_t crc, const void *data, uint64_t n)
{
    const uint8_t *p = data;
#if CRC_FOLD
    if (n >= 256 && fold_usable()) return crc_fold(crc, p, n);
#endif
    return crc_zlib(crc, p, n);
}
