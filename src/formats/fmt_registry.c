/*
 * fmt_registry.c -- the only file that lists format drivers, and the lookups
 * by name, by output extension and by content.
 */
#include <strings.h>

#include "format.h"

extern const cki_format cki_fmt_safetensors;
extern const cki_format cki_fmt_raw;
extern const cki_format cki_fmt_pth;
extern const cki_format cki_fmt_ckpt;
extern const cki_format cki_fmt_torch;
extern const cki_format cki_fmt_npy;
extern const cki_format cki_fmt_npz;
extern const cki_format cki_fmt_gguf;

const cki_format *const cki_formats[] = {
    &cki_fmt_safetensors,
    &cki_fmt_raw,
    &cki_fmt_pth,
    &cki_fmt_ckpt,
    &cki_fmt_torch,
    &cki_fmt_npy,
    &cki_fmt_npz,
    &cki_fmt_gguf,
    NULL,
};

/* Alternative names; an alias may name several drivers (one reads, one writes). */
static const struct {
    const char *alias;
    const char *name;
} aliases[] = {
    {"st", "safetensors"}, {"pt", "torch"},      {"pth", "torch"}, {"bin", "torch"},
    {"pytorch", "torch"},  {"torch", "pth"},     {"pt", "pth"},    {"bin", "pth"},
    {"pytorch", "pth"},    {"lightning", "ckpt"},
};

static const cki_format *named(const char *name, unsigned caps)
{
    for (size_t i = 0; cki_formats[i]; i++)
        if (strcasecmp(cki_formats[i]->name, name) == 0 && (cki_formats[i]->caps & caps) == caps)
            return cki_formats[i];
    return NULL;
}

const cki_format *cki_format_by_name(const char *name, unsigned caps)
{
    const cki_format *f;
    if (!name) return NULL;
    if ((f = named(name, caps))) return f;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (strcasecmp(name, aliases[i].alias) == 0 && (f = named(aliases[i].name, caps)))
            return f;
    return NULL;
}

const cki_format *cki_format_by_path(const char *path)
{
    size_t pl = strlen(path);
    for (size_t i = 0; cki_formats[i]; i++) {
        const cki_format *f = cki_formats[i];
        if (!(f->caps & CKI_CAP_WRITE) || !f->exts) continue;
        for (size_t e = 0; f->exts[e]; e++) {
            size_t el = strlen(f->exts[e]);
            if (pl > el && strcasecmp(path + pl - el, f->exts[e]) == 0) return f;
        }
    }
    return NULL;
}

const cki_format *cki_format_detect(const cki_source *src)
{
    const cki_format *best = NULL;
    int best_score = 0;
    for (size_t i = 0; cki_formats[i]; i++) {
        const cki_format *f = cki_formats[i];
        int s;
        if (!(f->caps & CKI_CAP_READ) || !f->probe) continue;
        if (src->view_len < src->len && !(f->caps & CKI_CAP_WINDOW)) continue;
        s = f->probe(src);
        if (s > best_score) {
            best_score = s;
            best = f;
        }
    }
    return best;
}

const char *ck_format_for_path(const char *path)
{
    const cki_format *f = path ? cki_format_by_path(path) : NULL;
    return f ? f->name : NULL;
}

const char *ck_output_format(size_t i, const char **ext)
{
    for (size_t k = 0; cki_formats[k]; k++) {
        const cki_format *f = cki_formats[k];
        if (!(f->caps & CKI_CAP_WRITE)) continue;
        if (i--) continue;
        if (ext) *ext = f->exts ? f->exts[0] : NULL;
        return f->name;
    }
    if (ext) *ext = NULL;
    return NULL;
}

const char *ck_format_writer(const char *name)
{
    const cki_format *f = name ? cki_format_by_name(name, CKI_CAP_WRITE) : NULL;
    return f && (f->caps & CKI_CAP_WRITE) ? f->name : NULL;
}

const char *ck_format_writer_name(size_t i)
{
    for (size_t k = 0; cki_formats[k]; k++)
        if ((cki_formats[k]->caps & CKI_CAP_WRITE) && i-- == 0) return cki_formats[k]->name;
    return NULL;
}
