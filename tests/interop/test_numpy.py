"""NumPy .npy/.npz against numpy itself, in both lanes (numpy 2.x in the pinned
environment, Debian's numpy 1.24 in the oldest lane).

 - ckptkit reads what np.save / np.savez / np.savez_compressed write: every
   numeric dtype, C and Fortran order, little- and big-endian, 0-d and empty
   arrays, format versions 1.0, 2.0 and 3.0. Values are checked bit for bit by
   converting to npz and loading that back with np.load(allow_pickle=False),
   against the original array made little-endian and C-contiguous.
 - np.load(allow_pickle=False) reads every .npy/.npz ckptkit writes (stored
   and deflated) bit for bit; bf16/f8 come out as ml_dtypes saves them.
 - safetensors -> npz -> safetensors keeps every tensor's bytes.
 - the real files in fixtures/real/npy and npz behave as MANIFEST.tsv says.
Object arrays are never loaded with allow_pickle here: ckptkit must refuse them.
"""
import json
import os
import struct
import subprocess

import pytest

np = pytest.importorskip("numpy")

from compat import record  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CKPTKIT = os.environ.get("CKPTKIT", os.path.join(ROOT, "build", "ckptkit"))
REAL = os.environ.get("FIXTURES", os.path.join(ROOT, "..", "shared", "fixtures", "real"))
if not os.path.isdir(REAL):
    REAL = "/work/shared/fixtures/real"

DTYPES = ["?", "u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8", "c8", "c16"]
SHAPES = [(), (0,), (2, 3), (2, 3, 4), (0, 3)]


def run(*args, ok=True):
    r = subprocess.run([CKPTKIT, *args], capture_output=True, text=True, timeout=120)
    if ok and r.returncode != 0:
        raise AssertionError("ckptkit %s: exit %d\n%s" % (" ".join(args), r.returncode, r.stderr))
    return r


@pytest.fixture(autouse=True)
def need_ckptkit():
    if not os.path.exists(CKPTKIT):
        pytest.skip("no ckptkit binary at %s (run make)" % CKPTKIT)


def sample(dt, shape, seed):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape)) if shape else 1
    want = np.dtype(dt)
    dt = want.newbyteorder("=")
    if dt.kind == "b":
        a = rng.integers(0, 2, n).astype(bool)
    elif dt.kind in "iu":
        info = np.iinfo(dt)
        a = rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
    elif dt.kind == "f":
        a = (rng.standard_normal(n) * 100).astype(dt)
        if n > 2:
            a[0], a[1] = np.inf, np.nan
    else:
        a = (rng.standard_normal(n) + 1j * rng.standard_normal(n)).astype(dt)
    return a.astype(want).reshape(shape)


def canon(a):
    """The bytes ckptkit must produce: little-endian, C order."""
    a = np.asarray(a)
    return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"))).tobytes()


