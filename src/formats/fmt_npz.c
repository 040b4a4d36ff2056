/*
 * fmt_npz.c -- the "npz" driver: a zip of .npy arrays (numpy.savez,
 * savez_compressed), read and written.
 *
 * Reading, member by member (zip rules in zip.h, array rules in fmt_npy.c):
 *  - the tensor is named after the member without ".npy" (folders kept:
 *    "enc/w.npy" is "enc/w"); folder entries (names ending in '/', empty) are
 *    passed over; any other member is not an array: refused, or left out
 *    under skip_unsupported;
 *  - STORED members are mapped, never copied: the tensor is a view of the
 *    file's bytes (Fortran order and big-endian included);
 *  - DEFLATE members are refused before any inflating when their directory
 *    sizes claim more than CKI_ZIP_MAX_RATIO:1 (deflate cannot do better:
 *    a bomb). Their preamble is inflated alone; the data is then inflated on
 *    demand as tensors are read, in bounded memory (a 32 KiB window and the
 *    caller's buffer), restarting from the member's start when a read goes
 *    backwards. When a read reaches the member's end, the stream must end
 *    there and its CRC-32 must match the directory's. Fortran-order and bool
 *    members are inflated whole instead (under CK_LIMIT_INFLATE_BYTES): a
 *    column-major view needs random access, and bool bytes are checked at
 *    open. Zero-copy access (ck_model_data) is impossible for them.
 *  - CRC-32 of stored members is checked at open when verify_crc is set.
 * Probe: a zip whose members are all *.npy (95); some *.npy and no data.pkl
 * (60); an empty zip (30), as numpy.savez() with no arrays writes.
 *
 * Writing: every tensor becomes NAME.npy (preamble of npy.c, C order,
 * little-endian). Stored by default, with each member's data starting on a
 * 64-byte boundary (zip_write.h); with compress, raw deflate streamed through
 * a fixed buffer, the compressed size and CRC patched into the local header
 * afterwards. numpy's reader (Python's zipfile) takes sizes from the central
 * directory, which holds them directly. BF16/F8 as in fmt_npy.c; metadata is
 * dropped with a warning giving the count.
 */
#include <stdio.h>
#include <zlib.h>

#include "format.h"
#include "npy.h"

#include "../container/zip.h"
#include "../container/zip_write.h"

static const char *const npz_exts[] = {".npz", NULL};

/* Ratios are judged on members bigger than this (tiny members compress oddly). */
#define BOMB_MIN_BYTES 65536u
#define DEFLATE_OUT (256u << 10)

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

static int is_folder(const cki_zip_entry *e)
{
    return e->name_len && e->name[e->name_len - 1] == '/' && e->usize == 0;
}

static int probe(const cki_source *src)
{
    cki_zip z;
    size_t npy = 0, other = 0;
    int pkl = 0, score;
    const char *first;
    size_t first_len;
    if (!cki_zip_sniff(src->base, src->len)) return 0;
    /* a PyTorch archive (data.pkl first, as torch.save writes it) scores 0
     * below: said without parsing its directory */
    if (cki_zip_first_name(src->base, src->view_len, &first, &first_len) &&
        ends_with(first, first_len, "data.pkl"))
        return 0;
    if (cki_zip_open(NULL, src->path, src->base, src->len, &z)) return 0;
    for (size_t i = 0; i < z.count; i++) {
        const cki_zip_entry *e = &z.entries[i];
        if (is_folder(e)) continue;
        if (ends_with(e->name, e->name_len, ".npy")) npy++;
        else other++;
        if (ends_with(e->name, e->name_len, "data.pkl")) pkl = 1;
    }
    score = z.count == 0 ? 30 : npy && !other ? 95 : npy && !pkl ? 60 : 0;
    cki_zip_close(&z);
    return score;
}

/* ---- inflating on demand ---------------------------------------------------- */

