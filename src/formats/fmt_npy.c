/*
 * fmt_npy.c -- the "npy" driver: one NumPy array per file (layout and header
 * rules in npy.h / npy.c), and the helpers the npz driver shares.
 *
 * Reading: the data after the preamble is mapped, never copied. C-order
 * arrays are dense tensors; Fortran-order arrays are the column-major view of
 * the same bytes (strides 1, d0, d0*d1, ...); big-endian arrays are marked so
 * and swapped as they are read. The tensor is named after the file: its base
 * name without ".npy". Rules: the data must hold numel x itemsize bytes (more
 * is ignored with a warning); bool arrays hold only bytes 0 and 1; object
 * arrays (their data is a pickle) are refused with CK_EUNSAFE, or left out
 * with a warning under allow_unsafe -- never unpickled; strings, void,
 * datetime, long double and structured dtypes are refused naming the dtype,
 * or left out under skip_unsupported.
 * Probe: the magic "\x93NUMPY" at byte 0 (100).
 *
 * Writing: exactly one tensor, C order, little-endian, the preamble of
 * npy.c; dtypes numpy cannot spell (BF16, F8) are written as ml_dtypes saves
 * them, with a warning, or refused under strict; F6/F4 are refused.
 */
#include <stdio.h>
#include <strings.h>

#include "format.h"
#include "npy.h"

static const char *const npy_exts[] = {".npy", NULL};

ck_status cki_npy_check_bools(ck_ctx *ctx, const char *file, const char *what, const uint8_t *p,
                              uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return cki_fail(ctx, CK_EFORMAT,
                            "%s: %s: bool element %llu holds byte 0x%02x (a bool is 0 or 1)", file,
                            what, (unsigned long long)i, p[i]);
    return CK_OK;
}

/* "(2, 3)", "(5,)", "()" into BUF. */
static const char *shape_str(const cki_npy *h, char *buf, size_t cap)
{
    size_t n = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < h->ndim && n < cap; d++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%lld", d ? ", " : "", (long long)h->shape[d]);
    if (n < cap) snprintf(buf + n, cap - n, h->ndim == 1 ? ",)" : ")");
    return buf;
}

ck_status cki_npy_admit(ck_model *m, const ck_open_opts *opts, const char *file, const char *what,
                        const cki_npy *h, uint64_t avail, int *keep)
{
    *keep = 0;
    if (h->kind == CKI_NPY_OBJECT) {
        if (!(opts && opts->allow_unsafe))
            return cki_fail(m->ctx, CK_EUNSAFE,
                            "%s: %s: refusing to load %s, dtype '%s': numpy.load would "
                            "unpickle it, which can run code (nothing was run; see 'ckptkit "
                            "scan'; --allow-unsafe leaves it out)",
                            file, what, h->why, h->descr);
        cki_warn(m->ctx, "%s: %s: %s, dtype '%s', left out (--allow-unsafe: never unpickled)",
                 file, what, h->why, h->descr);
        m->omitted_count++;
        return CK_OK;
    }
    if (h->kind == CKI_NPY_UNSUPPORTED) {
        if (!(opts && opts->skip_unsupported))
            return cki_fail(m->ctx, CK_EUNSUPPORTED,
                            "%s: %s: dtype '%s' is a %s, which ckptkit cannot represent as a "
                            "tensor (--skip-unsupported leaves it out)",
                            file, what, h->descr, h->why);
        cki_warn(m->ctx, "%s: %s: dtype '%s' (%s) left out (--skip-unsupported)", file, what,
                 h->descr, h->why);
        m->omitted_count++;
        return CK_OK;
    }
    if (avail < h->nbytes) {
        char sh[200];
        return cki_fail(m->ctx, CK_EFORMAT,
                        "%s: %s: shape %s x '%s' needs %llu data bytes but %llu follow the header",
                        file, what, shape_str(h, sh, sizeof sh), h->descr,
                        (unsigned long long)h->nbytes, (unsigned long long)avail);
    }
    if (avail > h->nbytes)
        cki_warn(m->ctx, "%s: %s: %llu bytes after the array's data are ignored", file, what,
                 (unsigned long long)(avail - h->nbytes));
    *keep = 1;
    return CK_OK;
}

