#!/usr/bin/env bash
# Zero-delay throughput of one vllm-sim process, non-streaming then streaming.
# Run from the workspace root: sim/bench/run.sh [seconds]   (needs wrk: apt-get install -y wrk)
# Env: PORT (18100), CONNS (64), MAX_TOKENS (16), NICE (unset; e.g. -15 to shield the run from
# other jobs on a shared machine, needs root).
set -euo pipefail
SECS=${1:-10}
PORT=${PORT:-18100}
CONNS=${CONNS:-64}
export MAX_TOKENS=${MAX_TOKENS:-16}
PRIO=()
if [ -n "${NICE:-}" ]; then PRIO=(nice -n "$NICE"); fi
cargo build --release -p vllm-sim
"${PRIO[@]}" ./target/release/vllm-sim --zero-delay --port "$PORT" --log warn &
SIM=$!
trap 'kill $SIM' EXIT
sleep 0.5
for stream in 0 1; do
  echo "== stream=$stream max_tokens=$MAX_TOKENS connections=$CONNS"
  STREAM=$stream "${PRIO[@]}" wrk -t1 -c"$CONNS" -d"${SECS}s" -s sim/bench/completions.lua \
    "http://127.0.0.1:$PORT"
done
