/*
 * emit.c -- the streaming copy at the heart of every writer. A tensor's
 * output bytes are produced in chunks of at most CKI_SCRATCH bytes:
 *  - unchanged dense little-endian bytes go from the file to the sink
 *    (copy_file_range when no CRC is wanted, else pread), with the input's zip
 *    CRC-32 (cki_crc32) checked in the same pass when the tensor covers its
 *    storage;
 *  - anything else (casts, strided views, big-endian storages) is gathered
 *    and converted chunk by chunk in the scratch buffer.
 * Resident memory stays flat whatever the model's size: the next chunk of the
 * input is asked for ahead of the cursor (MADV_WILLNEED, so the disk works
 * while this chunk is checksummed and written), and the mapped pages behind
 * the cursor are released (MADV_DONTNEED), rounded out to 2 MiB -- pages
 * shared with a neighbouring tensor are simply mapped again from the page
 * cache if that tensor comes later.
 */
#include "convert.h"

/* Bytes asked for ahead of the cursor when reading through the mapping. */
#define AHEAD (8u << 20)
/* Releases are rounded out to this (the largest page-cache folio, PMD size). */
#define RELEASE_ALIGN (2ull << 20)

static ck_status progress(cki_write_job *job, uint64_t n)
{
    ck_ctx *ctx = job->ctx;
    job->done_bytes += n;
    if (ctx->progress && ctx->progress(ctx->progress_user, job->done_bytes, job->total_bytes))
        return cki_fail(ctx, CK_EINTR, "%s: interrupted", job->path);
    return CK_OK;
}

/* The file offset of storage byte POS, or -1 when SG is not in a mapped file. */
static int64_t file_pos(const cki_storage *sg, uint64_t pos)
{
    const cki_source *src = sg->src;
    if (!src || src->fd < 0 || !src->base || sg->data < src->base ||
        sg->data > src->base + src->len)
        return -1;
    return (int64_t)((uint64_t)(sg->data - src->base) + pos);
}

/* Storage bytes [pos, pos+len) are done: drop their pages from the mapping,
 * rounded out to RELEASE_ALIGN. A fault may map a whole large page-cache
 * folio (up to 2 MiB), beyond the bytes asked for and into neighbouring
 * tensors; rounding to the page would leave those pages mapped for good. */
static void done_with(const cki_storage *sg, uint64_t pos, uint64_t len)
{
    int64_t f = file_pos(sg, pos);
    const uint64_t mask = RELEASE_ALIGN - 1;
    uint64_t start, end;
    if (f < 0 || !len) return;
    start = (uint64_t)f & ~mask;
    end = ((uint64_t)f + len + mask) & ~mask;
    cki_source_release(sg->src, start, end - start);
}

/* Storage bytes [pos, pos+len) will be read next. */
static void ahead(const cki_storage *sg, uint64_t pos, uint64_t len)
{
    int64_t f = file_pos(sg, pos);
    if (f < 0 || !len || pos >= sg->len) return;
    if (len > sg->len - pos) len = sg->len - pos;
    cki_source_will_need(sg->src, (uint64_t)f, len);
}

/* Bytes of N elements of DT (whole blocks, or whole-byte elements). */
static uint64_t bytes_of(ck_dtype dt, uint64_t n)
{
    unsigned bb, blk = ck_dtype_block(dt, &bb);
    return blk > 1 ? n / blk * bb : n * cki_dtype_size(dt);
}

/* Quantising, dequantising or requantising (ggml block types): chunks of whole
 * blocks (a multiple of 256 elements, which every block size divides). */
static ck_status emit_blocks(cki_write_job *job, const cki_out_tensor *ot, uint32_t *crc)
{
    const cki_tensor *t = ot->src;
    const cki_storage *sg = t->storage;
    uint64_t per_out = bytes_of(ot->dtype, 256), first = 0;
    uint64_t per = CKI_SCRATCH / per_out * 256;
    int dense = cki_tensor_is_dense(t) && (ck_dtype_is_quantized(t->dtype) || cki_dtype_size(t->dtype));
    uint64_t base = ck_dtype_is_quantized(t->dtype) ? bytes_of(t->dtype, t->offset)
                                                    : t->offset * cki_dtype_size(t->dtype);
    ck_status st;
    if (dense) ahead(sg, base, AHEAD);
    while (first < t->numel) {
        uint64_t n = t->numel - first < per ? t->numel - first : per;
        uint64_t k = bytes_of(ot->dtype, n);
        uint64_t in_at = base + bytes_of(t->dtype, first), in_len = bytes_of(t->dtype, n);
        if (dense && first + n < t->numel) ahead(sg, in_at + AHEAD, in_len);
        if ((st = cki_tensor_read(job->ctx, t, first, n, ot->dtype, job->scratch, CKI_SCRATCH,
                                  job->stats)))
            return st;
        if (crc) *crc = cki_crc32(*crc, job->scratch, (size_t)k);
        if ((st = cki_sink_write(job->sink, job->scratch, (size_t)k))) return st;
        if (dense) done_with(sg, in_at, in_len);
        if ((st = progress(job, k))) return st;
        first += n;
    }
    if (!dense) done_with(sg, 0, sg->len);
    return CK_OK;
}

