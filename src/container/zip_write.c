/*
 * zip_write.c -- the aligned zip writer (see zip_write.h): stored entries,
 * and deflated ones whose compressed size and CRC are patched in at the end.
 *
 * Layout written (PKWARE APPNOTE 6.3; integers little-endian):
 *
 *   local header, per entry, at OFF:
 *     [0,4) 50 4b 03 04   [4,6) version needed: 20, or 45 with zip64
 *     [6,8) flags 0x0800 (UTF-8 name)   [8,10) method 0 (stored) or 8 (deflate)
 *     [10,14) DOS time, date: 0         [14,18) CRC-32 (0 until patched)
 *     [18,22) compressed size [22,26) size: 0xffffffff when zip64
 *     [26,28) name length  [28,30) extra length  [30,..) name, extra:
 *       zip64 (only when size >= 0xffffffff): 01 00, 16, size u64, size u64
 *       "FB" 46 42, n, n bytes of 'Z' so the data starts at a multiple of 64
 *   data (SIZE bytes), straight after.
 *
 *   central directory header, per entry (46 bytes + name + extra):
 *     50 4b 01 02, made by 45, needed, flags, method, time, date, CRC,
 *     sizes, name length, extra length, comment length 0, disk 0, internal
 *     attributes 0, external attributes 0, local header offset; extra: a
 *     zip64 field (01 00) holding, in this order, the size, the compressed
 *     size and the offset -- each only when its 32-bit field is 0xffffffff.
 *
 *   zip64 EOCD record (56 bytes, always): 50 4b 06 06, 44, made by 45,
 *     needed 45, disk 0, directory disk 0, entries on disk u64, entries u64,
 *     directory size u64, directory offset u64.
 *   zip64 EOCD locator (20 bytes): 50 4b 06 07, disk 0, record offset u64,
 *     disks 1.
 *   EOCD (22 bytes): 50 4b 05 06, disk 0, directory disk 0, entry counts
 *     (0xffff when >= 0xffff), directory size and offset (0xffffffff when
 *     they do not fit), comment length 0.
 *
 * A 32-bit field holds 0xffffffff exactly when the value is >= 0xffffffff,
 * as miniz (torch's zip library) decides. Hand-written: zlib has no zip
 * writer and the FB alignment padding is torch's own convention.
 */
#include "zip_write.h"


#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR 0x07064b50u
#define SIG_EOCD 0x06054b50u
#define FLAG_UTF8 0x0800u
#define VER_PLAIN 20u
#define VER_ZIP64 45u
#define MAX32 0xffffffffu
#define MAX16 0xffffu

void cki_zipw_init(cki_zipw *z, ck_ctx *ctx, cki_sink *sink)
{
    memset(z, 0, sizeof *z);
    z->ctx = ctx;
    z->sink = sink;
    cki_arena_init(&z->names, ctx);
}

void cki_zipw_free(cki_zipw *z)
{
    cki_free(z->ctx, z->ents);
    cki_arena_free(&z->names);
    z->ents = NULL;
    z->count = z->cap = 0;
}

static const char *out_path(const cki_zipw *z)
{
    return z->sink ? cki_sink_path(z->sink) : "zip";
}

static int local_zip64(uint64_t size)
{
    return size >= MAX32;
}

/* The most bytes deflate can turn SIZE bytes into (zlib's compressBound). */
static uint64_t deflate_bound(uint64_t size)
{
    return size + (size >> 12) + (size >> 14) + (size >> 25) + 13;
}

uint64_t cki_zipw_header_len(uint64_t off, size_t name_len, uint64_t size)
{
    uint64_t fixed = 30 + (uint64_t)name_len + (local_zip64(size) ? 20 : 0) + 4;
    uint64_t rem = (off + fixed) % CKI_ZIPW_ALIGN;
    return fixed + (rem ? CKI_ZIPW_ALIGN - rem : 0);
}

static ck_status check_name(cki_zipw *z, const char *name, size_t *len)
{
    size_t n = strlen(name);
    if (n == 0 || n > MAX16)
        return cki_fail(z->ctx, CK_EARG, "%s: zip member name of %zu bytes (1 to %u allowed)",
                        out_path(z), n, MAX16);
    if (!cki_utf8_valid((const uint8_t *)name, n))
        return cki_fail(z->ctx, CK_EARG, "%s: zip member name '%s' is not valid utf-8",
                        out_path(z), name);
    *len = n;
    return CK_OK;
}

