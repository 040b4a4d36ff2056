/*
 * sink.c -- atomic output (see sink.h). Writes are buffered in 1 MiB, and
 * writeback is started every 32 MiB behind the cursor (see kick); the
 * temporary file's name is kept in a fixed table that a signal handler can
 * walk with only async-signal-safe calls (unlink).
 */
#include "sink.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sys.h"

#define SINK_BUF (1u << 20)
#define KICK (32u << 20)
#define MAX_LIVE 256

struct cki_sink {
    ck_ctx *ctx;
    char *path;
    char *tmp;
    int fd;
    int slot;
    uint64_t pos;     /* logical bytes written, buffer included */
    uint64_t kicked;  /* writeback started on [0, kicked) */
    unsigned char *buf;
    size_t buf_len;
    void *ext;        /* the output callbacks' file (ctx->out set), else NULL */
};

/* Temporary files alive in this process, for the signal handler. A slot is
 * claimed (compare-and-swap, so threads never share one) and its name filled
 * BEFORE the file is created, with mkostemp working on the slot's own copy of
 * the template: whenever the file exists, its name is in the table, so a
 * signal arriving at any point finds it. */
static char live_tmp[MAX_LIVE][PATH_MAX];
static volatile sig_atomic_t live_used[MAX_LIVE];

void ck_cleanup_on_signal(void)
{
    for (int i = 0; i < MAX_LIVE; i++)
        if (live_used[i] == 2) unlink(live_tmp[i]);
}

/* Claims a slot holding TMPL (state 1: being filled, ignored by the handler). */
static int live_claim(const char *tmpl)
{
    size_t n = strlen(tmpl);
    if (n >= PATH_MAX) return -1;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (__sync_bool_compare_and_swap(&live_used[i], 0, 1)) {
            memcpy(live_tmp[i], tmpl, n + 1);
            __sync_synchronize();
            live_used[i] = 2;
            return i;
        }
    }
    return -1;
}

static void live_del(int slot)
{
    if (slot >= 0 && slot < MAX_LIVE) live_used[slot] = 0;
}

static void sink_free(cki_sink *s)
{
    ck_ctx *ctx = s->ctx;
    cki_free(ctx, s->buf);
    cki_free(ctx, s->tmp);
    cki_free(ctx, s->path);
    cki_free(ctx, s);
}

/* An output through the context's callbacks (ck_ctx_set_output). */
static ck_status open_ext(ck_ctx *ctx, const char *path, cki_sink **out)
{
    cki_sink *s = cki_calloc(ctx, 1, sizeof *s);
    int rc;
    if (!s) return CK_ENOMEM;
    s->ctx = ctx;
    s->fd = -1;
    s->slot = -1;
    s->path = cki_strdup(ctx, path);
    s->buf = cki_malloc(ctx, SINK_BUF);
    if (!s->path || !s->buf) {
        sink_free(s);
        return CK_ENOMEM;
    }
    if ((rc = ctx->out.open(ctx->out.user, path, &s->ext)) != 0) {
        sink_free(s);
        return cki_fail(ctx, CK_EIO, "%s: cannot start the output (callback returned %d)", path,
                        rc);
    }
    *out = s;
    return CK_OK;
}

ck_status cki_sink_open(ck_ctx *ctx, const char *path, int force, cki_source *const *inputs,
                        size_t input_count, cki_sink **out)
{
    struct stat st;
    cki_sink *s;
    const char *base = cki_basename(path);
    size_t dir_len = (size_t)(base - path);
    mode_t mask;

    if (!*base) return cki_fail(ctx, CK_EARG, "%s: output path names a folder", path);
    if (ctx->out.write) return open_ext(ctx, path, out);
    if (stat(path, &st) == 0) {
        for (size_t i = 0; i < input_count; i++) {
            if (inputs[i] && inputs[i]->fd >= 0 && inputs[i]->dev == st.st_dev &&
                inputs[i]->ino == st.st_ino)
                return cki_fail(ctx, CK_ESAMEFILE,
                                "%s: output is the input file %s (same device and inode); "
                                "refusing to overwrite it",
                                path, inputs[i]->path);
        }
        if (S_ISDIR(st.st_mode)) return cki_fail(ctx, CK_EARG, "%s: output is a folder", path);
        if (!force)
            return cki_fail(ctx, CK_EEXIST, "%s: output exists; use --force to replace it", path);
    } else if (errno != ENOENT) {
        return cki_fail(ctx, CK_EIO, "%s: cannot stat output: %s", path, strerror(errno));
    }

    s = cki_calloc(ctx, 1, sizeof *s);
    if (!s) return CK_ENOMEM;
    s->ctx = ctx;
    s->fd = -1;
    s->slot = -1;
    s->path = cki_strdup(ctx, path);
    s->tmp = cki_malloc(ctx, dir_len + strlen(base) + 32);
    s->buf = cki_malloc(ctx, SINK_BUF);
    if (!s->path || !s->tmp || !s->buf) {
        sink_free(s);
        return CK_ENOMEM;
    }
    memcpy(s->tmp, path, dir_len);
    sprintf(s->tmp + dir_len, ".%s.ckptkit-XXXXXX", base);
    s->slot = live_claim(s->tmp);
    if (s->slot >= 0) { /* create through the slot, see live_claim */
        s->fd = cki_sys_mkostemp(live_tmp[s->slot], O_CLOEXEC);
        memcpy(s->tmp, live_tmp[s->slot], strlen(s->tmp) + 1);
    } else {            /* path too long or table full: no signal cleanup */
        s->fd = cki_sys_mkostemp(s->tmp, O_CLOEXEC);
    }
    if (s->fd < 0) {
        ck_status st2 = cki_fail(ctx, CK_EIO, "%s: cannot create temporary file: %s", path,
                                 strerror(errno));
        live_del(s->slot);
        sink_free(s);
        return st2;
    }
    /* mkstemp makes 0600; give the output the usual 0666 & ~umask */
    mask = umask(0);
    umask(mask);
    if (fchmod(s->fd, 0666 & ~mask) != 0) { /* not fatal: keeps 0600 */ }
    *out = s;
    return CK_OK;
}

