/*
 * tensor.c -- view validation and the one read path every writer uses.
 *
 * cki_tensor_read gathers elements of a (possibly strided) view in row-major
 * order in blocks: innermost runs with unit stride are memcpy'd, others are
 * copied element by element; then big-endian storages are swapped, conj/neg
 * flags applied and the block cast to the asked dtype. A dense little-endian
 * run without flags skips the block and is cast straight from the storage.
 * Memory stays at one block on the stack whatever the tensor's size.
 */
#include "tensor.h"

#include "cast.h"

#define BLOCK_BYTES (64 * 1024)

/* A block-quantised tensor is a dense run of whole blocks along its last
 * dimension: a view that would split a block (strides, an offset or a last
 * dimension that is not a multiple of the block) is not representable. */
static ck_status validate_blocks(ck_ctx *ctx, const char *file, cki_tensor *t)
{
    unsigned bb, blk = ck_dtype_block(t->dtype, &bb);
    uint64_t numel = 1, nbytes, off;
    const char *dn = ck_dtype_name(t->dtype);
    if (t->ndim < 1 || t->ndim > CKI_MAX_DIMS)
        return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': %s needs 1 to %d dimensions, not %d",
                        file, t->name, dn, CKI_MAX_DIMS, t->ndim);
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': negative size %lld in dimension %d",
                            file, t->name, (long long)t->shape[d], d);
        if (cki_mul_u64(&numel, numel, (uint64_t)t->shape[d]))
            return cki_fail(ctx, CK_EFORMAT,
                            "%s: tensor '%s': element count overflows 64 bits at dimension %d",
                            file, t->name, d);
    }
    if ((uint64_t)t->shape[t->ndim - 1] % blk)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: tensor '%s': last dimension %lld is not a multiple of %s's block of "
                        "%u elements",
                        file, t->name, (long long)t->shape[t->ndim - 1], dn, blk);
    if ((t->stride && !cki_tensor_is_dense(t)) || t->offset % blk)
        return cki_fail(ctx, CK_EUNSUPPORTED,
                        "%s: tensor '%s': a strided or offset view of %s would split its "
                        "%u-element blocks",
                        file, t->name, dn, blk);
    if (cki_dtype_nbytes(t->dtype, numel, &nbytes) ||
        cki_mul_u64(&off, t->offset / blk, bb))
        return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': byte size of %llu elements overflows",
                        file, t->name, (unsigned long long)numel);
    t->numel = numel;
    t->nbytes = nbytes;
    if (!t->storage) return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': no storage", file, t->name);
    if (t->storage->dtype != t->dtype)
        return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': storage holds %s, tensor is %s", file,
                        t->name, ck_dtype_name(t->storage->dtype), dn);
    if (off > t->storage->len || nbytes > t->storage->len - off)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: tensor '%s': %llu elements of %s need %llu bytes at byte %llu but its "
                        "storage holds %llu",
                        file, t->name, (unsigned long long)numel, dn, (unsigned long long)nbytes,
                        (unsigned long long)off, (unsigned long long)t->storage->len);
    return CK_OK;
}

