/*
 * tar.h -- a minimal reader for POSIX (ustar) and GNU tar archives, enough
 * for PyTorch's 0.1-era tar checkpoints (members `sys_info`, `pickle`,
 * `storages`, `tensors`).
 *
 * Only regular files become members; directories, links and other types are
 * skipped, and so are pax ('x', 'g') and GNU long-name ('L', 'K') records
 * with their payloads (torch's member names are short and plain). Member
 * names are the ustar prefix + name. Sizes may be octal or GNU base-256.
 * Every header's checksum is verified, every member must fit in the file,
 * and a name may appear only once. Reading stops at the first all-zero block
 * or at the end of the data.
 */
#ifndef CKI_TAR_H
#define CKI_TAR_H

#include "../common/cki.h"

#define CKI_TAR_BLOCK 512u

typedef struct cki_tar_member {
    const char *name; /* NUL-terminated (the tar's arena) */
    uint64_t off;     /* absolute offset of the member's bytes */
    uint64_t len;
} cki_tar_member;

typedef struct cki_tar {
    ck_ctx *ctx;
    const char *file;
    const uint8_t *base;
    uint64_t len;
    cki_tar_member *members; /* cki_malloc'd, archive order */
    size_t count, cap;
    cki_map index;
    cki_arena arena;
} cki_tar;

/* 1 if the first block of P looks like a ustar/GNU header with a valid
 * checksum ('ustar' at byte 257). Reads at most 512 bytes. */
int cki_tar_sniff(const uint8_t *p, uint64_t len);

/* Indexes the archive in P[0..LEN). On failure T is left closed. */
ck_status cki_tar_open(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len, cki_tar *t);
void cki_tar_close(cki_tar *t);
/* The member named NAME, or NULL. */
const cki_tar_member *cki_tar_find(const cki_tar *t, const char *name);

#endif
