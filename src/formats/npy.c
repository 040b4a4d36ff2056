/*
 * npy.c -- the .npy preamble: strict header parser and header writer (npy.h).
 *
 * Checks, in order: the magic "\x93NUMPY"; version 1.0, 2.0 or 3.0 (numpy
 * knows no other); the header length fits in the input and under
 * CKI_NPY_MAX_HEADER; a v3 header is valid UTF-8; the header is one dict
 * literal followed by nothing but whitespace; its keys are exactly descr,
 * fortran_order and shape, each once; fortran_order is True or False; shape
 * is a tuple of at most CKI_MAX_DIMS non-negative integers (each below 2^63)
 * whose product, and the product times the itemsize, fit in 64 bits; descr is
 * a type string from the table below or a list of fields.
 *
 * Type strings: an optional byte-order character (< little, > big, | not
 * applicable, = native, taken as little-endian) then b1, i1 i2 i4 i8, u1 u2 u4
 * u8, f2 f4 f8, c8 c16; f1 is ml_dtypes' float8_e5m2; the ml_dtypes names
 * bfloat16, float8_e4m3fn, float8_e5m2, float8_e4m3fnuz, float8_e5m2fnuz and
 * float8_e8m0fnu (what numpy's dtype() accepts once ml_dtypes is imported)
 * are recognised. O (object: the data is a pickle) and U/S/a (strings), V
 * (void), M/m (datetime), long doubles and structured lists are reported as
 * such, for the reader to refuse or skip. Anything else -- an expression, a
 * call, an unknown spelling -- is refused: nothing is ever evaluated.
 */
#include <stdio.h>

#include "npy.h"

#define MAGIC "\x93NUMPY"
#define ALIGN 64
#define MAX_DEPTH 32

typedef struct parser {
    ck_ctx *ctx;
    const char *file, *what;
    const uint8_t *p;
    size_t len, pos;
    int object;         /* a field of a structured descr is an object */
} parser;

/* A printable copy of S[0..N) into DST (non-printables as '?', long ones cut). */
static void printable(char *dst, size_t cap, const uint8_t *s, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; i < n && j + 4 < cap; i++)
        dst[j++] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    if (j + 4 >= cap && n > j) {
        memcpy(dst + j, "...", 3);
        j += 3;
    }
    dst[j] = 0;
}

static ck_status fail_at(parser *ps, const char *fmt, const char *detail)
{
    char msg[300];
    snprintf(msg, sizeof msg, fmt, detail ? detail : "");
    return cki_fail(ps->ctx, CK_EFORMAT, "%s: %s%snpy header: %s (header byte %zu)", ps->file,
                    ps->what ? ps->what : "", ps->what ? ": " : "", msg, ps->pos);
}

static void skip_ws(parser *ps)
{
    while (ps->pos < ps->len && (ps->p[ps->pos] == ' ' || ps->p[ps->pos] == '\t' ||
                                 ps->p[ps->pos] == '\n' || ps->p[ps->pos] == '\r'))
        ps->pos++;
}

static int peek(parser *ps)
{
    return ps->pos < ps->len ? ps->p[ps->pos] : -1;
}

/* A quoted string literal; *S and *N give its body (escapes left in place). */
static ck_status parse_str(parser *ps, const uint8_t **s, size_t *n)
{
    int q = peek(ps);
    size_t start;
    if (q != '\'' && q != '"') return fail_at(ps, "expected a quoted string%s", NULL);
    start = ++ps->pos;
    while (ps->pos < ps->len && ps->p[ps->pos] != q) {
        if (ps->p[ps->pos] == '\n') return fail_at(ps, "newline inside a string%s", NULL);
        if (ps->p[ps->pos] == '\\') ps->pos++;
        ps->pos++;
    }
    if (ps->pos >= ps->len) return fail_at(ps, "unterminated string%s", NULL);
    *s = ps->p + start;
    *n = ps->pos - start;
    ps->pos++;
    return CK_OK;
}

/* A non-negative decimal integer below 2^63, optional Python 2 L suffix. */
static ck_status parse_int(parser *ps, int64_t *out)
{
    uint64_t v = 0;
    size_t start = ps->pos;
    while (ps->pos < ps->len && ps->p[ps->pos] >= '0' && ps->p[ps->pos] <= '9') {
        if (v > (uint64_t)INT64_MAX / 10 ||
            (v = v * 10 + (uint64_t)(ps->p[ps->pos] - '0')) > (uint64_t)INT64_MAX)
            return fail_at(ps, "integer does not fit in 63 bits%s", NULL);
        ps->pos++;
    }
    if (ps->pos == start) return fail_at(ps, "expected a non-negative integer%s", NULL);
    if (ps->pos - start > 1 && ps->p[start] == '0')
        return fail_at(ps, "integer with a leading zero%s", NULL);
    if (peek(ps) == 'L' || peek(ps) == 'l') ps->pos++;
    *out = (int64_t)v;
    return CK_OK;
}

