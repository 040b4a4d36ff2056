/*
 * batch_cmds.c -- what one job of a batch does, for convert, scan and
 * verify, and how each command's batch is planned (batch.h runs it).
 *
 *   convert IN... -o DIR   each checkpoint file (folders: the files in them,
 *                          every level with -r) to DIR/NAME.EXT, EXT from
 *                          --to (safetensors by default); -r keeps the
 *                          folder structure below each folder given.
 *                          --skip-existing: an output at least as new as its
 *                          input is skipped, an older one is replaced.
 *                          Two inputs that would write the same output: the
 *                          second fails. An input that is its own output is
 *                          skipped. Exit 1 if any job failed, else 0.
 *   scan PATH... -r        clean / unsafe / failed per file; exit 1 if any
 *                          is unsafe (a dangerous global found, even in a
 *                          file not fully parsed), else 2 if any file could
 *                          not be read or parsed, else 0.
 *   verify DIR_A DIR_B     files paired by relative path without extension
 *                          (a/x.pth with b/x.safetensors; the same extension
 *                          first when several match); a file without a
 *                          partner is a difference. Exit 2 if any pair could
 *                          not be read, else 1 if any differs.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "batch.h"

static const char *ext_for(const char *fmt)
{
    if (!strcmp(fmt, "safetensors")) return ".safetensors";
    if (!strcmp(fmt, "pth") || !strcmp(fmt, "pt") || !strcmp(fmt, "bin")) return ".pth";
    if (!strcmp(fmt, "ckpt")) return ".ckpt";
    if (!strcmp(fmt, "npz")) return ".npz";
    return NULL;
}

/* REL without its extension (after the last '.' of the last component). */
static size_t stem_len(const char *rel)
{
    const char *slash = strrchr(rel, '/'), *dot = strrchr(rel, '.');
    if (dot && (!slash || dot > slash + 1) && dot != rel) return (size_t)(dot - rel);
    return strlen(rel);
}

/* mkdir -p of the folder part of PATH. */
static int make_parents(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n >= sizeof buf) return -1;
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i < n; i++) {
        if (buf[i] != '/') continue;
        buf[i] = 0;
        if (mkdir(buf, 0777) != 0 && errno != EEXIST) return -1;
        buf[i] = '/';
    }
    return 0;
}

/* ---- convert ----------------------------------------------------------------------- */

typedef struct conv_job {
    const cli_opts *o;
    const ck_open_opts *oo;
    const ck_convert_opts *co;
    const unsigned char *replace; /* per job: replace an older output */
    const batch *b;
} conv_job;

