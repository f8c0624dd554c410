-- wrk script: short non-streaming (or, with STREAM=1, streaming) completion requests.
-- Environment: MAX_TOKENS (default 16), STREAM (0/1), PROMPTS (distinct prompts, default 64).
local max_tokens = tonumber(os.getenv("MAX_TOKENS") or "16")
local stream = (os.getenv("STREAM") or "0") == "1"
local prompts = tonumber(os.getenv("PROMPTS") or "64")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local bodies = {}
for i = 1, prompts do
  bodies[i] = string.format(
    '{"model":"vllm-sim","prompt":"Benchmark prompt number %d: tell me a short story.","max_tokens":%d,"stream":%s}',
    i, max_tokens, stream and "true" or "false")
end

local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/completions", nil, bodies[(n % prompts) + 1])
end
