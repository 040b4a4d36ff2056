/*
 * t_window.c -- a safetensors file larger than CKI_SOURCE_WHOLE_MAX, sparse,
 * with a tensor past the 4 GiB offset. With the mapped source (native
 * builds) it is an ordinary big file; with the web source (make
 * unit-websrc: lseek + read, a window over the head) the same reads must
 * give the same bytes, no zero-copy view is offered, and a pickled file of
 * that size whose pickles are spread through it (the legacy torch stream) is
 * refused with one line instead of being read whole.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ckptkit.h"
#include "formats/torch_read.h"
#include "io/source.h"
#include "t.h"
#include "t_fs.h"

#define HOLE (CKI_SOURCE_WHOLE_MAX + (3ull << 30)) /* puts 'far' past 4 GiB */

static int make_sparse(const char *path, uint64_t *far_off)
{
    char hdr[512];
    unsigned char len8[8];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"head\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                     "\"hole\":{\"dtype\":\"U8\",\"shape\":[%llu],\"data_offsets\":[16,%llu]},"
                     "\"far\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[%llu,%llu]}}",
                     (unsigned long long)HOLE, (unsigned long long)(16 + HOLE),
                     (unsigned long long)(16 + HOLE), (unsigned long long)(32 + HOLE));
    const float head[4] = {1, 2, 3, 4}, far[4] = {-1.5f, 0.25f, 8, 1e30f};
    int fd;
    while (n % 8) hdr[n++] = ' ';
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)n >> (8 * i));
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return -1;
    *far_off = 8 + (uint64_t)n + 16 + HOLE;
    if (write(fd, len8, 8) != 8 || write(fd, hdr, (size_t)n) != n ||
        write(fd, head, 16) != 16 || pwrite(fd, far, 16, (off_t)*far_off) != 16) {
        close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

TEST(window_over_a_large_sparse_file)
{
    char dir[512], path[600], zpath[600];
    uint64_t far_off = 0;
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_source *src = NULL;
    float got[4];
    size_t i;
    if (tfs_mkdtemp(dir, sizeof dir)) { CHECK(0); return; }
    tfs_join(path, sizeof path, dir, "big.safetensors");
    CHECK(make_sparse(path, &far_off) == 0);
    CHECK(far_off > (4ull << 30));
    CHECK(cki_source_open(ctx, path, &src) == CK_OK);
    int windowed = src && src->view_len < src->len;
    cki_source_close(ctx, src);

    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_OK);
    CHECK(ck_model_tensor_count(m) == 3);
    CHECK(ck_model_find(m, "far", &i) == CK_OK);
    CHECK(ck_model_read(m, i, 0, 4, CK_DT_F32, got, sizeof got) == CK_OK);
    CHECK(got[0] == -1.5f && got[1] == 0.25f && got[2] == 8 && got[3] == 1e30f);
    {
        uint16_t h[4]; /* a cast on the way */
        CHECK(ck_model_read(m, i, 1, 2, CK_DT_F16, h, sizeof h) == CK_OK);
        CHECK(h[0] == 0x3400 && h[1] == 0x4800);
    }
    if (windowed) CHECK(ck_model_data(m, i) == NULL);
    CHECK(ck_model_find(m, "head", &i) == CK_OK);
    CHECK(ck_model_read(m, i, 0, 4, CK_DT_KEEP, got, sizeof got) == CK_OK);
    CHECK(got[0] == 1 && got[3] == 4);
    {
        /* convert the tensors either side of the hole */
        const char *inc[] = {"head", "far", NULL};
        ck_convert_opts o;
        ck_model *back = NULL;
        char out[600];
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

    if (windowed) { /* a pickled file this large: one line, nothing read whole */
        int fd;
        tfs_join(zpath, sizeof zpath, dir, "big.pt");
        fd = open(zpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        /* a legacy torch.save stream: its pickles are spread through the file */
        CHECK(fd >= 0 && write(fd, cki_torch_legacy_magic, 14) == 14 &&
              ftruncate(fd, (off_t)(HOLE)) == 0);
        if (fd >= 0) close(fd);
        m = NULL;
        CHECK(ck_model_open(ctx, zpath, NULL, &m) == CK_EUNSUPPORTED && m == NULL);
        CHECK(strstr(ck_errmsg(ctx), "use the ckptkit command") != NULL);
    }
    ck_ctx_free(ctx);
    tfs_rmtree(dir);
}
