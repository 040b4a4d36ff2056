/*
 * torch_recognise.c -- pickle value graph -> torch objects (torch_objects.h).
 *
 * Shapes recognised (args are the REDUCE/NEWOBJ argument tuple):
 *   torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad,
 *                                   hooks[, metadata])
 *   torch._utils._rebuild_tensor_v3(storage, offset, size, stride, requires_grad,
 *                                   hooks, dtype[, metadata])
 *   torch._utils._rebuild_tensor(storage, offset, size, stride)
 *   torch._utils._rebuild_parameter(tensor, requires_grad, hooks)
 *   torch._utils._rebuild_parameter_with_state(tensor, requires_grad, hooks, state)
 *   torch.nn.parameter.Parameter(tensor[, requires_grad])
 *   torch._tensor._rebuild_from_type_v2(func, type, args, state) -> func(*args)
 *   torch._utils._rebuild_device_tensor_from_cpu_tensor(tensor, dtype, device, rg)
 *   persistent id ('storage', torch.<X>Storage, key, location, numel
 *                  [, None | (view_key, offset, size)])
 *   metadata {'conj': True} / {'neg': True}: the stored bytes are the
 *   un-conjugated / un-negated base (CKI_T_CONJ / CKI_T_NEG).
 * Offsets, sizes and strides are in elements; for v3 over an UntypedStorage
 * numel counts bytes. Checks here: argument counts and types, ints >= 0, at
 * most CKI_MAX_DIMS dimensions, size and stride of equal length, storage class
 * known, v3 dtype of the same width as a typed storage, one description per
 * storage key. Whether a view fits its storage is checked when the tensor is
 * added to the model (cki_model_add_tensor), once the storage's bytes are known.
 *
 * Hand-written: this is the allowlist that keeps loading inert; nothing is
 * looked up by name at run time and no callable is ever invoked.
 */
#include <stdio.h>
#include <stdlib.h>

#include "torch_objects.h"

#include "../tensor/tensor.h"

#define CKI_TREC_MAX_DEPTH 2000

int cki_np_itemsize(const char *descr)
{
    int v = 0;
    if (strlen(descr) < 3) return -1;
    for (const char *p = descr + 2; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        v = v * 10 + (*p - '0');
        if (v > 64) return -1;
    }
    return v >= 1 ? v : -1;
}

/* ---- node memo ---------------------------------------------------------- */

/* Each pickle node converts once: its object is cached in the node itself
 * (cki_pv.walk), so shared nodes and cycles cost O(1) per visit without a
 * pointer-keyed hash over every node. */
/* Where tensor and storage descriptions go (and their shapes, strides and
 * strings): r->desc, or the objects' arena. */
#define DESC(r) ((r)->desc ? (r)->desc : (r)->arena)

/* cki_tstorage keeps its dtype in a byte */
_Static_assert(CK_DT_COUNT < 256, "ck_dtype fits a byte");

static cki_tobj *memo_get(const cki_trec *r, const cki_pv *k)
{
    (void)r;
    return (cki_tobj *)k->walk;
}

static int memo_put(cki_trec *r, const cki_pv *k, cki_tobj *v)
{
    (void)r;
    ((cki_pv *)k)->walk = v;
    return 0;
}

void cki_trec_init(cki_trec *r, ck_ctx *ctx, cki_arena *arena, const char *file,
                   const char *where)
{
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    r->arena = arena;
    r->file = file;
    r->where = where;
    /* conversion and the walks recurse once per level: whatever the limit,
     * stay well inside an 8 MiB C stack */
    r->max_depth = ctx ? (uint32_t)(ctx->limits[CK_LIMIT_PICKLE_DEPTH] > CKI_TREC_MAX_DEPTH
                                        ? CKI_TREC_MAX_DEPTH
                                        : ctx->limits[CK_LIMIT_PICKLE_DEPTH])
                       : 1000;
    cki_map_init(&r->storage_index, ctx);
}

void cki_trec_drop_index(cki_trec *r)
{
    cki_map_free(&r->storage_index);
    cki_map_init(&r->storage_index, r->ctx);
    cki_free(r->ctx, r->storage_by_num);
    r->storage_by_num = NULL;
    r->storage_by_num_cap = 0;
}

void cki_trec_free(cki_trec *r)
{
    if (!r) return;
    cki_free(r->ctx, r->storages);
    cki_trec_drop_index(r);
    r->storages = NULL;
    r->storage_count = r->storage_cap = 0;
}

/* ---- small helpers ---------------------------------------------------------- */

