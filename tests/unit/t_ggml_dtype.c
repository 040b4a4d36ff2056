/*
 * t_ggml_dtype.c -- the dtype table's ggml rows: block sizes, byte sizes,
 * ggml ids, views that would split a block, and reads through the block
 * codecs (dequantise, quantise, refusals).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "t.h"
#include "t_model.h"
#include "tensor/ggml_codec.h"

TEST(ggml_dtype_table)
{
    unsigned bb = 0;
    uint64_t n = 0;
    ck_dtype dt;
    uint32_t id = 0;
    CHECK(ck_dtype_block(CK_DT_F32, &bb) == 1 && bb == 4);
    CHECK(ck_dtype_block(CK_DT_F4, &bb) == 1 && bb == 0);
    CHECK(ck_dtype_block(CK_DT_Q4_K, &bb) == 256 && bb == 144);
    CHECK(ck_dtype_block(CK_DT_Q8_0, &bb) == 32 && bb == 34);
    CHECK(ck_dtype_block(CK_DT_Q8_1, &bb) == 32 && bb == 36); /* ggml's size, not gguf-py's 40 */
    CHECK(ck_dtype_block(CK_DT_MXFP4, &bb) == 32 && bb == 17);
    CHECK(ck_dtype_block(CK_DT_NVFP4, &bb) == 64 && bb == 36);
    CHECK(ck_dtype_is_quantized(CK_DT_IQ2_XXS) && !ck_dtype_is_quantized(CK_DT_BF16));
    CHECK(!ck_dtype_is_float(CK_DT_Q4_0));
    CHECK(ck_dtype_bits(CK_DT_Q4_0) == 0);
    CHECK(strcmp(ck_dtype_name(CK_DT_IQ4_XS), "IQ4_XS") == 0);
    CHECK(ck_dtype_parse("q4_k", &dt) == CK_OK && dt == CK_DT_Q4_K);
    CHECK(ck_dtype_parse("Q6_K", &dt) == CK_OK && dt == CK_DT_Q6_K);
    /* sizes in whole blocks only */
    CHECK(cki_dtype_nbytes(CK_DT_Q4_0, 64, &n) == 0 && n == 36);
    CHECK(cki_dtype_nbytes(CK_DT_Q4_0, 48, &n) == 1);
    CHECK(cki_dtype_nbytes(CK_DT_Q6_K, 512, &n) == 0 && n == 420);
    /* ggml ids: the shared plain types and the block types; retired ids have none */
    CHECK(cki_dtype_from_ggml(0, &dt) == 0 && dt == CK_DT_F32);
    CHECK(cki_dtype_from_ggml(30, &dt) == 0 && dt == CK_DT_BF16);
    CHECK(cki_dtype_from_ggml(12, &dt) == 0 && dt == CK_DT_Q4_K);
    CHECK(cki_dtype_from_ggml(39, &dt) == 0 && dt == CK_DT_MXFP4);
    CHECK(cki_dtype_from_ggml(4, &dt) == 1);
    CHECK(cki_dtype_from_ggml(31, &dt) == 1);
    CHECK(cki_dtype_from_ggml(1000, &dt) == 1);
    CHECK(cki_dtype_to_ggml(CK_DT_Q5_K, &id) == 0 && id == 13);
    CHECK(cki_dtype_to_ggml(CK_DT_F16, &id) == 0 && id == 1);
    CHECK(cki_dtype_to_ggml(CK_DT_U16, &id) == 1);
    CHECK(ck_dtype_can_dequantize(CK_DT_Q6_K) && ck_dtype_can_dequantize(CK_DT_IQ2_XXS));
    CHECK(!ck_dtype_can_dequantize(CK_DT_Q8_K) && !ck_dtype_can_dequantize(CK_DT_Q8_1));
    CHECK(ck_dtype_can_quantize(CK_DT_Q8_0) && !ck_dtype_can_quantize(CK_DT_IQ4_XS));
    CHECK(ck_dtype_can_quantize(CK_DT_Q4_K) && ck_dtype_can_quantize(CK_DT_Q2_K));
    CHECK(!ck_dtype_can_quantize(CK_DT_Q8_K) && !ck_dtype_can_quantize(CK_DT_TQ1_0));
}

