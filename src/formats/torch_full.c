/*
 * torch_full.c -- the whole-checkpoint rewrite of a PyTorch file
 * (torch_full.h): its entire object tree, written by tree_write.c, with
 * tensors and storages written here.
 *
 * Archive: the same records as fmt_torch_write.c (data.pkl, byteorder
 * "little", data/<key> per storage in order of first use, version "3\n").
 *
 * Tensors. The input is parsed again (the reader keeps no value graph) and
 * its state dict selected by the default rule; the job's tensors (after
 * --include/--exclude, renames, EMA, --dtype) are matched to it through their
 * input index, which must give the same names (an input opened with --key
 * or --all does not: refused, --prune writes the minimal form). Then each
 * tensor of the tree is written as
 *   torch._utils._rebuild_tensor_v2(persid('storage', torch.<X>Storage, key,
 *       location, numel), offset, size, stride, requires_grad, hooks[, meta])
 * or _rebuild_tensor_v3(persid('storage', torch.storage.UntypedStorage, key,
 * location, nbytes), ..., hooks, torch.<dtype>[, meta]) for storages torch
 * keeps untyped, where
 *   - a state-dict tensor that is cast or takes another tensor's values
 *     (EMA) gets a dense storage of its own (offset 0, row-major strides);
 *   - every other tensor (state dict as is, optimizer state, buffers
 *     anywhere) keeps its offset, size and stride into a copy of its source
 *     storage, written once however many tensors use it -- so storages shared
 *     in the input are shared in the output;
 *   - requires_grad, backward hooks and metadata are the input's own values;
 *     a Parameter wrapper around the call is written as read.
 * Excluded state-dict tensors disappear from their containers; renamed ones
 * take their new key in the state dict (a rename of a tensor that is not a
 * key of the state dict itself is refused).
 * Checks: each storage is bound like the reader binds it (size from numel,
 * CRC from the zip record, checked while copying); a big-endian input's
 * untyped storages are refused (their element width is unknown).
 */
#include <stdio.h>

#include "../container/zip_write.h"
#include "../pickle/tree_write.h"
#include "torch_full.h"
#include "torch_read.h"

typedef struct ostore {
    cki_out_tensor ot;
    cki_tensor span;  /* raw copy of a source storage */
    int64_t span_len;
    uint64_t numel;   /* as the persistent id says */
    char key[24];
} ostore;

typedef struct full {
    cki_write_job *job; /* NULL: report only */
    ck_ctx *ctx;
    ck_model *m;
    const cki_source *src;
    cki_torch_file tf;
    int tf_open;
    cki_tselect sel;
    cki_pkw pk;
    cki_tw tw;
    cki_map by_tensor; /* cki_ttensor pointer -> selection index */
    cki_map by_name;   /* selection name -> selection index */
    long *plan_of;     /* selection index -> job tensor, -1: left out */
    ostore *stores;
    size_t nstores, cap;
    cki_map store_of;  /* cki_tstorage pointer -> store */
    cki_arena keys;    /* the pointers store_of's keys point at */
    size_t renames_needed, renames_done;
    cki_pkw_ref r_odict;
    ck_rewrite_fn fn; /* the caller's report, may be NULL */
    void *fn_user;
} full;

int cki_torch_full_applies(const cki_write_job *job)
{
    const ck_model *m = job->src_model;
    return job->full && m && m->source_count == 1 && m->format_name &&
           !strncmp(m->format_name, "torch-", 6);
}

/* ---- selection <-> job --------------------------------------------------- */

static long sel_index(const full *f, const cki_tobj *t)
{
    const cki_ttensor *tt = t->u.t;
    size_t v;
    if (cki_map_get(&f->by_tensor, (const char *)&tt, sizeof tt, &v)) return -1;
    return (long)v;
}

static int omit(void *user, const cki_tobj *t)
{
    full *f = user;
    long i = sel_index(f, t);
    if (!f->job || i < 0 || t->u.t->unsupported) return 0;
    return f->plan_of[i] < 0;
}

