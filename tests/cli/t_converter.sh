#!/usr/bin/env bash
# Converter features from the command line: every error they add exits with
# the documented code and says what is wrong in one line (usage errors: exit 2
# plus the "Try ... --help" line), and leaves no output and no temporary file.
# Covers name collisions, --ema without EMA weights, --ema with --no-ema,
# --shard-size (bad sizes, unshardable formats), --metadata, sharded input
# indexes that point outside their folder, name missing shards, list a tensor
# twice or in the wrong shard, diff's exit codes and options, and export's
# refusals. tests/interop/test_converter.py checks the values.
. tests/cli/lib.sh

# A safetensors file written by hand: mkst PATH NAME=DTYPE:SHAPE ... (F32/F16/BF16/I64);
# element i of a float tensor is (i + len(NAME)) * 0.25 - 1, of an I64 tensor i.
mkst() {
    py - "$@" <<'EOF'
import json, struct, sys
path = sys.argv[1]
hdr, data = {}, b""
for spec in sys.argv[2:]:
    name, rest = spec.split("=")
    dt, shape = rest.split(":")
    shape = [int(x) for x in shape.split("x")] if shape else []
    n = 1
    for s in shape:
        n *= s
    vals = [(i + len(name)) * 0.25 - 1 for i in range(n)]
    if dt == "F32":
        raw = struct.pack("<%df" % n, *vals)
    elif dt == "F16":
        raw = struct.pack("<%de" % n, *vals)
    elif dt == "BF16":
        raw = b"".join(struct.pack("<f", v)[2:] for v in vals)
    else:
        raw = struct.pack("<%dq" % n, *range(n))
    hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(hdr).encode()
h += b" " * (-len(h) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
EOF
}

expect_clean() { # DIR: no temporary file left behind
    expect_no_temp "$1"
}

# --help of the new commands, and they are listed
for c in diff export; do
    expect_exit 0 "$CKPTKIT" "$c" --help
    expect_stdout_has "usage: ckptkit $c"
done
expect_exit 0 "$CKPTKIT" --help
expect_stdout_has "diff"
expect_stdout_has "export"
expect_exit 0 "$CKPTKIT" convert --help
expect_stdout_has "--shard-size SIZE"
expect_stdout_has "--ema"

mkst "$T/m.safetensors" module.fc.weight=F32:4x4 fc.weight=F32:4x4 fc.bias=F32:4 \
    steps=I64:3 bf=BF16:2

# ---- collisions ----------------------------------------------------------------
expect_exit 1 "$CKPTKIT" convert "$T/m.safetensors" "$T/c.safetensors" --strip-prefix module.
expect_one_line_error
expect_stderr_has "tensors 'module.fc.weight' and 'fc.weight' would both be named 'fc.weight'"
expect_no_file "$T/c.safetensors"
expect_exit 1 "$CKPTKIT" convert "$T/m.safetensors" "$T/c.safetensors" --rename fc.=module.fc.
expect_one_line_error
expect_stderr_has "would both be named 'module.fc.weight'"
expect_exit 0 "$CKPTKIT" convert "$T/m.safetensors" "$T/c.safetensors" --strip-prefix module. \
    --exclude 'fc.*' -q
expect_exit 2 "$CKPTKIT" convert "$T/m.safetensors" "$T/c2.safetensors" --rename nothing
expect_stderr_has "--rename 'nothing': expected OLD=NEW"
expect_exit 1 "$CKPTKIT" convert "$T/m.safetensors" "$T/c2.safetensors" --strip-prefix steps \
    --include steps
expect_one_line_error
expect_stderr_has "tensor 'steps' would get an empty name"

# ---- --key: the state dict inside a PyTorch checkpoint ----------------------------------
K=$FIXTURES/pytorch-zip/candle_test_with_key.pt
expect_exit 0 "$CKPTKIT" convert "$K" "$T/k.safetensors" --key model_state_dict -q
expect_exit 0 "$CKPTKIT" ls "$T/k.safetensors"
expect_stdout_has "test"
expect_exit 1 "$CKPTKIT" convert "$K" "$T/k2.safetensors" --key no.such.key
expect_one_line_error
expect_stderr_has "$K"
expect_no_file "$T/k2.safetensors"

# ---- EMA ---------------------------------------------------------------------
mkst "$T/noema.safetensors" model.diffusion_model.a.weight=F32:2 model_ema.decay=F32: \
    model_ema.num_updates=I64:
expect_exit 1 "$CKPTKIT" convert "$T/noema.safetensors" "$T/e.safetensors" --ema
expect_one_line_error
expect_stderr_has "--ema: the checkpoint holds no EMA weights"
expect_no_file "$T/e.safetensors"
expect_exit 2 "$CKPTKIT" convert "$T/noema.safetensors" "$T/e.safetensors" --ema --no-ema
expect_stderr_has "--ema and --no-ema exclude each other"
mkst "$T/badema.safetensors" model.diffusion_model.a.weight=F32:2 \
    model_ema.diffusion_modelaweight=F32:3
expect_exit 1 "$CKPTKIT" convert "$T/badema.safetensors" "$T/e.safetensors" --ema
expect_one_line_error
expect_stderr_has "has shape [2] but its EMA twin 'model_ema.diffusion_modelaweight' has shape [3]"
mkst "$T/ema.safetensors" model.diffusion_model.a.weight=F32:2 \
    model_ema.diffusion_modelaweight=F32:2 model_ema.decay=F32: first_stage_model.w=F16:2
expect_exit 0 "$CKPTKIT" convert "$T/ema.safetensors" "$T/e.safetensors" --ema
expect_exit 0 "$CKPTKIT" ls "$T/e.safetensors"
case $OUT in *model_ema*) bad "--ema output still holds model_ema tensors: $OUT" ;; esac
expect_stdout_has "model.diffusion_model.a.weight"
expect_exit 0 "$CKPTKIT" convert "$T/ema.safetensors" "$T/n.safetensors" --no-ema -q
expect_exit 0 "$CKPTKIT" ls "$T/n.safetensors"
case $OUT in *model_ema*) bad "--no-ema output still holds model_ema tensors: $OUT" ;; esac
# the EMA output's values are the twin's: export both and compare bytes
expect_exit 0 "$CKPTKIT" export "$T/e.safetensors" model.diffusion_model.a.weight -o "$T/e1.bin" \
    --format raw -q
