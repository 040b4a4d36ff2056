/*
 * t_tree_write.c -- the value graph written back (tree_write.h): dangerous
 * calls removed with their path reported, unknown classes per policy, memo
 * sharing kept, frozensets and floats, and the refusals. Outputs are run
 * through the pickle machine again and checked node by node.
 */
#include <stdio.h>

#include "pickle/tree_write.h"
#include "t.h"

typedef struct tw_case {
    ck_ctx *ctx;
    cki_arena ar, ar2;
    cki_pickle in, out;
    cki_pkw pk;
    cki_tw tw;
    char log[2048];
    size_t log_len;
    int gone;
    ck_status st;
} tw_case;

static void log_report(void *user, const char *path, const char *what, const char *became)
{
    tw_case *c = user;
    int n = snprintf(c->log + c->log_len, sizeof c->log - c->log_len, "%s: %s -> %s\n",
                     *path ? path : "(root)", what, became);
    if (n > 0 && (size_t)n < sizeof c->log - c->log_len) c->log_len += (size_t)n;
}

/* Parses P[0..N), writes it back with POLICY, parses the output into c->out. */
static void run_case(tw_case *c, const char *p, size_t n, int policy)
{
    memset(c, 0, sizeof *c);
    c->ctx = ck_ctx_new();
    cki_arena_init(&c->ar, c->ctx);
    cki_arena_init(&c->ar2, c->ctx);
    c->st = cki_pickle_run(c->ctx, &c->ar, (const uint8_t *)p, n, "t.pkl", "test", 0, &c->in);
    if (c->st) return;
    cki_pkw_init(&c->pk, c->ctx);
    cki_tw_init(&c->tw, c->ctx, &c->pk);
    c->tw.unknown = policy;
    c->tw.report = log_report;
    c->tw.user = c;
    cki_pkw_proto(&c->pk);
    c->st = cki_tw_write(&c->tw, c->in.root, &c->gone);
    if (c->st || c->gone) return;
    cki_pkw_stop(&c->pk);
    if ((c->st = cki_pkw_status(&c->pk))) return;
    c->st = cki_pickle_run(c->ctx, &c->ar2, (const uint8_t *)c->pk.out.p, c->pk.out.len, "o.pkl",
                           "out", 0, &c->out);
}

static void free_case(tw_case *c)
{
    cki_tw_free(&c->tw);
    cki_pkw_free(&c->pk);
    cki_arena_free(&c->ar);
    cki_arena_free(&c->ar2);
    ck_ctx_free(c->ctx);
}

/* 1 if the output holds no opcode outside what torch 2.13's weights-only loader knows. */
static int weights_only_opcodes(const tw_case *c)
{
    for (size_t i = 0; i < c->out.global_count; i++)
        if (!cki_tw_allowed(c->out.globals[i].module, c->out.globals[i].name) &&
            strcmp(c->out.globals[i].module, "builtins") /* __builtin__ set & co */)
            return 0;
    return 1;
}

#define S(lit) lit, sizeof(lit) - 1

/* {'a': os.system('x'), 'b': [1, builtins.eval('y'), 2], 'c': (posix.system('z'), 3),
 *  'keep': 7} */
