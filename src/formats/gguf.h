/*
 * gguf.h -- what the GGUF reader (fmt_gguf.c) and writer (gguf_write.c)
 * share: the value types, a byte-order-aware cursor over validated bytes, and
 * the typed key/value list a GGUF model keeps so that GGUF -> GGUF carries
 * every key with its type.
 */
#ifndef CKI_GGUF_H
#define CKI_GGUF_H

#include "format.h"

enum {
    GGUF_U8 = 0, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL,
    GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64, GGUF_TYPE_COUNT
};

#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MAX_NAME 63 /* ggml's GGML_MAX_NAME (64) less the NUL */
#define GGUF_MAX_DIMS 4  /* ggml's GGML_MAX_DIMS */
#define GGUF_MAX_DEPTH 8 /* nested arrays */

/* "UINT32", "STRING", ...; "?" for an unknown type. */
const char *cki_gguf_type_name(uint32_t t);
/* Bytes of one fixed-size value of type T; 0 for STRING, ARRAY and unknown. */
unsigned cki_gguf_type_size(uint32_t t);

/* One metadata entry as found in the file: RAW points at its value (after the
 * type field) in the mapped input, in the file's byte order and version. */
typedef struct cki_gguf_kv {
    const char *key; /* model arena, NUL-terminated */
    uint32_t type;
    uint32_t elem_type; /* ARRAY: element type */
    uint64_t count;     /* ARRAY: element count */
    const uint8_t *raw;
    uint64_t raw_len;
} cki_gguf_kv;

/* The driver data of a model read from GGUF (ck_model.driver_data when
 * ck_model.format_name is "gguf"): the first file's header facts and keys. */
typedef struct cki_gguf_info {
    uint32_t version;   /* 1, 2 or 3 */
    int big_endian;
    uint32_t alignment;
    uint32_t splits;    /* files read (1 unless split) */
    cki_gguf_kv *kv;
    size_t kv_count;
} cki_gguf_info;

/* The info of M if it was read from GGUF, else NULL. */
const cki_gguf_info *cki_gguf_info_of(const ck_model *m);

/* The GGUF writer (gguf_write.c). */
ck_status cki_gguf_write(cki_write_job *job);

/* A reading cursor over bytes already validated by the reader. */
typedef struct cki_gguf_rd {
    const uint8_t *p;
    int be;       /* big-endian */
    int v1;       /* version 1: u32 string lengths and array counts */
} cki_gguf_rd;

static inline uint64_t cki_gguf_ld(cki_gguf_rd *r, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned k = r->be ? i : n - 1 - i;
        v = v << 8 | r->p[k];
    }
    r->p += n;
    return v;
}
static inline uint64_t cki_gguf_ld_len(cki_gguf_rd *r)
{
    return cki_gguf_ld(r, r->v1 ? 4 : 8);
}

#endif