expect_exit 0 "$CKPTKIT" export "$T/ema.safetensors" model_ema.diffusion_modelaweight \
    -o "$T/e2.bin" --format raw -q
cmp -s "$T/e1.bin" "$T/e2.bin" || bad "--ema did not write the EMA values"

# ---- --shard-size ------------------------------------------------------------------
for s in 0 -5 abc 5XB "" 1.5.2; do
    expect_exit 2 "$CKPTKIT" convert "$T/m.safetensors" "$T/s.safetensors" --shard-size "$s"
    expect_stderr_has "--shard-size '$s': expected a size"
done
expect_exit 1 "$CKPTKIT" convert "$T/m.safetensors" "$T/s.ckpt" --shard-size 100
expect_one_line_error
expect_stderr_has "ckpt output cannot be sharded"
expect_no_file "$T/s.ckpt"
mkdir "$T/sh"
expect_exit 0 "$CKPTKIT" convert "$T/m.safetensors" "$T/sh/model.safetensors" --shard-size 100
expect_stderr_has "shards + $T/sh/model.safetensors.index.json"
expect_exit 0 "$CKPTKIT" verify "$T/m.safetensors" "$T/sh"
expect_exit 0 "$CKPTKIT" verify "$T/m.safetensors" "$T/sh/model.safetensors.index.json"
# again without --force: refused, the shards untouched
n_before=$(ls "$T/sh" | wc -l)
expect_exit 1 "$CKPTKIT" convert "$T/m.safetensors" "$T/sh/model.safetensors" --shard-size 100
expect_one_line_error
expect_stderr_has "output exists; use --force"
[ "$(ls "$T/sh" | wc -l)" -eq "$n_before" ] || bad "a refused sharded convert changed the folder"
expect_clean "$T/sh"
# a failing rename in the middle leaves no shard behind
mkdir "$T/shf"
CKPTKIT_FAULT=rename:2 expect_exit 1 "$CKPTKIT" convert "$T/m.safetensors" \
    "$T/shf/model.safetensors" --shard-size 100
expect_one_line_error
[ -z "$(ls -A "$T/shf")" ] || bad "a failed sharded convert left files: $(ls -A "$T/shf")"

