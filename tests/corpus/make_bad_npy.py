#!/usr/bin/env python3
"""Writes the NumPy hostile corpus (outputs are committed; rerun to regenerate).

For each broken rule R, in tests/corpus/bad/npy/:
  R.npy or R.npz   the input
  R.expected       the one-line error ckptkit must report when it opens the
                   input with format detection (path as the tests give it)

The expected lines are written here by hand from the rules in src/formats/npy.c,
fmt_npy.c and fmt_npz.c; byte positions ("header byte N") are offsets into the
header dict, computed from the text laid out here. Nothing here runs ckptkit,
and nothing here unpickles anything: the malicious pickle is spelled out in
opcodes.

Usage: make_bad_npy.py [REPO_ROOT]   (default: two folders up from this file)
"""
import io
import os
import struct
import sys
import zipfile

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
BAD = os.path.join(ROOT, "tests", "corpus", "bad", "npy")
REL = "tests/corpus/bad/npy"

cases = {}  # file name -> (bytes, expected message after "PATH: ")


def npy(d, data=b"", version=1, pad=True):
    """A .npy with header text D (str) as is, padded to 64 like numpy."""
    h = d.encode("latin-1")
    pre = 10 if version == 1 else 12
    if pad:
        h += b" " * (-(pre + len(h) + 1) % 64) + b"\n"
    ln = struct.pack("<H", len(h)) if version == 1 else struct.pack("<I", len(h))
    return b"\x93NUMPY" + bytes([version, 0]) + ln + h + data


def case(name, data, msg):
    assert name not in cases, name
    cases[name] = (data, msg)


def hdr(descr="'<f4'", fortran="False", shape="(2,)"):
    return "{'descr': %s, 'fortran_order': %s, 'shape': %s, }" % (descr, fortran, shape)


# -- the preamble ---------------------------------------------------------------
raw = b"\x93NUMPY\x01\x00" + struct.pack("<H", 65535) + b"{'descr'" + bytes(80)
case("header_past_end.npy", raw,
     "npy header length 65535 runs past the end of the data (%d bytes)" % len(raw))
case("version_4.npy", b"\x93NUMPY\x04\x00" + bytes(64),
     "npy format version 4.0 is not one of 1.0, 2.0, 3.0")
case("version_minor.npy", b"\x93NUMPY\x01\x01" + bytes(64),
     "npy format version 1.1 is not one of 1.0, 2.0, 3.0")
case("header_over_limit.npy",
     b"\x93NUMPY\x02\x00" + struct.pack("<I", 1 << 31) + b"{" + bytes(51),
     "npy header of 2147483648 bytes is over the limit of 1048576")

# -- the dict -----------------------------------------------------------------------
d = hdr(descr="\"__import__('os').system('id')\"")
case("descr_string_expression.npy", npy(d, bytes(8)),
     "npy header: descr '__import__('os').system('id')' is not a numpy type string "
     "(header byte %d)" % d.index('"'))
d = hdr(descr="np.dtype('<f4')")
case("descr_call.npy", npy(d, bytes(8)),
     "npy header: unexpected character 'n': the header must be a plain literal, expressions "
     "are refused (header byte %d)" % d.index("np."))
d = hdr(descr="True")
case("descr_not_type.npy", npy(d, bytes(8)),
     "npy header: descr must be a type string or a list of fields (header byte %d)"
     % d.index("True"))
d = hdr(descr="'<f4' + '<f8'")
case("descr_concat.npy", npy(d, bytes(8)),
     "npy header: expected ',' or '}' after a value (header byte %d)" % d.index("+"))
d = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }"
case("extra_key.npy", npy(d, bytes(8)),
     "npy header: unexpected key 'extra' (only descr, fortran_order and shape) (header byte %d)"
     % (d.index("'extra'") + len("'extra': ")))
d = "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
case("duplicate_key.npy", npy(d, bytes(8)),
     "npy header: key 'descr' appears twice (header byte %d)"
     % (d.index("'descr'", 2) + len("'descr': ")))
d = "{'descr': '<f4', 'shape': (2,), }"
case("missing_key.npy", npy(d, bytes(8)),
     "npy header: missing key 'fortran_order' (header byte %d)" % len(npy(d)[10:]))
d = hdr(fortran="1")
case("fortran_not_bool.npy", npy(d, bytes(8)),
     "npy header: fortran_order must be True or False (header byte %d)" % (d.index(": 1") + 2))
d = hdr(shape="[2]")
case("shape_list.npy", npy(d, bytes(8)),
     "npy header: shape must be a tuple (header byte %d)" % d.index("[2]"))
d = hdr(shape="(2)")
case("shape_no_comma.npy", npy(d, bytes(8)),
     "npy header: shape (n) without a comma is not a tuple (header byte %d)" % d.index(")"))
d = hdr(shape="(-2,)")
case("shape_negative.npy", npy(d, bytes(8)),
     "npy header: expected a non-negative integer (header byte %d)" % d.index("-"))
d = hdr(shape="(99999999999999999999,)")
case("shape_huge_int.npy", npy(d, bytes(8)),
     "npy header: integer does not fit in 63 bits (header byte %d)" % (d.index("9") + 18))
d = hdr(shape="(4294967296, 4294967296, 16)")
case("shape_product_overflow.npy", npy(d, bytes(8)),
     "npy header: shape product overflows 64 bits at dimension 1")
d = hdr(descr="'<f8'", shape="(4611686018427387904, 2)")
case("bytes_overflow.npy", npy(d, bytes(8)),
     "npy header: 9223372036854775808 elements x 8 bytes overflows 64 bits")
