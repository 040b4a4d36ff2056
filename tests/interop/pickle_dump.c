/*
 * pickle_dump.c -- prints the value tree of ckptkit's pickle machine as
 * canonical JSON, for tests/interop/test_pickle_machine.py. Compiled at test
 * time against build/libckptkit.a (internal headers: -Iinclude -Isrc).
 *
 *   pickle_dump FILE          the first pickle of FILE
 *   pickle_dump --all FILE    every pickle in a row, as a JSON list
 *
 * Rendering (the Python side renders the original objects the same way):
 *   None -> null, bool -> true/false, int/bigint -> {"int": "<decimal>"},
 *   float -> {"float": "%.17g" | "nan" | "inf" | "-inf"},
 *   str -> {"str": "<hex of the UTF-8 bytes>"}, bytes -> {"bytes": "<hex>"},
 *   tuple/list/set/frozenset -> {"<kind>": [items]},
 *   dict -> {"dict": [[key, value], ...]} in order,
 *   global -> {"global": "module.name"}, reduce/newobj -> {"<kind>": [items]},
 *   persid -> {"persid": value}; a node with state, extra or extra_list
 *   gets those keys beside its kind. A node met again on its own path
 *   prints {"cycle": "<kind>"}. Exit 1 with the machine's message on stderr
 *   when a pickle fails.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cki.h"
#include "pickle/pickle.h"

typedef struct path {
    const cki_pv *v;
    const struct path *up;
} path;

static void hex(const char *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++) printf("%02x", (unsigned char)p[i]);
}

/* a JSON string body for text the machine copied from the pickle */
static void text(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
}

static void bigint_decimal(const cki_pv *v)
{
    size_t n = (size_t)v->u.s.len, k = 0;
    unsigned char *mag = malloc(n ? n : 1);
    char *digits = malloc(3 * n + 2);
    int neg = n && ((const unsigned char *)v->u.s.p)[n - 1] & 0x80;
    memcpy(mag, v->u.s.p, n);
    if (neg) { /* magnitude of a negative two's complement number */
        unsigned carry = 1;
        for (size_t i = 0; i < n; i++) {
            unsigned t = (unsigned)(unsigned char)~mag[i] + carry;
            mag[i] = (unsigned char)t;
            carry = t >> 8;
        }
    }
    for (;;) {
        unsigned rem = 0;
        int more = 0;
        for (size_t i = n; i-- > 0;) {
            unsigned cur = rem << 8 | mag[i];
            mag[i] = (unsigned char)(cur / 10);
            rem = cur % 10;
            more |= mag[i] != 0;
        }
        digits[k++] = (char)('0' + rem);
        if (!more) break;
    }
    if (neg) putchar('-');
    while (k) putchar(digits[--k]);
    free(mag);
    free(digits);
}

static void render(const cki_pv *v, const path *up);

static void items(const cki_pv *v, size_t from, size_t to, const path *here)
{
    putchar('[');
    for (size_t i = from; i < to; i++) {
        if (i > from) putchar(',');
        render(v->items[i], here);
    }
    putchar(']');
}

static void render(const cki_pv *v, const path *up)
{
    path here = {v, up};
    for (const path *p = up; p; p = p->up) {
        if (p->v == v) {
            printf("{\"cycle\":\"%s\"}", cki_pv_kind_name(v->kind));
            return;
        }
    }
    switch (v->kind) {
    case CKI_PV_NONE:
        if (!cki_pv_state(v) && !cki_pv_extra(v) && !cki_pv_extra_list(v)) {
            printf("null");
            return;
        }
        printf("{\"none\":null");
        break;
    case CKI_PV_BOOL:
        printf(v->u.i ? "true" : "false");
        return;
    case CKI_PV_INT:
        printf("{\"int\":\"%lld\"}", (long long)v->u.i);
        return;
    case CKI_PV_BIGINT:
        printf("{\"int\":\"");
        bigint_decimal(v);
        printf("\"}");
        return;
    case CKI_PV_FLOAT:
        if (isnan(v->u.f)) printf("{\"float\":\"nan\"}");
        else if (isinf(v->u.f)) printf("{\"float\":\"%s\"}", v->u.f > 0 ? "inf" : "-inf");
        else printf("{\"float\":\"%.17g\"}", v->u.f);
        return;
    case CKI_PV_STR:
    case CKI_PV_BYTES:
        printf("{\"%s\":\"", v->kind == CKI_PV_STR ? "str" : "bytes");
        hex(v->u.s.p, v->u.s.len);
        printf("\"}");
        return;
    case CKI_PV_GLOBAL:
        printf("{\"global\":\"");
        text(v->u.g.module);
        putchar('.');
        text(v->u.g.name);
        putchar('"');
        break;
    case CKI_PV_DICT:
        printf("{\"dict\":[");
        for (uint32_t i = 0; i < v->n; i++) {
            if (i) putchar(',');
            putchar('[');
            render(v->items[2 * i], &here);
            putchar(',');
            render(v->items[2 * i + 1], &here);
            putchar(']');
        }
        putchar(']');
        break;
    case CKI_PV_PERSID:
        printf("{\"persid\":");
        render(v->items[0], &here);
        break;
    default:
        printf("{\"%s\":", cki_pv_kind_name(v->kind));
        items(v, 0, v->n, &here);
    }
    if (cki_pv_state(v)) {
        printf(",\"state\":");
        render(cki_pv_state(v), &here);
    }
    if (cki_pv_extra(v)) {
        printf(",\"extra\":");
        render(cki_pv_extra(v), &here);
    }
    if (cki_pv_extra_list(v)) {
        printf(",\"extra_list\":");
        render(cki_pv_extra_list(v), &here);
    }
    putchar('}');
}

int main(int argc, char **argv)
{
    int all = argc == 3 && !strcmp(argv[1], "--all");
    const char *file = argv[argc - 1];
    FILE *f;
    unsigned char *buf;
    long n;
    size_t pos = 0;
    int count = 0;
    ck_ctx *ctx;
    cki_arena ar;
    if (argc != 2 && !all) {
        fprintf(stderr, "usage: pickle_dump [--all] FILE\n");
        return 2;
    }
    f = fopen(file, "rb");
    if (!f || fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        fprintf(stderr, "pickle_dump: cannot read %s\n", file);
        return 2;
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "pickle_dump: cannot read %s\n", file);
        return 2;
    }
    fclose(f);
    ctx = ck_ctx_new();
    cki_arena_init(&ar, ctx);
    if (all) putchar('[');
    do {
        cki_pickle pk;
        if (cki_pickle_run(ctx, &ar, buf + pos, (size_t)n - pos, file, "pickle", pos, &pk)) {
            fflush(stdout);
            fprintf(stderr, "%s\n", ck_errmsg(ctx));
            return 1;
        }
        if (count++) putchar(',');
        render(pk.root, NULL);
        pos += pk.end;
    } while (all && pos < (size_t)n);
    if (all) putchar(']');
    putchar('\n');
    cki_arena_free(&ar);
    ck_ctx_free(ctx);
    free(buf);
    return 0;
}
