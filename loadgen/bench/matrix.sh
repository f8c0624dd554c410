#!/usr/bin/env bash
# The policy matrix of issue 11: power_of_two, prefix_aware and cost, each row on 4 fresh
# vllm-sim replicas (caches reset between policies), N requests per cell (default 500):
#   sharegpt_0.5x / _1x / _2x  ShareGPT multi-turn prefixes (400 long conversations), 50 / 100 /
#                              200 req/s, 32 / 64 / 128 concurrent, replicas of 16,000 KV blocks
#   hot_prompts                8 system prompts of 2000 tokens, Zipf 1.2, 60 req/s, 128 concurrent,
#                              1,000-block replicas (the 8 prompts fill one)
#   tenants                    64 system prompts (2x one replica's 4,000 blocks), Zipf 0.8, 30 req/s
#   slow_replica               sharegpt_1x with the 4th replica at --speedup 0.4 (2.5x slower)
#   constants_3x               sharegpt at 40 req/s, 64 concurrent, every replica's true constants
#                              off the router's configured ones: prefill 3x (99 us/token, 11.7 ns
#                              per cached pair), step floor 2x (10 ms), KV read 2x, +-20% step noise
# Writes OUT/<row>.csv per row, OUT/matrix.csv (all rows, a `row` column first), charts per row
# under OUT/charts/<row>/ (loadgen report), and prints the table with each row's targets for cost:
# mean TTFT lowest or within 3%, p99 within 10% of the lowest, replica hit rate >= 0.95 of the
# oracle where prefix_aware reaches that, max/mean load per replica <= 1.1, where a replica's
# load is its requests over its capacity (its true relative speed: 0.4 for slow_replica's 4th
# replica, 1 elsewhere), so a 2.5x slower replica is fairly sent 2.5x fewer requests. The
# `req m/m` column is the plain max/mean of requests per replica.
# Usage (repo root): loadgen/bench/matrix.sh [OUT_DIR]
# Environment: N (requests per cell), ROWS="sharegpt_1x tenants" (subset), BIN (prebuilt
# loadgen and vllm-sim; skips cargo), DATA (ShareGPT JSON, default ../shared/data/...),
# PORT (first sim port, default 18700), POLICIES (default power_of_two,prefix_aware,cost),
# ROUTER_CONFIG (a router YAML the runs start from, e.g. to change policy.cost settings), SEED
# (the workload seed, default 0). The run and table helpers are in matrix_lib.sh.
set -euo pipefail
OUT=${1:-results/matrix}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-500}
# shellcheck source=loadgen/bench/matrix_lib.sh
. "$ROOT/loadgen/bench/matrix_lib.sh"
SHAREGPT=(--dataset-path "$DATA" --max-conversations 400)

B16=--num-gpu-blocks\ 16000
run sharegpt_0.5x "$B16" "$B16" "${SHAREGPT[@]}" --request-rates 50 --max-concurrency 32
run sharegpt_1x "$B16" "$B16" "${SHAREGPT[@]}" --request-rates 100 --max-concurrency 64
run sharegpt_2x "$B16" "$B16" "${SHAREGPT[@]}" --request-rates 200 --max-concurrency 128
run hot_prompts "--num-gpu-blocks 1000" "--num-gpu-blocks 1000" --dataset-name shared-prefix \
  --gsp-num-groups 8 --gsp-system-prompt-len 2000 --gsp-zipf 1.2 --request-rates 60 --max-concurrency 128
run tenants "--num-gpu-blocks 4000" "--num-gpu-blocks 4000" --dataset-name shared-prefix \
  --gsp-num-groups 64 --gsp-system-prompt-len 2000 --gsp-zipf 0.8 --request-rates 30 --max-concurrency 64
run slow_replica "$B16" "$B16 --speedup 0.4" "${SHAREGPT[@]}" --request-rates 100 --max-concurrency 64
OFF="$B16 --prefill-us-per-token 99 --prefill-ns-per-cached-pair 11.7 --decode-base-ms 10 --decode-ns-per-kv-token 92 --time-noise 0.2"
run constants_3x "$OFF" "$OFF" "${SHAREGPT[@]}" --request-rates 40 --max-concurrency 64
stop_sims

table matrix "sharegpt_0.5x sharegpt_1x sharegpt_2x hot_prompts tenants slow_replica constants_3x" \
  '{"slow_replica": [1.0, 1.0, 1.0, 0.4]}'
