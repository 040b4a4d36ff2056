/*
 * gguf_write.c -- the GGUF writer: version 3, little-endian (big-endian on
 * request), in the layout ggml's loader requires.
 *
 *   "GGUF", u32 3, u64 tensor_count, u64 kv_count
 *   kv[]            the metadata (below)
 *   tensor_info[]   name, n_dims, ne[] (the PyTorch shape reversed), ggml type,
 *                   offset = the running sum of the tensors before it, each
 *                   padded to the alignment (ggml checks exactly this)
 *   zero padding to the alignment, then each tensor's bytes followed by zero
 *   padding to the alignment (the last one too, as ggml and gguf-py write)
 *
 * Alignment: 32, or the metadata's general.alignment (a power of two).
 * Metadata, in order: the input's entries -- from a GGUF input with their
 * own types (arrays whole, converted to v3 and to the output byte order), from
 * other formats as STRING -- then --metadata KEY=VALUE entries. A given value
 * takes the type the input had for that key, UINT32 for general.alignment,
 * general.quantization_version and general.file_type, else STRING.
 * general.quantization_version = 2 is added when a tensor is quantised and
 * the key is not given; split.* keys of the input are dropped and, for split
 * output, split.no (UINT16), split.count (UINT16), split.tensors.count (INT32)
 * are written, with the rest of the metadata in the first part only (as
 * llama.cpp's gguf-split does).
 * Big-endian output swaps every field and plain tensor element; quantised
 * blocks are written as they are, as gguf-py's GGUFWriter does.
 * Names longer than ggml's 63 bytes are refused unless allow_long_names; more
 * than 4 dimensions are refused (ggml's limit); a 0-d tensor is written with
 * one dimension of 1.
 * The header is built in memory (its size is that of the metadata and the
 * names); tensor bytes stream through cki_emit_tensor, so memory stays at one
 * chunk whatever the model's size.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "../tensor/cast.h"
#include "gguf.h"

/* ---- output primitives ------------------------------------------------------ */

typedef struct gw {
    cki_buf b;
    int be;
} gw;

static void put_n(gw *w, uint64_t v, unsigned n)
{
    uint8_t t[8];
    for (unsigned i = 0; i < n; i++) {
        unsigned sh = w->be ? 8 * (n - 1 - i) : 8 * i;
        t[i] = (uint8_t)(v >> sh);
    }
    cki_buf_put(&w->b, t, n);
}

static void put_str(gw *w, const char *s, size_t n)
{
    put_n(w, n, 8);
    cki_buf_put(&w->b, s, n);
}

/* Copies one value of type T from R (the input's order and version) to W. */
static void copy_value(gw *w, cki_gguf_rd *r, uint32_t t)
{
    if (t == GGUF_STRING) {
        uint64_t n = cki_gguf_ld_len(r);
        put_str(w, (const char *)r->p, (size_t)n);
        r->p += n;
    } else if (t == GGUF_ARRAY) {
        uint32_t et = (uint32_t)cki_gguf_ld(r, 4);
        uint64_t n = cki_gguf_ld_len(r);
        unsigned sz = cki_gguf_type_size(et);
        put_n(w, et, 4);
        put_n(w, n, 8);
        if (sz == 1) { /* bytes: no order to convert */
            cki_buf_put(&w->b, r->p, (size_t)n);
            r->p += n;
            return;
        }
        for (uint64_t i = 0; i < n && !w->b.failed; i++) copy_value(w, r, et);
    } else {
        unsigned sz = cki_gguf_type_size(t);
        put_n(w, cki_gguf_ld(r, sz), sz);
    }
}

/* ---- metadata ----------------------------------------------------------------- */

static int is_u32_key(const char *k)
{
    return !strcmp(k, "general.alignment") || !strcmp(k, "general.quantization_version") ||
           !strcmp(k, "general.file_type");
}

/* The input's typed entry for KEY, or NULL. */
static const cki_gguf_kv *src_kv(const cki_gguf_info *in, const char *key)
{
    for (size_t i = 0; in && i < in->kv_count; i++)
        if (!strcmp(in->kv[i].key, key)) return &in->kv[i];
    return NULL;
}

/* The input model's own value for KEY (pointer identity: not overridden). */
static const char *src_val(const ck_model *m, const char *key)
{
    for (size_t i = 0; m && i < m->meta_count; i++)
        if (!strcmp(m->meta_keys[i], key)) return m->meta_vals[i];
    return NULL;
}