# ---- --metadata ------------------------------------------------------------------
expect_exit 2 "$CKPTKIT" convert "$T/m.safetensors" "$T/md.safetensors" --metadata novalue
expect_stderr_has "--metadata 'novalue': expected KEY=VALUE"
expect_exit 2 "$CKPTKIT" convert "$T/m.safetensors" "$T/md.safetensors" --metadata =v
expect_stderr_has "--metadata '=v': expected KEY=VALUE"
expect_no_file "$T/md.safetensors"
expect_exit 0 "$CKPTKIT" convert "$T/m.safetensors" "$T/md.safetensors" --metadata a=b=c -q
expect_exit 0 "$CKPTKIT" info "$T/md.safetensors"
expect_stdout_has "a: b=c"
expect_exit 0 "$CKPTKIT" convert "$T/m.safetensors" "$T/md.pth" --metadata a=b
expect_stderr_has "pth output holds no string metadata; --metadata is ignored"

# ---- sharded input: index validation ------------------------------------------------
sh="$T/sh"
s1=$(ls "$sh" | grep -- '-00001-of-')
index() { printf '%s' "$2" > "$sh/$1"; }
index abs.index.json '{"weight_map": {"fc.bias": "/etc/hostname"}}'
expect_exit 1 "$CKPTKIT" ls "$sh/abs.index.json"
expect_one_line_error
expect_stderr_has "shard '/etc/hostname' is an absolute path"
index up.index.json '{"weight_map": {"fc.bias": "../m.safetensors"}}'
expect_exit 1 "$CKPTKIT" info "$sh/up.index.json"
expect_one_line_error
expect_stderr_has "shard '../m.safetensors' leaves the index's folder ('..')"
index sub.index.json '{"weight_map": {"fc.bias": "x/y.safetensors"}}'
expect_exit 1 "$CKPTKIT" info "$sh/sub.index.json"
expect_stderr_has "names a subfolder"
index miss.index.json \
    "{\"weight_map\": {\"fc.bias\": \"$s1\", \"w\": \"model-00009-of-00009.safetensors\"}}"
expect_exit 1 "$CKPTKIT" convert "$sh/miss.index.json" "$T/out.safetensors"
expect_one_line_error
expect_stderr_has "shard 'model-00009-of-00009.safetensors' listed in the index is missing"
expect_no_file "$T/out.safetensors"
index dup.index.json "{\"weight_map\": {\"fc.bias\": \"$s1\", \"fc.bias\": \"$s1\"}}"
expect_exit 1 "$CKPTKIT" ls "$sh/dup.index.json"
expect_one_line_error
expect_stderr_has "duplicate key"
first=$("$CKPTKIT" ls "$sh/$s1" | head -n 1 | cut -d' ' -f1)
index gone.index.json "{\"weight_map\": {\"$first\": \"$s1\", \"not.there\": \"$s1\"}}"
expect_exit 1 "$CKPTKIT" ls "$sh/gone.index.json"
expect_one_line_error
expect_stderr_has "weight_map lists tensor 'not.there' in shard '$s1' but that shard does not"
s2=$(ls "$sh" | grep -- '-00002-of-')
index wrong.index.json "{\"weight_map\": {\"$first\": \"$s2\", \"fc.weight\": \"$s1\"}}"
expect_exit 1 "$CKPTKIT" ls "$sh/wrong.index.json"
expect_one_line_error
expect_stderr_has "tensor '$first' is in shard '$s1' but weight_map puts it in '$s2'"
# the same tensor in two shards
cp "$sh/$s1" "$sh/zz-copy.safetensors" # opened after $s1 (shards open in name order)
index twice.index.json "{\"weight_map\": {\"$first\": \"$s1\", \"x\": \"zz-copy.safetensors\"}}"
expect_exit 1 "$CKPTKIT" ls "$sh/twice.index.json"
expect_one_line_error
expect_stderr_has "tensor '$first' is in shard '$s1' and again in 'zz-copy.safetensors'"
# a tensor the index does not list: kept, with a warning (silenced by -q)
index part.index.json "{\"weight_map\": {\"fc.weight\": \"$s2\"}}"
expect_exit 0 "$CKPTKIT" ls "$sh/part.index.json"
expect_stderr_has "not listed in weight_map; kept"
expect_exit 0 "$CKPTKIT" ls "$sh/part.index.json" -q
[ -z "$ERR" ] || bad "-q did not silence the warning: $ERR"
# a folder with several indexes, and one with none
expect_exit 1 "$CKPTKIT" info "$sh"
expect_one_line_error
expect_stderr_has "folder holds several *.index.json files"
mkdir "$T/emptydir"
expect_exit 1 "$CKPTKIT" info "$T/emptydir"
expect_one_line_error
expect_stderr_has "folder holds no *.index.json file"
expect_exit 2 "$CKPTKIT" diff "$T/emptydir" "$T/m.safetensors"
expect_one_line_error

