#!/usr/bin/env python3
"""Writes the raw-format test corpus (outputs are committed; rerun to regenerate).

For each broken rule R, in tests/corpus/bad/raw/:
  R.raw        the data file (64 bytes unless the case needs other)
  R.raw.json   its manifest, breaking rule R
  R.expected   the one-line error ckptkit must report when R.raw is opened with
               the manifest R.raw.json (paths as the tests give them)

The expected lines are written here by hand from the rules in src/formats/fmt_raw.c
and docs/FORMATS.md (raw); byte offsets ("at byte N") are offsets into the manifest,
computed from the text laid out here. Nothing here runs ckptkit.

Usage: make_bad_raw.py [REPO_ROOT]   (default: two folders up from this file)
"""
import os
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
BAD = os.path.join(ROOT, "tests", "corpus", "bad", "raw")
REL = "tests/corpus/bad/raw"

cases = {}  # rule -> (data bytes, manifest bytes, expected message after "MANIFEST: ")


def manifest(rule, tensors=b'[{"name":"w","dtype":"F32","shape":[2],"offset":0}]', extra=b"",
             head=None):
    """A valid manifest for RULE's data file, with TENSORS and EXTRA members."""
    if head is None:
        head = b'"format":"ckptkit-raw","version":1,"file":"' + rule.encode() + b'.raw"'
    return b"{" + head + extra + b',"tensors":' + tensors + b"}"


def case(rule, man, msg, data=bytes(range(64))):
    assert rule not in cases, rule
    cases[rule] = (data, man, msg)


def off(man: bytes, needle: bytes, nth: int = 1) -> int:
    i = -1
    for _ in range(nth):
        i = man.index(needle, i + 1)
    return i


def T(body: bytes) -> bytes:
    return b"[" + body + b"]"


# ---- the manifest as a document ----------------------------------------------------------
m = b'{"format": '
case("not_json", m, "manifest: unexpected end of input, expected a value at byte %d" % len(m))
m = b'{"format":"ckptkit-raw","file":"n\xffo"}'
case("not_utf8", m, "manifest: invalid UTF-8 at byte %d" % off(m, b"\xff"))
case("top_level_array", b"[]", "manifest: the top level is an array, not an object at byte 0")
m = manifest("duplicate_key", head=b'"format":"ckptkit-raw","format":"ckptkit-raw","version":1,'
                                    b'"file":"duplicate_key.raw"')
case("duplicate_key", m, 'manifest: duplicate key "format" at byte %d' % off(m, b'"format"', 2))
m = manifest("trailing_comma", extra=b",")
case("trailing_comma", m,
     "manifest: unexpected character ',', expected a string key at byte %d" % (off(m, b",,") + 1))

# ---- top-level keys ---------------------------------------------------------------------------
m = manifest("missing_format", head=b'"version":1,"file":"missing_format.raw"')
case("missing_format", m, "manifest: missing key 'format' at byte 0")
m = manifest("missing_version", head=b'"format":"ckptkit-raw","file":"missing_version.raw"')
case("missing_version", m, "manifest: missing key 'version' at byte 0")
m = manifest("missing_file", head=b'"format":"ckptkit-raw","version":1')
case("missing_file", m, "manifest: missing key 'file' at byte 0")
m = b'{"format":"ckptkit-raw","version":1,"file":"missing_tensors.raw"}'
case("missing_tensors", m, "manifest: missing key 'tensors' at byte 0")
m = manifest("wrong_format", head=b'"format":"safetensors","version":1,"file":"wrong_format.raw"')
case("wrong_format", m,
     "manifest: format is 'safetensors', expected \"ckptkit-raw\" at byte %d" % off(m, b'"safe'))
m = manifest("format_not_string", head=b'"format":1,"version":1,"file":"format_not_string.raw"')
case("format_not_string", m,
     "manifest: format is a number, expected \"ckptkit-raw\" at byte %d" % off(m, b"1"))
m = manifest("version_2", head=b'"format":"ckptkit-raw","version":2,"file":"version_2.raw"')
case("version_2", m, "manifest: version 2 is not supported (this build reads version 1) at byte %d"
     % off(m, b"2"))
m = manifest("version_string",
             head=b'"format":"ckptkit-raw","version":"1","file":"version_string.raw"')
case("version_string", m,
     "manifest: version is a string, not a number at byte %d" % off(m, b'"1"'))
m = manifest("file_not_string", head=b'"format":"ckptkit-raw","version":1,"file":7')
case("file_not_string", m, "manifest: file is a number, not a string at byte %d" % off(m, b"7"))
m = manifest("unknown_key", extra=b',"compression":"none"')
case("unknown_key", m, "manifest: unknown key 'compression' at byte %d" % off(m, b'"compression"'))
m = manifest("bad_byte_order", extra=b',"byte_order":"middle"')
case("bad_byte_order", m,
     "manifest: byte_order is 'middle', not \"little\" or \"big\" at byte %d" % off(m, b'"middle"'))
