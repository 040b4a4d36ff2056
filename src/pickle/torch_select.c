/*
 * torch_select.c -- which tensors of a torch object graph a checkpoint
 * exposes and under which names; the JSON rendering of everything else; and
 * Lightning's scalar metadata. See torch_objects.h for the rules.
 *
 * Walks over the graph mark the containers on the current path (cki_tobj
 * .mark) and never enter one already on it, so cycles such as
 * data["state_dict"] = data end; shared containers are expanded once per
 * path, like torch.load's result would show them, within an expansion budget
 * that stops exponential blowup from nested shared references (16 visits per
 * object, at least 2^20, at most 2^26) and at most CK_LIMIT_TENSORS names.
 * Names are dotted paths: dict keys as text (ints in decimal), sequence
 * indices, module attribute names.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "torch_objects.h"

#include "../tensor/tensor.h"

#define SELECT_BUDGET (64ull << 20)
#define SELECT_MIN_BUDGET (1u << 20)
#define MAX_RULE_STEPS 16
#define MAX_STR_JSON 65536u

typedef struct walker {
    cki_trec *r;
    cki_tselect *out;
    cki_buf path;
    uint64_t visits, budget;
    uint32_t depth;
    const cki_tobj *leaf_key; /* the key walk_child last followed */
} walker;

/* ---- key text ------------------------------------------------------------- */

/* Appends the text form of a dict key (str as is, int in decimal). */
static void put_key(cki_buf *b, const cki_tobj *k)
{
    if (!k) {
        cki_buf_puts(b, "None");
        return;
    }
    switch (k->kind) {
    case CKI_TO_STR:
    case CKI_TO_BYTES:
        /* a NUL would cut the name short in C strings: spell it out */
        for (uint64_t i = 0; i < k->u.s.len; i++) {
            if (k->u.s.p[i]) cki_buf_putc(b, k->u.s.p[i]);
            else cki_buf_puts(b, "\\x00");
        }
        break;
    case CKI_TO_INT: cki_buf_printf(b, "%lld", (long long)k->u.i); break;
    case CKI_TO_BOOL: cki_buf_puts(b, k->u.i ? "True" : "False"); break;
    case CKI_TO_FLOAT: cki_buf_printf(b, "%.17g", k->u.f); break;
    case CKI_TO_NONE: cki_buf_puts(b, "None"); break;
    case CKI_TO_GLOBAL:
    case CKI_TO_OBJECT: cki_buf_printf(b, "%s.%s", k->u.g.module, k->u.g.name); break;
    case CKI_TO_DTYPE: cki_buf_printf(b, "torch.%s", k->u.dt.name); break;
    default: cki_buf_printf(b, "<%s>", k->kind == CKI_TO_TUPLE ? "tuple" : "key"); break;
    }
}

/* The distinct keys of a dict in first-seen order, each with the index of its
 * last pair: a pickle may repeat a key, and like a Python dict the key keeps
 * its first position and takes its last value. Keys are compared by text
 * (BY_KIND: by kind and text, so 1 and "1" stay apart). */
typedef struct keyset {
    const char **key; /* [kind byte] + text, in TEXT */
    size_t *klen;     /* bytes of key */
    size_t skip;      /* 1 when keys carry a kind byte */
    size_t *last;     /* index of the last pair with this key (valid at first pairs) */
    cki_map first;    /* key -> index of its first pair */
    cki_arena text;   /* the keys' text: freed with the set (a 100,000-key dict: 3 MB that
                       * would otherwise stay for the reader's whole life) */
} keyset;

static void keyset_free(cki_trec *r, keyset *ks)
{
    cki_map_free(&ks->first);
    cki_arena_free(&ks->text);
    cki_free(r->ctx, ks->key);
    cki_free(r->ctx, ks->klen);
    cki_free(r->ctx, ks->last);
    memset(ks, 0, sizeof *ks);
}

static ck_status keyset_build(cki_trec *r, const cki_tobj *d, int by_kind, keyset *ks)
{
    memset(ks, 0, sizeof *ks);
    cki_map_init(&ks->first, r->ctx);
    cki_arena_init(&ks->text, r->ctx);
    ks->skip = by_kind ? 1 : 0;
    if (!d->n) return CK_OK;
    ks->key = cki_malloc(r->ctx, sizeof *ks->key * d->n);
    ks->klen = cki_malloc(r->ctx, sizeof *ks->klen * d->n);
    ks->last = cki_malloc(r->ctx, sizeof *ks->last * d->n);
    if (!ks->key || !ks->klen || !ks->last) goto oom;
    for (uint32_t i = 0; i < d->n; i++) {
        const cki_tobj *k = d->items[2 * i];
        cki_buf kb;
        size_t at;
        int res;
        cki_buf_init(&kb, r->ctx, 0);
        if (by_kind) cki_buf_putc(&kb, (char)('A' + (k ? (int)k->kind : 0)));
        put_key(&kb, k);
        ks->key[i] = kb.failed ? NULL : cki_arena_strndup(&ks->text, kb.p ? kb.p : "", kb.len);
        ks->klen[i] = kb.len;
        cki_buf_free(&kb);
        if (!ks->key[i]) goto oom;
        ks->last[i] = i;
        res = cki_map_put(&ks->first, ks->key[i], ks->klen[i], i, &at);
        if (res < 0) goto oom;
        if (res == 1) ks->last[at] = i;
    }
    return CK_OK;
oom:
    keyset_free(r, ks);
    return CK_ENOMEM;
}

