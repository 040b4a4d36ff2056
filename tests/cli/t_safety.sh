#!/usr/bin/env bash
# Output safety of `ckptkit convert`: an existing OUT is replaced only with
# --force; an OUT that is IN (same path, symlink, hard link, ./ and ../
# spellings) is refused even with --force; any failed convert (bad input,
# unsupported cast, the Nth write/fsync/rename/open/allocation failing through
# CKPTKIT_FAULT, a file-size limit, a full disk) exits 1 with one line on
# stderr and leaves no OUT and no temporary file; IN is never modified; OUT
# in a missing folder, or OUT that is a folder, is a clean error.
. tests/cli/lib.sh

# A safetensors file written by hand: NAME=DTYPE:SHAPE[:FILLBYTE] ... (bytes
# are FILLBYTE repeated, default a counting pattern).
mkst() {
    py - "$@" <<'EOF'
import json, struct, sys
path = sys.argv[1]
sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "F4": 0.5}
hdr, data = {}, b""
for spec in sys.argv[2:]:
    name, rest = spec.split("=")
    parts = rest.split(":")
    dt, shape = parts[0], [int(x) for x in parts[1].split("x")] if parts[1] else []
    n = 1
    for s in shape:
        n *= s
    nbytes = int(n * sizes[dt] + 0.5)
    if len(parts) > 2:
        raw = bytes([int(parts[2])]) * nbytes
    else:
        raw = bytes(i % 251 for i in range(nbytes))
    hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [len(data), len(data) + nbytes]}
    data += raw
hdr["__metadata__"] = {"made_by": "t_safety"}
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
EOF
}

sum() { sha256sum "$1" | cut -d' ' -f1; }

# IN, its checksum, and a folder to write into
IN=$T/in.safetensors
# (3 MiB: more than the sink's 1 MiB buffer, so writes and copy_file_range repeat)
mkst "$IN" "a.weight=F32:64x32" "a.bias=F32:32" "steps=I64:10" "emb=BF16:300x16" \
    "big=F32:768x1024"
IN_SUM=$(sum "$IN")
in_untouched() {
    [ -f "$IN" ] && [ ! -L "$IN" ] && [ "$(sum "$IN")" = "$IN_SUM" ] || bad "IN changed: $*"
}

# ---- existing OUT: refused without --force, replaced with it ----------------
DST=$T/out.safetensors
printf 'previous contents' > "$DST"
expect_exit 1 "$CKPTKIT" convert "$IN" "$DST"
expect_one_line_error
expect_stderr_has "$DST"
expect_stderr_has "--force"
[ "$(cat "$DST")" = "previous contents" ] || bad "OUT changed without --force"
expect_no_temp "$T"
expect_exit 0 "$CKPTKIT" convert "$IN" "$DST" --force
expect_exit 0 "$CKPTKIT" verify "$IN" "$DST"
expect_no_temp "$T"
in_untouched "after --force"
# replacing keeps other hard links of the old OUT as they were (rename, not rewrite)
printf 'linked old' > "$T/old.safetensors"
ln "$T/old.safetensors" "$T/old-link.safetensors"
expect_exit 0 "$CKPTKIT" convert "$IN" "$T/old.safetensors" --force
[ "$(cat "$T/old-link.safetensors")" = "linked old" ] || bad "--force wrote through a hard link"
expect_exit 0 "$CKPTKIT" verify "$IN" "$T/old.safetensors"

# ---- OUT is IN, however spelled: refused, even with --force ---------------------
ln -s in.safetensors "$T/sym.safetensors"
ln "$IN" "$T/hard.safetensors"
mkdir "$T/sub"
same_refused() {
    expect_exit 1 "$CKPTKIT" convert "$@"
    expect_one_line_error
    expect_stderr_has "output is the input"
    expect_no_temp "$T"
    in_untouched "$*"
}
for force in "" --force; do
    same_refused "$IN" "$IN" $force
    same_refused "$IN" "$T/sym.safetensors" $force
    same_refused "$T/sym.safetensors" "$IN" $force
    same_refused "$IN" "$T/hard.safetensors" $force
    same_refused "$T/hard.safetensors" "$T/sym.safetensors" $force
    same_refused "$IN" "$T/./in.safetensors" $force
    same_refused "$IN" "$T/sub/../in.safetensors" $force
    same_refused "$IN" "$T//in.safetensors" $force
    same_refused "$IN" "$T/../$(basename "$T")/in.safetensors" $force
done
(cd "$T/sub" && same_refused ../in.safetensors ../in.safetensors --force)
(cd "$T" && same_refused in.safetensors ./in.safetensors --force)
(cd "$T" && same_refused "$IN" in.safetensors --force)
(cd "$T" && same_refused ./sym.safetensors hard.safetensors --force)
[ -L "$T/sym.safetensors" ] || bad "the symlink was replaced"
[ "$(sum "$T/hard.safetensors")" = "$IN_SUM" ] || bad "the hard link changed"
# the same-file check also covers --to with an extension that names no format
same_refused "$IN" "$T/hard.safetensors" --to pth --force

# ---- OUT in a missing folder, OUT a folder -----------------------------------------
expect_exit 1 "$CKPTKIT" convert "$IN" "$T/missing/out.safetensors"
expect_one_line_error
expect_stderr_has "$T/missing/out.safetensors"
expect_no_file "$T/missing"
mkdir "$T/dir.safetensors"
for force in "" --force; do
    expect_exit 1 "$CKPTKIT" convert "$IN" "$T/dir.safetensors" $force
    expect_one_line_error
    expect_stderr_has "folder"
