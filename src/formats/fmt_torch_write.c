/*
 * fmt_torch_write.c -- writers for torch.save zip checkpoints: "pth" (a flat
 * state dict, .pth/.pt/.bin) and "ckpt" (a Lightning-style dict holding the
 * state dict, .ckpt). torch.load(path, weights_only=True) reads both.
 *
 * Archive (stored, 64-byte aligned; see zip_write.h), records in this order:
 *   <prefix>/data.pkl    protocol-2 pickle of the object below
 *   <prefix>/byteorder   "little"
 *   <prefix>/data/<key>  one per storage, keys "0", "1", ... in order of first
 *                        use, each holding the storage's bytes, little-endian
 *   <prefix>/version     "3\n"
 * <prefix> is the output file's name without its last extension, as
 * torch.save(obj, path) does ("model.pt" -> "model"); "archive" (what torch
 * writes for file objects, and Lightning therefore) for .ckpt output and for
 * a stem that is empty or not UTF-8.
 *
 * data.pkl replays what torch.save(state_dict) pickles, byte for byte for
 * the dtypes torch 1.13 has (memo numbering included):
 *   collections.OrderedDict() REDUCE'd, then per tensor, in the job's order,
 *   name -> torch._utils._rebuild_tensor_v2(
 *             persid ('storage', torch.<X>Storage, key, 'cpu', numel),
 *             offset, size, stride, False, collections.OrderedDict())
 *   with offset, numel and stride in elements. Dtypes torch keeps no typed
 *   storage class for (uint16/32/64, float8 variants) use what torch >= 2.3
 *   writes: _rebuild_tensor_v3(persid ('storage', torch.storage.UntypedStorage, key,
 *   'cpu', nbytes), offset, size, stride, False, OrderedDict(),
 *   torch.<dtype>); torch 1.13 cannot load those. 4- and 6-bit floats have no
 *   torch dtype this writer can name: refused, naming the tensor.
 * The "ckpt" object is a plain dict: epoch (int), global_step (int),
 * pytorch-lightning_version (str), state_dict (the OrderedDict above) and,
 * when other string metadata exists, metadata (dict str -> str). With prune:
 * only state_dict. No float is ever pickled (torch 1.13's weights_only
 * unpickler has no BINFLOAT): metadata values stay text.
 *
 * Shared storages: output tensors on one source storage (same cki_storage),
 * all of one dtype kept as is, without conj/neg flags, non-empty, whose views
 * together span no more bytes than their dense sizes add up to, are written
 * as one storage -- the span [lowest, highest element] emitted once through
 * a synthetic 1-D view -- and each gets its offset (rebased) and strides
 * into it, so torch sees them sharing. Everything else is written dense, one
 * storage per tensor (cki_emit_tensor gathers strided views, swaps and casts).
 */
#include <stdio.h>
#include <stdlib.h>

#include "../container/zip_write.h"
#include "../pickle/pickle_write.h"
#include "format.h"
#include "torch_full.h"

/* torch's name for each dtype: a typed storage class (v2) or a dtype (v3). */
static const struct {
    const char *cls;
    const char *v3;
} torch_types[CK_DT_COUNT] = {
    [CK_DT_BOOL] = {"BoolStorage", NULL},
    [CK_DT_U8] = {"ByteStorage", NULL},
    [CK_DT_I8] = {"CharStorage", NULL},
    [CK_DT_U16] = {NULL, "uint16"},
    [CK_DT_I16] = {"ShortStorage", NULL},
    [CK_DT_U32] = {NULL, "uint32"},
    [CK_DT_I32] = {"IntStorage", NULL},
    [CK_DT_U64] = {NULL, "uint64"},
    [CK_DT_I64] = {"LongStorage", NULL},
    [CK_DT_F16] = {"HalfStorage", NULL},
    [CK_DT_BF16] = {"BFloat16Storage", NULL},
    [CK_DT_F32] = {"FloatStorage", NULL},
    [CK_DT_F64] = {"DoubleStorage", NULL},
    [CK_DT_C64] = {"ComplexFloatStorage", NULL},
    [CK_DT_C128] = {"ComplexDoubleStorage", NULL},
    [CK_DT_F8_E4M3] = {NULL, "float8_e4m3fn"},
    [CK_DT_F8_E5M2] = {NULL, "float8_e5m2"},
    [CK_DT_F8_E4M3FNUZ] = {NULL, "float8_e4m3fnuz"},
    [CK_DT_F8_E5M2FNUZ] = {NULL, "float8_e5m2fnuz"},
    [CK_DT_F8_E8M0] = {NULL, "float8_e8m0fnu"},
};

