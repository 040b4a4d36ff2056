/*
 * open.c -- ck_model_open: map the file, detect the format from content and
 * run its reader (an *.index.json file or a folder goes to the sharded reader,
 * src/convert/sharded_read.c); plus the read-only accessors of the public API.
 *
 * Memory bound: parsers allocate through the context, whose effective limit
 * grows by 32 bytes per input byte on top of a 64 MiB base, capped by
 * CK_LIMIT_MEMORY. The bound is enforced, not estimated: cki_malloc refuses
 * what would pass it (CK_ENOMEM, "memory limit reached"). A pickle node costs
 * about 100 bytes and some opcodes are one byte, so a pickle of nothing but
 * such opcodes stops at the limit instead of opening (tests/unit/t_faults.c).
 */
#include <ctype.h>
#include <stdio.h>
#include <strings.h>

#include "../convert/convert.h"
#include "../formats/torch_read.h"


/* A message for content that no reader claims: say what it looks like. */
static ck_status unknown_format(ck_ctx *ctx, const cki_source *src)
{
    const uint8_t *p = src->base;
    uint64_t n = src->len;
    char hex[3 * 8 + 1] = "";
    if (n == 0) return cki_fail(ctx, CK_EFORMAT, "%s: empty file", src->path);
    if (n >= 24 && memcmp(p, "version https://git-lfs", 23) == 0)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: this is a Git LFS pointer (%llu bytes of text), not the checkpoint: "
                        "run 'git lfs pull' to fetch the real file",
                        src->path, (unsigned long long)n);
    {
        size_t i = 0;
        if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) i = 3; /* UTF-8 BOM */
        while (i < n && i < 64 && isspace(p[i])) i++;
        if (n - i >= 5 && (p[i] == '<') &&
            (strncasecmp((const char *)p + i, "<!doctype html", n - i < 14 ? n - i : 14) == 0 ||
             strncasecmp((const char *)p + i, "<html", 5) == 0 ||
             strncasecmp((const char *)p + i, "<?xml", 5) == 0 ||
             strncasecmp((const char *)p + i, "<!doctype", 9) == 0))
            return cki_fail(ctx, CK_EFORMAT,
                            "%s: this is an HTML/XML page (%llu bytes), not a checkpoint: the "
                            "download probably returned an error or login page",
                            src->path, (unsigned long long)n);
    }
    if (n >= 2 && p[0] == 0x1f && p[1] == 0x8b)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: this is gzip-compressed data (%llu bytes), not a checkpoint: "
                        "decompress it first (gunzip)",
                        src->path, (unsigned long long)n);
    for (uint64_t i = 0; i < n && i < 8; i++) sprintf(hex + 3 * i, "%02x ", p[i]);
    if (*hex) hex[strlen(hex) - 1] = 0;
    return cki_fail(ctx, CK_EFORMAT,
                    "%s: not a checkpoint format ckptkit reads (%llu bytes, starting %s)",
                    src->path, (unsigned long long)n, hex);
}

/* Web build, a file too large to hold whole that no windowed reader claims. */
static ck_status too_large(ck_ctx *ctx, const cki_source *src)
{
    return cki_fail(ctx, CK_EUNSUPPORTED,
                    "%s: %llu bytes: files over %llu bytes are read here only in formats whose "
                    "header is at the start (safetensors, GGUF, torch zip); use the ckptkit "
                    "command for this one",
                    src->path, (unsigned long long)src->len,
                    (unsigned long long)CKI_SOURCE_WHOLE_MAX);
}

typedef struct first_bad {
    char what[300];
    size_t count;
} first_bad;

static void note_dangerous(void *user, const ck_scan_item *it)
{
    first_bad *fb = user;
    if (it->verdict != CK_VERDICT_DANGEROUS) return;
    if (!fb->count++)
        snprintf(fb->what, sizeof fb->what, "%s.%s in %s", it->module, it->name, it->where);
}

/* The reader refuses a main pickle with dangerous references; this also
 * covers every other pickle in the file (extra zip records, a legacy tail,
 * bytes after STOP) with the scanner's own parse, so what loads is never
 * something `ckptkit scan` would call unsafe. */
