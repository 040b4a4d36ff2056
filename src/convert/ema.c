/*
 * ema.c -- Stable Diffusion (CompVis/ldm LitEma) EMA weights for convert
 * --ema / --no-ema.
 *
 * Layout of an SD checkpoint's state dict (FORMATS.md 4.4):
 *   model.<rest>                the live weights (UNet under model.diffusion_model.)
 *   model_ema.decay             0-d float, the EMA decay
 *   model_ema.num_updates       0-d int, updates applied so far
 *   model_ema.<rest, no dots>   one buffer per trainable parameter of `model`, named by
 *                               the parameter's name below `model.` with every '.' removed:
 *                               model.diffusion_model.input_blocks.0.0.weight
 *                               -> model_ema.diffusion_modelinput_blocks00weight
 *
 * Rules enforced here (and documented in ckptkit.h):
 *  - EMA weights are present when at least one tensor is named "model_ema.*" other than
 *    model_ema.decay and model_ema.num_updates. (diffusers counts "> 100 model_ema keys";
 *    that is a heuristic for full SD files, ours also works for small and partial ones.)
 *  - --ema: every "model.<rest>" tensor whose twin exists takes the twin's values under its
 *    own name; the twin must have the same shape (a different dtype is fine: the values
 *    are the twin's). "model.*" tensors without a twin keep their own values (warned: in
 *    LitEma only trainable parameters have twins). Two "model.*" names whose twins are
 *    the same tensor (possible since removing dots is not one-to-one) are an error, and
 *    so is --ema on a file without EMA weights or where no "model.*" tensor has a twin.
 *    Every "model_ema.*" tensor is dropped, decay and num_updates included; twins that
 *    no "model.*" tensor claims are reported in a warning.
 *  - --no-ema: every "model_ema.*" tensor is dropped; nothing else changes.
 *
 * The result is a per-input-tensor table of value sources that plan.c follows; the model
 * itself is not modified, so the same model can be converted several ways.
 */
#include <stdio.h>

#include "convert.h"

#define EMA_PREFIX "model_ema."
#define MODEL_PREFIX "model."

static int has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

static int is_ema_bookkeeping(const char *name)
{
    return strcmp(name, EMA_PREFIX "decay") == 0 || strcmp(name, EMA_PREFIX "num_updates") == 0;
}

int cki_ema_present(const ck_model *m)
{
    for (size_t i = 0; i < m->count; i++) {
        const char *n = m->tensors[i].name;
        if (has_prefix(n, EMA_PREFIX) && !is_ema_bookkeeping(n)) return 1;
    }
    return 0;
}

/* Appends "[d0, d1]" for messages. */
static void shape_text(char *buf, size_t cap, const cki_tensor *t)
{
    size_t used = 0;
    int n = snprintf(buf, cap, "[");
    if (n > 0) used = (size_t)n;
    for (int d = 0; d < t->ndim && used < cap; d++) {
        n = snprintf(buf + used, cap - used, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
        if (n > 0) used += (size_t)n;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static int same_shape(const cki_tensor *a, const cki_tensor *b)
{
    if (a->ndim != b->ndim) return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d]) return 0;
    return 1;
}

ck_status cki_ema_resolve(ck_ctx *ctx, const ck_model *in, int mode, const cki_tensor **src)
{
    size_t *claimed = NULL; /* per input tensor: 1 + index of the model tensor using it, or 0 */
    size_t model_count = 0, swapped = 0, own = 0, unclaimed = 0;
    const char *first_own = NULL, *first_unclaimed = NULL;
    char *twin = NULL;
    size_t longest = 0;
    ck_status st = CK_OK;

    for (size_t i = 0; i < in->count; i++) src[i] = &in->tensors[i];
    if (mode == 0) return CK_OK;
    for (size_t i = 0; i < in->count; i++)
        if (has_prefix(in->tensors[i].name, EMA_PREFIX)) src[i] = NULL;
    if (mode < 0) return CK_OK;

    if (!cki_ema_present(in))
        return cki_fail(ctx, CK_EARG,
                        "%s: --ema: the checkpoint holds no EMA weights (no 'model_ema.*' tensor "
                        "besides model_ema.decay and model_ema.num_updates)",
                        in->path);
    for (size_t i = 0; i < in->count; i++) {
        size_t l = strlen(in->tensors[i].name);
        if (l > longest) longest = l;
    }
    claimed = cki_calloc(ctx, in->count, sizeof *claimed);
    twin = cki_malloc(ctx, longest + sizeof EMA_PREFIX); /* no twin name is longer */
    if (!claimed || !twin) {
        st = CK_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < in->count; i++) {
        const cki_tensor *t = &in->tensors[i];
        const char *rest;
        size_t rl, k = 0, j;
        if (!has_prefix(t->name, MODEL_PREFIX)) continue;
        model_count++;
        rest = t->name + strlen(MODEL_PREFIX);
        rl = strlen(rest);
        memcpy(twin, EMA_PREFIX, strlen(EMA_PREFIX));
        k = strlen(EMA_PREFIX);
        for (size_t c = 0; c < rl; c++)
            if (rest[c] != '.') twin[k++] = rest[c];
        twin[k] = 0;
        if (cki_map_get(&in->names, twin, k, &j) || is_ema_bookkeeping(twin)) {
            own++;
            if (!first_own) first_own = t->name;
            continue;
        }
        if (claimed[j]) {
            st = cki_fail(ctx, CK_EFORMAT,
                          "%s: --ema: tensors '%s' and '%s' both map to the EMA tensor '%s' "
                          "(names differ only in dots)",
                          in->path, in->tensors[claimed[j] - 1].name, t->name, twin);
            goto out;
        }
        if (!same_shape(t, &in->tensors[j])) {
            char sa[128], sb[128];
            shape_text(sa, sizeof sa, t);
            shape_text(sb, sizeof sb, &in->tensors[j]);
            st = cki_fail(ctx, CK_EFORMAT,
                          "%s: --ema: tensor '%s' has shape %s but its EMA twin '%s' has shape %s",
                          in->path, t->name, sa, twin, sb);
            goto out;
        }
        claimed[j] = i + 1;
        src[i] = &in->tensors[j];
        swapped++;
    }
    if (!swapped) {
        st = cki_fail(ctx, CK_EARG,
                      "%s: --ema: none of the %zu 'model.*' tensors has an EMA twin "
                      "('model_ema.' + the rest of the name without dots)",
                      in->path, model_count);
        goto out;
    }
    for (size_t i = 0; i < in->count; i++) {
        const char *n = in->tensors[i].name;
        if (!has_prefix(n, EMA_PREFIX) || is_ema_bookkeeping(n) || claimed[i]) continue;
        unclaimed++;
        if (!first_unclaimed) first_unclaimed = n;
    }
    if (own)
        cki_warn(ctx,
                 "%s: --ema: %zu of %zu 'model.*' tensors have no EMA twin and keep their own "
                 "values (first: '%s')",
                 in->path, own, model_count, first_own);
    if (unclaimed)
        cki_warn(ctx, "%s: --ema: %zu EMA tensors match no 'model.*' tensor and are dropped "
                      "(first: '%s')",
                 in->path, unclaimed, first_unclaimed);
out:
    cki_free(ctx, twin);
    cki_free(ctx, claimed);
    return st;
}
