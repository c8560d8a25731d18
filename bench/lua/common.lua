-- Shared by the wrk scripts of bench/run.sh: per-thread counters, the first failing
-- answer kept for diagnosis, and one machine-readable summary line.
--
-- Counters live in each thread's Lua state; done() (main state) collects them.

local ffi_ok, ffi = pcall(require, "ffi")
if ffi_ok then
  pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int, bench_timespec *);")
end

-- Monotonic wall clock in microseconds (LuaJIT ffi), or nil.
function now_us()
  if not ffi_ok then return nil end
  local ts = ffi.new("bench_timespec")
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

threads = {}
non2xx = 0
rpc_errors = 0
first_error = nil

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function note_error(status, body)
  if first_error == nil then
    first_error = tostring(status) .. " " .. string.sub(body or "", 1, 300)
  end
end

-- A JSON-RPC answer (JSON or SSE framing) that is a success: has a "result" and no
-- "error" member, and is not a tool error result.
function is_rpc_success(body)
  if body == nil then return false end
  if string.find(body, '"result"', 1, true) == nil then return false end
  if string.find(body, '"error":{', 1, true) ~= nil then return false end
  if string.find(body, '"isError":true', 1, true) ~= nil then return false end
  return true
end

local function json_escape(s)
  s = string.gsub(s, '\\', '\\\\')
  s = string.gsub(s, '"', '\\"')
  s = string.gsub(s, '[%c]', ' ')
  return s
end

function report(summary, latency, extra_fields)
  local n2, rpc = 0, 0
  local first = nil
  local extras = {}
  for _, t in ipairs(threads) do
    n2 = n2 + (t:get("non2xx") or 0)
    rpc = rpc + (t:get("rpc_errors") or 0)
    first = first or t:get("first_error")
    for _, f in ipairs(extra_fields or {}) do
      extras[f] = (extras[f] or 0) + (t:get(f) or 0)
    end
  end
  local e = summary.errors
  local out = string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":%d,"rpc_errors":%d,' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
    '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}',
    summary.requests, summary.duration, summary.bytes, n2, rpc,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max)
  for k, v in pairs(extras) do
    out = out .. string.format(',"%s":%d', k, v)
  end
  if first ~= nil then
    out = out .. ',"first_error":"' .. json_escape(first) .. '"'
  end
  io.write("BENCH_JSON " .. out .. "}\n")
end

-- "Name: value" lines from an environment variable.
function env_headers(name)
  local h = {}
  local raw = os.getenv(name) or ""
  for line in string.gmatch(raw, "[^\n]+") do
    local k, v = string.match(line, "^%s*([^:]+):%s*(.-)%s*$")
    if k then h[k] = v end
  end
  return h
end

function read_lines(path)
  local lines = {}
  local f = assert(io.open(path, "r"))
  for line in f:lines() do
    if #line > 0 then table.insert(lines, line) end
  end
  f:close()
  return lines
end
