/*
 * arena.c -- bump allocation in blocks, freed all at once. Tensor names,
 * shapes and strides of a 100k-tensor checkpoint live here: one malloc per
 * 64 KiB instead of three per tensor.
 */
#include "cki.h"

struct cki_arena_blk {
    cki_arena_blk *next;
    size_t size;
    /* payload follows, 16-byte aligned */
    _Alignas(16) unsigned char data[];
};

#define BLOCK_MIN (64 * 1024)

void cki_arena_init(cki_arena *a, ck_ctx *ctx)
{
    memset(a, 0, sizeof *a);
    a->ctx = ctx;
}

void cki_arena_free(cki_arena *a)
{
    cki_arena_blk *b = a->head;
    while (b) {
        cki_arena_blk *n = b->next;
        cki_free(a->ctx, b);
        b = n;
    }
    a->head = NULL;
    a->used = a->size = 0;
}

void *cki_arena_alloc(cki_arena *a, size_t n)
{
    size_t need = (n + 15) & ~(size_t)15;
    if (need < n) {
        cki_fail(a->ctx, CK_ENOMEM, "arena allocation of %zu bytes overflows", n);
        return NULL;
    }
    if (!a->head || a->size - a->used < need) {
        size_t sz = need > BLOCK_MIN ? need : BLOCK_MIN, total;
        cki_arena_blk *b;
        if (cki_add_size(&total, sizeof *b, sz)) {
            cki_fail(a->ctx, CK_ENOMEM, "arena allocation of %zu bytes overflows", n);
            return NULL;
        }
        b = cki_malloc(a->ctx, total);
        if (!b) return NULL;
        b->next = a->head;
        b->size = sz;
        a->head = b;
        a->used = 0;
        a->size = sz;
    }
    void *p = a->head->data + a->used;
    a->used += need;
    return p;
}

char *cki_arena_strndup(cki_arena *a, const char *s, size_t n)
{
    char *d;
    if (n == SIZE_MAX) return NULL;
    d = cki_arena_alloc(a, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *cki_arena_strdup(cki_arena *a, const char *s)
{
    return cki_arena_strndup(a, s, strlen(s));
}