typedef struct inflater {
    const char *file;      /* the model's source path */
    char member[256];      /* for messages */
    const uint8_t *in;     /* compressed bytes, in the mapping */
    uint64_t csize, usize;
    uint32_t crc_expect;
    uint64_t skip;         /* the npy preamble: storage byte 0 is member byte SKIP */
    z_stream zs;
    int active;
    uint64_t pos;          /* member bytes inflated so far */
    uint64_t in_used;
    uint32_t crc;
} inflater;

static void inf_stop(inflater *f)
{
    if (f->active) inflateEnd(&f->zs);
    f->active = 0;
}

static void inf_free(ck_ctx *ctx, void *state)
{
    inflater *f = state;
    if (!f) return;
    inf_stop(f);
    cki_free(ctx, f);
}

static ck_status inf_fail(ck_ctx *ctx, inflater *f, ck_status st, const char *what)
{
    inf_stop(f);
    return cki_fail(ctx, st, "%s: member '%s': %s (after %llu of %llu bytes, %llu of %llu "
                             "compressed bytes used)",
                    f->file, f->member, what, (unsigned long long)f->pos,
                    (unsigned long long)f->usize, (unsigned long long)f->in_used,
                    (unsigned long long)f->csize);
}

/* Inflates exactly LEN bytes into DST. */
static ck_status inf_pull(ck_ctx *ctx, inflater *f, uint8_t *dst, size_t len)
{
    while (len) {
        uint64_t in_left = f->csize - f->in_used;
        uInt in_n = in_left > (1u << 30) ? (1u << 30) : (uInt)in_left;
        uInt out_n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        size_t got;
        int ret;
        f->zs.next_in = (Bytef *)(uintptr_t)(f->in + f->in_used);
        f->zs.avail_in = in_n;
        f->zs.next_out = dst;
        f->zs.avail_out = out_n;
        ret = inflate(&f->zs, Z_NO_FLUSH);
        f->in_used += in_n - f->zs.avail_in;
        got = out_n - f->zs.avail_out;
        f->crc = (uint32_t)crc32(f->crc, dst, (uInt)got);
        f->pos += got;
        dst += got;
        len -= got;
        if (ret == Z_STREAM_END && len)
            return inf_fail(ctx, f, CK_EFORMAT, "deflate stream ends before the directory's size");
        if (ret == Z_BUF_ERROR && !got && f->in_used == f->csize)
            return inf_fail(ctx, f, CK_EFORMAT, "deflate stream is cut short");
        if (ret != Z_OK && ret != Z_STREAM_END && ret != Z_BUF_ERROR)
            return inf_fail(ctx, f, CK_EFORMAT, "corrupt deflate data");
    }
    return CK_OK;
}

/* At the member's end: the stream must end here, with the directory's CRC. */
static ck_status inf_finish(ck_ctx *ctx, inflater *f)
{
    uint8_t spare;
    int ret;
    f->zs.next_in = (Bytef *)(uintptr_t)(f->in + f->in_used);
    f->zs.avail_in = (uInt)(f->csize - f->in_used > (1u << 30) ? (1u << 30)
                                                                : f->csize - f->in_used);
    f->zs.next_out = &spare;
    f->zs.avail_out = 1;
    ret = inflate(&f->zs, Z_NO_FLUSH);
    if (f->zs.avail_out == 0)
        return inf_fail(ctx, f, CK_EFORMAT, "inflates to more bytes than the directory says");
    if (ret != Z_STREAM_END)
        return inf_fail(ctx, f, CK_EFORMAT, "deflate stream does not end at the directory's size");
    if (f->crc_expect && f->crc != f->crc_expect) {
        char why[96];
        snprintf(why, sizeof why, "CRC-32 of the inflated bytes is %08x, the directory says %08x",
                 f->crc, f->crc_expect);
        return inf_fail(ctx, f, CK_EFORMAT, why);
    }
    inf_stop(f);
    return CK_OK;
}

