#!/usr/bin/env python3
"""GGUF benchmarks: ckptkit's quantisers against gguf-py, and GGUF conversion against cp.

    build/venv/bin/python bench/gguf_bench.py --ckptkit build/ckptkit [--size 1GiB] [--runs 3]

Needs numpy and gguf (gguf-py, llama.cpp's package: the pinned build/venv has 0.19).
Generates an LLM-like float32 model of --size as safetensors (2-D weights of 4096 x N
plus a few 1-D norms), then, median of --runs runs each, page cache dropped for the
input before every run (posix_fadvise DONTNEED):

  quantise Q8_0 / Q4_0   `ckptkit convert model.safetensors out.gguf --dtype q8_0`,
                         the whole job (read, quantise on two threads, write, fsync),
                         against gguf.quants.quantize on the same arrays already in
                         memory (no reading, no writing: gguf-py's best case)
  encode only            bench/quant_speed.c (cki_ggml_quant, data in memory, output
                         buffer already touched) against gguf.quants.quantize on the
                         same arrays: one thread, CPU time against CPU time; and two
                         threads (as a conversion runs), wall time against gguf-py's
                         wall time
  whole convert, warm    the same convert with the input left in the page cache
  whole convert, CPU     the (cold) convert's user + system CPU time (all threads, the
                         reading, writing and fsync included) against gguf-py's CPU time
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


SPAWN = None


def build_tools(work, ck):
    """bench/spawn.c (peak RSS of the child alone: Linux carries ru_maxrss across fork,
    so a child of this Python process would report Python's) and bench/quant_speed.c."""
    global SPAWN
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    cc = os.environ.get("CC", "cc")
    SPAWN = os.path.join(work, "spawn")
    subprocess.run([cc, "-O2", "-o", SPAWN, os.path.join(here, "spawn.c")], check=True)
    qs = os.path.join(work, "quant_speed")
    lib = os.path.join(os.path.dirname(ck), "libckptkit.a")
    subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-O2", "-I" + os.path.join(root, "include"),
                    "-I" + os.path.join(root, "src"), os.path.join(here, "quant_speed.c"), lib,
                    "-lz", "-lm", "-o", qs], check=True)
    return qs


def child(argv, cpu=None):
    """(wall seconds, peak RSS KiB) of one child process; its user + system CPU
    seconds are appended to CPU when given."""
    err = os.path.join(os.path.dirname(SPAWN), "child.err")
    r = subprocess.run([SPAWN, "/dev/null", err] + argv, stdout=subprocess.PIPE, text=True)
    wall_ns, rss, utime_us, stime_us, status = (int(v) for v in r.stdout.split())
    if cpu is not None:
        cpu.append((utime_us + stime_us) / 1e6)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(argv)}: {open(err).read()}")
    return wall_ns / 1e9, rss


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
        qs = build_tools(work, ck)
        src = os.path.join(work, "model.safetensors")
        tensors = model(size)
        write_safetensors(src, tensors)
        n_params = sum(t.size for t in tensors.values())
        print(f"model: {len(tensors)} tensors, {n_params * 4 / MiB:.0f} MiB float32")
        for qt in ("Q8_0", "Q4_0"):
            out = os.path.join(work, f"{qt}.gguf")
            ck_walls, rss, ck_cpus = [], [], []
            for _ in range(a.runs):
                if os.path.exists(out):
                    os.unlink(out)
                evict(src)
                w, r = child([ck, "convert", src, out, "--dtype", qt.lower(), "-q"], ck_cpus)
                ck_walls.append(w)
                rss.append(r)
            warm_walls = []  # the input already in the page cache: no disk read
            for _ in range(a.runs):
                os.unlink(out)
                warm_walls.append(child([ck, "convert", src, out, "--dtype", qt.lower(), "-q"])[0])
            py_walls = []
            for _ in range(a.runs):
                t0 = time.perf_counter()
                ref = {k: quantize(v, T[qt]) for k, v in tensors.items() if v.ndim == 2}
                py_walls.append(time.perf_counter() - t0)
            # the encoders alone, CPU time against CPU time, same data in memory
            flat = os.path.join(work, "flat.f32")
            with open(flat, "wb") as f:
                for k, v in tensors.items():
                    if v.ndim == 2:
                        f.write(v.tobytes())
            def speed(threads):
                out = subprocess.run([qs, qt, flat, flat + ".q", str(threads)], check=True,
                                     capture_output=True, text=True).stdout.split()
                return float(out[0]), float(out[1])
            ck_cpu = median([speed(1)[0] for _ in range(a.runs)])
            ck_wall2 = median([speed(2)[1] for _ in range(a.runs)])
            py_cpu = []
            for _ in range(a.runs):
                t0 = time.process_time()
                for k, v in tensors.items():
                    if v.ndim == 2:
                        quantize(v, T[qt])
                py_cpu.append(time.process_time() - t0)
            os.unlink(flat)
            os.unlink(flat + ".q")
            rows.append((f"encode {qt} only (encoder alone), one thread, CPU time", ck_cpu,
                         f"gguf.quants.quantize {median(py_cpu):.2f} s CPU",
                         median(py_cpu) / ck_cpu, 0))
            rows.append((f"encode {qt} only (encoder alone), two threads, wall", ck_wall2,
                         f"gguf.quants.quantize {median(py_walls):.2f} s",
                         median(py_walls) / ck_wall2, 0))
            r = GGUFReader(out)
            for t in r.tensors:
                if t.name in ref:
                    same = np.array_equal(np.asarray(t.data).reshape(-1), ref[t.name].reshape(-1))
                    if not same:
                        raise SystemExit(f"{qt}: tensor {t.name} differs from gguf-py")
            del ref, r
            rows.append((f"quantise {qt} ({n_params * 4 / MiB:.0f} MiB F32), whole convert, wall",
                         median(ck_walls), f"gguf.quants.quantize {median(py_walls):.2f} s "
                         "(in memory, no i/o)", median(py_walls) / median(ck_walls), max(rss)))
            rows.append((f"quantise {qt}, whole convert, input in the page cache, wall",
                         median(warm_walls), f"gguf.quants.quantize {median(py_walls):.2f} s "
                         "(in memory, no i/o)", median(py_walls) / median(warm_walls), 0))
            rows.append((f"quantise {qt}, whole convert, CPU time (user + sys, all threads)",
                         median(ck_cpus), f"gguf.quants.quantize {median(py_cpu):.2f} s CPU",
                         median(py_cpu) / median(ck_cpus), 0))
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
        mem = f"{rss / 1024:.0f} MiB" if rss else "-"
        print(f"| {job} | {ckw:.3f} s | {ref} | {ratio:.1f}x | {mem} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
