"""ckptkit: read and write neural-network checkpoints without running code.

Every format the library reads (safetensors, PyTorch zip/legacy/tar, Lightning
.ckpt, raw with a manifest, Hugging Face sharded checkpoints) opens through the
same calls as safetensors::

    import ckptkit
    with ckptkit.safe_open("model.ckpt", framework="pt") as f:
        w = f.get_tensor("layer.weight")
    sd = ckptkit.torch.load_file("model.pth")          # like safetensors.torch.load_file
    ckpt = ckptkit.torch.load("last.ckpt")             # like torch.load, never runs code
    ckptkit.convert("in.ckpt", "out.safetensors", dtype="f16")

Tensors whose stored bytes are usable as they are (dense, little-endian,
aligned, no cast) are views of the mapped file, which stays mapped while any
view lives; the file is mapped copy-on-write, so writing into a view never
changes it. Pickles are read by the library's restricted machine: nothing is
imported or called, and a pickle that references a dangerous global raises
UnsafeError.
"""
from __future__ import annotations

import json as _json
import os as _os
import re as _re

from . import _ckptkit
from ._ckptkit import (  # noqa: F401  (re-exported)
    ArgumentError,
    CancelledError,
    Error,
    FormatError,
    LimitError,
    SameFileError,
    UnsafeError,
    UnsupportedError,
    Warning,
)
from ._tensors import Global, Opaque, safe_open  # noqa: F401

__version__ = "0.1.0"
library_version = _ckptkit.library_version

__all__ = [
    "safe_open", "Opaque", "Global", "convert", "verify", "diff", "scan", "info", "ScanResult",
    "Error", "FormatError", "UnsupportedError", "UnsafeError", "LimitError", "ArgumentError",
    "SameFileError", "CancelledError", "Warning", "torch", "numpy",
]


def __getattr__(name):
    # ckptkit.torch and ckptkit.numpy import their frameworks: load them on first use
    if name in ("torch", "numpy"):
        import importlib
        return importlib.import_module("." + name, __name__)
    raise AttributeError(f"module 'ckptkit' has no attribute {name!r}")


_SIZE_RE = _re.compile(r"^\s*(\d+)\s*([kmgt]?i?b?)?\s*$", _re.I)


def _parse_size(size) -> int:
    if size is None:
        return 0
    if isinstance(size, int):
        if size < 0:
            raise ArgumentError(f"shard_size {size} is negative")
        return size
    m = _SIZE_RE.match(str(size))
    if not m:
        raise ArgumentError(f"shard_size {size!r} is not a size such as 5GB or 500MiB")
    n, unit = int(m.group(1)), (m.group(2) or "").lower()
    base = 1024 if "i" in unit else 1000
    power = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}[unit[:1] if unit[:1] in "kmgt" else ""]
    return n * base ** power


def _pairs(value, sep="="):
    """A dict, a 'K=V' string or a sequence of them -> a list of 'K=V' strings."""
    if value is None:
        return None
    if isinstance(value, dict):
        return [f"{k}{sep}{v}" for k, v in value.items()]
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _globs(value):
    if value is None:
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _open_options(format=None, key=None, manifest=None, all=False, allow_unsafe=False,
                  verify_crc=False):
    return {"format": format, "key": key, "manifest": manifest, "all": bool(all),
            "allow_unsafe": bool(allow_unsafe), "verify_crc": bool(verify_crc)}


def convert(src, dst, *, to=None, dtype=None, dtype_exclude=None, force=False, key=None,
            include=None, exclude=None, strip_prefix=None, rename=None, add_prefix=None,
            metadata=None, ema=None, no_ema=False, prune=False, shard_size=None, manifest=None,
            format=None, no_crc=False, all=False, allow_unsafe=False, unknown=None,
            cast_all=False, compress=False, strict=False, progress=None) -> dict:
    """Converts checkpoint SRC to DST, tensor by tensor, in bounded memory.

    The keyword arguments are the options of ``ckptkit convert``: ``to`` (output
    format: "safetensors", "pth", "ckpt", "raw"; default from DST's extension),
    ``dtype`` ("f16", "bf16", ...: cast floating tensors), ``dtype_exclude``
    (globs never cast), ``force``, ``key``, ``include``/``exclude`` (globs),
    ``strip_prefix``, ``rename`` (``{"old.": "new."}`` or ``["old.=new."]``),
    ``add_prefix``, ``metadata`` (dict or ``["K=V"]``), ``ema=True`` (write the EMA
    weights) or ``no_ema=True`` (drop them), ``prune``, ``shard_size`` (bytes, or
    "5GB"/"500MiB"), ``manifest``, ``format`` (input format), ``no_crc``,
    ``all``, ``allow_unsafe``; for a PyTorch -> PyTorch whole-checkpoint
    rewrite ``unknown`` ("dict", "drop", "keep") and ``cast_all``; for npz/npy
    output ``compress`` and ``strict``. ``progress(done, total)`` is called as
    bytes are written; returning False cancels (CancelledError, nothing left
    behind). The output goes through a temporary file renamed into place when
    complete. Returns the statistics: tensors, bytes, cast_tensors, overflow,
    underflow, shards, and ``rewrites``: the (path, what, became) changes a
    whole-checkpoint rewrite made.
    """
    policies = {None: 0, "dict": 0, "drop": 1, "keep": 2}
    if unknown not in policies:
        raise ArgumentError(f"unknown={unknown!r}: expected \"dict\", \"drop\" or \"keep\"")
    if ema and no_ema:
        raise ArgumentError("ema and no_ema exclude each other")
    co = {
        "out_format": to, "dtype": dtype, "dtype_exclude": _globs(dtype_exclude),
        "force": int(bool(force)), "include": _globs(include), "exclude": _globs(exclude),
        "strip_prefix": strip_prefix, "rename": _pairs(rename), "add_prefix": add_prefix,
        "metadata": _pairs(metadata), "ema": 1 if ema else (-1 if (no_ema or ema is False) else 0),
        "prune": int(bool(prune)), "shard_size": _parse_size(shard_size),
        "no_crc": int(bool(no_crc)), "unknown": policies[unknown],
        "cast_all": int(bool(cast_all)), "compress": int(bool(compress)),
        "strict": int(bool(strict)),
    }
    oo = _open_options(format, key, manifest, all, allow_unsafe)
    return _ckptkit.convert(_os.fspath(src), _os.fspath(dst), oo, co, progress)


