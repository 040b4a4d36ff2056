/*
 * t_cast.c -- element conversions (src/tensor/cast.c, cast_x86.c, f8.c).
 *
 * Expected values come from the format definitions, computed here with ldexp
 * and nextafter, never from the code under test: every F16/BF16 code decodes
 * to (-1)^s x m x 2^e; the midpoint of two neighbouring codes rounds to the
 * even one and its neighbours in F32 to the nearer one. torch itself is the
 * oracle in tests/interop/test_casts.py. Paths: each test that can runs both
 * the scalar loops and the SIMD loops (cki_cast_force_scalar).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "tensor/cast_impl.h"

#if CKI_CAST_X86
#include <cpuid.h>
#endif

/* ---- helpers --------------------------------------------------------------- */

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float ffrom(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Runs BODY once with the scalar loops and once with the run-time choice. */
#define BOTH_PATHS(...)                                                                           \
    do {                                                                                          \
        for (int scalar_ = 1; scalar_ >= 0; scalar_--) {                                          \
            cki_cast_force_scalar(scalar_);                                                       \
            __VA_ARGS__;                                                                          \
        }                                                                                         \
        cki_cast_force_scalar(0);                                                                 \
    } while (0)

/* Value of a binary float code with MBITS mantissa bits and exponent BIAS
 * (finite codes only): the textbook definition. */
static double code_value(uint32_t code, unsigned mbits, unsigned ebits, int bias)
{
    uint32_t m = code & ((1u << mbits) - 1), e = (code >> mbits) & ((1u << ebits) - 1);
    int neg = (code >> (mbits + ebits)) & 1;
    double v = e ? ldexp((double)((1u << mbits) | m), (int)e - bias - (int)mbits)
                 : ldexp((double)m, 1 - bias - (int)mbits);
    return neg ? -v : v;
}

static int same_float(float got, double want)
{
    if (isnan(want)) return isnan(got);
    return (double)got == want && !signbit(got) == !signbit(want);
}

/* ---- F16 and BF16: every code ---------------------------------------------- */

TEST(cast_f16_all_codes)
{
    static uint16_t h[65536], back[65536];
    static uint32_t f[65536];
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    BOTH_PATHS({
        int bad = 0;
        cki_cast(CK_DT_F16, CK_DT_F32, h, f, 65536, NULL);
        cki_cast(CK_DT_F32, CK_DT_F16, f, back, 65536, NULL);
        for (uint32_t i = 0; i < 65536 && bad < 5; i++) {
            uint32_t e = (i >> 10) & 31, m = i & 1023, sign = (i & 0x8000u) << 16;
            int ok;
            if (e == 31 && m) /* NaN: quiet bit set, sign and payload kept both ways */
                ok = f[i] == (sign | 0x7fc00000u | m << 13) && back[i] == (i | 0x200u);
            else if (e == 31)
                ok = f[i] == (sign | 0x7f800000u) && back[i] == i;
            else
                ok = same_float(ffrom(f[i]), code_value(i, 10, 5, 15)) && back[i] == i;
            ok = ok && fbits(cki_f16_to_f32((uint16_t)i)) == f[i];
            ok = ok && cki_f32_to_f16(ffrom(f[i])) == back[i];
            if (!ok) {
                fprintf(stderr, "  f16 0x%04x -> f32 0x%08x -> f16 0x%04x (scalar=%d)\n",
                        (unsigned)i, (unsigned)f[i], back[i], scalar_);
                bad++;
            }
        }
        CHECK(bad == 0);
    });
}

TEST(cast_bf16_all_codes)
{
    static uint16_t h[65536], back[65536];
    static uint32_t f[65536];
    for (uint32_t i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    BOTH_PATHS({
        int bad = 0;
        cki_cast(CK_DT_BF16, CK_DT_F32, h, f, 65536, NULL);
        cki_cast(CK_DT_F32, CK_DT_BF16, f, back, 65536, NULL);
        for (uint32_t i = 0; i < 65536 && bad < 5; i++) {
            uint32_t e = (i >> 7) & 255, m = i & 127;
            int ok = f[i] == i << 16; /* the bits, signalling NaNs included */
            if (e == 255 && m)
                ok = ok && back[i] == 0xffff; /* torch's vectorised NaN */
            else if (e == 255)
                ok = ok && back[i] == i;
            else
                ok = ok && same_float(ffrom(f[i]), code_value(i, 7, 8, 127)) && back[i] == i;
            ok = ok && fbits(cki_bf16_to_f32((uint16_t)i)) == f[i];
            ok = ok && cki_f32_to_bf16(ffrom(f[i])) == back[i];
            if (!ok) {
                fprintf(stderr, "  bf16 0x%04x -> f32 0x%08x -> bf16 0x%04x (scalar=%d)\n",
                        (unsigned)i, (unsigned)f[i], back[i], scalar_);
                bad++;
            }
        }
        CHECK(bad == 0);
    });
}

/* For each pair of neighbouring positive finite codes of a 16-bit format:
 * the F32 midpoint goes to the even code, one F32 step below to the lower,
 * one step above to the upper; the same negated. The last code's upper
 * neighbour is Inf. */
static void check_midpoints(ck_dtype to, unsigned mbits, unsigned ebits, int bias, uint16_t top)
{
    size_t n = (size_t)top * 6, k = 0;
    float *in = malloc(n * sizeof *in);
    uint16_t *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    for (uint32_t c = 0; c < top; c++) {
        double lo = code_value(c, mbits, ebits, bias);
        double hi = c + 1 == top ? ldexp(1.0, 1 << (ebits - 1)) /* the first power past max */
                                 : code_value(c + 1, mbits, ebits, bias);
        float mid = (float)((lo + hi) / 2); /* exact: one more bit than the format */
        uint16_t even = (uint16_t)(c & 1 ? c + 1 : c);
        CHECK((double)mid == (lo + hi) / 2);
        for (int neg = 0; neg < 2; neg++) {
            uint16_t s = neg ? 0x8000 : 0;
            float sg = neg ? -1.0f : 1.0f;
            in[k] = sg * mid, want[k++] = s | even;
            in[k] = sg * nextafterf(mid, 0.0f), want[k++] = (uint16_t)(s | c);
            in[k] = sg * nextafterf(mid, INFINITY), want[k++] = (uint16_t)(s | (c + 1));
        }
    }
    BOTH_PATHS({
        int bad = 0;
        memset(got, 0, n * sizeof *got);
        cki_cast(CK_DT_F32, to, in, got, n, NULL);
        for (size_t i = 0; i < n && bad < 5; i++) {
            if (got[i] != want[i]) {
                fprintf(stderr, "  %s: f32 %a -> 0x%04x, want 0x%04x (scalar=%d)\n",
                        ck_dtype_name(to), (double)in[i], got[i], want[i], scalar_);
                bad++;
            }
        }
        CHECK(bad == 0);
    });
    free(in);
    free(want);
    free(got);
}

TEST(cast_f32_f16_rounding_boundaries)
{
    check_midpoints(CK_DT_F16, 10, 5, 15, 0x7c00);
}

TEST(cast_f32_bf16_rounding_boundaries)
{
    check_midpoints(CK_DT_BF16, 7, 8, 127, 0x7f80);
}

TEST(cast_f16_bf16_subnormals_and_specials)
{
    /* F32 inputs and their F16 codes, worked out by hand */
    static const struct {
        uint32_t in;
        uint16_t f16, bf16;
    } rows[] = {
        {0x33800000u, 0x0001, 0x3380}, /* 2^-24: smallest F16 subnormal */
        {0x33000000u, 0x0000, 0x3300}, /* 2^-25: tie between 0 and 2^-24 -> 0 */
        {0x33000001u, 0x0001, 0x3300}, /* just above the tie */
        {0x33c00000u, 0x0002, 0x33c0}, /* 3 x 2^-25: tie between 1 and 2 -> 2 */
        {0x38800000u, 0x0400, 0x3880}, /* 2^-14: smallest normal */
        {0x387fe000u, 0x0400, 0x3880}, /* 2^-14 - 2^-25: tie between 0x3ff and 0x400 */
        {0x387fc000u, 0x03ff, 0x3880}, /* largest subnormal */
        {0xb3000001u, 0x8001, 0xb300}, /* negative subnormal */
        {0xb2800000u, 0x8000, 0xb280}, /* -2^-26 -> -0 */
        {0x00000001u, 0x0000, 0x0000}, /* F32 subnormal -> 0 */
        {0x00008000u, 0x0000, 0x0000}, /* BF16 tie at the bottom -> 0 */
        {0x00018000u, 0x0000, 0x0002}, /* BF16 tie between 1 and 2 -> 2 */
        {0x00008001u, 0x0000, 0x0001},
        {0x80000000u, 0x8000, 0x8000}, /* -0 */
        {0x477fe000u, 0x7bff, 0x4780}, /* 65504 */
        {0x477fefffu, 0x7bff, 0x4780}, /* just below 65520 */
        {0x477ff000u, 0x7c00, 0x4780}, /* 65520 -> Inf */
        {0x7f7fffffu, 0x7c00, 0x7f80}, /* F32 max -> Inf in both */
        {0xff7fffffu, 0xfc00, 0xff80},
        {0x7f800000u, 0x7c00, 0x7f80},
        {0xff800000u, 0xfc00, 0xff80},
        {0x7fc00000u, 0x7e00, 0xffff}, /* NaNs: torch's codes (F16: quiet, payload cut) */
        {0xffc00000u, 0xfe00, 0xffff},
        {0x7f800001u, 0x7e00, 0xffff},
        {0xff812345u, 0xfe09, 0xffff},
        {0x7fa00000u, 0x7f00, 0xffff},
        {0x7fffffffu, 0x7fff, 0xffff},
    };
    size_t n = sizeof rows / sizeof rows[0];
    uint32_t in[32];
    uint16_t h[32], b[32];
    for (size_t i = 0; i < n; i++) in[i] = rows[i].in;
    BOTH_PATHS({
        cki_cast(CK_DT_F32, CK_DT_F16, in, h, n, NULL);
        cki_cast(CK_DT_F32, CK_DT_BF16, in, b, n, NULL);
        for (size_t i = 0; i < n; i++) {
            if (h[i] != rows[i].f16 || b[i] != rows[i].bf16)
                fprintf(stderr, "  f32 0x%08x -> f16 0x%04x bf16 0x%04x (scalar=%d)\n",
                        (unsigned)in[i], h[i], b[i], scalar_);
            CHECK(h[i] == rows[i].f16);
            CHECK(b[i] == rows[i].bf16);
        }
    });
}

TEST(cast_f64_rounds_through_f32_like_torch)
{
    /* torch 1.13 builds Half and BFloat16 from a float: F64 rounds to F32 first */
    double in[4] = {1 + ldexp(1, -11) + ldexp(1, -40), 1 + ldexp(1, -8) + ldexp(1, -40),
                    -(1 + ldexp(1, -11) + ldexp(1, -40)), 1e-300};
    uint16_t h[4], b[4];
    cki_cast(CK_DT_F64, CK_DT_F16, in, h, 4, NULL);
    cki_cast(CK_DT_F64, CK_DT_BF16, in, b, 4, NULL);
    CHECK(h[0] == 0x3c00); /* straight rounding would give 0x3c01 */
    CHECK(b[1] == 0x3f80); /* straight rounding would give 0x3f81 */
    CHECK(h[2] == 0xbc00);
    CHECK(h[3] == 0 && b[3] == 0);

    /* and on random doubles the F64 path equals F64 -> F32 -> X */
    enum { N = 100000 };
    static double d[N];
    static float f[N];
    static uint16_t viaf[N], direct[N], viafb[N], directb[N];
    static uint8_t f8a[N], f8b[N];
    for (size_t i = 0; i < N; i++) {
        uint64_t r = rnd();
        int e = (int)(r % 80) - 50; /* 2^-50 .. 2^29: subnormal, normal and overflow */
        d[i] = ldexp((double)(rnd() >> 11), e - 53) * (r & (1ull << 40) ? -1 : 1);
        f[i] = (float)d[i];
    }
    cki_cast(CK_DT_F64, CK_DT_F16, d, direct, N, NULL);
    cki_cast(CK_DT_F32, CK_DT_F16, f, viaf, N, NULL);
    cki_cast(CK_DT_F64, CK_DT_BF16, d, directb, N, NULL);
    cki_cast(CK_DT_F32, CK_DT_BF16, f, viafb, N, NULL);
    CHECK(memcmp(direct, viaf, sizeof direct) == 0);
    CHECK(memcmp(directb, viafb, sizeof directb) == 0);
    cki_cast(CK_DT_F64, CK_DT_F8_E4M3, d, f8a, N, NULL);
    cki_cast(CK_DT_F32, CK_DT_F8_E4M3, f, f8b, N, NULL);
    CHECK(memcmp(f8a, f8b, sizeof f8a) == 0);
}

TEST(cast_f32_f64_pairs)
{
    float f[6] = {1.5f, -0.0f, 1e-45f, INFINITY, 3.4028235e38f, 0};
    double d[6], dn[5] = {1e300, -1e-300, 0.1, ldexp(1, -149), ldexp(1, -150)};
    float back[6];
    cki_cast(CK_DT_F32, CK_DT_F64, f, d, 6, NULL);
    cki_cast(CK_DT_F64, CK_DT_F32, d, back, 6, NULL);
    CHECK(memcmp(f, back, sizeof f) == 0);
    CHECK(d[0] == 1.5 && signbit(d[1]) && d[2] == ldexp(1, -149) && isinf(d[3]));
    cki_cast(CK_DT_F64, CK_DT_F32, dn, back, 5, NULL);
    CHECK(isinf(back[0]) && back[1] == 0 && signbit(back[1]) && back[2] == 0.1f);
    CHECK(back[3] == ldexp(1, -149) && back[4] == 0); /* 2^-150: tie -> 0 */
}

/* ---- counters ------------------------------------------------------------------ */

TEST(cast_overflow_underflow_counts)
{
    float f[] = {1e5f, 65504.0f, 65519.0f, 65520.0f, -1e38f, INFINITY, NAN, 1e-8f, -1e-9f,
                 0.0f, -0.0f, 3e-8f, 1e-40f, 1e-45f, 1.0f};
    size_t n = sizeof f / sizeof f[0];
    uint16_t h[16], b[16];
    uint8_t raw[64];
    BOTH_PATHS({
        cki_cast_stats st = {0, 0};
        cki_cast(CK_DT_F32, CK_DT_F16, f, h, n, &st);
        CHECK(st.overflow == 3 && st.underflow == 4);
        cki_cast(CK_DT_F32, CK_DT_F16, f, h, n, &st); /* counts add up */
        CHECK(st.overflow == 6 && st.underflow == 8);
        cki_cast(CK_DT_F32, CK_DT_F16, f, h, n, NULL);
        /* misaligned destination: the bounce path counts too */
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_F32, CK_DT_F16, f, raw + 1, n, &st);
        CHECK(st.overflow == 3 && st.underflow == 4);
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_F32, CK_DT_BF16, f, b, n, &st);
        CHECK(st.overflow == 0 && st.underflow == 1); /* only 1e-45 -> 0: BF16 keeps 1e-40 */
    });
    {
        float big[3] = {3.4028235e38f, -3.4e38f, 3.38e38f}; /* the last stays finite */
        cki_cast_stats st = {0, 0};
        cki_cast(CK_DT_F32, CK_DT_BF16, big, b, 3, &st);
        CHECK(st.overflow == 2 && st.underflow == 0);
    }
    {
        double d[] = {1e300, -1e300, 1e-300, 1e-50, 1.0, INFINITY, NAN, 0.0, 70000.0};
        size_t m = sizeof d / sizeof d[0];
        float f32[16];
        cki_cast_stats st = {0, 0};
        cki_cast(CK_DT_F64, CK_DT_F32, d, f32, m, &st);
        CHECK(st.overflow == 2 && st.underflow == 2);
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_F64, CK_DT_F16, d, h, m, &st);
        CHECK(st.overflow == 3 && st.underflow == 2);
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_F64, CK_DT_BF16, d, h, m, &st);
        CHECK(st.overflow == 2 && st.underflow == 2);
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_F64, CK_DT_F8_E4M3, d, raw, m, &st); /* 70000 -> NaN too */
        CHECK(st.overflow == 3 && st.underflow == 2);
    }
    {
        uint16_t bf[] = {0x5015 /* 1e10 */, 0x2edb /* 1e-10 */, 0x3f80, 0x7f80, 0x7fc0, 0x8000};
        cki_cast_stats st = {0, 0};
        cki_cast(CK_DT_BF16, CK_DT_F16, bf, h, 6, &st);
        CHECK(st.overflow == 1 && st.underflow == 1);
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_BF16, CK_DT_F32, bf, raw, 6, &st); /* widening: nothing to count */
        CHECK(st.overflow == 0 && st.underflow == 0);
    }
    {
        float g[] = {500.0f, 448.0f, 464.0f, 1e-4f, -1e-5f, INFINITY, NAN, 0.0f, 1e5f};
        size_t m = sizeof g / sizeof g[0];
        cki_cast_stats st = {0, 0};
        cki_cast(CK_DT_F32, CK_DT_F8_E4M3, g, raw, m, &st);
        CHECK(st.overflow == 2 && st.underflow == 2);
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_F32, CK_DT_F8_E5M2, g, raw, m, &st); /* 1e5 -> Inf; 1e-5 -> 2^-16 */
        CHECK(st.overflow == 1 && st.underflow == 0);
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_F32, CK_DT_F8_E4M3FNUZ, g, raw, m, &st); /* >= 248 -> NaN */
        CHECK(st.overflow == 4 && st.underflow == 2);
        memset(&st, 0, sizeof st);
        cki_cast(CK_DT_F32, CK_DT_F8_E8M0, g, raw, m, &st); /* nothing finite overflows */
        CHECK(st.overflow == 0 && st.underflow == 0);
    }
    {
        int32_t iv[3] = {70000, -70000, 65504};
        cki_cast_stats st = {0, 0};
        cki_cast(CK_DT_I32, CK_DT_F16, iv, h, 3, &st);
        CHECK(st.overflow == 2 && st.underflow == 0);
        CHECK(h[0] == 0x7c00 && h[1] == 0xfc00 && h[2] == 0x7bff);
    }
}

