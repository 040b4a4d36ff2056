"""Run by test_lifetime_valgrind.py under valgrind: views outliving their handle."""
import gc, os, tempfile
import numpy as np
import ckptkit, ckptkit.numpy
from ckptkit import _ckptkit
d = tempfile.mkdtemp()
p = os.path.join(d, "l.safetensors")
ckptkit.numpy.save_file({"a": np.arange(1000, dtype=np.int64), "b": np.ones((3, 3))}, p)
f = ckptkit.safe_open(p, "np")
a = f.get_tensor("a"); s = f.get_slice("b"); b = s[1:, ::-1]
f.close()
try:
    f.get_tensor("a")
except ValueError:
    pass
del f, s
gc.collect()
os.unlink(p)
assert a.sum() == sum(range(1000)) and b.sum() == 6
a[:] = 1
assert a.sum() == 1000
del a
gc.collect()
assert _ckptkit._live_models() == 0
print("ok")
