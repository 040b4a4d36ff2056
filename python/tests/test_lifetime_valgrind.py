"""Views read after close/drop/gc, under valgrind: no invalid access in
ckptkit's code (CPython's own start-up noise is filtered out)."""
import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(not shutil.which("valgrind"), reason="valgrind is not installed")
def test_lifetime_under_valgrind(tmp_path):
    env = dict(os.environ, PYTHONMALLOC="malloc")
    r = subprocess.run(["valgrind", "--leak-check=no", "--num-callers=40",
                        sys.executable, os.path.join(HERE, "lifetime_script.py")],
                       capture_output=True, text=True, env=env, cwd=str(tmp_path), timeout=600)
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr[-3000:]
    # one valgrind error record per blank-line-separated block
    blocks = re.split(r"==\d+== \n", r.stderr)
    ours = [b for b in blocks if "ckptkit" in b and ("Invalid" in b or "uninitialised" in b)]
    assert not ours, "\n".join(ours)[:4000]
