/*
 * zip_write.h -- a zip writer laid out the way torch.save lays out its
 * archives, streaming into an atomic sink. Entries are stored, except those
 * begun with cki_zipw_begin_deflated (npz --compress).
 *
 * Every entry has flag bit 11 (UTF-8 name), DOS time
 * and date 0 (the output depends on nothing but its content), and its data
 * starts on a multiple of CKI_ZIPW_ALIGN bytes: the local header carries an
 * extra field with id "FB" whose payload is 'Z' filler, as torch writes. The
 * zip64 EOCD record and locator are always written (torch does too); zip64
 * extra fields appear wherever a size or an offset needs them, so entries
 * over 4 GiB, archives over 4 GiB and more than 65535 entries all work.
 *
 * Sizes are declared when an entry begins, so local headers carry the true
 * sizes (no data descriptors). CRC-32s of streamed entries are computed by
 * the caller while writing and patched into the local headers by
 * cki_zipw_finish; the central directory carries them directly. A deflated
 * entry's compressed size is known only at its end: its local header holds 0
 * (or, when the worst-case deflate output could reach 4 GiB, 0xffffffff and a
 * zip64 field holding 0) until cki_zipw_finish patches the real value in.
 *
 * Use:
 *     cki_zipw z;
 *     cki_zipw_init(&z, ctx, sink);
 *     cki_zipw_add(&z, "m/data.pkl", pkl, pkl_len);       // from memory
 *     cki_zipw_begin(&z, "m/data/0", nbytes);             // streamed:
 *     ... write exactly nbytes to the sink, updating crc ...
 *     cki_zipw_end(&z, crc);
 *     cki_zipw_finish(&z);                                // directory
 *     cki_zipw_free(&z);
 */
#ifndef CKI_ZIP_WRITE_H
#define CKI_ZIP_WRITE_H

#include "../common/cki.h"
#include "../io/sink.h"

#define CKI_ZIPW_ALIGN 64

typedef struct cki_zipw_entry {
    const char *name; /* in the writer's arena */
    uint16_t name_len;
    uint8_t patch_crc; /* local header still holds CRC 0 */
    uint8_t method;    /* 0 stored, 8 deflate */
    uint8_t local_z64; /* the local header has a zip64 extra field */
    uint32_t crc;
    uint64_t off;  /* local header offset */
    uint64_t size; /* data bytes (uncompressed) */
    uint64_t csize; /* bytes in the archive (stored: == size) */
} cki_zipw_entry;

typedef struct cki_zipw {
    ck_ctx *ctx;
    cki_sink *sink;
    cki_arena names;
    cki_zipw_entry *ents;
    size_t count, cap;
    int open;             /* an entry is between begin and end */
    uint64_t data_start;  /* of the open entry */
    int finished;
} cki_zipw;

void cki_zipw_init(cki_zipw *z, ck_ctx *ctx, cki_sink *sink);
void cki_zipw_free(cki_zipw *z);

/* Writes the local header of entry NAME (UTF-8, 1..65535 bytes, unique is
 * the caller's business) holding SIZE bytes; the data follows, written by the
 * caller straight to the sink. */
ck_status cki_zipw_begin(cki_zipw *z, const char *name, uint64_t size);
/* Closes the open entry: checks that exactly the declared bytes were
 * written and records CRC (zlib crc32 of the data). */
ck_status cki_zipw_end(cki_zipw *z, uint32_t crc);
/* A deflated entry of SIZE uncompressed bytes: the caller writes the raw
 * deflate stream (zlib, -MAX_WBITS) to the sink, then calls
 * cki_zipw_end_deflated with the CRC-32 of the uncompressed bytes and the
 * number of compressed bytes written; cki_zipw_finish patches both into the
 * local header (no data descriptor is needed: the sink can seek back). */
ck_status cki_zipw_begin_deflated(cki_zipw *z, const char *name, uint64_t size);
ck_status cki_zipw_end_deflated(cki_zipw *z, uint32_t crc, uint64_t csize);
/* A whole entry from memory (CRC computed here). */
ck_status cki_zipw_add(cki_zipw *z, const char *name, const void *data, size_t len);
/* Writes the central directory, the zip64 EOCD record and locator and the
 * EOCD, then patches the CRC-32 of streamed entries into their local
 * headers. No entry may be open. */
ck_status cki_zipw_finish(cki_zipw *z);

/* Bytes of the local header (with its extra fields) an entry NAME_LEN long
 * gets at offset OFF with SIZE bytes of data: its data starts at OFF plus
 * this, a multiple of CKI_ZIPW_ALIGN. */
uint64_t cki_zipw_header_len(uint64_t off, size_t name_len, uint64_t size);

#endif
