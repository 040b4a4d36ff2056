/*
 * fmt_safetensors.c -- the safetensors reader and writer.
 *
 * Layout:
 *   [0, 8)       N: u64 LE, the header's length in bytes (padding included)
 *   [8, 8+N)     UTF-8 JSON object; each key is a tensor name mapping to
 *                {"dtype": STR, "shape": [uint...], "data_offsets": [BEGIN, END]}
 *                (END exclusive, relative to 8+N); the reserved key
 *                "__metadata__" maps to an object of string -> string
 *   [8+N, EOF)   the data buffer: tensors little-endian, row-major, dense
 *
 * The reader applies every check of the reference implementation
 * (read_metadata + Metadata::validate), in its order, and is stricter where
 * that is safer:
 *   1. file >= 8 bytes; N <= CK_LIMIT_HEADER_BYTES (100,000,000 by default);
 *      8 + N <= file size (compared without overflow); header valid UTF-8;
 *   2. strict JSON (common/json.h): duplicate keys anywhere, NUL padding,
 *      any non-whitespace after the object are errors; JSON whitespace
 *      before and after the object is accepted as the reference does; the
 *      top level is an object; __metadata__ is an object of strings (null is
 *      refused) and does not look like a tensor entry; each entry is an
 *      object with a known dtype (C128 is ours, not safetensors'), a shape of
 *      at most 64 unsigned integers below 2^63, and data_offsets of exactly
 *      two unsigned integers with END >= BEGIN; unknown extra fields in an
 *      entry are ignored (as the reference does) with one warning; names and
 *      metadata holding NUL are refused (a C string would hide the rest);
 *   3. entries sorted by (BEGIN, END): each BEGIN equals the previous END
 *      (the first is 0): no holes, no overlaps;
 *   4. element count and bit count computed with overflow checks; the bit
 *      count is a whole number of bytes; END - BEGIN equals it;
 *   5. 8 + N + the last END equals the file size (no truncation, no trailing
 *      bytes that a polyglot file could hide things in).
 * Tensors are added in header order, each over its own zero-copy storage.
 * The header is parsed member by member (cki_json_parse_members), never as a
 * whole tree: a tensor costs its entry (48 bytes), its name and shape in the
 * model's arena, its storage record and tensor record, and its slot in the
 * name table; the header's pages are released once read.
 * Error offsets ("at byte K") are absolute file offsets.
 *
 * The writer follows the reference writer so files are interchangeable and
 * data is aligned: tensors ordered by dtype (reference enum order,
 * descending: 8-byte types first) then name (bytewise), offsets back to back;
 * compact JSON with __metadata__ first (keys sorted, "format":"pt" added
 * unless a "format" key is given), fields dtype, shape, data_offsets; the
 * header padded with spaces to a multiple of 8 and at most 100,000,000
 * bytes. Tensor bytes stream through cki_emit_tensor. Same input, same bytes.
 */
#include <stdio.h>
#include <stdlib.h>

#include "../common/json.h"
#include "format.h"

#define ST_HEADER_MAX 100000000ull /* the reference's limit, for writing */
#define ST_DEPTH 64                /* entries need 3; unknown fields may nest */
#define NAME_SHOWN 200             /* bytes of a name quoted in a message */
#define NAME_BUF (NAME_SHOWN + 4)
#define SHAPE_BUF 256

/* ---- message helpers ------------------------------------------------------ */

/* NAME clipped for a message ("..." appended when cut). */
static const char *shown(char *buf, const char *s, size_t n)
{
    int k = cki_json_clip(s, n, NAME_SHOWN);
    memcpy(buf, s, (size_t)k);
    strcpy(buf + k, (size_t)k < n ? "..." : "");
    return buf;
}

/* "[32, 32]"; long shapes end in ", ...]". */
static const char *shape_str(char *buf, int ndim, const int64_t *shape)
{
    size_t len = 1;
    buf[0] = '[';
    buf[1] = 0;
    for (int d = 0; d < ndim; d++) {
        char one[32];
        int k = snprintf(one, sizeof one, "%s%lld", d ? ", " : "", (long long)shape[d]);
        if (len + (size_t)k + 8 > SHAPE_BUF) {
            strcpy(buf + len, ", ...");
            len += 5;
            break;
        }
        memcpy(buf + len, one, (size_t)k + 1);
        len += (size_t)k;
    }
    strcpy(buf + len, "]");
    return buf;
}

