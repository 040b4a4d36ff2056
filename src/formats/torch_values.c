/*
 * torch_values.c -- the public value tree (ck_value, ckptkit.h) of a torch
 * checkpoint: a copy of the recogniser's object graph (torch_objects.h) into
 * the model's arena, so that it outlives the parse.
 *
 * Rules: one ck_value per object (shared objects stay shared, cycles stay
 * cycles: a node is registered before its children are copied); recursion
 * stops at CK_LIMIT_PICKLE_DEPTH levels (the recogniser already refused
 * deeper graphs, so this only guards the copy); strings are copied with their
 * length (they may hold NUL bytes); tensors are looked up through the
 * reader's callback, which gives the model index of each tensor (adding the
 * ones it did not expose).
 */
#include "model.h"
#include "torch_values.h"

typedef struct copier {
    ck_model *m;
    cki_trec *r;
    cki_values_tensor_fn fn;
    void *user;
    cki_map seen; /* tobj address (8 bytes in the arena) -> index into made */
    ck_value **made;
    size_t made_count, made_cap;
} copier;

static ck_status copy(copier *c, const cki_tobj *t, uint32_t depth, const ck_value **out);

static const char *dup_bytes(copier *c, const char *p, uint64_t len)
{
    char *s;
    if (len >= SIZE_MAX) return NULL;
    s = cki_arena_alloc(&c->m->arena, (size_t)len + 1);
    if (!s) return NULL;
    if (len) memcpy(s, p, (size_t)len);
    s[len] = 0;
    return s;
}

static ck_status copy_items(copier *c, ck_value *v, cki_tobj *const *items, uint32_t n,
                            uint32_t depth)
{
    const ck_value **dst;
    ck_status st;
    if (!n) return CK_OK;
    dst = cki_arena_alloc(&c->m->arena, sizeof *dst * n);
    if (!dst) return CK_ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        if ((st = copy(c, items[i], depth + 1, &dst[i]))) return st;
    v->items = (const ck_value *const *)dst;
    return CK_OK;
}

static ck_status remember(copier *c, const cki_tobj *t, ck_value *v)
{
    char *key = cki_arena_alloc(&c->m->arena, sizeof t);
    if (!key) return CK_ENOMEM;
    memcpy(key, &t, sizeof t);
    if (c->made_count == c->made_cap) {
        size_t ncap = c->made_cap ? c->made_cap * 2 : 256;
        ck_value **n = cki_realloc(c->m->ctx, c->made, ncap * sizeof *n);
        if (!n) return CK_ENOMEM;
        c->made = n;
        c->made_cap = ncap;
    }
    if (cki_map_put(&c->seen, key, sizeof t, c->made_count, NULL) < 0) return CK_ENOMEM;
    c->made[c->made_count++] = v;
    return CK_OK;
}

