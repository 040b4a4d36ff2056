/*
 * emit.c -- the streaming copy at the heart of every writer. A tensor's
 * output bytes are produced in chunks of at most CKI_SCRATCH bytes:
 *  - unchanged dense little-endian bytes go straight from the mapping to the
 *    sink (copy_file_range when no CRC is wanted), with the input's zip
 *    CRC-32 checked in the same pass when the tensor covers its storage;
 *  - anything else (casts, strided views, big-endian storages) is gathered
 *    and converted chunk by chunk in the scratch buffer.
 * Mapped pages behind the cursor are released so resident memory stays flat.
 */
#include <zlib.h>

#include "convert.h"

static ck_status progress(cki_write_job *job, uint64_t n)
{
    ck_ctx *ctx = job->ctx;
    job->done_bytes += n;
    if (ctx->progress && ctx->progress(ctx->progress_user, job->done_bytes, job->total_bytes))
        return cki_fail(ctx, CK_EINTR, "%s: interrupted", job->path);
    return CK_OK;
}

static uint32_t crc_update(uint32_t crc, const uint8_t *p, uint64_t n)
{
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k;
        n -= k;
    }
    return crc;
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
        uint64_t left = t->nbytes, off = 0;
        uint32_t in_crc = 0;
        if (!crc && !check && sg->src) {
            uint64_t file_off = (uint64_t)(bytes - sg->src->base);
            while (left) {
                uint64_t k = left > CKI_SCRATCH * 16ull ? CKI_SCRATCH * 16ull : left;
                if ((st = cki_sink_copy(job->sink, sg->src, file_off + off, k))) return st;
                if ((st = progress(job, k))) return st;
                off += k;
                left -= k;
            }
            return CK_OK;
        }
        while (left) {
            uint64_t k = left > CKI_SCRATCH ? CKI_SCRATCH : left;
            if (crc) *crc = crc_update(*crc, bytes + off, k);
            if (check) in_crc = crc_update(in_crc, bytes + off, k);
            if ((st = cki_sink_write(job->sink, bytes + off, (size_t)k))) return st;
            if (sg->src) cki_source_release(sg->src, (uint64_t)(bytes + off - sg->src->base), k);
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
    {
        unsigned os = cki_dtype_size(ot->dtype);
        uint64_t per = os ? CKI_SCRATCH / os : t->numel;
        uint64_t first = 0;
        if (!os) { /* sub-byte, kept as is */
            if (ot->nbytes > CKI_SCRATCH)
                return cki_fail(job->ctx, CK_EUNSUPPORTED,
                                "tensor '%s': %s tensors larger than %u bytes in non-contiguous "
                                "or big-endian storage are not supported",
                                t->name, ck_dtype_name(t->dtype), CKI_SCRATCH);
            if ((st = cki_tensor_read(job->ctx, t, 0, t->numel, ot->dtype, job->scratch,
                                      CKI_SCRATCH, job->stats)))
                return st;
            if (crc) *crc = crc_update(*crc, job->scratch, ot->nbytes);
            if ((st = cki_sink_write(job->sink, job->scratch, (size_t)ot->nbytes))) return st;
            return progress(job, ot->nbytes);
        }
        while (first < t->numel) {
            uint64_t n = t->numel - first < per ? t->numel - first : per;
            if ((st = cki_tensor_read(job->ctx, t, first, n, ot->dtype, job->scratch,
                                      CKI_SCRATCH, job->stats)))
                return st;
            if (crc) *crc = crc_update(*crc, job->scratch, n * os);
            if ((st = cki_sink_write(job->sink, job->scratch, (size_t)(n * os)))) return st;
            if ((st = progress(job, n * os))) return st;
            first += n;
        }
    }
    return CK_OK;
}
