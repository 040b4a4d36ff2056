/*
 * t_json.c -- the strict JSON reader: grammar, escapes and surrogates, UTF-8,
 * duplicate keys, depth and size limits, exact unsigned integers, and the
 * byte offset every error carries.
 */
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "t.h"

typedef struct jt {
    ck_ctx *ctx;
    cki_arena arena;
    const cki_json *root;
    cki_json_err err;
    ck_status st;
} jt;

static void jt_parse_n(jt *j, const char *s, size_t n, const cki_json_opts *o)
{
    j->ctx = ck_ctx_new();
    cki_arena_init(&j->arena, j->ctx);
    j->root = NULL;
    j->st = cki_json_parse(j->ctx, &j->arena, s, n, o, &j->root, &j->err);
}

static void jt_parse(jt *j, const char *s)
{
    jt_parse_n(j, s, strlen(s), NULL);
}

static void jt_done(jt *j)
{
    cki_arena_free(&j->arena);
    CHECK(j->ctx->mem_used == 0); /* the parser's temporary stacks are freed */
    ck_ctx_free(j->ctx);
}

/* Parses S (N bytes) and expects failure ST with MSG at byte OFF. */
static int fails_n(const char *s, size_t n, ck_status st, const char *msg, size_t off)
{
    jt j;
    int ok;
    jt_parse_n(&j, s, n, NULL);
    ok = j.st == st && strcmp(j.err.msg, msg) == 0 && j.err.off == off;
    if (!ok)
        fprintf(stderr, "  input %.*s: got status %d, \"%s\" at %zu\n", (int)n, s, (int)j.st,
                j.err.msg, j.err.off);
    jt_done(&j);
    return ok;
}

static int fails(const char *s, const char *msg, size_t off)
{
    return fails_n(s, strlen(s), CK_EFORMAT, msg, off);
}

static int parses(const char *s)
{
    jt j;
    int ok;
    jt_parse(&j, s);
    ok = j.st == CK_OK && j.root != NULL;
    if (!ok) fprintf(stderr, "  input %s: \"%s\" at %zu\n", s, j.err.msg, j.err.off);
    jt_done(&j);
    return ok;
}

/* The decoded value of the JSON string literal S; compares with WANT (N bytes). */
static int decodes_to(const char *s, const char *want, size_t n)
{
    jt j;
    int ok;
    jt_parse(&j, s);
    ok = j.st == CK_OK && j.root->type == CKI_JSON_STRING && j.root->len == n &&
         memcmp(j.root->u.str, want, n) == 0 && j.root->u.str[n] == 0;
    jt_done(&j);
    return ok;
}

TEST(json_scalars_at_top_level)
{
    jt j;
    jt_parse(&j, " true ");
    CHECK(j.st == CK_OK && j.root->type == CKI_JSON_TRUE && j.root->off == 1);
    jt_done(&j);
    jt_parse(&j, "false");
    CHECK(j.st == CK_OK && j.root->type == CKI_JSON_FALSE);
    jt_done(&j);
    jt_parse(&j, "\t\r\nnull\n");
    CHECK(j.st == CK_OK && j.root->type == CKI_JSON_NULL && j.root->off == 3);
    jt_done(&j);
    jt_parse(&j, "-12.5e+3");
    CHECK(j.st == CK_OK && j.root->type == CKI_JSON_NUMBER && j.root->len == 8);
    CHECK(memcmp(j.root->u.num, "-12.5e+3", 8) == 0);
    jt_done(&j);
    CHECK(parses("0"));
    CHECK(parses("-0"));
    CHECK(parses("0.5"));
    CHECK(parses("1E9"));
    CHECK(parses("1e-9"));
    CHECK(parses("\"\""));
    CHECK(parses("[]"));
    CHECK(parses("{}"));
    CHECK(parses(" [ ] "));
    CHECK(parses("{ }"));
}