/* ---- SIMD against scalar ------------------------------------------------------ */

/* Random F32 patterns with plenty of NaN payloads, Inf, zero, subnormals and
 * values next to F16 / BF16 rounding points. */
static uint32_t tricky32(void)
{
    uint64_t r = rnd();
    uint32_t u = (uint32_t)r, s = (uint32_t)(r >> 32) & 0x80000000u;
    switch ((r >> 33) % 10) {
    case 0: return s | 0x7f800000u | (u & 0x7fffffu) | 1u; /* NaN, any payload */
    case 1: return s | 0x7f800000u;
    case 2: return s | (u & 0x7fffffu);                    /* F32 subnormal or 0 */
    case 3: return s | ((0x33u + (u >> 28)) << 23) | (u & 0x7fffffu); /* F16 subnormals */
    case 4: return s | (((u >> 8) & 0x7f7fu) << 16) | 0x8000u; /* BF16 midpoints */
    case 5: return s | ((0x38800000u + (u & 0x0fffffffu)) & ~0xfffu) | 0x1000u; /* F16 mids */
    case 6: return s | (0x477ff000u + (u & 0x1fffu) - 0x1000u); /* around 65520 */
    default: return u;
    }
}

TEST(cast_simd_matches_scalar)
{
    enum { N = (1 << 20) + 13 };
    uint32_t *f = malloc((N + 1) * 4), *fa = malloc((N + 1) * 4), *fb = malloc((N + 1) * 4);
    uint16_t *h = malloc((N + 1) * 2), *ha = malloc((N + 1) * 2), *hb = malloc((N + 1) * 2);
    cki_cast_stats sa = {0, 0}, sb = {0, 0};
    int simd;
#if CKI_CAST_X86
    {
        const char *env = getenv("CKPTKIT_NO_SIMD");
        unsigned a, b, c, d;
        if ((!env || !*env || !strcmp(env, "0")) && __builtin_cpu_supports("avx2") &&
            __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C))
            CHECK(cki_cast_simd_active()); /* else this test compares scalar with scalar */
    }
