/*
 * t_tensor.c -- view validation (cki_tensor_validate) and the one read path
 * (cki_tensor_read) over storages built by hand: transposes, slices with
 * offsets, stride 0 (broadcast), permuted 3-d and 4-d views, big-endian
 * storages (whole-element and per-component swaps), the neg and conj flags,
 * reads of any sub-range, zero-size views, sub-byte dtypes, and views whose
 * sizes come near 2^63. A slow reference (full multi-index per element)
 * checks the blocked gather on a few thousand random views.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cki.h"
#include "tensor/cast.h"
#include "tensor/tensor.h"
#include "t.h"

/* A storage over caller-owned bytes. */
static cki_storage storage(const void *p, uint64_t len, ck_dtype dt)
{
    cki_storage s;
    memset(&s, 0, sizeof s);
    s.data = p;
    s.len = len;
    s.dtype = dt;
    s.id = 1;
    return s;
}

static cki_tensor view(cki_storage *s, ck_dtype dt, int ndim, int64_t *shape, int64_t *stride,
                       uint64_t offset)
{
    cki_tensor t;
    memset(&t, 0, sizeof t);
    t.name = "t";
    t.dtype = dt;
    t.ndim = ndim;
    t.shape = shape;
    t.stride = stride;
    t.offset = offset;
    t.storage = s;
    return t;
}

/* Element I (row-major) of T's view, by the definition: full multi-index,
 * position = offset + sum(index x stride), ES bytes copied as stored. */
static void reference(const cki_tensor *t, uint64_t i, uint8_t *out)
{
    unsigned es = cki_dtype_size(t->dtype);
    uint64_t pos = t->offset, dense = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        uint64_t idx = i % (uint64_t)t->shape[d];
        i /= (uint64_t)t->shape[d];
        pos += idx * (t->stride ? (uint64_t)t->stride[d] : dense);
        dense *= (uint64_t)t->shape[d];
    }
    memcpy(out, t->storage->data + pos * es, es);
}

static uint32_t rng_state = 12345;
static uint32_t rnd(uint32_t n)
{
    rng_state = rng_state * 1103515245u + 12345u;
    return (rng_state >> 8) % n;
}

/* ---- validation -------------------------------------------------------------- */

TEST(tensor_validate_dense_fills_sizes)
{
    ck_ctx *ctx = ck_ctx_new();
    float buf[24];
    cki_storage s = storage(buf, sizeof buf, CK_DT_F32);
    int64_t shape[3] = {2, 3, 4};
    cki_tensor t = view(&s, CK_DT_F32, 3, shape, NULL, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(t.numel == 24 && t.nbytes == 96);
    CHECK(cki_tensor_is_dense(&t));
    CHECK(cki_tensor_bytes(&t) == (const uint8_t *)buf);
    t.ndim = 0; /* scalar */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK && t.numel == 1 && t.nbytes == 4);
    t.ndim = 3;
    t.offset = 1; /* one element too far */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "f: tensor 't': view reaches element 24") != NULL);
    CHECK(strstr(ck_errmsg(ctx), "holds 24") != NULL);
    t.offset = 0;
    s.len = 95; /* storage one byte short */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    ck_ctx_free(ctx);
}

TEST(tensor_validate_rejects_bad_views)
{
    ck_ctx *ctx = ck_ctx_new();
    uint8_t buf[64] = {0};
    cki_storage s = storage(buf, sizeof buf, CK_DT_U8);
    int64_t shape[2] = {4, 4}, stride[2] = {4, 1};
    int64_t big[CKI_MAX_DIMS + 1];
    cki_tensor t = view(&s, CK_DT_U8, 2, shape, stride, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    shape[0] = -1;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "negative size -1 in dimension 0") != NULL);
    shape[0] = 4;
    stride[1] = -1;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "negative stride") != NULL);
    stride[1] = 1;
    stride[0] = 16; /* rows 0, 16, 32, 48: last element 51 fits in 64 */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    stride[0] = 21; /* last element 63 + 3 = 66: outside */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    stride[0] = INT64_MAX; /* (4 - 1) x stride overflows 64 bits */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "overflows") != NULL);
    stride[0] = 4;
    t.offset = UINT64_MAX; /* offset + span overflows */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    t.offset = 0;
    /* too many dimensions */
    for (int d = 0; d <= CKI_MAX_DIMS; d++) big[d] = 1;
    t.shape = big;
    t.stride = NULL;
    t.ndim = CKI_MAX_DIMS + 1;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    t.ndim = CKI_MAX_DIMS;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    t.ndim = -1;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    /* element count overflowing 64 bits */
    shape[0] = INT64_MAX;
    shape[1] = 3;
    t = view(&s, CK_DT_U8, 2, shape, NULL, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "element count overflows") != NULL);
    /* byte count overflowing */
    shape[0] = (int64_t)1 << 62;
    shape[1] = 1;
    t = view(&s, CK_DT_F64, 2, shape, NULL, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    /* invalid dtype, missing storage, storage of another width */
    shape[0] = 2;
    t = view(&s, (ck_dtype)99, 2, shape, NULL, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    t = view(NULL, CK_DT_U8, 2, shape, NULL, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "no storage") != NULL);
    t = view(&s, CK_DT_F32, 2, shape, NULL, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "storage holds U8, tensor is F32") != NULL);
    t = view(&s, CK_DT_I8, 2, shape, NULL, 0); /* same width: a reinterpretation is fine */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    ck_ctx_free(ctx);
}

