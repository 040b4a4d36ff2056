/*
 * t_torch_read.c -- the torch reader: zip, legacy and tar checkpoints built
 * here byte by byte (t_torchbuild.h) for what torch 1.13 cannot write
 * (_rebuild_tensor_v3 over untyped storages, conj/neg metadata, parameters
 * with state, tensor subclasses, big-endian archives, legacy storage views,
 * tar tensor tables), the naming rules (state-dict keys, --key, --all,
 * pickled modules, cycles, an exponential DAG), the values JSON, CRC handling,
 * the shared fixtures, and the bad corpus with its exact error lines.
 */
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "formats/format.h"
#include "formats/model.h"
#include "formats/torch_read.h"
#include "t.h"
#include "t_fs.h"
#include "t_torchbuild.h"

extern const cki_format cki_fmt_torch;

#define BAD_DIR "tests/corpus/bad/torch"

static int warnings;
static char last_warning[1024];

static void count_warn(void *user, const char *msg)
{
    (void)user;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
}

static ck_ctx *new_ctx(void)
{
    ck_ctx *ctx = ck_ctx_new();
    warnings = 0;
    last_warning[0] = 0;
    ck_ctx_set_warn(ctx, count_warn, NULL);
    return ctx;
}

/* Runs the torch reader over P[0..N) in memory (the model borrows P). */
static ck_status open_mem(ck_ctx *ctx, const void *p, size_t n, const ck_open_opts *o,
                          ck_model **out)
{
    ck_model *m;
    cki_source *src;
    ck_status st;
    *out = NULL;
    if ((st = cki_model_new(ctx, "mem.pt", &m))) return st;
    if ((st = cki_source_from_memory(ctx, "mem.pt", p, n, &src)) ||
        (st = cki_model_add_source(m, src)) || (st = cki_fmt_torch.read(m, src, o))) {
        ck_model_close(m);
        return st;
    }
    *out = m;
    return CK_OK;
}

/* A torch zip: PKL as <prefix>/data.pkl plus storage records "data/<key>". */
typedef struct blob {
    const char *key;
    const void *data;
    size_t len;
} blob;

static void torch_zip(const tb_bytes *pkl, const blob *blobs, size_t nb, const char *byteorder,
                      tb_bytes *out)
{
    tz_rec recs[16];
    char names[16][64];
    size_t n = 0;
    recs[n++] = (tz_rec){.name = "arc/data.pkl", .data = pkl->p, .len = pkl->n};
    if (byteorder)
        recs[n++] = (tz_rec){.name = "arc/byteorder", .data = byteorder, .len = strlen(byteorder)};
    for (size_t i = 0; i < nb && n < 15; i++) {
        snprintf(names[i], sizeof names[i], "arc/data/%s", blobs[i].key);
        recs[n++] = (tz_rec){.name = names[i], .data = blobs[i].data, .len = blobs[i].len};
    }
    recs[n++] = (tz_rec){.name = "arc/version", .data = "3\n", .len = 2};
    tz_build(recs, n, NULL, out);
}

static int read_f32(ck_model *m, const char *name, float *dst, size_t count)
{
    size_t i;
    if (ck_model_find(m, name, &i)) return 0;
    return ck_model_read(m, i, 0, count, CK_DT_F32, dst, count * 4) == CK_OK;
}

static const char *tname(ck_model *m, size_t i)
{
    ck_tensor_info ti;
    if (ck_model_tensor(m, i, &ti)) return "";
    return ti.name;
}

static const float F4V[4] = {1.0f, 2.0f, -3.5f, 0.25f};

/* ---- the bad corpus -------------------------------------------------------- */

static int check_bad(const char *path)
{
    char exp_path[1100], *want;
    size_t n = 0;
    const char *dot = strrchr(path, '.');
    ck_ctx *ctx;
    ck_model *m = NULL;
    snprintf(exp_path, sizeof exp_path, "%.*s.expected", (int)(dot - path), path);
    want = (char *)tfs_read(exp_path, &n);
    if (!want) return 0; /* loads: see torch_evil_corpus_loads_without_payload */
    want[n] = 0;
    if (n && want[n - 1] == '\n') want[n - 1] = 0;
    ctx = new_ctx();
    CHECK(ck_model_open(ctx, path, NULL, &m) != CK_OK && m == NULL);
    if (strcmp(ck_errmsg(ctx), want) != 0) {
        fprintf(stderr, "  %s\n    want: %s\n    got:  %s\n", path, want, ck_errmsg(ctx));
        CHECK(!"message differs");
    }
    CHECK(strchr(ck_errmsg(ctx), '\n') == NULL);
    free(want);
    ck_ctx_free(ctx);
    return 1;
}

static int each_bad(int (*fn)(const char *))
{
    DIR *d = opendir(BAD_DIR);
    struct dirent *e;
    int n = 0;
    char path[1024];
    if (!d) return 0;
    while ((e = readdir(d))) {
        const char *dot = strrchr(e->d_name, '.');
        if (e->d_name[0] == '.' || !dot || !strcmp(dot, ".expected") || !strcmp(dot, ".py"))
            continue;
        snprintf(path, sizeof path, BAD_DIR "/%s", e->d_name);
        n += fn(path);
    }
    closedir(d);
    return n;
}

/* The legacy magic number as torch.save(pickle_protocol=2..5) writes it:
 * protocols 4 and 5 put a FRAME opcode between PROTO and the number. */
TEST(torch_legacy_sniffed_for_every_protocol)
{
    static const uint8_t num[12] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
    for (uint8_t proto = 1; proto <= 5; proto++) {
        uint8_t b[32] = {0x80, proto};
        size_t at = 2;
        if (proto >= 4) {
            b[2] = 0x95; /* FRAME, 8-byte length 13 */
            b[3] = 13;
            at = 11;
        }
        memcpy(b + at, num, sizeof num);
        b[at + 12] = '.';
        CHECK(cki_torch_sniff(b, at + 13) == (proto >= 2 ? CKI_TORCH_LEGACY : CKI_TORCH_NONE));
        b[at + 11] ^= 1; /* another number */
        CHECK(cki_torch_sniff(b, at + 13) == CKI_TORCH_NONE);
    }
}

TEST(torch_bad_corpus_fails_with_expected_lines)
{
    CHECK(each_bad(check_bad) >= 30);
}