static cki_tobj *new_obj(cki_trec *r, cki_tobj_kind kind, uint64_t off)
{
    /* objects, tensor and storage descriptions: 8-byte aligned (their widest
     * members), packed back to back */
    cki_tobj *t = cki_arena_alloc_ptrs(r->arena, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->off = off;
    r->objects++;
    return t;
}

static ck_status bad(cki_trec *r, uint64_t off, const char *what, const char *rule)
{
    return cki_fail(r->ctx, CK_EFORMAT, "%s: %s: %s at byte %llu: %s", r->file, r->where, what,
                    (unsigned long long)off, rule);
}

static int pv_str(const cki_pv *v, const char **s, uint64_t *len)
{
    if (!v || (v->kind != CKI_PV_STR && v->kind != CKI_PV_BYTES)) return 1;
    *s = v->u.s.p;
    if (len) *len = v->u.s.len;
    return 0;
}

static const cki_pv *arg(const cki_pv *args, uint32_t i)
{
    if (!args || (args->kind != CKI_PV_TUPLE && args->kind != CKI_PV_LIST) || i >= args->n)
        return NULL;
    return args->items[i];
}

static uint32_t nargs(const cki_pv *args)
{
    if (!args || (args->kind != CKI_PV_TUPLE && args->kind != CKI_PV_LIST)) return 0;
    return args->n;
}

static int tobj_i64(const cki_tobj *t, int64_t *v)
{
    if (!t || (t->kind != CKI_TO_INT && t->kind != CKI_TO_BOOL)) return 1;
    *v = t->u.i;
    return 0;
}

static int tobj_true(const cki_tobj *t)
{
    return t && (t->kind == CKI_TO_BOOL || t->kind == CKI_TO_INT) && t->u.i != 0;
}

static int pv_is_tensor_str(const cki_pv *v, const char *s)
{
    const char *p;
    uint64_t n;
    return !pv_str(v, &p, &n) && n == strlen(s) && memcmp(p, s, n) == 0;
}

/* ---- dtypes and storage classes ----------------------------------------------- */

static const struct {
    const char *name;
    ck_dtype dt;
} storage_classes[] = {
    {"DoubleStorage", CK_DT_F64},       {"FloatStorage", CK_DT_F32},
    {"HalfStorage", CK_DT_F16},         {"BFloat16Storage", CK_DT_BF16},
    {"LongStorage", CK_DT_I64},         {"IntStorage", CK_DT_I32},
    {"ShortStorage", CK_DT_I16},        {"CharStorage", CK_DT_I8},
    {"ByteStorage", CK_DT_U8},          {"BoolStorage", CK_DT_BOOL},
    {"ComplexFloatStorage", CK_DT_C64}, {"ComplexDoubleStorage", CK_DT_C128},
};

static const struct {
    const char *name;
    unsigned esize;
} quantized_classes[] = {
    {"QInt8Storage", 1},    {"QUInt8Storage", 1},   {"QInt32Storage", 4},
    {"QUInt4x2Storage", 1}, {"QUInt2x4Storage", 1}, {"ComplexHalfStorage", 4},
};

int cki_torch_storage_dtype(const char *name, ck_dtype *dt, int *untyped,
                            const char **unsupported)
{
    *untyped = 0;
    *unsupported = NULL;
    for (size_t i = 0; i < sizeof storage_classes / sizeof storage_classes[0]; i++)
        if (!strcmp(name, storage_classes[i].name)) {
            *dt = storage_classes[i].dt;
            return 0;
        }
    if (!strcmp(name, "UntypedStorage")) {
        *dt = CK_DT_COUNT;
        *untyped = 1;
        return 0;
    }
    for (size_t i = 0; i < sizeof quantized_classes / sizeof quantized_classes[0]; i++)
        if (!strcmp(name, quantized_classes[i].name)) {
            *dt = CK_DT_COUNT;
            *unsupported = name[0] == 'Q' ? "quantized storage" : "complex32 storage";
            return 0;
        }
    return 1;
}

static unsigned storage_esize(const char *name, ck_dtype dt, int untyped)
{
    if (untyped) return 1;
    if (dt != CK_DT_COUNT) return cki_dtype_size(dt);
    for (size_t i = 0; i < sizeof quantized_classes / sizeof quantized_classes[0]; i++)
        if (!strcmp(name, quantized_classes[i].name)) return quantized_classes[i].esize;
    return 0;
}

static const struct {
    const char *name;
    ck_dtype dt;
} torch_dtypes[] = {
    {"float32", CK_DT_F32},
    {"float", CK_DT_F32},
    {"float64", CK_DT_F64},
    {"double", CK_DT_F64},
    {"float16", CK_DT_F16},
    {"half", CK_DT_F16},
    {"bfloat16", CK_DT_BF16},
    {"int64", CK_DT_I64},
    {"long", CK_DT_I64},
    {"int32", CK_DT_I32},
    {"int", CK_DT_I32},
    {"int16", CK_DT_I16},
    {"short", CK_DT_I16},
    {"int8", CK_DT_I8},
    {"uint8", CK_DT_U8},
    {"bool", CK_DT_BOOL},
    {"complex64", CK_DT_C64},
    {"cfloat", CK_DT_C64},
    {"complex128", CK_DT_C128},
    {"cdouble", CK_DT_C128},
    {"uint16", CK_DT_U16},
    {"uint32", CK_DT_U32},
    {"uint64", CK_DT_U64},
    {"float8_e4m3fn", CK_DT_F8_E4M3},
    {"float8_e5m2", CK_DT_F8_E5M2},
    {"float8_e4m3fnuz", CK_DT_F8_E4M3FNUZ},
    {"float8_e5m2fnuz", CK_DT_F8_E5M2FNUZ},
    {"float8_e8m0fnu", CK_DT_F8_E8M0},
    {"float4_e2m1fn_x2", CK_DT_F4},
    /* no ckptkit equivalent: tensors of these are reported, not read */
    {"complex32", CK_DT_COUNT},
    {"chalf", CK_DT_COUNT},
    {"qint8", CK_DT_COUNT},
    {"quint8", CK_DT_COUNT},
    {"qint32", CK_DT_COUNT},
    {"quint4x2", CK_DT_COUNT},
    {"quint2x4", CK_DT_COUNT},
    {"bits1x8", CK_DT_COUNT},
    {"bits2x4", CK_DT_COUNT},
    {"bits4x2", CK_DT_COUNT},
    {"bits8", CK_DT_COUNT},
    {"bits16", CK_DT_COUNT},
    {"uint1", CK_DT_COUNT},
    {"uint2", CK_DT_COUNT},
    {"uint3", CK_DT_COUNT},
    {"uint4", CK_DT_COUNT},
    {"uint5", CK_DT_COUNT},
    {"uint6", CK_DT_COUNT},
    {"uint7", CK_DT_COUNT},
    {"int1", CK_DT_COUNT},
    {"int2", CK_DT_COUNT},
    {"int3", CK_DT_COUNT},
    {"int4", CK_DT_COUNT},
    {"int5", CK_DT_COUNT},
    {"int6", CK_DT_COUNT},
    {"int7", CK_DT_COUNT},
};

int cki_torch_dtype_global(const char *module, const char *name, cki_tdtype *out)
{
    if (strcmp(module, "torch") != 0) return 1;
    for (size_t i = 0; i < sizeof torch_dtypes / sizeof torch_dtypes[0]; i++)
        if (!strcmp(name, torch_dtypes[i].name)) {
            out->name = torch_dtypes[i].name;
            out->dt = torch_dtypes[i].dt;
            out->pairs = out->dt == CK_DT_F4;
            return 0;
        }
    return 1;
}

/* ---- storages ------------------------------------------------------------------ */

/* KEY as a plain decimal number ("0", or no leading zero) below 2^31, or -1:
 * "07" and "+7" are other keys than "7", so they stay in the map. */
static int64_t key_number(const char *key)
{
    int64_t n = 0;
    if (!key[0] || (key[0] == '0' && key[1])) return -1;
    for (const char *c = key; *c; c++) {
        if (*c < '0' || *c > '9') return -1;
        n = n * 10 + (*c - '0');
        if (n >= INT64_C(1) << 31) return -1;
    }
    return n;
}

/* The index of the storage whose index key is ID (KEY, or KEY \001 VIEW_KEY
 * when VIEW_KEY is set): 0 and *IDX, or 1. Numbered keys may sit in either
 * place (see add_index), so both are asked. */
static int find_index(const cki_trec *r, const char *key, const char *view_key,
                      const char *id, size_t id_len, size_t *idx)
{
    int64_t n = view_key ? -1 : key_number(key);
    if (n >= 0 && (uint64_t)n < r->storage_by_num_cap && r->storage_by_num[n]) {
        *idx = r->storage_by_num[n] - 1;
        return 0;
    }
    return cki_map_get(&r->storage_index, id, id_len, idx) ? 1 : 0;
}

/* Indexes storage INDEX under ID. A numbered key goes to the slots while N is
 * below twice the count plus 4096 (so hostile numbers cannot make the slots
 * outgrow the storages); every other key to the map. Returns -1 on no memory. */
static int add_index(cki_trec *r, const char *key, const char *view_key, const char *id,
                     size_t id_len, size_t index)
{
    int64_t n = view_key ? -1 : key_number(key);
    size_t existing;
    if (n >= 0 && (uint64_t)n < 2 * (uint64_t)r->storage_count + 4096 && index < UINT32_MAX) {
        if ((uint64_t)n >= r->storage_by_num_cap) {
            size_t cap = r->storage_by_num_cap ? r->storage_by_num_cap : 1024;
            uint32_t *slots;
            while (cap <= (uint64_t)n) cap *= 2;
            slots = cki_realloc(r->ctx, r->storage_by_num, cap * sizeof *slots);
            if (!slots) return -1;
            memset(slots + r->storage_by_num_cap, 0,
                   (cap - r->storage_by_num_cap) * sizeof *slots);
            r->storage_by_num = slots;
            r->storage_by_num_cap = cap;
        }
        r->storage_by_num[n] = (uint32_t)index + 1;
        return 0;
    }
    return cki_map_put(&r->storage_index, id, id_len, index, &existing) < 0 ? -1 : 0;
}

cki_tstorage *cki_trec_find_storage(const cki_trec *r, const char *key)
{
    size_t i;
    if (find_index(r, key, NULL, key, strlen(key), &i)) return NULL;
    return r->storages[i];
}

ck_status cki_trec_storage(cki_trec *r, const char *key, const char *view_key,
                           const char *type_module, const char *type_name, uint64_t numel,
                           uint64_t off, cki_tstorage **out)
{
    cki_buf id;
    size_t idx;
    cki_tstorage *s;
    ck_dtype dt;
    int untyped;
    const char *unsup;

    /* torch >= 2.3 names the untyped storage by its defining module */
    int untyped_home =
        !strcmp(type_module, "torch.storage") && !strcmp(type_name, "UntypedStorage");
    if ((strcmp(type_module, "torch") != 0 && strcmp(type_module, "torch.cuda") != 0 &&
         !untyped_home) ||
        cki_torch_storage_dtype(type_name, &dt, &untyped, &unsup))
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: %s: storage '%s' at byte %llu: '%s.%s' is not a torch storage class",
                        r->file, r->where, key, (unsigned long long)off, type_module, type_name);
    cki_buf_init(&id, r->ctx, 0);
    cki_buf_puts(&id, key);
    if (view_key) {
        cki_buf_putc(&id, '\001');
        cki_buf_puts(&id, view_key);
    }
    if (id.failed) {
        cki_buf_free(&id);
        return CK_ENOMEM;
    }
    if (!find_index(r, key, view_key, id.p, id.len, &idx)) {
        cki_buf_free(&id);
        s = r->storages[idx];
        if (strcmp(s->type_name, type_name) != 0 || s->numel != numel)
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: %s: storage '%s' at byte %llu: described as %s of %llu before, "
                            "now as %s of %llu",
                            r->file, r->where, key, (unsigned long long)off, s->type_name,
                            (unsigned long long)s->numel, type_name, (unsigned long long)numel);
        *out = s;
        return CK_OK;
    }
    s = cki_arena_alloc_ptrs(DESC(r), sizeof *s);
    if (!s) {
        cki_buf_free(&id);
        return CK_ENOMEM;
    }
    memset(s, 0, sizeof *s);
    s->key = cki_arena_strdup(DESC(r), key);
    /* every storage of a file usually has one of a few classes: one copy each */
    if (r->last_type && !strcmp(r->last_type, type_name)) {
        s->type_name = r->last_type;
    } else {
        s->type_name = cki_arena_strdup(DESC(r), type_name);
        r->last_type = s->type_name;
    }
    if (view_key && (!cki_tstorage_where_of(r, s) ||
                     !(s->where->view_key = cki_arena_strdup(DESC(r), view_key)))) {
        cki_buf_free(&id);
        return CK_ENOMEM;
    }
    {
        /* the index key is KEY itself unless there is a view key */
        const char *k = view_key ? cki_arena_strndup(DESC(r), id.p, id.len) : s->key;
        size_t klen = id.len;
        cki_buf_free(&id);
        if (!s->key || !s->type_name || !k) return CK_ENOMEM;
        s->dtype = (uint8_t)dt;
        s->untyped = untyped;
        s->unsupported = unsup;
        s->numel = numel;
        s->is_view = view_key != NULL;
        if (r->storage_count >= UINT32_MAX)
            return cki_fail(r->ctx, CK_ELIMIT, "%s: %s: more than %u storages", r->file,
                            r->where, (unsigned)UINT32_MAX - 1);
        if (r->storage_count == r->storage_cap) {
            size_t ncap = r->storage_cap ? r->storage_cap * 2 : 16;
            cki_tstorage **n = cki_realloc(r->ctx, r->storages, ncap * sizeof *n);
            if (!n) return CK_ENOMEM;
            r->storages = n;
            r->storage_cap = ncap;
        }
        s->index = (uint32_t)r->storage_count;
        if (add_index(r, key, view_key, k, klen, r->storage_count)) return CK_ENOMEM;
        r->storages[r->storage_count++] = s;
    }
    *out = s;
    return CK_OK;
}