static ck_status write_all(cki_sink *s, const unsigned char *p, size_t n)
{
    if (s->ext) {
        int rc = s->ctx->out.write(s->ctx->out.user, s->ext, s->pos - s->buf_len, p, n);
        if (rc != 0)
            return cki_fail(s->ctx, CK_EIO, "%s: write failed (callback returned %d)", s->path,
                            rc);
        return CK_OK;
    }
    while (n) {
        ssize_t w = cki_sys_write(s->fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return cki_fail(s->ctx, CK_EIO, "%s: write failed: %s", s->path, strerror(errno));
        }
        p += w;
        n -= (size_t)w;
    }
    return CK_OK;
}

/* Once KICK bytes have reached the file since the last time, start their
 * writeback (sync_file_range does not wait for it): the disk writes while
 * the next bytes are read and converted, so the fsync at commit finds little
 * left to do, and dirty pages stay few. Advisory: errors surface at fsync. */
static void kick(cki_sink *s)
{
    uint64_t at = s->pos - s->buf_len;
    if (s->ext) return;
    if (at - s->kicked < KICK) return;
#ifndef __EMSCRIPTEN__ /* the web build writes through callbacks, never files */
    sync_file_range(s->fd, (off_t)s->kicked, (off_t)(at - s->kicked), SYNC_FILE_RANGE_WRITE);
#endif
    s->kicked = at;
}

static ck_status flush(cki_sink *s)
{
    ck_status st;
    if (!s->buf_len) return CK_OK;
    st = write_all(s, s->buf, s->buf_len);
    s->buf_len = 0;
    if (!st) kick(s);
    return st;
}

ck_status cki_sink_write(cki_sink *s, const void *p, size_t n)
{
    const unsigned char *b = p;
    ck_status st;
    uint64_t np;
    if (cki_add_u64(&np, s->pos, n))
        return cki_fail(s->ctx, CK_EIO, "%s: output size overflows", s->path);
    if (n >= SINK_BUF) {
        if ((st = flush(s))) return st;
        if ((st = write_all(s, b, n))) return st;
        s->pos = np;
        kick(s);
        return CK_OK;
    }
    if (SINK_BUF - s->buf_len < n && (st = flush(s))) return st;
    memcpy(s->buf + s->buf_len, b, n);
    s->buf_len += n;
    s->pos = np;
    return CK_OK;
}

ck_status cki_sink_zeros(cki_sink *s, uint64_t n)
{
    static const unsigned char zero[4096];
    while (n) {
        size_t k = n > sizeof zero ? sizeof zero : (size_t)n;
        ck_status st = cki_sink_write(s, zero, k);
        if (st) return st;
        n -= k;
    }
    return CK_OK;
}

