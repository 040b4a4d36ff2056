"""ckptkit's restricted pickle machine against CPython's own pickler.

Benign plain data that this file builds itself (no fixture, nothing
untrusted) is pickled by Python with every protocol 0-5, by both the C and
the pure-Python pickler, and optionally squeezed by pickletools.optimize.
tests/interop/pickle_dump.c, compiled here against build/libckptkit.a, prints
the machine's value tree as canonical JSON; render() below prints the
original object the same way, knowing how each protocol spells the types
that have no opcode of their own (bytes before protocol 3, sets before 4,
bytearray before 5). The two must be equal.

Nothing here ever unpickles anything.
"""
import io
import json
import math
import os
import pickle
import pickletools
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _library():
    cli = os.environ.get("CKPTKIT")
    if cli:
        lib = Path(cli).resolve().parent / "libckptkit.a"
        if lib.exists():
            return lib
    return ROOT / "build" / "libckptkit.a"


@pytest.fixture(scope="module")
def dumper(tmp_path_factory):
    lib = _library()
    if not lib.exists():
        pytest.fail("%s is missing: run make first" % lib)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        pytest.fail("no C compiler found for tests/interop/pickle_dump.c")
    out = tmp_path_factory.mktemp("dumper") / "pickle_dump"
    cmd = [cc, "-std=c11", "-D_GNU_SOURCE", "-O1", "-I", str(ROOT / "include"),
           "-I", str(ROOT / "src"), str(ROOT / "tests/interop/pickle_dump.c"), str(lib),
           "-lz", "-lm", "-o", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, "compiling pickle_dump failed:\n%s" % res.stderr
    return out


def run_dump(dumper, path, *args):
    res = subprocess.run([str(dumper), *args, str(path)], capture_output=True, text=True,
                         timeout=60)
    return res.returncode, res.stdout, res.stderr


# ---- the canonical rendering of Python objects ------------------------------


def _str(s):
    return {"str": s.encode("utf-8", "surrogatepass").hex()}


def _global(name):
    return {"global": name}


def _reduce(func, *args):
    return {"reduce": [_global(func), {"tuple": list(args)}]}


def render(o, proto):
    if o is None:
        return None
    if isinstance(o, bool):
        return o
    if isinstance(o, int):
        return {"int": str(o)}
    if isinstance(o, float):
        if math.isnan(o):
            return {"float": "nan"}
        if math.isinf(o):
            return {"float": "inf" if o > 0 else "-inf"}
        return {"float": "%.17g" % o}
    if isinstance(o, str):
        return _str(o)
    if isinstance(o, bytearray):
        if proto >= 5:
            return {"bytes": bytes(o).hex()}
        if not o:
            return _reduce("builtins.bytearray")
        return _reduce("builtins.bytearray", render(bytes(o), proto))
    if isinstance(o, bytes):
        if proto >= 3:
            return {"bytes": o.hex()}
        if not o:
            return _reduce("builtins.bytes")
        return _reduce("_codecs.encode", _str(o.decode("latin1")), _str("latin1"))
    if isinstance(o, tuple):
        return {"tuple": [render(x, proto) for x in o]}
    if isinstance(o, list):
        return {"list": [render(x, proto) for x in o]}
    if isinstance(o, dict):
        return {"dict": [[render(k, proto), render(v, proto)] for k, v in o.items()]}
    if isinstance(o, (set, frozenset)):
        kind = "set" if isinstance(o, set) else "frozenset"
        items = [render(x, proto) for x in o]  # the pickler's iteration order
        if proto >= 4:
            return {kind: items}
        return _reduce("builtins." + kind, {"list": items})
    raise TypeError("no rendering for %r" % type(o))


# ---- benign data ----------------------------------------------------------------


def _cases():
    shared = [1, "two", 3.0]
    deep = []
    cur = deep
    for _ in range(120):
        nxt = []
        cur.append(nxt)
        cur = nxt
    cur.append("bottom")
    big_list = list(range(-1500, 1500))
    big_dict = {"k%d" % i: i * i for i in range(2500)}
    return {
        "scalars": [None, True, False, 0, 1, -1, 255, 256, 65535, 65536, -129,
                    2**31 - 1, -2**31, 2**31, 2**63 - 1, -2**63, 2**63, -2**63 - 1],
        "bigints": [2**64, -2**64, 2**100 + 7, -(2**100) - 7, 2**1000 - 1, -(2**1000),
                    10**300, -(10**300) + 1, 2**2040, -(2**2047)],
        "floats": [0.0, -0.0, 0.1, 1.5, -2.25, 1e308, 5e-324, 2.2250738585072014e-308,
                   float("inf"), float("-inf"), float("nan"), 123456789.123456789],
        "strings": ["", "a", "hello world", "caf\u00e9", "\u20ac uro", "\U0001f600 emoji",
                    "back\\slash", "new\nline", "cr\rret", "nul\x00byte", "ctrl\x1az",
                    "quote ' and \"", "\\u0041 literal", "x" * 300, "\ud800 lone",
                    "\udfff\ud83d", "mixed \x80\xff latin"],
        "bytes": [b"", b"\x00", b"\xff\xfe", bytes(range(256)), b"a" * 70000],
        "bytearrays": [bytearray(), bytearray(b"\x01\x02\x03"), bytearray(b"z" * 300)],
        "containers": {
            "empty": [(), [], {}, set(), frozenset()],
            "tuple1": (1,), "tuple2": (1, 2), "tuple3": (1, 2, 3), "tuple4": (1, 2, 3, 4),
            "set": {1, 2, 3, "x"}, "frozen": frozenset({(1, 2), "y"}),
            "nested": {"a": [1, {"b": (2, [3, {"c": None}])}], 4: {5: 6}, None: 1.0},
            "keys": {1: "int", 2.5: "float", (1, 2): "tuple", b"k": "bytes", True: "bool"},
        },
        "shared": {"one": shared, "again": shared, "tuple": (shared, shared)},
        "deep": deep,
        "big_list": big_list,
        "big_dict": big_dict,
        "state_dict_like": {
            "model.layer.%d.weight" % i: {"shape": (i, i + 1), "dtype": "float32",
                                          "data": bytes([i % 256]) * 16}
            for i in range(40)
        },
    }


CASES = _cases()


def _picklers():
    def c_pickler(obj, proto):
        return pickle.dumps(obj, protocol=proto)

    def py_pickler(obj, proto):
        f = io.BytesIO()
        pickle._Pickler(f, protocol=proto).dump(obj)
        return f.getvalue()

    def optimized(obj, proto):
        return pickletools.optimize(pickle.dumps(obj, protocol=proto))

    return {"c": c_pickler, "python": py_pickler, "optimized": optimized}


PICKLERS = _picklers()


@pytest.mark.parametrize("proto", range(6))
@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("how", sorted(PICKLERS))
def test_tree_matches_python(dumper, tmp_path, proto, case, how):
    obj = CASES[case]
    if case == "bytes" and how == "python" and proto < 3:
        # the pure-Python pickler spells bytes the same way; keep the long
        # 70000-byte case to the C pickler to save time
        obj = obj[:4]
    data = PICKLERS[how](obj, proto)
    path = tmp_path / ("%s_p%d_%s.pkl" % (case, proto, how))
    path.write_bytes(data)
    rc, out, err = run_dump(dumper, path)
    assert rc == 0, err
    assert json.loads(out) == render(obj, proto)


def test_pickles_in_a_row(dumper, tmp_path):
    objs = [{"magic": 2**79 + 12345}, 1001, {"little_endian": True}, ["k1", "k2"]]
    data = b"".join(pickle.dumps(o, protocol=p) for o, p in zip(objs, (2, 0, 4, 5)))
    path = tmp_path / "row.pkl"
    path.write_bytes(data)
    rc, out, err = run_dump(dumper, path, "--all")
    assert rc == 0, err
    assert json.loads(out) == [render(o, p) for o, p in zip(objs, (2, 0, 4, 5))]


def test_every_truncation_fails_cleanly(dumper, tmp_path):
    data = pickle.dumps(CASES["containers"], protocol=4)
    for cut in range(0, len(data), max(1, len(data) // 97)):
        path = tmp_path / "cut.pkl"
        path.write_bytes(data[:cut])
        rc, out, err = run_dump(dumper, path)
        assert rc == 1, "prefix of %d bytes was accepted" % cut
        line = err.strip()
        assert line.startswith(str(path) + ": pickle: ") and "\n" not in line


def test_out_of_band_buffers_are_refused(dumper, tmp_path):
    buf = pickle.PickleBuffer(bytearray(b"payload"))
    data = pickle.dumps([buf], protocol=5, buffer_callback=lambda b: False)
    path = tmp_path / "oob.pkl"
    path.write_bytes(data)
    rc, out, err = run_dump(dumper, path)
    assert rc == 1
    assert "(NEXT_BUFFER)" in err and "out-of-band buffers" in err


def test_recursive_list_prints_a_cycle(dumper, tmp_path):
    a = [1]
    a.append(a)
    for proto in range(6):
        path = tmp_path / ("cyc%d.pkl" % proto)
        path.write_bytes(pickle.dumps(a, protocol=proto))
        rc, out, err = run_dump(dumper, path)
        assert rc == 0, err
        assert json.loads(out) == {"list": [{"int": "1"}, {"cycle": "list"}]}
