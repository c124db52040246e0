#!/usr/bin/env bash
# Browser test of the web page (CTest label "browser"; see tests/web/CMakeLists.txt).
# Usage: run_browser_test.sh FUNDUS_CLI OUT_DIR
# Builds a small fixture (synthetic images, a briefly trained tiny model, a case store), starts
# `fundus serve` on a free loopback port, runs browser_test.mjs, then stops the server with SIGTERM and
# checks that it shut down cleanly. Exits 77 (CTest: skipped) when chromium, node or playwright-core
# are missing: install them with scripts/install-deps.sh --with-browser.
# FUNDUS_WEB_SCREENSHOTS_TO_DOCS=1 copies the screenshots to docs/images/web-*.png.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cli="$1"
out="$2"
chromium="${FUNDUS_CHROMIUM:-/usr/bin/chromium}"

skip() { echo "SKIPPED: $* (install with scripts/install-deps.sh --with-browser)"; exit 77; }
[ -x "$chromium" ] || skip "chromium not found at $chromium"
command -v node >/dev/null || skip "node not found"
[ -d "$here/node_modules/playwright-core" ] || skip "playwright-core not installed in tests/web/node_modules"
[ -x "$cli" ] || { echo "fundus CLI not found at $cli"; exit 1; }

rm -rf "$out"
mkdir -p "$out"
export FUNDUS_QUIET=1
step() { echo "== $*"; }

# The tiny preset with a ResNet-18: a randomly initialised MobileNetV2 gives every image the same
# descriptor, which would make "the added case comes back first" a matter of tie-breaking.
step "fixture: synthetic images, split, tiny model, store"
"$cli" synth --out "$out/data" --count 30 --size 160 --seed 11 > "$out/fixture.log"
"$cli" synth --out "$out/extra" --count 2 --size 160 --seed 97 >> "$out/fixture.log"
"$cli" dataset split "$out/data/labels.csv" --out "$out/split" --seed 3 >> "$out/fixture.log"
"$cli" train --preset tiny --data "$out/split/manifest.csv" --out "$out/run" --epochs 1 \
  --set train.max_steps_per_epoch=1 --set train.select=train_loss \
  --set model.backbone=resnet18 >> "$out/fixture.log" 2>&1
"$cli" store add --store "$out/cases.db" --data "$out/split/manifest.csv" >> "$out/fixture.log"
checkpoint="$out/run/checkpoints/last.ckpt"
[ -f "$checkpoint" ] || { echo "no checkpoint at $checkpoint"; cat "$out/fixture.log"; exit 1; }

step "start fundus serve"
"$cli" serve --store "$out/cases.db" --model "$checkpoint" --port 0 --workers 8 \
  --access-log "$out/access.log" > "$out/serve.log" 2>&1 &
server=$!
cleanup() { if kill -0 "$server" 2>/dev/null; then kill "$server"; wait "$server" || true; fi; }
trap cleanup EXIT
url=""
for _ in $(seq 1 600); do
  url="$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$out/serve.log" | head -n 1 || true)"
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { echo "fundus serve exited:"; cat "$out/serve.log"; exit 1; }
  sleep 0.2
done
[ -n "$url" ] || { echo "fundus serve did not start:"; cat "$out/serve.log"; exit 1; }
echo "server at $url"

step "browser"
query_image="$(ls "$out"/data/images/*.jpg | head -n 1)"
add_image="$(ls "$out"/extra/images/*.jpg | head -n 1)"
node "$here/browser_test.mjs" "$url" "$out" "$query_image" "$add_image"

step "graceful shutdown on SIGTERM"
kill -TERM "$server"
status=0
wait "$server" || status=$?
trap - EXIT
[ "$status" = 0 ] || { echo "fundus serve exited with $status after SIGTERM"; cat "$out/serve.log"; exit 1; }
grep -q '"path":"/api/query"' "$out/access.log" || { echo "access log lacks the queries"; exit 1; }

if [ "${FUNDUS_WEB_SCREENSHOTS_TO_DOCS:-0}" = 1 ]; then
  cp "$out"/web-*.png "$here/../../docs/images/"
  echo "copied screenshots to docs/images/"
fi
echo "browser test passed; screenshots in $out"
