/*
 * json.h -- a strict JSON (RFC 8259) reader for safetensors headers and
 * ckptkit's own manifests.
 *
 * Why not a general library: a safetensors header needs several rules that no
 * common JSON library enforces together -- duplicate keys are an error (not
 * "last one wins"), integers are exact up to 2^64 - 1 (not doubles), nesting
 * depth and document size have ceilings, and a 100k-tensor header must not
 * turn into a DOM many times its size. Two readers that disagree on any of
 * these see two different files (a parser differential), so the rules live in
 * one small parser we control.
 *
 * What it accepts, exactly:
 *  - RFC 8259 grammar; any value at the top level; whitespace is space, tab,
 *    CR and LF on both sides of any token. No BOM, comments, trailing commas,
 *    NaN/Infinity, single quotes, leading '+' or leading zeros.
 *  - Strings: valid UTF-8 (no overlongs, no encoded surrogates, nothing past
 *    U+10FFFF), no raw control characters; escapes \" \\ \/ \b \f \n \r \t
 *    and \uXXXX, surrogate pairs combined, lone surrogates rejected. Strings
 *    are decoded; \u0000 is kept (len counts it), callers decide about NUL.
 *  - Numbers: checked against the grammar and kept as their lexeme;
 *    cki_json_to_u64 gives an exact unsigned value or says why not.
 *  - Objects keep their members in document order; a key repeated in one
 *    object is an error at parse time, reported at the second occurrence.
 *
 * Memory: the tree lives in the caller's arena -- one 32-byte node per value,
 * one 56-byte member per object member, plus the decoded strings -- and
 * nothing else outlives the call. A first pass counts each container's
 * children so the second allocates exact arrays: at most about 17 bytes per
 * input byte (an array of one-digit numbers), far less for real headers.
 * Parsing is iterative (no recursion), so depth costs no C stack.
 *
 * Errors carry the byte offset into the input; the caller adds the file name
 * ("model.safetensors: header: duplicate key \"w\" at byte 123").
 */
#ifndef CKI_JSON_H
#define CKI_JSON_H

#include "cki.h"

typedef enum cki_json_type {
    CKI_JSON_NULL,
    CKI_JSON_FALSE,
    CKI_JSON_TRUE,
    CKI_JSON_NUMBER,
    CKI_JSON_STRING,
    CKI_JSON_ARRAY,
    CKI_JSON_OBJECT
} cki_json_type;

typedef struct cki_json cki_json;
typedef struct cki_json_member cki_json_member;

struct cki_json {
    cki_json_type type;
    size_t off; /* byte offset of the value's first byte in the input */
    size_t len; /* STRING: decoded bytes; NUMBER: lexeme bytes; ARRAY: items; OBJECT: members */
    union {
        const char *str;                /* STRING: decoded, NUL-terminated; in the arena */
        const char *num;                /* NUMBER: the lexeme; borrowed from the input */
        const cki_json *items;          /* ARRAY: len values; in the arena */
        const cki_json_member *members; /* OBJECT: len members in document order */
    } u;
};

struct cki_json_member {
    const char *key; /* decoded, NUL-terminated; in the arena */
    size_t key_len;  /* bytes, \u0000 included */
    size_t key_off;  /* offset of the key's opening quote */
    cki_json value;
};

typedef struct cki_json_opts {
    unsigned max_depth; /* containers nested deeper fail with CK_ELIMIT; 0: 64 */
    size_t max_bytes;   /* a longer input fails with CK_ELIMIT; 0: no limit */
} cki_json_opts;

typedef struct cki_json_err {
    size_t off;    /* byte offset of the problem in the input */
    char msg[192]; /* what is wrong, lowercase, without the offset */
} cki_json_err;

/*
 * Parses TEXT[0..LEN) into a tree allocated in ARENA. OPTS may be NULL.
 * Returns CK_OK and sets *OUT; CK_EFORMAT for a grammar error and CK_ELIMIT
 * for a depth or size limit, with ERR filled and the context's message left
 * alone (the caller knows the file name); CK_ENOMEM when an allocation fails
 * (the context holds the message, ERR says "out of memory"). Number lexemes
 * point into TEXT, which must outlive the tree.
 */
ck_status cki_json_parse(ck_ctx *ctx, cki_arena *arena, const void *text, size_t len,
                         const cki_json_opts *opts, const cki_json **out, cki_json_err *err);

/*
 * The same rules, without a tree of the whole document: for a top-level
 * object, FN is called once per member in document order with that member
 * alone (key and value tree in scratch memory reused for the next member:
 * copy what you keep), its 0-based INDEX and the TOTAL member count. Memory
 * is the largest member plus a table of the top-level keys (about 40 bytes a
 * member), not the document. Checks and messages are those of
 * cki_json_parse, in the same precedence: grammar errors anywhere first (a
 * first pass checks the whole text before FN is called), then duplicate keys
 * (inner objects before the top level), and only then a failure FN returned
 * (returned as is, with ERR's message empty: the context holds FN's). After
 * FN fails or a top-level key repeats, FN is not called again but the rest
 * is still checked. *TOP and *TOP_OFF are set to the top-level value's type
 * and offset; FN is called only when it is an object.
 */
typedef ck_status (*cki_json_member_fn)(void *user, const cki_json_member *m, size_t index,
                                        size_t total);
ck_status cki_json_parse_members(ck_ctx *ctx, const void *text, size_t len,
                                 const cki_json_opts *opts, cki_json_member_fn fn, void *user,
                                 cki_json_type *top, size_t *top_off, cki_json_err *err);

/* The member named KEY of object OBJ, or NULL (also when OBJ is not an object).
 * Linear: meant for objects with a handful of known fields. */
const cki_json *cki_json_get(const cki_json *obj, const char *key);

/*
 * The exact value of a number written as a non-negative integer. Returns NULL
 * and sets *OUT on success, else a reason that reads after the value's name:
 * "is not a number", "is negative", "is not an integer" (a fraction or an
 * exponent, even 1.0 or 1e2), "is larger than 2^64 - 1".
 */
const char *cki_json_to_u64(const cki_json *v, uint64_t *out);

/* "null", "a boolean", "a number", "a string", "an array", "an object". */
const char *cki_json_type_name(cki_json_type t);

/* 1 if string value V equals the NUL-terminated S (byte-exact, length included). */
int cki_json_str_is(const cki_json *v, const char *s);

/* Length of the longest prefix of P[0..N) that is valid UTF-8 (N when all is). */
size_t cki_json_utf8_prefix(const void *p, size_t n);

/* How many bytes of S[0..N) to print when at most MAX fit, cut at a UTF-8
 * character boundary; for messages: "%.*s%s", k, s, k < n ? "..." : "". */
int cki_json_clip(const char *s, size_t n, size_t max);

#endif /* CKI_JSON_H */