TEST(json_structure_keeps_order_and_offsets)
{
    jt j;
    const cki_json *a, *b;
    jt_parse(&j, "{\"b\": [1, {\"x\": null}], \"a\": \"s\"}");
    CHECK(j.st == CK_OK);
    CHECK(j.root->type == CKI_JSON_OBJECT && j.root->len == 2 && j.root->off == 0);
    CHECK(strcmp(j.root->u.members[0].key, "b") == 0 && j.root->u.members[0].key_off == 1);
    CHECK(strcmp(j.root->u.members[1].key, "a") == 0 && j.root->u.members[1].key_off == 24);
    b = cki_json_get(j.root, "b");
    a = cki_json_get(j.root, "a");
    CHECK(b && b->type == CKI_JSON_ARRAY && b->len == 2 && b->off == 6);
    CHECK(b->u.items[0].type == CKI_JSON_NUMBER && b->u.items[0].off == 7);
    CHECK(b->u.items[1].type == CKI_JSON_OBJECT && b->u.items[1].off == 10);
    CHECK(cki_json_get(&b->u.items[1], "x")->type == CKI_JSON_NULL);
    CHECK(a && cki_json_str_is(a, "s") && a->off == 29);
    CHECK(cki_json_get(j.root, "c") == NULL);
    CHECK(cki_json_get(a, "x") == NULL); /* not an object */
    jt_done(&j);
}

TEST(json_grammar_errors_report_offsets)
{
    CHECK(fails("", "unexpected end of input, expected a value", 0));
    CHECK(fails("   ", "unexpected end of input, expected a value", 3));
    CHECK(fails("[1,]", "unexpected character ']', expected a value", 3));
    CHECK(fails("{\"a\":1,}", "unexpected character '}', expected a string key", 7));
    CHECK(fails("{\"a\" 1}", "unexpected character '1', expected ':' after the key", 5));
    CHECK(fails("{a:1}", "unexpected character 'a', expected a string key", 1));
    CHECK(fails("[1 2]", "unexpected character '2', expected ',' or ']'", 3));
    CHECK(fails("{\"a\":1 \"b\":2}", "unexpected character '\"', expected ',' or '}'", 7));
    CHECK(fails("[1", "unexpected end of input, expected ',' or ']'", 2));
    CHECK(fails("{\"a\":", "unexpected end of input, expected a value", 5));
    CHECK(fails("{} x", "unexpected character 'x' after the document", 3));
    CHECK(fails("{}{}", "unexpected character '{' after the document", 2));
    CHECK(fails_n("{}\0", 3, CK_EFORMAT, "unexpected byte 0x00 after the document", 2));
    CHECK(fails_n("{} \f", 4, CK_EFORMAT, "unexpected byte 0x0c after the document", 3));
    CHECK(fails("\xef\xbb\xbf{}", "unexpected byte 0xef, expected a value", 0)); /* BOM */
    CHECK(fails("[01]", "leading zero in a number", 1));
    CHECK(fails("-", "invalid number", 0));
    CHECK(fails("[-a]", "invalid number", 1));
    CHECK(fails("1.", "invalid number", 0));
    CHECK(fails("1.e5", "invalid number", 0));
    CHECK(fails("1e", "invalid number", 0));
    CHECK(fails("1e+", "invalid number", 0));
    CHECK(fails(".5", "unexpected character '.', expected a value", 0));
    CHECK(fails("+1", "unexpected character '+', expected a value", 0));
    CHECK(fails("[tru]", "invalid literal (expected 'true')", 1));
    CHECK(fails("nul", "invalid literal (expected 'null')", 0));
    CHECK(fails("True", "unexpected character 'T', expected a value", 0));
    CHECK(fails("NaN", "unexpected character 'N', expected a value", 0));
    CHECK(fails("[Infinity]", "unexpected character 'I', expected a value", 1));
    CHECK(fails("'a'", "unexpected character ''', expected a value", 0));
    CHECK(fails("/* c */ 1", "unexpected character '/', expected a value", 0));
    CHECK(fails("[1,]", "unexpected character ']', expected a value", 3));
    CHECK(fails("{\"a\":1}}", "unexpected character '}' after the document", 7));
    CHECK(fails("]", "unexpected character ']', expected a value", 0));
    CHECK(fails("\x01", "unexpected byte 0x01, expected a value", 0));
    CHECK(fails("\"abc", "unterminated string", 0));
    CHECK(fails("[\"a\\", "unterminated string", 1));
}

