/*
 * zip_read.c -- the zip directory reader and member access (see zip.h).
 *
 * Records (all integers little-endian):
 *   EOCD          50 4b 05 06, disk u16, cd disk u16, entries here u16,
 *                 entries u16, cd size u32, cd offset u32, comment len u16,
 *                 comment                                      (22 + comment)
 *   zip64 locator 50 4b 06 07, disk u32, zip64 EOCD offset u64, disks u32 (20),
 *                 immediately before the EOCD
 *   zip64 EOCD    50 4b 06 06, record size u64 (bytes after this field),
 *                 made u16, needed u16, disk u32, cd disk u32, entries here
 *                 u64, entries u64, cd size u64, cd offset u64 (56 + ext)
 *   central entry 50 4b 01 02, made u16, needed u16, flags u16, method u16,
 *                 time u16, date u16, crc u32, csize u32, usize u32, name len
 *                 u16, extra len u16, comment len u16, disk u16, internal
 *                 attrs u16, external attrs u32, local header offset u32,
 *                 name, extra, comment                         (46 + ...)
 *   local header  50 4b 03 04, needed u16, flags u16, method u16, time u16,
 *                 date u16, crc u32, csize u32, usize u32, name len u16,
 *                 extra len u16, name, extra                   (30 + ...)
 *   zip64 extra   id 0x0001: usize u64, csize u64, offset u64, disk u32,
 *                 each present only when the 32-bit field is all ones.
 *
 * Rules enforced, in order: an EOCD whose comment fits in the file (tried
 * from the end backwards); single-disk archives only; the central directory
 * lies between the archive start and the EOCD (or zip64 record) and its byte
 * size is exactly the sum of its entries; entry count within what the
 * directory's size can hold; names without NUL, unique; no encryption flags;
 * every local header inside the file, before the directory, with the same
 * name, method and flags as its central entry; member byte ranges inside the
 * file and disjoint. Reading: STORED sizes agree; DEFLATE output exactly the
 * directory's size, under CK_LIMIT_INFLATE_BYTES and CKI_ZIP_MAX_RATIO; the
 * CRC-32 matches (0 on non-empty data = not computed: warn, skip).
 *
 * Hand-written: general zip libraries extract files; this one must refuse
 * the ambiguous archives scanners get fooled by, map members zero-copy, and
 * count every allocation against the context.
 */
#include <stdlib.h>
#include <zlib.h>

#include "zip.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_Z64_EOCD 0x06064b50u
#define SIG_Z64_LOC 0x07064b50u

#define EOCD_LEN 22u
#define Z64_LOC_LEN 20u
#define Z64_EOCD_LEN 56u
#define CENTRAL_LEN 46u
#define LOCAL_LEN 30u
#define MAX_COMMENT 65535u

/* Compression ratios are only judged on members bigger than this. */
#define RATIO_MIN_BYTES 65536u

int cki_zip_sniff(const uint8_t *p, uint64_t len)
{
    return len >= 4 && p[0] == 'P' && p[1] == 'K' &&
           ((p[2] == 3 && p[3] == 4) || (p[2] == 5 && p[3] == 6));
}

int cki_zip_first_name(const uint8_t *p, uint64_t len, const char **name, size_t *name_len)
{
    size_t n;
    /* local header: signature, ..., name length at 26, extra length at 28,
     * the name at 30 */
    if (len < 30 || p[0] != 'P' || p[1] != 'K' || p[2] != 3 || p[3] != 4) return 0;
    n = (size_t)p[26] | (size_t)p[27] << 8;
    if (n == 0 || n > len - 30) return 0;
    *name = (const char *)p + 30;
    *name_len = n;
    return 1;
}

/* The end records lie in the last TAIL_LEN bytes: the EOCD and its comment,
 * the zip64 locator and the zip64 end record before them. */
#define TAIL_LEN (EOCD_LEN + MAX_COMMENT + Z64_LOC_LEN + Z64_EOCD_LEN)
/* Inflation input read at a time over a web window. */
#define IN_CHUNK (1u << 20)

/* [OFF, OFF+N) of the input when it can be pointed at: always for a mapped
 * file; over a web window when it lies in the view, the tail or the central
 * directory read into memory. NULL otherwise (read it with zcopy). */
static const uint8_t *zp(const cki_zip *z, uint64_t off, uint64_t n)
{
    if (!z->src || !cki_out_of(off, n, z->view)) return z->base + off;
    if (z->tail && off >= z->tail_off && !cki_out_of(off - z->tail_off, n, z->len - z->tail_off))
        return z->tail + (off - z->tail_off);
    return NULL;
}

/* Copies [OFF, OFF+N) of the input, which the caller has checked lies in the
 * file, into BUF. */
static ck_status zcopy(cki_zip *z, uint64_t off, size_t n, uint8_t *buf)
{
    const uint8_t *p = zp(z, off, n);
    if (p) {
        if (n) memcpy(buf, p, n);
        return CK_OK;
    }
    return cki_source_pread(z->ctx, z->src, off, buf, n);
}

int cki_zip_in_view(const cki_zip *z, const cki_zip_entry *e)
{
    return !z->src || !cki_out_of(e->data_off, e->csize, z->view);
}