m = manifest("byte_order_number", extra=b',"byte_order":1')
case("byte_order_number", m,
     "manifest: byte_order is a number, not \"little\" or \"big\" at byte %d"
     % off(m, b"1", 2))
m = manifest("tensors_not_array", tensors=b'{"w":{}}')
case("tensors_not_array", m,
     "manifest: tensors is an object, not an array at byte %d" % off(m, b'{"w"'))
m = manifest("metadata_not_object", extra=b',"metadata":"x"')
case("metadata_not_object", m,
     "manifest: metadata is a string, not an object at byte %d" % off(m, b'"x"'))
m = manifest("metadata_value_number", extra=b',"metadata":{"k":1}')
case("metadata_value_number", m,
     "manifest: metadata value of 'k' is a number, not a string at byte %d" % off(m, b"1}"))
m = manifest("metadata_nul", extra=b',"metadata":{"k":"a\\u0000"}')
case("metadata_nul", m,
     "manifest: metadata 'k' contains a NUL character at byte %d" % off(m, b'"k"'))

# ---- tensor entries -------------------------------------------------------------------------------
m = manifest("tensor_not_object", tensors=b"[1]")
case("tensor_not_object", m,
     "manifest: tensors[0] is a number, not an object at byte %d" % (off(m, b"[1]") + 1))
m = manifest("tensor_unknown_key",
             tensors=T(b'{"name":"w","dtype":"F32","shape":[2],"offset":0,"stride":[1]}'))
case("tensor_unknown_key", m,
     "manifest: tensors[0]: unknown key 'stride' at byte %d" % off(m, b'"stride"'))
m = manifest("tensor_no_name", tensors=T(b'{"dtype":"F32","shape":[2],"offset":0}'))
case("tensor_no_name", m, "manifest: tensors[0] has no name at byte %d" % off(m, b'{"dtype"'))
m = manifest("tensor_name_number", tensors=T(b'{"name":5,"dtype":"F32","shape":[2],"offset":0}'))
case("tensor_name_number", m,
     "manifest: tensors[0]: name is a number, not a string at byte %d" % off(m, b"5,"))
m = manifest("tensor_empty_name", tensors=T(b'{"name":"","dtype":"F32","shape":[2],"offset":0}'))
case("tensor_empty_name", m, "manifest: tensors[0]: empty name at byte %d" % off(m, b'""'))
m = manifest("tensor_name_nul",
             tensors=T(b'{"name":"w\\u0000x","dtype":"F32","shape":[2],"offset":0}'))
case("tensor_name_nul", m,
     "manifest: tensors[0]: name contains a NUL character at byte %d" % off(m, b'"w\\u'))
m = manifest("tensor_byte_order",
             tensors=T(b'{"name":"w","dtype":"F32","shape":[2],"offset":0,"byte_order":"LE"}'))
case("tensor_byte_order", m,
     "manifest: tensors[0].byte_order is 'LE', not \"little\" or \"big\" at byte %d"
     % off(m, b'"LE"'))
m = manifest("missing_dtype", tensors=T(b'{"name":"w","shape":[2],"offset":0}'))
case("missing_dtype", m, "tensor 'w': missing key 'dtype'")
m = manifest("missing_shape", tensors=T(b'{"name":"w","dtype":"F32","offset":0}'))
case("missing_shape", m, "tensor 'w': missing key 'shape'")
m = manifest("missing_offset", tensors=T(b'{"name":"w","dtype":"F32","shape":[2]}'))
case("missing_offset", m, "tensor 'w': missing key 'offset'")
m = manifest("unknown_dtype", tensors=T(b'{"name":"w","dtype":"F31","shape":[2],"offset":0}'))
case("unknown_dtype", m, "tensor 'w': unknown dtype 'F31'")
m = manifest("dtype_torch_name",
             tensors=T(b'{"name":"w","dtype":"float32","shape":[2],"offset":0}'))
case("dtype_torch_name", m, "tensor 'w': unknown dtype 'float32'")
m = manifest("dtype_not_string", tensors=T(b'{"name":"w","dtype":4,"shape":[2],"offset":0}'))
case("dtype_not_string", m, "tensor 'w': dtype is a number, not a string")
m = manifest("shape_not_array", tensors=T(b'{"name":"w","dtype":"F32","shape":"2","offset":0}'))
case("shape_not_array", m, "tensor 'w': shape is a string, not an array")
m = manifest("shape_negative", tensors=T(b'{"name":"w","dtype":"F32","shape":[-2],"offset":0}'))
case("shape_negative", m, "tensor 'w': shape[0] is negative (-2)")
m = manifest("shape_fraction", tensors=T(b'{"name":"w","dtype":"F32","shape":[2.5],"offset":0}'))
case("shape_fraction", m, "tensor 'w': shape[0] is not an integer (2.5)")
m = manifest("shape_over_int64",
             tensors=T(b'{"name":"w","dtype":"F32","shape":[9223372036854775808,0],"offset":0}'))
