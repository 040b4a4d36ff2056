"""zip64 in torch checkpoints ckptkit writes: a member over 4 GiB, members
whose local headers start past 4 GiB, and more than 65535 members.

The inputs are safetensors files written by hand (8-byte header length, JSON,
data); the big one is sparse, so only the output takes disk space. Outputs
are read back with Python's zipfile, with torch.load(weights_only=True) in a
subprocess, and with ckptkit itself (ls, verify).
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib

import pytest

from compat import record, version_of

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))
PYTHON = sys.executable  # the lane's interpreter, and so its torch

BIG = (4 << 30) + 4099  # bytes of the U8 tensor: past 0xffffffff
MARKS = {0: 1, BIG // 2: 2, BIG - 1: 3}
SMALL = struct.pack("<4f", 1.5, 2.5, 3.5, 4.5)


def need_ckptkit():
    if not os.path.exists(CKPTKIT):
        pytest.skip("no ckptkit binary at %s (run make)" % CKPTKIT)


def write_safetensors(path, tensors, fill):
    """tensors: [(name, dtype, shape, nbytes)]; fill(f, data_start) writes the data."""
    hdr, off = {}, 0
    for name, dtype, shape, nbytes in tensors:
        hdr[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + nbytes]}
        off += nbytes
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        fill(f, 8 + len(h), off)


def local_data_offset(f, info):
    f.seek(info.header_offset)
    h = f.read(30)
    assert h[:4] == b"PK\x03\x04"
    nl, xl = struct.unpack("<HH", h[26:30])
    extra = f.read(nl + xl)[nl:]
    return info.header_offset + 30 + nl + xl, h, extra


def expected_big_crc():
    crc, pos, chunk = 0, 0, 64 << 20
    zeros = bytes(chunk)
    marks = sorted(MARKS)
    while pos < BIG:
        n = min(chunk, BIG - pos)
        inside = [m for m in marks if pos <= m < pos + n]
        if inside:
            buf = bytearray(zeros[:n])
            for m in inside:
                buf[m - pos] = MARKS[m]
            crc = zlib.crc32(buf, crc)
        else:
            crc = zlib.crc32(zeros[:n] if n < chunk else zeros, crc)
        pos += n
    return crc


def test_member_over_4gib(tmp_path):
    need_ckptkit()
    free = shutil.disk_usage(tmp_path).free
    if free < 10 << 30:
        reason = "needs ~10 GiB free in %s, has %.1f GiB" % (tmp_path, free / 2**30)
        print(reason)
        pytest.skip(reason)
    src = tmp_path / "big.safetensors"

    def fill(f, start, total):
        f.truncate(start + total)  # sparse zeros
        for off, v in MARKS.items():
            f.seek(start + off)
            f.write(bytes([v]))
        f.seek(start + BIG)
        f.write(SMALL)

    write_safetensors(src, [("big", "U8", [BIG], BIG), ("small", "F32", [4], 16)], fill)
    out = tmp_path / "big.pt"
    try:
        check_big(src, out)
    finally:  # pytest keeps old temp folders: do not leave 4 GiB behind
        for p in (src, out):
            if p.exists():
                p.unlink()


def check_big(src, out):
    r = subprocess.run([CKPTKIT, "convert", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr

    with zipfile.ZipFile(out) as z, open(out, "rb") as f:
        infos = {i.filename: i for i in z.infolist()}
        assert list(infos) == ["big/data.pkl", "big/byteorder", "big/data/0", "big/data/1",
                               "big/version"]
        big = infos["big/data/0"]
        assert big.file_size == BIG and big.compress_size == BIG
        assert infos["big/data/1"].header_offset > 0xFFFFFFFF
        assert infos["big/version"].header_offset > 0xFFFFFFFF
        # the local header of the big member: 0xffffffff sizes and a zip64 extra
        data, h, extra = local_data_offset(f, big)
        assert data % 64 == 0
        assert struct.unpack("<II", h[18:26]) == (0xFFFFFFFF, 0xFFFFFFFF)
        assert extra[:4] == b"\x01\x00\x10\x00"
        assert struct.unpack("<QQ", extra[4:20]) == (BIG, BIG)
        assert extra[20:22] == b"FB"
        for off, v in MARKS.items():
            f.seek(data + off)
            assert f.read(1) == bytes([v])
        f.seek(data + 1)
        assert f.read(4096) == bytes(4096)
        # members past 4 GiB read whole, CRC-checked by zipfile
        assert z.read("big/data/1") == SMALL
        assert z.read("big/version") == b"3\n"
        assert z.read("big/byteorder") == b"little"
        with z.open("big/data/0") as m:
            assert m.read(8) == b"\x01" + bytes(7)
        assert big.CRC == expected_big_crc()

    loader = ("import sys, torch\n"
              "sd = torch.load(sys.argv[1], weights_only=True)\n"
              "b = sd['big']\n"
              "assert b.dtype == torch.uint8 and b.shape == (%d,)\n"
              "assert (int(b[0]), int(b[%d]), int(b[-1])) == (1, 2, 3)\n"
              "assert int(torch.count_nonzero(b)) == 3\n"
              "assert sd['small'].tolist() == [1.5, 2.5, 3.5, 4.5]\n"
              "print('ok')\n") % (BIG, BIG // 2)
    r = subprocess.run([PYTHON, "-c", loader, str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr

    r = subprocess.run([CKPTKIT, "ls", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "big" in r.stdout and str(BIG) in r.stdout.replace(",", "")
    r = subprocess.run([CKPTKIT, "verify", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    import torch  # the loader above ran this same interpreter's torch
    record("PyTorch", version_of(torch), "writes", "zip64: a tensor over 4 GiB in .pth")


def test_more_than_65535_members(tmp_path):
    need_ckptkit()
    n = 70000
    src = tmp_path / "many.safetensors"

    def fill(f, start, total):
        f.write(b"".join(struct.pack("<i", i) for i in range(n)))

    write_safetensors(src, [("t.%d" % i, "I32", [1], 4) for i in range(n)], fill)
    out = tmp_path / "many.pth"
    r = subprocess.run([CKPTKIT, "convert", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    size = os.path.getsize(out)
    with open(out, "rb") as f:
        f.seek(size - 22)
        eocd = f.read(22)
        f.seek(size - 22 - 20)
        loc = f.read(20)
        f.seek(struct.unpack("<Q", loc[8:16])[0])
        rec = f.read(56)
    assert eocd[:4] == b"PK\x05\x06" and struct.unpack("<HH", eocd[8:12]) == (0xFFFF, 0xFFFF)
    assert loc[:4] == b"PK\x06\x07" and rec[:4] == b"PK\x06\x06"
    assert struct.unpack("<QQ", rec[24:40]) == (n + 3, n + 3)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        assert len(names) == n + 3
        assert z.read("many/data/69999") == struct.pack("<i", 69999)
    r = subprocess.run([CKPTKIT, "ls", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len([l for l in r.stdout.splitlines() if l.startswith("t.")]) == n
    r = subprocess.run([CKPTKIT, "verify", str(src), str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
