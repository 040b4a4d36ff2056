/*
 * t_pickle.c -- the restricted pickle machine: every opcode from hand-made
 * byte strings, memo/mark/frame rules, Python 2 text opcodes, cycles,
 * limits and memory bounds, truncation at every byte, and the real pickles
 * of the fixture set (run with this machine only; never with Python).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/cki.h"
#include "io/sys.h"
#include "pickle/pickle.h"
#include "t.h"

/* ---- harness --------------------------------------------------------------- */

typedef struct tp {
    ck_ctx *ctx;
    cki_arena ar;
    cki_pickle pk;
    ck_status st;
} tp;

static void tp_run(tp *t, const void *p, size_t n)
{
    t->ctx = ck_ctx_new();
    cki_arena_init(&t->ar, t->ctx);
    t->st = cki_pickle_run(t->ctx, &t->ar, p, n, "t.pkl", "test", 0, &t->pk);
}

static void tp_free(tp *t)
{
    cki_arena_free(&t->ar);
    ck_ctx_free(t->ctx);
}

#define RUN(t, lit) tp_run((t), (lit), sizeof(lit) - 1)

static int err_has(const tp *t, const char *s)
{
    int ok = strstr(ck_errmsg(t->ctx), s) != NULL;
    if (!ok) fprintf(stderr, "  message was: %s\n  expected to contain: %s\n", ck_errmsg(t->ctx), s);
    return ok;
}

/* growable byte string for longer programs */
typedef struct bb {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *s, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
}
static void bb_str(bb *b, const char *s)
{
    bb_put(b, s, strlen(s));
}
#define BB_LIT(b, lit) bb_put((b), (lit), sizeof(lit) - 1)
static void bb_le32(bb *b, uint32_t v)
{
    uint8_t x[4];
    cki_st_le32(x, v);
    bb_put(b, x, 4);
}

static int is_int(const cki_pv *v, int64_t want)
{
    return v && v->kind == CKI_PV_INT && v->u.i == want;
}

static int is_bytes(const cki_pv *v, cki_pv_kind kind, const char *s, size_t n)
{
    return v && v->kind == kind && v->u.s.len == n && !memcmp(v->u.s.p, s, n) && v->u.s.p[n] == 0;
}

/* decimal text of a BIGINT (little-endian two's complement), for checks */
static void bigint_dec(const cki_pv *v, char *out, size_t cap)
{
    size_t n = (size_t)v->u.s.len, k = 0;
    uint8_t *mag = malloc(n ? n : 1);
    int neg = n && (((const uint8_t *)v->u.s.p)[n - 1] & 0x80);
    char tmp[4096];
    memcpy(mag, v->u.s.p, n);
    if (neg) {
        unsigned carry = 1;
        for (size_t i = 0; i < n; i++) {
            unsigned t = (unsigned)(uint8_t)~mag[i] + carry;
            mag[i] = (uint8_t)t;
            carry = t >> 8;
        }
    }
    for (;;) {
        unsigned rem = 0;
        int nonzero = 0;
        for (size_t i = n; i-- > 0;) {
            unsigned cur = rem << 8 | mag[i];
            mag[i] = (uint8_t)(cur / 10);
            rem = cur % 10;
            if (mag[i]) nonzero = 1;
        }
        tmp[k++] = (char)('0' + rem);
        if (!nonzero || k + 2 >= sizeof tmp) break;
    }
    free(mag);
    if (k + 2 > cap) k = cap - 2;
    size_t o = 0;
    if (neg) out[o++] = '-';
    while (k) out[o++] = tmp[--k];
    out[o] = 0;
}

/* ---- scalars --------------------------------------------------------------- */

TEST(pickle_binary_scalars)
{
    tp t;
    /* PROTO 2, MARK, NONE TRUE FALSE, BININT1 5, BININT2 0x1234, BININT -1,
     * BINFLOAT 1.5, TUPLE, STOP */
    RUN(&t, "\x80\x02(N\x88\x89K\x05M\x34\x12J\xff\xff\xff\xffG\x3f\xf8\0\0\0\0\0\0t.");
    CHECK(t.st == CK_OK);
    CHECK(t.pk.protocol == 2);
    CHECK(t.pk.end == 27);
    CHECK(t.pk.opcodes == 11);
    cki_pv *r = t.pk.root;
    CHECK(r && r->kind == CKI_PV_TUPLE && r->n == 7);
    if (r && r->n == 7) {
        CHECK(r->items[0]->kind == CKI_PV_NONE);
        CHECK(r->items[1]->kind == CKI_PV_BOOL && r->items[1]->u.i == 1);
        CHECK(r->items[2]->kind == CKI_PV_BOOL && r->items[2]->u.i == 0);
        CHECK(is_int(r->items[3], 5));
        CHECK(is_int(r->items[4], 0x1234));
        CHECK(is_int(r->items[5], -1));
        CHECK(r->items[6]->kind == CKI_PV_FLOAT && r->items[6]->u.f == 1.5);
        CHECK(r->items[3]->off == 6 && r->off == 25);
    }
    tp_free(&t);
}

TEST(pickle_long1_long4)
{
    tp t;
    char dec[128];
    /* LONG1 0 bytes -> 0; LONG1 ff -> -1; LONG1 8 bytes INT64_MIN; LONG1 with a
     * redundant sign byte -> INT; LONG1 9 bytes 2^64 -> BIGINT */
    RUN(&t, "(\x8a\x00\x8a\x01\xff\x8a\x08\0\0\0\0\0\0\0\x80\x8a\x03\x05\0\0"
            "\x8a\x09\0\0\0\0\0\0\0\0\x01\x8a\x0a\0\0\0\0\0\0\0\x80\xff\xfft.");
    CHECK(t.st == CK_OK);
    cki_pv *r = t.pk.root;
    CHECK(r && r->n == 6);
    if (r && r->n == 6) {
        CHECK(is_int(r->items[0], 0));
        CHECK(is_int(r->items[1], -1));
        CHECK(is_int(r->items[2], INT64_MIN));
        CHECK(is_int(r->items[3], 5));
        CHECK(r->items[4]->kind == CKI_PV_BIGINT && r->items[4]->u.s.len == 9);
        bigint_dec(r->items[4], dec, sizeof dec);
        CHECK(!strcmp(dec, "18446744073709551616"));
        /* 0x8000..00 sign-extended to 10 bytes normalises to 8 bytes: INT64_MIN */
        CHECK(is_int(r->items[5], INT64_MIN));
        int64_t v;
        CHECK(cki_pv_to_i64(r->items[4], &v) == 1);
        CHECK(cki_pv_to_i64(r->items[2], &v) == 0 && v == INT64_MIN);
    }
    tp_free(&t);

    RUN(&t, "\x8b\x09\0\0\0\xff\xff\xff\xff\xff\xff\xff\x7f\xfe.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->kind == CKI_PV_BIGINT);
    if (t.pk.root) {
        bigint_dec(t.pk.root, dec, sizeof dec);
        CHECK(!strcmp(dec, "-27670116110564327425"));
    }
    tp_free(&t);

    RUN(&t, "\x8b\xff\xff\xff\xff.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "opcode 0x8b (LONG4) at byte 0: negative integer "
                                            "length -1"));
    tp_free(&t);
    RUN(&t, "\x8a\x05\x01\x02.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "integer of 5 bytes but only 3 remain"));
    tp_free(&t);
}

TEST(pickle_bigint_exact_value)
{
    tp t;
    char dec[128];
    /* -(2^64 + 1): two's complement 0xff..ff fe ff (9 bytes, then sign) */
    RUN(&t, "\x8a\x09\xff\xff\xff\xff\xff\xff\xff\xff\xfe.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->kind == CKI_PV_BIGINT);
    if (t.pk.root && t.pk.root->kind == CKI_PV_BIGINT) {
        bigint_dec(t.pk.root, dec, sizeof dec);
        CHECK(!strcmp(dec, "-18446744073709551617"));
    }
    tp_free(&t);
}

TEST(pickle_text_int_long)
{
    tp t;
    char dec[256];
    RUN(&t, "(I01\nI00\nI42\nI-7\nI 0x1f \nI1_000\nL123L\nL0o17\nL0b101\nI0\nI000\n"
            "L-99999999999999999999999L\nt.");
    CHECK(t.st == CK_OK);
    cki_pv *r = t.pk.root;
    CHECK(r && r->n == 12);
    if (r && r->n == 12) {
        CHECK(r->items[0]->kind == CKI_PV_BOOL && r->items[0]->u.i == 1);
        CHECK(r->items[1]->kind == CKI_PV_BOOL && r->items[1]->u.i == 0);
        CHECK(is_int(r->items[2], 42));
        CHECK(is_int(r->items[3], -7));
        CHECK(is_int(r->items[4], 31));
        CHECK(is_int(r->items[5], 1000));
        CHECK(is_int(r->items[6], 123));
        CHECK(is_int(r->items[7], 15));
        CHECK(is_int(r->items[8], 5));
        CHECK(is_int(r->items[9], 0));
        CHECK(is_int(r->items[10], 0));
        CHECK(r->items[11]->kind == CKI_PV_BIGINT);
        bigint_dec(r->items[11], dec, sizeof dec);
        CHECK(!strcmp(dec, "-99999999999999999999999"));
    }
    tp_free(&t);

    /* exact int64 edges and just past them */
    RUN(&t, "(I9223372036854775807\nI-9223372036854775808\nL9223372036854775808L\n"
            "L0x10000000000000000\nt.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 4);
    if (t.pk.root && t.pk.root->n == 4) {
        CHECK(is_int(t.pk.root->items[0], INT64_MAX));
        CHECK(is_int(t.pk.root->items[1], INT64_MIN));
        bigint_dec(t.pk.root->items[2], dec, sizeof dec);
        CHECK(!strcmp(dec, "9223372036854775808"));
        bigint_dec(t.pk.root->items[3], dec, sizeof dec);
        CHECK(!strcmp(dec, "18446744073709551616"));
    }
    tp_free(&t);

    static const char *const bad[] = {"I012\n.", "I1__0\n.", "I_1\n.", "I1_\n.", "I\n.",
                                      "Iabc\n.", "L12LL\n.", "I0x\n.", "I12"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tp_run(&t, bad[i], strlen(bad[i]));
        CHECK(t.st == CK_EFORMAT);
        CHECK(err_has(&t, i + 1 < sizeof bad / sizeof bad[0] ? "is not an integer"
                                                             : "has no newline"));
        tp_free(&t);
    }
}

TEST(pickle_text_int_digit_cap)
{
    bb b = {0};
    tp t;
    bb_str(&b, "I");
    for (int i = 0; i < 4301; i++) bb_str(&b, "7");
    bb_str(&b, "\n.");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_ELIMIT && err_has(&t, "integer literal of 4301 digits exceeds 4300"));
    tp_free(&t);
    /* 4300 digits are fine and exact */
    b.n = 0;
    bb_str(&b, "L");
    for (int i = 0; i < 4300; i++) bb_str(&b, i ? "0" : "1");
    bb_str(&b, "L\n.");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->kind == CKI_PV_BIGINT);
    /* 10^4299 has 14281 bits; with the sign bit that is 1786 bytes */
    CHECK(t.pk.root && t.pk.root->u.s.len == 1786);
    tp_free(&t);
    /* hex literals have no digit cap and convert in linear time */
    b.n = 0;
    bb_str(&b, "L-0x");
    for (int i = 0; i < 100000; i++) bb_str(&b, "f");
    bb_str(&b, "\n.");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->kind == CKI_PV_BIGINT);
    CHECK(t.pk.root && t.pk.root->u.s.len == 50001);
    tp_free(&t);
    free(b.p);
}

