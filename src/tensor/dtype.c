/*
 * dtype.c -- the dtype table, generated from CK_DTYPE_LIST in ckptkit.h, and
 * the name parsers.
 */
#include <strings.h>

#include "cast.h"
#include "tensor.h"

static const cki_dtype_info table[CK_DT_COUNT] = {
#define ROW(id, name, bits, kind) {name, bits, kind, 1, (bits) % 8 ? 0 : (bits) / 8, -1},
    CK_DTYPE_LIST(ROW)
#undef ROW
#define QROW(id, name, block, block_bytes, ggml_id) {name, 0, 'Q', block, block_bytes, ggml_id},
    CK_DTYPE_GGML_LIST(QROW)
#undef QROW
};

/* ggml type ids of the dtypes CK_DTYPE_LIST shares with ggml */
static const struct {
    int ggml;
    ck_dtype dt;
} plain_ggml[] = {
    {0, CK_DT_F32}, {1, CK_DT_F16},  {24, CK_DT_I8},  {25, CK_DT_I16},
    {26, CK_DT_I32}, {27, CK_DT_I64}, {28, CK_DT_F64}, {30, CK_DT_BF16},
};

int cki_dtype_from_ggml(uint32_t id, ck_dtype *out)
{
    for (size_t i = 0; i < sizeof plain_ggml / sizeof plain_ggml[0]; i++)
        if ((uint32_t)plain_ggml[i].ggml == id) {
            *out = plain_ggml[i].dt;
            return 0;
        }
    for (int i = 0; i < CK_DT_COUNT; i++)
        if (table[i].ggml_id >= 0 && (uint32_t)table[i].ggml_id == id) {
            *out = (ck_dtype)i;
            return 0;
        }
    return 1;
}

int cki_dtype_to_ggml(ck_dtype dt, uint32_t *out)
{
    const cki_dtype_info *i = cki_dtype_info_of(dt);
    if (!i) return 1;
    if (i->ggml_id >= 0) {
        *out = (uint32_t)i->ggml_id;
        return 0;
    }
    for (size_t k = 0; k < sizeof plain_ggml / sizeof plain_ggml[0]; k++)
        if (plain_ggml[k].dt == dt) {
            *out = (uint32_t)plain_ggml[k].ggml;
            return 0;
        }
    return 1;
}

unsigned ck_dtype_block(ck_dtype dt, unsigned *block_bytes)
{
    const cki_dtype_info *i = cki_dtype_info_of(dt);
    if (!i) return 0;
    if (block_bytes) *block_bytes = i->block_bytes;
    return i->block;
}

int ck_dtype_is_quantized(ck_dtype dt)
{
    const cki_dtype_info *i = cki_dtype_info_of(dt);
    return i && i->kind == 'Q';
}

const cki_dtype_info *cki_dtype_info_of(ck_dtype dt)
{
    if ((int)dt < 0 || dt >= CK_DT_COUNT) return NULL;
    return &table[dt];
}

const char *ck_dtype_name(ck_dtype dt)
{
    const cki_dtype_info *i = cki_dtype_info_of(dt);
    return i ? i->name : "?";
}

unsigned ck_dtype_bits(ck_dtype dt)
{
    const cki_dtype_info *i = cki_dtype_info_of(dt);
    return i ? i->bits : 0;
}

int ck_dtype_is_float(ck_dtype dt)
{
    const cki_dtype_info *i = cki_dtype_info_of(dt);
    return i && i->kind == 'F';
}

unsigned cki_dtype_size(ck_dtype dt)
{
    unsigned b = ck_dtype_bits(dt);
    return b % 8 ? 0 : b / 8;
}

int cki_dtype_nbytes(ck_dtype dt, uint64_t numel, uint64_t *out)
{
    uint64_t bits;
    const cki_dtype_info *i = cki_dtype_info_of(dt);
    if (i && i->block > 1) { /* whole blocks only */
        if (numel % i->block) return 1;
        return cki_mul_u64(out, numel / i->block, i->block_bytes);
    }
    if (cki_mul_u64(&bits, numel, ck_dtype_bits(dt))) return 1;
    *out = bits / 8 + (bits % 8 != 0);
    return 0;
}

ck_status cki_dtype_from_st_name(const char *s, size_t n, ck_dtype *out)
{
    for (int i = 0; i < CK_DT_COUNT; i++) {
        if (i == CK_DT_C128 || table[i].kind == 'Q') continue; /* not safetensors dtypes */
        if (strlen(table[i].name) == n && memcmp(table[i].name, s, n) == 0) {
            *out = (ck_dtype)i;
            return CK_OK;
        }
    }
    return CK_EARG;
}

ck_status ck_dtype_parse(const char *name, ck_dtype *out)
{
    static const struct {
        const char *alias;
        ck_dtype dt;
    } aliases[] = {
        {"float16", CK_DT_F16},     {"half", CK_DT_F16},        {"fp16", CK_DT_F16},
        {"bfloat16", CK_DT_BF16},   {"float32", CK_DT_F32},     {"float", CK_DT_F32},
        {"fp32", CK_DT_F32},        {"float64", CK_DT_F64},     {"double", CK_DT_F64},
        {"fp64", CK_DT_F64},        {"bool", CK_DT_BOOL},       {"uint8", CK_DT_U8},
        {"int8", CK_DT_I8},         {"int16", CK_DT_I16},       {"int32", CK_DT_I32},
        {"int64", CK_DT_I64},       {"uint16", CK_DT_U16},      {"uint32", CK_DT_U32},
        {"uint64", CK_DT_U64},      {"complex64", CK_DT_C64},   {"complex128", CK_DT_C128},
        {"f8_e4m3fn", CK_DT_F8_E4M3}, {"float8_e4m3fn", CK_DT_F8_E4M3},
        {"float8_e5m2", CK_DT_F8_E5M2}, {"float8_e4m3fnuz", CK_DT_F8_E4M3FNUZ},
        {"float8_e5m2fnuz", CK_DT_F8_E5M2FNUZ}, {"float8_e8m0fnu", CK_DT_F8_E8M0},
    };
    if (!name) return CK_EARG;
    for (int i = 0; i < CK_DT_COUNT; i++) {
        if (strcasecmp(table[i].name, name) == 0) {
            *out = (ck_dtype)i;
            return CK_OK;
        }
    }
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++) {
        if (strcasecmp(aliases[i].alias, name) == 0) {
            *out = aliases[i].dt;
            return CK_OK;
        }
    }
    return CK_EARG;
}

int ck_dtype_can_cast(ck_dtype dt)
{
    return cki_cast_supported(dt, CK_DT_F32) && cki_cast_supported(CK_DT_F32, dt);
}
