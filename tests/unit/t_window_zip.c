/*
 * t_window_zip.c -- a zip64 archive larger than CKI_SOURCE_WHOLE_MAX,
 * sparse, laid out like a torch.save file: small records at the head, a
 * hole, then a stored record and a deflated record past the 4 GiB offset,
 * and the zip64 directory at the tail. Mapped (native builds) it is an
 * ordinary file; over the web source (make unit-websrc) cki_zip_open_source
 * must find the same directory from the tail and give the same bytes, with
 * the same checks (a bad CRC past the window is still caught).
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "container/zip.h"
#include "ckptkit.h"
#include "io/source.h"
#include "t.h"
#include "t_fs.h"

#define Z_HOLE (CKI_SOURCE_WHOLE_MAX + (3ull << 30))

typedef struct zrec {
    const char *name;
    uint16_t method;
    const uint8_t *data; /* stored bytes (deflated already for method 8) */
    uint64_t csize, usize;
    uint32_t crc;
    uint64_t off; /* of the local header */
} zrec;

static void w16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void w32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void w64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }

/* Writes the local header of R at R->off and its data (a hole when DATA is
 * NULL); returns the offset after it. */
static uint64_t put_local(int fd, const zrec *r)
{
    uint8_t h[30 + 64];
    size_t n = strlen(r->name);
    memset(h, 0, sizeof h);
    w32(h, 0x04034b50u);
    w16(h + 4, 45);
    w16(h + 8, r->method);
    w16(h + 26, (uint16_t)n);
    memcpy(h + 30, r->name, n);
    if (pwrite(fd, h, 30 + n, (off_t)r->off) != (ssize_t)(30 + n)) return 0;
    if (r->data && pwrite(fd, r->data, (size_t)r->csize, (off_t)(r->off + 30 + n)) != (ssize_t)r->csize)
        return 0;
    return r->off + 30 + n + r->csize;
}

/* Central entries (every size and offset in the zip64 extra), the zip64 end
 * record, its locator and the EOCD, at AT. Returns the file's length. */
static uint64_t put_dir(int fd, const zrec *r, int n, uint64_t at)
{
    uint8_t buf[4096], *p = buf;
    uint64_t cd = at, cd_size;
    for (int i = 0; i < n; i++) {
        size_t nl = strlen(r[i].name);
        memset(p, 0, 46);
        w32(p, 0x02014b50u);
        w16(p + 4, 45);
        w16(p + 6, 45);
        w16(p + 10, r[i].method);
        w32(p + 16, r[i].crc);
        w32(p + 20, 0xFFFFFFFFu);
        w32(p + 24, 0xFFFFFFFFu);
        w16(p + 28, (uint16_t)nl);
        w16(p + 30, 28);
        w32(p + 42, 0xFFFFFFFFu);
        memcpy(p + 46, r[i].name, nl);
        p += 46 + nl;
        w16(p, 1);
        w16(p + 2, 24);
        w64(p + 4, r[i].usize);
        w64(p + 12, r[i].csize);
        w64(p + 20, r[i].off);
        p += 28;
    }
    cd_size = (uint64_t)(p - buf);
    memset(p, 0, 56 + 20 + 22);
    w32(p, 0x06064b50u);
    w64(p + 4, 44);
    w16(p + 12, 45);
    w16(p + 14, 45);
    w64(p + 24, (uint64_t)n);
    w64(p + 32, (uint64_t)n);
    w64(p + 40, cd_size);
    w64(p + 48, cd);
    w32(p + 56, 0x07064b50u);
    w64(p + 56 + 8, cd + cd_size);
    w32(p + 56 + 16, 1);
    w32(p + 76, 0x06054b50u);
    w16(p + 76 + 8, 0xFFFF);
    w16(p + 76 + 10, 0xFFFF);
    w32(p + 76 + 12, 0xFFFFFFFFu);
    w32(p + 76 + 16, 0xFFFFFFFFu);
    p += 98;
    if (pwrite(fd, buf, (size_t)(p - buf), (off_t)at) != p - buf) return 0;
    return at + (uint64_t)(p - buf);
}

