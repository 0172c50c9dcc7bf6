#!/usr/bin/env bash
# Beacon throughput benchmark (not a test). Drives POST /rum on loopback with
# realistic 10-event beacons through wrk, against, in the same run:
#   1. a bare warp server that only reads the body and answers 204 (the ceiling);
#   2. rum_beacon -> blackhole;
#   3. rum_beacon -> stdout (> /dev/null);
#   4. rum_beacon -> prometheus (RUM metrics by service.name and url.domain, an LCP budget);
#   5. any extra pipeline files given as arguments (e.g. pipelines/examples/*.toml
#      rewritten to listen on the bench port).
# Prints beacons/s, events/s, p50/p99 latency, peak RSS, and ratios to the ceiling.
# Usage: bench/run.sh [DURATION_SECS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-64}
PORT=3190
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
cargo build --release --quiet --bin rum-pipeline --example bare_warp
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/rum-pipeline
OUT=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT

pipeline() { # $1 = sink block
  cat <<TOML
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:$PORT"
access_log = false
trusted_proxies = ["127.0.0.1/32"]
$1
TOML
}
pipeline '[sinks.out]
type = "blackhole"
inputs = ["beacons"]' > "$OUT/blackhole.toml"
pipeline '[sinks.out]
type = "stdout"
inputs = ["beacons"]' > "$OUT/stdout.toml"
pipeline '[sinks.out]
type = "prometheus"
inputs = ["beacons"]
dimensions = ["service.name", "url.domain"]
budgets = { LCP = 2500 }' > "$OUT/prometheus.toml"

wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return 0; sleep 0.05; done; return 1; }

run_one() { # name, command...
  local name=$1; shift
  "$@" > /dev/null 2> "$OUT/$name.log" &
  local pid=$!
  wait_port
  # Warm-up, then the measured run.
  wrk -t1 -c"$CONNECTIONS" -d2s -s bench/beacon.lua "http://127.0.0.1:$PORT/rum" > /dev/null
  local line cpu0 cpu1
  cpu0=$(awk '{print $14 + $15}' /proc/$pid/stat)
  line=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/beacon.lua "http://127.0.0.1:$PORT/rum" | grep '^RESULT')
  cpu1=$(awk '{print $14 + $15}' /proc/$pid/stat)
  local hwm
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  kill -TERM $pid; wait $pid 2>/dev/null || true
  echo "$name $line peak_rss_kib=$hwm cpu_ticks=$((cpu1 - cpu0)) hz=$(getconf CLK_TCK)" >> "$OUT/results"
}

run_one bare_warp "$TARGET/release/examples/bare_warp" "127.0.0.1:$PORT"
run_one blackhole "$BIN" --config "$OUT/blackhole.toml"
run_one stdout "$BIN" --config "$OUT/stdout.toml"
run_one prometheus "$BIN" --config "$OUT/prometheus.toml"
for extra in "$@"; do
  [ -f "$extra" ] || continue
  name=$(basename "$extra" .toml)
  sed "s/127.0.0.1:[0-9]*/127.0.0.1:$PORT/; s/0.0.0.0:[0-9]*/127.0.0.1:$PORT/" "$extra" > "$OUT/$name.toml"
  run_one "$name" "$BIN" --config "$OUT/$name.toml"
done

echo
# vs_bare compares throughput; cpu_us/beacon (server CPU time per beacon) is
# steadier on a shared, noisy machine.
printf '%-14s %12s %12s %9s %9s %12s %14s %10s\n' target beacons/s events/s p50_ms p99_ms peak_rss_MiB cpu_us/beacon vs_bare
awk '
{ name=$1; for (i=2;i<=NF;i++) { split($i, kv, "="); v[kv[1]]=kv[2] }
  rps = v["requests"] / v["seconds"]; if (name == "bare_warp") base = rps
  cpu = 1e6 * v["cpu_ticks"] / v["hz"] / v["requests"]
  printf "%-14s %12.0f %12.0f %9.2f %9.2f %12.1f %14.1f %9.0f%%\n", name, rps, rps * 10, v["p50_ms"], v["p99_ms"], v["peak_rss_kib"] / 1024, cpu, 100 * rps / base
  if (v["non2xx_or_errors"] > 0) printf "  (%s: %d non-2xx or socket errors)\n", name, v["non2xx_or_errors"]
}' "$OUT/results"
