/*
 * machine.c -- the restricted pickle machine: every opcode of protocols 0-5,
 * nothing imported, nothing called.
 *
 * A pickle is a byte program for a stack machine. Each opcode is one byte,
 * followed by a fixed-size argument (u8, u16/i32/u32/u64 little-endian, an
 * 8-byte big-endian double), a length-prefixed string, or text lines ending
 * in '\n' (protocol 0). The machine keeps
 *   - the stack of value nodes (pointers: DUP and GET never copy a value),
 *   - the metastack of MARK positions; the topmost mark is a fence that no
 *     opcode may pop through, as in CPython's _pickle (POP on an empty
 *     fenced stack removes the mark itself, like pickle.py),
 *   - the memo, a hash map key -> node (PUT stores a pointer, so a later
 *     mutation is visible through every GET; cycles are possible).
 * STOP pops the root and ends the run; bytes after it are the caller's.
 *
 * Rules enforced, each with a one-line message naming the opcode and offset:
 *   - every argument and every length prefix is checked against what is
 *     left of the input before anything is read or allocated;
 *   - the stack plus the marks stay within CK_LIMIT_PICKLE_STACK entries,
 *     the memo within CK_LIMIT_PICKLE_MEMO keys (keys may be huge: hash map,
 *     never an array indexed by key), and at STOP the longest acyclic chain
 *     of nodes below the root within CK_LIMIT_PICKLE_DEPTH (checked with an
 *     explicit stack, so later recursive walkers of the tree are safe);
 *   - memory is O(input): each opcode allocates at most a node, a copy of
 *     the bytes it consumed, or pointers to nodes it consumed;
 *   - decimal integer literals are capped at 4300 digits (Python's own
 *     default), so text integers cannot cost quadratic time;
 *   - out-of-band buffers (NEXT_BUFFER, READONLY_BUFFER) and copyreg
 *     extension codes (EXT1/2/4) are refused: they name objects outside
 *     the file.
 *
 * Hand-written because the point is what it does NOT do: a general
 * unpickler resolves globals by importing them.
 */
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "pickle.h"

/* ---- opcode names (CPython Lib/pickletools.py spelling) ------------------ */

static const char *const op_names[256] = {
    ['('] = "MARK",          ['.'] = "STOP",          ['0'] = "POP",
    ['1'] = "POP_MARK",      ['2'] = "DUP",           ['F'] = "FLOAT",
    ['I'] = "INT",           ['J'] = "BININT",        ['K'] = "BININT1",
    ['L'] = "LONG",          ['M'] = "BININT2",       ['N'] = "NONE",
    ['P'] = "PERSID",        ['Q'] = "BINPERSID",     ['R'] = "REDUCE",
    ['S'] = "STRING",        ['T'] = "BINSTRING",     ['U'] = "SHORT_BINSTRING",
    ['V'] = "UNICODE",       ['X'] = "BINUNICODE",    ['a'] = "APPEND",
    ['b'] = "BUILD",         ['c'] = "GLOBAL",        ['d'] = "DICT",
    ['}'] = "EMPTY_DICT",    ['e'] = "APPENDS",       ['g'] = "GET",
    ['h'] = "BINGET",        ['i'] = "INST",          ['j'] = "LONG_BINGET",
    ['l'] = "LIST",          [']'] = "EMPTY_LIST",    ['o'] = "OBJ",
    ['p'] = "PUT",           ['q'] = "BINPUT",        ['r'] = "LONG_BINPUT",
    ['s'] = "SETITEM",       ['t'] = "TUPLE",         [')'] = "EMPTY_TUPLE",
    ['u'] = "SETITEMS",      ['G'] = "BINFLOAT",      ['B'] = "BINBYTES",
    ['C'] = "SHORT_BINBYTES",
    [0x80] = "PROTO",        [0x81] = "NEWOBJ",       [0x82] = "EXT1",
    [0x83] = "EXT2",         [0x84] = "EXT4",         [0x85] = "TUPLE1",
    [0x86] = "TUPLE2",       [0x87] = "TUPLE3",       [0x88] = "NEWTRUE",
    [0x89] = "NEWFALSE",     [0x8a] = "LONG1",        [0x8b] = "LONG4",
    [0x8c] = "SHORT_BINUNICODE", [0x8d] = "BINUNICODE8", [0x8e] = "BINBYTES8",
    [0x8f] = "EMPTY_SET",    [0x90] = "ADDITEMS",     [0x91] = "FROZENSET",
    [0x92] = "NEWOBJ_EX",    [0x93] = "STACK_GLOBAL", [0x94] = "MEMOIZE",
    [0x95] = "FRAME",        [0x96] = "BYTEARRAY8",   [0x97] = "NEXT_BUFFER",
    [0x98] = "READONLY_BUFFER",
};

#define HIGHEST_PROTOCOL 5
#define MAX_DECIMAL_DIGITS 4300 /* CPython's default int_max_str_digits */
#define ON_PATH UINT32_MAX       /* height marker while the depth walk is below a node */

/* ---- machine state ------------------------------------------------------- */

typedef struct memo_slot {
    uint64_t key;
    cki_pv *val; /* NULL: empty slot */
} memo_slot;

#define FREE_ITEM_MAX 7 /* item arrays of up to this many slots are recycled */

typedef struct machine {
    ck_ctx *ctx;
    cki_arena *arena;
    cki_cur cur;
    const char *file, *where;
    uint64_t base_off;
    size_t op_pos; /* offset of the current opcode in the input */
    uint8_t op;

    cki_pv **stack;
    size_t sp, stack_cap;
    size_t *marks;
    size_t nmarks, marks_cap;

    memo_slot *memo;
    size_t memo_count, memo_cap; /* cap: power of two or 0 */
    /* picklers number memo keys 0, 1, 2, ...: keys below dense_cap live in a
     * plain array (fast, cache-friendly); others in the hash above. The array
     * only doubles when a key falls just past its end and it holds about as
     * many entries as it would have slots, so memory stays O(input). */
    cki_pv **dense;
    size_t dense_cap;

    cki_pickle_global *globals; /* in the arena */
    size_t global_count, global_cap;

    uint64_t stack_max, memo_max, depth_max;
    int protocol;
    uint64_t opcodes;

    /* interned immutable values (pickle.h): small ints by value, None, the
     * bools, the empty tuple, and small tuples of interned values by items */
    cki_pv **small_ints; /* INTERN_LO .. INTERN_HI - 1; cki_calloc'd on first use */
    cki_pv *none, *bools[2], *empty_tuple;
    cki_pv **tuples;     /* open addressing by item pointers; cki_calloc'd */
    size_t tuple_count, tuple_cap;

    /* cki_pickle_run_lean only (all zero otherwise) */
    int lean;
    cki_arena *text;   /* texts of STR, BYTES, BIGINT nodes (NULL: ARENA) */
    uint8_t *fetched;  /* bit per memo key below key_span: some GET fetches it */
    uint8_t *put_seen; /* bit per memo key below key_span: PUT without storing */
    uint64_t key_span; /* 0: no memo filter */
    cki_pv *free_nodes;          /* recycled nodes, linked through ->items */
    cki_pv **free_items[FREE_ITEM_MAX + 1]; /* recycled item arrays by slots, linked
                                                through slot 0 */
    cki_pv *trb_shared; /* the last CKI_TRB_SHARED tuple made */
} machine;

#define INTERN_LO (-256)
#define INTERN_HI 1024

/* ---- errors -------------------------------------------------------------- */

static void op_message(machine *m, ck_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records "FILE: WHERE: opcode 0xNN (NAME) at byte N: RULE" as the error. */
static void op_message(machine *m, ck_status st, const char *fmt, ...)
{
    char rule[CKI_ERRMSG_MAX];
    const char *name = op_names[m->op] ? op_names[m->op] : "unknown";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rule, sizeof rule, fmt, ap);
    va_end(ap);
    cki_fail(m->ctx, st, "%s: %s: opcode 0x%02x (%s) at byte %llu: %s", m->file, m->where, m->op,
             name, (unsigned long long)(m->base_off + m->op_pos), rule);
}

/* The message, and ST as the value: `return op_fail(m, CK_EFORMAT, ...)`.
 * A macro so that every reader (the static analyzer included) sees that a
 * failure returns its nonzero status. */
#define op_fail(m, st, ...) (op_message((m), (st), __VA_ARGS__), (st))

/* An allocation failed: the allocator left its reason in the context. */
static ck_status op_nomem(machine *m)
{
    char why[CKI_ERRMSG_MAX];
    snprintf(why, sizeof why, "%s", m->ctx && m->ctx->errmsg[0] ? m->ctx->errmsg : "out of memory");
    return op_fail(m, CK_ENOMEM, "%s", why);
}

/* ---- input --------------------------------------------------------------- */

static size_t left(const machine *m)
{
    return cki_cur_left(&m->cur);
}

/* A fixed-size argument of N bytes. */
static ck_status arg(machine *m, size_t n, const uint8_t **out)
{
    if (cki_cur_take(&m->cur, n, out))
        return op_fail(m, CK_EFORMAT, "argument needs %zu bytes but only %zu remain", n,
                       left(m));
    return CK_OK;
}

/* A length-prefixed payload: N comes from the file, WHAT names it. */
static ck_status payload(machine *m, uint64_t n, const char *what, const uint8_t **out)
{
    if (n > left(m))
        return op_fail(m, CK_EFORMAT, "%s of %llu bytes but only %zu remain", what,
                       (unsigned long long)n, left(m));
    cki_cur_take(&m->cur, (size_t)n, out);
    return CK_OK;
}

/* A text argument: the bytes up to '\n' (excluded); the cursor moves past it. */
static ck_status text_line(machine *m, const uint8_t **out, size_t *len)
{
    const uint8_t *s = m->cur.p + m->cur.pos;
    const uint8_t *nl = memchr(s, '\n', left(m));
    if (!nl)
        return op_fail(m, CK_EFORMAT, "text argument has no newline before end of data "
                                      "(%zu bytes remain)", left(m));
    *out = s;
    *len = (size_t)(nl - s);
    cki_cur_skip(&m->cur, *len + 1);
    return CK_OK;
}

