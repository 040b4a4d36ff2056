#!/usr/bin/env bash
# scripts/lint.sh -- the static checks (`make lint`), and memcheck on request.
#
#   scripts/lint.sh              house rules (grep), cppcheck, clang-tidy
#   scripts/lint.sh --valgrind   also valgrind memcheck over a few CLI runs
#                                (needs build/ckptkit: run `make` first)
#   scripts/lint.sh --only-valgrind
#
# Debian packages: cppcheck, clang-tidy (clang-tidy-14 or later), and valgrind
# for --valgrind; /usr/bin/python3 writes the valgrind inputs. Missing tools
# are named and the script fails (it does not skip silently).
#
# 1. House rules that a grep can check, on src/ with comments stripped: no
#    allocation outside src/common/alloc.c except through cki_malloc & co
#    (every allocation counts against CK_LIMIT_MEMORY), and the library never
#    prints and never exits.
# 2. cppcheck --enable=warning,portability,performance over src and tools.
# 3. clang-tidy with the checks in .clang-tidy over every .c of src and tools,
#    two files at a time; scripts/lint-analyzer.h is force-included so the
#    analyzer knows what cki_fail returns (see that file).
#    Findings already reported to the owner of a file are listed in
#    scripts/lint-known.txt (file, check, message; no line numbers) and are
#    counted, not failed; any other finding fails.
# Exit status: 0 clean, 1 findings, 2 a tool is missing.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
want_vg=0 want_static=1
for a in "$@"; do
    case $a in
    --valgrind) want_vg=1 ;;
    --only-valgrind) want_vg=1 want_static=0 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "lint.sh: unknown option $a" >&2; exit 2 ;;
    esac
done

missing=""
need() { command -v "$1" > /dev/null 2>&1 || missing="$missing $2"; }
if [ "$want_static" = 1 ]; then
    need cppcheck cppcheck
    need clang-tidy clang-tidy
fi
[ "$want_vg" = 1 ] && need valgrind valgrind
if [ -n "$missing" ]; then
    echo "lint.sh: missing tools; install the Debian packages:$missing" >&2
    echo "         (apt-get install$missing)" >&2
    exit 2
fi

fail=0
section() { printf '== %s\n' "$*"; }

