/*
 * fuzz_torch.c -- libFuzzer target for the torch reader: the input is a
 * whole file (zip, legacy stream or tar), read from memory under a 64 MiB
 * memory limit and a 16 MiB inflate limit, first by the default naming rule
 * and then with --all. Every tensor of an accepted file is read back (its
 * first 64 Ki elements, and as F32 where castable). Accepted models must hold
 * the reader's promises: names unique and found again, every tensor a valid
 * view of its storage, a values document that is not empty. A third pass keeps
 * the value tree (ck_open_opts.values) and walks it: every node of a known
 * kind, every tensor node pointing at a tensor of the model or saying why not.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/format.h"

extern const cki_format cki_fmt_torch;

/* Walks at most *BUDGET nodes (the graph may be cyclic) down to depth 200. */
static void walk_values(const ck_model *m, const ck_value *v, int depth, long *budget)
{
    const ck_value *parts[4];
    if (!v || depth > 200 || --*budget < 0) return;
    if ((int)v->kind < CK_VALUE_NONE || v->kind > CK_VALUE_OBJECT) abort();
    if (v->kind == CK_VALUE_TENSOR) {
        if (v->tensor == (size_t)-1 ? !v->s : v->tensor >= m->count) abort();
        return;
    }
    if ((v->kind == CK_VALUE_STR || v->kind == CK_VALUE_BYTES) && (!v->s || v->s[v->len]))
        abort();
    if (v->kind == CK_VALUE_TUPLE || v->kind == CK_VALUE_LIST || v->kind == CK_VALUE_SET ||
        v->kind == CK_VALUE_SLICE || v->kind == CK_VALUE_DICT) {
        uint32_t n = v->kind == CK_VALUE_DICT ? 2 * v->count : v->count;
        if (n && !v->items) abort();
        for (uint32_t i = 0; i < n; i++) walk_values(m, v->items[i], depth + 1, budget);
    }
    if (v->kind == CK_VALUE_OBJECT || v->kind == CK_VALUE_GLOBAL) {
        if (!v->module || !v->name) abort();
        parts[0] = v->args;
        parts[1] = v->state;
        parts[2] = v->dict;
        parts[3] = v->list;
        for (int i = 0; i < 4; i++) walk_values(m, parts[i], depth + 1, budget);
    }
}

static void one(const uint8_t *data, size_t size, int all)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_source *src;
    ck_open_opts o;
    if (!ctx) return;
    memset(&o, 0, sizeof o);
    o.all = all == 1;
    o.values = all == 2;
    ck_ctx_set_limit(ctx, CK_LIMIT_INFLATE_BYTES, 16u << 20);
    ck_ctx_set_limit(ctx, CK_LIMIT_MEMORY, 64u << 20);
    ctx->mem_limit_effective = 64u << 20;
    if (cki_model_new(ctx, "fuzz.pt", &m) ||
        cki_source_from_memory(ctx, "fuzz.pt", data, size, &src) || cki_model_add_source(m, src))
        goto out;
    (void)cki_fmt_torch.probe(src);
    if (cki_fmt_torch.read(m, src, &o) == CK_OK) {
        if (!m->values_json || !m->values_json[0]) abort();
        if (o.values) {
            long budget = 200000;
            if (!ck_model_values(m)) abort();
            walk_values(m, ck_model_values(m), 0, &budget);
        }
        for (size_t i = 0; i < m->count; i++) {
            cki_tensor *t = &m->tensors[i];
            size_t idx;
            uint64_t k = t->numel < 65536 ? t->numel : 65536, nb;
            uint8_t *buf;
            if (ck_model_find(m, t->name, &idx) || idx != i) abort();
            if (cki_tensor_validate(ctx, "fuzz.pt", t)) abort();
            if (!cki_dtype_size(t->dtype)) {
                if (t->nbytes > (1u << 20)) continue;
                k = t->numel;
            }
            if (cki_dtype_nbytes(t->dtype, k, &nb)) abort();
            buf = malloc(nb ? (size_t)nb : 1);
            if (!buf) abort();
            if (cki_tensor_read(ctx, t, 0, k, CK_DT_KEEP, buf, nb ? (size_t)nb : 1, NULL)) abort();
            free(buf);
            if (ck_dtype_can_cast(t->dtype) && cki_dtype_size(t->dtype)) {
                float f[64];
                uint64_t n = t->numel < 64 ? t->numel : 64;
                if (cki_tensor_read(ctx, t, 0, n, CK_DT_F32, f, sizeof f, NULL)) abort();
            }
        }
    }
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size, 0);
    one(data, size, 1);
    one(data, size, 2);
    return 0;
}
