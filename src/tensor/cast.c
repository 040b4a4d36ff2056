/*
 * cast.c -- element conversions between dtypes (the scalar reference and the
 * dispatcher) and byte swaps.
 *
 * Rules, chosen so that every cast among F64, F32, F16, BF16, the integers and
 * bool gives the bits torch 2.13's Tensor.to() gives on a contiguous CPU
 * tensor (checked by tests/interop/test_casts.py; float -> integer only where
 * torch defines the result):
 *  - Narrowing float casts round to nearest, ties to even. F64 -> F16, BF16 and
 *    the 8-bit floats round to F32 first and then again, exactly as torch does
 *    (c10::Half and c10::BFloat16 are built from a float); F64 -> F32 and
 *    F32 -> F64 are the hardware conversions torch uses.
 *  - NaN: F16 -> F32 sets the quiet bit and keeps sign and payload;
 *    BF16 -> F32 shifts the bits unchanged; -> F16 sets the quiet bit and keeps
 *    the sign and the top 10 payload bits (the IEEE conversion, which torch 2.x
 *    uses; torch 1.13 wrote 0x7E00 with the sign);
 *    F32/F64 -> BF16 give 0xFFFF (torch's vectorised path, which every
 *    contiguous tensor takes); other sources -> BF16 give 0x7FC0 (torch's
 *    scalar c10::BFloat16). Overflow gives +-Inf, underflow +-0 (sign kept).
 *  - Integers -> floats round to nearest even: straight to F32 and F64, via F32
 *    for F16, BF16 and the 8-bit floats (torch's route again).
 *  - Floats -> integers truncate toward zero and saturate at the type's range;
 *    NaN -> 0. -> BOOL: nonzero (NaN included) -> 1. Integers -> integers wrap
 *    (two's complement, like torch).
 *  - C64 <-> C128 convert each component like F32 <-> F64.
 *  - The 8-bit float formats are defined in f8.c.
 * Counting (only when STATS is not NULL): a finite source value that became
 * Inf or NaN is an overflow, a nonzero one that became +-0 an underflow.
 *
 * Layout of the work: a handful of hot pairs have direct loops (and F16C/AVX2
 * versions in cast_x86.c, chosen once at run time, CKPTKIT_NO_SIMD=1 to
 * disable); every other pair decodes a chunk into a pivot (F32 bits, F64 or a
 * 64-bit integer) and encodes it. Loops run over fixed-size blocks so that
 * gcc -O2 vectorises them; the F16 loops first try the cheap common case on a
 * block and redo it with the full rules only if some value needs them.
 * Misaligned buffers go through an aligned bounce chunk. Hand-written because
 * the bits must match torch, not the C library.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "cast_impl.h"

#define VB 64     /* elements per fixed-size block: a known trip count lets -O2 vectorise */
#define CHUNK 256 /* elements per pivot or bounce chunk */

#define BF16_NAN_VEC 0xffffu    /* torch's vectorised float -> bfloat16 */
#define BF16_NAN_SCALAR 0x7fc0u /* torch's c10::BFloat16(float) */

/* Calls RUN(s + i, d + i, count) over [0, N) in blocks of VB and a tail. */
#define BLOCKED(run, s, d, n)                                                                     \
    do {                                                                                          \
        size_t i_ = 0;                                                                            \
        for (; i_ + VB <= (n); i_ += VB) run((s) + i_, (d) + i_, VB);                             \
        run((s) + i_, (d) + i_, (n) - i_);                                                        \
    } while (0)

/* ---- bit patterns ---------------------------------------------------------- */