/* A printable, bounded rendering of a member name for messages. */
static int name_width(size_t n)
{
    return n > 200 ? 200 : (int)n;
}

/* A failed check ST (its message just set by cki_fail): fatal unless the
 * zip was opened leniently, where the first one is kept and the open goes on. */
static ck_status tolerate(cki_zip *z, ck_status st)
{
    if (!z->lenient || st == CK_ENOMEM) return st;
    if (!z->problem) {
        z->problem = st;
        z->problem_msg = cki_arena_strdup(&z->arena, z->ctx ? ck_errmsg(z->ctx) : "");
        if (!z->problem_msg) return CK_ENOMEM;
    }
    return CK_OK;
}

void cki_zip_close(cki_zip *z)
{
    if (!z) return;
    cki_free(z->ctx, z->entries);
    cki_map_free(&z->index);
    cki_arena_free(&z->arena);
    cki_free(z->ctx, z->tail);
    memset(z, 0, sizeof *z);
}

/* Reads the zip64 extended-information extra field of a central entry. */
static ck_status central_zip64(cki_zip *z, const uint8_t *extra, size_t xlen, cki_zip_entry *e,
                               uint32_t usize32, uint32_t csize32, uint32_t off32,
                               uint16_t disk16, uint32_t *disk)
{
    cki_cur c;
    int need_u = usize32 == 0xFFFFFFFFu, need_c = csize32 == 0xFFFFFFFFu;
    int need_o = off32 == 0xFFFFFFFFu, need_d = disk16 == 0xFFFFu;
    unsigned z64_len = 0;
    cki_cur_init(&c, extra, xlen);
    while (cki_cur_left(&c) >= 4) {
        uint16_t id = 0, sz = 0;
        const uint8_t *body;
        cki_cur_le16(&c, &id);
        cki_cur_le16(&c, &sz);
        if (cki_cur_take(&c, sz, &body))
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s': extra field 0x%04x of %u bytes runs past its "
                            "%zu-byte extra area",
                            z->file, name_width(e->name_len), e->name, id, sz, xlen);
        if (id == 0x0001) {
            cki_cur b;
            uint64_t v;
            cki_cur_init(&b, body, sz);
            z64_len = sz;
            if (need_u) {
                if (cki_cur_le64(&b, &v)) goto short_z64;
                e->usize = v;
                need_u = 0;
            }
            if (need_c) {
                if (cki_cur_le64(&b, &v)) goto short_z64;
                e->csize = v;
                need_c = 0;
            }
            if (need_o) {
                if (cki_cur_le64(&b, &v)) goto short_z64;
                e->header_off = v;
                need_o = 0;
            }
            if (need_d) {
                uint32_t d;
                if (cki_cur_le32(&b, &d)) goto short_z64;
                *disk = d;
                need_d = 0;
            }
        }
    }
    if (need_u || need_c || need_o || need_d)
        return cki_fail(z->ctx, CK_EFORMAT,
                        "%s: zip member '%.*s': a size, offset or disk field is 0xffffffff but no "
                        "zip64 extra field gives its value",
                        z->file, name_width(e->name_len), e->name);
    return CK_OK;
short_z64:
    return cki_fail(z->ctx, CK_EFORMAT,
                    "%s: zip member '%.*s': zip64 extra field of %u bytes is too short for the "
                    "values it must hold",
                    z->file, name_width(e->name_len), e->name, z64_len);
}

static ck_status parse_central_at(cki_zip *z, uint64_t count, const uint8_t *cd);

/* Parses COUNT central entries in [cd_abs, cd_abs + cd_size). */
static ck_status parse_central(cki_zip *z, uint64_t count)
{
    ck_status st;
    const uint8_t *cd = zp(z, z->cd_off, z->cd_size);
    uint8_t *cd_owned = NULL;
    if (!cd) { /* a web window: the directory is read into memory */
        uint64_t lim = z->ctx ? z->ctx->limits[CK_LIMIT_HEADER_BYTES] : (64u << 20);
        if (z->cd_size > lim)
            return cki_fail(z->ctx, CK_ELIMIT,
                            "%s: zip directory of %llu bytes is more than the browser reads "
                            "(CK_LIMIT_HEADER_BYTES %llu)",
                            z->file, (unsigned long long)z->cd_size, (unsigned long long)lim);
        cd_owned = cki_malloc(z->ctx, z->cd_size ? (size_t)z->cd_size : 1);
        if (!cd_owned) return CK_ENOMEM;
        if ((st = cki_source_pread(z->ctx, z->src, z->cd_off, cd_owned, (size_t)z->cd_size))) {
            cki_free(z->ctx, cd_owned);
            return st;
        }
        cd = cd_owned;
    }
    st = parse_central_at(z, count, cd);
    cki_free(z->ctx, cd_owned);
    return st;
}

