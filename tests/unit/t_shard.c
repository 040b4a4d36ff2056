/*
 * t_shard.c -- Hugging Face sharding: the split rule (cki_shard_assign:
 * state-dict order, new shard when the next tensor would pass the size, an
 * oversize tensor alone, shared storages together), sharded output through
 * ck_convert (names, index bytes, one shard = plain OUT, nothing left behind
 * when a later shard fails), and the sharded reader's validation of index
 * files written by hand.
 */
#include "convert/convert.h"
#include "io/sys.h"
#include "t.h"
#include "t_fs.h"
#include "t_model.h"

static void plan_of_sizes(cki_plan *p, cki_out_tensor *ot, cki_tensor *src, const uint64_t *sz,
                          size_t n)
{
    memset(p, 0, sizeof *p);
    for (size_t i = 0; i < n; i++) {
        memset(&src[i], 0, sizeof src[i]);
        memset(&ot[i], 0, sizeof ot[i]);
        ot[i].name = "t";
        ot[i].nbytes = sz[i];
        ot[i].src = &src[i];
    }
    p->tensors = ot;
    p->count = n;
}

TEST(shard_assign_follows_the_hub_rule)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_plan p;
    cki_out_tensor ot[6];
    cki_tensor src[6];
    size_t of[6], n = 0;
    uint64_t total = 0;
    const uint64_t sz[6] = {3, 3, 3, 10, 1, 0};
    plan_of_sizes(&p, ot, src, sz, 6);
    CHECK(cki_shard_assign(ctx, &p, 6, 0, of, &n, &total) == CK_OK);
    CHECK(n == 4 && total == 20);
    CHECK(of[0] == 0 && of[1] == 0); /* 3 + 3 = 6 fits exactly */
    CHECK(of[2] == 1);               /* 9 would pass 6 */
    CHECK(of[3] == 2);               /* oversize: alone */
    CHECK(of[4] == 3 && of[5] == 3); /* a 0-byte tensor never starts a shard */
    CHECK(cki_shard_assign(ctx, &p, 1000, 0, of, &n, &total) == CK_OK);
    CHECK(n == 1);
    p.count = 0;
    CHECK(cki_shard_assign(ctx, &p, 1000, 0, of, &n, &total) == CK_OK);
    CHECK(n == 1 && total == 0);
    ck_ctx_free(ctx);
}

TEST(shard_assign_keeps_shared_storages_together)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_plan p;
    cki_out_tensor ot[5];
    cki_tensor src[5];
    cki_storage s1, s2;
    int64_t one = 1;
    size_t of[5], n = 0;
    uint64_t total = 0;
    const uint64_t sz[5] = {4, 4, 4, 4, 4};
    memset(&s1, 0, sizeof s1);
    memset(&s2, 0, sizeof s2);
    s1.id = 1;
    s2.id = 2;
    plan_of_sizes(&p, ot, src, sz, 5);
    for (int i = 0; i < 5; i++) { /* F32 [1] views */
        src[i].dtype = ot[i].dtype = CK_DT_F32;
        src[i].ndim = 1;
        src[i].shape = &one;
        src[i].numel = 1;
    }
    src[0].storage = &s1;     /* s1 element 0 */
    src[1].storage = &s2;     /* s2 element 0 ... */
    src[2].storage = &s2;     /* ... twice: a tied weight, written once */
    src[3].storage = &s1;     /* s1 element 1: shares with tensor 0 */
    src[3].offset = 1;
    /* tensor 4 has no storage: counted alone */
    CHECK(cki_shard_assign(ctx, &p, 8, 1, of, &n, &total) == CK_OK);
    /* s1 counts 8 bytes (two elements), s2 4 bytes (one element), tensor 4 4 bytes */
    CHECK(n == 2 && of[0] == 0 && of[3] == 0 && of[1] == 1 && of[2] == 1 && of[4] == 1);
    CHECK(total == 16);
    ot[1].dtype = CK_DT_F16; /* a cast member is written apart: the group counts the sum */
    ot[1].nbytes = 2;
    CHECK(cki_shard_assign(ctx, &p, 8, 1, of, &n, &total) == CK_OK);
    CHECK(total == 8 + 6 + 4);
    CHECK(cki_shard_assign(ctx, &p, 4, 0, of, &n, &total) == CK_OK);
    CHECK(n == 5 && total == 18);
    ck_ctx_free(ctx);
}

