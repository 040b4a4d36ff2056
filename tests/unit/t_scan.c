/*
 * t_scan.c -- ck_scan: every MALICIOUS shared fixture is unsafe or fails,
 * every benign one is clean; our crafted payloads (tests/corpus/bad/torch)
 * are caught wherever they hide (a second pickle, an extra zip record, bytes
 * before the archive, a legacy tail, a tar member); raw storage records are
 * not mistaken for pickles; unresolved STACK_GLOBALs are dangerous; a pickle
 * that does not parse fails the scan but its earlier globals are reported;
 * zip records flagged encrypted or misnamed in their local header are read
 * all the same (the scan fails, naming why) while the loader refuses them.
 */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "ckptkit.h"
#include "t.h"
#include "t_fs.h"
#include "t_torchbuild.h"

typedef struct seen {
    int count, dangerous;
    char last_module[128], last_name[128], last_where[256];
    int saw_system;
} seen;

static void on_item(void *user, const ck_scan_item *it)
{
    seen *s = user;
    s->count++;
    if (it->verdict == CK_VERDICT_DANGEROUS) s->dangerous++;
    if (!strcmp(it->name, "system")) s->saw_system = 1;
    snprintf(s->last_module, sizeof s->last_module, "%s", it->module);
    snprintf(s->last_name, sizeof s->last_name, "%s", it->name);
    snprintf(s->last_where, sizeof s->last_where, "%s", it->where);
}

static ck_status scan(const char *path, seen *s, ck_verdict *worst, char *msg, size_t cap)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_status st;
    memset(s, 0, sizeof *s);
    *worst = CK_VERDICT_ALLOWED;
    st = ck_scan(ctx, path, on_item, s, worst);
    if (msg) snprintf(msg, cap, "%s", ck_errmsg(ctx));
    ck_ctx_free(ctx);
    return st;
}

TEST(scan_malicious_fixtures_are_unsafe_or_fail)
{
    size_t n = 0;
    char *tsv = (char *)tfs_read(T_FIXTURES "/MANIFEST.tsv", &n);
    int checked = 0;
    CHECK(tsv != NULL);
    if (!tsv) return;
    tsv[n] = 0;
    for (char *line = strtok(tsv, "\n"); line; line = strtok(NULL, "\n")) {
        char path[512];
        size_t k = strcspn(line, "\t");
        seen s;
        ck_verdict worst;
        ck_status st;
        if (!strstr(line, "MALICIOUS") || k > 300) continue;
        snprintf(path, sizeof path, T_FIXTURES "/%.*s", (int)k, line);
        st = scan(path, &s, &worst, NULL, 0);
        if (!(st != CK_OK || worst == CK_VERDICT_DANGEROUS)) fprintf(stderr, "  clean: %s\n", path);
        CHECK(st != CK_OK || worst == CK_VERDICT_DANGEROUS);
        checked++;
    }
    CHECK(checked >= 15);
    free(tsv);
}

TEST(scan_benign_fixtures_are_clean)
{
    static const char *const files[] = {
        "pytorch-zip/burn_checkpoint.pt",
        "pytorch-zip/picklescan_new_pytorch_model.bin",
        "pytorch-zip/candle_config.pt",
        "pytorch-legacy/lightning_mnist_test.pt",
        "pytorch-legacy/burn_legacy_shared_storage.pt",
        "pytorch-tar/burn_tar_multi_dtype.tar",
        "lightning-ckpt/darts_lr_find_7603e48a.ckpt",
        "pickle/picklescan_benign0_v4.pkl",
        "npz/npyz_compressed.npz",
        "npz/picklescan_object_arrays.npz",
        "safetensors/hf_samples_overall.safetensors",
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[512], msg[1024];
        seen s;
        ck_verdict worst;
        ck_status st;
        snprintf(path, sizeof path, T_FIXTURES "/%s", files[i]);
        st = scan(path, &s, &worst, msg, sizeof msg);
        if (st) fprintf(stderr, "  %s\n", msg);
        CHECK(st == CK_OK && worst != CK_VERDICT_DANGEROUS && s.dangerous == 0);
    }
}

