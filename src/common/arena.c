/*
 * arena.c -- bump allocation in blocks, freed all at once. Tensor names,
 * shapes and strides of a 100k-tensor checkpoint live here: one malloc per
 * 64 KiB instead of three per tensor. Strings are packed byte to byte (no
 * alignment padding: a 20-byte name costs 21 bytes, not 32); everything else
 * is 16-byte aligned.
 */
#include "cki.h"

struct cki_arena_blk {
    cki_arena_blk *next;
    size_t size;
    size_t own; /* 1: holds one large piece, never bumped into */
    /* payload follows, 16-byte aligned */
    _Alignas(16) unsigned char data[];
};

/* A block's payload: 64 KiB less the block header, cki_malloc's prefix and
 * the C library's own header, so that a block the allocator maps by itself
 * (as the ckptkit command asks glibc to do for blocks this large) takes
 * exactly 16 pages, not 17. */
#define BLOCK_MIN (64 * 1024 - 128)

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

/* A block of SZ payload bytes, not linked yet. */
static cki_arena_blk *new_block(cki_arena *a, size_t sz)
{
    size_t total;
    cki_arena_blk *b;
    if (cki_add_size(&total, sizeof *b, sz)) {
        cki_fail(a->ctx, CK_ENOMEM, "arena allocation of %zu bytes overflows", sz);
        return NULL;
    }
    b = cki_malloc(a->ctx, total);
    if (!b) return NULL;
    b->next = NULL;
    b->size = sz;
    b->own = 0;
    return b;
}

/* B becomes the block that small pieces are bumped from. */
static void make_current(cki_arena *a, cki_arena_blk *b)
{
    b->next = a->head;
    a->head = b;
    a->used = 0;
    a->size = b->size;
}

/* N bytes at an offset that is a multiple of ALIGN (a power of two, at most
 * 16) within the current block; a new block when the rest is too small. */
static void *bump(cki_arena *a, size_t n, size_t align)
{
    size_t at = (a->used + align - 1) & ~(align - 1);
    cki_arena_blk *b;
    if (a->head && at <= a->size && a->size - at >= n) {
        a->used = at + n;
        return a->head->data + at;
    }
    b = new_block(a, n > BLOCK_MIN ? n : BLOCK_MIN);
    if (!b) return NULL;
    if (a->head && n > BLOCK_MIN / 2) {
        /* a large piece gets a block of its own behind the current one,
         * whose free room stays in use for the small pieces */
        b->own = 1;
        b->next = a->head->next;
        a->head->next = b;
        return b->data;
    }
    make_current(a, b);
    a->used = n;
    return b->data;
}

void *cki_arena_alloc(cki_arena *a, size_t n)
{
    return bump(a, n, 16);
}

void *cki_arena_alloc_ptrs(cki_arena *a, size_t n)
{
    return bump(a, n, 8);
}

int cki_arena_reserve(cki_arena *a, size_t n)
{
    cki_arena_blk *b;
    if (n <= BLOCK_MIN || (a->head && a->size - a->used >= n)) return 0;
    if (!(b = new_block(a, n))) return -1;
    make_current(a, b);
    return 0;
}

void cki_arena_give_back(cki_arena *a, void *p)
{
    /* a walk over the blocks (a few hundred for a 30 MB graph), once per
     * doubling of a large array */
    cki_arena_blk **link;
    if (!a->head || !p) return;
    for (link = &a->head->next; *link; link = &(*link)->next) {
        cki_arena_blk *b = *link;
        if (b->own && (void *)b->data == p) {
            *link = b->next;
            cki_free(a->ctx, b);
            return;
        }
    }
}

void cki_arena_reset(cki_arena *a)
{
    cki_arena_blk *b;
    if (!a->head) return;
    b = a->head->next;
    while (b) {
        cki_arena_blk *n = b->next;
        cki_free(a->ctx, b);
        b = n;
    }
    a->head->next = NULL;
    a->used = 0;
}

char *cki_arena_strndup(cki_arena *a, const char *s, size_t n)
{
    char *d;
    if (n == SIZE_MAX) return NULL;
    d = bump(a, n + 1, 1); /* strings need no alignment: packed back to back */
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

char *cki_arena_strdup(cki_arena *a, const char *s)
{
    return cki_arena_strndup(a, s, strlen(s));
}