cki_tstorage_where *cki_tstorage_where_of(cki_trec *r, cki_tstorage *s)
{
    if (!s->where) {
        s->where = cki_arena_alloc_ptrs(DESC(r), sizeof *s->where);
        if (s->where) memset(s->where, 0, sizeof *s->where);
    }
    return s->where;
}

unsigned cki_tstorage_esize(const cki_tstorage *s)
{
    return storage_esize(s->type_name, s->dtype, s->untyped);
}

/* Text form of a key (str, or int as decimal in TMP): the pickle's own
 * NUL-terminated copy of a string (cki_trec_storage copies what it keeps). */
static const char *key_text(const cki_pv *v, char tmp[32])
{
    const char *s;
    uint64_t n;
    if (!pv_str(v, &s, &n)) return memchr(s, 0, n) ? NULL : s;
    if (v && (v->kind == CKI_PV_INT || v->kind == CKI_PV_BOOL)) {
        snprintf(tmp, 32, "%lld", (long long)v->u.i);
        return tmp;
    }
    return NULL;
}

static ck_status conv(cki_trec *r, const cki_pv *v, uint32_t depth, cki_tobj **out);

/* T = SRC as it is now (walkers' marks cleared); an object's parts are
 * copied, so links SRC gets later (it may still be converting) stay its own. */
static ck_status copy_tobj(cki_trec *r, cki_tobj *t, const cki_tobj *src)
{
    *t = *src;
    t->mark = t->seen = 0;
    if (src->parts) {
        cki_tobj_parts *p = cki_arena_alloc_ptrs(r->arena, sizeof *p);
        if (!p) return CK_ENOMEM;
        *p = *src->parts;
        t->parts = p;
    }
    return CK_OK;
}

/* ('storage', type, key, location, numel[, view_metadata]) or ('module', ...). */
static ck_status storage_pid(cki_trec *r, const cki_pv *pid, uint64_t off, uint32_t depth,
                             cki_tobj *t)
{
    const cki_pv *type, *key, *loc, *numel, *view;
    const char *k, *vk = NULL;
    char ktmp[32], vktmp[32];
    int64_t n, voff = 0, vsize = 0;
    cki_tstorage *s;
    ck_status st;

    if (pv_is_tensor_str(arg(pid, 0), "module")) {
        cki_tobj *cls;
        if ((st = conv(r, arg(pid, 1), depth + 1, &cls))) return st;
        return cls ? copy_tobj(r, t, cls) : CK_OK;
    }
    type = arg(pid, 1);
    key = arg(pid, 2);
    loc = arg(pid, 3);
    numel = arg(pid, 4);
    view = arg(pid, 5);
    if (nargs(pid) < 5 || nargs(pid) > 6 || !type || type->kind != CKI_PV_GLOBAL)
        return bad(r, off, "persistent id",
                   "not ('storage', <storage class>, key, location, numel[, view])");
    if (!(k = key_text(key, ktmp))) return bad(r, off, "persistent id", "storage key is not a string");
    if (cki_pv_to_i64(numel, &n) || n < 0)
        return bad(r, off, "persistent id", "storage size is not an integer >= 0");
    if (view && view->kind != CKI_PV_NONE) {
        if (nargs(view) != 3 || !(vk = key_text(arg(view, 0), vktmp)) ||
            cki_pv_to_i64(arg(view, 1), &voff) || cki_pv_to_i64(arg(view, 2), &vsize) ||
            voff < 0 || vsize < 0)
            return bad(r, off, "persistent id",
                       "view metadata is not (view key, offset >= 0, size >= 0)");
    }
    if ((st = cki_trec_storage(r, k, vk, type->u.g.module, type->u.g.name, (uint64_t)n, off, &s)))
        return st;
    if (vk) {
        s->where->view_off = (uint64_t)voff; /* made with the view key */
        s->where->view_size = (uint64_t)vsize;
    }
    {
        const char *l;
        uint64_t ll;
        if (!s->location && !pv_str(loc, &l, &ll)) {
            /* "cpu" for every storage, typically: one copy while it repeats */
            if (r->last_loc && strlen(r->last_loc) == ll && !memcmp(r->last_loc, l, ll)) {
                s->location = r->last_loc;
            } else {
                s->location = cki_arena_strndup(DESC(r), l, ll);
                r->last_loc = s->location;
            }
        }
    }
    t->kind = CKI_TO_STORAGE;
    t->u.st = s;
    return CK_OK;
}

static ck_status persid(cki_trec *r, const cki_pv *pid, uint64_t off, uint32_t depth,
                        cki_tobj *t)
{
    if (pid && pid->kind == CKI_PV_TUPLE &&
        (pv_is_tensor_str(arg(pid, 0), "storage") || pv_is_tensor_str(arg(pid, 0), "module")))
        return storage_pid(r, pid, off, depth, t);
    if (r->persid) {
        cki_tobj *o;
        ck_status st = r->persid(r->persid_user, r, pid, off, &o);
        if (st) return st;
        return copy_tobj(r, t, o);
    }
    return bad(r, off, "persistent id", "not a ('storage', ...) tuple");
}

/* ---- tensors ----------------------------------------------------------------- */

/* Reads a tuple/list (or torch.Size) of ints >= 0 into a fresh arena array. */
static ck_status int_tuple(cki_trec *r, const cki_pv *v, uint32_t depth, uint64_t off,
                           const char *what, int64_t **out, int *n)
{
    cki_tobj *t;
    ck_status st;
    if ((st = conv(r, v, depth + 1, &t))) return st;
    if (!t || (t->kind != CKI_TO_TUPLE && t->kind != CKI_TO_LIST))
        return cki_fail(r->ctx, CK_EFORMAT, "%s: %s: tensor at byte %llu: %s is not a tuple",
                        r->file, r->where, (unsigned long long)off, what);
    if (t->n > CKI_MAX_DIMS)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: %s: tensor at byte %llu: %s has %u entries (at most %d dimensions)",
                        r->file, r->where, (unsigned long long)off, what, t->n, CKI_MAX_DIMS);
    *out = cki_arena_alloc_ptrs(DESC(r), sizeof(int64_t) * (t->n ? t->n : 1));
    if (!*out) return CK_ENOMEM;
    for (uint32_t i = 0; i < t->n; i++)
        if (tobj_i64(t->items[i], &(*out)[i]) || (*out)[i] < 0)
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: %s: tensor at byte %llu: %s entry %u is not an integer >= 0",
                            r->file, r->where, (unsigned long long)off, what, i);
    *n = (int)t->n;
    return CK_OK;
}

