-- wrk script: completion requests, non-streaming or (STREAM=1) streaming.
-- Environment:
--   MAX_TOKENS     output tokens per request (default 16)
--   STREAM         0 or 1 (default 0)
--   PROMPTS        distinct prompts cycled through (default 64; 0 = every request distinct)
--   PROMPT_TOKENS  pad prompts to about this many sim tokens (default 0 = ~13-token prompts)
local max_tokens = tonumber(os.getenv("MAX_TOKENS") or "16")
local stream = (os.getenv("STREAM") or "0") == "1"
local prompts = tonumber(os.getenv("PROMPTS") or "64")
local prompt_tokens = tonumber(os.getenv("PROMPT_TOKENS") or "0")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"

-- The sim tokenizes 4 bytes per token.
local pad = ""
if prompt_tokens > 16 then
  pad = string.rep("abcd", prompt_tokens - 16)
end

local function body(i)
  return string.format(
    '{"model":"vllm-sim","prompt":"Benchmark prompt %12d: a story.%s","max_tokens":%d,"stream":%s}',
    i, pad, max_tokens, stream and "true" or "false")
end

local bodies = {}
for i = 1, prompts do
  bodies[i] = body(i)
end

local n = 0
request = function()
  n = n + 1
  local b
  if prompts > 0 then
    b = bodies[(n % prompts) + 1]
  else
    -- Distinct per thread and request: no prefix reuse beyond the shared padding.
    b = body(n * 1000 + math.random(0, 999))
  end
  return wrk.format(nil, "/v1/completions", nil, b)
end
