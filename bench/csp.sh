#!/usr/bin/env bash
# CSP intake benchmark (not a test). One pipeline, rum_beacon + csp on one
# port -> blackhole, driven by wrk on loopback in the same run with:
#   1. beacons (bench/beacon.lua, 10 events each) — the baseline;
#   2. Reporting API arrays (testdata/csp/reporting-api/chromium-mixed.json, 4 reports);
#   3. legacy report-uri reports (testdata/csp/report-uri/chromium-enforce-inline.json, 1 report).
# Prints requests/s, events/s, latency, and server CPU per event as a ratio to
# the beacon's (steadier than throughput on a shared machine).
# Usage: bench/csp.sh [DURATION_SECS] [CONNECTIONS]   (SKIP_BUILD=1: the binary already built)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-64}
PORT=3191
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  nice -n 10 cargo build --release --quiet --bin rum-pipeline
fi
BIN=${CARGO_TARGET_DIR:-target}/release/rum-pipeline
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT
cat > "$OUT/pipeline.toml" <<TOML
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:$PORT"
access_log = false
[sources.reports]
type = "csp"
address = "127.0.0.1:$PORT"
access_log = false
[sinks.out]
type = "blackhole"
inputs = ["beacons", "reports"]
TOML
"$BIN" --config "$OUT/pipeline.toml" > /dev/null 2> "$OUT/log" &
pid=$!
up=0
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && { up=1; break; }; sleep 0.05; done
[ "$up" = 1 ] && kill -0 $pid 2>/dev/null || { echo "the server did not start" >&2; cat "$OUT/log" >&2; exit 1; }

run_one() { # name, events per request, path, wrk script, [CSP_BODY CSP_TYPE]
  local name=$1 per=$2 path=$3 script=$4
  export CSP_BODY=${5:-} CSP_TYPE=${6:-}
  wrk -t1 -c"$CONNECTIONS" -d2s -s "$script" "http://127.0.0.1:$PORT$path" > /dev/null
  local cpu0 cpu1 line
  cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  line=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$script" "http://127.0.0.1:$PORT$path" | grep '^RESULT')
  cpu1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  echo "$name $line per=$per cpu_ticks=$((cpu1 - cpu0)) hz=$(getconf CLK_TCK)" >> "$OUT/results"
}
run_one beacon 10 /rum bench/beacon.lua
run_one reporting_api 4 /rum/reporting-api bench/csp.lua \
  testdata/csp/reporting-api/chromium-mixed.json application/reports+json
run_one report_uri 1 /rum/report-uri bench/csp.lua \
  testdata/csp/report-uri/chromium-enforce-inline.json application/csp-report

printf '%-14s %10s %10s %8s %8s %13s %16s\n' target requests/s events/s p50_ms p99_ms cpu_us/event vs_beacon/event
# Requests answered over 399 (refused) are not reports taken in: requests/s,
# events/s and CPU per event count the others, and any refused request or
# socket error fails the run (exit 1) after the table.
awk '
{ name=$1; for (i=2;i<=NF;i++) { split($i, kv, "="); v[kv[1]]=kv[2] }
  taken = v["requests"] - v["non2xx"]
  rps = taken / v["seconds"]; eps = rps * v["per"]
  cpu = taken > 0 ? 1e6 * v["cpu_ticks"] / v["hz"] / (taken * v["per"]) : 0
  if (name == "beacon") base = cpu
  ratio = base > 0 ? cpu / base : 0
  printf "%-14s %10.0f %10.0f %8.2f %8.2f %13.1f %15.2fx\n", name, rps, eps, v["p50_ms"], v["p99_ms"], cpu, ratio
  if (v["non2xx"] + v["socket_errors"] > 0) {
    printf "  (%s: %d answers over 399 and %d socket errors, not counted)\n", name, v["non2xx"], v["socket_errors"]
    failed = 1
  }
}
END { if (failed) { print "error: refused requests or socket errors (see above)" > "/dev/stderr"; exit 1 } }' "$OUT/results"