static ck_status inf_fetch(ck_ctx *ctx, void *state, uint64_t off, uint8_t *dst, size_t len)
{
    inflater *f = state;
    uint64_t want = f->skip + off;
    uint8_t discard[16384];
    ck_status st;
    if (f->active && want < f->pos) inf_stop(f); /* backwards: start again */
    if (!f->active) {
        memset(&f->zs, 0, sizeof f->zs);
        if (inflateInit2(&f->zs, -MAX_WBITS) != Z_OK)
            return cki_fail(ctx, CK_ENOMEM, "%s: member '%s': cannot start inflate", f->file,
                            f->member);
        f->active = 1;
        f->pos = 0;
        f->in_used = 0;
        f->crc = 0;
    }
    while (f->pos < want) {
        uint64_t k = want - f->pos > sizeof discard ? sizeof discard : want - f->pos;
        if ((st = inf_pull(ctx, f, discard, (size_t)k))) return st;
    }
    if ((st = inf_pull(ctx, f, dst, len))) return st;
    if (f->pos == f->usize) return inf_finish(ctx, f);
    return CK_OK;
}

/* ---- reading ------------------------------------------------------------------ */

typedef struct reader {
    ck_model *m;
    const cki_source *src;
    const ck_open_opts *opts;
    cki_zip z;
} reader;

/* Refuses a deflated member whose claimed expansion no deflate stream can
 * give, before inflating a byte of it. */
static ck_status check_bomb(reader *rd, const cki_zip_entry *e)
{
    uint64_t most;
    if (e->method != CKI_ZIP_DEFLATE || e->usize <= BOMB_MIN_BYTES) return CK_OK;
    if (cki_mul_u64(&most, e->csize, CKI_ZIP_MAX_RATIO) || e->usize <= most) return CK_OK;
    return cki_fail(rd->m->ctx, CK_ELIMIT,
                    "%s: member '%s': %llu compressed bytes claim to expand to %llu (ratio "
                    "%llu:1, more than deflate's %u:1 in a file of %llu bytes: a zip bomb); "
                    "refused before inflating",
                    rd->src->path, e->name, (unsigned long long)e->csize,
                    (unsigned long long)e->usize,
                    (unsigned long long)(e->usize / (e->csize ? e->csize : 1)), CKI_ZIP_MAX_RATIO,
                    (unsigned long long)rd->src->len);
}

/* The member's preamble, parsed. HEAD receives up to its bytes when deflated. */
static ck_status read_header(reader *rd, const cki_zip_entry *e, const char *what, cki_npy *h)
{
    uint8_t first[12];
    size_t got = 0;
    uint64_t plen;
    uint8_t *buf;
    ck_status st;
    if (e->method == CKI_ZIP_STORED) {
        if ((st = cki_zip_peek(&rd->z, e, first, 0, &got))) return st; /* sizes agree */
        return cki_npy_parse(rd->m->ctx, rd->src->path, what, rd->src->base + e->data_off,
                             e->usize, h);
    }
    if ((st = cki_zip_peek(&rd->z, e, first, sizeof first, &got))) return st;
    if ((st = cki_npy_preamble_len(rd->m->ctx, rd->src->path, what, first, got, &plen))) return st;
    if (plen > e->usize)
        return cki_fail(rd->m->ctx, CK_EFORMAT,
                        "%s: %s: npy header length %llu runs past the end of the data (%llu "
                        "bytes)",
                        rd->src->path, what, (unsigned long long)(plen - (first[6] == 1 ? 10 : 12)),
                        (unsigned long long)e->usize);
    buf = cki_malloc(rd->m->ctx, (size_t)plen);
    if (!buf) return CK_ENOMEM;
    st = cki_zip_peek(&rd->z, e, buf, (size_t)plen, &got);
    if (!st) st = cki_npy_parse(rd->m->ctx, rd->src->path, what, buf, got, h);
    cki_free(rd->m->ctx, buf);
    return st;
}

