/*
 * t_diff.c -- ck_diff over models built by hand: the statistics (max and
 * mean absolute difference, cosine) against values worked out by hand, the
 * matching rule (tolerances, NaN, Inf, +0/-0), cross-dtype comparison
 * (F32 vs F16, I32 vs F64), exact I64 comparison beyond 2^53, tensors only
 * on one side, shape changes, the "same" rule with and without tolerances,
 * chunking (a tensor longer than one chunk) and early stop.
 */
#include <math.h>
#include <stdlib.h>

#include "convert/convert.h"
#include "t.h"
#include "t_model.h"

typedef struct seen {
    ck_diff_tensor t[16];
    int n;
    int stop_after;
} seen;

static int collect(void *user, const ck_diff_tensor *t)
{
    seen *s = user;
    if (s->n < 16) s->t[s->n] = *t;
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static const ck_diff_tensor *by_name(const seen *s, const char *name)
{
    for (int i = 0; i < s->n && i < 16; i++)
        if (!strcmp(s->t[i].name, name)) return &s->t[i];
    return NULL;
}

static int near(double a, double b)
{
    return fabs(a - b) <= 1e-12 * (1 + fabs(b));
}

TEST(diff_stats_by_hand)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *b = NULL;
    const float va[4] = {1, 2, 3, 4}, vb[4] = {1, 2.5f, 2, 4};
    seen s = {{{0}}, 0, 0};
    ck_diff_result r;
    const ck_diff_tensor *t;
    ck_diff_opts o = {0, 0};
    CHECK(cki_model_new(ctx, "a", &a) == CK_OK && cki_model_new(ctx, "b", &b) == CK_OK);
    tm_f32(a, "w", va, 4);
    tm_f32(b, "w", vb, 4);
    CHECK(ck_diff(ctx, a, b, NULL, collect, &s, &r) == CK_OK);
    t = by_name(&s, "w");
    CHECK(t && t->compared && t->have_stats && !t->equal);
    CHECK(t && t->mismatched == 2 && t->numel == 4);
    CHECK(t && near(t->max_abs, 1.0) && near(t->mean_abs, 1.5 / 4));
    /* dot = 1 + 5 + 6 + 16 = 28; |a|^2 = 30; |b|^2 = 1 + 6.25 + 4 + 16 = 27.25 */
    CHECK(t && near(t->cosine, 28.0 / (sqrt(30.0) * sqrt(27.25))));
    CHECK(!r.same && r.values_differ == 1 && r.equal == 0 && r.elements == 4);
    o.atol = 0.5; /* |3 - 2| = 1 > 0.5 + 0 */
    CHECK(ck_diff(ctx, a, b, &o, NULL, NULL, &r) == CK_OK && !r.same);
    o.rtol = 0.25; /* 1 <= 0.5 + 0.25 * 2 */
    CHECK(ck_diff(ctx, a, b, &o, NULL, NULL, &r) == CK_OK && r.same);
    o.atol = -1;
    CHECK(ck_diff(ctx, a, b, &o, NULL, NULL, &r) == CK_EARG);
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
}

TEST(diff_nan_inf_and_signed_zero)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *b = NULL;
    const float va[6] = {NAN, NAN, INFINITY, -0.0f, 1, INFINITY};
    const float vb[6] = {NAN, 1, INFINITY, 0.0f, 1, 5};
    seen s = {{{0}}, 0, 0};
    ck_diff_result r;
    ck_diff_opts o = {1e9, 1e9};
    CHECK(cki_model_new(ctx, "a", &a) == CK_OK && cki_model_new(ctx, "b", &b) == CK_OK);
    tm_f32(a, "w", va, 6);
    tm_f32(b, "w", vb, 6);
    CHECK(ck_diff(ctx, a, b, &o, collect, &s, &r) == CK_OK);
    CHECK(s.n == 1 && s.t[0].mismatched == 2 && s.t[0].nan_mismatched == 1);
    CHECK(isinf(s.t[0].max_abs) && isinf(s.t[0].mean_abs));
    /* cosine over finite pairs (-0,0), (1,1): a = (0, 1), b = (0, 1) */
    CHECK(near(s.t[0].cosine, 1.0));
    CHECK(!r.same);
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
}

