/*
 * t_torchbuild.h -- builds torch-style inputs by hand for the reader tests
 * (t_zip_read.c, t_torch_read.c, t_scan.c): a byte buffer, a protocol-2
 * pickle assembler (opcodes written one by one, so the tests control every
 * byte), a zip writer (stored or deflated records, zip64 end records, bytes
 * before the archive, a comment, local-name and flag overrides), the legacy
 * stream and a ustar tar writer.
 */
#ifndef T_TORCHBUILD_H
#define T_TORCHBUILD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- growable bytes ----------------------------------------------------- */

typedef struct tb_bytes {
    uint8_t *p;
    size_t n, cap;
} tb_bytes;

static inline void tbb_put(tb_bytes *b, const void *p, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = realloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
static inline void tbb_c(tb_bytes *b, uint8_t c) { tbb_put(b, &c, 1); }
static inline void tbb_s(tb_bytes *b, const char *s) { tbb_put(b, s, strlen(s)); }
static inline void tbb_le16(tb_bytes *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    tbb_put(b, x, 2);
}
static inline void tbb_le32(tb_bytes *b, uint32_t v)
{
    uint8_t x[4];
    for (int i = 0; i < 4; i++) x[i] = (uint8_t)(v >> (8 * i));
    tbb_put(b, x, 4);
}
static inline void tbb_le64(tb_bytes *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++) x[i] = (uint8_t)(v >> (8 * i));
    tbb_put(b, x, 8);
}
static inline void tbb_free(tb_bytes *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

/* ---- pickle opcodes (protocol 2) --------------------------------------- */

static inline void pk_proto(tb_bytes *b) { tbb_put(b, "\x80\x02", 2); }
static inline void pk_stop(tb_bytes *b) { tbb_c(b, '.'); }
static inline void pk_mark(tb_bytes *b) { tbb_c(b, '('); }
static inline void pk_tuple(tb_bytes *b) { tbb_c(b, 't'); }
static inline void pk_empty_tuple(tb_bytes *b) { tbb_c(b, ')'); }
static inline void pk_empty_dict(tb_bytes *b) { tbb_c(b, '}'); }
static inline void pk_empty_list(tb_bytes *b) { tbb_c(b, ']'); }
static inline void pk_setitems(tb_bytes *b) { tbb_c(b, 'u'); }
static inline void pk_setitem(tb_bytes *b) { tbb_c(b, 's'); }
static inline void pk_appends(tb_bytes *b) { tbb_c(b, 'e'); }
static inline void pk_append(tb_bytes *b) { tbb_c(b, 'a'); }
static inline void pk_reduce(tb_bytes *b) { tbb_c(b, 'R'); }
static inline void pk_build(tb_bytes *b) { tbb_c(b, 'b'); }
static inline void pk_newobj(tb_bytes *b) { tbb_c(b, 0x81); }
static inline void pk_persid(tb_bytes *b) { tbb_c(b, 'Q'); }
static inline void pk_none(tb_bytes *b) { tbb_c(b, 'N'); }
static inline void pk_bool(tb_bytes *b, int v) { tbb_c(b, v ? 0x88 : 0x89); }
static inline void pk_put(tb_bytes *b, uint8_t i)
{
    tbb_c(b, 'q');
    tbb_c(b, i);
}
static inline void pk_get(tb_bytes *b, uint8_t i)
{
    tbb_c(b, 'h');
    tbb_c(b, i);
}
static inline void pk_str(tb_bytes *b, const char *s)
{
    tbb_c(b, 'X');
    tbb_le32(b, (uint32_t)strlen(s));
    tbb_s(b, s);
}
static inline void pk_strn(tb_bytes *b, const char *s, size_t n)
{
    tbb_c(b, 'X');
    tbb_le32(b, (uint32_t)n);
    tbb_put(b, s, n);
}
static inline void pk_bytes(tb_bytes *b, const void *p, size_t n)
{
    tbb_c(b, 'B'); /* BINBYTES: protocol 3, accepted by the machine */
    tbb_le32(b, (uint32_t)n);
    tbb_put(b, p, n);
}
static inline void pk_int(tb_bytes *b, int64_t v)
{
    if (v >= 0 && v < 256) {
        tbb_c(b, 'K');
        tbb_c(b, (uint8_t)v);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        tbb_c(b, 'J');
        tbb_le32(b, (uint32_t)(int32_t)v);
    } else {
        tbb_c(b, 0x8a);
        tbb_c(b, 8);
        tbb_le64(b, (uint64_t)v);
    }
}
static inline void pk_float(tb_bytes *b, double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    tbb_c(b, 'G');
    for (int i = 7; i >= 0; i--) tbb_c(b, (uint8_t)(u >> (8 * i)));
}
static inline void pk_global(tb_bytes *b, const char *module, const char *name)
{
    tbb_c(b, 'c');
    tbb_s(b, module);
    tbb_c(b, '\n');
    tbb_s(b, name);
    tbb_c(b, '\n');
}
static inline void pk_ints(tb_bytes *b, int n, const int64_t *v)
{
    pk_mark(b);
    for (int i = 0; i < n; i++) pk_int(b, v[i]);
    pk_tuple(b);
}
/* collections.OrderedDict() */
static inline void pk_odict(tb_bytes *b)
{
    pk_global(b, "collections", "OrderedDict");
    pk_empty_tuple(b);
    pk_reduce(b);
}
/* ('storage', MODULE.CLS, KEY, 'cpu', NUMEL) + BINPERSID */
static inline void pk_storage_in(tb_bytes *b, const char *module, const char *cls,
                                 const char *key, int64_t numel)
{
    pk_mark(b);
    pk_str(b, "storage");
    pk_global(b, module, cls);
    pk_str(b, key);
    pk_str(b, "cpu");
    pk_int(b, numel);
    pk_tuple(b);
    pk_persid(b);
}
/* ('storage', torch.CLS, KEY, 'cpu', NUMEL) + BINPERSID */
static inline void pk_storage(tb_bytes *b, const char *cls, const char *key, int64_t numel)
{
    pk_storage_in(b, "torch", cls, key, numel);
}
/* _rebuild_tensor_v2(storage, off, size, stride, False, OrderedDict()[, meta]);
 * META_CONJ/META_NEG add the metadata dict when nonzero. */
static inline void pk_tensor_v2(tb_bytes *b, const char *cls, const char *key, int64_t numel,
                                int64_t off, int nd, const int64_t *size, const int64_t *stride,
                                int meta_conj, int meta_neg)
{
    pk_global(b, "torch._utils", "_rebuild_tensor_v2");
    pk_mark(b);
    pk_storage(b, cls, key, numel);
    pk_int(b, off);
    pk_ints(b, nd, size);
    pk_ints(b, nd, stride);
    pk_bool(b, 0);
    pk_odict(b);
    if (meta_conj || meta_neg) {
        pk_empty_dict(b);
        pk_mark(b);
        if (meta_conj) {
            pk_str(b, "conj");
            pk_bool(b, 1);
        }
        if (meta_neg) {
            pk_str(b, "neg");
            pk_bool(b, 1);
        }
        pk_setitems(b);
    }
    pk_tuple(b);
    pk_reduce(b);
}
/* The first N elements of storage KEY (class CLS, STORAGE_N elements). */
static inline void pk_part(tb_bytes *b, const char *cls, const char *key, int64_t storage_n,
                           int64_t n)
{
    int64_t one = 1;
    pk_tensor_v2(b, cls, key, storage_n, 0, 1, &n, &one, 0, 0);
}
/* A dense 1-d tensor of N elements over storage KEY of class CLS. */
static inline void pk_vec(tb_bytes *b, const char *cls, const char *key, int64_t n)
{
    int64_t one = 1;
    pk_tensor_v2(b, cls, key, n, 0, 1, &n, &one, 0, 0);
}

/* ---- zip ----------------------------------------------------------------- */

typedef struct tz_rec {
    const char *name;
    const void *data;
    size_t len;
    int deflate;
    uint16_t flags;         /* general-purpose flags (local and central) */
    const char *local_name; /* NULL: NAME */
    int crc_zero;           /* write CRC 0 ("not computed") */
    int crc_wrong;          /* write a wrong CRC */
} tz_rec;

typedef struct tz_opts {
    int zip64;           /* zip64 end record + locator */
    size_t junk;         /* bytes of 'J' before the archive */
    const char *comment; /* archive comment */
} tz_opts;

static inline size_t tz_deflate(const void *in, size_t n, uint8_t **out)
{
    z_stream zs;
    size_t cap = compressBound((uLong)n) + 64;
    memset(&zs, 0, sizeof zs);
    *out = malloc(cap);
    deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)n;
    zs.next_out = *out;
    zs.avail_out = (uInt)cap;
    deflate(&zs, Z_FINISH);
    deflateEnd(&zs);
    return cap - zs.avail_out;
}

