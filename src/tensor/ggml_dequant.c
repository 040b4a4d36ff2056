/*
 * ggml_dequant.c -- ggml block decoders, bit-exact with gguf-py 0.19's
 * gguf.quants.dequantize: every scale is widened from its stored form (fp16,
 * e8m0, ue4m3, int8) to float32 and combined in the order gguf-py uses
 * (Q4_1/Q5_1: d*q + m; K-quants with mins: (d*sc)*q - (dmin*m)), one float32
 * rounding per operation (this file is built with -ffp-contract=off too).
 *
 * Layouts (bytes, in order; fp16 = IEEE half, little-endian):
 *   Q4_0   32/18  d, qs[16]        element j: qs[j] & 15, element j+16: qs[j] >> 4; q-8
 *   Q4_1   32/20  d, m, qs[16]     as Q4_0, no offset; d*q + m
 *   Q5_0   32/22  d, qh u32, qs[16]  bit j of qh is bit 4 of element j; q-16
 *   Q5_1   32/24  d, m, qh, qs[16]
 *   Q8_0   32/34  d, int8 qs[32]
 *   Q2_K  256/84  scales[16] (lo: scale, hi: min), qs[64], d, dmin
 *   Q3_K  256/110 hmask[32], qs[64], scales[12] (sixteen 6-bit, bias 32), d
 *   Q4_K  256/144 d, dmin, scales[12] (eight 6-bit scales + mins), qs[128]
 *   Q5_K  256/176 d, dmin, scales[12], qh[32], qs[128]
 *   Q6_K  256/210 ql[128], qh[64], int8 scales[16], d
 *   IQ4_NL 32/18  d, qs[16] (indices into a 16-value table)
 *   IQ4_XS 256/136 d, scales_h u16, scales_l[4], qs[128]
 *   TQ1_0 256/54  qs[48], qh[4] (base-3 digits, five per byte), d
 *   TQ2_0 256/66  qs[64] (2-bit codes, value-1), d
 *   MXFP4  32/17  e8m0 e, qs[16] (E2M1 codes, doubled values, half scale)
 *   NVFP4  64/36  ue4m3 d[4], qs[32] (four sub-blocks of 16)
 * The grid types take groups of 8 (or 4) values from a codebook row
 * (ggml_iq_grids.c), signs from a byte (IQ2_S, IQ3_S) or from ksigns, a
 * 7-bit index whose 8th sign makes the count of minus signs even:
 *   IQ2_XXS 256/66  d, 8 x (4 row bytes, u32: 4 x 7-bit sign index, scale in
 *                   bits 28..31); (d*(0.5+s))*0.25, then (db*grid)*sign
 *   IQ2_XS  256/74  d, u16 qs[32] (9-bit row, 7-bit sign index), scales[8]
 *                   (16 nibbles, one per 16 values)
 *   IQ2_S   256/82  d, qs[32] (row low 8 bits), signs[32], qh[8] (2 high row
 *                   bits per group), scales[8]
 *   IQ3_XXS 256/98  d, qs[64] (4-wide rows), 8 x u32 (4 x 7-bit sign index,
 *                   scale); (d*(0.5+s))*0.5
 *   IQ3_S   256/110 d, qs[64], qh[8] (9th row bit), signs[32], scales[4]
 *                   (8 nibbles); d*(1+2s)
 *   IQ1_S   256/50  d, qs[32] (row low 8 bits), u16 qh[8] (per 32 values:
 *                   four 3-bit high row parts, 3-bit scale in bits 12..14,
 *                   delta sign in bit 15); (d*(2s+1)) * (grid + delta),
 *                   delta = +-1/8
 *   IQ1_M   256/56  qs[32], qh[16] (per group a nibble: 3 high row bits,
 *                   delta sign), u16 sc[4] (four 3-bit scales each; their
 *                   top nibbles together are the fp16 d)
 * Q8_1, Q8_K, Q1_0 and Q2_0 are not decoded (gguf-py has no decoder for them
 * either; cki_ggml_can_dequant says so).
 */
#include <math.h>

#include "cast.h"
#include "ggml_codec.h"
#include "ggml_iq_grids.h"

static float h2f(const uint8_t *p)
{
    return cki_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

/* ggml's table of doubled E2M1 values, for MXFP4 and NVFP4. */
static const int8_t kv_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
/* IQ4_NL / IQ4_XS non-linear levels. */
static const int8_t kv_iq4[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                  1,    13,   25,  38,  53,  69,  89,  113};

static void dq_q4_0(const uint8_t *b, float *y)
{
    float d = h2f(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)((b[2 + j] & 15) - 8);
        y[j + 16] = d * (float)((b[2 + j] >> 4) - 8);
    }
}

