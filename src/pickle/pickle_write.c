/*
 * pickle_write.c -- the protocol-2 emitter (see pickle_write.h).
 *
 * Encodings (CPython Lib/pickle.py, protocol 2; all integers little-endian):
 *   PROTO      80 02
 *   GLOBAL     'c' module '\n' name '\n'
 *   BINPUT     'q' u8        LONG_BINPUT  'r' u32   (index < 256 -> BINPUT)
 *   BINGET     'h' u8        LONG_BINGET  'j' u32
 *   BININT1    'K' u8        BININT2 'M' u16        BININT 'J' i32
 *   LONG1      8a n, n bytes of two's complement, shortest form keeping the
 *              sign (so 255 would need 2 bytes, 128 as well: 80 00)
 *   BINUNICODE 'X' u32 length, UTF-8 bytes
 *   TUPLE1-3   85 86 87      TUPLE 't' (pops to the last MARK '(')
 *   SETITEM 's'  SETITEMS 'u'  EMPTY_DICT '}'  EMPTY_TUPLE ')'
 *   NONE 'N'  NEWTRUE 88  NEWFALSE 89  REDUCE 'R'  BINPERSID 'Q'  STOP '.'
 * Hand-written because there is no C pickle library to lean on, and the
 * memo numbering must match CPython's so the bytes equal torch.save's.
 */
#include "pickle_write.h"

void cki_pkw_init(cki_pkw *w, ck_ctx *ctx)
{
    memset(w, 0, sizeof *w);
    cki_buf_init(&w->out, ctx, 0);
}

void cki_pkw_free(cki_pkw *w)
{
    cki_buf_free(&w->out);
    w->memo = 0;
}

ck_status cki_pkw_status(const cki_pkw *w)
{
    if (w->failed) return w->failed;
    if (w->out.failed) {
        ck_status st = w->out.ctx ? ck_last_status(w->out.ctx) : CK_OK;
        return st ? st : CK_ENOMEM;
    }
    return CK_OK;
}

static void put(cki_pkw *w, const void *p, size_t n)
{
    if (!w->failed) cki_buf_put(&w->out, p, n);
}

void cki_pkw_op(cki_pkw *w, uint8_t op)
{
    put(w, &op, 1);
}

void cki_pkw_proto(cki_pkw *w)
{
    static const uint8_t b[2] = {CKI_PK_PROTO, 2};
    put(w, b, 2);
}

void cki_pkw_stop(cki_pkw *w)
{
    cki_pkw_op(w, CKI_PK_STOP);
}

/* An opcode with a one-byte argument below 256, else its four-byte form. */
static void op_index(cki_pkw *w, uint8_t short_op, uint8_t long_op, uint32_t idx)
{
    uint8_t b[5];
    if (idx < 256) {
        b[0] = short_op;
        b[1] = (uint8_t)idx;
        put(w, b, 2);
    } else {
        b[0] = long_op;
        cki_st_le32(b + 1, idx);
        put(w, b, 5);
    }
}

uint32_t cki_pkw_put(cki_pkw *w)
{
    uint32_t idx = w->memo;
    if (idx == UINT32_MAX) {
        if (!w->failed)
            w->failed = cki_fail(w->out.ctx, CK_ELIMIT, "pickle: more than %u memo entries",
                                 UINT32_MAX - 1);
        return idx;
    }
    op_index(w, CKI_PK_BINPUT, CKI_PK_LONG_BINPUT, idx);
    w->memo++;
    return idx;
}

void cki_pkw_get(cki_pkw *w, uint32_t idx)
{
    op_index(w, CKI_PK_BINGET, CKI_PK_LONG_BINGET, idx);
}