#endif
    simd = cki_cast_simd_active();
    if (!simd) fprintf(stderr, "  note: no SIMD path on this machine or CKPTKIT_NO_SIMD set\n");
    for (size_t i = 0; i < N + 1; i++) {
        f[i] = tricky32();
        h[i] = (uint16_t)rnd();
        if (i % 997 == 0) f[i] = 0x7f7fffffu | (uint32_t)(i & 1) << 31; /* BF16 overflow too */
        if (i % 991 == 0) f[i] = 0x00001234u | (uint32_t)(i & 1) << 31;  /* and underflow */
    }
    /* element offset 1 so that vector loads are not 32-byte aligned; N odd for tails */
    cki_cast_force_scalar(1);
    cki_cast(CK_DT_F32, CK_DT_F16, f + 1, ha + 1, N, &sa);
    cki_cast_force_scalar(0);
    cki_cast(CK_DT_F32, CK_DT_F16, f + 1, hb + 1, N, &sb);
    CHECK(memcmp(ha + 1, hb + 1, (size_t)N * 2) == 0);
    CHECK(sa.overflow == sb.overflow && sa.underflow == sb.underflow);
    CHECK(sa.overflow > 1000 && sa.underflow > 1000);

    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    cki_cast_force_scalar(1);
    cki_cast(CK_DT_F32, CK_DT_BF16, f + 1, ha + 1, N, &sa);
    cki_cast_force_scalar(0);
    cki_cast(CK_DT_F32, CK_DT_BF16, f + 1, hb + 1, N, &sb);
    CHECK(memcmp(ha + 1, hb + 1, (size_t)N * 2) == 0);
    CHECK(sa.overflow == sb.overflow && sa.underflow == sb.underflow);
    CHECK(sa.overflow > 1000 && sa.underflow > 1000);

    cki_cast_force_scalar(1);
    cki_cast(CK_DT_F16, CK_DT_F32, h + 1, fa + 1, N, NULL);
    cki_cast_force_scalar(0);
    cki_cast(CK_DT_F16, CK_DT_F32, h + 1, fb + 1, N, NULL);
    CHECK(memcmp(fa + 1, fb + 1, (size_t)N * 4) == 0);

    cki_cast_force_scalar(1);
    cki_cast(CK_DT_BF16, CK_DT_F32, h + 1, fa + 1, N, NULL);
    cki_cast_force_scalar(0);
    cki_cast(CK_DT_BF16, CK_DT_F32, h + 1, fb + 1, N, NULL);
    CHECK(memcmp(fa + 1, fb + 1, (size_t)N * 4) == 0);

    /* every length from 0 to 40: tails and short inputs */
    for (size_t len = 0; len <= 40; len++) {
        memset(ha, 0xaa, 64 * 2);
        memset(hb, 0xaa, 64 * 2);
        cki_cast_force_scalar(1);
        cki_cast(CK_DT_F32, CK_DT_F16, f, ha, len, NULL);
        cki_cast_force_scalar(0);
        cki_cast(CK_DT_F32, CK_DT_F16, f, hb, len, NULL);
        CHECK(memcmp(ha, hb, 64 * 2) == 0); /* nothing written past LEN either */
        memset(fa, 0xaa, 64 * 4);
        memset(fb, 0xaa, 64 * 4);
        cki_cast_force_scalar(1);
        cki_cast(CK_DT_F16, CK_DT_F32, h, fa, len, NULL);
        cki_cast_force_scalar(0);
        cki_cast(CK_DT_F16, CK_DT_F32, h, fb, len, NULL);
        CHECK(memcmp(fa, fb, 64 * 4) == 0);
    }
    cki_cast_force_scalar(0);
    free(f);
    free(fa);
    free(fb);
    free(h);
    free(ha);
    free(hb);
}

