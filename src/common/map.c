/*
 * map.c -- string -> index hash map with open addressing (FNV-1a, linear
 * probing, load <= 1/2). Keys are borrowed; values are indexes into the
 * caller's arrays. Used for O(1) tensor-name and zip-member lookup and for
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

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ seed();
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    /* final avalanche so the low bits used for the slot depend on every byte */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
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
        size_t j = (size_t)s->hash & (ncap - 1);
        while (ns[j].key) j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    cki_free(m->ctx, m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

int cki_map_put(cki_map *m, const char *key, size_t key_len, size_t value, size_t *existing)
{
    uint64_t h;
    size_t j;
    if ((m->count + 1) * 2 > m->cap && grow(m)) return -1;
    h = hash_bytes(key, key_len);
    j = (size_t)h & (m->cap - 1);
    while (m->slots[j].key) {
        cki_map_slot *s = &m->slots[j];
        if (s->hash == h && s->key_len == key_len && memcmp(s->key, key, key_len) == 0) {
            if (existing) *existing = s->value;
            return 1;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j].key = key;
    m->slots[j].key_len = key_len;
    m->slots[j].hash = h;
    m->slots[j].value = value;
    m->count++;
    return 0;
}

int cki_map_get(const cki_map *m, const char *key, size_t key_len, size_t *value)
{
    uint64_t h;
    size_t j;
    if (!m->cap) return 1;
    h = hash_bytes(key, key_len);
    j = (size_t)h & (m->cap - 1);
    while (m->slots[j].key) {
        const cki_map_slot *s = &m->slots[j];
        if (s->hash == h && s->key_len == key_len && memcmp(s->key, key, key_len) == 0) {
            *value = s->value;
            return 0;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return 1;
}
