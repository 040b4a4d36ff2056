"""The converter features against real PyTorch and NumPy.

- Stable Diffusion EMA: a Lightning-style checkpoint made here with torch.save
  ({"state_dict": {model.diffusion_model.*, first_stage_model.*,
  cond_stage_model.*, model_ema.decay, model_ema.num_updates, model_ema.<no
  dots>...}, "epoch", "global_step", optimizer state}); --ema must give the EMA
  values under the model names, --no-ema must drop model_ema.*, --prune must
  leave a .ckpt holding the state dict alone.
- Sharding: outputs are loaded by following the index the way loaders do
  (safetensors shards parsed by hand: 8-byte length + JSON header + data;
  .bin shards with torch.load(weights_only=True)); the split obeys the
  Hugging Face rule; sharded input (index or folder) merges into one file.
- Casts: --dtype f16 / bf16 give exactly tensor.to(torch.float16 / bfloat16)
  on random and special values, ints never cast, and the summary line counts
  the values that overflowed to Inf or underflowed to zero.
- diff: the JSON numbers against numpy, the exit codes with tolerances.
- export: numpy.load reads every .npy and gets torch's values.
- metadata: safetensors __metadata__ carried, --metadata added, info shows it.
"""
import json
import os
import re
import struct
import subprocess

import numpy as np
import pytest

try:
    import torch
except ImportError:  # the system python3 has torch; another interpreter may not
    pytest.skip("torch is not installed for this interpreter", allow_module_level=True)

from f16nan import expected_f16  # noqa: E402
from compat import record, version_of  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))

ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.int16,
             "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
             "BOOL": np.bool_}


def ck(*args, expect=0):
    r = subprocess.run([CKPTKIT] + [str(a) for a in args], capture_output=True, text=True)
    assert r.returncode == expect, (args, r.returncode, r.stdout, r.stderr)
    return r


