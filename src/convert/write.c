/*
 * write.c -- ck_convert: plan, open the atomic sinks, run the format's
 * writer, commit. Any failure (including a cancelled progress callback)
 * aborts every sink, so no partial output and no temporary file remain.
 *
 * Sharded output (--shard-size, Hugging Face layout, FORMATS.md 6):
 *   OUT = DIR/STEM.EXT  ->  DIR/STEM-00001-of-0000N.EXT ... + DIR/STEM.EXT.index.json
 *   index = {"metadata": {"total_size": BYTES}, "weight_map": {NAME: SHARD, ...}}
 * written as JSON with two-space indent and keys sorted by byte order (what
 * huggingface_hub writes), so the same plan gives the same bytes. Splitting walks the
 * plan in order and starts a new shard when the next tensor would take the current one
 * past the size; a tensor larger than the size gets a shard of its own; a tensor that
 * shares a storage with an earlier one joins that one's shard when the writer keeps
 * storages shared. One shard is written as OUT itself, with no index.
 * total_size is the sum of output tensor bytes; a storage the writer keeps shared counts
 * once, as the byte span its tensors' views cover (their sum if that is smaller). Every
 * shard and the index stay temporary files until all are complete and synced (so a full
 * disk shows before anything is renamed); then the shards are renamed into place and the
 * index last. If a rename fails, the files this call already renamed are removed again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "convert.h"

/* Temporary outputs alive at once: the sink's signal-cleanup table holds 256. */
#define MAX_SHARDS 200

ck_status cki_job_open_side(cki_write_job *job, const char *path, cki_sink **out)
{
    ck_status st;
    const ck_model *m = job->src_model;
    if (job->side_count == sizeof job->side / sizeof job->side[0])
        return cki_fail(job->ctx, CK_EARG, "%s: too many side outputs", path);
    st = cki_sink_open(job->ctx, path, job->force, m ? m->sources : NULL,
                       m ? m->source_count : 0, out);
    if (st) return st;
    job->side[job->side_count++] = *out;
    return CK_OK;
}

static void job_init(cki_write_job *job, ck_ctx *ctx, ck_model *in, const char *path,
                     const ck_convert_opts *o, const cki_plan *plan, cki_cast_stats *cs,
                     uint8_t *scratch)
{
    memset(job, 0, sizeof *job);
    job->ctx = ctx;
    job->path = path;
    job->tensors = plan->tensors;
    job->count = plan->count;
    job->meta_keys = plan->meta_keys;
    job->meta_vals = plan->meta_vals;
    job->meta_count = plan->meta_count;
    job->src_model = in;
    job->prune = o->prune;
    job->force = o->force;
    job->verify_crc = !o->no_crc;
    job->compress = o->compress;
    job->strict = o->strict;
    job->stats = cs;
    job->scratch = scratch;
    job->full = !o->prune && !o->shard_size;
    job->unknown = o->unknown;
    job->rewrite_fn = o->on_rewrite;
    job->rewrite_user = o->rewrite_user;
    job->cast_all = o->cast_all ? o->dtype : CK_DT_KEEP;
    job->opts = o;
    job->shard_count = 1;
    job->all_count = plan->count;
}

/* Opens the job's sink and runs the writer; the sinks stay open (uncommitted). */
static ck_status job_run(cki_write_job *job, ck_model *in, const cki_format *f)
{
    ck_status st = cki_sink_open(job->ctx, job->path, job->force, in->sources, in->source_count,
                                 &job->sink);
    if (st) return st;
    return f->write(job);
}

/* Commits the job's side outputs, then its main output. Every sink is flushed
 * and fsynced first, so a write error (disk full) shows before anything is
 * renamed; a side already renamed when a later rename fails is removed again. */
