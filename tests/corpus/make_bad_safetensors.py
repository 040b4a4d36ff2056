#!/usr/bin/env python3
"""Writes the safetensors test corpus (outputs are committed; rerun to regenerate).

bad/safetensors/<rule>.safetensors  one broken rule per file
bad/safetensors/<rule>.expected     the one-line error ckptkit must report, with the file
                                    named as tests open it (tests/corpus/bad/safetensors/...)
good/safetensors/<name>.safetensors valid edge cases the reader must accept

Each expected line is written here by hand from the rule; byte offsets ("at byte N") are
absolute file offsets, computed from the bytes this script lays out. Nothing here runs
ckptkit.

Usage: make_bad_safetensors.py [REPO_ROOT]   (default: two folders up from this file)
"""
import json
import os
import struct
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BAD = os.path.join(ROOT, "tests", "corpus", "bad", "safetensors")
GOOD = os.path.join(ROOT, "tests", "corpus", "good", "safetensors")
REL = "tests/corpus/bad/safetensors"


def pack(header: bytes, data: bytes = b"", n=None) -> bytes:
    """8-byte little-endian length (N, default len(header)), header, data."""
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def js(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def at(header: bytes, needle: bytes, nth: int = 1) -> int:
    """Absolute file offset of the NTH occurrence of NEEDLE in HEADER (after the 8-byte length)."""
    i = -1
    for _ in range(nth):
        i = header.index(needle, i + 1)
    return 8 + i


def data(n: int) -> bytes:
    return bytes((i * 7 + 3) & 0xFF for i in range(n))


W = b'{"dtype":"F32","shape":[2],"data_offsets":[0,8]}'  # a valid entry for 8 data bytes
cases = {}  # rule -> (file bytes, expected message without the path prefix)


def case(rule, blob, msg):
    assert rule not in cases, rule
    cases[rule] = (blob, msg)


# ---- 1. framing: length, limit, UTF-8 ------------------------------------------------
case("too_small", b"\x02\x00\x00\x00\x00",
     "header: file of 5 bytes is too short for the 8-byte header length")
case("header_too_large", pack(b"{}", n=100_000_001),
     "header: length 100000001 exceeds the limit of 100000000 bytes")
case("header_past_eof", pack(b'{"w":{}}', n=1000),
     "header: length 1000 runs past the end of the file (8 + 1000 > 16 bytes)")
case("header_length_max", pack(b"{}", n=2**64 - 1),
     "header: length 18446744073709551615 exceeds the limit of 100000000 bytes")
h = b'{"w\xff":' + W + b"}"
case("not_utf8", pack(h, data(8)), "header: invalid UTF-8 at byte 11")
h = b'{"__metadata__":{"k":"a\xc0\xafb"},"w":' + W + b"}"  # overlong '/'
case("not_utf8_overlong", pack(h, data(8)), "header: invalid UTF-8 at byte %d" % (at(h, bytes([0xC0])),))
h = b'{"w\xed\xa0\x80":' + W + b"}"  # UTF-8-encoded surrogate
case("not_utf8_surrogate", pack(h, data(8)), "header: invalid UTF-8 at byte 11")

# ---- 2. JSON ----------------------------------------------------------------------------
case("header_empty", pack(b""), "header: unexpected end of input, expected a value at byte 8")
h = b'{"w" ' + W + b"}"
case("json_missing_colon", pack(h, data(8)),
     "header: unexpected character '{', expected ':' after the key at byte %d" % (at(h, b'{', 2),))
h = b'{"w":' + W + b"}" + b"\x00\x00\x00"
case("trailing_nul", pack(h, data(8)),
     "header: unexpected byte 0x00 after the document at byte %d" % (at(h, bytes(1)),))
h = b'{"w":' + W + b"}{}"
case("two_objects", pack(h, data(8)),
     "header: unexpected character '{' after the document at byte %d" % (8 + len(h) - 2,))
h = b"\x00" + b'{"w":' + W + b"}"
case("leading_nul", pack(h, data(8)), "header: unexpected byte 0x00, expected a value at byte 8")
h = b"\xef\xbb\xbf" + b'{"w":' + W + b"}"
case("bom", pack(h, data(8)), "header: unexpected byte 0xef, expected a value at byte 8")
h = b'{"w":' + W + b",}"
case("trailing_comma", pack(h, data(8)),
     "header: unexpected character '}', expected a string key at byte %d" % (8 + len(h) - 1,))
h = b"{'w':" + W + b"}"
case("single_quotes", pack(h, data(8)),
     "header: unexpected character ''', expected a string key at byte 9")
h = b'{/* c */"w":' + W + b"}"
case("comment", pack(h, data(8)), "header: unexpected character '/', expected a string key at byte 9")
h = b'{"w":{"dtype":"F32","shape":[02],"data_offsets":[0,8]}}'
case("leading_zero", pack(h, data(8)), "header: leading zero in a number at byte %d" % (at(h, b'02'),))
h = b'{"w":{"dtype":"F32","shape":[NaN],"data_offsets":[0,8]}}'
case("nan", pack(h, data(8)),
     "header: unexpected character 'N', expected a value at byte %d" % (at(h, b'NaN'),))
h = b'{"w\\q":' + W + b"}"
case("bad_escape", pack(h, data(8)), "header: invalid escape '\\q' at byte 11")
h = b'{"w\\ud800":' + W + b"}"
case("lone_surrogate", pack(h, data(8)), "header: lone surrogate \\ud800 at byte 11")
h = b'{"w\\udc00\\ud800":' + W + b"}"
case("reversed_surrogates", pack(h, data(8)), "header: lone surrogate \\udc00 at byte 11")
h = b'{"w\nx":' + W + b"}"
case("control_char", pack(h, data(8)), "header: control character 0x0a in a string at byte 11")
h = b'{"w":{"dtype":"F32}}'
case("unterminated_string", pack(h), "header: unterminated string at byte %d" % (at(h, b'\"F32'),))
nest = b"[" * 70 + b"]" * 70
h = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":' + nest + b"}}"
case("depth", pack(h, data(8)),
     "header: nesting deeper than 64 levels at byte %d" % (at(h, b'[[') + 62,))