TEST(tensor_validate_zero_size_and_stride_zero)
{
    ck_ctx *ctx = ck_ctx_new();
    float one = 1.5f;
    cki_storage s = storage(&one, sizeof one, CK_DT_F32);
    cki_storage empty = storage(NULL, 0, CK_DT_F32);
    int64_t shape[2] = {1000, 1000}, stride[2] = {0, 0};
    cki_tensor t = view(&s, CK_DT_F32, 2, shape, stride, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK); /* broadcast of one element */
    CHECK(t.numel == 1000000 && t.nbytes == 4000000);
    CHECK(!cki_tensor_is_dense(&t) && cki_tensor_bytes(&t) == NULL);
    shape[0] = 0; /* no element at all: any strides, any offset, an empty storage */
    stride[0] = 1 << 30;
    t = view(&empty, CK_DT_F32, 2, shape, stride, 12345);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK && t.numel == 0 && t.nbytes == 0);
    ck_ctx_free(ctx);
}

TEST(tensor_validate_sizes_near_the_limits)
{
    ck_ctx *ctx = ck_ctx_new();
    uint8_t b[8] = {7};
    cki_storage s = storage(b, sizeof b, CK_DT_U8);
    /* 2^63 one-byte elements: the count fits 64 bits, the bit count does not */
    int64_t shape[3] = {1, 2, (int64_t)1 << 62};
    int64_t bshape[2] = {(int64_t)1 << 20, (int64_t)1 << 40}, bstride[2] = {0, 0};
    cki_tensor t = view(&s, CK_DT_U8, 3, shape, NULL, 0);
    uint8_t out[16];
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "byte size") != NULL);
    /* 2^60 elements broadcast from one byte: valid, never dense, readable at the end */
    t = view(&s, CK_DT_U8, 2, bshape, bstride, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(t.numel == (uint64_t)1 << 60 && t.nbytes == (uint64_t)1 << 60);
    CHECK(!cki_tensor_is_dense(&t));
    CHECK(cki_tensor_read(ctx, &t, ((uint64_t)1 << 60) - 16, 16, CK_DT_KEEP, out, sizeof out,
                          NULL) == CK_OK);
    CHECK(out[0] == 7 && out[15] == 7);
    CHECK(cki_tensor_read(ctx, &t, ((uint64_t)1 << 60) - 16, 17, CK_DT_KEEP, out, sizeof out,
                          NULL) == CK_EARG);
    /* the same view offset past the storage: reaches element 8 of 8 */
    t = view(&s, CK_DT_U8, 2, bshape, bstride, 8);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    ck_ctx_free(ctx);
}

