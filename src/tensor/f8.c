/*
 * f8.c -- the 8-bit float formats, one code at a time, to and from F32 bits.
 *
 *   format       layout      bias  largest finite     NaN                 Inf
 *   F8_E4M3      S EEEE MMM    7   0x7E = 448         S.1111.111          none
 *   F8_E5M2      S EEEEE MM   15   0x7B = 57344       S.11111.{01,10,11}  S.11111.00
 *   F8_E4M3FNUZ  S EEEE MMM    8   0x7F = 240         0x80 only           none
 *   F8_E5M2FNUZ  S EEEEE MM   16   0x7F = 57344       0x80 only           none
 *   F8_E8M0      EEEEEEEE    127   0xFE = 2^127       0xFF                none
 *
 * Exponent field 0 holds subnormals (m x 2^(1-bias-mbits)) in the four signed
 * formats. FNUZ formats have no negative zero: 0x80 is their only NaN.
 *
 * Encoding rounds to nearest, ties to even, straight from the F32 bits (every
 * narrower source is exact in F32; F64 sources are first rounded to F32 by the
 * caller, as torch does). A result beyond the largest finite value becomes Inf
 * where the format has one (E5M2), else NaN. NaN keeps its sign where the
 * format has signed NaNs (code S.1111111), Inf becomes NaN in the no-Inf formats.
 * These are the rules of the OCP 8-bit float spec and of torch's c10
 * Float8_* types, so the codes match what torch.Tensor.to() writes.
 *
 * Decoding is exact. NaN decodes as torch does: E4M3 S.1111.111 -> S|0x7FF00000,
 * E5M2 like the top byte of an F16 NaN (quiet bit set, payload kept), FNUZ 0x80
 * -> 0x7FC00000, E8M0 0xFF -> 0x7F800001.
 *
 * E8M0 (a power-of-two scale, no sign, no zero) follows torch's
 * float8_e8m0fnu: the sign is dropped, |x| rounds to a power of two with the
 * midpoint 1.5 x 2^e rounding up, anything below 2^-127 (zero included)
 * gives 0x00 = 2^-127, and values from 1.5 x 2^127 up, Inf and NaN give 0xFF.
 *
 * Hand-written because no standard C type or library covers these formats.
 */
#include "cast_impl.h"

typedef struct f8fmt {
    unsigned mbits;   /* mantissa bits */
    int bias;         /* exponent bias */
    uint32_t maxmag;  /* largest finite code without the sign bit */
    uint32_t infcode; /* Inf code without the sign bit, 0: no Inf */
    int fnuz;         /* 0x80 is NaN, no negative zero */
} f8fmt;

static const f8fmt e4m3 = {3, 7, 0x7e, 0, 0};
static const f8fmt e5m2 = {2, 15, 0x7b, 0x7c, 0};
static const f8fmt e4m3fnuz = {3, 8, 0x7f, 0, 1};
static const f8fmt e5m2fnuz = {2, 16, 0x7f, 0, 1};

static const f8fmt *format_of(ck_dtype dt)
{
    switch (dt) {
    case CK_DT_F8_E4M3: return &e4m3;
    case CK_DT_F8_E5M2: return &e5m2;
    case CK_DT_F8_E4M3FNUZ: return &e4m3fnuz;
    case CK_DT_F8_E5M2FNUZ: return &e5m2fnuz;
    default: return NULL;
    }
}

static uint32_t decode(const f8fmt *f, uint8_t c)
{
    uint32_t sign = (uint32_t)(c & 0x80u) << 24, mag = c & 0x7fu;
    uint32_t e = mag >> f->mbits, m = mag & ((1u << f->mbits) - 1u);
    if (f->fnuz) {
        if (c == 0x80) return 0x7fc00000u;
    } else if (f->infcode) {
        if (mag >= f->infcode) /* E5M2: exponent all ones */
            return sign | 0x7f800000u | (m ? 0x400000u | (m << (23 - f->mbits)) : 0);
    } else if (mag == 0x7f) {
        return sign | 0x7f800000u | (m << (23 - f->mbits));
    }
    if (e) return sign | (uint32_t)((int)e - f->bias + 127) << 23 | (m << (23 - f->mbits));
    if (!m) return sign;
    /* subnormal m x 2^(1 - bias - mbits): normalise so the top set bit is implicit */
    int top = 31 - __builtin_clz(m);
    uint32_t ef = (uint32_t)(top + 1 - f->bias - (int)f->mbits + 127);
    return sign | ef << 23 | ((m << (23 - top)) & 0x7fffffu);
}

static uint8_t encode(const f8fmt *f, uint32_t u)
{
    uint32_t sign = (u >> 24) & 0x80u, a = u & 0x7fffffffu;
    uint32_t nan = f->fnuz ? 0x80u : sign | 0x7fu;
    uint32_t sig, shift, q, rem, half, code;
    int e, emin = 1 - f->bias;

    if (a > 0x7f800000u) return (uint8_t)nan;
    if (a == 0x7f800000u) return (uint8_t)(f->infcode ? sign | f->infcode : nan);
    e = (int)(a >> 23);
    sig = a & 0x7fffffu;
    if (e) sig |= 0x800000u;
    e = e ? e - 127 : -126;
    /* keep mbits+1 significant bits at exponent e, or fewer below the normal range */
    shift = 23 - f->mbits + (e < emin ? (uint32_t)(emin - e) : 0);
    if (shift > 25) {
        q = 0; /* below half the smallest subnormal: rounds to zero */
    } else {
        q = sig >> shift;
        rem = sig & ((1u << shift) - 1u);
        half = 1u << (shift - 1);
        q += rem > half || (rem == half && (q & 1u));
    }
    /* normal: q in [2^m, 2^(m+1)], a carry out of the mantissa bumps the exponent */
    code = e >= emin ? ((uint32_t)(e - emin) << f->mbits) + q : q;
    if (code > f->maxmag) return (uint8_t)(f->infcode ? sign | f->infcode : nan);
    if (!code && f->fnuz) return 0;
    return (uint8_t)(sign | code);
}

static uint32_t e8m0_decode(uint8_t c)
{
    if (c == 0xff) return 0x7f800001u;
    if (!c) return 0x00400000u;
    return (uint32_t)c << 23;
}

static uint8_t e8m0_encode(uint32_t u)
{
    uint32_t e = (u >> 23) & 0xffu;
    uint32_t guard = (u >> 22) & 1u, below = (u & 0x3fffffu) != 0;
    if (e == 0xff) return 0xff;
    /* the implicit bit is the lsb: normal numbers round the midpoint up */
    if (guard && (below || e > 0)) e++;
    return (uint8_t)e;
}

uint32_t cki_f8_decode(ck_dtype dt, uint8_t c)
{
    const f8fmt *f = format_of(dt);
    return f ? decode(f, c) : e8m0_decode(c);
}

void cki_f8_encode(ck_dtype dt, const uint32_t *src, uint8_t *dst, size_t n)
{
    const f8fmt *f = format_of(dt);
    if (f)
        for (size_t i = 0; i < n; i++) dst[i] = encode(f, src[i]);
    else
        for (size_t i = 0; i < n; i++) dst[i] = e8m0_encode(src[i]);
}
