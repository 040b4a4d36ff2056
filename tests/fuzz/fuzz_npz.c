/*
 * fuzz_npz.c -- libFuzzer target for the npz reader (src/formats/fmt_npz.c,
 * over the zip reader and the npy parser). The input is a whole file, read by
 * the npz driver directly (whatever detection would say), once as is and
 * once with skip_unsupported and allow_unsafe. A failure must leave one line
 * naming the file; an opened model must keep every promise of fuzz_open.h
 * (reads whole and sliced, casts, verify and diff against itself), which
 * drives the on-demand inflate of deflated members forwards and backwards.
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
    if (st) fz_check_message(ctx, st, "fuzz.npz");
    else fz_check_model(ctx, m, "fuzz.npz");
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
