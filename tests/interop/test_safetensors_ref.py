"""ckptkit against the reference safetensors implementation (safetensors 0.8,
pinned environment only; the oldest lane has no safetensors and skips).

1. safe_open, with numpy and with torch, reads every kind of safetensors file
   ckptkit writes -- from a hand-made file of every safetensors dtype, from a
   torch checkpoint with shared storages and views, from a Lightning-style
   .ckpt with --strip-prefix, with --metadata, with --dtype f16 and bf16,
   sharded -- and sees ckptkit's exact bytes and metadata. Dtypes numpy lacks
   (BF16, the 8-bit and sub-byte floats) are compared through torch, and every
   file also through safetensors.deserialize, which needs no framework.
2. ckptkit reads what safetensors.torch.save_file / save_model and
   safetensors.numpy.save_file write: every dtype safetensors.torch has,
   metadata, and a model with tied weights, which save_model deduplicates.
3. A differential test: at least 50 malformed (and a few odd but valid)
   files, generated here, go to both implementations; both must accept or
   both refuse. The deliberate differences are DIFFERENCES below, each with
   its reason (also listed in docs/FORMATS.md); the test checks that each
   still behaves as listed, so a change on either side shows up.
"""
import json
import os
import struct
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors = pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402
import safetensors.numpy  # noqa: E402
import safetensors.torch  # noqa: E402

from compat import record, version_of  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))
LIB = os.path.join(ROOT, "build", "libckptkit.a")
ST = version_of(safetensors)

# every dtype the safetensors format has, with its element size in bits
ST_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "U16": 16, "I16": 16, "U32": 32, "I32": 32, "U64": 64,
           "I64": 64, "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "C64": 64, "F8_E4M3": 8,
           "F8_E5M2": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F8_E8M0": 8, "F6_E2M3": 6,
           "F6_E3M2": 6, "F4": 4}
NP_OK = {"BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64",
         "C64"}


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


def dump(dumper, path, ok=True):
    r = subprocess.run([dumper, str(path)], capture_output=True, text=True, timeout=60)
    if not ok:
        return r
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    return json.loads(lines[0]), [json.loads(x) for x in lines[1:]]


def tbits(t):
    t = t.detach().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def st_bytes(entries, metadata=None, pad=True):
    """A safetensors file from [(name, dtype, shape, bytes)]."""
    header, off, data = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape, raw in entries:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(header).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def raw_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


# ---- 1. the reference reads what ckptkit writes ---------------------------------------------


def every_dtype_entries(rng):
    out = []
    for dt, b in ST_BITS.items():
        n = 16  # elements: whole bytes for the 4- and 6-bit types
        nbytes = n * b // 8
        raw = (rng.integers(0, 2, nbytes, dtype=np.uint8) if dt == "BOOL"
               else rng.integers(0, 256, nbytes, dtype=np.uint8)).tobytes()
        out.append((f"t_{dt.lower()}", dt, (2, 8), raw))
    out.append(("scalar", "F32", (), struct.pack("<f", -1.5)))
    out.append(("empty", "I32", (0, 3), b""))
    return out


def check_reference_reads(path, want, meta):
    """want: name -> (dtype, shape, bytes); meta: the exact __metadata__ expected."""
    hdr = raw_header(path)
    assert hdr.get("__metadata__") == meta
    for fw in ("pt", "np"):
        with safe_open(str(path), framework=fw) as f:
            assert (f.metadata() or None) == meta
            assert sorted(f.keys()) == sorted(want)
            for name, (dt, shape, raw) in want.items():
                if fw == "np" and dt not in NP_OK:
                    continue
                if fw == "pt" and dt in ("F4", "F6_E2M3", "F6_E3M2"):
                    continue  # torch's view of these packs elements differently
                t = f.get_tensor(name)
                got = (tbits(t) if fw == "pt" else np.ascontiguousarray(t).tobytes())
                assert list(t.shape) == list(shape), (fw, name)
                assert got == raw, (fw, name)
    # the framework-free reader, for every dtype
    with open(path, "rb") as fh:
        items = dict(safetensors.deserialize(fh.read()))
    assert sorted(items) == sorted(want)
    for name, (dt, shape, raw) in want.items():
        assert items[name]["dtype"] == dt and list(items[name]["shape"]) == list(shape), name
        assert bytes(items[name]["data"]) == raw, name


