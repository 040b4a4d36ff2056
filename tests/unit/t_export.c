/*
 * t_export.c -- ck_export: .npy bytes for scalars, vectors and matrices
 * (header text, 64-byte alignment, data), raw output, casts on export, the
 * folder form with sanitized names, and the refusals (unknown name, BF16
 * without --dtype, colliding file names, existing output) that leave nothing
 * behind. tests/interop/test_converter.py loads real outputs with numpy.
 */
#include "convert/convert.h"
#include "t.h"
#include "t_fs.h"
#include "t_model.h"

/* The expected .npy file: header DICT padded to 64, then N data bytes. */
static size_t npy_expect(uint8_t *buf, const char *dict, const void *data, size_t n)
{
    size_t dl = strlen(dict), total = 10 + dl + 1;
    total += (64 - total % 64) % 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)((total - 10) & 0xff);
    buf[9] = (uint8_t)((total - 10) >> 8);
    memcpy(buf + 10, dict, dl);
    memset(buf + 10 + dl, ' ', total - 11 - dl);
    buf[total - 1] = '\n';
    memcpy(buf + total, data, n);
    return total + n;
}

static ck_model *model(ck_ctx *ctx)
{
    ck_model *m = NULL;
    const float mat[6] = {1, 2, 3, 4, 5, 6};
    const float scalar = 2.5f;
    const int32_t vec[3] = {-1, 0, 7};
    const uint16_t bf[2] = {0x3F80, 0xC000};
    int64_t s23[2] = {2, 3}, three = 3, two = 2;
    CHECK(cki_model_new(ctx, "m.safetensors", &m) == CK_OK);
    tm_add(m, "enc/mat", CK_DT_F32, 2, s23, mat, 24);
    tm_add(m, "scalar", CK_DT_F32, 0, NULL, &scalar, 4);
    tm_add(m, "vec", CK_DT_I32, 1, &three, vec, 12);
    tm_add(m, "bf", CK_DT_BF16, 1, &two, bf, 4);
    tm_add(m, "enc_mat", CK_DT_F32, 2, s23, mat, 24);
    return m;
}

TEST(export_npy_bytes)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = model(ctx);
    char dir[256], out[512];
    uint8_t want[256];
    const float mat[6] = {1, 2, 3, 4, 5, 6}, scalar = 2.5f;
    const int32_t vec[3] = {-1, 0, 7};
    const char *n1[] = {"enc/mat"}, *n2[] = {"scalar"}, *n3[] = {"vec"};
    size_t wl;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "a.npy");
    CHECK(ck_export(ctx, m, n1, 1, out, NULL, NULL) == CK_OK);
    wl = npy_expect(want, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", mat, 24);
    CHECK(wl == 128 + 24 && tfs_same(out, want, wl));
    tfs_join(out, sizeof out, dir, "s.npy");
    CHECK(ck_export(ctx, m, n2, 1, out, NULL, NULL) == CK_OK);
    wl = npy_expect(want, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &scalar, 4);
    CHECK(tfs_same(out, want, wl));
    tfs_join(out, sizeof out, dir, "v.npy");
    CHECK(ck_export(ctx, m, n3, 1, out, NULL, NULL) == CK_OK);
    wl = npy_expect(want, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", vec, 12);
    CHECK(tfs_same(out, want, wl));
    CHECK(ck_export(ctx, m, n3, 1, out, NULL, NULL) == CK_EEXIST);
    CHECK(tfs_count_temps(dir) == 0);
    tfs_rmtree(dir);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(export_raw_and_cast)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = model(ctx);
    char dir[256], out[512];
    uint8_t want[256];
    const float f32[2] = {1, -2};
    const char *nb[] = {"bf"}, *nv[] = {"vec"};
    ck_export_opts eo = {"raw", CK_DT_KEEP, 0, 0};
    ck_convert_stats st;
    const uint16_t bf[2] = {0x3F80, 0xC000};
    const int32_t vec[3] = {-1, 0, 7};
    size_t wl;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "bf.bin");
    CHECK(ck_export(ctx, m, nb, 1, out, &eo, NULL) == CK_OK); /* raw holds any dtype */
    CHECK(tfs_same(out, bf, 4));
    eo.format = "npy";
    tfs_join(out, sizeof out, dir, "bf.npy");
    CHECK(ck_export(ctx, m, nb, 1, out, &eo, NULL) == CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(ctx), "tensor 'bf' is BF16, which has no NumPy dtype; export it with "
                                 "--dtype f32") != NULL);
    CHECK(!tfs_exists(out));
    eo.dtype = CK_DT_F32;
    CHECK(ck_export(ctx, m, nb, 1, out, &eo, &st) == CK_OK);
    CHECK(st.cast_tensors == 1 && st.tensors == 1 && st.bytes == 8);
    wl = npy_expect(want, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", f32, 8);
    CHECK(tfs_same(out, want, wl));
    tfs_join(out, sizeof out, dir, "vec.npy"); /* ints are never cast */
    CHECK(ck_export(ctx, m, nv, 1, out, &eo, &st) == CK_OK && st.cast_tensors == 0);
    wl = npy_expect(want, "{'descr': '<i4', 'fortran_order': False, 'shape': (3,), }", vec, 12);
    CHECK(tfs_same(out, want, wl));
    tfs_rmtree(dir);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(export_folder_and_refusals)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = model(ctx);
    char dir[256], out[512], p[600];
    const char *two[] = {"enc/mat", "vec"}, *clash[] = {"enc/mat", "enc_mat"};
    const char *unknown[] = {"vec", "nope"};
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "x");
    CHECK(ck_export(ctx, m, unknown, 2, out, NULL, NULL) == CK_ENOTFOUND);
    CHECK(strstr(ck_errmsg(ctx), "m.safetensors: no tensor named 'nope'") != NULL);
    CHECK(!tfs_exists(out));
    CHECK(ck_export(ctx, m, clash, 2, out, NULL, NULL) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "tensors 'enc/mat' and 'enc_mat' would both be written to "
                                 "'enc_mat.npy'") != NULL);
    CHECK(!tfs_exists(out));
    CHECK(ck_export(ctx, m, two, 2, out, NULL, NULL) == CK_OK);
    CHECK(tfs_exists(tfs_join(p, sizeof p, out, "enc_mat.npy")));
    CHECK(tfs_exists(tfs_join(p, sizeof p, out, "vec.npy")));
    CHECK(tfs_count_entries(out) == 2);
    CHECK(ck_export(ctx, m, two, 2, out, NULL, NULL) == CK_EEXIST);
    CHECK(tfs_count_entries(out) == 2 && tfs_count_temps(out) == 0);
    tfs_rmtree(out);
    tfs_rmtree(dir);
    ck_model_close(m);
    ck_ctx_free(ctx);
}