/* The archive for RECS[0..N); malloc'd bytes in OUT. */
static inline void tz_build(const tz_rec *recs, size_t n, const tz_opts *o, tb_bytes *out)
{
    tb_bytes cd = {0};
    uint64_t *offs = calloc(n ? n : 1, sizeof *offs);
    size_t base;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; o && i < o->junk; i++) tbb_c(out, 'J');
    base = out->n;
    for (size_t i = 0; i < n; i++) {
        const tz_rec *r = &recs[i];
        uint8_t *packed = NULL;
        size_t clen = r->len;
        const void *data = r->data;
        const char *lname = r->local_name ? r->local_name : r->name;
        uint32_t crc = (uint32_t)crc32(0, r->data, (uInt)r->len);
        if (r->crc_zero) crc = 0;
        if (r->crc_wrong) crc ^= 0x5a5a5a5a;
        if (r->deflate) {
            clen = tz_deflate(r->data, r->len, &packed);
            data = packed;
        }
        offs[i] = out->n - base;
        tbb_le32(out, 0x04034b50);
        tbb_le16(out, 20);
        tbb_le16(out, r->flags);
        tbb_le16(out, r->deflate ? 8 : 0);
        tbb_le16(out, 0);
        tbb_le16(out, 0x21);
        tbb_le32(out, crc);
        tbb_le32(out, (uint32_t)clen);
        tbb_le32(out, (uint32_t)r->len);
        tbb_le16(out, (uint16_t)strlen(lname));
        tbb_le16(out, 0);
        tbb_s(out, lname);
        tbb_put(out, data, clen);
        /* central entry */
        tbb_le32(&cd, 0x02014b50);
        tbb_le16(&cd, 20);
        tbb_le16(&cd, 20);
        tbb_le16(&cd, r->flags);
        tbb_le16(&cd, r->deflate ? 8 : 0);
        tbb_le16(&cd, 0);
        tbb_le16(&cd, 0x21);
        tbb_le32(&cd, crc);
        tbb_le32(&cd, (uint32_t)clen);
        tbb_le32(&cd, (uint32_t)r->len);
        tbb_le16(&cd, (uint16_t)strlen(r->name));
        tbb_le16(&cd, 0);
        tbb_le16(&cd, 0);
        tbb_le16(&cd, 0);
        tbb_le16(&cd, 0);
        tbb_le32(&cd, 0);
        tbb_le32(&cd, (uint32_t)offs[i]);
        tbb_s(&cd, r->name);
        free(packed);
    }
    {
        uint64_t cd_off = out->n - base, cd_len = cd.n;
        tbb_put(out, cd.p, cd.n);
        if (o && o->zip64) {
            uint64_t z64_off = out->n - base;
            tbb_le32(out, 0x06064b50);
            tbb_le64(out, 44);
            tbb_le16(out, 45);
            tbb_le16(out, 45);
            tbb_le32(out, 0);
            tbb_le32(out, 0);
            tbb_le64(out, n);
            tbb_le64(out, n);
            tbb_le64(out, cd_len);
            tbb_le64(out, cd_off);
            tbb_le32(out, 0x07064b50);
            tbb_le32(out, 0);
            tbb_le64(out, z64_off);
            tbb_le32(out, 1);
        }
        tbb_le32(out, 0x06054b50);
        tbb_le16(out, 0);
        tbb_le16(out, 0);
        tbb_le16(out, o && o->zip64 ? 0xFFFF : (uint16_t)n);
        tbb_le16(out, o && o->zip64 ? 0xFFFF : (uint16_t)n);
        tbb_le32(out, o && o->zip64 ? 0xFFFFFFFFu : (uint32_t)cd_len);
        tbb_le32(out, o && o->zip64 ? 0xFFFFFFFFu : (uint32_t)cd_off);
        tbb_le16(out, (uint16_t)(o && o->comment ? strlen(o->comment) : 0));
        if (o && o->comment) tbb_s(out, o->comment);
    }
    tbb_free(&cd);
    free(offs);
}