static int run_convert(void *user, const batch_job *j, char *reason, size_t cap)
{
    conv_job *c = user;
    cli_opts q = *c->o;
    ck_convert_opts co = *c->co;
    ck_convert_stats stats;
    ck_model *m = NULL;
    ck_ctx *ctx;
    char sz[32];
    int rc = BATCH_DONE;
    q.quiet = 1; /* warnings of parallel jobs would interleave: the summary speaks */
    ctx = cli_ctx(&q);
    if (!ctx) {
        snprintf(reason, cap, "out of memory");
        return BATCH_FAILED;
    }
    co.force = co.force || c->replace[j - c->b->v];
    batch_child_progress(ctx);
    if (ck_model_open(ctx, j->a, c->oo, &m) || ck_convert(ctx, m, j->b, &co, &stats)) {
        snprintf(reason, cap, "%s", ck_errmsg(ctx));
        rc = BATCH_FAILED;
    } else {
        snprintf(reason, cap, "%llu tensor%s, %s", (unsigned long long)stats.tensors,
                 stats.tensors == 1 ? "" : "s", cli_bytes(stats.bytes, sz, sizeof sz));
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    return rc;
}

static int by_out(const void *x, const void *y)
{
    const batch_job *a = *(const batch_job *const *)x, *b = *(const batch_job *const *)y;
    int c = strcmp(a->b, b->b);
    return c ? c : a < b ? -1 : a > b;
}

int batch_convert(char **inputs, int ninputs, const char *out_dir, const char *to, int recursive,
                  int skip_existing, int jobs, const cli_opts *o, const ck_open_opts *oo,
                  const ck_convert_opts *co)
{
    static const char *const names[4] = {"converted", "skipped", NULL, "failed"};
    batch b = {0};
    batch_files files = {0};
    unsigned char *replace = NULL;
    batch_job **order = NULL;
    const char *ext;
    conv_job cj;
    ck_convert_opts co2 = *co;
    int rc = EXIT_DONE;

    if (!to) to = "safetensors";
    ext = ext_for(to);
    if (!ext)
        return cli_usage_error("convert", "-o DIR writes safetensors, pth, ckpt or npz (--to), "
                               "not '%s'", to);
    co2.format = to;
    if (co->shard_size)
        return cli_usage_error("convert", "--shard-size cannot be combined with -o DIR");
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST)
        return cli_errorf(EXIT_BAD, "%s: cannot create the folder: %s", out_dir, strerror(errno));
    for (int i = 0; i < ninputs; i++)
        if (batch_list(inputs[i], recursive, &files)) {
            rc = EXIT_BAD;
            goto done;
        }
    for (size_t i = 0; i < files.n; i++) {
        const batch_file *f = &files.v[i];
        size_t sl = stem_len(f->rel), n = strlen(out_dir) + sl + strlen(ext) + 2;
        char *out = malloc(n);
        batch_job *j;
        if (!out) {
            rc = cli_errorf(EXIT_BAD, "out of memory");
            goto done;
        }
        snprintf(out, n, "%s/%.*s%s", out_dir, (int)sl, f->rel, ext);
        j = batch_add(&b, f->path, out);
        free(out);
        if (!j) {
            rc = cli_errorf(EXIT_BAD, "out of memory");
            goto done;
        }
    }
    replace = calloc(b.n ? b.n : 1, 1);
    order = malloc((b.n ? b.n : 1) * sizeof *order);
    if (!replace || !order) {
        rc = cli_errorf(EXIT_BAD, "out of memory");
        goto done;
    }
    /* two inputs for one output: the later one (by path) fails */
    for (size_t i = 0; i < b.n; i++) order[i] = &b.v[i];
    qsort(order, b.n, sizeof *order, by_out);
    for (size_t i = 1; i < b.n; i++) {
        if (strcmp(order[i]->b, order[i - 1]->b)) continue;
        order[i]->outcome = BATCH_FAILED;
        snprintf(order[i]->reason, sizeof order[i]->reason,
                 "%s is also the output of %s (rename one of them)", order[i]->b, order[i - 1]->a);
    }
    for (size_t i = 0; i < b.n; i++) {
        batch_job *j = &b.v[i];
        struct stat si, so;
        if (j->outcome != BATCH_PENDING) continue;
        if (stat(j->a, &si) != 0 || stat(j->b, &so) != 0) {
            if (recursive && make_parents(j->b)) {
                j->outcome = BATCH_FAILED;
                snprintf(j->reason, sizeof j->reason, "cannot create the folder of %s: %s", j->b,
                         strerror(errno));
            }
            continue;
        }
        if (si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
            j->outcome = BATCH_SKIPPED;
            snprintf(j->reason, sizeof j->reason, "the input is its own output");
        } else if (skip_existing && (so.st_mtim.tv_sec > si.st_mtim.tv_sec ||
                                     (so.st_mtim.tv_sec == si.st_mtim.tv_sec &&
                                      so.st_mtim.tv_nsec >= si.st_mtim.tv_nsec))) {
            j->outcome = BATCH_SKIPPED;
            snprintf(j->reason, sizeof j->reason, "the output is newer than the input");
        } else if (skip_existing) {
            replace[i] = 1; /* older than its input: made again */
        }
    }
    cj.o = o;
    cj.oo = oo;
    cj.co = &co2;
    cj.replace = replace;
    cj.b = &b;
    batch_run(&b, jobs, o, "converting", run_convert, &cj);
    batch_summary(&b, o, names);
    rc = batch_count(&b, BATCH_FAILED) ? EXIT_BAD : EXIT_DONE;
done:
    free(order);
    free(replace);
    batch_files_free(&files);
    batch_free(&b);
    return rc;
}