TEST(tree_write_removes_dangerous)
{
    tw_case c;
    const cki_pv *r, *b, *t;
    run_case(&c, S("\x80\x02}(X\x01\x00\x00\x00" "acos\nsystem\nX\x01\x00\x00\x00x\x85R"
                   "X\x01\x00\x00\x00" "b](K\x01" "cbuiltins\neval\nX\x01\x00\x00\x00y\x85RK\x02" "e"
                   "X\x01\x00\x00\x00" "ccposix\nsystem\nX\x01\x00\x00\x00z\x85RK\x03\x86"
                   "X\x04\x00\x00\x00keepK\x07u."),
             CKI_TW_DICT);
    CHECK(c.st == CK_OK && !c.gone);
    r = c.out.root;
    CHECK(r && r->kind == CKI_PV_DICT && r->n == 3);
    CHECK(cki_pv_dict_get(r, "a") == NULL);
    b = cki_pv_dict_get(r, "b");
    CHECK(b && b->kind == CKI_PV_LIST && b->n == 2 && b->items[0]->u.i == 1 &&
          b->items[1]->u.i == 2);
    t = cki_pv_dict_get(r, "c");
    CHECK(t && t->kind == CKI_PV_TUPLE && t->n == 2 && t->items[0]->kind == CKI_PV_NONE);
    CHECK(cki_pv_dict_get(r, "keep") && cki_pv_dict_get(r, "keep")->u.i == 7);
    CHECK(c.tw.removed == 3);
    CHECK(strstr(c.log, "a: os.system -> removed (dangerous)\n") != NULL);
    CHECK(strstr(c.log, "b.1: builtins.eval -> removed (dangerous)\n") != NULL);
    CHECK(strstr(c.log, "c.0: posix.system -> removed (dangerous)\n") != NULL);
    CHECK(c.out.global_count == 0);
    free_case(&c);

    /* the root itself */
    run_case(&c, S("\x80\x02" "cos\nsystem\nX\x01\x00\x00\x00x\x85R."), CKI_TW_DICT);
    CHECK(c.st == CK_OK && c.gone == 1);
    CHECK(!strcmp(c.log, "(root): os.system -> removed (dangerous)\n"));
    free_case(&c);
}

/* {'ns': argparse.Namespace(a=1) (NEWOBJ + BUILD), 'obj': m.C(5) + BUILD {'s': 2},
 *  'fs': frozenset([1])} */
TEST(tree_write_unknown_policies)
{
    static const char p[] =
        "\x80\x02}(X\x02\x00\x00\x00ns" "cargparse\nNamespace\n)\x81}X\x01\x00\x00\x00" "aK\x01sb"
        "X\x03\x00\x00\x00obj" "cm\nC\nK\x05\x85R}X\x01\x00\x00\x00sK\x02sb"
        "X\x02\x00\x00\x00" "fs" "c__builtin__\nfrozenset\n]K\x01" "a\x85R" "u.";
    tw_case c;
    const cki_pv *r, *ns, *obj, *fs;
    run_case(&c, p, sizeof p - 1, CKI_TW_DICT);
    CHECK(c.st == CK_OK);
    r = c.out.root;
    ns = cki_pv_dict_get(r, "ns");
    CHECK(ns && ns->kind == CKI_PV_DICT && ns->n == 1 && cki_pv_dict_get(ns, "a")->u.i == 1);
    obj = cki_pv_dict_get(r, "obj");
    CHECK(obj && obj->kind == CKI_PV_DICT && cki_pv_is_str(cki_pv_dict_get(obj, "class"), "m.C"));
    CHECK(cki_pv_dict_get(obj, "args") && cki_pv_dict_get(obj, "args")->kind == CKI_PV_TUPLE);
    CHECK(cki_pv_dict_get(cki_pv_dict_get(obj, "state"), "s")->u.i == 2);
    fs = cki_pv_dict_get(r, "fs");
    CHECK(fs && cki_pv_is_call_of(fs, "builtins", "set"));
    CHECK(strstr(c.log, "ns: argparse.Namespace -> dict\n") != NULL);
    CHECK(strstr(c.log, "obj: m.C -> dict\n") != NULL);
    CHECK(strstr(c.log, "fs: builtins.frozenset -> set\n") != NULL);
    CHECK(weights_only_opcodes(&c));
    free_case(&c);

    run_case(&c, p, sizeof p - 1, CKI_TW_DROP);
    CHECK(c.st == CK_OK && c.out.root->n == 0);
    CHECK(strstr(c.log, "obj: m.C -> dropped\n") != NULL);
    free_case(&c);

    run_case(&c, p, sizeof p - 1, CKI_TW_KEEP);
    CHECK(c.st == CK_OK && c.out.root->n == 3);
    obj = cki_pv_dict_get(c.out.root, "obj");
    CHECK(cki_pv_is_call_of(obj, "m", "C") && cki_pv_state(obj) &&
          cki_pv_dict_get(cki_pv_state(obj), "s")->u.i == 2);
    CHECK(c.log_len == 0);
    free_case(&c);
}

