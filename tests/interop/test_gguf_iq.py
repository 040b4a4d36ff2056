"""test_gguf_iq.py -- the grid quantisation types (IQ2_XXS, IQ2_XS, IQ2_S,
IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) decoded by ckptkit against gguf-py 0.19.

For each type, a GGUFWriter file holds tensors of several shapes made of
random block bytes: the fp16 scale made finite (IQ1_M's is spread over the top
nibbles of its four scale words), and the first blocks rewritten so that every
grid row and every sign pattern of the type occurs at least once. `ckptkit
convert` to safetensors must give gguf.quants.dequantize's float32 values bit
for bit (NaN-free by construction), F16 output those values rounded once, and
F64 output them widened (more than 16 x the input: no --allow-expand needed).
"""
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import GGUFWriter  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES  # noqa: E402
from gguf.quants import dequantize  # noqa: E402

from compat import record  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CKPTKIT = os.environ.get("CKPTKIT", str(ROOT / "build" / "ckptkit"))
TOOL = "gguf (gguf-py)"
VERSION = "0.19.0"

IQ = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]
# element shapes (PyTorch order) of the tensors in each file: 64 + 300 + 1 + 12 blocks
SHAPES = [(16, 1024), (50, 1536), (256,), (2, 3, 512)]


def ck(*args, expect=0):
    r = subprocess.run([CKPTKIT] + [str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == expect, (args, r.returncode, r.stdout, r.stderr)
    return r


def read_safetensors(path):
    blob = Path(path).read_bytes()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__", None)
    np_dt = {"F32": np.float32, "F16": np.float16, "F64": np.float64}
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(blob[8 + n + b:8 + n + end], dtype=np_dt[e["dtype"]])
        out[name] = (e["dtype"], a.reshape(e["shape"]))
    return out


def finite_f16(rng, n):
    """n finite fp16 values as uint16, small to large magnitudes, both signs."""
    h = (rng.standard_normal(n) * rng.choice([1e-4, 1e-2, 1.0, 30.0], n)).astype(np.float16)
    return h.view(np.uint16)


def random_blocks(rng, name, nb):
    """nb random blocks of NAME with a finite fp16 scale."""
    bb = GGML_QUANT_SIZES[T[name]][1]
    raw = rng.integers(0, 256, (nb, bb), dtype=np.uint8)
    d = finite_f16(rng, nb)
    if name == "IQ1_M":  # d's four nibbles are the top nibbles of the scale words
        sc = raw[:, 48:56].copy().view("<u2")  # (nb, 4)
        for k in range(4):
            sc[:, k] = (sc[:, k] & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12)
        raw[:, 48:56] = sc.view(np.uint8)
    else:
        raw[:, 0:2] = d.view(np.uint8).reshape(nb, 2)
    return raw


def set_rows(raw, name, rows, signs):
    """Writes grid row indices ROWS (and sign patterns SIGNS, 7-bit indices into
    ggml's ksigns or whole sign bytes, where the type has them) into the blocks
    of RAW, in storage order: the block layouts of ggml-common.h."""
    nb = raw.shape[0]
    rows = np.asarray(rows, dtype=np.uint32).reshape(nb, -1)
    if name == "IQ2_XXS":  # per 32 elements: 4 row bytes, u32 of 4x7 sign bits + scale
        aux = raw[:, 2:66].copy().view("<u4").reshape(nb, 8, 2)
        s = np.asarray(signs, dtype=np.uint32).reshape(nb, 8, 4)
        top = aux[:, :, 1] & 0xF0000000
        aux[:, :, 1] = top | s[..., 0] | s[..., 1] << 7 | s[..., 2] << 14 | s[..., 3] << 21
        q = aux.view(np.uint8).reshape(nb, 8, 8)
        q[:, :, :4] = rows.reshape(nb, 8, 4)
        raw[:, 2:66] = q.reshape(nb, 64)
    elif name == "IQ2_XS":  # u16: 9-bit row, 7-bit sign index
        q = (rows | np.asarray(signs, dtype=np.uint32).reshape(nb, -1) << 9).astype("<u2")
        raw[:, 2:66] = q.view(np.uint8).reshape(nb, 64)
    elif name == "IQ2_S":  # row: 8 bits in qs, 2 bits in qh; sign bytes
        raw[:, 2:34] = rows & 0xFF
        hi = (rows >> 8).reshape(nb, 8, 4)
        raw[:, 66:74] = hi[..., 0] | hi[..., 1] << 2 | hi[..., 2] << 4 | hi[..., 3] << 6
        raw[:, 34:66] = np.asarray(signs, dtype=np.uint8).reshape(nb, 32)
    elif name == "IQ3_XXS":  # 64 row bytes; per 32 elements u32 of 4x7 sign bits + scale
        raw[:, 2:66] = rows
        aux = raw[:, 66:98].copy().view("<u4").reshape(nb, 8)
        s = np.asarray(signs, dtype=np.uint32).reshape(nb, 8, 4)
        aux[:] = (aux & 0xF0000000) | s[..., 0] | s[..., 1] << 7 | s[..., 2] << 14 | s[..., 3] << 21
        raw[:, 66:98] = aux.view(np.uint8).reshape(nb, 32)
    elif name == "IQ3_S":  # row: 8 bits in qs, 1 bit in qh; sign bytes
        raw[:, 2:66] = rows & 0xFF
        hi = (rows >> 8).reshape(nb, 8, 8)
        raw[:, 66:74] = sum(hi[..., j] << j for j in range(8))
        raw[:, 74:106] = np.asarray(signs, dtype=np.uint8).reshape(nb, 32)
    elif name == "IQ1_S":  # row: 8 bits in qs, 3 bits in the sub-block's u16 (bits 0..11)
        raw[:, 2:34] = rows & 0xFF
        qh = raw[:, 34:50].copy().view("<u2").reshape(nb, 8)
        hi = (rows >> 8).reshape(nb, 8, 4)
        qh[:] = (qh & 0xF000) | hi[..., 0] | hi[..., 1] << 3 | hi[..., 2] << 6 | hi[..., 3] << 9
        raw[:, 34:50] = qh.view(np.uint8).reshape(nb, 16)
    elif name == "IQ1_M":  # row: 8 bits in qs, 3 bits in a qh nibble (bit 3: delta sign)
        raw[:, 0:32] = rows & 0xFF
        hi = (rows >> 8).reshape(nb, 16, 2)
        qh = raw[:, 32:48]
        raw[:, 32:48] = (qh & 0x88) | hi[..., 0] | hi[..., 1] << 4
    else:
        raise ValueError(name)


# grid rows, rows per block, and sign fields per block (None: random sign bits)
LAYOUT = {"IQ2_XXS": (256, 32, 32), "IQ2_XS": (512, 32, 32), "IQ2_S": (1024, 32, 32),
          "IQ3_XXS": (256, 64, 32), "IQ3_S": (512, 64, 32), "IQ1_S": (2048, 32, None),
          "IQ1_M": (2048, 32, None)}


def covering_blocks(rng, name, nb):
    """nb random blocks whose grid rows run through every row of the codebook, and
    whose sign patterns through every 7-bit ksigns index (or every sign byte)."""
    n_rows, per_block, per_block_signs = LAYOUT[name]
    assert nb * per_block >= n_rows
    raw = random_blocks(rng, name, nb)
    rows = np.resize(np.arange(n_rows, dtype=np.uint32), nb * per_block)
    signs = None
    if per_block_signs is not None:
        span = 256 if name in ("IQ2_S", "IQ3_S") else 128  # sign bytes / ksigns indices
        signs = rng.permutation(np.resize(np.arange(span, dtype=np.uint32),
                                          nb * per_block_signs))
    set_rows(raw, name, rows, signs)
    return raw


def build(path, name, seed):
    """A GGUF of NAME tensors; returns {tensor: (element shape, reference F32 values)}."""
    qt = T[name]
    blk, bb = GGML_QUANT_SIZES[qt]
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "llama")
    expect = {}
    for i, shape in enumerate(SHAPES):
        nb = int(np.prod(shape)) // blk
        raw = covering_blocks(rng, name, nb) if i == 0 else random_blocks(rng, name, nb)
        byte_shape = tuple(shape[:-1]) + (shape[-1] // blk * bb,)
        tname = f"blk.{i}.{name.lower()}.weight"
        w.add_tensor(tname, raw.reshape(byte_shape), raw_shape=byte_shape, raw_dtype=qt)
        ref = dequantize(raw.reshape(-1), qt).astype(np.float32).reshape(shape)
        assert np.all(np.isfinite(ref))
        expect[tname] = (shape, ref)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return expect


def test_grid_types_bit_exact(tmp_path):
    for name in IQ:
        p = tmp_path / f"{name}.gguf"
        expect = build(p, name, 1000 + T[name].value)
        listed = {t["name"]: t for t in json.loads(ck("ls", p, "--json").stdout)["tensors"]}
        for tname, (shape, _) in expect.items():
            assert listed[tname]["dtype"] == name
            assert tuple(listed[tname]["shape"]) == shape
        out = tmp_path / f"{name}.safetensors"
        ck("convert", p, out)
        got = read_safetensors(out)
        assert sorted(got) == sorted(expect)
        for tname, (shape, ref) in expect.items():
            dt, a = got[tname]
            assert dt == "F32" and a.shape == shape, tname
            bad = np.nonzero(a.reshape(-1).view(np.uint32) != ref.reshape(-1).view(np.uint32))[0]
            assert bad.size == 0, f"{tname}: {bad.size} values differ, first at {bad[:1]}"
    record(TOOL, VERSION, "reads", "dequantised " + ", ".join(IQ) +
           " (every grid row and sign pattern) bit-exact with gguf.quants.dequantize")


def test_grid_types_f16_f64_output(tmp_path):
    """--dtype f16: gguf-py's float32 values rounded once to half; --dtype f64: the
    same values widened (up to 41 x the input's bytes: allowed for block types
    without --allow-expand)."""
    p = tmp_path / "all.gguf"
    rng = np.random.default_rng(77)
    w = GGUFWriter(str(p), "llama")
    expect = {}
    for name in IQ:
        bb = GGML_QUANT_SIZES[T[name]][1]
        raw = random_blocks(rng, name, 24)
        w.add_tensor(name, raw.reshape(6, 4 * bb), raw_shape=(6, 4 * bb), raw_dtype=T[name])
        expect[name] = dequantize(raw.reshape(-1), T[name]).astype(np.float32).reshape(6, 1024)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    out = tmp_path / "o16.safetensors"
    ck("convert", p, out, "--dtype", "f16")
    got = read_safetensors(out)
    for name in IQ:
        dt, a = got[name]
        assert dt == "F16", name
        assert np.array_equal(a.view(np.uint16), expect[name].astype(np.float16).view(np.uint16)), \
            name
    out = tmp_path / "o64.safetensors"
    ck("convert", p, out, "--dtype", "f64")
    assert out.stat().st_size > 16 * p.stat().st_size
    got = read_safetensors(out)
    for name in IQ:
        dt, a = got[name]
        assert dt == "F64" and np.array_equal(a, expect[name].astype(np.float64)), name
