/*
 * t_faults.c -- failure paths of a whole conversion, and the memory bound.
 *
 * Fault loops: a model is built by hand over a real input file (storages and
 * views added through the model API, so no reader is involved), then
 * ck_convert runs again and again with the Nth write, fsync, rename, open or
 * allocation failing, N = 1, 2, ... until a run succeeds. After every failed
 * run: a one-line message, no OUT, no temporary file, the input's bytes
 * unchanged, and the context's counted memory back where it was (the ASan
 * build adds real leak checking). The run that succeeds must produce a file
 * that reads back equal to the input.
 *
 * A writer with a side output (like raw's OUT.json) checks the two-phase
 * commit: a failure at any step leaves neither file.
 *
 * Memory: ck_model_open sets the context's bound to 64 MiB + 32 x input
 * bytes (capped by CK_LIMIT_MEMORY); hostile pickles must fail with a
 * message instead of allocating past the bound.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cki.h"
#include "convert/convert.h"
#include "formats/format.h"
#include "formats/model.h"
#include "io/sys.h"
#include "pickle/pickle.h"
#include "t.h"
#include "t_fs.h"

/* ---- the hand-built input ----------------------------------------------------- */

#define BIG_ROWS 512
#define BIG_COLS 1024
#define IN_LEN ((size_t)BIG_ROWS * BIG_COLS * 4 + 64 * 48 * 4 + 100 * 8 + 3000 * 2 + 64)