/* A deflated member's data as a storage: inflated on demand, or whole. */
static ck_status deflated_storage(reader *rd, const cki_zip_entry *e, const char *what,
                                  const cki_npy *h, cki_storage **out)
{
    ck_ctx *ctx = rd->m->ctx;
    ck_status st;
    if (h->fortran || h->dtype == CK_DT_BOOL) {
        const uint8_t *data;
        uint64_t len;
        uint8_t *owned = NULL;
        if ((st = cki_zip_read(&rd->z, e, 1, &data, &len, &owned))) return st;
        if (h->dtype == CK_DT_BOOL &&
            (st = cki_npy_check_bools(ctx, rd->src->path, what, owned + h->data_off, h->nbytes))) {
            cki_free(ctx, owned);
            return st;
        }
        memmove(owned, owned + h->data_off, (size_t)h->nbytes);
        return cki_model_storage_owned(rd->m, owned, h->nbytes, h->dtype, out);
    }
    {
        inflater *f = cki_calloc(ctx, 1, sizeof *f);
        cki_fetch fetch;
        if (!f) return CK_ENOMEM;
        f->file = rd->src->path;
        snprintf(f->member, sizeof f->member, "%.200s", e->name);
        f->in = rd->src->base + e->data_off;
        f->csize = e->csize;
        f->usize = e->usize;
        f->crc_expect = e->crc;
        f->skip = h->data_off;
        fetch.fn = inf_fetch;
        fetch.free = inf_free;
        fetch.state = f;
        return cki_model_storage_fetch(rd->m, h->nbytes, h->dtype, &fetch, out);
    }
}

static ck_status read_member(reader *rd, const cki_zip_entry *e)
{
    ck_model *m = rd->m;
    char what[300];
    cki_npy h;
    cki_storage *cs;
    int keep;
    ck_status st;

    snprintf(what, sizeof what, "member '%.200s'", e->name);
    if (!ends_with(e->name, e->name_len, ".npy") || e->name_len == 4) {
        if (!(rd->opts && rd->opts->skip_unsupported))
            return cki_fail(m->ctx, CK_EUNSUPPORTED,
                            "%s: %s is not a .npy array (--skip-unsupported leaves it out)",
                            rd->src->path, what);
        cki_warn(m->ctx, "%s: %s is not a .npy array: left out (--skip-unsupported)",
                 rd->src->path, what);
        m->omitted_count++;
        return CK_OK;
    }
    if ((st = check_bomb(rd, e))) return st;
    if (e->method != CKI_ZIP_STORED && e->method != CKI_ZIP_DEFLATE)
        return cki_fail(m->ctx, CK_EUNSUPPORTED,
                        "%s: %s: compression method %u is not supported (only stored and "
                        "deflate)",
                        rd->src->path, what, e->method);
    if ((st = read_header(rd, e, what, &h))) return st;
    if ((st = cki_npy_admit(m, rd->opts, rd->src->path, what, &h, e->usize - h.data_off, &keep)))
        return st;
    if (!keep) return CK_OK;
    if (e->method == CKI_ZIP_STORED) {
        const uint8_t *p = rd->src->base + e->data_off;
        if (rd->opts && rd->opts->verify_crc && (st = cki_zip_check_crc(&rd->z, e, p, e->usize)))
            return st;
        if (h.dtype == CK_DT_BOOL &&
            (st = cki_npy_check_bools(m->ctx, rd->src->path, what, p + h.data_off, h.nbytes)))
            return st;
        st = cki_model_storage(m, rd->src, e->data_off + h.data_off, h.nbytes, h.dtype, what, &cs);
    } else {
        st = deflated_storage(rd, e, what, &h, &cs);
    }
    if (st) return st;
    return cki_npy_add(m, rd->src->path, e->name, e->name_len - 4, &h, cs);
}

static ck_status npz_read(ck_model *m, const cki_source *src, const ck_open_opts *opts)
{
    reader rd;
    ck_status st = CK_OK;
    memset(&rd, 0, sizeof rd);
    rd.m = m;
    rd.src = src;
    rd.opts = opts;
    m->format_name = "npz";
    if ((st = cki_zip_open(m->ctx, src->path, src->base, src->len, &rd.z))) return st;
    for (size_t i = 0; i < rd.z.count && !st; i++)
        if (!is_folder(&rd.z.entries[i])) st = read_member(&rd, &rd.z.entries[i]);
    cki_zip_close(&rd.z);
    return st;
}

