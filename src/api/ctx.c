/*
 * ctx.c -- the public context: limits, callbacks, last error, version.
 */
#include "../common/cki.h"

static const uint64_t default_limits[CK_LIMIT_COUNT] = {
    [CK_LIMIT_HEADER_BYTES] = 100000000ull,
    [CK_LIMIT_PICKLE_DEPTH] = 1000,
    [CK_LIMIT_PICKLE_MEMO] = 10000000ull,
    [CK_LIMIT_PICKLE_STACK] = 10000000ull,
    [CK_LIMIT_MEMORY] = 4ull << 30,
    [CK_LIMIT_INFLATE_BYTES] = 4ull << 30,
    [CK_LIMIT_TENSORS] = 10000000ull,
};

const char *ck_version(void)
{
    return CK_VERSION_STRING;
}

ck_ctx *ck_ctx_new(void)
{
    ck_ctx *ctx = cki_calloc(NULL, 1, sizeof *ctx);
    if (!ctx) return NULL;
    memcpy(ctx->limits, default_limits, sizeof default_limits);
    return ctx;
}

void ck_ctx_free(ck_ctx *ctx)
{
    cki_free(NULL, ctx);
}

const char *ck_errmsg(const ck_ctx *ctx)
{
    return ctx ? ctx->errmsg : "no context";
}

ck_status ck_last_status(const ck_ctx *ctx)
{
    return ctx ? ctx->last : CK_EARG;
}

void ck_ctx_set_warn(ck_ctx *ctx, ck_warn_fn fn, void *user)
{
    ctx->warn = fn;
    ctx->warn_user = user;
}

void ck_ctx_set_progress(ck_ctx *ctx, ck_progress_fn fn, void *user)
{
    ctx->progress = fn;
    ctx->progress_user = user;
}

void ck_ctx_set_output(ck_ctx *ctx, const ck_output_ops *ops)
{
    if (ops && ops->open && ops->write && ops->commit && ops->abort) ctx->out = *ops;
    else memset(&ctx->out, 0, sizeof ctx->out);
}

ck_status ck_ctx_set_limit(ck_ctx *ctx, ck_limit which, uint64_t value)
{
    if (!ctx || (int)which < 0 || which >= CK_LIMIT_COUNT)
        return cki_fail(ctx, CK_EARG, "unknown limit %d", (int)which);
    ctx->limits[which] = value ? value : default_limits[which];
    if (which == CK_LIMIT_MEMORY && ctx->mem_limit_effective > ctx->limits[which])
        ctx->mem_limit_effective = ctx->limits[which];
    return CK_OK;
}

uint64_t ck_ctx_get_limit(const ck_ctx *ctx, ck_limit which)
{
    if (!ctx || (int)which < 0 || which >= CK_LIMIT_COUNT) return 0;
    return ctx->limits[which];
}

const char *ck_status_name(ck_status st)
{
    switch (st) {
    case CK_OK: return "ok";
    case CK_EFORMAT: return "bad format";
    case CK_EUNSUPPORTED: return "unsupported";
    case CK_EIO: return "i/o error";
    case CK_ENOMEM: return "out of memory";
    case CK_ELIMIT: return "limit exceeded";
    case CK_EEXIST: return "output exists";
    case CK_ESAMEFILE: return "output is input";
    case CK_EARG: return "invalid argument";
    case CK_ENOTFOUND: return "not found";
    case CK_EINTR: return "interrupted";
    case CK_EUNSAFE: return "unsafe";
    }
    return "unknown status";
}
