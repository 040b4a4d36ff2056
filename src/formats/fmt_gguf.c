/*
 * fmt_gguf.c -- the GGUF reader (llama.cpp, stable-diffusion.cpp, Ollama).
 *
 * Layout (all fields in the file's byte order; v1 has u32 where v2/v3 have u64):
 *   u32 magic "GGUF" (bytes 47 47 55 46, never swapped)
 *   u32 version        1, 2 or 3; big-endian files read 0x0N000000 as LE
 *   u64 tensor_count   (v1: u32)
 *   u64 kv_count       (v1: u32)
 *   kv[]               string key; u32 type; value
 *   tensor_info[]      string name; u32 n_dims; u64 ne[n_dims] (v1: u32);
 *                      u32 ggml type; u64 offset (relative to the data section)
 *   padding to a multiple of general.alignment (U32, power of two, default 32)
 *   data section
 * string = u64 length (v1: u32) + bytes, no NUL. Value types: 0 U8, 1 I8,
 * 2 U16, 3 I16, 4 U32, 5 I32, 6 F32, 7 BOOL (one byte), 8 STRING,
 * 9 ARRAY (u32 element type, u64 count, elements; arrays may nest),
 * 10 U64, 11 I64, 12 F64.
 *
 * Shapes: ne[0] varies fastest, so the PyTorch shape is ne reversed.
 * Split models (`STEM-00001-of-00003.gguf`, keys split.no / split.count) are
 * read as one model: opening any part reads every part in order; the
 * metadata is the first part's.
 *
 * Checks, each answering a rule of the format or a past parser bug (GGUF.md 7):
 *  - counts of keys and tensors are bounded by the bytes left before any loop
 *    or allocation: each key takes at least 14 bytes (v1: 10), each tensor
 *    info 25 (v1: 21) (CVE-2024-25664, CVE-2024-25668: count x struct size
 *    wrapping);
 *  - a string's length is compared with the bytes left, never incremented
 *    (CVE-2024-25665, CVE-2024-23496: length 0xFFFF...FF whose +1 wraps);
 *  - an array's count times its element size (strings: their length field;
 *    nested arrays: their header) must fit in the bytes left before its
 *    elements are walked (CVE-2024-25666, CVE-2024-25667, CVE-2024-21836,
 *    CVE-2024-23605; gguf-py PR #27188, a 43-byte file whose 2^63-element
 *    array hangs a reader); arrays nest at most 8 deep;
 *  - a value type or a tensor type outside the table is an error (retired
 *    ggml ids 4, 5, 31-33, 36-38 included);
 *  - keys are non-empty, unique and hold no NUL; tensor names are unique and
 *    hold no NUL (ggml's 63-byte limit is the writer's concern: sd.cpp builds
 *    ggml with longer names);
 *  - at most 16 dimensions; each ne below 2^63 (ggml reads them as int64);
 *    the element count and the byte size computed with overflow checks
 *    (CVE-2024-21802, CVE-2026-33298, llama.cpp#27203); a quantised tensor's
 *    ne[0] is a whole number of blocks;
 *  - general.alignment is a UINT32 power of two; the data section start is
 *    aligned with a checked addition (llama.cpp PR #26318); every offset is a
 *    multiple of the alignment, and offset + size lies inside the data section,
 *    compared without overflow (CVE-2025-53630, CVE-2026-27940);
 *  - metadata is copied byte for byte and never interpreted (chat templates
 *    are Jinja programs: CVE-2024-34359); printing escapes control characters.
 * Big-endian files are read as such: plain tensors are swapped on read;
 * quantised blocks are taken as they are, as gguf-py's GGUFWriter writes them
 * and GGUFReader reads them (byte strings, fp16 scales unswapped; llama.cpp's
 * gguf_convert_endian.py swaps some block types' scales instead, and its
 * output decodes differently).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>

#include "gguf.h"

#define MAX_READ_DIMS 16
#define NAME_SHOWN 120

static const char *const type_names[GGUF_TYPE_COUNT] = {
    "UINT8", "INT8", "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
    "BOOL",  "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64",
};
static const char *const array_type_names[GGUF_TYPE_COUNT] = {
    "ARRAY[UINT8]",  "ARRAY[INT8]",   "ARRAY[UINT16]", "ARRAY[INT16]", "ARRAY[UINT32]",
    "ARRAY[INT32]",  "ARRAY[FLOAT32]", "ARRAY[BOOL]",  "ARRAY[STRING]", "ARRAY[ARRAY]",
    "ARRAY[UINT64]", "ARRAY[INT64]",  "ARRAY[FLOAT64]",
};

const char *cki_gguf_type_name(uint32_t t)
{
    return t < GGUF_TYPE_COUNT ? type_names[t] : "?";
}

unsigned cki_gguf_type_size(uint32_t t)
{
    static const unsigned sz[GGUF_TYPE_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return t < GGUF_TYPE_COUNT ? sz[t] : 0;
}

const cki_gguf_info *cki_gguf_info_of(const ck_model *m)
{
    if (!m || !m->driver_data || strcmp(m->format_name, "gguf") != 0) return NULL;
    return m->driver_data;
}

/* ---- probe ---------------------------------------------------------------- */