TEST(tensor_validate_sub_byte_dtypes)
{
    ck_ctx *ctx = ck_ctx_new();
    uint8_t b[4] = {0x21, 0x43, 0x65, 0x87};
    cki_storage s = storage(b, sizeof b, CK_DT_F4);
    int64_t shape[1] = {8}, stride[1] = {1};
    cki_tensor t = view(&s, CK_DT_F4, 1, shape, NULL, 0);
    uint8_t out[8];
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK && t.nbytes == 4);
    shape[0] = 9;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EFORMAT);
    shape[0] = 7;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK && t.nbytes == 4); /* rounded up */
    t.stride = stride;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EUNSUPPORTED);
    t.stride = NULL;
    t.offset = 2;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_EUNSUPPORTED);
    t.offset = 0;
    shape[0] = 8;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 8, CK_DT_KEEP, out, sizeof out, NULL) == CK_OK);
    CHECK(memcmp(out, b, 4) == 0);
    CHECK(cki_tensor_read(ctx, &t, 0, 8, CK_DT_KEEP, out, 3, NULL) == CK_EARG);
    CHECK(cki_tensor_read(ctx, &t, 1, 7, CK_DT_KEEP, out, sizeof out, NULL) == CK_EUNSUPPORTED);
    CHECK(cki_tensor_read(ctx, &t, 0, 8, CK_DT_F32, out, sizeof out, NULL) == CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(ctx), "F4") != NULL);
    ck_ctx_free(ctx);
}

/* ---- reads ---------------------------------------------------------------------- */

TEST(tensor_read_transpose_and_slice)
{
    ck_ctx *ctx = ck_ctx_new();
    int32_t m[4][6], out[24];
    cki_storage s = storage(m, sizeof m, CK_DT_I32);
    int64_t tshape[2] = {6, 4}, tstride[2] = {1, 6};
    int64_t sshape[2] = {2, 3}, sstride[2] = {6, 1};
    cki_tensor t;
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < 6; c++) m[r][c] = 10 * r + c;
    t = view(&s, CK_DT_I32, 2, tshape, tstride, 0); /* m.T */
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 24, CK_DT_KEEP, out, sizeof out, NULL) == CK_OK);
    {
        int ok = 1;
        for (int c = 0; c < 6; c++)
            for (int r = 0; r < 4; r++) ok &= out[c * 4 + r] == 10 * r + c;
        CHECK(ok);
    }
    /* m[1:3, 2:5]: offset 1*6 + 2 */
    t = view(&s, CK_DT_I32, 2, sshape, sstride, 8);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(!cki_tensor_is_dense(&t));
    CHECK(cki_tensor_read(ctx, &t, 0, 6, CK_DT_KEEP, out, sizeof out, NULL) == CK_OK);
    CHECK(out[0] == 12 && out[1] == 13 && out[2] == 14 && out[3] == 22 && out[4] == 23 &&
          out[5] == 24);
    /* a read starting mid-row and crossing a row boundary */
    CHECK(cki_tensor_read(ctx, &t, 2, 3, CK_DT_KEEP, out, sizeof out, NULL) == CK_OK);
    CHECK(out[0] == 14 && out[1] == 22 && out[2] == 23);
    /* a dense row slice with an offset is zero-copy */
    sshape[0] = 1;
    sshape[1] = 6;
    t = view(&s, CK_DT_I32, 2, sshape, NULL, 18);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_bytes(&t) == (const uint8_t *)&m[3][0]);
    ck_ctx_free(ctx);
}

TEST(tensor_read_rejects_bad_ranges_and_small_destinations)
{
    ck_ctx *ctx = ck_ctx_new();
    float v[6] = {1, 2, 3, 4, 5, 6}, out[6];
    cki_storage s = storage(v, sizeof v, CK_DT_F32);
    int64_t shape[1] = {6};
    cki_tensor t = view(&s, CK_DT_F32, 1, shape, NULL, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 7, CK_DT_KEEP, out, sizeof out, NULL) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "past 6") != NULL);
    CHECK(cki_tensor_read(ctx, &t, 6, 1, CK_DT_KEEP, out, sizeof out, NULL) == CK_EARG);
    CHECK(cki_tensor_read(ctx, &t, UINT64_MAX, 2, CK_DT_KEEP, out, sizeof out, NULL) == CK_EARG);
    CHECK(cki_tensor_read(ctx, &t, 0, 6, CK_DT_KEEP, out, 23, NULL) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "too small") != NULL);
    /* 6 x F64 = 48 bytes > 24 */
    CHECK(cki_tensor_read(ctx, &t, 0, 6, CK_DT_F64, out, sizeof out, NULL) == CK_EARG);
    CHECK(cki_tensor_read(ctx, &t, 6, 0, CK_DT_KEEP, out, 0, NULL) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 1, (ck_dtype)77, out, sizeof out, NULL) == CK_EUNSUPPORTED);
    ck_ctx_free(ctx);
}