static int is_word(parser *ps, const char *w)
{
    size_t n = strlen(w);
    int after;
    if (ps->len - ps->pos < n || memcmp(ps->p + ps->pos, w, n)) return 0;
    after = ps->pos + n < ps->len ? ps->p[ps->pos + n] : ' ';
    if ((after >= 'a' && after <= 'z') || (after >= 'A' && after <= 'Z') ||
        (after >= '0' && after <= '9') || after == '_')
        return 0;
    ps->pos += n;
    return 1;
}

static int is_object_typestr(const uint8_t *s, size_t n)
{
    if (n && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) s++, n--;
    return (n == 1 && s[0] == 'O') || (n == 2 && s[0] == 'O' && (s[1] == '4' || s[1] == '8'));
}

/* Any literal (used for structured descr lists); INDEX is its place in the
 * enclosing tuple (-1 elsewhere): strings after a field's name are types. */
static ck_status parse_any(parser *ps, int depth, int index)
{
    int c;
    ck_status st;
    skip_ws(ps);
    c = peek(ps);
    if (depth > MAX_DEPTH) return fail_at(ps, "literal nested deeper than 32 levels%s", NULL);
    if (c == '\'' || c == '"') {
        const uint8_t *s;
        size_t n;
        if ((st = parse_str(ps, &s, &n))) return st;
        if (index >= 1 && is_object_typestr(s, n)) ps->object = 1;
        return CK_OK;
    }
    if (c >= '0' && c <= '9') {
        int64_t v;
        return parse_int(ps, &v);
    }
    if (is_word(ps, "True") || is_word(ps, "False") || is_word(ps, "None")) return CK_OK;
    if (c == '(' || c == '[') {
        int close = c == '(' ? ')' : ']';
        int i = 0;
        ps->pos++;
        for (;;) {
            skip_ws(ps);
            if (peek(ps) == close) break;
            if ((st = parse_any(ps, depth + 1, c == '(' ? i : -1))) return st;
            i++;
            skip_ws(ps);
            if (peek(ps) == ',') {
                ps->pos++;
                continue;
            }
            if (peek(ps) != close) return fail_at(ps, "expected ',' or a closing bracket%s", NULL);
        }
        ps->pos++;
        return CK_OK;
    }
    {
        char ch[8];
        snprintf(ch, sizeof ch, c >= 0x20 && c < 0x7f ? "'%c'" : "0x%02x", c < 0 ? 0 : c);
        if (c < 0) return fail_at(ps, "header ends inside a value%s", NULL);
        return fail_at(ps, "unexpected character %s: the header must be a plain literal, "
                           "expressions are refused", ch);
    }
}

/* ml_dtypes names numpy accepts as dtype strings once ml_dtypes is imported. */
static const struct {
    const char *name;
    ck_dtype dt;
} ml_names[] = {
    {"bfloat16", CK_DT_BF16},
    {"float8_e4m3fn", CK_DT_F8_E4M3},
    {"float8_e5m2", CK_DT_F8_E5M2},
    {"float8_e4m3fnuz", CK_DT_F8_E4M3FNUZ},
    {"float8_e5m2fnuz", CK_DT_F8_E5M2FNUZ},
    {"float8_e8m0fnu", CK_DT_F8_E8M0},
};

static int digits(const uint8_t *s, size_t n, unsigned *v)
{
    unsigned x = 0;
    if (n == 0 || n > 6) return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        x = x * 10 + (unsigned)(s[i] - '0');
    }
    *v = x;
    return 1;
}

/* Fills out->kind, dtype, big_endian, why from type string S[0..N).
 * Returns 0, or -1 when S is not a type string at all. */
