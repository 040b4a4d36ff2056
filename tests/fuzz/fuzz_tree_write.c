/*
 * fuzz_tree_write.c -- libFuzzer target for the tree writer
 * (src/pickle/tree_write.c): the input is a pickle (or a zip whose first
 * record ending in data.pkl is one, so the real fixtures are replayed); when
 * the machine and the torch recogniser accept it, it is written back under
 * each --unknown policy. Beyond "no crash":
 *  - a write either succeeds or fails with a one-line message;
 *  - a written pickle runs through the machine again, and contains no
 *    dangerous global; under the dict and drop policies every global is one
 *    torch's weights-only loader accepts (builtins under its Python 2 name);
 *  - a removed root writes nothing.
 * Violations abort, so the fuzzer reports them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cki.h"
#include "container/zip.h"
#include "pickle/torch_objects.h"
#include "pickle/tree_write.h"
#include "pickle/verdict.h"

static void check(int ok)
{
    if (!ok) abort();
}

static ck_status none_tensor(void *user, cki_tw *tw, const cki_pv *node, const cki_tobj *t)
{
    (void)user;
    (void)node;
    (void)t;
    cki_pkw_none(tw->pk);
    return CK_OK;
}

static ck_status none_storage(void *user, cki_tw *tw, const cki_pv *node, const cki_tobj *s)
{
    (void)user;
    (void)node;
    (void)s;
    cki_pkw_none(tw->pk);
    return CK_OK;
}

static void write_back(ck_ctx *ctx, const cki_pv *root, int policy)
{
    cki_pkw pk;
    cki_tw tw;
    int gone = 0;
    ck_status st;
    cki_pkw_init(&pk, ctx);
    cki_tw_init(&tw, ctx, &pk);
    tw.unknown = policy;
    tw.tensor = none_tensor;
    tw.storage = none_storage;
    cki_pkw_proto(&pk);
    st = cki_tw_write(&tw, root, &gone);
    if (!st && !gone) {
        cki_arena ar;
        cki_pickle out;
        cki_pkw_stop(&pk);
        check(cki_pkw_status(&pk) == CK_OK);
        cki_arena_init(&ar, ctx);
        st = cki_pickle_run(ctx, &ar, (const uint8_t *)pk.out.p, pk.out.len, "o.pkl", "out", 0,
                            &out);
        /* the machine's own limits may refuse what it accepted when it was smaller */
        check(!st || st == CK_ELIMIT);
        for (size_t i = 0; !st && i < out.global_count; i++) {
            const cki_pickle_global *g = &out.globals[i];
            check(g->resolved && cki_global_verdict(g->module, g->name) != CK_VERDICT_DANGEROUS);
            if (policy != CKI_TW_KEEP)
                check(cki_tw_allowed(g->module, g->name) ||
                      (!strcmp(g->module, "builtins") &&
                       (cki_tw_allowed("builtins", g->name) || !strcmp(g->name, "long"))));
        }
        cki_arena_free(&ar);
    } else if (st) {
        check(!strchr(ck_errmsg(ctx), '\n'));
        check(st == CK_EUNSUPPORTED || st == CK_ELIMIT || st == CK_ENOMEM || st == CK_EFORMAT);
    } else {
        check(pk.out.len == 2); /* PROTO 2 only */
    }
    cki_tw_free(&tw);
    cki_pkw_free(&pk);
}

static void one(ck_ctx *ctx, const uint8_t *p, size_t n)
{
    cki_arena ar;
    cki_pickle pk;
    cki_trec rec;
    cki_tobj *root;
    cki_arena_init(&ar, ctx);
    if (!cki_pickle_run(ctx, &ar, p, n, "f.pkl", "fuzz", 0, &pk)) {
        cki_trec_init(&rec, ctx, &ar, "f.pkl", "fuzz");
        if (!cki_trec_convert(&rec, pk.root, &root))
            for (int policy = CKI_TW_DICT; policy <= CKI_TW_KEEP; policy++)
                write_back(ctx, pk.root, policy);
        cki_trec_free(&rec);
    }
    cki_arena_free(&ar);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_zip z;
    check(ctx != NULL);
    ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_DEPTH, 200);
    if (size >= 4 && !memcmp(data, "PK\3\4", 4) && !cki_zip_open(ctx, "f.zip", data, size, &z)) {
        for (size_t i = 0; i < z.count; i++) {
            const cki_zip_entry *e = &z.entries[i];
            const uint8_t *p;
            uint64_t len;
            uint8_t *owned = NULL;
            if (e->name_len < 8 || memcmp(e->name + e->name_len - 8, "data.pkl", 8)) continue;
            if (!cki_zip_read(&z, e, 0, &p, &len, &owned)) one(ctx, p, (size_t)len);
            cki_free(ctx, owned);
            break;
        }
        cki_zip_close(&z);
    } else {
        one(ctx, data, size);
    }
    check(ctx->mem_used == 0);
    ck_ctx_free(ctx);
    return 0;
}
