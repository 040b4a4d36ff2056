/*
 * t_fs.h -- file helpers for the unit tests that write to disk (t_sink.c,
 * t_faults.c): a scratch folder, whole-file reads and writes, and a count of
 * the temporary files ckptkit leaves beside an output (".NAME.ckptkit-XXXXXX").
 */
#ifndef T_FS_H
#define T_FS_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A new empty folder under $TMPDIR or /tmp, written into BUF. 0 on success. */
static inline int tfs_mkdtemp(char *buf, size_t cap)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(buf, cap, "%s/ckptkit-unit.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(buf) ? 0 : -1;
}

/* DIR/NAME into BUF. */
static inline const char *tfs_join(char *buf, size_t cap, const char *dir, const char *name)
{
    snprintf(buf, cap, "%s/%s", dir, name);
    return buf;
}

/* Removes every entry of DIR (one level: the tests make no subfolders
 * except empty ones) and DIR itself. */
static inline void tfs_rmtree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4096];
    if (!d) return;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        tfs_join(p, sizeof p, dir, e->d_name);
        if (unlink(p) != 0) rmdir(p);
    }
    closedir(d);
    rmdir(dir);
}

/* Entries of DIR whose names contain ".ckptkit-" (temporary outputs). */
static inline int tfs_count_temps(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".ckptkit-")) n++;
    closedir(d);
    return n;
}

/* Entries of DIR other than "." and "..". */
static inline int tfs_count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d) return -1;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static inline int tfs_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Writes N bytes of P to PATH (created or truncated). 0 on success. */
static inline int tfs_write(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return -1;
    ok = fwrite(p, 1, n, f) == n;
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* The whole of PATH, malloc'd, length in *N; NULL if unreadable. */
static inline unsigned char *tfs_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    unsigned char *p = NULL;
    long len;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        p = malloc((size_t)len + 1);
        if (p && fread(p, 1, (size_t)len, f) != (size_t)len) {
            free(p);
            p = NULL;
        }
        *n = (size_t)len;
    }
    fclose(f);
    return p;
}

/* 1 if PATH holds exactly the N bytes at P. */
static inline int tfs_same(const char *path, const void *p, size_t n)
{
    size_t got = 0;
    unsigned char *b = tfs_read(path, &got);
    int same = b && got == n && memcmp(b, p, n) == 0;
    free(b);
    return same;
}

#endif