TEST(pickle_text_float)
{
    tp t;
    RUN(&t, "(F1.5\nF-0.0\nFinf\nF-Infinity\nFnan\nF1e400\nF1_0.5\nF1.\nF.5\nF 2.5e-3 \n"
            "F0.1\nt.");
    CHECK(t.st == CK_OK);
    cki_pv *r = t.pk.root;
    CHECK(r && r->n == 11);
    if (r && r->n == 11) {
        CHECK(r->items[0]->u.f == 1.5);
        CHECK(r->items[1]->u.f == 0.0 && __builtin_signbit(r->items[1]->u.f));
        CHECK(__builtin_isinf(r->items[2]->u.f) && r->items[2]->u.f > 0);
        CHECK(__builtin_isinf(r->items[3]->u.f) && r->items[3]->u.f < 0);
        CHECK(__builtin_isnan(r->items[4]->u.f));
        CHECK(__builtin_isinf(r->items[5]->u.f));
        CHECK(r->items[6]->u.f == 10.5);
        CHECK(r->items[7]->u.f == 1.0);
        CHECK(r->items[8]->u.f == 0.5);
        CHECK(r->items[9]->u.f == 2.5e-3);
        CHECK(r->items[10]->u.f == 0.1);
        for (int i = 0; i < 11; i++) CHECK(r->items[i]->kind == CKI_PV_FLOAT);
    }
    tp_free(&t);
    static const char *const bad[] = {"Fabc\n.", "F1e\n.", "F\n.", "F.\n.", "F1_\n.",
                                      "F0x1p3\n.", "F1.5.2\n.", "F1e5e5\n.", "F--1\n."};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tp_run(&t, bad[i], strlen(bad[i]));
        CHECK(t.st == CK_EFORMAT && err_has(&t, "opcode 0x46 (FLOAT) at byte 0: text of"));
        tp_free(&t);
    }
}

/* ---- strings --------------------------------------------------------------- */