static const char *rekey(void *user, const cki_tobj *t, const char *key)
{
    full *f = user;
    size_t i;
    long j;
    (void)t;
    if (!f->job || cki_map_get(&f->by_name, key, strlen(key), &i)) return NULL;
    j = f->plan_of[i];
    if (j < 0 || !strcmp(f->job->tensors[j].name, key)) return NULL;
    f->renames_done++;
    return f->job->tensors[j].name;
}

static ck_status match_job(full *f)
{
    cki_write_job *job = f->job;
    const ck_model *m = f->m;
    size_t k = 0;
    long *plan_of_model;
    ck_status st = CK_OK;

    f->plan_of = cki_calloc(f->ctx, f->sel.count ? f->sel.count : 1, sizeof *f->plan_of);
    plan_of_model = cki_calloc(f->ctx, m->count ? m->count : 1, sizeof *plan_of_model);
    if (!f->plan_of || !plan_of_model) {
        cki_free(f->ctx, plan_of_model);
        return CK_ENOMEM;
    }
    for (size_t i = 0; i < m->count; i++) plan_of_model[i] = -1;
    for (size_t j = 0; j < job->count; j++) {
        if (job->tensors[j].in_index < m->count) plan_of_model[job->tensors[j].in_index] = (long)j;
        if (job->tensors[j].in_index < m->count &&
            strcmp(job->tensors[j].name, m->tensors[job->tensors[j].in_index].name))
            f->renames_needed++;
    }
    for (size_t i = 0; i < f->sel.count; i++) {
        const cki_tnamed *nt = &f->sel.v[i];
        const cki_ttensor *tt = nt->tensor->u.t;
        size_t prev;
        f->plan_of[i] = -1;
        /* the key bytes are the pointer value, kept where the map can keep pointing */
        if (cki_map_put(&f->by_tensor, (const char *)&nt->tensor->u.t, sizeof tt, i, &prev) < 0 ||
            cki_map_put(&f->by_name, nt->name, nt->name_len, i, &prev) < 0) {
            st = CK_ENOMEM;
            goto out;
        }
        if (tt->unsupported) continue;
        if (k >= m->count || strcmp(m->tensors[k].name, nt->name)) break;
        f->plan_of[i] = plan_of_model[k++];
    }
    if (k != m->count)
        st = cki_fail(f->ctx, CK_EUNSUPPORTED,
                      "%s: the whole-checkpoint rewrite keeps the object tree around the "
                      "default state dict, but the tensors were chosen with --key or --all; "
                      "add --prune to write the chosen tensors alone",
                      job->path);
out:
    cki_free(f->ctx, plan_of_model);
    return st;
}

/* ---- storages -------------------------------------------------------------- */

static ck_status bind(full *f, cki_tstorage *s, ck_dtype dt, uint64_t need, cki_storage **out)
{
    cki_torch_file *tf = &f->tf;
    cki_storage *cs;
    ck_status st;
    if (tf->kind == CKI_TORCH_ZIP) {
        const cki_zip_entry *e;
        const uint8_t *data;
        uint64_t len;
        uint8_t *owned = NULL;
        char what[300];
        if ((st = cki_torch_zip_record(tf, s, s->key, &e))) return st;
        if (e->usize < need)
            return cki_fail(f->ctx, CK_EFORMAT,
                            "%s: storage '%s' needs %llu bytes but record '%s' holds %llu",
                            f->src->path, s->key, (unsigned long long)need, e->name,
                            (unsigned long long)e->usize);
        if ((st = cki_zip_read(&tf->zip, e, 0, &data, &len, &owned))) return st;
        if (owned) {
            if ((st = cki_model_storage_owned(f->m, owned, len, dt, &cs))) return st;
            cs->len = need;
            cs->crc_checked = 1;
        } else {
            snprintf(what, sizeof what, "zip record '%.200s'", e->name);
            if ((st = cki_model_storage(f->m, f->src, e->data_off, need, dt, what, &cs)))
                return st;
            if (need == e->usize && e->crc != 0) {
                cs->crc_known = 1;
                cs->crc = e->crc;
            }
        }
        cs->big_endian = tf->big_endian && ck_dtype_bits(dt) > 8;
    } else {
        char what[300];
        if (!s->located || s->where->data_len < need)
            return cki_fail(f->ctx, CK_EFORMAT, "%s: storage '%s' has no data", f->src->path,
                            s->key);
        snprintf(what, sizeof what, "storage '%.200s'", s->key);
        if ((st = cki_model_storage(f->m, f->src, s->where->data_off, need, dt, what, &cs)))
            return st;
    }
    *out = cs;
    return CK_OK;
}

