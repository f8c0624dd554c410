"""Capture vLLM's own token ids for known requests, as golden vectors for the router's token keys.

Runs on the GPU machine against a replica started by ../shared/gpu/run.sh with KVEVENTS=1
(gpu-0: HTTP 8001, KV events tcp://127.0.0.1:5551). For a few ShareGPT conversations it asks
vLLM's POST /tokenize for the ids of a chat request (1 and 3 messages) and of a completion
request, then sends the same requests (max_tokens 1) while subscribed to the KV events, and
writes everything to OUT/golden.json with the events to OUT/kv_events.jsonl.
usage: golden.py DATA.json MODEL_DIR OUT_DIR [PORT] [EVENTS_ENDPOINT]
"""
import json, os, shutil, subprocess, sys, time, urllib.request

data, model_dir, out = sys.argv[1], sys.argv[2], sys.argv[3]
port = int(sys.argv[4]) if len(sys.argv) > 4 else 8001
ep = sys.argv[5] if len(sys.argv) > 5 else "tcp://127.0.0.1:5551"
base = f"http://127.0.0.1:{port}"
os.makedirs(out, exist_ok=True)


def post(path, body):
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


convs = json.load(open(data))
role = {"human": "user", "gpt": "assistant", "system": "system"}
cases = []
for c in convs[:40]:
    turns = [t for t in c["conversations"] if t.get("value")]
    if len(turns) < 3 or sum(len(t["value"]) for t in turns[:3]) > 6000:
        continue
    msgs = [{"role": role.get(t["from"], "user"), "content": t["value"]} for t in turns[:3]]
    cases.append({"kind": "chat", "messages": msgs[:1]})
    cases.append({"kind": "chat", "messages": msgs})
    cases.append({"kind": "completion", "prompt": msgs[0]["content"]})
    if len(cases) >= 12:
        break
cases.append({"kind": "chat", "messages": [{"role": "system", "content": "You are terse."},
                                           {"role": "user", "content": "Hello there, how are you?"}]})
cases.append({"kind": "completion", "prompt": "The quick brown fox jumps over the lazy dog. " * 8})

urllib.request.urlopen(urllib.request.Request(base + "/reset_prefix_cache", b"", method="POST"), timeout=30).read()
cap = subprocess.Popen([sys.executable, "/tmp/x/kvcap.py", ep, "40", os.path.join(out, "kv_events.jsonl")])
time.sleep(2)
for case in cases:
    if case["kind"] == "chat":
        tok = post("/tokenize", {"model": "m", "messages": case["messages"], "add_generation_prompt": True})
        post("/v1/chat/completions", {"model": "m", "messages": case["messages"], "max_tokens": 1})
    else:
        tok = post("/tokenize", {"model": "m", "prompt": case["prompt"]})
        post("/v1/completions", {"model": "m", "prompt": case["prompt"], "max_tokens": 1})
    case["vllm_token_ids"] = tok["tokens"]
    time.sleep(0.3)
cap.wait()
json.dump({"vllm": "0.26.0", "model": os.path.basename(model_dir.rstrip("/")), "block_size": 16,
           "note": "token ids from vLLM's POST /tokenize (chat: add_generation_prompt true)",
           "cases": cases}, open(os.path.join(out, "golden.json"), "w"), indent=1)
for f in ("tokenizer.json", "tokenizer_config.json"):
    shutil.copy(os.path.join(model_dir, f), out)
print("golden cases:", len(cases), "->", out)