def test_reference_reads_what_we_write(tmp_path):
    rng = np.random.default_rng(5)
    entries = every_dtype_entries(rng)
    src = tmp_path / "src.safetensors"
    src.write_bytes(st_bytes(entries, {"origin": "test", "n": "1"}))
    want = {n: (dt, shape, raw) for n, dt, shape, raw in entries}
    kinds = []

    # a rewrite of every dtype, with extra metadata
    out = tmp_path / "all.safetensors"
    ck("convert", "-q", src, out, "--metadata", "note=hello")
    check_reference_reads(out, want, {"format": "pt", "origin": "test", "n": "1", "note": "hello"})
    kinds.append(f"all {len(ST_BITS)} dtypes")

    # from torch: shared storages and views become plain tensors
    g = torch.Generator().manual_seed(2)
    base = torch.randn(4, 6, generator=g)
    sd = {"base": base, "row": base[1], "t": base.t(), "block": base[1:3, 2:5],
          "h": torch.randn(5, generator=g).half(), "b": torch.randn(3, generator=g).bfloat16(),
          "i": torch.arange(6, dtype=torch.int64), "c": torch.randn(2, dtype=torch.complex64)}
    pt = tmp_path / "views.pt"
    torch.save(sd, pt)
    out = tmp_path / "views.safetensors"
    ck("convert", "-q", pt, out)
    cks = {"base": "F32", "row": "F32", "t": "F32", "block": "F32", "h": "F16", "b": "BF16",
           "i": "I64", "c": "C64"}
    check_reference_reads(out, {k: (cks[k], tuple(v.shape), tbits(v)) for k, v in sd.items()},
                          {"format": "pt"})
    kinds.append("from .pt with shared storages and views")

    # from a Lightning-style .ckpt, prefix stripped, epoch and step kept as metadata
    ckpt = tmp_path / "m.ckpt"
    torch.save({"epoch": 3, "global_step": 40, "state_dict": {"model.w": base, "model.h": sd["h"]}},
               ckpt)
    out = tmp_path / "ckpt.safetensors"
    ck("convert", "-q", ckpt, out, "--strip-prefix", "model.")
    check_reference_reads(out, {"w": ("F32", (4, 6), tbits(base)), "h": ("F16", (5,), tbits(sd["h"]))},
                          {"epoch": "3", "format": "pt", "global_step": "40"})
    kinds.append(".ckpt with --strip-prefix")

    # casts
    for d, tdt, name in (("f16", torch.float16, "F16"), ("bf16", torch.bfloat16, "BF16")):
        out = tmp_path / f"{d}.safetensors"
        ck("convert", "-q", pt, out, "--dtype", d)
        w = {}
        for k, v in sd.items():
            if v.dtype in (torch.float32, torch.float16, torch.bfloat16):
                w[k] = (name, tuple(v.shape), tbits(v.to(tdt)))
            else:
                w[k] = (cks[k], tuple(v.shape), tbits(v))
        check_reference_reads(out, w, {"format": "pt"})
    kinds.append("--dtype f16 and bf16")

    # sharded: each shard read alone, and the index names every tensor once
    big = {f"layer{i}.w": torch.randn(64, 64, generator=g) for i in range(6)}
    bpt = tmp_path / "big.pt"
    torch.save(big, bpt)
    shards = tmp_path / "shards"
    shards.mkdir()
    ck("convert", "-q", bpt, shards / "model.safetensors", "--shard-size", "40000")
    index = json.loads((shards / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and sorted(index["weight_map"]) == sorted(big)
    for fn in files:
        names = [k for k, v in index["weight_map"].items() if v == fn]
        check_reference_reads(shards / fn,
                              {k: ("F32", (64, 64), tbits(big[k])) for k in names},
                              raw_header(shards / fn).get("__metadata__"))
        assert raw_header(shards / fn)["__metadata__"]["format"] == "pt"
    kinds.append("sharded")
    record("safetensors", ST, "writes",
           "safe_open (numpy, torch) and deserialize, bit-exact with metadata: " + ", ".join(kinds))


# ---- 2. ckptkit reads what the reference writes -------------------------------------------


def check_we_read(dumper, path, want, meta=None):
    """want: ordered name -> torch tensor (compared by bytes)."""
    head, got = dump(dumper, path)
    assert head["format"] == "safetensors"
    assert sorted(g["name"] for g in got) == sorted(want)
    for g in got:
        w = want[g["name"]]
        assert g["shape"] == list(w.shape), g["name"]
        assert bytes.fromhex(g["hex"]) == tbits(w), g["name"]
    if meta is not None:
        assert head["meta"] == meta, head["meta"]
    return got


def test_we_read_save_file_every_dtype(dumper, tmp_path):
    g = torch.Generator().manual_seed(9)
    sd = {}
    for name, dt in safetensors.torch._TYPES.items():
        nbytes = 12 * torch.empty(0, dtype=dt).element_size()
        raw = torch.randint(0, 256, (nbytes,), dtype=torch.uint8, generator=g)
        if dt == torch.bool:
            raw = raw % 2
        sd["t_" + name.lower()] = raw.view(dt).reshape(3, 4)
    sd["scalar"] = torch.tensor(7.25)
    sd["empty"] = torch.zeros(0, 2)
    path = tmp_path / "save_file.safetensors"
    safetensors.torch.save_file(sd, str(path), metadata={"format": "pt", "k": "v"})
    got = check_we_read(dumper, path, sd, {"format": "pt", "k": "v"})
    ckdt = {g["name"]: g["dtype"] for g in got}
    for name in safetensors.torch._TYPES:
        assert ckdt["t_" + name.lower()] == name
    # numpy's save_file too
    arrs = {"f": np.arange(6, dtype=np.float32).reshape(2, 3), "u": np.arange(4, dtype=np.uint64),
            "b": np.array([True, False])}
    npath = tmp_path / "np.safetensors"
    safetensors.numpy.save_file(arrs, str(npath))
    check_we_read(dumper, npath, {k: torch.from_numpy(v) for k, v in arrs.items()})
    record("safetensors", ST, "reads",
           f"save_file (torch: all {len(safetensors.torch._TYPES)} dtypes, 0-d, empty, metadata; "
           "numpy)")


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(10, 4)
        self.body = torch.nn.Linear(4, 4)
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.emb.weight  # tied, as language models do


def test_we_read_save_model_with_tied_weights(dumper, tmp_path):
    torch.manual_seed(4)
    model = Tied()
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_model(model, str(path))
    with safe_open(str(path), framework="pt") as f:
        kept = list(f.keys())
        want = {k: f.get_tensor(k) for k in kept}
    # save_model wrote one of the two tied names only
    assert len(kept) == len(model.state_dict()) - 1
    assert ("emb.weight" in kept) != ("head.weight" in kept)
    check_we_read(dumper, path, want)
    # what ckptkit converts back loads into the model with load_model
    out = tmp_path / "again.safetensors"
    ck("convert", "-q", path, out)
    fresh = Tied()
    missing, unexpected = safetensors.torch.load_model(fresh, str(out))
    assert not missing and not unexpected
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v), k
    record("safetensors", ST, "reads", "save_model with tied weights (deduplicated), and "
           "load_model takes ckptkit's copy back")


# ---- 3. malformed headers: the same decision ------------------------------------------------


def _base():
    return [("a", "F32", (2, 2), struct.pack("<4f", 1, 2, 3, 4)),
            ("b", "I16", (3,), struct.pack("<3h", 1, -2, 3))]


def _with_header(text, data=None, length=None):
    h = text.encode() if isinstance(text, str) else text
    data = b"".join(e[3] for e in _base()) if data is None else data
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def _edit(change):
    """The base file with its header dict changed by CHANGE(dict)."""
    hdr = {}
    off = 0
    for name, dt, shape, raw in _base():
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    change(hdr)
    return _with_header(json.dumps(hdr))


def _set(name, field, value):
    def f(h):
        h[name][field] = value
    return _edit(f)


def _drop(name, field):
    def f(h):
        del h[name][field]
    return _edit(f)


BASE_TEXT = ('{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},'
             '"b":{"dtype":"I16","shape":[3],"data_offsets":[16,22]}}')


def cases():
    c = {}
    # valid references
    c["valid"] = _edit(lambda h: None)
    c["valid_padded_spaces"] = _with_header(BASE_TEXT + "      ")
    c["valid_leading_space"] = _with_header("  " + BASE_TEXT)
    c["valid_empty_header"] = _with_header("{}", data=b"")
    c["valid_metadata"] = _edit(lambda h: h.update({"__metadata__": {"k": "v"}}))
    c["valid_scalar"] = _with_header('{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}',
                                     data=b"\0\0\x80?")
    c["valid_zero_dim"] = _with_header('{"z":{"dtype":"F32","shape":[0,5],"data_offsets":[0,0]}}',
                                       data=b"")
    c["valid_unordered_offsets"] = _with_header(
        '{"b":{"dtype":"I16","shape":[3],"data_offsets":[16,22]},'
        '"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}')
    # offsets
    c["offsets_reversed"] = _set("a", "data_offsets", [16, 0])
    c["offsets_gap_at_start"] = _with_header(BASE_TEXT.replace("[0,16]", "[2,16]"))
    c["offsets_gap_between"] = _edit(lambda h: h["b"].update({"data_offsets": [17, 23]}))
    c["offsets_overlap"] = _edit(lambda h: h["b"].update({"data_offsets": [14, 20]}))
    c["offsets_past_end"] = _edit(lambda h: h["b"].update({"data_offsets": [16, 40],
                                                             "shape": [12]}))
    c["offsets_trailing_data"] = _with_header(BASE_TEXT, data=b"\0" * 30)
    c["offsets_negative"] = _set("a", "data_offsets", [-16, 0])
    c["offsets_float"] = _with_header(BASE_TEXT.replace("[0,16]", "[0.0,16.0]"))
    c["offsets_three"] = _set("a", "data_offsets", [0, 16, 16])
    c["offsets_one"] = _set("a", "data_offsets", [16])
    c["offsets_strings"] = _set("a", "data_offsets", ["0", "16"])
    c["offsets_2pow64"] = _with_header(BASE_TEXT.replace("[0,16]", "[0,18446744073709551616]"))
    c["offsets_huge_end"] = _with_header(BASE_TEXT.replace("[16,22]", "[16,18446744073709551615]"))
    c["offsets_missing"] = _drop("a", "data_offsets")
    c["offsets_null"] = _set("a", "data_offsets", None)
    # dtypes
    c["dtype_unknown"] = _set("a", "dtype", "F128")
    c["dtype_lowercase"] = _set("a", "dtype", "f32")
    c["dtype_number"] = _set("a", "dtype", 7)
    c["dtype_missing"] = _drop("a", "dtype")
    c["dtype_c128"] = _set("a", "dtype", "C128")
    c["dtype_f4_half_byte"] = _with_header('{"q":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}',
                                           data=b"\0\0")
    c["dtype_f6_partial"] = _with_header(
        '{"q":{"dtype":"F6_E2M3","shape":[3],"data_offsets":[0,3]}}', data=b"\0\0\0")
    c["dtype_size_mismatch"] = _set("a", "dtype", "F64")
    # shapes
    c["shape_negative"] = _set("a", "shape", [-2, -2])
    c["shape_float"] = _with_header(BASE_TEXT.replace("[2,2]", "[2.0,2]"))
    c["shape_missing"] = _drop("a", "shape")
    c["shape_number"] = _set("b", "shape", 3)
    c["shape_product_mismatch"] = _set("a", "shape", [2, 3])
    c["shape_overflow"] = _set("a", "shape", [2**62, 2**62, 16])
    c["shape_strings"] = _set("b", "shape", ["3"])
    c["shape_null_dim"] = _set("b", "shape", [None])
    c["shape_2pow64_dim"] = _with_header(BASE_TEXT.replace("[3]", "[18446744073709551616]"))
    # JSON oddities
    c["json_duplicate_tensor"] = _with_header(
        BASE_TEXT[:-1] + ',"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}')
    c["json_duplicate_field"] = _with_header(BASE_TEXT.replace('"dtype":"F32",',
                                                               '"dtype":"F32","dtype":"F32",'))
    c["json_trailing_comma"] = _with_header(BASE_TEXT[:-1] + ",}")
    c["json_comment"] = _with_header("/*x*/" + BASE_TEXT)
    c["json_single_quotes"] = _with_header(BASE_TEXT.replace('"a"', "'a'"))
    c["json_nan"] = _with_header(BASE_TEXT.replace("[3]", "[NaN]"))
    c["json_trailing_nul"] = _with_header(BASE_TEXT + "\0\0")
    c["json_trailing_garbage"] = _with_header(BASE_TEXT + "x")
    c["json_second_object"] = _with_header(BASE_TEXT + "{}")
    c["json_top_array"] = _with_header("[" + BASE_TEXT + "]")
    c["json_truncated"] = _with_header(BASE_TEXT[:-5])
    c["json_metadata_number"] = _edit(lambda h: h.update({"__metadata__": {"k": 1}}))
    c["json_metadata_nested"] = _edit(lambda h: h.update({"__metadata__": {"k": {"x": "y"}}}))
    c["json_metadata_null"] = _edit(lambda h: h.update({"__metadata__": None}))
    c["json_metadata_list"] = _edit(lambda h: h.update({"__metadata__": ["k"]}))
    c["json_extra_field"] = _edit(lambda h: h["a"].update({"extra": 1}))
    c["json_entry_not_object"] = _edit(lambda h: h.update({"c": 5}))
    c["json_invalid_utf8"] = _with_header(BASE_TEXT.replace('"b"', '"\xff"').encode("latin-1"))
    c["json_overlong_utf8"] = _with_header(BASE_TEXT.encode().replace(b'"b"', b'"\xc0\xaf"'))
    c["json_escaped_nul_name"] = _with_header(BASE_TEXT.replace('"b"', '"b\\u0000c"'))
    c["json_lone_surrogate"] = _with_header(BASE_TEXT.replace('"b"', '"\\ud800"'))
    c["json_bom"] = _with_header(b"\xef\xbb\xbf" + BASE_TEXT.encode())
    c["json_deep_nesting"] = _edit(lambda h: h.update(
        {"__metadata__": {"k": "v"}, "d": json.loads("[" * 200 + "]" * 200)}))
    c["json_extra_field_depth_80"] = _edit(lambda h: h["a"].update(
        {"extra": json.loads("[" * 80 + "]" * 80)}))
    c["json_extra_field_depth_200"] = _edit(lambda h: h["a"].update(
        {"extra": json.loads("[" * 200 + "]" * 200)}))
    c["json_metadata_tensor_fields"] = _with_header(BASE_TEXT[:-1] + ',"__metadata__":'
                                                    '{"dtype":"F32","shape":[0],'
                                                    '"data_offsets":[22,22]}}')
    c["json_unicode_escape_name"] = _with_header(BASE_TEXT.replace('"b"', '"\\u00e9"'))
    # sizes
    c["size_header_zero"] = _with_header(BASE_TEXT, length=0)
    c["size_header_past_end"] = _with_header(BASE_TEXT, length=10_000)
    c["size_header_huge"] = _with_header(BASE_TEXT, length=2**63)
    c["size_header_over_limit"] = _with_header(BASE_TEXT, length=100_000_001)
    c["size_file_7_bytes"] = b"\x05\0\0\0\0\0\0"
    c["size_header_short_by_one"] = _with_header(BASE_TEXT, length=len(BASE_TEXT) - 1)
    c["size_data_truncated"] = _with_header(BASE_TEXT)[:-3]
    c["size_unpadded_header"] = _with_header(BASE_TEXT + " ")
    return c


# Deliberate differences: case -> (reference accepts, ckptkit accepts, reason).
# Each is listed in docs/FORMATS.md ("Reading", the table of rules).
DIFFERENCES = {
    "json_duplicate_tensor": (True, False, "a repeated key is refused: the reference keeps the "
                              "last one, so two readers could see different tensors"),
    "json_extra_field_depth_80": (True, False, "JSON nesting is capped at 64 levels (the "
                                  "reference's parser allows 128), also in ignored fields"),
    "json_metadata_null": (True, False, "__metadata__ must be an object of strings; null is "
                           "refused rather than read as no metadata"),
    "json_escaped_nul_name": (True, False, "NUL in a name would cut it short in C strings"),
}


def decide_reference(data):
    try:
        items = safetensors.deserialize(data)
        for _, v in items:  # touch every tensor's bytes
            bytes(v["data"])
        return True, ""
    except Exception as e:  # the reference raises SafetensorError (or ValueError) on refusal
        return False, f"{type(e).__name__}: {e}"


def decide_ckptkit(dumper, path):
    r = dump(dumper, path, ok=False)
    assert r.returncode in (0, 1), r
    if r.returncode == 1:
        assert r.stderr.count("\n") <= 1 and r.stderr.strip(), r.stderr
    return r.returncode == 0, r.stderr.strip()


def test_malformed_headers_same_decision(dumper, tmp_path):
    cs = cases()
    assert len([k for k in cs if not k.startswith("valid")]) >= 50
    assert set(DIFFERENCES) <= set(cs)
    mismatches, agreed = [], 0
    for name, data in cs.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(data)
        ref, ref_why = decide_reference(data)
        ours, our_why = decide_ckptkit(dumper, path)
        if name.startswith("valid"):
            assert ref and ours, (name, ref_why, our_why)
        if name in DIFFERENCES:
            want_ref, want_ours, _ = DIFFERENCES[name]
            if (ref, ours) != (want_ref, want_ours):
                mismatches.append(f"{name}: listed difference no longer holds: reference "
                                  f"{ref} ({ref_why}), ckptkit {ours} ({our_why})")
            continue
        if ref != ours:
            mismatches.append(f"{name}: reference {'accepts' if ref else 'refuses'} "
                              f"({ref_why}), ckptkit {'accepts' if ours else 'refuses'} "
                              f"({our_why})")
        else:
            agreed += 1
    assert not mismatches, "\n".join(mismatches)
    record("safetensors", ST, "reads",
           f"{agreed} malformed or odd headers decided as the reference decides; "
           f"{len(DIFFERENCES)} deliberate differences, each listed in docs/FORMATS.md")