#define DEFAULT_PL_VERSION "1.9.0"

typedef struct store {
    cki_out_tensor ot;  /* what is emitted: a job tensor, or the span below */
    cki_tensor span;    /* synthetic 1-D view over a shared storage */
    int64_t span_len;
    uint64_t numel;     /* in the persistent id: elements (v2) or bytes (v3) */
    uint64_t dense;     /* dense bytes of the tensors it serves (progress) */
    char key[24];
    cki_pkw_ref key_ref;
} store;

typedef struct item {
    size_t store;
    uint64_t offset; /* elements into the output storage */
    int shared;      /* keep the source's strides */
} item;

typedef struct writer {
    cki_write_job *job;
    ck_ctx *ctx;
    int ckpt;
    store *stores;
    size_t nstores;
    item *items;
    cki_pkw pk;
    cki_pkw_ref r_odict, r_v2, r_v3, r_storage, r_cpu, r_untyped;
    cki_pkw_ref r_cls[CK_DT_COUNT], r_dtype[CK_DT_COUNT];
} writer;

typedef struct cand {
    uintptr_t sg;
    size_t i;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->sg != y->sg) return x->sg < y->sg ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* Row-major strides as torch computes them (sizes 0 count as 1). Only an
 * empty tensor can overflow here (its other sizes are unchecked): its
 * strides address nothing, so they saturate. */
static void contiguous(const cki_tensor *t, int64_t *stride)
{
    uint64_t acc = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        stride[d] = (int64_t)acc;
        if (t->shape[d] > 1 && (cki_mul_u64(&acc, acc, (uint64_t)t->shape[d]) || acc > INT64_MAX))
            acc = INT64_MAX;
    }
}

/* Index one past the last storage element the view reaches (numel > 0). */
static uint64_t view_end(const cki_tensor *t)
{
    uint64_t last = t->offset;
    if (!t->stride) return t->offset + t->numel;
    for (int d = 0; d < t->ndim; d++) last += (uint64_t)(t->shape[d] - 1) * (uint64_t)t->stride[d];
    return last + 1;
}

static ck_status check_tensors(writer *w)
{
    const cki_write_job *job = w->job;
    for (size_t i = 0; i < job->count; i++) {
        const cki_out_tensor *ot = &job->tensors[i];
        ck_dtype dt = ot->dtype;
        size_t nl = strlen(ot->name);
        if (dt < 0 || dt >= CK_DT_COUNT || (!torch_types[dt].cls && !torch_types[dt].v3))
            return cki_fail(w->ctx, CK_EUNSUPPORTED,
                            "%s: tensor '%s': dtype %s has no torch equivalent this writer can "
                            "name (torch has no 4- or 6-bit float storage); cast it or leave it "
                            "out",
                            job->path, ot->name, ck_dtype_name(dt));
        if (!cki_utf8_valid((const uint8_t *)ot->name, nl))
            return cki_fail(w->ctx, CK_EUNSUPPORTED,
                            "%s: tensor name '%s' is not valid utf-8 (pickle strings must be)",
                            job->path, ot->name);
    }
    return CK_OK;
}

/* May this output tensor be written as a view into a shared storage? */
static int shareable(const cki_out_tensor *ot)
{
    const cki_tensor *t = ot->src;
    if (ot->dtype != t->dtype || t->flags || !t->storage || t->numel == 0) return 0;
    if (!cki_dtype_size(t->dtype)) return 0;
    for (int d = 0; t->stride && d < t->ndim; d++)
        if (t->stride[d] < 0) return 0;
    return 1;
}

/* Finds the shared groups: runs of candidates (sorted by storage) of two or
 * more tensors that pass the rules above. Fills GROUPS[0..*NGROUPS) with the
 * span each group writes, GROUP_OF[i] with tensor i's group + 1 (0: none)
 * and the items' offsets into their span. */
