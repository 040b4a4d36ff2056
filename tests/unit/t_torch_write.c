/*
 * t_torch_write.c -- the "pth" and "ckpt" writers, driven through a write
 * job over a model built by hand. data.pkl is compared byte for byte with
 * what torch 1.13's torch.save wrote for the same objects (hex below), and
 * for the v3 dtypes with what CPython pickles for torch 2.3+'s reduce
 * output (stand-in torch modules, no torch import). The archives are parsed
 * back with t_zipparse.h. tests/interop/test_torch_write.py loads real
 * outputs with torch.
 */
#include <stdio.h>
#include <zlib.h>

#include "formats/format.h"
#include "t.h"
#include "t_fs.h"
#include "t_zipparse.h"

extern const cki_format cki_fmt_pth;
extern const cki_format cki_fmt_ckpt;

/* torch.save(OrderedDict(a=arange(12.).reshape(3, 4), b=a[1:], c=tensor(5),
 * d=zeros(0, dtype=float16)), "m.pt"): m/data.pkl */
static const char REF_PTH[] =
    "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006171026374"
    "6f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71032828580700000073746f72"
    "616765710463746f7263680a466c6f617453746f726167650a7105580100000030710658030000006370757107"
    "4b0c747108514b004b034b048671094b044b0186710a8968002952710b74710c52710d580100000062710e6803"
    "282868046805680668074b0c74710f514b044b024b048671104b044b0186711189680029527112747113527114"
    "580100000063711568032828680463746f7263680a4c6f6e6753746f726167650a711658010000003171176807"
    "4b01747118514b0029298968002952711974711a52711b580100000064711c68032828680463746f7263680a48"
    "616c6653746f726167650a711d580100000032711e68074b0074711f514b004b008571204b0185712189680029"
    "527122747123527124752e";

/* torch.save({"epoch": 3, "global_step": 7, "pytorch-lightning_version":
 * "1.9.0", "state_dict": OrderedDict(w=arange(6.).reshape(2, 3)),
 * "metadata": {"format": "pt"}}, BytesIO()): archive/data.pkl */
static const char REF_CKPT[] =
    "80027d710028580500000065706f636871014b03580b000000676c6f62616c5f7374657071024b075819000000"
    "7079746f7263682d6c696768746e696e675f76657273696f6e71035805000000312e392e307104580a00000073"
    "746174655f64696374710563636f6c6c656374696f6e730a4f726465726564446963740a71062952710758010000"
    "0077710863746f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a710928285807000000"
    "73746f72616765710a63746f7263680a466c6f617453746f726167650a710b580100000030710c580300000063"
    "7075710d4b0674710e514b004b024b0386710f4b034b01867110896806295271117471125271137358080000006d"
    "6574616461746171147d71155806000000666f726d6174711658020000007074711773752e";

/* OrderedDict(u=<uint16 [3] on storage 0>, f=<float8_e4m3fn [2, 2]>,
 * u2=<uint16 [2] at offset 1 of storage 0>) as torch >= 2.3 reduces them
 * (_rebuild_tensor_v3, UntypedStorage with numel in bytes, dtype global) */
static const char REF_V3[] =
    "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000007571026374"
    "6f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76330a71032828580700000073746f72"
    "616765710463746f7263682e73746f726167650a556e747970656453746f726167650a710558010000003071"
    "06580300000063707571074b06747108514b004b038571094b0185710a8968002952710b63746f7263680a75"
    "696e7431360a710c74710d52710e580100000066710f6803282868046805580100000031711068074b047471"
    "11514b004b024b028671124b024b018671138968002952711463746f7263680a666c6f6174385f65346d3366"
    "6e0a71157471165271175802000000753271186803282868046805680668074b06747119514b014b0285711a"
    "4b0185711b8968002952711c680c74711d52711e752e";

/* torch.save(OrderedDict(t=arange(6, dtype=int16).reshape(1, 2, 1, 3)
 * .permute(3, 1, 2, 0).contiguous(), big=zeros(300, dtype=uint8)), BytesIO()) */
