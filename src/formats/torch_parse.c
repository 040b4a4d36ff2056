/*
 * torch_parse.c -- the three PyTorch containers down to an object graph and
 * storage locations (see torch_read.h for the layouts).
 *
 * Checks, zip: a directory that cki_zip_open accepts; the first record in a
 * folder; no constants.pkl (TorchScript); <prefix>/data.pkl present with a
 * good CRC; byteorder, if present, "little" or "big".
 * Legacy: five pickles in a row; the first is the magic number, the second
 * 1001; the key list holds unique keys, each used by some persistent id (its
 * class gives the element size) and each id's key listed; per key the stored
 * element count equals the id's numel and its bytes lie inside the file;
 * views lie inside their root storage.
 * Tar: members found by cki_tar_open; counts are ints >= 0 bounded by the
 * member's size; every storage's bytes and every view inside their member;
 * tensor ndim <= CKI_MAX_DIMS, sizes, strides and offsets >= 0; persistent
 * ids name a stored tensor or storage.
 */
#include <stdio.h>

#include "torch_read.h"

#include "../tensor/tensor.h"

const uint8_t cki_torch_legacy_magic[14] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                            0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

cki_torch_kind cki_torch_sniff(const uint8_t *p, uint64_t len)
{
    if (len >= 4 && p[0] == 'P' && p[1] == 'K' && p[2] == 3 && p[3] == 4) return CKI_TORCH_ZIP;
    /* the legacy magic number pickled with protocol 2 (torch's default) to 5:
     * PROTO n, then for 4 and 5 a FRAME opcode with its 8-byte length, then
     * LONG1 of 10 bytes; the parser checks the whole pickle later */
    if (len >= sizeof cki_torch_legacy_magic && p[0] == 0x80 && p[1] >= 2 && p[1] <= 5) {
        uint64_t at = p[1] >= 4 && p[2] == 0x95 ? 11 : 2;
        if (len >= at + 12 && !memcmp(p + at, cki_torch_legacy_magic + 2, 12))
            return CKI_TORCH_LEGACY;
    }
    if (cki_tar_sniff(p, len)) return CKI_TORCH_TAR;
    return CKI_TORCH_NONE;
}

int cki_torch_trivial_tail(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] != 0 && p[i] != ' ' && p[i] != '\n' && p[i] != '\r' && p[i] != '\t')
            return 0;
    return 1;
}

void cki_torch_close(cki_torch_file *tf)
{
    if (!tf) return;
    if (tf->zip_open) cki_zip_close(&tf->zip);
    if (tf->tar_open) cki_tar_close(&tf->tar);
    cki_free(tf->ctx, tf->pkl_owned);
    cki_free(tf->ctx, tf->tar_tensor_objs);
    cki_map_free(&tf->tar_tensors);
    cki_trec_free(&tf->rec);
    cki_arena_free(&tf->arena);
    cki_arena_free(&tf->desc);
    memset(tf, 0, sizeof *tf);
}

void cki_torch_drop_objects(cki_torch_file *tf)
{
    if (!tf->rec.desc) return; /* the descriptions share the objects' arena */
    cki_arena_free(&tf->arena);
    tf->root = NULL;
}

static const char *fmt_where(cki_torch_file *tf, const char *fmt, const char *a, uint64_t n)
{
    char tmp[256];
    snprintf(tmp, sizeof tmp, fmt, a, (unsigned long long)n);
    return cki_arena_strdup(&tf->arena, tmp);
}

static ck_status run(cki_torch_file *tf, const uint8_t *p, uint64_t len, const char *where,
                     uint64_t off, cki_torch_visit_fn visit, void *user, cki_pickle *pk)
{
    ck_status st, vs;
    if (!where) return CK_ENOMEM;
    if ((uint64_t)(size_t)len != len) len = SIZE_MAX;
    /* the reader's zip graph is converted and dropped: the lean run */
    st = tf->pk_arena ? cki_pickle_run_lean(tf->ctx, tf->pk_arena, tf->text, p, (size_t)len,
                                            tf->file, where, off, pk)
                      : cki_pickle_run(tf->ctx, &tf->arena, p, (size_t)len, tf->file, where,
                                       off, pk);
    if (visit) {
        char saved[CKI_ERRMSG_MAX];
        ck_status last = tf->ctx->last;
        memcpy(saved, tf->ctx->errmsg, sizeof saved);
        vs = visit(user, where, off, pk);
        if (st) { /* the parse failure is the message to keep */
            tf->ctx->last = last;
            memcpy(tf->ctx->errmsg, saved, sizeof saved);
        } else if (vs) {
            st = vs;
        }
    }
    return st;
}

