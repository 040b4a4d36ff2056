"""ckptkit.torch.load against torch.load, and what it refuses."""
import collections
import io
import os
import pickle
import zipfile

import pytest
import torch

import ckptkit
import ckptkit.torch
from conftest import malicious_fixtures, real, same_tensor

TORCH_FIXTURES = [p for p in real("pytorch-*/*") + real("lightning-ckpt/*")
                  if p not in malicious_fixtures()]
BAD = malicious_fixtures()


def compare(got, want, path="root"):
    """Walks both trees: containers by shape, tensors bit for bit, the rest by value.
    Objects torch constructs and ckptkit keeps opaque are compared by class name."""
    if isinstance(want, torch.Tensor):
        assert isinstance(got, torch.Tensor), path
        same_tensor(got, want)
        assert isinstance(got, torch.nn.Parameter) == isinstance(want, torch.nn.Parameter), path
        return
    if isinstance(got, ckptkit.Opaque):
        cls = type(want)
        assert got.name == cls.__name__ or got.name == getattr(want, "__name__", None), path
        return
    if isinstance(got, ckptkit.Global):
        assert (got.module, got.name) == (want.__module__, want.__qualname__), path
        return
    if isinstance(want, dict):
        assert isinstance(got, dict), path
        assert list(got.keys()) == list(want.keys()), path
        assert isinstance(got, collections.OrderedDict) == isinstance(want,
                                                                      collections.OrderedDict)
        for k in want:
            compare(got[k], want[k], f"{path}.{k}")
        return
    if isinstance(want, (list, tuple)):
        assert type(got) is type(want) or (isinstance(want, torch.Size) and
                                           isinstance(got, torch.Size)), path
        assert len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            compare(g, w, f"{path}[{i}]")
        return
    if isinstance(want, float) and want != want:
        assert got != got, path
        return
    assert got == want, path


def torch_reference(p):
    """torch.load's answer for a fixture that is not marked malicious: the
    weights-only loader, or the full one for files it refuses (Lightning)."""
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        pass
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:
        pytest.skip(f"torch.load cannot load it either: {type(e).__name__}")


@pytest.mark.parametrize("path", TORCH_FIXTURES, ids=os.path.basename)
def test_against_torch_load(path):
    try:
        got = ckptkit.torch.load(path)
    except ckptkit.Error as e:
        # files ckptkit refuses must be refused for a reason it states
        assert os.path.basename(path) in str(e) or path in str(e)
        pytest.skip(f"ckptkit refuses it: {e}")
    want = torch_reference(path)
    compare(got, want)


def test_some_lightning_checkpoint_defeats_weights_only():
    refused = 0
    for p in real("lightning-ckpt/*.ckpt"):
        try:
            torch.load(p, map_location="cpu", weights_only=True)
        except Exception:
            refused += 1
            ckptkit.torch.load(p)
    assert refused >= 1


@pytest.mark.parametrize("path", real("lightning-ckpt/*.ckpt"), ids=os.path.basename)
def test_lightning_checkpoints_load(path):
    ck = ckptkit.torch.load(path)
    assert isinstance(ck["state_dict"], dict) and ck["state_dict"]
    assert all(isinstance(v, torch.Tensor) for v in ck["state_dict"].values())
    assert isinstance(ck["epoch"], int) and isinstance(ck["global_step"], int)
    hp = ck.get("hyper_parameters")
    assert hp is None or isinstance(hp, (dict, ckptkit.Opaque))


