-- One wrk workload, driven by files the harness writes (see bench/loadgen.py).
-- Arguments (after `--`): paths_file bodies_file|- method unique_header|- nonce
--   requests_per_thread threads rate_per_thread header_name=value ...
-- Each thread walks the paths (and bodies) from its own offset, so no two threads send the
-- same request; `unique_header` gets a fresh value per request (an Idempotency-Key).
-- rate_per_thread > 0 paces the thread's requests to a fixed schedule (open loop: request k
-- is due at start + k / rate, whichever of the thread's connections is free then); 0 sends
-- as fast as the connections allow (closed loop).
-- done() prints one line `BENCH_JSON {...}` with latency percentiles (microseconds) and counts.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local function read_lines(path)
  local out = {}
  for line in io.lines(path) do
    if #line > 0 then table.insert(out, line) end
  end
  return out
end

local function read_bodies(path)
  -- A sequence of "<length>\n<bytes>" records.
  local out = {}
  local f = assert(io.open(path, "rb"))
  while true do
    local len = f:read("*l")
    if not len then break end
    table.insert(out, f:read(tonumber(len)))
  end
  f:close()
  return out
end

function init(args)
  paths = read_lines(args[1])
  bodies = nil
  if args[2] ~= "-" then bodies = read_bodies(args[2]) end
  method = args[3]
  unique = args[4] ~= "-" and args[4] or nil
  nonce = args[5]
  budget = tonumber(args[6])
  stride = tonumber(args[7])
  rate = tonumber(args[8])
  headers = {}
  for i = 9, #args do
    local name, value = args[i]:match("^([^=]+)=(.*)$")
    headers[name] = value
  end
  idx = tid - 1
  sent = 0
  non2xx = 0
  timings = {}
end

-- A monotonic clock in milliseconds (LuaJIT's FFI; CLOCK_MONOTONIC is 1 on Linux).
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local started, scheduled = nil, 0

function delay()
  if rate <= 0 then return 0 end
  local now = now_ms()
  started = started or now
  scheduled = scheduled + 1
  local due = started + (scheduled - 1) * 1000 / rate
  return math.max(0, due - now)
end

function request()
  if sent >= budget then
    wrk.thread:stop()
  end
  sent = sent + 1
  idx = idx + stride
  local i = idx % #paths + 1
  if unique then headers[unique] = nonce .. "-" .. tid .. "-" .. sent end
  local body = nil
  if bodies then body = bodies[idx % #bodies + 1] end
  return wrk.format(method, paths[i], headers, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  -- The server's own time for the answer (Server-Timing: name;dur=ms), when it sends one.
  local timing = headers["server-timing"] or headers["Server-Timing"]
  if timing then
    local ms = timing:match("dur=([%d%.]+)")
    if ms then timings[#timings + 1] = tonumber(ms) end
  end
end

local function server_timing()
  local all = {}
  for _, t in ipairs(threads) do
    for _, ms in ipairs(t:get("timings") or {}) do all[#all + 1] = ms end
  end
  if #all == 0 then return "" end
  table.sort(all)
  local function pct(p) return all[math.max(1, math.ceil(#all * p / 100))] * 1000 end
  return string.format(
    ', "server_timing_n": %d, "server_p50_us": %d, "server_p90_us": %d, "server_p95_us": %d, ' ..
    '"server_p99_us": %d, "server_max_us": %d',
    #all, pct(50), pct(90), pct(95), pct(99), all[#all] * 1000)
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f%s}\n',
    summary.requests, summary.duration, summary.bytes, n, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean, server_timing()))
end
