/*
 * sink.h -- the atomic output file. Bytes go to a temporary file beside OUT
 * (same folder, so rename is atomic); commit flushes, fsyncs and renames it
 * over OUT, then fsyncs the folder. Every other path -- an error, abort, or
 * SIGINT/SIGTERM through ck_cleanup_on_signal -- unlinks the temporary file.
 * Opening refuses an existing OUT unless forced, and refuses an OUT that is
 * one of the inputs by (st_dev, st_ino), which covers symlinks and hard links.
 */
#ifndef CKI_SINK_H
#define CKI_SINK_H

#include <stdint.h>

#include "../common/cki.h"
#include "source.h"

typedef struct cki_sink cki_sink;

ck_status cki_sink_open(ck_ctx *ctx, const char *path, int force, cki_source *const *inputs,
                        size_t input_count, cki_sink **out);
ck_status cki_sink_write(cki_sink *s, const void *p, size_t n);
/* Writes N zero bytes. */
ck_status cki_sink_zeros(cki_sink *s, uint64_t n);
/* Overwrites bytes already written at absolute offset OFF (header patching). */
ck_status cki_sink_pwrite(cki_sink *s, uint64_t off, const void *p, size_t n);
/* Copies [off, off+len) of SRC unchanged, with copy_file_range when it can. */
ck_status cki_sink_copy(cki_sink *s, const cki_source *src, uint64_t off, uint64_t len);
/* Bytes written so far (the next write's offset). */
uint64_t cki_sink_pos(const cki_sink *s);
const char *cki_sink_path(const cki_sink *s);
/* Flushes the buffer and fsyncs the temporary file (no rename): lets a caller
 * with several outputs meet every write error before it renames any. */
ck_status cki_sink_sync(cki_sink *s);
/* Flush, fsync, rename over OUT, fsync the folder; frees S whatever happens
 * (on failure the temporary file is removed). */
ck_status cki_sink_commit(cki_sink *s);
/* Removes the temporary file and frees S. NULL is fine. */
void cki_sink_abort(cki_sink *s);

#endif
