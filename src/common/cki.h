/*
 * cki.h -- internal foundations shared by every layer: the context, errors and
 * warnings, counted allocation, checked arithmetic, byte decoding, a bounded
 * cursor, a capped growable buffer, an arena and a string hash map.
 *
 * Rules this file exists to make easy:
 *  - decode on-disk integers byte by byte (cki_ld_le64), never by pointer cast;
 *  - check before computing (cki_add_u64 / cki_mul_u64 return nonzero on overflow);
 *  - read through a cursor that compares a length with what is left before it
 *    moves;
 *  - every allocation a parser makes is counted against CK_LIMIT_MEMORY.
 */
#ifndef CKI_H
#define CKI_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ckptkit.h"

#define CKI_ERRMSG_MAX 1024

struct ck_ctx {
    ck_status last;
    char errmsg[CKI_ERRMSG_MAX];
    ck_warn_fn warn;
    void *warn_user;
    ck_progress_fn progress;
    void *progress_user;
    uint64_t limits[CK_LIMIT_COUNT];
    uint64_t mem_used; /* bytes currently allocated through cki_malloc */
    uint64_t mem_peak;
    uint64_t mem_limit_effective; /* set per open from CK_LIMIT_MEMORY and input size */
    ck_output_ops out;            /* out.write != NULL: outputs go through these, not files */
};

/* ---- errors ------------------------------------------------------------ */

/* Records a one-line message and returns ST. Message shape:
 * "FILE: OBJECT: RULE (NUMBERS)"; lowercase, no trailing period. */
ck_status cki_fail(ck_ctx *ctx, ck_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
ck_status cki_vfail(ck_ctx *ctx, ck_status st, const char *fmt, va_list ap);
void cki_warn(ck_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears the last error. */
void cki_clear(ck_ctx *ctx);

/* ---- counted allocation ---------------------------------------------------
 * CTX may be NULL (uncounted). On failure these record CK_ENOMEM in CTX and
 * return NULL. Sizes are tracked so cki_free can subtract them. */
void *cki_malloc(ck_ctx *ctx, size_t n);
void *cki_calloc(ck_ctx *ctx, size_t count, size_t size);
void *cki_realloc(ck_ctx *ctx, void *p, size_t n);
void cki_free(ck_ctx *ctx, void *p);
char *cki_strdup(ck_ctx *ctx, const char *s);
/* Raises the context's effective memory limit for one more input of
 * INPUT_LEN bytes: 64 MiB base + 32 bytes per input byte, capped by
 * CK_LIMIT_MEMORY. Parsing memory is thus a documented function of the input. */
void cki_mem_allow_input(ck_ctx *ctx, uint64_t input_len);
char *cki_strndup(ck_ctx *ctx, const char *s, size_t n);

/* ---- checked arithmetic (return 1 on overflow, 0 on success) -------------- */

static inline int cki_add_u64(uint64_t *r, uint64_t a, uint64_t b)
{
    return __builtin_add_overflow(a, b, r);
}
static inline int cki_mul_u64(uint64_t *r, uint64_t a, uint64_t b)
{
    return __builtin_mul_overflow(a, b, r);
}
static inline int cki_add_size(size_t *r, size_t a, size_t b)
{
    return __builtin_add_overflow(a, b, r);
}
static inline int cki_mul_size(size_t *r, size_t a, size_t b)
{
    return __builtin_mul_overflow(a, b, r);
}
/* 1 if [off, off+len) is not inside [0, total). */
static inline int cki_out_of(uint64_t off, uint64_t len, uint64_t total)
{
    return off > total || len > total - off;
}

/* ---- byte decoding ------------------------------------------------------- */

static inline uint16_t cki_ld_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (uint16_t)p[1] << 8);
}
static inline uint32_t cki_ld_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t cki_ld_le64(const uint8_t *p)
{
    return (uint64_t)cki_ld_le32(p) | (uint64_t)cki_ld_le32(p + 4) << 32;
}
static inline uint32_t cki_ld_be32(const uint8_t *p)
{
    return (uint32_t)p[3] | (uint32_t)p[2] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[0] << 24;
}
static inline uint64_t cki_ld_be64(const uint8_t *p)
{
    return (uint64_t)cki_ld_be32(p) << 32 | (uint64_t)cki_ld_be32(p + 4);
}
static inline void cki_st_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static inline void cki_st_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void cki_st_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void cki_st_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* ---- bounded cursor -------------------------------------------------------
 * Every read compares the wanted length with what is left first; on a short
 * read it returns nonzero and does not move. */
typedef struct cki_cur {
    const uint8_t *p;
    size_t len;
    size_t pos;
} cki_cur;

static inline void cki_cur_init(cki_cur *c, const void *p, size_t len)
{
    c->p = (const uint8_t *)p;
    c->len = len;
    c->pos = 0;
}
static inline size_t cki_cur_left(const cki_cur *c)
{
    return c->len - c->pos;
}
static inline int cki_cur_take(cki_cur *c, size_t n, const uint8_t **out)
{
    if (n > c->len - c->pos) return 1;
    *out = c->p + c->pos;
    c->pos += n;
    return 0;
}
static inline int cki_cur_skip(cki_cur *c, size_t n)
{
    if (n > c->len - c->pos) return 1;
    c->pos += n;
    return 0;
}
static inline int cki_cur_u8(cki_cur *c, uint8_t *v)
{
    if (c->pos >= c->len) return 1;
    *v = c->p[c->pos++];
    return 0;
}
static inline int cki_cur_le16(cki_cur *c, uint16_t *v)
{
    const uint8_t *p;
    if (cki_cur_take(c, 2, &p)) return 1;
    *v = cki_ld_le16(p);
    return 0;
}
static inline int cki_cur_le32(cki_cur *c, uint32_t *v)
{
    const uint8_t *p;
    if (cki_cur_take(c, 4, &p)) return 1;
    *v = cki_ld_le32(p);
    return 0;
}
static inline int cki_cur_le64(cki_cur *c, uint64_t *v)
{
    const uint8_t *p;
    if (cki_cur_take(c, 8, &p)) return 1;
    *v = cki_ld_le64(p);
    return 0;
}

