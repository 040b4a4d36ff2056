#!/usr/bin/env bash
# `ckptkit scan` and the torch reader from the command line: exit codes
# (0 clean, 1 unsafe, 2 usage or unparseable), the per-global lines and the
# summary, --json, -q, several files at once, and the crafted payloads in
# tests/corpus/bad/torch: scanned unsafe, loadable ones load and convert with
# the payload left inert, the canary file never appears.
. tests/cli/lib.sh

F=../shared/fixtures/real
BAD=tests/corpus/bad/torch

expect_exit 0 "$CKPTKIT" scan --help
expect_stdout_has "usage: ckptkit scan"
expect_exit 2 "$CKPTKIT" scan
expect_exit 2 "$CKPTKIT" scan --bogus "$F/pickle/picklescan_benign0_v4.pkl"

# clean files
expect_exit 0 "$CKPTKIT" scan "$F/pytorch-zip/burn_checkpoint.pt"
expect_stdout_has "allowed    torch._utils._rebuild_tensor_v2  (checkpoint/data.pkl @"
expect_stdout_has "burn_checkpoint.pt: clean ("
expect_exit 0 "$CKPTKIT" scan "$F/lightning-ckpt/darts_Air_RNN_last-epoch=299.ckpt"
expect_stdout_has "unknown    torchmetrics.collections.MetricCollection"
expect_exit 0 "$CKPTKIT" scan "$F/safetensors/hf_samples_overall.safetensors"
expect_stdout_has "clean (0 globals"

# unsafe: exit 1, the global named with its place
expect_exit 1 "$CKPTKIT" scan "$F/pickle/picklescan_malicious6.pkl"
expect_stdout_has "dangerous  requests.api.get  (pickle (pickle 2, after byte 28) @ 60)"
expect_stdout_has "unsafe (1 globals"
expect_exit 1 "$CKPTKIT" scan -q "$F/pytorch-zip/burn_checkpoint.pt" "$BAD/evil_reduce_zip.pt"
case $OUT in *allowed*|*clean*) bad "-q printed allowed globals or a summary: $OUT" ;; esac
expect_stdout_has "dangerous  os.system  (archive/data.pkl @"

# a record whose local header names another file: read all the same (a lenient
# unzipper would), unsafe, and the disagreement reported as the error
expect_exit 1 "$CKPTKIT" scan "$F/pytorch-zip/picklescan_malicious1_central_directory.zip"
expect_stdout_has "dangerous  builtins.eval  (data.pkl @ 29)"
expect_one_line_error
expect_stderr_has "central_directory.zip: zip member 'data.pkl': local header names it 'datap.kl'"
# the same for a record flagged encrypted whose bytes are in clear
expect_exit 1 "$CKPTKIT" scan "$F/pytorch-zip/picklescan_malicious1_0x1.zip"
expect_stdout_has "dangerous  builtins.eval  (model/config.pkl @ 29)"
expect_stderr_has "zip member 'model/config.pkl': encrypted (flags 0x0001)"
# the loader still refuses it for its zip structure
expect_exit 1 "$CKPTKIT" info "$F/pytorch-zip/picklescan_malicious1_0x1.zip"
expect_stderr_has "encrypted members are refused"
# a dangerous global in one file wins over a failure in another: exit 1
expect_exit 1 "$CKPTKIT" scan "$BAD/evil_reduce_zip.pt" "$F/pickle/picklescan_broken_model.pkl"
expect_stdout_has "dangerous  builtins.exec"
expect_stderr_has "picklescan_broken_model.pkl: pickle: opcode 0x58 (BINUNICODE)"
expect_exit 2 "$CKPTKIT" scan "$T/missing.pt"
expect_one_line_error