/* ---- nodes --------------------------------------------------------------- */

static cki_pv *new_node(machine *m, cki_pv_kind kind)
{
    /* 8-byte aligned (its widest members), so nodes pack back to back */
    cki_pv *v = m->free_nodes;
    if (v) m->free_nodes = (cki_pv *)(void *)v->items;
    else v = cki_arena_alloc_ptrs(m->arena, sizeof *v);
    if (!v) return NULL;
    memset(v, 0, sizeof *v);
    v->kind = kind;
    v->off = m->base_off + m->op_pos;
    return v;
}

/* A zeroed record for a node's rarely set links. */
static cki_pv_more *new_more(machine *m)
{
    cki_pv_more *x = cki_arena_alloc_ptrs(m->arena, sizeof *x);
    if (x) memset(x, 0, sizeof *x);
    return x;
}

static size_t item_slots(const cki_pv *v)
{
    return v->kind == CKI_PV_DICT ? (size_t)v->n * 2 : v->n;
}

/* Appends COUNT item pointers to V (pairs for a DICT: COUNT is even). */
static ck_status add_items(machine *m, cki_pv *v, cki_pv *const *src, size_t count)
{
    size_t used = item_slots(v), need;
    if (cki_add_size(&need, used, count) || need > UINT32_MAX)
        return op_fail(m, CK_ELIMIT, "%s would hold more than %u items",
                       cki_pv_kind_name(v->kind), (unsigned)UINT32_MAX);
    if (need > v->cap || !v->items) {
        /* the first fill is exact (tuples, calls and persistent ids never
         * grow); later appends double */
        size_t cap = !v->items ? need : v->cap < 4 ? 4 : (size_t)v->cap * 2;
        cki_pv **items;
        if (cap < need) cap = need;
        if (cap > UINT32_MAX) cap = UINT32_MAX;
        if (cap && cap <= FREE_ITEM_MAX && m->free_items[cap]) {
            items = m->free_items[cap];
            m->free_items[cap] = (cki_pv **)(void *)items[0];
        } else {
            items = cki_arena_alloc_ptrs(m->arena, (cap ? cap : 1) * sizeof *items);
        }
        if (!items) return op_nomem(m);
        if (v->items) {
            memcpy(items, v->items, used * sizeof *items); /* the old array */
            /* a large one had a block of its own: it goes now (a 100,000-
             * tensor state dict's item arrays would otherwise add up to
             * twice the last one) */
            if ((size_t)v->cap * sizeof *items > 32 * 1024) cki_arena_give_back(m->arena, v->items);
        }
        v->items = items;
        v->cap = (uint32_t)cap;
    }
    if (count) memcpy(v->items + used, src, count * sizeof *src);
    v->n = (uint32_t)(v->kind == CKI_PV_DICT ? need / 2 : need);
    return CK_OK;
}

/* A new container of KIND holding SRC[0..COUNT) exactly. */
static ck_status make_container(machine *m, cki_pv_kind kind, cki_pv *const *src, size_t count,
                                cki_pv **out)
{
    cki_pv *v = new_node(m, kind);
    ck_status st;
    if (!v) return op_nomem(m);
    if (count && (st = add_items(m, v, src, count))) return st;
    *out = v;
    return CK_OK;
}

/* The interned node for a scalar of KIND with value I, made on first use;
 * NULL when the value is not one that is interned (the caller makes its own).
 * Sets *ERR on allocation failure. */
static cki_pv *intern_scalar(machine *m, cki_pv_kind kind, int64_t i, ck_status *err)
{
    cki_pv **slot;
    if (kind == CKI_PV_NONE) slot = &m->none;
    else if (kind == CKI_PV_BOOL && (i == 0 || i == 1)) slot = &m->bools[i];
    else if (kind == CKI_PV_INT && i >= INTERN_LO && i < INTERN_HI) {
        if (!m->small_ints) {
            m->small_ints = cki_calloc(m->ctx, INTERN_HI - INTERN_LO, sizeof *m->small_ints);
            if (!m->small_ints) {
                *err = op_nomem(m);
                return NULL;
            }
        }
        slot = &m->small_ints[i - INTERN_LO];
    } else {
        return NULL;
    }
    if (!*slot) {
        cki_pv *v = new_node(m, kind);
        if (!v) {
            *err = op_nomem(m);
            return NULL;
        }
        v->u.i = i;
        v->shared = 1;
        *slot = v;
    }
    return *slot;
}

static size_t tuple_hash(cki_pv *const *items, size_t count, size_t cap)
{
    uint64_t h = count;
    for (size_t i = 0; i < count; i++) h = (h ^ (uint64_t)(uintptr_t)items[i]) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 20) & (cap - 1);
}

static int same_items(const cki_pv *t, cki_pv *const *items, size_t count)
{
    if (t->n != count) return 0;
    for (size_t i = 0; i < count; i++)
        if (t->items[i] != items[i]) return 0;
    return 1;
}

static ck_status add_items(machine *m, cki_pv *v, cki_pv *const *src, size_t count);

/* A tuple of SRC[0..COUNT): the interned one when COUNT <= 3 and every item
 * is interned, else a new node. */
static ck_status make_tuple(machine *m, cki_pv *const *src, size_t count, cki_pv **out)
{
    cki_pv *v;
    size_t j;
    ck_status st;
    int intern = count <= 3;
    for (size_t i = 0; i < count && intern; i++) intern = src[i]->shared;
    if (intern && count == 0 && m->empty_tuple) {
        *out = m->empty_tuple;
        return CK_OK;
    }
    if (intern && count && m->tuple_cap) {
        for (j = tuple_hash(src, count, m->tuple_cap); m->tuples[j];
             j = (j + 1) & (m->tuple_cap - 1)) {
            if (same_items(m->tuples[j], src, count)) {
                *out = m->tuples[j];
                return CK_OK;
            }
        }
    }
    v = new_node(m, CKI_PV_TUPLE);
    if (!v) return op_nomem(m);
    if (count && (st = add_items(m, v, src, count))) return st;
    *out = v;
    if (!intern) return CK_OK;
    v->shared = 1;
    if (!count) {
        m->empty_tuple = v;
        return CK_OK;
    }
    if ((m->tuple_count + 1) * 2 > m->tuple_cap) {
        size_t ncap = m->tuple_cap ? m->tuple_cap * 2 : 256;
        cki_pv **nt = cki_calloc(m->ctx, ncap, sizeof *nt);
        if (!nt) return op_nomem(m);
        for (size_t i = 0; i < m->tuple_cap; i++) {
            cki_pv *t = m->tuples[i];
            if (!t) continue;
            for (j = tuple_hash(t->items, t->n, ncap); nt[j]; j = (j + 1) & (ncap - 1)) {
            }
            nt[j] = t;
        }
        cki_free(m->ctx, m->tuples);
        m->tuples = nt;
        m->tuple_cap = ncap;
    }
    for (j = tuple_hash(src, count, m->tuple_cap); m->tuples[j]; j = (j + 1) & (m->tuple_cap - 1)) {
    }
    m->tuples[j] = v;
    m->tuple_count++;
    return CK_OK;
}

/* A STR or BYTES node holding a copy of S[0..N). */
static ck_status make_blob(machine *m, cki_pv_kind kind, const uint8_t *s, size_t n, cki_pv **out)
{
    cki_pv *v = new_node(m, kind);
    char *copy;
    if (!v) return op_nomem(m);
    copy = cki_arena_strndup(m->text ? m->text : m->arena, (const char *)s, n);
    if (!copy) return op_nomem(m);
    v->u.s.p = copy;
    v->u.s.len = n;
    *out = v;
    return CK_OK;
}

/* ---- stack, marks, memo ------------------------------------------------- */

static size_t fence(const machine *m)
{
    return m->nmarks ? m->marks[m->nmarks - 1] : 0;
}

static ck_status check_stack_room(machine *m)
{
    if ((uint64_t)m->sp + m->nmarks + 1 > m->stack_max)
        return op_fail(m, CK_ELIMIT, "stack of %zu values and %zu marks reaches the limit of %llu",
                       m->sp, m->nmarks, (unsigned long long)m->stack_max);
    return CK_OK;
}

static ck_status push(machine *m, cki_pv *v)
{
    ck_status st;
    if ((st = check_stack_room(m))) return st;
    if (m->sp == m->stack_cap) {
        size_t cap = m->stack_cap * 2;
        cki_pv **s = cki_realloc(m->ctx, m->stack, cap * sizeof *s);
        if (!s) return op_nomem(m);
        m->stack = s;
        m->stack_cap = cap;
    }
    m->stack[m->sp++] = v;
    return CK_OK;
}

/* Needs N values above the fence. */
static ck_status need_values(machine *m, size_t n)
{
    size_t avail = m->sp - fence(m);
    if (avail < n) {
        if (m->nmarks)
            return op_fail(m, CK_EFORMAT, "stack underflow: needs %zu values but only %zu "
                                          "lie above the last MARK", n, avail);
        return op_fail(m, CK_EFORMAT, "stack underflow: needs %zu values but the stack holds %zu",
                       n, avail);
    }
    return CK_OK;
}

static cki_pv *pop(machine *m)
{
    return m->stack[--m->sp];
}

static cki_pv *top(machine *m)
{
    return m->stack[m->sp - 1];
}

static ck_status push_mark(machine *m)
{
    ck_status st;
    if ((st = check_stack_room(m))) return st;
    if (m->nmarks == m->marks_cap) {
        size_t cap = m->marks_cap ? m->marks_cap * 2 : 16;
        size_t *s = cki_realloc(m->ctx, m->marks, cap * sizeof *s);
        if (!s) return op_nomem(m);
        m->marks = s;
        m->marks_cap = cap;
    }
    m->marks[m->nmarks++] = m->sp;
    return CK_OK;
}

/* Removes the topmost mark; *ITEMS / *COUNT are the values above it (they
 * stay readable until the next push). */
static ck_status pop_mark(machine *m, cki_pv ***items, size_t *count)
{
    size_t mk;
    if (!m->nmarks) return op_fail(m, CK_EFORMAT, "no MARK to pop");
    mk = m->marks[--m->nmarks];
    *items = m->stack + mk;
    *count = m->sp - mk;
    m->sp = mk;
    return CK_OK;
}

static size_t memo_index(uint64_t key, size_t cap)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static cki_pv *memo_get_hashed(const machine *m, uint64_t key)
{
    size_t j;
    if (!m->memo_cap) return NULL;
    for (j = memo_index(key, m->memo_cap); m->memo[j].val; j = (j + 1) & (m->memo_cap - 1))
        if (m->memo[j].key == key) return m->memo[j].val;
    return NULL;
}

static cki_pv *memo_get(const machine *m, uint64_t key)
{
    size_t j;
    if (key < m->dense_cap && m->dense[key]) return m->dense[key];
    if (!m->memo_cap) return NULL;
    for (j = memo_index(key, m->memo_cap); m->memo[j].val; j = (j + 1) & (m->memo_cap - 1))
        if (m->memo[j].key == key) return m->memo[j].val;
    return NULL;
}

static ck_status memo_grow(machine *m)
{
    size_t cap = m->memo_cap ? m->memo_cap * 2 : 64;
    memo_slot *ns = cki_calloc(m->ctx, cap, sizeof *ns);
    if (!ns) return op_nomem(m);
    for (size_t i = 0; i < m->memo_cap; i++) {
        size_t j;
        if (!m->memo[i].val) continue;
        for (j = memo_index(m->memo[i].key, cap); ns[j].val; j = (j + 1) & (cap - 1)) {
        }
        ns[j] = m->memo[i];
    }
    cki_free(m->ctx, m->memo);
    m->memo = ns;
    m->memo_cap = cap;
    return CK_OK;
}

static int bit_get(const uint8_t *b, uint64_t i)
{
    return (b[i >> 3] >> (i & 7)) & 1;
}

static void bit_set(uint8_t *b, uint64_t i)
{
    b[i >> 3] = (uint8_t)(b[i >> 3] | (1u << (i & 7)));
}

/* memo[KEY] = top of stack. */
static ck_status memo_put(machine *m, uint64_t key)
{
    size_t j;
    cki_pv *v;
    ck_status st;
    if ((st = need_values(m, 1))) return st;
    v = top(m);
    if (key < m->key_span && !bit_get(m->fetched, key)) {
        /* nothing fetches this key: count it as stored, keep no pointer
         * (such keys are never in the dense array or the hash) */
        if (!bit_get(m->put_seen, key)) {
            if (m->memo_count + 1 > m->memo_max)
                return op_fail(m, CK_ELIMIT, "memo of %zu entries reaches the limit of %llu",
                               m->memo_count, (unsigned long long)m->memo_max);
            m->memo_count++;
            bit_set(m->put_seen, key);
        }
        return CK_OK;
    }
    v->mflags |= CKI_PV_M_ESCAPED;
    if (key >= m->dense_cap && key < 2 * (uint64_t)(m->dense_cap ? m->dense_cap : 512) &&
        2 * (uint64_t)(m->dense_cap ? m->dense_cap : 512) <= 2 * ((uint64_t)m->memo_count + 1024)) {
        /* the next key of a 0, 1, 2, ... numbering: double the dense array
         * (keys already hashed stay there; scattered keys never grow it) */
        size_t ncap = m->dense_cap ? 2 * m->dense_cap : 1024;
        cki_pv **nd;
        nd = cki_realloc(m->ctx, m->dense, ncap * sizeof *nd);
        if (!nd) return op_nomem(m);
        memset(nd + m->dense_cap, 0, (ncap - m->dense_cap) * sizeof *nd);
        m->dense = nd;
        m->dense_cap = ncap;
    }
    if (key < m->dense_cap && (m->dense[key] || !memo_get_hashed(m, key))) {
        if (!m->dense[key]) {
            if (m->memo_count + 1 > m->memo_max)
                return op_fail(m, CK_ELIMIT, "memo of %zu entries reaches the limit of %llu",
                               m->memo_count, (unsigned long long)m->memo_max);
            m->memo_count++;
        }
        m->dense[key] = v;
        return CK_OK;
    }
    if (m->memo_cap) {
        for (j = memo_index(key, m->memo_cap); m->memo[j].val; j = (j + 1) & (m->memo_cap - 1)) {
            if (m->memo[j].key == key) {
                m->memo[j].val = v;
                return CK_OK;
            }
        }
    }
    if (m->memo_count + 1 > m->memo_max)
        return op_fail(m, CK_ELIMIT, "memo of %zu entries reaches the limit of %llu",
                       m->memo_count, (unsigned long long)m->memo_max);
    if ((m->memo_count + 1) * 2 > m->memo_cap && (st = memo_grow(m))) return st;
    for (j = memo_index(key, m->memo_cap); m->memo[j].val; j = (j + 1) & (m->memo_cap - 1)) {
    }
    m->memo[j].key = key;
    m->memo[j].val = v;
    m->memo_count++;
    return CK_OK;
}

static ck_status memo_push(machine *m, uint64_t key)
{
    cki_pv *v = memo_get(m, key);
    if (!v)
        return op_fail(m, CK_EFORMAT, "memo key %llu was never stored", (unsigned long long)key);
    v->mflags |= CKI_PV_M_ESCAPED;
    return push(m, v);
}

/* ---- integers ------------------------------------------------------------ */

/* Two's complement little-endian B[0..N) -> INT if it fits int64, else a
 * BIGINT with redundant sign bytes stripped. */
static ck_status make_int(machine *m, int64_t i, cki_pv_kind kind, cki_pv **out);

