"""ckptkit and the PyTorch of the lane, both ways (torch 2.13 in the pinned
environment, torch 1.13 in the oldest lane).

Writes (torch reads ckptkit's files): a safetensors file holding one tensor of
every dtype this torch has (random bits, NaN and Inf codes included), plus a
0-d and an empty tensor, is converted to .pth, .pt, .bin and .ckpt; each loads
with torch.load(weights_only=True) and, where torch has it (>= 2.1), with
mmap=True, bit for bit. A torch.save'd file whose tensors share a storage at
different offsets and strides comes back through ckptkit still sharing one
storage, each view with its strides and offset.

Reads (ckptkit reads torch's files): one state (shared storages at offsets,
non-contiguous views, 0-d and empty tensors, Parameters with and without
grad, every dtype this torch can create) saved in every mode torch.save has:
the zip default, _use_new_zipfile_serialization=False, pickle_protocol 2 to 5,
and the torch.utils.serialization.config save options that change the
archive (compute_crc32=False, storage_alignment) where torch has them.
"""
import json
import os
import struct
import subprocess

import numpy as np
import pytest
import torch

from compat import record, version_of

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))
LIB = os.path.join(ROOT, "build", "libckptkit.a")
TV = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
TORCH = version_of(torch)
HAS_MMAP = TV >= (2, 1)

# ckptkit dtype -> torch dtype name; the lane keeps those its torch has
TORCH_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
    "BOOL": "bool", "C64": "complex64", "C128": "complex128",
    "U16": "uint16", "U32": "uint32", "U64": "uint64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}
LANE = {ck: getattr(torch, n) for ck, n in TORCH_NAMES.items() if hasattr(torch, n)}
CK_OF = {dt: ck for ck, dt in LANE.items()}


def ck(*args, rc=0):
    r = subprocess.run([CKPTKIT, *map(str, args)], capture_output=True, text=True, timeout=120)
    assert r.returncode == rc, (args, r.returncode, r.stderr)
    return r


@pytest.fixture(scope="module")
def dumper(tmp_path_factory):
    assert os.path.exists(LIB), "build/libckptkit.a is missing: run make first"
    exe = str(tmp_path_factory.mktemp("bin") / "dump_tensors")
    subprocess.run(["cc", "-std=c11", "-O1", "-I", os.path.join(ROOT, "include"), "-o", exe,
                    os.path.join(ROOT, "tests", "interop", "dump_tensors.c"), LIB, "-lz", "-lm"],
                   check=True)
    return exe