# --json
expect_exit 1 "$CKPTKIT" scan --json "$BAD/evil_second_pickle.pkl" "$F/pytorch-zip/candle_test.pt"
py - "$T/.out" <<'EOF' || bad "scan --json output"
import json, sys
doc = json.load(open(sys.argv[1]))
a, b = doc["files"]
assert a["status"] == "unsafe" and b["status"] == "clean", doc
g = [x for x in a["globals"] if x["verdict"] == "dangerous"][0]
assert (g["module"], g["name"]) == ("os", "system"), g
assert "pickle 2" in g["where"] and isinstance(g["offset"], int), g
assert all(x["verdict"] == "allowed" for x in b["globals"]), b
EOF
expect_exit 1 "$CKPTKIT" scan --json "$BAD/evil_encrypted.pt"
py - "$T/.out" <<'EOF' || bad "scan --json entry with an error beside the payload"
import json, sys
f = json.load(open(sys.argv[1]))["files"][0]
assert f["status"] == "unsafe" and "encrypted" in f["error"], f
assert [g["name"] for g in f["globals"] if g["verdict"] == "dangerous"] == ["system"], f
EOF
expect_exit 2 "$CKPTKIT" scan --json "$BAD/legacy_truncated.pt"
py - "$T/.out" <<'EOF' || bad "scan --json error entry"
import json, sys
f = json.load(open(sys.argv[1]))["files"][0]
assert f["status"] == "error" and "run past the end" in f["error"], f
EOF

# every crafted payload: scan says unsafe or fails; loading never runs it
for f in "$BAD"/evil_*; do
    case $f in *.expected) continue ;; esac
    name=$(basename "$f"); stem=${name%.*}
    canary=/tmp/ckptkit-canary-$stem
    rm -f "$canary"
    run "$CKPTKIT" scan "$f"
    [ "$RC" -eq 1 ] || [ "$RC" -eq 2 ] || bad "scan $name exited $RC"
    if [ -e "$BAD/$stem.expected" ]; then
        expect_exit 1 "$CKPTKIT" convert "$f" "$T/$stem.safetensors"
        expect_one_line_error
        expect_no_file "$T/$stem.safetensors"
    else
        # well-formed but dangerous: refused by default, extracted on request
        expect_exit 1 "$CKPTKIT" convert "$f" "$T/$stem.safetensors"
        expect_one_line_error
        expect_stderr_has "refusing to load"
        expect_no_file "$T/$stem.safetensors"
        expect_exit 0 "$CKPTKIT" convert -q --allow-unsafe "$f" "$T/$stem.safetensors"
        run "$CKPTKIT" info --allow-unsafe --json "$f"
        [ "$RC" -eq 0 ] || bad "info $name exited $RC"
    fi
    run "$CKPTKIT" ls --all "$f"
    [ -e "$canary" ] && bad "payload of $name ran: $canary exists"
done

# dangerous references: refused by default (exit 1, one line), and with
# --allow-unsafe left inert with a warning while the tensors come out
expect_exit 1 "$CKPTKIT" ls "$BAD/evil_reduce_zip.pt"
expect_one_line_error
expect_stderr_has "references os.system"
expect_exit 0 "$CKPTKIT" ls --allow-unsafe "$BAD/evil_reduce_zip.pt"
expect_stderr_has "ckptkit never runs them"
expect_stdout_has "w "

# a sharded checkpoint (index or folder) is scanned shard by shard
mkdir -p "$T/shards"
expect_exit 0 "$CKPTKIT" convert -q examples/mnist.safetensors "$T/shards/pytorch_model.bin" --shard-size 500KB
expect_exit 0 "$CKPTKIT" scan "$T/shards"
expect_stdout_has "pytorch_model-00002-of-00003.bin: "
expect_stdout_has "torch._utils._rebuild_tensor_v2"
expect_exit 0 "$CKPTKIT" scan "$T/shards/pytorch_model.bin.index.json"
rm "$T/shards/pytorch_model-00002-of-00003.bin"
expect_exit 2 "$CKPTKIT" scan "$T/shards"
expect_one_line_error

finish