static void dq_q4_1(const uint8_t *b, float *y)
{
    float d = h2f(b), m = h2f(b + 2);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)(b[4 + j] & 15) + m;
        y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
    }
}

static uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void dq_q5_0(const uint8_t *b, float *y)
{
    float d = h2f(b);
    uint32_t qh = ld32(b + 2);
    for (int j = 0; j < 16; j++) {
        int lo = (b[6 + j] & 15) | (int)((qh >> j) & 1) << 4;
        int hi = (b[6 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)(lo - 16);
        y[j + 16] = d * (float)(hi - 16);
    }
}

static void dq_q5_1(const uint8_t *b, float *y)
{
    float d = h2f(b), m = h2f(b + 2);
    uint32_t qh = ld32(b + 4);
    for (int j = 0; j < 16; j++) {
        int lo = (b[8 + j] & 15) | (int)((qh >> j) & 1) << 4;
        int hi = (b[8 + j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
        y[j] = d * (float)lo + m;
        y[j + 16] = d * (float)hi + m;
    }
}

static void dq_q8_0(const uint8_t *b, float *y)
{
    float d = h2f(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

static void dq_q2_k(const uint8_t *b, float *y)
{
    const uint8_t *sc = b, *qs = b + 16;
    float d = h2f(b + 80), dmin = h2f(b + 82);
    for (int e = 0; e < 256; e++) {
        int s = e / 16, h = e / 128, sh = (e % 128) / 32, l = e % 32;
        float dl = d * (float)(sc[s] & 15), ml = dmin * (float)(sc[s] >> 4);
        float q = (float)((qs[h * 32 + l] >> (2 * sh)) & 3);
        y[e] = dl * q - ml;
    }
}

static void dq_q3_k(const uint8_t *b, float *y)
{
    const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
    float d = h2f(b + 108), dl[16];
    for (int i = 0; i < 16; i++) {
        int lo = i < 8 ? sc[i] & 15 : sc[i - 8] >> 4;
        int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        dl[i] = d * (float)((int8_t)(uint8_t)(lo | hi << 4) - 32);
    }
    for (int e = 0; e < 256; e++) {
        int h = e / 128, sh = (e % 128) / 32, l = e % 32;
        int ql = (qs[h * 32 + l] >> (2 * sh)) & 3;
        int qh = ((hm[l] >> (e / 32)) & 1) ^ 1;
        y[e] = dl[e / 16] * (float)(ql - (qh << 2));
    }
}

/* Q4_K / Q5_K: eight 6-bit scales and mins packed in 12 bytes. */
static void scale_min_k4(const uint8_t *s, uint8_t sc[8], uint8_t mn[8])
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 63;
        mn[j] = s[4 + j] & 63;
        sc[4 + j] = (uint8_t)((s[8 + j] & 15) | ((s[j] >> 2) & 0x30));
        mn[4 + j] = (uint8_t)((s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30));
    }
}

static void dq_q4_k(const uint8_t *b, float *y)
{
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *qs = b + 16;
    uint8_t sc[8], mn[8];
    scale_min_k4(b + 4, sc, mn);
    for (int sb = 0; sb < 8; sb++) {
        float ds = d * (float)sc[sb], dm = dmin * (float)mn[sb];
        const uint8_t *q = qs + (sb / 2) * 32;
        int shift = 4 * (sb % 2);
        for (int l = 0; l < 32; l++) y[sb * 32 + l] = ds * (float)((q[l] >> shift) & 15) - dm;
    }
}

static void dq_q5_k(const uint8_t *b, float *y)
{
    float d = h2f(b), dmin = h2f(b + 2);
    const uint8_t *qh = b + 16, *qs = b + 48;
    uint8_t sc[8], mn[8];
    scale_min_k4(b + 4, sc, mn);
    for (int sb = 0; sb < 8; sb++) {
        float ds = d * (float)sc[sb], dm = dmin * (float)mn[sb];
        const uint8_t *q = qs + (sb / 2) * 32;
        int shift = 4 * (sb % 2);
        for (int l = 0; l < 32; l++) {
            int v = ((q[l] >> shift) & 15) | ((qh[l] >> sb) & 1) << 4;
            y[sb * 32 + l] = ds * (float)v - dm;
        }
    }
}

static void dq_q6_k(const uint8_t *b, float *y)
{
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = h2f(b + 208);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, nib = (e % 128) / 64, l64 = e % 64, sh = (e % 128) / 32, l = e % 32;
        int lo = (ql[h * 64 + l64] >> (4 * nib)) & 15;
        int hi = (qh[h * 32 + l] >> (2 * sh)) & 3;
        int group = e / 16; /* 16 elements share one scale */
        float ds = d * (float)sc[group];
        y[e] = ds * (float)((lo | hi << 4) - 32);
    }
}

static void dq_iq4_nl(const uint8_t *b, float *y)
{
    float d = h2f(b);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)kv_iq4[b[2 + j] & 15];
        y[j + 16] = d * (float)kv_iq4[b[2 + j] >> 4];
    }
}

