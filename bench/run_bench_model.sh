#!/bin/sh
# Speed of the retrieval network, C++ (bench_model) beside the same model in Python (bench_model.py),
# 2 threads each, one table with ratios. Usage: bench/run_bench_model.sh [BUILD_DIR] [ROUNDS]
# Each configuration runs ROUNDS times alternating Python and C++ (default 2) and keeps each side's
# best median, which damps noise from other processes on a shared machine.
# Sides: Python as is; Python with the glibc allocator setting our binaries apply themselves
# (fundus::keep_freed_memory: no mmap for big blocks, no trimming); C++ NCHW; C++ channels-last.
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
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295 \
      "$py" "$here/bench_model.py" --model "$1" --mode "$2" --iters "$3" --warmup "$4" --threads 2 \
      --side python+malloc >>"$out"
    "$bin" --model "$1" --mode "$2" --iters "$3" --warmup "$4" --threads 2 >>"$out"
    "$bin" --model "$1" --mode "$2" --iters "$3" --warmup "$4" --threads 2 --channels-last >>"$out"
    i=$((i + 1))
  done
}
run cpu infer 6 2
run cpu train 5 2
run densenet infer 5 1
run densenet train 4 1
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(date -u +%Y-%m-%d); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
best = {}
for r in rows:
    key = (r["model"], r["mode"], r["side"] + ("+channels_last" if r["channels_last"] else ""))
    best[key] = max(best.get(key, 0), r["img_per_s"])
names = {"cpu": "MobileNetV2+mirror+GeM 224px b16", "densenet": "DenseNet-121+mirror+GeM 256px b8"}
print("| model | mode | Python | Python+malloc | C++ | C++ channels-last | C++ / Python | C++ / Python+malloc |")
print("|---|---|---|---|---|---|---|---|")
for model in ("cpu", "densenet"):
    for mode in ("train", "infer"):
        p, pm, c, cl = (best.get((model, mode, s), float("nan")) for s in ("python", "python+malloc", "cpp", "cpp+channels_last"))
        print("| %s | %s | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx |" % (names[model], mode, p, pm, c, cl, c / p, c / pm))
print("(images/s; each image is 3 views through the backbone; best of the rounds per side)")
PY