static ostore *new_store(full *f)
{
    ostore *x;
    if (f->nstores == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        ostore *ns = cki_realloc(f->ctx, f->stores, cap * sizeof *ns);
        if (!ns) return NULL;
        f->stores = ns;
        f->cap = cap;
    }
    x = &f->stores[f->nstores];
    memset(x, 0, sizeof *x);
    snprintf(x->key, sizeof x->key, "%zu", f->nstores);
    f->nstores++;
    return x;
}

/* The output storage copying source storage S (created on first use). */
static ck_status store_for(full *f, cki_tstorage *s, size_t *out)
{
    size_t idx, prev;
    ck_dtype dt = s->untyped || s->dtype == CK_DT_COUNT ? CK_DT_U8 : s->dtype;
    uint64_t need, n;
    cki_storage *cs;
    ostore *x;
    cki_tstorage **key;
    ck_status st;
    if (!cki_map_get(&f->store_of, (const char *)&s, sizeof s, &idx)) {
        *out = idx;
        return CK_OK;
    }
    if (cki_mul_u64(&need, s->numel, cki_tstorage_esize(s)))
        return cki_fail(f->ctx, CK_EFORMAT, "%s: storage '%s' of %llu elements overflows",
                        f->src->path, s->key, (unsigned long long)s->numel);
    if (dt == CK_DT_U8 && f->tf.big_endian && cki_tstorage_esize(s) > 1)
        return cki_fail(f->ctx, CK_EUNSUPPORTED,
                        "%s: storage '%s' is untyped in a big-endian file: its elements "
                        "cannot be swapped to little-endian",
                        f->src->path, s->key);
    if (f->tf.big_endian && s->untyped)
        return cki_fail(f->ctx, CK_EUNSUPPORTED,
                        "%s: storage '%s' is untyped in a big-endian file: its elements "
                        "cannot be swapped to little-endian",
                        f->src->path, s->key);
    if (f->job) {
        if ((st = bind(f, s, dt, need, &cs))) return st;
    } else {
        cs = NULL;
    }
    n = dt == CK_DT_U8 ? need : s->numel;
    if (!(x = new_store(f))) return CK_ENOMEM;
    x->span_len = (int64_t)n;
    x->span.name = s->key;
    x->span.dtype = dt;
    x->span.ndim = 1;
    x->span.offset = 0;
    x->span.numel = n;
    x->span.nbytes = need;
    x->span.storage = cs;
    x->ot.name = s->key;
    x->ot.dtype = dt;
    x->ot.nbytes = need;
    x->numel = s->numel;
    idx = f->nstores - 1;
    if (!(key = cki_arena_alloc(&f->keys, sizeof *key))) return CK_ENOMEM;
    *key = s;
    if (cki_map_put(&f->store_of, (const char *)key, sizeof *key, idx, &prev) < 0) return CK_ENOMEM;
    *out = idx;
    return CK_OK;
}

/* persid(('storage', CLASS, key, location, numel)) */
static void put_persid(full *f, const char *mod, const char *cls, const ostore *x,
                       const char *location, uint64_t numel)
{
    cki_pkw *pk = &f->pk;
    cki_pkw_tuple_begin(pk, 5);
    cki_pkw_str(pk, "storage", 7);
    cki_pkw_global(pk, mod, cls);
    cki_pkw_str(pk, x->key, strlen(x->key));
    cki_pkw_str(pk, location, strlen(location));
    cki_pkw_int(pk, (int64_t)numel);
    cki_pkw_tuple_end(pk, 5);
    cki_pkw_persid(pk);
}

