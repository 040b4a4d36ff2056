"""Errors, the CLI's functions, progress, sharded input, bf16 without ml_dtypes."""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import ckptkit
import ckptkit.numpy
import ckptkit.torch
from conftest import real, same_tensor


@pytest.fixture
def st(tmp_path):
    p = tmp_path / "m.safetensors"
    ckptkit.torch.save_file({"model.a": torch.arange(6.).reshape(2, 3),
                             "model.b": torch.ones(4, dtype=torch.float64),
                             "n": torch.arange(3)}, p, metadata={"k": "v"})
    return p


def test_errors(tmp_path, st):
    with pytest.raises(FileNotFoundError):
        ckptkit.safe_open(tmp_path / "absent.safetensors", "np")
    with pytest.raises(FileNotFoundError):
        ckptkit.torch.load(tmp_path / "absent.pt")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    with pytest.raises(ckptkit.FormatError) as e:
        ckptkit.numpy.load_file(bad)
    assert "bad.safetensors" in str(e.value)
    assert issubclass(ckptkit.FormatError, ckptkit.Error)
    with ckptkit.safe_open(st, "np") as f:
        with pytest.raises(KeyError):
            f.get_tensor("nope")
        with pytest.raises(KeyError):
            f.get_slice("nope")
    with pytest.raises(ckptkit.ArgumentError):
        ckptkit.safe_open(st, "tf")
    with pytest.raises(ValueError):
        ckptkit.safe_open(st, "np", device="cuda:0")
    with pytest.raises(ckptkit.FormatError, match="index"):
        ckptkit.safe_open(tmp_path, "np")  # a folder without an index


def test_cuda_device(st):
    if torch.cuda.is_available():
        t = ckptkit.torch.load_file(st, device="cuda:0")
        assert t["model.a"].device.type == "cuda"
        same_tensor(t["model.a"].cpu(), torch.arange(6.).reshape(2, 3))
    else:
        with pytest.raises(ckptkit.UnsupportedError, match="CUDA"):
            ckptkit.torch.load_file(st, device="cuda:0")


def test_convert_verify_diff_info_scan(tmp_path, st):
    out = tmp_path / "o.pth"
    seen = []
    stats = ckptkit.convert(st, out, dtype="f16", strip_prefix="model.",
                            metadata={"x": "y"}, progress=lambda d, t: seen.append((d, t)))
    assert stats["tensors"] == 3 and stats["cast_tensors"] == 2
    assert seen and seen[-1][0] == seen[-1][1]
    sd = torch.load(out, weights_only=True)
    assert sd["a"].dtype == torch.float16 and "n" in sd
    with pytest.raises(FileExistsError):
        ckptkit.convert(st, out)
    ckptkit.convert(st, out, force=True, include=["model.*"], rename={"model.": "m."})
    assert sorted(torch.load(out, weights_only=True)) == ["m.a", "m.b"]
    with pytest.raises(ckptkit.SameFileError):
        ckptkit.convert(st, st, force=True)

    copy = tmp_path / "c.safetensors"
    ckptkit.convert(st, copy)
    assert ckptkit.verify(st, copy)
    half = tmp_path / "h.safetensors"
    ckptkit.convert(st, half, dtype="bf16")
    assert not ckptkit.verify(st, half)
    recs = ckptkit.diff(st, half)
    assert {r["name"] for r in recs} == {"model.a", "model.b", "n"}
    a = next(r for r in recs if r["name"] == "model.a")
    assert a["dtype_a"] == "F32" and a["dtype_b"] == "BF16" and a["equal"]
    assert a["max_abs"] == 0.0 and a["shape_a"] == (2, 3)

    info = ckptkit.info(st)
    assert info["format"] == "safetensors" and info["tensors"] == 3
    assert info["metadata"]["k"] == "v" and info["dtypes"] == {"F32": 1, "F64": 1, "I64": 1}
    r = ckptkit.scan(real("pytorch-zip/burn_checkpoint.pt")[0])
    assert r.status == "clean" and r.safe and r.globals
    assert set(r.to_dict()) == {"file", "status", "globals"}
    assert {"module", "name", "verdict", "where", "offset"} <= set(r.globals[0])