static const char *text_of(cki_torch_file *tf, const cki_pv *v)
{
    char tmp[32];
    if (v && (v->kind == CKI_PV_STR || v->kind == CKI_PV_BYTES) && !memchr(v->u.s.p, 0, v->u.s.len))
        return v->u.s.p;
    if (v && v->kind == CKI_PV_INT) {
        snprintf(tmp, sizeof tmp, "%lld", (long long)v->u.i);
        return cki_arena_strdup(&tf->arena, tmp);
    }
    return NULL;
}

static cki_tstorage *find_storage(cki_torch_file *tf, const char *key)
{
    return cki_trec_find_storage(&tf->rec, key);
}

/* ---- zip ------------------------------------------------------------------ */

static const cki_zip_entry *find_rec(cki_torch_file *tf, const char *name)
{
    char tmp[512];
    int n = snprintf(tmp, sizeof tmp, "%s/%s", tf->prefix, name);
    if (n < 0 || (size_t)n >= sizeof tmp) return NULL;
    return cki_zip_find(&tf->zip, tmp, (size_t)n);
}

ck_status cki_torch_zip_record(cki_torch_file *tf, const cki_tstorage *s, const char *name,
                               const cki_zip_entry **out)
{
    cki_buf b;
    const cki_zip_entry *e;
    cki_buf_init(&b, tf->ctx, 0);
    /* "<prefix>/data/<key>", once per storage: pieces, no format */
    cki_buf_puts(&b, tf->prefix);
    cki_buf_put(&b, "/data/", 6);
    cki_buf_puts(&b, s->key);
    if (b.failed) {
        cki_buf_free(&b);
        return CK_ENOMEM;
    }
    e = cki_zip_find(&tf->zip, b.p, b.len);
    if (!e) {
        ck_status st = cki_fail(tf->ctx, CK_EFORMAT,
                                "%s: tensor '%s': storage '%s' has no record '%s' in the archive",
                                tf->file, name, s->key, b.p);
        cki_buf_free(&b);
        return st;
    }
    cki_buf_free(&b);
    *out = e;
    return CK_OK;
}