static int check_evil_loads(const char *path)
{
    char exp_path[1100];
    const char *dot = strrchr(path, '.');
    ck_ctx *ctx;
    ck_model *m = NULL;
    float v[4];
    snprintf(exp_path, sizeof exp_path, "%.*s.expected", (int)(dot - path), path);
    if (tfs_exists(exp_path) || !strstr(path, "/evil_")) return 0;
    ctx = new_ctx();
    /* refused by default, naming the dangerous reference */
    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_EUNSAFE);
    CHECK(m == NULL && strstr(ck_errmsg(ctx), "refusing to load") != NULL);
    {
        ck_open_opts o;
        memset(&o, 0, sizeof o);
        o.allow_unsafe = 1;
        CHECK(ck_model_open(ctx, path, &o, &m) == CK_OK);
    }
    if (m) {
        if (ck_model_tensor_count(m) == 1) {
            CHECK(!strcmp(tname(m, 0), "w"));
            CHECK(read_f32(m, "w", v, 4) && !memcmp(v, F4V, sizeof v));
        } else {
            CHECK(ck_model_tensor_count(m) == 0);
        }
        if (strstr(ck_model_values_json(m), "\"os.system\"")) {
            CHECK(warnings >= 1 && strstr(last_warning, "never runs them") != NULL);
        }
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    return 1;
}

TEST(torch_evil_corpus_refused_then_loads_without_payload)
{
    CHECK(each_bad(check_evil_loads) >= 6);
}

/* ---- shared fixtures --------------------------------------------------------- */

static ck_model *open_fixture(ck_ctx *ctx, const char *rel)
{
    char path[512];
    ck_model *m = NULL;
    snprintf(path, sizeof path, T_FIXTURES "/%s", rel);
    if (ck_model_open(ctx, path, NULL, &m)) {
        fprintf(stderr, "  %s: %s\n", rel, ck_errmsg(ctx));
        return NULL;
    }
    return m;
}

TEST(torch_fixtures_values)
{
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    float v[5];
    if ((m = open_fixture(ctx, "pytorch-zip/burn_special_values.pt"))) {
        CHECK(!strcmp(ck_model_format(m), "torch-zip"));
        CHECK(read_f32(m, "tensor", v, 5));
        CHECK(isnan(v[0]) && isinf(v[1]) && v[1] > 0 && isinf(v[2]) && v[2] < 0 && v[3] == 0 &&
              v[4] == 1);
        ck_model_close(m);
    }
    CHECK(m != NULL);
    if ((m = open_fixture(ctx, "pytorch-zip/candle_fortran_tensor_3d.pth"))) {
        ck_tensor_info ti;
        int64_t x[24];
        int ok = 1;
        CHECK(ck_model_tensor(m, 0, &ti) == CK_OK && ti.strides != NULL && ti.ndim == 3);
        CHECK(ck_model_read(m, 0, 0, 24, CK_DT_KEEP, x, sizeof x) == CK_OK);
        for (int i = 0; i < 24; i++) ok &= x[i] == i + 1;
        CHECK(ok);
        CHECK(ck_model_data(m, 0) == NULL); /* strided: no zero-copy view */
        ck_model_close(m);
    }
    CHECK(m != NULL);
    if ((m = open_fixture(ctx, "pytorch-legacy/lightning_mnist_test.pt"))) {
        ck_tensor_info a, b;
        CHECK(!strcmp(ck_model_format(m), "torch-legacy"));
        CHECK(ck_model_tensor_count(m) == 2);
        CHECK(ck_model_tensor(m, 0, &a) == CK_OK && !strcmp(a.name, "0") && a.dtype == CK_DT_U8 &&
              a.ndim == 3 && a.shape[0] == 300 && a.shape[1] == 28);
        CHECK(ck_model_tensor(m, 1, &b) == CK_OK && !strcmp(b.name, "1") && b.dtype == CK_DT_I64);
        CHECK(ck_model_data(m, 0) != NULL);
        ck_model_close(m);
    }
    CHECK(m != NULL);
    if ((m = open_fixture(ctx, "pytorch-tar/burn_tar_multi_dtype.tar"))) {
        double d[2];
        size_t i;
        CHECK(!strcmp(ck_model_format(m), "torch-tar"));
        CHECK(ck_model_tensor_count(m) == 3);
        CHECK(ck_model_find(m, "double_tensor", &i) == CK_OK);
        CHECK(ck_model_read(m, i, 0, 2, CK_DT_F64, d, sizeof d) == CK_OK);
        ck_model_close(m);
    }
    CHECK(m != NULL);
    if ((m = open_fixture(ctx, "lightning-ckpt/darts_Air_RNN_last-epoch=299.ckpt"))) {
        const cki_json *doc, *cb;
        cki_json_err err;
        cki_arena a;
        cki_json_opts jo = {.max_depth = 200};
        const char *js = ck_model_values_json(m);
        CHECK(ck_model_tensor_count(m) == 6);
        CHECK(!strcmp(ck_model_meta_get(m, "epoch"), "299"));
        CHECK(!strcmp(ck_model_meta_get(m, "global_step"), "2100"));
        CHECK(!strcmp(ck_model_meta_get(m, "pytorch-lightning_version"), "2.0.9"));
        cki_arena_init(&a, NULL);
        CHECK(cki_json_parse(NULL, &a, js, strlen(js), &jo, &doc, &err) == CK_OK);
        if (doc) {
            CHECK(cki_json_get(cki_json_get(doc, "state_dict"), "tensors") != NULL);
            cb = cki_json_get(doc, "loss_fn");
            CHECK(cb && cki_json_str_is(cki_json_get(cb, "object"),
                                        "torch.nn.modules.loss.MSELoss"));
        }
        cki_arena_free(&a);
        ck_model_close(m);
    }
    CHECK(m != NULL);
    if ((m = open_fixture(ctx, "pytorch-zip/candle_config.pt"))) {
        CHECK(ck_model_tensor_count(m) == 0);
        CHECK(strstr(ck_model_values_json(m), "\"some_str\"") != NULL);
        ck_model_close(m);
    }
    CHECK(m != NULL);
    ck_ctx_free(ctx);
}

TEST(torch_every_benign_fixture_opens)
{
    static const char *const dirs[] = {"pytorch-zip", "pytorch-legacy", "pytorch-tar",
                                       "lightning-ckpt"};
    int opened = 0;
    for (size_t k = 0; k < 4; k++) {
        char dir[256];
        DIR *d;
        struct dirent *e;
        snprintf(dir, sizeof dir, T_FIXTURES "/%s", dirs[k]);
        d = opendir(dir);
        CHECK(d != NULL);
        while (d && (e = readdir(d))) {
            char rel[512];
            ck_ctx *ctx;
            ck_model *m;
            if (e->d_name[0] == '.' || !strncmp(e->d_name, "picklescan_malicious", 20)) continue;
            snprintf(rel, sizeof rel, "%s/%s", dirs[k], e->d_name);
            ctx = new_ctx();
            m = open_fixture(ctx, rel);
            CHECK(m != NULL);
            for (size_t i = 0; m && i < ck_model_tensor_count(m); i++) {
                ck_tensor_info ti;
                void *buf;
                ck_model_tensor(m, i, &ti);
                buf = malloc(ti.nbytes ? ti.nbytes : 1);
                CHECK(ck_model_read(m, i, 0, ti.numel, CK_DT_KEEP, buf,
                                    ti.nbytes ? ti.nbytes : 1) == CK_OK);
                free(buf);
            }
            opened += m != NULL;
            ck_model_close(m);
            ck_ctx_free(ctx);
        }
        if (d) closedir(d);
    }
    CHECK(opened >= 25);
}