static int typestr(const uint8_t *s, size_t n, cki_npy *out)
{
    char order = 0, kind;
    unsigned size = 0;
    for (size_t i = 0; i < sizeof ml_names / sizeof ml_names[0]; i++)
        if (strlen(ml_names[i].name) == n && !memcmp(s, ml_names[i].name, n)) {
            out->kind = CKI_NPY_NUMERIC;
            out->dtype = ml_names[i].dt;
            return 0;
        }
    if (n && (s[0] == '<' || s[0] == '>' || s[0] == '|' || s[0] == '=')) {
        order = (char)s[0];
        s++;
        n--;
    }
    if (!n) return -1;
    kind = (char)s[0];
    if (kind == 'O' && (n == 1 || (digits(s + 1, n - 1, &size) && (size == 4 || size == 8)))) {
        out->kind = CKI_NPY_OBJECT;
        out->why = "an object array (its data is a pickle)";
        return 0;
    }
    if ((kind == 'M' || kind == 'm') && n >= 2 && s[1] == '8') {
        if (n > 2 && (s[2] != '[' || s[n - 1] != ']')) return -1;
        for (size_t i = 3; i + 1 < n; i++)
            if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                  (s[i] >= '0' && s[i] <= '9')))
                return -1;
        out->kind = CKI_NPY_UNSUPPORTED;
        out->why = kind == 'M' ? "datetime64 dtype" : "timedelta64 dtype";
        return 0;
    }
    if (!digits(s + 1, n - 1, &size)) return -1;
    out->kind = CKI_NPY_UNSUPPORTED;
    switch (kind) {
    case 'U': out->why = "unicode string dtype"; return 0;
    case 'S':
    case 'a': out->why = "byte string dtype"; return 0;
    case 'V':
        out->why = size == 1 || size == 2
                       ? "void (raw bytes) dtype; ml_dtypes' bfloat16 and float8 arrays are "
                         "saved this way and cannot be told apart from other raw bytes"
                       : "void (raw bytes) dtype";
        return 0;
    default: break;
    }
    out->kind = CKI_NPY_NUMERIC;
    switch (kind) {
    case 'b': out->dtype = CK_DT_BOOL; if (size != 1) return -1; break;
    case 'i':
        out->dtype = size == 1 ? CK_DT_I8 : size == 2 ? CK_DT_I16 : size == 4 ? CK_DT_I32
                   : size == 8 ? CK_DT_I64 : CK_DT_COUNT;
        break;
    case 'u':
        out->dtype = size == 1 ? CK_DT_U8 : size == 2 ? CK_DT_U16 : size == 4 ? CK_DT_U32
                   : size == 8 ? CK_DT_U64 : CK_DT_COUNT;
        break;
    case 'f':
        if (size == 10 || size == 12 || size == 16) {
            out->kind = CKI_NPY_UNSUPPORTED;
            out->why = "long double dtype";
            return 0;
        }
        out->dtype = size == 1 ? CK_DT_F8_E5M2 : size == 2 ? CK_DT_F16 : size == 4 ? CK_DT_F32
                   : size == 8 ? CK_DT_F64 : CK_DT_COUNT;
        break;
    case 'c':
        if (size == 20 || size == 24 || size == 32) {
            out->kind = CKI_NPY_UNSUPPORTED;
            out->why = "complex long double dtype";
            return 0;
        }
        out->dtype = size == 8 ? CK_DT_C64 : size == 16 ? CK_DT_C128 : CK_DT_COUNT;
        break;
    default: return -1;
    }
    if (out->dtype == CK_DT_COUNT) return -1;
    out->big_endian = order == '>' && size > 1;
    return 0;
}

ck_status cki_npy_preamble_len(ck_ctx *ctx, const char *file, const char *what, const uint8_t *p,
                               uint64_t len, uint64_t *out)
{
    const char *w = what ? what : "", *sep = what ? ": " : "";
    uint64_t hlen, pre;
    if (len < 10 || memcmp(p, MAGIC, 6) != 0)
        return cki_fail(ctx, CK_EFORMAT, "%s: %s%snot a .npy array (no \\x93NUMPY magic)", file,
                        w, sep);
    if (p[6] < 1 || p[6] > 3 || p[7] != 0)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: %s%snpy format version %u.%u is not one of 1.0, 2.0, 3.0", file, w,
                        sep, p[6], p[7]);
    if (p[6] == 1) {
        hlen = cki_ld_le16(p + 8);
        pre = 10;
    } else {
        if (len < 12)
            return cki_fail(ctx, CK_EFORMAT, "%s: %s%snpy preamble cut short at %llu bytes", file,
                            w, sep, (unsigned long long)len);
        hlen = cki_ld_le32(p + 8);
        pre = 12;
    }
    if (hlen > CKI_NPY_MAX_HEADER)
        return cki_fail(ctx, CK_ELIMIT, "%s: %s%snpy header of %llu bytes is over the limit of %u",
                        file, w, sep, (unsigned long long)hlen, CKI_NPY_MAX_HEADER);
    *out = pre + hlen;
    return CK_OK;
}

