/*
 * scan.c -- ck_scan: every pickle in a file, through the loader's own parsers,
 * with a verdict for every global it names.
 *
 * What is scanned:
 *  - zip (torch, npz, hand-made): every record named *.pkl, every *.npy
 *    record holding an object array (its pickle after the npy header), and
 *    every other record that starts like a pickle (PROTO byte 0x80 then a
 *    protocol 0..5), except the raw storage records of a torch archive
 *    (<prefix>/data/... next to <prefix>/data.pkl) and its small text
 *    records. The zip directory must parse, but records flagged as encrypted
 *    and local headers at odds with the directory (name, method, flags: the
 *    classic ways to hide a record from a scanner) are read all the same, as
 *    a lenient unzipper would hand them to an unpickler: the scan fails on
 *    them, naming the first, and still reports every global of those records
 *    (cki_zip_open_lenient; the loader's own check, cki_scan_source, reads
 *    the zip strictly, as the loader does). Overlapping records still make
 *    the scan fail. Pickle records are CRC-checked, but a record whose CRC-32
 *    does not match is still scanned (its bytes are what a lenient unpickler
 *    would run), and the scan goes on to the next records after one that
 *    fails: the mismatch or parse failure is the scan's error, and every
 *    global met anywhere is still reported.
 *  - legacy torch stream: its five pickles, the storage layout after them,
 *    and whatever follows the layout;
 *  - torch tar: the pickles inside 'storages' and 'tensors' (by their
 *    layout), 'pickle', 'sys_info', and any other member starting like a
 *    pickle;
 *  - .npy: the pickle of an object array;
 *  - safetensors (and GGUF): no pickles; clean when the reader accepts the
 *    whole file, a failure otherwise (a truncated file is not clean);
 *  - any other file: a raw pickle stream.
 * After each STOP, bytes that remain (other than NULs and whitespace) must
 * form another pickle, which is scanned too: a loader reading pickles in a
 * row would run it. A pickle that cannot be parsed to its STOP fails the
 * scan (never "clean"); the globals met before the failure are still
 * reported, and so is the worst verdict: a dangerous global found is a fact
 * whatever fails after it. When several parts fail, the first failure is
 * the scan's error. A STACK_GLOBAL whose operands are not plain strings is reported
 * as module "?" name "?" and judged dangerous.
 */
#include <stdio.h>

#include "../formats/format.h"
#include "../convert/convert.h"
#include "../formats/torch_read.h"
#include "../formats/npy.h"
#include "../pickle/verdict.h"


typedef struct scanner {
    ck_ctx *ctx;
    const char *path;
    ck_scan_fn fn;
    void *user;
    ck_verdict worst;
    int lenient;                    /* ck_scan: zip through cki_zip_open_lenient */
    ck_status first;                /* the first failure of a part the scan went past */
    char first_msg[CKI_ERRMSG_MAX]; /* and its message */
} scanner;

/* Keeps ST (nonzero) as the scan's error if it is the first; returns 1 when
 * the scan can go on to the next part (anything but running out of memory). */
static int go_on(scanner *s, ck_status st)
{
    if (!s->first) {
        s->first = st;
        snprintf(s->first_msg, sizeof s->first_msg, "%s", ck_errmsg(s->ctx));
    }
    return st != CK_ENOMEM;
}

static void report(scanner *s, const char *where, const cki_pickle *pk)
{
    for (size_t i = 0; i < pk->global_count; i++) {
        const cki_pickle_global *g = &pk->globals[i];
        ck_scan_item item;
        item.where = where;
        item.offset = g->off;
        item.module = g->module ? g->module : "?";
        item.name = g->name ? g->name : "?";
        item.verdict = g->resolved ? cki_global_verdict(g->module, g->name) : CK_VERDICT_DANGEROUS;
        if (item.verdict > s->worst) s->worst = item.verdict;
        if (s->fn) s->fn(s->user, &item);
    }
}

static ck_status visit(void *user, const char *where, uint64_t off, const cki_pickle *pk)
{
    (void)off;
    report(user, where, pk);
    return CK_OK;
}

/* Pickles in a row in P[0..LEN), the first at BASE (reported offsets). */
static ck_status scan_pickles(scanner *s, const uint8_t *p, uint64_t len, const char *where,
                              uint64_t base)
{
    uint64_t pos = 0;
    unsigned n = 0;
    ck_status st = CK_OK;
    while (pos < len) {
        cki_arena arena;
        cki_pickle pk;
        char name[512];
        if (n && cki_torch_trivial_tail(p + pos, len - pos)) break;
        if (n)
            snprintf(name, sizeof name, "%s (pickle %u, after byte %llu)", where, n + 1,
                     (unsigned long long)(base + pos));
        else
            snprintf(name, sizeof name, "%s", where);
        cki_arena_init(&arena, s->ctx);
        st = cki_pickle_run_lean(s->ctx, &arena, NULL, p + pos, (size_t)(len - pos), s->path, name,
                            base + pos, &pk);
        report(s, name, &pk);
        cki_arena_free(&arena);
        if (st) return st;
        if (pk.end == 0) break;
        pos += pk.end;
        n++;
    }
    return st;
}

