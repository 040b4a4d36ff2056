#!/usr/bin/env bash
# The whole-checkpoint rewrite from the command line: convert of a PyTorch
# file keeps its whole tree and prints each rewrite; --unknown validates its
# argument; info and ls --all preview the rewrites; sanitize removes a
# dangerous call (reported by path), leaves the rest, scans clean, refuses
# non-PyTorch outputs and exits 1 when nothing usable remains. The payload
# files are written as raw bytes and only ever given to ckptkit.
. tests/cli/lib.sh

# A torch zip holding PICKLE (raw bytes from a python literal) as m/data.pkl.
mkzip() {
    py - "$1" "$2" <<'PYEOF'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_STORED) as z:
    z.writestr("m/data.pkl", eval(sys.argv[2]))
    z.writestr("m/version", "3\n")
PYEOF
}

sentinel=$T/SENTINEL
x() { printf 'b"X" + (%d).to_bytes(4, "little") + b"%s"' "${#1}" "$1"; }
# {'hp': argparse.Namespace(lr=1), 'evil': os.system('touch SENTINEL'), 'n': 3}
mkzip "$T/bad.pt" "b'\\x80\\x02}(' + $(x hp) + b'cargparse\\nNamespace\\n)\\x81}' + $(x lr) + b'K\\x01sb' + $(x evil) + b'cos\\nsystem\\n' + $(x "touch $sentinel") + b'\\x85R' + $(x n) + b'K\\x03u.'"
# {'hp': argparse.Namespace(lr=1), 'n': 3}
mkzip "$T/ok.pt" "b'\\x80\\x02}(' + $(x hp) + b'cargparse\\nNamespace\\n)\\x81}' + $(x lr) + b'K\\x01sb' + $(x n) + b'K\\x03u.'"

expect_exit 0 "$CKPTKIT" sanitize --help
expect_stdout_has "usage: ckptkit sanitize IN OUT"
expect_exit 2 "$CKPTKIT" sanitize "$T/bad.pt"
expect_exit 2 "$CKPTKIT" sanitize "$T/bad.pt" "$T/out.safetensors"
expect_stderr_has "must be a PyTorch file"
expect_exit 2 "$CKPTKIT" sanitize --unknown=never "$T/bad.pt" "$T/out.pt"
expect_exit 2 "$CKPTKIT" convert --unknown=never "$T/ok.pt" "$T/out.pt"

expect_exit 1 "$CKPTKIT" scan "$T/bad.pt"
expect_exit 0 "$CKPTKIT" sanitize "$T/bad.pt" "$T/clean.pt"
expect_stdout_has "evil: os.system -> removed (dangerous)"
expect_stdout_has "hp: argparse.Namespace -> dict"
expect_stderr_has "clean; 1 dangerous value(s) removed, 1 other value(s) rewritten"
expect_exit 0 "$CKPTKIT" scan "$T/clean.pt"
expect_exit 1 "$CKPTKIT" sanitize "$T/bad.pt" "$T/clean.pt"   # exists, no --force
expect_exit 0 "$CKPTKIT" sanitize --force --unknown=keep "$T/bad.pt" "$T/clean.pt"
expect_exit 0 "$CKPTKIT" scan "$T/clean.pt"
expect_stdout_has "argparse.Namespace"

# convert: the same rewrite, printed on stderr; dangerous input refused without --allow-unsafe
expect_exit 0 "$CKPTKIT" convert "$T/ok.pt" "$T/conv.pt"
expect_stderr_has "ckptkit: rewrote hp: argparse.Namespace -> dict"
expect_exit 1 "$CKPTKIT" convert "$T/bad.pt" "$T/conv2.pt"
expect_exit 0 "$CKPTKIT" convert --allow-unsafe "$T/bad.pt" "$T/conv2.pt"
expect_stderr_has "ckptkit: rewrote evil: os.system -> removed (dangerous)"
expect_exit 0 "$CKPTKIT" scan "$T/conv2.pt"

# preview
expect_exit 0 "$CKPTKIT" info "$T/ok.pt"
expect_stdout_has "  hp: argparse.Namespace -> dict"
expect_exit 0 "$CKPTKIT" info "$T/conv.pt"
expect_stdout_has "(nothing: it loads as it is)"
expect_exit 0 "$CKPTKIT" ls --all "$T/ok.pt"
expect_stdout_has "  hp: argparse.Namespace -> dict"
expect_exit 0 "$CKPTKIT" ls --all --json "$T/ok.pt"
expect_stdout_has '"rewrites": [{"path": "hp", "was": "argparse.Namespace", "becomes": "dict"}]'

# nothing usable: the root is the payload
mkzip "$T/root.pt" "b'\\x80\\x02cos\\nsystem\\n' + $(x "touch $sentinel") + b'\\x85R.'"
expect_exit 1 "$CKPTKIT" sanitize "$T/root.pt" "$T/none.pt"
expect_stdout_has "(root): os.system -> removed (dangerous)"
expect_stderr_has "nothing usable remains"
expect_no_file "$T/none.pt"
expect_no_temp "$T"
expect_no_file "$sentinel"
finish