static void put_ints(cki_pkw *pk, int n, const int64_t *v)
{
    cki_pkw_tuple_begin(pk, (size_t)n);
    for (int d = 0; d < n; d++) cki_pkw_int(pk, v[d]);
    cki_pkw_tuple_end(pk, (size_t)n);
}

static void contiguous(int n, const int64_t *shape, int64_t *stride)
{
    uint64_t acc = 1;
    for (int d = n - 1; d >= 0; d--) {
        stride[d] = (int64_t)acc;
        if (shape[d] > 1 && (cki_mul_u64(&acc, acc, (uint64_t)shape[d]) || acc > INT64_MAX))
            acc = INT64_MAX;
    }
}

static const cki_pv *arg_of(const cki_pv *call, uint32_t i)
{
    const cki_pv *a = call->kind == CKI_PV_PERSID || call->n < 2 ? NULL : call->items[1];
    return a && a->kind == CKI_PV_TUPLE && i < a->n ? a->items[i] : NULL;
}

/* --cast-all: a floating tensor outside the state dict, of at least one
 * dimension, cast like the state dict; *OT stays NULL otherwise. */
static ck_status cast_other(full *f, cki_tw *tw, const cki_ttensor *tt, const cki_out_tensor **ot)
{
    ck_dtype to = f->job->cast_all;
    cki_tensor *t;
    cki_out_tensor *o;
    cki_storage *cs;
    uint64_t need;
    ck_status st;
    if (to == CK_DT_KEEP || !tt->storage || tt->ndim < 1 || tt->dtype == to ||
        tt->dtype >= CK_DT_COUNT || !ck_dtype_is_float(tt->dtype) || !ck_dtype_can_cast(tt->dtype) ||
        tt->storage->untyped)
        return CK_OK;
    if (cki_mul_u64(&need, tt->storage->numel, cki_tstorage_esize(tt->storage)))
        return cki_fail(f->ctx, CK_EFORMAT, "%s: storage '%s' overflows", f->src->path,
                        tt->storage->key);
    if ((st = bind(f, tt->storage, tt->storage->dtype, need, &cs))) return st;
    t = cki_arena_alloc(&f->keys, sizeof *t);
    o = cki_arena_alloc(&f->keys, sizeof *o);
    if (!t || !o) return CK_ENOMEM;
    memset(t, 0, sizeof *t);
    memset(o, 0, sizeof *o);
    t->name = cki_arena_strdup(&f->keys, tw->path_len ? tw->path : "(root)");
    if (!t->name) return CK_ENOMEM;
    t->dtype = tt->dtype;
    t->ndim = tt->ndim;
    t->shape = tt->shape;
    t->stride = tt->stride;
    t->offset = tt->offset;
    t->storage = cs;
    t->flags = tt->flags;
    if ((st = cki_tensor_validate(f->ctx, f->src->path, t))) return st;
    o->name = t->name;
    o->src = t;
    o->dtype = to;
    if (cki_dtype_nbytes(to, t->numel, &o->nbytes))
        return cki_fail(f->ctx, CK_EFORMAT, "%s: tensor '%s': size overflows", f->src->path,
                        t->name);
    *ot = o;
    return CK_OK;
}

