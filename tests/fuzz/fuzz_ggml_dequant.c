/*
 * fuzz_ggml_dequant.c -- libFuzzer target for ggml's block decoders and the
 * reference encoders. Byte 0 picks a type; the rest is whole blocks of it
 * (any bytes: decoders must accept every bit pattern). Every decodable type
 * decodes without touching memory past its blocks; decoding is deterministic;
 * for the encodable ones, finite decoded values are encoded again (no fault
 * and no undefined behaviour on any finite input, however extreme: UBSan
 * checks the float-to-int conversions) and decoded; a block holding NaN or
 * Inf must be refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/ggml_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_dtype dt;
    unsigned bb, blk;
    size_t nb;
    float *a, *b;
    uint8_t *q;
    if (size < 1) return 0;
    dt = (ck_dtype)(CK_DT_Q4_0 + data[0] % (CK_DT_COUNT - CK_DT_Q4_0));
    if (!cki_ggml_can_dequant(dt)) return 0;
    blk = ck_dtype_block(dt, &bb);
    nb = (size - 1) / bb;
    if (nb > 64) nb = 64;
    if (!nb) return 0;
    a = malloc(nb * blk * sizeof *a);
    b = malloc(nb * blk * sizeof *b);
    q = malloc(nb * bb);
    if (!a || !b || !q) abort();
    {
        /* exactly the blocks, in their own allocation, so ASan sees overreads */
        uint8_t *in = malloc(nb * bb);
        if (!in) abort();
        memcpy(in, data + 1, nb * bb);
        cki_ggml_dequant(dt, in, nb, a);
        cki_ggml_dequant(dt, in, nb, b);
        free(in);
    }
    if (memcmp(a, b, nb * blk * sizeof *a)) abort();
    if (cki_ggml_can_quant(dt)) {
        int finite = 1;
        for (size_t i = 0; i < nb * blk; i++) finite &= isfinite(a[i]) != 0;
        if (finite) {
            if (cki_ggml_quant(dt, a, nb, q) != -1) abort();
            cki_ggml_dequant(dt, q, nb, b);
        } else if (cki_ggml_quant(dt, a, nb, q) < 0) {
            abort(); /* a non-finite value must be reported */
        }
    }
    free(a);
    free(b);
    free(q);
    return 0;
}