static const char REF_DENSE[] =
    "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000007471026374"
    "6f7263682e5f7574696c730a5f72656275696c645f74656e736f725f76320a71032828580700000073746f72"
    "616765710463746f7263680a53686f727453746f726167650a710558010000003071065803000000637075710"
    "74b06747108514b00284b034b024b014b01747109284b024b014b014b0174710a8968002952710b74710c5271"
    "0d5803000000626967710e68032828680463746f7263680a4279746553746f726167650a710f58010000003171"
    "1068074d2c01747111514b004d2c018571124b0185711389680029527114747115527116752e";

typedef struct tt {
    ck_ctx *ctx;
    ck_model *m;
    cki_source *src;
    char dir[256];
    char path[512];
    uint8_t *file; /* the output, after tt_read */
    size_t len;
    tz_zip zip;
} tt;

static void tt_init(tt *t, const void *bytes, size_t len)
{
    memset(t, 0, sizeof *t);
    t->ctx = ck_ctx_new();
    CHECK(cki_model_new(t->ctx, "mem.bin", &t->m) == CK_OK);
    CHECK(cki_source_from_memory(t->ctx, "mem.bin", bytes, len, &t->src) == CK_OK);
    CHECK(cki_model_add_source(t->m, t->src) == CK_OK);
    CHECK(tfs_mkdtemp(t->dir, sizeof t->dir) == 0);
}

static void tt_done(tt *t)
{
    tz_free(&t->zip);
    free(t->file);
    ck_model_close(t->m);
    tfs_rmtree(t->dir);
    ck_ctx_free(t->ctx);
}

static cki_storage *tt_storage(tt *t, uint64_t off, uint64_t len, ck_dtype dt)
{
    cki_storage *s = NULL;
    CHECK(cki_model_storage(t->m, t->src, off, len, dt, "test storage", &s) == CK_OK);
    return s;
}

static void tt_tensor(tt *t, const char *name, ck_dtype dt, int ndim, const int64_t *shape,
                      const int64_t *stride, uint64_t offset, cki_storage *sg, unsigned flags)
{
    CHECK(cki_model_add_tensor(t->m, "mem.bin", name, strlen(name), dt, ndim, shape, stride,
                               offset, sg, flags, NULL) == CK_OK);
}

/* Writes every tensor of the model to DIR/FILE with F; floating tensors are
 * cast to CAST unless it is CK_DT_KEEP. */
static ck_status tt_write(tt *t, const cki_format *f, const char *file, ck_dtype cast,
                          const char **keys, const char **vals, size_t nmeta, int prune)
{
    cki_write_job job;
    cki_cast_stats cs = {0, 0};
    cki_out_tensor *ots = calloc(t->m->count + 1, sizeof *ots);
    ck_status st;

    tfs_join(t->path, sizeof t->path, t->dir, file);
    memset(&job, 0, sizeof job);
    for (size_t i = 0; i < t->m->count; i++) {
        const cki_tensor *x = &t->m->tensors[i];
        ots[i].name = x->name;
        ots[i].src = x;
        ots[i].dtype = cast != CK_DT_KEEP && ck_dtype_is_float(x->dtype) ? cast : x->dtype;
        cki_dtype_nbytes(ots[i].dtype, x->numel, &ots[i].nbytes);
        job.total_bytes += ots[i].nbytes;
    }
    job.ctx = t->ctx;
    job.path = t->path;
    job.tensors = ots;
    job.count = t->m->count;
    job.meta_keys = keys;
    job.meta_vals = vals;
    job.meta_count = nmeta;
    job.src_model = t->m;
    job.prune = prune;
    job.verify_crc = 1;
    job.stats = &cs;
    job.scratch = cki_malloc(t->ctx, CKI_SCRATCH);
    st = cki_sink_open(t->ctx, t->path, 1, NULL, 0, &job.sink);
    if (!st) st = f->write(&job);
    if (!st)
        st = cki_sink_commit(job.sink);
    else
        cki_sink_abort(job.sink);
    cki_free(t->ctx, job.scratch);
    free(ots);
    return st;
}

/* Reads and parses the output; 1 on success. */
static int tt_read(tt *t)
{
    tz_free(&t->zip);
    free(t->file);
    t->file = tfs_read(t->path, &t->len);
    return t->file && tz_parse(t->file, t->len, &t->zip, 1) == 0;
}

