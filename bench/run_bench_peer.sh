#!/usr/bin/env bash
# fundus against the plain PyTorch peer (bench/peer_pipeline.py) on the same JPEGs, same threads:
# training (cpu-finetune preset: the whole cpu network trains, FTL, batch 20) and embedding (batch
# EMBED_BATCH, default 8 = fundus's default, on both sides), run alternately REPS times,
# plus the network's own forward speed on ready tensors (bench_model), so that
# "embed from JPEG files / forward on tensors" can be read off. Prints one JSON line per run, then
# medians and ratios. Usage:
#   bench/run_bench_peer.sh [BUILD_DIR] [REPS=3] [EPOCHS=1]
# Data: FUNDUS_BENCH_LABELS (default ../shared/data/rahim-dr/labels.csv); weights: FUNDUS_BENCH_WEIGHTS
# (default ../shared/models/mobilenet_v2_imagenet1k.pth), loaded by both sides.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="$(cd "${1:-$here/build}" && pwd)"
reps="${2:-3}"
epochs="${3:-1}"
labels="${FUNDUS_BENCH_LABELS:-$here/../shared/data/rahim-dr/labels.csv}"
weights="${FUNDUS_BENCH_WEIGHTS:-$here/../shared/models/mobilenet_v2_imagenet1k.pth}"
py="${FUNDUS_PYTHON:-/usr/bin/python3}"
embed_batch="${EMBED_BATCH:-8}"
fundus="$build/bin/fundus"
for f in "$fundus" "$build/bench/bench_model" "$labels" "$weights"; do
  [ -e "$f" ] || { echo "run_bench_peer.sh: missing $f" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "run_bench_peer.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
# Both sides: 2 compute threads, passive OpenMP waiting, 2 decode workers.
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=2
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
out="$work/runs.jsonl"
"$fundus" dataset split "$labels" --quick --out "$work/split" >/dev/null
"$fundus" store add --store "$work/pristine.db" --data "$work/split/manifest.csv" --quick >/dev/null

timed() {  # label command...: runs it under /usr/bin/time, appends {"wall_s","peak_rss_mb"} to $work/t
  /usr/bin/time -f '{"wall_s": %e, "peak_rss_kb": %M}' -o "$work/t" "$@"
}
record() {  # side mode result.json rate_key: one line of $out from a run's JSON result and its timing
  "$py" -c 'import json, sys
txt = open(sys.argv[3]).read(); r = json.loads(txt[txt.index("{"):]); t = json.load(open(sys.argv[5]))
r.update(side=sys.argv[1], mode=sys.argv[2], images_per_s=r[sys.argv[4]], rep=int(sys.argv[6]),
         wall_s=t["wall_s"], peak_rss_mb=t["peak_rss_kb"] / 1024)
print(json.dumps(r))' "$1" "$2" "$3" "$4" "$work/t" "$rep" >>"$out"
}
# DenseNet-121 at 256 px (the `paper` network, as bench_model builds it): embedding from files
# against its forward on tensors. Speed does not depend on the weights: one training step of batch 4
# from random initialisation makes the checkpoint. DENSENET=0 skips it.
densenet="${DENSENET:-1}"
if [ "$densenet" = 1 ]; then
  "$fundus" train --preset paper --set model.pretrained= --set sampler.batch_size=4 \
    --set train.stop_after_steps=1 --set train.bn_recalibration_images=0 --epochs 1 --threads 2 \
    --data "$work/split/manifest.csv" --out "$work/dense" >/dev/null 2>&1
fi
embed() {  # checkpoint mode: `fundus embed` of every case into a fresh copy of the store
  cp "$work/pristine.db" "$work/store.db"
  timed "$fundus" embed --model "$1" --store "$work/store.db" --threads 2 \
    --workers 2 --batch "$embed_batch" --json >"$work/e.json" 2>/dev/null
  record fundus "$2" "$work/e.json" images_per_second
}
forward() {  # model mode: bench_model in embed's own settings (the same batch, channels-last as train.channels_last)
  "$build/bench/bench_model" --model "$1" --mode infer --iters 6 --warmup 2 --threads 2 --batch "$embed_batch" --channels-last \
    | "$py" -c 'import json,sys; r=json.loads([l for l in sys.stdin if l.startswith("{")][-1]); r.update(side="fundus", mode=sys.argv[2], rep=int(sys.argv[1]), images_per_s=r["img_per_s"]); print(json.dumps(r))' "$rep" "$2" >>"$out"
}
for rep in $(seq 1 "$reps"); do
  timed "$py" "$here/bench/peer_pipeline.py" train --manifest "$work/split/manifest.csv" --split train \
    --epochs "$epochs" --weights "$weights" --threads 2 --workers 2 >"$work/p.json"
  record pytorch train "$work/p.json" images_per_s
  rm -rf "$work/run"
  timed "$fundus" train --preset cpu-finetune --pretrained "$weights" --epochs "$epochs" --threads 2 \
    --data "$work/split/manifest.csv" --out "$work/run" >/dev/null 2>&1
  record fundus train "$work/run/summary.json" images_per_second
  # How much of the training loop waited for data (the loader should stay ahead of the network).
  "$py" -c 'import json, sys
s = [json.loads(l) for l in open(sys.argv[1]) if "\"kind\":\"step\"" in l]
wait = sum(r["data_wait_ms"] for r in s) / 1e3; busy = sum(r["seconds"] for r in s)
print(json.dumps(dict(side="fundus", mode="train_data_wait", rep=int(sys.argv[2]), share=wait / (wait + busy))))' \
    "$work/run/metrics.jsonl" "$rep" >>"$out"
  timed "$py" "$here/bench/peer_pipeline.py" embed --manifest "$work/split/manifest.csv" --weights "$weights" \
    --threads 2 --workers 2 --batch "$embed_batch" >"$work/p.json"
  record pytorch embed "$work/p.json" images_per_s
  embed "$work/run/checkpoints/last.ckpt" embed
  forward cpu forward
  if [ "$densenet" = 1 ]; then
    embed "$work/dense/checkpoints/last.ckpt" embed_densenet
    forward densenet forward_densenet
  fi
done
cat "$out"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'); $(date -u +%Y-%m-%dT%H:%MZ); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$py" - "$out" "$embed_batch" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(side, mode, key):
    v = [r[key] for r in rows if r["side"] == side and r["mode"] == mode and key in r]
    return statistics.median(v) if v else float("nan")
print(f"{'':8} {'':8} {'img/s':>8} {'wall s':>8} {'peak MB':>8}   (medians of {max(r['rep'] for r in rows)} runs)")
for mode in ("train", "embed"):
    for side in ("pytorch", "fundus"):
        print(f"{mode:8} {side:8} {med(side, mode, 'images_per_s'):8.2f} {med(side, mode, 'wall_s'):8.1f} {med(side, mode, 'peak_rss_mb'):8.0f}")
    print(f"{mode:8} {'ratio':8} {med('fundus', mode, 'images_per_s') / med('pytorch', mode, 'images_per_s'):7.2f}x "
          f"{med('pytorch', mode, 'wall_s') / med('fundus', mode, 'wall_s'):7.2f}x {med('fundus', mode, 'peak_rss_mb') / med('pytorch', mode, 'peak_rss_mb'):7.2f}x"
          "   (fundus/pytorch rate, pytorch/fundus wall, fundus/pytorch memory)")
fwd = med("fundus", "forward", "images_per_s")
print(f"forward on ready tensors (bench_model, batch {sys.argv[2]}, channels-last): {fwd:.2f} img/s; embed from JPEGs takes "
      f"{fwd / med('fundus', 'embed', 'images_per_s'):.2f}x the forward time per image (target <= 1.2)")
print(f"training waited for data {100 * med('fundus', 'train_data_wait', 'share'):.1f}% of its step loop")
fwd = med("fundus", "forward_densenet", "images_per_s")
if fwd == fwd:
    print(f"DenseNet-121 256 px: forward {fwd:.2f} img/s, embed from JPEGs {med('fundus', 'embed_densenet', 'images_per_s'):.2f} img/s "
          f"({med('fundus', 'embed_densenet', 'peak_rss_mb'):.0f} MB peak): {fwd / med('fundus', 'embed_densenet', 'images_per_s'):.2f}x the forward time")
PY
