/*
 * t_common.c -- the foundations in src/common: bounded cursor, checked
 * arithmetic, byte decoding, capped buffer (JSON escaping included), arena,
 * hash map, UTF-8 validation, glob matching, counted allocation and the
 * error/warning channel. Edge values are the point: lengths one past what is
 * left, sums one past 2^64, sizes near SIZE_MAX, sequences one byte short.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cki.h"
#include "io/sys.h"
#include "t.h"

/* ---- cursor ---------------------------------------------------------------- */

TEST(common_cursor_reads_in_bounds)
{
    static const uint8_t b[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    cki_cur c;
    uint8_t u8 = 0;
    uint16_t u16 = 0;
    uint32_t u32 = 0;
    uint64_t u64 = 0;
    const uint8_t *p = NULL;
    cki_cur_init(&c, b, sizeof b);
    CHECK(cki_cur_left(&c) == 15);
    CHECK(cki_cur_u8(&c, &u8) == 0 && u8 == 1);
    CHECK(cki_cur_le16(&c, &u16) == 0 && u16 == 0x0302);
    CHECK(cki_cur_le32(&c, &u32) == 0 && u32 == 0x07060504u);
    CHECK(cki_cur_le64(&c, &u64) == 0 && u64 == 0x0f0e0d0c0b0a0908ull);
    CHECK(cki_cur_left(&c) == 0);
    CHECK(cki_cur_take(&c, 0, &p) == 0 && p == b + 15);
}

TEST(common_cursor_refuses_short_reads_without_moving)
{
    static const uint8_t b[] = {0xAA, 0xBB, 0xCC};
    cki_cur c;
    uint8_t u8 = 0;
    uint16_t u16 = 0x1234;
    uint32_t u32 = 0x12345678;
    uint64_t u64 = 42;
    const uint8_t *p = NULL;
    cki_cur_init(&c, b, sizeof b);
    CHECK(cki_cur_le32(&c, &u32) != 0 && u32 == 0x12345678 && c.pos == 0);
    CHECK(cki_cur_le64(&c, &u64) != 0 && u64 == 42 && c.pos == 0);
    CHECK(cki_cur_take(&c, 4, &p) != 0 && p == NULL && c.pos == 0);
    CHECK(cki_cur_take(&c, SIZE_MAX, &p) != 0 && c.pos == 0);
    CHECK(cki_cur_skip(&c, SIZE_MAX) != 0 && c.pos == 0);
    CHECK(cki_cur_skip(&c, 2) == 0 && c.pos == 2);
    CHECK(cki_cur_le16(&c, &u16) != 0 && u16 == 0x1234 && c.pos == 2);
    CHECK(cki_cur_u8(&c, &u8) == 0 && u8 == 0xCC);
    CHECK(cki_cur_u8(&c, &u8) != 0 && c.pos == 3);
    cki_cur_init(&c, NULL, 0);
    CHECK(cki_cur_u8(&c, &u8) != 0);
    CHECK(cki_cur_skip(&c, 1) != 0);
}

/* ---- checked arithmetic and byte decoding ------------------------------------ */

TEST(common_checked_math_edges)
{
    uint64_t r = 7;
    size_t z = 7;
    CHECK(cki_add_u64(&r, UINT64_MAX - 1, 1) == 0 && r == UINT64_MAX);
    CHECK(cki_add_u64(&r, UINT64_MAX, 1) != 0);
    CHECK(cki_add_u64(&r, UINT64_MAX / 2 + 1, UINT64_MAX / 2 + 1) != 0);
    CHECK(cki_mul_u64(&r, 1ull << 32, 1ull << 31) == 0 && r == 1ull << 63);
    CHECK(cki_mul_u64(&r, 1ull << 32, 1ull << 32) != 0);
    CHECK(cki_mul_u64(&r, UINT64_MAX, 0) == 0 && r == 0);
    CHECK(cki_mul_u64(&r, 3, 6148914691236517205ull) == 0 && r == UINT64_MAX);
    CHECK(cki_mul_u64(&r, 3, 6148914691236517206ull) != 0);
    CHECK(cki_add_size(&z, SIZE_MAX, 0) == 0 && z == SIZE_MAX);
    CHECK(cki_add_size(&z, SIZE_MAX, 1) != 0);
    CHECK(cki_mul_size(&z, SIZE_MAX / 2, 2) == 0);
    CHECK(cki_mul_size(&z, SIZE_MAX / 2 + 1, 2) != 0);
    /* [off, off+len) inside [0, total) */
    CHECK(cki_out_of(0, 10, 10) == 0);
    CHECK(cki_out_of(10, 0, 10) == 0);
    CHECK(cki_out_of(10, 1, 10) == 1);
    CHECK(cki_out_of(11, 0, 10) == 1);
    CHECK(cki_out_of(1, UINT64_MAX, 10) == 1);
    CHECK(cki_out_of(UINT64_MAX, 2, UINT64_MAX) == 1);
    CHECK(cki_out_of(UINT64_MAX - 1, 1, UINT64_MAX) == 0);
}

TEST(common_byte_decoding_round_trips)
{
    uint8_t b[8];
    static const uint8_t be[8] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
    cki_st_le64(b, 0x0123456789abcdefull);
    CHECK(b[0] == 0xef && b[7] == 0x01);
    CHECK(cki_ld_le64(b) == 0x0123456789abcdefull);
    CHECK(cki_ld_le32(b) == 0x89abcdefu);
    CHECK(cki_ld_le16(b) == 0xcdef);
    CHECK(cki_ld_be64(be) == 0x0123456789abcdefull);
    CHECK(cki_ld_be32(be) == 0x01234567u);
    cki_st_be64(b, 0x0123456789abcdefull);
    CHECK(memcmp(b, be, 8) == 0);
    cki_st_le32(b, 0xdeadbeefu);
    CHECK(b[0] == 0xef && b[3] == 0xde && cki_ld_le32(b) == 0xdeadbeefu);
    cki_st_le16(b, 0xfffe);
    CHECK(b[0] == 0xfe && b[1] == 0xff);
    /* high bit set in every byte: no sign extension anywhere */
    memset(b, 0xff, 8);
    CHECK(cki_ld_le64(b) == UINT64_MAX && cki_ld_be64(b) == UINT64_MAX);
    CHECK(cki_ld_le32(b) == UINT32_MAX && cki_ld_be32(b) == UINT32_MAX);
}

/* ---- buffer --------------------------------------------------------------------- */

TEST(common_buf_appends_and_terminates)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_buf b;
    char big[1000];
    char *s;
    cki_buf_init(&b, ctx, 0);
    CHECK(cki_buf_puts(&b, "abc") == 0);
    CHECK(cki_buf_putc(&b, '-') == 0);
    CHECK(cki_buf_printf(&b, "%d/%s", 42, "x") == 0);
    CHECK(b.len == 8 && strcmp(b.p, "abc-42/x") == 0);
    memset(big, 'q', sizeof big - 1);
    big[sizeof big - 1] = 0;
    CHECK(cki_buf_printf(&b, "[%s]", big) == 0); /* longer than the 256-byte fast path */
    CHECK(b.len == 8 + 2 + 999 && b.p[b.len] == 0 && b.p[9] == 'q' && b.p[b.len - 1] == ']');
    s = cki_buf_take(&b);
    CHECK(s && strlen(s) == 1009);
    CHECK(b.p == NULL && b.len == 0);
    cki_free(ctx, s);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

TEST(common_buf_take_of_empty_buffer_is_empty_string)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_buf b;
    char *s;
    cki_buf_init(&b, ctx, 0);
    s = cki_buf_take(&b);
    CHECK(s != NULL);
    CHECK(s && s[0] == 0);
    cki_free(ctx, s);
    ck_ctx_free(ctx);
}

