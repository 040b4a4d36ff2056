"""ckptkit.torch: safetensors.torch's functions for every checkpoint format,
and a torch.load that never runs code.

    from ckptkit.torch import load_file, save_file
    sd = load_file("model.ckpt")                 # any format ckptkit reads
    save_file(sd, "model.safetensors")           # the format follows the extension
    ckpt = ckptkit.torch.load("last.ckpt")       # the whole checkpoint, inert
"""
from __future__ import annotations

import collections
import os
import tempfile

import numpy as np
import torch

from . import _ckptkit
from ._ckptkit import ArgumentError, UnsupportedError
from ._tensors import Global, Opaque, _torch_to_ck, safe_open, tensor_pt

__all__ = ["load_file", "save_file", "load", "save", "save_model", "load_model", "torch_load"]


def load_file(filename, device="cpu", *, dtype=None):
    """Loads every tensor of FILENAME (any format ckptkit reads, or a sharded
    checkpoint's index file or folder) as {name: torch.Tensor}, like
    ``safetensors.torch.load_file``. Tensors usable as stored are zero-copy
    views of the file (mapped copy-on-write). DEVICE may be "cuda:N"."""
    with safe_open(filename, framework="pt", device=device, dtype=dtype) as f:
        return f._load_all()


def _items(tensors):
    """(name, dtype, shape, address, nbytes) per tensor, and the tensors that
    must stay alive while the library reads them."""
    if not isinstance(tensors, dict):
        raise TypeError(f"expected a dict of [str, torch.Tensor], got {type(tensors).__name__}")
    items, keep = [], []
    for name, t in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {type(name).__name__}")
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"tensor '{name}' is a {type(t).__name__}, not a torch.Tensor")
        if t.layout != torch.strided:
            raise UnsupportedError(f"tensor '{name}' is {t.layout}: only dense tensors are saved")
        t = t.detach()
        if t.device.type != "cpu":
            t = t.to("cpu")
        if not t.is_contiguous():
            t = t.contiguous()
        if t.is_conj():
            t = t.resolve_conj()
        if t.is_neg():
            t = t.resolve_neg()
        keep.append(t)
        nbytes = t.numel() * t.element_size()
        items.append((name, _torch_to_ck(t.dtype), tuple(t.shape),
                      t.data_ptr() if nbytes else 0, nbytes))
    return items, keep


def _out_options(filename, force=True):
    opts = {"force": 1}
    if _ckptkit.format_for_path(os.fspath(filename)) is None:
        opts["out_format"] = "safetensors"
    return opts


def save_file(tensors, filename, metadata=None, *, progress=None):
    """Writes TENSORS ({name: torch.Tensor}) to FILENAME, like
    ``safetensors.torch.save_file``; the format follows the extension
    (.safetensors, .pth/.pt/.bin, .ckpt; anything else: safetensors). The file is
    written beside FILENAME and renamed into place when complete, so saving over
    the file the tensors were loaded from is safe. METADATA is {str: str}."""
    items, keep = _items(tensors)
    stats = _ckptkit.write(os.fspath(filename), items, metadata, _out_options(filename),
                           progress)
    del keep
    return None


def save(tensors, metadata=None) -> bytes:
    """The safetensors bytes of TENSORS, like ``safetensors.torch.save``."""
    with tempfile.TemporaryDirectory(prefix="ckptkit-") as d:
        p = os.path.join(d, "out.safetensors")
        save_file(tensors, p, metadata)
        with open(p, "rb") as fh:
            return fh.read()


def _shared_groups(state_dict):
    groups = collections.defaultdict(list)
    for k, v in state_dict.items():
        if v.numel() == 0 or v.device.type == "meta":
            continue
        groups[(v.device, v.untyped_storage().data_ptr(), v.data_ptr(), v.nbytes,
                v.dtype, tuple(v.shape))].append(k)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def save_model(model, filename, metadata=None, force_contiguous=False):
    """Saves MODEL's state dict, like ``safetensors.torch.save_model``: tensors
    that are the same memory (tied weights) are written once, and the names
    left out are recorded in the metadata as {dropped: kept} so that
    :func:`load_model` restores them."""
    sd = model.state_dict()
    meta = dict(metadata or {})
    out = dict(sd)
    for group in _shared_groups(sd):
        keep = group[0]
        for other in group[1:]:
            del out[other]
            meta.setdefault(other, keep)
    if force_contiguous:
        out = {k: v.contiguous() for k, v in out.items()}
    save_file(out, filename, meta or None)


