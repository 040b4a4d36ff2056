"""safe_open, slices, and turning the library's tensors into numpy arrays or
torch tensors (zero-copy where the stored bytes are usable as they are)."""
from __future__ import annotations

import gc
import os
import threading

import numpy as np

from . import _ckptkit
from ._ckptkit import ArgumentError, UnsupportedError

# ---- dtypes -----------------------------------------------------------------------

_NP_PLAIN = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "U16": np.uint16, "I16": np.int16,
    "U32": np.uint32, "I32": np.int32, "U64": np.uint64, "I64": np.int64,
    "F16": np.float16, "F32": np.float32, "F64": np.float64,
    "C64": np.complex64, "C128": np.complex128,
}
_NP_ML = {
    "BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}
_TORCH_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "U16": "uint16", "I16": "int16",
    "U32": "uint32", "I32": "int32", "U64": "uint64", "I64": "int64", "F16": "float16",
    "BF16": "bfloat16", "F32": "float32", "F64": "float64", "C64": "complex64",
    "C128": "complex128", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
    "F8_E8M0": "float8_e8m0fnu",
}


_NP_CACHE: dict = {}
_PT_CACHE: dict = {}


def numpy_dtype(name: str):
    """The numpy dtype for a ckptkit dtype name ("F32", "BF16", ...)."""
    dt = _NP_CACHE.get(name)
    if dt is None:
        dt = _NP_CACHE[name] = _numpy_dtype(name)
    return dt


def _numpy_dtype(name: str):
    if name in _NP_PLAIN:
        return np.dtype(_NP_PLAIN[name])
    if name in _NP_ML:
        try:
            import ml_dtypes
        except ImportError:
            raise UnsupportedError(
                f"{name} tensors have no numpy dtype without the ml_dtypes package: install "
                f"ml_dtypes, or open with framework=\"pt\", or pass dtype=\"F32\" to read them "
                f"cast") from None
        return np.dtype(getattr(ml_dtypes, _NP_ML[name]))
    raise UnsupportedError(
        f"{name} tensors are packed below one byte per value and have no numpy view: pass "
        f"dtype=\"F32\" to read them cast")


def torch_dtype(name: str):
    """The torch dtype for a ckptkit dtype name."""
    t = _PT_CACHE.get(name)
    if t is None:
        t = _PT_CACHE[name] = _torch_dtype(name)
    return t


def _torch_dtype(name: str):
    import torch
    t = getattr(torch, _TORCH_NAMES.get(name, "?"), None)
    if t is None:
        raise UnsupportedError(
            f"{name} tensors have no torch dtype in torch {torch.__version__}: pass "
            f"dtype=\"F32\" to read them cast")
    return t


def _np_to_ck(dt) -> str:
    dt = np.dtype(dt)
    for k, v in _NP_PLAIN.items():
        if np.dtype(v) == dt:
            return k
    for k, v in _NP_ML.items():
        if dt.name == v:
            return k
    raise UnsupportedError(f"numpy dtype {dt} has no checkpoint dtype")


def _torch_to_ck(dt) -> str:
    name = str(dt).replace("torch.", "")
    for k, v in _TORCH_NAMES.items():
        if v == name:
            return k
    raise UnsupportedError(f"torch dtype {name} has no checkpoint dtype")


def _check_device(framework: str, device) -> str:
    dev = "cpu" if device is None else str(device)
    if framework in ("np", "numpy"):
        if dev != "cpu":
            raise ArgumentError(f"framework=\"np\" gives host arrays: device must be \"cpu\", "
                                f"not {dev!r}")
        return dev
    if dev.startswith("cuda") or dev.isdigit():
        import torch
        if dev.isdigit():
            dev = f"cuda:{dev}"
        if not torch.cuda.is_available():
            raise UnsupportedError(
                f"device {dev!r} asked for, but this torch ({torch.__version__}) has no usable "
                f"CUDA device: load on \"cpu\"")
        idx = torch.device(dev).index or 0
        if idx >= torch.cuda.device_count():
            raise UnsupportedError(f"device {dev!r} asked for, but torch sees "
                                   f"{torch.cuda.device_count()} CUDA device(s)")
    return dev


_BLOCK_CACHE: dict = {}


def is_block_quantised(name: str) -> bool:
    """True for ggml's block-quantised types (Q8_0, Q4_K, IQ2_XS, ...): they
    have no element view and arrive dequantised to F32 unless a dtype is asked."""
    q = _BLOCK_CACHE.get(name)
    if q is None:
        q = _BLOCK_CACHE[name] = _ckptkit.dtype_info(name)[1] == 0
    return q


# ---- one tensor -----------------------------------------------------------------------

def _materialise_np(model, i, dt, shape, cast=None, first=0, count=-1):
    data = model.read(i, first=first, count=count, dtype=cast)
    return np.frombuffer(data, dtype=numpy_dtype(cast or dt))