/* ---- 8-bit floats ---------------------------------------------------------------- */

typedef struct f8spec {
    ck_dtype dt;
    unsigned mbits, ebits;
    int bias;
    uint8_t maxcode;  /* largest finite positive code */
    int fnuz;         /* 0x80 is the only NaN, no -0 */
    int has_inf;      /* E5M2 */
} f8spec;

static const f8spec f8specs[] = {
    {CK_DT_F8_E4M3, 3, 4, 7, 0x7e, 0, 0},
    {CK_DT_F8_E5M2, 2, 5, 15, 0x7b, 0, 1},
    {CK_DT_F8_E4M3FNUZ, 3, 4, 8, 0x7f, 1, 0},
    {CK_DT_F8_E5M2FNUZ, 2, 5, 16, 0x7f, 1, 0},
};

/* The F32 bits code C of format P must decode to. */
/* The F16 code torch 2.x gives for the F32 NaN U: sign, quiet bit, top of the payload. */
static uint16_t f16_nan_of(uint32_t u)
{
    return (uint16_t)(((u >> 16) & 0x8000u) | 0x7e00u | ((u >> 13) & 0x3ffu));
}

static uint32_t f8_expected_bits(const f8spec *p, uint32_t c)
{
    uint32_t sign = (c & 0x80u) << 24, mag = c & 0x7fu;
    if (p->fnuz && c == 0x80) return 0x7fc00000u;
    if (!p->fnuz && !p->has_inf && mag == 0x7f) return sign | 0x7ff00000u;
    if (p->has_inf && mag == 0x7c) return sign | 0x7f800000u;
    if (p->has_inf && mag > 0x7c) return sign | 0x7fc00000u | (mag & 3u) << 21;
    return fbits((float)code_value(c, p->mbits, p->ebits, p->bias));
}

