/*
 * sharded_read.c -- opening a Hugging Face sharded checkpoint as one model.
 *
 * Input: the index file (any name ending in ".index.json") or a folder holding exactly
 * one such file. The index (FORMATS.md 6):
 *   {"metadata": {"total_size": N, ...}, "weight_map": {"tensor name": "shard file", ...}}
 * "metadata" is optional and ignored (it is informational; unknown keys are allowed);
 * "weight_map" is required, an object of strings.
 *
 * Rules, checked before any shard is opened, because the index names files to open:
 *  - a shard name is a plain file name beside the index: not empty, not "." or "..",
 *    no '/' (so no absolute path and no way out of the folder), no '\\', no NUL;
 *    symbolic links are followed (the Hugging Face cache links shards to blobs);
 *  - every shard named exists and is a regular file; at most MAX_SHARDS shards;
 *  - tensor names hold no NUL.
 * Then each shard is opened, in order of its name (00001 before 00002), into the same
 * model with its own detected reader, and:
 *  - a tensor in two shards is an error (the model refuses the second name; the
 *    message names both shards);
 *  - a tensor whose weight_map entry names another shard is an error;
 *  - a weight_map entry whose shard lacks the tensor is an error, unless the shards'
 *    metadata records the name as an alias removed in favour of a tensor that is present
 *    (what safetensors' save_model / convert.py write for tied weights); those aliases
 *    are reported in one warning;
 *  - a tensor present in a shard but missing from weight_map is kept and reported in one
 *    warning: loaders that go by the shard files (transformers) see it too.
 * The model's format reads "sharded:<first shard's reader>"; its non-tensor values are
 * {"<shard>": <that shard's values>, ...} for the shards that have any.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "../common/json.h"
#include "convert.h"

#define INDEX_SUFFIX ".index.json"
#define MAX_SHARDS 100000

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

int cki_is_sharded_path(const char *path)
{
    struct stat st;
    if (!path) return 0;
    if (ends_with(path, INDEX_SUFFIX)) return 1;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static char *join(ck_ctx *ctx, const char *dir, size_t dir_len, const char *name)
{
    size_t n = dir_len + strlen(name) + 2;
    char *p = cki_malloc(ctx, n);
    if (!p) return NULL;
    if (dir_len) snprintf(p, n, "%.*s/%s", (int)dir_len, dir, name);
    else snprintf(p, n, "%s", name);
    return p;
}

/* The one *.index.json inside folder DIR, cki_malloc'd. */
static ck_status find_index(ck_ctx *ctx, const char *dir, char **out)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char *found = NULL;
    size_t n = 0, dl = strlen(dir);
    ck_status st = CK_OK;
    if (!d) return cki_fail(ctx, CK_EIO, "%s: cannot open folder: %s", dir, strerror(errno));
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !ends_with(e->d_name, INDEX_SUFFIX)) continue;
        if (++n == 1) {
            found = join(ctx, dir, dl, e->d_name);
            if (!found) { st = CK_ENOMEM; break; }
        } else {
            st = cki_fail(ctx, CK_EARG,
                          "%s: folder holds several *.index.json files ('%s', '%s', ...); "
                          "name the index file",
                          dir, cki_basename(found), e->d_name);
            break;
        }
    }
    closedir(d);
    if (!st && n == 0)
        st = cki_fail(ctx, CK_EFORMAT,
                      "%s: folder holds no *.index.json file (a folder opens as a sharded "
                      "checkpoint)",
                      dir);
    if (st) {
        cki_free(ctx, found);
        return st;
    }
    *out = found;
    return CK_OK;
}

