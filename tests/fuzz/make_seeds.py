#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets this file owns (outputs are committed; rerun
to regenerate). Needs /usr/bin/python3 with torch and numpy; nothing here is ever loaded
back with pickle or torch.load.

tests/fuzz/corpus/fuzz_legacy/seed_*     legacy torch streams WITHOUT their 14-byte magic
                                         (the target puts it back), from torch.save with
                                         _use_new_zipfile_serialization=False
tests/fuzz/corpus/fuzz_tar/seed_*        tar archives: plain ones in ustar, GNU and pax
                                         form (long names, folders, links), and torch's
                                         0.1-era layout built by hand (sys_info, storages,
                                         tensors, pickle) as src/formats/torch_read.h
                                         describes it
tests/fuzz/corpus/fuzz_roundtrip/seed_*  small torch zip checkpoints whose tensors writers
                                         find hard: every torch dtype, strided and offset
                                         views, shared storages, a Lightning-style dict
tests/fuzz/corpus/fuzz_open_any/seed_*   what only detection and the scanner see: an npy
                                         object array, an npz holding one, a zip behind a
                                         junk prefix, a legacy stream with a pickle after
                                         its storages

Usage: make_seeds.py [REPO_ROOT]   (default: two folders up from this file)
"""
import io
import os
import pickle
import struct
import sys
import tarfile
import zipfile

import numpy as np
import torch

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")
LEGACY_MAGIC = 14  # PROTO 2 + LONG1 of 0x1950a86a20f9469cfc6c

torch.manual_seed(7)


def write(target: str, name: str, data: bytes) -> None:
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed_" + name), "wb") as f:
        f.write(data)


def save(obj, legacy: bool = False) -> bytes:
    b = io.BytesIO()
    torch.save(obj, b, _use_new_zipfile_serialization=not legacy)
    return b.getvalue()


def dtype_zoo() -> dict:
    base = torch.arange(6, dtype=torch.float32).reshape(2, 3) - 2.5
    zoo = {
        "f32": base,
        "f64": base.double(),
        "f16": base.half(),
        "bf16": base.bfloat16(),
        "i64": torch.arange(5),
        "i32": torch.arange(4, dtype=torch.int32) - 2,
        "i16": torch.arange(3, dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 7], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "c64": torch.tensor([1 + 2j, -3j], dtype=torch.complex64),
        "c128": torch.tensor([0.5 - 1j], dtype=torch.complex128),
        "scalar": torch.tensor(3.25),
        "empty": torch.zeros(0, 4),
    }
    if hasattr(torch, "float8_e4m3fn"):
        zoo["f8"] = base.to(torch.float8_e4m3fn)
    return zoo


def views() -> dict:
    big = torch.arange(24, dtype=torch.float32)
    grid = big.view(4, 6)
    return {
        "rows": grid[1:3],             # offset into a shared storage
        "cols": grid[:, 2],            # stride 6
        "t": grid.t(),                 # transposed
        "step": big[::5],              # stride 5
        "expand": torch.ones(1, 3).expand(4, 3),  # stride 0
        "whole": big,                  # shares with all the above
    }


# ---- legacy ----------------------------------------------------------------------


def legacy_seeds() -> None:
    objs = {
        "dtypes": dtype_zoo(),
        "views": views(),
        "param": {"w": torch.nn.Parameter(torch.randn(3, 2)), "b": torch.zeros(2)},
        "module_state": torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU()).state_dict(),
        "list": [torch.ones(2), torch.arange(3)],
    }
    for name, obj in objs.items():
        data = save(obj, legacy=True)
        write("fuzz_legacy", name, data[LEGACY_MAGIC:])


# ---- tar -------------------------------------------------------------------------


def tar_bytes(members, fmt) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for name, data, kind in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = data.decode()
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return b.getvalue()


class _PidPickler(pickle.Pickler):
    """Pickles values of type _Pid as persistent ids (the key string)."""

    def persistent_id(self, obj):
        return obj.key if isinstance(obj, _Pid) else None


class _Pid:
    def __init__(self, key):
        self.key = key


def pdump(obj) -> bytes:
    b = io.BytesIO()
    _PidPickler(b, protocol=2).dump(obj)
    return b.getvalue()


def torch_tar_layout(with_views: bool, with_tensors: bool) -> list:
    """The members of an 0.1-era torch tar: sys_info, storages, tensors, pickle."""
    sys_info = pdump({"protocol_version": 1000, "little_endian": True,
                      "type_sizes": {"short": 2, "int": 4, "long": 8}})
    stores = [("s0", torch.FloatStorage, struct.pack("<6f", 1, 2, 3, 4, 5, 6)),
              ("s1", torch.LongStorage, struct.pack("<3q", 7, -8, 9))]
    st = pdump(len(stores))
    for key, cls, raw in stores:
        esize = 4 if cls is torch.FloatStorage else 8
        st += pdump((key, "cpu", cls)) + struct.pack("<q", len(raw) // esize) + raw
    if with_views:
        st += pdump([("v0", "s0", 2, 3)])
    members = [("sys_info", sys_info, "file"), ("storages", st, "file")]
    if with_tensors:
        tens = [("t0", "s0", [2, 3], [3, 1], 0), ("t1", "s1", [3], [1], 0),
                ("t2", "s0", [3, 2], [1, 3], 0)]
        tt = pdump(len(tens))
        for key, skey, size, stride, off in tens:
            tt += pdump((key, skey, torch.FloatTensor if skey == "s0" else torch.LongTensor))
            tt += struct.pack("<i4x", len(size))
            tt += struct.pack("<%dq" % len(size), *size) + struct.pack("<%dq" % len(stride), *stride)
            tt += struct.pack("<q", off)
        members.append(("tensors", tt, "file"))
        obj = {"w": _Pid("t0"), "n": _Pid("t1"), "wt": _Pid("t2")}
    else:
        obj = {"raw": _Pid("s0"), "longs": _Pid("s1")}
    if with_views:
        obj["view"] = _Pid("v0")
    members.append(("pickle", pdump(obj), "file"))
    return members


def tar_seeds() -> None:
    plain = [("folder", b"", "dir"), ("folder/a.txt", b"hello\n", "file"),
             ("link", b"folder/a.txt", "link"), ("x" * 120 + "/long_name.bin", b"\x00" * 700, "file"),
             ("empty", b"", "file")]
    write("fuzz_tar", "plain_ustar", tar_bytes(plain[:3] + plain[4:], tarfile.USTAR_FORMAT))
    write("fuzz_tar", "plain_gnu", tar_bytes(plain, tarfile.GNU_FORMAT))
    write("fuzz_tar", "plain_pax", tar_bytes(plain, tarfile.PAX_FORMAT))
    write("fuzz_tar", "torch_storages", tar_bytes(torch_tar_layout(False, False), tarfile.GNU_FORMAT))
    write("fuzz_tar", "torch_tensors", tar_bytes(torch_tar_layout(False, True), tarfile.USTAR_FORMAT))
    write("fuzz_tar", "torch_views", tar_bytes(torch_tar_layout(True, True), tarfile.PAX_FORMAT))


# ---- roundtrip --------------------------------------------------------------------


def roundtrip_seeds() -> None:
    write("fuzz_roundtrip", "dtypes.pt", save(dtype_zoo()))
    write("fuzz_roundtrip", "views.pt", save(views()))
    write("fuzz_roundtrip", "lightning.ckpt", save({
        "epoch": 3, "global_step": 120, "pytorch-lightning_version": "2.0.9",
        "state_dict": {"model.layer.weight": torch.randn(3, 2), "model.layer.bias": torch.zeros(3),
                       "model_ema.layerweight": torch.randn(3, 2), "model_ema.decay": torch.tensor(0.999)},
        "hyper_parameters": {"lr": 0.01, "name": "tiny"},
    }))
    write("fuzz_roundtrip", "names.pt", save({"": torch.ones(1), "a.b": torch.ones(2),
                                              "a/b": torch.zeros(2), "__metadata__": torch.ones(1),
                                              "\u00e9t\u00e9": torch.arange(2)}))


# ---- open_any ---------------------------------------------------------------------


def open_any_seeds() -> None:
    b = io.BytesIO()
    np.save(b, np.array([1, "two", (3.0,)], dtype=object), allow_pickle=True)
    write("fuzz_open_any", "object.npy", b.getvalue())
    b = io.BytesIO()
    np.savez(b, ints=np.arange(4), objs=np.array([{"k": 1}], dtype=object))
    write("fuzz_open_any", "objects.npz", b.getvalue())
    ckpt = save({"w": torch.ones(2, 2)})
    write("fuzz_open_any", "junk_prefix.pt", pickle.dumps({"hello": 1}, protocol=2) + ckpt)
    legacy = save({"w": torch.arange(3.0)}, legacy=True)
    write("fuzz_open_any", "legacy_tail.pt", legacy + pickle.dumps(["tail", 2], protocol=2))
    z = io.BytesIO()
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("m/data.pkl", pickle.dumps({"x": 1}, protocol=2))
        zf.writestr("m/extra.bin", b"\x80\x02K\x05.")
    write("fuzz_open_any", "deflated_zip.pt", z.getvalue())


if __name__ == "__main__":
    legacy_seeds()
    tar_seeds()
    roundtrip_seeds()
    open_any_seeds()
    print("make_seeds: done")