static int gguf_probe(const cki_source *src)
{
    if (src->len < 8 || memcmp(src->base, "GGUF", 4) != 0) return 0;
    return 100;
}

/* ---- one file -------------------------------------------------------------- */

typedef struct gr {
    ck_model *m;
    ck_ctx *ctx;
    const cki_source *src;
    const char *file;
    cki_cur c;
    int be, v1;
    uint32_t version;
    uint64_t flen; /* bytes in the file; the cursor covers the view, maybe fewer */
    int *more;     /* set when the parse stopped at the end of a web window */
} gr;

/* Bytes left in the file after the cursor (the cursor may see fewer: a web
 * window over a file too large to hold). */
static uint64_t file_left(const gr *g)
{
    return g->flen - g->c.pos;
}

/* The parse needs bytes past the view, which the file has: the caller widens
 * the view and parses again. */
static ck_status need_more(gr *g)
{
    *g->more = 1;
    return cki_fail(g->ctx, CK_EFORMAT, "%s: header runs past the %zu bytes read so far", g->file,
                    g->c.len);
}

static ck_status trunc_err(gr *g, const char *what)
{
    if (g->c.len < g->flen) return need_more(g);
    return cki_fail(g->ctx, CK_EFORMAT, "%s: %s at byte %zu runs past the end of the file (%llu bytes)",
                    g->file, what, g->c.pos, (unsigned long long)g->src->len);
}

static int rd(gr *g, unsigned n, uint64_t *v)
{
    const uint8_t *p;
    cki_gguf_rd r;
    if (cki_cur_take(&g->c, n, &p)) return 1;
    r.p = p;
    r.be = g->be;
    r.v1 = g->v1;
    *v = cki_gguf_ld(&r, n);
    return 0;
}

/* A length or count field: u32 in v1, u64 after. */
static int rd_len(gr *g, uint64_t *v)
{
    return rd(g, g->v1 ? 4 : 8, v);
}

/* Reads a string: its length is compared with the bytes left, never
 * incremented (CVE-2024-25665, CVE-2024-23496). */
static ck_status rd_str(gr *g, const char *what, const uint8_t **s, uint64_t *len)
{
    size_t at = g->c.pos;
    if (rd_len(g, len)) return trunc_err(g, what);
    if (*len > file_left(g))
        return cki_fail(g->ctx, CK_EFORMAT,
                        "%s: %s at byte %zu: length %llu is more than the %llu bytes left in the "
                        "file",
                        g->file, what, at, (unsigned long long)*len,
                        (unsigned long long)file_left(g));
    if (*len > cki_cur_left(&g->c)) return need_more(g);
    cki_cur_take(&g->c, (size_t)*len, s);
    return CK_OK;
}

/* The fewest bytes one element of type T can take (count bounds). */
static uint64_t min_elem(const gr *g, uint32_t t)
{
    if (t == GGUF_STRING) return g->v1 ? 4 : 8;
    if (t == GGUF_ARRAY) return 4 + (g->v1 ? 4 : 8);
    return cki_gguf_type_size(t);
}

/* Walks one value of type T, checking it; arrays are bounded before their
 * elements are walked (CVE-2024-25666/25667, CVE-2024-21836/23605, gguf-py
 * PR #27188). */
