"""ckptkit.numpy / ckptkit.torch against safetensors' own loaders, bit for bit."""
import os

import numpy as np
import pytest
import torch
from safetensors import safe_open as st_open
from safetensors.numpy import load_file as st_np_load
from safetensors.torch import load_file as st_pt_load
from safetensors.torch import save_file as st_pt_save

import ckptkit
import ckptkit.numpy
import ckptkit.torch
from conftest import as_bytes, real, same_tensor

ml_dtypes = pytest.importorskip("ml_dtypes")

DTYPES = [torch.bool, torch.uint8, torch.int8, torch.int16, torch.uint16, torch.int32,
          torch.uint32, torch.int64, torch.uint64, torch.float16, torch.bfloat16, torch.float32,
          torch.float64, torch.complex64, torch.float8_e4m3fn, torch.float8_e5m2]
for extra in ("float8_e4m3fnuz", "float8_e5m2fnuz", "float8_e8m0fnu"):
    if hasattr(torch, extra):
        DTYPES.append(getattr(torch, extra))


def sample(dt, shape=(3, 5)):
    g = torch.Generator().manual_seed(7)
    if dt == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dt.is_complex:
        return torch.randn(shape, dtype=dt, generator=g)
    if dt.is_floating_point:
        return (torch.randn(shape, generator=g) * 3).to(dt)
    info = torch.iinfo(dt)
    lo, hi = max(info.min, -1000), min(info.max, 1000)
    return torch.randint(lo, hi, shape, generator=g).to(dt)


@pytest.fixture(scope="module")
def every_dtype(tmp_path_factory):
    p = tmp_path_factory.mktemp("dt") / "every.safetensors"
    tensors = {str(dt).replace("torch.", ""): sample(dt) for dt in DTYPES}
    tensors["scalar"] = torch.tensor(3.5)
    tensors["empty"] = torch.zeros((0, 4))
    st_pt_save(tensors, str(p), metadata={"k": "v"})
    return str(p)


@pytest.mark.parametrize("path", real("safetensors/*.safetensors"), ids=os.path.basename)
def test_real_fixture_numpy(path):
    want = st_np_load(path)
    got = ckptkit.numpy.load_file(path)
    assert list(sorted(got)) == list(sorted(want))
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape
        assert as_bytes(got[k]) == as_bytes(want[k]), k


@pytest.mark.parametrize("path", real("safetensors/*.safetensors"), ids=os.path.basename)
def test_real_fixture_torch(path):
    want = st_pt_load(path)
    got = ckptkit.torch.load_file(path)
    assert sorted(got) == sorted(want)
    for k in want:
        same_tensor(got[k], want[k])
    with st_open(path, "pt") as a, ckptkit.safe_open(path, "pt") as b:
        assert a.keys() == b.keys()
        assert a.metadata() == b.metadata()
        assert list(a.offset_keys()) == list(b.offset_keys())


def test_every_dtype_torch(every_dtype):
    want = st_pt_load(every_dtype)
    got = ckptkit.torch.load_file(every_dtype)
    assert sorted(got) == sorted(want)
    for k in want:
        same_tensor(got[k], want[k])


def test_every_dtype_numpy(every_dtype):
    want = {}
    with st_open(every_dtype, "np") as f:
        for k in f.keys():
            try:
                want[k] = f.get_tensor(k)
            except AttributeError:  # a dtype safetensors' numpy side has no name for
                continue
    assert len(want) >= len(DTYPES) - 3
    got = ckptkit.numpy.load_file(every_dtype)
    assert set(want) <= set(got)
    for k in got:  # every dtype, those safetensors cannot give included
        assert as_bytes(got[k]) == as_bytes(ckptkit.torch.load_file(every_dtype)[k]), k
    for k in want:
        assert got[k].dtype == want[k].dtype, k
        assert got[k].shape == want[k].shape, k
        assert as_bytes(got[k]) == as_bytes(want[k]), k


def test_metadata_and_keys(every_dtype):
    with st_open(every_dtype, "np") as a, ckptkit.safe_open(every_dtype, "np") as b:
        assert a.keys() == b.keys()
        assert a.metadata() == b.metadata() == {"k": "v"}
        for k in a.keys():
            assert a.get_slice(k).get_shape() == b.get_slice(k).get_shape()
            assert a.get_slice(k).get_dtype() == b.get_slice(k).get_dtype()


def test_cast_on_read(every_dtype):
    with ckptkit.safe_open(every_dtype, "np", dtype="F32") as f:
        a = f.get_tensor("bfloat16")
    want = st_pt_load(every_dtype)["bfloat16"].float().numpy()
    assert a.dtype == np.float32
    assert np.array_equal(a, want)
