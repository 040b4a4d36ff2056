/*
 * tree_write.c -- the value graph back to a weights-only-loadable pickle
 * (tree_write.h has the rules).
 *
 * Byte layout of what is added to pickle_write.c's opcodes here:
 *   BINFLOAT  'G' + 8-byte big-endian IEEE double
 *   EMPTY_LIST ']', APPEND 'a', APPENDS 'e' (batches of 1000 like CPython)
 *   EMPTY_SET 0x8f, BUILD 'b', NEWOBJ 0x81, NEWOBJ_EX 0x92 (--unknown=keep
 *   only: a call with keyword arguments), LONG1 of up to 255 bytes.
 * Checks: recursion depth within the pickle depth limit (and at most 2000,
 * for the C stack); a cycle that runs through a tuple or call arguments
 * (which a pickle can only express with POP_MARK tricks) is refused with a
 * message naming the node's offset; ints over 255 bytes are refused.
 * Nothing is imported or called: globals are compared by name only.
 */
#include <stdio.h>
#include <stdlib.h>

#include "tree_write.h"
#include "verdict.h"

#define TW_MAX_DEPTH 2000

/* torch 2.13's _weights_only_unpickler._get_allowed_globals(), sorted (C locale). */
static const char *const allowed[] = {
    "_codecs.encode", "builtins.bytearray", "builtins.complex", "builtins.set",
    "collections.Counter", "collections.OrderedDict", "torch.BFloat16Storage",
    "torch.BFloat16Tensor", "torch.BoolStorage", "torch.BoolTensor", "torch.ByteStorage",
    "torch.ByteTensor", "torch.CharStorage", "torch.CharTensor", "torch.ComplexDoubleStorage",
    "torch.ComplexFloatStorage", "torch.DoubleStorage", "torch.DoubleTensor",
    "torch.FloatStorage", "torch.FloatTensor", "torch.HalfStorage", "torch.HalfTensor",
    "torch.IntStorage", "torch.IntTensor", "torch.LongStorage", "torch.LongTensor",
    "torch.QInt32Storage", "torch.QInt8Storage", "torch.QUInt2x4Storage",
    "torch.QUInt4x2Storage", "torch.QUInt8Storage", "torch.ShortStorage", "torch.ShortTensor",
    "torch.Size", "torch.Tensor", "torch._tensor._rebuild_from_type_v2",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor",
    "torch._utils._rebuild_device_tensor_from_numpy",
    "torch._utils._rebuild_meta_tensor_no_storage", "torch._utils._rebuild_nested_tensor",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
    "torch._utils._rebuild_qtensor", "torch._utils._rebuild_sparse_tensor",
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
    "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_wrapper_subclass",
    "torch.bfloat16", "torch.bits16", "torch.bits1x8", "torch.bits2x4", "torch.bits4x2",
    "torch.bits8", "torch.bool", "torch.complex128", "torch.complex32", "torch.complex64",
    "torch.cuda.BFloat16Storage", "torch.cuda.BFloat16Tensor", "torch.cuda.BoolStorage",
    "torch.cuda.BoolTensor", "torch.cuda.ByteStorage", "torch.cuda.ByteTensor",
    "torch.cuda.CharStorage", "torch.cuda.CharTensor", "torch.cuda.ComplexDoubleStorage",
    "torch.cuda.ComplexFloatStorage", "torch.cuda.DoubleStorage", "torch.cuda.DoubleTensor",
    "torch.cuda.FloatStorage", "torch.cuda.FloatTensor", "torch.cuda.HalfStorage",
    "torch.cuda.HalfTensor", "torch.cuda.IntStorage", "torch.cuda.IntTensor",
    "torch.cuda.LongStorage", "torch.cuda.LongTensor", "torch.cuda.ShortStorage",
    "torch.cuda.ShortTensor", "torch.cuda.sparse.BFloat16Tensor",
    "torch.cuda.sparse.ByteTensor", "torch.cuda.sparse.CharTensor",
    "torch.cuda.sparse.DoubleTensor", "torch.cuda.sparse.FloatTensor",
    "torch.cuda.sparse.HalfTensor", "torch.cuda.sparse.IntTensor",
    "torch.cuda.sparse.LongTensor", "torch.cuda.sparse.ShortTensor", "torch.device",
    "torch.float16", "torch.float32", "torch.float4_e2m1fn_x2", "torch.float64",
    "torch.float8_e4m3fn", "torch.float8_e4m3fnuz", "torch.float8_e5m2",
    "torch.float8_e5m2fnuz", "torch.float8_e8m0fnu", "torch.int1", "torch.int16", "torch.int2",
    "torch.int3", "torch.int32", "torch.int4", "torch.int5", "torch.int6", "torch.int64",
    "torch.int7", "torch.int8", "torch.nn.parameter.Parameter", "torch.per_channel_affine",
    "torch.per_channel_affine_float_qparams", "torch.per_channel_symmetric",
    "torch.per_tensor_affine", "torch.per_tensor_symmetric", "torch.qint32", "torch.qint8",
    "torch.quint2x4", "torch.quint4x2", "torch.quint8", "torch.serialization._get_layout",
    "torch.sparse.BFloat16Tensor", "torch.sparse.ByteTensor", "torch.sparse.CharTensor",
    "torch.sparse.DoubleTensor", "torch.sparse.FloatTensor", "torch.sparse.HalfTensor",
    "torch.sparse.IntTensor", "torch.sparse.LongTensor", "torch.sparse.ShortTensor",
    "torch.storage.TypedStorage", "torch.storage.UntypedStorage", "torch.uint1", "torch.uint16",
    "torch.uint2", "torch.uint3", "torch.uint32", "torch.uint4", "torch.uint5", "torch.uint6",
    "torch.uint64", "torch.uint7", "torch.uint8",
};

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int cki_tw_allowed(const char *module, const char *name)
{
    char full[256];
    const char *key = full;
    int n = snprintf(full, sizeof full, "%s.%s", module, name);
    if (n < 0 || (size_t)n >= sizeof full) return 0;
    return bsearch(&key, allowed, sizeof allowed / sizeof allowed[0], sizeof allowed[0],
                   cmp_str) != NULL;
}

