/*
 * t_zip_read.c -- the zip reader (src/container/zip_read.c): stored records
 * zero-copy, deflate, zip64 end records, bytes before the archive, a fake end
 * record in the comment, and every refusal: local/central name, method or
 * flag mismatch, encryption, duplicates, unknown methods, CRC mismatch and
 * "not computed", inflate size and ratio limits, overlap, truncation at every
 * length and single-byte corruption everywhere (no crash, a message).
 */
#include <stdlib.h>
#include <string.h>

#include "container/tar.h"
#include "container/zip.h"
#include "t.h"
#include "t_torchbuild.h"

static int warnings;
static char last_warning[1024];

static void count_warn(void *user, const char *msg)
{
    (void)user;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
}

static ck_ctx *new_ctx(void)
{
    ck_ctx *ctx = ck_ctx_new();
    warnings = 0;
    last_warning[0] = 0;
    ck_ctx_set_warn(ctx, count_warn, NULL);
    return ctx;
}

static const char pkl_bytes[] = "\x80\x02}q\x00.";
static const char text[] = "hello hello hello hello hello hello zip world";

/* Reads record NAME of Z whole and compares with WANT. */
static int read_is(cki_zip *z, const char *name, const void *want, size_t n, int check)
{
    const cki_zip_entry *e = cki_zip_find(z, name, strlen(name));
    const uint8_t *d;
    uint64_t len;
    uint8_t *owned = NULL;
    int ok;
    if (!e) return 0;
    if (cki_zip_read(z, e, check, &d, &len, &owned)) return 0;
    ok = len == n && memcmp(d, want, n) == 0;
    cki_free(z->ctx, owned);
    return ok;
}

TEST(zip_stored_and_deflated_records)
{
    tz_rec recs[] = {
        {.name = "m/data.pkl", .data = pkl_bytes, .len = sizeof pkl_bytes - 1},
        {.name = "m/text", .data = text, .len = sizeof text - 1, .deflate = 1},
        {.name = "m/empty", .data = "", .len = 0},
    };
    tb_bytes b;
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    tz_build(recs, 3, NULL, &b);
    CHECK(cki_zip_sniff(b.p, b.n));
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
    CHECK(z.count == 3 && z.shift == 0 && !z.zip64);
    CHECK(read_is(&z, "m/data.pkl", pkl_bytes, sizeof pkl_bytes - 1, 1));
    CHECK(read_is(&z, "m/text", text, sizeof text - 1, 1));
    CHECK(read_is(&z, "m/empty", "", 0, 1));
    CHECK(cki_zip_find(&z, "m/none", 6) == NULL);
    {
        /* stored records are slices of the input */
        const cki_zip_entry *e = cki_zip_find(&z, "m/data.pkl", 10);
        const uint8_t *d;
        uint64_t len;
        uint8_t *owned = (uint8_t *)1;
        CHECK(cki_zip_read(&z, e, 0, &d, &len, &owned) == CK_OK);
        CHECK(owned == NULL && d == b.p + e->data_off);
    }
    {
        uint8_t head[5];
        size_t got = 0;
        const cki_zip_entry *e = cki_zip_find(&z, "m/text", 6);
        CHECK(cki_zip_peek(&z, e, head, 5, &got) == CK_OK && got == 5 && !memcmp(head, "hello", 5));
    }
    CHECK(warnings == 0);
    cki_zip_close(&z);
    tbb_free(&b);
    ck_ctx_free(ctx);
}

TEST(zip_zip64_end_records_and_junk_prefix)
{
    tz_rec recs[] = {{.name = "a/data.pkl", .data = pkl_bytes, .len = sizeof pkl_bytes - 1}};
    tz_opts o64 = {.zip64 = 1}, junk = {.zip64 = 1, .junk = 100}, junk32 = {.junk = 33};
    const tz_opts *all[] = {&o64, &junk, &junk32};
    for (int i = 0; i < 3; i++) {
        tb_bytes b;
        cki_zip z;
        ck_ctx *ctx = new_ctx();
        tz_build(recs, 1, all[i], &b);
        CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
        CHECK(z.zip64 == all[i]->zip64);
        CHECK(z.shift == all[i]->junk);
        CHECK(read_is(&z, "a/data.pkl", pkl_bytes, sizeof pkl_bytes - 1, 1));
        cki_zip_close(&z);
        tbb_free(&b);
        ck_ctx_free(ctx);
    }
}

