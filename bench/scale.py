#!/usr/bin/python3
"""Per-tensor cost of ckptkit on files of many tiny tensors.

    bench/scale.py --ckptkit build/ckptkit [--counts 1000,10000,100000]
        [--torch-save] [--markdown FILE] [--check] [--tmpdir DIR]

For each count N it writes a safetensors file of N tiny float32 tensors
(shapes [4], [2, 3], [], [8], [1, 1, 2], [5], names like a deep model's) and
the same tensors as a PyTorch zip file (--torch-save: written by torch.save;
default: by `ckptkit convert`, which writes what torch.save writes), then runs

    info, ls, ls --json, convert (to the other format), verify (file against
    its conversion)

on both, each as a child process timed from fork to wait4, with its peak
resident memory (ru_maxrss of that process alone). Every run is warm (the
inputs were just written). It prints, per job and N: wall time, peak RSS,
time and memory per tensor, and the growth from the 10k to the 100k file
(wall time, CPU time and memory ratios; 10x the tensors should cost at most
12x). On a machine shared with other work, wall time includes waiting for a
core: CPU time (user + system) is the figure that tells the program's own
growth.

--check (used by tests/cli/t_scale.sh) runs only ls and convert at 1k and
100k and exits 1 when the marginal memory per tensor,
(RSS at 100k - RSS at 1k) / 99,000, exceeds the bounds in docs/SCALING.md.
Nothing is timed against a limit there: machines differ, memory does not.
"""
import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

# bytes per tensor, marginal (docs/SCALING.md)
BOUNDS = {
    ("safetensors", "ls"): 400,
    ("safetensors", "convert"): 900,
    ("pth", "ls"): 650,
    ("pth", "convert"): 700,
}
SHAPES = ([4], [2, 3], [], [8], [1, 1, 2], [5])


def name(i):
    return "blocks.%d.layer.%d.param_%d" % (i // 1000, (i // 10) % 100, i % 10)


def write_safetensors(path, n):
    hdr = {}
    off = 0
    for i in range(n):
        shape = SHAPES[i % len(SHAPES)]
        k = 1
        for d in shape:
            k *= d
        hdr[name(i)] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + 4 * k]}
        off += 4 * k
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        # values: a ramp, so conversions carry real data
        f.write(struct.pack("<%df" % (off // 4), *[float(j % 97) for j in range(off // 4)]))


def write_torch_save(path, n):
    code = (
        "import sys, torch\n"
        "n = int(sys.argv[2]); shapes = %r\n"
        "d = {}\n"
        "for i in range(n):\n"
        "    d['blocks.%%d.layer.%%d.param_%%d' %% (i // 1000, (i // 10) %% 100, i %% 10)] = "
        "torch.ones(shapes[i %% len(shapes)])\n"
        "torch.save(d, sys.argv[1])\n" % (SHAPES,))
    subprocess.run(["/usr/bin/python3", "-c", code, path, str(n)], check=True)


SPAWN = None  # bench/spawn.c, compiled: Linux carries peak RSS across fork and exec,
              # so a child of this (large) Python process would report Python's peak


def build_spawn(tmp):
    global SPAWN
    exe = os.path.join(tmp, "spawn")
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-o", exe,
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "spawn.c")],
                   check=True)
    SPAWN = exe


def run(cmd):
    """Wall seconds and peak RSS (bytes) of CMD alone; raises on failure."""
    errf = os.path.join(os.path.dirname(SPAWN), "err")
    r = subprocess.run([SPAWN, "/dev/null", errf] + cmd, stdout=subprocess.PIPE, check=True)
    wall_ns, rss_kib, utime_us, stime_us, status = (int(x) for x in r.stdout.split())
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        with open(errf, errors="replace") as f:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(cmd), code, f.read().strip()))
    return wall_ns / 1e9, rss_kib * 1024, (utime_us + stime_us) / 1e6


