#!/usr/bin/env bash
# Builds everything with clang + AddressSanitizer + UndefinedBehaviorSanitizer into
# ${BUILD_DIR:-build-asan} and runs the unit tests there (ctest arguments pass through, e.g.
#   scripts/sanitize.sh -R 'CaseStore|Server'   or   scripts/sanitize.sh -L fast).
# LibTorch, OpenCV and FAISS are not instrumented: reports inside them alone are not ours, but our
# code's reads and writes of their memory are checked. Leak suppressions: fuzz/lsan_suppressions.txt.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$here/build-asan}"
jobs="${JOBS:-2}"
command -v clang++ >/dev/null || { echo "sanitize.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_C_COMPILER=clang -DFUNDUS_SANITIZE=ON -DFUNDUS_BUILD_BENCH=OFF
fi
nice -n "${NICE:-10}" cmake --build "$build" -j "$jobs"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_stack_use_after_return=0:check_initialization_order=1:strict_init_order=0}"
export LSAN_OPTIONS="suppressions=$here/fuzz/lsan_suppressions.txt${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1"
cd "$build" && ctest --output-on-failure -j "$jobs" "$@"
