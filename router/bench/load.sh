#!/usr/bin/env bash
# Load: CLIENTS concurrent streaming clients for about SECONDS against 4 vllm-sim replicas (H100
# time model) through the router, then the same at about 4x the replicas' capacity (each replica
# admits a quarter of the sequences). Reports client errors, the router's RSS and open file
# descriptors before / after, in-flight gauges after, and /health latency (p50/p99) sampled
# during each run.
# Usage (repo root): router/bench/load.sh [SECONDS] [CLIENTS]   (BIN=dir of prebuilt binaries)
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../bench/lib.sh"
secs=${1:-60}
clients=${2:-2000}
bench_bins
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
work=$(mktemp -d)
bench_router_yaml "$work/router.yaml" 18800 warn
router_pid=
sim_pid=
cleanup() { kill $router_pid $sim_pid 2>/dev/null || true; }
trap cleanup EXIT

fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 | wc -l; }
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
in_flight() {
  curl -s http://127.0.0.1:18800/metrics |
    awk '/^router_in_flight_requests/ {s += $2} END {print s + 0}'
}
# /health latency percentiles (ms) over samples taken until the file $1 exists.
probe_health() {
  local out=$2
  : > "$out"
  while [[ ! -e $1 ]]; do
    curl -s -o /dev/null -w '%{time_total}\n' http://127.0.0.1:18800/health >> "$out" || true
    sleep 0.05
  done
}
percentiles() {
  sort -n "$1" | awk '{v[NR] = $1 * 1000} END {
    if (NR == 0) { print "no samples"; exit }
    printf "n=%d p50=%.2fms p99=%.2fms max=%.2fms\n", NR, v[int(NR * 0.5) + 1],
      v[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))], v[NR] }'
}

run() {
  local label=$1 max_seqs=$2
  "$BIN/vllm-sim" --replicas 4 --port 18801 --max-num-seqs "$max_seqs" --log warn \
    > "$work/sim-$label.log" 2>&1 & sim_pid=$!
  "$BIN/router" --config "$work/router.yaml" > "$work/router-$label.log" 2>&1 & router_pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18800/readiness > /dev/null && break; sleep 0.1; done
  echo "== $label: $clients streaming clients, replicas admit $max_seqs sequences each"
  echo "before: rss_mb=$(rss $router_pid) fds=$(fds $router_pid)"
  # About 8 requests per client per minute at this output length.
  local n=$((clients * secs * 8 / 60))
  probe_health "$work/done-$label" "$work/health-$label.txt" & local prober=$!
  local peak=0
  : > "$work/rss-$label.txt"
  ( while [[ ! -e $work/done-$label ]]; do printf '%s\n' "$(rss $router_pid)" >> "$work/rss-$label.txt"; sleep 1; done ) &
  "$BIN/loadgen" --base-url http://127.0.0.1:18800 --dataset-name random --random-input-len 256 \
    --random-output-len 64 --num-prompts "$n" --request-rate inf --max-concurrency "$clients" \
    --request-timeout-secs 120 --disable-progress --disable-oracle \
    > "$work/loadgen-$label.txt" 2>&1 || echo "loadgen exited with $?"
  touch "$work/done-$label"
  wait $prober || true
  peak=$(sort -n "$work/rss-$label.txt" | tail -1)
  sleep 1
  echo "after: rss_mb=$(rss $router_pid) peak_rss_mb=$peak fds=$(fds $router_pid) in_flight=$(in_flight)"
  grep -E "Successful requests|Failed requests|failed:|Benchmark duration|Request throughput|Mean TTFT|P99 TTFT" \
    "$work/loadgen-$label.txt" || tail -20 "$work/loadgen-$label.txt"
  echo "/health during the run: $(percentiles "$work/health-$label.txt")"
  # Idle upstream keep-alive connections close after the pool's 90 s idle timeout (reaped on a
  # 90 s tick, so up to 180 s).
  sleep "${IDLE_WAIT:-190}"
  echo "after ${IDLE_WAIT:-190}s idle: rss_mb=$(rss $router_pid) fds=$(fds $router_pid) in_flight=$(in_flight)"
  kill $router_pid $sim_pid 2>/dev/null || true
  wait $router_pid $sim_pid 2>/dev/null || true
}

run nominal 256
run overload 64
echo "logs in $work"
