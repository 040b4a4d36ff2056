#!/usr/bin/env bash
# Replays each fuzz target over its saved corpus (tests/fuzz/corpus/<target>/),
# the hostile corpus (tests/corpus/bad/) and the real fixtures, under ASan.
set -eu
dir=$1; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
export ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1
for t in "$@"; do
    printf '%-24s ' "$t"
    "$dir/$t" "$root/tests/fuzz/corpus/$t" "$root/tests/corpus/bad" "$root/tests/corpus/good" \
        "$root/../shared/fixtures/real"
done
