/*
 * fuzz_zip.c -- libFuzzer target for the zip reader: the input is a whole
 * file; when its directory is accepted, every record is read (CRC checked)
 * and peeked at. An accepted archive must keep the reader's promises: every
 * record's bytes lie inside the input before the central directory, reads
 * return exactly the directory's size, a peek agrees with the full read, and
 * every name is found again through the index.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "container/zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_zip z;
    if (!ctx) return 0;
    ck_ctx_set_limit(ctx, CK_LIMIT_INFLATE_BYTES, 16u << 20);
    if (cki_zip_open(ctx, "fuzz.zip", data, size, &z) == CK_OK) {
        for (size_t i = 0; i < z.count; i++) {
            const cki_zip_entry *e = &z.entries[i];
            const uint8_t *d;
            uint64_t len;
            uint8_t *owned = NULL, head[16];
            size_t got = 0;
            int peeked;
            if (cki_zip_find(&z, e->name, e->name_len) != e) abort();
            if (e->data_off + e->csize > z.cd_off || z.cd_off + z.cd_size > size) abort();
            peeked = cki_zip_peek(&z, e, head, sizeof head, &got) == CK_OK;
            if (cki_zip_read(&z, e, 1, &d, &len, &owned) == CK_OK) {
                if (len != e->usize) abort();
                if (peeked && (got != (len < 16 ? len : 16) || memcmp(head, d, got))) abort();
                if (!owned && (d < data || d + len > data + size)) abort();
            }
            cki_free(ctx, owned);
        }
        cki_zip_close(&z);
    }
    ck_ctx_free(ctx);
    return 0;
}