static void metadata_flags(const cki_tobj *meta, unsigned *flags)
{
    const cki_tobj *d = cki_tobj_as_dict(meta);
    if (!d) return;
    if (tobj_true(cki_tobj_get(d, "conj"))) *flags |= CKI_T_CONJ;
    if (tobj_true(cki_tobj_get(d, "neg"))) *flags |= CKI_T_NEG;
}

static ck_status storage_arg(cki_trec *r, const cki_pv *v, uint32_t depth, uint64_t off,
                             cki_tstorage **out)
{
    cki_tobj *t, tmp;
    ck_status st;
    memset(&tmp, 0, sizeof tmp);
    /* hand-built files pass the 'storage' tuple inline instead of as a persistent id */
    if (v && v->kind == CKI_PV_TUPLE && pv_is_tensor_str(arg(v, 0), "storage")) {
        t = memo_get(r, v);
        if (!t) {
            if (!(t = new_obj(r, CKI_TO_NONE, v->off)) || memo_put(r, v, t)) return CK_ENOMEM;
            if ((st = storage_pid(r, v, v->off, depth, t))) return st;
        }
    } else if (r->copy_strings && v && v->kind == CKI_PV_PERSID && !v->walk &&
               depth + 1 <= r->max_depth) {
        /* the graph is dropped after the conversion and nothing reaches a
         * storage object from its tensor: resolve the id into a temporary
         * (a node met again elsewhere is converted there, to the same
         * storage: cki_trec_storage finds it by key and checks it agrees) */
        if ((st = persid(r, v->n ? v->items[0] : NULL, v->off, depth + 1, &tmp))) return st;
        t = &tmp;
    } else if ((st = conv(r, v, depth + 1, &t))) {
        return st;
    }
    if (!t || t->kind != CKI_TO_STORAGE)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: %s: tensor at byte %llu: first argument is a %s, not a storage",
                        r->file, r->where, (unsigned long long)off,
                        v ? cki_pv_kind_name(v->kind) : "missing value");
    *out = t->u.st;
    return CK_OK;
}

enum { REBUILD_OLD, REBUILD_V2, REBUILD_V3 };

/* 1 if V is a bare `OrderedDict()` (the backward hooks torch.save writes for
 * every tensor) not converted yet, at a depth the limit allows: its object
 * would hold nothing and nothing reaches it from the tensor, so it is not
 * made (a 100,000-tensor file: 100,000 objects fewer). Only when the graph
 * is dropped after the conversion (copy_strings: the reader's zip path), so
 * walkers of a kept graph (the rewriter) still find an object on every node;
 * made as usual if the same node also sits somewhere a walker reaches. */
static int empty_ordered_dict(const cki_trec *r, const cki_pv *v, uint32_t depth)
{
    return r->copy_strings && v && depth <= r->max_depth && !v->walk && v->kind == CKI_PV_REDUCE && v->n == 2 &&
           !cki_pv_state(v) && !cki_pv_state_prev(v) && !cki_pv_extra(v) && !cki_pv_extra_list(v) &&
           cki_pv_is_global(v->items[0], "collections", "OrderedDict") && v->items[1] &&
           v->items[1]->kind == CKI_PV_TUPLE && v->items[1]->n == 0;
}

static ck_status rebuild_tensor(cki_trec *r, cki_tobj *t, const cki_pv *args, uint64_t off,
                                uint32_t depth, int variant)
{
    cki_ttensor *tt;
    int64_t offset;
    int nsize = 0, nstride = 0;
    uint32_t n = nargs(args);
    uint32_t need = variant == REBUILD_OLD ? 4 : variant == REBUILD_V2 ? 6 : 7;
    const cki_pv *meta = NULL;
    ck_status st;

    if (n < need || n > need + 1)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: %s: tensor at byte %llu: rebuild call has %u arguments (%u or %u "
                        "expected)",
                        r->file, r->where, (unsigned long long)off, n, need, need + 1);
    if (variant != REBUILD_OLD && n == need + 1) meta = arg(args, need);
    tt = cki_arena_alloc_ptrs(DESC(r), sizeof *tt);
    if (!tt) return CK_ENOMEM;
    memset(tt, 0, sizeof *tt);
    tt->off = off;
    if ((st = storage_arg(r, arg(args, 0), depth, off, &tt->storage))) return st;
    if (cki_pv_to_i64(arg(args, 1), &offset) || offset < 0)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: %s: tensor at byte %llu: storage offset is not an integer >= 0",
                        r->file, r->where, (unsigned long long)off);
    tt->offset = (uint64_t)offset;
    if ((st = int_tuple(r, arg(args, 2), depth, off, "size", &tt->shape, &nsize))) return st;
    if ((st = int_tuple(r, arg(args, 3), depth, off, "stride", &tt->stride, &nstride))) return st;
    if (nsize != nstride)
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: %s: tensor at byte %llu: size has %d entries but stride has %d",
                        r->file, r->where, (unsigned long long)off, nsize, nstride);
    tt->ndim = nsize;
    /* requires_grad and backward hooks carry nothing we keep, but their
     * values are still converted so any storage inside them is known */
    for (uint32_t i = 4; i < n; i++) {
        cki_tobj *x;
        if (i == 5 && variant != REBUILD_OLD && empty_ordered_dict(r, arg(args, i), depth + 1))
            continue;
        if ((st = conv(r, arg(args, i), depth + 1, &x))) return st;
        if (variant == REBUILD_V3 && i == 6) {
            if (!x || x->kind != CKI_TO_DTYPE)
                return cki_fail(r->ctx, CK_EFORMAT,
                                "%s: %s: tensor at byte %llu: dtype argument is not a torch dtype",
                                r->file, r->where, (unsigned long long)off);
            tt->dtype = x->u.dt.dt;
            tt->torch_dtype = x->u.dt.name;
            if (x->u.dt.dt == CK_DT_COUNT) tt->unsupported = "dtype without a ckptkit equivalent";
        }
        if (meta && arg(args, i) == meta) {
            unsigned f = tt->flags;
            metadata_flags(x, &f);
            tt->flags = (uint8_t)f;
        }
    }
    if (variant != REBUILD_V3) {
        tt->dtype = tt->storage->dtype;
        if (tt->storage->untyped)
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: %s: tensor at byte %llu: untyped storage '%s' needs "
                            "_rebuild_tensor_v3 (with a dtype)",
                            r->file, r->where, (unsigned long long)off, tt->storage->key);
    } else if (!tt->storage->untyped && tt->storage->dtype != CK_DT_COUNT &&
               tt->dtype != CK_DT_COUNT &&
               ck_dtype_bits(tt->storage->dtype) != ck_dtype_bits(tt->dtype)) {
        return cki_fail(r->ctx, CK_EFORMAT,
                        "%s: %s: tensor at byte %llu: dtype %s does not match storage class %s",
                        r->file, r->where, (unsigned long long)off, tt->torch_dtype,
                        tt->storage->type_name);
    }
    if (tt->storage->unsupported) tt->unsupported = tt->storage->unsupported;
    if (!tt->unsupported && tt->dtype == CK_DT_F4) {
        /* float4_e2m1fn_x2: one byte holds two values; expose the logical
         * count (last dimension doubled) and only dense, unshifted views */
        uint64_t expect = 1;
        int dense = tt->ndim > 0 && tt->offset == 0;
        for (int d = tt->ndim - 1; dense && d >= 0; d--) {
            if (tt->shape[d] != 1 && (uint64_t)tt->stride[d] != expect) dense = 0;
            if (cki_mul_u64(&expect, expect, (uint64_t)tt->shape[d]) || expect > INT64_MAX)
                dense = 0;
        }
        if (!dense || tt->shape[tt->ndim - 1] > INT64_MAX / 2) {
            tt->unsupported = "float4_e2m1fn_x2 view that is not dense";
        } else {
            tt->shape[tt->ndim - 1] *= 2;
            tt->stride = NULL;
        }
    }
    if (!tt->unsupported && tt->dtype == CK_DT_COUNT) tt->unsupported = "unknown dtype";
    t->kind = CKI_TO_TENSOR;
    t->u.t = tt;
    return CK_OK;
}