TEST(pickle_string_escapes)
{
    tp t;
    RUN(&t, "(S'a\\nb\\x41\\101\\q\\\\\\''\nS\"it's\"\nS'\\xff'\nS''\nS'\\777'\n"
            "S'\\\"\\b\\f\\t\\r\\v\\a\\7\\08'\nt.");
    CHECK(t.st == CK_OK);
    cki_pv *r = t.pk.root;
    CHECK(r && r->n == 6);
    if (r && r->n == 6) {
        CHECK(is_bytes(r->items[5], CKI_PV_STR, "\"\b\f\t\r\v\a\a\0" "8", 10));
        CHECK(is_bytes(r->items[0], CKI_PV_STR, "a\nbAA\\q\\'", 9));
        CHECK(is_bytes(r->items[1], CKI_PV_STR, "it's", 4));
        CHECK(is_bytes(r->items[2], CKI_PV_BYTES, "\xff", 1)); /* not UTF-8: bytes */
        CHECK(is_bytes(r->items[3], CKI_PV_STR, "", 0));
        CHECK(is_bytes(r->items[4], CKI_PV_BYTES, "\xff", 1)); /* octal wraps like Python */
    }
    tp_free(&t);
    RUN(&t, "Sabc\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "must be quoted"));
    tp_free(&t);
    RUN(&t, "S'abc\"\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "must be quoted"));
    tp_free(&t);
    RUN(&t, "S'\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "must be quoted"));
    tp_free(&t);
    RUN(&t, "S'\\x4'\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "invalid \\x escape"));
    tp_free(&t);
    RUN(&t, "S'abc\\'\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "trailing backslash"));
    tp_free(&t);
}

TEST(pickle_unicode_raw_escape)
{
    tp t;
    /* Latin-1 byte, \u, \U, a backslash before something else, an escaped
     * backslash pair, a lone surrogate (kept as its 3-byte form) */
    RUN(&t, "Vcaf\xe9 \\u20ac \\U0001f600 \\x \\\\u0041 \\ud800\n.");
    CHECK(t.st == CK_OK);
    CHECK(is_bytes(t.pk.root, CKI_PV_STR,
                   "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \\x \\\\u0041 \xed\xa0\x80", 29));
    tp_free(&t);
    RUN(&t, "V\\u12\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "truncated \\u escape"));
    tp_free(&t);
    RUN(&t, "V\\U00110000\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "beyond U+10FFFF"));
    tp_free(&t);
    RUN(&t, "Vend\\\n.");
    CHECK(t.st == CK_OK && is_bytes(t.pk.root, CKI_PV_STR, "end\\", 4));
    tp_free(&t);
}

TEST(pickle_binunicode_family)
{
    tp t;
    RUN(&t, "(X\x03\0\0\0abc\x8c\x02\xc3\xa9\x8d\x01\0\0\0\0\0\0\0z\x8c\x03\xed\xa0\x80"
            "\x8c\x04\xf0\x9f\x98\x80t.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 5);
    if (t.pk.root && t.pk.root->n == 5) {
        CHECK(is_bytes(t.pk.root->items[4], CKI_PV_STR, "\xf0\x9f\x98\x80", 4));
        CHECK(is_bytes(t.pk.root->items[0], CKI_PV_STR, "abc", 3));
        CHECK(is_bytes(t.pk.root->items[1], CKI_PV_STR, "\xc3\xa9", 2));
        CHECK(is_bytes(t.pk.root->items[2], CKI_PV_STR, "z", 1));
        CHECK(is_bytes(t.pk.root->items[3], CKI_PV_STR, "\xed\xa0\x80", 3)); /* surrogatepass */
    }
    tp_free(&t);
    RUN(&t, "\x8c\x01\xff.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "opcode 0x8c (SHORT_BINUNICODE) at byte 0: string of "
                                            "1 bytes is not valid utf-8"));
    tp_free(&t);
    RUN(&t, "\x8c\x02\xc0\x80."); /* overlong NUL */
    CHECK(t.st == CK_EFORMAT && err_has(&t, "not valid utf-8"));
    tp_free(&t);
    RUN(&t, "X\x10\0\0\0abc.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "string of 16 bytes but only 4 remain"));
    tp_free(&t);
}

TEST(pickle_bytes_family)
{
    tp t;
    RUN(&t, "(B\x02\0\0\0\x01\x02" "C\x01\xff\x8e\x01\0\0\0\0\0\0\0q\x96\x02\0\0\0\0\0\0\0hi"
            "T\x02\0\0\0ok" "U\x01\x80t.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 6);
    if (t.pk.root && t.pk.root->n == 6) {
        cki_pv **it = t.pk.root->items;
        CHECK(is_bytes(it[0], CKI_PV_BYTES, "\x01\x02", 2));
        CHECK(is_bytes(it[1], CKI_PV_BYTES, "\xff", 1));
        CHECK(is_bytes(it[2], CKI_PV_BYTES, "q", 1));
        CHECK(is_bytes(it[3], CKI_PV_BYTES, "hi", 2));
        CHECK(is_bytes(it[4], CKI_PV_STR, "ok", 2));     /* py2 str, UTF-8: text */
        CHECK(is_bytes(it[5], CKI_PV_BYTES, "\x80", 1)); /* py2 str, not UTF-8: bytes */
    }
    tp_free(&t);
    RUN(&t, "T\xfe\xff\xff\xff" "ab.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "negative string length -2"));
    tp_free(&t);
}

/* ---- containers ------------------------------------------------------------ */

TEST(pickle_containers)
{
    tp t;
    /* [1, 2, 3] via EMPTY_LIST APPEND APPENDS; LIST from mark; (); TUPLE1-3;
     * {1: 2} via DICT; {3: 4, 5: 6} via EMPTY_DICT SETITEM SETITEMS;
     * set via EMPTY_SET ADDITEMS; FROZENSET */
    RUN(&t, "(]K\x01" "a(K\x02K\x03" "e(l)K\x01\x85K\x01K\x02\x86K\x01K\x02K\x03\x87"
            "(K\x01K\x02" "d}K\x03K\x04s(K\x05K\x06u\x8f(K\x07K\x08\x90(K\x09\x91t.");
    CHECK(t.st == CK_OK);
    cki_pv *r = t.pk.root;
    CHECK(r && r->kind == CKI_PV_TUPLE && r->n == 10);
    if (r && r->n == 10) {
        cki_pv **it = r->items;
        CHECK(it[0]->kind == CKI_PV_LIST && it[0]->n == 3 && is_int(it[0]->items[2], 3));
        CHECK(it[1]->kind == CKI_PV_LIST && it[1]->n == 0);
        CHECK(it[2]->kind == CKI_PV_TUPLE && it[2]->n == 0);
        CHECK(it[3]->kind == CKI_PV_TUPLE && it[3]->n == 1 && is_int(it[3]->items[0], 1));
        CHECK(it[4]->kind == CKI_PV_TUPLE && it[4]->n == 2 && is_int(it[4]->items[1], 2));
        CHECK(it[5]->kind == CKI_PV_TUPLE && it[5]->n == 3 && is_int(it[5]->items[2], 3));
        CHECK(it[6]->kind == CKI_PV_DICT && it[6]->n == 1 && is_int(it[6]->items[1], 2));
        CHECK(it[7]->kind == CKI_PV_DICT && it[7]->n == 2 && is_int(it[7]->items[0], 3) &&
              is_int(it[7]->items[3], 6));
        CHECK(it[8]->kind == CKI_PV_SET && it[8]->n == 2 && is_int(it[8]->items[1], 8));
        CHECK(it[9]->kind == CKI_PV_FROZENSET && it[9]->n == 1 && is_int(it[9]->items[0], 9));
    }
    tp_free(&t);

    RUN(&t, "(K\x01K\x02K\x03" "d.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "opcode 0x64 (DICT) at byte 7: odd number of values "
                                            "(3)"));
    tp_free(&t);
    RUN(&t, "}(K\x01u.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(SETITEMS) at byte 4: odd number of values (1)"));
    tp_free(&t);
    /* a big list through APPENDS batches keeps every item */
    bb b = {0};
    bb_str(&b, "]");
    for (int batch = 0; batch < 5; batch++) {
        bb_str(&b, "(");
        for (int i = 0; i < 1000; i++) {
            bb_str(&b, "M");
            uint8_t x[2];
            cki_st_le16(x, (uint16_t)(batch * 1000 + i));
            bb_put(&b, x, 2);
        }
        bb_str(&b, "e");
    }
    bb_str(&b, ".");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 5000);
    if (t.pk.root && t.pk.root->n == 5000) {
        int ok = 1;
        for (int i = 0; i < 5000; i++) ok &= is_int(t.pk.root->items[i], i);
        CHECK(ok);
    }
    tp_free(&t);
    free(b.p);
}

TEST(pickle_wrong_targets)
{
    tp t;
    RUN(&t, ")K\x01K\x02s.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "opcode 0x73 (SETITEM) at byte 5: target is a tuple, "
                                            "not a dict"));
    tp_free(&t);
    RUN(&t, "}K\x01" "a.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(APPEND) at byte 3: target is a dict, not a list"));
    tp_free(&t);
    RUN(&t, "(K\x01\x91(K\x02\x90.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(ADDITEMS) at byte 7: target is a frozenset, not a "
                                            "set"));
    tp_free(&t);
    RUN(&t, "K\x01(K\x02" "e.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "target is a int, not a list"));
    tp_free(&t);
}

TEST(pickle_extra_on_opaque_objects)
{
    tp t;
    /* OrderedDict as torch.save writes it: GLOBAL, EMPTY_TUPLE, REDUCE, then
     * SETITEMS and a BUILD with _metadata */
    RUN(&t, "\x80\x02" "ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\0\0\0aK\x01X\x01\0\0\0bK\x02u"
            "X\x01\0\0\0cK\x03s}X\x09\0\0\0_metadatah\x00)Rsb.");
    CHECK(t.st == CK_OK);
    cki_pv *r = t.pk.root;
    CHECK(cki_pv_is_call_of(r, "collections", "OrderedDict"));
    CHECK(r && r->n == 2 && r->items[1]->kind == CKI_PV_TUPLE && r->items[1]->n == 0);
    CHECK(cki_pv_call_args(r) == r->items[1]);
    CHECK(r && cki_pv_extra(r) && cki_pv_extra(r)->kind == CKI_PV_DICT && cki_pv_extra(r)->n == 3);
    CHECK(r && !cki_pv_extra_list(r));
    if (r && cki_pv_extra(r)) {
        CHECK(is_int(cki_pv_dict_get(cki_pv_extra(r), "a"), 1));
        CHECK(is_int(cki_pv_dict_get(cki_pv_extra(r), "b"), 2));
        CHECK(is_int(cki_pv_dict_get(cki_pv_extra(r), "c"), 3));
        CHECK(cki_pv_dict_get(cki_pv_extra(r), "d") == NULL);
        CHECK(cki_pv_extra(r)->off == 50); /* the SETITEMS that created it */
    }
    CHECK(r && cki_pv_state(r) && cki_pv_state(r)->kind == CKI_PV_DICT);
    if (r && cki_pv_state(r)) {
        const cki_pv *md = cki_pv_dict_get(cki_pv_state(r), "_metadata");
        CHECK(cki_pv_is_call_of(md, "collections", "OrderedDict"));
        CHECK(md && md != r); /* a new call of the same memoised global */
        CHECK(md && md->items[0] == r->items[0]);
    }
    CHECK(t.pk.global_count == 1);
    tp_free(&t);

    /* AttributeDict-like: NEWOBJ then SETITEMS and APPENDS; BUILD too */
    RUN(&t, "\x80\x02" "cm\nAD\n)\x81(X\x01\0\0\0kK\x07u(K\x01K\x02" "e}b.");
    CHECK(t.st == CK_OK);
    r = t.pk.root;
    CHECK(r && r->kind == CKI_PV_NEWOBJ && cki_pv_is_call_of(r, "m", "AD"));
    CHECK(r && cki_pv_extra(r) && is_int(cki_pv_dict_get(cki_pv_extra(r), "k"), 7));
    CHECK(r && cki_pv_extra_list(r) && cki_pv_extra_list(r)->kind == CKI_PV_LIST && cki_pv_extra_list(r)->n == 2);
    CHECK(r && cki_pv_state(r) && cki_pv_state(r)->kind == CKI_PV_DICT);
    CHECK(cki_pv_child_count(r) == 5); /* cls, args, state, extra, extra_list */
    tp_free(&t);

    /* ADDITEMS on an opaque set subclass lands in extra_list */
    RUN(&t, "cm\nS\n)R(K\x01\x90.");
    CHECK(t.st == CK_OK && t.pk.root && cki_pv_extra_list(t.pk.root) && cki_pv_extra_list(t.pk.root)->n == 1);
    tp_free(&t);
}

TEST(pickle_dict_duplicates_last_wins)
{
    tp t;
    RUN(&t, "}(X\x01\0\0\0kK\x01X\x01\0\0\0kK\x02u.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 2);
    CHECK(is_int(cki_pv_dict_get(t.pk.root, "k"), 2));
    tp_free(&t);
}

/* ---- memo, marks, frames, protocol ----------------------------------------- */

TEST(pickle_memo_rules)
{
    tp t;
    /* memo holds pointers: a list stored, fetched, appended to, and seen
     * mutated through the first reference */
    RUN(&t, "(]q\x05" "0h\x05K\x01" "a0h\x05K\x02" "at.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 1);
    if (t.pk.root && t.pk.root->n == 1) {
        cki_pv *l = t.pk.root->items[0];
        CHECK(l->kind == CKI_PV_LIST && l->n == 2);
    }
    tp_free(&t);

    /* text PUT/GET, LONG_BINPUT with the largest key, MEMOIZE numbering =
     * number of distinct keys (an overwrite does not count) */
    RUN(&t, "(K\x01p12\nK\x02r\xff\xff\xff\xffK\x03q\x00K\x04q\x00K\x05\x94"
            "g12\nj\xff\xff\xff\xffh\x00h\x03t.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 9);
    if (t.pk.root && t.pk.root->n == 9) {
        cki_pv **it = t.pk.root->items;
        CHECK(it[5] == it[0] && is_int(it[5], 1));
        CHECK(it[6] == it[1] && is_int(it[6], 2));
        CHECK(it[7] == it[3] && is_int(it[7], 4));
        CHECK(it[8] == it[4] && is_int(it[8], 5)); /* MEMOIZE stored under key 3 */
    }
    tp_free(&t);

    RUN(&t, "\x80\x04K\x01h\x05.");
    CHECK(t.st == CK_EFORMAT &&
          err_has(&t, "t.pkl: test: opcode 0x68 (BINGET) at byte 4: memo key 5 was never stored"));
    tp_free(&t);
    RUN(&t, "K\x01p-1\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "negative memo key -1"));
    tp_free(&t);
    RUN(&t, "g-3\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "memo key -3 was never stored"));
    tp_free(&t);
    RUN(&t, "K\x01p99999999999999999999\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "memo key does not fit 64 bits"));
    tp_free(&t);
    RUN(&t, "q\x00.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(BINPUT) at byte 0: stack underflow"));
    tp_free(&t);
    RUN(&t, "K\x01(\x94.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(MEMOIZE) at byte 3: stack underflow: needs 1 values "
                                            "but only 0 lie above the last MARK"));
    tp_free(&t);
}

TEST(pickle_marks_and_fence)
{
    tp t;
    /* POP on an empty fenced stack removes the mark (pickle.py); POP_MARK
     * drops values and mark; DUP duplicates the pointer */
    RUN(&t, "K\x01(0(K\x02K\x03" "12\x86.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->kind == CKI_PV_TUPLE && t.pk.root->n == 2);
    if (t.pk.root && t.pk.root->n == 2) {
        CHECK(t.pk.root->items[0] == t.pk.root->items[1] && is_int(t.pk.root->items[0], 1));
    }
    tp_free(&t);
    /* opcodes cannot pop through a MARK */
    RUN(&t, "cos\nsystem\n(R.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(REDUCE) at byte 12: stack underflow: needs 2 "
                                            "values but only 0 lie above the last MARK"));
    tp_free(&t);
    RUN(&t, "K\x01(K\x02\x86.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(TUPLE2) at byte 5: stack underflow"));
    tp_free(&t);
    RUN(&t, "K\x01t.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "opcode 0x74 (TUPLE) at byte 2: no MARK to pop"));
    tp_free(&t);
    RUN(&t, "1.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(POP_MARK) at byte 0: no MARK to pop"));
    tp_free(&t);
    RUN(&t, "0.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(POP) at byte 0: stack underflow: needs 1 values but "
                                            "the stack holds 0"));
    tp_free(&t);
    RUN(&t, "(.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(STOP) at byte 1: stack underflow"));
    tp_free(&t);
    RUN(&t, ".");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "opcode 0x2e (STOP) at byte 0: stack underflow"));
    tp_free(&t);
    /* leftovers below the result are allowed, like Python */
    RUN(&t, "K\x01(K\x02K\x03.");
    CHECK(t.st == CK_OK && is_int(t.pk.root, 3));
    tp_free(&t);
}

TEST(pickle_frame_proto_stop)
{
    tp t;
    RUN(&t, "\x80\x04\x95\x03\0\0\0\0\0\0\0K\x07.XYZ");
    CHECK(t.st == CK_OK && is_int(t.pk.root, 7) && t.pk.protocol == 4 && t.pk.end == 14);
    tp_free(&t);
    RUN(&t, "\x80\x04\x95\xff\xff\xff\xff\xff\xff\xff\xffK\x07.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "opcode 0x95 (FRAME) at byte 2: frame of "
                                            "18446744073709551615 bytes but only 3 remain"));
    tp_free(&t);
    RUN(&t, "\x80\x04\x95\x03\0\0");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(FRAME) at byte 2: argument needs 8 bytes but only 3 "
                                            "remain"));
    tp_free(&t);
    RUN(&t, "\x80\x06N.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(PROTO) at byte 0: unsupported protocol 6"));
    tp_free(&t);
    RUN(&t, "\x80\x05N.");
    CHECK(t.st == CK_OK && t.pk.protocol == 5);
    tp_free(&t);
    RUN(&t, "NN");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "t.pkl: test: truncated at byte 2: no STOP before end "
                                            "of data"));
    tp_free(&t);
    RUN(&t, "");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "truncated at byte 0"));
    tp_free(&t);
}

TEST(pickle_base_offset_in_messages)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_arena ar;
    cki_pickle pk;
    cki_arena_init(&ar, ctx);
    CHECK(cki_pickle_run(ctx, &ar, (const uint8_t *)"N\xff", 2, "m.pt", "legacy stream pickle 4",
                         1000, &pk) == CK_EFORMAT);
    CHECK(!strcmp(ck_errmsg(ctx), "m.pt: legacy stream pickle 4: opcode 0xff (unknown) at byte "
                                  "1001: not a pickle opcode"));
    CHECK(pk.root == NULL);
    CHECK(cki_pickle_run(ctx, &ar, (const uint8_t *)"K\x05.", 3, "m.pt", "p", 1000, &pk) == CK_OK);
    CHECK(pk.root && pk.root->off == 1000 && pk.end == 3);
    cki_arena_free(&ar);
    ck_ctx_free(ctx);
}

