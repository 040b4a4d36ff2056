/*
 * t_safetensors.c -- the safetensors reader and writer.
 *
 *  - every real fixture and every good corpus file loads, and its tensor list
 *    (names, dtypes, shapes, offsets, bytes) and metadata match the header as
 *    read by an independent mini-parser in this file;
 *  - every bad corpus file fails with exactly its .expected line;
 *  - probe scores; limits; warnings; zero-copy data;
 *  - the writer: byte-exact output for a small model, reference tensor order
 *    and alignment, metadata ("format":"pt" added, others kept), round trips
 *    over every dtype with 0-dim and 0-element tensors and UTF-8 names,
 *    determinism, refusals (C128, "__metadata__", odd F4 counts).
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "formats/format.h"
#include "formats/model.h"
#include "t.h"
#include "t_build.h"
#include "t_fs.h"

extern const cki_format cki_fmt_safetensors;

#define BAD_DIR "tests/corpus/bad/safetensors"
#define GOOD_DIR "tests/corpus/good/safetensors"

/* ---- an independent header reader (the oracle) ------------------------------
 * A deliberately simple recursive-descent reader for valid headers only:
 * collects the entries in header order and the metadata pairs. */

typedef struct o_tensor {
    char name[256];
    size_t name_len;
    char dtype[32];
    int ndim;
    int64_t shape[70];
    uint64_t begin, end;
} o_tensor;

typedef struct oracle {
    o_tensor t[128];
    int n;
    char mk[16][128], mv[16][128];
    int nm;
    uint64_t data_off;
} oracle;

typedef struct sc {
    const char *p;
    size_t n, i;
} sc;

static void o_ws(sc *s)
{
    while (s->i < s->n && (s->p[s->i] == ' ' || s->p[s->i] == '\t' || s->p[s->i] == '\r' ||
                           s->p[s->i] == '\n'))
        s->i++;
}

static int o_lit(sc *s, char c)
{
    o_ws(s);
    if (s->i < s->n && s->p[s->i] == c) {
        s->i++;
        return 1;
    }
    return 0;
}

static unsigned o_hex(sc *s)
{
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s->p[s->i++];
        v = v * 16 + (unsigned)(c <= '9' ? c - '0' : (c | 32) - 'a' + 10);
    }
    return v;
}

static size_t o_str(sc *s, char *out, size_t cap)
{
    size_t len = 0;
    o_lit(s, '"');
    while (s->p[s->i] != '"') {
        unsigned long cp;
        char c = s->p[s->i++];
        if (c != '\\') {
            if (len < cap) out[len] = c;
            len++;
            continue;
        }
        c = s->p[s->i++];
        if (c != 'u') {
            const char *from = "bfnrt", *to = "\b\f\n\r\t";
            const char *k = strchr(from, c);
            if (len < cap) out[len] = k ? to[k - from] : c;
            len++;
            continue;
        }
        cp = o_hex(s);
        if (cp >= 0xD800 && cp < 0xDC00) {
            s->i += 2; /* the \u of the low half */
            cp = 0x10000 + ((cp - 0xD800) << 10) + (o_hex(s) - 0xDC00);
        }
        {
            /* UTF-8: lead byte marker and payload bits per sequence length */
            int k = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
            static const unsigned lead[5] = {0, 0x00, 0xC0, 0xE0, 0xF0};
            for (int j = 0; j < k; j++, len++) {
                int shift = 6 * (k - 1 - j);
                unsigned byte = j ? 0x80 | ((cp >> shift) & 63) : lead[k] | (unsigned)(cp >> shift);
                if (len < cap) out[len] = (char)byte;
            }
        }
    }
    s->i++;
    if (len < cap) out[len] = 0;
    return len;
}

static uint64_t o_num(sc *s)
{
    uint64_t v = 0;
    o_ws(s);
    while (s->i < s->n && s->p[s->i] >= '0' && s->p[s->i] <= '9')
        v = v * 10 + (uint64_t)(s->p[s->i++] - '0');
    return v;
}

static void o_skip(sc *s)
{
    char tmp[8];
    o_ws(s);
    if (s->p[s->i] == '"') {
        o_str(s, tmp, 0);
    } else if (s->p[s->i] == '{' || s->p[s->i] == '[') {
        char close = s->p[s->i] == '{' ? '}' : ']';
        s->i++;
        if (o_lit(s, close)) return;
        do {
            if (close == '}') {
                o_str(s, tmp, 0);
                o_lit(s, ':');
            }
            o_skip(s);
        } while (o_lit(s, ','));
        o_lit(s, close);
    } else {
        while (s->i < s->n && !strchr(",]} \t\r\n", s->p[s->i])) s->i++;
    }
}

