#!/usr/bin/env bash
# Unequal replicas: three vllm-sim replicas at real speed and one at 0.4x (a slower GPU), W1's
# ShareGPT workload, power_of_two against cost with and without learnt replica speed.
# Usage (repo root): loadgen/bench/heterogeneous.sh [OUT_DIR]
set -euo pipefail
OUT=${1:-results/heterogeneous}
mkdir -p "$OUT"
cargo build --release -q -p vllm-sim -p loadgen
bin=target/release
"$bin/vllm-sim" --replicas 3 --port 18601 --num-gpu-blocks 16000 --log warn & fast=$!
"$bin/vllm-sim" --port 18604 --num-gpu-blocks 16000 --speedup 0.4 --log warn & slow=$!
trap 'kill $fast $slow 2>/dev/null || true' EXIT
sleep 1
printf 'policy:\n  name: cost\n  cost:\n    learn_replica_speed: false\n' > "$OUT/no-learning.yaml"
urls=http://127.0.0.1:18601,http://127.0.0.1:18602,http://127.0.0.1:18603,http://127.0.0.1:18604
common=(sweep --replica-urls "$urls" --request-rates 100 --num-prompts 1000 --max-concurrency 40
  --dataset-path ../shared/data/sharegpt_long_convos.json --max-conversations 400
  --min-output-len 10 --max-output-len 200 --seed 0 --disable-progress
  --output-file "$OUT/results.jsonl")
echo "== power_of_two and cost (learn_replica_speed: true, the default)"
"$bin/loadgen" "${common[@]}" --policies power_of_two,cost --output-csv "$OUT/learning.csv" \
  2>&1 | grep -v '^sweep:'
echo "== cost with learn_replica_speed: false"
"$bin/loadgen" "${common[@]}" --policies cost --router-config "$OUT/no-learning.yaml" \
  --output-csv "$OUT/no-learning.csv" 2>&1 | grep -v '^sweep:'
