/*
 * diff.c -- ck_diff: value comparison of two checkpoints with tolerances and
 * per-tensor statistics (rules in ckptkit.h, "Comparing values").
 *
 * Both tensors of a pair are read in chunks of CHUNK_ELEMS elements through
 * the common read path (gather, byte swap, flags, cast), as F64 for every
 * dtype the casts can widen, as themselves for I64/U64 pairs of one dtype
 * (compared exactly as integers: doubles hold only 53 bits) and for dtypes
 * without a widening cast (compared byte for byte). Memory: four chunk
 * buffers, whatever the tensor sizes. Sums use Neumaier compensation so that
 * mean and cosine over 10^9 elements stay close to a pairwise sum.
 */
#include <math.h>

#include "../tensor/cast.h"
#include "convert.h"

#define CHUNK_ELEMS (64u * 1024u)
#define CHUNK_BYTES (CHUNK_ELEMS * 8u)

/* compensated sum */
typedef struct ksum {
    double s, c;
} ksum;

static void kadd(ksum *k, double v)
{
    double t = k->s + v;
    if (!isfinite(t)) { /* Inf (or overflow) stays: no compensation to keep */
        k->s = t;
        return;
    }
    if (fabs(k->s) >= fabs(v)) k->c += (k->s - t) + v;
    else k->c += (v - t) + k->s;
    k->s = t;
}

static double kval(const ksum *k)
{
    if (!isfinite(k->s)) return k->s;
    return k->s + k->c;
}

typedef struct acc {
    double rtol, atol;
    uint64_t mismatched, nan_mismatched, counted;
    double max_abs;
    ksum sum_abs, dot, na, nb;
} acc;

/* One element pair; D is |a - b| when the caller knows it more exactly. */
static void pair(acc *s, double a, double b, const double *exact_d)
{
    int an = isnan(a), bn = isnan(b);
    double d;
    if (an || bn) {
        if (an != bn) {
            s->mismatched++;
            s->nan_mismatched++;
        }
        return;
    }
    if (a == b) {
        d = 0;
    } else {
        d = exact_d ? *exact_d : fabs(a - b);
        if (isinf(a) || isinf(b) || !(d <= s->atol + s->rtol * fabs(b))) s->mismatched++;
    }
    s->counted++;
    if (d > s->max_abs || isinf(d)) s->max_abs = d;
    kadd(&s->sum_abs, d);
    if (isfinite(a) && isfinite(b)) {
        kadd(&s->dot, a * b);
        kadd(&s->na, a * a);
        kadd(&s->nb, b * b);
    }
}

