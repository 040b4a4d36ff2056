"""ckptkit's torch reader against real PyTorch (torch 1.13), value by value.

Every checkpoint here is written at test time by torch.save into tmp_path (zip
and legacy formats), then read back twice: by torch.load (the reference) and
by ckptkit through tests/interop/dump_tensors.c, a small program built against
build/libckptkit.a that prints each tensor's name, dtype, shape and dense
bytes. Covered: every dtype torch 1.13 can save, 0-dim and empty tensors,
views (offsets, slices, transposes, stride-0 expands) sharing storages,
Parameters, nested containers, a Lightning-shaped checkpoint with real Adam
state, a whole pickled nn.Module, a big-endian archive (made by rewriting a
little-endian one), self-referencing dicts, --key and --all, quantized and
sparse tensors (skipped with a warning), and the shared fixtures.

Malicious inputs (shared MALICIOUS fixtures and our own crafted files in
tests/corpus/bad/torch) are never given to Python's pickle: they go to
`ckptkit scan` (must say unsafe or error) and `ckptkit convert` (must fail),
and the canary file their payload would create must never appear.
"""
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import types
import zipfile

import pytest
import torch

from compat import record, version_of  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))
LIB = os.path.join(ROOT, "build", "libckptkit.a")
FIXTURES = os.path.join(ROOT, "..", "shared", "fixtures", "real")
BAD = os.path.join(ROOT, "tests", "corpus", "bad", "torch")
TORCH_MAJOR = int(torch.__version__.split(".")[0])

CK_DTYPE = {
    torch.float32: "F32", torch.float64: "F64", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int8: "I8", torch.int16: "I16", torch.int32: "I32", torch.int64: "I64",
    torch.uint8: "U8", torch.bool: "BOOL", torch.complex64: "C64", torch.complex128: "C128",
}


# ---- helpers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def dumper(tmp_path_factory):
    """Builds dump_tensors against the static library."""
    assert os.path.exists(LIB), "build/libckptkit.a is missing: run make first"
    exe = str(tmp_path_factory.mktemp("bin") / "dump_tensors")
    subprocess.run(["cc", "-std=c11", "-O1", "-I", os.path.join(ROOT, "include"), "-o", exe,
                    os.path.join(ROOT, "tests", "interop", "dump_tensors.c"), LIB, "-lz", "-lm"],
                   check=True)
    return exe


def dump(dumper, path, *args, ok=True):
    r = subprocess.run([dumper, str(path), *args], capture_output=True, text=True, timeout=120)
    if ok:
        assert r.returncode == 0, r.stderr
    else:
        return r
    lines = r.stdout.splitlines()
    head = json.loads(lines[0])
    tensors = [json.loads(l) for l in lines[1:]]
    return head, tensors, r.stderr


def tensor_bytes(t):
    t = t.detach().resolve_conj().resolve_neg().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def check_same(got, want):
    """got: list of dumped tensors; want: ordered name -> torch tensor."""
    assert [g["name"] for g in got] == list(want), ([g["name"] for g in got], list(want))
    for g in got:
        w = want[g["name"]]
        assert g["dtype"] == CK_DTYPE[w.dtype], g["name"]
        assert g["shape"] == list(w.shape), g["name"]
        assert bytes.fromhex(g["hex"]) == tensor_bytes(w), g["name"]


