/*
 * t_sink.c -- the atomic output file (src/io/sink.c) and the mapped input
 * (src/io/source.c), on a real folder under /tmp.
 *
 * What must hold whatever happens: OUT appears only complete (after commit),
 * no ".OUT.ckptkit-XXXXXX" file outlives a failure or an abort, an existing
 * OUT is replaced only when forced, and an OUT that is an input -- by the
 * same path, a symlink, a hard link or another spelling of the path -- is
 * refused before anything is created. Failures are injected through the
 * system-call table (src/io/sys.h): the Nth write, fsync, rename and open.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/cki.h"
#include "io/sink.h"
#include "io/source.h"
#include "io/sys.h"
#include "t.h"
#include "t_fs.h"

typedef struct fixture {
    char dir[512];
    char out[600];
    ck_ctx *ctx;
} fixture;

static int setup(fixture *f)
{
    if (tfs_mkdtemp(f->dir, sizeof f->dir)) return -1;
    tfs_join(f->out, sizeof f->out, f->dir, "out.bin");
    f->ctx = ck_ctx_new();
    cki_sys_reset();
    return f->ctx ? 0 : -1;
}

static void teardown(fixture *f)
{
    cki_sys_reset();
    CHECK(f->ctx->mem_used == 0); /* every sink freed, whatever path it took */
    ck_ctx_free(f->ctx);
    tfs_rmtree(f->dir);
}

/* Bytes 0..n-1 of a recognisable pattern. */
static unsigned char *pattern(size_t n, unsigned seed)
{
    unsigned char *p = malloc(n ? n : 1);
    uint32_t x = 2166136261u ^ seed;
    for (size_t i = 0; p && i < n; i++) {
        x = x * 16777619u + (uint32_t)i;
        p[i] = (unsigned char)(x >> 24);
    }
    return p;
}

TEST(sink_commit_writes_whole_file_and_no_temp)
{
    fixture f;
    cki_sink *s = NULL;
    unsigned char *p = pattern(3u << 20, 1);
    mode_t mask;
    struct stat st;
    if (setup(&f)) { CHECK(0); return; }
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &s) == CK_OK);
    CHECK(tfs_count_temps(f.dir) == 1);
    CHECK(!tfs_exists(f.out)); /* not before commit */
    CHECK(cki_sink_write(s, p, 100) == CK_OK);         /* buffered */
    CHECK(cki_sink_write(s, p + 100, 2u << 20) == CK_OK); /* larger than the buffer */
    CHECK(cki_sink_zeros(s, 5000) == CK_OK);
    CHECK(cki_sink_pos(s) == 100 + (2u << 20) + 5000);
    CHECK(strcmp(cki_sink_path(s), f.out) == 0);
    CHECK(cki_sink_commit(s) == CK_OK);
    CHECK(tfs_count_temps(f.dir) == 0);
    {
        size_t n = 0;
        unsigned char *b = tfs_read(f.out, &n);
        int zeros = 1;
        CHECK(b && n == 100 + (2u << 20) + 5000);
        CHECK(b && memcmp(b, p, 100 + (2u << 20)) == 0);
        for (size_t i = 100 + (2u << 20); b && i < n; i++) zeros &= b[i] == 0;
        CHECK(zeros);
        free(b);
    }
    /* permissions: 0666 minus the umask, not mkstemp's 0600 */
    mask = umask(0);
    umask(mask);
    CHECK(stat(f.out, &st) == 0 && (st.st_mode & 0777) == (0666 & ~mask));
    free(p);
    teardown(&f);
}

TEST(sink_abort_leaves_nothing)
{
    fixture f;
    cki_sink *s = NULL;
    if (setup(&f)) { CHECK(0); return; }
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &s) == CK_OK);
    CHECK(cki_sink_write(s, "abc", 3) == CK_OK);
    cki_sink_abort(s);
    cki_sink_abort(NULL);
    CHECK(tfs_count_entries(f.dir) == 0);
    teardown(&f);
}

