/*
 * torch_objects.h -- what a torch checkpoint's value tree means.
 *
 * The pickle machine (pickle.h) leaves an inert graph of globals, calls and
 * containers. The recogniser here turns it into a graph of torch objects:
 *
 *   tensors   _rebuild_tensor_v2/_v3, _rebuild_tensor, _rebuild_parameter
 *             (_with_state), Parameter(...), _rebuild_from_type_v2 (the tensor
 *             inside), _rebuild_device_tensor_from_cpu_tensor; their storage
 *             comes from a persistent id ('storage', <XStorage>, key,
 *             location, numel[, view_metadata]) and their conj/neg flags from
 *             the metadata dict. Quantized, sparse, meta, nested and wrapper
 *             tensors become tensors marked `unsupported` (with the reason):
 *             readers skip them with a warning naming the tensor.
 *   values    OrderedDict, defaultdict, Counter, dict/list/tuple/set/
 *             frozenset calls, slice, complex, bytearray, _codecs.encode
 *             (latin-1 text -> bytes), torch.Size (tuple), torch.device
 *             (string), torch dtypes, numpy scalars (numbers), numpy dtypes,
 *             small numpy arrays, argparse.Namespace (dict of its state).
 *   opaque    anything else: an object node (module, name, args, state,
 *             items, list) that is never called, but whose tensors can still
 *             be reached.
 *
 * Shared references stay shared (one object per pickle node) and cycles stay
 * cycles: every walker over this graph (torch_select.c) keeps an on-path mark.
 * Conversion recursion is capped at CK_LIMIT_PICKLE_DEPTH levels.
 *
 * Naming (torch_select.c) picks which tensors a checkpoint exposes and under
 * which names, renders the non-tensor values as JSON, and finds Lightning's
 * scalar metadata.
 */
#ifndef CKI_TORCH_OBJECTS_H
#define CKI_TORCH_OBJECTS_H

#include "pickle.h"

typedef enum cki_tobj_kind {
    CKI_TO_NONE,
    CKI_TO_BOOL,    /* u.i */
    CKI_TO_INT,     /* u.i */
    CKI_TO_BIGINT,  /* u.s: little-endian two's complement */
    CKI_TO_FLOAT,   /* u.f */
    CKI_TO_COMPLEX, /* u.c[0] real, u.c[1] imaginary */
    CKI_TO_STR,     /* u.s (UTF-8) */
    CKI_TO_BYTES,   /* u.s */
    CKI_TO_TUPLE,   /* items[0..n) */
    CKI_TO_LIST,    /* items[0..n) */
    CKI_TO_SET,     /* items[0..n) (set and frozenset) */
    CKI_TO_DICT,    /* items[0..2n): key, value, ... */
    CKI_TO_SLICE,   /* items[0..3): start, stop, step */
    CKI_TO_TENSOR,  /* u.t */
    CKI_TO_STORAGE, /* u.st: a storage object by itself */
    CKI_TO_DTYPE,   /* u.dt: torch.float32 & co. */
    CKI_TO_NPDTYPE, /* u.s: numpy type string, e.g. "<f4" */
    CKI_TO_ARRAY,   /* u.arr: a numpy array with its raw bytes */
    CKI_TO_GLOBAL,  /* u.g: a class or function reference, not called */
    CKI_TO_OBJECT   /* u.g: opaque instance; args, state, dict, list */
} cki_tobj_kind;

typedef struct cki_tobj cki_tobj;

