# Helpers shared by the bench scripts (router/bench, loadgen/bench). Source it:
#   . "$(dirname "${BASH_SOURCE[0]}")/../../bench/lib.sh"
# shellcheck shell=bash

# bench_bins: builds router, vllm-sim and loadgen (release) unless BIN is set, and sets BIN to
# the directory holding them (honours CARGO_TARGET_DIR).
bench_bins() {
  if [[ -z "${BIN:-}" ]]; then
    cargo build --release -q -p router -p vllm-sim -p loadgen
    BIN=${CARGO_TARGET_DIR:-target}/release
  fi
}

# bench_router_yaml FILE PORT [LOG_LEVEL]: writes the bench router config to FILE: listen on
# 127.0.0.1:PORT, the 4 replicas of `vllm-sim --replicas 4 --port $((PORT + 1))` (ports
# PORT+1..PORT+4), policy cost, and `logging.level: LOG_LEVEL` when one is given.
bench_router_yaml() {
  local file=$1 port=$2 level=${3:-} i
  {
    echo "listen: 127.0.0.1:$port"
    echo "replicas:"
    for i in 1 2 3 4; do
      echo "  - url: http://127.0.0.1:$((port + i))"
    done
    printf 'policy:\n  name: cost\n'
    if [[ -n $level ]]; then
      printf 'logging:\n  level: %s\n' "$level"
    fi
  } > "$file"
}
