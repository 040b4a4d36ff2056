/*
 * fuzz_safetensors.c -- libFuzzer target for the safetensors reader: the
 * input is a whole file, opened from memory with the driver's probe and
 * read, then every tensor is read back whole (and, for castable floats, its
 * first elements as F32). An accepted file must satisfy the format's own
 * promise: tensors tile the data buffer exactly, so their byte counts sum to
 * the data length.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/format.h"

extern const cki_format cki_fmt_safetensors;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_source *src;
    if (!ctx) return 0;
    if (cki_model_new(ctx, "fuzz.safetensors", &m) ||
        cki_source_from_memory(ctx, "fuzz.safetensors", data, size, &src) ||
        cki_model_add_source(m, src))
        goto out;
    (void)cki_fmt_safetensors.probe(src);
    if (cki_fmt_safetensors.read(m, src, NULL) == CK_OK) {
        uint64_t total = 0, n = cki_ld_le64(data);
        for (size_t i = 0; i < m->count; i++) {
            const cki_tensor *t = &m->tensors[i];
            uint8_t *buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
            if (!buf) abort();
            if (cki_tensor_read(ctx, t, 0, t->numel, CK_DT_KEEP, buf, (size_t)t->nbytes, NULL))
                abort();
            if (t->nbytes && memcmp(buf, t->storage->data, (size_t)t->nbytes)) abort();
            free(buf);
            if (ck_dtype_can_cast(t->dtype) && cki_dtype_size(t->dtype)) {
                float f[64];
                uint64_t k = t->numel < 64 ? t->numel : 64;
                if (cki_tensor_read(ctx, t, 0, k, CK_DT_F32, f, sizeof f, NULL)) abort();
            }
            total += t->nbytes;
        }
        if (8 + n + total != size) abort();
    }
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
    return 0;
}