ck_status cki_tensor_validate(ck_ctx *ctx, const char *file, cki_tensor *t)
{
    uint64_t numel = 1, last = 0, bits, cap_elems, nbytes;
    unsigned ebits = ck_dtype_bits(t->dtype);
    if (ck_dtype_is_quantized(t->dtype)) return validate_blocks(ctx, file, t);
    if (!ebits) return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': invalid dtype", file, t->name);
    if (t->ndim < 0 || t->ndim > CKI_MAX_DIMS)
        return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': %d dimensions (at most %d)", file,
                        t->name, t->ndim, CKI_MAX_DIMS);
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': negative size %lld in dimension %d",
                            file, t->name, (long long)t->shape[d], d);
        if (cki_mul_u64(&numel, numel, (uint64_t)t->shape[d]))
            return cki_fail(ctx, CK_EFORMAT,
                            "%s: tensor '%s': element count overflows 64 bits at dimension %d",
                            file, t->name, d);
    }
    if (cki_dtype_nbytes(t->dtype, numel, &nbytes))
        return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': byte size of %llu elements overflows",
                        file, t->name, (unsigned long long)numel);
    t->numel = numel;
    t->nbytes = nbytes;
    if (!t->storage) return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': no storage", file, t->name);
    if (t->storage->dtype != t->dtype && ck_dtype_bits(t->storage->dtype) != ebits)
        return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': storage holds %s, tensor is %s", file,
                        t->name, ck_dtype_name(t->storage->dtype), ck_dtype_name(t->dtype));
    if (numel == 0) return CK_OK;
    if (t->storage->fetch.fn && !cki_tensor_is_dense(t))
        return cki_fail(ctx, CK_EUNSUPPORTED,
                        "%s: tensor '%s': strided views of streamed (compressed) bytes are not "
                        "supported",
                        file, t->name);
    if (ebits % 8 && (t->stride || t->offset))
        return cki_fail(ctx, CK_EUNSUPPORTED,
                        "%s: tensor '%s': strided views of sub-byte dtype %s are not supported",
                        file, t->name, ck_dtype_name(t->dtype));
    /* last reachable element index */
    last = t->offset;
    for (int d = 0; d < t->ndim; d++) {
        int64_t st;
        uint64_t span;
        if (t->stride) {
            st = t->stride[d];
            if (st < 0)
                return cki_fail(ctx, CK_EFORMAT,
                                "%s: tensor '%s': negative stride %lld in dimension %d", file,
                                t->name, (long long)st, d);
        } else {
            st = 1;
            for (int e = d + 1; e < t->ndim; e++) st *= t->shape[e]; /* numel fits: no overflow */
        }
        if (cki_mul_u64(&span, (uint64_t)(t->shape[d] - 1), (uint64_t)st) ||
            cki_add_u64(&last, last, span))
            return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': view extent overflows 64 bits",
                            file, t->name);
    }
    if (cki_mul_u64(&bits, t->storage->len, 8))
        return cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': storage too large", file, t->name);
    cap_elems = bits / ebits;
    if (last >= cap_elems)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: tensor '%s': view reaches element %llu but its storage%s%s holds %llu",
                        file, t->name, (unsigned long long)last, t->storage->key ? " " : "",
                        t->storage->key ? t->storage->key : "", (unsigned long long)cap_elems);
    return CK_OK;
}

int cki_tensor_is_dense(const cki_tensor *t)
{
    int64_t expect = 1;
    if (!t->stride) return 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        if (t->shape[d] != 1 && t->stride[d] != expect) return 0;
        expect *= t->shape[d];
    }
    return 1;
}

const uint8_t *cki_tensor_bytes(const cki_tensor *t)
{
    uint64_t off;
    if (!t->storage || !t->storage->data || t->storage->big_endian || t->flags ||
        t->storage->fetch.fn || !cki_tensor_is_dense(t))
        return NULL;
    if (ck_dtype_is_quantized(t->dtype)) {
        unsigned bb, blk = ck_dtype_block(t->dtype, &bb);
        return t->storage->data + t->offset / blk * bb;
    }
    if (ck_dtype_bits(t->dtype) % 8) return t->offset ? NULL : t->storage->data;
    off = t->offset * cki_dtype_size(t->dtype);
    return t->storage->data + off;
}

/* Copies COUNT elements starting at logical index FIRST into DST in source dtype. */
static void gather(const cki_tensor *t, uint64_t first, uint64_t count, uint8_t *dst)
{
    unsigned es = cki_dtype_size(t->dtype);
    const uint8_t *base = t->storage->data;
    int64_t idx[CKI_MAX_DIMS];
    int64_t dense_stride[CKI_MAX_DIMS];
    const int64_t *stride = t->stride;
    int nd = t->ndim;
    uint64_t rem = first, pos;

    if (cki_tensor_is_dense(t)) {
        memcpy(dst, base + (t->offset + first) * es, count * es);
        return;
    }
    if (!stride) { /* cannot happen: dense handled above */
        int64_t s = 1;
        for (int d = nd - 1; d >= 0; d--) { dense_stride[d] = s; s *= t->shape[d]; }
        stride = dense_stride;
    }
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = (int64_t)(rem % (uint64_t)t->shape[d]);
        rem /= (uint64_t)t->shape[d];
    }
    pos = t->offset;
    for (int d = 0; d < nd; d++) pos += (uint64_t)idx[d] * (uint64_t)stride[d];
    while (count) {
        int64_t inner = t->shape[nd - 1];
        int64_t st = stride[nd - 1];
        uint64_t run = (uint64_t)(inner - idx[nd - 1]);
        if (run > count) run = count;
        if (st == 1) {
            memcpy(dst, base + pos * es, run * es);
        } else {
            const uint8_t *s = base + pos * es;
            switch (es) {
            case 1: for (uint64_t i = 0; i < run; i++) dst[i] = s[(uint64_t)st * i]; break;
            case 2:
                for (uint64_t i = 0; i < run; i++) memcpy(dst + 2 * i, s + 2 * (uint64_t)st * i, 2);
                break;
            case 4:
                for (uint64_t i = 0; i < run; i++) memcpy(dst + 4 * i, s + 4 * (uint64_t)st * i, 4);
                break;
            case 8:
                for (uint64_t i = 0; i < run; i++) memcpy(dst + 8 * i, s + 8 * (uint64_t)st * i, 8);
                break;
            default:
                for (uint64_t i = 0; i < run; i++)
                    memcpy(dst + es * i, s + es * (uint64_t)st * i, es);
            }
        }
        dst += run * es;
        count -= run;
        if (!count) break;
        /* advance the multi-index by RUN along the innermost dimension, carrying */
        idx[nd - 1] += (int64_t)run;
        pos += run * (uint64_t)st;
        for (int d = nd - 1; d > 0 && idx[d] == t->shape[d]; d--) {
            pos -= (uint64_t)idx[d] * (uint64_t)stride[d];
            idx[d] = 0;
            idx[d - 1]++;
            pos += (uint64_t)stride[d - 1];
        }
    }
}

