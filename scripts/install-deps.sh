#!/usr/bin/env bash
# Idempotent installer of everything Fundus Retrieval needs on Debian 12.
# Usage: scripts/install-deps.sh [--with-browser]
#   --with-browser  also installs chromium + playwright-core for the web-page tests.
set -euo pipefail

want_browser=0
for a in "$@"; do
  case "$a" in
    --with-browser) want_browser=1 ;;
    *) echo "install-deps: unknown option $a" >&2; exit 2 ;;
  esac
done

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

pkgs=(build-essential cmake ninja-build pkg-config ccache git
      libtorch-dev libgloo-dev libopenblas0-openmp
      libopencv-dev libjpeg-dev libpng-dev libfaiss-dev libhnswlib-dev libsqlite3-dev
      nlohmann-json3-dev libcli11-dev libcpp-httplib-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      python3 python3-torch python3-torchvision python3-opencv python3-numpy)
if [ "$want_browser" = 1 ]; then
  pkgs+=(chromium)
  # Node.js may come from another source (e.g. nodesource's nodejs bundles npm and conflicts
  # with Debian's npm package): only ask apt for what is really absent.
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "install-deps: all Debian packages present"
fi

# Debian's libtorch ships a PyTorch-style OpenBLAS preference: the openmp variant must win over
# any pthread variant so that BLAS obeys torch::set_num_threads (see docs/stack notes).
if [ -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 ]; then
  $SUDO update-alternatives --set libblas.so.3-x86_64-linux-gnu \
    /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 >/dev/null 2>&1 || true
fi

if [ "$want_browser" = 1 ]; then
  here="$(cd "$(dirname "$0")/.." && pwd)"
  if [ ! -d "$here/tests/web/node_modules/playwright-core" ]; then
    echo "install-deps: npm install playwright-core (tests/web)"
    (cd "$here/tests/web" && npm install --no-audit --no-fund --silent) \
      || echo "install-deps: WARNING npm install failed; the browser test will report SKIPPED" >&2
  fi
fi
