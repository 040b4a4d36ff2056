/*
 * t_hostile.c -- the hostile "junk" corpus (tests/corpus/bad/junk/, written
 * by tests/corpus/make_junk.py): Git LFS pointers, HTML and XML error pages,
 * an empty file, random bytes, a gzip'd checkpoint, and real checkpoints cut
 * at every sixteenth of their length.
 *
 * Every input must fail to open through the public ck_model_open with format
 * detection, leave no model, and report exactly the line in its .expected
 * file (which names the input by its path from the repository root); and
 * ck_scan must fail on it too: a file that cannot be parsed is never "clean".
 * Every .expected file must have its input, so a held-back input cannot
 * leave a stale line behind.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "ckptkit.h"
#include "t.h"

#define JUNK "tests/corpus/bad/junk"

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc(n > 0 ? (size_t)n + 1 : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n > 0 ? n : 0] = 0;
    if (n > 0 && buf[n - 1] == '\n') buf[n - 1] = 0;
    return buf;
}

/* "<stem>.expected" for input NAME (its stem: the name up to its last dot). */
static void expected_path(char *buf, size_t cap, const char *name)
{
    const char *dot = strrchr(name, '.');
    int stem = dot ? (int)(dot - name) : (int)strlen(name);
    snprintf(buf, cap, JUNK "/%.*s.expected", stem, name);
}

static int is_expected(const char *name)
{
    size_t n = strlen(name);
    return n > 9 && !strcmp(name + n - 9, ".expected");
}

/* Calls FN on every input of the junk folder in name order; returns how many. */
static int each_junk(void (*fn)(const char *path, const char *name))
{
    struct dirent **list;
    int n = scandir(JUNK, &list, NULL, alphasort), count = 0;
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        char path[1024];
        if (name[0] != '.' && !is_expected(name)) {
            snprintf(path, sizeof path, JUNK "/%s", name);
            fn(path, name);
            count++;
        }
        free(list[i]);
    }
    if (n > 0) free(list);
    return count;
}

static void check_open(const char *path, const char *name)
{
    char exp[1100], *want;
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m = NULL;
    ck_status st;
    expected_path(exp, sizeof exp, name);
    want = read_text(exp);
    if (!want) {
        fprintf(stderr, "  %s: no %s\n", path, exp);
        CHECK(!"input without an expected line");
        ck_ctx_free(ctx);
        return;
    }
    st = ck_model_open(ctx, path, NULL, &m);
    CHECK(st != CK_OK && m == NULL);
    CHECK(st == ck_last_status(ctx) && (st == CK_EFORMAT || st == CK_EUNSUPPORTED));
    if (strcmp(ck_errmsg(ctx), want) != 0) {
        fprintf(stderr, "  %s\n    want: %s\n    got:  %s\n", path, want, ck_errmsg(ctx));
        CHECK(!"message differs");
    }
    ck_model_close(m);
    ck_ctx_free(ctx);
    free(want);
}

TEST(hostile_junk_fails_with_expected_lines)
{
    /* 7 attacks by hand and 5 checkpoints x 15 cuts, less those held back */
    CHECK(each_junk(check_open) >= 70);
}

static void check_scan(const char *path, const char *name)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_verdict worst = CK_VERDICT_ALLOWED;
    ck_status st = ck_scan(ctx, path, NULL, NULL, &worst);
    const char *msg = ck_errmsg(ctx);
    (void)name;
    if (st == CK_OK) {
        fprintf(stderr, "  %s: scanned as %s\n", path,
                worst == CK_VERDICT_DANGEROUS ? "unsafe" : "clean");
        CHECK(!"junk was scanned without an error");
    } else {
        CHECK(msg[0] != 0 && strchr(msg, '\n') == NULL);
        CHECK(!strncmp(msg, path, strlen(path)) && msg[strlen(path)] == ':');
    }
    ck_ctx_free(ctx);
}

TEST(hostile_junk_is_never_scanned_clean)
{
    CHECK(each_junk(check_scan) >= 70);
}

TEST(hostile_junk_expected_lines_have_inputs)
{
    struct dirent **list;
    int n = scandir(JUNK, &list, NULL, alphasort), lines = 0;
    CHECK(n > 0);
    for (int i = 0; i < n; i++) {
        const char *name = list[i]->d_name;
        size_t len = strlen(name);
        int found = 0;
        if (is_expected(name)) {
            lines++;
            /* some input NAME-without-".expected".<ext> must sit beside it */
            for (int j = 0; j < n && !found; j++) {
                const char *o = list[j]->d_name;
                const char *dot = strrchr(o, '.');
                found = !is_expected(o) && dot && (size_t)(dot - o) == len - 9 &&
                        !strncmp(o, name, len - 9);
            }
            if (!found) fprintf(stderr, "  " JUNK "/%s has no input\n", name);
            CHECK(found);
        }
    }
    for (int i = 0; i < n; i++) free(list[i]);
    if (n > 0) free(list);
    CHECK(lines >= 70);
}
