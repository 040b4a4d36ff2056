/*
 * fmt_raw.c -- raw tensor bytes plus a JSON manifest (ckptkit's own layout,
 * for feeding C/C++ runtimes and tools that want plain arrays).
 *
 * Data file: the tensors' bytes, dense and row-major, at the offsets the
 * manifest gives. As written by ckptkit: in the model's order, each
 * non-empty tensor starting at a multiple of 64 (zero padding between),
 * little-endian, no trailing padding.
 *
 * Manifest (strict JSON, common/json.h; at most CK_LIMIT_HEADER_BYTES):
 *   {
 *     "format": "ckptkit-raw",              required, exactly this
 *     "version": 1,                         required; other versions are refused
 *     "file": "model.raw",                  required: basename of the data file
 *     "byte_order": "little" | "big",       optional, default "little"
 *     "metadata": {"key": "value", ...},    optional, strings only
 *     "tensors": [                          required, in model order
 *       {"name": STR, "dtype": STR, "shape": [uint, ...], "offset": uint,
 *        "byte_order": "little" | "big"}    byte_order optional, overrides the file's
 *     ]
 *   }
 * Reader checks: every rule above; unknown keys are errors (this is our own
 * schema, so a key we do not know means a newer or broken writer); names
 * non-empty, without NUL, unique; dtype is one of ckptkit's names ("F32",
 * "C128", ...); at most 64 dims, each below 2^63; the byte count
 * (numel x bits / 8, a whole number of bytes) computed with overflow checks;
 * [offset, offset + bytes) inside the data file; no two non-empty ranges
 * overlap. A "file" that differs from the data file's name is a warning.
 * The reader runs only when asked (a manifest given, or --format raw, which
 * looks for DATA.json): probe never claims a file.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "../common/json.h"
#include "fmt_raw.h"

#define RAW_ALIGN 64
#define RAW_DEPTH 16
#define NAME_SHOWN 200
#define NAME_BUF (NAME_SHOWN + 4)
#define FLUSH_AT (1u << 20)

static const char *shown(char *buf, const char *s, size_t n)
{
    int k = cki_json_clip(s, n, NAME_SHOWN);
    memcpy(buf, s, (size_t)k);
    strcpy(buf + k, (size_t)k < n ? "..." : "");
    return buf;
}

static int key_is(const cki_json_member *m, const char *key)
{
    return m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0;
}

/* Any of ckptkit's dtype names, exactly as ck_dtype_name spells them. */
static int dtype_by_name(const char *s, size_t n, ck_dtype *out)
{
    for (int i = 0; i < CK_DT_COUNT; i++) {
        const char *name = ck_dtype_name((ck_dtype)i);
        if (strlen(name) == n && memcmp(name, s, n) == 0) {
            *out = (ck_dtype)i;
            return 0;
        }
    }
    return 1;
}

/* ---- reader --------------------------------------------------------------- */

typedef struct rt {
    const char *name;
    size_t name_len;
    ck_dtype dtype;
    const cki_json *shape; /* validated: at most 64 integers below 2^63 */
    uint64_t off, len;
    int big;
} rt;

typedef struct mreader {
    ck_ctx *ctx;
    const char *file; /* the manifest's path */
    const cki_source *data;
} mreader;