h = b"[]"
case("not_object", pack(h), "header: the top level is an array, not an object at byte 8")
h = b' "w"'
case("top_level_string", pack(h), "header: the top level is a string, not an object at byte 9")

# ---- 2. duplicates (forbidden by the spec; the reference keeps one, TOB-SFTN-7) -----
E2 = b'{"dtype":"F32","shape":[2],"data_offsets":[8,16]}'
h = b'{"w":' + W + b',"w":' + E2 + b"}"
case("duplicate_tensor", pack(h, data(16)), "header: duplicate key \"w\" at byte %d" % (at(h, b'\"w\"', 2),))
h = b'{"w":' + W + b',"w":' + W + b"}"  # identical duplicates would pass the reference
case("duplicate_identical", pack(h, data(8)),
     "header: duplicate key \"w\" at byte %d" % (at(h, b'\"w\"', 2),))
h = b'{"w":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
case("duplicate_field", pack(h, data(8)),
     "header: duplicate key \"dtype\" at byte %d" % (at(h, b'\"dtype\"', 2),))
h = b'{"__metadata__":{"a":"1","a":"2"},"w":' + W + b"}"
case("duplicate_metadata_key", pack(h, data(8)),
     "header: duplicate key \"a\" at byte %d" % (at(h, b'\"a\"', 2),))
h = b'{"__metadata__":{},"w":' + W + b',"__metadata__":{}}'
case("duplicate_metadata", pack(h, data(8)),
     "header: duplicate key \"__metadata__\" at byte %d" % (at(h, b'\"__metadata__\"', 2),))
h = b'{"w":' + W + b',"\\u0077":' + W + b"}"  # the same name spelled with an escape
case("duplicate_escaped", pack(h, data(8)),
     "header: duplicate key \"w\" at byte %d" % (at(h, b'"\\u0077"'),))

# ---- 2. __metadata__ ------------------------------------------------------------------
h = b'{"__metadata__":"x","w":' + W + b"}"
case("metadata_not_object", pack(h, data(8)),
     "header: __metadata__ is a string, not an object at byte %d" % (at(h, b'\"x\"'),))
h = b'{"__metadata__":null,"w":' + W + b"}"
case("metadata_null", pack(h, data(8)),
     "header: __metadata__ is null, not an object at byte %d" % (at(h, b'null'),))
h = b'{"__metadata__":{"a":1},"w":' + W + b"}"
case("metadata_value_number", pack(h, data(8)),
     "header: __metadata__ value of 'a' is a number, not a string at byte %d" % (at(h, b'1}'),))
