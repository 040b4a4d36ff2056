#!/usr/bin/env bash
# make demo: the main job on the bundled examples. Converts a Lightning
# checkpoint to safetensors (nothing in it is executed), shows info and ls of
# the result, casts a safetensors model to f16 and back to a PyTorch file, and
# verifies a round trip.
set -eu
bin=${1:-build/ckptkit}
out=$(mktemp -d "${TMPDIR:-/tmp}/ckptkit-demo.XXXXXX")
trap 'rm -rf "$out"' EXIT
say() { printf '\n$ %s\n' "$*"; "$@"; }
say "$bin" info examples/air_rnn.ckpt
say "$bin" convert examples/air_rnn.ckpt "$out/air_rnn.safetensors"
say "$bin" info "$out/air_rnn.safetensors"
say "$bin" ls "$out/air_rnn.safetensors"
say "$bin" convert "$out/air_rnn.safetensors" "$out/air_rnn.pth"
say "$bin" verify examples/air_rnn.ckpt "$out/air_rnn.pth"
say "$bin" convert examples/mnist.safetensors "$out/mnist-f16.safetensors" --dtype f16
say "$bin" ls "$out/mnist-f16.safetensors"
say "$bin" scan examples/air_rnn.ckpt
