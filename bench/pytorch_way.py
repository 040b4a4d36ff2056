#!/usr/bin/python3
"""The PyTorch way of doing what ckptkit does, for the benchmark (run as a
child process so its wall time and peak RSS are measured on their own).

    pytorch_way.py to-safetensors IN.pt OUT.safetensors   torch.load + safetensors writer
    pytorch_way.py st-to-pth IN.safetensors OUT.pth       safetensors reader + torch.save
    pytorch_way.py st-cast-f16 IN.safetensors OUT.safetensors   reader + .half() + writer
    pytorch_way.py info IN.pt                              torch.load + a summary
    pytorch_way.py ls IN.pt                                torch.load + one line per tensor

The safetensors writer is a pure-Python rendering of what the `safetensors`
package does in save_file (it is not installed here): every tensor becomes
bytes first (`_flatten`: tensor.numpy().tobytes(), so the whole model is held
twice), entries are sorted by dtype (largest enum first) then name, offsets
are laid end to end, the JSON header is compact with "__metadata__"
{"format": "pt"} first and is padded with spaces to a multiple of 8, and the
file is the 8-byte little-endian header length, the header, the data.
The reader does what safe_open + get_tensor do for framework "pt": map the
file and copy each tensor out of it into memory of its own.
"""
import json
import mmap
import struct
import sys

import numpy as np
import torch

# safetensors' Dtype enum order (the crate sorts by it, descending)
_ST_RANK = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32",
            "U32", "F32", "F64", "I64", "U64"]
_TORCH_TO_ST = {
    torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
    torch.float16: "F16", torch.bfloat16: "BF16", torch.int32: "I32", torch.float32: "F32",
    torch.float64: "F64", torch.int64: "I64",
}
_ST_TO_NP = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
    "F16": np.float16, "I32": np.int32, "U32": np.uint32, "F32": np.float32,
    "F64": np.float64, "I64": np.int64, "U64": np.uint64,
}


def safetensors_header(tensors, metadata):
    """(header bytes including the 8-byte length, names in data order)."""
    order = sorted(tensors, key=lambda k: (-_ST_RANK.index(_TORCH_TO_ST[tensors[k].dtype]), k))
    entries = {}
    if metadata is not None:
        entries["__metadata__"] = metadata
    off = 0
    for k in order:
        t = tensors[k]
        n = t.numel() * t.element_size()
        entries[k] = {"dtype": _TORCH_TO_ST[t.dtype], "shape": list(t.shape),
                      "data_offsets": [off, off + n]}
        off += n
    js = json.dumps(entries, separators=(",", ":")).encode()
    js += b" " * ((8 - len(js) % 8) % 8)
    return struct.pack("<Q", len(js)) + js, order


def write_safetensors(tensors, path, metadata=None):
    if metadata is None:
        metadata = {"format": "pt"}
    for k, t in tensors.items():
        if not t.is_contiguous():
            raise ValueError("tensor %r is not contiguous" % k)
    header, order = safetensors_header(tensors, metadata)
    flat = {k: tensors[k].numpy().tobytes() for k in order}  # what _flatten does
    with open(path, "wb") as f:
        f.write(header)
        for k in order:
            f.write(flat[k])


def read_safetensors(path):
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    (n,) = struct.unpack("<Q", mm[:8])
    header = json.loads(mm[8:8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    out = {}
    for k, info in header.items():
        a, b = info["data_offsets"]
        dt = np.dtype(_ST_TO_NP[info["dtype"]])
        arr = np.frombuffer(mm, dtype=dt, count=(b - a) // dt.itemsize, offset=base + a)
        out[k] = torch.from_numpy(arr.reshape(info["shape"]).copy())
        del arr
    mm.close()
    return out


def state_dict_of(obj):
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"]
    return obj


def main(argv):
    cmd = argv[1]
    if cmd == "to-safetensors":
        write_safetensors(state_dict_of(torch.load(argv[2], map_location="cpu")), argv[3])
    elif cmd == "st-to-pth":
        torch.save(read_safetensors(argv[2]), argv[3])
    elif cmd == "st-cast-f16":
        t = read_safetensors(argv[2])
        for k in list(t):
            if t[k].is_floating_point():
                t[k] = t[k].half()
        write_safetensors(t, argv[3])
    elif cmd in ("info", "ls"):
        sd = state_dict_of(torch.load(argv[2], map_location="cpu"))
        ts = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}
        if cmd == "ls":
            w = sys.stdout.write
            for k, v in ts.items():
                w("%s  %s  %s  %d\n" % (k, str(v.dtype).split(".")[-1], list(v.shape),
                                       v.numel() * v.element_size()))
        else:
            hist = {}
            for v in ts.values():
                hist[str(v.dtype)] = hist.get(str(v.dtype), 0) + 1
            print("tensors: %d" % len(ts))
            print("parameters: %d" % sum(v.numel() for v in ts.values()))
            print("bytes: %d" % sum(v.numel() * v.element_size() for v in ts.values()))
            print("dtypes: %s" % hist)
    else:
        sys.stderr.write("pytorch_way.py: unknown command %r\n" % cmd)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
