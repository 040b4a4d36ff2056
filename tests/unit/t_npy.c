/*
 * t_npy.c -- the .npy header parser (npy.c), the npy/npz readers and
 * writers through the public API, and the hostile corpus in
 * tests/corpus/bad/npy (written by tests/corpus/make_bad_npy.py).
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "ckptkit.h"
#include "formats/npy.h"
#include "t.h"
#include "t_fs.h"

#define BADNPY "tests/corpus/bad/npy"

/* A version VERSION .npy preamble around dict text D (no padding but '\n'). */
static size_t make_npy(uint8_t *buf, size_t cap, int version, const char *d)
{
    size_t n = strlen(d) + 1, pre = version == 1 ? 10 : 12;
    if (pre + n > cap) return 0;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (uint8_t)version;
    buf[7] = 0;
    if (version == 1) {
        buf[8] = (uint8_t)(n & 0xff);
        buf[9] = (uint8_t)(n >> 8);
    } else {
        for (int i = 0; i < 4; i++) buf[8 + i] = (uint8_t)(n >> (8 * i));
    }
    memcpy(buf + pre, d, n - 1);
    buf[pre + n - 1] = '\n';
    return pre + n;
}

static ck_status parse(ck_ctx *ctx, int version, const char *d, cki_npy *h)
{
    uint8_t buf[4096];
    size_t n = make_npy(buf, sizeof buf, version, d);
    return cki_npy_parse(ctx, "t.npy", NULL, buf, n, h);
}

TEST(npy_parses_what_numpy_writes)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_npy h;
    CHECK(parse(ctx, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", &h) ==
          CK_OK);
    CHECK(h.kind == CKI_NPY_NUMERIC && h.dtype == CK_DT_F32 && !h.big_endian && !h.fortran);
    CHECK(h.ndim == 2 && h.shape[0] == 2 && h.shape[1] == 3 && h.numel == 6 && h.nbytes == 24);
    CHECK(h.major == 1 && h.data_off == 10 + strlen(
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }") + 1);
    /* any key order, double quotes, no trailing comma, v2 and v3, Python 2 longs */
    CHECK(parse(ctx, 2, "{\"shape\": (5L,), \"fortran_order\": True, \"descr\": \">c16\"}", &h) ==
          CK_OK);
    CHECK(h.dtype == CK_DT_C128 && h.big_endian && h.fortran && h.ndim == 1 && h.shape[0] == 5);
    CHECK(parse(ctx, 3, "{'descr':'|b1','fortran_order':False,'shape':()}", &h) == CK_OK);
    CHECK(h.dtype == CK_DT_BOOL && h.ndim == 0 && h.numel == 1 && h.major == 3);
    CHECK(parse(ctx, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (0, 4), }", &h) ==
          CK_OK);
    CHECK(h.numel == 0 && h.nbytes == 0);
    ck_ctx_free(ctx);
}

TEST(npy_type_strings)
{
    static const struct {
        const char *s;
        ck_dtype dt;
        int be;
    } ok[] = {
        {"|b1", CK_DT_BOOL, 0}, {"|u1", CK_DT_U8, 0},    {"|i1", CK_DT_I8, 0},
        {"<u2", CK_DT_U16, 0},  {">i2", CK_DT_I16, 1},   {"<u4", CK_DT_U32, 0},
        {">i4", CK_DT_I32, 1},  {"<u8", CK_DT_U64, 0},   {"<i8", CK_DT_I64, 0},
        {">f2", CK_DT_F16, 1},  {"<f4", CK_DT_F32, 0},   {">f8", CK_DT_F64, 1},
        {"<c8", CK_DT_C64, 0},  {"<c16", CK_DT_C128, 0}, {">u1", CK_DT_U8, 0},
        {"=f4", CK_DT_F32, 0},  {"f8", CK_DT_F64, 0},    {"<f1", CK_DT_F8_E5M2, 0},
        {"bfloat16", CK_DT_BF16, 0},           {"float8_e4m3fn", CK_DT_F8_E4M3, 0},
        {"float8_e5m2", CK_DT_F8_E5M2, 0},     {"float8_e4m3fnuz", CK_DT_F8_E4M3FNUZ, 0},
        {"float8_e5m2fnuz", CK_DT_F8_E5M2FNUZ, 0}, {"float8_e8m0fnu", CK_DT_F8_E8M0, 0},
    };
    static const struct {
        const char *s;
        cki_npy_kind kind;
    } other[] = {
        {"|O", CKI_NPY_OBJECT},         {"|O8", CKI_NPY_OBJECT},       {"<U8", CKI_NPY_UNSUPPORTED},
        {"|S3", CKI_NPY_UNSUPPORTED},   {"|V2", CKI_NPY_UNSUPPORTED},  {"<M8[ns]", CKI_NPY_UNSUPPORTED},
        {"<m8", CKI_NPY_UNSUPPORTED},   {"<f16", CKI_NPY_UNSUPPORTED}, {"<c32", CKI_NPY_UNSUPPORTED},
    };
    static const char *const bad[] = {"<f3", "<i16", "<b2", "float32", "", "<", "<O2", "<M8[n s]",
                                      "<u", "__import__(os).system", "<f4 ", "V"};
    ck_ctx *ctx = ck_ctx_new();
    char d[300];
    cki_npy h;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        snprintf(d, sizeof d, "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }", ok[i].s);
        CHECK(parse(ctx, 1, d, &h) == CK_OK);
        CHECK(h.kind == CKI_NPY_NUMERIC && h.dtype == ok[i].dt && h.big_endian == ok[i].be);
    }
    for (size_t i = 0; i < sizeof other / sizeof other[0]; i++) {
        snprintf(d, sizeof d, "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }",
                 other[i].s);
        CHECK(parse(ctx, 1, d, &h) == CK_OK && h.kind == other[i].kind && h.why);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(d, sizeof d, "{'descr': '%s', 'fortran_order': False, 'shape': (3,), }", bad[i]);
        CHECK(parse(ctx, 1, d, &h) == CK_EFORMAT);
        CHECK(strstr(ck_errmsg(ctx), "is not a numpy type string") != NULL);
    }
    /* structured: unsupported, or an object when a field's type is one */
    CHECK(parse(ctx, 1, "{'descr': [('a', '<i4'), ('O', '<f4', (2,))], 'fortran_order': False, "
                        "'shape': (3,), }", &h) == CK_OK && h.kind == CKI_NPY_UNSUPPORTED);
    CHECK(parse(ctx, 1, "{'descr': [('a', '<i4'), ('b', [('c', '|O')])], 'fortran_order': "
                        "False, 'shape': (3,), }", &h) == CK_OK && h.kind == CKI_NPY_OBJECT);
    ck_ctx_free(ctx);
}

