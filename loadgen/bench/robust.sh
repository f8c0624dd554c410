#!/usr/bin/env bash
# Issue 11's independent check, on the bench: the matrix's stressors combined, on data and
# replica constants the matrix does not use; power_of_two, prefix_aware and cost per row, each
# on 4 fresh vllm-sim replicas, N requests per cell (default 800):
#   heldout_1x        held-out ShareGPT conversations (those the matrix's 800 requests never
#                     touch: ~458 of 828), 100 req/s, 64 concurrent, 16,000-block replicas
#   heldout_off3x_2x  the same at 200 req/s, 128 concurrent, on replicas whose true constants are
#                     off the router's configured ones as in the matrix's constants_3x row
#                     (prefill 3x, step floor 2x, KV read 2x, +-20% step noise)
#   tenants_off3x     64 tenants' 2000-token system prompts (twice one replica's 4,000 blocks),
#                     Zipf 0.8, 3x-off constants, 70 req/s (TENANT_RATE), 128 concurrent:
#                     overloaded, mean TTFT ~250 ms and p99 ~2 s, as in the issue's report
#   sim_variant       held-out ShareGPT, 100 req/s, 64 concurrent, on another sim constant set:
#                     6,000 KV blocks (cache pressure), max_num_seqs 48, --speedup 0.7, +-30%
#                     time noise
#   vllm_overload     held-out ShareGPT at 48 req/s with no client limit (800 concurrent) on
#                     replicas shaped like router/bench/gpu's real vLLM: 5,120 blocks, prefill 3x,
#                     20 ms decode steps, +-20% noise (their own queues grow and preempt)
# Writes OUT/<row>.csv, OUT/robust.csv and charts as matrix.sh does, and prints the same table.
# Usage (repo root): loadgen/bench/robust.sh [OUT_DIR]
# Environment: as matrix.sh (N, ROWS, BIN, DATA, PORT, POLICIES, ROUTER_CONFIG), SEED (the
# workload seed, default 0), TENANT_RATE.
set -euo pipefail
OUT=${1:-results/robust}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
N=${N:-800}
# shellcheck source=loadgen/bench/matrix_lib.sh
. "$ROOT/loadgen/bench/matrix_lib.sh"

# The held-out conversations: dump the requests the matrix's ShareGPT rows send (same flags,
# seed 0, against one instant sim) and keep every conversation none of them starts with.
HELDOUT=$OUT/heldout.json
if [ ! -s "$HELDOUT" ]; then
  "$BIN/vllm-sim" --port "$PORT" --log warn --zero-delay & SIMS+=($!)
  for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
  "$BIN/loadgen" --base-url "http://127.0.0.1:$PORT" --dataset-path "$DATA" --max-conversations 400 \
    --num-prompts 800 --seed 0 --min-output-len 10 --max-output-len 200 --request-rate inf \
    --disable-progress --dump-requests "$OUT/matrix_requests.jsonl" >"$OUT/dump.txt" 2>&1
  stop_sims
  python3 - "$DATA" "$OUT/matrix_requests.jsonl" "$HELDOUT" <<'PY'
import json, sys
data, dump, out = sys.argv[1:]
used = {json.loads(l)["body"]["messages"][0]["content"] for l in open(dump)}
def first_user(c):
    return next((t["value"] for t in c["conversations"] if t["from"] in ("human", "user")), None)
convs = json.load(open(data))
held = [c for c in convs if first_user(c) not in used]
json.dump(held, open(out, "w"))
print(f"held out: {len(held)} of {len(convs)} conversations ({len(used)} used by the matrix)")
PY
fi
HELD=(--dataset-path "$HELDOUT" --max-conversations 10000)

B16=--num-gpu-blocks\ 16000
OFF="--prefill-us-per-token 99 --prefill-ns-per-cached-pair 11.7 --decode-base-ms 10 --decode-ns-per-kv-token 92 --time-noise 0.2"
run heldout_1x "$B16" "$B16" "${HELD[@]}" --request-rates 100 --max-concurrency 64
run heldout_off3x_2x "$B16 $OFF" "$B16 $OFF" "${HELD[@]}" --request-rates 200 --max-concurrency 128
run tenants_off3x "--num-gpu-blocks 4000 $OFF" "--num-gpu-blocks 4000 $OFF" --dataset-name shared-prefix \
  --gsp-num-groups 64 --gsp-system-prompt-len 2000 --gsp-zipf 0.8 --request-rates "${TENANT_RATE:-70}" --max-concurrency 128
VARIANT="--num-gpu-blocks 6000 --max-num-seqs 48 --speedup 0.7 --time-noise 0.3"
run sim_variant "$VARIANT" "$VARIANT" "${HELD[@]}" --request-rates 100 --max-concurrency 64
# Shaped like 4 vLLM replicas sharing one GPU (router/bench/gpu): a 5,120-block cache, 3x prefill,
# 20 ms decode steps; ~1.4x their capacity with no client-side limit, so the replicas' own queues
# grow and preempt (where a learnt queue constant once read one replica as fast and piled onto it).
VLLM_LIKE="--num-gpu-blocks 5120 --prefill-us-per-token 99 --prefill-ns-per-cached-pair 11.7 --decode-base-ms 20 --decode-ns-per-kv-token 92 --time-noise 0.2"
run vllm_overload "$VLLM_LIKE" "$VLLM_LIKE" "${HELD[@]}" --request-rates 48 --max-concurrency 800
stop_sims

table robust "heldout_1x heldout_off3x_2x tenants_off3x sim_variant vllm_overload" '{}'