static ck_status skim(gr *g, const char *key, uint32_t t, int depth, uint32_t *elem,
                      uint64_t *count)
{
    size_t at = g->c.pos;
    if (t >= GGUF_TYPE_COUNT)
        return cki_fail(g->ctx, CK_EFORMAT, "%s: key '%s': value type %u at byte %zu is not a "
                                            "GGUF type (0-12)",
                        g->file, key, t, at);
    if (t == GGUF_STRING) {
        const uint8_t *s;
        uint64_t n;
        return rd_str(g, "string value", &s, &n);
    }
    if (t != GGUF_ARRAY) {
        if (cki_cur_skip(&g->c, cki_gguf_type_size(t))) return trunc_err(g, "value");
        return CK_OK;
    }
    {
        uint64_t et, n, need;
        if (depth >= GGUF_MAX_DEPTH)
            return cki_fail(g->ctx, CK_EFORMAT,
                            "%s: key '%s': arrays nested more than %d deep at byte %zu", g->file,
                            key, GGUF_MAX_DEPTH, at);
        if (rd(g, 4, &et) || rd_len(g, &n)) return trunc_err(g, "array header");
        if (et >= GGUF_TYPE_COUNT)
            return cki_fail(g->ctx, CK_EFORMAT,
                            "%s: key '%s': array element type %llu at byte %zu is not a GGUF "
                            "type (0-12)",
                            g->file, key, (unsigned long long)et, at);
        if (cki_mul_u64(&need, n, min_elem(g, (uint32_t)et)))
            return cki_fail(g->ctx, CK_EFORMAT,
                            "%s: key '%s': array of %llu %s at byte %zu: its size overflows 64 "
                            "bits",
                            g->file, key, (unsigned long long)n, type_names[et], at);
        if (need > file_left(g))
            return cki_fail(g->ctx, CK_EFORMAT,
                            "%s: key '%s': array of %llu %s at byte %zu needs at least %llu "
                            "bytes but %llu are left in the file",
                            g->file, key, (unsigned long long)n, type_names[et], at,
                            (unsigned long long)need, (unsigned long long)file_left(g));
        if (need > cki_cur_left(&g->c)) return need_more(g);
        if (elem) *elem = (uint32_t)et;
        if (count) *count = n;
        if (et != GGUF_STRING && et != GGUF_ARRAY) {
            cki_cur_skip(&g->c, (size_t)need);
            return CK_OK;
        }
        for (uint64_t i = 0; i < n; i++) {
            ck_status st = skim(g, key, (uint32_t)et, depth + 1, NULL, NULL);
            if (st) return st;
        }
    }
    return CK_OK;
}

/* ---- rendering values (bytes already checked by skim) ----------------------- */

static void put_scalar(cki_buf *b, cki_gguf_rd *r, uint32_t t, int json)
{
    uint64_t v;
    switch (t) {
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64:
        v = cki_gguf_ld(r, cki_gguf_type_size(t));
        cki_buf_printf(b, "%llu", (unsigned long long)v);
        break;
    case GGUF_I8: v = cki_gguf_ld(r, 1); cki_buf_printf(b, "%d", (int)(int8_t)v); break;
    case GGUF_I16: v = cki_gguf_ld(r, 2); cki_buf_printf(b, "%d", (int)(int16_t)v); break;
    case GGUF_I32: v = cki_gguf_ld(r, 4); cki_buf_printf(b, "%ld", (long)(int32_t)v); break;
    case GGUF_I64: v = cki_gguf_ld(r, 8); cki_buf_printf(b, "%lld", (long long)(int64_t)v); break;
    case GGUF_BOOL:
        v = cki_gguf_ld(r, 1);
        cki_buf_puts(b, v ? "true" : "false");
        break;
    case GGUF_F32: case GGUF_F64: {
        double d;
        if (t == GGUF_F32) {
            uint32_t u = (uint32_t)cki_gguf_ld(r, 4);
            float f;
            memcpy(&f, &u, 4);
            d = f;
        } else {
            v = cki_gguf_ld(r, 8);
            memcpy(&d, &v, 8);
        }
        if (d != d) cki_buf_puts(b, json ? "\"nan\"" : "nan");
        else if (d > 1e308 * 10) cki_buf_puts(b, json ? "\"inf\"" : "inf");
        else if (d < -1e308 * 10) cki_buf_puts(b, json ? "\"-inf\"" : "-inf");
        else cki_buf_printf(b, t == GGUF_F32 ? "%.9g" : "%.17g", d);
        break;
    }
    default: break;
    }
}

/* Renders one value as JSON (strings escaped, arrays whole). */
static void put_json(cki_buf *b, cki_gguf_rd *r, uint32_t t)
{
    if (t == GGUF_STRING) {
        uint64_t n = cki_gguf_ld_len(r);
        cki_buf_json_str(b, (const char *)r->p, (size_t)n);
        r->p += n;
    } else if (t == GGUF_ARRAY) {
        uint32_t et = (uint32_t)cki_gguf_ld(r, 4);
        uint64_t n = cki_gguf_ld_len(r);
        cki_buf_putc(b, '[');
        for (uint64_t i = 0; i < n && !b->failed; i++) {
            if (i) cki_buf_puts(b, ", ");
            put_json(b, r, et);
        }
        cki_buf_putc(b, ']');
    } else {
        put_scalar(b, r, t, 1);
    }
}

/* ---- the driver data ----------------------------------------------------------- */

static void info_free(ck_model *m, void *data)
{
    cki_gguf_info *in = data;
    if (!in) return;
    cki_free(m->ctx, in->kv);
    cki_free(m->ctx, in);
}