static ck_status parse_central_at(cki_zip *z, uint64_t count, const uint8_t *cd)
{
    cki_cur c;
    ck_status st;
    cki_cur_init(&c, cd, (size_t)z->cd_size);
    if (count > z->cd_size / CENTRAL_LEN)
        return cki_fail(z->ctx, CK_EFORMAT,
                        "%s: zip directory claims %llu entries but its %llu bytes hold at most "
                        "%llu",
                        z->file, (unsigned long long)count, (unsigned long long)z->cd_size,
                        (unsigned long long)(z->cd_size / CENTRAL_LEN));
    z->entries = cki_calloc(z->ctx, count ? (size_t)count : 1, sizeof *z->entries);
    if (!z->entries) return CK_ENOMEM;
    for (uint64_t i = 0; i < count; i++) {
        cki_zip_entry *e = &z->entries[i];
        const uint8_t *h, *name, *extra;
        uint16_t nlen, xlen, clen, disk16;
        uint32_t usize32, csize32, off32, disk;
        size_t existing;
        int r;
        if (cki_cur_take(&c, CENTRAL_LEN, &h) || cki_ld_le32(h) != SIG_CENTRAL)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip directory entry %llu at byte %llu: no central header "
                            "signature (directory of %llu bytes at %llu)",
                            z->file, (unsigned long long)i,
                            (unsigned long long)(z->cd_off + c.pos), (unsigned long long)z->cd_size,
                            (unsigned long long)z->cd_off);
        e->flags = cki_ld_le16(h + 8);
        e->method = cki_ld_le16(h + 10);
        e->crc = cki_ld_le32(h + 16);
        csize32 = cki_ld_le32(h + 20);
        usize32 = cki_ld_le32(h + 24);
        nlen = cki_ld_le16(h + 28);
        xlen = cki_ld_le16(h + 30);
        clen = cki_ld_le16(h + 32);
        disk16 = cki_ld_le16(h + 34);
        off32 = cki_ld_le32(h + 42);
        if (cki_cur_take(&c, nlen, &name) || cki_cur_take(&c, xlen, &extra) ||
            cki_cur_skip(&c, clen))
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip directory entry %llu: name, extra and comment (%u + %u + %u "
                            "bytes) run past the end of the directory",
                            z->file, (unsigned long long)i, nlen, xlen, clen);
        if (memchr(name, 0, nlen))
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip directory entry %llu: name contains a NUL byte", z->file,
                            (unsigned long long)i);
        e->name = cki_arena_strndup(&z->arena, (const char *)name, nlen);
        if (!e->name) return CK_ENOMEM;
        e->name_len = nlen;
        e->csize = csize32;
        e->usize = usize32;
        e->header_off = off32;
        disk = disk16;
        if ((st = central_zip64(z, extra, xlen, e, usize32, csize32, off32, disk16, &disk)))
            return st;
        if (disk != 0)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s': lives on disk %u (multi-disk archives are not "
                            "supported)",
                            z->file, name_width(nlen), e->name, disk);
        if ((e->flags & (CKI_ZIP_FLAG_ENCRYPTED | CKI_ZIP_FLAG_STRONG_ENC | CKI_ZIP_FLAG_MASKED)) &&
            (st = tolerate(z, cki_fail(z->ctx, CK_EUNSUPPORTED,
                                       "%s: zip member '%.*s': encrypted (flags 0x%04x): "
                                       "encrypted members are refused",
                                       z->file, name_width(nlen), e->name, e->flags))))
            return st;
        r = cki_map_put(&z->index, e->name, nlen, (size_t)i, &existing);
        if (r < 0) return CK_ENOMEM;
        if (r == 1)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s' appears twice in the directory (entries %llu "
                            "and %llu)",
                            z->file, name_width(nlen), e->name, (unsigned long long)existing,
                            (unsigned long long)i);
        if (cki_add_u64(&e->header_off, e->header_off, z->shift) || e->header_off >= z->cd_off)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s': local header offset %llu is not before the "
                            "central directory at %llu",
                            z->file, name_width(nlen), e->name,
                            (unsigned long long)(e->header_off - z->shift),
                            (unsigned long long)(z->cd_off - z->shift));
    }
    if (c.pos != c.len)
        return cki_fail(z->ctx, CK_EFORMAT,
                        "%s: zip directory: %llu entries use %zu bytes but the directory is %llu "
                        "bytes",
                        z->file, (unsigned long long)count, c.pos, (unsigned long long)z->cd_size);
    z->count = (size_t)count;
    return CK_OK;
}

static ck_status check_locals_in(cki_zip *z, uint8_t *hb);

/* Checks each local header against its central entry; sets data_off. */
static ck_status check_locals(cki_zip *z)
{
    /* a web window: each local header and name is read here (allocated for
     * mapped input too, so that no path passes a NULL buffer) */
    uint8_t *hb = cki_malloc(z->ctx, LOCAL_LEN + 65535u);
    ck_status st;
    if (!hb) return CK_ENOMEM;
    st = check_locals_in(z, hb);
    cki_free(z->ctx, hb);
    return st;
}

