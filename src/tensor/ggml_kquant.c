/*
 * ggml_kquant.c -- K-quant encoders (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) following
 * ggml's reference algorithm with no importance matrix (quantize_row_*_ref).
 * Compiled with -ffp-contract=off; all arithmetic is float32 so results do
 * not depend on the compiler or the machine. gguf-py has no K-quant encoder,
 * so the tests check these against gguf-py's decoder (round-trip error within
 * the bounds ggml's own tests use) and for determinism, not bit for bit.
 *
 * Super-blocks of 256 values; per sub-block a scale (and, for Q2_K, Q4_K,
 * Q5_K, a min) is searched, then the scales are themselves quantised against
 * the super-block's fp16 d (and dmin), and the final codes are recomputed from
 * the rounded scales:
 *   Q2_K: 16 x 16, codes 0..3,  4-bit scales and mins, weights |x|, searched
 *         by least absolute deviation (make_qkx2: rmin -0.5, step 0.1, 15 steps)
 *   Q3_K: 16 x 16, codes -4..3, 6-bit signed scales (bias 32), a scale search
 *         that moves single codes while the weighted fit improves (x^2 weights)
 *   Q4_K: 8 x 32,  codes 0..15, 6-bit scales and mins, weights
 *         sqrt(mean x^2) + |x|, least squares (rmin -1, step 0.1, 20 steps)
 *   Q5_K: 8 x 32,  codes 0..31, as Q4_K (rmin -0.5, 15 steps)
 *   Q6_K: 16 x 16, codes -32..31, int8 scales, x^2-weighted search of 18
 *         scale candidates around -32/max
 * nearest_int rounds half to even through the float32 mantissa trick (adding
 * 1.5 x 2^23), exact for |x| <= 4194303; outside that range it gives the same
 * defined (if meaningless) value as ggml's, so results match ggml's there too.
 */
#include <math.h>

#include "cast.h"
#include "ggml_codec.h"

#define QK_K 256
#define GROUP_MAX_EPS 1e-15f

/* Round half to even through the float32 mantissa: exact for |f| <= 4194303;
 * beyond that (and for NaN, which a subnormal scale can produce) the result
 * is still a defined int in [-2^22, 2^22) -- the value ggml computes too --
 * which the callers clamp. */
static inline int nearest_int(float f)
{
    float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, 4);
    return (i & 0x007fffff) - 0x00400000;
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static float rd16(const uint8_t *p)
{
    return cki_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
}

static void wr16(uint8_t *p, float f)
{
    uint16_t h = cki_f32_to_f16(f);
    p[0] = (uint8_t)h;
    p[1] = (uint8_t)(h >> 8);
}

/* Scale and min for N values (codes 0..NMAX) minimising the weighted error,
 * trying NSTEP+1 scales around NMAX/(max-min); *THE_MIN gets -min. */
static float make_qkx2(int n, int nmax, const float *x, const float *w, uint8_t *L,
                       float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                       int use_mad)
{
    float mn = x[0], mx = x[0], sum_w = w[0], sum_x = sum_w * x[0];
    float iscale, scale, best_mad = 0;
    for (int i = 1; i < n; i++) {
        if (x[i] < mn) mn = x[i];
        if (x[i] > mx) mx = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (mn > 0) mn = 0;
    if (mx == mn) {
        memset(L, 0, (size_t)n);
        *the_min = -mn;
        return 0.f;
    }
    iscale = nmax / (mx - mn);
    scale = 1 / iscale;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax);
        float diff = scale * l + mn - x[i];
        L[i] = (uint8_t)l;
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_mad += w[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        float sum_l = 0, sum_l2 = 0, sum_xl = 0, D;
        iscale = (rmin + rdelta * is + nmax) / (mx - mn);
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest_int(iscale * (x[i] - mn)), 0, nmax);
            Laux[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D, mad = 0;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                mad += w[i] * diff;
            }
            if (mad < best_mad) {
                memcpy(L, Laux, (size_t)n);
                best_mad = mad;
                scale = this_scale;
                mn = this_min;
            }
        }
    }
    *the_min = -mn;
    return scale;
}

/* Signed scale for N values, codes -NMAX..NMAX-1 stored +NMAX, x^2 weights
 * (rmse_type 1), trying 18 scales around -NMAX/max. */