/* The value in a message: a number's lexeme, else its JSON type. */
static const char *value_str(char *buf, const cki_json *v)
{
    if (v->type != CKI_JSON_NUMBER) return cki_json_type_name(v->type);
    return shown(buf, v->u.num, v->len);
}

/* ---- probe ------------------------------------------------------------------ */

static int st_probe(const cki_source *src)
{
    uint64_t n, i = 8, stop;
    if (src->len < 9) return 0;
    n = cki_ld_le64(src->base);
    stop = src->len < 8 + 4096 ? src->len : 8 + 4096;
    if (n <= src->len - 8 && 8 + n < stop) stop = 8 + n;
    while (i < stop && (src->base[i] == ' ' || src->base[i] == '\t' || src->base[i] == '\n' ||
                        src->base[i] == '\r'))
        i++;
    if (i >= stop || src->base[i] != '{') return 0;
    if (n <= src->len - 8) return 95;
    /* a plausible length that the file cannot hold: claim it so the reader
     * can say what is wrong (truncated, or a header over the limit) */
    if (n < (1ull << 40)) return 40;
    return 0;
}

/* ---- reader ----------------------------------------------------------------- */

typedef struct entry {
    const char *name;
    size_t name_len;
    ck_dtype dtype;
    int ndim;
    int64_t *shape; /* in the temporary arena */
    uint64_t begin, end;
} entry;

static int by_offsets(const void *a, const void *b)
{
    const entry *x = *(const entry *const *)a, *y = *(const entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x < y ? -1 : x > y; /* header order among equal ranges */
}

typedef struct reader {
    ck_model *m;
    ck_ctx *ctx;
    const char *file;
    uint64_t hdr_off; /* file offset of the JSON text (8) */
    int warned_field;
    entry *ents; /* one per tensor member, in header order */
    size_t count;
} reader;

static ck_status read_metadata(reader *r, const cki_json_member *mem)
{
    const cki_json *v = &mem->value;
    char nb[NAME_BUF];
    ck_status st;
    if (v->type == CKI_JSON_OBJECT) {
        const cki_json *off = cki_json_get(v, "data_offsets"), *shp = cki_json_get(v, "shape");
        if ((off && off->type == CKI_JSON_ARRAY) || (shp && shp->type == CKI_JSON_ARRAY))
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: header: '__metadata__' is reserved for metadata and cannot name "
                            "a tensor at byte %llu",
                            r->file, (unsigned long long)(r->hdr_off + mem->key_off));
    }
    if (v->type != CKI_JSON_OBJECT)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: header: __metadata__ is %s, not an object at byte %llu", r->file,
                        cki_json_type_name(v->type),
                        (unsigned long long)(r->hdr_off + v->off));
    for (size_t i = 0; i < v->len; i++) {
        const cki_json_member *kv = &v->u.members[i];
        shown(nb, kv->key, kv->key_len);
        if (memchr(kv->key, 0, kv->key_len))
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: header: __metadata__ key '%s' contains a NUL character at byte "
                            "%llu",
                            r->file, nb, (unsigned long long)(r->hdr_off + kv->key_off));
        if (kv->value.type != CKI_JSON_STRING)
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: header: __metadata__ value of '%s' is %s, not a string at byte "
                            "%llu",
                            r->file, nb, cki_json_type_name(kv->value.type),
                            (unsigned long long)(r->hdr_off + kv->value.off));
        if (memchr(kv->value.u.str, 0, kv->value.len))
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: header: __metadata__ value of '%s' contains a NUL character at "
                            "byte %llu",
                            r->file, nb, (unsigned long long)(r->hdr_off + kv->value.off));
        if ((st = cki_model_set_meta(r->m, kv->key, kv->key_len, kv->value.u.str, kv->value.len)))
            return st;
    }
    return CK_OK;
}

/* One unsigned integer of a shape or data_offsets array, with its message. */
static ck_status read_uint(reader *r, const char *name, const char *field, size_t idx,
                           const cki_json *v, uint64_t max, const char *max_text, uint64_t *out)
{
    char vb[NAME_BUF];
    const char *why = cki_json_to_u64(v, out);
    if (!why && *out > max) why = max_text;
    if (!why) return CK_OK;
    return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': %s[%zu] %s (%s)", r->file, name, field,
                    idx, why, value_str(vb, v));
}

