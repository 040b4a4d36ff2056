/*
 * fuzz_roundtrip.c -- libFuzzer target for the writers: the input is opened
 * from memory as ck_model_open would open it (fuzz_open.h); a model that
 * opens is converted with ck_convert (force) to every output format --
 * safetensors, pth, ckpt, raw -- and once more to safetensors cast to F16,
 * in a scratch folder made once per process (on /dev/shm when there is
 * one, so the sink's fsync costs little). Each output that ck_convert
 * reports written must:
 *  - open again with ckptkit's own reader (detection; raw with its
 *    manifest OUT.json): a writer must never produce a file ckptkit refuses;
 *  - hold exactly the input's tensors by name, each with the input's shape,
 *    and the input's dtype (or F16 for a floating input in the cast run);
 *  - give, read whole, the same bytes as the input tensor read as that
 *    dtype (the same cast code runs on both sides, so equal is exact).
 * A conversion that fails leaves one line naming the input or the output,
 * no output file and no temporary file in the folder. Violations abort.
 *
 * Kept fast: inputs above 64 KiB, models above 256 tensors or 1 MiB of
 * tensor bytes are opened but not converted.
 */
#include <dirent.h>
#include <unistd.h>

#include "fuzz_open.h"

#define INPUT_CAP (64u << 10)
#define TENSOR_CAP 256
#define BYTES_CAP (1u << 20)

static char dir[256];

/* FULL: a PyTorch input written whole (no --prune): its unknown objects
 * become dicts, so the reader may expose other names; such an output must
 * open again and scan free of dangerous globals. The other runs prune, so
 * their tensors must come back by name. */
static const struct {
    const char *format, *file;
    ck_dtype dtype;
    int full;
} runs[] = {
    {"safetensors", "out.safetensors", CK_DT_KEEP, 0},
    {"pth", "out.pth", CK_DT_KEEP, 0},
    {"ckpt", "out.ckpt", CK_DT_KEEP, 0},
    {"raw", "out.raw", CK_DT_KEEP, 0},
    {"safetensors", "half.safetensors", CK_DT_F16, 0},
    {"ckpt", "full.ckpt", CK_DT_KEEP, 1},
};

static void no_item(void *user, const ck_scan_item *it)
{
    (void)user;
    (void)it;
}

static void path_of(char *buf, size_t cap, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
}

static void remove_outputs(void)
{
    char p[400];
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
        path_of(p, sizeof p, runs[i].file);
        unlink(p);
    }
    path_of(p, sizeof p, "out.raw.json");
    unlink(p);
}

static void cleanup(void)
{
    remove_outputs();
    rmdir(dir);
}

static void make_dir(void)
{
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(dir, sizeof dir, "%s/ckptkit-fuzz-roundtrip.XXXXXX", base);
    fz_check(mkdtemp(dir) != NULL);
    atexit(cleanup);
}