TEST(pickle_refused_opcodes)
{
    tp t;
    RUN(&t, "\x80\x05\x97.");
    CHECK(t.st == CK_EUNSUPPORTED && err_has(&t, "opcode 0x97 (NEXT_BUFFER) at byte 2: "
                                                 "out-of-band buffers"));
    tp_free(&t);
    RUN(&t, "\x80\x05" "C\x01x\x98.");
    CHECK(t.st == CK_EUNSUPPORTED && err_has(&t, "opcode 0x98 (READONLY_BUFFER) at byte 5"));
    tp_free(&t);
    RUN(&t, "\x80\x02\x82\x01.");
    CHECK(t.st == CK_EUNSUPPORTED && err_has(&t, "opcode 0x82 (EXT1) at byte 2: copyreg "
                                                 "extension codes"));
    tp_free(&t);
    RUN(&t, "\x83\x01\x00.");
    CHECK(t.st == CK_EUNSUPPORTED && err_has(&t, "(EXT2)"));
    tp_free(&t);
    RUN(&t, "\x84\x01\0\0\0.");
    CHECK(t.st == CK_EUNSUPPORTED && err_has(&t, "(EXT4)"));
    tp_free(&t);
    /* every byte that is not an opcode is refused by value and offset */
    static const char known[] = "(.012FIJKLMNPQRSTUVXabcd}eghijl]opqrst)uGBC";
    for (int c = 0; c < 256; c++) {
        uint8_t prog[2] = {(uint8_t)c, '.'};
        char want[64];
        if ((c >= 0x80 && c <= 0x98) || (c && strchr(known, c))) continue;
        tp_run(&t, prog, 2);
        snprintf(want, sizeof want, "opcode 0x%02x (unknown) at byte 0: not a pickle opcode", c);
        CHECK(t.st == CK_EFORMAT && err_has(&t, want));
        tp_free(&t);
    }
}

/* ---- globals and objects ----------------------------------------------------- */

static int has_global(const cki_pickle *pk, const char *mod, const char *name, int resolved)
{
    for (size_t i = 0; i < pk->global_count; i++)
        if (!strcmp(pk->globals[i].module, mod) && !strcmp(pk->globals[i].name, name) &&
            pk->globals[i].resolved == resolved)
            return 1;
    return 0;
}

TEST(pickle_globals_and_mapping)
{
    tp t;
    RUN(&t, "(c__builtin__\neval\ncexceptions\nValueError\nccopy_reg\n_reconstructor\n"
            "ctorch.tensor\n_rebuild_from_type_v2\nctorch\nFloatStorage\nt.");
    CHECK(t.st == CK_OK && t.pk.global_count == 5);
    CHECK(has_global(&t.pk, "builtins", "eval", 1));
    CHECK(has_global(&t.pk, "builtins", "ValueError", 1));
    CHECK(has_global(&t.pk, "copyreg", "_reconstructor", 1));
    CHECK(has_global(&t.pk, "torch._tensor", "_rebuild_from_type_v2", 1));
    CHECK(has_global(&t.pk, "torch", "FloatStorage", 1));
    CHECK(t.pk.globals[0].off == 1 && t.pk.globals[1].off == 19);
    CHECK(t.pk.root && cki_pv_is_global(t.pk.root->items[0], "builtins", "eval"));
    CHECK(t.pk.root && cki_pv_is_global(t.pk.root->items[3], "torch._tensor",
                                        "_rebuild_from_type_v2"));
    tp_free(&t);

    /* STACK_GLOBAL with strings (mapped too), then with a non-string */
    RUN(&t, "\x80\x04\x8c\x0b__builtin__\x8c\x04" "exec\x93K\x01\x8c\x01x\x93\x86.");
    CHECK(t.st == CK_OK && t.pk.global_count == 2);
    CHECK(has_global(&t.pk, "builtins", "exec", 1));
    CHECK(has_global(&t.pk, "?", "?", 0));
    CHECK(t.pk.root && cki_pv_is_global(t.pk.root->items[1], "?", "?"));
    tp_free(&t);
    /* bytes and strings with NUL are not plain strings either */
    RUN(&t, "C\x02os\x8c\x06system\x93.");
    CHECK(t.st == CK_OK && has_global(&t.pk, "?", "?", 0) && t.pk.global_count == 1);
    tp_free(&t);
    RUN(&t, "\x8c\x03os\x00\x8c\x06system\x93.");
    CHECK(t.st == CK_OK && has_global(&t.pk, "?", "?", 0));
    tp_free(&t);
    RUN(&t, "\x8c\x02os\x93.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(STACK_GLOBAL) at byte 4: stack underflow"));
    tp_free(&t);

    RUN(&t, "cos\x00x\nsystem\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(GLOBAL) at byte 0: global module contains a nul"));
    tp_free(&t);
    RUN(&t, "cos\nsys\xfftem\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "global name is not valid utf-8"));
    tp_free(&t);
    RUN(&t, "cos\n");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(GLOBAL) at byte 0: text argument has no newline"));
    tp_free(&t);
}