/* ---- rebuild variants -------------------------------------------------------------- */

TEST(torch_v3_untyped_storages_and_new_dtypes)
{
    static const struct {
        const char *torch;
        ck_dtype dt;
        int64_t nbytes;
    } cases[] = {{"bfloat16", CK_DT_BF16, 8}, {"float8_e4m3fn", CK_DT_F8_E4M3, 4},
                 {"uint16", CK_DT_U16, 8},    {"float8_e8m0fnu", CK_DT_F8_E8M0, 4},
                 {"float4_e2m1fn_x2", CK_DT_F4, 4}};
    uint8_t data[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        tb_bytes pkl = {0}, zip;
        blob b = {"0", data, (size_t)cases[c].nbytes};
        ck_ctx *ctx = new_ctx();
        ck_model *m;
        int wide = cases[c].dt == CK_DT_BF16 || cases[c].dt == CK_DT_U16;
        int64_t elems = cases[c].nbytes / (wide ? 2 : 1);
        int64_t size[2] = {2, elems / 2}, stride[2] = {elems / 2, 1};
        pk_proto(&pkl);
        pk_empty_dict(&pkl);
        pk_str(&pkl, "x");
        pk_global(&pkl, "torch._utils", "_rebuild_tensor_v3");
        pk_mark(&pkl);
        /* torch >= 2.3 writes torch.storage.UntypedStorage; accept torch.UntypedStorage too */
        pk_storage_in(&pkl, c % 2 ? "torch" : "torch.storage", "UntypedStorage", "0",
                      cases[c].nbytes);
        pk_int(&pkl, 0);
        pk_ints(&pkl, 2, size);
        pk_ints(&pkl, 2, stride);
        pk_bool(&pkl, 0);
        pk_odict(&pkl);
        pk_global(&pkl, "torch", cases[c].torch);
        pk_tuple(&pkl);
        pk_reduce(&pkl);
        pk_setitem(&pkl);
        pk_stop(&pkl);
        torch_zip(&pkl, &b, 1, "little", &zip);
        CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
        if (m) {
            ck_tensor_info ti;
            uint8_t got[8];
            CHECK(ck_model_tensor(m, 0, &ti) == CK_OK && ti.dtype == cases[c].dt);
            CHECK(ti.nbytes == (uint64_t)cases[c].nbytes);
            if (cases[c].dt == CK_DT_F4) CHECK(ti.shape[1] == 4); /* two values per byte */
            CHECK(ck_model_read(m, 0, 0, ti.numel, CK_DT_KEEP, got, sizeof got) == CK_OK);
            CHECK(!memcmp(got, data, (size_t)cases[c].nbytes));
        }
        ck_model_close(m);
        tbb_free(&pkl);
        tbb_free(&zip);
        ck_ctx_free(ctx);
    }
}

TEST(torch_conj_and_neg_metadata)
{
    float c[4] = {1.0f, 2.0f, -3.0f, 4.0f}; /* two complex64 values */
    float f[3] = {1.5f, -2.0f, 0.0f};
    tb_bytes pkl = {0}, zip;
    blob blobs[2] = {{"0", c, sizeof c}, {"1", f, sizeof f}};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    int64_t two = 2, three = 3, one = 1;
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "z");
    pk_tensor_v2(&pkl, "ComplexFloatStorage", "0", 2, 0, 1, &two, &one, 1, 0);
    pk_str(&pkl, "n");
    pk_tensor_v2(&pkl, "FloatStorage", "1", 3, 0, 1, &three, &one, 0, 1);
    pk_setitems(&pkl);
    pk_stop(&pkl);
    torch_zip(&pkl, blobs, 2, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) {
        float zc[4], nf[3];
        size_t i;
        CHECK(ck_model_find(m, "z", &i) == CK_OK);
        CHECK(ck_model_read(m, i, 0, 2, CK_DT_KEEP, zc, sizeof zc) == CK_OK);
        CHECK(zc[0] == 1.0f && zc[1] == -2.0f && zc[2] == -3.0f && zc[3] == -4.0f);
        CHECK(ck_model_data(m, i) == NULL);
        CHECK(read_f32(m, "n", nf, 3));
        CHECK(nf[0] == -1.5f && nf[1] == 2.0f && nf[2] == 0.0f);
    }
    ck_model_close(m);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

