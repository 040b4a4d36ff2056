/*
 * cmd_diff.c -- `ckptkit diff A B`: which tensors are only in A or only in B,
 * which changed dtype or shape, and for the common ones how far the values
 * are apart (max and mean absolute difference, cosine similarity, computed
 * in double whatever the dtypes). Exit 0 same (within --rtol/--atol), 1
 * differ, 2 usage error or unreadable input.
 */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: ckptkit diff A B [--json] [--rtol R] [--atol A] [--key PATH] [--no-crc] [-q]\n\n"
    "Compares two checkpoints (any formats, sharded ones given by their index or\n"
    "folder) tensor by tensor: names only in A or only in B, dtype and shape\n"
    "changes, and for tensors of equal shape the max and mean absolute difference\n"
    "and the cosine similarity of the values, computed in double precision across\n"
    "dtypes. Tensors that differ are listed in a table, then a summary line.\n\n"
    "An element matches when a == b, when both are NaN, or when both are finite and\n"
    "|a - b| <= atol + rtol * |b|. NaN against a number and Inf against anything\n"
    "else never match; max/mean skip NaN pairs, cosine uses finite pairs only.\n"
    "Without tolerances a dtype change alone makes the files differ; with one, the\n"
    "comparison is by value.\n\n"
    "Exit status: 0 same, 1 differ, 2 usage error or unreadable file.\n\n"
    "  --json      {\"only_a\": [...], \"only_b\": [...], \"changed\": [{\"name\", \"dtype_a\",\n"
    "              \"dtype_b\", \"shape_a\", \"shape_b\", \"max_abs\", \"mean_abs\", \"cosine\",\n"
    "              \"equal\", \"mismatched\"}], \"same\": bool, ...}; numbers that are\n"
    "              not finite (or not computed) are null\n"
    "  --rtol R    relative tolerance (default 0)\n"
    "  --atol A    absolute tolerance (default 0)\n"
    "  --key PATH  dotted path of the state dict inside PyTorch checkpoints\n"
    "  --no-crc    do not check CRC-32 of zip members\n"
    CLI_MAX_MEMORY_HELP
    CLI_ALLOW_UNSAFE_HELP
    CLI_SKIP_UNSUPPORTED_HELP
    "  -q          print nothing (--json output excepted); the exit status tells\n";

typedef struct row {
    char *name;
    const char *change;
    ck_dtype da, db;
    int na, nb;
    const int64_t *sa, *sb; /* borrowed from the open models */
    int have_stats;
    double max_abs, mean_abs, cosine;
    uint64_t mismatched;
    int equal;
} row;

typedef struct rows {
    row *v;
    size_t n, cap;
    int oom;
} rows;

static const char *change_of(const ck_diff_tensor *t)
{
    int dt = t->dtype_a != t->dtype_b;
    if (t->index_b == (size_t)-1) return "only in A";
    if (t->index_a == (size_t)-1) return "only in B";
    if (!t->compared) {
        if (t->ndim_a != t->ndim_b ||
            memcmp(t->shape_a, t->shape_b, sizeof(int64_t) * (size_t)t->ndim_a) != 0)
            return dt ? "dtype, shape" : "shape";
        return "dtype, values not comparable";
    }
    if (!t->equal) return dt ? "dtype, values" : "values";
    return dt ? "dtype" : NULL;
}

static int on_tensor(void *user, const ck_diff_tensor *t)
{
    rows *r = user;
    const char *ch = change_of(t);
    row *w;
    if (!ch) return 0;
    if (r->n == r->cap) {
        size_t nc = r->cap ? r->cap * 2 : 64;
        row *nv = realloc(r->v, nc * sizeof *nv);
        if (!nv) {
            r->oom = 1;
            return 1;
        }
        r->v = nv;
        r->cap = nc;
    }
    w = &r->v[r->n];
    w->name = strdup(t->name);
    if (!w->name) {
        r->oom = 1;
        return 1;
    }
    r->n++;
    w->change = ch;
    w->da = t->dtype_a;
    w->db = t->dtype_b;
    w->na = t->ndim_a;
    w->nb = t->ndim_b;
    w->sa = t->shape_a;
    w->sb = t->shape_b;
    w->have_stats = t->have_stats;
    w->max_abs = t->max_abs;
    w->mean_abs = t->mean_abs;
    w->cosine = t->cosine;
    w->mismatched = t->mismatched;
    w->equal = t->equal;
    return 0;
}