TEST(scan_failure_still_reports_earlier_globals)
{
    seen s;
    ck_verdict worst;
    char msg[1024];
    CHECK(scan(T_FIXTURES "/pickle/picklescan_broken_model.pkl", &s, &worst, msg, sizeof msg) ==
          CK_EFORMAT);
    CHECK(s.dangerous == 1 && !strcmp(s.last_name, "exec"));
    CHECK(strstr(msg, "string of 543558206 bytes but only 63 remain") != NULL);
    CHECK(scan(T_FIXTURES "/pickle/picklescan_malicious6.pkl", &s, &worst, msg, sizeof msg) ==
          CK_OK);
    CHECK(worst == CK_VERDICT_DANGEROUS && !strcmp(s.last_module, "requests.api"));
    CHECK(strstr(s.last_where, "pickle 2, after byte 28") != NULL);
}

/* A dangerous global found wins over a failure around it: *WORST says so even
 * though the scan fails, and a record failing its CRC-32 is scanned anyway. */
TEST(scan_dangerous_reported_despite_crc_and_junk)
{
    seen s;
    ck_verdict worst;
    char msg[1024];
    CHECK(scan("tests/corpus/bad/torch/evil_bad_crc.pt", &s, &worst, msg, sizeof msg) ==
          CK_EFORMAT);
    CHECK(worst == CK_VERDICT_DANGEROUS && s.saw_system && s.count == 4);
    CHECK(strstr(msg, "CRC-32 of its 200 bytes is dd7b0591 but the directory says 12345678"));
    CHECK(scan("tests/corpus/bad/torch/evil_junk_after.pkl", &s, &worst, msg, sizeof msg) ==
          CK_EFORMAT);
    CHECK(worst == CK_VERDICT_DANGEROUS && s.saw_system && s.dangerous == 1);
    CHECK(strstr(msg, "(pickle 2, after byte 63): opcode 0x6e (unknown) at byte 63") != NULL);
    CHECK(scan(T_FIXTURES "/pickle/picklescan_broken_model.pkl", &s, &worst, msg, sizeof msg) ==
          CK_EFORMAT);
    CHECK(worst == CK_VERDICT_DANGEROUS);
}

/* After a record that fails, the scan goes on to the next ones, and the first
 * failure stays the error. */
TEST(scan_goes_past_a_failing_zip_record)
{
    char dir[512], msg[1024], path[1024];
    tb_bytes bad = {0}, evil = {0}, zip;
    seen s;
    ck_verdict worst;
    tz_rec recs[2];
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    tbb_s(&bad, "\x80\x02garbage");
    pk_proto(&evil);
    pk_global(&evil, "os", "system");
    pk_stop(&evil);
    memset(recs, 0, sizeof recs);
    recs[0] = (tz_rec){.name = "a.pkl", .data = bad.p, .len = bad.n};
    recs[1] = (tz_rec){.name = "b.pkl", .data = evil.p, .len = evil.n, .crc_wrong = 1};
    tz_build(recs, 2, NULL, &zip);
    tfs_join(path, sizeof path, dir, "two.zip");
    CHECK(tfs_write(path, zip.p, zip.n) == 0);
    CHECK(scan(path, &s, &worst, msg, sizeof msg) == CK_EFORMAT);
    CHECK(worst == CK_VERDICT_DANGEROUS && s.saw_system);
    CHECK(strstr(msg, "a.pkl") != NULL);
    tbb_free(&bad);
    tbb_free(&evil);
    tbb_free(&zip);
    tfs_rmtree(dir);
}

static int scan_crafted(const char *name)
{
    char path[512];
    seen s;
    ck_verdict worst;
    ck_status st;
    snprintf(path, sizeof path, "tests/corpus/bad/torch/%s", name);
    st = scan(path, &s, &worst, NULL, 0);
    if (st == CK_OK) {
        CHECK(worst == CK_VERDICT_DANGEROUS && s.saw_system);
        if (!s.saw_system) fprintf(stderr, "  %s: no os.system found\n", name);
    }
    return st == CK_OK;
}

TEST(scan_finds_crafted_payloads_wherever_they_hide)
{
    static const char *const unsafe[] = {
        "evil_reduce_zip.pt",      "evil_reduce_legacy.pt",  "evil_second_pickle.pkl",
        "evil_inst_v0.pkl",        "evil_stack_global_memo.pkl", "evil_trailing_zip.pt",
        "evil_extra_record.pt",    "evil_legacy_tail.pt",    "evil_junk_prefix.pt",
        "evil_tar.tar",            "evil_build_state.pt",    "evil_no_prefix.zip",
    };
    /* records a strict unzipper refuses but a lenient one hands to the
     * unpickler: the scan fails naming why, and reports the payload */
    static const char *const hidden[] = {"evil_name_mismatch.pt", "evil_encrypted.pt"};
    for (size_t i = 0; i < sizeof unsafe / sizeof unsafe[0]; i++) CHECK(scan_crafted(unsafe[i]));
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++) {
        char path[512];
        seen s;
        ck_verdict worst;
        snprintf(path, sizeof path, "tests/corpus/bad/torch/%s", hidden[i]);
        CHECK(scan(path, &s, &worst, NULL, 0) != CK_OK);
        CHECK(worst == CK_VERDICT_DANGEROUS && s.saw_system);
    }
}

