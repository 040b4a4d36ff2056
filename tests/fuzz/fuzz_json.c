/*
 * fuzz_json.c -- libFuzzer target for the strict JSON reader (common/json.c).
 *
 * Beyond "no crash": every accepted document must satisfy the tree's
 * invariants (decoded strings are valid UTF-8 and NUL-terminated, offsets lie
 * inside the input, no object holds a key twice, numbers convert or say why)
 * and must survive a round trip: re-encoded compactly and parsed again, it
 * gives the same tree. A rejected document must report an offset inside the
 * input and a message. The streaming parser (cki_json_parse_members) must
 * agree with the tree parser on every input: same status, same offset and
 * message on failure, and for a top-level object the same members, in order,
 * with equal values. Violations abort, so the fuzzer reports them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"

static void check(int ok)
{
    if (!ok) abort();
}

static void walk(const cki_json *v, size_t size)
{
    uint64_t u;
    check(v->off < size);
    switch (v->type) {
    case CKI_JSON_STRING:
        check(v->u.str[v->len] == 0);
        check(cki_json_utf8_prefix(v->u.str, v->len) == v->len);
        break;
    case CKI_JSON_NUMBER:
        check(v->len > 0 && v->off + v->len <= size);
        if (!cki_json_to_u64(v, &u)) check(v->u.num[0] >= '0' && v->u.num[0] <= '9');
        break;
    case CKI_JSON_ARRAY:
        for (size_t i = 0; i < v->len; i++) walk(&v->u.items[i], size);
        break;
    case CKI_JSON_OBJECT:
        for (size_t i = 0; i < v->len; i++) {
            const cki_json_member *m = &v->u.members[i];
            check(m->key[m->key_len] == 0 && m->key_off < m->value.off);
            check(cki_json_utf8_prefix(m->key, m->key_len) == m->key_len);
            for (size_t j = 0; j < i && j < 64; j++)
                check(m->key_len != v->u.members[j].key_len ||
                      memcmp(m->key, v->u.members[j].key, m->key_len) != 0);
            walk(&m->value, size);
        }
        break;
    default: break;
    }
}

static void encode(cki_buf *b, const cki_json *v)
{
    switch (v->type) {
    case CKI_JSON_NULL: cki_buf_puts(b, "null"); break;
    case CKI_JSON_TRUE: cki_buf_puts(b, "true"); break;
    case CKI_JSON_FALSE: cki_buf_puts(b, "false"); break;
    case CKI_JSON_NUMBER: cki_buf_put(b, v->u.num, v->len); break;
    case CKI_JSON_STRING: cki_buf_json_str(b, v->u.str, v->len); break;
    case CKI_JSON_ARRAY:
        cki_buf_putc(b, '[');
        for (size_t i = 0; i < v->len; i++) {
            if (i) cki_buf_putc(b, ',');
            encode(b, &v->u.items[i]);
        }
        cki_buf_putc(b, ']');
        break;
    case CKI_JSON_OBJECT:
        cki_buf_putc(b, '{');
        for (size_t i = 0; i < v->len; i++) {
            if (i) cki_buf_putc(b, ',');
            cki_buf_json_str(b, v->u.members[i].key, v->u.members[i].key_len);
            cki_buf_putc(b, ':');
            encode(b, &v->u.members[i].value);
        }
        cki_buf_putc(b, '}');
        break;
    }
}

static int same(const cki_json *a, const cki_json *b)
{
    if (a->type != b->type || a->len != b->len) return 0;
    switch (a->type) {
    case CKI_JSON_STRING: return memcmp(a->u.str, b->u.str, a->len) == 0;
    case CKI_JSON_NUMBER: return memcmp(a->u.num, b->u.num, a->len) == 0;
    case CKI_JSON_ARRAY:
        for (size_t i = 0; i < a->len; i++)
            if (!same(&a->u.items[i], &b->u.items[i])) return 0;
        return 1;
    case CKI_JSON_OBJECT:
        for (size_t i = 0; i < a->len; i++) {
            const cki_json_member *x = &a->u.members[i], *y = &b->u.members[i];
            if (x->key_len != y->key_len || memcmp(x->key, y->key, x->key_len) ||
                !same(&x->value, &y->value))
                return 0;
        }
        return 1;
    default: return 1;
    }
}

typedef struct member_cmp {
    const cki_json *root;
    size_t next;
} member_cmp;

static ck_status on_member(void *user, const cki_json_member *m, size_t index, size_t total)
{
    member_cmp *c = user;
    const cki_json_member *want;
    if (!c->root) return CK_OK; /* the document fails later: members before it come first */
    check(c->root && c->root->type == CKI_JSON_OBJECT && index == c->next &&
          total == c->root->len && index < total);
    want = &c->root->u.members[index];
    check(m->key_len == want->key_len && !memcmp(m->key, want->key, m->key_len) &&
          m->key_off == want->key_off && same(&m->value, &want->value));
    c->next++;
    return CK_OK;
}

/* The streaming parser against the tree parser's verdict ST / ROOT / ERR. */
static void differential(ck_ctx *ctx, const uint8_t *data, size_t size, const cki_json_opts *o,
                         ck_status st, const cki_json *root, const cki_json_err *err)
{
    member_cmp c = {st == CK_OK ? root : NULL, 0};
    cki_json_err e2;
    cki_json_type top;
    size_t top_off;
    ck_status st2 = cki_json_parse_members(ctx, data, size, o, on_member, &c, &top, &top_off, &e2);
    if (st == CK_ENOMEM || st2 == CK_ENOMEM) return;
    check(st2 == st);
    if (st) {
        check(e2.off == err->off && !strcmp(e2.msg, err->msg));
        return;
    }
    check(top == root->type && top_off == root->off);
    if (top == CKI_JSON_OBJECT) check(c.next == root->len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_arena arena, arena2;
    const cki_json *root = NULL, *again = NULL;
    cki_json_err err;
    cki_json_opts o = {32, 0};
    ck_status st;
    if (!ctx) return 0;
    cki_arena_init(&arena, ctx);
    cki_arena_init(&arena2, ctx);
    st = cki_json_parse(ctx, &arena, data, size, &o, &root, &err);
    differential(ctx, data, size, &o, st, root, &err);
    if (st == CK_OK) {
        cki_buf b;
        walk(root, size ? size : 1);
        cki_buf_init(&b, ctx, 0);
        encode(&b, root);
        check(!b.failed);
        check(cki_json_parse(ctx, &arena2, b.p, b.len, &o, &again, &err) == CK_OK);
        check(same(root, again));
        cki_buf_free(&b);
    } else {
        check(err.off <= size && err.msg[0] != 0);
        check(st == CK_EFORMAT || st == CK_ELIMIT || st == CK_ENOMEM);
    }
    cki_arena_free(&arena);
    cki_arena_free(&arena2);
    check(ctx->mem_used == 0);
    ck_ctx_free(ctx);
    return 0;
}
