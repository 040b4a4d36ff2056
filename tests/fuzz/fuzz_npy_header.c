/*
 * fuzz_npy_header.c -- libFuzzer target for the .npy preamble parser
 * (src/formats/npy.c). The input is the start of an .npy file. Promises:
 *  - a failure leaves one non-empty line naming the file first;
 *  - an accepted header lies inside the input (data_off <= size), has at
 *    most CKI_MAX_DIMS non-negative dimensions whose product is numel, and a
 *    numeric dtype whose nbytes is numel x its width; an unsupported or
 *    object dtype says why;
 *  - a numeric C-order header written back by cki_npy_write_preamble (with
 *    the descr ckptkit writes for the dtype) parses to the same dtype and
 *    shape, and its data starts on a multiple of 64.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/npy.h"

static void check(int ok)
{
    if (!ok) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_npy h;
    ck_status st;
    if (!ctx) return 0;
    st = cki_npy_parse(ctx, "fuzz.npy", NULL, data, size, &h);
    if (st) {
        const char *msg = ck_errmsg(ctx);
        check(ck_last_status(ctx) == st && msg[0] && !strchr(msg, '\n'));
        check(st == CK_ENOMEM || !strncmp(msg, "fuzz.npy: ", 10));
    } else {
        uint64_t numel = 1;
        check(h.data_off <= size && h.ndim >= 0 && h.ndim <= CKI_MAX_DIMS);
        for (int d = 0; d < h.ndim; d++) {
            check(h.shape[d] >= 0);
            numel *= (uint64_t)h.shape[d];
        }
        check(numel == h.numel);
        if (h.kind == CKI_NPY_NUMERIC) {
            int ml;
            const char *descr = cki_npy_descr(h.dtype, &ml);
            check(h.nbytes == h.numel * cki_dtype_size(h.dtype));
            if (descr && !ml) {
                cki_buf b;
                cki_npy back;
                cki_buf_init(&b, ctx, 0);
                check(cki_npy_write_preamble(ctx, descr, h.ndim, h.shape, &b) == CK_OK);
                check(b.len % 64 == 0);
                check(cki_npy_parse(ctx, "back.npy", NULL, (const uint8_t *)b.p, b.len, &back) ==
                      CK_OK);
                check(back.dtype == h.dtype && back.ndim == h.ndim && !back.fortran &&
                      !back.big_endian && back.data_off == b.len);
                check(!memcmp(back.shape, h.shape, sizeof h.shape[0] * (size_t)h.ndim));
                cki_buf_free(&b);
            }
        } else {
            check(h.why != NULL);
        }
    }
    ck_ctx_free(ctx);
    return 0;
}