/* ---- writing ------------------------------------------------------------------ */

static ck_status progress(cki_write_job *job, uint64_t n)
{
    ck_ctx *ctx = job->ctx;
    job->done_bytes += n;
    if (ctx->progress && ctx->progress(ctx->progress_user, job->done_bytes, job->total_bytes))
        return cki_fail(ctx, CK_EINTR, "%s: interrupted", job->path);
    return CK_OK;
}

/* Feeds IN[0..N) (FINISH: then ends the stream) through ZS into the sink. */
static ck_status deflate_some(cki_write_job *job, z_stream *zs, uint8_t *obuf, const uint8_t *in,
                              size_t n, int finish, uint64_t *csize)
{
    int ret;
    zs->next_in = (Bytef *)(uintptr_t)in;
    zs->avail_in = (uInt)n;
    do {
        ck_status st;
        size_t have;
        zs->next_out = obuf;
        zs->avail_out = DEFLATE_OUT;
        ret = deflate(zs, finish ? Z_FINISH : Z_NO_FLUSH);
        if (ret == Z_STREAM_ERROR)
            return cki_fail(job->ctx, CK_ENOMEM, "%s: deflate failed", job->path);
        have = DEFLATE_OUT - zs->avail_out;
        if (have && (st = cki_sink_write(job->sink, obuf, have))) return st;
        *csize += have;
    } while (zs->avail_out == 0 || (finish && ret != Z_STREAM_END));
    return CK_OK;
}

/* Mapped input bytes of a dense T's elements [first, first + n) are done:
 * drop their pages (rounded out to 2 MiB, as emit.c does), so that resident
 * memory stays flat while a large tensor is compressed. */
static void release_done(const cki_tensor *t, uint64_t first, uint64_t n)
{
    const cki_storage *sg = t->storage;
    const uint64_t mask = (2ull << 20) - 1;
    uint64_t off, end;
    if (!sg->src || !sg->data || !cki_tensor_is_dense(t)) return;
    off = sg->file_off + (t->offset + first) * cki_dtype_size(t->dtype);
    end = off + n * cki_dtype_size(t->dtype);
    off &= ~mask;
    end = (end + mask) & ~mask;
    cki_source_release(sg->src, off, end - off);
}

/* One deflated member: PRE then the tensor's values, streamed. */
static ck_status write_deflated(cki_write_job *job, cki_zipw *z, const char *member,
                                const cki_out_tensor *ot, const cki_buf *pre)
{
    const cki_tensor *t = ot->src;
    unsigned os = cki_dtype_size(ot->dtype);
    uint64_t per = CKI_SCRATCH / os, first = 0, csize = 0, size;
    uint32_t crc = cki_crc32(0, pre->p, pre->len);
    uint8_t *obuf;
    z_stream zs;
    ck_status st;

    if (cki_add_u64(&size, pre->len, ot->nbytes))
        return cki_fail(job->ctx, CK_EARG, "%s: tensor '%s' too large", job->path, ot->name);
    obuf = cki_malloc(job->ctx, DEFLATE_OUT);
    if (!obuf) return CK_ENOMEM;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        cki_free(job->ctx, obuf);
        return cki_fail(job->ctx, CK_ENOMEM, "%s: cannot start deflate", job->path);
    }
    st = cki_zipw_begin_deflated(z, member, size);
    if (!st) st = deflate_some(job, &zs, obuf, (const uint8_t *)pre->p, pre->len, 0, &csize);
    while (!st && first < t->numel) {
        uint64_t n = t->numel - first < per ? t->numel - first : per;
        st = cki_tensor_read(job->ctx, t, first, n, ot->dtype, job->scratch, CKI_SCRATCH,
                             job->stats);
        if (st) break;
        crc = cki_crc32(crc, job->scratch, n * os);
        st = deflate_some(job, &zs, obuf, job->scratch, (size_t)(n * os), 0, &csize);
        if (!st) st = progress(job, n * os);
        release_done(t, first, n);
        first += n;
    }
    if (!st) st = deflate_some(job, &zs, obuf, NULL, 0, 1, &csize);
    if (!st) st = cki_zipw_end_deflated(z, crc, csize);
    deflateEnd(&zs);
    cki_free(job->ctx, obuf);
    return st;
}

