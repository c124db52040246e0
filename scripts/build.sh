#!/usr/bin/env bash
# Configures and builds Fundus Retrieval (Release, Ninja, ccache) into ${BUILD_DIR:-build}.
# Extra arguments go to CMake's configure step, e.g. -DTorch_DIR=/opt/libtorch/share/cmake/Torch.
# FUNDUS_TARGET=fundus builds only that target (the demo does not need the tests and benchmarks).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$here/build}"
jobs="${JOBS:-$(nproc)}"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
elif [ "$#" -gt 0 ]; then
  cmake "$build" "$@"
fi
start=$(date +%s)
cmake --build "$build" -j "$jobs" ${FUNDUS_TARGET:+--target "$FUNDUS_TARGET"}
echo "build: done in $(( $(date +%s) - start ))s -> $build/bin/fundus"