def tensor_np(model, i, info, cast=None, zero_copy=True):
    name, dt, shape = info[0], info[1], info[2]
    if cast is not None:
        cast = _ckptkit.dtype_info(cast)[0]
        if cast == dt:
            cast = None
    if cast is None and is_block_quantised(dt):
        cast = "F32"
    if cast is None and zero_copy:
        npdt = numpy_dtype(dt)
        buf = model.view(i)
        if buf is not None:
            return np.frombuffer(buf, dtype=npdt).reshape(shape)
    return _materialise_np(model, i, dt, shape, cast).reshape(shape)


def tensor_pt(model, i, info, cast=None, zero_copy=True, device="cpu"):
    import torch
    name, dt, shape, numel = info[0], info[1], info[2], info[5]
    if cast is not None:
        cast = _ckptkit.dtype_info(cast)[0]
        if cast == dt:
            cast = None
    if cast is None and is_block_quantised(dt):
        cast = "F32"
    tdt = torch_dtype(cast or dt)
    if numel == 0:
        t = torch.empty(shape, dtype=tdt)
    else:
        buf = model.view(i) if (cast is None and zero_copy) else None
        if buf is None:
            buf = model.read(i, dtype=cast)
        t = torch.frombuffer(buf, dtype=tdt).reshape(shape)
    if device and device != "cpu":
        t = t.to(device)
    return t


# ---- slices ---------------------------------------------------------------------------

def _normalise_index(index, shape):
    """numpy basic indexing -> a list with, per dimension, an int or a
    (start, stop, step) triple, and the positions of new axes (None)."""
    if not isinstance(index, tuple):
        index = (index,)
    n_ell = sum(1 for x in index if x is Ellipsis)
    if n_ell > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(1 for x in index if x is not None and x is not Ellipsis)
    if used > len(shape):
        raise IndexError(f"too many indices: tensor is {len(shape)}-dimensional, but {used} "
                         f"were indexed")
    out = []
    dim = 0
    for x in index:
        if x is Ellipsis:
            for _ in range(len(shape) - used):
                out.append((0, shape[dim], 1))
                dim += 1
        elif x is None:
            out.append(None)
        elif isinstance(x, slice):
            out.append(x.indices(shape[dim]))
            dim += 1
        else:
            try:
                k = int(np.asarray(x).item()) if not isinstance(x, int) else x
            except (TypeError, ValueError):
                raise IndexError(f"unsupported index {x!r}: use ints, slices, ... and None")
            if isinstance(x, bool) or (hasattr(x, "dtype") and np.asarray(x).dtype == bool):
                raise IndexError("boolean indices are not supported")
            if not -shape[dim] <= k < shape[dim]:
                raise IndexError(f"index {k} is out of bounds for dimension {dim} with size "
                                 f"{shape[dim]}")
            out.append(k % shape[dim])
            dim += 1
    while dim < len(shape):
        out.append((0, shape[dim], 1))
        dim += 1
    return out


class Slice:
    """A lazily read tensor (``safe_open(...).get_slice(name)``): ``get_shape()``,
    ``get_dtype()``, and numpy indexing (ints, slices with steps and negative
    bounds, Ellipsis, None). Only the rows the index touches in the first
    dimension are read."""

    def __init__(self, handle, name):
        self._h = handle
        self._name = name
        self._i = handle._index(name)
        self._info = handle._model.info(self._i)

    def get_shape(self) -> list:
        return list(self._info[2])

    def get_dtype(self) -> str:
        return self._info[1]

    @property
    def shape(self):
        return tuple(self._info[2])

    @property
    def dtype(self) -> str:
        return self._info[1]

    def __len__(self):
        shape = self._info[2]
        if not shape:
            raise TypeError("len() of a 0-d tensor")
        return shape[0]

    def __getitem__(self, index):
        h = self._h
        h._check()
        shape = tuple(self._info[2])
        norm = _normalise_index(index, shape)
        model, i, info = h._model, self._i, self._info
        dt = info[1]
        # rows of the first dimension the index needs, read alone when the
        # tensor must be materialised anyway
        first_dim = next((k for k, x in enumerate(norm) if x is not None), None)
        sub = None
        if first_dim is not None and len(shape) and h._cast is None and info[9] is False:
            x = norm[first_dim]
            if isinstance(x, int):
                lo, hi = x, x + 1
            else:
                r = range(*x)
                lo, hi = (min(r), max(r) + 1) if len(r) else (0, 0)
            row = 1
            for s in shape[1:]:
                row *= s
            if hi > lo and (dt not in ("F4", "F6_E2M3", "F6_E3M2")):
                # a quantised tensor's rows are whole blocks: read them dequantised
                rcast = "F32" if is_block_quantised(dt) else None
                arr = _materialise_np(model, i, dt, shape, rcast, first=lo * row,
                                      count=(hi - lo) * row) if h._framework == "np" else None
                if arr is not None:
                    sub = arr.reshape((hi - lo,) + shape[1:])
                    if isinstance(x, int):
                        norm[first_dim] = x - lo
                    else:
                        start, stop, step = x
                        norm[first_dim] = (start - lo, (stop - lo) if stop - lo >= 0 else None,
                                           step)
        if h._framework == "np":
            full = sub if sub is not None else h._np(i, info)
            return np.array(full[_to_np_index(norm)], copy=True)
        return _torch_index(h._pt(i, info), norm)

    def __repr__(self):
        return f"Slice({self._name!r}, shape={self.get_shape()}, dtype={self.get_dtype()})"


