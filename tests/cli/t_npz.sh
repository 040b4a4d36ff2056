#!/usr/bin/env bash
# NumPy .npy/.npz from the command line: writing (stored, --compress, one-array
# .npy, bf16 with a warning or refused with --strict, metadata dropped with a
# count), reading back through every command, arrays left out on request
# (--skip-unsupported, --allow-unsafe for object arrays) and counted, and
# sharded checkpoints whose shards are .npz files.
. tests/cli/lib.sh

F=${FIXTURES:-../shared/fixtures/real}
ST=$F/safetensors/hf_samples_overall.safetensors

# ---- writing and reading back ---------------------------------------------------------
expect_exit 0 "$CKPTKIT" convert "$ST" "$T/m.npz"
expect_stderr_has ".npz holds no metadata: 1 entry dropped"
expect_stderr_has "9 tensors"
expect_exit 0 "$CKPTKIT" ls "$T/m.npz"
[ "$(printf '%s\n' "$OUT" | wc -l)" -eq 9 ] || bad "ls m.npz: want 9 lines: $OUT"
expect_exit 0 "$CKPTKIT" info "$T/m.npz"
expect_stdout_has "format:      npz"
expect_exit 0 "$CKPTKIT" verify "$ST" "$T/m.npz"
expect_exit 0 "$CKPTKIT" convert "$ST" "$T/c.npz" --compress -q
expect_exit 0 "$CKPTKIT" verify "$T/m.npz" "$T/c.npz"
expect_exit 0 "$CKPTKIT" diff "$ST" "$T/c.npz"
expect_exit 0 "$CKPTKIT" convert "$ST" "$T/noext" --to npz -q
expect_exit 0 "$CKPTKIT" verify "$T/noext" "$T/m.npz"
expect_exit 0 "$CKPTKIT" convert "$T/c.npz" "$T/back.safetensors" -q
expect_exit 0 "$CKPTKIT" verify "$ST" "$T/back.safetensors"
expect_exit 0 "$CKPTKIT" export "$T/c.npz" f -o "$T/f.npy"
expect_exit 0 "$CKPTKIT" ls "$T/f.npy"
expect_stdout_has "F32      [6]"

# ---- .npy holds one array ---------------------------------------------------------------
expect_exit 1 "$CKPTKIT" convert "$ST" "$T/all.npy"
expect_one_line_error
expect_stderr_has "exactly one array but 9 tensors"
expect_no_file "$T/all.npy"
expect_no_temp "$T"
expect_exit 0 "$CKPTKIT" convert "$ST" "$T/d.npy" --include d -q
expect_exit 0 "$CKPTKIT" ls "$T/d.npy"
expect_stdout_has "F64      [6]"

# ---- dtypes numpy cannot spell ------------------------------------------------------------
expect_exit 0 "$CKPTKIT" convert "$ST" "$T/bf.safetensors" --dtype bf16 -q
expect_exit 0 "$CKPTKIT" convert "$T/bf.safetensors" "$T/bf.npz"
expect_stderr_has "ml_dtypes"
expect_exit 1 "$CKPTKIT" convert "$T/bf.safetensors" "$T/strict.npz" --strict
expect_one_line_error
expect_stderr_has "--strict"
expect_no_file "$T/strict.npz"
expect_no_temp "$T"
# read back, '<V2' is raw bytes: left out only on request
expect_exit 1 "$CKPTKIT" ls "$T/bf.npz"
expect_one_line_error
expect_exit 0 "$CKPTKIT" ls "$T/bf.npz" --skip-unsupported -q
[ "$(printf '%s\n' "$OUT" | grep -c .)" -eq 6 ] || bad "ls bf.npz: want the 6 non-float tensors: $OUT"

# ---- left out on request, and counted ------------------------------------------------------
expect_exit 1 "$CKPTKIT" info "$F/npz/numpy_py3-arr-savez.npz"
expect_one_line_error
expect_stderr_has "member 'foo.npy': dtype '<U3'"
expect_exit 0 "$CKPTKIT" info "$F/npz/numpy_py3-arr-savez.npz" --skip-unsupported
expect_stdout_has "left out:    1"
expect_exit 0 "$CKPTKIT" convert "$F/npz/numpy_py3-arr-savez.npz" "$T/x.safetensors" \
    --skip-unsupported
expect_stderr_has "1 tensors"
expect_stderr_has "1 input array left out"
expect_exit 1 "$CKPTKIT" info "$F/npy/picklescan_dns_exfiltration.npy"
expect_one_line_error
expect_stderr_has "refusing to load an object array"
expect_exit 0 "$CKPTKIT" info "$F/npy/picklescan_dns_exfiltration.npy" --allow-unsafe
expect_stdout_has "tensors:     0"
expect_stderr_has "never unpickled"
expect_exit 1 "$CKPTKIT" scan "$F/npy/picklescan_dns_exfiltration.npy"
expect_stdout_has "ssl.get_server_certificate"
expect_exit 0 "$CKPTKIT" scan "$T/c.npz"

# ---- sharded: an index whose shards are .npz files -----------------------------------------
mkdir -p "$T/sh"
expect_exit 0 "$CKPTKIT" convert "$ST" "$T/sh/a.npz" --include 'B' --include 'H' -q
expect_exit 0 "$CKPTKIT" convert "$ST" "$T/sh/b.npz" --include 'f' -q
cat > "$T/sh/model.npz.index.json" <<'JSON'
{"metadata": {"total_size": 42}, "weight_map": {"B": "a.npz", "H": "a.npz", "f": "b.npz"}}
JSON
expect_exit 0 "$CKPTKIT" ls "$T/sh/model.npz.index.json"
[ "$(printf '%s\n' "$OUT" | wc -l)" -eq 3 ] || bad "sharded npz: want 3 tensors: $OUT"
expect_exit 0 "$CKPTKIT" info "$T/sh"
expect_stdout_has "sharded:npz"

# ---- a deflated member is checked as it is read ---------------------------------------------
C=tests/fuzz/corpus/fuzz_npz
expect_exit 0 "$CKPTKIT" ls "$C/crc_mismatch.npz"
expect_exit 1 "$CKPTKIT" convert "$C/crc_mismatch.npz" "$T/crc.safetensors"
expect_one_line_error
expect_stderr_has "member 'w.npy': CRC-32 of the inflated bytes is 9489972b, the directory says 9489972a"
expect_no_file "$T/crc.safetensors"
expect_no_temp "$T"
expect_exit 2 "$CKPTKIT" verify "$C/crc_mismatch.npz" "$C/deflated.npz"
expect_exit 1 "$CKPTKIT" convert "$C/corrupt_stream.npz" "$T/cs.npz"
expect_one_line_error
expect_no_file "$T/cs.npz"

finish