static ck_status check_locals_in(cki_zip *z, uint8_t *hb)
{
    for (size_t i = 0; i < z->count; i++) {
        cki_zip_entry *e = &z->entries[i];
        const uint8_t *h;
        uint16_t lflags, lmethod, lnlen, lxlen;
        uint64_t end;
        ck_status st;
        if (cki_out_of(e->header_off, LOCAL_LEN, z->cd_off))
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s': no local header at byte %llu", z->file,
                            name_width(e->name_len), e->name, (unsigned long long)e->header_off);
        h = zp(z, e->header_off, LOCAL_LEN);
        if (!h) {
            if ((st = zcopy(z, e->header_off, LOCAL_LEN, hb))) return st;
            h = hb;
        }
        if (cki_ld_le32(h) != SIG_LOCAL)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s': no local header at byte %llu", z->file,
                            name_width(e->name_len), e->name, (unsigned long long)e->header_off);
        lflags = cki_ld_le16(h + 6);
        lmethod = cki_ld_le16(h + 8);
        lnlen = cki_ld_le16(h + 26);
        lxlen = cki_ld_le16(h + 28);
        e->data_off = e->header_off + LOCAL_LEN + lnlen + lxlen;
        if (e->data_off > z->cd_off)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s': local header at byte %llu runs into the "
                            "central directory at %llu",
                            z->file, name_width(e->name_len), e->name,
                            (unsigned long long)e->header_off, (unsigned long long)z->cd_off);
        const uint8_t *whole = zp(z, e->header_off, LOCAL_LEN + (uint64_t)lnlen);
        if (!whole) {
            if (h != hb) memcpy(hb, h, LOCAL_LEN);
            if ((st = zcopy(z, e->header_off + LOCAL_LEN, lnlen, hb + LOCAL_LEN))) return st;
            h = hb;
        } else {
            h = whole;
        }
        if ((lnlen != e->name_len || memcmp(h + LOCAL_LEN, e->name, lnlen) != 0) &&
            (st = tolerate(z, cki_fail(z->ctx, CK_EFORMAT,
                                       "%s: zip member '%.*s': local header names it '%.*s' "
                                       "(local and central names must agree)",
                                       z->file, name_width(e->name_len), e->name,
                                       name_width(lnlen), (const char *)h + LOCAL_LEN))))
            return st;
        if (lmethod != e->method &&
            (st = tolerate(z, cki_fail(z->ctx, CK_EFORMAT,
                                       "%s: zip member '%.*s': local header says method %u, "
                                       "directory says %u",
                                       z->file, name_width(e->name_len), e->name, lmethod,
                                       e->method))))
            return st;
        if (lflags != e->flags &&
            (st = tolerate(z, cki_fail(z->ctx, CK_EFORMAT,
                                       "%s: zip member '%.*s': local header flags 0x%04x differ "
                                       "from the directory's 0x%04x",
                                       z->file, name_width(e->name_len), e->name, lflags,
                                       e->flags))))
            return st;
        if (cki_add_u64(&end, e->data_off, e->csize) || end > z->cd_off)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s': %llu bytes at byte %llu run past the central "
                            "directory at %llu",
                            z->file, name_width(e->name_len), e->name,
                            (unsigned long long)e->csize, (unsigned long long)e->data_off,
                            (unsigned long long)z->cd_off);
    }
    return CK_OK;
}

typedef struct by_off {
    uint64_t off;
    size_t idx;
} by_off;

static int cmp_off(const void *a, const void *b)
{
    uint64_t x = ((const by_off *)a)->off, y = ((const by_off *)b)->off;
    return x < y ? -1 : x > y;
}

/* Members may not share bytes: sorted by header offset, each must end before
 * the next header starts. */
static ck_status check_overlap(cki_zip *z)
{
    by_off *order;
    ck_status st = CK_OK;
    if (z->count < 2) return CK_OK;
    order = cki_malloc(z->ctx, z->count * sizeof *order);
    if (!order) return CK_ENOMEM;
    for (size_t i = 0; i < z->count; i++) {
        order[i].off = z->entries[i].header_off;
        order[i].idx = i;
    }
    qsort(order, z->count, sizeof *order, cmp_off);
    for (size_t i = 0; i + 1 < z->count; i++) {
        const cki_zip_entry *a = &z->entries[order[i].idx], *b = &z->entries[order[i + 1].idx];
        if (a->data_off + a->csize > b->header_off) {
            st = cki_fail(z->ctx, CK_EFORMAT,
                          "%s: zip members '%.*s' (bytes %llu to %llu) and '%.*s' (header at "
                          "%llu) overlap",
                          z->file, name_width(a->name_len), a->name,
                          (unsigned long long)a->header_off,
                          (unsigned long long)(a->data_off + a->csize), name_width(b->name_len),
                          b->name, (unsigned long long)b->header_off);
            break;
        }
    }
    cki_free(z->ctx, order);
    return st;
}

/* Finds the zip64 EOCD record for the locator at LOC. It is at the offset
 * the locator gives, or (bytes before the archive) right before the locator. */
