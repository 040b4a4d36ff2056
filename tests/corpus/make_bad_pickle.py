#!/usr/bin/env python3
"""Writes tests/corpus/bad/pickle/<rule>.pkl and <rule>.expected.

Each case is a hand-assembled byte string (nothing here imports or runs the
pickle module) and the exact one-line message the machine gives when run as
cki_pickle_run(file=<path of the .pkl>, where="pickle", base_off=0). The
messages are written out by hand from the rules in src/pickle/machine.c;
t_pickle.c compares them byte for byte.

Run from the repository root: python3 tests/corpus/make_bad_pickle.py
"""
import os
import struct

OUT = "tests/corpus/bad/pickle"


def le32(v):
    return struct.pack("<I", v & 0xFFFFFFFF)


def le64(v):
    return struct.pack("<Q", v)


CASES = [
    # (rule, bytes, message after "FILE: pickle: ")
    ("truncated_no_stop", b"\x80\x02K\x01",
     "truncated at byte 4: no STOP before end of data"),
    ("empty_input", b"",
     "truncated at byte 0: no STOP before end of data"),
    ("memo_key_never_stored", b"\x80\x02K\x01h\x07.",
     "opcode 0x68 (BINGET) at byte 4: memo key 7 was never stored"),
    ("long_binget_never_stored", b"\x80\x02K\x01r" + le32(1) + b"j" + le32(0xDEADBEEF) + b".",
     "opcode 0x6a (LONG_BINGET) at byte 9: memo key 3735928559 was never stored"),
    ("binunicode_length_past_end", b"\x80\x04X\xff\xff\xff\x7fabc.",
     "opcode 0x58 (BINUNICODE) at byte 2: string of 2147483647 bytes but only 4 remain"),
    ("binunicode8_length_past_end", b"\x8d" + le64(2**64 - 1) + b".",
     "opcode 0x8d (BINUNICODE8) at byte 0: string of 18446744073709551615 bytes but only 1 remain"),
    ("binbytes8_length_past_end", b"\x80\x04\x8e" + le64(1 << 40) + b"xy.",
     "opcode 0x8e (BINBYTES8) at byte 2: bytes object of 1099511627776 bytes but only 3 remain"),
    ("bytearray8_length_past_end", b"\x80\x05\x96" + le64(9) + b"x.",
     "opcode 0x96 (BYTEARRAY8) at byte 2: bytes object of 9 bytes but only 2 remain"),
    ("short_binunicode_past_end", b"\x8c\x10abc",
     "opcode 0x8c (SHORT_BINUNICODE) at byte 0: string of 16 bytes but only 3 remain"),
    ("frame_past_end", b"\x80\x04\x95" + le64(4096) + b"N.",
     "opcode 0x95 (FRAME) at byte 2: frame of 4096 bytes but only 2 remain"),
    ("frame_argument_cut", b"\x80\x04\x95\x01\x00",
     "opcode 0x95 (FRAME) at byte 2: argument needs 8 bytes but only 2 remain"),
    ("long4_negative_length", b"\x8b\xfe\xff\xff\xff.",
     "opcode 0x8b (LONG4) at byte 0: negative integer length -2"),
    ("long1_past_end", b"\x8a\x09\x01\x02.",
     "opcode 0x8a (LONG1) at byte 0: integer of 9 bytes but only 3 remain"),
    ("binstring_negative_length", b"T\x00\x00\x00\x80.",
     "opcode 0x54 (BINSTRING) at byte 0: negative string length -2147483648"),
    ("binint_cut", b"J\x01\x02",
     "opcode 0x4a (BININT) at byte 0: argument needs 4 bytes but only 2 remain"),
    ("unknown_opcode", b"\x80\x02K\x01\xff.",
     "opcode 0xff (unknown) at byte 4: not a pickle opcode"),
    ("unknown_opcode_newline", b"N\n.",
     "opcode 0x0a (unknown) at byte 1: not a pickle opcode"),
    ("protocol_6", b"\x80\x06N.",
     "opcode 0x80 (PROTO) at byte 0: unsupported protocol 6 (0-5 are known)"),
    ("next_buffer", b"\x80\x05\x97.",
     "opcode 0x97 (NEXT_BUFFER) at byte 2: out-of-band buffers (protocol 5) are not supported: "
     "the data is not in the file"),
    ("readonly_buffer", b"\x80\x05C\x01x\x98.",
     "opcode 0x98 (READONLY_BUFFER) at byte 5: out-of-band buffers (protocol 5) are not "
     "supported: the data is not in the file"),
    ("ext1", b"\x80\x02\x82\x01.",
     "opcode 0x82 (EXT1) at byte 2: copyreg extension codes are not supported: they name "
     "globals registered outside the file"),
    ("ext2", b"\x80\x02\x83\x01\x02.",
     "opcode 0x83 (EXT2) at byte 2: copyreg extension codes are not supported: they name "
     "globals registered outside the file"),
    ("ext4", b"\x80\x02\x84\x01\x02\x03\x04.",
     "opcode 0x84 (EXT4) at byte 2: copyreg extension codes are not supported: they name "
     "globals registered outside the file"),
    ("reduce_through_mark", b"cos\nsystem\n(R.",
     "opcode 0x52 (REDUCE) at byte 12: stack underflow: needs 2 values but only 0 lie above "
     "the last MARK"),
    ("stop_on_empty_stack", b".",
     "opcode 0x2e (STOP) at byte 0: stack underflow: needs 1 values but the stack holds 0"),
    ("stop_above_mark", b"K\x01(.",
     "opcode 0x2e (STOP) at byte 3: stack underflow: needs 1 values but only 0 lie above the "
     "last MARK"),
    ("pop_mark_without_mark", b"1.",
     "opcode 0x31 (POP_MARK) at byte 0: no MARK to pop"),
    ("tuple_without_mark", b"K\x01t.",
     "opcode 0x74 (TUPLE) at byte 2: no MARK to pop"),
    ("dict_odd_values", b"(K\x01K\x02K\x03d.",
     "opcode 0x64 (DICT) at byte 7: odd number of values (3) for key, value pairs"),
    ("setitems_odd_values", b"}(K\x01u.",
     "opcode 0x75 (SETITEMS) at byte 4: odd number of values (1) for key, value pairs"),
    ("setitem_on_tuple", b")K\x01K\x02s.",
     "opcode 0x73 (SETITEM) at byte 5: target is a tuple, not a dict"),
    ("append_on_dict", b"}K\x01a.",
     "opcode 0x61 (APPEND) at byte 3: target is a dict, not a list"),
    ("appends_on_str", b"X\x01\x00\x00\x00s(K\x01e.",
     "opcode 0x65 (APPENDS) at byte 9: target is a str, not a list"),
    ("additems_on_frozenset", b"(K\x01\x91(K\x02\x90.",
     "opcode 0x90 (ADDITEMS) at byte 7: target is a frozenset, not a set"),
    ("string_not_quoted", b"Sabc\n.",
     "opcode 0x53 (STRING) at byte 0: the STRING argument must be quoted"),
    ("string_bad_hex_escape", b"S'\\x4g'\n.",
     "opcode 0x53 (STRING) at byte 0: invalid \\x escape at byte 0 of STRING"),
    ("string_trailing_backslash", b"S'abc\\'\n.",
     "opcode 0x53 (STRING) at byte 0: trailing backslash in STRING"),
    ("unicode_truncated_escape", b"V\\u12\n.",
     "opcode 0x56 (UNICODE) at byte 0: truncated \\u escape at byte 4 of the text"),
    ("unicode_escape_out_of_range", b"V\\U00110000\n.",
     "opcode 0x56 (UNICODE) at byte 0: escape \\U00110000 is beyond U+10FFFF"),
    ("binunicode_invalid_utf8", b"X\x02\x00\x00\x00\xc3\x28.",
     "opcode 0x58 (BINUNICODE) at byte 0: string of 2 bytes is not valid utf-8"),
    ("global_nul_in_module", b"cos\x00\nsystem\n.",
     "opcode 0x63 (GLOBAL) at byte 0: global module contains a nul byte"),
    ("global_name_not_utf8", b"cos\nsys\xfftem\n.",
     "opcode 0x63 (GLOBAL) at byte 0: global name is not valid utf-8"),
    ("global_no_newline", b"cos\nsystem",
     "opcode 0x63 (GLOBAL) at byte 0: text argument has no newline before end of data "
     "(6 bytes remain)"),
    ("inst_module_not_ascii", b"(im\xc3\xa9\nC\n.",
     "opcode 0x69 (INST) at byte 1: global module is not ascii (byte 1)"),
    ("inst_without_mark", b"ios\nsystem\n.",
     "opcode 0x69 (INST) at byte 0: no MARK to pop"),
    ("obj_without_class", b"(o.",
     "opcode 0x6f (OBJ) at byte 1: no class after the MARK"),
    ("persid_not_ascii", b"P\xe9t\xe9\n.",
     "opcode 0x50 (PERSID) at byte 0: persistent id is not ascii (byte 0)"),
    ("binpersid_underflow", b"Q.",
     "opcode 0x51 (BINPERSID) at byte 0: stack underflow: needs 1 values but the stack holds 0"),
    ("stack_global_underflow", b"\x8c\x02os\x93.",
     "opcode 0x93 (STACK_GLOBAL) at byte 4: stack underflow: needs 2 values but the stack "
     "holds 1"),
    ("build_underflow", b"}b.",
     "opcode 0x62 (BUILD) at byte 1: stack underflow: needs 2 values but the stack holds 1"),
    ("int_leading_zero", b"I012\n.",
     "opcode 0x49 (INT) at byte 0: '012' is not an integer"),
    ("long_double_suffix", b"L12LL\n.",
     "opcode 0x4c (LONG) at byte 0: '12L' is not an integer"),
    ("int_too_many_digits", b"I" + b"7" * 4301 + b"\n.",
     "opcode 0x49 (INT) at byte 0: integer literal of 4301 digits exceeds 4300"),
    ("float_not_a_number", b"F1.5x\n.",
     "opcode 0x46 (FLOAT) at byte 0: text of 4 bytes is not a float"),
    ("put_negative_key", b"K\x01p-1\n.",
     "opcode 0x70 (PUT) at byte 2: negative memo key -1"),
    ("get_negative_key", b"g-3\n.",
     "opcode 0x67 (GET) at byte 0: memo key -3 was never stored"),
    ("put_key_too_large", b"K\x01p18446744073709551616\n.",
     "opcode 0x70 (PUT) at byte 2: memo key does not fit 64 bits"),
    ("memoize_above_mark", b"K\x01(\x94.",
     "opcode 0x94 (MEMOIZE) at byte 3: stack underflow: needs 1 values but only 0 lie above "
     "the last MARK"),
    ("nesting_2000_deep", b"N" + b"\x85" * 2000 + b".",
     "opcode 0x2e (STOP) at byte 2001: values nest more than 1000 levels deep (the limit)"),
    # 1200 lists built flat (7 bytes each), then chained by 1199 appends of
    # 12 bytes each, then the first fetched (5 bytes): STOP at 8400 + 14388 + 5
    ("nesting_grown_after_containment",
     b"".join(b"]r" + le32(i) + b"0" for i in range(1200))
     + b"".join(b"j" + le32(i) + b"j" + le32(i + 1) + b"a0" for i in range(1199))
     + b"j" + le32(0) + b".",
     "opcode 0x2e (STOP) at byte 22793: values nest more than 1000 levels deep (the limit)"),
]


def main():
    os.makedirs(OUT, exist_ok=True)
    for rule, data, msg in CASES:
        path = os.path.join(OUT, rule + ".pkl")
        with open(path, "wb") as f:
            f.write(data)
        with open(os.path.join(OUT, rule + ".expected"), "w") as f:
            f.write("%s: pickle: %s\n" % (path, msg))
    print("%d cases written to %s" % (len(CASES), OUT))


if __name__ == "__main__":
    main()
