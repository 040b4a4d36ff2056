/*
 * tensor.h -- the tensor model shared by every reader and writer.
 *
 * A storage is a run of bytes in a mapped file (or an owned buffer, e.g. an
 * inflated zip member) holding elements of one dtype, possibly big-endian.
 * A tensor is a view of a storage: dtype, shape (outermost first), strides and
 * offset in elements (torch semantics; dense row-major when strides == NULL).
 * Readers fill these; writers pull values through cki_tensor_read, which
 * gathers strided views, swaps bytes, applies conj/neg and casts.
 */
#ifndef CKI_TENSOR_H
#define CKI_TENSOR_H

#include "../common/cki.h"
#include "../io/source.h"

#define CKI_MAX_DIMS 64

typedef struct cki_dtype_info {
    const char *name;
    unsigned bits;
    char kind; /* 'B' bool, 'U' unsigned, 'I' signed, 'F' float, 'C' complex,
                * 'Q' ggml block-quantised */
    unsigned block;       /* elements per block: 1, or ggml's 32..256 */
    unsigned block_bytes; /* bytes per block (0 for sub-byte dtypes) */
    int ggml_id;          /* ggml type id of a 'Q' dtype, else -1 */
} cki_dtype_info;

/* NULL for an invalid dtype. */
const cki_dtype_info *cki_dtype_info_of(ck_dtype dt);
/* Exact safetensors spelling ("F32"); returns CK_OK or CK_EARG. */
ck_status cki_dtype_from_st_name(const char *s, size_t n, ck_dtype *out);
/* Bytes per element for whole-byte dtypes; 0 for sub-byte ones. */
unsigned cki_dtype_size(ck_dtype dt);
/* Bytes of NUMEL elements (rounded up for sub-byte dtypes; whole blocks for
 * quantised ones); 1 on overflow or when NUMEL is not a whole number of blocks. */
int cki_dtype_nbytes(ck_dtype dt, uint64_t numel, uint64_t *out);
/* ggml type id <-> dtype (F32, F16, BF16, F64, I8..I64 and the 'Q' types);
 * 1 when there is none (retired or unknown ids). */
int cki_dtype_from_ggml(uint32_t id, ck_dtype *out);
int cki_dtype_to_ggml(ck_dtype dt, uint32_t *out);

/* Bytes produced on demand instead of mapped or owned (a deflated zip member
 * inflated as it is read): the storage's data is NULL and FN copies storage
 * bytes [off, off + len) into DST. Only dense views of such storages exist
 * (cki_tensor_validate refuses others). FREE (may be NULL) releases STATE
 * when the model closes. */
typedef struct cki_fetch {
    ck_status (*fn)(ck_ctx *ctx, void *state, uint64_t off, uint8_t *dst, size_t len);
    void (*free)(ck_ctx *ctx, void *state);
    void *state;
} cki_fetch;

typedef struct cki_storage {
    const cki_source *src; /* file the bytes live in, or NULL when owned */
    const uint8_t *data;   /* first byte; NULL when the bytes are read from SRC on
                            * demand (a web window over a large file) */
    uint64_t len;          /* bytes */
    uint64_t file_off;     /* offset of data in src (when src != NULL) */
    uint8_t *owned;        /* freed with the model, if not NULL */
    ck_dtype dtype;        /* element type of the bytes */
    uint8_t big_endian;    /* elements stored big-endian: swap on read */
    uint8_t crc_known;     /* expected CRC-32 of the bytes is known */
    uint8_t crc_checked;   /* CRC verified already */
    uint32_t crc;
    uint64_t id;           /* nonzero, unique within a model */
    const char *key;       /* torch storage key, for messages; may be NULL */
    cki_fetch fetch;       /* fetch.fn set: bytes come from fetch, data is NULL */
} cki_storage;

enum { CKI_T_CONJ = 1, CKI_T_NEG = 2 };

typedef struct cki_tensor {
    const char *name;
    ck_dtype dtype;
    int ndim;
    int64_t *shape;   /* ndim entries */
    int64_t *stride;  /* ndim entries, or NULL: dense row-major */
    uint64_t offset;  /* elements into the storage */
    uint64_t numel;
    uint64_t nbytes;  /* dense bytes */
    cki_storage *storage;
    unsigned flags;   /* CKI_T_CONJ, CKI_T_NEG */
} cki_tensor;

/* Checks a view against its storage: every index reachable through
 * shape/stride/offset lies inside the storage; fills numel and nbytes.
 * FILE names the input in the message. */
ck_status cki_tensor_validate(ck_ctx *ctx, const char *file, cki_tensor *t);
/* 1 if the tensor's elements are the dense run storage[offset .. offset+numel). */
int cki_tensor_is_dense(const cki_tensor *t);
/* The tensor's bytes in place when dense, little-endian, no flags; else NULL. */
const uint8_t *cki_tensor_bytes(const cki_tensor *t);

/* Reads elements [first, first+count) in row-major order as dtype AS
 * (CK_DT_KEEP: the tensor's dtype) into DST (DST_CAP bytes). Sub-byte dtypes
 * only as whole reads of their own dtype. STATS may be NULL. */
typedef struct cki_cast_stats {
    uint64_t overflow;  /* finite inputs that became +-Inf (or NaN for no-Inf types) */
    uint64_t underflow; /* nonzero inputs that became zero */
} cki_cast_stats;
ck_status cki_tensor_read(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t count,
                          ck_dtype as, void *dst, size_t dst_cap, cki_cast_stats *stats);

/* cki_tensor_read for block-quantised dtypes (tensor_blocks.c): FIRST and
 * COUNT whole blocks (COUNT may end at the tensor's end); a quantised tensor
 * read as itself (bytes), as a float dtype (dequantised), or a float tensor
 * read as a quantised dtype (quantised; NaN and Inf refused, naming the
 * element). */
ck_status cki_tensor_read_blocks(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t count,
                                 ck_dtype as, void *dst, size_t dst_cap);

#endif