/* Records a new entry and writes its local header with CRC. */
static ck_status start_entry(cki_zipw *z, const char *name, uint64_t size, uint32_t crc,
                             int patch, int method)
{
    uint8_t h[30 + 20 + 4 + CKI_ZIPW_ALIGN];
    uint8_t *x = h + 30;
    cki_zipw_entry *e;
    size_t nl = 0, xl;
    uint64_t off, hl;
    int z64 = local_zip64(method ? deflate_bound(size) : size);
    ck_status st;

    if (z->open || z->finished)
        return cki_fail(z->ctx, CK_EARG, "%s: zip member '%s' started while %s", out_path(z),
                        name, z->open ? "another is open" : "the archive is finished");
    if ((st = check_name(z, name, &nl))) return st;
    if (z->count == z->cap) {
        size_t ncap = z->cap ? z->cap * 2 : 64;
        cki_zipw_entry *ne = cki_realloc(z->ctx, z->ents, ncap * sizeof *ne);
        if (!ne) return CK_ENOMEM;
        z->ents = ne;
        z->cap = ncap;
    }
    off = cki_sink_pos(z->sink);
    hl = cki_zipw_header_len(off, nl, z64 ? MAX32 : 0);
    xl = (size_t)(hl - 30 - nl);

    cki_st_le32(h, SIG_LOCAL);
    cki_st_le16(h + 4, (uint16_t)(z64 ? VER_ZIP64 : VER_PLAIN));
    cki_st_le16(h + 6, FLAG_UTF8);
    cki_st_le16(h + 8, (uint16_t)method);
    cki_st_le16(h + 10, 0);
    cki_st_le16(h + 12, 0);
    cki_st_le32(h + 14, crc);
    cki_st_le32(h + 18, z64 ? MAX32 : method ? 0 : (uint32_t)size); /* deflated: patched */
    cki_st_le32(h + 22, z64 ? MAX32 : (uint32_t)size);
    cki_st_le16(h + 26, (uint16_t)nl);
    cki_st_le16(h + 28, (uint16_t)xl);
    if (z64) {
        cki_st_le16(x, 0x0001);
        cki_st_le16(x + 2, 16);
        cki_st_le64(x + 4, size);
        cki_st_le64(x + 12, method ? 0 : size);
        x += 20;
    }
    x[0] = 'F';
    x[1] = 'B';
    cki_st_le16(x + 2, (uint16_t)(xl - (z64 ? 20 : 0) - 4));
    memset(x + 4, 'Z', xl - (z64 ? 20 : 0) - 4);

    e = &z->ents[z->count];
    e->name = cki_arena_strndup(&z->names, name, nl);
    if (!e->name) return CK_ENOMEM;
    e->name_len = (uint16_t)nl;
    e->patch_crc = (uint8_t)patch;
    e->method = (uint8_t)method;
    e->local_z64 = (uint8_t)z64;
    e->crc = crc;
    e->off = off;
    e->size = size;
    e->csize = size;

    if ((st = cki_sink_write(z->sink, h, 30))) return st;
    if ((st = cki_sink_write(z->sink, name, nl))) return st;
    if ((st = cki_sink_write(z->sink, h + 30, xl))) return st;
    z->count++;
    z->data_start = off + hl;
    return CK_OK;
}

ck_status cki_zipw_begin(cki_zipw *z, const char *name, uint64_t size)
{
    ck_status st = start_entry(z, name, size, 0, 1, 0);
    if (!st) z->open = 1;
    return st;
}

ck_status cki_zipw_begin_deflated(cki_zipw *z, const char *name, uint64_t size)
{
    ck_status st = start_entry(z, name, size, 0, 1, 8);
    if (!st) z->open = 1;
    return st;
}

ck_status cki_zipw_end_deflated(cki_zipw *z, uint32_t crc, uint64_t csize)
{
    cki_zipw_entry *e;
    uint64_t wrote;
    if (!z->open || !z->ents[z->count - 1].method)
        return cki_fail(z->ctx, CK_EARG, "%s: no deflated zip member is open", out_path(z));
    z->open = 0;
    e = &z->ents[z->count - 1];
    wrote = cki_sink_pos(z->sink) - z->data_start;
    if (wrote != csize || (!e->local_z64 && csize >= MAX32))
        return cki_fail(z->ctx, CK_EARG,
                        "%s: zip member '%s': %llu compressed bytes written, %llu declared",
                        out_path(z), e->name, (unsigned long long)wrote,
                        (unsigned long long)csize);
    e->crc = crc;
    e->csize = csize;
    return CK_OK;
}

ck_status cki_zipw_end(cki_zipw *z, uint32_t crc)
{
    cki_zipw_entry *e;
    uint64_t wrote;
    if (!z->open || z->ents[z->count - 1].method)
        return cki_fail(z->ctx, CK_EARG, "%s: zip member ended but no stored one is open",
                        out_path(z));
    z->open = 0;
    e = &z->ents[z->count - 1];
    wrote = cki_sink_pos(z->sink) - z->data_start;
    if (wrote != e->size)
        return cki_fail(z->ctx, CK_EARG, "%s: zip member '%s': %llu bytes written, %llu declared",
                        out_path(z), e->name, (unsigned long long)wrote,
                        (unsigned long long)e->size);
    e->crc = crc;
    return CK_OK;
}

ck_status cki_zipw_add(cki_zipw *z, const char *name, const void *data, size_t len)
{
    ck_status st = start_entry(z, name, len, cki_crc32(0, data, len), 0, 0);
    if (st) return st;
    return cki_sink_write(z->sink, data, len);
}