/* Reads the header of the safetensors bytes F (LEN). 0 on success. */
static int oracle_read(const unsigned char *f, size_t len, oracle *o)
{
    sc s;
    uint64_t n = 0;
    memset(o, 0, sizeof *o);
    if (len < 8) return -1;
    for (int i = 7; i >= 0; i--) n = n << 8 | f[i];
    if (n > len - 8) return -1;
    o->data_off = 8 + n;
    s.p = (const char *)f + 8;
    s.n = (size_t)n;
    s.i = 0;
    if (!o_lit(&s, '{')) return -1;
    if (o_lit(&s, '}')) return 0;
    do {
        char key[256];
        size_t kl = o_str(&s, key, sizeof key);
        o_lit(&s, ':');
        if (kl == 12 && !memcmp(key, "__metadata__", 12)) {
            o_lit(&s, '{');
            if (o_lit(&s, '}')) continue;
            do {
                o_str(&s, o->mk[o->nm], sizeof o->mk[0]);
                o_lit(&s, ':');
                o_str(&s, o->mv[o->nm], sizeof o->mv[0]);
                o->nm++;
            } while (o_lit(&s, ','));
            o_lit(&s, '}');
            continue;
        }
        {
            o_tensor *t = &o->t[o->n++];
            memcpy(t->name, key, kl < sizeof key ? kl + 1 : sizeof key);
            t->name_len = kl;
            o_lit(&s, '{');
            do {
                char field[64];
                o_str(&s, field, sizeof field);
                o_lit(&s, ':');
                if (!strcmp(field, "dtype")) {
                    o_str(&s, t->dtype, sizeof t->dtype);
                } else if (!strcmp(field, "shape")) {
                    o_lit(&s, '[');
                    if (!o_lit(&s, ']')) {
                        do t->shape[t->ndim++] = (int64_t)o_num(&s);
                        while (o_lit(&s, ','));
                        o_lit(&s, ']');
                    }
                } else if (!strcmp(field, "data_offsets")) {
                    o_lit(&s, '[');
                    t->begin = o_num(&s);
                    o_lit(&s, ',');
                    t->end = o_num(&s);
                    o_lit(&s, ']');
                } else {
                    o_skip(&s);
                }
            } while (o_lit(&s, ','));
            o_lit(&s, '}');
        }
    } while (o_lit(&s, ','));
    return o_lit(&s, '}') ? 0 : -1;
}

/* ---- checking a loaded file against the oracle -------------------------------- */

/* Opens PATH with detection and compares everything with the oracle. */
static void check_against_header(const char *path)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    oracle *o = calloc(1, sizeof *o);
    size_t flen = 0;
    unsigned char *file = tfs_read(path, &flen);
    int ok = file && oracle_read(file, flen, o) == 0;
    CHECK(ok);
    if (ck_model_open(ctx, path, NULL, &m) != CK_OK) {
        fprintf(stderr, "  %s: %s\n", path, ck_errmsg(ctx));
        CHECK(!"open failed");
        goto out;
    }
    CHECK(!strcmp(ck_model_format(m), "safetensors"));
    CHECK((int)ck_model_tensor_count(m) == o->n);
    for (int i = 0; ok && i < o->n && i < (int)ck_model_tensor_count(m); i++) {
        const o_tensor *t = &o->t[i];
        ck_tensor_info ti;
        unsigned char *buf;
        CHECK(ck_model_tensor(m, (size_t)i, &ti) == CK_OK);
        CHECK(strlen(ti.name) == t->name_len && !memcmp(ti.name, t->name, t->name_len));
        CHECK(!strcmp(ck_dtype_name(ti.dtype), t->dtype));
        CHECK(ti.ndim == t->ndim);
        for (int d = 0; d < t->ndim && d < ti.ndim; d++) CHECK(ti.shape[d] == t->shape[d]);
        CHECK(ti.strides == NULL);
        CHECK(ti.file_offset == o->data_off + t->begin);
        CHECK(ti.nbytes == t->end - t->begin);
        /* the bytes: zero-copy view and a read both equal the file's */
        CHECK(ti.nbytes == 0 || (ck_model_data(m, (size_t)i) &&
                                 !memcmp(ck_model_data(m, (size_t)i), file + ti.file_offset,
                                         (size_t)ti.nbytes)));
        buf = malloc((size_t)ti.nbytes + 1);
        CHECK(ck_model_read(m, (size_t)i, 0, ti.numel, CK_DT_KEEP, buf, (size_t)ti.nbytes) ==
              CK_OK);
        CHECK(!memcmp(buf, file + ti.file_offset, (size_t)ti.nbytes));
        free(buf);
    }
    CHECK((int)ck_model_meta_count(m) == o->nm);
    for (int i = 0; i < o->nm; i++) {
        const char *v = ck_model_meta_get(m, o->mk[i]);
        CHECK(v && !strcmp(v, o->mv[i]));
    }
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
    free(file);
    free(o);
}