# ---- diff --------------------------------------------------------------------------
mkst "$T/d1.safetensors" a=F32:8 b=F32:2x2 c=I64:3
mkst "$T/d2.safetensors" a=F32:8 b=F32:4 d=I64:3
expect_exit 0 "$CKPTKIT" diff "$T/d1.safetensors" "$T/d1.safetensors"
expect_stdout_has "same: 0 only in A, 0 only in B"
expect_exit 1 "$CKPTKIT" diff "$T/d1.safetensors" "$T/d2.safetensors"
expect_stdout_has "differ: 1 only in A, 1 only in B, 0 dtype changes, 1 shape changes"
expect_stdout_has "only in A"
expect_exit 1 "$CKPTKIT" diff "$T/d1.safetensors" "$T/d2.safetensors" --json
py -c 'import json, sys
j = json.loads(sys.argv[1])
assert j["only_a"] == ["c"] and j["only_b"] == ["d"] and not j["same"], j' "$OUT" ||
    bad "diff --json: $OUT"
expect_exit 1 "$CKPTKIT" diff "$T/d1.safetensors" "$T/d2.safetensors" -q
[ -z "$OUT$ERR" ] || bad "diff -q printed: $OUT $ERR"
expect_exit 2 "$CKPTKIT" diff "$T/d1.safetensors" "$T/nope.safetensors"
expect_one_line_error
expect_exit 2 "$CKPTKIT" diff "$T/d1.safetensors"
expect_exit 2 "$CKPTKIT" diff "$T/d1.safetensors" "$T/d2.safetensors" --rtol -1
expect_stderr_has "--rtol '-1': expected a number >= 0"
expect_exit 2 "$CKPTKIT" diff "$T/d1.safetensors" "$T/d2.safetensors" --atol nan
expect_exit 0 "$CKPTKIT" convert "$T/d1.safetensors" "$T/d16.safetensors" --dtype f16 -q
expect_exit 1 "$CKPTKIT" diff "$T/d1.safetensors" "$T/d16.safetensors"
expect_stdout_has "dtype"
expect_exit 0 "$CKPTKIT" diff "$T/d1.safetensors" "$T/d16.safetensors" --rtol 0.01

# ---- export ------------------------------------------------------------------------
expect_exit 1 "$CKPTKIT" export "$T/m.safetensors" fc.bias nope -o "$T/ex"
expect_one_line_error
expect_stderr_has "no tensor named 'nope'"
expect_no_file "$T/ex"
expect_exit 1 "$CKPTKIT" export "$T/m.safetensors" bf -o "$T/bf.npy"
expect_one_line_error
expect_stderr_has "tensor 'bf' is BF16, which has no NumPy dtype; export it with --dtype f32"
expect_no_file "$T/bf.npy"
expect_exit 0 "$CKPTKIT" export "$T/m.safetensors" bf -o "$T/bf.npy" --dtype f32 -q
expect_exit 2 "$CKPTKIT" export "$T/m.safetensors" fc.bias
expect_stderr_has "expected -o OUT"
expect_exit 2 "$CKPTKIT" export "$T/m.safetensors" -o "$T/x.npy"
expect_exit 2 "$CKPTKIT" export "$T/m.safetensors" fc.bias -o "$T/x.npy" --format csv
expect_exit 2 "$CKPTKIT" export "$T/m.safetensors" fc.bias -o "$T/x.npy" --dtype i32
expect_exit 0 "$CKPTKIT" export "$T/m.safetensors" fc.bias steps -o "$T/ex"
expect_stderr_has "wrote $T/ex: 2 tensors"
[ -f "$T/ex/fc.bias.npy" ] && [ -f "$T/ex/steps.npy" ] || bad "export folder: $(ls "$T/ex")"
expect_exit 1 "$CKPTKIT" export "$T/m.safetensors" fc.bias steps -o "$T/ex"
expect_one_line_error
expect_stderr_has "output exists; use --force"
expect_exit 0 "$CKPTKIT" export "$T/m.safetensors" fc.bias steps -o "$T/ex" --force -q
expect_exit 1 "$CKPTKIT" export "$T/m.safetensors" fc.bias -o "$T/m.safetensors" --force
expect_one_line_error
expect_stderr_has "output is the input file"
expect_clean "$T"
expect_clean "$T/ex"

finish
