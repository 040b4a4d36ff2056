#!/usr/bin/env bash
# GGUF from the command line: ls/info on the real files (ggml type names,
# PyTorch shapes, metadata with arrays summarised and control characters
# escaped), convert GGUF -> safetensors (F32 default, --dtype f16), GGUF ->
# GGUF unchanged (the same bytes), quantisation with the policy summary, the
# refusals (long names, quantised dtypes for other formats, NaN), split output
# read back as one model, and scan's report of chat templates.
. tests/cli/lib.sh

F=${FIXTURES:-../shared/fixtures/real}/gguf
LL=$F/ollama_llama-2-tiny-random.gguf
[ -f "$LL" ] || { note "skip: $LL missing"; finish; exit 0; }

expect_exit 0 "$CKPTKIT" ls "$LL"
expect_stdout_has "token_embd.weight         F16      [32000, 8]  512000"
expect_stdout_has "blk.0.ffn_down.weight     F16      [8, 32]  512"
expect_exit 0 "$CKPTKIT" info "$LL"
expect_stdout_has "format:      gguf"
expect_stdout_has "tokenizer.ggml.tokens: [STRING x 32000]"
expect_stdout_has "llama.attention.layer_norm_rms_epsilon: 9.99999975e-06"

# GGUF -> GGUF with nothing to change: byte for byte the same file
expect_exit 0 "$CKPTKIT" convert "$LL" "$T/same.gguf"
cmp -s "$LL" "$T/same.gguf" || bad "GGUF -> GGUF changed the bytes"

# quantise: the policy keeps 1-D norms, the summary counts types
expect_exit 0 "$CKPTKIT" convert "$LL" "$T/q.gguf" --dtype q8_0
expect_stderr_has "types: F16 x 8, F32 x 3, Q8_0 x 1"
expect_exit 0 "$CKPTKIT" ls "$T/q.gguf"
expect_stdout_has "blk.0.ffn_down.weight     Q8_0     [8, 32]  272"
expect_stdout_has "blk.0.attn_norm.weight    F32      [8]  32"
# ... and back: Q8_0 dequantises to F32, --dtype f16 gives F16
expect_exit 0 "$CKPTKIT" convert "$T/q.gguf" "$T/q.safetensors"
expect_exit 0 "$CKPTKIT" ls "$T/q.safetensors"
expect_stdout_has "blk.0.ffn_down.weight     F32"
expect_exit 0 "$CKPTKIT" convert "$T/q.gguf" "$T/q16.safetensors" --dtype f16
expect_exit 0 "$CKPTKIT" ls "$T/q16.safetensors"
expect_stdout_has "blk.0.ffn_down.weight     F16"
# everything else is the same values
expect_exit 0 "$CKPTKIT" convert "$LL" "$T/ll.safetensors" --exclude blk.0.ffn_down.weight \
    --dtype f16
expect_exit 0 "$CKPTKIT" convert "$T/q16.safetensors" "$T/q16b.safetensors" \
    --exclude blk.0.ffn_down.weight
expect_exit 0 "$CKPTKIT" verify "$T/ll.safetensors" "$T/q16b.safetensors"

# K-quants: the 8-wide rows do not fit 256-element blocks: Q4_K falls back to Q5_0,
# which does not fit either (8 < 32), then F16
expect_exit 0 "$CKPTKIT" convert "$LL" "$T/k.gguf" --dtype q4_k
expect_stderr_has "types: F16 x 8, F32 x 3, Q5_0 x 1"

# diff compares a quantised tensor with its float source by value
expect_exit 1 "$CKPTKIT" diff "$T/q.gguf" "$LL"
expect_stdout_has "blk.0.ffn_down.weight  dtype, values  Q8_0     F16"
expect_exit 0 "$CKPTKIT" diff "$T/q.gguf" "$LL" --atol 0.01

# quantised dtypes are GGUF's alone
expect_exit 1 "$CKPTKIT" convert "$LL" "$T/x.safetensors" --dtype q8_0
expect_one_line_error
expect_stderr_has "--dtype Q8_0: ggml block types are written to GGUF only"
expect_no_file "$T/x.safetensors"
expect_exit 2 "$CKPTKIT" convert "$LL" "$T/x.gguf" --dtype q9_9
expect_exit 2 "$CKPTKIT" convert "$LL" "$T/x.gguf" --tensor-type "nothing"
expect_exit 1 "$CKPTKIT" convert "$LL" "$T/x.gguf" --tensor-type "(=q8_0"
expect_stderr_has "--tensor-type '(=q8_0': bad regex"

# split output, read back as one model from any part
expect_exit 0 "$CKPTKIT" convert "$LL" "$T/s.gguf" --shard-size 600KB
expect_stderr_has "wrote 2 split files"
[ -f "$T/s-00001-of-00002.gguf" ] && [ -f "$T/s-00002-of-00002.gguf" ] ||
    bad "split files missing"
expect_no_file "$T/s.gguf.index.json"
expect_exit 0 "$CKPTKIT" verify "$LL" "$T/s-00002-of-00002.gguf"

# scan: chat templates reported with their size, never rendered; info escapes them
printf 'GGUF' > "$T/t.gguf"
py - "$T/t.gguf" <<'PYEOF'
import struct, sys
def s(b): return struct.pack("<Q", len(b)) + b
tpl = b"{% for m in messages %}\x1b[2J{{ m }}{% endfor %}\n"
kv = s(b"tokenizer.chat_template") + struct.pack("<I", 8) + s(tpl)
data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv
open(sys.argv[1], "wb").write(data)
PYEOF
expect_exit 0 "$CKPTKIT" scan "$T/t.gguf"
expect_stdout_has "template   tokenizer.chat_template  (47 bytes of Jinja in the metadata; not rendered)"
expect_stdout_has "clean"
expect_exit 0 "$CKPTKIT" info "$T/t.gguf"
expect_stdout_has 'tokenizer.chat_template: {% for m in messages %}\x1b[2J{{ m }}{% endfor %}\n'
case $OUT in *$'\x1b'*) bad "info printed a raw escape character" ;; esac

finish
