/*
 * ckweb.c -- the WebAssembly entry points of the browser page, over the
 * public API only (include/ckptkit.h). The page's worker calls them with
 * paths in its WORKERFS mount; each returns one JSON document (borrowed:
 * valid until the next call), so the JavaScript side never walks C structs.
 *
 *   ckw_formats()               [{"name": "safetensors", "ext": ".safetensors"}, ...]
 *                               -- what this build writes, from the library
 *   ckw_scan(path)              {"verdict": "clean"|"unsafe"|"unparseable",
 *                                "error": "...", "items": [{where, offset, module,
 *                                name, verdict}, ...]}
 *   ckw_open(path, unsafe)      {"error": ...} or the summary: format, tensors,
 *                                parameters, bytes, dtypes, metadata, values,
 *                                list (name, dtype, shape, nbytes, storage)
 *   ckw_stats(i)                {"numel", "finite", "min", "max", "mean", "nan",
 *                                "posinf", "neginf"} read in chunks as F64
 *   ckw_convert(out, fmt, dtype, ema, prune, strip, include, exclude)
 *                               output bytes go to the page through
 *                               ck_ctx_set_output (no file is created here);
 *                               include/exclude are newline-separated globs
 *   ckw_close()                 closes the open model
 */
#include <emscripten.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ckptkit.h"

/* ---- JavaScript side (web/worker.js defines the ckw_js_* handlers) ------- */

EM_JS(int, js_out_open, (const char *path), { return ckwOutOpen(UTF8ToString(path)); });
EM_JS(int, js_out_write, (int id, double off, const void *p, size_t n),
      { return ckwOutWrite(id, off, HEAPU8.slice(p, p + n)); });
EM_JS(int, js_out_commit, (int id), { return ckwOutCommit(id); });
EM_JS(void, js_out_abort, (int id), { ckwOutAbort(id); });
EM_JS(void, js_progress, (double done, double total), { ckwProgress(done, total); });

/* ---- a growing JSON text ----------------------------------------------- */

typedef struct text {
    char *p;
    size_t len, cap;
} text;

static text out; /* the last answer */

