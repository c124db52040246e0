#!/usr/bin/env bash
# Load test of `fundus serve` from a second process on loopback (bench_serve), for a `cpu`-preset
# model (MobileNetV2 + mirror attention, 224 px; randomly initialised weights: fine for timing).
# Usage: bench/run_bench_serve.sh [BUILD_DIR] [SECONDS_PER_RUN] [ROUNDS]
# For each server configuration (replicas x compute threads) it measures 1 client, 2 clients, and
# 2 clients while a writer adds and deletes cases; every run must have zero failed requests and a
# consistent store (cases == index size == expected). The configurations alternate for ROUNDS rounds
# (default 2) and the table reports medians, which damps noise from other processes on a shared box.
# Results: docs/bench-serve.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-"$here/../build"}
seconds=${2:-20}
rounds=${3:-2}
cli="$build/bin/fundus"
bench="$build/bench/bench_serve"
for b in "$cli" "$bench"; do
  [ -x "$b" ] || { echo "missing $b: cmake --build $build --target fundus_cli bench_serve" >&2; exit 1; }
done
work=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then kill "$server"; wait "$server" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
export FUNDUS_QUIET=1

echo "fixture: 60 synthetic 512 px images, cpu-preset model (1 training step from random weights)" >&2
"$cli" synth --out "$work/data" --count 60 --size 512 --seed 5 >/dev/null
"$cli" synth --out "$work/queries" --count 16 --size 512 --seed 6 >/dev/null
"$cli" dataset split "$work/data/labels.csv" --out "$work/split" >/dev/null
"$cli" train --preset cpu --set model.pretrained= --data "$work/split/manifest.csv" --out "$work/run" --epochs 1 \
  --set train.max_steps_per_epoch=1 --set train.select=train_loss >/dev/null 2>&1
"$cli" store add --store "$work/base.db" --data "$work/split/manifest.csv" >/dev/null

serve() {  # label replicas threads [noattn]: runs the loads against a fresh copy of the store
  local label=$1 replicas=$2 threads=$3 noattn=${4:-}
  rm -f "$work"/cases.db*
  cp "$work/base.db" "$work/cases.db"
  "$cli" serve --store "$work/cases.db" --model "$work/run/checkpoints/last.ckpt" --port 0 --workers 8 \
    --replicas "$replicas" --threads "$threads" --no-access-log >"$work/serve.log" 2>&1 &
  server=$!
  local url=""
  for _ in $(seq 1 900); do
    url=$(grep -o 'http://127\.0\.0\.1:[0-9]*' "$work/serve.log" | head -n 1 || true)
    [ -n "$url" ] && break
    sleep 0.2
  done
  [ -n "$url" ] || { cat "$work/serve.log"; exit 1; }
  if [ -n "$noattn" ]; then  # the cost of the attention map (a second forward pass per query)
    "$bench" --url "$url" --images "$work/queries/images" --clients 1 --seconds "$seconds" --attention 0 \
      --label "$label-no-attention"
  fi
  "$bench" --url "$url" --images "$work/queries/images" --clients 1 --seconds "$seconds" --label "$label"
  "$bench" --url "$url" --images "$work/queries/images" --clients 2 --seconds "$seconds" --label "$label"
  "$bench" --url "$url" --images "$work/queries/images" --clients 2 --writers 1 --seconds "$seconds" --label "$label"
  kill -TERM "$server"
  wait "$server"
  server=""
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for _ in $(seq 1 "$rounds"); do
  serve "replicas1-threads2" 1 2 noattn
  serve "replicas2-threads1" 2 1
  serve "replicas2-threads2" 2 2
done | tee "$work/runs.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Medians over the rounds, as a Markdown table.
cat >"$work/table.py" <<'PY'
import json, statistics, sys
runs = {}
for line in sys.stdin:
    r = json.loads(line)
    runs.setdefault((r["label"], r["clients"], r["writers"]), []).append(r)
print("| server | clients | writer | queries/s | p50 ms | p99 ms | failed requests | store consistent | load1 |")
print("|---|---|---|---|---|---|---|---|---|")
for (label, clients, writers), rs in runs.items():
    def med(key):
        return statistics.median(x[key] for x in rs)
    print("| %s | %d | %s | %.2f | %.0f | %.0f | %d | %s | %.1f |" % (
        label, clients, "yes" if writers else "no", med("qps"), med("p50_ms"), med("p99_ms"),
        sum(x["failures"] for x in rs), "yes" if all(x["consistent"] for x in rs) else "NO", med("load1")))
PY
grep '^{' "$work/runs.txt" | python3 "$work/table.py"