/* A required field of a tensor entry, of type TYPE. */
static ck_status field(reader *r, const char *name, const cki_json *obj, const char *key,
                       cki_json_type type, const cki_json **out)
{
    const cki_json *v = cki_json_get(obj, key);
    if (!v)
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': missing field '%s'", r->file, name,
                        key);
    if (v->type != type)
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': %s is %s, not %s", r->file, name, key,
                        cki_json_type_name(v->type), cki_json_type_name(type));
    *out = v;
    return CK_OK;
}

static int key_is(const cki_json_member *m, const char *key)
{
    return m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0;
}

static ck_status read_entry(reader *r, cki_arena *tmp, const cki_json_member *mem, entry *e)
{
    const cki_json *v = &mem->value, *dt, *shape, *offs;
    char nb[NAME_BUF], db[40];
    uint64_t u;
    ck_status st;

    shown(nb, mem->key, mem->key_len);
    if (memchr(mem->key, 0, mem->key_len))
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: header: tensor name '%s' contains a NUL character at byte %llu",
                        r->file, nb, (unsigned long long)(r->hdr_off + mem->key_off));
    if (v->type != CKI_JSON_OBJECT)
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': entry is %s, not an object", r->file,
                        nb, cki_json_type_name(v->type));
    e->name = cki_arena_strndup(&r->m->arena, mem->key, mem->key_len); /* the tensor's name */
    if (!e->name) return CK_ENOMEM;
    e->name_len = mem->key_len;

    if ((st = field(r, nb, v, "dtype", CKI_JSON_STRING, &dt))) return st;
    if (cki_dtype_from_st_name(dt->u.str, dt->len, &e->dtype)) {
        int k = cki_json_clip(dt->u.str, dt->len, 32);
        snprintf(db, sizeof db, "%.*s%s", k, dt->u.str, (size_t)k < dt->len ? "..." : "");
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", r->file, nb, db);
    }

    if ((st = field(r, nb, v, "shape", CKI_JSON_ARRAY, &shape))) return st;
    if (shape->len > CKI_MAX_DIMS)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: tensor '%s': shape has %zu dimensions (at most %d)", r->file, nb,
                        shape->len, CKI_MAX_DIMS);
    e->ndim = (int)shape->len;
    e->shape = cki_arena_alloc_ptrs(tmp, sizeof(int64_t) * (shape->len ? shape->len : 1));
    if (!e->shape) return CK_ENOMEM;
    for (size_t d = 0; d < shape->len; d++) {
        if ((st = read_uint(r, nb, "shape", d, &shape->u.items[d], INT64_MAX,
                            "is larger than 2^63 - 1", &u)))
            return st;
        e->shape[d] = (int64_t)u;
    }

    if ((st = field(r, nb, v, "data_offsets", CKI_JSON_ARRAY, &offs))) return st;
    if (offs->len != 2)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: tensor '%s': data_offsets needs exactly 2 values, got %zu", r->file,
                        nb, offs->len);
    if ((st = read_uint(r, nb, "data_offsets", 0, &offs->u.items[0], UINT64_MAX, NULL,
                        &e->begin)) ||
        (st = read_uint(r, nb, "data_offsets", 1, &offs->u.items[1], UINT64_MAX, NULL, &e->end)))
        return st;
    if (e->end < e->begin)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: tensor '%s': data_offsets [%llu, %llu) end before they begin",
                        r->file, nb, (unsigned long long)e->begin, (unsigned long long)e->end);

    for (size_t i = 0; i < v->len && !r->warned_field; i++) {
        const cki_json_member *f = &v->u.members[i];
        char fb[NAME_BUF];
        if (key_is(f, "dtype") || key_is(f, "shape") || key_is(f, "data_offsets")) continue;
        cki_warn(r->ctx, "%s: tensor '%s': unknown field '%s' ignored", r->file, nb,
                 shown(fb, f->key, f->key_len));
        r->warned_field = 1;
    }
    return CK_OK;
}

