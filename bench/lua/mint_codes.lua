-- Mints authorization codes through the real /authorize endpoint with a logged-in
-- browser's cookies (login and consent already done, so the AS redirects at once),
-- appending each code to BENCH_CODES_OUT; stops after BENCH_MAX_CODES codes.
-- Environment: BENCH_LUA_DIR, BENCH_HEADERS (Cookie), BENCH_CODES_OUT, BENCH_MAX_CODES.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

wrk.method = "GET"
wrk.headers = env_headers("BENCH_HEADERS")
local max_codes = tonumber(os.getenv("BENCH_MAX_CODES") or "1000000")
local out = nil
local codes = 0

function init(args)
  out = assert(io.open(os.getenv("BENCH_CODES_OUT"), "a"))
  out:setvbuf("full")
end

function response(status, headers, body)
  local location = headers["location"] or headers["Location"]
  local code = location and string.match(location, "[?&]code=([^&]+)")
  if (status == 302 or status == 303) and code then
    codes = codes + 1
    out:write(code, "\n")
    if codes % 256 == 0 then out:flush() end
    if codes >= max_codes then
      out:flush()
      wrk.thread:stop()
    end
  else
    non2xx = non2xx + 1
    note_error(status, (location or "") .. " " .. (body or ""))
  end
  if first_error ~= nil then wrk.thread:set("first_error", first_error) end
  wrk.thread:set("non2xx", non2xx)
  wrk.thread:set("codes", codes)
  if codes % 64 == 0 then out:flush() end
end

function done(summary, latency, requests)
  report(summary, latency, {"codes"})
end
