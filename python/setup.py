"""Builds ckptkit._ckptkit: the C core, compiled together with the library
sources of the checkout this folder belongs to (../src, ../include), in the
stable ABI of CPython 3.11 so that one abi3 wheel serves every later CPython."""
import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

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

# ggml's block codecs (src/tensor/ggml_*.c) are compiled without FMA
# contraction, as the Makefile does: with it, x*id + 8.5f becomes one fused
# multiply-add and some blocks quantise differently from ggml and gguf-py.
STRICT_FP = {os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "src", "tensor", "ggml_*.c"))}


class BuildExt(build_ext):
    def build_extensions(self):
        compile_one = self.compiler._compile

        def _compile(obj, src, ext, cc_args, extra_postargs, pp_opts):
            if os.path.basename(src) in STRICT_FP:
                extra_postargs = list(extra_postargs) + ["-ffp-contract=off"]
            return compile_one(obj, src, ext, cc_args, extra_postargs, pp_opts)

        self.compiler._compile = _compile
        super().build_extensions()


setup(ext_modules=[ext], cmdclass={"build_ext": BuildExt},
      options={"bdist_wheel": {"py_limited_api": "cp311"}})
