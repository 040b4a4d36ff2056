/*
 * pickle.h -- the restricted pickle machine and its inert value tree.
 *
 * The machine runs every opcode of protocols 0-5 but never imports or calls
 * anything: GLOBAL/STACK_GLOBAL push global(module, name) nodes, REDUCE and
 * NEWOBJ push call nodes, BUILD attaches a state to the node below, BINPERSID
 * pushes persid nodes. What those nodes mean is decided afterwards by
 * recognisers (torch rebuild functions, OrderedDict, ...); everything else
 * stays an opaque node. The scanner walks the same parse, so what the loader
 * reads is exactly what the scanner judged.
 *
 * All nodes live in the caller's arena. Strings point into the arena (copied
 * and NUL-terminated), never into the input.
 */
#ifndef CKI_PICKLE_H
#define CKI_PICKLE_H

#include "../common/cki.h"

typedef enum cki_pv_kind {
    CKI_PV_NONE,
    CKI_PV_BOOL,     /* u.i is 0 or 1 */
    CKI_PV_INT,      /* fits int64: u.i */
    CKI_PV_BIGINT,   /* u.s: little-endian two's complement bytes (LONG1/LONG4/LONG) */
    CKI_PV_FLOAT,    /* u.f */
    CKI_PV_STR,      /* u.s: UTF-8 text (unicode, or py2 str decoded) */
    CKI_PV_BYTES,    /* u.s: bytes / bytearray */
    CKI_PV_TUPLE,    /* items[0..n) */
    CKI_PV_LIST,     /* items[0..n) */
    CKI_PV_DICT,     /* items[0..2n): key, value, key, value, ... in insertion order */
    CKI_PV_SET,      /* items[0..n) */
    CKI_PV_FROZENSET,/* items[0..n) */
    CKI_PV_GLOBAL,   /* u.g: module and name (Py2 names mapped: __builtin__ -> builtins) */
    CKI_PV_REDUCE,   /* callable(args): items[0] callable, items[1] args (tuple); n = 2 */
    CKI_PV_NEWOBJ,   /* cls.__new__(cls, *args, **kwargs): items[0] cls, [1] args, [2] kwargs
                      * or absent (n = 2 or 3); also INST/OBJ */
    CKI_PV_PERSID,   /* persistent id: items[0] is the pid value; n = 1 */
    CKI_PV_TREBUILD  /* only from cki_pickle_run_lean: a canonical torch tensor rebuild call
                      * kept as one record (see CKI_TRB_* below); the REDUCE's place */
} cki_pv_kind;

typedef struct cki_pv cki_pv;
struct cki_pv {
    /* kind, shared flag, counts and height share 16 bytes (a state dict has
     * about 7 nodes per tensor: every byte here is 700 KB per 100,000) */
    uint8_t kind;    /* a cki_pv_kind */
    uint8_t shared;  /* 1: an interned immutable value (None, a bool, a small int, the empty
                      * tuple, a tuple of at most 3 interned values) that the machine hands out
                      * for every equal value of one run, like CPython's small-int cache */
    uint16_t mflags; /* the machine's own bookkeeping while it runs (CKI_PV_M_*) */
    uint32_t n;   /* item count (pairs for DICT) */
    uint32_t cap; /* allocated item slots */
    /* Set when the machine reaches STOP, on every node the root reaches: the
     * number of nodes on the longest downward chain from this node (1 for a
     * node without children, else 1 + its largest child height), the back
     * edges of cycles not followed. At most CK_LIMIT_PICKLE_DEPTH (larger
     * graphs are refused). 0 on nodes the root does not reach. */
    uint32_t height;
    union {
        int64_t i;
        double f;
        struct {
            const char *p; /* NUL-terminated copy in the arena */
            uint64_t len;
        } s;
        struct {
            const char *module;
            const char *name;
        } g;
    } u;
    cki_pv **items;
    uint64_t off;   /* byte offset (within the pickle stream) of the opcode that made it */
    /* The rarely set links (state, state_prev, extra, extra_list), in a
     * record of their own made on first use: read them with cki_pv_state,
     * cki_pv_state_prev, cki_pv_extra and cki_pv_extra_list. NULL while none
     * is set. (A node is 64 bytes.) */
    struct cki_pv_more *more;
    void *walk; /* scratch for one walker at a time (the torch recogniser caches the object it
                 * made from this node here); NULL when the machine made the node */
};

