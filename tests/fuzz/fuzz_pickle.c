/*
 * fuzz_pickle.c -- libFuzzer target for the restricted pickle machine
 * (src/pickle/machine.c) and the queries and verdicts used on its output.
 *
 * The input is run as a chain of pickles (each from where the previous one
 * stopped, as legacy torch files and scanners do). Beyond "no crash":
 *  - a failure leaves a one-line message naming the file, no root, and only
 *    well-formed globals;
 *  - a success yields a graph that is walked once per node with a visited
 *    set (it may be cyclic) and checked: strings NUL-terminated, BIGINTs
 *    minimal and wider than int64, item counts and shapes per kind, extras
 *    only where the design puts them, offsets inside the input, heights set
 *    and within the depth limit;
 *  - memory stays O(input): the context's peak is bounded by a constant
 *    times the input size;
 *  - the lean run (memo filter, torch rebuild records) gives the same
 *    status, message, globals, end and root height as the exact run.
 * Violations abort, so the fuzzer reports them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cki.h"
#include "pickle/pickle.h"
#include "pickle/verdict.h"

#define DEPTH_LIMIT 200
#define MAX_CHAIN 8

static void check(int ok)
{
    if (!ok) abort();
}

/* ---- a pointer set ---------------------------------------------------------- */

typedef struct pset {
    const void **slot;
    size_t cap, count;
} pset;

static size_t pslot(const void *p, size_t cap)
{
    uintptr_t x = (uintptr_t)p;
    x ^= x >> 17;
    x *= (uintptr_t)0x9E3779B97F4A7C15ull;
    return (size_t)(x >> 7) & (cap - 1);
}

/* 1 if P was added, 0 if already present. */
static int pset_add(pset *s, const void *p)
{
    size_t j;
    if ((s->count + 1) * 2 > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 256;
        const void **ns = calloc(ncap, sizeof *ns);
        check(ns != NULL);
        for (size_t i = 0; i < s->cap; i++) {
            if (!s->slot[i]) continue;
            for (j = pslot(s->slot[i], ncap); ns[j]; j = (j + 1) & (ncap - 1)) {
            }
            ns[j] = s->slot[i];
        }
        free(s->slot);
        s->slot = ns;
        s->cap = ncap;
    }
    for (j = pslot(p, s->cap); s->slot[j]; j = (j + 1) & (s->cap - 1))
        if (s->slot[j] == p) return 0;
    s->slot[j] = p;
    s->count++;
    return 1;
}

/* ---- invariants -------------------------------------------------------------- */

static void check_node(const cki_pv *v, uint64_t lo, uint64_t hi)
{
    size_t slots = v->kind == CKI_PV_DICT ? (size_t)v->n * 2 : v->n;
    int64_t i64;
    check(v->off >= lo && v->off < hi);
    check(slots <= v->cap && (slots == 0 || v->items != NULL));
    for (size_t i = 0; i < slots; i++) check(v->items[i] != NULL);
    check(v->height >= 1 && v->height <= DEPTH_LIMIT);
    if (cki_pv_child_count(v) == 0) check(v->height == 1);
    check(!cki_pv_extra(v) || cki_pv_extra(v)->kind == CKI_PV_DICT);
    check(!cki_pv_extra_list(v) || cki_pv_extra_list(v)->kind == CKI_PV_LIST);
    if (cki_pv_extra(v) || cki_pv_extra_list(v))
        check(v->kind == CKI_PV_REDUCE || v->kind == CKI_PV_NEWOBJ || v->kind == CKI_PV_GLOBAL ||
              v->kind == CKI_PV_PERSID || v->kind == CKI_PV_TREBUILD);
    switch (v->kind) {
    case CKI_PV_NONE:
        check(v->n == 0);
        break;
    case CKI_PV_BOOL:
        check(v->u.i == 0 || v->u.i == 1);
        check(cki_pv_to_i64(v, &i64) == 0 && i64 == v->u.i);
        break;
    case CKI_PV_INT:
        check(cki_pv_to_i64(v, &i64) == 0 && i64 == v->u.i);
        break;
    case CKI_PV_BIGINT: {
        const uint8_t *b = (const uint8_t *)v->u.s.p;
        size_t n = (size_t)v->u.s.len;
        check(n > 8 && b[n] == 0);
        check(!((b[n - 1] == 0 && !(b[n - 2] & 0x80)) || (b[n - 1] == 0xff && (b[n - 2] & 0x80))));
        check(cki_pv_to_i64(v, &i64) == 1);
        break;
    }
    case CKI_PV_STR:
    case CKI_PV_BYTES:
        check(v->u.s.p != NULL && v->u.s.p[v->u.s.len] == 0);
        check(v->u.s.len <= 2 * (hi - lo)); /* raw-unicode-escape at most doubles a line */
        if (v->kind == CKI_PV_STR) check(cki_pv_is_str(v, v->u.s.p) || memchr(v->u.s.p, 0, v->u.s.len));
        break;
    case CKI_PV_GLOBAL:
        check(v->u.g.module && v->u.g.name);
        (void)cki_global_verdict(v->u.g.module, v->u.g.name);
        break;
    case CKI_PV_REDUCE:
        check(v->n == 2);
        (void)cki_pv_call_args(v);
        (void)cki_pv_is_call_of(v, "collections", "OrderedDict");
        break;
    case CKI_PV_NEWOBJ:
        check(v->n == 2 || v->n == 3);
        (void)cki_pv_call_args(v);
        break;
    case CKI_PV_PERSID:
        check(v->n == 1);
        break;
    case CKI_PV_TREBUILD:
        check(v->n == CKI_TRB_COUNT && v->u.s.p && v->height >= 5);
        check(v->items[CKI_TRB_SHARED]->kind == CKI_PV_TUPLE &&
              v->items[CKI_TRB_SHARED]->n == CKI_TRS_COUNT &&
              cki_pv_is_global(v->items[CKI_TRB_SHARED]->items[CKI_TRS_CALLABLE], "torch._utils",
                               "_rebuild_tensor_v2"));
        check(cki_pv_trebuild_off(v, 0) < v->off && cki_pv_trebuild_off(v, 1) < v->off);
        break;
    case CKI_PV_DICT:
        (void)cki_pv_dict_get(v, "_metadata");
        break;
    case CKI_PV_FLOAT:
        check(v->n == 0 && !v->items);
        break;
    default:
        check(v->kind == CKI_PV_TUPLE || v->kind == CKI_PV_LIST || v->kind == CKI_PV_SET ||
              v->kind == CKI_PV_FROZENSET);
    }
    check(cki_pv_kind_name(v->kind)[0] != '?');
}

