/*
 * buf.c -- a growable byte buffer with an optional size cap. Appends that
 * fail set a sticky flag so a writer can check once at the end.
 */
#include <stdio.h>

#include "cki.h"

void cki_buf_init(cki_buf *b, ck_ctx *ctx, size_t limit)
{
    memset(b, 0, sizeof *b);
    b->ctx = ctx;
    b->limit = limit;
}

void cki_buf_free(cki_buf *b)
{
    cki_free(b->ctx, b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

int cki_buf_reserve(cki_buf *b, size_t extra)
{
    size_t need, ncap;
    char *np;
    if (b->failed) return -1;
    if (cki_add_size(&need, b->len, extra) || cki_add_size(&need, need, 1)) goto fail;
    if (b->limit && need > b->limit) {
        cki_fail(b->ctx, CK_ELIMIT, "buffer limit of %zu bytes reached", b->limit);
        goto fail;
    }
    if (need <= b->cap && b->p) return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) { ncap = need; break; }
        ncap *= 2;
    }
    if (b->limit && ncap > b->limit) ncap = b->limit;
    np = cki_realloc(b->ctx, b->p, ncap);
    if (!np) goto fail;
    b->p = np;
    b->cap = ncap;
    return 0;
fail:
    b->failed = 1;
    return -1;
}

int cki_buf_put(cki_buf *b, const void *p, size_t n)
{
    if (cki_buf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int cki_buf_puts(cki_buf *b, const char *s)
{
    return cki_buf_put(b, s, strlen(s));
}

int cki_buf_putc(cki_buf *b, char c)
{
    return cki_buf_put(b, &c, 1);
}

int cki_buf_printf(cki_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    char small[256];
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return cki_buf_put(b, small, (size_t)n);
    if (cki_buf_reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int cki_buf_json_str(cki_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (cki_buf_putc(b, '"')) return -1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        switch (c) {
        case '"': cki_buf_put(b, "\\\"", 2); break;
        case '\\': cki_buf_put(b, "\\\\", 2); break;
        case '\n': cki_buf_put(b, "\\n", 2); break;
        case '\r': cki_buf_put(b, "\\r", 2); break;
        case '\t': cki_buf_put(b, "\\t", 2); break;
        case '\b': cki_buf_put(b, "\\b", 2); break;
        case '\f': cki_buf_put(b, "\\f", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
                esc[4] = hex[c >> 4]; esc[5] = hex[c & 15];
                cki_buf_put(b, esc, 6);
            } else {
                cki_buf_putc(b, (char)c);
            }
        }
    }
    return cki_buf_putc(b, '"');
}

char *cki_buf_take(cki_buf *b)
{
    char *p;
    if (b->failed) return NULL;
    if (!b->p && cki_buf_reserve(b, 0)) return NULL;
    b->p[b->len] = 0; /* an empty buffer has had no append to terminate it */
    p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}