/* A torch storage as persistent ids name it; one per distinct (key, view). */
typedef struct cki_tstorage {
    /* pointers and 64-bit values first, the small fields packed at the end
     * (one of these per storage: a 100,000-tensor file has 100,000) */
    const char *key;         /* record key ("0", "140234...") */
    const char *type_name;   /* "FloatStorage", "UntypedStorage", ... */
    const char *location;    /* "cpu", "cuda:0"; may be NULL */
    const char *unsupported; /* reason the bytes cannot be used (quantized ...), or NULL */
    uint64_t numel;          /* elements (bytes when untyped) as the id says */
    /* a view's root and where the bytes are (legacy, tar): NULL for the
     * storages of a zip file, which the reader finds by key */
    struct cki_tstorage_where *where;
    void *bound;             /* the reader's cki_storage, once made */
    uint8_t dtype;           /* a ck_dtype: element type; CK_DT_COUNT if untyped or
                              * unsupported */
    uint8_t untyped;         /* UntypedStorage: numel counts bytes */
    uint8_t is_view;         /* see where->view_key */
    uint8_t located;         /* see where->data_off */
    uint32_t index;          /* position in the recogniser's table */
} cki_tstorage;

typedef struct cki_tstorage_where {
    /* legacy view_metadata (view_key, offset, size), in elements of the root */
    const char *view_key;
    uint64_t view_off, view_size;
    /* where the bytes are, filled by the file reader (legacy, tar): located */
    uint64_t data_off, data_len;
} cki_tstorage_where;

typedef struct cki_ttensor {
    cki_tstorage *storage;   /* NULL only when unsupported */
    const char *torch_dtype; /* torch spelling when known ("float32"), else NULL */
    int64_t *shape;
    int64_t *stride;         /* ndim entries (torch always records strides) */
    uint64_t offset;         /* in elements */
    const char *unsupported; /* "quantized tensor", "sparse tensor", ... or NULL */
    uint64_t off;            /* pickle offset of the rebuild call */
    ck_dtype dtype;          /* CK_DT_COUNT when unsupported and unknown */
    int16_t ndim;            /* -1 when unknown */
    uint8_t flags;           /* CKI_T_CONJ, CKI_T_NEG (tensor.h) */
    uint8_t parameter;       /* came through a Parameter rebuild */
} cki_ttensor;

typedef struct cki_tarray {
    const char *dtype; /* numpy type string "<f4"; NULL if not a plain number type */
    int ndim;
    int64_t *shape;
    int fortran;
    const uint8_t *data; /* raw bytes (NULL for object arrays) */
    uint64_t len;
} cki_tarray;

typedef struct cki_tdtype {
    const char *name; /* torch name: "float32", "bfloat16", ... */
    ck_dtype dt;      /* CK_DT_COUNT when ckptkit has no equivalent */
    int pairs;        /* float4_e2m1fn_x2: each element holds 2 logical F4 values */
} cki_tdtype;

struct cki_tobj {
    uint8_t kind;    /* a cki_tobj_kind */
    uint8_t vflags;  /* which Python type a plain value came from (CK_VALUE_F_ORDERED,
                        _SIZE, _DEVICE, _FROZEN): for the public value tree */
    uint16_t spare_;
    uint32_t n;
    cki_tobj **items;
    union {
        int64_t i;
        double f;
        double c[2];
        struct {
            const char *p;
            uint64_t len;
        } s;
        struct {
            const char *module;
            const char *name;
        } g;
        cki_ttensor *t;
        cki_tstorage *st;
        cki_tdtype dt;
        cki_tarray *arr;
    } u;
    /* CKI_TO_OBJECT only (NULL otherwise, and on objects without any):
     * read through cki_tobj_args, _state, _dict, _list */
    struct cki_tobj_parts *parts;
    uint64_t off;  /* pickle offset of the node it came from */
    uint32_t mark; /* walkers' bookkeeping (torch_select.c) */
    uint32_t seen; /* walkers' epoch */
};

/* Resolves a persistent id (the pid value of a PERSID node) into a tobj
 * (storage or tensor) for formats whose ids are not 'storage' tuples (tar). */
/* An opaque object's call arguments (TUPLE), BUILD state, items set on it
 * (DICT), items appended to it (LIST); each may be NULL. A record of its own
 * so that the many plain values (a state dict's names and tensors) do not
 * carry four empty links. */
typedef struct cki_tobj_parts {
    cki_tobj *args, *state, *dict, *list;
} cki_tobj_parts;

