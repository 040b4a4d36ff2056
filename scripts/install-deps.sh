#!/usr/bin/env bash
# Installs the Debian packages ckptkit needs to build and test, or says which
# ones are missing.
#   --list               print the package names (for other distributions)
#   --check-or-install   install what is missing when root with apt-get, else
#                        print what is missing and fail
# Build: gcc (or clang), make, zlib1g-dev. Tests: python3-torch, python3-numpy,
# python3-pytest (run with /usr/bin/python3). Fuzzing: clang, libclang-rt-14-dev.
# Lint: cppcheck, clang-tidy, valgrind.
set -eu
build_pkgs="make gcc zlib1g-dev"
test_pkgs="python3-torch python3-numpy python3-pytest"
mode=${1:---check-or-install}
if [ "$mode" = "--list" ]; then
    echo "build: $build_pkgs"
    echo "test:  $test_pkgs"
    echo "fuzz:  clang libclang-rt-14-dev"
    echo "lint:  cppcheck clang-tidy valgrind"
    exit 0
fi
missing=""
have_header() { printf '#include <zlib.h>\n' | ${CC:-cc} -E - >/dev/null 2>&1; }
have_header || missing="$missing zlib1g-dev"
command -v make >/dev/null || missing="$missing make"
command -v "${CC:-cc}" >/dev/null || missing="$missing gcc"
/usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || missing="$missing python3-torch"
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || missing="$missing python3-numpy"
/usr/bin/python3 -c 'import pytest' >/dev/null 2>&1 || missing="$missing python3-pytest"
# static checks and memcheck (make lint, CI)
command -v cppcheck >/dev/null || missing="$missing cppcheck"
command -v clang-tidy >/dev/null || missing="$missing clang-tidy"
command -v valgrind >/dev/null || missing="$missing valgrind"
[ -z "$missing" ] && exit 0
echo "ckptkit needs these Debian packages:$missing"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
    exit 0
fi
echo "run as root: apt-get install$missing   (other systems: the equivalent packages)"
exit 1
