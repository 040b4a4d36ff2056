/*
 * zip.h -- a zip reader for checkpoint archives (torch.save zip files, npz).
 *
 * What it accepts:
 *  - an end-of-central-directory record (EOCD), with or without the zip64
 *    EOCD record and locator (torch writes zip64 records even for tiny files);
 *  - bytes before the archive (a self-extractor program, junk): offsets in the
 *    archive are shifted by the amount the central directory moved;
 *  - a comment that contains another EOCD signature: candidates are tried from
 *    the end of the file backwards and the last one whose central directory
 *    parses completely (entry count and byte size agree) wins; the loader and
 *    the scanner both go through this reader, so they always see the same
 *    directory;
 *  - members STORED (method 0, returned zero-copy) and DEFLATE (method 8,
 *    inflated with zlib under CK_LIMIT_INFLATE_BYTES and a ratio cap).
 *
 * What it refuses, at open:
 *  - a central directory that does not parse, duplicate member names, names
 *    with NUL bytes, more entries than the directory can hold;
 *  - encrypted members (flag bits 0, 6 or 13): their bytes are not what a
 *    loader would see, and scanners can be fooled by them;
 *  - a local header that disagrees with its central entry on the name, the
 *    method or the flags (a classic scanner evasion);
 *    (cki_zip_open_lenient, for the scanner, lets these two pass and keeps
 *    the first as a problem to report)
 *  - members that reach past the central directory or overlap each other.
 * and at read: unknown methods, inflated sizes other than the directory's,
 * absurd compression ratios, CRC-32 mismatches (when asked to check).
 *
 * Sizes and CRCs always come from the central directory: torch writes zeros
 * in local headers and puts the real values in data descriptors.
 */
#ifndef CKI_ZIP_H
#define CKI_ZIP_H

#include "../common/cki.h"
#include "../io/source.h"

/* Flags of the general-purpose bit field that change how bytes are read. */
#define CKI_ZIP_FLAG_ENCRYPTED 0x0001u
#define CKI_ZIP_FLAG_DESCRIPTOR 0x0008u
#define CKI_ZIP_FLAG_STRONG_ENC 0x0040u
#define CKI_ZIP_FLAG_UTF8 0x0800u
#define CKI_ZIP_FLAG_MASKED 0x2000u

#define CKI_ZIP_STORED 0
#define CKI_ZIP_DEFLATE 8

/* The largest ratio of inflated to compressed bytes accepted. Deflate cannot
 * do better than about 1032:1, so a bigger claim is a lie or a bomb. */
#define CKI_ZIP_MAX_RATIO 1100u

typedef struct cki_zip_entry {
    const char *name;  /* NUL-terminated copy (the zip's arena) */
    size_t name_len;
    uint16_t method;
    uint16_t flags;
    uint32_t crc;      /* from the central directory */
    uint64_t csize;    /* compressed bytes (central directory) */
    uint64_t usize;    /* uncompressed bytes (central directory) */
    uint64_t header_off; /* absolute file offset of the local header */
    uint64_t data_off;   /* absolute file offset of the member's bytes */
} cki_zip_entry;

typedef struct cki_zip {
    ck_ctx *ctx;
    const char *file;      /* for messages; borrowed */
    const uint8_t *base;   /* the whole input; borrowed */
    uint64_t len;
    uint64_t shift;        /* bytes before the archive (0 for a normal file) */
    uint64_t cd_off;       /* absolute offset of the central directory */
    uint64_t cd_size;
    uint64_t eocd_off;     /* absolute offset of the EOCD chosen */
    int zip64;             /* zip64 EOCD record used */
    cki_zip_entry *entries; /* central-directory order; cki_malloc'd */
    size_t count;
    cki_map index;         /* name -> entry index */
    int unindexed;         /* cki_zip_index_drop: INDEX is empty, lookups scan ENTRIES */
    cki_arena arena;
    int warned_crc0;       /* the "CRC not computed" warning was given */
    int lenient;           /* opened by cki_zip_open_lenient */
    ck_status problem;     /* lenient: the first check that would have failed the open */
    const char *problem_msg; /* and its message (the zip's arena) */
    /* cki_zip_open_source over a web window (view < len): bytes outside the
     * view are read from SRC; the tail holds the end records */
    const cki_source *src;
    uint64_t view;          /* bytes readable at BASE (LEN when mapped) */
    uint8_t *tail;          /* [tail_off, len) of the file; cki_malloc'd */
    uint64_t tail_off;
} cki_zip;

