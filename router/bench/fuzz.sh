#!/usr/bin/env bash
# Fuzzing on stable Rust with proptest at scale: request-body / prompt-key extraction and the
# Prometheus text parser (router/tests/fuzz_inputs.rs), and the radix tree against its reference
# model (radix-tree/tests/model.rs). Each property runs PROPTEST_CASES cases (default 100000 for
# the parsers, a tenth of it for the tree, whose cases are whole operation sequences).
# Failing inputs are shrunk and saved by proptest under */tests/*.proptest-regressions.
# Usage (repo root): router/bench/fuzz.sh [CASES]
set -euo pipefail
cases=${1:-${PROPTEST_CASES:-100000}}
start=$(date +%s)
PROPTEST_CASES=$cases cargo test --release -q -p router --test fuzz_inputs 2>&1 | tail -3
parsers=$(( $(date +%s) - start ))
start=$(date +%s)
PROPTEST_CASES=$((cases / 10)) cargo test --release -q -p radix-tree --test model 2>&1 | tail -3
tree=$(( $(date +%s) - start ))
echo "parsers: 6 properties x $cases cases in ${parsers}s; radix tree: model properties x $((cases / 10)) sequences in ${tree}s"