h = b'{"__metadata__":{"a":{"b":"c"}},"w":' + W + b"}"
case("metadata_value_object", pack(h, data(8)),
     "header: __metadata__ value of 'a' is an object, not a string at byte %d" % (at(h, b'{\"b\"'),))
h = b'{"__metadata__":{"k":"a\\u0000b"},"w":' + W + b"}"
case("metadata_nul", pack(h, data(8)),
     "header: __metadata__ value of 'k' contains a NUL character at byte %d" % (at(h, b'\"a'),))
h = b'{"__metadata__":{"k\\u0000":"v"},"w":' + W + b"}"
case("metadata_key_nul", pack(h, data(8)),
     "header: __metadata__ key 'k' contains a NUL character at byte %d" % (at(h, b'"k'),))
h = b'{"__metadata__":' + W + b"}"
case("metadata_as_tensor", pack(h, data(8)),
     "header: '__metadata__' is reserved for metadata and cannot name a tensor at byte 9")

# ---- 2. tensor entries ------------------------------------------------------------------
def entry(body: bytes, name=b"w", n=8):
    return pack(b'{"' + name + b'":' + body + b"}", data(n))


case("name_nul", pack(b'{"w\\u0000x":' + W + b"}", data(8)),
     "header: tensor name 'w' contains a NUL character at byte 9")
case("entry_not_object", entry(b"[0,8]"), "tensor 'w': entry is an array, not an object")
case("entry_null", entry(b"null"), "tensor 'w': entry is null, not an object")
case("missing_dtype", entry(b'{"shape":[2],"data_offsets":[0,8]}'),
     "tensor 'w': missing field 'dtype'")
case("missing_shape", entry(b'{"dtype":"F32","data_offsets":[0,8]}'),
     "tensor 'w': missing field 'shape'")
case("missing_data_offsets", entry(b'{"dtype":"F32","shape":[2]}'),
     "tensor 'w': missing field 'data_offsets'")
case("dtype_not_string", entry(b'{"dtype":32,"shape":[2],"data_offsets":[0,8]}'),
     "tensor 'w': dtype is a number, not a string")
case("unknown_dtype", entry(b'{"dtype":"F31","shape":[2],"data_offsets":[0,8]}'),
     "tensor 'w': unknown dtype 'F31'")
case("dtype_lowercase", entry(b'{"dtype":"f32","shape":[2],"data_offsets":[0,8]}'),
     "tensor 'w': unknown dtype 'f32'")
case("dtype_c128", entry(b'{"dtype":"C128","shape":[1],"data_offsets":[0,16]}', n=16),
     "tensor 'w': unknown dtype 'C128'")
case("shape_not_array", entry(b'{"dtype":"F32","shape":"2","data_offsets":[0,8]}'),
     "tensor 'w': shape is a string, not an array")
case("shape_negative", entry(b'{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}'),
     "tensor 'w': shape[0] is negative (-2)")
case("shape_negative_zero", entry(b'{"dtype":"F32","shape":[2,-0],"data_offsets":[0,0]}', n=0),
     "tensor 'w': shape[1] is negative (-0)")
case("shape_fraction", entry(b'{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}'),
     "tensor 'w': shape[0] is not an integer (2.0)")
case("shape_exponent", entry(b'{"dtype":"F32","shape":[2e0],"data_offsets":[0,8]}'),
     "tensor 'w': shape[0] is not an integer (2e0)")
case("shape_string", entry(b'{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}'),
     "tensor 'w': shape[0] is not a number (a string)")
case("shape_over_int64",
     entry(b'{"dtype":"F32","shape":[9223372036854775808,0],"data_offsets":[0,0]}', n=0),
     "tensor 'w': shape[0] is larger than 2^63 - 1 (9223372036854775808)")
case("shape_over_uint64",
     entry(b'{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}'),
     "tensor 'w': shape[0] is larger than 2^64 - 1 (18446744073709551616)")
case("too_many_dims",
     entry(b'{"dtype":"F32","shape":[' + b",".join([b"1"] * 65) + b'],"data_offsets":[0,4]}',
           n=4),
     "tensor 'w': shape has 65 dimensions (at most 64)")
case("offsets_not_array", entry(b'{"dtype":"F32","shape":[2],"data_offsets":8}'),
     "tensor 'w': data_offsets is a number, not an array")
case("offsets_one", entry(b'{"dtype":"F32","shape":[2],"data_offsets":[8]}'),
     "tensor 'w': data_offsets needs exactly 2 values, got 1")
