/*
 * fuzz_gguf.c -- libFuzzer target for the GGUF reader: the input is a whole
 * file, opened from memory with the driver's probe and read. An accepted file
 * keeps the reader's promises: every tensor lies inside the input, reads whole
 * as its own dtype (the zero-copy bytes), and reads as F32 when it is a float
 * or a decodable ggml type; the values document names the reader; every
 * metadata entry has a type.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "formats/format.h"

extern const cki_format cki_fmt_gguf;

#define CAP (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_source *src;
    if (!ctx) return 0;
    if (cki_model_new(ctx, "fuzz.gguf", &m) ||
        cki_source_from_memory(ctx, "fuzz.gguf", data, size, &src) ||
        cki_model_add_source(m, src))
        goto out;
    m->format_name = "gguf";
    (void)cki_fmt_gguf.probe(src);
    if (cki_fmt_gguf.read(m, src, NULL) == CK_OK) {
        if (!strstr(ck_model_values_json(m), "\"gguf\"")) abort();
        for (size_t i = 0; i < m->meta_count; i++)
            if (!ck_model_meta_type(m, i)) abort();
        for (size_t i = 0; i < m->count; i++) {
            const cki_tensor *t = &m->tensors[i];
            uint8_t *buf;
            if (t->storage->data < data || t->storage->data + t->storage->len > data + size)
                abort();
            if (t->nbytes > CAP) continue;
            buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
            if (!buf) abort();
            if (cki_tensor_read(ctx, t, 0, t->numel, CK_DT_KEEP, buf, (size_t)t->nbytes, NULL))
                abort();
            if (!t->storage->big_endian && t->nbytes && memcmp(buf, t->storage->data, t->nbytes))
                abort();
            free(buf);
            if ((ck_dtype_can_cast(t->dtype) && cki_dtype_size(t->dtype)) ||
                ck_dtype_can_dequantize(t->dtype)) {
                float *f = malloc(t->numel ? (size_t)t->numel * 4 : 4);
                if (!f) abort();
                if (t->numel <= CAP / 4 &&
                    cki_tensor_read(ctx, t, 0, t->numel, CK_DT_F32, f, (size_t)t->numel * 4, NULL))
                    abort();
                free(f);
            }
        }
    }
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
    return 0;
}