/* 1 if pair I is the first with its key: the one to print or walk, with the
 * value of pair ks->last[I]. */
static int keyset_first(const keyset *ks, uint32_t i)
{
    size_t at;
    return !cki_map_get(&ks->first, ks->key[i], ks->klen[i], &at) && at == i;
}

/* ---- naming walk ------------------------------------------------------------- */

static ck_status emit(walker *w, cki_tobj *t)
{
    cki_tselect *s = w->out;
    const char *name = w->path.len ? w->path.p : "tensor";
    size_t len = w->path.len ? w->path.len : 6;
    uint64_t limit = w->r->ctx ? w->r->ctx->limits[CK_LIMIT_TENSORS] : 0;
    if (w->path.failed) return CK_ENOMEM;
    if (limit && s->count >= limit)
        return cki_fail(w->r->ctx, CK_ELIMIT, "%s: more than %llu tensors (limit)", w->r->file,
                        (unsigned long long)limit);
    if (s->count == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        cki_tnamed *n = cki_realloc(w->r->ctx, s->v, ncap * sizeof *n);
        if (!n) return CK_ENOMEM;
        s->v = n;
        s->cap = ncap;
    }
    if (w->r->names && w->r->text == w->r->names && w->leaf_key &&
        w->leaf_key->kind == CKI_TO_STR && w->leaf_key->u.s.len == len &&
        !memcmp(w->leaf_key->u.s.p, name, len)) {
        /* the name is that key's text, already in the names' arena (a
         * top-level key of a state dict): no second copy */
        s->v[s->count].name = w->leaf_key->u.s.p;
    } else {
        s->v[s->count].name =
            cki_arena_strndup(w->r->names ? w->r->names : w->r->arena, name, len);
    }
    if (!s->v[s->count].name) return CK_ENOMEM;
    s->v[s->count].name_len = len;
    s->v[s->count].tensor = t;
    s->count++;
    return CK_OK;
}

static size_t push(walker *w, const cki_tobj *key, uint64_t index)
{
    size_t old = w->path.len;
    if (old) cki_buf_putc(&w->path, '.');
    if (key) put_key(&w->path, key);
    else cki_buf_printf(&w->path, "%llu", (unsigned long long)index);
    return old;
}

static void pop(walker *w, size_t old)
{
    w->path.len = old;
    if (w->path.p) w->path.p[old] = 0;
}

static ck_status walk(walker *w, cki_tobj *t);

static ck_status walk_child(walker *w, const cki_tobj *key, uint64_t index, cki_tobj *child)
{
    size_t old;
    ck_status st;
    if (!child) return CK_OK;
    /* leaves that cannot hold tensors are not worth a path */
    switch (child->kind) {
    case CKI_TO_TENSOR:
    case CKI_TO_TUPLE:
    case CKI_TO_LIST:
    case CKI_TO_SET:
    case CKI_TO_DICT:
    case CKI_TO_OBJECT: break;
    default: return CK_OK;
    }
    w->leaf_key = key;
    old = push(w, key, index);
    st = walk(w, child);
    pop(w, old);
    return st;
}

static ck_status walk_dict(walker *w, const cki_tobj *d)
{
    keyset ks;
    ck_status st = CK_OK;
    if (!d) return CK_OK;
    if ((st = keyset_build(w->r, d, 1, &ks))) return st;
    for (uint32_t i = 0; i < d->n && !st; i++)
        if (keyset_first(&ks, i))
            st = walk_child(w, d->items[2 * i], 0, d->items[2 * ks.last[i] + 1]);
    keyset_free(w->r, &ks);
    return st;
}

static ck_status walk_seq(walker *w, const cki_tobj *s)
{
    ck_status st;
    for (uint32_t i = 0; s && i < s->n; i++)
        if ((st = walk_child(w, NULL, i, s->items[i]))) return st;
    return CK_OK;
}

static int in_set(const cki_tobj *set, const cki_tobj *key)
{
    if (!set || !key || key->kind != CKI_TO_STR) return 0;
    for (uint32_t i = 0; i < set->n; i++) {
        const cki_tobj *e = set->items[i];
        if (e && e->kind == CKI_TO_STR && e->u.s.len == key->u.s.len &&
            !memcmp(e->u.s.p, key->u.s.p, key->u.s.len))
            return 1;
    }
    return 0;
}