def npy_bytes(descr, shape, data):
    """A version 1.0 .npy with DESCR written as is."""
    d = "{'descr': '%s', 'fortran_order': False, 'shape': %r, }" % (descr, tuple(shape))
    d += " " * (-(10 + len(d) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(d)) + d.encode() + data


def write_npy(path, a, version):
    with open(path, "wb") as f:
        np.lib.format.write_array(f, a, version=version)


def ckpt_values(path, tmp, *opts):
    """The tensors of PATH as ckptkit reads them: through an npz ckptkit writes."""
    out = os.path.join(str(tmp), "via.npz")
    run("convert", path, out, "--force", "-q", *opts)
    with np.load(out, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_safetensors(path, tensors):
    """tensors: [(name, st_dtype, shape, bytes)]."""
    hdr, off, data = {}, 0, b""
    for name, dt, shape, b in tensors:
        hdr[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    hdr.pop("__metadata__", None)
    base = 8 + n
    return {k: (v["dtype"], v["shape"], raw[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in hdr.items()}


ST_NAME = {"?": "BOOL", "u1": "U8", "i1": "I8", "u2": "U16", "i2": "I16", "u4": "U32",
           "i4": "I32", "u8": "U64", "i8": "I64", "f2": "F16", "f4": "F32", "f8": "F64",
           "c8": "C64"}


# ---- ckptkit reads what numpy writes --------------------------------------------


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_reads_np_save(tmp_path, version):
    n = 0
    for dt in DTYPES:
        for order in "<>":
            if np.dtype(dt).itemsize == 1 and order == ">":
                continue
            for si, shape in enumerate(SHAPES):
                for fortran in (False, True) if len(shape) > 1 else (False,):
                    a = sample(np.dtype(dt).newbyteorder(order), shape, n)
                    if fortran:
                        a = np.asfortranarray(a)
                    p = str(tmp_path / ("a%d.npy" % n))
                    write_npy(p, a, version)
                    got = ckpt_values(p, tmp_path)
                    name = "a%d" % n
                    assert list(got) == [name]
                    assert got[name].dtype == a.dtype.newbyteorder("<"), (dt, order, shape)
                    assert got[name].shape == a.shape
                    assert canon(got[name]) == canon(a), (dt, order, shape, fortran)
                    n += 1
    record("numpy", np.__version__, "reads",
           "np.save .npy v%d.%d: every numeric dtype, C/Fortran order, both byte orders, 0-d, "
           "empty" % version)


@pytest.mark.parametrize("compressed", [False, True])
def test_reads_np_savez(tmp_path, compressed):
    arrays = {}
    for i, dt in enumerate(DTYPES):
        arrays["plain/" + dt.replace("?", "bool")] = sample(dt, (3, 4), i)
        arrays["fortran_" + dt.replace("?", "bool")] = np.asfortranarray(sample(dt, (4, 5, 2), i))
        if np.dtype(dt).itemsize > 1:
            arrays["big_" + dt] = sample(np.dtype(dt).newbyteorder(">"), (7,), i)
    arrays["scalar"] = np.array(2.5)
    arrays["empty"] = np.zeros((0, 4), np.float32)
    arrays["large"] = sample("f4", (300, 257), 99)  # several inflate blocks when deflated
    p = str(tmp_path / "m.npz")
    (np.savez_compressed if compressed else np.savez)(p, **arrays)
    ls = run("ls", p).stdout
    for k in arrays:
        assert k in ls
    got = ckpt_values(p, tmp_path)
    assert sorted(got) == sorted(arrays)
    for k, a in arrays.items():
        assert got[k].shape == a.shape, k
        assert canon(got[k]) == canon(a), k
    # verify and diff read both sides through the same read path
    run("verify", p, str(tmp_path / "via.npz"))
    run("diff", p, str(tmp_path / "via.npz"))
    record("numpy", np.__version__, "reads",
           "np.savez%s .npz: every numeric dtype, C/Fortran order, big-endian, 0-d, empty, "
           "folders in names" % ("_compressed (deflate)" if compressed else " (stored)"))


def test_reads_positional_and_empty_npz(tmp_path):
    p = str(tmp_path / "pos.npz")
    np.savez(p, np.arange(3), np.ones((2, 2)))
    assert [l.split()[0] for l in run("ls", p).stdout.splitlines()] == ["arr_0", "arr_1"]
    e = str(tmp_path / "empty.npz")
    np.savez(e)
    r = run("info", e)
    assert "tensors:     0" in r.stdout


# ---- numpy reads what ckptkit writes --------------------------------------------


def all_dtype_safetensors(path):
    tensors, arrays = [], {}
    for i, dt in enumerate(DTYPES):
        if dt not in ST_NAME:
            continue
        for j, shape in enumerate([(), (0,), (6,), (3, 5), (2, 1, 3)]):
            a = sample(dt, shape, 10 * i + j)
            name = "t/%s/%d" % (ST_NAME[dt], j)
            tensors.append((name, ST_NAME[dt], shape, canon(a)))
            arrays[name] = a
    write_safetensors(path, tensors)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_np_load_reads_ckptkit_npz(tmp_path, compress):
    st = str(tmp_path / "m.safetensors")
    arrays = all_dtype_safetensors(st)
    out = str(tmp_path / "m.npz")
    run("convert", st, out, *(["--compress"] if compress else []))
    with np.load(out, allow_pickle=False) as z:
        assert sorted(z.files) == sorted(arrays)
        for k, a in arrays.items():
            assert z[k].dtype == a.dtype and z[k].shape == a.shape, k
            assert canon(z[k]) == canon(a), k
    import zipfile
    with zipfile.ZipFile(out) as zf:
        methods = {i.compress_type for i in zf.infolist()}
        assert methods == ({zipfile.ZIP_DEFLATED} if compress else {zipfile.ZIP_STORED})
        assert zf.testzip() is None
    record("numpy", np.__version__, "writes",
           ".npz (%s), every dtype numpy holds, 0-d, empty, folders in names: "
           "np.load(allow_pickle=False) bit-exact" % ("deflated" if compress else "stored"))


def test_np_load_reads_ckptkit_npy(tmp_path):
    st = str(tmp_path / "m.safetensors")
    arrays = all_dtype_safetensors(st)
    for k, a in arrays.items():
        out = str(tmp_path / (k.replace("/", "_") + ".npy"))
        run("convert", st, out, "--include", k, "-q")
        b = np.load(out, allow_pickle=False)
        assert b.dtype == a.dtype and b.shape == a.shape and canon(b) == canon(a), k
    r = run("convert", st, str(tmp_path / "all.npy"), ok=False)
    assert r.returncode == 1 and "exactly one array" in r.stderr
    record("numpy", np.__version__, "writes",
           ".npy (one tensor), every dtype numpy holds: np.load(allow_pickle=False) bit-exact")


def test_round_trip_safetensors_npz_safetensors(tmp_path):
    st = str(tmp_path / "m.safetensors")
    all_dtype_safetensors(st)
    for compress in ([], ["--compress"]):
        npz = str(tmp_path / "m.npz")
        back = str(tmp_path / "back.safetensors")
        run("convert", st, npz, "--force", "-q", *compress)
        run("convert", npz, back, "--force", "-q")
        assert read_safetensors(back) == read_safetensors(st)
        run("verify", st, npz)
        run("verify", st, back)


def test_ml_dtypes_outputs(tmp_path):
    ml = pytest.importorskip("ml_dtypes")
    vals = np.array([1.0, -2.5, 0.125, 3.0], np.float32)
    cases = [("BF16", ml.bfloat16), ("F8_E4M3", ml.float8_e4m3fn), ("F8_E5M2", ml.float8_e5m2)]
    tensors = [(n, n, (4,), vals.astype(t).tobytes()) for n, t in cases]
    st = str(tmp_path / "m.safetensors")
    write_safetensors(st, tensors)
    out = str(tmp_path / "m.npz")
    r = run("convert", st, out)
    assert "ml_dtypes" in r.stderr and "3 tensors" in r.stderr
    with np.load(out, allow_pickle=False) as z:
        for n, t in cases:
            assert z[n].view(t).astype(np.float32).tolist() == vals.tolist(), n
    r = run("convert", st, str(tmp_path / "s.npz"), "--strict", ok=False)
    assert r.returncode == 1 and "--strict" in r.stderr
    assert not os.path.exists(str(tmp_path / "s.npz"))
    # names numpy accepts once ml_dtypes is imported are read as what they say
    p = str(tmp_path / "named.npy")
    with open(p, "wb") as f:
        f.write(npy_bytes("bfloat16", (4,), vals.astype(ml.bfloat16).tobytes()))
    assert np.load(p).view(np.uint16).tolist() == vals.astype(ml.bfloat16).view(np.uint16).tolist()
    assert "BF16" in run("ls", p).stdout
    record("numpy", np.__version__, "writes",
           "bf16/f8 as ml_dtypes saves them (with a warning; refused with --strict)")


# ---- the real files ---------------------------------------------------------------


def real(path):
    p = os.path.join(REAL, path)
    if not os.path.exists(p):
        pytest.skip("no fixture %s" % p)
    return p


@pytest.mark.parametrize("name", [
    "npy/candle_test.npy", "npy/ndarray-npy_f64_big_endian_standard.npy",
    "npy/ndarray-npy_f64_big_endian_fortran.npy", "npy/numpy_win64python2.npy",
    "npz/candle_test.npz", "npz/npyz_compressed.npz",
])
def test_real_files_read(tmp_path, name):
    p = real(name)
    got = ckpt_values(p, tmp_path)
    if p.endswith(".npy"):
        want = {os.path.basename(p)[:-4]: np.load(p, allow_pickle=False)}
    else:
        with np.load(p, allow_pickle=False) as z:
            want = {k: z[k] for k in z.files}
    assert sorted(got) == sorted(want)
    for k in want:
        assert canon(got[k]) == canon(want[k]) and got[k].shape == want[k].shape, k
    assert run("scan", p).returncode == 0
    record("numpy", np.__version__, "reads", "real file %s" % name)


@pytest.mark.parametrize("name,scan_rc,dangerous", [
    ("npy/npyz_pickle.npy", 0, None),
    ("npy/numpy_py2-objarr.npy", 0, None),
    ("npy/picklescan_dns_exfiltration.npy", 1, "ssl.get_server_certificate"),
    ("npz/numpy_py2-objarr.npz", 0, None),
    ("npz/picklescan_object_arrays.npz", 0, None),
])
def test_real_object_arrays_refused(tmp_path, name, scan_rc, dangerous):
    p = real(name)
    for cmd in (["info", p], ["ls", p], ["convert", p, str(tmp_path / "o.safetensors")],
                ["export", p, "x", "-o", str(tmp_path / "x.npy")]):
        r = run(*cmd, ok=False)
        assert r.returncode == 1, cmd
        assert "object array" in r.stderr and "refusing" in r.stderr, r.stderr
    assert not os.path.exists(str(tmp_path / "o.safetensors"))
    for cmd in (["verify", p, p], ["diff", p, p]):
        assert run(*cmd, ok=False).returncode != 0
    r = run("info", p, "--allow-unsafe")
    assert "tensors:     0" in r.stdout and "left out" in r.stderr
    s = run("scan", p, ok=False)
    assert s.returncode == scan_rc, s.stdout + s.stderr
    assert "numpy" in s.stdout and "ndarray" in s.stdout
    if dangerous:
        assert dangerous in s.stdout


@pytest.mark.parametrize("name,dtype,keeps", [
    ("npy/npyz_structured.npy", "[('a', '<i4')", []),
    ("npy/npyz_unicode_ok.npy", "<U8", []),
    ("npz/numpy_py3-arr-savez.npz", "<U3", ["x"]),
])
def test_real_unsupported_dtypes(tmp_path, name, dtype, keeps):
    p = real(name)
    r = run("info", p, ok=False)
    assert r.returncode == 1 and dtype in r.stderr and "--skip-unsupported" in r.stderr
    r = run("ls", p, "--skip-unsupported")
    assert [l.split()[0] for l in r.stdout.splitlines()] == keeps
    assert "left out" in r.stderr
    r = run("convert", p, str(tmp_path / "o.npz"), "--skip-unsupported")
    assert "1 input array left out" in r.stderr
    if keeps:
        with np.load(p, allow_pickle=False) as z, np.load(str(tmp_path / "o.npz")) as o:
            assert canon(o["x"]) == canon(z["x"])


def test_real_bad_bool(tmp_path):
    p = real("npy/ndarray-npy_bool_bad_value.npy")
    r = run("convert", p, str(tmp_path / "o.npz"), ok=False)
    assert r.returncode == 1 and "bool element" in r.stderr
