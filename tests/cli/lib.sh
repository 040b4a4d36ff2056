# Helpers for CLI tests; source it from a t_*.sh script.
#   run CMD...                 runs CMD, keeps stdout in $OUT, stderr in $ERR, status in $RC
#   expect_exit CODE CMD...    runs CMD and fails the test unless it exits with CODE
#   expect_stderr_has TEXT     the last command's stderr contains TEXT
#   expect_stdout_has TEXT     the last command's stdout contains TEXT
#   expect_one_line_error      the last command's stderr is exactly one line "ckptkit: ..."
#   expect_no_file PATH        PATH does not exist
#   expect_no_temp DIR         DIR holds no ckptkit temporary file
#   py ARGS...                 /usr/bin/python3
set -u
PY=/usr/bin/python3
fails=0
note() { printf '%s\n' "$*"; }
bad() { printf 'not ok: %s\n' "$*"; fails=$((fails + 1)); }
run() {
    "$@" > "$T/.out" 2> "$T/.err"
    RC=$?
    OUT=$(cat "$T/.out")
    ERR=$(cat "$T/.err")
}
expect_exit() {
    local code=$1; shift
    run "$@"
    if [ "$RC" -ne "$code" ]; then
        bad "expected exit $code, got $RC: $*"
        printf '  stdout: %s\n  stderr: %s\n' "$(head -c 600 "$T/.out")" "$(head -c 600 "$T/.err")"
    fi
}
expect_stderr_has() {
    case $ERR in *"$1"*) ;; *) bad "stderr lacks '$1': $ERR" ;; esac
}
expect_stdout_has() {
    case $OUT in *"$1"*) ;; *) bad "stdout lacks '$1': $(printf '%s' "$OUT" | head -c 600)" ;; esac
}
expect_one_line_error() {
    local n
    n=$(printf '%s\n' "$ERR" | grep -c .)
    [ "$n" -eq 1 ] || bad "expected one line on stderr, got $n: $ERR"
    case $ERR in "ckptkit: "*) ;; *) bad "stderr does not start with 'ckptkit: ': $ERR" ;; esac
}
expect_no_file() { [ ! -e "$1" ] || bad "file should not exist: $1"; }
expect_no_temp() {
    local left
    left=$(find "$1" -maxdepth 1 -name '.*.ckptkit-*' | head -n 3)
    [ -z "$left" ] || bad "temporary files left behind: $left"
}
py() { "$PY" "$@"; }
finish() {
    if [ "$fails" -ne 0 ]; then
        echo "$fails check(s) failed"
        exit 1
    fi
    exit 0
}
