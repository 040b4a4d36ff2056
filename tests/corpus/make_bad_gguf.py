#!/usr/bin/env python3
"""Writes the hostile GGUF corpus (outputs are committed; rerun to regenerate).

bad/gguf/<rule>.gguf      one broken rule per file, each a class of past GGUF parser
                          bugs (GGUF.md 7): counts whose product with an element size
                          wraps, string lengths whose +1 wraps, dimension products and
                          byte sizes that wrap, offsets and accumulated sizes that
                          overflow, alignment padding that wraps, a tiny file whose
                          2^63-element array hangs a reader, type ids out of the table
bad/gguf/<rule>.expected  the one-line error ckptkit must report, with the file named as
                          tests open it (tests/corpus/bad/gguf/...)

The expected lines are written here by hand from the rules (byte offsets computed from
the bytes laid out below). Nothing here runs ckptkit.

Usage: make_bad_gguf.py [REPO_ROOT]   (default: two folders up from this file)
"""
import os
import struct
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
BAD = os.path.join(ROOT, "tests", "corpus", "bad", "gguf")
REL = "tests/corpus/bad/gguf"

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)


def s(b, order="<"):
    b = b.encode() if isinstance(b, str) else b
    return struct.pack(order + "Q", len(b)) + b


def header(n_tensors, n_kv, version=3, order="<"):
    return b"GGUF" + struct.pack(order + "IQQ", version, n_tensors, n_kv)


def kv(key, t, payload, order="<"):
    return s(key, order) + struct.pack(order + "I", t) + payload


def tinfo(name, ne, t, off, order="<"):
    return (s(name, order) + struct.pack(order + "I", len(ne)) +
            b"".join(struct.pack(order + "Q", d) for d in ne) + struct.pack(order + "IQ", t, off))


def pad(b, a=32):
    return b + b"\0" * (-len(b) % a)


CASES = {}


def case(name, data, msg):
    CASES[name] = (data, msg)


