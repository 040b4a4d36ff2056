/*
 * t_gguf.c -- the GGUF reader and writer without Python:
 *  - the hostile corpus (tests/corpus/bad/gguf/, tests/corpus/make_bad_gguf.py):
 *    every file fails to open with exactly its .expected line, and ck_scan
 *    fails on it too (never "clean");
 *  - hand-built files: version 1 (u32 counts), version 2 big-endian, typed
 *    metadata with ck_model_meta_type, shapes reversed from ne;
 *  - write then read back: alignment, quantised tensors, typed keys kept.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckptkit.h"
#include "t.h"
#include "t_model.h"

#define BAD "tests/corpus/bad/gguf"

static char *slurp_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n > 0 ? n : 0] = 0;
    if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
    return buf;
}

static void no_scan(void *user, const ck_scan_item *it)
{
    (void)user;
    (void)it;
}

TEST(gguf_hostile_corpus)
{
    struct dirent **list;
    int n = scandir(BAD, &list, NULL, alphasort), count = 0;
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        size_t len = strlen(name);
        if (len > 5 && !strcmp(name + len - 5, ".gguf")) {
            char path[512], exp[512], *want;
            ck_ctx *ctx = ck_ctx_new();
            ck_model *m = NULL;
            ck_verdict worst;
            snprintf(path, sizeof path, BAD "/%s", name);
            snprintf(exp, sizeof exp, BAD "/%.*s.expected", (int)(len - 5), name);
            want = slurp_text(exp);
            CHECK(want != NULL);
            CHECK(ck_model_open(ctx, path, NULL, &m) != CK_OK && m == NULL);
            if (want && strcmp(ck_errmsg(ctx), want) != 0) {
                fprintf(stderr, "  %s:\n    want %s\n    got  %s\n", name, want, ck_errmsg(ctx));
                CHECK(0);
            }
            CHECK(ck_scan(ctx, path, no_scan, NULL, &worst) != CK_OK);
            free(want);
            ck_ctx_free(ctx);
            count++;
        }
        free(list[i]);
    }
    if (n > 0) free(list);
    CHECK(count >= 25);
}

/* ---- hand-built files -------------------------------------------------------- */

typedef struct wb {
    uint8_t b[4096];
    size_t n;
    int be, v1;
} wb;

static void put(wb *w, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++) {
        int sh = w->be ? 8 * (bytes - 1 - i) : 8 * i;
        w->b[w->n++] = (uint8_t)(v >> sh);
    }
}
static void put_s(wb *w, const char *s)
{
    put(w, strlen(s), w->v1 ? 4 : 8);
    memcpy(w->b + w->n, s, strlen(s));
    w->n += strlen(s);
}
static void align32(wb *w)
{
    while (w->n % 32) w->b[w->n++] = 0;
}

static const char *write_tmp(const wb *w, const char *name)
{
    static char path[256];
    FILE *f;
    snprintf(path, sizeof path, "/tmp/ckptkit-t-gguf-%d-%s", (int)getpid(), name);
    f = fopen(path, "wb");
    if (f) {
        fwrite(w->b, 1, w->n, f);
        fclose(f);
    }
    return path;
}

/* A 2x3 F32 tensor (ne = [3, 2]) and typed keys, in the given version and order. */
static void build(wb *w, int version, int be)
{
    memset(w, 0, sizeof *w);
    w->be = be;
    w->v1 = version == 1;
    memcpy(w->b, "GGUF", 4);
    w->n = 4;
    put(w, (uint64_t)version, 4);
    put(w, 1, w->v1 ? 4 : 8);
    put(w, 4, w->v1 ? 4 : 8);
    put_s(w, "general.architecture");
    put(w, 8, 4);
    put_s(w, "llama");
    put_s(w, "n.i16");
    put(w, 3, 4);
    put(w, (uint16_t)-7, 2);
    put_s(w, "n.f64");
    put(w, 12, 4);
    {
        double d = 2.5;
        uint64_t u;
        memcpy(&u, &d, 8);
        put(w, u, 8);
    }
    put_s(w, "arr");
    put(w, 9, 4);
    put(w, 4, 4);
    put(w, 3, w->v1 ? 4 : 8);
    put(w, 10, 4);
    put(w, 20, 4);
    put(w, 30, 4);
    put_s(w, "t");
    put(w, 2, 4);
    put(w, 3, w->v1 ? 4 : 8);
    put(w, 2, w->v1 ? 4 : 8);
    put(w, 0, 4);
    put(w, 0, 8);
    align32(w);
    for (int i = 0; i < 6; i++) {
        float f = (float)i + 0.5f;
        uint32_t u;
        memcpy(&u, &f, 4);
        put(w, u, 4);
    }
}