/* A tensor kind ckptkit cannot read: keep what is known for reporting. */
static ck_status unsupported_tensor(cki_trec *r, cki_tobj *t, const cki_pv *args, uint64_t off,
                                    uint32_t depth, const char *why, int dtype_arg, int size_arg)
{
    cki_ttensor *tt = cki_arena_alloc(DESC(r), sizeof *tt);
    cki_tobj *a;
    ck_status st;
    if (!tt) return CK_ENOMEM;
    memset(tt, 0, sizeof *tt);
    tt->off = off;
    tt->unsupported = why;
    tt->dtype = CK_DT_COUNT;
    tt->ndim = -1;
    /* convert every argument: storages inside must still be registered */
    if ((st = conv(r, args, depth + 1, &a))) return st;
    if (a && (a->kind == CKI_TO_TUPLE || a->kind == CKI_TO_LIST)) {
        if (dtype_arg >= 0 && (uint32_t)dtype_arg < a->n && a->items[dtype_arg]) {
            const cki_tobj *d = a->items[dtype_arg];
            if (d->kind == CKI_TO_DTYPE) {
                tt->dtype = d->u.dt.dt;
                tt->torch_dtype = d->u.dt.name;
            } else if (d->kind == CKI_TO_STORAGE) {
                tt->dtype = d->u.st->dtype;
                tt->torch_dtype = d->u.st->type_name;
            }
        }
        if (size_arg >= 0 && (uint32_t)size_arg < a->n && a->items[size_arg]) {
            const cki_tobj *s = a->items[size_arg];
            if ((s->kind == CKI_TO_TUPLE || s->kind == CKI_TO_LIST) && s->n <= CKI_MAX_DIMS) {
                int64_t *shape = cki_arena_alloc(DESC(r), sizeof(int64_t) * (s->n ? s->n : 1));
                int ok = shape != NULL;
                for (uint32_t i = 0; ok && i < s->n; i++)
                    if (tobj_i64(s->items[i], &shape[i])) ok = 0;
                if (ok) {
                    tt->shape = shape;
                    tt->ndim = (int)s->n;
                }
            }
        }
    }
    t->kind = CKI_TO_TENSOR;
    t->u.t = tt;
    return CK_OK;
}

/* ---- plain values ---------------------------------------------------------- */

static ck_status add_items(cki_trec *r, cki_tobj *t, const cki_tobj *src, uint32_t per)
{
    cki_tobj **n;
    uint32_t add = src->n * per, total;
    if (!add) return CK_OK;
    if (__builtin_add_overflow(t->n * (t->kind == CKI_TO_DICT ? 2u : 1u), add, &total))
        return CK_ENOMEM;
    n = cki_arena_alloc(r->arena, sizeof *n * total);
    if (!n) return CK_ENOMEM;
    if (t->n) memcpy(n, t->items, sizeof *n * (total - add));
    memcpy(n + (total - add), src->items, sizeof *n * add);
    t->items = n;
    t->n = t->kind == CKI_TO_DICT ? total / 2 : total;
    return CK_OK;
}

/* Appends the pairs of an iterable SRC (dict, or sequence of 2-sequences). */
static ck_status add_pairs(cki_trec *r, cki_tobj *t, const cki_tobj *src, uint64_t off)
{
    if (!src || src->kind == CKI_TO_NONE) return CK_OK;
    if (src->kind == CKI_TO_DICT) return add_items(r, t, src, 2);
    if (src->kind == CKI_TO_LIST || src->kind == CKI_TO_TUPLE) {
        cki_tobj **n = cki_arena_alloc(r->arena, sizeof *n * (2 * (size_t)(t->n + src->n) + 1));
        if (!n) return CK_ENOMEM;
        if (t->n) memcpy(n, t->items, sizeof *n * 2 * t->n);
        for (uint32_t i = 0; i < src->n; i++) {
            const cki_tobj *p = src->items[i];
            if (!p || (p->kind != CKI_TO_TUPLE && p->kind != CKI_TO_LIST) || p->n != 2)
                return cki_fail(r->ctx, CK_EFORMAT,
                                "%s: %s: dict at byte %llu: item %u is not a (key, value) pair",
                                r->file, r->where, (unsigned long long)off, i);
            n[2 * (t->n + i)] = p->items[0];
            n[2 * (t->n + i) + 1] = p->items[1];
        }
        t->items = n;
        t->n += src->n;
        return CK_OK;
    }
    return cki_fail(r->ctx, CK_EFORMAT,
                    "%s: %s: dict at byte %llu: initial items are not a dict or a list of pairs",
                    r->file, r->where, (unsigned long long)off);
}

/* Decodes UTF-8 text whose code points are all below 256 into bytes. */
static int latin1_bytes(cki_trec *r, const char *s, uint64_t n, const char **out, uint64_t *len)
{
    char *b = cki_arena_alloc(r->arena, n + 1);
    uint64_t j = 0;
    if (!b) return 1;
    for (uint64_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            b[j++] = (char)c;
            i++;
        } else if ((c == 0xc2 || c == 0xc3) && i + 1 < n &&
                   ((unsigned char)s[i + 1] & 0xc0) == 0x80) {
            b[j++] = (char)(((c & 0x1f) << 6) | ((unsigned char)s[i + 1] & 0x3f));
            i += 2;
        } else {
            return 1;
        }
    }
    b[j] = 0;
    *out = b;
    *len = j;
    return 0;
}

/* _codecs.encode(text, encoding) -> bytes, for the encodings pickles use. */
static int encode_text(cki_trec *r, cki_tobj *t, const cki_tobj *text, const cki_tobj *enc)
{
    const char *e = "utf-8", *p;
    uint64_t n;
    if (!text || text->kind != CKI_TO_STR) return 1;
    if (enc) {
        if (enc->kind != CKI_TO_STR) return 1;
        e = enc->u.s.p;
    }
    if (!strcmp(e, "latin1") || !strcmp(e, "latin-1") || !strcmp(e, "iso-8859-1") ||
        !strcmp(e, "iso8859-1") || !strcmp(e, "l1")) {
        if (latin1_bytes(r, text->u.s.p, text->u.s.len, &p, &n)) return 1;
    } else if (!strcmp(e, "utf-8") || !strcmp(e, "utf8") || !strcmp(e, "ascii")) {
        p = text->u.s.p;
        n = text->u.s.len;
    } else {
        return 1;
    }
    t->kind = CKI_TO_BYTES;
    t->u.s.p = p;
    t->u.s.len = n;
    return 0;
}

static double half_to_double(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = m / 16777216.0; /* m * 2^-24 */
    else if (e == 31) v = m ? __builtin_nan("") : __builtin_inf();
    else v = (1.0 + m / 1024.0) * __builtin_ldexp(1.0, e - 15);
    return (h & 0x8000) ? -v : v;
}

/* numpy scalar(dtype, raw bytes) -> a number, for plain numeric dtypes. */
static int numpy_scalar(cki_tobj *t, const cki_tobj *dtype, const cki_tobj *raw)
{
    const char *d;
    uint8_t b[16];
    int be, size;
    char kind;
    if (!dtype || dtype->kind != CKI_TO_NPDTYPE || !raw ||
        (raw->kind != CKI_TO_BYTES && raw->kind != CKI_TO_STR))
        return 1;
    d = dtype->u.s.p;
    if (strlen(d) < 3) return 1;
    be = d[0] == '>';
    kind = d[1];
    size = cki_np_itemsize(d);
    if (size <= 0 || size > 16 || raw->u.s.len != (uint64_t)size) return 1;
    for (int i = 0; i < size; i++) b[i] = (uint8_t)raw->u.s.p[be ? size - 1 - i : i];
    switch (kind) {
    case 'b':
        if (size != 1) return 1;
        t->kind = CKI_TO_BOOL;
        t->u.i = b[0] != 0;
        return 0;
    case 'i':
    case 'u': {
        uint64_t v = 0;
        if (size > 8 || (size & (size - 1))) return 1;
        for (int i = size - 1; i >= 0; i--) v = v << 8 | b[i];
        if (kind == 'i' && size < 8 && (v >> (8 * size - 1)) & 1) v |= ~0ull << (8 * size);
        if (kind == 'u' && v > INT64_MAX) {
            t->kind = CKI_TO_FLOAT;
            t->u.f = (double)v;
            return 0;
        }
        t->kind = CKI_TO_INT;
        t->u.i = (int64_t)v;
        return 0;
    }
    case 'f':
        if (size == 2) {
            t->u.f = half_to_double((uint16_t)(b[0] | b[1] << 8));
        } else if (size == 4) {
            float f;
            memcpy(&f, b, 4);
            t->u.f = f;
        } else if (size == 8) {
            memcpy(&t->u.f, b, 8);
        } else {
            return 1;
        }
        t->kind = CKI_TO_FLOAT;
        return 0;
    case 'c':
        if (size == 8) {
            float re, im;
            memcpy(&re, b, 4);
            memcpy(&im, b + 4, 4);
            t->u.c[0] = re;
            t->u.c[1] = im;
        } else if (size == 16) {
            memcpy(&t->u.c[0], b, 8);
            memcpy(&t->u.c[1], b + 8, 8);
        } else {
            return 1;
        }
        t->kind = CKI_TO_COMPLEX;
        return 0;
    default: return 1;
    }
}

