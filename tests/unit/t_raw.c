/*
 * t_raw.c -- raw data + JSON manifest: the writer's exact manifest and data
 * layout (64-byte alignment, zero padding), write -> read round trips over
 * every dtype, big-endian input, the default manifest path, warnings,
 * limits, and every bad corpus case with its expected line.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "formats/fmt_raw.h"
#include "t.h"
#include "t_build.h"
#include "t_fs.h"

extern const cki_format cki_fmt_raw;

#define BAD_DIR "tests/corpus/bad/raw"

static ck_status write_raw(ck_ctx *ctx, ck_model *m, const char *out, const char *const *meta)
{
    ck_convert_opts o;
    memset(&o, 0, sizeof o);
    o.format = "raw";
    o.dtype = CK_DT_KEEP;
    o.metadata = meta;
    return ck_convert(ctx, m, out, &o, NULL);
}

static ck_status open_raw(ck_ctx *ctx, const char *data, const char *manifest, ck_model **out)
{
    ck_open_opts o;
    memset(&o, 0, sizeof o);
    o.manifest = manifest;
    if (!manifest) o.format = "raw";
    return ck_model_open(ctx, data, &o, out);
}

TEST(raw_writer_exact_manifest_and_layout)
{
    static const tb_spec specs[] = {{"b", CK_DT_F32, 1, {2}}, {"a", CK_DT_I64, 0, {0}},
                                    {"e", CK_DT_U8, 1, {0}}, {"c", CK_DT_U8, 2, {1, 3}}};
    static const char *const meta[] = {"k=v", "quote=a\"b", NULL};
    static const char want[] =
        "{\n"
        "  \"format\": \"ckptkit-raw\",\n"
        "  \"version\": 1,\n"
        "  \"file\": \"small.raw\",\n"
        "  \"byte_order\": \"little\",\n"
        "  \"metadata\": {\n"
        "    \"k\": \"v\",\n"
        "    \"quote\": \"a\\\"b\"\n"
        "  },\n"
        "  \"tensors\": [\n"
        "    {\"name\": \"b\", \"dtype\": \"F32\", \"shape\": [2], \"offset\": 0},\n"
        "    {\"name\": \"a\", \"dtype\": \"I64\", \"shape\": [], \"offset\": 64},\n"
        "    {\"name\": \"e\", \"dtype\": \"U8\", \"shape\": [0], \"offset\": 72},\n"
        "    {\"name\": \"c\", \"dtype\": \"U8\", \"shape\": [1, 3], \"offset\": 128}\n"
        "  ]\n"
        "}\n";
    char dir[256], out[300], man[300];
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *bytes;
    ck_model *m = tb_build(ctx, specs, 4, &bytes);
    unsigned char *d, *j;
    size_t dn = 0, jn = 0;
    CHECK(m && tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "small.raw");
    tfs_join(man, sizeof man, dir, "small.raw.json");
    CHECK(write_raw(ctx, m, out, meta) == CK_OK);
    j = tfs_read(man, &jn);
    CHECK(j && jn == sizeof want - 1 && !memcmp(j, want, jn));
    d = tfs_read(out, &dn);
    CHECK(d && dn == 131);
    if (d && dn == 131) {
        CHECK(!memcmp(d, bytes, 8));          /* b */
        CHECK(!memcmp(d + 64, bytes + 8, 8)); /* a */
        CHECK(!memcmp(d + 128, bytes + 16, 3));
        for (int i = 8; i < 64; i++) CHECK(d[i] == 0);
        for (int i = 72; i < 128; i++) CHECK(d[i] == 0);
    }
    free(d);
    free(j);
    ck_model_close(m);
    free(bytes);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(raw_writer_empty_model)
{
    static const char want[] = "{\n  \"format\": \"ckptkit-raw\",\n  \"version\": 1,\n"
                               "  \"file\": \"none.raw\",\n  \"byte_order\": \"little\",\n"
                               "  \"metadata\": {},\n  \"tensors\": []\n}\n";
    char dir[256], out[300], man[300];
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *bytes;
    ck_model *m = tb_build(ctx, NULL, 0, &bytes), *r = NULL;
    size_t n = 0;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "none.raw");
    tfs_join(man, sizeof man, dir, "none.raw.json");
    CHECK(write_raw(ctx, m, out, NULL) == CK_OK);
    CHECK(tfs_same(man, want, sizeof want - 1));
    free(tfs_read(out, &n));
    CHECK(n == 0);
    CHECK(open_raw(ctx, out, man, &r) == CK_OK && ck_model_tensor_count(r) == 0);
    ck_model_close(r);
    ck_model_close(m);
    free(bytes);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

