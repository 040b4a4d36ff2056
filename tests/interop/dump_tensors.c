/*
 * dump_tensors.c -- test helper for the interop suites: opens a checkpoint
 * with the public API and prints, one JSON object per line,
 *   {"format": F, "meta": {...}, "values": <ck_model_values_json>}
 * then for each tensor in file order
 *   {"name": N, "dtype": D, "shape": [...], "hex": "<dense bytes, kept dtype>"}
 * Warnings go to stderr as "warning: ...". Exit 1 with the error on stderr
 * when the file cannot be opened or a tensor cannot be read.
 *
 *   dump_tensors FILE [--key PATH] [--all] [--format NAME] [--verify-crc]
 *
 * Built by tests/interop/test_torch_read.py against build/libckptkit.a.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckptkit.h"

static void json_str(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void on_warn(void *user, const char *msg)
{
    (void)user;
    fprintf(stderr, "warning: %s\n", msg);
}

int main(int argc, char **argv)
{
    ck_open_opts oo;
    ck_ctx *ctx;
    ck_model *m;
    const char *file = NULL;
    memset(&oo, 0, sizeof oo);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--key") && i + 1 < argc) oo.key = argv[++i];
        else if (!strcmp(argv[i], "--format") && i + 1 < argc) oo.format = argv[++i];
        else if (!strcmp(argv[i], "--all")) oo.all = 1;
        else if (!strcmp(argv[i], "--verify-crc")) oo.verify_crc = 1;
        else file = argv[i];
    }
    if (!file) {
        fprintf(stderr, "usage: dump_tensors FILE [--key PATH] [--all] [--format F]\n");
        return 2;
    }
    ctx = ck_ctx_new();
    ck_ctx_set_warn(ctx, on_warn, NULL);
    if (ck_model_open(ctx, file, &oo, &m)) {
        fprintf(stderr, "%s\n", ck_errmsg(ctx));
        ck_ctx_free(ctx);
        return 1;
    }
    printf("{\"format\": ");
    json_str(ck_model_format(m));
    printf(", \"meta\": {");
    for (size_t i = 0; i < ck_model_meta_count(m); i++) {
        const char *k, *v;
        ck_model_meta(m, i, &k, &v);
        printf("%s", i ? ", " : "");
        json_str(k);
        printf(": ");
        json_str(v);
    }
    printf("}, \"values\": %s}\n", ck_model_values_json(m));
    for (size_t i = 0; i < ck_model_tensor_count(m); i++) {
        ck_tensor_info ti;
        unsigned char *buf;
        ck_model_tensor(m, i, &ti);
        buf = malloc(ti.nbytes ? ti.nbytes : 1);
        if (!buf || ck_model_read(m, i, 0, ti.numel, CK_DT_KEEP, buf, ti.nbytes ? ti.nbytes : 1)) {
            fprintf(stderr, "%s\n", buf ? ck_errmsg(ctx) : "out of memory");
            free(buf);
            ck_model_close(m);
            ck_ctx_free(ctx);
            return 1;
        }
        printf("{\"name\": ");
        json_str(ti.name);
        printf(", \"dtype\": \"%s\", \"shape\": [", ck_dtype_name(ti.dtype));
        for (int d = 0; d < ti.ndim; d++) printf("%s%lld", d ? ", " : "", (long long)ti.shape[d]);
        printf("], \"storage\": %llu, \"hex\": \"", (unsigned long long)ti.storage_id);
        for (uint64_t b = 0; b < ti.nbytes; b++) printf("%02x", buf[b]);
        printf("\"}\n");
        free(buf);
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    return 0;
}