static const char *gguf_meta_type(const ck_model *m, size_t i)
{
    const cki_gguf_info *in = cki_gguf_info_of(m);
    if (!in || i >= m->meta_count) return NULL;
    for (size_t k = 0; k < in->kv_count; k++) {
        if (strcmp(in->kv[k].key, m->meta_keys[i]) != 0) continue;
        if (in->kv[k].type == GGUF_ARRAY) return array_type_names[in->kv[k].elem_type];
        return type_names[in->kv[k].type];
    }
    return NULL;
}

/* Sets the model's metadata (scalars as text, arrays as "[TYPE x COUNT]") and
 * the values document (every array whole) from the first file's keys. */
static ck_status publish(ck_model *m, const cki_gguf_info *in)
{
    cki_buf b, j;
    ck_status st = CK_OK;
    int first = 1;
    cki_buf_init(&b, m->ctx, 0);
    cki_buf_init(&j, m->ctx, 0);
    cki_buf_printf(&j, "{\"gguf\": {\"version\": %u, \"byte_order\": \"%s\", \"alignment\": %u, "
                       "\"files\": %u, \"arrays\": {",
                   in->version, in->big_endian ? "big" : "little", in->alignment, in->splits);
    for (size_t k = 0; k < in->kv_count && !st; k++) {
        const cki_gguf_kv *kv = &in->kv[k];
        cki_gguf_rd r = {kv->raw, in->big_endian, in->version == 1};
        b.len = 0;
        if (kv->type == GGUF_STRING) {
            uint64_t n = cki_gguf_ld_len(&r);
            st = cki_model_set_meta(m, kv->key, strlen(kv->key), (const char *)r.p, (size_t)n);
            continue;
        }
        if (kv->type == GGUF_ARRAY) {
            cki_buf_printf(&b, "[%s x %llu]", type_names[kv->elem_type],
                           (unsigned long long)kv->count);
            cki_buf_puts(&j, first ? "" : ", ");
            first = 0;
            cki_buf_json_str(&j, kv->key, strlen(kv->key));
            cki_buf_printf(&j, ": {\"type\": \"%s\", \"count\": %llu, \"values\": ",
                           type_names[kv->elem_type], (unsigned long long)kv->count);
            put_json(&j, &r, GGUF_ARRAY);
            cki_buf_putc(&j, '}');
        } else {
            put_scalar(&b, &r, kv->type, 0);
        }
        if (b.failed) break;
        st = cki_model_set_meta(m, kv->key, strlen(kv->key), b.p, b.len);
    }
    cki_buf_puts(&j, "}}}");
    if (!st && (b.failed || j.failed)) st = CK_ENOMEM;
    if (!st) cki_model_set_values(m, cki_buf_take(&j));
    cki_buf_free(&b);
    cki_buf_free(&j);
    return st;
}

/* ---- headers --------------------------------------------------------------------- */

typedef struct file_facts {
    uint64_t split_no, split_count; /* 0, 0 when not split */
    int64_t split_tensors;          /* -1 when absent */
    uint64_t tensors;
} file_facts;

/* An unsigned integer key value (any integer type), for split.* keys. */
static int uint_value(const gr *g, const uint8_t *raw, uint32_t t, uint64_t *v)
{
    cki_gguf_rd r = {raw, g->be, g->v1};
    unsigned n = cki_gguf_type_size(t);
    if (t == GGUF_STRING || t >= GGUF_ARRAY || t == GGUF_F32 || t == GGUF_BOOL) return 1;
    *v = cki_gguf_ld(&r, n);
    if ((t == GGUF_I8 && (int8_t)*v < 0) || (t == GGUF_I16 && (int16_t)*v < 0) ||
        (t == GGUF_I32 && (int32_t)*v < 0) || (t == GGUF_I64 && (int64_t)*v < 0))
        return 1;
    return 0;
}

static const char *shown(char *buf, const uint8_t *s, uint64_t n)
{
    size_t k = n > NAME_SHOWN ? NAME_SHOWN : (size_t)n;
    for (size_t i = 0; i < k; i++) buf[i] = isprint(s[i]) ? (char)s[i] : '?';
    strcpy(buf + k, k < n ? "..." : "");
    return buf;
}

/* Parses one file into M. INFO (NULL for the second and later parts of a
 * split model) receives the keys. */
