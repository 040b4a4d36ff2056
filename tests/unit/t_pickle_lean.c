/*
 * t_pickle_lean.c -- cki_pickle_run_lean against cki_pickle_run: the memo
 * filter and the torch rebuild records must never change what a caller
 * gets (globals, status, message, heights, the torch objects converted from
 * the graph), only how much memory the graph takes. Pickles are built here
 * the way torch.save writes a state dict (protocol 2, BINPUT after every
 * value, BINGET for the values every tensor shares), with variations.
 */
#include <stdio.h>
#include <stdlib.h>

#include "common/cki.h"
#include "pickle/pickle.h"
#include "container/zip.h"
#include "pickle/torch_objects.h"
#include "t.h"
#include "t_torchbuild.h"

/* ---- building pickles ------------------------------------------------------ */

typedef struct pb {
    tb_bytes s; /* the pickle */
    uint32_t next_key;
    /* memo keys of the shared values, 0 until written once */
    uint32_t k_rebuild, k_storage, k_class, k_cpu, k_od;
} pb;

static void put(pb *b, const void *s, size_t n)
{
    tbb_put(&b->s, s, n);
}

static void op(pb *b, uint8_t c)
{
    put(b, &c, 1);
}

static void le32(pb *b, uint32_t v)
{
    uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put(b, x, 4);
}

/* BINPUT / LONG_BINPUT of the next key; returns key + 1 (0 means none). */
static uint32_t memo(pb *b)
{
    uint32_t k = b->next_key++;
    if (k < 256) {
        op(b, 'q');
        op(b, (uint8_t)k);
    } else {
        op(b, 'r');
        le32(b, k);
    }
    return k + 1;
}

static void get(pb *b, uint32_t k1)
{
    uint32_t k = k1 - 1;
    if (k < 256) {
        op(b, 'h');
        op(b, (uint8_t)k);
    } else {
        op(b, 'j');
        le32(b, k);
    }
}

static void ustr(pb *b, const char *s)
{
    op(b, 'X');
    le32(b, (uint32_t)strlen(s));
    put(b, s, strlen(s));
}

static void global(pb *b, const char *mod, const char *name)
{
    op(b, 'c');
    put(b, mod, strlen(mod));
    op(b, '\n');
    put(b, name, strlen(name));
    op(b, '\n');
}

/* A shared value: written and memoized once, fetched after. */
#define SHARED(b, slot, write)                                                                   \
    do {                                                                                         \
        if ((b)->slot) {                                                                         \
            get((b), (b)->slot);                                                                 \
        } else {                                                                                 \
            write;                                                                               \
            (b)->slot = memo(b);                                                                 \
        }                                                                                        \
    } while (0)

enum {
    V_CANON = 0,
    V_META = 1,      /* a 7th argument (metadata dict): not a canonical call */
    V_DUP_ARGS = 2,  /* the args tuple is DUP'd (and the copy popped) */
    V_GET_PID = 4,   /* the persistent id tuple is fetched again (GET) into a list kept
                      * with the tensor: the value is (tensor, [pid]) */
    V_BAD_CLASS = 8, /* storage class torch.NotAStorage */
    V_BIG_SIZE = 16, /* size (2, 3) with a 1000-element storage */
    V_GET_ARGS = 32  /* the args tuple is fetched again: the value is (tensor, [args]) */
};