/* One stored record NAME holding PICKLE, with FLAGS and LOCAL_NAME. */
static ck_status scan_one_record(const char *dir, const char *file, const tb_bytes *pickle,
                                 uint16_t flags, const char *local_name, seen *s,
                                 ck_verdict *worst, char *msg, size_t cap)
{
    tz_rec rec;
    tb_bytes zip;
    char path[1024];
    ck_status st;
    memset(&rec, 0, sizeof rec);
    rec = (tz_rec){.name = "archive/data.pkl", .data = pickle->p, .len = pickle->n,
                   .flags = flags, .local_name = local_name};
    tz_build(&rec, 1, NULL, &zip);
    tfs_join(path, sizeof path, dir, file);
    CHECK(tfs_write(path, zip.p, zip.n) == 0);
    st = scan(path, s, worst, msg, cap);
    tbb_free(&zip);
    return st;
}

TEST(scan_reads_records_hidden_by_encryption_flags_or_local_names)
{
    char dir[512], msg[1024], path[1024];
    tb_bytes evil = {0}, benign = {0};
    seen s;
    ck_verdict worst;
    ck_ctx *ctx;
    ck_model *m = NULL;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    pk_proto(&evil);
    pk_global(&evil, "os", "system");
    pk_stop(&evil);
    pk_proto(&benign);
    pk_global(&benign, "collections", "OrderedDict");
    pk_stop(&benign);

    /* flagged encrypted, bytes in clear: the payload is found, the flag reported */
    CHECK(scan_one_record(dir, "enc.pt", &evil, 0x0001, NULL, &s, &worst, msg, sizeof msg) ==
          CK_EUNSUPPORTED);
    CHECK(worst == CK_VERDICT_DANGEROUS && s.saw_system && s.count == 1);
    CHECK(strstr(msg, "zip member 'archive/data.pkl': encrypted (flags 0x0001)") != NULL);
    /* local header names another record: read under the directory's name */
    CHECK(scan_one_record(dir, "name.pt", &evil, 0, "archive/datap.kl", &s, &worst, msg,
                          sizeof msg) == CK_EFORMAT);
    CHECK(worst == CK_VERDICT_DANGEROUS && s.saw_system);
    CHECK(!strcmp(s.last_where, "archive/data.pkl"));
    CHECK(strstr(msg, "local header names it 'archive/datap.kl'") != NULL);
    /* nothing dangerous inside: still a failure, never clean */
    CHECK(scan_one_record(dir, "benign.pt", &benign, 0x0001, NULL, &s, &worst, msg,
                          sizeof msg) == CK_EUNSUPPORTED);
    CHECK(worst == CK_VERDICT_ALLOWED && s.count == 1);
    /* the loader still refuses such an archive for what it is */
    ctx = ck_ctx_new();
    tfs_join(path, sizeof path, dir, "enc.pt");
    CHECK(ck_model_open(ctx, path, NULL, &m) != CK_OK && m == NULL);
    CHECK(strstr(ck_errmsg(ctx), "encrypted members are refused") != NULL);
    ck_ctx_free(ctx);

    tbb_free(&evil);
    tbb_free(&benign);
    tfs_rmtree(dir);
}

/* Writes BYTES to DIR/NAME and scans it. */
static ck_status scan_bytes(const char *dir, const char *name, const void *p, size_t n, seen *s,
                            ck_verdict *worst, char *msg, size_t cap)
{
    char path[1024];
    tfs_join(path, sizeof path, dir, name);
    if (tfs_write(path, p, n)) return CK_EIO;
    return scan(path, s, worst, msg, cap);
}