def flat(obj, prefix=""):
    """Every tensor in a nested torch.load result, by dotted path (like --all)."""
    out = {}

    def join(p, k):
        return f"{p}.{k}" if p else str(k)

    def walk(o, p, seen):
        if isinstance(o, torch.Tensor):
            out[p or "tensor"] = o
            return
        if id(o) in seen:
            return
        if isinstance(o, torch.nn.Module):
            for k, v in o.state_dict().items():
                out[join(p, k)] = v
            return
        if isinstance(o, _Opaque):
            state = o.__dict__.get("_state")
            if isinstance(state, dict) and "_parameters" in state and "_modules" in state:
                nonp = state.get("_non_persistent_buffers_set") or set()
                for k, v in state["_parameters"].items():
                    if v is not None:
                        out[join(p, k)] = v
                for k, v in state.get("_buffers", {}).items():
                    if v is not None and k not in nonp:
                        out[join(p, k)] = v
                for k, v in state["_modules"].items():
                    walk(v, join(p, k), seen | {id(o)})
                return
            items = o.__dict__.get("_items") or {}
            o = state if state is not None else items
        if isinstance(o, dict):
            seen = seen | {id(o)}
            for k, v in o.items():
                walk(v, f"{p}.{k}" if p else str(k), seen)
        elif isinstance(o, (list, tuple)):
            seen = seen | {id(o)}
            for i, v in enumerate(o):
                walk(v, f"{p}.{i}" if p else str(i), seen)

    walk(obj, prefix, frozenset())
    return out