/* w0..w4: F32 [8] (32 bytes each), step: I64 scalar. */
static ck_model *small_model(ck_ctx *ctx)
{
    ck_model *m = NULL;
    float v[8];
    int64_t step = 42;
    char name[16];
    CHECK(cki_model_new(ctx, "mem.safetensors", &m) == CK_OK);
    for (int k = 0; k < 5; k++) {
        for (int i = 0; i < 8; i++) v[i] = (float)(k * 10 + i);
        snprintf(name, sizeof name, "w%d", k);
        tm_f32(m, name, v, 8);
    }
    tm_add(m, "step", CK_DT_I64, 0, NULL, &step, 8);
    return m;
}

static const char INDEX_3[] =
    "{\n  \"metadata\": {\n    \"total_size\": 168\n  },\n  \"weight_map\": {\n"
    "    \"step\": \"model-00003-of-00003.safetensors\",\n"
    "    \"w0\": \"model-00001-of-00003.safetensors\",\n"
    "    \"w1\": \"model-00001-of-00003.safetensors\",\n"
    "    \"w2\": \"model-00002-of-00003.safetensors\",\n"
    "    \"w3\": \"model-00002-of-00003.safetensors\",\n"
    "    \"w4\": \"model-00003-of-00003.safetensors\"\n  }\n}\n";

TEST(shard_convert_writes_shards_and_index_and_reads_back)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = small_model(ctx), *back = NULL;
    ck_convert_opts o;
    ck_convert_stats stats;
    char dir[256], out[512], p[512];
    int same = 0;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    o.shard_size = 64;
    tfs_join(out, sizeof out, dir, "model.safetensors");
    CHECK(ck_convert(ctx, m, out, &o, &stats) == CK_OK);
    CHECK(stats.shards == 3 && stats.tensors == 6 && stats.bytes == 168);
    CHECK(!tfs_exists(out));
    CHECK(tfs_exists(tfs_join(p, sizeof p, dir, "model-00001-of-00003.safetensors")));
    CHECK(tfs_exists(tfs_join(p, sizeof p, dir, "model-00003-of-00003.safetensors")));
    CHECK(tfs_same(tfs_join(p, sizeof p, dir, "model.safetensors.index.json"), INDEX_3,
                   sizeof INDEX_3 - 1));
    CHECK(tfs_count_entries(dir) == 4);
    /* the folder and the index both open as one model, in shard order */
    CHECK(ck_model_open(ctx, dir, NULL, &back) == CK_OK);
    CHECK(back && !strcmp(ck_model_format(back), "sharded:safetensors"));
    CHECK(back && ck_model_tensor_count(back) == 6);
    CHECK(back && ck_verify(ctx, m, back, NULL, NULL, &same) == CK_OK && same);
    ck_model_close(back);
    back = NULL;
    CHECK(ck_model_open(ctx, p, NULL, &back) == CK_OK);
    CHECK(back && ck_verify(ctx, m, back, NULL, NULL, &same) == CK_OK && same);
    /* again without --force: refused, nothing changed, no temporary left */
    CHECK(ck_convert(ctx, m, out, &o, &stats) == CK_EEXIST);
    CHECK(tfs_count_entries(dir) == 4);
    /* the output may not replace its own input shards */
    if (back) {
        o.force = 1;
        CHECK(ck_convert(ctx, back, out, &o, &stats) == CK_ESAMEFILE);
        CHECK(tfs_count_temps(dir) == 0);
    }
    ck_model_close(back);
    tfs_rmtree(dir);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(shard_convert_one_shard_is_plain_out)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = small_model(ctx);
    ck_convert_opts o;
    ck_convert_stats stats;
    char dir[256], out[512];
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    o.shard_size = 1u << 20;
    tfs_join(out, sizeof out, dir, "model.safetensors");
    CHECK(ck_convert(ctx, m, out, &o, &stats) == CK_OK);
    CHECK(stats.shards == 1 && tfs_exists(out) && tfs_count_entries(dir) == 1);
    o.format = "raw";
    CHECK(ck_convert(ctx, m, out, &o, &stats) == CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(ctx), "raw output cannot be sharded") != NULL);
    tfs_rmtree(dir);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(shard_convert_failure_leaves_nothing)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = small_model(ctx);
    ck_convert_opts o;
    char dir[256], out[512];
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    o.shard_size = 64;
    tfs_join(out, sizeof out, dir, "model.safetensors");
    for (unsigned long nth = 1; nth <= 4; nth++) { /* rename of shard 1..3, then the index */
        cki_sys_fail_nth(CKI_SYS_RENAME, nth);
        CHECK(ck_convert(ctx, m, out, &o, NULL) == CK_EIO);
        cki_sys_reset();
        CHECK(tfs_count_entries(dir) == 0);
    }
    cki_sys_fail_nth(CKI_SYS_WRITE, 2);
    CHECK(ck_convert(ctx, m, out, &o, NULL) != CK_OK);
    cki_sys_reset();
    CHECK(tfs_count_entries(dir) == 0);
    tfs_rmtree(dir);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