TEST(common_buf_limit_is_sticky)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_buf b;
    cki_buf_init(&b, ctx, 16);
    CHECK(cki_buf_put(&b, "0123456789abcde", 15) == 0); /* 15 + NUL = 16: fits */
    CHECK(cki_buf_putc(&b, 'x') != 0);
    CHECK(b.failed == 1);
    CHECK(ck_last_status(ctx) == CK_ELIMIT);
    CHECK(strstr(ck_errmsg(ctx), "16 bytes") != NULL);
    CHECK(cki_buf_puts(&b, "") != 0); /* sticky: even an empty append fails now */
    CHECK(cki_buf_take(&b) == NULL);
    cki_buf_free(&b);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

TEST(common_buf_huge_reserve_fails_cleanly)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_buf b;
    cki_buf_init(&b, ctx, 0);
    CHECK(cki_buf_puts(&b, "x") == 0);
    CHECK(cki_buf_reserve(&b, SIZE_MAX) != 0);
    CHECK(b.failed);
    cki_buf_free(&b);
    cki_buf_init(&b, ctx, 0);
    CHECK(cki_buf_reserve(&b, SIZE_MAX - 1) != 0); /* len + extra + 1 overflows */
    cki_buf_free(&b);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

TEST(common_buf_json_escaping)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_buf b;
    static const char in[] = "a\"b\\c\n\r\t\b\f\x01\x1f\x7f\xc3\xa9";
    cki_buf_init(&b, ctx, 0);
    CHECK(cki_buf_json_str(&b, in, sizeof in - 1) == 0);
    CHECK(strcmp(b.p, "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0001\\u001f\\u007f\xc3\xa9\"") == 0);
    cki_buf_free(&b);
    cki_buf_init(&b, ctx, 0);
    CHECK(cki_buf_json_str(&b, "a\0b", 3) == 0); /* NUL inside: escaped, not cut */
    CHECK(b.len == 10 && memcmp(b.p, "\"a\\u0000b\"", 10) == 0);
    cki_buf_free(&b);
    cki_buf_init(&b, ctx, 8);
    CHECK(cki_buf_json_str(&b, "\n\n\n\n", 4) != 0); /* expands past the cap */
    cki_buf_free(&b);
    ck_ctx_free(ctx);
}

