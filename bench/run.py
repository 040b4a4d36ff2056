#!/usr/bin/python3
"""ckptkit benchmarks: ckptkit against the PyTorch way and against `cp`.

    /usr/bin/python3 bench/run.py --ckptkit build/ckptkit [--size 1GiB] [--runs 3]
        [--cache cold|drop|warm] [--scaling auto|on|off] [--markdown FILE]

Generates an SD-like checkpoint of --size (about 1,100 float32 tensors) as a
torch zip, as safetensors and as a legacy (pre-1.6) torch file, plus a torch
file of 100,000 tiny tensors, in a temporary folder that is removed at the end.
Then, for each job, it runs three contenders as child processes and takes the
median wall time and the peak RSS (ru_maxrss from wait4) of --runs runs:

  ckptkit   the CLI under test
  PyTorch   bench/pytorch_way.py: torch.load / a pure-Python safetensors
            writer and reader / torch.save / .half() (see that file)
  cp        `cp IN OUT`, the floor for jobs that read and write the whole file
            (plus `cp IN OUT && sync OUT` for reference: ckptkit fsyncs its
            output, cp does not)

Before every timed run the previous output is deleted, dirty pages are synced
and the input is made cold (--cache cold: posix_fadvise DONTNEED on the input
files, checked with mincore; --cache drop: echo 1 > /proc/sys/vm/drop_caches;
--cache warm: read the inputs once). Nothing of that is timed.

Each ckptkit output is checked against its input (bench/check.py) so a fast
wrong answer cannot pass. A --scaling run converts the same model at 256 MiB
and 2 GiB and compares ckptkit's peak RSS. Targets are printed as PASS/MISS;
the exit status is 0 whatever they say, 1 only if a contender failed.
"""
import argparse
import ctypes
import ctypes.util
import mmap
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable or "/usr/bin/python3"
MiB = 1 << 20
GiB = 1 << 30

# --------------------------------------------------------------------------- sizes


def parse_size(s):
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    low = s.strip().lower().rstrip("b").rstrip("i")
    if low and low[-1] in units:
        return int(float(low[:-1]) * units[low[-1]])
    return int(low)


def fmt_size(n):
    for unit, k in (("GiB", GiB), ("MiB", MiB), ("KiB", 1024)):
        if n >= k:
            v = n / k
            return ("%.0f %s" if v == int(v) else "%.1f %s") % (v, unit)
    return "%d B" % n


def fmt_time(s):
    if s is None:
        return "-"
    if s < 1:
        return "%.1f ms" % (s * 1000)
    return "%.2f s" % s


def fmt_rss(kib):
    if kib is None:
        return "-"
    return "%.1f MiB" % (kib / 1024.0)


# --------------------------------------------------------------------------- machine


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = set()
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    mem = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpu": cpu,
        "simd": " ".join(x for x in ("sse4_2", "avx2", "f16c", "avx512f") if x in flags),
        "nproc": os.cpu_count(),
        "mem": mem,
        "kernel": platform.release(),
    }


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def filesystem_of(path):
    """(device, mount point, fs type) holding PATH, from /proc/mounts."""
    path = os.path.realpath(path)
    best = ("?", "/", "?")
    with open("/proc/mounts") as f:
        for line in f:
            dev, mnt, fstype = line.split()[:3]
            mnt = mnt.replace("\\040", " ")
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and \
                    len(mnt) >= len(best[1]):
                best = (dev, mnt, fstype)
    return best


def disk_kind(dev):
    name = os.path.basename(dev)
    try:
        with open("/sys/class/block/%s/queue/rotational" % name) as f:
            return "rotational" if f.read().strip() == "1" else "non-rotational"
    except OSError:
        return "?"


# --------------------------------------------------------------------------- page cache

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_libc.mincore.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long)
_libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)


def resident_fraction(path):
    """Fraction of PATH's pages in the page cache (mincore on a fresh mapping),
    or None if it cannot be told."""
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        p = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if p is None or p == ctypes.c_void_p(-1).value:
            return None
        try:
            if _libc.mincore(p, size, vec) != 0:
                return None
        finally:
            _libc.munmap(p, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec) / float(pages)