/* The member NAME's bytes, or NULL; its size in *N. */
static const uint8_t *tt_member(tt *t, const char *name, uint64_t *n)
{
    const tz_entry *e = tz_find(&t->zip, name);
    if (!e) return NULL;
    *n = e->size;
    return t->file + e->data;
}

static int same_hex(const uint8_t *p, uint64_t n, const char *hex)
{
    if (!p || n != strlen(hex) / 2) return 0;
    for (uint64_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(hex + 2 * i, "%2x", &v) != 1 || p[i] != v) return 0;
    }
    return 1;
}

/* Every member aligned, CRCs right, in the order NAMES lists them. */
static int tt_layout(tt *t, const char *const *names, size_t n)
{
    if (t->zip.n != n) return 0;
    for (size_t i = 0; i < n; i++) {
        const tz_entry *e = &t->zip.e[i];
        if (strcmp(e->name, names[i]) != 0 || e->data % 64 || e->method || e->flags != 0x800 ||
            e->local_crc != e->crc ||
            e->crc != (uint32_t)crc32(0, t->file + e->data, (uInt)e->size))
            return 0;
    }
    return 1;
}

TEST(torch_write_matches_torch_save)
{
    float a[12];
    int64_t c = 5;
    uint8_t bytes[56];
    int64_t sa[2] = {3, 4}, sb[2] = {2, 4}, sd[1] = {0};
    static const char *const names[] = {"model/data.pkl", "model/byteorder", "model/data/0",
                                        "model/data/1",   "model/data/2",    "model/version"};
    const uint8_t *p;
    uint64_t n = 0;
    tt t;

    for (int i = 0; i < 12; i++) a[i] = (float)i;
    memcpy(bytes, a, 48);
    memcpy(bytes + 48, &c, 8);
    tt_init(&t, bytes, sizeof bytes);
    {
        cki_storage *s0 = tt_storage(&t, 0, 48, CK_DT_F32);
        cki_storage *s1 = tt_storage(&t, 48, 8, CK_DT_I64);
        cki_storage *s2 = tt_storage(&t, 56, 0, CK_DT_F16);
        tt_tensor(&t, "a", CK_DT_F32, 2, sa, NULL, 0, s0, 0);
        tt_tensor(&t, "b", CK_DT_F32, 2, sb, NULL, 4, s0, 0);
        tt_tensor(&t, "c", CK_DT_I64, 0, NULL, NULL, 0, s1, 0);
        tt_tensor(&t, "d", CK_DT_F16, 1, sd, NULL, 0, s2, 0);
    }
    CHECK(tt_write(&t, &cki_fmt_pth, "model.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t));
    CHECK(tt_layout(&t, names, 6));
    p = tt_member(&t, "model/data.pkl", &n);
    CHECK(same_hex(p, n, REF_PTH));
    p = tt_member(&t, "model/data/0", &n); /* a and b share it: written once */
    CHECK(p && n == 48 && memcmp(p, a, 48) == 0);
    p = tt_member(&t, "model/data/1", &n);
    CHECK(p && n == 8 && memcmp(p, &c, 8) == 0);
    p = tt_member(&t, "model/data/2", &n);
    CHECK(p && n == 0);
    p = tt_member(&t, "model/byteorder", &n);
    CHECK(p && n == 6 && memcmp(p, "little", 6) == 0);
    p = tt_member(&t, "model/version", &n);
    CHECK(p && n == 2 && memcmp(p, "3\n", 2) == 0);
    CHECK(t.zip.has_z64); /* like torch: zip64 EOCD even when small */
    tt_done(&t);
}

TEST(torch_write_ckpt_matches_torch_save)
{
    float w[6] = {0, 1, 2, 3, 4, 5};
    int64_t sw[2] = {2, 3};
    /* in the order the torch reader reports them; "format" goes to metadata */
    const char *keys[] = {"format", "global_step", "epoch"};
    const char *vals[] = {"pt", "7", "3"};
    static const char *const names[] = {"archive/data.pkl", "archive/byteorder",
                                        "archive/data/0", "archive/version"};
    const uint8_t *p;
    uint64_t n = 0;
    tt t;
    tt_init(&t, w, sizeof w);
    tt_tensor(&t, "w", CK_DT_F32, 2, sw, NULL, 0, tt_storage(&t, 0, 24, CK_DT_F32), 0);
    CHECK(tt_write(&t, &cki_fmt_ckpt, "last.ckpt", CK_DT_KEEP, keys, vals, 3, 0) == CK_OK);
    CHECK(tt_read(&t));
    CHECK(tt_layout(&t, names, 4));
    p = tt_member(&t, "archive/data.pkl", &n);
    CHECK(same_hex(p, n, REF_CKPT)); /* version defaulted to "1.9.0" */
    p = tt_member(&t, "archive/data/0", &n);
    CHECK(p && n == 24 && memcmp(p, w, 24) == 0);
    tt_done(&t);
}

/* prune: {"state_dict": OrderedDict(...)} and nothing else */
TEST(torch_write_ckpt_prune)
{
    float w[2] = {1, 2};
    int64_t sw[1] = {2};
    const char *keys[] = {"epoch", "format"};
    const char *vals[] = {"3", "pt"};
    static const uint8_t head[] = {0x80, 2,   '}', 'q', 0,   'X', 10,  0,   0,   0,
                                   's',  't', 'a', 't', 'e', '_', 'd', 'i', 'c', 't'};
    const uint8_t *p;
    uint64_t n = 0;
    tt t;
    tt_init(&t, w, sizeof w);
    tt_tensor(&t, "w", CK_DT_F32, 1, sw, NULL, 0, tt_storage(&t, 0, 8, CK_DT_F32), 0);
    CHECK(tt_write(&t, &cki_fmt_ckpt, "p.ckpt", CK_DT_KEEP, keys, vals, 2, 1) == CK_OK);
    CHECK(tt_read(&t));
    p = tt_member(&t, "archive/data.pkl", &n);
    CHECK(p && n > sizeof head + 3 && memcmp(p, head, sizeof head) == 0);
    CHECK(p && p[n - 2] == 's' && p[n - 1] == '.'); /* one pair: SETITEM, STOP */
    CHECK(p && !memmem(p, (size_t)n, "epoch", 5) && !memmem(p, (size_t)n, "metadata", 8));
    tt_done(&t);
}

TEST(torch_write_ckpt_bad_epoch)
{
    float w[1] = {1};
    int64_t sw[1] = {1};
    const char *keys[] = {"epoch"};
    const char *bad[] = {"", "x", "1.5", "99999999999999999999", "-"};
    tt t;
    tt_init(&t, w, sizeof w);
    tt_tensor(&t, "w", CK_DT_F32, 1, sw, NULL, 0, tt_storage(&t, 0, 4, CK_DT_F32), 0);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *vals[1] = {bad[i]};
        CHECK(tt_write(&t, &cki_fmt_ckpt, "e.ckpt", CK_DT_KEEP, keys, vals, 1, 0) == CK_EARG);
        CHECK(strstr(ck_errmsg(t.ctx), "metadata 'epoch' is") != NULL);
        CHECK(strstr(ck_errmsg(t.ctx), "not an integer") != NULL);
    }
    CHECK(!tfs_exists(t.path) && tfs_count_temps(t.dir) == 0);
    {
        const char *vals[1] = {"-9223372036854775808"};
        CHECK(tt_write(&t, &cki_fmt_ckpt, "e.ckpt", CK_DT_KEEP, keys, vals, 1, 0) == CK_OK);
    }
    tt_done(&t);
}

TEST(torch_write_v3_dtypes)
{
    uint8_t bytes[10];
    int64_t su[1] = {3}, sf[2] = {2, 2}, su2[1] = {2};
    const uint8_t *p;
    uint64_t n = 0;
    tt t;
    for (int i = 0; i < 10; i++) bytes[i] = (uint8_t)(0x30 + i);
    tt_init(&t, bytes, sizeof bytes);
    {
        cki_storage *s0 = tt_storage(&t, 0, 6, CK_DT_U16);
        cki_storage *s1 = tt_storage(&t, 6, 4, CK_DT_F8_E4M3);
        tt_tensor(&t, "u", CK_DT_U16, 1, su, NULL, 0, s0, 0);
        tt_tensor(&t, "f", CK_DT_F8_E4M3, 2, sf, NULL, 0, s1, 0);
        tt_tensor(&t, "u2", CK_DT_U16, 1, su2, NULL, 1, s0, 0);
    }
    CHECK(tt_write(&t, &cki_fmt_pth, "v3.pth", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t));
    p = tt_member(&t, "v3/data.pkl", &n);
    CHECK(same_hex(p, n, REF_V3));
    p = tt_member(&t, "v3/data/0", &n);
    CHECK(p && n == 6 && memcmp(p, bytes, 6) == 0);
    p = tt_member(&t, "v3/data/1", &n);
    CHECK(p && n == 4 && memcmp(p, bytes + 6, 4) == 0);
    CHECK(t.zip.n == 5);
    tt_done(&t);
}

/* A permuted view alone on its storage is written dense (gathered). */
TEST(torch_write_dense_view)
{
    int16_t v[6] = {0, 1, 2, 3, 4, 5};
    uint8_t bytes[12 + 300];
    int64_t shape[4] = {3, 2, 1, 1}, stride[4] = {1, 3, 3, 6}, sbig[1] = {300};
    static const int16_t want[6] = {0, 3, 1, 4, 2, 5};
    const uint8_t *p;
    uint64_t n = 0;
    tt t;
    memcpy(bytes, v, 12);
    memset(bytes + 12, 0, 300);
    tt_init(&t, bytes, sizeof bytes);
    tt_tensor(&t, "t", CK_DT_I16, 4, shape, stride, 0, tt_storage(&t, 0, 12, CK_DT_I16), 0);
    tt_tensor(&t, "big", CK_DT_U8, 1, sbig, NULL, 0, tt_storage(&t, 12, 300, CK_DT_U8), 0);
    CHECK(tt_write(&t, &cki_fmt_pth, "dense.bin", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t));
    p = tt_member(&t, "dense/data.pkl", &n);
    CHECK(same_hex(p, n, REF_DENSE));
    p = tt_member(&t, "dense/data/0", &n);
    CHECK(p && n == 12 && memcmp(p, want, 12) == 0);
    tt_done(&t);
}

/* Views far apart on a big storage are written dense, each on its own;
 * casting a shared storage writes each tensor dense as well. */
TEST(torch_write_when_not_shared)
{
    float big[100];
    int64_t s2[1] = {2};
    const uint8_t *p;
    uint64_t n = 0;
    tt t;
    for (int i = 0; i < 100; i++) big[i] = (float)i + 0.5f;
    tt_init(&t, big, sizeof big);
    {
        cki_storage *s = tt_storage(&t, 0, sizeof big, CK_DT_F32);
        tt_tensor(&t, "head", CK_DT_F32, 1, s2, NULL, 0, s, 0);
        tt_tensor(&t, "tail", CK_DT_F32, 1, s2, NULL, 98, s, 0);
    }
    CHECK(tt_write(&t, &cki_fmt_pth, "far.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t) && t.zip.n == 5);
    p = tt_member(&t, "far/data/0", &n);
    CHECK(p && n == 8 && memcmp(p, big, 8) == 0);
    p = tt_member(&t, "far/data/1", &n);
    CHECK(p && n == 8 && memcmp(p, big + 98, 8) == 0);
    tt_done(&t);

    tt_init(&t, big, sizeof big);
    {
        cki_storage *s = tt_storage(&t, 0, 16, CK_DT_F32);
        int64_t s4[1] = {4};
        tt_tensor(&t, "x", CK_DT_F32, 1, s4, NULL, 0, s, 0);
        tt_tensor(&t, "y", CK_DT_F32, 1, s2, NULL, 1, s, 0);
    }
    CHECK(tt_write(&t, &cki_fmt_pth, "cast.pt", CK_DT_F16, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t) && t.zip.n == 5);
    p = tt_member(&t, "cast/data/0", &n);
    CHECK(p && n == 8 && cki_ld_le16(p) == 0x3800 && cki_ld_le16(p + 6) == 0x4300); /* .5, 3.5 */
    p = tt_member(&t, "cast/data/1", &n);
    CHECK(p && n == 4 && cki_ld_le16(p) == 0x3e00); /* 1.5 */
    p = tt_member(&t, "cast/data.pkl", &n);
    CHECK(p && memmem(p, (size_t)n, "HalfStorage", 11) && !memmem(p, (size_t)n, "Float", 5));
    tt_done(&t);
}

/* Overlapping views of a big-endian storage: shared, swapped once; a
 * transposed view keeps its strides into the shared storage. */
TEST(torch_write_shared_big_endian)
{
    uint8_t be[4 * 6];
    int64_t s23[2] = {2, 3}, s32[2] = {3, 2}, st[2] = {1, 3};
    const uint8_t *p;
    uint64_t n = 0;
    tt t;
    for (int i = 0; i < 6; i++) {
        float f = (float)(i + 1);
        uint32_t u;
        memcpy(&u, &f, 4);
        for (int k = 0; k < 4; k++) be[4 * i + k] = (uint8_t)(u >> (24 - 8 * k));
    }
    tt_init(&t, be, sizeof be);
    {
        cki_storage *s = tt_storage(&t, 0, sizeof be, CK_DT_F32);
        s->big_endian = 1;
        tt_tensor(&t, "w", CK_DT_F32, 2, s23, NULL, 0, s, 0);
        tt_tensor(&t, "wt", CK_DT_F32, 2, s32, st, 0, s, 0);
    }
    CHECK(tt_write(&t, &cki_fmt_pth, "be.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t) && t.zip.n == 4);
    p = tt_member(&t, "be/data/0", &n);
    CHECK(p && n == 24);
    for (int i = 0; p && i < 6; i++) {
        float f;
        uint32_t u = cki_ld_le32(p + 4 * i);
        memcpy(&f, &u, 4);
        CHECK(f == (float)(i + 1));
    }
    p = tt_member(&t, "be/data.pkl", &n);
    /* wt: offset 0, size (3, 2) K3 K2 TUPLE2, stride (1, 3) K1 K3 TUPLE2 */
    CHECK(p && memmem(p, (size_t)n, "K\x00K\x03K\x02\x86q\x10K\x01K\x03\x86", 14));
    tt_done(&t);
}

/* conj/neg flags are resolved into the written values. */
TEST(torch_write_conj_resolved)
{
    float c[4] = {1, 2, -3, 4}; /* (1+2i), (-3+4i) */
    int64_t s2[1] = {2};
    const uint8_t *p;
    uint64_t n = 0;
    float got[4];
    tt t;
    tt_init(&t, c, sizeof c);
    {
        cki_storage *s = tt_storage(&t, 0, sizeof c, CK_DT_C64);
        tt_tensor(&t, "z", CK_DT_C64, 1, s2, NULL, 0, s, CKI_T_CONJ);
        tt_tensor(&t, "z2", CK_DT_C64, 1, s2, NULL, 0, s, 0);
    }
    CHECK(tt_write(&t, &cki_fmt_pth, "c.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t) && t.zip.n == 5); /* flagged view not shared */
    p = tt_member(&t, "c/data/0", &n);
    CHECK(p && n == 16);
    if (p) memcpy(got, p, 16);
    CHECK(p && got[0] == 1 && got[1] == -2 && got[2] == -3 && got[3] == -4);
    p = tt_member(&t, "c/data.pkl", &n);
    CHECK(p && memmem(p, (size_t)n, "ComplexFloatStorage", 19));
    tt_done(&t);
}

TEST(torch_write_refuses_sub_byte)
{
    uint8_t b[4] = {0};
    int64_t s4[1] = {4}, s[1] = {8};
    tt t;
    tt_init(&t, b, sizeof b);
    tt_tensor(&t, "ok", CK_DT_U8, 1, s4, NULL, 0, tt_storage(&t, 0, 4, CK_DT_U8), 0);
    tt_tensor(&t, "packed.w", CK_DT_F4, 1, s, NULL, 0, tt_storage(&t, 0, 4, CK_DT_F4), 0);
    CHECK(tt_write(&t, &cki_fmt_pth, "f4.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_EUNSUPPORTED);
    CHECK(strstr(ck_errmsg(t.ctx), "tensor 'packed.w': dtype F4 has no torch equivalent") !=
          NULL);
    CHECK(tt_write(&t, &cki_fmt_ckpt, "f4.ckpt", CK_DT_KEEP, NULL, NULL, 0, 0) ==
          CK_EUNSUPPORTED);
    CHECK(tfs_count_entries(t.dir) == 0);
    tt_done(&t);
}

/* The archive folder: the stem of the output name, "archive" when empty. */
TEST(torch_write_prefix)
{
    static const struct {
        const char *file, *pkl;
    } cases[] = {{"a.b.pt", "a.b/data.pkl"},
                 {"noext", "noext/data.pkl"},
                 {".pth", "archive/data.pkl"},
                 {"pytorch_model.bin", "pytorch_model/data.pkl"},
                 {"w\xc3\xa9ights.pth", "w\xc3\xa9ights/data.pkl"},
                 {"bad\xff.pt", "archive/data.pkl"}};
    uint8_t b[1] = {7};
    int64_t s[1] = {1};
    tt t;
    tt_init(&t, b, sizeof b);
    tt_tensor(&t, "x", CK_DT_U8, 1, s, NULL, 0, tt_storage(&t, 0, 1, CK_DT_U8), 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(tt_write(&t, &cki_fmt_pth, cases[i].file, CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
        CHECK(tt_read(&t) && t.zip.n == 4 && strcmp(t.zip.e[0].name, cases[i].pkl) == 0);
    }
    tt_done(&t);
}

/* The same job twice gives the same bytes; an empty state dict is fine. */
TEST(torch_write_deterministic)
{
    float w[3] = {1, 2, 3};
    int64_t s[1] = {3};
    uint8_t *first;
    size_t first_len;
    const uint8_t *p;
    uint64_t n = 0;
    tt t;
    tt_init(&t, w, sizeof w);
    tt_tensor(&t, "w", CK_DT_F32, 1, s, NULL, 0, tt_storage(&t, 0, 12, CK_DT_F32), 0);
    CHECK(tt_write(&t, &cki_fmt_pth, "d.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t));
    first = t.file;
    first_len = t.len;
    t.file = NULL;
    CHECK(tt_write(&t, &cki_fmt_pth, "d.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t) && t.len == first_len && memcmp(t.file, first, first_len) == 0);
    free(first);
    tt_done(&t);

    tt_init(&t, w, 0);
    CHECK(tt_write(&t, &cki_fmt_pth, "empty.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t) && t.zip.n == 3);
    p = tt_member(&t, "empty/data.pkl", &n);
    CHECK(same_hex(p, n, "800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012e"));
    tt_done(&t);
}

/* An empty tensor with huge other sizes: strides saturate, nothing overflows. */
TEST(torch_write_empty_huge_dims)
{
    uint8_t b[1] = {0};
    int64_t shape[3] = {0, 1ll << 62, 1ll << 62};
    static const uint8_t stride_tuple[] = {0x8a, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                           0xff, 0x7f, 0x8a, 8,    0,    0,    0,    0,
                                           0,    0,    0,    0x40, 'K',  1,    0x87};
    const uint8_t *p;
    uint64_t n = 0;
    tt t;
    tt_init(&t, b, sizeof b);
    tt_tensor(&t, "e", CK_DT_F32, 3, shape, NULL, 0, tt_storage(&t, 0, 0, CK_DT_F32), 0);
    CHECK(tt_write(&t, &cki_fmt_pth, "e.pt", CK_DT_KEEP, NULL, NULL, 0, 0) == CK_OK);
    CHECK(tt_read(&t));
    p = tt_member(&t, "e/data.pkl", &n);
    CHECK(p && memmem(p, (size_t)n, stride_tuple, sizeof stride_tuple));
    p = tt_member(&t, "e/data/0", &n);
    CHECK(p && n == 0);
    tt_done(&t);
}