case("shape_over_int64", m, "tensor 'w': shape[0] is larger than 2^63 - 1 (9223372036854775808)")
m = manifest("too_many_dims",
             tensors=T(b'{"name":"w","dtype":"F32","shape":[' + b",".join([b"1"] * 65)
                       + b'],"offset":0}'))
case("too_many_dims", m, "tensor 'w': shape has 65 dimensions (at most 64)")
m = manifest("offset_negative", tensors=T(b'{"name":"w","dtype":"F32","shape":[2],"offset":-8}'))
case("offset_negative", m, "tensor 'w': offset is negative (-8)")
m = manifest("offset_fraction", tensors=T(b'{"name":"w","dtype":"F32","shape":[2],"offset":0.5}'))
case("offset_fraction", m, "tensor 'w': offset is not an integer (0.5)")
m = manifest("offset_string", tensors=T(b'{"name":"w","dtype":"F32","shape":[2],"offset":"0"}'))
case("offset_string", m, "tensor 'w': offset is not a number (a string)")
m = manifest("numel_overflow",
             tensors=T(b'{"name":"w","dtype":"F32","shape":[4294967296,4294967296],"offset":0}'))
case("numel_overflow", m, "tensor 'w': shape has more than 2^64 - 1 elements")
m = manifest("bits_overflow",
             tensors=T(b'{"name":"w","dtype":"F64","shape":[2305843009213693952],"offset":0}'))
case("bits_overflow", m, "tensor 'w': 2305843009213693952 x F64 is more than 2^64 - 1 bits")
m = manifest("misaligned_f4", tensors=T(b'{"name":"w","dtype":"F4","shape":[3],"offset":0}'))
case("misaligned_f4", m, "tensor 'w': 3 x F4 is 12 bits, not a whole number of bytes")
m = manifest("out_of_bounds", tensors=T(b'{"name":"w","dtype":"F32","shape":[2],"offset":60}'))
case("out_of_bounds", m,
     "tensor 'w': 8 bytes at offset 60 lie outside '%s/out_of_bounds.raw' (64 bytes)" % REL)
m = manifest("offset_overflow",
             tensors=T(b'{"name":"w","dtype":"F32","shape":[2],"offset":18446744073709551615}'))
case("offset_overflow", m,
     "tensor 'w': 8 bytes at offset 18446744073709551615 lie outside "
     "'%s/offset_overflow.raw' (64 bytes)" % REL)
m = manifest("empty_past_end", tensors=T(b'{"name":"w","dtype":"F32","shape":[0],"offset":65}'))
case("empty_past_end", m,
     "tensor 'w': 0 bytes at offset 65 lie outside '%s/empty_past_end.raw' (64 bytes)" % REL)
m = manifest("empty_data", tensors=T(b'{"name":"w","dtype":"U8","shape":[1],"offset":0}'))
case("empty_data", m, "tensor 'w': 1 bytes at offset 0 lie outside '%s/empty_data.raw' (0 bytes)"
     % REL, data=b"")

# ---- the set of tensors --------------------------------------------------------------------
m = manifest("overlap", tensors=T(b'{"name":"a","dtype":"F32","shape":[2],"offset":0},'
                                  b'{"name":"b","dtype":"F32","shape":[2],"offset":4}'))
case("overlap", m, "tensor 'b': bytes [4, 12) overlap tensor 'a' at [0, 8)")
m = manifest("overlap_nested", tensors=T(b'{"name":"big","dtype":"U8","shape":[32],"offset":0},'
                                         b'{"name":"mid","dtype":"U8","shape":[4],"offset":8},'
                                         b'{"name":"late","dtype":"U8","shape":[4],"offset":20}'))
case("overlap_nested", m, "tensor 'mid': bytes [8, 12) overlap tensor 'big' at [0, 32)")
m = manifest("overlap_same_start", tensors=T(b'{"name":"a","dtype":"F32","shape":[2],"offset":0},'
                                             b'{"name":"b","dtype":"F32","shape":[1],"offset":0}'))
case("overlap_same_start", m, "tensor 'a': bytes [0, 8) overlap tensor 'b' at [0, 4)")
m = manifest("duplicate_name", tensors=T(b'{"name":"w","dtype":"F32","shape":[2],"offset":0},'
                                         b'{"name":"w","dtype":"F32","shape":[2],"offset":8}'))
case("duplicate_name", m, "tensor 'w' appears twice")


def main():
    os.makedirs(BAD, exist_ok=True)
    for f in os.listdir(BAD):
        if f.endswith((".raw", ".json", ".expected")):
            os.remove(os.path.join(BAD, f))
    for rule, (data, man, msg) in sorted(cases.items()):
        with open(os.path.join(BAD, rule + ".raw"), "wb") as f:
            f.write(data)
        with open(os.path.join(BAD, rule + ".raw.json"), "wb") as f:
            f.write(man)
        with open(os.path.join(BAD, rule + ".expected"), "w", encoding="utf-8") as f:
            f.write("%s/%s.raw.json: %s\n" % (REL, rule, msg))
    print("%d bad raw cases written" % len(cases))


if __name__ == "__main__":
    main()