/* "MANIFEST: manifest: WHAT at byte OFF". */
static ck_status at(mreader *r, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static ck_status at(mreader *r, size_t off, const char *fmt, ...)
{
    char msg[CKI_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cki_fail(r->ctx, CK_EFORMAT, "%s: manifest: %s at byte %zu", r->file, msg, off);
}

/* "little" or "big" -> *BIG. */
static ck_status byte_order(mreader *r, const cki_json *v, const char *where, int *big)
{
    char vb[NAME_BUF];
    if (cki_json_str_is(v, "little")) *big = 0;
    else if (cki_json_str_is(v, "big")) *big = 1;
    else if (v->type != CKI_JSON_STRING)
        return at(r, v->off, "%s is %s, not \"little\" or \"big\"", where,
                  cki_json_type_name(v->type));
    else
        return at(r, v->off, "%s is '%s', not \"little\" or \"big\"", where,
                  shown(vb, v->u.str, v->len));
    return CK_OK;
}

static ck_status tensor_uint(mreader *r, const char *name, const char *what, const cki_json *v,
                             uint64_t max, uint64_t *out)
{
    char vb[NAME_BUF];
    const char *why = cki_json_to_u64(v, out);
    if (!why && *out > max) why = "is larger than 2^63 - 1";
    if (!why) return CK_OK;
    return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': %s %s (%s)", r->file, name, what, why,
                    v->type == CKI_JSON_NUMBER ? shown(vb, v->u.num, v->len)
                                               : cki_json_type_name(v->type));
}

static ck_status read_tensor(mreader *r, size_t idx, const cki_json *v, int file_big, rt *t)
{
    const cki_json *name = NULL, *dtype = NULL, *shape = NULL, *off = NULL, *bo = NULL;
    char nb[NAME_BUF], db[NAME_BUF], where[48], sb[64];
    uint64_t numel = 1, bits, u, end;
    ck_status st;

    snprintf(where, sizeof where, "tensors[%zu]", idx);
    if (v->type != CKI_JSON_OBJECT)
        return at(r, v->off, "%s is %s, not an object", where, cki_json_type_name(v->type));
    for (size_t i = 0; i < v->len; i++) {
        const cki_json_member *f = &v->u.members[i];
        if (key_is(f, "name")) name = &f->value;
        else if (key_is(f, "dtype")) dtype = &f->value;
        else if (key_is(f, "shape")) shape = &f->value;
        else if (key_is(f, "offset")) off = &f->value;
        else if (key_is(f, "byte_order")) bo = &f->value;
        else return at(r, f->key_off, "%s: unknown key '%s'", where, shown(nb, f->key, f->key_len));
    }
    if (!name) return at(r, v->off, "%s has no name", where);
    if (name->type != CKI_JSON_STRING)
        return at(r, name->off, "%s: name is %s, not a string", where,
                  cki_json_type_name(name->type));
    if (!name->len) return at(r, name->off, "%s: empty name", where);
    if (memchr(name->u.str, 0, name->len))
        return at(r, name->off, "%s: name contains a NUL character", where);
    shown(nb, name->u.str, name->len);
    t->name = name->u.str;
    t->name_len = name->len;

    if (!dtype || !shape || !off)
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': missing key '%s'", r->file, nb,
                        !dtype ? "dtype" : !shape ? "shape" : "offset");
    if (dtype->type != CKI_JSON_STRING)
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': dtype is %s, not a string", r->file,
                        nb, cki_json_type_name(dtype->type));
    if (dtype_by_name(dtype->u.str, dtype->len, &t->dtype))
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': unknown dtype '%s'", r->file, nb,
                        shown(db, dtype->u.str, dtype->len));
    if (shape->type != CKI_JSON_ARRAY)
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': shape is %s, not an array", r->file,
                        nb, cki_json_type_name(shape->type));
    if (shape->len > CKI_MAX_DIMS)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: tensor '%s': shape has %zu dimensions (at most %d)", r->file, nb,
                        shape->len, CKI_MAX_DIMS);
    t->shape = shape;
    for (size_t d = 0; d < shape->len; d++) {
        snprintf(sb, sizeof sb, "shape[%zu]", d);
        if ((st = tensor_uint(r, nb, sb, &shape->u.items[d], INT64_MAX, &u))) return st;
        if (cki_mul_u64(&numel, numel, u))
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: tensor '%s': shape has more than 2^64 - 1 elements", r->file, nb);
    }
    if ((st = tensor_uint(r, nb, "offset", off, UINT64_MAX, &t->off))) return st;
    t->big = file_big;
    if (bo) {
        char bw[64];
        snprintf(bw, sizeof bw, "%s.byte_order", where);
        if ((st = byte_order(r, bo, bw, &t->big))) return st;
    }

    if (cki_mul_u64(&bits, numel, ck_dtype_bits(t->dtype)))
        return cki_fail(r->ctx, CK_EFORMAT, "%s: tensor '%s': %llu x %s is more than 2^64 - 1 bits",
                        r->file, nb, (unsigned long long)numel, ck_dtype_name(t->dtype));
    if (bits % 8)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: tensor '%s': %llu x %s is %llu bits, not a whole number of bytes",
                        r->file, nb, (unsigned long long)numel, ck_dtype_name(t->dtype),
                        (unsigned long long)bits);
    t->len = bits / 8;
    if (cki_add_u64(&end, t->off, t->len) || end > r->data->len)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: tensor '%s': %llu bytes at offset %llu lie outside '%s' (%llu bytes)",
                        r->file, nb, (unsigned long long)t->len, (unsigned long long)t->off,
                        r->data->path, (unsigned long long)r->data->len);
    return CK_OK;
}

