/*
 * npy.h -- the NumPy .npy preamble: a strict parser of its header (shared by
 * the npy and npz readers, the scanner and the fuzz target) and the header
 * writer used by the npy and npz writers.
 *
 * Layout (FORMATS.md 8):
 *   "\x93NUMPY" u8 major u8 minor          1.0 | 2.0 | 3.0
 *   header length                          v1: u16 LE; v2, v3: u32 LE
 *   header                                 a Python dict literal, e.g.
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }  + spaces + '\n'
 *   data                                   numel x itemsize bytes
 *
 * The header is parsed as a tiny literal grammar, never evaluated: strings in
 * single or double quotes, non-negative decimal integers (a Python 2 'L'
 * suffix allowed), True/False/None, tuples and lists. The dict must have
 * exactly the keys descr, fortran_order and shape (any order), each once.
 * descr is a type string or a list of fields (a structured dtype).
 */
#ifndef CKI_NPY_H
#define CKI_NPY_H

#include "../common/cki.h"
#include "../tensor/tensor.h"

/* The largest header accepted (numpy itself stops at 10,000 characters
 * unless pickles are allowed; structured dtypes can be longer). */
#define CKI_NPY_MAX_HEADER (1u << 20)

typedef enum cki_npy_kind {
    CKI_NPY_NUMERIC,     /* dtype is a ckptkit dtype: a tensor */
    CKI_NPY_OBJECT,      /* |O (or a structured dtype with an object field): a pickle */
    CKI_NPY_UNSUPPORTED  /* strings, void, datetime, structured, long double, ... */
} cki_npy_kind;

typedef struct cki_npy {
    unsigned major, minor;
    uint64_t data_off;   /* bytes of the preamble: magic to the header's last byte */
    char descr[80];      /* descr as written (truncated with "..." for messages) */
    cki_npy_kind kind;
    const char *why;     /* UNSUPPORTED/OBJECT: what it is ("unicode string dtype") */
    ck_dtype dtype;      /* NUMERIC */
    int big_endian;      /* NUMERIC, multi-byte, stored big-endian */
    int fortran;         /* fortran_order: True */
    int ndim;
    int64_t shape[CKI_MAX_DIMS];
    uint64_t numel;      /* product of shape (1 for a 0-d array) */
    uint64_t nbytes;     /* NUMERIC: numel x itemsize */
} cki_npy;

/* From the first bytes of a .npy stream (at least 12, or the whole thing when
 * shorter): the preamble's length (magic, version, length field and header),
 * checked against CKI_NPY_MAX_HEADER. FILE and WHAT name it in messages
 * ("m.npz", "member 'w.npy'"; WHAT may be NULL). */
ck_status cki_npy_preamble_len(ck_ctx *ctx, const char *file, const char *what, const uint8_t *p,
                               uint64_t len, uint64_t *out);

/* Parses the preamble in P[0..LEN) (LEN must cover it; more is fine). */
ck_status cki_npy_parse(ck_ctx *ctx, const char *file, const char *what, const uint8_t *p,
                        uint64_t len, cki_npy *out);

/* The type string ckptkit writes for DT ("<f4", "|b1"); for dtypes numpy has
 * no spelling of, what ml_dtypes' arrays save as ("<V2" for bfloat16, "<V1"
 * for float8 -- also for float8_e5m2, which ml_dtypes saves as "<f1", a
 * descr np.load refuses) and *ML is set to 1. NULL when there is none (F4, F6). */
const char *cki_npy_descr(ck_dtype dt, int *ml);

/* Appends the whole preamble for an array of DESCR and SHAPE in C order to
 * OUT: version 1.0, or 2.0 when the header passes 65535 bytes; padded with
 * spaces and a newline so that the data starts at a multiple of 64. */
ck_status cki_npy_write_preamble(ck_ctx *ctx, const char *descr, int ndim, const int64_t *shape,
                                 cki_buf *out);

#endif

/* ---- shared by the npy and npz readers (fmt_npy.c) -------------------------- */

/* Whether the array described by H (in FILE, WHAT names it: "array", "member
 * 'w.npy'") becomes a tensor. *KEEP = 1: add it. *KEEP = 0: left out on
 * request (warned, counted in the model's omitted_count). Otherwise fails:
 * object arrays with CK_EUNSAFE (unless opts->allow_unsafe), other dtypes
 * ckptkit cannot hold with CK_EUNSUPPORTED (unless opts->skip_unsupported),
 * and data shorter than the header says (AVAIL: bytes after the preamble)
 * with CK_EFORMAT. More bytes than needed are ignored with a warning. */
ck_status cki_npy_admit(ck_model *m, const ck_open_opts *opts, const char *file,
                        const char *what, const cki_npy *h, uint64_t avail, int *keep);
/* Fails unless every byte of P[0..N) is 0 or 1 (a bool array's values). */
ck_status cki_npy_check_bools(ck_ctx *ctx, const char *file, const char *what, const uint8_t *p,
                              uint64_t n);
/* Adds H's array as tensor NAME[0..NAME_LEN) over CS: C order is dense,
 * Fortran order the column-major view of the same bytes (no copy). */
ck_status cki_npy_add(ck_model *m, const char *file, const char *name, size_t name_len,
                      const cki_npy *h, cki_storage *cs);
