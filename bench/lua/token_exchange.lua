-- authorization_code exchanges at /token, one pre-minted code per request; the run
-- stops when the codes are used up (so only exchanges are timed).
-- Environment: BENCH_LUA_DIR, BENCH_CODES_FILE, BENCH_BODY_PREFIX (form fields up to
-- and including "code="), BENCH_BODY_SUFFIX ("&redirect_uri=...&code_verifier=...").
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Accept"] = "application/json"
local prefix = os.getenv("BENCH_BODY_PREFIX")
local suffix = os.getenv("BENCH_BODY_SUFFIX")
local codes = nil
local next_code = 0
local exhausted = false
local ok = 0
local t_first = nil

function init(args)
  codes = read_lines(os.getenv("BENCH_CODES_FILE"))
end

function request()
  if t_first == nil then t_first = now_us() end
  next_code = next_code + 1
  if next_code > #codes then
    exhausted = true
    wrk.thread:stop()
    next_code = #codes
  end
  return wrk.format(nil, nil, nil, prefix .. codes[next_code] .. suffix)
end

function response(status, headers, body)
  if exhausted then return end
  if status ~= 200 then
    non2xx = non2xx + 1
    note_error(status, body)
  elseif string.find(body, '"access_token"', 1, true) == nil then
    rpc_errors = rpc_errors + 1
    note_error(status, body)
  else
    ok = ok + 1
    -- Elapsed time from the first request to the latest success: wrk's own duration
    -- is the full -d even when the codes ran out earlier.
    wrk.thread:set("ok", ok)
    wrk.thread:set("elapsed_us", math.floor(now_us() - t_first))
  end
  if first_error ~= nil then wrk.thread:set("first_error", first_error) end
  wrk.thread:set("non2xx", non2xx)
  wrk.thread:set("rpc_errors", rpc_errors)
end

function done(summary, latency, requests)
  report(summary, latency, {"ok", "elapsed_us"})
end
