#!/usr/bin/env bash
# Creates (or reuses) the pinned Python test environment in build/venv from
# tests/requirements.txt, and prints the path of its python. The environment is
# reused while the requirements file is unchanged (its SHA-256 is kept in
# build/venv/.requirements.sha256); otherwise it is rebuilt from scratch.
# Uses the python3 on PATH (CPython 3.11 here). pip looks in the machine's
# local wheel folder (/opt/wheels, where the CPU build of torch 2.13.0 lies)
# before PyPI, so the pinned torch never pulls a CUDA build.
set -eu -o pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
req="$root/tests/requirements.txt"
venv="${CKPTKIT_VENV:-$root/build/venv}"
py=${PYTHON3:-python3}
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" = "$want" ]; then
    echo "$venv/bin/python"
    exit 0
fi
echo "venv: building $venv from tests/requirements.txt (a minute or two)" >&2
rm -rf "$venv"
"$py" -m venv "$venv" >&2
links=()
[ -d /opt/wheels ] && links=(--find-links /opt/wheels)
# (the machine's pip configuration may name index folders that are absent: quiet those warnings)
"$venv/bin/pip" install -q --disable-pip-version-check "${links[@]}" -r "$req" 2>&1 |
    { grep -v 'is ignored: it is neither a file nor a directory' || true; } >&2
# torch must be the CPU build: a CUDA build means the pin was bypassed
"$venv/bin/python" - >&2 <<'PY'
import torch, sys
if torch.version.cuda is not None:
    sys.exit("venv: torch %s is a CUDA build; the CPU wheel was expected" % torch.__version__)
PY
echo "$want" > "$venv/.requirements.sha256"
echo "$venv/bin/python"