static ck_status write_central(cki_zipw *z, const cki_zipw_entry *e)
{
    uint8_t h[46 + 28];
    uint8_t *x = h + 46;
    uint64_t csize = e->method ? e->csize : e->size; /* stored: one size */
    int z64_local = e->method ? e->local_z64 : local_zip64(e->size);
    int big_size = e->size >= MAX32, big_csize = csize >= MAX32, big_off = e->off >= MAX32;
    size_t xl = 0;
    ck_status st;

    if (big_size || big_csize || big_off) {
        size_t n = (big_size ? 8 : 0) + (big_csize ? 8 : 0) + (big_off ? 8 : 0);
        cki_st_le16(x, 0x0001);
        cki_st_le16(x + 2, (uint16_t)n);
        xl = 4;
        if (big_size) {
            cki_st_le64(x + xl, e->size);
            xl += 8;
        }
        if (big_csize) {
            cki_st_le64(x + xl, csize);
            xl += 8;
        }
        if (big_off) {
            cki_st_le64(x + xl, e->off);
            xl += 8;
        }
    }
    cki_st_le32(h, SIG_CENTRAL);
    cki_st_le16(h + 4, VER_ZIP64);
    cki_st_le16(h + 6, (uint16_t)(z64_local || big_off ? VER_ZIP64 : VER_PLAIN));
    cki_st_le16(h + 8, FLAG_UTF8);
    cki_st_le16(h + 10, e->method);
    cki_st_le16(h + 12, 0);
    cki_st_le16(h + 14, 0);
    cki_st_le32(h + 16, e->crc);
    cki_st_le32(h + 20, big_csize ? MAX32 : (uint32_t)csize);
    cki_st_le32(h + 24, big_size ? MAX32 : (uint32_t)e->size);
    cki_st_le16(h + 28, e->name_len);
    cki_st_le16(h + 30, (uint16_t)xl);
    cki_st_le16(h + 32, 0);
    cki_st_le16(h + 34, 0);
    cki_st_le16(h + 36, 0);
    cki_st_le32(h + 38, 0);
    cki_st_le32(h + 42, big_off ? MAX32 : (uint32_t)e->off);
    if ((st = cki_sink_write(z->sink, h, 46))) return st;
    if ((st = cki_sink_write(z->sink, e->name, e->name_len))) return st;
    return cki_sink_write(z->sink, x, xl);
}

ck_status cki_zipw_finish(cki_zipw *z)
{
    uint8_t r[56 + 20 + 22];
    uint8_t *loc = r + 56, *eocd = r + 76;
    uint64_t cd_off, cd_size, rec_off, n = z->count;
    ck_status st;

    if (z->open || z->finished)
        return cki_fail(z->ctx, CK_EARG, "%s: zip archive finished %s", out_path(z),
                        z->open ? "with a member still open" : "twice");
    z->finished = 1;
    cd_off = cki_sink_pos(z->sink);
    for (size_t i = 0; i < z->count; i++)
        if ((st = write_central(z, &z->ents[i]))) return st;
    rec_off = cki_sink_pos(z->sink);
    cd_size = rec_off - cd_off;

    cki_st_le32(r, SIG_EOCD64);
    cki_st_le64(r + 4, 44);
    cki_st_le16(r + 12, VER_ZIP64);
    cki_st_le16(r + 14, VER_ZIP64);
    cki_st_le32(r + 16, 0);
    cki_st_le32(r + 20, 0);
    cki_st_le64(r + 24, n);
    cki_st_le64(r + 32, n);
    cki_st_le64(r + 40, cd_size);
    cki_st_le64(r + 48, cd_off);

    cki_st_le32(loc, SIG_LOCATOR);
    cki_st_le32(loc + 4, 0);
    cki_st_le64(loc + 8, rec_off);
    cki_st_le32(loc + 16, 1);

    cki_st_le32(eocd, SIG_EOCD);
    cki_st_le16(eocd + 4, 0);
    cki_st_le16(eocd + 6, 0);
    cki_st_le16(eocd + 8, (uint16_t)(n >= MAX16 ? MAX16 : n));
    cki_st_le16(eocd + 10, (uint16_t)(n >= MAX16 ? MAX16 : n));
    cki_st_le32(eocd + 12, cd_size >= MAX32 ? MAX32 : (uint32_t)cd_size);
    cki_st_le32(eocd + 16, cd_off >= MAX32 ? MAX32 : (uint32_t)cd_off);
    cki_st_le16(eocd + 20, 0);
    if ((st = cki_sink_write(z->sink, r, sizeof r))) return st;

    for (size_t i = 0; i < z->count; i++) {
        const cki_zipw_entry *e = &z->ents[i];
        uint8_t c[8];
        if (e->method) { /* the compressed size, in the header or its zip64 field */
            if (e->local_z64) {
                cki_st_le64(c, e->csize);
                st = cki_sink_pwrite(z->sink, e->off + 30 + e->name_len + 12, c, 8);
            } else {
                cki_st_le32(c, (uint32_t)e->csize);
                st = cki_sink_pwrite(z->sink, e->off + 18, c, 4);
            }
            if (st) return st;
        }
        if (!e->patch_crc || !e->crc) continue;
        cki_st_le32(c, e->crc);
        if ((st = cki_sink_pwrite(z->sink, e->off + 14, c, 4))) return st;
    }
    return CK_OK;
}
