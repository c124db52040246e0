#!/usr/bin/env bash
# Runs the C++ preprocessing benchmark and its Python peer on the same images in one invocation and
# prints a table with the C++/Python throughput ratio. Results go to docs/bench-preprocess.md.
#   bench/run_bench_preprocess.sh [BUILD_DIR] [--data DIR] [--size 256] [--limit 0] [--reps 3]
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$here/build}"
shift || true
args=("$@")
if [[ " ${args[*]-} " != *" --data "* ]]; then args+=(--data "$here/../shared/data/rahim-dr"); fi
bin="$build/bench/bench_preprocess"
[ -x "$bin" ] || { echo "missing $bin (cmake --build $build --target bench_preprocess)" >&2; exit 1; }
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F)"
"$bin" "${args[@]}" | tee -a "$out"
/usr/bin/python3 "$here/bench/bench_preprocess.py" "${args[@]}" | tee -a "$out"
/usr/bin/python3 - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
by = {(r["impl"], r["mode"], r["threads"]): r for r in rows}
print("\n| mode | threads | C++ img/s | Python img/s | wall ratio | C++ CPU ms/img | Python CPU ms/img | CPU ratio |")
print("|---|---|---|---|---|---|---|---|")
for mode, peer in (("cold", "cold"), ("cold-oversample-1.25", "cold"), ("warm", "warm")):
    for t in (1, 2):
        c, p = by.get(("cpp", mode, t)), by.get(("python", peer, t))
        if c and p:
            print(f"| {mode} (reduce {c['reduce']}) | {t} | {c['images_per_s']:.0f} | {p['images_per_s']:.0f} | "
                  f"{c['images_per_s'] / p['images_per_s']:.2f}x | {c['cpu_ms_per_image']:.2f} | {p['cpu_ms_per_image']:.2f} | "
                  f"{p['cpu_ms_per_image'] / c['cpu_ms_per_image']:.2f}x |")
PY
