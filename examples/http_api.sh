#!/bin/sh
# Tutorial 3: the HTTP API of `fundus serve` from a shell script, with curl (docs/api.md).
#
#   examples/http_api.sh FUNDUS CHECKPOINT DATA [WORK_DIR]
#
# FUNDUS is the CLI binary (build/bin/fundus), CHECKPOINT a trained model (tutorial 1 writes one),
# DATA a dataset for the gallery (a folder per grade, a manifest or a labels CSV). The script imports
# the gallery with the CLI, starts the server on a free port, adds two new cases over HTTP, queries
# with one of them, filters by grade, deletes a case and stops the server. Every answer is checked
# with python3; the script exits non-zero at the first surprise (77 = skipped: no curl or python3).
set -eu
[ $# -ge 3 ] || { echo "usage: $0 FUNDUS CHECKPOINT DATA [WORK_DIR]" >&2; exit 2; }
fundus=$1 checkpoint=$2 data=$3 work=${4:-example-http}
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "skipped: $tool is not installed"; exit 77; }
done
rm -rf "$work" && mkdir -p "$work"

# check JSON EXPR: reads a JSON answer on stdin as `j` and fails unless the Python expression holds.
check() {
  python3 -c '
import json, sys
j = json.load(sys.stdin)
if not eval(sys.argv[1]):
    sys.exit("check failed: %s\n%s" % (sys.argv[1], json.dumps(j, indent=1)[:2000]))
' "$1"
}
# field JSON PATH: prints j[PATH...] of the JSON on stdin (e.g. `field results 0 external_id`).
field() {
  python3 -c '
import json, sys
j = json.load(sys.stdin)
for key in sys.argv[1:]:
    j = j[int(key)] if isinstance(j, list) else j[key]
print(j)
' "$@"
}

# 1. The gallery: `fundus store add` validates the dataset and imports it into a new SQLite store.
"$fundus" store add --store "$work/cases.db" --data "$data"

# 2. Photographs of two new patients to add over HTTP (fundus synth writes images/ and labels.csv).
"$fundus" synth --out "$work/new" --count 2 --size 128 --seed 99 --single-eye > /dev/null
first=$(awk -F, 'NR == 2 { print $1 }' "$work/new/labels.csv")
first_grade=$(awk -F, 'NR == 2 { print $2 }' "$work/new/labels.csv")
second=$(awk -F, 'NR == 3 { print $1 }' "$work/new/labels.csv")
second_grade=$(awk -F, 'NR == 3 { print $2 }' "$work/new/labels.csv")

# 3. The server, on a free port (--port 0): its first line names the URL. The model and the store are
#    loaded once; cases without a descriptor for this model are embedded at start-up.
"$fundus" serve --store "$work/cases.db" --model "$checkpoint" --port 0 --no-access-log --threads 2 \
  > "$work/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
url=
for _ in $(seq 1 600); do  # up to a minute on a busy machine
  url=$(sed -n 's|.*listening on \(http://[0-9.:]*\)/.*|\1|p' "$work/serve.log")
  [ -n "$url" ] && break
  kill -0 $server 2>/dev/null || { cat "$work/serve.log"; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { echo "fundus serve did not start"; cat "$work/serve.log"; exit 1; }
echo "server: $url"

# 4. Health: the number of indexed cases is the gallery's.
gallery=$(curl -sf "$url/api/health" | field indexed)
curl -sf "$url/api/health" | check 'j["status"] == "ok" and j["indexed"] > 5'
echo "health: $gallery cases indexed"

# 5. Add the two new cases: multipart fields image, grade and optionally id, patient, eye, meta.
#    The answer (201) is the stored case; it is embedded and indexed before the answer comes back.
curl -sf -F "image=@$work/new/$first" -F grade="$first_grade" -F id=new-1 -F patient=NEW1 -F eye=L \
  -F 'meta={"site":"tutorial"}' "$url/api/cases" > "$work/added1.json"
check "j['external_id'] == 'new-1' and j['grade'] == $first_grade and j['meta'] == {'site': 'tutorial'}" \
  < "$work/added1.json"
curl -sf -F "image=@$work/new/$second" -F grade="$second_grade" -F id=new-2 -F patient=NEW2 "$url/api/cases" \
  > "$work/added2.json"
new2=$(field id < "$work/added2.json")
curl -sf "$url/api/health" | check "j['indexed'] == $gallery + 2"
echo "added: new-1 (grade $first_grade), new-2 (grade $second_grade, store id $new2)"

# 6. Query with the first new photograph: it finds itself first, at similarity 1, then its neighbours;
#    the estimate is the similarity-weighted vote of the results (a summary, not a diagnosis).
curl -sf -F "image=@$work/new/$first" -F k=5 -F attention=false "$url/api/query" > "$work/query.json"
check 'len(j["results"]) == 5 and j["results"][0]["external_id"] == "new-1"' < "$work/query.json"
check 'j["results"][0]["similarity"] > 0.999 and abs(sum(j["estimate"]["votes"]) - 1) < 1e-6' < "$work/query.json"
check 'all(a["similarity"] >= b["similarity"] for a, b in zip(j["results"], j["results"][1:]))' < "$work/query.json"
echo "query: best match $(field results 0 external_id < "$work/query.json"), estimate grade" \
  "$(field estimate grade < "$work/query.json")"

# 7. Filters: only grades 2-4, and none of patient NEW1's cases.
curl -sf -F "image=@$work/new/$first" -F k=5 -F grades=2,3,4 -F exclude_patient=NEW1 -F attention=false \
  "$url/api/query" | check 'all(r["grade"] >= 2 and r["patient"] != "NEW1" for r in j["results"])'

# 8. Errors are JSON with a stable code: an unknown case is 404 unknown_case.
status=$(curl -s -o "$work/error.json" -w '%{http_code}' "$url/api/cases/999999")
[ "$status" = 404 ] || { echo "expected 404, got $status"; exit 1; }
check 'j["error"]["code"] == "unknown_case"' < "$work/error.json"

# 9. Delete new-2 (204): it leaves the store and the index at once.
status=$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$url/api/cases/$new2")
[ "$status" = 204 ] || { echo "expected 204, got $status"; exit 1; }
curl -sf -F "image=@$work/new/$second" -F k=5 -F attention=false "$url/api/query" \
  | check 'all(r["external_id"] != "new-2" for r in j["results"])'
curl -sf "$url/api/health" | check "j['indexed'] == $gallery + 1"

# 10. SIGTERM: in-flight requests finish, the index is saved, the server exits with status 0.
kill -TERM $server
trap - EXIT
wait $server
echo "http_api: all checks passed"