static ck_status parse_zip(cki_torch_file *tf, cki_torch_visit_fn visit, void *user)
{
    const cki_zip_entry *first, *pkl, *bo;
    const char *slash;
    const uint8_t *data;
    uint64_t dlen;
    cki_pickle pk;
    cki_arena pka;
    ck_status st;

    if ((st = tf->src ? cki_zip_open_source(tf->ctx, tf->src, &tf->zip)
                      : cki_zip_open(tf->ctx, tf->file, tf->base, tf->len, &tf->zip)))
        return st;
    tf->zip_open = 1;
    /* directory and local headers are checked and copied: their pages can go */
    cki_source_release(tf->src, 0, tf->len);
    if (tf->zip.count == 0)
        return cki_fail(tf->ctx, CK_EFORMAT, "%s: zip archive has no records", tf->file);
    first = &tf->zip.entries[0];
    slash = memchr(first->name, '/', first->name_len);
    if (!slash || slash == first->name)
        return cki_fail(tf->ctx, CK_EFORMAT,
                        "%s: first zip record '%.*s' is not inside a folder (torch archives keep "
                        "every record under one prefix folder)",
                        tf->file, (int)(first->name_len > 200 ? 200 : first->name_len),
                        first->name);
    if ((size_t)(slash - first->name) > 400)
        return cki_fail(tf->ctx, CK_EFORMAT, "%s: record prefix of %zu bytes is too long",
                        tf->file, (size_t)(slash - first->name));
    tf->prefix = cki_arena_strndup(&tf->desc, first->name, (size_t)(slash - first->name));
    if (!tf->prefix) return CK_ENOMEM;
    if (find_rec(tf, "constants.pkl"))
        return cki_fail(tf->ctx, CK_EUNSUPPORTED,
                        "%s: this is a TorchScript archive (it has '%s/constants.pkl'), not a "
                        "torch.save checkpoint; ckptkit does not read TorchScript",
                        tf->file, tf->prefix);
    pkl = find_rec(tf, "data.pkl");
    if (!pkl)
        return cki_fail(tf->ctx, CK_EFORMAT,
                        "%s: no record '%s/data.pkl' in the archive (not a torch.save "
                        "checkpoint)",
                        tf->file, tf->prefix);
    bo = find_rec(tf, "byteorder");
    if (bo) {
        uint8_t *owned;
        uint64_t n;
        if ((st = cki_zip_read(&tf->zip, bo, 1, &data, &n, &owned))) return st;
        while (n && (data[n - 1] == '\n' || data[n - 1] == ' ' || data[n - 1] == '\r')) n--;
        if (n == 3 && !memcmp(data, "big", 3)) {
            tf->big_endian = 1;
        } else if (!(n == 6 && !memcmp(data, "little", 6))) {
            cki_free(tf->ctx, owned);
            return cki_fail(tf->ctx, CK_EFORMAT,
                            "%s: record '%s': byte order is neither 'little' nor 'big' (%llu "
                            "bytes)",
                            tf->file, bo->name, (unsigned long long)n);
        }
        cki_free(tf->ctx, owned);
    }
    if ((st = cki_zip_read(&tf->zip, pkl, 1, &data, &dlen, &tf->pkl_owned))) return st;
    tf->where = pkl->name;
    if (!tf->src) {
        /* cki_torch_parse: the caller may walk the value graph (pv_root) */
        if ((st = run(tf, data, dlen, pkl->name, 0, visit, user, &pk))) return st;
        tf->rec.where = tf->where;
        tf->pv_root = pk.root;
        return cki_trec_convert(&tf->rec, pk.root, &tf->root);
    }
    /* cki_torch_parse_source (the reader): the value graph lives only until
     * it is converted: the torch objects copy the strings they keep, and the
     * graph's memory is free before the model is built (a 100,000-tensor
     * file: about 90 MiB); pv_root stays NULL */
    cki_arena_init(&pka, tf->ctx);
    /* the records are found again only after the graph is gone: the name
     * index (about 40 bytes a record) makes room for the graph meanwhile */
    cki_zip_index_drop(&tf->zip);
    /* the texts kept past the graph (TEXT) lie together rather than between
     * the graph's blocks, whose memory then comes back in one piece: room for
     * texts of half data.pkl's size (pages are used only as filled) */
    if (tf->text && cki_arena_reserve(tf->text, (size_t)(dlen / 2)))
        return CK_ENOMEM;
    tf->pk_arena = &pka; /* for this run only */
    st = run(tf, data, dlen, pkl->name, 0, visit, user, &pk);
    tf->pk_arena = NULL;
    cki_source_release(tf->src, 0, tf->len); /* data.pkl: its strings are copied */
    if (!st) {
        tf->rec.where = tf->where;
        tf->rec.copy_strings = 1;
        tf->rec.text = tf->text; /* stays set: every text of the objects is there */
        tf->rec.desc = &tf->desc;
        tf->rec.graph_texts = pk.texts;
        st = cki_trec_convert(&tf->rec, pk.root, &tf->root);
        tf->rec.copy_strings = 0;
    }
    cki_arena_free(&pka);
    /* the storages by key serve the conversion only (a zip's storages are
     * then reached from their tensors): their index goes before the
     * records' index comes back */
    cki_trec_drop_index(&tf->rec);
    if (!st) st = cki_zip_index_build(&tf->zip);
    return st;
}

/* ---- legacy stream ----------------------------------------------------------- */

typedef struct root_loc {
    uint64_t off, bytes, numel;
    unsigned esize;
    int used;
} root_loc;