TEST(zip_over_a_window_of_a_large_sparse_archive)
{
    char dir[512], path[600];
    static uint8_t pkl[3000], far[4096], big[200000], packed[200000];
    uLongf plen = sizeof packed;
    zrec r[5];
    uint64_t at;
    int fd;
    ck_ctx *ctx = ck_ctx_new();
    cki_source *src = NULL;
    cki_zip z;
    const cki_zip_entry *e;
    const uint8_t *data;
    uint64_t len;
    uint8_t *owned;
    memset(&z, 0, sizeof z);
    for (size_t i = 0; i < sizeof pkl; i++) pkl[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof far; i++) far[i] = (uint8_t)(i * 13 + 1);
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)((i / 100) * 3);
    {   /* raw deflate, as zip stores it */
        z_stream zs;
        memset(&zs, 0, sizeof zs);
        CHECK(deflateInit2(&zs, 6, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
        zs.next_in = big;
        zs.avail_in = sizeof big;
        zs.next_out = packed;
        zs.avail_out = sizeof packed;
        CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
        plen = zs.total_out;
        deflateEnd(&zs);
    }
    memset(r, 0, sizeof r);
    r[0] = (zrec){"archive/data.pkl", 0, pkl, sizeof pkl, sizeof pkl, 0, 0};
    r[1] = (zrec){"archive/byteorder", 0, (const uint8_t *)"little", 6, 6, 0, 0};
    r[2] = (zrec){"archive/data/0", 0, NULL, Z_HOLE, Z_HOLE, 0, 0}; /* CRC 0: not computed */
    r[3] = (zrec){"archive/data/1", 0, far, sizeof far, sizeof far, 0, 0};
    r[4] = (zrec){"archive/data/2", 8, packed, plen, sizeof big, 0, 0};
    r[0].crc = (uint32_t)crc32(0, pkl, sizeof pkl);
    r[1].crc = (uint32_t)crc32(0, (const Bytef *)"little", 6);
    r[3].crc = (uint32_t)crc32(0, far, sizeof far);
    r[4].crc = (uint32_t)crc32(0, big, sizeof big);
    if (tfs_mkdtemp(dir, sizeof dir)) { CHECK(0); return; }
    tfs_join(path, sizeof path, dir, "big.pt");
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    at = 0;
    for (int i = 0; i < 5 && fd >= 0; i++) {
        r[i].off = at;
        at = put_local(fd, &r[i]);
        CHECK(at != 0);
    }
    CHECK(r[3].off > (4ull << 30));
    if (fd >= 0) {
        CHECK(put_dir(fd, r, 5, at) > at);
        close(fd);
    }

    CHECK(cki_source_open(ctx, path, &src) == CK_OK);
    if (!src) { ck_ctx_free(ctx); tfs_rmtree(dir); return; }
    int windowed = src->view_len < src->len;
    CHECK(cki_zip_open_source(ctx, src, &z) == CK_OK);
    CHECK(z.count == 5 && z.zip64);
    e = cki_zip_find(&z, "archive/data.pkl", 16);
    CHECK(e && cki_zip_in_view(&z, e));
    CHECK(e && cki_zip_read(&z, e, 1, &data, &len, &owned) == CK_OK && len == sizeof pkl &&
          !memcmp(data, pkl, sizeof pkl) && owned == NULL);
    e = cki_zip_find(&z, "archive/data/1", 14);
    CHECK(e && e->data_off > (4ull << 30));
    CHECK(e && cki_zip_in_view(&z, e) == !windowed);
    owned = NULL;
    CHECK(e && cki_zip_read(&z, e, 1, &data, &len, &owned) == CK_OK && len == sizeof far &&
          !memcmp(data, far, sizeof far));
    CHECK(windowed ? owned != NULL : owned == NULL);
    if (owned) cki_free(ctx, owned);
    {
        uint8_t head[10];
        size_t got = 0;
        CHECK(e && cki_zip_peek(&z, e, head, sizeof head, &got) == CK_OK && got == 10 &&
              !memcmp(head, far, 10));
    }
    e = cki_zip_find(&z, "archive/data/2", 14); /* deflated, past 4 GiB */
    owned = NULL;
    CHECK(e && cki_zip_read(&z, e, 1, &data, &len, &owned) == CK_OK && len == sizeof big &&
          !memcmp(data, big, sizeof big));
    if (owned) cki_free(ctx, owned);
    cki_zip_close(&z);
    cki_source_close(ctx, src);

    /* a flipped byte past 4 GiB: the stored record's CRC check still fails */
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, "\xff", 1, (off_t)(r[3].off + 30 + 14 + 5)) == 1);
    if (fd >= 0) close(fd);
    src = NULL;
    CHECK(cki_source_open(ctx, path, &src) == CK_OK);
    memset(&z, 0, sizeof z);
    CHECK(src && cki_zip_open_source(ctx, src, &z) == CK_OK);
    e = cki_zip_find(&z, "archive/data/1", 14);
    owned = NULL;
    CHECK(e && cki_zip_read(&z, e, 1, &data, &len, &owned) == CK_EFORMAT && owned == NULL);
    CHECK(strstr(ck_errmsg(ctx), "CRC-32") != NULL);
    cki_zip_close(&z);
    cki_source_close(ctx, src);
    ck_ctx_free(ctx);
    tfs_rmtree(dir);
}

