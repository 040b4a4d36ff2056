/*
 * t_pickle_write.c -- the protocol-2 emitter against bytes CPython 3.11's
 * pickle.dumps(obj, protocol=2) produced for the same objects (printed with
 * .hex(); long outputs compared by length and zlib CRC-32).
 */
#include <stdio.h>
#include <zlib.h>

#include "pickle/pickle_write.h"
#include "t.h"

/* 1 if the emitter's output equals the hex string HEX. */
static int same_hex(const cki_pkw *w, const char *hex)
{
    size_t n = strlen(hex) / 2;
    if (cki_pkw_status(w) || w->out.len != n) return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || (uint8_t)w->out.p[i] != v) return 0;
    }
    return 1;
}

static int same_crc(const cki_pkw *w, size_t len, uint32_t crc)
{
    if (cki_pkw_status(w) || w->out.len != len) return 0;
    return (uint32_t)crc32(0, (const Bytef *)w->out.p, (uInt)w->out.len) == crc;
}

/* (0, 255, 256, 65535, 65536, -1, 2**31-1, 2**31, -2**31, -2**31-1, 2**63-1,
 *  -2**63, 128, -128) */
TEST(pickle_write_ints)
{
    static const int64_t v[] = {0,         255,           256,       65535,     65536,
                                -1,        INT32_MAX,     2147483648LL, INT32_MIN,
                                -2147483649LL, INT64_MAX, INT64_MIN, 128,       -128};
    size_t n = sizeof v / sizeof v[0];
    ck_ctx *ctx = ck_ctx_new();
    cki_pkw w;
    cki_pkw_init(&w, ctx);
    cki_pkw_proto(&w);
    cki_pkw_tuple_begin(&w, n);
    for (size_t i = 0; i < n; i++) cki_pkw_int(&w, v[i]);
    cki_pkw_tuple_end(&w, n);
    cki_pkw_stop(&w);
    CHECK(same_hex(&w, "8002284b004bff4d00014dffff4a000001004affffffff4affffff7f8a05000000800"
                       "04a000000808a05ffffff7fff8a08ffffffffffffff7f8a080000000000000080"
                       "4b804a80ffffff7471002e"));
    cki_pkw_free(&w);
    ck_ctx_free(ctx);
}

/* ('a', s, s, 'é') with s one object: the second s is a BINGET. */
TEST(pickle_write_strings_memo)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_pkw w;
    cki_pkw_ref s = {0, 0};
    cki_pkw_init(&w, ctx);
    cki_pkw_proto(&w);
    cki_pkw_tuple_begin(&w, 4);
    cki_pkw_str(&w, "a", 1);
    cki_pkw_str_ref(&w, "xy", 2, &s);
    cki_pkw_str_ref(&w, "xy", 2, &s);
    cki_pkw_str(&w, "\xc3\xa9", 2);
    cki_pkw_tuple_end(&w, 4);
    cki_pkw_stop(&w);
    CHECK(same_hex(&w, "800228580100000061710058020000007879710168015802000000c3a971027471032e"));
    cki_pkw_free(&w);
    ck_ctx_free(ctx);
}

/* (None, True, False) and collections.OrderedDict() */
TEST(pickle_write_constants_and_reduce)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_pkw w;
    cki_pkw_init(&w, ctx);
    cki_pkw_proto(&w);
    cki_pkw_tuple_begin(&w, 3);
    cki_pkw_none(&w);
    cki_pkw_bool(&w, 1);
    cki_pkw_bool(&w, 0);
    cki_pkw_tuple_end(&w, 3);
    cki_pkw_stop(&w);
    CHECK(same_hex(&w, "80024e88898771002e"));
    cki_pkw_free(&w);

    cki_pkw_init(&w, ctx);
    cki_pkw_proto(&w);
    cki_pkw_global(&w, "collections", "OrderedDict");
    cki_pkw_tuple_begin(&w, 0);
    cki_pkw_tuple_end(&w, 0);
    cki_pkw_reduce(&w);
    cki_pkw_stop(&w);
    CHECK(same_hex(&w, "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012e"));
    cki_pkw_free(&w);
    ck_ctx_free(ctx);
}

/* A Pickler whose persistent_id maps the object to ('storage', 'k'). */
TEST(pickle_write_persid)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_pkw w;
    cki_pkw_init(&w, ctx);
    cki_pkw_proto(&w);
    cki_pkw_tuple_begin(&w, 2);
    cki_pkw_str(&w, "storage", 7);
    cki_pkw_str(&w, "k", 1);
    cki_pkw_tuple_end(&w, 2);
    cki_pkw_persid(&w);
    cki_pkw_stop(&w);
    CHECK(same_hex(&w, "8002580700000073746f72616765710058010000006b7101867102512e"));
    cki_pkw_free(&w);
    ck_ctx_free(ctx);
}