def evict(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path):
    with open(path, "rb", buffering=0) as f:
        while f.read(8 * MiB):
            pass


def drop_caches():
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("1\n")
        return True
    except OSError:
        return False


class Cache:
    """Puts the inputs in the same page-cache state before every timed run."""

    def __init__(self, mode):
        self.mode = mode
        self.note = ""

    def setup(self, probe_file):
        os.sync()
        if self.mode == "drop":
            if not drop_caches():
                self.mode = "warm"
                self.note = ("writing /proc/sys/vm/drop_caches is not permitted here, so "
                             "inputs are warmed (read once) before every run instead")
            else:
                self.note = ("page cache dropped (sync; echo 1 > /proc/sys/vm/drop_caches) "
                             "before every run: inputs, libraries and binaries start cold")
        if self.mode == "cold":
            warm(probe_file)
            evict(probe_file)
            r = resident_fraction(probe_file)
            if r is None or r > 0.05:
                self.mode = "warm"
                self.note = ("posix_fadvise(DONTNEED) left %s of the input cached, so inputs "
                             "are warmed (read once) before every run instead"
                             % ("?" if r is None else "%.0f%%" % (100 * r)))
            else:
                self.note = ("inputs evicted from the page cache (sync + posix_fadvise "
                             "DONTNEED, checked with mincore) before every run: every "
                             "contender reads its input from disk; programs and libraries "
                             "stay cached")
        if self.mode == "warm" and not self.note:
            self.note = "inputs read once before every run: every contender reads from RAM"
        return self.note

    def prepare(self, inputs, mode=None):
        os.sync()
        mode = mode or self.mode
        if mode == "drop":
            drop_caches()
        elif mode == "cold":
            for p in inputs:
                evict(p)
        else:
            for p in inputs:
                warm(p)


# --------------------------------------------------------------------------- children


class Failed(Exception):
    pass


SPAWN = None  # the compiled bench/spawn.c