/* ---- legacy stream and tar ------------------------------------------------ */

/* The first three pickles of a legacy file (magic, 1001, sys_info). */
static inline void tl_head(tb_bytes *b, int little_endian)
{
    static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                    0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
    tbb_put(b, magic, sizeof magic);
    pk_proto(b);
    tbb_c(b, 'M');
    tbb_le16(b, 1001);
    pk_stop(b);
    pk_proto(b);
    pk_empty_dict(b);
    pk_mark(b);
    pk_str(b, "protocol_version");
    pk_int(b, 1001);
    pk_str(b, "little_endian");
    pk_bool(b, little_endian);
    pk_setitems(b);
    pk_stop(b);
}

/* A ustar member header + data, padded. */
static inline void tt_member(tb_bytes *b, const char *name, const void *data, size_t n)
{
    uint8_t h[512];
    unsigned sum = 0;
    memset(h, 0, sizeof h);
    snprintf((char *)h, 100, "%s", name);
    memcpy(h + 100, "0000644", 8);
    memcpy(h + 108, "0000000", 8);
    memcpy(h + 116, "0000000", 8);
    snprintf((char *)h + 124, 12, "%011o", (unsigned)n);
    memcpy(h + 136, "00000000000", 12);
    h[156] = '0';
    memcpy(h + 257, "ustar\0" "00", 8);
    memset(h + 148, ' ', 8);
    for (int i = 0; i < 512; i++) sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
    h[155] = ' ';
    tbb_put(b, h, 512);
    tbb_put(b, data, n);
    while (b->n % 512) tbb_c(b, 0);
}
static inline void tt_end(tb_bytes *b)
{
    uint8_t z[1024];
    memset(z, 0, sizeof z);
    tbb_put(b, z, sizeof z);
}

#endif
