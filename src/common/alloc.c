/*
 * alloc.c -- counted allocation. Each block carries its size in a 16-byte
 * prefix so that frees can be subtracted; the context refuses allocations
 * that would pass its effective memory limit (a documented function of the
 * input size, see ck_ctx_set_limit). Allocation failures can be injected
 * through the system-call table for tests.
 */
#include <stdlib.h>

#include "cki.h"
#include "../io/sys.h"

#define PREFIX 16

void *cki_malloc(ck_ctx *ctx, size_t n)
{
    size_t total;
    unsigned char *p;
    if (cki_add_size(&total, n, PREFIX)) goto nomem;
    if (ctx && ctx->mem_limit_effective &&
        (ctx->mem_used > ctx->mem_limit_effective ||
         total > ctx->mem_limit_effective - ctx->mem_used)) {
        cki_fail(ctx, CK_ENOMEM,
                 "memory limit reached: %llu bytes in use, %zu more asked, limit %llu",
                 (unsigned long long)ctx->mem_used, n,
                 (unsigned long long)ctx->mem_limit_effective);
        return NULL;
    }
    if (cki_sys_alloc_should_fail()) goto nomem;
    p = malloc(total);
    if (!p) goto nomem;
    memcpy(p, &total, sizeof total);
    if (ctx) {
        ctx->mem_used += total;
        if (ctx->mem_used > ctx->mem_peak) ctx->mem_peak = ctx->mem_used;
    }
    return p + PREFIX;
nomem:
    cki_fail(ctx, CK_ENOMEM, "out of memory allocating %zu bytes", n);
    return NULL;
}

void *cki_calloc(ck_ctx *ctx, size_t count, size_t size)
{
    size_t n;
    void *p;
    if (cki_mul_size(&n, count, size)) {
        cki_fail(ctx, CK_ENOMEM, "allocation of %zu x %zu bytes overflows", count, size);
        return NULL;
    }
    p = cki_malloc(ctx, n);
    if (p) memset(p, 0, n);
    return p;
}

void cki_free(ck_ctx *ctx, void *p)
{
    size_t total;
    unsigned char *b;
    if (!p) return;
    b = (unsigned char *)p - PREFIX;
    memcpy(&total, b, sizeof total);
    if (ctx) ctx->mem_used -= total <= ctx->mem_used ? total : ctx->mem_used;
    free(b);
}

void *cki_realloc(ck_ctx *ctx, void *p, size_t n)
{
    size_t old_total, old_n;
    void *q;
    if (!p) return cki_malloc(ctx, n);
    memcpy(&old_total, (unsigned char *)p - PREFIX, sizeof old_total);
    old_n = old_total - PREFIX;
    q = cki_malloc(ctx, n);
    if (!q) return NULL;
    memcpy(q, p, old_n < n ? old_n : n);
    cki_free(ctx, p);
    return q;
}

char *cki_strndup(ck_ctx *ctx, const char *s, size_t n)
{
    char *d = cki_malloc(ctx, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *cki_strdup(ck_ctx *ctx, const char *s)
{
    return cki_strndup(ctx, s, strlen(s));
}

#define MEM_BASE (64ull << 20)
#define MEM_PER_INPUT_BYTE 32

void cki_mem_allow_input(ck_ctx *ctx, uint64_t input_len)
{
    uint64_t add, lim = ctx->limits[CK_LIMIT_MEMORY];
    if (cki_mul_u64(&add, input_len, MEM_PER_INPUT_BYTE)) add = UINT64_MAX;
    if (!ctx->mem_limit_effective) ctx->mem_limit_effective = MEM_BASE;
    if (cki_add_u64(&ctx->mem_limit_effective, ctx->mem_limit_effective, add))
        ctx->mem_limit_effective = UINT64_MAX;
    if (ctx->mem_limit_effective > lim) ctx->mem_limit_effective = lim;
}