static void tensor(pb *b, int i, int variant)
{
    char key[32];
    uint32_t kargs = 0, kpid = 0;
    SHARED(b, k_rebuild, global(b, "torch._utils", "_rebuild_tensor_v2"));
    op(b, '(');
    op(b, '(');
    SHARED(b, k_storage, ustr(b, "storage"));
    if (variant & V_BAD_CLASS) {
        global(b, "torch", "NotAStorage");
        memo(b);
    } else {
        SHARED(b, k_class, global(b, "torch", "FloatStorage"));
    }
    snprintf(key, sizeof key, "%d", i);
    ustr(b, key);
    memo(b);
    SHARED(b, k_cpu, ustr(b, "cpu"));
    if (variant & V_BIG_SIZE) {
        op(b, 'M');
        op(b, 0xe8);
        op(b, 0x03);
    } else {
        op(b, 'K');
        op(b, 4);
    }
    op(b, 't');
    kpid = memo(b);
    op(b, 'Q');
    if (variant & V_BIG_SIZE) {
        op(b, 'J'); /* offset 5000: not interned */
        le32(b, 5000u % 994u);
        op(b, 'K');
        op(b, 2);
        op(b, 'K');
        op(b, 3);
        op(b, 0x86);
        memo(b);
        op(b, 'K');
        op(b, 3);
        op(b, 'K');
        op(b, 1);
        op(b, 0x86);
        memo(b);
    } else {
        op(b, 'K');
        op(b, 0);
        op(b, 'K');
        op(b, 4);
        op(b, 0x85);
        memo(b);
        op(b, 'K');
        op(b, 1);
        op(b, 0x85);
        memo(b);
    }
    op(b, 0x89);
    SHARED(b, k_od, global(b, "collections", "OrderedDict"));
    op(b, ')');
    op(b, 'R');
    memo(b);
    if (variant & V_META) {
        op(b, '}');
        memo(b);
    }
    op(b, 't');
    kargs = memo(b);
    if (variant & V_DUP_ARGS) {
        op(b, '2');
        op(b, '0');
    }
    op(b, 'R');
    memo(b);
    if (variant & (V_GET_ARGS | V_GET_PID)) {
        op(b, ']');
        memo(b);
        op(b, '(');
        if (variant & V_GET_ARGS) get(b, kargs);
        if (variant & V_GET_PID) get(b, kpid);
        op(b, 'e');
        op(b, 0x86);
    }
}

/* A state dict {name_i: tensor_i}; VARIANT_AT(i) picks each tensor's form. */
static void build(pb *b, int count, int (*variant_at)(int))
{
    memset(b, 0, sizeof *b);
    op(b, 0x80);
    op(b, 2);
    op(b, '}');
    memo(b);
    op(b, '(');
    for (int i = 0; i < count; i++) {
        char name[48];
        int v = variant_at(i);
        snprintf(name, sizeof name, "blocks.%d.layer.%d.param_%d", i / 100, (i / 10) % 10, i % 10);
        ustr(b, name);
        memo(b);
        tensor(b, i, v);
        if ((i + 1) % 1000 == 0 && i + 1 < count) {
            op(b, 'u');
            op(b, '(');
        }
    }
    op(b, 'u');
    op(b, '.');
}

/* ---- running and comparing --------------------------------------------------- */

typedef struct run {
    ck_ctx *ctx;
    cki_arena ar;  /* the graph */
    cki_arena obj; /* torch objects */
    cki_arena txt; /* the lean run's texts, kept past the graph like a reader's */
    cki_pickle pk;
    ck_status st;
    char msg[1024];
    cki_trec rec;
    cki_tobj *root;
    ck_status cst;
    char cmsg[1024];
} run;

static void do_run(run *r, const pb *b, int lean, uint64_t depth_limit, uint64_t memo_limit)
{
    memset(r, 0, sizeof *r);
    r->ctx = ck_ctx_new();
    if (depth_limit) ck_ctx_set_limit(r->ctx, CK_LIMIT_PICKLE_DEPTH, depth_limit);
    if (memo_limit) ck_ctx_set_limit(r->ctx, CK_LIMIT_PICKLE_MEMO, memo_limit);
    cki_arena_init(&r->ar, r->ctx);
    cki_arena_init(&r->obj, r->ctx);
    cki_arena_init(&r->txt, r->ctx);
    r->st = lean ? cki_pickle_run_lean(r->ctx, &r->ar, &r->txt, b->s.p, b->s.n, "t.pth",
                                       "data.pkl", 0, &r->pk)
                 : cki_pickle_run(r->ctx, &r->ar, b->s.p, b->s.n, "t.pth", "data.pkl", 0, &r->pk);
    snprintf(r->msg, sizeof r->msg, "%s", r->st ? ck_errmsg(r->ctx) : "");
    cki_trec_init(&r->rec, r->ctx, &r->obj, "t.pth", "data.pkl");
    r->rec.copy_strings = 1; /* as the streaming reader converts */
    if (lean) {
        r->rec.text = &r->txt;
        r->rec.graph_texts = r->pk.texts;
    }
    if (!r->st) {
        r->cst = cki_trec_convert(&r->rec, r->pk.root, &r->root);
        snprintf(r->cmsg, sizeof r->cmsg, "%s", r->cst ? ck_errmsg(r->ctx) : "");
    }
}