static inline uint32_t bits32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float from32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint64_t bits64(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

/* The F16 helpers are integer-only (no dependence on the rounding mode or on
 * flush-to-zero) and branch-free: selects and constant shifts, which gcc -O2
 * vectorises even for SSE2. */
static inline uint32_t f16_to_f32_bits(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
    uint32_t x = m, k = 0, small, special, normal, r;
    /* subnormal m x 2^-24: shift the top set bit up to bit 9 in steps, counting in k */
    k += x < 0x4u ? 8 : 0, x = x < 0x4u ? x << 8 : x;
    k += x < 0x40u ? 4 : 0, x = x < 0x40u ? x << 4 : x;
    k += x < 0x100u ? 2 : 0, x = x < 0x100u ? x << 2 : x;
    k += x < 0x200u ? 1 : 0, x = x < 0x200u ? x << 1 : x;
    small = m ? (112u - k) << 23 | ((x << 14) & 0x7fffffu) : 0;
    special = 0x7f800000u | (m ? 0x400000u | m << 13 : 0); /* Inf, or NaN made quiet */
    normal = (e + 112u) << 23 | m << 13;
    r = e == 0x1f ? special : normal;
    return sign | (e == 0 ? small : r);
}

/* C ? A : B as masks: gcc keeps these as selects where a ternary chain may
 * become branches, which stop vectorisation. C is 0 or 1. */
static inline uint32_t sel(uint32_t c, uint32_t a, uint32_t b)
{
    uint32_t m = 0u - c;
    return (a & m) | (b & ~m);
}

/* always_inline: the early inliner finds it too large, and a call per element
 * cannot be vectorised */
__attribute__((always_inline)) static inline uint16_t f32_to_f16_bits(uint32_t u)
{
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu, r, b;
    /* 2^-14 <= |x| < 65520: rebias the exponent, round at bit 13 */
    uint32_t normal = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;
    /* 2^-25 < |x| < 2^-14: the result is the significand shifted right by
     * 126 - e (14..24). Shift by one less, 13 + t with t = 112 - e, as 13 and
     * then 8, 4, 2, 1 by the bits of t, so that the lowest bit of x is the round
     * bit; every bit shifted out goes to sticky */
    uint32_t t = 112u - (a >> 23), x = (a & 0x7fffffu) | 0x800000u, sticky = x & 0x1fffu, q;
    x >>= 13;
    b = (t >> 3) & 1u, sticky |= sel(b, x & 0xffu, 0), x = sel(b, x >> 8, x);
    b = (t >> 2) & 1u, sticky |= sel(b, x & 0xfu, 0), x = sel(b, x >> 4, x);
    b = (t >> 1) & 1u, sticky |= sel(b, x & 0x3u, 0), x = sel(b, x >> 2, x);
    b = t & 1u, sticky |= sel(b, x & 0x1u, 0), x = sel(b, x >> 1, x);
    q = x >> 1;
    q += x & 1u & (((0u - sticky) >> 31) | q); /* nearest, ties to even */
    r = sel(a > 0x33000000u, q, 0);            /* 2^-25 itself is a tie: 0 is even */
    r = sel(a >= 0x38800000u, normal, r);
    r = sel(a >= 0x477ff000u, 0x7c00u, r);     /* >= 65520, Inf included */
    r = sel(a > 0x7f800000u, 0x7e00u | ((a >> 13) & 0x3ffu), r); /* NaN: quiet, payload cut */
    return (uint16_t)(sign | r);
}

/* The common cases alone, a few instructions each: F16 normals and zero, and
 * F32 values that are zero or land on an F16 normal. Anything else sets *ODD,
 * and the caller redoes its block with the full helpers above. Weights are
 * mostly such values, and this roughly triples the speed of the scalar loops. */
static inline uint32_t f16_to_f32_common(uint16_t h, uint32_t *odd)
{
    uint32_t a = h & 0x7fffu;
    *odd |= (a - 1u < 0x3ffu) | (a >= 0x7c00u); /* subnormal, Inf, NaN */
    return (uint32_t)(h & 0x8000u) << 16 | sel(a != 0, (a << 13) + 0x38000000u, 0);
}

static inline uint16_t f32_to_f16_common(uint32_t u, uint32_t *odd)
{
    uint32_t a = u & 0x7fffffffu;
    uint32_t normal = (a - 0x38000000u + 0xfffu + ((a >> 13) & 1u)) >> 13;
    *odd |= (a - 0x38800000u >= 0x477ff000u - 0x38800000u) & (a != 0);
    return (uint16_t)(((u >> 16) & 0x8000u) | sel(a != 0, normal, 0));
}

static inline uint16_t f32_to_bf16_bits(uint32_t u, uint16_t nan)
{
    if ((u & 0x7fffffffu) > 0x7f800000u) return nan;
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

float cki_f16_to_f32(uint16_t h)
{
    return from32(f16_to_f32_bits(h));
}

uint16_t cki_f32_to_f16(float f)
{
    return f32_to_f16_bits(bits32(f));
}

float cki_bf16_to_f32(uint16_t h)
{
    return from32((uint32_t)h << 16);
}

uint16_t cki_f32_to_bf16(float f)
{
    return f32_to_bf16_bits(bits32(f), BF16_NAN_VEC);
}

/* ---- direct loops for the hot pairs --------------------------------------- */

static inline void run_f32_f16(const uint32_t *restrict s, uint16_t *restrict d, size_t m)
{
    uint32_t odd = 0;
    for (size_t i = 0; i < m; i++) d[i] = f32_to_f16_common(s[i], &odd);
    if (odd)
        for (size_t i = 0; i < m; i++) d[i] = f32_to_f16_bits(s[i]);
}
static inline void run_f16_f32(const uint16_t *restrict s, uint32_t *restrict d, size_t m)
{
    uint32_t odd = 0;
    for (size_t i = 0; i < m; i++) d[i] = f16_to_f32_common(s[i], &odd);
    if (odd)
        for (size_t i = 0; i < m; i++) d[i] = f16_to_f32_bits(s[i]);
}
static inline void run_f32_bf16(const uint32_t *restrict s, uint16_t *restrict d, size_t m)
{
    for (size_t i = 0; i < m; i++) d[i] = f32_to_bf16_bits(s[i], BF16_NAN_VEC);
}
static inline void run_bf16_f32(const uint16_t *restrict s, uint32_t *restrict d, size_t m)
{
    for (size_t i = 0; i < m; i++) d[i] = (uint32_t)s[i] << 16;
}
static inline void run_f64_f32(const double *restrict s, float *restrict d, size_t m)
{
    for (size_t i = 0; i < m; i++) d[i] = (float)s[i];
}
static inline void run_f32_f64(const float *restrict s, double *restrict d, size_t m)
{
    for (size_t i = 0; i < m; i++) d[i] = (double)s[i];
}
static inline void run_f64_f16(const double *restrict s, uint16_t *restrict d, size_t m)
{
    uint32_t odd = 0;
    for (size_t i = 0; i < m; i++) d[i] = f32_to_f16_common(bits32((float)s[i]), &odd);
    if (odd)
        for (size_t i = 0; i < m; i++) d[i] = f32_to_f16_bits(bits32((float)s[i]));
}
static inline void run_f64_bf16(const double *restrict s, uint16_t *restrict d, size_t m)
{
    for (size_t i = 0; i < m; i++) d[i] = f32_to_bf16_bits(bits32((float)s[i]), BF16_NAN_VEC);
}
static inline void run_f16_f64(const uint16_t *restrict s, double *restrict d, size_t m)
{
    uint32_t odd = 0;
    for (size_t i = 0; i < m; i++) d[i] = (double)from32(f16_to_f32_common(s[i], &odd));
    if (odd)
        for (size_t i = 0; i < m; i++) d[i] = (double)from32(f16_to_f32_bits(s[i]));
}
static inline void run_bf16_f64(const uint16_t *restrict s, double *restrict d, size_t m)
{
    for (size_t i = 0; i < m; i++) d[i] = (double)from32((uint32_t)s[i] << 16);
}
static inline void run_f16_bf16(const uint16_t *restrict s, uint16_t *restrict d, size_t m)
{
    uint32_t odd = 0;
    for (size_t i = 0; i < m; i++)
        d[i] = f32_to_bf16_bits(f16_to_f32_common(s[i], &odd), BF16_NAN_SCALAR);
    if (odd)
        for (size_t i = 0; i < m; i++)
            d[i] = f32_to_bf16_bits(f16_to_f32_bits(s[i]), BF16_NAN_SCALAR);
}
static inline void run_bf16_f16(const uint16_t *restrict s, uint16_t *restrict d, size_t m)
{
    uint32_t odd = 0;
    for (size_t i = 0; i < m; i++) d[i] = f32_to_f16_common((uint32_t)s[i] << 16, &odd);
    if (odd)
        for (size_t i = 0; i < m; i++) d[i] = f32_to_f16_bits((uint32_t)s[i] << 16);
}

/* ---- overflow / underflow counting for the direct pairs ------------------- */

/* Counts over N elements: overflow when |src| < SINF (finite) and |dst| >= DINF,
 * underflow when |src| != 0 and |dst| == 0 (NaN never becomes zero, so it
 * needs no test of its own). The tests are written as sign bits of W-bit
 * differences (all operands are below 2^(W-1)), which -O2 vectorises. */
#define COUNT_FN(name, ST, DT, WT)                                                                \
    static inline void name##_run(const ST *s, const DT *d, size_t m, WT sabs, WT sinf, WT dabs,  \
                                  WT dinf, uint64_t *ov, uint64_t *un)                            \
    {                                                                                             \
        const unsigned top = sizeof(WT) * 8 - 1;                                                  \
        WT o = 0, u = 0;                                                                          \
        for (size_t i = 0; i < m; i++) {                                                          \
            WT a = s[i] & sabs, b = d[i] & dabs;                                                  \
            o += ((a - sinf) >> top) & ((dinf - 1 - b) >> top);                                   \
            u += ((0 - a) >> top) & ((b - 1) >> top);                                             \
        }                                                                                         \
        *ov += o;                                                                                 \
        *un += u;                                                                                 \
    }                                                                                             \
    static void name(const void *src, const void *dst, size_t n, WT sabs, WT sinf, WT dabs,       \
                     WT dinf, cki_cast_stats *st)                                                 \
    {                                                                                             \
        const ST *s = src;                                                                        \
        const DT *d = dst;                                                                        \
        size_t i = 0;                                                                             \
        for (; i + VB <= n; i += VB)                                                              \
            name##_run(s + i, d + i, VB, sabs, sinf, dabs, dinf, &st->overflow, &st->underflow);  \
        name##_run(s + i, d + i, n - i, sabs, sinf, dabs, dinf, &st->overflow, &st->underflow);   \
    }

COUNT_FN(count_32_16, uint32_t, uint16_t, uint32_t)
COUNT_FN(count_64_32, uint64_t, uint32_t, uint64_t)
COUNT_FN(count_64_16, uint64_t, uint16_t, uint64_t)
COUNT_FN(count_16_16, uint16_t, uint16_t, uint32_t)
#undef COUNT_FN

/* magnitude masks and the smallest non-finite magnitude of each format */
#define ABS64 0x7fffffffffffffffull
#define INF64 0x7ff0000000000000ull
#define ABS32 0x7fffffffu
#define INF32 0x7f800000u
#define ABS16 0x7fffu
#define INF_F16 0x7c00u
#define INF_BF16 0x7f80u

/* ---- direct loops: convert, then count when asked -------------------------- */

typedef void (*loop_fn)(const void *src, void *dst, size_t n, cki_cast_stats *st);

/* Converts in spans of SPAN elements so that, when counting, the second look
 * at a span finds it still in cache (a dense tensor may come in one call). */
#define SPAN 8192
#define LOOP(name, ST, DT, COUNT)                                                                 \
    static void loop_##name(const void *src, void *dst, size_t n, cki_cast_stats *st)             \
    {                                                                                             \
        for (size_t o = 0; o < n; o += SPAN) {                                                    \
            const ST *s = (const ST *)src + o;                                                    \
            DT *d = (DT *)dst + o;                                                                \
            size_t k = n - o < SPAN ? n - o : SPAN;                                               \
            BLOCKED(run_##name, s, d, k);                                                         \
            if (st) COUNT;                                                                        \
        }                                                                                         \
    }

/* the pairs that widen, or stay inside the range (F16 -> BF16), count nothing */
LOOP(f32_f16, uint32_t, uint16_t, count_32_16(s, d, k, ABS32, INF32, ABS16, INF_F16, st))
LOOP(f16_f32, uint16_t, uint32_t, (void)0)
LOOP(f32_bf16, uint32_t, uint16_t, count_32_16(s, d, k, ABS32, INF32, ABS16, INF_BF16, st))
LOOP(bf16_f32, uint16_t, uint32_t, (void)0)
LOOP(f64_f32, double, float, count_64_32(s, d, k, ABS64, INF64, ABS32, INF32, st))
LOOP(f32_f64, float, double, (void)0)
LOOP(f64_f16, double, uint16_t, count_64_16(s, d, k, ABS64, INF64, ABS16, INF_F16, st))
LOOP(f64_bf16, double, uint16_t, count_64_16(s, d, k, ABS64, INF64, ABS16, INF_BF16, st))
LOOP(f16_f64, uint16_t, double, (void)0)
LOOP(bf16_f64, uint16_t, double, (void)0)
LOOP(f16_bf16, uint16_t, uint16_t, (void)0)
LOOP(bf16_f16, uint16_t, uint16_t, count_16_16(s, d, k, ABS16, INF_BF16, ABS16, INF_F16, st))
#undef LOOP

#if CKI_CAST_X86
/* the F16C/AVX2 loops count while they convert */
static void simd_f32_f16(const void *s, void *d, size_t n, cki_cast_stats *st)
{
    cki_cast_x86_f32_f16(s, d, n, st);
}
static void simd_f16_f32(const void *s, void *d, size_t n, cki_cast_stats *st)
{
    (void)st;
    cki_cast_x86_f16_f32(s, d, n);
}
static void simd_f32_bf16(const void *s, void *d, size_t n, cki_cast_stats *st)
{
    cki_cast_x86_f32_bf16(s, d, n, st);
}
static void simd_bf16_f32(const void *s, void *d, size_t n, cki_cast_stats *st)
{
    (void)st;
    cki_cast_x86_bf16_f32(s, d, n);
}
#endif

/* ---- SIMD selection -------------------------------------------------------- */

static _Atomic int simd_state = -1; /* -1 not yet known, 0 scalar, 1 AVX2 + F16C */
static _Atomic int simd_forced_off;

static int simd_detect(void)
{
    const char *e = getenv("CKPTKIT_NO_SIMD");
    if (e && *e && strcmp(e, "0") != 0) return 0;
#if CKI_CAST_X86
    return cki_cast_x86_usable();
#else
    return 0;
#endif
}

int cki_cast_simd_active(void)
{
    int s = atomic_load_explicit(&simd_state, memory_order_relaxed);
    if (s < 0) {
        s = simd_detect();
        atomic_store_explicit(&simd_state, s, memory_order_relaxed);
    }
    return s && !atomic_load_explicit(&simd_forced_off, memory_order_relaxed);
}

void cki_cast_force_scalar(int on)
{
    atomic_store_explicit(&simd_forced_off, on != 0, memory_order_relaxed);
}

/* The direct loop for a pair, or NULL. Complex pairs use the component loops. */
static loop_fn direct_loop(ck_dtype from, ck_dtype to)
{
    int simd = cki_cast_simd_active();
    (void)simd;
#define PAIR(a, b) ((unsigned)(a) * CK_DT_COUNT + (unsigned)(b))
    switch (PAIR(from, to)) {
#if CKI_CAST_X86
    case PAIR(CK_DT_F32, CK_DT_F16): return simd ? simd_f32_f16 : loop_f32_f16;
    case PAIR(CK_DT_F16, CK_DT_F32): return simd ? simd_f16_f32 : loop_f16_f32;
    case PAIR(CK_DT_F32, CK_DT_BF16): return simd ? simd_f32_bf16 : loop_f32_bf16;
    case PAIR(CK_DT_BF16, CK_DT_F32): return simd ? simd_bf16_f32 : loop_bf16_f32;
#else
    case PAIR(CK_DT_F32, CK_DT_F16): return loop_f32_f16;
    case PAIR(CK_DT_F16, CK_DT_F32): return loop_f16_f32;
    case PAIR(CK_DT_F32, CK_DT_BF16): return loop_f32_bf16;
    case PAIR(CK_DT_BF16, CK_DT_F32): return loop_bf16_f32;
#endif
    case PAIR(CK_DT_F64, CK_DT_F32): return loop_f64_f32;
    case PAIR(CK_DT_C128, CK_DT_C64): return loop_f64_f32;
    case PAIR(CK_DT_F32, CK_DT_F64): return loop_f32_f64;
    case PAIR(CK_DT_C64, CK_DT_C128): return loop_f32_f64;
    case PAIR(CK_DT_F64, CK_DT_F16): return loop_f64_f16;
    case PAIR(CK_DT_F64, CK_DT_BF16): return loop_f64_bf16;
    case PAIR(CK_DT_F16, CK_DT_F64): return loop_f16_f64;
    case PAIR(CK_DT_BF16, CK_DT_F64): return loop_bf16_f64;
    case PAIR(CK_DT_F16, CK_DT_BF16): return loop_f16_bf16;
    case PAIR(CK_DT_BF16, CK_DT_F16): return loop_bf16_f16;
    default: return NULL;
    }
#undef PAIR
}

/* ---- pivot path ------------------------------------------------------------ */

static int is_f8(ck_dtype dt)
{
    return dt == CK_DT_F8_E4M3 || dt == CK_DT_F8_E5M2 || dt == CK_DT_F8_E4M3FNUZ ||
           dt == CK_DT_F8_E5M2FNUZ || dt == CK_DT_F8_E8M0;
}

/* Applies EXPR (in terms of v, an element of TYPE) to N elements of SRC into OUT. */
#define MAP(TYPE, EXPR)                                                                           \
    do {                                                                                          \
        const TYPE *s_ = src;                                                                     \
        for (size_t i = 0; i < n; i++) {                                                          \
            TYPE v = s_[i];                                                                       \
            out[i] = (EXPR);                                                                      \
        }                                                                                         \
    } while (0)

/* Source -> F32 bit patterns (exact, except that F64 and wide integers round
 * to nearest even). LUT holds the F32 bits of each code of an 8-bit float. */
static void to_p32(ck_dtype from, const void *src, size_t n, const uint32_t *lut, uint32_t *out)
{
    switch (from) {
    case CK_DT_BOOL: MAP(uint8_t, v ? 0x3f800000u : 0u); break;
    case CK_DT_U8: MAP(uint8_t, bits32((float)v)); break;
    case CK_DT_I8: MAP(int8_t, bits32((float)v)); break;
    case CK_DT_U16: MAP(uint16_t, bits32((float)v)); break;
    case CK_DT_I16: MAP(int16_t, bits32((float)v)); break;
    case CK_DT_U32: MAP(uint32_t, bits32((float)v)); break;
    case CK_DT_I32: MAP(int32_t, bits32((float)v)); break;
    case CK_DT_U64: MAP(uint64_t, bits32((float)v)); break;
    case CK_DT_I64: MAP(int64_t, bits32((float)v)); break;
    case CK_DT_F16: MAP(uint16_t, f16_to_f32_bits(v)); break;
    case CK_DT_BF16: MAP(uint16_t, (uint32_t)v << 16); break;
    case CK_DT_F32: memcpy(out, src, n * 4); break;
    case CK_DT_F64: MAP(double, bits32((float)v)); break;
    default: MAP(uint8_t, lut[v]); break; /* 8-bit floats */
    }
}

/* Source -> F64 (exact, except that 64-bit integers round to nearest even). */
static void to_p64(ck_dtype from, const void *src, size_t n, const uint32_t *lut, double *out)
{
    switch (from) {
    case CK_DT_BOOL: MAP(uint8_t, v ? 1.0 : 0.0); break;
    case CK_DT_U8: MAP(uint8_t, (double)v); break;
    case CK_DT_I8: MAP(int8_t, (double)v); break;
    case CK_DT_U16: MAP(uint16_t, (double)v); break;
    case CK_DT_I16: MAP(int16_t, (double)v); break;
    case CK_DT_U32: MAP(uint32_t, (double)v); break;
    case CK_DT_I32: MAP(int32_t, (double)v); break;
    case CK_DT_U64: MAP(uint64_t, (double)v); break;
    case CK_DT_I64: MAP(int64_t, (double)v); break;
    case CK_DT_F16: MAP(uint16_t, (double)from32(f16_to_f32_bits(v))); break;
    case CK_DT_BF16: MAP(uint16_t, (double)from32((uint32_t)v << 16)); break;
    case CK_DT_F32: MAP(float, (double)v); break;
    case CK_DT_F64: memcpy(out, src, n * 8); break;
    default: MAP(uint8_t, (double)from32(lut[v])); break; /* 8-bit floats */
    }
}

/* Integer or bool source -> 64-bit two's complement pattern. */
static void to_pint(ck_dtype from, const void *src, size_t n, uint64_t *out)
{
    switch (from) {
    case CK_DT_BOOL: MAP(uint8_t, v != 0); break;
    case CK_DT_U8: MAP(uint8_t, v); break;
    case CK_DT_I8: MAP(int8_t, (uint64_t)(int64_t)v); break;
    case CK_DT_U16: MAP(uint16_t, v); break;
    case CK_DT_I16: MAP(int16_t, (uint64_t)(int64_t)v); break;
    case CK_DT_U32: MAP(uint32_t, v); break;
    case CK_DT_I32: MAP(int32_t, (uint64_t)(int64_t)v); break;
    case CK_DT_U64: MAP(uint64_t, v); break;
    default: MAP(int64_t, (uint64_t)v); break; /* I64 */
    }
}
#undef MAP

/* Applies EXPR (in terms of v, a pivot element) to N pivot elements into DST as TYPE. */
#define PUT(TYPE, EXPR)                                                                           \
    do {                                                                                          \
        TYPE *d_ = dst;                                                                           \
        for (size_t i = 0; i < n; i++) {                                                          \
            v_t v = piv[i];                                                                       \
            d_[i] = (TYPE)(EXPR);                                                                 \
        }                                                                                         \
    } while (0)

/* F32 and F64 sources never come here for F16 and BF16 targets (direct loops),
 * so a NaN reaching BF16 gets torch's scalar code. */
static void from_p32(ck_dtype to, const uint32_t *piv, size_t n, void *dst)
{
    typedef uint32_t v_t;
    switch (to) {
    case CK_DT_F16: PUT(uint16_t, f32_to_f16_bits(v)); break;
    case CK_DT_BF16: PUT(uint16_t, f32_to_bf16_bits(v, BF16_NAN_SCALAR)); break;
    case CK_DT_F32: memcpy(dst, piv, n * 4); break;
    case CK_DT_F64: PUT(double, from32(v)); break;
    default: cki_f8_encode(to, piv, dst, n); break; /* 8-bit floats */
    }
}

/* F64 -> signed integer in [LO, HI]: truncation toward zero, saturation, NaN -> 0. */
static inline int64_t sat_signed(double x, int64_t lo, int64_t hi)
{
    if (x != x) return 0;
    if (x <= (double)lo) return lo;
    if (x >= (double)hi) return hi; /* (double)INT64_MAX is 2^63: exact bound */
    return (int64_t)x;
}

static inline uint64_t sat_unsigned(double x, uint64_t hi)
{
    if (x != x || x <= 0.0) return 0;
    if (x >= (double)hi) return hi; /* (double)UINT64_MAX is 2^64 */
    return (uint64_t)x;
}

static void from_p64(ck_dtype to, const double *piv, size_t n, void *dst)
{
    typedef double v_t;
    switch (to) {
    case CK_DT_BOOL: PUT(uint8_t, v != 0.0); break; /* NaN != 0 */
    case CK_DT_U8: PUT(uint8_t, sat_unsigned(v, UINT8_MAX)); break;
    case CK_DT_I8: PUT(int8_t, sat_signed(v, INT8_MIN, INT8_MAX)); break;
    case CK_DT_U16: PUT(uint16_t, sat_unsigned(v, UINT16_MAX)); break;
    case CK_DT_I16: PUT(int16_t, sat_signed(v, INT16_MIN, INT16_MAX)); break;
    case CK_DT_U32: PUT(uint32_t, sat_unsigned(v, UINT32_MAX)); break;
    case CK_DT_I32: PUT(int32_t, sat_signed(v, INT32_MIN, INT32_MAX)); break;
    case CK_DT_U64: PUT(uint64_t, sat_unsigned(v, UINT64_MAX)); break;
    case CK_DT_I64: PUT(int64_t, sat_signed(v, INT64_MIN, INT64_MAX)); break;
    default: memcpy(dst, piv, n * 8); break; /* F64 */
    }
}

/* Keeps the low bytes of each pattern (wraps), or nonzero -> 1 for BOOL. */
static void from_pint(ck_dtype to, const uint64_t *piv, size_t n, void *dst)
{
    typedef uint64_t v_t;
    switch (to) {
    case CK_DT_BOOL: PUT(uint8_t, v != 0); break;
    case CK_DT_U8: case CK_DT_I8: PUT(uint8_t, v); break;
    case CK_DT_U16: case CK_DT_I16: PUT(uint16_t, v); break;
    case CK_DT_U32: case CK_DT_I32: PUT(uint32_t, v); break;
    default: PUT(uint64_t, v); break; /* U64, I64 */
    }
}
#undef PUT

enum { CL_NONFINITE = 1, CL_ZERO = 2 };

/* Class of element I of a float DST of dtype TO (a pivot-path target). */
static inline int dst_class(ck_dtype to, const void *dst, size_t i)
{
    uint32_t a;
    switch (to) {
    case CK_DT_F16:
        a = ((const uint16_t *)dst)[i] & 0x7fffu;
        return (a >= 0x7c00u) | (a == 0) << 1;
    case CK_DT_BF16:
        a = ((const uint16_t *)dst)[i] & 0x7fffu;
        return (a >= 0x7f80u) | (a == 0) << 1;
    case CK_DT_F32:
        a = ((const uint32_t *)dst)[i] & 0x7fffffffu;
        return (a >= 0x7f800000u) | (a == 0) << 1;
    case CK_DT_F8_E4M3:
        a = ((const uint8_t *)dst)[i] & 0x7fu;
        return (a == 0x7fu) | (a == 0) << 1;
    case CK_DT_F8_E5M2:
        a = ((const uint8_t *)dst)[i] & 0x7fu;
        return (a >= 0x7cu) | (a == 0) << 1;
    case CK_DT_F8_E4M3FNUZ:
    case CK_DT_F8_E5M2FNUZ:
        a = ((const uint8_t *)dst)[i];
        return (a == 0x80u) | (a == 0) << 1;
    case CK_DT_F8_E8M0: return ((const uint8_t *)dst)[i] == 0xffu;
    default: return 0;
    }
}

/* Counts for a chunk cast through the F32 pivot. The pivot is exact for every
 * source but F64 (integers round, but stay finite and nonzero), so F64
 * sources are classified from their own bits. */
static void count_p32(ck_dtype from, const void *src, const uint32_t *piv, ck_dtype to,
                      const void *dst, size_t n, cki_cast_stats *st)
{
    for (size_t i = 0; i < n; i++) {
        int finite, nonzero, c;
        if (from == CK_DT_F64) {
            uint64_t a = bits64(((const double *)src)[i]) & ABS64;
            finite = a < INF64;
            nonzero = a != 0;
        } else {
            uint32_t a = piv[i] & 0x7fffffffu;
            finite = a < 0x7f800000u;
            nonzero = a != 0;
        }
        c = dst_class(to, dst, i);
        st->overflow += finite && (c & CL_NONFINITE);
        st->underflow += nonzero && (c & CL_ZERO);
    }
}

static char kind_of(ck_dtype dt)
{
    return cki_dtype_info_of(dt)->kind;
}

static void cast_pivot(ck_dtype from, ck_dtype to, const uint8_t *src, uint8_t *dst, size_t n,
                       cki_cast_stats *stats)
{
    unsigned ss = cki_dtype_size(from), ds = cki_dtype_size(to);
    char fk = kind_of(from), tk = kind_of(to);
    int int_to_int = fk != 'F' && tk != 'F';
    int via64 = !int_to_int && (to == CK_DT_F64 || tk != 'F');
    uint32_t lut[256];
    union {
        uint32_t p32[CHUNK];
        double p64[CHUNK];
        uint64_t pint[CHUNK];
    } piv;

    if (is_f8(from))
        for (unsigned c = 0; c < 256; c++) lut[c] = cki_f8_decode(from, (uint8_t)c);
    for (size_t done = 0; done < n;) {
        size_t k = n - done < CHUNK ? n - done : CHUNK;
        const uint8_t *s = src + done * ss;
        uint8_t *d = dst + done * ds;
        if (int_to_int) {
            to_pint(from, s, k, piv.pint);
            from_pint(to, piv.pint, k, d);
        } else if (via64) {
            to_p64(from, s, k, lut, piv.p64);
            from_p64(to, piv.p64, k, d);
        } else {
            to_p32(from, s, k, lut, piv.p32);
            from_p32(to, piv.p32, k, d);
            if (stats) count_p32(from, s, piv.p32, to, d, k, stats);
        }
        done += k;
    }
}

/* ---- entry points ---------------------------------------------------------- */

int cki_cast_supported(ck_dtype from, ck_dtype to)
{
    const cki_dtype_info *a = cki_dtype_info_of(from), *b = cki_dtype_info_of(to);
    if (!a || !b || a->bits % 8 || b->bits % 8) return 0; /* invalid or sub-byte */
    if (from == to) return 1;
    if (a->kind == 'C' || b->kind == 'C') return a->kind == 'C' && b->kind == 'C';
    return 1;
}

/* SRC and DST aligned to their element sizes. */
static void cast_aligned(ck_dtype from, ck_dtype to, const void *src, void *dst, size_t n,
                         cki_cast_stats *stats)
{
    loop_fn f = direct_loop(from, to);
    if (f) {
        if (kind_of(from) == 'C') n *= 2; /* component by component */
        f(src, dst, n, stats);
        return;
    }
    cast_pivot(from, to, src, dst, n, stats);
}

/* 1 if P is not aligned for elements of DT (complex: for one component). */
static int misaligned(const void *p, ck_dtype dt)
{
    unsigned a = cki_dtype_size(dt) / (kind_of(dt) == 'C' ? 2 : 1); /* a power of two */
    return ((uintptr_t)p & (a - 1)) != 0;
}

void cki_cast(ck_dtype from, ck_dtype to, const void *src, void *dst, size_t n,
              cki_cast_stats *stats)
{
    unsigned ss, ds;
    if (!n || !cki_cast_supported(from, to)) return;
    ss = cki_dtype_size(from);
    ds = cki_dtype_size(to);
    if (from == to) {
        memmove(dst, src, n * ss);
        return;
    }
    if (misaligned(src, from) || misaligned(dst, to)) {
        _Alignas(16) uint8_t sb[CHUNK * 16], db[CHUNK * 16];
        const uint8_t *s = src;
        uint8_t *d = dst;
        for (size_t done = 0; done < n;) {
            size_t k = n - done < CHUNK ? n - done : CHUNK;
            memcpy(sb, s + done * ss, k * ss);
            cast_aligned(from, to, sb, db, k, stats);
            memcpy(d + done * ds, db, k * ds);
            done += k;
        }
        return;
    }
    cast_aligned(from, to, src, dst, n, stats);
}

/* ---- byte swaps ------------------------------------------------------------ */

static inline void swap2_run(uint8_t *p, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        uint16_t v;
        memcpy(&v, p + 2 * i, 2);
        v = __builtin_bswap16(v);
        memcpy(p + 2 * i, &v, 2);
    }
}
static inline void swap4_run(uint8_t *p, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        uint32_t v;
        memcpy(&v, p + 4 * i, 4);
        v = __builtin_bswap32(v);
        memcpy(p + 4 * i, &v, 4);
    }
}
static inline void swap8_run(uint8_t *p, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        uint64_t v;
        memcpy(&v, p + 8 * i, 8);
        v = __builtin_bswap64(v);
        memcpy(p + 8 * i, &v, 8);
    }
}
static inline void swap16_run(uint8_t *p, size_t m)
{
    for (size_t i = 0; i < m; i++) {
        uint64_t lo, hi;
        memcpy(&lo, p + 16 * i, 8);
        memcpy(&hi, p + 16 * i + 8, 8);
        lo = __builtin_bswap64(lo);
        hi = __builtin_bswap64(hi);
        memcpy(p + 16 * i, &hi, 8);
        memcpy(p + 16 * i + 8, &lo, 8);
    }
}

void cki_bswap(void *p, size_t n, unsigned esize)
{
    uint8_t *b = p;
    size_t i = 0;
    switch (esize) {
    case 0:
    case 1: return;
    case 2:
        for (; i + VB <= n; i += VB) swap2_run(b + 2 * i, VB);
        swap2_run(b + 2 * i, n - i);
        return;
    case 4:
        for (; i + VB <= n; i += VB) swap4_run(b + 4 * i, VB);
        swap4_run(b + 4 * i, n - i);
        return;
    case 8:
        for (; i + VB <= n; i += VB) swap8_run(b + 8 * i, VB);
        swap8_run(b + 8 * i, n - i);
        return;
    case 16: swap16_run(b, n); return;
    default:
        for (; i < n; i++) {
            uint8_t *e = b + i * esize;
            for (unsigned x = 0, y = esize - 1; x < y; x++, y--) {
                uint8_t t = e[x];
                e[x] = e[y];
                e[y] = t;
            }
        }
    }
}
