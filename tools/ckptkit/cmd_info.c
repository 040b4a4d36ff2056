/*
 * cmd_info.c -- `ckptkit info FILE [--json]`: format, tensor and parameter
 * counts, bytes, a dtype histogram, metadata and non-tensor values. Touches
 * headers only: no tensor byte is read.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: ckptkit info FILE [--json] [--key PATH] [--all] [--manifest M] [--format F] [-q]\n\n"
    "Shows what FILE holds: the detected format, tensor count, parameter count,\n"
    "bytes of tensor data, a dtype histogram, metadata and (for PyTorch files)\n"
    "the non-tensor values such as epoch and global_step. Reads headers only.\n\n"
    "  --json          machine-readable output\n"
    "  --key PATH      dotted path of the state dict inside a PyTorch checkpoint\n"
    "  --all           count every tensor of the object tree, not only the state dict\n"
    "  --manifest M    JSON manifest describing a raw .bin file\n"
    "  --format F      skip detection and read FILE as F\n"
    CLI_MAX_MEMORY_HELP
    CLI_ALLOW_UNSAFE_HELP
    CLI_SKIP_UNSUPPORTED_HELP
    "  -q              no warnings\n";

/* Text mode: short value documents in full; long ones as their top-level
 * keys, pointing at --json for the rest. */
static void print_values(const char *json)
{
    size_t len = strlen(json);
    int depth = 0, in_str = 0, first = 1, key_next = 0;
    const char *key = NULL;
    if (!strcmp(json, "null")) return;
    if (len <= 200 || json[0] != '{') {
        printf("values:      %s\n", json);
        return;
    }
    printf("values:      {");
    for (const char *p = json; *p; p++) {
        if (in_str) {
            if (*p == '\\' && p[1]) p++;
            else if (*p == '"') {
                in_str = 0;
                if (key) {
                    printf("%s%.*s", first ? "" : ", ", (int)(p - key), key);
                    first = 0;
                    key = NULL;
                }
            }
            continue;
        }
        switch (*p) {
        case '"':
            in_str = 1;
            if (depth == 1 && key_next) key = p + 1;
            key_next = 0;
            break;
        case '{': case '[': depth++; key_next = depth == 1; break;
        case '}': case ']': depth--; break;
        case ',': key_next = depth == 1; break;
        default: break;
        }
    }
    printf("} (%zu bytes of JSON: see info --json)\n", len);
}

/* Prints S with control characters escaped (\n, \t, \xNN): metadata is data,
 * never terminal commands. */
static void print_escaped(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '\n') fputs("\\n", stdout);
        else if (*p == '\t') fputs("\\t", stdout);
        else if (*p == '\\') fputs("\\\\", stdout);
        else if (*p < 0x20 || *p == 0x7f) printf("\\x%02x", *p);
        else putchar(*p);
    }
}

int cmd_info(int argc, char **argv)
{
    cli_opts o = {0};
    ck_open_opts oo;
    ck_ctx *ctx;
    ck_model *m;
    uint64_t params = 0, bytes = 0, hist[CK_DT_COUNT] = {0};
    const char *file;
    int rc = cli_parse_inspect(argc, argv, "info", help, &o, &oo, &file);
    if (rc >= 0) return rc;
    if ((rc = cli_open_one(&o, file, &oo, &ctx, &m)) >= 0) return rc;
    size_t n = ck_model_tensor_count(m);
    for (size_t i = 0; i < n; i++) {
        ck_tensor_info ti;
        ck_model_tensor(m, i, &ti);
        params += ti.numel;
        bytes += ti.nbytes;
        if (ti.dtype >= 0 && ti.dtype < CK_DT_COUNT) hist[ti.dtype]++;
    }
    if (o.json) {
        int first = 1;
        printf("{\"file\": ");
        cli_json_str(stdout, file);
        printf(", \"format\": ");
        cli_json_str(stdout, ck_model_format(m));
        printf(", \"tensors\": %zu, \"parameters\": %llu, \"bytes\": %llu, \"dtypes\": {", n,
               (unsigned long long)params, (unsigned long long)bytes);
        for (int d = 0; d < CK_DT_COUNT; d++) {
            if (!hist[d]) continue;
            printf("%s\"%s\": %llu", first ? "" : ", ", ck_dtype_name((ck_dtype)d),
                   (unsigned long long)hist[d]);
            first = 0;
        }
        printf("}, \"metadata\": {");
        for (size_t i = 0; i < ck_model_meta_count(m); i++) {
            const char *k, *v;
            ck_model_meta(m, i, &k, &v);
            printf("%s", i ? ", " : "");
            cli_json_str(stdout, k);
            printf(": ");
            cli_json_str(stdout, v);
        }
        printf("}, \"values\": %s", ck_model_values_json(m));
        if (ck_model_omitted_count(m))
            printf(", \"left_out\": %zu", ck_model_omitted_count(m));
        cli_print_rewrites(ctx, m, 1);
        printf("}\n");
    } else {
        char b[32];
        int first = 1;
        printf("file:        %s\n", file);
        printf("format:      %s\n", ck_model_format(m));
        printf("tensors:     %zu\n", n);
        printf("parameters:  %llu\n", (unsigned long long)params);
        printf("bytes:       %llu (%s)\n", (unsigned long long)bytes, cli_bytes(bytes, b, sizeof b));
        printf("dtypes:      ");
        for (int d = 0; d < CK_DT_COUNT; d++) {
            if (!hist[d]) continue;
            printf("%s%s x %llu", first ? "" : ", ", ck_dtype_name((ck_dtype)d),
                   (unsigned long long)hist[d]);
            first = 0;
        }
        printf("%s\n", first ? "(none)" : "");
        if (ck_model_omitted_count(m))
            printf("left out:    %zu (see the warnings)\n", ck_model_omitted_count(m));
        if (ck_model_meta_count(m)) {
            printf("metadata:\n");
            for (size_t i = 0; i < ck_model_meta_count(m); i++) {
                const char *k, *v;
                ck_model_meta(m, i, &k, &v);
                printf("  ");
                print_escaped(k);
                printf(": ");
                print_escaped(v);
                printf("\n");
            }
        }
        print_values(ck_model_values_json(m));
        cli_print_rewrites(ctx, m, 0);
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    return EXIT_DONE;
}
