/*
 * pv.c -- queries on the pickle value tree, for recognisers and walkers.
 *
 * Rules: every query accepts NULL and nodes of any kind and answers "no"
 * rather than guessing; a DICT lookup returns the LAST pair with the key
 * (Python keeps the value assigned last); integers are read from INT/BOOL
 * or from BIGINT bytes (little-endian two's complement) when they fit.
 * Nothing here recurses, so cyclic graphs are harmless.
 */
#include "pickle.h"

int cki_pv_is_global(const cki_pv *v, const char *module, const char *name)
{
    return v && v->kind == CKI_PV_GLOBAL && module && name && v->u.g.module && v->u.g.name &&
           !strcmp(v->u.g.module, module) && !strcmp(v->u.g.name, name);
}

int cki_pv_is_call_of(const cki_pv *v, const char *module, const char *name)
{
    return v && (v->kind == CKI_PV_REDUCE || v->kind == CKI_PV_NEWOBJ) && v->n >= 1 &&
           cki_pv_is_global(v->items[0], module, name);
}

const cki_pv *cki_pv_call_args(const cki_pv *v)
{
    if (!v || (v->kind != CKI_PV_REDUCE && v->kind != CKI_PV_NEWOBJ) || v->n < 2) return NULL;
    return v->items[1] && v->items[1]->kind == CKI_PV_TUPLE ? v->items[1] : NULL;
}

int cki_pv_is_str(const cki_pv *v, const char *s)
{
    size_t n;
    if (!v || v->kind != CKI_PV_STR || !s) return 0;
    n = strlen(s);
    return v->u.s.len == n && !memcmp(v->u.s.p, s, n);
}

const cki_pv *cki_pv_dict_get(const cki_pv *dict, const char *key)
{
    if (!dict || dict->kind != CKI_PV_DICT || !key) return NULL;
    for (size_t i = dict->n; i-- > 0;)
        if (cki_pv_is_str(dict->items[2 * i], key)) return dict->items[2 * i + 1];
    return NULL;
}

int cki_pv_to_i64(const cki_pv *v, int64_t *out)
{
    uint64_t u = 0;
    size_t n;
    const uint8_t *b;
    if (!v || !out) return 1;
    if (v->kind == CKI_PV_INT || v->kind == CKI_PV_BOOL) {
        *out = v->u.i;
        return 0;
    }
    if (v->kind != CKI_PV_BIGINT || !v->u.s.p) return 1;
    b = (const uint8_t *)v->u.s.p;
    n = (size_t)v->u.s.len;
    /* drop redundant sign-extension bytes, then it must fit 8 */
    while (n > 1 && ((b[n - 1] == 0x00 && !(b[n - 2] & 0x80)) ||
                     (b[n - 1] == 0xff && (b[n - 2] & 0x80))))
        n--;
    if (n > 8) return 1;
    for (size_t i = 0; i < n; i++) u |= (uint64_t)b[i] << (8 * i);
    if (n && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
    *out = u > (uint64_t)INT64_MAX ? -(int64_t)(~u) - 1 : (int64_t)u;
    return 0;
}

size_t cki_pv_child_count(const cki_pv *v)
{
    size_t n;
    if (!v) return 0;
    n = v->items ? (v->kind == CKI_PV_DICT ? (size_t)v->n * 2 : v->n) : 0;
    return n + !!cki_pv_state(v) + !!cki_pv_state_prev(v) + !!cki_pv_extra(v) + !!cki_pv_extra_list(v);
}

const cki_pv *cki_pv_child(const cki_pv *v, size_t i)
{
    size_t n;
    const cki_pv *tail[4];
    size_t k = 0;
    if (!v) return NULL;
    n = v->items ? (v->kind == CKI_PV_DICT ? (size_t)v->n * 2 : v->n) : 0;
    if (i < n) return v->items[i];
    i -= n;
    if (cki_pv_state(v)) tail[k++] = cki_pv_state(v);
    if (cki_pv_state_prev(v)) tail[k++] = cki_pv_state_prev(v);
    if (cki_pv_extra(v)) tail[k++] = cki_pv_extra(v);
    if (cki_pv_extra_list(v)) tail[k++] = cki_pv_extra_list(v);
    return i < k ? tail[i] : NULL;
}

const char *cki_pv_kind_name(cki_pv_kind kind)
{
    switch (kind) {
    case CKI_PV_NONE: return "none";
    case CKI_PV_BOOL: return "bool";
    case CKI_PV_INT: return "int";
    case CKI_PV_BIGINT: return "bigint";
    case CKI_PV_FLOAT: return "float";
    case CKI_PV_STR: return "str";
    case CKI_PV_BYTES: return "bytes";
    case CKI_PV_TUPLE: return "tuple";
    case CKI_PV_LIST: return "list";
    case CKI_PV_DICT: return "dict";
    case CKI_PV_SET: return "set";
    case CKI_PV_FROZENSET: return "frozenset";
    case CKI_PV_GLOBAL: return "global";
    case CKI_PV_REDUCE: return "reduce";
    case CKI_PV_NEWOBJ: return "newobj";
    case CKI_PV_PERSID: return "persid";
    case CKI_PV_TREBUILD: return "reduce";
    }
    return "?";
}
