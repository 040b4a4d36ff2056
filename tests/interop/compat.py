"""The compatibility table, recorded by the tests that prove it.

A test calls record(tool, version, direction, what) at its end, after every
assertion passed, so a row exists only for what ran and held in this run:
    direction "reads"   ckptkit reads files the tool wrote
    direction "writes"  the tool reads files ckptkit wrote
Rows go to build/compat/<lane>.jsonl (the lane is CKPTKIT_LANE: "current" for
the pinned environment, "oldest" for Debian's PyTorch 1.13). render_compat.py
turns them into the table in README.md and docs/COMPAT.md.
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT_DIR = os.path.join(ROOT, "build", "compat")


def lane():
    return os.environ.get("CKPTKIT_LANE", "current")


def record(tool, version, direction, what):
    """Note that `what` was proven between ckptkit and `tool` `version`."""
    if direction not in ("reads", "writes"):
        raise ValueError("direction must be 'reads' or 'writes'")
    os.makedirs(OUT_DIR, exist_ok=True)
    row = {"tool": tool, "version": str(version), "direction": direction, "what": what,
           "lane": lane()}
    with open(os.path.join(OUT_DIR, lane() + ".jsonl"), "a") as f:
        f.write(json.dumps(row, sort_keys=True) + "\n")


def version_of(module):
    """A package's version as the table shows it: '2.13.0' for '2.13.0+cpu'."""
    return str(getattr(module, "__version__", "?")).split("+")[0]