static void scan_for_unsafe(ck_ctx *ctx, const cki_source *src, first_bad *fb)
{
    ck_verdict worst = CK_VERDICT_ALLOWED;
    memset(fb, 0, sizeof *fb);
    /* a web window over anything but a zip: the scanner would open the model
     * again (a zip is scanned record by record through the windowed reader) */
    if (src->view_len < src->len && cki_torch_sniff(src->base, src->view_len) != CKI_TORCH_ZIP)
        return;
    cki_scan_source(ctx, src, note_dangerous, fb, &worst);
    cki_clear(ctx);
}

/* The failure for what scan_for_unsafe found, if anything. */
static ck_status refuse_unsafe(ck_ctx *ctx, const cki_source *src, const first_bad *fb0)
{
    const first_bad fb = *fb0;
    if (!fb.count) return CK_OK;
    return cki_fail(ctx, CK_EUNSAFE,
                    "%s: refusing to load: a pickle references %s, which would run code under "
                    "Python's unpickler (%zu such global%s; see 'ckptkit scan'); nothing was run, "
                    "and --allow-unsafe extracts the tensors anyway",
                    src->path, fb.what, fb.count, fb.count == 1 ? "" : "s");
}

/* Opens one file and runs its reader into M (also used for each shard). */
static ck_status read_source_into(ck_model *m, cki_source *src, const char *path,
                                  const ck_open_opts *opts);

ck_status cki_open_file_into(ck_model *m, const char *path, const ck_open_opts *opts)
{
    ck_ctx *ctx = m->ctx;
    cki_source *src;
    ck_status st;

    if ((st = cki_source_open_ex(ctx, path, opts && opts->map_writable, &src))) return st;
    return read_source_into(m, src, path, opts);
}

/* Runs the reader for SRC (already opened, owned from now on) into M. */
static ck_status read_source_into(ck_model *m, cki_source *src, const char *path,
                                  const ck_open_opts *opts)
{
    ck_ctx *ctx = m->ctx;
    const cki_format *f;
    ck_status st;

    if ((st = cki_model_add_source(m, src))) return st;
    cki_mem_allow_input(ctx, src->len);
    if (opts && opts->manifest) {
        f = cki_format_by_name("raw", CKI_CAP_READ);
    } else if (opts && opts->format) {
        f = cki_format_by_name(opts->format, CKI_CAP_READ);
        if (!f || !(f->caps & CKI_CAP_READ))
            return cki_fail(ctx, CK_EARG, "%s: no reader named '%s'", path, opts->format);
    } else {
        f = cki_format_detect(src);
        if (!f && src->view_len < src->len) return too_large(ctx, src);
        if (!f) return unknown_format(ctx, src);
    }
    if (!f) return cki_fail(ctx, CK_EUNSUPPORTED, "%s: raw input is not available", path);
    if (src->view_len < src->len && !(f->caps & CKI_CAP_WINDOW)) return too_large(ctx, src);
    if (!strcmp(m->format_name, "?")) m->format_name = f->name;
    /* the scan runs before the reader (its pickle graphs are gone before
     * the reader builds its own and the model), but a reader's failure
     * still comes first, as it would if the scan ran after it */
    if (!strcmp(f->name, "torch") && !(opts && opts->allow_unsafe)) {
        first_bad fb;
        scan_for_unsafe(ctx, src, &fb);
        if ((st = f->read(m, src, opts))) return st;
        return refuse_unsafe(ctx, src, &fb);
    }
    if ((st = f->read(m, src, opts))) return st;
    return CK_OK;
}