static void find_groups(writer *w, const cand *c, size_t ncand, store *groups, size_t *ngroups,
                        size_t *group_of)
{
    const cki_write_job *job = w->job;
    size_t ng = 0;
    for (size_t a = 0, b; a < ncand; a = b) {
        const cki_out_tensor *first = &job->tensors[c[a].i];
        const cki_tensor *t0 = first->src;
        uint64_t lo = UINT64_MAX, hi = 0, sum = 0, span;
        int same_dtype = 1;
        store *g;
        for (b = a; b < ncand && c[b].sg == c[a].sg; b++) {
            const cki_tensor *t = job->tensors[c[b].i].src;
            uint64_t e = view_end(t);
            if (t->dtype != t0->dtype) same_dtype = 0;
            if (t->offset < lo) lo = t->offset;
            if (e > hi) hi = e;
            if (cki_add_u64(&sum, sum, t->nbytes)) sum = UINT64_MAX;
        }
        if (b - a < 2 || !same_dtype) continue;
        if (cki_mul_u64(&span, hi - lo, cki_dtype_size(t0->dtype)) || span > sum) continue;
        g = &groups[ng];
        g->span.name = t0->name;
        g->span.dtype = t0->dtype;
        g->span.ndim = 1;
        g->span.offset = lo;
        g->span.numel = hi - lo;
        g->span.nbytes = span;
        g->span.storage = t0->storage;
        g->span_len = (int64_t)(hi - lo);
        g->ot.name = first->name;
        g->ot.dtype = t0->dtype;
        g->ot.nbytes = span;
        g->dense = sum;
        for (size_t k = a; k < b; k++) {
            group_of[c[k].i] = ng + 1;
            w->items[c[k].i].offset = job->tensors[c[k].i].src->offset - lo;
            w->items[c[k].i].shared = 1;
        }
        ng++;
    }
    *ngroups = ng;
}

/* Decides the storages: shared groups, then one per remaining tensor,
 * numbered in the order the pickle first mentions them (the job's order). */
static ck_status plan_storages(writer *w)
{
    cki_write_job *job = w->job;
    size_t n = job->count, slots = n ? n : 1, ncand = 0, ngroups = 0;
    size_t *group_of = cki_calloc(w->ctx, slots, sizeof *group_of);
    size_t *placed = cki_calloc(w->ctx, slots, sizeof *placed); /* per group: store + 1 */
    store *groups = cki_calloc(w->ctx, slots, sizeof *groups);
    cand *c = cki_calloc(w->ctx, slots, sizeof *c);
    ck_status st = CK_OK;

    w->stores = cki_calloc(w->ctx, slots, sizeof *w->stores);
    w->items = cki_calloc(w->ctx, slots, sizeof *w->items);
    if (!group_of || !placed || !groups || !c || !w->stores || !w->items) {
        st = CK_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (!shareable(&job->tensors[i])) continue;
        c[ncand].sg = (uintptr_t)job->tensors[i].src->storage;
        c[ncand].i = i;
        ncand++;
    }
    qsort(c, ncand, sizeof *c, cand_cmp);
    find_groups(w, c, ncand, groups, &ngroups, group_of);

    for (size_t i = 0; i < n; i++) {
        size_t g = group_of[i];
        store *x = &w->stores[w->nstores];
        if (g && placed[g - 1]) { /* a later member of a group already placed */
            w->items[i].store = placed[g - 1] - 1;
            continue;
        }
        if (g) {
            *x = groups[g - 1];
            x->span.shape = &x->span_len; /* point into our own copy */
            x->ot.src = &x->span;
            placed[g - 1] = w->nstores + 1;
        } else {
            x->ot = job->tensors[i];
            x->dense = x->ot.nbytes;
        }
        x->numel = torch_types[x->ot.dtype].cls ? x->ot.nbytes / cki_dtype_size(x->ot.dtype)
                                                : x->ot.nbytes;
        snprintf(x->key, sizeof x->key, "%zu", w->nstores);
        w->items[i].store = w->nstores++;
    }
out:
    cki_free(w->ctx, group_of);
    cki_free(w->ctx, placed);
    cki_free(w->ctx, groups);
    cki_free(w->ctx, c);
    return st;
}