/* Calls FN(dir/name) for every NAME in DIR ending in SUFFIX, sorted; returns the count. */
static int each_file(const char *dir, const char *suffix, void (*fn)(const char *))
{
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), count = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(list[i]->d_name), sl = strlen(suffix);
        char path[1024];
        if (l > sl && !strcmp(list[i]->d_name + l - sl, suffix)) {
            snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name);
            fn(path);
            count++;
        }
        free(list[i]);
    }
    if (n > 0) free(list);
    return count;
}

TEST(safetensors_real_fixtures_match_their_headers)
{
    CHECK(each_file(T_FIXTURES "/safetensors", ".safetensors", check_against_header) >= 10);
}

TEST(safetensors_good_corpus_matches_headers)
{
    CHECK(each_file(GOOD_DIR, ".safetensors", check_against_header) >= 10);
}

TEST(safetensors_oracle_agrees_with_manifest_values)
{
    /* the oracle itself, checked against values from MANIFEST.tsv */
    size_t n = 0;
    unsigned char *f = tfs_read(T_FIXTURES "/safetensors/hf_samples_overall.safetensors", &n);
    oracle *o = calloc(1, sizeof *o);
    CHECK(f && oracle_read(f, n, o) == 0);
    CHECK(o->data_off == 8 + 526 && o->n == 9 && o->nm == 1);
    CHECK(!strcmp(o->t[4].name, "d") && !strcmp(o->t[4].dtype, "F64"));
    CHECK(o->t[4].begin == 48 && o->t[4].end == 96 && o->t[4].ndim == 1 && o->t[4].shape[0] == 6);
    CHECK(!strcmp(o->mk[0], "test") && !strcmp(o->mv[0], "a"));
    free(f);
    free(o);
}

/* ---- bad corpus ---------------------------------------------------------------------- */

static void check_bad(const char *path)
{
    char exp_path[1100], *want;
    size_t n = 0;
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_open_opts opts;
    ck_status st;
    memset(&opts, 0, sizeof opts);
    opts.format = "safetensors";
    snprintf(exp_path, sizeof exp_path, "%.*s.expected", (int)(strlen(path) - 12), path);
    want = (char *)tfs_read(exp_path, &n);
    CHECK(want != NULL);
    if (!want) goto out;
    want[n] = 0;
    if (n && want[n - 1] == '\n') want[n - 1] = 0;
    st = ck_model_open(ctx, path, &opts, &m);
    CHECK(st != CK_OK && m == NULL);
    if (strcmp(ck_errmsg(ctx), want) != 0) {
        fprintf(stderr, "  %s\n    want: %s\n    got:  %s\n", path, want, ck_errmsg(ctx));
        CHECK(!"message differs");
    }
    CHECK(st == (strstr(want, "exceeds the limit") || strstr(want, "nesting deeper")
                     ? CK_ELIMIT
                     : CK_EFORMAT));
    free(want);
out:
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(safetensors_bad_corpus_fails_with_expected_lines)
{
    CHECK(each_file(BAD_DIR, ".safetensors", check_bad) >= 70);
}

TEST(safetensors_bad_corpus_is_detected_as_safetensors)
{
    /* files with a sane frame are claimed by detection, so the user gets the
     * precise message rather than "not a checkpoint format" */
    const char *rules[] = {"duplicate_identical", "size_mismatch", "truncated", "trailing_bytes",
                           "header_past_eof", "header_too_large", "offsets_overlap",
                           "metadata_null", "depth"};
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++) {
        char path[256], exp[256], *want;
        size_t n = 0;
        ck_ctx *ctx = ck_ctx_new();
        ck_model *m = NULL;
        snprintf(path, sizeof path, BAD_DIR "/%s.safetensors", rules[i]);
        snprintf(exp, sizeof exp, BAD_DIR "/%s.expected", rules[i]);
        want = (char *)tfs_read(exp, &n);
        CHECK(want != NULL);
        if (want) {
            want[n - 1] = 0;
            CHECK(ck_model_open(ctx, path, NULL, &m) != CK_OK);
            CHECK(!strcmp(ck_errmsg(ctx), want));
            free(want);
        }
        ck_ctx_free(ctx);
    }
}