TEST(zip_fake_end_record_in_comment)
{
    /* a comment holding an EOCD signature whose directory does not parse: the
     * real record before it is used */
    char comment[64];
    tz_rec recs[] = {{.name = "a/x", .data = text, .len = 5}};
    tz_opts o = {.comment = comment};
    tb_bytes b;
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    memset(comment, 'c', sizeof comment - 1);
    comment[sizeof comment - 1] = 0;
    memcpy(comment + 10, "PK\x05\x06", 4);
    tz_build(recs, 1, &o, &b);
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
    CHECK(z.count == 1 && read_is(&z, "a/x", text, 5, 1));
    cki_zip_close(&z);
    tbb_free(&b);
    ck_ctx_free(ctx);
}

static ck_status open_fails(const tz_rec *recs, size_t n, const char *want)
{
    tb_bytes b;
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    ck_status st;
    tz_build(recs, n, NULL, &b);
    st = cki_zip_open(ctx, "t.zip", b.p, b.n, &z);
    if (st == CK_OK) {
        cki_zip_close(&z);
    } else if (!strstr(ck_errmsg(ctx), want)) {
        fprintf(stderr, "  want '%s' in '%s'\n", want, ck_errmsg(ctx));
        st = CK_OK;
    }
    tbb_free(&b);
    ck_ctx_free(ctx);
    return st;
}

TEST(zip_refuses_ambiguous_archives)
{
    tz_rec mismatch[] = {{.name = "a/data.pkl", .local_name = "a/datap.kl", .data = "x", .len = 1}};
    tz_rec enc[] = {{.name = "a/data.pkl", .data = "x", .len = 1, .flags = 1}};
    tz_rec strong[] = {{.name = "a/data.pkl", .data = "x", .len = 1, .flags = 0x41}};
    tz_rec dup[] = {{.name = "a/x", .data = "1", .len = 1}, {.name = "a/x", .data = "2", .len = 1}};
    CHECK(open_fails(mismatch, 1, "local header names it 'a/datap.kl'") == CK_EFORMAT);
    CHECK(open_fails(enc, 1, "encrypted (flags 0x0001)") == CK_EUNSUPPORTED);
    CHECK(open_fails(strong, 1, "encrypted (flags 0x0041)") == CK_EUNSUPPORTED);
    CHECK(open_fails(dup, 2, "appears twice in the directory") == CK_EFORMAT);
}

TEST(zip_local_flags_and_method_must_agree)
{
    tz_rec recs[] = {{.name = "a/x", .data = text, .len = 8}};
    tb_bytes b;
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    tz_build(recs, 1, NULL, &b);
    b.p[6] = 0x08; /* local flags only */
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "local header flags 0x0008 differ") != NULL);
    b.p[6] = 0;
    b.p[8] = 8; /* local method only */
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "local header says method 8, directory says 0") != NULL);
    tbb_free(&b);
    ck_ctx_free(ctx);
}

TEST(zip_unknown_method_and_crc)
{
    tz_rec recs[] = {
        {.name = "a/ok", .data = text, .len = 10},
        {.name = "a/bad", .data = text, .len = 10, .crc_wrong = 1},
        {.name = "a/zero", .data = text, .len = 10, .crc_zero = 1},
        {.name = "a/zero2", .data = text, .len = 11, .crc_zero = 1},
        {.name = "a/defl_bad", .data = text, .len = 20, .deflate = 1, .crc_wrong = 1},
    };
    tb_bytes b;
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    const cki_zip_entry *e;
    const uint8_t *d;
    uint64_t len;
    uint8_t *owned = NULL;
    tz_build(recs, 5, NULL, &b);
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
    e = cki_zip_find(&z, "a/bad", 5);
    CHECK(cki_zip_read(&z, e, 1, &d, &len, &owned) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "zip member 'a/bad': CRC-32 of its 10 bytes is") != NULL);
    CHECK(cki_zip_read(&z, e, 0, &d, &len, &owned) == CK_OK); /* not asked to check */
    e = cki_zip_find(&z, "a/defl_bad", 10);
    CHECK(cki_zip_read(&z, e, 0, &d, &len, &owned) == CK_EFORMAT); /* inflated: always */
    CHECK(read_is(&z, "a/zero", text, 10, 1));
    CHECK(read_is(&z, "a/zero2", text, 11, 1));
    CHECK(warnings == 1 && strstr(last_warning, "CRC-32 is 0") != NULL);
    /* method 12 (bzip2) in both headers */
    e = cki_zip_find(&z, "a/ok", 4);
    ((cki_zip_entry *)e)->method = 12;
    CHECK(cki_zip_read(&z, e, 1, &d, &len, &owned) == CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(ctx), "compression method 12 is not supported") != NULL);
    cki_zip_close(&z);
    tbb_free(&b);
    ck_ctx_free(ctx);
}