static void pickle_shape(cki_pkw *pk, int ndim, const int64_t *v)
{
    cki_pkw_tuple_begin(pk, (size_t)ndim);
    for (int d = 0; d < ndim; d++) cki_pkw_int(pk, v[d]);
    cki_pkw_tuple_end(pk, (size_t)ndim);
}

static void pickle_tensor(writer *w, size_t i)
{
    const cki_out_tensor *ot = &w->job->tensors[i];
    const cki_tensor *t = ot->src;
    const item *it = &w->items[i];
    store *s = &w->stores[it->store];
    cki_pkw *pk = &w->pk;
    int v3 = torch_types[ot->dtype].cls == NULL;
    int64_t stride[CKI_MAX_DIMS];

    if (it->shared && t->stride)
        memcpy(stride, t->stride, sizeof(int64_t) * (size_t)t->ndim);
    else
        contiguous(t, stride);

    cki_pkw_global_ref(pk, "torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2",
                       v3 ? &w->r_v3 : &w->r_v2);
    cki_pkw_tuple_begin(pk, v3 ? 7 : 6);
    {
        cki_pkw_tuple_begin(pk, 5);
        cki_pkw_str_ref(pk, "storage", 7, &w->r_storage);
        if (v3)
            cki_pkw_global_ref(pk, "torch.storage", "UntypedStorage", &w->r_untyped);
        else
            cki_pkw_global_ref(pk, "torch", torch_types[ot->dtype].cls, &w->r_cls[ot->dtype]);
        cki_pkw_str_ref(pk, s->key, strlen(s->key), &s->key_ref);
        cki_pkw_str_ref(pk, "cpu", 3, &w->r_cpu);
        cki_pkw_int(pk, (int64_t)s->numel);
        cki_pkw_tuple_end(pk, 5);
        cki_pkw_persid(pk);
    }
    cki_pkw_int(pk, (int64_t)it->offset);
    pickle_shape(pk, t->ndim, t->shape);
    pickle_shape(pk, t->ndim, stride);
    cki_pkw_bool(pk, 0);
    cki_pkw_global_ref(pk, "collections", "OrderedDict", &w->r_odict);
    cki_pkw_tuple_end(pk, 0);
    cki_pkw_reduce(pk);
    if (v3) cki_pkw_global_ref(pk, "torch", torch_types[ot->dtype].v3, &w->r_dtype[ot->dtype]);
    cki_pkw_tuple_end(pk, v3 ? 7 : 6);
    cki_pkw_reduce(pk);
}

static void pickle_state_dict(writer *w)
{
    cki_pkw *pk = &w->pk;
    cki_pkw_items it;
    cki_pkw_global_ref(pk, "collections", "OrderedDict", &w->r_odict);
    cki_pkw_tuple_end(pk, 0);
    cki_pkw_reduce(pk);
    cki_pkw_items_init(&it, w->job->count);
    for (size_t i = 0; i < w->job->count; i++) {
        const char *name = w->job->tensors[i].name;
        cki_pkw_item_start(pk, &it);
        cki_pkw_str(pk, name, strlen(name));
        pickle_tensor(w, i);
        cki_pkw_item_end(pk, &it);
    }
}

static const char *meta_get(const cki_write_job *job, const char *key)
{
    for (size_t i = 0; i < job->meta_count; i++)
        if (strcmp(job->meta_keys[i], key) == 0) return job->meta_vals[i];
    return NULL;
}

static int special_key(const char *k)
{
    return strcmp(k, "epoch") == 0 || strcmp(k, "global_step") == 0 ||
           strcmp(k, "pytorch-lightning_version") == 0;
}

