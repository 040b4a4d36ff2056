/*
 * t_zipparse.h -- a minimal, test-only zip parser for checking what the zip
 * writer produced (t_zip_write.c, t_torch_write.c). It trusts nothing it did
 * not check but covers only what the writer emits: the EOCD without comment,
 * the zip64 locator and record, central headers with zip64 extras, and local
 * headers with their "FB" padding.
 */
#ifndef T_ZIPPARSE_H
#define T_ZIPPARSE_H

#include <stdlib.h>
#include <string.h>

#include "common/cki.h"

typedef struct tz_entry {
    char name[160];
    uint16_t version_needed, flags, method, time, date;
    uint32_t crc;
    uint64_t size, csize, off;  /* from the central directory (zip64 applied) */
    int central_z64;            /* central header had a zip64 extra */
    uint64_t data;              /* data offset from the local header */
    uint32_t local_crc;
    uint64_t local_size, local_csize; /* zip64 applied */
    uint16_t local_flags;
    int local_z64;
    int fb;                     /* local header had an FB field */
    size_t fb_len;
    int fb_all_z;
} tz_entry;

typedef struct tz_zip {
    tz_entry *e;
    size_t n;
    uint64_t eocd_entries;    /* as written in the 16-bit field */
    uint32_t eocd_cd_size, eocd_cd_off;
    int has_z64;
    uint64_t z64_entries, cd_size, cd_off;
    uint64_t z64_rec_off;
} tz_zip;

static inline void tz_free(tz_zip *z)
{
    free(z->e);
    z->e = NULL;
}

/* Reads the zip64 extra in X[0..XL): fills each field whose 32-bit value
 * is 0xffffffff, in APPNOTE order. Returns 1 if the extra was present. */
static inline int tz_zip64(const uint8_t *x, size_t xl, uint64_t *size, uint64_t *csize,
                           uint64_t *off)
{
    size_t i = 0;
    while (i + 4 <= xl) {
        uint16_t id = cki_ld_le16(x + i), len = cki_ld_le16(x + i + 2);
        if (i + 4 + len > xl) return 0;
        if (id == 1) {
            size_t k = i + 4, end = i + 4 + len;
            uint64_t *fields[3] = {size, csize, off};
            for (int f = 0; f < 3; f++) {
                if (fields[f] && *fields[f] == 0xffffffffu && k + 8 <= end) {
                    *fields[f] = cki_ld_le64(x + k);
                    k += 8;
                }
            }
            return 1;
        }
        i += 4 + len;
    }
    return 0;
}

/* 0 on success, else the number of the failed check (for messages). LOCAL:
 * also read each entry's local header and check its data lies in the file. */
static inline int tz_parse(const uint8_t *p, uint64_t len, tz_zip *z, int local)
{
    const uint8_t *eocd, *q;
    uint64_t count, cd_off, cd_size, pos;
    memset(z, 0, sizeof *z);
    if (len < 22) return 1;
    eocd = p + len - 22;
    if (cki_ld_le32(eocd) != 0x06054b50u || cki_ld_le16(eocd + 20) != 0) return 2;
    z->eocd_entries = cki_ld_le16(eocd + 10);
    z->eocd_cd_size = cki_ld_le32(eocd + 12);
    z->eocd_cd_off = cki_ld_le32(eocd + 16);
    count = z->eocd_entries;
    cd_size = z->eocd_cd_size;
    cd_off = z->eocd_cd_off;
    if (len >= 22 + 20 + 56 && cki_ld_le32(eocd - 20) == 0x07064b50u) {
        const uint8_t *loc = eocd - 20, *rec;
        z->z64_rec_off = cki_ld_le64(loc + 8);
        if (cki_ld_le32(loc + 16) != 1) return 3;
        if (z->z64_rec_off != len - 22 - 20 - 56) return 4;
        rec = p + z->z64_rec_off;
        if (cki_ld_le32(rec) != 0x06064b50u || cki_ld_le64(rec + 4) != 44) return 5;
        z->has_z64 = 1;
        z->z64_entries = cki_ld_le64(rec + 32);
        if (cki_ld_le64(rec + 24) != z->z64_entries) return 6;
        count = z->z64_entries;
        cd_size = z->cd_size = cki_ld_le64(rec + 40);
        cd_off = z->cd_off = cki_ld_le64(rec + 48);
        if (cd_off + cd_size != z->z64_rec_off) return 7;
    } else if (cd_off + cd_size != len - 22) {
        return 8;
    }
    z->e = calloc(count ? count : 1, sizeof *z->e);
    if (!z->e) return 9;
    z->n = count;
    pos = cd_off;
    for (uint64_t i = 0; i < count; i++) {
        tz_entry *e = &z->e[i];
        uint16_t nl, xl, cl;
        const uint8_t *lh;
        if (pos + 46 > cd_off + cd_size) return 10;
        q = p + pos;
        if (cki_ld_le32(q) != 0x02014b50u) return 11;
        e->version_needed = cki_ld_le16(q + 6);
        e->flags = cki_ld_le16(q + 8);
        e->method = cki_ld_le16(q + 10);
        e->time = cki_ld_le16(q + 12);
        e->date = cki_ld_le16(q + 14);
        e->crc = cki_ld_le32(q + 16);
        e->csize = cki_ld_le32(q + 20);
        e->size = cki_ld_le32(q + 24);
        nl = cki_ld_le16(q + 28);
        xl = cki_ld_le16(q + 30);
        cl = cki_ld_le16(q + 32);
        e->off = cki_ld_le32(q + 42);
        if (nl >= sizeof e->name || pos + 46 + nl + xl + cl > cd_off + cd_size) return 12;
        memcpy(e->name, q + 46, nl);
        e->central_z64 = tz_zip64(q + 46 + nl, xl, &e->size, &e->csize, &e->off);
        pos += 46u + nl + xl + cl;
        if (!local) continue;
        if (e->off + 30 > len) return 13;
        lh = p + e->off;
        if (cki_ld_le32(lh) != 0x04034b50u) return 14;
        e->local_flags = cki_ld_le16(lh + 6);
        e->local_crc = cki_ld_le32(lh + 14);
        e->local_csize = cki_ld_le32(lh + 18);
        e->local_size = cki_ld_le32(lh + 22);
        if (cki_ld_le16(lh + 26) != nl || memcmp(lh + 30, e->name, nl) != 0) return 15;
        xl = cki_ld_le16(lh + 28);
        if (e->off + 30 + nl + xl > len) return 16;
        e->local_z64 = tz_zip64(lh + 30 + nl, xl, &e->local_size, &e->local_csize, NULL);
        for (size_t k = 0; k + 4 <= xl;) {
            const uint8_t *x = lh + 30 + nl + k;
            uint16_t len2 = cki_ld_le16(x + 2);
            if (k + 4 + len2 > xl) return 17;
            if (x[0] == 'F' && x[1] == 'B') {
                e->fb = 1;
                e->fb_len = len2;
                e->fb_all_z = 1;
                for (size_t j = 0; j < len2; j++)
                    if (x[4 + j] != 'Z') e->fb_all_z = 0;
            }
            k += 4u + len2;
        }
        e->data = e->off + 30 + nl + xl;
        if (e->data + e->size > len) return 18;
    }
    if (pos != cd_off + cd_size) return 19;
    return 0;
}

/* The entry named NAME, or NULL. */
static inline const tz_entry *tz_find(const tz_zip *z, const char *name)
{
    for (size_t i = 0; i < z->n; i++)
        if (strcmp(z->e[i].name, name) == 0) return &z->e[i];
    return NULL;
}

#endif
