/*
 * cmd_ls.c -- `ckptkit ls FILE [--json]`: one line per tensor (name, dtype,
 * shape, bytes), or {"format": ..., "tensors": [...]} with --json.
 */
#include <getopt.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: ckptkit ls FILE [--json] [--key PATH] [--all] [--manifest M] [--format F] [-q]\n\n"
    "Lists the tensors of FILE in file order: name, dtype, shape and bytes.\n\n"
    "  --json          {\"format\": ..., \"tensors\": [{\"name\", \"dtype\", \"shape\", ...}]}\n"
    "  --key PATH      dotted path of the state dict inside a PyTorch checkpoint\n"
    "  --all           every tensor of the object tree under its dotted path\n"
    "                  (e.g. optimizer_states.0.state.3.exp_avg)\n"
    "  --manifest M    JSON manifest describing a raw .bin file\n"
    "  --format F      skip detection and read FILE as F\n"
    CLI_MAX_MEMORY_HELP
    CLI_ALLOW_UNSAFE_HELP
    "  -q              no warnings\n";

int cmd_ls(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"json", no_argument, 0, 'j'},    {"key", required_argument, 0, 'k'},
        {"all", no_argument, 0, 'a'},     {"manifest", required_argument, 0, 'm'},
        {"format", required_argument, 0, 'f'}, {"help", no_argument, 0, 'h'},
        {"quiet", no_argument, 0, 'q'}, CLI_MAX_MEMORY_OPT, CLI_ALLOW_UNSAFE_OPT,   {0, 0, 0, 0},
    };
    cli_opts o = {0};
    ck_open_opts oo;
    ck_ctx *ctx;
    ck_model *m;
    int c;
    memset(&oo, 0, sizeof oo);
    optind = 1;
    while ((c = getopt_long(argc, argv, "hq", lopts, NULL)) != -1) {
        switch (c) {
        case 'j': o.json = 1; break;
        case 'k': oo.key = optarg; break;
        case 'a': oo.all = 1; break;
        case 'm': oo.manifest = optarg; break;
        case 'f': oo.format = optarg; break;
        case 'q': o.quiet = 1; break;
        case 'U': oo.allow_unsafe = 1; break;
        case 'M':
            if (cli_opt_max_memory(&o, "ls", optarg)) return EXIT_USAGE;
            break;
        case 'h': fputs(help, stdout); return EXIT_DONE;
        default: return cli_usage_error("ls", "invalid option");
        }
    }
    if (argc - optind != 1) return cli_usage_error("ls", "expected one FILE");
    ctx = cli_ctx(&o);
    if (ck_model_open(ctx, argv[optind], &oo, &m)) {
        int r = cli_fail(ctx, EXIT_BAD);
        ck_ctx_free(ctx);
        return r;
    }
    size_t n = ck_model_tensor_count(m);
    if (o.json) {
        printf("{\"format\": ");
        cli_json_str(stdout, ck_model_format(m));
        printf(", \"tensors\": [");
        for (size_t i = 0; i < n; i++) {
            ck_tensor_info ti;
            ck_model_tensor(m, i, &ti);
            printf("%s\n  {\"name\": ", i ? "," : "");
            cli_json_str(stdout, ti.name);
            printf(", \"dtype\": \"%s\", \"shape\": ", ck_dtype_name(ti.dtype));
            cli_json_shape(stdout, ti.ndim, ti.shape);
            printf(", \"nbytes\": %llu", (unsigned long long)ti.nbytes);
            if (ti.strides) {
                printf(", \"strides\": ");
                cli_json_shape(stdout, ti.ndim, ti.strides);
            }
            if (ti.storage_offset) printf(", \"storage_offset\": %llu",
                                          (unsigned long long)ti.storage_offset);
            printf(", \"storage\": %llu}", (unsigned long long)ti.storage_id);
        }
        printf("%s]}\n", n ? "\n" : "");
    } else {
        size_t w = 4;
        for (size_t i = 0; i < n; i++) {
            ck_tensor_info ti;
            ck_model_tensor(m, i, &ti);
            if (strlen(ti.name) > w) w = strlen(ti.name);
        }
        if (w > 80) w = 80;
        for (size_t i = 0; i < n; i++) {
            ck_tensor_info ti;
            ck_model_tensor(m, i, &ti);
            printf("%-*s  %-7s  ", (int)w, ti.name, ck_dtype_name(ti.dtype));
            cli_json_shape(stdout, ti.ndim, ti.shape);
            printf("  %llu\n", (unsigned long long)ti.nbytes);
        }
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    return EXIT_DONE;
}