/* nn.Module: what module.state_dict() names: parameters, persistent
 * buffers, then submodules, recursively. */
enum { PAIRS_ALL, PAIRS_TENSORS, PAIRS_PERSISTENT_TENSORS };

/* The pairs of a module's _parameters, _buffers or _modules dict, each key
 * once (last value). */
static ck_status walk_pairs(walker *w, const cki_tobj *d, int which, const cki_tobj *nonp)
{
    keyset ks;
    ck_status st = CK_OK;
    if (!d) return CK_OK;
    if ((st = keyset_build(w->r, d, 1, &ks))) return st;
    for (uint32_t i = 0; i < d->n && !st; i++) {
        cki_tobj *v;
        if (!keyset_first(&ks, i)) continue;
        v = d->items[2 * ks.last[i] + 1];
        if (which != PAIRS_ALL && (!v || v->kind != CKI_TO_TENSOR)) continue;
        if (which == PAIRS_PERSISTENT_TENSORS && in_set(nonp, d->items[2 * i])) continue;
        st = walk_child(w, d->items[2 * i], 0, v);
    }
    keyset_free(w->r, &ks);
    return st;
}

/* nn.Module: what module.state_dict() names: parameters, persistent
 * buffers, then submodules, recursively. */
static ck_status walk_module(walker *w, cki_tobj *m)
{
    const cki_tobj *params = cki_tobj_as_dict(cki_tobj_get(cki_tobj_state(m), "_parameters"));
    const cki_tobj *bufs = cki_tobj_as_dict(cki_tobj_get(cki_tobj_state(m), "_buffers"));
    const cki_tobj *mods = cki_tobj_as_dict(cki_tobj_get(cki_tobj_state(m), "_modules"));
    const cki_tobj *nonp = cki_tobj_get(cki_tobj_state(m), "_non_persistent_buffers_set");
    ck_status st;
    if ((st = walk_pairs(w, params, PAIRS_TENSORS, NULL))) return st;
    if ((st = walk_pairs(w, bufs, PAIRS_PERSISTENT_TENSORS, nonp))) return st;
    return walk_pairs(w, mods, PAIRS_ALL, NULL);
}

static ck_status walk(walker *w, cki_tobj *t)
{
    ck_status st = CK_OK;
    if (!t) return CK_OK;
    if (++w->visits > w->budget)
        return cki_fail(w->r->ctx, CK_ELIMIT,
                        "%s: %s: the object graph of %llu objects expands to more than %llu "
                        "entries (shared containers nested too often)",
                        w->r->file, w->r->where, (unsigned long long)w->r->objects,
                        (unsigned long long)w->budget);
    if (t->kind == CKI_TO_TENSOR) return emit(w, t);
    if (t->mark) return CK_OK; /* already on the path: a cycle */
    if (w->depth >= w->r->max_depth + 8u)
        return cki_fail(w->r->ctx, CK_ELIMIT, "%s: %s: objects nested deeper than %u levels",
                        w->r->file, w->r->where, w->r->max_depth);
    t->mark = 1;
    w->depth++;
    switch (t->kind) {
    case CKI_TO_DICT: st = walk_dict(w, t); break;
    case CKI_TO_TUPLE:
    case CKI_TO_LIST:
    case CKI_TO_SET: st = walk_seq(w, t); break;
    case CKI_TO_OBJECT:
        if (cki_tobj_is_module(t)) {
            st = walk_module(w, t);
            break;
        }
        if (cki_tobj_dict(t) && (st = walk_dict(w, cki_tobj_as_dict(cki_tobj_dict(t))))) break;
        if (cki_tobj_list(t) && (st = walk_seq(w, cki_tobj_list(t)))) break;
        if (cki_tobj_state(t)) {
            cki_tobj *s = cki_tobj_state(t);
            if (s->kind == CKI_TO_DICT) {
                if ((st = walk_dict(w, s))) break;
            } else if (s->kind == CKI_TO_TUPLE && s->n == 2 &&
                       (!s->items[0] || s->items[0]->kind == CKI_TO_DICT ||
                        s->items[0]->kind == CKI_TO_NONE) &&
                       (!s->items[1] || s->items[1]->kind == CKI_TO_DICT ||
                        s->items[1]->kind == CKI_TO_NONE)) {
                /* (dict, slots) */
                if ((st = walk_dict(w, s->items[0] && s->items[0]->kind == CKI_TO_DICT
                                           ? s->items[0]
                                           : NULL)))
                    break;
                if ((st = walk_dict(w, s->items[1] && s->items[1]->kind == CKI_TO_DICT
                                           ? s->items[1]
                                           : NULL)))
                    break;
            } else {
                static const cki_tobj state_key = {.kind = CKI_TO_STR, .u.s = {"state", 5}};
                if ((st = walk_child(w, &state_key, 0, s))) break;
            }
        }
        if (cki_tobj_args(t) && cki_tobj_args(t)->n) {
            static const cki_tobj args_key = {.kind = CKI_TO_STR, .u.s = {"args", 4}};
            st = walk_child(w, &args_key, 0, cki_tobj_args(t));
        }
        break;
    default: break;
    }
    w->depth--;
    t->mark = 0;
    return st;
}

