/*
 * cast.h -- element conversions between dtypes, and byte swaps.
 *
 * Floating casts round to nearest, ties to even; NaN stays NaN and +-Inf
 * stays +-Inf. Targets without Inf (F8_E4M3 and the FNUZ types) turn
 * overflow and Inf into NaN, as torch does. Every path gives exactly the same bits
 * as the scalar reference; a SIMD path (F16C/AVX2) is chosen at run time
 * where it pays.
 */
#ifndef CKI_CAST_H
#define CKI_CAST_H

#include "tensor.h"

/* 1 if cki_cast can convert FROM to TO. */
int cki_cast_supported(ck_dtype from, ck_dtype to);
/* Converts N elements. SRC and DST must not overlap unless FROM == TO.
 * STATS (may be NULL) counts overflow to Inf and underflow to zero. */
void cki_cast(ck_dtype from, ck_dtype to, const void *src, void *dst, size_t n,
              cki_cast_stats *stats);
/* Reverses the bytes of each of N elements of ESIZE bytes, in place. For
 * complex types pass the size of one component and twice N. */
void cki_bswap(void *p, size_t n, unsigned esize);

/* Scalar helpers, exposed for tests. */
float cki_f16_to_f32(uint16_t h);
uint16_t cki_f32_to_f16(float f);
float cki_bf16_to_f32(uint16_t h);
uint16_t cki_f32_to_bf16(float f);

#endif