void cki_pkw_int(cki_pkw *w, int64_t v)
{
    uint8_t b[10];
    if (v >= 0 && v <= 0xff) {
        b[0] = CKI_PK_BININT1;
        b[1] = (uint8_t)v;
        put(w, b, 2);
    } else if (v >= 0 && v <= 0xffff) {
        b[0] = CKI_PK_BININT2;
        cki_st_le16(b + 1, (uint16_t)v);
        put(w, b, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        b[0] = CKI_PK_BININT;
        cki_st_le32(b + 1, (uint32_t)(int32_t)v);
        put(w, b, 5);
    } else {
        /* shortest two's complement: drop top bytes that only repeat the sign */
        uint64_t u = (uint64_t)v;
        unsigned n = 8;
        for (unsigned i = 0; i < 8; i++) b[2 + i] = (uint8_t)(u >> (8 * i));
        while (n > 1) {
            uint8_t top = b[2 + n - 1], next = b[2 + n - 2];
            if ((top == 0x00 && !(next & 0x80)) || (top == 0xff && (next & 0x80)))
                n--;
            else
                break;
        }
        b[0] = CKI_PK_LONG1;
        b[1] = (uint8_t)n;
        put(w, b, 2 + n);
    }
}

void cki_pkw_none(cki_pkw *w)
{
    cki_pkw_op(w, CKI_PK_NONE);
}

void cki_pkw_bool(cki_pkw *w, int v)
{
    cki_pkw_op(w, v ? CKI_PK_NEWTRUE : CKI_PK_NEWFALSE);
}

uint32_t cki_pkw_str(cki_pkw *w, const char *s, size_t n)
{
    uint8_t b[5];
    if (n > UINT32_MAX) {
        if (!w->failed)
            w->failed = cki_fail(w->out.ctx, CK_EUNSUPPORTED,
                                 "pickle: string of %zu bytes exceeds the protocol-2 limit of "
                                 "%u",
                                 n, UINT32_MAX);
        return 0;
    }
    b[0] = CKI_PK_BINUNICODE;
    cki_st_le32(b + 1, (uint32_t)n);
    put(w, b, 5);
    put(w, s, n);
    return cki_pkw_put(w);
}

uint32_t cki_pkw_global(cki_pkw *w, const char *module, const char *name)
{
    cki_pkw_op(w, CKI_PK_GLOBAL);
    put(w, module, strlen(module));
    cki_pkw_op(w, '\n');
    put(w, name, strlen(name));
    cki_pkw_op(w, '\n');
    return cki_pkw_put(w);
}

void cki_pkw_str_ref(cki_pkw *w, const char *s, size_t n, cki_pkw_ref *ref)
{
    if (ref->set) {
        cki_pkw_get(w, ref->idx);
        return;
    }
    ref->idx = cki_pkw_str(w, s, n);
    ref->set = 1;
}

void cki_pkw_global_ref(cki_pkw *w, const char *module, const char *name, cki_pkw_ref *ref)
{
    if (ref->set) {
        cki_pkw_get(w, ref->idx);
        return;
    }
    ref->idx = cki_pkw_global(w, module, name);
    ref->set = 1;
}

void cki_pkw_tuple_begin(cki_pkw *w, size_t n)
{
    if (n > 3) cki_pkw_op(w, CKI_PK_MARK);
}

void cki_pkw_tuple_end(cki_pkw *w, size_t n)
{
    static const uint8_t small[4] = {CKI_PK_EMPTY_TUPLE, CKI_PK_TUPLE1, CKI_PK_TUPLE2,
                                     CKI_PK_TUPLE3};
    if (n == 0) {
        cki_pkw_op(w, CKI_PK_EMPTY_TUPLE);
        return;
    }
    cki_pkw_op(w, n <= 3 ? small[n] : CKI_PK_TUPLE);
    cki_pkw_put(w);
}

void cki_pkw_reduce(cki_pkw *w)
{
    cki_pkw_op(w, CKI_PK_REDUCE);
    cki_pkw_put(w);
}

void cki_pkw_persid(cki_pkw *w)
{
    cki_pkw_op(w, CKI_PK_BINPERSID);
}

void cki_pkw_empty_dict(cki_pkw *w)
{
    cki_pkw_op(w, CKI_PK_EMPTY_DICT);
    cki_pkw_put(w);
}

void cki_pkw_items_init(cki_pkw_items *it, uint64_t total)
{
    it->total = total;
    it->done = 0;
}

/* Pairs in the batch that pair number DONE belongs to. */
static uint64_t batch_len(const cki_pkw_items *it)
{
    uint64_t start = it->done - it->done % CKI_PKW_BATCH;
    uint64_t left = it->total - start;
    return left < CKI_PKW_BATCH ? left : CKI_PKW_BATCH;
}

void cki_pkw_item_start(cki_pkw *w, cki_pkw_items *it)
{
    if (it->done >= it->total) {
        if (!w->failed)
            w->failed = cki_fail(w->out.ctx, CK_EARG, "pickle: dict given more than %llu items",
                                 (unsigned long long)it->total);
        return;
    }
    if (it->done % CKI_PKW_BATCH == 0 && batch_len(it) > 1) cki_pkw_op(w, CKI_PK_MARK);
}

void cki_pkw_item_end(cki_pkw *w, cki_pkw_items *it)
{
    uint64_t len;
    if (it->done >= it->total) return; /* item_start already failed */
    len = batch_len(it);
    it->done++;
    if (it->done % CKI_PKW_BATCH == 0 || it->done == it->total)
        cki_pkw_op(w, len > 1 ? CKI_PK_SETITEMS : CKI_PK_SETITEM);
}