/* Writes KEY = text VAL as type T (a scalar type). */
static ck_status put_text_as(ck_ctx *ctx, gw *w, const char *file, const char *key,
                             const char *val, uint32_t t)
{
    char *end;
    errno = 0;
    put_str(w, key, strlen(key));
    put_n(w, t, 4);
    switch (t) {
    case GGUF_STRING: put_str(w, val, strlen(val)); return CK_OK;
    case GGUF_BOOL:
        if (strcmp(val, "true") && strcmp(val, "false") && strcmp(val, "1") && strcmp(val, "0"))
            break;
        put_n(w, !strcmp(val, "true") || !strcmp(val, "1"), 1);
        return CK_OK;
    case GGUF_F32: case GGUF_F64: {
        double d = strtod(val, &end);
        if (!*val || *end || errno) break;
        if (t == GGUF_F32) {
            float f = (float)d;
            uint32_t u;
            memcpy(&u, &f, 4);
            put_n(w, u, 4);
        } else {
            uint64_t u;
            memcpy(&u, &d, 8);
            put_n(w, u, 8);
        }
        return CK_OK;
    }
    case GGUF_U8: case GGUF_U16: case GGUF_U32: case GGUF_U64: {
        unsigned sz = cki_gguf_type_size(t);
        unsigned long long v;
        if (*val == '-') break;
        v = strtoull(val, &end, 10);
        if (!*val || *end || errno || (sz < 8 && v >> (8 * sz))) break;
        put_n(w, v, sz);
        return CK_OK;
    }
    case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: {
        unsigned sz = cki_gguf_type_size(t);
        long long v = strtoll(val, &end, 10);
        long long lim = sz < 8 ? 1ll << (8 * sz - 1) : 0;
        if (!*val || *end || errno || (sz < 8 && (v < -lim || v >= lim))) break;
        put_n(w, (uint64_t)v, sz);
        return CK_OK;
    }
    default: break;
    }
    return cki_fail(ctx, CK_EARG, "%s: metadata '%s': '%s' is not a %s value", file, key, val,
                    cki_gguf_type_name(t));
}

/* ---- layout -------------------------------------------------------------------------- */

static uint64_t pad_to(uint64_t x, uint64_t a)
{
    return (a - x % a) % a;
}

static ck_status write_zeros(cki_sink *s, uint64_t n)
{
    static const uint8_t z[256];
    while (n) {
        size_t k = n > sizeof z ? sizeof z : (size_t)n;
        ck_status st = cki_sink_write(s, z, k);
        if (st) return st;
        n -= k;
    }
    return CK_OK;
}

/* Big-endian output: values read as little-endian chunks, swapped, written. */
static ck_status emit_swapped(cki_write_job *job, const cki_out_tensor *ot)
{
    const cki_tensor *t = ot->src;
    unsigned es = cki_dtype_size(ot->dtype);
    uint64_t first = 0, per = CKI_SCRATCH / es;
    while (first < t->numel) {
        uint64_t n = t->numel - first < per ? t->numel - first : per;
        ck_status st = cki_tensor_read(job->ctx, t, first, n, ot->dtype, job->scratch,
                                       CKI_SCRATCH, job->stats);
        if (st) return st;
        cki_bswap(job->scratch, (size_t)n, es);
        if ((st = cki_sink_write(job->sink, job->scratch, (size_t)(n * es)))) return st;
        first += n;
    }
    return CK_OK;
}

