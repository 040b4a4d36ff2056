#!/usr/bin/env bash
# A dangerous global that `scan` found decides the verdict even when another
# part of the file fails (a zip record with a bad CRC-32 holding the payload,
# junk after the payload's pickle, a broken record before a malicious one):
# exit 1, every global listed, the failure reported too. And `convert --to`
# with an unknown format is a usage error that lists the formats.
. tests/cli/lib.sh

F=../shared/fixtures/real
BAD=tests/corpus/bad/torch

# the payload sits in a record whose CRC-32 does not match: still read, unsafe
expect_exit 1 "$CKPTKIT" scan "$BAD/evil_bad_crc.pt"
expect_stdout_has "dangerous  os.system  (archive/data.pkl @ 141)"
expect_stdout_has "allowed    torch._utils._rebuild_tensor_v2  (archive/data.pkl @ 10)"
expect_stdout_has "evil_bad_crc.pt: unsafe (4 globals: 3 allowed, 0 unknown, 1 dangerous); not fully parsed"
expect_one_line_error
expect_stderr_has "zip member 'archive/data.pkl': CRC-32 of its 200 bytes is dd7b0591 but the directory says 12345678"

# junk after the payload's pickle
expect_exit 1 "$CKPTKIT" scan "$BAD/evil_junk_after.pkl"
expect_stdout_has "dangerous  os.system  (pickle @ 2)"
expect_one_line_error
expect_stderr_has "(pickle 2, after byte 63): opcode 0x6e (unknown) at byte 63: not a pickle opcode"

# --json: status unsafe, with the error alongside
expect_exit 1 "$CKPTKIT" scan --json "$BAD/evil_bad_crc.pt" "$BAD/evil_junk_after.pkl"
py - "$T/.out" <<'PYEOF' || bad "scan --json of unsafe files that also fail"
import json, sys
a, b = json.load(open(sys.argv[1]))["files"]
for f in (a, b):
    assert f["status"] == "unsafe", f
    assert [g["name"] for g in f["globals"] if g["verdict"] == "dangerous"] == ["system"], f
assert "CRC-32" in a["error"] and "not a pickle opcode" in b["error"], (a, b)
PYEOF

# -q: the dangerous line and the error, no summary
expect_exit 1 "$CKPTKIT" scan -q "$BAD/evil_bad_crc.pt"
[ "$OUT" = "dangerous  os.system  (archive/data.pkl @ 141)" ] || bad "scan -q printed: $OUT"
expect_one_line_error

# a fixture that is malicious and truncated: unsafe, and the truncation reported
expect_exit 1 "$CKPTKIT" scan "$F/pickle/picklescan_broken_model.pkl"
expect_stdout_has "dangerous  builtins.exec"
expect_stderr_has "string of 543558206 bytes but only 63 remain"

# a broken record before the malicious one: the scan goes on to it
py - "$T/two.zip" <<'PYEOF' || bad "could not build two.zip"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w") as z:
    z.writestr("a.pkl", b"\x80\x02garbage")
    z.writestr("b.pkl", b"\x80\x02cos\nsystem\n.")
PYEOF
expect_exit 1 "$CKPTKIT" scan "$T/two.zip"
expect_stdout_has "dangerous  os.system  (b.pkl @ 2)"
expect_stderr_has "a.pkl"

# unparseable with nothing dangerous found: still exit 2, never clean
expect_exit 2 "$CKPTKIT" scan "$BAD/legacy_truncated.pt"
expect_one_line_error
# a benign record with a bad CRC-32: exit 2 with the mismatch named
py - "$ROOT/examples/mnist.safetensors" "$T/crc.pt" <<'PYEOF' || bad "could not build crc.pt"
import sys, zipfile
with zipfile.ZipFile(sys.argv[2], "w") as z:
    z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    z.writestr("archive/version", b"3\n")
raw = bytearray(open(sys.argv[2], "rb").read())
i = raw.find(b"PK\x01\x02")
raw[i + 16:i + 20] = b"\x01\x02\x03\x04"
j = raw.find(b"PK\x03\x04")
raw[j + 14:j + 18] = b"\x01\x02\x03\x04"
open(sys.argv[2], "wb").write(bytes(raw))
PYEOF
expect_exit 2 "$CKPTKIT" scan "$T/crc.pt"
expect_one_line_error
expect_stderr_has "CRC-32 of its"

# convert --to with a format that does not exist: usage error listing the formats
expect_exit 2 "$CKPTKIT" convert examples/mnist.safetensors "$T/out.x" --to bogus
expect_stderr_has "ckptkit: convert: --to 'bogus': no such output format (formats: "
for name in safetensors pth ckpt raw; do expect_stderr_has "$name"; done
expect_stderr_has "Try 'ckptkit convert --help'."
expect_no_file "$T/out.x"
# aliases still work
expect_exit 0 "$CKPTKIT" convert -q examples/mnist.safetensors "$T/out.x" --to bin
expect_exit 0 "$CKPTKIT" convert -q examples/mnist.safetensors "$T/out.y" --to ST

finish
