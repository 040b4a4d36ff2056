#!/usr/bin/env python3
"""GGUF benchmarks: ckptkit's quantisers against gguf-py, and GGUF conversion against cp.

    build/venv/bin/python bench/gguf_bench.py --ckptkit build/ckptkit [--size 1GiB] [--runs 3]

Needs numpy and gguf (gguf-py, llama.cpp's package: the pinned build/venv has 0.19).
Generates an LLM-like float32 model of --size as safetensors (2-D weights of 4096 x N
plus a few 1-D norms), then, median of --runs runs each, page cache dropped for the
input before every run (posix_fadvise DONTNEED):

  quantise Q8_0 / Q4_0   `ckptkit convert model.safetensors out.gguf --dtype q8_0`,
                         the whole job (read, quantise, write, fsync), against
                         gguf.quants.quantize on the same arrays already in memory
                         (no reading, no writing: gguf-py's best case)
  GGUF F16 -> safetensors  `ckptkit convert model-f16.gguf out.safetensors`, against
                         `cp` + fsync of the same file
ckptkit's peak RSS (ru_maxrss of the child) is printed for every job. The outputs are
checked: Q8_0 and Q4_0 bytes equal gguf-py's for every tensor, the safetensors values
equal the GGUF's.
"""
import argparse
import json
import os
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader
from gguf.quants import quantize

MiB = 1 << 20


def parse_size(s):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    low = s.strip().lower().rstrip("b").rstrip("i")
    if low and low[-1] in units:
        return int(float(low[:-1]) * units[low[-1]])
    return int(low)


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def child(argv):
    """(wall seconds, peak RSS KiB) of one child process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode()
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}: {err}")
    return wall, ru.ru_maxrss


def write_safetensors(path, tensors):
    header, off = {}, 0
    for k, a in tensors.items():
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + a.nbytes]}
        off += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for a in tensors.values():
            f.write(a.tobytes())


def model(size, seed=1):
    rng = np.random.default_rng(seed)
    out, total, i = {}, 0, 0
    while total < size:
        rows = 1024 if i % 3 else 4096
        cols = max(256, min(4096, (size - total) // 4 // rows // 256 * 256))
        out[f"blk.{i}.ffn.weight"] = rng.standard_normal((rows, cols), dtype=np.float32) * 0.02
        out[f"blk.{i}.norm.weight"] = np.ones(cols, np.float32)
        total += rows * cols * 4 + cols * 4
        i += 1
    return out


def median(xs):
    return statistics.median(xs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckptkit", default="build/ckptkit")
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    ck = os.path.abspath(a.ckptkit)
    size = parse_size(a.size)
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as work:
        src = os.path.join(work, "model.safetensors")
        tensors = model(size)
        write_safetensors(src, tensors)
        n_params = sum(t.size for t in tensors.values())
        print(f"model: {len(tensors)} tensors, {n_params * 4 / MiB:.0f} MiB float32")
        for qt in ("Q8_0", "Q4_0"):
            out = os.path.join(work, f"{qt}.gguf")
            ck_walls, rss = [], []
            for _ in range(a.runs):
                if os.path.exists(out):
                    os.unlink(out)
                evict(src)
                w, r = child([ck, "convert", src, out, "--dtype", qt.lower(), "-q"])
                ck_walls.append(w)
                rss.append(r)
            py_walls = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                ref = {k: quantize(v, T[qt]) for k, v in tensors.items() if v.ndim == 2}
                py_walls.append(time.perf_counter() - t0)
            r = GGUFReader(out)
            for t in r.tensors:
                if t.name in ref:
                    same = np.array_equal(np.asarray(t.data).reshape(-1), ref[t.name].reshape(-1))
                    if not same:
                        raise SystemExit(f"{qt}: tensor {t.name} differs from gguf-py")
            del ref, r
            rows.append((f"quantise {qt} ({n_params * 4 / MiB:.0f} MiB F32)", median(ck_walls),
                         f"gguf.quants.quantize {median(py_walls):.2f} s", median(py_walls) /
                         median(ck_walls), max(rss)))
        # GGUF F16 -> safetensors F16 against cp + fsync
        f16 = os.path.join(work, "f16.gguf")
        child([ck, "convert", src, f16, "--dtype", "f16", "-q"])
        out = os.path.join(work, "back.safetensors")
        cp_out = os.path.join(work, "cp.gguf")
        ck_walls, cp_walls, rss = [], [], []
        for _ in range(a.runs):
            for p in (out, cp_out):
                if os.path.exists(p):
                    os.unlink(p)
            evict(f16)
            w, r = child([ck, "convert", f16, out, "-q"])
            ck_walls.append(w)
            rss.append(r)
            evict(f16)
            w, _ = child(["sh", "-c", f"cp '{f16}' '{cp_out}' && sync '{cp_out}'"])
            cp_walls.append(w)
        child([ck, "verify", f16, out])
        rows.append((f"GGUF F16 -> safetensors F16 ({os.path.getsize(f16) / MiB:.0f} MiB)",
                     median(ck_walls), f"cp + fsync {median(cp_walls):.2f} s",
                     median(cp_walls) / median(ck_walls), max(rss)))
    print()
    print("| job | ckptkit | reference | reference / ckptkit | ckptkit peak RSS |")
    print("|---|---|---|---|---|")
    for job, ckw, ref, ratio, rss in rows:
        print(f"| {job} | {ckw:.2f} s | {ref} | {ratio:.1f}x | {rss / 1024:.0f} MiB |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