TEST(diff_across_dtypes_and_same_rule)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *b = NULL;
    const float va[3] = {0.5f, -2, 1024};
    const uint16_t hb[3] = {0x3800, 0xC000, 0x6400}; /* 0.5, -2, 1024 in F16 */
    const int32_t ia[2] = {7, -3};
    const double db[2] = {7, -3};
    int64_t three = 3, two = 2;
    seen s = {{{0}}, 0, 0};
    ck_diff_result r;
    ck_diff_opts tol = {0, 1e-6};
    CHECK(cki_model_new(ctx, "a", &a) == CK_OK && cki_model_new(ctx, "b", &b) == CK_OK);
    tm_add(a, "h", CK_DT_F32, 1, &three, va, 12);
    tm_add(b, "h", CK_DT_F16, 1, &three, hb, 6);
    tm_add(a, "i", CK_DT_I32, 1, &two, ia, 8);
    tm_add(b, "i", CK_DT_F64, 1, &two, db, 16);
    CHECK(ck_diff(ctx, a, b, NULL, collect, &s, &r) == CK_OK);
    CHECK(s.n == 2 && s.t[0].equal && s.t[1].equal);
    CHECK(s.t[0].max_abs == 0 && near(s.t[0].cosine, 1));
    CHECK(r.dtype_changed == 2 && r.equal == 2);
    CHECK(!r.same); /* exact comparison: dtype changes count */
    CHECK(ck_diff(ctx, a, b, &tol, NULL, NULL, &r) == CK_OK && r.same); /* by value */
    CHECK(r.bytes == 12 + 6 + 8 + 16);
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
}

TEST(diff_i64_exact_beyond_2_53)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *b = NULL;
    const int64_t va[2] = {(int64_t)1 << 60, -5}, vb[2] = {((int64_t)1 << 60) + 1, -5};
    int64_t two = 2;
    seen s = {{{0}}, 0, 0};
    ck_diff_result r;
    CHECK(cki_model_new(ctx, "a", &a) == CK_OK && cki_model_new(ctx, "b", &b) == CK_OK);
    tm_add(a, "n", CK_DT_I64, 1, &two, va, 16);
    tm_add(b, "n", CK_DT_I64, 1, &two, vb, 16);
    CHECK(ck_diff(ctx, a, b, NULL, collect, &s, &r) == CK_OK);
    CHECK(s.n == 1 && s.t[0].mismatched == 1 && s.t[0].max_abs == 1 && !r.same);
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
}

TEST(diff_names_shapes_order_and_stop)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *b = NULL;
    const float v[4] = {1, 2, 3, 4};
    int64_t s22[2] = {2, 2};
    seen s = {{{0}}, 0, 0};
    ck_diff_result r;
    CHECK(cki_model_new(ctx, "a", &a) == CK_OK && cki_model_new(ctx, "b", &b) == CK_OK);
    tm_f32(a, "only_a", v, 4);
    tm_f32(a, "shape", v, 4);
    tm_f32(a, "same", v, 4);
    tm_add(b, "shape", CK_DT_F32, 2, s22, v, 16);
    tm_f32(b, "same", v, 4);
    tm_f32(b, "only_b", v, 4);
    CHECK(ck_diff(ctx, a, b, NULL, collect, &s, &r) == CK_OK);
    CHECK(s.n == 4);
    CHECK(!strcmp(s.t[0].name, "only_a") && s.t[0].index_b == (size_t)-1 &&
          s.t[0].dtype_b == CK_DT_KEEP && s.t[0].ndim_b == -1);
    CHECK(!strcmp(s.t[1].name, "shape") && !s.t[1].compared && !s.t[1].equal);
    CHECK(s.t[1].ndim_a == 1 && s.t[1].ndim_b == 2);
    CHECK(!strcmp(s.t[2].name, "same") && s.t[2].equal);
    CHECK(!strcmp(s.t[3].name, "only_b") && s.t[3].index_a == (size_t)-1);
    CHECK(r.only_a == 1 && r.only_b == 1 && r.shape_changed == 1 && r.equal == 1 && !r.same);
    s.n = 0;
    s.stop_after = 2;
    CHECK(ck_diff(ctx, a, b, NULL, collect, &s, &r) == CK_OK && s.n == 2);
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
}

TEST(diff_long_tensor_spans_chunks)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *b = NULL;
    int64_t n = 200000;
    float *va = malloc((size_t)n * 4), *vb = malloc((size_t)n * 4);
    seen s = {{{0}}, 0, 0};
    ck_diff_result r;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        va[i] = (float)(i % 97);
        vb[i] = va[i] + (i == 150000 ? 3.0f : (i % 2 ? 0.5f : 0));
        sum += (i == 150000 ? 3.0 : (i % 2 ? 0.5 : 0));
    }
    CHECK(cki_model_new(ctx, "a", &a) == CK_OK && cki_model_new(ctx, "b", &b) == CK_OK);
    tm_f32(a, "big", va, n);
    tm_f32(b, "big", vb, n);
    CHECK(ck_diff(ctx, a, b, NULL, collect, &s, &r) == CK_OK);
    CHECK(s.n == 1 && s.t[0].max_abs == 3.0);
    CHECK(near(s.t[0].mean_abs, sum / (double)n));
    CHECK(s.t[0].mismatched == (uint64_t)n / 2 + 1);
    free(va);
    free(vb);
    ck_model_close(a);
    ck_model_close(b);
    ck_ctx_free(ctx);
}