TEST(npy_refuses_what_is_not_a_plain_header)
{
    static const char *const bad[] = {
        "{'descr': np.float32, 'fortran_order': False, 'shape': (3,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), '__class__': 1}",
        "{'descr': '<f4', 'fortran_order': 0, 'shape': (3,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': [3], }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (-3,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (03,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }}",
        "{'descr': '<f4', 'fortran_order': False}",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), 'shape': (3,)}",
        "{'descr': '<f4' 'fortran_order': False, 'shape': (3,)}",
        "['descr', '<f4']",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (1+2,), }",
        "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), } # comment",
        "{'descr': '<f4\n', 'fortran_order': False, 'shape': (3,), }",
        "",
    };
    ck_ctx *ctx = ck_ctx_new();
    cki_npy h;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(parse(ctx, 1, bad[i], &h) == CK_EFORMAT);
        CHECK(strstr(ck_errmsg(ctx), "t.npy: npy header: ") == ck_errmsg(ctx));
    }
    CHECK(parse(ctx, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, "
                        "2), }", &h) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "overflows 64 bits") != NULL);
    CHECK(parse(ctx, 1, "{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775808,"
                        "), }", &h) == CK_EFORMAT);
    ck_ctx_free(ctx);
}

TEST(npy_preamble_limits)
{
    ck_ctx *ctx = ck_ctx_new();
    uint8_t buf[64];
    uint64_t n;
    cki_npy h;
    memset(buf, ' ', sizeof buf);
    memcpy(buf, "\x93NUMPY\x01\x00\xff\xff", 10);
    CHECK(cki_npy_preamble_len(ctx, "t.npy", NULL, buf, sizeof buf, &n) == CK_OK && n == 65545);
    CHECK(cki_npy_parse(ctx, "t.npy", NULL, buf, sizeof buf, &h) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "runs past the end") != NULL);
    memcpy(buf, "\x93NUMPY\x02\x00\x00\x00\x00\x01", 12); /* 16 MiB header */
    CHECK(cki_npy_preamble_len(ctx, "t.npy", NULL, buf, sizeof buf, &n) == CK_ELIMIT);
    memcpy(buf, "\x93NUMPY\x02\x00", 8);
    CHECK(cki_npy_preamble_len(ctx, "t.npy", NULL, buf, 10, &n) == CK_EFORMAT);
    memcpy(buf, "\x93NUMPX", 6);
    CHECK(cki_npy_preamble_len(ctx, "t.npy", NULL, buf, sizeof buf, &n) == CK_EFORMAT);
    ck_ctx_free(ctx);
}