static ck_status read_file(ck_model *m, const cki_source *src, cki_gguf_info *info,
                           file_facts *ff, int with_tensors, int *more)
{
    gr g;
    uint64_t ver, n_tensors, n_kv, align = GGUF_DEFAULT_ALIGNMENT, data_start, data_len;
    ck_status st = CK_OK;
    cki_map keys;
    char nb[NAME_SHOWN + 4];
    uint8_t v0[4];

    memset(&g, 0, sizeof g);
    memset(ff, 0, sizeof *ff);
    ff->split_tensors = -1;
    g.m = m;
    g.ctx = m->ctx;
    g.src = src;
    g.file = src->path;
    g.flen = src->len;
    g.more = more;
    *more = 0;
    cki_cur_init(&g.c, src->base, (size_t)src->view_len);
    if (src->len < 8 || memcmp(src->base, "GGUF", 4) != 0)
        return cki_fail(g.ctx, CK_EFORMAT, "%s: no GGUF magic", g.file);
    cki_cur_skip(&g.c, 4);
    memcpy(v0, src->base + 4, 4);
    ver = cki_ld_le32(v0);
    /* a big-endian file's version reads 0xNN000000 little-endian: ggml's and
     * gguf-py's test (low 16 bits zero) */
    if ((ver & 0xFFFF) == 0 && ver) {
        g.be = 1;
        ver = cki_ld_be32(v0);
    }
    cki_cur_skip(&g.c, 4);
    if (ver < 1 || ver > 3)
        return cki_fail(g.ctx, CK_EUNSUPPORTED,
                        "%s: GGUF version %llu (ckptkit reads versions 1, 2 and 3)", g.file,
                        (unsigned long long)ver);
    g.version = (uint32_t)ver;
    g.v1 = ver == 1;
    if (rd_len(&g, &n_tensors) || rd_len(&g, &n_kv)) return trunc_err(&g, "header");
    /* every key takes at least its length field, one byte, its type and a
     * one-byte value; every tensor info its name field, one byte, n_dims,
     * type and offset: counts beyond what the file can hold are refused before
     * anything is allocated (CVE-2024-25664, CVE-2024-25668) */
    {
        uint64_t min_kv = (g.v1 ? 4u : 8u) + 1 + 4 + 1, min_ti = (g.v1 ? 4u : 8u) + 1 + 4 + 4 + 8;
        uint64_t left = file_left(&g);
        if (n_kv > left / min_kv)
            return cki_fail(g.ctx, CK_EFORMAT,
                            "%s: kv_count %llu: %llu keys need at least %llu bytes each but the "
                            "file has %llu bytes after the header",
                            g.file, (unsigned long long)n_kv, (unsigned long long)n_kv,
                            (unsigned long long)min_kv, (unsigned long long)left);
        if (n_tensors > left / min_ti)
            return cki_fail(g.ctx, CK_EFORMAT,
                            "%s: tensor_count %llu: %llu tensor infos need at least %llu bytes "
                            "each but the file has %llu bytes after the header",
                            g.file, (unsigned long long)n_tensors, (unsigned long long)n_tensors,
                            (unsigned long long)min_ti, (unsigned long long)left);
        if (n_tensors + m->count > ck_ctx_get_limit(g.ctx, CK_LIMIT_TENSORS))
            return cki_fail(g.ctx, CK_ELIMIT, "%s: %llu tensors (limit %llu)", g.file,
                            (unsigned long long)n_tensors,
                            (unsigned long long)ck_ctx_get_limit(g.ctx, CK_LIMIT_TENSORS));
    }
    ff->tensors = n_tensors;
    if (info) {
        info->version = g.version;
        info->big_endian = g.be;
        info->kv = cki_calloc(g.ctx, n_kv ? (size_t)n_kv : 1, sizeof *info->kv);
        if (!info->kv) return CK_ENOMEM;
    }
    cki_map_init(&keys, g.ctx);
    for (uint64_t k = 0; k < n_kv && !st; k++) {
        const uint8_t *ks, *raw;
        uint64_t kl, t;
        uint32_t et = 0;
        uint64_t cnt = 0;
        size_t at = g.c.pos, prev;
        char *key;
        int r;
        if ((st = rd_str(&g, "key", &ks, &kl))) break;
        if (kl == 0 || memchr(ks, 0, (size_t)kl)) {
            st = cki_fail(g.ctx, CK_EFORMAT, "%s: key %llu at byte %zu is %s", g.file,
                          (unsigned long long)k, at, kl ? "holds a NUL byte" : "empty");
            break;
        }
        key = cki_arena_strndup(&m->arena, (const char *)ks, (size_t)kl);
        if (!key) { st = CK_ENOMEM; break; }
        r = cki_map_put(&keys, key, (size_t)kl, (size_t)k, &prev);
        if (r < 0) { st = CK_ENOMEM; break; }
        if (r == 1) { /* ggml: keys are unique */
            st = cki_fail(g.ctx, CK_EFORMAT, "%s: key '%s' at byte %zu appears twice", g.file,
                          shown(nb, ks, kl), at);
            break;
        }
        if (rd(&g, 4, &t)) { st = trunc_err(&g, "value type"); break; }
        raw = g.c.p + g.c.pos;
        if ((st = skim(&g, key, (uint32_t)t, 0, &et, &cnt))) break;
        if (!strcmp(key, "general.alignment")) {
            /* ggml: UINT32, a non-zero power of two */
            uint64_t a = 0;
            if (t != GGUF_U32 || uint_value(&g, raw, (uint32_t)t, &a) || a == 0 || (a & (a - 1))) {
                st = cki_fail(g.ctx, CK_EFORMAT,
                              "%s: general.alignment must be a UINT32 power of two (got %s %llu)",
                              g.file, cki_gguf_type_name((uint32_t)t), (unsigned long long)a);
                break;
            }
            align = a;
        } else if (!strcmp(key, "split.no") || !strcmp(key, "split.count")) {
            uint64_t v;
            if (uint_value(&g, raw, (uint32_t)t, &v)) {
                st = cki_fail(g.ctx, CK_EFORMAT, "%s: %s must be an unsigned integer", g.file,
                              key);
                break;
            }
            if (key[6] == 'n') ff->split_no = v;
            else ff->split_count = v;
        } else if (!strcmp(key, "split.tensors.count")) {
            uint64_t v;
            if (!uint_value(&g, raw, (uint32_t)t, &v) && v <= INT64_MAX) ff->split_tensors = (int64_t)v;
        }
        if (info) {
            cki_gguf_kv *kv = &info->kv[info->kv_count++];
            kv->key = key;
            kv->type = (uint32_t)t;
            kv->elem_type = et;
            kv->count = cnt;
            kv->raw = raw;
            kv->raw_len = (uint64_t)(g.c.p + g.c.pos - raw);
        }
    }
    cki_map_free(&keys);
    if (st) return st;
    if (info) info->alignment = (uint32_t)align;
    if (!with_tensors) return CK_OK;

    /* tensor infos */
    {
        typedef struct ti {
            const uint8_t *name;
            uint64_t name_len, off, nbytes;
            int ndim;
            int64_t shape[MAX_READ_DIMS];
            ck_dtype dt;
        } ti;
        ti *infos = cki_calloc(g.ctx, n_tensors ? (size_t)n_tensors : 1, sizeof *infos);
        if (!infos) return CK_ENOMEM;
        for (uint64_t i = 0; i < n_tensors && !st; i++) {
            ti *x = &infos[i];
            uint64_t nd, type, numel = 1;
            size_t at = g.c.pos;
            if ((st = rd_str(&g, "tensor name", &x->name, &x->name_len))) break;
            if (memchr(x->name, 0, (size_t)x->name_len)) {
                st = cki_fail(g.ctx, CK_EFORMAT, "%s: tensor name at byte %zu holds a NUL byte",
                              g.file, at);
                break;
            }
            if (rd(&g, 4, &nd)) { st = trunc_err(&g, "tensor info"); break; }
            if (nd > MAX_READ_DIMS) {
                st = cki_fail(g.ctx, CK_EFORMAT, "%s: tensor '%s': %llu dimensions (at most %d)",
                              g.file, shown(nb, x->name, x->name_len), (unsigned long long)nd,
                              MAX_READ_DIMS);
                break;
            }
            x->ndim = (int)nd;
            for (int d = 0; d < x->ndim && !st; d++) {
                uint64_t ne;
                if (rd(&g, g.v1 ? 4 : 8, &ne)) { st = trunc_err(&g, "tensor dimensions"); break; }
                /* ggml reads ne as int64 and refuses negatives (CVE-2026-33298) */
                if (ne > (uint64_t)INT64_MAX)
                    st = cki_fail(g.ctx, CK_EFORMAT,
                                  "%s: tensor '%s': ne[%d] = %llu is negative as int64", g.file,
                                  shown(nb, x->name, x->name_len), d, (unsigned long long)ne);
                /* the element count must not wrap (CVE-2024-21802, llama.cpp#27203) */
                else if (cki_mul_u64(&numel, numel, ne))
                    st = cki_fail(g.ctx, CK_EFORMAT,
                                  "%s: tensor '%s': element count overflows 64 bits at ne[%d]",
                                  g.file, shown(nb, x->name, x->name_len), d);
                x->shape[x->ndim - 1 - d] = (int64_t)ne; /* PyTorch order: ne reversed */
            }
            if (st) break;
            if (rd(&g, 4, &type) || rd(&g, 8, &x->off)) { st = trunc_err(&g, "tensor info"); break; }
            if (type > UINT32_MAX || cki_dtype_from_ggml((uint32_t)type, &x->dt)) {
                st = cki_fail(g.ctx, CK_EFORMAT,
                              "%s: tensor '%s': type id %llu is not in ggml's type table "
                              "(unknown or retired)",
                              g.file, shown(nb, x->name, x->name_len), (unsigned long long)type);
                break;
            }
            if (ck_dtype_is_quantized(x->dt)) {
                unsigned blk = ck_dtype_block(x->dt, NULL);
                uint64_t ne0 = x->ndim ? (uint64_t)x->shape[x->ndim - 1] : 1;
                if (ne0 % blk) {
                    st = cki_fail(g.ctx, CK_EFORMAT,
                                  "%s: tensor '%s': ne[0] = %llu is not a multiple of %s's block "
                                  "of %u",
                                  g.file, shown(nb, x->name, x->name_len),
                                  (unsigned long long)ne0, ck_dtype_name(x->dt), blk);
                    break;
                }
            }
            /* the byte size must not wrap (CVE-2024-21802) */
            if (cki_dtype_nbytes(x->dt, numel, &x->nbytes)) {
                st = cki_fail(g.ctx, CK_EFORMAT,
                              "%s: tensor '%s': byte size of %llu %s elements overflows 64 bits",
                              g.file, shown(nb, x->name, x->name_len), (unsigned long long)numel,
                              ck_dtype_name(x->dt));
                break;
            }
            if (x->off % align) {
                st = cki_fail(g.ctx, CK_EFORMAT,
                              "%s: tensor '%s': offset %llu is not a multiple of the alignment %llu",
                              g.file, shown(nb, x->name, x->name_len), (unsigned long long)x->off,
                              (unsigned long long)align);
                break;
            }
        }
        /* the data section starts at the next multiple of the alignment; the
         * addition is checked (llama.cpp PR #26318) */
        if (!st) {
            uint64_t pad = (align - g.c.pos % align) % align;
            if (cki_add_u64(&data_start, g.c.pos, pad))
                st = cki_fail(g.ctx, CK_EFORMAT, "%s: data section offset overflows", g.file);
            else if (data_start > src->len && n_tensors)
                st = cki_fail(g.ctx, CK_EFORMAT,
                              "%s: the data section would start at byte %llu, past the end of "
                              "the file (%llu bytes)",
                              g.file, (unsigned long long)data_start,
                              (unsigned long long)src->len);
        }
        data_len = !st && data_start <= src->len ? src->len - data_start : 0;
        for (uint64_t i = 0; i < n_tensors && !st; i++) {
            ti *x = &infos[i];
            cki_storage *sg;
            char what[NAME_SHOWN + 16];
            /* offset + size inside the data section, compared without
             * overflow (CVE-2025-53630, CVE-2026-27940) */
            if (cki_out_of(x->off, x->nbytes, data_len)) {
                st = cki_fail(g.ctx, CK_EFORMAT,
                              "%s: tensor '%s': %llu bytes at offset %llu pass the end of the "
                              "data section (%llu bytes)",
                              g.file, shown(nb, x->name, x->name_len),
                              (unsigned long long)x->nbytes, (unsigned long long)x->off,
                              (unsigned long long)data_len);
                break;
            }
            snprintf(what, sizeof what, "tensor '%s'", shown(nb, x->name, x->name_len));
            if ((st = cki_model_storage(m, src, data_start + x->off, x->nbytes, x->dt, what, &sg)))
                break;
            /* quantised blocks are byte strings to gguf-py, which writes and reads
             * them unswapped in big-endian files: so are they here */
            sg->big_endian = g.be && cki_dtype_size(x->dt) > 1;
            st = cki_model_add_tensor(m, g.file, (const char *)x->name, (size_t)x->name_len, x->dt,
                                      x->ndim, x->shape, NULL, 0, sg, 0, NULL);
        }
        cki_free(g.ctx, infos);
    }
    return st;
}