/* Patches the central-directory sizes of the first record. */
static void set_sizes(tb_bytes *b, uint32_t csize, uint32_t usize)
{
    for (size_t i = 0; i + 4 <= b->n; i++)
        if (!memcmp(b->p + i, "PK\x01\x02", 4)) {
            if (csize != UINT32_MAX) cki_st_le32(b->p + i + 20, csize);
            cki_st_le32(b->p + i + 24, usize);
            return;
        }
}

TEST(zip_inflate_limits)
{
    static uint8_t zeros[300000];
    tz_rec recs[] = {{.name = "a/z", .data = zeros, .len = sizeof zeros, .deflate = 1}};
    tb_bytes b;
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    const cki_zip_entry *e;
    const uint8_t *d;
    uint64_t len;
    uint8_t *owned = NULL;
    tz_build(recs, 1, NULL, &b);
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
    e = cki_zip_find(&z, "a/z", 3);
    CHECK(cki_zip_read(&z, e, 1, &d, &len, &owned) == CK_OK && len == sizeof zeros);
    cki_free(ctx, owned);
    owned = NULL;
    ck_ctx_set_limit(ctx, CK_LIMIT_INFLATE_BYTES, 1000);
    CHECK(cki_zip_read(&z, e, 1, &d, &len, &owned) == CK_ELIMIT);
    CHECK(strstr(ck_errmsg(ctx), "inflates to 300000 bytes, more than the limit of 1000") != NULL);
    ck_ctx_set_limit(ctx, CK_LIMIT_INFLATE_BYTES, 0);
    cki_zip_close(&z);
    /* a directory that claims more than deflate can give: a bomb */
    set_sizes(&b, UINT32_MAX, 900000000u);
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
    e = cki_zip_find(&z, "a/z", 3);
    CHECK(cki_zip_read(&z, e, 1, &d, &len, &owned) == CK_ELIMIT);
    CHECK(strstr(ck_errmsg(ctx), "a zip bomb") != NULL);
    cki_zip_close(&z);
    /* a directory that claims less than the stream holds */
    set_sizes(&b, UINT32_MAX, 1000);
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
    e = cki_zip_find(&z, "a/z", 3);
    CHECK(cki_zip_read(&z, e, 0, &d, &len, &owned) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "inflates to more than the 1000 bytes") != NULL);
    cki_zip_close(&z);
    /* and more than it holds */
    set_sizes(&b, UINT32_MAX, 300001);
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
    e = cki_zip_find(&z, "a/z", 3);
    CHECK(cki_zip_read(&z, e, 0, &d, &len, &owned) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "inflates to 300000 bytes but its directory entry says 300001") !=
          NULL);
    cki_zip_close(&z);
    tbb_free(&b);
    ck_ctx_free(ctx);
}

TEST(zip_stored_size_mismatch_and_overflowing_record)
{
    tz_rec recs[] = {{.name = "a/x", .data = text, .len = 10}};
    tb_bytes b;
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    const cki_zip_entry *e;
    const uint8_t *d;
    uint64_t len;
    uint8_t *owned = NULL;
    tz_build(recs, 1, NULL, &b);
    set_sizes(&b, UINT32_MAX, 11);
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_OK);
    e = cki_zip_find(&z, "a/x", 3);
    CHECK(cki_zip_read(&z, e, 0, &d, &len, &owned) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "stored member has 10 compressed and 11 uncompressed") != NULL);
    cki_zip_close(&z);
    set_sizes(&b, 5000, 5000);
    CHECK(cki_zip_open(ctx, "t.zip", b.p, b.n, &z) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "run past the central directory") != NULL);
    tbb_free(&b);
    ck_ctx_free(ctx);
}

TEST(zip_overlap_corpus_file)
{
    size_t n = 0;
    FILE *f = fopen("tests/corpus/bad/torch/overlap.pt", "rb");
    uint8_t buf[4096];
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    CHECK(f != NULL);
    if (!f) return;
    n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK(cki_zip_open(ctx, "overlap.pt", buf, n, &z) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "overlap") != NULL);
    ck_ctx_free(ctx);
}

