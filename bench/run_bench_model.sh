#!/bin/sh
# Speed of the retrieval network, C++ (bench_model) beside the same model in Python (bench_model.py),
# 2 threads each, one table with ratios. Usage: bench/run_bench_model.sh [BUILD_DIR] [ROUNDS]
# Each configuration runs ROUNDS times alternating Python and C++ (default 2) and keeps each side's
# best median, which damps noise from other processes on a shared machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-"$here/../build"}
rounds=${2:-2}
bin="$build/bench/bench_model"
py=${FUNDUS_PYTHON:-/usr/bin/python3}
[ -x "$bin" ] || { echo "missing $bin: cmake --build $build --target bench_model" >&2; exit 1; }
# libgomp reads these at load time; PASSIVE keeps 2 threads from spinning against each other.
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2
out=$(mktemp)
trap 'rm -f "$out"' EXIT
run() {  # model mode iters warmup
  i=0
  while [ "$i" -lt "$rounds" ]; do
    "$py" "$here/bench_model.py" --model "$1" --mode "$2" --iters "$3" --warmup "$4" --threads 2 >>"$out"
    "$bin" --model "$1" --mode "$2" --iters "$3" --warmup "$4" --threads 2 >>"$out"
    "$bin" --model "$1" --mode "$2" --iters "$3" --warmup "$4" --threads 2 --channels-last >>"$out"
    i=$((i + 1))
  done
}
run cpu infer 6 2
run cpu train 5 2
run densenet infer 5 1
run densenet train 4 1
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(date -u +%Y-%m-%d)"
"$py" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
best = {}
for r in rows:
    key = (r["model"], r["mode"], r["side"] + ("+channels_last" if r["channels_last"] else ""))
    best[key] = max(best.get(key, 0), r["img_per_s"])
names = {"cpu": "MobileNetV2+mirror+GeM 224px b16", "densenet": "DenseNet-121+mirror+GeM 256px b8"}
print("| model | mode | Python img/s | C++ img/s | C++ channels-last img/s | C++/Python | C++ CL/Python |")
print("|---|---|---|---|---|---|---|")
for model in ("cpu", "densenet"):
    for mode in ("train", "infer"):
        p, c, cl = (best.get((model, mode, s), float("nan")) for s in ("python", "cpp", "cpp+channels_last"))
        print("| %s | %s | %.2f | %.2f | %.2f | %.2fx | %.2fx |" % (names[model], mode, p, c, cl, c / p, cl / p))
PY
