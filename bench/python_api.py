#!/usr/bin/env python3
"""Benchmarks of the Python package against the loaders people use today.

    build/venv/bin/python bench/python_api.py [--size 1GiB] [--runs 3] [--dir /tmp/x]

Jobs (each contender runs in a fresh interpreter; inputs are in the page cache,
so this measures the loaders, not the disk):
  safetensors-torch  ckptkit.torch.load_file vs safetensors.torch.load_file
  safetensors-numpy  ckptkit.numpy.load_file vs safetensors.numpy.load_file
  pth-state-dict     ckptkit.torch.load vs torch.load(weights_only=True) and
                     torch.load(mmap=True) on a torch.save'd state dict
  10k-small          ckptkit.torch.load_file vs safetensors.torch.load_file on
                     a file of 10,000 tensors of 64 floats
Printed: median wall time of the load call, the RSS it added, and the ratios.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

CONTENDERS = {
    "ck-torch": "import ckptkit.torch as m; r = m.load_file(P)",
    "st-torch": "import safetensors.torch as m; r = m.load_file(P)",
    "ck-numpy": "import ckptkit.numpy as m; r = m.load_file(P)",
    "st-numpy": "import safetensors.numpy as m; r = m.load_file(P)",
    "ck-load": "import ckptkit.torch as m; r = m.load(P)",
    "torch-wo": "import torch; r = torch.load(P, weights_only=True)",
    "torch-mmap": "import torch; r = torch.load(P, weights_only=True, mmap=True)",
}

RUNNER = textwrap.dedent("""
    import os, sys, time
    import numpy, torch, safetensors.torch, safetensors.numpy, ckptkit.torch, ckptkit.numpy
    P = sys.argv[1]
    def rss():
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    r0 = rss(); t0 = time.perf_counter()
    {stmt}
    t1 = time.perf_counter(); r1 = rss()
    n = len(r)
    print(t1 - t0, r1 - r0, n)
""")


def parse_size(s):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    s = s.lower().replace("ib", "").replace("b", "")
    return int(float(s[:-1]) * units[s[-1]]) if s[-1] in units else int(s)


def make_inputs(d, size):
    import torch
    import safetensors.torch as st
    g = torch.Generator().manual_seed(0)
    n = 256
    per = size // n // 4
    sd = {f"layer{i}.weight": torch.randn(per, generator=g) for i in range(n)}
    big_st = os.path.join(d, "big.safetensors")
    st.save_file(sd, big_st)
    big_pt = os.path.join(d, "big.pth")
    torch.save(sd, big_pt)
    small = {f"t{i}": torch.randn(64, generator=g) for i in range(10000)}
    small_st = os.path.join(d, "small.safetensors")
    st.save_file(small, small_st)
    for p in (big_st, big_pt, small_st):  # warm the page cache
        with open(p, "rb") as f:
            while f.read(1 << 24):
                pass
    return big_st, big_pt, small_st


def run(name, path, runs):
    times, rsss = [], []
    for _ in range(runs):
        code = RUNNER.format(stmt=CONTENDERS[name])
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                             check=True).stdout.split()
        times.append(float(out[0]))
        rsss.append(int(out[1]))
    return statistics.median(times), statistics.median(rsss)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1GiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    size = parse_size(a.size)
    with tempfile.TemporaryDirectory(dir=a.dir, prefix="ckbench-") as d:
        big_st, big_pt, small_st = make_inputs(d, size)
        jobs = [
            ("safetensors-torch", big_st, ["ck-torch", "st-torch"]),
            ("safetensors-numpy", big_st, ["ck-numpy", "st-numpy"]),
            ("pth-state-dict", big_pt, ["ck-load", "torch-wo", "torch-mmap"]),
            ("10k-small", small_st, ["ck-torch", "st-torch"]),
        ]
        print(f"| job | contender | wall s (median of {a.runs}) | RSS added MiB | ratio ck/this |")
        print("|---|---|---|---|---|")
        for job, path, names in jobs:
            res = {n: run(n, path, a.runs) for n in names}
            ck = res[names[0]][0]
            for n in names:
                t, r = res[n]
                print(f"| {job} | {n} | {t:.4f} | {r / 2**20:.1f} | {ck / t:.2f} |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