def build_spawn(work):
    """Compiles bench/spawn.c (see there why a C launcher) into WORK."""
    global SPAWN
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise Failed("no C compiler (cc) to build bench/spawn.c")
    exe = os.path.join(work, "spawn")
    r = subprocess.run([cc, "-O2", "-o", exe, os.path.join(HERE, "spawn.c")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        raise Failed("cannot build bench/spawn.c: %s" % r.stdout.strip())
    SPAWN = exe


def run_child(argv, stdout_path, stderr_path):
    """Runs ARGV through the launcher; returns (wall s, peak RSS KiB, CPU s, exit code)."""
    r = subprocess.run([SPAWN, stdout_path, stderr_path] + argv, stdout=subprocess.PIPE,
                       stdin=subprocess.DEVNULL, text=True)
    fields = r.stdout.split()
    if r.returncode != 0 or len(fields) != 5:
        raise Failed("launcher failed on %s" % " ".join(argv))
    wall_ns, rss, ut, stt, status = (int(x) for x in fields)
    return wall_ns / 1e9, rss, (ut + stt) / 1e6, os.waitstatus_to_exitcode(status)


def tail(path, n=3):
    try:
        with open(path, errors="replace") as f:
            lines = f.read().strip().splitlines()
        return " | ".join(lines[-n:])
    except OSError:
        return ""


class Result:
    def __init__(self):
        self.walls = []
        self.rss = []
        self.cpus = []
        self.error = None

    @property
    def wall(self):
        return statistics.median(self.walls) if self.walls and not self.error else None

    @property
    def cpu(self):
        return statistics.median(self.cpus) if self.cpus and not self.error else None

    @property
    def peak(self):
        return max(self.rss) if self.rss and not self.error else None


def measure(name, argv, inputs, outputs, cache, work, res, mode=None, keep=False):
    """One timed run of ARGV into RES (unless it already failed); KEEP leaves
    its outputs in place (for the check)."""
    if res.error:
        return
    for o in outputs:
        if os.path.exists(o):
            os.unlink(o)
    cache.prepare(inputs, mode)
    so = os.path.join(work, "%s.stdout" % name)
    se = os.path.join(work, "%s.stderr" % name)
    wall, rss, cpu, code = run_child(argv, so, se)
    # delete the output now, not before the next run: on a file system mounted
    # with -o discard, freeing 1 GiB of blocks keeps the disk busy for a while
    if not keep:
        for o in outputs:
            if os.path.exists(o):
                os.unlink(o)
    os.sync()
    if code != 0:
        res.error = "exit %d: %s" % (code, tail(se) or "(no message)")
        return
    res.walls.append(wall)
    res.rss.append(rss)
    res.cpus.append(cpu)


# --------------------------------------------------------------------------- jobs


def jobs(ck, files, out):
    """(key, title, inputs, {contender: (argv, outputs)}, check) per job."""
    pw = [PY, os.path.join(HERE, "pytorch_way.py")]
    zp, st, lg, tiny = files["zip"], files["st"], files["legacy"], files["tiny"]

    def cp(src):
        dst = os.path.join(out, "cp.out")
        return {"cp": (["cp", src, dst], [dst]),
                "cp+fsync": (["sh", "-c", 'cp "$1" "$2" && sync "$2"', "sh", src, dst], [dst])}

    def o(name):
        return os.path.join(out, name)

    j = []
    d = {"ckptkit": ([ck, "convert", zp, o("ck.safetensors"), "-q"], [o("ck.safetensors")]),
         "PyTorch": (pw + ["to-safetensors", zp, o("pt.safetensors")], [o("pt.safetensors")])}
    d.update(cp(zp))
    j.append(("zip2st", "torch zip -> safetensors", [zp], d, (zp, o("ck.safetensors"), "")))
    d = {"ckptkit": ([ck, "convert", st, o("ck.pth"), "-q"], [o("ck.pth")]),
         "PyTorch": (pw + ["st-to-pth", st, o("pt.pth")], [o("pt.pth")])}
    d.update(cp(st))
    j.append(("st2pth", "safetensors -> pth", [st], d, (st, o("ck.pth"), "")))
    d = {"ckptkit": ([ck, "convert", st, o("ck16.safetensors"), "--dtype", "f16", "-q"],
                     [o("ck16.safetensors")]),
         "PyTorch": (pw + ["st-cast-f16", st, o("pt16.safetensors")], [o("pt16.safetensors")])}
    d.update(cp(st))
    j.append(("f16", "f32 -> f16 (safetensors)", [st], d, (st, o("ck16.safetensors"), "half")))
    d = {"ckptkit": ([ck, "convert", lg, o("ckl.safetensors"), "-q"], [o("ckl.safetensors")]),
         "PyTorch": (pw + ["to-safetensors", lg, o("ptl.safetensors")], [o("ptl.safetensors")])}
    d.update(cp(lg))
    j.append(("legacy2st", "legacy torch -> safetensors", [lg], d,
              (lg, o("ckl.safetensors"), "")))
    d = {"ckptkit": ([ck, "info", zp], []), "PyTorch": (pw + ["info", zp], [])}
    j.append(("info", "info (torch zip, %s)" % fmt_size(files["size"]), [zp], d, None))
    j.append(("info-warm", "info (torch zip, %s), cached" % fmt_size(files["size"]), [zp], d,
              None))
    d = {"ckptkit": ([ck, "ls", tiny], []), "PyTorch": (pw + ["ls", tiny], [])}
    j.append(("ls", "ls (100k tiny tensors)", [tiny], d, ("ls", tiny, "")))
    j.append(("ls-warm", "ls (100k tiny tensors), cached", [tiny], d, ("ls", tiny, "")))
    return j


# jobs timed with their input in the page cache whatever --cache says
CACHED_JOBS = ("info-warm", "ls-warm")


ORDER = ("cp", "cp+fsync", "ckptkit", "PyTorch")
SIZE_OF_RUN = [0]  # model size of the main run, for the target texts


def run_jobs(ck, files, work, cache, runs, only, check, log):
    results = {}
    outdir = os.path.join(work, "out")
    os.makedirs(outdir, exist_ok=True)
    for key, title, inputs, contenders, chk in jobs(ck, files, outdir):
        if only and key not in only:
            continue
        n = runs if not key.startswith("info") else max(runs, 5)
        mode = "warm" if key in CACHED_JOBS else None
        res = {c: Result() for c in contenders}
        log("  %-32s" % title, end="")
        for r in range(n):
            # rotate the order every run so no contender always goes first
            for c in ORDER[r % len(ORDER):] + ORDER[:r % len(ORDER)]:
                if c in contenders:
                    argv, outputs = contenders[c]
                    measure("%s-%s" % (key, c.replace("+", "_")), argv, inputs, outputs, cache,
                            work, res[c], mode, keep=(c == "ckptkit" and r == n - 1))
            log(".", end="")
        if check and not res["ckptkit"].error and chk:
            if chk[0] == "ls":
                so = os.path.join(work, "%s-ckptkit.stdout" % key)
                with open(so) as f:
                    lines = sum(1 for _ in f)
                if lines < 100000:
                    res["ckptkit"].error = "ls printed %d lines for 100000 tensors" % lines
            else:
                se = os.path.join(work, "check.stderr")
                argv = [PY, os.path.join(HERE, "check.py"), chk[0], chk[1]]
                if chk[2]:
                    argv.append("--" + chk[2])
                code = run_child(argv, os.path.join(work, "check.stdout"), se)[3]
                if code != 0:
                    res["ckptkit"].error = "wrong output: %s" % tail(se)
        for c in contenders:
            for o in contenders[c][1]:
                if os.path.exists(o):
                    os.unlink(o)
        log(" done")
        for c in ORDER:
            if c in res and res[c].error:
                log("    %s failed: %s" % (c, res[c].error))
            elif c in res:
                log("    %-9s wall %s" % (c, " ".join(fmt_time(x) for x in res[c].walls)))
        results[key] = (title, res)
    return results


# --------------------------------------------------------------------------- report


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ratio(r):
    return "-" if r is None else "%.2f" % r


def table(results):
    head = ["job", "cp", "cp+fsync", "ckptkit", "PyTorch", "ck/cp", "ck/(cp+fsync)",
            "ck/PyTorch", "ckptkit RSS", "PyTorch RSS", "cp RSS", "ckptkit CPU", "cp CPU"]
    rows = []
    for key, (title, res) in results.items():
        def w(c):
            return res[c].wall if c in res else None

        def r(c):
            return res[c].peak if c in res else None

        def cell(c):
            if c not in res:
                return "-"
            if res[c].error:
                return "FAILED"
            return fmt_time(w(c))
        rows.append([title, cell("cp"), cell("cp+fsync"), cell("ckptkit"), cell("PyTorch"),
                     fmt_ratio(ratio(w("ckptkit"), w("cp"))),
                     fmt_ratio(ratio(w("ckptkit"), w("cp+fsync"))),
                     fmt_ratio(ratio(w("ckptkit"), w("PyTorch"))),
                     fmt_rss(r("ckptkit")), fmt_rss(r("PyTorch")), fmt_rss(r("cp")),
                     fmt_time(res["ckptkit"].cpu), fmt_time(res["cp"].cpu if "cp" in res
                                                            else None)])
    return head, rows


def targets(results, scaling):
    """[(target text, measured text, PASS/MISS/n/a)]."""
    out = []

    def get(key):
        return results.get(key, (None, {}))[1]

    for key, name in (("zip2st", "torch zip -> safetensors"), ("st2pth", "safetensors -> pth")):
        res = get(key)
        if not res:
            continue
        ck = res["ckptkit"]
        cp = res["cp"].wall
        pt = res["PyTorch"].wall
        r1 = ratio(ck.wall, cp)
        r2 = ratio(ck.wall, pt)
        out.append(("%s: wall <= 1.5 x cp" % name, fmt_ratio(r1) + " x",
                    "n/a" if r1 is None else ("PASS" if r1 <= 1.5 else "MISS")))
        out.append(("%s: wall <= 0.2 x PyTorch" % name, fmt_ratio(r2) + " x",
                    "n/a" if r2 is None else ("PASS" if r2 <= 0.2 else "MISS")))
        out.append(("%s: peak RSS <= 64 MiB" % name, fmt_rss(ck.peak),
                    "n/a" if ck.peak is None else ("PASS" if ck.peak <= 64 * 1024 else "MISS")))
    res = get("f16")
    if res:
        r1 = ratio(res["ckptkit"].wall, res["cp"].wall)
        out.append(("f32 -> f16: wall <= 2 x cp of the input", fmt_ratio(r1) + " x",
                    "n/a" if r1 is None else ("PASS" if r1 <= 2 else "MISS")))
    for key, how in (("info", "input cold"), ("info-warm", "input cached")):
        res = get(key)
        if res:
            wv = res["ckptkit"].wall
            out.append(("info of the %s torch zip <= 20 ms (%s)"
                        % (fmt_size(SIZE_OF_RUN[0]), how), fmt_time(wv),
                        "n/a" if wv is None else ("PASS" if wv <= 0.020 else "MISS")))
    for key, how in (("ls", "input cold"), ("ls-warm", "input cached")):
        res = get(key)
        if res:
            wv = res["ckptkit"].wall
            out.append(("ls of the 100k-tensor file <= 0.5 s (%s)" % how, fmt_time(wv),
                        "n/a" if wv is None else ("PASS" if wv <= 0.5 else "MISS")))
    if scaling:
        for key, title, small, big in scaling["rows"]:
            if small is None or big is None:
                out.append(("%s: RSS growth %s -> %s < 16 MiB" % (title, scaling["small"],
                                                                   scaling["big"]), "-", "n/a"))
                continue
            g = big - small
            out.append(("%s: RSS growth %s -> %s < 16 MiB" % (title, scaling["small"],
                                                               scaling["big"]),
                        "%+.1f MiB" % (g / 1024.0), "PASS" if g < 16 * 1024 else "MISS"))
    return out


def render_plain(head, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(head, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    return "\n".join(lines)


def render_md(head, rows):
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(x) for x in r) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- generation


def generate(kind, size, path, work, log, legacy=False):
    argv = [PY, os.path.join(HERE, "gen.py"), kind, "--out", path]
    if kind == "sd":
        argv += ["--size", str(size)]
    if legacy:
        argv.append("--legacy")
    t0 = time.time()
    code = run_child(argv, os.path.join(work, "gen.stdout"), os.path.join(work, "gen.stderr"))[3]
    if code != 0:
        raise Failed("generating %s failed: %s" % (path, tail(os.path.join(work, "gen.stderr"))))
    log("  generated %-22s %10s in %.1f s" % (os.path.basename(path),
                                               fmt_size(os.path.getsize(path)), time.time() - t0))


def generate_sd_set(size, work, log, tag):
    files = {"size": size}
    files["zip"] = os.path.join(work, "sd-%s.pt" % tag)
    files["st"] = os.path.join(work, "sd-%s.safetensors" % tag)
    files["legacy"] = os.path.join(work, "sd-%s-legacy.pt" % tag)
    generate("sd", size, files["zip"], work, log)
    generate("sd", size, files["st"], work, log)
    generate("sd", size, files["legacy"], work, log, legacy=True)
    return files


def main_space_need(size):
    # three inputs, up to two outputs of the input's size alive at once, the
    # 100k-tensor file, and 1 GiB to spare
    return int(3 * size * 1.03 + 2 * size * 1.03 + 64 * MiB + GiB)


def scaling_space_need(big):
    return int(3 * big * 1.03 + big * 1.03 + GiB)


def run_scaling(ck, work, cache, log, small, big):
    """Peak RSS of ckptkit's converts at SMALL and BIG model sizes."""
    keys = (("zip2st", "torch zip -> safetensors"), ("st2pth", "safetensors -> pth"),
            ("f16", "f32 -> f16 (safetensors)"), ("legacy2st", "legacy torch -> safetensors"))
    rss = {k: [] for k, _ in keys}
    walls = {k: [] for k, _ in keys}
    failed = False
    for size in (small, big):
        log("scaling: %s model" % fmt_size(size))
        files = generate_sd_set(size, work, log, "s%d" % size)
        files["tiny"] = None
        outdir = os.path.join(work, "out")
        os.makedirs(outdir, exist_ok=True)
        for key, title, inputs, contenders, _ in jobs(ck, files, outdir):
            if key not in rss:
                continue
            res = Result()
            measure("scale-%s" % key, contenders["ckptkit"][0], inputs,
                    contenders["ckptkit"][1], cache, work, res)
            for o in contenders["ckptkit"][1]:
                if os.path.exists(o):
                    os.unlink(o)
            if res.error:
                log("    ckptkit failed on %s: %s" % (title, res.error))
                failed = True
            rss[key].append(res.peak)
            walls[key].append(res.wall)
            log("    %-30s %10s  peak RSS %s" % (title, fmt_time(res.wall), fmt_rss(res.peak)))
        for k in ("zip", "st", "legacy"):
            os.unlink(files[k])
    rows = [(k, t, rss[k][0], rss[k][1]) for k, t in keys]
    return {"small": fmt_size(small), "big": fmt_size(big), "rows": rows, "walls": walls,
            "rss": rss, "keys": keys}, failed


def scaling_table(sc):
    head = ["convert", "wall @ " + sc["small"], "peak RSS @ " + sc["small"],
            "wall @ " + sc["big"], "peak RSS @ " + sc["big"], "growth"]
    rows = []
    for k, t in sc["keys"]:
        a, b = sc["rss"][k]
        wa, wb = sc["walls"][k]
        rows.append([t, fmt_time(wa), fmt_rss(a), fmt_time(wb), fmt_rss(b),
                     "-" if a is None or b is None else "%+.1f MiB" % ((b - a) / 1024.0)])
    return head, rows


# --------------------------------------------------------------------------- main


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckptkit", default="build/ckptkit")
    ap.add_argument("--size", default="1GiB", help="model size (default 1GiB)")
    ap.add_argument("--runs", type=int, default=3, help="runs per contender (median)")
    ap.add_argument("--cache", choices=("cold", "drop", "warm"), default="cold")
    ap.add_argument("--scaling", choices=("auto", "on", "off"), default="auto",
                    help="also compare peak RSS at 256 MiB and 2 GiB (auto: if the disk "
                         "has room)")
    ap.add_argument("--scaling-sizes", default="256MiB,2GiB")
    ap.add_argument("--only", default="", help="comma-separated jobs: zip2st,st2pth,f16,"
                                               "legacy2st,info,info-warm,ls,ls-warm")
    ap.add_argument("--no-check", action="store_true", help="skip checking ckptkit's outputs")
    ap.add_argument("--tmpdir", default=None, help="where to generate (default: $TMPDIR)")
    ap.add_argument("--markdown", default=None, help="also write the results as Markdown")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    a = ap.parse_args()

    def log(*x, end="\n"):
        print(*x, end=end, flush=True)

    ck = os.path.abspath(a.ckptkit)
    if not os.access(ck, os.X_OK):
        log("bench: %s is not an executable; run make first" % ck)
        return 1
    size = parse_size(a.size)
    only = set(x for x in a.only.split(",") if x)
    base = a.tmpdir or tempfile.gettempdir()
    work = tempfile.mkdtemp(prefix="ckptkit-bench-", dir=base)
    m = machine()
    dev, mnt, fstype = filesystem_of(work)
    free = shutil.disk_usage(work).free
    log("ckptkit benchmark")
    log("machine: %s (%s), %d cores, %s RAM, Linux %s" % (m["cpu"], m["simd"], m["nproc"],
                                                         fmt_size(m["mem"]), m["kernel"]))
    log("disk: %s on %s (%s, %s), %s free; work folder %s" % (
        mnt, dev, fstype, disk_kind(dev), fmt_size(free), work))
    load_start = loadavg()
    log("load average at start: %s" % load_start)
    need = main_space_need(size)
    while need > free and size > 64 * MiB:
        size //= 2
        need = main_space_need(size)
    if need > free:
        log("bench: only %s free in %s: not enough for even a 64 MiB model; skipped"
            % (fmt_size(free), base))
        shutil.rmtree(work, ignore_errors=True)
        return 0
    if size != parse_size(a.size):
        log("bench: only %s free: model shrunk from %s to %s" % (fmt_size(free), a.size,
                                                                   fmt_size(size)))
    failed = False
    SIZE_OF_RUN[0] = size
    results, sc, cache_note = {}, None, ""
    try:
        build_spawn(work)
        log("generating inputs (%s SD-like model, 1,146 float32 tensors)" % fmt_size(size))
        files = generate_sd_set(size, work, log, "main")
        files["tiny"] = os.path.join(work, "tiny100k.pt")
        if not only or "ls" in only or "ls-warm" in only:
            generate("tiny", 0, files["tiny"], work, log)
        cache = Cache(a.cache)
        cache_note = cache.setup(files["zip"])
        log("cache: " + cache_note)
        log("timing (%d runs each, median; contenders interleaved, order rotated every run)"
            % a.runs)
        results = run_jobs(ck, files, work, cache, a.runs, only, not a.no_check, log)
        failed = any(r.error for _, res in results.values() for r in res.values())
        for k in ("zip", "st", "legacy", "tiny"):
            if files.get(k) and os.path.exists(files[k]):
                os.unlink(files[k])
        small, big = (parse_size(x) for x in a.scaling_sizes.split(","))
        if a.scaling != "off" and not only:
            free = shutil.disk_usage(work).free
            if free < scaling_space_need(big):
                msg = ("scaling check skipped: it needs %s free, %s is free" %
                       (fmt_size(scaling_space_need(big)), fmt_size(free)))
                log(msg)
                if a.scaling == "on":
                    failed = True
            else:
                sc, sfail = run_scaling(ck, work, cache, log, small, big)
                failed = failed or sfail
    except Failed as e:
        log("bench: %s" % e)
        failed = True
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    head, rows = table(results)
    load_end = loadavg()
    log("")
    log("load average at start %s, at end %s (other work on the machine slows every "
        "contender)" % (load_start, load_end))
    log("results: %s model, median of %d runs, %s" % (fmt_size(size), a.runs,
                                                      "cache " + (a.cache if cache_note else "?")))
    log(render_plain(head, rows))
    if sc:
        log("")
        log("memory scaling (ckptkit convert, one run each):")
        sh, sr = scaling_table(sc)
        log(render_plain(sh, sr))
    tg = targets(results, sc)
    log("")
    log("targets:")
    for t, v, verdict in tg:
        log("  %-4s  %-62s %s" % (verdict, t, v))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write("Machine: %s (%s), %d cores (nproc), %s RAM, Linux %s; %s on %s (%s, %s).\n\n"
                    % (m["cpu"], m["simd"], m["nproc"], fmt_size(m["mem"]), m["kernel"], mnt,
                       dev, fstype, disk_kind(dev)))
            f.write("Model: %s SD-like, median of %d runs. Cache: %s. Load average at start "
                    "%s, at end %s.\n\n" % (fmt_size(size), a.runs, cache_note, load_start,
                                            load_end))
            f.write(render_md(head, rows) + "\n\n")
            if sc:
                sh, sr = scaling_table(sc)
                f.write(render_md(sh, sr) + "\n\n")
            f.write(render_md(["target", "measured", "verdict"],
                              [[t, v, verdict] for t, v, verdict in tg]) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