TEST(sink_pwrite_patches_written_bytes_only)
{
    fixture f;
    cki_sink *s = NULL;
    if (setup(&f)) { CHECK(0); return; }
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &s) == CK_OK);
    CHECK(cki_sink_write(s, "0000000000", 10) == CK_OK);
    CHECK(cki_sink_pwrite(s, 2, "ab", 2) == CK_OK); /* the buffer is flushed first */
    CHECK(cki_sink_pwrite(s, 8, "xy", 2) == CK_OK);
    CHECK(cki_sink_pwrite(s, 9, "zz", 2) == CK_EARG); /* one byte past the end */
    CHECK(cki_sink_pwrite(s, UINT64_MAX, "z", 1) == CK_EARG);
    CHECK(cki_sink_write(s, "tail", 4) == CK_OK);
    CHECK(cki_sink_commit(s) == CK_OK);
    CHECK(tfs_same(f.out, "00ab0000xytail", 14));
    teardown(&f);
}

TEST(sink_existing_out_needs_force)
{
    fixture f;
    cki_sink *s = NULL;
    if (setup(&f)) { CHECK(0); return; }
    CHECK(tfs_write(f.out, "old", 3) == 0);
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &s) == CK_EEXIST);
    CHECK(s == NULL);
    CHECK(strstr(ck_errmsg(f.ctx), "--force") != NULL);
    CHECK(strstr(ck_errmsg(f.ctx), f.out) != NULL);
    CHECK(tfs_same(f.out, "old", 3));
    CHECK(tfs_count_temps(f.dir) == 0);
    CHECK(cki_sink_open(f.ctx, f.out, 1, NULL, 0, &s) == CK_OK);
    CHECK(tfs_same(f.out, "old", 3)); /* untouched until commit */
    CHECK(cki_sink_write(s, "new!", 4) == CK_OK);
    CHECK(cki_sink_commit(s) == CK_OK);
    CHECK(tfs_same(f.out, "new!", 4));
    CHECK(tfs_count_entries(f.dir) == 1);
    teardown(&f);
}

/* Opens IN as a source and tries to open OUT_SPELLING as a sink over it. */
static void expect_same_file(fixture *f, const char *in, const char *out_spelling, int force)
{
    cki_source *src = NULL;
    cki_sink *s = NULL;
    ck_status st;
    CHECK(cki_source_open(f->ctx, in, &src) == CK_OK);
    if (!src) return;
    st = cki_sink_open(f->ctx, out_spelling, force, &src, 1, &s);
    CHECK(st == CK_ESAMEFILE);
    if (st != CK_ESAMEFILE) {
        fprintf(stderr, "  out spelling %s: status %d: %s\n", out_spelling, (int)st,
                ck_errmsg(f->ctx));
        if (s) cki_sink_abort(s);
    }
    CHECK(strstr(ck_errmsg(f->ctx), "output is the input") != NULL);
    cki_source_close(f->ctx, src);
}

TEST(sink_refuses_output_that_is_the_input)
{
    fixture f;
    char in[700], lnk[700], hard[700], alt[1400], cwd[4096];
    if (setup(&f)) { CHECK(0); return; }
    tfs_join(in, sizeof in, f.dir, "in.safetensors");
    tfs_join(lnk, sizeof lnk, f.dir, "sym.safetensors");
    tfs_join(hard, sizeof hard, f.dir, "hard.safetensors");
    CHECK(tfs_write(in, "input bytes", 11) == 0);
    CHECK(symlink("in.safetensors", lnk) == 0);
    CHECK(link(in, hard) == 0);
    expect_same_file(&f, in, in, 0);
    expect_same_file(&f, in, in, 1); /* force does not override it */
    expect_same_file(&f, in, lnk, 1);
    expect_same_file(&f, in, hard, 1);
    expect_same_file(&f, lnk, in, 1);
    snprintf(alt, sizeof alt, "%s/./in.safetensors", f.dir);
    expect_same_file(&f, in, alt, 1);
    snprintf(alt, sizeof alt, "%s/../%s/in.safetensors", f.dir, cki_basename(f.dir));
    expect_same_file(&f, in, alt, 1);
    snprintf(alt, sizeof alt, "%s//in.safetensors", f.dir);
    expect_same_file(&f, in, alt, 1);
    if (getcwd(cwd, sizeof cwd) && chdir(f.dir) == 0) {
        expect_same_file(&f, in, "in.safetensors", 1);
        expect_same_file(&f, in, "./in.safetensors", 1);
        expect_same_file(&f, "in.safetensors", hard, 1);
        CHECK(chdir(cwd) == 0);
    }
    CHECK(tfs_same(in, "input bytes", 11));
    CHECK(tfs_count_temps(f.dir) == 0);
    CHECK(tfs_count_entries(f.dir) == 3);
    teardown(&f);
}

