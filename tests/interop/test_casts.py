"""test_casts.py -- cki_cast against torch's Tensor.to(), bit for bit.

For every pair among F64, F32, F16 and BF16 (both directions), integers and
bool to those floats, floats to bool, in-range floats to integers and
C64 <-> C128, the test builds input elements with numpy (every F16 and BF16
code; F32/F64 specials, NaN payloads, subnormals, random bit patterns and
values at and next to rounding midpoints), converts them with torch, and
compares the bytes with what tests/interop/cast_oracle.c (compiled here
against build/libckptkit.a) writes for the same input. Each pair runs with the
SIMD loops and with CKPTKIT_NO_SIMD=1. The overflow/underflow counters the
oracle prints are checked against counts computed from torch's output.

NaN -> F16 follows torch 2.x; with torch 1.13 (the oldest lane) the NaN lanes
are compared with ckptkit's documented codes instead (f16nan.py).

torch's own NaN bits depend on its code path: contiguous F32/F64 -> BF16 is
vectorised and writes 0xFFFF, while the n % 16 tail of an F64 -> BF16 copy and
strided copies use the scalar 0x7FC0. ckptkit follows the vectorised path, so
inputs are contiguous, a multiple of 64 elements long, and torch runs on one
thread (thread chunks would add scalar tails).
"""
import os
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the system python3 has torch; another interpreter may not
    pytest.skip("torch is not installed for this interpreter", allow_module_level=True)

from f16nan import expected_f16  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N_RANDOM = 200_000

# name -> (torch dtype, numpy dtype of the same bits, element bytes)
DT = {
    "F64": (torch.float64, np.uint64),
    "F32": (torch.float32, np.uint32),
    "F16": (torch.float16, np.uint16),
    "BF16": (torch.bfloat16, np.uint16),
    "I64": (torch.int64, np.int64),
    "I32": (torch.int32, np.int32),
    "I16": (torch.int16, np.int16),
    "I8": (torch.int8, np.int8),
    "U8": (torch.uint8, np.uint8),
    "BOOL": (torch.bool, np.uint8),
    "C64": (torch.complex64, np.uint32),
    "C128": (torch.complex128, np.uint64),
}
FLOATS = ["F64", "F32", "F16", "BF16"]
INT_LIMITS = {"I64": (-2**63, 2**63 - 1), "I32": (-2**31, 2**31 - 1), "I16": (-2**15, 2**15 - 1),
              "I8": (-128, 127), "U8": (0, 255)}


def _pad64(a):
    """Pads with zeros to a multiple of 64 elements (see the module note)."""
    extra = (-len(a)) % 64
    return np.concatenate([a, np.zeros(extra, dtype=a.dtype)])


def _f32_inputs(rng):
    specials = np.array([
        0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0xFF800001,
        0x7FA00000, 0x7FFFFFFF, 0xFFFFFFFF, 0x7FC01234, 0x00000001, 0x80000001, 0x007FFFFF,
        0x00800000, 0x7F7FFFFF, 0xFF7FFFFF, 0x477FE000, 0x477FEFFF, 0x477FF000, 0x477FF001,
        0x33000000, 0x33000001, 0x33800000, 0x33C00000, 0x387FE000, 0x387FC000, 0x38800000,
        0x3F800000, 0x00008000, 0x00018000, 0x7F7F8000, 0x7F7F7FFF, 0x3F808000, 0x3F818000,
    ], dtype=np.uint32)
    rand = rng.integers(0, 2**32, N_RANDOM, dtype=np.uint64).astype(np.uint32)
    # F16 midpoints and their F32 neighbours
    h = rng.integers(0, 0x7BFF, 50_000, dtype=np.uint16)
    lo = h.view(np.float16).astype(np.float64)
    hi = (h + 1).view(np.float16).astype(np.float64)
    mid = ((lo + hi) / 2).astype(np.float32).view(np.uint32)
    sign = (rng.integers(0, 2, mid.size, dtype=np.uint32) << 31).astype(np.uint32)
    f16mids = np.concatenate([mid, mid - 1, mid + 1]) | np.tile(sign, 3)
    # BF16 midpoints and neighbours
    b = rng.integers(0, 0x7F7F, 50_000, dtype=np.uint32)
    bm = (b << 16) | 0x8000
    bf16mids = np.concatenate([bm, bm - 1, bm + 1, bm | 0x80000000])
    # around the F16 subnormal range and the overflow threshold
    small = rng.uniform(2.0**-27, 2.0**-13, 20_000).astype(np.float32).view(np.uint32)
    big = rng.uniform(60000, 70000, 5_000).astype(np.float32).view(np.uint32)
    return _pad64(np.concatenate([specials, rand, f16mids, bf16mids, small, big]))