/* ---- arena ------------------------------------------------------------------ */

TEST(common_arena_alignment_and_blocks)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_arena a;
    char *first = NULL, *big;
    int ok = 1;
    cki_arena_init(&a, ctx);
    for (int i = 0; i < 20000; i++) { /* ~ 5 blocks of 64 KiB */
        char *p = cki_arena_alloc(&a, (size_t)(i % 17));
        if (!p || ((uintptr_t)p & 15)) ok = 0;
        if (p && i % 17) memset(p, 0x5a, (size_t)(i % 17));
        if (i == 0) first = p;
    }
    CHECK(ok);
    CHECK(first != NULL);
    big = cki_arena_alloc(&a, 1 << 20); /* larger than a block */
    CHECK(big && ((uintptr_t)big & 15) == 0);
    if (big) memset(big, 1, 1 << 20);
    CHECK(strcmp(cki_arena_strdup(&a, "tensor.name"), "tensor.name") == 0);
    CHECK(strcmp(cki_arena_strndup(&a, "abcdef", 3), "abc") == 0);
    CHECK(ctx->mem_used > (1u << 20));
    cki_arena_free(&a);
    CHECK(ctx->mem_used == 0);
    cki_arena_free(&a); /* twice is fine */
    ck_ctx_free(ctx);
}

TEST(common_arena_refuses_sizes_that_overflow)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_arena a;
    cki_arena_init(&a, ctx);
    CHECK(cki_arena_alloc(&a, SIZE_MAX) == NULL);
    CHECK(cki_arena_alloc(&a, SIZE_MAX - 20) == NULL); /* rounds fine, block header overflows */
    CHECK(ck_last_status(ctx) == CK_ENOMEM);
    CHECK(cki_arena_strndup(&a, "x", SIZE_MAX) == NULL);
    CHECK(cki_arena_alloc(&a, 8) != NULL); /* still usable */
    cki_arena_free(&a);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

/* ---- map ---------------------------------------------------------------------- */