TEST(scan_pickle_streams_and_zip_records)
{
    char dir[512], msg[1024];
    tb_bytes b = {0}, zip;
    seen s;
    ck_verdict worst;
    CHECK(tfs_mkdtemp(dir, sizeof dir) == 0);
    /* two benign pickles in a row, then whitespace: clean */
    pk_proto(&b);
    pk_global(&b, "collections", "OrderedDict");
    pk_stop(&b);
    pk_proto(&b);
    pk_global(&b, "torch", "float32");
    pk_stop(&b);
    tbb_s(&b, "\n \n");
    CHECK(scan_bytes(dir, "two.pkl", b.p, b.n, &s, &worst, msg, sizeof msg) == CK_OK);
    CHECK(s.count == 2 && worst == CK_VERDICT_ALLOWED);
    /* then bytes that are not a pickle: the scan fails */
    tbb_s(&b, "garbage");
    CHECK(scan_bytes(dir, "junk.pkl", b.p, b.n, &s, &worst, msg, sizeof msg) == CK_EFORMAT);
    CHECK(s.count == 2);
    tbb_free(&b);
    /* STACK_GLOBAL over a non-string: unresolved, dangerous */
    tbb_put(&b, "\x80\x04K\x01\x8c\x01x\x93.", 9);
    CHECK(scan_bytes(dir, "sg.pkl", b.p, b.n, &s, &worst, msg, sizeof msg) == CK_OK);
    CHECK(worst == CK_VERDICT_DANGEROUS && !strcmp(s.last_module, "?"));
    tbb_free(&b);
    /* a torch zip whose raw storage starts like a pickle: not scanned; the
     * same bytes in an unknown record are */
    {
        static const uint8_t fake[8] = {0x80, 0x02, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        tb_bytes pkl = {0};
        tz_rec recs[3];
        pk_proto(&pkl);
        pk_empty_dict(&pkl);
        pk_stop(&pkl);
        recs[0] = (tz_rec){.name = "m/data.pkl", .data = pkl.p, .len = pkl.n};
        recs[1] = (tz_rec){.name = "m/data/0", .data = fake, .len = sizeof fake};
        recs[2] = (tz_rec){.name = "m/version", .data = "3\n", .len = 2};
        tz_build(recs, 3, NULL, &zip);
        CHECK(scan_bytes(dir, "z.pt", zip.p, zip.n, &s, &worst, msg, sizeof msg) == CK_OK);
        tbb_free(&zip);
        recs[1].name = "m/blob";
        tz_build(recs, 3, NULL, &zip);
        CHECK(scan_bytes(dir, "z2.pt", zip.p, zip.n, &s, &worst, msg, sizeof msg) == CK_EFORMAT);
        CHECK(strstr(msg, "m/blob") != NULL);
        tbb_free(&zip);
        /* a pickle record whose CRC is wrong */
        recs[1].name = "m/data/0";
        recs[0].crc_wrong = 1;
        tz_build(recs, 3, NULL, &zip);
        CHECK(scan_bytes(dir, "z3.pt", zip.p, zip.n, &s, &worst, msg, sizeof msg) == CK_EFORMAT);
        CHECK(strstr(msg, "CRC-32") != NULL);
        tbb_free(&zip);
        tbb_free(&pkl);
    }
    {
        /* a safetensors file is clean only when it reads whole */
        size_t n = 0;
        uint8_t *st = tfs_read(T_FIXTURES "/safetensors/hf_samples_overall.safetensors", &n);
        CHECK(st != NULL && n > 600);
        if (st) {
            CHECK(scan_bytes(dir, "ok.safetensors", st, n, &s, &worst, msg, sizeof msg) == CK_OK);
            CHECK(scan_bytes(dir, "cut.safetensors", st, n - 10, &s, &worst, msg, sizeof msg) ==
                  CK_EFORMAT);
            CHECK(strstr(msg, "cut.safetensors: ") != NULL);
        }
        free(st);
    }
    CHECK(scan_bytes(dir, "empty.pkl", "", 0, &s, &worst, msg, sizeof msg) == CK_EFORMAT);
    CHECK(strstr(msg, "empty file") != NULL);
    tfs_rmtree(dir);
    {
        ck_ctx *ctx = ck_ctx_new();
        CHECK(ck_scan(ctx, "/nonexistent/ckptkit/x.pt", NULL, NULL, &worst) == CK_EIO);
        CHECK(ck_scan(ctx, NULL, NULL, NULL, &worst) == CK_EARG);
        ck_ctx_free(ctx);
    }
}

TEST(scan_npy_object_arrays)
{
    seen s;
    ck_verdict worst;
    CHECK(scan(T_FIXTURES "/npy/picklescan_dns_exfiltration.npy", &s, &worst, NULL, 0) == CK_OK);
    CHECK(worst == CK_VERDICT_DANGEROUS && !strcmp(s.last_name, "get_server_certificate"));
    CHECK(scan(T_FIXTURES "/npy/candle_test.npy", &s, &worst, NULL, 0) == CK_OK);
    CHECK(s.count == 0);
}
