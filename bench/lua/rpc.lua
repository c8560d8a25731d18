-- Closed-loop load of one request (default: an authenticated JSON-RPC tools/call).
-- Environment:
--   BENCH_LUA_DIR      this directory
--   BENCH_METHOD       HTTP method (default POST)
--   BENCH_BODY         request body (default none)
--   BENCH_HEADERS      "Name: value" lines (Authorization, Mcp-Session-Id, ...)
--   BENCH_TOKENS_FILE  optional: one bearer token per line, rotated per request
--   BENCH_BODY_ID_PREFIX / BENCH_BODY_ID_SUFFIX  optional: body = prefix .. n .. suffix
--                      with a per-request JSON-RPC id n
--   BENCH_CHECK        "jsonrpc" (2xx and a JSON-RPC success body) or "status" (2xx)
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

wrk.method = os.getenv("BENCH_METHOD") or "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers = env_headers("BENCH_HEADERS")
local check_rpc = (os.getenv("BENCH_CHECK") or "jsonrpc") == "jsonrpc"
local tokens_file = os.getenv("BENCH_TOKENS_FILE")

-- Unique JSON-RPC ids: concurrent requests on one MCP session must not share an id
-- (the server routes each answer to the stream of its request id). BENCH_BODY_ID_PREFIX
-- and BENCH_BODY_ID_SUFFIX surround a per-request counter; without them the body is
-- static (cheapest for wrk: used where ids need not be unique).
local id_prefix = os.getenv("BENCH_BODY_ID_PREFIX")
local id_suffix = os.getenv("BENCH_BODY_ID_SUFFIX")
local rotate_tokens = tokens_file ~= nil and tokens_file ~= ""
local unique_ids = id_prefix ~= nil and id_prefix ~= ""

if rotate_tokens or unique_ids then
  local tokens = nil
  local i = 0
  local n = 0
  function init(args)
    if rotate_tokens then tokens = read_lines(tokens_file) end
    -- Threads start at different offsets so they do not present the same token.
    i = (id or 1) * 7919
    n = (id or 1) * 1000000000
  end
  function request()
    local body = nil
    if rotate_tokens then
      i = i + 1
      wrk.headers["Authorization"] = "Bearer " .. tokens[(i % #tokens) + 1]
    end
    if unique_ids then
      n = n + 1
      body = id_prefix .. n .. id_suffix
    end
    return wrk.format(nil, nil, nil, body)
  end
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    note_error(status, body)
  elseif check_rpc and not is_rpc_success(body) then
    rpc_errors = rpc_errors + 1
    note_error(status, body)
  end
  if first_error ~= nil then wrk.thread:set("first_error", first_error) end
  wrk.thread:set("non2xx", non2xx)
  wrk.thread:set("rpc_errors", rpc_errors)
end

function done(summary, latency, requests)
  report(summary, latency)
end
