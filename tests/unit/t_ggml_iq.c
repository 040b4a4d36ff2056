/*
 * t_ggml_iq.c -- the grid-type decoders (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S, IQ1_M) on hand-made blocks whose values follow from the block
 * layouts and the first and last rows of ggml's codebooks (checked against
 * gguf-py's tables), and the packed tables themselves.
 */
#include <math.h>
#include <string.h>

#include "t.h"
#include "t_model.h"
#include "convert/convert.h"
#include "tensor/cast.h"
#include "tensor/ggml_codec.h"
#include "tensor/ggml_iq_grids.h"

static const ck_dtype iq_types[7] = {CK_DT_IQ2_XXS, CK_DT_IQ2_XS, CK_DT_IQ2_S, CK_DT_IQ3_XXS,
                                     CK_DT_IQ3_S,   CK_DT_IQ1_S,  CK_DT_IQ1_M};

static void put16(uint8_t *p, unsigned v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* 1 if Y[0..n) equals WANT[0..n) exactly. */
static int same(const float *y, const float *want, int n)
{
    for (int i = 0; i < n; i++)
        if (y[i] != want[i]) return 0;
    return 1;
}

TEST(ggml_iq_zero_blocks_decode_to_zero)
{
    uint8_t b[110];
    float y[256];
    memset(b, 0, sizeof b);
    for (int t = 0; t < 7; t++) {
        int zero = 1;
        CHECK(cki_ggml_can_dequant(iq_types[t]) && ck_dtype_can_dequantize(iq_types[t]));
        for (int i = 0; i < 256; i++) y[i] = 1.0f;
        cki_ggml_dequant(iq_types[t], b, 1, y);
        for (int i = 0; i < 256; i++) zero &= y[i] == 0.0f;
        CHECK(zero);
    }
    /* still refused: types gguf-py does not decode either */
    CHECK(!cki_ggml_can_dequant(CK_DT_Q8_1) && !cki_ggml_can_dequant(CK_DT_Q8_K));
    CHECK(!cki_ggml_can_dequant(CK_DT_Q1_0) && !cki_ggml_can_dequant(CK_DT_Q2_0));
}

TEST(ggml_iq_tables)
{
    /* first and last rows of each codebook, as gguf-py and ggml-common.h have them */
    CHECK(cki_iq2xxs_grid[0] == 0 && cki_iq2xs_grid[0] == 0 && cki_iq2s_grid[0] == 0);
    CHECK(cki_iq2_levels[0] == 8 && cki_iq2_levels[1] == 25 && cki_iq2_levels[2] == 43);
    CHECK(cki_iq2xxs_grid[1] == 2); /* element 0 is 43 (0x2b), the rest 8 */
    /* iq2xxs row 255: 8, 25, 8, 8, 25, 43, 43, 43 */
    CHECK(cki_iq2xxs_grid[255] == (0 | 1 << 2 | 0 << 4 | 0 << 6 | 1 << 8 | 2 << 10 | 2 << 12 |
                                   2 << 14));
    CHECK(cki_iq2xs_grid[511] == 0xAAAA && cki_iq2s_grid[1023] == 0xAAAA); /* all 43 */
    CHECK(cki_iq3xxs_levels[0] == 4 && cki_iq3xxs_levels[7] == 62);
    CHECK(cki_iq3s_levels[0] == 1 && cki_iq3s_levels[7] == 15);
    /* iq3xxs row 255: 4, 28, 52, 62; iq3s row 511: 1, 1, 15, 15 */
    CHECK(cki_iq3xxs_grid[255] == (0 | 3 << 3 | 6 << 6 | 7 << 9));
    CHECK(cki_iq3s_grid[511] == (0 | 0 << 3 | 7 << 6 | 7 << 9));
    CHECK(cki_iq1_levels[0] == -1 && cki_iq1_levels[1] == 0 && cki_iq1_levels[2] == 1);
    CHECK(cki_iq1s_grid[0] == 0 && cki_iq1s_grid[1] == 2 && cki_iq1s_grid[2047] == 0xAAAA);
    /* every field is a valid level index (2-bit fields never 3) */
    {
        int ok = 1;
        const uint16_t *g8[4] = {cki_iq2xxs_grid, cki_iq2xs_grid, cki_iq2s_grid, cki_iq1s_grid};
        const int n8[4] = {256, 512, 1024, 2048};
        for (int t = 0; t < 4; t++)
            for (int r = 0; r < n8[t]; r++)
                for (int j = 0; j < 8; j++) ok &= ((g8[t][r] >> (2 * j)) & 3) != 3;
        for (int r = 0; r < 256; r++) ok &= cki_iq3xxs_grid[r] >> 12 == 0;
        for (int r = 0; r < 512; r++) ok &= cki_iq3s_grid[r] >> 12 == 0;
        CHECK(ok);
    }
}

TEST(ggml_iq2_blocks)
{
    uint8_t b[82];
    float y[256];
    /* IQ2_XXS, d = 1: sub-block 0 scale 3 -> db = (1 * 3.5) * 0.25 = 0.875;
     * rows 0, 1, 255, 0; sign indices 0, 1 (0x81: elements 0, 7), 127 (0xff), 3 */
    memset(b, 0, sizeof b);
    put16(b, 0x3C00);
    b[2] = 0, b[3] = 1, b[4] = 255, b[5] = 0;
    put32(b + 6, 3u << 28 | 0 | 1u << 7 | 127u << 14 | 3u << 21);
    cki_ggml_dequant(CK_DT_IQ2_XXS, b, 1, y);
    {
        const float want[32] = {7, 7, 7, 7, 7, 7, 7, 7,
                                -37.625f, 7, 7, 7, 7, 7, 7, -7,
                                -7, -21.875f, -7, -7, -21.875f, -37.625f, -37.625f, -37.625f,
                                -7, -7, 7, 7, 7, 7, 7, 7};
        CHECK(same(y, want, 32));
    }
    /* sub-blocks 1..7 have d * 0.5 * 0.25 = 0.125 on row 0: 1.0 */
    CHECK(y[32] == 1.0f && y[255] == 1.0f);

    /* IQ2_XS, d = 2: scale nibble 1 -> db = (2 * 1.5) * 0.25 = 0.75; group 0: row 511 (all
     * 43), sign index 1; group 2 (second scale, nibble 0 -> 0.25): row 1 */
    memset(b, 0, sizeof b);
    put16(b, 0x4000);
    put16(b + 2, 511 | 1u << 9);
    put16(b + 6, 1);
    b[66] = 0x01;
    cki_ggml_dequant(CK_DT_IQ2_XS, b, 1, y);
    {
        const float want[24] = {-32.25f, 32.25f, 32.25f, 32.25f, 32.25f, 32.25f, 32.25f, -32.25f,
                                6, 6, 6, 6, 6, 6, 6, 6,
                                10.75f, 2, 2, 2, 2, 2, 2, 2};
        CHECK(same(y, want, 24));
    }

    /* IQ2_S, d = 1: group 5 takes row 1023 through qh bits 10..11 of byte 1 (group 4..7),
     * sign byte 0xf0, scale nibble (group 5 -> scale 2 -> byte 1, low) 15 -> 3.875 */
    memset(b, 0, sizeof b);
    put16(b, 0x3C00);
    b[2 + 5] = 0xFF;
    b[66 + 1] = 3 << 2;
    b[34 + 5] = 0xF0;
    b[74 + 1] = 15;
    cki_ggml_dequant(CK_DT_IQ2_S, b, 1, y);
    {
        const float v = 43 * 3.875f, w = 8 * 3.875f;
        const float want[16] = {w, w, w, w, w, w, w, w, v, v, v, v, -v, -v, -v, -v};
        CHECK(same(y + 32, want, 16));
        CHECK(y[0] == 1.0f); /* scale 0: 0.125 * 8 */
    }
}

TEST(ggml_iq3_blocks)
{
    uint8_t b[110];
    float y[256];
    /* IQ3_XXS, d = 1: sub-block 0 scale 1 -> db = (1 * 1.5) * 0.5 = 0.75; rows 255 and 1
     * in the first 8 elements, sign index 1 (elements 0, 7) */
    memset(b, 0, sizeof b);
    put16(b, 0x3C00);
    b[2] = 255, b[3] = 1;
    put32(b + 66, 1u << 28 | 1);
    cki_ggml_dequant(CK_DT_IQ3_XXS, b, 1, y);
    {
        const float want[12] = {-3, 21, 39, 46.5f, 15, 3, 3, -3, 3, 3, 3, 3};
        CHECK(same(y, want, 12));
        CHECK(y[32] == 1.0f); /* sub-block 1: 0.25 * 4 */
    }

    /* IQ3_S, d = 0.5: sub-block 1 scale 2 -> db = 0.5 * 5 = 2.5; its first row is 511
     * (qh byte 1 bit 0), sign byte 0x0c */
    memset(b, 0, sizeof b);
    put16(b, 0x3800);
    b[2 + 8] = 0xFF;
    b[66 + 1] = 1;
    b[74 + 4] = 0x0C;
    b[106] = 2 << 4;
    cki_ggml_dequant(CK_DT_IQ3_S, b, 1, y);
    {
        const float want[8] = {2.5f, 2.5f, -37.5f, -37.5f, 2.5f, 2.5f, 2.5f, 2.5f};
        CHECK(same(y + 32, want, 8));
        CHECK(y[0] == 0.5f && y[255] == 0.5f); /* scale 0: 0.5 * 1 on level 1 */
    }
}

TEST(ggml_iq1_blocks)
{
    uint8_t b[56];
    float y[256];
    /* IQ1_S, d = 1: sub-block 0 scale 7 -> dl = 15, delta +1/8; row 2047 (all +1) in its
     * second group (3 high bits at qh bits 3..5); sub-block 1: delta -1/8, scale 0 */
    memset(b, 0, sizeof b);
    put16(b, 0x3C00);
    b[2 + 1] = 0xFF;
    put16(b + 34, 7u << 12 | 7u << 3);
    put16(b + 36, 0x8000);
    cki_ggml_dequant(CK_DT_IQ1_S, b, 1, y);
    CHECK(y[0] == -13.125f && y[7] == -13.125f);   /* 15 * (-1 + 0.125) */
    CHECK(y[8] == 16.875f && y[15] == 16.875f);    /* 15 * (1 + 0.125) */
    CHECK(y[32] == -1.125f && y[63] == -1.125f);   /* 1 * (-1 - 0.125) */

    /* IQ1_M: d = 1 (0x3c00) spread over the top nibbles of the four scale words; scale
     * of elements 16..31 is 2 -> dl = 5; group 2 uses row 1 (qh byte 1, low nibble 0),
     * group 3 negative delta (qh byte 1, high nibble bit 3) */
    memset(b, 0, sizeof b);
    put16(b + 48, 0x0000 | 2u << 3);
    put16(b + 50, 0x0000);
    put16(b + 52, 0xC000);
    put16(b + 54, 0x3000);
    b[2] = 1;
    b[32 + 1] = 0x80;
    cki_ggml_dequant(CK_DT_IQ1_M, b, 1, y);
    CHECK(y[0] == -0.875f && y[15] == -0.875f);               /* dl 1 */
    CHECK(y[16] == 5.625f && y[17] == -4.375f && y[23] == -4.375f); /* 5 * (+-1 + 0.125) */
    CHECK(y[24] == -5.625f && y[31] == -5.625f);              /* 5 * (-1 - 0.125) */
}

/* A grid-type tensor read through the tensor layer: F32, F16 (one rounding),
 * and a row range, the same values as the block decoder. */
TEST(ggml_iq_tensor_reads)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    uint8_t blocks[2 * 98];
    float y[512], z[512];
    uint16_t h[512];
    int64_t shape[2] = {2, 256};
    size_t k;
    for (size_t i = 0; i < sizeof blocks; i++) blocks[i] = (uint8_t)(i * 37 + 11);
    put16(blocks, 0x2E66);
    put16(blocks + 98, 0xB555);
    CHECK(cki_model_new(ctx, "mem", &m) == CK_OK);
    k = tm_add(m, "w", CK_DT_IQ3_XXS, 2, shape, blocks, sizeof blocks);
    cki_ggml_dequant(CK_DT_IQ3_XXS, blocks, 2, z);
    CHECK(cki_tensor_read(ctx, &m->tensors[k], 0, 512, CK_DT_F32, y, sizeof y, NULL) == CK_OK);
    CHECK(memcmp(y, z, sizeof y) == 0);
    CHECK(cki_tensor_read(ctx, &m->tensors[k], 256, 256, CK_DT_F32, y, sizeof y, NULL) ==
          CK_OK);
    CHECK(memcmp(y, z + 256, 256 * sizeof *y) == 0);
    CHECK(cki_tensor_read(ctx, &m->tensors[k], 0, 512, CK_DT_F16, h, sizeof h, NULL) == CK_OK);
    {
        int ok = 1;
        for (int i = 0; i < 512; i++) ok &= h[i] == cki_f32_to_f16(z[i]);
        CHECK(ok);
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
}

/* The output-size guard lets a dequantised block type grow by its own ratio
 * (IQ1_S: 20.5 x as F32), but only once per input byte: tensors aliasing the
 * same blocks do not each get the allowance. */
TEST(ggml_iq_expand_allowance)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_storage *st = NULL;
    uint8_t *b;
    int64_t s1 = 256;
    size_t a = 0, c = 0;
    cki_out_tensor ot[2];
    CHECK(cki_model_new(ctx, "mem", &m) == CK_OK);
    b = cki_malloc(ctx, 50);
    memset(b, 0, 50);
    CHECK(cki_model_storage_owned(m, b, 50, CK_DT_IQ1_S, &st) == CK_OK);
    CHECK(cki_model_add_tensor(m, "mem", "a", 1, CK_DT_IQ1_S, 1, &s1, NULL, 0, st, 0, &a) ==
          CK_OK);
    CHECK(cki_model_add_tensor(m, "mem", "c", 1, CK_DT_IQ1_S, 1, &s1, NULL, 0, st, 0, &c) ==
          CK_OK);
    ot[0] = (cki_out_tensor){"a", &m->tensors[a], CK_DT_F32, 1024, a};
    ot[1] = (cki_out_tensor){"c", &m->tensors[c], CK_DT_F32, 1024, c};
    /* 1024 bytes from 50: more than 16 x, allowed as the type's own growth */
    CHECK(cki_check_expand(ctx, m, "OUT", ot, 1, sizeof *ot) == CK_OK);
    ot[0].dtype = CK_DT_F64, ot[0].nbytes = 2048;
    CHECK(cki_check_expand(ctx, m, "OUT", ot, 1, sizeof *ot) == CK_OK);
    /* the same 50 bytes twice: the second copy counts against 16 x */
    ot[0].dtype = CK_DT_F32, ot[0].nbytes = 1024;
    CHECK(cki_check_expand(ctx, m, "OUT", ot, 2, sizeof *ot) == CK_ELIMIT);
    CHECK(strstr(ck_errmsg(ctx), "OUT: output would hold 2.0 KiB of tensor data") != NULL);
    /* kept as IQ1_S: no growth */
    ot[0].dtype = ot[1].dtype = CK_DT_IQ1_S, ot[0].nbytes = ot[1].nbytes = 50;
    CHECK(cki_check_expand(ctx, m, "OUT", ot, 2, sizeof *ot) == CK_OK);
    ck_model_close(m);
    ck_ctx_free(ctx);
}