/* ---- rule helpers ----------------------------------------------------------- */

/* 1 if a tensor is reachable from T (each container looked at once). */
static int holds_tensors(cki_trec *r, cki_tobj *t, uint32_t depth, uint64_t *visits)
{
    if (!t || ++*visits > SELECT_BUDGET || depth > r->max_depth + 8u) return 0;
    if (t->kind == CKI_TO_TENSOR) return 1;
    if (t->seen == r->epoch) return 0;
    t->seen = r->epoch;
    switch (t->kind) {
    case CKI_TO_DICT:
        for (uint32_t i = 0; i < t->n; i++)
            if (holds_tensors(r, t->items[2 * i + 1], depth + 1, visits)) return 1;
        return 0;
    case CKI_TO_TUPLE:
    case CKI_TO_LIST:
    case CKI_TO_SET:
        for (uint32_t i = 0; i < t->n; i++)
            if (holds_tensors(r, t->items[i], depth + 1, visits)) return 1;
        return 0;
    case CKI_TO_OBJECT:
        return holds_tensors(r, cki_tobj_dict(t), depth + 1, visits) ||
               holds_tensors(r, cki_tobj_list(t), depth + 1, visits) ||
               holds_tensors(r, cki_tobj_state(t), depth + 1, visits) ||
               holds_tensors(r, cki_tobj_args(t), depth + 1, visits);
    default: return 0;
    }
}

static int any_tensor(cki_trec *r, cki_tobj *t)
{
    uint64_t visits = 0;
    r->epoch++;
    return holds_tensors(r, t, 0, &visits);
}

static int flat_state_dict(const cki_tobj *d)
{
    if (!d || d->n == 0) return 0;
    for (uint32_t i = 0; i < d->n; i++) {
        const cki_tobj *v = d->items[2 * i + 1];
        if (!v || v->kind != CKI_TO_TENSOR) return 0;
    }
    return 1;
}

/* The child of T at the start of PATH (key text as a prefix followed by '.'
 * or the end); the longest matching key wins. *USED: bytes of PATH taken. */
static cki_tobj *child_at(const cki_tobj *t, const char *path, size_t *used)
{
    const cki_tobj *d;
    cki_tobj *best = NULL;
    size_t best_len = 0;
    char tmp[64];
    if (!t) return NULL;
    if (t->kind == CKI_TO_TUPLE || t->kind == CKI_TO_LIST || t->kind == CKI_TO_SET) {
        char *end;
        unsigned long long i = strtoull(path, &end, 10);
        if (end == path || (*end && *end != '.') || i >= t->n) return NULL;
        *used = (size_t)(end - path);
        return t->items[i];
    }
    if (cki_tobj_is_module(t)) {
        static const char *const attrs[] = {"_modules", "_parameters", "_buffers"};
        for (int a = 0; a < 3; a++) {
            cki_tobj *c = child_at(cki_tobj_get(cki_tobj_state(t), attrs[a]), path, used);
            if (c) return c;
        }
    }
    for (int pass = 0; pass < 3; pass++) {
        d = pass == 0   ? cki_tobj_as_dict(t)
            : pass == 1 ? (t->kind == CKI_TO_OBJECT ? cki_tobj_state(t) : NULL)
                        : NULL;
        if (pass == 2 && t->kind == CKI_TO_OBJECT && cki_tobj_state(t) && cki_tobj_state(t)->kind == CKI_TO_TUPLE &&
            cki_tobj_state(t)->n == 2)
            d = cki_tobj_state(t)->items[0];
        if (!d || d->kind != CKI_TO_DICT) continue;
        for (uint32_t i = 0; i < d->n; i++) {
            const cki_tobj *k = d->items[2 * i];
            if (k && (k->kind == CKI_TO_STR || k->kind == CKI_TO_BYTES)) {
                size_t kl = (size_t)k->u.s.len;
                if (kl >= best_len && !strncmp(path, k->u.s.p, kl) &&
                    (path[kl] == 0 || path[kl] == '.')) {
                    best = d->items[2 * i + 1];
                    best_len = kl;
                }
            } else if (k && (k->kind == CKI_TO_INT || k->kind == CKI_TO_BOOL)) {
                size_t kl;
                if (k->kind == CKI_TO_INT) snprintf(tmp, sizeof tmp, "%lld", (long long)k->u.i);
                else snprintf(tmp, sizeof tmp, "%s", k->u.i ? "True" : "False");
                kl = strlen(tmp);
                if (kl >= best_len && !strncmp(path, tmp, kl) &&
                    (path[kl] == 0 || path[kl] == '.')) {
                    best = d->items[2 * i + 1];
                    best_len = kl;
                }
            }
        }
        if (best) break;
    }
    if (best) *used = best_len;
    return best;
}

