/*
 * fuzz_open.h -- what fuzz_open_any.c and fuzz_roundtrip.c share: opening a
 * checkpoint held in memory exactly the way ck_model_open opens a file
 * (src/api/open.c, cki_open_file_into), and the rules every failure message
 * must keep.
 *
 * The in-memory open: a source over the bytes (not copied), the context's
 * memory limit grown by 32 bytes per input byte on a 64 MiB base and capped
 * by CK_LIMIT_MEMORY (open.c's rule, restated here because open.c keeps it
 * static), detection by content only, then the detected driver's read. The
 * caller owns *M even when the read fails and closes it.
 *
 * Message rules (include/ckptkit.h, "Conventions"): a failure leaves one
 * non-empty line in the context, with the failing status; it names the file
 * first ("FILE: ...") unless it is an allocation failure, whose message comes
 * from the allocator and knows no file.
 *
 * Promises of an opened model (fz_check_model; violations abort):
 *  - a reader name is set; every tensor is found again by its name; its
 *    info is consistent (numel is the product of the shape, nbytes is numel
 *    at the dtype's width) and its view passes cki_tensor_validate;
 *  - every tensor of at most FZ_CAP bytes (FZ_TOTAL per model) reads whole
 *    as its own dtype (a storage inflated on demand, an npz member, may
 *    instead fail its first read with CK_EFORMAT: its deflate stream and CRC
 *    are checked as it is read); a zero-copy view, when offered, holds the same
 *    bytes; a slice reads as the whole read's slice; castable whole-byte
 *    tensors read as F32, and an F32 tensor read as F32 gives its bytes;
 *  - the values document is strict JSON; metadata entries are strings
 *    found again by key;
 *  - when every tensor was read: ck_verify and ck_diff of the model against
 *    itself succeed and call every tensor the same.
 */
#ifndef FUZZ_OPEN_H
#define FUZZ_OPEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "formats/format.h"

#define FZ_NAME "fuzz.bin"
#define FZ_MEM_BASE (64ull << 20)
#define FZ_MEM_PER_BYTE 32u
#define FZ_CAP (1u << 20)    /* bytes of one tensor read in full */
#define FZ_TOTAL (8u << 20)  /* bytes of one model read in full */

static inline void fz_check(int ok)
{
    if (!ok) abort();
}

/* Aborts with MSG and the context's message on stderr: for a broken
 * promise whose reason the reproducer alone would not show. */
static inline void fz_fail(const ck_ctx *ctx, const char *what)
{
    fprintf(stderr, "fuzz: %s: %s\n", what, ctx ? ck_errmsg(ctx) : "");
    abort();
}

static inline void fz_check_message(const ck_ctx *ctx, ck_status st, const char *file)
{
    const char *msg = ck_errmsg(ctx);
    size_t fl = strlen(file);
    fz_check(st != CK_OK && ck_last_status(ctx) == st);
    fz_check(msg[0] != 0 && strchr(msg, '\n') == NULL);
    if (st != CK_ENOMEM && (strncmp(msg, file, fl) != 0 || msg[fl] != ':'))
        fz_fail(ctx, "message does not name the file first");
}

static inline void fz_grow_mem_limit(ck_ctx *ctx, uint64_t len)
{
    uint64_t lim = ck_ctx_get_limit(ctx, CK_LIMIT_MEMORY), add, eff;
    if (cki_mul_u64(&add, len, FZ_MEM_PER_BYTE) || cki_add_u64(&eff, FZ_MEM_BASE, add))
        eff = UINT64_MAX;
    ctx->mem_limit_effective = eff < lim ? eff : lim;
}

/* Opens DATA[0..SIZE) named NAME with the reader detection picks. *FMT is
 * that reader, or NULL when none claims the bytes (then CK_EFORMAT is
 * returned without a message: open.c words that one itself). */
static inline ck_status fz_open(ck_ctx *ctx, const char *name, const uint8_t *data, size_t size,
                                ck_model **m, const cki_format **fmt)
{
    cki_source *src;
    ck_status st;
    *fmt = NULL;
    *m = NULL;
    if ((st = cki_model_new(ctx, name, m))) return st;
    if ((st = cki_source_from_memory(ctx, name, data, size, &src))) return st;
    if ((st = cki_model_add_source(*m, src))) return st;
    fz_grow_mem_limit(ctx, size);
    if (!(*fmt = cki_format_detect(src))) return CK_EFORMAT;
    if (!strcmp((*m)->format_name, "?")) (*m)->format_name = (*fmt)->name;
    return (*fmt)->read(*m, src, NULL);
}

static inline void fz_check_values(ck_ctx *ctx, const ck_model *m)
{
    const char *json = ck_model_values_json(m);
    cki_arena ar;
    const cki_json *root;
    cki_json_err err;
    cki_json_opts o;
    ck_status st;
    o.max_depth = 4 * (unsigned)ck_ctx_get_limit(ctx, CK_LIMIT_PICKLE_DEPTH) + 16;
    o.max_bytes = 0;
    cki_arena_init(&ar, ctx);
    st = cki_json_parse(ctx, &ar, json, strlen(json), &o, &root, &err);
    if (st == CK_EFORMAT) {
        fprintf(stderr, "fuzz: values document at byte %zu: %s\n", err.off, err.msg);
        abort();
    }
    cki_arena_free(&ar);
    for (size_t i = 0; i < ck_model_meta_count(m); i++) {
        const char *k, *v;
        fz_check(ck_model_meta(m, i, &k, &v) == CK_OK && k && v);
        fz_check(ck_model_meta_get(m, k) != NULL);
    }
}

/* Reads tensor I whole and in part; returns 1 if it was read, 0 if skipped
 * for its size. */
static inline int fz_check_reads(ck_ctx *ctx, ck_model *m, size_t i, uint64_t *budget)
{
    cki_tensor *t = &m->tensors[i];
    unsigned es = cki_dtype_size(t->dtype);
    const void *view = ck_model_data(m, i);
    uint8_t *whole, *part;
    uint64_t first, count;

    if (t->nbytes > FZ_CAP || t->nbytes > *budget) return 0;
    *budget -= t->nbytes;
    whole = malloc(t->nbytes ? (size_t)t->nbytes : 1);
    part = malloc(t->nbytes ? (size_t)t->nbytes : 1);
    fz_check(whole && part);
    if (cki_tensor_read(ctx, t, 0, t->numel, CK_DT_KEEP, whole, (size_t)t->nbytes, NULL)) {
        /* bytes inflated on demand (npz) are checked as they are read */
        if (!t->storage->fetch.fn || ck_last_status(ctx) != CK_EFORMAT)
            fz_fail(ctx, "a tensor of an opened model does not read whole");
        free(whole);
        free(part);
        return 0;
    }
    if (view) fz_check(memcmp(view, whole, (size_t)t->nbytes) == 0);
    if (es && t->numel) {
        first = t->numel / 3;
        count = (t->numel - first + 1) / 2;
        if (cki_tensor_read(ctx, t, first, count, CK_DT_KEEP, part, (size_t)t->nbytes, NULL))
            fz_fail(ctx, "a slice of a readable tensor does not read");
        fz_check(memcmp(part, whole + first * es, (size_t)(count * es)) == 0);
    }
    if (es && ck_dtype_can_cast(t->dtype) && t->numel <= FZ_CAP / 4) {
        float *f = malloc(t->numel ? (size_t)t->numel * 4 : 4);
        fz_check(f != NULL);
        if (cki_tensor_read(ctx, t, 0, t->numel, CK_DT_F32, f, (size_t)t->numel * 4, NULL))
            fz_fail(ctx, "a castable tensor does not read as F32");
        if (t->dtype == CK_DT_F32) fz_check(memcmp(f, whole, (size_t)t->nbytes) == 0);
        free(f);
    }
    free(whole);
    free(part);
    return 1;
}

static inline int fz_diff_same(void *user, const ck_diff_tensor *t)
{
    (void)user;
    fz_check(t->compared && t->equal);
    return 0;
}

static inline void fz_check_model(ck_ctx *ctx, ck_model *m, const char *file)
{
    uint64_t budget = FZ_TOTAL;
    int all_read = 1, same = 0;
    ck_diff_result dr;
    fz_check(strcmp(ck_model_format(m), "?") != 0);
    fz_check_values(ctx, m);
    for (size_t i = 0; i < ck_model_tensor_count(m); i++) {
        ck_tensor_info ti;
        size_t j;
        uint64_t n = 1, nb;
        fz_check(ck_model_tensor(m, i, &ti) == CK_OK && ti.name != NULL);
        fz_check(ck_model_find(m, ti.name, &j) == CK_OK && j == i);
        fz_check(ti.ndim >= 0 && ti.ndim <= CKI_MAX_DIMS);
        for (int d = 0; d < ti.ndim; d++) {
            fz_check(ti.shape[d] >= 0);
            fz_check(!cki_mul_u64(&n, n, (uint64_t)ti.shape[d]));
        }
        fz_check(n == ti.numel);
        fz_check(!cki_dtype_nbytes(ti.dtype, ti.numel, &nb) && nb == ti.nbytes);
        if (cki_tensor_validate(ctx, file, &m->tensors[i]))
            fz_fail(ctx, "an opened model holds an invalid view");
        all_read &= fz_check_reads(ctx, m, i, &budget);
    }
    if (!all_read) return;
    if (ck_verify(ctx, m, m, NULL, NULL, &same)) {
        if (ck_last_status(ctx) != CK_ENOMEM) fz_fail(ctx, "verify of a readable model failed");
    } else {
        fz_check(same == 1);
    }
    if (ck_diff(ctx, m, m, NULL, fz_diff_same, NULL, &dr)) {
        if (ck_last_status(ctx) != CK_ENOMEM) fz_fail(ctx, "diff of a readable model failed");
    } else {
        fz_check(dr.same == 1 && dr.equal == ck_model_tensor_count(m));
    }
}

#endif
