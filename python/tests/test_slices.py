"""get_slice against numpy indexing of the whole array."""
import numpy as np
import pytest
import torch
from safetensors.torch import save_file as st_save

import ckptkit

EXPRS = [
    np.s_[:], np.s_[0], np.s_[-1], np.s_[1:3], np.s_[::2], np.s_[::-1], np.s_[-3:-1],
    np.s_[-1:-4:-1], np.s_[5:1:-2], np.s_[..., 1], np.s_[1, ...], np.s_[..., ::-2],
    np.s_[0, 1:, ::3], np.s_[-2:, -1], np.s_[1:1], np.s_[10:20], np.s_[:, None, 2],
    np.s_[None], np.s_[2, -1, -2], np.s_[:, :, 1:6:2], np.s_[..., -3:], np.s_[3:0:-1, ::-1],
    np.s_[-100:100], np.s_[::7],
]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("slices")
    t = torch.arange(4 * 5 * 6, dtype=torch.float32).reshape(4, 5, 6)
    st = d / "a.safetensors"
    st_save({"t": t, "h": t.to(torch.bfloat16)}, str(st))
    pt = d / "a.pt"
    # a strided view in a .pt file is materialised, not mapped
    torch.save({"t": t, "h": t.to(torch.bfloat16), "tt": t.transpose(0, 2).contiguous()
                .transpose(0, 2)}, pt)
    return t.numpy(), str(st), str(pt)


@pytest.mark.parametrize("expr", EXPRS, ids=repr)
@pytest.mark.parametrize("which,name", [("st", "t"), ("pt", "t"), ("pt", "tt")])
def test_numpy_slices(files, expr, which, name):
    full, st, pt = files
    path = st if which == "st" else pt
    with ckptkit.safe_open(path, "np") as f:
        sl = f.get_slice(name)
        assert sl.get_shape() == [4, 5, 6] and sl.get_dtype() == "F32"
        got = sl[expr]
    want = full[expr]
    assert got.shape == want.shape
    assert np.array_equal(got, want)


@pytest.mark.parametrize("expr", EXPRS, ids=repr)
def test_torch_slices(files, expr):
    full, st, pt = files
    for path in (st, pt):
        with ckptkit.safe_open(path, "pt") as f:
            got = f.get_slice("t")[expr]
            goth = f.get_slice("h")[expr]
        want = full[expr]
        assert tuple(got.shape) == want.shape
        assert np.array_equal(got.numpy(), want)
        assert goth.dtype == torch.bfloat16
        assert np.array_equal(goth.float().numpy(), want)


def test_bad_indices(files):
    _, st, _ = files
    with ckptkit.safe_open(st, "np") as f:
        sl = f.get_slice("t")
        with pytest.raises(IndexError):
            sl[4]
        with pytest.raises(IndexError):
            sl[0, 0, 0, 0]
        with pytest.raises(IndexError):
            sl[..., ...]