const cki_tobj *cki_tw_tobj(const cki_pv *v)
{
    return v ? (const cki_tobj *)v->walk : NULL;
}

/* ---- memo (node -> output memo index) -------------------------------------- */

static size_t memo_hash(const cki_pv *p, size_t cap)
{
    return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull >> 20) & (cap - 1);
}

static cki_tw_memo *memo_find(cki_tw *tw, const cki_pv *v)
{
    if (!tw->memo_cap) return NULL;
    for (size_t j = memo_hash(v, tw->memo_cap);; j = (j + 1) & (tw->memo_cap - 1)) {
        if (tw->memo[j].key == v) return &tw->memo[j];
        if (!tw->memo[j].key) return NULL;
    }
}

static cki_tw_memo *memo_add(cki_tw *tw, const cki_pv *v)
{
    size_t j;
    if ((tw->memo_count + 1) * 2 > tw->memo_cap) {
        size_t cap = tw->memo_cap ? tw->memo_cap * 2 : 256;
        cki_tw_memo *nm = cki_calloc(tw->ctx, cap, sizeof *nm);
        if (!nm) return NULL;
        for (size_t i = 0; i < tw->memo_cap; i++) {
            if (!tw->memo[i].key) continue;
            for (j = memo_hash(tw->memo[i].key, cap); nm[j].key; j = (j + 1) & (cap - 1)) {
            }
            nm[j] = tw->memo[i];
        }
        cki_free(tw->ctx, tw->memo);
        tw->memo = nm;
        tw->memo_cap = cap;
    }
    for (j = memo_hash(v, tw->memo_cap); tw->memo[j].key; j = (j + 1) & (tw->memo_cap - 1)) {
    }
    tw->memo[j].key = v;
    tw->memo_count++;
    return &tw->memo[j];
}

/* ---- paths ------------------------------------------------------------------ */

static ck_status path_push(cki_tw *tw, const char *seg, size_t n, size_t *saved)
{
    size_t need = tw->path_len + n + 2;
    *saved = tw->path_len;
    if (need > tw->path_cap) {
        size_t cap = need * 2 < 256 ? 256 : need * 2;
        char *p = cki_realloc(tw->ctx, tw->path, cap);
        if (!p) return CK_ENOMEM;
        tw->path = p;
        tw->path_cap = cap;
    }
    if (tw->path_len) tw->path[tw->path_len++] = '.';
    memcpy(tw->path + tw->path_len, seg, n);
    tw->path_len += n;
    tw->path[tw->path_len] = 0;
    return CK_OK;
}

static void path_pop(cki_tw *tw, size_t saved)
{
    tw->path_len = saved;
    if (tw->path) tw->path[saved] = 0;
}

/* Path segment for a dict key or an index. */
static ck_status push_key(cki_tw *tw, const cki_pv *key, size_t index, size_t *saved)
{
    char num[32];
    if (key && key->kind == CKI_PV_STR) return path_push(tw, key->u.s.p, key->u.s.len, saved);
    if (key && (key->kind == CKI_PV_INT || key->kind == CKI_PV_BOOL))
        snprintf(num, sizeof num, "%lld", (long long)key->u.i);
    else if (key)
        snprintf(num, sizeof num, "<%s>", cki_pv_kind_name(key->kind));
    else
        snprintf(num, sizeof num, "%zu", index);
    return path_push(tw, num, strlen(num), saved);
}

