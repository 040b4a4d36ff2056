/*
 * fuzz_npz.c -- libFuzzer target for the npz reader (src/formats/fmt_npz.c,
 * over the zip reader and the npy parser). The input is a whole file, read by
 * the npz driver directly (whatever detection would say), once as is and
 * once with skip_unsupported and allow_unsafe. A failure must leave one line
 * naming the file; an opened model must keep every promise of fuzz_open.h
 * (reads whole and sliced, casts, verify and diff against itself), which
 * drives the on-demand inflate of deflated members forwards and backwards.
 * One exception, by design: a deflated member is inflated when it is read,
 * not at open, so a corrupt deflate stream or a wrong CRC shows on the first
 * read that reaches it. Such a read must fail with CK_EFORMAT and a line
 * naming the file and the member; the model is then not held to the rest.
 */
#include "fuzz_open.h"

extern const cki_format cki_fmt_npz;

static void one(const uint8_t *data, size_t size, const ck_open_opts *opts)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_source *src;
    ck_status st;
    if (!ctx) return;
    if (cki_model_new(ctx, "fuzz.npz", &m) ||
        cki_source_from_memory(ctx, "fuzz.npz", data, size, &src) ||
        cki_model_add_source(m, src))
        goto out;
    fz_grow_mem_limit(ctx, size);
    (void)cki_fmt_npz.probe(src);
    st = cki_fmt_npz.read(m, src, opts);
    if (st) {
        fz_check_message(ctx, st, "fuzz.npz");
        goto out;
    }
    for (size_t i = 0; i < m->count; i++) {
        const cki_tensor *t = &m->tensors[i];
        uint8_t *buf;
        if (!t->storage->fetch.fn || t->nbytes > FZ_CAP) continue;
        buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
        fz_check(buf != NULL);
        st = cki_tensor_read(ctx, t, 0, t->numel, CK_DT_KEEP, buf, (size_t)t->nbytes, NULL);
        free(buf);
        if (st) {
            fz_check_message(ctx, st, "fuzz.npz");
            fz_check(st == CK_EFORMAT && !strncmp(ck_errmsg(ctx), "fuzz.npz: member '", 18));
            goto out;
        }
    }
    fz_check_model(ctx, m, "fuzz.npz");
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_open_opts lenient;
    memset(&lenient, 0, sizeof lenient);
    lenient.skip_unsupported = 1;
    lenient.allow_unsafe = 1;
    one(data, size, NULL);
    one(data, size, &lenient);
    return 0;
}