/* mflags: the node was stored in the memo, duplicated (DUP) or fetched
 * (GET), so more than one place may point to it */
#define CKI_PV_M_ESCAPED 1u

typedef struct cki_pv_more {
    cki_pv *state;      /* set by BUILD on this node (last BUILD wins; earlier ones chained
                         * through state_prev) */
    cki_pv *state_prev; /* see state */
    /* ---- added for items given to objects that are not plain containers ----
     * SETITEM/SETITEMS whose target is a REDUCE, NEWOBJ, GLOBAL or PERSID node
     * (an OrderedDict(), an AttributeDict, a dict subclass...) go to EXTRA: a
     * DICT node created on the first such opcode (its off is that opcode's),
     * key, value pairs in order. APPEND/APPENDS (and ADDITEMS) on such a
     * target go to EXTRA_LIST, a LIST node. Both may be set on one node; both
     * are NULL until used. Targets that are tuples, strings, numbers, sets
     * (for SETITEM/APPEND) or dicts (for APPEND) are refused as malformed. */
    cki_pv *extra;
    cki_pv *extra_list;
} cki_pv_more;

static inline cki_pv *cki_pv_state(const cki_pv *v)
{
    return v->more ? v->more->state : NULL;
}
static inline cki_pv *cki_pv_state_prev(const cki_pv *v)
{
    return v->more ? v->more->state_prev : NULL;
}
static inline cki_pv *cki_pv_extra(const cki_pv *v)
{
    return v->more ? v->more->extra : NULL;
}
static inline cki_pv *cki_pv_extra_list(const cki_pv *v)
{
    return v->more ? v->more->extra_list : NULL;
}

/*
 * Reading the tree (notes added with the machine):
 *  - It is a graph, not a tree: the memo hands out pointers, so one node can
 *    sit in many places (DUP, GET), and a container can contain itself
 *    (EMPTY_LIST, PUT 0, GET 0, APPEND). Immutable small values are interned
 *    (->shared = 1): None, True, False, ints in [-256, 1024), the empty
 *    tuple and tuples of 1-3 interned values are one node per value and
 *    run, wherever they appear (a 100,000-tensor state dict repeats
 *    (0, (4,), (1,), False, ()) in every tensor). Such a node's ->off is that
 *    of its first occurrence. BUILD on an interned node (which Python itself
 *    refuses for these types) attaches its state to a private copy on the
 *    stack, so no other occurrence changes. Every walker keeps a visited set or
 *    an on-path set, and expands a shared node once.
 *  - Children of a node, in the order cki_pv_child gives them: items, state,
 *    state_prev, extra, extra_list.
 *  - A node BUILT more than once: ->state is the last state; ->state_prev is
 *    a holder node (kind CKI_PV_NONE, n = 0) whose ->state is the previous
 *    state and whose ->state_prev continues the chain, newest first. State
 *    nodes themselves are never modified, so a shared state stays intact.
 *  - DICT keeps every pair in order, duplicates included (a later pair wins
 *    in Python; cki_pv_dict_get returns the last match).
 *  - STR holds UTF-8. BINUNICODE & co. are decoded like Python's
 *    'surrogatepass', so a lone surrogate (U+D800..U+DFFF) stays as its
 *    3-byte form. Python 2 str (STRING, BINSTRING, SHORT_BINSTRING) becomes
 *    STR when it is valid UTF-8 and BYTES otherwise; u.s holds the exact
 *    bytes either way, so a recogniser wanting raw bytes accepts both kinds.
 *  - BIGINT bytes are minimal two's complement (no redundant sign bytes) and
 *    never fit int64 (those become INT). LONG1/LONG4 of 0 bytes is INT 0.
 *  - BYTES comes from BINBYTES*, SHORT_BINBYTES and BYTEARRAY8 alike.
 *  - INST pushes NEWOBJ(GLOBAL, TUPLE(args)); OBJ pushes NEWOBJ(cls,
 *    TUPLE(args)). PERSID (text) pushes PERSID(STR).
 *  - out->end is relative to P (not BASE_OFF): the next pickle of a chain
 *    starts at P + end and is run with BASE_OFF + end.
 *  - On failure cki_pickle_run still fills out->globals and
 *    out->global_count with the globals met before the failing opcode (so a
 *    scanner can name them), and sets out->root to NULL.
 */

