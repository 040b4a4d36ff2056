#!/usr/bin/env bash
# Installs the Debian packages ckptkit needs to build and test, or says which
# ones are missing.
#   --list               print the package names (for other distributions)
#   --check-or-install   install what is missing when root with apt-get, else
#                        print what is missing and fail
# Build: gcc (or clang), make, zlib1g-dev. Tests: python3-torch, python3-numpy,
# python3-pytest (run with /usr/bin/python3). Fuzzing: clang, libclang-rt-14-dev.
# Lint: cppcheck, clang-tidy, valgrind.
# Web page (make web, make web-test): emscripten, chromium, plus Debian's zlib
# source package unpacked into $WEB_ZLIB (fetched with apt-get source through a
# private deb-src list, so the system's apt sources are left as they are).
set -eu
build_pkgs="make gcc zlib1g-dev"
test_pkgs="python3-torch python3-numpy python3-pytest"
mode=${1:---check-or-install}
if [ "$mode" = "--list" ]; then
    echo "build: $build_pkgs"
    echo "test:  $test_pkgs"
    echo "fuzz:  clang libclang-rt-14-dev"
    echo "lint:  cppcheck clang-tidy valgrind"
    echo "web:   emscripten chromium (+ Debian source package zlib)"
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
# web page: Debian's emscripten and chromium, zlib compiled from Debian's source
WEB_ZLIB=${WEB_ZLIB:-/usr/local/src/ckptkit-web/zlib}
web_missing=""
command -v emcc >/dev/null || web_missing="$web_missing emscripten"
command -v chromium >/dev/null || web_missing="$web_missing chromium"
web_zlib() {
    [ -f "$WEB_ZLIB/inflate.c" ] && return 0
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || {
        echo "ckptkit's web build needs Debian's zlib source in $WEB_ZLIB (run this script as root)"
        return 1
    }
    local t; t=$(mktemp -d)
    mkdir -p "$t/lists/partial" "$t/cache"
    # the machine's own apt sources, turned into source-package entries
    # (deb822 and one-line formats): no mirror is named here
    mkdir -p "$t/parts"
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        if [ -f "$f" ]; then
            sed -e 's/^Types:.*/Types: deb-src/' "$f" > "$t/parts/$(basename "$f")"
        fi
    done
    if [ -f /etc/apt/sources.list ]; then
        sed -n -e 's/^deb \(.*\)/deb-src \1/p' /etc/apt/sources.list > "$t/parts/main.list"
    fi
    local o="-o Dir::Etc::SourceList=/nonexistent -o Dir::Etc::SourceParts=$t/parts"
    o="$o -o Dir::State::Lists=$t/lists -o Dir::Cache=$t/cache -o APT::Sandbox::User=root"
    # shellcheck disable=SC2086
    # from the release itself (its security suite may list a newer source that
    # the mirror does not serve)
    local rel; rel=$(. /etc/os-release && echo "${VERSION_CODENAME:-stable}")
    (cd "$t" && apt-get -qq $o update && apt-get -qq $o source --download-only "zlib/$rel") >/dev/null
    mkdir -p "$WEB_ZLIB"
    tar -xf "$t"/zlib_*.orig.tar.* -C "$WEB_ZLIB" --strip-components=1
    rm -rf "$t"
    [ -f "$WEB_ZLIB/inflate.c" ]
}
if [ -z "$missing" ] && [ -z "$web_missing" ]; then web_zlib; exit $?; fi
missing="$missing$web_missing"
echo "ckptkit needs these Debian packages:$missing"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing
    web_zlib
    exit $?
fi
echo "run as root: apt-get install$missing   (other systems: the equivalent packages)"
exit 1