static void report(cki_tw *tw, const char *what, const char *became)
{
    if (tw->report) tw->report(tw->user, tw->path ? tw->path : "", what, became);
}

/* ---- classification ------------------------------------------------------------- */

static const cki_pv *item(const cki_pv *v, uint32_t i)
{
    return v && i < v->n ? v->items[i] : NULL;
}

static int is_call(const cki_pv *v)
{
    return v && (v->kind == CKI_PV_REDUCE || v->kind == CKI_PV_NEWOBJ) && v->n >= 2;
}

static const cki_pv *callee(const cki_pv *v)
{
    return is_call(v) ? v->items[0] : NULL;
}

/* 1 if V is a dangerous global, or a call whose callable is one (through
 * computed callables). */
static int dangerous(const cki_pv *v)
{
    for (int hops = 0; v && hops < 64; hops++) {
        if (v->kind == CKI_PV_GLOBAL)
            return cki_global_verdict(v->u.g.module, v->u.g.name) == CK_VERDICT_DANGEROUS;
        if (!is_call(v)) return 0;
        v = v->items[0];
    }
    return v != NULL;
}

static int global_ok(const cki_pv *g)
{
    return g && g->kind == CKI_PV_GLOBAL && cki_tw_allowed(g->u.g.module, g->u.g.name);
}

static int is_rebuild(const cki_pv *v)
{
    const cki_pv *c = callee(v);
    return c && c->kind == CKI_PV_GLOBAL && !strcmp(c->u.g.module, "torch._utils") &&
           (!strcmp(c->u.g.name, "_rebuild_tensor_v2") ||
            !strcmp(c->u.g.name, "_rebuild_tensor_v3") || !strcmp(c->u.g.name, "_rebuild_tensor"));
}

/* A tensor the hook writes: a rebuild call or a persistent id made into a usable tensor. */
static const cki_tobj *hook_tensor(const cki_tw *tw, const cki_pv *v)
{
    const cki_tobj *t = cki_tw_tobj(v);
    if (!tw->tensor || !t || t->kind != CKI_TO_TENSOR || !t->u.t || t->u.t->unsupported)
        return NULL;
    if (v->kind == CKI_PV_PERSID || is_rebuild(v)) return t;
    return NULL;
}

/* The tensor V stands for, when V is a tensor or a Parameter around one. */
static const cki_tobj *any_tensor(const cki_pv *v)
{
    const cki_tobj *t = cki_tw_tobj(v);
    return t && t->kind == CKI_TO_TENSOR && t->u.t ? t : NULL;
}

/* 1 if V is a GLOBAL, call or persistent id the output cannot carry as is. */
static int unknown(const cki_tw *tw, const cki_pv *v)
{
    const cki_tobj *t;
    if (v->kind == CKI_PV_GLOBAL) return !global_ok(v);
    if (is_call(v)) return !global_ok(v->items[0]);
    if (v->kind == CKI_PV_PERSID) {
        t = cki_tw_tobj(v);
        if (t && t->kind == CKI_TO_STORAGE && tw->storage) return 0;
        if (hook_tensor(tw, v)) return 0;
        return 1;
    }
    return 0;
}

/* 1 if V is not written at all (removed from its container). */
static int gone(cki_tw *tw, const cki_pv *v)
{
    const cki_tobj *t;
    if (!v) return 1;
    if (dangerous(v)) return 1;
    if ((t = any_tensor(v)) && tw->omit && tw->omit(tw->user, t)) return 1;
    if (tw->unknown == CKI_TW_DROP && unknown(tw, v)) return 1;
    return 0;
}

static void describe(const cki_pv *v, char *buf, size_t cap)
{
    const cki_pv *g = v && v->kind == CKI_PV_GLOBAL ? v : callee(v);
    if (g && g->kind == CKI_PV_GLOBAL)
        snprintf(buf, cap, "%s.%s", g->u.g.module, g->u.g.name);
    else if (v && v->kind == CKI_PV_PERSID)
        snprintf(buf, cap, "persistent id");
    else
        snprintf(buf, cap, "%s", v ? cki_pv_kind_name(v->kind) : "nothing");
}

/* Reports the removal of V (at the current path). */
static void report_gone(cki_tw *tw, const cki_pv *v)
{
    char what[512];
    const cki_tobj *t;
    describe(v, what, sizeof what);
    if (v && dangerous(v)) {
        tw->removed++;
        report(tw, what, "removed (dangerous)");
    } else if (v && (t = any_tensor(v)) && tw->omit && tw->omit(tw->user, t)) {
        /* a tensor the selection leaves out: not a rewrite */
    } else {
        tw->rewritten++;
        report(tw, what, "dropped");
    }
}

/* ---- low-level output ------------------------------------------------------------- */