static const tb_spec all_specs[] = {
    {"bool", CK_DT_BOOL, 1, {3}},          {"u8", CK_DT_U8, 2, {2, 3}},
    {"i8", CK_DT_I8, 1, {5}},              {"u16", CK_DT_U16, 1, {3}},
    {"i16", CK_DT_I16, 2, {1, 1}},         {"u32", CK_DT_U32, 1, {2}},
    {"i32.scalar", CK_DT_I32, 0, {0}},     {"u64", CK_DT_U64, 1, {2}},
    {"i64", CK_DT_I64, 1, {1}},            {"f16", CK_DT_F16, 1, {7}},
    {"bf16", CK_DT_BF16, 3, {1, 2, 3}},    {"f32", CK_DT_F32, 2, {3, 3}},
    {"f64", CK_DT_F64, 0, {0}},            {"c64", CK_DT_C64, 1, {2}},
    {"c128", CK_DT_C128, 1, {2}},          {"f8", CK_DT_F8_E4M3, 1, {4}},
    {"f8b", CK_DT_F8_E5M2, 1, {4}},        {"f8c", CK_DT_F8_E4M3FNUZ, 1, {2}},
    {"f8d", CK_DT_F8_E5M2FNUZ, 1, {2}},    {"f8e", CK_DT_F8_E8M0, 1, {3}},
    {"f6", CK_DT_F6_E2M3, 1, {4}},         {"f6b", CK_DT_F6_E3M2, 2, {2, 4}},
    {"f4", CK_DT_F4, 2, {3, 2}},           {"empty", CK_DT_F32, 2, {0, 4}},
    {"model.layers.0.mlp.weight", CK_DT_BF16, 2, {2, 2}},
    {"r\xc3\xa9sum\xc3\xa9.\xf0\x9f\x98\x80", CK_DT_F32, 1, {1}},
};
#define ALL_COUNT (sizeof all_specs / sizeof all_specs[0])