static ck_status expose(walker *w, cki_tobj *node)
{
    if (cki_tobj_is_module(node)) {
        ck_status st;
        node->mark = 1;
        st = walk_module(w, node);
        node->mark = 0;
        return st;
    }
    return walk(w, node);
}

ck_status cki_torch_select(cki_trec *r, cki_tobj *root, const char *key, int all,
                           cki_tselect *out)
{
    static const char *const rule_keys[] = {"state_dict", "model_state_dict", "model", "module",
                                            "net",        "params",           "ema"};
    walker w;
    cki_buf where;
    ck_status st = CK_OK;
    cki_tobj *node = root;

    memset(out, 0, sizeof *out);
    memset(&w, 0, sizeof w);
    w.r = r;
    w.out = out;
    /* each object may be reached along a few paths (a state dict saved twice,
     * tied weights); exponentially many is an attack */
    w.budget = r->objects > SELECT_BUDGET / 16 ? SELECT_BUDGET : r->objects * 16;
    if (w.budget < SELECT_MIN_BUDGET) w.budget = SELECT_MIN_BUDGET;
    cki_buf_init(&w.path, r->ctx, 0);
    cki_buf_init(&where, r->ctx, 0);
    cki_buf_puts(&where, "");

    if (all) {
        st = walk(&w, root);
    } else if (key && *key) {
        const char *p = key;
        while (*p) {
            size_t used = 0;
            cki_tobj *c = child_at(node, p, &used);
            if (!c) {
                st = cki_fail(r->ctx, CK_ENOTFOUND,
                              "%s: key '%s': no entry '%.*s' at '%.*s'", r->file, key,
                              (int)strcspn(p, "."), p, (int)(p > key ? p - key - 1 : 0), key);
                goto done;
            }
            node = c;
            p += used;
            if (*p == '.') p++;
        }
        if (node->kind == CKI_TO_TENSOR) {
            cki_buf_puts(&w.path, key);
            st = emit(&w, node);
        } else {
            st = expose(&w, node);
        }
        if (!st && out->count == 0)
            st = cki_fail(r->ctx, CK_ENOTFOUND, "%s: key '%s' holds no tensors", r->file, key);
        out->exposed = node;
        cki_buf_puts(&where, key);
    } else {
        cki_tobj *chain[MAX_RULE_STEPS];
        int steps = 0;
        for (;;) {
            const cki_tobj *d;
            cki_tobj *next = NULL;
            const char *next_key = NULL;
            if (node->kind == CKI_TO_TENSOR) {
                st = emit(&w, node);
                break;
            }
            if (cki_tobj_is_module(node)) {
                st = expose(&w, node);
                out->exposed = node;
                break;
            }
            d = cki_tobj_as_dict(node);
            if (d && flat_state_dict(d)) {
                st = walk(&w, node);
                out->exposed = node;
                break;
            }
            for (size_t k = 0; d && k < sizeof rule_keys / sizeof rule_keys[0]; k++) {
                cki_tobj *v = cki_tobj_get(d, rule_keys[k]);
                int seen = v == node;
                for (int i = 0; i < steps; i++)
                    if (chain[i] == v) seen = 1;
                if (v && !seen && any_tensor(r, v)) {
                    next = v;
                    next_key = rule_keys[k];
                    break;
                }
            }
            if (!next || steps == MAX_RULE_STEPS) {
                st = walk(&w, node);
                if (node != root) out->exposed = node;
                break;
            }
            chain[steps++] = node;
            node = next;
            if (where.len) cki_buf_putc(&where, '.');
            cki_buf_puts(&where, next_key);
        }
    }
done:
    if (!st && (w.path.failed || where.failed)) st = CK_ENOMEM;
    if (!st) {
        out->exposed_path = cki_arena_strdup(r->arena, where.p ? where.p : "");
        if (!out->exposed_path) st = CK_ENOMEM;
    }
    cki_buf_free(&w.path);
    cki_buf_free(&where);
    if (st) cki_tselect_free(r->ctx, out);
    return st;
}

void cki_tselect_free(ck_ctx *ctx, cki_tselect *s)
{
    if (!s) return;
    cki_free(ctx, s->v);
    memset(s, 0, sizeof *s);
}

/* ---- values as JSON ----------------------------------------------------------- */

typedef struct jw {
    cki_trec *r;
    const cki_tselect *sel;
    cki_buf b;
    uint32_t depth;
} jw;