TEST(pickle_calls_inst_obj)
{
    tp t;
    /* REDUCE, NEWOBJ, NEWOBJ_EX shapes */
    RUN(&t, "(cm\nf\nK\x01\x85Rcm\nC\n)\x81" "cm\nD\n)}\x92t.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 3);
    if (t.pk.root && t.pk.root->n == 3) {
        cki_pv **it = t.pk.root->items;
        CHECK(it[0]->kind == CKI_PV_REDUCE && it[0]->n == 2 && cki_pv_is_call_of(it[0], "m", "f"));
        CHECK(is_int(cki_pv_call_args(it[0])->items[0], 1));
        CHECK(it[1]->kind == CKI_PV_NEWOBJ && it[1]->n == 2 && cki_pv_is_call_of(it[1], "m", "C"));
        CHECK(it[2]->kind == CKI_PV_NEWOBJ && it[2]->n == 3 && it[2]->items[2]->kind == CKI_PV_DICT);
        CHECK(!cki_pv_is_call_of(it[2], "m", "C"));
    }
    tp_free(&t);

    /* REDUCE whose args are not a tuple: kept, but call_args is NULL */
    RUN(&t, "cm\nf\nK\x01R.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->kind == CKI_PV_REDUCE);
    CHECK(cki_pv_call_args(t.pk.root) == NULL);
    tp_free(&t);

    /* INST: class from the text lines, args above the mark; OBJ: class first */
    RUN(&t, "((K\x01K\x02i__builtin__\ncomplex\n(cm\nK\nK\x03o(cm\nE\nol.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->kind == CKI_PV_LIST && t.pk.root->n == 3);
    if (t.pk.root && t.pk.root->n == 3) {
        cki_pv **it = t.pk.root->items;
        CHECK(it[0]->kind == CKI_PV_NEWOBJ && cki_pv_is_call_of(it[0], "builtins", "complex"));
        CHECK(cki_pv_call_args(it[0]) && cki_pv_call_args(it[0])->n == 2);
        CHECK(it[1]->kind == CKI_PV_NEWOBJ && cki_pv_is_call_of(it[1], "m", "K"));
        CHECK(cki_pv_call_args(it[1])->n == 1 && is_int(cki_pv_call_args(it[1])->items[0], 3));
        CHECK(cki_pv_is_call_of(it[2], "m", "E") && cki_pv_call_args(it[2])->n == 0);
    }
    CHECK(has_global(&t.pk, "builtins", "complex", 1) && t.pk.global_count == 3);
    tp_free(&t);
    RUN(&t, "(o.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(OBJ) at byte 1: no class after the MARK"));
    tp_free(&t);
    RUN(&t, "im\nC\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(INST) at byte 0: no MARK to pop"));
    tp_free(&t);
    RUN(&t, "(im\xc3\xa9\nC\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "global module is not ascii"));
    tp_free(&t);
}

TEST(pickle_build_state_chain)
{
    tp t;
    /* one object, BUILD three times; the first state dict is shared */
    RUN(&t, "cm\nC\n)\x81}q\x00" "b}bh\x00" "b.");
    CHECK(t.st == CK_OK && t.pk.root);
    cki_pv *r = t.pk.root;
    if (r) {
        cki_pv *first = NULL;
        CHECK(cki_pv_state(r) && cki_pv_state(r)->kind == CKI_PV_DICT);
        const cki_pv *h1 = cki_pv_state_prev(r), *h2 = h1 ? cki_pv_state_prev(h1) : NULL;
        CHECK(h1 && h1->kind == CKI_PV_NONE && h1->n == 0);
        if (h1) {
            CHECK(cki_pv_state(h1) && cki_pv_state(h1)->kind == CKI_PV_DICT);
            CHECK(h2 && cki_pv_state(h2));
            if (h2) first = cki_pv_state(h2);
            CHECK(h2 && !cki_pv_state_prev(h2));
        }
        CHECK(first && first == cki_pv_state(r)); /* BUILD 1 and 3 used memo key 0 */
        CHECK(first && !cki_pv_state(first) && !cki_pv_state_prev(first)); /* state nodes untouched */
    }
    tp_free(&t);
    RUN(&t, "}b.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(BUILD) at byte 1: stack underflow"));
    tp_free(&t);
}

TEST(pickle_persistent_ids)
{
    tp t;
    /* torch's storage tuple through BINPERSID, and a text PERSID */
    RUN(&t, "((X\x07\0\0\0storagectorch\nFloatStorage\nX\x01\0\0\0" "0X\x03\0\0\0cpuK\x06tQ"
            "P12345\nl.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 2);
    if (t.pk.root && t.pk.root->n == 2) {
        cki_pv *p = t.pk.root->items[0];
        CHECK(p->kind == CKI_PV_PERSID && p->n == 1 && p->items[0]->kind == CKI_PV_TUPLE);
        CHECK(cki_pv_is_str(p->items[0]->items[0], "storage"));
        CHECK(cki_pv_is_global(p->items[0]->items[1], "torch", "FloatStorage"));
        CHECK(is_int(p->items[0]->items[4], 6));
        p = t.pk.root->items[1];
        CHECK(p->kind == CKI_PV_PERSID && cki_pv_is_str(p->items[0], "12345"));
    }
    tp_free(&t);
    RUN(&t, "Pab\xe9\n.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(PERSID) at byte 0: persistent id is not ascii"));
    tp_free(&t);
    RUN(&t, "Q.");
    CHECK(t.st == CK_EFORMAT && err_has(&t, "(BINPERSID) at byte 0: stack underflow"));
    tp_free(&t);
}

/* ---- every opcode, by table -------------------------------------------------- */

typedef struct opcase {
    uint8_t op;
    const char *prog;
    size_t len;
    ck_status want;
} opcase;

#define OC(op, s, st) {(op), (s), sizeof(s) - 1, (st)}

static const opcase op_cases[] = {
    OC('(', "(K\x01t.", CK_OK),          OC('.', "N.", CK_OK),
    OC('0', "NN0.", CK_OK),              OC('1', "N(N1.", CK_OK),
    OC('2', "N2\x86.", CK_OK),           OC('F', "F2.5\n.", CK_OK),
    OC('I', "I7\n.", CK_OK),             OC('J', "J\x01\0\0\0.", CK_OK),
    OC('K', "K\x01.", CK_OK),            OC('L', "L7L\n.", CK_OK),
    OC('M', "M\x01\0.", CK_OK),          OC('N', "N.", CK_OK),
    OC('P', "Pid\n.", CK_OK),            OC('Q', "NQ.", CK_OK),
    OC('R', "cm\nf\n)R.", CK_OK),        OC('S', "S'x'\n.", CK_OK),
    OC('T', "T\x01\0\0\0x.", CK_OK),     OC('U', "U\x01x.", CK_OK),
    OC('V', "Vx\n.", CK_OK),             OC('X', "X\x01\0\0\0x.", CK_OK),
    OC('a', "]Na.", CK_OK),              OC('b', "cm\nf\n)R}b.", CK_OK),
    OC('c', "cm\nf\n.", CK_OK),          OC('d', "(NNd.", CK_OK),
    OC('}', "}.", CK_OK),                OC('e', "](Ne.", CK_OK),
    OC('g', "Np0\n0g0\n.", CK_OK),       OC('h', "Nq\x00" "0h\x00.", CK_OK),
    OC('i', "(im\nf\n.", CK_OK),         OC('j', "Nr\0\0\0\0" "0j\0\0\0\0.", CK_OK),
    OC('l', "(Nl.", CK_OK),              OC(']', "].", CK_OK),
    OC('o', "(cm\nf\no.", CK_OK),        OC('p', "Np7\n.", CK_OK),
    OC('q', "Nq\x07.", CK_OK),           OC('r', "Nr\x07\0\0\0.", CK_OK),
    OC('s', "}NNs.", CK_OK),             OC('t', "(Nt.", CK_OK),
    OC(')', ").", CK_OK),                OC('u', "}(NNu.", CK_OK),
    OC('G', "G\0\0\0\0\0\0\0\0.", CK_OK), OC('B', "B\x01\0\0\0x.", CK_OK),
    OC('C', "C\x01x.", CK_OK),           OC(0x80, "\x80\x02N.", CK_OK),
    OC(0x81, "cm\nf\n)\x81.", CK_OK),    OC(0x82, "\x82\x01.", CK_EUNSUPPORTED),
    OC(0x83, "\x83\x01\0.", CK_EUNSUPPORTED), OC(0x84, "\x84\x01\0\0\0.", CK_EUNSUPPORTED),
    OC(0x85, "N\x85.", CK_OK),           OC(0x86, "NN\x86.", CK_OK),
    OC(0x87, "NNN\x87.", CK_OK),         OC(0x88, "\x88.", CK_OK),
    OC(0x89, "\x89.", CK_OK),            OC(0x8a, "\x8a\x01\x01.", CK_OK),
    OC(0x8b, "\x8b\x01\0\0\0\x01.", CK_OK), OC(0x8c, "\x8c\x01x.", CK_OK),
    OC(0x8d, "\x8d\x01\0\0\0\0\0\0\0x.", CK_OK), OC(0x8e, "\x8e\x01\0\0\0\0\0\0\0x.", CK_OK),
    OC(0x8f, "\x8f.", CK_OK),            OC(0x90, "\x8f(N\x90.", CK_OK),
    OC(0x91, "(N\x91.", CK_OK),          OC(0x92, "cm\nf\n)}\x92.", CK_OK),
    OC(0x93, "\x8c\x01m\x8c\x01" "f\x93.", CK_OK), OC(0x94, "N\x94.", CK_OK),
    OC(0x95, "\x95\x02\0\0\0\0\0\0\0N.", CK_OK), OC(0x96, "\x96\x01\0\0\0\0\0\0\0x.", CK_OK),
    OC(0x97, "\x97.", CK_EUNSUPPORTED),  OC(0x98, "N\x98.", CK_EUNSUPPORTED),
};

TEST(pickle_every_opcode)
{
    /* the 68 opcodes of protocols 0-5 (pickletools.opcodes) */
    static const uint8_t all[] = "(.012FIJKLMNPQRSTUVXabcd}eghijl]opqrst)uGBC"
                                 "\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e"
                                 "\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98";
    size_t nall = sizeof all - 1;
    CHECK(nall == 68);
    for (size_t i = 0; i < nall; i++) {
        int found = 0;
        for (size_t k = 0; k < sizeof op_cases / sizeof op_cases[0]; k++) {
            const opcase *c = &op_cases[k];
            tp t;
            if (c->op != all[i]) continue;
            found = 1;
            CHECK(memchr(c->prog, c->op, c->len) != NULL);
            tp_run(&t, c->prog, c->len);
            if (t.st != c->want)
                fprintf(stderr, "  opcode 0x%02x: status %d, %s\n", c->op, t.st, ck_errmsg(t.ctx));
            CHECK(t.st == c->want);
            if (c->want == CK_OK) CHECK(t.pk.root != NULL && t.pk.end == c->len);
            tp_free(&t);
        }
        if (!found) fprintf(stderr, "  no case for opcode 0x%02x\n", all[i]);
        CHECK(found);
    }
}

/* ---- cycles ------------------------------------------------------------------ */

/* counts nodes reachable from V, each once (visited set by linear list) */
static size_t count_reachable(const cki_pv *root)
{
    const cki_pv **seen = NULL, **todo = NULL;
    size_t nseen = 0, ntodo = 0, cap = 0;
    if (!root) return 0;
    cap = 64;
    seen = malloc(cap * sizeof *seen);
    todo = malloc(cap * sizeof *todo);
    todo[ntodo++] = root;
    seen[nseen++] = root;
    while (ntodo) {
        const cki_pv *v = todo[--ntodo];
        for (size_t i = 0; i < cki_pv_child_count(v); i++) {
            const cki_pv *c = cki_pv_child(v, i);
            size_t k;
            for (k = 0; k < nseen && seen[k] != c; k++) {
            }
            if (k < nseen) continue;
            if (nseen == cap) {
                cap *= 2;
                seen = realloc(seen, cap * sizeof *seen);
                todo = realloc(todo, cap * sizeof *todo);
            }
            seen[nseen++] = c;
            todo[ntodo++] = c;
        }
    }
    free(seen);
    free(todo);
    return nseen;
}

TEST(pickle_cycles)
{
    tp t;
    /* a list containing itself */
    RUN(&t, "]q\x00h\x00" "a.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 1 && t.pk.root->items[0] == t.pk.root);
    CHECK(t.pk.root && t.pk.root->height == 1);
    CHECK(count_reachable(t.pk.root) == 1);
    tp_free(&t);
    /* a dict whose value is itself; an object that is its own state; a
     * two-node cycle list -> dict -> list */
    RUN(&t, "(}q\x00X\x01\0\0\0sh\x00scm\nC\n)Rq\x01h\x01" "b]q\x02}q\x03X\x01\0\0\0kh\x02s"
            "at.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 3);
    if (t.pk.root && t.pk.root->n == 3) {
        cki_pv **it = t.pk.root->items;
        CHECK(it[0]->items[1] == it[0]);
        CHECK(cki_pv_state(it[1]) == it[1]);
        CHECK(it[2]->kind == CKI_PV_LIST && it[2]->items[0]->kind == CKI_PV_DICT);
        CHECK(it[2]->items[0]->items[1] == it[2]);
        CHECK(it[2]->height == 3 && it[2]->items[0]->height == 2 && t.pk.root->height == 4);
    }
    CHECK(count_reachable(t.pk.root) == 9);
    tp_free(&t);
}

/* ---- limits and memory ------------------------------------------------------- */

TEST(pickle_depth_limit)
{
    bb b = {0};
    tp t;
    bb_str(&b, "N");
    for (int i = 0; i < 2000; i++) bb_str(&b, "\x85");
    bb_str(&b, ".");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_ELIMIT && err_has(&t, "opcode 0x2e (STOP) at byte 2001: values nest more "
                                           "than 1000 levels deep"));
    CHECK(t.pk.root == NULL);
    tp_free(&t);

    b.n = 0;
    bb_str(&b, "N");
    for (int i = 0; i < 999; i++) bb_str(&b, "\x85");
    bb_str(&b, ".");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->height == 1000);
    tp_free(&t);

    /* depth grown AFTER containment: lists A0..A1499 built flat and memoised,
     * then A[i+1] appended to A[i] in order; no construction-time counter
     * would see it, the walk at STOP does */
    b.n = 0;
    for (uint32_t i = 0; i < 1500; i++) {
        bb_str(&b, "]r");
        bb_le32(&b, i);
        bb_str(&b, "0");
    }
    for (uint32_t i = 0; i + 1 < 1500; i++) {
        bb_str(&b, "j");
        bb_le32(&b, i);
        bb_str(&b, "j");
        bb_le32(&b, i + 1);
        bb_str(&b, "a0");
    }
    bb_str(&b, "j");
    bb_le32(&b, 0);
    bb_str(&b, ".");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_ELIMIT && err_has(&t, "values nest more than 1000 levels deep"));
    tp_free(&t);
    /* a deep subtree finished first and reached again through a long path:
     * the path on the walk's stack stays short, the height says 1100 */
    b.n = 0;
    bb_str(&b, "N");
    for (int i = 0; i < 599; i++) bb_str(&b, "\x85");
    BB_LIT(&b, "q\x00h\x00");
    for (int i = 0; i < 500; i++) bb_str(&b, "\x85");
    bb_str(&b, "\x86.");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_ELIMIT && err_has(&t, "values nest 1001 levels deep, more than the limit of "
                                           "1000"));
    tp_free(&t);
    b.n = 0;
    for (uint32_t i = 0; i < 1500; i++) {
        bb_str(&b, "]r");
        bb_le32(&b, i);
        bb_str(&b, "0");
    }
    for (uint32_t i = 0; i + 1 < 1500; i++) {
        bb_str(&b, "j");
        bb_le32(&b, i);
        bb_str(&b, "j");
        bb_le32(&b, i + 1);
        bb_str(&b, "a0");
    }
    bb_str(&b, "j");
    bb_le32(&b, 0);
    bb_str(&b, ".");
    /* the same with a raised limit passes, and the height is exact */
    {
        ck_ctx *ctx = ck_ctx_new();
        cki_arena ar;
        cki_pickle pk;
        cki_arena_init(&ar, ctx);
        ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_DEPTH, 2000);
        CHECK(cki_pickle_run(ctx, &ar, b.p, b.n, "d.pkl", "p", 0, &pk) == CK_OK);
        CHECK(pk.root && pk.root->height == 1500);
        ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_DEPTH, 10);
        CHECK(cki_pickle_run(ctx, &ar, (const uint8_t *)"]]]]]]]]]]]]aaaaaaaaaaa.", 24, "d.pkl",
                             "p", 0, &pk) == CK_ELIMIT);
        CHECK(cki_pickle_run(ctx, &ar, (const uint8_t *)"]]]]]]]]]]aaaaaaaaa.", 20, "d.pkl", "p",
                             0, &pk) == CK_OK);
        cki_arena_free(&ar);
        ck_ctx_free(ctx);
    }
    free(b.p);
}

