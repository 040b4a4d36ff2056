"""ckptkit.numpy: safetensors.numpy's functions for every checkpoint format.

    from ckptkit.numpy import load_file, save_file
    arrays = load_file("model.pth")           # zero-copy views where possible
    save_file(arrays, "model.safetensors")
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from . import _ckptkit
from ._tensors import _np_to_ck, safe_open

__all__ = ["load_file", "save_file", "load", "save"]


def load_file(filename, *, dtype=None):
    """Loads every tensor of FILENAME (any format ckptkit reads, or a sharded
    checkpoint's index file or folder) as {name: numpy.ndarray}, like
    ``safetensors.numpy.load_file``. Arrays usable as stored are zero-copy,
    writable views of the file mapped copy-on-write (writes never reach the
    file). BF16 and F8 need ml_dtypes; DTYPE="F32" casts instead."""
    with safe_open(filename, framework="np", dtype=dtype) as f:
        return f._load_all()


def load(data: bytes, *, dtype=None):
    """The tensors of a checkpoint held in DATA (bytes), like
    ``safetensors.numpy.load``; the arrays are copies."""
    with safe_open(None, framework="np", dtype=dtype, _data=bytes(data)) as f:
        return f._load_all()


def _items(arrays):
    if not isinstance(arrays, dict):
        raise TypeError(f"expected a dict of [str, numpy.ndarray], got {type(arrays).__name__}")
    items, keep = [], []
    for name, a in arrays.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {type(name).__name__}")
        a = np.asarray(a)
        if a.dtype.byteorder == ">" or (a.dtype.byteorder == "=" and np.little_endian is False):
            a = a.astype(a.dtype.newbyteorder("<"))
        a = np.ascontiguousarray(a)
        keep.append(a)
        items.append((name, _np_to_ck(a.dtype), a.shape,
                      a.ctypes.data if a.nbytes else 0, a.nbytes))
    return items, keep


def save_file(tensor_dict, filename, metadata=None, *, progress=None):
    """Writes TENSOR_DICT ({name: numpy.ndarray}) to FILENAME, like
    ``safetensors.numpy.save_file``; the format follows the extension
    (.safetensors, .pth/.pt/.bin, .ckpt; anything else: safetensors), through a
    temporary file renamed into place when complete."""
    items, keep = _items(tensor_dict)
    opts = {"force": 1}
    if _ckptkit.format_for_path(os.fspath(filename)) is None:
        opts["out_format"] = "safetensors"
    _ckptkit.write(os.fspath(filename), items, metadata, opts, progress)
    del keep


def save(tensor_dict, metadata=None) -> bytes:
    """The safetensors bytes of TENSOR_DICT, like ``safetensors.numpy.save``."""
    with tempfile.TemporaryDirectory(prefix="ckptkit-") as d:
        p = os.path.join(d, "out.safetensors")
        save_file(tensor_dict, p, metadata)
        with open(p, "rb") as f:
            return f.read()