/* ---- probe, limits, warnings, odd inputs ----------------------------------------------- */

static int probe_bytes(const void *p, size_t n)
{
    cki_source *src;
    int score;
    if (cki_source_from_memory(NULL, "mem", p, n, &src)) return -1;
    score = cki_fmt_safetensors.probe(src);
    cki_source_close(NULL, src);
    return score;
}

TEST(safetensors_probe)
{
    CHECK(probe_bytes("\x02\0\0\0\0\0\0\0{}", 10) == 95);
    CHECK(probe_bytes("\x05\0\0\0\0\0\0\0 \t{} ", 13) == 95);
    CHECK(probe_bytes("\x02\0\0\0\0\0\0\0[]", 10) == 0);
    CHECK(probe_bytes("\x02\0\0\0\0\0\0\0", 8) == 0);
    CHECK(probe_bytes("\x02\0\0\0\0\0\0", 7) == 0);
    CHECK(probe_bytes("\x01\0\0\0\0\0\0\0 {", 10) == 0);          /* '{' outside the header */
    CHECK(probe_bytes("\xff\0\0\0\0\0\0\0{}", 10) == 40);         /* truncated: claimed */
    CHECK(probe_bytes("\xff\xff\xff\xff\xff\xff\xff\xff{}", 10) == 0); /* absurd length */
    CHECK(probe_bytes("PK\x03\x04\x14\0\0\0\x08\0", 10) == 0);    /* a zip */
    CHECK(probe_bytes("\x80\x02}q\0(X\x01\0\0\0", 12) == 0);      /* a pickle */
    CHECK(probe_bytes("{\"a\": {\"b\": 1}}", 16) == 0);           /* a JSON file */
}

static ck_status read_mem(ck_ctx *ctx, const void *p, size_t n, ck_model **out)
{
    ck_model *m;
    cki_source *src;
    ck_status st;
    if ((st = cki_model_new(ctx, "mem.safetensors", &m))) return st;
    if ((st = cki_source_from_memory(ctx, "mem.safetensors", p, n, &src)) ||
        (st = cki_model_add_source(m, src)) || (st = cki_fmt_safetensors.read(m, src, NULL))) {
        ck_model_close(m);
        return st;
    }
    *out = m;
    return CK_OK;
}

TEST(safetensors_header_limit_and_overflowing_length)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    static const char big[] = "\xff\xff\xff\xff\xff\xff\xff\xff{}";
    ck_ctx_set_limit(ctx, CK_LIMIT_HEADER_BYTES, 100);
    CHECK(ck_model_open(ctx, T_FIXTURES "/safetensors/hf_samples_overall.safetensors", NULL, &m) ==
          CK_ELIMIT);
    CHECK(!strcmp(ck_errmsg(ctx), T_FIXTURES "/safetensors/hf_samples_overall.safetensors: "
                                             "header: length 526 exceeds the limit of 100 bytes"));
    /* with the limit lifted, 8 + N overflowing 64 bits is still caught */
    ck_ctx_set_limit(ctx, CK_LIMIT_HEADER_BYTES, UINT64_MAX);
    CHECK(read_mem(ctx, big, 10, &m) == CK_EFORMAT);
    CHECK(!strcmp(ck_errmsg(ctx), "mem.safetensors: header: length 18446744073709551615 runs past "
                                  "the end of the file (8 + 18446744073709551615 > 10 bytes)"));
    ck_ctx_free(ctx);
}

static char warned[1024];
static int warn_count;
static void on_warn(void *user, const char *msg)
{
    (void)user;
    snprintf(warned, sizeof warned, "%s", msg);
    warn_count++;
}