static ck_status find_zip64(cki_zip *z, uint64_t loc, uint64_t *rec, uint64_t *rec_shift)
{
    uint8_t lb[Z64_LOC_LEN], rb[Z64_EOCD_LEN];
    uint64_t rel, cands[2];
    uint32_t disks;
    ck_status st;
    if ((st = zcopy(z, loc, Z64_LOC_LEN, lb))) return st;
    rel = cki_ld_le64(lb + 8);
    disks = cki_ld_le32(lb + 16);
    if (cki_ld_le32(lb + 4) != 0 || disks > 1)
        return cki_fail(z->ctx, CK_EFORMAT,
                        "%s: zip64 locator: archive spans %u disks (multi-disk archives are not "
                        "supported)",
                        z->file, disks);
    cands[0] = rel;
    cands[1] = loc >= Z64_EOCD_LEN ? loc - Z64_EOCD_LEN : UINT64_MAX;
    for (int i = 0; i < 2; i++) {
        uint64_t c = cands[i], size, end;
        const uint8_t *r;
        if (c == UINT64_MAX || cki_out_of(c, Z64_EOCD_LEN, loc)) continue;
        if ((st = zcopy(z, c, Z64_EOCD_LEN, rb))) return st;
        r = rb;
        if (cki_ld_le32(r) != SIG_Z64_EOCD) continue;
        size = cki_ld_le64(r + 4);
        if (size < Z64_EOCD_LEN - 12 || cki_add_u64(&end, c + 12, size) || end > loc) continue;
        if (c < rel) continue;
        *rec = c;
        *rec_shift = c - rel;
        return CK_OK;
    }
    return cki_fail(z->ctx, CK_EFORMAT,
                    "%s: zip64 locator at byte %llu points to byte %llu, where there is no zip64 "
                    "end record",
                    z->file, (unsigned long long)loc, (unsigned long long)rel);
}

/* Tries the EOCD at POS: locates and parses the whole directory. */
static ck_status try_eocd(cki_zip *z, uint64_t pos)
{
    const uint8_t *r = zp(z, pos, EOCD_LEN); /* in the tail: found there */
    const uint8_t *loc = pos >= Z64_LOC_LEN ? zp(z, pos - Z64_LOC_LEN, 4) : NULL;
    if (!r) /* cannot happen: the end record was found in what was read */
        return cki_fail(z->ctx, CK_EFORMAT, "%s: zip end record at byte %llu lies outside the "
                        "bytes read", z->file, (unsigned long long)pos);
    uint64_t count = cki_ld_le16(r + 10), cd_size = cki_ld_le32(r + 12);
    uint64_t cd_rel = cki_ld_le32(r + 16), cd_end = pos, cd_abs;
    uint16_t disk = cki_ld_le16(r + 4), cd_disk = cki_ld_le16(r + 6);
    uint64_t here = cki_ld_le16(r + 8);
    ck_status st;

    z->zip64 = 0;
    if (loc && cki_ld_le32(loc) == SIG_Z64_LOC) {
        uint64_t rec = 0, rec_shift = 0;
        uint8_t q[Z64_EOCD_LEN];
        if ((st = find_zip64(z, pos - Z64_LOC_LEN, &rec, &rec_shift))) return st;
        if ((st = zcopy(z, rec, Z64_EOCD_LEN, q))) return st;
        if (cki_ld_le32(q + 16) != 0 || cki_ld_le32(q + 20) != 0)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip64 end record: disk %u, directory on disk %u (multi-disk "
                            "archives are not supported)",
                            z->file, cki_ld_le32(q + 16), cki_ld_le32(q + 20));
        here = cki_ld_le64(q + 24);
        count = cki_ld_le64(q + 32);
        cd_size = cki_ld_le64(q + 40);
        cd_rel = cki_ld_le64(q + 48);
        cd_end = rec;
        z->zip64 = 1;
        if (cd_size > cd_end || cd_end - cd_size < cd_rel ||
            cd_end - cd_size - cd_rel != rec_shift)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip64 end record: central directory of %llu bytes at offset %llu "
                            "does not end where the record starts (byte %llu)",
                            z->file, (unsigned long long)cd_size, (unsigned long long)cd_rel,
                            (unsigned long long)cd_end);
    } else if (disk != 0 || cd_disk != 0) {
        return cki_fail(z->ctx, CK_EFORMAT,
                        "%s: zip end record: disk %u, directory on disk %u (multi-disk archives "
                        "are not supported)",
                        z->file, disk, cd_disk);
    }
    if (here != count)
        return cki_fail(z->ctx, CK_EFORMAT,
                        "%s: zip end record: %llu entries on this disk but %llu in total", z->file,
                        (unsigned long long)here, (unsigned long long)count);
    if (cd_size > cd_end || cd_end - cd_size < cd_rel)
        return cki_fail(z->ctx, CK_EFORMAT,
                        "%s: zip end record at byte %llu: central directory of %llu bytes at "
                        "offset %llu does not fit before it",
                        z->file, (unsigned long long)pos, (unsigned long long)cd_size,
                        (unsigned long long)cd_rel);
    cd_abs = cd_end - cd_size;
    z->shift = cd_abs - cd_rel;
    z->cd_off = cd_abs;
    z->cd_size = cd_size;
    z->eocd_off = pos;
    if ((st = parse_central(z, count))) return st;
    if ((st = check_locals(z))) return st;
    return check_overlap(z);
}

static void reset_dir(cki_zip *z)
{
    cki_free(z->ctx, z->entries);
    z->entries = NULL;
    z->count = 0;
    cki_map_free(&z->index);
    cki_map_init(&z->index, z->ctx);
    z->problem = CK_OK; /* its message lived in the arena, freed with it */
    z->problem_msg = NULL;
}