static float make_qx(int n, int nmax, const float *x, uint8_t *L)
{
    float mx = 0, amax = 0, iscale, sumlx = 0, suml2 = 0, scale, best;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            mx = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    iscale = -nmax / mx;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        float w = x[i] * x[i];
        L[i] = (uint8_t)(l + nmax);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    scale = suml2 ? sumlx / suml2 : 0.0f;
    best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / mx;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (uint8_t)(nmax + clampi(l, -nmax, nmax - 1));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's scale search: codes -NMAX..NMAX-1 (stored +NMAX), single codes moved
 * while the x^2-weighted fit improves, at most 5 rounds. */
static float make_q3(int n, int nmax, const float *x, int8_t *L)
{
    float mx = 0, amax = 0, iscale, sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            mx = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    iscale = -nmax / mx;
    for (int i = 0; i < n; i++) {
        int l = clampi(nearest_int(iscale * x[i]), -nmax, nmax - 1);
        float w = x[i] * x[i];
        L[i] = (int8_t)l;
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int nl = clampi(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0 ? sumlx / suml2 : 0.f;
}

/* Block layouts: see ggml_dequant.c. */

static void q2_k(const float *x, uint8_t *y)
{
    uint8_t L[QK_K], Laux[16], *sc = y, *qs = y + 16;
    float w[16], mins[16], scales[16], max_scale = 0, max_min = 0;
    for (int j = 0; j < 16; j++) {
        for (int l = 0; l < 16; l++) w[l] = fabsf(x[16 * j + l]);
        scales[j] = make_qkx2(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    memset(y, 0, 84);
    if (max_scale > 0) {
        float iscale = 15.f / max_scale;
        for (int j = 0; j < 16; j++) sc[j] = (uint8_t)(clampi(nearest_int(iscale * scales[j]), 0, 15));
        wr16(y + 80, max_scale / 15.f);
    }
    if (max_min > 0) {
        float iscale = 15.f / max_min;
        for (int j = 0; j < 16; j++)
            sc[j] |= (uint8_t)(clampi(nearest_int(iscale * mins[j]), 0, 15) << 4);
        wr16(y + 82, max_min / 15.f);
    }
    for (int j = 0; j < 16; j++) {
        float d = rd16(y + 80) * (sc[j] & 15), dm;
        if (!d) continue;
        dm = rd16(y + 82) * (sc[j] >> 4);
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (uint8_t)clampi(nearest_int((x[16 * j + i] + dm) / d), 0, 3);
    }
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 |
                                      L[j + l + 96] << 6);
}

static void q3_k(const float *x, uint8_t *y)
{
    int8_t L[QK_K];
    uint8_t *hm = y, *qs = y + 32, *sc = y + 96;
    float scales[16], max_scale = 0, amax = 0;
    for (int j = 0; j < 16; j++) {
        scales[j] = make_q3(16, 4, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > amax) {
            amax = fabsf(scales[j]);
            max_scale = scales[j];
        }
    }
    memset(y, 0, 110);
    if (max_scale != 0) {
        float iscale = -32.f / max_scale;
        for (int j = 0; j < 16; j++) {
            int l = clampi(nearest_int(iscale * scales[j]), -32, 31) + 32;
            if (j < 8) sc[j] = (uint8_t)(l & 15);
            else sc[j - 8] |= (uint8_t)((l & 15) << 4);
            l >>= 4;
            sc[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
        }
        wr16(y + 108, 1 / iscale);
    }
    for (int j = 0; j < 16; j++) {
        int s = j < 8 ? sc[j] & 15 : sc[j - 8] >> 4;
        float d;
        s = (s | ((sc[8 + j % 4] >> (2 * (j / 4))) & 3) << 4) - 32;
        d = rd16(y + 108) * s;
        if (!d) continue;
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)(clampi(nearest_int(x[16 * j + i] / d), -4, 3) + 4);
    }
    for (int j = 0; j < QK_K; j++) {
        if (L[j] > 3) {
            hm[j % 32] |= (uint8_t)(1 << (j / 32));
            L[j] = (int8_t)(L[j] - 4);
        }
    }
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | L[j + l + 32] << 2 | L[j + l + 64] << 4 |
                                      L[j + l + 96] << 6);
}

/* Q4_K and Q5_K share the scale search and the 12-byte scale packing. */
static void qk45(const float *x, uint8_t *y, int nmax, float rmin, int nstep, uint8_t *L)
{
    uint8_t Laux[32], *sc = y + 4;
    float w[32], mins[8], scales[8], max_scale = 0, max_min = 0, inv_s, inv_m;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0, av_x;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) w[l] = av_x + fabsf(xs[l]);
        scales[j] = make_qkx2(32, nmax, xs, w, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    inv_s = max_scale > 0 ? 63.f / max_scale : 0.f;
    inv_m = max_min > 0 ? 63.f / max_min : 0.f;
    memset(sc, 0, 12);
    for (int j = 0; j < 8; j++) {
        int ls = clampi(nearest_int(inv_s * scales[j]), 0, 63);
        int lm = clampi(nearest_int(inv_m * mins[j]), 0, 63);
        if (j < 4) {
            sc[j] = (uint8_t)ls;
            sc[j + 4] = (uint8_t)lm;
        } else {
            sc[j + 4] = (uint8_t)((ls & 15) | (lm & 15) << 4);
            sc[j - 4] |= (uint8_t)((ls >> 4) << 6);
            sc[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    wr16(y, max_scale / 63.f);
    wr16(y + 2, max_min / 63.f);
    for (int j = 0; j < 8; j++) {
        int s, m;
        float d, dm;
        if (j < 4) {
            s = sc[j] & 63;
            m = sc[j + 4] & 63;
        } else {
            s = (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4);
            m = (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);
        }
        d = rd16(y) * s;
        if (!d) continue;
        dm = rd16(y + 2) * m;
        for (int i = 0; i < 32; i++)
            L[32 * j + i] = (uint8_t)clampi(nearest_int((x[32 * j + i] + dm) / d), 0, nmax);
    }
}

static void q4_k(const float *x, uint8_t *y)
{
    uint8_t L[QK_K], *q = y + 16;
    qk45(x, y, 15, -1.f, 20, L);
    for (int j = 0; j < QK_K; j += 64, q += 32)
        for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | L[j + l + 32] << 4);
}

static void q5_k(const float *x, uint8_t *y)
{
    uint8_t L[QK_K], *qh = y + 16, *ql = y + 48;
    qk45(x, y, 31, -0.5f, 15, L);
    memset(qh, 0, 32);
    for (int n = 0, m1 = 1, m2 = 2; n < QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
        for (int j = 0; j < 32; j++) {
            int l1 = L[n + j], l2 = L[n + j + 32];
            if (l1 > 15) {
                l1 -= 16;
                qh[j] |= (uint8_t)m1;
            }
            if (l2 > 15) {
                l2 -= 16;
                qh[j] |= (uint8_t)m2;
            }
            ql[j] = (uint8_t)(l1 | l2 << 4);
        }
    }
}

static void q6_k(const float *x, uint8_t *y)
{
    uint8_t L[QK_K], *ql = y, *qh = y + 128;
    int8_t *sc = (int8_t *)(y + 192);
    float scales[16], max_scale = 0, max_abs = 0, iscale;
    for (int ib = 0; ib < 16; ib++) {
        scales[ib] = make_qx(16, 32, x + 16 * ib, L + 16 * ib);
        if (fabsf(scales[ib]) > max_abs) {
            max_abs = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    memset(y, 0, 210);
    if (max_abs < GROUP_MAX_EPS) return; /* all zero, d = 0 */
    iscale = -128.f / max_scale;
    wr16(y + 208, 1 / iscale);
    for (int ib = 0; ib < 16; ib++) {
        int v = nearest_int(iscale * scales[ib]);
        sc[ib] = (int8_t)(v < 127 ? (v < -128 ? -128 : v) : 127);
    }
    for (int j = 0; j < 16; j++) {
        float d = rd16(y + 208) * sc[j];
        if (!d) continue;
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (uint8_t)(clampi(nearest_int(x[16 * j + i] / d), -32, 31) + 32);
    }
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
        for (int l = 0; l < 32; l++) {
            int q1 = L[j + l] & 15, q2 = L[j + l + 32] & 15;
            int q3 = L[j + l + 64] & 15, q4 = L[j + l + 96] & 15;
            ql[l] = (uint8_t)(q1 | q3 << 4);
            ql[l + 32] = (uint8_t)(q2 | q4 << 4);
            qh[l] = (uint8_t)((L[j + l] >> 4) | (L[j + l + 32] >> 4) << 2 |
                              (L[j + l + 64] >> 4) << 4 | (L[j + l + 96] >> 4) << 6);
        }
    }
}

cki_ggml_block_fn cki_ggml_kquant_encoder(ck_dtype dt)
{
    switch (dt) {
    case CK_DT_Q2_K: return q2_k;
    case CK_DT_Q3_K: return q3_k;
    case CK_DT_Q4_K: return q4_k;
    case CK_DT_Q5_K: return q5_k;
    case CK_DT_Q6_K: return q6_k;
    default: return NULL;
    }
}