ck_status cki_gguf_write(cki_write_job *job)
{
    ck_ctx *ctx = job->ctx;
    const ck_convert_opts *o = job->opts;
    const cki_gguf_info *in = cki_gguf_info_of(job->src_model);
    const int first_part = job->shard_no == 0, split = job->shard_count > 1;
    uint64_t align = GGUF_DEFAULT_ALIGNMENT, off = 0, n_kv = 0;
    int quantised = 0, have_qv = 0;
    size_t kv_count_at;
    gw w;
    ck_status st = CK_OK;

    w.be = o && o->big_endian;
    cki_buf_init(&w.b, ctx, 0);
    for (size_t i = 0; i < job->count; i++)
        if (ck_dtype_is_quantized(job->tensors[i].dtype)) quantised = 1;
    for (size_t i = 0; i < job->meta_count; i++) {
        const char *k = job->meta_keys[i], *v = job->meta_vals[i];
        if (!strcmp(k, "general.alignment")) {
            char *end;
            unsigned long long a;
            errno = 0;
            a = strtoull(v, &end, 10);
            if (!*v || *end || errno || a == 0 || a > (1u << 30) || (a & (a - 1)))
                return cki_fail(ctx, CK_EARG,
                                "%s: general.alignment '%s': expected a power of two up to 2^30",
                                job->path, v);
            align = a;
        }
        if (!strcmp(k, "general.quantization_version")) have_qv = 1;
    }

    /* header and metadata */
    cki_buf_put(&w.b, "GGUF", 4);
    put_n(&w, 3, 4);
    put_n(&w, job->count, 8);
    kv_count_at = w.b.len;
    put_n(&w, 0, 8); /* kv_count, filled in below */
    for (size_t i = 0; first_part && i < job->meta_count && !st; i++) {
        const char *k = job->meta_keys[i], *v = job->meta_vals[i];
        const cki_gguf_kv *kv = src_kv(in, k);
        if (!strncmp(k, "split.", 6)) continue; /* the input's split, not ours */
        if (!strcmp(k, "general.alignment")) {
            put_str(&w, k, strlen(k));
            put_n(&w, GGUF_U32, 4);
            put_n(&w, align, 4);
        } else if (kv && v == src_val(job->src_model, k)) { /* carried: its own type */
            cki_gguf_rd r = {kv->raw, in->big_endian, in->version == 1};
            put_str(&w, k, strlen(k));
            put_n(&w, kv->type, 4);
            copy_value(&w, &r, kv->type);
        } else {
            uint32_t t = GGUF_STRING;
            if (kv && kv->type != GGUF_ARRAY) t = kv->type;
            else if (is_u32_key(k)) t = GGUF_U32;
            st = put_text_as(ctx, &w, job->path, k, v, t);
        }
        n_kv++;
    }
    if (st) goto fail;
    if (first_part && quantised && !have_qv) {
        put_str(&w, "general.quantization_version", 28);
        put_n(&w, GGUF_U32, 4);
        put_n(&w, 2, 4);
        n_kv++;
    }
    if (split) {
        put_str(&w, "split.no", 8);
        put_n(&w, GGUF_U16, 4);
        put_n(&w, job->shard_no, 2);
        put_str(&w, "split.count", 11);
        put_n(&w, GGUF_U16, 4);
        put_n(&w, job->shard_count, 2);
        put_str(&w, "split.tensors.count", 19);
        put_n(&w, GGUF_I32, 4);
        put_n(&w, job->all_count, 4);
        n_kv += 3;
    }
    {
        uint8_t *p = (uint8_t *)w.b.p + kv_count_at;
        if (w.be) cki_st_be64(p, n_kv);
        else cki_st_le64(p, n_kv);
    }

    /* tensor infos */
    for (size_t i = 0; i < job->count; i++) {
        const cki_out_tensor *ot = &job->tensors[i];
        const cki_tensor *t = ot->src;
        size_t nl = strlen(ot->name);
        uint32_t id;
        if (nl > GGUF_MAX_NAME && !(o && o->allow_long_names)) {
            st = cki_fail(ctx, CK_EUNSUPPORTED,
                          "%s: tensor '%s': name of %zu bytes is longer than ggml's limit of %d "
                          "(--allow-long-names writes it for builds with a larger GGML_MAX_NAME)",
                          job->path, ot->name, nl, GGUF_MAX_NAME);
            goto fail;
        }
        if (t->ndim > GGUF_MAX_DIMS) {
            st = cki_fail(ctx, CK_EUNSUPPORTED,
                          "%s: tensor '%s': %d dimensions; ggml tensors have at most %d",
                          job->path, ot->name, t->ndim, GGUF_MAX_DIMS);
            goto fail;
        }
        if (cki_dtype_to_ggml(ot->dtype, &id)) {
            st = cki_fail(ctx, CK_EUNSUPPORTED,
                          "%s: tensor '%s': GGUF has no %s type (cast it with --dtype)",
                          job->path, ot->name, ck_dtype_name(ot->dtype));
            goto fail;
        }
        put_str(&w, ot->name, nl);
        put_n(&w, t->ndim ? (uint64_t)t->ndim : 1, 4);
        if (!t->ndim) put_n(&w, 1, 8);
        for (int d = t->ndim - 1; d >= 0; d--) put_n(&w, (uint64_t)t->shape[d], 8);
        put_n(&w, id, 4);
        put_n(&w, off, 8);
        if (cki_add_u64(&off, off, ot->nbytes) || cki_add_u64(&off, off, pad_to(off, align))) {
            st = cki_fail(ctx, CK_EARG, "%s: data section size overflows 64 bits", job->path);
            goto fail;
        }
    }
    {
        uint64_t pad = pad_to(w.b.len, align);
        for (uint64_t i = 0; i < pad; i++) cki_buf_putc(&w.b, 0);
    }
    if (w.b.failed) {
        st = CK_ENOMEM;
        goto fail;
    }
    if ((st = cki_sink_write(job->sink, w.b.p, w.b.len))) goto fail;
    cki_buf_free(&w.b);

    /* tensor data, each padded */
    for (size_t i = 0; i < job->count; i++) {
        const cki_out_tensor *ot = &job->tensors[i];
        if (w.be && cki_dtype_size(ot->dtype) > 1) st = emit_swapped(job, ot);
        else st = cki_emit_tensor(job, ot, NULL);
        if (!st) st = write_zeros(job->sink, pad_to(ot->nbytes, align));
        if (st) return st;
    }
    return CK_OK;
fail:
    cki_buf_free(&w.b);
    return st;
}
