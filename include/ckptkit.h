/*
 * ckptkit.h -- the one public header of libckptkit, and its manual.
 *
 * ckptkit opens neural-network checkpoints (safetensors, PyTorch .pth/.pt/.bin
 * in zip, legacy and tar form, Lightning .ckpt, raw .bin with a JSON manifest,
 * Hugging Face sharded checkpoints, NumPy .npy and .npz), lists their tensors, reads tensor values,
 * and converts between formats tensor by tensor in bounded memory.
 *
 * Nothing in an input file is ever executed: pickles are read by a restricted
 * machine that builds an inert value tree, and unknown classes stay opaque.
 *
 * Conventions
 *  - Every fallible call returns ck_status; CK_OK is 0. On failure the context
 *    holds a one-line message (ck_errmsg) naming the file, the object (tensor,
 *    zip member, pickle opcode at byte N), the rule broken and the numbers.
 *  - Outputs are the last parameters and are written only on success.
 *  - Every close/free function accepts NULL.
 *  - Ownership is stated where a pointer is returned.
 *  - The library never prints and never exits.
 *
 * Minimal use:
 *
 *     ck_ctx *ctx = ck_ctx_new();
 *     ck_model *m;
 *     if (ck_model_open(ctx, "model.safetensors", NULL, &m)) {
 *         fprintf(stderr, "%s\n", ck_errmsg(ctx));
 *     } else {
 *         for (size_t i = 0; i < ck_model_tensor_count(m); i++) {
 *             ck_tensor_info ti;
 *             ck_model_tensor(m, i, &ti);
 *             printf("%s %s\n", ti.name, ck_dtype_name(ti.dtype));
 *         }
 *         ck_model_close(m);
 *     }
 *     ck_ctx_free(ctx);
 */
#ifndef CKPTKIT_H
#define CKPTKIT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CK_API __attribute__((visibility("default")))
#else
#define CK_API
#endif

#define CK_VERSION_MAJOR 0
#define CK_VERSION_MINOR 1
#define CK_VERSION_PATCH 0
#define CK_VERSION_STRING "0.1.0"

/* The library's version string ("0.1.0"). */
CK_API const char *ck_version(void);

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

typedef enum ck_status {
    CK_OK = 0,
    CK_EFORMAT,      /* the input breaks a rule of its format */
    CK_EUNSUPPORTED, /* valid input that ckptkit cannot represent or write */
    CK_EIO,          /* a system call failed (open, read, write, fsync, rename) */
    CK_ENOMEM,       /* allocation failed or a memory limit was reached */
    CK_ELIMIT,       /* a configured limit was exceeded (depth, memo, header size) */
    CK_EEXIST,       /* refused write: OUT exists and force was not given */
    CK_ESAMEFILE,    /* refused write: OUT is one of the inputs (links included) */
    CK_EARG,         /* the caller passed invalid arguments */
    CK_ENOTFOUND,    /* a named tensor or key does not exist */
    CK_EINTR,        /* interrupted by a signal; nothing was left behind */
    CK_EUNSAFE       /* scan: a dangerous reference was found */
} ck_status;

/* A short English name for a status ("bad format", "i/o error", ...). */
CK_API const char *ck_status_name(ck_status st);

/* ------------------------------------------------------------------------ */
/* Data types                                                                */
/* ------------------------------------------------------------------------ */

/*
 * The dtype table, one X-macro list. Columns: enum suffix, name as written in
 * safetensors headers, bits per element, kind.
 * Kinds: B bool, U unsigned int, I signed int, F float, C complex.
 */
#define CK_DTYPE_LIST(X)                                                                          \
    X(BOOL, "BOOL", 8, 'B')                                                                       \
    X(U8, "U8", 8, 'U')                                                                           \
    X(I8, "I8", 8, 'I')                                                                           \
    X(U16, "U16", 16, 'U')                                                                        \
    X(I16, "I16", 16, 'I')                                                                        \
    X(U32, "U32", 32, 'U')                                                                        \
    X(I32, "I32", 32, 'I')                                                                        \
    X(U64, "U64", 64, 'U')                                                                        \
    X(I64, "I64", 64, 'I')                                                                        \
    X(F16, "F16", 16, 'F')                                                                        \
    X(BF16, "BF16", 16, 'F')                                                                      \
    X(F32, "F32", 32, 'F')                                                                        \
    X(F64, "F64", 64, 'F')                                                                        \
    X(C64, "C64", 64, 'C')                                                                        \
    X(C128, "C128", 128, 'C')                                                                     \
    X(F8_E4M3, "F8_E4M3", 8, 'F')                                                                 \
    X(F8_E5M2, "F8_E5M2", 8, 'F')                                                                 \
    X(F8_E4M3FNUZ, "F8_E4M3FNUZ", 8, 'F')                                                         \
    X(F8_E5M2FNUZ, "F8_E5M2FNUZ", 8, 'F')                                                         \
    X(F8_E8M0, "F8_E8M0", 8, 'F')                                                                 \
    X(F6_E2M3, "F6_E2M3", 6, 'F')                                                                 \
    X(F6_E3M2, "F6_E3M2", 6, 'F')                                                                 \
    X(F4, "F4", 4, 'F')

/*
 * ggml's block-quantised types (GGUF tensor types), numbered after
 * CK_DTYPE_LIST. They are not "bits per element": each holds BLOCK elements
 * of one row in BLOCK_BYTES bytes, blocks running along the last (PyTorch)
 * dimension, which must be a multiple of BLOCK. Columns: enum suffix, name as
 * ggml spells it, elements per block, bytes per block, ggml type id. (ggml's
 * other types F32, F16, BF16, F64, I8, I16, I32 and I64 are the dtypes above.)
 * Their kind is 'Q'; ck_dtype_bits gives 0 for them (see ck_dtype_block).
 */
