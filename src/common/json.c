/*
 * json.c -- the strict JSON reader described in json.h.
 *
 * Hand-written because the safetensors header needs rules no general library
 * enforces together: duplicate keys rejected, integers exact up to 2^64 - 1,
 * depth and size ceilings, and a tree that stays O(input) for 100k-tensor
 * headers. Grammar (RFC 8259):
 *
 *   value  = ws ( object | array | string | number | "true" | "false" | "null" ) ws
 *   object = "{" [ string ":" value *( "," string ":" value ) ] "}"
 *   array  = "[" [ value *( "," value ) ] "]"
 *   number = [ "-" ] ( "0" | [1-9] *DIGIT ) [ "." 1*DIGIT ] [ ("e"|"E") ["+"|"-"] 1*DIGIT ]
 *   ws     = *( SP | HTAB | LF | CR )
 *
 * Two passes over the text keep memory at the size of the tree itself.
 * Pass 1 checks the whole grammar (strings, numbers, literals, depth) and
 * counts the children of every container, in document order; it allocates
 * nothing but that count array (one word per container). Pass 2 walks the
 * text again and, knowing each container's size when it opens, gives it an
 * exactly sized arena array that its children are written into in place: no
 * growing stacks, no copies. Duplicate keys are found in pass 2 as each
 * object closes: pairwise for small objects, by sorting member pointers
 * (O(n log n), immune to hash flooding) for large ones.
 *
 * Both passes are a loop over an explicit stack of open containers, so depth
 * costs heap, not C stack, and the depth ceiling is checked before a frame
 * is pushed.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "json.h"

#define DEFAULT_DEPTH 64
#define SMALL_OBJECT 8
#define KEY_IN_MSG 64

typedef struct frame {
    size_t ord;    /* the container's number in document order */
    size_t filled; /* children seen so far */
    int obj;
    cki_json *items;          /* pass 2, arrays: the children being filled */
    cki_json_member *members; /* pass 2, objects */
} frame;

typedef struct parser {
    ck_ctx *ctx;
    cki_arena *arena;
    const uint8_t *p;
    size_t len, pos;
    cki_json_err *err;
    int build;       /* 0: pass 1 (check, count); 1: pass 2 (build) */
    size_t *counts;  /* children per container, by document order (pass 1) */
    size_t ncounts, capcounts, next_ord;
    frame *fr;       /* open containers, innermost last */
    size_t nfr, capfr;
    unsigned max_depth;
    cki_json_member scratch; /* pass 1 writes values here and forgets them */
} parser;

