"""Views of the mapped file: no copies, the mapping's lifetime, writes that
never reach the file."""
import gc
import json
import os
import struct
import threading

import numpy as np
import pytest
import torch

import ckptkit
import ckptkit.numpy
import ckptkit.torch
from ckptkit import _ckptkit


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def mapping_of(path):
    """(start, end) of the mappings of PATH in this process."""
    real = os.path.realpath(path)
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == real:
                a, b = parts[0].split("-")
                out.append((int(a, 16), int(b, 16)))
    return out


def sparse_safetensors(path, n_tensors=16, each=64 << 20):
    """A safetensors file of N_TENSORS F32 tensors of EACH bytes, all zero
    except one marker per tensor; written sparse (holes), so it is quick."""
    header = {}
    for i in range(n_tensors):
        header[f"t{i}"] = {"dtype": "F32", "shape": [each // 4],
                           "data_offsets": [i * each, (i + 1) * each]}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        base = f.tell()
        for i in range(n_tensors):
            f.seek(base + i * each + 4 * i)
            f.write(struct.pack("<f", float(i + 1)))
        f.truncate(base + n_tensors * each)
    return n_tensors * each


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    p = tmp_path_factory.mktemp("big") / "big.safetensors"
    size = sparse_safetensors(str(p))
    return str(p), size


def test_rss_does_not_grow_with_the_file(big):
    path, size = big
    gc.collect()
    before = rss()
    arrays = ckptkit.numpy.load_file(path)
    tensors = ckptkit.torch.load_file(path)
    grown = rss() - before
    assert len(arrays) == len(tensors) == 16
    assert grown < 0.05 * size, f"RSS grew by {grown} bytes for a {size}-byte file"
    spans = mapping_of(path)
    assert spans, "the file is not mapped"
    for i in range(16):
        a, t = arrays[f"t{i}"], tensors[f"t{i}"]
        pa, pt = a.ctypes.data, t.data_ptr()
        assert any(s <= pa < e for s, e in spans)
        assert any(s <= pt < e for s, e in spans)
        assert a[i] == i + 1 and t[i].item() == i + 1  # the marker, read in place
    assert rss() - before < 0.05 * size


def test_writes_into_views_never_reach_the_file(tmp_path):
    p = tmp_path / "w.safetensors"
    ckptkit.numpy.save_file({"a": np.arange(8, dtype=np.float32)}, str(p))
    data = p.read_bytes()
    with ckptkit.safe_open(p, "np") as f:
        a = f.get_tensor("a")
        assert a.flags.writeable
        a[:] = 42
        assert np.all(f.get_tensor("a") == 42)  # one mapping: the process sees its write
    t = ckptkit.torch.load_file(p)["a"]
    t.add_(1)  # no warning about non-writable buffers, no effect on the file
    assert p.read_bytes() == data
    assert np.array_equal(ckptkit.numpy.load_file(p)["a"], np.arange(8, dtype=np.float32))


def test_views_outlive_the_handle():
    import tempfile
    d = tempfile.mkdtemp()
    p = os.path.join(d, "l.safetensors")
    ckptkit.numpy.save_file({"a": np.arange(1000, dtype=np.int64),
                             "b": np.ones((3, 3), dtype=np.float64)}, p)
    gc.collect()
    live = _ckptkit._live_models()
    f = ckptkit.safe_open(p, "np")
    a = f.get_tensor("a")
    t = ckptkit.safe_open(p, "pt").get_tensor("b")
    s = f.get_slice("a")
    f.close()
    with pytest.raises(ValueError):
        f.get_tensor("a")
    with pytest.raises(ValueError):
        f.keys()
    with pytest.raises(ValueError):
        s[0:2]
    del f, s
    gc.collect()
    os.unlink(p)  # the mapping holds the data, not the name
    assert a.sum() == sum(range(1000))
    assert t.sum().item() == 9
    assert _ckptkit._live_models() == live + 2
    del a
    gc.collect()
    assert _ckptkit._live_models() == live + 1
    del t
    gc.collect()
    assert _ckptkit._live_models() == live  # freed with the last view


def test_materialised_when_not_usable_as_stored(tmp_path):
    p = tmp_path / "s.pt"
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    torch.save({"t": base.t(), "d": base}, p)
    spans = mapping_of(str(p))
    with ckptkit.safe_open(p, "np") as f:
        t = f.get_tensor("t")
        d = f.get_tensor("d")
        spans = mapping_of(str(p))
        assert np.array_equal(t, base.t().numpy())
        assert not any(s <= t.ctypes.data < e for s, e in spans)  # gathered copy
        assert any(s <= d.ctypes.data < e for s, e in spans)      # in place


def test_threads(tmp_path):
    p = tmp_path / "th.safetensors"
    ref = {f"t{i}": np.random.default_rng(i).standard_normal((64, 33)).astype(np.float32)
           for i in range(32)}
    ckptkit.numpy.save_file(ref, str(p))
    pth = tmp_path / "th.pt"
    torch.save({k: torch.from_numpy(v).t() for k, v in ref.items()}, pth)  # materialised path
    errors = []
    f = ckptkit.safe_open(p, "np")
    g = ckptkit.safe_open(pth, "pt")

    def work(n):
        try:
            for _ in range(5):
                for k, v in ref.items():
                    assert np.array_equal(f.get_tensor(k), v)
                    assert np.array_equal(g.get_tensor(k).numpy(), v.T)
                out = tmp_path / f"out{n}.safetensors"
                ckptkit.numpy.save_file({k: v + n for k, v in ref.items()}, str(out))
                back = ckptkit.numpy.load_file(out)
                for k, v in ref.items():
                    assert np.array_equal(back[k], v + n)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    f.close()
    g.close()
    assert not errors, errors


def test_read_only_mapping_gives_read_only_views(tmp_path):
    p = tmp_path / "r.safetensors"
    ckptkit.numpy.save_file({"a": np.arange(4, dtype=np.int32)}, str(p))
    m = _ckptkit.Model(str(p), writable=False)
    v = memoryview(m.view(0))
    assert v.readonly
    a = np.frombuffer(m.view(0), dtype=np.int32)
    assert not a.flags.writeable and a.tolist() == [0, 1, 2, 3]
    w = memoryview(_ckptkit.Model(str(p)).view(0))
    assert not w.readonly
