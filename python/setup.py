"""Builds ckptkit._ckptkit: the C core, compiled together with the library
sources of the checkout this folder belongs to (../src, ../include), in the
stable ABI of CPython 3.11 so that one abi3 wheel serves every later CPython."""
import glob
import os

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def rel(p):
    return os.path.relpath(p, HERE)


lib_sources = sorted(glob.glob(os.path.join(ROOT, "src", "**", "*.c"), recursive=True))
if not lib_sources:
    raise SystemExit("ckptkit: the library sources (../src) were not found beside python/; "
                     "build from a ckptkit checkout")

ext = Extension(
    "ckptkit._ckptkit",
    sources=["src/_ckptkit.c"] + [rel(p) for p in lib_sources],
    include_dirs=[rel(os.path.join(ROOT, "include"))],
    define_macros=[("Py_LIMITED_API", "0x030B0000"), ("_GNU_SOURCE", None)],
    extra_compile_args=["-std=c11", "-O2", "-fvisibility=hidden", "-Wall", "-Wno-unused-parameter"],
    libraries=["z", "m"],
    py_limited_api=True,
)

setup(ext_modules=[ext], options={"bdist_wheel": {"py_limited_api": "cp311"}})
