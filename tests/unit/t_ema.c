/*
 * t_ema.c -- Stable Diffusion EMA handling (ema.c) and its use by the plan
 * (plan.c): which tensors --ema / --no-ema drop, whose values each output
 * tensor carries, the errors (no EMA, shape mismatch, two tensors claiming
 * one twin, nothing matched), the warnings, and collisions after renaming
 * naming both input tensors.
 */
#include "convert/convert.h"
#include "t.h"
#include "t_model.h"

static const float V1[4] = {1, 2, 3, 4}, V2[4] = {5, 6, 7, 8}, V3[2] = {9, 10};

/* model.diffusion_model.in.0.weight (+ EMA twin), first_stage_model.w,
 * model.diffusion_model.out.bias (no twin), decay, num_updates. */
static ck_model *sd_model(ck_ctx *ctx)
{
    ck_model *m = NULL;
    int64_t four = 4, two = 2;
    float decay = 0.9999f;
    int64_t nup = 1234;
    CHECK(cki_model_new(ctx, "sd.ckpt", &m) == CK_OK);
    tm_add(m, "model.diffusion_model.in.0.weight", CK_DT_F32, 1, &four, V1, 16);
    tm_add(m, "first_stage_model.w", CK_DT_F32, 1, &two, V3, 8);
    tm_add(m, "model.diffusion_model.out.bias", CK_DT_F32, 1, &two, V3, 8);
    tm_add(m, "model_ema.decay", CK_DT_F32, 0, NULL, &decay, 4);
    tm_add(m, "model_ema.num_updates", CK_DT_I64, 0, NULL, &nup, 8);
    tm_add(m, "model_ema.diffusion_modelin0weight", CK_DT_F32, 1, &four, V2, 16);
    return m;
}