/* Steps 3-5: the sorted ranges tile the data buffer exactly, and each holds
 * exactly its shape's bytes. */
static ck_status check_layout(reader *r, entry *ents, size_t count, uint64_t data_len)
{
    entry **order = NULL;
    const entry *prev = NULL;
    uint64_t expect = 0;
    char nb[NAME_BUF], pb[NAME_BUF], sb[SHAPE_BUF];
    ck_status st = CK_OK;

    if (count) {
        order = cki_malloc(r->ctx, count * sizeof *order);
        if (!order) return CK_ENOMEM;
    }
    for (size_t i = 0; i < count; i++) order[i] = &ents[i];
    if (count) qsort(order, count, sizeof *order, by_offsets);
    for (size_t i = 0; i < count; i++) {
        const entry *e = order[i];
        unsigned ebits = ck_dtype_bits(e->dtype);
        uint64_t numel = 1, bits;
        shown(nb, e->name, e->name_len);
        if (e->begin > expect) {
            st = cki_fail(r->ctx, CK_EFORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu) leave bytes [%llu, %llu) of "
                          "the data buffer unused",
                          r->file, nb, (unsigned long long)e->begin, (unsigned long long)e->end,
                          (unsigned long long)expect, (unsigned long long)e->begin);
            goto out;
        }
        if (e->begin < expect) {
            st = cki_fail(r->ctx, CK_EFORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu) overlap tensor '%s' at "
                          "[%llu, %llu)",
                          r->file, nb, (unsigned long long)e->begin, (unsigned long long)e->end,
                          shown(pb, prev->name, prev->name_len), (unsigned long long)prev->begin,
                          (unsigned long long)prev->end);
            goto out;
        }
        for (int d = 0; d < e->ndim; d++) {
            if (cki_mul_u64(&numel, numel, (uint64_t)e->shape[d])) {
                st = cki_fail(r->ctx, CK_EFORMAT,
                              "%s: tensor '%s': shape %s has more than 2^64 - 1 elements", r->file,
                              nb, shape_str(sb, e->ndim, e->shape));
                goto out;
            }
        }
        if (cki_mul_u64(&bits, numel, ebits)) {
            st = cki_fail(r->ctx, CK_EFORMAT,
                          "%s: tensor '%s': shape %s x %s has more than 2^64 - 1 bits", r->file, nb,
                          shape_str(sb, e->ndim, e->shape), ck_dtype_name(e->dtype));
            goto out;
        }
        if (bits % 8) {
            st = cki_fail(r->ctx, CK_EFORMAT,
                          "%s: tensor '%s': shape %s x %s is %llu bits, not a whole number of "
                          "bytes",
                          r->file, nb, shape_str(sb, e->ndim, e->shape), ck_dtype_name(e->dtype),
                          (unsigned long long)bits);
            goto out;
        }
        if (e->end - e->begin != bits / 8) {
            st = cki_fail(r->ctx, CK_EFORMAT,
                          "%s: tensor '%s': data_offsets [%llu, %llu) hold %llu bytes but shape %s "
                          "x %s needs %llu",
                          r->file, nb, (unsigned long long)e->begin, (unsigned long long)e->end,
                          (unsigned long long)(e->end - e->begin), shape_str(sb, e->ndim, e->shape),
                          ck_dtype_name(e->dtype), (unsigned long long)(bits / 8));
            goto out;
        }
        expect = e->end;
        prev = e;
    }
    if (expect < data_len)
        st = cki_fail(r->ctx, CK_EFORMAT,
                      "%s: data: the file has %llu bytes after the header but the tensors end at "
                      "%llu (%llu trailing bytes)",
                      r->file, (unsigned long long)data_len, (unsigned long long)expect,
                      (unsigned long long)(data_len - expect));
    else if (expect > data_len)
        st = cki_fail(r->ctx, CK_EFORMAT,
                      "%s: data: the tensors end at %llu but the file has only %llu bytes after "
                      "the header (truncated)",
                      r->file, (unsigned long long)expect, (unsigned long long)data_len);
out:
    cki_free(r->ctx, order);
    return st;
}

