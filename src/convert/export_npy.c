/*
 * export_npy.c -- ck_export: chosen tensors to NumPy .npy files or raw bytes.
 *
 * .npy layout written (numpy/lib/format.py, FORMATS.md 8):
 *   "\x93NUMPY" u8 major u8 minor     1.0, or 2.0 when the header passes 65535 bytes
 *   header length                     v1: u16 LE, v2: u32 LE
 *   header                            {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 *                                     then spaces and one '\n' so that magic + version +
 *                                     length + header is a multiple of 64 (numpy >= 1.14)
 *   data                              row-major, little-endian, numel x itemsize bytes
 * Shapes: () for a scalar, (n,) for one dimension. descr: '|b1' bool, '|u1' '|i1',
 * '<u2' '<i2' '<u4' '<i4' '<u8' '<i8', '<f2' '<f4' '<f8', '<c8' '<c16'. BF16, F8, F6 and F4
 * have no NumPy dtype and are refused (cast them with --dtype).
 * Raw output is the data part alone.
 *
 * Everything that can be checked is checked before the first byte is written (names
 * exist, dtypes are exportable, file names do not collide, outputs may be replaced);
 * every file is a temporary until all are complete, then all are renamed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "../formats/npy.h"

#define MAX_FILES 200 /* temporary files open at once (the sink's cleanup table holds 256) */

/* NumPy typestr for DT, or NULL: export writes only what numpy reads without
 * ml_dtypes (the spellings are npy.c's, shared with the npz writer). */
static const char *npy_descr(ck_dtype dt)
{
    int ml;
    const char *d = cki_npy_descr(dt, &ml);
    return ml ? NULL : d;
}

/* NAME as a file name: '/' -> '_', "." and ".." spelled with '_'; arena copy. */
static char *file_name(cki_arena *ar, const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    char *p = cki_arena_alloc(ar, n + e + 1);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = name[i] == '/' ? '_' : name[i];
    if (!strcmp(name, ".") || !strcmp(name, ".."))
        for (size_t i = 0; i < n; i++) p[i] = '_';
    memcpy(p + n, ext, e + 1);
    return p;
}

typedef struct item {
    const cki_tensor *t;
    cki_out_tensor ot;
    char *path;
} item;