static void dq_iq4_xs(const uint8_t *b, float *y)
{
    float d = h2f(b);
    unsigned sh = (unsigned)(b[2] | b[3] << 8);
    const uint8_t *sl = b + 4, *qs = b + 8;
    for (int sb = 0; sb < 8; sb++) {
        int lo = (sl[sb / 2] >> (4 * (sb % 2))) & 15, hi = (int)(sh >> (2 * sb)) & 3;
        float dl = d * (float)((int8_t)(uint8_t)(lo | hi << 4) - 32);
        for (int i = 0; i < 32; i++) {
            int v = i < 16 ? qs[sb * 16 + i] & 15 : qs[sb * 16 + i - 16] >> 4;
            y[sb * 32 + i] = dl * (float)kv_iq4[v];
        }
    }
}

static void dq_tq1_0(const uint8_t *b, float *y)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t *qs = b, *qh = b + 48;
    float d = h2f(b + 52);
    for (int e = 0; e < 256; e++) {
        uint8_t x;
        if (e < 160) x = (uint8_t)(qs[e % 32] * pow3[e / 32]);
        else if (e < 240) x = (uint8_t)(qs[32 + (e - 160) % 16] * pow3[(e - 160) / 16]);
        else x = (uint8_t)(qh[(e - 240) % 4] * pow3[(e - 240) / 4]);
        y[e] = d * (float)((int)(((unsigned)x * 3) >> 8) - 1);
    }
}

static void dq_tq2_0(const uint8_t *b, float *y)
{
    float d = h2f(b + 64);
    for (int e = 0; e < 256; e++) {
        int h = e / 128, sh = (e % 128) / 32, l = e % 32;
        y[e] = d * (float)(((b[h * 32 + l] >> (2 * sh)) & 3) - 1);
    }
}

/* ggml_e8m0_to_fp32_half: 2^(e-128) as float bits. */
static float e8m0_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static void dq_mxfp4(const uint8_t *b, float *y)
{
    float d = e8m0_half(b[0]);
    for (int j = 0; j < 16; j++) {
        y[j] = d * (float)kv_fp4[b[1 + j] & 15];
        y[j + 16] = d * (float)kv_fp4[b[1 + j] >> 4];
    }
}

/* Unsigned E4M3 (bias 7), halved for the doubled value table. */
static float ue4m3_half(uint8_t x)
{
    int ex = (x >> 3) & 15;
    float man = (float)(x & 7), raw;
    if (x == 0 || x == 0x7F) return 0.0f;
    if (ex == 0) raw = man * 0x1p-9f;
    else raw = (1.0f + man / 8.0f) * ldexpf(1.0f, ex - 7);
    return raw * 0.5f;
}

static void dq_nvfp4(const uint8_t *b, float *y)
{
    for (int s = 0; s < 4; s++) {
        float d = ue4m3_half(b[s]);
        const uint8_t *q = b + 4 + 8 * s;
        for (int i = 0; i < 16; i++) {
            int v = i < 8 ? q[i] & 15 : q[i - 8] >> 4;
            y[16 * s + i] = d * (float)kv_fp4[v];
        }
    }
}

/* ---- the grid types: rows of a codebook (ggml_iq_grids.c), sign patterns, scales ---- */

/* ggml's ksigns: 7 stored sign bits, the 8th makes the count of set bits even. */
static unsigned ksign(unsigned i)
{
    unsigned p = i ^ i >> 4;
    p ^= p >> 2;
    p ^= p >> 1;
    return i | (p & 1) << 7;
}

/* Row R of an 8-element grid of 2-bit level indices, as float values. */
static void row8(const uint16_t *grid, const int8_t *lv, unsigned r, float g[8])
{
    for (int j = 0; j < 8; j++) g[j] = (float)lv[(grid[r] >> (2 * j)) & 3];
}