def _to_np_index(norm):
    out = []
    for x in norm:
        if x is None or isinstance(x, int):
            out.append(x)
        else:
            start, stop, step = x
            # slice.indices gives stop -1 for "past the first element" when
            # stepping backwards; as a slice bound -1 would mean the last one
            out.append(slice(start, None if stop is None or stop < 0 else stop, step))
    return tuple(out)


def _torch_index(t, norm):
    """Applies a normalised index to a torch tensor, negative steps included
    (torch slicing has none: they become a positive slice and a flip)."""
    import torch
    flips = []
    idx = []
    dim_out = 0
    for x in norm:
        if x is None:
            idx.append(None)
            dim_out += 1
        elif isinstance(x, int):
            idx.append(x)
        else:
            start, stop, step = x
            n = len(range(start, stop, step))
            if step > 0:
                idx.append(slice(start, start + step * (n - 1) + 1 if n else start, step))
            else:
                last = start + step * (n - 1) if n else 0
                idx.append(slice(last, start + 1 if n else 0, -step))
                flips.append(dim_out)
            dim_out += 1
    r = t[tuple(idx)]
    if flips:
        r = torch.flip(r, flips)
    return r.clone()


# ---- safe_open ------------------------------------------------------------------------

class safe_open:
    """Opens a checkpoint of any format ckptkit reads, like ``safetensors.safe_open``::

        with ckptkit.safe_open("model.ckpt", framework="pt", device="cpu") as f:
            for k in f.keys():
                t = f.get_tensor(k)

    FRAMEWORK is "np" (numpy arrays) or "pt" (torch tensors); DEVICE "cpu" or
    "cuda:N" (torch only). DTYPE (e.g. "F32") casts floating tensors as they
    are read. KEY, ALL, MANIFEST, FORMAT, ALLOW_UNSAFE are the library's open
    options. FILENAME may also be a sharded checkpoint's index file or
    folder, or the checkpoint itself as bytes or a binary file object (read
    whole; its tensors are then copies). Tensors usable as stored are
    zero-copy views of the mapped file.
    """

    def __init__(self, filename, framework="np", device="cpu", *, dtype=None, key=None,
                 all=False, manifest=None, format=None, allow_unsafe=False, _data=None):
        fw = {"np": "np", "numpy": "np", "pt": "pt", "torch": "pt", "pytorch": "pt"}.get(
            str(framework))
        if fw is None:
            raise ArgumentError(f"framework {framework!r} is not supported: use \"np\" or \"pt\"")
        self._framework = fw
        self._device = _check_device(fw, device)
        self._cast = _ckptkit.dtype_info(dtype)[0] if dtype is not None else None
        if _data is None and isinstance(filename, (bytes, bytearray, memoryview)):
            _data = bytes(filename)
        elif _data is None and hasattr(filename, "read"):
            _data = bytes(filename.read())
        if _data is not None:
            self._model = _ckptkit.Model(None, data=_data, name="<bytes>", format=format,
                                         key=key, all=all, allow_unsafe=allow_unsafe)
            self._zero_copy = False  # never hand out writable views of immutable bytes
        else:
            self._model = _ckptkit.Model(os.fspath(filename), format=format, key=key, all=all,
                                         manifest=manifest, allow_unsafe=allow_unsafe)
            self._zero_copy = True
        self._lock = threading.Lock()

    # context manager
    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        """Closes the handle; arrays and tensors already taken stay valid (the
        mapping goes with the last of them). Any later call raises."""
        self._model.close()

    def _check(self):
        if self._model.closed:
            raise ValueError("ckptkit: the checkpoint is closed")

    def _index(self, name):
        self._check()
        if not isinstance(name, str):
            raise TypeError(f"tensor names are str, not {type(name).__name__}")
        return self._model.find(name)

    def _np(self, i, info):
        return tensor_np(self._model, i, info, self._cast, self._zero_copy)

    def _pt(self, i, info):
        return tensor_pt(self._model, i, info, self._cast, self._zero_copy, self._device)

    def keys(self) -> list:
        """Tensor names, sorted (as safetensors gives them)."""
        self._check()
        return sorted(self._model.names())

    def offset_keys(self) -> list:
        """Tensor names in the order their bytes lie in the file."""
        self._check()
        entries = self._model.entries()
        return [e[0] for e in sorted(entries, key=lambda e: e[4])]

    def _load_all(self) -> dict:
        """{name: tensor} for every tensor, in offset order (load_file)."""
        # tens of thousands of small objects would set off the cyclic
        # collector again and again, each pass walking torch's whole heap;
        # nothing made here is cyclic
        was = gc.isenabled()
        gc.disable()
        try:
            return self._load_all_inner()
        finally:
            if was:
                gc.enable()

    def _load_all_inner(self) -> dict:
        self._check()
        entries = self._model.entries()
        order = sorted(range(len(entries)), key=lambda i: entries[i][4])
        out = {}
        direct = self._cast is None and self._zero_copy and self._device == "cpu"
        if self._framework == "np":
            frombuffer = np.frombuffer
            for i in order:
                name, dt, shape, buf, _off = entries[i]
                if direct and buf is not None:
                    out[name] = frombuffer(buf, dtype=numpy_dtype(dt)).reshape(shape)
                else:
                    out[name] = self._np(i, self._model.info(i))
            return out
        import torch
        frombuffer = torch.frombuffer
        dtypes: dict = {}
        for i in order:
            name, dt, shape, buf, _off = entries[i]
            if direct and buf is not None and buf.nbytes:
                tdt = dtypes.get(dt)
                if tdt is None:
                    tdt = dtypes[dt] = torch_dtype(dt)
                t = frombuffer(buf, dtype=tdt)
                out[name] = t if len(shape) == 1 else t.reshape(shape)
            else:
                out[name] = self._pt(i, self._model.info(i))
        return out

    def metadata(self):
        """The string metadata as a dict, or None when the file has none."""
        self._check()
        md = self._model.metadata()
        return md or None

    def format(self) -> str:
        """The reader that opened the file ("safetensors", "torch-zip", ...)."""
        self._check()
        return self._model.format

    def get_tensor(self, name):
        """The tensor NAME as a numpy array or torch tensor; KeyError if absent."""
        i = self._index(name)
        info = self._model.info(i)
        return self._np(i, info) if self._framework == "np" else self._pt(i, info)

    def get_slice(self, name) -> Slice:
        """A lazily read tensor to index with numpy semantics."""
        self._index(name)
        return Slice(self, name)

    def __contains__(self, name):
        self._check()
        try:
            self._model.find(name)
            return True
        except KeyError:
            return False

    def __len__(self):
        self._check()
        return self._model.count()

    def __iter__(self):
        return iter(self.keys())


