/*
 * sys.h -- the system calls ckptkit's output path makes, behind one table so
 * that tests can fail the Nth write, fsync, rename or allocation and check
 * that nothing is left behind (the sqlite way). Production code always calls
 * through cki_sys_*; the hooks cost one branch.
 */
#ifndef CKI_SYS_H
#define CKI_SYS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef enum cki_sys_op {
    CKI_SYS_WRITE,
    CKI_SYS_FSYNC,
    CKI_SYS_RENAME,
    CKI_SYS_OPEN,
    CKI_SYS_ALLOC,
    CKI_SYS_OP_COUNT
} cki_sys_op;

/* Makes the Nth future call of OP fail (1 = the next one); 0 disarms.
 * Failing calls set errno to EIO (ENOSPC for write, ENOMEM for alloc). */
void cki_sys_fail_nth(cki_sys_op op, unsigned long n);
/* Disarms every hook and resets the counters. */
void cki_sys_reset(void);
/* Reads CKPTKIT_FAULT="write:3,fsync:1" (test builds and CLI tests). */
void cki_sys_from_env(void);

ssize_t cki_sys_write(int fd, const void *p, size_t n);
ssize_t cki_sys_pwrite(int fd, const void *p, size_t n, off_t off);
int cki_sys_fsync(int fd);
int cki_sys_rename(const char *from, const char *to);
int cki_sys_open(const char *path, int flags, int mode);
/* mkostemp(TMPL, FLAGS); counts as an open for the hooks. */
int cki_sys_mkostemp(char *tmpl, int flags);
/* copy_file_range(IN, &IN_OFF, OUT, NULL, N, 0); counts as a write for the
 * hooks (a failing call sets errno to ENOSPC). */
ssize_t cki_sys_copy_file_range(int in, int64_t *in_off, int out, size_t n);
/* Nonzero if the allocation hook says this allocation must fail. */
int cki_sys_alloc_should_fail(void);

#endif