/* ---- capped growable buffer ---------------------------------------------- */
typedef struct cki_buf {
    ck_ctx *ctx;
    char *p;
    size_t len;
    size_t cap;
    size_t limit; /* 0: no cap beyond memory */
    int failed;   /* sticky: an append failed (ENOMEM or over limit) */
} cki_buf;

void cki_buf_init(cki_buf *b, ck_ctx *ctx, size_t limit);
void cki_buf_free(cki_buf *b);
int cki_buf_reserve(cki_buf *b, size_t extra);
int cki_buf_put(cki_buf *b, const void *p, size_t n);
int cki_buf_puts(cki_buf *b, const char *s);
int cki_buf_putc(cki_buf *b, char c);
int cki_buf_printf(cki_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends S as a JSON string literal (quotes and escapes included). */
int cki_buf_json_str(cki_buf *b, const char *s, size_t n);
/* Takes the NUL-terminated contents; the buffer is left empty. */
char *cki_buf_take(cki_buf *b);

/* ---- arena: many small allocations freed together -------------------------- */
typedef struct cki_arena_blk cki_arena_blk;
typedef struct cki_arena {
    ck_ctx *ctx;
    cki_arena_blk *head;
    size_t used; /* in head */
    size_t size; /* of head's payload */
} cki_arena;

void cki_arena_init(cki_arena *a, ck_ctx *ctx);
void cki_arena_free(cki_arena *a);
void *cki_arena_alloc(cki_arena *a, size_t n); /* 16-byte aligned; NULL + CK_ENOMEM on failure */
/* 8-byte aligned: arrays of pointers or 64-bit integers, packed tighter. */
void *cki_arena_alloc_ptrs(cki_arena *a, size_t n);
char *cki_arena_strndup(cki_arena *a, const char *s, size_t n); /* 1-byte aligned */
/* Frees every block but the newest and empties it: scratch memory reused per item. */
void cki_arena_reset(cki_arena *a);
/* P, a piece of at least 32 KiB that the arena gave out (it has a block of
 * its own), goes back now instead of with the arena: for an array that grew
 * into a new piece. Other pointers are left alone. */
void cki_arena_give_back(cki_arena *a, void *p);
/* Room for at least N more bytes in the current block (a new block of N
 * bytes if not), so that the next pieces up to N bytes lie together: 0, or
 * -1 out of memory. */
int cki_arena_reserve(cki_arena *a, size_t n);
char *cki_arena_strdup(cki_arena *a, const char *s);

/* ---- string -> index hash map (open addressing, keys borrowed) ------------
 * 16 bytes a slot, at most half the slots used: 32 to 64 bytes per key. Keys
 * up to 4 GiB - 1 bytes; values below 2^32 - 1 (indexes into the caller's
 * arrays) or SIZE_MAX (a "none" marker, kept as such); cki_map_put refuses
 * others (-1). */
typedef struct cki_map_slot {
    const char *key;
    uint32_t len_tag; /* the key's length (below 2^24) in the low 24 bits, the top 8
                       * bits of its hash above: most slots another key probes are
                       * passed over without reading their key (a cache miss each in
                       * a 100,000-name table) */
    uint32_t value;
} cki_map_slot;
typedef struct cki_map {
    ck_ctx *ctx;
    cki_map_slot *slots;
    size_t cap; /* power of two */
    size_t count;
} cki_map;

void cki_map_init(cki_map *m, ck_ctx *ctx);
void cki_map_free(cki_map *m);
/* Inserts KEY -> VALUE. Returns 0 inserted, 1 already present (*existing set,
 * map unchanged), -1 out of memory. KEY must outlive the map. */
int cki_map_put(cki_map *m, const char *key, size_t key_len, size_t value, size_t *existing);
/* Room for COUNT keys without growing: 0, or -1 out of memory. */
int cki_map_reserve(cki_map *m, size_t count);
/* 0 found (*value set), 1 absent. */
int cki_map_get(const cki_map *m, const char *key, size_t key_len, size_t *value);

/* ---- CRC-32 ------------------------------------------------------------- */

/* zlib's crc32() over any length (start with 0), carry-less multiply where the
 * CPU has it. */
uint32_t cki_crc32(uint32_t crc, const void *p, uint64_t n);

/* ---- misc ---------------------------------------------------------------- */

/* 1 if S[0..n) is valid UTF-8 (no overlongs, no surrogates). */
int cki_utf8_valid(const uint8_t *s, size_t n);
/* shell-style glob: '*' any run, '?' one byte, '[...]' classes. */
int cki_glob_match(const char *pattern, const char *s);
/* The last path component of PATH (borrowed pointer into PATH). */
const char *cki_basename(const char *path);

#endif /* CKI_H */