#define CK_DTYPE_GGML_LIST(X)                                                                     \
    X(Q4_0, "Q4_0", 32, 18, 2)                                                                    \
    X(Q4_1, "Q4_1", 32, 20, 3)                                                                    \
    X(Q5_0, "Q5_0", 32, 22, 6)                                                                    \
    X(Q5_1, "Q5_1", 32, 24, 7)                                                                    \
    X(Q8_0, "Q8_0", 32, 34, 8)                                                                    \
    X(Q8_1, "Q8_1", 32, 36, 9)                                                                    \
    X(Q2_K, "Q2_K", 256, 84, 10)                                                                  \
    X(Q3_K, "Q3_K", 256, 110, 11)                                                                 \
    X(Q4_K, "Q4_K", 256, 144, 12)                                                                 \
    X(Q5_K, "Q5_K", 256, 176, 13)                                                                 \
    X(Q6_K, "Q6_K", 256, 210, 14)                                                                 \
    X(Q8_K, "Q8_K", 256, 292, 15)                                                                 \
    X(IQ2_XXS, "IQ2_XXS", 256, 66, 16)                                                            \
    X(IQ2_XS, "IQ2_XS", 256, 74, 17)                                                              \
    X(IQ3_XXS, "IQ3_XXS", 256, 98, 18)                                                            \
    X(IQ1_S, "IQ1_S", 256, 50, 19)                                                                \
    X(IQ4_NL, "IQ4_NL", 32, 18, 20)                                                               \
    X(IQ3_S, "IQ3_S", 256, 110, 21)                                                               \
    X(IQ2_S, "IQ2_S", 256, 82, 22)                                                                \
    X(IQ4_XS, "IQ4_XS", 256, 136, 23)                                                             \
    X(IQ1_M, "IQ1_M", 256, 56, 29)                                                                \
    X(TQ1_0, "TQ1_0", 256, 54, 34)                                                                \
    X(TQ2_0, "TQ2_0", 256, 66, 35)                                                                \
    X(MXFP4, "MXFP4", 32, 17, 39)                                                                 \
    X(NVFP4, "NVFP4", 64, 36, 40)                                                                 \
    X(Q1_0, "Q1_0", 128, 18, 41)                                                                  \
    X(Q2_0, "Q2_0", 64, 18, 42)

typedef enum ck_dtype {
#define CK_DTYPE_ENUM_(id, name, bits, kind) CK_DT_##id,
    CK_DTYPE_LIST(CK_DTYPE_ENUM_)
#undef CK_DTYPE_ENUM_
#define CK_DTYPE_GGML_ENUM_(id, name, block, block_bytes, ggml_id) CK_DT_##id,
    CK_DTYPE_GGML_LIST(CK_DTYPE_GGML_ENUM_)
#undef CK_DTYPE_GGML_ENUM_
        CK_DT_COUNT,
    CK_DT_KEEP = -1 /* as an output dtype: keep the input's dtype */
} ck_dtype;

/* "F32", "BF16", ... (the safetensors spelling); "?" for an invalid value. */
CK_API const char *ck_dtype_name(ck_dtype dt);
/* Parses a dtype name, case-insensitive; also accepts torch spellings
 * ("float16", "bfloat16", "half", "float", "f32", ...). Returns CK_OK or CK_EARG. */
CK_API ck_status ck_dtype_parse(const char *name, ck_dtype *out);
/* Bits per element (4 for F4, 6 for F6_*). 0 for an invalid value. */
CK_API unsigned ck_dtype_bits(ck_dtype dt);
/* 1 for floating-point dtypes (F*, BF16, F8*, F6*, F4), else 0. Complex is not floating. */
CK_API int ck_dtype_is_float(ck_dtype dt);
/* 1 if ckptkit can convert values of this dtype to and from F32. */
CK_API int ck_dtype_can_cast(ck_dtype dt);
/* Elements per block (1 for every dtype of CK_DTYPE_LIST, 32..256 for ggml's
 * quantised types); *BLOCK_BYTES (may be NULL) gets the bytes of one block
 * (the element size for whole-byte dtypes, 0 for sub-byte ones). 0 for an
 * invalid value. */
CK_API unsigned ck_dtype_block(ck_dtype dt, unsigned *block_bytes);
/* 1 for ggml's block-quantised types (kind 'Q'). */
CK_API int ck_dtype_is_quantized(ck_dtype dt);
/* 1 if ckptkit can dequantise DT to F32 (ggml types whose decoder it has). */
CK_API int ck_dtype_can_dequantize(ck_dtype dt);
/* 1 if ckptkit can quantise F32 values to DT. */
CK_API int ck_dtype_can_quantize(ck_dtype dt);

/* ------------------------------------------------------------------------ */
/* Context                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct ck_ctx ck_ctx;

/* A new context with default limits; NULL if out of memory. */
CK_API ck_ctx *ck_ctx_new(void);
CK_API void ck_ctx_free(ck_ctx *ctx);

/* The last error message (one line, no trailing newline). Borrowed: valid
 * until the next call that fails on this context. "" if there was none. */
CK_API const char *ck_errmsg(const ck_ctx *ctx);
/* The status of the last failure, or CK_OK. */
CK_API ck_status ck_last_status(const ck_ctx *ctx);

/* Warnings (e.g. "protocol 4 pickle", "CRC not computed") go to this callback;
 * without one they are dropped. The message is borrowed for the call only. */
typedef void (*ck_warn_fn)(void *user, const char *msg);
CK_API void ck_ctx_set_warn(ck_ctx *ctx, ck_warn_fn fn, void *user);

typedef enum ck_limit {
    CK_LIMIT_HEADER_BYTES,  /* safetensors / JSON header size (default 100,000,000) */
    CK_LIMIT_PICKLE_DEPTH,  /* nesting depth of pickled containers (default 1000) */
    CK_LIMIT_PICKLE_MEMO,   /* memo entries (default 10,000,000) */
    CK_LIMIT_PICKLE_STACK,  /* stack + mark entries (default 10,000,000) */
    CK_LIMIT_MEMORY,        /* bytes ckptkit may allocate: 64 MiB + 32 x input size, capped by
                             * this limit (default 4 GiB) */
    CK_LIMIT_INFLATE_BYTES, /* largest inflated zip member (default 4 GiB) */
    CK_LIMIT_TENSORS,       /* tensors in one checkpoint (default 10,000,000) */
    CK_LIMIT_COUNT
} ck_limit;

/* Sets a limit; 0 restores the default. */
CK_API ck_status ck_ctx_set_limit(ck_ctx *ctx, ck_limit which, uint64_t value);
CK_API uint64_t ck_ctx_get_limit(const ck_ctx *ctx, ck_limit which);

/* Progress callback: done and total in bytes of tensor data. Return nonzero to
 * cancel (the call then fails with CK_EINTR and leaves no output behind). */
typedef int (*ck_progress_fn)(void *user, uint64_t done, uint64_t total);
CK_API void ck_ctx_set_progress(ck_ctx *ctx, ck_progress_fn fn, void *user);

/* Outputs through callbacks instead of files (a browser download, a socket,
 * a test's buffer). Every file ck_convert or ck_export would create -- the
 * output, a raw manifest, each shard and index -- is opened with OPEN (the
 * path it would have had) and gets WRITE calls in order: OFF is the number of
 * bytes written so far, except that a writer may later rewrite a few bytes it
 * already wrote (the CRC-32 fields of a zip), with an OFF before the end.
 * COMMIT is called for each file once all of them are complete; ABORT for
 * each file opened when the call fails or is cancelled. OPEN, WRITE and
 * COMMIT return 0 on success, anything else fails the call with CK_EIO. The
 * existence and same-file checks of file outputs do not apply. Callbacks are
 * called from the thread that called ck_convert or ck_export. */
typedef struct ck_output_ops {
    int (*open)(void *user, const char *path, void **file);
    int (*write)(void *user, void *file, uint64_t off, const void *p, size_t n);
    int (*commit)(void *user, void *file);
    void (*abort)(void *user, void *file);
    void *user;
} ck_output_ops;
/* Copies OPS into CTX (all four callbacks needed); NULL goes back to files. */
CK_API void ck_ctx_set_output(ck_ctx *ctx, const ck_output_ops *ops);

/* Output formats this library writes, I = 0, 1, ...: the name ck_convert_opts
 * takes ("safetensors", "pth", ...), and in *EXT (if EXT is not NULL) the
 * file extension it is usually given (".safetensors"), or NULL for a format
 * with none (raw). NULL past the last. */
CK_API const char *ck_output_format(size_t i, const char **ext);

/* Removes every temporary output file this process has open. Async-signal-safe:
 * call it from a SIGINT/SIGTERM handler, then exit. */
CK_API void ck_cleanup_on_signal(void);

/* ------------------------------------------------------------------------ */
/* Opening a checkpoint                                                      */
/* ------------------------------------------------------------------------ */

typedef struct ck_model ck_model;

typedef struct ck_open_opts {
    const char *format;   /* force a reader ("safetensors", "torch", "raw"); NULL: detect */
    const char *key;      /* dotted path of the sub-dict holding the state dict; NULL: by rule */
    const char *manifest; /* JSON manifest for raw .bin input; NULL: OUT.json beside it if any */
    int all;              /* expose every tensor of the object tree under its dotted path */
    int verify_crc;       /* check CRC-32 of every zip member as it is read */
    int allow_unsafe;     /* load a PyTorch file even when its pickle references globals that
                           * would run code under Python (os.system, eval, ...). They are never
                           * executed either way; without this the open fails with CK_EUNSAFE.
                           * NumPy object arrays (dtype |O, whose data is a pickle) are
                           * refused with CK_EUNSAFE too; with this they are left out, with a
                           * warning, and nothing is unpickled */
    int skip_unsupported; /* NumPy arrays of dtypes ckptkit cannot represent (strings, void,
                           * datetime, structured) are left out with a warning instead of
                           * failing the open (CK_EUNSUPPORTED); see ck_model_omitted_count */
    int map_writable;     /* map files copy-on-write (MAP_PRIVATE, readable and writable):
                           * bytes written through ck_model_data pointers stay in this
                           * process and never reach the file */
    int values;           /* keep the checkpoint's whole value tree (ck_model_values) */
} ck_open_opts;

/* Opens PATH read-only (memory-mapped). The format is detected from content,
 * never from the name. PATH may also be a sharded checkpoint: its
 * *.index.json file or the folder holding it. OPTS may be NULL. */
CK_API ck_status ck_model_open(ck_ctx *ctx, const char *path, const ck_open_opts *opts,
                               ck_model **out);
CK_API void ck_model_close(ck_model *m);

/* Arrays the reader left out on request (skip_unsupported, or NumPy object
 * arrays with allow_unsafe); each was named in a warning. */
CK_API size_t ck_model_omitted_count(const ck_model *m);

/* Reader name: "safetensors", "torch-zip", "torch-legacy", "torch-tar", "raw",
 * "npy", "npz", "sharded:safetensors", ... Borrowed. */
CK_API const char *ck_model_format(const ck_model *m);
CK_API const char *ck_model_path(const ck_model *m);

typedef struct ck_tensor_info {
    const char *name;       /* borrowed: valid until ck_model_close */
    ck_dtype dtype;         /* on-disk dtype */
    int ndim;               /* 0 for a scalar */
    const int64_t *shape;   /* ndim sizes, outermost first; borrowed */
    const int64_t *strides; /* ndim strides in elements, or NULL when dense row-major */
    uint64_t storage_offset; /* elements into the storage (torch), else 0 */
    uint64_t numel;          /* product of shape */
    uint64_t nbytes;         /* bytes of the dense value: numel x bits / 8 */
    uint64_t storage_id;     /* tensors with equal nonzero ids share one storage */
    uint64_t file_offset;    /* where the storage bytes start in the file, if known */
} ck_tensor_info;

CK_API size_t ck_model_tensor_count(const ck_model *m);
/* Fills OUT for tensor I (0-based, file order). CK_EARG if I is out of range. */
CK_API ck_status ck_model_tensor(const ck_model *m, size_t i, ck_tensor_info *out);
/* Finds a tensor by name. CK_ENOTFOUND (no message) if absent. */
CK_API ck_status ck_model_find(const ck_model *m, const char *name, size_t *index);

/* Zero-copy view of tensor I's bytes: non-NULL only for a dense, little-endian
 * tensor stored uncompressed in a mapped file. Borrowed until ck_model_close. */
CK_API const void *ck_model_data(const ck_model *m, size_t i);

/* Reads elements [first, first + count) of tensor I, in row-major order, as
 * dtype AS (CK_DT_KEEP: on-disk dtype), into DST of DST_CAP bytes. Gathers
 * strided views, swaps byte order, applies conj/neg flags and casts. Sub-byte
 * dtypes (F4, F6) must be read whole, as kept. */
CK_API ck_status ck_model_read(ck_model *m, size_t i, uint64_t first, uint64_t count, ck_dtype as,
                               void *dst, size_t dst_cap);

/* Metadata: string -> string pairs (safetensors __metadata__, Lightning
 * scalars such as epoch and global_step). Borrowed until ck_model_close. */
CK_API size_t ck_model_meta_count(const ck_model *m);
CK_API ck_status ck_model_meta(const ck_model *m, size_t i, const char **key, const char **value);
/* NULL if KEY is absent. */
CK_API const char *ck_model_meta_get(const ck_model *m, const char *key);
/* Typed metadata (GGUF): the type of metadata entry I as GGUF spells it
 * ("UINT32", "STRING", "FLOAT32", "ARRAY[STRING]", ...), or NULL when the
 * format's metadata is plain strings. Scalars are given as text (numbers in
 * decimal, BOOL as true/false, strings verbatim); an ARRAY entry's value is a
 * summary, "[STRING x 32000]": the whole arrays are in ck_model_values_json
 * under "gguf" -> "arrays". Borrowed. */
CK_API const char *ck_model_meta_type(const ck_model *m, size_t i);

/* Non-tensor values of the checkpoint (epoch, hyper_parameters, opaque
 * objects, ...) as one JSON document; tensors appear as {"tensor": ...}
 * descriptors. "null" for formats that hold none. Borrowed. */
CK_API const char *ck_model_values_json(const ck_model *m);

/* ------------------------------------------------------------------------ */
/* Converting                                                                */
/* ------------------------------------------------------------------------ */

/* Called for every value a whole-checkpoint rewrite changes or removes: PATH is
 * its dotted place in the object tree ("hyper_parameters.loss_fn", "" for the
 * root), WHAT what it was ("torch.nn.modules.loss.MSELoss", "os.system"),
 * BECAME what it became ("dict", "set", "dropped", "removed (dangerous)").
 * All three are borrowed for the call. */
typedef void (*ck_rewrite_fn)(void *user, const char *path, const char *what, const char *became);

/* --unknown: what a whole-checkpoint rewrite does with objects of classes
 * torch's weights-only loader refuses. */
enum { CK_UNKNOWN_DICT = 0, CK_UNKNOWN_DROP = 1, CK_UNKNOWN_KEEP = 2 };

typedef struct ck_convert_opts {
    const char *format;     /* "safetensors", "pth", "ckpt", "raw", "npz", "npy"; NULL: from OUT's
                               extension */
    ck_dtype dtype;         /* CK_DT_KEEP, or a floating dtype to cast floating tensors to */
    const char *const *dtype_exclude; /* NULL-terminated globs: tensors never cast */
    int force;              /* replace an existing OUT */
    const char *const *metadata; /* NULL-terminated "KEY=VALUE" pairs added to the output */
    const char *const *include;  /* NULL-terminated globs; NULL: every tensor */
    const char *const *exclude;  /* NULL-terminated globs */
    const char *const *rename;   /* NULL-terminated "OLD=NEW" prefix renames */
    const char *strip_prefix;
    const char *add_prefix;
    int ema;                /* 1: --ema, -1: --no-ema, 0: as is */
    int prune;              /* keep only the state dict (ckpt output) */
    uint64_t shard_size;    /* bytes per shard; 0: one file */
    int no_crc;             /* skip CRC-32 checks of input zip members */
    /* PyTorch -> PyTorch (pth/ckpt out of a single torch file) without prune
     * and sharding rewrites the whole object tree (FORMATS.md, "Whole-checkpoint
     * rewrite"): optimizer states, loops, callbacks, hyper-parameters kept;
     * dangerous references always removed; unknown classes per UNKNOWN */
    int unknown;            /* CK_UNKNOWN_DICT (0), CK_UNKNOWN_DROP, CK_UNKNOWN_KEEP */
    ck_rewrite_fn on_rewrite; /* may be NULL */
    void *rewrite_user;
    int cast_all;           /* whole-checkpoint rewrite with DTYPE: also cast the floating tensors
                             * outside the state dict (optimizer state, ...), 0-dim ones excepted */
    int compress;           /* npz output: deflate every member (default: stored) */
    int strict;             /* npy/npz output: refuse dtypes numpy has no spelling for (BF16,
                               F8) instead of writing them as ml_dtypes does, with a warning */
    /* GGUF output and quantisation (docs/FORMATS.md, GGUF) */
    const char *const *tensor_type; /* NULL-terminated "REGEX=TYPE" rules (POSIX extended
                                       regex searched in the input name); first match wins */
    int allow_long_names;   /* GGUF: allow names longer than ggml's 63 bytes */
    int big_endian;         /* GGUF: write a big-endian file (ggml itself reads only
                               little-endian ones) */
    int allow_expand;       /* write outputs whose tensor bytes exceed 16 x the input file's
                             * size (a stride-0 broadcast view written dense); refused with
                             * CK_ELIMIT, naming the tensor, unless set */
} ck_convert_opts;

typedef struct ck_convert_stats {
    uint64_t tensors;       /* tensors written */
    uint64_t bytes;         /* tensor bytes written */
    uint64_t cast_tensors;  /* tensors whose dtype changed */
    uint64_t overflow;      /* finite values that became +-Inf when narrowing */
    uint64_t underflow;     /* nonzero values that became zero when narrowing */
    uint64_t shards;        /* files written (1 unless sharded) */
    uint64_t dtype_tensors[CK_DT_COUNT]; /* tensors written, per output dtype */
} ck_convert_stats;

/* Writes the tensors of IN to OUT through a temporary file beside OUT, renamed
 * only when complete. Refuses an existing OUT without force (CK_EEXIST) and an
 * OUT that is IN by device and inode (CK_ESAMEFILE). STATS may be NULL. */
CK_API ck_status ck_convert(ck_ctx *ctx, ck_model *in, const char *out,
                            const ck_convert_opts *opts, ck_convert_stats *stats);

/* Output format for a file name by its extension ("safetensors", "pth",
 * "ckpt", "raw", "npz", "npy"), or NULL. */
CK_API const char *ck_format_for_path(const char *path);

/* The writer NAME or one of its aliases ("pt", "bin", "st", "lightning", ...)
 * stands for ("pth" for "bin"), or NULL when no writer answers to NAME. */
CK_API const char *ck_format_writer(const char *name);

/* The name of the I-th writer (0, 1, ...), NULL past the last: lists every
 * output format this build has. */
CK_API const char *ck_format_writer_name(size_t i);

/* What a whole-checkpoint rewrite with policy UNKNOWN (CK_UNKNOWN_*) would
 * change in M, without writing anything: FN hears of each value as
 * ck_convert's on_rewrite would. M must be a single PyTorch file (else
 * CK_EUNSUPPORTED). The file is parsed again (nothing is run). */
CK_API ck_status ck_model_rewrites(ck_ctx *ctx, const ck_model *m, int unknown, ck_rewrite_fn fn,
                                   void *user);

/* ------------------------------------------------------------------------ */
/* Comparing                                                                 */
/* ------------------------------------------------------------------------ */

typedef enum ck_diff_kind {
    CK_DIFF_ONLY_A,  /* tensor only in A */
    CK_DIFF_ONLY_B,  /* tensor only in B */
    CK_DIFF_DTYPE,   /* dtypes differ */
    CK_DIFF_SHAPE,   /* shapes differ */
    CK_DIFF_VALUES   /* same dtype and shape, bytes differ */
} ck_diff_kind;

typedef struct ck_diff_item {
    ck_diff_kind kind;
    const char *name;        /* borrowed for the callback */
    size_t index_a, index_b; /* (size_t)-1 when absent */
    uint64_t first_elem;     /* CK_DIFF_VALUES: first differing element */
} ck_diff_item;

/* Called once per difference; return nonzero to stop early. */
typedef int (*ck_diff_fn)(void *user, const ck_diff_item *item);

/* Compares names, dtypes, shapes and bytes (exact). *SAME is 1 if identical. */
CK_API ck_status ck_verify(ck_ctx *ctx, ck_model *a, ck_model *b, ck_diff_fn fn, void *user,
                           int *same);

/* ------------------------------------------------------------------------ */
/* Scanning                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum ck_verdict {
    CK_VERDICT_ALLOWED,  /* a global ckptkit recognises (tensor rebuild, storage, ...) */
    CK_VERDICT_UNKNOWN,  /* not recognised, kept opaque, never executed */
    CK_VERDICT_DANGEROUS /* can run code, touch files or the network when unpickled */
} ck_verdict;

typedef struct ck_scan_item {
    const char *where;  /* zip member or stream part, e.g. "archive/data.pkl"; borrowed */
    uint64_t offset;    /* byte offset of the opcode inside that pickle */
    const char *module; /* borrowed */
    const char *name;   /* borrowed */
    ck_verdict verdict;
} ck_scan_item;

typedef void (*ck_scan_fn)(void *user, const ck_scan_item *item);

/* Parses every pickle in PATH with the loader's own machine and reports each
 * global. *WORST is the worst verdict seen. Fails (never "clean") when any
 * pickle cannot be parsed completely or a pickle's zip record fails its CRC-32;
 * the scan still goes on past such a part where the container allows, and
 * *WORST is written on failure too (an exception to the outputs-on-success
 * rule): a dangerous global found anywhere is reported whatever else fails. */
CK_API ck_status ck_scan(ck_ctx *ctx, const char *path, ck_scan_fn fn, void *user,
                         ck_verdict *worst);

/* ------------------------------------------------------------------------ */
/* Testing                                                                   */
/* ------------------------------------------------------------------------ */

/* For tests only: reads CKPTKIT_FAULT (e.g. "write:3,fsync:1"; operations
 * write, fsync, rename, open, alloc) and makes the Nth such call of this
 * process fail, so that tests can check a failed write leaves nothing behind.
 * Does nothing when the variable is unset. The ckptkit command calls it. */
CK_API void ck_debug_faults_from_env(void);

/* ------------------------------------------------------------------------ */
/* ck_convert options in detail                                              */
/* ------------------------------------------------------------------------ */

/*
 * The order ck_convert applies its options in, and their exact rules:
 *
 * 1. ema (Stable Diffusion / CompVis LitEma checkpoints). A checkpoint holds
 *    EMA weights when at least one tensor is named "model_ema.*" other than
 *    model_ema.decay and model_ema.num_updates (diffusers' "more than 100
 *    model_ema keys" is a heuristic for full SD files; this rule also serves
 *    small and partial ones). The EMA twin of "model.<rest>" is "model_ema."
 *    followed by <rest> with every '.' removed.
 *      ema = 1 (--ema): each "model.*" tensor that has a twin is written with
 *        the twin's values (and dtype) under its own name; the twin must have
 *        the same shape. "model.*" tensors without a twin keep their values
 *        (a warning counts them). Every "model_ema.*" tensor is dropped.
 *        Errors (CK_EARG / CK_EFORMAT): no EMA weights, no "model.*" tensor
 *        with a twin, a twin of another shape, two tensors mapping to one twin.
 *      ema = -1 (--no-ema): every "model_ema.*" tensor is dropped.
 * 2. include / exclude globs select by input name; then strip_prefix, the
 *    first matching rename "OLD=NEW" prefix, add_prefix. Two tensors that end
 *    up with one name fail with CK_EARG naming both input tensors.
 * 3. dtype: only floating tensors are cast (bools, ints and complex never);
 *    dtype_exclude globs match input names. Overflow to +-Inf and underflow to
 *    zero are counted in ck_convert_stats.
 * 4. metadata: the input's string metadata, then "KEY=VALUE" overrides. Kept
 *    by safetensors (__metadata__), raw (manifest) and ckpt outputs; pth
 *    output has no place for it (a warning says so when metadata is given).
 * 5. prune (--prune): keep only the state dict. A .ckpt output is the dict
 *    {"state_dict": ...} alone -- no epoch, global_step,
 *    pytorch-lightning_version or metadata (ckptkit never writes optimizer
 *    states, lr schedulers, callbacks or loops into a .ckpt in any case); for
 *    every output the input's Lightning training counters (metadata epoch,
 *    global_step, pytorch-lightning_version) are not carried. Tensors are not
 *    touched: combine with ema for EMA weights.
 * 6. shard_size: Hugging Face shards for safetensors and pth output (other
 *    formats: CK_EUNSUPPORTED). OUT names the unsharded file, DIR/STEM.EXT:
 *    shards are DIR/STEM-00001-of-0000N.EXT and the index is
 *    DIR/STEM.EXT.index.json = {"metadata": {"total_size": BYTES},
 *    "weight_map": {NAME: SHARD}} (two-space indent, keys sorted, so equal
 *    inputs give equal bytes). Tensors are taken in order; a new shard starts
 *    when the next tensor would pass shard_size; a larger tensor gets a shard
 *    of its own; for pth, tensors sharing a storage stay in one shard. One
 *    shard is written as OUT itself, with no index. Every shard and the index
 *    are temporary files until all are complete; on any failure none is left.
 *    At most 200 shards per call (CK_ELIMIT beyond). stats->shards counts them.
 *
 * Sharded input (ck_model_open on an *.index.json file or a folder holding
 * exactly one): shard names must be plain file names beside the index (no
 * '/', no "..", not absolute), every shard must exist, a tensor may be in one
 * shard only and in the shard weight_map names, and every weight_map entry
 * must be found (or be an alias recorded in the shards' metadata, as
 * safetensors' save_model writes for tied weights). Tensors in a shard but
 * missing from weight_map are kept with a warning. Shards are read in name
 * order; the model's format is "sharded:<reader>".
 */

/* ------------------------------------------------------------------------ */
/* Comparing values with tolerances (diff)                                   */
/* ------------------------------------------------------------------------ */