static inline cki_tobj *cki_tobj_args(const cki_tobj *t)
{
    return t->parts ? t->parts->args : NULL;
}
static inline cki_tobj *cki_tobj_state(const cki_tobj *t)
{
    return t->parts ? t->parts->state : NULL;
}
static inline cki_tobj *cki_tobj_dict(const cki_tobj *t)
{
    return t->parts ? t->parts->dict : NULL;
}
static inline cki_tobj *cki_tobj_list(const cki_tobj *t)
{
    return t->parts ? t->parts->list : NULL;
}

typedef struct cki_trec cki_trec;
typedef ck_status (*cki_persid_fn)(void *user, cki_trec *r, const cki_pv *pid, uint64_t off,
                                   cki_tobj **out);

struct cki_trec {
    ck_ctx *ctx;
    cki_arena *arena; /* tobjs live here (the same arena as the pickle) */
    const char *file; /* for messages */
    const char *where;
    cki_persid_fn persid; /* NULL: 'storage' tuples only */
    void *persid_user;
    /* pickle node -> tobj: cached in cki_pv.walk */
    /* storages by key (+ view key) */
    cki_tstorage **storages;
    size_t storage_count, storage_cap;
    cki_map storage_index;
    /* torch.save numbers storages "0", "1", "2", ...: a key that is a plain
     * decimal number N below a bound growing with the count has slot N here
     * (index + 1; 0: none) instead of an entry in storage_index (4 bytes a
     * storage instead of about 40). Use cki_trec_find_storage. */
    uint32_t *storage_by_num;
    size_t storage_by_num_cap;
    uint32_t max_depth;
    uint32_t epoch;      /* walkers bump it */
    uint64_t objects;    /* tobjs made */
    const char *last_type, *last_loc; /* storage class and location of the last storage
                                       * made (in ARENA): later equal ones share them */
    int copy_strings;    /* 1: tobjs copy the pickle's strings into ARENA, so the pickle's
                          * own arena may be freed once the conversion is done */
    cki_arena *names;    /* where cki_torch_select puts tensor names; NULL: ARENA (a
                          * reader passes its model's arena and keeps them) */
    cki_arena *desc;     /* where tensor and storage descriptions go, with their shapes,
                          * strides and strings; NULL: ARENA (a reader may then free the
                          * objects and keep the descriptions) */
    const cki_arena *graph_texts; /* where the graph's str/bytes texts are: when it is
                          * TEXT, copy_strings points to them instead of copying */
    cki_arena *text;     /* where copy_strings puts str/bytes texts; NULL: ARENA (with
                          * TEXT == NAMES a name equal to one key's text is that text) */
};

/* FILE and WHERE name the pickle in messages; ARENA must outlive the result. */
void cki_trec_init(cki_trec *r, ck_ctx *ctx, cki_arena *arena, const char *file,
                   const char *where);
void cki_trec_free(cki_trec *r);

/* Converts the graph under ROOT. Fails on malformed rebuild calls (a tensor
 * whose size is not a tuple of ints, a persistent id that is not a storage,
 * an unknown storage class, ...) with a message naming the pickle offset. */
ck_status cki_trec_convert(cki_trec *r, const cki_pv *root, cki_tobj **out);

/* The storage for KEY (and legacy VIEW_KEY, or NULL), created on first use
 * with the given description; a later use with another class or size fails.
 * For readers whose ids are not 'storage' tuples. */
ck_status cki_trec_storage(cki_trec *r, const char *key, const char *view_key,
                           const char *type_module, const char *type_name, uint64_t numel,
                           uint64_t off, cki_tstorage **out);

/* The storage whose key is KEY (not a legacy view), or NULL. */
cki_tstorage *cki_trec_find_storage(const cki_trec *r, const char *key);
/* Frees the storages' key index (both forms); later lookups find nothing,
 * and later storages are indexed again. */
void cki_trec_drop_index(cki_trec *r);

/* The dtype of a storage class torch.<NAME> ("FloatStorage" -> F32). Returns
 * 0 and sets *DT, *UNTYPED (and *UNSUPPORTED for quantized storages, with *DT
 * = CK_DT_COUNT); 1 if NAME is not a storage class. */
