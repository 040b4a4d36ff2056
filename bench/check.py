#!/usr/bin/python3
"""Checks a benchmark output against its input, so a fast wrong answer
cannot pass:

    check.py IN OUT [--half]

IN and OUT are read with PyTorch (torch.load) or, for .safetensors, with the
reader in pytorch_way.py after checking the file's layout (offsets end to end
from 0 to the end of the file). Every tensor of IN must be in OUT under the
same name with the same shape and bit-identical values; with --half floating
tensors of IN are first cast with torch's .half(). Exits 1 naming the first
difference.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_way  # noqa: E402


def st_layout_ok(path):
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8:
            return "header length %d past the file's %d bytes" % (n, size)
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    spans = sorted(tuple(v["data_offsets"]) for v in header.values())
    pos = 0
    for a, b in spans:
        if a != pos or b < a:
            return "data_offsets [%d, %d) do not follow %d" % (a, b, pos)
        pos = b
    if 8 + n + pos != size:
        return "data ends at %d but the file has %d bytes" % (8 + n + pos, size)
    return None


def load(path):
    if path.endswith(".safetensors"):
        bad = st_layout_ok(path)
        if bad:
            raise SystemExit("check: %s: %s" % (path, bad))
        return pytorch_way.read_safetensors(path)
    return pytorch_way.state_dict_of(torch.load(path, map_location="cpu"))


def main(argv):
    half = "--half" in argv
    a, b = [x for x in argv[1:] if not x.startswith("--")]
    src, out = load(a), load(b)
    if set(src) != set(out):
        missing = sorted(set(src) - set(out))[:3]
        extra = sorted(set(out) - set(src))[:3]
        sys.stderr.write("check: %s: names differ from %s (missing %s, extra %s)\n"
                         % (b, a, missing, extra))
        return 1
    for k, t in src.items():
        if half and t.is_floating_point():
            t = t.half()
        u = out[k]
        if u.dtype != t.dtype or tuple(u.shape) != tuple(t.shape):
            sys.stderr.write("check: %s: tensor %r is %s %s, expected %s %s\n"
                             % (b, k, u.dtype, list(u.shape), t.dtype, list(t.shape)))
            return 1
        if not torch.equal(u.contiguous().view(-1).view(torch.uint8),
                           t.contiguous().view(-1).view(torch.uint8)):
            sys.stderr.write("check: %s: tensor %r values differ\n" % (b, k))
            return 1
    print("check: %s matches %s (%d tensors)" % (b, a, len(src)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
