#!/usr/bin/env bash
# Priority admission benchmark of issue 14: 1000 ShareGPT requests, priorities 0 and 1 half and
# half, offered at twice what 4 vllm-sim replicas serve, through an in-process router (cost
# policy). Replicas: H100 time model, priority scheduling, SIM_BLOCKS KV blocks, SIM_SEQS
# sequences (small enough that an uncapped flood preempts).
#   1. capacity: the batch sent at once (--request-rate inf, vLLM's prioritization method),
#      no caps: its request throughput is what the replicas serve;
#   2. the same batch at 2x that rate under queue policies fcfs, priority and
#      priority_round_robin (static caps of CAP_REQUESTS, weights 0:3,1:1, a 60 s bound), and
#      fcfs with caps none and adaptive (ceiling ADAPTIVE_MAX, default SIM_SEQS);
#   3. the comparisons against the issue's targets, from the CSV.
# Usage (from the repository root): loadgen/bench/priority.sh [OUT_DIR]
# Environment: SIM_SPEEDUP (default 1), SIM_BLOCKS (3000), SIM_SEQS (64), CAP_REQUESTS (16),
# ADAPTIVE_MAX (SIM_SEQS), NUM_PROMPTS (1000), ROUTER_BASE (priority-router.yaml), DATASET (the
# ShareGPT file), LG (a built loadgen: skips the build), RATE (offered req/s: skips step 1),
# STAGES ("queues caps": which comparisons of step 2 run; the checks cover those that ran).
# Step 3 also prints where TTFT goes in each caps mode: router queue wait, replica queue time
# and prefill (replica histogram means), preemptions and prefix-cache hit rate.
set -euo pipefail
OUT=${1:-results/priority}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
mkdir -p "$OUT"
if [ -z "${LG:-}" ]; then
  cargo build --release -q -p loadgen
  LG="${CARGO_TARGET_DIR:-target}/release/loadgen"
fi
WAIT_MS=60000
COMMON=(sweep --policies cost --seed 0 --disable-progress
  --router-config "${ROUTER_BASE:-loadgen/bench/priority-router.yaml}"
  --num-prompts "${NUM_PROMPTS:-1000}" --priority-mix 0:0.5,1:0.5
  --dataset-path "${DATASET:-../shared/data/sharegpt_long_convos.json}" --max-conversations 400
  --min-output-len 10 --max-output-len 200
  --sim-speedup "${SIM_SPEEDUP:-1}" --sim-num-gpu-blocks "${SIM_BLOCKS:-3000}"
  --sim-max-num-seqs "${SIM_SEQS:-64}"
  --queue-weights 0:3,1:1 --queue-max-wait-ms "$WAIT_MS")
