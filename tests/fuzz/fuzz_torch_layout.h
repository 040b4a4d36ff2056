/*
 * fuzz_torch_layout.h -- what fuzz_tar.c and fuzz_legacy.c share: the torch
 * parse (cki_torch_parse, the one both the torch reader and the scanner run)
 * of a legacy stream or tar archive held in memory, checked against the
 * promises of its layout, and then the torch reader over the same bytes.
 *
 * After a successful parse (violations abort):
 *  - every located storage lies inside the input (offset + length does not
 *    overflow and ends at or before the last byte);
 *  - a legacy stream's storages that are not views are disjoint: the layout
 *    places each key's bytes after the previous key's;
 *  - the bytes the layout accounts for end inside the input (data_end);
 *  - every global the parse met is well formed (module and name set).
 * A failed parse leaves a one-line message naming the file.
 *
 * The reader then opens the same bytes as a model (default naming, or with
 * --all when the input's length is odd) and the opened model must keep the
 * promises of fz_check_model (fuzz_open.h). After everything is closed the
 * context holds no counted memory.
 */
#ifndef FUZZ_TORCH_LAYOUT_H
#define FUZZ_TORCH_LAYOUT_H

#include "formats/torch_read.h"
#include "fuzz_open.h"

extern const cki_format cki_fmt_torch;

static inline ck_status fz_globals_visit(void *user, const char *where, uint64_t off,
                                         const cki_pickle *pk)
{
    (void)user;
    (void)off;
    fz_check(where != NULL);
    for (size_t i = 0; i < pk->global_count; i++)
        fz_check(pk->globals[i].module != NULL && pk->globals[i].name != NULL);
    return CK_OK;
}

static inline void fz_check_layout(const cki_torch_file *tf, uint64_t len)
{
    const cki_trec *r = &tf->rec;
    fz_check(tf->data_end <= len);
    for (size_t i = 0; i < r->storage_count; i++) {
        const cki_tstorage *s = r->storages[i];
        uint64_t end;
        if (!s->located) continue;
        fz_check(s->where != NULL); /* every located storage has its where record */
        fz_check(!cki_add_u64(&end, s->where->data_off, s->where->data_len) && end <= len);
        if (tf->kind != CKI_TORCH_LEGACY || s->is_view || !s->where->data_len) continue;
        for (size_t j = 0; j < i && j < 256; j++) {
            const cki_tstorage *o = r->storages[j];
            if (!o->located || o->is_view || !o->where->data_len) continue;
            if (s->where->data_off < o->where->data_off + o->where->data_len &&
                o->where->data_off < end) {
                fprintf(stderr, "fuzz: storages '%s' and '%s' overlap\n", s->key, o->key);
                abort();
            }
        }
    }
}

/* Parses P[0..LEN) (named FILE) as KIND, then reads it with the torch
 * reader; checks everything above. */
static inline void fz_torch_layout(const char *file, const uint8_t *p, size_t len,
                                   cki_torch_kind kind)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_torch_file tf;
    ck_model *m = NULL;
    cki_source *src;
    ck_open_opts o;
    ck_status st;
    if (!ctx) return;
    fz_grow_mem_limit(ctx, len);
    st = cki_torch_parse(ctx, file, p, len, kind, fz_globals_visit, NULL, &tf);
    if (st == CK_OK) {
        fz_check(tf.kind == kind);
        fz_check_layout(&tf, len);
        cki_torch_close(&tf);
    } else {
        fz_check_message(ctx, st, file);
    }
    fz_check(ctx->mem_used == 0);
    memset(&o, 0, sizeof o);
    o.all = (int)(len & 1);
    if (cki_model_new(ctx, file, &m) || cki_source_from_memory(ctx, file, p, len, &src) ||
        cki_model_add_source(m, src))
        goto out;
    st = cki_fmt_torch.read(m, src, &o);
    if (st == CK_OK) fz_check_model(ctx, m, file);
    else fz_check_message(ctx, st, file);
out:
    ck_model_close(m);
    fz_check(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

#endif
