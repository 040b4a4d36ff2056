/*
 * t_memory_model.c -- models built in memory (ck_model_new, ck_model_add,
 * ck_model_set_meta), checkpoints opened from memory (ck_model_open_memory),
 * the value tree (ck_open_opts.values, ck_model_values) and the copy-on-write
 * mapping (ck_open_opts.map_writable): the calls the Python package is built on.
 */
#include <stdlib.h>
#include <string.h>

#include "ckptkit.h"
#include "t.h"
#include "t_fs.h"

static const ck_value *dict_get(const ck_value *d, const char *key)
{
    if (!d || d->kind != CK_VALUE_DICT) return NULL;
    for (uint32_t i = 0; i < d->count; i++) {
        const ck_value *k = d->items[2 * i];
        if (k && k->kind == CK_VALUE_STR && !strcmp(k->s, key)) return d->items[2 * i + 1];
    }
    return NULL;
}

TEST(memory_model_write_and_read_back)
{
    char dir[512], st[600], pth[600];
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t n[3] = {7, 8, 9};
    int64_t sw[2] = {2, 3}, sn[1] = {3};
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL, *r = NULL;
    ck_convert_opts o;
    ck_open_opts oo;
    ck_tensor_info ti;
    size_t idx;
    float back[6];

    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(st, sizeof st, dir, "m.safetensors");
    tfs_join(pth, sizeof pth, dir, "m.pth");
    CHECK(ck_model_new(ctx, "mem", &m) == CK_OK);
    CHECK(ck_model_add(m, "w", CK_DT_F32, 2, sw, w, sizeof w) == CK_OK);
    CHECK(ck_model_add(m, "tied", CK_DT_F32, 2, sw, w, sizeof w) == CK_OK);
    CHECK(ck_model_add(m, "n", CK_DT_I64, 1, sn, n, sizeof n) == CK_OK);
    /* wrong length, repeated name, negative size */
    CHECK(ck_model_add(m, "bad", CK_DT_F32, 2, sw, w, 20) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "'bad'") != NULL);
    CHECK(ck_model_add(m, "w", CK_DT_F32, 2, sw, w, sizeof w) == CK_EARG);
    sn[0] = -1;
    CHECK(ck_model_add(m, "neg", CK_DT_I64, 1, sn, n, 0) == CK_EARG);
    CHECK(ck_model_set_meta(m, "k", "v") == CK_OK);
    CHECK(ck_model_tensor_count(m) == 3);

    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    CHECK(ck_convert(ctx, m, st, &o, NULL) == CK_OK);
    CHECK(ck_convert(ctx, m, pth, &o, NULL) == CK_OK);

    CHECK(ck_model_open(ctx, st, NULL, &r) == CK_OK);
    if (r) {
        CHECK(ck_model_find(r, "w", &idx) == CK_OK);
        CHECK(ck_model_read(r, idx, 0, 6, CK_DT_KEEP, back, sizeof back) == CK_OK);
        CHECK(memcmp(back, w, sizeof w) == 0);
        CHECK(ck_model_meta_get(r, "k") && !strcmp(ck_model_meta_get(r, "k"), "v"));
        CHECK(ck_model_values(r) == NULL); /* safetensors holds no pickled values */
        ck_model_close(r);
        r = NULL;
    }

    /* the .pth: tied tensors share one storage; the value tree points at them */
    memset(&oo, 0, sizeof oo);
    oo.values = 1;
    CHECK(ck_model_open(ctx, pth, &oo, &r) == CK_OK);
    if (r) {
        const ck_value *root = ck_model_values(r), *vw, *vt;
        ck_tensor_info a, b;
        CHECK(root && root->kind == CK_VALUE_DICT);
        vw = dict_get(root, "w");
        vt = dict_get(root, "tied");
        CHECK(vw && vw->kind == CK_VALUE_TENSOR && vw->tensor != (size_t)-1);
        CHECK(vt && vt->kind == CK_VALUE_TENSOR && vt->tensor != (size_t)-1);
        if (vw && vt && vw->tensor != (size_t)-1 && vt->tensor != (size_t)-1) {
            CHECK(ck_model_tensor(r, vw->tensor, &a) == CK_OK);
            CHECK(ck_model_tensor(r, vt->tensor, &b) == CK_OK);
            CHECK(a.storage_id && a.storage_id == b.storage_id);
            CHECK(!strcmp(a.name, "w") && a.ndim == 2 && a.shape[1] == 3);
        }
        ck_model_close(r);
        r = NULL;
    }

    /* the same file from memory */
    {
        size_t len = 0;
        unsigned char *bytes = tfs_read(pth, &len);
        CHECK(bytes != NULL);
        if (bytes) {
            CHECK(ck_model_open_memory(ctx, "<bytes>", bytes, len, &oo, &r) == CK_OK);
            if (r) {
                CHECK(ck_model_tensor_count(r) == 3);
                CHECK(ck_model_find(r, "n", &idx) == CK_OK);
                CHECK(ck_model_tensor(r, idx, &ti) == CK_OK && ti.dtype == CK_DT_I64);
                CHECK(ck_model_values(r) && ck_model_values(r)->kind == CK_VALUE_DICT);
                ck_model_close(r);
                r = NULL;
            }
            CHECK(ck_model_open_memory(ctx, "<junk>", "abc", 3, NULL, &r) == CK_EFORMAT);
            CHECK(strstr(ck_errmsg(ctx), "<junk>") != NULL);
            free(bytes);
        }
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    tfs_rmtree(dir);
}

TEST(memory_model_writable_mapping_never_reaches_the_file)
{
    char dir[512], st[600];
    float w[4] = {1, 2, 3, 4};
    int64_t s[1] = {4};
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL, *r = NULL;
    ck_convert_opts o;
    ck_open_opts oo;
    unsigned char *before, *after;
    size_t nb = 0, na = 0;

    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(st, sizeof st, dir, "w.safetensors");
    CHECK(ck_model_new(ctx, "mem", &m) == CK_OK);
    CHECK(ck_model_add(m, "w", CK_DT_F32, 1, s, w, sizeof w) == CK_OK);
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    CHECK(ck_convert(ctx, m, st, &o, NULL) == CK_OK);
    before = tfs_read(st, &nb);
    memset(&oo, 0, sizeof oo);
    oo.map_writable = 1;
    CHECK(ck_model_open(ctx, st, &oo, &r) == CK_OK);
    if (r) {
        float *p = (float *)ck_model_data(r, 0);
        CHECK(p != NULL);
        if (p) {
            p[0] = 42; /* copy-on-write: this process only */
            CHECK(((const float *)ck_model_data(r, 0))[0] == 42);
        }
        ck_model_close(r);
    }
    after = tfs_read(st, &na);
    CHECK(before && after && nb == na && memcmp(before, after, nb) == 0);
    free(before);
    free(after);
    ck_model_close(m);
    ck_ctx_free(ctx);
    tfs_rmtree(dir);
}
