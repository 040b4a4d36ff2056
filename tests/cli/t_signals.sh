#!/usr/bin/env bash
# Signals during a long convert: SIGINT, SIGTERM and SIGHUP arriving while
# the output is being written remove the temporary file, leave no OUT, do
# not touch IN, and the process dies of the signal (exit status 128 + N as
# the shell reports it: 130, 143, 129). The input is a 2 GiB safetensors
# file made sparse (header, then truncate), so it costs no disk; the
# signal is sent as soon as the temporary output has its first bytes. Also
# SIGBUS, from an input truncated under the running convert.
. tests/cli/lib.sh

IN=$T/big.safetensors
py - "$IN" <<'EOF'
import json, struct, sys
n = 512 * 1024 * 1024  # F32 elements: 2 GiB of zeros
h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]},
                "b": {"dtype": "F32", "shape": [4], "data_offsets": [4 * n, 4 * n + 16]}}).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h)
    f.truncate(8 + len(h) + 4 * n + 16)
EOF
in_state() { stat -c '%s %Y' "$IN"; head -c 4096 "$IN" | sha256sum; }
IN_STATE=$(in_state)

# Waits (at most 30 s) until DIR holds a temporary output with some bytes.
wait_for_temp() {
    local i
    for i in $(seq 1 1500); do
        [ -n "$(find "$1" -maxdepth 1 -name '.*.ckptkit-*' -size +0 2> /dev/null)" ] && return 0
        sleep 0.02
    done
    return 1
}

# interrupt SIGNAL EXPECTED-STATUS OUT [convert options...]
interrupt() {
    local sig=$1 want=$2 out=$3 pid rc
    shift 3
    "$CKPTKIT" convert "$IN" "$out" "$@" 2> "$T/.sigerr" &
    pid=$!
    if ! wait_for_temp "$(dirname "$out")"; then
        bad "$sig: no temporary output appeared"
        kill -KILL "$pid" 2> /dev/null
        wait "$pid"
        return
    fi
    kill -"$sig" "$pid"
    wait "$pid"
    rc=$?
    [ "$rc" -eq "$want" ] || bad "$sig: exit status $rc, expected $want: $(cat "$T/.sigerr")"
    expect_no_file "$out"
    expect_no_temp "$(dirname "$out")"
    [ "$(in_state)" = "$IN_STATE" ] || bad "$sig: IN changed"
}

interrupt INT 130 "$T/out16.safetensors" --dtype f16    # cast path
interrupt TERM 143 "$T/out.safetensors"                 # copy_file_range path
mkdir "$T/sub"
interrupt HUP 129 "$T/sub/out.pth"                      # pth writer, OUT in a subfolder
interrupt INT 130 "$T/sub/out-bf16.pth" --dtype bf16

# an input truncated while it is being read: the mapping faults (SIGBUS), the
# handler removes the temporary output, the process dies of SIGBUS (135)
cp --sparse=always "$IN" "$T/victim.safetensors"
"$CKPTKIT" convert "$T/victim.safetensors" "$T/bus.safetensors" --dtype f16 2> "$T/.sigerr" &
pid=$!
if wait_for_temp "$T"; then
    truncate -s 4096 "$T/victim.safetensors"
    wait "$pid"
    rc=$?
    [ "$rc" -eq 135 ] || bad "SIGBUS: exit status $rc, expected 135: $(cat "$T/.sigerr")"
    expect_no_file "$T/bus.safetensors"
    expect_no_temp "$T"
else
    bad "SIGBUS: no temporary output appeared"
    kill -KILL "$pid" 2> /dev/null
    wait "$pid"
fi
rm -f "$T/victim.safetensors"

# the interrupted runs left nothing, so a full run can still write OUT
expect_exit 0 "$CKPTKIT" convert "$IN" "$T/whole.safetensors" --include b
expect_exit 0 "$CKPTKIT" ls "$T/whole.safetensors"
expect_stdout_has "b"
[ -z "$(ls -A "$T/sub")" ] || bad "leftovers in sub: $(ls -A "$T/sub")"
finish