static uint8_t f8_nan(const f8spec *p, int neg)
{
    return p->fnuz ? 0x80 : (uint8_t)(neg ? 0xff : 0x7f);
}

TEST(cast_f8_all_codes)
{
    for (size_t k = 0; k < sizeof f8specs / sizeof f8specs[0]; k++) {
        const f8spec *p = &f8specs[k];
        uint8_t codes[256], back[256], back16[256];
        uint32_t f[256];
        uint16_t h[256];
        double d[256];
        int bad = 0;
        for (int c = 0; c < 256; c++) codes[c] = (uint8_t)c;
        cki_cast(p->dt, CK_DT_F32, codes, f, 256, NULL);
        cki_cast(CK_DT_F32, p->dt, f, back, 256, NULL);
        cki_cast(p->dt, CK_DT_F16, codes, h, 256, NULL); /* every F8 value fits F16 */
        cki_cast(CK_DT_F16, p->dt, h, back16, 256, NULL);
        cki_cast(p->dt, CK_DT_F64, codes, d, 256, NULL);
        for (uint32_t c = 0; c < 256; c++) {
            uint32_t want = f8_expected_bits(p, c);
            int nan = isnan(ffrom(want));
            uint8_t want_back = nan ? f8_nan(p, c >> 7) : (uint8_t)c;
            int ok = f[c] == want && back[c] == want_back && back16[c] == want_back;
            ok = ok && (nan ? isnan(d[c]) : d[c] == (double)ffrom(want));
            ok = ok && (nan ? h[c] == f16_nan_of(want) : cki_f16_to_f32(h[c]) == ffrom(want));
            if (!ok && bad++ < 5)
                fprintf(stderr, "  %s 0x%02x -> f32 0x%08x (want 0x%08x) -> 0x%02x / 0x%02x\n",
                        ck_dtype_name(p->dt), (unsigned)c, (unsigned)f[c], (unsigned)want,
                        back[c], back16[c]);
        }
        CHECK(bad == 0);
    }
}

TEST(cast_f8_spot_values)
{
    static const struct {
        ck_dtype dt;
        uint8_t code;
        double value;
    } rows[] = {
        {CK_DT_F8_E4M3, 0x38, 1.0},        {CK_DT_F8_E4M3, 0x40, 2.0},
        {CK_DT_F8_E4M3, 0x7e, 448.0},      {CK_DT_F8_E4M3, 0x01, 0x1p-9},
        {CK_DT_F8_E4M3, 0x07, 7 * 0x1p-9}, {CK_DT_F8_E4M3, 0x08, 0x1p-6},
        {CK_DT_F8_E4M3, 0xb8, -1.0},       {CK_DT_F8_E4M3, 0xfe, -448.0},
        {CK_DT_F8_E5M2, 0x3c, 1.0},        {CK_DT_F8_E5M2, 0x7b, 57344.0},
        {CK_DT_F8_E5M2, 0x01, 0x1p-16},    {CK_DT_F8_E5M2, 0x04, 0x1p-14},
        {CK_DT_F8_E5M2, 0x7c, INFINITY},   {CK_DT_F8_E5M2, 0xfc, -INFINITY},
        {CK_DT_F8_E4M3FNUZ, 0x40, 1.0},    {CK_DT_F8_E4M3FNUZ, 0x7f, 240.0},
        {CK_DT_F8_E4M3FNUZ, 0x01, 0x1p-10}, {CK_DT_F8_E4M3FNUZ, 0x08, 0x1p-7},
        {CK_DT_F8_E4M3FNUZ, 0xc0, -1.0},   {CK_DT_F8_E4M3FNUZ, 0xff, -240.0},
        {CK_DT_F8_E5M2FNUZ, 0x40, 1.0},    {CK_DT_F8_E5M2FNUZ, 0x7f, 57344.0},
        {CK_DT_F8_E5M2FNUZ, 0x01, 0x1p-17}, {CK_DT_F8_E5M2FNUZ, 0x04, 0x1p-15},
        {CK_DT_F8_E8M0, 0x7f, 1.0},        {CK_DT_F8_E8M0, 0x80, 2.0},
        {CK_DT_F8_E8M0, 0x00, 0x1p-127},   {CK_DT_F8_E8M0, 0xfe, 0x1p127},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        float f;
        cki_cast(rows[i].dt, CK_DT_F32, &rows[i].code, &f, 1, NULL);
        if (!same_float(f, rows[i].value))
            fprintf(stderr, "  %s 0x%02x -> %a, want %a\n", ck_dtype_name(rows[i].dt),
                    rows[i].code, (double)f, rows[i].value);
        CHECK(same_float(f, rows[i].value));
    }
}

