/*
 * cmd_verify.c -- `ckptkit verify A B`: same tensor names, dtypes, shapes and
 * bytes? Exit 0 same, 1 differ (first differences listed), 2 unreadable.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <sys/stat.h>

#include "batch.h"
#include "cli.h"

static const char help[] =
    "usage: ckptkit verify A B [--json] [--max N] [--key PATH] [--no-crc] [-q]\n"
    "       ckptkit verify DIR_A DIR_B [-r] [-j N] [--key PATH] [--no-crc] [-q]\n\n"
    "Checks that A and B hold the same tensors: names, dtypes, shapes and every\n"
    "byte of every value (by value, whatever the formats and layouts). Exit status\n"
    "0 if identical, 1 if they differ (the first differences are listed), 2 if a\n"
    "file cannot be read.\n\n"
    "  --json      {\"same\": bool, \"tensors\": N, \"differences\": [...]}\n"
    "  --max N     list at most N differences (default 10)\n"
    "  --key PATH  dotted path of the state dict inside PyTorch checkpoints\n"
    "  --no-crc    do not check CRC-32 of zip members\n"
    CLI_MAX_MEMORY_HELP
    CLI_ALLOW_UNSAFE_HELP
    CLI_SKIP_UNSUPPORTED_HELP
    "  -q          print nothing; only the exit status tells\n"
    "Two folders: their checkpoint files are paired by name without extension\n"
    "(DIR_A/x.pth with DIR_B/x.safetensors), -r pairs the folders below too, -j N\n"
    "verifies N pairs at a time (default: the number of cores); one line per pair\n"
    "(same, differ, failed with the reason; a file without a partner differs),\n"
    "then the counts.\n";

typedef struct diff_out {
    const cli_opts *o;
    int shown, max, total;
} diff_out;

static const char *kind_text(ck_diff_kind k)
{
    switch (k) {
    case CK_DIFF_ONLY_A: return "only in A";
    case CK_DIFF_ONLY_B: return "only in B";
    case CK_DIFF_DTYPE: return "dtype differs";
    case CK_DIFF_SHAPE: return "shape differs";
    case CK_DIFF_VALUES: return "values differ";
    }
    return "?";
}

static int on_diff(void *user, const ck_diff_item *it)
{
    diff_out *d = user;
    d->total++;
    if (d->shown >= d->max) return 0;
    d->shown++;
    if (d->o->quiet) return 0;
    if (d->o->json) {
        printf("%s{\"name\": ", d->shown > 1 ? ", " : "");
        cli_json_str(stdout, it->name);
        printf(", \"kind\": \"%s\"", kind_text(it->kind));
        if (it->kind == CK_DIFF_VALUES)
            printf(", \"first_element\": %llu", (unsigned long long)it->first_elem);
        printf("}");
    } else if (it->kind == CK_DIFF_VALUES) {
        printf("%s: %s (first at element %llu)\n", it->name, kind_text(it->kind),
               (unsigned long long)it->first_elem);
    } else {
        printf("%s: %s\n", it->name, kind_text(it->kind));
    }
    return 0;
}

int cmd_verify(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"json", no_argument, 0, 'O'},    {"max", required_argument, 0, 'n'},
        {"key", required_argument, 0, 'k'}, {"no-crc", no_argument, 0, 'c'},
        {"quiet", no_argument, 0, 'q'}, CLI_MAX_MEMORY_OPT, CLI_ALLOW_UNSAFE_OPT, CLI_SKIP_UNSUPPORTED_OPT,   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    cli_opts o = {0};
    ck_open_opts oo;
    diff_out d = {&o, 0, 10, 0};
    ck_ctx *ctx;
    ck_model *a = NULL, *b = NULL;
    int c, same = 0, rc, recursive = 0, jobs = 0;
    struct stat sa, sb;
    memset(&oo, 0, sizeof oo);
    oo.verify_crc = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hqrj:", lopts, NULL)) != -1) {
        switch (c) {
        case 'r': recursive = 1; break;
        case 'j':
            if (cli_parse_jobs("verify", optarg, &jobs)) return EXIT_USAGE;
            break;
        case 'O': o.json = 1; break;
        case 'n': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || end == optarg || v < 0 || v > 1000000)
                return cli_usage_error("verify", "--max '%s': expected a count", optarg);
            d.max = (int)v;
            break;
        }
        case 'k': oo.key = optarg; break;
        case 'c': oo.verify_crc = 0; break;
        case 'q': o.quiet = 1; break;
        case 'U': oo.allow_unsafe = 1; break;
        case 'S': oo.skip_unsupported = 1; break;
        case 'M':
            if (cli_opt_max_memory(&o, "verify", optarg)) return EXIT_USAGE;
            break;
        case 'h': fputs(help, stdout); return EXIT_SAME;
        default: return cli_usage_error("verify", "invalid option");
        }
    }
    if (argc - optind != 2) return cli_usage_error("verify", "expected two files A and B");
    if (stat(argv[optind], &sa) == 0 && S_ISDIR(sa.st_mode) && stat(argv[optind + 1], &sb) == 0 &&
        S_ISDIR(sb.st_mode) && !batch_is_sharded(argv[optind]) &&
        !batch_is_sharded(argv[optind + 1])) {
        if (o.json) return cli_usage_error("verify", "--json goes with two files, not folders");
        return batch_verify(argv[optind], argv[optind + 1], recursive,
                            jobs ? jobs : batch_default_jobs(), &o, &oo);
    }
    if (recursive || jobs) return cli_usage_error("verify", "-r and -j go with two folders");
    ctx = cli_ctx(&o);
    if (ck_model_open(ctx, argv[optind], &oo, &a) || ck_model_open(ctx, argv[optind + 1], &oo, &b)) {
        rc = cli_fail(ctx, EXIT_ERROR);
        goto done;
    }
    cli_progress_begin(ctx, &o, "verifying");
    if (o.json) printf("{\"differences\": [");
    if (ck_verify(ctx, a, b, on_diff, &d, &same)) {
        if (o.json) printf("]}\n");
        rc = cli_fail(ctx, EXIT_ERROR);
        goto done;
    }
    cli_progress_end();
    if (o.json) {
        printf("], \"same\": %s, \"tensors_a\": %zu, \"tensors_b\": %zu, \"difference_count\": %d}\n",
               same ? "true" : "false", ck_model_tensor_count(a), ck_model_tensor_count(b),
               d.total);
    } else if (!o.quiet) {
        if (same)
            printf("same: %zu tensors, names, dtypes, shapes and bytes identical\n",
                   ck_model_tensor_count(a));
        else
            printf("differ: %d difference%s%s\n", d.total, d.total == 1 ? "" : "s",
                   d.total > d.shown ? " (first ones listed above)" : "");
    }
    rc = same ? EXIT_SAME : EXIT_DIFFER;
done:
    cli_progress_end();
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
    return rc;
}