ck_status ck_export(ck_ctx *ctx, ck_model *m, const char *const *names, size_t count,
                    const char *out, const ck_export_opts *opts, ck_convert_stats *stats)
{
    ck_export_opts defaults = {NULL, CK_DT_KEEP, 0, 0};
    item *items = NULL;
    cki_sink **sinks = NULL;
    cki_arena ar;
    cki_map files;
    cki_cast_stats cs = {0, 0};
    cki_write_job job;
    cki_buf hdr;
    uint8_t *scratch = NULL;
    uint64_t total = 0, done = 0;
    size_t opened = 0, committed = 0;
    int npy, made_dir = 0;
    ck_status st = CK_OK;

    if (!ctx || !m || !names || !count || !out)
        return cki_fail(ctx, CK_EARG, "ck_export: missing argument");
    cki_clear(ctx);
    if (!opts) opts = &defaults;
    if (stats) memset(stats, 0, sizeof *stats);
    npy = !opts->format || !strcmp(opts->format, "npy");
    if (!npy && strcmp(opts->format, "raw"))
        return cki_fail(ctx, CK_EARG, "%s: export format '%s': expected npy or raw", out,
                        opts->format);
    if (opts->dtype != CK_DT_KEEP &&
        (!ck_dtype_is_float(opts->dtype) || !ck_dtype_can_cast(opts->dtype)))
        return cki_fail(ctx, CK_EARG, "%s: cannot cast to %s", out, ck_dtype_name(opts->dtype));
    if (count > MAX_FILES)
        return cki_fail(ctx, CK_ELIMIT, "%s: %zu tensors asked; at most %d per export", out,
                        count, MAX_FILES);
    cki_arena_init(&ar, ctx);
    cki_map_init(&files, ctx);
    cki_buf_init(&hdr, ctx, 0);
    memset(&job, 0, sizeof job);
    items = cki_calloc(ctx, count, sizeof *items);
    sinks = cki_calloc(ctx, count, sizeof *sinks);
    if (!items || !sinks) { st = CK_ENOMEM; goto out; }

    /* everything checkable, before any output exists */
    for (size_t i = 0; i < count; i++) {
        size_t idx, prev;
        item *it = &items[i];
        const cki_tensor *t;
        ck_dtype dt;
        if (ck_model_find(m, names[i], &idx)) {
            st = cki_fail(ctx, CK_ENOTFOUND, "%s: no tensor named '%s' (%zu tensors; see "
                                             "'ckptkit ls')",
                          m->path, names[i], m->count);
            goto out;
        }
        t = &m->tensors[idx];
        dt = t->dtype;
        if (opts->dtype != CK_DT_KEEP && (ck_dtype_is_float(dt) || ck_dtype_is_quantized(dt)) &&
            dt != opts->dtype) {
            /* ggml block types are dequantised, floats cast */
            if (ck_dtype_is_quantized(dt) ? !ck_dtype_can_dequantize(dt) : !ck_dtype_can_cast(dt)) {
                st = cki_fail(ctx, CK_EUNSUPPORTED, "%s: tensor '%s': cannot cast %s to %s",
                              m->path, t->name, ck_dtype_name(dt), ck_dtype_name(opts->dtype));
                goto out;
            }
            dt = opts->dtype;
        }
        if (npy && !npy_descr(dt)) {
            st = cki_fail(ctx, CK_EUNSUPPORTED,
                          "%s: tensor '%s' is %s, which has no NumPy dtype; export it with "
                          "--dtype f32 (or --format raw)",
                          m->path, t->name, ck_dtype_name(dt));
            goto out;
        }
        if (!cki_dtype_size(dt)) {
            st = cki_fail(ctx, CK_EUNSUPPORTED, "%s: tensor '%s': %s values cannot be exported",
                          m->path, t->name, ck_dtype_name(dt));
            goto out;
        }
        it->t = t;
        it->ot.name = t->name;
        it->ot.src = t;
        it->ot.dtype = dt;
        if (cki_dtype_nbytes(dt, t->numel, &it->ot.nbytes) ||
            cki_add_u64(&total, total, it->ot.nbytes)) {
            st = cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': size overflows", m->path, t->name);
            goto out;
        }
        if (count == 1) {
            it->path = cki_arena_strdup(&ar, out);
            if (!it->path) { st = CK_ENOMEM; goto out; }
            break;
        }
        {
            char *fn = file_name(&ar, t->name, npy ? ".npy" : ".bin");
            size_t ol = strlen(out), pl;
            if (!fn) { st = CK_ENOMEM; goto out; }
            while (ol > 1 && out[ol - 1] == '/') ol--;
            pl = ol + strlen(fn) + 2;
            if (!(it->path = cki_arena_alloc(&ar, pl))) { st = CK_ENOMEM; goto out; }
            snprintf(it->path, pl, "%.*s/%s", (int)ol, out, fn);
            switch (cki_map_put(&files, fn, strlen(fn), i, &prev)) {
            case 0: break;
            case 1:
                st = cki_fail(ctx, CK_EARG,
                              "%s: tensors '%s' and '%s' would both be written to '%s'", out,
                              items[prev].t->name, t->name, fn);
                goto out;
            default: st = CK_ENOMEM; goto out;
            }
        }
    }
    if (!opts->allow_expand && count &&
        (st = cki_check_expand(ctx, m, out, &items[0].ot, count, sizeof *items)))
        goto out;
    if (count > 1) {
        struct stat sb;
        if (stat(out, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) {
                st = cki_fail(ctx, CK_EARG,
                              "%s: exists and is not a folder (several tensors go to a folder)",
                              out);
                goto out;
            }
        } else if (errno == ENOENT) {
            if (mkdir(out, 0777) != 0) {
                st = cki_fail(ctx, CK_EIO, "%s: cannot create folder: %s", out, strerror(errno));
                goto out;
            }
            made_dir = 1;
        } else {
            st = cki_fail(ctx, CK_EIO, "%s: cannot stat: %s", out, strerror(errno));
            goto out;
        }
    }

    /* write every file; all stay temporary until the last one is complete */
    scratch = cki_malloc(ctx, CKI_SCRATCH);
    if (!scratch) { st = CK_ENOMEM; goto out; }
    for (size_t i = 0; i < count && !st; i++) {
        item *it = &items[i];
        if ((st = cki_sink_open(ctx, it->path, opts->force, m->sources, m->source_count,
                                &sinks[i])))
            break;
        opened = i + 1;
        memset(&job, 0, sizeof job);
        job.ctx = ctx;
        job.path = it->path;
        job.sink = sinks[i];
        job.tensors = &it->ot;
        job.count = 1;
        job.src_model = m;
        job.force = opts->force;
        job.verify_crc = 1;
        job.stats = &cs;
        job.scratch = scratch;
        job.total_bytes = total;
        job.done_bytes = done;
        if (npy) {
            hdr.len = 0;
            if ((st = cki_npy_write_preamble(ctx, npy_descr(it->ot.dtype), it->t->ndim,
                                             it->t->shape, &hdr)))
                break;
            if ((st = cki_sink_write(sinks[i], hdr.p, hdr.len))) break;
        }
        st = cki_emit_tensor(&job, &it->ot, NULL);
        done = job.done_bytes;
    }
    for (size_t i = 0; !st && i < count; i++) {
        st = cki_sink_commit(sinks[i]);
        sinks[i] = NULL;
        if (!st) committed = i + 1;
    }
    if (st) /* a rename failed half-way: take back the files already in place */
        for (size_t i = 0; i < committed; i++) unlink(items[i].path);
    if (!st && stats) {
        stats->tensors = count;
        stats->bytes = total;
        stats->overflow = cs.overflow;
        stats->underflow = cs.underflow;
        stats->shards = count;
        for (size_t i = 0; i < count; i++)
            if (items[i].ot.dtype != items[i].t->dtype) stats->cast_tensors++;
    }
out:
    for (size_t i = 0; sinks && i < opened; i++) cki_sink_abort(sinks[i]);
    if (st && made_dir) rmdir(out);
    cki_free(ctx, scratch);
    cki_free(ctx, items);
    cki_free(ctx, sinks);
    cki_buf_free(&hdr);
    cki_map_free(&files);
    cki_arena_free(&ar);
    return st;
}
