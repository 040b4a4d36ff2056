/*
 * fmt_torch_read.c -- the "torch" reader: torch.save files in zip, legacy
 * and tar form (and Lightning .ckpt, which are torch.save zips).
 *
 * torch_parse.c turns the file into an object graph and storage locations;
 * torch_select.c picks the tensors and their names; this file binds each
 * storage once (a zero-copy range of the mapped file, or the inflated bytes
 * of a deflated record) and adds every tensor as a view of it
 * (cki_model_add_tensor checks that the view fits). Rules enforced here:
 *  - a zip storage record must hold numel x element size bytes (more is
 *    tolerated, less is refused); its CRC-32 is recorded for the convert
 *    path (checked there, fused with the copy), checked now when
 *    ck_open_opts.verify_crc is set, always checked for deflated records;
 *    a CRC of 0 on a non-empty record means "not computed": warned, skipped;
 *  - byteorder "big" marks multi-byte storages big-endian (swapped on read);
 *  - tensors ckptkit cannot represent (quantized, sparse, meta, nested, or a
 *    dtype without an equivalent) are skipped with a warning naming them,
 *    and still appear in the values JSON marked "unsupported".
 * Probe: PK\3\4 at 0 and a record whose name ends in /data.pkl (90); the
 * legacy magic (95); a ustar header and a member named 'pickle' (90); any
 * other PK\3\4 file or ustar header scores 20 so that its zip or tar error is
 * reported. Loading never runs anything; still, a pickle that references
 * globals that would be dangerous under a Python unpickler is refused
 * (CK_EUNSAFE) unless ck_open_opts.allow_unsafe is set, and then warned about.
 */
#include <stdio.h>

#include "format.h"
#include "torch_read.h"
#include "torch_values.h"

#include "../pickle/verdict.h"

static const char *const torch_exts[] = {".pt", ".pth", ".bin", ".ckpt", NULL};

static int is_data_pkl(const char *name, size_t len)
{
    return len >= 8 && !memcmp(name + len - 8, "data.pkl", 8) &&
           (len == 8 || name[len - 9] == '/');
}

static int probe(const cki_source *src)
{
    cki_torch_kind kind = cki_torch_sniff(src->base, src->len);
    if (kind == CKI_TORCH_LEGACY) return 95;
    if (kind == CKI_TORCH_ZIP) {
        cki_zip z;
        int score = 20;
        const char *first;
        size_t first_len;
        /* torch.save writes <prefix>/data.pkl first: known from the first
         * local header, without parsing a directory of perhaps 100,000
         * records here that the reader parses (and checks) anyway */
        if (cki_zip_first_name(src->base, src->view_len, &first, &first_len) &&
            is_data_pkl(first, first_len))
            return 90;
        if (cki_zip_open_source(NULL, src, &z)) return score;
        for (size_t i = 0; i < z.count; i++)
            if (is_data_pkl(z.entries[i].name, z.entries[i].name_len)) score = 90;
        cki_zip_close(&z);
        return score;
    }
    if (kind == CKI_TORCH_TAR) {
        cki_tar t;
        int score = 0;
        if (src->view_len < src->len) return 20; /* a web window: the reader refuses it */
        if (cki_tar_open(NULL, src->path, src->base, src->len, &t)) return 20;
        if (cki_tar_find(&t, "pickle")) score = 90;
        cki_tar_close(&t);
        return score;
    }
    return 0;
}

typedef struct reader {
    ck_model *m;
    const cki_source *src;
    cki_torch_file tf;
    int verify_crc;
    size_t dangerous; /* dangerous globals met */
    char first[200];  /* the first of them, "module.name" */
    /* value tree: tensor tobj address -> model index ((size_t)-1: skipped) */
    cki_map bound;
    size_t extra;     /* tensors added for the value tree only */
} reader;

static ck_status note_globals(void *user, const char *where, uint64_t off, const cki_pickle *pk)
{
    reader *rd = user;
    (void)where;
    (void)off;
    for (size_t i = 0; i < pk->global_count; i++) {
        const cki_pickle_global *g = &pk->globals[i];
        if (g->resolved && cki_global_verdict(g->module, g->name) != CK_VERDICT_DANGEROUS)
            continue;
        if (!rd->dangerous++)
            snprintf(rd->first, sizeof rd->first, "%s.%s", g->resolved ? g->module : "?",
                     g->resolved ? g->name : "?");
    }
    return CK_OK;
}

