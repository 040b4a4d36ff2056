#!/usr/bin/env bash
# Memory per tensor on files of 100,000 tiny tensors (safetensors, and the
# PyTorch zip file ckptkit writes from it, laid out as torch.save lays it
# out): `ls` and `convert` of each, peak RSS of the process alone (wait4),
# marginal bytes per tensor between the 1,000- and the 100,000-tensor file.
# Fails when one exceeds its bound in docs/SCALING.md (the same numbers are
# in bench/scale.py). Memory only: nothing here is timed.
. tests/cli/lib.sh

run py bench/scale.py --ckptkit "$CKPTKIT" --check --tmpdir "$T"
[ "$RC" -eq 0 ] || bad "bytes per tensor over the bound:
$OUT
$ERR"
for job in "safetensors ls" "safetensors convert" "pth ls" "pth convert"; do
    expect_stdout_has "$job: "
done
finish
