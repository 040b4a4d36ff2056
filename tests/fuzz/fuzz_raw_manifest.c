/*
 * fuzz_raw_manifest.c -- libFuzzer target for the raw format's manifest
 * reader: the input is the manifest, checked against a fixed 4096-byte data
 * buffer; every tensor it accepts is read back whole. Accepted tensors must
 * lie inside the data and be pairwise disjoint (when non-empty).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/fmt_raw.h"

#define DATA_LEN 4096

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    static uint8_t bytes[DATA_LEN];
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_source *data, *man;
    if (!ctx) return 0;
    for (size_t i = 0; i < DATA_LEN; i++) bytes[i] = (uint8_t)(i * 13 + 5);
    if (cki_model_new(ctx, "data.raw", &m) ||
        cki_source_from_memory(ctx, "data.raw", bytes, DATA_LEN, &data) ||
        cki_model_add_source(m, data) ||
        cki_source_from_memory(ctx, "data.raw.json", in, size, &man) ||
        cki_model_add_source(m, man))
        goto out;
    if (cki_raw_read_manifest(m, data, man) == CK_OK) {
        for (size_t i = 0; i < m->count; i++) {
            const cki_tensor *t = &m->tensors[i];
            uint64_t a0 = t->storage->file_off, a1 = a0 + t->nbytes;
            uint8_t *buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
            if (!buf || a1 > DATA_LEN) abort();
            if (cki_tensor_read(ctx, t, 0, t->numel, CK_DT_KEEP, buf, (size_t)t->nbytes, NULL))
                abort();
            free(buf);
            for (size_t j = 0; j < i && t->nbytes; j++) {
                const cki_tensor *u = &m->tensors[j];
                uint64_t b0 = u->storage->file_off, b1 = b0 + u->nbytes;
                if (u->nbytes && a0 < b1 && b0 < a1) abort();
            }
        }
    }
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
    return 0;
}
