#!/usr/bin/python3
"""Batch conversion: -j 2 against -j 1 on eight cached files of 64 MiB.

    bench/batch.py --ckptkit build/ckptkit [--files 8] [--size 64MiB] [--runs 3]
        [--tmpdir DIR] [--markdown FILE]

Writes FILES safetensors files of SIZE each (float32 noise in 16 tensors) in
a temporary folder, reads them once so they are cached, then times

    ckptkit convert DIR -o OUT --to pth -j N             (copy)
    ckptkit convert DIR -o OUT --to pth --dtype f16 -j N (cast)

for N = 1, 2 and the number of cores, deleting OUT before every run (not
timed) and syncing written pages first. Prints the median wall time of --runs
runs and the speed-up over -j 1. On a machine shared with other work the
ratio is what to read.
"""
import argparse
import json
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time


def parse_size(s):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    low = s.strip().lower().rstrip("b").rstrip("i")
    if low and low[-1] in units:
        return int(float(low[:-1]) * units[low[-1]])
    return int(low)


def write_file(path, size, seed):
    n = size // 4 // 16
    hdr, off = {}, 0
    for t in range(16):
        hdr["layer.%d.weight" % t] = {"dtype": "F32", "shape": [n], "data_offsets": [off, off + 4 * n]}
        off += 4 * n
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    block = struct.pack("<4096f", *[((i * 2654435761 + seed) % 1000) / 997.0 for i in range(4096)])
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        left = off
        while left:
            k = min(left, len(block))
            f.write(block[:k])
            left -= k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckptkit", required=True)
    ap.add_argument("--files", type=int, default=8)
    ap.add_argument("--size", default="64MiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tmpdir")
    ap.add_argument("--markdown")
    a = ap.parse_args()
    ck = os.path.abspath(a.ckptkit)
    size = parse_size(a.size)
    tmp = tempfile.mkdtemp(prefix="ckptkit-batch-", dir=a.tmpdir)
    need = 2 * a.files * size + (64 << 20)
    if shutil.disk_usage(tmp).free < need:
        print("batch benchmark skipped: needs %d MiB free in %s" % (need >> 20, tmp))
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    src = os.path.join(tmp, "in")
    out = os.path.join(tmp, "out")
    os.mkdir(src)
    rows = []
    try:
        for i in range(a.files):
            write_file(os.path.join(src, "m%02d.safetensors" % i), size, i)
        for name in os.listdir(src):  # cached
            with open(os.path.join(src, name), "rb") as f:
                while f.read(1 << 20):
                    pass
        cores = os.cpu_count() or 1
        for label, extra in (("copy", []), ("cast to f16", ["--dtype", "f16"])):
            base = None
            for j in sorted({1, 2, cores}):
                times = []
                for _ in range(a.runs):
                    shutil.rmtree(out, ignore_errors=True)
                    os.sync()
                    t0 = time.perf_counter()
                    subprocess.run([ck, "convert", src, "-o", out, "--to", "pth", "-q",
                                    "-j", str(j)] + extra, check=True)
                    times.append(time.perf_counter() - t0)
                med = statistics.median(times)
                base = base or med
                rows.append((label, j, med, base / med))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = ["| %d files of %s, cached | jobs | wall (median of %d) | speed-up over -j 1 |"
             % (a.files, a.size, a.runs), "|---|---|---|---|"]
    for label, j, med, sp in rows:
        lines.append("| %s | -j %d | %.2f s | %.2fx |" % (label, j, med, sp))
    print("\n".join(lines))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