static ck_status fail(parser *ps, ck_status st, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static ck_status fail(parser *ps, ck_status st, size_t off, const char *fmt, ...)
{
    va_list ap;
    ps->err->off = off;
    va_start(ap, fmt);
    vsnprintf(ps->err->msg, sizeof ps->err->msg, fmt, ap);
    va_end(ap);
    return st;
}

static ck_status nomem(parser *ps)
{
    return fail(ps, CK_ENOMEM, ps->pos, "out of memory");
}

/* "unexpected character 'x'" / "unexpected byte 0x00" / "unexpected end of
 * input", followed by TAIL (", expected ..." or " after the document"). */
static ck_status unexpected(parser *ps, const char *tail)
{
    uint8_t c;
    if (ps->pos >= ps->len)
        return fail(ps, CK_EFORMAT, ps->len, "unexpected end of input%s", tail);
    c = ps->p[ps->pos];
    if (c > 0x20 && c < 0x7f)
        return fail(ps, CK_EFORMAT, ps->pos, "unexpected character '%c'%s", c, tail);
    return fail(ps, CK_EFORMAT, ps->pos, "unexpected byte 0x%02x%s", c, tail);
}

static void skip_ws(parser *ps)
{
    while (ps->pos < ps->len) {
        uint8_t c = ps->p[ps->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        ps->pos++;
    }
}

/* Length (1-4) of the valid UTF-8 sequence at S, or 0 if it is not one. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    size_t need;
    uint32_t cp, min;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { need = 1; cp = c & 0x1F; min = 0x80; }
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; cp = c & 0x0F; min = 0x800; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n - 1 < need) return 0;
    for (size_t k = 1; k <= need; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return need + 1;
}

static int hex4(const uint8_t *p, size_t avail, uint32_t *out)
{
    uint32_t v = 0;
    if (avail < 4) return 1;
    for (int i = 0; i < 4; i++) {
        uint8_t c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(uint8_t *d, uint32_t cp)
{
    if (cp < 0x80) { d[0] = (uint8_t)cp; return 1; }
    if (cp < 0x800) {
        d[0] = (uint8_t)(0xC0 | cp >> 6);
        d[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        d[0] = (uint8_t)(0xE0 | cp >> 12);
        d[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        d[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    d[0] = (uint8_t)(0xF0 | cp >> 18);
    d[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    d[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    d[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

/* The code point of the \u escape (or surrogate pair) at P[I], which starts
 * with a backslash; *STEP is the escape's length in the input. */
static ck_status read_u_escape(parser *ps, size_t i, uint32_t *cp, size_t *step)
{
    uint32_t hi, lo;
    if (hex4(ps->p + i + 2, ps->len - i - 2, &hi))
        return fail(ps, CK_EFORMAT, i, "invalid \\u escape (four hex digits expected)");
    if (hi >= 0xDC00 && hi <= 0xDFFF)
        return fail(ps, CK_EFORMAT, i, "lone surrogate \\u%04x", (unsigned)hi);
    if (hi < 0xD800 || hi > 0xDBFF) {
        *cp = hi;
        *step = 6;
        return CK_OK;
    }
    if (ps->len - i < 12 || ps->p[i + 6] != '\\' || ps->p[i + 7] != 'u' ||
        hex4(ps->p + i + 8, ps->len - i - 8, &lo) || lo < 0xDC00 || lo > 0xDFFF)
        return fail(ps, CK_EFORMAT, i, "lone surrogate \\u%04x", (unsigned)hi);
    *cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
    *step = 12;
    return CK_OK;
}

/* Parses the string whose opening quote is at pos: one pass validates and
 * measures, a second decodes into the arena. */
static ck_status parse_string(parser *ps, const char **out, size_t *out_len)
{
    const uint8_t *p = ps->p;
    size_t start = ps->pos, i = start + 1, dlen = 0, end;
    uint8_t *d, *w;
    ck_status st;

    for (;;) {
        uint8_t c;
        if (i >= ps->len) return fail(ps, CK_EFORMAT, start, "unterminated string");
        c = p[i];
        if (c == '"') break;
        if (c == '\\') {
            uint8_t e;
            if (i + 1 >= ps->len) return fail(ps, CK_EFORMAT, start, "unterminated string");
            e = p[i + 1];
            if (e == 'u') {
                uint32_t cp = 0;
                size_t step = 6;
                if ((st = read_u_escape(ps, i, &cp, &step))) return st;
                dlen += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
                i += step;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' ||
                       e == 'r' || e == 't') {
                dlen++;
                i += 2;
            } else if (e > 0x20 && e < 0x7f) {
                return fail(ps, CK_EFORMAT, i, "invalid escape '\\%c'", e);
            } else {
                return fail(ps, CK_EFORMAT, i, "invalid escape byte 0x%02x", e);
            }
        } else if (c < 0x20) {
            return fail(ps, CK_EFORMAT, i, "control character 0x%02x in a string", c);
        } else if (c < 0x80) {
            dlen++;
            i++;
        } else {
            size_t n = utf8_seq(p + i, ps->len - i);
            if (!n) return fail(ps, CK_EFORMAT, i, "invalid UTF-8 in a string");
            dlen += n;
            i += n;
        }
    }
    end = i;
    ps->pos = end + 1;
    *out_len = dlen;
    if (!ps->build) {
        *out = "";
        return CK_OK;
    }
    d = cki_arena_alloc(ps->arena, dlen + 1);
    if (!d) return nomem(ps);
    w = d;
    for (i = start + 1; i < end;) {
        if (p[i] != '\\') {
            *w++ = p[i++];
            continue;
        }
        switch (p[i + 1]) {
        case 'b': *w++ = '\b'; i += 2; break;
        case 'f': *w++ = '\f'; i += 2; break;
        case 'n': *w++ = '\n'; i += 2; break;
        case 'r': *w++ = '\r'; i += 2; break;
        case 't': *w++ = '\t'; i += 2; break;
        case 'u': {
            uint32_t cp = 0;
            size_t step = 6;
            read_u_escape(ps, i, &cp, &step); /* validated in the first pass */
            w += put_utf8(w, cp);
            i += step;
            break;
        }
        default: *w++ = p[i + 1]; i += 2; break; /* " \ / */
        }
    }
    *w = 0;
    *out = (const char *)d;
    return CK_OK;
}

static int is_digit(const parser *ps, size_t i)
{
    return i < ps->len && ps->p[i] >= '0' && ps->p[i] <= '9';
}

static ck_status parse_number(parser *ps, cki_json *v)
{
    size_t start = ps->pos, i = start;
    if (ps->p[i] == '-') i++;
    if (!is_digit(ps, i)) return fail(ps, CK_EFORMAT, start, "invalid number");
    if (ps->p[i] == '0') {
        i++;
        if (is_digit(ps, i)) return fail(ps, CK_EFORMAT, start, "leading zero in a number");
    } else {
        while (is_digit(ps, i)) i++;
    }
    if (i < ps->len && ps->p[i] == '.') {
        i++;
        if (!is_digit(ps, i)) return fail(ps, CK_EFORMAT, start, "invalid number");
        while (is_digit(ps, i)) i++;
    }
    if (i < ps->len && (ps->p[i] == 'e' || ps->p[i] == 'E')) {
        i++;
        if (i < ps->len && (ps->p[i] == '+' || ps->p[i] == '-')) i++;
        if (!is_digit(ps, i)) return fail(ps, CK_EFORMAT, start, "invalid number");
        while (is_digit(ps, i)) i++;
    }
    v->type = CKI_JSON_NUMBER;
    v->off = start;
    v->len = i - start;
    v->u.num = (const char *)ps->p + start;
    ps->pos = i;
    return CK_OK;
}

static ck_status parse_literal(parser *ps, cki_json *v)
{
    static const struct {
        const char *word;
        size_t len;
        cki_json_type type;
    } lits[] = {
        {"true", 4, CKI_JSON_TRUE}, {"false", 5, CKI_JSON_FALSE}, {"null", 4, CKI_JSON_NULL}};
    for (size_t k = 0; k < 3; k++) {
        if (ps->p[ps->pos] != (uint8_t)lits[k].word[0]) continue;
        if (ps->len - ps->pos < lits[k].len ||
            memcmp(ps->p + ps->pos, lits[k].word, lits[k].len) != 0)
            return fail(ps, CK_EFORMAT, ps->pos, "invalid literal (expected '%s')", lits[k].word);
        v->type = lits[k].type;
        v->off = ps->pos;
        ps->pos += lits[k].len;
        return CK_OK;
    }
    return unexpected(ps, ", expected a value");
}

/* Copies KEY into DST for a message: at most KEY_IN_MSG bytes at a character
 * boundary, control characters shown as '?', "..." when cut. */
static void key_for_msg(char *dst, const char *key, size_t n)
{
    int k = cki_json_clip(key, n, KEY_IN_MSG);
    int j = 0;
    for (int i = 0; i < k; i++) {
        unsigned char c = (unsigned char)key[i];
        dst[j++] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    if ((size_t)k < n) {
        memcpy(dst + j, "...", 3);
        j += 3;
    }
    dst[j] = 0;
}

static int key_order(const void *a, const void *b)
{
    const cki_json_member *x = *(const cki_json_member *const *)a;
    const cki_json_member *y = *(const cki_json_member *const *)b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    if (c) return c;
    if (x->key_len != y->key_len) return x->key_len < y->key_len ? -1 : 1;
    return x < y ? -1 : x > y; /* document order among equal keys */
}

static int same_key(const cki_json_member *x, const cki_json_member *y)
{
    return x->key_len == y->key_len && memcmp(x->key, y->key, x->key_len) == 0;
}

/* Fails on the earliest (in document order) member whose key appeared before. */
static ck_status check_duplicates(parser *ps, const cki_json_member *m, size_t n)
{
    const cki_json_member *dup = NULL;
    char shown[KEY_IN_MSG + 4];
    if (n < 2) return CK_OK;
    if (n <= SMALL_OBJECT) {
        for (size_t i = 1; i < n && !dup; i++)
            for (size_t j = 0; j < i; j++)
                if (same_key(&m[i], &m[j])) {
                    dup = &m[i];
                    break;
                }
    } else {
        const cki_json_member **s = cki_malloc(ps->ctx, n * sizeof *s);
        if (!s) return nomem(ps);
        for (size_t i = 0; i < n; i++) s[i] = &m[i];
        qsort(s, n, sizeof *s, key_order);
        for (size_t i = 0; i + 1 < n; i++)
            if (same_key(s[i], s[i + 1]) && (!dup || s[i + 1] < dup)) dup = s[i + 1];
        cki_free(ps->ctx, s);
    }
    if (!dup) return CK_OK;
    key_for_msg(shown, dup->key, dup->key_len);
    return fail(ps, CK_EFORMAT, dup->key_off, "duplicate key \"%s\"", shown);
}

/* Opens a container at pos. Pass 1 numbers it and starts its child count;
 * pass 2 gives DST an exactly sized children array from that count. */
static ck_status open_container(parser *ps, cki_json *dst)
{
    frame *f;
    int obj = ps->p[ps->pos] == '{';
    if (ps->nfr >= ps->max_depth)
        return fail(ps, CK_ELIMIT, ps->pos, "nesting deeper than %u levels", ps->max_depth);
    if (ps->nfr == ps->capfr) {
        size_t nc = ps->capfr ? ps->capfr * 2 : 16;
        frame *nf = cki_realloc(ps->ctx, ps->fr, nc * sizeof *nf);
        if (!nf) return nomem(ps);
        ps->fr = nf;
        ps->capfr = nc;
    }
    f = &ps->fr[ps->nfr++];
    memset(f, 0, sizeof *f);
    f->obj = obj;
    f->ord = ps->next_ord++;
    if (!ps->build) {
        if (ps->ncounts == ps->capcounts) {
            size_t nc = ps->capcounts ? ps->capcounts * 2 : 64, bytes;
            size_t *n2;
            if (cki_mul_size(&bytes, nc, sizeof *n2)) return nomem(ps);
            n2 = cki_realloc(ps->ctx, ps->counts, bytes);
            if (!n2) return nomem(ps);
            ps->counts = n2;
            ps->capcounts = nc;
        }
        ps->counts[ps->ncounts++] = 0;
    } else {
        size_t n = ps->counts[f->ord], bytes;
        memset(dst, 0, sizeof *dst);
        dst->type = obj ? CKI_JSON_OBJECT : CKI_JSON_ARRAY;
        dst->off = ps->pos;
        dst->len = n;
        if (n) {
            if (cki_mul_size(&bytes, n, obj ? sizeof *f->members : sizeof *f->items))
                return nomem(ps);
            if (obj) f->members = cki_arena_alloc(ps->arena, bytes);
            else f->items = cki_arena_alloc(ps->arena, bytes);
            if (!f->members && !f->items) return nomem(ps);
        }
        if (obj) dst->u.members = f->members;
        else dst->u.items = f->items;
    }
    ps->pos++;
    return CK_OK;
}

/* The member the innermost object's next key goes to (pass 2), or a scratch
 * member (pass 1, which keeps nothing). */
static cki_json_member *key_slot(parser *ps)
{
    frame *f = &ps->fr[ps->nfr - 1];
    return ps->build ? &f->members[f->filled] : &ps->scratch;
}

/* Reads `"key" :` into the innermost object's next member. */
static ck_status read_key(parser *ps)
{
    cki_json_member *m = key_slot(ps);
    ck_status st;
    if (ps->pos >= ps->len || ps->p[ps->pos] != '"')
        return unexpected(ps, ", expected a string key");
    m->key_off = ps->pos;
    if ((st = parse_string(ps, &m->key, &m->key_len))) return st;
    skip_ws(ps);
    if (ps->pos >= ps->len || ps->p[ps->pos] != ':')
        return unexpected(ps, ", expected ':' after the key");
    ps->pos++;
    return CK_OK;
}

/* The value slot of the innermost container's next child. */
static cki_json *child_value(parser *ps)
{
    frame *f = &ps->fr[ps->nfr - 1];
    if (!ps->build) return &ps->scratch.value;
    return f->obj ? &f->members[f->filled].value : &f->items[f->filled];
}

/* Starts the value at pos, written to DST. A scalar or an empty container is
 * complete on return (*OPENED = 0); a non-empty container is left open
 * (*OPENED = 1) with pos at its first child (after the key, for objects). */
static ck_status begin_value(parser *ps, cki_json *dst, int *opened)
{
    uint8_t c;
    ck_status st;
    *opened = 0;
    skip_ws(ps);
    if (ps->pos >= ps->len) return unexpected(ps, ", expected a value");
    c = ps->p[ps->pos];
    if (c == '{' || c == '[') {
        int obj = c == '{';
        if ((st = open_container(ps, dst))) return st;
        skip_ws(ps);
        if (ps->pos < ps->len && ps->p[ps->pos] == (obj ? '}' : ']')) {
            ps->pos++;
            ps->nfr--;
            return CK_OK;
        }
        *opened = 1;
        return obj ? read_key(ps) : CK_OK;
    }
    memset(dst, 0, sizeof *dst);
    if (c == '"') {
        dst->type = CKI_JSON_STRING;
        dst->off = ps->pos;
        return parse_string(ps, &dst->u.str, &dst->len);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(ps, dst);
    return parse_literal(ps, dst);
}

/* One pass over the document. Pass 1 (build = 0) checks the grammar and
 * counts each container's children; pass 2 builds the tree into ROOT. */
static ck_status run_value(parser *ps, cki_json *root, int one_value)
{
    cki_json *dst = root;
    ck_status st;
    ps->nfr = 0;
    for (;;) {
        int opened;
        if ((st = begin_value(ps, dst, &opened))) return st;
        if (opened) {
            dst = child_value(ps);
            continue;
        }
        /* a value is complete: count it, closing every container that ends here */
        for (;;) {
            frame *f;
            if (ps->nfr == 0) {
                if (one_value) return CK_OK;
                skip_ws(ps);
                if (ps->pos != ps->len) return unexpected(ps, " after the document");
                return CK_OK;
            }
            f = &ps->fr[ps->nfr - 1];
            if (ps->build) f->filled++;
            else ps->counts[f->ord]++;
            skip_ws(ps);
            if (ps->pos < ps->len && ps->p[ps->pos] == ',') {
                ps->pos++;
                skip_ws(ps);
                if (f->obj && (st = read_key(ps))) return st;
                dst = child_value(ps);
                break;
            }
            if (ps->pos < ps->len && ps->p[ps->pos] == (f->obj ? '}' : ']')) {
                ps->pos++;
                if (ps->build && f->obj && (st = check_duplicates(ps, f->members, f->filled)))
                    return st;
                ps->nfr--;
                continue;
            }
            return unexpected(ps, f->obj ? ", expected ',' or '}'" : ", expected ',' or ']'");
        }
    }
}

static ck_status run(parser *ps, cki_json *root)
{
    ps->pos = 0;
    ps->next_ord = 0;
    return run_value(ps, root, 0);
}

ck_status cki_json_parse(ck_ctx *ctx, cki_arena *arena, const void *text, size_t len,
                         const cki_json_opts *opts, const cki_json **out, cki_json_err *err)
{
    parser ps;
    cki_json *root;
    ck_status st;

    memset(&ps, 0, sizeof ps);
    ps.ctx = ctx;
    ps.arena = arena;
    ps.p = text;
    ps.len = len;
    ps.err = err;
    ps.max_depth = opts && opts->max_depth ? opts->max_depth : DEFAULT_DEPTH;
    err->off = 0;
    err->msg[0] = 0;
    if (opts && opts->max_bytes && len > opts->max_bytes)
        return fail(&ps, CK_ELIMIT, 0, "document of %zu bytes exceeds the limit of %zu", len,
                    opts->max_bytes);
    st = run(&ps, &ps.scratch.value);
    if (!st) {
        root = cki_arena_alloc(arena, sizeof *root);
        if (!root) {
            st = nomem(&ps);
        } else {
            ps.build = 1;
            st = run(&ps, root);
            if (!st) *out = root;
        }
    }
    cki_free(ctx, ps.counts);
    cki_free(ctx, ps.fr);
    return st;
}

/* Pass 2 of cki_json_parse_members: the top-level object member by member.
 * The grammar is known good (pass 1), so only duplicates can fail here. */
static ck_status stream_members(parser *ps, cki_arena *scratch, cki_json_member_fn fn,
                                void *user)
{
    cki_arena keys; /* copies of top-level keys that had escapes */
    cki_map seen;
    size_t total = ps->counts[0], index = 0, dup_off = 0;
    const char *dup_key = NULL;
    size_t dup_len = 0;
    ck_status st = CK_OK, cb = CK_OK;

    cki_arena_init(&keys, ps->ctx);
    cki_map_init(&seen, ps->ctx);
    ps->build = 1;
    ps->arena = scratch;
    ps->next_ord = 1; /* the top-level object is container 0 */
    if (cki_map_reserve(&seen, total)) {
        st = nomem(ps);
        goto out;
    }
    skip_ws(ps);
    ps->pos++; /* '{' */
    skip_ws(ps);
    if (ps->p[ps->pos] == '}') goto out;
    for (;;) {
        cki_json_member mem;
        const char *kept;
        size_t raw, prev;
        memset(&mem, 0, sizeof mem);
        mem.key_off = ps->pos;
        if ((st = parse_string(ps, &mem.key, &mem.key_len))) goto out;
        raw = ps->pos - mem.key_off - 2;
        skip_ws(ps);
        ps->pos++; /* ':' */
        if ((st = run_value(ps, &mem.value, 1))) goto out;
        /* an escape always shortens a string: equal lengths mean the key is
         * the raw bytes of the input, which outlive this call */
        kept = raw == mem.key_len ? (const char *)ps->p + mem.key_off + 1
                                  : cki_arena_strndup(&keys, mem.key, mem.key_len);
        if (!kept) {
            st = nomem(ps);
            goto out;
        }
        switch (cki_map_put(&seen, kept, mem.key_len, index, &prev)) {
        case 0: break;
        case 1:
            /* reported after the whole document: a duplicate inside a later
             * value closes (and is reported) before the top level does */
            if (!dup_key) {
                dup_key = kept;
                dup_len = mem.key_len;
                dup_off = mem.key_off;
            }
            break;
        default: st = nomem(ps); goto out;
        }
        if (!cb && !dup_key) cb = fn(user, &mem, index, total);
        index++;
        cki_arena_reset(scratch);
        skip_ws(ps);
        if (ps->p[ps->pos] != ',') break;
        ps->pos++;
        skip_ws(ps);
    }
    if (dup_key) {
        char shown[KEY_IN_MSG + 4];
        key_for_msg(shown, dup_key, dup_len);
        st = fail(ps, CK_EFORMAT, dup_off, "duplicate key \"%s\"", shown);
        goto out;
    }
    st = cb;
    if (st) ps->err->msg[0] = 0; /* the callback's failure: its message is in the context */
out:
    cki_map_free(&seen);
    cki_arena_free(&keys);
    return st;
}

ck_status cki_json_parse_members(ck_ctx *ctx, const void *text, size_t len,
                                 const cki_json_opts *opts, cki_json_member_fn fn, void *user,
                                 cki_json_type *top, size_t *top_off, cki_json_err *err)
{
    parser ps;
    cki_arena scratch;
    ck_status st;

    memset(&ps, 0, sizeof ps);
    ps.ctx = ctx;
    ps.p = text;
    ps.len = len;
    ps.err = err;
    ps.max_depth = opts && opts->max_depth ? opts->max_depth : DEFAULT_DEPTH;
    err->off = 0;
    err->msg[0] = 0;
    if (opts && opts->max_bytes && len > opts->max_bytes)
        return fail(&ps, CK_ELIMIT, 0, "document of %zu bytes exceeds the limit of %zu", len,
                    opts->max_bytes);
    cki_arena_init(&scratch, ctx);
    ps.arena = &scratch;
    st = run(&ps, &ps.scratch.value);
    if (!st) {
        uint8_t c;
        ps.pos = 0;
        skip_ws(&ps);
        c = ps.p[ps.pos];
        *top_off = ps.pos;
        *top = c == '{'   ? CKI_JSON_OBJECT
               : c == '[' ? CKI_JSON_ARRAY
               : c == '"' ? CKI_JSON_STRING
               : c == 't' ? CKI_JSON_TRUE
               : c == 'f' ? CKI_JSON_FALSE
               : c == 'n' ? CKI_JSON_NULL
                          : CKI_JSON_NUMBER;
        if (*top == CKI_JSON_OBJECT) st = stream_members(&ps, &scratch, fn, user);
    }
    cki_free(ctx, ps.counts);
    cki_free(ctx, ps.fr);
    cki_arena_free(&scratch);
    return st;
}

const cki_json *cki_json_get(const cki_json *obj, const char *key)
{
    size_t kl;
    if (!obj || obj->type != CKI_JSON_OBJECT) return NULL;
    kl = strlen(key);
    for (size_t i = 0; i < obj->len; i++) {
        const cki_json_member *m = &obj->u.members[i];
        if (m->key_len == kl && memcmp(m->key, key, kl) == 0) return &m->value;
    }
    return NULL;
}

const char *cki_json_to_u64(const cki_json *v, uint64_t *out)
{
    uint64_t r = 0;
    if (!v || v->type != CKI_JSON_NUMBER) return "is not a number";
    if (v->u.num[0] == '-') return "is negative";
    for (size_t i = 0; i < v->len; i++) {
        char c = v->u.num[i];
        if (c == '.' || c == 'e' || c == 'E') return "is not an integer";
    }
    for (size_t i = 0; i < v->len; i++)
        if (cki_mul_u64(&r, r, 10) || cki_add_u64(&r, r, (uint64_t)(v->u.num[i] - '0')))
            return "is larger than 2^64 - 1";
    *out = r;
    return NULL;
}

const char *cki_json_type_name(cki_json_type t)
{
    switch (t) {
    case CKI_JSON_NULL: return "null";
    case CKI_JSON_FALSE:
    case CKI_JSON_TRUE: return "a boolean";
    case CKI_JSON_NUMBER: return "a number";
    case CKI_JSON_STRING: return "a string";
    case CKI_JSON_ARRAY: return "an array";
    case CKI_JSON_OBJECT: return "an object";
    }
    return "?";
}

int cki_json_str_is(const cki_json *v, const char *s)
{
    size_t n = strlen(s);
    return v && v->type == CKI_JSON_STRING && v->len == n && memcmp(v->u.str, s, n) == 0;
}

size_t cki_json_utf8_prefix(const void *p, size_t n)
{
    const uint8_t *s = p;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(s + i, n - i);
        if (!k) break;
        i += k;
    }
    return i;
}

int cki_json_clip(const char *s, size_t n, size_t max)
{
    size_t k;
    if (n <= max) return (int)n;
    k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
    return (int)k;
}
