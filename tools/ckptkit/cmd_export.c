/*
 * cmd_export.c -- `ckptkit export FILE NAME... -o OUT`: chosen tensors to
 * NumPy .npy files (numpy.load reads them) or raw little-endian bytes. One
 * name: OUT is the file; several: OUT is a folder with one file per tensor.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: ckptkit export FILE NAME... -o OUT [--format npy|raw] [--dtype D] [--force]\n"
    "                      [--key PATH] [-q]\n\n"
    "Writes the tensors NAME... of FILE as NumPy .npy files (format 1.0, readable\n"
    "by numpy.load) or as raw bytes (row-major, little-endian). With one NAME, OUT\n"
    "is the output file; with several, OUT is a folder (created if needed) holding\n"
    "NAME.npy (or NAME.bin) for each, '/' in names replaced by '_'. Outputs appear\n"
    "only when all are complete.\n\n"
    "  -o, --output OUT   output file (one NAME) or folder (several)\n"
    "  --format F         npy (default) or raw\n"
    "  --dtype D          keep | f32 | f16 | bf16 | f64 | f8_e4m3 | f8_e5m2: cast floating\n"
    "                     tensors (BF16 and F8 have no NumPy dtype: use --dtype f32 for npy)\n"
    "  --force            replace existing output files\n"
    "  --allow-expand     write more than 16 x the input's size (a broadcast view, stride 0,\n"
    "                     written dense); refused otherwise\n"
    "  --key PATH         dotted path of the state dict inside a PyTorch checkpoint\n"
    "  --manifest M       JSON manifest describing a raw .bin input\n"
    "  --format-in F      skip detection and read FILE as F\n"
    CLI_MAX_MEMORY_HELP
    CLI_ALLOW_UNSAFE_HELP
    CLI_SKIP_UNSUPPORTED_HELP
    "  -q                 no warnings, no summary line\n";

int cmd_export(int argc, char **argv)
{
    enum { O_FORMAT = 256, O_DTYPE, O_FORCE, O_KEY, O_MANIFEST, O_FORMAT_IN, O_EXPAND };
    static const struct option lopts[] = {
        {"output", required_argument, 0, 'o'},   {"format", required_argument, 0, O_FORMAT},
        {"dtype", required_argument, 0, O_DTYPE}, {"force", no_argument, 0, O_FORCE},
        {"allow-expand", no_argument, 0, O_EXPAND},
        {"key", required_argument, 0, O_KEY},     {"manifest", required_argument, 0, O_MANIFEST},
        {"format-in", required_argument, 0, O_FORMAT_IN},
        {"quiet", no_argument, 0, 'q'}, CLI_MAX_MEMORY_OPT, CLI_ALLOW_UNSAFE_OPT, CLI_SKIP_UNSUPPORTED_OPT,          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    cli_opts o = {0};
    ck_open_opts oo;
    ck_export_opts eo = {NULL, CK_DT_KEEP, 0, 0};
    ck_convert_stats stats;
    const char *out = NULL;
    ck_ctx *ctx;
    ck_model *m = NULL;
    int c, rc = EXIT_DONE;
    double t0;

    memset(&oo, 0, sizeof oo);
    oo.verify_crc = 1;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:q", lopts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_FORMAT:
            if (strcmp(optarg, "npy") && strcmp(optarg, "raw"))
                return cli_usage_error("export", "--format '%s': expected npy or raw", optarg);
            eo.format = optarg;
            break;
        case O_DTYPE:
            if (!strcmp(optarg, "keep")) {
                eo.dtype = CK_DT_KEEP;
            } else if (ck_dtype_parse(optarg, &eo.dtype) || !ck_dtype_is_float(eo.dtype) ||
                       !ck_dtype_can_cast(eo.dtype)) {
                return cli_usage_error("export", "--dtype '%s': expected keep, f32, f16, bf16, "
                                       "f64, f8_e4m3 or f8_e5m2", optarg);
            }
            break;
        case O_FORCE: eo.force = 1; break;
        case O_EXPAND: eo.allow_expand = 1; break;
        case O_KEY: oo.key = optarg; break;
        case O_MANIFEST: oo.manifest = optarg; break;
        case O_FORMAT_IN: oo.format = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'U': oo.allow_unsafe = 1; break;
        case 'S': oo.skip_unsupported = 1; break;
        case 'M':
            if (cli_opt_max_memory(&o, "export", optarg)) return EXIT_USAGE;
            break;
        case 'h': fputs(help, stdout); return EXIT_DONE;
        default: return cli_usage_error("export", "invalid option");
        }
    }
    if (argc - optind < 2) return cli_usage_error("export", "expected FILE and at least one NAME");
    if (!out) return cli_usage_error("export", "expected -o OUT");

    ctx = cli_ctx(&o);
    t0 = cli_now();
    if (ck_model_open(ctx, argv[optind], &oo, &m)) {
        rc = cli_fail(ctx, EXIT_BAD);
        goto done;
    }
    cli_progress_begin(ctx, &o, "exporting");
    if (ck_export(ctx, m, (const char *const *)(argv + optind + 1), (size_t)(argc - optind - 1),
                  out, &eo, &stats)) {
        rc = cli_fail(ctx, EXIT_BAD);
        goto done;
    }
    cli_progress_end();
    if (!o.quiet) {
        char b[32];
        fprintf(stderr, "ckptkit: wrote %s: %llu tensors, %s in %.2f s", out,
                (unsigned long long)stats.tensors, cli_bytes(stats.bytes, b, sizeof b),
                cli_now() - t0);
        if (eo.dtype != CK_DT_KEEP)
            fprintf(stderr, "; %llu cast to %s, %llu values overflowed to inf, %llu underflowed "
                    "to zero", (unsigned long long)stats.cast_tensors, ck_dtype_name(eo.dtype),
                    (unsigned long long)stats.overflow, (unsigned long long)stats.underflow);
        fputc('\n', stderr);
    }
done:
    cli_progress_end();
    ck_model_close(m);
    ck_ctx_free(ctx);
    return rc;
}