TEST(npy_written_preamble_parses_back)
{
    ck_ctx *ctx = ck_ctx_new();
    static const int64_t shapes[][3] = {{0, 0, 0}, {7, 0, 0}, {2, 3, 4}};
    for (int nd = 0; nd <= 3; nd++) {
        cki_buf b;
        cki_npy h;
        int ml;
        cki_buf_init(&b, ctx, 0);
        CHECK(cki_npy_write_preamble(ctx, cki_npy_descr(CK_DT_BF16, &ml), nd,
                                     shapes[nd ? nd - 1 : 0], &b) == CK_OK);
        CHECK(ml == 1 && b.len % 64 == 0 && b.p[b.len - 1] == '\n');
        CHECK(cki_npy_parse(ctx, "t.npy", NULL, (const uint8_t *)b.p, b.len, &h) == CK_OK);
        CHECK(h.ndim == nd && h.data_off == b.len && h.kind == CKI_NPY_UNSUPPORTED); /* <V2 */
        cki_buf_free(&b);
    }
    {
        int ml;
        CHECK(cki_npy_descr(CK_DT_F4, &ml) == NULL);
        CHECK(!strcmp(cki_npy_descr(CK_DT_F32, &ml), "<f4") && ml == 0);
    }
    ck_ctx_free(ctx);
}

/* ---- through the public API ------------------------------------------------------- */

/* A safetensors file holding w: F32 [64, 1000] (0, 1, 2, ...) and b: BOOL [3]. */
static int write_source(const char *path)
{
    const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[64,1000],\"data_offsets\":[0,256000]},"
                      "\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[256000,256003]}}";
    size_t hl = strlen(hdr), total = 8 + hl + 256003;
    uint8_t *buf = calloc(1, total);
    int rc;
    if (!buf) return -1;
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    for (uint32_t i = 0; i < 64000; i++) {
        float v = (float)(i % 1000);
        memcpy(buf + 8 + hl + 4 * i, &v, 4);
    }
    buf[8 + hl + 256000 + 1] = 1;
    rc = tfs_write(path, buf, total);
    free(buf);
    return rc;
}