/* ---- scan --------------------------------------------------------------------------- */

typedef struct scan_note {
    size_t counts[3];
    char first[200];
} scan_note;

static void on_global(void *user, const ck_scan_item *it)
{
    scan_note *s = user;
    if ((unsigned)it->verdict < 3) s->counts[it->verdict]++;
    if (it->verdict == CK_VERDICT_DANGEROUS && !s->first[0])
        snprintf(s->first, sizeof s->first, "%s.%s at byte %llu of %s", it->module, it->name,
                 (unsigned long long)it->offset, it->where);
}

static int run_scan(void *user, const batch_job *j, char *reason, size_t cap)
{
    const cli_opts *o = user;
    cli_opts q = *o;
    scan_note s;
    ck_verdict worst = CK_VERDICT_ALLOWED;
    ck_ctx *ctx;
    ck_status st;
    int rc;
    q.quiet = 1;
    ctx = cli_ctx(&q);
    if (!ctx) {
        snprintf(reason, cap, "out of memory");
        return BATCH_FAILED;
    }
    memset(&s, 0, sizeof s);
    st = ck_scan(ctx, j->a, on_global, &s, &worst);
    if (s.counts[CK_VERDICT_DANGEROUS] || worst == CK_VERDICT_DANGEROUS) {
        /* unsafe wins, even when the rest could not be parsed (as for files) */
        snprintf(reason, cap, "%zu dangerous global%s, first %s%s%s",
                 s.counts[CK_VERDICT_DANGEROUS], s.counts[CK_VERDICT_DANGEROUS] == 1 ? "" : "s",
                 s.first, st ? "; and " : "", st ? ck_errmsg(ctx) : "");
        rc = BATCH_NEGATIVE;
    } else if (st) {
        snprintf(reason, cap, "%s", ck_errmsg(ctx));
        rc = BATCH_FAILED;
    } else {
        snprintf(reason, cap, "%zu allowed, %zu unknown globals", s.counts[CK_VERDICT_ALLOWED],
                 s.counts[CK_VERDICT_UNKNOWN]);
        rc = BATCH_DONE;
    }
    ck_ctx_free(ctx);
    return rc;
}

int batch_scan(char **inputs, int ninputs, int recursive, int jobs, const cli_opts *o)
{
    static const char *const names[4] = {"clean", NULL, "unsafe", "failed"};
    batch b = {0};
    batch_files files = {0};
    int rc;
    for (int i = 0; i < ninputs; i++) {
        if (batch_list(inputs[i], recursive, &files)) {
            batch_files_free(&files);
            return EXIT_ERROR;
        }
    }
    for (size_t i = 0; i < files.n; i++)
        if (!batch_add(&b, files.v[i].path, NULL)) {
            batch_files_free(&files);
            batch_free(&b);
            return cli_errorf(EXIT_ERROR, "out of memory");
        }
    batch_files_free(&files);
    batch_run(&b, jobs, o, "scanning", run_scan, (void *)o);
    batch_summary(&b, o, names);
    rc = batch_count(&b, BATCH_NEGATIVE) ? EXIT_DIFFER
         : batch_count(&b, BATCH_FAILED) ? EXIT_ERROR
                                         : EXIT_SAME;
    batch_free(&b);
    return rc;
}

/* ---- verify -------------------------------------------------------------------------- */

typedef struct verify_job {
    const cli_opts *o;
    const ck_open_opts *oo;
} verify_job;