static ck_status legacy_layout(cki_torch_file *tf, const cki_pv *keys, uint64_t pos)
{
    cki_map keymap;
    root_loc *locs = NULL;
    ck_status st = CK_OK;
    uint32_t n;

    if (!keys || (keys->kind != CKI_PV_LIST && keys->kind != CKI_PV_TUPLE))
        return cki_fail(tf->ctx, CK_EFORMAT,
                        "%s: legacy pickle 5 (storage keys): not a list of keys", tf->file);
    n = keys->n;
    cki_map_init(&keymap, tf->ctx);
    locs = cki_calloc(tf->ctx, n ? n : 1, sizeof *locs);
    if (!locs) return CK_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        const char *k = text_of(tf, keys->items[i]);
        size_t dummy;
        int r;
        if (!k) {
            st = cki_fail(tf->ctx, CK_EFORMAT,
                          "%s: legacy pickle 5 (storage keys): entry %u is not a string", tf->file,
                          i);
            goto done;
        }
        r = cki_map_put(&keymap, k, strlen(k), i, &dummy);
        if (r < 0) {
            st = CK_ENOMEM;
            goto done;
        }
        if (r == 1) {
            st = cki_fail(tf->ctx, CK_EFORMAT,
                          "%s: legacy pickle 5 (storage keys): key '%s' is listed twice",
                          tf->file, k);
            goto done;
        }
    }
    for (size_t s = 0; s < tf->rec.storage_count; s++) {
        cki_tstorage *ts = tf->rec.storages[s];
        unsigned es = cki_tstorage_esize(ts);
        size_t i;
        if (cki_map_get(&keymap, ts->key, strlen(ts->key), &i)) {
            st = cki_fail(tf->ctx, CK_EFORMAT,
                          "%s: storage '%s' is used by the object but missing from the storage "
                          "key list",
                          tf->file, ts->key);
            goto done;
        }
        if (locs[i].used && (locs[i].esize != es || locs[i].numel != ts->numel)) {
            st = cki_fail(tf->ctx, CK_EFORMAT,
                          "%s: storage '%s' is described with two element sizes or lengths (%u "
                          "x %llu and %u x %llu)",
                          tf->file, ts->key, locs[i].esize, (unsigned long long)locs[i].numel, es,
                          (unsigned long long)ts->numel);
            goto done;
        }
        locs[i].used = 1;
        locs[i].esize = es;
        locs[i].numel = ts->numel;
    }
    for (uint32_t i = 0; i < n; i++) {
        const char *k = text_of(tf, keys->items[i]);
        uint64_t count;
        if (!locs[i].used) {
            st = cki_fail(tf->ctx, CK_EFORMAT,
                          "%s: storage key '%s' is listed but no object uses it (its element "
                          "size is unknown)",
                          tf->file, k);
            goto done;
        }
        if (cki_out_of(pos, 8, tf->len)) {
            st = cki_fail(tf->ctx, CK_EFORMAT,
                          "%s: storage '%s': element count at byte %llu is past the end of the "
                          "%llu-byte file",
                          tf->file, k, (unsigned long long)pos, (unsigned long long)tf->len);
            goto done;
        }
        count = cki_ld_le64(tf->base + pos);
        if (count != locs[i].numel) {
            st = cki_fail(tf->ctx, CK_EFORMAT,
                          "%s: storage '%s': the stream holds %llu elements but the object says "
                          "%llu",
                          tf->file, k, (unsigned long long)count,
                          (unsigned long long)locs[i].numel);
            goto done;
        }
        if (cki_mul_u64(&locs[i].bytes, count, locs[i].esize) ||
            cki_out_of(pos + 8, locs[i].bytes, tf->len)) {
            st = cki_fail(tf->ctx, CK_EFORMAT,
                          "%s: storage '%s': %llu elements of %u bytes at byte %llu run past the "
                          "end of the %llu-byte file",
                          tf->file, k, (unsigned long long)count, locs[i].esize,
                          (unsigned long long)(pos + 8), (unsigned long long)tf->len);
            goto done;
        }
        locs[i].off = pos + 8;
        pos += 8 + locs[i].bytes;
    }
    for (size_t s = 0; s < tf->rec.storage_count; s++) {
        cki_tstorage *ts = tf->rec.storages[s];
        size_t i;
        cki_map_get(&keymap, ts->key, strlen(ts->key), &i);
        cki_tstorage_where *w = cki_tstorage_where_of(&tf->rec, ts);
        if (!w) {
            st = CK_ENOMEM;
            goto done;
        }
        ts->located = 1;
        w->data_off = locs[i].off;
        w->data_len = locs[i].bytes;
        if (ts->is_view) {
            unsigned es = locs[i].esize;
            if (w->view_off > locs[i].numel || w->view_size > locs[i].numel - w->view_off) {
                st = cki_fail(tf->ctx, CK_EFORMAT,
                              "%s: storage view '%s' of '%s': elements [%llu, +%llu) lie outside "
                              "its root of %llu",
                              tf->file, w->view_key, ts->key, (unsigned long long)w->view_off,
                              (unsigned long long)w->view_size,
                              (unsigned long long)locs[i].numel);
                goto done;
            }
            w->data_off += w->view_off * es;
            w->data_len = w->view_size * es;
        }
    }
    tf->data_end = pos;
done:
    cki_map_free(&keymap);
    cki_free(tf->ctx, locs);
    return st;
}

