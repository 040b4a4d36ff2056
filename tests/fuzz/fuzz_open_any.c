/*
 * fuzz_open_any.c -- libFuzzer target for the whole open path: the input is
 * a file of any kind, opened from memory the way ck_model_open opens one
 * (detection by content, then the chosen reader; fuzz_open.h), and scanned
 * the way ck_scan scans one. The per-format targets (fuzz_safetensors,
 * fuzz_torch, ...) force their reader; this one checks what no single
 * reader owns: detection, the promises of an opened model, and the scanner
 * agreeing with the loader.
 *
 * An opened model must keep every promise fz_check_model lists (fuzz_open.h:
 * names, shapes, views, whole and sliced reads, zero-copy views, F32 reads,
 * values JSON, verify and diff against itself), and once it is closed the
 * context holds no counted memory. A failed open leaves a one-line message
 * naming the file.
 *
 * Scanner against loader: the input runs through cki_torch_parse (the
 * parse both the torch reader and ck_scan use) with a visitor taking the
 * worst verdict of every global met, as a loader would meet them. ck_scan
 * of the same bytes must then never succeed with a better verdict than
 * that; a torch file the reader opened must parse; and a file the
 * safetensors reader accepted, with no zip directory in it, scans clean.
 * ck_scan takes a path only (its per-container scanners are static in
 * src/api/scan.c), so the bytes go to one scratch file per process, on
 * /dev/shm when there is one.
 */
#include <fcntl.h>
#include <unistd.h>

#include "formats/torch_read.h"
#include "fuzz_open.h"
#include "pickle/verdict.h"

extern const cki_format cki_fmt_safetensors;

static char scratch[256];
static int scratch_fd = -1;

static void drop_scratch(void)
{
    if (scratch_fd >= 0) close(scratch_fd);
    unlink(scratch);
}

static void make_scratch(void)
{
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!dir || !*dir) dir = "/tmp";
    snprintf(scratch, sizeof scratch, "%s/ckptkit-fuzz-open.XXXXXX", dir);
    scratch_fd = mkstemp(scratch);
    fz_check(scratch_fd >= 0);
    atexit(drop_scratch);
}

/* ---- scanner against loader -------------------------------------------------- */

static ck_status worst_visit(void *user, const char *where, uint64_t off, const cki_pickle *pk)
{
    ck_verdict *worst = user;
    (void)off;
    fz_check(where != NULL);
    for (size_t i = 0; i < pk->global_count; i++) {
        const cki_pickle_global *g = &pk->globals[i];
        ck_verdict v = g->resolved ? cki_global_verdict(g->module, g->name) : CK_VERDICT_DANGEROUS;
        if (v > *worst) *worst = v;
    }
    return CK_OK;
}

static void scan_item(void *user, const ck_scan_item *it)
{
    (void)user;
    fz_check(it->where && it->module && it->name);
    fz_check(it->verdict == CK_VERDICT_ALLOWED || it->verdict == CK_VERDICT_UNKNOWN ||
             it->verdict == CK_VERDICT_DANGEROUS);
}

static void check_scan(ck_ctx *ctx, const uint8_t *data, size_t size, const char *reader,
                       int opened)
{
    cki_torch_kind kind = cki_torch_sniff(data, size);
    ck_verdict loader_worst = CK_VERDICT_ALLOWED, scan_worst = CK_VERDICT_ALLOWED;
    ck_status st;
    if (kind != CKI_TORCH_NONE) {
        cki_torch_file tf;
        st = cki_torch_parse(ctx, FZ_NAME, data, size, kind, worst_visit, &loader_worst, &tf);
        if (st == CK_OK) cki_torch_close(&tf);
        else fz_check_message(ctx, st, FZ_NAME);
        if (st && opened && !strncmp(reader, "torch", 5))
            fz_fail(ctx, "the torch reader opened a file its parser refuses");
    }
    if (scratch_fd < 0) make_scratch();
    fz_check(ftruncate(scratch_fd, 0) == 0);
    fz_check(pwrite(scratch_fd, data, size, 0) == (ssize_t)size);
    st = ck_scan(ctx, scratch, scan_item, NULL, &scan_worst);
    if (st) {
        fz_check_message(ctx, st, scratch);
        return;
    }
    if (scan_worst < loader_worst) {
        fprintf(stderr, "fuzz: scan verdict %d, but the loader meets verdict %d\n",
                (int)scan_worst, (int)loader_worst);
        abort();
    }
    if (opened && !strcmp(reader, "safetensors") && kind == CKI_TORCH_NONE) {
        cki_zip z;
        if (cki_zip_open(NULL, FZ_NAME, data, size, &z) == CK_OK) cki_zip_close(&z);
        else fz_check(scan_worst == CK_VERDICT_ALLOWED);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    const cki_format *f;
    ck_status st;
    char reader[32] = "";
    if (!ctx) return 0;
    st = fz_open(ctx, FZ_NAME, data, size, &m, &f);
    if (st == CK_OK) {
        snprintf(reader, sizeof reader, "%s", ck_model_format(m));
        fz_check_model(ctx, m, FZ_NAME);
    } else if (f) {
        fz_check_message(ctx, st, FZ_NAME);
    }
    ck_model_close(m);
    fz_check(ctx->mem_used == 0);
    check_scan(ctx, data, size, reader, st == CK_OK);
    fz_check(ctx->mem_used == 0);
    ck_ctx_free(ctx);
    return 0;
}