# ---- the value tree (ckptkit.torch.load) ----------------------------------------------------

class Opaque:
    """An object of a class ckptkit does not construct, kept inert.

    ``module`` and ``name`` name its class (never imported); ``args`` holds its
    constructor arguments, ``state`` the state it would be given
    (``__setstate__`` / ``__dict__``), ``dict`` the items set on it and ``list``
    the items appended to it, all as plain values (None when absent)."""

    __slots__ = ("module", "name", "args", "state", "dict", "list", "__weakref__")

    def __init__(self, module, name, args=None, state=None, dict=None, list=None):
        self.module = module
        self.name = name
        self.args = args
        self.state = state
        self.dict = dict
        self.list = list

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.name}"

    def __getattr__(self, attr):
        # give the state's fields as attributes (hparams.lr, namespace.batch_size)
        st = object.__getattribute__(self, "state")
        if isinstance(st, dict) and attr in st:
            return st[attr]
        d = object.__getattribute__(self, "dict")
        if isinstance(d, dict) and attr in d:
            return d[attr]
        raise AttributeError(f"{self.module}.{self.name} object (kept opaque) has no "
                             f"attribute {attr!r}")

    def __getitem__(self, k):
        if isinstance(self.dict, dict):
            return self.dict[k]
        if isinstance(self.list, list):
            return self.list[k]
        raise TypeError(f"{self.module}.{self.name} object (kept opaque) holds no items")

    def __repr__(self):
        return f"<ckptkit.Opaque {self.module}.{self.name}>"


class Global:
    """A reference to a class or function, never imported."""

    __slots__ = ("module", "name")

    def __init__(self, module, name):
        self.module = module
        self.name = name

    def __eq__(self, other):
        return isinstance(other, Global) and (self.module, self.name) == (other.module,
                                                                           other.name)

    def __hash__(self):
        return hash((self.module, self.name))

    def __repr__(self):
        return f"<ckptkit.Global {self.module}.{self.name}>"
