#!/usr/bin/env bash
# make demo: the main job on the bundled examples. Converts a Lightning
# checkpoint to safetensors (nothing in it is executed), shows info and ls of
# the result, converts back to a PyTorch file and verifies the round trip,
# casts a safetensors model to f16, rewrites the whole Lightning checkpoint so
# that torch.load(weights_only=True) accepts it, quantises to GGUF, writes an
# npz, scans a hostile file and sanitizes it.
set -eu
bin=${1:-build/ckptkit}
out=build/demo
rm -rf "$out"
mkdir -p "$out"
say() { printf '\n$ %s\n' "$*"; "$@"; }
say "$bin" info examples/air_rnn.ckpt
say "$bin" convert examples/air_rnn.ckpt "$out/air_rnn.safetensors"
say "$bin" info "$out/air_rnn.safetensors"
say "$bin" ls "$out/air_rnn.safetensors"
say "$bin" convert "$out/air_rnn.safetensors" "$out/air_rnn.pth"
say "$bin" verify examples/air_rnn.ckpt "$out/air_rnn.pth"
say "$bin" convert examples/mnist.safetensors "$out/mnist-f16.safetensors" --dtype f16
say "$bin" diff examples/mnist.safetensors "$out/mnist-f16.safetensors" | head -n 8
say "$bin" convert examples/air_rnn.ckpt "$out/air_rnn-f16.ckpt" --dtype f16
say "$bin" convert examples/mnist.safetensors "$out/mnist-q8_0.gguf" --dtype q8_0
say "$bin" ls "$out/mnist-q8_0.gguf"
say "$bin" convert "$out/mnist-q8_0.gguf" "$out/mnist.npz"
say "$bin" scan examples/air_rnn.ckpt
# a crafted hostile file from the test corpus: flagged, never run
printf '\n$ %s\n' "$bin scan tests/corpus/bad/torch/evil_reduce_zip.pt"
"$bin" scan tests/corpus/bad/torch/evil_reduce_zip.pt || echo "(exit status $?: unsafe)"
say "$bin" sanitize tests/corpus/bad/torch/evil_reduce_zip.pt "$out/cleaned.pt"
printf '\nOutputs are in %s/.\n' "$out"