static ck_status tensor_hook(void *user, cki_tw *tw, const cki_pv *node, const cki_tobj *t)
{
    full *f = user;
    cki_pkw *pk = &f->pk;
    const cki_ttensor *tt = t->u.t;
    const cki_out_tensor *ot = NULL;
    long i = sel_index(f, t);
    int v3, old = node->kind == CKI_PV_PERSID || (node->items[0]->kind == CKI_PV_GLOBAL &&
                                                   !strcmp(node->items[0]->u.g.name,
                                                           "_rebuild_tensor"));
    const cki_pv *rg = old ? NULL : arg_of(node, 4), *hooks = old ? NULL : arg_of(node, 5);
    const cki_pv *meta = old ? NULL : arg_of(node, node->items[0]->u.g.name[17] == '3' ? 7 : 6);
    const char *cls, *v3name, *loc;
    int64_t stride[CKI_MAX_DIMS];
    ostore *x;
    uint64_t offset;
    ck_status st;

    if (!f->job) { /* report only */
        cki_pkw_none(pk);
        return CK_OK;
    }
    if (i >= 0 && f->plan_of[i] >= 0) ot = &f->job->tensors[f->plan_of[i]];
    if (!ot && i < 0 && (st = cast_other(f, tw, tt, &ot))) return st;
    if (ot && (ot->dtype != tt->dtype || i < 0 || ot->src != &f->m->tensors[ot->in_index])) {
        /* cast or EMA: a dense storage of its own */
        if (cki_torch_type_names(ot->dtype, &cls, &v3name))
            return cki_fail(f->ctx, CK_EUNSUPPORTED, "%s: tensor '%s': dtype %s has no torch name",
                            f->job->path, ot->name, ck_dtype_name(ot->dtype));
        if (!(x = new_store(f))) return CK_ENOMEM;
        x->ot = *ot;
        v3 = cls == NULL;
        x->numel = v3 ? ot->nbytes : ot->src->numel;
        contiguous(tt->ndim, tt->shape, stride);
        offset = 0;
        loc = "cpu";
        if (tt->flags) meta = NULL; /* the values are written resolved */
        cki_pkw_global(pk, "torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2");
        cki_pkw_tuple_begin(pk, (size_t)(v3 ? 7 : 6) + (meta != NULL));
        if (v3) put_persid(f, "torch.storage", "UntypedStorage", x, loc, x->numel);
        else put_persid(f, "torch", cls, x, loc, x->numel);
    } else {
        size_t s;
        const cki_tstorage *ts = tt->storage;
        if (!ts)
            return cki_fail(f->ctx, CK_EFORMAT, "tensor at pickle byte %llu has no storage",
                            (unsigned long long)tt->off);
        if ((st = store_for(f, tt->storage, &s))) return st;
        x = &f->stores[s];
        v3 = ts->untyped || ts->dtype != tt->dtype;
        if (v3 && !tt->torch_dtype)
            return cki_fail(f->ctx, CK_EUNSUPPORTED,
                            "tensor at pickle byte %llu: its dtype has no torch name",
                            (unsigned long long)tt->off);
        if (tt->stride) memcpy(stride, tt->stride, sizeof(int64_t) * (size_t)tt->ndim);
        else contiguous(tt->ndim, tt->shape, stride);
        offset = tt->offset;
        loc = ts->location ? ts->location : "cpu";
        cki_pkw_global(pk, "torch._utils", v3 ? "_rebuild_tensor_v3" : "_rebuild_tensor_v2");
        cki_pkw_tuple_begin(pk, (size_t)(v3 ? 7 : 6) + (meta != NULL));
        if (v3)
            put_persid(f, "torch.storage", "UntypedStorage", x, loc, f->stores[s].span.nbytes);
        else
            put_persid(f, "torch", ts->type_name, x, loc, ts->numel);
        v3name = tt->torch_dtype;
    }
    cki_pkw_int(pk, (int64_t)offset);
    put_ints(pk, tt->ndim, tt->shape);
    put_ints(pk, tt->ndim, stride);
    if (rg) {
        if ((st = cki_tw_value(tw, rg))) return st;
    } else {
        cki_pkw_bool(pk, 0);
    }
    if (hooks) {
        if ((st = cki_tw_value(tw, hooks))) return st;
    } else {
        cki_pkw_global_ref(pk, "collections", "OrderedDict", &f->r_odict);
        cki_pkw_tuple_end(pk, 0);
        cki_pkw_reduce(pk);
    }
    if (v3) cki_pkw_global(pk, "torch", v3name);
    if (meta && (st = cki_tw_value(tw, meta))) return st;
    cki_pkw_tuple_end(pk, (size_t)(v3 ? 7 : 6) + (meta != NULL));
    cki_pkw_reduce(pk);
    return CK_OK;
}