TEST(tensor_read_zero_size_strided_view)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_storage empty = storage(NULL, 0, CK_DT_F32);
    int64_t shape[2] = {0, 3}, stride[2] = {1, 5};
    float out[1];
    cki_tensor t = view(&empty, CK_DT_F32, 2, shape, stride, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    /* nothing to read, and nothing may divide by the zero-size dimension */
    CHECK(cki_tensor_read(ctx, &t, 0, 0, CK_DT_KEEP, out, sizeof out, NULL) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 0, CK_DT_F16, out, sizeof out, NULL) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 1, CK_DT_KEEP, out, sizeof out, NULL) == CK_EARG);
    ck_ctx_free(ctx);
}

TEST(tensor_read_stride_zero_broadcast_many_blocks)
{
    ck_ctx *ctx = ck_ctx_new();
    double v[3] = {-1.0, 2.5, 7.0};
    cki_storage s = storage(v, sizeof v, CK_DT_F64);
    int64_t shape[2] = {50000, 3}, stride[2] = {0, 1};
    size_t n = 150000;
    double *out = malloc(n * sizeof *out);
    float *f = malloc(n * sizeof *f);
    cki_tensor t = view(&s, CK_DT_F64, 2, shape, stride, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, n, CK_DT_KEEP, out, n * sizeof *out, NULL) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, n, CK_DT_F32, f, n * sizeof *f, NULL) == CK_OK);
    {
        int ok = 1;
        for (size_t i = 0; i < n; i++) ok &= out[i] == v[i % 3] && f[i] == (float)v[i % 3];
        CHECK(ok);
    }
    free(out);
    free(f);
    ck_ctx_free(ctx);
}

/* Big-endian bytes of 32-bit X. */
static void be32(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)(x >> 24);
    p[1] = (uint8_t)(x >> 16);
    p[2] = (uint8_t)(x >> 8);
    p[3] = (uint8_t)x;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

TEST(tensor_read_big_endian_swaps)
{
    ck_ctx *ctx = ck_ctx_new();
    uint8_t raw[6 * 4];
    uint8_t cplx[4 * 8];
    static const float vals[6] = {1.0f, -2.0f, 0.5f, 3e38f, -0.0f, 1e-40f};
    int64_t shape[2] = {2, 3}, tstride[2] = {1, 2}, tshape[2] = {3, 2};
    float out[6];
    float cout[8];
    cki_storage s = storage(raw, sizeof raw, CK_DT_F32);
    cki_tensor t;
    for (int i = 0; i < 6; i++) be32(raw + 4 * i, fbits(vals[i]));
    s.big_endian = 1;
    t = view(&s, CK_DT_F32, 2, shape, NULL, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_bytes(&t) == NULL); /* not usable in place */
    CHECK(cki_tensor_read(ctx, &t, 0, 6, CK_DT_KEEP, out, sizeof out, NULL) == CK_OK);
    CHECK(memcmp(out, vals, sizeof vals) == 0);
    /* swapped and transposed at once */
    t = view(&s, CK_DT_F32, 2, tshape, tstride, 0);
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 6, CK_DT_KEEP, out, sizeof out, NULL) == CK_OK);
    /* element (i, j) is storage[i + 2j]: 0, 2, 1, 3, 2, 4 */
    CHECK(fbits(out[0]) == fbits(vals[0]) && fbits(out[1]) == fbits(vals[2]) &&
          fbits(out[2]) == fbits(vals[1]) && fbits(out[3]) == fbits(vals[3]) &&
          fbits(out[4]) == fbits(vals[2]) && fbits(out[5]) == fbits(vals[4]));
    /* complex64: each 4-byte component swapped on its own, real first */
    for (int i = 0; i < 4; i++) {
        be32(cplx + 8 * i, fbits((float)i + 0.25f));
        be32(cplx + 8 * i + 4, fbits(-(float)i - 0.5f));
    }
    {
        cki_storage cs = storage(cplx, sizeof cplx, CK_DT_C64);
        int64_t cshape[1] = {4};
        cs.big_endian = 1;
        t = view(&cs, CK_DT_C64, 1, cshape, NULL, 0);
        CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
        CHECK(cki_tensor_read(ctx, &t, 0, 4, CK_DT_KEEP, cout, sizeof cout, NULL) == CK_OK);
        CHECK(cout[0] == 0.25f && cout[1] == -0.5f && cout[6] == 3.25f && cout[7] == -3.5f);
    }
    /* int16 big-endian, one byte per step of a stride-2 view */
    {
        uint8_t i16[8] = {0x01, 0x02, 0xff, 0xfe, 0x80, 0x00, 0x7f, 0xff};
        int16_t o[2];
        int64_t ishape[1] = {2}, istride[1] = {2};
        cki_storage is = storage(i16, sizeof i16, CK_DT_I16);
        is.big_endian = 1;
        t = view(&is, CK_DT_I16, 1, ishape, istride, 0);
        CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
        CHECK(cki_tensor_read(ctx, &t, 0, 2, CK_DT_KEEP, o, sizeof o, NULL) == CK_OK);
        CHECK(o[0] == 0x0102 && o[1] == (int16_t)0x8000);
    }
    ck_ctx_free(ctx);
}

