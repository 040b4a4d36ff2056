/*
 * fuzz_sharded_index.c -- libFuzzer target for the sharded-checkpoint reader:
 * the input is written as the index file of a scratch folder that holds two
 * real shards (model-00001-of-00002.safetensors, model-00002-of-00002.
 * safetensors, made once with ck_convert) and is opened with ck_model_open.
 * Whatever the index says, an accepted model may only have opened files of
 * that folder, holds at most the shards' three tensors under unique names,
 * and every tensor reads back whole.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "formats/model.h"

static char dir[256];
static char index_path[320];

static void cleanup(void)
{
    char p[400];
    const char *files[] = {"fuzz.index.json", "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static int setup(void)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_convert_opts o;
    char out[320];
    const char *names[3] = {"a.weight", "a.bias", "b.weight"};
    int64_t four = 4;
    int rc = -1;
    snprintf(dir, sizeof dir, "%s/ckptkit-fuzz-sharded.XXXXXX",
             getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!ctx || !mkdtemp(dir) || cki_model_new(ctx, "mem", &m)) goto out;
    for (int i = 0; i < 3; i++) {
        float *v = cki_malloc(ctx, 16);
        cki_storage *st;
        if (!v) goto out;
        for (int k = 0; k < 4; k++) v[k] = (float)(i * 4 + k);
        if (cki_model_storage_owned(m, (uint8_t *)v, 16, CK_DT_F32, &st) ||
            cki_model_add_tensor(m, "mem", names[i], strlen(names[i]), CK_DT_F32, 1, &four, NULL,
                                 0, st, 0, NULL))
            goto out;
    }
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    o.shard_size = 32;
    snprintf(out, sizeof out, "%s/model.safetensors", dir);
    snprintf(index_path, sizeof index_path, "%s/fuzz.index.json", dir);
    if (ck_convert(ctx, m, out, &o, NULL)) goto out;
    snprintf(out, sizeof out, "%s/model.safetensors.index.json", dir);
    unlink(out); /* the fuzzer's index is the only one */
    atexit(cleanup);
    rc = 0;
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t size)
{
    static int ready;
    ck_ctx *ctx;
    ck_model *m = NULL;
    FILE *f;
    size_t dl;
    if (!ready) {
        if (setup()) abort();
        ready = 1;
    }
    f = fopen(index_path, "wb");
    if (!f) abort();
    if (size && fwrite(in, 1, size, f) != size) abort();
    fclose(f);
    ctx = ck_ctx_new();
    if (!ctx) return 0;
    if (ck_model_open(ctx, index_path, NULL, &m) == CK_OK) {
        dl = strlen(dir);
        for (size_t i = 0; i < m->source_count; i++) {
            const char *p = m->sources[i]->path;
            if (strncmp(p, dir, dl) || p[dl] != '/' || strchr(p + dl + 1, '/')) abort();
        }
        if (m->count > 3) abort();
        for (size_t i = 0; i < m->count; i++) {
            float v[4];
            size_t j;
            if (ck_model_find(m, m->tensors[i].name, &j) || j != i) abort();
            if (ck_model_read(m, i, 0, 4, CK_DT_F32, v, sizeof v)) abort();
        }
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    return 0;
}