def ckptkit(*args, timeout=120):
    return subprocess.run([CKPTKIT, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def scanner(tmp_path_factory):
    """`ckptkit scan`, or the same command built from tools/ckptkit/cmd_scan.c
    when the CLI's command table does not list it yet."""
    r = ckptkit("scan", "--help")
    if r.returncode == 0:
        return [CKPTKIT, "scan"]
    d = tmp_path_factory.mktemp("scanbin")
    main = d / "main.c"
    main.write_text("int cmd_scan(int, char **);\n"
                    "int main(int c, char **v) { return cmd_scan(c - 1, v + 1); }\n")
    exe = str(d / "scan")
    tools = os.path.join(ROOT, "tools", "ckptkit")
    subprocess.run(["cc", "-std=c11", "-D_GNU_SOURCE", "-O1", "-I", os.path.join(ROOT, "include"),
                    "-o", exe, str(main), os.path.join(tools, "cmd_scan.c"),
                    os.path.join(tools, "cli.c"), LIB, "-lz", "-lm"], check=True)
    return [exe, "scan"]


def scan_json(scanner, path):
    r = subprocess.run([*scanner, "--json", str(path)], capture_output=True, text=True,
                       timeout=120)
    doc = json.loads(r.stdout)
    return r.returncode, doc["files"][0]


def save_both(obj, tmp_path, name):
    z = tmp_path / f"{name}.pt"
    l = tmp_path / f"{name}_legacy.pt"
    torch.save(obj, z)
    torch.save(obj, l, _use_new_zipfile_serialization=False)
    return [z, l]


# ---- dtypes, shapes, views ------------------------------------------------------


def sample(dtype, shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        lo, hi = (0, 255) if dtype == torch.uint8 else (-100, 100)
        return torch.randint(lo, hi, shape, generator=g).to(dtype)
    if dtype.is_complex:
        return torch.randn(shape, dtype=dtype, generator=g)
    return torch.randn(shape, generator=g).to(dtype)


def test_every_dtype(dumper, tmp_path):
    sd = {f"t_{str(dt).split('.')[1]}": sample(dt, (3, 5), i) for i, dt in enumerate(CK_DTYPE)}
    for path in save_both(sd, tmp_path, "dtypes"):
        head, got, _ = dump(dumper, path)
        assert head["format"] in ("torch-zip", "torch-legacy")
        check_same(got, torch.load(path))
    record("PyTorch", version_of(torch), "reads",
           "zip and legacy torch.save: every dtype of torch 1.13, views sharing storages, nested "
           "containers, self-references")


def test_scalars_and_empty(dumper, tmp_path):
    sd = {
        "scalar": torch.tensor(3.5),
        "int_scalar": torch.tensor(-7, dtype=torch.int64),
        "empty": torch.zeros(0),
        "empty3": torch.zeros(2, 0, 3, dtype=torch.float16),
        "one": torch.ones(1, 1, 1),
    }
    for path in save_both(sd, tmp_path, "small"):
        _, got, _ = dump(dumper, path)
        check_same(got, torch.load(path))


def test_views_share_storage(dumper, tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    line = torch.arange(4, dtype=torch.float64)
    sd = {
        "base": base,
        "row": base[1],
        "block": base[1:3, 2:5],
        "t": base.t(),
        "col": base[:, 2],
        "strided": base[::2, ::3],
        "expand": line.expand(3, 4),
        "offset_only": base.view(-1)[7:],
    }
    for path in save_both(sd, tmp_path, "views"):
        _, got, _ = dump(dumper, path)
        check_same(got, torch.load(path))
        ids = {g["name"]: g["storage"] for g in got}
        assert len({ids[n] for n in ("base", "row", "block", "t", "col", "strided")}) == 1
        assert ids["expand"] != ids["base"]


def test_parameters_and_nested(dumper, tmp_path):
    obj = {
        "weight": torch.nn.Parameter(torch.randn(2, 3)),
        "nested": {"a": [torch.ones(2), (torch.zeros(1, dtype=torch.int32), {"b": torch.eye(2)})]},
        "note": "not a tensor",
        7: torch.tensor([1, 2, 3]),
    }
    for path in save_both(obj, tmp_path, "nested"):
        _, got, _ = dump(dumper, path)
        check_same(got, flat(torch.load(path)))
        _, got_all, _ = dump(dumper, path, "--all")
        check_same(got_all, flat(torch.load(path)))
        _, got_key, _ = dump(dumper, path, "--key", "nested.a.1")
        check_same(got_key, flat(torch.load(path)["nested"]["a"][1]))


# ---- training checkpoints ----------------------------------------------------------


def lightning_checkpoint():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        loss = model(torch.randn(5, 4)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "1.9.0",
        "state_dict": model.state_dict(),
        "loops": {"fit_loop": {"epoch_progress": {"total": {"ready": 4}}}},
        "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {
            "best_model_score": torch.tensor(0.25), "best_model_path": "/tmp/x.ckpt"}},
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"lr": 1e-3, "layers": [4, 8, 2], "name": "tiny", "betas": (0.9, 0.99)},
    }


def test_lightning_checkpoint(dumper, tmp_path):
    ckpt = lightning_checkpoint()
    for path in save_both(ckpt, tmp_path, "lightning"):
        ref = torch.load(path)
        head, got, _ = dump(dumper, path)
        check_same(got, ref["state_dict"])
        assert head["meta"] == {"epoch": "3", "global_step": "120",
                                "pytorch-lightning_version": "1.9.0"}
        values = head["values"]
        assert values["state_dict"] == {"tensors": len(ref["state_dict"])}
        assert values["hyper_parameters"]["layers"] == [4, 8, 2]
        assert values["optimizer_states"][0]["param_groups"][0]["lr"] == 1e-3
        exp_avg = values["optimizer_states"][0]["state"]["0"]["exp_avg"]
        assert exp_avg == {"tensor": {"dtype": "F32", "shape": [8, 4]}}
        _, got_all, _ = dump(dumper, path, "--all")
        want = flat(ref)
        check_same(got_all, want)
        assert "optimizer_states.0.state.0.exp_avg" in want
        _, got_opt, _ = dump(dumper, path, "--key", "optimizer_states.0.state")
        check_same(got_opt, flat(ref["optimizer_states"][0]["state"]))
    record("PyTorch", version_of(torch), "reads",
           "Lightning-shaped checkpoint: state_dict, metadata, Adam state (--all, --key)")


class Tiny(torch.nn.Module):
    """Pickled whole by test_whole_module (by reference to this module)."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3), torch.nn.BatchNorm2d(3))
        self.head = torch.nn.Linear(3, 4)
        self.register_buffer("scale", torch.tensor([2.0, 3.0]))
        self.register_buffer("scratch", torch.zeros(3), persistent=False)
        self.unused = None


def test_whole_module(dumper, tmp_path):
    torch.manual_seed(1)
    model = Tiny()
    want = model.state_dict()
    assert "scratch" not in want
    for path in save_both(model, tmp_path, "module"):
        head, got, _ = dump(dumper, path)
        check_same(got, want)
        assert head["values"] == {"tensors": len(want)}
        _, got_key, _ = dump(dumper, path, "--key", "enc")
        check_same(got_key, model.enc.state_dict())
    record("PyTorch", version_of(torch), "reads", "a whole pickled nn.Module (zip and legacy)")


def test_self_reference(dumper, tmp_path):
    data = {"w": torch.ones(3), "step": 5}
    data["state_dict"] = data
    data["again"] = [data, {"inner": data}]
    for path in save_both(data, tmp_path, "selfref"):
        _, got, _ = dump(dumper, path)
        check_same(got, {"w": data["w"]})
        _, got_all, _ = dump(dumper, path, "--all")
        check_same(got_all, {"w": data["w"]})


def test_state_dict_rules(dumper, tmp_path):
    sd = {"a.weight": torch.randn(2, 2), "a.bias": torch.randn(2)}
    cases = {
        "model_state_dict": {"model_state_dict": sd, "optimizer_state_dict": {"state": {}},
                             "epoch": 3},
        "model": {"model": sd, "args": {"lr": 0.1}},
        "module": {"module": sd},
        "ema": {"ema": sd, "config": "x"},
        "state_dict_nested": {"state_dict": {"state_dict": sd}},
    }
    for name, obj in cases.items():
        for path in save_both(obj, tmp_path, name):
            _, got, _ = dump(dumper, path)
            check_same(got, sd)


def test_missing_key(dumper, tmp_path):
    path = tmp_path / "k.pt"
    torch.save({"a": {"b": torch.ones(1)}}, path)
    r = dump(dumper, path, "--key", "a.c", ok=False)
    assert r.returncode == 1
    assert "key 'a.c'" in r.stderr and "no entry 'c'" in r.stderr


def test_quantized_and_sparse_are_skipped(dumper, tmp_path):
    q = torch.quantize_per_tensor(torch.randn(4), 0.1, 3, torch.qint8)
    s = torch.eye(3).to_sparse()
    keep = torch.randn(2)
    for path in save_both({"q": q, "s": s, "keep": keep}, tmp_path, "odd"):
        head, got, err = dump(dumper, path)
        check_same(got, {"keep": keep})
        assert "tensor 'q': quantized tensor" in err
        assert "tensor 's': sparse tensor" in err
        assert head["values"]["tensors"] == 1
        assert head["values"]["skipped"]["q"]["tensor"]["unsupported"] == "quantized tensor"
        assert head["values"]["skipped"]["s"]["tensor"]["unsupported"] == "sparse tensor"
    record("PyTorch", version_of(torch), "reads",
           "quantized and sparse tensors: refused, each named in a warning")


def rewrite_zip(src, dst, change):
    """Copies a torch zip record by record, letting CHANGE(name, bytes) edit
    each (returns the new bytes, or None to drop the record)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = change(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)


def test_big_endian_archive(dumper, tmp_path):
    sd = {"f": torch.randn(3, 4), "h": torch.randn(5).half(), "i": torch.arange(6),
          "c": torch.randn(3, dtype=torch.complex64), "b": torch.tensor([True, False]),
          "t": torch.randn(4, 3).t()}
    little = tmp_path / "little.pt"
    big = tmp_path / "big.pt"
    torch.save(sd, little)
    ref = torch.load(little)
    sizes = {}  # element size per storage key (complex: per component)
    with zipfile.ZipFile(little) as z:
        prefix = z.namelist()[0].split("/")[0]
        keys = sorted(n.split("/")[-1] for n in z.namelist() if "/data/" in n)
    for key, name in zip(keys, sd):  # torch 1.13 numbers storages in save order
        t = sd[name]
        sizes[key] = 4 if t.dtype == torch.complex64 else t.element_size()

    def change(name, data):
        if name.endswith("/byteorder"):  # torch 2.x writes one ("little")
            return b"big"
        if name.endswith("/data.pkl") or name.endswith("/version"):
            return data
        if "/data/" in name:
            es = sizes[name.split("/")[-1]]
            return b"".join(data[i:i + es][::-1] for i in range(0, len(data), es))
        return data

    rewrite_zip(little, big, change)
    with zipfile.ZipFile(big, "a") as z:
        if f"{prefix}/byteorder" not in z.namelist():  # torch 1.13 writes none
            z.writestr(f"{prefix}/byteorder", "big")
    _, got, _ = dump(dumper, big)
    check_same(got, ref)
    record("PyTorch", version_of(torch), "reads", "big-endian archives (byteorder record)")


def test_crc_checked(dumper, tmp_path):
    path = tmp_path / "crc.pt"
    torch.save({"w": torch.arange(64, dtype=torch.float32)}, path)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if "/data/" in i.filename)
        off = info.header_offset
    name_len, extra_len = struct.unpack("<HH", raw[off + 26:off + 30])
    data_off = off + 30 + name_len + extra_len
    raw[data_off + 5] ^= 0xFF
    bad = tmp_path / "crc_bad.pt"
    bad.write_bytes(bytes(raw))
    r = dump(dumper, bad, "--verify-crc", ok=False)
    assert r.returncode == 1 and "CRC-32" in r.stderr
    out = tmp_path / "out.safetensors"
    r = ckptkit("convert", str(bad), str(out))
    assert r.returncode == 1 and "CRC-32" in r.stderr, r.stderr
    assert not out.exists()