static ck_status job_commit(cki_write_job *job)
{
    char *renamed[sizeof job->side / sizeof job->side[0]];
    size_t nren = 0;
    ck_status st = CK_OK;
    for (size_t i = 0; !st && i < job->side_count; i++) st = cki_sink_sync(job->side[i]);
    if (!st) st = cki_sink_sync(job->sink);
    for (size_t i = 0; !st && i < job->side_count; i++) {
        char *path = cki_strdup(job->ctx, cki_sink_path(job->side[i]));
        if (!path) {
            st = CK_ENOMEM;
            break;
        }
        st = cki_sink_commit(job->side[i]);
        job->side[i] = NULL;
        if (st) cki_free(job->ctx, path);
        else renamed[nren++] = path;
    }
    if (!st) {
        st = cki_sink_commit(job->sink);
        job->sink = NULL;
    }
    for (size_t i = 0; i < nren; i++) {
        if (st) unlink(renamed[i]);
        cki_free(job->ctx, renamed[i]);
    }
    return st;
}

static void job_abort(cki_write_job *job)
{
    for (size_t i = 0; i < job->side_count; i++) cki_sink_abort(job->side[i]);
    job->side_count = 0;
    cki_sink_abort(job->sink);
    job->sink = NULL;
}

static void add_stats(ck_convert_stats *stats, const cki_out_tensor *t, size_t n,
                      const cki_cast_stats *cs, uint64_t shards)
{
    if (!stats) return;
    for (size_t i = 0; i < n; i++) {
        stats->tensors++;
        stats->bytes += t[i].nbytes;
        if (t[i].dtype != t[i].src->dtype) stats->cast_tensors++;
        if (t[i].dtype >= 0 && t[i].dtype < CK_DT_COUNT) stats->dtype_tensors[t[i].dtype]++;
    }
    stats->overflow += cs->overflow;
    stats->underflow += cs->underflow;
    stats->shards += shards;
}

ck_status cki_write_plan(ck_ctx *ctx, ck_model *in, const cki_format *f, const char *path,
                         const ck_convert_opts *o, const cki_plan *plan,
                         ck_convert_stats *stats)
{
    cki_write_job job;
    cki_cast_stats cs = {0, 0};
    uint8_t *scratch;
    ck_status st;

    scratch = cki_malloc(ctx, CKI_SCRATCH);
    if (!scratch) return CK_ENOMEM;
    job_init(&job, ctx, in, path, o, plan, &cs, scratch);
    for (size_t i = 0; i < plan->count; i++) job.total_bytes += plan->tensors[i].nbytes;
    st = job_run(&job, in, f);
    if (!st) st = job_commit(&job);
    job_abort(&job);
    cki_free(ctx, scratch);
    if (!st) add_stats(stats, plan->tensors, plan->count, &cs, 1);
    return st;
}

/* ---- sharded output ------------------------------------------------------ */

/* Bytes [lo, hi) of its storage that T's view reaches; 0 for an empty view. */
static void view_extent(const cki_tensor *t, uint64_t *lo, uint64_t *hi)
{
    unsigned es = cki_dtype_size(t->dtype);
    uint64_t last = t->offset, dense = 1;
    for (int d = t->ndim - 1; d >= 0; d--) { /* validated at open: no overflow */
        uint64_t st = t->stride ? (uint64_t)t->stride[d] : dense;
        last += (uint64_t)(t->shape[d] - 1) * st;
        dense *= (uint64_t)t->shape[d];
    }
    *lo = t->offset * es;
    *hi = (last + 1) * es;
}

typedef struct storage_group {
    uint64_t sum, lo, hi; /* output bytes of the members, byte span of their views */
    int dense;            /* some member is written on its own (cast, flags, sub-byte) */
    int seen;
    size_t shard;         /* 1 + shard of the first member, once placed */
} storage_group;