static int same_shape(const cki_tensor *a, const cki_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

static int widens(ck_dtype dt)
{
    /* ggml block types that ckptkit decodes compare by their dequantised values */
    return dt == CK_DT_F64 || (cki_dtype_size(dt) && cki_cast_supported(dt, CK_DT_F64)) ||
           (ck_dtype_is_quantized(dt) && ck_dtype_can_dequantize(dt));
}

typedef struct diff_run {
    ck_ctx *ctx;
    uint8_t *ba, *bb;
    uint64_t done, total;
} diff_run;

static ck_status tick(diff_run *r, uint64_t n)
{
    r->done += n;
    if (r->ctx->progress && r->ctx->progress(r->ctx->progress_user, r->done, r->total))
        return cki_fail(r->ctx, CK_EINTR, "diff: interrupted");
    return CK_OK;
}

/* Compares values of TA and TB (same shape) into OUT. */
static ck_status compare(diff_run *r, const ck_diff_opts *o, const cki_tensor *ta,
                         const cki_tensor *tb, ck_diff_tensor *out)
{
    ck_ctx *ctx = r->ctx;
    acc s;
    ck_status st;
    int ints = ta->dtype == tb->dtype && (ta->dtype == CK_DT_I64 || ta->dtype == CK_DT_U64);
    uint64_t n = ta->numel;

    memset(&s, 0, sizeof s);
    s.rtol = o->rtol;
    s.atol = o->atol;
    out->compared = 1;
    out->numel = n;
    if (!ints && !(widens(ta->dtype) && widens(tb->dtype))) {
        /* byte for byte, same dtype only */
        unsigned es = cki_dtype_size(ta->dtype);
        out->have_stats = 0;
        out->max_abs = out->mean_abs = out->cosine = NAN;
        if (ta->dtype != tb->dtype) {
            out->compared = 0;
            out->numel = 0;
            return CK_OK;
        }
        if (!es) {
            if (ta->nbytes > CHUNK_BYTES)
                return cki_fail(ctx, CK_EUNSUPPORTED,
                                "tensor '%s': %s tensors over %u bytes cannot be compared",
                                ta->name, ck_dtype_name(ta->dtype), CHUNK_BYTES);
            if ((st = cki_tensor_read(ctx, ta, 0, n, CK_DT_KEEP, r->ba, CHUNK_BYTES, NULL)) ||
                (st = cki_tensor_read(ctx, tb, 0, n, CK_DT_KEEP, r->bb, CHUNK_BYTES, NULL)))
                return st;
            out->mismatched = memcmp(r->ba, r->bb, (size_t)ta->nbytes) != 0;
            out->equal = !out->mismatched;
            return tick(r, 2 * ta->nbytes);
        }
        for (uint64_t first = 0; first < n;) {
            uint64_t k = n - first, per = CHUNK_BYTES / es;
            if (k > per) k = per;
            if ((st = cki_tensor_read(ctx, ta, first, k, CK_DT_KEEP, r->ba, CHUNK_BYTES, NULL)) ||
                (st = cki_tensor_read(ctx, tb, first, k, CK_DT_KEEP, r->bb, CHUNK_BYTES, NULL)))
                return st;
            for (uint64_t i = 0; i < k; i++)
                if (memcmp(r->ba + i * es, r->bb + i * es, es)) out->mismatched++;
            if ((st = tick(r, 2 * k * es))) return st;
            first += k;
        }
        out->equal = out->mismatched == 0;
        return CK_OK;
    }
    for (uint64_t first = 0; first < n;) {
        uint64_t k = n - first;
        if (k > CHUNK_ELEMS) k = CHUNK_ELEMS;
        if (ints) {
            if ((st = cki_tensor_read(ctx, ta, first, k, CK_DT_KEEP, r->ba, CHUNK_BYTES, NULL)) ||
                (st = cki_tensor_read(ctx, tb, first, k, CK_DT_KEEP, r->bb, CHUNK_BYTES, NULL)))
                return st;
            for (uint64_t i = 0; i < k; i++) {
                uint64_t ua = cki_ld_le64(r->ba + 8 * i), ub = cki_ld_le64(r->bb + 8 * i);
                double a, b, d;
                if (ta->dtype == CK_DT_I64) {
                    int64_t ia = (int64_t)ua, ib = (int64_t)ub;
                    a = (double)ia;
                    b = (double)ib;
                    d = (double)(ia > ib ? ua - ub : ub - ua); /* exact modulo 2^64 */
                } else {
                    a = (double)ua;
                    b = (double)ub;
                    d = (double)(ua > ub ? ua - ub : ub - ua);
                }
                if (ua != ub) {
                    /* doubles may round both to one value: judge on the exact distance */
                    s.counted++;
                    if (!(d <= s.atol + s.rtol * fabs(b))) s.mismatched++;
                    if (d > s.max_abs) s.max_abs = d;
                    kadd(&s.sum_abs, d);
                    kadd(&s.dot, a * b);
                    kadd(&s.na, a * a);
                    kadd(&s.nb, b * b);
                } else {
                    pair(&s, a, b, NULL);
                }
            }
        } else {
            const double *xa = (const double *)(void *)r->ba, *xb = (const double *)(void *)r->bb;
            if ((st = cki_tensor_read(ctx, ta, first, k, CK_DT_F64, r->ba, CHUNK_BYTES, NULL)) ||
                (st = cki_tensor_read(ctx, tb, first, k, CK_DT_F64, r->bb, CHUNK_BYTES, NULL)))
                return st;
            for (uint64_t i = 0; i < k; i++) pair(&s, xa[i], xb[i], NULL);
        }
        if ((st = tick(r, k * (cki_dtype_size(ta->dtype) + cki_dtype_size(tb->dtype)))))
            return st;
        first += k;
    }
    out->have_stats = 1;
    out->mismatched = s.mismatched;
    out->nan_mismatched = s.nan_mismatched;
    out->max_abs = s.max_abs;
    out->mean_abs = s.counted ? kval(&s.sum_abs) / (double)s.counted : 0;
    {
        double na = kval(&s.na), nb = kval(&s.nb);
        if (na == 0 && nb == 0) out->cosine = 1;
        else if (na == 0 || nb == 0) out->cosine = 0;
        else out->cosine = kval(&s.dot) / (sqrt(na) * sqrt(nb));
    }
    out->equal = out->mismatched == 0;
    return CK_OK;
}

static void describe(ck_diff_tensor *d, const cki_tensor *ta, size_t ia, const cki_tensor *tb,
                     size_t ib)
{
    memset(d, 0, sizeof *d);
    d->name = ta ? ta->name : tb->name;
    d->index_a = ta ? ia : (size_t)-1;
    d->index_b = tb ? ib : (size_t)-1;
    d->dtype_a = ta ? ta->dtype : CK_DT_KEEP;
    d->dtype_b = tb ? tb->dtype : CK_DT_KEEP;
    d->ndim_a = ta ? ta->ndim : -1;
    d->ndim_b = tb ? tb->ndim : -1;
    d->shape_a = ta ? ta->shape : NULL;
    d->shape_b = tb ? tb->shape : NULL;
    d->max_abs = d->mean_abs = d->cosine = NAN;
}

ck_status ck_diff(ck_ctx *ctx, ck_model *a, ck_model *b, const ck_diff_opts *opts,
                  ck_diff_tensor_fn fn, void *user, ck_diff_result *result)
{
    ck_diff_opts exact = {0, 0};
    ck_diff_result res;
    diff_run r;
    ck_status st = CK_OK;
    int stop = 0;

    if (!ctx || !a || !b || !result) return cki_fail(ctx, CK_EARG, "ck_diff: missing argument");
    cki_clear(ctx);
    if (!opts) opts = &exact;
    cki_model_streaming(a);
    cki_model_streaming(b);
    if (!(opts->rtol >= 0) || !(opts->atol >= 0) || isinf(opts->rtol) || isinf(opts->atol))
        return cki_fail(ctx, CK_EARG, "ck_diff: tolerances must be finite and >= 0 (rtol %g, "
                                      "atol %g)",
                        opts->rtol, opts->atol);
    memset(&res, 0, sizeof res);
    memset(&r, 0, sizeof r);
    r.ctx = ctx;
    for (size_t i = 0; i < a->count; i++) {
        size_t j;
        const cki_tensor *ta = &a->tensors[i];
        if (!cki_map_get(&b->names, ta->name, strlen(ta->name), &j) &&
            same_shape(ta, &b->tensors[j]))
            r.total += ta->nbytes + b->tensors[j].nbytes;
    }
    r.ba = cki_malloc(ctx, CHUNK_BYTES);
    r.bb = cki_malloc(ctx, CHUNK_BYTES);
    if (!r.ba || !r.bb) { st = CK_ENOMEM; goto out; }
    for (size_t i = 0; i < a->count && !stop; i++) {
        const cki_tensor *ta = &a->tensors[i], *tb = NULL;
        ck_diff_tensor d;
        size_t j = 0;
        if (!cki_map_get(&b->names, ta->name, strlen(ta->name), &j)) tb = &b->tensors[j];
        describe(&d, ta, i, tb, j);
        if (!tb) {
            res.only_a++;
        } else {
            if (ta->dtype != tb->dtype) res.dtype_changed++;
            if (!same_shape(ta, tb)) {
                res.shape_changed++;
            } else {
                uint64_t before = r.done;
                if ((st = compare(&r, opts, ta, tb, &d))) goto out;
                res.bytes += r.done - before;
                if (d.compared) {
                    res.elements += d.numel;
                    if (d.equal) res.equal++;
                    else res.values_differ++;
                } else {
                    res.values_differ++;
                }
            }
        }
        if (fn) stop = fn(user, &d);
    }
    for (size_t j = 0; j < b->count && !stop; j++) {
        const cki_tensor *tb = &b->tensors[j];
        ck_diff_tensor d;
        size_t i;
        if (!cki_map_get(&a->names, tb->name, strlen(tb->name), &i)) continue;
        res.only_b++;
        describe(&d, NULL, 0, tb, j);
        if (fn) stop = fn(user, &d);
    }
    res.same = !res.only_a && !res.only_b && !res.shape_changed && !res.values_differ &&
               (opts->rtol > 0 || opts->atol > 0 || !res.dtype_changed);
    *result = res;
out:
    cki_free(ctx, r.ba);
    cki_free(ctx, r.bb);
    return st;
}
