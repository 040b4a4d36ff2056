"""test_gguf_quants.py -- ckptkit's ggml block codecs against gguf-py 0.19.

Dequantising: random block bytes (with the fp16 scale fields replaced by
finite values, as encoders write them) for every type gguf-py decodes and
ckptkit claims, decoded by both; the float32 results must be identical bit
for bit.

Quantising (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1): random data of several
distributions and sizes, encoded by both; the bytes must be identical except
for all-zero blocks of Q4_0/Q5_0, where ggml (and ckptkit) store d = -0.0 and
gguf-py the sign of the first element (GGUF.md 1): those are compared by
value. Non-finite input is refused with the index of the first bad value.

K-quants (Q2_K..Q6_K): gguf-py has no encoder, so ckptkit's (ggml's reference
algorithm) is checked through gguf-py's decoder, within the error bounds of
ggml's own test-quantize-fns, and for deterministic output.
"""
import os
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES  # noqa: E402
from gguf.quants import dequantize, quantize  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

DEQUANT = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
           "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0", "MXFP4", "NVFP4"]
QUANT = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]  # bit-exact with gguf.quants.quantize
# byte offsets of fp16 scale fields in each block, made finite in random input
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208],
    "IQ4_NL": [0], "IQ4_XS": [0], "TQ1_0": [52], "TQ2_0": [64], "MXFP4": [], "NVFP4": [],
}


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    ck = Path(os.environ.get("CKPTKIT", "build/ckptkit"))
    lib = (ck if ck.is_absolute() else ROOT / ck).parent / "libckptkit.a"
    if not lib.exists():
        pytest.fail(f"{lib} is missing: run make first")
    exe = tmp_path_factory.mktemp("oracle") / "ggml_oracle"
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, "-std=c11", "-D_GNU_SOURCE", "-O1", "-Iinclude", "-Isrc",
                    "tests/interop/ggml_oracle.c", str(lib), "-lz", "-lm", "-o", str(exe)],
                   cwd=ROOT, check=True)
    return exe


def run(exe, tmp_path, mode, name, data, simd=True):
    src, dst = tmp_path / "in.bin", tmp_path / "out.bin"
    src.write_bytes(data.tobytes())
    env = dict(os.environ)
    env.pop("CKPTKIT_NO_SIMD", None)
    if not simd:  # the scalar encoders, not the AVX2 ones (Q8_0, Q4_0)
        env["CKPTKIT_NO_SIMD"] = "1"
    r = subprocess.run([str(exe), mode, name, str(src), str(dst)], capture_output=True, text=True,
                       env=env)
    return r, (dst.read_bytes() if r.returncode == 0 else None)


@pytest.mark.parametrize("name", DEQUANT)
def test_dequantize_bit_exact(oracle, tmp_path, name):
    qt = T[name]
    blk, bb = GGML_QUANT_SIZES[qt]
    rng = np.random.default_rng(1234 + qt.value)
    nb = 3000
    raw = rng.integers(0, 256, size=(nb, bb), dtype=np.uint8)
    for off in F16_FIELDS[name]:
        h = (rng.standard_normal(nb) * rng.choice([1e-3, 1.0, 100.0], nb)).astype(np.float16)
        raw[:, off:off + 2] = h.view(np.uint8).reshape(nb, 2)
    r, out = run(oracle, tmp_path, "dequant", name, raw)
    assert r.returncode == 0, r.stderr
    ours = np.frombuffer(out, dtype=np.uint32)
    ref = dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(-1).view(np.uint32)
    assert ours.shape == ref.shape
    bad = np.nonzero(ours != ref)[0]
    assert bad.size == 0, f"{name}: {bad.size} differ, first at {bad[0]}"


def _data(rng, kind, n):
    if kind == "normal":
        return rng.standard_normal(n).astype(np.float32)
    if kind == "uniform":
        return rng.uniform(-1000, 1000, n).astype(np.float32)
    if kind == "tiny":
        return (rng.standard_normal(n) * 1e-6).astype(np.float32)
    if kind == "sparse":
        x = rng.standard_normal(n).astype(np.float32)
        x[rng.random(n) < 0.7] = 0.0
        x[: 32 * 4] = 0.0  # whole zero blocks
        return x
    if kind == "ties":  # values at code midpoints and repeated maxima
        x = rng.integers(-16, 17, n).astype(np.float32) / 2
        return x
    if kind == "positive":
        return rng.uniform(0.5, 3.0, n).astype(np.float32)
    raise ValueError(kind)


