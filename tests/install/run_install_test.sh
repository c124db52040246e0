#!/bin/sh
# find_package test: install the built project into a temporary prefix, then configure, build and run
# a separate consumer project (tests/install/consumer) against it.
# Usage: run_install_test.sh BUILD_DIR WORK_DIR [CXX_COMPILER]
# The consumer is compiled by the project's compiler (a sanitized clang build needs clang's runtimes).
set -eu
build=$1
work=$2
compiler=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work"
mkdir -p "$work"
cmake --install "$build" --prefix "$work/prefix" >"$work/install.log"
generator=""
if command -v ninja >/dev/null 2>&1; then generator="-G Ninja"; fi
# shellcheck disable=SC2086
cmake -S "$here/consumer" -B "$work/build" $generator -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix" ${compiler:+-DCMAKE_CXX_COMPILER="$compiler"} >"$work/configure.log"
cmake --build "$work/build" >"$work/build.log"
out=$("$work/build/consumer" "$work/cases.db")
echo "$out"
[ "$out" = "cases 0, grade 2 is Moderate" ]