TEST(pickle_stack_limit)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_arena ar;
    cki_pickle pk;
    bb b = {0};
    cki_arena_init(&ar, ctx);
    ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_STACK, 100);
    for (int i = 0; i < 100; i++) bb_str(&b, "N");
    bb_str(&b, ".");
    CHECK(cki_pickle_run(ctx, &ar, b.p, b.n, "s.pkl", "p", 0, &pk) == CK_OK);
    b.n = 0;
    for (int i = 0; i < 101; i++) bb_str(&b, "N");
    bb_str(&b, ".");
    CHECK(cki_pickle_run(ctx, &ar, b.p, b.n, "s.pkl", "p", 0, &pk) == CK_ELIMIT);
    CHECK(strstr(ck_errmsg(ctx), "opcode 0x4e (NONE) at byte 100: stack of 100 values and 0 "
                                 "marks reaches the limit of 100"));
    /* marks count against the same limit */
    b.n = 0;
    for (int i = 0; i < 60; i++) bb_str(&b, "N(");
    bb_str(&b, ".");
    CHECK(cki_pickle_run(ctx, &ar, b.p, b.n, "s.pkl", "p", 0, &pk) == CK_ELIMIT);
    CHECK(strstr(ck_errmsg(ctx), "stack of 50 values and 50 marks"));
    cki_arena_free(&ar);
    ck_ctx_free(ctx);
    free(b.p);
}

TEST(pickle_memo_million_entries)
{
    bb b = {0};
    tp t;
    bb_str(&b, "N");
    for (uint32_t i = 0; i < 1000000; i++) {
        bb_str(&b, "r");
        bb_le32(&b, i * 2654435761u); /* scattered keys */
    }
    bb_str(&b, "j");
    bb_le32(&b, 999999u * 2654435761u);
    bb_str(&b, ".");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->kind == CKI_PV_NONE);
    /* hash map: bounded by a small multiple of the input (5 MB here) */
    CHECK(t.ctx->mem_peak < 16 * b.n);
    tp_free(&t);
    {
        ck_ctx *ctx = ck_ctx_new();
        cki_arena ar;
        cki_pickle pk;
        cki_arena_init(&ar, ctx);
        ck_ctx_set_limit(ctx, CK_LIMIT_PICKLE_MEMO, 1000);
        CHECK(cki_pickle_run(ctx, &ar, b.p, b.n, "m.pkl", "p", 0, &pk) == CK_ELIMIT);
        CHECK(strstr(ck_errmsg(ctx), "opcode 0x72 (LONG_BINPUT) at byte 5001: memo of 1000 "
                                     "entries reaches the limit of 1000"));
        cki_arena_free(&ar);
        ck_ctx_free(ctx);
    }
    free(b.p);
    /* one huge key costs one slot, not an array sized by the key */
    RUN(&t, "Nr\xff\xff\xff\xff" "0j\xff\xff\xff\xff.");
    CHECK(t.st == CK_OK && t.ctx->mem_peak < 128 * 1024);
    tp_free(&t);
    RUN(&t, "Np18446744073709551615\n.");
    CHECK(t.st == CK_EFORMAT); /* beyond int64: refused, not allocated */
    tp_free(&t);
}

TEST(pickle_huge_lengths_tiny_input)
{
    static const struct {
        const char *prog;
        size_t len;
        const char *msg;
    } cases[] = {
        {"X\xff\xff\xff\xff", 5, "(BINUNICODE) at byte 0: string of 4294967295 bytes but only 0"},
        {"\x8d\xff\xff\xff\xff\xff\xff\xff\xff.", 10, "string of 18446744073709551615 bytes but "
                                                      "only 1 remain"},
        {"B\xff\xff\xff\x7f..", 7, "bytes object of 2147483647 bytes but only 2 remain"},
        {"\x8e\0\0\0\0\0\0\0\x80", 9, "bytes object of 9223372036854775808 bytes but only 0"},
        {"\x96\xff\xff\xff\xff\xff\xff\xff\xff", 9, "(BYTEARRAY8) at byte 0: bytes object of"},
        {"T\xff\xff\xff\x7f", 5, "(BINSTRING) at byte 0: string of 2147483647 bytes but only 0"},
        {"\x8b\xff\xff\xff\x7f", 5, "integer of 2147483647 bytes but only 0 remain"},
        {"U\xff", 2, "string of 255 bytes but only 0 remain"},
        {"C\x05" "abc", 5, "bytes object of 5 bytes but only 3 remain"},
        {"\x95\0\0\0\0\0\0\0\x01", 9, "frame of 72057594037927936 bytes but only 0 remain"},
        {"J\x01\x02", 3, "(BININT) at byte 0: argument needs 4 bytes but only 2 remain"},
        {"G\x01", 2, "(BINFLOAT) at byte 0: argument needs 8 bytes but only 1 remain"},
        {"\x80", 1, "(PROTO) at byte 0: argument needs 1 bytes but only 0 remain"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tp t;
        tp_run(&t, cases[i].prog, cases[i].len);
        CHECK(t.st == CK_EFORMAT && err_has(&t, cases[i].msg));
        CHECK(t.ctx->mem_peak < 128 * 1024); /* nothing sized by the claimed length */
        tp_free(&t);
    }
}

TEST(pickle_billion_laughs_stays_small)
{
    bb b = {0};
    tp t;
    /* level 0: a list [None]; level k: a list of 10 references to level k-1;
     * 30 levels: 10^30 logical leaves */
    BB_LIT(&b, "(Nlq\x00");
    for (int level = 0; level < 30; level++) {
        bb_str(&b, "(");
        for (int i = 0; i < 10; i++) BB_LIT(&b, "h\x00");
        BB_LIT(&b, "lq\x00");
    }
    bb_str(&b, ".");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 10 && t.pk.root->height == 32);
    CHECK(t.ctx->mem_peak < 256 * 1024);
    tp_free(&t);

    /* DUP of a big list 200000 times: pointers, never copies */
    b.n = 0;
    bb_str(&b, "](");
    for (int i = 0; i < 1000; i++) bb_str(&b, "N");
    bb_str(&b, "e");
    for (int i = 0; i < 200000; i++) bb_str(&b, "2");
    bb_str(&b, ".");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 1000);
    CHECK(t.ctx->mem_peak < 32 * b.n);
    tp_free(&t);

    /* TUPLE of 100000 GETs of one huge string: pointers too */
    b.n = 0;
    bb_str(&b, "B");
    bb_le32(&b, 100000);
    for (int i = 0; i < 100000; i++) bb_str(&b, "x");
    bb_str(&b, "q\x01(");
    for (int i = 0; i < 100000; i++) bb_str(&b, "h\x01");
    bb_str(&b, "t.");
    tp_run(&t, b.p, b.n);
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 100000);
    CHECK(t.ctx->mem_peak < 16 * b.n);
    tp_free(&t);
    free(b.p);
}

/* ---- truncation -------------------------------------------------------------- */

/* Every strict prefix of a pickle whose only STOP is its last byte must fail
 * cleanly with a message; returns the number of prefixes that did not. */
static int truncations_fail(const uint8_t *p, size_t n, size_t step)
{
    int bad = 0;
    for (size_t k = 0; k < n; k += step) {
        tp t;
        uint8_t *copy = malloc(k ? k : 1); /* exact-size copy: ASan sees overreads */
        memcpy(copy, p, k);
        tp_run(&t, copy, k);
        if (t.st == CK_OK || !ck_errmsg(t.ctx)[0] || t.pk.root) {
            fprintf(stderr, "  prefix of %zu bytes: status %d\n", k, t.st);
            bad++;
        }
        tp_free(&t);
        free(copy);
    }
    return bad;
}

static const char rich_pickle[] =
    "\x80\x04\x95\x80\0\0\0\0\0\0\0" /* PROTO 4, FRAME */
    "ccollections\nOrderedDict\nq\x00)R" /* GLOBAL, BINPUT, EMPTY_TUPLE, REDUCE */
    "(X\x01\0\0\0aK\x01\x8c\x01" "bJ\xff\xff\xff\xff\x8c\x01" "cG\x3f\xf0\0\0\0\0\0\0"
    "\x8c\x01" "d\x8a\x09\0\0\0\0\0\0\0\0\x01\x8c\x01" "e(I01\nL5L\nF2.5\nS'x\\n'\nV\\u20ac\nt"
    "u" /* SETITEMS */
    "}\x94(\x8c\x01" "f]\x94(NN\x88\x89" "e\x8c\x01g\x8f(K\x01\x90" "ub" /* BUILD */
    "\x8c\x05torch\x8c\x04Size\x93)\x85R" /* STACK_GLOBAL, TUPLE1 */
    "2\x86" "C\x01z\x87.";

TEST(pickle_truncation_every_byte)
{
    tp t;
    RUN(&t, rich_pickle);
    CHECK(t.st == CK_OK && t.pk.end == sizeof rich_pickle - 1);
    if (t.st) fprintf(stderr, "  %s\n", ck_errmsg(t.ctx));
    tp_free(&t);
    CHECK(truncations_fail((const uint8_t *)rich_pickle, sizeof rich_pickle - 1, 1) == 0);
}

/* ---- the real fixtures ------------------------------------------------------- */

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *p = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        p = malloc((size_t)n + 1);
        if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
            free(p);
            p = NULL;
        }
        *len = (size_t)n;
    }
    fclose(f);
    return p;
}

/* The import list MANIFEST.tsv records for REL after MARKER (e.g.
 * "imports (GLOBAL/STACK_GLOBAL): "), as "module.name" entries with
 * __builtin__ written builtins and ?STACK_GLOBAL written ?.?; returns the
 * count (0 for "(none)"), -1 if the manifest has no such entry. */
static int manifest_imports(const char *rel, const char *marker, char out[][160], int cap)
{
    size_t mlen;
    char *man = (char *)read_file(T_FIXTURES "/MANIFEST.tsv", &mlen);
    char *line, *s, *e;
    int n = 0;
    if (!man) return -1;
    man[mlen] = 0;
    for (line = man; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (!strncmp(line, rel, strlen(rel)) && line[strlen(rel)] == '\t') break;
    }
    if (!line || !*line) goto none;
    e = strchr(line, '\n');
    if (e) *e = 0;
    s = strstr(line, marker);
    if (!s) goto none;
    s += strlen(marker);
    e = strstr(s, " |");
    if (e) *e = 0;
    if (!strncmp(s, "(none)", 6)) {
        free(man);
        return 0;
    }
    while (*s && n < cap) {
        char *comma = strstr(s, ", ");
        size_t k = comma ? (size_t)(comma - s) : strlen(s);
        while (k && s[k - 1] == ' ') k--;
        if (k >= 12 && !strncmp(s, "__builtin__.", 12))
            snprintf(out[n], 160, "builtins.%.*s", (int)(k - 12), s + 12);
        else if (k == 13 && !strncmp(s, "?STACK_GLOBAL", 13))
            snprintf(out[n], 160, "?.?");
        else
            snprintf(out[n], 160, "%.*s", (int)k, s);
        n++;
        if (!comma) break;
        s = comma + 2;
    }
    free(man);
    return n;
none:
    free(man);
    return -1;
}