static ck_status copy(copier *c, const cki_tobj *t, uint32_t depth, const ck_value **out)
{
    ck_value *v;
    size_t idx;
    ck_status st = CK_OK;

    *out = NULL;
    if (!t || t->kind == CKI_TO_NONE) return CK_OK;
    if (!cki_map_get(&c->seen, (const char *)&t, sizeof t, &idx)) {
        *out = c->made[idx];
        return CK_OK;
    }
    if (depth > c->r->max_depth)
        return cki_fail(c->m->ctx, CK_ELIMIT,
                        "%s: value at pickle byte %llu is nested deeper than %u levels (limit)",
                        c->m->path, (unsigned long long)t->off, c->r->max_depth);
    v = cki_arena_alloc(&c->m->arena, sizeof *v);
    if (!v) return CK_ENOMEM;
    memset(v, 0, sizeof *v);
    v->flags = t->vflags;
    v->tensor = (size_t)-1;
    if ((st = remember(c, t, v))) return st;
    *out = v;

    switch (t->kind) {
    case CKI_TO_NONE: v->kind = CK_VALUE_NONE; break;
    case CKI_TO_BOOL: v->kind = CK_VALUE_BOOL; v->i = t->u.i; break;
    case CKI_TO_INT: v->kind = CK_VALUE_INT; v->i = t->u.i; break;
    case CKI_TO_FLOAT: v->kind = CK_VALUE_FLOAT; v->f[0] = t->u.f; break;
    case CKI_TO_COMPLEX:
        v->kind = CK_VALUE_COMPLEX;
        v->f[0] = t->u.c[0];
        v->f[1] = t->u.c[1];
        break;
    case CKI_TO_BIGINT:
    case CKI_TO_STR:
    case CKI_TO_BYTES:
        v->kind = t->kind == CKI_TO_BIGINT ? CK_VALUE_BIGINT
                  : t->kind == CKI_TO_STR  ? CK_VALUE_STR
                                           : CK_VALUE_BYTES;
        v->len = t->u.s.len;
        if (!(v->s = dup_bytes(c, t->u.s.p, t->u.s.len))) return CK_ENOMEM;
        break;
    case CKI_TO_NPDTYPE:
        v->kind = CK_VALUE_NPDTYPE;
        v->len = t->u.s.len;
        if (!(v->s = dup_bytes(c, t->u.s.p, t->u.s.len))) return CK_ENOMEM;
        break;
    case CKI_TO_TUPLE:
    case CKI_TO_LIST:
    case CKI_TO_SET:
    case CKI_TO_SLICE:
        v->kind = t->kind == CKI_TO_TUPLE  ? CK_VALUE_TUPLE
                  : t->kind == CKI_TO_LIST ? CK_VALUE_LIST
                  : t->kind == CKI_TO_SET  ? CK_VALUE_SET
                                           : CK_VALUE_SLICE;
        v->count = t->n;
        st = copy_items(c, v, t->items, t->n, depth);
        break;
    case CKI_TO_DICT:
        v->kind = CK_VALUE_DICT;
        v->count = t->n;
        if (t->n > UINT32_MAX / 2) return CK_ENOMEM;
        st = copy_items(c, v, t->items, 2 * t->n, depth);
        break;
    case CKI_TO_TENSOR: {
        const char *why = NULL;
        v->kind = CK_VALUE_TENSOR;
        if (t->u.t->parameter) v->flags |= CK_VALUE_F_PARAMETER;
        if ((st = c->fn(c->user, t, &v->tensor, &why))) return st;
        if (why && !(v->s = dup_bytes(c, why, strlen(why)))) return CK_ENOMEM;
        break;
    }
    case CKI_TO_STORAGE:
        v->kind = CK_VALUE_STORAGE;
        if (!(v->s = dup_bytes(c, t->u.st->type_name, strlen(t->u.st->type_name))))
            return CK_ENOMEM;
        break;
    case CKI_TO_DTYPE:
        v->kind = CK_VALUE_DTYPE;
        if (!(v->s = dup_bytes(c, t->u.dt.name, strlen(t->u.dt.name)))) return CK_ENOMEM;
        break;
    case CKI_TO_ARRAY: {
        const cki_tarray *a = t->u.arr;
        int64_t *shape;
        if (!a->dtype || !a->data) {
            /* an object array: nothing inert to give; say what it was */
            v->kind = CK_VALUE_OBJECT;
            v->module = "numpy";
            v->name = "ndarray";
            break;
        }
        v->kind = CK_VALUE_ARRAY;
        if (a->fortran) v->flags |= CK_VALUE_F_FORTRAN;
        if (!(v->s = dup_bytes(c, a->dtype, strlen(a->dtype)))) return CK_ENOMEM;
        v->ndim = a->ndim;
        if (a->ndim > 0) {
            shape = cki_arena_alloc(&c->m->arena, sizeof *shape * (size_t)a->ndim);
            if (!shape) return CK_ENOMEM;
            memcpy(shape, a->shape, sizeof *shape * (size_t)a->ndim);
            v->shape = shape;
        }
        v->len = a->len;
        if (!(v->data = dup_bytes(c, (const char *)a->data, a->len))) return CK_ENOMEM;
        break;
    }
    case CKI_TO_GLOBAL:
    case CKI_TO_OBJECT:
        v->kind = t->kind == CKI_TO_GLOBAL ? CK_VALUE_GLOBAL : CK_VALUE_OBJECT;
        if (!(v->module = dup_bytes(c, t->u.g.module, strlen(t->u.g.module))) ||
            !(v->name = dup_bytes(c, t->u.g.name, strlen(t->u.g.name))))
            return CK_ENOMEM;
        if (t->kind == CKI_TO_OBJECT) {
            if ((st = copy(c, cki_tobj_args(t), depth + 1, &v->args))) return st;
            if ((st = copy(c, cki_tobj_state(t), depth + 1, &v->state))) return st;
            if ((st = copy(c, cki_tobj_dict(t), depth + 1, &v->dict))) return st;
            if ((st = copy(c, cki_tobj_list(t), depth + 1, &v->list))) return st;
        }
        break;
    }
    return st;
}

ck_status cki_torch_values_tree(ck_model *m, cki_trec *r, const cki_tobj *root,
                                cki_values_tensor_fn fn, void *user, const ck_value **out)
{
    copier c;
    ck_status st;
    static const ck_value none = {.kind = CK_VALUE_NONE, .tensor = (size_t)-1};
    memset(&c, 0, sizeof c);
    c.m = m;
    c.r = r;
    c.fn = fn;
    c.user = user;
    cki_map_init(&c.seen, m->ctx);
    st = copy(&c, root, 0, out);
    if (!st && !*out) *out = &none;
    cki_map_free(&c.seen);
    cki_free(m->ctx, c.made);
    return st;
}
