#!/usr/bin/env bash
# Data-parallel training on one machine: `fundus train --nproc 1` against `--nproc 2` (c10d, Gloo on
# loopback), same configuration and global batch, alternating for ROUNDS rounds; prints medians of
# the step time, throughput, and the communication per step (gradient all-reduce, BatchNorm sync,
# loss all-gather) read from metrics.jsonl. Results: docs/scaling.md.
# Usage: bench/run_bench_distributed.sh [BUILD_DIR] [STEPS] [ROUNDS] [PRESET]
# Data: ../shared/data/rahim-dr (real photographs) when present, else 60 synthetic 512 px images.
# The model is randomly initialised (timing only); the preprocessed-image cache is warmed first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-"$here/../build"}
steps=${2:-8}
rounds=${3:-2}
preset=${4:-cpu}
cli="$build/bin/fundus"
[ -x "$cli" ] || { echo "missing $cli: cmake --build $build --target fundus_cli" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export FUNDUS_QUIET=1

data="$here/../../shared/data/rahim-dr/labels.csv"
if [ ! -f "$data" ]; then
  "$cli" synth --out "$work/data" --count 60 --size 512 --seed 5 >/dev/null
  data="$work/data/labels.csv"
fi
"$cli" dataset split "$data" --out "$work/split" >/dev/null
common=(--preset "$preset" --set model.pretrained= --data "$work/split/manifest.csv" --set train.workers=1
        --set "train.cache_dir=$work/cache" --set train.bn_recalibration_images=0 --epochs 1)
echo "warming the preprocessed-image cache ..." >&2
"$cli" train "${common[@]}" --out "$work/warm" --set train.stop_after_steps=1 >/dev/null

summary() {  # run_dir nproc wall_seconds
  python3 - "$1" "$2" "$3" <<'EOF'
import json, statistics, sys
run, nproc, wall = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
steps = [json.loads(l) for l in open(run + "/metrics.jsonl") if '"kind":"step"' in l]
steps = steps[1:]  # the first step carries one-off allocation costs
med = lambda k: statistics.median(s.get(k, 0.0) for s in steps)
print(f"{nproc}\t{med('seconds'):.3f}\t{med('images_per_s'):.2f}\t{med('allreduce_ms'):.1f}\t"
      f"{med('bn_sync_ms'):.1f}\t{med('gather_ms'):.1f}\t{wall:.1f}")
EOF
}

printf "nproc\tstep_s\timg_per_s\tallreduce_ms\tbn_sync_ms\tgather_ms\twall_s\n"
for r in $(seq 1 "$rounds"); do
  for n in 1 2; do
    start=$(date +%s.%N)
    "$cli" train "${common[@]}" --out "$work/run-$n-$r" --nproc "$n" --set "train.stop_after_steps=$steps" >/dev/null
    end=$(date +%s.%N)
    summary "$work/run-$n-$r" "$n" "$(echo "$end - $start" | bc)"
  done
done
