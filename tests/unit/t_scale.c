/*
 * t_scale.c -- the pieces that keep many-tensor files small: the streaming
 * JSON member parser (same verdicts, offsets and precedence as the tree
 * parser), the compact name table, packed arena strings and the arena reset.
 */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "t.h"

typedef struct seen {
    size_t calls, total;
    char keys[8][16];
    cki_json_type types[8];
    int fail_at; /* index whose callback fails, or -1 */
} seen;

static ck_status on_member(void *user, const cki_json_member *m, size_t index, size_t total)
{
    seen *s = user;
    CHECK(index == s->calls);
    s->total = total;
    if (s->calls < 8) {
        snprintf(s->keys[s->calls], sizeof s->keys[0], "%.*s", (int)m->key_len, m->key);
        s->types[s->calls] = m->value.type;
    }
    s->calls++;
    return (int)index == s->fail_at ? CK_EFORMAT : CK_OK;
}

/* Both parsers on DOC: same status, same offset and message on failure. */
static void same_verdict(const char *doc)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_arena a;
    const cki_json *root = NULL;
    cki_json_err e1, e2;
    cki_json_type top;
    size_t top_off;
    seen s = {0};
    ck_status st1, st2;
    s.fail_at = -1;
    cki_arena_init(&a, ctx);
    st1 = cki_json_parse(ctx, &a, doc, strlen(doc), NULL, &root, &e1);
    st2 = cki_json_parse_members(ctx, doc, strlen(doc), NULL, on_member, &s, &top, &top_off, &e2);
    if (st1 != st2 || (st1 && (e1.off != e2.off || strcmp(e1.msg, e2.msg))))
        fprintf(stderr, "  doc %s: tree %d '%s' @%zu, members %d '%s' @%zu\n", doc, st1, e1.msg,
                e1.off, st2, e2.msg, e2.off);
    CHECK(st1 == st2);
    if (st1) {
        CHECK(e1.off == e2.off);
        CHECK(!strcmp(e1.msg, e2.msg));
    } else {
        CHECK(top == root->type);
        CHECK(top_off == root->off);
        if (root->type == CKI_JSON_OBJECT) {
            CHECK(s.calls == root->len);
            for (size_t i = 0; i < s.calls && i < 8; i++) {
                CHECK(!strncmp(s.keys[i], root->u.members[i].key, 15));
                CHECK(s.types[i] == root->u.members[i].value.type);
            }
        }
    }
    cki_arena_free(&a);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

TEST(scale_json_members_same_verdicts_as_tree)
{
    static const char *const docs[] = {
        "{}", " { } ", "[]", "3", "\"s\"", "null", "true",
        "{\"a\": 1, \"b\": [1, 2, {\"c\": null}], \"d\": {\"e\": \"f\"}}",
        "{\"a\": 1, \"a\": 2}",
        "{\"a\": 1, \"\\u0061\": 2}",
        "{\"x\": {\"k\": 1, \"k\": 2}, \"a\": 3}",
        /* a top-level duplicate before an inner one: the inner one closes first */
        "{\"a\": 1, \"a\": 2, \"z\": {\"q\": 1, \"q\": 2}}",
        "{\"a\": 1, \"b\": 2, \"a\": 3, \"b\": 4}",
        "{\"a\": 1,}", "{\"a\" 1}", "{\"a\": [1, 2}", "{\"a\": 1} x", "{\"a\": tru}",
        "{\"a\": \"\\ud800\"}", "{\"a\": 01}", "{\"a\": 1, \"b\": {\"c\": [}}",
        "{\"\\u00e9\": 1, \"\xc3\xa9\": 2}",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) same_verdict(docs[i]);
}

TEST(scale_json_members_callback_failure_after_json_errors)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_json_err e;
    cki_json_type top;
    size_t off;
    seen s = {0};
    const char *bad_later = "{\"a\": 1, \"b\": 2, \"c\": {\"k\": 1, \"k\": 2}}";
    const char *good = "{\"a\": 1, \"b\": 2, \"c\": 3}";
    /* the callback fails on the first member, but the duplicate later wins */
    s.fail_at = 0;
    CHECK(cki_json_parse_members(ctx, bad_later, strlen(bad_later), NULL, on_member, &s, &top,
                                 &off, &e) == CK_EFORMAT);
    CHECK(strstr(e.msg, "duplicate key") != NULL);
    CHECK(s.calls == 1); /* not called again after it failed */
    /* without a JSON error, the callback's status comes back, message empty */
    memset(&s, 0, sizeof s);
    s.fail_at = 1;
    CHECK(cki_json_parse_members(ctx, good, strlen(good), NULL, on_member, &s, &top, &off, &e) ==
          CK_EFORMAT);
    CHECK(e.msg[0] == 0);
    CHECK(s.calls == 2);
    CHECK(s.total == 3);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

TEST(scale_map_and_arena)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_map m;
    cki_arena a;
    char *names[3000];
    size_t v;
    cki_map_init(&m, ctx);
    cki_arena_init(&a, ctx);
    CHECK(cki_map_reserve(&m, 1000) == 0);
    for (int i = 0; i < 3000; i++) {
        char b[32];
        int n = snprintf(b, sizeof b, "layer.%d.weight", i);
        names[i] = cki_arena_strndup(&a, b, (size_t)n);
        CHECK(names[i] != NULL);
        CHECK(cki_map_put(&m, names[i], (size_t)n, (size_t)i, NULL) == 0);
    }
    for (int i = 0; i < 3000; i++) {
        CHECK(cki_map_get(&m, names[i], strlen(names[i]), &v) == 0 && v == (size_t)i);
        CHECK(cki_map_put(&m, names[i], strlen(names[i]), 7, &v) == 1 && v == (size_t)i);
    }
    CHECK(cki_map_get(&m, "layer.1.weigh", 13, &v) == 1);
    /* SIZE_MAX is a value ("none"); other values past 32 bits are refused */
    CHECK(cki_map_put(&m, "none", 4, SIZE_MAX, NULL) == 0);
    CHECK(cki_map_get(&m, "none", 4, &v) == 0 && v == SIZE_MAX);
    CHECK(cki_map_put(&m, "none", 4, 3, &v) == 1 && v == SIZE_MAX);
    CHECK(cki_map_put(&m, "big", 3, (size_t)UINT32_MAX, NULL) == -1);
    CHECK(cki_map_get(&m, "layer.1.weight\0", 15, &v) == 1);
    /* strings are packed: 3000 names of about 16 bytes fit a 64 KiB block or two */
    CHECK(ctx->mem_used < 3000 * 40 + (1u << 20));
    /* aligned pieces stay 16-byte aligned after odd-sized strings */
    CHECK(((uintptr_t)cki_arena_alloc(&a, 24) & 15) == 0);
    cki_arena_reset(&a);
    CHECK(((uintptr_t)cki_arena_alloc(&a, 8) & 15) == 0);
    cki_map_free(&m);
    cki_arena_free(&a);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}