static void walk(const cki_pv *root, uint64_t lo, uint64_t hi)
{
    pset seen = {0};
    const cki_pv **todo = NULL;
    size_t ntodo = 0, cap = 0;
    pset_add(&seen, root);
    cap = 64;
    todo = malloc(cap * sizeof *todo);
    check(todo != NULL);
    todo[ntodo++] = root;
    while (ntodo) {
        const cki_pv *v = todo[--ntodo];
        size_t nc = cki_pv_child_count(v);
        check_node(v, lo, hi);
        for (size_t i = 0; i < nc; i++) {
            const cki_pv *c = cki_pv_child(v, i);
            check(c != NULL);
            if (!pset_add(&seen, c)) continue;
            if (ntodo == cap) {
                cap *= 2;
                todo = realloc(todo, cap * sizeof *todo);
                check(todo != NULL);
            }
            todo[ntodo++] = c;
        }
        check(cki_pv_child(v, nc) == NULL);
    }
    free(todo);
    free(seen.slot);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    size_t pos = 0;
    check(ctx != NULL);
    ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_DEPTH, DEPTH_LIMIT);
    ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_STACK, 1u << 20);
    ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_MEMO, 1u << 20);
    for (int k = 0; k < MAX_CHAIN && pos < size; k++) {
        cki_arena ar;
        cki_pickle pk;
        ck_status st;
        cki_arena_init(&ar, ctx);
        st = cki_pickle_run(ctx, &ar, data + pos, size - pos, "f.pkl", "fuzz", pos, &pk);
        for (size_t i = 0; i < pk.global_count; i++) {
            const cki_pickle_global *g = &pk.globals[i];
            check(g->module && g->name && g->off >= pos && g->off < size);
            check(g->resolved || (!strcmp(g->module, "?") && !strcmp(g->name, "?")));
            check(g->resolved || cki_global_verdict(g->module, g->name) == CK_VERDICT_DANGEROUS);
        }
        check(pk.opcodes <= size - pos);
        if (st) {
            const char *msg = ck_errmsg(ctx);
            {
                /* the lean run fails the same way, with the same message */
                char saved[CKI_ERRMSG_MAX];
                cki_arena lar;
                cki_pickle lk;
                snprintf(saved, sizeof saved, "%s", msg);
                cki_arena_init(&lar, ctx);
                check(cki_pickle_run_lean(ctx, &lar, NULL, data + pos, size - pos, "f.pkl", "fuzz", pos,
                                          &lk) == st);
                check(!strcmp(saved, ck_errmsg(ctx)) && lk.global_count == pk.global_count);
                cki_arena_free(&lar);
            }
            check(pk.root == NULL && !strncmp(msg, "f.pkl: fuzz: ", 13));
            check(!strchr(msg, '\n'));
            check(st == CK_EFORMAT || st == CK_ELIMIT || st == CK_EUNSUPPORTED ||
                  st == CK_ENOMEM);
            cki_arena_free(&ar);
            break;
        }
        check(pk.root != NULL && pk.end >= 1 && pk.end <= size - pos);
        check(data[pos + pk.end - 1] == '.');
        walk(pk.root, pos, size);
        {
            cki_arena lar;
            cki_pickle lk;
            ck_status lst;
            cki_arena_init(&lar, ctx);
            lst = cki_pickle_run_lean(ctx, &lar, NULL, data + pos, size - pos, "f.pkl", "fuzz", pos, &lk);
            check(lst == CK_OK && lk.end == pk.end && lk.opcodes == pk.opcodes &&
                  lk.global_count == pk.global_count && lk.root->height == pk.root->height);
            for (size_t i = 0; i < pk.global_count; i++)
                check(lk.globals[i].off == pk.globals[i].off &&
                      !strcmp(lk.globals[i].module, pk.globals[i].module) &&
                      !strcmp(lk.globals[i].name, pk.globals[i].name));
            walk(lk.root, pos, size);
            cki_arena_free(&lar);
        }
        cki_arena_free(&ar);
        pos += pk.end;
    }
    /* O(input) memory: nodes, pointers and copies, each a constant per byte */
    check(ctx->mem_peak <= 512 * (uint64_t)size + (2u << 20));
    check(ctx->mem_used == 0);
    ck_ctx_free(ctx);
    return 0;
}