ck_status cki_shard_assign(ck_ctx *ctx, const cki_plan *plan, uint64_t max_size, int keep_shared,
                           size_t *shard_of, size_t *shard_count, uint64_t *total_size)
{
    size_t storages = 0, n = 0;
    storage_group *g = NULL;
    uint64_t cur = 0;
    *total_size = 0;
    if (keep_shared) {
        /* a writer that keeps storages shared writes a group once: count it once, as
         * the span its views cover (or their sum when some member is written apart) */
        for (size_t i = 0; i < plan->count; i++) {
            const cki_storage *sg = plan->tensors[i].src->storage;
            if (sg && sg->id > storages) storages = (size_t)sg->id;
        }
        g = cki_calloc(ctx, storages + 1, sizeof *g);
        if (!g) return CK_ENOMEM;
        for (size_t i = 0; i < plan->count; i++) {
            const cki_out_tensor *ot = &plan->tensors[i];
            const cki_tensor *t = ot->src;
            storage_group *x;
            uint64_t lo, hi;
            if (!t->storage || !t->numel) continue;
            x = &g[t->storage->id];
            if (cki_add_u64(&x->sum, x->sum, ot->nbytes)) x->sum = UINT64_MAX;
            if (ot->dtype != t->dtype || t->flags || !cki_dtype_size(t->dtype)) x->dense = 1;
            view_extent(t, &lo, &hi);
            if (!x->seen || lo < x->lo) x->lo = lo;
            if (!x->seen || hi > x->hi) x->hi = hi;
            x->seen = 1;
        }
    }
    for (size_t i = 0; i < plan->count; i++) {
        const cki_out_tensor *ot = &plan->tensors[i];
        const cki_tensor *t = ot->src;
        storage_group *x = keep_shared && t->storage && t->numel ? &g[t->storage->id] : NULL;
        uint64_t sz = ot->nbytes, next;
        if (x && x->shard) {
            shard_of[i] = x->shard - 1; /* bytes already counted with the first member */
            continue;
        }
        if (x) sz = x->dense || x->sum < x->hi - x->lo ? x->sum : x->hi - x->lo;
        if (cki_add_u64(total_size, *total_size, sz) || cki_add_u64(&next, cur, sz)) {
            cki_free(ctx, g);
            return cki_fail(ctx, CK_EARG, "tensor '%s': total size overflows 64 bits", ot->name);
        }
        if (n == 0 || (cur > 0 && next > max_size)) {
            n++;
            cur = sz;
        } else {
            cur = next;
        }
        shard_of[i] = n - 1;
        if (x) x->shard = n;
    }
    cki_free(ctx, g);
    *shard_count = n ? n : 1;
    return CK_OK;
}

/* "DIR/STEM-00001-of-00003.EXT" for OUT = "DIR/STEM.EXT" (no EXT: "OUT-00001-of-00003"). */
static char *shard_path(ck_ctx *ctx, const char *out, size_t k, size_t n)
{
    const char *base = cki_basename(out), *dot = strrchr(base, '.');
    size_t stem_len, len;
    char *p;
    if (!dot || dot == base) dot = base + strlen(base);
    stem_len = (size_t)(dot - out);
    len = strlen(out) + 64;
    p = cki_malloc(ctx, len);
    if (!p) return NULL;
    snprintf(p, len, "%.*s-%05zu-of-%05zu%s", (int)stem_len, out, k + 1, n, dot);
    return p;
}

typedef struct wm_entry {
    const char *name;
    const char *shard; /* base name */
} wm_entry;

static int wm_cmp(const void *a, const void *b)
{
    return strcmp(((const wm_entry *)a)->name, ((const wm_entry *)b)->name);
}

/* The index document for PLAN, in BUF. */
static ck_status index_json(ck_ctx *ctx, const cki_plan *plan, const size_t *shard_of,
                            char *const *paths, uint64_t total_size, cki_buf *buf)
{
    wm_entry *e = cki_calloc(ctx, plan->count ? plan->count : 1, sizeof *e);
    if (!e) return CK_ENOMEM;
    for (size_t i = 0; i < plan->count; i++) {
        e[i].name = plan->tensors[i].name;
        e[i].shard = cki_basename(paths[shard_of[i]]);
    }
    qsort(e, plan->count, sizeof *e, wm_cmp);
    cki_buf_printf(buf, "{\n  \"metadata\": {\n    \"total_size\": %llu\n  },\n"
                        "  \"weight_map\": {",
                   (unsigned long long)total_size);
    for (size_t i = 0; i < plan->count; i++) {
        cki_buf_puts(buf, i ? ",\n    " : "\n    ");
        cki_buf_json_str(buf, e[i].name, strlen(e[i].name));
        cki_buf_puts(buf, ": ");
        cki_buf_json_str(buf, e[i].shard, strlen(e[i].shard));
    }
    cki_buf_puts(buf, plan->count ? "\n  }\n}\n" : "}\n}\n");
    cki_free(ctx, e);
    return buf->failed ? CK_ENOMEM : CK_OK;
}

