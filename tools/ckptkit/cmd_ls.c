/*
 * cmd_ls.c -- `ckptkit ls FILE [--json]`: one line per tensor (name, dtype,
 * shape, bytes), or {"format": ..., "tensors": [...]} with --json.
 */
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: ckptkit ls FILE [--json] [--key PATH] [--all] [--manifest M] [--format F] [-q]\n\n"
    "Lists the tensors of FILE in file order: name, dtype, shape and bytes.\n\n"
    "  --json          {\"format\": ..., \"tensors\": [{\"name\", \"dtype\", \"shape\", ...}]}\n"
    "  --key PATH      dotted path of the state dict inside a PyTorch checkpoint\n"
    "  --all           every tensor of the object tree under its dotted path, then (PyTorch)\n"
    "                  the values 'convert --unknown=dict' would rewrite\n"
    "                  (e.g. optimizer_states.0.state.3.exp_avg)\n"
    "  --manifest M    JSON manifest describing a raw .bin file\n"
    "  --format F      skip detection and read FILE as F\n"
    CLI_MAX_MEMORY_HELP
    CLI_ALLOW_UNSAFE_HELP
    CLI_SKIP_UNSUPPORTED_HELP
    "  -q              no warnings\n";

int cmd_ls(int argc, char **argv)
{
    cli_opts o = {0};
    ck_open_opts oo;
    ck_ctx *ctx;
    ck_model *m;
    const char *file;
    int rc = cli_parse_inspect(argc, argv, "ls", help, &o, &oo, &file);
    if (rc >= 0) return rc;
    if ((rc = cli_open_one(&o, file, &oo, &ctx, &m)) >= 0) return rc;
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
        printf("%s]", n ? "\n" : "");
        if (oo.all) cli_print_rewrites(ctx, m, 1);
        printf("}\n");
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
        if (oo.all) cli_print_rewrites(ctx, m, 0);
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    return EXIT_DONE;
}