/* read_file, widening a web window over a file too large to hold (twice the
 * view each time, up to the header limit) until the keys and tensor infos lie
 * inside it. Natively the view is the whole file and this is one call. */
static ck_status read_file_view(ck_model *m, const cki_source *src, cki_gguf_info *info,
                                file_facts *ff, int with_tensors)
{
    for (;;) {
        int more = 0;
        uint64_t want, cap;
        ck_status st = read_file(m, src, info, ff, with_tensors, &more);
        if (!st || !more) return st;
        if (info) { /* parsed again from the start */
            cki_free(m->ctx, info->kv);
            info->kv = NULL;
            info->kv_count = 0;
        }
        cap = ck_ctx_get_limit(m->ctx, CK_LIMIT_HEADER_BYTES) + CKI_SOURCE_WINDOW;
        want = src->view_len > src->len / 2 ? src->len : src->view_len * 2;
        if (want > cap && cap > src->view_len) want = cap;
        /* past the cap, cki_source_view gives the limit's error */
        if ((st = cki_source_view(m->ctx, src, want))) return st;
    }
}

/* ---- split models ---------------------------------------------------------------- */

/* If PATH ends in "-NNNNN-of-MMMMM.gguf": the stem length, part and count. */
static int split_name(const char *path, size_t *stem, unsigned *no, unsigned *count)
{
    size_t n = strlen(path);
    const char *s;
    if (n < 20 || strcmp(path + n - 5, ".gguf") != 0) return 0;
    s = path + n - 5 - 15; /* "-00001-of-00003" */
    if (s[0] != '-' || memcmp(s + 6, "-of-", 4) != 0) return 0;
    for (int i = 1; i < 15; i++)
        if ((i < 6 || i > 9) && !isdigit((unsigned char)s[i])) return 0;
    *no = *count = 0; /* five digits each, checked above: no overflow */
    for (int i = 1; i < 6; i++) *no = *no * 10 + (unsigned)(s[i] - '0');
    for (int i = 10; i < 15; i++) *count = *count * 10 + (unsigned)(s[i] - '0');
    *stem = (size_t)(s - path);
    return 1;
}

