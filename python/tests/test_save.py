"""Writing: the format follows the extension; saving over the file being read."""
import os

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file as st_np_load
from safetensors.torch import load_file as st_pt_load

import ckptkit
import ckptkit.numpy
import ckptkit.torch
from conftest import same_tensor


def tensors():
    g = torch.Generator().manual_seed(1)
    return {"w": torch.randn(4, 3, generator=g), "b": torch.arange(5, dtype=torch.int64),
            "h": torch.randn(7, generator=g).to(torch.bfloat16), "s": torch.tensor(2.0),
            "e": torch.zeros(0, 2), "nc": torch.randn(3, 4, generator=g).t()}


@pytest.mark.parametrize("ext", [".safetensors", ".pth", ".pt", ".ckpt", ".weights"])
def test_roundtrip_by_extension(tmp_path, ext):
    p = tmp_path / ("m" + ext)
    src = tensors()
    ckptkit.torch.save_file(src, p, metadata={"a": "1"} if ext != ".pth" else None)
    back = ckptkit.torch.load_file(p)
    for k, v in src.items():
        same_tensor(back[k], v.contiguous())
    with ckptkit.safe_open(p, "pt") as f:
        fmt = f.format()
    want = {".safetensors": "safetensors", ".weights": "safetensors"}.get(ext, "torch-zip")
    assert fmt == want
    if fmt == "safetensors":
        ref = st_pt_load(str(p))
        for k, v in src.items():
            same_tensor(ref[k], v.contiguous())
    else:
        ref = torch.load(p, weights_only=True)
        sd = ref.get("state_dict", ref)
        for k, v in src.items():
            same_tensor(sd[k], v.contiguous())


def test_save_over_the_file_being_read(tmp_path):
    p = tmp_path / "same.safetensors"
    ckptkit.torch.save_file(tensors(), p)
    loaded = ckptkit.torch.load_file(p)  # views of p's mapping
    ckptkit.torch.save_file(loaded, p)
    for k, v in tensors().items():
        same_tensor(loaded[k], v.contiguous())  # memory still right
    again = st_pt_load(str(p))
    for k, v in tensors().items():
        same_tensor(again[k], v.contiguous())  # disk right
    a = ckptkit.numpy.load_file(p)
    ckptkit.numpy.save_file(a, p)
    b = st_np_load(str(p))
    for k in a:
        assert a[k].tobytes() == b[k].tobytes()
    assert [n for n in os.listdir(tmp_path)] == ["same.safetensors"]  # no temp left


def test_numpy_save_and_bytes(tmp_path):
    arrays = {"x": np.arange(6, dtype=np.float32).reshape(2, 3),
              "y": np.asfortranarray(np.arange(6, dtype=np.int16).reshape(2, 3)),
              "z": np.arange(3, dtype=">f8")}
    data = ckptkit.numpy.save(arrays, metadata={"m": "n"})
    from safetensors.numpy import load as st_load
    ref = st_load(data)
    back = ckptkit.numpy.load(data)
    for k, v in arrays.items():
        assert np.array_equal(ref[k], v) and np.array_equal(back[k], v)
    t = ckptkit.torch.load(data)  # safetensors bytes through the torch side
    assert torch.equal(t["x"], torch.arange(6, dtype=torch.float32).reshape(2, 3))
    tb = ckptkit.torch.save({"q": torch.ones(2)})
    from safetensors.torch import load as st_tload
    assert torch.equal(st_tload(tb)["q"], torch.ones(2))


def test_save_model_and_load_model(tmp_path):
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(10, 4)
            self.out = torch.nn.Linear(4, 10, bias=False)
            self.out.weight = self.emb.weight

    m = Tied()
    p = tmp_path / "tied.safetensors"
    ckptkit.torch.save_model(m, p)
    with ckptkit.safe_open(p, "pt") as f:
        assert len(f.keys()) == 1
        assert f.metadata()["out.weight"] == "emb.weight"
    m2 = Tied()
    missing, unexpected = ckptkit.torch.load_model(m2, p)
    assert not missing and not unexpected
    assert torch.equal(m2.out.weight, m.emb.weight)
    # safetensors' own loader agrees
    from safetensors.torch import load_model as st_load_model
    m3 = Tied()
    st_load_model(m3, str(p))
    assert torch.equal(m3.emb.weight, m.emb.weight)


def test_bad_input(tmp_path):
    with pytest.raises(TypeError):
        ckptkit.torch.save_file({"a": np.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError):
        ckptkit.torch.save_file({1: torch.zeros(2)}, tmp_path / "x.safetensors")
    with pytest.raises(TypeError):
        ckptkit.numpy.save_file([np.zeros(2)], tmp_path / "x.safetensors")
    assert not os.listdir(tmp_path)