/*
 * ck_diff compares two checkpoints by value. Tensors are matched by name;
 * a tensor present in both with the same shape is read from both in chunks,
 * converted to double (whatever the two dtypes are: bool, ints, every float
 * type ckptkit can cast), and compared element by element:
 *
 *   an element matches when a == b (+0 == -0, Inf == Inf of the same sign),
 *   when both are NaN, or when both are finite and |a - b| <= atol + rtol * |b|
 *   (numpy.isclose's rule). NaN against a number, and Inf against anything
 *   else, never match.
 *
 * Per tensor it reports max |a - b| and mean |a - b| over the elements where
 * neither side is NaN (0 for an empty tensor; Inf when an Inf meets another
 * value), and the cosine similarity over the elements where both sides are
 * finite (1 when both are all zero there, 0 when only one is). I64/U64 pairs
 * of the same dtype are compared exactly as integers, not through doubles.
 * Tensors of other dtypes that cannot be read as doubles (complex, F4, F6)
 * are compared byte for byte when both dtypes are equal (have_stats = 0).
 *
 * The checkpoints are the same when no tensor is only in A or only in B,
 * every shape matches, every element matches, and -- unless a tolerance is
 * given (rtol or atol > 0) -- every dtype matches. With a tolerance the
 * comparison is by value, so an F32 model and its F16 cast can be "the same"
 * within atol.
 */
typedef struct ck_diff_opts {
    double rtol; /* relative tolerance, >= 0 (0: exact) */
    double atol; /* absolute tolerance, >= 0 (0: exact) */
} ck_diff_opts;

typedef struct ck_diff_tensor {
    const char *name;                 /* borrowed for the callback */
    size_t index_a, index_b;          /* (size_t)-1 when absent from that side */
    ck_dtype dtype_a, dtype_b;        /* CK_DT_KEEP when absent */
    int ndim_a, ndim_b;               /* -1 when absent */
    const int64_t *shape_a, *shape_b; /* borrowed; NULL when absent */
    int compared;       /* 1: present in both with equal shapes, values compared */
    int have_stats;     /* 1: max_abs, mean_abs and cosine were computed */
    uint64_t numel;     /* elements compared */
    uint64_t mismatched; /* elements that do not match (NaN cases included) */
    uint64_t nan_mismatched; /* elements that are NaN on exactly one side */
    double max_abs;     /* see above; NaN when !have_stats */
    double mean_abs;
    double cosine;
    int equal;          /* compared and every element matches */
} ck_diff_tensor;

/* Called once per tensor of A (in A's order), then once per tensor only in B
 * (in B's order). Return nonzero to stop early (ck_diff then returns CK_OK
 * with the result so far). */
typedef int (*ck_diff_tensor_fn)(void *user, const ck_diff_tensor *t);

typedef struct ck_diff_result {
    uint64_t only_a, only_b;  /* tensors in one checkpoint only */
    uint64_t dtype_changed;   /* in both, dtypes differ */
    uint64_t shape_changed;   /* in both, shapes differ (values not compared) */
    uint64_t values_differ;   /* equal shapes, some element does not match (or the two
                                 dtypes cannot be compared: complex against float, ...) */
    uint64_t equal;           /* compared, every element matches */
    uint64_t elements;        /* elements compared */
    uint64_t bytes;           /* bytes read from A and B */
    int same;                 /* the checkpoints are the same (rule above) */
} ck_diff_result;

/* Compares A and B as described above. OPTS may be NULL (exact). FN may be
 * NULL. Progress (bytes read from both) goes to the context's callback. */
CK_API ck_status ck_diff(ck_ctx *ctx, ck_model *a, ck_model *b, const ck_diff_opts *opts,
                         ck_diff_tensor_fn fn, void *user, ck_diff_result *result);

/* ------------------------------------------------------------------------ */
/* Exporting tensors to NumPy .npy or raw bytes                              */
/* ------------------------------------------------------------------------ */

typedef struct ck_export_opts {
    const char *format; /* "npy" (default) or "raw" (the values' bytes, little-endian) */
    ck_dtype dtype;     /* CK_DT_KEEP, or a floating dtype: floating tensors are cast to it
                           (ints and bools keep theirs, as in ck_convert) */
    int force;          /* replace existing output files */
    int allow_expand;   /* as in ck_convert_opts: write more than 16 x the input's size */
} ck_export_opts;

/*
 * Writes the tensors named NAMES[0..COUNT) of M. With one name, OUT is the
 * output file. With several, OUT is a folder (created when absent) that gets
 * one file per tensor: the name with every '/' replaced by '_' (and "." or
 * ".." spelled "_" / "__"), plus ".npy" or ".bin"; two names giving one file
 * name are an error.
 *
 * .npy files are format version 1.0 (2.0 when the header passes 65535 bytes):
 * "\x93NUMPY", version, header length, then the dict
 * {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded with
 * spaces and a newline so the data starts at a multiple of 64, then the values
 * in row-major order, little-endian. BF16, F8, F6 and F4 have no NumPy dtype:
 * such tensors are refused unless cast (dtype = CK_DT_F32, for example).
 *
 * Every file goes through a temporary file and is renamed into place only
 * when all of them are complete; on failure none is left behind (nor a
 * folder this call created). An unknown name is CK_ENOTFOUND, before anything
 * is written. OPTS may be NULL (npy, dtypes kept, no force). STATS may be NULL;
 * its shards field counts files written.
 */
CK_API ck_status ck_export(ck_ctx *ctx, ck_model *m, const char *const *names, size_t count,
                           const char *out, const ck_export_opts *opts, ck_convert_stats *stats);


/* ------------------------------------------------------------------------ */
/* Models built in memory (writing tensors the caller holds)                 */
/* ------------------------------------------------------------------------ */

/* An empty model named NAME (used in messages) with no file behind it. Add
 * tensors with ck_model_add and write it with ck_convert. */
CK_API ck_status ck_model_new(ck_ctx *ctx, const char *name, ck_model **out);