static ck_status storage_hook(void *user, cki_tw *tw, const cki_pv *node, const cki_tobj *s)
{
    full *f = user;
    size_t idx;
    cki_tstorage *ts = s->u.st;
    ck_status st;
    (void)tw;
    (void)node;
    if (!f->job) {
        cki_pkw_none(&f->pk);
        return CK_OK;
    }
    if ((st = store_for(f, ts, &idx))) return st;
    if (ts->untyped)
        put_persid(f, "torch.storage", "UntypedStorage", &f->stores[idx],
                   ts->location ? ts->location : "cpu", ts->numel);
    else
        put_persid(f, "torch", ts->type_name, &f->stores[idx],
                   ts->location ? ts->location : "cpu", ts->numel);
    return CK_OK;
}

/* ---- the run ------------------------------------------------------------------ */

static void full_free(full *f)
{
    cki_tw_free(&f->tw);
    cki_pkw_free(&f->pk);
    cki_tselect_free(f->ctx, &f->sel);
    if (f->tf_open) cki_torch_close(&f->tf);
    cki_map_free(&f->by_tensor);
    cki_map_free(&f->by_name);
    cki_map_free(&f->store_of);
    cki_arena_free(&f->keys);
    cki_free(f->ctx, f->plan_of);
    cki_free(f->ctx, f->stores);
}

static void report(void *user, const char *path, const char *what, const char *became)
{
    full *f = user;
    if (f->fn) f->fn(f->fn_user, path, what, became);
}

static ck_status full_run(full *f, int unknown)
{
    const cki_source *src = f->m->sources[0];
    cki_torch_kind kind = cki_torch_sniff(src->base, src->len);
    int gone;
    ck_status st;

    f->src = src;
    if (src->view_len < src->len) /* a web window: the pickle rewrite needs the whole file */
        return cki_fail(f->ctx, CK_EUNSUPPORTED,
                        "%s: %llu bytes: rewriting the pickle of a file over %llu bytes is not "
                        "done here; use the ckptkit command for this one",
                        src->path, (unsigned long long)src->len,
                        (unsigned long long)CKI_SOURCE_WHOLE_MAX);
    cki_map_init(&f->by_tensor, f->ctx);
    cki_map_init(&f->by_name, f->ctx);
    cki_map_init(&f->store_of, f->ctx);
    cki_arena_init(&f->keys, f->ctx);
    cki_pkw_init(&f->pk, f->ctx);
    cki_tw_init(&f->tw, f->ctx, &f->pk);
    if ((st = cki_torch_parse(f->ctx, src->path, src->base, src->len, kind, NULL, NULL, &f->tf)))
        return st;
    f->tf_open = 1;
    if ((st = cki_torch_select(&f->tf.rec, f->tf.root, NULL, 0, &f->sel))) return st;
    if (f->job && (st = match_job(f))) return st;
    f->tw.unknown = unknown;
    f->tw.state_dict = f->sel.exposed ? f->sel.exposed : f->tf.root;
    f->tw.tensor = tensor_hook;
    f->tw.storage = storage_hook;
    f->tw.omit = omit;
    f->tw.key = rekey;
    f->tw.report = report;
    f->tw.user = f;
    cki_pkw_proto(&f->pk);
    if ((st = cki_tw_write(&f->tw, f->tf.pv_root, &gone))) return st;
    if (gone)
        return cki_fail(f->ctx, CK_EUNSAFE,
                        "%s: nothing usable remains: the checkpoint's root object itself was "
                        "removed",
                        src->path);
    cki_pkw_stop(&f->pk);
    if ((st = cki_pkw_status(&f->pk))) return st;
    if (f->renames_done < f->renames_needed)
        return cki_fail(f->ctx, CK_EUNSUPPORTED,
                        "%s: renames apply to the keys of the state dict itself; %zu renamed "
                        "tensor(s) sit deeper in the tree (add --prune to write the state dict "
                        "alone)",
                        f->job->path, f->renames_needed - f->renames_done);
    return CK_OK;
}

