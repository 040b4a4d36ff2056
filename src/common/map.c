/*
 * map.c -- string -> index hash map with open addressing (FNV-1a, linear
 * probing, load <= 1/2). Keys are borrowed; values are indexes into the
 * caller's arrays. A slot is 16 bytes (key pointer, 24-bit length with an
 * 8-bit hash tag, 32-bit value): the hash is recomputed when the table grows rather than stored, so a
 * 100,000-name table costs 4 MiB, not 8. Used for O(1) tensor-name and zip-member lookup and for
 * duplicate detection. The hash is seeded once per process from the kernel's
 * random source, so a file cannot pick names that all collide (hash flooding
 * would make loading quadratic); lookups never depend on slot order, so
 * outputs stay deterministic.
 */
#include <stddef.h> /* before sys/random.h: emscripten's needs size_t */
#include <sys/random.h>
#include <unistd.h>

#include "cki.h"

static uint64_t seed(void)
{
    static uint64_t s;
    if (!s) {
        uint64_t r = 0;
#ifdef __EMSCRIPTEN__ /* no getrandom; getentropy asks crypto.getRandomValues */
        if (getentropy(&r, sizeof r) != 0)
#else
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
#endif
            r = (uint64_t)(uintptr_t)&r ^ 0x9e3779b97f4a7c15ull;
        s = r | 1;
    }
    return s;
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* Eight bytes a step (names are mostly 20-80 bytes), then the tail; the
 * length is folded in so that "a" and "a\0" differ. */
static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = seed() ^ (n * 0x9e3779b97f4a7c15ull);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    if (i < n) {
        uint64_t w = 0;
        memcpy(&w, s + i, n - i);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    return mix(h);
}

#define LEN_BITS 24
#define LEN_MAX ((1u << LEN_BITS) - 1)

static uint32_t len_tag(size_t len, uint64_t h)
{
    return (uint32_t)len | (uint32_t)(h >> 56) << LEN_BITS;
}

void cki_map_init(cki_map *m, ck_ctx *ctx)
{
    memset(m, 0, sizeof *m);
    m->ctx = ctx;
}

void cki_map_free(cki_map *m)
{
    cki_free(m->ctx, m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}

static int grow(cki_map *m)
{
    size_t ncap = m->cap ? m->cap * 2 : 16;
    cki_map_slot *ns;
    if (ncap < m->cap) return -1;
    ns = cki_calloc(m->ctx, ncap, sizeof *ns);
    if (!ns) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        cki_map_slot *s = &m->slots[i];
        if (!s->key) continue;
        size_t j = (size_t)hash_bytes(s->key, s->len_tag & LEN_MAX) & (ncap - 1);
        while (ns[j].key) j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    cki_free(m->ctx, m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int cki_map_reserve(cki_map *m, size_t count)
{
    while ((count + 1) * 2 > m->cap)
        if (grow(m)) return -1;
    return 0;
}

int cki_map_put(cki_map *m, const char *key, size_t key_len, size_t value, size_t *existing)
{
    size_t j;
    uint64_t h;
    uint32_t tag;
    if (key_len > LEN_MAX || (value >= UINT32_MAX && value != SIZE_MAX)) {
        cki_fail(m->ctx, CK_ELIMIT, "name of %zu bytes or index %zu is beyond the name table's "
                 "range (names below 16 MiB, indexes below 2^32 - 1)", key_len, value);
        return -1;
    }
    if ((m->count + 1) * 2 > m->cap && grow(m)) return -1;
    h = hash_bytes(key, key_len);
    tag = len_tag(key_len, h);
    j = (size_t)h & (m->cap - 1);
    while (m->slots[j].key) {
        cki_map_slot *s = &m->slots[j];
        if (s->len_tag == tag && memcmp(s->key, key, key_len) == 0) {
            if (existing) *existing = s->value == UINT32_MAX ? SIZE_MAX : s->value;
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j].key = key;
    m->slots[j].len_tag = tag;
    m->slots[j].value = value == SIZE_MAX ? UINT32_MAX : (uint32_t)value;
    m->count++;
    return 0;
}

int cki_map_get(const cki_map *m, const char *key, size_t key_len, size_t *value)
{
    size_t j;
    uint64_t h;
    uint32_t tag;
    if (!m->cap || key_len > LEN_MAX) return 1; /* never put */
    h = hash_bytes(key, key_len);
    tag = len_tag(key_len, h);
    j = (size_t)h & (m->cap - 1);
    while (m->slots[j].key) {
        const cki_map_slot *s = &m->slots[j];
        if (s->len_tag == tag && memcmp(s->key, key, key_len) == 0) {
            *value = s->value == UINT32_MAX ? SIZE_MAX : s->value;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 1;
}