/* Row R of a 4-element grid of 3-bit level indices. */
static void row4(const uint16_t *grid, const int8_t *lv, unsigned r, float g[4])
{
    for (int j = 0; j < 4; j++) g[j] = (float)lv[(grid[r] >> (3 * j)) & 7];
}

/* N values (db * g[j]) * sign, sign -1 where bit j of SIGNS is set. */
static void put_signed(float *y, float db, const float *g, unsigned signs, int n)
{
    for (int j = 0; j < n; j++) {
        float s = (signs >> j) & 1 ? -1.0f : 1.0f;
        y[j] = (db * g[j]) * s;
    }
}

/* IQ2_XXS / IQ2_XS / IQ2_S sub-block scale: d * (0.5 + s) * 0.25, in that order. */
static float iq2_scale(float d, unsigned s)
{
    return (d * (0.5f + (float)s)) * 0.25f;
}

static void dq_iq2_xxs(const uint8_t *b, float *y)
{
    float d = h2f(b), g[8];
    for (int ib = 0; ib < 8; ib++) {
        const uint8_t *q = b + 2 + 8 * ib;
        uint32_t aux = ld32(q + 4); /* 4 x 7 sign bits, 4-bit scale on top */
        float db = iq2_scale(d, aux >> 28);
        for (int l = 0; l < 4; l++) {
            row8(cki_iq2xxs_grid, cki_iq2_levels, q[l], g);
            put_signed(y + 32 * ib + 8 * l, db, g, ksign((aux >> (7 * l)) & 127), 8);
        }
    }
}

static void dq_iq2_xs(const uint8_t *b, float *y)
{
    float d = h2f(b), g[8];
    const uint8_t *sc = b + 66;
    for (int i = 0; i < 32; i++) {
        unsigned q = (unsigned)(b[2 + 2 * i] | b[3 + 2 * i] << 8); /* 9-bit row, 7 sign bits */
        int k = i / 2;                                              /* 16 elements per scale */
        float db = iq2_scale(d, (sc[k / 2] >> (4 * (k % 2))) & 15);
        row8(cki_iq2xs_grid, cki_iq2_levels, q & 511, g);
        put_signed(y + 8 * i, db, g, ksign(q >> 9), 8);
    }
}

static void dq_iq2_s(const uint8_t *b, float *y)
{
    float d = h2f(b), g[8];
    const uint8_t *qs = b + 2, *sg = b + 34, *qh = b + 66, *sc = b + 74;
    for (int i = 0; i < 32; i++) {
        unsigned r = qs[i] | ((qh[i / 4] >> (2 * (i % 4))) & 3u) << 8;
        int k = i / 2;
        float db = iq2_scale(d, (sc[k / 2] >> (4 * (k % 2))) & 15);
        row8(cki_iq2s_grid, cki_iq2_levels, r, g);
        put_signed(y + 8 * i, db, g, sg[i], 8);
    }
}

static void dq_iq3_xxs(const uint8_t *b, float *y)
{
    float d = h2f(b), g[8];
    const uint8_t *qs = b + 2;
    for (int ib = 0; ib < 8; ib++) {
        uint32_t aux = ld32(b + 66 + 4 * ib);
        float db = (d * (0.5f + (float)(aux >> 28))) * 0.5f;
        for (int l = 0; l < 4; l++) {
            row4(cki_iq3xxs_grid, cki_iq3xxs_levels, qs[8 * ib + 2 * l], g);
            row4(cki_iq3xxs_grid, cki_iq3xxs_levels, qs[8 * ib + 2 * l + 1], g + 4);
            put_signed(y + 32 * ib + 8 * l, db, g, ksign((aux >> (7 * l)) & 127), 8);
        }
    }
}

static void dq_iq3_s(const uint8_t *b, float *y)
{
    float d = h2f(b), g[8];
    const uint8_t *qs = b + 2, *qh = b + 66, *sg = b + 74, *sc = b + 106;
    for (int i = 0; i < 32; i++) { /* 8 elements: two grid rows, one sign byte */
        int k = i / 4;             /* 32 elements per scale */
        float db = d * (float)(1 + 2 * ((sc[k / 2] >> (4 * (k % 2))) & 15));
        for (int h = 0; h < 2; h++) {
            int r = 2 * i + h;
            row4(cki_iq3s_grid, cki_iq3s_levels, qs[r] | ((qh[r / 8] >> (r % 8)) & 1u) << 8,
                 g + 4 * h);
        }
        put_signed(y + 8 * i, db, g, sg[i], 8);
    }
}

