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
# ROUTER_CONFIG (a router YAML the runs start from, e.g. to change policy.cost settings).
set -euo pipefail
OUT=${1:-results/matrix}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
N=${N:-500}
DATA=${DATA:-../shared/data/sharegpt_long_convos.json}
PORT=${PORT:-18700}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p loadgen -p vllm-sim
  BIN=target/release
fi
mkdir -p "$OUT/charts"
SIMS=()
stop_sims() { for p in "${SIMS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; SIMS=(); }
trap stop_sims EXIT

# start_sims "flags for replicas 1-3" "flags for replica 4"
start_sims() {
  stop_sims
  for i in 0 1 2 3; do
    local flags=$1
    [ "$i" = 3 ] && flags=$2
    # shellcheck disable=SC2086
    "$BIN/vllm-sim" --port $((PORT + i)) --log warn --seed $((i + 1)) $flags & SIMS+=($!)
  done
  for i in 0 1 2 3; do
    for _ in $(seq 100); do
      (echo >"/dev/tcp/127.0.0.1/$((PORT + i))") 2>/dev/null && break
      sleep 0.1
    done
  done
}

URLS=$(for i in 0 1 2 3; do printf 'http://127.0.0.1:%d,' $((PORT + i)); done)
URLS=${URLS%,}
SHAREGPT=(--dataset-path "$DATA" --max-conversations 400)
run() { # row, sim flags (1-3), sim flags (4), loadgen flags...
  local row=$1 fast=$2 last=$3; shift 3
  if [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $row "* ]]; then return; fi
  echo "== $row"
  start_sims "$fast" "$last"
  rm -f "$OUT/$row.csv" "$OUT/$row.jsonl"
  "$BIN/loadgen" sweep --policies "${POLICIES:-power_of_two,prefix_aware,cost}" --replica-urls "$URLS" \
    ${ROUTER_CONFIG:+--router-config "$ROUTER_CONFIG"} \
    --num-prompts "$N" --seed 0 --min-output-len 10 --max-output-len 200 --disable-progress \
    --label "$row" --output-file "$OUT/$row.jsonl" --output-csv "$OUT/$row.csv" "$@" \
    2>&1 | grep -v '^sweep:' > "$OUT/$row.txt" || { cat "$OUT/$row.txt"; exit 1; }
  "$BIN/loadgen" report "$OUT/$row.csv" --out "$OUT/charts/$row" >/dev/null 2>&1 ||
    echo "   (no charts for $row)"
}

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

python3 - "$OUT" "$PORT" <<'EOF'
import csv, glob, os, sys
out, first_port = sys.argv[1], int(sys.argv[2])
# Each row's replica capacities (true relative speeds), by replica index (port - PORT).
CAPACITY = {"slow_replica": [1.0, 1.0, 1.0, 0.4]}
def per_capacity(r):
    caps = CAPACITY.get(r["label"])
    if not caps:
        return num(r, "max_over_mean")
    loads = []
    for part in (r.get("requests_per_replica") or "").split(";"):
        if "=" not in part:
            continue
        url, n = part.rsplit("=", 1)
        i = int(url.rsplit(":", 1)[1]) - first_port
        loads.append(float(n) / (caps[i] if 0 <= i < len(caps) else 1.0))
    if not loads or sum(loads) == 0:
        return float("nan")
    return max(loads) / (sum(loads) / len(loads))
rows, header = [], None
for path in sorted(glob.glob(os.path.join(out, "*.csv"))):
    if os.path.basename(path) == "matrix.csv":
        continue
    with open(path) as f:
        for r in csv.DictReader(f):
            header = header or list(r.keys())
            rows.append(r)
with open(os.path.join(out, "matrix.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["row"] + header)
    w.writeheader()
    for r in rows:
        w.writerow({"row": r["label"], **r})
def num(r, k):
    try:
        return float(r.get(k) or "nan")
    except ValueError:
        return float("nan")
order = ["sharegpt_0.5x", "sharegpt_1x", "sharegpt_2x", "hot_prompts", "tenants", "slow_replica", "constants_3x"]
by_row = {}
for r in rows:
    by_row.setdefault(r["label"], {})[r["policy"]] = r
print(f"{'row':14} {'policy':13} {'mean':>7} {'p99':>7} {'hit':>6} {'oracle':>6} {'hit/or':>6} {'req m/m':>7} {'max/mean':>8}  cost targets")
for name in [n for n in order if n in by_row] + [n for n in by_row if n not in order]:
    cells = by_row[name]
    best_mean = min(num(c, "ttft_ms_mean") for c in cells.values())
    best_p99 = min(num(c, "ttft_ms_p99") for c in cells.values())
    for pol in ["power_of_two", "prefix_aware", "cost"]:
        c = cells.get(pol)
        if c is None:
            continue
        mean, p99 = num(c, "ttft_ms_mean"), num(c, "ttft_ms_p99")
        hit, oracle = num(c, "replica_hit_rate"), num(c, "oracle_hit_rate")
        raw, mm = num(c, "max_over_mean"), per_capacity(c)
        ratio = hit / oracle if oracle > 0 else float("nan")
        verdict = ""
        if pol == "cost":
            pa = cells.get("prefix_aware")
            pa_ratio = num(pa, "replica_hit_rate") / oracle if pa and oracle > 0 else 0
            misses = []
            if mean > 1.03 * best_mean: misses.append(f"mean +{100 * (mean / best_mean - 1):.0f}%")
            if p99 > 1.10 * best_p99: misses.append(f"p99 +{100 * (p99 / best_p99 - 1):.0f}%")
            if pa_ratio >= 0.95 and not ratio >= 0.95: misses.append(f"hit {ratio:.2f} of oracle")
            if mm > 1.1: misses.append(f"max/mean {mm:.2f}")
            verdict = "ok" if not misses else "MISS: " + ", ".join(misses)
        print(f"{name:14} {pol:13} {mean:7.1f} {p99:7.1f} {hit:6.3f} {oracle:6.3f} {ratio:6.2f} {raw:7.2f} {mm:8.2f}  {verdict}")
EOF