def verify(a, b, *, key=None, all=False, allow_unsafe=False, progress=None) -> bool:
    """True when checkpoints A and B hold the same tensors: names, dtypes, shapes
    and bytes, exactly (``ckptkit verify``). See :func:`diff` for the differences."""
    same, _ = _ckptkit.verify(_os.fspath(a), _os.fspath(b),
                              _open_options(key=key, all=all, allow_unsafe=allow_unsafe),
                              progress)
    return same


def diff(a, b, *, rtol=0.0, atol=0.0, key=None, all=False, allow_unsafe=False,
         progress=None) -> list:
    """Compares checkpoints A and B by value (``ckptkit diff``) and returns one
    record (a dict) per tensor: name, dtype_a/dtype_b, shape_a/shape_b (None on
    the side that lacks it), compared, numel, mismatched, nan_mismatched,
    max_abs, mean_abs, cosine (None when not computable) and equal. Elements
    match under numpy.isclose's rule with RTOL and ATOL."""
    records, _summary = _ckptkit.diff(_os.fspath(a), _os.fspath(b), float(rtol), float(atol),
                                      _open_options(key=key, all=all,
                                                    allow_unsafe=allow_unsafe), progress)
    return records


class ScanResult:
    """What ``ckptkit.scan`` found in one file, shaped like ``ckptkit scan --json``.

    ``status`` is "clean" or "unsafe"; ``verdict`` the worst verdict of any global
    ("allowed", "unknown", "dangerous"); ``globals`` a list of dicts with module,
    name, verdict, where and offset; ``dangerous`` the dangerous ones.
    """

    __slots__ = ("file", "status", "verdict", "globals")

    def __init__(self, file, verdict, globals_):
        self.file = file
        self.verdict = verdict
        self.status = "unsafe" if verdict == "dangerous" else "clean"
        self.globals = globals_

    @property
    def safe(self) -> bool:
        return self.status == "clean"

    @property
    def dangerous(self) -> list:
        return [g for g in self.globals if g["verdict"] == "dangerous"]

    def __bool__(self):
        return self.safe

    def to_dict(self) -> dict:
        return {"file": self.file, "status": self.status, "globals": list(self.globals)}

    def __repr__(self):
        return (f"ScanResult(file={self.file!r}, status={self.status!r}, "
                f"globals={len(self.globals)}, dangerous={len(self.dangerous)})")


def scan(path) -> ScanResult:
    """Parses every pickle in PATH with the loader's own machine (nothing is run)
    and reports each global with its verdict. Raises FormatError (never "clean")
    when a pickle cannot be parsed completely."""
    p = _os.fspath(path)
    verdict, globals_ = _ckptkit.scan(p)
    return ScanResult(_os.fsdecode(p), verdict, globals_)


def info(path, *, key=None, all=False, manifest=None, format=None, allow_unsafe=False) -> dict:
    """What ``ckptkit info --json`` prints, as a dict: file, format, tensors,
    parameters, bytes, dtypes (counts), metadata, values (the non-tensor values),
    plus ``names``: the tensors with dtype and shape, in file order."""
    m = _ckptkit.Model(_os.fspath(path), format=format, key=key, manifest=manifest, all=all,
                       allow_unsafe=allow_unsafe, writable=False)
    try:
        dtypes: dict = {}
        params = nbytes = 0
        names = []
        for i in range(m.count()):
            name, dt, shape, *_rest = m.info(i)
            numel, nb = _rest[2], _rest[3]
            dtypes[dt] = dtypes.get(dt, 0) + 1
            params += numel
            nbytes += nb
            names.append({"name": name, "dtype": dt, "shape": list(shape)})
        return {
            "file": _os.fsdecode(_os.fspath(path)), "format": m.format, "tensors": m.count(),
            "parameters": params, "bytes": nbytes, "dtypes": dtypes, "metadata": m.metadata(),
            "values": _json.loads(m.values_json()), "names": names,
        }
    finally:
        m.close()