TEST(ggml_views_split_no_block)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    uint8_t blocks[34 * 4] = {0};
    int64_t ok[2] = {2, 64}, bad_last[2] = {4, 32 + 16}, stride[2] = {32, 1};
    int64_t sh[2] = {2, 32};
    cki_storage *st = NULL;
    uint8_t *b;
    CHECK(cki_model_new(ctx, "mem", &m) == CK_OK);
    b = cki_malloc(ctx, sizeof blocks);
    memcpy(b, blocks, sizeof blocks);
    CHECK(cki_model_storage_owned(m, b, sizeof blocks, CK_DT_Q8_0, &st) == CK_OK);
    CHECK(cki_model_add_tensor(m, "mem", "w", 1, CK_DT_Q8_0, 2, ok, NULL, 0, st, 0, NULL) ==
          CK_OK);
    CHECK(m->tensors[0].nbytes == 136 && m->tensors[0].numel == 128);
    CHECK(cki_model_add_tensor(m, "mem", "x", 1, CK_DT_Q8_0, 2, bad_last, NULL, 0, st, 0, NULL) ==
          CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "not a multiple of Q8_0's block of 32") != NULL);
    /* an offset inside a block */
    CHECK(cki_model_add_tensor(m, "mem", "y", 1, CK_DT_Q8_0, 2, sh, NULL, 16, st, 0, NULL) ==
          CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(ctx), "split") != NULL);
    /* a transposed view */
    stride[0] = 1;
    stride[1] = 2;
    CHECK(cki_model_add_tensor(m, "mem", "z", 1, CK_DT_Q8_0, 2, sh, stride, 0, st, 0, NULL) ==
          CK_EUNSUPPORTED);
    /* larger than its storage */
    sh[0] = 5;
    CHECK(cki_model_add_tensor(m, "mem", "v", 1, CK_DT_Q8_0, 2, sh, NULL, 0, st, 0, NULL) ==
          CK_EFORMAT);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(ggml_read_through_codecs)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    float x[64], y[64];
    uint8_t q[68], q2[68];
    uint16_t h[64];
    int64_t shape[2] = {2, 32};
    size_t fi, qi;
    for (int i = 0; i < 64; i++) x[i] = (float)(i - 20) * 0.25f;
    CHECK(cki_model_new(ctx, "mem", &m) == CK_OK);
    fi = tm_add(m, "f", CK_DT_F32, 2, shape, x, sizeof x);
    /* float -> Q8_0 through the read interface equals the codec */
    CHECK(cki_tensor_read(ctx, &m->tensors[fi], 0, 64, CK_DT_Q8_0, q, sizeof q, NULL) == CK_OK);
    CHECK(cki_ggml_quant(CK_DT_Q8_0, x, 2, q2) == -1);
    CHECK(memcmp(q, q2, sizeof q) == 0);
    qi = tm_add(m, "q", CK_DT_Q8_0, 2, shape, q, sizeof q);
    CHECK(cki_tensor_read(ctx, &m->tensors[qi], 0, 64, CK_DT_F32, y, sizeof y, NULL) == CK_OK);
    for (int i = 0; i < 64; i++) CHECK(fabsf(y[i] - x[i]) < 0.05f);
    CHECK(cki_tensor_read(ctx, &m->tensors[qi], 32, 32, CK_DT_F16, h, sizeof h, NULL) == CK_OK);
    CHECK(cki_tensor_read(ctx, &m->tensors[qi], 0, 64, CK_DT_KEEP, q2, sizeof q2, NULL) == CK_OK);
    CHECK(memcmp(q, q2, sizeof q) == 0);
    /* half a block */
    CHECK(cki_tensor_read(ctx, &m->tensors[qi], 16, 16, CK_DT_F32, y, sizeof y, NULL) ==
          CK_EUNSUPPORTED);
    /* a NaN is refused naming the element */
    x[37] = NAN;
    fi = tm_add(m, "g", CK_DT_F32, 2, shape, x, sizeof x);
    CHECK(cki_tensor_read(ctx, &m->tensors[fi], 0, 64, CK_DT_Q4_0, q, sizeof q, NULL) ==
          CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "tensor 'g': element 37 is NaN") != NULL);
    /* a type without a decoder */
    {
        uint8_t z[292] = {0};
        int64_t s1 = 256;
        size_t k = tm_add(m, "q8k", CK_DT_Q8_K, 1, &s1, z, sizeof z);
        float out[256];
        CHECK(cki_tensor_read(ctx, &m->tensors[k], 0, 256, CK_DT_F32, out, sizeof out, NULL) ==
              CK_EUNSUPPORTED);
        CHECK(strstr(ck_errmsg(ctx), "tensor 'q8k': ckptkit cannot dequantise Q8_K") != NULL);
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
}

/* Large quantising reads run on two threads: same bytes as one block at a
 * time, and a NaN in the second half is found and named. */
TEST(ggml_quantise_two_threads)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    const uint64_t n = 1u << 19; /* twice PAR_MIN */
    float *x = malloc(n * sizeof *x);
    uint8_t *a = malloc(n / 32 * 34), *b = malloc(n / 32 * 34);
    int64_t shape[2] = {(int64_t)(n / 1024), 1024};
    size_t i0;
    CHECK(x && a && b);
    for (uint64_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 100.0f - 5.0f;
    CHECK(cki_model_new(ctx, "mem", &m) == CK_OK);
    i0 = tm_add(m, "big", CK_DT_F32, 2, shape, x, n * sizeof *x);
    CHECK(cki_tensor_read(ctx, &m->tensors[i0], 0, n, CK_DT_Q8_0, a, n / 32 * 34, NULL) == CK_OK);
    CHECK(cki_ggml_quant(CK_DT_Q8_0, x, n / 32, b) == -1);
    CHECK(memcmp(a, b, n / 32 * 34) == 0);
    x[n - 5] = -INFINITY;
    x[n / 2 + 7] = NAN;
    i0 = tm_add(m, "bad", CK_DT_F32, 2, shape, x, n * sizeof *x);
    CHECK(cki_tensor_read(ctx, &m->tensors[i0], 0, n, CK_DT_Q8_0, a, n / 32 * 34, NULL) ==
          CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "tensor 'bad': element 262151 is NaN") != NULL);
    x[n / 2 + 7] = 0;
    i0 = tm_add(m, "bad2", CK_DT_F32, 2, shape, x, n * sizeof *x);
    CHECK(cki_tensor_read(ctx, &m->tensors[i0], 0, n, CK_DT_Q4_0, a, n / 32 * 34, NULL) ==
          CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "tensor 'bad2': element 524283 is infinite") != NULL);
    free(x);
    free(a);
    free(b);
    ck_model_close(m);
    ck_ctx_free(ctx);
}