static ck_status write_sharded(ck_ctx *ctx, ck_model *in, const cki_format *f, const char *out,
                               const ck_convert_opts *o, const cki_plan *plan,
                               ck_convert_stats *stats)
{
    size_t *shard_of = NULL, n = 0, jobs_open = 0, committed = 0;
    uint64_t total_size = 0, total_bytes = 0, done = 0;
    char **paths = NULL, *index_path = NULL;
    cki_write_job *jobs = NULL;
    cki_out_tensor *sub = NULL;
    cki_sink *index_sink = NULL;
    cki_cast_stats cs = {0, 0};
    uint8_t *scratch = NULL;
    cki_buf buf;
    ck_status st;

    cki_buf_init(&buf, ctx, 0);
    shard_of = cki_calloc(ctx, plan->count ? plan->count : 1, sizeof *shard_of);
    if (!shard_of) return CK_ENOMEM;
    st = cki_shard_assign(ctx, plan, o->shard_size, (f->caps & CKI_CAP_SHARED) != 0, shard_of, &n,
                          &total_size);
    if (st) goto out;
    if (n == 1) { /* as huggingface_hub: one shard is the plain file, no index */
        cki_free(ctx, shard_of);
        return cki_write_plan(ctx, in, f, out, o, plan, stats);
    }
    if (n > MAX_SHARDS) {
        st = cki_fail(ctx, CK_ELIMIT,
                      "%s: --shard-size %llu would make %zu shards (at most %d); use a larger "
                      "size",
                      out, (unsigned long long)o->shard_size, n, MAX_SHARDS);
        goto out;
    }
    paths = cki_calloc(ctx, n, sizeof *paths);
    jobs = cki_calloc(ctx, n, sizeof *jobs);
    sub = cki_calloc(ctx, plan->count, sizeof *sub);
    scratch = cki_malloc(ctx, CKI_SCRATCH);
    index_path = cki_malloc(ctx, strlen(out) + sizeof ".index.json");
    if (!paths || !jobs || !sub || !scratch || !index_path) { st = CK_ENOMEM; goto out; }
    sprintf(index_path, "%s.index.json", out);
    for (size_t k = 0; k < n; k++)
        if (!(paths[k] = shard_path(ctx, out, k, n))) { st = CK_ENOMEM; goto out; }
    for (size_t i = 0; i < plan->count; i++) total_bytes += plan->tensors[i].nbytes;

    /* each shard: the plan's tensors of that shard, in plan order, packed into SUB */
    {
        size_t used = 0;
        for (size_t k = 0; k < n && !st; k++) {
            cki_write_job *job = &jobs[k];
            size_t first = used;
            for (size_t i = 0; i < plan->count; i++)
                if (shard_of[i] == k) sub[used++] = plan->tensors[i];
            job_init(job, ctx, in, paths[k], o, plan, &cs, scratch);
            job->tensors = sub + first;
            job->count = used - first;
            job->shard_no = k;
            job->shard_count = n;
            job->total_bytes = total_bytes;
            job->done_bytes = done;
            jobs_open = k + 1;
            st = job_run(job, in, f);
            done = job->done_bytes;
            if (st == CK_ENOMEM) {
                char why[CKI_ERRMSG_MAX / 2];
                snprintf(why, sizeof why, "%s", ck_errmsg(ctx));
                st = cki_fail(ctx, CK_ENOMEM,
                              "%s: shard %zu of %zu: %s (every shard stays open until all are "
                              "written: use a larger --shard-size)",
                              paths[k], k + 1, n, why);
            }
        }
    }
    /* formats whose parts describe themselves (GGUF splits) get no index */
    if (!st && !(f->caps & CKI_CAP_SPLIT)) {
        st = index_json(ctx, plan, shard_of, paths, total_size, &buf);
        if (!st) st = cki_sink_open(ctx, index_path, o->force, in->sources, in->source_count,
                                    &index_sink);
        if (!st) st = cki_sink_write(index_sink, buf.p, buf.len);
    }
    for (size_t k = 0; !st && k < n; k++) { /* every write error before any rename */
        for (size_t i = 0; !st && i < jobs[k].side_count; i++) st = cki_sink_sync(jobs[k].side[i]);
        if (!st) st = cki_sink_sync(jobs[k].sink);
    }
    if (!st && index_sink) st = cki_sink_sync(index_sink);
    for (size_t k = 0; !st && k < n; k++) {
        st = job_commit(&jobs[k]);
        if (!st) committed = k + 1;
    }
    if (!st && index_sink) {
        st = cki_sink_commit(index_sink);
        index_sink = NULL;
    }
    if (st) /* a rename failed half-way: take back the shards already in place */
        for (size_t k = 0; k < committed; k++) unlink(paths[k]);
    if (!st) add_stats(stats, plan->tensors, plan->count, &cs, n);
out:
    for (size_t k = 0; k < jobs_open; k++) job_abort(&jobs[k]);
    cki_sink_abort(index_sink);
    for (size_t k = 0; paths && k < n; k++) cki_free(ctx, paths[k]);
    cki_free(ctx, paths);
    cki_free(ctx, jobs);
    cki_free(ctx, sub);
    cki_free(ctx, scratch);
    cki_free(ctx, index_path);
    cki_free(ctx, shard_of);
    cki_buf_free(&buf);
    return st;
}

