/*
 * source.c -- memory-mapped read-only input (see source.h). The web build
 * uses source_web.c instead.
 */
#include "source.h"

#if !defined(__EMSCRIPTEN__) && !defined(CKI_SOURCE_WEB)

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

ck_status cki_source_open_ex(ck_ctx *ctx, const char *path, int writable, cki_source **out)
{
    cki_source *s;
    ck_status st = cki_source_open_file(ctx, path, &s);
    if (st) return st;
    if (s->len) {
        void *p = mmap(NULL, (size_t)s->len, writable ? PROT_READ | PROT_WRITE : PROT_READ,
                       writable ? MAP_PRIVATE | MAP_NORESERVE : MAP_PRIVATE, s->fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            cki_source_close(ctx, s);
            return cki_fail(ctx, CK_EIO, "%s: cannot map %llu bytes: %s", path,
                            (unsigned long long)s->len, strerror(e));
        }
        s->base = p;
        /* opening touches scattered headers (zip local headers, legacy
         * storage counts): no read-ahead around them. Streaming copies ask
         * for what they need next with cki_source_will_need. */
        madvise(p, (size_t)s->len, MADV_RANDOM);
    }
    *out = s;
    return CK_OK;
}

void cki_source_close(ck_ctx *ctx, cki_source *s)
{
    if (!s) return;
    if (s->fd >= 0) {
        if (s->base) munmap((void *)s->base, (size_t)s->len);
        close(s->fd);
    }
    cki_free(ctx, s->path);
    cki_free(ctx, s);
}

static void advise(const cki_source *s, uint64_t off, uint64_t len, int how)
{
    long pg = sysconf(_SC_PAGESIZE);
    uint64_t start, end;
    if (!s || s->fd < 0 || !s->base || pg <= 0 || off >= s->len) return;
    if (len > s->len - off) len = s->len - off;
    start = off & ~((uint64_t)pg - 1);
    end = off + len;
    if (how == MADV_DONTNEED) {
        /* only whole pages entirely inside the range */
        start = (off + (uint64_t)pg - 1) & ~((uint64_t)pg - 1);
        end &= ~((uint64_t)pg - 1);
    }
    if (end <= start) return;
    madvise((void *)(s->base + start), (size_t)(end - start), how);
}

void cki_source_release(const cki_source *s, uint64_t off, uint64_t len)
{
    advise(s, off, len, MADV_DONTNEED);
}

void cki_source_will_need(const cki_source *s, uint64_t off, uint64_t len)
{
    advise(s, off, len, MADV_WILLNEED);
}

void cki_source_sequential(const cki_source *s)
{
    if (!s || s->fd < 0 || !s->base) return;
    madvise((void *)s->base, (size_t)s->len, MADV_SEQUENTIAL);
    posix_fadvise(s->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
}

ck_status cki_source_pread(ck_ctx *ctx, const cki_source *s, uint64_t off, void *dst, size_t len)
{
    uint8_t *d = dst;
    if (cki_out_of(off, len, s->len))
        return cki_fail(ctx, CK_EARG, "%s: read of [%llu, +%zu) outside the file", s->path,
                        (unsigned long long)off, len);
    if (s->fd < 0) {
        memcpy(dst, s->base + off, len);
        return CK_OK;
    }
    while (len) {
        ssize_t r = pread(s->fd, d, len, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0)
            return cki_fail(ctx, CK_EIO, "%s: read failed at byte %llu: %s", s->path,
                            (unsigned long long)off, r < 0 ? strerror(errno) : "file shrank");
        d += r;
        off += (uint64_t)r;
        len -= (size_t)r;
    }
    return CK_OK;
}

ck_status cki_source_view(ck_ctx *ctx, const cki_source *s, uint64_t want)
{
    if (want > s->len)
        return cki_fail(ctx, CK_EFORMAT, "%s: needs %llu bytes but the file has %llu", s->path,
                        (unsigned long long)want, (unsigned long long)s->len);
    return CK_OK;
}

#else
typedef int cki_source_mapped_unused;
#endif