TEST(raw_round_trip_every_dtype)
{
    char dir[256], out[300], out2[300], man[300], man2[300];
    static const char *const meta[] = {"epoch=3", "caf\xc3\xa9=\xe2\x98\x83", NULL};
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *bytes;
    ck_model *m = tb_build(ctx, all_specs, ALL_COUNT, &bytes), *r = NULL, *r2 = NULL;
    int same = 0;
    CHECK(m && tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "all.raw");
    tfs_join(man, sizeof man, dir, "all.raw.json");
    tfs_join(out2, sizeof out2, dir, "again.raw");
    tfs_join(man2, sizeof man2, dir, "again.raw.json");
    CHECK(write_raw(ctx, m, out, meta) == CK_OK);
    CHECK(open_raw(ctx, out, man, &r) == CK_OK);
    CHECK(r && !strcmp(ck_model_format(r), "raw"));
    CHECK(r && ck_verify(ctx, m, r, NULL, NULL, &same) == CK_OK && same);
    for (size_t i = 0; r && i < ck_model_tensor_count(r); i++) {
        ck_tensor_info ti;
        ck_model_tensor(r, i, &ti);
        CHECK(!strcmp(ti.name, all_specs[i].name)); /* model order is kept */
        CHECK(ti.nbytes == 0 || ti.file_offset % 64 == 0);
        CHECK(ti.nbytes == 0 || ck_model_data(r, i) != NULL); /* little-endian: zero-copy */
    }
    CHECK(r && !strcmp(ck_model_meta_get(r, "epoch"), "3"));
    CHECK(r && !strcmp(ck_model_meta_get(r, "caf\xc3\xa9"), "\xe2\x98\x83"));
    /* raw -> raw again: same bytes except the "file" name */
    CHECK(r && write_raw(ctx, r, out2, NULL) == CK_OK);
    {
        size_t a = 0, b = 0;
        unsigned char *da = tfs_read(out, &a), *db = tfs_read(out2, &b);
        CHECK(da && db && a == b && !memcmp(da, db, a));
        free(da);
        free(db);
    }
    CHECK(open_raw(ctx, out2, NULL, &r2) == CK_OK); /* default manifest: OUT.json */
    CHECK(r2 && ck_verify(ctx, m, r2, NULL, NULL, &same) == CK_OK && same);
    ck_model_close(r);
    ck_model_close(r2);
    ck_model_close(m);
    free(bytes);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(raw_round_trip_through_safetensors)
{
    /* a real file: safetensors -> raw -> safetensors gives the same tensors */
    char dir[256], raw[300], st[300];
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *b = NULL, *c = NULL;
    ck_convert_opts o;
    int same = 0;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(raw, sizeof raw, dir, "m.raw");
    tfs_join(st, sizeof st, dir, "m.safetensors");
    CHECK(ck_model_open(ctx, T_FIXTURES "/safetensors/burn_mnist.safetensors", NULL, &a) == CK_OK);
    CHECK(a && write_raw(ctx, a, raw, NULL) == CK_OK);
    CHECK(open_raw(ctx, raw, NULL, &b) == CK_OK);
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    CHECK(b && ck_convert(ctx, b, st, &o, NULL) == CK_OK);
    CHECK(ck_model_open(ctx, st, NULL, &c) == CK_OK);
    CHECK(c && ck_verify(ctx, a, c, NULL, NULL, &same) == CK_OK && same);
    ck_model_close(a);
    ck_model_close(b);
    ck_model_close(c);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(raw_big_endian_input)
{
    /* F32 1.5 and -2 big-endian (file default), I16 258 little-endian (override) */
    static const unsigned char data[] = {0x3f, 0xc0, 0, 0, 0xc0, 0, 0, 0, 0x02, 0x01, 7};
    static const char man_text[] =
        "{\"format\":\"ckptkit-raw\",\"version\":1,\"file\":\"be.raw\",\"byte_order\":\"big\","
        "\"tensors\":[{\"name\":\"f\",\"dtype\":\"F32\",\"shape\":[2],\"offset\":0},"
        "{\"name\":\"h\",\"dtype\":\"I16\",\"shape\":[],\"offset\":8,\"byte_order\":\"little\"},"
        "{\"name\":\"u\",\"dtype\":\"U8\",\"shape\":[1],\"offset\":10}]}";
    char dir[256], path[300], man[300], out[300], outman[300];
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL, *r = NULL;
    float f[2] = {0, 0};
    int16_t h = 0;
    unsigned char *j;
    size_t jn = 0;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(path, sizeof path, dir, "be.raw");
    tfs_join(man, sizeof man, dir, "be.raw.json");
    tfs_join(out, sizeof out, dir, "le.raw");
    tfs_join(outman, sizeof outman, dir, "le.raw.json");
    tfs_write(path, data, sizeof data);
    tfs_write(man, man_text, sizeof man_text - 1);
    CHECK(open_raw(ctx, path, man, &m) == CK_OK);
    CHECK(m && ck_model_read(m, 0, 0, 2, CK_DT_KEEP, f, sizeof f) == CK_OK);
    CHECK(f[0] == 1.5f && f[1] == -2.0f);
    CHECK(m && ck_model_data(m, 0) == NULL); /* big-endian: no zero-copy view */
    CHECK(m && ck_model_read(m, 1, 0, 1, CK_DT_KEEP, &h, sizeof h) == CK_OK && h == 258);
    CHECK(m && ck_model_data(m, 1) != NULL);
    /* written back little-endian */
    CHECK(m && write_raw(ctx, m, out, NULL) == CK_OK);
    j = tfs_read(outman, &jn);
    CHECK(j && strstr((char *)j, "\"byte_order\": \"little\"") != NULL);
    free(j);
    CHECK(open_raw(ctx, out, NULL, &r) == CK_OK);
    if (r) {
        float g[2] = {0, 0};
        CHECK(ck_model_read(r, 0, 0, 2, CK_DT_KEEP, g, sizeof g) == CK_OK);
        CHECK(g[0] == 1.5f && g[1] == -2.0f && ck_model_data(r, 0) != NULL);
    }
    ck_model_close(m);
    ck_model_close(r);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

static char warned[1024];
static void on_warn(void *user, const char *msg)
{
    (void)user;
    snprintf(warned, sizeof warned, "%s", msg);
}

TEST(raw_manifest_for_another_file_warns)
{
    static const char man_text[] =
        "{\"format\":\"ckptkit-raw\",\"version\":1,\"file\":\"other.raw\",\"tensors\":[]}";
    char dir[256], path[300], man[300], want[800];
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(path, sizeof path, dir, "this.raw");
    tfs_join(man, sizeof man, dir, "m.json");
    tfs_write(path, "", 0);
    tfs_write(man, man_text, sizeof man_text - 1);
    warned[0] = 0;
    ck_ctx_set_warn(ctx, on_warn, NULL);
    CHECK(open_raw(ctx, path, man, &m) == CK_OK);
    snprintf(want, sizeof want, "%s: manifest describes 'other.raw' but the data file is '%s'", man,
             path);
    CHECK(!strcmp(warned, want));
    ck_model_close(m);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(raw_missing_manifest_and_limits)
{
    char dir[256], path[300], want[800];
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(path, sizeof path, dir, "lonely.raw");
    tfs_write(path, "abcd", 4);
    CHECK(open_raw(ctx, path, NULL, &m) == CK_EIO);
    snprintf(want, sizeof want,
             "%s: raw data needs a JSON manifest: none was given and %s.json cannot be opened",
             path, path);
    CHECK(!strcmp(ck_errmsg(ctx), want));
    /* detection never picks raw: bytes alone say nothing */
    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_EFORMAT);
    {
        cki_source *src;
        CHECK(cki_source_from_memory(NULL, "x", "{}", 2, &src) == CK_OK);
        CHECK(cki_fmt_raw.probe(src) == 0);
        cki_source_close(NULL, src);
    }
    /* the manifest is held to the header limit */
    ck_ctx_set_limit(ctx, CK_LIMIT_HEADER_BYTES, 10);
    {
        struct stat sb;
        CHECK(stat(BAD_DIR "/overlap.raw.json", &sb) == 0);
        snprintf(want, sizeof want, BAD_DIR "/overlap.raw.json: manifest: %lld bytes exceed the "
                 "limit of 10", (long long)sb.st_size);
        CHECK(open_raw(ctx, BAD_DIR "/overlap.raw", BAD_DIR "/overlap.raw.json", &m) == CK_ELIMIT);
        CHECK(!strcmp(ck_errmsg(ctx), want));
    }
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(raw_writer_refusals)
{
    static const tb_spec f4 = {"odd", CK_DT_F4, 1, {3}};
    static const tb_spec ok = {"w", CK_DT_F32, 1, {2}};
    char dir[256], out[300], man[300];
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *b1, *b2;
    ck_model *m = tb_build(ctx, &f4, 1, &b1), *m2 = tb_build(ctx, &ok, 1, &b2);
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "x.raw");
    tfs_join(man, sizeof man, dir, "x.raw.json");
    CHECK(write_raw(ctx, m, out, NULL) == CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(ctx), "x.raw: tensor 'odd': 3 x F4 is not a whole number of bytes"));
    CHECK(tfs_count_entries(dir) == 0);
    {
        static const tb_spec bad = {"na\xffme", CK_DT_U8, 1, {1}};
        static const char *const meta[] = {"k=\xff", NULL};
        uint8_t *b3;
        ck_model *m3 = tb_build(ctx, &bad, 1, &b3);
        CHECK(write_raw(ctx, m3, out, NULL) == CK_EUNSUPPORTED);
        CHECK(strstr(ck_errmsg(ctx), "x.raw: tensor 'na\xffme': name is not valid UTF-8"));
        CHECK(write_raw(ctx, m2, out, meta) == CK_EUNSUPPORTED);
        CHECK(strstr(ck_errmsg(ctx), "x.raw: metadata 'k': not valid UTF-8"));
        CHECK(tfs_count_entries(dir) == 0);
        ck_model_close(m3);
        free(b3);
    }
    /* an existing manifest is not replaced without force, and no data is left */
    tfs_write(man, "keep", 4);
    CHECK(write_raw(ctx, m2, out, NULL) == CK_EEXIST);
    CHECK(!tfs_exists(out) && tfs_same(man, "keep", 4) && tfs_count_temps(dir) == 0);
    ck_model_close(m);
    ck_model_close(m2);
    free(b1);
    free(b2);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

/* ---- bad corpus ---------------------------------------------------------------------- */

static int checked;

static void check_bad(const char *data)
{
    char man[1100], exp[1100], *want;
    size_t n = 0, base = strlen(data) - 4; /* without ".raw" */
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_status st;
    snprintf(man, sizeof man, "%s.json", data);
    snprintf(exp, sizeof exp, "%.*s.expected", (int)base, data);
    want = (char *)tfs_read(exp, &n);
    CHECK(want != NULL);
    if (!want) goto out;
    want[n] = 0;
    if (n && want[n - 1] == '\n') want[n - 1] = 0;
    st = open_raw(ctx, data, man, &m);
    CHECK(st != CK_OK && m == NULL);
    if (strcmp(ck_errmsg(ctx), want) != 0) {
        fprintf(stderr, "  %s\n    want: %s\n    got:  %s\n", data, want, ck_errmsg(ctx));
        CHECK(!"message differs");
    }
    CHECK(st == (strstr(want, "is not supported") ? CK_EUNSUPPORTED : CK_EFORMAT));
    checked++;
    free(want);
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(raw_bad_corpus_fails_with_expected_lines)
{
    struct dirent **list;
    int n = scandir(BAD_DIR, &list, NULL, alphasort);
    checked = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list[i]->d_name);
        char path[1024];
        if (l > 4 && !strcmp(list[i]->d_name + l - 4, ".raw")) {
            snprintf(path, sizeof path, BAD_DIR "/%s", list[i]->d_name);
            check_bad(path);
        }
        free(list[i]);
    }
    if (n > 0) free(list);
    CHECK(checked >= 50);
}

TEST(raw_manifest_from_memory)
{
    /* the entry point the fuzz target uses: a manifest and data from memory */
    static const char man_text[] = "{\"format\":\"ckptkit-raw\",\"version\":1,\"file\":\"d\","
                                   "\"metadata\":{\"a\":\"b\"},\"tensors\":[{\"name\":\"t\","
                                   "\"dtype\":\"U16\",\"shape\":[2],\"offset\":2}]}";
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m;
    cki_source *data, *man;
    uint16_t v[2];
    CHECK(cki_model_new(ctx, "d", &m) == CK_OK);
    CHECK(cki_source_from_memory(ctx, "d", "\0\0\1\0\2\0", 6, &data) == CK_OK);
    CHECK(cki_source_from_memory(ctx, "m.json", man_text, sizeof man_text - 1, &man) == CK_OK);
    cki_model_add_source(m, data);
    cki_model_add_source(m, man);
    CHECK(cki_raw_read_manifest(m, data, man) == CK_OK);
    CHECK(ck_model_tensor_count(m) == 1 && !strcmp(ck_model_meta_get(m, "a"), "b"));
    CHECK(ck_model_read(m, 0, 0, 2, CK_DT_KEEP, v, sizeof v) == CK_OK && v[0] == 1 && v[1] == 2);
    ck_model_close(m);
    ck_ctx_free(ctx);
}