ck_status ck_convert(ck_ctx *ctx, ck_model *in, const char *out, const ck_convert_opts *opts,
                     ck_convert_stats *stats)
{
    ck_convert_opts defaults;
    const cki_format *f;
    cki_plan plan;
    ck_status st;

    if (!ctx || !in || !out) return cki_fail(ctx, CK_EARG, "ck_convert: missing argument");
    cki_clear(ctx);
    if (!opts) {
        memset(&defaults, 0, sizeof defaults);
        defaults.dtype = CK_DT_KEEP;
        opts = &defaults;
    }
    if (stats) memset(stats, 0, sizeof *stats);
    if (opts->format) {
        f = cki_format_by_name(opts->format, CKI_CAP_WRITE);
        if (!f || !(f->caps & CKI_CAP_WRITE))
            return cki_fail(ctx, CK_EARG, "%s: no writer for format '%s'", out, opts->format);
    } else {
        f = cki_format_by_path(out);
        if (!f)
            return cki_fail(ctx, CK_EARG,
                            "%s: cannot tell the output format from the extension; use --to", out);
    }
    if (opts->shard_size && strcmp(f->name, "safetensors") != 0 && strcmp(f->name, "pth") != 0 &&
        !(f->caps & CKI_CAP_SPLIT))
        return cki_fail(ctx, CK_EUNSUPPORTED,
                        "%s: --shard-size: %s output cannot be sharded (safetensors, pth and "
                        "gguf can)",
                        out, f->name);
    if (opts->metadata && opts->metadata[0] && !(f->caps & CKI_CAP_METADATA))
        cki_warn(ctx, "%s: %s output holds no string metadata; --metadata is ignored", out,
                 f->name);
    if ((st = cki_plan_build_for(ctx, in, opts, f->caps, &plan))) return st;
    if (!opts->allow_expand && (st = cki_plan_check_expand(ctx, in, out, &plan))) {
        cki_plan_free(ctx, &plan);
        return st;
    }
    cki_model_streaming(in);
    if (opts->shard_size) st = write_sharded(ctx, in, f, out, opts, &plan, stats);
    else st = cki_write_plan(ctx, in, f, out, opts, &plan, stats);
    cki_plan_free(ctx, &plan);
    return st;
}