static void check_built(const char *path, const char *label)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_tensor_info ti;
    float v[6];
    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_OK);
    if (!m) {
        fprintf(stderr, "  %s: %s\n", label, ck_errmsg(ctx));
        ck_ctx_free(ctx);
        return;
    }
    CHECK(!strcmp(ck_model_format(m), "gguf"));
    CHECK(ck_model_tensor(m, 0, &ti) == CK_OK);
    CHECK(ti.ndim == 2 && ti.shape[0] == 2 && ti.shape[1] == 3 && ti.dtype == CK_DT_F32);
    CHECK(ck_model_read(m, 0, 0, 6, CK_DT_F32, v, sizeof v) == CK_OK);
    for (int i = 0; i < 6; i++) CHECK(v[i] == (float)i + 0.5f);
    CHECK(!strcmp(ck_model_meta_get(m, "general.architecture"), "llama"));
    CHECK(!strcmp(ck_model_meta_get(m, "n.i16"), "-7"));
    CHECK(!strcmp(ck_model_meta_get(m, "n.f64"), "2.5"));
    CHECK(!strcmp(ck_model_meta_get(m, "arr"), "[UINT32 x 3]"));
    CHECK(!strcmp(ck_model_meta_type(m, 1), "INT16"));
    CHECK(!strcmp(ck_model_meta_type(m, 3), "ARRAY[UINT32]"));
    CHECK(strstr(ck_model_values_json(m), "\"arr\": {\"type\": \"UINT32\", \"count\": 3, "
                                          "\"values\": [10, 20, 30]}") != NULL);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(gguf_versions_and_byte_orders)
{
    wb w;
    const char *p;
    build(&w, 1, 0);
    p = write_tmp(&w, "v1.gguf");
    check_built(p, "v1");
    unlink(p);
    build(&w, 2, 1);
    p = write_tmp(&w, "v2be.gguf");
    check_built(p, "v2 big-endian");
    unlink(p);
    build(&w, 3, 0);
    p = write_tmp(&w, "v3.gguf");
    check_built(p, "v3");
    unlink(p);
}

TEST(gguf_write_read_back)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL, *r = NULL;
    float x[4 * 64];
    int64_t shape[2] = {4, 64}, one = 7;
    const char *meta[] = {"general.alignment=64", "general.name=t", NULL};
    ck_convert_opts o;
    ck_convert_stats stats;
    char path[256];
    ck_tensor_info ti;
    for (int i = 0; i < 4 * 64; i++) x[i] = (float)(i % 17) - 8.0f;
    snprintf(path, sizeof path, "/tmp/ckptkit-t-gguf-%d-out.gguf", (int)getpid());
    CHECK(cki_model_new(ctx, "mem", &m) == CK_OK);
    tm_add(m, "blk.0.w", CK_DT_F32, 2, shape, x, sizeof x);
    tm_add(m, "blk.0.norm", CK_DT_F32, 1, &one, x, 7 * 4);
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_Q8_0;
    o.metadata = meta;
    o.force = 1;
    CHECK(ck_convert(ctx, m, path, &o, &stats) == CK_OK);
    CHECK(stats.dtype_tensors[CK_DT_Q8_0] == 1 && stats.dtype_tensors[CK_DT_F32] == 1);
    CHECK(ck_model_open(ctx, path, NULL, &r) == CK_OK);
    if (r) {
        CHECK(ck_model_tensor(r, 0, &ti) == CK_OK && ti.dtype == CK_DT_Q8_0);
        CHECK(ti.file_offset % 64 == 0 && ti.nbytes == 4 * 2 * 34);
        CHECK(ck_model_tensor(r, 1, &ti) == CK_OK && ti.dtype == CK_DT_F32);
        CHECK(ti.file_offset % 64 == 0);
        CHECK(!strcmp(ck_model_meta_get(r, "general.alignment"), "64"));
        CHECK(!strcmp(ck_model_meta_type(r, 0), "UINT32"));
        CHECK(!strcmp(ck_model_meta_get(r, "general.quantization_version"), "2"));
        {
            float y[4 * 64];
            CHECK(ck_model_read(r, 0, 0, 4 * 64, CK_DT_F32, y, sizeof y) == CK_OK);
            for (int i = 0; i < 4 * 64; i++) CHECK(y[i] > x[i] - 0.04f && y[i] < x[i] + 0.04f);
        }
    }
    ck_model_close(r);
    /* a GGUF input keeps its keys' types in GGUF output, and --metadata takes them */
    r = NULL;
    CHECK(ck_model_open(ctx, path, NULL, &r) == CK_OK);
    if (r) {
        char p2[300];
        const char *meta2[] = {"general.quantization_version=3", NULL};
        ck_model *r2 = NULL;
        snprintf(p2, sizeof p2, "%s.2.gguf", path);
        memset(&o, 0, sizeof o);
        o.dtype = CK_DT_KEEP;
        o.metadata = meta2;
        o.force = 1;
        CHECK(ck_convert(ctx, r, p2, &o, NULL) == CK_OK);
        CHECK(ck_model_open(ctx, p2, NULL, &r2) == CK_OK);
        if (r2) {
            CHECK(!strcmp(ck_model_meta_get(r2, "general.quantization_version"), "3"));
            CHECK(!strcmp(ck_model_meta_get(r2, "general.name"), "t"));
            ck_model_close(r2);
        }
        unlink(p2);
        /* a value that does not fit the key's type is refused */
        meta2[0] = "general.alignment=abc";
        o.metadata = meta2;
        CHECK(ck_convert(ctx, r, p2, &o, NULL) == CK_EARG);
        CHECK(access(p2, F_OK) != 0);
    }
    ck_model_close(r);
    unlink(path);
    ck_model_close(m);
    ck_ctx_free(ctx);
}
