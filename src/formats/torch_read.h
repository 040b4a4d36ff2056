/*
 * torch_read.h -- parsing a PyTorch checkpoint (zip, legacy stream or tar)
 * down to its object graph and the location of every storage, shared by the
 * "torch" reader (fmt_torch_read.c) and the scanner (api/scan.c), so that
 * what is loaded is exactly what was scanned.
 *
 *   zip     torch >= 1.6: records under one prefix folder (the first central
 *           directory name's folder): data.pkl, data/<key> (whole storages),
 *           byteorder ("little"/"big"; absent = little), version & co.
 *           (ignored). An archive with constants.pkl is TorchScript: refused.
 *   legacy  torch < 1.6 (_use_new_zipfile_serialization=False): pickles
 *           magic (LONG 0x1950a86a20f9469cfc6c), protocol version (1001),
 *           sys_info, the object, the storage-key list; then per key an
 *           int64 LE element count and count x element-size bytes,
 *           little-endian. Persistent ids may carry view metadata.
 *   tar     torch 0.1: members sys_info, storages (count, then per storage
 *           a (key, location, class) pickle, int64 count, bytes; then an
 *           optional list of views), tensors (optional: count, then per
 *           tensor a (key, storage key, class) pickle, int32 ndim, 4 pad
 *           bytes, ndim int64 sizes, ndim int64 strides, int64 offset) and
 *           pickle (the object; persistent ids are keys of those tables).
 */
#ifndef CKI_TORCH_READ_H
#define CKI_TORCH_READ_H

#include "../container/tar.h"
#include "../io/source.h"
#include "../container/zip.h"
#include "../pickle/torch_objects.h"

typedef enum cki_torch_kind {
    CKI_TORCH_NONE,
    CKI_TORCH_ZIP,
    CKI_TORCH_LEGACY,
    CKI_TORCH_TAR
} cki_torch_kind;

/* The legacy stream's first 14 bytes: PROTO 2, LONG1 of the magic number. */
extern const uint8_t cki_torch_legacy_magic[14];

/* Which torch container P[0..LEN) looks like, from its first bytes only
 * (zip: PK\3\4; legacy: the magic; tar: a ustar header). */
cki_torch_kind cki_torch_sniff(const uint8_t *p, uint64_t len);

/* Called after every pickle the parser runs (also for pickles whose value
 * is not needed, and for one that failed: then pk->root is NULL and the
 * globals are those met before the failure), with WHERE naming it and OFF
 * its start in the file (zip: 0, the start of the record; offsets of the
 * globals are relative to the same origin). A nonzero status stops the
 * parse. */
typedef ck_status (*cki_torch_visit_fn)(void *user, const char *where, uint64_t off,
                                        const cki_pickle *pk);

typedef struct cki_torch_file {
    ck_ctx *ctx;
    const char *file;
    const uint8_t *base;
    uint64_t len;
    cki_torch_kind kind;
    cki_arena arena;  /* pickle nodes (legacy, tar), tobjs, names */
    cki_arena desc;   /* zip: tensor and storage descriptions and the record prefix,
                       * which outlive cki_torch_drop_objects */
    const cki_source *src; /* the mapped file, when known (page release) */
    cki_arena *text;     /* cki_torch_parse_source's TEXT: where a zip's converted strings
                          * go (legacy and tar objects keep pointing into their graph) */
    cki_arena *pk_arena; /* where the machine puts its nodes when not ARENA (zip: a
                          * separate arena, freed once the graph is converted) */
    cki_trec rec;     /* storages table; the graph's memo */
    cki_tobj *root;
    const cki_pv *pv_root; /* the main pickle's value graph (in the arena) */
    const char *where; /* the main pickle's name */
    /* zip */
    cki_zip zip;
    int zip_open;
    const char *prefix; /* "archive" (no slash); arena */
    int big_endian;     /* byteorder record says "big" */
    uint8_t *pkl_owned; /* data.pkl when it had to be inflated */
    /* tar */
    cki_tar tar;
    int tar_open;
    cki_map tar_tensors; /* key -> index into tar_tensor_objs */
    cki_tobj **tar_tensor_objs;
    size_t tar_tensor_count;
    /* legacy, tar: end of the bytes the layout accounts for */
    uint64_t data_end;
} cki_torch_file;

/*
 * Parses P[0..LEN) (a mapped file named FILE) as KIND. Runs every pickle of
 * the format through the restricted machine (VISIT, if not NULL, sees each),
 * converts the object graph and locates every legacy/tar storage. Zip
 * storages are found by the reader (cki_torch_zip_storage). CHECK_CRC: also
 * check CRCs of the zip's pickle record (always done) -- data records are the
 * reader's business. On failure TF is closed.
 */
ck_status cki_torch_parse(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len,
                          cki_torch_kind kind, cki_torch_visit_fn visit, void *user,
                          cki_torch_file *tf);
/* The same for the whole of SRC, whose pages the zip path hands back to the
 * kernel once read (the central directory and local headers after the
 * archive is checked, data.pkl after the machine ran): a 100,000-tensor
 * file's headers then do not stay resident. */
/* TEXT (may be NULL): where a zip's converted strings are copied (the
 * reader passes its model's arena, so tensor names can be kept from there). */
ck_status cki_torch_parse_source(ck_ctx *ctx, const cki_source *src, cki_torch_kind kind,
                                 cki_torch_visit_fn visit, void *user, cki_arena *text,
                                 cki_torch_file *tf);
void cki_torch_close(cki_torch_file *tf);
/* A zip read by cki_torch_parse_source: frees the torch objects (ROOT and
 * everything reached from it, names included) and keeps the tensor and
 * storage descriptions they pointed to, for a reader that has taken what it
 * needs from the objects. ROOT becomes NULL. */
void cki_torch_drop_objects(cki_torch_file *tf);

/* The zip record holding storage S: "<prefix>/data/<key>", or NULL with a
 * message naming the tensor NAME. */
ck_status cki_torch_zip_record(cki_torch_file *tf, const cki_tstorage *s, const char *name,
                               const cki_zip_entry **out);

/* 1 if every byte of P[0..N) is NUL or ASCII whitespace. */
int cki_torch_trivial_tail(const uint8_t *p, uint64_t n);

#endif