static int count_diff(void *user, const ck_diff_item *it)
{
    (void)it;
    (*(size_t *)user)++;
    return 0;
}

static int run_verify(void *user, const batch_job *j, char *reason, size_t cap)
{
    verify_job *v = user;
    cli_opts q = *v->o;
    ck_model *a = NULL, *b = NULL;
    ck_ctx *ctx;
    size_t diffs = 0;
    int same = 0, rc;
    q.quiet = 1;
    ctx = cli_ctx(&q);
    if (!ctx) {
        snprintf(reason, cap, "out of memory");
        return BATCH_FAILED;
    }
    batch_child_progress(ctx);
    if (ck_model_open(ctx, j->a, v->oo, &a) || ck_model_open(ctx, j->b, v->oo, &b) ||
        ck_verify(ctx, a, b, count_diff, &diffs, &same)) {
        snprintf(reason, cap, "%s", ck_errmsg(ctx));
        rc = BATCH_FAILED;
    } else if (same) {
        snprintf(reason, cap, "%zu tensors identical", ck_model_tensor_count(a));
        rc = BATCH_DONE;
    } else {
        snprintf(reason, cap, "%zu difference%s", diffs, diffs == 1 ? "" : "s");
        rc = BATCH_NEGATIVE;
    }
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
    return rc;
}

/* Index in FB of the partner of file A (same stem; the same extension first),
 * or -1. */
static long partner(const batch_file *a, const batch_files *fb, const unsigned char *taken)
{
    size_t sa = stem_len(a->rel);
    long best = -1;
    for (size_t i = 0; i < fb->n; i++) {
        const char *r = fb->v[i].rel;
        if (taken[i] || stem_len(r) != sa || strncmp(r, a->rel, sa)) continue;
        if (!strcmp(r + sa, a->rel + sa)) return (long)i;
        if (best < 0) best = (long)i;
    }
    return best;
}

int batch_verify(const char *dir_a, const char *dir_b, int recursive, int jobs,
                 const cli_opts *o, const ck_open_opts *oo)
{
    static const char *const names[4] = {"same", NULL, "differ", "failed"};
    batch b = {0};
    batch_files fa = {0}, fb = {0};
    unsigned char *taken = NULL;
    verify_job vj = {o, oo};
    int rc = EXIT_ERROR;
    if (batch_list(dir_a, recursive, &fa) || batch_list(dir_b, recursive, &fb)) goto done;
    taken = calloc(fb.n ? fb.n : 1, 1);
    if (!taken) goto oom;
    for (size_t i = 0; i < fa.n; i++) {
        long p = partner(&fa.v[i], &fb, taken);
        batch_job *j;
        if (p >= 0) taken[p] = 1;
        j = batch_add(&b, fa.v[i].path, p >= 0 ? fb.v[p].path : NULL);
        if (!j) goto oom;
        if (p < 0) {
            j->outcome = BATCH_NEGATIVE;
            snprintf(j->reason, sizeof j->reason, "no counterpart in %s", dir_b);
        }
    }
    for (size_t i = 0; i < fb.n; i++) {
        batch_job *j;
        if (taken[i]) continue;
        j = batch_add(&b, fb.v[i].path, NULL);
        if (!j) goto oom;
        j->outcome = BATCH_NEGATIVE;
        snprintf(j->reason, sizeof j->reason, "no counterpart in %s", dir_a);
    }
    batch_run(&b, jobs, o, "verifying", run_verify, &vj);
    batch_summary(&b, o, names);
    rc = batch_count(&b, BATCH_FAILED)     ? EXIT_ERROR
         : batch_count(&b, BATCH_NEGATIVE) ? EXIT_DIFFER
                                           : EXIT_SAME;
    goto done;
oom:
    rc = cli_errorf(EXIT_ERROR, "out of memory");
done:
    free(taken);
    batch_files_free(&fa);
    batch_files_free(&fb);
    batch_free(&b);
    return rc;
}
