/*
 * source.h -- a read-only input file. Parsers get the file as one bounded
 * byte range at BASE; nothing is ever written through it.
 *
 * Two backends, chosen at compile time:
 *  - source.c (every native build): the whole file is memory-mapped, so
 *    VIEW_LEN == LEN.
 *  - source_web.c (the WebAssembly build, __EMSCRIPTEN__): no mmap and no
 *    pread (emscripten 3.1.6 drops the high half of pread's offset), only
 *    lseek + read. A file of at most CKI_SOURCE_WHOLE_MAX bytes is read whole
 *    (VIEW_LEN == LEN); a larger one gets a window over its head (VIEW_LEN <
 *    LEN) that cki_source_view extends, and only readers marked
 *    CKI_CAP_WINDOW (safetensors and GGUF: header at the start; torch zip:
 *    directory read from the tail) are offered such a file.
 *    Tensor bytes outside the view are read with cki_source_pread.
 */
#ifndef CKI_SOURCE_H
#define CKI_SOURCE_H

#include <stdint.h>
#include <sys/types.h>

#include "../common/cki.h"

typedef struct cki_source {
    char *path;          /* as given; owned */
    const uint8_t *base; /* NULL when len == 0 */
    uint64_t len;        /* bytes in the file */
    uint64_t view_len;   /* bytes readable at BASE: LEN, except for a web window */
    int fd;
    dev_t dev;
    ino_t ino;
} cki_source;

/* Opens and maps PATH. Errors name the path ("model.pt: cannot open: ..."). */
ck_status cki_source_open(ck_ctx *ctx, const char *path, cki_source **out);
/* The same; WRITABLE maps copy-on-write with write permission (MAP_PRIVATE):
 * writes through the mapping stay in this process, never reach the file.
 * MAP_NORESERVE keeps a large file from being charged against the commit
 * limit before any page is written. */
ck_status cki_source_open_ex(ck_ctx *ctx, const char *path, int writable, cki_source **out);

/* For the two backends: opens PATH (a regular file, not a folder) and fills a
 * new source's path, fd, dev, ino and len (view_len = len, base NULL); the
 * backend then maps or reads the bytes, and cki_source_close undoes both. */
ck_status cki_source_open_file(ck_ctx *ctx, const char *path, cki_source **out);
/* A source over bytes already in memory (not owned, not copied); for tests
 * and fuzzing. */
ck_status cki_source_from_memory(ck_ctx *ctx, const char *name, const void *p, uint64_t len,
                                 cki_source **out);
void cki_source_close(ck_ctx *ctx, cki_source *src);
/* Tells the kernel the pages of [off, off+len) will not be needed again
 * (streaming: keeps resident memory flat). Harmless to call on any range. */
void cki_source_release(const cki_source *src, uint64_t off, uint64_t len);
/* Makes [0, WANT) readable at SRC->base (a no-op for mapped files). In a web
 * window it reads the missing bytes and may move BASE: call it before taking
 * pointers into the file. Fails when WANT passes the end of the file or the
 * window would pass the context's header limit. */
ck_status cki_source_view(ck_ctx *ctx, const cki_source *src, uint64_t want);
/* Copies [off, off+len) of SRC into DST with pread (no page of the mapping is
 * touched, so streaming does not grow resident memory). Sources made from
 * memory are copied from there. */
ck_status cki_source_pread(ck_ctx *ctx, const cki_source *src, uint64_t off, void *dst,
                           size_t len);
/* Switches the whole mapping to sequential read-ahead: call before streaming
 * tensor bytes (opening maps with no read-ahead, for scattered headers). */
void cki_source_sequential(const cki_source *src);
/* Hints that [off, off+len) will be read soon, in order. */
void cki_source_will_need(const cki_source *src, uint64_t off, uint64_t len);

/* Web build: files up to this size are read whole; larger ones get a window. */
#define CKI_SOURCE_WHOLE_MAX (1ull << 30)
/* Web build: the first window over a large file. */
#define CKI_SOURCE_WINDOW (1u << 20)

#endif
