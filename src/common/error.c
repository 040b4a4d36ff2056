/*
 * error.c -- the context's last error and the warning channel.
 * One message per failure, one line, formatted by the code that found the
 * problem; later calls that fail overwrite it.
 */
#include <stdio.h>

#include "cki.h"

ck_status cki_vfail(ck_ctx *ctx, ck_status st, const char *fmt, va_list ap)
{
    if (!ctx) return st;
    ctx->last = st;
    vsnprintf(ctx->errmsg, sizeof ctx->errmsg, fmt, ap);
    /* keep the message on one line whatever was interpolated into it */
    for (char *p = ctx->errmsg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return st;
}

ck_status cki_fail(ck_ctx *ctx, ck_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cki_vfail(ctx, st, fmt, ap);
    va_end(ap);
    return st;
}

void cki_warn(ck_ctx *ctx, const char *fmt, ...)
{
    char msg[CKI_ERRMSG_MAX];
    va_list ap;
    if (!ctx || !ctx->warn) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    ctx->warn(ctx->warn_user, msg);
}

void cki_clear(ck_ctx *ctx)
{
    if (!ctx) return;
    ctx->last = CK_OK;
    ctx->errmsg[0] = 0;
}