/* Opens PATH (or, when DATA is not NULL, the LEN bytes at DATA named PATH). */
static ck_status open_model(ck_ctx *ctx, const char *path, const void *data, uint64_t len,
                            const ck_open_opts *opts, ck_model **out)
{
    ck_model *m;
    ck_status st;
    cki_source *src;
    if (!ctx || !path || !out) return cki_fail(ctx, CK_EARG, "ck_model_open: missing argument");
    cki_clear(ctx);
    if ((st = cki_model_new(ctx, path, &m))) return st;
    if (data) {
        if (opts && opts->manifest)
            st = cki_fail(ctx, CK_EARG, "%s: a raw manifest needs a file, not bytes", path);
        else if (!(st = cki_source_from_memory(ctx, path, data, len, &src)))
            st = read_source_into(m, src, path, opts);
    } else if (cki_is_sharded_path(path)) {
        st = cki_sharded_open(m, path, opts);
    } else {
        st = cki_open_file_into(m, path, opts);
    }
    if (st) {
        /* every message names the file, even those from deep helpers
         * (allocation limits) that do not know it */
        if (strncmp(ctx->errmsg, path, strlen(path)) != 0) {
            char msg[CKI_ERRMSG_MAX];
            snprintf(msg, sizeof msg, "%s", ctx->errmsg);
            cki_fail(ctx, st, "%s: %s", path, msg);
        }
        ck_model_close(m);
        return st;
    }
    *out = m;
    return CK_OK;
}

ck_status ck_model_open(ck_ctx *ctx, const char *path, const ck_open_opts *opts, ck_model **out)
{
    return open_model(ctx, path, NULL, 0, opts, out);
}

ck_status ck_model_open_memory(ck_ctx *ctx, const char *name, const void *data, uint64_t len,
                               const ck_open_opts *opts, ck_model **out)
{
    static const char empty[1] = "";
    return open_model(ctx, name, data ? data : empty, len, opts, out);
}

const ck_value *ck_model_values(const ck_model *m)
{
    return m ? m->values : NULL;
}

const char *ck_model_format(const ck_model *m)
{
    return m->format_name;
}

const char *ck_model_path(const ck_model *m)
{
    return m->path;
}

size_t ck_model_tensor_count(const ck_model *m)
{
    return m ? m->count : 0;
}

ck_status ck_model_tensor(const ck_model *m, size_t i, ck_tensor_info *out)
{
    const cki_tensor *t;
    if (!m || i >= m->count || !out) return CK_EARG;
    t = &m->tensors[i];
    out->name = t->name;
    out->dtype = t->dtype;
    out->ndim = t->ndim;
    out->shape = t->shape;
    out->strides = t->stride;
    out->storage_offset = t->offset;
    out->numel = t->numel;
    out->nbytes = t->nbytes;
    out->storage_id = t->storage ? t->storage->id : 0;
    out->file_offset = t->storage ? t->storage->file_off : 0;
    return CK_OK;
}

ck_status ck_model_find(const ck_model *m, const char *name, size_t *index)
{
    if (!m || !name) return CK_EARG;
    return cki_map_get(&m->names, name, strlen(name), index) ? CK_ENOTFOUND : CK_OK;
}

const void *ck_model_data(const ck_model *m, size_t i)
{
    if (!m || i >= m->count) return NULL;
    return cki_tensor_bytes(&m->tensors[i]);
}

ck_status ck_model_read(ck_model *m, size_t i, uint64_t first, uint64_t count, ck_dtype as,
                        void *dst, size_t dst_cap)
{
    if (!m || i >= m->count) return cki_fail(m ? m->ctx : NULL, CK_EARG, "no tensor %zu", i);
    return cki_tensor_read(m->ctx, &m->tensors[i], first, count, as, dst, dst_cap, NULL);
}

size_t ck_model_meta_count(const ck_model *m)
{
    return m ? m->meta_count : 0;
}

ck_status ck_model_meta(const ck_model *m, size_t i, const char **key, const char **value)
{
    if (!m || i >= m->meta_count) return CK_EARG;
    *key = m->meta_keys[i];
    *value = m->meta_vals[i];
    return CK_OK;
}

const char *ck_model_meta_type(const ck_model *m, size_t i)
{
    if (!m || i >= m->meta_count || !m->meta_type) return NULL;
    return m->meta_type(m, i);
}

const char *ck_model_meta_get(const ck_model *m, const char *key)
{
    for (size_t i = 0; m && i < m->meta_count; i++)
        if (strcmp(m->meta_keys[i], key) == 0) return m->meta_vals[i];
    return NULL;
}

const char *ck_model_values_json(const ck_model *m)
{
    return m && m->values_json ? m->values_json : "null";
}

size_t ck_model_omitted_count(const ck_model *m)
{
    return m ? m->omitted_count : 0;
}