static ck_status write_archive(full *f, const char *prefix)
{
    cki_write_job *job = f->job;
    cki_zipw z;
    char *name;
    size_t cap = strlen(prefix) + 48;
    ck_status st;

    name = cki_malloc(f->ctx, cap);
    if (!name) return CK_ENOMEM;
    /* progress counts every storage written, not only the state dict's */
    job->done_bytes = 0;
    job->total_bytes = 0;
    for (size_t s = 0; s < f->nstores; s++) job->total_bytes += f->stores[s].ot.nbytes;
    cki_zipw_init(&z, f->ctx, job->sink);
    snprintf(name, cap, "%s/data.pkl", prefix);
    if ((st = cki_zipw_add(&z, name, f->pk.out.p, f->pk.out.len))) goto out;
    snprintf(name, cap, "%s/byteorder", prefix);
    if ((st = cki_zipw_add(&z, name, "little", 6))) goto out;
    for (size_t s = 0; s < f->nstores; s++) {
        ostore *x = &f->stores[s];
        uint32_t crc = 0;
        if (x->span.storage) {
            x->span.shape = &x->span_len;
            x->ot.src = &x->span;
        }
        snprintf(name, cap, "%s/data/%s", prefix, x->key);
        if ((st = cki_zipw_begin(&z, name, x->ot.nbytes))) goto out;
        if ((st = cki_emit_tensor(job, &x->ot, &crc))) goto out;
        if ((st = cki_zipw_end(&z, crc))) goto out;
    }
    snprintf(name, cap, "%s/version", prefix);
    if ((st = cki_zipw_add(&z, name, "3\n", 2))) goto out;
    st = cki_zipw_finish(&z);
out:
    cki_zipw_free(&z);
    cki_free(f->ctx, name);
    return st;
}

ck_status cki_torch_full_write(cki_write_job *job, int ckpt)
{
    full f;
    char *prefix = NULL;
    ck_status st;
    memset(&f, 0, sizeof f);
    f.job = job;
    f.ctx = job->ctx;
    f.m = (ck_model *)job->src_model; /* storages of the rewrite are bound into it */
    f.fn = job->rewrite_fn;
    f.fn_user = job->rewrite_user;
    if (job->meta_count && ckpt)
        for (size_t i = 0; i < job->meta_count; i++)
            if (strcmp(job->meta_keys[i], "epoch") && strcmp(job->meta_keys[i], "global_step") &&
                strncmp(job->meta_keys[i], "pytorch-lightning_version", 25) &&
                strcmp(job->meta_keys[i], "legacy_pytorch-lightning_version")) {
                cki_warn(job->ctx,
                         "%s: a whole-checkpoint rewrite writes the input's own tree; metadata "
                         "entries such as '%s' are not added (--prune writes them)",
                         job->path, job->meta_keys[i]);
                break;
            }
    st = full_run(&f, job->unknown);
    if (st) goto out;
    prefix = cki_torch_archive_prefix(job->ctx, job->path, ckpt);
    if (!prefix) {
        st = CK_ENOMEM;
        goto out;
    }
    st = write_archive(&f, prefix);
out:
    cki_free(job->ctx, prefix);
    full_free(&f);
    return st;
}

CK_API ck_status ck_model_rewrites(ck_ctx *ctx, const ck_model *m, int unknown, ck_rewrite_fn fn,
                                   void *user)
{
    full f;
    ck_status st;
    if (!ctx || !m) return cki_fail(ctx, CK_EARG, "ck_model_rewrites: missing argument");
    cki_clear(ctx);
    if (m->source_count != 1 || !m->format_name || strncmp(m->format_name, "torch-", 6))
        return cki_fail(ctx, CK_EUNSUPPORTED,
                        "%s: only a single PyTorch file has an object tree to rewrite", m->path);
    if (unknown < CK_UNKNOWN_DICT || unknown > CK_UNKNOWN_KEEP)
        return cki_fail(ctx, CK_EARG, "ck_model_rewrites: unknown policy %d", unknown);
    memset(&f, 0, sizeof f);
    f.ctx = ctx;
    f.m = (ck_model *)m; /* read only: nothing is bound without a job */
    f.fn = fn;
    f.fn_user = user;
    st = full_run(&f, unknown);
    full_free(&f);
    return st;
}
