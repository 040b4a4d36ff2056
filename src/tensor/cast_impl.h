/*
 * cast_impl.h -- internals shared by cast.c (scalar loops and dispatch),
 * cast_x86.c (F16C/AVX2 loops) and f8.c (8-bit float formats), plus two
 * switches the unit tests and benchmarks use to compare the paths.
 *
 * Elements are host-order values (the reader swapped big-endian storages
 * already); every pointer handed to these loops is aligned to its element size.
 */
#ifndef CKI_CAST_IMPL_H
#define CKI_CAST_IMPL_H

#include "cast.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define CKI_CAST_X86 1
#else
#define CKI_CAST_X86 0
#endif

/* 1 if cki_cast currently uses the SIMD loops (CPU support, CKPTKIT_NO_SIMD
 * unset or "0", and not forced off). */
int cki_cast_simd_active(void);
/* ON = 1 forces the scalar loops, ON = 0 restores the run-time choice. For tests
 * and benchmarks; not meant to be flipped while other threads are casting. */
void cki_cast_force_scalar(int on);

/* 8-bit floats (f8.c). DT is one of the CK_DT_F8_* dtypes. */
/* The F32 bit pattern of code C, exactly (every F8 value is an F32 value). */
uint32_t cki_f8_decode(ck_dtype dt, uint8_t c);
/* Codes for N F32 bit patterns, rounded to nearest, ties to even. */
void cki_f8_encode(ck_dtype dt, const uint32_t *src, uint8_t *dst, size_t n);

#if CKI_CAST_X86
/* cast_x86.c: 1 if the CPU has AVX2 and F16C. */
int cki_cast_x86_usable(void);
/* The same bits as the scalar loops of cast.c; call only when usable. The
 * narrowing ones add their overflow/underflow counts to ST unless it is NULL. */
void cki_cast_x86_f32_f16(const uint32_t *src, uint16_t *dst, size_t n, cki_cast_stats *st);
void cki_cast_x86_f16_f32(const uint16_t *src, uint32_t *dst, size_t n);
void cki_cast_x86_f32_bf16(const uint32_t *src, uint16_t *dst, size_t n, cki_cast_stats *st);
void cki_cast_x86_bf16_f32(const uint16_t *src, uint32_t *dst, size_t n);
#endif

#endif