static ck_status bind_zip(reader *rd, cki_tstorage *s, ck_dtype dt, uint64_t need,
                          const char *name, cki_storage **out)
{
    cki_torch_file *tf = &rd->tf;
    const cki_zip_entry *e;
    const uint8_t *data;
    uint64_t len;
    uint8_t *owned = NULL;
    cki_storage *cs;
    ck_status st;
    char what[300];

    if ((st = cki_torch_zip_record(tf, s, name, &e))) return st;
    if (e->usize < need)
        return cki_fail(rd->m->ctx, CK_EFORMAT,
                        "%s: tensor '%s': storage '%s' needs %llu bytes (%llu x %u) but record "
                        "'%s' holds %llu",
                        rd->src->path, name, s->key, (unsigned long long)need,
                        (unsigned long long)s->numel, cki_tstorage_esize(s), e->name,
                        (unsigned long long)e->usize);
    if (e->method == CKI_ZIP_STORED && !cki_zip_in_view(&tf->zip, e)) {
        /* a web window: the record is read in chunks when used, its CRC
         * checked during a conversion's copy */
        if ((st = cki_zip_check_stored(&tf->zip, e))) return st;
        data = NULL;
        len = e->usize;
    } else if ((st = cki_zip_read(&tf->zip, e, rd->verify_crc, &data, &len, &owned))) {
        return st;
    }
    if (owned) {
        if ((st = cki_model_storage_owned(rd->m, owned, len, dt, &cs))) return st;
        cs->len = need;
        cs->crc_checked = 1;
    } else {
        /* the record's name is only needed by the message for bytes outside
         * the file: formatted only then (once per storage otherwise) */
        if (cki_out_of(e->data_off, need, rd->src->len))
            snprintf(what, sizeof what, "zip record '%.200s'", e->name);
        else
            memcpy(what, "zip record", sizeof "zip record");
        if ((st = cki_model_storage(rd->m, rd->src, e->data_off, need, dt, what, &cs))) return st;
        if (need == e->usize && e->crc != 0) {
            cs->crc_known = 1;
            cs->crc = e->crc;
            cs->crc_checked = rd->verify_crc != 0 && data != NULL;
        } else if (e->crc == 0 && e->usize) {
            cki_zip_check_crc(&tf->zip, e, data, len); /* warns once: CRC not computed */
        }
    }
    *out = cs;
    return CK_OK;
}

static ck_status bind(reader *rd, cki_tstorage *s, ck_dtype dt, const char *name,
                      cki_storage **out)
{
    cki_storage *cs = NULL;
    uint64_t need;
    unsigned es = cki_tstorage_esize(s);
    ck_status st;

    if (s->bound) {
        *out = s->bound;
        return CK_OK;
    }
    if (cki_mul_u64(&need, s->numel, es))
        return cki_fail(rd->m->ctx, CK_EFORMAT,
                        "%s: tensor '%s': storage '%s' of %llu elements x %u bytes overflows",
                        rd->src->path, name, s->key, (unsigned long long)s->numel, es);
    if (rd->tf.kind == CKI_TORCH_ZIP) {
        if ((st = bind_zip(rd, s, dt, need, name, &cs))) return st;
        cs->big_endian = rd->tf.big_endian && ck_dtype_bits(dt) > 8;
    } else {
        char what[300];
        if (!s->located)
            return cki_fail(rd->m->ctx, CK_EFORMAT, "%s: tensor '%s': storage '%s' has no data",
                            rd->src->path, name, s->key);
        snprintf(what, sizeof what, "storage '%.200s'", s->key);
        if ((st = cki_model_storage(rd->m, rd->src, s->where->data_off, s->where->data_len, dt,
                                    what, &cs)))
            return st;
    }
    cs->key = cki_arena_strdup(&rd->m->arena, s->key);
    if (!cs->key) return CK_ENOMEM;
    s->bound = cs;
    *out = cs;
    return CK_OK;
}

/* Tensor T under NAME; NAMED: NAME lives in the model's arena (the naming
 * walk put it there). */