/* One top-level member of the header (cki_json_parse_members). */
static ck_status header_member(void *user, const cki_json_member *mem, size_t index, size_t total)
{
    reader *r = user;
    if (!r->ents) { /* sized once, for the parser's count of members */
        r->ents = cki_calloc(r->ctx, total ? total : 1, sizeof *r->ents);
        if (!r->ents) return CK_ENOMEM;
    }
    (void)index;
    if (key_is(mem, "__metadata__")) return read_metadata(r, mem);
    return read_entry(r, &r->m->arena, mem, &r->ents[r->count++]);
}

static ck_status st_read(ck_model *m, const cki_source *src, const ck_open_opts *opts)
{
    ck_ctx *ctx = m->ctx;
    reader r = {m, ctx, src->path, 8, 0, NULL, 0};
    uint64_t n, limit = ctx->limits[CK_LIMIT_HEADER_BYTES], data_off, k;
    const uint8_t *hdr;
    cki_json_type top = CKI_JSON_NULL;
    size_t top_off = 0;
    cki_json_opts jo = {ST_DEPTH, 0};
    cki_json_err err;
    entry *ents = NULL;
    size_t count = 0;
    ck_status st;

    if (src->len < 8)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: header: file of %llu bytes is too short for the 8-byte header length",
                        r.file, (unsigned long long)src->len);
    n = cki_ld_le64(src->base);
    if (n > limit)
        return cki_fail(ctx, CK_ELIMIT, "%s: header: length %llu exceeds the limit of %llu bytes",
                        r.file, (unsigned long long)n, (unsigned long long)limit);
    if (n > src->len - 8)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: header: length %llu runs past the end of the file (8 + %llu > %llu "
                        "bytes)",
                        r.file, (unsigned long long)n, (unsigned long long)n,
                        (unsigned long long)src->len);
    if ((st = cki_source_view(ctx, src, 8 + n))) return st; /* web window: read the header */
    hdr = src->base + 8;
    data_off = 8 + n;
    k = cki_json_utf8_prefix(hdr, (size_t)n);
    if (k != n)
        return cki_fail(ctx, CK_EFORMAT, "%s: header: invalid UTF-8 at byte %llu", r.file,
                        (unsigned long long)(8 + k));

    st = cki_json_parse_members(ctx, hdr, (size_t)n, &jo, header_member, &r, &top, &top_off,
                                &err);
    if (st) {
        if (st != CK_ENOMEM && err.msg[0])
            cki_fail(ctx, st, "%s: header: %s at byte %llu", r.file, err.msg,
                     (unsigned long long)(8 + err.off));
        goto out;
    }
    if (top != CKI_JSON_OBJECT) {
        st = cki_fail(ctx, CK_EFORMAT,
                      "%s: header: the top level is %s, not an object at byte %llu", r.file,
                      cki_json_type_name(top), (unsigned long long)(8 + top_off));
        goto out;
    }
    /* names and shapes are copied: the header's pages can go */
    cki_source_release(src, 0, data_off);
    ents = r.ents;
    count = r.count;
    if ((st = check_layout(&r, ents, count, src->len - data_off))) goto out;

    if ((st = cki_model_reserve(m, m->count + count, m->storage_count + count))) goto out;
    for (size_t i = 0; i < count; i++) {
        const entry *e = &ents[i];
        cki_storage *sg;
        char what[NAME_BUF + 16], nb[NAME_BUF];
        snprintf(what, sizeof what, "tensor '%s'", shown(nb, e->name, e->name_len));
        if ((st = cki_model_storage(m, src, data_off + e->begin, e->end - e->begin, e->dtype, what,
                                    &sg)))
            goto out;
        if ((st = cki_model_add_tensor_kept(m, r.file, e->name, e->name_len, e->dtype, e->ndim,
                                            e->shape, sg, NULL)))
            goto out;
    }
    if (!strcmp(m->format_name, "?")) m->format_name = "safetensors";
out:
    cki_free(ctx, r.ents);
    return st;
}

/* ---- writer ------------------------------------------------------------------ */

/* Position of a dtype in the reference's Dtype enum; the writer orders by it
 * (descending), so larger elements come first and all stay aligned. */
