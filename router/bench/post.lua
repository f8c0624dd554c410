-- wrk script for the router proxy-overhead benchmark: short non-streaming completions.
-- Environment: MODEL (default vllm-sim), MAX_TOKENS (default 8), PROMPTS (distinct prompts, default 32).
local model = os.getenv("MODEL") or "vllm-sim"
local max_tokens = tonumber(os.getenv("MAX_TOKENS") or "8")
local prompts = tonumber(os.getenv("PROMPTS") or "32")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

local bodies = {}
for i = 1, prompts do
  bodies[i] = string.format(
    '{"model":"%s","prompt":"Overhead probe %d: say something short.","max_tokens":%d}',
    model, i, max_tokens)
end

local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, "/v1/completions", nil, bodies[(n % prompts) + 1])
end