TEST(sink_folder_and_missing_folder_are_clean_errors)
{
    fixture f;
    cki_sink *s = NULL;
    char sub[700], missing[800];
    if (setup(&f)) { CHECK(0); return; }
    tfs_join(sub, sizeof sub, f.dir, "sub");
    CHECK(mkdir(sub, 0755) == 0);
    CHECK(cki_sink_open(f.ctx, sub, 1, NULL, 0, &s) == CK_EARG);
    CHECK(strstr(ck_errmsg(f.ctx), "folder") != NULL);
    snprintf(missing, sizeof missing, "%s/", sub);
    CHECK(cki_sink_open(f.ctx, missing, 1, NULL, 0, &s) == CK_EARG);
    CHECK(strstr(ck_errmsg(f.ctx), "folder") != NULL);
    snprintf(missing, sizeof missing, "%s/nope/out.safetensors", f.dir);
    CHECK(cki_sink_open(f.ctx, missing, 0, NULL, 0, &s) == CK_EIO);
    CHECK(strstr(ck_errmsg(f.ctx), "cannot create temporary file") != NULL);
    CHECK(strstr(ck_errmsg(f.ctx), "No such file") != NULL);
    CHECK(s == NULL);
    CHECK(tfs_count_entries(f.dir) == 1 && tfs_count_entries(sub) == 0);
    teardown(&f);
}

TEST(sink_parent_that_is_a_file_is_a_clean_error)
{
    fixture f;
    cki_sink *s = NULL;
    char file[700], out[800];
    if (setup(&f)) { CHECK(0); return; }
    tfs_join(file, sizeof file, f.dir, "plain.txt");
    CHECK(tfs_write(file, "x", 1) == 0);
    tfs_join(out, sizeof out, file, "out.bin");
    CHECK(cki_sink_open(f.ctx, out, 0, NULL, 0, &s) == CK_EIO);
    CHECK(s == NULL);
    CHECK(strstr(ck_errmsg(f.ctx), out) != NULL);
    CHECK(strstr(ck_errmsg(f.ctx), strerror(ENOTDIR)) != NULL);
    CHECK(tfs_count_entries(f.dir) == 1 && tfs_same(file, "x", 1));
    teardown(&f);
}

/* Opens, writes N bytes in pieces of PIECE, commits; arms OP to fail at call
 * FAIL_AT first. Returns the status of the first failing step (or CK_OK). */
static ck_status write_with_fault(fixture *f, cki_sys_op op, unsigned long fail_at,
                                  const unsigned char *p, size_t n, size_t piece)
{
    cki_sink *s = NULL;
    ck_status st;
    cki_sys_reset();
    cki_sys_fail_nth(op, fail_at);
    st = cki_sink_open(f->ctx, f->out, 1, NULL, 0, &s);
    for (size_t off = 0; !st && off < n; off += piece)
        st = cki_sink_write(s, p + off, n - off < piece ? n - off : piece);
    if (!st) {
        st = cki_sink_commit(s);
        s = NULL;
    }
    cki_sink_abort(s);
    cki_sys_reset();
    return st;
}