int cki_torch_storage_dtype(const char *name, ck_dtype *dt, int *untyped,
                            const char **unsupported);
/* Bytes of one element of storage S's class (1 when untyped; quantized
 * classes by their element type). */
unsigned cki_tstorage_esize(const cki_tstorage *s);
/* S's where record, made (zeroed, in the descriptions' arena) on first use;
 * NULL when out of memory. */
cki_tstorage_where *cki_tstorage_where_of(cki_trec *r, cki_tstorage *s);
/* A torch dtype global (torch.float32, torch.half, ...): 0 and *OUT set, or 1. */
int cki_torch_dtype_global(const char *module, const char *name, cki_tdtype *out);

/* 1 if T is a DICT-like node: a DICT, or an OBJECT with set items. The
 * pairs are then items[0..2n) of *PAIRS (DICT) -- for OBJECTs their dict. */
const cki_tobj *cki_tobj_as_dict(const cki_tobj *t);
/* Value for string KEY in a dict-like node, or NULL (last match wins). */
cki_tobj *cki_tobj_get(const cki_tobj *dict, const char *key);
/* 1 if T is an nn.Module-like object (BUILD state holds _parameters and
 * _modules). */
int cki_tobj_is_module(const cki_tobj *t);

/* ---- naming (torch_select.c) ----------------------------------------------- */

typedef struct cki_tnamed {
    const char *name; /* in the recogniser's arena */
    size_t name_len;
    cki_tobj *tensor; /* CKI_TO_TENSOR */
} cki_tnamed;

typedef struct cki_tselect {
    cki_tnamed *v; /* cki_malloc'd */
    size_t count, cap;
    const cki_tobj *exposed; /* the container the names are relative to (NULL: the root, --all) */
    const char *exposed_path; /* dotted path of EXPOSED ("" for the root) */
} cki_tselect;

/*
 * Chooses the tensors to expose:
 *  - KEY (dotted path, may be NULL): the object at that path;
 *  - ALL: every tensor of the graph under its dotted path from the root;
 *  - otherwise by rule: a flat dict of tensors is the state dict itself;
 *    else the first of state_dict, model_state_dict, model, module, net,
 *    params, ema that holds tensors (repeatedly); else everything.
 * A pickled nn.Module yields the names its state_dict() would give
 * (_parameters, persistent _buffers, then _modules, recursively). A tensor at
 * the root is named "tensor". Each container is expanded once per path and
 * never inside itself (cycles), within an expansion budget.
 */
ck_status cki_torch_select(cki_trec *r, cki_tobj *root, const char *key, int all,
                           cki_tselect *out);
void cki_tselect_free(ck_ctx *ctx, cki_tselect *s);

/* The non-tensor values as JSON (cki_malloc'd, owned by the caller): tensors
 * as {"tensor": {"dtype", "shape"}}, opaque objects as {"object":
 * "module.name", "args", "state", ...}, bytes as {"bytes": N}, the exposed
 * state dict as {"tensors": N}. At most about CKI_TORCH_JSON_MAX bytes:
 * deeper values are replaced by "..." once the budget is spent. */
#define CKI_TORCH_JSON_MAX (4u << 20)
ck_status cki_torch_values_json(cki_trec *r, const cki_tobj *root, const cki_tselect *sel,
                                char **out);

/* Lightning scalars at the top of ROOT (epoch, global_step,
 * pytorch-lightning_version, when plain ints or strings): calls FN for each. */
typedef ck_status (*cki_meta_fn)(void *user, const char *key, const char *value);
ck_status cki_torch_lightning_meta(const cki_tobj *root, cki_meta_fn fn, void *user);

/* Item size of a numpy typestr such as "<f4" or "|b1": the digits after its
 * byte-order and kind characters, 1 to 64; -1 when they are not all digits or
 * out of range. */
int cki_np_itemsize(const char *descr);

#endif
