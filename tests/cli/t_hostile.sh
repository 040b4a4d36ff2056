#!/usr/bin/env bash
# Every hostile input under tests/corpus/bad/, from the command line, each
# opened the way its owner's unit test opens it:
#   junk/*          detection                       (t_hostile.c)
#   safetensors/*   --format safetensors            (t_safetensors.c)
#   raw/X.raw       --manifest X.raw.json           (t_raw.c)
#   sharded/*.index.json, the index itself          (t_shard.c)
#   torch/*         detection, files with a .expected line; the others are
#                   payloads that load inert        (t_torch_read.c, t_scan.sh)
#   pickle/*.pkl    raw pickles: `scan` parses them (t_pickle.c runs the machine)
#   npy/*           detection, .npy and .npz inputs  (t_npy.c)
#   gguf/*          detection; scan exits 2         (t_gguf.c)
# `ckptkit info` and `ckptkit convert` must exit 1 with exactly one stderr
# line, "ckptkit: " + the .expected line, leave no output and no temporary
# file, and finish within 10 seconds (a hang is a failure). Raw pickles have
# no reader: info and convert exit 1 with one line, and `scan` exits 2 with
# the machine's own line. Finally every fixture MANIFEST.tsv marks MALICIOUS
# is never scanned clean (exit 1 or 2) and never converts (exit 1).
. tests/cli/lib.sh

BAD=tests/corpus/bad
F=${FIXTURES:-../shared/fixtures/real}
OUTF=$T/out.safetensors
checked=0

# The one stderr line of the last command equals "ckptkit: " + line of file $1.
expect_line_of() {
    local want
    want="ckptkit: $(cat "$1")"
    [ "$ERR" = "$want" ] || bad "stderr differs from $1:
    want: $want
    got:  $ERR"
}

# no_output: the last convert left neither OUT nor a temporary file.
no_output() {
    expect_no_file "$OUTF"
    expect_no_temp "$T"
    rm -f "$OUTF"
}

# check_bad EXPECTED IN [OPEN OPTIONS...]
check_bad() {
    local exp=$1 in=$2
    shift 2
    expect_exit 1 timeout 10 "$CKPTKIT" info "$in" "$@"
    expect_one_line_error
    expect_line_of "$exp"
    expect_exit 1 timeout 10 "$CKPTKIT" convert "$in" "$OUTF" "$@"
    expect_one_line_error
    expect_line_of "$exp"
    no_output
    checked=$((checked + 1))
}

count() { checked=0; }
at_least() { [ "$checked" -ge "$1" ] || bad "$2: only $checked inputs checked (want >= $1)"; }

# ---- junk: detection ----------------------------------------------------------
count
for f in "$BAD"/junk/*; do
    case $f in *.expected) continue ;; esac
    check_bad "${f%.*}.expected" "$f"
done
at_least 70 junk

# ---- safetensors: read as safetensors -----------------------------------------
count
for f in "$BAD"/safetensors/*.safetensors; do
    check_bad "${f%.safetensors}.expected" "$f" --format safetensors
done
at_least 70 safetensors

# ---- raw: data with its manifest ------------------------------------------------
count
for f in "$BAD"/raw/*.raw; do
    check_bad "${f%.raw}.expected" "$f" --manifest "$f.json"
done
at_least 50 raw

# ---- sharded: the index ---------------------------------------------------------
count
for f in "$BAD"/sharded/*.index.json; do
    check_bad "${f%.index.json}.expected" "$f"
done
at_least 20 sharded

# ---- torch: detection, where a line is expected -----------------------------------
count
for f in "$BAD"/torch/*; do
    case $f in *.expected | *.py) continue ;; esac
    [ -f "${f%.*}.expected" ] || continue
    check_bad "${f%.*}.expected" "$f"
done
at_least 25 torch

# ---- gguf: detection (one file per past GGUF parser CVE class) ---------------------
count
for f in "$BAD"/gguf/*.gguf; do
    check_bad "${f%.gguf}.expected" "$f"
    expect_exit 2 timeout 10 "$CKPTKIT" scan -q "$f"
done
at_least 25 gguf

# ---- raw pickles: no reader claims them; scan parses them --------------------------
count
for f in "$BAD"/pickle/*.pkl; do
    expect_exit 1 timeout 10 "$CKPTKIT" info "$f"
    expect_one_line_error
    expect_exit 1 timeout 10 "$CKPTKIT" convert "$f" "$OUTF"
    expect_one_line_error
    no_output
    # exit 2 (not fully parsed), or 1 when a dangerous global came before the failure
    run timeout 10 "$CKPTKIT" scan -q "$f"
    case $OUT in
        "") [ "$RC" -eq 2 ] || bad "scan $f: exit $RC, expected 2" ;;
        dangerous*) [ "$RC" -eq 1 ] || bad "scan $f: exit $RC after '$OUT', expected 1" ;;
        *) bad "scan -q $f printed: $OUT" ;;
    esac
    expect_one_line_error
    # an empty file is worded by the scanner itself, before any pickle runs
    [ -s "$f" ] && expect_line_of "${f%.pkl}.expected"
    checked=$((checked + 1))
done
at_least 60 pickle

# ---- npy/npz: detection (tests/corpus/make_bad_npy.py, t_npy.c) ----------------------
count
for f in "$BAD"/npy/*.npy "$BAD"/npy/*.npz; do
    check_bad "${f%.*}.expected" "$f"
done
at_least 30 npy

# ---- the fixtures marked MALICIOUS ---------------------------------------------------
count
while IFS=$'\t' read -r file _ _ _ _ _ notes _; do
    case $notes in *MALICIOUS*) ;; *) continue ;; esac
    run timeout 10 "$CKPTKIT" scan -q "$F/$file"
    case $RC in
        1 | 2) ;;
        *) bad "scan $file: exit $RC (a MALICIOUS fixture must never scan clean)" ;;
    esac
    expect_exit 1 timeout 10 "$CKPTKIT" convert "$F/$file" "$OUTF"
    expect_one_line_error
    no_output
    checked=$((checked + 1))
done < "$F/MANIFEST.tsv"
at_least 15 malicious

finish