static void shape_str(char *buf, size_t cap, int ndim, const int64_t *shape)
{
    size_t used = 0;
    if (ndim < 0) {
        snprintf(buf, cap, "-");
        return;
    }
    used += (size_t)snprintf(buf, cap, "[");
    for (int d = 0; d < ndim && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "",
                                 (long long)shape[d]);
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static const char *dtype_str(ck_dtype d)
{
    return d == CK_DT_KEEP ? "-" : ck_dtype_name(d);
}

static void json_num(double v)
{
    if (isfinite(v)) printf("%.17g", v);
    else printf("null");
}

static void num_str(char *buf, size_t cap, double v, int have, const char *fmt)
{
    if (!have) snprintf(buf, cap, "-");
    else if (isnan(v)) snprintf(buf, cap, "nan");
    else snprintf(buf, cap, fmt, v);
}

static void print_json(const rows *r, const ck_diff_result *res, const ck_diff_opts *dopts,
                       size_t ta, size_t tb)
{
    int first = 1;
    printf("{\"only_a\": [");
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->v[i].change, "only in A")) continue;
        printf("%s", first ? "" : ", ");
        cli_json_str(stdout, r->v[i].name);
        first = 0;
    }
    printf("], \"only_b\": [");
    first = 1;
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->v[i].change, "only in B")) continue;
        printf("%s", first ? "" : ", ");
        cli_json_str(stdout, r->v[i].name);
        first = 0;
    }
    printf("], \"changed\": [");
    first = 1;
    for (size_t i = 0; i < r->n; i++) {
        const row *w = &r->v[i];
        if (!strncmp(w->change, "only", 4)) continue;
        printf("%s{\"name\": ", first ? "" : ", ");
        cli_json_str(stdout, w->name);
        printf(", \"dtype_a\": \"%s\", \"dtype_b\": \"%s\", \"shape_a\": ", ck_dtype_name(w->da),
               ck_dtype_name(w->db));
        cli_json_shape(stdout, w->na, w->sa);
        printf(", \"shape_b\": ");
        cli_json_shape(stdout, w->nb, w->sb);
        printf(", \"max_abs\": ");
        json_num(w->have_stats ? w->max_abs : NAN);
        printf(", \"mean_abs\": ");
        json_num(w->have_stats ? w->mean_abs : NAN);
        printf(", \"cosine\": ");
        json_num(w->have_stats ? w->cosine : NAN);
        printf(", \"equal\": %s, \"mismatched\": %llu}", w->equal ? "true" : "false",
               (unsigned long long)w->mismatched);
        first = 0;
    }
    printf("], \"same\": %s, \"tensors_a\": %zu, \"tensors_b\": %zu, \"equal\": %llu, "
           "\"rtol\": ",
           res->same ? "true" : "false", ta, tb, (unsigned long long)res->equal);
    json_num(dopts->rtol);
    printf(", \"atol\": ");
    json_num(dopts->atol);
    printf("}\n");
}

static void print_table(const rows *r)
{
    int wn = 6, wc = 6, wda = 7, wdb = 7, wsa = 7, wsb = 7;
    char sa[256], sb[256], mx[32], mn[32], cs[32];
    if (!r->n) return;
    for (size_t i = 0; i < r->n; i++) {
        const row *w = &r->v[i];
        int l = (int)strlen(w->name);
        if (l > wn) wn = l < 60 ? l : 60;
        if ((int)strlen(w->change) > wc) wc = (int)strlen(w->change);
        if ((int)strlen(dtype_str(w->da)) > wda) wda = (int)strlen(dtype_str(w->da));
        if ((int)strlen(dtype_str(w->db)) > wdb) wdb = (int)strlen(dtype_str(w->db));
        shape_str(sa, sizeof sa, w->na, w->sa);
        shape_str(sb, sizeof sb, w->nb, w->sb);
        if ((int)strlen(sa) > wsa) wsa = (int)strlen(sa);
        if ((int)strlen(sb) > wsb) wsb = (int)strlen(sb);
    }
    printf("%-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %10s  %10s  %9s\n", wn, "TENSOR", wc, "CHANGE",
           wda, "DTYPE A", wdb, "DTYPE B", wsa, "SHAPE A", wsb, "SHAPE B", "MAX ABS",
           "MEAN ABS", "COSINE");
    for (size_t i = 0; i < r->n; i++) {
        const row *w = &r->v[i];
        shape_str(sa, sizeof sa, w->na, w->sa);
        shape_str(sb, sizeof sb, w->nb, w->sb);
        num_str(mx, sizeof mx, w->max_abs, w->have_stats, "%.4g");
        num_str(mn, sizeof mn, w->mean_abs, w->have_stats, "%.4g");
        num_str(cs, sizeof cs, w->cosine, w->have_stats, "%.6f");
        printf("%-*s  %-*s  %-*s  %-*s  %-*s  %-*s  %10s  %10s  %9s\n", wn, w->name, wc,
               w->change, wda, dtype_str(w->da), wdb, dtype_str(w->db), wsa, sa, wsb, sb, mx, mn,
               cs);
    }
}