/* numpy.dtype('f4', align, copy) + BUILD (version, byteorder, ...) -> "<f4". */
static ck_status numpy_dtype(cki_trec *r, cki_tobj *t, const cki_pv *v, const cki_pv *args,
                             uint32_t depth)
{
    const char *code, *order = "|";
    uint64_t clen;
    cki_tobj *state;
    char *s;
    ck_status st;
    if (pv_str(arg(args, 0), &code, &clen) || clen == 0 || clen > 32) return CK_EFORMAT;
    if ((st = conv(r, cki_pv_state(v), depth + 1, &state))) return st;
    if (state && state->kind == CKI_TO_TUPLE && state->n >= 2 && state->items[1] &&
        state->items[1]->kind == CKI_TO_STR && state->items[1]->u.s.len == 1)
        order = state->items[1]->u.s.p;
    if (!strcmp(order, "=")) order = "<";
    s = cki_arena_alloc(r->arena, clen + 2);
    if (!s) return CK_ENOMEM;
    s[0] = order[0];
    memcpy(s + 1, code, clen);
    s[clen + 1] = 0;
    t->kind = CKI_TO_NPDTYPE;
    t->u.s.p = s;
    t->u.s.len = clen + 1;
    return CK_OK;
}

/* numpy _reconstruct(ndarray, (0,), b'b') + BUILD (version, shape, dtype,
 * fortran, raw) -> an array value. 1: not that shape (caller goes opaque). */
static int numpy_array(cki_trec *r, cki_tobj *t, const cki_tobj *state)
{
    const cki_tobj *shape, *dtype, *raw;
    cki_tarray *a;
    uint64_t numel = 1, need;
    if (!state || state->kind != CKI_TO_TUPLE || state->n != 5) return 1;
    shape = state->items[1];
    dtype = state->items[2];
    raw = state->items[4];
    if (!shape || shape->kind != CKI_TO_TUPLE || shape->n > CKI_MAX_DIMS || !dtype ||
        dtype->kind != CKI_TO_NPDTYPE || !raw ||
        (raw->kind != CKI_TO_BYTES && raw->kind != CKI_TO_STR))
        return 1;
    a = cki_arena_alloc(r->arena, sizeof *a);
    if (!a) return 1;
    memset(a, 0, sizeof *a);
    a->shape = cki_arena_alloc(r->arena, sizeof(int64_t) * (shape->n ? shape->n : 1));
    if (!a->shape) return 1;
    for (uint32_t i = 0; i < shape->n; i++) {
        if (tobj_i64(shape->items[i], &a->shape[i]) || a->shape[i] < 0) return 1;
        if (cki_mul_u64(&numel, numel, (uint64_t)a->shape[i])) return 1;
    }
    a->ndim = (int)shape->n;
    a->dtype = dtype->u.s.p;
    a->fortran = tobj_true(state->items[3]);
    if (raw->kind == CKI_TO_STR) {
        if (latin1_bytes(r, raw->u.s.p, raw->u.s.len, (const char **)&a->data, &a->len)) return 1;
    } else {
        a->data = (const uint8_t *)raw->u.s.p;
        a->len = raw->u.s.len;
    }
    if (strlen(a->dtype) < 3 || cki_np_itemsize(a->dtype) < 0 ||
        cki_mul_u64(&need, numel, (uint64_t)cki_np_itemsize(a->dtype)) ||
        need != a->len)
        return 1;
    t->kind = CKI_TO_ARRAY;
    t->u.arr = a;
    return 0;
}

static ck_status opaque(cki_trec *r, cki_tobj *t, const cki_pv *v, const cki_tobj *callable,
                        const cki_pv *args, uint32_t depth)
{
    ck_status st;
    t->kind = CKI_TO_OBJECT;
    if (callable && (callable->kind == CKI_TO_GLOBAL || callable->kind == CKI_TO_OBJECT)) {
        t->u.g.module = callable->u.g.module;
        t->u.g.name = callable->u.g.name;
    } else {
        t->u.g.module = "?";
        t->u.g.name = callable ? "(not a global)" : "?";
    }
    {
        /* attached first, each link set as its conversion returns: a cycle
         * back to T sees what is known so far (copies take a snapshot:
         * copy_tobj) */
        cki_tobj_parts *p = cki_arena_alloc_ptrs(r->arena, sizeof *p);
        if (!p) return CK_ENOMEM;
        memset(p, 0, sizeof *p);
        t->parts = p;
        if ((st = conv(r, args, depth + 1, &p->args))) return st;
        if (v) {
            if ((st = conv(r, cki_pv_state(v), depth + 1, &p->state))) return st;
            if ((st = conv(r, cki_pv_extra(v), depth + 1, &p->dict))) return st;
            if ((st = conv(r, cki_pv_extra_list(v), depth + 1, &p->list))) return st;
        }
    }
    return CK_OK;
}

static int is(const cki_tobj *g, const char *module, const char *name)
{
    return g && g->kind == CKI_TO_GLOBAL && !strcmp(g->u.g.module, module) &&
           !strcmp(g->u.g.name, name);
}

static int is_numpy(const cki_tobj *g, const char *name)
{
    return is(g, "numpy.core.multiarray", name) || is(g, "numpy._core.multiarray", name);
}

/* Copies the tobj SRC (a converted child) into T, as T's meaning. */
static ck_status become(cki_trec *r, cki_tobj *t, const cki_tobj *src)
{
    uint64_t off = t->off;
    ck_status st;
    if (!src || src == t) {
        t->kind = CKI_TO_NONE;
        return CK_OK;
    }
    st = copy_tobj(r, t, src);
    t->off = off;
    return st;
}

/* callable(*args) where V is the REDUCE/NEWOBJ node (NULL for the inner call
 * of _rebuild_from_type_v2). */