def _f64_inputs(rng):
    specials = np.array([
        0, 0x8000000000000000, 0x7FF0000000000000, 0xFFF0000000000000, 0x7FF8000000000000,
        0xFFF8000000000000, 0x7FF0000000000001, 0x7FF4000000000000, 0x7FF8123456789ABC,
        0xFFF0000020000000, 0x0000000000000001, 0x7FEFFFFFFFFFFFFF, 0x47EFFFFFE0000000,
        0x47EFFFFFF0000000, 0x47EFFFFFEFFFFFFF, 0x36A0000000000000, 0x3690000000000000,
        0x3690000000000001, 0x3FF0020000000001, 0x3FF0100000000001, 0x40EFFE0000000000,
        0x40EFFE0000000001, 0x40EFFDFFFFFFFFFF,
    ], dtype=np.uint64)
    rand = rng.integers(0, 2**64, N_RANDOM, dtype=np.uint64)
    # F32 midpoints in F64 and their F64 neighbours
    f = rng.integers(0, 0x7F7FFFFF, 50_000, dtype=np.uint32)
    lo = f.view(np.float32).astype(np.float64)
    hi = (f + 1).view(np.float32).astype(np.float64)
    m = ((lo + hi) / 2).view(np.uint64)
    f32mids = np.concatenate([m, m - 1, m + 1])
    # values that round to an F16 or BF16 midpoint in F32 but are not one in F64
    h = rng.integers(0, 0x7BFF, 20_000, dtype=np.uint16)
    hm = (h.view(np.float16).astype(np.float64) + (h + 1).view(np.float16).astype(np.float64)) / 2
    b = rng.integers(0x0080, 0x7F7F, 20_000, dtype=np.uint32)
    bl = (b << 16).view(np.float32).astype(np.float64)
    bh = ((b + 1) << 16).view(np.float32).astype(np.float64)
    bmid = (bl + bh) / 2
    dbl = np.concatenate([hm * (1 + 2.0**-40), hm * (1 - 2.0**-40), bmid * (1 + 2.0**-40),
                          bmid * (1 - 2.0**-40)]).view(np.uint64)
    # plain doubles in the F16 range, subnormals included
    e = rng.integers(-30, 17, 50_000)
    plain = np.ldexp(rng.uniform(-2, 2, 50_000), e).view(np.uint64)
    return _pad64(np.concatenate([specials, rand, f32mids, dbl, plain]))


def _int_inputs(rng, name):
    lo, hi = INT_LIMITS[name]
    npdt = DT[name][1]
    edges = [lo, hi, 0, 1, -1, 2**24 + 1, 2**24 + 2**16 + 1, 65504, 65519, 65520, 2**53 + 1,
             -(2**53 + 1), 2**62 + 2**38 + 1]
    edges = np.array([v for v in edges if lo <= v <= hi], dtype=npdt)
    rand = rng.integers(lo, hi, N_RANDOM, dtype=npdt, endpoint=True)
    # small magnitudes too: most interesting for F16 and BF16
    small = rng.integers(max(lo, -70000), min(hi, 70000), 50_000, dtype=npdt, endpoint=True)
    return _pad64(np.concatenate([edges, rand, small]))


def _inputs(name, rng):
    if name == "F64":
        return _f64_inputs(rng)
    if name == "F32":
        return _f32_inputs(rng)
    if name in ("F16", "BF16"):
        return np.arange(65536, dtype=np.uint32).astype(np.uint16)
    if name == "BOOL":
        return _pad64(rng.integers(0, 2, 10_000, dtype=np.uint8))
    if name == "C64":
        return _pad64(_f32_inputs(rng)[: 2 * N_RANDOM])
    if name == "C128":
        return _pad64(_f64_inputs(rng)[: 2 * N_RANDOM])
    return _int_inputs(rng, name)


