"""Build loadgen/data/sharegpt_sample.json from ../shared/data/sharegpt_long_convos.json.

Keeps 48 conversations that start with a human turn and are under 8,000 characters of JSON,
taken at an even stride in id order, so the sample is deterministic and stays small (< 400 KB).
Run from the repository root: python3 loadgen/bench/make_sample.py
"""
import json
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "../shared/data/sharegpt_long_convos.json"
DST = "loadgen/data/sharegpt_sample.json"
WANT = 48

convos = json.load(open(SRC, encoding="utf-8"))
fit = sorted(
    (c for c in convos if c["conversations"][0]["from"] == "human" and len(json.dumps(c)) < 8000),
    key=lambda c: c["id"],
)
stride = max(1, len(fit) // WANT)
sample = fit[::stride][:WANT]
with open(DST, "w", encoding="utf-8") as f:
    json.dump(sample, f, ensure_ascii=False, indent=0)
print(f"{len(sample)} conversations from {len(fit)} candidates -> {DST}")