TEST(zip_every_truncation_and_byte_flip_is_handled)
{
    tz_rec recs[] = {
        {.name = "m/data.pkl", .data = pkl_bytes, .len = sizeof pkl_bytes - 1},
        {.name = "m/text", .data = text, .len = sizeof text - 1, .deflate = 1},
        {.name = "m/data/0", .data = text, .len = 16},
    };
    tz_opts o = {.zip64 = 1};
    tb_bytes b;
    ck_ctx *ctx = new_ctx();
    int opened = 0, failed = 0;
    tz_build(recs, 3, &o, &b);
    for (size_t cut = 0; cut < b.n; cut++) {
        cki_zip z;
        uint8_t *copy = malloc(cut ? cut : 1);
        memcpy(copy, b.p, cut);
        if (cki_zip_open(ctx, "t.zip", copy, cut, &z) == CK_OK) {
            opened++;
            cki_zip_close(&z);
        } else {
            failed++;
            CHECK(ck_errmsg(ctx)[0] != 0);
        }
        free(copy);
    }
    CHECK(opened == 0 && failed == (int)b.n);
    for (size_t i = 0; i < b.n; i++) {
        for (int bit = 0; bit < 8; bit += 3) {
            cki_zip z;
            uint8_t *copy = malloc(b.n);
            memcpy(copy, b.p, b.n);
            copy[i] ^= (uint8_t)(1u << bit);
            if (cki_zip_open(ctx, "t.zip", copy, b.n, &z) == CK_OK) {
                for (size_t k = 0; k < z.count; k++) {
                    const uint8_t *d;
                    uint64_t len;
                    uint8_t *owned = NULL;
                    if (cki_zip_read(&z, &z.entries[k], 1, &d, &len, &owned) == CK_OK)
                        CHECK(len == z.entries[k].usize);
                    cki_free(ctx, owned);
                }
                cki_zip_close(&z);
            }
            free(copy);
        }
    }
    tbb_free(&b);
    ck_ctx_free(ctx);
}

TEST(zip_not_a_zip)
{
    cki_zip z;
    ck_ctx *ctx = new_ctx();
    CHECK(cki_zip_open(ctx, "t.zip", (const uint8_t *)"PK", 2, &z) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "cannot hold an end record") != NULL);
    CHECK(cki_zip_open(ctx, "t.zip", (const uint8_t *)text, sizeof text - 1, &z) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "no end-of-central-directory record") != NULL);
    CHECK(!cki_zip_sniff((const uint8_t *)text, sizeof text - 1));
    ck_ctx_free(ctx);
}

TEST(tar_members_checksums_and_bounds)
{
    tb_bytes b = {0};
    cki_tar t;
    ck_ctx *ctx = new_ctx();
    const cki_tar_member *m;
    tt_member(&b, "sys_info", "abc", 3);
    tt_member(&b, "pickle", text, 20);
    tt_end(&b);
    CHECK(cki_tar_sniff(b.p, b.n));
    CHECK(cki_tar_open(ctx, "t.tar", b.p, b.n, &t) == CK_OK);
    CHECK(t.count == 2);
    m = cki_tar_find(&t, "pickle");
    CHECK(m && m->len == 20 && !memcmp(b.p + m->off, text, 20));
    CHECK(cki_tar_find(&t, "storages") == NULL);
    cki_tar_close(&t);
    b.p[512 + 512 + 10] ^= 1; /* second header's name */
    CHECK(cki_tar_open(ctx, "t.tar", b.p, b.n, &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "tar header at byte 1024: bad checksum") != NULL);
    b.p[512 + 512 + 10] ^= 1;
    CHECK(cki_tar_open(ctx, "t.tar", b.p, 1100, &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "do not make a whole header block") != NULL);
    CHECK(cki_tar_open(ctx, "t.tar", b.p, 1540, &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "20 bytes run past the end of the 1540-byte file") != NULL);
    tbb_free(&b);
    tt_member(&b, "pickle", "1", 1);
    tt_member(&b, "pickle", "2", 1);
    CHECK(cki_tar_open(ctx, "t.tar", b.p, b.n, &t) == CK_EFORMAT);
    CHECK(strstr(ck_errmsg(ctx), "tar member 'pickle' appears twice") != NULL);
    tbb_free(&b);
    ck_ctx_free(ctx);
}
