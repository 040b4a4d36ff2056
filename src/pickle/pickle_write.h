/*
 * pickle_write.h -- a protocol-2 pickle emitter, just big enough for what
 * torch.save writes for a state dict and a Lightning-style checkpoint dict.
 *
 * The output is built in a growable buffer (counted against the context's
 * memory). The emitter memoizes exactly as CPython's pickler does at
 * protocol 2, so a caller that replays the same object graph produces the
 * same bytes as torch.save:
 *   - memoized (BINPUT, or LONG_BINPUT from index 256): strings, globals,
 *     non-empty tuples, REDUCE results, empty dicts;
 *   - never memoized: ints, None, booleans, the empty tuple, persistent-id
 *     results (BINPERSID).
 * A value met again is pushed with BINGET/LONG_BINGET through a cki_pkw_ref
 * the caller keeps per object ("storage", "cpu", the rebuild global, a
 * storage key, ...).
 *
 * Opcodes written: PROTO 2, GLOBAL, BINPUT, LONG_BINPUT, BINGET, LONG_BINGET,
 * MARK, EMPTY_TUPLE, TUPLE1-3, TUPLE, EMPTY_DICT, SETITEM, SETITEMS, BININT1,
 * BININT2, BININT, LONG1, BINUNICODE, NONE, NEWTRUE, NEWFALSE, REDUCE,
 * BINPERSID, STOP. Every one of them is accepted by torch 1.13's weights_only
 * unpickler. No float opcode exists here on purpose: that unpickler does not
 * know BINFLOAT.
 *
 * Failures are sticky: emitters return nothing; check cki_pkw_status once at
 * the end (the context then holds the message).
 */
#ifndef CKI_PICKLE_WRITE_H
#define CKI_PICKLE_WRITE_H

#include "../common/cki.h"

/* Opcode bytes (CPython Lib/pickle.py names). */
enum {
    CKI_PK_MARK = '(',
    CKI_PK_STOP = '.',
    CKI_PK_BININT = 'J',
    CKI_PK_BININT1 = 'K',
    CKI_PK_BININT2 = 'M',
    CKI_PK_NONE = 'N',
    CKI_PK_BINPERSID = 'Q',
    CKI_PK_REDUCE = 'R',
    CKI_PK_BINUNICODE = 'X',
    CKI_PK_GLOBAL = 'c',
    CKI_PK_BINGET = 'h',
    CKI_PK_LONG_BINGET = 'j',
    CKI_PK_BINPUT = 'q',
    CKI_PK_LONG_BINPUT = 'r',
    CKI_PK_SETITEM = 's',
    CKI_PK_TUPLE = 't',
    CKI_PK_SETITEMS = 'u',
    CKI_PK_EMPTY_DICT = '}',
    CKI_PK_EMPTY_TUPLE = ')',
    CKI_PK_PROTO = 0x80,
    CKI_PK_TUPLE1 = 0x85,
    CKI_PK_TUPLE2 = 0x86,
    CKI_PK_TUPLE3 = 0x87,
    CKI_PK_NEWTRUE = 0x88,
    CKI_PK_NEWFALSE = 0x89,
    CKI_PK_LONG1 = 0x8a
};

/* CPython batches SETITEMS/APPENDS this many pairs per MARK. */
#define CKI_PKW_BATCH 1000

typedef struct cki_pkw {
    cki_buf out;      /* the pickle so far; out.p / out.len once finished */
    uint32_t memo;    /* entries memoized so far = the next BINPUT index */
    ck_status failed; /* first failure, sticky */
} cki_pkw;

/* A memo slot for one object the caller may push several times. Zero it. */
typedef struct cki_pkw_ref {
    uint32_t idx;
    uint8_t set;
} cki_pkw_ref;

/* Items of one dict, batched like CPython: MARK + up to 1000 pairs + SETITEMS,
 * and a batch of a single pair as key, value, SETITEM. */
typedef struct cki_pkw_items {
    uint64_t total; /* pairs the dict will get */
    uint64_t done;  /* pairs finished */
} cki_pkw_items;

void cki_pkw_init(cki_pkw *w, ck_ctx *ctx);
void cki_pkw_free(cki_pkw *w);
/* CK_OK, or the first failure (message in the context). */
ck_status cki_pkw_status(const cki_pkw *w);

/* PROTO 2. */
void cki_pkw_proto(cki_pkw *w);
/* STOP. */
void cki_pkw_stop(cki_pkw *w);
/* Any opcode without an argument (MARK, REDUCE without memo, ...). */
void cki_pkw_op(cki_pkw *w, uint8_t op);

/* Memoizes the top of the stack (BINPUT/LONG_BINPUT); returns its index. */
uint32_t cki_pkw_put(cki_pkw *w);
/* Pushes memo entry IDX (BINGET/LONG_BINGET). */
void cki_pkw_get(cki_pkw *w, uint32_t idx);

/* An int: BININT1 (0..255), BININT2 (..65535), BININT (32-bit signed),
 * else LONG1 with the shortest two's-complement bytes. Not memoized. */
void cki_pkw_int(cki_pkw *w, int64_t v);
/* None / True / False. Not memoized. */
void cki_pkw_none(cki_pkw *w);
void cki_pkw_bool(cki_pkw *w, int v);
/* BINUNICODE of S[0..N) (valid UTF-8: the caller checks), memoized. */
uint32_t cki_pkw_str(cki_pkw *w, const char *s, size_t n);
/* GLOBAL "MODULE\nNAME\n", memoized. */
uint32_t cki_pkw_global(cki_pkw *w, const char *module, const char *name);
/* The same, pushed with BINGET when REF was filled before (else emitted and
 * REF filled). */
void cki_pkw_str_ref(cki_pkw *w, const char *s, size_t n, cki_pkw_ref *ref);
void cki_pkw_global_ref(cki_pkw *w, const char *module, const char *name, cki_pkw_ref *ref);

/* A tuple of N items: call begin, push the N items, call end. N == 0 gives
 * EMPTY_TUPLE (not memoized); 1..3 TUPLE1..3; more MARK ... TUPLE. Non-empty
 * tuples are memoized. */
void cki_pkw_tuple_begin(cki_pkw *w, size_t n);
void cki_pkw_tuple_end(cki_pkw *w, size_t n);
/* REDUCE, memoized (callable and args tuple must be on the stack). */
void cki_pkw_reduce(cki_pkw *w);
/* BINPERSID (the id tuple must be on the stack). Not memoized. */
void cki_pkw_persid(cki_pkw *w);
/* EMPTY_DICT, memoized. */
void cki_pkw_empty_dict(cki_pkw *w);

/* Dict items (dict or OrderedDict on the stack): init with the pair count,
 * then per pair: item_start, push key and value, item_end. */
void cki_pkw_items_init(cki_pkw_items *it, uint64_t total);
void cki_pkw_item_start(cki_pkw *w, cki_pkw_items *it);
void cki_pkw_item_end(cki_pkw *w, cki_pkw_items *it);

#endif
