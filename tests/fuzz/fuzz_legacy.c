/*
 * fuzz_legacy.c -- libFuzzer target for the legacy torch stream (torch < 1.6,
 * _use_new_zipfile_serialization=False): PROTO 2 + LONG1 magic, then the
 * pickles protocol version, sys_info, the object and the storage-key list,
 * then per key an int64 element count and the elements.
 *
 * The input is the stream AFTER its 14-byte magic: the target puts the magic
 * in front, so no mutation is spent finding it and every input reaches the
 * layout (fuzz_torch, which reads any torch container, has to find it
 * first). An input that already starts with the magic (a whole legacy file,
 * as the replay's fixture folders hold) is taken as it is. The stream is
 * parsed and read as fuzz_torch_layout.h describes, with its promises
 * checked: storages inside the file and disjoint, the model's tensors
 * readable and consistent.
 */
#include "fuzz_torch_layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t n = sizeof cki_torch_legacy_magic;
    uint8_t *p;
    if (size >= n && !memcmp(data, cki_torch_legacy_magic, n)) n = 0;
    p = malloc(n + size ? n + size : 1);
    fz_check(p != NULL);
    memcpy(p, cki_torch_legacy_magic, n);
    if (size) memcpy(p + n, data, size);
    fz_check(cki_torch_sniff(p, n + size) == CKI_TORCH_LEGACY);
    fz_torch_layout("fuzz.pt", p, n + size, CKI_TORCH_LEGACY);
    free(p);
    return 0;
}