TEST(safetensors_unknown_fields_warn_once)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    warn_count = 0;
    ck_ctx_set_warn(ctx, on_warn, NULL);
    CHECK(ck_model_open(ctx, GOOD_DIR "/json_order.safetensors", NULL, &m) == CK_OK);
    CHECK(warn_count == 1);
    CHECK(!strcmp(warned, GOOD_DIR "/json_order.safetensors: tensor 'first': unknown field 'extra' "
                          "ignored"));
    /* header order is kept although the data order differs */
    CHECK(ck_model_tensor_count(m) == 2);
    if (ck_model_tensor_count(m) == 2) {
        ck_tensor_info a, b;
        ck_model_tensor(m, 0, &a);
        ck_model_tensor(m, 1, &b);
        CHECK(!strcmp(a.name, "second") && !strcmp(b.name, "first"));
        CHECK(a.file_offset == b.file_offset + 4);
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(safetensors_empty_name_and_metadata_are_readable)
{
    /* the reference accepts an empty tensor name; so do we */
    static const char hdr[] = "{\"\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}";
    char f[128];
    size_t n = sizeof hdr - 1;
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_st_le64((uint8_t *)f, n);
    memcpy(f + 8, hdr, n);
    memcpy(f + 8 + n, "ab", 2);
    CHECK(read_mem(ctx, f, 8 + n + 2, &m) == CK_OK);
    if (m) {
        ck_tensor_info ti;
        CHECK(ck_model_tensor(m, 0, &ti) == CK_OK && ti.name[0] == 0 && ti.nbytes == 2);
        CHECK(!memcmp(ck_model_data(m, 0), "ab", 2));
        CHECK(!strcmp(ck_model_format(m), "safetensors"));
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(safetensors_many_tensors)
{
    /* 100k tensors: linear time, memory a small multiple of the header */
    size_t n = 100000, cap = n * 80 + 64, len = 9;
    char *f = malloc(cap + n);
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    memcpy(f + 8, "{", 1);
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(f + len, "%s\"layer.%zu.w\":{\"dtype\":\"U8\",\"shape\":[1],"
                                        "\"data_offsets\":[%zu,%zu]}",
                               i ? "," : "", i, i, i + 1);
    f[len++] = '}';
    cki_st_le64((uint8_t *)f, len - 8);
    memset(f + len, 7, n);
    CHECK(read_mem(ctx, f, len + n, &m) == CK_OK);
    CHECK(ck_model_tensor_count(m) == n);
    if (m) {
        size_t idx = 0;
        CHECK(ck_model_find(m, "layer.99999.w", &idx) == CK_OK && idx == 99999);
    }
    CHECK(ctx->mem_peak < 16 * (uint64_t)len);
    ck_model_close(m);
    ck_ctx_free(ctx);
    free(f);
}

/* ---- the writer ---------------------------------------------------------------------- */

static ck_status write_st(ck_ctx *ctx, ck_model *m, const char *out, const char *const *meta)
{
    ck_convert_opts o;
    memset(&o, 0, sizeof o);
    o.format = "safetensors";
    o.dtype = CK_DT_KEEP;
    o.metadata = meta;
    return ck_convert(ctx, m, out, &o, NULL);
}

TEST(safetensors_writer_exact_bytes)
{
    /* the reference writer's layout: 8-byte types first, then by name; compact
     * JSON, __metadata__ first with sorted keys, spaces to a multiple of 8 */
    static const tb_spec specs[] = {{"b", CK_DT_F32, 1, {2}}, {"a", CK_DT_I64, 0, {0}},
                                 {"c", CK_DT_U8, 2, {1, 3}}};
    static const char *const meta[] = {"zeta=1", "alpha=x\"y", NULL};
    static const char want_hdr[] =
        "{\"__metadata__\":{\"alpha\":\"x\\\"y\",\"format\":\"pt\",\"zeta\":\"1\"},"
        "\"a\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"c\":{\"dtype\":\"U8\",\"shape\":[1,3],\"data_offsets\":[16,19]}}";
    char dir[256], out[300];
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *bytes;
    ck_model *m = tb_build(ctx, specs, 3, &bytes);
    size_t n = 0, hl = sizeof want_hdr - 1, padded = (hl + 8 + 7) / 8 * 8 - 8;
    unsigned char *f;
    CHECK(m != NULL && tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "x.safetensors");
    CHECK(write_st(ctx, m, out, meta) == CK_OK);
    f = tfs_read(out, &n);
    CHECK(f && n == 8 + padded + 19);
    if (f && n == 8 + padded + 19) {
        CHECK(cki_ld_le64(f) == padded);
        CHECK(!memcmp(f + 8, want_hdr, hl));
        for (size_t i = hl; i < padded; i++) CHECK(f[8 + i] == ' ');
        /* data: a (bytes 8..16 of the source), b (0..8), c (16..19) */
        CHECK(!memcmp(f + 8 + padded, bytes + 8, 8));
        CHECK(!memcmp(f + 8 + padded + 8, bytes, 8));
        CHECK(!memcmp(f + 8 + padded + 16, bytes + 16, 3));
    }
    free(f);
    ck_model_close(m);
    free(bytes);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(safetensors_writer_empty_model_and_format_key)
{
    static const char *const tf[] = {"format=tf", NULL};
    static const char want_empty[] = "{\"__metadata__\":{\"format\":\"pt\"}}";
    static const char want_tf[] = "{\"__metadata__\":{\"format\":\"tf\"}}";
    char dir[256], out[300];
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *bytes;
    ck_model *m = tb_build(ctx, NULL, 0, &bytes);
    size_t n = 0;
    unsigned char *f;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "empty.safetensors");
    CHECK(write_st(ctx, m, out, NULL) == CK_OK);
    f = tfs_read(out, &n);
    CHECK(f && n == 8 + 32 && cki_ld_le64(f) == 32 && !memcmp(f + 8, want_empty, 32));
    free(f);
    tfs_join(out, sizeof out, dir, "tf.safetensors");
    CHECK(write_st(ctx, m, out, tf) == CK_OK);
    f = tfs_read(out, &n);
    CHECK(f && n == 8 + 32 && !memcmp(f + 8, want_tf, 32)); /* a given format is kept as is */
    free(f);
    ck_model_close(m);
    free(bytes);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

/* Every safetensors dtype, 0-dim and 0-element tensors, names with dots and UTF-8. */
static const tb_spec all_specs[] = {
    {"bool.flags", CK_DT_BOOL, 1, {3}},      {"u8", CK_DT_U8, 2, {2, 3}},
    {"i8", CK_DT_I8, 1, {5}},                {"u16", CK_DT_U16, 1, {3}},
    {"i16", CK_DT_I16, 2, {1, 1}},           {"u32", CK_DT_U32, 1, {2}},
    {"i32.scalar", CK_DT_I32, 0, {0}},       {"u64", CK_DT_U64, 1, {2}},
    {"i64", CK_DT_I64, 1, {1}},              {"f16", CK_DT_F16, 1, {7}},
    {"bf16", CK_DT_BF16, 3, {1, 2, 3}},      {"f32", CK_DT_F32, 2, {3, 3}},
    {"f64.scalar", CK_DT_F64, 0, {0}},       {"c64", CK_DT_C64, 1, {2}},
    {"f8.e4m3", CK_DT_F8_E4M3, 1, {4}},      {"f8.e5m2", CK_DT_F8_E5M2, 1, {4}},
    {"f8.e4m3fnuz", CK_DT_F8_E4M3FNUZ, 1, {2}}, {"f8.e5m2fnuz", CK_DT_F8_E5M2FNUZ, 1, {2}},
    {"f8.e8m0", CK_DT_F8_E8M0, 1, {3}},      {"f6.e2m3", CK_DT_F6_E2M3, 1, {4}},
    {"f6.e3m2", CK_DT_F6_E3M2, 2, {2, 4}},   {"f4", CK_DT_F4, 2, {3, 2}},
    {"empty.f32", CK_DT_F32, 2, {0, 4}},     {"empty.u8", CK_DT_U8, 1, {0}},
    {"model.layers.0.self_attn.q_proj.weight", CK_DT_BF16, 2, {2, 2}},
    {"r\xc3\xa9sum\xc3\xa9.\xe6\xa8\xa1\xe5\x9e\x8b.\xf0\x9f\x98\x80", CK_DT_F32, 1, {1}},
    {"quote\"back\\slash\ttab", CK_DT_U8, 1, {1}},
};
#define ALL_COUNT (sizeof all_specs / sizeof all_specs[0])

TEST(safetensors_round_trip_every_dtype)
{
    char dir[256], out[300], out2[300];
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *bytes;
    ck_model *m = tb_build(ctx, all_specs, ALL_COUNT, &bytes), *r = NULL;
    static const char *const meta[] = {"note=caf\xc3\xa9", NULL};
    size_t n = 0, n2 = 0;
    unsigned char *f, *f2;
    oracle *o = calloc(1, sizeof *o);
    CHECK(m != NULL && tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "all.safetensors");
    tfs_join(out2, sizeof out2, dir, "again.safetensors");
    CHECK(write_st(ctx, m, out, meta) == CK_OK);
    CHECK(write_st(ctx, m, out2, meta) == CK_OK);
    f = tfs_read(out, &n);
    f2 = tfs_read(out2, &n2);
    CHECK(f && f2 && n == n2 && !memcmp(f, f2, n)); /* deterministic */

    /* layout: header a multiple of 8, entries in reference order, each tensor
     * aligned to its element size, data ends at EOF */
    CHECK(f && oracle_read(f, n, o) == 0 && o->data_off % 8 == 0 && o->n == (int)ALL_COUNT);
    for (int i = 0; i < o->n; i++) {
        ck_dtype dt;
        CHECK(ck_dtype_parse(o->t[i].dtype, &dt) == CK_OK);
        if (cki_dtype_size(dt)) CHECK(o->t[i].begin % cki_dtype_size(dt) == 0);
        if (i) CHECK(o->t[i].begin == o->t[i - 1].end);
    }
    CHECK(o->n && o->data_off + o->t[o->n - 1].end == n);
    CHECK(o->nm == 2 && !strcmp(o->mk[0], "format") && !strcmp(o->mv[0], "pt") &&
          !strcmp(o->mk[1], "note") && !strcmp(o->mv[1], "caf\xc3\xa9"));

    /* read back: same names, dtypes, shapes and bytes */
    CHECK(ck_model_open(ctx, out, NULL, &r) == CK_OK);
    CHECK(ck_model_tensor_count(r) == ALL_COUNT);
    for (size_t i = 0; r && i < ALL_COUNT; i++) {
        size_t j;
        ck_tensor_info a, b;
        CHECK(ck_model_find(r, all_specs[i].name, &j) == CK_OK);
        ck_model_tensor(m, i, &a);
        if (ck_model_tensor(r, j, &b) != CK_OK) continue;
        CHECK(a.dtype == b.dtype && a.ndim == b.ndim && a.nbytes == b.nbytes);
        for (int d = 0; d < a.ndim; d++) CHECK(a.shape[d] == b.shape[d]);
        CHECK(a.nbytes == 0 || !memcmp(ck_model_data(m, i), ck_model_data(r, j), a.nbytes));
    }
    CHECK(r && !strcmp(ck_model_meta_get(r, "format"), "pt"));
    CHECK(r && !strcmp(ck_model_meta_get(r, "note"), "caf\xc3\xa9"));
    ck_model_close(r);
    free(f);
    free(f2);
    free(o);
    ck_model_close(m);
    free(bytes);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

static void round_trip_file(const char *path)
{
    char dir[256], out[300];
    ck_ctx *ctx = ck_ctx_new();
    ck_model *a = NULL, *b = NULL;
    int same = 0;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "rt.safetensors");
    CHECK(ck_model_open(ctx, path, NULL, &a) == CK_OK);
    CHECK(a && write_st(ctx, a, out, NULL) == CK_OK);
    CHECK(ck_model_open(ctx, out, NULL, &b) == CK_OK);
    CHECK(a && b && ck_verify(ctx, a, b, NULL, NULL, &same) == CK_OK && same);
    for (size_t i = 0; a && b && i < ck_model_meta_count(a); i++) {
        const char *k, *v, *w;
        ck_model_meta(a, i, &k, &v);
        w = ck_model_meta_get(b, k);
        CHECK(w && !strcmp(v, w));
    }
    if (!same) fprintf(stderr, "  round trip of %s differs: %s\n", path, ck_errmsg(ctx));
    ck_model_close(a);
    ck_model_close(b);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}

TEST(safetensors_round_trip_fixtures_and_good_corpus)
{
    CHECK(each_file(T_FIXTURES "/safetensors", ".safetensors", round_trip_file) >= 10);
    CHECK(each_file(GOOD_DIR, ".safetensors", round_trip_file) >= 10);
}

static ck_status write_one(const tb_spec *s, char *msg, size_t cap)
{
    char dir[256], out[300];
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *bytes;
    ck_model *m = tb_build(ctx, s, 1, &bytes);
    ck_status st;
    tfs_mkdtemp(dir, sizeof dir);
    tfs_join(out, sizeof out, dir, "x.safetensors");
    st = m ? write_st(ctx, m, out, NULL) : CK_EARG;
    snprintf(msg, cap, "%s", ck_errmsg(ctx));
    CHECK(st == CK_OK || (!tfs_exists(out) && tfs_count_temps(dir) == 0)); /* nothing left */
    ck_model_close(m);
    free(bytes);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
    return st;
}

TEST(safetensors_writer_refusals_name_the_tensor)
{
    static const tb_spec c128 = {"z", CK_DT_C128, 1, {2}};
    static const tb_spec meta = {"__metadata__", CK_DT_F32, 1, {1}};
    static const tb_spec f4 = {"odd", CK_DT_F4, 1, {3}};
    static const tb_spec bad_utf8 = {"na\xffme", CK_DT_U8, 1, {1}};
    char msg[1024], dir_msg[1200];
    CHECK(write_one(&c128, msg, sizeof msg) == CK_EUNSUPPORTED);
    CHECK(strstr(msg, "x.safetensors: tensor 'z': safetensors has no C128 dtype; exclude the "
                      "tensor or write another format") != NULL);
    CHECK(write_one(&meta, msg, sizeof msg) == CK_EUNSUPPORTED);
    CHECK(strstr(msg, "x.safetensors: tensor '__metadata__': the name is reserved for safetensors "
                      "metadata; rename the tensor") != NULL);
    CHECK(write_one(&f4, msg, sizeof msg) == CK_EUNSUPPORTED);
    CHECK(strstr(msg, "x.safetensors: tensor 'odd': 3 x F4 is not a whole number of bytes") !=
          NULL);
    CHECK(write_one(&bad_utf8, msg, sizeof msg) == CK_EUNSUPPORTED);
    snprintf(dir_msg, sizeof dir_msg, "x.safetensors: tensor '%s': name is not valid UTF-8",
             bad_utf8.name);
    CHECK(strstr(msg, dir_msg) != NULL);
    {
        /* metadata must be UTF-8 too */
        static const char *const bad_meta[] = {"k\xff=v", NULL};
        char dir[256], out[300];
        ck_ctx *ctx = ck_ctx_new();
        uint8_t *bytes;
        ck_model *m = tb_build(ctx, &f4, 0, &bytes);
        CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
        tfs_join(out, sizeof out, dir, "x.safetensors");
        CHECK(write_st(ctx, m, out, bad_meta) == CK_EUNSUPPORTED);
        CHECK(strstr(ck_errmsg(ctx), "x.safetensors: metadata 'k\xff': not valid UTF-8") != NULL);
        CHECK(tfs_count_entries(dir) == 0);
        ck_model_close(m);
        free(bytes);
        tfs_rmtree(dir);
        ck_ctx_free(ctx);
    }
}

TEST(safetensors_writer_header_limit)
{
    /* the header cap is the format's 100,000,000 bytes, or the context's
     * CK_LIMIT_HEADER_BYTES when lower: a file we could not read back is not
     * written */
    static const tb_spec specs[] = {{"a", CK_DT_F32, 1, {1}}, {"b", CK_DT_F32, 1, {1}}};
    char dir[256], out[300];
    ck_ctx *ctx = ck_ctx_new();
    uint8_t *b1, *b2;
    ck_model *empty = tb_build(ctx, NULL, 0, &b1), *two = tb_build(ctx, specs, 2, &b2);
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tfs_join(out, sizeof out, dir, "x.safetensors");
    ck_ctx_set_limit(ctx, CK_LIMIT_HEADER_BYTES, 32); /* {"__metadata__":{"format":"pt"}} fits */
    CHECK(write_st(ctx, empty, out, NULL) == CK_OK);
    unlink(out);
    CHECK(write_st(ctx, two, out, NULL) == CK_ELIMIT);
    CHECK(strstr(ck_errmsg(ctx), "x.safetensors: header would exceed the limit of 32 bytes (2 "
                                 "tensors, 0 metadata entries)") != NULL);
    CHECK(tfs_count_entries(dir) == 0);
    ck_model_close(empty);
    ck_model_close(two);
    free(b1);
    free(b2);
    tfs_rmtree(dir);
    ck_ctx_free(ctx);
}
