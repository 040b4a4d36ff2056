/*
 * t_output.c -- outputs through callbacks (ck_ctx_set_output) and the list of
 * output formats (ck_output_format), as the browser page uses them.
 *
 * A conversion through the callbacks must give exactly the bytes of the same
 * conversion to a file, once the few bytes a writer rewrites (zip CRC fields)
 * are applied at their offsets; writes otherwise arrive in order. A failing
 * callback fails the call with one line and aborts every output it opened.
 */
#include <stdlib.h>
#include <string.h>

#include "ckptkit.h"
#include "t.h"
#include "t_fs.h"

typedef struct mem_out {
    unsigned char *p;
    size_t len, cap;
    int opened, committed, aborted, rewrites;
    int fail_at_write; /* fail the Nth write (1-based); 0: never */
    int writes;
    char path[512];
} mem_out;

static int m_open(void *user, const char *path, void **file)
{
    mem_out *m = user;
    m->opened++;
    snprintf(m->path, sizeof m->path, "%s", path);
    *file = m;
    return 0;
}

static int m_write(void *user, void *file, uint64_t off, const void *p, size_t n)
{
    mem_out *m = file;
    if (++m->writes == m->fail_at_write) return 28;
    if (off > m->len) return 1; /* a gap: never allowed */
    if (off < m->len) m->rewrites++;
    if (off + n > m->cap) {
        size_t cap = (off + n) * 2;
        unsigned char *q = realloc(m->p, cap);
        if (!q) return 1;
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + off, p, n);
    if (off + n > m->len) m->len = off + n;
    return 0;
}

static int m_commit(void *user, void *file)
{
    ((mem_out *)file)->committed++;
    return 0;
}

static void m_abort(void *user, void *file) { ((mem_out *)file)->aborted++; }

TEST(output_formats_listed)
{
    const char *ext, *name;
    size_t n = 0;
    int st = 0, pth = 0;
    for (; (name = ck_output_format(n, &ext)); n++) {
        CHECK(!ext || ext[0] == '.'); /* raw has no usual extension */
        if (!ext) continue;
        char file[64];
        snprintf(file, sizeof file, "model%s", ext);
        CHECK(ck_format_for_path(file) && !strcmp(ck_format_for_path(file), name));
        st += !strcmp(name, "safetensors");
        pth += !strcmp(name, "pth");
    }
    CHECK(n >= 2 && st == 1 && pth == 1);
    CHECK(ck_output_format(n, &ext) == NULL && ext == NULL);
}

static void convert_both(const char *in, const char *name, const char *dir)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_output_ops ops = {m_open, m_write, m_commit, m_abort, NULL};
    mem_out mem;
    char out[600];
    size_t flen = 0;
    unsigned char *file;
    memset(&mem, 0, sizeof mem);
    ops.user = &mem;
    CHECK(ck_model_open(ctx, in, NULL, &m) == CK_OK);
    tfs_join(out, sizeof out, dir, name);
    CHECK(ck_convert(ctx, m, out, NULL, NULL) == CK_OK);
    ck_ctx_set_output(ctx, &ops);
    CHECK(ck_convert(ctx, m, out, NULL, NULL) == CK_OK); /* OUT exists: no matter here */
    CHECK(mem.opened == 1 && mem.committed == 1 && mem.aborted == 0);
    CHECK(!strcmp(mem.path, out));
    file = tfs_read(out, &flen);
    CHECK(file && flen == mem.len && !memcmp(file, mem.p, flen));
    free(file);
    /* a failing write: one line, the output aborted, never committed */
    free(mem.p);
    memset(&mem, 0, sizeof mem);
    mem.fail_at_write = 1;
    CHECK(ck_convert(ctx, m, out, NULL, NULL) == CK_EIO);
    CHECK(strstr(ck_errmsg(ctx), "callback returned 28") != NULL);
    CHECK(mem.opened == 1 && mem.committed == 0 && mem.aborted == 1);
    /* back to files */
    ck_ctx_set_output(ctx, NULL);
    CHECK(ck_convert(ctx, m, out, NULL, NULL) == CK_EEXIST);
    free(mem.p);
    ck_model_close(m);
    ck_ctx_free(ctx);
}

TEST(output_callbacks_give_the_file_bytes)
{
    char dir[512];
    if (tfs_mkdtemp(dir, sizeof dir)) {
        CHECK(0);
        return;
    }
    convert_both(T_FIXTURES "/safetensors/hf_samples_overall.safetensors", "o.pth", dir);
    convert_both(T_FIXTURES "/safetensors/hf_samples_overall.safetensors", "o.safetensors", dir);
    tfs_rmtree(dir);
}