TEST(sink_every_injected_fault_leaves_nothing)
{
    static const cki_sys_op ops[] = {CKI_SYS_WRITE, CKI_SYS_FSYNC, CKI_SYS_RENAME, CKI_SYS_OPEN,
                                     CKI_SYS_ALLOC};
    static const char *names[] = {"write", "fsync", "rename", "open", "alloc"};
    fixture f;
    size_t n = (5u << 20) + 123;
    unsigned char *p = pattern(n, 7);
    if (setup(&f)) { CHECK(0); return; }
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        unsigned long nth;
        int failures = 0;
        for (nth = 1; nth < 1000; nth++) {
            ck_status st = write_with_fault(&f, ops[k], nth, p, n, 300000);
            if (st == CK_OK) break;
            failures++;
            if (st != CK_EIO && st != CK_ENOMEM) {
                fprintf(stderr, "  %s #%lu: status %d\n", names[k], nth, (int)st);
                CHECK(0);
            }
            if (!*ck_errmsg(f.ctx) || strchr(ck_errmsg(f.ctx), '\n')) CHECK(0);
            if (tfs_count_entries(f.dir) != 0) {
                fprintf(stderr, "  %s #%lu left files behind\n", names[k], nth);
                CHECK(0);
                tfs_rmtree(f.dir);
                mkdir(f.dir, 0700);
            }
        }
        CHECK(nth < 1000);
        CHECK(failures >= 1); /* each operation is on the path at least once */
        CHECK(tfs_same(f.out, p, n));
        unlink(f.out);
    }
    free(p);
    teardown(&f);
}

TEST(sink_fault_messages_name_the_output_and_the_cause)
{
    fixture f;
    unsigned char *p = pattern(1 << 16, 3);
    if (setup(&f)) { CHECK(0); return; }
    CHECK(write_with_fault(&f, CKI_SYS_WRITE, 1, p, 1 << 16, 1 << 16) == CK_EIO);
    CHECK(strstr(ck_errmsg(f.ctx), f.out) && strstr(ck_errmsg(f.ctx), "write failed") &&
          strstr(ck_errmsg(f.ctx), strerror(ENOSPC)));
    CHECK(write_with_fault(&f, CKI_SYS_FSYNC, 1, p, 10, 10) == CK_EIO);
    CHECK(strstr(ck_errmsg(f.ctx), "fsync failed") != NULL);
    CHECK(write_with_fault(&f, CKI_SYS_RENAME, 1, p, 10, 10) == CK_EIO);
    CHECK(strstr(ck_errmsg(f.ctx), "rename") != NULL);
    CHECK(write_with_fault(&f, CKI_SYS_OPEN, 1, p, 10, 10) == CK_EIO);
    CHECK(strstr(ck_errmsg(f.ctx), "cannot create temporary file") != NULL);
    CHECK(tfs_count_entries(f.dir) == 0);
    free(p);
    teardown(&f);
}

TEST(sink_fault_env_parsing)
{
    fixture f;
    cki_sink *s = NULL;
    if (setup(&f)) { CHECK(0); return; }
    setenv("CKPTKIT_FAULT", "bogus:1,fsync:2,rename:x,write:1", 1);
    ck_debug_faults_from_env();
    unsetenv("CKPTKIT_FAULT");
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &s) == CK_OK);
    CHECK(cki_sink_write(s, "a", 1) == CK_OK); /* buffered: no write(2) yet */
    CHECK(cki_sink_commit(s) == CK_EIO);       /* write #1 fails in the flush */
    CHECK(strstr(ck_errmsg(f.ctx), "write failed") != NULL);
    CHECK(tfs_count_entries(f.dir) == 0);
    /* fsync:2 is still armed: the first fsync passes, the second fails */
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &s) == CK_OK);
    CHECK(cki_sink_commit(s) == CK_OK);
    CHECK(cki_sink_open(f.ctx, f.out, 1, NULL, 0, &s) == CK_OK);
    CHECK(cki_sink_commit(s) == CK_EIO);
    CHECK(strstr(ck_errmsg(f.ctx), "fsync failed") != NULL);
    CHECK(tfs_count_temps(f.dir) == 0);
    cki_sys_reset();
    unlink(f.out);
    ck_debug_faults_from_env(); /* unset: nothing armed */
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &s) == CK_OK);
    CHECK(cki_sink_write(s, "a", 1) == CK_OK);
    CHECK(cki_sink_commit(s) == CK_OK);
    teardown(&f);
}

