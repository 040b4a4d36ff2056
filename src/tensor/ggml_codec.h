/*
 * ggml_codec.h -- ggml's block codecs: dequantisers (ggml_dequant.c) and the
 * reference quantisers (ggml_quant.c, compiled with -ffp-contract=off so that
 * results never depend on FMA contraction). Blocks are little-endian, laid
 * out as in ggml-common.h (docs/FORMATS.md, GGUF).
 */
#ifndef CKI_GGML_CODEC_H
#define CKI_GGML_CODEC_H

#include "tensor.h"

/* 1 if NBLOCKS blocks of DT can be decoded by cki_ggml_dequant. */
int cki_ggml_can_dequant(ck_dtype dt);
/* Decodes NBLOCKS blocks of DT at SRC into NBLOCKS x block floats at DST,
 * with the same float32 arithmetic as gguf-py's dequantize (bit-exact). */
void cki_ggml_dequant(ck_dtype dt, const uint8_t *src, size_t nblocks, float *dst);

/* 1 if cki_ggml_quant can produce DT. */
int cki_ggml_can_quant(ck_dtype dt);
/* Encodes NBLOCKS x block floats at SRC into NBLOCKS blocks of DT at DST
 * with ggml's reference encoder (no importance matrix). The input must be
 * finite: returns the index of the first NaN or Inf (DST is then not a valid
 * encoding: discard it), or -1. */
int64_t cki_ggml_quant(ck_dtype dt, const float *src, size_t nblocks, uint8_t *dst);

/* One block's encoder (X: block floats, Y: block bytes). */
typedef void (*cki_ggml_block_fn)(const float *x, uint8_t *y);
/* The K-quant encoders (ggml_kquant.c): Q2_K..Q6_K, else NULL. */
cki_ggml_block_fn cki_ggml_kquant_encoder(ck_dtype dt);

#if defined(__x86_64__) && defined(__GNUC__)
/* ggml_quant_x86.c: AVX2 Q8_0 and Q4_0 encoders, the scalar encoder's bytes;
 * SCALAR encodes blocks whose scale is subnormal. On a non-finite value they
 * stop, set *BAD_BLOCK and return 1 (the output is then not valid). */
int cki_ggml_x86_usable(void);
int cki_ggml_q8_0_avx2(const float *x, size_t nblocks, uint8_t *y,
                       void (*scalar)(const float *, uint8_t *), size_t *bad_block);
int cki_ggml_q4_0_avx2(const float *x, size_t nblocks, uint8_t *y,
                       void (*scalar)(const float *, uint8_t *), size_t *bad_block);
#endif

#endif
