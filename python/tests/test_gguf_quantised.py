"""Quantised GGUF tensors through the package: safe_open and load_file give them
dequantised to float32 (as ``ckptkit convert`` does by default), bit-exact with
gguf-py's dequantize; float tensors stay as stored."""
import numpy as np
import pytest

import ckptkit
import ckptkit.numpy


def _state(seed=3):
    rng = np.random.default_rng(seed)
    return {
        "blk.0.attn_q.weight": (rng.standard_normal((8, 256)) * 0.05).astype(np.float32),
        "blk.0.ffn_up.weight": rng.uniform(-3, 3, (4, 512)).astype(np.float32),
        "blk.0.attn_norm.weight": np.linspace(0.5, 1.5, 256, dtype=np.float32),
    }


@pytest.fixture(scope="module")
def quantised(tmp_path_factory):
    """A GGUF written by ckptkit itself: 2-D weights as Q8_0 (the policy keeps the norm F32),
    and the same model converted back to safetensors by the library's default path."""
    d = tmp_path_factory.mktemp("gguf")
    src = d / "model.safetensors"
    ckptkit.numpy.save_file(_state(), str(src))
    out = d / "model.gguf"
    ckptkit.convert(src, out, dtype="q8_0")
    back = d / "back.safetensors"
    ckptkit.convert(out, back)
    return out, back


def test_safe_open_dequantises_to_f32(quantised):
    path, back = quantised
    want = ckptkit.numpy.load_file(str(back))
    with ckptkit.safe_open(str(path), framework="np") as f:
        assert sorted(f.keys()) == sorted(want)
        assert f.get_slice("blk.0.attn_q.weight").get_dtype() == "Q8_0"
        for k in f.keys():
            a = f.get_tensor(k)
            assert a.dtype == np.float32 and a.shape == want[k].shape, k
            assert a.tobytes() == want[k].tobytes(), k
        # rows of a quantised tensor, read alone, are the same values
        rows = f.get_slice("blk.0.ffn_up.weight")[1:3]
        assert rows.tobytes() == want["blk.0.ffn_up.weight"][1:3].tobytes()
        col = f.get_slice("blk.0.attn_q.weight")[:, 5]
        assert col.tobytes() == want["blk.0.attn_q.weight"][:, 5].tobytes()
    # the values are a quantisation of the input, not the input
    src = _state()
    q = want["blk.0.attn_q.weight"]
    assert not np.array_equal(q, src["blk.0.attn_q.weight"])
    assert np.max(np.abs(q - src["blk.0.attn_q.weight"])) < 0.05 * 4 / 127
    assert np.array_equal(want["blk.0.attn_norm.weight"], src["blk.0.attn_norm.weight"])


def test_load_file_numpy_and_torch(quantised):
    path, back = quantised
    want = ckptkit.numpy.load_file(str(back))
    got = ckptkit.numpy.load_file(str(path))
    assert {k: v.tobytes() for k, v in got.items()} == {k: v.tobytes() for k, v in want.items()}
    torch = pytest.importorskip("torch")
    import ckptkit.torch as ckpt_torch
    pt = ckpt_torch.load_file(str(path))
    for k, v in want.items():
        assert pt[k].dtype == torch.float32
        assert pt[k].numpy().tobytes() == v.tobytes(), k


def test_explicit_dtype_casts_the_dequantised_values(quantised):
    path, back = quantised
    want = ckptkit.numpy.load_file(str(back))
    with ckptkit.safe_open(str(path), framework="np", dtype="F16") as f:
        a = f.get_tensor("blk.0.attn_q.weight")
    assert a.dtype == np.float16
    assert np.array_equal(a, want["blk.0.attn_q.weight"].astype(np.float16))


@pytest.mark.parametrize("qt", ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"])
def test_gguf_py_files_match_gguf_dequantize(tmp_path, qt):
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize, quantize
    T = gguf.GGMLQuantizationType[qt]
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((6, 512)) * 0.1).astype(np.float32)
    q = quantize(x, T)
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("w", q, raw_dtype=T)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    want = dequantize(q, T).astype(np.float32).reshape(x.shape)
    with ckptkit.safe_open(str(path), framework="np") as f:
        a = f.get_tensor("w")
    assert a.dtype == np.float32 and a.shape == x.shape
    assert a.tobytes() == want.tobytes()


@pytest.mark.parametrize("qt", ["Q2_K", "Q4_K", "Q6_K"])
def test_k_quants_match_gguf_dequantize(tmp_path, qt):
    """K-quants ckptkit wrote, read back through safe_open and through gguf-py."""
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize
    rng = np.random.default_rng(5)
    src = tmp_path / "m.safetensors"
    ckptkit.numpy.save_file({"w": rng.standard_normal((4, 512)).astype(np.float32)}, str(src))
    path = tmp_path / "m.gguf"
    ckptkit.convert(src, path, dtype=qt.lower())
    t = next(t for t in gguf.GGUFReader(str(path)).tensors if t.name == "w")
    assert t.tensor_type.name == qt
    want = dequantize(np.asarray(t.data), t.tensor_type).astype(np.float32).reshape(4, 512)
    with ckptkit.safe_open(str(path), framework="np") as f:
        a = f.get_tensor("w")
    assert a.tobytes() == want.tobytes()


def test_undecodable_type_is_refused_naming_tensor_and_type(tmp_path):
    """Q8_K (ggml's intermediate type, which gguf-py cannot decode either) is refused."""
    gguf = pytest.importorskip("gguf")
    T = gguf.GGMLQuantizationType.Q8_K
    path = tmp_path / "q81.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("odd.weight", np.zeros((2, 292), np.uint8), raw_dtype=T)
    w.add_tensor("norm", np.ones(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with ckptkit.safe_open(str(path), framework="np") as f:
        assert f.get_tensor("norm").tolist() == [1.0] * 8
        with pytest.raises(ckptkit.UnsupportedError, match=r"odd\.weight.*Q8_K"):
            f.get_tensor("odd.weight")
    with pytest.raises(ckptkit.UnsupportedError, match=r"odd\.weight.*Q8_K"):
        ckptkit.numpy.load_file(str(path))