static void raw(cki_tw *tw, const void *p, size_t n)
{
    if (tw->pk->failed) return;
    if (cki_buf_put(&tw->pk->out, p, n)) tw->pk->failed = CK_ENOMEM;
}

static void put_float(cki_tw *tw, double f)
{
    uint8_t b[9];
    uint64_t u;
    memcpy(&u, &f, 8);
    b[0] = 'G';
    for (int i = 0; i < 8; i++) b[1 + i] = (uint8_t)(u >> (56 - 8 * i));
    raw(tw, b, 9);
}

static ck_status put_bigint(cki_tw *tw, const cki_pv *v)
{
    uint8_t h[2];
    if (v->u.s.len > 255)
        return cki_fail(tw->ctx, CK_EUNSUPPORTED,
                        "%s: int of %llu bytes at pickle byte %llu: torch's weights-only loader "
                        "reads ints of at most 255 bytes (LONG1)",
                        tw->path_len ? tw->path : "(root)", (unsigned long long)v->u.s.len,
                        (unsigned long long)v->off);
    h[0] = CKI_PK_LONG1;
    h[1] = (uint8_t)v->u.s.len;
    raw(tw, h, 2);
    raw(tw, v->u.s.p, (size_t)v->u.s.len);
    return CK_OK;
}

/* bytes: _codecs.encode(latin-1 decoded text, 'latin1'), as protocol 2 writes it. */
static void put_bytes(cki_tw *tw, const uint8_t *p, uint64_t n)
{
    cki_buf t;
    cki_buf_init(&t, tw->ctx, 0);
    for (uint64_t i = 0; i < n; i++) {
        if (p[i] < 0x80) {
            if (cki_buf_putc(&t, (char)p[i])) tw->pk->failed = CK_ENOMEM;
        } else {
            char u[2] = {(char)(0xC0 | (p[i] >> 6)), (char)(0x80 | (p[i] & 0x3F))};
            if (cki_buf_put(&t, u, 2)) tw->pk->failed = CK_ENOMEM;
        }
    }
    cki_pkw_global(tw->pk, "_codecs", "encode");
    cki_pkw_tuple_begin(tw->pk, 2);
    cki_pkw_str(tw->pk, t.p ? (const char *)t.p : "", t.len);
    cki_pkw_str(tw->pk, "latin1", 6);
    cki_pkw_tuple_end(tw->pk, 2);
    cki_pkw_reduce(tw->pk);
    cki_buf_free(&t);
}

static void put_text(cki_tw *tw, const char *s)
{
    cki_pkw_str(tw->pk, s, strlen(s));
}

/* ---- the walk ------------------------------------------------------------------------- */

static int memoizes(const cki_pv *v)
{
    return !(v->kind == CKI_PV_NONE || v->kind == CKI_PV_BOOL || v->kind == CKI_PV_INT ||
             v->kind == CKI_PV_FLOAT || v->kind == CKI_PV_BIGINT ||
             (v->kind == CKI_PV_TUPLE && v->n == 0));
}

static ck_status emit(cki_tw *tw, const cki_pv *v);

/* V's value (an object or dict just created, its contents still to come)
 * is on top of the stack: memoize it now, so that its state, items or
 * arguments may refer back to it, as CPython's pickler does. */
static void commit(cki_tw *tw, const cki_pv *v)
{
    cki_tw_memo *m = memoizes(v) ? memo_find(tw, v) : NULL;
    if (!m || m->state != 1) return;
    m->idx = cki_pkw_put(tw->pk);
    m->state = 2;
}

/* Writes V at the path of segment KEY/INDEX, removing nothing (the caller checked gone). */
static ck_status emit_at(cki_tw *tw, const cki_pv *v, const cki_pv *key, size_t index)
{
    size_t saved;
    ck_status st;
    if ((st = push_key(tw, key, index, &saved))) return st;
    st = emit(tw, v);
    path_pop(tw, saved);
    return st;
}

/* Reports V as removed at segment KEY/INDEX. */
static ck_status gone_at(cki_tw *tw, const cki_pv *v, const cki_pv *key, size_t index)
{
    size_t saved;
    ck_status st;
    if ((st = push_key(tw, key, index, &saved))) return st;
    report_gone(tw, v);
    path_pop(tw, saved);
    return CK_OK;
}

/* Appends the kept items of SRC[0..N) to the list on the stack (APPEND/APPENDS). */
static ck_status emit_appends(cki_tw *tw, cki_pv *const *src, uint32_t n, size_t base)
{
    uint32_t i = 0;
    ck_status st;
    while (i < n) {
        uint32_t batch = 0, start = i;
        size_t count = 0;
        for (uint32_t k = i; k < n && count < CKI_PKW_BATCH; k++, batch++)
            if (!gone(tw, src[k])) count++;
        if (count > 1) cki_pkw_op(tw->pk, CKI_PK_MARK);
        for (uint32_t k = start; k < start + batch; k++) {
            if (gone(tw, src[k])) {
                if ((st = gone_at(tw, src[k], NULL, base + k))) return st;
                continue;
            }
            if ((st = emit_at(tw, src[k], NULL, base + k))) return st;
        }
        if (count == 1) cki_pkw_op(tw->pk, 'a');
        else if (count > 1) cki_pkw_op(tw->pk, 'e');
        i = start + batch;
    }
    return CK_OK;
}