/* IQ1_S / IQ1_M: dl * (grid + delta), delta = -+1/8 (gguf-py's IQ1_S.delta). */
static void put_iq1(float *y, float dl, unsigned r, int neg)
{
    float g[8], delta = neg ? -0.125f : 0.125f;
    row8(cki_iq1s_grid, cki_iq1_levels, r, g);
    for (int j = 0; j < 8; j++) y[j] = dl * (g[j] + delta);
}

static void dq_iq1_s(const uint8_t *b, float *y)
{
    float d = h2f(b);
    const uint8_t *qs = b + 2, *qh = b + 34;
    for (int ib = 0; ib < 8; ib++) {
        unsigned h = (unsigned)(qh[2 * ib] | qh[2 * ib + 1] << 8);
        float dl = d * (float)(2 * ((h >> 12) & 7) + 1);
        for (int l = 0; l < 4; l++)
            put_iq1(y + 32 * ib + 8 * l, dl, qs[4 * ib + l] | ((h >> (3 * l)) & 7) << 8,
                    (h & 0x8000) != 0);
    }
}

static void dq_iq1_m(const uint8_t *b, float *y)
{
    const uint8_t *qs = b, *qh = b + 32, *sp = b + 48;
    unsigned sc[4], dbits = 0;
    for (int k = 0; k < 4; k++) {
        sc[k] = (unsigned)(sp[2 * k] | sp[2 * k + 1] << 8);
        dbits |= (sc[k] >> 12) << (4 * k); /* the fp16 scale: top nibbles of the four */
    }
    float d = cki_f16_to_f32((uint16_t)dbits);
    for (int i = 0; i < 32; i++) {
        int k = i / 2; /* 16 elements per 3-bit scale */
        float dl = d * (float)(2 * ((sc[k / 4] >> (3 * (k % 4))) & 7) + 1);
        unsigned nib = (qh[i / 2] >> (4 * (i % 2))) & 15;
        put_iq1(y + 8 * i, dl, qs[i] | (nib & 7) << 8, (nib & 8) != 0);
    }
}

typedef void (*dq_fn)(const uint8_t *b, float *y);

static dq_fn decoder(ck_dtype dt)
{
    switch (dt) {
    case CK_DT_Q4_0: return dq_q4_0;
    case CK_DT_Q4_1: return dq_q4_1;
    case CK_DT_Q5_0: return dq_q5_0;
    case CK_DT_Q5_1: return dq_q5_1;
    case CK_DT_Q8_0: return dq_q8_0;
    case CK_DT_Q2_K: return dq_q2_k;
    case CK_DT_Q3_K: return dq_q3_k;
    case CK_DT_Q4_K: return dq_q4_k;
    case CK_DT_Q5_K: return dq_q5_k;
    case CK_DT_Q6_K: return dq_q6_k;
    case CK_DT_IQ4_NL: return dq_iq4_nl;
    case CK_DT_IQ4_XS: return dq_iq4_xs;
    case CK_DT_TQ1_0: return dq_tq1_0;
    case CK_DT_TQ2_0: return dq_tq2_0;
    case CK_DT_MXFP4: return dq_mxfp4;
    case CK_DT_NVFP4: return dq_nvfp4;
    case CK_DT_IQ2_XXS: return dq_iq2_xxs;
    case CK_DT_IQ2_XS: return dq_iq2_xs;
    case CK_DT_IQ2_S: return dq_iq2_s;
    case CK_DT_IQ3_XXS: return dq_iq3_xxs;
    case CK_DT_IQ3_S: return dq_iq3_s;
    case CK_DT_IQ1_S: return dq_iq1_s;
    case CK_DT_IQ1_M: return dq_iq1_m;
    default: return NULL;
    }
}

int cki_ggml_can_dequant(ck_dtype dt)
{
    return decoder(dt) != NULL;
}

int ck_dtype_can_dequantize(ck_dtype dt)
{
    return cki_ggml_can_dequant(dt);
}

void cki_ggml_dequant(ck_dtype dt, const uint8_t *src, size_t nblocks, float *dst)
{
    unsigned bb, blk = ck_dtype_block(dt, &bb);
    dq_fn f = decoder(dt);
    if (!f) return;
    for (size_t i = 0; i < nblocks; i++) f(src + i * bb, dst + i * blk);
}
