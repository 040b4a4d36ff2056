"""NumPy's own .npy/.npz files through ckptkit.numpy, against numpy.load."""
import os

import numpy as np
import pytest

import ckptkit
import ckptkit.numpy
from conftest import malicious_fixtures, real

FILES = [p for p in real("npy/*.npy") + real("npz/*.npz") if p not in malicious_fixtures()]


def numpy_reference(path):
    r = np.load(path, allow_pickle=False)  # never unpickles
    if isinstance(r, np.ndarray):  # a plain .npy: named after the file
        return {os.path.splitext(os.path.basename(path))[0]: r}
    with r:
        return {k: r[k] for k in r.files}


@pytest.mark.parametrize("path", FILES, ids=os.path.basename)
def test_against_numpy_load(path):
    try:
        want = numpy_reference(path)
    except Exception as e:
        with pytest.raises(ckptkit.Error):
            ckptkit.numpy.load_file(path)
        pytest.skip(f"numpy.load refuses it too: {type(e).__name__}")
    if any(v.dtype.kind in "OUSVMm" or v.dtype.names for v in want.values()):
        with pytest.raises((ckptkit.UnsupportedError, ckptkit.UnsafeError)):
            ckptkit.numpy.load_file(path)
        return
    try:
        got = ckptkit.numpy.load_file(path)
    except ckptkit.FormatError as e:
        # stricter than numpy on purpose (a bool byte that is neither 0 nor 1)
        assert path in str(e) and "bool" in str(e)
        return
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        assert got[k].shape == v.shape
        assert got[k].dtype == v.dtype.newbyteorder("=")
        assert np.array_equal(got[k], v)


@pytest.mark.parametrize("path", [p for p in real("npy/*") + real("npz/*")
                                  if p in malicious_fixtures()], ids=os.path.basename)
def test_pickled_arrays_refused(path):
    with pytest.raises(ckptkit.UnsafeError):
        ckptkit.numpy.load_file(path)
