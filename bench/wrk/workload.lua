-- One wrk workload, driven by files the harness writes (see bench/loadgen.py).
-- Arguments (after `--`): paths_file bodies_file|- method unique_header|- nonce
--   requests_per_thread threads header_name=value ...
-- Each thread walks the paths (and bodies) from its own offset, so no two threads send the
-- same request; `unique_header` gets a fresh value per request (an Idempotency-Key).
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
  headers = {}
  for i = 8, #args do
    local name, value = args[i]:match("^([^=]+)=(.*)$")
    headers[name] = value
  end
  idx = tid - 1
  sent = 0
  non2xx = 0
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
end

function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "non2xx": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, summary.bytes, n, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, latency.mean))
end