/* {'k': 1} and {'k': 1, 'l': 2}: one pair is SETITEM, more MARK ... SETITEMS */
TEST(pickle_write_small_dicts)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_pkw w;
    cki_pkw_items it;
    for (int n = 1; n <= 2; n++) {
        cki_pkw_init(&w, ctx);
        cki_pkw_proto(&w);
        cki_pkw_empty_dict(&w);
        cki_pkw_items_init(&it, (uint64_t)n);
        for (int i = 0; i < n; i++) {
            cki_pkw_item_start(&w, &it);
            cki_pkw_str(&w, i ? "l" : "k", 1);
            cki_pkw_int(&w, i + 1);
            cki_pkw_item_end(&w, &it);
        }
        cki_pkw_stop(&w);
        if (n == 1) CHECK(same_hex(&w, "80027d710058010000006b71014b01732e"));
        if (n == 2) CHECK(same_hex(&w, "80027d71002858010000006b71014b0158010000006c71024b02752e"));
        cki_pkw_free(&w);
    }
    ck_ctx_free(ctx);
}

/* OrderedDict((str(i), i) for i in range(n)): batches of 1000, a trailing
 * single pair as SETITEM; memo indices past 255 use LONG_BINPUT. */
TEST(pickle_write_batches)
{
    static const struct {
        int n;
        size_t len;
        uint32_t crc;
    } cases[] = {
        {1000, 14908, 0x1d3cdf63u}, {1001, 14926, 0xeb41d8cau}, {2000, 31910, 0xd9401d85u}};
    ck_ctx *ctx = ck_ctx_new();
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cki_pkw w;
        cki_pkw_items it;
        char key[16];
        cki_pkw_init(&w, ctx);
        cki_pkw_proto(&w);
        cki_pkw_global(&w, "collections", "OrderedDict");
        cki_pkw_tuple_end(&w, 0);
        cki_pkw_reduce(&w);
        cki_pkw_items_init(&it, (uint64_t)cases[c].n);
        for (int i = 0; i < cases[c].n; i++) {
            int kl = snprintf(key, sizeof key, "%d", i);
            cki_pkw_item_start(&w, &it);
            cki_pkw_str(&w, key, (size_t)kl);
            cki_pkw_int(&w, i);
            cki_pkw_item_end(&w, &it);
        }
        cki_pkw_stop(&w);
        CHECK(same_crc(&w, cases[c].len, cases[c].crc));
        cki_pkw_free(&w);
    }
    ck_ctx_free(ctx);
}

/* tuple(strs + [strs[299], strs[0]]) with strs = [str(i) + 'x' for i in
 * range(300)]: LONG_BINPUT from 256 on, a LONG_BINGET and a BINGET. */
TEST(pickle_write_long_memo)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_pkw w;
    cki_pkw_ref refs[300];
    char s[16];
    memset(refs, 0, sizeof refs);
    cki_pkw_init(&w, ctx);
    cki_pkw_proto(&w);
    cki_pkw_tuple_begin(&w, 302);
    for (int i = 0; i < 300; i++) {
        int n = snprintf(s, sizeof s, "%dx", i);
        cki_pkw_str_ref(&w, s, (size_t)n, &refs[i]);
    }
    cki_pkw_str_ref(&w, "299x", 4, &refs[299]);
    cki_pkw_str_ref(&w, "0x", 2, &refs[0]);
    cki_pkw_tuple_end(&w, 302);
    cki_pkw_stop(&w);
    CHECK(refs[299].idx == 299);
    CHECK(same_crc(&w, 3339, 0xb63df27fu));
    cki_pkw_free(&w);
    ck_ctx_free(ctx);
}

/* Giving a dict more items than announced is an error, not a bad pickle. */
TEST(pickle_write_item_overrun)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_pkw w;
    cki_pkw_items it;
    cki_pkw_init(&w, ctx);
    cki_pkw_empty_dict(&w);
    cki_pkw_items_init(&it, 1);
    for (int i = 0; i < 2; i++) {
        cki_pkw_item_start(&w, &it);
        cki_pkw_str(&w, "k", 1);
        cki_pkw_none(&w);
        cki_pkw_item_end(&w, &it);
    }
    CHECK(cki_pkw_status(&w) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "more than 1 items") != NULL);
    cki_pkw_free(&w);
    ck_ctx_free(ctx);
}
