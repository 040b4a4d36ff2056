/*
 * tar.c -- tar member index (see tar.h).
 *
 * Header block (512 bytes, text fields NUL- or space-terminated):
 *   [0,100) name   [100,108) mode  [108,116) uid   [116,124) gid
 *   [124,136) size (octal, or base-256 when the first byte has bit 7 set)
 *   [136,148) mtime  [148,156) checksum (octal; sum of all header bytes with
 *   this field read as spaces)  [156] type  [157,257) link name
 *   [257,263) magic "ustar\0" (POSIX) or "ustar " (GNU)  [263,265) version
 *   [345,500) ustar name prefix (POSIX only)
 * The member's bytes follow, padded to a multiple of 512.
 *
 * Hand-written: only a few dozen lines are needed, and a general tar library
 * would extract to disk, which this project never does.
 */
#include "tar.h"

static int is_zero_block(const uint8_t *p)
{
    for (unsigned i = 0; i < CKI_TAR_BLOCK; i++)
        if (p[i]) return 0;
    return 1;
}

/* Parses an octal field; spaces and NULs end it; leading spaces are skipped.
 * Returns 1 on a bad digit or overflow. */
static int octal(const uint8_t *f, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && f[i] == ' ') i++;
    for (; i < n && f[i] != 0 && f[i] != ' '; i++) {
        if (f[i] < '0' || f[i] > '7') return 1;
        if (v >> 61) return 1;
        v = v * 8 + (uint64_t)(f[i] - '0');
    }
    *out = v;
    return 0;
}

/* A size field: octal, or GNU base-256 (bit 7 of the first byte set). */
static int size_field(const uint8_t *f, uint64_t *out)
{
    if (f[0] & 0x80) {
        uint64_t v = 0;
        if (f[0] & 0x40) return 1; /* negative */
        if (f[0] & 0x3f) return 1; /* more than 88 bits: too large anyway */
        for (int i = 1; i < 4; i++)
            if (f[i]) return 1;
        for (int i = 4; i < 12; i++) v = v << 8 | f[i];
        *out = v;
        return 0;
    }
    return octal(f, 12, out);
}

static int checksum_ok(const uint8_t *h)
{
    uint64_t want, sum = 0;
    if (octal(h + 148, 8, &want)) return 0;
    for (unsigned i = 0; i < CKI_TAR_BLOCK; i++) sum += (i >= 148 && i < 156) ? ' ' : h[i];
    return sum == want;
}

int cki_tar_sniff(const uint8_t *p, uint64_t len)
{
    if (len < CKI_TAR_BLOCK) return 0;
    if (memcmp(p + 257, "ustar", 5) != 0) return 0;
    return checksum_ok(p);
}

void cki_tar_close(cki_tar *t)
{
    if (!t) return;
    cki_free(t->ctx, t->members);
    cki_map_free(&t->index);
    cki_arena_free(&t->arena);
    memset(t, 0, sizeof *t);
}

static ck_status add_member(cki_tar *t, const uint8_t *h, uint64_t off, uint64_t len)
{
    char name[256];
    size_t nl = 0, pl = 0, existing;
    int r;
    cki_tar_member *m;
    if (memcmp(h + 257, "ustar\0", 6) == 0) { /* POSIX: prefix field */
        while (pl < 155 && h[345 + pl]) pl++;
        memcpy(name, h + 345, pl);
        if (pl) name[pl++] = '/';
    }
    while (nl < 100 && h[nl]) nl++;
    memcpy(name + pl, h, nl);
    nl += pl;
    name[nl] = 0;
    if (t->count == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 8;
        cki_tar_member *nm = cki_realloc(t->ctx, t->members, ncap * sizeof *nm);
        if (!nm) return CK_ENOMEM;
        t->members = nm;
        t->cap = ncap;
    }
    m = &t->members[t->count];
    m->name = cki_arena_strndup(&t->arena, name, nl);
    if (!m->name) return CK_ENOMEM;
    m->off = off;
    m->len = len;
    r = cki_map_put(&t->index, m->name, nl, t->count, &existing);
    if (r < 0) return CK_ENOMEM;
    if (r == 1)
        return cki_fail(t->ctx, CK_EFORMAT,
                        "%s: tar member '%s' appears twice (at bytes %llu and %llu)", t->file,
                        m->name, (unsigned long long)t->members[existing].off,
                        (unsigned long long)off);
    t->count++;
    return CK_OK;
}

ck_status cki_tar_open(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len, cki_tar *t)
{
    uint64_t pos = 0;
    ck_status st;
    memset(t, 0, sizeof *t);
    t->ctx = ctx;
    t->file = file;
    t->base = p;
    t->len = len;
    cki_map_init(&t->index, ctx);
    cki_arena_init(&t->arena, ctx);
    while (pos + CKI_TAR_BLOCK <= len) {
        const uint8_t *h = p + pos;
        uint64_t size, padded, data = pos + CKI_TAR_BLOCK;
        uint8_t type;
        if (is_zero_block(h)) break;
        if (!checksum_ok(h)) {
            st = cki_fail(ctx, CK_EFORMAT, "%s: tar header at byte %llu: bad checksum", file,
                          (unsigned long long)pos);
            goto fail;
        }
        if (size_field(h + 124, &size)) {
            st = cki_fail(ctx, CK_EFORMAT, "%s: tar header at byte %llu: bad size field", file,
                          (unsigned long long)pos);
            goto fail;
        }
        if (cki_out_of(data, size, len)) {
            st = cki_fail(ctx, CK_EFORMAT,
                          "%s: tar member at byte %llu: %llu bytes run past the end of the "
                          "%llu-byte file",
                          file, (unsigned long long)pos, (unsigned long long)size,
                          (unsigned long long)len);
            goto fail;
        }
        type = h[156];
        if (type == '0' || type == 0 || type == '7') {
            if ((st = add_member(t, h, data, size))) goto fail;
        }
        padded = size + (CKI_TAR_BLOCK - size % CKI_TAR_BLOCK) % CKI_TAR_BLOCK;
        if (cki_add_u64(&pos, data, padded)) break;
    }
    if (pos < len && len - pos < CKI_TAR_BLOCK) {
        for (uint64_t i = pos; i < len; i++)
            if (p[i]) {
                st = cki_fail(ctx, CK_EFORMAT,
                              "%s: tar archive: the %llu bytes at byte %llu do not make a whole "
                              "header block (truncated)",
                              file, (unsigned long long)(len - pos), (unsigned long long)pos);
                goto fail;
            }
    }
    return CK_OK;
fail:
    cki_tar_close(t);
    return st;
}

const cki_tar_member *cki_tar_find(const cki_tar *t, const char *name)
{
    size_t i;
    if (!t->members || cki_map_get(&t->index, name, strlen(name), &i)) return NULL;
    return &t->members[i];
}