TEST(tensor_read_neg_and_conj_flags)
{
    ck_ctx *ctx = ck_ctx_new();
    float f[4] = {1.5f, -2.0f, 0.0f, -0.0f}, fo[4];
    int32_t i[3] = {5, -7, INT32_MIN}, io[3];
    float c[4] = {1.0f, 2.0f, -3.0f, -4.0f}, co[4];
    int64_t s4[1] = {4}, s3[1] = {3}, s2[1] = {2};
    cki_storage fs = storage(f, sizeof f, CK_DT_F32);
    cki_storage is = storage(i, sizeof i, CK_DT_I32);
    cki_storage cs = storage(c, sizeof c, CK_DT_C64);
    cki_tensor t = view(&fs, CK_DT_F32, 1, s4, NULL, 0);
    t.flags = CKI_T_NEG;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_bytes(&t) == NULL);
    CHECK(cki_tensor_read(ctx, &t, 0, 4, CK_DT_KEEP, fo, sizeof fo, NULL) == CK_OK);
    CHECK(fo[0] == -1.5f && fo[1] == 2.0f && fbits(fo[2]) == 0x80000000u &&
          fbits(fo[3]) == 0);
    CHECK(f[0] == 1.5f); /* the storage itself is never touched */
    t = view(&is, CK_DT_I32, 1, s3, NULL, 0);
    t.flags = CKI_T_NEG;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 3, CK_DT_KEEP, io, sizeof io, NULL) == CK_OK);
    CHECK(io[0] == -5 && io[1] == 7 && io[2] == INT32_MIN); /* wraps like torch */
    t = view(&cs, CK_DT_C64, 1, s2, NULL, 0);
    t.flags = CKI_T_CONJ;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 2, CK_DT_KEEP, co, sizeof co, NULL) == CK_OK);
    CHECK(co[0] == 1.0f && co[1] == -2.0f && co[2] == -3.0f && co[3] == 4.0f);
    t.flags = CKI_T_CONJ | CKI_T_NEG;
    CHECK(cki_tensor_read(ctx, &t, 0, 2, CK_DT_KEEP, co, sizeof co, NULL) == CK_OK);
    CHECK(co[0] == -1.0f && co[1] == 2.0f && co[2] == 3.0f && co[3] == -4.0f);
    t.flags = CKI_T_NEG; /* and the flag survives a cast */
    {
        double d[4];
        CHECK(cki_tensor_read(ctx, &t, 0, 2, CK_DT_C128, d, sizeof d, NULL) == CK_OK);
        CHECK(d[0] == -1.0 && d[1] == -2.0 && d[2] == 3.0 && d[3] == 4.0);
    }
    ck_ctx_free(ctx);
}

TEST(tensor_read_casts_after_gather)
{
    ck_ctx *ctx = ck_ctx_new();
    float v[6] = {1.0f, 65504.0f, 1e6f, 1e-9f, -2.5f, 0.333f};
    uint16_t h[6];
    int64_t shape[2] = {3, 2}, stride[2] = {1, 3};
    cki_storage s = storage(v, sizeof v, CK_DT_F32);
    cki_tensor t = view(&s, CK_DT_F32, 2, shape, stride, 0);
    cki_cast_stats cs = {0, 0};
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, 6, CK_DT_F16, h, sizeof h, &cs) == CK_OK);
    /* transposed order: v[0], v[3], v[1], v[4], v[2], v[5] */
    CHECK(h[0] == cki_f32_to_f16(v[0]) && h[1] == cki_f32_to_f16(v[3]) &&
          h[2] == cki_f32_to_f16(v[1]) && h[3] == cki_f32_to_f16(v[4]) &&
          h[4] == cki_f32_to_f16(v[2]) && h[5] == cki_f32_to_f16(v[5]));
    CHECK(h[4] == 0x7c00); /* 1e6 overflows to +Inf */
    CHECK(cs.overflow == 1 && cs.underflow == 1);
    ck_ctx_free(ctx);
}