static ck_status parse_legacy(cki_torch_file *tf, cki_torch_visit_fn visit, void *user)
{
    static const char *const names[5] = {
        "legacy pickle 1 (magic number)", "legacy pickle 2 (protocol version)",
        "legacy pickle 3 (sys_info)",     "legacy pickle 4 (object)",
        "legacy pickle 5 (storage keys)",
    };
    cki_pickle pk[5];
    uint64_t pos = 0;
    ck_status st;
    int64_t proto;

    for (int i = 0; i < 5; i++) {
        if ((st = run(tf, tf->base + pos, tf->len - pos, names[i], pos, visit, user, &pk[i])))
            return st;
        pos += pk[i].end;
        if (i == 0) {
            const cki_pv *m = pk[0].root;
            if (m->kind != CKI_PV_BIGINT || m->u.s.len != 10 ||
                memcmp(m->u.s.p, cki_torch_legacy_magic + 4, 10) != 0)
                return cki_fail(tf->ctx, CK_EFORMAT,
                                "%s: legacy stream: first pickle is not the magic number "
                                "0x1950a86a20f9469cfc6c",
                                tf->file);
        } else if (i == 1) {
            if (cki_pv_to_i64(pk[1].root, &proto))
                return cki_fail(tf->ctx, CK_EFORMAT,
                                "%s: legacy stream: protocol version is a %s, not 1001",
                                tf->file, cki_pv_kind_name(pk[1].root->kind));
            if (proto != 1001)
                return cki_fail(tf->ctx, CK_EFORMAT,
                                "%s: legacy stream: protocol version %lld (1001 expected)",
                                tf->file, (long long)proto);
        } else if (i == 2) {
            const cki_pv *le = cki_pv_dict_get(pk[2].root, "little_endian");
            if (le && le->kind == CKI_PV_BOOL && le->u.i == 0)
                cki_warn(tf->ctx,
                         "%s: legacy stream written on a big-endian machine: storages are read "
                         "as little-endian, as torch does",
                         tf->file);
        }
    }
    tf->where = names[3];
    tf->rec.where = tf->where;
    tf->pv_root = pk[3].root;
    if ((st = cki_trec_convert(&tf->rec, pk[3].root, &tf->root))) return st;
    return legacy_layout(tf, pk[4].root, pos);
}

/* ---- tar --------------------------------------------------------------------- */

static ck_status tar_persid(void *user, cki_trec *r, const cki_pv *pid, uint64_t off,
                           cki_tobj **out)
{
    cki_torch_file *tf = user;
    const char *k;
    size_t i;
    cki_tstorage *s;
    cki_tobj *t;
    if (pid && pid->kind == CKI_PV_TUPLE && pid->n >= 1) /* (class, source file, source) */
        return cki_trec_convert(r, pid->items[0], out);
    k = text_of(tf, pid);
    if (!k)
        return cki_fail(tf->ctx, CK_EFORMAT,
                        "%s: tar member 'pickle': persistent id at byte %llu is not a key",
                        tf->file, (unsigned long long)off);
    if (!cki_map_get(&tf->tar_tensors, k, strlen(k), &i)) {
        *out = tf->tar_tensor_objs[i];
        return CK_OK;
    }
    if (!(s = find_storage(tf, k)))
        return cki_fail(tf->ctx, CK_EFORMAT,
                        "%s: tar member 'pickle': persistent id '%s' at byte %llu names no stored "
                        "tensor or storage",
                        tf->file, k, (unsigned long long)off);
    t = cki_arena_alloc(&tf->arena, sizeof *t);
    if (!t) return CK_ENOMEM;
    memset(t, 0, sizeof *t);
    t->kind = CKI_TO_STORAGE;
    t->u.st = s;
    t->off = off;
    *out = t;
    return CK_OK;
}

/* A count pickle at the start of a member: an int in [0, max]. */
static ck_status tar_count(cki_torch_file *tf, const cki_tar_member *m, uint64_t *pos,
                           uint64_t max, cki_torch_visit_fn visit, void *user, uint64_t *count)
{
    cki_pickle pk;
    int64_t n;
    ck_status st;
    const char *where = fmt_where(tf, "tar member '%s' pickle %llu", m->name, 1);
    if ((st = run(tf, tf->base + m->off, m->len, where, m->off, visit, user, &pk))) return st;
    *pos = pk.end;
    if (cki_pv_to_i64(pk.root, &n) || n < 0 || (uint64_t)n > max)
        return cki_fail(tf->ctx, CK_EFORMAT,
                        "%s: tar member '%s': count is not an integer in [0, %llu]", tf->file,
                        m->name, (unsigned long long)max);
    *count = (uint64_t)n;
    return CK_OK;
}

