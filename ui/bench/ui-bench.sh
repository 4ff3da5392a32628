#!/usr/bin/env bash
# `./x bench ui`: the viewer on a store of N exchanges (the dataset `./x bench query` writes and
# keeps). Measures, with the release `tapedeck` binary:
#   - the JSON API: the first page of the list (100 rows, newest first), cold and warm, and the
#     first page under filters (best of RUNS);
#   - the page in the real headless Chromium (chromedriver over WebDriver, plain curl): time to
#     first rows from navigation start, time to apply a filter (submit to the filtered rows
#     shown), and the bytes transferred (Resource Timing: the document, script, style and the
#     API answers it needed for the first rows).
# Usage: ui-bench.sh TAPEDECK DATASET_DIR [RUNS]
set -euo pipefail

tapedeck=$1
dataset=$2
runs=${3:-3}
port=$((20000 + RANDOM % 20000))
driver_port=$((port + 1))
base="http://127.0.0.1:$port"
log=$(mktemp -d)
ui_pid=""
driver_pid=""
cleanup() {
  [ -n "$ui_pid" ] && kill "$ui_pid" 2>/dev/null || true
  [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null || true
  rm -rf "$log"
}
trap cleanup EXIT

say() { printf '%s\n' "$*" >&2; }

"$tapedeck" ui --data "$dataset" --listen "127.0.0.1:$port" --query-timeout 600 \
  --query-memory 8589934592 >"$log/ui.log" 2>&1 &
ui_pid=$!
for _ in $(seq 1 300); do
  curl -fsS "$base/api/info" >/dev/null 2>&1 && break
  kill -0 "$ui_pid" 2>/dev/null || { cat "$log/ui.log" >&2; exit 1; }
  sleep 0.1
done

enc() { jq -rn --arg v "$1" '$v|@uri'; }
# Seconds for one API call, and its size.
timed() {
  curl -fsS -o "$log/body" -w '%{time_total} %{size_download}' "$base$1"
}
best() {
  local path=$1 best="" t
  for _ in $(seq 1 "$runs"); do
    t=$(timed "$path" | cut -d' ' -f1)
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
  done
  echo "$best"
}

cold=$(timed "/api/exchanges?limit=100")
say "API first page (cold, first query of the process): ${cold% *} s, ${cold#* } bytes"
say "API first page (warm, best of $runs): $(best "/api/exchanges?limit=100") s"
for filter in "status >= 500" "path = '/api/v1/resource-07'" \
  "strpos(body_text(response_body), 'needle-error') > 0"; do
  say "API first page, q=$filter (best of $runs): $(best "/api/exchanges?limit=100&q=$(enc "$filter")") s"
done
rows=$(jq '.rows | length' "$log/body")
say "  ($rows rows in the last answer)"

# The page in Chromium.
chromedriver --port="$driver_port" >"$log/driver.log" 2>&1 &
driver_pid=$!
wd="http://127.0.0.1:$driver_port"
for _ in $(seq 1 100); do curl -fsS "$wd/status" >/dev/null 2>&1 && break; sleep 0.1; done
profile="$log/profile"
session=$(curl -fsS -X POST "$wd/session" -H 'content-type: application/json' -d "$(jq -n \
  --arg profile "--user-data-dir=$profile" '{capabilities: {alwaysMatch: {browserName: "chrome",
  "goog:chromeOptions": {binary: "/usr/bin/chromium", args: ["--headless", "--no-sandbox",
  "--disable-gpu", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--no-first-run", "--window-size=1366,900", $profile]}}}}')" |
  jq -r '.value.sessionId')
s="$wd/session/$session"
curl -fsS -X POST "$s/timeouts" -H 'content-type: application/json' \
  -d '{"script": 600000, "pageLoad": 600000}' >/dev/null
script() { # an async script; its value
  curl -fsS -X POST "$s/execute/async" -H 'content-type: application/json' \
    -d "$(jq -n --arg script "$1" '{script: $script, args: []}')" | jq -c '.value'
}
for run in $(seq 1 "$runs"); do
  # A fresh navigation each run (the server's caches stay warm after the first).
  curl -fsS -X POST "$s/url" -H 'content-type: application/json' -d '{"url": "about:blank"}' >/dev/null
  curl -fsS -X POST "$s/url" -H 'content-type: application/json' -d "{\"url\": \"$base/\"}" >/dev/null
  first=$(script '
    const done = arguments[arguments.length - 1];
    const check = () => {
      if (document.querySelectorAll("#rows tr.row").length >= 100) {
        const at = performance.now();
        const entries = [performance.getEntriesByType("navigation")[0], ...performance.getEntriesByType("resource")];
        const bytes = entries.reduce((sum, e) => sum + (e.transferSize || 0), 0);
        const page = entries.filter((e) => !e.name.includes("/api/")).reduce((sum, e) => sum + (e.transferSize || 0), 0);
        done({ first_rows_ms: Math.round(at), transferred: bytes, page_without_api: page, requests: entries.length });
      } else setTimeout(check, 5);
    };
    check();')
  filtered=$(script '
    const done = arguments[arguments.length - 1];
    const before = document.querySelector("#rows tr.row");
    const began = performance.now();
    document.getElementById("filter").value = "status >= 500";
    document.getElementById("filter-form").requestSubmit();
    const check = () => {
      const row = document.querySelector("#rows tr.row");
      const statuses = [...document.querySelectorAll("#rows tr.row")].map((r) => Number(r.cells[6].textContent.replace("+", "")));
      if (row && row !== before && statuses.length && statuses.every((x) => x >= 500))
        done({ filter_ms: Math.round(performance.now() - began), rows: statuses.length, url: location.search });
      else setTimeout(check, 5);
    };
    check();')
  say "page run $run: first rows $first; filter $filtered"
done
curl -fsS -X DELETE "$s" >/dev/null || true
for asset in "" app.js app.css; do
  size=$(curl -fsS -o /dev/null -w '%{size_download}' "$base/$asset")
  say "asset /$asset: $size bytes"
done