rm -f "$OUT"/*.csv "$OUT"/*.jsonl

STAGES=${STAGES:-queues caps}
if [ -z "${RATE:-}" ]; then
  echo "== capacity: the whole batch at once, no caps"
  "$LG" "${COMMON[@]}" --request-rates inf --queue-policies fcfs --caps none \
    --output-csv "$OUT/capacity.csv" --output-file "$OUT/capacity.jsonl" | grep -v '^sweep:' \
    | tee "$OUT/capacity.txt"
  CAPACITY=$(python3 -c "import csv,sys; print(next(csv.DictReader(open(sys.argv[1])))['request_throughput'])" "$OUT/capacity.csv")
  RATE=$(python3 -c "print(round(2 * float('$CAPACITY'), 2))")
  echo "served $CAPACITY req/s: offering $RATE req/s"
fi

if [[ " $STAGES " == *" queues "* ]]; then
  echo "== queue policies under static caps at $RATE req/s"
  "$LG" "${COMMON[@]}" --request-rates "$RATE" --queue-policies fcfs,priority,priority_round_robin \
    --caps static --cap-requests "${CAP_REQUESTS:-16}" --output-csv "$OUT/priority.csv" --output-file "$OUT/priority.jsonl" \
    | grep -v '^sweep:' | tee "$OUT/queues.txt"
fi
if [[ " $STAGES " == *" caps "* ]]; then
  echo "== caps none vs adaptive (ceiling ${ADAPTIVE_MAX:-${SIM_SEQS:-64}}) at $RATE req/s"
  "$LG" "${COMMON[@]}" --request-rates "$RATE" --queue-policies fcfs --caps none,adaptive \
    --cap-requests "${ADAPTIVE_MAX:-${SIM_SEQS:-64}}" \
    --output-csv "$OUT/priority.csv" --output-file "$OUT/priority.jsonl" \
    | grep -v '^sweep:' | tee "$OUT/caps.txt"
fi
"$LG" report "$OUT/priority.csv" --out "$OUT/report" >/dev/null

python3 - "$OUT/priority.jsonl" <<'PY'
import json, sys
print("where TTFT goes (ms; router wait = admission queue, replica queue / prefill = replica histogram means)")
print(f"{'queue/caps':20s} {'req/s':>6s} {'TTFT mean':>9s} {'p50':>6s} {'p99':>6s} {'class0 mean/p99':>15s} "
      f"{'class1 mean/p99':>15s} {'router wait mean/p99':>20s} {'replica queue':>13s} {'prefill':>7s} {'E2E':>6s} {'preempt':>7s} {'hit':>5s}")
for line in open(sys.argv[1]):
    d = json.loads(line)
    c, r = d["client"], d["replicas"] or {}
    m = r.get("means_ms") or {}
    pp = {p["priority"]: p["metrics"]["ttft_ms"] for p in d["per_priority"]}
    cls = lambda k: f"{pp[k]['mean']:.0f}/{pp[k]['p99']:.0f}" if k in pp else "-"
    name = f"{d['params']['queue_policy']}/{d['params']['caps']}"
    print(f"{name:20s} {c['request_throughput']:6.1f} {c['ttft_ms']['mean']:9.0f} {c['ttft_ms']['median']:6.0f} "
          f"{c['ttft_ms']['p99']:6.0f} {cls(0):>15s} {cls(1):>15s} "
          f"{c['queue_wait_ms']['mean']:9.0f}/{c['queue_wait_ms']['p99']:<10.0f} {m.get('queue') or 0:13.0f} "
          f"{m.get('prefill') or 0:7.0f} {c['e2e_ms']['mean']:6.0f} {r.get('preemptions', 0):7.0f} "
          f"{r.get('prefix_cache_hit_rate', 0):5.2f}")
PY

python3 - "$OUT/priority.csv" "$WAIT_MS" <<'PY'
import csv, sys
rows = {(r["queue_policy"], r["caps"]): r for r in csv.DictReader(open(sys.argv[1]))}
bound = float(sys.argv[2])
def cls(r, p, field):
    for part in r["per_priority"].split(";"):
        k, _, v = part.partition("=")
        if k == str(p):
            return dict(x.split(":") for x in v.split("|")).get(field)
    return None
f = lambda r, k: float(r[k] or 0)
def line(name, ok, text):
    print(f"{'PASS' if ok else 'MISS'}  {name}: {text}")
if ("fcfs", "static") in rows:
    fc, pr, rr = rows[("fcfs", "static")], rows[("priority", "static")], rows[("priority_round_robin", "static")]
    for name, r in [("fcfs", fc), ("priority", pr), ("priority_round_robin", rr)]:
        print(f"{name:22s} {f(r,'request_throughput'):7.2f} req/s {f(r,'output_throughput'):8.0f} tok/s "
              f"failed {r['failed']:>4s}  class0 TTFT mean/p99 {float(cls(r,0,'ttft_mean')):8.0f}/{float(cls(r,0,'ttft_p99')):8.0f} ms  "
              f"class1 {float(cls(r,1,'ttft_mean')):8.0f}/{float(cls(r,1,'ttft_p99')):8.0f} ms  "
              f"wait p99 c0/c1 {float(cls(r,0,'queue_wait_p99')):7.0f}/{float(cls(r,1,'queue_wait_p99')):7.0f} ms")
    for name, r in [("priority", pr), ("priority_round_robin", rr)]:
        d = abs(f(r, "request_throughput") / f(fc, "request_throughput") - 1)
        line(f"{name} throughput within 5% of fcfs", d <= 0.05, f"{d:.1%}")
    m0, m1 = float(cls(pr, 0, "ttft_mean")), float(cls(pr, 1, "ttft_mean"))
    p0, p1 = float(cls(pr, 0, "ttft_p99")), float(cls(pr, 1, "ttft_p99"))
    line("priority: class 0 mean TTFT >= 40% below class 1", m0 <= 0.6 * m1, f"{m0:.0f} vs {m1:.0f} ms ({1 - m0 / m1:.0%} lower)")
    line("priority: class 0 p99 TTFT >= 40% below class 1", p0 <= 0.6 * p1, f"{p0:.0f} vs {p1:.0f} ms ({1 - p0 / p1:.0%} lower)")
    w1 = float(cls(rr, 1, "queue_wait_p99"))
    line("priority_round_robin: class 1 p99 wait under its bound", w1 < bound and rr["failed"] == "0",
         f"{w1:.0f} ms < {bound:.0f} ms, {rr['failed']} failed")
if ("fcfs", "none") in rows and ("fcfs", "adaptive") in rows:
    no, ad = rows[("fcfs", "none")], rows[("fcfs", "adaptive")]
    t0, t1 = f(no, "ttft_ms_p99"), f(ad, "ttft_ms_p99")
    line("adaptive caps: p99 TTFT >= 30% below no caps", t1 <= 0.7 * t0, f"{t1:.0f} vs {t0:.0f} ms ({1 - t1 / t0:.0%} lower)")
    m0, m1 = f(no, "ttft_ms_mean"), f(ad, "ttft_ms_mean")
    print(f"      adaptive caps: mean TTFT {m1:.0f} vs {m0:.0f} ms ({m1 / m0 - 1:+.0%})")
    d = f(ad, "request_throughput") / f(no, "request_throughput") - 1
    line("adaptive caps: throughput not 5% below no caps", d >= -0.05, f"{f(ad,'request_throughput'):.2f} vs {f(no,'request_throughput'):.2f} req/s ({d:+.1%})")
    pn, pa = f(no, "replica_preemptions"), f(ad, "replica_preemptions")
    if pn > 0:
        line("adaptive caps: no preemption where no caps preempted", pa == 0, f"{pa:.0f} vs {pn:.0f} preemptions")
    else:
        # Nothing to prevent: these replicas' own limits kept an uncapped flood from preempting.
        print(f"n/a   adaptive caps: no caps did not preempt either ({pa:.0f} vs 0 preemptions)")
PY