/* ---- a torch.save archive over the window ------------------------------------ */

/* Appends a BINUNICODE string. */
static uint8_t *pk_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    *p++ = 'X';
    w32(p, (uint32_t)n);
    memcpy(p + 4, s, n);
    return p + 4 + n;
}

static uint8_t *pk_raw(uint8_t *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* One dict item NAME: _rebuild_tensor_v2 of a 4-element FloatStorage KEY. */
static uint8_t *pk_tensor(uint8_t *p, const char *name, const char *key)
{
    p = pk_str(p, name);
    p = pk_raw(p, "ctorch._utils\n_rebuild_tensor_v2\n(");
    p = pk_raw(p, "(");
    p = pk_str(p, "storage");
    p = pk_raw(p, "ctorch\nFloatStorage\n");
    p = pk_str(p, key);
    p = pk_str(p, "cpu");
    p = pk_raw(p, "K\x04tQ");                  /* numel 4, persistent id */
    p = pk_raw(p, "K");
    *p++ = 0;                                 /* storage offset 0 */
    p = pk_raw(p, "K\x04\x85K\x01\x85\x89");  /* size (4,), stride (1,), False */
    p = pk_raw(p, "ccollections\nOrderedDict\n)RtR");
    return p;
}

/* Reads a whole small file into a malloc'd buffer. */
static uint8_t *slurp(const char *path, size_t *n)
{
    uint8_t *b = NULL;
    off_t end;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    end = lseek(fd, 0, SEEK_END);
    if (end > 0 && end < (1 << 24) && (b = malloc((size_t)end)) &&
        pread(fd, b, (size_t)end, 0) != end) {
        free(b);
        b = NULL;
    }
    close(fd);
    *n = b ? (size_t)end : 0;
    return b;
}

TEST(torch_zip_over_a_window_of_a_large_sparse_file)
{
    char dir[512], path[600], out[600];
    static uint8_t pkl[1024];
    const float head[4] = {1, 2, 3, 4}, far[4] = {-1.5f, 0.25f, 8, 1e30f};
    uint8_t *p = pkl;
    zrec r[6];
    uint64_t at = 0;
    int fd;
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL, *back = NULL;
    cki_source *src = NULL;
    float got[4];
    size_t i;
    p = pk_raw(p, "\x80\x02}(");
    p = pk_tensor(p, "head", "0");
    p = pk_tensor(p, "far", "1");
    p = pk_raw(p, "u.");
    memset(r, 0, sizeof r);
    r[0] = (zrec){"archive/data.pkl", 0, pkl, (uint64_t)(p - pkl), (uint64_t)(p - pkl), 0, 0};
    r[1] = (zrec){"archive/byteorder", 0, (const uint8_t *)"little", 6, 6, 0, 0};
    r[2] = (zrec){"archive/data/0", 0, (const uint8_t *)head, 16, 16, 0, 0};
    r[3] = (zrec){"archive/data/9", 0, NULL, Z_HOLE, Z_HOLE, 0, 0}; /* unused, CRC 0 */
    r[4] = (zrec){"archive/data/1", 0, (const uint8_t *)far, 16, 16, 0, 0};
    r[5] = (zrec){"archive/version", 0, (const uint8_t *)"3\n", 2, 2, 0, 0};
    for (int k = 0; k < 6; k++)
        if (r[k].data) r[k].crc = (uint32_t)crc32(0, r[k].data, (uInt)r[k].usize);
    if (tfs_mkdtemp(dir, sizeof dir)) { CHECK(0); return; }
    tfs_join(path, sizeof path, dir, "big.ckpt");
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    for (int k = 0; k < 6 && fd >= 0; k++) {
        r[k].off = at;
        at = put_local(fd, &r[k]);
        CHECK(at != 0);
    }
    if (fd >= 0) {
        CHECK(put_dir(fd, r, 6, at) > at);
        close(fd);
    }
    CHECK(r[4].off > (4ull << 30));
    CHECK(cki_source_open(ctx, path, &src) == CK_OK);
    int windowed = src && src->view_len < src->len;
    cki_source_close(ctx, src);

    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_OK);
    if (!m) { CHECK(0); ck_ctx_free(ctx); tfs_rmtree(dir); return; }
    CHECK(strcmp(ck_model_format(m), "torch-zip") == 0);
    CHECK(ck_model_tensor_count(m) == 2);
    CHECK(ck_model_find(m, "far", &i) == CK_OK);
    CHECK(ck_model_read(m, i, 0, 4, CK_DT_F32, got, sizeof got) == CK_OK);
    CHECK(got[0] == -1.5f && got[1] == 0.25f && got[2] == 8 && got[3] == 1e30f);
    if (windowed) CHECK(ck_model_data(m, i) == NULL);
    CHECK(ck_model_find(m, "head", &i) == CK_OK);
    CHECK(ck_model_read(m, i, 0, 4, CK_DT_KEEP, got, sizeof got) == CK_OK);
    CHECK(got[0] == 1 && got[3] == 4);
    {
        ck_convert_opts o;
        memset(&o, 0, sizeof o);
        o.dtype = CK_DT_KEEP;
        tfs_join(out, sizeof out, dir, "out.safetensors");
        CHECK(ck_convert(ctx, m, out, &o, NULL) == CK_OK);
        CHECK(ck_model_open(ctx, out, NULL, &back) == CK_OK);
        CHECK(back && ck_model_find(back, "far", &i) == CK_OK &&
              ck_model_read(back, i, 0, 4, CK_DT_F32, got, sizeof got) == CK_OK &&
              got[0] == -1.5f && got[3] == 1e30f);
        ck_model_close(back);
        back = NULL;
    }
    {
        /* the same archive without the hole (small: read whole) converts to
         * the same bytes */
        char small[600], out2[600];
        uint8_t *a, *b;
        size_t na = 0, nb = 0;
        zrec q[5] = {r[0], r[1], r[2], r[4], r[5]};
        ck_model *sm = NULL;
        ck_convert_opts o;
        tfs_join(small, sizeof small, dir, "small.ckpt");
        fd = open(small, O_RDWR | O_CREAT | O_TRUNC, 0644);
        at = 0;
        for (int k = 0; k < 5 && fd >= 0; k++) {
            q[k].off = at;
            at = put_local(fd, &q[k]);
        }
        if (fd >= 0) {
            CHECK(put_dir(fd, q, 5, at) > at);
            close(fd);
        }
        memset(&o, 0, sizeof o);
        o.dtype = CK_DT_KEEP;
        tfs_join(out2, sizeof out2, dir, "small.safetensors");
        CHECK(ck_model_open(ctx, small, NULL, &sm) == CK_OK);
        CHECK(sm && ck_convert(ctx, sm, out2, &o, NULL) == CK_OK);
        ck_model_close(sm);
        a = slurp(out, &na);
        b = slurp(out2, &nb);
        CHECK(a && b && na == nb && na > 32 && !memcmp(a, b, na));
        free(a);
        free(b);
    }
    ck_model_close(m);

    /* a flipped byte of 'far' past 4 GiB: the conversion's CRC check fails */
    fd = open(path, O_RDWR);
    CHECK(fd >= 0 && pwrite(fd, "\x7f", 1, (off_t)(r[4].off + 30 + 14 + 2)) == 1);
    if (fd >= 0) close(fd);
    m = NULL;
    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_OK);
    if (m) {
        ck_convert_opts o;
        memset(&o, 0, sizeof o);
        o.dtype = CK_DT_KEEP;
        tfs_join(out, sizeof out, dir, "bad.safetensors");
        CHECK(ck_convert(ctx, m, out, &o, NULL) == CK_EFORMAT);
        CHECK(strstr(ck_errmsg(ctx), "CRC") != NULL);
        ck_model_close(m);
    }
    ck_ctx_free(ctx);
    tfs_rmtree(dir);
}

