#!/usr/bin/env bash
# Core CLI behaviour: --help everywhere, usage errors (exit 2), bad input
# (exit 1, one line naming the file), the exit-code table of info, ls,
# convert and verify, --json shapes, and convert/verify round trips on the
# real safetensors fixtures.
. tests/cli/lib.sh

# --help on every command, exit 0, text on stdout
for c in info ls convert verify; do
    expect_exit 0 "$CKPTKIT" "$c" --help
    expect_stdout_has "usage: ckptkit $c"
done
expect_exit 0 "$CKPTKIT" --help
expect_stdout_has "Commands:"
expect_exit 0 "$CKPTKIT" --version
expect_exit 2 "$CKPTKIT"
expect_exit 2 "$CKPTKIT" frobnicate
expect_stderr_has "unknown command"

# usage errors: exit 2
expect_exit 2 "$CKPTKIT" info
expect_exit 2 "$CKPTKIT" ls a b
expect_exit 2 "$CKPTKIT" convert onlyone
expect_exit 2 "$CKPTKIT" convert a b --dtype f13
expect_exit 2 "$CKPTKIT" convert a b.unknownext
expect_stderr_has "use --to"
expect_exit 2 "$CKPTKIT" verify a
expect_exit 2 "$CKPTKIT" info --bogus x

# bad input: exit 1 for info/ls/convert, 2 for verify; one line naming the file
printf 'abc' > "$T/broken.pt"
expect_exit 1 "$CKPTKIT" info "$T/broken.pt"
expect_one_line_error
expect_stderr_has "$T/broken.pt"
expect_exit 1 "$CKPTKIT" ls "$T/broken.pt"
expect_one_line_error
expect_exit 1 "$CKPTKIT" convert "$T/broken.pt" "$T/out.safetensors"
expect_one_line_error
expect_no_file "$T/out.safetensors"
expect_no_temp "$T"
expect_exit 2 "$CKPTKIT" verify "$T/broken.pt" "$T/broken.pt"
expect_one_line_error
expect_exit 1 "$CKPTKIT" info "$T/does-not-exist"
expect_stderr_has "cannot open"
: > "$T/empty.bin"
expect_exit 1 "$CKPTKIT" info "$T/empty.bin"
expect_stderr_has "empty file"
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 1234\n' > "$T/lfs.safetensors"
expect_exit 1 "$CKPTKIT" info "$T/lfs.safetensors"
expect_stderr_has "Git LFS pointer"
printf '<!DOCTYPE html>\n<html><body>Not found</body></html>\n' > "$T/page.pt"
expect_exit 1 "$CKPTKIT" ls "$T/page.pt"
expect_stderr_has "HTML"
expect_exit 1 "$CKPTKIT" info "$FIXTURES/invalid/picklescan_bad_pytorch.pt"
expect_one_line_error

# every real safetensors fixture: info, ls --json matches its header, round trip
for f in "$FIXTURES"/safetensors/*.safetensors; do
    b=$(basename "$f" .safetensors)
    expect_exit 0 "$CKPTKIT" info "$f"
    expect_stdout_has "format:      safetensors"
    expect_exit 0 "$CKPTKIT" ls --json "$f"
    printf '%s' "$OUT" > "$T/$b.ls.json"
    py - "$f" "$T/$b.ls.json" <<'PYEOF' || bad "ls --json of $b does not match its header"
import json, struct, sys
raw = open(sys.argv[1], 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
hdr = json.loads(raw[8:8 + n])
hdr.pop('__metadata__', None)
ls = json.load(open(sys.argv[2]))
assert ls['format'] == 'safetensors', ls['format']
got = {t['name']: t for t in ls['tensors']}
assert set(got) == set(hdr), (sorted(got), sorted(hdr))
for k, v in hdr.items():
    assert got[k]['dtype'] == v['dtype'], k
    assert got[k]['shape'] == v['shape'], k
    assert got[k]['nbytes'] == v['data_offsets'][1] - v['data_offsets'][0], k
PYEOF
    expect_exit 0 "$CKPTKIT" convert -q "$f" "$T/$b.rt.safetensors"
    expect_exit 0 "$CKPTKIT" verify "$f" "$T/$b.rt.safetensors"
    expect_stdout_has "same:"
done

# verify: differ -> 1 with the difference listed
f=$FIXTURES/safetensors/hf_samples_overall.safetensors
expect_exit 0 "$CKPTKIT" convert -q "$f" "$T/sub.safetensors" --exclude 'd'
expect_exit 1 "$CKPTKIT" verify "$f" "$T/sub.safetensors"
expect_stdout_has "d: only in A"
expect_exit 1 "$CKPTKIT" verify --json "$f" "$T/sub.safetensors"
expect_stdout_has '"same": false'

# convert refuses to overwrite without --force, accepts with it
expect_exit 1 "$CKPTKIT" convert -q "$f" "$T/sub.safetensors"
expect_stderr_has "use --force"
expect_exit 0 "$CKPTKIT" convert -q --force "$f" "$T/sub.safetensors"
expect_exit 0 "$CKPTKIT" verify "$f" "$T/sub.safetensors"

# info --json is one JSON document with the documented keys
expect_exit 0 "$CKPTKIT" info --json "$f"
printf '%s' "$OUT" | py -c '
import json, sys
d = json.load(sys.stdin)
for k in ("file", "format", "tensors", "parameters", "bytes", "dtypes", "metadata"):
    assert k in d, k
assert d["tensors"] == 9 and d["metadata"] == {"test": "a"}, d
' || bad "info --json shape"

# --dtype f16 casts floats only; ints stay
expect_exit 0 "$CKPTKIT" convert -q "$f" "$T/h.safetensors" --dtype f16
expect_exit 0 "$CKPTKIT" ls --json "$T/h.safetensors"
printf '%s' "$OUT" | py -c '
import json, sys
d = {t["name"]: t["dtype"] for t in json.load(sys.stdin)["tensors"]}
assert d == {"B": "U8", "H": "U16", "I": "U32", "b": "I8", "d": "F16", "e": "F16",
             "f": "F16", "h": "I16", "i": "I32"}, d
' || bad "--dtype f16 changed the wrong tensors"
# a tensor ckptkit cannot represent (quantized) is never dropped silently:
# convert fails naming it, and --exclude leaves it out on purpose
py - "$T/q.pt" <<'PYEOF'
import sys, torch
torch.manual_seed(0)
q = torch.quantize_per_tensor(torch.randn(4), 0.1, 0, torch.quint8)
torch.save({"w": torch.randn(3), "q": q}, sys.argv[1])
PYEOF
expect_exit 0 "$CKPTKIT" ls "$T/q.pt"
expect_stderr_has "tensor 'q': quantized tensor"
expect_exit 1 "$CKPTKIT" convert -q "$T/q.pt" "$T/q.safetensors"
expect_one_line_error
expect_stderr_has "tensor 'q' is quantized tensor QUInt8Storage, which ckptkit cannot convert"
expect_no_file "$T/q.safetensors"
expect_exit 0 "$CKPTKIT" convert -q "$T/q.pt" "$T/q.safetensors" --exclude q
finish