static ck_status add_tensor(reader *rd, const cki_ttensor *t, const char *name, size_t name_len,
                            int named, size_t *index)
{
    cki_storage *cs = NULL;
    ck_status st;
    *index = (size_t)-1;
    if (t->unsupported) {
        char why[256];
        snprintf(why, sizeof why, "%s%s%s", t->unsupported, t->torch_dtype ? " " : "",
                 t->torch_dtype ? t->torch_dtype : "");
        cki_warn(rd->m->ctx, "%s: tensor '%s': %s: skipped (ckptkit cannot represent it)",
                 rd->src->path, name, why);
        return cki_model_add_skipped(rd->m, name, why);
    }
    if ((st = bind(rd, t->storage, t->dtype, name, &cs))) return st;
    if (named)
        return cki_model_add_tensor_named(rd->m, rd->src->path, name, name_len, t->dtype, t->ndim,
                                          t->shape, t->stride, t->offset, cs, t->flags, index);
    return cki_model_add_tensor(rd->m, rd->src->path, name, name_len, t->dtype, t->ndim,
                                t->shape, t->stride, t->offset, cs, t->flags, index);
}

static ck_status add_one(reader *rd, const cki_tnamed *nt, int named, size_t *index)
{
    return add_tensor(rd, nt->tensor->u.t, nt->name, nt->name_len, named, index);
}

/* Records tensor T's model index for the value tree (the first one wins when
 * a tensor is exposed under several names). */
static ck_status note_bound(reader *rd, const cki_tobj *t, size_t index)
{
    char *key = cki_arena_alloc(&rd->m->arena, sizeof t);
    if (!key) return CK_ENOMEM;
    memcpy(key, &t, sizeof t);
    return cki_map_put(&rd->bound, key, sizeof t, index, NULL) < 0 ? CK_ENOMEM : CK_OK;
}

static ck_status tree_tensor(void *user, const cki_tobj *t, size_t *index, const char **why)
{
    reader *rd = user;
    cki_tnamed nt;
    char name[48];
    ck_status st;
    *why = NULL;
    if (!cki_map_get(&rd->bound, (const char *)&t, sizeof t, index)) {
        if (*index == (size_t)-1) *why = t->u.t->unsupported ? t->u.t->unsupported : "skipped";
        return CK_OK;
    }
    snprintf(name, sizeof name, "<values>.%zu", rd->extra++);
    nt.name = name;
    nt.name_len = strlen(name);
    nt.tensor = (cki_tobj *)t;
    if ((st = add_one(rd, &nt, 0, index))) return st;
    if (*index == (size_t)-1) *why = t->u.t->unsupported ? t->u.t->unsupported : "skipped";
    return note_bound(rd, t, *index);
}

static ck_status set_meta(void *user, const char *key, const char *value)
{
    ck_model *m = user;
    return cki_model_set_meta(m, key, strlen(key), value, strlen(value));
}

/* The model of a zip file without a value tree: what the torch objects
 * give (Lightning metadata, the values' JSON, each tensor's description) is
 * taken first, then the objects go, and the model is built from the
 * descriptions (a 100,000-tensor file: about 13 MB less at that point).
 * Failures are reported in the same order as when the model is built first:
 * a tensor's before the metadata's or the JSON's. */
static ck_status build_lean(reader *rd, const cki_tselect *sel)
{
    ck_model *m = rd->m;
    const cki_ttensor **tts = cki_malloc(m->ctx, (sel->count ? sel->count : 1) * sizeof *tts);
    char *json = NULL, saved[CKI_ERRMSG_MAX];
    ck_status st = CK_OK, later;
    if (!tts) return CK_ENOMEM;
    for (size_t i = 0; i < sel->count; i++) tts[i] = sel->v[i].tensor->u.t;
    later = cki_torch_lightning_meta(rd->tf.root, set_meta, m);
    if (!later) later = cki_torch_values_json(&rd->tf.rec, rd->tf.root, sel, &json);
    if (later) memcpy(saved, m->ctx->errmsg, sizeof saved);
    cki_torch_drop_objects(&rd->tf);
    for (size_t i = 0; i < sel->count && !st; i++) {
        size_t index;
        st = add_tensor(rd, tts[i], sel->v[i].name, sel->v[i].name_len, 1, &index);
    }
    cki_free(m->ctx, tts);
    if (!st && later) {
        m->ctx->last = later;
        memcpy(m->ctx->errmsg, saved, sizeof saved);
        st = later;
    }
    if (st) {
        cki_free(m->ctx, json);
        return st;
    }
    cki_model_set_values(m, json);
    return CK_OK;
}