static int in_list(char list[][160], int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(list[i], s)) return 1;
    return 0;
}

/* 1 if the globals PK met are exactly the set WANT[0..NW) (SUBSET: only
 * that every global met is in WANT). */
static int globals_match(const cki_pickle *pk, char want[][160], int nw, int subset,
                         const char *label)
{
    char got[256][160];
    int ng = 0, ok = 1;
    for (size_t i = 0; i < pk->global_count && ng < 256; i++) {
        char name[160];
        snprintf(name, sizeof name, "%s.%s", pk->globals[i].module, pk->globals[i].name);
        if (!in_list(got, ng, name)) snprintf(got[ng++], 160, "%s", name);
    }
    for (int i = 0; i < ng; i++)
        if (!in_list(want, nw, got[i])) {
            fprintf(stderr, "  %s: machine found %s, manifest does not list it\n", label, got[i]);
            ok = 0;
        }
    for (int i = 0; !subset && i < nw; i++)
        if (!in_list(got, ng, want[i])) {
            fprintf(stderr, "  %s: manifest lists %s, machine did not find it\n", label, want[i]);
            ok = 0;
        }
    return ok;
}

TEST(pickle_fixture_raw_pickles)
{
    static const struct {
        const char *name;
        const char *fail; /* expected message part, or NULL for success */
    } files[] = {
        {"picklescan_GHSA-4675-36f9-wf6r.pkl", NULL},
        {"picklescan_benign0_v4.pkl", NULL},
        {"picklescan_broken_model.pkl", "opcode 0x58 (BINUNICODE) at byte 16: string of "
                                        "543558206 bytes but only 63 remain"},
        {"picklescan_keyerror-exploit.pkl", "opcode 0x68 (BINGET) at byte 52: memo key 3 was "
                                            "never stored"},
        {"picklescan_malicious-invalid-bytes.pkl", NULL},
        {"picklescan_malicious0.pkl", NULL},
        {"picklescan_malicious14.pkl", NULL},
        {"picklescan_malicious17.pkl", NULL},
        {"picklescan_malicious1_v0.pkl", NULL},
        {"picklescan_malicious1_v4.pkl", NULL},
        {"picklescan_malicious23.pkl", NULL},
        {"picklescan_malicious2_v4.pkl", NULL},
        {"picklescan_malicious6.pkl", NULL},
        {"picklescan_sys_module_override_sploit.pkl", NULL},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512], rel[256], want[64][160];
        size_t len;
        uint8_t *p;
        tp t;
        int nw;
        snprintf(path, sizeof path, T_FIXTURES "/pickle/%s", files[i].name);
        snprintf(rel, sizeof rel, "pickle/%s", files[i].name);
        p = read_file(path, &len);
        CHECK(p != NULL);
        if (!p) continue;
        nw = manifest_imports(rel, "imports (GLOBAL/STACK_GLOBAL): ", want, 64);
        CHECK(nw >= 0);
        tp_run(&t, p, len);
        if (files[i].fail) {
            CHECK(t.st == CK_EFORMAT && err_has(&t, files[i].fail));
            CHECK(t.pk.root == NULL);
            /* what was met before the failure is still reported, all listed */
            CHECK(t.pk.global_count >= 1 && globals_match(&t.pk, want, nw, 1, files[i].name));
        } else {
            if (t.st) fprintf(stderr, "  %s: %s\n", files[i].name, ck_errmsg(t.ctx));
            CHECK(t.st == CK_OK && t.pk.root != NULL);
            CHECK(globals_match(&t.pk, want, nw, 0, files[i].name));
            /* every strict prefix fails cleanly */
            CHECK(truncations_fail(p, t.pk.end, 1) == 0);
        }
        tp_free(&t);
        free(p);
    }
}

TEST(pickle_fixture_specific_findings)
{
    size_t len;
    uint8_t *p;
    tp t;

    /* protocol 0: __builtin__.eval is reported as builtins.eval */
    p = read_file(T_FIXTURES "/pickle/picklescan_malicious1_v0.pkl", &len);
    CHECK(p != NULL);
    if (p) {
        tp_run(&t, p, len);
        CHECK(t.st == CK_OK && t.pk.global_count == 1 && has_global(&t.pk, "builtins", "eval", 1));
        CHECK(cki_pv_is_call_of(t.pk.root, "builtins", "eval"));
        tp_free(&t);
        free(p);
    }

    /* a second pickle after STOP: running again from `end` finds it */
    p = read_file(T_FIXTURES "/pickle/picklescan_malicious6.pkl", &len);
    CHECK(p != NULL);
    if (p) {
        ck_ctx *ctx = ck_ctx_new();
        cki_arena ar;
        cki_pickle a, b;
        cki_arena_init(&ar, ctx);
        CHECK(cki_pickle_run(ctx, &ar, p, len, "m6.pkl", "pickle 1", 0, &a) == CK_OK);
        CHECK(a.end == 28 && a.global_count == 0);
        CHECK(a.root && a.root->kind == CKI_PV_LIST && a.root->n == 3);
        CHECK(cki_pickle_run(ctx, &ar, p + a.end, len - a.end, "m6.pkl", "pickle 2", a.end,
                             &b) == CK_OK);
        CHECK(b.global_count == 1 && has_global(&b, "requests.api", "get", 1));
        CHECK(b.globals && b.globals[0].off > 28);
        CHECK(a.end + b.end == len);
        cki_arena_free(&ar);
        ck_ctx_free(ctx);
        free(p);
    }

    /* trailing junk after the first STOP is not a pickle */
    p = read_file(T_FIXTURES "/pickle/picklescan_malicious-invalid-bytes.pkl", &len);
    CHECK(p != NULL);
    if (p) {
        ck_ctx *ctx = ck_ctx_new();
        cki_arena ar;
        cki_pickle a, b;
        cki_arena_init(&ar, ctx);
        CHECK(cki_pickle_run(ctx, &ar, p, len, "mib.pkl", "pickle 1", 0, &a) == CK_OK);
        CHECK(a.end == 73 && has_global(&a, "os", "system", 1));
        CHECK(cki_pickle_run(ctx, &ar, p + a.end, len - a.end, "mib.pkl", "pickle 2", a.end,
                             &b) == CK_EFORMAT);
        CHECK(strstr(ck_errmsg(ctx), "opcode 0x0a (unknown) at byte 73: not a pickle opcode"));
        cki_arena_free(&ar);
        ck_ctx_free(ctx);
        free(p);
    }

    /* the sys-module override: a STACK_GLOBAL of two GLOBAL nodes is "?" */
    p = read_file(T_FIXTURES "/pickle/picklescan_sys_module_override_sploit.pkl", &len);
    CHECK(p != NULL);
    if (p) {
        tp_run(&t, p, len);
        CHECK(t.st == CK_OK && has_global(&t.pk, "?", "?", 0));
        CHECK(has_global(&t.pk, "torch._utils", "_rebuild_tensor", 1));
        CHECK(cki_pv_is_call_of(t.pk.root, "?", "?"));
        tp_free(&t);
        free(p);
    }
}

/* The first zip entry's data when it is stored (torch zips store all). */
static const uint8_t *zip_first_stored(const uint8_t *p, size_t len, size_t *data_len,
                                       char *name, size_t name_cap)
{
    size_t nl, el, off;
    if (len < 30 || memcmp(p, "PK\x03\x04", 4) || cki_ld_le16(p + 8) != 0) return NULL;
    nl = cki_ld_le16(p + 26);
    el = cki_ld_le16(p + 28);
    off = 30 + nl + el;
    if (off > len || nl >= name_cap) return NULL;
    memcpy(name, p + 30, nl);
    name[nl] = 0;
    *data_len = len - off; /* the pickle ends at its STOP */
    return p + off;
}

TEST(pickle_fixture_zip_data_pkl)
{
    static const char *const files[] = {
        "pytorch-zip/burn_float16.pt",
        "pytorch-zip/burn_bool.pt",
        "pytorch-zip/burn_parameter.pt",
        "pytorch-zip/burn_complex_nested.pt",
        "pytorch-zip/burn_checkpoint.pt",
        "pytorch-zip/burn_buffers.pt",
        "pytorch-zip/candle_test_with_key.pt",
        "pytorch-zip/candle_config.pt",
        "pytorch-zip/picklescan_new_pytorch_model.bin",
        "pytorch-zip/darts_unittest-model-lstm__model.pth.tar",
        "pytorch-zip/darts_params_check.pt",
        "pytorch-zip/picklescan_malicious1.zip",
        "lightning-ckpt/darts_unittest-model-lstm_last-epoch=2.ckpt",
        "lightning-ckpt/darts_lr_find_7603e48a.ckpt",
        "lightning-ckpt/darts_Air_RNN_last-epoch=299.ckpt",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512], name[256], want[128][160];
        size_t len, dlen = 0;
        const uint8_t *d;
        uint8_t *p;
        int nw;
        tp t;
        snprintf(path, sizeof path, T_FIXTURES "/%s", files[i]);
        p = read_file(path, &len);
        CHECK(p != NULL);
        if (!p) continue;
        d = zip_first_stored(p, len, &dlen, name, sizeof name);
        CHECK(d != NULL);
        if (d) {
            CHECK(strstr(name, "data.pkl") != NULL);
            nw = manifest_imports(files[i], "data.pkl imports: ", want, 128);
            CHECK(nw >= 0);
            tp_run(&t, d, dlen);
            if (t.st) fprintf(stderr, "  %s: %s\n", files[i], ck_errmsg(t.ctx));
            CHECK(t.st == CK_OK && t.pk.root);
            CHECK(globals_match(&t.pk, want, nw, 0, files[i]));
            /* sampled truncations of the bigger ones */
            if (t.st == CK_OK)
                CHECK(truncations_fail(d, t.pk.end, t.pk.end > 4000 ? t.pk.end / 300 : 1) == 0);
            tp_free(&t);
        }
        free(p);
    }
}

TEST(pickle_fixture_legacy_chain)
{
    static const char *const files[] = {
        "pytorch-legacy/burn_simple_legacy.pt",
        "pytorch-legacy/burn_legacy_shared_storage.pt",
        "pytorch-legacy/burn_legacy_uncloned_views.pt",
        "pytorch-legacy/lightning_mnist_test.pt",
        "pytorch-legacy/picklescan_pytorch_model.bin",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512], want[64][160];
        size_t len, off = 0;
        uint8_t *p;
        ck_ctx *ctx = ck_ctx_new();
        cki_arena ar;
        cki_pickle pk[5];
        int nw, ok = 1;
        snprintf(path, sizeof path, T_FIXTURES "/%s", files[i]);
        p = read_file(path, &len);
        CHECK(p != NULL);
        cki_arena_init(&ar, ctx);
        for (int k = 0; p && k < 5 && ok; k++) {
            ok = cki_pickle_run(ctx, &ar, p + off, len - off, files[i], "legacy", off, &pk[k]) ==
                 CK_OK;
            if (!ok) fprintf(stderr, "  %s\n", ck_errmsg(ctx));
            off += pk[k].end;
        }
        CHECK(ok);
        if (p && ok) {
            /* 1: the magic number 0x1950a86a20f9469cfc6c as a LONG1 bigint */
            CHECK(pk[0].root->kind == CKI_PV_BIGINT && pk[0].root->u.s.len == 10);
            CHECK(pk[1].root->kind == CKI_PV_INT && pk[1].root->u.i == 1001);
            CHECK(cki_pv_dict_get(pk[2].root, "little_endian") != NULL);
            CHECK(pk[4].root->kind == CKI_PV_LIST);
            nw = manifest_imports(files[i], "object pickle (proto 2) imports: ", want, 64);
            CHECK(nw > 0);
            CHECK(globals_match(&pk[3], want, nw, 0, files[i]));
            CHECK(pk[0].global_count == 0 && pk[4].global_count == 0);
        }
        cki_arena_free(&ar);
        ck_ctx_free(ctx);
        free(p);
    }
}