TEST(common_map_put_get_duplicates)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_map m;
    size_t v = 99, ex = 99;
    static const char keys[] = "w\0w.bias\0";
    cki_map_init(&m, ctx);
    CHECK(cki_map_get(&m, "a", 1, &v) == 1 && v == 99); /* empty map */
    CHECK(cki_map_put(&m, "a", 1, 5, &ex) == 0);
    CHECK(cki_map_put(&m, "a", 1, 6, &ex) == 1 && ex == 5);
    CHECK(cki_map_get(&m, "a", 1, &v) == 0 && v == 5);
    /* keys compare by length too: "w" and the "w" prefix of "w.bias" differ */
    CHECK(cki_map_put(&m, keys, 1, 1, NULL) == 0);
    CHECK(cki_map_put(&m, keys + 2, 6, 2, NULL) == 0);
    CHECK(cki_map_get(&m, "w.bias", 6, &v) == 0 && v == 2);
    CHECK(cki_map_get(&m, "w.bias", 1, &v) == 0 && v == 1);
    CHECK(cki_map_get(&m, "w.", 2, &v) == 1);
    /* an empty key and a key with a NUL inside are keys like any other */
    CHECK(cki_map_put(&m, "", 0, 7, NULL) == 0);
    CHECK(cki_map_get(&m, "", 0, &v) == 0 && v == 7);
    CHECK(cki_map_put(&m, "x\0y", 3, 8, NULL) == 0);
    CHECK(cki_map_get(&m, "x\0y", 3, &v) == 0 && v == 8);
    CHECK(cki_map_get(&m, "x", 1, &v) == 1);
    CHECK(m.count == 5);
    cki_map_free(&m);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

TEST(common_map_many_keys)
{
    enum { N = 50000 };
    ck_ctx *ctx = ck_ctx_new();
    cki_map m;
    char *names = malloc((size_t)N * 16);
    int ok = 1;
    cki_map_init(&m, ctx);
    for (size_t i = 0; i < N; i++) {
        int len = snprintf(names + i * 16, 16, "layer.%zu", i);
        if (cki_map_put(&m, names + i * 16, (size_t)len, i, NULL) != 0) ok = 0;
    }
    CHECK(ok);
    CHECK(m.count == N && m.cap >= 2 * N && (m.cap & (m.cap - 1)) == 0);
    for (size_t i = 0; i < N; i++) {
        size_t v = 0;
        if (cki_map_get(&m, names + i * 16, strlen(names + i * 16), &v) || v != i) ok = 0;
    }
    CHECK(ok);
    {
        size_t v = 0;
        CHECK(cki_map_get(&m, "layer.50000", 11, &v) == 1);
    }
    cki_map_free(&m);
    free(names);
    ck_ctx_free(ctx);
}

TEST(common_map_long_names_and_same_length_keys)
{
    enum { N = 4096 };
    ck_ctx *ctx = ck_ctx_new();
    cki_map m;
    size_t big = (size_t)1 << 24, v = 0;
    char *longkey = calloc(big, 1), *names = malloc((size_t)N * 8);
    int ok = 1;
    cki_map_init(&m, ctx);
    /* a slot keeps the length in 24 bits: a name of 16 MiB - 1 is a key, one
     * of 16 MiB is refused with the limit, and asking for it finds nothing */
    CHECK(longkey && names);
    if (longkey && names) {
        CHECK(cki_map_put(&m, longkey, big - 1, 1, NULL) == 0);
        CHECK(cki_map_get(&m, longkey, big - 1, &v) == 0 && v == 1);
        CHECK(cki_map_put(&m, longkey, big, 2, NULL) == -1 && ck_last_status(ctx) == CK_ELIMIT);
        CHECK(strstr(ck_errmsg(ctx), "names below 16 MiB") != NULL);
        CHECK(cki_map_get(&m, longkey, big, &v) == 1);
        /* keys of one length, differing in one byte: the hash tag in the slot
         * must never make a present key missed or an absent one found */
        for (size_t i = 0; i < N; i++) {
            snprintf(names + i * 8, 8, "k%06zu", i);
            if (cki_map_put(&m, names + i * 8, 7, i, NULL) != 0) ok = 0;
        }
        for (size_t i = 0; i < N; i++)
            if (cki_map_get(&m, names + i * 8, 7, &v) || v != i) ok = 0;
        CHECK(ok);
        CHECK(cki_map_get(&m, "k999999", 7, &v) == 1);
        CHECK(cki_map_put(&m, "k000042", 7, 9, &v) == 1 && v == 42);
    }
    cki_map_free(&m);
    free(longkey);
    free(names);
    ck_ctx_free(ctx);
}