/* A decimal integer with optional '-', fitting int64, nothing else. */
static ck_status meta_int(writer *w, const char *key, int64_t *out)
{
    const char *v = meta_get(w->job, key);
    const char *p = v;
    uint64_t acc = 0, lim;
    int neg = 0;
    *out = 0;
    if (!v) return CK_OK;
    if (*p == '-') {
        neg = 1;
        p++;
    }
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (!*p) goto bad;
    for (; *p; p++) {
        if (*p < '0' || *p > '9') goto bad;
        if (acc > (lim - (uint64_t)(*p - '0')) / 10) goto bad;
        acc = acc * 10 + (uint64_t)(*p - '0');
    }
    *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
    return CK_OK;
bad:
    return cki_fail(w->ctx, CK_EARG,
                    "%s: metadata '%s' is '%s', not an integer (a .ckpt stores it as an int)",
                    w->job->path, key, v);
}

static ck_status pickle_ckpt(writer *w)
{
    const cki_write_job *job = w->job;
    cki_pkw *pk = &w->pk;
    cki_pkw_items top, meta;
    int64_t epoch, step;
    const char *ver = meta_get(job, "pytorch-lightning_version");
    size_t extra = 0;
    ck_status st;

    if ((st = meta_int(w, "epoch", &epoch))) return st;
    if ((st = meta_int(w, "global_step", &step))) return st;
    if (!ver) ver = DEFAULT_PL_VERSION;
    if (!cki_utf8_valid((const uint8_t *)ver, strlen(ver)))
        return cki_fail(w->ctx, CK_EARG, "%s: metadata 'pytorch-lightning_version' is not utf-8",
                        job->path);
    for (size_t i = 0; !job->prune && i < job->meta_count; i++) {
        const char *k = job->meta_keys[i], *v = job->meta_vals[i];
        if (special_key(k)) continue;
        if (!cki_utf8_valid((const uint8_t *)k, strlen(k)) ||
            !cki_utf8_valid((const uint8_t *)v, strlen(v)))
            return cki_fail(w->ctx, CK_EARG, "%s: metadata '%s' is not valid utf-8", job->path,
                            k);
        extra++;
    }

    cki_pkw_empty_dict(pk);
    cki_pkw_items_init(&top, job->prune ? 1 : 4 + (extra > 0));
    if (!job->prune) {
        cki_pkw_item_start(pk, &top);
        cki_pkw_str(pk, "epoch", 5);
        cki_pkw_int(pk, epoch);
        cki_pkw_item_end(pk, &top);
        cki_pkw_item_start(pk, &top);
        cki_pkw_str(pk, "global_step", 11);
        cki_pkw_int(pk, step);
        cki_pkw_item_end(pk, &top);
        cki_pkw_item_start(pk, &top);
        cki_pkw_str(pk, "pytorch-lightning_version", 25);
        cki_pkw_str(pk, ver, strlen(ver));
        cki_pkw_item_end(pk, &top);
    }
    cki_pkw_item_start(pk, &top);
    cki_pkw_str(pk, "state_dict", 10);
    pickle_state_dict(w);
    cki_pkw_item_end(pk, &top);
    if (extra) {
        cki_pkw_item_start(pk, &top);
        cki_pkw_str(pk, "metadata", 8);
        cki_pkw_empty_dict(pk);
        cki_pkw_items_init(&meta, extra);
        for (size_t i = 0; i < job->meta_count; i++) {
            const char *k = job->meta_keys[i], *v = job->meta_vals[i];
            if (special_key(k)) continue;
            cki_pkw_item_start(pk, &meta);
            cki_pkw_str(pk, k, strlen(k));
            cki_pkw_str(pk, v, strlen(v));
            cki_pkw_item_end(pk, &meta);
        }
        cki_pkw_item_end(pk, &top);
    }
    return CK_OK;
}

/* "<prefix>/" for the archive: the output's stem, or "archive". */
static char *archive_prefix(writer *w)
{
    const char *base = cki_basename(w->job->path);
    const char *dot = strrchr(base, '.');
    size_t n = dot ? (size_t)(dot - base) : strlen(base);
    if (w->ckpt || n == 0 || !cki_utf8_valid((const uint8_t *)base, n)) {
        base = "archive";
        n = 7;
    }
    return cki_strndup(w->ctx, base, n);
}