static ck_status make_int_le(machine *m, const uint8_t *b, size_t n, cki_pv **out)
{
    while (n > 1 && ((b[n - 1] == 0x00 && !(b[n - 2] & 0x80)) ||
                     (b[n - 1] == 0xff && (b[n - 2] & 0x80))))
        n--;
    if (n <= 8) {
        uint64_t u = 0;
        for (size_t i = 0; i < n; i++) u |= (uint64_t)b[i] << (8 * i);
        if (n && n < 8 && (b[n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n);
        return make_int(m, u > (uint64_t)INT64_MAX ? -(int64_t)(~u) - 1 : (int64_t)u, CKI_PV_INT,
                        out);
    }
    return make_blob(m, CKI_PV_BIGINT, b, n, out);
}

static ck_status make_int(machine *m, int64_t i, cki_pv_kind kind, cki_pv **out)
{
    ck_status st = CK_OK;
    cki_pv *v = intern_scalar(m, kind, i, &st);
    if (st) return st;
    if (v) {
        *out = v;
        return CK_OK;
    }
    v = new_node(m, kind);
    if (!v) return op_nomem(m);
    v->u.i = i;
    *out = v;
    return CK_OK;
}

static int is_space(uint8_t c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int digit_value(uint8_t c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'z') return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
    return 99;
}

/* A Python int() literal, parsed: sign, base and the digit values without
 * underscores (DIGITS is cki_malloc'd; release with cki_free). */
typedef struct pyint {
    int neg;
    unsigned base;
    uint8_t *digits;
    size_t ndigits;
} pyint;

/* int(S, 0) when BASE0, else int(S): surrounding whitespace, a sign, for
 * base 0 an optional 0x/0o/0b prefix and no leading zeros on a nonzero
 * decimal, single underscores between digits. */
static ck_status parse_pyint(machine *m, const uint8_t *s, size_t n, int base0, pyint *r)
{
    size_t i = 0, j;
    int after_digit = 0;
    memset(r, 0, sizeof *r);
    r->base = 10;
    while (n && is_space(s[n - 1])) n--;
    while (i < n && is_space(s[i])) i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) r->neg = s[i++] == '-';
    if (base0 && n - i >= 2 && s[i] == '0') {
        uint8_t p = (uint8_t)(s[i + 1] | 0x20);
        if (p == 'x' || p == 'o' || p == 'b') {
            r->base = p == 'x' ? 16 : p == 'o' ? 8 : 2;
            i += 2;
            after_digit = 1; /* "0x_1f" is valid */
        }
    }
    if (i >= n) goto bad;
    r->digits = cki_malloc(m->ctx, n - i);
    if (!r->digits) return op_nomem(m);
    for (j = i; j < n; j++) {
        int d;
        if (s[j] == '_') {
            if (!after_digit || j + 1 == n) goto bad;
            after_digit = 0;
            continue;
        }
        d = digit_value(s[j]);
        if (d >= (int)r->base) goto bad;
        r->digits[r->ndigits++] = (uint8_t)d;
        after_digit = 1;
    }
    if (!r->ndigits) goto bad;
    if (base0 && r->base == 10 && r->digits[0] == 0) {
        for (j = 0; j < r->ndigits; j++)
            if (r->digits[j]) goto bad; /* "012" is not a base-0 literal */
    }
    if (r->base == 10 && r->ndigits > MAX_DECIMAL_DIGITS) {
        size_t nd = r->ndigits;
        cki_free(m->ctx, r->digits);
        r->digits = NULL;
        return op_fail(m, CK_ELIMIT, "integer literal of %zu digits exceeds %d", nd,
                       MAX_DECIMAL_DIGITS);
    }
    return CK_OK;
bad:
    cki_free(m->ctx, r->digits);
    r->digits = NULL;
    {
        char shown[48];
        size_t k = n < sizeof shown - 1 ? n : sizeof shown - 1;
        for (size_t q = 0; q < k; q++) shown[q] = s[q] >= 0x20 && s[q] < 0x7f ? (char)s[q] : '?';
        shown[k] = 0;
        return op_fail(m, CK_EFORMAT, "'%s%s' is not an integer", shown, n > k ? "..." : "");
    }
}

/* 0 and *OUT set if R fits int64. */
static int pyint_i64(const pyint *r, int64_t *out)
{
    uint64_t mag = 0, lim = r->neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (size_t i = 0; i < r->ndigits; i++) {
        if (mag > (lim - r->digits[i]) / r->base) return 1;
        mag = mag * r->base + r->digits[i];
    }
    *out = r->neg ? (mag ? -(int64_t)(mag - 1) - 1 : 0) : (int64_t)mag;
    return 0;
}

/* R as an INT or BIGINT node. */
static ck_status pyint_node(machine *m, const pyint *r, cki_pv **out)
{
    int64_t small;
    uint32_t *limb;
    uint8_t *le;
    size_t nlimb = 1, cap, nbytes;
    ck_status st;
    if (!pyint_i64(r, &small)) return make_int(m, small, CKI_PV_INT, out);
    if (r->base == 10) {
        cap = r->ndigits / 9 + 2;
    } else {
        unsigned bits = r->base == 16 ? 4 : r->base == 8 ? 3 : 1;
        cap = r->ndigits / (32 / bits) + 2;
    }
    limb = cki_calloc(m->ctx, cap, sizeof *limb);
    if (!limb) return op_nomem(m);
    if (r->base == 10) {
        /* schoolbook: at most 4300 digits */
        for (size_t i = 0; i < r->ndigits; i++) {
            uint64_t carry = r->digits[i];
            for (size_t k = 0; k < nlimb; k++) {
                uint64_t t = (uint64_t)limb[k] * 10 + carry;
                limb[k] = (uint32_t)t;
                carry = t >> 32;
            }
            if (carry) limb[nlimb++] = (uint32_t)carry;
        }
    } else {
        /* power-of-two base: place bits directly, linear time */
        unsigned bits = r->base == 16 ? 4 : r->base == 8 ? 3 : 1;
        size_t bitpos = 0;
        for (size_t i = r->ndigits; i-- > 0; bitpos += bits) {
            uint64_t d = r->digits[i];
            size_t w = bitpos / 32, sh = bitpos % 32;
            limb[w] |= (uint32_t)(d << sh);
            if (sh + bits > 32) limb[w + 1] |= (uint32_t)(d >> (32 - sh));
        }
        nlimb = cap;
    }
    nbytes = nlimb * 4 + 1;
    le = cki_malloc(m->ctx, nbytes);
    if (!le) {
        cki_free(m->ctx, limb);
        return op_nomem(m);
    }
    for (size_t k = 0; k < nlimb; k++) cki_st_le32(le + 4 * k, limb[k]);
    le[nbytes - 1] = 0;
    if (r->neg) {
        unsigned carry = 1;
        for (size_t k = 0; k < nbytes; k++) {
            unsigned t = (unsigned)(uint8_t)~le[k] + carry;
            le[k] = (uint8_t)t;
            carry = t >> 8;
        }
    }
    st = make_int_le(m, le, nbytes, out);
    cki_free(m->ctx, le);
    cki_free(m->ctx, limb);
    return st;
}

/* INT and LONG text: "01"/"00" are True/False for INT; LONG drops an 'L'. */
static ck_status text_int(machine *m, int is_long, cki_pv **out)
{
    const uint8_t *s;
    size_t n;
    pyint r;
    ck_status st;
    if ((st = text_line(m, &s, &n))) return st;
    if (!is_long && n == 2 && s[0] == '0' && (s[1] == '0' || s[1] == '1'))
        return make_int(m, s[1] == '1', CKI_PV_BOOL, out);
    if (is_long && n && s[n - 1] == 'L') n--;
    if ((st = parse_pyint(m, s, n, 1, &r))) return st;
    st = pyint_node(m, &r, out);
    cki_free(m->ctx, r.digits);
    return st;
}

/* PUT and GET text: a decimal memo key. */
static ck_status text_memo_key(machine *m, int for_put, uint64_t *key)
{
    const uint8_t *s;
    size_t n;
    pyint r;
    int64_t v;
    ck_status st;
    int big;
    if ((st = text_line(m, &s, &n))) return st;
    if ((st = parse_pyint(m, s, n, 0, &r))) return st;
    big = pyint_i64(&r, &v);
    cki_free(m->ctx, r.digits);
    if (big) return op_fail(m, CK_EFORMAT, "memo key does not fit 64 bits");
    if (v < 0) {
        if (for_put) return op_fail(m, CK_EFORMAT, "negative memo key %lld", (long long)v);
        return op_fail(m, CK_EFORMAT, "memo key %lld was never stored", (long long)v);
    }
    *key = (uint64_t)v;
    return CK_OK;
}

/* ---- floats -------------------------------------------------------------- */

static int ieq(const uint8_t *s, size_t n, const char *word)
{
    size_t k = strlen(word);
    if (n != k) return 0;
    for (size_t i = 0; i < k; i++)
        if ((s[i] | 0x20) != word[i]) return 0;
    return 1;
}

/* float(text) as Python parses it: whitespace, sign, inf/infinity/nan, or
 * digits with an optional fraction and exponent, single underscores between
 * digits. Converted with strtod on a cleaned copy using the C locale's
 * decimal point convention (the current locale's point is substituted). */
static ck_status text_float(machine *m, cki_pv **out)
{
    const uint8_t *s;
    size_t n, i = 0, k = 0, ndig = 0;
    int neg = 0, prev_digit = 0, seen_dot = 0, seen_exp = 0;
    const char *dp = localeconv()->decimal_point;
    size_t dplen = dp && *dp ? strlen(dp) : 1;
    char *buf;
    double d;
    char *end;
    cki_pv *v;
    ck_status st;
    if ((st = text_line(m, &s, &n))) return st;
    while (n && is_space(s[n - 1])) n--;
    while (i < n && is_space(s[i])) i++;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (ieq(s + i, n - i, "inf") || ieq(s + i, n - i, "infinity") || ieq(s + i, n - i, "nan")) {
        v = new_node(m, CKI_PV_FLOAT);
        if (!v) return op_nomem(m);
        v->u.f = (s[i] | 0x20) == 'n' ? (neg ? -__builtin_nan("") : __builtin_nan(""))
                                      : (neg ? -__builtin_inf() : __builtin_inf());
        *out = v;
        return CK_OK;
    }
    if (cki_mul_size(&k, n + 2, dplen)) return op_nomem(m);
    buf = cki_malloc(m->ctx, k);
    if (!buf) return op_nomem(m);
    k = 0;
    if (neg) buf[k++] = '-';
    for (; i < n; i++) {
        uint8_t c = s[i];
        if (c >= '0' && c <= '9') {
            buf[k++] = (char)c;
            prev_digit = 1;
            if (!seen_exp) ndig++;
        } else if (c == '_' && prev_digit && i + 1 < n && s[i + 1] >= '0' && s[i + 1] <= '9') {
            prev_digit = 0;
        } else if (c == '.' && !seen_dot && !seen_exp) {
            memcpy(buf + k, dp && *dp ? dp : ".", dplen);
            k += dplen;
            seen_dot = 1;
            prev_digit = 0;
        } else if ((c | 0x20) == 'e' && !seen_exp && ndig) {
            buf[k++] = 'e';
            seen_exp = 1;
            prev_digit = 0;
            if (i + 1 < n && (s[i + 1] == '+' || s[i + 1] == '-')) buf[k++] = (char)s[++i];
            if (i + 1 >= n || s[i + 1] < '0' || s[i + 1] > '9') goto bad;
        } else {
            goto bad;
        }
    }
    if (!ndig) goto bad;
    buf[k] = 0;
    d = strtod(buf, &end);
    if (*end) goto bad;
    cki_free(m->ctx, buf);
    v = new_node(m, CKI_PV_FLOAT);
    if (!v) return op_nomem(m);
    v->u.f = d;
    *out = v;
    return CK_OK;
bad:
    cki_free(m->ctx, buf);
    return op_fail(m, CK_EFORMAT, "text of %zu bytes is not a float", n);
}

/* ---- strings ------------------------------------------------------------- */

/* UTF-8 as Python's decoder with 'surrogatepass' accepts it: well-formed
 * sequences, where encoded U+D800..U+DFFF are allowed. 1 if valid. */
static int utf8_valid_surrogatepass(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (n - i - 1 < need) return 0;
        for (size_t k = 1; k <= need; k++) {
            uint8_t d = s[i + k];
            if ((d & 0xC0) != 0x80) return 0;
            cp = cp << 6 | (d & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
        i += need + 1;
    }
    return 1;
}

/* BINUNICODE & co.: the payload must be UTF-8 (surrogatepass). */
static ck_status unicode_payload(machine *m, uint64_t n, cki_pv **out)
{
    const uint8_t *s = NULL;
    ck_status st;
    if ((st = payload(m, n, "string", &s))) return st;
    if (!utf8_valid_surrogatepass(s, (size_t)n))
        return op_fail(m, CK_EFORMAT, "string of %llu bytes is not valid utf-8",
                       (unsigned long long)n);
    return make_blob(m, CKI_PV_STR, s, (size_t)n, out);
}

/* Python 2 str: STR when it is valid UTF-8, else BYTES. */
static ck_status py2_str(machine *m, const uint8_t *s, size_t n, cki_pv **out)
{
    return make_blob(m, cki_utf8_valid(s, n) ? CKI_PV_STR : CKI_PV_BYTES, s, n, out);
}

static ck_status bytes_payload(machine *m, uint64_t n, cki_pv **out)
{
    const uint8_t *s = NULL;
    ck_status st;
    if ((st = payload(m, n, "bytes object", &s))) return st;
    return make_blob(m, CKI_PV_BYTES, s, (size_t)n, out);
}

static int hexval(uint8_t c)
{
    int d = digit_value(c);
    return d < 16 ? d : -1;
}

static size_t put_utf8(uint8_t *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (uint8_t)(0xC0 | cp >> 6);
        o[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (uint8_t)(0xE0 | cp >> 12);
        o[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (uint8_t)(0xF0 | cp >> 18);
    o[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* UNICODE: one line in raw-unicode-escape. Bytes are Latin-1 code points,
 * except '\' 'u' + 4 hex digits and '\' 'U' + 8 hex digits (<= 0x10FFFF);
 * a backslash before anything else stays as it is (both bytes). */
static ck_status text_unicode(machine *m, cki_pv **out)
{
    const uint8_t *s;
    size_t n, i = 0, k = 0, cap;
    uint8_t *o;
    cki_pv *v;
    ck_status st;
    if ((st = text_line(m, &s, &n))) return st;
    if (cki_mul_size(&cap, n, 2) || cki_add_size(&cap, cap, 1)) return op_nomem(m);
    o = cki_arena_alloc(m->text ? m->text : m->arena, cap);
    if (!o) return op_nomem(m);
    while (i < n) {
        uint8_t c = s[i++];
        unsigned count;
        uint32_t cp = 0;
        if (c != '\\' || i >= n) {
            k += put_utf8(o + k, c);
            continue;
        }
        c = s[i++];
        if (c != 'u' && c != 'U') {
            o[k++] = '\\';
            k += put_utf8(o + k, c);
            continue;
        }
        count = c == 'u' ? 4 : 8;
        for (; count; count--, i++) {
            int h = i < n ? hexval(s[i]) : -1;
            if (h < 0)
                return op_fail(m, CK_EFORMAT, "truncated \\%c escape at byte %zu of the text",
                               c, i);
            cp = cp << 4 | (uint32_t)h;
        }
        if (cp > 0x10FFFF)
            return op_fail(m, CK_EFORMAT, "escape \\U%08x is beyond U+10FFFF", (unsigned)cp);
        k += put_utf8(o + k, cp);
    }
    o[k] = 0;
    v = new_node(m, CKI_PV_STR);
    if (!v) return op_nomem(m);
    v->u.s.p = (const char *)o;
    v->u.s.len = k;
    *out = v;
    return CK_OK;
}

/* STRING: one quoted line, backslash escapes as Python's escape_decode. */
static ck_status text_string(machine *m, cki_pv **out)
{
    const uint8_t *s;
    size_t n, i, k = 0;
    uint8_t *o;
    ck_status st;
    if ((st = text_line(m, &s, &n))) return st;
    if (n < 2 || s[0] != s[n - 1] || (s[0] != '\'' && s[0] != '"'))
        return op_fail(m, CK_EFORMAT, "the STRING argument must be quoted");
    s++;
    n -= 2;
    o = cki_malloc(m->ctx, n + 1);
    if (!o) return op_nomem(m);
    for (i = 0; i < n;) {
        uint8_t c = s[i++];
        if (c != '\\') {
            o[k++] = c;
            continue;
        }
        if (i >= n) {
            cki_free(m->ctx, o);
            return op_fail(m, CK_EFORMAT, "trailing backslash in STRING");
        }
        c = s[i++];
        switch (c) {
        case '\\': o[k++] = '\\'; break;
        case '\'': o[k++] = '\''; break;
        case '"': o[k++] = '"'; break;
        case 'b': o[k++] = '\b'; break;
        case 'f': o[k++] = '\f'; break;
        case 't': o[k++] = '\t'; break;
        case 'n': o[k++] = '\n'; break;
        case 'r': o[k++] = '\r'; break;
        case 'v': o[k++] = '\v'; break;
        case 'a': o[k++] = '\a'; break;
        case '0': case '1': case '2': case '3': case '4': case '5': case '6': case '7': {
            unsigned v = c - '0';
            for (int d = 0; d < 2 && i < n && s[i] >= '0' && s[i] <= '7'; d++)
                v = v * 8 + (unsigned)(s[i++] - '0');
            o[k++] = (uint8_t)v;
            break;
        }
        case 'x': {
            int h1 = i < n ? hexval(s[i]) : -1, h2 = i + 1 < n ? hexval(s[i + 1]) : -1;
            if (h1 < 0 || h2 < 0) {
                cki_free(m->ctx, o);
                return op_fail(m, CK_EFORMAT, "invalid \\x escape at byte %zu of STRING", i - 2);
            }
            o[k++] = (uint8_t)(h1 << 4 | h2);
            i += 2;
            break;
        }
        default:
            o[k++] = '\\';
            o[k++] = c;
        }
    }
    st = py2_str(m, o, k, out);
    cki_free(m->ctx, o);
    return st;
}

/* ---- globals -------------------------------------------------------------- */

static const char *map_module(const char *mod)
{
    if (!strcmp(mod, "__builtin__") || !strcmp(mod, "exceptions")) return "builtins";
    if (!strcmp(mod, "copy_reg")) return "copyreg";
    if (!strcmp(mod, "torch.tensor")) return "torch._tensor";
    return NULL;
}

/* Pushes GLOBAL(module, name) and records it. MOD/NAME are arena strings or
 * literals; RESOLVED 0 means "?" placeholders. */
static ck_status push_global_node(machine *m, const char *mod, const char *name, int resolved,
                                  cki_pv **out)
{
    cki_pv *v;
    const char *mapped = resolved ? map_module(mod) : NULL;
    if (mapped) mod = mapped;
    v = new_node(m, CKI_PV_GLOBAL);
    if (!v) return op_nomem(m);
    v->u.g.module = mod;
    v->u.g.name = name;
    if (m->global_count == m->global_cap) {
        size_t cap = m->global_cap ? m->global_cap * 2 : 16;
        cki_pickle_global *g = cki_arena_alloc(m->arena, cap * sizeof *g);
        if (!g) return op_nomem(m);
        if (m->global_count) memcpy(g, m->globals, m->global_count * sizeof *g);
        m->globals = g;
        m->global_cap = cap;
    }
    m->globals[m->global_count].module = mod;
    m->globals[m->global_count].name = name;
    m->globals[m->global_count].off = v->off;
    m->globals[m->global_count].resolved = resolved;
    m->global_count++;
    if (out) *out = v;
    return push(m, v);
}

/* GLOBAL and INST: two text lines, module then name (ASCII_ONLY for INST). */
static ck_status text_global(machine *m, int ascii_only, cki_pv **out)
{
    const uint8_t *ms, *ns;
    size_t ml, nl;
    char *mod, *name;
    ck_status st;
    if ((st = text_line(m, &ms, &ml)) || (st = text_line(m, &ns, &nl))) return st;
    for (int part = 0; part < 2; part++) {
        const uint8_t *s = part ? ns : ms;
        size_t n = part ? nl : ml;
        const char *what = part ? "name" : "module";
        if (memchr(s, 0, n)) return op_fail(m, CK_EFORMAT, "global %s contains a nul byte", what);
        for (size_t i = 0; ascii_only && i < n; i++)
            if (s[i] >= 0x80)
                return op_fail(m, CK_EFORMAT, "global %s is not ascii (byte %zu)", what, i);
        if (!cki_utf8_valid(s, n))
            return op_fail(m, CK_EFORMAT, "global %s is not valid utf-8", what);
    }
    mod = cki_arena_strndup(m->arena, (const char *)ms, ml);
    name = cki_arena_strndup(m->arena, (const char *)ns, nl);
    if (!mod || !name) return op_nomem(m);
    return push_global_node(m, mod, name, 1, out);
}

static int plain_str(const cki_pv *v)
{
    return v->kind == CKI_PV_STR && !memchr(v->u.s.p, 0, v->u.s.len);
}

/* ---- the depth walk at STOP --------------------------------------------- */

typedef struct walk_frame {
    cki_pv *v;
    size_t next;   /* next child index */
    uint32_t best; /* largest finished child height so far */
} walk_frame;

/* Sets ->height on every node the root reaches and fails when a chain is
 * longer than the depth limit. Iterative: the frames array is the path. */
static ck_status check_depth(machine *m, cki_pv *root)
{
    walk_frame *fr = NULL;
    size_t sp = 0, cap = 0;
    uint64_t limit = m->depth_max;
    ck_status st = CK_OK;
    if (limit > ON_PATH - 2) limit = ON_PATH - 2;
    if (root->height) return CK_OK;
    for (cki_pv *v = root;;) {
        if (v) {
            if (sp >= limit) {
                st = op_fail(m, CK_ELIMIT, "values nest more than %llu levels deep (the limit)",
                             (unsigned long long)limit);
                break;
            }
            if (sp == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                walk_frame *nf = cki_realloc(m->ctx, fr, ncap * sizeof *nf);
                if (!nf) {
                    st = op_nomem(m);
                    break;
                }
                fr = nf;
                cap = ncap;
            }
            v->height = ON_PATH;
            fr[sp].v = v;
            fr[sp].next = 0;
            fr[sp].best = 0;
            sp++;
            v = NULL;
        }
        walk_frame *f = &fr[sp - 1];
        if (f->next < cki_pv_child_count(f->v)) {
            cki_pv *c = (cki_pv *)cki_pv_child(f->v, f->next++);
            if (!c->height) v = c;
            else if (c->height != ON_PATH && c->height > f->best) f->best = c->height;
            continue;
        }
        f->v->height = f->best + 1;
        /* the call a TREBUILD replaces: call, args, persistent id, its tuple, leaves */
        if (f->v->kind == CKI_PV_TREBUILD && f->v->height < 5) f->v->height = 5;
        if (f->v->height > limit) {
            st = op_fail(m, CK_ELIMIT, "values nest %u levels deep, more than the limit of %llu",
                         (unsigned)f->v->height, (unsigned long long)limit);
            break;
        }
        if (--sp == 0) break;
        if (fr[sp].v->height > fr[sp - 1].best) fr[sp - 1].best = fr[sp].v->height;
    }
    cki_free(m->ctx, fr);
    return st;
}

/* ---- attaching items to non-containers ---------------------------------- */

static int opaque_object(const cki_pv *v)
{
    return v->kind == CKI_PV_REDUCE || v->kind == CKI_PV_TREBUILD || v->kind == CKI_PV_NEWOBJ || v->kind == CKI_PV_GLOBAL ||
           v->kind == CKI_PV_PERSID;
}

/* The container that receives SETITEM(S) (DICT) or APPEND(S)/ADDITEMS (LIST
 * or SET) aimed at TARGET: TARGET itself, or its extra / extra_list. */
static ck_status receiver(machine *m, cki_pv *target, cki_pv_kind want, cki_pv **out)
{
    cki_pv **slot;
    if (target->kind == want) {
        *out = target;
        return CK_OK;
    }
    if (!opaque_object(target))
        return op_fail(m, CK_EFORMAT, "target is a %s, not a %s", cki_pv_kind_name(target->kind),
                       cki_pv_kind_name(want));
    if (!target->more && !(target->more = new_more(m))) return op_nomem(m);
    slot = want == CKI_PV_DICT ? &target->more->extra : &target->more->extra_list;
    if (!*slot) {
        *slot = new_node(m, want == CKI_PV_DICT ? CKI_PV_DICT : CKI_PV_LIST);
        if (!*slot) return op_nomem(m);
    }
    *out = *slot;
    return CK_OK;
}

/* ---- lean runs: torch rebuild records and the memo filter ---------------- */

/* No BUILD state and no items given to it (SETITEM/APPEND on an object). */
static int plain_node(const cki_pv *v)
{
    return !v->more;
}

/* Only the node's one container points to it: never stored in the memo,
 * duplicated or fetched, not interned. */
static int private_node(const cki_pv *v)
{
    return !v->shared && !(v->mflags & CKI_PV_M_ESCAPED) && plain_node(v);
}

static int leaf_of(const cki_pv *v, cki_pv_kind kind)
{
    return v->kind == kind && v->n == 0 && plain_node(v);
}

static int int_tuple(const cki_pv *v)
{
    if (v->kind != CKI_PV_TUPLE || !plain_node(v)) return 0;
    for (uint32_t i = 0; i < v->n; i++)
        if (!leaf_of(v->items[i], CKI_PV_INT)) return 0;
    return 1;
}

static int global_is(const cki_pv *v, const char *module, const char *name)
{
    return leaf_of(v, CKI_PV_GLOBAL) && !strcmp(v->u.g.module, module) &&
           !strcmp(v->u.g.name, name);
}

/* V's item array and then V itself go to the free lists. */
static void recycle(machine *m, cki_pv *v)
{
    if (v->items && v->cap >= 1 && v->cap <= FREE_ITEM_MAX) {
        v->items[0] = (cki_pv *)(void *)m->free_items[v->cap];
        m->free_items[v->cap] = v->items;
    }
    v->items = (cki_pv **)(void *)m->free_nodes;
    m->free_nodes = v;
}

/* REDUCE of callable C on args A: *OUT is a CKI_PV_TREBUILD record when the
 * call is the canonical tensor rebuild (pickle.h), else NULL (the caller
 * makes the REDUCE node). */
static ck_status torch_rebuild(machine *m, cki_pv *c, cki_pv *a, cki_pv **out)
{
    cki_pv *pid, *t, *key, *hooks, *v, **items;
    uint64_t here = m->base_off + m->op_pos; /* the REDUCE: the record's offset */
    uint32_t offs[2];
    *out = NULL;
    if (!global_is(c, "torch._utils", "_rebuild_tensor_v2") || a->kind != CKI_PV_TUPLE ||
        a->n != 6 || !private_node(a))
        return CK_OK;
    pid = a->items[0];
    if (pid->kind != CKI_PV_PERSID || pid->n != 1 || !private_node(pid)) return CK_OK;
    t = pid->items[0];
    if (t->kind != CKI_PV_TUPLE || t->n != 5 || !private_node(t)) return CK_OK;
    key = t->items[2];
    if (!leaf_of(t->items[0], CKI_PV_STR) || t->items[0]->u.s.len != 7 ||
        memcmp(t->items[0]->u.s.p, "storage", 7) != 0 || !leaf_of(t->items[1], CKI_PV_GLOBAL) ||
        !leaf_of(key, CKI_PV_STR) || !leaf_of(t->items[3], CKI_PV_STR) ||
        !leaf_of(t->items[4], CKI_PV_INT))
        return CK_OK;
    if (!leaf_of(a->items[1], CKI_PV_INT) || !int_tuple(a->items[2]) || !int_tuple(a->items[3]) ||
        !leaf_of(a->items[4], CKI_PV_BOOL))
        return CK_OK;
    hooks = a->items[5];
    if (hooks->kind != CKI_PV_REDUCE || hooks->n != 2 || !private_node(hooks) ||
        !global_is(hooks->items[0], "collections", "OrderedDict") ||
        !leaf_of(hooks->items[1], CKI_PV_TUPLE) || here - pid->off > UINT32_MAX ||
        here - hooks->off > UINT32_MAX)
        return CK_OK;
    {
        cki_pv *sh[CKI_TRS_COUNT];
        sh[CKI_TRS_CALLABLE] = c;
        sh[CKI_TRS_TAG] = t->items[0];
        sh[CKI_TRS_CLASS] = t->items[1];
        sh[CKI_TRS_LOCATION] = t->items[3];
        sh[CKI_TRS_HOOKS_CLASS] = hooks->items[0];
        sh[CKI_TRS_HOOKS_ARGS] = hooks->items[1];
        if (!m->trb_shared || memcmp(m->trb_shared->items, sh, sizeof sh) != 0) {
            ck_status st;
            cki_pv *x = new_node(m, CKI_PV_TUPLE);
            if (!x) return op_nomem(m);
            x->off = c->off;
            x->mflags |= CKI_PV_M_ESCAPED; /* never recycled */
            if ((st = add_items(m, x, sh, CKI_TRS_COUNT))) return st;
            m->trb_shared = x;
        }
    }
    v = new_node(m, CKI_PV_TREBUILD);
    items = cki_arena_alloc_ptrs(m->arena, CKI_TRB_COUNT * sizeof *items + sizeof offs);
    if (!v || !items) return op_nomem(m);
    items[CKI_TRB_SHARED] = m->trb_shared;
    items[CKI_TRB_NUMEL] = t->items[4];
    items[CKI_TRB_OFFSET] = a->items[1];
    items[CKI_TRB_SIZE] = a->items[2];
    items[CKI_TRB_STRIDE] = a->items[3];
    items[CKI_TRB_GRAD] = a->items[4];
    offs[0] = (uint32_t)(here - pid->off);
    offs[1] = (uint32_t)(here - hooks->off);
    memcpy(items + CKI_TRB_COUNT, offs, sizeof offs);
    v->items = items;
    v->n = v->cap = CKI_TRB_COUNT;
    v->u.s.p = key->u.s.p; /* the text stays in the arena; the node may go */
    v->u.s.len = key->u.s.len;
    recycle(m, a);
    recycle(m, pid);
    recycle(m, t);
    recycle(m, hooks);
    if (private_node(key)) recycle(m, key);
    *out = v;
    return CK_OK;
}

/* Sets bit I of *B (*CAP bytes), growing it; 1 on allocation failure. */
static int bit_grow_set(ck_ctx *ctx, uint8_t **b, size_t *cap, uint64_t i)
{
    if ((i >> 3) >= *cap) {
        size_t ncap = *cap ? *cap : 64;
        uint8_t *nb;
        while ((i >> 3) >= ncap) ncap *= 2;
        nb = cki_realloc(ctx, *b, ncap);
        if (!nb) return 1;
        memset(nb + *cap, 0, ncap - *cap);
        *b = nb;
        *cap = ncap;
    }
    bit_set(*b, i);
    return 0;
}

/* The memo filter's first pass over P[0..LEN) up to its first STOP: the
 * keys that BINGET / LONG_BINGET fetch. Leaves the filter off (key_span 0)
 * for text memo opcodes, MEMOIZE, a key past LEN, any opcode it cannot frame
 * or no STOP (the run itself then reports what is wrong). */
static void memo_prepass(machine *m, const uint8_t *p, size_t len)
{
    size_t pos = 0, cap = 0;
    uint64_t span = 0, n, key;
    uint8_t *got = NULL;
    int ok = 0;
#define NEED(k)                                                                                \
    do {                                                                                       \
        if ((uint64_t)(k) > len - pos) goto out;                                               \
    } while (0)
#define SKIP(k)                                                                                \
    do {                                                                                       \
        NEED(k);                                                                               \
        pos += (size_t)(k);                                                                    \
    } while (0)
#define LINE()                                                                                 \
    do {                                                                                       \
        const uint8_t *nl_ = memchr(p + pos, '\n', len - pos);                                 \
        if (!nl_) goto out;                                                                    \
        pos = (size_t)(nl_ - p) + 1;                                                           \
    } while (0)
    while (pos < len) {
        uint8_t op = p[pos++];
        switch (op) {
        case '.': ok = 1; goto out;
        case '(': case '0': case '1': case '2': case 'N': case 0x88: case 0x89: case ']':
        case ')': case '}': case 0x8f: case 't': case 'l': case 0x91: case 'd': case 0x85:
        case 0x86: case 0x87: case 'a': case 'e': case 0x90: case 's': case 'u': case 0x93:
        case 'o': case 'R': case 0x81: case 0x92: case 'b': case 'Q':
            break;
        case 0x80: case 'K': SKIP(1); break;
        case 'M': SKIP(2); break;
        case 'J': SKIP(4); break;
        case 0x95: case 'G': SKIP(8); break;
        case 0x8a: case 'U': case 0x8c: case 'C': /* u8 length */
            NEED(1);
            n = p[pos++];
            SKIP(n);
            break;
        case 0x8b: case 'T': /* int32 length, >= 0 */
            NEED(4);
            if ((int32_t)cki_ld_le32(p + pos) < 0) goto out;
            n = cki_ld_le32(p + pos);
            pos += 4;
            SKIP(n);
            break;
        case 'X': case 'B': /* u32 length */
            NEED(4);
            n = cki_ld_le32(p + pos);
            pos += 4;
            SKIP(n);
            break;
        case 0x8d: case 0x8e: case 0x96: /* u64 length */
            NEED(8);
            n = cki_ld_le64(p + pos);
            pos += 8;
            SKIP(n);
            break;
        case 'I': case 'L': case 'F': case 'S': case 'V': case 'P': LINE(); break;
        case 'c': case 'i': LINE(); LINE(); break;
        case 'q': case 'h': case 'r': case 'j':
            if (op == 'q' || op == 'h') {
                NEED(1);
                key = p[pos++];
            } else {
                NEED(4);
                key = cki_ld_le32(p + pos);
                pos += 4;
            }
            if (key >= len) goto out;
            if (key + 1 > span) span = key + 1;
            if ((op == 'h' || op == 'j') && bit_grow_set(m->ctx, &got, &cap, key)) goto out;
            break;
        default: /* text PUT/GET, MEMOIZE, extensions, buffers, unknown */
            goto out;
        }
    }
out:
#undef NEED
#undef SKIP
#undef LINE
    if (ok && span && (span + 7) / 8 > cap) {
        size_t need = (size_t)((span + 7) / 8);
        uint8_t *nb = cki_realloc(m->ctx, got, need);
        if (!nb) ok = 0;
        else {
            memset(nb + cap, 0, need - cap);
            got = nb;
        }
    }
    if (ok && span && !(m->put_seen = cki_calloc(m->ctx, (size_t)((span + 7) / 8), 1))) ok = 0;
    if (!ok || !span) {
        cki_free(m->ctx, got);
        return;
    }
    m->fetched = got;
    m->key_span = span;
}

/* ---- the run --------------------------------------------------------------- */

#define TRY(x)                                                                                 \
    do {                                                                                       \
        if ((st = (x)) != CK_OK) goto done;                                                    \
    } while (0)

static ck_status torch_rebuild(machine *m, cki_pv *c, cki_pv *a, cki_pv **out);

static ck_status step(machine *m, cki_pv **root, int *stopped)
{
    const uint8_t *a = NULL;
    cki_pv *v = NULL, *w = NULL, *x = NULL, **items = NULL;
    size_t count = 0;
    uint64_t n;
    ck_status st = CK_OK;

    switch (m->op) {
    /* -- framing and control -- */
    case 0x80: /* PROTO */
        TRY(arg(m, 1, &a));
        if (a[0] > HIGHEST_PROTOCOL)
            return op_fail(m, CK_EFORMAT, "unsupported protocol %u (0-%d are known)", a[0],
                           HIGHEST_PROTOCOL);
        m->protocol = a[0];
        break;
    case 0x95: /* FRAME */
        TRY(arg(m, 8, &a));
        n = cki_ld_le64(a);
        if (n > left(m))
            return op_fail(m, CK_EFORMAT, "frame of %llu bytes but only %zu remain",
                           (unsigned long long)n, left(m));
        break;
    case '.': /* STOP */
        TRY(need_values(m, 1));
        *root = pop(m);
        *stopped = 1;
        break;
    case '(': /* MARK */
        TRY(push_mark(m));
        break;
    case '0': /* POP */
        if (m->nmarks && m->sp == fence(m)) {
            m->nmarks--;
            break;
        }
        TRY(need_values(m, 1));
        m->sp--;
        break;
    case '1': /* POP_MARK */
        TRY(pop_mark(m, &items, &count));
        break;
    case '2': /* DUP */
        TRY(need_values(m, 1));
        top(m)->mflags |= CKI_PV_M_ESCAPED;
        TRY(push(m, top(m)));
        break;

    /* -- scalars -- */
    case 'N': TRY(make_int(m, 0, CKI_PV_NONE, &v)); goto push_v;
    case 0x88: TRY(make_int(m, 1, CKI_PV_BOOL, &v)); goto push_v;
    case 0x89: TRY(make_int(m, 0, CKI_PV_BOOL, &v)); goto push_v;
    case 'I': TRY(text_int(m, 0, &v)); goto push_v;
    case 'L': TRY(text_int(m, 1, &v)); goto push_v;
    case 'J': /* BININT */
        TRY(arg(m, 4, &a));
        TRY(make_int(m, (int32_t)cki_ld_le32(a), CKI_PV_INT, &v));
        goto push_v;
    case 'K': /* BININT1 */
        TRY(arg(m, 1, &a));
        TRY(make_int(m, a[0], CKI_PV_INT, &v));
        goto push_v;
    case 'M': /* BININT2 */
        TRY(arg(m, 2, &a));
        TRY(make_int(m, cki_ld_le16(a), CKI_PV_INT, &v));
        goto push_v;
    case 0x8a: /* LONG1 */
        TRY(arg(m, 1, &a));
        n = a[0];
        TRY(payload(m, n, "integer", &a));
        TRY(make_int_le(m, a, (size_t)n, &v));
        goto push_v;
    case 0x8b: { /* LONG4 */
        int32_t len;
        TRY(arg(m, 4, &a));
        len = (int32_t)cki_ld_le32(a);
        if (len < 0) return op_fail(m, CK_EFORMAT, "negative integer length %d", (int)len);
        TRY(payload(m, (uint64_t)len, "integer", &a));
        TRY(make_int_le(m, a, (size_t)len, &v));
        goto push_v;
    }
    case 'F': TRY(text_float(m, &v)); goto push_v;
    case 'G': { /* BINFLOAT: big-endian IEEE 754 double */
        uint64_t bits;
        TRY(arg(m, 8, &a));
        bits = cki_ld_be64(a);
        TRY(make_container(m, CKI_PV_FLOAT, NULL, 0, &v));
        memcpy(&v->u.f, &bits, sizeof bits);
        goto push_v;
    }

    /* -- strings and bytes -- */
    case 'S': TRY(text_string(m, &v)); goto push_v;
    case 'T': { /* BINSTRING */
        int32_t len;
        TRY(arg(m, 4, &a));
        len = (int32_t)cki_ld_le32(a);
        if (len < 0) return op_fail(m, CK_EFORMAT, "negative string length %d", (int)len);
        TRY(payload(m, (uint64_t)len, "string", &a));
        TRY(py2_str(m, a, (size_t)len, &v));
        goto push_v;
    }
    case 'U': /* SHORT_BINSTRING */
        TRY(arg(m, 1, &a));
        n = a[0];
        TRY(payload(m, n, "string", &a));
        TRY(py2_str(m, a, (size_t)n, &v));
        goto push_v;
    case 'V': TRY(text_unicode(m, &v)); goto push_v;
    case 'X': /* BINUNICODE */
        TRY(arg(m, 4, &a));
        TRY(unicode_payload(m, cki_ld_le32(a), &v));
        goto push_v;
    case 0x8c: /* SHORT_BINUNICODE */
        TRY(arg(m, 1, &a));
        TRY(unicode_payload(m, a[0], &v));
        goto push_v;
    case 0x8d: /* BINUNICODE8 */
        TRY(arg(m, 8, &a));
        TRY(unicode_payload(m, cki_ld_le64(a), &v));
        goto push_v;
    case 'B': /* BINBYTES */
        TRY(arg(m, 4, &a));
        TRY(bytes_payload(m, cki_ld_le32(a), &v));
        goto push_v;
    case 'C': /* SHORT_BINBYTES */
        TRY(arg(m, 1, &a));
        TRY(bytes_payload(m, a[0], &v));
        goto push_v;
    case 0x8e: /* BINBYTES8 */
    case 0x96: /* BYTEARRAY8 */
        TRY(arg(m, 8, &a));
        TRY(bytes_payload(m, cki_ld_le64(a), &v));
        goto push_v;
    case 0x97: /* NEXT_BUFFER */
    case 0x98: /* READONLY_BUFFER */
        return op_fail(m, CK_EUNSUPPORTED, "out-of-band buffers (protocol 5) are not supported: "
                                           "the data is not in the file");
    case 0x82: /* EXT1 */
    case 0x83: /* EXT2 */
    case 0x84: /* EXT4 */
        return op_fail(m, CK_EUNSUPPORTED, "copyreg extension codes are not supported: they name "
                                           "globals registered outside the file");

    /* -- containers -- */
    case ']': TRY(make_container(m, CKI_PV_LIST, NULL, 0, &v)); goto push_v;
    case ')': TRY(make_tuple(m, NULL, 0, &v)); goto push_v;
    case '}': TRY(make_container(m, CKI_PV_DICT, NULL, 0, &v)); goto push_v;
    case 0x8f: TRY(make_container(m, CKI_PV_SET, NULL, 0, &v)); goto push_v;
    case 't': /* TUPLE */
        TRY(pop_mark(m, &items, &count));
        TRY(make_tuple(m, items, count, &v));
        goto push_v;
    case 'l': /* LIST */
    case 0x91: /* FROZENSET */
        TRY(pop_mark(m, &items, &count));
        TRY(make_container(m, m->op == 't' ? CKI_PV_TUPLE : m->op == 'l' ? CKI_PV_LIST
                                                                          : CKI_PV_FROZENSET,
                           items, count, &v));
        goto push_v;
    case 'd': /* DICT */
        TRY(pop_mark(m, &items, &count));
        if (count % 2)
            return op_fail(m, CK_EFORMAT, "odd number of values (%zu) for key, value pairs",
                           count);
        TRY(make_container(m, CKI_PV_DICT, items, count, &v));
        goto push_v;
    case 0x85: /* TUPLE1 */
    case 0x86: /* TUPLE2 */
    case 0x87: /* TUPLE3 */
        count = (size_t)(m->op - 0x84);
        TRY(need_values(m, count));
        m->sp -= count;
        TRY(make_tuple(m, m->stack + m->sp, count, &v));
        goto push_v;
    case 'a': /* APPEND */
        TRY(need_values(m, 2));
        w = pop(m);
        TRY(receiver(m, top(m), CKI_PV_LIST, &x));
        TRY(add_items(m, x, &w, 1));
        break;
    case 'e': /* APPENDS */
    case 0x90: /* ADDITEMS */
        TRY(pop_mark(m, &items, &count));
        TRY(need_values(m, 1));
        TRY(receiver(m, top(m), m->op == 'e' ? CKI_PV_LIST : CKI_PV_SET, &x));
        TRY(add_items(m, x, items, count));
        break;
    case 's': /* SETITEM */
        TRY(need_values(m, 3));
        m->sp -= 2;
        TRY(receiver(m, top(m), CKI_PV_DICT, &x));
        TRY(add_items(m, x, m->stack + m->sp, 2));
        break;
    case 'u': /* SETITEMS */
        TRY(pop_mark(m, &items, &count));
        if (count % 2)
            return op_fail(m, CK_EFORMAT, "odd number of values (%zu) for key, value pairs",
                           count);
        TRY(need_values(m, 1));
        TRY(receiver(m, top(m), CKI_PV_DICT, &x));
        TRY(add_items(m, x, items, count));
        break;

    /* -- memo -- */
    case 'p': TRY(text_memo_key(m, 1, &n)); TRY(memo_put(m, n)); break;
    case 'q': TRY(arg(m, 1, &a)); TRY(memo_put(m, a[0])); break;
    case 'r': TRY(arg(m, 4, &a)); TRY(memo_put(m, cki_ld_le32(a))); break;
    case 0x94: TRY(memo_put(m, m->memo_count)); break;
    case 'g': TRY(text_memo_key(m, 0, &n)); TRY(memo_push(m, n)); break;
    case 'h': TRY(arg(m, 1, &a)); TRY(memo_push(m, a[0])); break;
    case 'j': TRY(arg(m, 4, &a)); TRY(memo_push(m, cki_ld_le32(a))); break;

    /* -- globals and objects -- */
    case 'c': /* GLOBAL */
        TRY(text_global(m, 0, NULL));
        break;
    case 0x93: /* STACK_GLOBAL: name on top, module below */
        TRY(need_values(m, 2));
        w = pop(m);
        x = pop(m);
        if (plain_str(x) && plain_str(w)) TRY(push_global_node(m, x->u.s.p, w->u.s.p, 1, NULL));
        else TRY(push_global_node(m, "?", "?", 0, NULL));
        break;
    case 'i': { /* INST: module, name lines; arguments above the mark */
        cki_pv *args;
        TRY(text_global(m, 1, &w));
        m->sp--; /* the GLOBAL just pushed: it becomes the class of the new object */
        TRY(pop_mark(m, &items, &count));
        TRY(make_container(m, CKI_PV_TUPLE, items, count, &args));
        TRY(make_container(m, CKI_PV_NEWOBJ, NULL, 0, &v));
        {
            cki_pv *pair[2] = {w, args};
            TRY(add_items(m, v, pair, 2));
        }
        goto push_v;
    }
    case 'o': { /* OBJ: class and arguments above the mark */
        cki_pv *args, *pair[2];
        TRY(pop_mark(m, &items, &count));
        if (!count) return op_fail(m, CK_EFORMAT, "no class after the MARK");
        TRY(make_container(m, CKI_PV_TUPLE, items + 1, count - 1, &args));
        pair[0] = items[0];
        pair[1] = args;
        TRY(make_container(m, CKI_PV_NEWOBJ, pair, 2, &v));
        goto push_v;
    }
    case 'R': /* REDUCE: args on top, callable below; the call replaces both */
        TRY(need_values(m, 2));
        if (m->lean) {
            TRY(torch_rebuild(m, m->stack[m->sp - 2], m->stack[m->sp - 1], &v));
            if (v) {
                m->sp -= 2;
                goto push_v;
            }
        }
        m->sp -= 2;
        TRY(make_container(m, CKI_PV_REDUCE, m->stack + m->sp, 2, &v));
        goto push_v;
    case 0x81: /* NEWOBJ: cls, args */
        TRY(need_values(m, 2));
        m->sp -= 2;
        TRY(make_container(m, CKI_PV_NEWOBJ, m->stack + m->sp, 2, &v));
        goto push_v;
    case 0x92: /* NEWOBJ_EX: cls, args, kwargs */
        TRY(need_values(m, 3));
        m->sp -= 3;
        TRY(make_container(m, CKI_PV_NEWOBJ, m->stack + m->sp, 3, &v));
        goto push_v;
    case 'b': /* BUILD: state on top, object below */
        TRY(need_values(m, 2));
        w = pop(m);
        x = top(m);
        if (x->shared) {
            /* an interned value is never changed: the state goes to a copy */
            cki_pv *c = new_node(m, x->kind);
            if (!c) return op_nomem(m);
            *c = *x;
            c->shared = 0;
            if (x->more) { /* never set on interned values; copied all the same */
                if (!(c->more = new_more(m))) return op_nomem(m);
                *c->more = *x->more;
            }
            m->stack[m->sp - 1] = x = c;
        }
        if (!x->more && !(x->more = new_more(m))) return op_nomem(m);
        if (x->more->state) {
            cki_pv *holder = new_node(m, CKI_PV_NONE);
            if (!holder || !(holder->more = new_more(m))) return op_nomem(m);
            holder->more->state = x->more->state;
            holder->more->state_prev = x->more->state_prev;
            x->more->state_prev = holder;
        }
        x->more->state = w;
        break;
    case 'P': { /* PERSID: an ASCII line */
        const uint8_t *s;
        size_t len;
        TRY(text_line(m, &s, &len));
        for (size_t i = 0; i < len; i++)
            if (s[i] >= 0x80)
                return op_fail(m, CK_EFORMAT, "persistent id is not ascii (byte %zu)", i);
        TRY(make_blob(m, CKI_PV_STR, s, len, &w));
        TRY(make_container(m, CKI_PV_PERSID, &w, 1, &v));
        goto push_v;
    }
    case 'Q': /* BINPERSID */
        TRY(need_values(m, 1));
        w = pop(m);
        TRY(make_container(m, CKI_PV_PERSID, &w, 1, &v));
        goto push_v;

    default:
        return op_fail(m, CK_EFORMAT, "not a pickle opcode");
    }
    return CK_OK;
push_v:
    return push(m, v);
done:
    return st;
}

static ck_status run_machine(ck_ctx *ctx, cki_arena *arena, cki_arena *text, const uint8_t *p,
                             size_t len, const char *file, const char *where, uint64_t base_off,
                             int lean, cki_pickle *out)
{
    machine m;
    cki_pv *root = NULL;
    int stopped = 0;
    ck_status st = CK_OK;

    memset(&m, 0, sizeof m);
    m.ctx = ctx;
    m.arena = arena;
    cki_cur_init(&m.cur, p, p ? len : 0);
    m.file = file ? file : "pickle";
    m.where = where ? where : "pickle";
    m.base_off = base_off;
    m.stack_max = ctx ? ctx->limits[CK_LIMIT_PICKLE_STACK] : 10000000ull;
    m.memo_max = ctx ? ctx->limits[CK_LIMIT_PICKLE_MEMO] : 10000000ull;
    m.depth_max = ctx ? ctx->limits[CK_LIMIT_PICKLE_DEPTH] : 1000;
    if (out) memset(out, 0, sizeof *out);
    if (!arena || !out) return cki_fail(ctx, CK_EARG, "%s: %s: no arena or output", m.file, m.where);
    m.stack_cap = 64; /* allocated up front: the stack pointer is never NULL */
    m.stack = cki_malloc(ctx, m.stack_cap * sizeof *m.stack);
    if (!m.stack) {
        char why[CKI_ERRMSG_MAX];
        snprintf(why, sizeof why, "%s", ctx && ctx->errmsg[0] ? ctx->errmsg : "out of memory");
        return cki_fail(ctx, CK_ENOMEM, "%s: %s: before the first opcode: %s", m.file, m.where,
                        why);
    }
    if (lean) {
        m.lean = 1;
        m.text = text;
        memo_prepass(&m, p, len);
    }
    out->texts = m.text ? m.text : arena;

    while (!stopped) {
        if (!left(&m)) {
            st = cki_fail(ctx, CK_EFORMAT, "%s: %s: truncated at byte %llu: no STOP before end "
                                           "of data", m.file, m.where,
                          (unsigned long long)(base_off + m.cur.pos));
            break;
        }
        m.op_pos = m.cur.pos;
        cki_cur_u8(&m.cur, &m.op);
        m.opcodes++;
        if ((st = step(&m, &root, &stopped))) break;
    }
    if (!st) st = check_depth(&m, root);

    out->globals = m.globals;
    out->global_count = m.global_count;
    out->opcodes = m.opcodes;
    out->protocol = m.protocol;
    if (!st) {
        out->root = root;
        out->end = m.cur.pos;
    }
    cki_free(ctx, m.stack);
    cki_free(ctx, m.marks);
    cki_free(ctx, m.memo);
    cki_free(ctx, m.dense);
    cki_free(ctx, m.small_ints);
    cki_free(ctx, m.tuples);
    cki_free(ctx, m.fetched);
    cki_free(ctx, m.put_seen);
    return st;
}

ck_status cki_pickle_run(ck_ctx *ctx, cki_arena *arena, const uint8_t *p, size_t len,
                         const char *file, const char *where, uint64_t base_off, cki_pickle *out)
{
    return run_machine(ctx, arena, NULL, p, len, file, where, base_off, 0, out);
}

ck_status cki_pickle_run_lean(ck_ctx *ctx, cki_arena *arena, cki_arena *text, const uint8_t *p,
                              size_t len, const char *file, const char *where,
                              uint64_t base_off, cki_pickle *out)
{
    ck_status st = run_machine(ctx, arena, text, p, len, file, where, base_off, 1, out);
    if (st && arena && out) /* the exact run decides what is wrong, and how it is said */
        st = run_machine(ctx, arena, NULL, p, len, file, where, base_off, 0, out);
    return st;
}