/* The folder holds no temporary output ('.' files) of the sink. */
static void check_no_temp(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    fz_check(d != NULL);
    while ((e = readdir(d)))
        if (e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            fz_fail(NULL, "a temporary output was left behind");
    closedir(d);
}

static void check_convert_message(const ck_ctx *ctx, ck_status st, const char *out)
{
    const char *msg = ck_errmsg(ctx);
    size_t nl = strlen(FZ_NAME), dl = strlen(dir);
    fz_check(ck_last_status(ctx) == st && msg[0] && !strchr(msg, '\n'));
    if (st == CK_ENOMEM) return;
    if (!strncmp(msg, FZ_NAME, nl) && msg[nl] == ':') return;
    if (!strncmp(msg, dir, dl) && msg[dl] == '/') return;
    fprintf(stderr, "fuzz: converting to %s: message names neither file: %s\n", out, msg);
    abort();
}

/* Tensor T of the input read whole as AS, into a malloc'd buffer of *LEN. */
static uint8_t *read_as(ck_ctx *ctx, const cki_tensor *t, ck_dtype as, uint64_t *len)
{
    uint8_t *buf;
    if (cki_dtype_nbytes(as, t->numel, len)) return NULL;
    buf = malloc(*len ? (size_t)*len : 1);
    fz_check(buf != NULL);
    if (cki_tensor_read(ctx, t, 0, t->numel, as, buf, (size_t)*len, NULL)) {
        free(buf);
        return NULL;
    }
    return buf;
}

static void compare(ck_ctx *ctx, ck_model *in, ck_model *back, ck_dtype cast)
{
    if (back->count != in->count) {
        fprintf(stderr, "fuzz: %zu tensors written, %zu read back\n", in->count, back->count);
        abort();
    }
    for (size_t i = 0; i < in->count; i++) {
        const cki_tensor *a = &in->tensors[i], *b;
        ck_dtype want = a->dtype;
        uint8_t *va, *vb;
        uint64_t la, lb;
        size_t j;
        if (ck_model_find(back, a->name, &j)) {
            fprintf(stderr, "fuzz: tensor '%s' is missing from the output\n", a->name);
            abort();
        }
        b = &back->tensors[j];
        if (cast != CK_DT_KEEP && ck_dtype_is_float(a->dtype)) want = cast;
        if (b->dtype != want || b->ndim != a->ndim ||
            memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim)) {
            fprintf(stderr, "fuzz: tensor '%s': %s x %d dims written as %s x %d dims\n", a->name,
                    ck_dtype_name(a->dtype), a->ndim, ck_dtype_name(b->dtype), b->ndim);
            abort();
        }
        va = read_as(ctx, a, want, &la);
        if (!va) fz_fail(ctx, "a tensor that was written does not read as its output dtype");
        vb = read_as(ctx, b, b->dtype, &lb);
        if (!vb) fz_fail(ctx, "a tensor read back does not read");
        if (la != lb || memcmp(va, vb, (size_t)la)) {
            fprintf(stderr, "fuzz: tensor '%s': values differ after the round trip\n", a->name);
            abort();
        }
        free(va);
        free(vb);
    }
}

static void round_trip(ck_ctx *ctx, ck_model *in, size_t k)
{
    ck_convert_opts o;
    ck_open_opts ro;
    ck_model *back = NULL;
    char out[400], man[420];
    ck_status st;
    memset(&o, 0, sizeof o);
    memset(&ro, 0, sizeof ro);
    o.format = runs[k].format;
    o.dtype = runs[k].dtype;
    o.force = 1;
    o.prune = !runs[k].full;
    path_of(out, sizeof out, runs[k].file);
    snprintf(man, sizeof man, "%s.json", out);
    unlink(out);
    unlink(man);
    st = ck_convert(ctx, in, out, &o, NULL);
    check_no_temp();
    if (st) {
        check_convert_message(ctx, st, out);
        fz_check(access(out, F_OK) != 0 && access(man, F_OK) != 0);
        return;
    }
    if (!strcmp(runs[k].format, "raw")) ro.manifest = man;
    if (ck_model_open(ctx, out, &ro, &back)) {
        if (ck_last_status(ctx) == CK_ENOMEM) return;
        fprintf(stderr, "fuzz: the %s writer made a file its reader refuses: %s\n",
                runs[k].format, ck_errmsg(ctx));
        abort();
    }
    if (runs[k].full) {
        ck_verdict worst = CK_VERDICT_ALLOWED;
        if (!ck_scan(ctx, out, no_item, NULL, &worst)) fz_check(worst != CK_VERDICT_DANGEROUS);
    } else {
        compare(ctx, in, back, runs[k].dtype);
    }
    ck_model_close(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ck_ctx *ctx;
    ck_model *m = NULL;
    const cki_format *f;
    uint64_t total = 0;
    if (size > INPUT_CAP) return 0;
    if (!dir[0]) make_dir();
    ctx = ck_ctx_new();
    if (!ctx) return 0;
    if (fz_open(ctx, FZ_NAME, data, size, &m, &f) == CK_OK && m->count <= TENSOR_CAP) {
        int big = 0;
        for (size_t i = 0; i < m->count; i++)
            big |= cki_add_u64(&total, total, m->tensors[i].nbytes);
        if (!big && total <= BYTES_CAP)
            for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) round_trip(ctx, m, k);
    }
    ck_model_close(m);
    remove_outputs();
    fz_check(ctx->mem_used == 0);
    ck_ctx_free(ctx);
    return 0;
}
