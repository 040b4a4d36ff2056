/*
 * source_web.c -- read-only input for the WebAssembly build (see source.h).
 *
 * Emscripten 3.1.6 has no useful mmap for a File and its pread/pwrite drop
 * the high 32 bits of the offset (wrong bytes past 4 GiB), so every read here
 * is lseek + read, which carry 64-bit offsets correctly. The browser hands the
 * file through WORKERFS, which reads slices of the File on demand.
 *
 * Natively, -DCKI_SOURCE_WEB selects this backend too (make unit-websrc runs
 * the unit tests over it), since lseek and read are plain POSIX.
 *
 * A file of at most CKI_SOURCE_WHOLE_MAX bytes is read whole into the heap
 * (pickle readers need it all in one range). A larger one gets a window over
 * its head (CKI_SOURCE_WINDOW bytes, extended by cki_source_view for a long
 * header); its tensor bytes are never held, only read chunk by chunk with
 * cki_source_pread, so the heap stays bounded whatever the file's size.
 *
 * The view stands for the native build's mapping, so like the mapping it is
 * not counted against CK_LIMIT_MEMORY (cki_malloc without a context): the
 * limit bounds what parsing allocates, and is set per open from the input's
 * size only after the source is open.
 */
#include "source.h"

#if defined(__EMSCRIPTEN__) || defined(CKI_SOURCE_WEB)
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads [off, off+len) of FD with lseek + read. */
static ck_status read_at(ck_ctx *ctx, const char *path, int fd, uint64_t off, uint8_t *d,
                         size_t len)
{
    if (lseek(fd, (off_t)off, SEEK_SET) != (off_t)off)
        return cki_fail(ctx, CK_EIO, "%s: cannot seek to byte %llu: %s", path,
                        (unsigned long long)off, strerror(errno));
    while (len) {
        ssize_t r = read(fd, d, len);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return cki_fail(ctx, CK_EIO, "%s: read failed at byte %llu: %s", path,
                            (unsigned long long)off, r < 0 ? strerror(errno) : "file shrank");
        d += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    return CK_OK;
}

/* WRITABLE needs nothing more here: the bytes read into the heap are this
 * process's own copy, writable, never written back. */
ck_status cki_source_open_ex(ck_ctx *ctx, const char *path, int writable, cki_source **out)
{
    cki_source *s;
    uint8_t *buf = NULL;
    ck_status rc = cki_source_open_file(ctx, path, &s);
    if (rc) return rc;
    s->view_len = s->len <= CKI_SOURCE_WHOLE_MAX ? s->len : CKI_SOURCE_WINDOW;
    if (s->view_len) {
        buf = cki_malloc(NULL, (size_t)s->view_len);
        if (!buf) {
            cki_source_close(ctx, s);
            return cki_fail(ctx, CK_ENOMEM, "%s: cannot hold %llu bytes in memory", path,
                            (unsigned long long)s->view_len);
        }
        s->base = buf;
        if ((rc = read_at(ctx, path, s->fd, 0, buf, (size_t)s->view_len))) {
            cki_source_close(ctx, s);
            return rc;
        }
    }
    *out = s;
    return CK_OK;
}

void cki_source_close(ck_ctx *ctx, cki_source *s)
{
    if (!s) return;
    if (s->fd >= 0) {
        cki_free(NULL, (void *)s->base);
        close(s->fd);
    }
    cki_free(ctx, s->path);
    cki_free(ctx, s);
}

ck_status cki_source_view(ck_ctx *ctx, const cki_source *cs, uint64_t want)
{
    /* the view is a cache of the file's head: growing it changes no byte of
     * the file the source stands for, so it is done through a const source */
    cki_source *s = (cki_source *)cs;
    uint8_t *buf;
    ck_status rc;
    if (want > s->len)
        return cki_fail(ctx, CK_EFORMAT, "%s: needs %llu bytes but the file has %llu", s->path,
                        (unsigned long long)want, (unsigned long long)s->len);
    if (want <= s->view_len) return CK_OK;
    if (want > ctx->limits[CK_LIMIT_HEADER_BYTES] + CKI_SOURCE_WINDOW)
        return cki_fail(ctx, CK_ELIMIT,
                        "%s: a header of %llu bytes is more than the browser reads ahead "
                        "(CK_LIMIT_HEADER_BYTES %llu)",
                        s->path, (unsigned long long)want,
                        (unsigned long long)ctx->limits[CK_LIMIT_HEADER_BYTES]);
    buf = cki_malloc(NULL, (size_t)want);
    if (!buf)
        return cki_fail(ctx, CK_ENOMEM, "%s: cannot hold a header of %llu bytes in memory",
                        s->path, (unsigned long long)want);
    memcpy(buf, s->base, (size_t)s->view_len);
    if ((rc = read_at(ctx, s->path, s->fd, s->view_len, buf + s->view_len,
                      (size_t)(want - s->view_len)))) {
        cki_free(NULL, buf);
        return rc;
    }
    cki_free(NULL, (void *)s->base);
    s->base = buf;
    s->view_len = want;
    return CK_OK;
}

void cki_source_release(const cki_source *src, uint64_t off, uint64_t len) {}
void cki_source_will_need(const cki_source *src, uint64_t off, uint64_t len) {}
void cki_source_sequential(const cki_source *src) {}

ck_status cki_source_pread(ck_ctx *ctx, const cki_source *s, uint64_t off, void *dst, size_t len)
{
    if (cki_out_of(off, len, s->len))
        return cki_fail(ctx, CK_EARG, "%s: read of [%llu, +%zu) outside the file", s->path,
                        (unsigned long long)off, len);
    if (s->fd < 0 || off + len <= s->view_len) {
        if (len) memcpy(dst, s->base + off, len);
        return CK_OK;
    }
    return read_at(ctx, s->path, s->fd, off, dst, len);
}

#else
typedef int cki_source_web_unused;
#endif
