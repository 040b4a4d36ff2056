/*
 * tree_write.h -- writes a pickle value graph (pickle.h) back as a protocol-2
 * pickle that torch's weights-only unpickler accepts, keeping everything it
 * can and rewriting or removing what it cannot.
 *
 * What is written, node by node (the graph is walked once; a node met again
 * is pushed with BINGET, so identity and sharing survive):
 *   None, bools, ints             NONE, NEWTRUE/NEWFALSE, BININT*, LONG1 (an
 *                                 int needing more than 255 bytes is refused:
 *                                 the loader has no LONG4)
 *   floats                        BINFLOAT (see FORMATS.md: torch 1.13's
 *                                 weights-only loader cannot read any float)
 *   str                           BINUNICODE
 *   bytes                         _codecs.encode(latin-1 text, 'latin1')
 *   tuple, list, dict             TUPLE*, EMPTY_LIST + APPEND(S),
 *                                 EMPTY_DICT + SETITEM(S)
 *   set, frozenset                builtins.set([items]) (EMPTY_SET when
 *                                 empty); a frozenset is reported: -> set
 *   calls of allowlisted globals  the call as read (REDUCE / NEWOBJ), then
 *                                 appended items, set items, BUILD state
 *   tensors, storages             through the caller's hooks
 * Allowlisted means: in the set of globals torch 2.13's weights-only
 * unpickler accepts (collections.OrderedDict/Counter, torch.Size,
 * torch.device, dtypes, storage and tensor classes, the tensor rebuild
 * functions, Parameter, _codecs.encode, builtins.set/bytearray/complex, ...).
 *
 * Everything else follows a policy:
 *   dangerous references (the scanner's verdict: os.system, eval, ...) and
 *   every call of one are always removed; unknown classes and functions
 *   follow UNKNOWN: CKI_TW_DICT rebuilds each as plain data (Namespace,
 *   SimpleNamespace, AttributeDict and dict subclasses become the dict of
 *   their fields; numpy scalars and other values the recogniser reads
 *   become that value; defaultdict a dict; anything else the dict
 *   {'class': 'module.name', 'args': ..., 'kwargs': ..., 'state': ...,
 *   'items': {...}, 'list': [...]} of what is present), CKI_TW_DROP removes
 *   it, CKI_TW_KEEP writes it back as read.
 * A removed value disappears from a dict (with its key), a list or a set; in
 * a tuple it becomes None. Each rewrite or removal is reported through REPORT
 * with the value's dotted path ("hyper_parameters.loss_fn"; "" for the
 * root), what it was and what it became.
 */
#ifndef CKI_TREE_WRITE_H
#define CKI_TREE_WRITE_H

#include "pickle_write.h"
#include "torch_objects.h"

enum { CKI_TW_DICT = 0, CKI_TW_DROP = 1, CKI_TW_KEEP = 2 };

typedef struct cki_tw cki_tw;

/* Tensor hook: NODE is a tensor rebuild call (or a tar persistent id) whose
 * object is T. Emit exactly one value (the tensor) on the pickle. */
typedef ck_status (*cki_tw_tensor_fn)(void *user, cki_tw *tw, const cki_pv *node,
                                      const cki_tobj *t);
/* Storage hook: NODE is a persistent id whose object S is a storage; emit one value. */
typedef ck_status (*cki_tw_storage_fn)(void *user, cki_tw *tw, const cki_pv *node,
                                       const cki_tobj *s);
/* 1 if tensor T is to be left out (the caller's selection). */
typedef int (*cki_tw_omit_fn)(void *user, const cki_tobj *t);
/* The key a tensor T takes in the state dict, or NULL to keep KEY. */
typedef const char *(*cki_tw_key_fn)(void *user, const cki_tobj *t, const char *key);
/* PATH ("" for the root), WHAT ("torch.nn.modules.loss.MSELoss"), BECAME ("dict"). */
typedef void (*cki_tw_report_fn)(void *user, const char *path, const char *what,
                                 const char *became);

typedef struct cki_tw_memo {
    const cki_pv *key;
    uint32_t idx;   /* memo index in the output */
    uint8_t state;  /* 1: being written, 2: written and memoized */
} cki_tw_memo;

struct cki_tw {
    ck_ctx *ctx;
    cki_pkw *pk;
    int unknown;                /* CKI_TW_DICT / DROP / KEEP */
    const cki_tobj *state_dict; /* the container whose tensor keys KEY may rename */
    cki_tw_tensor_fn tensor;
    cki_tw_storage_fn storage;
    cki_tw_omit_fn omit;
    cki_tw_key_fn key;
    cki_tw_report_fn report;
    void *user;
    /* results */
    uint64_t removed;   /* dangerous values removed */
    uint64_t rewritten; /* unknown values rewritten or dropped */
    /* internal */
    cki_tw_memo *memo;
    size_t memo_count, memo_cap;
    char *path;
    size_t path_len, path_cap;
    uint32_t depth;
};

void cki_tw_init(cki_tw *tw, ck_ctx *ctx, cki_pkw *pk);
void cki_tw_free(cki_tw *tw);

/* Writes ROOT (no PROTO, no STOP). *ROOT_GONE is set to 1 when the root
 * itself was removed (nothing is written then). */
ck_status cki_tw_write(cki_tw *tw, const cki_pv *root, int *root_gone);
/* Writes V at the current path (for hooks writing a rebuild call's other
 * arguments); a removed V is written as None. */
ck_status cki_tw_value(cki_tw *tw, const cki_pv *v);

/* 1 if torch 2.13's weights-only unpickler accepts GLOBAL module.name. */
int cki_tw_allowed(const char *module, const char *name);
/* The recogniser's object for V (NULL if it made none). */
const cki_tobj *cki_tw_tobj(const cki_pv *v);

#endif