static ck_status call(cki_trec *r, cki_tobj *t, const cki_pv *v, const cki_pv *callable_pv,
                      const cki_pv *args, uint64_t off, uint32_t depth)
{
    cki_tobj *c, *a0 = NULL, *a1 = NULL;
    ck_status st;

    if ((st = conv(r, callable_pv, depth + 1, &c))) return st;
    if (!c || c->kind != CKI_TO_GLOBAL) return opaque(r, t, v, c, args, depth);

    if (!strcmp(c->u.g.module, "torch._utils")) {
        const char *n = c->u.g.name;
        if (!strcmp(n, "_rebuild_tensor_v2"))
            return rebuild_tensor(r, t, args, off, depth, REBUILD_V2);
        if (!strcmp(n, "_rebuild_tensor_v3"))
            return rebuild_tensor(r, t, args, off, depth, REBUILD_V3);
        if (!strcmp(n, "_rebuild_tensor"))
            return rebuild_tensor(r, t, args, off, depth, REBUILD_OLD);
        if (!strcmp(n, "_rebuild_parameter") || !strcmp(n, "_rebuild_parameter_with_state") ||
            !strcmp(n, "_rebuild_device_tensor_from_cpu_tensor")) {
            cki_tobj *x;
            if ((st = conv(r, args, depth + 1, &x))) return st;
            if (x && x->kind == CKI_TO_TUPLE && x->n >= 1 && x->items[0] &&
                x->items[0]->kind == CKI_TO_TENSOR) {
                if ((st = become(r, t, x->items[0]))) return st;
                if (n[9] == 'p') t->u.t->parameter = 1;
                return CK_OK;
            }
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: %s: %s at byte %llu: first argument is not a tensor", r->file,
                            r->where, n, (unsigned long long)off);
        }
        if (!strcmp(n, "_rebuild_qtensor"))
            return unsupported_tensor(r, t, args, off, depth, "quantized tensor", 0, 2);
        if (!strcmp(n, "_rebuild_sparse_tensor") || !strcmp(n, "_rebuild_sparse_csr_tensor"))
            return unsupported_tensor(r, t, args, off, depth, "sparse tensor", -1, -1);
        if (!strcmp(n, "_rebuild_meta_tensor_no_storage"))
            return unsupported_tensor(r, t, args, off, depth, "meta tensor (no data)", 0, 1);
        if (!strcmp(n, "_rebuild_wrapper_subclass"))
            return unsupported_tensor(r, t, args, off, depth, "tensor subclass without storage",
                                      1, 2);
        if (!strcmp(n, "_rebuild_nested_tensor"))
            return unsupported_tensor(r, t, args, off, depth, "nested tensor", -1, -1);
        if (!strcmp(n, "_rebuild_device_tensor_from_numpy") ||
            !strcmp(n, "_rebuild_xla_tensor") || !strcmp(n, "_rebuild_mlc_tensor"))
            return unsupported_tensor(r, t, args, off, depth, "device tensor without storage", 1,
                                      -1);
    }
    if (is(c, "torch._tensor", "_rebuild_from_type_v2")) {
        const cki_pv *fn = arg(args, 0), *fargs = arg(args, 2);
        if (nargs(args) != 4 || !fn || !fargs || fargs->kind != CKI_PV_TUPLE)
            return cki_fail(r->ctx, CK_EFORMAT,
                            "%s: %s: _rebuild_from_type_v2 at byte %llu: expected (func, type, "
                            "args, state)",
                            r->file, r->where, (unsigned long long)off);
        if ((st = call(r, t, NULL, fn, fargs, off, depth + 1))) return st;
        if (t->kind == CKI_TO_TENSOR) {
            cki_tobj *rest;
            /* the type and state are kept nowhere, but converted so storages are seen */
            if ((st = conv(r, arg(args, 1), depth + 1, &rest))) return st;
            return conv(r, arg(args, 3), depth + 1, &rest);
        }
        return opaque(r, t, v, c, args, depth);
    }
    if (is(c, "torch.nn.parameter", "Parameter")) {
        cki_tobj *x;
        if ((st = conv(r, args, depth + 1, &x))) return st;
        if (x && x->kind == CKI_TO_TUPLE && x->n >= 1 && x->items[0] &&
            x->items[0]->kind == CKI_TO_TENSOR) {
            if ((st = become(r, t, x->items[0]))) return st;
            t->u.t->parameter = 1;
            return CK_OK;
        }
        return opaque(r, t, v, c, args, depth);
    }

    if ((st = conv(r, arg(args, 0), depth + 1, &a0))) return st;
    if ((st = conv(r, arg(args, 1), depth + 1, &a1))) return st;

    if (is(c, "collections", "OrderedDict") || is(c, "builtins", "dict") ||
        is(c, "collections", "Counter") || is(c, "collections", "defaultdict")) {
        cki_tobj *items = is(c, "collections", "defaultdict") ? a1 : a0, *extra;
        t->kind = CKI_TO_DICT;
        t->n = 0;
        if (is(c, "collections", "OrderedDict")) t->vflags |= CK_VALUE_F_ORDERED;
        if ((st = add_pairs(r, t, items, off))) return st;
        if (v && cki_pv_extra(v)) {
            if ((st = conv(r, cki_pv_extra(v), depth + 1, &extra))) return st;
            if (extra && extra->kind == CKI_TO_DICT && (st = add_items(r, t, extra, 2)))
                return st;
        }
        if (v && cki_pv_state(v)) { /* e.g. {'_metadata': ...}: not part of the mapping */
            cki_tobj *s;
            if ((st = conv(r, cki_pv_state(v), depth + 1, &s))) return st;
        }
        return CK_OK;
    }
    if (is(c, "builtins", "set") || is(c, "builtins", "frozenset") || is(c, "builtins", "list") ||
        is(c, "builtins", "tuple")) {
        const char *n = c->u.g.name;
        t->kind = n[0] == 'l' ? CKI_TO_LIST : n[0] == 't' ? CKI_TO_TUPLE : CKI_TO_SET;
        t->n = 0;
        if (n[0] == 'f') t->vflags |= CK_VALUE_F_FROZEN;
        if (a0 && (a0->kind == CKI_TO_LIST || a0->kind == CKI_TO_TUPLE || a0->kind == CKI_TO_SET) &&
            (st = add_items(r, t, a0, 1)))
            return st;
        if (v && cki_pv_extra_list(v)) {
            cki_tobj *extra;
            if ((st = conv(r, cki_pv_extra_list(v), depth + 1, &extra))) return st;
            if (extra && extra->kind == CKI_TO_LIST && (st = add_items(r, t, extra, 1))) return st;
        }
        return CK_OK;
    }
    if (is(c, "builtins", "slice")) {
        cki_tobj **it = cki_arena_alloc(r->arena, sizeof *it * 3);
        if (!it) return CK_ENOMEM;
        for (uint32_t i = 0; i < 3; i++) {
            if ((st = conv(r, arg(args, i), depth + 1, &it[i]))) return st;
        }
        t->kind = CKI_TO_SLICE;
        t->items = it;
        t->n = 3;
        return CK_OK;
    }
    if (is(c, "builtins", "complex")) {
        double part[2] = {0, 0};
        int ok = 1;
        const cki_tobj *p[2] = {a0, a1};
        for (int i = 0; i < 2; i++) {
            if (!p[i]) continue;
            if (p[i]->kind == CKI_TO_FLOAT) part[i] = p[i]->u.f;
            else if (p[i]->kind == CKI_TO_INT || p[i]->kind == CKI_TO_BOOL)
                part[i] = (double)p[i]->u.i;
            else ok = 0;
        }
        if (ok) {
            t->kind = CKI_TO_COMPLEX;
            t->u.c[0] = part[0];
            t->u.c[1] = part[1];
            return CK_OK;
        }
        return opaque(r, t, v, c, args, depth);
    }
    if (is(c, "_codecs", "encode") || is(c, "builtins", "bytearray") ||
        is(c, "builtins", "bytes")) {
        if (!a0) {
            t->kind = CKI_TO_BYTES;
            t->u.s.p = "";
            t->u.s.len = 0;
            return CK_OK;
        }
        if (a0->kind == CKI_TO_BYTES && c->u.g.name[0] == 'b') {
            if ((st = become(r, t, a0))) return st;
            return CK_OK;
        }
        if (!encode_text(r, t, a0, a1)) return CK_OK;
        return opaque(r, t, v, c, args, depth);
    }
    if (is(c, "torch", "Size")) {
        if (a0 && (a0->kind == CKI_TO_TUPLE || a0->kind == CKI_TO_LIST)) {
            if ((st = become(r, t, a0))) return st;
            t->kind = CKI_TO_TUPLE;
            t->vflags |= CK_VALUE_F_SIZE;
            return CK_OK;
        }
        return opaque(r, t, v, c, args, depth);
    }
    if (is(c, "torch", "device")) {
        if (a0 && a0->kind == CKI_TO_STR) {
            int64_t idx;
            if (!tobj_i64(a1, &idx)) {
                char tmp[48];
                char *s;
                snprintf(tmp, sizeof tmp, ":%lld", (long long)idx);
                s = cki_arena_alloc(r->arena, a0->u.s.len + strlen(tmp) + 1);
                if (!s) return CK_ENOMEM;
                memcpy(s, a0->u.s.p, a0->u.s.len);
                strcpy(s + a0->u.s.len, tmp);
                t->kind = CKI_TO_STR;
                t->u.s.p = s;
                t->u.s.len = strlen(s);
            } else {
                if ((st = become(r, t, a0))) return st;
            }
            t->vflags |= CK_VALUE_F_DEVICE;
            return CK_OK;
        }
        return opaque(r, t, v, c, args, depth);
    }
    if (is(c, "numpy", "dtype")) {
        st = numpy_dtype(r, t, v, args, depth);
        if (st == CK_EFORMAT) return opaque(r, t, v, c, args, depth);
        return st;
    }
    if (is_numpy(c, "scalar")) {
        if (!numpy_scalar(t, a0, a1)) return CK_OK;
        return opaque(r, t, v, c, args, depth);
    }
    if (is_numpy(c, "_reconstruct") && v && cki_pv_state(v)) {
        cki_tobj *s;
        if ((st = conv(r, cki_pv_state(v), depth + 1, &s))) return st;
        if (!numpy_array(r, t, s)) return CK_OK;
        return opaque(r, t, v, c, args, depth);
    }
    if (is(c, "argparse", "Namespace")) {
        cki_tobj *s;
        if ((st = conv(r, v ? cki_pv_state(v) : NULL, depth + 1, &s))) return st;
        t->kind = CKI_TO_DICT;
        t->n = 0;
        if (s && s->kind == CKI_TO_DICT && (st = add_items(r, t, s, 2))) return st;
        return CK_OK;
    }
    return opaque(r, t, v, c, args, depth);
}