static ck_status torch_read(ck_model *m, const cki_source *src, const ck_open_opts *opts)
{
    reader rd;
    cki_tselect sel;
    cki_torch_kind kind = cki_torch_sniff(src->base, src->len);
    char *json = NULL;
    ck_status st;

    memset(&rd, 0, sizeof rd);
    memset(&sel, 0, sizeof sel);
    rd.m = m;
    rd.src = src;
    rd.verify_crc = opts && opts->verify_crc;
    cki_map_init(&rd.bound, m->ctx);
    if (kind == CKI_TORCH_NONE)
        return cki_fail(m->ctx, CK_EFORMAT,
                        "%s: not a PyTorch checkpoint (no zip signature, legacy magic number or "
                        "tar header at byte 0)",
                        src->path);
    if (kind != CKI_TORCH_ZIP && src->view_len < src->len) /* a web window */
        return cki_fail(m->ctx, CK_EUNSUPPORTED,
                        "%s: %llu bytes: files over %llu bytes are read here only in formats "
                        "whose header is at the start (safetensors, GGUF, torch zip); use the "
                        "ckptkit command for this one",
                        src->path, (unsigned long long)src->len,
                        (unsigned long long)CKI_SOURCE_WHOLE_MAX);
    if ((st = cki_torch_parse_source(m->ctx, src, kind, note_globals, &rd, &m->arena,
                              &rd.tf)))
        return st;
    if (rd.dangerous && !(opts && opts->allow_unsafe)) {
        st = cki_fail(m->ctx, CK_EUNSAFE,
                      "%s: refusing to load: the pickle references %s, which would run code under "
                      "Python's unpickler (%zu such global%s; see 'ckptkit scan'); nothing was run, "
                      "and --allow-unsafe extracts the tensors anyway",
                      src->path, rd.first, rd.dangerous, rd.dangerous == 1 ? "" : "s");
        cki_torch_close(&rd.tf);
        return st;
    }
    if (rd.dangerous)
        cki_warn(m->ctx,
                 "%s: the pickle references %zu global(s) that would run code under Python's "
                 "unpickler (first: %s); ckptkit never runs them (see 'ckptkit scan')",
                 src->path, rd.dangerous, rd.first);
    m->format_name = kind == CKI_TORCH_ZIP      ? "torch-zip"
                     : kind == CKI_TORCH_LEGACY ? "torch-legacy"
                                                : "torch-tar";
    rd.tf.rec.names = &m->arena; /* the model keeps the names the walk makes */
    if ((st = cki_torch_select(&rd.tf.rec, rd.tf.root, opts ? opts->key : NULL,
                               opts ? opts->all : 0, &sel)))
        goto done;
    if ((st = cki_model_reserve(m, m->count + sel.count, 0))) goto done;
    if (rd.tf.rec.desc && !(opts && opts->values)) {
        st = build_lean(&rd, &sel);
        goto done;
    }
    for (size_t i = 0; i < sel.count; i++) {
        size_t index;
        if ((st = add_one(&rd, &sel.v[i], 1, &index))) goto done;
        /* the value tree looks tensors up by object: only when one is made */
        if (opts && opts->values && (st = note_bound(&rd, sel.v[i].tensor, index))) goto done;
    }
    if ((st = cki_torch_lightning_meta(rd.tf.root, set_meta, m))) goto done;
    if ((st = cki_torch_values_json(&rd.tf.rec, rd.tf.root, &sel, &json))) goto done;
    cki_model_set_values(m, json);
    if (opts && opts->values &&
        (st = cki_torch_values_tree(m, &rd.tf.rec, rd.tf.root, tree_tensor, &rd, &m->values)))
        goto done;
done:
    cki_map_free(&rd.bound);
    cki_tselect_free(m->ctx, &sel);
    cki_torch_close(&rd.tf);
    return st;
}

const cki_format cki_fmt_torch = {
    .name = "torch",
    .exts = torch_exts,
    .caps = CKI_CAP_READ | CKI_CAP_WINDOW,
    .probe = probe,
    .read = torch_read,
    .write = NULL,
};