/* x = [1.5, 2**300-ish bigint of 40 bytes]; {'a': x, 'b': x, 'self': <list containing itself>} */
TEST(tree_write_memo_floats_cycles)
{
    static const char p[] =
        "\x80\x02}(X\x01\x00\x00\x00" "a](G\x3f\xf8\x00\x00\x00\x00\x00\x00\x8a\x28"
        "\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14"
        "\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\x20\x21\x22\x23\x24\x25\x26\x27\x28"
        "eq\x00X\x01\x00\x00\x00" "bh\x00X\x04\x00\x00\x00self]q\x01h\x01" "au.";
    tw_case c;
    const cki_pv *a, *b, *s;
    run_case(&c, p, sizeof p - 1, CKI_TW_DICT);
    CHECK(c.st == CK_OK);
    a = cki_pv_dict_get(c.out.root, "a");
    b = cki_pv_dict_get(c.out.root, "b");
    CHECK(a && a == b && a->n == 2);
    CHECK(a && a->items[0]->kind == CKI_PV_FLOAT && a->items[0]->u.f == 1.5);
    CHECK(a && a->items[1]->kind == CKI_PV_BIGINT && a->items[1]->u.s.len == 40);
    s = cki_pv_dict_get(c.out.root, "self");
    CHECK(s && s->kind == CKI_PV_LIST && s->n == 1 && s->items[0] == s);
    free_case(&c);

    /* an object whose state refers to itself (a module's hook partial does):
     * the rewritten dict contains itself; kept, the object does */
    run_case(&c, S("\x80\x02" "cm\nC\n)\x81q\x00}X\x02\x00\x00\x00meh\x00sb."), CKI_TW_DICT);
    CHECK(c.st == CK_OK && c.out.root->kind == CKI_PV_DICT);
    CHECK(cki_pv_dict_get(cki_pv_dict_get(c.out.root, "state"), "me") == c.out.root);
    free_case(&c);
    run_case(&c, S("\x80\x02" "cm\nC\n)\x81q\x00}X\x02\x00\x00\x00meh\x00sb."), CKI_TW_KEEP);
    CHECK(c.st == CK_OK && c.out.root->kind == CKI_PV_NEWOBJ);
    CHECK(cki_pv_state(c.out.root) && cki_pv_dict_get(cki_pv_state(c.out.root), "me") == c.out.root);
    free_case(&c);
}

/* bytes and a 300-byte int (the loader has no LONG4: refused, naming the path) */
TEST(tree_write_bytes_and_refusals)
{
    static char big[400];
    size_t n = 0;
    tw_case c;
    const cki_pv *v;
    run_case(&c, S("\x80\x03}X\x01\x00\x00\x00" "bC\x03\x00\xff" "as."), CKI_TW_DICT);
    CHECK(c.st == CK_OK);
    v = cki_pv_dict_get(c.out.root, "b");
    CHECK(cki_pv_is_call_of(v, "_codecs", "encode"));
    free_case(&c);

    memcpy(big + n, "\x80\x02}X\x01\x00\x00\x00i\x8b\x2c\x01\x00\x00", 14);
    n += 14;
    memset(big + n, 0x11, 300);
    n += 300;
    memcpy(big + n, "s.", 2);
    n += 2;
    run_case(&c, big, n, CKI_TW_DICT);
    CHECK(c.st == CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(c.ctx), "i: int of 300 bytes") != NULL);
    free_case(&c);

    /* a tuple that contains itself through a list */
    run_case(&c, S("\x80\x02]q\x00h\x00\x85q\x01" "a0h\x01."), CKI_TW_DICT);
    CHECK(c.st == CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(c.ctx), "contains itself") != NULL);
    free_case(&c);
}

TEST(tree_write_allowlist)
{
    CHECK(cki_tw_allowed("collections", "OrderedDict"));
    CHECK(cki_tw_allowed("torch._utils", "_rebuild_tensor_v2"));
    CHECK(cki_tw_allowed("torch", "FloatStorage"));
    CHECK(cki_tw_allowed("torch.storage", "UntypedStorage"));
    CHECK(!cki_tw_allowed("torch", "UntypedStorage"));
    CHECK(!cki_tw_allowed("argparse", "Namespace"));
    CHECK(!cki_tw_allowed("builtins", "frozenset"));
    CHECK(!cki_tw_allowed("os", "system"));
}