case("offsets_three", entry(b'{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}'),
     "tensor 'w': data_offsets needs exactly 2 values, got 3")
case("offsets_negative", entry(b'{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}'),
     "tensor 'w': data_offsets[0] is negative (-8)")
case("offsets_fraction", entry(b'{"dtype":"F32","shape":[2],"data_offsets":[0,8.0]}'),
     "tensor 'w': data_offsets[1] is not an integer (8.0)")
case("offsets_over_uint64",
     entry(b'{"dtype":"F32","shape":[2],"data_offsets":[0,18446744073709551624]}'),
     "tensor 'w': data_offsets[1] is larger than 2^64 - 1 (18446744073709551624)")
case("offsets_reversed", entry(b'{"dtype":"F32","shape":[2],"data_offsets":[8,0]}'),
     "tensor 'w': data_offsets [8, 0) end before they begin")

# ---- 3. layout: the sorted ranges tile the buffer ----------------------------------
case("offsets_gap_start", entry(b'{"dtype":"F32","shape":[2],"data_offsets":[4,12]}', n=12),
     "tensor 'w': data_offsets [4, 12) leave bytes [0, 4) of the data buffer unused")
h = (b'{"b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},'
     b'"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}')
case("offsets_gap", pack(h, data(20)),
     "tensor 'b': data_offsets [12, 20) leave bytes [8, 12) of the data buffer unused")
h = (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
     b'"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}')
case("offsets_overlap", pack(h, data(12)),
     "tensor 'b': data_offsets [4, 12) overlap tensor 'a' at [0, 8)")
h = (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
     b'"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}}')
case("offsets_alias", pack(h, data(8)), "tensor 'b': data_offsets [0, 8) overlap tensor 'a' at [0, 8)")
h = (b'{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},'
     b'"z":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}')
case("offsets_empty_inside", pack(h, data(8)),
     "tensor 'z': data_offsets [4, 4) overlap tensor 'a' at [0, 8)")

# ---- 4. sizes ---------------------------------------------------------------------------
case("size_mismatch",
     entry(b'{"dtype":"F32","shape":[32,32],"data_offsets":[0,4000]}', name=b"lm_head.weight",
           n=4000),
     "tensor 'lm_head.weight': data_offsets [0, 4000) hold 4000 bytes but shape [32, 32] x F32 "
     "needs 4096")
long_dims = [0] + [100000] * 40
case("size_mismatch_long_shape",
     entry(b'{"dtype":"F32","shape":' + js(long_dims) + b',"data_offsets":[0,4]}', n=4),
     "tensor 'w': data_offsets [0, 4) hold 4 bytes but shape [0, " + "100000, " * 29
     + "100000, ...] x F32 needs 0")
case("size_scalar", entry(b'{"dtype":"F64","shape":[],"data_offsets":[0,4]}', n=4),
     "tensor 'w': data_offsets [0, 4) hold 4 bytes but shape [] x F64 needs 8")
case("numel_overflow",
     entry(b'{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}', n=0),
     "tensor 'w': shape [4294967296, 4294967296] has more than 2^64 - 1 elements")
case("bits_overflow",
     entry(b'{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}', n=0),
     "tensor 'w': shape [2305843009213693952] x F64 has more than 2^64 - 1 bits")
case("misaligned_f4", entry(b'{"dtype":"F4","shape":[3],"data_offsets":[0,2]}', n=2),
     "tensor 'w': shape [3] x F4 is 12 bits, not a whole number of bytes")
case("misaligned_f6", entry(b'{"dtype":"F6_E2M3","shape":[2],"data_offsets":[0,2]}', n=2),
     "tensor 'w': shape [2] x F6_E2M3 is 12 bits, not a whole number of bytes")

# ---- 5. the buffer ends where the tensors end ----------------------------------------
case("trailing_bytes", entry(W, n=12),
     "data: the file has 12 bytes after the header but the tensors end at 8 (4 trailing bytes)")
case("truncated", entry(W, n=4),
     "data: the tensors end at 8 but the file has only 4 bytes after the header (truncated)")
case("empty_with_data", pack(b"{}", data(3)),
     "data: the file has 3 bytes after the header but the tensors end at 0 (3 trailing bytes)")