static ck_status gguf_read(ck_model *m, const cki_source *src, const ck_open_opts *opts)
{
    ck_ctx *ctx = m->ctx;
    cki_gguf_info *info;
    file_facts ff;
    ck_status st;
    size_t stem;
    unsigned no, count;
    int64_t info_tensors = -1;
    (void)opts;

    if (m->driver_data)
        return cki_fail(ctx, CK_EUNSUPPORTED,
                        "%s: a GGUF file inside a sharded checkpoint index is not supported",
                        src->path);
    info = cki_calloc(ctx, 1, sizeof *info);
    if (!info) return CK_ENOMEM;
    m->driver_data = info;
    m->driver_free = info_free;
    m->meta_type = gguf_meta_type;
    info->splits = 1;
    /* the keys first: is this one part of a split model? */
    if ((st = read_file_view(m, src, NULL, &ff, 0))) return st;
    if (ff.split_count <= 1) {
        if ((st = read_file_view(m, src, info, &ff, 1))) return st;
        return publish(m, info);
    }
    /* a split model: every part, in order, found from this one's name */
    if (!split_name(src->path, &stem, &no, &count) || count != ff.split_count ||
        no != ff.split_no + 1)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: split.no %llu of split.count %llu, but the file is not named "
                        "STEM-%05llu-of-%05llu.gguf",
                        src->path, (unsigned long long)ff.split_no,
                        (unsigned long long)ff.split_count, (unsigned long long)ff.split_no + 1,
                        (unsigned long long)ff.split_count);
    info->splits = count;
    for (unsigned k = 1; k <= count; k++) {
        char *path = cki_malloc(ctx, stem + 32);
        const cki_source *part = src;
        cki_source *opened;
        if (!path) return CK_ENOMEM;
        snprintf(path, stem + 32, "%.*s-%05u-of-%05u.gguf", (int)stem, src->path, k, count);
        st = CK_OK;
        if (k != no) {
            st = cki_source_open(ctx, path, &opened);
            if (!st) st = cki_model_add_source(m, opened);
            if (!st) cki_mem_allow_input(ctx, opened->len);
            part = opened;
        }
        cki_free(ctx, path);
        if (st) return st;
        if ((st = read_file_view(m, part, k == 1 ? info : NULL, &ff, 1))) return st;
        if (ff.split_count != count || ff.split_no != k - 1)
            return cki_fail(ctx, CK_EFORMAT,
                            "%s: split.no %llu of split.count %llu, expected part %u of %u",
                            part->path, (unsigned long long)ff.split_no,
                            (unsigned long long)ff.split_count, k - 1, count);
        /* split.tensors.count in the first part counts the whole model */
        if (k == 1) info->splits = count;
        if (k == 1 && ff.split_tensors >= 0) info_tensors = ff.split_tensors;
    }
    if (info_tensors >= 0 && (uint64_t)info_tensors != m->count)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: split.tensors.count is %lld but the %u parts hold %zu tensors",
                        src->path, (long long)info_tensors, count, m->count);
    return publish(m, info);
}

const cki_format cki_fmt_gguf = {
    "gguf",
    (const char *const[]){".gguf", NULL},
    CKI_CAP_READ | CKI_CAP_WRITE | CKI_CAP_METADATA | CKI_CAP_QUANT | CKI_CAP_TYPED_META |
        CKI_CAP_SPLIT | CKI_CAP_WINDOW,
    gguf_probe,
    gguf_read,
    cki_gguf_write,
};