/* 1 if P[0..LEN) starts with a local-file-header signature (PK\3\4) or is an
 * empty archive (PK\5\6). A hint only; cki_zip_open decides. */
int cki_zip_sniff(const uint8_t *p, uint64_t len);
/* For format probes, without parsing the directory: 1 if P[0..LEN) starts
 * with a local file header whose whole name lies within LEN, with *NAME and
 * *NAME_LEN set to it (not NUL-terminated; not checked against the central
 * directory, which the reader does). 0 otherwise. */
int cki_zip_first_name(const uint8_t *p, uint64_t len, const char **name, size_t *name_len);

/* Parses the directory of the archive in P[0..LEN) (a mapped file) and
 * checks every local header against its central entry. FILE names the input
 * in messages. On failure Z is left closed (cki_zip_close is still safe). */
ck_status cki_zip_open(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len, cki_zip *z);

/* For the scanner, which must see the pickles a lenient unzipper would hand
 * to an unpickler: like cki_zip_open, but members flagged as encrypted and
 * local headers that disagree with the central directory (name, method,
 * flags) do not fail the open. Such members keep their central-directory
 * name, method and sizes, their bytes start after the local header, and the
 * first such problem is kept in z->problem and z->problem_msg (CK_OK when
 * none). Every other check of cki_zip_open still fails it. */
ck_status cki_zip_open_lenient(ck_ctx *ctx, const char *file, const uint8_t *p, uint64_t len,
                               cki_zip *z);
/* The same as cki_zip_open over the whole of SRC. Over a web window (a file
 * too large to hold, SRC->view_len < SRC->len) only what the directory needs
 * is read: the end records from the tail (the last 64 KiB + 98 bytes), the
 * central directory (at most CK_LIMIT_HEADER_BYTES) and each local header;
 * every check is the same. Members past the view are then read through
 * cki_source_pread: cki_zip_read copies a stored one into a buffer the caller
 * owns (so it is for small records: data.pkl, byteorder), inflation reads its
 * input in chunks, and cki_zip_in_view says whether a member's bytes lie in
 * the view. */
ck_status cki_zip_open_source(ck_ctx *ctx, const cki_source *src, cki_zip *z);
/* 1 when E's stored bytes can be pointed at (always, unless the archive was
 * opened over a web window and E lies past it). */
int cki_zip_in_view(const cki_zip *z, const cki_zip_entry *e);
/* CK_OK when E is stored with equal compressed and uncompressed sizes (what
 * cki_zip_read checks first); for a caller that reads the bytes itself. */
ck_status cki_zip_check_stored(const cki_zip *z, const cki_zip_entry *e);
void cki_zip_close(cki_zip *z);

/* The entry named NAME[0..NAME_LEN), or NULL. O(1) (a scan while unindexed). */
/* Frees the name index while a reader needs its memory for something else
 * (lookups still work, by a scan of the entries), and builds it again.
 * Names are unique (cki_zip_open refuses repeats), so lookups answer the
 * same either way. */
void cki_zip_index_drop(cki_zip *z);
ck_status cki_zip_index_build(cki_zip *z);
const cki_zip_entry *cki_zip_find(const cki_zip *z, const char *name, size_t name_len);

/*
 * The bytes of entry E. STORED: *DATA points into the input and *OWNED is
 * NULL. DEFLATE: the member is inflated into a buffer allocated with
 * cki_malloc(z->ctx) which the caller owns (*OWNED, also *DATA). CHECK_CRC: 1
 * verifies the CRC-32 (a CRC of 0 on non-empty data means "not computed":
 * skipped with a warning); inflated members are always checked, since every
 * byte passes through the CPU anyway.
 */
ck_status cki_zip_read(cki_zip *z, const cki_zip_entry *e, int check_crc, const uint8_t **data,
                       uint64_t *len, uint8_t **owned);

/* Copies up to CAP leading bytes of E's uncompressed contents into BUF,
 * inflating only as much as needed; *GOT is set to the number copied. */
ck_status cki_zip_peek(cki_zip *z, const cki_zip_entry *e, uint8_t *buf, size_t cap, size_t *got);

/* Checks DATA[0..LEN) against E's CRC. CK_OK when it matches, when the CRC
 * was not computed (0 on non-empty data: warns) or for empty members. */
ck_status cki_zip_check_crc(cki_zip *z, const cki_zip_entry *e, const uint8_t *data, uint64_t len);


#endif
