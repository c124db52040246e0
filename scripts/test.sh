#!/usr/bin/env bash
# Quickstart 2: install dependencies (including the headless browser for the web-page test),
# build, and run the whole test suite. Used by CI (.ci/run).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/scripts/install-deps.sh" --with-browser
"$here/scripts/build.sh"
cd "$here/build"
ctest --output-on-failure -j "${CTEST_JOBS:-2}" "$@"