TEST(cast_f8_rounding_boundaries)
{
    for (size_t k = 0; k < sizeof f8specs / sizeof f8specs[0]; k++) {
        const f8spec *p = &f8specs[k];
        float in[1024];
        uint8_t want[1024], got[1024];
        size_t n = 0;
        int bad = 0;
        for (uint32_t c = 0; c <= p->maxcode; c++) {
            double lo = code_value(c, p->mbits, p->ebits, p->bias);
            int ulp_exp = (int)(c >> p->mbits) - p->bias - (int)p->mbits; /* for normal c */
            double hi = c == p->maxcode ? lo + ldexp(1, ulp_exp)
                                        : code_value(c + 1, p->mbits, p->ebits, p->bias);
            float mid = (float)((lo + hi) / 2);
            /* past the largest code: Inf (E5M2) or NaN */
            uint8_t up = c == p->maxcode ? (p->has_inf ? 0x7c : f8_nan(p, 0)) : (uint8_t)(c + 1);
            uint8_t even = c & 1 ? up : (uint8_t)c;
            for (int neg = 0; neg < 2; neg++) {
                float sg = neg ? -1.0f : 1.0f;
                uint8_t s = neg ? 0x80 : 0;
                /* a negative result that is zero or NaN in FNUZ has no sign bit */
                uint8_t lo_code = (uint8_t)(p->fnuz && c == 0 ? 0 : s | c);
                uint8_t up_code = (uint8_t)(p->fnuz && up == 0x80 ? 0x80 : s | up);
                uint8_t even_code = even == c ? lo_code : up_code;
                in[n] = sg * mid, want[n++] = even_code;
                in[n] = sg * nextafterf(mid, 0.0f), want[n++] = lo_code;
                in[n] = sg * nextafterf(mid, INFINITY), want[n++] = up_code;
            }
        }
        cki_cast(CK_DT_F32, p->dt, in, got, n, NULL);
        for (size_t i = 0; i < n; i++) {
            if (got[i] != want[i] && bad++ < 5)
                fprintf(stderr, "  %s: %a -> 0x%02x, want 0x%02x\n", ck_dtype_name(p->dt),
                        (double)in[i], got[i], want[i]);
        }
        CHECK(bad == 0);
    }
}

TEST(cast_f8_specials)
{
    float in[8] = {NAN, -NAN, INFINITY, -INFINITY, -0.0f, 0.0f, 1e30f, -1e30f};
    static const uint8_t want[4][8] = {
        {0x7f, 0xff, 0x7f, 0xff, 0x80, 0x00, 0x7f, 0xff}, /* E4M3: no Inf, signed NaN */
        {0x7f, 0xff, 0x7c, 0xfc, 0x80, 0x00, 0x7c, 0xfc}, /* E5M2 */
        {0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x80, 0x80}, /* E4M3FNUZ: no -0 */
        {0x80, 0x80, 0x80, 0x80, 0x00, 0x00, 0x80, 0x80}, /* E5M2FNUZ */
    };
    for (int k = 0; k < 4; k++) {
        uint8_t got[8];
        cki_cast(CK_DT_F32, f8specs[k].dt, in, got, 8, NULL);
        CHECK(memcmp(got, want[k], 8) == 0);
    }
    {
        /* between formats: E4M3 -0 -> FNUZ 0, E4M3 NaN -> FNUZ NaN, E5M2 Inf -> E4M3 NaN */
        uint8_t a[3] = {0x80, 0xff, 0x7c}, b[3];
        cki_cast(CK_DT_F8_E4M3, CK_DT_F8_E4M3FNUZ, a, b, 2, NULL);
        CHECK(b[0] == 0x00 && b[1] == 0x80);
        cki_cast(CK_DT_F8_E5M2, CK_DT_F8_E4M3, a + 2, b, 1, NULL);
        CHECK(b[0] == 0x7f);
    }
}

TEST(cast_e8m0)
{
    uint8_t codes[256], back[256];
    uint32_t f[256];
    for (int c = 0; c < 256; c++) codes[c] = (uint8_t)c;
    cki_cast(CK_DT_F8_E8M0, CK_DT_F32, codes, f, 256, NULL);
    cki_cast(CK_DT_F32, CK_DT_F8_E8M0, f, back, 256, NULL);
    for (int c = 0; c < 256; c++) {
        if (c == 255) {
            CHECK(f[c] == 0x7f800001u); /* torch's NaN */
        } else {
            CHECK(same_float(ffrom(f[c]), ldexp(1.0, c - 127)));
        }
        CHECK(back[c] == c);
    }
    {
        /* torch's float8_e8m0fnu rules, by hand */
        float in[] = {1.0f, 1.49f, 1.5f, 0.75f, 0.0f, -4.0f, NAN, INFINITY, -INFINITY,
                      0x1.8p127f, 0x1.7ffffep127f, 0x1p-127f, 0x1p-128f, 0x1.8p-127f,
                      0x1.00002p-127f, 0x1.fffffcp-128f};
        /* below 2^-126 the implicit bit is 0, so anything above 2^-127 rounds up */
        uint8_t want[] = {0x7f, 0x7f, 0x80, 0x7f, 0x00, 0x81, 0xff, 0xff, 0xff,
                          0xff, 0xfe, 0x00, 0x00, 0x01, 0x01, 0x00};
        size_t n = sizeof in / sizeof in[0];
        uint8_t got[16];
        cki_cast(CK_DT_F32, CK_DT_F8_E8M0, in, got, n, NULL);
        for (size_t i = 0; i < n; i++) {
            if (got[i] != want[i])
                fprintf(stderr, "  e8m0: %a -> 0x%02x, want 0x%02x\n", (double)in[i], got[i],
                        want[i]);
            CHECK(got[i] == want[i]);
        }
    }
    {
        /* out of E8M0 into other formats */
        uint8_t c[4] = {0x7f, 0x00, 0xfe, 0xff};
        uint16_t h[4], b[4];
        double d[4];
        cki_cast(CK_DT_F8_E8M0, CK_DT_F16, c, h, 4, NULL);
        CHECK(h[0] == 0x3c00 && h[1] == 0x0000 && h[2] == 0x7c00 && h[3] == 0x7e00);
        cki_cast(CK_DT_F8_E8M0, CK_DT_BF16, c, b, 4, NULL);
        CHECK(b[0] == 0x3f80 && b[1] == 0x0040 && b[2] == 0x7f00 && b[3] == 0x7fc0);
        cki_cast(CK_DT_F8_E8M0, CK_DT_F64, c, d, 4, NULL);
        CHECK(d[0] == 1.0 && d[1] == ldexp(1, -127) && d[2] == ldexp(1, 127));
        CHECK(dbits(d[3]) == 0x7ff8000020000000ull); /* the NaN made quiet, payload kept */
    }
}

/* ---- integers and bool ------------------------------------------------------------- */

