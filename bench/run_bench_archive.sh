#!/usr/bin/env bash
# A million-case archive end to end (bench_archive), one phase per process so that memory figures
# are clean, then `fundus serve` on the result. Results go to DIR/results.jsonl (one JSON object per
# measurement, each with the load average); docs/bench-index.md and docs/scaling.md discuss them.
#
# Usage: bench/run_bench_archive.sh [DIR] [N] [PHASES]
#   DIR     work folder (default /tmp/fundus-archive; ~20 GB at 1M: store 5, indexes 4 + 4, vectors 4)
#   N       cases (default 1000000)
#   PHASES  any of: store truth hnsw ivfpq engine serve compressed (default: all but compressed)
# Environment: BUILD (build dir), CKPT (a checkpoint with 1024-d descriptors: the store's model is
# then registered from it and the engine/serve phases run; without it they are skipped), IMAGE (a
# fundus photograph to query with), HNSW, IVF (index specs), HNSW_SWEEP, IVF_SWEEP (search-time
# settings, ';'-separated), DATA (manifold|clustered), QUERIES, THREADS, COMPRESSED_N, COMPRESSED.
# Everything runs under `nice` with OMP_WAIT_POLICY=PASSIVE (the machine may be shared); each step
# prints the UTC time and load average first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-/tmp/fundus-archive}
n=${2:-1000000}
phases=${3:-"store truth hnsw ivfpq engine serve"}
build=${BUILD:-"$here/../build"}
bench="$build/bench/bench_archive"
cli="$build/bin/fundus"
hnsw=${HNSW:-"hnsw:M=16,efc=100,ef=64"}
ivf=${IVF:-"ivfpq:nlist=1024,m=64,nprobe=16,rerank=500"}
hnsw_sweep=${HNSW_SWEEP:-"ef=32;ef=64;ef=96;ef=128;ef=256"}
ivf_sweep=${IVF_SWEEP:-"rerank=0;rerank=100;rerank=200;rerank=500;nprobe=32,rerank=200;nprobe=32,rerank=500;nprobe=64,rerank=1000"}
compressed_n=${COMPRESSED_N:-10000000}
compressed=${COMPRESSED:-"ivfpq:nlist=2048,m=64,nprobe=16,vectors=0"}
image=${IMAGE:-}
common=(--dir "$dir" --n "$n" --data "${DATA:-manifold}" --queries "${QUERIES:-500}" --threads "${THREADS:-2}")
export OMP_WAIT_POLICY=PASSIVE FUNDUS_QUIET=1
[ -x "$bench" ] || { echo "missing $bench: cmake --build $build --target bench_archive fundus_cli" >&2; exit 1; }

step() {
  echo "== $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) :: $*" >&2
  nice -n 5 "$bench" "${common[@]}" "$@"
}
has() { [[ " $phases " == *" $1 "* ]]; }

if has store; then step --phase store ${CKPT:+--checkpoint "$CKPT"}; du -b "$dir/archive.db" >&2; fi
if has truth; then step --phase truth; fi
if has hnsw; then
  step --phase build --spec "$hnsw" --name hnsw
  step --phase query --spec "$hnsw" --name hnsw --sweep "$hnsw_sweep"
fi
if has ivfpq; then
  step --phase build --spec "$ivf" --name ivfpq
  step --phase query --spec "$ivf" --name ivfpq --sweep "$ivf_sweep"
fi
if [ -n "${CKPT:-}" ] && [ -n "$image" ]; then
  if has engine; then
    step --phase engine --spec "$hnsw" --name hnsw --checkpoint "$CKPT" --image "$image" --queries 50
    step --phase engine --spec "$ivf" --name ivfpq --checkpoint "$CKPT" --image "$image" --queries 50
  fi
  if has serve; then  # the real server: resident memory once it answers, and a filtered query
    for which in hnsw ivfpq; do
      spec=$hnsw; [ "$which" = ivfpq ] && spec=$ivf
      port=$((18000 + RANDOM % 1000))
      echo "== $(date -u +%FT%TZ) load $(cut -d' ' -f1-3 /proc/loadavg) :: fundus serve ($which)" >&2
      nice -n 5 "$cli" serve --store "$dir/archive.db" --model "$CKPT" --index-spec "$spec" --index "$dir/$which.index" \
        --port "$port" --no-access-log --threads "${THREADS:-2}" >"$dir/serve-$which.log" 2>&1 &
      server=$!
      for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/api/health" >/dev/null && break; sleep 1; done
      rss=$(grep -E 'VmRSS|RssAnon|RssFile' "/proc/$server/status" | tr -s ' ' | tr '\n' ' ')
      # 20 HTTP queries each unfiltered, grade 4 only (1% of cases) and without the patient of the
      # unfiltered top hit: latency through the server (upload, embed, search, answer) and whether
      # every answer has k hits that obey the filter.
      top=$(curl -sf -F image=@"$image" -F k=1 -F attention=false "http://127.0.0.1:$port/api/query" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["results"][0]["patient"])')
      for filter in none grades=4 "exclude_patient=$top"; do
        form=(-F image=@"$image" -F k=10 -F attention=false)
        [ "$filter" != none ] && form+=(-F "$filter")
        for _ in $(seq 20); do
          curl -sf -o "$dir/answer.json" -w '%{time_total}\n' "${form[@]}" "http://127.0.0.1:$port/api/query" >>"$dir/times.txt"
          python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["results"]; f = sys.argv[2]
ok = len(r) == 10 and all(h["grade"] == 4 for h in r) if f == "grades=4" else len(r) == 10
ok = ok and not (f.startswith("exclude") and any(h["patient"] == f.split("=")[1] for h in r))
print(int(ok))' "$dir/answer.json" "$filter" >>"$dir/ok.txt"
        done
        python3 -c 'import json, statistics, sys
t = sorted(1e3 * float(x) for x in open(sys.argv[1])); ok = [int(x) for x in open(sys.argv[2])]
print(json.dumps(dict(phase="serve", index=sys.argv[3], n=int(sys.argv[4]), filter=sys.argv[5], memory=sys.argv[6],
      http_p50_ms=statistics.median(t), http_max_ms=t[-1], answers=len(ok), answers_with_k_valid_hits=sum(ok),
      loadavg=open("/proc/loadavg").read().split()[:3])))' "$dir/times.txt" "$dir/ok.txt" "$which" "$n" "$filter" "$rss" |
          tee -a "$dir/results.jsonl"
        rm -f "$dir/times.txt" "$dir/ok.txt" "$dir/answer.json"
      done
      kill "$server"
      wait "$server" || true
    done
  fi
fi
if has compressed; then
  step --phase compressed --n "$compressed_n" --spec "$compressed" --queries 200 \
    --sweep "${COMPRESSED_SWEEP:-nprobe=8;nprobe=16;nprobe=32;nprobe=64}"
fi