TEST(ema_resolve_swaps_twins_and_drops_ema_entries)
{
    ck_ctx *ctx = ck_ctx_new();
    tm_warns w = {"", 0};
    ck_model *m;
    const cki_tensor *src[6];
    ck_ctx_set_warn(ctx, tm_on_warn, &w);
    m = sd_model(ctx);
    CHECK(cki_ema_present(m));
    CHECK(cki_ema_resolve(ctx, m, 1, src) == CK_OK);
    CHECK(src[0] == &m->tensors[5]); /* model.* takes its twin's values */
    CHECK(src[1] == &m->tensors[1]); /* other prefixes untouched */
    CHECK(src[2] == &m->tensors[2]); /* no twin: its own values */
    CHECK(src[3] == NULL && src[4] == NULL && src[5] == NULL);
    CHECK(w.count == 1 && strstr(w.text, "1 of 2 'model.*' tensors have no EMA twin"));
    CHECK(strstr(w.text, "model.diffusion_model.out.bias") != NULL);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(ema_resolve_no_ema_drops_only_ema)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = sd_model(ctx);
    const cki_tensor *src[6];
    CHECK(cki_ema_resolve(ctx, m, -1, src) == CK_OK);
    for (int i = 0; i < 3; i++) CHECK(src[i] == &m->tensors[i]);
    for (int i = 3; i < 6; i++) CHECK(src[i] == NULL);
    CHECK(cki_ema_resolve(ctx, m, 0, src) == CK_OK);
    for (int i = 0; i < 6; i++) CHECK(src[i] == &m->tensors[i]);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(ema_absent_is_an_error)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    const cki_tensor *src[3];
    int64_t four = 4;
    float decay = 0.5f;
    CHECK(cki_model_new(ctx, "plain.ckpt", &m) == CK_OK);
    tm_add(m, "model.diffusion_model.a.weight", CK_DT_F32, 1, &four, V1, 16);
    tm_add(m, "model_ema.decay", CK_DT_F32, 0, NULL, &decay, 4);
    tm_add(m, "model_ema.num_updates", CK_DT_F32, 0, NULL, &decay, 4);
    CHECK(!cki_ema_present(m)); /* decay and num_updates alone are not EMA weights */
    CHECK(cki_ema_resolve(ctx, m, 1, src) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "plain.ckpt: --ema: the checkpoint holds no EMA weights"));
    CHECK(cki_ema_resolve(ctx, m, -1, src) == CK_OK); /* --no-ema on it is fine */
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(ema_errors_shape_ambiguity_nothing_matched)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    const cki_tensor *src[4];
    int64_t four = 4, two = 2;
    CHECK(cki_model_new(ctx, "s.ckpt", &m) == CK_OK);
    tm_add(m, "model.a.weight", CK_DT_F32, 1, &four, V1, 16);
    tm_add(m, "model_ema.aweight", CK_DT_F32, 1, &two, V3, 8);
    CHECK(cki_ema_resolve(ctx, m, 1, src) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "tensor 'model.a.weight' has shape [4] but its EMA twin "
                                 "'model_ema.aweight' has shape [2]"));
    ck_model_close(m);

    CHECK(cki_model_new(ctx, "s.ckpt", &m) == CK_OK);
    tm_add(m, "model.a.bc", CK_DT_F32, 1, &four, V1, 16);
    tm_add(m, "model.ab.c", CK_DT_F32, 1, &four, V2, 16);
    tm_add(m, "model_ema.abc", CK_DT_F32, 1, &four, V2, 16);
    CHECK(cki_ema_resolve(ctx, m, 1, src) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "tensors 'model.a.bc' and 'model.ab.c' both map to the EMA "
                                 "tensor 'model_ema.abc'"));
    ck_model_close(m);

    CHECK(cki_model_new(ctx, "s.ckpt", &m) == CK_OK);
    tm_add(m, "model.a.weight", CK_DT_F32, 1, &four, V1, 16);
    tm_add(m, "model_ema.zzz", CK_DT_F32, 1, &four, V2, 16);
    CHECK(cki_ema_resolve(ctx, m, 1, src) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "none of the 1 'model.*' tensors has an EMA twin"));
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(ema_unclaimed_twins_are_warned)
{
    ck_ctx *ctx = ck_ctx_new();
    tm_warns w = {"", 0};
    ck_model *m = NULL;
    const cki_tensor *src[3];
    int64_t four = 4;
    ck_ctx_set_warn(ctx, tm_on_warn, &w);
    CHECK(cki_model_new(ctx, "s.ckpt", &m) == CK_OK);
    tm_add(m, "model.a.weight", CK_DT_F32, 1, &four, V1, 16);
    tm_add(m, "model_ema.aweight", CK_DT_F16, 1, &four, V2, 8); /* other dtype: fine */
    tm_add(m, "model_ema.orphan", CK_DT_F32, 1, &four, V2, 16);
    CHECK(cki_ema_resolve(ctx, m, 1, src) == CK_OK);
    CHECK(src[0] == &m->tensors[1] && !src[1] && !src[2]);
    CHECK(w.count == 1 && strstr(w.text, "1 EMA tensors match no 'model.*' tensor"));
    CHECK(strstr(w.text, "model_ema.orphan") != NULL);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

static ck_convert_opts opts_default(void)
{
    ck_convert_opts o;
    memset(&o, 0, sizeof o);
    o.dtype = CK_DT_KEEP;
    return o;
}

TEST(plan_ema_values_and_dtype_follow_the_twin)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = sd_model(ctx);
    ck_convert_opts o = opts_default();
    cki_plan p;
    o.ema = 1;
    o.dtype = CK_DT_F16;
    CHECK(cki_plan_build(ctx, m, &o, &p) == CK_OK);
    CHECK(p.count == 3);
    CHECK(!strcmp(p.tensors[0].name, "model.diffusion_model.in.0.weight"));
    CHECK(p.tensors[0].src == &m->tensors[5]);
    CHECK(p.tensors[0].dtype == CK_DT_F16 && p.tensors[0].nbytes == 8);
    CHECK(!strcmp(p.tensors[1].name, "first_stage_model.w"));
    CHECK(!strcmp(p.tensors[2].name, "model.diffusion_model.out.bias"));
    cki_plan_free(ctx, &p);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(plan_collision_names_both_input_tensors)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_convert_opts o = opts_default();
    const char *ren[] = {"module.=", NULL};
    cki_plan p;
    CHECK(cki_model_new(ctx, "c.pt", &m) == CK_OK);
    tm_f32(m, "module.fc.weight", V1, 4);
    tm_f32(m, "fc.weight", V2, 4);
    o.rename = ren;
    CHECK(cki_plan_build(ctx, m, &o, &p) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx),
                 "c.pt: tensors 'module.fc.weight' and 'fc.weight' would both be named "
                 "'fc.weight'") != NULL);
    o.rename = NULL;
    o.strip_prefix = "module.";
    CHECK(cki_plan_build(ctx, m, &o, &p) == CK_EARG);
    CHECK(strstr(ck_errmsg(ctx), "'module.fc.weight' and 'fc.weight'") != NULL);
    o.exclude = (const char *const[]){"fc.*", NULL};
    CHECK(cki_plan_build(ctx, m, &o, &p) == CK_OK); /* selection first: no collision */
    CHECK(p.count == 1 && !strcmp(p.tensors[0].name, "fc.weight"));
    cki_plan_free(ctx, &p);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(plan_dtype_policy_ints_bools_never_cast)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_convert_opts o = opts_default();
    const char *dtex[] = {"keep.*", NULL};
    int64_t four = 4;
    int32_t iv[4] = {1, 2, 3, 4};
    uint8_t bv[4] = {0, 1, 1, 0};
    cki_plan p;
    CHECK(cki_model_new(ctx, "d.safetensors", &m) == CK_OK);
    tm_f32(m, "w", V1, 4);
    tm_f32(m, "keep.w", V1, 4);
    tm_add(m, "i", CK_DT_I32, 1, &four, iv, 16);
    tm_add(m, "b", CK_DT_BOOL, 1, &four, bv, 4);
    tm_add(m, "h", CK_DT_F16, 1, &four, iv, 8);
    o.dtype = CK_DT_BF16;
    o.dtype_exclude = dtex;
    CHECK(cki_plan_build(ctx, m, &o, &p) == CK_OK);
    CHECK(p.count == 5);
    CHECK(p.tensors[0].dtype == CK_DT_BF16);
    CHECK(p.tensors[1].dtype == CK_DT_F32);
    CHECK(p.tensors[2].dtype == CK_DT_I32 && p.tensors[3].dtype == CK_DT_BOOL);
    CHECK(p.tensors[4].dtype == CK_DT_BF16);
    cki_plan_free(ctx, &p);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(plan_prune_drops_training_counters_from_metadata)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_convert_opts o = opts_default();
    const char *meta[] = {"epoch=9", "license=mit", NULL};
    cki_plan p;
    CHECK(cki_model_new(ctx, "l.ckpt", &m) == CK_OK);
    tm_f32(m, "w", V1, 4);
    cki_model_set_meta(m, "epoch", 5, "3", 1);
    cki_model_set_meta(m, "global_step", 11, "70", 2);
    cki_model_set_meta(m, "format", 6, "pt", 2);
    CHECK(cki_plan_build(ctx, m, &o, &p) == CK_OK);
    CHECK(p.meta_count == 3);
    cki_plan_free(ctx, &p);
    o.prune = 1;
    CHECK(cki_plan_build(ctx, m, &o, &p) == CK_OK);
    CHECK(p.meta_count == 1 && !strcmp(p.meta_keys[0], "format"));
    cki_plan_free(ctx, &p);
    o.metadata = meta; /* explicit metadata still applies */
    CHECK(cki_plan_build(ctx, m, &o, &p) == CK_OK);
    CHECK(p.meta_count == 3 && !strcmp(p.meta_keys[1], "epoch") && !strcmp(p.meta_vals[1], "9"));
    cki_plan_free(ctx, &p);
    ck_model_close(m);
    ck_ctx_free(ctx);
}