/* Sets the kept pairs of PAIRS[0..2N) on the dict on the stack; RENAME: it
 * is the state dict. */
static ck_status emit_setitems(cki_tw *tw, cki_pv *const *pairs, uint32_t n, int rename)
{
    cki_pkw_items it;
    uint64_t keep = 0;
    ck_status st;
    for (uint32_t i = 0; i < n; i++)
        if (!gone(tw, pairs[2 * i]) && !gone(tw, pairs[2 * i + 1])) keep++;
    cki_pkw_items_init(&it, keep);
    for (uint32_t i = 0; i < n; i++) {
        const cki_pv *k = pairs[2 * i], *v = pairs[2 * i + 1];
        const char *nk = NULL;
        const cki_tobj *t;
        if (gone(tw, k) || gone(tw, v)) {
            if ((st = gone_at(tw, gone(tw, v) ? v : k, k, i))) return st;
            continue;
        }
        if (rename && tw->key && k->kind == CKI_PV_STR && (t = any_tensor(v)))
            nk = tw->key(tw->user, t, k->u.s.p);
        cki_pkw_item_start(tw->pk, &it);
        if (nk) {
            put_text(tw, nk);
        } else {
            size_t saved;
            if ((st = path_push(tw, "<key>", 5, &saved))) return st;
            st = emit(tw, k);
            path_pop(tw, saved);
            if (st) return st;
        }
        if ((st = emit_at(tw, v, k, i))) return st;
        cki_pkw_item_end(tw->pk, &it);
    }
    return CK_OK;
}

/* A tuple of the items of V (removed ones become None). */
static ck_status emit_tuple_items(cki_tw *tw, const cki_pv *v)
{
    ck_status st;
    cki_pkw_tuple_begin(tw->pk, v->n);
    for (uint32_t i = 0; i < v->n; i++) {
        if (gone(tw, v->items[i])) {
            if ((st = gone_at(tw, v->items[i], NULL, i))) return st;
            cki_pkw_none(tw->pk);
            continue;
        }
        if ((st = emit_at(tw, v->items[i], NULL, i))) return st;
    }
    cki_pkw_tuple_end(tw->pk, v->n);
    return CK_OK;
}

/* builtins.set([kept items]), or EMPTY_SET. */
static ck_status emit_set(cki_tw *tw, const cki_pv *v)
{
    size_t keep = 0;
    ck_status st;
    for (uint32_t i = 0; i < v->n; i++)
        if (!gone(tw, v->items[i])) keep++;
    if (v->kind == CKI_PV_FROZENSET) {
        tw->rewritten++;
        report(tw, "frozenset", "set");
    }
    if (!keep) {
        cki_pkw_op(tw->pk, 0x8f);
        for (uint32_t i = 0; i < v->n; i++)
            if ((st = gone_at(tw, v->items[i], NULL, i))) return st;
        return CK_OK;
    }
    cki_pkw_global(tw->pk, "builtins", "set");
    cki_pkw_op(tw->pk, ']');
    if ((st = emit_appends(tw, v->items, v->n, 0))) return st;
    cki_pkw_op(tw->pk, 0x85); /* TUPLE1 */
    cki_pkw_reduce(tw->pk);
    return CK_OK;
}

/* The items set on / appended to / the BUILD state of an object node V
 * that stays an object (allowlisted call, or --unknown=keep). */
static ck_status emit_object_tail(cki_tw *tw, const cki_pv *v, int rename)
{
    ck_status st;
    if (cki_pv_extra_list(v) && cki_pv_extra_list(v)->n &&
        (st = emit_appends(tw, cki_pv_extra_list(v)->items, cki_pv_extra_list(v)->n, 0)))
        return st;
    if (cki_pv_extra(v) && cki_pv_extra(v)->n &&
        (st = emit_setitems(tw, cki_pv_extra(v)->items, cki_pv_extra(v)->n, rename)))
        return st;
    if (cki_pv_state(v)) {
        if (gone(tw, cki_pv_state(v))) {
            size_t saved;
            if ((st = path_push(tw, "<state>", 7, &saved))) return st;
            report_gone(tw, cki_pv_state(v));
            path_pop(tw, saved);
        } else {
            if ((st = emit(tw, cki_pv_state(v)))) return st;
            cki_pkw_op(tw->pk, 'b');
        }
    }
    return CK_OK;
}