ck_status cki_npy_parse(ck_ctx *ctx, const char *file, const char *what, const uint8_t *p,
                        uint64_t len, cki_npy *out)
{
    parser ps;
    uint64_t total, esize;
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    const uint8_t *ds = NULL;
    size_t dn = 0, dpos = 0;
    int descr_list = 0;
    ck_status st;

    memset(out, 0, sizeof *out);
    if ((st = cki_npy_preamble_len(ctx, file, what, p, len, &total))) return st;
    if (total > len)
        return cki_fail(ctx, CK_EFORMAT,
                        "%s: %s%snpy header length %llu runs past the end of the data (%llu "
                        "bytes)",
                        file, what ? what : "", what ? ": " : "",
                        (unsigned long long)(total - (p[6] == 1 ? 10 : 12)),
                        (unsigned long long)len);
    out->major = p[6];
    out->minor = p[7];
    out->data_off = total;
    memset(&ps, 0, sizeof ps);
    ps.ctx = ctx;
    ps.file = file;
    ps.what = what;
    ps.p = p + (p[6] == 1 ? 10 : 12);
    ps.len = (size_t)(total - (p[6] == 1 ? 10 : 12));
    if (p[6] == 3 && !cki_utf8_valid(ps.p, ps.len))
        return fail_at(&ps, "version 3.0 header is not valid utf-8%s", NULL);

    skip_ws(&ps);
    if (peek(&ps) != '{') return fail_at(&ps, "expected '{' (the header is a dict)%s", NULL);
    ps.pos++;
    for (;;) {
        const uint8_t *k;
        size_t kn;
        skip_ws(&ps);
        if (peek(&ps) == '}') break;
        if ((st = parse_str(&ps, &k, &kn))) return st;
        skip_ws(&ps);
        if (peek(&ps) != ':') return fail_at(&ps, "expected ':' after a key%s", NULL);
        ps.pos++;
        skip_ws(&ps);
        if (kn == 5 && !memcmp(k, "descr", 5)) {
            if (have_descr++) return fail_at(&ps, "key 'descr' appears twice%s", NULL);
            dpos = ps.pos;
            if (peek(&ps) == '[') {
                descr_list = 1;
                if ((st = parse_any(&ps, 0, -1))) return st;
                ds = ps.p + dpos;
                dn = ps.pos - dpos;
            } else if (peek(&ps) == '\'' || peek(&ps) == '"') {
                if ((st = parse_str(&ps, &ds, &dn))) return st;
            } else {
                if ((st = parse_any(&ps, 0, -1))) return st;
                ps.pos = dpos;
                return fail_at(&ps, "descr must be a type string or a list of fields%s", NULL);
            }
        } else if (kn == 13 && !memcmp(k, "fortran_order", 13)) {
            if (have_fortran++) return fail_at(&ps, "key 'fortran_order' appears twice%s", NULL);
            if (is_word(&ps, "True")) out->fortran = 1;
            else if (!is_word(&ps, "False"))
                return fail_at(&ps, "fortran_order must be True or False%s", NULL);
        } else if (kn == 5 && !memcmp(k, "shape", 5)) {
            if (have_shape++) return fail_at(&ps, "key 'shape' appears twice%s", NULL);
            if (peek(&ps) != '(') return fail_at(&ps, "shape must be a tuple%s", NULL);
            ps.pos++;
            for (;;) {
                int64_t v;
                skip_ws(&ps);
                if (peek(&ps) == ')') break;
                if (out->ndim == CKI_MAX_DIMS)
                    return fail_at(&ps, "shape has more than 64 dimensions%s", NULL);
                if ((st = parse_int(&ps, &v))) return st;
                out->shape[out->ndim++] = v;
                skip_ws(&ps);
                if (peek(&ps) == ',') {
                    ps.pos++;
                    continue;
                }
                if (peek(&ps) != ')') return fail_at(&ps, "expected ',' or ')' in shape%s", NULL);
                if (out->ndim == 1)
                    return fail_at(&ps, "shape (n) without a comma is not a tuple%s", NULL);
            }
            ps.pos++;
        } else {
            char kp[64];
            printable(kp, sizeof kp, k, kn);
            return fail_at(&ps, "unexpected key '%s' (only descr, fortran_order and shape)", kp);
        }
        skip_ws(&ps);
        if (peek(&ps) == ',') {
            ps.pos++;
            continue;
        }
        if (peek(&ps) != '}') return fail_at(&ps, "expected ',' or '}' after a value%s", NULL);
    }
    ps.pos++;
    skip_ws(&ps);
    if (ps.pos != ps.len) return fail_at(&ps, "bytes after the dict%s", NULL);
    if (!have_descr || !have_fortran || !have_shape)
        return fail_at(&ps, "missing key '%s'",
                       !have_descr ? "descr" : !have_fortran ? "fortran_order" : "shape");

    printable(out->descr, sizeof out->descr, ds, dn);
    if (descr_list) {
        out->kind = ps.object ? CKI_NPY_OBJECT : CKI_NPY_UNSUPPORTED;
        out->why = ps.object ? "a structured array with an object field (its data is a pickle)"
                             : "structured (record) dtype";
    } else if (typestr(ds, dn, out)) {
        ps.pos = dpos;
        return fail_at(&ps, "descr '%s' is not a numpy type string", out->descr);
    }
    out->numel = 1;
    for (int d = 0; d < out->ndim; d++)
        if (cki_mul_u64(&out->numel, out->numel, (uint64_t)out->shape[d]))
            return cki_fail(ctx, CK_EFORMAT,
                            "%s: %s%snpy header: shape product overflows 64 bits at dimension %d",
                            file, what ? what : "", what ? ": " : "", d);
    if (out->kind == CKI_NPY_NUMERIC) {
        esize = cki_dtype_size(out->dtype);
        if (cki_mul_u64(&out->nbytes, out->numel, esize))
            return cki_fail(ctx, CK_EFORMAT,
                            "%s: %s%snpy header: %llu elements x %llu bytes overflows 64 bits",
                            file, what ? what : "", what ? ": " : "",
                            (unsigned long long)out->numel, (unsigned long long)esize);
    }
    return CK_OK;
}