static void put(text *t, const char *s, size_t n)
{
    if (t->len + n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        char *q;
        while (cap < t->len + n + 1) cap *= 2;
        q = realloc(t->p, cap);
        if (!q) abort(); /* the page reports a crashed worker as an error line */
        t->p = q;
        t->cap = cap;
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
    t->p[t->len] = 0;
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

static void putf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(text *t, const char *fmt, ...)
{
    char b[128];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(b, sizeof b, fmt, ap);
    va_end(ap);
    if (n > 0) put(t, b, (size_t)n < sizeof b ? (size_t)n : sizeof b - 1);
}

/* A JSON string; bytes that are not valid UTF-8 become U+FFFD. */
static void putq(text *t, const char *s)
{
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    puts_(t, "\"");
    while (*u) {
        unsigned c = *u;
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(t, e, 2);
            u++;
        } else if (c < 0x20) {
            putf(t, "\\u%04x", c);
            u++;
        } else if (c < 0x80) {
            put(t, (const char *)u, 1);
            u++;
        } else {
            int n = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
            int ok = n > 0;
            for (int i = 1; ok && i < n; i++) ok = (u[i] & 0xc0) == 0x80;
            if (ok) {
                put(t, (const char *)u, (size_t)n);
                u += n;
            } else {
                puts_(t, "\\ufffd");
                u++;
            }
        }
    }
    puts_(t, "\"");
}

static const char *answer_error(const char *msg)
{
    out.len = 0;
    puts_(&out, "{\"error\": ");
    putq(&out, msg);
    puts_(&out, "}");
    return out.p;
}

/* ---- state ------------------------------------------------------------- */

static ck_ctx *ctx;
static ck_model *model;

static ck_ctx *context(void)
{
    if (!ctx) ctx = ck_ctx_new();
    return ctx;
}

EMSCRIPTEN_KEEPALIVE void ckw_close(void)
{
    ck_model_close(model);
    model = NULL;
}

EMSCRIPTEN_KEEPALIVE const char *ckw_formats(void)
{
    const char *name, *ext;
    out.len = 0;
    puts_(&out, "[");
    for (size_t i = 0; (name = ck_output_format(i, &ext)); i++) {
        puts_(&out, i ? ", {\"name\": " : "{\"name\": ");
        putq(&out, name);
        puts_(&out, ", \"ext\": ");
        putq(&out, ext ? ext : "");
        puts_(&out, "}");
    }
    puts_(&out, "]");
    return out.p;
}

/* ---- scan -------------------------------------------------------------- */

static int scan_items;

static void on_global(void *user, const ck_scan_item *it)
{
    text *t = user;
    static const char *const v[] = {"allowed", "unknown", "dangerous"};
    puts_(t, scan_items++ ? ", {\"where\": " : "{\"where\": ");
    putq(t, it->where);
    putf(t, ", \"offset\": %llu, \"module\": ", (unsigned long long)it->offset);
    putq(t, it->module);
    puts_(t, ", \"name\": ");
    putq(t, it->name);
    puts_(t, ", \"verdict\": ");
    putq(t, v[it->verdict <= CK_VERDICT_DANGEROUS ? it->verdict : CK_VERDICT_DANGEROUS]);
    puts_(t, "}");
}

EMSCRIPTEN_KEEPALIVE const char *ckw_scan(const char *path)
{
    text items = {0};
    ck_verdict worst = CK_VERDICT_ALLOWED;
    ck_status st;
    if (!context()) return answer_error("out of memory");
    scan_items = 0;
    puts_(&items, "");
    st = ck_scan(ctx, path, on_global, &items, &worst);
    out.len = 0;
    puts_(&out, "{\"verdict\": ");
    puts_(&out, worst == CK_VERDICT_DANGEROUS ? "\"unsafe\"" : st ? "\"unparseable\"" : "\"clean\"");
    puts_(&out, ", \"error\": ");
    putq(&out, st ? ck_errmsg(ctx) : "");
    puts_(&out, ", \"items\": [");
    puts_(&out, items.p);
    puts_(&out, "]}");
    free(items.p);
    return out.p;
}

/* ---- open -------------------------------------------------------------- */

EMSCRIPTEN_KEEPALIVE const char *ckw_open(const char *path, int allow_unsafe)
{
    ck_open_opts o;
    size_t n, nmeta;
    uint64_t params = 0, bytes = 0, dt_count[CK_DT_COUNT] = {0};
    const char *values;
    ckw_close();
    if (!context()) return answer_error("out of memory");
    memset(&o, 0, sizeof o);
    o.allow_unsafe = allow_unsafe;
    if (ck_model_open(ctx, path, &o, &model)) return answer_error(ck_errmsg(ctx));
    n = ck_model_tensor_count(model);
    out.len = 0;
    puts_(&out, "{\"format\": ");
    putq(&out, ck_model_format(model));
    puts_(&out, ", \"list\": [");
    for (size_t i = 0; i < n; i++) {
        ck_tensor_info ti;
        if (ck_model_tensor(model, i, &ti)) return answer_error(ck_errmsg(ctx));
        params += ti.numel;
        bytes += ti.nbytes;
        if (ti.dtype >= 0 && ti.dtype < CK_DT_COUNT) dt_count[ti.dtype]++;
        puts_(&out, i ? ",\n{\"name\": " : "\n{\"name\": ");
        putq(&out, ti.name);
        puts_(&out, ", \"dtype\": ");
        putq(&out, ck_dtype_name(ti.dtype));
        puts_(&out, ", \"shape\": [");
        for (int d = 0; d < ti.ndim; d++) putf(&out, d ? ", %lld" : "%lld", (long long)ti.shape[d]);
        putf(&out, "], \"nbytes\": %llu, \"storage\": %llu, \"offset\": %llu}",
             (unsigned long long)ti.nbytes, (unsigned long long)ti.storage_id,
             (unsigned long long)ti.file_offset);
    }
    putf(&out, "], \"tensors\": %zu, \"parameters\": %llu, \"bytes\": %llu, \"dtypes\": {", n,
         (unsigned long long)params, (unsigned long long)bytes);
    for (int d = 0, k = 0; d < CK_DT_COUNT; d++) {
        if (!dt_count[d]) continue;
        if (k++) puts_(&out, ", ");
        putq(&out, ck_dtype_name((ck_dtype)d));
        putf(&out, ": %llu", (unsigned long long)dt_count[d]);
    }
    puts_(&out, "}, \"metadata\": {");
    nmeta = ck_model_meta_count(model);
    for (size_t i = 0; i < nmeta; i++) {
        const char *k, *v;
        if (ck_model_meta(model, i, &k, &v)) continue;
        if (i) puts_(&out, ", ");
        putq(&out, k);
        puts_(&out, ": ");
        putq(&out, v);
    }
    values = ck_model_values_json(model);
    puts_(&out, "}, \"values\": ");
    puts_(&out, values && *values ? values : "null");
    puts_(&out, "}");
    return out.p;
}

/* ---- statistics -------------------------------------------------------- */

#define STAT_CHUNK 65536

EMSCRIPTEN_KEEPALIVE const char *ckw_stats(int index)
{
    static double buf[STAT_CHUNK];
    ck_tensor_info ti;
    uint64_t nan = 0, pinf = 0, ninf = 0, finite = 0;
    double mn = INFINITY, mx = -INFINITY, sum = 0;
    if (!model) return answer_error("no checkpoint is open");
    if (ck_model_tensor(model, (size_t)index, &ti)) return answer_error(ck_errmsg(ctx));
    for (uint64_t first = 0; first < ti.numel;) {
        uint64_t k = ti.numel - first < STAT_CHUNK ? ti.numel - first : STAT_CHUNK;
        if (ck_model_read(model, (size_t)index, first, k, CK_DT_F64, buf, sizeof buf))
            return answer_error(ck_errmsg(ctx));
        for (uint64_t i = 0; i < k; i++) {
            double v = buf[i];
            if (isnan(v)) nan++;
            else if (isinf(v)) *(v > 0 ? &pinf : &ninf) += 1;
            else {
                finite++;
                sum += v;
                if (v < mn) mn = v;
                if (v > mx) mx = v;
            }
        }
        first += k;
    }
    out.len = 0;
    putf(&out, "{\"numel\": %llu, \"finite\": %llu, \"nan\": %llu, \"posinf\": %llu, "
               "\"neginf\": %llu",
         (unsigned long long)ti.numel, (unsigned long long)finite, (unsigned long long)nan,
         (unsigned long long)pinf, (unsigned long long)ninf);
    if (finite)
        putf(&out, ", \"min\": %.17g, \"max\": %.17g, \"mean\": %.17g", mn, mx,
             sum / (double)finite);
    puts_(&out, "}");
    return out.p;
}

/* ---- convert ------------------------------------------------------------ */

static int o_open(void *user, const char *path, void **file)
{
    int id = js_out_open(path);
    if (id <= 0) return 1;
    *file = (void *)(intptr_t)id;
    return 0;
}

static int o_write(void *user, void *file, uint64_t off, const void *p, size_t n)
{
    return js_out_write((int)(intptr_t)file, (double)off, p, n);
}

static int o_commit(void *user, void *file) { return js_out_commit((int)(intptr_t)file); }
static void o_abort(void *user, void *file) { js_out_abort((int)(intptr_t)file); }

static int on_progress(void *user, uint64_t done, uint64_t total)
{
    js_progress((double)done, (double)total);
    return 0;
}

/* Splits newline-separated globs into a NULL-terminated list (NULL if none);
 * the strings live in *STORE. */
static const char **globs(const char *lines, char **store)
{
    size_t n = 0, k = 0;
    const char **v;
    char *s;
    *store = NULL;
    if (!lines || !*lines) return NULL;
    s = *store = strdup(lines);
    if (!s) return NULL;
    for (const char *p = lines; *p; p++) n += *p == '\n';
    v = calloc(n + 2, sizeof *v);
    if (!v) return NULL;
    for (char *tok = strtok(s, "\n"); tok; tok = strtok(NULL, "\n"))
        if (*tok) v[k++] = tok;
    if (!k) {
        free(v);
        return NULL;
    }
    return v;
}

EMSCRIPTEN_KEEPALIVE const char *ckw_convert(const char *out_path, const char *format,
                                             const char *dtype, int ema, int prune,
                                             const char *strip, const char *include,
                                             const char *exclude)
{
    static const ck_output_ops ops = {o_open, o_write, o_commit, o_abort, NULL};
    ck_convert_opts o;
    ck_convert_stats cs;
    char *inc_store, *exc_store;
    const char **inc, **exc;
    ck_status st;
    if (!model) return answer_error("no checkpoint is open");
    memset(&o, 0, sizeof o);
    memset(&cs, 0, sizeof cs);
    o.format = format && *format ? format : NULL;
    o.dtype = CK_DT_KEEP;
    if (dtype && *dtype && ck_dtype_parse(dtype, &o.dtype))
        return answer_error("unknown dtype");
    o.ema = ema;
    o.prune = prune;
    o.strip_prefix = strip && *strip ? strip : NULL;
    inc = globs(include, &inc_store);
    exc = globs(exclude, &exc_store);
    o.include = inc;
    o.exclude = exc;
    ck_ctx_set_output(ctx, &ops);
    ck_ctx_set_progress(ctx, on_progress, NULL);
    st = ck_convert(ctx, model, out_path, &o, &cs);
    ck_ctx_set_progress(ctx, NULL, NULL);
    ck_ctx_set_output(ctx, NULL);
    free(inc);
    free(exc);
    free(inc_store);
    free(exc_store);
    if (st) return answer_error(ck_errmsg(ctx));
    out.len = 0;
    putf(&out, "{\"tensors\": %llu, \"bytes\": %llu, \"cast\": %llu, \"overflow\": %llu, "
               "\"underflow\": %llu, \"files\": %llu}",
         (unsigned long long)cs.tensors, (unsigned long long)cs.bytes,
         (unsigned long long)cs.cast_tensors, (unsigned long long)cs.overflow,
         (unsigned long long)cs.underflow, (unsigned long long)cs.shards);
    return out.p;
}