static ck_status open_zip(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len,
                          const cki_source *src, cki_zip *z, int lenient)
{
    uint64_t pos, lowest;
    ck_status first_st = CK_OK;
    char first_msg[CKI_ERRMSG_MAX];
    int tried = 0;

    memset(z, 0, sizeof *z);
    z->lenient = lenient;
    z->ctx = ctx;
    z->file = file;
    z->base = p;
    z->len = len;
    z->view = len;
    cki_map_init(&z->index, ctx);
    cki_arena_init(&z->arena, ctx);
    if (src && src->view_len < src->len) { /* a web window: read the tail */
        ck_status st;
        z->src = src;
        z->view = src->view_len;
        z->tail_off = len > TAIL_LEN ? len - TAIL_LEN : 0;
        z->tail = cki_malloc(ctx, (size_t)(len - z->tail_off));
        if (!z->tail) {
            cki_zip_close(z);
            return CK_ENOMEM;
        }
        if ((st = cki_source_pread(ctx, src, z->tail_off, z->tail, (size_t)(len - z->tail_off)))) {
            cki_zip_close(z);
            return st;
        }
    }
    if (len < EOCD_LEN) {
        cki_zip_close(z);
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: zip archive: %llu bytes cannot hold an end record (22 bytes)", file,
                        (unsigned long long)len);
    }
    lowest = len - EOCD_LEN > MAX_COMMENT ? len - EOCD_LEN - MAX_COMMENT : 0;
    first_msg[0] = 0;
    for (pos = len - EOCD_LEN + 1; pos-- > lowest;) {
        ck_status st;
        const uint8_t *r = zp(z, pos, EOCD_LEN); /* in the tail */
        if (cki_ld_le32(r) != SIG_EOCD) continue;
        if (pos + EOCD_LEN + cki_ld_le16(r + 20) > len) continue;
        tried++;
        st = try_eocd(z, pos);
        if (st == CK_OK) return CK_OK;
        if (st == CK_ENOMEM) {
            cki_zip_close(z);
            return st;
        }
        if (!first_st) {
            first_st = st;
            if (ctx) memcpy(first_msg, ctx->errmsg, sizeof first_msg);
        }
        reset_dir(z);
        cki_arena_free(&z->arena);
        cki_arena_init(&z->arena, ctx);
    }
    cki_zip_close(z);
    if (tried) return cki_fail(ctx, first_st, "%s", first_msg);
    return cki_fail(ctx, CK_EFORMAT,
                    "%s: zip archive: no end-of-central-directory record in the last %llu bytes "
                    "(truncated or not a zip file)",
                    file, (unsigned long long)(len - lowest));
}

ck_status cki_zip_open(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len, cki_zip *z)
{
    return open_zip(ctx, file, p, len, NULL, z, 0);
}

ck_status cki_zip_open_source(ck_ctx *ctx, const cki_source *src, cki_zip *z)
{
    return open_zip(ctx, src->path, src->base, src->len, src, z, 0);
}

ck_status cki_zip_open_lenient(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len,
                               cki_zip *z)
{
    return open_zip(ctx, file, p, len, NULL, z, 1);
}

const cki_zip_entry *cki_zip_find(const cki_zip *z, const char *name, size_t name_len)
{
    size_t i;
    if (!z->entries) return NULL;
    if (z->unindexed) {
        for (i = 0; i < z->count; i++)
            if (z->entries[i].name_len == name_len && !memcmp(z->entries[i].name, name, name_len))
                return &z->entries[i];
        return NULL;
    }
    if (cki_map_get(&z->index, name, name_len, &i)) return NULL;
    return &z->entries[i];
}

void cki_zip_index_drop(cki_zip *z)
{
    cki_map_free(&z->index);
    cki_map_init(&z->index, z->ctx);
    z->unindexed = 1;
}

ck_status cki_zip_index_build(cki_zip *z)
{
    if (!z->unindexed) return CK_OK;
    if (cki_map_reserve(&z->index, z->count)) return CK_ENOMEM;
    for (size_t i = 0; i < z->count; i++)
        if (cki_map_put(&z->index, z->entries[i].name, z->entries[i].name_len, i, NULL) < 0)
            return CK_ENOMEM;
    z->unindexed = 0;
    return CK_OK;
}

ck_status cki_zip_check_crc(cki_zip *z, const cki_zip_entry *e, const uint8_t *data, uint64_t len)
{
    uint32_t crc;
    if (len == 0) return CK_OK;
    if (e->crc == 0) {
        if (!z->warned_crc0) {
            cki_warn(z->ctx,
                     "%s: zip member '%.*s': CRC-32 is 0, i.e. not computed by the writer (torch "
                     "compute_crc32=False): members with CRC 0 are not checked",
                     z->file, name_width(e->name_len), e->name);
            z->warned_crc0 = 1;
        }
        return CK_OK;
    }
    crc = cki_crc32(0, data, len);
    if (crc != e->crc)
        return cki_fail(z->ctx, CK_EFORMAT,
                        "%s: zip member '%.*s': CRC-32 of its %llu bytes is %08x but the directory "
                        "says %08x",
                        z->file, name_width(e->name_len), e->name, (unsigned long long)len, crc,
                        e->crc);
    return CK_OK;
}

/* Inflates E into OUT[0..CAP). FULL: the stream must end exactly at
 * e->usize == CAP; else stops once CAP bytes are out. *GOT: bytes written. */