if [ "$want_static" = 1 ]; then
    # ---- 1. house rules ---------------------------------------------------------
    section "house rules (grep)"
    mapfile -t lib_src < <(find src -name '*.c' -o -name '*.h' | sort)
    strip_comments() {
        awk '{ l = $0; sub(/\/\*.*/, "", l); sub(/\/\/.*/, "", l);
               if (l ~ /^[ \t]*\*/) l = ""; print FILENAME ":" FNR ": " l }' "$@"
    }
    alloc_fns='malloc|calloc|realloc|free|strdup|strndup|aligned_alloc|posix_memalign'
    print_fns='printf|fprintf|vfprintf|puts|fputs|putchar|perror|exit|_exit|abort|assert'
    raw_alloc=$(strip_comments "${lib_src[@]}" | grep -v '^src/common/alloc.c:' |
        grep -E "(^|[^_A-Za-z0-9.>])($alloc_fns)[ ]*\\(")
    if [ -n "$raw_alloc" ]; then
        echo "allocation outside cki_malloc (not counted against CK_LIMIT_MEMORY):"
        echo "$raw_alloc"
        fail=1
    fi
    prints=$(strip_comments "${lib_src[@]}" |
        grep -E "(^|[^_A-Za-z0-9.>])($print_fns)[ ]*\\(")
    if [ -n "$prints" ]; then
        echo "the library prints, exits or asserts:"
        echo "$prints"
        fail=1
    fi
    [ -z "$raw_alloc$prints" ] && echo "ok"

    # ---- 2. cppcheck --------------------------------------------------------------
    section "cppcheck $(cppcheck --version | awk '{print $2}')"
    if cppcheck -q -j2 --enable=warning,portability,performance --error-exitcode=1 --inline-suppr \
        --std=c11 -D_GNU_SOURCE -Iinclude -Isrc src tools; then
        echo "ok"
    else
        fail=1
    fi

    # ---- 3. clang-tidy ---------------------------------------------------------------
    section "clang-tidy $(clang-tidy --version | sed -n 's/.*version \([0-9.]*\).*/\1/p' | head -1)"
    out=$(mktemp)
    trap 'rm -f "$out"' EXIT
    find src tools -name '*.c' | sort | xargs -P2 -I{} sh -c '
        f=$1
        inc="-include scripts/lint-analyzer.h"
        [ "$f" = src/common/error.c ] && inc=""
        clang-tidy --quiet "$f" -- -std=c11 -D_GNU_SOURCE -Iinclude -Isrc $inc 2> /dev/null
    ' _ {} > "$out"
    # one key per finding: FILE<TAB>CHECK<TAB>MESSAGE (paths made relative, no line numbers)
    findings=$(grep -E '^[^ ]+:[0-9]+:[0-9]+: (warning|error): .* \[[a-zA-Z0-9.,-]+\]$' "$out" |
        while IFS= read -r line; do
            file=${line%%:*}
            file=$(realpath -m --relative-to="$root" "$file")
            rest=${line#*: }
            rest=${rest#*: }
            check=${rest##* [}
            check=${check%]}
            msg=${rest% \[*}
            msg=${msg#warning: }
            msg=${msg#error: }
            printf '%s\t%s\t%s\t%s\n' "$file" "$check" "$msg" "$(echo "$line" | cut -d: -f2)"
        done | sort -u)
    known=0 new=0
    while IFS=$'\t' read -r file check msg lineno; do
        [ -n "$file" ] || continue
        if grep -qxF "$(printf '%s\t%s\t%s' "$file" "$check" "$msg")" scripts/lint-known.txt; then
            known=$((known + 1))
        else
            new=$((new + 1))
            printf '%s:%s: %s [%s]\n' "$file" "$lineno" "$msg" "$check"
        fi
    done <<< "$findings"
    stale=$(grep -v '^#' scripts/lint-known.txt | grep -vxF -f <(cut -f1-3 <<< "$findings") || true)
    if [ -n "$stale" ]; then
        echo "no longer found (remove from scripts/lint-known.txt):"
        printf '%s\n' "$stale" | cut -f1,2 | sed 's/^/  /'
    fi
    if [ "$new" -gt 0 ]; then
        echo "$new new finding(s) (full notes: rerun clang-tidy on the file)"
        fail=1
    else
        echo "ok ($known known finding(s) listed in scripts/lint-known.txt)"
    fi
fi

# ---- 4. valgrind memcheck over CLI runs ---------------------------------------------
if [ "$want_vg" = 1 ]; then
    section "valgrind memcheck"
    bin=${CKPTKIT:-build/ckptkit}
    if [ ! -x "$bin" ]; then
        echo "no $bin: run make first"
        exit 2
    fi
    t=$(mktemp -d)
    trap 'rm -rf "$t"; rm -f "${out:-}"' EXIT
    /usr/bin/python3 - "$t/in.safetensors" <<'EOF'
import json, struct, sys
import numpy as np
ts = {"w": np.arange(48, dtype="<f4").reshape(6, 8), "b": np.linspace(-1, 1, 8).astype("<f2"),
      "n": np.arange(5, dtype="<i8")}
hdr, data = {"__metadata__": {"k": "v"}}, b""
for k, a in ts.items():
    raw = a.tobytes()
    hdr[k] = {"dtype": {"float32": "F32", "float16": "F16", "int64": "I64"}[str(a.dtype)],
              "shape": list(a.shape), "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
h = json.dumps(hdr).encode()
h += b" " * ((8 - len(h) % 8) % 8)
open(sys.argv[1], "wb").write(struct.pack("<Q", len(h)) + h + data)
EOF
    vg() {
        local expect=$1
        shift
        valgrind -q --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect \
            --show-leak-kinds=definite,indirect "$bin" "$@" > /dev/null 2> "$t/vg.err"
        local rc=$?
        if [ "$rc" -eq 99 ] || grep -q '^==[0-9]*== ' "$t/vg.err"; then
            echo "memcheck: ckptkit $*"
            grep '^==' "$t/vg.err" | head -40
            fail=1
        elif [ "$rc" -ne "$expect" ]; then
            echo "exit $rc (expected $expect): ckptkit $*"
            head -5 "$t/vg.err"
            fail=1
        fi
    }
    vg 0 info "$t/in.safetensors"
    vg 0 ls --json "$t/in.safetensors"
    vg 0 convert "$t/in.safetensors" "$t/a.pth"
    vg 0 convert "$t/a.pth" "$t/b.safetensors" --dtype f16
    vg 0 convert "$t/in.safetensors" "$t/c.ckpt" --dtype bf16
    vg 0 verify "$t/in.safetensors" "$t/a.pth"
    vg 1 verify "$t/in.safetensors" "$t/b.safetensors"
    vg 1 convert "$t/in.safetensors" "$t/a.pth"
    CKPTKIT_FAULT=write:1 vg 1 convert "$t/in.safetensors" "$t/d.safetensors"
    CKPTKIT_FAULT=alloc:20 vg 1 convert "$t/in.safetensors" "$t/d.safetensors"
    fx=../shared/fixtures/real
    for f in "$fx"/safetensors/*.safetensors "$fx"/pytorch-zip/* "$fx"/pytorch-legacy/* \
        "$fx"/lightning-ckpt/*; do
        [ -f "$f" ] || continue
        [ "$(stat -c %s "$f")" -le 20000000 ] || continue
        valgrind -q --error-exitcode=99 --leak-check=full \
            --errors-for-leak-kinds=definite,indirect \
            "$bin" info "$f" > /dev/null 2> "$t/vg.err"
        if [ $? -eq 99 ] || grep -q '^==[0-9]*== ' "$t/vg.err"; then
            echo "memcheck: ckptkit info $f"
            grep '^==' "$t/vg.err" | head -40
            fail=1
        fi
    done
    [ "$fail" = 0 ] && echo "ok"
fi

exit "$fail"