@pytest.mark.parametrize("simd", [True, False], ids=["simd", "scalar"])
@pytest.mark.parametrize("name", QUANT)
@pytest.mark.parametrize("kind", ["normal", "uniform", "tiny", "sparse", "ties", "positive"])
def test_quantize_bit_exact(oracle, tmp_path, name, kind, simd):
    qt = T[name]
    blk, bb = GGML_QUANT_SIZES[qt]
    rng = np.random.default_rng(zlib.crc32(f"{name}/{kind}".encode()))
    for nb in (1, 7, 4096):
        x = _data(rng, kind, nb * blk)
        r, out = run(oracle, tmp_path, "quant", name, x, simd)
        assert r.returncode == 0, r.stderr
        ours = np.frombuffer(out, dtype=np.uint8).reshape(nb, bb)
        ref = quantize(x.reshape(-1, blk), qt).reshape(nb, bb)
        zero = np.all(x.reshape(nb, blk) == 0, axis=1)
        same = np.all(ours == ref, axis=1)
        assert np.all(same | zero), f"{name}/{kind}: block {np.nonzero(~(same | zero))[0][:5]}"
        # all-zero blocks: equal by value
        if zero.any():
            a = dequantize(ours[zero].reshape(-1), qt)
            b = dequantize(ref[zero].reshape(-1), qt)
            assert np.array_equal(a, b)


@pytest.mark.parametrize("simd", [True, False], ids=["simd", "scalar"])
@pytest.mark.parametrize("name", QUANT + ["Q4_K", "Q6_K"])
def test_quantize_refuses_non_finite(oracle, tmp_path, name, simd):
    x = np.ones(1024, dtype=np.float32)
    x[37] = np.nan
    x[900] = np.inf
    r, _ = run(oracle, tmp_path, "quant", name, x, simd)
    assert r.returncode == 1 and r.stdout.strip() == "37"
    x[37] = 1
    x[5] = -np.inf
    r, _ = run(oracle, tmp_path, "quant", name, x, simd)
    assert r.returncode == 1 and r.stdout.strip() == "5"


def test_subnormal_blocks_match(oracle, tmp_path):
    """Blocks whose scale is subnormal (1/d overflows): the AVX2 path hands them to
    the scalar encoder, so both paths give the same bytes."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(32 * 64) * 1e-39).astype(np.float32)
    for name in ("Q8_0", "Q4_0"):
        a = run(oracle, tmp_path, "quant", name, x, True)[1]
        b = run(oracle, tmp_path, "quant", name, x, False)[1]
        assert a == b, name


# ---- K-quants: ggml's reference algorithm, checked through gguf-py's decoder ------------

# ggml's tests/test-quantize-fns.cpp: data 0.1 + 2 cos(i + offset), 4096 values; the
# "total error" is sqrt(sum of squared differences) / n, at most 0.002 (0.0075 for
# 2-bit types, 0.0040 for 3-bit ones)
KQUANT_BOUND = {"Q2_K": 0.0075, "Q3_K": 0.0040, "Q4_K": 0.002, "Q5_K": 0.002, "Q6_K": 0.002}
# root mean square error on standard normal data, well above what the reference reaches
# (about 0.29, 0.15, 0.07, 0.035, 0.017): a broken layout or scale lands near 1
KQUANT_NORMAL_RMSE = {"Q2_K": 0.35, "Q3_K": 0.19, "Q4_K": 0.09, "Q5_K": 0.045, "Q6_K": 0.022}


@pytest.mark.parametrize("name", list(KQUANT_BOUND))
def test_kquant_roundtrip_within_ggml_bounds(oracle, tmp_path, name):
    qt = T[name]
    n = 32 * 128
    for offset in (0.0, 0.5, 7.25):
        x = (0.1 + 2 * np.cos(np.arange(n, dtype=np.float32) + np.float32(offset))).astype(
            np.float32)
        r, out = run(oracle, tmp_path, "quant", name, x)
        assert r.returncode == 0, r.stderr
        y = dequantize(np.frombuffer(out, np.uint8), qt).reshape(-1)
        err = np.sqrt(np.sum((x.astype(np.float64) - y) ** 2)) / n
        assert err < KQUANT_BOUND[name], (name, offset, err)
        # deterministic: the same input gives the same bytes
        r2, out2 = run(oracle, tmp_path, "quant", name, x)
        assert out2 == out
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x = rng.standard_normal(256 * 64).astype(np.float32)
    x[:256] = 0.0  # an all-zero super-block decodes to zeros
    x[256:512] *= 1e-30  # a tiny one stays finite
    r, out = run(oracle, tmp_path, "quant", name, x)
    assert r.returncode == 0, r.stderr
    y = dequantize(np.frombuffer(out, np.uint8), qt).reshape(-1)
    assert np.all(np.isfinite(y)) and np.all(y[:256] == 0)
    rmse = np.sqrt(np.mean((x[512:].astype(np.float64) - y[512:]) ** 2))
    assert rmse < KQUANT_NORMAL_RMSE[name], (name, rmse)
