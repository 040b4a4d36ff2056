/*
 * cmd_sanitize.c -- `ckptkit sanitize IN OUT`: the whole-checkpoint rewrite
 * for a PyTorch file the scanner calls unsafe. Every dangerous reference and
 * the value that calls it are removed (each printed as "path: what -> removed
 * (dangerous)"), unknown classes follow --unknown (dict by default), the rest
 * is kept; OUT is scanned after writing and must be clean. Nothing in IN is
 * ever executed.
 * Exit: 0 OUT written and clean; 1 nothing usable remained (the root itself
 * was dangerous), IN unreadable, or OUT not clean (then it is removed);
 * 2 usage.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char help[] =
    "usage: ckptkit sanitize IN OUT [--unknown dict|drop|keep] [--force] [-q]\n\n"
    "Rewrites the PyTorch checkpoint IN (.pt/.pth/.bin/.ckpt: zip, legacy or tar)\n"
    "into OUT (.pth/.pt/.bin/.ckpt, a torch.save zip) without its dangerous parts:\n"
    "every global that would run code under Python's unpickler (os.system, eval,\n"
    "builtins.exec, ...) is removed together with the value that calls it -- a\n"
    "removed value leaves its dict (key included), list or set, and becomes None\n"
    "inside a tuple. Everything else is kept: tensors, optimizer and scheduler\n"
    "states, loops, callbacks, hyper-parameters. Each removal and rewrite is\n"
    "printed as 'path: what -> result'. OUT is scanned after writing.\n"
    "Nothing in IN is executed.\n\n"
    "  --unknown POLICY   objects of classes torch's weights-only loader refuses:\n"
    "                     dict (default: plain dicts, so OUT loads with\n"
    "                     torch.load(weights_only=True)), drop, or keep\n"
    "  --force            replace an existing OUT\n"
    CLI_MAX_MEMORY_HELP
    "  -q                 print nothing but errors\n\n"
    "Exit status: 0 OUT is written and scans clean, 1 nothing usable remained or\n"
    "IN could not be read, 2 usage error.\n";

static void ignore_item(void *user, const ck_scan_item *it)
{
    (void)user;
    (void)it;
}

int cmd_sanitize(int argc, char **argv)
{
    enum { O_UNKNOWN = 256, O_FORCE };
    static const struct option lopts[] = {
        {"unknown", required_argument, 0, O_UNKNOWN},
        {"force", no_argument, 0, O_FORCE},
        {"quiet", no_argument, 0, 'q'},
        CLI_MAX_MEMORY_OPT,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    cli_opts o = {0};
    ck_open_opts oo;
    ck_convert_opts co;
    ck_ctx *ctx;
    ck_model *m = NULL;
    ck_verdict before = CK_VERDICT_ALLOWED, after = CK_VERDICT_ALLOWED;
    const char *fmt;
    int c, rc = EXIT_BAD;

    memset(&oo, 0, sizeof oo);
    memset(&co, 0, sizeof co);
    co.dtype = CK_DT_KEEP;
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", lopts, NULL)) != -1) {
        switch (c) {
        case O_UNKNOWN:
            if (cli_parse_unknown(optarg, &co.unknown))
                return cli_usage_error("sanitize", "--unknown '%s': expected dict, drop or keep",
                                       optarg);
            break;
        case O_FORCE: co.force = 1; break;
        case 'q': o.quiet = 1; break;
        case 'M':
            if (cli_opt_max_memory(&o, "sanitize", optarg)) return EXIT_USAGE;
            break;
        case 'h': fputs(help, stdout); return EXIT_DONE;
        default: return cli_usage_error("sanitize", "invalid option");
        }
    }
    if (argc - optind != 2) return cli_usage_error("sanitize", "expected IN and OUT");
    const char *in = argv[optind], *out = argv[optind + 1];
    fmt = ck_format_for_path(out);
    if (!fmt || (strcmp(fmt, "pth") && strcmp(fmt, "ckpt")))
        return cli_usage_error("sanitize", "OUT '%s' must be a PyTorch file (.pth, .pt, .bin or "
                               ".ckpt)", out);

    /* warnings about the dangerous globals would only repeat the report */
    cli_opts quiet = o;
    quiet.quiet = 1;
    ctx = cli_ctx(&quiet);
    if (ck_scan(ctx, in, ignore_item, NULL, &before)) {
        rc = cli_fail(ctx, EXIT_BAD);
        goto done;
    }
    oo.allow_unsafe = 1;
    if (ck_model_open(ctx, in, &oo, &m)) {
        rc = cli_fail(ctx, EXIT_BAD);
        goto done;
    }
    cli_rewrites rw = {stdout, "", o.quiet, 0, 0};
    co.on_rewrite = cli_rewrite_line;
    co.rewrite_user = &rw;
    if (ck_convert(ctx, m, out, &co, NULL)) {
        rc = cli_fail(ctx, EXIT_BAD);
        goto done;
    }
    if (ck_scan(ctx, out, ignore_item, NULL, &after) || after == CK_VERDICT_DANGEROUS) {
        cli_errorf(EXIT_BAD, "%s: still unsafe after sanitizing (%s); removed", out,
                   after == CK_VERDICT_DANGEROUS ? "a dangerous global remains" : ck_errmsg(ctx));
        unlink(out);
        goto done;
    }
    if (!o.quiet)
        fprintf(stderr, "ckptkit: wrote %s: clean; %zu dangerous value(s) removed, %zu other "
                        "value(s) rewritten%s\n",
                out, rw.removed, rw.count - rw.removed,
                before == CK_VERDICT_DANGEROUS ? "" : " (IN was not unsafe)");
    rc = EXIT_DONE;
done:
    ck_model_close(m);
    ck_ctx_free(ctx);
    return rc;
}