d = hdr() + " junk"
case("bytes_after_dict.npy", npy(d, bytes(8)),
     "npy header: bytes after the dict (header byte %d)" % d.index("junk"))
d = "{'descr': '<f4, 'fortran_order': False, 'shape': (2,), }"
case("unterminated_string.npy", npy(d, bytes(8), pad=False),
     "npy header: expected ',' or '}' after a value (header byte %d)" % d.index("fortran_order"))
d = hdr(descr="[('a', " * 40 + "'<f4'" + ")]" * 40)
case("descr_too_deep.npy", npy(d, bytes(8)),
     "npy header: literal nested deeper than 32 levels (header byte %d)"
     % (d.index("[") + 16 * len("[('a', ") + 1))
d = hdr()
case("v3_bad_utf8.npy", npy(d.replace("'<f4'", "'<f4'").replace("}", "}\xff"), bytes(8),
                            version=3),
     "npy header: version 3.0 header is not valid utf-8 (header byte 0)")

# -- the data -------------------------------------------------------------------------
d = hdr(descr="'<f8'", shape="(10,)")
case("data_short.npy", npy(d, bytes(16)),
     "array: shape (10,) x '<f8' needs 80 data bytes but 16 follow the header")
d = hdr(descr="'|b1'", shape="(4,)")
case("bool_byte.npy", npy(d, b"\x00\x01\x07\x00"),
     "array: bool element 2 holds byte 0x07 (a bool is 0 or 1)")

# an object array whose pickle would run os.system: refused before any parse
# of its meaning; protocol 2: PROTO 2, GLOBAL 'os system', BINUNICODE 'id',
# TUPLE1, REDUCE, STOP
evil = (b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00id\x85R.")
d = hdr(descr="'|O'", shape="(1,)")
case("object_malicious.npy", npy(d, evil),
     "array: refusing to load an object array (its data is a pickle), dtype '|O': numpy.load "
     "would unpickle it, which can run code (nothing was run; see 'ckptkit scan'; "
     "--allow-unsafe leaves it out)")
d = hdr(descr="[('a', '<i4'), ('b', '|O')]", shape="(1,)")
case("structured_object.npy", npy(d, evil),
     "array: refusing to load a structured array with an object field (its data is a pickle), "
     "dtype '[('a', '<i4'), ('b', '|O')]': numpy.load would unpickle it, which can run code "
     "(nothing was run; see 'ckptkit scan'; --allow-unsafe leaves it out)")


# -- npz ---------------------------------------------------------------------------------
def npz(members, method=zipfile.ZIP_STORED):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", method) as z:
        for name, data in members:
            z.writestr(name, data)
    return b.getvalue()


def patch_usize(blob, usize):
    """Sets every local and central uncompressed size field to USIZE."""
    out = bytearray(blob)
    i = out.find(b"PK\x03\x04")
    while i >= 0:
        struct.pack_into("<I", out, i + 22, usize)
        i = out.find(b"PK\x03\x04", i + 4)
    i = out.find(b"PK\x01\x02")
    while i >= 0:
        struct.pack_into("<I", out, i + 24, usize)
        i = out.find(b"PK\x01\x02", i + 4)
    return bytes(out)


ok = npy(hdr(descr="'<f4'", shape="(2,)"), bytes(8))
bomb = patch_usize(npz([("w.npy", ok + bytes(200000))], zipfile.ZIP_DEFLATED), 4000000000)
csize = struct.unpack("<I", bomb[bomb.find(b"PK\x01\x02") + 20:][:4])[0]
case("bomb.npz", bomb,
     "member 'w.npy': %d compressed bytes claim to expand to 4000000000 (ratio %d:1, more than "
     "deflate's 1100:1 in a file of %d bytes: a zip bomb); refused before inflating"
     % (csize, 4000000000 // csize, len(bomb)))
case("member_not_npy.npz", npz([("w.npy", ok), ("notes.txt", b"hello")]),
     "member 'notes.txt' is not a .npy array (--skip-unsupported leaves it out)")
case("member_object.npz", npz([("w.npy", ok), ("evil.npy", npy(hdr(descr="'|O'", shape="(1,)"),
                                                              evil))]),
     "member 'evil.npy': refusing to load an object array (its data is a pickle), dtype '|O': "
     "numpy.load would unpickle it, which can run code (nothing was run; see 'ckptkit scan'; "
     "--allow-unsafe leaves it out)")
case("member_header_past_end.npz", npz([("w.npy", raw)], zipfile.ZIP_DEFLATED),
     "member 'w.npy': npy header length 65535 runs past the end of the data (%d bytes)"
     % len(raw))
case("member_data_short.npz",
     npz([("w.npy", npy(hdr(descr="'<f8'", shape="(10,)"), bytes(16)))], zipfile.ZIP_DEFLATED),
     "member 'w.npy': shape (10,) x '<f8' needs 80 data bytes but 16 follow the header")
case("member_shape_overflow.npz",
     npz([("w.npy", npy(hdr(shape="(4294967296, 4294967296, 16)"), bytes(8)))]),
     "member 'w.npy': npy header: shape product overflows 64 bits at dimension 1")


def main():
    os.makedirs(BAD, exist_ok=True)
    for name, (data, msg) in sorted(cases.items()):
        with open(os.path.join(BAD, name), "wb") as f:
            f.write(data)
        stem = name.rsplit(".", 1)[0]
        with open(os.path.join(BAD, stem + ".expected"), "w") as f:
            f.write("%s/%s: %s\n" % (REL, name, msg))
    print("%d cases in %s" % (len(cases), BAD))


if __name__ == "__main__":
    main()