static ck_status tar_storages(cki_torch_file *tf, const cki_tar_member *m,
                              cki_torch_visit_fn visit, void *user)
{
    uint64_t pos, count;
    ck_status st;
    const uint8_t *p = tf->base + m->off;
    if ((st = tar_count(tf, m, &pos, m->len / 10, visit, user, &count))) return st;
    for (uint64_t i = 0; i < count; i++) {
        cki_pickle pk;
        const cki_pv *t, *type;
        const char *key, *where = fmt_where(tf, "tar member '%s' pickle %llu", m->name, i + 2);
        uint64_t n, bytes;
        cki_tstorage *s;
        if ((st = run(tf, p + pos, m->len - pos, where, m->off + pos, visit, user, &pk)))
            return st;
        pos += pk.end;
        t = pk.root;
        type = t && t->kind == CKI_PV_TUPLE && t->n == 3 ? t->items[2] : NULL;
        if (!type || type->kind != CKI_PV_GLOBAL || !(key = text_of(tf, t->items[0])))
            return cki_fail(tf->ctx, CK_EFORMAT,
                            "%s: %s: storage header is not (key, location, storage class)",
                            tf->file, where);
        if (cki_out_of(pos, 8, m->len))
            return cki_fail(tf->ctx, CK_EFORMAT,
                            "%s: tar member '%s': storage '%s' element count runs past the member",
                            tf->file, m->name, key);
        n = cki_ld_le64(p + pos);
        tf->rec.where = where;
        if ((st = cki_trec_storage(&tf->rec, key, NULL, type->u.g.module, type->u.g.name, n,
                                   m->off + pos, &s)))
            return st;
        if (cki_mul_u64(&bytes, n, cki_tstorage_esize(s)) || cki_out_of(pos + 8, bytes, m->len))
            return cki_fail(tf->ctx, CK_EFORMAT,
                            "%s: tar member '%s': storage '%s' of %llu elements runs past the "
                            "member's %llu bytes",
                            tf->file, m->name, key, (unsigned long long)n,
                            (unsigned long long)m->len);
        if (!cki_tstorage_where_of(&tf->rec, s)) return CK_ENOMEM;
        s->located = 1;
        s->where->data_off = m->off + pos + 8;
        s->where->data_len = bytes;
        pos += 8 + bytes;
    }
    if (pos < m->len && !cki_torch_trivial_tail(p + pos, m->len - pos)) {
        cki_pickle pk;
        const char *where =
            fmt_where(tf, "tar member '%s' pickle %llu (views)", m->name, count + 2);
        const cki_pv *views;
        if ((st = run(tf, p + pos, m->len - pos, where, m->off + pos, visit, user, &pk)))
            return st;
        views = pk.root;
        if (!views || (views->kind != CKI_PV_LIST && views->kind != CKI_PV_TUPLE))
            return cki_fail(tf->ctx, CK_EFORMAT, "%s: %s: storage views are not a list",
                            tf->file, where);
        for (uint32_t i = 0; i < views->n; i++) {
            const cki_pv *v = views->items[i];
            const char *target, *rootk;
            int64_t off, numel;
            cki_tstorage *root, *s;
            unsigned es;
            if (!v || v->kind != CKI_PV_TUPLE || v->n != 4 ||
                !(target = text_of(tf, v->items[0])) || !(rootk = text_of(tf, v->items[1])) || cki_pv_to_i64(v->items[2], &off) ||
                cki_pv_to_i64(v->items[3], &numel) || off < 0 || numel < 0)
                return cki_fail(tf->ctx, CK_EFORMAT,
                                "%s: %s: view %u is not (key, root key, offset, numel)", tf->file,
                                where, i);
            if (!(root = find_storage(tf, rootk)) || !root->located)
                return cki_fail(tf->ctx, CK_EFORMAT, "%s: %s: view '%s' of unknown storage '%s'",
                                tf->file, where, target, rootk);
            es = cki_tstorage_esize(root);
            if ((uint64_t)off > root->numel || (uint64_t)numel > root->numel - (uint64_t)off)
                return cki_fail(tf->ctx, CK_EFORMAT,
                                "%s: %s: view '%s' elements [%lld, +%lld) lie outside storage "
                                "'%s' of %llu",
                                tf->file, where, target, (long long)off, (long long)numel, rootk,
                                (unsigned long long)root->numel);
            tf->rec.where = where;
            if ((st = cki_trec_storage(&tf->rec, target, NULL, "torch", root->type_name,
                                       (uint64_t)numel, m->off, &s)))
                return st;
            if (!cki_tstorage_where_of(&tf->rec, s)) return CK_ENOMEM;
            s->located = 1;
            s->where->data_off = root->where->data_off + (uint64_t)off * es;
            s->where->data_len = (uint64_t)numel * es;
        }
    }
    return CK_OK;
}

