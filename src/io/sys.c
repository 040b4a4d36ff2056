/*
 * sys.c -- the system-call table with fault hooks (see sys.h). Each hook is a
 * call counter per operation; when the counter reaches the armed N the call
 * fails once with a plausible errno and the real system call is not made.
 * ck_debug_faults_from_env is the public door to the same table for the CLI
 * tests (the CLI may use only the public API).
 */
#include "sys.h"

#include "ckptkit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static unsigned long fail_at[CKI_SYS_OP_COUNT];
static unsigned long calls[CKI_SYS_OP_COUNT];

void cki_sys_fail_nth(cki_sys_op op, unsigned long n)
{
    if (op >= CKI_SYS_OP_COUNT) return;
    calls[op] = 0;
    fail_at[op] = n;
}

void cki_sys_reset(void)
{
    memset(fail_at, 0, sizeof fail_at);
    memset(calls, 0, sizeof calls);
}

void cki_sys_from_env(void)
{
    static const char *names[CKI_SYS_OP_COUNT] = {"write", "fsync", "rename", "open", "alloc"};
    const char *env = getenv("CKPTKIT_FAULT");
    while (env && *env) {
        for (int op = 0; op < CKI_SYS_OP_COUNT; op++) {
            size_t n = strlen(names[op]);
            if (strncmp(env, names[op], n) == 0 && env[n] == ':') {
                cki_sys_fail_nth((cki_sys_op)op, strtoul(env + n + 1, NULL, 10));
                break;
            }
        }
        env = strchr(env, ',');
        if (env) env++;
    }
}

static int hit(cki_sys_op op)
{
    if (!fail_at[op]) return 0;
    return ++calls[op] == fail_at[op];
}

ssize_t cki_sys_write(int fd, const void *p, size_t n)
{
    if (hit(CKI_SYS_WRITE)) { errno = ENOSPC; return -1; }
    return write(fd, p, n);
}

ssize_t cki_sys_pwrite(int fd, const void *p, size_t n, off_t off)
{
    if (hit(CKI_SYS_WRITE)) { errno = ENOSPC; return -1; }
#ifdef __EMSCRIPTEN__ /* 3.1.6's pwrite drops the offset's high half; the web build's
                       * outputs go through callbacks (ck_ctx_set_output) instead */
    errno = ENOSYS;
    return -1;
#else
    return pwrite(fd, p, n, off);
#endif
}

int cki_sys_fsync(int fd)
{
    if (hit(CKI_SYS_FSYNC)) { errno = EIO; return -1; }
    return fsync(fd);
}

int cki_sys_rename(const char *from, const char *to)
{
    if (hit(CKI_SYS_RENAME)) { errno = EIO; return -1; }
    return rename(from, to);
}

int cki_sys_open(const char *path, int flags, int mode)
{
    if (hit(CKI_SYS_OPEN)) { errno = EIO; return -1; }
    return open(path, flags, mode);
}

int cki_sys_mkostemp(char *tmpl, int flags)
{
    if (hit(CKI_SYS_OPEN)) { errno = EIO; return -1; }
    return mkostemp(tmpl, flags);
}

ssize_t cki_sys_copy_file_range(int in, int64_t *in_off, int out, size_t n)
{
#ifdef __EMSCRIPTEN__ /* not in emscripten's libc: callers fall back to plain writes */
    errno = ENOSYS;
    return -1;
#else
    loff_t off = (loff_t)*in_off;
    ssize_t w;
    if (hit(CKI_SYS_WRITE)) { errno = ENOSPC; return -1; }
    w = copy_file_range(in, &off, out, NULL, n, 0);
    *in_off = (int64_t)off;
    return w;
#endif
}

void ck_debug_faults_from_env(void)
{
    cki_sys_from_env();
}

int cki_sys_alloc_should_fail(void)
{
    return hit(CKI_SYS_ALLOC);
}