static int by_range(const void *a, const void *b)
{
    const rt *x = *(const rt *const *)a, *y = *(const rt *const *)b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x < y ? -1 : x > y;
}

/* No two non-empty ranges share a byte. */
static ck_status check_overlaps(mreader *r, rt *ts, size_t n)
{
    rt **order;
    const rt *reach = NULL; /* the tensor ending furthest so far */
    ck_status st = CK_OK;
    if (n < 2) return CK_OK;
    order = cki_malloc(r->ctx, n * sizeof *order);
    if (!order) return CK_ENOMEM;
    for (size_t i = 0; i < n; i++) order[i] = &ts[i];
    qsort(order, n, sizeof *order, by_range);
    for (size_t i = 0; i < n; i++) {
        const rt *t = order[i];
        if (!t->len) continue;
        if (reach && t->off < reach->off + reach->len) {
            char a[NAME_BUF], b[NAME_BUF];
            st = cki_fail(r->ctx, CK_EFORMAT,
                          "%s: tensor '%s': bytes [%llu, %llu) overlap tensor '%s' at [%llu, %llu)",
                          r->file, shown(a, t->name, t->name_len), (unsigned long long)t->off,
                          (unsigned long long)(t->off + t->len),
                          shown(b, reach->name, reach->name_len), (unsigned long long)reach->off,
                          (unsigned long long)(reach->off + reach->len));
            break;
        }
        if (!reach || t->off + t->len > reach->off + reach->len) reach = t;
    }
    cki_free(r->ctx, order);
    return st;
}

static ck_status read_meta(mreader *r, ck_model *m, const cki_json *v)
{
    char nb[NAME_BUF];
    ck_status st;
    if (v->type != CKI_JSON_OBJECT)
        return at(r, v->off, "metadata is %s, not an object", cki_json_type_name(v->type));
    for (size_t i = 0; i < v->len; i++) {
        const cki_json_member *kv = &v->u.members[i];
        shown(nb, kv->key, kv->key_len);
        if (kv->value.type != CKI_JSON_STRING)
            return at(r, kv->value.off, "metadata value of '%s' is %s, not a string", nb,
                      cki_json_type_name(kv->value.type));
        if (memchr(kv->key, 0, kv->key_len) || memchr(kv->value.u.str, 0, kv->value.len))
            return at(r, kv->key_off, "metadata '%s' contains a NUL character", nb);
        if ((st = cki_model_set_meta(m, kv->key, kv->key_len, kv->value.u.str, kv->value.len)))
            return st;
    }
    return CK_OK;
}

