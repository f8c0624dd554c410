#!/usr/bin/env bash
# Cross-checks loadgen's mean TTFT and request throughput against an independent aiohttp client
# on the same router + 4 vllm-sim replicas and the same request list. Fresh processes per run.
# The router's own mean time to first byte (from its /metrics) is printed after each run as a
# server-side reference: each client's mean TTFT should sit a little above it.
# Usage (repo root): pip install aiohttp && loadgen/bench/crosscheck.sh [PAIRS]
# Environment: WORKLOAD="..." replaces the loadgen workload flags (default: the bundled sample);
# BIN=dir of prebuilt binaries.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../bench/lib.sh"
pairs=${1:-2}
read -r -a workload <<< "${WORKLOAD:---num-prompts 800 --request-rate 40 --max-concurrency 32}"
concurrency=32
for ((i = 0; i < ${#workload[@]}; i++)); do
  [ "${workload[i]}" = --max-concurrency ] && concurrency=${workload[i + 1]}
done
bench_bins
bin=$BIN
work=$(mktemp -d)
bench_router_yaml "$work/router.yaml" 18500
start() {
  "$bin/vllm-sim" --replicas 4 --port 18501 --num-gpu-blocks 2048 > "$work/sim.log" 2>&1 & sim=$!
  sleep 1
  "$bin/router" --config "$work/router.yaml" > "$work/router.log" 2>&1 & router=$!
  sleep 2
}
router_ttfb() {
  curl -s http://127.0.0.1:18500/metrics | awk '
    /^router_time_to_first_byte_seconds_sum/ {s += $2}
    /^router_time_to_first_byte_seconds_count/ {c += $2}
    END {if (c > 0) printf "router mean time to first byte (ms): %.2f\n", 1000 * s / c}'
}
stop() { router_ttfb; kill "$router" "$sim"; wait "$router" "$sim" 2>/dev/null || true; }
for _ in $(seq "$pairs"); do
  start
  "$bin/loadgen" --base-url http://127.0.0.1:18500 "${workload[@]}" \
    --seed 1 --dump-requests "$work/requests.jsonl" \
    --output-file "$work/loadgen.jsonl" | grep -iE "mean ttft|request throughput"
  stop
  start
  python3 loadgen/bench/independent_client.py --base-url http://127.0.0.1:18500 \
    --requests "$work/requests.jsonl" --max-concurrency "$concurrency"
  stop
done
echo "results in $work"