ck_status cki_emit_tensor(cki_write_job *job, const cki_out_tensor *ot, uint32_t *crc)
{
    const cki_tensor *t = ot->src;
    cki_storage *sg = t->storage;
    const uint8_t *bytes = cki_tensor_bytes(t);
    ck_status st;

    if (bytes && ot->dtype == t->dtype) {
        int whole = t->offset == 0 && t->nbytes == sg->len;
        int check = job->verify_crc && whole && sg->crc_known && !sg->crc_checked && sg->crc;
        uint64_t left = t->nbytes, off = 0, base = (uint64_t)(bytes - sg->data);
        uint32_t in_crc = 0;
        if (!crc && !check && sg->src) {
            uint64_t file_off = (uint64_t)(bytes - sg->src->base);
            while (left) {
                uint64_t k = left > CKI_SCRATCH * 16ull ? CKI_SCRATCH * 16ull : left;
                if ((st = cki_sink_copy(job->sink, sg->src, file_off + off, k))) return st;
                done_with(sg, base + off, k);
                if ((st = progress(job, k))) return st;
                off += k;
                left -= k;
            }
            return CK_OK;
        }
        /* file-backed bytes come through the scratch buffer with pread: one
         * copy, as through the mapping, but no page faults and nothing stays
         * resident; owned bytes (inflated members) are used in place */
        while (left) {
            size_t k = left > CKI_SCRATCH ? CKI_SCRATCH : (size_t)left;
            const uint8_t *p = bytes + off;
            if (sg->src) {
                uint64_t file_off = (uint64_t)(bytes - sg->src->base) + off;
                if ((st = cki_source_pread(job->ctx, sg->src, file_off, job->scratch, k)))
                    return st;
                p = job->scratch;
            }
            if (crc) *crc = cki_crc32(*crc, p, k);
            if (check) in_crc = cki_crc32(in_crc, p, k);
            if ((st = cki_sink_write(job->sink, p, k))) return st;
            if ((st = progress(job, k))) return st;
            off += k;
            left -= k;
        }
        if (check) {
            if (in_crc != sg->crc)
                return cki_fail(job->ctx, CK_EFORMAT,
                                "%s: storage %s of tensor '%s': CRC-32 is %08x but the zip "
                                "directory says %08x",
                                sg->src ? sg->src->path : "input", sg->key ? sg->key : "?",
                                t->name, in_crc, sg->crc);
            sg->crc_checked = 1;
        }
        return CK_OK;
    }
    if (!bytes && sg->src && !sg->data && !sg->fetch.fn && ot->dtype == t->dtype &&
        !sg->big_endian && !t->flags && t->offset == 0 && t->nbytes == sg->len &&
        cki_tensor_is_dense(t) && job->verify_crc && sg->crc_known && !sg->crc_checked &&
        sg->crc) {
        /* a whole zip record past a web window: read in chunks, its CRC-32
         * checked during the copy as for a mapped file */
        uint64_t left = t->nbytes, off = sg->file_off;
        uint32_t in_crc = 0;
        while (left) {
            size_t k = left > CKI_SCRATCH ? CKI_SCRATCH : (size_t)left;
            if ((st = cki_source_pread(job->ctx, sg->src, off, job->scratch, k))) return st;
            if (crc) *crc = cki_crc32(*crc, job->scratch, k);
            in_crc = cki_crc32(in_crc, job->scratch, k);
            if ((st = cki_sink_write(job->sink, job->scratch, k))) return st;
            if ((st = progress(job, k))) return st;
            off += k;
            left -= k;
        }
        if (in_crc != sg->crc)
            return cki_fail(job->ctx, CK_EFORMAT,
                            "%s: storage %s of tensor '%s': CRC-32 is %08x but the zip "
                            "directory says %08x",
                            sg->src->path, sg->key ? sg->key : "?", t->name, in_crc, sg->crc);
        sg->crc_checked = 1;
        return CK_OK;
    }
    if (ck_dtype_is_quantized(ot->dtype) || ck_dtype_is_quantized(t->dtype))
        return emit_blocks(job, ot, crc);
    {
        unsigned os = cki_dtype_size(ot->dtype);
        unsigned es = cki_dtype_size(t->dtype);
        uint64_t per = os ? CKI_SCRATCH / os : t->numel;
        uint64_t first = 0;
        /* dense views read storage bytes in order: release them chunk by chunk */
        int dense = es && cki_tensor_is_dense(t);
        if (!os) { /* sub-byte, kept as is */
            if (ot->nbytes > CKI_SCRATCH)
                return cki_fail(job->ctx, CK_EUNSUPPORTED,
                                "tensor '%s': %s tensors larger than %u bytes in non-contiguous "
                                "or big-endian storage are not supported",
                                t->name, ck_dtype_name(t->dtype), CKI_SCRATCH);
            if ((st = cki_tensor_read(job->ctx, t, 0, t->numel, ot->dtype, job->scratch,
                                      CKI_SCRATCH, job->stats)))
                return st;
            if (crc) *crc = cki_crc32(*crc, job->scratch, ot->nbytes);
            if ((st = cki_sink_write(job->sink, job->scratch, (size_t)ot->nbytes))) return st;
            done_with(sg, 0, sg->len);
            return progress(job, ot->nbytes);
        }
        if (dense && t->numel > per) ahead(sg, t->offset * es, AHEAD);
        while (first < t->numel) {
            uint64_t n = t->numel - first < per ? t->numel - first : per;
            if (dense && first + n < t->numel)
                ahead(sg, (t->offset + first) * es + AHEAD, n * es);
            if ((st = cki_tensor_read(job->ctx, t, first, n, ot->dtype, job->scratch,
                                      CKI_SCRATCH, job->stats)))
                return st;
            if (crc) *crc = cki_crc32(*crc, job->scratch, n * os);
            if ((st = cki_sink_write(job->sink, job->scratch, (size_t)(n * os)))) return st;
            if (dense) done_with(sg, (t->offset + first) * es, n * es);
            if ((st = progress(job, n * os))) return st;
            first += n;
        }
        /* a strided view may come back to any page of its storage until it ends */
        if (!dense) done_with(sg, 0, sg->len);
    }
    return CK_OK;
}
