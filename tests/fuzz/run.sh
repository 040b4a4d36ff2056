#!/usr/bin/env bash
# Runs each libFuzzer target for N seconds with clang, seeded from its corpus,
# the hostile corpus and the real fixtures; new interesting inputs are kept in
# the target's corpus folder, crashes in tests/fuzz/crashes/.
set -eu
secs=$1; shift
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
command -v clang >/dev/null || { echo "fuzz: clang is needed (apt-get install clang)"; exit 2; }
mkdir -p build/libfuzzer tests/fuzz/crashes
srcs=$(find src -name '*.c' | sort)
for t in "$@"; do
    bin=build/libfuzzer/$t
    clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=all -Iinclude -Isrc -o "$bin" "tests/fuzz/$t.c" $srcs -lz -lm
    mkdir -p "tests/fuzz/corpus/$t"
    dict=()
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    echo "== $t for ${secs}s"
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix=tests/fuzz/crashes/"$t"- "${dict[@]}" \
        "tests/fuzz/corpus/$t" tests/corpus/bad tests/corpus/good ../shared/fixtures/real \
        2>&1 | tail -n 3
done