/* A dangerous pickle in an extra record past 4 GiB of a windowed zip: the
 * scan reads it through the windowed zip reader (never the "clean" of a
 * data.pkl-only check), and the loader refuses the file. */
TEST(torch_zip_window_scans_every_record)
{
    char dir[512], path[600];
    static uint8_t pkl[512];
    static const uint8_t evil[] = "\x80\x02" "cos\nsystem\n" "X\x04\x00\x00\x00true" "\x85R.";
    const float head[4] = {1, 2, 3, 4};
    uint8_t *p = pkl;
    zrec r[5];
    uint64_t at = 0;
    int fd;
    ck_verdict worst = CK_VERDICT_ALLOWED;
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    p = pk_raw(p, "\x80\x02}(");
    p = pk_tensor(p, "head", "0");
    p = pk_raw(p, "u.");
    memset(r, 0, sizeof r);
    r[0] = (zrec){"archive/data.pkl", 0, pkl, (uint64_t)(p - pkl), (uint64_t)(p - pkl), 0, 0};
    r[1] = (zrec){"archive/data/0", 0, (const uint8_t *)head, 16, 16, 0, 0};
    r[2] = (zrec){"archive/data/9", 0, NULL, Z_HOLE, Z_HOLE, 0, 0};
    r[3] = (zrec){"archive/extra.pkl", 0, evil, sizeof evil - 1, sizeof evil - 1, 0, 0};
    r[4] = (zrec){"archive/version", 0, (const uint8_t *)"3\n", 2, 2, 0, 0};
    for (int k = 0; k < 5; k++)
        if (r[k].data) r[k].crc = (uint32_t)crc32(0, r[k].data, (uInt)r[k].usize);
    if (tfs_mkdtemp(dir, sizeof dir)) { CHECK(0); ck_ctx_free(ctx); return; }
    tfs_join(path, sizeof path, dir, "evil.ckpt");
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    for (int k = 0; k < 5 && fd >= 0; k++) {
        r[k].off = at;
        at = put_local(fd, &r[k]);
        CHECK(at != 0);
    }
    if (fd >= 0) {
        CHECK(put_dir(fd, r, 5, at) > at);
        close(fd);
    }
    CHECK(r[3].off > (4ull << 30));
    CHECK(ck_scan(ctx, path, NULL, NULL, &worst) == CK_OK);
    CHECK(worst == CK_VERDICT_DANGEROUS);
    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_EUNSAFE);
    CHECK(strstr(ck_errmsg(ctx), "os.system") != NULL);
    ck_model_close(m);
    ck_ctx_free(ctx);
    tfs_rmtree(dir);
}