/* Adds a dense row-major tensor whose LEN bytes (little-endian) are at DATA.
 * DATA is borrowed: it must stay valid and unchanged until ck_model_close.
 * LEN must equal the shape's element count x the dtype's size. Tensors given
 * the same DATA, LEN and dtype share one storage (pth output writes it once).
 * A repeated NAME fails with CK_EARG. */
CK_API ck_status ck_model_add(ck_model *m, const char *name, ck_dtype dtype, int ndim,
                              const int64_t *shape, const void *data, uint64_t len);

/* Adds or replaces metadata KEY -> VALUE (both copied). */
CK_API ck_status ck_model_set_meta(ck_model *m, const char *key, const char *value);

/* Opens a checkpoint held in memory: LEN bytes at DATA, borrowed until
 * ck_model_close. NAME stands for the path in messages. Sharded checkpoints
 * and raw files with a manifest need files: use ck_model_open. */
CK_API ck_status ck_model_open_memory(ck_ctx *ctx, const char *name, const void *data,
                                      uint64_t len, const ck_open_opts *opts, ck_model **out);

/* ------------------------------------------------------------------------ */
/* The value tree (opened with ck_open_opts.values)                          */
/* ------------------------------------------------------------------------ */

/*
 * A PyTorch checkpoint is a pickled object graph. Opened with
 * ck_open_opts.values = 1, the model keeps that graph as inert ck_value nodes:
 * what Python's unpickler would build, except that nothing is imported or
 * called. Classes ckptkit recognises become plain values (OrderedDict,
 * torch.Size, torch.device, argparse.Namespace, numpy scalars, ...); tensors
 * point at the model's tensors; every other object is CK_VALUE_OBJECT with its
 * class (module, name), constructor arguments, BUILD state and the items set
 * or appended on it. It is a graph: a node may appear in several places and a
 * container may contain itself, so walkers keep a visited set. Tensors the
 * reader did not expose are added to the model under the name
 * "<values>.N" (N counting from 0) only when opts.all is 0 and the tree needs
 * them; open with opts.all = 1 to have every tensor under its dotted path.
 */
typedef enum ck_value_kind {
    CK_VALUE_NONE,
    CK_VALUE_BOOL,    /* i: 0 or 1 */
    CK_VALUE_INT,     /* i */
    CK_VALUE_BIGINT,  /* s, len: little-endian two's complement bytes */
    CK_VALUE_FLOAT,   /* f[0] */
    CK_VALUE_COMPLEX, /* f[0] real, f[1] imaginary */
    CK_VALUE_STR,     /* s, len: UTF-8 (lone surrogates as their 3-byte form) */
    CK_VALUE_BYTES,   /* s, len */
    CK_VALUE_TUPLE,   /* items[0..count) */
    CK_VALUE_LIST,    /* items[0..count) */
    CK_VALUE_SET,     /* items[0..count) */
    CK_VALUE_DICT,    /* items[0..2 count): key, value, ... in insertion order */
    CK_VALUE_SLICE,   /* items[0..3): start, stop, step */
    CK_VALUE_TENSOR,  /* tensor: index in the model, or (size_t)-1 when the tensor was
                       * skipped (s then says why); flag CK_VALUE_F_PARAMETER */
    CK_VALUE_DTYPE,   /* s: torch dtype name ("float32") */
    CK_VALUE_NPDTYPE, /* s: numpy type string ("<f4") */
    CK_VALUE_ARRAY,   /* a small numpy array: s = type string, ndim, shape, data, len;
                       * flag CK_VALUE_F_FORTRAN */
    CK_VALUE_STORAGE, /* a storage by itself: s = its class name ("FloatStorage") */
    CK_VALUE_GLOBAL,  /* a class or function reference: module, name (never imported) */
    CK_VALUE_OBJECT   /* an instance never constructed: module, name, args, state, dict,
                       * list (each may be NULL) */
} ck_value_kind;

enum {
    CK_VALUE_F_ORDERED = 1,    /* DICT: collections.OrderedDict */
    CK_VALUE_F_SIZE = 2,       /* TUPLE: torch.Size */
    CK_VALUE_F_DEVICE = 4,     /* STR: torch.device */
    CK_VALUE_F_FROZEN = 8,     /* SET: frozenset */
    CK_VALUE_F_PARAMETER = 16, /* TENSOR: torch.nn.Parameter */
    CK_VALUE_F_FORTRAN = 32    /* ARRAY: column-major data */
};

typedef struct ck_value ck_value;
struct ck_value {
    ck_value_kind kind;
    unsigned flags;               /* CK_VALUE_F_* */
    uint32_t count;               /* items (pairs for DICT) */
    const ck_value *const *items; /* NULL entries stand for None */
    int64_t i;
    double f[2];
    const char *s;                /* NUL-terminated, or NULL */
    uint64_t len;                 /* bytes of s (of data for ARRAY) */
    const char *module, *name;    /* GLOBAL, OBJECT */
    const ck_value *args, *state, *dict, *list; /* OBJECT; each may be NULL */
    size_t tensor;                /* TENSOR */
    int ndim;                     /* ARRAY */
    const int64_t *shape;         /* ARRAY */
    const void *data;             /* ARRAY */
};

/* The root of the value tree, borrowed until ck_model_close; NULL when the
 * model was not opened with ck_open_opts.values or its format holds no
 * pickled objects (safetensors, raw, sharded). */
CK_API const ck_value *ck_model_values(const ck_model *m);

#ifdef __cplusplus
}
#endif
#endif /* CKPTKIT_H */