/* NULL if NAME is an acceptable shard file name, else the rule it breaks. */
static const char *bad_shard_name(const char *name, size_t len)
{
    if (len != strlen(name)) return "contains a NUL byte";
    if (!*name || !strcmp(name, ".")) return "is not a file name";
    if (name[0] == '/') return "is an absolute path; shards must sit beside the index";
    if (!strcmp(name, "..") || !strncmp(name, "../", 3) || strstr(name, "/../") ||
        ends_with(name, "/.."))
        return "leaves the index's folder ('..'); shards must sit beside the index";
    if (strchr(name, '/') || strchr(name, '\\'))
        return "names a subfolder; shards must sit beside the index";
    return NULL;
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Index of shard NAME in the sorted list, or (size_t)-1. */
static size_t shard_index(const char *const *shards, size_t n, const char *name)
{
    const char *const *hit = bsearch(&name, shards, n, sizeof *shards, str_cmp);
    return hit ? (size_t)(hit - shards) : (size_t)-1;
}

/* A shard that repeats a tensor of an earlier shard fails in the model with
 * "SHARD: tensor 'NAME' appears twice"; say which earlier shard holds it.
 * BOUNDS[j] is the tensor count after shard j. Any other message stays. */
static ck_status name_both_shards(ck_model *m, const char *index_path, const char *shard_file,
                                  const char *const *shards, size_t k, const size_t *bounds)
{
    const char *msg = m->ctx->errmsg, *tail = "' appears twice", *name, *end;
    size_t fl = strlen(shard_file), idx, j = 0;
    char *dup;
    if (strncmp(msg, shard_file, fl) || strncmp(msg + fl, ": tensor '", 10))
        return CK_EFORMAT;
    name = msg + fl + 10;
    end = name + strlen(name);
    if ((size_t)(end - name) <= strlen(tail) || strcmp(end - strlen(tail), tail))
        return CK_EFORMAT;
    dup = cki_strndup(m->ctx, name, (size_t)(end - name) - strlen(tail));
    if (!dup) return CK_ENOMEM;
    if (!cki_map_get(&m->names, dup, strlen(dup), &idx)) {
        while (j < k && bounds[j] <= idx) j++;
        if (j < k)
            cki_fail(m->ctx, CK_EFORMAT, "%s: tensor '%s' is in shard '%s' and again in '%s'",
                     index_path, dup, shards[j], shards[k]);
    }
    cki_free(m->ctx, dup);
    return CK_EFORMAT;
}

/* A parsed and checked index: everything that holds before a shard is opened. */
typedef struct index_info {
    char *path;             /* the index file (cki_malloc'd) */
    size_t dir_len;         /* its folder: path[0, dir_len), no trailing '/' */
    cki_source *src;        /* the mapped index; NULL once a model owns it */
    cki_arena arena;        /* the JSON tree */
    const cki_json *wm;     /* weight_map, a non-empty object of checked strings */
    const char **shards;    /* distinct shard names, sorted (cki_malloc'd) */
    size_t nshards;
} index_info;

static void index_free(ck_ctx *ctx, index_info *ix)
{
    cki_free(ctx, ix->path);
    cki_free(ctx, ix->shards);
    if (ix->src) cki_source_close(ctx, ix->src);
    cki_arena_free(&ix->arena);
    memset(ix, 0, sizeof *ix);
}

/* Finds, maps, parses and checks the index of PATH (file or folder) and the
 * existence of every shard it names. IX is freed by index_free in any case. */
static ck_status index_load(ck_ctx *ctx, const char *path, index_info *ix)
{
    const cki_json *root, *md, *wm;
    cki_json_opts jo = {0, 0};
    cki_json_err jerr;
    struct stat sb;
    ck_status st;

    memset(ix, 0, sizeof *ix);
    cki_arena_init(&ix->arena, ctx);
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        if ((st = find_index(ctx, path, &ix->path))) return st;
    } else if (!(ix->path = cki_strdup(ctx, path))) {
        return CK_ENOMEM;
    }
    ix->dir_len = (size_t)(cki_basename(ix->path) - ix->path);
    while (ix->dir_len > 1 && ix->path[ix->dir_len - 1] == '/') ix->dir_len--;
    if ((st = cki_source_open(ctx, ix->path, &ix->src))) return st;
    jo.max_bytes = (size_t)ctx->limits[CK_LIMIT_HEADER_BYTES];
    st = cki_json_parse(ctx, &ix->arena, ix->src->base ? (const void *)ix->src->base : "",
                        ix->src->len, &jo, &root, &jerr);
    if (st == CK_ENOMEM) return st;
    if (st) return cki_fail(ctx, st, "%s: index: %s at byte %zu", ix->path, jerr.msg, jerr.off);
    if (root->type != CKI_JSON_OBJECT)
        return cki_fail(ctx, CK_EFORMAT, "%s: index: top level is %s, expected an object",
                        ix->path, cki_json_type_name(root->type));
    wm = cki_json_get(root, "weight_map");
    if (!wm || wm->type != CKI_JSON_OBJECT)
        return cki_fail(ctx, CK_EFORMAT, "%s: index: 'weight_map' is %s, expected an object",
                        ix->path, wm ? cki_json_type_name(wm->type) : "missing");
    md = cki_json_get(root, "metadata");
    if (md && md->type != CKI_JSON_OBJECT && md->type != CKI_JSON_NULL)
        return cki_fail(ctx, CK_EFORMAT, "%s: index: 'metadata' is %s, expected an object",
                        ix->path, cki_json_type_name(md->type));
    if (wm->len == 0)
        return cki_fail(ctx, CK_EFORMAT, "%s: index: 'weight_map' lists no tensors", ix->path);
    ix->wm = wm;

    /* names, then the distinct shards, all checked before any shard is opened */
    ix->shards = cki_calloc(ctx, wm->len, sizeof *ix->shards);
    if (!ix->shards) return CK_ENOMEM;
    for (size_t i = 0; i < wm->len; i++) {
        const cki_json_member *e = &wm->u.members[i];
        const char *why;
        if (e->key_len != strlen(e->key))
            return cki_fail(ctx, CK_EFORMAT, "%s: weight_map: a tensor name contains a NUL byte",
                            ix->path);
        if (e->value.type != CKI_JSON_STRING)
            return cki_fail(ctx, CK_EFORMAT,
                            "%s: weight_map: tensor '%s': shard is %s, expected a string",
                            ix->path, e->key, cki_json_type_name(e->value.type));
        if ((why = bad_shard_name(e->value.u.str, e->value.len)))
            return cki_fail(ctx, CK_EFORMAT, "%s: weight_map: tensor '%s': shard '%s' %s",
                            ix->path, e->key, e->value.u.str, why);
        ix->shards[ix->nshards++] = e->value.u.str;
    }
    qsort(ix->shards, ix->nshards, sizeof *ix->shards, str_cmp);
    {
        size_t u = 0;
        for (size_t i = 0; i < ix->nshards; i++)
            if (!u || strcmp(ix->shards[u - 1], ix->shards[i])) ix->shards[u++] = ix->shards[i];
        ix->nshards = u;
    }
    if (ix->nshards > MAX_SHARDS)
        return cki_fail(ctx, CK_ELIMIT, "%s: index names %zu shards (at most %d)", ix->path,
                        ix->nshards, MAX_SHARDS);
    for (size_t k = 0; k < ix->nshards; k++) {
        struct stat ss;
        char *file = join(ctx, ix->path, ix->dir_len, ix->shards[k]);
        int e;
        if (!file) return CK_ENOMEM;
        e = stat(file, &ss) != 0 ? errno : 0;
        cki_free(ctx, file);
        if (e)
            return cki_fail(ctx, CK_EFORMAT, "%s: shard '%s' listed in the index is missing: %s",
                            ix->path, ix->shards[k], strerror(e));
        if (!S_ISREG(ss.st_mode))
            return cki_fail(ctx, CK_EFORMAT, "%s: shard '%s' listed in the index is not a file",
                            ix->path, ix->shards[k]);
    }
    return CK_OK;
}