TEST(sink_copy_from_source_plain_and_copy_file_range)
{
    fixture f;
    char in[700];
    size_t n = (3u << 20) + 77;
    unsigned char *p = pattern(n, 11);
    cki_source *src = NULL;
    cki_sink *s = NULL;
    if (setup(&f)) { CHECK(0); return; }
    tfs_join(in, sizeof in, f.dir, "in.bin");
    CHECK(tfs_write(in, p, n) == 0);
    CHECK(cki_source_open(f.ctx, in, &src) == CK_OK);
    if (!src) { teardown(&f); free(p); return; }
    CHECK(src->len == n && memcmp(src->base, p, n) == 0);
    CHECK(cki_sink_open(f.ctx, f.out, 0, &src, 1, &s) == CK_OK);
    CHECK(cki_sink_write(s, "HDR", 3) == CK_OK);
    CHECK(cki_sink_copy(s, src, 5, 1000) == CK_OK);       /* small: through the buffer */
    CHECK(cki_sink_copy(s, src, 1000, (2u << 20)) == CK_OK); /* large: copy_file_range */
    CHECK(cki_sink_copy(s, src, n - 10, 11) == CK_EARG);  /* one past the end */
    CHECK(cki_sink_copy(s, src, UINT64_MAX, 2) == CK_EARG);
    CHECK(cki_sink_pos(s) == 3 + 1000 + (2u << 20));
    CHECK(cki_sink_write(s, "T", 1) == CK_OK);
    CHECK(cki_sink_commit(s) == CK_OK);
    {
        size_t got = 0;
        unsigned char *b = tfs_read(f.out, &got);
        CHECK(b && got == 3 + 1000 + (2u << 20) + 1);
        CHECK(b && memcmp(b, "HDR", 3) == 0 && memcmp(b + 3, p + 5, 1000) == 0 &&
              memcmp(b + 1003, p + 1000, 2u << 20) == 0 && b[got - 1] == 'T');
        free(b);
    }
    /* a failing copy_file_range (disk full) is an error, not a silent fallback */
    unlink(f.out);
    CHECK(cki_sink_open(f.ctx, f.out, 0, &src, 1, &s) == CK_OK);
    cki_sys_fail_nth(CKI_SYS_WRITE, 1);
    CHECK(cki_sink_copy(s, src, 0, 2u << 20) == CK_EIO);
    cki_sys_reset();
    CHECK(strstr(ck_errmsg(f.ctx), strerror(ENOSPC)) != NULL);
    cki_sink_abort(s);
    CHECK(tfs_count_entries(f.dir) == 1);
    cki_source_close(f.ctx, src);
    free(p);
    teardown(&f);
}

TEST(sink_signal_cleanup_removes_live_temporaries)
{
    fixture f;
    cki_sink *a = NULL, *b = NULL;
    char out2[700];
    if (setup(&f)) { CHECK(0); return; }
    tfs_join(out2, sizeof out2, f.dir, "other.bin");
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &a) == CK_OK);
    CHECK(cki_sink_open(f.ctx, out2, 0, NULL, 0, &b) == CK_OK);
    CHECK(tfs_count_temps(f.dir) == 2);
    ck_cleanup_on_signal();
    CHECK(tfs_count_entries(f.dir) == 0);
    /* the process would exit now; here the sinks are still freed normally */
    cki_sink_abort(a);
    CHECK(cki_sink_commit(b) == CK_EIO); /* its temporary file is gone */
    CHECK(tfs_count_entries(f.dir) == 0);
    /* a committed sink is no longer in the table: cleanup leaves OUT alone */
    CHECK(cki_sink_open(f.ctx, f.out, 0, NULL, 0, &a) == CK_OK);
    CHECK(cki_sink_commit(a) == CK_OK);
    ck_cleanup_on_signal();
    CHECK(tfs_exists(f.out) && tfs_count_entries(f.dir) == 1);
    teardown(&f);
}