static void json_text(cki_buf *b, const char *s, size_t n)
{
    if (cki_utf8_valid((const uint8_t *)s, n)) {
        cki_buf_json_str(b, s, n);
        return;
    }
    cki_buf_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) cki_buf_putc(b, '?');
        else if (c == '"' || c == '\\') cki_buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) cki_buf_printf(b, "\\u%04x", c);
        else cki_buf_putc(b, (char)c);
    }
    cki_buf_putc(b, '"');
}

/* The shortest of %.15g, %.16g, %.17g that reads back as F (0.9, not
 * 0.90000000000000002); NaN and infinities as strings (JSON has none). */
static void json_double(cki_buf *b, double f)
{
    char tmp[40];
    if (isnan(f)) {
        cki_buf_puts(b, "\"NaN\"");
        return;
    }
    if (isinf(f)) {
        cki_buf_puts(b, f > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return;
    }
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f) break;
    }
    cki_buf_puts(b, tmp);
    /* keep floats recognisable as floats: 2.0 is "2.0", not "2" */
    if (!strpbrk(tmp, ".eEn")) cki_buf_puts(b, ".0");
}

static void json_bigint(cki_buf *b, const uint8_t *p, uint64_t n)
{
    __int128 v = 0;
    unsigned __int128 u;
    char digits[48];
    int k = 0, neg;
    if (n == 0 || n > 16) {
        cki_buf_printf(b, "{\"bigint_bytes\": %llu}", (unsigned long long)n);
        return;
    }
    for (uint64_t i = n; i-- > 0;) v = (__int128)((unsigned __int128)v << 8 | p[i]);
    if (n < 16 && (p[n - 1] & 0x80)) v -= (__int128)((unsigned __int128)1 << (8 * n));
    neg = v < 0;
    u = neg ? (unsigned __int128)(-(v + 1)) + 1 : (unsigned __int128)v;
    do {
        digits[k++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (neg) cki_buf_putc(b, '-');
    while (k) cki_buf_putc(b, digits[--k]);
}

static void json_shape(cki_buf *b, int ndim, const int64_t *shape)
{
    cki_buf_putc(b, '[');
    for (int i = 0; i < ndim; i++) cki_buf_printf(b, "%s%lld", i ? ", " : "", (long long)shape[i]);
    cki_buf_putc(b, ']');
}

/* Up to 64 numeric values of a small numpy array. */
static void json_array_values(cki_buf *b, const cki_tarray *a)
{
    const char *d = a->dtype;
    int be = d[0] == '>', size = cki_np_itemsize(d);
    char kind = d[1];
    uint64_t n;
    if (size <= 0 || size > 8 || (size & (size - 1)) || a->len / (uint64_t)size > 64) return;
    if (kind != 'i' && kind != 'u' && kind != 'b' && !(kind == 'f' && size >= 4)) return;
    n = a->len / (uint64_t)size;
    cki_buf_puts(b, ", \"values\": [");
    for (uint64_t i = 0; i < n; i++) {
        uint8_t e[8];
        uint64_t v = 0;
        for (int j = 0; j < size; j++) e[j] = a->data[i * (uint64_t)size + (be ? size - 1 - j : j)];
        for (int j = size - 1; j >= 0; j--) v = v << 8 | e[j];
        if (i) cki_buf_puts(b, ", ");
        if (kind == 'b') {
            cki_buf_puts(b, v ? "true" : "false");
        } else if (kind == 'u') {
            cki_buf_printf(b, "%llu", (unsigned long long)v);
        } else if (kind == 'i') {
            if (size < 8 && (v >> (8 * size - 1)) & 1) v |= ~0ull << (8 * size);
            cki_buf_printf(b, "%lld", (long long)v);
        } else if (size == 4) {
            float f;
            uint32_t w32 = (uint32_t)v;
            memcpy(&f, &w32, 4);
            json_double(b, f);
        } else {
            double f;
            memcpy(&f, &v, 8);
            json_double(b, f);
        }
    }
    cki_buf_putc(b, ']');
}

static void render(jw *j, const cki_tobj *t);

static void render_seq(jw *j, const cki_tobj *t)
{
    cki_buf_putc(&j->b, '[');
    for (uint32_t i = 0; i < t->n; i++) {
        if (i) cki_buf_puts(&j->b, ", ");
        render(j, t->items[i]);
    }
    cki_buf_putc(&j->b, ']');
}

/* A dict's pairs as a JSON object, each key once (keyset: JSON compares
 * keys by text, so 1 and "1" merge too, the later value winning). */
static void render_dict(jw *j, const cki_tobj *t)
{
    keyset ks;
    size_t k = 0;
    if (keyset_build(j->r, t, 0, &ks)) {
        j->b.failed = 1;
        return;
    }
    cki_buf_putc(&j->b, '{');
    for (uint32_t i = 0; i < t->n; i++) {
        if (!keyset_first(&ks, i)) continue;
        if (k++) cki_buf_puts(&j->b, ", ");
        json_text(&j->b, ks.key[i], ks.klen[i]);
        cki_buf_puts(&j->b, ": ");
        render(j, t->items[2 * ks.last[i] + 1]);
    }
    cki_buf_putc(&j->b, '}');
    keyset_free(j->r, &ks);
}

static void render_tensor(jw *j, const cki_ttensor *tt)
{
    cki_buf *b = &j->b;
    cki_buf_puts(b, "{\"tensor\": {\"dtype\": ");
    if (tt->dtype != CK_DT_COUNT) cki_buf_printf(b, "\"%s\"", ck_dtype_name(tt->dtype));
    else if (tt->torch_dtype) json_text(b, tt->torch_dtype, strlen(tt->torch_dtype));
    else cki_buf_puts(b, "null");
    cki_buf_puts(b, ", \"shape\": ");
    if (tt->ndim >= 0) json_shape(b, tt->ndim, tt->shape);
    else cki_buf_puts(b, "null");
    if (tt->unsupported) {
        cki_buf_puts(b, ", \"unsupported\": ");
        json_text(b, tt->unsupported, strlen(tt->unsupported));
    }
    cki_buf_puts(b, "}}");
}

/* The exposed state dict: how many tensors it gives, and the ones skipped. */
static void render_exposed(jw *j)
{
    const cki_tselect *sel = j->sel;
    size_t ok = 0, skipped = 0;
    for (size_t i = 0; i < sel->count; i++) {
        if (sel->v[i].tensor->u.t->unsupported) skipped++;
        else ok++;
    }
    cki_buf_printf(&j->b, "{\"tensors\": %zu", ok);
    if (skipped) {
        size_t k = 0;
        cki_buf_puts(&j->b, ", \"skipped\": {");
        for (size_t i = 0; i < sel->count && j->b.len <= CKI_TORCH_JSON_MAX; i++) {
            if (!sel->v[i].tensor->u.t->unsupported) continue;
            if (k++) cki_buf_puts(&j->b, ", ");
            json_text(&j->b, sel->v[i].name, sel->v[i].name_len);
            cki_buf_puts(&j->b, ": ");
            render_tensor(j, sel->v[i].tensor->u.t);
        }
        cki_buf_putc(&j->b, '}');
    }
    cki_buf_putc(&j->b, '}');
}

static void render(jw *j, const cki_tobj *t)
{
    cki_buf *b = &j->b;
    if (b->len > CKI_TORCH_JSON_MAX) {
        cki_buf_puts(b, "\"...\"");
        return;
    }
    if (!t) {
        cki_buf_puts(b, "null");
        return;
    }
    if (j->sel && j->sel->exposed == t) {
        render_exposed(j);
        return;
    }
    switch (t->kind) {
    case CKI_TO_NONE: cki_buf_puts(b, "null"); return;
    case CKI_TO_BOOL: cki_buf_puts(b, t->u.i ? "true" : "false"); return;
    case CKI_TO_INT: cki_buf_printf(b, "%lld", (long long)t->u.i); return;
    case CKI_TO_BIGINT: json_bigint(b, (const uint8_t *)t->u.s.p, t->u.s.len); return;
    case CKI_TO_FLOAT: json_double(b, t->u.f); return;
    case CKI_TO_COMPLEX:
        cki_buf_puts(b, "{\"complex\": [");
        json_double(b, t->u.c[0]);
        cki_buf_puts(b, ", ");
        json_double(b, t->u.c[1]);
        cki_buf_puts(b, "]}");
        return;
    case CKI_TO_STR:
        if (t->u.s.len > MAX_STR_JSON)
            cki_buf_printf(b, "{\"str_bytes\": %llu}", (unsigned long long)t->u.s.len);
        else json_text(b, t->u.s.p, (size_t)t->u.s.len);
        return;
    case CKI_TO_BYTES:
        cki_buf_printf(b, "{\"bytes\": %llu}", (unsigned long long)t->u.s.len);
        return;
    case CKI_TO_TENSOR: render_tensor(j, t->u.t); return;
    case CKI_TO_STORAGE:
        cki_buf_puts(b, "{\"storage\": {\"type\": ");
        json_text(b, t->u.st->type_name, strlen(t->u.st->type_name));
        cki_buf_puts(b, ", \"key\": ");
        json_text(b, t->u.st->key, strlen(t->u.st->key));
        cki_buf_printf(b, ", \"numel\": %llu}}", (unsigned long long)t->u.st->numel);
        return;
    case CKI_TO_DTYPE:
        cki_buf_puts(b, "{\"dtype\": ");
        json_text(b, t->u.dt.name, strlen(t->u.dt.name));
        cki_buf_putc(b, '}');
        return;
    case CKI_TO_NPDTYPE:
        cki_buf_puts(b, "{\"numpy_dtype\": ");
        json_text(b, t->u.s.p, (size_t)t->u.s.len);
        cki_buf_putc(b, '}');
        return;
    case CKI_TO_GLOBAL:
        cki_buf_puts(b, "{\"global\": ");
        {
            cki_buf g;
            cki_buf_init(&g, j->r->ctx, 0);
            cki_buf_printf(&g, "%s.%s", t->u.g.module, t->u.g.name);
            json_text(b, g.p ? g.p : "", g.len);
            cki_buf_free(&g);
        }
        cki_buf_putc(b, '}');
        return;
    case CKI_TO_ARRAY: {
        const cki_tarray *a = t->u.arr;
        cki_buf_puts(b, "{\"ndarray\": {\"dtype\": ");
        json_text(b, a->dtype, strlen(a->dtype));
        cki_buf_puts(b, ", \"shape\": ");
        json_shape(b, a->ndim, a->shape);
        if (a->fortran) cki_buf_puts(b, ", \"fortran_order\": true");
        json_array_values(b, a);
        cki_buf_printf(b, ", \"bytes\": %llu}}", (unsigned long long)a->len);
        return;
    }
    default: break;
    }
    /* containers */
    if (t->mark || j->depth > j->r->max_depth + 8u) {
        cki_buf_puts(b, "{\"cycle\": true}");
        return;
    }
    ((cki_tobj *)t)->mark = 1;
    j->depth++;
    switch (t->kind) {
    case CKI_TO_TUPLE:
    case CKI_TO_LIST: render_seq(j, t); break;
    case CKI_TO_SET:
        cki_buf_puts(b, "{\"set\": ");
        render_seq(j, t);
        cki_buf_putc(b, '}');
        break;
    case CKI_TO_SLICE:
        cki_buf_puts(b, "{\"slice\": ");
        render_seq(j, t);
        cki_buf_putc(b, '}');
        break;
    case CKI_TO_DICT: render_dict(j, t); break;
    case CKI_TO_OBJECT: {
        cki_buf g;
        cki_buf_init(&g, j->r->ctx, 0);
        cki_buf_printf(&g, "%s.%s", t->u.g.module, t->u.g.name);
        cki_buf_puts(b, "{\"object\": ");
        json_text(b, g.p ? g.p : "", g.len);
        cki_buf_free(&g);
        if (cki_tobj_args(t) && !(cki_tobj_args(t)->kind == CKI_TO_TUPLE && cki_tobj_args(t)->n == 0)) {
            cki_buf_puts(b, ", \"args\": ");
            render(j, cki_tobj_args(t));
        }
        if (cki_tobj_state(t)) {
            cki_buf_puts(b, ", \"state\": ");
            render(j, cki_tobj_state(t));
        }
        if (cki_tobj_dict(t)) {
            cki_buf_puts(b, ", \"items\": ");
            render(j, cki_tobj_dict(t));
        }
        if (cki_tobj_list(t)) {
            cki_buf_puts(b, ", \"list\": ");
            render(j, cki_tobj_list(t));
        }
        cki_buf_putc(b, '}');
        break;
    }
    default: cki_buf_puts(b, "null"); break;
    }
    j->depth--;
    ((cki_tobj *)t)->mark = 0;
}

ck_status cki_torch_values_json(cki_trec *r, const cki_tobj *root, const cki_tselect *sel,
                                char **out)
{
    jw j;
    memset(&j, 0, sizeof j);
    j.r = r;
    j.sel = sel;
    cki_buf_init(&j.b, r->ctx, 0);
    render(&j, root);
    if (j.b.failed) {
        cki_buf_free(&j.b);
        return CK_ENOMEM;
    }
    *out = cki_buf_take(&j.b);
    return *out ? CK_OK : CK_ENOMEM;
}

/* ---- Lightning metadata ----------------------------------------------------- */

ck_status cki_torch_lightning_meta(const cki_tobj *root, cki_meta_fn fn, void *user)
{
    static const char *const keys[] = {"epoch", "global_step", "pytorch-lightning_version"};
    const cki_tobj *d = cki_tobj_as_dict(root);
    ck_status st;
    if (!d) return CK_OK;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cki_tobj *v = cki_tobj_get(d, keys[i]);
        char tmp[32];
        if (!v) continue;
        if (v->kind == CKI_TO_INT) {
            snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
            if ((st = fn(user, keys[i], tmp))) return st;
        } else if (v->kind == CKI_TO_STR && !memchr(v->u.s.p, 0, v->u.s.len) &&
                   v->u.s.len < 256) {
            if ((st = fn(user, keys[i], v->u.s.p))) return st;
        }
    }
    return CK_OK;
}