# ---- good files ---------------------------------------------------------------------------
def layout(tensors, meta=None, pad=True, lead=b"", trail=b""):
    """tensors: list of (name, dtype, shape, nbytes) in data order."""
    hdr = {}
    if meta is not None:
        hdr["__metadata__"] = meta
    off = 0
    for name, dt, shape, nb in tensors:
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nb]}
        off += nb
    h = lead + js(hdr) + trail
    if pad:
        h += b" " * (-(8 + len(h)) % 8)
    return pack(h, data(off))


good = {}
good["empty"] = layout([])
good["metadata_only"] = layout([], meta={"format": "pt", "k": "v"})
good["leading_ws"] = layout([("w", "F32", [2], 8)], lead=b"\t\n \r")
good["trailing_ws_mixed"] = layout([("w", "F32", [2], 8)], trail=b"\r\n\t ", pad=False)
good["unpadded"] = layout([("a", "U8", [3], 3), ("b", "F32", [2], 8)], pad=False)
good["zero_size_and_scalar"] = layout(
    [("scalar", "F64", [], 8), ("empty", "F32", [0, 3], 0), ("empty1", "I8", [0], 0),
     ("after", "I16", [2, 1], 4), ("tail_empty", "BF16", [4, 0, 2], 0)])
good["all_dtypes"] = layout(
    [("f64", "F64", [2], 16), ("i64", "I64", [2], 16), ("u64", "U64", [1, 2], 16),
     ("c64", "C64", [2], 16), ("f32", "F32", [3], 12), ("i32", "I32", [1], 4),
     ("u32", "U32", [2], 8), ("f16", "F16", [3], 6), ("bf16", "BF16", [2, 2], 8),
     ("i16", "I16", [1], 2), ("u16", "U16", [3], 6), ("u8", "U8", [5], 5), ("i8", "I8", [2], 2),
     ("bool", "BOOL", [3], 3), ("f8_e4m3", "F8_E4M3", [2], 2), ("f8_e5m2", "F8_E5M2", [2], 2),
     ("f8_e8m0", "F8_E8M0", [1], 1), ("f8_e4m3fnuz", "F8_E4M3FNUZ", [2], 2),
     ("f8_e5m2fnuz", "F8_E5M2FNUZ", [2], 2), ("f4", "F4", [2, 4], 4),
     ("f6_e2m3", "F6_E2M3", [4], 3), ("f6_e3m2", "F6_E3M2", [8], 6)],
    meta={"format": "pt"})
good["names_utf8"] = layout(
    [("résumé.weight", "F32", [1], 4), ("模型.层.0.bias", "F32", [1], 4),
     ("emoji😀.x", "U8", [1], 1), ("with space", "U8", [1], 1), ('quote"d', "U8", [1], 1),
     ("back\\slash", "U8", [1], 1), ("a.b.c.d.e", "U8", [1], 1), ("tab\tin", "U8", [1], 1)],
    meta={"clé": "valeur ☃"})
# escapes in the header text itself: \u00e9, a surrogate pair, \/ and \n
h = (b'{"__metadata__":{"k\\/1":"line\\nbreak"},'
     b'"caf\\u00e9":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},'
     b'"smile\\ud83d\\ude00":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}')
good["escaped_names"] = pack(h + b" " * (-(8 + len(h)) % 8), data(2))
# JSON order differs from data order; __metadata__ last; an ignored unknown field
h = (b'{"second":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},'
     b'"first":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"extra":{"n":[1,[2]],"s":null}},'
     b'"__metadata__":{"format":"pt"}}')
good["json_order"] = pack(h + b" " * (-(8 + len(h)) % 8), data(8))


def main():
    os.makedirs(BAD, exist_ok=True)
    os.makedirs(GOOD, exist_ok=True)
    for f in os.listdir(BAD):
        if f.endswith((".safetensors", ".expected")):
            os.remove(os.path.join(BAD, f))
    for rule, (blob, msg) in sorted(cases.items()):
        with open(os.path.join(BAD, rule + ".safetensors"), "wb") as f:
            f.write(blob)
        with open(os.path.join(BAD, rule + ".expected"), "w", encoding="utf-8") as f:
            f.write("%s/%s.safetensors: %s\n" % (REL, rule, msg))
    for name, blob in sorted(good.items()):
        with open(os.path.join(GOOD, name + ".safetensors"), "wb") as f:
            f.write(blob)
    print("%d bad, %d good files written" % (len(cases), len(good)))


if __name__ == "__main__":
    main()