def test_opaque_objects_and_values(tmp_path):
    import argparse
    import functools
    p = tmp_path / "obj.pt"
    obj = {
        "sd": collections.OrderedDict(w=torch.arange(6.).reshape(2, 3)),
        "ns": argparse.Namespace(lr=0.1, name="x"),
        "fn": functools.partial(max, 1),
        "loss": torch.nn.MSELoss(),
        "size": torch.Size([2, 3]),
        "dev": torch.device("cpu"),
        "dt": torch.float16,
        "mixed": [1, 2.5, "s", b"b", None, True, (1, 2), {3, 4}, frozenset([5]), 2 ** 80,
                  1 + 2j],
        "param": torch.nn.Parameter(torch.ones(2)),
    }
    torch.save(obj, p)
    with pytest.raises(Exception):
        torch.load(p, weights_only=True)
    got = ckptkit.torch.load(p)
    same_tensor(got["sd"]["w"], obj["sd"]["w"])
    assert isinstance(got["sd"], collections.OrderedDict)
    assert got["ns"] == {"lr": 0.1, "name": "x"}
    assert isinstance(got["fn"], ckptkit.Opaque) and got["fn"].name == "partial"
    assert isinstance(got["loss"], ckptkit.Opaque)
    assert (got["loss"].module, got["loss"].name) == ("torch.nn.modules.loss", "MSELoss")
    assert got["loss"].reduction == "mean"  # state fields read as attributes
    assert isinstance(got["size"], torch.Size) and got["size"] == torch.Size([2, 3])
    assert got["dev"] == torch.device("cpu")
    assert got["dt"] is torch.float16
    assert got["mixed"] == obj["mixed"]
    assert isinstance(got["param"], torch.nn.Parameter)


def test_shared_and_views(tmp_path):
    base = torch.arange(12.)
    obj = {"a": base, "b": base[2:8].view(2, 3), "c": base.view(3, 4).t()}
    p = tmp_path / "v.pt"
    torch.save(obj, p)
    got = ckptkit.torch.load(p)
    compare(got, torch.load(p, weights_only=True))


def test_map_location(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"w": torch.ones(2)}, p)
    assert ckptkit.torch.load(p, map_location="cpu")["w"].device.type == "cpu"
    assert ckptkit.torch.load(p, map_location=torch.device("cpu"))["w"].device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ckptkit.UnsupportedError):
            ckptkit.torch.load(p, map_location="cuda:0")


def test_load_from_bytes_and_file_objects(tmp_path):
    p = tmp_path / "m.pt"
    torch.save({"w": torch.arange(4)}, p)
    data = p.read_bytes()
    assert torch.equal(ckptkit.torch.load(data)["w"], torch.arange(4))
    assert torch.equal(ckptkit.torch.load(io.BytesIO(data))["w"], torch.arange(4))


class _Payload:
    """Pickles as a call to os.system (only pickled here, never unpickled)."""

    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


def malicious_torch_zip(path, sentinel):
    """A torch.save-shaped zip whose data.pkl would run `touch SENTINEL` under
    Python's unpickler."""
    payload = pickle.dumps({"w": _Payload(f"touch {sentinel}")}, protocol=2)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


def test_dangerous_reference_raises_unsafe(tmp_path):
    p = tmp_path / "evil.pt"
    sentinel = tmp_path / "SENTINEL"
    malicious_torch_zip(p, sentinel)
    with pytest.raises(ckptkit.UnsafeError, match="system"):
        ckptkit.torch.load(p)
    with pytest.raises(ckptkit.UnsafeError):
        ckptkit.torch.load_file(p)
    with pytest.raises(ckptkit.UnsafeError):
        ckptkit.safe_open(p, "pt")
    # allow_unsafe reads it and still runs nothing: the object stays opaque
    got = ckptkit.torch.load(p, allow_unsafe=True)
    assert isinstance(got["w"], ckptkit.Opaque) and got["w"].name == "system"
    assert not sentinel.exists()
    r = ckptkit.scan(p)
    assert r.status == "unsafe" and not r.safe
    assert any(g["name"] == "system" for g in r.dangerous)
    assert not sentinel.exists()


@pytest.mark.parametrize("path", sorted(BAD), ids=os.path.basename)
def test_malicious_fixtures(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # payloads writing relative files would land here
    before = set(os.listdir(tmp_path))
    with pytest.raises(ckptkit.Error):
        ckptkit.torch.load(path)
    with pytest.raises(ckptkit.Error):
        ckptkit.torch.load_file(path)
    try:
        r = ckptkit.scan(path)
        assert r.status == "unsafe", r
    except ckptkit.Error:
        pass  # unparseable: never called clean
    assert set(os.listdir(tmp_path)) == before