static int ref_rank(ck_dtype dt)
{
    switch (dt) {
    case CK_DT_BOOL: return 0;
    case CK_DT_F4: return 1;
    case CK_DT_F6_E2M3: return 2;
    case CK_DT_F6_E3M2: return 3;
    case CK_DT_U8: return 4;
    case CK_DT_I8: return 5;
    case CK_DT_F8_E5M2: return 6;
    case CK_DT_F8_E4M3: return 7;
    case CK_DT_F8_E8M0: return 8;
    case CK_DT_F8_E4M3FNUZ: return 9;
    case CK_DT_F8_E5M2FNUZ: return 10;
    case CK_DT_I16: return 11;
    case CK_DT_U16: return 12;
    case CK_DT_F16: return 13;
    case CK_DT_BF16: return 14;
    case CK_DT_I32: return 15;
    case CK_DT_U32: return 16;
    case CK_DT_F32: return 17;
    case CK_DT_C64: return 18;
    case CK_DT_F64: return 19;
    case CK_DT_I64: return 20;
    case CK_DT_U64: return 21;
    default: return -1;
    }
}

static int write_order(const void *a, const void *b)
{
    const cki_out_tensor *x = *(const cki_out_tensor *const *)a;
    const cki_out_tensor *y = *(const cki_out_tensor *const *)b;
    int rx = ref_rank(x->dtype), ry = ref_rank(y->dtype);
    if (rx != ry) return rx > ry ? -1 : 1;
    return strcmp(x->name, y->name);
}

typedef struct kv {
    const char *k, *v;
} kv;

static int kv_order(const void *a, const void *b)
{
    return strcmp(((const kv *)a)->k, ((const kv *)b)->k);
}

/* Refuses what a safetensors file cannot hold, naming the tensor. */
static ck_status check_writable(cki_write_job *job, const cki_out_tensor *ot)
{
    const char *out = job->path;
    uint64_t bits;
    char nb[NAME_BUF];
    size_t nl = strlen(ot->name);
    shown(nb, ot->name, nl);
    if (ref_rank(ot->dtype) < 0)
        return cki_fail(job->ctx, CK_EUNSUPPORTED,
                        "%s: tensor '%s': safetensors has no %s dtype; exclude the tensor or write "
                        "another format",
                        out, nb, ck_dtype_name(ot->dtype));
    if (strcmp(ot->name, "__metadata__") == 0)
        return cki_fail(job->ctx, CK_EUNSUPPORTED,
                        "%s: tensor '__metadata__': the name is reserved for safetensors metadata; "
                        "rename the tensor",
                        out);
    if (cki_json_utf8_prefix(ot->name, nl) != nl)
        return cki_fail(job->ctx, CK_EUNSUPPORTED, "%s: tensor '%s': name is not valid UTF-8", out,
                        nb);
    if (cki_mul_u64(&bits, ot->src->numel, ck_dtype_bits(ot->dtype)) || bits % 8)
        return cki_fail(job->ctx, CK_EUNSUPPORTED,
                        "%s: tensor '%s': %llu x %s is not a whole number of bytes", out, nb,
                        (unsigned long long)ot->src->numel, ck_dtype_name(ot->dtype));
    return CK_OK;
}

/* The largest header we write: the format's limit, or the context's if lower
 * (a file this context could not read back is not written). */
static uint64_t header_cap(const ck_ctx *ctx)
{
    uint64_t lim = ctx->limits[CK_LIMIT_HEADER_BYTES];
    return lim && lim < ST_HEADER_MAX ? lim : ST_HEADER_MAX;
}