ck_status cki_raw_read_manifest(ck_model *m, const cki_source *data, const cki_source *man)
{
    ck_ctx *ctx = m->ctx;
    mreader r = {ctx, man->path, data};
    uint64_t limit = ctx->limits[CK_LIMIT_HEADER_BYTES], u;
    const cki_json *root, *format = NULL, *version = NULL, *file = NULL, *bo = NULL,
                          *tensors = NULL, *meta = NULL;
    cki_json_opts jo = {RAW_DEPTH, 0};
    cki_json_err err;
    cki_arena tmp;
    rt *ts = NULL;
    int big = 0;
    size_t k;
    char vb[NAME_BUF];
    ck_status st;

    if (man->len > limit)
        return cki_fail(ctx, CK_ELIMIT, "%s: manifest: %llu bytes exceed the limit of %llu",
                        r.file, (unsigned long long)man->len, (unsigned long long)limit);
    k = cki_json_utf8_prefix(man->base, (size_t)man->len);
    if (k != man->len) return at(&r, k, "invalid UTF-8");

    cki_arena_init(&tmp, ctx);
    st = cki_json_parse(ctx, &tmp, man->base, (size_t)man->len, &jo, &root, &err);
    if (st) {
        if (st != CK_ENOMEM)
            cki_fail(ctx, st, "%s: manifest: %s at byte %zu", r.file, err.msg, err.off);
        goto out;
    }
    if (root->type != CKI_JSON_OBJECT) {
        st = at(&r, root->off, "the top level is %s, not an object",
                cki_json_type_name(root->type));
        goto out;
    }
    for (size_t i = 0; i < root->len; i++) {
        const cki_json_member *f = &root->u.members[i];
        if (key_is(f, "format")) format = &f->value;
        else if (key_is(f, "version")) version = &f->value;
        else if (key_is(f, "file")) file = &f->value;
        else if (key_is(f, "byte_order")) bo = &f->value;
        else if (key_is(f, "tensors")) tensors = &f->value;
        else if (key_is(f, "metadata")) meta = &f->value;
        else {
            st = at(&r, f->key_off, "unknown key '%s'", shown(vb, f->key, f->key_len));
            goto out;
        }
    }
    if (!format || !version || !file || !tensors) {
        st = at(&r, root->off, "missing key '%s'",
                !format ? "format" : !version ? "version" : !file ? "file" : "tensors");
        goto out;
    }
    if (!cki_json_str_is(format, "ckptkit-raw")) {
        if (format->type == CKI_JSON_STRING)
            st = at(&r, format->off, "format is '%s', expected \"ckptkit-raw\"",
                    shown(vb, format->u.str, format->len));
        else
            st = at(&r, format->off, "format is %s, expected \"ckptkit-raw\"",
                    cki_json_type_name(format->type));
        goto out;
    }
    if (version->type != CKI_JSON_NUMBER) {
        st = at(&r, version->off, "version is %s, not a number", cki_json_type_name(version->type));
        goto out;
    }
    if (cki_json_to_u64(version, &u) || u != 1) {
        st = cki_fail(ctx, CK_EUNSUPPORTED,
                      "%s: manifest: version %s is not supported (this build reads version 1) at "
                      "byte %zu",
                      r.file, shown(vb, version->u.num, version->len), version->off);
        goto out;
    }
    if (file->type != CKI_JSON_STRING) {
        st = at(&r, file->off, "file is %s, not a string", cki_json_type_name(file->type));
        goto out;
    }
    if (bo && (st = byte_order(&r, bo, "byte_order", &big))) goto out;
    if (tensors->type != CKI_JSON_ARRAY) {
        st = at(&r, tensors->off, "tensors is %s, not an array", cki_json_type_name(tensors->type));
        goto out;
    }
    if (meta && (st = read_meta(&r, m, meta))) goto out;
    if (!cki_json_str_is(file, cki_basename(data->path)))
        cki_warn(ctx, "%s: manifest describes '%s' but the data file is '%s'", r.file,
                 shown(vb, file->u.str, file->len), data->path);

    if (tensors->len) {
        ts = cki_calloc(ctx, tensors->len, sizeof *ts);
        if (!ts) { st = CK_ENOMEM; goto out; }
    }
    for (size_t i = 0; i < tensors->len; i++)
        if ((st = read_tensor(&r, i, &tensors->u.items[i], big, &ts[i]))) goto out;
    if ((st = check_overlaps(&r, ts, tensors->len))) goto out;
    for (size_t i = 0; i < tensors->len; i++) {
        const rt *t = &ts[i];
        cki_storage *sg;
        char what[NAME_BUF + 16];
        int64_t shape[CKI_MAX_DIMS];
        for (size_t d = 0; d < t->shape->len; d++) {
            cki_json_to_u64(&t->shape->u.items[d], &u); /* checked in read_tensor */
            shape[d] = (int64_t)u;
        }
        snprintf(what, sizeof what, "tensor '%s'", shown(vb, t->name, t->name_len));
        if ((st = cki_model_storage(m, data, t->off, t->len, t->dtype, what, &sg))) goto out;
        sg->big_endian = t->big && cki_dtype_size(t->dtype) > 1;
        if ((st = cki_model_add_tensor(m, r.file, t->name, t->name_len, t->dtype,
                                       (int)t->shape->len, shape, NULL, 0, sg, 0, NULL)))
            goto out;
    }
    if (!strcmp(m->format_name, "?")) m->format_name = "raw";
out:
    cki_free(ctx, ts);
    cki_arena_free(&tmp);
    return st;
}

