#!/usr/bin/env python3
"""Writes the torch bad-input corpus: tests/corpus/bad/torch/*.

Everything is assembled by hand (pickle opcodes as bytes, zip/tar through the
standard library), so no file here was ever produced by unpickling anything
and the script needs no torch. Two families:

  evil_*      payloads that would run `touch /tmp/ckptkit-canary-<name>` if a
              Python unpickler loaded them (REDUCE of os.system, INST, a
              second pickle after STOP, an extra zip record, bytes before the
              archive, a tar member, a legacy tail...). `ckptkit scan` must
              call them unsafe (or fail), loading must never run anything.
              Those whose structure is broken also have a .expected line.
  <rule>.*    malformed inputs, each with <rule>.expected: the exact error
              line ck_model_open must give (written by hand after review;
              this script only rewrites the data files).

Run from the repository root:  python3 tests/corpus/bad/torch/make_corpus.py
"""
import io
import os
import struct
import tarfile
import zipfile
import zlib

OUT = os.path.dirname(os.path.abspath(__file__))


# ---- a tiny protocol-2 pickle assembler ------------------------------------------------


def uni(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def glob(mod, name):
    return b"c" + mod.encode() + b"\n" + name.encode() + b"\n"


def num(i):
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if 0 <= i < 65536:
        return b"M" + struct.pack("<H", i)
    if -(2 ** 31) <= i < 2 ** 31:
        return b"J" + struct.pack("<i", i)
    n = (i.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + i.to_bytes(n, "little", signed=True)


def tup(*items):
    if not items:
        return b")"
    return b"(" + b"".join(items) + b"t"


def dct(*pairs):
    out = b"}"
    if pairs:
        out += b"(" + b"".join(k + v for k, v in pairs) + b"u"
    return out


def lst(*items):
    out = b"]"
    if items:
        out += b"(" + b"".join(items) + b"e"
    return out


def call(fn, args):
    return fn + args + b"R"


def ordered_dict():
    return call(glob("collections", "OrderedDict"), tup())


def storage(key, cls="FloatStorage", numel=4):
    return tup(uni("storage"), glob("torch", cls), uni(key), uni("cpu"), num(numel)) + b"Q"


def tensor(key, size, stride=None, offset=0, cls="FloatStorage", numel=None):
    if stride is None:
        stride, s = [], 1
        for d in reversed(size):
            stride.insert(0, s)
            s *= d
    if numel is None:
        numel = 1
        for d in size:
            numel *= d
    return call(glob("torch._utils", "_rebuild_tensor_v2"),
                tup(storage(key, cls, numel), num(offset), tup(*map(num, size)),
                    tup(*map(num, stride)), b"\x89", ordered_dict()))


def pickle(body):
    return b"\x80\x02" + body + b"."


def canary(name):
    return "touch /tmp/ckptkit-canary-" + name


def system(cmd):
    return call(glob("os", "system"), tup(uni(cmd)))


F32_4 = struct.pack("<4f", 1.0, 2.0, -3.5, 0.25)


# ---- containers --------------------------------------------------------------------------


def torch_zip(records, prefix="archive", compress=()):
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            method = zipfile.ZIP_DEFLATED if name in compress else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(f"{prefix}/{name}" if prefix else name), data,
                       compress_type=method)
    return b.getvalue()


def simple_zip(pkl, data=None, extra=()):
    recs = [("data.pkl", pkl)]
    if data is not None:
        recs.append(("data/0", data))
    recs += list(extra)
    recs.append(("version", b"3\n"))
    return torch_zip(recs)


def legacy(main, keys, payloads, little_endian=True):
    magic = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little") + b"."
    proto = pickle(num(1001))
    info = pickle(dct((uni("protocol_version"), num(1001)),
                      (uni("little_endian"), b"\x88" if little_endian else b"\x89"),
                      (uni("type_sizes"), dct((uni("short"), num(2)), (uni("int"), num(4)),
                                              (uni("long"), num(4))))))
    out = magic + proto + info + pickle(main) + pickle(lst(*[uni(k) for k in keys]))
    for count, data in payloads:
        out += struct.pack("<q", count) + data
    return out


def tar_file(members):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            t.addfile(info, io.BytesIO(data))
    return b.getvalue()


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


# ---- the corpus --------------------------------------------------------------------------


def main():
    good_pkl = pickle(dct((uni("w"), tensor("0", [4]))))
    good = simple_zip(good_pkl, F32_4)

    # evil: well-formed files whose payload would run under pickle.load
    write("evil_reduce_zip.pt", simple_zip(
        pickle(dct((uni("w"), tensor("0", [4])), (uni("x"), system(canary("evil_reduce_zip"))))),
        F32_4))
    write("evil_reduce_legacy.pt", legacy(
        dct((uni("w"), tensor("k1", [4])), (uni("x"), system(canary("evil_reduce_legacy")))),
        ["k1"], [(4, F32_4)]))
    write("evil_second_pickle.pkl",
          pickle(dct((uni("ok"), num(1)))) + pickle(system(canary("evil_second_pickle"))))
    write("evil_inst_v0.pkl",
          b"(S'" + canary("evil_inst_v0").encode() + b"'\nios\nsystem\n.")
    cmd = canary("evil_stack_global_memo").encode()
    write("evil_stack_global_memo.pkl",
          b"\x80\x04\x8c\x02os\x94" + b"0" + b"\x8c\x06system\x94" + b"0" +
          b"h\x00h\x01\x93" + b"\x8c" + bytes([len(cmd)]) + cmd + b"\x85R.")
    write("evil_trailing_zip.pt", simple_zip(good_pkl + pickle(system(canary("evil_trailing_zip"))),
                                              F32_4))
    write("evil_extra_record.pt", simple_zip(
        good_pkl, F32_4, extra=[("extra.pkl", pickle(system(canary("evil_extra_record"))))]))
    write("evil_legacy_tail.pt", legacy(dct((uni("w"), tensor("k1", [4]))), ["k1"], [(4, F32_4)]) +
          pickle(system(canary("evil_legacy_tail"))))
    write("evil_junk_prefix.pt", pickle(system(canary("evil_junk_prefix"))) + good)
    write("evil_tar.tar", tar_file([
        ("storages", pickle(num(1))
         + pickle(tup(uni("0"), uni("cpu"), glob("torch", "FloatStorage")))
         + struct.pack("<q", 4) + F32_4),
        ("pickle", pickle(dct((uni("x"), system(canary("evil_tar")))))),
    ]))
    write("evil_build_state.pt", simple_zip(pickle(
        dct((uni("w"), tensor("0", [4])),
            (uni("obj"),
             call(glob("builtins", "getattr"), tup(glob("os", "system"), uni("__call__")))
             + dct((uni("cmd"), uni(canary("evil_build_state")))) + b"b"))), F32_4))
    nm = bytearray(simple_zip(pickle(system(canary("evil_name_mismatch")))))
    i = nm.find(b"archive/data.pkl")  # first occurrence: the local header
    nm[i:i + 16] = b"archive/datap.kl"
    write("evil_name_mismatch.pt", bytes(nm))
    enc = bytearray(simple_zip(pickle(system(canary("evil_encrypted")))))
    for sig, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        j = enc.find(sig)
        enc[j + flag_at] |= 1
    write("evil_encrypted.pt", bytes(enc))
    write("evil_no_prefix.zip", torch_zip([("data.pkl", pickle(system(canary("evil_no_prefix"))))],
                                          prefix=""))
    # a payload whose record fails its CRC-32 (both headers say another CRC): scan
    # still reads it and calls the file unsafe, and reports the mismatch too
    crc = bytearray(simple_zip(pickle(dct((uni("w"), tensor("0", [4])),
                                          (uni("x"), system(canary("evil_bad_crc"))))), F32_4))
    for sig, crc_at in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        j = crc.find(sig)
        crc[j + crc_at:j + crc_at + 4] = struct.pack("<I", 0x12345678)
    write("evil_bad_crc.pt", bytes(crc))
    # junk after a payload: the scan fails on the junk but still says unsafe
    write("evil_junk_after.pkl", pickle(system(canary("evil_junk_after"))) + b"not a pickle\x00")

    # malformed inputs
    for frac, tag in ((0.25, "a"), (0.6, "b"), (0.97, "c")):
        write(f"truncated_{tag}.pt", good[:int(len(good) * frac)])
    cd = bytearray(good)
    j = cd.find(b"PK\x01\x02")
    cd[j:j + 4] = b"PK\x01\x07"
    write("cd_corrupt.pt", bytes(cd))
    # a record hidden inside another's bytes: 'version' points into data/0
    inner_name = b"archive/version"
    inner = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, zlib.crc32(b"3\n"), 2, 2,
                        len(inner_name), 0) + inner_name + b"3\n"
    over = bytearray(torch_zip([("data.pkl", good_pkl), ("data/0", F32_4 + inner),
                                ("version", b"3\n")]))
    with zipfile.ZipFile(io.BytesIO(bytes(over))) as z:
        d0 = z.getinfo("archive/data/0")
        nlen, xlen = struct.unpack("<HH", over[d0.header_offset + 26:d0.header_offset + 30])
        hidden = d0.header_offset + 30 + nlen + xlen + len(F32_4)
    j = over.rfind(b"PK\x01\x02")  # the last central entry: 'archive/version'
    over[j + 42:j + 46] = struct.pack("<I", hidden)
    write("overlap.pt", bytes(over))
    bomb = bytearray(torch_zip([("data.pkl", good_pkl), ("data/0", b"\0" * 200000),
                                ("version", b"3\n")], compress=("data/0",)))
    write("inflate_ratio.pt", _patch_usize(bytes(bomb), b"archive/data/0", 1 << 30))
    big = bytearray(torch_zip([("data.pkl", good_pkl + b"\0" * 64), ("version", b"3\n")],
                              compress=("data.pkl",)))
    write("inflate_limit.pt", _patch_usize(bytes(big), b"archive/data.pkl", 6 << 30))
    deep = b"\x80\x02" + b"]" * 3000 + b"a" * 2999 + b"."
    write("deep_nesting.pt", simple_zip(deep))
    write("memo_missing.pt", simple_zip(b"\x80\x02}q\x00h\x05."))
    write("huge_length.pt", simple_zip(b"\x80\x02X\xf0\xff\xff\xff" + b"abc."))
    write("missing_storage.pt", simple_zip(pickle(dct((uni("w"), tensor("7", [4])))), F32_4))
    write("view_past_end.pt", simple_zip(pickle(dct((uni("w"), tensor("0", [8], numel=4)))),
                                         F32_4))
    write("shape_overflow.pt", simple_zip(pickle(dct((uni("w"), tensor(
        "0", [1 << 40, 1 << 40], stride=[1, 1], numel=4)))), F32_4))
    write("storage_short.pt", simple_zip(pickle(dct((uni("w"), tensor("0", [4], numel=16)))),
                                         F32_4))
    write("negative_offset.pt", simple_zip(pickle(dct((uni("w"), tensor("0", [2], offset=-1)))),
                                           F32_4))
    write("bad_storage_class.pt", simple_zip(pickle(dct((uni("w"), tensor("0", [4],
                                                                             cls="EvilStorage")))),
                                             F32_4))
    write("torchscript.pt", torch_zip([("data.pkl", good_pkl), ("constants.pkl", pickle(tup())),
                                       ("data/0", F32_4), ("version", b"3\n")]))
    write("byteorder_bad.pt", simple_zip(good_pkl, F32_4, extra=[("byteorder", b"middle")]))
    write("legacy_truncated.pt", legacy(dct((uni("w"), tensor("k1", [4]))), ["k1"],
                                        [(4, F32_4[:9])]))
    write("legacy_count_mismatch.pt", legacy(dct((uni("w"), tensor("k1", [4]))), ["k1"],
                                             [(5, F32_4 + b"\0" * 4)]))
    write("legacy_unlisted.pt", legacy(dct((uni("w"), tensor("k1", [4]))), [], []))
    magic = (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
    write("legacy_bad_protocol.pt", b"\x80\x02\x8a\x0a" + magic + b"." + pickle(num(1000)))
    t = bytearray(tar_file([("sys_info", pickle(dct())), ("pickle", good_pkl)]))
    second = 512 + 512  # header, one block of sys_info, then the second header
    t[second] ^= 0x20
    write("tar_checksum.tar", bytes(t))


def _patch_usize(data, name, usize):
    """Sets the central directory's uncompressed size of NAME (a lie)."""
    b = bytearray(data)
    j = b.find(b"PK\x01\x02")
    while j >= 0:
        nlen = struct.unpack("<H", b[j + 28:j + 30])[0]
        if bytes(b[j + 46:j + 46 + nlen]) == name:
            if usize >= 0xFFFFFFFF:
                b[j + 24:j + 28] = b"\xff\xff\xff\xff"
                xlen = struct.unpack("<H", b[j + 30:j + 32])[0]
                extra = struct.pack("<HHQ", 1, 8, usize)
                b[j + 30:j + 32] = struct.pack("<H", xlen + len(extra))
                b[j + 46 + nlen:j + 46 + nlen] = extra
                _grow_cd(b, len(extra))
            else:
                b[j + 24:j + 28] = struct.pack("<I", usize)
            return bytes(b)
        j = b.find(b"PK\x01\x02", j + 4)
    raise SystemExit(f"no central entry {name!r}")


def _grow_cd(b, by):
    """The central directory grew by BY bytes: fix the end record's size."""
    e = b.rfind(b"PK\x05\x06")
    size = struct.unpack("<I", b[e + 12:e + 16])[0]
    b[e + 12:e + 16] = struct.pack("<I", size + by)


if __name__ == "__main__":
    main()