TEST(sink_file_size_limit_gives_efbig_and_no_temp)
{
    fixture f;
    pid_t pid;
    int status = 0;
    if (setup(&f)) { CHECK(0); return; }
    pid = fork();
    if (pid == 0) { /* child: lower RLIMIT_FSIZE, ignore SIGXFSZ as the CLI does */
        struct rlimit rl = {1 << 20, 1 << 20};
        unsigned char *p = pattern(3u << 20, 5);
        cki_sink *s = NULL;
        ck_status st;
        signal(SIGXFSZ, SIG_IGN);
        if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(3);
        st = cki_sink_open(f.ctx, f.out, 0, NULL, 0, &s);
        if (st) _exit(4);
        st = cki_sink_write(s, p, 3u << 20);
        if (st != CK_EIO || !strstr(ck_errmsg(f.ctx), strerror(EFBIG))) _exit(5);
        cki_sink_abort(s);
        _exit(0);
    }
    CHECK(pid > 0 && waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(tfs_count_entries(f.dir) == 0);
    teardown(&f);
}

TEST(source_rejects_folders_and_missing_files)
{
    fixture f;
    cki_source *src = NULL;
    char empty[700], fifo[700];
    if (setup(&f)) { CHECK(0); return; }
    CHECK(cki_source_open(f.ctx, f.dir, &src) == CK_EFORMAT && src == NULL);
    CHECK(strstr(ck_errmsg(f.ctx), "directory") != NULL);
    CHECK(cki_source_open(f.ctx, f.out, &src) == CK_EIO && src == NULL);
    CHECK(strstr(ck_errmsg(f.ctx), f.out) && strstr(ck_errmsg(f.ctx), "cannot open"));
    tfs_join(fifo, sizeof fifo, f.dir, "fifo");
    if (mkfifo(fifo, 0600) == 0) {
        /* opening a FIFO for reading would block until a writer comes: open it
         * with a writer present so the test cannot hang, then expect refusal */
        int wfd = open(fifo, O_RDWR);
        CHECK(cki_source_open(f.ctx, fifo, &src) == CK_EFORMAT && src == NULL);
        CHECK(strstr(ck_errmsg(f.ctx), "not a regular file") != NULL);
        if (wfd >= 0) close(wfd);
    }
    tfs_join(empty, sizeof empty, f.dir, "empty");
    CHECK(tfs_write(empty, "", 0) == 0);
    CHECK(cki_source_open(f.ctx, empty, &src) == CK_OK);
    CHECK(src && src->len == 0 && src->base == NULL);
    cki_source_release(src, 0, 100); /* harmless on anything */
    cki_source_will_need(src, 5, 5);
    cki_source_close(f.ctx, src);
    cki_source_close(f.ctx, NULL);
    teardown(&f);
}

TEST(source_release_is_harmless_on_any_range)
{
    fixture f;
    char in[700];
    size_t n = 1u << 20;
    unsigned char *p = pattern(n, 9);
    cki_source *src = NULL;
    if (setup(&f)) { CHECK(0); return; }
    tfs_join(in, sizeof in, f.dir, "in.bin");
    CHECK(tfs_write(in, p, n) == 0);
    CHECK(cki_source_open(f.ctx, in, &src) == CK_OK);
    if (src) {
        cki_source_release(src, 0, n);
        cki_source_release(src, 1, 10);
        cki_source_release(src, n - 1, UINT64_MAX);
        cki_source_release(src, UINT64_MAX, UINT64_MAX);
        cki_source_will_need(src, 0, UINT64_MAX);
        /* released pages of a file mapping read back unchanged */
        CHECK(memcmp(src->base, p, n) == 0);
        cki_source_close(f.ctx, src);
    }
    CHECK(cki_source_from_memory(f.ctx, "mem", p, n, &src) == CK_OK);
    if (src) {
        CHECK(src->fd < 0 && src->len == n && src->base == p);
        cki_source_release(src, 0, n); /* no-op for memory */
        CHECK(memcmp(src->base, p, n) == 0);
        cki_source_close(f.ctx, src);
    }
    free(p);
    teardown(&f);
}