@np.errstate(invalid="ignore")  # widening a signalling NaN is not an error here
def _values(name, bits):
    """float64 values of raw elements (complex: components), for the counters."""
    if name == "BF16":
        return (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    if name == "F16":
        return bits.view(np.float16).astype(np.float64)
    if name in ("F32", "C64"):
        return bits.view(np.float32).astype(np.float64)
    if name in ("F64", "C128"):
        return bits.view(np.float64)
    return bits.astype(np.float64)


def _to_torch(name, bits):
    tdt, _ = DT[name]
    if name == "BOOL":
        return torch.from_numpy(bits.astype(np.bool_))
    if name in ("C64", "C128"):
        return torch.from_numpy(bits.view(np.complex64 if name == "C64" else np.complex128))
    if name in ("F16", "BF16"):
        return torch.from_numpy(bits.view(np.int16)).view(tdt)
    if name in ("F32", "F64"):
        return torch.from_numpy(bits.view(np.float32 if name == "F32" else np.float64))
    return torch.from_numpy(bits)


def _from_torch(name, t):
    npdt = DT[name][1]
    if name == "BOOL":
        return t.numpy().view(np.uint8)
    if name in ("F16", "BF16"):
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy().view(npdt)


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    ck = Path(os.environ.get("CKPTKIT", "build/ckptkit"))
    lib = (ck if ck.is_absolute() else ROOT / ck).parent / "libckptkit.a"
    if not lib.exists():
        pytest.fail(f"{lib} is missing: run make first")
    exe = tmp_path_factory.mktemp("oracle") / "cast_oracle"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-O1", "-Iinclude", "-Isrc",
                    "tests/interop/cast_oracle.c", str(lib), "-lz", "-lm", "-o", str(exe)],
                   cwd=ROOT, check=True)
    return exe


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@np.errstate(invalid="ignore")
def _in_range(src, bits, dst):
    """For float -> integer pairs: only values torch defines (inside the range)."""
    lo, hi = INT_LIMITS[dst]
    v = _values(src, bits)
    keep = np.isfinite(v) & (v > lo - 1) & (v < hi + 1)
    if dst == "I64":  # float64 cannot tell 2^63 - 1 from 2^63
        keep &= np.abs(v) < 2.0**62
    return _pad64(bits[keep])


PAIRS = ([(a, b) for a in FLOATS for b in FLOATS if a != b]
         + [(a, b) for a in ["BOOL", "U8", "I8", "I16", "I32", "I64"] for b in FLOATS]
         + [(a, "BOOL") for a in FLOATS]
         + [("F32", "I32"), ("F64", "I64"), ("F16", "I16"), ("BF16", "I32"), ("F32", "U8"),
            ("F64", "I8"), ("F16", "U8")]
         + [("C64", "C128"), ("C128", "C64")])


@pytest.mark.parametrize("simd", ["simd", "scalar"])
@pytest.mark.parametrize("src,dst", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_cast_matches_torch(oracle, tmp_path, src, dst, simd):
    rng = np.random.default_rng(zlib.crc32(f"{src}-{dst}".encode()))
    bits = _inputs(src, rng)
    if dst in INT_LIMITS:
        bits = _in_range(src, bits, dst)
    want = _from_torch(dst, _to_torch(src, bits).to(DT[dst][0]))
    if dst == "F16" and src in ("F32", "F64", "BF16"):
        want = expected_f16(src, bits, want)

    inp, out = tmp_path / "in.bin", tmp_path / "out.bin"
    bits.tofile(inp)
    env = dict(os.environ)
    env.pop("CKPTKIT_NO_SIMD", None)
    if simd == "scalar":
        env["CKPTKIT_NO_SIMD"] = "1"
    run = subprocess.run([str(oracle), src, dst, str(inp), str(out)], env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    got = np.fromfile(out, dtype=want.dtype)
    assert got.shape == want.shape
    bad = np.nonzero(got != want)[0]
    if bad.size:  # element i of the output (a component, for complex) comes from element i
        rows = [f"  [{i}] in {int(bits[i]) & (2**64 - 1):#x} -> ckptkit {int(got[i]):#x}, "
                f"torch {int(want[i]):#x}" for i in bad[:8]]
        pytest.fail(f"{src} -> {dst}: {bad.size} of {got.size} differ\n" + "\n".join(rows))

    # the counters, where the target is a float: finite -> Inf/NaN, nonzero -> zero
    if dst in FLOATS or dst in ("C64", "C128"):
        sv, dv = _values(src, bits), _values(dst, want)
        overflow = int(np.sum(np.isfinite(sv) & ~np.isfinite(dv)))
        underflow = int(np.sum((sv != 0) & ~np.isnan(sv) & (dv == 0)))
        assert run.stdout.split() == [str(overflow), str(underflow)]


def test_torch_nan_paths_are_what_the_note_says():
    """Guards the module note: if torch changes its NaN codes, this says so first."""
    torch.set_num_threads(1)
    nan32 = torch.full((64,), float("nan"), dtype=torch.float32)
    assert set(nan32.to(torch.bfloat16).view(torch.int16).tolist()) == {-1}  # 0xFFFF
    nan64 = torch.full((64,), float("nan"), dtype=torch.float64)
    assert set(nan64.to(torch.bfloat16).view(torch.int16).tolist()) == {-1}
    half = torch.full((64,), float("nan"), dtype=torch.float16)
    assert set(half.to(torch.bfloat16).view(torch.int16).tolist()) == {0x7FC0}