/* ---- UTF-8 ------------------------------------------------------------------- */

static int utf8(const char *s)
{
    return cki_utf8_valid((const uint8_t *)s, strlen(s));
}

TEST(common_utf8_accepts_valid)
{
    CHECK(utf8(""));
    CHECK(utf8("plain ascii ~\x7f"));
    CHECK(utf8("\xc2\x80"));             /* U+0080 */
    CHECK(utf8("\xdf\xbf"));             /* U+07FF */
    CHECK(utf8("\xe0\xa0\x80"));         /* U+0800 */
    CHECK(utf8("\xed\x9f\xbf"));         /* U+D7FF, just below the surrogates */
    CHECK(utf8("\xee\x80\x80"));         /* U+E000, just above */
    CHECK(utf8("\xef\xbf\xbf"));         /* U+FFFF */
    CHECK(utf8("\xf0\x90\x80\x80"));     /* U+10000 */
    CHECK(utf8("\xf4\x8f\xbf\xbf"));     /* U+10FFFF */
    CHECK(utf8("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80"));
    CHECK(cki_utf8_valid((const uint8_t *)"a\0b", 3)); /* NUL is valid UTF-8 */
}

TEST(common_utf8_rejects_invalid)
{
    CHECK(!utf8("\x80"));                /* stray continuation */
    CHECK(!utf8("a\xbf"));
    CHECK(!utf8("\xc0\x80"));            /* overlong NUL */
    CHECK(!utf8("\xc1\xbf"));            /* overlong */
    CHECK(!utf8("\xe0\x80\x80"));        /* overlong 3-byte */
    CHECK(!utf8("\xe0\x9f\xbf"));        /* overlong U+07FF */
    CHECK(!utf8("\xf0\x80\x80\x80"));    /* overlong 4-byte */
    CHECK(!utf8("\xf0\x8f\xbf\xbf"));    /* overlong U+FFFF */
    CHECK(!utf8("\xed\xa0\x80"));        /* U+D800 surrogate */
    CHECK(!utf8("\xed\xbf\xbf"));        /* U+DFFF surrogate */
    CHECK(!utf8("\xf4\x90\x80\x80"));    /* U+110000 */
    CHECK(!utf8("\xf5\x80\x80\x80"));
    CHECK(!utf8("\xff"));
    CHECK(!utf8("\xc3"));                /* truncated at the end */
    CHECK(!utf8("\xe6\x97"));
    CHECK(!utf8("\xf0\x9f\x98"));
    CHECK(!utf8("\xc3x"));               /* continuation expected */
    CHECK(!utf8("\xe6\x97x"));
    /* a lead byte at the very end of a longer valid run */
    CHECK(!cki_utf8_valid((const uint8_t *)"ok\xe6\x97\xa5\xe6", 6));
}

/* ---- glob ----------------------------------------------------------------------- */

