#!/usr/bin/env bash
# Peak memory of one binary under overload with big beacons (not a test).
# `rum_beacon -> stdout` with stdout into a pipe nobody reads (the sink
# stalls), wrk posting beacons of BEACON_REPEAT x 10 events (default 30:
# ~45 KB) on CONNECTIONS connections for SECONDS; /proc/PID/status is sampled
# every 20 ms. Prints peak VmRSS / RssAnon and wrk's RESULT line (nearly
# every answer is a 503). Run two binaries in turns to compare them: the
# figures move a few MiB between starts. Loopback only.
#   bench/overload_memory.sh BINARY [CONNECTIONS] [SECONDS]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: bench/overload_memory.sh BINARY [CONNECTIONS] [SECONDS]" >&2; exit 2; }
BIN=$(realpath "$1"); CONNECTIONS=${2:-320}; SECONDS_=${3:-8}
PORT=${PORT:-3197}
export BEACON_REPEAT=${BEACON_REPEAT:-30}
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then echo "port $PORT is in use" >&2; exit 1; fi
DIR=$(mktemp -d)
cat > "$DIR/stalled.toml" <<TOML
stats_interval_secs = 0
shutdown_timeout_secs = 1
[http]
max_connections = $((CONNECTIONS + 100))
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:$PORT"
access_log = false
trusted_proxies = ["127.0.0.1/32"]
max_events_per_beacon = 500
[sinks.out]
type = "stdout"
inputs = ["beacons"]
TOML
mkfifo "$DIR/stalled"
exec 7<>"$DIR/stalled"   # held open, never read: the stdout sink stalls
"$BIN" --config "$DIR/stalled.toml" > "$DIR/stalled" 2> "$DIR/server.log" &
PID=$!
trap 'kill -9 $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$DIR"' EXIT
up=0
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && { up=1; break; }; sleep 0.1; done
[ "$up" = 1 ] && kill -0 $PID 2>/dev/null || { echo "the server did not start" >&2; cat "$DIR/server.log" >&2; exit 1; }
wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_}s" -s bench/beacon.lua "http://127.0.0.1:$PORT/rum" > "$DIR/wrk.out" 2>&1 &
WRK=$!
peak_rss=0; peak_anon=0
while kill -0 $WRK 2>/dev/null; do
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$PID/status 2>/dev/null || echo 0)
  anon=$(awk '/^RssAnon/ {print $2}' /proc/$PID/status 2>/dev/null || echo 0)
  [ "${rss:-0}" -gt "$peak_rss" ] && peak_rss=$rss
  [ "${anon:-0}" -gt "$peak_anon" ] && peak_anon=$anon
  sleep 0.02
done
# A server that died under the load (out of memory) would leave a peak that means nothing.
kill -0 $PID 2>/dev/null || { echo "the server exited during the run" >&2; cat "$DIR/server.log" >&2; exit 1; }
echo "connections=$CONNECTIONS beacon_repeat=$BEACON_REPEAT peak_rss_MiB=$((peak_rss / 1024)) peak_anon_MiB=$((peak_anon / 1024)) $(grep RESULT "$DIR/wrk.out" || echo 'RESULT missing')"
