#!/usr/bin/env bash
# Many files in one command.
#  1. convert of a folder mixing good files (torch zip at two levels and a
#     safetensors file), a malicious pickle (os.system), a truncated file, a
#     broadcast view (refused: bounded output) and a file already converted
#     (--skip-existing): the right outputs, the right skips, one failure line
#     each with its reason in the summary, exit 1, no temporary file anywhere;
#     -r keeps the folder structure; a second run skips everything converted.
#  2. --allow-expand is refused for a single file only by the size rule, and
#     the corpus file's message is exact.
#  3. scan -r of the folder: clean / unsafe / failed per file, exit 1 (unsafe
#     wins over a file that could not be read, as for files); verify of the folder pair: same / differ, exit 1.
#  4. SIGINT sent to a batch with two long jobs running: exit 130, no output
#     of an interrupted job, no temporary file in any output folder, and the
#     output of a job that had finished is complete.
. tests/cli/lib.sh

IN=$T/in
OUTD=$T/out
mkdir -p "$IN/sub" "$OUTD"
py - "$IN" <<'EOF'
import os, sys, zipfile
import torch
d = sys.argv[1]
torch.save({"a": torch.arange(6, dtype=torch.float32)}, os.path.join(d, "good1.pt"))
torch.save({"b": torch.ones(2, 3)}, os.path.join(d, "sub", "good2.pth"))
torch.save({"c": torch.zeros(4)}, os.path.join(d, "done.pt"))
# a pickle that would call os.system('true') if unpickled: written as bytes,
# never loaded by anything but ckptkit
evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
with zipfile.ZipFile(os.path.join(d, "evil.pt"), "w") as z:
    z.writestr("evil/data.pkl", evil)
    z.writestr("evil/version", "3\n")