/* A call written back as read: callable, args, REDUCE/NEWOBJ(_EX), tail. */
static ck_status emit_call(cki_tw *tw, const cki_pv *v, int rename)
{
    const cki_pv *args = v->items[1];
    ck_status st;
    if ((st = emit(tw, v->items[0]))) return st;
    if (args->kind == CKI_PV_TUPLE) {
        if ((st = emit_tuple_items(tw, args))) return st;
    } else if ((st = emit(tw, args))) {
        return st;
    }
    if (v->kind == CKI_PV_NEWOBJ && v->n >= 3 && v->items[2]) {
        if ((st = emit(tw, v->items[2]))) return st;
        cki_pkw_op(tw->pk, 0x92);
        cki_pkw_put(tw->pk);
    } else if (v->kind == CKI_PV_NEWOBJ) {
        cki_pkw_op(tw->pk, 0x81);
        cki_pkw_put(tw->pk);
    } else {
        cki_pkw_reduce(tw->pk);
    }
    commit(tw, v);
    return emit_object_tail(tw, v, rename);
}

static int name_is(const cki_pv *g, const char *module, const char *name)
{
    return g && g->kind == CKI_PV_GLOBAL && !strcmp(g->u.g.module, module) &&
           !strcmp(g->u.g.name, name);
}

/* Namespace-like: an object that is nothing but named fields. */
static int field_container(const cki_pv *v)
{
    const cki_pv *c = callee(v), *args = item(v, 1);
    int no_args = args && args->kind == CKI_PV_TUPLE && args->n == 0;
    if (!c || c->kind != CKI_PV_GLOBAL) return 0;
    if (name_is(c, "argparse", "Namespace") || name_is(c, "types", "SimpleNamespace") ||
        !strcmp(c->u.g.name, "AttributeDict"))
        return (!cki_pv_state(v) || cki_pv_state(v)->kind == CKI_PV_DICT) && (!args || no_args || !args->n);
    /* a dict subclass: only set items */
    return no_args && !cki_pv_state(v) && cki_pv_extra(v) && !cki_pv_extra_list(v);
}

/* One "key: value" pair of a rebuilt object, the value a node. */
static ck_status pair_node(cki_tw *tw, cki_pkw_items *it, const char *key, const cki_pv *v)
{
    size_t saved;
    ck_status st;
    cki_pkw_item_start(tw->pk, it);
    put_text(tw, key);
    if ((st = path_push(tw, key, strlen(key), &saved))) return st;
    if (gone(tw, v)) {
        report_gone(tw, v);
        cki_pkw_none(tw->pk);
    } else {
        st = emit(tw, v);
    }
    path_pop(tw, saved);
    if (st) return st;
    cki_pkw_item_end(tw->pk, it);
    return CK_OK;
}

/* --unknown=dict for a call, global or persistent id V (memo already handled
 * by the caller: the result is memoized as V). */
