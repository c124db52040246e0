#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with clang, ASan and UBSan into ${BUILD_DIR:-build-fuzz}
# and runs each for N seconds (default 600), one after another, from the seed corpus.
#   scripts/fuzz.sh [seconds] [fuzz_name ...]     e.g. scripts/fuzz.sh 60 fuzz_image fuzz_store
# Prints per fuzzer: seconds, executions, new corpus inputs and crashes (files in
# build-fuzz/fuzz/artifacts/). Exit status 1 when any fuzzer found a crash.
# JOBS (default 2) limits the build; NICE (default 10) is the niceness of the runs.
# The corpus grows in build-fuzz/fuzz/corpus/<fuzzer>/ and is reused by the next run.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
build="${BUILD_DIR:-$here/build-fuzz}"
seconds="${1:-600}"
shift || true
jobs="${JOBS:-2}"
nice_level="${NICE:-10}"
all=(fuzz_csv fuzz_image fuzz_checkpoint fuzz_index fuzz_store fuzz_api)
if [ "$#" -gt 0 ]; then fuzzers=("$@"); else fuzzers=("${all[@]}"); fi

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 2; }
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DFUNDUS_FUZZ=ON -DFUNDUS_USE_PCH=OFF -DFUNDUS_BUILD_BENCH=OFF
fi
nice -n "$nice_level" cmake --build "$build" -j "$jobs" --target fuzzers

fz="$build/fuzz"
mkdir -p "$fz/artifacts" "$fz/tmp" "$fz/logs"
"$fz/make_seeds" "$fz/corpus" >/dev/null
# Weight files of PyTorch's legacy format and pickle protocol 4 come from Python when it has torch.
py="${FUNDUS_PYTHON:-/usr/bin/python3}"
"$py" - "$fz/corpus/fuzz_checkpoint" <<'PY' 2>/dev/null || echo "fuzz.sh: no Python torch: zip seeds only"
import collections, sys, torch
d = sys.argv[1]
t = collections.OrderedDict([("w", torch.arange(6.).reshape(2, 3)), ("v", torch.arange(6.).reshape(2, 3)[:, 1]),
                             ("n", torch.tensor(3)), ("h", torch.ones(2, dtype=torch.float16))])
torch.save(t, d + "/legacy.pth", _use_new_zipfile_serialization=False)
torch.save(t, d + "/p4.pth", pickle_protocol=4)
torch.save({"model": t, "epoch": 3}, d + "/nested_legacy.pth", _use_new_zipfile_serialization=False)
PY
export TMPDIR="$fz/tmp"
export LSAN_OPTIONS="suppressions=$here/fuzz/lsan_suppressions.txt" UBSAN_OPTIONS=print_stacktrace=1
status=0
printf '%-16s %8s %12s %8s %8s\n' fuzzer seconds executions corpus crashes
for f in "${fuzzers[@]}"; do
  log="$fz/logs/$f.log"
  dict=(); [ -f "$here/fuzz/$f.dict" ] && dict=(-dict="$here/fuzz/$f.dict")
  before=$(ls "$fz/artifacts" | grep -c "^$f-" || true)
  start=$(date +%s)
  # -rss_limit_mb: a reader that allocates gigabytes for a small file is a finding (decompression
  # bombs, absurd sizes). -timeout: one input taking 30 s is a finding too.
  nice -n "$nice_level" "$fz/$f" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2560 \
    -print_final_stats=1 -artifact_prefix="$fz/artifacts/$f-" "${dict[@]}" "$fz/corpus/$f" >"$log" 2>&1 || status=1
  took=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  corpus=$(ls "$fz/corpus/$f" | wc -l)
  after=$(ls "$fz/artifacts" | grep -c "^$f-" || true)
  printf '%-16s %8s %12s %8s %8s\n' "$f" "$took" "${execs:-?}" "$corpus" "$(( after - before ))"
  if [ "$after" -gt "$before" ]; then status=1; grep -m3 -E "ERROR|FINDING|runtime error" "$log" || true; fi
done
exit "$status"