/* One global reference the machine met (GLOBAL, STACK_GLOBAL, INST, OBJ
 * target). For STACK_GLOBAL whose operands are not plain strings, module and
 * name are "?" and resolved is 0: scanners treat these as dangerous. */
typedef struct cki_pickle_global {
    const char *module;
    const char *name;
    uint64_t off;
    int resolved;
} cki_pickle_global;

typedef struct cki_pickle {
    cki_pv *root;       /* the value STOP popped */
    uint64_t end;       /* offset just after STOP */
    int protocol;       /* from PROTO, or 0 */
    cki_pickle_global *globals; /* in arena */
    size_t global_count;
    uint64_t opcodes;   /* opcodes executed */
    cki_arena *texts;   /* where the texts of STR, BYTES and BIGINT nodes live: the
                         * lean run's TEXT, else the arena */
} cki_pickle;

/*
 * Runs one pickle from P[0..LEN) up to and including its STOP. FILE and WHERE
 * ("archive/data.pkl", "legacy stream pickle 4") name it in messages, e.g.
 * "m.pt: archive/data.pkl: opcode 0x52 (REDUCE) at byte 812: stack is empty".
 * BASE_OFF is added to reported offsets. Limits come from the context
 * (CK_LIMIT_PICKLE_DEPTH/_MEMO/_STACK) and from LEN (no string, container or
 * memo can be larger than the input allows). Out-of-band buffers and
 * extension codes are refused. Bytes after STOP are left alone: the caller
 * decides (legacy files chain pickles; scanners look for a second pickle).
 */
ck_status cki_pickle_run(ck_ctx *ctx, cki_arena *arena, const uint8_t *p, size_t len,
                         const char *file, const char *where, uint64_t base_off, cki_pickle *out);

/*
 * The same run in less memory, for callers that keep only the globals, or
 * that convert the graph with the torch recogniser and drop it (the scan, the
 * streaming reader of a torch zip). Two differences, neither visible in what
 * those callers get:
 *  - memo filter: a first pass over the opcodes (same framing) collects the
 *    keys that some BINGET / LONG_BINGET fetches; a PUT of any other key is
 *    checked and counted as usual (limit, messages, MEMOIZE numbering) but
 *    keeps no pointer, so the value is reachable only from where the
 *    program puts it. Streams with text memo opcodes, MEMOIZE, keys larger
 *    than the input or anything the first pass cannot frame run unfiltered.
 *  - torch rebuilds: REDUCE of GLOBAL torch._utils._rebuild_tensor_v2 on
 *    exactly (PERSID(('storage', GLOBAL, STR key, STR location, INT numel)),
 *    INT offset, TUPLE of INTs size, TUPLE of INTs stride, BOOL,
 *    REDUCE(GLOBAL collections.OrderedDict, ())), every value a plain one
 *    (no BUILD state, no items given to it), pushes one CKI_PV_TREBUILD node
 *    instead; the argument nodes that nothing else can reach (never memo
 *    stored, duplicated or fetched, not interned) are recycled for the next
 *    values. Its height (at STOP) is that of the call it replaces.
 * TEXT (NULL: ARENA) receives the texts of STR, BYTES and BIGINT nodes, so a
 * caller that keeps them past the graph need not copy them (out->texts).
 * Any failure of that run (a fetch of a key the first pass missed, a limit,
 * a malformed stream) runs the pickle again exactly as cki_pickle_run, in
 * the same arena, and reports that run: results and messages never differ,
 * a hostile file only costs the second run.
 */