# ---- shared fixtures -------------------------------------------------------------------


def manifest():
    rows = {}
    with open(os.path.join(FIXTURES, "MANIFEST.tsv")) as f:
        next(f)
        for line in f:
            cols = line.rstrip("\n").split("\t")
            rows[cols[0]] = cols[-1]
    return rows


TORCH_DIRS = ("pytorch-zip", "pytorch-legacy", "pytorch-tar", "lightning-ckpt")


def fixture_files(malicious):
    rows = manifest()
    out = []
    for d in TORCH_DIRS:
        for name in sorted(os.listdir(os.path.join(FIXTURES, d))):
            rel = f"{d}/{name}"
            if ("MALICIOUS" in rows.get(rel, "")) == malicious:
                out.append(rel)
    return out


class _Opaque:
    """Stand-in for classes torch.load cannot import (darts, torchmetrics)."""

    def __init__(self, *a, **k):
        self.__dict__["_items"] = {}
        self.__dict__["_list"] = []

    def __setstate__(self, state):
        self.__dict__["_state"] = state

    def __setitem__(self, k, v):
        self.__dict__.setdefault("_items", {})[k] = v

    def append(self, v):
        self.__dict__.setdefault("_list", []).append(v)

    def extend(self, vs):
        for v in vs:
            self.append(v)