static ck_status npz_write(cki_write_job *job)
{
    cki_zipw z;
    cki_buf pre, name;
    size_t ml_count = 0;
    const char *ml_first = NULL;
    ck_status st = CK_OK;

    for (size_t i = 0; i < job->count; i++) {
        const cki_out_tensor *ot = &job->tensors[i];
        int ml;
        const char *descr = cki_npy_descr(ot->dtype, &ml);
        if (!descr)
            return cki_fail(job->ctx, CK_EUNSUPPORTED,
                            "%s: tensor '%s': %s has no NumPy dtype (cast it with --dtype f32, or "
                            "leave it out with --exclude)",
                            job->path, ot->name, ck_dtype_name(ot->dtype));
        if (ml && job->strict)
            return cki_fail(job->ctx, CK_EUNSUPPORTED,
                            "%s: tensor '%s': NumPy has no %s dtype (--strict; without it the "
                            "bytes are written as ml_dtypes saves them, descr '%s')",
                            job->path, ot->name, ck_dtype_name(ot->dtype), descr);
        if (ml && !ml_count++) ml_first = ot->name;
    }
    if (ml_count)
        cki_warn(job->ctx,
                 "%s: %zu tensor%s (first '%s') of dtypes NumPy has no spelling for (BF16, F8) "
                 "written as ml_dtypes saves them (bfloat16 as '<V2', float8 as '<V1'): view the "
                 "loaded arrays with ml_dtypes to get the values",
                 job->path, ml_count, ml_count == 1 ? "" : "s", ml_first);
    if (job->meta_count)
        cki_warn(job->ctx, "%s: .npz holds no metadata: %zu entr%s dropped", job->path,
                 job->meta_count, job->meta_count == 1 ? "y" : "ies");

    cki_zipw_init(&z, job->ctx, job->sink);
    cki_buf_init(&pre, job->ctx, 0);
    cki_buf_init(&name, job->ctx, 0);
    for (size_t i = 0; i < job->count && !st; i++) {
        const cki_out_tensor *ot = &job->tensors[i];
        int ml;
        uint64_t size;
        pre.len = 0;
        name.len = 0;
        cki_buf_puts(&name, ot->name);
        cki_buf_put(&name, ".npy", 5); /* with the NUL */
        if (name.failed) {
            st = CK_ENOMEM;
            break;
        }
        st = cki_npy_write_preamble(job->ctx, cki_npy_descr(ot->dtype, &ml), ot->src->ndim,
                                    ot->src->shape, &pre);
        if (st) break;
        if (job->compress) {
            st = write_deflated(job, &z, name.p, ot, &pre);
            continue;
        }
        if (cki_add_u64(&size, pre.len, ot->nbytes)) {
            st = cki_fail(job->ctx, CK_EARG, "%s: tensor '%s' too large", job->path, ot->name);
            break;
        }
        {
            uint32_t crc = cki_crc32(0, pre.p, pre.len);
            st = cki_zipw_begin(&z, name.p, size);
            if (!st) st = cki_sink_write(job->sink, pre.p, pre.len);
            if (!st) st = cki_emit_tensor(job, ot, &crc);
            if (!st) st = cki_zipw_end(&z, crc);
        }
    }
    if (!st) st = cki_zipw_finish(&z);
    cki_buf_free(&pre);
    cki_buf_free(&name);
    cki_zipw_free(&z);
    return st;
}

const cki_format cki_fmt_npz = {
    .name = "npz",
    .exts = npz_exts,
    .caps = CKI_CAP_READ | CKI_CAP_WRITE,
    .probe = probe,
    .read = npz_read,
    .write = npz_write,
};
