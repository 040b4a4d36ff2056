/*
 * quant_policy.c -- which output dtype each tensor gets when ggml's block
 * types are involved (GGUF output, GGUF input), in this order:
 *
 *  1. --tensor-type REGEX=TYPE rules (POSIX extended regex, searched in the
 *     input name): the first match gives the type;
 *  2. --dtype-exclude GLOB: the tensor keeps its dtype;
 *  3. a quantised input tensor keeps its type where the output can hold it
 *     (GGUF, --dtype keep or a quantised --dtype: no requantisation), is
 *     dequantised to --dtype when that is a float type, and to F32 otherwise;
 *  4. a quantised --dtype applies to floating tensors with at least two
 *     dimensions whose name does not end in "bias" or ".scale" and does not
 *     contain "norm"; 1-D tensors, biases, scales and norms keep their float
 *     type (as llama-quantize, convert_hf_to_gguf and sd.cpp do); ints and
 *     bools never change;
 *  5. a quantised type whose block does not divide the last dimension falls
 *     back as llama-quantize does: Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0;
 *     Q5_K -> Q5_1; Q6_K -> Q8_0; IQ types -> IQ4_NL; a 32-element type that
 *     still does not fit -> F16.
 */
#include <regex.h>
#include <stdio.h>

#include "../tensor/ggml_codec.h"
#include "convert.h"

static int any_glob(const char *const *globs, const char *name)
{
    for (size_t i = 0; globs && globs[i]; i++)
        if (cki_glob_match(globs[i], name)) return 1;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int cki_quant_policy_keeps(const char *name, int ndim)
{
    return ndim < 2 || ends_with(name, "bias") || ends_with(name, ".scale") ||
           strstr(name, "norm") != NULL;
}

ck_dtype cki_quant_fallback(ck_dtype dt)
{
    switch (dt) {
    case CK_DT_Q2_K: case CK_DT_Q3_K: return CK_DT_Q4_0;
    case CK_DT_Q4_K: return CK_DT_Q5_0;
    case CK_DT_Q5_K: return CK_DT_Q5_1;
    case CK_DT_Q6_K: return CK_DT_Q8_0;
    case CK_DT_IQ2_XXS: case CK_DT_IQ2_XS: case CK_DT_IQ2_S: case CK_DT_IQ3_XXS:
    case CK_DT_IQ3_S: case CK_DT_IQ1_S: case CK_DT_IQ1_M: case CK_DT_IQ4_XS:
        return CK_DT_IQ4_NL;
    default: return CK_DT_F16;
    }
}

/* TGT, or its fallbacks, until the block divides the last dimension. */
static ck_dtype fit(ck_dtype tgt, const cki_tensor *v)
{
    uint64_t last = v->ndim ? (uint64_t)v->shape[v->ndim - 1] : 1;
    while (ck_dtype_is_quantized(tgt) && (v->ndim == 0 || last % ck_dtype_block(tgt, NULL)))
        tgt = cki_quant_fallback(tgt);
    return tgt;
}

ck_status cki_rules_compile(ck_ctx *ctx, const char *const *specs, cki_rules *r)
{
    memset(r, 0, sizeof *r);
    if (!specs) return CK_OK;
    for (size_t i = 0; specs[i]; i++) r->count++;
    if (!r->count) return CK_OK;
    r->re = cki_calloc(ctx, r->count, sizeof *r->re);
    r->type = cki_calloc(ctx, r->count, sizeof *r->type);
    if (!r->re || !r->type) {
        cki_rules_free(ctx, r);
        return CK_ENOMEM;
    }
    r->count = 0;
    for (size_t i = 0; specs[i]; i++) {
        const char *eq = strrchr(specs[i], '=');
        char pat[1024];
        int e;
        if (!eq || eq == specs[i] || (size_t)(eq - specs[i]) >= sizeof pat) {
            cki_rules_free(ctx, r);
            return cki_fail(ctx, CK_EARG, "--tensor-type '%s': expected REGEX=TYPE", specs[i]);
        }
        if (ck_dtype_parse(eq + 1, &r->type[i]) ||
            !(ck_dtype_is_float(r->type[i]) || ck_dtype_is_quantized(r->type[i]))) {
            cki_rules_free(ctx, r);
            return cki_fail(ctx, CK_EARG, "--tensor-type '%s': '%s' is not a float or ggml type",
                            specs[i], eq + 1);
        }
        memcpy(pat, specs[i], (size_t)(eq - specs[i]));
        pat[eq - specs[i]] = 0;
        if ((e = regcomp(&r->re[i], pat, REG_EXTENDED | REG_NOSUB))) {
            char why[128];
            regerror(e, &r->re[i], why, sizeof why);
            cki_rules_free(ctx, r);
            return cki_fail(ctx, CK_EARG, "--tensor-type '%s': bad regex: %s", specs[i], why);
        }
        r->count = i + 1;
    }
    return CK_OK;
}

void cki_rules_free(ck_ctx *ctx, cki_rules *r)
{
    for (size_t i = 0; r->re && i < r->count; i++) regfree(&r->re[i]);
    cki_free(ctx, r->re);
    cki_free(ctx, r->type);
    memset(r, 0, sizeof *r);
}

ck_status cki_quant_choose(ck_ctx *ctx, const ck_model *in, const ck_convert_opts *o,
                           unsigned caps, const cki_rules *rules, const char *name,
                           const cki_tensor *v, ck_dtype *out)
{
    ck_dtype src = v->dtype, tgt = o->dtype;
    const int hold = (caps & CKI_CAP_QUANT) != 0;
    int ruled = 0;
    for (size_t i = 0; rules && i < rules->count; i++) {
        if (regexec(&rules->re[i], name, 0, NULL, 0) == 0) {
            tgt = rules->type[i];
            ruled = 1;
            break;
        }
    }
    if (!ruled && any_glob(o->dtype_exclude, name)) tgt = CK_DT_KEEP;
    if (ck_dtype_is_quantized(src)) {
        if (tgt == CK_DT_KEEP || (ck_dtype_is_quantized(tgt) && !ruled))
            tgt = hold ? src : CK_DT_F32;
        if (tgt != src && !cki_ggml_can_dequant(src))
            return cki_fail(ctx, CK_EUNSUPPORTED,
                            "%s: tensor '%s': ckptkit cannot dequantise %s (convert to GGUF with "
                            "--dtype keep, or leave it out with --exclude)",
                            in->path, v->name, ck_dtype_name(src));
    } else if (!ck_dtype_is_float(src) || tgt == CK_DT_KEEP) {
        tgt = src;
    } else if (ck_dtype_is_quantized(tgt) && !ruled && cki_quant_policy_keeps(name, v->ndim)) {
        tgt = src;
    }
    if (ck_dtype_is_quantized(tgt) && tgt != src) {
        tgt = fit(tgt, v);
        if (ck_dtype_is_quantized(tgt) && !cki_ggml_can_quant(tgt))
            return cki_fail(ctx, CK_EUNSUPPORTED, "%s: tensor '%s': ckptkit cannot quantise to %s",
                            in->path, v->name, ck_dtype_name(tgt));
        if (!hold)
            return cki_fail(ctx, CK_EARG,
                            "tensor '%s': %s is a ggml block type: only GGUF output holds it",
                            v->name, ck_dtype_name(tgt));
    }
    if (!ck_dtype_is_quantized(tgt) && tgt != src && !ck_dtype_can_cast(tgt))
        return cki_fail(ctx, CK_EARG, "cannot cast to %s", ck_dtype_name(tgt));
    *out = tgt;
    return CK_OK;
}