TEST(pickle_fixture_npy_object_payloads)
{
    static const char *const files[] = {
        "npy/npyz_pickle.npy",
        "npy/numpy_py2-objarr.npy",
        "npy/picklescan_dns_exfiltration.npy",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512], want[64][160];
        size_t len, hl;
        uint8_t *p;
        int nw;
        tp t;
        snprintf(path, sizeof path, T_FIXTURES "/%s", files[i]);
        p = read_file(path, &len);
        CHECK(p != NULL && len > 10 && p[6] == 1);
        if (!p || len <= 10) {
            free(p);
            continue;
        }
        hl = cki_ld_le16(p + 8); /* npy v1 header length */
        nw = manifest_imports(files[i], "object payload pickle imports: ", want, 64);
        CHECK(nw > 0);
        tp_run(&t, p + 10 + hl, len - 10 - hl);
        if (t.st) fprintf(stderr, "  %s: %s\n", files[i], ck_errmsg(t.ctx));
        CHECK(t.st == CK_OK && globals_match(&t.pk, want, nw, 0, files[i]));
        tp_free(&t);
        free(p);
    }
}

/* ---- queries --------------------------------------------------------------- */

TEST(pickle_pv_queries_reject_wrong_kinds)
{
    tp t;
    int64_t v = 42;
    RUN(&t, "(X\x02\0\0\0hicm\nf\nK\x01\x88t.");
    CHECK(t.st == CK_OK && t.pk.root && t.pk.root->n == 4);
    if (t.pk.root && t.pk.root->n == 4) {
        cki_pv **it = t.pk.root->items;
        CHECK(cki_pv_is_str(it[0], "hi") && !cki_pv_is_str(it[0], "h") &&
              !cki_pv_is_str(it[0], "hii"));
        CHECK(!cki_pv_is_str(it[1], "hi") && !cki_pv_is_str(NULL, "hi"));
        CHECK(cki_pv_is_global(it[1], "m", "f") && !cki_pv_is_global(it[1], "m", "g") &&
              !cki_pv_is_global(it[0], "m", "f"));
        CHECK(!cki_pv_is_call_of(it[1], "m", "f") && !cki_pv_is_call_of(NULL, "m", "f"));
        CHECK(cki_pv_call_args(it[1]) == NULL && cki_pv_call_args(NULL) == NULL);
        CHECK(cki_pv_dict_get(it[0], "x") == NULL && cki_pv_dict_get(NULL, "x") == NULL);
        CHECK(cki_pv_to_i64(it[2], &v) == 0 && v == 1);
        CHECK(cki_pv_to_i64(it[3], &v) == 0 && v == 1);
        CHECK(cki_pv_to_i64(it[0], &v) == 1 && cki_pv_to_i64(NULL, &v) == 1);
        CHECK(cki_pv_child_count(it[0]) == 0 && cki_pv_child(it[0], 0) == NULL);
        CHECK(cki_pv_child_count(t.pk.root) == 4 && cki_pv_child(t.pk.root, 3) == it[3]);
        CHECK(!strcmp(cki_pv_kind_name(CKI_PV_NEWOBJ), "newobj"));
    }
    tp_free(&t);
}

/* ---- the bad corpus ------------------------------------------------------------ */

#define BAD_DIR "tests/corpus/bad/pickle"

TEST(pickle_bad_corpus_fails_with_expected_lines)
{
    struct dirent **list;
    int n = scandir(BAD_DIR, &list, NULL, alphasort), checked = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list[i]->d_name), plen, elen;
        char path[1024], exp[1024];
        uint8_t *p, *want;
        ck_ctx *ctx;
        cki_arena ar;
        cki_pickle pk;
        ck_status st, want_st;
        if (l <= 4 || strcmp(list[i]->d_name + l - 4, ".pkl")) {
            free(list[i]);
            continue;
        }
        snprintf(path, sizeof path, BAD_DIR "/%s", list[i]->d_name);
        snprintf(exp, sizeof exp, BAD_DIR "/%.*s.expected", (int)(l - 4), list[i]->d_name);
        free(list[i]);
        p = read_file(path, &plen);
        want = read_file(exp, &elen);
        CHECK(p != NULL && want != NULL);
        if (!p || !want) {
            free(p);
            free(want);
            continue;
        }
        want[elen] = 0;
        if (elen && want[elen - 1] == '\n') want[elen - 1] = 0;
        ctx = ck_ctx_new();
        cki_arena_init(&ar, ctx);
        st = cki_pickle_run(ctx, &ar, plen ? p : NULL, plen, path, "pickle", 0, &pk);
        if (strcmp(ck_errmsg(ctx), (char *)want)) {
            fprintf(stderr, "  %s\n    want: %s\n    got:  %s\n", path, (char *)want,
                    ck_errmsg(ctx));
            CHECK(!"message differs");
        }
        want_st = strstr((char *)want, "limit") || strstr((char *)want, "exceeds") ? CK_ELIMIT
                  : strstr((char *)want, "not supported")                          ? CK_EUNSUPPORTED
                                                                                    : CK_EFORMAT;
        CHECK(st == want_st && pk.root == NULL);
        cki_arena_free(&ar);
        ck_ctx_free(ctx);
        free(p);
        free(want);
        checked++;
    }
    if (n > 0) free(list);
    CHECK(checked >= 60);
}

/* ---- allocation failures --------------------------------------------------------- */

/* Fails the 1st, 2nd, ... allocation of a run over P until the run
 * succeeds; each failure must be CK_ENOMEM naming the opcode, with nothing
 * left allocated. Returns the number of allocation points, -1 on a bad one. */
static int alloc_failures(const uint8_t *p, size_t n)
{
    int failures = 0;
    for (unsigned long nth = 1; nth < 100000; nth++) {
        ck_ctx *ctx = ck_ctx_new();
        cki_arena ar;
        cki_pickle pk;
        ck_status st;
        int bad = 0;
        cki_arena_init(&ar, ctx);
        cki_sys_fail_nth(CKI_SYS_ALLOC, nth);
        st = cki_pickle_run(ctx, &ar, p, n, "a.pkl", "p", 0, &pk);
        cki_sys_reset();
        if (st != CK_OK) {
            failures++;
            bad = st != CK_ENOMEM || pk.root != NULL ||
                  (strncmp(ck_errmsg(ctx), "a.pkl: p: opcode 0x", 19) &&
                   strncmp(ck_errmsg(ctx), "a.pkl: p: before the first opcode: ", 35)) ||
                  !strstr(ck_errmsg(ctx), "out of memory allocating");
            if (bad) fprintf(stderr, "  allocation %lu: %s\n", nth, ck_errmsg(ctx));
        }
        cki_arena_free(&ar);
        bad |= ctx->mem_used != 0; /* stack, marks, memo, temporaries all released */
        ck_ctx_free(ctx);
        if (bad) return -1;
        if (st == CK_OK) return failures;
    }
    return -1;
}

TEST(pickle_every_allocation_failure_is_clean)
{
    bb b = {0};
    int n1, n2;
    n1 = alloc_failures((const uint8_t *)rich_pickle, sizeof rich_pickle - 1);
    CHECK(n1 >= 8);
    /* growth of every structure: 300 memo entries, 100 nested marks, 300
     * stack values, three arena blocks of strings, a 300-digit text long,
     * text PUT/GET, raw-unicode text */
    for (int i = 0; i < 100; i++) bb_str(&b, "(");
    for (int i = 0; i < 300; i++) bb_str(&b, "N\x94");
    for (int k = 0; k < 3; k++) {
        bb_str(&b, "B");
        bb_le32(&b, 40000);
        for (int i = 0; i < 40000; i++) bb_str(&b, "s");
    }
    bb_str(&b, "L");
    for (int i = 0; i < 300; i++) bb_str(&b, "9");
    bb_str(&b, "L\np7\ng7\nV\\u20ac\nF1.25\nS'q'\n");
    for (int i = 0; i < 100; i++) bb_str(&b, "t");
    bb_str(&b, ".");
    n2 = alloc_failures(b.p, b.n);
    CHECK(n2 >= 20);
    free(b.p);
}

TEST(pickle_memory_limit_names_the_opcode)
{
    bb b = {0};
    tp t;
    bb_str(&b, "N");
    bb_str(&b, "B");
    bb_le32(&b, 300000);
    for (int i = 0; i < 300000; i++) bb_str(&b, "y");
    bb_str(&b, ".");
    t.ctx = ck_ctx_new();
    t.ctx->mem_limit_effective = 200000;
    cki_arena_init(&t.ar, t.ctx);
    t.st = cki_pickle_run(t.ctx, &t.ar, b.p, b.n, "big.pkl", "p", 0, &t.pk);
    CHECK(t.st == CK_ENOMEM && err_has(&t, "big.pkl: p: opcode 0x42 (BINBYTES) at byte 1: memory "
                                           "limit reached"));
    tp_free(&t);
    free(b.p);
}

TEST(pickle_pv_bigint_and_kind_names)
{
    cki_pv v;
    int64_t x;
    static const char *const names[] = {"none", "bool", "int", "bigint", "float", "str",
                                        "bytes", "tuple", "list", "dict", "set", "frozenset",
                                        "global", "reduce", "newobj", "persid"};
    /* a BIGINT made by another producer, not minimal: still read when it fits */
    memset(&v, 0, sizeof v);
    v.kind = CKI_PV_BIGINT;
    v.u.s.p = "\xfe\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    v.u.s.len = 10;
    CHECK(cki_pv_to_i64(&v, &x) == 0 && x == -2);
    v.u.s.p = "\x01\x02\x03";
    v.u.s.len = 3;
    CHECK(cki_pv_to_i64(&v, &x) == 0 && x == 0x030201);
    v.u.s.p = "\0\0\0\0\0\0\0\x80\0";
    v.u.s.len = 9;
    CHECK(cki_pv_to_i64(&v, &x) == 1);
    for (int k = CKI_PV_NONE; k <= CKI_PV_PERSID; k++)
        CHECK(!strcmp(cki_pv_kind_name((cki_pv_kind)k), names[k]));
}