static ck_status inflate_member(cki_zip *z, const cki_zip_entry *e, uint8_t *out, uint64_t cap,
                                int full, uint64_t *got)
{
    z_stream zs;
    const uint8_t *in = zp(z, e->data_off, e->csize);
    uint64_t in_left = e->csize, out_done = 0, in_at = e->data_off, buf_left = 0;
    uint8_t *chunk = NULL; /* a web window: the input is read IN_CHUNK at a time */
    int ret = Z_OK;
    ck_status st = CK_OK;

    if (!in) {
        chunk = cki_malloc(z->ctx, IN_CHUNK);
        if (!chunk) return CK_ENOMEM;
    }
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, -MAX_WBITS) != Z_OK) {
        cki_free(z->ctx, chunk);
        return cki_fail(z->ctx, CK_ENOMEM, "%s: zip member '%.*s': cannot start inflate", z->file,
                        name_width(e->name_len), e->name);
    }
    while (ret != Z_STREAM_END) {
        uint8_t spare;
        uInt in_n;
        if (chunk && buf_left == 0 && in_left) {
            buf_left = in_left < IN_CHUNK ? in_left : IN_CHUNK;
            if ((st = cki_source_pread(z->ctx, z->src, in_at, chunk, (size_t)buf_left))) goto done;
            in = chunk;
        }
        {
            uint64_t avail = chunk ? buf_left : in_left;
            in_n = avail > (1u << 30) ? (1u << 30) : (uInt)avail;
        }
        uint64_t room = cap - out_done;
        zs.next_in = (Bytef *)(uintptr_t)in;
        zs.avail_in = in_n;
        if (room) {
            zs.next_out = out + out_done;
            zs.avail_out = room > (1u << 30) ? (1u << 30) : (uInt)room;
        } else {
            if (!full) break;
            /* one byte of slack to learn whether the stream really ends here */
            zs.next_out = &spare;
            zs.avail_out = 1;
        }
        {
            uInt before_out = zs.avail_out;
            ret = inflate(&zs, Z_NO_FLUSH);
            in += in_n - zs.avail_in;
            in_left -= in_n - zs.avail_in;
            in_at += in_n - zs.avail_in;
            if (chunk) buf_left -= in_n - zs.avail_in;
            if (room) {
                out_done += before_out - zs.avail_out;
            } else if (zs.avail_out == 0) {
                st = cki_fail(z->ctx, CK_EFORMAT,
                              "%s: zip member '%.*s': inflates to more than the %llu bytes its "
                              "directory entry says",
                              z->file, name_width(e->name_len), e->name,
                              (unsigned long long)e->usize);
                goto done;
            }
        }
        if (ret == Z_STREAM_END) break;
        if (ret == Z_BUF_ERROR && in_left == 0 && zs.avail_in == 0) {
            st = cki_fail(z->ctx, CK_EFORMAT,
                          "%s: zip member '%.*s': deflate stream ends early (%llu of %llu bytes "
                          "inflated from %llu)",
                          z->file, name_width(e->name_len), e->name,
                          (unsigned long long)out_done, (unsigned long long)e->usize,
                          (unsigned long long)e->csize);
            goto done;
        }
        if (ret != Z_OK && ret != Z_BUF_ERROR) {
            st = cki_fail(z->ctx, CK_EFORMAT,
                          "%s: zip member '%.*s': corrupt deflate data after %llu output bytes "
                          "(%s)",
                          z->file, name_width(e->name_len), e->name, (unsigned long long)out_done,
                          zs.msg ? zs.msg : "inflate error");
            goto done;
        }
    }
    if (full && out_done != e->usize)
        st = cki_fail(z->ctx, CK_EFORMAT,
                      "%s: zip member '%.*s': inflates to %llu bytes but its directory entry says "
                      "%llu",
                      z->file, name_width(e->name_len), e->name, (unsigned long long)out_done,
                      (unsigned long long)e->usize);
done:
    inflateEnd(&zs);
    cki_free(z->ctx, chunk);
    *got = out_done;
    return st;
}

static ck_status check_inflate_limits(cki_zip *z, const cki_zip_entry *e)
{
    uint64_t limit = z->ctx ? z->ctx->limits[CK_LIMIT_INFLATE_BYTES] : (4ull << 30), most;
    if (e->usize > limit)
        return cki_fail(z->ctx, CK_ELIMIT,
                        "%s: zip member '%.*s': inflates to %llu bytes, more than the limit of "
                        "%llu",
                        z->file, name_width(e->name_len), e->name, (unsigned long long)e->usize,
                        (unsigned long long)limit);
    if (e->usize > RATIO_MIN_BYTES &&
        (cki_mul_u64(&most, e->csize, CKI_ZIP_MAX_RATIO) == 0 && e->usize > most))
        return cki_fail(z->ctx, CK_ELIMIT,
                        "%s: zip member '%.*s': %llu compressed bytes claim to inflate to %llu "
                        "(ratio above %u:1: a zip bomb)",
                        z->file, name_width(e->name_len), e->name, (unsigned long long)e->csize,
                        (unsigned long long)e->usize, CKI_ZIP_MAX_RATIO);
    return CK_OK;
}