TEST(cast_int_to_float)
{
    int64_t i64[6] = {(1ll << 53) + 1, (1ll << 53) + 3, -((1ll << 53) + 1), INT64_MIN, INT64_MAX,
                      (1ll << 24) + (1ll << 16) + 1};
    double d[6];
    float f[6];
    uint16_t b[6], h[6];
    cki_cast(CK_DT_I64, CK_DT_F64, i64, d, 6, NULL);
    CHECK(d[0] == ldexp(1, 53) && d[1] == ldexp(1, 53) + 4 && d[2] == -ldexp(1, 53));
    CHECK(d[3] == -ldexp(1, 63) && d[4] == ldexp(1, 63));
    cki_cast(CK_DT_I64, CK_DT_F32, i64, f, 6, NULL);
    CHECK(f[0] == 0x1p53f && f[3] == -0x1p63f && f[5] == (float)(1 << 24) + (1 << 16));
    cki_cast(CK_DT_I64, CK_DT_BF16, i64, b, 6, NULL);
    CHECK(b[5] == 0x4b80); /* via F32 like torch: 2^24 + 2^16 ties down to 2^24 */
    cki_cast(CK_DT_I64, CK_DT_F16, i64, h, 6, NULL);
    CHECK(h[0] == 0x7c00 && h[2] == 0xfc00);
    {
        uint64_t u64[2] = {UINT64_MAX, (1ull << 63) + 1};
        cki_cast(CK_DT_U64, CK_DT_F32, u64, f, 2, NULL);
        CHECK(f[0] == 0x1p64f && f[1] == 0x1p63f);
        cki_cast(CK_DT_U64, CK_DT_F64, u64, d, 2, NULL);
        CHECK(d[0] == ldexp(1, 64) && d[1] == ldexp(1, 63));
    }
    {
        int32_t i32[3] = {16777217, -16777219, 123};
        cki_cast(CK_DT_I32, CK_DT_F32, i32, f, 3, NULL);
        CHECK(f[0] == 16777216.0f && f[1] == -16777220.0f && f[2] == 123.0f);
    }
    {
        uint8_t bo[4] = {0, 1, 2, 255};
        int8_t i8[4] = {-128, 127, -1, 0};
        uint16_t u16[4] = {65535, 0, 2048, 2049};
        cki_cast(CK_DT_BOOL, CK_DT_F32, bo, f, 4, NULL);
        CHECK(f[0] == 0 && f[1] == 1 && f[2] == 1 && f[3] == 1);
        cki_cast(CK_DT_I8, CK_DT_F16, i8, h, 4, NULL);
        CHECK(h[0] == 0xd800 && h[1] == 0x57f0 && h[2] == 0xbc00 && h[3] == 0);
        cki_cast(CK_DT_U16, CK_DT_F16, u16, h, 4, NULL);
        CHECK(h[0] == 0x7c00 && h[2] == 0x6800 && h[3] == 0x6800); /* 2049: tie -> 2048 */
    }
}

