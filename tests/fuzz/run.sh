#!/usr/bin/env bash
# Runs libFuzzer targets for N seconds each, seeded from the target's corpus,
# the hostile corpus and the real fixtures:
#
#   tests/fuzz/run.sh SECONDS TARGET...      (make fuzz FUZZ_SECONDS=60 runs them all)
#
# New interesting inputs are kept in tests/fuzz/corpus/<target>/. A crash,
# leak, timeout (-timeout=10) or out-of-memory input is written to
# tests/fuzz/crashes/<target>-<kind>-<sha1>; the script then exits 1 once
# every target has run, naming each reproducer. The library is built once
# (clang, ASan + UBSan, libFuzzer coverage) in build/libfuzzer/; targets run
# FUZZ_JOBS at a time (default: the number of processors).
#
# Without clang, or with a clang that has no libFuzzer runtime
# (libclang-rt-14-dev on Debian), the script says why and exits 0: the fuzz
# step is skipped, not failed. FUZZ_REQUIRE=1 turns that into exit 2.
set -u
secs=${1:?usage: run.sh SECONDS TARGET...}
shift
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=build/libfuzzer
cc=${FUZZ_CC:-clang}
jobs=${FUZZ_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1

skip() {
    echo "fuzz: SKIPPED: $*"
    [ "${FUZZ_REQUIRE:-0}" = 1 ] && exit 2
    exit 0
}

command -v "$cc" > /dev/null 2>&1 ||
    skip "$cc is not installed (Debian: apt-get install clang libclang-rt-14-dev)"
mkdir -p "$out/obj" tests/fuzz/crashes
printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
    'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
    > "$out/probe.c"
if ! "$cc" -fsanitize=fuzzer,address,undefined -o "$out/probe" "$out/probe.c" \
        > "$out/probe.log" 2>&1; then
    why=$(head -n 1 "$out/probe.log")
    skip "$cc cannot link libFuzzer (Debian: apt-get install libclang-rt-14-dev): $why"
fi

flags=(-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined
       -fno-sanitize-recover=all -Iinclude -Isrc)

# ---- the library, once, FUZZ_JOBS files at a time ----------------------------
echo "fuzz: building the library with $cc"
rm -f "$out"/obj/*.o "$out"/build-*.log
objs=()
n=0
for s in $(find src -name '*.c' | sort); do
    o=$out/obj/$(printf '%s' "${s%.c}" | tr / _).o
    objs+=("$o")
    "$cc" "${flags[@]}" -fsanitize=fuzzer-no-link -c "$s" -o "$o" > "$out/build-$n.log" 2>&1 &
    n=$((n + 1))
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait
for o in "${objs[@]}"; do
    if [ ! -f "$o" ]; then
        echo "fuzz: the library does not build with $cc:"
        cat "$out"/build-*.log | head -n 30
        exit 1
    fi
done

# ---- the targets ----------------------------------------------------------------
# Builds and runs target $1; its exit status goes to $out/$1.rc.
run_one() {
    local t=$1 bin=$out/$1 dict=()
    echo 1 > "$out/$t.rc"
    if ! "$cc" "${flags[@]}" -fsanitize=fuzzer -o "$bin" "tests/fuzz/$t.c" "${objs[@]}" -lz -lm \
            > "$out/$t.log" 2>&1; then
        echo "build failed" >> "$out/$t.log"
        return 1
    fi
    mkdir -p "tests/fuzz/corpus/$t"
    [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="tests/fuzz/crashes/$t-" "${dict[@]}" \
        "tests/fuzz/corpus/$t" tests/corpus/bad tests/corpus/good ../shared/fixtures/real \
        >> "$out/$t.log" 2>&1
    echo $? > "$out/$t.rc"
}

report() {
    local t=$1 rc=$2
    if [ "$rc" -eq 0 ]; then
        printf 'fuzz: %-22s ok    %s\n' "$t" \
            "$(grep -E '^stat::number_of_executed_units' "$out/$t.log" | awk '{print $2 " runs"}')"
    else
        printf 'fuzz: %-22s FAIL  (exit %d; log %s)\n' "$t" "$rc" "$out/$t.log"
        grep -E 'ERROR: |^SUMMARY|^fuzz: |Test unit written to|build failed|error:' "$out/$t.log" |
            head -n 12 | sed 's/^/      /'
    fi
}

echo "fuzz: $# target(s), ${secs}s each, $jobs at a time"
failed=()
running=()
start=$(date +%s)
touch "$out/started"
for t in "$@"; do
    if [ ! -f "tests/fuzz/$t.c" ]; then
        echo "fuzz: no target tests/fuzz/$t.c"
        failed+=("$t")
        continue
    fi
    run_one "$t" &
    running+=("$t")
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
done
wait
for t in "${running[@]}"; do
    rc=$(cat "$out/$t.rc")
    report "$t" "$rc"
    [ "$rc" -eq 0 ] || failed+=("$t")
done
echo "fuzz: done in $(($(date +%s) - start))s"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    find tests/fuzz/crashes -type f -newer "$out/started" | sort | sed 's|^|fuzz: reproducer |'
    exit 1
fi
exit 0