static ck_status bad_method(cki_zip *z, const cki_zip_entry *e)
{
    return cki_fail(z->ctx, CK_EUNSUPPORTED,
                    "%s: zip member '%.*s': compression method %u is not supported (only stored "
                    "and deflate)",
                    z->file, name_width(e->name_len), e->name, e->method);
}

/* A stored member's sizes in the central directory must agree. */
static ck_status check_stored(const cki_zip *z, const cki_zip_entry *e)
{
    if (e->csize == e->usize) return CK_OK;
    return cki_fail(z->ctx, CK_EFORMAT,
                    "%s: zip member '%.*s': stored member has %llu compressed and %llu "
                    "uncompressed bytes (must be equal)",
                    z->file, name_width(e->name_len), e->name, (unsigned long long)e->csize,
                    (unsigned long long)e->usize);
}

ck_status cki_zip_check_stored(const cki_zip *z, const cki_zip_entry *e)
{
    return check_stored(z, e);
}

ck_status cki_zip_read(cki_zip *z, const cki_zip_entry *e, int check_crc, const uint8_t **data,
                       uint64_t *len, uint8_t **owned)
{
    ck_status st;
    if (e->method == CKI_ZIP_STORED) {
        if ((st = check_stored(z, e))) return st;
        if (!cki_zip_in_view(z, e)) { /* a web window: copied, as if inflated */
            uint8_t *buf;
            uint64_t lim = z->ctx ? z->ctx->limits[CK_LIMIT_INFLATE_BYTES] : (4ull << 30);
            if (e->usize > lim || (uint64_t)(size_t)e->usize != e->usize)
                return cki_fail(z->ctx, CK_ELIMIT,
                                "%s: zip member '%.*s': %llu bytes are too many to hold here "
                                "(CK_LIMIT_INFLATE_BYTES %llu)",
                                z->file, name_width(e->name_len), e->name,
                                (unsigned long long)e->usize, (unsigned long long)lim);
            buf = cki_malloc(z->ctx, e->usize ? (size_t)e->usize : 1);
            if (!buf)
                return cki_fail(z->ctx, CK_ENOMEM,
                                "%s: zip member '%.*s': cannot allocate %llu bytes to read it",
                                z->file, name_width(e->name_len), e->name,
                                (unsigned long long)e->usize);
            st = cki_source_pread(z->ctx, z->src, e->data_off, buf, (size_t)e->usize);
            if (!st && check_crc) st = cki_zip_check_crc(z, e, buf, e->usize);
            if (st) {
                cki_free(z->ctx, buf);
                return st;
            }
            *data = buf;
            *len = e->usize;
            *owned = buf;
            return CK_OK;
        }
        if (check_crc && (st = cki_zip_check_crc(z, e, z->base + e->data_off, e->usize)))
            return st;
        *data = z->base + e->data_off;
        *len = e->usize;
        *owned = NULL;
        return CK_OK;
    }
    if (e->method == CKI_ZIP_DEFLATE) {
        uint8_t *buf;
        uint64_t got;
        if ((st = check_inflate_limits(z, e))) return st;
        if ((uint64_t)(size_t)e->usize != e->usize)
            return cki_fail(z->ctx, CK_ELIMIT, "%s: zip member '%.*s': too large to inflate",
                            z->file, name_width(e->name_len), e->name);
        buf = cki_malloc(z->ctx, e->usize ? (size_t)e->usize : 1);
        if (!buf)
            return cki_fail(z->ctx, CK_ENOMEM,
                            "%s: zip member '%.*s': cannot allocate %llu bytes to inflate it",
                            z->file, name_width(e->name_len), e->name,
                            (unsigned long long)e->usize);
        st = inflate_member(z, e, buf, e->usize, 1, &got);
        if (!st) st = cki_zip_check_crc(z, e, buf, e->usize);
        if (st) {
            cki_free(z->ctx, buf);
            return st;
        }
        *data = buf;
        *len = e->usize;
        *owned = buf;
        return CK_OK;
    }
    return bad_method(z, e);
}

ck_status cki_zip_peek(cki_zip *z, const cki_zip_entry *e, uint8_t *buf, size_t cap, size_t *got)
{
    if (e->method == CKI_ZIP_STORED) {
        uint64_t n = e->usize < cap ? e->usize : cap;
        ck_status st = check_stored(z, e);
        if (st) return st;
        if ((st = zcopy(z, e->data_off, (size_t)n, buf))) return st;
        *got = (size_t)n;
        return CK_OK;
    }
    if (e->method == CKI_ZIP_DEFLATE) {
        uint64_t n = e->usize < cap ? e->usize : cap, g = 0;
        ck_status st;
        if ((st = check_inflate_limits(z, e))) return st;
        if (n == 0) {
            *got = 0;
            return CK_OK;
        }
        st = inflate_member(z, e, buf, n, 0, &g);
        *got = (size_t)g;
        if (!st && g < n)
            return cki_fail(z->ctx, CK_EFORMAT,
                            "%s: zip member '%.*s': deflate stream ends after %llu bytes (%llu "
                            "expected)",
                            z->file, name_width(e->name_len), e->name, (unsigned long long)g,
                            (unsigned long long)e->usize);
        return st;
    }
    return bad_method(z, e);
}