/* Writes TEXT as DIR/NAME. */
static void put(const char *dir, const char *name, const char *text)
{
    char p[512];
    CHECK(tfs_write(tfs_join(p, sizeof p, dir, name), text, strlen(text)) == 0);
}

/* Opens DIR/NAME expecting status ST and a message containing WANT. */
static void expect_open(ck_ctx *ctx, const char *dir, const char *name, ck_status st,
                        const char *want)
{
    char p[512];
    ck_model *m = NULL;
    ck_status got = ck_model_open(ctx, tfs_join(p, sizeof p, dir, name), NULL, &m);
    CHECK(got == st);
    if (want && !strstr(ck_errmsg(ctx), want))
        fprintf(stderr, "  message '%s' lacks '%s'\n", ck_errmsg(ctx), want);
    CHECK(!want || strstr(ck_errmsg(ctx), want) != NULL);
    ck_model_close(m);
}

TEST(sharded_read_validates_the_index)
{
    ck_ctx *ctx = ck_ctx_new();
    tm_warns w = {"", 0};
    ck_model *m = small_model(ctx);
    ck_convert_opts o;
    char dir[256], out[512];
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    ck_ctx_set_warn(ctx, tm_on_warn, &w);
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    o.shard_size = 64;
    tfs_join(out, sizeof out, dir, "model.safetensors");
    CHECK(ck_convert(ctx, m, out, &o, NULL) == CK_OK);

    put(dir, "abs.index.json", "{\"weight_map\": {\"w0\": \"/etc/passwd\"}}");
    expect_open(ctx, dir, "abs.index.json", CK_EFORMAT,
                "tensor 'w0': shard '/etc/passwd' is an absolute path");
    put(dir, "up.index.json", "{\"weight_map\": {\"w0\": \"../x.safetensors\"}}");
    expect_open(ctx, dir, "up.index.json", CK_EFORMAT, "leaves the index's folder ('..')");
    put(dir, "dots.index.json", "{\"weight_map\": {\"w0\": \"..\"}}");
    expect_open(ctx, dir, "dots.index.json", CK_EFORMAT, "leaves the index's folder");
    put(dir, "sub.index.json", "{\"weight_map\": {\"w0\": \"a/b.safetensors\"}}");
    expect_open(ctx, dir, "sub.index.json", CK_EFORMAT, "names a subfolder");
    put(dir, "nul.index.json", "{\"weight_map\": {\"w0\": \"a\\u0000b\"}}");
    expect_open(ctx, dir, "nul.index.json", CK_EFORMAT, "contains a NUL byte");
    put(dir, "miss.index.json",
        "{\"weight_map\": {\"w0\": \"model-00001-of-00003.safetensors\", \"w9\": "
        "\"gone.safetensors\"}}");
    expect_open(ctx, dir, "miss.index.json", CK_EFORMAT,
                "shard 'gone.safetensors' listed in the index is missing");
    put(dir, "wrong.index.json",
        "{\"weight_map\": {\"w0\": \"model-00002-of-00003.safetensors\", \"w1\": "
        "\"model-00001-of-00003.safetensors\"}}");
    expect_open(ctx, dir, "wrong.index.json", CK_EFORMAT,
                "tensor 'w0' is in shard 'model-00001-of-00003.safetensors' but weight_map puts "
                "it in 'model-00002-of-00003.safetensors'");
    put(dir, "absent.index.json",
        "{\"weight_map\": {\"w0\": \"model-00001-of-00003.safetensors\", \"w1\": "
        "\"model-00001-of-00003.safetensors\", \"zz\": \"model-00001-of-00003.safetensors\"}}");
    expect_open(ctx, dir, "absent.index.json", CK_EFORMAT,
                "weight_map lists tensor 'zz' in shard 'model-00001-of-00003.safetensors' but "
                "that shard does not hold it");
    put(dir, "dup.index.json",
        "{\"weight_map\": {\"w0\": \"model-00001-of-00003.safetensors\", \"w0\": "
        "\"model-00002-of-00003.safetensors\"}}");
    expect_open(ctx, dir, "dup.index.json", CK_EFORMAT, "dup.index.json: index: duplicate key");
    put(dir, "notobj.index.json", "{\"weight_map\": []}");
    expect_open(ctx, dir, "notobj.index.json", CK_EFORMAT,
                "'weight_map' is an array, expected an object");
    put(dir, "bad.index.json", "{\"weight_map\": {\"w0\": 3}}");
    expect_open(ctx, dir, "bad.index.json", CK_EFORMAT, "shard is a number, expected a string");
    put(dir, "empty.index.json", "{\"weight_map\": {}}");
    expect_open(ctx, dir, "empty.index.json", CK_EFORMAT, "lists no tensors");
    put(dir, "trunc.index.json", "{\"weight_map\": {");
    expect_open(ctx, dir, "trunc.index.json", CK_EFORMAT, "trunc.index.json: index: ");

    /* a tensor missing from weight_map is kept, with a warning */
    w.count = 0;
    put(dir, "partial.index.json",
        "{\"weight_map\": {\"w0\": \"model-00001-of-00003.safetensors\"}}");
    expect_open(ctx, dir, "partial.index.json", CK_OK, NULL);
    CHECK(w.count == 1 && strstr(w.text, "1 tensors in the shards are not listed in weight_map"));

    /* a folder with several indexes must be named by index */
    {
        ck_model *x = NULL;
        CHECK(ck_model_open(ctx, dir, NULL, &x) == CK_EARG);
        CHECK(strstr(ck_errmsg(ctx), "folder holds several *.index.json files") != NULL);
        ck_model_close(x);
    }
    tfs_rmtree(dir);
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    {
        ck_model *x = NULL;
        CHECK(ck_model_open(ctx, dir, NULL, &x) == CK_EFORMAT);
        CHECK(strstr(ck_errmsg(ctx), "folder holds no *.index.json file") != NULL);
        ck_model_close(x);
    }
    tfs_rmtree(dir);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(sharded_read_tensor_in_two_shards)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = small_model(ctx);
    ck_convert_opts o;
    char dir[256], out[512];
    const char *inc[] = {"w0", NULL};
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    o.include = inc;
    CHECK(ck_convert(ctx, m, tfs_join(out, sizeof out, dir, "a.safetensors"), &o, NULL) == CK_OK);
    CHECK(ck_convert(ctx, m, tfs_join(out, sizeof out, dir, "b.safetensors"), &o, NULL) == CK_OK);
    put(dir, "m.index.json", "{\"weight_map\": {\"w0\": \"a.safetensors\"}}");
    expect_open(ctx, dir, "m.index.json", CK_OK, NULL);
    put(dir, "m.index.json", "{\"weight_map\": {\"w0\": \"a.safetensors\", \"x\": "
                             "\"b.safetensors\"}}");
    expect_open(ctx, dir, "m.index.json", CK_EFORMAT,
                "m.index.json: tensor 'w0' is in shard 'a.safetensors' and again in "
                "'b.safetensors'");
    tfs_rmtree(dir);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

#define BAD_SHARDED "tests/corpus/bad/sharded"

TEST(sharded_bad_corpus_fails_with_expected_lines)
{
    DIR *d = opendir(BAD_SHARDED);
    struct dirent *e;
    int n = 0;
    CHECK(d != NULL);
    while (d && (e = readdir(d))) {
        char path[512], exp[512], *want;
        size_t len = strlen(e->d_name), wl = 0, k = strlen(".index.json");
        ck_ctx *ctx;
        ck_model *m = NULL;
        if (len <= k || strcmp(e->d_name + len - k, ".index.json")) continue;
        snprintf(path, sizeof path, BAD_SHARDED "/%s", e->d_name);
        snprintf(exp, sizeof exp, BAD_SHARDED "/%.*s.expected", (int)(len - k), e->d_name);
        want = (char *)tfs_read(exp, &wl);
        CHECK(want != NULL && wl > 0);
        if (!want) continue;
        want[wl - 1] = 0; /* the newline */
        ctx = ck_ctx_new();
        CHECK(ck_model_open(ctx, path, NULL, &m) != CK_OK);
        if (strcmp(ck_errmsg(ctx), want)) {
            fprintf(stderr, "  %s:\n    got  %s\n    want %s\n", path, ck_errmsg(ctx), want);
            CHECK(!"message differs");
        }
        ck_model_close(m);
        ck_ctx_free(ctx);
        free(want);
        n++;
    }
    if (d) closedir(d);
    CHECK(n >= 20);
}

TEST(sharded_good_corpus_opens)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    float v[4];
    size_t i;
    CHECK(ck_model_open(ctx, "tests/corpus/good/sharded", NULL, &m) == CK_OK);
    CHECK(m && ck_model_tensor_count(m) == 3);
    CHECK(m && !strcmp(ck_model_format(m), "sharded:safetensors"));
    CHECK(m && ck_model_find(m, "b.weight", &i) == CK_OK);
    CHECK(m && ck_model_read(m, i, 0, 4, CK_DT_F32, v, sizeof v) == CK_OK);
    CHECK(v[0] == 3 && v[3] == 6);
    CHECK(m && !strcmp(ck_model_meta_get(m, "format"), "pt"));
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(sharded_list_gives_checked_shard_paths)
{
    ck_ctx *ctx = ck_ctx_new();
    char **files = NULL;
    size_t n = 0;
    CHECK(cki_sharded_list(ctx, "tests/corpus/good/sharded", &files, &n) == CK_OK);
    CHECK(n == 2);
    CHECK(n == 2 &&
          !strcmp(files[0], "tests/corpus/good/sharded/model-00001-of-00002.safetensors"));
    CHECK(n == 2 &&
          !strcmp(files[1], "tests/corpus/good/sharded/model-00002-of-00002.safetensors"));
    cki_sharded_list_free(ctx, files, n);
    CHECK(cki_sharded_list(ctx, BAD_SHARDED "/dotdot.index.json", &files, &n) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "leaves the index's folder") != NULL);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}
