#!/usr/bin/env bash
# Quickstart 1: install dependencies, build, and run the end-to-end demo on synthetic data.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
"$here/scripts/install-deps.sh"
FUNDUS_TARGET=fundus "$here/scripts/build.sh"
"$here/build/bin/fundus" demo --out "${DEMO_OUT:-$here/demo-out}" "$@"