def _opaque_module():
    """A pickle module for torch.load that maps unknown classes to _Opaque.
    Used only on the benign shared fixtures."""
    mod = types.ModuleType("opaque_pickle")

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module.split(".")[0] in ("torch", "collections", "builtins", "__builtin__",
                                        "_codecs", "numpy", "copyreg", "argparse"):
                try:
                    return super().find_class(module, name)
                except Exception:
                    pass
            return type(name, (_Opaque,), {})

    mod.Unpickler = Unpickler
    mod.load = lambda f, **kw: Unpickler(f, **kw).load()
    mod.UnpicklingError = pickle.UnpicklingError
    return mod


def reference_state(path, monkeypatch):
    if TORCH_MAJOR >= 2:  # benign fixtures only: weights_only would refuse their classes
        return torch.load(path, weights_only=False, pickle_module=_opaque_module())
    # torch 1.13 here ignores its pickle_module argument; patch the module it uses
    monkeypatch.setattr(torch.serialization, "pickle", _opaque_module())
    try:
        return torch.load(path)
    finally:
        monkeypatch.undo()


@pytest.mark.parametrize("rel", fixture_files(malicious=False))
def test_fixture_reads(dumper, monkeypatch, rel):
    path = os.path.join(FIXTURES, rel)
    head, got, _ = dump(dumper, path)
    assert head["format"].startswith("torch-")
    if rel.startswith("pytorch-tar/"):
        assert got, "the tar fixtures hold tensors"
        return  # torch 1.13 cannot load these hand-built tar files
    ref = reference_state(path, monkeypatch)
    want = flat(ref)
    by_name = {}
    for g in got:
        # every tensor ckptkit exposes is one torch.load sees, with the same values
        match = [n for n in want if n == g["name"] or n.endswith("." + g["name"])]
        assert match, g["name"]
        by_name[g["name"]] = want[match[0]]
    check_same(got, by_name)


