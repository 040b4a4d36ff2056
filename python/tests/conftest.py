"""Shared helpers for the ckptkit package tests."""
import glob
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REAL = os.environ.get("CKPTKIT_FIXTURES", "/work/shared/fixtures/real")


def real(pattern):
    return sorted(glob.glob(os.path.join(REAL, pattern)))


def malicious_fixtures():
    """Files the fixture manifest marks MALICIOUS (never given to pickle/torch.load)."""
    out = set()
    manifest = os.path.join(REAL, "MANIFEST.tsv")
    if os.path.exists(manifest):
        with open(manifest) as f:
            for line in f:
                cols = line.rstrip("\n").split("\t")
                if len(cols) > 1 and "MALICIOUS" in line:
                    out.add(os.path.join(REAL, cols[0]))
    return out


def as_bytes(x):
    """The raw bytes of a numpy array or torch tensor, for bit-exact comparison."""
    if isinstance(x, np.ndarray):
        return np.ascontiguousarray(x).view(np.uint8).tobytes()
    import torch
    t = x.detach().cpu().contiguous()
    if t.is_conj():
        t = t.resolve_conj()
    if t.numel() == 0:
        return b""
    return t.reshape(-1).view(torch.uint8).numpy().tobytes()


def same_tensor(a, b):
    assert tuple(a.shape) == tuple(b.shape)
    assert str(a.dtype) == str(b.dtype)
    assert as_bytes(a) == as_bytes(b)


@pytest.fixture
def tmp(tmp_path):
    return tmp_path
