#!/usr/bin/env bash
# Shared by matrix.sh and robust.sh (sourced, not run): starts 4 vllm-sim replicas per row, runs
# `loadgen sweep` over the policies, and prints the table of each row with cost's targets.
# The sourcing script sets ROOT, OUT and N; sourcing moves to ROOT, fills DATA, PORT and BIN
# (building loadgen and vllm-sim when BIN is unset), creates OUT and stops the sims on exit.
# SGLANG_PYTHON (a Python with sglang-router installed, e.g. `pip install sglang-router`) adds a
# peer column per row: SGLang's cache_aware router in front of 4 fresh sims, the same workload.

cd "$ROOT" || exit
DATA=${DATA:-../shared/data/sharegpt_long_convos.json}
PORT=${PORT:-18700}
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p loadgen -p vllm-sim
  BIN=target/release
fi
mkdir -p "$OUT/charts"

# The workload flags every run of a row shares (our sweep and the SGLang peer alike).
WORKLOAD=(--num-prompts "$N" --seed "${SEED:-0}" --min-output-len 10 --max-output-len 200 --disable-progress)

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

urls() { local u; u=$(for i in 0 1 2 3; do printf 'http://127.0.0.1:%d,' $((PORT + i)); done); echo "${u%,}"; }

# run ROW "sim flags (replicas 1-3)" "sim flags (replica 4)" loadgen flags...; skipped unless
# ROWS is unset or names ROW.
run() {
  local row=$1 fast=$2 last=$3; shift 3
  if [ -n "${ROWS:-}" ] && [[ " $ROWS " != *" $row "* ]]; then return; fi
  echo "== $row"
  start_sims "$fast" "$last"
  rm -f "$OUT/$row.csv" "$OUT/$row.jsonl"
  "$BIN/loadgen" sweep --policies "${POLICIES:-power_of_two,prefix_aware,cost}" --replica-urls "$(urls)" \
    ${ROUTER_CONFIG:+--router-config "$ROUTER_CONFIG"} \
    "${WORKLOAD[@]}" \
    --label "$row" --output-file "$OUT/$row.jsonl" --output-csv "$OUT/$row.csv" "$@" \
    2>&1 | grep -v '^sweep:' > "$OUT/$row.txt" || { cat "$OUT/$row.txt"; exit 1; }
  [ -n "${SGLANG_PYTHON:-}" ] && run_sglang "$row" "$fast" "$last" "$@"
  "$BIN/loadgen" report "$OUT/$row.csv" --out "$OUT/charts/$row" >/dev/null 2>&1 ||
    echo "   (no charts for $row)"
}

# run_sglang ROW "sim flags" "sim flags" loadgen flags...: the same workload through SGLang's
# router (cache_aware, its defaults) on fresh sims; its row joins OUT/ROW.csv as policy `sglang`.
run_sglang() {
  local row=$1 fast=$2 last=$3; shift 3
  local args=() port=$((PORT + 10))
  while [ $# -gt 0 ]; do
    if [ "$1" = --request-rates ]; then args+=(--request-rate "$2"); shift 2; else args+=("$1"); shift; fi
  done
  start_sims "$fast" "$last"
  # shellcheck disable=SC2046
  "$SGLANG_PYTHON" -m sglang_router.launch_router --worker-urls $(urls | tr , ' ') --policy cache_aware \
    --host 127.0.0.1 --port "$port" --log-level warn >"$OUT/$row.sglang.log" 2>&1 & SIMS+=($!)
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1 && break; sleep 0.2; done
  rm -f "$OUT/$row.sglang.csv"
  "$BIN/loadgen" --base-url "http://127.0.0.1:$port" --model vllm-sim --replica-urls "$(urls)" \
    "${WORKLOAD[@]}" \
    --label "$row" --output-file "$OUT/$row.sglang.jsonl" --output-csv "$OUT/$row.sglang.csv" "${args[@]}" \
    >"$OUT/$row.sglang.txt" 2>&1 || { echo "   (sglang run failed: $OUT/$row.sglang.txt)"; return; }
  python3 - "$OUT/$row.sglang.csv" "$OUT/$row.csv" <<'PY'
import csv, sys
src, dst = sys.argv[1:]
rows = list(csv.DictReader(open(src)))
with open(dst) as f:
    fields = next(csv.reader(f))
with open(dst, "a", newline="") as f:
    w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
    for r in rows:
        w.writerow({**r, "policy": "sglang"})
PY
}

# table NAME "row order" '{"row": [capacity of replica 1, ..., 4]}': writes OUT/NAME.csv (all
# rows, a `row` column first) and prints the table with cost's verdict per row: mean TTFT lowest
# or within 3%, p99 within 10% of the lowest, replica hit rate >= 0.95 of the oracle where
# prefix_aware reaches that, max/mean load per replica (requests over capacity) <= 1.1. An
# sglang row (SGLANG_PYTHON) is shown beside them, with cost's difference to it, outside the
# targets; its failed requests are counted (it rejects a turn with empty content).
table() {
  python3 - "$OUT" "$PORT" "$1" "$2" "$3" <<'PY'
import csv, glob, json, os, sys
out, first_port, name, order, capacity = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].split(), json.loads(sys.argv[5])
def num(r, k):
    try:
        return float(r.get(k) or "nan")
    except ValueError:
        return float("nan")
def per_capacity(r):
    if r.get("policy") == "sglang":
        return float("nan")  # no x-routed-to header: its placement is not known
    caps = capacity.get(r["label"])
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
    base = os.path.basename(path)[:-4]
    if base not in order:
        continue
    with open(path) as f:
        for r in csv.DictReader(f):
            header = header or list(r.keys())
            rows.append(r)
if not rows:
    sys.exit(0)
with open(os.path.join(out, name + ".csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["row"] + header)
    w.writeheader()
    for r in rows:
        w.writerow({"row": r["label"], **r})
by_row = {}
for r in rows:
    by_row.setdefault(r["label"], {})[r["policy"]] = r
print(f"{'row':16} {'policy':13} {'mean':>7} {'p99':>7} {'hit':>6} {'oracle':>6} {'hit/or':>6} {'req m/m':>7} {'max/mean':>8}  cost targets")
for row in [n for n in order if n in by_row]:
    cells = by_row[row]
    ours = [c for p, c in cells.items() if p != "sglang"]
    best_mean = min(num(c, "ttft_ms_mean") for c in ours)
    best_p99 = min(num(c, "ttft_ms_p99") for c in ours)
    for pol in ["power_of_two", "prefix_aware", "cost", "sglang"]:
        c = cells.get(pol)
        if c is None:
            continue
        mean, p99 = num(c, "ttft_ms_mean"), num(c, "ttft_ms_p99")
        hit, oracle = num(c, "replica_hit_rate"), num(c, "oracle_hit_rate")
        raw, mm = num(c, "max_over_mean"), per_capacity(c)
        if pol == "sglang":
            raw = float("nan")
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
            peer = cells.get("sglang")
            if peer:
                verdict += f"; vs sglang mean {100 * (mean / num(peer, 'ttft_ms_mean') - 1):+.0f}%, p99 {100 * (p99 / num(peer, 'ttft_ms_p99') - 1):+.0f}%"
        if pol == "sglang" and num(c, "failed") > 0:
            verdict = f"{num(c, 'failed'):.0f} failed"
        print(f"{row:16} {pol:13} {mean:7.1f} {p99:7.1f} {hit:6.3f} {oracle:6.3f} {ratio:6.2f} {raw:7.2f} {mm:8.2f}  {verdict}")
PY
}