static void run_free(run *r)
{
    cki_trec_free(&r->rec);
    cki_arena_free(&r->ar);
    cki_arena_free(&r->obj);
    cki_arena_free(&r->txt);
    ck_ctx_free(r->ctx);
}

static int same_i64s(const int64_t *a, const int64_t *b, int n)
{
    if (!a || !b) return a == b;
    for (int i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* Same torch objects, field by field, down the tree. */
static int same_obj(const cki_tobj *a, const cki_tobj *b, int depth)
{
    if (!a || !b) return a == b;
    if (depth > 50) return 1;
    if (a->kind != b->kind || a->n != b->n || a->off != b->off || a->vflags != b->vflags) return 0;
    switch (a->kind) {
    case CKI_TO_BOOL:
    case CKI_TO_INT: return a->u.i == b->u.i;
    case CKI_TO_STR:
    case CKI_TO_BYTES:
        return a->u.s.len == b->u.s.len && !memcmp(a->u.s.p, b->u.s.p, a->u.s.len);
    case CKI_TO_TUPLE:
    case CKI_TO_LIST:
    case CKI_TO_DICT: {
        uint32_t k = a->kind == CKI_TO_DICT ? 2 * a->n : a->n;
        for (uint32_t i = 0; i < k; i++)
            if (!same_obj(a->items[i], b->items[i], depth + 1)) return 0;
        return 1;
    }
    case CKI_TO_TENSOR: {
        const cki_ttensor *x = a->u.t, *y = b->u.t;
        return x->ndim == y->ndim && x->dtype == y->dtype && x->offset == y->offset &&
               x->off == y->off && same_i64s(x->shape, y->shape, x->ndim) &&
               same_i64s(x->stride, y->stride, x->ndim) && !strcmp(x->storage->key, y->storage->key) &&
               !strcmp(x->storage->type_name, y->storage->type_name) &&
               x->storage->numel == y->storage->numel &&
               !strcmp(x->storage->location ? x->storage->location : "",
                       y->storage->location ? y->storage->location : "") &&
               (x->unsupported == NULL) == (y->unsupported == NULL);
    }
    default: return 1;
    }
}

/* Lean and exact runs of B agree on everything a caller sees. Returns the
 * number of TREBUILD records among the root dict's values (lean run). */
static int compare(const pb *b, uint64_t depth_limit, uint64_t memo_limit)
{
    run x, y;
    int records = 0;
    do_run(&x, b, 0, depth_limit, memo_limit);
    do_run(&y, b, 1, depth_limit, memo_limit);
    CHECK(x.st == y.st);
    CHECK(!strcmp(x.msg, y.msg));
    if (strcmp(x.msg, y.msg)) fprintf(stderr, "  exact: %s\n  lean:  %s\n", x.msg, y.msg);
    CHECK(x.pk.global_count == y.pk.global_count);
    for (size_t i = 0; i < x.pk.global_count && i < y.pk.global_count; i++) {
        CHECK(!strcmp(x.pk.globals[i].module, y.pk.globals[i].module));
        CHECK(!strcmp(x.pk.globals[i].name, y.pk.globals[i].name));
        CHECK(x.pk.globals[i].off == y.pk.globals[i].off);
    }
    if (!x.st && !y.st) {
        CHECK(x.pk.end == y.pk.end && x.pk.opcodes == y.pk.opcodes);
        CHECK(x.pk.root->height == y.pk.root->height);
        CHECK(x.cst == y.cst);
        CHECK(!strcmp(x.cmsg, y.cmsg));
        if (strcmp(x.cmsg, y.cmsg)) fprintf(stderr, "  exact: %s\n  lean:  %s\n", x.cmsg, y.cmsg);
        if (y.pk.root->kind == CKI_PV_DICT)
            for (uint32_t i = 0; i < y.pk.root->n; i++) {
                const cki_pv *v = y.pk.root->items[2 * i + 1];
                if (v->kind == CKI_PV_TREBUILD) records++;
                if (v->kind == CKI_PV_TUPLE)
                    for (uint32_t j = 0; j < v->n; j++)
                        records += v->items[j]->kind == CKI_PV_TREBUILD;
            }
        /* the graphs go, as in the reader: the objects must not need them */
        cki_arena_free(&x.ar);
        cki_arena_free(&y.ar);
        if (!x.cst && !y.cst) CHECK(same_obj(x.root, y.root, 0));
    }
    run_free(&x);
    run_free(&y);
    return records;
}

static int all_canon(int i)
{
    (void)i;
    return V_CANON;
}

static int every_third_meta(int i)
{
    return i % 3 == 1 ? V_META : i % 3 == 2 ? V_BIG_SIZE : V_CANON;
}

static int some_dup(int i)
{
    return i % 4 == 1 ? V_GET_ARGS : i % 4 == 2 ? V_DUP_ARGS : i % 4 == 3 ? V_GET_PID : V_CANON;
}

static int one_bad_class(int i)
{
    return i == 1500 ? V_BAD_CLASS : V_CANON;
}

/* ---- tests -------------------------------------------------------------------- */

TEST(pickle_lean_torch_state_dict)
{
    pb b;
    build(&b, 2500, all_canon);
    CHECK(compare(&b, 0, 0) == 2500);
    free(b.s.p);
}

TEST(pickle_lean_non_canonical_stays_a_call)
{
    /* a 7-argument call keeps its REDUCE node; the others around it are
     * records; everything converts the same either way */
    pb b;
    build(&b, 300, every_third_meta);
    CHECK(compare(&b, 0, 0) == 200);
    free(b.s.p);
}

TEST(pickle_lean_shared_nodes_not_recycled)
{
    /* a DUP'd args tuple or a fetched persistent id keeps the call whole
     * (nothing of it is recycled), and the values kept elsewhere stay intact */
    pb b;
    run y;
    build(&b, 400, some_dup);
    CHECK(compare(&b, 0, 0) == 100);
    do_run(&y, &b, 1, 0, 0);
    CHECK(!y.st);
    if (!y.st) {
        /* tensor 1: (tensor, [args]): the args tuple is whole */
        const cki_pv *v = y.pk.root->items[3];
        CHECK(v->kind == CKI_PV_TUPLE && v->n == 2);
        if (v->kind == CKI_PV_TUPLE && v->n == 2) {
            const cki_pv *args = v->items[0]->items[1];
            CHECK(v->items[0]->kind == CKI_PV_REDUCE);
            CHECK(args->kind == CKI_PV_TUPLE && args->n == 6);
            CHECK(v->items[1]->kind == CKI_PV_LIST && v->items[1]->n == 1 &&
                  v->items[1]->items[0] == args);
            CHECK(args->items[0]->kind == CKI_PV_PERSID &&
                  args->items[0]->items[0]->kind == CKI_PV_TUPLE &&
                  args->items[0]->items[0]->n == 5 &&
                  cki_pv_is_str(args->items[0]->items[0]->items[2], "1"));
        }
        /* tensor 2: DUP'd args: the call is kept whole */
        CHECK(y.pk.root->items[5]->kind == CKI_PV_REDUCE);
        /* tensor 3: (tensor, [pid tuple]) */
        v = y.pk.root->items[7];
        CHECK(v->kind == CKI_PV_TUPLE && v->n == 2 && v->items[0]->kind == CKI_PV_REDUCE);
        if (v->kind == CKI_PV_TUPLE && v->n == 2) {
            const cki_pv *t = v->items[1]->items[0];
            CHECK(t->kind == CKI_PV_TUPLE && t->n == 5 && cki_pv_is_str(t->items[2], "3"));
        }
    }
    run_free(&y);
    free(b.s.p);
}

TEST(pickle_lean_messages_from_records)
{
    /* the recogniser's refusal names the same storage and byte offset */
    pb b;
    run y;
    build(&b, 2000, one_bad_class);
    compare(&b, 0, 0);
    do_run(&y, &b, 1, 0, 0);
    CHECK(!y.st && y.cst == CK_EFORMAT && strstr(y.cmsg, "storage '1500' at byte") &&
          strstr(y.cmsg, "is not a torch storage class"));
    run_free(&y);
    free(b.s.p);
}

TEST(pickle_lean_depth_limit)
{
    /* a tensor at the bottom of nested lists: the record's height is the
     * call's (5), so the limit falls at the same place, same message */
    for (int extra = 3; extra <= 6; extra++) {
        pb b;
        int nest = 20;
        memset(&b, 0, sizeof b);
        op(&b, 0x80);
        op(&b, 2);
        for (int i = 0; i < nest; i++) {
            op(&b, ']');
            memo(&b);
        }
        tensor(&b, 0, V_CANON);
        for (int i = 0; i < nest; i++) op(&b, 'a');
        op(&b, '.');
        compare(&b, (uint64_t)(nest + extra), 0);
        {
            run y;
            do_run(&y, &b, 1, (uint64_t)(nest + extra), 0);
            CHECK((y.st == CK_OK) == (extra >= 5));
            run_free(&y);
        }
        free(b.s.p);
    }
}

TEST(pickle_lean_memo_filter_fallback)
{
    /* a fetch of a key never stored: the lean run fails, the exact run
     * decides, the message is the exact one */
    pb b;
    build(&b, 50, all_canon);
    b.s.n--; /* drop STOP */
    op(&b, 'j');
    le32(&b, 4000);
    op(&b, '0');
    op(&b, '.');
    compare(&b, 0, 0);
    free(b.s.p);
    /* a key the filter drops, fetched by a text GET (which the first pass
     * does not follow: the filter is off) and by MEMOIZE numbering */
    memset(&b, 0, sizeof b);
    {
        static const char prog[] = "\x80\x02]q\x00X\x01\x00\x00\x00aq\x01" "a" "g1\n" "a" "."
                                   "";
        put(&b, prog, sizeof prog - 1);
    }
    compare(&b, 0, 0);
    free(b.s.p);
    memset(&b, 0, sizeof b);
    {
        /* protocol 4: MEMOIZE after the list and the string, BINGET 1 */
        static const char prog[] = "\x80\x04]\x94\x8c\x01" "a\x94" "ah\x01" "a.";
        put(&b, prog, sizeof prog - 1);
    }
    compare(&b, 0, 0);
    free(b.s.p);
}

TEST(pickle_lean_memo_limit_counts_dropped_puts)
{
    /* keys no GET fetches still count toward the memo limit, once each */
    pb b;
    build(&b, 200, all_canon);
    compare(&b, 0, 500);  /* fails: about 2,000 keys */
    compare(&b, 0, 5000); /* passes */
    {
        run x, y;
        do_run(&x, &b, 0, 0, 500);
        do_run(&y, &b, 1, 0, 500);
        CHECK(x.st == CK_ELIMIT && y.st == CK_ELIMIT && !strcmp(x.msg, y.msg));
        run_free(&x);
        run_free(&y);
    }
    free(b.s.p);
    /* the same key stored twice counts once */
    memset(&b, 0, sizeof b);
    {
        static const char prog[] = "\x80\x02]q\x05q\x05q\x06q\x05.";
        put(&b, prog, sizeof prog - 1);
    }
    compare(&b, 0, 2);
    compare(&b, 0, 1);
    free(b.s.p);
}

TEST(pickle_lean_truncations)
{
    /* every prefix of a small state dict: same status and message */
    pb b;
    build(&b, 3, every_third_meta);
    for (size_t n = 0; n <= b.s.n; n++) {
        pb c = b;
        c.s.n = n;
        compare(&c, 0, 0);
    }
    free(b.s.p);
}

TEST(arena_give_back_large_pieces)
{
    /* a piece with a block of its own goes back at once; small pieces, a
     * large piece that fit in the current block, pointers inside a block
     * and unknown pointers are left alone */
    ck_ctx *ctx = ck_ctx_new();
    cki_arena a;
    uint64_t before, with_big;
    char *small, *big, *big2;
    cki_arena_init(&a, ctx);
    small = cki_arena_alloc(&a, 100);
    before = ctx->mem_used;
    big = cki_arena_alloc(&a, 100 * 1024);
    big2 = cki_arena_alloc(&a, 70 * 1024);
    CHECK(small && big && big2);
    memset(big, 1, 100 * 1024);
    memset(big2, 2, 70 * 1024);
    with_big = ctx->mem_used;
    CHECK(with_big > before + 170 * 1024);
    cki_arena_give_back(&a, small);
    cki_arena_give_back(&a, big + 16);
    cki_arena_give_back(&a, NULL);
    CHECK(ctx->mem_used == with_big);
    cki_arena_give_back(&a, big);
    CHECK(ctx->mem_used < with_big - 100 * 1024 && ctx->mem_used > before);
    CHECK(big2[70 * 1024 - 1] == 2);
    cki_arena_give_back(&a, big); /* already gone: nothing happens */
    cki_arena_give_back(&a, big2);
    CHECK(ctx->mem_used == before);
    {
        /* 40 KiB fits in the current block's room: not a block of its own */
        char *mid = cki_arena_alloc(&a, 40 * 1024);
        CHECK(mid != NULL);
        cki_arena_give_back(&a, mid);
        CHECK(ctx->mem_used == before);
        memset(mid, 3, 40 * 1024);
    }
    CHECK(cki_arena_alloc(&a, 64) != NULL);
    cki_arena_free(&a);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

TEST(zip_index_drop_and_build)
{
    /* lookups answer the same with the index dropped (a scan) and built
     * again, for every record of a real torch archive and a missing name */
    const char *path = T_FIXTURES "/pytorch-zip/burn_checkpoint.pt";
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long n = 0;
    ck_ctx *ctx = ck_ctx_new();
    cki_zip z;
    CHECK(f != NULL);
    if (f) {
        fseek(f, 0, SEEK_END);
        n = ftell(f);
        fseek(f, 0, SEEK_SET);
        buf = malloc((size_t)n);
        CHECK(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
        fclose(f);
    }
    if (buf && cki_zip_open(ctx, path, buf, (uint64_t)n, &z) == CK_OK) {
        CHECK(z.count >= 3);
        for (int pass = 0; pass < 3; pass++) {
            if (pass == 1) cki_zip_index_drop(&z);
            if (pass == 2) CHECK(cki_zip_index_build(&z) == CK_OK);
            CHECK(z.unindexed == (pass == 1));
            for (size_t i = 0; i < z.count; i++)
                CHECK(cki_zip_find(&z, z.entries[i].name, z.entries[i].name_len) ==
                      &z.entries[i]);
            CHECK(cki_zip_find(&z, "archive/data/none", 17) == NULL);
            CHECK(cki_zip_find(&z, z.entries[0].name, z.entries[0].name_len - 1) == NULL);
        }
        cki_zip_close(&z);
    } else {
        CHECK(0);
    }
    free(buf);
    ck_ctx_free(ctx);
}