ck_status cki_npy_add(ck_model *m, const char *file, const char *name, size_t name_len,
                      const cki_npy *h, cki_storage *cs)
{
    int64_t stride[CKI_MAX_DIMS];
    int64_t s = 1;
    cs->big_endian = (uint8_t)h->big_endian;
    if (!h->fortran || h->ndim < 2)
        return cki_model_add_tensor(m, file, name, name_len, h->dtype, h->ndim, h->shape, NULL, 0,
                                    cs, 0, NULL);
    /* column-major: the first index moves fastest. The product of the
     * shape fits (checked by the parser), so no partial product overflows;
     * a zero dimension makes the view empty and the strides moot. */
    for (int d = 0; d < h->ndim; d++) {
        stride[d] = s;
        if (h->shape[d]) s *= h->shape[d];
    }
    return cki_model_add_tensor(m, file, name, name_len, h->dtype, h->ndim, h->shape, stride, 0, cs,
                                0, NULL);
}

static int probe(const cki_source *src)
{
    return src->len >= 10 && !memcmp(src->base, "\x93NUMPY", 6) ? 100 : 0;
}

static ck_status npy_read(ck_model *m, const cki_source *src, const ck_open_opts *opts)
{
    cki_npy h;
    cki_storage *cs;
    const char *base = cki_basename(src->path);
    size_t nl = strlen(base);
    int keep;
    ck_status st;

    m->format_name = "npy";
    if ((st = cki_npy_parse(m->ctx, src->path, NULL, src->base, src->len, &h))) return st;
    if ((st = cki_npy_admit(m, opts, src->path, "array", &h, src->len - h.data_off, &keep)))
        return st;
    if (!keep) return CK_OK;
    if (h.dtype == CK_DT_BOOL &&
        (st = cki_npy_check_bools(m->ctx, src->path, "array", src->base + h.data_off, h.nbytes)))
        return st;
    if (nl > 4 && !strcasecmp(base + nl - 4, ".npy")) nl -= 4;
    if ((st = cki_model_storage(m, src, h.data_off, h.nbytes, h.dtype, "array data", &cs)))
        return st;
    return cki_npy_add(m, src->path, base, nl, &h, cs);
}

/* ---- writing ------------------------------------------------------------------ */

static ck_status npy_write(cki_write_job *job)
{
    const cki_out_tensor *ot;
    const char *descr;
    cki_buf pre;
    int ml;
    ck_status st;

    if (job->count != 1)
        return cki_fail(job->ctx, CK_EARG,
                        "%s: an .npy file holds exactly one array but %zu tensors are selected "
                        "(pick one with --include, or write .npz)",
                        job->path, job->count);
    ot = &job->tensors[0];
    descr = cki_npy_descr(ot->dtype, &ml);
    if (!descr)
        return cki_fail(job->ctx, CK_EUNSUPPORTED,
                        "%s: tensor '%s': %s has no NumPy dtype (cast it with --dtype f32)",
                        job->path, ot->name, ck_dtype_name(ot->dtype));
    if (ml && job->strict)
        return cki_fail(job->ctx, CK_EUNSUPPORTED,
                        "%s: tensor '%s': NumPy has no %s dtype (--strict; without it the bytes "
                        "are written as ml_dtypes saves them, descr '%s')",
                        job->path, ot->name, ck_dtype_name(ot->dtype), descr);
    if (ml)
        cki_warn(job->ctx,
                 "%s: tensor '%s': NumPy has no %s dtype: written as ml_dtypes saves it (descr "
                 "'%s'); view the loaded array with ml_dtypes to get %s values back",
                 job->path, ot->name, ck_dtype_name(ot->dtype), descr, ck_dtype_name(ot->dtype));
    if (job->meta_count)
        cki_warn(job->ctx, "%s: .npy holds no metadata: %zu entr%s dropped", job->path,
                 job->meta_count, job->meta_count == 1 ? "y" : "ies");
    cki_buf_init(&pre, job->ctx, 0);
    st = cki_npy_write_preamble(job->ctx, descr, ot->src->ndim, ot->src->shape, &pre);
    if (!st) st = cki_sink_write(job->sink, pre.p, pre.len);
    cki_buf_free(&pre);
    if (st) return st;
    return cki_emit_tensor(job, ot, NULL);
}

const cki_format cki_fmt_npy = {
    .name = "npy",
    .exts = npy_exts,
    .caps = CKI_CAP_READ | CKI_CAP_WRITE,
    .probe = probe,
    .read = npy_read,
    .write = npy_write,
};
