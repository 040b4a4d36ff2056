#!/usr/bin/env bash
# Runs every tests/cli/t_*.sh with CKPTKIT set to the binary under test and a
# fresh temporary folder in T. Prints one line per script and a total.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin=${1:-$root/build/ckptkit}
case $bin in /*) ;; *) bin=$root/$bin ;; esac
export CKPTKIT=$bin ROOT=$root
export FIXTURES=$root/../shared/fixtures/real
pass=0 fail=0 failed=()
for t in "$here"/t_*.sh; do
    [ -e "$t" ] || continue
    T=$(mktemp -d "${TMPDIR:-/tmp}/ckptkit-cli.XXXXXX")
    export T
    if (cd "$root" && bash "$t") > "$T.log" 2>&1; then
        pass=$((pass + 1))
        echo "ok   $(basename "$t")"
    else
        fail=$((fail + 1))
        failed+=("$(basename "$t")")
        echo "FAIL $(basename "$t")"
        sed 's/^/     /' "$T.log" | tail -n 30
    fi
    rm -rf "$T" "$T.log"
done
echo "cli: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