/* An .npy payload: the pickle of an object array (or of a structured array
 * with an object field), if it is one. The header goes through the readers'
 * own strict parser, so a header the loader would refuse fails the scan. */
static ck_status scan_npy(scanner *s, const uint8_t *p, uint64_t len, const char *where,
                          uint64_t base)
{
    cki_npy h;
    ck_status st = cki_npy_parse(s->ctx, s->path, where, p, len, &h);
    if (st) return st;
    if (h.kind != CKI_NPY_OBJECT) return CK_OK;
    return scan_pickles(s, p + h.data_off, len - h.data_off, where, base + h.data_off);
}

static int ends_with(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

/* Whether <prefix>/data.pkl exists, for the last prefix asked about (the
 * records of an archive share one prefix: one lookup, not one per record). */
typedef struct pkl_cache {
    char prefix[501];
    size_t len;   /* of prefix */
    int known;    /* prefix holds a prefix asked about */
    int has_pkl;  /* and the answer */
} pkl_cache;

/* 1 if NAME is a raw storage or small text record of a torch archive. */
static int torch_data_record(const cki_zip *z, const cki_zip_entry *e, pkl_cache *pc)
{
    static const char *const text[] = {"version", "byteorder", ".format_version",
                                       ".storage_alignment", "serialization_id"};
    const char *slash = memchr(e->name, '/', e->name_len);
    char pkl[600];
    size_t plen;
    if (!slash) return 0;
    plen = (size_t)(slash - e->name);
    if (plen > 500) return 0;
    if (!pc->known || pc->len != plen || memcmp(pc->prefix, e->name, plen) != 0) {
        memcpy(pkl, e->name, plen);
        memcpy(pkl + plen, "/data.pkl", 10);
        memcpy(pc->prefix, e->name, plen);
        pc->len = plen;
        pc->known = 1;
        pc->has_pkl = cki_zip_find(z, pkl, plen + 9) != NULL;
    }
    if (!pc->has_pkl) return 0;
    if (e->name_len > plen + 6 && !memcmp(slash, "/data/", 6)) return 1;
    for (size_t i = 0; i < sizeof text / sizeof text[0]; i++) {
        const char *b = strrchr(e->name, '/');
        if (b && !strcmp(b + 1, text[i])) return 1;
    }
    return 0;
}

static ck_status scan_zip(scanner *s, const cki_source *src, uint64_t junk_scan)
{
    cki_zip z;
    pkl_cache pc;
    ck_status st;
    pc.known = 0;
    if (src->view_len < src->len) /* a web window: records past it are read on demand */
        st = cki_zip_open_source(s->ctx, src, &z);
    else
        st = s->lenient ? cki_zip_open_lenient(s->ctx, s->path, src->base, src->len, &z)
                        : cki_zip_open(s->ctx, s->path, src->base, src->len, &z);
    if (st) return st;
    /* the directory and local headers are checked and copied: their pages
     * (one per record, all over the file) go back to the kernel */
    cki_source_release(src, 0, src->len);
    /* an encrypted flag or a local header at odds with the directory: the
     * failure of the scan, and the records are scanned all the same */
    if (z.problem && !go_on(s, cki_fail(s->ctx, z.problem, "%s", z.problem_msg))) {
        st = z.problem;
        goto done;
    }
    if (junk_scan && z.shift && src->base[0] == 0x80 &&
        (st = scan_pickles(s, src->base, z.shift, "bytes before the zip archive", 0)) &&
        !go_on(s, st))
        goto done;
    for (size_t i = 0; i < z.count; i++) {
        const cki_zip_entry *e = &z.entries[i];
        const uint8_t *data;
        uint64_t len;
        uint8_t *owned = NULL;
        int pkl = ends_with(e->name, e->name_len, ".pkl");
        int npy = ends_with(e->name, e->name_len, ".npy");
        if (!pkl && !npy) {
            uint8_t head[2];
            size_t got;
            if (torch_data_record(&z, e, &pc)) continue;
            if ((st = cki_zip_peek(&z, e, head, 2, &got))) {
                if (go_on(s, st)) continue;
                goto done;
            }
            if (got < 2 || head[0] != 0x80 || head[1] > 5) continue;
        }
        if ((st = cki_zip_read(&z, e, 0, &data, &len, &owned))) {
            if (go_on(s, st)) continue;
            goto done;
        }
        /* a CRC mismatch is reported, and the record scanned all the same */
        if ((st = cki_zip_check_crc(&z, e, data, len)) && !go_on(s, st)) {
            cki_free(s->ctx, owned);
            goto done;
        }
        st = npy ? scan_npy(s, data, len, e->name, 0) : scan_pickles(s, data, len, e->name, 0);
        cki_free(s->ctx, owned);
        if (st && !go_on(s, st)) goto done;
    }
    st = CK_OK;
done:
    cki_zip_close(&z);
    /* the pages read (directory, pickles) go back to the kernel: a loader
     * that scans first maps them again only as it reads them */
    cki_source_release(src, 0, src->len);
    return st;
}

static ck_status scan_legacy(scanner *s, const cki_source *src)
{
    cki_torch_file tf;
    ck_status st;
    if ((st = cki_torch_parse(s->ctx, s->path, src->base, src->len, CKI_TORCH_LEGACY, visit, s,
                              &tf)))
        return st;
    if (tf.data_end < src->len && !cki_torch_trivial_tail(src->base + tf.data_end,
                                                           src->len - tf.data_end))
        st = scan_pickles(s, src->base + tf.data_end, src->len - tf.data_end,
                          "bytes after the legacy storages", tf.data_end);
    cki_torch_close(&tf);
    return st;
}

/* Tar: the structured members through the torch parser, the others here. */
static ck_status tar_visit(void *user, const char *where, uint64_t off, const cki_pickle *pk)
{
    if (!strncmp(where, "tar member 'storages'", 21) || !strncmp(where, "tar member 'tensors'", 20))
        report(user, where, pk);
    return CK_OK;
}

static ck_status scan_tar(scanner *s, const cki_source *src)
{
    cki_tar t;
    cki_torch_file tf;
    ck_status st;
    if ((st = cki_tar_open(s->ctx, s->path, src->base, src->len, &t))) return st;
    for (size_t i = 0; i < t.count; i++) {
        const cki_tar_member *m = &t.members[i];
        const uint8_t *p = src->base + m->off;
        char where[300];
        if (!strcmp(m->name, "storages") || !strcmp(m->name, "tensors")) continue;
        if (strcmp(m->name, "pickle") != 0 && strcmp(m->name, "sys_info") != 0 &&
            !(m->len >= 2 && p[0] == 0x80 && p[1] <= 5))
            continue;
        snprintf(where, sizeof where, "tar member '%.200s'", m->name);
        if ((st = scan_pickles(s, p, m->len, where, m->off)) && !go_on(s, st)) break;
        st = CK_OK;
    }
    cki_tar_close(&t);
    if (st) return st;
    if ((st = cki_torch_parse(s->ctx, s->path, src->base, src->len, CKI_TORCH_TAR, tar_visit, s,
                              &tf)))
        return st;
    cki_torch_close(&tf);
    return CK_OK;
}

/* Scans every pickle of an open source (see ck_scan). Also used by the
 * loader, which refuses files whose pickles reference dangerous globals
 * anywhere, not only in the part torch.load would run. LENIENT: zip records
 * through cki_zip_open_lenient (ck_scan), else cki_zip_open (the loader). */
static ck_status scan_source(ck_ctx *ctx, const cki_source *src, ck_scan_fn fn, void *user,
                             ck_verdict *worst, int lenient)
{
    scanner s;
    ck_status st;
    const char *path = src->path;
    memset(&s, 0, sizeof s);
    s.lenient = lenient;
    s.ctx = ctx;
    s.path = path;
    s.fn = fn;
    s.user = user;
    s.worst = CK_VERDICT_ALLOWED;
    if (src->len == 0) return cki_fail(ctx, CK_EFORMAT, "%s: empty file: nothing to scan", path);
    if (src->view_len < src->len && cki_torch_sniff(src->base, src->view_len) == CKI_TORCH_ZIP) {
        /* a web window over a zip too large to hold whole: every record is
         * scanned as for a mapped file, through the windowed zip reader */
        st = scan_zip(&s, src, 0);
        if (worst) *worst = s.worst;
        if (s.first && st != CK_ENOMEM) return cki_fail(ctx, s.first, "%s", s.first_msg);
        return st;
    }
    if (src->view_len < src->len) { /* web window, not a zip: the readers' own checks */
        ck_model *m = NULL;
        st = ck_model_open(ctx, path, NULL, &m);
        ck_model_close(m);
        if (worst) *worst = s.worst;
        return st;
    }
    switch (cki_torch_sniff(src->base, src->len)) {
    case CKI_TORCH_ZIP: st = scan_zip(&s, src, 0); break;
    case CKI_TORCH_LEGACY: st = scan_legacy(&s, src); break;
    case CKI_TORCH_TAR: st = scan_tar(&s, src); break;
    default: {
        cki_zip z;
        const cki_format *f;
        if (src->len >= 10 && !memcmp(src->base, "\x93NUMPY", 6)) {
            st = scan_npy(&s, src->base, src->len, "npy array", 0);
            break;
        }
        ck_status zst = lenient ? cki_zip_open_lenient(NULL, path, src->base, src->len, &z)
                                : cki_zip_open(NULL, path, src->base, src->len, &z);
        if (!zst) { /* bytes before a zip */
            cki_zip_close(&z);
            st = scan_zip(&s, src, 1);
            break;
        }
        f = cki_format_detect(src);
        if (f && (!strcmp(f->name, "safetensors") || !strcmp(f->name, "gguf"))) {
            /* a format that holds no pickles: clean if its reader accepts
             * the whole file, else it is not what it claims to be */
            ck_open_opts o;
            ck_model *m = NULL;
            memset(&o, 0, sizeof o);
            o.format = f->name;
            st = ck_model_open(ctx, path, &o, &m);
            ck_model_close(m);
            break;
        }
        st = scan_pickles(&s, src->base, src->len, "pickle", 0);
        break;
    }
    }
    if (worst) *worst = s.worst; /* what was seen, even when a later pickle failed */
    if (s.first && st != CK_ENOMEM) /* the first failure, even when later parts passed */
        return cki_fail(ctx, s.first, "%s", s.first_msg);
    return st;
}

/* The loader's check: zip records are read as the loader reads them, so a
 * file it refuses for its zip structure fails here the same way. */
ck_status cki_scan_source(ck_ctx *ctx, const cki_source *src, ck_scan_fn fn, void *user,
                          ck_verdict *worst)
{
    return scan_source(ctx, src, fn, user, worst, 0);
}

/* Sharded input: every shard is scanned; items name the shard. */
typedef struct shard_relay {
    ck_scan_fn fn;
    void *user;
    const char *shard;
} shard_relay;

static void relay(void *user, const ck_scan_item *it)
{
    shard_relay *r = user;
    char where[1024];
    ck_scan_item copy = *it;
    snprintf(where, sizeof where, "%s: %s", r->shard, it->where);
    copy.where = where;
    if (r->fn) r->fn(r->user, &copy);
}

static ck_status scan_sharded(ck_ctx *ctx, const char *path, ck_scan_fn fn, void *user,
                              ck_verdict *worst)
{
    char **files;
    size_t n;
    ck_status st, first = CK_OK;
    char first_msg[CKI_ERRMSG_MAX];
    *worst = CK_VERDICT_ALLOWED;
    if ((st = cki_sharded_list(ctx, path, &files, &n))) return st;
    for (size_t i = 0; i < n && st != CK_ENOMEM; i++) { /* every shard, past failures */
        cki_source *src;
        ck_verdict w = CK_VERDICT_ALLOWED;
        shard_relay r = {fn, user, cki_basename(files[i])};
        if (!(st = cki_source_open(ctx, files[i], &src))) {
            cki_mem_allow_input(ctx, src->len);
            st = scan_source(ctx, src, relay, &r, &w, 1);
            if (w > *worst) *worst = w;
            cki_source_close(ctx, src);
        }
        if (st && !first) {
            first = st;
            snprintf(first_msg, sizeof first_msg, "%s", ck_errmsg(ctx));
        }
    }
    cki_sharded_list_free(ctx, files, n);
    if (first && st != CK_ENOMEM) return cki_fail(ctx, first, "%s", first_msg);
    return st;
}

ck_status ck_scan(ck_ctx *ctx, const char *path, ck_scan_fn fn, void *user, ck_verdict *worst)
{
    cki_source *src;
    ck_status st;
    ck_verdict w = CK_VERDICT_ALLOWED;
    if (!ctx || !path) return cki_fail(ctx, CK_EARG, "ck_scan: missing argument");
    cki_clear(ctx);
    if (cki_is_sharded_path(path)) {
        st = scan_sharded(ctx, path, fn, user, &w);
        if (worst) *worst = w;
        return st;
    }
    if ((st = cki_source_open(ctx, path, &src))) return st;
    cki_mem_allow_input(ctx, src->len);
    st = scan_source(ctx, src, fn, user, &w, 1);
    cki_source_close(ctx, src);
    if (worst) *worst = w; /* also on failure: what was found before or beside it */
    return st;
}