static unsigned char *make_input(size_t n)
{
    unsigned char *p = malloc(n);
    uint32_t x = 0x9e3779b9u;
    for (size_t i = 0; p && i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
    /* keep the F32 and BF16 values finite so casts are ordinary: clear the
     * top exponent bit of every 2-byte and 4-byte element's high byte */
    for (size_t i = 1; p && i < n; i += 2) p[i] &= 0x3f;
    return p;
}

/* Builds a model over IN: a 2 MiB dense F32 matrix, a transposed F32 view,
 * an I64 vector, a BF16 vector sliced with an offset, and metadata. */
static ck_status build_model(ck_ctx *ctx, const char *in, ck_model **out)
{
    ck_model *m = NULL;
    cki_source *src;
    cki_storage *s;
    ck_status st;
    uint64_t off = 0;
    int64_t big[2] = {BIG_ROWS, BIG_COLS};
    int64_t tshape[2] = {48, 64}, tstride[2] = {1, 48};
    int64_t vec[1] = {100}, half[1] = {2990};
    if ((st = cki_model_new(ctx, in, &m))) return st;
    if ((st = cki_source_open(ctx, in, &src))) goto fail;
    if ((st = cki_model_add_source(m, src))) goto fail;
    m->format_name = "hand-built";
    if ((st = cki_model_storage(m, src, off, (uint64_t)BIG_ROWS * BIG_COLS * 4, CK_DT_F32, "big",
                                &s)))
        goto fail;
    if ((st = cki_model_add_tensor(m, in, "big.weight", 10, CK_DT_F32, 2, big, NULL, 0, s, 0,
                                   NULL)))
        goto fail;
    off += (uint64_t)BIG_ROWS * BIG_COLS * 4;
    if ((st = cki_model_storage(m, src, off, 64 * 48 * 4, CK_DT_F32, "t", &s))) goto fail;
    if ((st = cki_model_add_tensor(m, in, "proj.T", 6, CK_DT_F32, 2, tshape, tstride, 0, s, 0,
                                   NULL)))
        goto fail;
    off += 64 * 48 * 4;
    if ((st = cki_model_storage(m, src, off, 100 * 8, CK_DT_I64, "steps", &s))) goto fail;
    if ((st = cki_model_add_tensor(m, in, "steps", 5, CK_DT_I64, 1, vec, NULL, 0, s, 0, NULL)))
        goto fail;
    off += 100 * 8;
    if ((st = cki_model_storage(m, src, off, 3000 * 2, CK_DT_BF16, "h", &s))) goto fail;
    if ((st = cki_model_add_tensor(m, in, "half.slice", 10, CK_DT_BF16, 1, half, NULL, 10, s, 0,
                                   NULL)))
        goto fail;
    if ((st = cki_model_set_meta(m, "note", 4, "hand built", 10))) goto fail;
    *out = m;
    return CK_OK;
fail:
    ck_model_close(m);
    return st;
}

typedef struct rig {
    char dir[512];
    char in[600];
    char out[600];
    unsigned char *bytes;
    ck_ctx *ctx;
    ck_model *model;
} rig;

static int rig_up(rig *r, const char *out_name)
{
    memset(r, 0, sizeof *r);
    cki_sys_reset();
    if (tfs_mkdtemp(r->dir, sizeof r->dir)) return -1;
    tfs_join(r->in, sizeof r->in, r->dir, "in.bin");
    tfs_join(r->out, sizeof r->out, r->dir, out_name);
    r->bytes = make_input(IN_LEN);
    if (!r->bytes || tfs_write(r->in, r->bytes, IN_LEN)) return -1;
    r->ctx = ck_ctx_new();
    if (!r->ctx) return -1;
    return build_model(r->ctx, r->in, &r->model) ? -1 : 0;
}

static void rig_down(rig *r)
{
    cki_sys_reset();
    ck_model_close(r->model);
    if (r->ctx) CHECK(r->ctx->mem_used == 0);
    ck_ctx_free(r->ctx);
    free(r->bytes);
    tfs_rmtree(r->dir);
}

/* The directory holds only the input, unchanged. */
static int only_input_left(const rig *r)
{
    return tfs_count_entries(r->dir) == 1 && tfs_same(r->in, r->bytes, IN_LEN);
}

static const cki_sys_op all_ops[] = {CKI_SYS_WRITE, CKI_SYS_FSYNC, CKI_SYS_RENAME, CKI_SYS_OPEN,
                                     CKI_SYS_ALLOC};
static const char *const op_names[] = {"write", "fsync", "rename", "open", "alloc"};

/* Runs ck_convert with fault OP at N = 1, 2, ... until it succeeds; checks
 * the leftovers after every failure. Returns the number of failed runs. */
static int convert_fault_loop(rig *r, cki_sys_op op, const ck_convert_opts *o)
{
    uint64_t base_mem = r->ctx->mem_used;
    int failures = 0;
    for (unsigned long nth = 1; nth < 5000; nth++) {
        ck_convert_stats stats;
        ck_status st;
        cki_sys_fail_nth(op, nth);
        st = ck_convert(r->ctx, r->model, r->out, o, &stats);
        cki_sys_reset();
        if (st == CK_OK) return failures;
        failures++;
        if (!*ck_errmsg(r->ctx) || strchr(ck_errmsg(r->ctx), '\n')) {
            fprintf(stderr, "  %s #%lu: bad message '%s'\n", op_names[op], nth,
                    ck_errmsg(r->ctx));
            CHECK(0);
        }
        if (st != CK_EIO && st != CK_ENOMEM) {
            fprintf(stderr, "  %s #%lu: status %s: %s\n", op_names[op], nth, ck_status_name(st),
                    ck_errmsg(r->ctx));
            CHECK(0);
        }
        if (!only_input_left(r)) {
            fprintf(stderr, "  %s #%lu: leftovers or a changed input in %s\n", op_names[op], nth,
                    r->dir);
            CHECK(0);
            return -1;
        }
        if (r->ctx->mem_used != base_mem) {
            fprintf(stderr, "  %s #%lu: %llu counted bytes not freed\n", op_names[op], nth,
                    (unsigned long long)(r->ctx->mem_used - base_mem));
            CHECK(0);
        }
    }
    CHECK(0); /* never succeeded */
    return -1;
}

/* OUT reads back with the same names, dtypes, shapes and bytes as the model. */
static void expect_same_as_model(rig *r)
{
    ck_model *back = NULL;
    int same = 0;
    CHECK(ck_model_open(r->ctx, r->out, NULL, &back) == CK_OK);
    if (!back) {
        fprintf(stderr, "  reopen %s: %s\n", r->out, ck_errmsg(r->ctx));
        return;
    }
    CHECK(ck_verify(r->ctx, r->model, back, NULL, NULL, &same) == CK_OK);
    CHECK(same == 1);
    ck_model_close(back);
}

static void fault_suite(const char *out_name, ck_dtype dtype)
{
    for (size_t k = 0; k < sizeof all_ops / sizeof all_ops[0]; k++) {
        rig r;
        ck_convert_opts o;
        int failures;
        if (rig_up(&r, out_name)) {
            CHECK(0);
            rig_down(&r);
            return;
        }
        memset(&o, 0, sizeof o);
        o.dtype = dtype;
        failures = convert_fault_loop(&r, all_ops[k], &o);
        CHECK(failures >= 1); /* every operation is on the way at least once */
        CHECK(tfs_exists(r.out) && tfs_count_temps(r.dir) == 0);
        CHECK(tfs_same(r.in, r.bytes, IN_LEN));
        if (dtype == CK_DT_KEEP) expect_same_as_model(&r);
        rig_down(&r);
    }
}

TEST(faults_convert_to_safetensors)
{
    fault_suite("out.safetensors", CK_DT_KEEP);
}

TEST(faults_convert_to_safetensors_with_cast)
{
    fault_suite("out.safetensors", CK_DT_F16);
}

TEST(faults_convert_to_pth)
{
    if (!ck_format_for_path("x.pth")) { /* the pth writer is not registered */
        fprintf(stderr, "  faults_convert_to_pth: no pth writer, skipped\n");
        return;
    }
    fault_suite("out.pth", CK_DT_KEEP);
}

TEST(faults_convert_refusals_leave_input_alone)
{
    rig r;
    ck_convert_opts o;
    char alias[700];
    if (rig_up(&r, "out.safetensors")) {
        CHECK(0);
        rig_down(&r);
        return;
    }
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    o.force = 1; /* force never allows overwriting the input */
    o.format = "safetensors";
    CHECK(ck_convert(r.ctx, r.model, r.in, &o, NULL) == CK_ESAMEFILE);
    snprintf(alias, sizeof alias, "%s/./in.bin", r.dir);
    CHECK(ck_convert(r.ctx, r.model, alias, &o, NULL) == CK_ESAMEFILE);
    tfs_join(alias, sizeof alias, r.dir, "hard.safetensors");
    CHECK(link(r.in, alias) == 0);
    CHECK(ck_convert(r.ctx, r.model, alias, &o, NULL) == CK_ESAMEFILE);
    unlink(alias);
    CHECK(only_input_left(&r));
    CHECK(r.ctx->mem_used > 0); /* the model is still open */
    rig_down(&r);
}

/* ---- a writer with a side output ------------------------------------------------ */

static ck_status side_write(cki_write_job *job)
{
    char side[700];
    cki_sink *s;
    ck_status st;
    uint32_t crc = 0;
    snprintf(side, sizeof side, "%s.json", job->path);
    if ((st = cki_job_open_side(job, side, &s))) return st;
    if ((st = cki_sink_write(s, "{\"side\": true}\n", 15))) return st;
    for (size_t i = 0; i < job->count; i++)
        if ((st = cki_emit_tensor(job, &job->tensors[i], i % 2 ? &crc : NULL))) return st;
    return cki_sink_write(s, &crc, sizeof crc);
}

static const char *const side_exts[] = {".side", NULL};
static const cki_format side_format = {"side", side_exts, CKI_CAP_WRITE, NULL, NULL, side_write};

static ck_status side_convert(rig *r, int force)
{
    ck_convert_opts o;
    cki_plan plan;
    ck_convert_stats stats;
    ck_status st;
    memset(&o, 0, sizeof o);
    memset(&stats, 0, sizeof stats);
    o.dtype = CK_DT_KEEP;
    o.force = force;
    cki_clear(r->ctx);
    if ((st = cki_plan_build(r->ctx, r->model, &o, &plan))) return st;
    st = cki_write_plan(r->ctx, r->model, &side_format, r->out, &o, &plan, &stats);
    cki_plan_free(r->ctx, &plan);
    return st;
}

TEST(faults_side_outputs_commit_together)
{
    for (size_t k = 0; k < sizeof all_ops / sizeof all_ops[0]; k++) {
        rig r;
        int failures = 0, renames_seen = 0;
        unsigned long nth;
        char side[700];
        if (rig_up(&r, "out.side")) {
            CHECK(0);
            rig_down(&r);
            return;
        }
        snprintf(side, sizeof side, "%s.json", r.out);
        for (nth = 1; nth < 5000; nth++) {
            ck_status st;
            cki_sys_fail_nth(all_ops[k], nth);
            st = side_convert(&r, 0);
            cki_sys_reset();
            if (st == CK_OK) break;
            failures++;
            if (all_ops[k] == CKI_SYS_RENAME) renames_seen++;
            if (!only_input_left(&r)) {
                fprintf(stderr, "  side %s #%lu: leftovers (%s)\n", op_names[k], nth,
                        ck_errmsg(r.ctx));
                CHECK(0);
                break;
            }
        }
        CHECK(failures >= 1);
        /* two renames (side, then main): failing the second must undo the first */
        if (all_ops[k] == CKI_SYS_RENAME) CHECK(renames_seen == 2);
        CHECK(tfs_exists(r.out) && tfs_exists(side) && tfs_count_temps(r.dir) == 0);
        CHECK(tfs_count_entries(r.dir) == 3);
        rig_down(&r);
    }
}

TEST(faults_side_output_refused_without_force)
{
    rig r;
    char side[700];
    if (rig_up(&r, "out.side")) {
        CHECK(0);
        rig_down(&r);
        return;
    }
    snprintf(side, sizeof side, "%s.json", r.out);
    CHECK(tfs_write(side, "keep me", 7) == 0);
    CHECK(side_convert(&r, 0) == CK_EEXIST); /* the side exists: nothing is written */
    CHECK(!tfs_exists(r.out) && tfs_same(side, "keep me", 7) && tfs_count_temps(r.dir) == 0);
    CHECK(side_convert(&r, 1) == CK_OK);
    CHECK(tfs_exists(r.out) && !tfs_same(side, "keep me", 7));
    rig_down(&r);
}

/* A progress callback that cancels half-way: CK_EINTR, nothing left. */
static int cancel_half(void *user, uint64_t done, uint64_t total)
{
    (void)user;
    return total && done * 2 >= total;
}

TEST(faults_cancelled_convert_leaves_nothing)
{
    rig r;
    if (rig_up(&r, "out.safetensors")) {
        CHECK(0);
        rig_down(&r);
        return;
    }
    ck_ctx_set_progress(r.ctx, cancel_half, NULL);
    CHECK(ck_convert(r.ctx, r.model, r.out, NULL, NULL) == CK_EINTR);
    CHECK(strstr(ck_errmsg(r.ctx), "interrupted") != NULL);
    CHECK(only_input_left(&r));
    ck_ctx_set_progress(r.ctx, NULL, NULL);
    CHECK(ck_convert(r.ctx, r.model, r.out, NULL, NULL) == CK_OK);
    rig_down(&r);
}

/* ---- memory bound ---------------------------------------------------------------- */

TEST(faults_open_sets_the_documented_memory_bound)
{
    rig r;
    ck_model *m = NULL;
    ck_ctx *ctx;
    uint64_t size;
    if (rig_up(&r, "out.safetensors")) {
        CHECK(0);
        rig_down(&r);
        return;
    }
    CHECK(ck_convert(r.ctx, r.model, r.out, NULL, NULL) == CK_OK);
    {
        size_t n = 0;
        unsigned char *b = tfs_read(r.out, &n);
        size = n;
        free(b);
    }
    ctx = ck_ctx_new();
    CHECK(ck_model_open(ctx, r.out, NULL, &m) == CK_OK);
    CHECK(ctx->mem_limit_effective == (64ull << 20) + 32 * size);
    CHECK(ctx->mem_peak <= ctx->mem_limit_effective);
    ck_model_close(m);
    ck_ctx_free(ctx);
    /* a configured limit caps it */
    ctx = ck_ctx_new();
    CHECK(ck_ctx_set_limit(ctx, CK_LIMIT_MEMORY, 8 << 20) == CK_OK);
    CHECK(ck_model_open(ctx, r.out, NULL, &m) == CK_OK);
    CHECK(ctx->mem_limit_effective == 8 << 20);
    ck_model_close(m);
    ck_ctx_free(ctx);
    rig_down(&r);
}

/* A safetensors file with COUNT small tensors (a large header). */
static int write_many_tensor_file(const char *path, size_t count)
{
    cki_buf h;
    FILE *f;
    uint8_t len[8];
    size_t pad;
    int ok;
    cki_buf_init(&h, NULL, 0);
    cki_buf_putc(&h, '{');
    for (size_t i = 0; i < count; i++)
        cki_buf_printf(&h, "%s\"layer.%zu.w\":{\"dtype\":\"U8\",\"shape\":[1],"
                           "\"data_offsets\":[%zu,%zu]}",
                       i ? "," : "", i, i, i + 1);
    cki_buf_putc(&h, '}');
    pad = (8 - h.len % 8) % 8;
    while (pad--) cki_buf_putc(&h, ' ');
    if (h.failed) return -1;
    cki_st_le64(len, h.len);
    f = fopen(path, "wb");
    if (!f) return -1;
    ok = fwrite(len, 1, 8, f) == 8 && fwrite(h.p, 1, h.len, f) == h.len;
    for (size_t i = 0; ok && i < count; i++) ok = fputc((int)(i & 0xff), f) != EOF;
    ok = fclose(f) == 0 && ok;
    cki_buf_free(&h);
    return ok ? 0 : -1;
}

TEST(faults_tight_memory_limit_fails_open_cleanly)
{
    char dir[512], path[600];
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_status st;
    if (tfs_mkdtemp(dir, sizeof dir)) {
        CHECK(0);
        return;
    }
    tfs_join(path, sizeof path, dir, "many.safetensors");
    CHECK(write_many_tensor_file(path, 20000) == 0); /* ~1.3 MB of header */
    CHECK(ck_ctx_set_limit(ctx, CK_LIMIT_MEMORY, 512 << 10) == CK_OK);
    st = ck_model_open(ctx, path, NULL, &m);
    CHECK(st == CK_ENOMEM || st == CK_ELIMIT);
    CHECK(m == NULL);
    CHECK(strstr(ck_errmsg(ctx), "limit") != NULL);
    CHECK(ctx->mem_peak <= (512 << 10));
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
    /* with the default bound the same file opens */
    ctx = ck_ctx_new();
    CHECK(ck_model_open(ctx, path, NULL, &m) == CK_OK);
    CHECK(ck_model_tensor_count(m) == 20000);
    ck_model_close(m);
    CHECK(ctx->mem_used == 0);
    ck_ctx_free(ctx);
    tfs_rmtree(dir);
}

/* Runs pickle bytes P under the bound ck_model_open would set for an input
 * of LEN bytes but with BASE instead of 64 MiB (to keep the test fast).
 * Returns the status; *PEAK gets the counted peak. */
static ck_status run_pickle_bounded(const uint8_t *p, size_t len, uint64_t base, uint64_t *peak)
{
    ck_ctx *ctx = ck_ctx_new();
    cki_arena arena;
    cki_pickle pk;
    ck_status st;
    cki_arena_init(&arena, ctx);
    ctx->mem_limit_effective = base + 32 * (uint64_t)len;
    st = cki_pickle_run(ctx, &arena, p, len, "hostile.pt", "data.pkl", 0, &pk);
    *peak = ctx->mem_peak;
    if (st != CK_OK && (!*ck_errmsg(ctx) || strchr(ck_errmsg(ctx), '\n'))) {
        fprintf(stderr, "  pickle failed without a one-line message: '%s'\n", ck_errmsg(ctx));
        st = (ck_status)-1;
    }
    cki_arena_free(&arena);
    if (ctx->mem_used != 0) st = (ck_status)-2;
    ck_ctx_free(ctx);
    return st;
}

TEST(faults_hostile_pickles_stay_within_the_bound)
{
    uint64_t peak = 0;
    ck_status st;
    /* PROTO 2, NONE, LONG_BINPUT 0xffffffff, STOP: a memo index of 4G from 9 bytes */
    static const uint8_t memo_far[] = {0x80, 2, 'N', 'r', 0xff, 0xff, 0xff, 0xff, '.'};
    /* BINUNICODE8-style length claims: BINBYTES8 of 2^62 bytes, BINUNICODE of 4 GiB-1 */
    static const uint8_t long_bytes[] = {0x80, 4, 0x8e, 0, 0, 0, 0, 0, 0, 0, 0x40, '.'};
    static const uint8_t long_text[] = {0x80, 2, 'X', 0xff, 0xff, 0xff, 0xff, 'a', '.'};
    /* EMPTY_LIST then LONG_BINGET of a far index */
    static const uint8_t get_far[] = {0x80, 2, ']', 'j', 0xff, 0xff, 0xff, 0x7f, '.'};
    uint8_t *flood;
    size_t n = 1 << 20;

    st = run_pickle_bounded(memo_far, sizeof memo_far, 1 << 20, &peak);
    CHECK(st == CK_OK || st == CK_EFORMAT || st == CK_ELIMIT || st == CK_ENOMEM);
    CHECK(peak <= (1 << 20) + 32 * sizeof memo_far);
    st = run_pickle_bounded(long_bytes, sizeof long_bytes, 1 << 20, &peak);
    CHECK(st == CK_EFORMAT || st == CK_ELIMIT);
    CHECK(peak <= (1 << 20) + 32 * sizeof long_bytes);
    st = run_pickle_bounded(long_text, sizeof long_text, 1 << 20, &peak);
    CHECK(st == CK_EFORMAT || st == CK_ELIMIT);
    st = run_pickle_bounded(get_far, sizeof get_far, 1 << 20, &peak);
    CHECK(st == CK_EFORMAT || st == CK_ELIMIT);

    /* 1 MiB of EMPTY_DICT opcodes: one node each, far more than 32 bytes per
     * input byte. Must stop at the bound with a message, not allocate on. */
    flood = malloc(n + 3);
    flood[0] = 0x80;
    flood[1] = 2;
    memset(flood + 2, '}', n);
    flood[n + 2] = '.';
    st = run_pickle_bounded(flood, n + 3, 1 << 20, &peak);
    CHECK(st == CK_ENOMEM || st == CK_ELIMIT || st == CK_EFORMAT);
    CHECK(peak <= (1 << 20) + 32 * (uint64_t)(n + 3));
    free(flood);
}