TEST(cast_float_to_int)
{
    double d[] = {3.7, -3.7, 1e10, -1e10, NAN, INFINITY, -INFINITY, -0.5, 255.9, 256.0, -1.0,
                  2147483647.5, ldexp(1, 63), ldexp(1, 64), -ldexp(1, 63) - 4096};
    size_t n = sizeof d / sizeof d[0];
    int32_t i32[16];
    uint8_t u8[16], bo[16];
    int64_t i64[16];
    uint64_t u64[16];
    static const int32_t w32[] = {3, -3, INT32_MAX, INT32_MIN, 0, INT32_MAX, INT32_MIN, 0, 255,
                                  256, -1, INT32_MAX, INT32_MAX, INT32_MAX, INT32_MIN};
    static const uint8_t w8[] = {3, 0, 255, 0, 0, 255, 0, 0, 255, 255, 0, 255, 255, 255, 0};
    static const uint8_t wb[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    cki_cast(CK_DT_F64, CK_DT_I32, d, i32, n, NULL);
    cki_cast(CK_DT_F64, CK_DT_U8, d, u8, n, NULL);
    cki_cast(CK_DT_F64, CK_DT_BOOL, d, bo, n, NULL);
    cki_cast(CK_DT_F64, CK_DT_I64, d, i64, n, NULL);
    cki_cast(CK_DT_F64, CK_DT_U64, d, u64, n, NULL);
    CHECK(memcmp(i32, w32, sizeof w32) == 0);
    CHECK(memcmp(u8, w8, sizeof w8) == 0);
    CHECK(memcmp(bo, wb, sizeof wb) == 0);
    CHECK(i64[0] == 3 && i64[2] == 10000000000ll && i64[4] == 0 && i64[12] == INT64_MAX);
    CHECK(i64[14] == INT64_MIN && i64[6] == INT64_MIN);
    CHECK(u64[12] == 1ull << 63 && u64[13] == UINT64_MAX && u64[1] == 0 && u64[5] == UINT64_MAX);
    {
        float f[4] = {-0.0f, 0.0f, 1e-45f, -2.5f};
        uint16_t h[4] = {0x8000, 0x7e00, 0x3c00, 0xc100}; /* -0, NaN, 1, -2.5 */
        int16_t i16[4];
        cki_cast(CK_DT_F32, CK_DT_BOOL, f, bo, 4, NULL);
        CHECK(bo[0] == 0 && bo[1] == 0 && bo[2] == 1 && bo[3] == 1);
        cki_cast(CK_DT_F16, CK_DT_I16, h, i16, 4, NULL);
        CHECK(i16[0] == 0 && i16[1] == 0 && i16[2] == 1 && i16[3] == -2);
        cki_cast(CK_DT_F16, CK_DT_BOOL, h, bo, 4, NULL);
        CHECK(bo[0] == 0 && bo[1] == 1 && bo[2] == 1 && bo[3] == 1);
    }
}

TEST(cast_int_to_int)
{
    int64_t a[4] = {-1, 256, 65537, INT64_MIN};
    uint8_t u8[4], bo[4];
    int16_t i16[4];
    uint64_t u64[4];
    int8_t i8[3] = {-1, -128, 5};
    cki_cast(CK_DT_I64, CK_DT_U8, a, u8, 4, NULL);
    CHECK(u8[0] == 255 && u8[1] == 0 && u8[2] == 1 && u8[3] == 0);
    cki_cast(CK_DT_I64, CK_DT_I16, a, i16, 4, NULL);
    CHECK(i16[0] == -1 && i16[1] == 256 && i16[2] == 1 && i16[3] == 0);
    cki_cast(CK_DT_I64, CK_DT_BOOL, a, bo, 4, NULL);
    CHECK(bo[0] == 1 && bo[1] == 1 && bo[2] == 1 && bo[3] == 1);
    cki_cast(CK_DT_I8, CK_DT_U64, i8, u64, 3, NULL);
    CHECK(u64[0] == UINT64_MAX && u64[1] == (uint64_t)-128 && u64[2] == 5);
    {
        uint8_t b[3] = {0, 7, 1};
        int32_t i32[3];
        cki_cast(CK_DT_BOOL, CK_DT_I32, b, i32, 3, NULL);
        CHECK(i32[0] == 0 && i32[1] == 1 && i32[2] == 1);
    }
}

TEST(cast_complex)
{
    float c64[4] = {1.5f, -2.0f, 3e38f, -0.0f};
    double c128[4], big[2] = {1e300, 1e-300};
    float back[4];
    cki_cast_stats st = {0, 0};
    cki_cast(CK_DT_C64, CK_DT_C128, c64, c128, 2, &st);
    CHECK(c128[0] == 1.5 && c128[1] == -2.0 && c128[2] == (double)3e38f && signbit(c128[3]));
    cki_cast(CK_DT_C128, CK_DT_C64, c128, back, 2, NULL);
    CHECK(memcmp(back, c64, sizeof back) == 0);
    cki_cast(CK_DT_C128, CK_DT_C64, big, back, 1, &st);
    CHECK(isinf(back[0]) && back[1] == 0 && st.overflow == 1 && st.underflow == 1);
}

TEST(cast_supported_pairs)
{
    for (int a = 0; a < CK_DT_COUNT; a++) {
        for (int b = 0; b < CK_DT_COUNT; b++) {
            const cki_dtype_info *ia = cki_dtype_info_of((ck_dtype)a);
            const cki_dtype_info *ib = cki_dtype_info_of((ck_dtype)b);
            int sub = ia->bits % 8 || ib->bits % 8;
            int cplx = ia->kind == 'C' || ib->kind == 'C';
            int want = !sub && (!cplx || (ia->kind == 'C' && ib->kind == 'C'));
            CHECK(cki_cast_supported((ck_dtype)a, (ck_dtype)b) == want);
        }
    }
    CHECK(!cki_cast_supported(CK_DT_F4, CK_DT_F4));
    CHECK(!cki_cast_supported(CK_DT_F32, CK_DT_F6_E2M3));
    CHECK(!cki_cast_supported(CK_DT_C64, CK_DT_F32));
    CHECK(cki_cast_supported(CK_DT_C64, CK_DT_C128));
    CHECK(!cki_cast_supported((ck_dtype)-1, CK_DT_F32));
    CHECK(!cki_cast_supported(CK_DT_F32, CK_DT_COUNT));
    CHECK(ck_dtype_can_cast(CK_DT_F32) && ck_dtype_can_cast(CK_DT_BF16));
    CHECK(ck_dtype_can_cast(CK_DT_F8_E8M0) && ck_dtype_can_cast(CK_DT_I32));
    CHECK(!ck_dtype_can_cast(CK_DT_F4) && !ck_dtype_can_cast(CK_DT_C64));
}

/* Every supported pair: aligned and misaligned buffers give the same bytes,
 * and nothing past the N destination elements is written. */
TEST(cast_misaligned_buffers)
{
    enum { N = 300 }; /* more than one bounce chunk */
    static uint8_t src[N * 16 + 16], a[N * 16 + 16], b[N * 16 + 32];
    for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)rnd();
    for (int from = 0; from < CK_DT_COUNT; from++) {
        for (int to = 0; to < CK_DT_COUNT; to++) {
            unsigned ds = cki_dtype_size((ck_dtype)to);
            cki_cast_stats sa = {0, 0}, sb = {0, 0};
            if (!cki_cast_supported((ck_dtype)from, (ck_dtype)to)) continue;
            memset(a, 0x5a, sizeof a);
            memset(b, 0x5a, sizeof b);
            cki_cast((ck_dtype)from, (ck_dtype)to, src + 16, a, N, &sa);
            memmove(src + 3, src + 16, N * 16); /* the same elements at an odd address */
            cki_cast((ck_dtype)from, (ck_dtype)to, src + 3, b + 1, N, &sb);
            memmove(src + 16, src + 3, N * 16);
            if (memcmp(a, b + 1, N * ds) != 0)
                fprintf(stderr, "  %s -> %s differs when misaligned\n",
                        ck_dtype_name((ck_dtype)from), ck_dtype_name((ck_dtype)to));
            CHECK(memcmp(a, b + 1, N * ds) == 0);
            CHECK(b[1 + N * ds] == 0x5a && b[0] == 0x5a);
            CHECK(sa.overflow == sb.overflow && sa.underflow == sb.underflow);
        }
    }
}

TEST(cast_bswap)
{
    uint8_t buf[16 * 130 + 1], ref[16 * 130 + 1];
    for (unsigned es = 1; es <= 16; es++) {
        for (size_t n = 0; n < 130; n += 43) {
            uint8_t *p = buf + 1; /* misaligned on purpose */
            for (size_t i = 0; i < sizeof buf; i++) buf[i] = (uint8_t)rnd();
            memcpy(ref, buf, sizeof buf);
            cki_bswap(p, n, es);
            int ok = 1;
            for (size_t i = 0; i < n; i++)
                for (unsigned j = 0; j < es; j++)
                    ok &= p[i * es + j] == ref[1 + i * es + es - 1 - j];
            ok &= memcmp(buf + 1 + n * es, ref + 1 + n * es, sizeof buf - 1 - n * es) == 0;
            ok &= buf[0] == ref[0];
            if (!ok) fprintf(stderr, "  bswap esize %u n %zu\n", es, n);
            CHECK(ok);
            cki_bswap(p, n, es);
            CHECK(memcmp(buf, ref, sizeof buf) == 0);
        }
    }
    {
        uint32_t v[3] = {0x11223344u, 0xa1b2c3d4u, 0};
        uint64_t w = 0x0102030405060708ull;
        cki_bswap(v, 3, 4);
        CHECK(v[0] == 0x44332211u && v[1] == 0xd4c3b2a1u && v[2] == 0);
        cki_bswap(&w, 1, 8);
        CHECK(w == 0x0807060504030201ull);
    }
}