def load_model(model, filename, strict=True, device="cpu"):
    """Loads FILENAME into MODEL, like ``safetensors.torch.load_model``; names
    :func:`save_model` left out are filled from the tensor they share.
    Returns (missing, unexpected) key lists."""
    sd = load_file(filename, device=device)
    with safe_open(filename, framework="pt") as f:
        meta = f.metadata() or {}
    own = model.state_dict()
    for dropped, kept in meta.items():
        if dropped in own and dropped not in sd and kept in sd:
            sd[dropped] = sd[kept]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if k not in sd]
    if strict and (missing or unexpected):
        raise RuntimeError(f"Error(s) in loading state_dict for {type(model).__name__}: "
                           f"missing keys {missing}, unexpected keys {unexpected}")
    return missing, unexpected


# ---- torch.load, inert ---------------------------------------------------------------

class _Factory:
    """Makes Python objects for the value tree's non-container nodes."""

    def __init__(self, model, map_location):
        self.model = model
        self.map_location = map_location

    def tensor(self, index, parameter):
        info = self.model.info(index)
        t = tensor_pt(self.model, index, info)
        t = _relocate(t, self.map_location)
        if parameter:
            t = torch.nn.Parameter(t, requires_grad=t.is_floating_point() or t.is_complex())
        return t

    def skipped(self, why):
        return Opaque("torch", "Tensor", (why,), None)

    def array(self, data, typestr, shape, fortran):
        a = np.frombuffer(data, dtype=np.dtype(typestr))
        return a.reshape(shape, order="F" if fortran else "C").copy()

    def dtype(self, name):
        dt = getattr(torch, name, None)
        return dt if isinstance(dt, torch.dtype) else Global("torch", name)

    def npdtype(self, s):
        return np.dtype(s)

    def device(self, s):
        try:
            return torch.device(s)
        except (RuntimeError, ValueError):
            return s

    def size(self, t):
        try:
            return torch.Size(t)
        except TypeError:
            return t

    def storage(self, name):
        return Opaque("torch", name)

    def global_(self, module, name):
        return Global(module, name)

    def opaque(self, module, name):
        return Opaque(module, name)


def _relocate(t, loc):
    if loc is None:
        return t
    if callable(loc) and not isinstance(loc, (str, torch.device)):
        r = loc(t, "cpu")
        return t if r is None else r
    if isinstance(loc, dict):
        loc = loc.get("cpu", "cpu")
    dev = torch.device(loc)
    if dev.type == "cpu":
        return t
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError(f"map_location {str(dev)!r}, but this torch has no usable CUDA "
                               f"device")
    return t.to(dev)


def load(f, map_location=None, allow_unsafe=False, **_ignored):
    """A ``torch.load`` that never runs code. F is a path, a file object or bytes.

    Returns the checkpoint's whole tree: dicts, OrderedDicts, lists, tuples,
    sets, numbers, strings, bytes, None, ``torch.Size``, ``torch.device``,
    dtypes, numpy arrays and tensors (zero-copy views of the file where
    possible). Every other object is a :class:`ckptkit.Opaque` (module, name,
    args, state) that is never constructed; class references are
    :class:`ckptkit.Global`. A pickle that references a dangerous global
    (os.system, eval, ...) raises UnsafeError naming it, unless ALLOW_UNSAFE
    (which still runs nothing). MAP_LOCATION: None, a device or its name, a
    {"cpu": device} dict, or a callable(tensor, "cpu").
    A file that is not a pickle (safetensors, raw) gives {name: tensor}: so
    ``load(data)`` on safetensors bytes is ``safetensors.torch.load(data)``.
    """
    if isinstance(f, (bytes, bytearray, memoryview)):
        model = _ckptkit.Model(None, data=bytes(f), name="<bytes>", values=True,
                               allow_unsafe=allow_unsafe)
    elif isinstance(f, (str, os.PathLike)):
        model = _ckptkit.Model(os.fspath(f), values=True, allow_unsafe=allow_unsafe)
    elif hasattr(f, "read"):
        data = f.read()
        model = _ckptkit.Model(None, data=bytes(data), name=str(getattr(f, "name", "<file>")),
                               values=True, allow_unsafe=allow_unsafe)
    else:
        raise TypeError(f"expected a path, bytes or a file object, got {type(f).__name__}")
    try:
        root = model.values(_Factory(model, map_location))
        if root is None:
            root = collections.OrderedDict()
            for i in range(model.count()):
                info = model.info(i)
                root[info[0]] = _relocate(tensor_pt(model, i, info), map_location)
        return root
    finally:
        model.close()


torch_load = load