/* Applies the conj and neg flags to N elements in place. */
static void apply_flags(const cki_tensor *t, uint8_t *p, uint64_t n)
{
    unsigned es = cki_dtype_size(t->dtype);
    char kind = cki_dtype_info_of(t->dtype)->kind;
    if (t->flags & CKI_T_NEG) {
        if (kind == 'F' || kind == 'C') {
            /* flip every sign bit (both parts of a complex number), little-endian */
            unsigned part = kind == 'C' ? es / 2 : es;
            for (uint64_t i = 0; i < n * es / part; i++) p[i * part + part - 1] ^= 0x80;
        } else if (kind == 'I') {
            for (uint64_t i = 0; i < n; i++) {
                uint64_t v = 0;
                memcpy(&v, p + i * es, es);
                v = (uint64_t)0 - v;
                memcpy(p + i * es, &v, es);
            }
        }
    }
    if ((t->flags & CKI_T_CONJ) && kind == 'C') {
        unsigned part = es / 2;
        for (uint64_t i = 0; i < n; i++) p[i * es + part + part - 1] ^= 0x80;
    }
}

/* cki_tensor_read for a storage read on demand (data == NULL): only dense,
 * little-endian, unflagged views, which is all a windowed reader makes. */
static ck_status read_paged(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t count,
                            ck_dtype as, uint8_t *out, cki_cast_stats *stats)
{
    const cki_storage *sg = t->storage;
    unsigned es = cki_dtype_size(t->dtype);
    uint64_t off = sg->file_off;
    uint8_t *tmp;
    ck_status st;
    if (!sg->src || sg->big_endian || t->flags || !cki_tensor_is_dense(t))
        return cki_fail(ctx, CK_EUNSUPPORTED,
                        "tensor '%s': strided, big-endian or flagged views are not read from "
                        "a file too large to hold",
                        t->name);
    if (!es) return cki_source_pread(ctx, sg->src, off, out, (size_t)t->nbytes);
    off += (t->offset + first) * es;
    if (as == t->dtype) return cki_source_pread(ctx, sg->src, off, out, (size_t)(count * es));
    tmp = cki_malloc(ctx, (size_t)(count * es));
    if (!tmp) return CK_ENOMEM;
    if (!(st = cki_source_pread(ctx, sg->src, off, tmp, (size_t)(count * es))))
        cki_cast(t->dtype, as, tmp, out, (size_t)count, stats);
    cki_free(ctx, tmp);
    return st;
}

/* cki_tensor_read for a storage whose bytes come from its fetch function (the
 * view is dense: validated at open). Range checked by the caller. */
