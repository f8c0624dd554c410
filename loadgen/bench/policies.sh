#!/usr/bin/env bash
# Routing-quality benchmarks of issue 6, one run each, policies side by side:
#   W1  ShareGPT conversation prefixes: 1000 requests, 100 req/s Poisson, 40 concurrent,
#       outputs 10-200 tokens, pieces of 400 conversations; replicas of 16,000 KV blocks
#       (256k tokens: one replica cannot hold the ~520k distinct prompt tokens, four can).
#   W3  8 system prompts of 2000 tokens, Zipf(1.2), 64-token distinct questions: 1500 requests,
#       60 req/s, 128 concurrent; replicas of 1,000 blocks (16k tokens: the 8 prompts alone fill
#       one replica, which cannot also hold its running requests).
#   W4  64 system prompts of 2000 tokens (128k tokens = 2x one replica's 64k), Zipf(0.8),
#       distinct questions: 1500 requests, 30 req/s, 64 concurrent.
# Each workload runs power_of_two, prefix_aware and cost through an in-process router in front of
# 4 vllm-sim replicas with the default H100 time model at real speed (--sim-speedup 1); replica
# prefix caches are reset between runs. Then the proxy-overhead benchmark (router/bench/run.sh,
# needs wrk) alternates power_of_two and cost.
# Usage (from the repository root): loadgen/bench/policies.sh [OUT_DIR]
# Environment: SKIP_OVERHEAD=1 skips the overhead runs; ONLY="W1 W4" picks workloads.
set -euo pipefail
OUT=${1:-results/policies}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
cargo build --release -q -p loadgen
LG=./target/release/loadgen
COMMON=(sweep --policies power_of_two,prefix_aware,cost --sim-speedup 1 --seed 0
  --min-output-len 10 --max-output-len 200 --disable-progress)

run() { # name, extra flags...
  local name=$1; shift
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
  echo "== $name"
  "$LG" "${COMMON[@]}" "$@" --output-file "$OUT/$name.jsonl" --output-csv "$OUT/$name.csv" \
    2>&1 | grep -v '^sweep:' | tee "$OUT/$name.txt"
}

run W1 --request-rates 100 --num-prompts 1000 --max-concurrency 40 \
  --dataset-path ../shared/data/sharegpt_long_convos.json --max-conversations 400 \
  --sim-num-gpu-blocks 16000
run W3 --request-rates 60 --num-prompts 1500 --max-concurrency 128 \
  --dataset-name shared-prefix --gsp-num-groups 8 --gsp-system-prompt-len 2000 --gsp-zipf 1.2 \
  --sim-num-gpu-blocks 1000
run W4 --request-rates 30 --num-prompts 1500 --max-concurrency 64 \
  --dataset-name shared-prefix --gsp-num-groups 64 --gsp-system-prompt-len 2000 --gsp-zipf 0.8 \
  --sim-num-gpu-blocks 4000

if [ -z "${SKIP_OVERHEAD:-}" ]; then
  echo "== proxy overhead (router/bench/run.sh 10 32), power_of_two and cost alternating"
  for policy in power_of_two cost power_of_two cost; do
    BENCH_POLICY=$policy router/bench/run.sh 10 32 2>&1 | grep -E "^==|Requests/sec"
  done | tee "$OUT/overhead.txt"
fi
