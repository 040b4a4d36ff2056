/*
 * write.c -- ck_convert: plan, open the atomic sink, run the format's
 * writer, commit. Any failure (including a cancelled progress callback)
 * aborts every sink, so no partial output and no temporary file remain.
 */
#include "convert.h"

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

ck_status cki_write_plan(ck_ctx *ctx, ck_model *in, const cki_format *f, const char *path,
                         const ck_convert_opts *o, const cki_plan *plan,
                         ck_convert_stats *stats)
{
    cki_write_job job;
    cki_cast_stats cs = {0, 0};
    ck_status st;

    memset(&job, 0, sizeof job);
    job.ctx = ctx;
    job.path = path;
    job.tensors = plan->tensors;
    job.count = plan->count;
    job.meta_keys = plan->meta_keys;
    job.meta_vals = plan->meta_vals;
    job.meta_count = plan->meta_count;
    job.src_model = in;
    job.prune = o->prune;
    job.force = o->force;
    job.verify_crc = !o->no_crc;
    job.stats = &cs;
    for (size_t i = 0; i < plan->count; i++) job.total_bytes += plan->tensors[i].nbytes;

    job.scratch = cki_malloc(ctx, CKI_SCRATCH);
    if (!job.scratch) return CK_ENOMEM;
    st = cki_sink_open(ctx, path, o->force, in->sources, in->source_count, &job.sink);
    if (!st) st = f->write(&job);
    for (size_t i = 0; !st && i < job.side_count; i++) {
        st = cki_sink_commit(job.side[i]);
        job.side[i] = NULL;
    }
    if (!st) {
        st = cki_sink_commit(job.sink);
        job.sink = NULL;
    }
    for (size_t i = 0; i < job.side_count; i++) cki_sink_abort(job.side[i]);
    cki_sink_abort(job.sink);
    cki_free(ctx, job.scratch);
    if (!st && stats) {
        stats->tensors += plan->count;
        stats->bytes += job.total_bytes;
        stats->overflow += cs.overflow;
        stats->underflow += cs.underflow;
        for (size_t i = 0; i < plan->count; i++)
            if (plan->tensors[i].dtype != plan->tensors[i].src->dtype) stats->cast_tensors++;
        stats->shards += 1;
    }
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
    if (opts->shard_size)
        return cki_fail(ctx, CK_EUNSUPPORTED, "%s: sharded output is not available", out);
    if ((st = cki_plan_build(ctx, in, opts, &plan))) return st;
    st = cki_write_plan(ctx, in, f, out, opts, &plan, stats);
    cki_plan_free(ctx, &plan);
    return st;
}