static ck_status write_archive(writer *w, const char *prefix)
{
    cki_write_job *job = w->job;
    cki_zipw z;
    char *name;
    size_t cap = strlen(prefix) + 32;
    ck_status st;

    name = cki_malloc(w->ctx, cap);
    if (!name) return CK_ENOMEM;
    cki_zipw_init(&z, w->ctx, job->sink);
    snprintf(name, cap, "%s/data.pkl", prefix);
    if ((st = cki_zipw_add(&z, name, w->pk.out.p, w->pk.out.len))) goto out;
    snprintf(name, cap, "%s/byteorder", prefix);
    if ((st = cki_zipw_add(&z, name, "little", 6))) goto out;
    for (size_t s = 0; s < w->nstores; s++) {
        store *x = &w->stores[s];
        uint32_t crc = 0;
        uint64_t before = job->done_bytes;
        snprintf(name, cap, "%s/data/%s", prefix, x->key);
        if ((st = cki_zipw_begin(&z, name, x->ot.nbytes))) goto out;
        if ((st = cki_emit_tensor(job, &x->ot, &crc))) goto out;
        if ((st = cki_zipw_end(&z, crc))) goto out;
        job->done_bytes = before + x->dense; /* shared bytes count once per tensor */
    }
    snprintf(name, cap, "%s/version", prefix);
    if ((st = cki_zipw_add(&z, name, "3\n", 2))) goto out;
    st = cki_zipw_finish(&z);
out:
    cki_zipw_free(&z);
    cki_free(w->ctx, name);
    return st;
}

static ck_status write_torch(cki_write_job *job, int ckpt)
{
    writer w;
    char *prefix = NULL;
    ck_status st;

    if (cki_torch_full_applies(job)) return cki_torch_full_write(job, ckpt);
    memset(&w, 0, sizeof w);
    w.job = job;
    w.ctx = job->ctx;
    w.ckpt = ckpt;
    cki_pkw_init(&w.pk, w.ctx);
    if ((st = check_tensors(&w))) goto out;
    if ((st = plan_storages(&w))) goto out;
    cki_pkw_proto(&w.pk);
    if (ckpt) {
        if ((st = pickle_ckpt(&w))) goto out;
    } else {
        pickle_state_dict(&w);
    }
    cki_pkw_stop(&w.pk);
    if ((st = cki_pkw_status(&w.pk))) goto out;
    prefix = archive_prefix(&w);
    if (!prefix) {
        st = CK_ENOMEM;
        goto out;
    }
    st = write_archive(&w, prefix);
out:
    cki_free(w.ctx, prefix);
    cki_pkw_free(&w.pk);
    cki_free(w.ctx, w.stores);
    cki_free(w.ctx, w.items);
    return st;
}

int cki_torch_type_names(ck_dtype dt, const char **cls, const char **v3)
{
    if (dt < 0 || dt >= CK_DT_COUNT || (!torch_types[dt].cls && !torch_types[dt].v3)) return 1;
    *cls = torch_types[dt].cls;
    *v3 = torch_types[dt].v3;
    return 0;
}

char *cki_torch_archive_prefix(ck_ctx *ctx, const char *path, int ckpt)
{
    writer w;
    cki_write_job job;
    memset(&w, 0, sizeof w);
    memset(&job, 0, sizeof job);
    job.path = path;
    w.job = &job;
    w.ctx = ctx;
    w.ckpt = ckpt;
    return archive_prefix(&w);
}

static ck_status write_pth(cki_write_job *job)
{
    return write_torch(job, 0);
}

static ck_status write_ckpt(cki_write_job *job)
{
    return write_torch(job, 1);
}

static const char *const pth_exts[] = {".pth", ".pt", ".bin", NULL};
static const char *const ckpt_exts[] = {".ckpt", NULL};

const cki_format cki_fmt_pth = {
    .name = "pth",
    .exts = pth_exts,
    .caps = CKI_CAP_WRITE | CKI_CAP_SHARED,
    .probe = NULL,
    .read = NULL,
    .write = write_pth,
};

const cki_format cki_fmt_ckpt = {
    .name = "ckpt",
    .exts = ckpt_exts,
    .caps = CKI_CAP_WRITE | CKI_CAP_METADATA | CKI_CAP_SHARED,
    .probe = NULL,
    .read = NULL,
    .write = write_ckpt,
};