static ck_status tar_tensors(cki_torch_file *tf, const cki_tar_member *m,
                             cki_torch_visit_fn visit, void *user)
{
    uint64_t pos, count;
    ck_status st;
    const uint8_t *p = tf->base + m->off;
    if ((st = tar_count(tf, m, &pos, m->len / 24, visit, user, &count))) return st;
    tf->tar_tensor_objs = cki_calloc(tf->ctx, count ? (size_t)count : 1, sizeof(cki_tobj *));
    if (!tf->tar_tensor_objs) return CK_ENOMEM;
    for (uint64_t i = 0; i < count; i++) {
        cki_pickle pk;
        const cki_pv *t;
        const char *key, *skey;
        const char *where = fmt_where(tf, "tar member '%s' pickle %llu", m->name, i + 2);
        cki_tstorage *s;
        cki_ttensor *tt;
        cki_tobj *o;
        uint32_t ndim;
        int64_t off;
        size_t dummy;
        int r;
        if ((st = run(tf, p + pos, m->len - pos, where, m->off + pos, visit, user, &pk)))
            return st;
        pos += pk.end;
        t = pk.root;
        if (!t || t->kind != CKI_PV_TUPLE || t->n != 3 || !(key = text_of(tf, t->items[0])) ||
            !(skey = text_of(tf, t->items[1])))
            return cki_fail(tf->ctx, CK_EFORMAT,
                            "%s: %s: tensor header is not (key, storage key, class)", tf->file,
                            where);
        if (!(s = find_storage(tf, skey)))
            return cki_fail(tf->ctx, CK_EFORMAT, "%s: %s: tensor '%s' uses unknown storage '%s'",
                            tf->file, where, key, skey);
        if (cki_out_of(pos, 8, m->len))
            return cki_fail(tf->ctx, CK_EFORMAT, "%s: %s: tensor '%s' record is truncated",
                            tf->file, where, key);
        ndim = cki_ld_le32(p + pos);
        if (ndim > CKI_MAX_DIMS || cki_out_of(pos + 8, 16ull * ndim + 8, m->len))
            return cki_fail(tf->ctx, CK_EFORMAT,
                            "%s: %s: tensor '%s': %u dimensions (at most %d) or record truncated",
                            tf->file, where, key, ndim, CKI_MAX_DIMS);
        tt = cki_arena_alloc(&tf->arena, sizeof *tt);
        o = cki_arena_alloc(&tf->arena, sizeof *o);
        if (!tt || !o) return CK_ENOMEM;
        memset(tt, 0, sizeof *tt);
        memset(o, 0, sizeof *o);
        tt->shape = cki_arena_alloc(&tf->arena, sizeof(int64_t) * (ndim ? ndim : 1));
        tt->stride = cki_arena_alloc(&tf->arena, sizeof(int64_t) * (ndim ? ndim : 1));
        if (!tt->shape || !tt->stride) return CK_ENOMEM;
        pos += 8;
        for (uint32_t d = 0; d < ndim; d++) {
            tt->shape[d] = (int64_t)cki_ld_le64(p + pos + 8 * d);
            tt->stride[d] = (int64_t)cki_ld_le64(p + pos + 8 * (ndim + d));
            if (tt->shape[d] < 0 || tt->stride[d] < 0)
                return cki_fail(tf->ctx, CK_EFORMAT,
                                "%s: %s: tensor '%s': negative size or stride in dimension %u",
                                tf->file, where, key, d);
        }
        pos += 16ull * ndim;
        off = (int64_t)cki_ld_le64(p + pos);
        pos += 8;
        if (off < 0)
            return cki_fail(tf->ctx, CK_EFORMAT, "%s: %s: tensor '%s': negative storage offset",
                            tf->file, where, key);
        tt->ndim = (int)ndim;
        tt->offset = (uint64_t)off;
        tt->storage = s;
        tt->dtype = s->dtype;
        tt->unsupported = s->unsupported;
        tt->off = m->off + pos;
        o->kind = CKI_TO_TENSOR;
        o->u.t = tt;
        o->off = tt->off;
        tf->tar_tensor_objs[i] = o;
        r = cki_map_put(&tf->tar_tensors, key, strlen(key), (size_t)i, &dummy);
        if (r < 0) return CK_ENOMEM;
        if (r == 1)
            return cki_fail(tf->ctx, CK_EFORMAT, "%s: %s: tensor key '%s' appears twice",
                            tf->file, where, key);
        tf->tar_tensor_count = (size_t)i + 1;
    }
    return CK_OK;
}