static int raw_probe(const cki_source *src)
{
    (void)src;
    return 0; /* raw bytes have no signature: only read when asked */
}

static ck_status raw_read(ck_model *m, const cki_source *data, const ck_open_opts *opts)
{
    ck_ctx *ctx = m->ctx;
    cki_source *man;
    ck_status st;
    if (opts && opts->manifest) {
        if ((st = cki_source_open(ctx, opts->manifest, &man))) return st;
    } else {
        size_t n = strlen(data->path);
        char *path = cki_malloc(ctx, n + 6);
        if (!path) return CK_ENOMEM;
        memcpy(path, data->path, n);
        memcpy(path + n, ".json", 6);
        st = cki_source_open(ctx, path, &man);
        if (st)
            cki_fail(ctx, st, "%s: raw data needs a JSON manifest: none was given and %s cannot "
                              "be opened",
                     data->path, path);
        cki_free(ctx, path);
        if (st) return st;
    }
    if ((st = cki_model_add_source(m, man))) return st;
    return cki_raw_read_manifest(m, data, man);
}

/* ---- writer --------------------------------------------------------------- */

static ck_status flush(cki_sink *side, cki_buf *b, int force)
{
    ck_status st;
    if (b->failed) return b->ctx->last == CK_OK ? CK_ENOMEM : b->ctx->last;
    if (!force && b->len < FLUSH_AT) return CK_OK;
    st = cki_sink_write(side, b->p, b->len);
    b->len = 0;
    return st;
}

