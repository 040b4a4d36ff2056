"""The grid quantisation types (IQ1_S, IQ1_M, IQ2_*, IQ3_*) through the package:
GGUFWriter files of random blocks (finite fp16 scales) read by safe_open and
load_file give gguf-py's dequantize values bit for bit, as float32."""
import numpy as np
import pytest

import ckptkit
import ckptkit.numpy

IQ = ["IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M"]


def _blocks(rng, name, nb, bb):
    raw = rng.integers(0, 256, (nb, bb), dtype=np.uint8)
    d = (rng.standard_normal(nb) * 0.05).astype(np.float16).view(np.uint16)
    if name == "IQ1_M":  # the fp16 scale is the top nibbles of the four scale words
        sc = raw[:, 48:56].copy().view("<u2")
        for k in range(4):
            sc[:, k] = (sc[:, k] & 0x0FFF) | (((d >> (4 * k)) & 0xF) << 12)
        raw[:, 48:56] = sc.view(np.uint8)
    else:
        raw[:, 0:2] = d.view(np.uint8).reshape(nb, 2)
    return raw


@pytest.mark.parametrize("qt", IQ)
def test_grid_types_match_gguf_dequantize(tmp_path, qt):
    gguf = pytest.importorskip("gguf")
    from gguf.quants import dequantize
    T = gguf.GGMLQuantizationType[qt]
    bb = gguf.GGML_QUANT_SIZES[T][1]
    rng = np.random.default_rng(17 + T.value)
    raw = _blocks(rng, qt, 4 * 3, bb).reshape(4, 3 * bb)  # 4 rows of 768 elements
    path = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("blk.0.ffn_down.weight", raw, raw_shape=raw.shape, raw_dtype=T)
    w.add_tensor("norm", np.ones(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    want = dequantize(raw.reshape(-1), T).astype(np.float32).reshape(4, 768)
    assert np.all(np.isfinite(want))
    with ckptkit.safe_open(str(path), framework="np") as f:
        assert f.get_slice("blk.0.ffn_down.weight").get_dtype() == qt
        a = f.get_tensor("blk.0.ffn_down.weight")
        assert a.dtype == np.float32 and a.shape == (4, 768)
        assert a.tobytes() == want.tobytes()
        rows = f.get_slice("blk.0.ffn_down.weight")[2:4]
        assert rows.tobytes() == want[2:4].tobytes()
    got = ckptkit.numpy.load_file(str(path))
    assert got["blk.0.ffn_down.weight"].tobytes() == want.tobytes()