TEST(npz_compressed_reads_on_demand)
{
    char dir[512], src[600], out[600], stored[600];
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *z = NULL, *s = NULL;
    ck_convert_opts co;
    float *buf = malloc(64000 * sizeof *buf);
    size_t wi = 0;
    int same = 0;
    CHECK(buf && tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(src, sizeof src, dir, "m.safetensors");
    tfs_join(out, sizeof out, dir, "m.npz");
    tfs_join(stored, sizeof stored, dir, "s.npz");
    CHECK(write_source(src) == 0);
    CHECK(ck_model_open(ctx, src, NULL, &a) == CK_OK);
    memset(&co, 0, sizeof co);
    co.dtype = CK_DT_KEEP;
    CHECK(ck_convert(ctx, a, stored, &co, NULL) == CK_OK);
    co.compress = 1;
    CHECK(ck_convert(ctx, a, out, &co, NULL) == CK_OK);
    CHECK(ck_model_open(ctx, out, NULL, &z) == CK_OK);
    CHECK(ck_model_open(ctx, stored, NULL, &s) == CK_OK);
    if (z && s && buf) {
        CHECK(!strcmp(ck_model_format(z), "npz") && ck_model_tensor_count(z) == 2);
        CHECK(ck_model_find(z, "w", &wi) == CK_OK);
        CHECK(ck_model_data(z, wi) == NULL);  /* deflated: no zero-copy view */
        CHECK(ck_model_data(s, wi) != NULL);  /* stored: mapped in place */
        /* forwards, then backwards (the stream restarts), then a slice */
        CHECK(ck_model_read(z, wi, 0, 64000, CK_DT_KEEP, buf, 64000 * sizeof *buf) == CK_OK);
        CHECK(buf[0] == 0 && buf[999] == 999 && buf[1000] == 0 && buf[63999] == 999);
        CHECK(ck_model_read(z, wi, 1500, 10, CK_DT_F64, buf, 80) == CK_OK);
        CHECK(((double *)(void *)buf)[0] == 500 && ((double *)(void *)buf)[9] == 509);
        CHECK(ck_model_read(z, wi, 10, 3, CK_DT_KEEP, buf, 12) == CK_OK && buf[2] == 12);
        CHECK(ck_verify(ctx, a, z, NULL, NULL, &same) == CK_OK && same);
        CHECK(ck_verify(ctx, s, z, NULL, NULL, &same) == CK_OK && same);
    }
    ck_model_close(a);
    ck_model_close(z);
    ck_model_close(s);
    free(buf);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(npy_fortran_and_big_endian_are_views)
{
    char dir[512], path[600];
    /* shape (2, 3) '>i2' in Fortran order: column-major 0 3 1 4 2 5 */
    const char *d = "{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }";
    uint8_t buf[256];
    size_t n = make_npy(buf, sizeof buf, 1, d);
    static const int16_t colmajor[6] = {0, 3, 1, 4, 2, 5};
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_tensor_info ti;
    int16_t got[6];
    for (int i = 0; i < 6; i++) {
        buf[n + 2 * i] = (uint8_t)((uint16_t)colmajor[i] >> 8);
        buf[n + 2 * i + 1] = (uint8_t)(colmajor[i] & 0xff);
    }
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(path, sizeof path, dir, "weights.npy");
    CHECK(tfs_write(path, buf, n + 12) == 0);
    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_OK);
    if (m) {
        CHECK(ck_model_tensor(m, 0, &ti) == CK_OK && !strcmp(ti.name, "weights"));
        CHECK(ti.dtype == CK_DT_I16 && ti.ndim == 2 && ti.strides && ti.strides[0] == 1 &&
              ti.strides[1] == 2);
        CHECK(ck_model_read(m, 0, 0, 6, CK_DT_KEEP, got, sizeof got) == CK_OK);
        for (int i = 0; i < 6; i++) CHECK(got[i] == i);
    }
    ck_model_close(m);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

/* ---- the hostile corpus ------------------------------------------------------------- */

static char *slurp_line(const char *path)
{
    size_t n = 0;
    char *s = (char *)tfs_read(path, &n);
    if (!s) return NULL;
    while (n && (s[n - 1] == '\n')) n--;
    s[n] = 0;
    return s;
}

TEST(npy_hostile_corpus_fails_with_expected_lines)
{
    struct dirent **list;
    int n = scandir(BADNPY, &list, NULL, alphasort), inputs = 0;
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        size_t len = strlen(name);
        char path[1024], exp[1024], *want;
        ck_ctx *ctx;
        ck_model *m = NULL;
        ck_verdict worst = CK_VERDICT_ALLOWED;
        ck_status st;
        if (len < 5 || (strcmp(name + len - 4, ".npy") && strcmp(name + len - 4, ".npz"))) {
            free(list[i]);
            continue;
        }
        snprintf(path, sizeof path, BADNPY "/%s", name);
        snprintf(exp, sizeof exp, BADNPY "/%.*s.expected", (int)len - 4, name);
        want = slurp_line(exp);
        CHECK(want != NULL);
        ctx = ck_ctx_new();
        st = ck_model_open(ctx, path, NULL, &m);
        CHECK(st != CK_OK && m == NULL);
        if (want && strcmp(ck_errmsg(ctx), want)) {
            fprintf(stderr, "  %s\n    want: %s\n    got:  %s\n", path, want, ck_errmsg(ctx));
            CHECK(!"message differs");
        }
        /* the object arrays refused here hold pickles that run code: scan says so */
        if (st == CK_EUNSAFE) {
            st = ck_scan(ctx, path, NULL, NULL, &worst);
            CHECK(st == CK_OK && worst == CK_VERDICT_DANGEROUS);
        }
        ck_ctx_free(ctx);
        free(want);
        free(list[i]);
        inputs++;
    }
    if (n > 0) free(list);
    CHECK(inputs >= 30);
}