def main():
    os.makedirs(BAD, exist_ok=True)
    P = REL + "/"

    # --- counts whose product with a struct size wraps (CVE-2024-25664, CVE-2024-25668)
    d = header(0, 2**62) + b"\0" * 40
    case("kv_count_wrap", d, f"{P}kv_count_wrap.gguf: kv_count {2**62}: {2**62} keys need at "
         "least 14 bytes each but the file has 40 bytes after the header")
    d = header(2**61, 0) + b"\0" * 40
    case("tensor_count_wrap", d, f"{P}tensor_count_wrap.gguf: tensor_count {2**61}: {2**61} "
         "tensor infos need at least 25 bytes each but the file has 40 bytes after the header")

    # --- array count x element size (CVE-2024-25666, CVE-2024-25667, CVE-2024-21836/23605)
    d = header(0, 1) + kv("a", ARRAY, struct.pack("<IQ", U32, 2**62)) + b"\0" * 16
    case("array_size_wrap", d, f"{P}array_size_wrap.gguf: key 'a': array of {2**62} UINT32 at "
         "byte 37: its size overflows 64 bits")
    d = header(0, 1) + kv("tokens", ARRAY, struct.pack("<IQ", STRING, 2**60)) + s("x")
    case("string_array_count", d, f"{P}string_array_count.gguf: key 'tokens': array of {2**60} "
         f"STRING at byte 42 needs at least {2**63} bytes but 9 are left in the file")
    inner = struct.pack("<IQ", ARRAY, 2**59)
    d = header(0, 1) + kv("n", ARRAY, inner) + b"\0" * 24
    case("nested_array_count", d, f"{P}nested_array_count.gguf: key 'n': array of {2**59} ARRAY "
         f"at byte 37 needs at least {2**59 * 12} bytes but 24 are left in the file")
    # gguf-py PR #27188: a tiny file whose 2^63-element array makes a reader spin
    d = header(0, 1) + kv("a", ARRAY, struct.pack("<IQ", U8, 2**63))
    case("array_len_2e63", d, f"{P}array_len_2e63.gguf: key 'a': array of {2**63} UINT8 at byte "
         "37 needs at least 9223372036854775808 bytes but 0 are left in the file")
    deep = b""
    for _ in range(9):
        deep += struct.pack("<IQ", ARRAY, 1)
    # the value starts at byte 40; each level's header is 12 bytes; level 8 is refused
    d = header(0, 1) + kv("deep", ARRAY, deep) + b"\0" * 16
    case("nested_too_deep", d, f"{P}nested_too_deep.gguf: key 'deep': arrays nested more than 8 "
         "deep at byte 136")

    # --- string length whose +1 wraps (CVE-2024-25665, CVE-2024-23496)
    d = header(0, 1) + struct.pack("<Q", 2**64 - 1) + b"key" + b"\0" * 8
    case("key_len_wrap", d, f"{P}key_len_wrap.gguf: key at byte 24: length {2**64 - 1} is more "
         "than the 11 bytes left in the file")
    d = header(0, 1) + kv("k", STRING, struct.pack("<Q", 2**64 - 1)) + b"abc"
    case("string_len_wrap", d, f"{P}string_len_wrap.gguf: string value at byte 37: length "
         f"{2**64 - 1} is more than the 3 bytes left in the file")
    d = header(1, 0) + struct.pack("<Q", 2**64 - 1) + b"w" * 30
    case("name_len_wrap", d, f"{P}name_len_wrap.gguf: tensor name at byte 24: length {2**64 - 1} "
         "is more than the 30 bytes left in the file")

    # --- dimensions: product and byte size wrap (CVE-2024-21802, llama.cpp#27203),
    #     negative as int64 (CVE-2026-33298)
    d = pad(header(1, 0) + tinfo("w", [2**32, 2**32, 2], 0, 0)) + b"\0" * 64
    case("dims_product_wrap", d, f"{P}dims_product_wrap.gguf: tensor 'w': element count "
         "overflows 64 bits at ne[1]")
    d = pad(header(1, 0) + tinfo("w", [2**63], 0, 0)) + b"\0" * 64
    case("ne_negative", d, f"{P}ne_negative.gguf: tensor 'w': ne[0] = {2**63} is negative as "
         "int64")
    d = pad(header(1, 0) + tinfo("w", [2**62], 0, 0)) + b"\0" * 64
    case("nbytes_wrap", d, f"{P}nbytes_wrap.gguf: tensor 'w': byte size of {2**62} F32 "
         "elements overflows 64 bits")
    # Q8_0 (34 bytes per 32): 31 x 2^59 elements fit in 64 bits, their bytes do not
    d = pad(header(1, 0) + tinfo("w", [2**59, 31], 8, 0)) + b"\0" * 64
    case("quant_nbytes_wrap", d, f"{P}quant_nbytes_wrap.gguf: tensor 'w': byte size of "
         f"{31 * 2**59} Q8_0 elements overflows 64 bits")

    # --- offsets: end past the data, computed without wrapping (CVE-2025-53630,
    #     CVE-2026-27940)
    d = pad(header(1, 0) + tinfo("w", [8], 0, 2**64 - 32)) + b"\0" * 32
    case("offset_wrap", d, f"{P}offset_wrap.gguf: tensor 'w': 32 bytes at offset {2**64 - 32} "
         "pass the end of the data section (32 bytes)")
    d = pad(header(2, 0) + tinfo("a", [8], 0, 0) + tinfo("b", [2**40], 0, 32)) + b"\0" * 64
    case("accumulated_size", d, f"{P}accumulated_size.gguf: tensor 'b': {2**42} bytes at offset "
         "32 pass the end of the data section (64 bytes)")
    # alignment padding past the end (llama.cpp PR #26318)
    body = header(1, 1) + kv("general.alignment", U32, struct.pack("<I", 2**31)) + \
        tinfo("w", [1], 0, 0)
    d = body + b"\0" * 8
    case("alignment_past_end", d, f"{P}alignment_past_end.gguf: the data section would start at "
         f"byte {2**31} past the end of the file ({len(d)} bytes)".replace(" past", ", past"))
    d = header(0, 1) + kv("general.alignment", U32, struct.pack("<I", 48))
    case("alignment_not_pow2", d, f"{P}alignment_not_pow2.gguf: general.alignment must be a "
         "UINT32 power of two (got UINT32 48)")
    d = pad(header(1, 0) + tinfo("w", [8], 0, 16)) + b"\0" * 64
    case("offset_unaligned", d, f"{P}offset_unaligned.gguf: tensor 'w': offset 16 is not a "
         "multiple of the alignment 32")

    # --- type ids out of the table
    d = pad(header(1, 0) + tinfo("w", [32], 4, 0)) + b"\0" * 64
    case("type_retired", d, f"{P}type_retired.gguf: tensor 'w': type id 4 is not in ggml's type "
         "table (unknown or retired)")
    d = pad(header(1, 0) + tinfo("w", [32], 1000, 0)) + b"\0" * 64
    case("type_out_of_table", d, f"{P}type_out_of_table.gguf: tensor 'w': type id 1000 is not in "
         "ggml's type table (unknown or retired)")
    d = header(0, 1) + kv("k", 13, b"\0" * 8)
    case("value_type_bad", d, f"{P}value_type_bad.gguf: key 'k': value type 13 at byte 37 is not "
         "a GGUF type (0-12)")
    d = pad(header(1, 0) + tinfo("w", [48], 8, 0)) + b"\0" * 64
    case("quant_row_split", d, f"{P}quant_row_split.gguf: tensor 'w': ne[0] = 48 is not a "
         "multiple of Q8_0's block of 32")

    # --- structure
    d = header(0, 2) + kv("k", U8, b"\1") + kv("k", U8, b"\2")
    case("duplicate_key", d, f"{P}duplicate_key.gguf: key 'k' at byte 38 appears twice")
    d = pad(header(2, 0) + tinfo("w", [8], 0, 0) + tinfo("w", [8], 0, 32)) + b"\0" * 64
    case("duplicate_tensor", d, None)
    d = header(0, 1) + kv("", U8, b"\1") + b"\0" * 8
    case("empty_key", d, f"{P}empty_key.gguf: key 0 at byte 24 is empty")
    d = b"GGUF" + struct.pack("<IQQ", 4, 0, 0)
    case("version_4", d, f"{P}version_4.gguf: GGUF version 4 (ckptkit reads versions 1, 2 and 3)")
    d = b"GGUF" + struct.pack("<I", 3) + b"\0" * 4
    case("truncated_header", d, f"{P}truncated_header.gguf: header at byte 8 runs past the end "
         "of the file (12 bytes)")
    d = pad(header(1, 0) + tinfo("w", [64], 0, 0)) + b"\0" * 32
    case("data_truncated", d, f"{P}data_truncated.gguf: tensor 'w': 256 bytes at offset 0 pass "
         "the end of the data section (32 bytes)")
    # big-endian header with a wrapping count, to prove the swapped path checks too
    d = header(0, 2**62, order=">") + b"\0" * 40
    case("be_kv_count_wrap", d, f"{P}be_kv_count_wrap.gguf: kv_count {2**62}: {2**62} keys need "
         "at least 14 bytes each but the file has 40 bytes after the header")

    for name, (data, msg) in CASES.items():
        with open(os.path.join(BAD, name + ".gguf"), "wb") as f:
            f.write(data)
        if msg is None:
            msg = (f"{P}{name}.gguf: tensor 'w' appears twice")
        with open(os.path.join(BAD, name + ".expected"), "w") as f:
            f.write(msg + "\n")


if __name__ == "__main__":
    main()
