#!/usr/bin/env bash
# make install into a staging folder, then build a small program against the
# installed header and shared library (only ck_ symbols exported, versioned
# SONAME) and run it on a bundled example.
. tests/cli/lib.sh
expect_exit 0 make -s install PREFIX=/usr DESTDIR="$T/stage"
for f in bin/ckptkit lib/libckptkit.a lib/libckptkit.so lib/libckptkit.so.0 include/ckptkit.h \
         lib/pkgconfig/ckptkit.pc share/man/man1/ckptkit.1; do
    [ -e "$T/stage/usr/$f" ] || bad "not installed: $f"
done
grep -q '^Libs: -L${libdir} -lckptkit' "$T/stage/usr/lib/pkgconfig/ckptkit.pc" || bad "ckptkit.pc Libs"
other=$(nm -D --defined-only "$T/stage/usr/lib/libckptkit.so" | awk '{print $3}' | grep -v '^ck_' || true)
[ -z "$other" ] || bad "non-ck_ symbols exported: $other"
objdump -p "$T/stage/usr/lib/libckptkit.so" | grep -q 'SONAME *libckptkit.so.0' || bad "SONAME"
cat > "$T/use.c" <<'CEOF'
#include <stdio.h>
#include <stdlib.h>
#include <ckptkit.h>
int main(int argc, char **argv)
{
    ck_ctx *ctx = ck_ctx_new();
    ck_model *m;
    double sum = 0;
    if (ck_model_open(ctx, argv[1], NULL, &m)) { fprintf(stderr, "%s\n", ck_errmsg(ctx)); return 1; }
    for (size_t i = 0; i < ck_model_tensor_count(m); i++) {
        ck_tensor_info ti;
        ck_model_tensor(m, i, &ti);
        double *v = malloc(ti.numel * sizeof *v + 1);
        if (ck_model_read(m, i, 0, ti.numel, CK_DT_F64, v, ti.numel * sizeof *v)) return 1;
        for (uint64_t k = 0; k < ti.numel; k++) sum += v[k];
        free(v);
    }
    printf("%s %zu %.6f\n", ck_model_format(m), ck_model_tensor_count(m), sum);
    ck_model_close(m);
    ck_ctx_free(ctx);
    return 0;
}
CEOF
expect_exit 0 cc -std=c11 -Wall -Werror -I"$T/stage/usr/include" -o "$T/use" "$T/use.c" \
    -L"$T/stage/usr/lib" -lckptkit
LD_LIBRARY_PATH="$T/stage/usr/lib" expect_exit 0 "$T/use" examples/mnist.safetensors
expect_stdout_has "safetensors 20 "
# the same sum from numpy, independently
want=$(py - <<'PYEOF'
import json, struct, numpy as np
raw = open('examples/mnist.safetensors', 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
h = json.loads(raw[8:8 + n]); h.pop('__metadata__', None)
dt = {'F32': '<f4', 'I64': '<i8'}
s = 0.0
for k, v in sorted(h.items(), key=lambda kv: kv[1]['data_offsets']):
    a, b = v['data_offsets']
    s += np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt[v['dtype']]).astype(np.float64).sum()
print('%.6f' % s)
PYEOF
)
got=$(printf '%s' "$OUT" | awk '{print $3}')
py -c "import sys; a, b = float('$got'), float('$want'); sys.exit(0 if abs(a - b) <= 1e-6 * max(1, abs(b)) else 1)" \
    || bad "sum via the installed library $got != numpy $want"
finish
