/*
 * t_zip_write.c -- the store-only zip writer: layout, 64-byte alignment with
 * "FB" padding, CRC patching, zip64 records and extras, entry counts past
 * 65535, and misuse errors. Archives are parsed back with t_zipparse.h.
 */
#include <zlib.h>

#include "container/zip_write.h"
#include "t.h"
#include "t_fs.h"
#include "t_zipparse.h"

static uint32_t crc(const void *p, size_t n)
{
    return (uint32_t)crc32(0, (const Bytef *)p, (uInt)n);
}

TEST(zip_write_layout)
{
    ck_ctx *ctx = ck_ctx_new();
    char dir[256], path[512];
    uint8_t pkl[100], big[1000];
    cki_sink *s = NULL;
    cki_zipw z;
    tz_zip r;
    size_t len = 0;
    uint8_t *f;
    uint32_t c = 0;

    for (size_t i = 0; i < sizeof pkl; i++) pkl[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)(i * 13 + 1);
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(path, sizeof path, dir, "a.zip");
    CHECK(cki_sink_open(ctx, path, 0, NULL, 0, &s) == CK_OK);
    cki_zipw_init(&z, ctx, s);
    CHECK(cki_zipw_add(&z, "a/data.pkl", pkl, sizeof pkl) == CK_OK);
    CHECK(cki_zipw_begin(&z, "a/data/0", sizeof big) == CK_OK);
    for (size_t k = 0; k < sizeof big; k += 250) { /* streamed in pieces */
        c = (uint32_t)crc32(c, big + k, 250);
        CHECK(cki_sink_write(s, big + k, 250) == CK_OK);
    }
    CHECK(cki_zipw_end(&z, c) == CK_OK);
    CHECK(cki_zipw_begin(&z, "a/data/1", 0) == CK_OK);
    CHECK(cki_zipw_end(&z, 0) == CK_OK);
    CHECK(cki_zipw_add(&z, "a/\xc3\xa9", "3\n", 2) == CK_OK);
    CHECK(cki_zipw_finish(&z) == CK_OK);
    cki_zipw_free(&z);
    CHECK(cki_sink_commit(s) == CK_OK);

    f = tfs_read(path, &len);
    CHECK(f != NULL);
    CHECK(f && tz_parse(f, len, &r, 1) == 0);
    CHECK(r.n == 4 && r.has_z64 && r.z64_entries == 4 && r.eocd_entries == 4);
    CHECK(r.eocd_cd_off == r.cd_off && r.eocd_cd_size == r.cd_size);
    for (size_t i = 0; f && i < r.n; i++) {
        const tz_entry *e = &r.e[i];
        CHECK(e->data % 64 == 0);
        CHECK(e->fb && e->fb_all_z && e->fb_len < 64);
        CHECK(e->flags == 0x0800 && e->local_flags == 0x0800);
        CHECK(e->method == 0 && e->time == 0 && e->date == 0);
        CHECK(e->version_needed == 20);
        CHECK(!e->central_z64 && !e->local_z64);
        CHECK(e->local_crc == e->crc && e->local_size == e->size && e->csize == e->size);
        CHECK(e->crc == crc(f + e->data, (size_t)e->size));
    }
    CHECK(strcmp(r.e[0].name, "a/data.pkl") == 0 && r.e[0].off == 0 && r.e[0].data == 64);
    CHECK(r.e[0].size == sizeof pkl && memcmp(f + r.e[0].data, pkl, sizeof pkl) == 0);
    CHECK(strcmp(r.e[1].name, "a/data/0") == 0 && r.e[1].size == sizeof big);
    CHECK(memcmp(f + r.e[1].data, big, sizeof big) == 0 && r.e[1].crc == crc(big, sizeof big));
    CHECK(r.e[2].size == 0 && r.e[2].crc == 0);
    CHECK(strcmp(r.e[3].name, "a/\xc3\xa9") == 0 && memcmp(f + r.e[3].data, "3\n", 2) == 0);
    tz_free(&r);
    free(f);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

/* 70000 entries: the EOCD says 0xffff, the zip64 record the real count. */
TEST(zip_write_many_entries)
{
    ck_ctx *ctx = ck_ctx_new();
    char dir[256], path[512], name[32];
    cki_sink *s = NULL;
    cki_zipw z;
    tz_zip r;
    size_t len = 0, n = 70000;
    uint8_t *f;
    int ok = 1;

    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(path, sizeof path, dir, "many.zip");
    CHECK(cki_sink_open(ctx, path, 0, NULL, 0, &s) == CK_OK);
    cki_zipw_init(&z, ctx, s);
    for (size_t i = 0; ok && i < n; i++) {
        uint8_t b = (uint8_t)i;
        snprintf(name, sizeof name, "m/data/%zu", i);
        ok = cki_zipw_add(&z, name, &b, i % 3 ? 1 : 0) == CK_OK;
    }
    CHECK(ok);
    CHECK(cki_zipw_finish(&z) == CK_OK);
    cki_zipw_free(&z);
    CHECK(cki_sink_commit(s) == CK_OK);
    f = tfs_read(path, &len);
    CHECK(f && tz_parse(f, len, &r, 1) == 0);
    CHECK(r.eocd_entries == 0xffff && r.has_z64 && r.z64_entries == n && r.n == n);
    for (size_t i = 0; f && i < r.n; i++) {
        snprintf(name, sizeof name, "m/data/%zu", i);
        if (strcmp(r.e[i].name, name) != 0 || r.e[i].data % 64 ||
            r.e[i].size != (i % 3 ? 1u : 0u) || (r.e[i].size && f[r.e[i].data] != (uint8_t)i)) {
            ok = 0;
            break;
        }
    }
    CHECK(ok);
    tz_free(&r);
    free(f);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

/* Sizes and offsets of 4 GiB and more get zip64 fields in the central
 * directory, in APPNOTE order, and 0xffffffff in the 32-bit fields. The
 * entry table is edited after writing small entries, so no 4 GiB file is
 * needed (tests/interop/test_zip64.py writes a real one). */
TEST(zip_write_zip64_central_fields)
{
    ck_ctx *ctx = ck_ctx_new();
    char dir[256], path[512];
    cki_sink *s = NULL;
    cki_zipw z;
    tz_zip r;
    size_t len = 0;
    uint8_t *f, *cd;

    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(path, sizeof path, dir, "z64.zip");
    CHECK(cki_sink_open(ctx, path, 0, NULL, 0, &s) == CK_OK);
    cki_zipw_init(&z, ctx, s);
    CHECK(cki_zipw_add(&z, "big", "x", 1) == CK_OK);
    CHECK(cki_zipw_add(&z, "far", "y", 1) == CK_OK);
    CHECK(cki_zipw_add(&z, "both", "z", 1) == CK_OK);
    CHECK(cki_zipw_add(&z, "edge", "w", 1) == CK_OK);
    z.ents[0].size = 5ull << 30;
    z.ents[1].off = 0x100000000ull;
    z.ents[2].size = 0xffffffffull; /* exactly 0xffffffff needs zip64 too */
    z.ents[2].off = 6ull << 30;
    z.ents[3].size = 0xfffffffeull; /* fits */
    CHECK(cki_zipw_finish(&z) == CK_OK);
    cki_zipw_free(&z);
    CHECK(cki_sink_commit(s) == CK_OK);
    f = tfs_read(path, &len);
    CHECK(f && tz_parse(f, len, &r, 0) == 0);
    CHECK(r.n == 4);
    CHECK(r.e[0].central_z64 && r.e[0].size == 5ull << 30 && r.e[0].csize == 5ull << 30);
    CHECK(r.e[0].off == 0 && r.e[0].version_needed == 45);
    CHECK(r.e[1].central_z64 && r.e[1].off == 0x100000000ull && r.e[1].size == 1);
    CHECK(r.e[2].central_z64 && r.e[2].size == 0xffffffffull && r.e[2].off == 6ull << 30);
    CHECK(!r.e[3].central_z64 && r.e[3].size == 0xfffffffeull && r.e[3].version_needed == 20);
    /* raw fields of the first central header: 32-bit sizes hold 0xffffffff, the
     * extra is 01 00, 16 bytes, size, compressed size */
    cd = f + r.cd_off;
    CHECK(cki_ld_le32(cd + 20) == 0xffffffffu && cki_ld_le32(cd + 24) == 0xffffffffu);
    CHECK(cki_ld_le32(cd + 42) == 0 && cki_ld_le16(cd + 30) == 20);
    CHECK(cki_ld_le16(cd + 46 + 3) == 1 && cki_ld_le16(cd + 46 + 3 + 2) == 16);
    tz_free(&r);
    free(f);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(zip_write_header_len)
{
    for (uint64_t off = 0; off < 200; off += 7) {
        for (size_t nl = 1; nl < 150; nl += 13) {
            uint64_t h = cki_zipw_header_len(off, nl, 10);
            uint64_t h64 = cki_zipw_header_len(off, nl, 0xffffffffull);
            CHECK((off + h) % 64 == 0 && h >= 30 + nl + 4 && h < 30 + nl + 4 + 64);
            CHECK((off + h64) % 64 == 0 && h64 >= 30 + nl + 24 && h64 < 30 + nl + 24 + 64);
        }
    }
    CHECK(cki_zipw_header_len(0, 10, 5) == 64); /* torch's "m/data.pkl": 20 'Z' */
}

TEST(zip_write_misuse)
{
    ck_ctx *ctx = ck_ctx_new();
    char dir[256], path[512];
    cki_sink *s = NULL;
    cki_zipw z;

    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(path, sizeof path, dir, "bad.zip");
    CHECK(cki_sink_open(ctx, path, 0, NULL, 0, &s) == CK_OK);
    cki_zipw_init(&z, ctx, s);
    CHECK(cki_zipw_add(&z, "", "x", 1) == CK_EARG);
    CHECK(cki_zipw_add(&z, "bad\xff", "x", 1) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "not valid utf-8") != NULL);
    CHECK(cki_zipw_end(&z, 0) == CK_EARG);
    CHECK(cki_zipw_begin(&z, "short", 10) == CK_OK);
    CHECK(cki_zipw_begin(&z, "other", 1) == CK_EARG);
    CHECK(cki_zipw_finish(&z) == CK_EARG);
    CHECK(cki_sink_write(s, "12345", 5) == CK_OK);
    CHECK(cki_zipw_end(&z, 0) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "zip member 'short': 5 bytes written, 10 declared") != NULL);
    CHECK(cki_zipw_finish(&z) == CK_OK);
    CHECK(cki_zipw_finish(&z) == CK_EARG);
    CHECK(cki_zipw_add(&z, "late", "x", 1) == CK_EARG);
    cki_zipw_free(&z);
    cki_sink_abort(s);
    CHECK(tfs_count_entries(dir) == 0);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}