def test_progress_can_cancel(tmp_path, st):
    out = tmp_path / "x.safetensors"
    with pytest.raises(ckptkit.CancelledError):
        ckptkit.convert(st, out, progress=lambda d, t: False)
    assert not out.exists()

    def boom(d, t):
        raise RuntimeError("stop here")
    with pytest.raises(RuntimeError, match="stop here"):
        ckptkit.convert(st, out, progress=boom)
    assert not out.exists()
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_sharded_input(tmp_path, st):
    out = tmp_path / "sh" / "model.safetensors"
    os.makedirs(out.parent)
    big = {f"w{i}": torch.full((256,), float(i)) for i in range(6)}
    src = tmp_path / "big.safetensors"
    ckptkit.torch.save_file(big, src)
    stats = ckptkit.convert(src, out, shard_size=2500)
    assert stats["shards"] > 1
    for where in (out.parent, str(out) + ".index.json"):
        got = ckptkit.torch.load_file(where)
        assert sorted(got) == sorted(big)
        for k in big:
            same_tensor(got[k], big[k])


def test_bf16_without_ml_dtypes(st, tmp_path):
    p = tmp_path / "bf.safetensors"
    ckptkit.torch.save_file({"h": torch.ones(3, dtype=torch.bfloat16)}, p)
    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "import ckptkit, ckptkit.numpy\n"
        f"p = {str(p)!r}\n"
        "try:\n"
        "    ckptkit.numpy.load_file(p)\n"
        "except ckptkit.UnsupportedError as e:\n"
        "    msg = str(e)\n"
        "    assert 'ml_dtypes' in msg and 'framework=\"pt\"' in msg and 'dtype=' in msg, msg\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
        "a = ckptkit.numpy.load_file(p, dtype='F32')['h']\n"
        "assert a.dtype.name == 'float32' and a.tolist() == [1.0, 1.0, 1.0]\n"
        "print('ok')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ))
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_safe_open_on_torch_formats():
    for path in real("pytorch-zip/burn_*.pt")[:6] + real("pytorch-legacy/burn_*.pt"):
        want = torch.load(path, weights_only=True)
        if not all(isinstance(v, torch.Tensor) for v in want.values()):
            continue  # a nested checkpoint: its state dict is chosen by rule
        with ckptkit.safe_open(path, "pt") as f:
            assert f.keys() == sorted(want)
            for k in f.keys():
                same_tensor(f.get_tensor(k), want[k])


def test_safe_open_bytes_and_file_objects(st):
    import io
    data = st.read_bytes()
    for src in (data, io.BytesIO(data)):
        with ckptkit.safe_open(src, "np") as f:
            assert f.keys() == ["model.a", "model.b", "n"]
            a = f.get_tensor("model.a")
            assert a.tolist() == [[0, 1, 2], [3, 4, 5]]
            assert a.flags.writeable  # a copy, never a view of immutable bytes


def test_convert_whole_checkpoint_rewrite(tmp_path):
    p = tmp_path / "in.ckpt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "epoch": 1,
                "hyper_parameters": {"loss": torch.nn.MSELoss()}}, p)
    out = tmp_path / "out.ckpt"
    stats = ckptkit.convert(p, out)
    assert any(r[0] == "hyper_parameters.loss" and "MSELoss" in r[1] for r in stats["rewrites"])
    back = torch.load(out, weights_only=True)  # now loads without unsafe globals
    assert torch.equal(back["state_dict"]["w"], torch.ones(2)) and back["epoch"] == 1
    assert isinstance(back["hyper_parameters"]["loss"], dict)
    with pytest.raises(ckptkit.ArgumentError):
        ckptkit.convert(p, tmp_path / "x.ckpt", unknown="bogus")