const char *cki_npy_descr(ck_dtype dt, int *ml)
{
    *ml = 0;
    switch (dt) {
    case CK_DT_BOOL: return "|b1";
    case CK_DT_U8: return "|u1";
    case CK_DT_I8: return "|i1";
    case CK_DT_U16: return "<u2";
    case CK_DT_I16: return "<i2";
    case CK_DT_U32: return "<u4";
    case CK_DT_I32: return "<i4";
    case CK_DT_U64: return "<u8";
    case CK_DT_I64: return "<i8";
    case CK_DT_F16: return "<f2";
    case CK_DT_F32: return "<f4";
    case CK_DT_F64: return "<f8";
    case CK_DT_C64: return "<c8";
    case CK_DT_C128: return "<c16";
    case CK_DT_BF16: *ml = 1; return "<V2";
    case CK_DT_F8_E5M2: /* ml_dtypes saves it as '<f1', which np.load refuses */
    case CK_DT_F8_E4M3:
    case CK_DT_F8_E4M3FNUZ:
    case CK_DT_F8_E5M2FNUZ:
    case CK_DT_F8_E8M0: *ml = 1; return "<V1";
    default: return NULL;
    }
}

ck_status cki_npy_write_preamble(ck_ctx *ctx, const char *descr, int ndim, const int64_t *shape,
                                 cki_buf *out)
{
    cki_buf dict;
    size_t pre, total, hl;
    cki_buf_init(&dict, ctx, 0);
    cki_buf_printf(&dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim; d++)
        cki_buf_printf(&dict, "%s%lld", d ? ", " : "", (long long)shape[d]);
    cki_buf_puts(&dict, ndim == 1 ? ",), }" : "), }");
    if (dict.failed) {
        cki_buf_free(&dict);
        return CK_ENOMEM;
    }
    pre = 10;
    total = pre + dict.len + 1;
    total += (ALIGN - total % ALIGN) % ALIGN;
    if (total - pre > 65535) {
        pre = 12;
        total = pre + dict.len + 1;
        total += (ALIGN - total % ALIGN) % ALIGN;
    }
    hl = total - pre;
    {
        size_t base = out->len;
        uint8_t head[12];
        memcpy(head, MAGIC, 6);
        head[6] = pre == 10 ? 1 : 2;
        head[7] = 0;
        if (pre == 10) cki_st_le16(head + 8, (uint16_t)hl);
        else cki_st_le32(head + 8, (uint32_t)hl);
        cki_buf_put(out, head, pre);
        cki_buf_put(out, dict.p, dict.len);
        while (out->len < base + total - 1 && !out->failed) cki_buf_putc(out, ' ');
        cki_buf_putc(out, '\n');
    }
    cki_buf_free(&dict);
    return out->failed ? CK_ENOMEM : CK_OK;
}