static ck_status raw_write(cki_write_job *job)
{
    ck_ctx *ctx = job->ctx;
    cki_sink *side;
    cki_buf b;
    char *mpath;
    size_t pl = strlen(job->path);
    uint64_t *offs = NULL, pos = 0;
    const char *base = cki_basename(job->path);
    ck_status st = CK_OK;

    offs = cki_calloc(ctx, job->count ? job->count : 1, sizeof *offs);
    if (!offs) return CK_ENOMEM;
    for (size_t i = 0; i < job->count; i++) {
        const cki_out_tensor *ot = &job->tensors[i];
        uint64_t bits, pad = (RAW_ALIGN - pos % RAW_ALIGN) % RAW_ALIGN;
        size_t nl = strlen(ot->name);
        char nb[NAME_BUF];
        if (cki_json_utf8_prefix(ot->name, nl) != nl) {
            st = cki_fail(ctx, CK_EUNSUPPORTED, "%s: tensor '%s': name is not valid UTF-8",
                          job->path, shown(nb, ot->name, nl));
            goto out;
        }
        if (cki_mul_u64(&bits, ot->src->numel, ck_dtype_bits(ot->dtype)) || bits % 8) {
            st = cki_fail(ctx, CK_EUNSUPPORTED,
                          "%s: tensor '%s': %llu x %s is not a whole number of bytes", job->path,
                          shown(nb, ot->name, nl), (unsigned long long)ot->src->numel,
                          ck_dtype_name(ot->dtype));
            goto out;
        }
        if (ot->nbytes == 0) pad = 0; /* empty tensors sit where they are, inside the file */
        if (cki_add_u64(&offs[i], pos, pad) || cki_add_u64(&pos, offs[i], ot->nbytes)) {
            st = cki_fail(ctx, CK_EUNSUPPORTED, "%s: data exceeds 2^64 - 1 bytes", job->path);
            goto out;
        }
    }
    for (size_t i = 0; i < job->meta_count; i++) {
        const char *k = job->meta_keys[i], *v = job->meta_vals[i];
        if (cki_json_utf8_prefix(k, strlen(k)) != strlen(k) ||
            cki_json_utf8_prefix(v, strlen(v)) != strlen(v)) {
            char nb[NAME_BUF];
            st = cki_fail(ctx, CK_EUNSUPPORTED, "%s: metadata '%s': not valid UTF-8", job->path,
                          shown(nb, k, strlen(k)));
            goto out;
        }
    }

    mpath = cki_malloc(ctx, pl + 6);
    if (!mpath) { st = CK_ENOMEM; goto out; }
    memcpy(mpath, job->path, pl);
    memcpy(mpath + pl, ".json", 6);
    st = cki_job_open_side(job, mpath, &side);
    cki_free(ctx, mpath);
    if (st) goto out;

    cki_buf_init(&b, ctx, 0);
    cki_buf_puts(&b, "{\n  \"format\": \"ckptkit-raw\",\n  \"version\": 1,\n  \"file\": ");
    cki_buf_json_str(&b, base, strlen(base));
    cki_buf_puts(&b, ",\n  \"byte_order\": \"little\",\n  \"metadata\": {");
    for (size_t i = 0; i < job->meta_count; i++) {
        cki_buf_puts(&b, i ? ",\n    " : "\n    ");
        cki_buf_json_str(&b, job->meta_keys[i], strlen(job->meta_keys[i]));
        cki_buf_puts(&b, ": ");
        cki_buf_json_str(&b, job->meta_vals[i], strlen(job->meta_vals[i]));
    }
    cki_buf_puts(&b, job->meta_count ? "\n  },\n  \"tensors\": [" : "},\n  \"tensors\": [");
    for (size_t i = 0; i < job->count && !st; i++) {
        const cki_out_tensor *ot = &job->tensors[i];
        cki_buf_puts(&b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
        cki_buf_json_str(&b, ot->name, strlen(ot->name));
        cki_buf_printf(&b, ", \"dtype\": \"%s\", \"shape\": [", ck_dtype_name(ot->dtype));
        for (int d = 0; d < ot->src->ndim; d++)
            cki_buf_printf(&b, "%s%lld", d ? ", " : "", (long long)ot->src->shape[d]);
        cki_buf_printf(&b, "], \"offset\": %llu}", (unsigned long long)offs[i]);
        st = flush(side, &b, 0);
    }
    if (!st) {
        cki_buf_puts(&b, job->count ? "\n  ]\n}\n" : "]\n}\n");
        st = flush(side, &b, 1);
    }
    cki_buf_free(&b);

    pos = 0;
    for (size_t i = 0; i < job->count && !st; i++) {
        const cki_out_tensor *ot = &job->tensors[i];
        if ((st = cki_sink_zeros(job->sink, offs[i] - pos))) break;
        if ((st = cki_emit_tensor(job, ot, NULL))) break;
        pos = offs[i] + ot->nbytes;
        if (cki_sink_pos(job->sink) != pos)
            st = cki_fail(ctx, CK_EIO, "%s: tensor '%s': output is %llu bytes, expected %llu",
                          job->path, ot->name, (unsigned long long)cki_sink_pos(job->sink),
                          (unsigned long long)pos);
    }
out:
    cki_free(ctx, offs);
    return st;
}

static const char *const raw_exts[] = {NULL};

const cki_format cki_fmt_raw = {
    "raw", raw_exts, CKI_CAP_READ | CKI_CAP_WRITE | CKI_CAP_METADATA, raw_probe, raw_read,
    raw_write,
};