ck_status cki_sink_pwrite(cki_sink *s, uint64_t off, const void *p, size_t n)
{
    ck_status st;
    const unsigned char *b = p;
    if (cki_out_of(off, n, s->pos))
        return cki_fail(s->ctx, CK_EARG, "%s: patch past the bytes written", s->path);
    if ((st = flush(s))) return st;
    if (s->ext) {
        int rc = s->ctx->out.write(s->ctx->out.user, s->ext, off, b, n);
        if (rc != 0)
            return cki_fail(s->ctx, CK_EIO, "%s: write failed (callback returned %d)", s->path,
                            rc);
        return CK_OK;
    }
    while (n) {
        ssize_t w = cki_sys_pwrite(s->fd, b, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return cki_fail(s->ctx, CK_EIO, "%s: write failed: %s", s->path, strerror(errno));
        }
        b += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return CK_OK;
}

ck_status cki_sink_copy(cki_sink *s, const cki_source *src, uint64_t off, uint64_t len)
{
    ck_status st;
    if (cki_out_of(off, len, src->len))
        return cki_fail(s->ctx, CK_EARG, "%s: copy range outside the input", src->path);
    if (len >= (1u << 20) && src->fd >= 0 && !s->ext) {
        int64_t in_off = (int64_t)off;
        uint64_t left = len;
        if ((st = flush(s))) return st;
        while (left) {
            size_t want = left > (1ull << 30) ? (size_t)1 << 30 : (size_t)left;
            ssize_t w = cki_sys_copy_file_range(src->fd, &in_off, s->fd, want);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0 && (errno == ENOSPC || errno == EFBIG || errno == EIO ||
                          errno == EDQUOT))
                return cki_fail(s->ctx, CK_EIO, "%s: write failed: %s", s->path,
                                strerror(errno));
            if (w <= 0) break; /* EXDEV, ENOSYS, EINVAL, ...: fall back to plain writes */
            left -= (uint64_t)w;
            s->pos += (uint64_t)w;
            kick(s);
        }
        off = (uint64_t)in_off;
        len = left;
        if (!len) return CK_OK;
    }
    if (off + len > src->view_len) { /* a web window: through a buffer */
        uint8_t *tmp = cki_malloc(s->ctx, SINK_BUF);
        if (!tmp) return CK_ENOMEM;
        st = CK_OK;
        while (len) {
            size_t k = len > SINK_BUF ? SINK_BUF : (size_t)len;
            if ((st = cki_source_pread(s->ctx, src, off, tmp, k)) ||
                (st = cki_sink_write(s, tmp, k)))
                break;
            off += k;
            len -= k;
        }
        cki_free(s->ctx, tmp);
        return st;
    }
    while (len) {
        size_t k = len > (64u << 20) ? (64u << 20) : (size_t)len;
        if ((st = cki_sink_write(s, src->base + off, k))) return st;
        cki_source_release(src, off, k);
        off += k;
        len -= k;
    }
    return CK_OK;
}

uint64_t cki_sink_pos(const cki_sink *s)
{
    return s->pos;
}

const char *cki_sink_path(const cki_sink *s)
{
    return s->path;
}

ck_status cki_sink_sync(cki_sink *s)
{
    ck_status st = flush(s);
    if (s->ext) return st;
    if (!st && cki_sys_fsync(s->fd) != 0)
        st = cki_fail(s->ctx, CK_EIO, "%s: fsync failed: %s", s->path, strerror(errno));
    return st;
}

ck_status cki_sink_commit(cki_sink *s)
{
    ck_status st = flush(s);
    if (s->ext) {
        int rc;
        if (st) {
            s->ctx->out.abort(s->ctx->out.user, s->ext);
        } else if ((rc = s->ctx->out.commit(s->ctx->out.user, s->ext)) != 0) {
            st = cki_fail(s->ctx, CK_EIO, "%s: cannot complete the output (callback returned %d)",
                          s->path, rc);
        }
        sink_free(s);
        return st;
    }
    if (!st && cki_sys_fsync(s->fd) != 0)
        st = cki_fail(s->ctx, CK_EIO, "%s: fsync failed: %s", s->path, strerror(errno));
    if (close(s->fd) != 0 && !st)
        st = cki_fail(s->ctx, CK_EIO, "%s: close failed: %s", s->path, strerror(errno));
    s->fd = -1;
    if (!st && cki_sys_rename(s->tmp, s->path) != 0)
        st = cki_fail(s->ctx, CK_EIO, "%s: rename from temporary file failed: %s", s->path,
                      strerror(errno));
    if (st) {
        unlink(s->tmp);
        live_del(s->slot);
        sink_free(s);
        return st;
    }
    live_del(s->slot);
    {
        /* make the rename durable */
        const char *base = cki_basename(s->path);
        size_t dl = (size_t)(base - s->path);
        char *dir = cki_strndup(s->ctx, dl ? s->path : ".", dl ? dl : 1);
        if (dir) {
            int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (dfd >= 0) {
                fsync(dfd);
                close(dfd);
            }
            cki_free(s->ctx, dir);
        }
    }
    sink_free(s);
    return CK_OK;
}

void cki_sink_abort(cki_sink *s)
{
    if (!s) return;
    if (s->ext) {
        s->ctx->out.abort(s->ctx->out.user, s->ext);
        sink_free(s);
        return;
    }
    if (s->fd >= 0) close(s->fd);
    unlink(s->tmp);
    live_del(s->slot);
    sink_free(s);
}
