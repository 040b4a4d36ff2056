/*
 * write_fixture.c -- builds a ck_model by hand from a spec file and converts
 * it with ck_convert, so the interop tests can drive the torch writers with
 * storages, views, byte orders and flags no reader has to produce.
 * Compiled by tests/interop/test_torch_write.py against build/libckptkit.a
 * and the internal headers.
 *
 * Spec: one directive per line, fields separated by single spaces; names,
 * keys and values may use %XX escapes (for spaces, '%' and non-ASCII).
 *   blob PATH                          bytes the storages live in (mapped)
 *   storage OFF LEN DTYPE [be]         storages numbered 0, 1, ... in order
 *   tensor NAME DTYPE STORAGE OFFSET NDIM D0 .. [stride S0 ..] [conj] [neg]
 *   meta KEY VALUE                     string metadata of the model
 *   format pth|ckpt                    ck_convert_opts.format
 *   dtype NAME                         ck_convert_opts.dtype
 *   prune                              ck_convert_opts.prune
 *   setmeta KEY=VALUE                  ck_convert_opts.metadata entry
 *   out PATH                           output (written with force)
 * Exit 0 when the conversion succeeded; else the message on stderr, exit 1
 * (2 for a bad spec).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/model.h"

#define MAX_SETMETA 64

static int unescape(char *s)
{
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && p[1] && p[2]) {
            char hex[3] = {p[1], p[2], 0};
            char *end;
            long v = strtol(hex, &end, 16);
            if (*end) return -1;
            *o++ = (char)v;
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return (int)(o - s);
}

static char *next(char **save)
{
    return strtok_r(NULL, " \n", save);
}

int main(int argc, char **argv)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    cki_source *blob = NULL;
    cki_storage **storages = NULL;
    size_t nstorages = 0, cap = 0, nsetmeta = 0;
    const char *setmeta[MAX_SETMETA + 1] = {0};
    ck_convert_opts opts;
    char line[1 << 16];
    char *out = NULL;
    FILE *f;
    int rc = 0;

    memset(&opts, 0, sizeof opts);
    opts.dtype = CK_DT_KEEP;
    opts.force = 1;
    if (argc != 2 || !ctx) return 2;
    f = fopen(argv[1], "r");
    if (!f) return 2;
    if (cki_model_new(ctx, argv[1], &m)) return 2;
    while (fgets(line, sizeof line, f)) {
        char *save = NULL, *cmd = strtok_r(line, " \n", &save);
        ck_status st = CK_OK;
        if (!cmd) continue;
        if (strcmp(cmd, "blob") == 0) {
            char *path = next(&save);
            if (!path || (st = cki_source_open(ctx, path, &blob))) goto fail;
            if ((st = cki_model_add_source(m, blob))) goto fail;
        } else if (strcmp(cmd, "storage") == 0) {
            char *off = next(&save), *len = next(&save), *dt = next(&save), *be = next(&save);
            ck_dtype d;
            if (!off || !len || !dt || !blob) goto bad;
            if (ck_dtype_parse(dt, &d)) goto bad;
            if (nstorages == cap) {
                cap = cap ? 2 * cap : 64;
                storages = realloc(storages, cap * sizeof *storages);
                if (!storages) return 2;
            }
            if ((st = cki_model_storage(m, blob, strtoull(off, NULL, 10), strtoull(len, NULL, 10),
                                        d, "fixture storage", &storages[nstorages])))
                goto fail;
            if (be && strcmp(be, "be") == 0) storages[nstorages]->big_endian = 1;
            nstorages++;
        } else if (strcmp(cmd, "tensor") == 0) {
            char *name = next(&save), *dt = next(&save), *sg = next(&save), *off = next(&save);
            char *nd = next(&save), *tok;
            int64_t shape[CKI_MAX_DIMS], stride[CKI_MAX_DIMS];
            int ndim, has_stride = 0, namelen;
            unsigned flags = 0;
            ck_dtype d;
            size_t si;
            if (!name || !dt || !sg || !off || !nd) goto bad;
            namelen = unescape(name);
            ndim = atoi(nd);
            si = strtoull(sg, NULL, 10);
            if (namelen < 0 || ndim < 0 || ndim > CKI_MAX_DIMS || si >= nstorages) goto bad;
            if (ck_dtype_parse(dt, &d)) goto bad;
            for (int i = 0; i < ndim; i++) {
                if (!(tok = next(&save))) goto bad;
                shape[i] = strtoll(tok, NULL, 10);
            }
            while ((tok = next(&save))) {
                if (strcmp(tok, "stride") == 0) {
                    for (int i = 0; i < ndim; i++) {
                        if (!(tok = next(&save))) goto bad;
                        stride[i] = strtoll(tok, NULL, 10);
                    }
                    has_stride = 1;
                } else if (strcmp(tok, "conj") == 0) {
                    flags |= CKI_T_CONJ;
                } else if (strcmp(tok, "neg") == 0) {
                    flags |= CKI_T_NEG;
                } else {
                    goto bad;
                }
            }
            if ((st = cki_model_add_tensor(m, argv[1], name, (size_t)namelen, d, ndim, shape,
                                           has_stride ? stride : NULL,
                                           strtoull(off, NULL, 10), storages[si], flags, NULL)))
                goto fail;
        } else if (strcmp(cmd, "meta") == 0) {
            char *k = next(&save), *v = next(&save);
            int kl, vl;
            if (!k) goto bad;
            if (!v) v = (char *)"";
            kl = unescape(k);
            vl = unescape(v);
            if (kl < 0 || vl < 0) goto bad;
            if ((st = cki_model_set_meta(m, k, (size_t)kl, v, (size_t)vl))) goto fail;
        } else if (strcmp(cmd, "format") == 0) {
            char *v = next(&save);
            if (!v) goto bad;
            opts.format = strdup(v);
        } else if (strcmp(cmd, "dtype") == 0) {
            char *v = next(&save);
            if (!v || ck_dtype_parse(v, &opts.dtype)) goto bad;
        } else if (strcmp(cmd, "prune") == 0) {
            opts.prune = 1;
        } else if (strcmp(cmd, "setmeta") == 0) {
            char *v = next(&save);
            if (!v || nsetmeta == MAX_SETMETA || unescape(v) < 0) goto bad;
            setmeta[nsetmeta++] = strdup(v);
            opts.metadata = setmeta;
        } else if (strcmp(cmd, "out") == 0) {
            char *v = next(&save);
            if (!v) goto bad;
            out = strdup(v);
        } else {
            goto bad;
        }
        continue;
    fail:
        fprintf(stderr, "%s\n", ck_errmsg(ctx));
        return 1;
    bad:
        fprintf(stderr, "bad spec line starting with '%s'\n", cmd);
        return 2;
    }
    fclose(f);
    if (!out) return 2;
    if (ck_convert(ctx, m, out, &opts, NULL)) {
        fprintf(stderr, "%s\n", ck_errmsg(ctx));
        rc = 1;
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    free(storages);
    return rc;
}