ck_status cki_sharded_list(ck_ctx *ctx, const char *path, char ***files, size_t *count)
{
    index_info ix;
    char **out = NULL;
    size_t n = 0;
    ck_status st = index_load(ctx, path, &ix);
    if (!st && !(out = cki_calloc(ctx, ix.nshards, sizeof *out))) st = CK_ENOMEM;
    for (; !st && n < ix.nshards; n++)
        if (!(out[n] = join(ctx, ix.path, ix.dir_len, ix.shards[n]))) st = CK_ENOMEM;
    index_free(ctx, &ix);
    if (st) {
        cki_sharded_list_free(ctx, out, n);
        return st;
    }
    *files = out;
    *count = n;
    return CK_OK;
}

void cki_sharded_list_free(ck_ctx *ctx, char **files, size_t count)
{
    for (size_t i = 0; files && i < count; i++) cki_free(ctx, files[i]);
    cki_free(ctx, files);
}

ck_status cki_sharded_open(ck_model *m, const char *path, const ck_open_opts *opts)
{
    ck_ctx *ctx = m->ctx;
    index_info ix;
    char *shard_file = NULL, *fmt;
    size_t *want = NULL;   /* per weight_map member: its shard's index */
    size_t *bounds = NULL; /* per shard: tensor count once it is open */
    unsigned char *found = NULL;
    size_t unlisted = 0, aliases = 0;
    const char *first_unlisted = NULL, *first_alias = NULL;
    cki_map names;
    cki_buf values; /* {"shard": values, ...} */
    ck_status st;

    if (opts && opts->manifest)
        return cki_fail(ctx, CK_EARG, "%s: --manifest does not apply to a sharded checkpoint",
                        path);
    cki_map_init(&names, ctx);
    cki_buf_init(&values, ctx, 0);
    if ((st = index_load(ctx, path, &ix))) goto out;
    /* the model keeps the index mapped, so an output can never replace it */
    st = cki_model_add_source(m, ix.src);
    ix.src = NULL;
    if (st) goto out;
    want = cki_calloc(ctx, ix.wm->len, sizeof *want);
    found = cki_calloc(ctx, ix.wm->len, 1);
    bounds = cki_calloc(ctx, ix.nshards, sizeof *bounds);
    if (!want || !found || !bounds) { st = CK_ENOMEM; goto out; }
    for (size_t i = 0; i < ix.wm->len; i++) {
        const cki_json_member *e = &ix.wm->u.members[i];
        switch (cki_map_put(&names, e->key, e->key_len, i, NULL)) {
        case 0: break;
        case 1: /* the JSON parser refuses repeated keys already; kept for safety */
            st = cki_fail(ctx, CK_EFORMAT, "%s: weight_map: tensor '%s' is listed twice",
                          ix.path, e->key);
            goto out;
        default: st = CK_ENOMEM; goto out;
        }
        want[i] = shard_index(ix.shards, ix.nshards, e->value.u.str);
    }

    /* open the shards, then hold each one's tensors against weight_map */
    for (size_t k = 0; k < ix.nshards; k++) {
        size_t before = m->count;
        cki_free(ctx, shard_file);
        if (!(shard_file = join(ctx, ix.path, ix.dir_len, ix.shards[k]))) {
            st = CK_ENOMEM;
            goto out;
        }
        if ((st = cki_open_file_into(m, shard_file, opts))) {
            if (st == CK_EFORMAT)
                st = name_both_shards(m, ix.path, shard_file, ix.shards, k, bounds);
            goto out;
        }
        bounds[k] = m->count;
        if (m->values_json) { /* gather each shard's non-tensor values under its name */
            cki_buf_puts(&values, values.len ? ", " : "{");
            cki_buf_json_str(&values, ix.shards[k], strlen(ix.shards[k]));
            cki_buf_puts(&values, ": ");
            cki_buf_puts(&values, m->values_json);
            cki_model_set_values(m, NULL);
            if (values.failed) { st = CK_ENOMEM; goto out; }
        }
        for (size_t t = before; t < m->count; t++) {
            const char *tn = m->tensors[t].name;
            size_t i;
            if (cki_map_get(&names, tn, strlen(tn), &i)) {
                unlisted++;
                if (!first_unlisted) first_unlisted = tn;
                continue;
            }
            if (want[i] != k) {
                st = cki_fail(ctx, CK_EFORMAT,
                              "%s: tensor '%s' is in shard '%s' but weight_map puts it in '%s'",
                              ix.path, tn, ix.shards[k], ix.shards[want[i]]);
                goto out;
            }
            found[i] = 1;
        }
    }
    for (size_t i = 0; i < ix.wm->len; i++) {
        const cki_json_member *e = &ix.wm->u.members[i];
        const char *kept;
        size_t j;
        if (found[i]) continue;
        kept = ck_model_meta_get(m, e->key);
        if (kept && !cki_map_get(&m->names, kept, strlen(kept), &j)) {
            aliases++;
            if (!first_alias) first_alias = e->key;
            continue;
        }
        st = cki_fail(ctx, CK_EFORMAT,
                      "%s: weight_map lists tensor '%s' in shard '%s' but that shard does not "
                      "hold it",
                      ix.path, e->key, e->value.u.str);
        goto out;
    }
    if (unlisted)
        cki_warn(ctx, "%s: %zu tensors in the shards are not listed in weight_map; kept (first: "
                      "'%s')",
                 ix.path, unlisted, first_unlisted);
    if (aliases)
        cki_warn(ctx, "%s: %zu weight_map entries are aliases of other tensors (recorded in the "
                      "shards' metadata) and are not duplicated (first: '%s')",
                 ix.path, aliases, first_alias);
    if (values.len) {
        char *json;
        cki_buf_putc(&values, '}');
        if (!(json = cki_buf_take(&values))) { st = CK_ENOMEM; goto out; }
        cki_model_set_values(m, json);
    }
    {
        size_t fl = strlen("sharded:") + strlen(m->format_name) + 1;
        fmt = cki_arena_alloc(&m->arena, fl);
        if (!fmt) { st = CK_ENOMEM; goto out; }
        snprintf(fmt, fl, "sharded:%s", m->format_name);
        m->format_name = fmt;
    }
out:
    index_free(ctx, &ix);
    cki_free(ctx, shard_file);
    cki_free(ctx, want);
    cki_free(ctx, bounds);
    cki_free(ctx, found);
    cki_map_free(&names);
    cki_buf_free(&values);
    return st;
}
