/*
 * format.h -- the format driver table. One file per format fills one
 * cki_format; fmt_registry.c is the only file that lists them. Detection
 * scores a bounded read of the content (probe), never the file name.
 *
 * Writers get a cki_write_job: the planned output tensors (name, source view,
 * output dtype), metadata, and an open atomic sink. They lay the file out from
 * names, shapes and dtypes, then pull each tensor's bytes through
 * cki_emit_tensor, which streams in bounded chunks.
 */
#ifndef CKI_FORMAT_H
#define CKI_FORMAT_H

#include "../io/sink.h"
#include "model.h"

typedef struct cki_out_tensor {
    const char *name;      /* output name */
    const cki_tensor *src; /* values come from here */
    ck_dtype dtype;        /* output dtype */
    uint64_t nbytes;       /* output bytes (dense) */
    size_t in_index;       /* the input tensor it comes from (ck_model order) */
} cki_out_tensor;

typedef struct cki_write_job cki_write_job;
struct cki_write_job {
    ck_ctx *ctx;
    const char *path;           /* final output path */
    cki_sink *sink;             /* open; the driver writes, the caller commits */
    const cki_out_tensor *tensors;
    size_t count;
    const char *const *meta_keys; /* string metadata to write where the format can */
    const char *const *meta_vals;
    size_t meta_count;
    const ck_model *src_model;  /* for non-tensor values */
    int prune;                  /* ckpt: state dict only */
    int force;
    int verify_crc;             /* check input CRCs while copying */
    cki_cast_stats *stats;      /* casts count overflow/underflow here */
    int compress;               /* npz: deflate members */
    int strict;                 /* npy/npz: refuse dtypes numpy cannot spell */
    uint8_t *scratch;           /* CKI_SCRATCH bytes for chunked copies */
    uint64_t total_bytes;       /* sum of nbytes, for progress */
    uint64_t done_bytes;
    /* extra outputs (raw's OUT.json, shard indexes) opened through
     * cki_job_open_side are committed or aborted with the main sink */
    cki_sink *side[8];
    size_t side_count;
    /* PyTorch -> PyTorch whole-checkpoint rewrite (torch_full.c): set when the
     * options allow it (no --prune, no sharding); UNKNOWN is CKI_TW_DICT/DROP/
     * KEEP; REWRITE_FN (may be NULL) hears of every rewritten or removed value */
    int full;
    int unknown;
    ck_rewrite_fn rewrite_fn;
    void *rewrite_user;
    ck_dtype cast_all;          /* CK_DT_KEEP, or the dtype for floating tensors outside the
                                 * state dict (--cast-all) */
    const ck_convert_opts *opts; /* the caller's options (GGUF: byte order, names) */
    size_t shard_no, shard_count; /* this file among split outputs (0 of 1 unless split) */
    size_t all_count;             /* tensors in all split outputs together */
};

#define CKI_SCRATCH (4u << 20)

/* Streams OT's values into the job's sink (cast, gathered, swapped as
 * needed). If CRC is not NULL, it is updated (zlib crc32) with the bytes
 * written. Reports progress and honours cancellation. */
ck_status cki_emit_tensor(cki_write_job *job, const cki_out_tensor *ot, uint32_t *crc);
/* Opens another atomic output beside the main one (same --force rules). */
ck_status cki_job_open_side(cki_write_job *job, const char *path, cki_sink **out);

enum {
    CKI_CAP_READ = 1,
    CKI_CAP_WRITE = 2,
    CKI_CAP_METADATA = 4, /* writer keeps string metadata */
    CKI_CAP_SHARED = 8,   /* writer keeps shared storages shared */
    CKI_CAP_QUANT = 16,   /* writer stores ggml block-quantised dtypes */
    CKI_CAP_TYPED_META = 32, /* writer keeps typed metadata (whole arrays) */
    CKI_CAP_SPLIT = 64,   /* --shard-size makes self-describing parts, no index file */
    CKI_CAP_WINDOW = 128  /* reader needs only the head of the file in view (its header,
                           * through cki_source_view) and reads anything else with
                           * cki_source_pread (the zip reader: its tail): offered files
                           * too large to hold */
};

typedef struct cki_format {
    const char *name;         /* "safetensors", "torch", "ckpt", "raw" */
    const char *const *exts;  /* NULL-terminated, with dot: ".safetensors" */
    unsigned caps;
    /* 0: not this format; 100: certain. Reads at most the head and tail. */
    int (*probe)(const cki_source *src);
    ck_status (*read)(ck_model *m, const cki_source *src, const ck_open_opts *opts);
    ck_status (*write)(cki_write_job *job);
} cki_format;

/* NULL-terminated list of drivers (fmt_registry.c). */
extern const cki_format *const cki_formats[];
/* By name or alias, among drivers having all of CAPS: for reading "pt",
 * "pth", "bin" mean the "torch" reader, for writing the "pth" writer.
 * NULL if unknown. */
const cki_format *cki_format_by_name(const char *name, unsigned caps);
/* By output file extension. NULL if unknown. */
const cki_format *cki_format_by_path(const char *path);
/* Best-scoring reader for SRC, or NULL. */
const cki_format *cki_format_detect(const cki_source *src);

#endif
