/*
 * plan.c -- from an opened model and the convert options to the list of
 * output tensors, in this order:
 *  1. EMA (--ema / --no-ema, ema.c): which input tensors are dropped and whose
 *     values each kept tensor is written with;
 *  2. selection (--include/--exclude globs on the input names);
 *  3. renaming (--strip-prefix, --rename OLD=NEW prefixes -- the first match
 *     wins --, --add-prefix, in that order);
 *  4. the dtype policy: only floating tensors are cast (ints, bools and
 *     complex never), --dtype-exclude globs (input names) keep chosen ones;
 *  5. the metadata to carry: input metadata (with --prune, minus Lightning's
 *     training counters epoch, global_step, pytorch-lightning_version), then
 *     --metadata KEY=VALUE overrides.
 * Two tensors that end up with one name are an error naming both.
 */
#include <stdio.h>

#include "convert.h"

static int any_glob(const char *const *globs, const char *name)
{
    for (size_t i = 0; globs && globs[i]; i++)
        if (cki_glob_match(globs[i], name)) return 1;
    return 0;
}

/* Lightning training counters the readers expose as metadata; --prune drops them. */
static int is_training_state(const char *key)
{
    static const char *const keys[] = {"epoch", "global_step", "pytorch-lightning_version",
                                       "legacy_pytorch-lightning_version"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!strcmp(key, keys[i])) return 1;
    return 0;
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Applies the renaming options to NAME; result in the plan's arena. */
static const char *rename_one(cki_plan *plan, const ck_convert_opts *o, const char *name)
{
    const char *n = name;
    char *out;
    size_t len;
    if (o->strip_prefix && *o->strip_prefix && starts_with(n, o->strip_prefix))
        n += strlen(o->strip_prefix);
    for (size_t i = 0; o->rename && o->rename[i]; i++) {
        const char *eq = strchr(o->rename[i], '=');
        size_t ol = (size_t)(eq - o->rename[i]);
        if (strncmp(n, o->rename[i], ol) == 0) {
            const char *rest = n + ol;
            const char *nw = eq + 1;
            len = strlen(nw) + strlen(rest);
            out = cki_arena_alloc(&plan->arena, len + 1);
            if (!out) return NULL;
            memcpy(out, nw, strlen(nw));
            memcpy(out + strlen(nw), rest, strlen(rest) + 1);
            n = out;
            break; /* first matching rule wins */
        }
    }
    if (o->add_prefix && *o->add_prefix) {
        len = strlen(o->add_prefix) + strlen(n);
        out = cki_arena_alloc(&plan->arena, len + 1);
        if (!out) return NULL;
        memcpy(out, o->add_prefix, strlen(o->add_prefix));
        memcpy(out + strlen(o->add_prefix), n, strlen(n) + 1);
        n = out;
    }
    return n;
}

static ck_status add_meta(ck_ctx *ctx, cki_plan *plan, size_t *cap, const char *k, size_t kl,
                          const char *v)
{
    char *key;
    for (size_t i = 0; i < plan->meta_count; i++) {
        if (strlen(plan->meta_keys[i]) == kl && memcmp(plan->meta_keys[i], k, kl) == 0) {
            plan->meta_vals[i] = v;
            return CK_OK;
        }
    }
    if (plan->meta_count == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        const char **nk = cki_realloc(ctx, plan->meta_keys, nc * sizeof *nk);
        if (!nk) return CK_ENOMEM;
        plan->meta_keys = nk;
        const char **nv = cki_realloc(ctx, plan->meta_vals, nc * sizeof *nv);
        if (!nv) return CK_ENOMEM;
        plan->meta_vals = nv;
        *cap = nc;
    }
    key = cki_arena_strndup(&plan->arena, k, kl);
    if (!key) return CK_ENOMEM;
    plan->meta_keys[plan->meta_count] = key;
    plan->meta_vals[plan->meta_count] = v;
    plan->meta_count++;
    return CK_OK;
}

ck_status cki_plan_build(ck_ctx *ctx, ck_model *in, const ck_convert_opts *o, cki_plan *plan)
{
    return cki_plan_build_for(ctx, in, o, 0, plan);
}

ck_status cki_plan_build_for(ck_ctx *ctx, ck_model *in, const ck_convert_opts *o, unsigned caps,
                             cki_plan *plan)
{
    cki_rules rules;
    int blocks = 0; /* ggml block types involved: quant_policy.c decides dtypes */
    cki_map seen;
    const cki_tensor **values = NULL; /* per input tensor: its value source, NULL: dropped */
    const char **in_names = NULL;     /* per output tensor: its input name, for messages */
    size_t meta_cap = 0;
    ck_status st = CK_OK;
    memset(plan, 0, sizeof *plan);
    memset(&rules, 0, sizeof rules);
    cki_arena_init(&plan->arena, ctx);
    cki_map_init(&seen, ctx);
    if (ck_dtype_is_quantized(o->dtype) && !(caps & CKI_CAP_QUANT)) {
        st = cki_fail(ctx, CK_EARG, "--dtype %s: ggml block types are written to GGUF only",
                      ck_dtype_name(o->dtype));
        goto out;
    }
    if (ck_dtype_is_quantized(o->dtype) && !ck_dtype_can_quantize(o->dtype)) {
        st = cki_fail(ctx, CK_EUNSUPPORTED, "ckptkit cannot quantise to %s",
                      ck_dtype_name(o->dtype));
        goto out;
    }
    if ((st = cki_rules_compile(ctx, o->tensor_type, &rules))) goto out;
    blocks = ck_dtype_is_quantized(o->dtype) || rules.count;
    for (size_t i = 0; i < in->count && !blocks; i++)
        blocks = ck_dtype_is_quantized(in->tensors[i].dtype);
    if (o->dtype != CK_DT_KEEP && !ck_dtype_is_quantized(o->dtype) &&
        (!ck_dtype_is_float(o->dtype) || !ck_dtype_can_cast(o->dtype))) {
        st = cki_fail(ctx, CK_EARG, "cannot cast to %s", ck_dtype_name(o->dtype));
        goto out;
    }
    if (o->dtype == CK_DT_F8_E8M0) {
        /* exponent-only: signs and zeros would vanish without being counted */
        st = cki_fail(ctx, CK_EARG, "cannot cast to F8_E8M0: it has no sign and no zero, so "
                                    "values would change silently");
        goto out;
    }
    for (size_t i = 0; o->rename && o->rename[i]; i++) {
        if (!strchr(o->rename[i], '=')) {
            st = cki_fail(ctx, CK_EARG, "--rename '%s': expected OLD=NEW", o->rename[i]);
            goto out;
        }
    }
    plan->tensors = cki_calloc(ctx, in->count ? in->count : 1, sizeof *plan->tensors);
    values = cki_calloc(ctx, in->count ? in->count : 1, sizeof *values);
    in_names = cki_calloc(ctx, in->count ? in->count : 1, sizeof *in_names);
    if (!plan->tensors || !values || !in_names) { st = CK_ENOMEM; goto out; }
    if ((st = cki_ema_resolve(ctx, in, o->ema, values))) goto out;
    for (size_t i = 0; i < in->skipped_count; i++) {
        const char *n = in->skipped_names[i];
        if (o->include && o->include[0] && !any_glob(o->include, n)) continue;
        if (any_glob(o->exclude, n)) continue;
        st = cki_fail(ctx, CK_EUNSUPPORTED,
                      "%s: tensor '%s' is %s, which ckptkit cannot convert; leave it out with "
                      "--exclude '%s'",
                      in->path, n, in->skipped_why[i], n);
        goto out;
    }
    for (size_t i = 0; i < in->count; i++) {
        const cki_tensor *t = &in->tensors[i], *v = values[i];
        cki_out_tensor *ot;
        const char *name;
        size_t prev;
        int r;
        if (!v) continue; /* dropped by --ema / --no-ema */
        if (o->include && o->include[0] && !any_glob(o->include, t->name)) continue;
        if (any_glob(o->exclude, t->name)) continue;
        name = rename_one(plan, o, t->name);
        if (!name) { st = CK_ENOMEM; goto out; }
        if (!*name) {
            st = cki_fail(ctx, CK_EARG, "%s: tensor '%s' would get an empty name", in->path,
                          t->name);
            goto out;
        }
        r = cki_map_put(&seen, name, strlen(name), plan->count, &prev);
        if (r < 0) { st = CK_ENOMEM; goto out; }
        if (r == 1) {
            st = cki_fail(ctx, CK_EARG, "%s: tensors '%s' and '%s' would both be named '%s'",
                          in->path, in_names[prev], t->name, name);
            goto out;
        }
        in_names[plan->count] = t->name;
        ot = &plan->tensors[plan->count++];
        ot->name = name;
        ot->src = v;
        ot->in_index = i;
        ot->dtype = v->dtype;
        if (blocks) {
            if ((st = cki_quant_choose(ctx, in, o, caps, &rules, t->name, v, &ot->dtype)))
                goto out;
        } else if (o->dtype != CK_DT_KEEP && ck_dtype_is_float(v->dtype) &&
                   v->dtype != o->dtype && !any_glob(o->dtype_exclude, t->name)) {
            /* only floating tensors are cast: ints, bools and complex keep their dtype */
            if (!ck_dtype_can_cast(v->dtype)) {
                st = cki_fail(ctx, CK_EUNSUPPORTED, "%s: tensor '%s': cannot cast %s to %s",
                              in->path, t->name, ck_dtype_name(v->dtype),
                              ck_dtype_name(o->dtype));
                goto out;
            }
            ot->dtype = o->dtype;
        }
        if (cki_dtype_nbytes(ot->dtype, v->numel, &ot->nbytes)) {
            st = cki_fail(ctx, CK_EFORMAT, "%s: tensor '%s': size overflows", in->path, t->name);
            goto out;
        }
    }
    for (size_t i = 0; i < in->meta_count; i++) {
        if (o->prune && is_training_state(in->meta_keys[i])) continue;
        /* typed arrays (GGUF) are summaries as strings: only a typed writer carries them */
        if (!(caps & CKI_CAP_TYPED_META) && in->meta_type && in->meta_type(in, i) &&
            !strncmp(in->meta_type(in, i), "ARRAY", 5))
            continue;
        if ((st = add_meta(ctx, plan, &meta_cap, in->meta_keys[i], strlen(in->meta_keys[i]),
                           in->meta_vals[i])))
            goto out;
    }
    for (size_t i = 0; o->metadata && o->metadata[i]; i++) {
        const char *kv = o->metadata[i], *eq = strchr(kv, '=');
        if (!eq || eq == kv) {
            st = cki_fail(ctx, CK_EARG, "--metadata '%s': expected KEY=VALUE", kv);
            goto out;
        }
        if ((st = add_meta(ctx, plan, &meta_cap, kv, (size_t)(eq - kv), eq + 1))) goto out;
    }
out:
    cki_rules_free(ctx, &rules);
    cki_map_free(&seen);
    cki_free(ctx, values);
    cki_free(ctx, in_names);
    if (st) cki_plan_free(ctx, plan);
    return st;
}

void cki_plan_free(ck_ctx *ctx, cki_plan *plan)
{
    cki_free(ctx, plan->tensors);
    cki_free(ctx, plan->meta_keys);
    cki_free(ctx, plan->meta_vals);
    cki_arena_free(&plan->arena);
    memset(plan, 0, sizeof *plan);
}