@pytest.mark.parametrize("rel", fixture_files(malicious=True))
def test_malicious_fixtures(scanner, tmp_path, rel):
    path = os.path.join(FIXTURES, rel)
    code, res = scan_json(scanner, path)
    assert res["status"] in ("unsafe", "error"), res
    assert code in (1, 2)
    out = tmp_path / "out.safetensors"
    r = ckptkit("convert", path, str(out))
    assert r.returncode == 1, r.stderr
    assert not out.exists()


# ---- crafted malicious files ------------------------------------------------------------


def crafted():
    if not os.path.isdir(BAD):
        return []
    return sorted(f for f in os.listdir(BAD)
                  if f.startswith("evil_") and not f.endswith(".expected"))


@pytest.mark.parametrize("name", crafted())
def test_crafted_malicious_never_runs(scanner, dumper, tmp_path, name):
    """Scan says unsafe (or fails); loading, listing and converting never run the
    payload. Files with a .expected line are malformed: they must not load.
    The others are refused by default and, with --allow-unsafe, load minus the
    payload, which stays an opaque object."""
    path = os.path.join(BAD, name)
    canary = "/tmp/ckptkit-canary-" + name.split(".")[0]
    if os.path.exists(canary):
        os.unlink(canary)
    expected = os.path.join(BAD, name.rsplit(".", 1)[0] + ".expected")
    code, res = scan_json(scanner, path)
    assert res["status"] in ("unsafe", "error"), res
    assert code == (1 if res["status"] == "unsafe" else 2)
    if res["status"] == "unsafe":
        assert any(g["verdict"] == "dangerous" and g["name"] == "system" for g in res["globals"])
    out = tmp_path / "out.safetensors"
    r = ckptkit("convert", path, str(out))
    if os.path.exists(expected):
        assert r.returncode == 1, r.stdout + r.stderr
        assert not out.exists()
        want = open(expected).read().strip()
        rel = os.path.relpath(path, ROOT)
        r = subprocess.run([dumper, rel], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and r.stderr.strip().splitlines()[-1] == want
    else:
        # well-formed but dangerous: refused unless --allow-unsafe
        assert r.returncode == 1, r.stdout + r.stderr
        assert "refusing to load" in r.stderr and not out.exists()
        r = ckptkit("convert", "--allow-unsafe", path, str(out))
        assert r.returncode == 0, r.stderr
        _, got, _ = dump(dumper, str(out))
        assert [g["name"] for g in got] in (["w"], [])
    ckptkit("info", "--json", path)
    ckptkit("ls", "--all", "--allow-unsafe", path)
    assert not os.path.exists(canary)


def test_crafted_files_present():
    names = crafted()
    assert len(names) >= 10, names
