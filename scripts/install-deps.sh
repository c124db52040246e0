#!/usr/bin/env bash
# Idempotent installer of everything Fundus Retrieval needs on Debian 12.
# Usage: scripts/install-deps.sh [--with-browser]
#   --with-browser  also installs what the tests need: chromium + playwright-core for the web-page
#                   tests, clang-format for the format check.
# Prints one line per phase; apt's and npm's full output goes to build/install-deps.log
# (or $FUNDUS_INSTALL_LOG), whose last lines are shown when a phase fails.
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
here="$(cd "$(dirname "$0")/.." && pwd)"

# One line per phase on the terminal; apt's and npm's full output goes to the log.
log="${FUNDUS_INSTALL_LOG:-$here/build/install-deps.log}"
mkdir -p "$(dirname "$log")"
: >"$log"
# phase "what" command...: runs the command with its output in the log; on failure shows the log's tail.
phase() {
  local what="$1" start status=0
  shift
  start=$(date +%s)
  printf 'install-deps: %s ...' "$what"
  echo "=== $what: $*" >>"$log"
  "$@" >>"$log" 2>&1 || status=$?
  if [ "$status" = 0 ]; then
    echo " done ($(( $(date +%s) - start )) s)"
  else
    echo " FAILED (exit $status)"
    echo "install-deps: last lines of $log:" >&2
    tail -n 30 "$log" >&2
  fi
  return "$status"
}

pkgs=(build-essential cmake ninja-build pkg-config ccache git ca-certificates
      libtorch-dev libgloo-dev libopenblas0-openmp
      libopencv-dev libjpeg-dev libpng-dev libfaiss-dev libhnswlib-dev libsqlite3-dev
      nlohmann-json3-dev libcli11-dev libcpp-httplib-dev libcurl4-openssl-dev
      libgtest-dev libgmock-dev libbenchmark-dev
      python3 python3-torch python3-torchvision python3-opencv python3-numpy)
if [ "$want_browser" = 1 ]; then
  # What the test suite needs beyond the build: the browser for the web page, clang-format for
  # the format check (the `format` ctest).
  pkgs+=(chromium clang-format)
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
  echo "install-deps: ${#missing[@]} Debian packages missing: ${missing[*]} (full log: $log)"
  apt=($SUDO env DEBIAN_FRONTEND=noninteractive apt-get -y --no-install-recommends)
  phase "apt-get update" "${apt[@]}" update || exit 1
  # Their dependencies come along: count what apt will really fetch and unpack.
  n=$(apt-get -s --no-install-recommends install "${missing[@]}" 2>/dev/null | grep -c '^Inst ' || true)
  phase "downloading $n packages" "${apt[@]}" install --download-only "${missing[@]}" || exit 1
  phase "installing $n packages" "${apt[@]}" install "${missing[@]}" || exit 1
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
  if [ ! -d "$here/tests/web/node_modules/playwright-core" ]; then
    (cd "$here/tests/web" && phase "npm install playwright-core (tests/web)" npm install --no-audit --no-fund) \
      || echo "install-deps: WARNING npm install failed; the browser test will report SKIPPED" >&2
  fi
fi