TEST(torch_parameters_subclasses_and_device_copies)
{
    tb_bytes pkl = {0}, zip;
    blob b = {"0", F4V, sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_mark(&pkl);
    /* _rebuild_parameter_with_state(t, True, OrderedDict(), {'tag': 1}) */
    pk_str(&pkl, "p");
    pk_global(&pkl, "torch._utils", "_rebuild_parameter_with_state");
    pk_mark(&pkl);
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_bool(&pkl, 1);
    pk_odict(&pkl);
    pk_empty_dict(&pkl);
    pk_str(&pkl, "tag");
    pk_int(&pkl, 1);
    pk_setitem(&pkl);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    /* _rebuild_from_type_v2(_rebuild_tensor_v2, my.Sub, (args...), {}) */
    pk_str(&pkl, "s");
    pk_global(&pkl, "torch._tensor", "_rebuild_from_type_v2");
    pk_mark(&pkl);
    pk_global(&pkl, "torch._utils", "_rebuild_tensor_v2");
    pk_global(&pkl, "my.module", "Sub");
    pk_mark(&pkl);
    pk_storage(&pkl, "FloatStorage", "0", 4);
    pk_int(&pkl, 1);
    {
        int64_t sz = 2, st = 1;
        pk_ints(&pkl, 1, &sz);
        pk_ints(&pkl, 1, &st);
    }
    pk_bool(&pkl, 0);
    pk_odict(&pkl);
    pk_tuple(&pkl);
    pk_empty_dict(&pkl);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    /* Parameter(t, False) by NEWOBJ; _rebuild_device_tensor_from_cpu_tensor */
    pk_str(&pkl, "q");
    pk_global(&pkl, "torch.nn.parameter", "Parameter");
    pk_mark(&pkl);
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_bool(&pkl, 0);
    pk_tuple(&pkl);
    pk_newobj(&pkl);
    pk_str(&pkl, "d");
    pk_global(&pkl, "torch._utils", "_rebuild_device_tensor_from_cpu_tensor");
    pk_mark(&pkl);
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_global(&pkl, "torch", "float32");
    pk_str(&pkl, "xla:0");
    pk_bool(&pkl, 0);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_setitems(&pkl);
    pk_stop(&pkl);
    torch_zip(&pkl, &b, 1, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) {
        float v[4];
        ck_tensor_info ti;
        CHECK(ck_model_tensor_count(m) == 4);
        CHECK(read_f32(m, "p", v, 4) && !memcmp(v, F4V, sizeof v));
        CHECK(read_f32(m, "q", v, 4) && !memcmp(v, F4V, sizeof v));
        CHECK(read_f32(m, "d", v, 4) && !memcmp(v, F4V, sizeof v));
        CHECK(read_f32(m, "s", v, 2) && v[0] == 2.0f && v[1] == -3.5f);
        CHECK(ck_model_tensor(m, 1, &ti) == CK_OK && ti.storage_offset == 1);
        /* one storage for all four */
        for (size_t i = 1; i < 4; i++) {
            ck_tensor_info tj;
            ck_model_tensor(m, i, &tj);
            CHECK(tj.storage_id == ti.storage_id);
        }
    }
    ck_model_close(m);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

TEST(torch_big_endian_archive)
{
    uint8_t be[16];
    tb_bytes pkl = {0}, zip;
    blob b = {"0", be, sizeof be};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    for (int i = 0; i < 4; i++) {
        uint32_t u;
        memcpy(&u, &F4V[i], 4);
        for (int k = 0; k < 4; k++) be[4 * i + k] = (uint8_t)(u >> (24 - 8 * k));
    }
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_str(&pkl, "w");
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_setitem(&pkl);
    pk_stop(&pkl);
    torch_zip(&pkl, &b, 1, "big", &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) {
        float v[4];
        CHECK(read_f32(m, "w", v, 4) && !memcmp(v, F4V, sizeof v));
        CHECK(ck_model_data(m, 0) == NULL); /* needs swapping: no zero-copy */
    }
    ck_model_close(m);
    tbb_free(&zip);
    torch_zip(&pkl, &b, 1, "little\n", &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) CHECK(ck_model_data(m, 0) != NULL);
    ck_model_close(m);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

/* legacy: object, key list, then count + bytes per key */
static void legacy_file(tb_bytes *out, const tb_bytes *object, const char *const *keys,
                        size_t nkeys, const int64_t *counts, const void *const *data,
                        const size_t *lens)
{
    memset(out, 0, sizeof *out);
    tl_head(out, 1);
    tbb_put(out, object->p, object->n);
    pk_proto(out);
    pk_empty_list(out);
    pk_mark(out);
    for (size_t i = 0; i < nkeys; i++) pk_str(out, keys[i]);
    pk_appends(out);
    pk_stop(out);
    for (size_t i = 0; i < nkeys; i++) {
        tbb_le64(out, (uint64_t)counts[i]);
        tbb_put(out, data[i], lens[i]);
    }
}

TEST(torch_legacy_storage_views)
{
    /* ('storage', FloatStorage, 'root', 'cpu', 4, ('v', 1, 2)): a view of
     * elements [1, 3) of root */
    tb_bytes obj = {0}, file;
    const char *keys[] = {"root"};
    int64_t counts[] = {4};
    const void *data[] = {F4V};
    size_t lens[] = {sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    int64_t two = 2, one = 1;
    pk_proto(&obj);
    pk_empty_dict(&obj);
    pk_mark(&obj);
    pk_str(&obj, "whole");
    pk_vec(&obj, "FloatStorage", "root", 4);
    pk_str(&obj, "view");
    pk_global(&obj, "torch._utils", "_rebuild_tensor_v2");
    pk_mark(&obj);
    pk_mark(&obj);
    pk_str(&obj, "storage");
    pk_global(&obj, "torch", "FloatStorage");
    pk_str(&obj, "root");
    pk_str(&obj, "cpu");
    pk_int(&obj, 4);
    pk_mark(&obj);
    pk_str(&obj, "v");
    pk_int(&obj, 1);
    pk_int(&obj, 2);
    pk_tuple(&obj);
    pk_tuple(&obj);
    pk_persid(&obj);
    pk_int(&obj, 0);
    pk_ints(&obj, 1, &two);
    pk_ints(&obj, 1, &one);
    pk_bool(&obj, 0);
    pk_odict(&obj);
    pk_tuple(&obj);
    pk_reduce(&obj);
    pk_setitems(&obj);
    pk_stop(&obj);
    legacy_file(&file, &obj, keys, 1, counts, data, lens);
    CHECK(open_mem(ctx, file.p, file.n, NULL, &m) == CK_OK);
    if (m) {
        float v[4];
        CHECK(!strcmp(ck_model_format(m), "torch-legacy"));
        CHECK(read_f32(m, "whole", v, 4) && !memcmp(v, F4V, sizeof v));
        CHECK(read_f32(m, "view", v, 2) && v[0] == 2.0f && v[1] == -3.5f);
    }
    ck_model_close(m);
    tbb_free(&file);
    tbb_free(&obj);
    ck_ctx_free(ctx);
}

TEST(torch_tar_tensor_table_and_views)
{
    tb_bytes storages = {0}, tensors = {0}, pkl = {0}, tar = {0};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    /* storages: 1 storage "1" of 4 floats, then views [("2", "1", 2, 2)] */
    pk_proto(&storages);
    pk_int(&storages, 1);
    pk_stop(&storages);
    pk_proto(&storages);
    pk_mark(&storages);
    pk_str(&storages, "1");
    pk_str(&storages, "cpu");
    pk_global(&storages, "torch", "FloatStorage");
    pk_tuple(&storages);
    pk_stop(&storages);
    tbb_le64(&storages, 4);
    tbb_put(&storages, F4V, sizeof F4V);
    pk_proto(&storages);
    pk_empty_list(&storages);
    pk_mark(&storages);
    pk_mark(&storages);
    pk_str(&storages, "2");
    pk_str(&storages, "1");
    pk_int(&storages, 2);
    pk_int(&storages, 2);
    pk_tuple(&storages);
    pk_appends(&storages);
    pk_stop(&storages);
    /* tensors: one tensor "10" over storage "1": shape [2, 2] stride [1, 2] */
    pk_proto(&tensors);
    pk_int(&tensors, 1);
    pk_stop(&tensors);
    pk_proto(&tensors);
    pk_mark(&tensors);
    pk_str(&tensors, "10");
    pk_str(&tensors, "1");
    pk_global(&tensors, "torch", "FloatTensor");
    pk_tuple(&tensors);
    pk_stop(&tensors);
    tbb_le32(&tensors, 2);
    tbb_le32(&tensors, 0);
    tbb_le64(&tensors, 2);
    tbb_le64(&tensors, 2);
    tbb_le64(&tensors, 1);
    tbb_le64(&tensors, 2);
    tbb_le64(&tensors, 0);
    /* pickle: {'t': persid '10', 'v': _rebuild_tensor(persid '2', 0, (2,), (1,))} */
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "t");
    pk_str(&pkl, "10");
    pk_persid(&pkl);
    pk_str(&pkl, "v");
    pk_global(&pkl, "torch._utils", "_rebuild_tensor");
    pk_mark(&pkl);
    pk_int(&pkl, 2);
    pk_persid(&pkl);
    pk_int(&pkl, 0);
    {
        int64_t two = 2, one = 1;
        pk_ints(&pkl, 1, &two);
        pk_ints(&pkl, 1, &one);
    }
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_setitems(&pkl);
    pk_stop(&pkl);
    tt_member(&tar, "storages", storages.p, storages.n);
    tt_member(&tar, "tensors", tensors.p, tensors.n);
    tt_member(&tar, "pickle", pkl.p, pkl.n);
    tt_end(&tar);
    CHECK(cki_fmt_torch.probe != NULL);
    CHECK(open_mem(ctx, tar.p, tar.n, NULL, &m) == CK_OK);
    if (m) {
        float v[4];
        CHECK(!strcmp(ck_model_format(m), "torch-tar"));
        CHECK(read_f32(m, "t", v, 4) && v[0] == 1.0f && v[1] == -3.5f && v[2] == 2.0f &&
              v[3] == 0.25f);
        CHECK(read_f32(m, "v", v, 2) && v[0] == -3.5f && v[1] == 0.25f);
    }
    ck_model_close(m);
    tbb_free(&storages);
    tbb_free(&tensors);
    tbb_free(&pkl);
    tbb_free(&tar);
    ck_ctx_free(ctx);
}

/* ---- naming ----------------------------------------------------------------- */

/* {'w': T, 'state_dict': <the dict itself>, 'cfg': {'x': [T]}} */
static void selfref_pickle(tb_bytes *pkl)
{
    pk_proto(pkl);
    pk_empty_dict(pkl);
    pk_put(pkl, 0);
    pk_mark(pkl);
    pk_str(pkl, "w");
    pk_vec(pkl, "FloatStorage", "0", 4);
    pk_put(pkl, 1);
    pk_str(pkl, "state_dict");
    pk_get(pkl, 0);
    pk_str(pkl, "cfg");
    pk_empty_dict(pkl);
    pk_str(pkl, "x");
    pk_empty_list(pkl);
    pk_get(pkl, 1);
    pk_append(pkl);
    pk_setitem(pkl);
    pk_setitems(pkl);
    pk_stop(pkl);
}

TEST(torch_naming_rules_cycles_key_and_all)
{
    tb_bytes pkl = {0}, zip;
    blob b = {"0", F4V, sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    ck_open_opts o;
    memset(&o, 0, sizeof o);
    selfref_pickle(&pkl);
    torch_zip(&pkl, &b, 1, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) {
        CHECK(ck_model_tensor_count(m) == 2);
        CHECK(!strcmp(tname(m, 0), "w") && !strcmp(tname(m, 1), "cfg.x.0"));
        CHECK(strstr(ck_model_values_json(m), "{\"cycle\": true}") != NULL);
    }
    ck_model_close(m);
    o.all = 1;
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_OK);
    if (m) CHECK(ck_model_tensor_count(m) == 2);
    ck_model_close(m);
    o.all = 0;
    o.key = "cfg.x";
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_OK);
    if (m) CHECK(ck_model_tensor_count(m) == 1 && !strcmp(tname(m, 0), "0"));
    ck_model_close(m);
    o.key = "state_dict.state_dict.cfg.x.0";
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_OK);
    if (m) CHECK(ck_model_tensor_count(m) == 1 && !strcmp(tname(m, 0), o.key));
    ck_model_close(m);
    o.key = "cfg.y";
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_ENOTFOUND);
    CHECK(!strcmp(ck_errmsg(ctx), "mem.pt: key 'cfg.y': no entry 'y' at 'cfg'"));
    o.key = "cfg.x.7";
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_ENOTFOUND);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