TEST(common_glob_matching)
{
    CHECK(cki_glob_match("*", ""));
    CHECK(cki_glob_match("*", "anything.at.all"));
    CHECK(cki_glob_match("", ""));
    CHECK(!cki_glob_match("", "a"));
    CHECK(cki_glob_match("model.*.weight", "model.layers.0.weight"));
    CHECK(!cki_glob_match("model.*.weight", "model.layers.0.bias"));
    CHECK(cki_glob_match("*.bias", ".bias"));
    CHECK(cki_glob_match("a*b*c", "aXXbYYbZZc"));
    CHECK(!cki_glob_match("a*b*c", "aXXbYYbZZ"));
    CHECK(cki_glob_match("a**c", "abc"));
    CHECK(cki_glob_match("?", "x"));
    CHECK(!cki_glob_match("?", ""));
    CHECK(!cki_glob_match("?", "xy"));
    CHECK(cki_glob_match("layer.[0-9].w", "layer.7.w"));
    CHECK(!cki_glob_match("layer.[0-9].w", "layer.a.w"));
    CHECK(cki_glob_match("layer.[!0-9].w", "layer.a.w"));
    CHECK(cki_glob_match("layer.[^0-9].w", "layer.a.w"));
    CHECK(!cki_glob_match("layer.[!0-9].w", "layer.3.w"));
    CHECK(cki_glob_match("[abc]", "b"));
    CHECK(cki_glob_match("[]]", "]"));
    CHECK(cki_glob_match("[a-]", "-"));   /* trailing '-' is literal */
    CHECK(cki_glob_match("x[", "x["));    /* unterminated class: '[' is literal */
    CHECK(!cki_glob_match("x[", "xa"));
    CHECK(cki_glob_match("*[", "abc["));
    CHECK(cki_glob_match("*.[ch]", "src/a.c"));
    CHECK(!cki_glob_match("ab", "abc"));
    CHECK(!cki_glob_match("abc", "ab"));
    /* many stars against a long non-match stays fast (no exponential backtracking) */
    {
        char s[4001];
        memset(s, 'a', 4000);
        s[4000] = 0;
        CHECK(!cki_glob_match("*a*a*a*a*a*a*a*a*b", s));
    }
}

TEST(common_basename)
{
    CHECK(strcmp(cki_basename("a/b/c.pt"), "c.pt") == 0);
    CHECK(strcmp(cki_basename("c.pt"), "c.pt") == 0);
    CHECK(strcmp(cki_basename("/c.pt"), "c.pt") == 0);
    CHECK(strcmp(cki_basename("dir/"), "") == 0);
}

/* ---- counted allocation ---------------------------------------------------------- */

