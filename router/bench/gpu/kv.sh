#!/usr/bin/env bash
# On the GPU machine, from the project root, after `KVEVENTS=1 bash /tmp/x/run.sh start llama8b 4`:
# one bench run per POLICY with the router subscribed to every replica's KV events (precise
# index, token mode with the model's tokenizer). Replica gpu-i publishes on tcp://127.0.0.1:(5551+i).
# usage: bash router/bench/gpu/kv.sh POLICY...
set -euo pipefail
python3 - <<'PY'
s = open('/tmp/x/run.sh').read()
old = """printf '  - {url: "http://127.0.0.1:%s", name: gpu-%d}\\n' $p $i >> $cfg"""
new = ("""printf '  - {url: "http://127.0.0.1:%s", name: gpu-%d, kv_events: {endpoint: "tcp://127.0.0.1:%d"}}\\n'"""
       """ $p $i $((5551 + i)) >> $cfg""")
assert old in s, "run.sh changed: cannot add kv_events to the replica lines"
open('/tmp/x/run_kv.sh', 'w').write(s.replace(old, new))
PY
sed "s|__MODEL__|/tmp/x/model/$(cat /tmp/x/shape)|" router/bench/gpu/kv-events.yaml > /tmp/x/kv-events.yaml
EXTRA_ROUTER_YAML=/tmp/x/kv-events.yaml bash /tmp/x/run_kv.sh bench "$@"