def read_safetensors(path):
    """(tensors, metadata) of a safetensors file, parsed by hand."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", None)
    out = {}
    for name, e in header.items():
        b, end = e["data_offsets"]
        a = np.frombuffer(blob[8 + n + b:8 + n + end], dtype=ST_DTYPES[e["dtype"]]).copy()
        t = torch.from_numpy(a)
        if e["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(e["shape"])
    return out, meta


def load_sharded(index_path):
    """Follows an index: every shard once, every weight_map entry from its shard."""
    with open(index_path) as f:
        index = json.load(f)
    folder = os.path.dirname(index_path)
    loaded = {}
    for shard in sorted(set(index["weight_map"].values())):
        p = os.path.join(folder, shard)
        if shard.endswith(".safetensors"):
            loaded[shard] = read_safetensors(p)[0]
        else:
            loaded[shard] = torch.load(p, weights_only=True)
    sd = {name: loaded[shard][name] for name, shard in index["weight_map"].items()}
    assert sum(len(v) for v in loaded.values()) == len(sd), "shards hold unlisted tensors"
    return index, sd, loaded


def same_tensor(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)


# ---- Stable Diffusion EMA ------------------------------------------------------

SD_MODEL = ["model.diffusion_model.input_blocks.0.0.weight",
            "model.diffusion_model.input_blocks.0.0.bias",
            "model.diffusion_model.middle_block.1.norm.weight",
            "model.diffusion_model.out.2.weight"]


def make_sd(path, with_ema=True):
    g = torch.Generator().manual_seed(1)
    sd = {}
    for i, name in enumerate(SD_MODEL):
        sd[name] = torch.randn(3 + i, 4, generator=g)
    sd["model.betas"] = torch.linspace(0.1, 0.2, 5)  # a buffer without an EMA twin
    sd["first_stage_model.decoder.conv_in.weight"] = torch.randn(2, 3, 3, 3, generator=g)
    sd["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(7)
    sd["model_ema.decay"] = torch.tensor(0.9999)
    sd["model_ema.num_updates"] = torch.tensor(1234, dtype=torch.int32)
    ema = {}
    if with_ema:
        for name in SD_MODEL:
            twin = "model_ema." + "".join(name.split(".")[1:])
            ema[twin] = torch.randn(sd[name].shape, generator=g)
        sd.update(ema)
    torch.save({"state_dict": sd, "epoch": 4, "global_step": 1234,
                "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}},
                                      "param_groups": [{"lr": 1, "params": [0]}]}],
                "lr_schedulers": [{"last_epoch": 4}]}, path)
    return sd, ema


def test_ema_swaps_in_ema_values(tmp_path):
    src = tmp_path / "sd.ckpt"
    sd, ema = make_sd(src)
    out = tmp_path / "ema.safetensors"
    r = ck("convert", src, out, "--ema")
    assert "1 of 5 'model.*' tensors have no EMA twin" in r.stderr  # model.betas
    got, _ = read_safetensors(out)
    assert not [k for k in got if k.startswith("model_ema")]
    expected = {k: v for k, v in sd.items() if not k.startswith("model_ema.")}
    assert sorted(got) == sorted(expected)
    for name in SD_MODEL:
        twin = "model_ema." + "".join(name.split(".")[1:])
        assert same_tensor(got[name], ema[twin]), name
        assert not torch.equal(got[name], sd[name])
    for name in expected:
        if name not in SD_MODEL:
            assert same_tensor(got[name], sd[name]), name

    # the same into a .ckpt that torch loads
    out2 = tmp_path / "ema.ckpt"
    ck("convert", src, out2, "--ema", "-q")
    obj = torch.load(out2, weights_only=True)
    for name in SD_MODEL:
        assert same_tensor(obj["state_dict"][name], got[name])


def test_no_ema_and_prune(tmp_path):
    src = tmp_path / "sd.ckpt"
    sd, _ = make_sd(src)
    out = tmp_path / "noema.ckpt"
    ck("convert", src, out, "--no-ema", "--prune")
    obj = torch.load(out, weights_only=True)
    assert list(obj) == ["state_dict"]  # no epoch, global_step, optimizer, schedulers
    expected = {k: v for k, v in sd.items() if not k.startswith("model_ema.")}
    assert list(obj["state_dict"]) == list(expected)
    for k, v in expected.items():
        assert same_tensor(obj["state_dict"][k], v), k
    # without --prune the training counters stay
    out2 = tmp_path / "kept.ckpt"
    ck("convert", src, out2, "--no-ema")
    obj2 = torch.load(out2, weights_only=True)
    assert obj2["epoch"] == 4 and obj2["global_step"] == 1234
    # --prune also keeps them out of safetensors metadata
    out3 = tmp_path / "pruned.safetensors"
    ck("convert", src, out3, "--prune")
    _, meta = read_safetensors(out3)
    assert "epoch" not in (meta or {}) and "global_step" not in (meta or {})


def test_ema_without_ema_weights_is_an_error(tmp_path):
    src = tmp_path / "plain.ckpt"
    make_sd(src, with_ema=False)
    out = tmp_path / "x.safetensors"
    r = ck("convert", src, out, "--ema", expect=1)
    assert "--ema: the checkpoint holds no EMA weights" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()
    ck("convert", src, out, "--no-ema")  # fine: nothing to drop but decay/num_updates
    got, _ = read_safetensors(out)
    assert "model_ema.decay" not in got and "model.betas" in got


# ---- sharding -----------------------------------------------------------------

def make_model(path, n=12):
    g = torch.Generator().manual_seed(2)
    sd = {}
    for i in range(n):
        sd[f"layers.{i}.weight"] = torch.randn(8 + i, 16, generator=g)  # (8+i)*64 bytes
        sd[f"layers.{i}.bias"] = torch.randn(8 + i, generator=g).to(torch.float16)
    sd["big.weight"] = torch.randn(64, 64, generator=g)  # 16 KiB: passes the shard size
    sd["step"] = torch.tensor(7)
    torch.save(sd, path)
    return sd


def check_split(index, loaded, sd, max_size):
    """The Hugging Face rule: walk the state dict in order, start a new shard when
    the next tensor would pass the size, an oversize tensor alone."""
    order = sorted(loaded)
    n = len(order)
    assert order == [re.sub(r"-\d{5}-of-", f"-{i + 1:05d}-of-", s) for i, s in enumerate(order)]
    assert all(f"-of-{n:05d}." in s for s in order)
    nbytes = {k: t.numel() * t.element_size() for k, t in sd.items()}
    seq = [order.index(index["weight_map"][k]) for k in sd]
    assert seq == sorted(seq) and seq[0] == 0 and seq[-1] == n - 1
    used = [0] * n
    first = [None] * n
    for k, s in zip(sd, seq):
        used[s] += nbytes[k]
        if first[s] is None:
            first[s] = k
        assert sorted(loaded[order[s]]) == sorted(x for x, y in zip(sd, seq) if y == s)
    for s in range(n):
        alone = sum(1 for y in seq if y == s) == 1
        assert used[s] <= max_size or alone
        if s + 1 < n:
            assert used[s] + nbytes[first[s + 1]] > max_size
    assert index["metadata"]["total_size"] == sum(nbytes.values())


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_sharded_output_loads_through_the_index(tmp_path, fmt):
    src = tmp_path / "m.pt"
    sd = make_model(src)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    base = "model.safetensors" if fmt == "safetensors" else "pytorch_model.bin"
    r = ck("convert", src, out_dir / base, "--shard-size", "4KiB")
    index_path = out_dir / (base + ".index.json")
    assert index_path.exists() and not (out_dir / base).exists()
    assert "shards + " in r.stderr
    index, got, loaded = load_sharded(str(index_path))
    assert list(index) == ["metadata", "weight_map"]
    assert list(index["weight_map"]) == sorted(index["weight_map"])
    assert sorted(got) == sorted(sd)
    for k, v in sd.items():
        assert same_tensor(got[k], v), k
    check_split(index, loaded, sd, 4096)
    stem = "model" if fmt == "safetensors" else "pytorch_model"
    ext = ".safetensors" if fmt == "safetensors" else ".bin"
    n = len(loaded)
    assert sorted(os.listdir(out_dir)) == sorted(
        [f"{stem}-{i:05d}-of-{n:05d}{ext}" for i in range(1, n + 1)] + [base + ".index.json"])
    # deterministic: the same command gives the same bytes
    again = tmp_path / "again"
    again.mkdir()
    ck("convert", src, again / base, "--shard-size", "4KiB", "-q")
    for f in os.listdir(out_dir):
        assert (out_dir / f).read_bytes() == (again / f).read_bytes(), f


def test_sharded_pth_keeps_shared_storages_together(tmp_path):
    g = torch.Generator().manual_seed(4)
    qkv = torch.randn(3, 64, generator=g)
    emb = torch.randn(64, generator=g)
    sd = {"a": torch.randn(64, generator=g), "q": qkv[0], "k": qkv[1], "b": torch.randn(64),
          "v": qkv[2], "emb": emb, "c": torch.randn(64), "head": emb}
    src = tmp_path / "shared.pt"
    torch.save(sd, src)
    out = tmp_path / "o"
    out.mkdir()
    ck("convert", src, out / "pytorch_model.bin", "--shard-size", "300")
    index, got, loaded = load_sharded(str(out / "pytorch_model.bin.index.json"))
    wm = index["weight_map"]
    assert wm["q"] == wm["k"] == wm["v"] and wm["emb"] == wm["head"]
    sh = loaded[wm["q"]]
    assert sh["q"].storage().data_ptr() == sh["k"].storage().data_ptr() == \
        sh["v"].storage().data_ptr()
    assert loaded[wm["emb"]]["emb"].storage().data_ptr() == \
        loaded[wm["head"]]["head"].storage().data_ptr()
    assert index["metadata"]["total_size"] == 4 * (64 * 3 + 64 * 3 + 64)  # a b c, qkv, emb
    for k, v in sd.items():
        assert same_tensor(got[k], v), k


def test_one_shard_is_a_plain_file(tmp_path):
    src = tmp_path / "m.pt"
    sd = make_model(src, n=2)
    out = tmp_path / "model.safetensors"
    ck("convert", src, out, "--shard-size", "5GB")
    assert sorted(os.listdir(tmp_path)) == ["m.pt", "model.safetensors"]
    got, _ = read_safetensors(out)
    assert sorted(got) == sorted(sd)


def test_sharded_input_merges(tmp_path):
    src = tmp_path / "m.pt"
    sd = make_model(src)
    shards = tmp_path / "shards"
    shards.mkdir()
    ck("convert", src, shards / "model.safetensors", "--shard-size", "3000", "--metadata",
       "origin=test")
    index = shards / "model.safetensors.index.json"
    for given in (index, shards):
        out = tmp_path / "merged.safetensors"
        ck("convert", given, out, "--force")
        got, meta = read_safetensors(out)
        assert sorted(got) == sorted(sd)
        for k, v in sd.items():
            assert same_tensor(got[k], v), k
        assert meta.get("origin") == "test" and meta.get("format") == "pt"
    info = json.loads(ck("info", "--json", shards).stdout)
    assert info["format"] == "sharded:safetensors" and info["tensors"] == len(sd)
    # sharded .bin in, one .pth out
    bins = tmp_path / "bins"
    bins.mkdir()
    ck("convert", src, bins / "pytorch_model.bin", "--shard-size", "3000")
    ck("convert", bins, tmp_path / "merged.pth")
    obj = torch.load(tmp_path / "merged.pth", weights_only=True)
    assert list(obj) == list(sd)  # shard order, then each shard's order
    for k, v in sd.items():
        assert same_tensor(obj[k], v), k
    ck("verify", bins, shards)


# ---- casts ---------------------------------------------------------------------

def special_f32():
    v = [0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), float("nan"), 65504.0, 65520.0,
         1e5, -1e5, 1e-10, -1e-10, 6e-8, 5.96e-8, 2.98e-8, 3e38, 1e-40, 1e-45, -3.4e38,
         0.1, 1 / 3, 2.0 ** -24, 2.0 ** -25, 2.0 ** -133, 2.0 ** -134]
    a = np.array(v, dtype=np.float32)
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2 ** 32, size=4096, dtype=np.uint64).astype(np.uint32)
    rand = bits.view(np.float32)
    normal = rng.standard_normal(4096).astype(np.float32) * 100
    out = np.concatenate([a, rand, normal])
    return np.concatenate([out, np.zeros((-len(out)) % 64, dtype=np.float32)])


@pytest.mark.parametrize("target", ["f16", "bf16"])
def test_casts_match_torch_bit_for_bit(tmp_path, target):
    torch.set_num_threads(1)
    x32 = torch.from_numpy(special_f32())
    with np.errstate(invalid="ignore"):  # signalling NaNs among the random bit patterns
        x64 = torch.from_numpy(special_f32().astype(np.float64) * 1.0000001)
    sd = {"w32": x32, "w64": x64, "ids": torch.arange(64) * 1000003,
          "mask": torch.arange(64) % 3 == 0, "h": x32.to(torch.float16)}
    src = tmp_path / "c.pt"
    torch.save(sd, src)
    out = tmp_path / "c.safetensors"
    r = ck("convert", src, out, "--dtype", target)
    got, _ = read_safetensors(out)
    tdt = torch.float16 if target == "f16" else torch.bfloat16
    view = torch.int16
    over = under = 0
    for k in ("w32", "w64", "h"):
        want = sd[k].to(tdt)
        assert got[k].dtype == tdt
        want_bits = want.view(view).numpy().view(np.uint16)
        if target == "f16" and k != "h":  # NaN codes of torch 1.13 differ (f16nan.py)
            src_bits = sd[k].numpy().view(np.uint32 if k == "w32" else np.uint64)
            want_bits = expected_f16("F32" if k == "w32" else "F64", src_bits, want_bits)
        assert np.array_equal(got[k].view(view).numpy().view(np.uint16), want_bits), k
        src_v = sd[k].double()
        out_v = want.double()
        over += int((torch.isfinite(src_v) & torch.isinf(out_v)).sum())
        under += int(((src_v != 0) & (out_v == 0)).sum())
    assert got["ids"].dtype == torch.int64 and torch.equal(got["ids"], sd["ids"])
    assert got["mask"].dtype == torch.bool and torch.equal(got["mask"], sd["mask"])
    m = re.search(r"(\d+) cast to \w+, (\d+) values overflowed to inf, (\d+) underflowed", r.stderr)
    assert m, r.stderr
    cast = 3 if target == "bf16" else 2  # h is already F16
    assert (int(m.group(1)), int(m.group(2)), int(m.group(3))) == (cast, over, under)
    assert over > 0 and under > 0
    # --dtype-exclude keeps chosen tensors
    out2 = tmp_path / "c2.safetensors"
    ck("convert", src, out2, "--dtype", target, "--dtype-exclude", "w6*")
    got2, _ = read_safetensors(out2)
    assert got2["w64"].dtype == torch.float64
    assert torch.equal(got2["w64"].view(torch.int64), x64.view(torch.int64))
    assert got2["w32"].dtype == tdt
    record("PyTorch", version_of(torch), "writes",
           f"convert --dtype {target}: the bits Tensor.to() gives, overflow/underflow counts")


# ---- diff ----------------------------------------------------------------------

def np_stats(a, b, atol=0.0, rtol=0.0):
    a = a.astype(np.float64).ravel()
    b = b.astype(np.float64).ravel()
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    keep = ~(nan_a | nan_b)
    d = np.abs(a[keep] - b[keep])
    d[a[keep] == b[keep]] = 0
    fin = np.isfinite(a) & np.isfinite(b)
    na, nb = np.dot(a[fin], a[fin]), np.dot(b[fin], b[fin])
    cos = 1.0 if na == 0 and nb == 0 else (0.0 if na == 0 or nb == 0
                                           else np.dot(a[fin], b[fin]) / np.sqrt(na * nb))
    match = (a == b) | (nan_a & nan_b) | (
        np.isfinite(a) & np.isfinite(b) & (np.abs(a - b) <= atol + rtol * np.abs(b)))
    return d.max() if d.size else 0.0, d.mean() if d.size else 0.0, cos, int((~match).sum())


def save_st(path, tensors, meta=None):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    names = {np.float32: "F32", np.float16: "F16", np.float64: "F64", np.int64: "I64"}
    for k, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[k] = {"dtype": names[a.dtype.type], "shape": list(a.shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def test_diff_numbers_match_numpy(tmp_path):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((300, 70)).astype(np.float32)
    w2 = (w + rng.standard_normal(w.shape).astype(np.float32) * 1e-3)
    w2[3, 4] = np.nan
    w[5, 5] = np.nan
    w2[5, 5] = np.nan
    big = rng.standard_normal(100_000).astype(np.float32)  # several chunks
    a = {"w": w, "h": w[:10].copy(), "big": big, "ids": np.arange(10, dtype=np.int64),
         "only_a": np.zeros(3, np.float32), "shape": np.zeros((2, 3), np.float32)}
    b = {"w": w2, "h": w[:10].astype(np.float16), "big": big, "ids": np.arange(10, dtype=np.int64),
         "only_b": np.zeros(3, np.float32), "shape": np.zeros((3, 2), np.float32)}
    save_st(tmp_path / "a.safetensors", a)
    save_st(tmp_path / "b.safetensors", b)
    r = ck("diff", tmp_path / "a.safetensors", tmp_path / "b.safetensors", "--json", expect=1)
    j = json.loads(r.stdout)
    assert j["only_a"] == ["only_a"] and j["only_b"] == ["only_b"] and j["same"] is False
    changed = {c["name"]: c for c in j["changed"]}
    assert sorted(changed) == ["h", "shape", "w"]
    assert changed["shape"]["shape_a"] == [2, 3] and changed["shape"]["shape_b"] == [3, 2]
    assert changed["shape"]["max_abs"] is None
    for name in ("w", "h"):
        mx, mean, cos, mism = np_stats(a[name], b[name])
        c = changed[name]
        assert c["max_abs"] == pytest.approx(mx, rel=1e-12, abs=0)
        assert c["mean_abs"] == pytest.approx(mean, rel=1e-9)
        assert c["cosine"] == pytest.approx(cos, rel=1e-12)
        assert c["mismatched"] == mism and c["equal"] is False
    assert changed["h"]["dtype_a"] == "F32" and changed["h"]["dtype_b"] == "F16"
    # text mode: a table and one summary line
    r = ck("diff", tmp_path / "a.safetensors", tmp_path / "b.safetensors", expect=1)
    lines = r.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["TENSOR", "CHANGE"]
    assert lines[-1].startswith("differ: 1 only in A, 1 only in B")
    assert len(lines) == 1 + 5 + 1
    # tolerances: same tensors compared by value
    c = {k: a[k] for k in ("w", "h", "big")}
    d = {"w": w2.copy(), "h": w[:10].astype(np.float16), "big": big}
    d["w"][3, 4] = w[3, 4]
    save_st(tmp_path / "c.safetensors", c)
    save_st(tmp_path / "d.safetensors", d)
    mx = max(np_stats(c[k], d[k])[0] for k in c)
    ck("diff", tmp_path / "c.safetensors", tmp_path / "d.safetensors", expect=1)
    ck("diff", tmp_path / "c.safetensors", tmp_path / "d.safetensors", "--atol", mx * 1.01)
    ck("diff", tmp_path / "c.safetensors", tmp_path / "d.safetensors", "--atol", mx * 0.5,
       expect=1)
    r = ck("diff", tmp_path / "c.safetensors", tmp_path / "c.safetensors", "-q")
    assert r.stdout == "" and r.stderr == ""
    ck("diff", tmp_path / "c.safetensors", tmp_path / "missing.safetensors", expect=2)


# ---- export --------------------------------------------------------------------

def test_export_npy_matches_torch(tmp_path):
    g = torch.Generator().manual_seed(9)
    sd = {"enc/w": torch.randn(3, 4, 5, generator=g), "ids": torch.arange(6),
          "mask": torch.tensor([True, False, True]), "h": torch.randn(7, generator=g).half(),
          "s": torch.tensor(2.5, dtype=torch.float64), "bf": torch.randn(4, generator=g).bfloat16(),
          "t": torch.randn(4, 6, generator=g).t()}  # a strided view
    src = tmp_path / "e.pt"
    torch.save(sd, src)
    folder = tmp_path / "npys"
    ck("export", src, "enc/w", "ids", "mask", "h", "s", "t", "-o", folder)
    assert sorted(os.listdir(folder)) == sorted(
        ["enc_w.npy", "ids.npy", "mask.npy", "h.npy", "s.npy", "t.npy"])
    for name, t in sd.items():
        if name == "bf":
            continue
        arr = np.load(folder / (name.replace("/", "_") + ".npy"))
        want = t.contiguous().numpy()
        assert arr.dtype == want.dtype and arr.shape == want.shape, name
        assert np.array_equal(arr, want), name
        with open(folder / (name.replace("/", "_") + ".npy"), "rb") as f:
            head = f.read(10)
        assert head[:8] == b"\x93NUMPY\x01\x00"
        assert (10 + struct.unpack("<H", head[8:10])[0]) % 64 == 0
    r = ck("export", src, "bf", "-o", tmp_path / "bf.npy", expect=1)
    assert "has no NumPy dtype" in r.stderr and "--dtype f32" in r.stderr
    assert not (tmp_path / "bf.npy").exists()
    ck("export", src, "bf", "-o", tmp_path / "bf.npy", "--dtype", "f32")
    arr = np.load(tmp_path / "bf.npy")
    assert arr.dtype == np.float32 and np.array_equal(arr, sd["bf"].float().numpy())
    ck("export", src, "t", "-o", tmp_path / "t.raw", "--format", "raw")
    raw = np.fromfile(tmp_path / "t.raw", dtype=np.float32).reshape(6, 4)
    assert np.array_equal(raw, sd["t"].contiguous().numpy())
    r = ck("export", src, "nope", "-o", tmp_path / "n.npy", expect=1)
    assert "no tensor named 'nope'" in r.stderr


# ---- metadata ------------------------------------------------------------------

def test_metadata_carried_and_shown(tmp_path):
    save_st(tmp_path / "m.safetensors", {"w": np.ones(3, np.float32)},
            {"format": "pt", "author": "someone"})
    out = tmp_path / "o.safetensors"
    ck("convert", tmp_path / "m.safetensors", out, "--metadata", "license=mit",
       "--metadata", "author=else")
    _, meta = read_safetensors(out)
    assert meta == {"format": "pt", "author": "else", "license": "mit"}
    info = json.loads(ck("info", "--json", out).stdout)
    assert info["metadata"] == meta
    text = ck("info", out).stdout
    assert "  license: mit" in text and "  author: else" in text
    # carried through a sharded round trip, into every shard
    d = tmp_path / "sh"
    d.mkdir()
    save_st(tmp_path / "two.safetensors", {"a": np.ones(300, np.float32),
                                           "b": np.ones(300, np.float32)}, {"k": "v"})
    ck("convert", tmp_path / "two.safetensors", d / "model.safetensors", "--shard-size", "1500")
    shards = [f for f in os.listdir(d) if f.endswith(".safetensors")]
    assert len(shards) == 2
    for f in shards:
        assert read_safetensors(d / f)[1] == {"k": "v", "format": "pt"}