TEST(common_alloc_counts_and_frees)
{
    ck_ctx *ctx = ck_ctx_new();
    unsigned char *p, *q;
    uint64_t peak;
    CHECK(ctx->mem_used == 0);
    p = cki_malloc(ctx, 1000);
    CHECK(p != NULL && ctx->mem_used >= 1000);
    for (int i = 0; p && i < 1000; i++) p[i] = (unsigned char)i;
    q = cki_realloc(ctx, p, 5000);
    CHECK(q != NULL);
    {
        int same = 1;
        for (int i = 0; q && i < 1000; i++) same &= q[i] == (unsigned char)i;
        CHECK(same);
    }
    q = cki_realloc(ctx, q, 10); /* shrinking keeps the prefix */
    CHECK(q && q[9] == 9);
    peak = ctx->mem_peak;
    CHECK(peak >= 6000);
    cki_free(ctx, q);
    CHECK(ctx->mem_used == 0);
    CHECK(ctx->mem_peak == peak);
    cki_free(ctx, NULL);
    p = cki_calloc(ctx, 100, 10);
    CHECK(p && p[0] == 0 && p[999] == 0);
    cki_free(ctx, p);
    CHECK(cki_calloc(ctx, SIZE_MAX / 2, 3) == NULL);
    CHECK(ck_last_status(ctx) == CK_ENOMEM && strstr(ck_errmsg(ctx), "overflows"));
    CHECK(cki_malloc(ctx, SIZE_MAX) == NULL);
    CHECK(cki_malloc(ctx, SIZE_MAX - 15) == NULL);
    CHECK(ctx->mem_used == 0);
    {
        char *s = cki_strndup(ctx, "abcdef", 4);
        CHECK(s && strcmp(s, "abcd") == 0);
        cki_free(ctx, s);
        s = cki_strdup(ctx, "");
        CHECK(s && *s == 0);
        cki_free(ctx, s);
    }
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

TEST(common_alloc_respects_the_memory_limit)
{
    ck_ctx *ctx = ck_ctx_new();
    void *a, *b;
    ctx->mem_limit_effective = 1 << 20;
    a = cki_malloc(ctx, 600 << 10);
    CHECK(a != NULL);
    b = cki_malloc(ctx, 600 << 10);
    CHECK(b == NULL);
    CHECK(ck_last_status(ctx) == CK_ENOMEM);
    CHECK(strstr(ck_errmsg(ctx), "memory limit reached") != NULL);
    /* sizes whose sum with what is in use would wrap 64 bits are refused too */
    CHECK(cki_malloc(ctx, SIZE_MAX - 64) == NULL);
    CHECK(strstr(ck_errmsg(ctx), "memory limit reached") != NULL);
    cki_free(ctx, a);
    b = cki_malloc(ctx, 600 << 10);
    CHECK(b != NULL);
    cki_free(ctx, b);
    CHECK(ctx->mem_used == 0);
    /* lowering the configured limit lowers the effective one */
    ctx->mem_limit_effective = 1ull << 40;
    CHECK(ck_ctx_set_limit(ctx, CK_LIMIT_MEMORY, 4096) == CK_OK);
    CHECK(ck_ctx_get_limit(ctx, CK_LIMIT_MEMORY) == 4096);
    CHECK(cki_malloc(ctx, 8192) == NULL);
    CHECK(ck_ctx_set_limit(ctx, CK_LIMIT_MEMORY, 0) == CK_OK); /* back to the default */
    CHECK(ck_ctx_get_limit(ctx, CK_LIMIT_MEMORY) > 4096);
    CHECK(ck_ctx_set_limit(ctx, CK_LIMIT_COUNT, 1) == CK_EARG);
    CHECK(ck_ctx_set_limit(ctx, (ck_limit)-1, 1) == CK_EARG);
    ck_ctx_free(ctx);
}

TEST(common_alloc_fault_hook_fails_the_nth)
{
    ck_ctx *ctx = ck_ctx_new();
    void *p[4];
    cki_sys_fail_nth(CKI_SYS_ALLOC, 3);
    p[0] = cki_malloc(ctx, 10);
    p[1] = cki_malloc(ctx, 10);
    p[2] = cki_malloc(ctx, 10);
    p[3] = cki_malloc(ctx, 10);
    cki_sys_reset();
    CHECK(p[0] && p[1] && !p[2] && p[3]);
    CHECK(ck_last_status(ctx) == CK_ENOMEM);
    for (int i = 0; i < 4; i++) cki_free(ctx, p[i]);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
}

/* ---- errors and warnings ----------------------------------------------------------- */

static void collect(void *user, const char *msg)
{
    cki_buf *b = user;
    cki_buf_puts(b, msg);
    cki_buf_putc(b, '|');
}

TEST(common_errors_are_one_line_and_bounded)
{
    ck_ctx *ctx = ck_ctx_new();
    char long_name[3000];
    cki_buf w;
    CHECK(strcmp(ck_errmsg(ctx), "") == 0 && ck_last_status(ctx) == CK_OK);
    CHECK(cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': bad\nrule\r(%d)", "f.st", "a\nb", 3) ==
          CK_EFORMAT);
    CHECK(strcmp(ck_errmsg(ctx), "f.st: tensor 'a b': bad rule (3)") == 0);
    CHECK(ck_last_status(ctx) == CK_EFORMAT);
    memset(long_name, 'n', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    cki_fail(ctx, CK_EIO, "%s: cannot open", long_name);
    CHECK(strlen(ck_errmsg(ctx)) == CKI_ERRMSG_MAX - 1);
    cki_clear(ctx);
    CHECK(strcmp(ck_errmsg(ctx), "") == 0 && ck_last_status(ctx) == CK_OK);
    CHECK(cki_fail(NULL, CK_EIO, "no context") == CK_EIO); /* no crash */
    CHECK(strcmp(ck_errmsg(NULL), "no context") == 0);

    cki_buf_init(&w, NULL, 0);
    cki_warn(ctx, "dropped without a callback");
    ck_ctx_set_warn(ctx, collect, &w);
    cki_warn(ctx, "protocol %d\npickle", 4);
    CHECK(w.p && strcmp(w.p, "protocol 4 pickle|") == 0);
    cki_buf_free(&w);
    CHECK(strcmp(ck_status_name(CK_ESAMEFILE), "output is input") == 0);
    CHECK(strcmp(ck_status_name((ck_status)999), "unknown status") == 0);
    ck_ctx_free(ctx);
}