static int parse_tol(const char *s, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || !isfinite(v) || v < 0) return 1;
    *out = v;
    return 0;
}

int cmd_diff(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"json", no_argument, 0, 'j'},      {"rtol", required_argument, 0, 'r'},
        {"atol", required_argument, 0, 'a'}, {"key", required_argument, 0, 'k'},
        {"no-crc", no_argument, 0, 'c'},    {"quiet", no_argument, 0, 'q'}, CLI_MAX_MEMORY_OPT, CLI_ALLOW_UNSAFE_OPT, CLI_SKIP_UNSUPPORTED_OPT,
        {"help", no_argument, 0, 'h'},      {0, 0, 0, 0},
    };
    cli_opts o = {0};
    ck_open_opts oo;
    ck_diff_opts dopts = {0, 0};
    ck_diff_result res;
    rows r = {NULL, 0, 0, 0};
    ck_ctx *ctx;
    ck_model *a = NULL, *b = NULL;
    int c, rc;
    double t0;

    memset(&oo, 0, sizeof oo);
    oo.verify_crc = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", lopts, NULL)) != -1) {
        switch (c) {
        case 'j': o.json = 1; break;
        case 'r':
            if (parse_tol(optarg, &dopts.rtol))
                return cli_usage_error("diff", "--rtol '%s': expected a number >= 0", optarg);
            break;
        case 'a':
            if (parse_tol(optarg, &dopts.atol))
                return cli_usage_error("diff", "--atol '%s': expected a number >= 0", optarg);
            break;
        case 'k': oo.key = optarg; break;
        case 'c': oo.verify_crc = 0; break;
        case 'q': o.quiet = 1; break;
        case 'U': oo.allow_unsafe = 1; break;
        case 'S': oo.skip_unsupported = 1; break;
        case 'M':
            if (cli_opt_max_memory(&o, "diff", optarg)) return EXIT_USAGE;
            break;
        case 'h': fputs(help, stdout); return EXIT_SAME;
        default: return cli_usage_error("diff", "invalid option");
        }
    }
    if (argc - optind != 2) return cli_usage_error("diff", "expected two checkpoints A and B");
    ctx = cli_ctx(&o);
    t0 = cli_now();
    if (ck_model_open(ctx, argv[optind], &oo, &a) ||
        ck_model_open(ctx, argv[optind + 1], &oo, &b)) {
        rc = cli_fail(ctx, EXIT_ERROR);
        goto done;
    }
    cli_progress_begin(ctx, &o, "comparing");
    if (ck_diff(ctx, a, b, &dopts, on_tensor, &r, &res)) {
        rc = cli_fail(ctx, EXIT_ERROR);
        goto done;
    }
    cli_progress_end();
    if (r.oom) {
        rc = cli_errorf(EXIT_ERROR, "out of memory");
        goto done;
    }
    if (o.json) {
        print_json(&r, &res, &dopts, ck_model_tensor_count(a), ck_model_tensor_count(b));
    } else if (!o.quiet) {
        char by[32];
        print_table(&r);
        printf("%s: %llu only in A, %llu only in B, %llu dtype changes, %llu shape changes, "
               "%llu with other values, %llu equal; %llu elements (%s) compared in %.2f s\n",
               res.same ? "same" : "differ", (unsigned long long)res.only_a,
               (unsigned long long)res.only_b, (unsigned long long)res.dtype_changed,
               (unsigned long long)res.shape_changed, (unsigned long long)res.values_differ,
               (unsigned long long)res.equal, (unsigned long long)res.elements,
               cli_bytes(res.bytes, by, sizeof by), cli_now() - t0);
    }
    rc = res.same ? EXIT_SAME : EXIT_DIFFER;
done:
    cli_progress_end();
    for (size_t i = 0; i < r.n; i++) free(r.v[i].name);
    free(r.v);
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
    return rc;
}
