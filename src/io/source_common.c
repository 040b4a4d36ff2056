/*
 * source_common.c -- what a source does whatever way its bytes are reached
 * (mapped in source.c, read into the heap in source_web.c): opening the file
 * with its checks, and a source over bytes already in memory.
 */
#include "source.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

ck_status cki_source_open(ck_ctx *ctx, const char *path, cki_source **out)
{
    return cki_source_open_ex(ctx, path, 0, out);
}

ck_status cki_source_open_file(ck_ctx *ctx, const char *path, cki_source **out)
{
    struct stat st;
    cki_source *s;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cki_fail(ctx, CK_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return cki_fail(ctx, CK_EIO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        return cki_fail(ctx, CK_EFORMAT, "%s: is a directory", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return cki_fail(ctx, CK_EFORMAT, "%s: not a regular file", path);
    }
    s = cki_calloc(ctx, 1, sizeof *s);
    if (!s) { close(fd); return CK_ENOMEM; }
    s->path = cki_strdup(ctx, path);
    if (!s->path) { cki_free(ctx, s); close(fd); return CK_ENOMEM; }
    s->fd = fd;
    s->dev = st.st_dev;
    s->ino = st.st_ino;
    s->len = (uint64_t)st.st_size;
    s->view_len = s->len;
    *out = s;
    return CK_OK;
}

ck_status cki_source_from_memory(ck_ctx *ctx, const char *name, const void *p, uint64_t len,
                                 cki_source **out)
{
    cki_source *s = cki_calloc(ctx, 1, sizeof *s);
    if (!s) return CK_ENOMEM;
    s->path = cki_strdup(ctx, name);
    if (!s->path) { cki_free(ctx, s); return CK_ENOMEM; }
    s->fd = -1;
    s->base = len ? p : NULL;
    s->len = len;
    s->view_len = len;
    *out = s;
    return CK_OK;
}