def jobs_for(ck, fmt, path, tmp, check):
    other = "pth" if fmt == "safetensors" else "safetensors"
    out = os.path.join(tmp, "out-%s.%s" % (os.path.basename(path), other))

    def convert():
        if os.path.exists(out):
            os.unlink(out)
        return [ck, "convert", path, out, "-q"]

    jobs = [("ls", lambda: [ck, "ls", path])]
    if not check:
        jobs.insert(0, ("info", lambda: [ck, "info", path]))
        jobs.append(("ls --json", lambda: [ck, "ls", "--json", path]))
    jobs.append(("convert", convert))
    if not check:
        jobs.append(("verify", lambda: [ck, "verify", path, out, "-q"]))
    return jobs


def fmt_mib(b):
    return "%.1f MiB" % (b / 1048576.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckptkit", required=True)
    ap.add_argument("--counts", default="1000,10000,100000")
    ap.add_argument("--torch-save", action="store_true")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--markdown")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--tmpdir")
    a = ap.parse_args()
    ck = os.path.abspath(a.ckptkit)
    counts = [1000, 100000] if a.check else [int(x) for x in a.counts.split(",")]
    runs = 1 if a.check else a.runs
    tmp = tempfile.mkdtemp(prefix="ckptkit-scale-", dir=a.tmpdir)
    res = {}  # (fmt, job, n) -> (wall, rss)
    work = os.path.join(tmp, "files")
    os.mkdir(work)
    build_spawn(tmp)
    try:
        for n in counts:
            st = os.path.join(work, "t%d.safetensors" % n)
            pt = os.path.join(work, "t%d.pth" % n)
            write_safetensors(st, n)
            if a.torch_save:
                write_torch_save(pt, n)
            else:
                subprocess.run([ck, "convert", st, pt, "-q"], check=True)
            for fmt, path in (("safetensors", st), ("pth", pt)):
                for job, cmd in jobs_for(ck, fmt, path, work, a.check):
                    best = None
                    for _ in range(runs):
                        wall, rss, cpu = run(cmd())
                        best = (wall, rss, cpu) if best is None else (
                            min(best[0], wall), max(best[1], rss), min(best[2], cpu))
                    res[(fmt, job, n)] = best
            for f in os.listdir(work):
                os.unlink(os.path.join(work, f))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    lines = []
    hdr = ("| format | job | tensors | wall | CPU | peak RSS | wall/tensor | CPU/tensor "
           "| RSS/tensor |")
    lines.append(hdr)
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for (fmt, job, n), (wall, rss, cpu) in sorted(res.items()):
        lines.append("| %s | %s | %d | %.3f s | %.3f s | %s | %.2f us | %.2f us | %.0f B |" % (
            fmt, job, n, wall, cpu, fmt_mib(rss), wall / n * 1e6, cpu / n * 1e6, rss / n))
    growth = []
    if 10000 in counts and 100000 in counts:
        growth.append("| format | job | wall 10k -> 100k | CPU 10k -> 100k | RSS 10k -> 100k "
                      "| marginal RSS/tensor |")
        growth.append("|---|---|---|---|---|---|")
        for (fmt, job, n), (wall, rss, cpu) in sorted(res.items()):
            if n != 100000:
                continue
            w10, r10, c10 = res[(fmt, job, 10000)]
            growth.append("| %s | %s | %.1fx | %.1fx | %.1fx | %.0f B |" % (
                fmt, job, wall / w10, cpu / max(c10, 1e-3), rss / r10, (rss - r10) / 90000.0))
    print("\n".join(lines))
    if growth:
        print()
        print("\n".join(growth))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("\n".join(lines) + "\n\n" + "\n".join(growth) + "\n")
    bad = 0
    if a.check:
        for (fmt, job), bound in sorted(BOUNDS.items()):
            lo, hi = res[(fmt, job, 1000)][1], res[(fmt, job, 100000)][1]
            per = (hi - lo) / 99000.0
            verdict = "ok" if per <= bound else "OVER"
            print("%s %s: %.0f bytes per tensor (bound %d): %s" % (fmt, job, per, bound, verdict))
            bad += per > bound
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