/* A pickled module: _parameters, _buffers (one non-persistent), _modules. */
static void module_obj(tb_bytes *pkl, const char *cls, int depth)
{
    pk_global(pkl, "my.models", cls);
    pk_empty_tuple(pkl);
    pk_newobj(pkl);
    pk_empty_dict(pkl);
    pk_mark(pkl);
    pk_str(pkl, "training");
    pk_bool(pkl, 1);
    pk_str(pkl, "_parameters");
    pk_odict(pkl);
    pk_mark(pkl);
    pk_str(pkl, "weight");
    pk_vec(pkl, "FloatStorage", "0", 4);
    pk_str(pkl, "bias");
    pk_none(pkl);
    pk_setitems(pkl);
    pk_str(pkl, "_buffers");
    pk_odict(pkl);
    pk_mark(pkl);
    pk_str(pkl, "keep");
    pk_part(pkl, "FloatStorage", "0", 4, 2);
    pk_str(pkl, "scratch");
    pk_part(pkl, "FloatStorage", "0", 4, 3);
    pk_setitems(pkl);
    pk_str(pkl, "_non_persistent_buffers_set");
    pk_global(pkl, "builtins", "set");
    pk_mark(pkl);
    pk_empty_list(pkl);
    pk_str(pkl, "scratch");
    pk_append(pkl);
    pk_tuple(pkl);
    pk_reduce(pkl);
    pk_str(pkl, "_modules");
    pk_odict(pkl);
    if (depth) {
        pk_mark(pkl);
        pk_str(pkl, "child");
        module_obj(pkl, "Child", depth - 1);
        pk_str(pkl, "gone");
        pk_none(pkl);
        pk_setitems(pkl);
    }
    pk_setitems(pkl);
    pk_build(pkl);
}