static ck_status emit_as_dict(cki_tw *tw, const cki_pv *v)
{
    const cki_tobj *t = cki_tw_tobj(v);
    char what[512];
    ck_status st;
    describe(v, what, sizeof what);
    tw->rewritten++;

    /* values the recogniser reads exactly (numpy scalars, ...) */
    if (t && v->kind != CKI_PV_GLOBAL) {
        switch (t->kind) {
        case CKI_TO_BOOL: report(tw, what, "bool"); cki_pkw_bool(tw->pk, (int)t->u.i); return CK_OK;
        case CKI_TO_INT: report(tw, what, "int"); cki_pkw_int(tw->pk, t->u.i); return CK_OK;
        case CKI_TO_FLOAT: report(tw, what, "float"); put_float(tw, t->u.f); return CK_OK;
        case CKI_TO_STR:
            report(tw, what, "str");
            cki_pkw_str(tw->pk, t->u.s.p, t->u.s.len);
            return CK_OK;
        case CKI_TO_BYTES:
            report(tw, what, "bytes");
            put_bytes(tw, (const uint8_t *)t->u.s.p, t->u.s.len);
            return CK_OK;
        case CKI_TO_COMPLEX:
            report(tw, what, "complex");
            cki_pkw_global(tw->pk, "builtins", "complex");
            cki_pkw_tuple_begin(tw->pk, 2);
            put_float(tw, t->u.c[0]);
            put_float(tw, t->u.c[1]);
            cki_pkw_tuple_end(tw->pk, 2);
            cki_pkw_reduce(tw->pk);
            return CK_OK;
        default: break;
        }
    }
    /* frozenset(iterable) -> set(iterable) */
    if (is_call(v) && name_is(callee(v), "builtins", "frozenset") &&
        v->items[1]->kind == CKI_PV_TUPLE && v->items[1]->n <= 1) {
        report(tw, what, "set");
        if (!v->items[1]->n) {
            cki_pkw_op(tw->pk, 0x8f);
            return CK_OK;
        }
        cki_pkw_global(tw->pk, "builtins", "set");
        if ((st = emit_tuple_items(tw, v->items[1]))) return st;
        cki_pkw_reduce(tw->pk);
        return CK_OK;
    }
    /* a tensor subclass: the plain tensor */
    if (is_call(v) && name_is(callee(v), "torch._tensor", "_rebuild_from_type_v2") &&
        item(v->items[1], 0) && item(v->items[1], 2) &&
        item(v->items[1], 2)->kind == CKI_PV_TUPLE && global_ok(item(v->items[1], 0))) {
        const cki_pv *a = v->items[1];
        char sub[512];
        describe(item(a, 1), sub, sizeof sub);
        report(tw, sub, "torch.Tensor");
        if ((st = emit(tw, item(a, 0)))) return st;
        if ((st = emit_tuple_items(tw, item(a, 2)))) return st;
        cki_pkw_reduce(tw->pk);
        return CK_OK;
    }
    if (is_call(v) && (name_is(callee(v), "collections", "defaultdict") || field_container(v))) {
        const cki_pv *s = cki_pv_state(v);
        report(tw, what, "dict");
        cki_pkw_empty_dict(tw->pk);
        commit(tw, v);
        if (s && s->kind == CKI_PV_DICT && s->n && (st = emit_setitems(tw, s->items, s->n, 0)))
            return st;
        if (cki_pv_extra(v) && cki_pv_extra(v)->n &&
            (st = emit_setitems(tw, cki_pv_extra(v)->items, cki_pv_extra(v)->n, 0)))
            return st;
        return CK_OK;
    }
    {
        cki_pkw_items it;
        uint64_t n = 1;
        const cki_pv *args = is_call(v) ? v->items[1] : NULL;
        const cki_pv *kw = is_call(v) && v->n >= 3 ? v->items[2] : NULL;
        report(tw, what, "dict");
        if (args) n++;
        if (kw) n++;
        if (v->kind == CKI_PV_PERSID && v->n) n++;
        if (cki_pv_state(v)) n++;
        if (cki_pv_extra(v)) n++;
        if (cki_pv_extra_list(v)) n++;
        cki_pkw_empty_dict(tw->pk);
        commit(tw, v);
        cki_pkw_items_init(&it, n);
        cki_pkw_item_start(tw->pk, &it);
        put_text(tw, "class");
        put_text(tw, what);
        cki_pkw_item_end(tw->pk, &it);
        if (args && (st = pair_node(tw, &it, "args", args))) return st;
        if (kw && (st = pair_node(tw, &it, "kwargs", kw))) return st;
        if (v->kind == CKI_PV_PERSID && v->n && (st = pair_node(tw, &it, "pid", v->items[0])))
            return st;
        if (cki_pv_state(v) && (st = pair_node(tw, &it, "state", cki_pv_state(v)))) return st;
        if (cki_pv_extra(v) && (st = pair_node(tw, &it, "items", cki_pv_extra(v)))) return st;
        if (cki_pv_extra_list(v) && (st = pair_node(tw, &it, "list", cki_pv_extra_list(v))))
            return st;
    }
    return CK_OK;
}