/* A CKI_PV_TREBUILD record (cki_pickle_run_lean): the call it replaces is
 * rebuilt on the C stack (the persistent id and the OrderedDict() call with
 * their own offsets) and converted as a REDUCE node would be, so objects and
 * messages are the same. */
static ck_status rebuild_record(cki_trec *r, cki_tobj *t, const cki_pv *v, uint32_t depth)
{
    cki_pv key, tup, pid, hooks, args;
    cki_pv *tup_items[5], *pid_items[1], *hook_items[2], *arg_items[6];
    const cki_pv *sh = v->n == CKI_TRB_COUNT ? v->items[CKI_TRB_SHARED] : NULL;
    if (!sh || sh->kind != CKI_PV_TUPLE || sh->n != CKI_TRS_COUNT)
        return cki_fail(r->ctx, CK_EFORMAT, "%s: %s: call at byte %llu has no arguments",
                        r->file, r->where, (unsigned long long)v->off);
    memset(&key, 0, sizeof key);
    memset(&tup, 0, sizeof tup);
    memset(&pid, 0, sizeof pid);
    memset(&hooks, 0, sizeof hooks);
    memset(&args, 0, sizeof args);
    key.kind = CKI_PV_STR;
    key.u.s.p = v->u.s.p;
    key.u.s.len = v->u.s.len;
    key.off = tup.off = pid.off = cki_pv_trebuild_off(v, 0);
    tup_items[0] = sh->items[CKI_TRS_TAG];
    tup_items[1] = sh->items[CKI_TRS_CLASS];
    tup_items[2] = &key;
    tup_items[3] = sh->items[CKI_TRS_LOCATION];
    tup_items[4] = v->items[CKI_TRB_NUMEL];
    tup.kind = CKI_PV_TUPLE;
    tup.items = tup_items;
    tup.n = tup.cap = 5;
    pid_items[0] = &tup;
    pid.kind = CKI_PV_PERSID;
    pid.items = pid_items;
    pid.n = pid.cap = 1;
    hook_items[0] = sh->items[CKI_TRS_HOOKS_CLASS];
    hook_items[1] = sh->items[CKI_TRS_HOOKS_ARGS];
    hooks.kind = CKI_PV_REDUCE;
    hooks.items = hook_items;
    hooks.n = hooks.cap = 2;
    hooks.off = cki_pv_trebuild_off(v, 1);
    arg_items[0] = &pid;
    arg_items[1] = v->items[CKI_TRB_OFFSET];
    arg_items[2] = v->items[CKI_TRB_SIZE];
    arg_items[3] = v->items[CKI_TRB_STRIDE];
    arg_items[4] = v->items[CKI_TRB_GRAD];
    arg_items[5] = &hooks;
    args.kind = CKI_PV_TUPLE;
    args.items = arg_items;
    args.n = args.cap = 6;
    args.off = v->off;
    return call(r, t, v, sh->items[CKI_TRS_CALLABLE], &args, v->off, depth);
}

static ck_status conv(cki_trec *r, const cki_pv *v, uint32_t depth, cki_tobj **out)
{
    cki_tobj *t;
    ck_status st = CK_OK;
    if (!v) {
        *out = NULL;
        return CK_OK;
    }
    if ((t = memo_get(r, v))) {
        *out = t;
        return CK_OK;
    }
    if (depth > r->max_depth)
        return cki_fail(r->ctx, CK_ELIMIT,
                        "%s: %s: value at byte %llu is nested deeper than %u levels (limit)",
                        r->file, r->where, (unsigned long long)v->off, r->max_depth);
    if (!(t = new_obj(r, CKI_TO_NONE, v->off)) || memo_put(r, v, t)) return CK_ENOMEM;
    switch (v->kind) {
    case CKI_PV_NONE: break;
    case CKI_PV_BOOL: t->kind = CKI_TO_BOOL; t->u.i = v->u.i; break;
    case CKI_PV_INT: t->kind = CKI_TO_INT; t->u.i = v->u.i; break;
    case CKI_PV_FLOAT: t->kind = CKI_TO_FLOAT; t->u.f = v->u.f; break;
    case CKI_PV_BIGINT:
    case CKI_PV_STR:
    case CKI_PV_BYTES:
        t->kind = v->kind == CKI_PV_BIGINT ? CKI_TO_BIGINT
                  : v->kind == CKI_PV_STR  ? CKI_TO_STR
                                           : CKI_TO_BYTES;
        t->u.s.p = r->copy_strings && !(r->text && r->graph_texts == r->text)
                       ? cki_arena_strndup(r->text ? r->text : r->arena, v->u.s.p, v->u.s.len)
                       : v->u.s.p;
        if (!t->u.s.p) return CK_ENOMEM;
        t->u.s.len = v->u.s.len;
        break;
    case CKI_PV_TUPLE:
    case CKI_PV_LIST:
    case CKI_PV_SET:
    case CKI_PV_FROZENSET:
    case CKI_PV_DICT: {
        uint32_t count = v->kind == CKI_PV_DICT ? 2 * v->n : v->n;
        t->kind = v->kind == CKI_PV_TUPLE  ? CKI_TO_TUPLE
                  : v->kind == CKI_PV_LIST ? CKI_TO_LIST
                  : v->kind == CKI_PV_DICT ? CKI_TO_DICT
                                           : CKI_TO_SET;
        if (v->kind == CKI_PV_FROZENSET) t->vflags |= CK_VALUE_F_FROZEN;
        if (count) {
            t->items = cki_arena_alloc_ptrs(r->arena, sizeof *t->items * count);
            if (!t->items) return CK_ENOMEM;
            for (uint32_t i = 0; i < count; i++)
                if ((st = conv(r, v->items[i], depth + 1, &t->items[i]))) return st;
        }
        t->n = v->n;
        break;
    }
    case CKI_PV_GLOBAL:
        if (!cki_torch_dtype_global(v->u.g.module, v->u.g.name, &t->u.dt)) {
            t->kind = CKI_TO_DTYPE;
        } else {
            t->kind = CKI_TO_GLOBAL;
            t->u.g.module = r->copy_strings ? cki_arena_strdup(r->arena, v->u.g.module)
                                            : v->u.g.module;
            t->u.g.name = r->copy_strings ? cki_arena_strdup(r->arena, v->u.g.name)
                                          : v->u.g.name;
            if (!t->u.g.module || !t->u.g.name) return CK_ENOMEM;
        }
        break;
    case CKI_PV_PERSID: st = persid(r, v->n ? v->items[0] : NULL, v->off, depth, t); break;
    case CKI_PV_REDUCE:
    case CKI_PV_NEWOBJ:
        if (v->n < 2)
            return cki_fail(r->ctx, CK_EFORMAT, "%s: %s: call at byte %llu has no arguments",
                            r->file, r->where, (unsigned long long)v->off);
        st = call(r, t, v, v->items[0], v->items[1], v->off, depth);
        break;
    case CKI_PV_TREBUILD: st = rebuild_record(r, t, v, depth); break;
    }
    if (st) return st;
    *out = t;
    return CK_OK;
}

ck_status cki_trec_convert(cki_trec *r, const cki_pv *root, cki_tobj **out)
{
    return conv(r, root, 0, out);
}

const cki_tobj *cki_tobj_as_dict(const cki_tobj *t)
{
    if (!t) return NULL;
    if (t->kind == CKI_TO_DICT) return t;
    if (t->kind == CKI_TO_OBJECT && cki_tobj_dict(t) && cki_tobj_dict(t)->kind == CKI_TO_DICT) return cki_tobj_dict(t);
    return NULL;
}

cki_tobj *cki_tobj_get(const cki_tobj *dict, const char *key)
{
    const cki_tobj *d = cki_tobj_as_dict(dict);
    size_t kl = strlen(key);
    if (!d) return NULL;
    for (uint32_t i = d->n; i-- > 0;) {
        const cki_tobj *k = d->items[2 * i];
        if (k && k->kind == CKI_TO_STR && k->u.s.len == kl && !memcmp(k->u.s.p, key, kl))
            return d->items[2 * i + 1];
    }
    return NULL;
}

int cki_tobj_is_module(const cki_tobj *t)
{
    if (!t || t->kind != CKI_TO_OBJECT || !cki_tobj_state(t)) return 0;
    return cki_tobj_get(cki_tobj_state(t), "_parameters") && cki_tobj_get(cki_tobj_state(t), "_modules");
}