static ck_status build_header(cki_write_job *job, const cki_out_tensor **order, cki_buf *b)
{
    ck_ctx *ctx = job->ctx;
    kv *meta;
    size_t nmeta = 0;
    int has_format = 0;
    uint64_t off = 0;

    meta = cki_calloc(ctx, job->meta_count + 1, sizeof *meta);
    if (!meta) return CK_ENOMEM;
    for (size_t i = 0; i < job->meta_count; i++) {
        const char *k = job->meta_keys[i], *v = job->meta_vals[i];
        if (cki_json_utf8_prefix(k, strlen(k)) != strlen(k) ||
            cki_json_utf8_prefix(v, strlen(v)) != strlen(v)) {
            char nb[NAME_BUF];
            cki_free(ctx, meta);
            return cki_fail(ctx, CK_EUNSUPPORTED, "%s: metadata '%s': not valid UTF-8", job->path,
                            shown(nb, k, strlen(k)));
        }
        if (strcmp(k, "format") == 0) has_format = 1;
        meta[nmeta++] = (kv){k, v};
    }
    if (!has_format) meta[nmeta++] = (kv){"format", "pt"};
    qsort(meta, nmeta, sizeof *meta, kv_order);

    cki_buf_puts(b, "{\"__metadata__\":{");
    for (size_t i = 0; i < nmeta; i++) {
        if (i) cki_buf_putc(b, ',');
        cki_buf_json_str(b, meta[i].k, strlen(meta[i].k));
        cki_buf_putc(b, ':');
        cki_buf_json_str(b, meta[i].v, strlen(meta[i].v));
    }
    cki_buf_putc(b, '}');
    cki_free(ctx, meta);

    for (size_t i = 0; i < job->count && !b->failed; i++) {
        const cki_out_tensor *ot = order[i];
        const cki_tensor *t = ot->src;
        uint64_t end;
        if (cki_add_u64(&end, off, ot->nbytes))
            return cki_fail(ctx, CK_EUNSUPPORTED, "%s: tensor data exceeds 2^64 - 1 bytes",
                            job->path);
        cki_buf_putc(b, ',');
        cki_buf_json_str(b, ot->name, strlen(ot->name));
        cki_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", ck_dtype_name(ot->dtype));
        for (int d = 0; d < t->ndim; d++)
            cki_buf_printf(b, "%s%lld", d ? "," : "", (long long)t->shape[d]);
        cki_buf_printf(b, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
                       (unsigned long long)end);
        off = end;
    }
    cki_buf_putc(b, '}');
    while (!b->failed && (8 + b->len) % 8) cki_buf_putc(b, ' ');
    if (b->failed && ctx->last == CK_ENOMEM) return CK_ENOMEM;
    if (b->failed || b->len > header_cap(ctx))
        return cki_fail(ctx, CK_ELIMIT,
                        "%s: header would exceed the limit of %llu bytes (%zu tensors, %zu "
                        "metadata entries)",
                        job->path, (unsigned long long)header_cap(ctx), job->count,
                        job->meta_count);
    return CK_OK;
}

static ck_status st_write(cki_write_job *job)
{
    ck_ctx *ctx = job->ctx;
    const cki_out_tensor **order = NULL;
    cki_buf b;
    uint8_t len8[8];
    uint64_t data_off, off = 0;
    ck_status st = CK_OK;

    for (size_t i = 0; i < job->count; i++)
        if ((st = check_writable(job, &job->tensors[i]))) return st;
    order = cki_malloc(ctx, (job->count ? job->count : 1) * sizeof *order);
    if (!order) return CK_ENOMEM;
    for (size_t i = 0; i < job->count; i++) order[i] = &job->tensors[i];
    if (job->count) qsort(order, job->count, sizeof *order, write_order);

    cki_buf_init(&b, ctx, (size_t)header_cap(ctx) + 8); /* room to pad, and the NUL it keeps */
    if ((st = build_header(job, order, &b))) goto out;
    cki_st_le64(len8, (uint64_t)b.len);
    data_off = 8 + (uint64_t)b.len;
    if ((st = cki_sink_write(job->sink, len8, 8)) || (st = cki_sink_write(job->sink, b.p, b.len)))
        goto out;
    cki_buf_free(&b);
    for (size_t i = 0; i < job->count; i++) {
        const cki_out_tensor *ot = order[i];
        if ((st = cki_emit_tensor(job, ot, NULL))) goto out;
        off += ot->nbytes;
        if (cki_sink_pos(job->sink) != data_off + off) {
            st = cki_fail(ctx, CK_EIO, "%s: tensor '%s': output is %llu bytes, expected %llu",
                          job->path, ot->name, (unsigned long long)cki_sink_pos(job->sink),
                          (unsigned long long)(data_off + off));
            goto out;
        }
    }
out:
    cki_buf_free(&b);
    cki_free(ctx, order);
    return st;
}

static const char *const st_exts[] = {".safetensors", NULL};

const cki_format cki_fmt_safetensors = {
    "safetensors", st_exts, CKI_CAP_READ | CKI_CAP_WRITE | CKI_CAP_METADATA | CKI_CAP_WINDOW,
    st_probe,      st_read, st_write,
};
