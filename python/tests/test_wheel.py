"""The built wheel: one abi3 wheel that imports in every CPython from 3.11,
Debian's /usr/bin/python3 (with its own numpy and torch 1.13) included."""
import glob
import os
import subprocess
import sys
import zipfile

import pytest

import ckptkit

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WHEEL_DIR = os.environ.get("CKPTKIT_WHEEL_DIR", os.path.join(ROOT, "build", "wheel"))
SYSTEM_PY = "/usr/bin/python3"


def wheel():
    found = sorted(glob.glob(os.path.join(WHEEL_DIR, "ckptkit-*.whl")))
    if not found:
        pytest.skip(f"no wheel in {WHEEL_DIR} (make python builds it)")
    return found[-1]


def test_wheel_is_abi3():
    w = os.path.basename(wheel())
    assert w.endswith("-cp311-abi3-linux_x86_64.whl") or "-cp311-abi3-" in w, w
    with zipfile.ZipFile(wheel()) as z:
        names = z.namelist()
    assert "ckptkit/_ckptkit.abi3.so" in names
    assert {"ckptkit/__init__.py", "ckptkit/torch.py", "ckptkit/numpy.py",
            "ckptkit/__init__.pyi", "ckptkit/py.typed"} <= set(names)


def test_installed_module_is_the_abi3_one():
    import ckptkit._ckptkit as core
    assert core.__file__.endswith("_ckptkit.abi3.so")


def test_imports_in_system_python(tmp_path):
    if not os.path.exists(SYSTEM_PY):
        pytest.skip("no /usr/bin/python3")
    ver = subprocess.run([SYSTEM_PY, "-c", "import sys; print(sys.version_info[:2] >= (3, 11))"],
                         capture_output=True, text=True)
    if ver.stdout.strip() != "True":
        pytest.skip("the system python is older than 3.11")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel()) as z:
        z.extractall(site)
    import numpy as np
    import ckptkit.numpy
    p = tmp_path / "x.safetensors"
    ckptkit.numpy.save_file({"a": np.arange(6, dtype=np.float32).reshape(2, 3)}, str(p))
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        "import ckptkit, ckptkit.numpy\n"
        "assert ckptkit.__file__.startswith(sys.path[0])\n"
        f"a = ckptkit.numpy.load_file({str(p)!r})['a']\n"
        "assert a.tolist() == [[0, 1, 2], [3, 4, 5]]\n"
        "try:\n"
        "    import torch\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    import ckptkit.torch\n"
        f"    t = ckptkit.torch.load_file({str(p)!r})['a']\n"
        "    assert t.sum().item() == 15\n"
        f"    q = {str(tmp_path / 'x.pth')!r}\n"
        "    ckptkit.torch.save_file({'a': t, 'b': torch.arange(3)}, q)\n"
        "    tree = ckptkit.torch.load(q)\n"
        "    assert tree['b'].tolist() == [0, 1, 2] and torch.equal(tree['a'], t)\n"
        "    assert torch.load(q)['b'].tolist() == [0, 1, 2]\n"
        "print('ok', sys.version_info[:2])\n"
    )
    r = subprocess.run([SYSTEM_PY, "-c", code], capture_output=True, text=True,
                       cwd=str(tmp_path), env={"PATH": os.environ.get("PATH", "")})
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr
