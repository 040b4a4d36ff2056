/*
 * t_window_gguf.c -- a GGUF file larger than CKI_SOURCE_WHOLE_MAX, sparse,
 * with a tensor past the 4 GiB offset and a metadata string longer than the
 * first web window (so the window must widen to take the tensor infos).
 * Mapped (native builds) it is an ordinary big file; over the web source
 * (make unit-websrc) the same keys and bytes must come out, with no
 * zero-copy view of the tensor data.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckptkit.h"
#include "io/source.h"
#include "t.h"
#include "t_fs.h"

#define G_HOLE (CKI_SOURCE_WHOLE_MAX + (3ull << 30))
#define G_LONG (3u << 20) /* a string value longer than the first window */

static void put64(unsigned char **p, uint64_t v)
{
    for (int i = 0; i < 8; i++) *(*p)++ = (unsigned char)(v >> (8 * i));
}
static void put32(unsigned char **p, uint32_t v)
{
    for (int i = 0; i < 4; i++) *(*p)++ = (unsigned char)(v >> (8 * i));
}
static void putstr(unsigned char **p, const char *s)
{
    put64(p, strlen(s));
    memcpy(*p, s, strlen(s));
    *p += strlen(s);
}
static void put_tensor(unsigned char **p, const char *name, uint64_t ne0, uint32_t type,
                       uint64_t off)
{
    putstr(p, name);
    put32(p, 1);
    put64(p, ne0);
    put32(p, type);
    put64(p, off);
}

/* GGUF v3: keys "general.name" (short) and "note" (G_LONG bytes of 'x');
 * tensors head F32[4] at 0, hole U8[G_HOLE] at 32, far F32[4] after it. */
static int make_sparse_gguf(const char *path, uint64_t *far_off)
{
    size_t cap = G_LONG + 4096;
    unsigned char *buf = malloc(cap), *p = buf;
    const float head[4] = {1, 2, 3, 4}, far[4] = {-1.5f, 0.25f, 8, 1e30f};
    uint64_t hole_end = 32 + G_HOLE, far_rel = (hole_end + 31) / 32 * 32, data_start;
    int fd, ok;
    if (!buf) return -1;
    memcpy(p, "GGUF", 4);
    p += 4;
    put32(&p, 3);
    put64(&p, 3); /* tensors */
    put64(&p, 2); /* keys */
    putstr(&p, "general.name");
    put32(&p, 8);
    putstr(&p, "sparse");
    putstr(&p, "note");
    put32(&p, 8);
    put64(&p, G_LONG);
    memset(p, 'x', G_LONG);
    p += G_LONG;
    put_tensor(&p, "head", 4, 0, 0);
    put_tensor(&p, "hole", G_HOLE, 24 /* I8 */, 32);
    put_tensor(&p, "far", 4, 0, far_rel);
    data_start = ((uint64_t)(p - buf) + 31) / 32 * 32;
    while ((uint64_t)(p - buf) < data_start) *p++ = 0;
    memcpy(p, head, 16);
    p += 16;
    *far_off = data_start + far_rel;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ok = fd >= 0 && write(fd, buf, (size_t)(p - buf)) == p - buf &&
         pwrite(fd, far, 16, (off_t)*far_off) == 16;
    if (fd >= 0) close(fd);
    free(buf);
    return ok ? 0 : -1;
}

TEST(window_over_a_large_sparse_gguf)
{
    char dir[512], path[600], out[600];
    uint64_t far_off = 0;
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL, *back = NULL;
    cki_source *src = NULL;
    float got[4];
    size_t i;
    const char *note;
    if (tfs_mkdtemp(dir, sizeof dir)) { CHECK(0); return; }
    tfs_join(path, sizeof path, dir, "big.gguf");
    CHECK(make_sparse_gguf(path, &far_off) == 0);
    CHECK(far_off > (4ull << 30));
    CHECK(cki_source_open(ctx, path, &src) == CK_OK);
    int windowed = src && src->view_len < src->len;
    cki_source_close(ctx, src);

    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_OK);
    if (!m) { CHECK(0); ck_ctx_free(ctx); tfs_rmtree(dir); return; }
    CHECK(strcmp(ck_model_format(m), "gguf") == 0);
    CHECK(ck_model_tensor_count(m) == 3);
    CHECK(ck_model_meta_get(m, "general.name") && !strcmp(ck_model_meta_get(m, "general.name"), "sparse"));
    note = ck_model_meta_get(m, "note");
    CHECK(note && strlen(note) == G_LONG && note[0] == 'x' && note[G_LONG - 1] == 'x');
    CHECK(ck_model_find(m, "far", &i) == CK_OK);
    CHECK(ck_model_read(m, i, 0, 4, CK_DT_F32, got, sizeof got) == CK_OK);
    CHECK(got[0] == -1.5f && got[1] == 0.25f && got[2] == 8 && got[3] == 1e30f);
    if (windowed) CHECK(ck_model_data(m, i) == NULL);
    CHECK(ck_model_find(m, "head", &i) == CK_OK);
    CHECK(ck_model_read(m, i, 0, 4, CK_DT_KEEP, got, sizeof got) == CK_OK);
    CHECK(got[0] == 1 && got[3] == 4);
    {
        const char *inc[] = {"head", "far", NULL};
        ck_convert_opts o;
        memset(&o, 0, sizeof o);
        o.dtype = CK_DT_KEEP;
        o.include = inc;
        tfs_join(out, sizeof out, dir, "two.safetensors");
        CHECK(ck_convert(ctx, m, out, &o, NULL) == CK_OK);
        CHECK(ck_model_open(ctx, out, NULL, &back) == CK_OK);
        CHECK(back && ck_model_find(back, "far", &i) == CK_OK &&
              ck_model_read(back, i, 0, 4, CK_DT_F32, got, sizeof got) == CK_OK &&
              got[3] == 1e30f);
        ck_model_close(back);
    }
    ck_model_close(m);

    if (windowed) { /* a header past the limit: the limit's error, not a crash */
        ck_ctx *small = ck_ctx_new();
        m = NULL;
        ck_ctx_set_limit(small, CK_LIMIT_HEADER_BYTES, 1u << 20);
        CHECK(ck_model_open(small, path, NULL, &m) == CK_ELIMIT && m == NULL);
        CHECK(strstr(ck_errmsg(small), "CK_LIMIT_HEADER_BYTES") != NULL);
        ck_ctx_free(small);
    }
    ck_ctx_free(ctx);
    tfs_rmtree(dir);
}
