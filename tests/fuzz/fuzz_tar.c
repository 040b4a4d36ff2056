/*
 * fuzz_tar.c -- libFuzzer target for the tar reader (src/container/tar.c)
 * and torch's 0.1-era tar layout on top of it.
 *
 * The input is a whole file. When cki_tar_open indexes it, the index must
 * keep the reader's promises: every member's bytes start on a 512-byte
 * block after its header and lie inside the input, members come in archive
 * order without overlapping, every name is NUL-terminated and found again
 * (as the same member) through cki_tar_find. A refused archive leaves a
 * one-line message naming the file. Then, when the input starts like a
 * torch tar, it is parsed and read as fuzz_torch_layout.h describes.
 */
#include "fuzz_torch_layout.h"

static void check_index(const cki_tar *t, size_t size)
{
    uint64_t prev_end = 0;
    for (size_t i = 0; i < t->count; i++) {
        const cki_tar_member *m = &t->members[i];
        uint64_t end;
        fz_check(m->name != NULL && cki_tar_find(t, m->name) == m);
        fz_check(m->off % CKI_TAR_BLOCK == 0 && m->off >= prev_end + CKI_TAR_BLOCK);
        fz_check(!cki_add_u64(&end, m->off, m->len) && end <= size);
        prev_end = end;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_tar t;
    ck_status st;
    if (!ctx) return 0;
    fz_grow_mem_limit(ctx, size);
    st = cki_tar_open(ctx, "fuzz.tar", data, size, &t);
    if (st == CK_OK) {
        check_index(&t, size);
        cki_tar_close(&t);
    } else {
        fz_check_message(ctx, st, "fuzz.tar");
    }
    fz_check(ctx->mem_used == 0);
    ck_ctx_free(ctx);
    if (cki_torch_sniff(data, size) == CKI_TORCH_TAR)
        fz_torch_layout("fuzz.tar", data, size, CKI_TORCH_TAR);
    return 0;
}