def dump(dumper, path):
    r = subprocess.run([dumper, str(path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    return json.loads(lines[0]), [json.loads(x) for x in lines[1:]], r.stderr


def bits(t):
    """The dense bytes of T in its own dtype."""
    t = t.detach()
    if t.is_conj():
        t = t.resolve_conj()
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def storage_ptr(t):
    s = t.untyped_storage() if hasattr(t, "untyped_storage") else t.storage()
    return s.data_ptr()


def load(path, mmap=False):
    if mmap:
        return torch.load(path, weights_only=True, mmap=True)
    return torch.load(path, weights_only=True)


def write_safetensors(path, tensors, metadata=None):
    """tensors: [(name, ckptkit dtype, shape, bytes)] in order."""
    header, off, data = {}, 0, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def esize(ckdt):
    return torch.empty(0, dtype=LANE[ckdt]).element_size()


def random_bits(rng, ckdt, n):
    if ckdt == "BOOL":
        return rng.integers(0, 2, n, dtype=np.uint8).tobytes()
    return rng.integers(0, 256, n * esize(ckdt), dtype=np.uint8).tobytes()


# ---- torch reads what ckptkit writes ----------------------------------------------------


def test_torch_loads_every_dtype_we_write(tmp_path):
    rng = np.random.default_rng(7)
    spec = []
    for ckdt in LANE:
        if ckdt == "C128":  # not a safetensors dtype: comes from torch below
            continue
        spec.append((f"t_{ckdt.lower()}", ckdt, (3, 5), random_bits(rng, ckdt, 15)))
    spec.append(("scalar", "F32", (), struct.pack("<f", 2.5)))
    spec.append(("empty", "F16", (0, 4), b""))
    spec.append(("empty_u8", "U8", (2, 0), b""))
    src = tmp_path / "all.safetensors"
    write_safetensors(src, spec)
    # C128 is no safetensors dtype: it comes from a torch file
    c128 = torch.from_numpy(np.frombuffer(random_bits(rng, "C128", 6), dtype=np.complex128).copy())
    src_pt = tmp_path / "c128.pt"
    torch.save({"t_c128": c128.reshape(2, 3)}, src_pt)
    cspec = [("t_c128", "C128", (2, 3), bits(c128))]
    seen = set()
    for ext in ("pth", "pt", "bin", "ckpt"):
        for source, want in ((src, spec), (src_pt, cspec)):
            out = tmp_path / f"out.{ext}"
            ck("convert", "-q", "--force", source, out)
            for mmap in ([False, True] if HAS_MMAP else [False]):
                obj = load(out, mmap)
                # a .ckpt made from tensors wraps them in state_dict; from a torch
                # file, convert rewrites that file's whole object as it is
                sd = obj["state_dict"] if ext == "ckpt" and source == src else obj
                assert list(sd) == [s[0] for s in want]
                for name, ckdt, shape, raw in want:
                    t = sd[name]
                    assert t.dtype == LANE[ckdt] and tuple(t.shape) == shape, (ext, name, t.dtype)
                    assert bits(t) == raw, (ext, name, mmap)
                    seen.add(ckdt)
    assert seen == set(LANE)
    record("PyTorch", TORCH, "writes",
           f".pth/.pt/.bin/.ckpt: all {len(LANE)} dtypes it has, 0-d and empty, bit-exact, "
           "torch.load weights_only" + (" and mmap=True" if HAS_MMAP else ""))


def shared_state():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(6, 8, generator=g)
    cplx = torch.randn(5, dtype=torch.complex128, generator=g)
    return {
        "base": base,
        "row": base[2],
        "block": base[1:4, 2:6],
        "t": base.t(),
        "tail": base.view(-1)[5:20],
        "cplx": cplx,
        "cplx_even": cplx[::2],
        "alone": torch.arange(7, dtype=torch.int64),
    }


@pytest.mark.parametrize("ext", ["pth", "ckpt"])
def test_shared_storages_and_views_survive(tmp_path, ext):
    sd = shared_state()
    src = tmp_path / "views.pt"
    torch.save(sd, src)
    out = tmp_path / f"out.{ext}"
    ck("convert", "-q", src, out)
    check_shared(sd, out, ext)
    if ext == "ckpt":
        record("PyTorch", TORCH, "writes", "shared storages still shared, views still views "
               "(strides, offsets) in .pth and .ckpt")


def check_shared(sd, out, ext):
    for mmap in ([False, True] if HAS_MMAP else [False]):
        got = load(out, mmap)  # the source's whole object, rewritten
        assert list(got) == list(sd)
        for k, v in sd.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
            assert bits(got[k]) == bits(v), k
            assert got[k].stride() == v.stride(), (k, got[k].stride(), v.stride())
            assert got[k].storage_offset() == v.storage_offset(), k
        views = ["base", "row", "block", "t", "tail"]
        assert len({storage_ptr(got[k]) for k in views}) == 1
        assert storage_ptr(got["cplx"]) == storage_ptr(got["cplx_even"])
        assert storage_ptr(got["alone"]) != storage_ptr(got["base"])
        # still views: a write through one shows in the others (not with mmap: read-only map)
        if not mmap:
            got["base"][2, 3] = 1234.5
            assert got["row"][3].item() == 1234.5 and got["t"][3, 2].item() == 1234.5


# ---- ckptkit reads what torch writes ----------------------------------------------------


def read_state():
    g = torch.Generator().manual_seed(11)
    base = torch.randn(5, 8, generator=g)
    state = {
        "w": torch.randn(4, 3, generator=g),
        "shared_row": base[1],
        "shared_block": base[2:4, 1:5],
        "shared_t": base.t(),
        "at_offset": base.view(-1)[9:17],
        "scalar": torch.tensor(2.5),
        "int_scalar": torch.tensor(-7),
        "empty": torch.zeros(0, 3),
        "p_grad": torch.nn.Parameter(torch.randn(3, generator=g)),
        "p_nograd": torch.nn.Parameter(torch.randn(2, generator=g), requires_grad=False),
    }
    for ck_name, dt in LANE.items():  # one tensor of every dtype this torch can create
        if ck_name in ("F32",):
            continue
        raw = torch.randint(0, 256, (6 * torch.empty(0, dtype=dt).element_size(),),
                            dtype=torch.uint8, generator=g)
        if dt == torch.bool:
            raw = raw % 2
        state["d_" + ck_name.lower()] = raw.view(dt)
    return state


def save_modes():
    modes = [("default (zip)", {}), ("_use_new_zipfile_serialization=False",
                                     {"_use_new_zipfile_serialization": False})]
    for p in (2, 3, 4, 5):
        modes.append((f"pickle_protocol={p}", {"pickle_protocol": p}))
        modes.append((f"pickle_protocol={p} legacy",
                      {"pickle_protocol": p, "_use_new_zipfile_serialization": False}))
    modes += [("compute_crc32=False", {"config": {"compute_crc32": False}}),
              ("storage_alignment=4096", {"config": {"storage_alignment": 4096}}),
              ("storage_alignment=1", {"config": {"storage_alignment": 1}})]
    return modes


def save_with(obj, path, opts):
    opts = dict(opts)
    conf = opts.pop("config", None)
    if conf is None:
        torch.save(obj, path, **opts)
        return True
    try:
        from torch.utils.serialization import config
    except ImportError:
        return False
    before = {k: getattr(config.save, k) for k in conf}
    try:
        for k, v in conf.items():
            setattr(config.save, k, v)
        torch.save(obj, path, **opts)
    finally:
        for k, v in before.items():
            setattr(config.save, k, v)
    return True


def test_we_read_every_save_mode(dumper, tmp_path):
    state = read_state()
    ran = []
    for n, (mode, opts) in enumerate(save_modes()):
        path = tmp_path / f"state{n}.pt"
        if not save_with(state, path, opts):
            continue  # this torch has no such option
        check_mode(dumper, state, path, mode, opts)
        ran.append(mode)
    assert len(ran) >= 10, ran
    protos = [m for m in ran if m.startswith("pickle_protocol=")]
    assert len(protos) == 8, protos
    shown = [m for m in ran if m not in protos]
    shown.insert(2, "pickle_protocol 2 to 5 (zip and legacy)")
    record("PyTorch", TORCH, "reads",
           "torch.save " + ", ".join(shown) + f": all {len(LANE)} dtypes, shared storages at "
           "offsets, non-contiguous views, 0-d, empty, Parameters with and without grad; "
           "scan calls each clean")


def check_mode(dumper, state, path, mode, opts):
    if "config" in opts and "compute_crc32" in opts["config"]:
        with zipfile_of(path) as z:  # the mode really wrote no CRCs
            assert all(i.CRC == 0 for i in z.infolist() if "/data/" in i.filename), mode
    if "config" in opts and "storage_alignment" in opts["config"]:
        al = opts["config"]["storage_alignment"]
        with zipfile_of(path) as z:
            for i in z.infolist():
                if "/data/" in i.filename:
                    assert data_offset(path, i) % al == 0, mode
    head, got, err = dump(dumper, path)
    legacy = opts.get("_use_new_zipfile_serialization") is False
    assert head["format"] == ("torch-legacy" if legacy else "torch-zip"), (mode, head)
    assert [g["name"] for g in got] == list(state), mode
    for g in got:
        want = state[g["name"]]
        assert g["dtype"] == CK_OF[want.dtype], (mode, g["name"])
        assert g["shape"] == list(want.shape), (mode, g["name"])
        assert bytes.fromhex(g["hex"]) == bits(want), (mode, g["name"])
    sid = {g["name"]: g["storage"] for g in got}
    assert len({sid[k] for k in ("shared_row", "shared_block", "shared_t", "at_offset")}) == 1
    assert sid["w"] != sid["shared_row"], mode
    scan = ck("scan", "-q", path)  # and the scanner calls it clean
    assert scan.stdout == "", (mode, scan.stdout)


def zipfile_of(path):
    import zipfile
    return zipfile.ZipFile(path)


def data_offset(path, info):
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        n, x = struct.unpack("<HH", f.read(4))
    return info.header_offset + 30 + n + x