TEST(json_escapes_decode)
{
    CHECK(decodes_to("\"a\\\"b\\\\c\\/d\"", "a\"b\\c/d", 7));
    CHECK(decodes_to("\"\\b\\f\\n\\r\\t\"", "\b\f\n\r\t", 5));
    CHECK(decodes_to("\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6));
    CHECK(decodes_to("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4));   /* surrogate pair */
    CHECK(decodes_to("\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4));   /* U+10FFFF */
    CHECK(decodes_to("\"a\\u0000b\"", "a\0b", 3));                   /* NUL kept, counted */
    CHECK(decodes_to("\"\\u07ff\\u0800\"", "\xdf\xbf\xe0\xa0\x80", 5));
    CHECK(decodes_to("\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"",
                     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    CHECK(decodes_to("\"\"", "", 0));
}

TEST(json_bad_escapes_and_surrogates)
{
    CHECK(fails("\"\\q\"", "invalid escape '\\q'", 1));
    CHECK(fails("[\"ab\\x\"]", "invalid escape '\\x'", 4));
    CHECK(fails("\"\\'\"", "invalid escape '\\''", 1));
    CHECK(fails_n("\"\\\x01\"", 4, CK_EFORMAT, "invalid escape byte 0x01", 1));
    CHECK(fails("\"\\u12\"", "invalid \\u escape (four hex digits expected)", 1));
    CHECK(fails("\"\\u12g4\"", "invalid \\u escape (four hex digits expected)", 1));
    CHECK(fails("\"\\u", "invalid \\u escape (four hex digits expected)", 1));
    CHECK(fails("\"\\ud800\"", "lone surrogate \\ud800", 1));
    CHECK(fails("\"x\\ud800\\u0041\"", "lone surrogate \\ud800", 2));
    CHECK(fails("\"\\ud800\\ud800\"", "lone surrogate \\ud800", 1));
    CHECK(fails("\"\\ud800\\n\"", "lone surrogate \\ud800", 1));
    CHECK(fails("\"\\udc00\"", "lone surrogate \\udc00", 1));
    CHECK(fails("\"\\uDFFF\\uD800\"", "lone surrogate \\udfff", 1));
    CHECK(fails("\"\\ud800", "lone surrogate \\ud800", 1));
}

TEST(json_string_bytes_are_validated)
{
    CHECK(fails("\"a\nb\"", "control character 0x0a in a string", 2));
    CHECK(fails("\"\t\"", "control character 0x09 in a string", 1));
    CHECK(fails_n("\"\0\"", 3, CK_EFORMAT, "control character 0x00 in a string", 1));
    CHECK(fails("\"ab\xc0\x80\"", "invalid UTF-8 in a string", 3));       /* overlong NUL */
    CHECK(fails("\"\xe0\x80\xaf\"", "invalid UTF-8 in a string", 1));     /* overlong '/' */
    CHECK(fails("\"\xed\xa0\x80\"", "invalid UTF-8 in a string", 1));     /* encoded surrogate */
    CHECK(fails("\"\xf4\x90\x80\x80\"", "invalid UTF-8 in a string", 1)); /* past U+10FFFF */
    CHECK(fails("\"\xf5\x80\x80\x80\"", "invalid UTF-8 in a string", 1));
    CHECK(fails("\"\x80\"", "invalid UTF-8 in a string", 1));             /* lone continuation */
    CHECK(fails("\"\xc3\"", "invalid UTF-8 in a string", 1));             /* cut short */
    CHECK(fails("\"\xe2\x82\"", "invalid UTF-8 in a string", 1));
    CHECK(fails("\"\xff\"", "invalid UTF-8 in a string", 1));
    CHECK(fails("{\"k\xc3\x28\":1}", "invalid UTF-8 in a string", 3));     /* in a key */
    CHECK(fails("[\xc3\xa9]", "unexpected byte 0xc3, expected a value", 1));
    CHECK(parses("\"\x7f\""));                                              /* DEL is allowed */
}

TEST(json_duplicate_keys_rejected_anywhere)
{
    char big[4096];
    size_t n = 0;
    CHECK(fails("{\"a\":1,\"b\":2,\"a\":3}", "duplicate key \"a\"", 13));
    CHECK(fails("{\"x\":{\"k\":1,\"k\":1}}", "duplicate key \"k\"", 12));
    CHECK(fails("[{}, {\"a\":[], \"a\":{}}]", "duplicate key \"a\"", 14));
    /* the same key spelled two ways is the same key */
    CHECK(fails("{\"a\":1,\"\\u0061\":2}", "duplicate key \"a\"", 7));
    /* control characters in a shown key are masked */
    CHECK(fails("{\"\\n\":1,\"\\n\":2}", "duplicate key \"?\"", 8));
    CHECK(parses("{\"a\":1,\"ab\":2,\"abc\":3,\"b\":4}"));
    CHECK(parses("{\"a\\u0000b\":1,\"a\\u0000c\":2,\"a\":3}"));
    CHECK(parses("{\"a\":{\"a\":{\"a\":1}}}")); /* one key per object */

    /* a large object (sorted check): keys k0..k99, duplicates of k50 and k7 late */
    big[n++] = '{';
    for (int i = 0; i < 100; i++) n += (size_t)sprintf(big + n, "\"k%d\":%d,", i, i);
    {
        size_t off_k50 = n;
        n += (size_t)sprintf(big + n, "\"k50\":0,");
        n += (size_t)sprintf(big + n, "\"k7\":0}");
        CHECK(fails_n(big, n, CK_EFORMAT, "duplicate key \"k50\"", off_k50));
        big[off_k50 + 2] = '9'; /* "k90" is still a duplicate, and still the first */
        CHECK(fails_n(big, n, CK_EFORMAT, "duplicate key \"k90\"", off_k50));
        memcpy(big + off_k50, "\"z50\"", 5); /* now only "k7" repeats */
        CHECK(fails_n(big, n, CK_EFORMAT, "duplicate key \"k7\"", off_k50 + 8));
        memcpy(big + off_k50 + 8, "\"z7\"", 4);
        big[n] = 0;
        CHECK(parses(big));
    }
}

TEST(json_long_duplicate_key_is_clipped)
{
    char doc[400], want[120];
    size_t n = 0;
    doc[n++] = '{';
    for (int r = 0; r < 2; r++) {
        doc[n++] = '"';
        for (int i = 0; i < 100; i++) doc[n++] = 'x';
        n += (size_t)sprintf(doc + n, "\":%d%s", r, r ? "}" : ",");
    }
    memset(want, 0, sizeof want);
    strcpy(want, "duplicate key \"");
    memset(want + strlen(want), 'x', 64);
    strcat(want, "...\"");
    CHECK(fails_n(doc, n, CK_EFORMAT, want, 106));
}

TEST(json_depth_limit)
{
    char doc[300];
    cki_json_opts o = {3, 0};
    jt j;
    memset(doc, '[', 64);
    memset(doc + 64, ']', 64);
    jt_parse_n(&j, doc, 128, NULL); /* 64 levels: the default limit, accepted */
    CHECK(j.st == CK_OK);
    jt_done(&j);
    memset(doc, '[', 65);
    memset(doc + 65, ']', 65);
    CHECK(fails_n(doc, 130, CK_ELIMIT, "nesting deeper than 64 levels", 64));
    jt_parse_n(&j, "{\"a\":[{}]}", 10, &o);
    CHECK(j.st == CK_OK);
    jt_done(&j);
    jt_parse_n(&j, "{\"a\":[{\"b\":[]}]}", 16, &o);
    CHECK(j.st == CK_ELIMIT && j.err.off == 11);
    CHECK(!strcmp(j.err.msg, "nesting deeper than 3 levels"));
    jt_done(&j);
    /* deep nesting far past any stack: refused at the limit, no recursion */
    {
        size_t n = 1000000;
        char *deep = malloc(n);
        memset(deep, '[', n);
        CHECK(fails_n(deep, n, CK_ELIMIT, "nesting deeper than 64 levels", 64));
        free(deep);
    }
}

TEST(json_size_limit)
{
    cki_json_opts o = {0, 4};
    jt j;
    jt_parse_n(&j, "[1,2]", 5, &o);
    CHECK(j.st == CK_ELIMIT && j.err.off == 0 &&
          !strcmp(j.err.msg, "document of 5 bytes exceeds the limit of 4"));
    jt_done(&j);
    jt_parse_n(&j, "[12]", 4, &o);
    CHECK(j.st == CK_OK);
    jt_done(&j);
}

static const char *u64_of(const char *s, uint64_t *v)
{
    jt j;
    const char *why;
    jt_parse(&j, s);
    if (j.st) {
        jt_done(&j);
        return "parse error";
    }
    why = cki_json_to_u64(j.root, v);
    jt_done(&j);
    return why;
}

TEST(json_exact_unsigned_integers)
{
    uint64_t v = 7;
    CHECK(u64_of("0", &v) == NULL && v == 0);
    CHECK(u64_of("18446744073709551615", &v) == NULL && v == UINT64_MAX);
    CHECK(u64_of("9007199254740993", &v) == NULL && v == 9007199254740993ull); /* 2^53 + 1 */
    CHECK(!strcmp(u64_of("18446744073709551616", &v), "is larger than 2^64 - 1"));
    CHECK(!strcmp(u64_of("99999999999999999999999", &v), "is larger than 2^64 - 1"));
    CHECK(!strcmp(u64_of("-1", &v), "is negative"));
    CHECK(!strcmp(u64_of("-0", &v), "is negative"));
    CHECK(!strcmp(u64_of("-1.5", &v), "is negative"));
    CHECK(!strcmp(u64_of("1.0", &v), "is not an integer"));
    CHECK(!strcmp(u64_of("1e2", &v), "is not an integer"));
    CHECK(!strcmp(u64_of("1E0", &v), "is not an integer"));
    CHECK(!strcmp(u64_of("\"5\"", &v), "is not a number"));
    CHECK(!strcmp(u64_of("true", &v), "is not a number"));
    CHECK(!strcmp(cki_json_to_u64(NULL, &v), "is not a number"));
}

TEST(json_type_names)
{
    CHECK(!strcmp(cki_json_type_name(CKI_JSON_NULL), "null"));
    CHECK(!strcmp(cki_json_type_name(CKI_JSON_TRUE), "a boolean"));
    CHECK(!strcmp(cki_json_type_name(CKI_JSON_FALSE), "a boolean"));
    CHECK(!strcmp(cki_json_type_name(CKI_JSON_NUMBER), "a number"));
    CHECK(!strcmp(cki_json_type_name(CKI_JSON_STRING), "a string"));
    CHECK(!strcmp(cki_json_type_name(CKI_JSON_ARRAY), "an array"));
    CHECK(!strcmp(cki_json_type_name(CKI_JSON_OBJECT), "an object"));
}

TEST(json_utf8_prefix_and_clip)
{
    CHECK(cki_json_utf8_prefix("abc", 3) == 3);
    CHECK(cki_json_utf8_prefix("", 0) == 0);
    CHECK(cki_json_utf8_prefix("a\xc3\xa9z", 4) == 4);
    CHECK(cki_json_utf8_prefix("ab\xff", 3) == 2);
    CHECK(cki_json_utf8_prefix("ab\xe2\x82", 4) == 2);
    CHECK(cki_json_utf8_prefix("\xed\xa0\x80", 3) == 0);
    CHECK(cki_json_clip("abcdef", 6, 10) == 6);
    CHECK(cki_json_clip("abcdef", 6, 4) == 4);
    CHECK(cki_json_clip("ab\xe2\x82\xac", 5, 4) == 2); /* never splits the euro sign */
    CHECK(cki_json_clip("ab\xe2\x82\xac", 5, 5) == 5);
    CHECK(cki_json_clip("ab\xe2\x82\xacz", 6, 5) == 5);
}

TEST(json_large_documents_stay_linear)
{
    /* 200k-element array and a 50k-member object: parse, count, free */
    size_t n = 200000, len = 0;
    char *doc = malloc(n * 2 + 2);
    jt j;
    doc[len++] = '[';
    for (size_t i = 0; i < n; i++) {
        doc[len++] = '0';
        doc[len++] = i + 1 < n ? ',' : ']';
    }
    jt_parse_n(&j, doc, len, NULL);
    CHECK(j.st == CK_OK && j.root->len == n);
    /* a 32-byte node per 2 input bytes, nothing else: 16 bytes per input byte */
    CHECK(j.ctx->mem_peak < 17 * (uint64_t)len);
    jt_done(&j);
    free(doc);

    n = 50000;
    doc = malloc(n * 24 + 2);
    len = 0;
    doc[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(doc + len, "\"t%zu\":[%zu]%s", i, i, i + 1 < n ? "," : "}");
    jt_parse_n(&j, doc, len, NULL);
    CHECK(j.st == CK_OK && j.root->len == n);
    CHECK(strcmp(j.root->u.members[n - 1].key, "t49999") == 0);
    jt_done(&j);
    free(doc);
}

TEST(json_out_of_memory_is_reported)
{
    jt j;
    const char *doc = "{\"a\":[1,2,3],\"b\":\"xyz\"}";
    j.ctx = ck_ctx_new();
    j.ctx->mem_limit_effective = 64; /* nothing fits */
    cki_arena_init(&j.arena, j.ctx);
    j.st = cki_json_parse(j.ctx, &j.arena, doc, strlen(doc), NULL, &j.root, &j.err);
    CHECK(j.st == CK_ENOMEM);
    CHECK(!strcmp(j.err.msg, "out of memory"));
    CHECK(ck_last_status(j.ctx) == CK_ENOMEM);
    jt_done(&j);
}