good = open(os.path.join(d, "good1.pt"), "rb").read()
open(os.path.join(d, "trunc.pt"), "wb").write(good[: len(good) // 2])
EOF
cp tests/corpus/bad/expand/broadcast.pt "$IN/broadcast.pt"
"$CKPTKIT" convert "$IN/good1.pt" "$IN/st.safetensors" -q || bad "setup: convert failed"
# already converted: its output exists and is newer than the input
"$CKPTKIT" convert "$IN/done.pt" "$OUTD/done.safetensors" -q || bad "setup: convert failed"
touch -d '2001-01-01' "$IN/done.pt"

# ---- 1. the batch --------------------------------------------------------------
expect_exit 1 "$CKPTKIT" convert "$IN" -o "$OUTD" -r -j 2 --skip-existing
for f in good1 st sub/good2; do
    [ -s "$OUTD/$f.safetensors" ] || bad "missing output $f.safetensors"
done
"$CKPTKIT" verify "$IN/good1.pt" "$OUTD/good1.safetensors" -q || bad "good1 output differs"
"$CKPTKIT" verify "$IN/sub/good2.pth" "$OUTD/sub/good2.safetensors" -q || bad "good2 output differs"
for f in evil trunc broadcast; do expect_no_file "$OUTD/$f.safetensors"; done
expect_no_temp "$OUTD"
expect_no_temp "$OUTD/sub"
expect_stdout_has "converted  $IN/good1.pt -> $OUTD/good1.safetensors: 1 tensor, 24 B"
expect_stdout_has "converted  $IN/sub/good2.pth -> $OUTD/sub/good2.safetensors"
expect_stdout_has "skipped    $IN/done.pt -> $OUTD/done.safetensors: the output is newer than the input"
expect_stdout_has "failed     $IN/evil.pt -> $OUTD/evil.safetensors: "
expect_stdout_has "os.system"
expect_stdout_has "failed     $IN/trunc.pt -> $OUTD/trunc.safetensors: $IN/trunc.pt: "
expect_stdout_has "failed     $IN/broadcast.pt -> $OUTD/broadcast.safetensors: $OUTD/broadcast.safetensors: output would hold 37.3 GiB"
expect_stdout_has "3 converted, 1 skipped, 3 failed"
n=$(printf '%s\n' "$OUT" | grep -c '^failed ')
[ "$n" -eq 3 ] || bad "expected 3 failure lines, got $n"

# again: everything converted is now skipped, failures stay failures
expect_exit 1 "$CKPTKIT" convert "$IN" -o "$OUTD" -r --skip-existing -j 1
expect_stdout_has "0 converted, 4 skipped, 3 failed"
# without -r a folder's files land directly in DIR; without --skip-existing
# an existing output is a failure (the single-file rule), not replaced
expect_exit 1 "$CKPTKIT" convert "$IN/good1.pt" "$IN/sub" -o "$OUTD"
expect_stdout_has "failed     $IN/good1.pt -> $OUTD/good1.safetensors: $OUTD/good1.safetensors: output exists"
expect_stdout_has "converted  $IN/sub/good2.pth -> $OUTD/good2.safetensors"
expect_stdout_has "1 converted, 0 skipped, 1 failed"
# a clean batch exits 0; --to pth gives .pth names
expect_exit 0 "$CKPTKIT" convert "$IN/good1.pt" "$IN/sub" -o "$T/pth" --to pth -q
[ -s "$T/pth/good1.pth" ] && [ -s "$T/pth/good2.pth" ] || bad "--to pth outputs missing"
expect_exit 2 "$CKPTKIT" convert "$IN/good1.pt" -o "$T/x" --to raw
expect_exit 2 "$CKPTKIT" convert "$IN/good1.pt" "$T/y.safetensors" -j 2

# ---- 2. bounded output -----------------------------------------------------------
expect_exit 1 "$CKPTKIT" convert tests/corpus/bad/expand/broadcast.pt "$T/b.safetensors"
expect_one_line_error
want="ckptkit: $(sed "s#^OUT#$T/b.safetensors#" tests/corpus/bad/expand/broadcast.expected)"
[ "$ERR" = "$want" ] || bad "broadcast message differs:
    want: $want
    got:  $ERR"
expect_no_file "$T/b.safetensors"
expect_no_temp "$T"
# export writes dense values too: the same rule
expect_exit 1 "$CKPTKIT" export tests/corpus/bad/expand/broadcast.pt w -o "$T/w.npy"
expect_stderr_has "tensor 'w' declares [100000, 100000] x F32 = 37.3 GiB over 4 bytes of storage"
expect_no_file "$T/w.npy"
expect_exit 0 "$CKPTKIT" export tests/corpus/bad/expand/broadcast.pt b -o "$T/b.npy" -q
# the size rule is the only obstacle: under a small file-size limit, the
# allowed write fails with EFBIG and still leaves nothing behind
(ulimit -f 1024; "$CKPTKIT" convert tests/corpus/bad/expand/broadcast.pt "$T/b.safetensors" \
    --allow-expand -q 2> "$T/.exp")
rc=$?
[ "$rc" -eq 1 ] || bad "--allow-expand under ulimit: exit $rc: $(cat "$T/.exp")"
grep -q "expand\|16 x" "$T/.exp" && bad "--allow-expand still refused: $(cat "$T/.exp")"
expect_no_file "$T/b.safetensors"
expect_no_temp "$T"

# ---- 3. scan and verify of folders -------------------------------------------------
expect_exit 1 "$CKPTKIT" scan -r "$IN" -j 2
expect_stdout_has "unsafe     $IN/evil.pt: 1 dangerous global, first os.system"
expect_stdout_has "clean      $IN/sub/good2.pth"
expect_stdout_has "failed     $IN/trunc.pt: $IN/trunc.pt: "
expect_stdout_has "5 clean, 1 unsafe, 1 failed"
expect_exit 1 "$CKPTKIT" scan "$IN/evil.pt" "$IN/good1.pt" -j 1
expect_exit 0 "$CKPTKIT" scan "$IN/sub" -q
expect_exit 2 "$CKPTKIT" scan "$IN/trunc.pt" "$IN/sub/good2.pth" -j 1
expect_exit 1 "$CKPTKIT" verify "$IN" "$OUTD" -r
expect_stdout_has "same       $IN/good1.pt -> $OUTD/good1.safetensors: 1 tensors identical"
expect_stdout_has "same       $IN/sub/good2.pth -> $OUTD/sub/good2.safetensors"
expect_stdout_has "differ     $IN/evil.pt: no counterpart in $OUTD"
expect_exit 0 "$CKPTKIT" verify "$IN/sub" "$OUTD/sub" -q
# a partner that differs
py - "$T/d1" "$T/d2" <<'EOF'
import os, sys, torch
for i, d in enumerate(sys.argv[1:]):
    os.makedirs(d)
    torch.save({"w": torch.full((3,), float(i))}, os.path.join(d, "m.pt"))
EOF
expect_exit 1 "$CKPTKIT" verify "$T/d1" "$T/d2"
expect_stdout_has "differ     $T/d1/m.pt -> $T/d2/m.pt: 1 difference"

# ---- 4. SIGINT in the middle of a batch --------------------------------------------
BIG=$T/big
mkdir -p "$BIG" "$T/bout"
py - "$BIG" <<'EOF'
import json, os, struct, sys
def sparse(path, n):
    h = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        f.truncate(8 + len(h) + 4 * n)
sparse(os.path.join(sys.argv[1], "a_small.safetensors"), 16)
sparse(os.path.join(sys.argv[1], "b_big.safetensors"), 512 * 1024 * 1024)
sparse(os.path.join(sys.argv[1], "c_big.safetensors"), 512 * 1024 * 1024)
sparse(os.path.join(sys.argv[1], "d_big.safetensors"), 512 * 1024 * 1024)
EOF
"$CKPTKIT" convert "$BIG" -o "$T/bout" --to pth --dtype f16 -j 2 > "$T/.bo" 2> "$T/.be" &
pid=$!
started=0
for i in $(seq 1 1500); do
    if [ "$(find "$T/bout" -maxdepth 1 -name '.*.ckptkit-*' -size +0 2> /dev/null | wc -l)" -ge 1 ] &&
        [ -e "$T/bout/a_small.pth" ]; then
        started=1
        break
    fi
    sleep 0.02
done
if [ "$started" -eq 1 ]; then
    kill -INT "$pid"
    wait "$pid"
    rc=$?
    [ "$rc" -eq 130 ] || bad "SIGINT: exit status $rc, expected 130: $(cat "$T/.be")"
    expect_no_temp "$T/bout"
    for f in b_big c_big d_big; do expect_no_file "$T/bout/$f.pth"; done
    run "$CKPTKIT" ls "$T/bout/a_small.pth"
    [ "$RC" -eq 0 ] || bad "the finished job's output does not load: $ERR"
    expect_stdout_has "F16"
    # no job is still running or was started after the signal
    sleep 0.3
    expect_no_temp "$T/bout"
else
    bad "SIGINT: the batch never had a job writing"
    kill -KILL "$pid" 2> /dev/null
    wait "$pid"
fi
rm -rf "$BIG" "$T/bout"

finish