TEST(torch_pickled_module_names)
{
    tb_bytes pkl = {0}, zip;
    blob b = {"0", F4V, sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    ck_open_opts o;
    memset(&o, 0, sizeof o);
    pk_proto(&pkl);
    module_obj(&pkl, "Net", 2);
    pk_stop(&pkl);
    torch_zip(&pkl, &b, 1, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (!m) fprintf(stderr, "  %s\n", ck_errmsg(ctx));
    if (m) {
        static const char *const want[] = {"weight", "keep", "child.weight", "child.keep",
                                           "child.child.weight", "child.child.keep"};
        CHECK(ck_model_tensor_count(m) == 6);
        for (size_t i = 0; i < 6 && i < ck_model_tensor_count(m); i++)
            CHECK(!strcmp(tname(m, i), want[i]));
    }
    ck_model_close(m);
    o.key = "child.child";
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_OK);
    if (m) CHECK(ck_model_tensor_count(m) == 2 && !strcmp(tname(m, 0), "weight"));
    ck_model_close(m);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

TEST(torch_shared_containers_are_bounded)
{
    /* L0 = [t]; Li = [L(i-1), L(i-1)]: 2^40 paths to one tensor */
    tb_bytes pkl = {0}, zip;
    blob b = {"0", F4V, sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    ck_open_opts o;
    memset(&o, 0, sizeof o);
    pk_proto(&pkl);
    pk_empty_list(&pkl);
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_append(&pkl);
    pk_put(&pkl, 0);
    for (int i = 1; i <= 40; i++) {
        pk_empty_list(&pkl);
        pk_mark(&pkl);
        pk_get(&pkl, (uint8_t)(i - 1));
        pk_get(&pkl, (uint8_t)(i - 1));
        pk_appends(&pkl);
        pk_put(&pkl, (uint8_t)i);
        tbb_c(&pkl, '0'); /* POP: the lists live on in the memo */
    }
    pk_get(&pkl, 40);
    pk_stop(&pkl);
    torch_zip(&pkl, &b, 1, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_ELIMIT);
    if (!strstr(ck_errmsg(ctx), "expands to more than")) fprintf(stderr, "  %s\n", ck_errmsg(ctx));
    CHECK(strstr(ck_errmsg(ctx), "expands to more than") != NULL);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

TEST(torch_repeated_dict_keys_keep_the_last_value)
{
    /* {'w': first 2 elements, 'x': T, 'w': all 4}: Python keeps 'w' first,
     * with the last value; JSON and names must show 'w' once */
    tb_bytes pkl = {0}, zip;
    blob b = {"0", F4V, sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "w");
    pk_part(&pkl, "FloatStorage", "0", 4, 2);
    pk_str(&pkl, "x");
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_str(&pkl, "w");
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_strn(&pkl, "n\0ul", 4); /* a NUL inside a key: spelled out in the name */
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_str(&pkl, "cfg");
    pk_empty_dict(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "a");
    pk_int(&pkl, 1);
    pk_str(&pkl, "a");
    pk_int(&pkl, 2);
    pk_setitems(&pkl);
    pk_setitems(&pkl);
    pk_stop(&pkl);
    torch_zip(&pkl, &b, 1, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) {
        ck_tensor_info ti;
        const char *js = ck_model_values_json(m);
        const cki_json *doc = NULL;
        cki_json_err err;
        cki_arena a;
        size_t at;
        CHECK(ck_model_tensor_count(m) == 3 && !strcmp(tname(m, 0), "w") &&
              !strcmp(tname(m, 1), "x") && !strcmp(tname(m, 2), "n\\x00ul"));
        CHECK(ck_model_find(m, "n\\x00ul", &at) == CK_OK && at == 2);
        CHECK(ck_model_tensor(m, 0, &ti) == CK_OK && ti.numel == 4);
        cki_arena_init(&a, NULL);
        CHECK(cki_json_parse(NULL, &a, js, strlen(js), NULL, &doc, &err) == CK_OK);
        CHECK(strstr(js, "\"cfg\": {\"a\": 2}") != NULL);
        cki_arena_free(&a);
    }
    ck_model_close(m);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

/* ---- values ---------------------------------------------------------------- */

TEST(torch_values_json_for_plain_and_opaque_objects)
{
    tb_bytes pkl = {0}, zip;
    blob b = {"0", F4V, sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    static const uint8_t f64_2_5[8] = {0, 0, 0, 0, 0, 0, 4, 0x40};
    static const uint8_t i32x3[12] = {1, 0, 0, 0, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "epoch");
    pk_int(&pkl, 7);
    pk_str(&pkl, "global_step");
    pk_int(&pkl, 1234);
    pk_str(&pkl, "pytorch-lightning_version");
    pk_str(&pkl, "2.1.0");
    pk_str(&pkl, "state_dict");
    pk_odict(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "w");
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_setitems(&pkl);
    /* numpy scalar: scalar(dtype('f8') + BUILD (3, '<', ...), raw) */
    pk_str(&pkl, "np_scalar");
    pk_global(&pkl, "numpy.core.multiarray", "scalar");
    pk_mark(&pkl);
    pk_global(&pkl, "numpy", "dtype");
    pk_mark(&pkl);
    pk_str(&pkl, "f8");
    pk_bool(&pkl, 0);
    pk_bool(&pkl, 1);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_mark(&pkl);
    pk_int(&pkl, 3);
    pk_str(&pkl, "<");
    pk_none(&pkl);
    pk_none(&pkl);
    pk_none(&pkl);
    pk_int(&pkl, -1);
    pk_int(&pkl, -1);
    pk_int(&pkl, 0);
    pk_tuple(&pkl);
    pk_build(&pkl);
    pk_bytes(&pkl, f64_2_5, 8);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    /* numpy array of 3 int32 */
    pk_str(&pkl, "np_array");
    pk_global(&pkl, "numpy.core.multiarray", "_reconstruct");
    pk_mark(&pkl);
    pk_global(&pkl, "numpy", "ndarray");
    pk_mark(&pkl);
    pk_int(&pkl, 0);
    pk_tuple(&pkl);
    pk_bytes(&pkl, "b", 1);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_mark(&pkl);
    pk_int(&pkl, 1);
    pk_mark(&pkl);
    pk_int(&pkl, 3);
    pk_tuple(&pkl);
    pk_global(&pkl, "numpy", "dtype");
    pk_mark(&pkl);
    pk_str(&pkl, "i4");
    pk_bool(&pkl, 0);
    pk_bool(&pkl, 1);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_mark(&pkl);
    pk_int(&pkl, 3);
    pk_str(&pkl, "<");
    pk_tuple(&pkl);
    pk_build(&pkl);
    pk_bool(&pkl, 0);
    pk_bytes(&pkl, i32x3, 12);
    pk_tuple(&pkl);
    pk_build(&pkl);
    /* argparse.Namespace(lr=0.5) */
    pk_str(&pkl, "args");
    pk_global(&pkl, "argparse", "Namespace");
    pk_empty_tuple(&pkl);
    pk_newobj(&pkl);
    pk_empty_dict(&pkl);
    pk_str(&pkl, "lr");
    pk_float(&pkl, 0.5);
    pk_setitem(&pkl);
    pk_build(&pkl);
    /* an AttributeDict: NEWOBJ + SETITEMS */
    pk_str(&pkl, "hparams");
    pk_global(&pkl, "pytorch_lightning.utilities.parsing", "AttributeDict");
    pk_empty_tuple(&pkl);
    pk_newobj(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "layers");
    pk_int(&pkl, 3);
    pk_setitems(&pkl);
    /* set, complex, slice, bytes via _codecs, Size, device, defaultdict */
    pk_str(&pkl, "tags");
    pk_global(&pkl, "builtins", "set");
    pk_mark(&pkl);
    pk_empty_list(&pkl);
    pk_str(&pkl, "a");
    pk_append(&pkl);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_str(&pkl, "z");
    pk_global(&pkl, "builtins", "complex");
    pk_mark(&pkl);
    pk_float(&pkl, 1.5);
    pk_float(&pkl, -2.0);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_str(&pkl, "sl");
    pk_global(&pkl, "builtins", "slice");
    pk_mark(&pkl);
    pk_int(&pkl, 1);
    pk_none(&pkl);
    pk_int(&pkl, 2);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_str(&pkl, "raw");
    pk_global(&pkl, "_codecs", "encode");
    pk_mark(&pkl);
    pk_str(&pkl, "a\xc3\xbf"); /* "aÿ" -> 2 bytes in latin-1 */
    pk_str(&pkl, "latin1");
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_str(&pkl, "size");
    pk_global(&pkl, "torch", "Size");
    pk_mark(&pkl);
    pk_mark(&pkl);
    pk_int(&pkl, 2);
    pk_int(&pkl, 3);
    pk_tuple(&pkl);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_str(&pkl, "dev");
    pk_global(&pkl, "torch", "device");
    pk_mark(&pkl);
    pk_str(&pkl, "cuda");
    pk_int(&pkl, 1);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_str(&pkl, "dd");
    pk_global(&pkl, "collections", "defaultdict");
    pk_mark(&pkl);
    pk_global(&pkl, "builtins", "list");
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "k");
    pk_int(&pkl, 1);
    pk_setitems(&pkl);
    pk_str(&pkl, "dt");
    pk_global(&pkl, "torch", "bfloat16");
    pk_str(&pkl, "nan");
    pk_float(&pkl, NAN);
    pk_str(&pkl, "opaque");
    pk_global(&pkl, "my.pkg", "Thing");
    pk_mark(&pkl);
    pk_int(&pkl, 5);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_empty_dict(&pkl);
    pk_str(&pkl, "inner");
    pk_part(&pkl, "FloatStorage", "0", 4, 2);
    pk_setitem(&pkl);
    pk_build(&pkl);
    pk_setitems(&pkl);
    pk_stop(&pkl);
    torch_zip(&pkl, &b, 1, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (!m) fprintf(stderr, "  %s\n", ck_errmsg(ctx));
    if (m) {
        const char *js = ck_model_values_json(m);
        const cki_json *doc = NULL, *v;
        cki_json_err err;
        cki_arena a;
        uint64_t u;
        CHECK(ck_model_tensor_count(m) == 1 && !strcmp(tname(m, 0), "w"));
        CHECK(!strcmp(ck_model_meta_get(m, "epoch"), "7"));
        CHECK(!strcmp(ck_model_meta_get(m, "global_step"), "1234"));
        CHECK(!strcmp(ck_model_meta_get(m, "pytorch-lightning_version"), "2.1.0"));
        cki_arena_init(&a, NULL);
        CHECK(cki_json_parse(NULL, &a, js, strlen(js), NULL, &doc, &err) == CK_OK);
        if (!doc) fprintf(stderr, "  %s\n  at %zu: %s\n", js, err.off, err.msg);
        if (doc) {
            CHECK(cki_json_to_u64(cki_json_get(cki_json_get(doc, "state_dict"), "tensors"), &u) ==
                      NULL &&
                  u == 1);
            v = cki_json_get(doc, "np_scalar");
            CHECK(v && v->type == CKI_JSON_NUMBER && !strncmp(v->u.num, "2.5", v->len));
            v = cki_json_get(cki_json_get(doc, "np_array"), "ndarray");
            CHECK(v && cki_json_str_is(cki_json_get(v, "dtype"), "<i4"));
            v = v ? cki_json_get(v, "values") : NULL;
            CHECK(v && v->type == CKI_JSON_ARRAY && v->len == 3 &&
                  !strncmp(v->u.items[2].u.num, "-1", 2));
            v = cki_json_get(cki_json_get(doc, "args"), "lr");
            CHECK(v && !strncmp(v->u.num, "0.5", v->len));
            v = cki_json_get(doc, "hparams");
            CHECK(v && cki_json_str_is(cki_json_get(v, "object"),
                                       "pytorch_lightning.utilities.parsing.AttributeDict"));
            CHECK(cki_json_get(cki_json_get(v, "items"), "layers") != NULL);
            CHECK(cki_json_get(cki_json_get(doc, "tags"), "set") != NULL);
            CHECK(cki_json_get(cki_json_get(doc, "z"), "complex") != NULL);
            CHECK(cki_json_get(cki_json_get(doc, "sl"), "slice") != NULL);
            CHECK(cki_json_to_u64(cki_json_get(cki_json_get(doc, "raw"), "bytes"), &u) == NULL &&
                  u == 2);
            v = cki_json_get(doc, "size");
            CHECK(v && v->type == CKI_JSON_ARRAY && v->len == 2);
            CHECK(cki_json_str_is(cki_json_get(doc, "dev"), "cuda:1"));
            CHECK(cki_json_get(cki_json_get(doc, "dd"), "k") != NULL);
            CHECK(cki_json_str_is(cki_json_get(cki_json_get(doc, "dt"), "dtype"), "bfloat16"));
            CHECK(cki_json_str_is(cki_json_get(doc, "nan"), "NaN"));
            v = cki_json_get(doc, "opaque");
            CHECK(v && cki_json_str_is(cki_json_get(v, "object"), "my.pkg.Thing"));
            v = v ? cki_json_get(cki_json_get(v, "state"), "inner") : NULL;
            CHECK(v && cki_json_get(v, "tensor") != NULL);
        }
        cki_arena_free(&a);
    }
    ck_model_close(m);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

TEST(torch_unsupported_tensors_are_skipped_with_a_warning)
{
    tb_bytes pkl = {0}, zip;
    blob b = {"0", F4V, sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    int64_t four = 4, one = 1;
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_mark(&pkl);
    pk_str(&pkl, "q");
    pk_global(&pkl, "torch._utils", "_rebuild_qtensor");
    pk_mark(&pkl);
    pk_storage(&pkl, "QInt8Storage", "1", 4);
    pk_int(&pkl, 0);
    pk_ints(&pkl, 1, &four);
    pk_ints(&pkl, 1, &one);
    pk_mark(&pkl);
    pk_global(&pkl, "torch", "per_tensor_affine");
    pk_float(&pkl, 0.1);
    pk_int(&pkl, 0);
    pk_tuple(&pkl);
    pk_bool(&pkl, 0);
    pk_odict(&pkl);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_str(&pkl, "meta");
    pk_global(&pkl, "torch._utils", "_rebuild_meta_tensor_no_storage");
    pk_mark(&pkl);
    pk_global(&pkl, "torch", "float16");
    pk_ints(&pkl, 1, &four);
    pk_ints(&pkl, 1, &one);
    pk_bool(&pkl, 0);
    pk_tuple(&pkl);
    pk_reduce(&pkl);
    pk_str(&pkl, "w");
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_setitems(&pkl);
    pk_stop(&pkl);
    torch_zip(&pkl, &b, 1, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) {
        const char *js = ck_model_values_json(m);
        CHECK(ck_model_tensor_count(m) == 1 && !strcmp(tname(m, 0), "w"));
        CHECK(warnings == 2);
        CHECK(strstr(last_warning, "tensor 'meta': meta tensor (no data) float16: skipped") !=
              NULL);
        CHECK(strstr(js, "\"skipped\": {\"q\": {\"tensor\": {\"dtype\": \"QInt8Storage\", "
                         "\"shape\": [4], \"unsupported\": \"quantized tensor\"}}") != NULL);
        CHECK(strstr(js, "\"meta\": {\"tensor\": {\"dtype\": \"F16\", \"shape\": [4]") != NULL);
    }
    ck_model_close(m);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

TEST(torch_crc_recorded_checked_and_not_computed)
{
    tb_bytes pkl = {0}, zip;
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    ck_open_opts o;
    tz_rec recs[3];
    memset(&o, 0, sizeof o);
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_str(&pkl, "w");
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_setitem(&pkl);
    pk_stop(&pkl);
    recs[0] = (tz_rec){.name = "a/data.pkl", .data = pkl.p, .len = pkl.n};
    recs[1] = (tz_rec){.name = "a/data/0", .data = F4V, .len = sizeof F4V, .crc_wrong = 1};
    recs[2] = (tz_rec){.name = "a/version", .data = "3\n", .len = 2};
    tz_build(recs, 3, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK); /* checked when converting */
    if (m) CHECK(m->storages[0]->crc_known && !m->storages[0]->crc_checked);
    ck_model_close(m);
    o.verify_crc = 1;
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "zip member 'a/data/0': CRC-32 of its 16 bytes is") != NULL);
    tbb_free(&zip);
    recs[1].crc_wrong = 0;
    recs[1].crc_zero = 1;
    tz_build(recs, 3, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, &o, &m) == CK_OK);
    CHECK(warnings == 1 && strstr(last_warning, "CRC-32 is 0") != NULL);
    if (m) CHECK(!m->storages[0]->crc_known);
    ck_model_close(m);
    tbb_free(&zip);
    /* deflated records: inflated into owned storages, CRC always checked */
    recs[1].crc_zero = 0;
    recs[0].deflate = recs[1].deflate = 1;
    tz_build(recs, 3, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) {
        float v[4];
        CHECK(read_f32(m, "w", v, 4) && !memcmp(v, F4V, sizeof v));
        CHECK(m->storages[0]->owned != NULL && m->storages[0]->crc_checked);
    }
    ck_model_close(m);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}

TEST(torch_probe_scores)
{
    tb_bytes pkl = {0}, zip, tar = {0}, leg = {0};
    cki_source src;
    memset(&src, 0, sizeof src);
    src.path = "p";
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_stop(&pkl);
    torch_zip(&pkl, NULL, 0, NULL, &zip);
    src.base = zip.p;
    src.len = zip.n;
    src.view_len = zip.n;
    CHECK(cki_fmt_torch.probe(&src) == 90);
    zip.p[zip.n - 22] = 'X'; /* break the end record */
    /* data.pkl first, as torch.save writes it: known from the first local
     * header (the reader then fails on the directory, naming it) */
    CHECK(cki_fmt_torch.probe(&src) == 90);
    zip.p[30 + 8] = 'X'; /* "archive/Xata.pkl": the directory decides, and it is broken */
    CHECK(cki_fmt_torch.probe(&src) == 20);
    tt_member(&tar, "pickle", pkl.p, pkl.n);
    tt_end(&tar);
    src.base = tar.p;
    src.len = tar.n;
    src.view_len = tar.n;
    CHECK(cki_fmt_torch.probe(&src) == 90);
    tl_head(&leg, 1);
    src.base = leg.p;
    src.len = leg.n;
    CHECK(cki_fmt_torch.probe(&src) == 95);
    src.base = pkl.p;
    src.len = pkl.n;
    CHECK(cki_fmt_torch.probe(&src) == 0);
    tbb_free(&pkl);
    tbb_free(&zip);
    tbb_free(&tar);
    tbb_free(&leg);
}

TEST(torch_depth_limit_and_truncations)
{
    tb_bytes pkl = {0}, zip, leg = {0};
    blob b = {"0", F4V, sizeof F4V};
    ck_ctx *ctx = new_ctx();
    ck_model *m;
    const char *keys[] = {"0"};
    int64_t counts[] = {4};
    const void *data[] = {F4V};
    size_t lens[] = {sizeof F4V};
    pk_proto(&pkl);
    for (int i = 0; i < 60; i++) pk_empty_list(&pkl);
    pk_vec(&pkl, "FloatStorage", "0", 4);
    for (int i = 0; i < 60; i++) pk_append(&pkl);
    pk_stop(&pkl);
    torch_zip(&pkl, &b, 1, NULL, &zip);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_OK);
    if (m) CHECK(ck_model_tensor_count(m) == 1 && strlen(tname(m, 0)) == 119);
    ck_model_close(m);
    ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_DEPTH, 30);
    CHECK(open_mem(ctx, zip.p, zip.n, NULL, &m) == CK_ELIMIT);
    ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_DEPTH, 0);
    for (size_t cut = 0; cut < zip.n; cut++) {
        CHECK(open_mem(ctx, zip.p, cut, NULL, &m) != CK_OK);
        CHECK(ck_errmsg(ctx)[0] != 0);
    }
    tbb_free(&pkl);
    pk_proto(&pkl);
    pk_empty_dict(&pkl);
    pk_str(&pkl, "w");
    pk_vec(&pkl, "FloatStorage", "0", 4);
    pk_setitem(&pkl);
    pk_stop(&pkl);
    legacy_file(&leg, &pkl, keys, 1, counts, data, lens);
    CHECK(open_mem(ctx, leg.p, leg.n, NULL, &m) == CK_OK);
    ck_model_close(m);
    for (size_t cut = 14; cut < leg.n; cut++) {
        CHECK(open_mem(ctx, leg.p, cut, NULL, &m) != CK_OK);
        CHECK(ck_errmsg(ctx)[0] != 0);
    }
    tbb_free(&leg);
    tbb_free(&pkl);
    tbb_free(&zip);
    ck_ctx_free(ctx);
}
