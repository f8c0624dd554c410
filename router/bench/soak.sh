#!/usr/bin/env bash
# Soak: the router (cost policy, byte-mode prefix tree) in front of 4 zero-delay vllm-sim replicas
# under a stream of distinct random prompts, sampling the router's RSS and tree size as it runs.
# Memory must level off once every replica's tree reaches its cap (the replicas' scraped KV
# capacity, here 4,000 blocks x 16 tokens), however long the run.
# Usage (repo root): router/bench/soak.sh [SECONDS] [REQ_PER_S]   (BIN=dir of prebuilt binaries)
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../../bench/lib.sh"
secs=${1:-120}
rate=${2:-200}
bench_bins
bin=$BIN
work=$(mktemp -d)
bench_router_yaml "$work/router.yaml" 18700 warn
"$bin/vllm-sim" --replicas 4 --port 18701 --zero-delay --num-gpu-blocks 4000 --log warn & sim=$!
"$bin/router" --config "$work/router.yaml" > "$work/router.log" 2>&1 & router=$!
trap 'kill $router $sim 2>/dev/null || true' EXIT
sleep 2
"$bin/loadgen" --base-url http://127.0.0.1:18700 --dataset-name random --random-input-len 1000 \
  --random-output-len 8 --num-prompts $((secs * rate)) --request-rate "$rate" --max-concurrency 64 \
  --disable-progress --output-file "$work/soak.jsonl" > "$work/loadgen.txt" 2>&1 & lg=$!
printf '%8s %12s %16s %12s\n' seconds rss_mb tree_units requests
start=$(date +%s)
while kill -0 "$lg" 2>/dev/null; do
  metrics=$(curl -s http://127.0.0.1:18700/metrics)
  rss=$(awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$router/status")
  units=$(awk '/^router_prefix_tree_units/ {s += $2} END {print s + 0}' <<< "$metrics")
  reqs=$(awk '/^router_requests_total/ {s += $2} END {print s + 0}' <<< "$metrics")
  printf '%8d %12s %16s %12s\n' $(($(date +%s) - start)) "$rss" "$units" "$reqs"
  sleep 10
done
grep -E "completed|Request throughput" "$work/loadgen.txt" || true
echo "logs in $work"
