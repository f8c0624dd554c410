#!/usr/bin/env bash
# Proxy overhead: the same wrk client straight to one vllm-sim vs through the router in front of
# 4 vllm-sim replicas (zero delays), short prompts, max_tokens 8. Release builds.
# Usage: router/bench/run.sh [DURATION_S] [CONNECTIONS]   (from the repository root)
# Environment: BENCH_SIM_PORT (18001..18004), BENCH_ROUTER_PORT (18000), BENCH_POLICY (power_of_two),
# KEEP_LOGS=1 keeps the sim and router logs.
set -euo pipefail
DURATION=${1:-10}
CONNS=${2:-32}
BASE_PORT=${BENCH_SIM_PORT:-18001}
ROUTER_PORT=${BENCH_ROUTER_PORT:-18000}
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"

cargo build --release -q -p router -p vllm-sim
command -v wrk >/dev/null || { echo "wrk missing: apt-get install -y wrk" >&2; exit 1; }

TMP=$(mktemp -d)
cleanup() {
  kill "$SIM_PID" "$ROUTER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $TMP"; else rm -rf "$TMP"; fi
}
SIM_PID=""; ROUTER_PID=""
trap cleanup EXIT

./target/release/vllm-sim --replicas 4 --port "$BASE_PORT" --log warn \
  --prefill-us-per-token 0 --prefill-ns-per-cached-pair 0 --decode-base-ms 0 --decode-ns-per-kv-token 0 \
  > "$TMP/sim.log" 2>&1 &
SIM_PID=$!

{
  echo "listen: 127.0.0.1:$ROUTER_PORT"
  echo "replicas:"
  for i in 0 1 2 3; do echo "  - url: http://127.0.0.1:$((BASE_PORT + i))"; done
  echo "policy:"
  echo "  name: ${BENCH_POLICY:-power_of_two}"
  echo "logging:"
  echo "  level: warn"
} > "$TMP/router.yaml"
./target/release/router --config "$TMP/router.yaml" > "$TMP/router.log" 2>&1 &
ROUTER_PID=$!

for url in "http://127.0.0.1:$BASE_PORT/health" "http://127.0.0.1:$ROUTER_PORT/readiness"; do
  ok=""
  for _ in $(seq 100); do curl -sf "$url" >/dev/null && { ok=1; break; }; sleep 0.1; done
  [ -n "$ok" ] || { echo "not ready: $url" >&2; cat "$TMP"/*.log >&2; exit 1; }
done

run() { # name url connections
  echo "== $1 (c=$3, ${DURATION}s)"
  wrk -t1 -c"$3" -d"${DURATION}s" --latency -s "$HERE/post.lua" "$2" \
    | grep -E "Requests/sec|50%|99%|Non-2xx|non-2xx|Socket errors"
}

echo "# throughput (closed loop, $CONNS connections)"
run "direct: one vllm-sim" "http://127.0.0.1:$BASE_PORT" "$CONNS"
run "router: 4 vllm-sim, ${BENCH_POLICY:-power_of_two}" "http://127.0.0.1:$ROUTER_PORT" "$CONNS"
echo "# added latency (1 connection, no queueing)"
run "direct: one vllm-sim" "http://127.0.0.1:$BASE_PORT" 1
run "router: 4 vllm-sim, ${BENCH_POLICY:-power_of_two}" "http://127.0.0.1:$ROUTER_PORT" 1