static ck_status emit_node(cki_tw *tw, const cki_pv *v)
{
    const cki_tobj *t;
    ck_status st;
    switch (v->kind) {
    case CKI_PV_NONE: cki_pkw_none(tw->pk); return CK_OK;
    case CKI_PV_BOOL: cki_pkw_bool(tw->pk, (int)v->u.i); return CK_OK;
    case CKI_PV_INT: cki_pkw_int(tw->pk, v->u.i); return CK_OK;
    case CKI_PV_BIGINT: return put_bigint(tw, v);
    case CKI_PV_FLOAT: put_float(tw, v->u.f); return CK_OK;
    case CKI_PV_STR: cki_pkw_str(tw->pk, v->u.s.p, v->u.s.len); return CK_OK;
    case CKI_PV_BYTES: put_bytes(tw, (const uint8_t *)v->u.s.p, v->u.s.len); return CK_OK;
    case CKI_PV_TUPLE: return emit_tuple_items(tw, v);
    case CKI_PV_LIST: return CK_OK; /* emit() wrote EMPTY_LIST and memoized it */
    case CKI_PV_DICT: return CK_OK;
    case CKI_PV_SET:
    case CKI_PV_FROZENSET: return emit_set(tw, v);
    case CKI_PV_GLOBAL:
        if (unknown(tw, v) && tw->unknown == CKI_TW_DICT) return emit_as_dict(tw, v);
        /* the machine reads Python 2's __builtin__ as builtins but keeps the
         * name (int is pickled as __builtin__.long): write the Python 2 module
         * back, which every unpickler maps with the name */
        cki_pkw_global(tw->pk, strcmp(v->u.g.module, "builtins") ? v->u.g.module : "__builtin__",
                       v->u.g.name);
        return CK_OK;
    case CKI_PV_PERSID:
        if ((t = hook_tensor(tw, v))) return tw->tensor(tw->user, tw, v, t);
        t = cki_tw_tobj(v);
        if (t && t->kind == CKI_TO_STORAGE && tw->storage) return tw->storage(tw->user, tw, v, t);
        if (tw->unknown == CKI_TW_DICT) return emit_as_dict(tw, v);
        return cki_fail(tw->ctx, CK_EUNSUPPORTED,
                        "%s: persistent id at pickle byte %llu is not a storage this writer can "
                        "copy",
                        tw->path_len ? tw->path : "(root)", (unsigned long long)v->off);
    case CKI_PV_REDUCE:
    case CKI_PV_NEWOBJ:
        if (!is_call(v))
            return cki_fail(tw->ctx, CK_EFORMAT, "call at pickle byte %llu has no arguments",
                            (unsigned long long)v->off);
        if ((t = hook_tensor(tw, v))) return tw->tensor(tw->user, tw, v, t);
        if (unknown(tw, v) && tw->unknown == CKI_TW_DICT) return emit_as_dict(tw, v);
        st = emit_call(tw, v, tw->state_dict && cki_tw_tobj(v) == tw->state_dict);
        return st;
    }
    return cki_fail(tw->ctx, CK_EFORMAT, "node of unknown kind at pickle byte %llu",
                    (unsigned long long)v->off);
}

static ck_status emit(cki_tw *tw, const cki_pv *v)
{
    cki_tw_memo *m;
    ck_status st;
    if (tw->pk->failed) return tw->pk->failed;
    m = memoizes(v) ? memo_find(tw, v) : NULL;
    if (m && m->state == 2) {
        cki_pkw_get(tw->pk, m->idx);
        return CK_OK;
    }
    if (m)
        return cki_fail(tw->ctx, CK_EUNSUPPORTED,
                        "%s: the %s at pickle byte %llu contains itself through a tuple or call "
                        "arguments, which this writer cannot express",
                        tw->path_len ? tw->path : "(root)", cki_pv_kind_name(v->kind),
                        (unsigned long long)v->off);
    if (++tw->depth > TW_MAX_DEPTH) {
        tw->depth--;
        return cki_fail(tw->ctx, CK_ELIMIT, "%s: value nested more than %d levels deep",
                        tw->path_len ? tw->path : "(root)", TW_MAX_DEPTH);
    }
    if (memoizes(v)) {
        if (!(m = memo_add(tw, v))) {
            tw->depth--;
            return CK_ENOMEM;
        }
        m->state = 1;
    }
    if (m && (v->kind == CKI_PV_LIST || v->kind == CKI_PV_DICT)) {
        /* containers are memoized (m is set: memoizes() holds for them) before
         * their items, so they may contain themselves */
        cki_pkw_op(tw->pk, v->kind == CKI_PV_LIST ? ']' : '}');
        m->idx = cki_pkw_put(tw->pk);
        m->state = 2;
        if (v->kind == CKI_PV_LIST)
            st = emit_appends(tw, v->items, v->n, 0);
        else
            st = emit_setitems(tw, v->items, v->n, tw->state_dict && cki_tw_tobj(v) == tw->state_dict);
        tw->depth--;
        return st;
    }
    st = emit_node(tw, v);
    tw->depth--;
    if (st) return st;
    /* the value just written is on top of the stack (unless an emitter
     * committed it early) */
    commit(tw, v);
    return tw->pk->failed ? tw->pk->failed : CK_OK;
}

ck_status cki_tw_value(cki_tw *tw, const cki_pv *v)
{
    if (gone(tw, v)) {
        report_gone(tw, v);
        cki_pkw_none(tw->pk);
        return CK_OK;
    }
    return emit(tw, v);
}

void cki_tw_init(cki_tw *tw, ck_ctx *ctx, cki_pkw *pk)
{
    memset(tw, 0, sizeof *tw);
    tw->ctx = ctx;
    tw->pk = pk;
}

void cki_tw_free(cki_tw *tw)
{
    cki_free(tw->ctx, tw->memo);
    cki_free(tw->ctx, tw->path);
    tw->memo = NULL;
    tw->path = NULL;
}

ck_status cki_tw_write(cki_tw *tw, const cki_pv *root, int *root_gone)
{
    ck_status st;
    *root_gone = 0;
    if (gone(tw, root)) {
        report_gone(tw, root);
        *root_gone = 1;
        return CK_OK;
    }
    st = emit(tw, root);
    if (!st) st = cki_pkw_status(tw->pk);
    return st;
}