static ck_status parse_tar(cki_torch_file *tf, cki_torch_visit_fn visit, void *user)
{
    const cki_tar_member *m;
    cki_pickle pk;
    ck_status st;

    if ((st = cki_tar_open(tf->ctx, tf->file, tf->base, tf->len, &tf->tar))) return st;
    tf->tar_open = 1;
    if (!cki_tar_find(&tf->tar, "pickle"))
        return cki_fail(tf->ctx, CK_EFORMAT,
                        "%s: tar archive has no member 'pickle' (not a torch tar checkpoint)",
                        tf->file);
    if ((m = cki_tar_find(&tf->tar, "sys_info"))) {
        const cki_pv *le;
        if ((st = run(tf, tf->base + m->off, m->len, "tar member 'sys_info'", m->off, visit, user,
                      &pk)))
            return st;
        le = cki_pv_dict_get(pk.root, "little_endian");
        if (le && le->kind == CKI_PV_BOOL && le->u.i == 0)
            cki_warn(tf->ctx,
                     "%s: tar checkpoint written on a big-endian machine: storages are read as "
                     "little-endian",
                     tf->file);
    }
    if ((m = cki_tar_find(&tf->tar, "storages")) && (st = tar_storages(tf, m, visit, user)))
        return st;
    if ((m = cki_tar_find(&tf->tar, "tensors")) && (st = tar_tensors(tf, m, visit, user)))
        return st;
    m = cki_tar_find(&tf->tar, "pickle");
    tf->where = "tar member 'pickle'";
    tf->rec.where = tf->where;
    if ((st = run(tf, tf->base + m->off, m->len, tf->where, m->off, visit, user, &pk))) return st;
    tf->rec.persid = tar_persid;
    tf->rec.persid_user = tf;
    tf->pv_root = pk.root;
    if ((st = cki_trec_convert(&tf->rec, pk.root, &tf->root))) return st;
    /* storages named by inline ('storage', ...) tuples must be stored ones */
    for (size_t i = 0; i < tf->rec.storage_count; i++)
        if (!tf->rec.storages[i]->located)
            return cki_fail(tf->ctx, CK_EFORMAT,
                            "%s: storage '%s' is used by the object but not in member "
                            "'storages'",
                            tf->file, tf->rec.storages[i]->key);
    tf->data_end = tf->len;
    return CK_OK;
}

static ck_status parse(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len,
                       const cki_source *src, cki_torch_kind kind, cki_torch_visit_fn visit,
                       void *user, cki_arena *text, cki_torch_file *tf)
{
    ck_status st;
    memset(tf, 0, sizeof *tf);
    tf->src = src;
    tf->ctx = ctx;
    tf->file = file;
    tf->base = p;
    tf->len = len;
    tf->kind = kind;
    cki_arena_init(&tf->arena, ctx);
    cki_arena_init(&tf->desc, ctx);
    cki_map_init(&tf->tar_tensors, ctx);
    cki_trec_init(&tf->rec, ctx, &tf->arena, file, "?");
    tf->text = text;
    switch (kind) {
    case CKI_TORCH_ZIP: st = parse_zip(tf, visit, user); break;
    case CKI_TORCH_LEGACY: st = parse_legacy(tf, visit, user); break;
    case CKI_TORCH_TAR: st = parse_tar(tf, visit, user); break;
    default:
        st = cki_fail(ctx, CK_EFORMAT, "%s: not a PyTorch checkpoint (zip, legacy or tar)", file);
        break;
    }
    if (st) cki_torch_close(tf);
    return st;
}

ck_status cki_torch_parse(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len,
                          cki_torch_kind kind, cki_torch_visit_fn visit, void *user,
                          cki_torch_file *tf)
{
    return parse(ctx, file, p, len, NULL, kind, visit, user, NULL, tf);
}

ck_status cki_torch_parse_source(ck_ctx *ctx, const cki_source *src, cki_torch_kind kind,
                                 cki_torch_visit_fn visit, void *user, cki_arena *text,
                                 cki_torch_file *tf)
{
    return parse(ctx, src->path, src->base, src->len, src, kind, visit, user, text, tf);
}