/* Random views over a 4096-byte storage checked against the reference,
 * whole and in pieces, for 1-, 2-, 4- and 8-byte elements. */
TEST(tensor_read_random_views_match_reference)
{
    static const ck_dtype dts[] = {CK_DT_U8, CK_DT_I16, CK_DT_F32, CK_DT_I64};
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *store = malloc(4096), *got = malloc(1 << 16), *want = malloc(1 << 16);
    int tested = 0, bad = 0;
    for (int i = 0; i < 4096; i++) store[i] = (uint8_t)(i * 7 + (i >> 8));
    for (int iter = 0; iter < 3000; iter++) {
        ck_dtype dt = dts[rnd(4)];
        unsigned es = cki_dtype_size(dt);
        int64_t shape[4], stride[4];
        int nd = 1 + (int)rnd(4);
        cki_storage s = storage(store, 4096, dt);
        cki_tensor t;
        uint64_t first, count;
        for (int d = 0; d < nd; d++) {
            shape[d] = 1 + rnd(6);
            stride[d] = rnd(5) == 0 ? 0 : rnd(40);
        }
        s.big_endian = (uint8_t)(rnd(4) == 0);
        t = view(&s, dt, nd, shape, rnd(5) == 0 ? NULL : stride, rnd(16));
        if (cki_tensor_validate(ctx, "f", &t) != CK_OK) continue;
        tested++;
        for (uint64_t e = 0; e < t.numel; e++) {
            reference(&t, e, want + e * es);
            if (s.big_endian) cki_bswap(want + e * es, 1, es);
        }
        if (cki_tensor_read(ctx, &t, 0, t.numel, CK_DT_KEEP, got, 1 << 16, NULL) != CK_OK ||
            memcmp(got, want, t.numel * es) != 0)
            bad++;
        first = rnd((uint32_t)t.numel);
        count = rnd((uint32_t)(t.numel - first) + 1);
        if (cki_tensor_read(ctx, &t, first, count, CK_DT_KEEP, got, 1 << 16, NULL) != CK_OK ||
            memcmp(got, want + first * es, count * es) != 0)
            bad++;
    }
    CHECK(tested > 1000);
    CHECK(bad == 0);
    free(store);
    free(got);
    free(want);
    ck_ctx_free(ctx);
}

/* A view larger than one 64 KiB block with swap + flag + cast, so the blocked
 * loop crosses many block and row boundaries. */
TEST(tensor_read_multi_block_strided_swap)
{
    ck_ctx *ctx = ck_ctx_new();
    enum { R = 300, C = 257 };
    uint8_t *raw = malloc((size_t)R * C * 4);
    float *out = malloc((size_t)R * C * 4);
    double *dout = malloc((size_t)R * C * 8);
    int64_t shape[2] = {C, R}, stride[2] = {1, C}; /* transpose of R x C */
    cki_storage s = storage(raw, (uint64_t)R * C * 4, CK_DT_F32);
    cki_tensor t;
    int ok = 1;
    for (int i = 0; i < R * C; i++) be32(raw + 4 * i, fbits((float)i));
    s.big_endian = 1;
    t = view(&s, CK_DT_F32, 2, shape, stride, 0);
    t.flags = CKI_T_NEG;
    CHECK(cki_tensor_validate(ctx, "f", &t) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, t.numel, CK_DT_KEEP, out, (size_t)R * C * 4, NULL) == CK_OK);
    CHECK(cki_tensor_read(ctx, &t, 0, t.numel, CK_DT_F64, dout, (size_t)R * C * 8, NULL) == CK_OK);
    for (int c = 0; c < C; c++)
        for (int r = 0; r < R; r++) {
            float want = -(float)(r * C + c);
            ok &= out[c * R + r] == want && dout[c * R + r] == (double)want;
        }
    CHECK(ok);
    free(raw);
    free(out);
    free(dout);
    ck_ctx_free(ctx);
}