static ck_status read_fetched(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t count,
                              ck_dtype as, uint8_t *out, size_t dst_cap, cki_cast_stats *stats)
{
    const cki_fetch *f = &t->storage->fetch;
    unsigned es = cki_dtype_size(t->dtype), os;
    char kind = cki_dtype_info_of(t->dtype)->kind;
    uint64_t need;
    ck_status st;
    _Alignas(16) uint8_t block[BLOCK_BYTES];

    if (!es) {
        if (as != t->dtype || first != 0 || count != t->numel || t->flags)
            return cki_fail(ctx, CK_EUNSUPPORTED,
                            "tensor '%s': %s values can only be copied whole, not cast or sliced",
                            t->name, ck_dtype_name(t->dtype));
        if (t->nbytes > dst_cap) goto small;
        return f->fn(ctx, f->state, 0, out, (size_t)t->nbytes);
    }
    os = cki_dtype_size(as);
    if (!os || (as != t->dtype && !cki_cast_supported(t->dtype, as)))
        return cki_fail(ctx, CK_EUNSUPPORTED, "tensor '%s': cannot convert %s to %s", t->name,
                        ck_dtype_name(t->dtype), ck_dtype_name(as));
    if (cki_mul_u64(&need, count, os) || need > dst_cap) goto small;
    while (count) {
        uint64_t n = BLOCK_BYTES / es;
        uint8_t *p = as == t->dtype ? out : block;
        if (n > count) n = count;
        if ((st = f->fn(ctx, f->state, (t->offset + first) * es, p, (size_t)(n * es))))
            return st;
        if (t->storage->big_endian) {
            if (kind == 'C') cki_bswap(p, (size_t)n * 2, es / 2);
            else cki_bswap(p, (size_t)n, es);
        }
        if (t->flags) apply_flags(t, p, n);
        if (p == block) cki_cast(t->dtype, as, block, out, (size_t)n, stats);
        out += n * os;
        first += n;
        count -= n;
    }
    return CK_OK;
small:
    return cki_fail(ctx, CK_EARG, "tensor '%s': destination of %zu bytes is too small", t->name,
                    dst_cap);
}

ck_status cki_tensor_read(ck_ctx *ctx, const cki_tensor *t, uint64_t first, uint64_t count,
                          ck_dtype as, void *dst, size_t dst_cap, cki_cast_stats *stats)
{
    unsigned es = cki_dtype_size(t->dtype), os;
    uint64_t end, need;
    uint8_t *out = dst;
    _Alignas(16) uint8_t block[BLOCK_BYTES];

    if (as == CK_DT_KEEP) as = t->dtype;
    if (cki_add_u64(&end, first, count) || end > t->numel)
        return cki_fail(ctx, CK_EARG, "tensor '%s': read of elements [%llu, +%llu) past %llu",
                        t->name, (unsigned long long)first, (unsigned long long)count,
                        (unsigned long long)t->numel);
    if (ck_dtype_is_quantized(t->dtype) || ck_dtype_is_quantized(as))
        return cki_tensor_read_blocks(ctx, t, first, count, as, dst, dst_cap);
    if (t->storage->fetch.fn) return read_fetched(ctx, t, first, count, as, out, dst_cap, stats);
    if (!es) { /* sub-byte: whole, as stored */
        if (as != t->dtype || first != 0 || count != t->numel || t->flags)
            return cki_fail(ctx, CK_EUNSUPPORTED,
                            "tensor '%s': %s values can only be copied whole, not cast or sliced",
                            t->name, ck_dtype_name(t->dtype));
        if (t->nbytes > dst_cap) goto small;
        if (!t->storage->data) return read_paged(ctx, t, 0, t->numel, as, out, stats);
        memcpy(dst, t->storage->data, t->nbytes);
        return CK_OK;
    }
    os = cki_dtype_size(as);
    if (!os || (as != t->dtype && !cki_cast_supported(t->dtype, as)))
        return cki_fail(ctx, CK_EUNSUPPORTED, "tensor '%s': cannot convert %s to %s", t->name,
                        ck_dtype_name(t->dtype), ck_dtype_name(as));
    if (cki_mul_u64(&need, count, os) || need > dst_cap) goto small;
    if (!count) return CK_OK; /* also keeps gather from dividing by a zero-size dimension */
    if (!t->storage->data) return read_paged(ctx, t, first, count, as, out, stats);
    if (as == t->dtype && !t->storage->big_endian && !t->flags) {
        gather(t, first, count, out);
        return CK_OK;
    }
    if (!t->storage->big_endian && !t->flags && cki_tensor_is_dense(t)) {
        /* a dense run needs no gathering: cast straight from the storage */
        cki_cast(t->dtype, as, t->storage->data + (t->offset + first) * es, out, (size_t)count,
                 stats);
        return CK_OK;
    }
    while (count) {
        uint64_t n = BLOCK_BYTES / es;
        if (n > count) n = count;
        gather(t, first, n, block);
        if (t->storage->big_endian) {
            char kind = cki_dtype_info_of(t->dtype)->kind;
            if (kind == 'C') cki_bswap(block, (size_t)n * 2, es / 2);
            else cki_bswap(block, (size_t)n, es);
        }
        if (t->flags) apply_flags(t, block, n);
        if (as == t->dtype) memcpy(out, block, n * es);
        else cki_cast(t->dtype, as, block, out, (size_t)n, stats);
        out += n * os;
        first += n;
        count -= n;
    }
    return CK_OK;
small:
    return cki_fail(ctx, CK_EARG, "tensor '%s': destination of %zu bytes is too small", t->name,
                    dst_cap);
}