ck_status cki_pickle_run_lean(ck_ctx *ctx, cki_arena *arena, cki_arena *text, const uint8_t *p,
                              size_t len, const char *file, const char *where,
                              uint64_t base_off, cki_pickle *out);

/* CKI_PV_TREBUILD: u.s is the storage key (the STR's text), items[0..n) are
 * (n = CKI_TRB_COUNT): */
enum {
    CKI_TRB_SHARED, /* a TUPLE of the values most calls share (CKI_TRS_*), one node for
                     * every record with the same six: the machine makes it */
    CKI_TRB_NUMEL,  /* INT */
    CKI_TRB_OFFSET, /* INT */
    CKI_TRB_SIZE,   /* TUPLE of INTs */
    CKI_TRB_STRIDE, /* TUPLE of INTs */
    CKI_TRB_GRAD,   /* BOOL */
    CKI_TRB_COUNT
};
enum {
    CKI_TRS_CALLABLE,    /* the GLOBAL torch._utils._rebuild_tensor_v2 */
    CKI_TRS_TAG,         /* the STR 'storage' of the persistent id */
    CKI_TRS_CLASS,       /* the storage class GLOBAL */
    CKI_TRS_LOCATION,    /* STR */
    CKI_TRS_HOOKS_CLASS, /* the GLOBAL collections.OrderedDict */
    CKI_TRS_HOOKS_ARGS,  /* the empty TUPLE */
    CKI_TRS_COUNT
};
/* Byte offsets of the persistent id (WHICH 0) and of the OrderedDict() call
 * (WHICH 1) the record replaces: both lie before the record's own offset, at
 * most 2^32 - 1 bytes before (or the call is not made a record); the two
 * distances follow the items in the same array. */
static inline uint64_t cki_pv_trebuild_off(const cki_pv *v, int which)
{
    uint32_t d;
    memcpy(&d, (const char *)(v->items + CKI_TRB_COUNT) + 4 * which, 4);
    return v->off - d;
}

/* ---- queries used by recognisers ---------------------------------------- */

/* 1 if V is GLOBAL module.name. */
int cki_pv_is_global(const cki_pv *v, const char *module, const char *name);
/* 1 if V is REDUCE or NEWOBJ whose callable is GLOBAL module.name. */
int cki_pv_is_call_of(const cki_pv *v, const char *module, const char *name);
/* The args tuple of a REDUCE/NEWOBJ node, or NULL. */
const cki_pv *cki_pv_call_args(const cki_pv *v);
/* Value for string KEY in DICT, or NULL. */
const cki_pv *cki_pv_dict_get(const cki_pv *dict, const char *key);
/* 1 if V is STR equal to S. */
int cki_pv_is_str(const cki_pv *v, const char *s);
/* Integer value of INT/BOOL (or BIGINT that fits); 0 on success, 1 otherwise. */
int cki_pv_to_i64(const cki_pv *v, int64_t *out);

/* ---- added with the machine ---------------------------------------------- */

/* Number of nodes V points to (items, then state, state_prev, extra,
 * extra_list; absent ones are not counted), and the I-th of them. For
 * generic walks; remember the graph can be cyclic. */
size_t cki_pv_child_count(const cki_pv *v);
const cki_pv *cki_pv_child(const cki_pv *v, size_t i);
/* Short lowercase name of a kind ("dict", "reduce", ...), for messages. */
const char *cki_pv_kind_name(cki_pv_kind kind);

#endif