done
[ -d "$T/dir.safetensors" ] && [ -z "$(ls -A "$T/dir.safetensors")" ] || bad "folder OUT touched"
expect_exit 1 "$CKPTKIT" convert "$IN" "$T/sub/" --to safetensors
expect_one_line_error
expect_stderr_has "folder"
printf 'x' > "$T/plainfile"
expect_exit 1 "$CKPTKIT" convert "$IN" "$T/plainfile/out.safetensors"
expect_one_line_error
expect_no_temp "$T"
expect_no_temp "$T/sub"

# ---- failed converts leave nothing --------------------------------------------------
clean_failure() { # OUT-PATH: exit 1, one line, no OUT, no temp, IN untouched
    expect_one_line_error
    expect_no_file "$1"
    expect_no_temp "$(dirname "$1")"
    in_untouched "$1"
}
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"a":{"dtype":"F32"' > "$T/bad.safetensors"
expect_exit 1 "$CKPTKIT" convert "$T/bad.safetensors" "$T/o1.safetensors"
clean_failure "$T/o1.safetensors"
mkst "$T/f4.safetensors" "q=F4:8" "w=F32:2"
expect_exit 1 "$CKPTKIT" convert "$T/f4.safetensors" "$T/o2.safetensors" --dtype f16
clean_failure "$T/o2.safetensors"
expect_stderr_has "F4"

# ---- injected faults: the Nth write/fsync/rename/open/alloc fails -----------------------
for op in write fsync rename open alloc; do
    n=1
    while :; do
        rm -f "$T/f.safetensors"
        CKPTKIT_FAULT="$op:$n" run "$CKPTKIT" convert "$IN" "$T/f.safetensors"
        [ "$RC" -eq 0 ] && break
        if [ "$RC" -ne 1 ]; then
            bad "fault $op:$n: exit $RC (expected 1): $ERR"
            break
        fi
        clean_failure "$T/f.safetensors"
        n=$((n + 1))
        [ "$n" -le 3000 ] || { bad "fault $op never let the convert succeed"; break; }
    done
    [ "$n" -gt 1 ] || bad "fault $op: no $op on the convert path"
    expect_exit 0 "$CKPTKIT" verify "$IN" "$T/f.safetensors"
    note "fault $op: $((n - 1)) failing runs, all clean"
done
# the same through the pth writer, and with a cast (the gather/cast path)
for op in write fsync rename; do
    for args in "$T/f.pth" "$T/g.safetensors --dtype f16"; do
        n=1
        while :; do
            # shellcheck disable=SC2086
            set -- $args
            rm -f "$1"
            CKPTKIT_FAULT="$op:$n" run "$CKPTKIT" convert "$IN" "$@"
            [ "$RC" -eq 0 ] && break
            [ "$RC" -eq 1 ] || { bad "fault $op:$n ($args): exit $RC: $ERR"; break; }
            clean_failure "$1"
            n=$((n + 1))
            [ "$n" -le 500 ] || { bad "fault $op ($args) never succeeded"; break; }
        done
        [ "$n" -gt 1 ] || bad "fault $op ($args): never on the path"
    done
done

# ---- file-size limit (SIGXFSZ is ignored: write fails with EFBIG) ------------------
mkst "$T/mid.safetensors" "w=F32:512x512"
(
    ulimit -f 200 # 200 KiB; the output needs 1 MiB
    "$CKPTKIT" convert "$T/mid.safetensors" "$T/lim.safetensors" > "$T/.out" 2> "$T/.err"
    echo $? > "$T/.rc"
)
RC=$(cat "$T/.rc")
ERR=$(cat "$T/.err")
[ "$RC" -eq 1 ] || bad "file-size limit: exit $RC (153 would mean SIGXFSZ killed it): $ERR"
expect_one_line_error
expect_stderr_has "File too large"
expect_no_file "$T/lim.safetensors"
expect_no_temp "$T"

# ---- a full disk: a 256 KiB tmpfs (needs root and mount; skipped otherwise) -----------
mkdir "$T/small"
if mount -t tmpfs -o size=256k ckptkit-test "$T/small" 2> /dev/null; then
    trap 'umount "$T/small" 2> /dev/null' EXIT
    expect_exit 1 "$CKPTKIT" convert "$T/mid.safetensors" "$T/small/full.safetensors"
    expect_one_line_error
    expect_stderr_has "No space left on device"
    expect_no_file "$T/small/full.safetensors"
    [ -z "$(ls -A "$T/small")" ] || bad "full disk: leftovers: $(ls -A "$T/small")"
    # and a convert that fits still works there
    expect_exit 0 "$CKPTKIT" convert "$T/f4.safetensors" "$T/small/fits.safetensors"
    umount "$T/small" || bad "cannot unmount $T/small"
    note "full disk: checked on a 256 KiB tmpfs"
else
    note "skip: full-disk case (cannot mount a tmpfs here)"
fi

# ---- reading commands never write beside their input ---------------------------------
before=$(ls -l --time-style=full-iso "$T" | sort)
expect_exit 0 "$CKPTKIT" info "$IN"
expect_exit 0 "$CKPTKIT" ls "$IN"
expect_exit 0 "$CKPTKIT" verify "$IN" "$T/hard.safetensors"
after=$(ls -l --time-style=full-iso "$T" | sort)
[ "$before" = "$after" ] || bad "info/ls/verify changed the folder"
in_untouched "at the end"
finish
